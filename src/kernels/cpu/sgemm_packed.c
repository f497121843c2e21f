/* Packed AVX-512 SGEMM, the Goto/BLIS algorithm (Goto & van de Geijn, "Anatomy of
 * High-Performance Matrix Multiplication", TOMS 2008; Van Zee & van de Geijn, BLIS, 2015):
 *   C (m,n) = alpha op(A) (m,K) op(B) (K,n) + beta C,   row-major.
 * Loops, outermost first:
 *   pc over K in blocks of KC:    (a k-block: C is written with beta on the first, added after)
 *     ic over m in ceil(m / MC) equal blocks: pack op(A)[ic.., pc..] into micro-panels of at
 *                                 most MR rows (kc x mr each, k-major; the rows split evenly among
 *                                 ceil(mc / MR) panels), the block sized for the L2 cache
 *       jr over n in panels of NR = 32 columns: pack op(B)[pc.., jr..] as kc x 32 (zero past n),
 *                                 sized for the L1 cache
 *         ir over the A micro-panels: the micro-kernel, an MR x 32 block of C in 2 MR zmm
 *                                 accumulators, c[r, :] += a[k, r] b[k, :] for k in order.
 * Each element of C is one accumulator lane summed over k in order within a k-block and over
 * k-blocks in order: the bits depend on the shape alone (elbo__sgemm cuts tiles by shape).
 * Pack buffers are per thread (_Thread_local, zero-initialised storage): no heap allocation.
 * Measured against OpenBLAS 0.3.21 single-threaded (bench/gemm_micro.c): see gemm.c.
 * Entries for callers whose operands already lie right, the same micro-kernel with other
 * strides (the same bits): elbo__sgemm_rowa_pb (A row-major read in place, B prepacked by
 * elbo__sgemm_pack_b) and elbo__sgemm_tn_inplace (A^T B, both read in place), used by the
 * channel-last Winograd convolutions (ops/conv.c). */
#include "kernels/cpu/kernels.h"

#ifdef __AVX512F__
#include <immintrin.h>
#include <string.h>

/* MR x NR register block (24 accumulators + 2 B vectors of the 32 zmm registers); KC: a B
 * panel of KC x 32 floats (24 KiB) stays in the 48 KiB L1 (KC 128/192/256/384 measured
 * 139/143/135/126 GFLOP/s on 128x512x784); MC x KC of A (up to 384 KiB) in the L2 (1-2 MiB on
 * the machines here). The rows go in ceil(m / MC) equal blocks: vae-mlp's dW products (392 to
 * 784 rows) pack B two or three times instead of three to five, and 392 rows run as 196 + 196,
 * not 192 + 192 + 8 (1-5% on those shapes, one thread, old and new kernels in one process). */
enum { MR = 12, NR = ELBO_SGEMM_NR, KC = 192, MC = 384, KC_MAX = KC + KC / 3 };

static _Thread_local float pack_a[MC * KC_MAX] __attribute__((aligned(64)));
static _Thread_local float pack_b[KC_MAX * NR] __attribute__((aligned(64)));

/* The K block from pc: KC, or all the rest when it is at most KC_MAX (a last block of a few
 * k would repack both operands and reload C for little work: K = 196, a 28x28 image's 2x2
 * tiles, ran as 192 + 4). */
static inline int64_t kc_at(int64_t K, int64_t pc) { return K - pc <= KC_MAX ? K - pc : KC; }


/* c (mr rows, columns in masks m0|m1) = [first: beta c +] alpha sum_k a[k*sk + r*sr] b_k[:], the
 * row b_k = b + k*NR of a packed panel (sb = 0, aligned) or b + k*sb of B in place (columns
 * past the masks not read); a packed: sk = mr, sr = 1; a row-major in place: sk = 1, sr = lda;
 * a^T in place: sk = lda, sr = 1. Every variant sums k in order: the same bits. */
static inline __attribute__((always_inline)) void
micro_kernel(int mr, int64_t kc, const float *restrict a, int64_t sk, int64_t sr,
             const float *restrict b, int64_t sb, float *c, int64_t ldc, __mmask16 m0,
             __mmask16 m1, float alpha, float beta, int first, const float *bias, int relu) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        acc0[r] = acc1[r] = _mm512_setzero_ps();
        _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
        _mm_prefetch((const char *)(c + r * ldc + 16), _MM_HINT_T0);
    }
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0, b1;
        if (sb == 0) {
            b0 = _mm512_load_ps(b + k * NR);
            b1 = _mm512_load_ps(b + k * NR + 16);
        } else {
            b0 = _mm512_maskz_loadu_ps(m0, b + k * sb);
            b1 = _mm512_maskz_loadu_ps(m1, b + k * sb + 16);
        }
        const float *ak = a + k * sk;
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ak[r * sr]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta), zero = _mm512_setzero_ps();
    __m512 bias0 = zero, bias1 = zero;
    if (bias) {
        bias0 = _mm512_maskz_loadu_ps(m0, bias);
        bias1 = _mm512_maskz_loadu_ps(m1, bias + 16);
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 x0 = acc0[r], x1 = acc1[r];
        if (alpha != 1.0f) {
            x0 = _mm512_mul_ps(va, x0);
            x1 = _mm512_mul_ps(va, x1);
        }
        if (!first || beta == 1.0f) {
            x0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), x1);
        } else if (beta != 0.0f) {
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
        }
        if (bias) { /* the first K block, beta 0: the bits of c preset to the bias, beta 1 */
            x0 = _mm512_add_ps(bias0, x0);
            x1 = _mm512_add_ps(bias1, x1);
        }
        if (relu) { /* the last K block: x > 0 ? x : 0, as elbo_relu */
            x0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x0, zero, _CMP_GT_OQ), x0);
            x1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x1, zero, _CMP_GT_OQ), x1);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

typedef void (*micro_fn)(int64_t, const float *, const float *, float *, int64_t, __mmask16,
                         __mmask16, float, float, int, const float *, int);
#define MICRO(R)                                                                                   \
    static void micro_##R(int64_t kc, const float *a, const float *b, float *c, int64_t ldc,      \
                          __mmask16 m0, __mmask16 m1, float alpha, float beta, int first,         \
                          const float *bias, int relu) {                                          \
        micro_kernel(R, kc, a, R, 1, b, 0, c, ldc, m0, m1, alpha, beta, first, bias, relu);       \
    }
MICRO(1)
MICRO(2) MICRO(3) MICRO(4) MICRO(5) MICRO(6) MICRO(7) MICRO(8) MICRO(9) MICRO(10) MICRO(11)
    MICRO(12)
#undef MICRO
        static const micro_fn micro[MR + 1] = {NULL,     micro_1,  micro_2, micro_3, micro_4,
                                               micro_5,  micro_6,  micro_7, micro_8, micro_9,
                                               micro_10, micro_11, micro_12};

/* A^T B with both read in place (a[k*lda + r], b[k*ldb + j]): elbo__sgemm_tn_inplace. */
typedef void (*micro_tn_fn)(int64_t, const float *, int64_t, const float *, int64_t, float *,
                            int64_t, __mmask16, __mmask16, float, float, int);
#define MICRO_TN(R)                                                                                \
    static void micro_tn_##R(int64_t kc, const float *a, int64_t lda, const float *b,             \
                             int64_t ldb, float *c, int64_t ldc, __mmask16 m0, __mmask16 m1,      \
                             float alpha, float beta, int first) {                                \
        micro_kernel(R, kc, a, lda, 1, b, ldb, c, ldc, m0, m1, alpha, beta, first, NULL, 0);      \
    }
MICRO_TN(1)
MICRO_TN(2) MICRO_TN(3) MICRO_TN(4) MICRO_TN(5) MICRO_TN(6) MICRO_TN(7) MICRO_TN(8) MICRO_TN(9)
    MICRO_TN(10) MICRO_TN(11) MICRO_TN(12)
#undef MICRO_TN
        static const micro_tn_fn micro_tn[MR + 1] = {
            NULL,       micro_tn_1, micro_tn_2, micro_tn_3,  micro_tn_4,  micro_tn_5, micro_tn_6,
            micro_tn_7, micro_tn_8, micro_tn_9, micro_tn_10, micro_tn_11, micro_tn_12};

/* The same with A row-major in place (a[r*lda + k]): elbo__sgemm_rowa_pb. */
typedef void (*micro_rowa_fn)(int64_t, const float *, int64_t, const float *, float *, int64_t,
                              __mmask16, __mmask16, float, float, int);
#define MICRO_ROWA(R)                                                                              \
    static void micro_rowa_##R(int64_t kc, const float *a, int64_t lda, const float *b, float *c, \
                               int64_t ldc, __mmask16 m0, __mmask16 m1, float alpha, float beta,  \
                               int first) {                                                       \
        micro_kernel(R, kc, a, 1, lda, b, 0, c, ldc, m0, m1, alpha, beta, first, NULL, 0);        \
    }
MICRO_ROWA(1)
MICRO_ROWA(2) MICRO_ROWA(3) MICRO_ROWA(4) MICRO_ROWA(5) MICRO_ROWA(6) MICRO_ROWA(7)
    MICRO_ROWA(8) MICRO_ROWA(9) MICRO_ROWA(10) MICRO_ROWA(11) MICRO_ROWA(12)
#undef MICRO_ROWA
        static const micro_rowa_fn micro_rowa[MR + 1] = {
            NULL,         micro_rowa_1, micro_rowa_2, micro_rowa_3,  micro_rowa_4,
            micro_rowa_5, micro_rowa_6, micro_rowa_7, micro_rowa_8,  micro_rowa_9,
            micro_rowa_10, micro_rowa_11, micro_rowa_12};

/* dst[k * ld + j] = src[j * lds + k] for j < rows (<= 16), k < kc: 16 x 16 blocks through
 * transpose16, rows past `rows` read as zero, `rows` lanes stored per k. */
static void transpose_rows(const float *src, int64_t lds, int rows, int64_t kc, float *dst,
                           int64_t ld) {
    __mmask16 mrow = elbo__lanes16(rows);
    int64_t k0 = 0;
    for (; k0 < kc; k0 += 16) {
        __mmask16 mk = elbo__lanes16(kc - k0);
        __m512 r[16];
        for (int j = 0; j < 16; j++)
            r[j] = j < rows ? _mm512_maskz_loadu_ps(mk, src + j * lds + k0) : _mm512_setzero_ps();
        elbo__transpose16(r);
        int64_t nk = kc - k0 < 16 ? kc - k0 : 16;
        for (int64_t k = 0; k < nk; k++) _mm512_mask_storeu_ps(dst + (k0 + k) * ld, mrow, r[k]);
    }
}

/* dst_a <- op(A)[0:mc, 0:kc] as micro-panels of MR rows (the last one mc % MR rows):
 * panel p, element (k, r) at p*MR*kc + k*mr_p + r. op(A)[i, k] = A[i*lda + k], or A[k*lda + i]
 * with ta. */
static void pack_a_block(int ta, const float *A, int64_t lda, int64_t mc, int64_t kc,
                         float *dst_a) {
    int64_t np = (mc + MR - 1) / MR;
    for (int64_t p = 0; p < np; p++) {
        int64_t i0 = p * mc / np, mr = (p + 1) * mc / np - i0;
        float *dst = dst_a + i0 * kc;
        if (ta) {
            __mmask16 m = elbo__lanes16(mr);
            for (int64_t k = 0; k < kc; k++)
                _mm512_mask_storeu_ps(dst + k * mr, m, _mm512_maskz_loadu_ps(m, A + k * lda + i0));
        } else {
            transpose_rows(A + i0 * lda, lda, (int)mr, kc, dst, mr);
        }
    }
}

/* pack_b <- op(B)[0:kc, 0:nc] (nc <= 32) as kc rows of 32, zero past nc. op(B)[k, j] =
 * B[k*ldb + j], or B[j*ldb + k] with tb. */
static void pack_b_panel(int tb, const float *B, int64_t ldb, int64_t kc, int64_t nc) {
    if (!tb) {
        __mmask16 m0 = elbo__lanes16(nc), m1 = elbo__lanes16(nc - 16);
        for (int64_t k = 0; k < kc; k++) {
            const float *src = B + k * ldb;
            _mm512_store_ps(pack_b + k * NR, _mm512_maskz_loadu_ps(m0, src));
            _mm512_store_ps(pack_b + k * NR + 16, _mm512_maskz_loadu_ps(m1, src + 16));
        }
        return;
    }
    /* 16 full lanes per k, zero past nc: each half of the panel as one transpose */
    for (int h = 0; h < 2; h++) {
        int rows = nc - 16 * h < 0 ? 0 : nc - 16 * h > 16 ? 16 : (int)(nc - 16 * h);
        if (rows == 0) {
            for (int64_t k = 0; k < kc; k++)
                _mm512_store_ps(pack_b + k * NR + 16 * h, _mm512_setzero_ps());
            continue;
        }
        int64_t k0 = 0;
        for (; k0 < kc; k0 += 16) {
            __mmask16 mk = elbo__lanes16(kc - k0);
            __m512 r[16];
            for (int j = 0; j < 16; j++)
                r[j] = j < rows ? _mm512_maskz_loadu_ps(mk, B + (16 * h + j) * ldb + k0)
                                : _mm512_setzero_ps();
            elbo__transpose16(r);
            int64_t nk = kc - k0 < 16 ? kc - k0 : 16;
            for (int64_t k = 0; k < nk; k++) _mm512_store_ps(pack_b + (k0 + k) * NR + 16 * h, r[k]);
        }
    }
}

/* The loops of the file comment. With Ap, op(A) comes packed by elbo__sgemm_pack_a (block
 * (pc, ic) at Ap + pc m + ic kc) instead of being packed here; with Bp, B comes in panels
 * (elbo__sgemm_packed_pab: rows pc .. of panel jr / NR at Bp + jr K + pc NR). bias (n, or
 * NULL) is added to every row on the first K block and relu applied on the last
 * (elbo__sgemm_packed_ep). */
static void gemm_loops(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                       const float *A, int64_t lda, const float *Ap, const float *B, int64_t ldb,
                       const float *Bp, float beta, float *C, int64_t ldc, const float *bias,
                       int relu) {
    for (int64_t pc = 0, kc; pc < K; pc += kc) {
        kc = kc_at(K, pc);
        int first = pc == 0, last = pc + kc == K;
        for (int64_t ib = 0, nib = (m + MC - 1) / MC; ib < nib; ib++) {
            int64_t ic = ib * m / nib, mc = (ib + 1) * m / nib - ic;
            const float *pa = pack_a;
            if (Ap)
                pa = Ap + pc * m + ic * kc;
            else
                pack_a_block(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc, pack_a);
            int64_t np = (mc + MR - 1) / MR; /* micro-panels of mc / np rows, rounded */
            for (int64_t jr = 0; jr < n; jr += NR) {
                int64_t nc = n - jr < NR ? n - jr : NR;
                const float *pb = pack_b;
                if (Bp)
                    pb = Bp + jr * K + pc * NR;
                else
                    pack_b_panel(tb, tb ? B + jr * ldb + pc : B + pc * ldb + jr, ldb, kc, nc);
                __mmask16 m0 = elbo__lanes16(nc), m1 = elbo__lanes16(nc - 16);
                for (int64_t p = 0; p < np; p++) {
                    int64_t ir = p * mc / np;
                    int mr = (int)((p + 1) * mc / np - ir);
                    micro[mr](kc, pa + ir * kc, pb, C + (ic + ir) * ldc + jr, ldc, m0, m1,
                              alpha, beta, first, first && bias ? bias + jr : NULL, last && relu);
                }
            }
        }
    }
}

void elbo__sgemm_packed(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    gemm_loops(ta, tb, m, n, K, alpha, A, lda, NULL, B, ldb, NULL, beta, C, ldc, NULL, 0);
}

void elbo__sgemm_packed_ep(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                           const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                           float *C, int64_t ldc, const float *bias, int relu) {
    gemm_loops(ta, tb, m, n, K, alpha, A, lda, NULL, B, ldb, NULL, beta, C, ldc, bias, relu);
}

void elbo__sgemm_pack_a(int ta, int64_t m, int64_t K, const float *A, int64_t lda, float *Ap) {
    for (int64_t pc = 0, kc; pc < K; pc += kc) {
        kc = kc_at(K, pc);
        for (int64_t ib = 0, nib = (m + MC - 1) / MC; ib < nib; ib++) {
            int64_t ic = ib * m / nib, mc = (ib + 1) * m / nib - ic;
            pack_a_block(ta, ta ? A + pc * lda + ic : A + ic * lda + pc, lda, mc, kc,
                         Ap + pc * m + ic * kc);
        }
    }
}

void elbo__sgemm_packed_pa(const float *Ap, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                           const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    gemm_loops(0, tb, m, n, K, alpha, NULL, 0, Ap, B, ldb, NULL, beta, C, ldc, NULL, 0);
}

void elbo__sgemm_packed_pab(const float *Ap, int64_t m, int64_t n, int64_t K, float alpha,
                            const float *Bp, float beta, float *C, int64_t ldc) {
    gemm_loops(0, 0, m, n, K, alpha, NULL, 0, Ap, NULL, 0, Bp, beta, C, ldc, NULL, 0);
}

void elbo__sgemm_pack_b(int tb, int64_t K, int64_t n, const float *B, int64_t ldb, float *Bp) {
    for (int64_t jr = 0; jr < n; jr += NR) {
        int64_t nc = n - jr < NR ? n - jr : NR;
        for (int64_t pc = 0, kc; pc < K; pc += kc) {
            kc = kc_at(K, pc);
            pack_b_panel(tb, tb ? B + jr * ldb + pc : B + pc * ldb + jr, ldb, kc, nc);
            memcpy(Bp + jr * K + pc * NR, pack_b, sizeof(float) * (size_t)(kc * NR));
        }
    }
}

/* The loops of gemm_loops with A read in place: K blocks, 32-column panels of B, the rows of
 * C in ceil(m / MR) micro-panels; B in place too (tn: C = A^T B, A (K, m)), or prepacked in
 * Bp (C = A B, A (m, K)). */
static void unpacked_loops(int tn, int64_t m, int64_t n, int64_t K, float alpha, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const float *Bp, float beta,
                           float *C, int64_t ldc) {
    int64_t np = (m + MR - 1) / MR;
    for (int64_t pc = 0, kc; pc < K; pc += kc) {
        kc = kc_at(K, pc);
        for (int64_t jr = 0; jr < n; jr += NR) {
            int64_t nc = n - jr < NR ? n - jr : NR;
            __mmask16 m0 = elbo__lanes16(nc), m1 = elbo__lanes16(nc - 16);
            for (int64_t p = 0; p < np; p++) {
                int64_t ir = p * m / np;
                int mr = (int)((p + 1) * m / np - ir);
                float *c = C + ir * ldc + jr;
                if (tn)
                    micro_tn[mr](kc, A + pc * lda + ir, lda, B + pc * ldb + jr, ldb, c, ldc, m0,
                                 m1, alpha, beta, pc == 0);
                else
                    micro_rowa[mr](kc, A + ir * lda + pc, lda, Bp + jr * K + pc * NR, c, ldc, m0,
                                   m1, alpha, beta, pc == 0);
            }
        }
    }
}

void elbo__sgemm_tn_inplace(int64_t m, int64_t n, int64_t K, float alpha, const float *A,
                            int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                            int64_t ldc) {
    unpacked_loops(1, m, n, K, alpha, A, lda, B, ldb, NULL, beta, C, ldc);
}

void elbo__sgemm_rowa_pb(int64_t m, int64_t n, int64_t K, float alpha, const float *A,
                         int64_t lda, const float *Bp, float beta, float *C, int64_t ldc) {
    unpacked_loops(0, m, n, K, alpha, A, lda, NULL, 0, Bp, beta, C, ldc);
}
#endif
