/* Linear algebra ops: matmul, matmul_t, bmm, linear. Forward values against double-precision
 * loops, gradients against finite differences, shape errors, and the same bits for 1 and 2
 * threads. */
#include "test.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Worst-case bound on the rounding error of a float32 sum of n products (Higham, "Accuracy
 * and Stability of Numerical Algorithms", eq. 3.5): gamma_n sum |a_k b_k|, u = 2^-24; the
 * float32 inputs themselves are exact in double. */
static double dot_tol(int64_t n, double abs_sum) {
    double u = 1.0 / 16777216.0, nu = (double)(n + 1) * u;
    return nu / (1 - nu) * abs_sum + 1e-30;
}

static void fill(float *x, int64_t n, uint64_t seed) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_normal(&r, x, (size_t)n, 0, 1);
}

/* op(A)[i,k] for A stored (M,K), or (K,M) when t. */
static float at(const float *a, int t, int64_t rows, int64_t cols, int64_t i, int64_t k) {
    return t ? a[k * rows + i] : a[i * cols + k];
}

/* c (M,N) vs op(a) op(b) in double, each element within its rounding bound. */
static int check_product(const float *a, const float *b, const float *c, int ta, int tb, int64_t M,
                         int64_t N, int64_t K, char *msg, size_t len) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0, as = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)at(a, ta, M, K, i, k) * at(b, tb, K, N, k, j);
                s += p;
                as += fabs(p);
            }
            double e = fabs(c[i * N + j] - s);
            if (!(e <= dot_tol(K, as))) {
                snprintf(msg, len, "element (%lld,%lld): %.9g vs %.9g, |diff| %.3g > %.3g",
                         (long long)i, (long long)j, c[i * N + j], s, e, dot_tol(K, as));
                return 0;
            }
        }
    return 1;
}

TEST(linalg_matmul_forward_all_transposes) {
    enum { M = 7, N = 9, K = 13 };
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            elbo_tensor *a = ta ? elbo_tensor_new2(ctx, K, M) : elbo_tensor_new2(ctx, M, K);
            elbo_tensor *b = tb ? elbo_tensor_new2(ctx, N, K) : elbo_tensor_new2(ctx, K, N);
            fill(a->data, a->numel, 1 + ta);
            fill(b->data, b->numel, 3 + tb);
            elbo_tensor *c = (ta || tb) ? elbo_matmul_t(ctx, a, b, ta, tb) : elbo_matmul(ctx, a, b);
            CHECK(c && c->ndim == 2 && c->shape[0] == M && c->shape[1] == N);
            char msg[160];
            CHECK_MSG(check_product(a->data, b->data, c->data, ta, tb, M, N, K, msg, sizeof msg),
                      "ta %d tb %d: %s", ta, tb, msg);
        }
    elbo_ctx_free(ctx);
}

TEST(linalg_bmm_forward_transposes) {
    enum { B = 3, M = 5, N = 4, K = 6 };
    elbo_ctx *ctx = elbo_ctx_new(0);
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            elbo_tensor *a = ta ? elbo_tensor_new3(ctx, B, K, M) : elbo_tensor_new3(ctx, B, M, K);
            elbo_tensor *b = tb ? elbo_tensor_new3(ctx, B, N, K) : elbo_tensor_new3(ctx, B, K, N);
            fill(a->data, a->numel, 5 + ta);
            fill(b->data, b->numel, 7 + tb);
            elbo_tensor *c = elbo_bmm(ctx, a, b, ta, tb);
            CHECK(c && c->ndim == 3 && c->shape[0] == B && c->shape[1] == M && c->shape[2] == N);
            for (int i = 0; i < B; i++) {
                char msg[160];
                CHECK_MSG(check_product(a->data + i * M * K, b->data + i * K * N,
                                        c->data + i * M * N, ta, tb, M, N, K, msg, sizeof msg),
                          "batch %d ta %d tb %d: %s", i, ta, tb, msg);
            }
        }
    elbo_ctx_free(ctx);
}

TEST(linalg_linear_forward_3d_bias) {
    enum { A = 2, S = 3, IN = 5, OUT = 4 };
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, A, S, IN), *w = elbo_tensor_new2(ctx, OUT, IN);
    elbo_tensor *b = elbo_tensor_new1(ctx, OUT);
    fill(x->data, x->numel, 11);
    fill(w->data, w->numel, 12);
    fill(b->data, b->numel, 13);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        elbo_tensor *y = elbo_linear(ctx, x, w, with_bias ? b : NULL);
        CHECK(y && y->ndim == 3 && y->shape[0] == A && y->shape[1] == S && y->shape[2] == OUT);
        for (int r = 0; r < A * S; r++)
            for (int o = 0; o < OUT; o++) {
                double s = with_bias ? b->data[o] : 0, as = fabs(s);
                for (int i = 0; i < IN; i++) {
                    s += (double)x->data[r * IN + i] * w->data[o * IN + i];
                    as += fabs((double)x->data[r * IN + i] * w->data[o * IN + i]);
                }
                CHECK_NEAR(y->data[r * OUT + o], s, dot_tol(IN + 1, as));
            }
    }
    elbo_ctx_free(ctx);
}

/* A 1-D x is a single row: y (out) = W x + b. */
TEST(linalg_linear_forward_1d) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new1(ctx, 3), *w = elbo_tensor_new2(ctx, 2, 3);
    elbo_tensor *b = elbo_tensor_new1(ctx, 2);
    float xv[3] = {1, 2, 3}, wv[6] = {1, 0, -1, 0.5f, 0.25f, 2}, bv[2] = {10, -1};
    memcpy(x->data, xv, sizeof xv);
    memcpy(w->data, wv, sizeof wv);
    memcpy(b->data, bv, sizeof bv);
    elbo_tensor *y = elbo_linear(ctx, x, w, b);
    /* y0 = 1 - 3 + 10 = 8, y1 = 0.5 + 0.5 + 6 - 1 = 6 (exact in float) */
    CHECK(y && y->ndim == 1 && y->shape[0] == 2 && y->data[0] == 8.0f && y->data[1] == 6.0f);
    elbo_ctx_free(ctx);
}

/* ---- gradients ------------------------------------------------------------------------ */
/* Every op here is linear in each input element, so central differences have no truncation
 * error at any step; a step of 0.05 keeps the float32 rounding of the outputs (relative
 * 1e-7, divided by 2 eps) near 1e-5, well inside atol = rtol = 1e-3. */
#define LIN_SPEC .eps = 0.05f, .atol = 1e-3f, .rtol = 1e-3f

typedef struct {
    int ta, tb;
} tt;

static elbo_tensor *build_matmul_t(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const tt *t = u;
    return elbo_matmul_t(ctx, in[0], in[1], t->ta, t->tb);
}

TEST(grad_linalg_matmul_t_all_transposes) {
    enum { M = 4, N = 5, K = 6 };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            tt t = {ta, tb};
            gc_spec s = {.n_in = 2,
                         .ndim = {2, 2},
                         .shape = {{ta ? K : M, ta ? M : K}, {tb ? N : K, tb ? K : N}},
                         LIN_SPEC};
            CHECK_GRAD(ta ? (tb ? "matmul_t TT" : "matmul_t TN")
                          : (tb ? "matmul_t NT" : "matmul_t NN"),
                       build_matmul_t, &t, &s);
        }
}

static elbo_tensor *build_matmul(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_matmul(ctx, in[0], in[1]);
}

TEST(grad_linalg_matmul) {
    gc_spec s = {.n_in = 2, .ndim = {2, 2}, .shape = {{3, 7}, {7, 2}}, LIN_SPEC};
    CHECK_GRAD("matmul", build_matmul, NULL, &s);
}

/* The same tensor on both sides (a @ a^T): gradients from the two uses add up. */
static elbo_tensor *build_matmul_self(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_matmul_t(ctx, in[0], in[0], 0, 1);
}

TEST(grad_linalg_matmul_shared_input) {
    /* a a^T is quadratic in a: central differences have error eps^2 |d3 L| = 0 (the third
     * derivative of a quadratic vanishes), so the same step and tolerances hold. */
    gc_spec s = {.n_in = 1, .ndim = {2}, .shape = {{4, 5}}, LIN_SPEC};
    CHECK_GRAD("matmul a a^T", build_matmul_self, NULL, &s);
}

static elbo_tensor *build_bmm(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const tt *t = u;
    return elbo_bmm(ctx, in[0], in[1], t->ta, t->tb);
}

TEST(grad_linalg_bmm_transposes) {
    enum { B = 3, M = 4, N = 3, K = 5 };
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++) {
            tt t = {ta, tb};
            gc_spec s = {.n_in = 2,
                         .ndim = {3, 3},
                         .shape = {{B, ta ? K : M, ta ? M : K}, {B, tb ? N : K, tb ? K : N}},
                         LIN_SPEC};
            CHECK_GRAD("bmm", build_bmm, &t, &s);
        }
}

static elbo_tensor *build_linear(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_linear(ctx, in[0], in[1], u ? in[2] : NULL);
}

TEST(grad_linalg_linear_3d_bias) {
    gc_spec s = {.n_in = 3, .ndim = {3, 2, 1}, .shape = {{2, 3, 5}, {4, 5}, {4}}, LIN_SPEC};
    CHECK_GRAD("linear 3-D x with bias", build_linear, (void *)1, &s);
}

TEST(grad_linalg_linear_2d_no_bias) {
    gc_spec s = {.n_in = 2, .ndim = {2, 2}, .shape = {{6, 3}, {7, 3}}, LIN_SPEC};
    CHECK_GRAD("linear 2-D x", build_linear, NULL, &s);
}

/* Only the weight requires a gradient: x's stays unallocated, w's matches the full case. */
TEST(linalg_linear_grad_only_where_required) {
    float xv[20], wv[12], gw_full[12];
    fill(xv, 20, 21);
    fill(wv, 12, 22);
    for (int pass = 0; pass < 2; pass++) {
        elbo_ctx *ctx = elbo_ctx_new(0);
        elbo_tensor *x = elbo_tensor_wrap(ctx, xv, 2, (int64_t[]){5, 4});
        elbo_tensor *w = elbo_tensor_wrap(ctx, wv, 2, (int64_t[]){3, 4});
        elbo_tensor_requires_grad(x, pass == 0);
        elbo_tensor_requires_grad(w, 1);
        int ok = elbo_backward_with(ctx, elbo_linear(ctx, x, w, NULL), NULL) == ELBO_OK;
        int same = 1;
        if (pass == 0)
            memcpy(gw_full, w->grad, sizeof gw_full);
        else
            same = x->grad == NULL && memcmp(gw_full, w->grad, sizeof gw_full) == 0;
        elbo_ctx_free(ctx);
        CHECK(ok && same);
    }
}

/* ---- errors --------------------------------------------------------------------------- */
TEST(linalg_shape_errors_name_op_and_shapes) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_zeros(ctx, 2, (int64_t[]){2, 3});
    elbo_tensor *b = elbo_tensor_zeros(ctx, 2, (int64_t[]){4, 5});
    CHECK(elbo_matmul(ctx, a, b) == NULL);
    CHECK(strstr(elbo_last_error(), "matmul") && strstr(elbo_last_error(), "(2, 3)") &&
          strstr(elbo_last_error(), "(4, 5)"));
    CHECK(elbo_matmul_t(ctx, a, b, 1, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "matmul_t") && strstr(elbo_last_error(), "(4, 5)"));
    elbo_tensor *a3 = elbo_tensor_zeros(ctx, 3, (int64_t[]){2, 3, 4});
    elbo_tensor *b3 = elbo_tensor_zeros(ctx, 3, (int64_t[]){3, 4, 5});
    CHECK(elbo_bmm(ctx, a3, b3, 0, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "bmm") && strstr(elbo_last_error(), "(2, 3, 4)") &&
          strstr(elbo_last_error(), "(3, 4, 5)") && strstr(elbo_last_error(), "batch"));
    CHECK(elbo_bmm(ctx, a, b3, 0, 0) == NULL && strstr(elbo_last_error(), "bmm"));
    elbo_tensor *w = elbo_tensor_zeros(ctx, 2, (int64_t[]){6, 5});
    CHECK(elbo_linear(ctx, a3, w, NULL) == NULL);
    CHECK(strstr(elbo_last_error(), "linear") && strstr(elbo_last_error(), "(2, 3, 4)") &&
          strstr(elbo_last_error(), "(6, 5)"));
    elbo_tensor *bias = elbo_tensor_zeros(ctx, 1, (int64_t[]){5});
    elbo_tensor *w4 = elbo_tensor_zeros(ctx, 2, (int64_t[]){6, 4});
    CHECK(elbo_linear(ctx, a3, w4, bias) == NULL);
    CHECK(strstr(elbo_last_error(), "linear") && strstr(elbo_last_error(), "(6, 4)") &&
          strstr(elbo_last_error(), "(5)"));
    /* A NULL input (an earlier failure) gives NULL and keeps the first error. */
    CHECK(elbo_matmul(ctx, NULL, b) == NULL && strstr(elbo_last_error(), "linear"));
    elbo_ctx_free(ctx);
}

/* ---- determinism ---------------------------------------------------------------------- */
/* Forward and backward of linear (large enough for OpenBLAS to use both threads) and of bmm
 * (both the batch-parallel small-product path and the large-product path), run with 1 and
 * then 2 threads: outputs and every gradient must be the same bits. */
typedef struct {
    float *y, *gx, *gw, *gb;
    int64_t ny, nx, nw, nb;
} lin_run;

static int run_linear_bmm(int threads, lin_run *r, int which) {
    elbo_set_threads(threads);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x, *w, *b = NULL, *y;
    if (which == 0) { /* linear: x (2, 96, 300), w (200, 300), b (200) */
        x = elbo_tensor_new3(ctx, 2, 96, 300);
        w = elbo_tensor_new2(ctx, 200, 300);
        b = elbo_tensor_new1(ctx, 200);
        fill(b->data, b->numel, 33);
    } else if (which == 1) { /* bmm of small products (attention-like): (16,49,32)^T (16,32,49) */
        x = elbo_tensor_new3(ctx, 16, 32, 49);
        w = elbo_tensor_new3(ctx, 16, 32, 49);
    } else { /* bmm of large products: (2,150,200) (2,120,200)^T */
        x = elbo_tensor_new3(ctx, 2, 150, 200);
        w = elbo_tensor_new3(ctx, 2, 120, 200);
    }
    fill(x->data, x->numel, 31);
    fill(w->data, w->numel, 32);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor_requires_grad(w, 1);
    if (b) elbo_tensor_requires_grad(b, 1);
    if (which == 0)
        y = elbo_linear(ctx, x, w, b);
    else if (which == 1)
        y = elbo_bmm(ctx, x, w, 1, 0);
    else
        y = elbo_bmm(ctx, x, w, 0, 1);
    if (!y) return 0;
    float *gy = malloc((size_t)y->numel * sizeof(float));
    fill(gy, y->numel, 34);
    int ok = elbo_backward_with(ctx, y, gy) == ELBO_OK;
    free(gy);
    r->ny = y->numel;
    r->nx = x->numel;
    r->nw = w->numel;
    r->nb = b ? b->numel : 0;
    r->y = malloc((size_t)r->ny * 4);
    r->gx = malloc((size_t)r->nx * 4);
    r->gw = malloc((size_t)r->nw * 4);
    r->gb = malloc((size_t)(r->nb + 1) * 4);
    memcpy(r->y, y->data, (size_t)r->ny * 4);
    memcpy(r->gx, x->grad, (size_t)r->nx * 4);
    memcpy(r->gw, w->grad, (size_t)r->nw * 4);
    if (b) memcpy(r->gb, b->grad, (size_t)r->nb * 4);
    elbo_ctx_free(ctx);
    return ok;
}

static void lin_free(lin_run *r) {
    free(r->y);
    free(r->gx);
    free(r->gw);
    free(r->gb);
}

TEST(linalg_same_bits_1_and_2_threads) {
    int saved = elbo_get_threads();
    for (int which = 0; which < 3; which++) {
        lin_run r1, r2;
        int ok1 = run_linear_bmm(1, &r1, which), ok2 = run_linear_bmm(2, &r2, which);
        elbo_set_threads(saved);
        int same = ok1 && ok2 && !memcmp(r1.y, r2.y, (size_t)r1.ny * 4) &&
                   !memcmp(r1.gx, r2.gx, (size_t)r1.nx * 4) &&
                   !memcmp(r1.gw, r2.gw, (size_t)r1.nw * 4) &&
                   !memcmp(r1.gb, r2.gb, (size_t)r1.nb * 4);
        lin_free(&r1);
        lin_free(&r2);
        CHECK_MSG(same, "%s: results differ between 1 and 2 threads",
                  which == 0   ? "linear"
                  : which == 1 ? "bmm (small products)"
                               : "bmm (large)");
    }
}

/* The raw GEMM kernel elbo__sgemm, through its portable loops and through the default
 * dispatch (the packed AVX-512 kernel in AVX-512 builds, else OpenBLAS above 32768
 * multiply-adds): every (ta, tb), alpha and beta variants, odd sizes, K past the packed
 * kernel's K block (192) and m past its row block (192), row and column tails of its 12 x 32
 * register block, leading dimensions wider than the rows. */
#include "kernels/cpu/kernels.h"
extern double elbo__sgemm_small_mnk_override; /* internal test hook (gemm.c) */

/* C (M,N), ld ldc, against alpha op(A) op(B) + beta C0 in double, each element within
 * gamma_{K+2} (|alpha| sum_k |a_ik b_kj| + |beta c0_ij|): K products summed, then the alpha
 * scaling and the beta term add at most two more roundings. Padding columns unchanged. */
static int check_sgemm_case(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                            float beta, int64_t pad, uint64_t seed, char *msg, size_t len) {
    int64_t lda = (ta ? M : K) + pad, ldb = (tb ? K : N) + pad, ldc = N + pad;
    int64_t ra = ta ? K : M, rb = tb ? N : K;
    float *a = malloc(sizeof(float) * (size_t)(ra * lda)),
          *b = malloc(sizeof(float) * (size_t)(rb * ldb));
    float *c = malloc(sizeof(float) * (size_t)(M * ldc)),
          *c0 = malloc(sizeof(float) * (size_t)(M * ldc));
    fill(a, ra * lda, seed);
    fill(b, rb * ldb, seed + 1);
    fill(c0, M * ldc, seed + 2);
    memcpy(c, c0, sizeof(float) * (size_t)(M * ldc));
    elbo__sgemm(ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, c, ldc);
    int ok = 1;
    for (int64_t i = 0; i < M && ok; i++)
        for (int64_t j = 0; j < ldc && ok; j++) {
            double got = c[i * ldc + j];
            if (j >= N) {
                if (memcmp(&c[i * ldc + j], &c0[i * ldc + j], sizeof(float))) {
                    snprintf(msg, len, "padding (%lld,%lld) overwritten", (long long)i,
                             (long long)j);
                    ok = 0;
                }
                continue;
            }
            double s = 0, as = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)(ta ? a[k * lda + i] : a[i * lda + k]) *
                           (tb ? b[j * ldb + k] : b[k * ldb + j]);
                s += p;
                as += fabs(p);
            }
            double cb = beta == 0.0f ? 0.0 : (double)beta * c0[i * ldc + j];
            double want = (double)alpha * s + cb;
            double tol = dot_tol(K + 2, fabs((double)alpha) * as + fabs(cb));
            if (!(fabs(got - want) <= tol)) {
                snprintf(msg, len,
                         "ta %d tb %d M %lld N %lld K %lld alpha %g beta %g pad %lld: (%lld,%lld) "
                         "%.9g vs %.9g, |diff| %.3g > %.3g",
                         ta, tb, (long long)M, (long long)N, (long long)K, alpha, beta,
                         (long long)pad, (long long)i, (long long)j, got, want, fabs(got - want),
                         tol);
                ok = 0;
            }
        }
    free(a);
    free(b);
    free(c);
    free(c0);
    return ok;
}

TEST(linalg_sgemm_kernel_all_cases) {
    static const int64_t sizes[] = {1, 7, 17, 33, 65};
    static const float ab[][2] = {{1.0f, 0.0f}, {1.0f, 1.0f}, {0.5f, -1.5f}, {-2.0f, 0.0f}};
    double saved = elbo__sgemm_small_mnk_override;
    char msg[320];
    int ok = 1;
    /* pass 0: every product through the portable loops; pass 1: the default dispatch */
    for (int pass = 0; pass < 2 && ok; pass++) {
        elbo__sgemm_small_mnk_override = pass == 0 ? 1e30 : saved;
        int idx = 0;
        for (int ta = 0; ta < 2 && ok; ta++)
            for (int tb = 0; tb < 2 && ok; tb++)
                for (int im = 0; im < 5 && ok; im++)
                    for (int in = 0; in < 5 && ok; in++)
                        for (int ik = 0; ik < 5 && ok; ik++, idx++) {
                            const float *v = ab[idx % 4];
                            ok = check_sgemm_case(ta, tb, sizes[im], sizes[in], sizes[ik], v[0],
                                                  v[1], (idx % 3) * 3, 100 + idx, msg, sizeof msg);
                        }
        /* K past one and two K blocks, m past the row block, uneven micro-panels, 16-column
         * and 32-column tails */
        static const int64_t big[][3] = {{9, 35, 600}, {33, 18, 300}, {5, 70, 257},
                                         {200, 49, 193}, {25, 16, 384}, {13, 64, 31}};
        for (int ta = 0; ta < 2 && ok; ta++)
            for (int tb = 0; tb < 2 && ok; tb++)
                for (int s = 0; s < 6 && ok; s++, idx++) {
                    const float *v = ab[idx % 4];
                    ok = check_sgemm_case(ta, tb, big[s][0], big[s][1], big[s][2], v[0], v[1], 5,
                                          200 + idx, msg, sizeof msg);
                }
    }
    elbo__sgemm_small_mnk_override = saved;
    CHECK_MSG(ok, "%s", msg);
}

/* The packed kernel's entries that skip packing (AVX-512 builds): elbo__sgemm_rowa_pb (A
 * row-major in place, B from elbo__sgemm_pack_b into a 64-byte aligned buffer) and elbo__sgemm_tn_inplace (A^T B, both in
 * place) give the bits of elbo__sgemm_packed on the same product: row and column tails of the
 * 12 x 32 register block, K past one and two K blocks, beta 0, 1 and another, padded leading
 * dimensions. */
#ifdef __AVX512F__
TEST(linalg_sgemm_unpacked_entries_same_bits) {
    static const int64_t shapes[][3] = {{49, 32, 32}, {13, 17, 600}, {25, 33, 257},
                                        {1, 64, 5},   {98, 48, 196}, {12, 32, 384}};
    static const float betas[] = {0.0f, 1.0f, -0.5f};
    int ok = 1;
    for (int si = 0; si < 6 && ok; si++)
        for (int bi = 0; bi < 3 && ok; bi++) {
            int64_t m = shapes[si][0], n = shapes[si][1], K = shapes[si][2], pad = 3;
            int64_t lda = K + pad, ldat = m + pad, ldb = n + pad, ldc = n + pad;
            float *a = malloc(sizeof(float) * (size_t)(m * lda)),
                  *at = malloc(sizeof(float) * (size_t)(K * ldat)),
                  *b = malloc(sizeof(float) * (size_t)(K * ldb)),
                  *bp = aligned_alloc(64, sizeof(float) * (size_t)(K * ((n + 31) / 32) * 32)),
                  *c[4];
            fill(a, m * lda, 300 + (uint64_t)si);
            fill(b, K * ldb, 310 + (uint64_t)si);
            for (int64_t i = 0; i < m; i++)
                for (int64_t k = 0; k < K; k++) at[k * ldat + i] = a[i * lda + k];
            for (int v = 0; v < 4; v++) {
                c[v] = malloc(sizeof(float) * (size_t)(m * ldc));
                fill(c[v], m * ldc, 320 + (uint64_t)si);
            }
            elbo__sgemm_pack_b(0, K, n, b, ldb, bp);
            elbo__sgemm_packed(0, 0, m, n, K, 0.75f, a, lda, b, ldb, betas[bi], c[0], ldc);
            elbo__sgemm_rowa_pb(m, n, K, 0.75f, a, lda, bp, betas[bi], c[1], ldc);
            elbo__sgemm_packed(1, 0, m, n, K, 0.75f, at, ldat, b, ldb, betas[bi], c[2], ldc);
            elbo__sgemm_tn_inplace(m, n, K, 0.75f, at, ldat, b, ldb, betas[bi], c[3], ldc);
            size_t bytes = sizeof(float) * (size_t)(m * ldc); /* the padding columns too */
            ok = !memcmp(c[0], c[1], bytes) && !memcmp(c[2], c[3], bytes) &&
                 !memcmp(c[0], c[2], bytes);
            CHECK_MSG(ok, "m %lld n %lld K %lld beta %g: rowa %d tn %d (1 = same bits)",
                      (long long)m, (long long)n, (long long)K, betas[bi],
                      !memcmp(c[0], c[1], bytes), !memcmp(c[2], c[3], bytes));
            free(a);
            free(at);
            free(b);
            free(bp);
            for (int v = 0; v < 4; v++) free(c[v]);
        }
}
#endif

/* elbo__sgemm cuts C by the thread count where the packed kernel runs (gemm.c): the bits must
 * still be those of one serial product (with OpenBLAS: of one thread), for 1, 2 and 3 threads, on shapes cut by rows and by
 * columns, with K over several K blocks and every transpose. */
TEST(linalg_sgemm_same_bits_any_thread_count) {
    static const int64_t shapes[][3] = {{128, 512, 200}, {300, 70, 400}, {64, 64, 1000}};
    int saved = elbo_get_threads(), ok = 1;
    char msg[200] = "";
    for (int s = 0; s < 3 && ok; s++)
        for (int ta = 0; ta < 2 && ok; ta++)
            for (int tb = 0; tb < 2 && ok; tb++) {
                int64_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                float *a = malloc(sizeof(float) * (size_t)(M * K)),
                      *b = malloc(sizeof(float) * (size_t)(K * N)),
                      *ref = malloc(sizeof(float) * (size_t)(M * N)),
                      *c = malloc(sizeof(float) * (size_t)(M * N));
                fill(a, M * K, 7 + s);
                fill(b, K * N, 9 + s);
                fill(ref, M * N, 11 + s);
                memcpy(c, ref, sizeof(float) * (size_t)(M * N));
                /* the packed kernel: one serial product; OpenBLAS builds: one thread */
#ifdef __AVX512F__
                elbo__sgemm_serial(ta, tb, M, N, K, 0.5f, a, ta ? M : K, b, tb ? K : N, 1.0f, ref,
                                   N);
#else
                elbo_set_threads(1);
                elbo__sgemm(ta, tb, M, N, K, 0.5f, a, ta ? M : K, b, tb ? K : N, 1.0f, ref, N);
#endif
                for (int nth = 1; nth <= 3 && ok; nth++) {
                    float *d = malloc(sizeof(float) * (size_t)(M * N));
                    memcpy(d, c, sizeof(float) * (size_t)(M * N));
                    elbo_set_threads(nth);
                    elbo__sgemm(ta, tb, M, N, K, 0.5f, a, ta ? M : K, b, tb ? K : N, 1.0f, d, N);
                    if (memcmp(d, ref, sizeof(float) * (size_t)(M * N))) {
                        snprintf(msg, sizeof msg, "%lldx%lldx%lld ta %d tb %d: %d threads differ",
                                 (long long)M, (long long)N, (long long)K, ta, tb, nth);
                        ok = 0;
                    }
                    free(d);
                }
                free(a);
                free(b);
                free(ref);
                free(c);
            }
    elbo_set_threads(saved);
    CHECK_MSG(ok, "%s", msg);
}

/* ---- linear_relu: the fused linear + relu ---------------------------------------------- */
/* Inputs whose pre-activations z = x W^T + b all lie at least 0.3 from relu's kink, so that
 * central differences with step 0.01 (which move z by at most 0.01 (|x|_1 + |w|_1 + 1),
 * checked below) never cross it: the first seed that gives such inputs. */
typedef struct {
    float x[2 * 3 * 5], w[4 * 5], b[4];
} lr_inputs;

static int lr_pick(lr_inputs *v, int with_bias) {
    for (uint64_t seed = 1; seed < 1000; seed++) {
        fill(v->x, 30, seed);
        fill(v->w, 20, seed + 1000);
        fill(v->b, 4, seed + 2000);
        double min_z = 1e30, max_shift = 0;
        int n_pos = 0; /* active units: some on each side of the kink */
        for (int r = 0; r < 6; r++)
            for (int o = 0; o < 4; o++) {
                double z = with_bias ? v->b[o] : 0, l1 = 1;
                for (int k = 0; k < 5; k++) {
                    z += (double)v->x[r * 5 + k] * v->w[o * 5 + k];
                    l1 += fabs(v->x[r * 5 + k]) + fabs(v->w[o * 5 + k]);
                }
                if (fabs(z) < min_z) min_z = fabs(z);
                n_pos += z > 0;
                if (0.01 * l1 > max_shift) max_shift = 0.01 * l1;
            }
        if (min_z >= 0.3 && max_shift < 0.3 && n_pos >= 6 && n_pos <= 18) return 1;
    }
    return 0;
}

static elbo_tensor *build_linear_relu(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_linear_relu(ctx, in[0], in[1], u ? in[2] : NULL);
}

TEST(grad_linalg_linear_relu) {
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        lr_inputs v;
        CHECK(lr_pick(&v, with_bias));
        gc_spec s = {.n_in = with_bias ? 3 : 2,
                     .ndim = {3, 2, 1},
                     .shape = {{2, 3, 5}, {4, 5}, {4}},
                     .init = {v.x, v.w, v.b},
                     .eps = 0.01f,
                     .atol = 1e-3f,
                     .rtol = 1e-3f};
        CHECK_GRAD(with_bias ? "linear_relu with bias" : "linear_relu", build_linear_relu,
                   with_bias ? (void *)1 : NULL, &s);
    }
}

/* y, dx, dW and db of linear_relu against elbo_relu(elbo_linear(...)): the same bits, with and
 * without bias, K in one block and in two (300 = 192 + 108: the bias lands on the first block,
 * the relu on the last), 1 and 2 threads, the packed kernel and the other kernels (the test
 * hook sends every product to them); with y's gradient retained, y->grad stays dL/dy. */
static int lr_run(int fused, int with_bias, int64_t K, int retain, float **out, int64_t *n_out) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 70, K), *w = elbo_tensor_new2(ctx, 200, K);
    elbo_tensor *b = with_bias ? elbo_tensor_new1(ctx, 200) : NULL;
    fill(x->data, x->numel, 41);
    fill(w->data, w->numel, 42);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor_requires_grad(w, 1);
    if (b) {
        fill(b->data, b->numel, 43);
        elbo_tensor_requires_grad(b, 1);
    }
    elbo_tensor *y = fused ? elbo_linear_relu(ctx, x, w, b)
                           : elbo_relu(ctx, elbo_linear(ctx, x, w, b));
    if (!y) return 0;
    if (retain) elbo_tensor_retain_grad(y);
    float *gy = malloc((size_t)y->numel * sizeof(float));
    fill(gy, y->numel, 44);
    int ok = elbo_backward_with(ctx, y, gy) == ELBO_OK;
    if (retain) ok = ok && y->grad && !memcmp(y->grad, gy, (size_t)y->numel * sizeof(float));
    free(gy);
    const float *data[4] = {y->data, x->grad, w->grad, b ? b->grad : NULL};
    int64_t sizes[4] = {y->numel, x->numel, w->numel, b ? b->numel : 0}, total = 0;
    for (int i = 0; i < 4; i++) total += sizes[i];
    float *o = malloc((size_t)total * sizeof(float));
    for (int i = 0, off = 0; i < 4; off += (int)sizes[i++]) {
        if (sizes[i] && !data[i]) ok = 0;
        if (sizes[i] && data[i]) memcpy(o + off, data[i], (size_t)sizes[i] * sizeof(float));
    }
    *out = o;
    *n_out = total;
    elbo_ctx_free(ctx);
    return ok;
}

TEST(linalg_linear_relu_same_bits_as_linear_then_relu) {
    int saved_threads = elbo_get_threads();
    double saved_hook = elbo__sgemm_small_mnk_override;
    const int64_t Ks[2] = {100, 300};
    for (int kernel = 0; kernel < 2; kernel++)
        for (int threads = 1; threads <= 2; threads++)
            for (int with_bias = 0; with_bias < 2; with_bias++)
                for (int ki = 0; ki < 2; ki++)
                    for (int retain = 0; retain < 2; retain++) {
                        elbo_set_threads(threads);
                        elbo__sgemm_small_mnk_override = kernel ? 1e30 : saved_hook;
                        float *a = NULL, *f = NULL;
                        int64_t na = 0, nf = 0;
                        int ok = lr_run(0, with_bias, Ks[ki], retain, &a, &na) &&
                                 lr_run(1, with_bias, Ks[ki], retain, &f, &nf);
                        int same = ok && na == nf && !memcmp(a, f, (size_t)na * sizeof(float));
                        free(a);
                        free(f);
                        elbo__sgemm_small_mnk_override = saved_hook;
                        elbo_set_threads(saved_threads);
                        CHECK_MSG(same,
                                  "kernel %s, %d threads, bias %d, K %lld, retain %d: %s",
                                  kernel ? "others" : "packed", threads, with_bias,
                                  (long long)Ks[ki], retain, ok ? "bits differ" : "failed");
                    }
}

TEST(linalg_linear_relu_shape_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 2, (int64_t[]){2, 3});
    elbo_tensor *w = elbo_tensor_zeros(ctx, 2, (int64_t[]){4, 5});
    CHECK(elbo_linear_relu(ctx, x, w, NULL) == NULL);
    CHECK(strstr(elbo_last_error(), "linear_relu") && strstr(elbo_last_error(), "(2, 3)") &&
          strstr(elbo_last_error(), "(4, 5)"));
    elbo_tensor *w3 = elbo_tensor_zeros(ctx, 2, (int64_t[]){4, 3});
    elbo_tensor *b = elbo_tensor_zeros(ctx, 1, (int64_t[]){5});
    CHECK(elbo_linear_relu(ctx, x, w3, b) == NULL);
    CHECK(strstr(elbo_last_error(), "linear_relu") && strstr(elbo_last_error(), "(5)"));
    elbo_ctx_free(ctx);
}
