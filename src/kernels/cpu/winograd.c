/* Winograd minimal filtering F(4x4, 3x3) for 3x3 stride-1 pad-1 convolutions (Lavin & Gray,
 * "Fast Algorithms for Convolutional Neural Networks", CVPR 2016, interpolation points
 * 0, 1, -1, 2, -2 and infinity): a 4x4 output tile is
 *   Y = A^T [ sum_c (G g_c G^T) . (B^T d_c B) ] A
 * for the 6x6 input tile d_c (stride 4 over the image padded by 1) and the 3x3 kernel g_c, with
 *   B^T = [4  0 -5  0 1 0;  0 -4 -4  1 1 0;  0 4 -4 -1 1 0;
 *          0 -2 -1  2 1 0;  0  2 -1 -2 1 0;  0 4  0 -5 0 1],
 *   G   = [1/4 0 0; -1/6 -1/6 -1/6; -1/6 1/6 -1/6; 1/24 1/12 1/6; 1/24 -1/12 1/6; 0 0 1],
 *   A^T = [1 1 1 1 1 0;  0 1 -1 2 -2 0;  0 1 1 4 4 0;  0 1 -1 8 -8 1].
 * The sum over channels of the 36 elementwise products is 36 GEMMs (done by the caller):
 * 2.25 multiply-adds per output against 9 for the direct sum (4 for F(2x2, 3x3)).
 *
 * Tiles are numbered t = (b th + ty) tw + tx over a chunk of nb images (th = ceil(H / 4),
 * tw = ceil(W / 4)). The transforms work on 16 consecutive tiles at a time, one per vector
 * lane, whatever rows or images they fall in (gathered by index), so that the 7x7 and 14x14
 * images of a small UNet fill whole vectors. The data transforms are written once on 16-float
 * vectors (GCC vector extensions: AVX-512 with it, smaller vectors or scalars without) and
 * give the same bits on both; only loads and stores differ. The kernel transforms run in
 * double and round once. These kernels are serial: the caller runs them per chunk of images,
 * one chunk per task. */
#include "kernels/cpu/kernels.h"

#include <string.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* Without AVX-512, GCC notes that returning a 64-byte vector changes the ABI: these helpers
 * are static and inlined, no call crosses this file. */
#pragma GCC diagnostic ignored "-Wpsabi"
typedef float vf __attribute__((vector_size(64))); /* 16 tiles, one per lane */

/* u = G g (6 from 3), for 16 kernels, in double: G's rows share their sums. */
static inline void g6(const double g0[16], const double g1[16], const double g2[16],
                      double *u[6]) {
    for (int q = 0; q < 16; q++) {
        double a = g0[q] + g2[q], b = g0[q] * (1.0 / 24) + g2[q] * (1.0 / 6), c = g1[q] * (1.0 / 12);
        u[0][q] = g0[q] * 0.25;
        u[1][q] = -(a + g1[q]) * (1.0 / 6);
        u[2][q] = -(a - g1[q]) * (1.0 / 6);
        u[3][q] = b + c;
        u[4][q] = b - c;
        u[5][q] = g2[q];
    }
}

/* U (36, R, S): U[6 i + j, r, s] = (G g G^T)[i, j] with g = w[r, s] (flip = 0, R = OC, S = C),
 * or g[kh, kw] = w[s, r, 2 - kh, 2 - kw] (flip = 1, R = C, S = OC: the kernel of dX), for the
 * rows r0 <= r < r1; in double, rounded once. 16 kernels s at a time (vectorised). */
void elbo__wino_kernel(const float *w, int64_t OC, int64_t C, int flip, int64_t r0, int64_t r1,
                       float *U) {
    int64_t R = flip ? C : OC, S = flip ? OC : C;
    for (int64_t r = r0; r < r1; r++)
        for (int64_t s0 = 0; s0 < S; s0 += 16) {
            int ns = S - s0 < 16 ? (int)(S - s0) : 16;
            double g[3][3][16] = {{{0}}}, u[6][3][16], v[6][6][16];
            for (int q = 0; q < ns; q++) {
                int64_t s = s0 + q;
                const float *src = flip ? w + (s * C + r) * 9 : w + (r * C + s) * 9;
                for (int k = 0; k < 9; k++) g[k / 3][k % 3][q] = flip ? src[8 - k] : src[k];
            }
            for (int j = 0; j < 3; j++) { /* u = G g, column j */
                double *uj[6] = {u[0][j], u[1][j], u[2][j], u[3][j], u[4][j], u[5][j]};
                g6(g[0][j], g[1][j], g[2][j], uj);
            }
            for (int i = 0; i < 6; i++) { /* U = u G^T, row i */
                double *vi[6] = {v[i][0], v[i][1], v[i][2], v[i][3], v[i][4], v[i][5]};
                g6(u[i][0], u[i][1], u[i][2], vi);
                for (int j = 0; j < 6; j++) {
                    float *o = U + ((6 * i + j) * R + r) * S + s0;
                    for (int q = 0; q < ns; q++) o[q] = (float)v[i][j][q];
                }
            }
        }
}

/* ---- the 1-D transforms on 16 tiles: every output is a sum of disjoint terms through at
 * most two (bt6) or three (at6) rounded additions; the multiplications are by powers of
 * two (exact) ---- */

/* t = B^T d (6 from 6). */
static inline void bt6(const vf d[6], vf t[6]) {
    vf a = d[4] - 4.0f * d[2], b = d[3] - 4.0f * d[1], c = d[4] - d[2], e = 2.0f * (d[3] - d[1]);
    t[0] = 4.0f * (d[0] - d[2]) + c;
    t[1] = a + b;
    t[2] = a - b;
    t[3] = c + e;
    t[4] = c - e;
    t[5] = 4.0f * (d[1] - d[3]) + (d[5] - d[3]);
}

/* y = A^T m (4 from 6). */
static inline void at6(const vf m[6], vf y[4]) {
    vf a = m[1] + m[2], b = m[1] - m[2], c = m[3] + m[4], d = m[3] - m[4];
    y[0] = (m[0] + a) + c;
    y[1] = b + 2.0f * d;
    y[2] = a + 4.0f * c;
    y[3] = (b + 8.0f * d) + m[5];
}

/* ---- 16 consecutive tiles ---- */

/* Tiles t0 .. t0 + 15 (those below n) of a chunk of images of P = th tw tiles, img floats an
 * image, W columns: off[l] is the offset of lane l's tile corner (row 4 ty - 1, column
 * 4 tx - 1, in the padded frame of the input tile) from the chunk's start; bit l of rows[i]
 * (cols[j]) is set when that lane is a tile and its row 4 ty - 1 + i (column 4 tx - 1 + j)
 * lies in the image, i, j < 6. The output tile's rows and columns are 1 .. 4 of these:
 * out_rows[l] of them lie in the image, and bit j of out_cols[l] is column j's. */
typedef struct {
    int32_t off[16];
    uint32_t valid, rows[6], cols[6];
    uint8_t out_rows[16], out_cols[16];
} tile_group;

static void tile_group_at(tile_group *g, int64_t t0, int64_t n, int64_t tw, int64_t P, int64_t H,
                          int64_t W, int64_t img) {
    memset(g, 0, sizeof *g);
    for (int l = 0; l < 16 && t0 + l < n; l++) {
        int64_t t = t0 + l, b = t / P, ty = t % P / tw, tx = t % P % tw;
        int64_t r0 = 4 * ty - 1, c0 = 4 * tx - 1;
        g->off[l] = (int32_t)(b * img + r0 * W + c0);
        g->valid |= 1u << l;
        for (int i = 0; i < 6; i++) {
            if (r0 + i >= 0 && r0 + i < H) g->rows[i] |= 1u << l;
            if (c0 + i >= 0 && c0 + i < W) g->cols[i] |= 1u << l;
        }
        for (int i = 0; i < 4; i++) {
            if (r0 + 1 + i < H) g->out_rows[l]++;
            if (c0 + 1 + i < W) g->out_cols[l] |= (uint8_t)(1u << i);
        }
    }
}

/* The transforms take the tiles of a chunk in blocks of BLOCK groups of 16 (their geometry
 * computed once; groups from n to n_end have no tiles), channel by channel within a block: each channel's rows of V or M are then
 * read or written in runs of 16 BLOCK floats, and x's or y's plane stays in L1. */
#define BLOCK 16
static int tile_block_at(tile_group *g, int64_t t0, int64_t n, int64_t n_end, int64_t tw,
                         int64_t P, int64_t H, int64_t W, int64_t img) {
    int k = 0;
    for (; k < BLOCK && t0 + 16 * k < n_end; k++)
        tile_group_at(&g[k], t0 + 16 * k, n, tw, P, H, W, img);
    return k;
}

/* Lane l = p[off[l] + k] where bit l of mask is set, else 0. */
static inline vf gather(const float *p, const int32_t *off, int32_t k, uint32_t mask) {
#ifdef __AVX512F__
    __m512i idx = _mm512_add_epi32(_mm512_loadu_si512(off), _mm512_set1_epi32(k));
    return (vf)_mm512_mask_i32gather_ps(_mm512_setzero_ps(), (__mmask16)mask, idx, p, 4);
#else
    vf v;
    for (int l = 0; l < 16; l++) v[l] = mask >> l & 1 ? p[off[l] + k] : 0.0f;
    return v;
#endif
}

/* The lanes of mask from p (others 0), or to p. */
static inline vf load(const float *p, uint32_t mask) {
#ifdef __AVX512F__
    return (vf)_mm512_maskz_loadu_ps((__mmask16)mask, p);
#else
    vf v;
    for (int l = 0; l < 16; l++) v[l] = mask >> l & 1 ? p[l] : 0.0f;
    return v;
#endif
}
static inline void store(float *p, vf v, uint32_t mask) {
#ifdef __AVX512F__
    _mm512_mask_storeu_ps(p, (__mmask16)mask, (__m512)v);
#else
    for (int l = 0; l < 16; l++)
        if (mask >> l & 1) p[l] = v[l];
#endif
}

#define TILES(n) (((n) + 3) / 4)

/* V (36, C, ldv) with xi stride xs: V[(6 i + j) xs + c ldv + t] = (B^T d B)[i, j], d the 6x6
 * tile of x_b[c] at rows 4 ty - 1 .., columns 4 tx - 1 .. (zero outside the image); with
 * panels, at (6 i + j) xs + (t / NR) C NR + c NR + t % NR (NR = ELBO_SGEMM_NR), whole panels
 * (zero past the last tile). */
void elbo__wino_input(const float *x, int64_t nb, int64_t C, int64_t H, int64_t W, float *V,
                      int64_t ldv, int64_t xs, int panels) {
    int64_t tw = TILES(W), P = TILES(H) * tw, n = nb * P, HW = H * W, NR = ELBO_SGEMM_NR;
    int64_t n_end = panels ? (n + NR - 1) / NR * NR : n; /* columns written */
    tile_group blk[BLOCK];
    for (int64_t t0 = 0; t0 < n_end; t0 += 16 * BLOCK) {
        int ng = tile_block_at(blk, t0, n, n_end, tw, P, H, W, C * HW);
        for (int64_t c = 0; c < C; c++)
            for (int k = 0; k < ng; k++) {
                const tile_group *g = &blk[k];
                const float *xc = x + c * HW;
                vf t[6][6]; /* t = B^T d, column by column */
                for (int j = 0; j < 6; j++) {
                    vf d[6], s[6];
                    for (int i = 0; i < 6; i++)
                        d[i] = gather(xc, g->off, (int32_t)(i * W + j), g->rows[i] & g->cols[j]);
                    bt6(d, s);
                    for (int i = 0; i < 6; i++) t[i][j] = s[i];
                }
                int64_t tk = t0 + 16 * k;
                float *v = panels ? V + tk / NR * C * NR + c * NR + tk % NR : V + c * ldv + tk;
                uint32_t mask = panels ? 0xFFFFu : g->valid; /* zeros past n for whole panels */
                for (int i = 0; i < 6; i++) { /* V = t B, row by row */
                    vf s[6];
                    bt6(t[i], s);
                    for (int j = 0; j < 6; j++) store(v + (6 * i + j) * xs, s[j], mask);
                }
            }
    }
}

/* Writes the 4x4 output tiles Y[i][j] (lane l: tile l of g) into the plane y (H, W): cropped
 * to the image, y = Y + bn, or with acc y += Y. */
static void put_tiles(float *y, const tile_group *g, int64_t W, const vf Y[4][4], float bn,
                      int acc) {
#if defined(__AVX512F__) && defined(__AVX512VL__)
    float q[4][4][16] __attribute__((aligned(64))); /* q[i][k]: tiles 4 p + k, 4 floats each */
    for (int i = 0; i < 4; i++) { /* lanes of Y[i][0 .. 3] to 4-float rows: a 4x4 transpose */
        __m512 a = (__m512)Y[i][0], b = (__m512)Y[i][1], c = (__m512)Y[i][2], d = (__m512)Y[i][3];
        __m512d t0 = _mm512_castps_pd(_mm512_unpacklo_ps(a, b)),
                t1 = _mm512_castps_pd(_mm512_unpackhi_ps(a, b)),
                t2 = _mm512_castps_pd(_mm512_unpacklo_ps(c, d)),
                t3 = _mm512_castps_pd(_mm512_unpackhi_ps(c, d));
        _mm512_store_ps(q[i][0], _mm512_castpd_ps(_mm512_unpacklo_pd(t0, t2)));
        _mm512_store_ps(q[i][1], _mm512_castpd_ps(_mm512_unpackhi_pd(t0, t2)));
        _mm512_store_ps(q[i][2], _mm512_castpd_ps(_mm512_unpacklo_pd(t1, t3)));
        _mm512_store_ps(q[i][3], _mm512_castpd_ps(_mm512_unpackhi_pd(t1, t3)));
    }
    __m128 b4 = _mm_set1_ps(bn);
    for (int l = 0; l < 16 && (g->valid >> l & 1); l++) {
        __mmask8 cm = (__mmask8)g->out_cols[l];
        float *yt = y + g->off[l] + W + 1;
        for (int i = 0; i < g->out_rows[l]; i++) {
            __m128 v = _mm_load_ps(q[i][l % 4] + 4 * (l / 4));
            v = acc ? _mm_add_ps(_mm_maskz_loadu_ps(cm, yt + i * W), v) : _mm_add_ps(v, b4);
            _mm_mask_storeu_ps(yt + i * W, cm, v);
        }
    }
#else
    for (int l = 0; l < 16 && (g->valid >> l & 1); l++) {
        float *yt = y + g->off[l] + W + 1;
        for (int i = 0; i < g->out_rows[l]; i++)
            for (int j = 0; j < 4 && (g->out_cols[l] >> j & 1); j++)
                yt[i * W + j] = acc ? yt[i * W + j] + Y[i][j][l] : Y[i][j][l] + bn;
    }
#endif
}

/* y (nb, N, H, W) = crop(A^T m A) + bias (or, with acc, y += crop(A^T m A)), m the 6x6 of
 * M (36, N, ldm) (xi stride xs) at column t. */
void elbo__wino_output(const float *M, int64_t nb, int64_t N, int64_t H, int64_t W, int64_t ldm,
                       int64_t xs, const float *bias, int acc, float *y) {
    int64_t tw = TILES(W), P = TILES(H) * tw, n = nb * P, HW = H * W;
    tile_group blk[BLOCK];
    for (int64_t t0 = 0; t0 < n; t0 += 16 * BLOCK) {
        int ng = tile_block_at(blk, t0, n, n, tw, P, H, W, N * HW);
        for (int64_t o = 0; o < N; o++)
            for (int k = 0; k < ng; k++) {
                const tile_group *g = &blk[k];
                const float *m = M + o * ldm + t0 + 16 * k;
                vf s[4][6], Y[4][4]; /* s = A^T m, column by column; Y = s A, row by row */
                for (int j = 0; j < 6; j++) {
                    vf mj[6], r[4];
                    for (int i = 0; i < 6; i++) mj[i] = load(m + (6 * i + j) * xs, g->valid);
                    at6(mj, r);
                    for (int i = 0; i < 4; i++) s[i][j] = r[i];
                }
                for (int i = 0; i < 4; i++) at6(s[i], Y[i]);
                put_tiles(y + o * HW, g, W, Y, bias && !acc ? bias[o] : 0.0f, acc);
            }
    }
}

#ifdef __AVX512F__
/* ---- channel-last variants (AVX-512): the 16 lanes on 16 channels of one tile ----------
 * Every load and store is a whole vector (no gathers), and V and M are tile-major (n, C), so
 * that M_xi^T (n, Co) = V_xi^T (n, Ci) U_xi^T is a product whose left factor the GEMM reads
 * in place (elbo__sgemm_rowa_pb). bt6 and at6 are the tile-lane variants' own, in the same
 * order, so the values are the same bits. */

static inline vf loadv(const float *p) { return (vf)_mm512_loadu_ps(p); }
static inline void storev(float *p, vf v) { _mm512_storeu_ps(p, (__m512)v); }

/* Vt (36, n, C) (xi stride xs >= n C): Vt[xi xs + t C + c] = (B^T d B)[xi] of tile t (numbered
 * as in elbo__wino_input) of channel c, from xt (nb, H W, C) channel-last; C % 16 == 0. */
void elbo__wino_input_cl(const float *xt, int64_t nb, int64_t C, int64_t H, int64_t W, float *Vt,
                         int64_t xs) {
    int64_t th = TILES(H), tw = TILES(W);
    const vf z = {0};
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                int64_t t = (b * th + ty) * tw + tx, r0 = 4 * ty - 1, q0 = 4 * tx - 1;
                const float *xb = xt + b * H * W * C;
                for (int64_t c0 = 0; c0 < C; c0 += 16) {
                    vf tt[6][6]; /* t = B^T d, column by column */
                    for (int j = 0; j < 6; j++) {
                        vf d[6], s[6];
                        int64_t iw = q0 + j;
                        for (int i = 0; i < 6; i++) {
                            int64_t ih = r0 + i;
                            d[i] = ih >= 0 && ih < H && iw >= 0 && iw < W
                                       ? loadv(xb + (ih * W + iw) * C + c0)
                                       : z;
                        }
                        bt6(d, s);
                        for (int i = 0; i < 6; i++) tt[i][j] = s[i];
                    }
                    float *v = Vt + t * C + c0;
                    for (int i = 0; i < 6; i++) { /* V = t B, row by row */
                        vf s[6];
                        bt6(tt[i], s);
                        for (int j = 0; j < 6; j++) storev(v + (6 * i + j) * xs, s[j]);
                    }
                }
            }
}

/* yt (nb, H W, N) channel-last = A^T m A cropped to (H, W), m the 6x6 of Mt (36, n, N) (xi
 * stride xs, tile-major) at tile t; N % 16 == 0. */
void elbo__wino_output_cl(const float *Mt, int64_t nb, int64_t N, int64_t H, int64_t W,
                          int64_t xs, float *yt) {
    int64_t th = TILES(H), tw = TILES(W);
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < th; ty++)
            for (int64_t tx = 0; tx < tw; tx++) {
                int64_t t = (b * th + ty) * tw + tx;
                int rows = H - 4 * ty < 4 ? (int)(H - 4 * ty) : 4,
                    cols = W - 4 * tx < 4 ? (int)(W - 4 * tx) : 4;
                float *yb = yt + ((b * H + 4 * ty) * W + 4 * tx) * N;
                for (int64_t o0 = 0; o0 < N; o0 += 16) {
                    const float *m = Mt + t * N + o0;
                    vf s[4][6], Y[4][4]; /* s = A^T m, column by column; Y = s A, row by row */
                    for (int j = 0; j < 6; j++) {
                        vf mj[6], r[4];
                        for (int i = 0; i < 6; i++) mj[i] = loadv(m + (6 * i + j) * xs);
                        at6(mj, r);
                        for (int i = 0; i < 4; i++) s[i][j] = r[i];
                    }
                    for (int i = 0; i < 4; i++) at6(s[i], Y[i]);
                    for (int i = 0; i < rows; i++)
                        for (int j = 0; j < cols; j++) storev(yb + (i * W + j) * N + o0, Y[i][j]);
                }
            }
}
#endif
