/* Normalisation ops: group_norm and layer_norm, forward against double references, known
 * statistics, finite-difference gradients, determinism across thread counts, errors. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* Double reference of group norm: x (B,C,S) flattened, G groups. */
static void ref_group_norm(const float *x, double *y, int64_t B, int64_t C, int64_t S, int64_t G,
                           const float *gamma, const float *beta, double eps) {
    int64_t Cg = C / G, N = Cg * S;
    for (int64_t b = 0; b < B; b++)
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x + (b * C + g * Cg) * S;
            double mu = 0, var = 0;
            for (int64_t i = 0; i < N; i++) mu += xg[i];
            mu /= N;
            for (int64_t i = 0; i < N; i++) var += (xg[i] - mu) * (xg[i] - mu);
            var /= N;
            for (int64_t i = 0; i < N; i++) {
                int64_t c = g * Cg + i / S;
                double v = (xg[i] - mu) / sqrt(var + eps);
                y[(b * C + g * Cg) * S + i] = v * (gamma ? gamma[c] : 1.0) + (beta ? beta[c] : 0.0);
            }
        }
}

TEST(norm_group_norm_forward_vs_double) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new4(ctx, 2, 4, 3, 3);
    elbo_tensor *gm = elbo_tensor_new1(ctx, 4), *bt = elbo_tensor_new1(ctx, 4);
    elbo_rng_normal(elbo_ctx_rng(ctx), x->data, 72, 1.5f, 2.0f);
    elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, 4, 1.0f, 0.5f);
    elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, 4, 0.0f, 0.5f);
    double ref[72];
    int groups[3] = {1, 2, 4};
    for (int k = 0; k < 3; k++) {
        for (int affine = 0; affine < 2; affine++) {
            elbo_tensor *y =
                elbo_group_norm(ctx, x, groups[k], affine ? gm : NULL, affine ? bt : NULL, 1e-5f);
            CHECK(y && elbo_same_shape(x, y));
            ref_group_norm(x->data, ref, 2, 4, 9, groups[k], affine ? gm->data : NULL,
                           affine ? bt->data : NULL, 1e-5);
            /* Outputs are O(1): a few float ulps. */
            for (int i = 0; i < 72; i++) CHECK_NEAR(y->data[i], ref[i], 2e-6);
        }
    }
    elbo_ctx_free(ctx);
}

/* Known answer: without affine each (b, group) block has mean 0 and variance
 * var / (var + eps) ~ 1, whatever the input's offset and scale. */
TEST(norm_group_norm_group_stats) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    enum { B = 4, C = 16, S = 64, G = 8 };
    elbo_tensor *x = elbo_tensor_new4(ctx, B, C, 8, 8);
    elbo_rng_normal(elbo_ctx_rng(ctx), x->data, (size_t)x->numel, 3.0f, 5.0f);
    for (int64_t i = 0; i < x->numel; i++)
        x->data[i] += (float)(i / (S * 2 * 2)); /* per-group offsets */
    elbo_tensor *y = elbo_group_norm(ctx, x, G, NULL, NULL, 1e-5f);
    CHECK(y);
    int64_t N = (C / G) * S;
    for (int bg = 0; bg < B * G; bg++) {
        const float *yg = y->data + bg * N;
        double m = 0, v = 0;
        for (int64_t i = 0; i < N; i++) m += yg[i];
        m /= N;
        for (int64_t i = 0; i < N; i++) v += (yg[i] - m) * (yg[i] - m);
        v /= N;
        /* Float outputs of a normalised block: the mean to ~1e-7, var within eps/25 + rounding. */
        CHECK_NEAR(m, 0.0, 1e-5);
        CHECK_NEAR(v, 1.0, 1e-5);
    }
    elbo_ctx_free(ctx);
}

typedef struct {
    int groups, affine;
} gn_args;

static elbo_tensor *build_group_norm(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    gn_args *a = u;
    return elbo_group_norm(ctx, in[0], a->groups, a->affine ? in[1] : NULL,
                           a->affine ? in[2] : NULL, 1e-5f);
}

/* Normalisation divides by a data-dependent std, so outputs carry float rounding ~1e-7
 * which central differences with eps 1e-3 amplify to ~1e-4..1e-3 in L'; atol/rtol 2e-3. */
TEST(grad_norm_group_norm) {
    const int64_t shp[4] = {2, 4, 3, 3};
    gn_args cases[4] = {{2, 1}, {2, 0}, {1, 1}, {4, 1}};
    for (int k = 0; k < 4; k++) {
        gc_spec s = {.n_in = cases[k].affine ? 3 : 1,
                     .ndim = {4, 1, 1},
                     .shape = {{shp[0], shp[1], shp[2], shp[3]}, {4}, {4}},
                     .atol = 2e-3f,
                     .rtol = 2e-3f};
        char name[64];
        snprintf(name, sizeof name, "group_norm G=%d affine=%d", cases[k].groups, cases[k].affine);
        CHECK_GRAD(name, build_group_norm, &cases[k], &s);
    }
    /* groups = C without affine as well (instance norm). */
    gn_args inst = {4, 0};
    gc_spec si = {.n_in = 1, .ndim = {4}, .shape = {{2, 4, 3, 3}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("group_norm G=C", build_group_norm, &inst, &si);
    /* 3-D input (B, C, L). */
    gn_args a3 = {3, 1};
    gc_spec s3 = {
        .n_in = 3, .ndim = {3, 1, 1}, .shape = {{2, 6, 5}, {6}, {6}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("group_norm 3-D", build_group_norm, &a3, &s3);
}

/* Benchmark-sized input: forward and all gradients bitwise identical for 1 and 2 threads;
 * dbeta against a double reference (sum of dy per channel). */
TEST(norm_group_norm_deterministic_threads) {
    enum { B = 8, C = 32, S = 256, G = 8 };
    int64_t n = (int64_t)B * C * S;
    float *gy = malloc(n * sizeof(float)), *keep = malloc((n + 2 * C) * sizeof(float));
    elbo_rng r;
    elbo_rng_init(&r, 3);
    elbo_rng_normal(&r, gy, (size_t)n, 0, 1);
    int saved = elbo_get_threads(), same = 1;
    double dbeta_err = 0;
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int t = 1; t <= 2; t++) {
        elbo_set_threads(t);
        elbo_ctx_reset(ctx);
        elbo_rng_init(elbo_ctx_rng(ctx), 11);
        elbo_tensor *x = elbo_tensor_new4(ctx, B, C, 16, 16);
        elbo_tensor *gm = elbo_tensor_new1(ctx, C), *bt = elbo_tensor_new1(ctx, C);
        elbo_rng_normal(elbo_ctx_rng(ctx), x->data, (size_t)n, 0.5f, 2.0f);
        elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, C, 1.0f, 0.2f);
        elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, C, 0.0f, 0.2f);
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor_requires_grad(gm, 1);
        elbo_tensor_requires_grad(bt, 1);
        elbo_tensor *y = elbo_group_norm(ctx, x, G, gm, bt, 1e-5f);
        CHECK(y && elbo_backward_with(ctx, y, gy) == ELBO_OK);
        if (t == 1) {
            memcpy(keep, x->grad, n * sizeof(float));
            memcpy(keep + n, gm->grad, C * sizeof(float));
            memcpy(keep + n + C, bt->grad, C * sizeof(float));
        } else {
            same = memcmp(keep, x->grad, n * sizeof(float)) == 0 &&
                   memcmp(keep + n, gm->grad, C * sizeof(float)) == 0 &&
                   memcmp(keep + n + C, bt->grad, C * sizeof(float)) == 0;
        }
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int b = 0; b < B; b++)
                for (int i = 0; i < S; i++) s += gy[((int64_t)b * C + c) * S + i];
            if (fabs(s - bt->grad[c]) > dbeta_err) dbeta_err = fabs(s - bt->grad[c]);
        }
    }
    elbo_set_threads(saved);
    elbo_ctx_free(ctx);
    free(gy);
    free(keep);
    CHECK(same);
    /* Summed in double, rounded once to float (|sum| ~ 45): below 1e-5. */
    CHECK_NEAR(dbeta_err, 0.0, 1e-5);
}

TEST(norm_group_norm_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 6, 4);
    CHECK(elbo_group_norm(ctx, x, 4, NULL, NULL, 1e-5f) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "group_norm") && strstr(e, "6 channels") && strstr(e, "4 groups"));
    elbo_tensor *g = elbo_tensor_new1(ctx, 4);
    CHECK(elbo_group_norm(ctx, x, 3, g, NULL, 1e-5f) == NULL);
    e = elbo_last_error();
    CHECK(strstr(e, "group_norm") && strstr(e, "(2, 6, 4)") && strstr(e, "(4)"));
    CHECK(elbo_group_norm(ctx, x, 0, NULL, NULL, 1e-5f) == NULL);
    elbo_ctx_free(ctx);
}

/* ---- fused group norm + silu -------------------------------------------------------- */
/* Same float steps as the two ops in sequence (u = x a + b, then u sigmoid(u)): equal to a
 * few ulp; 1e-6 relative (plus 1e-7 absolute for outputs near 0 where silu crosses zero). */
TEST(norm_group_norm_silu_forward_matches_unfused) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new4(ctx, 3, 8, 5, 7);
    elbo_tensor *gm = elbo_tensor_new1(ctx, 8), *bt = elbo_tensor_new1(ctx, 8);
    elbo_rng_normal(elbo_ctx_rng(ctx), x->data, (size_t)x->numel, 0.7f, 2.0f);
    elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, 8, 1.0f, 0.5f);
    elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, 8, 0.0f, 0.5f);
    int groups[3] = {1, 2, 8};
    for (int k = 0; k < 3; k++)
        for (int affine = 0; affine < 2; affine++) {
            elbo_tensor *g = affine ? gm : NULL, *b = affine ? bt : NULL;
            elbo_tensor *y = elbo_group_norm_silu(ctx, x, groups[k], g, b, 1e-5f);
            elbo_tensor *ref = elbo_silu(ctx, elbo_group_norm(ctx, x, groups[k], g, b, 1e-5f));
            CHECK(y && ref && elbo_same_shape(x, y));
            double worst = 0;
            for (int64_t i = 0; i < x->numel; i++) {
                double d = fabs((double)y->data[i] - ref->data[i]) /
                           (1e-7 + 1e-6 * fabs((double)ref->data[i]));
                if (d > worst) worst = d;
            }
            CHECK(worst <= 1.0);
        }
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_group_norm_silu(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    gn_args *a = u;
    return elbo_group_norm_silu(ctx, in[0], a->groups, a->affine ? in[1] : NULL,
                                a->affine ? in[2] : NULL, 1e-5f);
}

/* As grad_norm_group_norm (normalisation rounding amplified by central differences; silu is
 * smooth with |silu''| <= 0.5, adding no more): atol/rtol 2e-3. */
TEST(grad_norm_group_norm_silu) {
    gn_args cases[3] = {{2, 1}, {2, 0}, {4, 1}};
    for (int k = 0; k < 3; k++) {
        gc_spec s = {.n_in = cases[k].affine ? 3 : 1,
                     .ndim = {4, 1, 1},
                     .shape = {{2, 4, 3, 3}, {4}, {4}},
                     .atol = 2e-3f,
                     .rtol = 2e-3f};
        char name[64];
        snprintf(name, sizeof name, "group_norm_silu G=%d affine=%d", cases[k].groups,
                 cases[k].affine);
        CHECK_GRAD(name, build_group_norm_silu, &cases[k], &s);
    }
    gn_args a3 = {3, 1};
    gc_spec s3 = {
        .n_in = 3, .ndim = {3, 1, 1}, .shape = {{2, 6, 5}, {6}, {6}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("group_norm_silu 3-D", build_group_norm_silu, &a3, &s3);
}

/* Benchmark-sized (parallel path, per-thread du buffers): forward and all gradients bitwise
 * identical for 1 and 2 threads; the gradients also match the unfused ops' to float rounding
 * (atol 1e-5 on O(1) gradients: the two paths differ only in silu' rounding, ~1e-7). */
TEST(norm_group_norm_silu_deterministic_threads) {
    enum { B = 8, C = 32, S = 256, G = 8 };
    int64_t n = (int64_t)B * C * S, nk = n + n + 2 * C;
    float *gy = malloc(n * sizeof(float)), *keep = malloc(nk * sizeof(float));
    elbo_rng r;
    elbo_rng_init(&r, 5);
    elbo_rng_normal(&r, gy, (size_t)n, 0, 1);
    int saved = elbo_get_threads(), same = 1;
    double unfused_err = 0;
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int t = 1; t <= 3; t++) { /* t = 3: the unfused ops, 2 threads */
        elbo_set_threads(t == 1 ? 1 : 2);
        elbo_ctx_reset(ctx);
        elbo_rng_init(elbo_ctx_rng(ctx), 13);
        elbo_tensor *x = elbo_tensor_new4(ctx, B, C, 16, 16);
        elbo_tensor *gm = elbo_tensor_new1(ctx, C), *bt = elbo_tensor_new1(ctx, C);
        elbo_rng_normal(elbo_ctx_rng(ctx), x->data, (size_t)n, 0.5f, 2.0f);
        elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, C, 1.0f, 0.2f);
        elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, C, 0.0f, 0.2f);
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor_requires_grad(gm, 1);
        elbo_tensor_requires_grad(bt, 1);
        elbo_tensor *y = t < 3 ? elbo_group_norm_silu(ctx, x, G, gm, bt, 1e-5f)
                               : elbo_silu(ctx, elbo_group_norm(ctx, x, G, gm, bt, 1e-5f));
        CHECK(y && elbo_backward_with(ctx, y, gy) == ELBO_OK);
        const float *got[4] = {y->data, x->grad, gm->grad, bt->grad};
        int64_t len[4] = {n, n, C, C};
        for (int k = 0, off = 0; k < 4; off += (int)len[k], k++) {
            if (t == 1)
                memcpy(keep + off, got[k], len[k] * sizeof(float));
            else if (t == 2)
                same = same && memcmp(keep + off, got[k], len[k] * sizeof(float)) == 0;
            else if (k == 1)
                for (int64_t i = 0; i < len[k]; i++) {
                    double d = fabs((double)keep[off + i] - got[k][i]);
                    if (d > unfused_err) unfused_err = d;
                }
        }
    }
    elbo_set_threads(saved);
    elbo_ctx_free(ctx);
    free(gy);
    free(keep);
    CHECK(same);
    CHECK_NEAR(unfused_err, 0.0, 1e-5);
}

TEST(norm_group_norm_silu_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 6, 4);
    CHECK(elbo_group_norm_silu(ctx, x, 4, NULL, NULL, 1e-5f) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "group_norm_silu") && strstr(e, "6 channels") && strstr(e, "4 groups"));
    elbo_tensor *g = elbo_tensor_new1(ctx, 4);
    CHECK(elbo_group_norm_silu(ctx, x, 3, NULL, g, 1e-5f) == NULL);
    e = elbo_last_error();
    CHECK(strstr(e, "group_norm_silu") && strstr(e, "(2, 6, 4)") && strstr(e, "(4)"));
    CHECK(elbo_group_norm_silu(ctx, NULL, 3, NULL, NULL, 1e-5f) == NULL);
    elbo_ctx_free(ctx);
}

/* ---- layer norm --------------------------------------------------------------------- */
TEST(norm_layer_norm_forward_vs_double) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    enum { R = 6, D = 10 };
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 3, D);
    elbo_tensor *gm = elbo_tensor_new1(ctx, D), *bt = elbo_tensor_new1(ctx, D);
    elbo_rng_normal(elbo_ctx_rng(ctx), x->data, R * D, -2.0f, 3.0f);
    elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, D, 1.0f, 0.5f);
    elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, D, 0.0f, 0.5f);
    for (int affine = 0; affine < 2; affine++) {
        elbo_tensor *y = elbo_layer_norm(ctx, x, affine ? gm : NULL, affine ? bt : NULL, 1e-5f);
        CHECK(y && elbo_same_shape(x, y));
        for (int r = 0; r < R; r++) {
            const float *xr = x->data + r * D;
            double mu = 0, var = 0;
            for (int d = 0; d < D; d++) mu += xr[d];
            mu /= D;
            for (int d = 0; d < D; d++) var += (xr[d] - mu) * (xr[d] - mu);
            var /= D;
            for (int d = 0; d < D; d++) {
                double want = (xr[d] - mu) / sqrt(var + 1e-5);
                if (affine) want = want * gm->data[d] + bt->data[d];
                CHECK_NEAR(y->data[r * D + d], want, 2e-6);
            }
        }
    }
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_layer_norm(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    int affine = *(int *)u;
    return elbo_layer_norm(ctx, in[0], affine ? in[1] : NULL, affine ? in[2] : NULL, 1e-5f);
}

TEST(grad_norm_layer_norm) {
    /* Same tolerance argument as group norm. */
    int aff = 1, noaff = 0;
    gc_spec s2 = {
        .n_in = 3, .ndim = {2, 1, 1}, .shape = {{3, 5}, {5}, {5}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("layer_norm (3,5)", build_layer_norm, &aff, &s2);
    gc_spec s3 = {
        .n_in = 3, .ndim = {3, 1, 1}, .shape = {{2, 3, 4}, {4}, {4}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("layer_norm (2,3,4)", build_layer_norm, &aff, &s3);
    gc_spec s4 = {.n_in = 1, .ndim = {3}, .shape = {{2, 3, 4}}, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("layer_norm no affine", build_layer_norm, &noaff, &s4);
}

TEST(norm_layer_norm_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new2(ctx, 3, 5), *g = elbo_tensor_new1(ctx, 4);
    CHECK(elbo_layer_norm(ctx, x, g, NULL, 1e-5f) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "layer_norm") && strstr(e, "(3, 5)") && strstr(e, "(4)"));
    CHECK(elbo_layer_norm(ctx, x, NULL, g, 1e-5f) == NULL && strstr(elbo_last_error(), "beta"));
    elbo_ctx_free(ctx);
}

/* Parallel paths (rows for dx, column blocks for dgamma/dbeta): the same bits for 1 and 2
 * threads. */
TEST(norm_layer_norm_deterministic_threads) {
    enum { R = 300, D = 130 };
    float *gy = malloc(R * D * sizeof(float)), *keep = malloc((R * D + 2 * D) * sizeof(float));
    elbo_rng r;
    elbo_rng_init(&r, 8);
    elbo_rng_normal(&r, gy, R * D, 0, 1);
    int saved = elbo_get_threads(), same = 1;
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int t = 1; t <= 2; t++) {
        elbo_set_threads(t);
        elbo_ctx_reset(ctx);
        elbo_rng_init(elbo_ctx_rng(ctx), 4);
        elbo_tensor *x = elbo_tensor_new2(ctx, R, D);
        elbo_tensor *gm = elbo_tensor_new1(ctx, D), *bt = elbo_tensor_new1(ctx, D);
        elbo_rng_normal(elbo_ctx_rng(ctx), x->data, R * D, 0.5f, 2.0f);
        elbo_rng_normal(elbo_ctx_rng(ctx), gm->data, D, 1.0f, 0.2f);
        elbo_rng_normal(elbo_ctx_rng(ctx), bt->data, D, 0.0f, 0.2f);
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor_requires_grad(gm, 1);
        elbo_tensor_requires_grad(bt, 1);
        elbo_tensor *y = elbo_layer_norm(ctx, x, gm, bt, 1e-5f);
        CHECK(y && elbo_backward_with(ctx, y, gy) == ELBO_OK);
        if (t == 1) {
            memcpy(keep, x->grad, R * D * sizeof(float));
            memcpy(keep + R * D, gm->grad, D * sizeof(float));
            memcpy(keep + R * D + D, bt->grad, D * sizeof(float));
        } else {
            same = memcmp(keep, x->grad, R * D * sizeof(float)) == 0 &&
                   memcmp(keep + R * D, gm->grad, D * sizeof(float)) == 0 &&
                   memcmp(keep + R * D + D, bt->grad, D * sizeof(float)) == 0;
        }
    }
    elbo_set_threads(saved);
    elbo_ctx_free(ctx);
    free(gy);
    free(keep);
    CHECK(same);
}
