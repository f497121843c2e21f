/* Core: RNG, arena, tape, views. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Known-answer test for Philox-4x32-10 from the Random123 distribution (kat_vectors):
 * counter 0, key 0 -> 6627e8d5 e169c58d bc57ac4c 9b00dbd8. */
TEST(rng_philox_known_answer) {
    uint32_t r[4];
    elbo_philox4x32(0, 0, r);
    CHECK(r[0] == 0x6627e8d5u && r[1] == 0xe169c58du && r[2] == 0xbc57ac4cu && r[3] == 0x9b00dbd8u);
}

TEST(rng_same_bits_any_thread_count) {
    enum { N = 100003 };
    float *a = malloc(N * sizeof(float)), *b = malloc(N * sizeof(float));
    elbo_rng r;
    int saved = elbo_get_threads();
    elbo_set_threads(1);
    elbo_rng_init(&r, 42);
    elbo_rng_normal(&r, a, N, 0, 1);
    elbo_set_threads(2);
    elbo_rng_init(&r, 42);
    elbo_rng_normal(&r, b, N, 0, 1);
    elbo_set_threads(saved);
    int same = memcmp(a, b, N * sizeof(float)) == 0;
    /* The draws are standard normal: mean ~ 0 and variance ~ 1 within 5 standard errors. */
    double m = 0, v = 0;
    for (int i = 0; i < N; i++) m += a[i];
    m /= N;
    for (int i = 0; i < N; i++) v += (a[i] - m) * (a[i] - m);
    v /= N;
    free(a);
    free(b);
    CHECK(same);
    CHECK_NEAR(m, 0.0, 5.0 / sqrt(N));
    CHECK_NEAR(v, 1.0, 5.0 * sqrt(2.0 / N));
}

TEST(rng_uniform_range_and_mean) {
    enum { N = 50000 };
    static float u[N];
    elbo_rng r;
    elbo_rng_init(&r, 7);
    elbo_rng_uniform(&r, u, N, -2, 3);
    double m = 0;
    for (int i = 0; i < N; i++) {
        CHECK(u[i] >= -2 && u[i] < 3);
        m += u[i];
    }
    m /= N;
    /* U(-2,3): mean 0.5, sd 5/sqrt(12). */
    CHECK_NEAR(m, 0.5, 5.0 * (5.0 / sqrt(12.0)) / sqrt(N));
    CHECK(r.offset == (N + 3) / 4);
}

TEST(arena_reuses_memory_after_growth) {
    elbo_ctx *ctx = elbo_ctx_new(4096);
    for (int step = 0; step < 3; step++) {
        for (int i = 0; i < 10; i++) CHECK(elbo_tensor_new1(ctx, 1000) != NULL);
        elbo_ctx_reset(ctx);
    }
    size_t cap = elbo_ctx_arena_capacity(ctx);
    for (int i = 0; i < 10; i++) CHECK(elbo_tensor_new1(ctx, 1000) != NULL);
    CHECK(elbo_ctx_arena_capacity(ctx) == cap);
    elbo_ctx_free(ctx);
}

TEST(reshape_is_a_view_and_slice_views_leading_axis) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 4, 3, 2);
    for (int i = 0; i < 24; i++) x->data[i] = (float)i;
    elbo_tensor *y = elbo_reshape2(ctx, x, -1, 6);
    CHECK(y && y->data == x->data && y->shape[0] == 4 && y->shape[1] == 6);
    elbo_tensor *s = elbo_slice(ctx, x, 0, 1, 2);
    CHECK(s && s->data == x->data + 6 && s->numel == 12);
    elbo_tensor *c = elbo_slice(ctx, x, 1, 1, 1); /* not contiguous: a copy */
    CHECK(c && c->data != x->data && c->numel == 8 && c->data[0] == 2 && c->data[1] == 3 &&
          c->data[2] == 8);
    CHECK(elbo_reshape2(ctx, x, 5, 5) == NULL);
    CHECK(strstr(elbo_last_error(), "reshape") && strstr(elbo_last_error(), "(4, 3, 2)"));
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_slice_reshape(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    /* x (2,4,3) -> x[:, 1:3] (2,2,3) copy -> (4,3) view -> rows 1..2 view */
    elbo_tensor *a = elbo_slice(ctx, in[0], 1, 1, 2);
    return elbo_slice(ctx, elbo_reshape2(ctx, a, 4, 3), 0, 1, 2);
}

TEST(grad_slice_reshape) {
    gc_spec s = {.n_in = 1, .ndim = {3}, .shape = {{2, 4, 3}}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("slice+reshape", build_slice_reshape, NULL, &s);
}

static elbo_tensor *build_relu(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_relu(ctx, in[0]);
}

TEST(grad_relu) {
    /* Inputs kept away from the kink at 0, where the derivative is undefined. */
    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (i % 2 ? 1 : -1) * (0.1f + 0.05f * i);
    gc_spec s = {
        .n_in = 1, .ndim = {2}, .shape = {{8, 8}}, .init = {x}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("relu", build_relu, NULL, &s);
}

TEST(errors_propagate_through_null_inputs) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new2(ctx, 2, 3);
    elbo_tensor *bad = elbo_reshape2(ctx, x, 4, 4);
    CHECK(bad == NULL);
    CHECK(elbo_relu(ctx, bad) == NULL);
    CHECK(strstr(elbo_last_error(), "reshape") != NULL);
    CHECK(elbo_backward(ctx, NULL) != ELBO_OK);
    elbo_ctx_free(ctx);
}

/* A message that wraps the previous one ("%s: %s", where, elbo_last_error()) keeps it whole. */
TEST(error_message_can_wrap_the_last_one) {
    elbo_error(ELBO_ERR_ARG, "schedule learned: its parameters are not set");
    elbo_error(ELBO_ERR_ARG, "%s: %s", "runs/ckpt.safetensors", elbo_last_error());
    CHECK(strcmp(elbo_last_error(),
                 "runs/ckpt.safetensors: schedule learned: its parameters are not set") == 0);
    CHECK(elbo_last_status() == ELBO_ERR_ARG);
}

/* No-grad mode (sampling): nothing is recorded, outputs do not require gradients, and
 * backward reports that there is nothing to differentiate. */
TEST(no_grad_mode_records_nothing) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_full(ctx, 1, (int64_t[]){4}, 0.5f);
    elbo_tensor_requires_grad(x, 1);
    int prev = elbo_ctx_set_grad(ctx, 0);
    CHECK(prev == 1);
    elbo_tensor *y = elbo_relu(ctx, elbo_reshape2(ctx, x, 2, 2));
    CHECK(y && !y->requires_grad && y->node == NULL && y->data[3] == 0.5f);
    CHECK(elbo_backward(ctx, elbo_sum(ctx, y)) == ELBO_ERR_STATE);
    elbo_ctx_set_grad(ctx, 1);
    elbo_tensor *z = elbo_sum(ctx, elbo_relu(ctx, x));
    CHECK(z && z->requires_grad && elbo_backward(ctx, z) == ELBO_OK);
    CHECK(x->grad && x->grad[0] == 1.0f && x->grad[3] == 1.0f);
    elbo_ctx_free(ctx);
}

/* A reshape adopts the gradient buffer of its output when its base has none yet; a second
 * consumer of the base then still accumulates correctly (d/dx [sum(relu(x)) + sum(3 x)]). */
TEST(grad_accumulates_over_several_consumers) {
    for (int order = 0; order < 2; order++) { /* reshape consumer last (adopts) or first */
        elbo_ctx *ctx = elbo_ctx_new(0);
        elbo_tensor *x = elbo_tensor_new2(ctx, 2, 3);
        for (int i = 0; i < 6; i++) x->data[i] = (float)i - 2.5f;
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor *a, *b;
        if (order == 0) {
            b = elbo_sum(ctx, elbo_scale(ctx, x, 3.0f));
            a = elbo_sum(ctx, elbo_relu(ctx, elbo_reshape2(ctx, x, 3, 2)));
        } else {
            a = elbo_sum(ctx, elbo_relu(ctx, elbo_reshape2(ctx, x, 3, 2)));
            b = elbo_sum(ctx, elbo_scale(ctx, x, 3.0f));
        }
        CHECK(elbo_backward(ctx, elbo_add(ctx, a, b)) == ELBO_OK);
        for (int i = 0; i < 6; i++) CHECK_NEAR(x->grad[i], (x->data[i] > 0 ? 1.0 : 0.0) + 3.0, 0);
        elbo_ctx_free(ctx);
    }
}

/* elbo_set_flush_denormals: with it on, a product that underflows is 0 and a subnormal input
 * reads as 0 on the calling thread and on the pool's other threads; off restores gradual
 * underflow everywhere. */
#include <omp.h>
TEST(core_flush_denormals_on_every_thread) {
#if defined(__SSE__) || defined(__x86_64__)
    int saved = elbo_get_threads();
    elbo_set_threads(2);
    for (int on = 1; on >= 0; on--) {
        CHECK(elbo_set_flush_denormals(on) == ELBO_OK);
        CHECK(elbo_get_flush_denormals() == on);
        int flushed[2] = {-1, -1};
#pragma omp parallel num_threads(2)
        {
            volatile float tiny = 1e-30f, sub = 1e-40f; /* 1e-40 is subnormal */
            float under = tiny * 1e-10f, in = sub * 1.0f;
            int t = omp_get_thread_num();
            if (t < 2) flushed[t] = under == 0.0f && in == 0.0f ? 1 : (under > 0 && in > 0 ? 0 : 2);
        }
        CHECK_MSG(flushed[0] == on && (omp_get_max_threads() < 2 || flushed[1] == on),
                  "flush %d: thread results %d %d (1 flushed, 0 kept, 2 mixed)", on, flushed[0],
                  flushed[1]);
    }
    elbo_set_threads(saved);
#else
    CHECK(elbo_set_flush_denormals(0) == ELBO_OK);
    CHECK(elbo_set_flush_denormals(1) == ELBO_ERR_ARG);
#endif
}

/* Gradient buffers passed on (elbo__grad_pass_on): y = a + b hands d/dy to a, a reshape to
 * its base. The gradients must be those of separate buffers: a + a is 2 gy, a - a is 0, an
 * input also used elsewhere still sums all its consumers, a parameter's gradient still lands
 * in its paramset slot (a reshaped parameter), and a retained intermediate keeps its own. */
TEST(grad_pass_on_keeps_every_gradient) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_new1(ctx, 4), *c = elbo_tensor_new1(ctx, 4);
    for (int i = 0; i < 4; i++) a->data[i] = (float)i + 1, c->data[i] = 0.5f * (float)i - 1;
    elbo_tensor_requires_grad(a, 1);
    /* L = sum(c (a + a)) + sum(c (a - a)) + sum(3 a): dL/da = 2 c + 0 + 3 */
    elbo_tensor *l1 = elbo_sum(ctx, elbo_mul(ctx, c, elbo_add(ctx, a, a)));
    elbo_tensor *l2 = elbo_sum(ctx, elbo_mul(ctx, c, elbo_sub(ctx, a, a)));
    elbo_tensor *l3 = elbo_sum(ctx, elbo_scale(ctx, a, 3.0f));
    CHECK(elbo_backward(ctx, elbo_add(ctx, elbo_add(ctx, l1, l2), l3)) == ELBO_OK);
    for (int i = 0; i < 4; i++) CHECK_NEAR(a->grad[i], 2.0 * c->data[i] + 3.0, 0);

    /* y = a + b retained: y->grad = d/dy = c after backward, with a and b right too */
    elbo_ctx_reset(ctx);
    a = elbo_tensor_new1(ctx, 4);
    elbo_tensor *b = elbo_tensor_new1(ctx, 4);
    c = elbo_tensor_new1(ctx, 4);
    for (int i = 0; i < 4; i++) a->data[i] = b->data[i] = 1, c->data[i] = (float)i;
    elbo_tensor_requires_grad(a, 1);
    elbo_tensor_requires_grad(b, 1);
    elbo_tensor *y = elbo_add(ctx, a, b);
    elbo_tensor_retain_grad(y);
    /* L = sum(c y) + sum(a^2): dL/dy = c, dL/da = c + 2 a, dL/db = c */
    CHECK(elbo_backward(ctx, elbo_add(ctx, elbo_sum(ctx, elbo_mul(ctx, c, y)),
                                      elbo_sum(ctx, elbo_square(ctx, a)))) == ELBO_OK);
    for (int i = 0; i < 4; i++) {
        CHECK_NEAR(y->grad[i], c->data[i], 0);
        CHECK_NEAR(a->grad[i], c->data[i] + 2.0, 0);
        CHECK_NEAR(b->grad[i], c->data[i], 0);
    }
    elbo_ctx_free(ctx);

    /* a parameter reshaped and added: its gradient is in the paramset's block */
    elbo_paramset *ps = elbo_paramset_new();
    elbo_tensor *w = elbo_paramset_add(ps, "p", "w", 2, (int64_t[]){2, 3},
                                       (elbo_init){ELBO_INIT_CONST, 0.25f});
    CHECK(w && elbo_paramset_finalize(ps, 1) == ELBO_OK);
    w = elbo_paramset_find(ps, "p.w");
    ctx = elbo_ctx_new(0);
    elbo_paramset_zero_grad(ps);
    elbo_tensor *v = elbo_tensor_new1(ctx, 6);
    for (int i = 0; i < 6; i++) v->data[i] = (float)i;
    elbo_tensor *wr = elbo_reshape(ctx, w, 1, (int64_t[]){6});
    CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_mul(ctx, elbo_add(ctx, wr, v), v))) == ELBO_OK);
    const float *gblock = elbo_paramset_grad(ps);
    for (int i = 0; i < 6; i++) CHECK_NEAR(gblock[i], (double)i, 0);
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

/* The op profile: calls counted per op name, forward and backward times non-negative and
 * summing to the total; off, the table says so. */
TEST(ctx_profile_counts_ops) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    char buf[4096];
    elbo_ctx_profile_format(ctx, 1, buf, sizeof buf);
    CHECK(strstr(buf, "not enabled") != NULL);
    CHECK(elbo_ctx_set_profile(ctx, 1) == ELBO_OK);
    for (int step = 0; step < 2; step++) {
        elbo_ctx_reset(ctx);
        elbo_tensor *x = elbo_tensor_full(ctx, 1, (int64_t[]){1000}, 0.5f);
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor *y = elbo_mul(ctx, elbo_exp(ctx, x), elbo_exp(ctx, x));
        CHECK(elbo_backward(ctx, elbo_sum(ctx, y)) == ELBO_OK);
    }
    int len = elbo_ctx_profile_format(ctx, 2, buf, sizeof buf);
    CHECK(len > 0 && len < (int)sizeof buf);
    /* per step: exp twice, mul once, sum once */
    char op[32];
    double calls, f, b, t;
    int seen = 0;
    for (char *line = strchr(buf, '\n') + 1; line && *line; line = strchr(line, '\n') + 1) {
        if (sscanf(line, "%31s %lf %lf %lf %lf", op, &calls, &f, &b, &t) == 5) {
            CHECK(f >= 0 && b >= 0 && fabs(f + b - t) < 2e-3);
            if (!strcmp(op, "exp")) {
                CHECK(calls == 2.0);
                seen++;
            }
            if (!strcmp(op, "mul") || !strcmp(op, "sum")) {
                CHECK(calls == 1.0);
                seen++;
            }
        }
        if (!strchr(line, '\n')) break;
    }
    CHECK(seen == 3);
    /* a buffer too small: truncated, the length needed returned */
    CHECK(elbo_ctx_profile_format(ctx, 2, buf, 16) == len);
    CHECK(elbo_ctx_set_profile(ctx, 0) == ELBO_OK);
    elbo_ctx_free(ctx);
}
