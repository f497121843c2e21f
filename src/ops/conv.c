/* 2-D convolution (cross-correlation, as torch.nn.functional.conv2d) by im2col + sgemm, nearest
 * upsampling and average pooling.
 *
 * conv2d: the batch is cut into T chunks of consecutive images whose columns
 * (C*KH*KW, nb*OH*OW) fit in a core's L2 cache, with one sgemm per chunk:
 *   forward   t (OC, nb*OH*OW) = W (OC, C*KH*KW) @ cols, then scattered to NCHW plus bias
 *   backward  dW += dY_cm (OC, nb*OH*OW) @ cols^T   (cols recomputed, not saved)
 *             dcols = W^T @ dY_cm, dX += col2im(dcols)
 *             db += sum of dY over images and pixels
 * where dY_cm is the chunk's dY in channel-major order. A chunk of one image needs no layout
 * change (the GEMM reads and writes the image's NCHW planes), and a 1x1 stride-1 unpadded
 * convolution of one image needs no im2col either (cols = x_b).
 *
 * For a stride-1 convolution with OC <= C, dX is computed as the convolution it is
 * (transposed convolution = correlation of dY with the flipped, transposed kernel):
 *   dX (C, H W) += W' (C, OC KH KW) @ im2col'(dY),  W'[c, oc, kh, kw] = W[oc, c, KH-1-kh, KW-1-kw],
 * padding KH-1-ph, KW-1-pw. Its columns have OC KH KW rows instead of the C KH KW of dcols,
 * and the GEMM accumulates straight into dX: no col2im pass.
 *
 * Shifted GEMMs (stride 1, wide images): with x zero-padded to (C, Hp, Wp), the output
 * computed on rows of Wp columns ("wide", the last Wp - OW of each row are discarded) is a
 * sum of KH KW products whose right factor is the padded image shifted by kh Wp + kw:
 *   y_wide (OC, OH Wp) = sum_{kh,kw} W[:, :, kh, kw] (OC, C) @ x_pad[:, kh Wp + kw :]
 * and likewise dW[:, :, kh, kw]^T (C, OC) = x_pad[:, kh Wp + kw :] @ dY_wide^T (dY_wide zero
 * in the discarded columns) and dX_wide = sum W'[kh, kw] (C, OC) @ dY_pad[:, kh Wq + kw :].
 * No im2col at all: the GEMMs read the padded planes in place (one image per task).
 *
 * Winograd F(4x4, 3x3) (Lavin & Gray 2016; kernels/cpu/winograd.c): a 3x3 stride-1 pad-1
 * convolution, forward and dX (the correlation of dY with the flipped, transposed kernel,
 * pad 1), is 36 products M_xi (OC, T) = U_xi (OC, C) @ V_xi (C, T) over the T 6x6 tiles
 * (stride 4) of a chunk of images, U = G g G^T, V = B^T d B, y = A^T M A: 4 times fewer
 * multiply-adds on whole tiles (see wino_conv, and the thresholds above it for where it is
 * used). dW of the same layers is the adjoint of F(2x2, 3x3) (wino_dw; kernels/cpu/
 * winograd2.c, which says why not F(4x4, 3x3)): dU_xi (OC, C) = sum over the 4x4 tiles
 * dM_xi (OC, T) @ V_xi^T with dM = A dY A^T, then dW = G^T dU G.
 * Where the channels come in multiples of 16 (AVX-512 builds), both run channel-last: each
 * image is transposed to (HW, C) in the task's scratch, the transforms put their 16 lanes on
 * 16 channels of one tile (whole-vector loads and stores, no gathers, no idle lanes on small
 * images), V and M are tile-major, the products are M_xi^T (T, Co) = V_xi^T U_xi^T with V read
 * in place (elbo__sgemm_rowa_pb) and dU_xi = dM_xi^T V_xi with both read in place
 * (elbo__sgemm_tn_inplace), and the output
 * is transposed back. The same operations in the same order: the same bits (tests/
 * test_ops_conv.c checks it); measured in the comments of elbo__conv_wino_cl and _dw_cl.
 *
 * Threads: with several chunks, each chunk is one task (im2col, a serial sgemm, scatter)
 * run whole by one thread in its own scratch, so the columns stay in that core's cache
 * (scheduled dynamically: what a task computes does not depend on the thread running it).
 * dW is summed per fixed group of chunks into its own partial buffer, and the partials are
 * added in group order. A single chunk runs its kernels and its (tiled) sgemm over all
 * threads instead. Chunks, groups and tiles depend only on the shapes: the same bits for
 * any thread count. */
#include "internal.h"
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>

/* A chunk has enough images for a GEMM of at least CHUNK_MIN_COLS columns (narrower ones
 * run slower), but its scratch (columns + channel-major output) stays within
 * elbo__conv_chunk_bytes, a share of a 2 MiB L2 cache. The budget is tunable for
 * benchmarks (bench/conv_micro.c); not part of the API. */
#define CHUNK_MIN_COLS 512
size_t elbo__conv_chunk_bytes = (size_t)2 << 20;
/* Shifted GEMMs are used from this output width on (narrower images waste too many wide
 * columns and make GEMMs too small), from 70% of it when OC <= C (measured on the unet-s
 * layers: 14x14 with OC <= C gains, with OC > C loses), and from this many input channels
 * on (K = C per GEMM). Tunable for tests and benchmarks; not part of the API. */
int64_t elbo__conv_shift_min_ow = 20;
int64_t elbo__conv_shift_min_c = 8;
/* With shifted GEMMs, dW by nine (C, OC) products over the padded image (1), or by im2col
 * and one (C KH KW, OC) product (0), or chosen by the OpenBLAS core (-1): the small-output
 * products run as fast as the im2col one with the AVX-512 kernels (136 against 135 GFLOP/s
 * per core at C = OC = 32) but slower with the AVX2 ones (72 against 95, Haswell). */
int elbo__conv_shift_dw = -1;

static int shift_dw_by_offsets(void) {
    if (elbo__conv_shift_dw >= 0) return elbo__conv_shift_dw;
    const char *core = openblas_get_corename();
    return core && (strstr(core, "SkylakeX") || strstr(core, "Cooperlake") ||
                    strstr(core, "SapphireRapids"));
}

/* Winograd (wino_conv) for 3x3 stride-1 pad-1 convolutions with min(C, OC) of
 * at least elbo__conv_wino_min_c (forward) or elbo__conv_wino_dx_min_c (dX) on images of at
 * least elbo__conv_wino_min_hw pixels. Measured on the unet-s layers (bench/conv_micro.c,
 * batch 64, 2 threads, forward / forward + backward ms, im2col or shifted GEMMs against
 * Winograd): 28x28 32->32 4.2 / 15.1 against 2.4 / 11.3, 64->32 9.5 / 32 against 4.8 / 23;
 * 14x14 64->64 4.1 / 15.5 against 2.6 / 12.5, 128->32 4.1 / 15.3 against 2.9 / 12.8,
 * 32->32 1.15 / 4.2 against 0.83 / 3.55; 7x7 64->64 1.33 / 4.4 against 0.95 / 3.55 (a 7x7
 * image takes 16 tiles, 64 outputs for 49), 128->64 2.6 / 8.1 against 1.75 / 6.9. Smaller
 * images and fewer channels were not measured. These figures are of F(2x2, 3x3), before the
 * forward and dX moved to F(4x4, 3x3), which only widened Winograd's lead on these layers
 * (bench/conv_micro: forward 68.3 -> 58.4 ms over all of them); the thresholds were not
 * measured again. Chunks of images keep their transformed
 * tiles within elbo__conv_wino_bytes (L2). Tunable for tests and benchmarks; not part of
 * the API. */
int64_t elbo__conv_wino_min_c = 32;
int64_t elbo__conv_wino_dx_min_c = 32;
int64_t elbo__conv_wino_min_hw = 49;
size_t elbo__conv_wino_bytes = (size_t)1 << 20;
#define WINO_MIN_COLS 128
/* dW by Winograd (wino_dw) on the same layers from this min(C, OC) on, in chunks within
 * elbo__conv_wino_dw_bytes. Measured as above (forward + backward ms, dW by im2col or
 * shifted GEMMs against Winograd, OpenBLAS core auto / Haswell): 28x28 32->32 12.3 / 9.5
 * against 10.2 / 9.9, 64->32 23 / 24 against 18 / 18.4; 14x14 64->64 12.5 / 12.4 against
 * 9.1 / 9.5, 128->32 12.8 / 13.6 against 10.4 / 10.7, 32->32 3.5 / 3.7 against 3.2 / 3.3;
 * 7x7 64->64 3.79 / 4.07 against 3.73 / 3.58, 128->64 7.2 / 7.8 against 6.8 / 7.0. Chunk
 * budgets of 0.5 to 4 MiB measured the same. Tunable for tests and benchmarks; not part of
 * the API. */
int64_t elbo__conv_wino_dw_min_c = 32;
size_t elbo__conv_wino_dw_bytes = (size_t)1 << 20;
/* dW's transforms channel-last where they apply (1), or always tile-lane (0, for the test that
 * the two give the same bits). Measured (bench/conv_micro, dW ms, 2 threads, old / new, two
 * runs each): 7x7 64->64 2.32 / 1.76 and 1.92 / 1.52, 14x14 64->64 5.96 / 5.23 and 5.71 /
 * 5.14, 128->32 6.40 / 4.68 and 4.86 / 4.40, 28x28 64->32 12.1 / 11.7 and 10.2 / 9.9. */
int elbo__conv_wino_dw_cl = 1;
/* The same for the forward pass and dX (wino_conv). Measured with `elbo bench unet-s
 * --threads 2`, tile-lane and channel-last binaries in turn, 4 rounds: step median 268 -> 258
 * ms, forward 89 -> 77 ms (the transposes cost most of what the gathers did: both passes are
 * bound by memory traffic, which is the same; the products run 25-45% faster unpacked). */
int elbo__conv_wino_cl = 1;

static int wino_applies(const elbo_conv_geom *g, int64_t min_c) {
    int64_t c = g->C < g->OC ? g->C : g->OC;
    int64_t cmax = g->C > g->OC ? g->C : g->OC; /* an image's planes index with int32 */
    return g->KH == 3 && g->KW == 3 && g->sh == 1 && g->sw == 1 && g->ph == 1 && g->pw == 1 &&
           g->H * g->W >= elbo__conv_wino_min_hw && c >= min_c && cmax * g->H * g->W < INT32_MAX;
}

/* Direct convolution (elbo__conv_direct) for stride-1 layers with at most
 * elbo__conv_direct_max_c output channels (pad < kernel), where every GEMM of the other paths
 * has a dimension of 1 to 4: the UNet's last (32 -> 1) 3x3 convolution. Measured on it
 * (bench/conv_micro.c, 28x28, batch 64, 2 threads, OPENBLAS_CORETYPE=Haswell, forward /
 * forward + backward ms): im2col 1.66 / 11.95, direct 1.28 / 4.40. With few input channels
 * instead (the first, 1 -> 32), im2col's GEMMs have 32 rows and win: 2.2 against 4.0 ms
 * forward + backward. Tunable for tests and benchmarks; not part of the API. */
int64_t elbo__conv_direct_max_c = 4;

static int direct_applies(const elbo_conv_geom *g) {
    return g->sh == 1 && g->sw == 1 && g->ph < g->KH && g->pw < g->KW &&
           g->OC <= elbo__conv_direct_max_c;
}

/* Chunk counts are rounded up to a multiple of this (balanced over 1, 2 or 4 threads), and
 * dW partial sums are kept for at most MAX_GROUPS groups of chunks. */
#define CHUNK_MULTIPLE 4
#define MAX_GROUPS 16

typedef struct {
    elbo_conv_geom g;
    int64_t B, CKK, P, HW;
    int64_t T;      /* chunks; chunk t holds images [t B / T, (t+1) B / T) */
    int64_t nb_max; /* images in the largest chunk */
    int direct;     /* 1x1 stride 1 unpadded, one image per chunk: cols = x_b */
    int tdx;        /* dX by the transposed convolution (geometry gt) instead of col2im */
    elbo_conv_geom gt;
    int shift;      /* shifted GEMMs on padded planes, one image per chunk */
    int shift_dw;   /* with shift: dW by per-offset products too (else im2col) */
    int64_t Hp, Wp; /* padded x */
    int64_t Hq, Wq; /* dY padded by KH-1-ph, KW-1-pw (the transposed convolution's input) */
    size_t per;     /* scratch floats of one chunk task */
} conv_plan;

/* Geometry of x (B,C,H,W) * w (OC,C,KH,KW) with the given strides and paddings. */
static elbo_conv_geom conv_geom(const elbo_tensor *x, const elbo_tensor *w, int64_t sh, int64_t sw,
                                int64_t ph, int64_t pw) {
    elbo_conv_geom g;
    g.C = x->shape[1];
    g.H = x->shape[2];
    g.W = x->shape[3];
    g.OC = w->shape[0];
    g.KH = w->shape[2];
    g.KW = w->shape[3];
    g.sh = sh;
    g.sw = sw;
    g.ph = ph;
    g.pw = pw;
    g.OH = (g.H + 2 * ph - g.KH) / sh + 1;
    g.OW = (g.W + 2 * pw - g.KW) / sw + 1;
    return g;
}

static int is_pointwise(const elbo_conv_geom *g) {
    return g->KH == 1 && g->KW == 1 && g->sh == 1 && g->sw == 1 && g->ph == 0 && g->pw == 0;
}

static void plan_conv(conv_plan *p, const elbo_conv_geom *g, int64_t B) {
    p->g = *g;
    p->B = B;
    p->CKK = g->C * g->KH * g->KW;
    p->P = g->OH * g->OW;
    p->HW = g->H * g->W;
    size_t per_image = (size_t)(p->CKK + g->OC) * (size_t)p->P * sizeof(float);
    p->shift =
        g->sh == 1 && g->sw == 1 && g->ph < g->KH && g->pw < g->KW && !is_pointwise(g) &&
        g->C >= elbo__conv_shift_min_c &&
        g->OW >= (g->OC <= g->C ? elbo__conv_shift_min_ow * 7 / 10 : elbo__conv_shift_min_ow);
    p->Hp = g->H + 2 * g->ph;
    p->Wp = g->W + 2 * g->pw;
    p->Hq = g->H + g->KH - 1;
    p->Wq = g->W + g->KW - 1;
    int64_t nb = p->P ? (CHUNK_MIN_COLS + p->P - 1) / p->P : B;
    if (per_image && (size_t)nb * per_image > elbo__conv_chunk_bytes)
        nb = (int64_t)(elbo__conv_chunk_bytes / per_image);
    /* 1x1 on large images: per-image GEMMs straight on x and y beat gathering. */
    if ((is_pointwise(g) && p->P >= 256) || p->shift) nb = 1;
    if (nb < 1) nb = 1;
    int64_t T = B > 0 ? (B + nb - 1) / nb : 0;
    if (T > 1) T = (T + CHUNK_MULTIPLE - 1) / CHUNK_MULTIPLE * CHUNK_MULTIPLE;
    if (T > B) T = B;
    p->T = T;
    p->nb_max = T ? (B + T - 1) / T : 0;
    p->direct = p->nb_max == 1 && is_pointwise(g);
    p->tdx = !is_pointwise(g) && g->sh == 1 && g->sw == 1 && g->ph < g->KH && g->pw < g->KW &&
             g->OC <= g->C;
    /* the transposed convolution: dY (OC, OH, OW) -> dX (C, H, W) */
    p->gt = *g;
    p->gt.C = g->OC;
    p->gt.H = g->OH;
    p->gt.W = g->OW;
    p->gt.OC = g->C;
    p->gt.OH = g->H;
    p->gt.OW = g->W;
    p->gt.ph = g->KH - 1 - g->ph;
    p->gt.pw = g->KW - 1 - g->pw;
    size_t n = (size_t)(p->nb_max * p->P), nx = (size_t)(p->nb_max * p->HW);
    size_t fwd = (size_t)(p->CKK + g->OC) * n,
           bwd = p->tdx ? (size_t)(g->OC * g->KH * g->KW + g->C) * nx : 0;
    p->per = p->direct ? 0 : fwd > bwd ? fwd : bwd;
    p->shift_dw = p->shift && shift_dw_by_offsets();
    if (p->shift) { /* x_pad + y_wide or dY_wide; cols for dW by im2col; dY_pad + dX_wide */
        size_t a = (size_t)(g->C * p->Hp * p->Wp + g->OC * g->OH * p->Wp);
        size_t b = (size_t)(p->CKK * p->P),
               c = (size_t)(g->OC * p->Hq * p->Wq + g->C * g->H * p->Wq);
        p->per = a > b ? a : b;
        if (c > p->per) p->per = c;
    }
}

/* The per-offset matrices of w (OC, C, KH, KW): forward wk[k] = W[:, :, k] (OC, C); for dX
 * (flip) wk[k] = W[:, :, KK-1-k]^T (C, OC). */
static void offset_kernels(const conv_plan *p, const float *w, int flip, float *wk) {
    const elbo_conv_geom *g = &p->g;
    int64_t KK = g->KH * g->KW, C = g->C, OC = g->OC;
    ELBO_PARALLEL_FOR(
        C * OC * KK > ELBO_PAR_MIN,
        for (int64_t k = 0; k < KK; k++) for (int64_t oc = 0; oc < OC; oc++) for (int64_t c = 0;
                                                                                  c < C; c++) {
            if (flip)
                wk[(k * C + c) * OC + oc] = w[(oc * C + c) * KK + (KK - 1 - k)];
            else
                wk[(k * OC + oc) * C + c] = w[(oc * C + c) * KK + k];
        });
}

typedef void (*gemm_fn)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t,
                        const float *, int64_t, float, float *, int64_t);

/* Shifted-GEMM forward of image b: y_b = sum_k wk[k] @ shift_k(x_pad) + bias. */
static void shift_forward(const conv_plan *p, const float *x, const float *wk, const float *bias,
                          float *y, int64_t b, float *buf, gemm_fn gemm) {
    const elbo_conv_geom *g = &p->g;
    int64_t C = g->C, OC = g->OC, Wp = p->Wp, plane = p->Hp * Wp;
    int64_t N = (g->OH - 1) * Wp + g->OW, KK = g->KH * g->KW;
    float *xpad = buf, *ywide = buf + C * plane;
    elbo__pad_planes(x + b * C * p->HW, C, g->H, g->W, g->ph, g->pw, p->Hp, Wp, xpad);
    for (int64_t k = 0; k < KK; k++)
        gemm(0, 0, OC, N, C, 1.0f, wk + k * OC * C, C, xpad + (k / g->KW) * Wp + k % g->KW, plane,
             k ? 1.0f : 0.0f, ywide, g->OH * Wp);
    elbo__crop_planes(ywide, OC, g->OH, g->OW, Wp, g->OH * Wp, bias, 0, y + b * OC * p->P);
}

/* Shifted-GEMM backward of image b: dw_t[k] (C, OC) = beta_w dw_t[k] + shift_k(x_pad) @
 * dY_wide^T, or without p->shift_dw dw_t (CKK, OC) = beta_w dw_t + cols @ dY_b^T (if dw_t);
 * gx_b += crop(sum_k wkf[k] @ shift_k(dY_pad)) (if gx; without acc_x, gx_b = crop(..)). */
static void shift_backward(const conv_plan *p, const float *x, const float *wkf, const float *dy,
                           float *dw_t, float beta_w, float *gx, int acc_x, int64_t b, float *buf,
                           gemm_fn gemm) {
    const elbo_conv_geom *g = &p->g;
    int64_t C = g->C, OC = g->OC, Wp = p->Wp, Wq = p->Wq, KK = g->KH * g->KW;
    int64_t plane = p->Hp * Wp, qplane = p->Hq * Wq;
    /* dW first, then dX, both from the start of buf */
    float *xpad = buf, *dywide = xpad + C * plane, *dypad = buf, *dxwide = dypad + OC * qplane;
    const float *dyb = dy + b * OC * p->P;
    if (dw_t && !p->shift_dw) {
        elbo__im2col(g, x + b * C * p->HW, 1, buf);
        gemm(0, 1, p->CKK, OC, p->P, 1.0f, buf, p->P, dyb, p->P, beta_w, dw_t, OC);
    } else if (dw_t) {
        int64_t N = (g->OH - 1) * Wp + g->OW;
        elbo__pad_planes(x + b * C * p->HW, C, g->H, g->W, g->ph, g->pw, p->Hp, Wp, xpad);
        elbo__pad_planes(dyb, OC, g->OH, g->OW, 0, 0, g->OH, Wp, dywide);
        for (int64_t k = 0; k < KK; k++)
            gemm(0, 1, C, OC, N, 1.0f, xpad + (k / g->KW) * Wp + k % g->KW, plane, dywide,
                 g->OH * Wp, beta_w, dw_t + k * C * OC, OC);
    }
    if (gx) {
        int64_t N = (g->H - 1) * Wq + g->W;
        elbo__pad_planes(dyb, OC, g->OH, g->OW, g->KH - 1 - g->ph, g->KW - 1 - g->pw, p->Hq, Wq,
                         dypad);
        for (int64_t k = 0; k < KK; k++)
            gemm(0, 0, C, N, OC, 1.0f, wkf + k * C * OC, OC, dypad + (k / g->KW) * Wq + k % g->KW,
                 qplane, k ? 1.0f : 0.0f, dxwide, g->H * Wq);
        elbo__crop_planes(dxwide, C, g->H, g->W, Wq, g->H * Wq, NULL, acc_x, gx + b * C * p->HW);
    }
}

/* W' (C, OC KH KW) of the transposed convolution from w (OC, C, KH, KW). */
static void flip_kernel(const conv_plan *p, const float *w, float *wt) {
    const elbo_conv_geom *g = &p->g;
    int64_t KK = g->KH * g->KW;
    ELBO_PARALLEL_FOR(g->C * g->OC * KK > ELBO_PAR_MIN,
                      for (int64_t c = 0; c < g->C; c++) for (int64_t oc = 0; oc < g->OC;
                                                              oc++) for (int64_t k = 0; k < KK; k++)
                          wt[(c * g->OC + oc) * KK + k] = w[(oc * g->C + c) * KK + (KK - 1 - k)];);
}

static int64_t chunk_start(const conv_plan *p, int64_t t) { return t * p->B / p->T; }

/* y[b0 .. b0+m) = conv(x[b0 .. b0+m)) + bias, with scratch buf of p->per floats. */
static void chunk_forward(const conv_plan *p, const float *x, const float *w, const float *bias,
                          float *y, int64_t b0, int64_t m, float *buf, int serial) {
    const elbo_conv_geom *g = &p->g;
    int64_t n = m * p->P;
    const float *xb = x + b0 * g->C * p->HW, *cols = xb;
    float *yb = y + b0 * g->OC * p->P;
    if (!p->direct) {
        elbo__im2col(g, xb, m, buf);
        cols = buf;
    }
    if (m == 1) { /* y_b = bias, then y_b += W @ cols */
        elbo__set_channel_bias(yb, bias, 1, g->OC, p->P);
        if (serial)
            elbo__sgemm_serial(0, 0, g->OC, n, p->CKK, 1.0f, w, p->CKK, cols, n, 1.0f, yb, n);
        else
            elbo__sgemm(0, 0, g->OC, n, p->CKK, 1.0f, w, p->CKK, cols, n, 1.0f, yb, n);
    } else {
        float *out = buf + p->CKK * n;
        if (serial)
            elbo__sgemm_serial(0, 0, g->OC, n, p->CKK, 1.0f, w, p->CKK, cols, n, 0.0f, out, n);
        else
            elbo__sgemm(0, 0, g->OC, n, p->CKK, 1.0f, w, p->CKK, cols, n, 0.0f, out, n);
        elbo__cm_to_nchw(out, bias, m, g->OC, p->P, yb);
    }
}

/* For images [b0, b0+m): dw_t (CKK, OC) = beta_w dw_t + cols @ dY_cm^T (if dw_t), and
 * gx += col2im(W^T @ dY_cm), or with p->tdx gx += W' @ im2col'(dY) (wt = W'), (if gx;
 * without acc_x the images' gx is stored, not added to: it need not be initialised).
 * dW is computed transposed because OpenBLAS runs (CKK, OC) outputs with a long K faster
 * than (OC, CKK) ones (114 against 90 GFLOP/s per core at OC 32). */
static void chunk_backward(const conv_plan *p, const float *x, const float *w, const float *wt,
                           const float *dy, float *dw_t, float beta_w, float *gx, int acc_x,
                           int64_t b0, int64_t m, float *buf, int serial) {
    const elbo_conv_geom *g = &p->g;
    int64_t n = m * p->P, CKK = p->CKK;
    const float *xb = x + b0 * g->C * p->HW, *dyb = dy + b0 * g->OC * p->P, *dyc = dyb;
    float *cols = buf;
    void (*gemm)(int, int, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *,
                 int64_t, float, float *, int64_t) = serial ? elbo__sgemm_serial : elbo__sgemm;
    if (m > 1 && (dw_t || !p->tdx)) {
        float *dy_cm = buf + CKK * n;
        elbo__nchw_to_cm(dyb, m, g->OC, p->P, dy_cm);
        dyc = dy_cm;
    }
    if (dw_t) {
        const float *c = xb;
        if (!p->direct) {
            elbo__im2col(g, xb, m, cols);
            c = cols;
        }
        gemm(0, 1, CKK, g->OC, n, 1.0f, c, n, dyc, n, beta_w, dw_t, g->OC);
    }
    if (!gx) return;
    float *gxb = gx + b0 * g->C * p->HW, beta_x = acc_x ? 1.0f : 0.0f;
    if (p->direct) {
        gemm(1, 0, CKK, n, g->OC, 1.0f, w, CKK, dyc, n, beta_x, gxb, n);
    } else if (p->tdx) {
        int64_t nx = m * p->HW, OCKK = g->OC * g->KH * g->KW;
        elbo__im2col(&p->gt, dyb, m, cols);
        if (m == 1) {
            gemm(0, 0, g->C, nx, OCKK, 1.0f, wt, OCKK, cols, nx, beta_x, gxb, nx);
        } else {
            float *t = cols + OCKK * nx;
            gemm(0, 0, g->C, nx, OCKK, 1.0f, wt, OCKK, cols, nx, 0.0f, t, nx);
            if (acc_x)
                elbo__cm_acc_nchw(t, m, g->C, p->HW, gxb);
            else
                elbo__cm_to_nchw(t, NULL, m, g->C, p->HW, gxb);
        }
    } else {
        gemm(1, 0, CKK, n, g->OC, 1.0f, w, CKK, dyc, n, 0.0f, cols, n);
        if (!acc_x) { /* col2im adds overlapping windows: zero the images' planes first */
            if (serial)
                memset(gxb, 0, (size_t)(m * g->C * p->HW) * sizeof(float));
            else
                elbo__zero(gxb, m * g->C * p->HW);
        }
        elbo__col2im_acc(g, cols, m, gxb);
    }
}

/* Chunks of B images for a Winograd pass whose chunk scratch is per_image bytes an image
 * (rounded up to a multiple of CHUNK_MULTIPLE, at most B); a chunk's planes (img floats an
 * image) stay below 2^31 floats, for the transforms' int32 indices. */
static int64_t wino_chunks(int64_t B, int64_t P4, size_t per_image, size_t budget, int64_t img) {
    int64_t nb = (WINO_MIN_COLS + P4 - 1) / P4;
    if ((size_t)nb * per_image > budget) nb = (int64_t)(budget / per_image);
    if (nb > INT32_MAX / img) nb = INT32_MAX / img;
    if (nb < 1) nb = 1;
    int64_t T = (B + nb - 1) / nb;
    if (T > 1) T = (T + CHUNK_MULTIPLE - 1) / CHUNK_MULTIPLE * CHUNK_MULTIPLE;
    return T > B ? B : T;
}

/* y[i] = (y[i] + e[q]) + r[i] over planes q < n of P floats (e, r each NULL to skip):
 * elbo_conv2d_add's terms where they are not fused into an output pass, with elbo_add's
 * additions. add_terms_serial runs in the caller's thread (a chunk's task). */
static void add_terms_serial(float *y, const float *e, const float *r, int64_t n, int64_t P) {
    if (!e && !r) return;
    for (int64_t q = 0; q < n; q++)
        for (int64_t p = 0; p < P; p++) {
            float v = y[q * P + p];
            if (e) v = v + e[q];
            if (r) v = v + r[q * P + p];
            y[q * P + p] = v;
        }
}
static void add_terms(float *y, const float *e, const float *r, int64_t n, int64_t P) {
    if (!e && !r) return;
    ELBO_PARALLEL_FOR(n * P > ELBO_PAR_MIN,
                      for (int64_t q = 0; q < n; q++) add_terms_serial(
                          y + q * P, e ? e + q : NULL, r ? r + q * P : NULL, 1, P););
}

/* out (B, Co, H, W) = ((conv3x3(in (B, Ci, H, W)) + bias) + e (B, Co)) + r (B, Co, H, W) (e
 * and r optional: elbo_conv2d_add), or with flip the transposed convolution (dX from dY:
 * Ci = OC, Co = C), added to out with acc, by Winograd F(4x4, 3x3):
 * U (36, Co, Ci) once, then per chunk of nb images (T = nb th tw tiles) V (36, Ci, T) =
 * B^T d B (with AVX-512 written straight into the GEMM kernel's B panels), the 36 products
 * M_xi (Co, T) = U_xi @ V_xi and out = A^T M A. A chunk is one task run whole by one thread
 * (serial sgemm) in its own scratch, sized for the L2 cache; chunks depend only on the
 * shapes. */
static int wino_conv(elbo_ctx *ctx, const elbo_conv_geom *g, int64_t B, const float *in,
                     const float *w, int flip, const float *bias, const float *e, const float *r,
                     int acc, float *out) {
    int64_t Ci = flip ? g->OC : g->C, Co = flip ? g->C : g->OC, H = g->H, W = g->W, HW = H * W;
    int64_t P4 = elbo__wino_tiles(H, W), img = (Ci > Co ? Ci : Co) * H * W;
#ifdef __AVX512F__
    /* channel-last transforms where the channels fill whole vectors (wino_conv_cl) */
    int cl = elbo__conv_wino_cl && Ci % 16 == 0 && Co % 16 == 0;
#else
    const int cl = 0;
#endif
    size_t per_image = (size_t)(ELBO_WINO_XI * (Ci + Co) * P4) * sizeof(float);
    if (cl) per_image += (size_t)((Ci > Co ? Ci : Co) * HW) * sizeof(float);
    int64_t T = wino_chunks(B, P4, per_image, elbo__conv_wino_bytes, img);
    if (T == 0) return 1;
    /* xi strides of V and M: whole 4 KiB pages plus one cache line, so that the 36 streams
     * of a transform fall in different L1 sets (a page multiple puts them all in one) */
    int64_t nb_max = (B + T - 1) / T, cols = nb_max * P4;
#ifdef __AVX512F__
    int panels = 1; /* V_xi written as the kernel's B panels, whole ones */
    int64_t cols_v = (cols + ELBO_SGEMM_NR - 1) / ELBO_SGEMM_NR * ELBO_SGEMM_NR;
#else
    int panels = 0;
    int64_t cols_v = cols;
#endif
    int64_t xs_v = (Ci * cols_v + 1023) / 1024 * 1024 + 16,
            xs_m = (Co * cols + 1023) / 1024 * 1024 + 16;
    /* U, the packed U and each task's V and M start on a cache line (the kernel loads the
     * panels of V aligned); cl: and the task's channel-last image(s), in and then out */
    size_t usize = (size_t)(ELBO_WINO_XI * Ci * Co + 15) / 16 * 16,
           per = (size_t)(ELBO_WINO_XI * (xs_v + xs_m));
    int64_t co_p = (Co + ELBO_SGEMM_NR - 1) / ELBO_SGEMM_NR * ELBO_SGEMM_NR; /* cl: U^T panels */
    if (cl) per += (size_t)((Ci > Co ? Ci : Co) * nb_max * HW + 15) / 16 * 16;
    int nthr = T > 1 ? omp_get_max_threads() : 1;
#ifdef __AVX512F__
    /* the 36 U_xi packed once for the kernel, not once per chunk (cl: U_xi^T as B panels) */
    size_t upsize = cl ? (size_t)(ELBO_WINO_XI * co_p * Ci) : usize;
#else
    size_t upsize = 0;
    (void)co_p;
#endif
    float *buf = elbo_ctx_scratch(ctx, (usize + upsize + (size_t)nthr * per) * sizeof(float));
    if (!buf) return 0;
    float *U = buf, *Up = buf + usize, *task_buf = buf + usize + upsize;
    /* U (a few hundred flops a kernel, in double) and its packing, split over threads by
     * rows and by xi */
    ELBO_PARALLEL_FOR(Co * Ci * 200 > ELBO_PAR_MIN, for (int64_t row = 0; row < Co; row++)
                                                        elbo__wino_kernel(w, g->OC, g->C, flip, row,
                                                                          row + 1, U););
#ifdef __AVX512F__
    if (cl)
        ELBO_PARALLEL_FOR(Co * Ci * 36 > ELBO_PAR_MIN,
                          for (int64_t xi = 0; xi < ELBO_WINO_XI; xi++) elbo__sgemm_pack_b(
                              1, Ci, Co, U + xi * Co * Ci, Ci, Up + xi * co_p * Ci););
    else
        ELBO_PARALLEL_FOR(Co * Ci * 36 > ELBO_PAR_MIN,
                          for (int64_t xi = 0; xi < ELBO_WINO_XI; xi++) elbo__sgemm_pack_a(
                              0, Co, Ci, U + xi * Co * Ci, Ci, Up + xi * Co * Ci););
#else
    (void)Up;
#endif
    elbo__blas_single_thread();
    ELBO_PARALLEL_FOR_DYNAMIC(
        T > 1, for (int64_t t = 0; t < T; t++) {
            float *V = task_buf + (size_t)omp_get_thread_num() * per, *M = V + ELBO_WINO_XI * xs_v;
            int64_t b0 = t * B / T, m = (t + 1) * B / T - b0, n = m * P4;
            if (cl) {
#ifdef __AVX512F__
                /* images to (HW, Ci); V_xi^T (n, Ci) tile-major; M_xi^T (n, Co) = V_xi^T U_xi^T
                 * with V read in place (each M element summed over Ci in order, as below);
                 * A^T m A to (HW, Co); back to (Co, HW) with the bias or added to out */
                float *xt = M + ELBO_WINO_XI * xs_m;
                for (int64_t b = 0; b < m; b++)
                    elbo__to_channel_last(in + (b0 + b) * Ci * HW, Ci, HW, xt + b * HW * Ci);
                elbo__wino_input_cl(xt, m, Ci, H, W, V, xs_v);
                for (int64_t xi = 0; xi < ELBO_WINO_XI; xi++)
                    elbo__sgemm_rowa_pb(n, Co, Ci, 1.0f, V + xi * xs_v, Ci, Up + xi * co_p * Ci,
                                        0.0f, M + xi * xs_m, Co);
                elbo__wino_output_cl(M, m, Co, H, W, xs_m, xt);
                for (int64_t b = 0; b < m; b++)
                    elbo__from_channel_last(xt + b * HW * Co, Co, HW, bias,
                                            e ? e + (b0 + b) * Co : NULL,
                                            r ? r + (b0 + b) * Co * HW : NULL, acc,
                                            out + (b0 + b) * Co * HW);
#endif
                continue;
            }
            elbo__wino_input(in + b0 * Ci * H * W, m, Ci, H, W, V, n, xs_v, panels);
            for (int64_t xi = 0; xi < ELBO_WINO_XI; xi++)
#ifdef __AVX512F__
                elbo__sgemm_packed_pab(Up + xi * Co * Ci, Co, n, Ci, 1.0f, V + xi * xs_v, 0.0f,
                                       M + xi * xs_m, n);
#else
                elbo__sgemm_serial(0, 0, Co, n, Ci, 1.0f, U + xi * Co * Ci, Ci, V + xi * xs_v, n,
                                   0.0f, M + xi * xs_m, n);
#endif
            elbo__wino_output(M, m, Co, H, W, n, xs_m, bias, acc, out + b0 * Co * H * W);
            add_terms_serial(out + b0 * Co * HW, e ? e + b0 * Co : NULL,
                             r ? r + b0 * Co * HW : NULL, m * Co, HW);
        });
    return 1;
}

/* gw (OC, C, 3, 3) += dW of a 3x3 stride-1 pad-1 convolution by Winograd F(2x2, 3x3) (the
 * adjoint of a 2x2-tile wino_conv; winograd2.c): per chunk of nb images (n = nb th tw tiles) V (16, C, n) = B^T d B of
 * x and dM (16, OC, n) = A dY A^T of dY's 2x2 tiles, then dU_xi (OC, C) += dM_xi @ V_xi^T
 * (16 serial GEMMs), summed over the chunks of each fixed group in its own partial; finally
 * gw += G^T dU G with the group partials added in group order. 0 when out of memory. */
static int wino_dw(elbo_ctx *ctx, const elbo_conv_geom *g, int64_t B, const float *x,
                   const float *dy, float *gw) {
    int64_t C = g->C, OC = g->OC, H = g->H, W = g->W, HW = H * W;
    int64_t P4 = ((H + 1) / 2) * ((W + 1) / 2), img = (C > OC ? C : OC) * H * W;
#ifdef __AVX512F__
    /* channel-last transforms (winograd2.c) where the channels fill whole vectors: V and dM
     * tile-major, each image first transposed to (HW, C) in the task's scratch */
    int cl = elbo__conv_wino_dw_cl && C % 16 == 0 && OC % 16 == 0;
#else
    const int cl = 0;
#endif
    size_t per_image = (size_t)(16 * (C + OC) * P4 + (cl ? (C + OC) * HW : 0)) * sizeof(float);
    int64_t T = wino_chunks(B, P4, per_image, elbo__conv_wino_dw_bytes, img);
    if (T == 0) return 1;
    int64_t G = T < MAX_GROUPS ? T : MAX_GROUPS;
    int64_t nb_max = (B + T - 1) / T, cols = nb_max * P4;
    int64_t xs_v = (C * cols + 1023) / 1024 * 1024 + 16,
            xs_m = (OC * cols + 1023) / 1024 * 1024 + 16;
    size_t usize = (size_t)(16 * OC * C), per = (size_t)(16 * (xs_v + xs_m));
    if (cl) per += (size_t)(nb_max * HW * (C + OC));
    int nthr = G > 1 ? omp_get_max_threads() : 1;
    float *buf = elbo_ctx_scratch(ctx, ((size_t)G * usize + (size_t)nthr * per) * sizeof(float));
    if (!buf) return 0;
    float *task_buf = buf + (size_t)G * usize;
    elbo__blas_single_thread();
    ELBO_PARALLEL_FOR_DYNAMIC(
        G > 1, for (int64_t grp = 0; grp < G; grp++) {
            float *V = task_buf + (size_t)omp_get_thread_num() * per, *dM = V + 16 * xs_v;
            float *dU = buf + (size_t)grp * usize;
            int64_t t0 = grp * T / G, t1 = (grp + 1) * T / G;
            for (int64_t t = t0; t < t1; t++) {
                int64_t b0 = t * B / T, m = (t + 1) * B / T - b0, n = m * P4;
                float beta = t == t0 ? 0.0f : 1.0f;
                if (cl) {
#ifdef __AVX512F__
                    float *xt = dM + 16 * xs_m, *dyt = xt + nb_max * HW * C;
                    for (int64_t b = 0; b < m; b++) {
                        elbo__to_channel_last(x + (b0 + b) * C * HW, C, HW, xt + b * HW * C);
                        elbo__to_channel_last(dy + (b0 + b) * OC * HW, OC, HW, dyt + b * HW * OC);
                    }
                    elbo__wino2_input_cl(xt, m, C, H, W, V, xs_v);
                    elbo__wino2_grad_output_cl(dyt, m, OC, H, W, dM, xs_m);
                    /* dU_xi (OC, C) = dM_xi^T (OC, n) V_xi (n, C), both read in place: the
                     * tiles summed in order, as below */
                    for (int64_t xi = 0; xi < 16; xi++)
                        elbo__sgemm_tn_inplace(OC, C, n, 1.0f, dM + xi * xs_m, OC, V + xi * xs_v,
                                               C, beta, dU + xi * OC * C, C);
#endif
                } else {
                    elbo__wino2_input(x + b0 * C * H * W, m, C, H, W, V, n, xs_v);
                    elbo__wino2_grad_output(dy + b0 * OC * H * W, m, OC, H, W, dM, n, xs_m);
                    for (int64_t xi = 0; xi < 16; xi++)
                        elbo__sgemm_serial(0, 1, OC, C, n, 1.0f, dM + xi * xs_m, n, V + xi * xs_v,
                                           n, beta, dU + xi * OC * C, C);
                }
            }
        });
    /* dU = dU_0 + dU_1 + .. + dU_{G-1}, added in group order into dU_0 (contiguous, one
     * stream per group), then gw += G^T dU G */
    for (int64_t grp = 1; grp < G; grp++) elbo__acc(buf, buf + (size_t)grp * usize, (int64_t)usize);
    ELBO_PARALLEL_FOR(OC * C * 16 > ELBO_PAR_MIN,
                      for (int64_t oc = 0; oc < OC; oc++)
                          elbo__wino2_kernel_grad(buf + oc * C, OC * C, C, gw + oc * C * 9););
    return 1;
}

/* y (B, OC, OH, OW) = conv(x) + bias by the direct kernel: one task per image, which pads
 * its C planes into the thread's scratch. 0 when out of scratch memory. */
static int direct_forward(elbo_ctx *ctx, const elbo_conv_geom *g, int64_t B, const float *x,
                          const float *w, const float *bias, float *y) {
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw, per = g->C * Hp * Wp + g->OH * Wp;
    int nthr = B > 1 ? omp_get_max_threads() : 1;
    float *buf = elbo_ctx_scratch(ctx, (size_t)(nthr * per) * sizeof(float));
    if (!buf) return 0;
    ELBO_PARALLEL_FOR_DYNAMIC(
        B > 1, for (int64_t b = 0; b < B; b++) {
            float *xp = buf + (size_t)omp_get_thread_num() * per, *wide = xp + g->C * Hp * Wp;
            elbo__pad_planes(x + b * g->C * g->H * g->W, g->C, g->H, g->W, g->ph, g->pw, Hp, Wp,
                             xp);
            elbo__conv_direct(xp, g->C, Hp, Wp, w, g->OC, g->KH, g->KW, bias, 0, g->OH, g->OW,
                              y + b * g->OC * g->OH * g->OW, wide);
        });
    return 1;
}

/* The backward of direct_forward. dX (if gx; added with acc_x, else stored): per image,
 * gx_b = conv(dY_b padded by KH-1-ph, KW-1-pw) with the transposed, flipped kernel W'
 * (C, OC, KH, KW). dW (if gw, added): per (c, block of output channels), the lanes of
 * elbo__conv_direct_dw summed over the images in order, then over the 16 lanes in order.
 * Tasks never share an output: the bits depend on the shapes alone. 0 when out of memory. */
static int direct_backward(elbo_ctx *ctx, const elbo_conv_geom *g, int64_t B, const float *x,
                           const float *w, const float *dy, float *gx, int acc_x, float *gw) {
    int64_t C = g->C, OC = g->OC, KK = g->KH * g->KW, OH = g->OH, OW = g->OW, P = OH * OW;
    int64_t Hp = g->H + 2 * g->ph, Wp = g->W + 2 * g->pw;
    int64_t Hq = OH + 2 * (g->KH - 1 - g->ph), Wq = OW + 2 * (g->KW - 1 - g->pw);
    int64_t N16 = (OH * Wp + 15) / 16 * 16; /* the wide dY, rounded up to whole lanes */
    int64_t nob = C >= 8 ? 1 : (8 + C - 1) / C; /* output-channel blocks: >= 8 dW tasks */
    if (nob > OC) nob = OC;
    int64_t ob_max = (OC + nob - 1) / nob;
    /* dW: the padded plane (and zeros past it, read by the last lanes), the wide dY of the
     * block's channels, the lanes; dX: the padded dY planes and the wide dX */
    size_t xp_size = (size_t)(Hp * Wp + Wp + 16);
    size_t per_dw = gw ? xp_size + (size_t)(ob_max * (N16 + KK * 16)) : 0,
           per_dx = gx ? (size_t)(OC * Hq * Wq + g->H * Wq) : 0;
    size_t per = per_dx > per_dw ? per_dx : per_dw, wt_size = gx ? (size_t)(C * OC * KK) : 0;
    int nthr = omp_get_max_threads();
    float *buf = elbo_ctx_scratch(ctx, (wt_size + (size_t)nthr * per) * sizeof(float));
    if (!buf) return 0;
    float *wt = buf, *task_buf = buf + wt_size;
    if (gw)
        ELBO_PARALLEL_FOR_DYNAMIC(
            C * nob > 1, for (int64_t t = 0; t < C * nob; t++) {
                int64_t c = t / nob, o0 = t % nob * OC / nob, o1 = (t % nob + 1) * OC / nob;
                float *xp = task_buf + (size_t)omp_get_thread_num() * per, *dyw = xp + xp_size,
                      *lanes = dyw + (o1 - o0) * N16;
                memset(xp + Hp * Wp, 0, (xp_size - (size_t)(Hp * Wp)) * sizeof(float));
                memset(lanes, 0, (size_t)((o1 - o0) * KK * 16) * sizeof(float));
                for (int64_t b = 0; b < B; b++) {
                    elbo__pad_planes(x + (b * C + c) * g->H * g->W, 1, g->H, g->W, g->ph, g->pw,
                                     Hp, Wp, xp);
                    for (int64_t o = o0; o < o1; o++) {
                        float *d = dyw + (o - o0) * N16;
                        elbo__pad_planes(dy + (b * OC + o) * P, 1, OH, OW, 0, 0, OH, Wp, d);
                        memset(d + OH * Wp, 0, (size_t)(N16 - OH * Wp) * sizeof(float));
                        elbo__conv_direct_dw(xp, Wp, d, N16, g->KH, g->KW,
                                             lanes + (o - o0) * KK * 16);
                    }
                }
                for (int64_t o = o0; o < o1; o++)
                    for (int64_t k = 0; k < KK; k++) {
                        const float *L = lanes + ((o - o0) * KK + k) * 16;
                        float s = 0.0f;
                        for (int l = 0; l < 16; l++) s += L[l];
                        gw[(o * C + c) * KK + k] += s;
                    }
            });
    if (gx) {
        for (int64_t c = 0; c < C; c++) /* W'[c, o, k] = W[o, c, KK - 1 - k] */
            for (int64_t o = 0; o < OC; o++)
                for (int64_t k = 0; k < KK; k++)
                    wt[(c * OC + o) * KK + k] = w[(o * C + c) * KK + (KK - 1 - k)];
        ELBO_PARALLEL_FOR_DYNAMIC(
            B > 1, for (int64_t b = 0; b < B; b++) {
                float *dp = task_buf + (size_t)omp_get_thread_num() * per, *wide = dp + OC * Hq * Wq;
                elbo__pad_planes(dy + b * OC * P, OC, OH, OW, g->KH - 1 - g->ph, g->KW - 1 - g->pw,
                                 Hq, Wq, dp);
                elbo__conv_direct(dp, OC, Hq, Wq, wt, C, g->KH, g->KW, NULL, acc_x, g->H, g->W,
                                  gx + b * C * g->H * g->W, wide);
            });
    }
    return 1;
}

/* dW (if gw) and dX (if gx; stored without acc_x, else added) by the im2col or shifted-GEMM
 * paths. 0 when out of scratch memory. */
static int conv2d_backward_rest(elbo_ctx *ctx, const conv_plan *pp, elbo_tensor *x, elbo_tensor *w,
                                const float *dy, float *gx, int acc_x, float *gw) {
    conv_plan p = *pp;
    elbo_conv_geom g = p.g;
    /* Groups of chunks, each with its own transposed dW partial (CKK, OC); a single chunk
     * is one group whose kernels and sgemm use all threads. */
    int64_t G = p.T < MAX_GROUPS ? p.T : MAX_GROUPS, wsize = g.OC * p.CKK;
    int nthr = p.T > 1 ? omp_get_max_threads() : 1;
    size_t part = gw ? (size_t)(G * wsize) : 0;
    size_t wt_size = gx && (p.tdx || p.shift) ? (size_t)wsize : 0;
    float *buf = elbo_ctx_scratch(ctx, (part + wt_size + (size_t)nthr * p.per) * sizeof(float));
    if (!buf) return 0;
    float *partial = buf, *wt = buf + part, *task_buf = wt + wt_size;
    if (wt_size && p.shift)
        offset_kernels(&p, w->data, 1, wt);
    else if (wt_size)
        flip_kernel(&p, w->data, wt);
    if (p.T == 1) {
        if (p.shift)
            shift_backward(&p, x->data, wt, dy, gw ? partial : NULL, 0.0f, gx, acc_x, 0, task_buf,
                           elbo__sgemm);
        else
            chunk_backward(&p, x->data, w->data, wt, dy, gw ? partial : NULL, 0.0f, gx, acc_x, 0,
                           p.B, task_buf, 0);
    } else {
        elbo__blas_single_thread();
        ELBO_PARALLEL_FOR_DYNAMIC(
            1, for (int64_t grp = 0; grp < G; grp++) {
                float *tb = task_buf + (size_t)omp_get_thread_num() * p.per;
                int64_t t0 = grp * p.T / G, t1 = (grp + 1) * p.T / G;
                for (int64_t t = t0; t < t1; t++) {
                    int64_t b0 = chunk_start(&p, t), m = chunk_start(&p, t + 1) - b0;
                    float *dw_t = gw ? partial + grp * wsize : NULL, beta_w = t == t0 ? 0.0f : 1.0f;
                    if (p.shift)
                        shift_backward(&p, x->data, wt, dy, dw_t, beta_w, gx, acc_x, b0, tb,
                                       elbo__sgemm_serial);
                    else
                        chunk_backward(&p, x->data, w->data, wt, dy, dw_t, beta_w, gx, acc_x, b0, m,
                                       tb, 1);
                }
            });
    }
    if (gw) { /* gw[oc, c, k] += sum over groups, in order, of the partials: (C KK, OC) for
               * im2col, (KK, C, OC) for per-offset products */
        int64_t OC = g.OC, C = g.C, KK = g.KH * g.KW;
        ELBO_PARALLEL_FOR(
            G * wsize > ELBO_PAR_MIN,
            for (int64_t oc = 0; oc < OC; oc++) for (int64_t c = 0; c < C; c++) for (int64_t k = 0;
                                                                                     k < KK; k++) {
                int64_t at = p.shift_dw ? (k * C + c) * OC + oc : (c * KK + k) * OC + oc;
                float s = gw[(oc * C + c) * KK + k];
                for (int64_t grp = 0; grp < G; grp++) s += partial[grp * wsize + at];
                gw[(oc * C + c) * KK + k] = s;
            });
    }
    return 1;
}

/* dX and dW of conv2d and conv2d_add (the bias and e gradients are conv2d_backward's). */
static void conv2d_backward_xw(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *w = n->in[1], *y = n->out;
    elbo_conv_geom g = conv_geom(x, w, n->iarg[0], n->iarg[1], n->iarg[2], n->iarg[3]);
    conv_plan p;
    plan_conv(&p, &g, x->shape[0]);
    int fresh_x; /* x's gradient not yet initialised: dX is stored, not added */
    float *gx = elbo__grad_fresh(ctx, x, &fresh_x), *gw = elbo__grad(ctx, w);
    const float *dy = y->grad;
    if ((!gx && !gw) || p.T == 0) return;
    if (direct_applies(&g)) {
        if (!direct_backward(ctx, &g, p.B, x->data, w->data, dy, gx, !fresh_x, gw) && fresh_x &&
            gx)
            elbo__zero(gx, x->numel); /* out of memory: leave a defined (zero) gradient */
        return;
    }
    float *gx_wino = NULL, *gw_wino = NULL; /* by Winograd after the rest (own scratch) */
    if (gx && wino_applies(&g, elbo__conv_wino_dx_min_c)) {
        gx_wino = gx;
        gx = NULL;
    }
    if (gw && g.W <= 1024 && wino_applies(&g, elbo__conv_wino_dw_min_c)) {
        gw_wino = gw;
        gw = NULL;
    }
    int ok = 1;
    if (gw || gx) ok = conv2d_backward_rest(ctx, &p, x, w, dy, gx, !fresh_x, gw);
    if (gw_wino && ok) ok = wino_dw(ctx, &g, p.B, x->data, dy, gw_wino);
    if (gx_wino && ok)
        ok = wino_conv(ctx, &g, p.B, dy, w->data, 1, NULL, NULL, NULL, !fresh_x, gx_wino);
    if (!ok && fresh_x && (gx || gx_wino)) /* out of memory: leave a defined (zero) gradient */
        elbo__zero(gx ? gx : gx_wino, x->numel);
}

/* conv2d's backward, and conv2d_add's (inputs x, w, b, e, r): db (OC) and de (B, OC) from one
 * pass of plane sums over dY, dX and dW, then dr = dY, passed on or added, last (r may be x,
 * whose dX has to be added to its gradient first). */
static void conv2d_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *y = n->out, *e = n->n_in > 3 ? n->in[3] : NULL, *r = n->n_in > 4 ? n->in[4] : NULL;
    float *gb = elbo__grad(ctx, n->in[2]), *ge = elbo__grad(ctx, e);
    if (gb || ge)
        elbo__channel_sum_acc(gb, ge, y->grad, y->shape[0], y->shape[1],
                              y->shape[2] * y->shape[3]);
    conv2d_backward_xw(ctx, n);
    if (r && r->requires_grad && !elbo__grad_pass_on(r, y)) {
        float *gr = elbo__grad(ctx, r);
        if (gr) elbo__acc(gr, y->grad, r->numel);
    }
}

/* y = conv(x) + bias by the im2col or shifted-GEMM paths; 0 when out of scratch memory. */
static int conv_forward_rest(elbo_ctx *ctx, const conv_plan *pp, elbo_tensor *x, elbo_tensor *w,
                             const float *bias, elbo_tensor *y) {
    conv_plan p = *pp;
    elbo_conv_geom g = p.g;
    int nthr = p.T > 1 ? omp_get_max_threads() : 1;
    size_t wk_size = p.shift ? (size_t)(g.OC * p.CKK) : 0;
    float *buf = NULL;
    if (p.per || wk_size) {
        buf = elbo_ctx_scratch(ctx, (wk_size + (size_t)nthr * p.per) * sizeof(float));
        if (!buf) return 0;
    }
    float *wk = buf, *task_buf = buf ? buf + wk_size : NULL;
    if (p.shift) offset_kernels(&p, w->data, 0, wk);
    if (p.T == 1) {
        if (p.shift)
            shift_forward(&p, x->data, wk, bias, y->data, 0, task_buf, elbo__sgemm);
        else
            chunk_forward(&p, x->data, w->data, bias, y->data, 0, p.B, task_buf, 0);
    } else if (p.T > 1) {
        elbo__blas_single_thread();
        /* dynamic: a task's result does not depend on which thread runs it */
        ELBO_PARALLEL_FOR_DYNAMIC(
            1, for (int64_t t = 0; t < p.T; t++) {
                float *tb = task_buf ? task_buf + (size_t)omp_get_thread_num() * p.per : NULL;
                int64_t b0 = chunk_start(&p, t), m = chunk_start(&p, t + 1) - b0;
                if (p.shift)
                    shift_forward(&p, x->data, wk, bias, y->data, b0, tb, elbo__sgemm_serial);
                else
                    chunk_forward(&p, x->data, w->data, bias, y->data, b0, m, tb, 1);
            });
    }
    return 1;
}

static elbo_tensor *conv2d_core(elbo_ctx *ctx, const char *op, elbo_tensor *x, elbo_tensor *w,
                                elbo_tensor *b, elbo_tensor *e, elbo_tensor *r, int stride_h,
                                int stride_w, int pad_h, int pad_w) {
    if (!x || !w) return NULL;
    if (x->ndim != 4 || w->ndim != 4) {
        elbo__shape_error("conv2d", x, w, "x must be (B, C, H, W) and w (OC, C, KH, KW)");
        return NULL;
    }
    if (w->shape[1] != x->shape[1]) {
        elbo__shape_error("conv2d", x, w, "input channels of x (axis 1) and w (axis 1) differ");
        return NULL;
    }
    if (b && (b->ndim != 1 || b->shape[0] != w->shape[0])) {
        elbo__shape_error("conv2d", w, b, "bias must be (OC) for w (OC, C, KH, KW)");
        return NULL;
    }
    if (stride_h < 1 || stride_w < 1 || pad_h < 0 || pad_w < 0) {
        elbo_error(ELBO_ERR_ARG, "conv2d: stride (%d, %d) must be >= 1 and padding (%d, %d) >= 0",
                   stride_h, stride_w, pad_h, pad_w);
        return NULL;
    }
    if (x->shape[2] + 2 * pad_h < w->shape[2] || x->shape[3] + 2 * pad_w < w->shape[3]) {
        elbo__shape_error("conv2d", x, w, "the kernel is larger than the padded input");
        return NULL;
    }
    elbo_conv_geom g = conv_geom(x, w, stride_h, stride_w, pad_h, pad_w);
    conv_plan p;
    plan_conv(&p, &g, x->shape[0]);
    if (e && (e->numel != p.B * g.OC || e->shape[0] != p.B)) {
        elbo__shape_error(op, x, e, "the per-image term e must be (B, OC) for x (B, C, H, W)");
        return NULL;
    }
    elbo_tensor *y = elbo_tensor_new4(ctx, p.B, g.OC, g.OH, g.OW);
    if (!y) return NULL;
    if (r && !elbo_same_shape(r, y)) {
        elbo__shape_error(op, y, r, "the residual r must have the output's shape");
        return NULL;
    }
    const float *bias = b ? b->data : NULL, *ed = e ? e->data : NULL, *rd = r ? r->data : NULL;
    if (direct_applies(&g)) {
        if (!direct_forward(ctx, &g, p.B, x->data, w->data, bias, y->data)) return NULL;
        add_terms(y->data, ed, rd, p.B * g.OC, p.P);
    } else if (wino_applies(&g, elbo__conv_wino_min_c)) {
        if (!wino_conv(ctx, &g, p.B, x->data, w->data, 0, bias, ed, rd, 0, y->data)) return NULL;
    } else if (!conv_forward_rest(ctx, &p, x, w, bias, y)) {
        return NULL;
    } else {
        add_terms(y->data, ed, rd, p.B * g.OC, p.P);
    }
    int ok;
    elbo_node *n = e || r ? elbo__record(ctx, op, y, conv2d_backward, &ok, 5, x, w, b, e, r)
                          : elbo__record(ctx, op, y, conv2d_backward, &ok, 3, x, w, b);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = g.sh;
        n->iarg[1] = g.sw;
        n->iarg[2] = g.ph;
        n->iarg[3] = g.pw;
    }
    return y;
}

elbo_tensor *elbo_conv2d_ex(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                            int stride_h, int stride_w, int pad_h, int pad_w) {
    return conv2d_core(ctx, "conv2d", x, w, b, NULL, NULL, stride_h, stride_w, pad_h, pad_w);
}

elbo_tensor *elbo_conv2d(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b, int stride,
                         int pad) {
    return elbo_conv2d_ex(ctx, x, w, b, stride, stride, pad, pad);
}

elbo_tensor *elbo_conv2d_add(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                             elbo_tensor *e, elbo_tensor *r, int stride, int pad) {
    return conv2d_core(ctx, e || r ? "conv2d_add" : "conv2d", x, w, b, e, r, stride, stride, pad,
                       pad);
}

/* ---- nearest upsampling by 2: (B,C,H,W) -> (B,C,2H,2W) --------------------------------- */
static void upsample_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    int fresh;
    float *gx = elbo__grad_fresh(ctx, x, &fresh);
    if (!gx) return;
    elbo__upsample2x_backward(n->out->grad, x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                              !fresh, gx);
}

elbo_tensor *elbo_upsample_nearest2x(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE, "upsample_nearest2x: x has shape %s, expected (B, C, H, W)",
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    elbo_tensor *y =
        elbo_tensor_new4(ctx, x->shape[0], x->shape[1], 2 * x->shape[2], 2 * x->shape[3]);
    if (!y) return NULL;
    elbo__upsample2x(x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], y->data);
    int ok;
    elbo__record(ctx, "upsample_nearest2x", y, upsample_backward, &ok, 1, x);
    return ok ? y : NULL;
}

/* ---- average pooling, k x k window, stride s, no padding ------------------------------ */
static void avg_pool_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    int fresh;
    float *gx = elbo__grad_fresh(ctx, x, &fresh);
    if (!gx) return;
    elbo__avg_pool2d_backward(n->out->grad, x->shape[0] * x->shape[1], x->shape[2], x->shape[3],
                              n->iarg[0], n->iarg[1], !fresh, gx);
}

elbo_tensor *elbo_avg_pool2d(elbo_ctx *ctx, elbo_tensor *x, int k, int stride) {
    if (!x) return NULL;
    char s[96];
    if (x->ndim != 4) {
        elbo_error(ELBO_ERR_SHAPE, "avg_pool2d: x has shape %s, expected (B, C, H, W)",
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    if (k < 1 || stride < 1) {
        elbo_error(ELBO_ERR_ARG, "avg_pool2d: window %d and stride %d must be >= 1", k, stride);
        return NULL;
    }
    if (x->shape[2] < k || x->shape[3] < k) {
        elbo_error(ELBO_ERR_SHAPE, "avg_pool2d: window %d x %d larger than x of shape %s", k, k,
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t OH = (x->shape[2] - k) / stride + 1, OW = (x->shape[3] - k) / stride + 1;
    elbo_tensor *y = elbo_tensor_new4(ctx, x->shape[0], x->shape[1], OH, OW);
    if (!y) return NULL;
    elbo__avg_pool2d(x->data, x->shape[0] * x->shape[1], x->shape[2], x->shape[3], k, stride,
                     y->data);
    int ok;
    elbo_node *n = elbo__record(ctx, "avg_pool2d", y, avg_pool_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = k;
        n->iarg[1] = stride;
    }
    return y;
}
