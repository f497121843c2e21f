/* Convolution and resampling ops: conv2d / conv2d_ex against a direct double-precision
 * convolution, gradients to x, w and b against finite differences, every chunking path of
 * the im2col + sgemm implementation, shape errors, and the same bits for 1 and 2 threads;
 * upsample_nearest2x and avg_pool2d by hand and by finite differences. */
#include "kernels/cpu/kernels.h"
#include "test.h"

#include <float.h>

#include <stdlib.h>
#include <string.h>

static void fill(float *x, int64_t n, uint64_t seed) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_normal(&r, x, (size_t)n, 0, 1);
}

typedef struct {
    int B, C, H, W, OC, KH, KW, sh, sw, ph, pw, bias;
} conv_cfg;

/* Settings that exercise every path of conv2d (modes 0..N_MODES-1): the default (for these
 * small images, the whole test batch in one im2col chunk, kernels and tiled sgemm over all
 * threads), one image per chunk (one task per image, direct NCHW GEMMs; cols = x for 1x1),
 * two images per chunk for a batch of five (four chunk tasks of 1, 1, 1 and 2 images), and
 * shifted GEMMs on padded planes wherever they apply (stride 1), with dW by per-offset
 * products (mode 3) or by im2col (mode 4), all without Winograd; and Winograd (F(4x4, 3x3)
 * for the forward pass and dX, F(2x2, 3x3) for dW) of every 3x3 stride-1 pad-1 convolution, with the whole
 * batch in one chunk where it fits (mode 5) or one image per chunk task (mode 6; dW summed
 * over 16 groups of chunks for batches of 16 and more); and the direct kernels for every
 * stride-1 convolution with pad < kernel (mode 7). Modes 0 to 6 turn the direct kernels off
 * (by default they take the layers of at most 4 output channels). */
#define N_MODES 8
#define WINO_FIRST 5
#define WINO_LAST 6
#define WINO_MODE(mode) ((mode) >= WINO_FIRST && (mode) <= WINO_LAST)
typedef struct {
    size_t chunk_bytes, wino_bytes, wino_dw_bytes;
    int64_t shift_min_ow, shift_min_c, wino_min_c, wino_dx_min_c, wino_dw_min_c, wino_min_hw;
    int shift_dw;
    int64_t direct_max_c;
} conv_tuning;

static conv_tuning tuning_get(void) {
    conv_tuning t = {elbo__conv_chunk_bytes,   elbo__conv_wino_bytes,    elbo__conv_wino_dw_bytes,
                     elbo__conv_shift_min_ow,  elbo__conv_shift_min_c,   elbo__conv_wino_min_c,
                     elbo__conv_wino_dx_min_c, elbo__conv_wino_dw_min_c, elbo__conv_wino_min_hw,
                     elbo__conv_shift_dw,      elbo__conv_direct_max_c};
    return t;
}

static void tuning_set(conv_tuning t) {
    elbo__conv_chunk_bytes = t.chunk_bytes;
    elbo__conv_wino_bytes = t.wino_bytes;
    elbo__conv_wino_dw_bytes = t.wino_dw_bytes;
    elbo__conv_wino_dw_min_c = t.wino_dw_min_c;
    elbo__conv_shift_min_ow = t.shift_min_ow;
    elbo__conv_shift_min_c = t.shift_min_c;
    elbo__conv_wino_min_c = t.wino_min_c;
    elbo__conv_wino_dx_min_c = t.wino_dx_min_c;
    elbo__conv_wino_min_hw = t.wino_min_hw;
    elbo__conv_shift_dw = t.shift_dw;
    elbo__conv_direct_max_c = t.direct_max_c;
}

/* A 3x3 stride-1 pad-1 convolution (the Winograd path's). */
static int wino_shape(const conv_cfg *c) {
    return c->KH == 3 && c->KW == 3 && c->sh == 1 && c->sw == 1 && c->ph == 1 && c->pw == 1;
}

static conv_tuning tuning_for(const conv_cfg *c, int mode) {
    conv_tuning t = tuning_get();
    int64_t OH = (c->H + 2 * c->ph - c->KH) / c->sh + 1,
            OW = (c->W + 2 * c->pw - c->KW) / c->sw + 1;
    size_t per = (size_t)(c->C * c->KH * c->KW + c->OC) * (size_t)(OH * OW) * sizeof(float);
    if (mode == 1) t.chunk_bytes = 1;
    if (mode == 2) t.chunk_bytes = 2 * per;
    if (mode == 3 || mode == 4) t.shift_min_ow = t.shift_min_c = 1;
    if (mode == 3 || mode == 4) t.shift_dw = mode == 3; /* dW by per-offset products, or im2col */
    t.wino_min_c = t.wino_dx_min_c = t.wino_dw_min_c = t.wino_min_hw =
        WINO_MODE(mode) ? 1 : INT64_MAX;
    if (mode == 6) t.wino_bytes = t.wino_dw_bytes = 1;
    t.direct_max_c = mode == 7 ? INT64_MAX : 0;
    return t;
}

/* Direct cross-correlation in double: y[b,o,i,j] = bias[o] + sum_{c,kh,kw} w[o,c,kh,kw]
 * x[b,c,i sh - ph + kh, j sw - pw + kw]; abs gets the sum of |terms| (for the error bound). */
static void ref_conv(const conv_cfg *c, const float *x, const float *w, const float *b, double *y,
                     double *abs) {
    int OH = (c->H + 2 * c->ph - c->KH) / c->sh + 1, OW = (c->W + 2 * c->pw - c->KW) / c->sw + 1;
    for (int n = 0; n < c->B; n++)
        for (int o = 0; o < c->OC; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    double s = b ? b[o] : 0, a = fabs(s);
                    for (int ci = 0; ci < c->C; ci++)
                        for (int kh = 0; kh < c->KH; kh++)
                            for (int kw = 0; kw < c->KW; kw++) {
                                int ih = i * c->sh - c->ph + kh, iw = j * c->sw - c->pw + kw;
                                if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
                                double p = (double)w[((o * c->C + ci) * c->KH + kh) * c->KW + kw] *
                                           x[((n * c->C + ci) * c->H + ih) * c->W + iw];
                                s += p;
                                a += fabs(p);
                            }
                    int64_t k = ((int64_t)(n * c->OC + o) * OH + i) * OW + j;
                    y[k] = s;
                    abs[k] = a;
                }
}

/* The error bound of Winograd F(4x4, 3x3) for a 3x3 stride-1 pad-1 convolution
 * (kernels/cpu/winograd.c). Each output is y = A^T (sum_c U_c . V_c) A + bias with
 * U_c = G g_c G^T, V_c = B^T d_c B. In float32, U is computed in double and rounded once
 * (counted as two roundings, for the double's own error); each 1-D pass of V takes at most two
 * rounded additions per entry (bt6: gamma_2, twice), the products and the sum over C channels
 * gamma_C, the output transform at most three per pass (at6: gamma_3, twice) and the bias one
 * (the multiplications by 2, 4 and 8 are exact): by Higham's lemma 3.3,
 *   |fl(y) - y| <= gamma_{C+13} ( |A^T| [sum_c (|G||g_c||G^T|) . (|B^T||d_c||B|)] |A| + |bias| ).
 * abs gets the right-hand side's bracket for every output (double). */
static void ref_wino_abs(const conv_cfg *c, const float *x, const float *w, const float *b,
                         double *abs) {
    static const double Ga[6][3] = {{1. / 4, 0, 0},          {1. / 6, 1. / 6, 1. / 6},
                                    {1. / 6, 1. / 6, 1. / 6}, {1. / 24, 1. / 12, 1. / 6},
                                    {1. / 24, 1. / 12, 1. / 6}, {0, 0, 1}};
    static const double Ba[6][6] = {{4, 0, 5, 0, 1, 0}, {0, 4, 4, 1, 1, 0}, {0, 4, 4, 1, 1, 0},
                                    {0, 2, 1, 2, 1, 0}, {0, 2, 1, 2, 1, 0}, {0, 4, 0, 5, 0, 1}};
    static const double Aa[4][6] = {
        {1, 1, 1, 1, 1, 0}, {0, 1, 1, 2, 2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, 1, 8, 8, 1}};
    int H = c->H, W = c->W;
    for (int n = 0; n < c->B; n++)
        for (int o = 0; o < c->OC; o++)
            for (int ty = 0; ty < (H + 3) / 4; ty++)
                for (int tx = 0; tx < (W + 3) / 4; tx++) {
                    double P[6][6] = {{0}};
                    for (int ci = 0; ci < c->C; ci++) {
                        double g[3][3], d[6][6], Gg[6][3], U[6][6], Bd[6][6], V[6][6];
                        for (int i = 0; i < 9; i++)
                            g[i / 3][i % 3] = fabs(w[(o * c->C + ci) * 9 + i]);
                        for (int i = 0; i < 36; i++) {
                            int ih = 4 * ty - 1 + i / 6, iw = 4 * tx - 1 + i % 6;
                            d[i / 6][i % 6] = ih < 0 || ih >= H || iw < 0 || iw >= W
                                                  ? 0
                                                  : fabs(x[((n * c->C + ci) * H + ih) * W + iw]);
                        }
                        for (int i = 0; i < 6; i++)
                            for (int j = 0; j < 3; j++)
                                Gg[i][j] =
                                    Ga[i][0] * g[0][j] + Ga[i][1] * g[1][j] + Ga[i][2] * g[2][j];
                        for (int i = 0; i < 6; i++)
                            for (int j = 0; j < 6; j++) {
                                U[i][j] =
                                    Gg[i][0] * Ga[j][0] + Gg[i][1] * Ga[j][1] + Gg[i][2] * Ga[j][2];
                                Bd[i][j] = 0;
                                for (int k = 0; k < 6; k++) Bd[i][j] += Ba[i][k] * d[k][j];
                            }
                        for (int i = 0; i < 6; i++)
                            for (int j = 0; j < 6; j++) {
                                V[i][j] = 0;
                                for (int k = 0; k < 6; k++) V[i][j] += Bd[i][k] * Ba[j][k];
                                P[i][j] += U[i][j] * V[i][j];
                            }
                    }
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            int oh = 4 * ty + i, ow = 4 * tx + j;
                            if (oh >= H || ow >= W) continue;
                            double s = b ? fabs(b[o]) : 0;
                            for (int k = 0; k < 6; k++)
                                for (int l = 0; l < 6; l++) s += Aa[i][k] * P[k][l] * Aa[j][l];
                            abs[((int64_t)(n * c->OC + o) * H + oh) * W + ow] = s;
                        }
                }
}

static const conv_cfg configs[] = {
    /* B  C  H  W OC KH KW sh sw ph pw bias */
    {5, 3, 7, 5, 4, 3, 3, 1, 1, 1, 1, 1},  /* 3x3 same padding, non-square */
    {5, 5, 6, 4, 3, 1, 1, 1, 1, 0, 0, 0},  /* 1x1 pointwise, no bias */
    {5, 2, 9, 11, 3, 5, 5, 2, 2, 2, 2, 1}, /* 5x5 stride 2 pad 2 */
    {5, 4, 8, 7, 6, 3, 3, 2, 2, 0, 0, 1},  /* 3x3 stride 2 no padding */
    {5, 3, 5, 6, 2, 3, 3, 1, 1, 2, 2, 1},  /* pad 2 > kernel half-width: output grows */
    {5, 3, 6, 5, 4, 1, 1, 2, 2, 0, 0, 1},  /* 1x1 stride 2 (not pointwise) */
    {5, 2, 7, 6, 3, 3, 1, 2, 1, 1, 0, 1},  /* conv2d_ex: 3x1 kernel, stride (2,1), pad (1,0) */
    {5, 1, 6, 6, 5, 3, 3, 1, 1, 1, 1, 1},  /* one input channel */
    {5, 4, 5, 5, 1, 3, 3, 1, 1, 1, 1, 0},  /* one output channel */
    {20, 2, 5, 4, 3, 3, 3, 1, 1, 1, 1, 1}, /* many chunks: dW summed in 16 groups (mode 1) */
    /* stride 1 with OC <= C: dX by the transposed convolution */
    {5, 4, 7, 6, 3, 3, 5, 1, 1, 1, 2, 1}, /* 3x5 kernel, pad (1,2) */
    {5, 4, 6, 7, 2, 3, 3, 1, 1, 0, 0, 1}, /* unpadded ("valid") */
    {5, 3, 8, 6, 3, 5, 5, 1, 1, 1, 1, 0}, /* 5x5 pad 1, OC = C */
    {1, 3, 6, 7, 4, 3, 3, 1, 1, 1, 1, 1}, /* a single image */
    {5, 2, 4, 5, 3, 1, 1, 1, 1, 1, 1, 1}, /* padding >= kernel: a ring of bias only */
};
#define N_CONFIGS ((int)(sizeof configs / sizeof configs[0]))

static elbo_tensor *run_conv(elbo_ctx *ctx, const conv_cfg *c, elbo_tensor *x, elbo_tensor *w,
                             elbo_tensor *b) {
    if (c->sh == c->sw && c->ph == c->pw) return elbo_conv2d(ctx, x, w, b, c->sh, c->ph);
    return elbo_conv2d_ex(ctx, x, w, b, c->sh, c->sw, c->ph, c->pw);
}

TEST(conv_forward_matches_direct_double) {
    conv_tuning saved = tuning_get();
    for (int ci = 0; ci < N_CONFIGS; ci++)
        for (int mode = 0; mode < N_MODES; mode++) {
            const conv_cfg *c = &configs[ci];
            tuning_set(tuning_for(c, mode));
            elbo_ctx *ctx = elbo_ctx_new(0);
            elbo_tensor *x = elbo_tensor_new4(ctx, c->B, c->C, c->H, c->W);
            elbo_tensor *w = elbo_tensor_new4(ctx, c->OC, c->C, c->KH, c->KW);
            elbo_tensor *b = c->bias ? elbo_tensor_new1(ctx, c->OC) : NULL;
            fill(x->data, x->numel, 100 + ci);
            fill(w->data, w->numel, 200 + ci);
            if (b) fill(b->data, b->numel, 300 + ci);
            elbo_tensor *y = run_conv(ctx, c, x, w, b);
            tuning_set(saved);
            int64_t OH = (c->H + 2 * c->ph - c->KH) / c->sh + 1;
            int64_t OW = (c->W + 2 * c->pw - c->KW) / c->sw + 1;
            int shape_ok = y && y->ndim == 4 && y->shape[0] == c->B && y->shape[1] == c->OC &&
                           y->shape[2] == OH && y->shape[3] == OW;
            if (!shape_ok) elbo_ctx_free(ctx);
            CHECK_MSG(shape_ok, "config %d mode %d: wrong output (%s)", ci, mode,
                      elbo_last_error());
            double *ref = malloc((size_t)y->numel * 2 * sizeof(double)), *abs = ref + y->numel;
            ref_conv(c, x->data, w->data, b ? b->data : NULL, ref, abs);
            /* Rounding bound of a float32 sum of n = C KH KW + 1 terms: gamma_n sum |terms|
             * (Higham eq. 3.5, u = 2^-24); for Winograd, gamma_{C+13} times the sum of the
             * absolute values through the transforms (see ref_wino_abs). */
            double u = 1.0 / 16777216.0, nu = (c->C * c->KH * c->KW + 2) * u;
            if (WINO_MODE(mode) && wino_shape(c)) {
                ref_wino_abs(c, x->data, w->data, b ? b->data : NULL, abs);
                nu = (c->C + 13) * u;
            }
            int64_t bad = -1;
            for (int64_t i = 0; i < y->numel && bad < 0; i++)
                if (!(fabs(y->data[i] - ref[i]) <= nu / (1 - nu) * abs[i] + 1e-30)) bad = i;
            double got = bad >= 0 ? y->data[bad] : 0, want = bad >= 0 ? ref[bad] : 0;
            free(ref);
            elbo_ctx_free(ctx);
            CHECK_MSG(bad < 0, "config %d mode %d: element %lld is %.9g, direct sum %.9g", ci, mode,
                      (long long)bad, got, want);
        }
}

/* The Winograd path (modes 5 and 6, forced) against PyTorch's float64 conv2d on the 3x3
 * stride-1 pad-1 fixtures of tests/test_torch_ops.c, with that file's convolution tolerance
 * (atol 1e-5, rtol 1e-4): forward, dX by the transposed Winograd convolution, dW and db. */
TEST(conv_winograd_matches_torch_fixtures) {
    static const char *names[] = {"op_conv2d_k3s1p1", "op_conv2d_k16c16", "op_conv2d_chunks",
                                  "op_conv2d_chunks_tdx"};
    static const char *ins[] = {"x", "w", "b"};
    conv_tuning saved = tuning_get();
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        for (int mode = WINO_FIRST; mode <= WINO_LAST; mode++) {
            fx_file f;
            CHECK_MSG(fx_load(&f, names[i]) == 0, "%s: %s", names[i], elbo_last_error());
            elbo_ctx *ctx = elbo_ctx_new(0);
            elbo_tensor *t[3] = {NULL, NULL, NULL};
            for (int k = 0; k < 3; k++) {
                char g[32];
                snprintf(g, sizeof g, "grad_%s", ins[k]);
                t[k] = fx_get(&f, ins[k]) ? fx_tensor(ctx, &f, ins[k]) : NULL;
                if (t[k]) elbo_tensor_requires_grad(t[k], fx_get(&f, g) != NULL);
            }
            const fx_entry *ey = fx_get(&f, "y"), *eg = fx_get(&f, "gy");
            tuning_set(tuning_for(&configs[0], mode));
            elbo_tensor *y = elbo_conv2d(ctx, t[0], t[1], t[2], 1, 1);
            int ok = y && ey && eg && ey->numel == y->numel &&
                     elbo_backward_with(ctx, y, (const float *)eg->data) == ELBO_OK;
            tuning_set(saved);
            char msg[256] = "", what[64] = "run";
            if (ok) {
                strcpy(what, "y");
                ok = fx_close(y->data, (const float *)ey->data, y->numel, 1e-5f, 1e-4f, msg,
                              sizeof msg);
            }
            for (int k = 0; k < 3 && ok; k++) {
                char g[32];
                snprintf(g, sizeof g, "grad_%s", ins[k]);
                const fx_entry *e = fx_get(&f, g);
                if (!e) continue;
                snprintf(what, sizeof what, "%s", g);
                ok = t[k] && t[k]->grad && e->numel == t[k]->numel &&
                     fx_close(t[k]->grad, (const float *)e->data, e->numel, 1e-5f, 1e-4f, msg,
                              sizeof msg);
            }
            elbo_ctx_free(ctx);
            fx_free(&f);
            CHECK_MSG(ok, "%s mode %d: %s %s", names[i], mode, what, msg);
        }
}

/* dW of a 3x3 stride-1 pad-1 convolution in double, dW[o,c,kh,kw] = sum_{b,i,j} dY[b,o,i,j]
 * x[b,c,i+kh-1,j+kw-1], and the error bound of the Winograd dW (wino_dw): per tile dM =
 * A dY A^T (two rounded additions per entry, gamma_2 |A||dY||A^T|), V = B^T d B (gamma_2),
 * their product (one rounding), the sum over all n_t tiles of the batch in any order
 * (gamma_{n_t}), then G^T dU G (two additions per factor, gamma_4; the halvings are exact)
 * and the accumulation into gw (one): by Higham's lemma 3.3
 *   |fl(dW) - dW| <= gamma_{n_t+10} |G^T| [sum_tiles (|A||dY||A^T|) . (|B^T||d||B|)] |G|.
 * abs gets that bracket. */
static void ref_wino_dw(const conv_cfg *c, const float *x, const float *dy, double *dw,
                        double *abs) {
    static const double Ga[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, .5, .5}, {0, 0, 1}};
    static const double Ba[4][4] = {{1, 0, 1, 0}, {0, 1, 1, 0}, {0, 1, 1, 0}, {0, 1, 0, 1}};
    static const double Aa[4][2] = {{1, 0}, {1, 1}, {1, 1}, {0, 1}};
    int H = c->H, W = c->W, C = c->C;
    for (int o = 0; o < c->OC; o++)
        for (int ci = 0; ci < C; ci++) {
            double P[4][4] = {{0}}, s[9] = {0};
            for (int n = 0; n < c->B; n++) {
                const float *xc = x + (n * C + ci) * H * W, *dc = dy + (n * c->OC + o) * H * W;
                for (int k = 0; k < 9; k++)
                    for (int i = 0; i < H; i++)
                        for (int j = 0; j < W; j++) {
                            int ih = i + k / 3 - 1, iw = j + k % 3 - 1;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                s[k] += (double)dc[i * W + j] * xc[ih * W + iw];
                        }
                for (int ty = 0; ty < (H + 1) / 2; ty++)
                    for (int tx = 0; tx < (W + 1) / 2; tx++) {
                        double d[4][4], e[2][2], V[4][4], M[4][4];
                        for (int i = 0; i < 16; i++) {
                            int ih = 2 * ty - 1 + i / 4, iw = 2 * tx - 1 + i % 4;
                            d[i / 4][i % 4] =
                                ih < 0 || ih >= H || iw < 0 || iw >= W ? 0 : fabs(xc[ih * W + iw]);
                        }
                        for (int i = 0; i < 4; i++) {
                            int ih = 2 * ty + i / 2, iw = 2 * tx + i % 2;
                            e[i / 2][i % 2] = ih >= H || iw >= W ? 0 : fabs(dc[ih * W + iw]);
                        }
                        for (int i = 0; i < 4; i++)
                            for (int j = 0; j < 4; j++) {
                                V[i][j] = M[i][j] = 0;
                                for (int k = 0; k < 4; k++)
                                    for (int l = 0; l < 4; l++)
                                        V[i][j] += Ba[i][k] * d[k][l] * Ba[j][l];
                                for (int k = 0; k < 2; k++)
                                    for (int l = 0; l < 2; l++)
                                        M[i][j] += Aa[i][k] * e[k][l] * Aa[j][l];
                                P[i][j] += M[i][j] * V[i][j];
                            }
                    }
            }
            for (int k = 0; k < 9; k++) {
                double a = 0;
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) a += Ga[i][k / 3] * P[i][j] * Ga[j][k % 3];
                dw[(o * C + ci) * 9 + k] = s[k];
                abs[(o * C + ci) * 9 + k] = a;
            }
        }
}

/* dW by Winograd (modes 5 and 6, forced) against the double-precision sum, within the bound
 * of ref_wino_dw, on the 3x3 stride-1 pad-1 configurations (odd and even sizes, one input or
 * output channel, 20 images in 16 dW groups in mode 6). */
TEST(conv_winograd_dw_within_error_bound) {
    conv_tuning saved = tuning_get();
    for (int ci = 0; ci < N_CONFIGS; ci++)
        for (int mode = WINO_FIRST; mode <= WINO_LAST; mode++) {
            const conv_cfg *c = &configs[ci];
            if (!wino_shape(c)) continue;
            elbo_ctx *ctx = elbo_ctx_new(0);
            elbo_tensor *x = elbo_tensor_new4(ctx, c->B, c->C, c->H, c->W);
            elbo_tensor *w = elbo_tensor_new4(ctx, c->OC, c->C, 3, 3);
            fill(x->data, x->numel, 500 + ci);
            fill(w->data, w->numel, 600 + ci);
            elbo_tensor_requires_grad(w, 1);
            int64_t ny = (int64_t)c->B * c->OC * c->H * c->W,
                    nt = c->B * ((c->H + 1) / 2) * ((c->W + 1) / 2);
            float *gy = malloc((size_t)ny * 4);
            fill(gy, ny, 700 + ci);
            tuning_set(tuning_for(c, mode));
            int ok = elbo_backward_with(ctx, elbo_conv2d(ctx, x, w, NULL, 1, 1), gy) == ELBO_OK;
            tuning_set(saved);
            double *ref = malloc((size_t)w->numel * 2 * sizeof(double)), *abs = ref + w->numel;
            ref_wino_dw(c, x->data, gy, ref, abs);
            double u = 1.0 / 16777216.0, nu = (double)(nt + 10) * u;
            int64_t bad = ok ? -1 : 0;
            for (int64_t i = 0; i < w->numel && bad < 0; i++)
                if (!(fabs(w->grad[i] - ref[i]) <= nu / (1 - nu) * abs[i] + 1e-30)) bad = i;
            double got = ok ? w->grad[bad >= 0 ? bad : 0] : 0, want = ref[bad >= 0 ? bad : 0];
            free(ref);
            free(gy);
            elbo_ctx_free(ctx);
            CHECK_MSG(bad < 0, "config %d mode %d: dW element %lld is %.9g, direct sum %.9g", ci,
                      mode, (long long)bad, got, want);
        }
}

/* ---- gradients ------------------------------------------------------------------------ */
static elbo_tensor *build_conv(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const conv_cfg *c = u;
    return run_conv(ctx, c, in[0], in[1], c->bias ? in[2] : NULL);
}

/* The tuning of `mode` holds for the whole check (backward runs outside build_conv). */
static int gradcheck_conv(const conv_cfg *c, int mode, char *msg, size_t len) {
    gc_spec s = {.n_in = c->bias ? 3 : 2,
                 .ndim = {4, 4, 1},
                 .shape = {{c->B, c->C, c->H, c->W}, {c->OC, c->C, c->KH, c->KW}, {c->OC}},
                 /* conv is linear in each element of x, w and b: central differences are exact
                  * up to float32 rounding of the outputs (~1e-7 relative / 2 eps ~ 1e-5 at
                  * eps 0.05), far inside atol = rtol = 1e-3. */
                 .eps = 0.05f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f,
                 .max_checks = 60};
    conv_tuning saved = tuning_get();
    tuning_set(tuning_for(c, mode));
    int rc = gradcheck("conv2d", build_conv, (void *)c, &s, msg, len);
    tuning_set(saved);
    return rc;
}

TEST(grad_conv2d_x_w_b_all_configs_and_chunkings) {
    for (int ci = 0; ci < N_CONFIGS; ci++)
        for (int mode = 0; mode < N_MODES; mode++) {
            char msg[512];
            CHECK_MSG(gradcheck_conv(&configs[ci], mode, msg, sizeof msg) == 0,
                      "config %d mode %d: %s", ci, mode, msg);
        }
}

/* elbo_conv2d_add: y = conv2d(x, w, b) + e[:, :, None, None] + r, inputs x, w, b, e (B, OC),
 * r (y's shape). Central differences on all five, on a 3x3 same convolution in every mode
 * (Winograd channel-last for 16 channels, tile-lane, im2col, shifted, direct) and a strided
 * one; atol = rtol = 1e-3 as for conv2d. The op is linear in each input, so a central
 * difference has no truncation error at any step and its error is the outputs' rounding
 * over 2 eps: eps 0.5, because Winograd F(4x4) over 16 channels rounds its outputs to about
 * 1e-5 of their size (the gamma_{C+13} bound of conv_forward_matches_direct_double), which
 * at conv2d's eps 0.05 measured 2.5e-3 to 3.3e-3 of error on dx (0.3e-3 at eps 0.5). */
static elbo_tensor *build_conv_add(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const conv_cfg *c = u;
    return elbo_conv2d_add(ctx, in[0], in[1], in[2], in[3], in[4], c->sh, c->ph);
}

TEST(grad_conv2d_add_x_w_b_e_r) {
    static const conv_cfg cfgs[] = {{2, 16, 6, 5, 16, 3, 3, 1, 1, 1, 1, 1},
                                    {3, 3, 7, 6, 5, 3, 3, 2, 2, 1, 1, 1}};
    for (int ci = 0; ci < 2; ci++)
        for (int mode = 0; mode < N_MODES; mode++) {
            const conv_cfg *c = &cfgs[ci];
            int64_t OH = (c->H + 2 * c->ph - c->KH) / c->sh + 1,
                    OW = (c->W + 2 * c->pw - c->KW) / c->sw + 1;
            gc_spec s = {.n_in = 5,
                         .ndim = {4, 4, 1, 2, 4},
                         .shape = {{c->B, c->C, c->H, c->W},
                                   {c->OC, c->C, c->KH, c->KW},
                                   {c->OC},
                                   {c->B, c->OC},
                                   {c->B, c->OC, OH, OW}},
                         .eps = 0.5f,
                         .atol = 1e-3f,
                         .rtol = 1e-3f,
                         .max_checks = 60};
            conv_tuning saved = tuning_get();
            tuning_set(tuning_for(c, mode));
            char msg[512];
            int rc = gradcheck("conv2d_add", build_conv_add, (void *)c, &s, msg, sizeof msg);
            tuning_set(saved);
            CHECK_MSG(rc == 0, "config %d mode %d: %s", ci, mode, msg);
        }
}

/* elbo_conv2d_add against the unfused ops, conv2d then elbo_add of e (as (B, OC, 1, 1)) then
 * of r: the same bits for y and for the gradients of x, w, b and r in every mode (d e is a
 * sum over pixels taken in another order: within 4 float roundings of the unfused one's);
 * and its shape errors. */
TEST(conv2d_add_matches_unfused_ops) {
    static const conv_cfg cfgs[] = {{3, 32, 7, 9, 16, 3, 3, 1, 1, 1, 1, 1},
                                    {2, 8, 10, 10, 4, 1, 1, 1, 1, 0, 0, 1}};
    conv_tuning saved = tuning_get();
    for (int ci = 0; ci < 2; ci++)
        for (int mode = 0; mode < N_MODES; mode++) {
            const conv_cfg *c = &cfgs[ci];
            tuning_set(tuning_for(c, mode));
            int64_t OH = c->H + 2 * c->ph - c->KH + 1, OW = c->W + 2 * c->pw - c->KW + 1;
            int64_t nx = (int64_t)c->B * c->C * c->H * c->W, nw = (int64_t)c->OC * c->C * c->KH * c->KW,
                    ny = (int64_t)c->B * c->OC * OH * OW, ne = (int64_t)c->B * c->OC;
            float *g[2][5], *y[2];
            for (int fused = 0; fused < 2; fused++) {
                elbo_ctx *ctx = elbo_ctx_new(0);
                elbo_tensor *x = elbo_tensor_new4(ctx, c->B, c->C, c->H, c->W),
                            *w = elbo_tensor_new4(ctx, c->OC, c->C, c->KH, c->KW),
                            *b = elbo_tensor_new1(ctx, c->OC), *e = elbo_tensor_new2(ctx, c->B, c->OC),
                            *r = elbo_tensor_new4(ctx, c->B, c->OC, OH, OW);
                elbo_tensor *in[5] = {x, w, b, e, r};
                for (int k = 0; k < 5; k++) {
                    fill(in[k]->data, in[k]->numel, 40 + (uint64_t)k);
                    elbo_tensor_requires_grad(in[k], 1);
                }
                elbo_tensor *out;
                if (fused)
                    out = elbo_conv2d_add(ctx, x, w, b, e, r, 1, c->ph);
                else
                    out = elbo_add(ctx,
                                   elbo_add(ctx, elbo_conv2d(ctx, x, w, b, 1, c->ph),
                                            elbo_reshape4(ctx, e, c->B, c->OC, 1, 1)),
                                   r);
                elbo_tensor *v = elbo_tensor_new4(ctx, c->B, c->OC, OH, OW);
                fill(v->data, ny, 77);
                CHECK(out && elbo_backward(ctx, elbo_sum(ctx, elbo_mul(ctx, out, v))) == ELBO_OK);
                y[fused] = malloc((size_t)ny * 4);
                memcpy(y[fused], out->data, (size_t)ny * 4);
                for (int k = 0; k < 5; k++) {
                    g[fused][k] = malloc((size_t)in[k]->numel * 4);
                    memcpy(g[fused][k], in[k]->grad, (size_t)in[k]->numel * 4);
                }
                elbo_ctx_free(ctx);
            }
            int64_t n[5] = {nx, nw, c->OC, ne, ny};
            CHECK_MSG(!memcmp(y[0], y[1], (size_t)ny * 4), "config %d mode %d: y differs", ci, mode);
            const char *names[5] = {"x", "w", "b", "e", "r"};
            for (int k = 0; k < 5; k++) {
                if (k == 3) { /* d e: a sum of OH OW terms in double, rounded to float */
                    for (int64_t i = 0; i < ne; i++)
                        CHECK_MSG(fabsf(g[0][3][i] - g[1][3][i]) <=
                                      4 * FLT_EPSILON * fabsf(g[0][3][i]) + 1e-6f,
                                  "config %d mode %d: d e[%lld] %.9g vs %.9g", ci, mode,
                                  (long long)i, g[1][3][i], g[0][3][i]);
                } else {
                    int64_t bad = -1;
                    for (int64_t i = 0; i < n[k] && bad < 0; i++)
                        if (memcmp(&g[0][k][i], &g[1][k][i], 4)) bad = i;
                    CHECK_MSG(bad < 0, "config %d mode %d: d %s differs at %lld: %.9g vs %.9g", ci,
                              mode, names[k], (long long)bad, bad < 0 ? 0.0 : g[1][k][bad],
                              bad < 0 ? 0.0 : g[0][k][bad]);
                }
            }
            for (int f = 0; f < 2; f++) {
                free(y[f]);
                for (int k = 0; k < 5; k++) free(g[f][k]);
            }
        }
    tuning_set(saved);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 3, 8, 8});
    elbo_tensor *w = elbo_tensor_zeros(ctx, 4, (int64_t[]){4, 3, 3, 3});
    elbo_tensor *e = elbo_tensor_zeros(ctx, 2, (int64_t[]){2, 5});
    CHECK(elbo_conv2d_add(ctx, x, w, NULL, e, NULL, 1, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d_add") && strstr(elbo_last_error(), "(2, 5)"));
    elbo_tensor *r = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 4, 8, 7});
    CHECK(elbo_conv2d_add(ctx, x, w, NULL, NULL, r, 1, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d_add") && strstr(elbo_last_error(), "(2, 4, 8, 7)") &&
          strstr(elbo_last_error(), "(2, 4, 8, 8)"));
    elbo_ctx_free(ctx);
}

/* A conv whose input needs no gradient (the first layer of a UNet) leaves x->grad
 * unallocated, and its weight and bias gradients equal those of the full backward; one whose
 * parameters need none still gives dx (every mode: dX by Winograd runs apart from dW). */
static int grads_only_where_required(int mode) {
    const conv_cfg *c = &configs[0];
    int64_t nx = (int64_t)c->B * c->C * c->H * c->W, nw = (int64_t)c->OC * c->C * c->KH * c->KW;
    float *xv = malloc((size_t)nx * 4), *wv = malloc((size_t)nw * 4), bv[8];
    float *gx = malloc((size_t)nx * 4), *gw = malloc((size_t)nw * 4), gb[8];
    fill(xv, nx, 1);
    fill(wv, nw, 2);
    fill(bv, c->OC, 3);
    int ok = 1;
    conv_tuning saved = tuning_get();
    tuning_set(tuning_for(c, mode));
    for (int pass = 0; pass < 3 && ok; pass++) {
        elbo_ctx *ctx = elbo_ctx_new(0);
        elbo_tensor *x = elbo_tensor_wrap(ctx, xv, 4, (int64_t[]){c->B, c->C, c->H, c->W});
        elbo_tensor *w = elbo_tensor_wrap(ctx, wv, 4, (int64_t[]){c->OC, c->C, c->KH, c->KW});
        elbo_tensor *b = elbo_tensor_wrap(ctx, bv, 1, (int64_t[]){c->OC});
        elbo_tensor_requires_grad(x, pass != 1);
        elbo_tensor_requires_grad(w, pass != 2);
        elbo_tensor_requires_grad(b, pass != 2);
        ok = elbo_backward_with(ctx, elbo_conv2d(ctx, x, w, b, 1, 1), NULL) == ELBO_OK;
        if (ok && pass == 0) {
            memcpy(gx, x->grad, (size_t)nx * 4);
            memcpy(gw, w->grad, (size_t)nw * 4);
            memcpy(gb, b->grad, (size_t)c->OC * 4);
        } else if (ok && pass == 1) {
            ok = !x->grad && !memcmp(gw, w->grad, (size_t)nw * 4) &&
                 !memcmp(gb, b->grad, (size_t)c->OC * 4);
        } else if (ok) {
            ok = !w->grad && !b->grad && !memcmp(gx, x->grad, (size_t)nx * 4);
        }
        elbo_ctx_free(ctx);
    }
    free(xv);
    free(wv);
    free(gx);
    free(gw);
    tuning_set(saved);
    return ok;
}

TEST(conv_grads_only_where_required) {
    for (int mode = 0; mode < N_MODES; mode++)
        CHECK_MSG(grads_only_where_required(mode), "mode %d", mode);
}

/* ---- determinism ---------------------------------------------------------------------- */
typedef struct {
    float *y, *gx, *gw, *gb;
    int64_t ny, nx, nw, nb;
} conv_run;

/* x (B,C,H,W), all inputs requiring gradients; upstream gradient fixed by seed. */
static int conv_run_once(int threads, const conv_cfg *c, conv_run *r) {
    elbo_set_threads(threads);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new4(ctx, c->B, c->C, c->H, c->W);
    elbo_tensor *w = elbo_tensor_new4(ctx, c->OC, c->C, c->KH, c->KW);
    elbo_tensor *b = elbo_tensor_new1(ctx, c->OC);
    fill(x->data, x->numel, 41);
    fill(w->data, w->numel, 42);
    fill(b->data, b->numel, 43);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor_requires_grad(w, 1);
    elbo_tensor_requires_grad(b, 1);
    elbo_tensor *y = run_conv(ctx, c, x, w, b);
    int ok = y != NULL;
    if (ok) {
        float *gy = malloc((size_t)y->numel * 4);
        fill(gy, y->numel, 44);
        ok = elbo_backward_with(ctx, y, gy) == ELBO_OK;
        free(gy);
    }
    if (ok) {
        r->ny = y->numel;
        r->nx = x->numel;
        r->nw = w->numel;
        r->nb = b->numel;
        r->y = malloc((size_t)r->ny * 4);
        r->gx = malloc((size_t)r->nx * 4);
        r->gw = malloc((size_t)r->nw * 4);
        r->gb = malloc((size_t)r->nb * 4);
        memcpy(r->y, y->data, (size_t)r->ny * 4);
        memcpy(r->gx, x->grad, (size_t)r->nx * 4);
        memcpy(r->gw, w->grad, (size_t)r->nw * 4);
        memcpy(r->gb, b->grad, (size_t)r->nb * 4);
    }
    elbo_ctx_free(ctx);
    return ok;
}

TEST(conv_same_bits_1_and_2_threads) {
    /* UNet-like layers, large enough that both OpenMP and OpenBLAS use two threads. */
    static const conv_cfg big[] = {
        {8, 16, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1}, /* 3x3, several images per chunk */
        {4, 32, 28, 28, 32, 3, 3, 2, 2, 1, 1, 1}, /* 3x3 stride 2 */
        {6, 64, 28, 28, 32, 1, 1, 1, 1, 0, 0, 1}, /* 1x1 at 28x28 */
        {16, 64, 7, 7, 96, 1, 1, 1, 1, 0, 0, 1},  /* 1x1 at 7x7, batched */
        {40, 4, 8, 8, 8, 3, 3, 1, 1, 1, 1, 1},    /* 40 chunks in 16 dW groups (mode 1) */
        {8, 32, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1}, /* OC < C: dX by transposed convolution */
        {6, 32, 28, 28, 1, 3, 3, 1, 1, 1, 1, 1},  /* one output channel (the UNet's last) */
        {9, 32, 14, 13, 48, 3, 3, 1, 1, 1, 1, 1}, /* Winograd by default, odd width */
    };
    int saved = elbo_get_threads();
    conv_tuning saved_t = tuning_get();
    for (int i = 0; i < (int)(sizeof big / sizeof big[0]); i++)
        for (int mode = 0; mode < N_MODES; mode++) {
            if (mode == 2) continue; /* the same paths as mode 1 at these sizes */
            tuning_set(tuning_for(&big[i], mode));
            conv_run r1 = {0}, r2 = {0};
            int ok1 = conv_run_once(1, &big[i], &r1), ok2 = conv_run_once(2, &big[i], &r2);
            elbo_set_threads(saved);
            tuning_set(saved_t);
            int same = ok1 && ok2 && !memcmp(r1.y, r2.y, (size_t)r1.ny * 4) &&
                       !memcmp(r1.gx, r2.gx, (size_t)r1.nx * 4) &&
                       !memcmp(r1.gw, r2.gw, (size_t)r1.nw * 4) &&
                       !memcmp(r1.gb, r2.gb, (size_t)r1.nb * 4);
            conv_run *rs[2] = {&r1, &r2};
            for (int k = 0; k < 2; k++) {
                free(rs[k]->y);
                free(rs[k]->gx);
                free(rs[k]->gw);
                free(rs[k]->gb);
            }
            CHECK_MSG(same, "layer %d mode %d: results differ between 1 and 2 threads", i, mode);
        }
}

/* Winograd with the channel-last transforms (channels in multiples of 16, AVX-512 builds:
 * F(4x4) forward and dX, F(2x2) dW) gives the bits of the tile-lane transforms: the same
 * operations on the same values, each sum in the same order. Odd sizes (partial tiles), one
 * and several images per chunk, channel counts of 16 to 48. */
extern int elbo__conv_wino_dw_cl, elbo__conv_wino_cl;
TEST(conv_wino_channel_last_same_bits) {
    static const conv_cfg shapes[] = {
        {9, 32, 14, 13, 48, 3, 3, 1, 1, 1, 1, 1},
        {5, 16, 7, 7, 16, 3, 3, 1, 1, 1, 1, 1},
        {3, 48, 9, 28, 32, 3, 3, 1, 1, 1, 1, 0},
    };
    int saved_cl = elbo__conv_wino_dw_cl, saved_fcl = elbo__conv_wino_cl;
    conv_tuning saved_t = tuning_get();
    for (int i = 0; i < (int)(sizeof shapes / sizeof shapes[0]); i++)
        for (int mode = WINO_FIRST; mode <= WINO_LAST; mode++) {
            tuning_set(tuning_for(&shapes[i], mode));
            conv_run r[2] = {{0}, {0}};
            int ok = 1;
            for (int k = 0; k < 2; k++) {
                elbo__conv_wino_dw_cl = elbo__conv_wino_cl = k;
                ok = conv_run_once(2, &shapes[i], &r[k]) && ok;
            }
            elbo__conv_wino_dw_cl = saved_cl;
            elbo__conv_wino_cl = saved_fcl;
            tuning_set(saved_t);
            CHECK_MSG(ok && !memcmp(r[0].y, r[1].y, (size_t)r[0].ny * 4),
                      "shape %d mode %d: y differs between the two transforms", i, mode);
            CHECK_MSG(ok && !memcmp(r[0].gx, r[1].gx, (size_t)r[0].nx * 4),
                      "shape %d mode %d: dX differs between the two transforms", i, mode);
            CHECK_MSG(ok && !memcmp(r[0].gw, r[1].gw, (size_t)r[0].nw * 4),
                      "shape %d mode %d: dW differs between the two transforms", i, mode);
            for (int k = 0; k < 2; k++) {
                free(r[k].y);
                free(r[k].gx);
                free(r[k].gw);
                free(r[k].gb);
            }
        }
}

/* ---- errors --------------------------------------------------------------------------- */
TEST(conv_shape_errors_name_op_and_shapes) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 3, 8, 8});
    elbo_tensor *w = elbo_tensor_zeros(ctx, 4, (int64_t[]){4, 5, 3, 3});
    CHECK(elbo_conv2d(ctx, x, w, NULL, 1, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d") && strstr(elbo_last_error(), "(2, 3, 8, 8)") &&
          strstr(elbo_last_error(), "(4, 5, 3, 3)"));
    elbo_tensor *w3 = elbo_tensor_zeros(ctx, 4, (int64_t[]){4, 3, 3, 3});
    elbo_tensor *b = elbo_tensor_zeros(ctx, 1, (int64_t[]){5});
    CHECK(elbo_conv2d(ctx, x, w3, b, 1, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d") && strstr(elbo_last_error(), "(4, 3, 3, 3)") &&
          strstr(elbo_last_error(), "(5)"));
    elbo_tensor *x3 = elbo_tensor_zeros(ctx, 3, (int64_t[]){3, 8, 8});
    CHECK(elbo_conv2d(ctx, x3, w3, NULL, 1, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d") && strstr(elbo_last_error(), "(3, 8, 8)"));
    elbo_tensor *w9 = elbo_tensor_zeros(ctx, 4, (int64_t[]){4, 3, 9, 9});
    CHECK(elbo_conv2d(ctx, x, w9, NULL, 1, 0) == NULL);
    CHECK(strstr(elbo_last_error(), "conv2d") && strstr(elbo_last_error(), "(4, 3, 9, 9)"));
    CHECK(elbo_conv2d(ctx, x, w3, NULL, 0, 1) == NULL && strstr(elbo_last_error(), "stride"));
    CHECK(elbo_upsample_nearest2x(ctx, x3) == NULL);
    CHECK(strstr(elbo_last_error(), "upsample_nearest2x") &&
          strstr(elbo_last_error(), "(3, 8, 8)"));
    CHECK(elbo_avg_pool2d(ctx, x, 9, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "avg_pool2d") && strstr(elbo_last_error(), "(2, 3, 8, 8)"));
    CHECK(elbo_conv2d(ctx, NULL, w3, NULL, 1, 1) == NULL &&
          strstr(elbo_last_error(), "avg_pool2d"));
    elbo_ctx_free(ctx);
}

/* ---- upsample_nearest2x and avg_pool2d ------------------------------------------------ */
TEST(conv_upsample_nearest2x_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new4(ctx, 2, 3, 2, 3);
    for (int i = 0; i < 36; i++) x->data[i] = (float)i;
    elbo_tensor *y = elbo_upsample_nearest2x(ctx, x);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 4 && y->shape[3] == 6);
    for (int q = 0; q < 6; q++)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 6; j++)
                CHECK(y->data[(q * 4 + i) * 6 + j] == x->data[(q * 2 + i / 2) * 3 + j / 2]);
    elbo_ctx_free(ctx);
}

TEST(conv_avg_pool2d_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new4(ctx, 1, 2, 4, 5);
    for (int i = 0; i < 40; i++) x->data[i] = (float)i;
    /* 2x2 stride 2: window (i,j) of plane q averages x[q, 2i..2i+1, 2j..2j+1]. */
    elbo_tensor *y = elbo_avg_pool2d(ctx, x, 2, 2);
    CHECK(y && y->shape[1] == 2 && y->shape[2] == 2 && y->shape[3] == 2);
    /* plane 0, window (0,0): (0 + 1 + 5 + 6) / 4 = 3; plane 1 window (1,1): 20 + (12+13+17+18)/4 */
    CHECK(y->data[0] == 3.0f && y->data[7] == 35.0f);
    /* 3x3 stride 1 overlapping windows: the mean of a 3x3 block of a linear ramp is its
     * centre value x[q, i+1, j+1]. */
    elbo_tensor *z = elbo_avg_pool2d(ctx, x, 3, 1);
    CHECK(z && z->shape[2] == 2 && z->shape[3] == 3);
    for (int q = 0; q < 2; q++)
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
                CHECK_NEAR(z->data[(q * 2 + i) * 3 + j], x->data[(q * 4 + i + 1) * 5 + j + 1],
                           1e-5);
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_upsample(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return elbo_upsample_nearest2x(ctx, in[0]);
}

static elbo_tensor *build_avg_pool(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const int *ks = u;
    return elbo_avg_pool2d(ctx, in[0], ks[0], ks[1]);
}

TEST(grad_conv_upsample_and_avg_pool) {
    /* Both ops are linear: central differences are exact up to float32 rounding (see the
     * conv gradient check), so eps 0.05 with atol = rtol = 1e-3. */
    gc_spec s = {.n_in = 1,
                 .ndim = {4},
                 .shape = {{2, 3, 3, 4}},
                 .eps = 0.05f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f};
    CHECK_GRAD("upsample_nearest2x", build_upsample, NULL, &s);
    gc_spec p = {.n_in = 1,
                 .ndim = {4},
                 .shape = {{2, 2, 7, 6}},
                 .eps = 0.05f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f};
    int ks[3][2] = {{2, 2}, {3, 1}, {3, 2}}; /* tiled, overlapping, overlapping strided */
    for (int i = 0; i < 3; i++) CHECK_GRAD("avg_pool2d", build_avg_pool, ks[i], &p);
}

/* x feeds four ops whose gradients to x add up: a 3x3 same convolution, a 1x1 one, a 3x3
 * stride-2 one (upsampled back) and a 2x2 average pool (upsampled back), recorded in the
 * order rotated by *rot. The op run last in the forward runs first in backward and stores
 * a fresh gradient (no zero fill), the others add to it: each op takes each role. */
static elbo_tensor *build_shared_input(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    int rot = *(int *)u;
    elbo_tensor *t[4] = {NULL, NULL, NULL, NULL};
    for (int k = 0; k < 4; k++) {
        int op = (k + rot) % 4;
        if (op == 0) t[op] = elbo_conv2d(ctx, in[0], in[1], NULL, 1, 1);
        if (op == 1) t[op] = elbo_conv2d(ctx, in[0], in[2], NULL, 1, 0);
        if (op == 2)
            t[op] = elbo_upsample_nearest2x(ctx, elbo_conv2d(ctx, in[0], in[3], NULL, 2, 1));
        if (op == 3) t[op] = elbo_upsample_nearest2x(ctx, elbo_avg_pool2d(ctx, in[0], 2, 2));
    }
    return elbo_add(ctx, elbo_add(ctx, t[0], t[1]), elbo_add(ctx, t[2], t[3]));
}

TEST(grad_conv_shared_input_fresh_and_accumulated) {
    /* All ops are linear in x: eps 0.05, atol = rtol = 1e-3 as in the conv gradient check. */
    gc_spec s = {.n_in = 4,
                 .ndim = {4, 4, 4, 4},
                 .shape = {{3, 4, 6, 6}, {4, 4, 3, 3}, {4, 4, 1, 1}, {4, 4, 3, 3}},
                 .eps = 0.05f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f,
                 .max_checks = 60};
    conv_tuning saved = tuning_get();
    const conv_cfg shape = {3, 4, 6, 6, 4, 3, 3, 1, 1, 1, 1, 0};
    for (int mode = 0; mode < N_MODES; mode++)
        for (int rot = 0; rot < 4; rot++) {
            char msg[512];
            tuning_set(tuning_for(&shape, mode));
            int rc = gradcheck("shared input", build_shared_input, &rot, &s, msg, sizeof msg);
            tuning_set(saved);
            CHECK_MSG(rc == 0, "mode %d rotation %d: %s", mode, rot, msg);
        }
}
