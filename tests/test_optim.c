/* Optimisers, clipping, EMA and LR schedules: against PyTorch 1.13 fixtures
 * (tools/gen_optim_fixtures.py) and against their formulas. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* A finalized paramset with one vector parameter "p" of n values. */
static elbo_paramset *vector_params(int64_t n) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_init zero = {ELBO_INIT_CONST, 0.0f};
    if (!elbo_paramset_add(ps, "", "p", 1, &n, zero) || elbo_paramset_finalize(ps, 1) != ELBO_OK) {
        elbo_paramset_free(ps);
        return NULL;
    }
    return ps;
}

/* p[0..2] <- a, b, c: the weights of the 3-parameter EMA tests. */
static void set3(float *p, float a, float b, float c) {
    p[0] = a;
    p[1] = b;
    p[2] = c;
}

/* Largest distance in units in the last place between a[i] and b[i] (finite floats). */
static int64_t max_ulp(const float *a, const float *b, int64_t n, int64_t *where) {
    int64_t worst = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t ia, ib;
        memcpy(&ia, &a[i], 4);
        memcpy(&ib, &b[i], 4);
        int64_t ka = ia < 0 ? (int64_t)INT32_MIN - ia : ia,
                kb = ib < 0 ? (int64_t)INT32_MIN - ib : ib;
        int64_t d = ka > kb ? ka - kb : kb - ka;
        if (d > worst || a[i] != a[i]) {
            worst = a[i] != a[i] ? INT64_MAX : d;
            *where = i;
        }
    }
    return worst;
}

/* Replays the fixture's steps. Tolerance: none, the bits must agree. optim.c performs
 * PyTorch 1.13's float operations in its order with its fused multiply-adds, every one of
 * them correctly rounded (IEEE +, *, /, sqrt, fma), so there is nothing left to differ. A
 * relative tolerance would in any case be the wrong measure: gradients up to 100 make
 * several parameters the difference of O(10) updates, where one rounding of an update is
 * ~1e-6 relative to the result. */
static int replay(const char *name, char *msg, size_t len) {
    fx_file f;
    if (fx_load(&f, name) != 0) {
        snprintf(msg, len, "%s", elbo_last_error());
        return 0;
    }
    const fx_entry *p0 = fx_get(&f, "p0"), *grads = fx_get(&f, "grads"), *lrs = fx_get(&f, "lrs"),
                   *hyper = fx_get(&f, "hyper"), *params = fx_get(&f, "params"),
                   *s0 = fx_get(&f, "state0"), *s1 = fx_get(&f, "state1");
    int ok = 0;
    elbo_paramset *ps = NULL;
    elbo_optim *opt = NULL;
    if (!p0 || !grads || !lrs || !hyper || !params || !s0) {
        snprintf(msg, len, "%s: missing entries", name);
        goto done;
    }
    int64_t n = p0->numel, steps = lrs->numel;
    const float *h = hyper->data;
    ps = vector_params(n);
    elbo_optim_params q;
    elbo_optim_params_init(&q, (elbo_opt_kind)(int)h[7]);
    q.beta1 = h[0];
    q.beta2 = h[1];
    q.eps = h[2];
    q.weight_decay = h[3];
    q.momentum = h[4];
    q.dampening = h[5];
    q.nesterov = h[6] != 0;
    opt = elbo_optim_new(ps, &q);
    if (!ps || !opt) {
        snprintf(msg, len, "%s: %s", name, elbo_last_error());
        goto done;
    }
    memcpy(elbo_paramset_data(ps), p0->data, (size_t)n * sizeof(float));
    for (int64_t k = 0; k < steps; k++) {
        memcpy(elbo_paramset_grad(ps), (float *)grads->data + k * n, (size_t)n * sizeof(float));
        elbo_optim_step(opt, ((float *)lrs->data)[k]);
        int64_t at = 0, u = max_ulp(elbo_paramset_data(ps), (float *)params->data + k * n, n, &at);
        if (u != 0) {
            snprintf(msg, len, "%s step %lld: element %lld got %.9g, want %.9g (%lld ulp)", name,
                     (long long)k + 1, (long long)at, elbo_paramset_data(ps)[at],
                     ((float *)params->data)[k * n + at], (long long)u);
            goto done;
        }
    }
    for (int which = 0; which < 2; which++) {
        const fx_entry *want = which ? s1 : s0;
        int64_t sn;
        float *got = elbo_optim_state(opt, which, &sn);
        if (!want != !got || (got && sn != n)) {
            snprintf(msg, len, "%s: state %d present %d, expected %d", name, which, got != NULL,
                     want != NULL);
            goto done;
        }
        int64_t at = 0, u = got ? max_ulp(got, want->data, n, &at) : 0;
        if (u != 0) {
            snprintf(msg, len, "%s state %d: element %lld got %.9g, want %.9g (%lld ulp)", name,
                     which, (long long)at, got[at], ((float *)want->data)[at], (long long)u);
            goto done;
        }
    }
    ok = 1;
done:
    elbo_optim_free(opt);
    elbo_paramset_free(ps);
    fx_free(&f);
    return ok;
}

#define REPLAY_TEST(tname, fixture)                                                                \
    TEST(tname) {                                                                                  \
        char msg[512];                                                                             \
        CHECK_MSG(replay(fixture, msg, sizeof msg), "%s", msg);                                    \
    }

REPLAY_TEST(optim_adam_matches_torch, "optim_adam")
REPLAY_TEST(optim_adam_weight_decay_matches_torch, "optim_adam_wd")
REPLAY_TEST(optim_adamw_matches_torch, "optim_adamw")
REPLAY_TEST(optim_sgd_momentum_matches_torch, "optim_sgd_momentum")
REPLAY_TEST(optim_sgd_nesterov_wd_matches_torch, "optim_sgd_nesterov_wd")

TEST(optim_clip_grad_norm_matches_torch) {
    fx_file f;
    CHECK(fx_load(&f, "optim_clip") == 0);
    elbo_paramset *ps = elbo_paramset_new();
    int64_t shapes[3][3] = {{4, 5}, {7}, {2, 3, 2}};
    int nd[3] = {2, 1, 3};
    elbo_init zero = {ELBO_INIT_CONST, 0.0f};
    elbo_tensor *t[3];
    for (int i = 0; i < 3; i++) {
        char nm[32];
        snprintf(nm, sizeof nm, "t%d", i);
        t[i] = elbo_paramset_add(ps, "", nm, nd[i], shapes[i], zero);
    }
    CHECK(elbo_paramset_finalize(ps, 3) == ELBO_OK);
    const float *max_norm = fx_get(&f, "max_norm")->data, *norm = fx_get(&f, "norm")->data;
    for (int k = 0; k < 2; k++) {
        for (int i = 0; i < 3; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "g%d", i);
            const fx_entry *g = fx_get(&f, nm);
            CHECK(g && g->numel == t[i]->numel);
            memcpy(t[i]->grad, g->data, (size_t)g->numel * sizeof(float));
        }
        float got = elbo_clip_grad_norm(ps, max_norm[k]);
        /* The norm is summed in double here and per tensor in float by PyTorch, whose float
         * sums of <= 20 squares are within 20 * 2^-24 = 1.2e-6 relative of the exact sum
         * (half that after the square root); the bits happen to agree for this fixture. */
        CHECK_NEAR(got, norm[k], 2e-6 * norm[k]);
        for (int i = 0; i < 3; i++) {
            char nm[32];
            snprintf(nm, sizeof nm, "clip%d_g%d", k, i);
            const fx_entry *g = fx_get(&f, nm);
            CHECK(g);
            /* One multiplication by a coefficient max_norm / (norm + 1e-6) that inherits the
             * norm's 1e-6 relative tolerance (atol: no gradient here is below 1e-3). */
            CHECK_CLOSE_ARR(nm, t[i]->grad, (const float *)g->data, g->numel, 1e-9f, 2e-6f);
        }
    }
    CHECK(norm[0] > max_norm[0] && norm[1] < max_norm[1]); /* one clipping case, one not */
    elbo_paramset_free(ps);
    fx_free(&f);
}

TEST(optim_defaults_as_torch) {
    elbo_optim_params p;
    elbo_optim_params_init(&p, ELBO_OPT_ADAM);
    CHECK(p.lr == 1e-3f && p.beta1 == 0.9f && p.beta2 == 0.999f && p.eps == 1e-8f &&
          p.weight_decay == 0);
    elbo_optim_params_init(&p, ELBO_OPT_ADAMW);
    CHECK(p.lr == 1e-3f && p.weight_decay == 1e-2f);
    elbo_optim_params_init(&p, ELBO_OPT_SGD);
    CHECK(p.lr == 1e-2f && p.momentum == 0 && p.dampening == 0 && !p.nesterov);
}

TEST(optim_state_buffers_and_errors) {
    elbo_paramset *ps = vector_params(10);
    CHECK(ps);
    elbo_optim_params q;
    elbo_optim_params_init(&q, ELBO_OPT_SGD);
    elbo_optim *o = elbo_optim_new(ps, &q);
    int64_t n = -1;
    CHECK(o && elbo_optim_state(o, 0, &n) == NULL && n == 0 && elbo_optim_state(o, 1, &n) == NULL);
    elbo_optim_free(o);
    q.momentum = 0.5f;
    o = elbo_optim_new(ps, &q);
    CHECK(o && elbo_optim_state(o, 0, &n) != NULL && n == 10 && !elbo_optim_state(o, 1, NULL));
    elbo_optim_free(o);
    q.nesterov = 1;
    q.dampening = 0.1f;
    CHECK(elbo_optim_new(ps, &q) == NULL);
    CHECK(strstr(elbo_last_error(), "nesterov"));
    elbo_optim_params_init(&q, ELBO_OPT_ADAM);
    o = elbo_optim_new(ps, &q);
    CHECK(o && elbo_optim_state(o, 0, &n) && elbo_optim_state(o, 1, &n) && n == 10);
    elbo_optim_free(o);
    elbo_paramset *unfinished = elbo_paramset_new();
    CHECK(elbo_optim_new(unfinished, &q) == NULL);
    CHECK(strstr(elbo_last_error(), "finalized"));
    elbo_paramset_free(unfinished);
    elbo_paramset_free(ps);
}

/* Fills a big paramset's values and gradients with fixed random numbers. */
static elbo_paramset *random_params(int64_t n, uint64_t seed) {
    elbo_paramset *ps = vector_params(n);
    if (!ps) return NULL;
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_normal(&r, elbo_paramset_data(ps), (size_t)n, 0, 1);
    elbo_rng_normal(&r, elbo_paramset_grad(ps), (size_t)n, 0, 1);
    return ps;
}

/* Three Adam steps, clipping and an EMA update on 200k values (parallel loops): the same bits
 * with 1 and 2 threads. */
TEST(optim_same_bits_any_thread_count) {
    enum { N = 200003 };
    float *out[2];
    float norms[2];
    int saved = elbo_get_threads();
    for (int r = 0; r < 2; r++) {
        elbo_set_threads(r + 1);
        elbo_paramset *ps = random_params(N, 5);
        CHECK(ps);
        elbo_optim_params q;
        elbo_optim_params_init(&q, ELBO_OPT_ADAMW);
        elbo_optim *o = elbo_optim_new(ps, &q);
        elbo_ema *e = elbo_ema_new(ps, 0.99f);
        CHECK(o && e);
        norms[r] = elbo_clip_grad_norm(ps, 10.0f);
        for (int k = 0; k < 3; k++) {
            elbo_optim_step(o, 1e-2f);
            elbo_ema_update(e, ps);
        }
        out[r] = malloc(2 * N * sizeof(float));
        memcpy(out[r], elbo_paramset_data(ps), N * sizeof(float));
        memcpy(out[r] + N, elbo_ema_data(e, NULL), N * sizeof(float));
        elbo_ema_free(e);
        elbo_optim_free(o);
        elbo_paramset_free(ps);
    }
    elbo_set_threads(saved);
    int same = memcmp(out[0], out[1], 2 * N * sizeof(float)) == 0;
    free(out[0]);
    free(out[1]);
    CHECK(same);
    CHECK(memcmp(&norms[0], &norms[1], sizeof(float)) == 0);
}

/* A checkpoint (values, state buffers, step count) restored into a new optimiser continues
 * bit for bit as if training had not stopped. */
TEST(optim_resume_from_state_is_exact) {
    enum { N = 101 };
    elbo_paramset *a = random_params(N, 9), *b = random_params(N, 9);
    CHECK(a && b);
    elbo_optim_params q;
    elbo_optim_params_init(&q, ELBO_OPT_ADAM);
    q.weight_decay = 0.01f;
    elbo_optim *oa = elbo_optim_new(a, &q), *ob = elbo_optim_new(b, &q);
    CHECK(oa && ob);
    for (int k = 0; k < 5; k++) {
        if (k == 3) { /* b "restarts" from a's checkpoint */
            elbo_optim_free(ob);
            ob = elbo_optim_new(b, &q);
            memcpy(elbo_paramset_data(b), elbo_paramset_data(a), N * sizeof(float));
            for (int w = 0; w < 2; w++) {
                int64_t n;
                memcpy(elbo_optim_state(ob, w, &n), elbo_optim_state(oa, w, NULL),
                       N * sizeof(float));
            }
            elbo_optim_set_steps(ob, elbo_optim_steps(oa));
        }
        elbo_optim_step(oa, 1e-2f);
        elbo_optim_step(ob, 1e-2f);
    }
    CHECK(elbo_optim_steps(ob) == 5);
    CHECK(memcmp(elbo_paramset_data(a), elbo_paramset_data(b), N * sizeof(float)) == 0);
    elbo_optim_free(oa);
    elbo_optim_free(ob);
    elbo_paramset_free(a);
    elbo_paramset_free(b);
}

/* Adam's first step moves every parameter by lr sign(g) (m/(sqrt v) = g/|g| after bias
 * correction) when |g| >> eps: a closed-form check independent of the fixtures. */
TEST(optim_adam_first_step_is_lr_sign_g) {
    elbo_paramset *ps = vector_params(8);
    CHECK(ps);
    float *p = elbo_paramset_data(ps), *g = elbo_paramset_grad(ps);
    for (int i = 0; i < 8; i++) {
        p[i] = 0.5f * i;
        g[i] = (i % 2 ? 1.0f : -1.0f) * (0.1f + i);
    }
    elbo_optim_params q;
    elbo_optim_params_init(&q, ELBO_OPT_ADAM);
    elbo_optim *o = elbo_optim_new(ps, &q);
    CHECK(o);
    elbo_optim_step(o, 0.01f);
    /* |g| >= 0.1: eps changes the step by at most 1e-7 relative. */
    for (int i = 0; i < 8; i++) CHECK_NEAR(p[i], 0.5f * i - 0.01f * (i % 2 ? 1 : -1), 1e-6);
    elbo_optim_free(o);
    elbo_paramset_free(ps);
}

TEST(optim_clip_zero_and_small_gradients) {
    elbo_paramset *ps = vector_params(4);
    CHECK(ps);
    float *g = elbo_paramset_grad(ps);
    CHECK(elbo_clip_grad_norm(ps, 1.0f) == 0.0f); /* zero gradients stay zero, no NaN */
    for (int i = 0; i < 4; i++) CHECK(g[i] == 0.0f);
    g[0] = 3;
    g[1] = 4; /* norm 5 */
    CHECK_NEAR(elbo_clip_grad_norm(ps, 10.0f), 5.0, 0);
    CHECK(g[0] == 3 && g[1] == 4); /* coefficient >= 1: untouched */
    CHECK_NEAR(elbo_clip_grad_norm(ps, 1.0f), 5.0, 0);
    CHECK_NEAR(g[0], 3.0 / (5.0 + 1e-6), 1e-7);
    CHECK_NEAR(g[1], 4.0 / (5.0 + 1e-6), 1e-7);
    elbo_paramset_free(ps);
}

TEST(optim_ema_update_and_swap) {
    elbo_paramset *ps = vector_params(3);
    CHECK(ps);
    float *p = elbo_paramset_data(ps);
    set3(p, 1, 2, -4);
    elbo_ema *e = elbo_ema_new(ps, 0.75f);
    CHECK(e);
    int64_t n;
    float *w = elbo_ema_data(e, &n);
    CHECK(n == 3 && w[0] == 1 && w[1] == 2 && w[2] == -4); /* starts at the weights */
    set3(p, 5, 2, 0);
    elbo_ema_update(e, ps);
    /* 0.75 ema + 0.25 theta, exact in binary. */
    CHECK(w[0] == 2.0f && w[1] == 2.0f && w[2] == -3.0f);
    elbo_ema_update(e, ps);
    CHECK(w[0] == 2.75f && w[1] == 2.0f && w[2] == -2.25f);
    elbo_ema_swap(e, ps);
    CHECK(p[0] == 2.75f && p[2] == -2.25f && w[0] == 5 && w[2] == 0);
    elbo_ema_swap(e, ps);
    CHECK(p[0] == 5 && p[1] == 2 && p[2] == 0 && w[0] == 2.75f);
    elbo_ema_free(e);
    elbo_paramset_free(ps);
}

/* The warm-up of diffusers' EMAModel: d_1 = 0 (a copy), d_n = min(decay, n / (n + 9)). */
TEST(optim_ema_warmup) {
    elbo_paramset *ps = vector_params(3);
    CHECK(ps);
    float *p = elbo_paramset_data(ps);
    set3(p, 1, 2, -4);
    elbo_ema *e = elbo_ema_new(ps, 0.999f);
    CHECK(e);
    /* off: the constant decay at every update */
    CHECK(elbo_ema_decay_at(e, 1) == 0.999f && elbo_ema_decay_at(e, 50) == 0.999f);
    elbo_ema_set_warmup(e, 1);
    CHECK(elbo_ema_decay_at(e, 1) == 0.0f);
    CHECK(elbo_ema_decay_at(e, 2) == (float)(2.0 / 11.0));
    CHECK(elbo_ema_decay_at(e, 3) == 0.25f);
    CHECK(elbo_ema_decay_at(e, 1000) == (float)(1000.0 / 1009.0));
    CHECK(elbo_ema_decay_at(e, 8990) == (float)(8990.0 / 8999.0)); /* just under 0.999 */
    CHECK(elbo_ema_decay_at(e, 8991) == 0.999f);                   /* 8991 / 9000 = 0.999 */
    CHECK(elbo_ema_decay_at(e, 1000000) == 0.999f);
    float *w = elbo_ema_data(e, NULL);
    set3(p, 5, 2, 0);
    elbo_ema_update_at(e, ps, 1); /* a copy of the weights, the initial ones forgotten */
    CHECK(w[0] == 5.0f && w[1] == 2.0f && w[2] == 0.0f);
    set3(p, 6, 2, 11);
    elbo_ema_update_at(e, ps, 2); /* 2/11 ema + 9/11 theta */
    CHECK_NEAR(w[0], 6.0 - 2.0 / 11.0, 1e-6);
    CHECK_NEAR(w[2], 9.0, 1e-6);
    CHECK(w[1] == 2.0f);
    float w0 = w[0];
    elbo_ema_update_at(e, ps, 3); /* 1/4 ema + 3/4 theta */
    CHECK_NEAR(w[0], 0.25 * w0 + 4.5, 1e-6);
    /* elbo_ema_update keeps the constant decay */
    w0 = w[0];
    elbo_ema_update(e, ps);
    CHECK(w[0] == 0.999f * w0 + (float)(1.0 - 0.999f) * 6.0f);
    elbo_ema_free(e);
    elbo_paramset_free(ps);
}

TEST(optim_lr_schedule_values) {
    elbo_lr_schedule s = {
        .base_lr = 1e-3f, .min_lr = 1e-5f, .warmup_steps = 10, .total_steps = 110};
    /* warm-up: base (step + 1) / warmup */
    CHECK_NEAR(elbo_lr_at(&s, 0), 1e-4, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 4), 5e-4, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 9), 1e-3, 1e-10);
    /* cosine: min + (base - min) (1 + cos(pi (step - 10) / 100)) / 2 */
    CHECK_NEAR(elbo_lr_at(&s, 10), 1e-3, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 35), 1e-5 + 0.99e-3 * (1 + cos(M_PI / 4)) / 2, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 60), 1e-5 + 0.99e-3 / 2, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 109), 1e-5 + 0.99e-3 * (1 + cos(M_PI * 0.99)) / 2, 1e-10);
    CHECK_NEAR(elbo_lr_at(&s, 110), 1e-5, 1e-12);
    CHECK_NEAR(elbo_lr_at(&s, 1000), 1e-5, 1e-12);
    elbo_lr_schedule c = {.base_lr = 2e-4f, .min_lr = 0, .warmup_steps = 0, .total_steps = 0};
    CHECK(elbo_lr_at(&c, 0) == 2e-4f && elbo_lr_at(&c, 123456) == 2e-4f); /* constant */
    elbo_lr_schedule w = {.base_lr = 1.0f, .min_lr = 0, .warmup_steps = 4, .total_steps = 4};
    CHECK(elbo_lr_at(&w, 0) == 0.25f && elbo_lr_at(&w, 3) == 1.0f && elbo_lr_at(&w, 50) == 1.0f);
}
