/* Winograd minimal filtering F(2x2, 3x3) for 3x3 stride-1 pad-1 convolutions (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", CVPR 2016): a 2x2 output tile is
 *   Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A
 * for the 4x4 input tile d_c (stride 2 over the padded image) and the 3x3 kernel g_c, with
 *   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],  G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
 *   A^T = [1 1 1 0; 0 1 -1 -1].
 * The sum over channels of the 16 elementwise products is 16 GEMMs (done by the caller). These
 * kernels are serial: the caller runs them per chunk of images, one chunk per task. */
#include "kernels/cpu/kernels.h"

/* U (16, R, S): U[xi, r, s] = (G g G^T)[xi] with g = w[r, s] (flip = 0, R = OC, S = C), or
 * g[kh, kw] = w[s, r, 2 - kh, 2 - kw] (flip = 1, R = C, S = OC: the kernel of dX). */
void elbo__wino_kernel(const float *w, int64_t OC, int64_t C, int flip, float *U) {
    int64_t R = flip ? C : OC, S = flip ? OC : C;
    for (int64_t r = 0; r < R; r++)
        for (int64_t s = 0; s < S; s++) {
            const float *src = flip ? w + (s * C + r) * 9 : w + (r * C + s) * 9;
            float g[3][3], u[4][3];
            for (int k = 0; k < 9; k++) g[k / 3][k % 3] = flip ? src[8 - k] : src[k];
            for (int j = 0; j < 3; j++) { /* u = G g */
                u[0][j] = g[0][j];
                u[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                u[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                u[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* U = u G^T */
                float *o = U + (i * 4 * R + r) * S + s;
                int64_t st = R * S;
                o[0] = u[i][0];
                o[st] = 0.5f * (u[i][0] + u[i][1] + u[i][2]);
                o[2 * st] = 0.5f * (u[i][0] - u[i][1] + u[i][2]);
                o[3 * st] = u[i][2];
            }
        }
}

/* Tiles per row and column of an (H, W) image: ceil(H / 2), ceil(W / 2). */
#define TILES(n) (((n) + 1) / 2)

/* V (16, C, ldv), columns [0, nb th tw): V[xi, c, (b th + ty) tw + tx] = (B^T d B)[xi], d the
 * 4x4 tile of x_b[c] at rows 2 ty - 1 .., columns 2 tx - 1 .. (zero outside the image). */
void elbo__wino_input(const float *x, int64_t nb, int64_t C, int64_t H, int64_t W, float *V,
                      int64_t ldv) {
    int64_t th = TILES(H), tw = TILES(W), Wt = 2 * tw + 2;
    static const float zeros[1024];
    float t[4][2 * 512 + 2];
    if (tw > 512) return; /* images this wide do not take this path */
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
                for (int i = 0; i < 4; i++) t[i][0] = 0.0f;
                for (int64_t j = 0; j < W; j++) { /* t = B^T d, padded column j + 1 */
                    t[0][j + 1] = r[0][j] - r[2][j];
                    t[1][j + 1] = r[1][j] + r[2][j];
                    t[2][j + 1] = r[2][j] - r[1][j];
                    t[3][j + 1] = r[1][j] - r[3][j];
                }
                for (int i = 0; i < 4; i++)
                    for (int64_t j = W + 1; j < Wt; j++) t[i][j] = 0.0f;
                float *v = vc + ty * tw;
                for (int i = 0; i < 4; i++) { /* V = t B */
                    float *v0 = v + (int64_t)(4 * i) * C * ldv, *v1 = v0 + C * ldv,
                          *v2 = v1 + C * ldv, *v3 = v2 + C * ldv;
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
            }
        }
}

/* y (nb, N, H, W) = crop(A^T m A) + bias (or, with acc, y += crop(A^T m A)), m the 4x4 of
 * M (16, N, ldm) at column (b th + ty) tw + tx. */
void elbo__wino_output(const float *M, int64_t nb, int64_t N, int64_t H, int64_t W, int64_t ldm,
                       const float *bias, int acc, float *y) {
    int64_t th = TILES(H), tw = TILES(W);
    float s[2][4][512], o[2][2 * 512];
    if (tw > 512) return;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t n = 0; n < N; n++) {
            const float *mn = M + n * ldm + b * th * tw;
            float *yn = y + (b * N + n) * H * W, bn = bias && !acc ? bias[n] : 0.0f;
            for (int64_t ty = 0; ty < th; ty++) {
                const float *m = mn + ty * tw;
                for (int j = 0; j < 4; j++) { /* s = A^T m, column j */
                    const float *m0 = m + (int64_t)j * N * ldm, *m1 = m0 + 4 * N * ldm,
                                *m2 = m1 + 4 * N * ldm, *m3 = m2 + 4 * N * ldm;
                    for (int64_t tx = 0; tx < tw; tx++) {
                        s[0][j][tx] = m0[tx] + m1[tx] + m2[tx];
                        s[1][j][tx] = m1[tx] - m2[tx] - m3[tx];
                    }
                }
                for (int i = 0; i < 2; i++) /* Y = s A */
                    for (int64_t tx = 0; tx < tw; tx++) {
                        o[i][2 * tx] = s[i][0][tx] + s[i][1][tx] + s[i][2][tx];
                        o[i][2 * tx + 1] = s[i][1][tx] - s[i][2][tx] - s[i][3][tx];
                    }
                for (int i = 0; i < 2 && 2 * ty + i < H; i++) {
                    float *yr = yn + (2 * ty + i) * W;
                    if (acc)
                        for (int64_t j = 0; j < W; j++) yr[j] += o[i][j];
                    else
                        for (int64_t j = 0; j < W; j++) yr[j] = o[i][j] + bn;
                }
            }
        }
}
