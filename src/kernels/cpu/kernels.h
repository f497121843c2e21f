/* Raw float32 CPU kernels for the linear-algebra and convolution ops: no autodiff, no
 * allocation. Every kernel writes each output element from one thread in a fixed order,
 * so results are the same bits for any thread count. Matrices are row-major. */
#ifndef ELBO_KERNELS_CPU_H
#define ELBO_KERNELS_CPU_H

#include <stddef.h>
#include <stdint.h>
#ifdef __AVX512F__
#include <immintrin.h>
/* The mask of the first n of 16 lanes (none for n <= 0, all for n >= 16). */
static inline __mmask16 elbo__lanes16(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}
/* In-register transpose of a 16 x 16 block: r[i] lane j <- r[j] lane i (unpacks within 128-bit
 * lanes, then two rounds of 128-bit lane shuffles). */
static inline void elbo__transpose16(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        __m512d a = _mm512_castps_pd(t[i]), b = _mm512_castps_pd(t[i + 2]);
        __m512d c = _mm512_castps_pd(t[i + 1]), d = _mm512_castps_pd(t[i + 3]);
        r[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
        r[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        r[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(c, d));
        r[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(c, d));
    }
    /* r[4q + e] now holds, in 128-bit lane L, elements (4q + 0..3) x (4L + e) */
    for (int q = 0; q < 16; q += 8)
        for (int e = 0; e < 4; e++) {
            t[q + e] = _mm512_shuffle_f32x4(r[q + e], r[q + 4 + e], 0x88);
            t[q + 4 + e] = _mm512_shuffle_f32x4(r[q + e], r[q + 4 + e], 0xDD);
        }
    for (int e = 0; e < 8; e++) {
        r[e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0x88);
        r[8 + e] = _mm512_shuffle_f32x4(t[e], t[8 + e], 0xDD);
    }
}
#endif

/* ---- GEMM (gemm.c) -------------------------------------------------------------------- */
/* C (M,N) = alpha op(A) op(B) + beta C, op(A) (M,K), op(B) (K,N); A is stored (M,K) or, with
 * ta, (K,M) (likewise B), with leading dimensions lda, ldb, ldc. cblas_sgemm underneath;
 * empty sizes are handled here (K = 0 only scales C by beta). */
void elbo__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* The same product as one serial call of the block kernel (no tiling), for callers that run many
 * products in parallel themselves (one per thread). Only valid while OpenBLAS is
 * single-threaded: call elbo__blas_single_thread() first, outside the parallel region. */
void elbo__sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc);
/* Our packed AVX-512 kernel for one serial product (sgemm_packed.c; AVX-512 builds only), the
 * arguments as elbo__sgemm's with K > 0. elbo__sgemm and elbo__sgemm_serial run every block
 * through it where it is built. */
void elbo__sgemm_packed(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc);
/* elbo__sgemm_packed with an epilogue: C (m,n) = alpha op(A) op(B) + beta C + bias[None, :]
 * (bias NULL: none), then C = C > 0 ? C : 0 with relu; the bias added on the first K block
 * and the relu applied on the last, in the micro-kernel's output pass (AVX-512 builds). With
 * beta 0: the bits of C preset to the bias, elbo__sgemm_packed with beta 1, then elbo_relu. */
void elbo__sgemm_packed_ep(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc, const float *bias, int relu);
/* op(A) (m,K) packed once for many products with the same A (AVX-512 builds): Ap holds m K
 * floats; elbo__sgemm_packed_pa then computes C = alpha op(A) op(B) + beta C from it, with the
 * bits of elbo__sgemm_packed. */
void elbo__sgemm_pack_a(int ta, int64_t m, int64_t K, const float *A, int64_t lda, float *Ap);
void elbo__sgemm_packed_pa(const float *Ap, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                           const float *B, int64_t ldb, float beta, float *C, int64_t ldc);
/* Columns of B per panel of elbo__sgemm_packed_pab, which takes B (K, n) already packed:
 * B[k, j] at Bp[(j / ELBO_SGEMM_NR) K ELBO_SGEMM_NR + k ELBO_SGEMM_NR + j % ELBO_SGEMM_NR],
 * the last panel padded with finite values (its extra columns are computed, not stored);
 * the bits of elbo__sgemm_packed_pa. */
#define ELBO_SGEMM_NR 32
void elbo__sgemm_packed_pab(const float *Ap, int64_t m, int64_t n, int64_t K, float alpha,
                            const float *Bp, float beta, float *C, int64_t ldc);
/* op(B) (K, n) into the panels of elbo__sgemm_packed_pab (n rounded up to whole panels of
 * ELBO_SGEMM_NR columns, zeros past n): Bp, 64-byte aligned (the kernel loads its rows
 * aligned), holds ceil(n / NR) NR K floats. */
void elbo__sgemm_pack_b(int tb, int64_t K, int64_t n, const float *B, int64_t ldb, float *Bp);
/* C (m, n) = alpha A (m, K) B + beta C with A row-major read in place (no packing: each micro-
 * panel broadcasts from MR rows of A) and B in the panels of elbo__sgemm_pack_b: the bits of
 * elbo__sgemm_packed (each element summed over k in order in the same K blocks). */
void elbo__sgemm_rowa_pb(int64_t m, int64_t n, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *Bp, float beta, float *C, int64_t ldc);
/* C (m, n) = alpha A^T B + beta C for A (K, m) and B (K, n) row-major, both read in place (no
 * packing; for dW of the channel-last Winograd, whose operands are tile-major): the bits of
 * elbo__sgemm_packed(1, 0, ...). */
void elbo__sgemm_tn_inplace(int64_t m, int64_t n, int64_t K, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc);
/* Sets OpenBLAS to one thread if it is not (elbo parallelises GEMMs itself). */
void elbo__blas_single_thread(void);

/* Gradients of C = op(A) op(B), accumulated: given dC (M,N),
 *   d op(A) += dC op(B)^T,  d op(B) += op(A)^T dC,
 * written back in A's and B's storage layout (dA is (K,M) when ta). dA or dB may be NULL. */
void elbo__sgemm_backward(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                          const float *B, const float *dC, float *dA, float *dB);

/* C (M,N) = op(A) op(B) + bias[None, :] (bias may be NULL), then relu if asked: the linear
 * layer's product with its bias and activation in one pass over C where the packed kernel is
 * built (elbo__sgemm_packed_ep, split across threads as elbo__sgemm); elsewhere C preset to
 * the bias, elbo__sgemm with beta 1 and a relu pass. Same bits either way. */
void elbo__sgemm_bias_relu(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const float *bias, int relu,
                           float *C, int64_t ldc);
/* db (N) (+)= column sums of dy (R,N): db[j] = [db[j] +] sum_r dy[r,j] (the sum in double,
 * rows in order; added to db when accumulate, stored otherwise). */
void elbo__colsum(float *db, const float *dy, int64_t R, int64_t N, int accumulate);
/* dz = y > 0 ? dy : 0 (R, N), the gradient through a relu from its output y, and, if db is not
 * NULL, db (=, or += with accumulate) the column sums of dz with elbo__colsum's bits. */
void elbo__relu_grad_colsum(float *dz, const float *dy, const float *y, int64_t R, int64_t N,
                            float *db, int accumulate);

/* ---- convolution (conv.c) ------------------------------------------------------------- */
/* Geometry of a 2-D cross-correlation: x (B,C,H,W), w (OC,C,KH,KW) -> y (B,OC,OH,OW),
 * OH = (H + 2 ph - KH) / sh + 1, OW = (W + 2 pw - KW) / sw + 1. */
typedef struct {
    int64_t C, H, W, OC, KH, KW, OH, OW;
    int64_t sh, sw, ph, pw;
} elbo_conv_geom;

/* conv2d tuning (src/ops/conv.c), set only by tests and benchmarks: the scratch budget of
 * one chunk of images, from which output width and input channel count stride-1
 * convolutions use shifted GEMMs instead of im2col, and how those compute dW. */
extern size_t elbo__conv_chunk_bytes;
extern int64_t elbo__conv_shift_min_ow, elbo__conv_shift_min_c;
extern int elbo__conv_shift_dw; /* -1 auto, 0 dW by im2col, 1 by per-offset products */
/* Stride-1 convolutions (pad < kernel) with at most this many output channels use the
 * direct kernels (elbo__conv_direct), forward and backward; 0 turns them off. */
extern int64_t elbo__conv_direct_max_c;
/* 3x3 stride-1 pad-1 convolutions use Winograd F(4x4, 3x3) for the forward pass and for dX
 * from this many input and output channels on (min(C, OC)) and images of this many pixels
 * (H W), in chunks of images whose transformed tiles fit in elbo__conv_wino_bytes. */
extern int64_t elbo__conv_wino_min_c, elbo__conv_wino_dx_min_c, elbo__conv_wino_min_hw;
extern size_t elbo__conv_wino_bytes;
/* dW by Winograd from this min(C, OC) on (same layers otherwise), chunks within
 * elbo__conv_wino_dw_bytes. */
extern int64_t elbo__conv_wino_dw_min_c;
extern size_t elbo__conv_wino_dw_bytes;

/* Columns of nb images x (nb,C,H,W) -> cols (C*KH*KW, nb*OH*OW):
 *   cols[(c*KH + kh)*KW + kw, b*OH*OW + oh*OW + ow] = x[b, c, oh*sh - ph + kh, ow*sw - pw + kw]
 * (0 outside the image). */
void elbo__im2col(const elbo_conv_geom *g, const float *x, int64_t nb, float *cols);
/* The adjoint of im2col, accumulated: dx (nb,C,H,W) += col2im(dcols (C*KH*KW, nb*OH*OW)).
 * Each (image, channel) plane is summed by one thread in a fixed (kh, kw, oh, ow) order. */
void elbo__col2im_acc(const elbo_conv_geom *g, const float *dcols, int64_t nb, float *dx);

/* Channel-major <-> image-major for nb images of P pixels:
 *   scatter: y (nb,N,P)[b,n,p] = t (N, nb*P)[n, b*P + p] + (bias ? bias[n] : 0)
 *   gather:  t (N, nb*P)[n, b*P + p] = y (nb,N,P)[b,n,p] */
void elbo__cm_to_nchw(const float *t, const float *bias, int64_t nb, int64_t N, int64_t P,
                      float *y);
void elbo__nchw_to_cm(const float *y, int64_t nb, int64_t N, int64_t P, float *t);
/* y (nb,N,P) += t (N, nb*P) in image-major order (the accumulating scatter). */
void elbo__cm_acc_nchw(const float *t, int64_t nb, int64_t N, int64_t P, float *y);
/* dst (N,Hd,Wd) = src (N,Hs,Ws) placed with its corner at (top, left), zeros around it. */
void elbo__pad_planes(const float *src, int64_t N, int64_t Hs, int64_t Ws, int64_t top,
                      int64_t left, int64_t Hd, int64_t Wd, float *dst);
/* The top-left (H,W) of each of N planes of src (row stride ld_row, plane stride ld_plane):
 * dst (N,H,W) = crop + (bias ? bias[n] : 0), or with acc, dst += crop (bias unused). */
void elbo__crop_planes(const float *src, int64_t N, int64_t H, int64_t W, int64_t ld_row,
                       int64_t ld_plane, const float *bias, int acc, float *dst);
/* y (B,N,P) = bias (N) broadcast over batch and pixels (0 where bias is NULL). */
void elbo__set_channel_bias(float *y, const float *bias, int64_t B, int64_t N, int64_t P);
/* Channel-last images (conv.c; AVX-512 builds, C a multiple of 16), for the channel-last
 * Winograd transforms: xt (HW, C) = x (C, HW)^T of one image; and the inverse, y (C, HW) =
 * ((xt^T + bias) + e) + r (bias (C) none: + 0; e (C) and r (C, HW) each NULL to skip), or with
 * acc y += xt^T. */
void elbo__to_channel_last(const float *x, int64_t C, int64_t HW, float *xt);
void elbo__from_channel_last(const float *xt, int64_t C, int64_t HW, const float *bias,
                             const float *e, const float *r, int acc, float *y);
/* db (N) += sum over b, p of dy (B,N,P) and de (B,N) += sum over p (per plane), each NULL to
 * skip (per channel, fixed order, in double). */
void elbo__channel_sum_acc(float *db, float *de, const float *dy, int64_t B, int64_t N,
                           int64_t P);

/* Direct stride-1 convolution of one image for thin layers (few channels on one side, where
 * GEMMs degenerate): y (OC, OH, OW) = bias + sum_{c, kh, kw} w[o, c, kh, kw] xpad[c, i + kh,
 * j + kw], summed in the order c, kh, kw (with acc, y += the sum; bias unused). xpad
 * (C, Hp, Wp) is the zero-padded input, Hp = OH + KH - 1, Wp = OW + KW - 1; each sum runs
 * over the "wide" output of (OH - 1) Wp + OW floats (rows of Wp, the last KW - 1 columns of
 * each discarded) in the scratch `wide`, so that the inner loops are long. dX is the same
 * call on the padded dY with the transposed, flipped kernel. */
void elbo__conv_direct(const float *xpad, int64_t C, int64_t Hp, int64_t Wp, const float *w,
                       int64_t OC, int64_t KH, int64_t KW, const float *bias, int acc, int64_t OH,
                       int64_t OW, float *y, float *wide);
/* dW of one (output, input) channel pair over one image: lanes (KH KW, 16) +=, lane l of
 * offset k = (kh, kw) summing dyw[p] xpad[p + kh Wp + kw] over p = l (mod 16) in order, p
 * < N16 (a multiple of 16). dyw is dY in the wide layout (rows of Wp, zero in the discarded
 * columns and past the end); xpad (Hp, Wp) the padded input plane, readable (zeros) for
 * N16 + (KH - 1) Wp + KW - 1 floats. The caller adds the 16 lanes in order at the end: the
 * bits depend on the shapes alone. */
void elbo__conv_direct_dw(const float *xpad, int64_t Wp, const float *dyw, int64_t N16,
                          int64_t KH, int64_t KW, float *lanes);

/* ---- Winograd F(4x4, 3x3) (winograd.c), 3x3 stride-1 pad-1 only ---------------------- */
/* Output tiles of 4x4 from input tiles of 6x6: ELBO_WINO_XI transformed entries per tile,
 * elbo__wino_tiles(H, W) = ceil(H / 4) ceil(W / 4) tiles per image. The transforms index the
 * tiles of a chunk of images with int32: a chunk holds fewer than 2^31 floats. */
#define ELBO_WINO_XI 36
static inline int64_t elbo__wino_tiles(int64_t H, int64_t W) { return ((H + 3) / 4) * ((W + 3) / 4); }
/* U (36, R, S) = G g G^T per (r, s) for rows r0 <= r < r1: g = w[r, s] (flip = 0; R = OC,
 * S = C), or the kernel of dX, g[kh, kw] = w[s, r, 2 - kh, 2 - kw] (flip = 1; R = C, S = OC);
 * w (OC, C, 3, 3). */
void elbo__wino_kernel(const float *w, int64_t OC, int64_t C, int flip, int64_t r0, int64_t r1,
                       float *U);
/* V (36, C, ldv) (xi stride xs >= C ldv) = B^T d B for the 6x6 tiles (stride 4, padding 1)
 * of each of nb images x (nb, C, H, W), columns image-major then row-major; with panels,
 * each V_xi (C, n) in the panels of elbo__sgemm_packed_pab instead (ldv unused, zero columns
 * up to a whole panel; xs >= C ceil(n / ELBO_SGEMM_NR) ELBO_SGEMM_NR). */
void elbo__wino_input(const float *x, int64_t nb, int64_t C, int64_t H, int64_t W, float *V,
                      int64_t ldv, int64_t xs, int panels);
/* Channel-last variants (AVX-512 builds; C, N multiples of 16), the same values as the two
 * tile-lane ones: Vt (36, n, C) tile-major (xi stride xs >= n C) from xt (nb, H W, C), and
 * yt (nb, H W, N) channel-last = A^T m A cropped, from Mt (36, n, N) tile-major. */
void elbo__wino_input_cl(const float *xt, int64_t nb, int64_t C, int64_t H, int64_t W, float *Vt,
                         int64_t xs);
void elbo__wino_output_cl(const float *Mt, int64_t nb, int64_t N, int64_t H, int64_t W,
                          int64_t xs, float *yt);
/* y (nb, N, H, W) = A^T m A cropped to (H, W), plus bias (N) if given, or with acc y += it;
 * m from M (36, N, ldm) (xi stride xs) in the column order of elbo__wino_input. */
void elbo__wino_output(const float *M, int64_t nb, int64_t N, int64_t H, int64_t W, int64_t ldm,
                       int64_t xs, const float *bias, int acc, float *y);


/* ---- Winograd F(2x2, 3x3) for dW (winograd2.c), 3x3 stride-1 pad-1 only --------------- */
/* V (16, C, ldv) (xi stride xs >= C ldv) = B^T d B for the ceil(H/2) ceil(W/2) 4x4 tiles (stride 2,
 * padding 1) of each of nb images x (nb, C, H, W), columns image-major then row-major; W <= 1024.
 */
void elbo__wino2_input(const float *x, int64_t nb, int64_t C, int64_t H, int64_t W, float *V,
                       int64_t ldv, int64_t xs);
/* dM (16, N, ldm) (xi stride xs) = A dY A^T for the 2x2 tiles of each of nb images dy
 * (nb, N, H, W) (zeros outside the image), columns as in elbo__wino2_input; W <= 1024. */
void elbo__wino2_grad_output(const float *dy, int64_t nb, int64_t N, int64_t H, int64_t W,
                             float *M, int64_t ldm, int64_t xs);
/* Channel-last variants (AVX-512 builds; C, N multiples of 16), the same values as the two
 * above: Vt (16, n, C) and Mt (16, n, N) tile-major (xi strides xs) from channel-last images
 * xt (nb, H W, C) and dyt (nb, H W, N) (elbo__to_channel_last). */
void elbo__wino2_input_cl(const float *xt, int64_t nb, int64_t C, int64_t H, int64_t W,
                          float *Vt, int64_t xs);
void elbo__wino2_grad_output_cl(const float *dyt, int64_t nb, int64_t N, int64_t H, int64_t W,
                                float *Mt, int64_t xs);
/* gw (n, 3, 3) += G^T dU G for n kernels, dU[xi] (16 entries) of kernel i at dU[xi st + i]. */
void elbo__wino2_kernel_grad(const float *dU, int64_t st, int64_t n, float *gw);

/* ---- resampling (conv.c) -------------------------------------------------------------- */
/* x (BC,H,W) -> y (BC,2H,2W), y[., i, j] = x[., i/2, j/2]. */
void elbo__upsample2x(const float *x, int64_t BC, int64_t H, int64_t W, float *y);
/* dx (BC,H,W) += sum of the 2x2 block of dy (BC,2H,2W) above each input pixel (acc), or
 * dx = that sum (!acc: dx need not be initialised). */
void elbo__upsample2x_backward(const float *dy, int64_t BC, int64_t H, int64_t W, int acc,
                               float *dx);
/* x (BC,H,W) -> y (BC,OH,OW), y[., i, j] = mean of the k x k window at (i s, j s). */
void elbo__avg_pool2d(const float *x, int64_t BC, int64_t H, int64_t W, int64_t k, int64_t s,
                      float *y);
/* dx (BC,H,W) += dy / k^2 spread over each window (per plane, fixed window order); without
 * acc each plane is zeroed first (dx need not be initialised). */
void elbo__avg_pool2d_backward(const float *dy, int64_t BC, int64_t H, int64_t W, int64_t k,
                               int64_t s, int acc, float *dx);

#endif
