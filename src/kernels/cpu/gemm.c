/* GEMM through OpenBLAS's cblas_sgemm, and the small row/column kernels of a linear layer.
 *
 * Determinism: OpenBLAS's own threading does NOT give the same bits for 1 and 2 threads. Its
 * threaded driver splits K into blocks by a different rule from the serial one (level3.c
 * rounds K/2 up to GEMM_UNROLL_M, level3_thread.c does not: K in (Q, 2Q) sums differently),
 * and some kernels (Haswell's) round an element differently depending on where the thread
 * partition puts its tile. So OpenBLAS is kept single-threaded here and the product is cut
 * into a grid of tiles fixed by the shape alone; each tile is one serial cblas_sgemm call,
 * the tiles are shared among OpenMP threads. Same tiles, same calls, same bits for any
 * thread count. */
#include "internal.h"
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>

/* Tiles: a power-of-two count of about TILE_FLOPS of work each, at most MAX_TILES, edges of
 * at least TILE_MIN_EDGE rows/columns, rounded to multiples of TILE_ALIGN (the register
 * block of the AVX-512 and AVX2 kernels divides it). Every tile is a separate OpenBLAS call
 * that packs its own panels, so fewer, larger tiles pack less: vae-mlp's step (batch 128)
 * measured 6.2 ms at 4e6, 4.9-5.1 ms at 16e6 and 32e6, 7.9 ms at 64e6 (2 threads, too few
 * tiles to share), SkylakeX kernels. */
#define TILE_FLOPS 16e6
#define MAX_TILES 16
#define TILE_MIN_EDGE 64
#define TILE_ALIGN 16

static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* Products of at most small_mnk_limit() multiply-adds run in our own loops (no heap
 * allocation). OpenBLAS's small-matrix path for AVX-512 (sgemm_small_kernel_*_SKYLAKEX, used up
 * to 100^3) mallocs a buffer on every call, which would put allocations in the training loop;
 * and where this file is built with AVX-512, our kernels below beat OpenBLAS's AVX2 (Haswell)
 * ones on these sizes (unet-s step 286 -> 266 ms with OPENBLAS_CORETYPE=Haswell). Otherwise
 * only products too small to be worth a library call come here. Row-major:
 *   C (m,n) = alpha op(A) (m,K) op(B) (K,n) + beta C. */
/* Tests set this to send every product through the small path (not part of the API). */
extern double elbo__sgemm_small_mnk_override;
double elbo__sgemm_small_mnk_override = 0;
static double small_mnk = -1;
static double small_mnk_limit(void) {
    if (elbo__sgemm_small_mnk_override > 0) return elbo__sgemm_small_mnk_override;
    if (small_mnk < 0) {
#ifdef __AVX512F__
        int own = 1;
#else
        const char *core = openblas_get_corename();
        int own = core && (strstr(core, "SkylakeX") || strstr(core, "Cooperlake") ||
                           strstr(core, "SapphireRapids"));
#endif
        small_mnk = own ? 1000000.0 : 32768.0;
    }
    return small_mnk;
}

#ifdef __AVX512F__
#include <immintrin.h>

/* Register blocks: the broadcast kernel keeps MR x 32 of C in 16 zmm accumulators
 * (c[r, :] += a[r, k] b[k, :] for k in order); the dot kernel keeps a 4 x 4 block of C as 16
 * zmm lane-wise dot products over k, used from DOT_MIN_K on (below, its masked tail and the
 * final lane sums cost more than packing B^T: measured on 49x49x64 and 576x64x49). K is cut
 * into blocks of KC so that a 32-column panel of op(B) (KC x 32 floats, 32 KiB) stays in L1. */
enum { MR = 8, NR = 32, KC = 256, DOT_MIN_K = 128 };

static __mmask16 lane_mask(int64_t n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1);
}

/* c (mr, cols in m0|m1) = [first: beta c +] alpha sum_{k<kc} a[r*a_rs + k*a_ks] b[k*ldb, :].
 * Each element is one accumulator lane summed over k in order. */
static inline __attribute__((always_inline)) void
bcast_kernel(int mr, int64_t kc, const float *a, int64_t a_rs, int64_t a_ks, const float *b,
             int64_t ldb, __mmask16 m0, __mmask16 m1, float *c, int64_t ldc, float alpha,
             float beta, int first) {
    __m512 acc0[MR], acc1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) acc0[r] = acc1[r] = _mm512_setzero_ps();
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_maskz_loadu_ps(m0, b + k * ldb);
        __m512 b1 = _mm512_maskz_loadu_ps(m1, b + k * ldb + 16);
        const float *ak = a + k * a_ks;
#pragma GCC unroll 8
        for (int r = 0; r < mr; r++) {
            __m512 av = _mm512_set1_ps(ak[r * a_rs]);
            acc0[r] = _mm512_fmadd_ps(av, b0, acc0[r]);
            acc1[r] = _mm512_fmadd_ps(av, b1, acc1[r]);
        }
    }
    __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 8
    for (int r = 0; r < mr; r++) {
        float *cr = c + r * ldc;
        __m512 x0 = _mm512_mul_ps(va, acc0[r]), x1 = _mm512_mul_ps(va, acc1[r]);
        if (!first || beta == 1.0f) {
            x0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), x1);
        } else if (beta != 0.0f) {
            x0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), x0);
            x1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), x1);
        }
        _mm512_mask_storeu_ps(cr, m0, x0);
        _mm512_mask_storeu_ps(cr + 16, m1, x1);
    }
}

/* The same for a block of m rows, MR at a time. */
static void bcast_rows(int64_t m, int64_t kc, const float *a, int64_t a_rs, int64_t a_ks,
                       const float *b, int64_t ldb, int64_t n, float *c, int64_t ldc, float alpha,
                       float beta, int first) {
    __mmask16 m0 = lane_mask(n), m1 = lane_mask(n - 16);
    int64_t i = 0;
    for (; i + MR <= m; i += MR)
        bcast_kernel(MR, kc, a + i * a_rs, a_rs, a_ks, b, ldb, m0, m1, c + i * ldc, ldc, alpha,
                     beta, first);
    switch (m - i) {
#define TAIL(R)                                                                                    \
    case R:                                                                                        \
        bcast_kernel(R, kc, a + i * a_rs, a_rs, a_ks, b, ldb, m0, m1, c + i * ldc, ldc, alpha,     \
                     beta, first);                                                                 \
        break;
        TAIL(1)
        TAIL(2) TAIL(3) TAIL(4) TAIL(5) TAIL(6) TAIL(7)
#undef TAIL
            default : break;
    }
}

/* Sum of each of 16 vectors over its lanes, in one vector: lane 4 e + L holds the sum of
 * v[4 L + e] (a fixed tree of pairwise adds: halves, quarters, then within 128-bit lanes). */
static inline __m512 hsum16(const __m512 v[16]) {
    __m512 z[8], w[4], u[2];
    for (int p = 0; p < 8; p++)
        z[p] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * p], v[2 * p + 1], 0xEE));
    for (int g = 0; g < 4; g++)
        w[g] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * g], z[2 * g + 1], 0x88),
                             _mm512_shuffle_f32x4(z[2 * g], z[2 * g + 1], 0xDD));
    for (int h = 0; h < 2; h++) {
        __m512d p = _mm512_castps_pd(w[2 * h]), q = _mm512_castps_pd(w[2 * h + 1]);
        u[h] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(p, q)),
                             _mm512_castpd_ps(_mm512_unpackhi_pd(p, q)));
    }
    return _mm512_add_ps(_mm512_shuffle_ps(u[0], u[1], 0x88), _mm512_shuffle_ps(u[0], u[1], 0xDD));
}

/* c[r, j] (r < mr, j < nr; mr, nr <= 4) = alpha <a[r, :K], b[j, :K]> + beta c[r, j], for rows of
 * a and b contiguous in k: 16 lane-wise sums over k (16 at a time, the tail masked), then
 * hsum16. Rows past mr / nr repeat the last one and are not stored. */
static void dot_kernel(int mr, int nr, int64_t K, const float *a, int64_t lda, const float *b,
                       int64_t ldb, float *c, int64_t ldc, float alpha, float beta) {
    const float *ar[4], *br[4];
    for (int r = 0; r < 4; r++) ar[r] = a + (r < mr ? r : mr - 1) * lda;
    for (int j = 0; j < 4; j++) br[j] = b + (j < nr ? j : nr - 1) * ldb;
    __m512 acc[16];
    for (int v = 0; v < 16; v++) acc[v] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k += 16) {
        __mmask16 mk = lane_mask(K - k);
        __m512 av[4], bv[4];
        for (int r = 0; r < 4; r++) av[r] = _mm512_maskz_loadu_ps(mk, ar[r] + k);
        for (int j = 0; j < 4; j++) bv[j] = _mm512_maskz_loadu_ps(mk, br[j] + k);
        for (int j = 0; j < 4; j++)
            for (int r = 0; r < 4; r++)
                acc[4 * j + r] = _mm512_fmadd_ps(av[r], bv[j], acc[4 * j + r]);
    }
    /* acc[4 j + r] is element (r, j): its sum lands in lane 4 r + j */
    __m512 s = _mm512_mul_ps(_mm512_set1_ps(alpha), hsum16(acc));
    __mmask8 mj = (__mmask8)((1u << nr) - 1);
    __m128 rows[4] = {_mm512_castps512_ps128(s), _mm512_extractf32x4_ps(s, 1),
                      _mm512_extractf32x4_ps(s, 2), _mm512_extractf32x4_ps(s, 3)};
    for (int r = 0; r < mr; r++) {
        __m128 x = rows[r];
        float *cr = c + r * ldc;
        if (beta == 1.0f)
            x = _mm_add_ps(_mm_maskz_loadu_ps(mj, cr), x);
        else if (beta != 0.0f)
            x = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_maskz_loadu_ps(mj, cr), x);
        _mm_mask_storeu_ps(cr, mj, x);
    }
}

/* C (m,n) = alpha op(A) op(B) + beta C. op(A) = A (ta = 0) or A^T, broadcast from memory;
 * op(B) rows are read in place (tb = 0), or B (n,K) is packed as panels of KC x 32 of B^T
 * (columns past n masked off in the kernel). With tb and ta = 0 and K large enough, dot
 * products on the rows of A and B need no packing. */
static void sgemm_small_avx512(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                               const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                               float *C, int64_t ldc) {
    if (!ta && tb && K >= DOT_MIN_K) {
        for (int64_t i = 0; i < m; i += 4)
            for (int64_t j = 0; j < n; j += 4)
                dot_kernel(m - i < 4 ? (int)(m - i) : 4, n - j < 4 ? (int)(n - j) : 4, K,
                           A + i * lda, lda, B + j * ldb, ldb, C + i * ldc + j, ldc, alpha, beta);
        return;
    }
    int64_t a_rs = ta ? 1 : lda, a_ks = ta ? lda : 1;
    float panel[KC * NR] __attribute__((aligned(64)));
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
        int64_t kc = K - k0 < KC ? K - k0 : KC;
        for (int64_t j = 0; j < n; j += NR) {
            int64_t nc = n - j < NR ? n - j : NR;
            const float *b = B + k0 * ldb + j;
            int64_t ldp = ldb;
            if (tb) { /* panel[k, jj] = B[j + jj, k0 + k] */
                for (int64_t jj = 0; jj < nc; jj++) {
                    const float *src = B + (j + jj) * ldb + k0;
                    for (int64_t k = 0; k < kc; k++) panel[k * NR + jj] = src[k];
                }
                b = panel;
                ldp = NR;
            }
            bcast_rows(m, kc, A + k0 * a_ks, a_rs, a_ks, b, ldp, nc, C + j, ldc, alpha, beta,
                       k0 == 0);
        }
    }
}
#endif

/* Portable loops (and the AVX-512 kernels above where available). */
static void sgemm_small(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
#ifdef __AVX512F__
    sgemm_small_avx512(ta, tb, m, n, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
#endif
    for (int64_t i = 0; i < m; i++) {
        float *c = C + i * ldc;
        if (beta == 0.0f)
            for (int64_t j = 0; j < n; j++) c[j] = 0.0f;
        else if (beta != 1.0f)
            for (int64_t j = 0; j < n; j++) c[j] *= beta;
        if (!tb) { /* c += sum_k alpha a_ik B[k, :] (rows of B are contiguous) */
            for (int64_t k = 0; k < K; k++) {
                float a = alpha * (ta ? A[k * lda + i] : A[i * lda + k]);
                const float *b = B + k * ldb;
                for (int64_t j = 0; j < n; j++) c[j] += a * b[j];
            }
        } else { /* c_j += alpha <A[i, :], B[j, :]>, 8 lanes summed in a fixed order */
            for (int64_t j = 0; j < n; j++) {
                const float *b = B + j * ldb;
                float acc[8] = {0};
                int64_t k = 0;
                if (!ta)
                    for (; k + 8 <= K; k += 8)
                        for (int l = 0; l < 8; l++) acc[l] += A[i * lda + k + l] * b[k + l];
                for (; k < K; k++) acc[k & 7] += (ta ? A[k * lda + i] : A[i * lda + k]) * b[k];
                c[j] += alpha * (((acc[0] + acc[1]) + (acc[2] + acc[3])) +
                                 ((acc[4] + acc[5]) + (acc[6] + acc[7])));
            }
        }
    }
}

/* One serial product on row block [i0, i0+m) and column block [j0, j0+n) of C. */
static void sgemm_block(int ta, int tb, int64_t i0, int64_t m, int64_t j0, int64_t n, int64_t K,
                        float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
                        float beta, float *C, int64_t ldc) {
    const float *a = ta ? A + i0 : A + i0 * lda;
    const float *b = tb ? B + j0 * ldb : B + j0;
    if ((double)m * (double)n * (double)K <= small_mnk_limit()) {
        sgemm_small(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)K, alpha, a, (blasint)max1(lda), b,
                (blasint)max1(ldb), beta, C + i0 * ldc + j0, (blasint)max1(ldc));
}

static int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }

void elbo__blas_single_thread(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* C = beta C, for an empty product (K = 0). */
static void scale_c(int64_t M, int64_t N, float beta, float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0.0f : beta * C[i * ldc + j];
}

void elbo__sgemm_serial(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0)
        scale_c(M, N, beta, C, ldc);
    else
        sgemm_block(ta, tb, 0, M, 0, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void elbo__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
    int nested = omp_in_parallel();
    if (!nested) elbo__blas_single_thread();
    /* The tile grid tm x tn, from the shape only: split the longer tile edge in two while
     * tiles stay above TILE_FLOPS of work and TILE_MIN_EDGE wide. */
    double flops = 2.0 * (double)M * (double)N * (double)K;
    int64_t tm = 1, tn = 1;
    while (tm * tn < MAX_TILES && flops / (double)(2 * tm * tn) >= TILE_FLOPS) {
        int64_t em = (M + tm - 1) / tm, en = (N + tn - 1) / tn;
        int can_m = em / 2 >= TILE_MIN_EDGE, can_n = en / 2 >= TILE_MIN_EDGE;
        if (can_n && (en >= em || !can_m))
            tn *= 2;
        else if (can_m)
            tm *= 2;
        else
            break;
    }
    int64_t mb = tm > 1 ? round_up((M + tm - 1) / tm, TILE_ALIGN) : M;
    int64_t nb = tn > 1 ? round_up((N + tn - 1) / tn, TILE_ALIGN) : N;
    int64_t gm = (M + mb - 1) / mb, gn = (N + nb - 1) / nb;
    /* Inside a parallel region (a batch of products) the same tiles run in order. */
    ELBO_PARALLEL_FOR(
        gm * gn > 1 && !nested, for (int64_t t = 0; t < gm * gn; t++) {
            int64_t i0 = (t / gn) * mb, j0 = (t % gn) * nb;
            int64_t m = M - i0 < mb ? M - i0 : mb, n = N - j0 < nb ? N - j0 : nb;
            sgemm_block(ta, tb, i0, m, j0, n, K, alpha, A, lda, B, ldb, beta, C, ldc);
        });
}

/* C = op(A) op(B):
 *   ta = 0: dA (M,K) += dC op(B)^T        ta = 1: dA (K,M) += op(B) dC^T
 *   tb = 0: dB (K,N) += op(A)^T dC        tb = 1: dB (N,K) += dC^T op(A)
 * op(B)^T is B itself when tb (no transpose flag), B^T otherwise; likewise for A. */
void elbo__sgemm_backward(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                          const float *B, const float *dC, float *dA, float *dB) {
    int64_t lda = ta ? M : K, ldb = tb ? K : N;
    if (dA) {
        if (!ta)
            elbo__sgemm(0, !tb, M, K, N, 1.0f, dC, N, B, ldb, 1.0f, dA, K);
        else
            elbo__sgemm(tb, 1, K, M, N, 1.0f, B, ldb, dC, N, 1.0f, dA, M);
    }
    if (dB) {
        if (!tb)
            elbo__sgemm(!ta, 0, K, N, M, 1.0f, A, lda, dC, N, 1.0f, dB, N);
        else
            elbo__sgemm(1, ta, N, K, M, 1.0f, dC, N, A, lda, 1.0f, dB, K);
    }
}

void elbo__rows_set(float *y, const float *b, int64_t R, int64_t N) {
    ELBO_PARALLEL_FOR(R * N > ELBO_PAR_MIN, for (int64_t r = 0; r < R; r++)
                                                memcpy(y + r * N, b, (size_t)N * sizeof(float)););
}

/* Columns in blocks of 64: each block is one thread's, summed over rows in order. */
void elbo__colsum_acc(float *db, const float *dy, int64_t R, int64_t N) {
    enum { CB = 64 };
    int64_t nblk = (N + CB - 1) / CB;
    ELBO_PARALLEL_FOR(
        R * N > ELBO_PAR_MIN, for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t j0 = blk * CB, n = N - j0 < CB ? N - j0 : CB;
            double s[CB] = {0};
            for (int64_t r = 0; r < R; r++) {
                const float *row = dy + r * N + j0;
                for (int64_t j = 0; j < n; j++) s[j] += row[j];
            }
            for (int64_t j = 0; j < n; j++) db[j0 + j] += (float)s[j];
        });
}
