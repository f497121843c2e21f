/* Indexing and shape ops: embedding, concat, permute/transpose, dropout. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void fill_seq(elbo_tensor *t, float scale) {
    for (int64_t i = 0; i < t->numel; i++) t->data[i] = scale * (float)i;
}

/* ---- embedding ---------------------------------------------------------------------- */
TEST(shape_embedding_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *w = elbo_tensor_new2(ctx, 5, 3);
    fill_seq(w, 0.5f);
    int32_t ids[4] = {3, 0, 3, 4};
    elbo_tensor *y = elbo_embedding(ctx, w, ids, 4);
    CHECK(y && y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 3);
    for (int i = 0; i < 4; i++)
        for (int d = 0; d < 3; d++) CHECK(y->data[i * 3 + d] == w->data[ids[i] * 3 + d]);
    elbo_ctx_free(ctx);
}

typedef struct {
    const int32_t *ids;
    int64_t n;
} emb_args;

static elbo_tensor *build_embedding(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    emb_args *a = u;
    return elbo_embedding(ctx, in[0], a->ids, a->n);
}

TEST(grad_shape_embedding_repeated_ids) {
    /* ids repeat (1 three times): their row gradients must add up. The op is linear, so
     * the only finite-difference error is float rounding of x +- eps (~1e-4 relative). */
    int32_t ids[6] = {1, 3, 1, 0, 1, 3};
    emb_args a = {ids, 6};
    gc_spec s = {.n_in = 1, .ndim = {2}, .shape = {{5, 4}}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("embedding", build_embedding, &a, &s);
}

/* The parallel (bucketed) backward path: gradient vs a double reference, and the same
 * bits for 1 and 2 threads. */
TEST(shape_embedding_backward_large_deterministic) {
    enum { V = 97, D = 64, N = 1500 };
    int32_t *ids = malloc(N * sizeof(int32_t));
    float *gy = malloc((size_t)N * D * sizeof(float));
    float *g1 = malloc((size_t)V * D * sizeof(float));
    double *ref = calloc((size_t)V * D, sizeof(double));
    elbo_rng r;
    elbo_rng_init(&r, 5);
    for (int i = 0; i < N; i++) ids[i] = (int32_t)elbo_rng_below(&r, i % 3 ? 7 : V);
    elbo_rng_normal(&r, gy, (size_t)N * D, 0, 1);
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) ref[ids[i] * D + d] += gy[i * D + d];
    int saved = elbo_get_threads(), same = 1;
    double worst = 0;
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int t = 1; t <= 2; t++) {
        elbo_set_threads(t);
        elbo_ctx_reset(ctx);
        elbo_tensor *w = elbo_tensor_zeros(ctx, 2, (int64_t[]){V, D});
        elbo_tensor_requires_grad(w, 1);
        elbo_tensor *y = elbo_embedding(ctx, w, ids, N);
        CHECK(y && elbo_backward_with(ctx, y, gy) == ELBO_OK);
        if (t == 1)
            memcpy(g1, w->grad, (size_t)V * D * sizeof(float));
        else
            same = memcmp(g1, w->grad, (size_t)V * D * sizeof(float)) == 0;
        for (int i = 0; i < V * D; i++) {
            double e = fabs(w->grad[i] - ref[i]);
            if (e > worst) worst = e;
        }
    }
    elbo_set_threads(saved);
    elbo_ctx_free(ctx);
    free(ids);
    free(gy);
    free(g1);
    free(ref);
    CHECK(same);
    /* Up to ~N/7 ~ 200 float additions of N(0,1) terms: rounding well under 1e-3. */
    CHECK_NEAR(worst, 0.0, 1e-3);
}

TEST(shape_embedding_bad_id_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *w = elbo_tensor_zeros(ctx, 2, (int64_t[]){6, 2});
    int32_t ids[3] = {0, 6, 1};
    CHECK(elbo_embedding(ctx, w, ids, 3) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "embedding") && strstr(e, "id 6") && strstr(e, "[0, 6)"));
    int32_t neg[2] = {2, -1};
    CHECK(elbo_embedding(ctx, w, neg, 2) == NULL);
    CHECK(strstr(elbo_last_error(), "embedding") && strstr(elbo_last_error(), "id -1"));
    elbo_ctx_free(ctx);
}

/* ---- concat ------------------------------------------------------------------------- */
TEST(shape_concat_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_new3(ctx, 2, 1, 3), *b = elbo_tensor_new3(ctx, 2, 2, 3);
    fill_seq(a, 1.0f);
    fill_seq(b, -1.0f);
    elbo_tensor *y = elbo_cat2(ctx, a, b, 1);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 3);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 3; k++) {
                float want = j == 0 ? a->data[i * 3 + k] : b->data[(i * 2 + j - 1) * 3 + k];
                CHECK(y->data[(i * 3 + j) * 3 + k] == want);
            }
    /* Negative axis, the last one. */
    elbo_tensor *z = elbo_cat2(ctx, a, a, -1);
    CHECK(z && z->shape[2] == 6 && z->data[4] == a->data[1] && z->data[6] == a->data[3]);
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_concat3(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_concat(ctx, in, 3, *(int *)u);
}

TEST(grad_shape_concat_axes) {
    /* Concat is a copy: gradients are exact up to float rounding of x +- eps. */
    int ax0 = 0, ax1 = 1, axl = -1;
    gc_spec s0 = {.n_in = 3,
                  .ndim = {3, 3, 3},
                  .shape = {{1, 3, 2}, {2, 3, 2}, {3, 3, 2}},
                  .atol = 1e-3f,
                  .rtol = 1e-3f};
    CHECK_GRAD("concat axis 0", build_concat3, &ax0, &s0);
    gc_spec s1 = {.n_in = 3,
                  .ndim = {3, 3, 3},
                  .shape = {{2, 3, 4}, {2, 1, 4}, {2, 2, 4}},
                  .atol = 1e-3f,
                  .rtol = 1e-3f};
    CHECK_GRAD("concat axis 1", build_concat3, &ax1, &s1);
    gc_spec s2 = {.n_in = 3,
                  .ndim = {3, 3, 3},
                  .shape = {{2, 3, 1}, {2, 3, 4}, {2, 3, 2}},
                  .atol = 1e-3f,
                  .rtol = 1e-3f};
    CHECK_GRAD("concat last axis", build_concat3, &axl, &s2);
}

/* Large enough for the parallel copy paths; 1 and 2 threads give the same bits. */
TEST(shape_concat_large_matches_reference) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_new3(ctx, 4, 50, 100), *b = elbo_tensor_new3(ctx, 4, 30, 100);
    elbo_rng_normal(elbo_ctx_rng(ctx), a->data, (size_t)a->numel, 0, 1);
    elbo_rng_normal(elbo_ctx_rng(ctx), b->data, (size_t)b->numel, 0, 1);
    elbo_tensor *y = elbo_cat2(ctx, a, b, 1);
    CHECK(y);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 80; j++)
            for (int k = 0; k < 100; k++) {
                float want =
                    j < 50 ? a->data[(i * 50 + j) * 100 + k] : b->data[(i * 30 + j - 50) * 100 + k];
                CHECK(y->data[(i * 80 + j) * 100 + k] == want);
            }
    elbo_tensor *z = elbo_cat2(ctx, a, a, 0);
    CHECK(z && z->shape[0] == 8 && memcmp(z->data + a->numel, a->data, a->numel * 4) == 0);
    elbo_ctx_free(ctx);
}

TEST(shape_concat_mismatch_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_new2(ctx, 2, 3), *b = elbo_tensor_new2(ctx, 2, 4);
    CHECK(elbo_cat2(ctx, a, b, 0) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "concat") && strstr(e, "(2, 3)") && strstr(e, "(2, 4)"));
    CHECK(elbo_cat2(ctx, a, b, 1) != NULL); /* fine along the differing axis */
    elbo_tensor *c = elbo_tensor_new3(ctx, 2, 3, 1);
    elbo_tensor *xs[3] = {a, a, c};
    CHECK(elbo_concat(ctx, xs, 3, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "concat") && strstr(elbo_last_error(), "(2, 3, 1)"));
    CHECK(elbo_cat2(ctx, a, a, 2) == NULL && strstr(elbo_last_error(), "concat"));
    elbo_ctx_free(ctx);
}

/* ---- permute / transpose ------------------------------------------------------------ */
/* y[i] = x[sum_k idx_k(i) stride_x(perm[k])], element by element. */
static void naive_permute(const float *x, float *y, int nd, const int64_t *shape, const int *p) {
    int64_t xs[ELBO_MAX_DIMS], ys[ELBO_MAX_DIMS], n = elbo_shape_numel(nd, shape);
    int64_t st = 1;
    for (int i = nd - 1; i >= 0; i--) {
        xs[i] = st;
        st *= shape[i];
    }
    for (int i = 0; i < nd; i++) ys[i] = shape[p[i]];
    for (int64_t i = 0; i < n; i++) {
        int64_t rem = i, off = 0;
        for (int k = nd - 1; k >= 0; k--) {
            off += (rem % ys[k]) * xs[p[k]];
            rem /= ys[k];
        }
        y[i] = x[off];
    }
}

static int permute_case(int nd, const int64_t *shape, const int *p) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new(ctx, nd, shape);
    fill_seq(x, 1.0f);
    elbo_tensor *y = elbo_permute(ctx, x, p);
    int ok = y != NULL;
    float *ref = malloc((size_t)x->numel * sizeof(float));
    naive_permute(x->data, ref, nd, shape, p);
    for (int i = 0; ok && i < nd; i++) ok = y->shape[i] == shape[p[i]];
    ok = ok && memcmp(ref, y->data, (size_t)x->numel * sizeof(float)) == 0;
    free(ref);
    elbo_ctx_free(ctx);
    return ok;
}

TEST(shape_permute_forward_cases) {
    /* Small 4-D, then the fast paths at sizes that are not tile multiples and that run in
     * parallel: last-two transpose, NCHW <-> NHWC, row copies, full reversal, size-1 axes. */
    CHECK(permute_case(4, (int64_t[]){2, 3, 4, 5}, (int[]){2, 0, 3, 1}));
    CHECK(permute_case(3, (int64_t[]){3, 37, 170}, (int[]){0, 2, 1}));
    CHECK(permute_case(2, (int64_t[]){65, 300}, (int[]){1, 0}));
    CHECK(permute_case(4, (int64_t[]){4, 33, 9, 11}, (int[]){0, 2, 3, 1}));
    CHECK(permute_case(4, (int64_t[]){4, 9, 11, 33}, (int[]){0, 3, 1, 2}));
    CHECK(permute_case(3, (int64_t[]){40, 30, 20}, (int[]){1, 0, 2}));
    CHECK(permute_case(3, (int64_t[]){40, 30, 20}, (int[]){2, 1, 0}));
    CHECK(permute_case(4, (int64_t[]){1, 50, 1, 400}, (int[]){3, 2, 0, 1}));
    CHECK(permute_case(5, (int64_t[]){2, 3, 1, 4, 5}, (int[]){4, 2, 1, 3, 0}));
    CHECK(permute_case(3, (int64_t[]){2, 3, 4}, (int[]){0, 1, 2}));
    CHECK(permute_case(6, (int64_t[]){2, 3, 2, 3, 2, 3}, (int[]){5, 3, 1, 4, 2, 0}));
}

TEST(shape_permute_negative_perm_and_transpose) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 3, 4);
    fill_seq(x, 1.0f);
    elbo_tensor *a = elbo_permute(ctx, x, (int[]){0, -1, 1});
    elbo_tensor *b = elbo_transpose(ctx, x, -1, -2);
    CHECK(a && b && b->shape[1] == 4 && b->shape[2] == 3);
    CHECK(memcmp(a->data, b->data, 24 * sizeof(float)) == 0);
    /* b[1, 3, 2] = x[1, 2, 3] */
    CHECK(b->data[(1 * 4 + 3) * 3 + 2] == x->data[(1 * 3 + 2) * 4 + 3]);
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_permute(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_permute(ctx, in[0], u);
}
static elbo_tensor *build_transpose(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const int *ax = u;
    return elbo_transpose(ctx, in[0], ax[0], ax[1]);
}

TEST(grad_shape_permute_transpose) {
    /* Copies: gradients exact up to float rounding of x +- eps. */
    int perm[4] = {2, 0, 3, 1};
    gc_spec s = {.n_in = 1,
                 .ndim = {4},
                 .shape = {{2, 3, 4, 5}},
                 .atol = 1e-3f,
                 .rtol = 1e-3f,
                 .max_checks = 120};
    CHECK_GRAD("permute", build_permute, perm, &s);
    int ax[2] = {0, 2};
    gc_spec t = {.n_in = 1, .ndim = {3}, .shape = {{3, 4, 5}}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("transpose", build_transpose, ax, &t);
}

/* Backward of the tiled path (large, parallel): the gradient is the inverse permute of
 * dy, so permuting dy ourselves must give exactly x's gradient. */
TEST(shape_permute_backward_large) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t shape[4] = {4, 33, 14, 14};
    int p[4] = {0, 2, 3, 1}, inv[4] = {0, 3, 1, 2};
    elbo_tensor *x = elbo_tensor_new(ctx, 4, shape);
    fill_seq(x, 1.0f);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor *y = elbo_permute(ctx, x, p);
    CHECK(y);
    float *gy = malloc((size_t)y->numel * sizeof(float)), *ref = malloc((size_t)y->numel * 4);
    for (int64_t i = 0; i < y->numel; i++) gy[i] = (float)(i % 101) - 50.0f;
    CHECK(elbo_backward_with(ctx, y, gy) == ELBO_OK);
    naive_permute(gy, ref, 4, y->shape, inv);
    int same = memcmp(ref, x->grad, (size_t)x->numel * sizeof(float)) == 0;
    free(gy);
    free(ref);
    elbo_ctx_free(ctx);
    CHECK(same);
}

TEST(shape_permute_bad_perm_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 3, 4);
    CHECK(elbo_permute(ctx, x, (int[]){0, 0, 1}) == NULL);
    const char *e = elbo_last_error();
    CHECK(strstr(e, "permute") && strstr(e, "(0, 0, 1) is not a permutation") &&
          strstr(e, "(2, 3, 4)"));
    CHECK(elbo_permute(ctx, x, (int[]){0, 1, 3}) == NULL && strstr(elbo_last_error(), "permute"));
    CHECK(elbo_transpose(ctx, x, 0, 3) == NULL && strstr(elbo_last_error(), "transpose"));
    elbo_ctx_free(ctx);
}

/* ---- dropout ------------------------------------------------------------------------ */
TEST(shape_dropout_eval_and_p0_are_identity) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new2(ctx, 3, 4);
    fill_seq(x, 0.25f);
    elbo_ctx_set_training(ctx, 0);
    elbo_tensor *y = elbo_dropout(ctx, x, 0.5f);
    CHECK(y && memcmp(y->data, x->data, 12 * sizeof(float)) == 0);
    elbo_ctx_set_training(ctx, 1);
    y = elbo_dropout(ctx, x, 0.0f);
    CHECK(y && memcmp(y->data, x->data, 12 * sizeof(float)) == 0);
    CHECK(elbo_dropout(ctx, x, 1.0f) == NULL && strstr(elbo_last_error(), "dropout"));
    CHECK(elbo_dropout(ctx, x, -0.1f) == NULL && strstr(elbo_last_error(), "dropout"));
    CHECK(elbo_dropout(ctx, x, NAN) == NULL);
    elbo_ctx_free(ctx);
}

/* Training mode, x = 1 on N elements, seed fixed: returns kept count and mean of y, and
 * y and x's gradient for dy = 1. */
static void dropout_run(int threads, float p, float *y, float *gx, int n) {
    int saved = elbo_get_threads();
    elbo_set_threads(threads);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_rng_init(elbo_ctx_rng(ctx), 1234);
    elbo_tensor *x = elbo_tensor_full(ctx, 1, (int64_t[]){n}, 1.0f);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor *out = elbo_dropout(ctx, x, p);
    if (out && elbo_backward_with(ctx, out, NULL) == ELBO_OK) {
        memcpy(y, out->data, (size_t)n * sizeof(float));
        memcpy(gx, x->grad, (size_t)n * sizeof(float));
    } else {
        memset(y, 0xff, (size_t)n * sizeof(float)); /* NaNs: the checks fail */
    }
    elbo_ctx_free(ctx);
    elbo_set_threads(saved);
}

TEST(shape_dropout_statistics_and_determinism) {
    enum { N = 100000 };
    const float p = 0.3f;
    float *y1 = malloc(N * sizeof(float)), *g1 = malloc(N * sizeof(float));
    float *y2 = malloc(N * sizeof(float)), *g2 = malloc(N * sizeof(float));
    dropout_run(1, p, y1, g1, N);
    dropout_run(2, p, y2, g2, N);
    int same = memcmp(y1, y2, N * sizeof(float)) == 0 && memcmp(g1, g2, N * sizeof(float)) == 0;
    float scale = 1.0f / (1.0f - p);
    int64_t kept = 0, bad = 0;
    double mean = 0;
    for (int i = 0; i < N; i++) {
        if (y1[i] != 0) kept++;
        mean += y1[i];
        /* x = 1: y is the mask value, and dx = dy * mask = the same value. */
        if (!((y1[i] == 0 || y1[i] == scale) && g1[i] == y1[i])) bad++;
    }
    mean /= N;
    free(y1);
    free(g1);
    free(y2);
    free(g2);
    CHECK(same);
    CHECK_MSG(bad == 0, "%lld elements with y not in {0, 1/(1-p)} or dx != mask", (long long)bad);
    /* kept ~ Binomial(N, 1-p): fraction s.e. sqrt(p (1-p) / N); the mean of y = kept
     * fraction / (1-p) has s.e. sqrt(p / ((1-p) N)). */
    double frac = (double)kept / N;
    CHECK_NEAR(frac, 1.0 - p, 4.0 * sqrt(p * (1.0 - p) / N));
    CHECK_NEAR(mean, 1.0, 4.0 * sqrt(p / ((1.0 - p) * N)));
}

static elbo_tensor *build_dropout(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    elbo_rng_init(elbo_ctx_rng(ctx), 99); /* the same mask in every evaluation */
    return elbo_dropout(ctx, in[0], *(float *)u);
}

TEST(grad_shape_dropout) {
    /* With the mask fixed the op is linear: exact up to float rounding. */
    float p = 0.4f;
    gc_spec s = {.n_in = 1, .ndim = {2}, .shape = {{6, 7}}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("dropout", build_dropout, &p, &s);
}
