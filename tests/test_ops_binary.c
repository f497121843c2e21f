/* Broadcasting arithmetic and where: forward against a naive index-by-index reference,
 * finite-difference gradients for each broadcasting pattern, determinism, shape errors. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int nda, ndb;
    int64_t sa[ELBO_MAX_DIMS], sb[ELBO_MAX_DIMS];
} bpat;

/* The patterns of the brief plus the fast paths (same shape, per-channel, per-row) and
 * rank-0 / rank-6 operands. */
static const bpat PATS[] = {
    {3, 1, {2, 3, 4}, {4}},       {3, 2, {2, 3, 4}, {3, 1}},
    {3, 3, {2, 1, 4}, {1, 3, 1}}, {3, 1, {2, 3, 4}, {1}},
    {3, 3, {2, 3, 4}, {2, 3, 4}}, {4, 4, {2, 3, 2, 5}, {2, 3, 1, 1}},
    {2, 1, {6, 5}, {5}},          {1, 3, {5}, {3, 4, 1}},
    {2, 0, {3, 2}, {0}},          {6, 6, {2, 1, 2, 3, 1, 2}, {1, 3, 2, 1, 2, 1}},
};
#define NPATS ((int)(sizeof PATS / sizeof PATS[0]))

/* Offset into a tensor of shape (nd, s) of the broadcast output index idx (rank ond). */
static int64_t bc_offset(int nd, const int64_t *s, int ond, const int64_t *idx) {
    int64_t off = 0;
    for (int i = 0; i < nd; i++) {
        int64_t k = idx[ond - nd + i];
        off = off * s[i] + (s[i] == 1 ? 0 : k);
    }
    return off;
}

static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_uniform(&r, x, (size_t)n, lo, hi);
}

typedef elbo_tensor *(*binop)(elbo_ctx *, elbo_tensor *, elbo_tensor *);
static const binop OPS[4] = {elbo_add, elbo_sub, elbo_mul, elbo_div};
static const char *const OPNAMES[4] = {"add", "sub", "mul", "div"};

static double ref_op(int op, double a, double b) {
    switch (op) {
    case 0:
        return a + b;
    case 1:
        return a - b;
    case 2:
        return a * b;
    default:
        return a / b;
    }
}

TEST(binary_forward_matches_naive_broadcast) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    for (int pi = 0; pi < NPATS; pi++) {
        const bpat *p = &PATS[pi];
        elbo_tensor *a = elbo_tensor_new(ctx, p->nda, p->sa);
        elbo_tensor *b = elbo_tensor_new(ctx, p->ndb, p->sb);
        CHECK(a && b);
        fill(a->data, a->numel, 1 + pi, -2, 2);
        fill(b->data, b->numel, 100 + pi, 0.5f, 2); /* b away from 0 for div */
        for (int op = 0; op < 4; op++) {
            elbo_tensor *y = OPS[op](ctx, a, b);
            CHECK(y);
            int ond = p->nda > p->ndb ? p->nda : p->ndb;
            CHECK(y->ndim == ond);
            int64_t idx[ELBO_MAX_DIMS] = {0};
            for (int64_t i = 0; i < y->numel; i++) {
                int64_t r = i;
                for (int d = ond - 1; d >= 0; d--) {
                    idx[d] = r % y->shape[d];
                    r /= y->shape[d];
                }
                float av = a->data[bc_offset(p->nda, p->sa, ond, idx)];
                float bv = b->data[bc_offset(p->ndb, p->sb, ond, idx)];
                /* One float operation: the result must be the correctly rounded value. */
                CHECK_MSG(y->data[i] == (float)ref_op(op, av, bv), "%s pattern %d element %lld: %g",
                          OPNAMES[op], pi, (long long)i, (double)y->data[i]);
            }
            /* The operation is symmetric in shape: b op a broadcasts the same way. */
            elbo_tensor *z = OPS[op](ctx, b, a);
            CHECK(z && z->numel == y->numel);
        }
    }
    elbo_ctx_free(ctx);
}

typedef struct {
    int op;
} bin_user;

static elbo_tensor *build_bin(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return OPS[((bin_user *)u)->op](ctx, in[0], in[1]);
}

TEST(grad_binary_all_patterns) {
    static float va[64], vb[64];
    for (int pi = 0; pi < NPATS; pi++) {
        const bpat *p = &PATS[pi];
        int64_t na = elbo_shape_numel(p->nda, p->sa), nb = elbo_shape_numel(p->ndb, p->sb);
        fill(va, na, 7 + pi, -2, 2);
        /* b in [0.5, 2] keeps a / b smooth. */
        fill(vb, nb, 70 + pi, 0.5f, 2);
        for (int op = 0; op < 4; op++) {
            bin_user u = {op};
            gc_spec s = {.n_in = 2,
                         .ndim = {p->nda, p->ndb},
                         .init = {va, vb},
                         /* float forward, eps 1e-3: central-difference error ~1e-4 at the
                          * magnitudes here (|a / b^2| <= 8). */
                         .atol = 2e-3f,
                         .rtol = 2e-3f};
            memcpy(s.shape[0], p->sa, sizeof p->sa);
            memcpy(s.shape[1], p->sb, sizeof p->sb);
            char name[64];
            snprintf(name, sizeof name, "%s pattern %d", OPNAMES[op], pi);
            CHECK_GRAD(name, build_bin, &u, &s);
        }
    }
}

/* Gradients of the broadcast input equal the upstream summed over the broadcast axes:
 * checked exactly against a double reference for (B,C,H,W) + (1,C,1,1). */
TEST(binary_broadcast_grad_is_axis_sum) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    int64_t sx[4] = {3, 4, 5, 6}, sb[4] = {1, 4, 1, 1};
    elbo_tensor *x = elbo_tensor_new(ctx, 4, sx), *b = elbo_tensor_new(ctx, 4, sb);
    fill(x->data, x->numel, 1, -1, 1);
    fill(b->data, b->numel, 2, -1, 1);
    elbo_tensor_requires_grad(b, 1);
    elbo_tensor *y = elbo_add(ctx, x, b);
    float *w = malloc((size_t)y->numel * sizeof(float));
    fill(w, y->numel, 3, -1, 1);
    CHECK(elbo_backward_with(ctx, y, w) == ELBO_OK);
    CHECK(x->grad == NULL); /* x does not require a gradient */
    for (int c = 0; c < 4; c++) {
        double s = 0;
        for (int n = 0; n < 3; n++)
            for (int k = 0; k < 30; k++) s += w[(n * 4 + c) * 30 + k];
        CHECK_NEAR(b->grad[c], s, 1e-5);
    }
    free(w);
    elbo_ctx_free(ctx);
}

/* Same bits with 1 and 2 threads, for the forward and the broadcast-reducing backward. */
TEST(binary_deterministic_across_threads) {
    int64_t sx[4] = {16, 32, 24, 24}, sb[4] = {1, 32, 1, 1}, sr[2] = {24, 24};
    float *res[2][3];
    int saved = elbo_get_threads();
    for (int t = 0; t < 2; t++) {
        elbo_set_threads(t + 1);
        elbo_ctx *ctx = elbo_ctx_new(1 << 24);
        elbo_tensor *x = elbo_tensor_new(ctx, 4, sx), *b = elbo_tensor_new(ctx, 4, sb);
        elbo_tensor *r = elbo_tensor_new(ctx, 2, sr);
        fill(x->data, x->numel, 1, -1, 1);
        fill(b->data, b->numel, 2, 0.5f, 1);
        fill(r->data, r->numel, 3, 0.5f, 1);
        elbo_tensor_requires_grad(x, 1);
        elbo_tensor_requires_grad(b, 1);
        elbo_tensor_requires_grad(r, 1);
        elbo_tensor *y = elbo_div(ctx, elbo_mul(ctx, x, b), r);
        float *w = malloc((size_t)y->numel * sizeof(float));
        fill(w, y->numel, 4, -1, 1);
        CHECK(elbo_backward_with(ctx, y, w) == ELBO_OK);
        res[t][0] = malloc((size_t)y->numel * sizeof(float));
        memcpy(res[t][0], y->data, (size_t)y->numel * sizeof(float));
        res[t][1] = malloc(32 * sizeof(float));
        memcpy(res[t][1], b->grad, 32 * sizeof(float));
        res[t][2] = malloc(576 * sizeof(float));
        memcpy(res[t][2], r->grad, 576 * sizeof(float));
        free(w);
        elbo_ctx_free(ctx);
    }
    elbo_set_threads(saved);
    int same = memcmp(res[0][0], res[1][0], 16 * 32 * 576 * sizeof(float)) == 0 &&
               memcmp(res[0][1], res[1][1], 32 * sizeof(float)) == 0 &&
               memcmp(res[0][2], res[1][2], 576 * sizeof(float)) == 0;
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) free(res[t][k]);
    CHECK(same);
}

TEST(binary_shape_mismatch_names_op_and_shapes) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_zeros(ctx, 2, (int64_t[]){2, 3});
    elbo_tensor *b = elbo_tensor_zeros(ctx, 2, (int64_t[]){4, 3});
    for (int op = 0; op < 4; op++) {
        elbo_clear_error();
        CHECK(OPS[op](ctx, a, b) == NULL);
        const char *e = elbo_last_error();
        CHECK(strstr(e, OPNAMES[op]) && strstr(e, "(2, 3)") && strstr(e, "(4, 3)"));
        CHECK(elbo_last_status() == ELBO_ERR_SHAPE);
    }
    elbo_tensor *m = elbo_tensor_zeros(ctx, 1, (int64_t[]){5});
    CHECK(elbo_where(ctx, m, a, a) == NULL);
    CHECK(strstr(elbo_last_error(), "where") && strstr(elbo_last_error(), "(5)") &&
          strstr(elbo_last_error(), "(2, 3)"));
    CHECK(elbo_add(ctx, NULL, a) == NULL);
    elbo_ctx_free(ctx);
}

/* ---- where ------------------------------------------------------------------------------ */
TEST(where_forward_broadcasts_all_three) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *m = elbo_tensor_new(ctx, 3, (int64_t[]){2, 1, 4});
    elbo_tensor *a = elbo_tensor_new(ctx, 2, (int64_t[]){3, 1});
    elbo_tensor *b = elbo_tensor_new(ctx, 1, (int64_t[]){1});
    for (int i = 0; i < 8; i++) m->data[i] = (float)(i % 3 == 0);
    for (int i = 0; i < 3; i++) a->data[i] = (float)(10 + i);
    b->data[0] = -1;
    elbo_tensor *y = elbo_where(ctx, m, a, b);
    CHECK(y && y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 4);
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++)
                CHECK(y->data[(i * 3 + j) * 4 + k] ==
                      (m->data[i * 4 + k] != 0 ? 10.0f + j : -1.0f));
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_where(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_where(ctx, in[0], in[1], in[2]);
}

TEST(grad_where) {
    float mask[8] = {1, 0, 0, 1, 0, 1, 1, 0};
    /* mask (2,1,4), a (3,1), b (1): both broadcast gradients are sums; where is linear in
     * a and b, so only rounding limits the finite differences. */
    gc_spec s = {.n_in = 3,
                 .ndim = {3, 2, 1},
                 .shape = {{2, 1, 4}, {3, 1}, {1}},
                 .init = {mask},
                 .no_grad = {1},
                 .atol = 1e-3f,
                 .rtol = 1e-3f};
    CHECK_GRAD("where", build_where, NULL, &s);
    /* And the same-shape case. */
    float mask2[12] = {1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 0, 0};
    gc_spec s2 = {.n_in = 3,
                  .ndim = {2, 2, 2},
                  .shape = {{3, 4}, {3, 4}, {3, 4}},
                  .init = {mask2},
                  .no_grad = {1},
                  .atol = 1e-3f,
                  .rtol = 1e-3f};
    CHECK_GRAD("where same shape", build_where, NULL, &s2);
}
