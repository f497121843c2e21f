/* Normalisation: GroupNorm (Wu & He 2018) and LayerNorm (Ba et al. 2016), as
 * torch.nn.functional.group_norm / layer_norm: biased variance, eps inside the square root.
 * Statistics and every long sum are accumulated in double, each by one thread in a fixed
 * order, so results do not depend on the thread count.
 *
 * Backward, with xhat = (x - mu) rstd, rstd = 1/sqrt(var + eps), g = dy gamma over a group
 * (or row) of N elements:
 *   dx = rstd (g - mean(g) - xhat mean(g xhat)),
 *   dgamma_c = sum dy xhat,  dbeta_c = sum dy   (over batch and spatial positions). */
#include "internal.h"
#include "ops/vmath.h"

#include <math.h>
#include <omp.h>

#define LANES 8

#ifdef __AVX512F__
#include <immintrin.h>

/* sum a and sum a b over [0..n) in double (b = NULL: sum a^2), 32 partial sums (4 zmm of 8
 * doubles, products fused into the adds) combined in a fixed order: about 0.3 cycles an
 * element against 1.3 for the 8-lane loop below, which is latency bound. */
static void sum_and_dot(const float *a, const float *b, int64_t n, double *s, double *sp) {
    __m512d sa[4], sq[4];
    for (int k = 0; k < 4; k++) sa[k] = sq[k] = _mm512_setzero_pd();
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int k = 0; k < 4; k++) {
            __m512d va = _mm512_cvtps_pd(_mm256_loadu_ps(a + i + 8 * k));
            __m512d vb = b ? _mm512_cvtps_pd(_mm256_loadu_ps(b + i + 8 * k)) : va;
            sa[k] = _mm512_add_pd(sa[k], va);
            sq[k] = _mm512_fmadd_pd(va, vb, sq[k]);
        }
    for (int k = 0; i < n; i += 8, k++) { /* the tail, 8 at a time, zeros past n */
        __mmask8 m = n - i >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << (n - i)) - 1);
        __m512d va = _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, a + i));
        __m512d vb = b ? _mm512_cvtps_pd(_mm256_maskz_loadu_ps(m, b + i)) : va;
        sa[k] = _mm512_add_pd(sa[k], va);
        sq[k] = _mm512_fmadd_pd(va, vb, sq[k]);
    }
    __m512d ta = _mm512_add_pd(_mm512_add_pd(sa[0], sa[1]), _mm512_add_pd(sa[2], sa[3]));
    __m512d tq = _mm512_add_pd(_mm512_add_pd(sq[0], sq[1]), _mm512_add_pd(sq[2], sq[3]));
    double la[8], lq[8];
    _mm512_storeu_pd(la, ta);
    _mm512_storeu_pd(lq, tq);
    double ra = 0, rq = 0;
    for (int l = 0; l < 8; l++) {
        ra += la[l];
        rq += lq[l];
    }
    *s = ra;
    *sp = rq;
}

static void sum_sumsq(const float *x, int64_t n, double *s, double *ss) {
    sum_and_dot(x, NULL, n, s, ss);
}
static void sum_dy_dyx(const float *dy, const float *x, int64_t n, double *s, double *sx) {
    sum_and_dot(dy, x, n, s, sx);
}
#else
/* sum x and sum x^2 over x[0..n) in double, LANES independent partial sums combined in
 * lane order. */
static void sum_sumsq(const float *x, int64_t n, double *s, double *ss) {
    double a[LANES] = {0}, q[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double v = x[i + l];
            a[l] += v;
            q[l] += v * v;
        }
    for (int l = 0; i < n; i++, l++) {
        double v = x[i];
        a[l] += v;
        q[l] += v * v;
    }
    double sa = 0, sq = 0;
    for (int l = 0; l < LANES; l++) {
        sa += a[l];
        sq += q[l];
    }
    *s = sa;
    *ss = sq;
}

/* sum dy and sum dy x over [0..n) in double. */
static void sum_dy_dyx(const float *dy, const float *x, int64_t n, double *s, double *sx) {
    double a[LANES] = {0}, q[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; l++) {
            double g = dy[i + l];
            a[l] += g;
            q[l] += g * (double)x[i + l];
        }
    for (int l = 0; i < n; i++, l++) {
        double g = dy[i];
        a[l] += g;
        q[l] += g * (double)x[i];
    }
    double sa = 0, sq = 0;
    for (int l = 0; l < LANES; l++) {
        sa += a[l];
        sq += q[l];
    }
    *s = sa;
    *sx = sq;
}
#endif

/* Mean and 1/sqrt(var + eps) from the sums over n elements (biased variance). */
static void moments(double s, double ss, int64_t n, float eps, double *mu, double *rstd) {
    double m = n ? s / (double)n : 0.0;
    double var = n ? ss / (double)n - m * m : 0.0;
    if (var < 0) var = 0;
    *mu = m;
    *rstd = 1.0 / sqrt(var + (double)eps);
}

static int check_affine(const char *op, const elbo_tensor *x, const elbo_tensor *p, int64_t n,
                        const char *what) {
    if (!p || (p->ndim == 1 && p->numel == n)) return 1;
    char why[64];
    snprintf(why, sizeof why, "%s must have shape (%lld)", what, (long long)n);
    elbo__shape_error(op, x, p, why);
    return 0;
}

/* ---- group norm: x (B,C,S...) -> same shape, G groups of C/G channels ---------------- */
/* The fused GroupNorm + SiLU (elbo_group_norm_silu) shares this code: y = silu(u) with the
 * group-norm output u = x a_c + b_c recomputed in backward from the saved mu and rstd, and
 * du = dy s (1 + u (1 - s)), s = sigmoid(u), fed to the same closed form in place of dy. */
typedef struct {
    double *mu, *rstd; /* (B,G) */
    double *s1, *s2;   /* (B,C) backward workspace: sum_s du and sum_s du x */
} gn_saved;

/* du[0..S) = dy silu'(u), u = x a + b: d/du u sigmoid(u) = s (1 + u (1 - s)). */
static void silu_grad_row(const float *dy, const float *x, float a, float b, int64_t S, float *du) {
    int64_t s = 0;
#ifdef __AVX512F__ /* the same bits on 16 lanes (vmath.h) */
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b), one = _mm512_set1_ps(1.0f);
    for (; s < S; s += 16) {
        __mmask16 m = S - s >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - s)) - 1);
        __m512 u = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + s), va), vb);
        __m512 sg = elbo__sigmoidf16(u);
        __m512 t = _mm512_mul_ps(sg, _mm512_add_ps(one, _mm512_mul_ps(u, _mm512_sub_ps(one, sg))));
        _mm512_mask_storeu_ps(du + s, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, dy + s), t));
    }
#endif
    for (; s < S; s++) {
        float u = x[s] * a + b, sg = elbo__sigmoidf(u);
        du[s] = dy[s] * (sg * (1.0f + u * (1.0f - sg)));
    }
}

/* y = u sigmoid(u), u = x a + b, over a row of S. */
static void affine_silu_row(const float *x, float a, float b, int64_t S, float *y) {
    int64_t i = 0;
#ifdef __AVX512F__ /* the same bits on 16 lanes (vmath.h) */
    const __m512 va = _mm512_set1_ps(a), vb = _mm512_set1_ps(b);
    for (; i < S; i += 16) {
        __mmask16 m = S - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (S - i)) - 1);
        __m512 u = _mm512_add_ps(_mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), va), vb);
        _mm512_mask_storeu_ps(y + i, m, _mm512_mul_ps(u, elbo__sigmoidf16(u)));
    }
#endif
    for (; i < S; i++) {
        float u = x[i] * a + b;
        y[i] = u * elbo__sigmoidf(u);
    }
}

static void group_norm_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out;
    int fresh;
    float *gx = elbo__grad_fresh(ctx, x, &fresh);
    float *ggamma = gamma ? elbo__grad(ctx, gamma) : NULL;
    float *gbeta = beta ? elbo__grad(ctx, beta) : NULL;
    if (!gx && !ggamma && !gbeta) return;
    const gn_saved *sv = n->saved;
    int64_t B = x->shape[0], C = x->shape[1], G = n->iarg[0], Cg = C / G;
    int64_t S = B * C != 0 ? x->numel / (B * C) : 0, N = Cg * S;
    int silu = (int)n->iarg[1];
    const float *xd = x->data, *dy_out = y->grad, *gm = gamma ? gamma->data : NULL;
    const float *bt = beta ? beta->data : NULL;
    double *s1 = sv->s1, *s2 = sv->s2;
    int par = x->numel > ELBO_PAR_MIN && elbo__parallel_ok();
    int nthr = par ? omp_get_max_threads() : 1;
    /* silu: du of one group, one buffer per thread (it stays in that core's cache) */
    float *du_buf = NULL;
    if (silu) {
        du_buf = elbo_ctx_scratch(ctx, (size_t)nthr * (size_t)(N ? N : 1) * sizeof(float));
        if (!du_buf) return;
    }
    ELBO_PARALLEL_FOR(
        par, for (int64_t bg = 0; bg < B * G; bg++) {
            int64_t b = bg / G, g = bg % G, c0 = g * Cg;
            double mu = sv->mu[bg], rstd = sv->rstd[bg], sg = 0, sgx = 0;
            int64_t base = (b * C + c0) * S;
            /* dy of the group (du for silu), indexed from the group's first element */
            const float *dy = dy_out + base;
            if (silu) {
                float *du = du_buf + (size_t)(nthr > 1 ? omp_get_thread_num() : 0) * (size_t)N;
                for (int64_t c = c0; c < c0 + Cg; c++) {
                    double a = rstd * (gm ? gm[c] : 1.0);
                    float af = (float)a, bf = (float)((bt ? bt[c] : 0.0) - mu * a);
                    int64_t off = (b * C + c) * S;
                    silu_grad_row(dy_out + off, xd + off, af, bf, S, du + (off - base));
                }
                dy = du;
            }
            for (int64_t c = c0; c < c0 + Cg; c++) {
                int64_t off = (b * C + c) * S;
                sum_dy_dyx(dy + (off - base), xd + off, S, &s1[b * C + c], &s2[b * C + c]);
                double gc = gm ? gm[c] : 1.0;
                sg += gc * s1[b * C + c];
                sgx += gc * (s2[b * C + c] - mu * s1[b * C + c]);
            }
            if (!gx) continue;
            /* mean(g) and mean(g xhat) over the group; dx = A_c dy + Bx x + C0. */
            double m1 = sg / (double)N, m2 = sgx * rstd / (double)N;
            float Bx = (float)(-rstd * rstd * m2), C0 = (float)(rstd * (mu * rstd * m2 - m1));
            for (int64_t c = c0; c < c0 + Cg; c++) {
                int64_t off = (b * C + c) * S;
                float A = (float)(rstd * (gm ? gm[c] : 1.0));
                const float *dyc = dy + (off - base), *xc = xd + off;
                float *gxc = gx + off;
                if (fresh)
                    for (int64_t s = 0; s < S; s++) gxc[s] = A * dyc[s] + Bx * xc[s] + C0;
                else
                    for (int64_t s = 0; s < S; s++) gxc[s] += A * dyc[s] + Bx * xc[s] + C0;
            }
        });
    if (ggamma || gbeta) {
        ELBO_PARALLEL_FOR(
            B * C > ELBO_PAR_MIN, for (int64_t c = 0; c < C; c++) {
                double dg = 0, db = 0;
                for (int64_t b = 0; b < B; b++) {
                    int64_t bg = b * G + c / Cg;
                    dg += sv->rstd[bg] * (s2[b * C + c] - sv->mu[bg] * s1[b * C + c]);
                    db += s1[b * C + c];
                }
                if (ggamma) ggamma[c] += (float)dg;
                if (gbeta) gbeta[c] += (float)db;
            });
    }
}

/* y = GroupNorm(x) (silu = 0) or SiLU(GroupNorm(x)) (silu = 1); op names the op. */
static elbo_tensor *group_norm_op(elbo_ctx *ctx, const char *op, elbo_tensor *x, int groups,
                                  elbo_tensor *gamma, elbo_tensor *beta, float eps, int silu) {
    if (!x) return NULL;
    char s[96];
    if (x->ndim < 2) {
        elbo_error(ELBO_ERR_SHAPE, "%s: input has shape %s, expected (B, C, ...)", op,
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t B = x->shape[0], C = x->shape[1];
    if (groups < 1 || C % groups != 0) {
        elbo_error(ELBO_ERR_SHAPE, "%s: %lld channels of input %s are not divisible into %d groups",
                   op, (long long)C, elbo_shape_str(x, s, sizeof s), groups);
        return NULL;
    }
    if (!check_affine(op, x, gamma, C, "gamma") || !check_affine(op, x, beta, C, "beta"))
        return NULL;
    if (!(eps >= 0)) {
        elbo_error(ELBO_ERR_ARG, "%s: eps %g must be >= 0", op, (double)eps);
        return NULL;
    }
    int64_t G = groups, Cg = C / G, S = B * C != 0 ? x->numel / (B * C) : 0, N = Cg * S;
    elbo_tensor *y = elbo__new_like(ctx, x);
    gn_saved *sv = y ? elbo_ctx_alloc(ctx, sizeof *sv) : NULL;
    double *st = sv ? elbo_ctx_alloc(ctx, (size_t)(2 * B * G + 1) * sizeof(double)) : NULL;
    if (!st) return NULL;
    sv->mu = st;
    sv->rstd = st + B * G;
    const float *xd = x->data, *gm = gamma ? gamma->data : NULL, *bt = beta ? beta->data : NULL;
    float *yd = y->data;
    ELBO_PARALLEL_FOR(
        x->numel > ELBO_PAR_MIN, for (int64_t bg = 0; bg < B * G; bg++) {
            int64_t b = bg / G, g = bg % G;
            const float *xg = xd + (b * C + g * Cg) * S;
            double sum, sumsq, mu, rstd;
            sum_sumsq(xg, N, &sum, &sumsq);
            moments(sum, sumsq, N, eps, &mu, &rstd);
            sv->mu[bg] = mu;
            sv->rstd[bg] = rstd;
            /* u = x a_c + b_c, a_c = rstd gamma_c, b_c = beta_c - mu a_c; y = u or u sigmoid(u) */
            for (int64_t c = g * Cg; c < (g + 1) * Cg; c++) {
                double a = rstd * (gm ? gm[c] : 1.0);
                float af = (float)a, bf = (float)((bt ? bt[c] : 0.0) - mu * a);
                const float *xc = xd + (b * C + c) * S;
                float *yc = yd + (b * C + c) * S;
                if (silu)
                    affine_silu_row(xc, af, bf, S, yc);
                else
                    for (int64_t i = 0; i < S; i++) yc[i] = xc[i] * af + bf;
            }
        });
    int ok;
    elbo_node *node = elbo__record(ctx, op, y, group_norm_backward, &ok, 3, x, gamma, beta);
    if (!ok) return NULL;
    if (node) {
        /* Allocated here so that backward needs no arena memory beyond the gradients. */
        sv->s1 = elbo_ctx_alloc(ctx, (size_t)(2 * B * C + 1) * sizeof(double));
        if (!sv->s1) return NULL;
        sv->s2 = sv->s1 + B * C;
        node->iarg[0] = G;
        node->iarg[1] = silu;
        node->farg[0] = eps;
        node->saved = sv;
    }
    return y;
}

elbo_tensor *elbo_group_norm(elbo_ctx *ctx, elbo_tensor *x, int groups, elbo_tensor *gamma,
                             elbo_tensor *beta, float eps) {
    return group_norm_op(ctx, "group_norm", x, groups, gamma, beta, eps, 0);
}

/* SiLU(GroupNorm(x)) in one pass; the group-norm output is not stored (backward recomputes
 * it from the saved per-group mean and rstd). */
elbo_tensor *elbo_group_norm_silu(elbo_ctx *ctx, elbo_tensor *x, int groups, elbo_tensor *gamma,
                                  elbo_tensor *beta, float eps) {
    return group_norm_op(ctx, "group_norm_silu", x, groups, gamma, beta, eps, 1);
}

/* ---- layer norm: x (..., D) normalised over D ----------------------------------------- */
typedef struct {
    double *mu, *rstd; /* one per row */
} ln_saved;

#define LN_COLS 64

static void layer_norm_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *gamma = n->in[1], *beta = n->in[2], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    float *ggamma = gamma ? elbo__grad(ctx, gamma) : NULL;
    float *gbeta = beta ? elbo__grad(ctx, beta) : NULL;
    const ln_saved *sv = n->saved;
    int64_t D = x->shape[x->ndim - 1], R = D ? x->numel / D : 0;
    const float *xd = x->data, *dy = y->grad, *gm = gamma ? gamma->data : NULL;
    if (gx) {
        ELBO_PARALLEL_FOR(
            x->numel > ELBO_PAR_MIN, for (int64_t r = 0; r < R; r++) {
                const float *xr = xd + r * D, *dyr = dy + r * D;
                double mu = sv->mu[r], rstd = sv->rstd[r], sg = 0, sgx = 0;
                for (int64_t d = 0; d < D; d++) {
                    double g = (double)dyr[d] * (gm ? gm[d] : 1.0);
                    sg += g;
                    sgx += g * ((double)xr[d] - mu);
                }
                double m1 = sg / (double)D, m2 = sgx * rstd / (double)D;
                float Bx = (float)(-rstd * rstd * m2), C0 = (float)(rstd * (mu * rstd * m2 - m1));
                float rs = (float)rstd;
                float *gxr = gx + r * D;
                for (int64_t d = 0; d < D; d++)
                    gxr[d] += rs * (gm ? gm[d] : 1.0f) * dyr[d] + Bx * xr[d] + C0;
            });
    }
    if (ggamma || gbeta) {
        /* Column blocks, rows summed in order. */
        int64_t nb = (D + LN_COLS - 1) / LN_COLS;
        ELBO_PARALLEL_FOR(
            x->numel > ELBO_PAR_MIN, for (int64_t blk = 0; blk < nb; blk++) {
                int64_t d0 = blk * LN_COLS, d1 = d0 + LN_COLS < D ? d0 + LN_COLS : D;
                double dg[LN_COLS] = {0}, db[LN_COLS] = {0};
                for (int64_t r = 0; r < R; r++) {
                    const float *xr = xd + r * D, *dyr = dy + r * D;
                    double mu = sv->mu[r], rstd = sv->rstd[r];
                    for (int64_t d = d0; d < d1; d++) {
                        dg[d - d0] += (double)dyr[d] * ((xr[d] - mu) * rstd);
                        db[d - d0] += dyr[d];
                    }
                }
                for (int64_t d = d0; d < d1; d++) {
                    if (ggamma) ggamma[d] += (float)dg[d - d0];
                    if (gbeta) gbeta[d] += (float)db[d - d0];
                }
            });
    }
}

elbo_tensor *elbo_layer_norm(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *gamma, elbo_tensor *beta,
                             float eps) {
    if (!x) return NULL;
    if (x->ndim < 1) {
        elbo_error(ELBO_ERR_SHAPE, "layer_norm: input is a scalar, expected (..., D)");
        return NULL;
    }
    int64_t D = x->shape[x->ndim - 1], R = D ? x->numel / D : 0;
    if (!check_affine("layer_norm", x, gamma, D, "gamma") ||
        !check_affine("layer_norm", x, beta, D, "beta"))
        return NULL;
    if (!(eps >= 0)) {
        elbo_error(ELBO_ERR_ARG, "layer_norm: eps %g must be >= 0", (double)eps);
        return NULL;
    }
    elbo_tensor *y = elbo__new_like(ctx, x);
    ln_saved *sv = y ? elbo_ctx_alloc(ctx, sizeof *sv) : NULL;
    double *st = sv ? elbo_ctx_alloc(ctx, (size_t)(2 * R + 1) * sizeof(double)) : NULL;
    if (!st) return NULL;
    sv->mu = st;
    sv->rstd = st + R;
    const float *xd = x->data, *gm = gamma ? gamma->data : NULL, *bt = beta ? beta->data : NULL;
    float *yd = y->data;
    ELBO_PARALLEL_FOR(
        x->numel > ELBO_PAR_MIN, for (int64_t r = 0; r < R; r++) {
            const float *xr = xd + r * D;
            float *yr = yd + r * D;
            double sum, sumsq, mu, rstd;
            sum_sumsq(xr, D, &sum, &sumsq);
            moments(sum, sumsq, D, eps, &mu, &rstd);
            sv->mu[r] = mu;
            sv->rstd[r] = rstd;
            float rs = (float)rstd, m = (float)mu;
            if (gm || bt)
                for (int64_t d = 0; d < D; d++)
                    yr[d] = (xr[d] - m) * rs * (gm ? gm[d] : 1.0f) + (bt ? bt[d] : 0.0f);
            else
                for (int64_t d = 0; d < D; d++) yr[d] = (xr[d] - m) * rs;
        });
    int ok;
    elbo_node *node =
        elbo__record(ctx, "layer_norm", y, layer_norm_backward, &ok, 3, x, gamma, beta);
    if (!ok) return NULL;
    if (node) {
        node->farg[0] = eps;
        node->saved = sv;
    }
    return y;
}
