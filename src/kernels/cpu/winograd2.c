/* Winograd F(2x2, 3x3) for dW of 3x3 stride-1 pad-1 convolutions (Lavin & Gray, "Fast
 * Algorithms for Convolutional Neural Networks", CVPR 2016): the adjoint of the 2x2 output tile
 *   Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A
 * for the 4x4 input tile d_c (stride 2 over the padded image) and the 3x3 kernel g_c, with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1],
 * is dW = G^T [ sum over tiles (A dY A^T) . (B^T d B) ] G: 16 GEMMs over the tiles (done by the
 * caller). dW uses these 2x2 tiles, not the forward pass's F(4x4, 3x3) (winograd.c): the sum over
 * every tile of the batch runs in the transformed domain, where the 4x4 tiles' entries (up to
 * 8 |dY| times 5 |x|) cancel to a small kernel gradient, and their rounding errors came out 7
 * times over the convolution fixtures' tolerance (tests/test_ops_conv.c). These kernels are
 * serial: the caller runs them per chunk of images, one chunk per task. */
#include "kernels/cpu/kernels.h"

#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>

/* Lanes: even elements 0, 2, .., 30 and odd 1, 3, .., 31 of a 32-float pair (a, b). */
static inline __m512 even16(__m512 a, __m512 b) {
    return _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), b);
}
static inline __m512 odd16(__m512 a, __m512 b) {
    return _mm512_permutex2var_ps(
        a, _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31), b);
}
/* Elements 2 .. 17 of the pair (a, b). */
static inline __m512 shift2(__m512 a, __m512 b) {
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(b), _mm512_castps_si512(a), 2));
}
#endif

/* Tiles per row and column of an (H, W) image: ceil(H / 2), ceil(W / 2). */
#define TILES(n) (((n) + 1) / 2)

/* V (16, C, ldv) with xi stride xs, columns [0, nb th tw): V[xi xs + c ldv + (b th + ty) tw + tx]
 * = (B^T d B)[xi], d the 4x4 tile of x_b[c] at rows 2 ty - 1 .., columns 2 tx - 1 .. (zero
 * outside the image). */
#ifdef __AVX512F__
/* Columns 16 k .. 16 k + 15 of the image row r (W columns; zero outside it). */
static inline __m512 row_chunk(const float *r, int64_t k, int64_t W) {
    int64_t j = 16 * k;
    return j < 0 || j >= W ? _mm512_setzero_ps() : _mm512_maskz_loadu_ps(elbo__lanes16(W - j), r + j);
}
/* Padded columns 16 k .. 16 k + 15 (image columns 16 k - 1 ..) from image chunks k - 1, k. */
static inline __m512 pad_chunk(__m512 prev, __m512 cur) {
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(cur), _mm512_castps_si512(prev), 15));
}
#endif

void elbo__wino2_input(const float *x, int64_t nb, int64_t C, int64_t H, int64_t W, float *V,
                      int64_t ldv, int64_t xs) {
    int64_t th = TILES(H), tw = TILES(W);
    static const float zeros[1024];
    if (tw > 512) return; /* images this wide do not take this path */
#ifndef __AVX512F__
    float t[4][2 * 512 + 4]; /* B^T d in padded columns 0 .. 2 tw + 1 */
#endif
    for (int64_t b = 0; b < nb; b++)
        for (int64_t c = 0; c < C; c++) {
            const float *xc = x + (b * C + c) * H * W;
            float *vc = V + c * ldv + b * th * tw;
            for (int64_t ty = 0; ty < th; ty++) {
                const float *r[4]; /* padded rows 2 ty - 1 + i (zeros outside the image) */
                for (int i = 0; i < 4; i++) {
                    int64_t ih = 2 * ty - 1 + i;
                    r[i] = ih >= 0 && ih < H ? xc + ih * W : zeros;
                }
                float *v = vc + ty * tw;
#ifdef __AVX512F__
                /* 16 tiles at a time, all in registers: padded columns 2 tx .. 2 tx + 33 are
                 * image chunks 2 g - 1 .. 2 g + 2 (tx = 16 g) shifted by one column */
                for (int64_t tx = 0; tx < tw; tx += 16) {
                    int64_t g2 = tx / 8; /* 2 g */
                    __m512 t[4][4];      /* t[i][q] = (B^T d) row i on image chunk 2 g - 1 + q */
                    for (int q = 0; q < 4; q++) {
                        __m512 d0 = row_chunk(r[0], g2 - 1 + q, W),
                               d1 = row_chunk(r[1], g2 - 1 + q, W),
                               d2 = row_chunk(r[2], g2 - 1 + q, W),
                               d3 = row_chunk(r[3], g2 - 1 + q, W);
                        t[0][q] = _mm512_sub_ps(d0, d2);
                        t[1][q] = _mm512_add_ps(d1, d2);
                        t[2][q] = _mm512_sub_ps(d2, d1);
                        t[3][q] = _mm512_sub_ps(d1, d3);
                    }
                    __mmask16 k = elbo__lanes16(tw - tx);
                    for (int i = 0; i < 4; i++) { /* V = t B */
                        float *v0 = v + (int64_t)(4 * i) * xs + tx, *v1 = v0 + xs, *v2 = v1 + xs,
                              *v3 = v2 + xs;
                        __m512 lo = pad_chunk(t[i][0], t[i][1]), hi = pad_chunk(t[i][1], t[i][2]),
                               h2 = pad_chunk(t[i][2], t[i][3]);
                        __m512 a0 = even16(lo, hi), a1 = odd16(lo, hi);
                        __m512 s_lo = shift2(lo, hi), s_hi = shift2(hi, h2);
                        __m512 a2 = even16(s_lo, s_hi), a3 = odd16(s_lo, s_hi);
                        _mm512_mask_storeu_ps(v0, k, _mm512_sub_ps(a0, a2));
                        _mm512_mask_storeu_ps(v1, k, _mm512_add_ps(a1, a2));
                        _mm512_mask_storeu_ps(v2, k, _mm512_sub_ps(a2, a1));
                        _mm512_mask_storeu_ps(v3, k, _mm512_sub_ps(a1, a3));
                    }
                }
#else
                /* t = B^T d into padded columns 1 .. W (column 0 and those after W are 0) */
                for (int i = 0; i < 4; i++) t[i][0] = 0.0f;
                for (int64_t j = W + 1; j < 2 * tw + 2; j++)
                    for (int i = 0; i < 4; i++) t[i][j] = 0.0f;
                for (int64_t j = 0; j < W; j++) {
                    t[0][j + 1] = r[0][j] - r[2][j];
                    t[1][j + 1] = r[1][j] + r[2][j];
                    t[2][j + 1] = r[2][j] - r[1][j];
                    t[3][j + 1] = r[1][j] - r[3][j];
                }
                for (int i = 0; i < 4; i++) { /* V = t B */
                    float *v0 = v + (int64_t)(4 * i) * xs, *v1 = v0 + xs, *v2 = v1 + xs,
                          *v3 = v2 + xs;
                    const float *ti = t[i];
                    for (int64_t tx = 0; tx < tw; tx++) {
                        float a0 = ti[2 * tx], a1 = ti[2 * tx + 1], a2 = ti[2 * tx + 2],
                              a3 = ti[2 * tx + 3];
                        v0[tx] = a0 - a2;
                        v1[tx] = a1 + a2;
                        v2[tx] = a2 - a1;
                        v3[tx] = a1 - a3;
                    }
                }
#endif
            }
        }
}

/* dM (16, N, ldm) (xi stride xs), columns as in elbo__wino2_input: dM[xi] = (A dY A^T)[xi] for
 * the 2x2 tile of dy_b[n] at rows 2 ty .., columns 2 tx .. (zero outside the image), with
 * A = [1 0; 1 1; 1 -1; 0 -1]: the adjoint of the output transform y = A^T M A. */
void elbo__wino2_grad_output(const float *dy, int64_t nb, int64_t N, int64_t H, int64_t W, float *M,
                            int64_t ldm, int64_t xs) {
    int64_t th = TILES(H), tw = TILES(W);
    if (tw > 512) return;
#ifndef __AVX512F__
    float r[2][2 * 512 + 2]; /* the tile row's 2 rows, zeros after column W */
    memset(r, 0, sizeof r);
#endif
    for (int64_t b = 0; b < nb; b++)
        for (int64_t n = 0; n < N; n++) {
            const float *dn = dy + (b * N + n) * H * W;
            float *mn = M + n * ldm + b * th * tw;
            for (int64_t ty = 0; ty < th; ty++) {
                float *m = mn + ty * tw;
                const float *r0 = dn + 2 * ty * W, *r1 = 2 * ty + 1 < H ? r0 + W : NULL;
#ifdef __AVX512F__
                for (int64_t tx = 0; tx < tw; tx += 16) { /* 16 tiles: columns 2 tx .. 2 tx + 31 */
                    __mmask16 k = elbo__lanes16(tw - tx);
                    int64_t g2 = tx / 8;
                    __m512 z = _mm512_setzero_ps(), s[4][2];
                    for (int i = 0; i < 2; i++) { /* straight from dY's rows, zeros outside */
                        const float *ri = i ? r1 : r0;
                        __m512 lo = ri ? row_chunk(ri, g2, W) : z,
                               hi = ri ? row_chunk(ri, g2 + 1, W) : z;
                        s[i][0] = even16(lo, hi);
                        s[i][1] = odd16(lo, hi);
                    }
                    for (int j = 0; j < 2; j++) { /* rows of A dY: d0, d0 + d1, d0 - d1, -d1 */
                        __m512 d0 = s[0][j], d1 = s[1][j];
                        s[0][j] = d0;
                        s[1][j] = _mm512_add_ps(d0, d1);
                        s[2][j] = _mm512_sub_ps(d0, d1);
                        s[3][j] = _mm512_sub_ps(z, d1);
                    }
                    for (int i = 0; i < 4; i++) { /* (A dY) A^T: a, a + b, a - b, -b */
                        float *m0 = m + (int64_t)(4 * i) * xs + tx;
                        __m512 a = s[i][0], c = s[i][1];
                        _mm512_mask_storeu_ps(m0, k, a);
                        _mm512_mask_storeu_ps(m0 + xs, k, _mm512_add_ps(a, c));
                        _mm512_mask_storeu_ps(m0 + 2 * xs, k, _mm512_sub_ps(a, c));
                        _mm512_mask_storeu_ps(m0 + 3 * xs, k, _mm512_sub_ps(z, c));
                    }
                }
#else
                memcpy(r[0], r0, (size_t)W * sizeof(float));
                if (r1)
                    memcpy(r[1], r1, (size_t)W * sizeof(float));
                else
                    memset(r[1], 0, (size_t)W * sizeof(float));
                for (int64_t tx = 0; tx < tw; tx++) {
                    float d[2][2] = {{r[0][2 * tx], r[0][2 * tx + 1]},
                                     {r[1][2 * tx], r[1][2 * tx + 1]}};
                    float s[4][2];
                    for (int j = 0; j < 2; j++) {
                        s[0][j] = d[0][j];
                        s[1][j] = d[0][j] + d[1][j];
                        s[2][j] = d[0][j] - d[1][j];
                        s[3][j] = 0.0f - d[1][j];
                    }
                    for (int i = 0; i < 4; i++) {
                        float *m0 = m + (int64_t)(4 * i) * xs + tx;
                        m0[0] = s[i][0];
                        m0[xs] = s[i][0] + s[i][1];
                        m0[2 * xs] = s[i][0] - s[i][1];
                        m0[3 * xs] = 0.0f - s[i][1];
                    }
                }
#endif
            }
        }
}

/* gw (n, 3, 3) += G^T dU G for each of n kernels i, dU[xi] = dU[xi st + i]: the adjoint of
 * U = G g G^T (the F(2x2, 3x3) kernel transform). */
void elbo__wino2_kernel_grad(const float *dU, int64_t st, int64_t n, float *gw) {
    for (int64_t i = 0; i < n; i++) {
        float u[16], t[3][4];
        for (int xi = 0; xi < 16; xi++) u[xi] = dU[xi * st + i];
        for (int j = 0; j < 4; j++) { /* t = G^T dU */
            float a = u[j], b = u[4 + j], c = u[8 + j], d = u[12 + j];
            t[0][j] = a + 0.5f * (b + c);
            t[1][j] = 0.5f * (b - c);
            t[2][j] = 0.5f * (b + c) + d;
        }
        float *g = gw + i * 9;
        for (int k = 0; k < 3; k++) { /* G^T dU G = t G */
            float a = t[k][0], b = t[k][1], c = t[k][2], d = t[k][3];
            g[3 * k] += a + 0.5f * (b + c);
            g[3 * k + 1] += 0.5f * (b - c);
            g[3 * k + 2] += 0.5f * (b + c) + d;
        }
    }
}

#ifdef __AVX512F__
/* ---- channel-last variants (AVX-512): 16 channels per vector lane set ------------------
 * The same transforms with the 16 lanes on 16 channels of one tile instead of 16 tiles of one
 * channel: every load and store is a whole contiguous vector (no partial tile rows, which on
 * 14x14 and 7x7 images left 9 and 12 of the 16 lanes idle), and V and dM come out tile-major
 * (n, C), the layout the GEMM reads in place (dU_xi = dM_xi^T V_xi, elbo__sgemm_tn_inplace)
 * instead of transposing it. The images come channel-last (elbo__to_channel_last, conv.c).
 * The arithmetic is the other variants' operation for operation: the same bits. */

/* Vt (16, n, C) (xi stride xs >= n C): Vt[xi xs + t C + c] = (B^T d B)[xi] of tile t (numbered
 * as in elbo__wino2_input) of channel c, from xt (nb, H W, C) channel-last; C a multiple of 16. */
void elbo__wino2_input_cl(const float *xt, int64_t nb, int64_t C, int64_t H, int64_t W,
                          float *Vt, int64_t xs) {
    int64_t th = TILES(H), tw = TILES(W);
    const __m512 z = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                int64_t t = (b * th + ty) * tw + tx;
                const float *xb = xt + b * H * W * C;
                for (int64_t c0 = 0; c0 < C; c0 += 16) {
                    __m512 d[4][4], s[4][4];
                    for (int i = 0; i < 4; i++) {
                        int64_t ih = 2 * ty - 1 + i;
                        for (int j = 0; j < 4; j++) {
                            int64_t iw = 2 * tx - 1 + j;
                            d[i][j] = ih >= 0 && ih < H && iw >= 0 && iw < W
                                          ? _mm512_loadu_ps(xb + (ih * W + iw) * C + c0)
                                          : z;
                        }
                    }
                    for (int j = 0; j < 4; j++) { /* t = B^T d, column j */
                        s[0][j] = _mm512_sub_ps(d[0][j], d[2][j]);
                        s[1][j] = _mm512_add_ps(d[1][j], d[2][j]);
                        s[2][j] = _mm512_sub_ps(d[2][j], d[1][j]);
                        s[3][j] = _mm512_sub_ps(d[1][j], d[3][j]);
                    }
                    float *v = Vt + t * C + c0;
                    for (int i = 0; i < 4; i++) { /* V = t B, row i */
                        _mm512_storeu_ps(v + (4 * i + 0) * xs, _mm512_sub_ps(s[i][0], s[i][2]));
                        _mm512_storeu_ps(v + (4 * i + 1) * xs, _mm512_add_ps(s[i][1], s[i][2]));
                        _mm512_storeu_ps(v + (4 * i + 2) * xs, _mm512_sub_ps(s[i][2], s[i][1]));
                        _mm512_storeu_ps(v + (4 * i + 3) * xs, _mm512_sub_ps(s[i][1], s[i][3]));
                    }
                }
            }
}

/* Mt (16, n, N) (xi stride xs >= n N): Mt[xi xs + t N + o] = (A dY A^T)[xi] of the 2x2 tile t
 * of channel o, from dyt (nb, H W, N) channel-last; N a multiple of 16. */
void elbo__wino2_grad_output_cl(const float *dyt, int64_t nb, int64_t N, int64_t H, int64_t W,
                                float *Mt, int64_t xs) {
    int64_t th = TILES(H), tw = TILES(W);
    const __m512 z = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                int64_t t = (b * th + ty) * tw + tx;
                const float *db = dyt + b * H * W * N;
                for (int64_t o0 = 0; o0 < N; o0 += 16) {
                    __m512 d[2][2], s[4][2];
                    for (int i = 0; i < 2; i++)
                        for (int j = 0; j < 2; j++) {
                            int64_t ih = 2 * ty + i, iw = 2 * tx + j;
                            d[i][j] = ih < H && iw < W
                                          ? _mm512_loadu_ps(db + (ih * W + iw) * N + o0)
                                          : z;
                        }
                    for (int j = 0; j < 2; j++) { /* rows of A dY: d0, d0 + d1, d0 - d1, -d1 */
                        s[0][j] = d[0][j];
                        s[1][j] = _mm512_add_ps(d[0][j], d[1][j]);
                        s[2][j] = _mm512_sub_ps(d[0][j], d[1][j]);
                        s[3][j] = _mm512_sub_ps(z, d[1][j]);
                    }
                    float *m = Mt + t * N + o0;
                    for (int i = 0; i < 4; i++) { /* (A dY) A^T: a, a + c, a - c, -c */
                        __m512 a = s[i][0], c = s[i][1];
                        _mm512_storeu_ps(m + (4 * i + 0) * xs, a);
                        _mm512_storeu_ps(m + (4 * i + 1) * xs, _mm512_add_ps(a, c));
                        _mm512_storeu_ps(m + (4 * i + 2) * xs, _mm512_sub_ps(a, c));
                        _mm512_storeu_ps(m + (4 * i + 3) * xs, _mm512_sub_ps(z, c));
                    }
                }
            }
}
#endif
