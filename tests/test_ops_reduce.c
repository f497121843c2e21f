/* Reductions and the softmax family: forward against double references, finite-difference
 * gradients over several axis combinations, identities (softmax rows sum to 1,
 * log_softmax = log softmax), stability, determinism, errors. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_uniform(&r, x, (size_t)n, lo, hi);
}

/* Flat index -> multi-index of shape (nd, s). */
static void unravel(int64_t i, int nd, const int64_t *s, int64_t *idx) {
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = i % s[d];
        i /= s[d];
    }
}

TEST(reduce_sum_mean_all_are_scalars) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 3, 7, 11);
    fill(x->data, x->numel, 1, -1, 2);
    double s = 0;
    for (int64_t i = 0; i < x->numel; i++) s += x->data[i];
    elbo_tensor *ys = elbo_sum(ctx, x), *ym = elbo_mean(ctx, x);
    CHECK(ys && ys->ndim == 0 && ys->numel == 1 && ym && ym->ndim == 0);
    CHECK_NEAR(ys->data[0], s, 1e-6 * fabs(s) + 1e-6);
    CHECK_NEAR(ym->data[0], s / 231, 1e-7);
    elbo_ctx_free(ctx);
}

typedef struct {
    int n, axes[3], keepdim, mean;
} ax_user;

static elbo_tensor *build_axes(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const ax_user *a = u;
    return a->mean ? elbo_mean_axes(ctx, in[0], a->n, a->axes, a->keepdim)
                   : elbo_sum_axes(ctx, in[0], a->n, a->axes, a->keepdim);
}

static const ax_user AXES[] = {
    {1, {0}, 0, 0},       {1, {1}, 1, 0},       {1, {2}, 0, 1},    {1, {-1}, 1, 1},
    {2, {0, 2}, 0, 0},    {2, {2, 0}, 1, 1},    {2, {1, 2}, 0, 1}, {2, {0, 1}, 1, 0},
    {3, {0, 1, 2}, 0, 0}, {3, {2, 1, 0}, 1, 1}, {1, {3}, 0, 0},    {2, {1, 3}, 1, 1},
};
#define NAXES ((int)(sizeof AXES / sizeof AXES[0]))

TEST(reduce_axes_match_naive) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    int64_t sh[4] = {3, 4, 5, 6};
    elbo_tensor *x = elbo_tensor_new(ctx, 4, sh);
    fill(x->data, x->numel, 2, -1, 1);
    for (int c = 0; c < NAXES; c++) {
        const ax_user *a = &AXES[c];
        elbo_tensor *y = build_axes(ctx, &x, (void *)a);
        CHECK(y);
        int64_t mask = 0, count = 1;
        for (int k = 0; k < a->n; k++) {
            int ax = a->axes[k] < 0 ? a->axes[k] + 4 : a->axes[k];
            mask |= 1 << ax;
            count *= sh[ax];
        }
        int nd = 0;
        for (int d = 0; d < 4; d++)
            if (a->keepdim || !((mask >> d) & 1)) {
                CHECK(y->shape[nd] == ((mask >> d) & 1 ? 1 : sh[d]));
                nd++;
            }
        CHECK(y->ndim == nd && y->numel == x->numel / count);
        double *ref = calloc((size_t)y->numel, sizeof(double));
        int64_t idx[4];
        for (int64_t i = 0; i < x->numel; i++) {
            unravel(i, 4, sh, idx);
            int64_t o = 0;
            for (int d = 0; d < 4; d++)
                if (!((mask >> d) & 1)) o = o * sh[d] + idx[d];
            ref[o] += x->data[i];
        }
        for (int64_t o = 0; o < y->numel; o++) {
            double r = a->mean ? ref[o] / count : ref[o];
            CHECK_MSG(fabs(y->data[o] - r) <= 1e-6 * (fabs(r) + 1),
                      "combo %d element %lld: %g vs %g", c, (long long)o, (double)y->data[o], r);
        }
        free(ref);
    }
    elbo_ctx_free(ctx);
}

TEST(grad_reduce_axes) {
    for (int c = 0; c < NAXES; c++) {
        /* Linear ops: the finite differences are exact up to float rounding of the sum. */
        gc_spec s = {.n_in = 1, .ndim = {4}, .shape = {{3, 4, 5, 2}}, .atol = 1e-3f, .rtol = 1e-3f};
        CHECK_GRAD("sum/mean axes", build_axes, (void *)&AXES[c], &s);
    }
}

static elbo_tensor *build_sum(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return u ? elbo_mean(ctx, in[0]) : elbo_sum(ctx, in[0]);
}
static elbo_tensor *build_axis1(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return u ? elbo_mean_axis(ctx, in[0], 1, 0) : elbo_sum_axis(ctx, in[0], -2, 1);
}

TEST(grad_reduce_sum_mean_axis) {
    gc_spec s = {.n_in = 1, .ndim = {3}, .shape = {{2, 3, 5}}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("sum", build_sum, NULL, &s);
    CHECK_GRAD("mean", build_sum, (void *)1, &s);
    CHECK_GRAD("sum_axis", build_axis1, NULL, &s);
    CHECK_GRAD("mean_axis", build_axis1, (void *)1, &s);
}

TEST(reduce_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 2, (int64_t[]){2, 3});
    CHECK(elbo_sum_axis(ctx, x, 2, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "sum_axis") && strstr(elbo_last_error(), "(2, 3)"));
    CHECK(elbo_mean_axes(ctx, x, 2, (int[]){1, -1}, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "mean_axes") && strstr(elbo_last_error(), "twice"));
    CHECK(elbo_softmax(ctx, x, -3) == NULL);
    CHECK(strstr(elbo_last_error(), "softmax") && strstr(elbo_last_error(), "(2, 3)"));
    CHECK(elbo_logsumexp(ctx, NULL, 0, 0) == NULL);
    elbo_ctx_free(ctx);
}

/* Large reductions give the same bits with 1 and 2 threads. */
TEST(reduce_deterministic_across_threads) {
    int64_t sh[4] = {8, 16, 40, 40};
    float *out[2][3];
    int saved = elbo_get_threads();
    for (int t = 0; t < 2; t++) {
        elbo_set_threads(t + 1);
        elbo_ctx *ctx = elbo_ctx_new(1 << 24);
        elbo_tensor *x = elbo_tensor_new(ctx, 4, sh);
        fill(x->data, x->numel, 9, -1, 1);
        elbo_tensor *a = elbo_sum_axes(ctx, x, 3, (int[]){0, 2, 3}, 0); /* per channel */
        elbo_tensor *b = elbo_mean_axes(ctx, x, 1, (int[]){0}, 0);      /* over the batch */
        elbo_tensor *c = elbo_softmax(ctx, x, 1);
        out[t][0] = malloc(16 * sizeof(float));
        memcpy(out[t][0], a->data, 16 * sizeof(float));
        out[t][1] = malloc((size_t)b->numel * sizeof(float));
        memcpy(out[t][1], b->data, (size_t)b->numel * sizeof(float));
        out[t][2] = malloc((size_t)c->numel * sizeof(float));
        memcpy(out[t][2], c->data, (size_t)c->numel * sizeof(float));
        elbo_ctx_free(ctx);
    }
    elbo_set_threads(saved);
    int same = !memcmp(out[0][0], out[1][0], 16 * sizeof(float)) &&
               !memcmp(out[0][1], out[1][1], 16 * 1600 * sizeof(float)) &&
               !memcmp(out[0][2], out[1][2], 8 * 16 * 1600 * sizeof(float));
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) free(out[t][k]);
    CHECK(same);
}

/* ---- softmax family ---------------------------------------------------------------------- */
/* Double reference for x (3,5,4) along axis a: softmax, log_softmax and logsumexp. */
static void ref_softmax(const float *x, const int64_t *sh, int a, double *sm, double *lsm,
                        double *lse) {
    int64_t outer = 1, inner = 1, n = sh[a];
    for (int i = 0; i < a; i++) outer *= sh[i];
    for (int i = a + 1; i < 3; i++) inner *= sh[i];
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
            double m = -INFINITY, s = 0;
            for (int64_t k = 0; k < n; k++) m = fmax(m, x[(o * n + k) * inner + j]);
            for (int64_t k = 0; k < n; k++) s += exp(x[(o * n + k) * inner + j] - m);
            lse[o * inner + j] = m + log(s);
            for (int64_t k = 0; k < n; k++) {
                int64_t i = (o * n + k) * inner + j;
                sm[i] = exp(x[i] - m) / s;
                lsm[i] = x[i] - m - log(s);
            }
        }
}

TEST(softmax_family_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t sh[3] = {3, 5, 4};
    elbo_tensor *x = elbo_tensor_new(ctx, 3, sh);
    fill(x->data, 60, 3, -4, 4);
    x->data[7] = 80; /* exp(80) overflows float: the max subtraction must handle it */
    double sm[60], lsm[60], lse[20];
    for (int a = 0; a < 3; a++) {
        ref_softmax(x->data, sh, a, sm, lsm, lse);
        elbo_tensor *y = elbo_softmax(ctx, x, a), *ly = elbo_log_softmax(ctx, x, a - 3);
        elbo_tensor *l = elbo_logsumexp(ctx, x, a, 0), *lk = elbo_logsumexp(ctx, x, a, 1);
        CHECK(y && ly && l && lk);
        CHECK(l->ndim == 2 && lk->ndim == 3 && lk->shape[a] == 1 && l->numel == 60 / sh[a]);
        for (int i = 0; i < 60; i++) {
            CHECK_NEAR(y->data[i], sm[i], 1e-6 * sm[i] + 1e-7);
            CHECK_NEAR(ly->data[i], lsm[i], 1e-6 * fabs(lsm[i]) + 1e-6);
            /* log_softmax = log(softmax) where softmax is not tiny */
            if (sm[i] > 1e-6) CHECK_NEAR(ly->data[i], log(y->data[i]), 1e-5);
        }
        for (int i = 0; i < 60 / sh[a]; i++) {
            CHECK_NEAR(l->data[i], lse[i], 1e-6 * fabs(lse[i]) + 1e-6);
            CHECK(lk->data[i] == l->data[i]);
        }
        /* Rows along the axis sum to 1. */
        int64_t outer = 1, inner = 1, n = sh[a];
        for (int i = 0; i < a; i++) outer *= sh[i];
        for (int i = a + 1; i < 3; i++) inner *= sh[i];
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                double s = 0;
                for (int64_t k = 0; k < n; k++) s += y->data[(o * n + k) * inner + j];
                CHECK_NEAR(s, 1.0, 1e-6);
            }
    }
    elbo_ctx_free(ctx);
}

/* Rows wider than the internal tile (inner 300 > 256) take the chunked path. */
TEST(softmax_wide_inner_axis) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t sh[3] = {2, 3, 300};
    elbo_tensor *x = elbo_tensor_new(ctx, 3, sh);
    fill(x->data, x->numel, 4, -3, 3);
    double *sm = malloc(1800 * sizeof(double)), *lsm = malloc(1800 * sizeof(double));
    double *lse = malloc(600 * sizeof(double));
    ref_softmax(x->data, sh, 1, sm, lsm, lse);
    elbo_tensor *y = elbo_softmax(ctx, x, 1), *l = elbo_logsumexp(ctx, x, 1, 0);
    int ok = 1;
    for (int i = 0; i < 1800; i++) ok &= fabs(y->data[i] - sm[i]) <= 1e-6 * sm[i] + 1e-7;
    for (int i = 0; i < 600; i++) ok &= fabs(l->data[i] - lse[i]) <= 1e-6 * fabs(lse[i]) + 1e-6;
    free(sm);
    free(lsm);
    free(lse);
    CHECK(ok);
    elbo_ctx_free(ctx);
}

typedef struct {
    int kind, axis;
} sm_user;

static elbo_tensor *build_sm(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const sm_user *s = u;
    switch (s->kind) {
    case 0:
        return elbo_softmax(ctx, in[0], s->axis);
    case 1:
        return elbo_log_softmax(ctx, in[0], s->axis);
    case 2:
        return elbo_logsumexp(ctx, in[0], s->axis, 0);
    default:
        return elbo_logsumexp(ctx, in[0], s->axis, 1);
    }
}

TEST(grad_softmax_family) {
    for (int kind = 0; kind < 4; kind++)
        for (int axis = -3; axis < 3; axis++) {
            sm_user u = {kind, axis};
            /* Smooth ops with values O(1); eps 1e-3 gives ~1e-5 truncation error. */
            gc_spec s = {.n_in = 1,
                         .ndim = {3},
                         .shape = {{2, 4, 3}},
                         .atol = 1e-3f,
                         .rtol = 1e-3f,
                         .seed = 11 + (uint64_t)axis};
            CHECK_GRAD("softmax family", build_sm, &u, &s);
        }
}
