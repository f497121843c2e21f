/* Convolution and resampling kernels: im2col / col2im (Chellapilla et al. 2006, "High
 * performance convolutional neural networks for document processing"), layout changes between
 * channel-major GEMM results and NCHW, bias sums, nearest upsampling and average pooling.
 * Parallel loops run over independent output rows or planes only. */
#include "internal.h"
#include "kernels/cpu/kernels.h"

#include <math.h>
#include <omp.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

/* Output columns o in [*lo, *hi) whose input column o*s - p + k lies in [0, n). */
static void valid_range(int64_t n, int64_t out, int64_t s, int64_t p, int64_t k, int64_t *lo,
                        int64_t *hi) {
    int64_t a = p - k; /* o*s >= a */
    int64_t l = a > 0 ? (a + s - 1) / s : 0;
    int64_t b = n - 1 + p - k; /* o*s <= b */
    int64_t h = b < 0 ? 0 : b / s + 1;
    if (h > out) h = out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Runs the body (the macro's last argument) for t in [0, n): over the OpenMP threads when
 * `work` is large, in order when small or when already inside a parallel region (a conv
 * chunk task runs its kernels serially on its own thread). Each t writes its own outputs,
 * so the result is the same. */
#define FOR_T(n, work, ...)                                                                        \
    do {                                                                                           \
        if ((work) > ELBO_PAR_MIN && elbo__parallel_ok()) {                                        \
            _Pragma("omp parallel for schedule(static)") for (int64_t t = 0; t < (n); t++)         \
                __VA_ARGS__                                                                        \
        } else {                                                                                   \
            for (int64_t t = 0; t < (n); t++) __VA_ARGS__                                          \
        }                                                                                          \
    } while (0)

/* The valid output ranges of every kernel offset: rows [rlo[kh], rhi[kh]) read input row
 * oh*sh - ph + kh inside the image, columns [lo[kw], hi[kw]) likewise. Computed once per
 * call for kernels up to MAX_K wide; larger kernels compute them per offset. */
#define MAX_K 32
typedef struct {
    int64_t rlo[MAX_K], rhi[MAX_K], lo[MAX_K], hi[MAX_K];
    int cached;
} conv_ranges;

static void ranges_init(const elbo_conv_geom *g, conv_ranges *r) {
    r->cached = g->KH <= MAX_K && g->KW <= MAX_K;
    if (!r->cached) return;
    for (int64_t k = 0; k < g->KH; k++)
        valid_range(g->H, g->OH, g->sh, g->ph, k, &r->rlo[k], &r->rhi[k]);
    for (int64_t k = 0; k < g->KW; k++)
        valid_range(g->W, g->OW, g->sw, g->pw, k, &r->lo[k], &r->hi[k]);
}

static void ranges_get(const elbo_conv_geom *g, const conv_ranges *r, int64_t kh, int64_t kw,
                       int64_t *rlo, int64_t *rhi, int64_t *lo, int64_t *hi) {
    if (r->cached) {
        *rlo = r->rlo[kh];
        *rhi = r->rhi[kh];
        *lo = r->lo[kw];
        *hi = r->hi[kw];
    } else {
        valid_range(g->H, g->OH, g->sh, g->ph, kh, rlo, rhi);
        valid_range(g->W, g->OW, g->sw, g->pw, kw, lo, hi);
    }
}

/* Short rows (7 to 28 floats) are copied and zeroed by inline loops: GCC would otherwise
 * turn each loop into a memset / memcpy call, which costs more than the copy. */
#if defined(__GNUC__) && !defined(__clang__)
#define INLINE_LOOPS __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define INLINE_LOOPS
#endif

#ifdef __AVX512F__
/* row[k] = src[2 k] for k < n: the even lanes of 32 floats, 16 outputs per permute (reads
 * src[0 .. 2 n - 2] only). */
static void gather_even(const float *restrict src, int64_t n, float *restrict row) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    for (int64_t k = 0; k < n; k += 16) {
        int64_t e = 2 * (n - k < 16 ? n - k : 16) - 1; /* floats read */
        __m512 lo = _mm512_maskz_loadu_ps(elbo__lanes16(e), src + 2 * k),
               hi = _mm512_maskz_loadu_ps(elbo__lanes16(e - 16), src + 2 * k + 16);
        _mm512_mask_storeu_ps(row + k, elbo__lanes16(n - k), _mm512_permutex2var_ps(lo, even, hi));
    }
}
/* dst[2 k] += s[k] for k < n (dst's odd elements unchanged; reads and writes dst[0 .. 2 n - 2]
 * only): one addition each, as the scalar loop. */
static void scatter_add_even(const float *restrict s, int64_t n, float *restrict dst) {
    const __m512i lo_idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7),
                  hi_idx = _mm512_setr_epi32(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14,
                                             15, 15);
    for (int64_t k = 0; k < n; k += 16) {
        int64_t e = 2 * (n - k < 16 ? n - k : 16) - 1;
        __mmask16 m0 = elbo__lanes16(e), m1 = elbo__lanes16(e - 16);
        __m512 v = _mm512_maskz_loadu_ps(elbo__lanes16(n - k), s + k);
        __m512 d0 = _mm512_maskz_loadu_ps(m0, dst + 2 * k), d1 = _mm512_maskz_loadu_ps(m1, dst + 2 * k + 16);
        d0 = _mm512_mask_add_ps(d0, 0x5555, d0, _mm512_permutexvar_ps(lo_idx, v));
        d1 = _mm512_mask_add_ps(d1, 0x5555, d1, _mm512_permutexvar_ps(hi_idx, v));
        _mm512_mask_storeu_ps(dst + 2 * k, m0, d0);
        _mm512_mask_storeu_ps(dst + 2 * k + 16, m1, d1);
    }
}
#endif

/* One (c, kh, kw) row of cols for one image: dst (OH,OW) from the plane xp (H,W). */
INLINE_LOOPS static void im2col_plane(const elbo_conv_geom *g, const conv_ranges *r,
                                      const float *restrict xp, int64_t kh, int64_t kw,
                                      float *restrict dst) {
    int64_t OH = g->OH, OW = g->OW, H = g->H, W = g->W, sw = g->sw, lo, hi, rlo, rhi;
    ranges_get(g, r, kh, kw, &rlo, &rhi, &lo, &hi);
    for (int64_t i = 0; i < rlo * OW; i++) dst[i] = 0.0f;
    for (int64_t i = rhi * OW; i < OH * OW; i++) dst[i] = 0.0f;
    if (g->sh == 1 && sw == 1 && OW == W) {
        /* "Same" stride-1 convolution: rows rlo..rhi are one shifted copy of the plane,
         * dst[i] = xp[i + shift]; the columns that wrapped around are zeroed after. */
        int64_t shift = (kh - g->ph) * W + (kw - g->pw);
        int64_t a = rlo * OW, e = rhi * OW;
        if (a + shift < 0) a = -shift;
        if (e + shift > H * W) e = H * W - shift;
        if (e - a >= 256)
            memcpy(dst + a, xp + a + shift, (size_t)(e - a) * sizeof(float));
        else
            for (int64_t i = a; i < e; i++) dst[i] = xp[i + shift];
        for (int64_t oh = rlo; oh < rhi; oh++) {
            float *row = dst + oh * OW;
            for (int64_t ow = 0; ow < lo; ow++) row[ow] = 0.0f;
            for (int64_t ow = hi; ow < OW; ow++) row[ow] = 0.0f;
        }
        return;
    }
    for (int64_t oh = rlo; oh < rhi; oh++) {
        float *row = dst + oh * OW;
        const float *src = xp + (oh * g->sh - g->ph + kh) * W - g->pw + kw;
        for (int64_t ow = 0; ow < lo; ow++) row[ow] = 0.0f;
        if (sw == 1)
            for (int64_t ow = lo; ow < hi; ow++) row[ow] = src[ow];
        else if (sw == 2)
#ifdef __AVX512F__
            gather_even(src + 2 * lo, hi - lo, row + lo);
#else
            for (int64_t ow = lo; ow < hi; ow++) row[ow] = src[2 * ow];
#endif
        else
            for (int64_t ow = lo; ow < hi; ow++) row[ow] = src[ow * sw];
        for (int64_t ow = hi; ow < OW; ow++) row[ow] = 0.0f;
    }
}

void elbo__im2col(const elbo_conv_geom *g, const float *x, int64_t nb, float *cols) {
    int64_t KK = g->KH * g->KW, P = g->OH * g->OW, n = nb * P, HW = g->H * g->W;
    conv_ranges r;
    ranges_init(g, &r);
    /* One task per (channel, image): its KH*KW rows of OH*OW contiguous outputs. */
    FOR_T(g->C * nb, g->C * KK * n, {
        int64_t c = t / nb, b = t % nb;
        const float *xp = x + (b * g->C + c) * HW;
        float *dst = cols + c * KK * n + b * P;
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++, dst += n) im2col_plane(g, &r, xp, kh, kw, dst);
    });
}

/* xp (H,W) += the (c, kh, kw) row src (OH,OW) of one image's dcols, in (oh, ow) order. */
static void col2im_plane(const elbo_conv_geom *g, const conv_ranges *r, const float *restrict src,
                         int64_t kh, int64_t kw, float *restrict xp) {
    int64_t lo, hi, rlo, rhi, OW = g->OW, sw = g->sw;
    ranges_get(g, r, kh, kw, &rlo, &rhi, &lo, &hi);
    for (int64_t oh = rlo; oh < rhi; oh++) {
        const float *s = src + oh * OW;
        float *d = xp + (oh * g->sh - g->ph + kh) * g->W - g->pw + kw;
        if (sw == 1)
            for (int64_t ow = lo; ow < hi; ow++) d[ow] += s[ow];
        else if (sw == 2)
#ifdef __AVX512F__
            scatter_add_even(s + lo, hi - lo, d + 2 * lo);
#else
            for (int64_t ow = lo; ow < hi; ow++) d[2 * ow] += s[ow];
#endif
        else
            for (int64_t ow = lo; ow < hi; ow++) d[ow * sw] += s[ow];
    }
}

void elbo__col2im_acc(const elbo_conv_geom *g, const float *dcols, int64_t nb, float *dx) {
    int64_t KK = g->KH * g->KW, P = g->OH * g->OW, n = nb * P, HW = g->H * g->W;
    conv_ranges r;
    ranges_init(g, &r);
    /* One task per (image, channel) plane of dx; within it a fixed (kh, kw, oh, ow) order. */
    FOR_T(nb * g->C, nb * g->C * KK * P, {
        int64_t b = t / g->C, c = t % g->C;
        for (int64_t kh = 0; kh < g->KH; kh++)
            for (int64_t kw = 0; kw < g->KW; kw++)
                col2im_plane(g, &r, dcols + ((c * g->KH + kh) * g->KW + kw) * n + b * P, kh, kw,
                             dx + t * HW);
    });
}

void elbo__cm_to_nchw(const float *t_, const float *bias, int64_t nb, int64_t N, int64_t P,
                      float *y) {
    FOR_T(nb * N, nb * N * P, {
        int64_t b = t / N, c = t % N;
        const float *src = t_ + c * nb * P + b * P;
        float *dst = y + t * P;
        if (bias) {
            float bc = bias[c];
            for (int64_t p = 0; p < P; p++) dst[p] = src[p] + bc;
        } else {
            memcpy(dst, src, (size_t)P * sizeof(float));
        }
    });
}

void elbo__cm_acc_nchw(const float *t_, int64_t nb, int64_t N, int64_t P, float *y) {
    FOR_T(nb * N, nb * N * P, {
        int64_t b = t / N, c = t % N;
        const float *src = t_ + c * nb * P + b * P;
        float *dst = y + t * P;
        for (int64_t p = 0; p < P; p++) dst[p] += src[p];
    });
}

void elbo__nchw_to_cm(const float *y, int64_t nb, int64_t N, int64_t P, float *t_) {
    FOR_T(nb * N, nb * N * P, {
        int64_t b = t / N, c = t % N;
        memcpy(t_ + c * nb * P + b * P, y + t * P, (size_t)P * sizeof(float));
    });
}

void elbo__pad_planes(const float *src, int64_t N, int64_t Hs, int64_t Ws, int64_t top,
                      int64_t left, int64_t Hd, int64_t Wd, float *dst) {
    FOR_T(N, N * Hd * Wd, {
        const float *sp = src + t * Hs * Ws;
        float *dp = dst + t * Hd * Wd;
        memset(dp, 0, (size_t)(top * Wd) * sizeof(float));
        for (int64_t i = 0; i < Hs; i++) {
            float *row = dp + (top + i) * Wd;
            for (int64_t j = 0; j < left; j++) row[j] = 0.0f;
            memcpy(row + left, sp + i * Ws, (size_t)Ws * sizeof(float));
            for (int64_t j = left + Ws; j < Wd; j++) row[j] = 0.0f;
        }
        memset(dp + (top + Hs) * Wd, 0, (size_t)((Hd - top - Hs) * Wd) * sizeof(float));
    });
}

void elbo__crop_planes(const float *src, int64_t N, int64_t H, int64_t W, int64_t ld_row,
                       int64_t ld_plane, const float *bias, int acc, float *dst) {
    FOR_T(N, N * H * W, {
        const float *sp = src + t * ld_plane;
        float *dp = dst + t * H * W;
        float bc = bias ? bias[t] : 0.0f;
        for (int64_t i = 0; i < H; i++) {
            const float *sr = sp + i * ld_row;
            float *dr = dp + i * W;
            if (acc)
                for (int64_t j = 0; j < W; j++) dr[j] += sr[j];
            else
                for (int64_t j = 0; j < W; j++) dr[j] = sr[j] + bc;
        }
    });
}

void elbo__set_channel_bias(float *y, const float *bias, int64_t B, int64_t N, int64_t P) {
    FOR_T(B * N, B * N * P, {
        float bc = bias ? bias[t % N] : 0.0f, *d = y + t * P;
        for (int64_t p = 0; p < P; p++) d[p] = bc;
    });
}

#ifdef __AVX512F__
/* ---- channel-last images, for the channel-last Winograd transforms ---- */
/* xt (HW, C) = x (C, HW)^T for one image; C a multiple of 16: 16 x 16 blocks through
 * elbo__transpose16, pixels past HW (the last block) masked. */
void elbo__to_channel_last(const float *x, int64_t C, int64_t HW, float *xt) {
    for (int64_t p0 = 0; p0 < HW; p0 += 16) {
        __mmask16 mp = elbo__lanes16(HW - p0);
        int np = HW - p0 < 16 ? (int)(HW - p0) : 16;
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
            __m512 r[16];
            for (int i = 0; i < 16; i++) r[i] = _mm512_maskz_loadu_ps(mp, x + (c0 + i) * HW + p0);
            elbo__transpose16(r);
            for (int p = 0; p < np; p++) _mm512_storeu_ps(xt + (p0 + p) * C + c0, r[p]);
        }
    }
}

/* y (C, HW) = ((xt (HW, C)^T + bias) + e) + r (bias[c], 0 without one; e[c] and r[c, p] only
 * where given), or with acc y += xt^T, for one image: the inverse of elbo__to_channel_last,
 * each addition the one of the unfused ops (the tile-lane output transform's bias, then
 * elbo_add's). */
void elbo__from_channel_last(const float *xt, int64_t C, int64_t HW, const float *bias,
                             const float *e, const float *r, int acc, float *y) {
    for (int64_t p0 = 0; p0 < HW; p0 += 16) {
        __mmask16 mp = elbo__lanes16(HW - p0);
        int np = HW - p0 < 16 ? (int)(HW - p0) : 16;
        for (int64_t c0 = 0; c0 < C; c0 += 16) {
            __m512 rr[16];
            for (int p = 0; p < 16; p++)
                rr[p] = p < np ? _mm512_loadu_ps(xt + (p0 + p) * C + c0) : _mm512_setzero_ps();
            elbo__transpose16(rr);
            for (int i = 0; i < 16; i++) {
                float *yc = y + (c0 + i) * HW + p0;
                __m512 v = acc ? _mm512_add_ps(_mm512_maskz_loadu_ps(mp, yc), rr[i])
                               : _mm512_add_ps(rr[i], _mm512_set1_ps(bias ? bias[c0 + i] : 0.0f));
                if (e) v = _mm512_add_ps(v, _mm512_set1_ps(e[c0 + i]));
                if (r) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mp, r + (c0 + i) * HW + p0));
                _mm512_mask_storeu_ps(yc, mp, v);
            }
        }
    }
}
#endif

/* Per channel: each plane is summed in 16 float lanes (element p in lane p % 16), the lanes
 * in double in order (the plane's sum: de[b, c] += it), the planes in order (db[c] += it), all
 * in a fixed order. */
void elbo__channel_sum_acc(float *db, float *de, const float *dy, int64_t B, int64_t N,
                           int64_t P) {
    enum { L = 16 };
    ELBO_PARALLEL_FOR(
        B * N * P > ELBO_PAR_MIN, for (int64_t c = 0; c < N; c++) {
            double s = 0;
            for (int64_t b = 0; b < B; b++) {
                const float *d = dy + (b * N + c) * P;
                float lane[L] = {0};
                int64_t p = 0;
                for (; p + L <= P; p += L)
                    for (int k = 0; k < L; k++) lane[k] += d[p + k];
                for (; p < P; p++) lane[p % L] += d[p];
                double ps = 0;
                for (int k = 0; k < L; k++) ps += lane[k];
                s += ps;
                if (de) de[b * N + c] += (float)ps;
            }
            if (db) db[c] += (float)s;
        });
}

void elbo__upsample2x(const float *x, int64_t BC, int64_t H, int64_t W, float *y) {
    int64_t W2 = 2 * W;
    /* One task per output row pair (plane, input row). */
    ELBO_PARALLEL_FOR(
        BC * H * W * 4 > ELBO_PAR_MIN, for (int64_t t = 0; t < BC * H; t++) {
            const float *src = x + t * W;
            float *d = y + t * 2 * W2;
            for (int64_t j = 0; j < W; j++) d[2 * j] = d[2 * j + 1] = src[j];
            memcpy(d + W2, d, (size_t)W2 * sizeof(float));
        });
}

void elbo__upsample2x_backward(const float *dy, int64_t BC, int64_t H, int64_t W, int acc,
                               float *dx) {
    int64_t W2 = 2 * W;
    ELBO_PARALLEL_FOR(
        BC * H * W * 4 > ELBO_PAR_MIN, for (int64_t t = 0; t < BC * H; t++) {
            const float *r0 = dy + t * 2 * W2, *r1 = r0 + W2;
            float *d = dx + t * W;
            for (int64_t j = 0; j < W; j++) {
                float s = (r0[2 * j] + r0[2 * j + 1]) + (r1[2 * j] + r1[2 * j + 1]);
                d[j] = acc ? d[j] + s : s;
            }
        });
}

void elbo__avg_pool2d(const float *x, int64_t BC, int64_t H, int64_t W, int64_t k, int64_t s,
                      float *y) {
    int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    float inv = 1.0f / (float)(k * k);
    ELBO_PARALLEL_FOR(
        BC * OH * OW * k * k > ELBO_PAR_MIN, for (int64_t t = 0; t < BC * OH; t++) {
            int64_t q = t / OH, i = t % OH;
            const float *xp = x + q * H * W + i * s * W;
            float *d = y + t * OW;
            for (int64_t j = 0; j < OW; j++) {
                float acc = 0;
                for (int64_t a = 0; a < k; a++)
                    for (int64_t b = 0; b < k; b++) acc += xp[a * W + j * s + b];
                d[j] = acc * inv;
            }
        });
}

void elbo__avg_pool2d_backward(const float *dy, int64_t BC, int64_t H, int64_t W, int64_t k,
                               int64_t s, int acc, float *dx) {
    int64_t OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    float inv = 1.0f / (float)(k * k);
    /* One task per plane: overlapping windows (s < k) add into the same inputs in order. */
    ELBO_PARALLEL_FOR(
        BC * OH * OW * k * k > ELBO_PAR_MIN, for (int64_t q = 0; q < BC; q++) {
            const float *g = dy + q * OH * OW;
            float *xp = dx + q * H * W;
            if (!acc) memset(xp, 0, (size_t)(H * W) * sizeof(float));
            for (int64_t i = 0; i < OH; i++)
                for (int64_t j = 0; j < OW; j++) {
                    float v = g[i * OW + j] * inv;
                    for (int64_t a = 0; a < k; a++)
                        for (int64_t b = 0; b < k; b++) xp[(i * s + a) * W + j * s + b] += v;
                }
        });
}

/* ---- direct convolution for thin layers (few channels on one side), stride 1 ----------- */

void elbo__conv_direct(const float *xpad, int64_t C, int64_t Hp, int64_t Wp, const float *w,
                       int64_t OC, int64_t KH, int64_t KW, const float *bias, int acc, int64_t OH,
                       int64_t OW, float *y, float *wide) {
    int64_t KK = KH * KW, N = (OH - 1) * Wp + OW;
    for (int64_t o = 0; o < OC; o++) {
        const float *wo = w + o * C * KK;
        int64_t p = 0;
#ifdef __AVX512F__
        /* 64 outputs at a time in 4 accumulators: loads and FMAs, no stores in the sum */
        for (; p < N; p += 64) {
            __mmask16 m[4];
            for (int v = 0; v < 4; v++) m[v] = elbo__lanes16(N - p - 16 * v);
            __m512 a[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                           _mm512_setzero_ps()};
            for (int64_t c = 0; c < C; c++)
                for (int64_t k = 0; k < KK; k++) {
                    __m512 wz = _mm512_set1_ps(wo[c * KK + k]);
                    const float *xs = xpad + c * Hp * Wp + (k / KW) * Wp + k % KW + p;
                    for (int v = 0; v < 4; v++)
                        a[v] = _mm512_fmadd_ps(wz, _mm512_maskz_loadu_ps(m[v], xs + 16 * v), a[v]);
                }
            for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(wide + p + 16 * v, m[v], a[v]);
        }
#else
        memset(wide, 0, (size_t)N * sizeof(float));
        for (int64_t c = 0; c < C; c++)
            for (int64_t k = 0; k < KK; k++) {
                float wv = wo[c * KK + k];
                const float *xs = xpad + c * Hp * Wp + (k / KW) * Wp + k % KW;
                for (p = 0; p < N; p++) wide[p] = fmaf(wv, xs[p], wide[p]);
            }
#endif
        float b0 = bias && !acc ? bias[o] : 0.0f;
        for (int64_t i = 0; i < OH; i++) {
            float *yr = y + (o * OH + i) * OW;
            const float *wr = wide + i * Wp;
            if (acc)
                for (int64_t j = 0; j < OW; j++) yr[j] += wr[j];
            else
                for (int64_t j = 0; j < OW; j++) yr[j] = wr[j] + b0;
        }
    }
}

void elbo__conv_direct_dw(const float *xpad, int64_t Wp, const float *dyw, int64_t N16,
                          int64_t KH, int64_t KW, float *lanes) {
    /* up to 9 offsets per pass over dY (independent accumulator chains) */
    for (int64_t k0 = 0; k0 < KH * KW; k0 += 9) {
        int nk = KH * KW - k0 < 9 ? (int)(KH * KW - k0) : 9;
        const float *xs[9];
        for (int q = 0; q < nk; q++) xs[q] = xpad + ((k0 + q) / KW) * Wp + (k0 + q) % KW;
#ifdef __AVX512F__
        __m512 a[9];
        for (int q = 0; q < nk; q++) a[q] = _mm512_loadu_ps(lanes + (k0 + q) * 16);
        for (int64_t p = 0; p < N16; p += 16) {
            __m512 d = _mm512_loadu_ps(dyw + p);
            for (int q = 0; q < nk; q++)
                a[q] = _mm512_fmadd_ps(d, _mm512_loadu_ps(xs[q] + p), a[q]);
        }
        for (int q = 0; q < nk; q++) _mm512_storeu_ps(lanes + (k0 + q) * 16, a[q]);
#else
        for (int64_t p = 0; p < N16; p += 16)
            for (int q = 0; q < nk; q++) {
                float *L = lanes + (k0 + q) * 16;
                for (int l = 0; l < 16; l++) L[l] = fmaf(dyw[p + l], xs[q][p + l], L[l]);
            }
#endif
    }
}
