/* GEMM: the dispatch between our packed AVX-512 kernel (sgemm_packed.c), OpenBLAS's
 * cblas_sgemm and portable loops (see "Which kernel runs a block" below), the tiling across
 * threads, and the small row/column kernels of a linear layer.
 *
 * Determinism: OpenBLAS's own threading does NOT give the same bits for 1 and 2 threads. Its
 * threaded driver splits K into blocks by a different rule from the serial one (level3.c
 * rounds K/2 up to GEMM_UNROLL_M, level3_thread.c does not: K in (Q, 2Q) sums differently),
 * and some kernels (Haswell's) round an element differently depending on where the thread
 * partition puts its tile. So OpenBLAS is kept single-threaded here and the product is cut
 * into a grid of tiles fixed by the shape alone; each tile is one serial cblas_sgemm call,
 * the tiles are shared among OpenMP threads. Same tiles, same calls, same bits for any
 * thread count. (The packed kernel's bits do not depend on the cut at all, so with it the
 * tiles simply follow the thread count: elbo__sgemm.) */
#include "internal.h"
#include "kernels/cpu/kernels.h"

#include <cblas.h>
#include <omp.h>
#ifdef __AVX512F__
#include <immintrin.h>
#endif

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
/* Products below this many flops run on one thread in the packed kernel. */
#define PACKED_PAR_FLOPS 2e6

static int64_t round_up(int64_t v, int64_t a) { return (v + a - 1) / a * a; }
static int64_t max1(int64_t v) { return v > 1 ? v : 1; }

/* Which kernel runs a block. In builds with AVX-512 (the default -march=native on this
 * project's machines), every block runs in elbo__sgemm_packed (sgemm_packed.c), our own packed
 * AVX-512 kernel: it allocates nothing (OpenBLAS's AVX-512 small-matrix path, used up to
 * 100^3, mallocs a buffer on every call, which would put allocations in the training loop), it
 * is the same code whatever OPENBLAS_CORETYPE says, and it is faster than OpenBLAS 0.3.21 on
 * every product shape of the benchmark models, with either OpenBLAS core (single thread,
 * bench/gemm_micro.c: 130-140 GFLOP/s on vae-mlp's products against 87-93 for Haswell's
 * kernels and 113-123 for SkylakeX's; 105-125 against 72-108 on Winograd's). Other builds
 * use cblas_sgemm, and the portable loops below for products too small to be worth a library
 * call, or (up to 100^3 multiply-adds) where OpenBLAS runs AVX-512 kernels on a machine that
 * has them although this file was built without (small_mnk_limit()). */
extern double elbo__sgemm_small_mnk_override; /* tests: send every product to the loops */
double elbo__sgemm_small_mnk_override = 0;
static double small_mnk = -1;
static double small_mnk_limit(void) {
    if (elbo__sgemm_small_mnk_override > 0) return elbo__sgemm_small_mnk_override;
    if (small_mnk < 0) { /* up to 100^3 where OpenBLAS would take its allocating AVX-512 path */
        const char *core = openblas_get_corename();
        int avx512 = core && (strstr(core, "SkylakeX") || strstr(core, "Cooperlake") ||
                              strstr(core, "SapphireRapids"));
        small_mnk = avx512 ? 1000000.0 : 32768.0;
    }
    return small_mnk;
}

/* Portable loops, row-major: C (m,n) = alpha op(A) (m,K) op(B) (K,n) + beta C. */
static void sgemm_small(int ta, int tb, int64_t m, int64_t n, int64_t K, float alpha,
                        const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                        float *C, int64_t ldc) {
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
#ifdef __AVX512F__
    if (elbo__sgemm_small_mnk_override == 0) {
        elbo__sgemm_packed(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
        return;
    }
#endif
    if ((double)m * (double)n * (double)K <= small_mnk_limit()) {
        sgemm_small(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta, C + i0 * ldc + j0, ldc);
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)K, alpha, a, (blasint)max1(lda), b,
                (blasint)max1(ldb), beta, C + i0 * ldc + j0, (blasint)max1(ldc));
}


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

#ifdef __AVX512F__
/* C = alpha op(A) op(B) + beta C [+ bias, then relu] in the packed kernel
 * (elbo__sgemm_packed_ep), K > 0, on one block per thread. */
static void packed_split(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha,
                         const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                         float *C, int64_t ldc, const float *bias, int relu) {
    int nested = omp_in_parallel();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    /* The packed kernel's bits do not depend on how C is cut (each element is summed over
     * the same K blocks in the same order whatever tile holds it), so the tiles can follow
     * the thread count: one per thread, cut across the operand that costs less to pack
     * twice (a tile packs all of A when C is cut into column blocks, all of B when into
     * row blocks). vae-mlp step 6.4 -> 5.6 ms against the shape-fixed tiles below
     * (Haswell OpenBLAS core, 2 threads). */
    int nth = nested || flops < PACKED_PAR_FLOPS ? 1 : omp_get_max_threads();
    int by_cols = M <= N;
    int64_t len = by_cols ? N : M, unit = by_cols ? 32 : 16;
    /* whole units shared evenly, the partial last unit counted as one: 784 columns in
     * units of 32 go 384 | 400, not 416 | 368 */
    int64_t units = (len + unit - 1) / unit, nt = nth < units ? nth : units;
    ELBO_PARALLEL_FOR(
        nt > 1, for (int64_t t = 0; t < nt; t++) {
            int64_t o = t * units / nt * unit, e = (t + 1) * units / nt * unit;
            int64_t l = (e < len ? e : len) - o;
            int64_t i0 = by_cols ? 0 : o, m = by_cols ? M : l;
            int64_t j0 = by_cols ? o : 0, n = by_cols ? l : N;
            const float *a = ta ? A + i0 : A + i0 * lda, *b = tb ? B + j0 * ldb : B + j0;
            elbo__sgemm_packed_ep(ta, tb, m, n, K, alpha, a, lda, b, ldb, beta,
                                  C + i0 * ldc + j0, ldc, bias ? bias + j0 : NULL, relu);
        });
}
#endif

void elbo__sgemm(int ta, int tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
                 int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        scale_c(M, N, beta, C, ldc);
        return;
    }
#ifdef __AVX512F__
    if (elbo__sgemm_small_mnk_override == 0) {
        packed_split(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, NULL, 0);
        return;
    }
#endif
    int nested = omp_in_parallel();
    double flops = 2.0 * (double)M * (double)N * (double)K;
    if (!nested) elbo__blas_single_thread();
    /* The tile grid tm x tn, from the shape only: split the longer tile edge in two while
     * tiles stay above TILE_FLOPS of work and TILE_MIN_EDGE wide. */
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

void elbo__sgemm_bias_relu(int ta, int tb, int64_t M, int64_t N, int64_t K, const float *A,
                           int64_t lda, const float *B, int64_t ldb, const float *bias, int relu,
                           float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
#ifdef __AVX512F__
    if (K > 0 && elbo__sgemm_small_mnk_override == 0) {
        packed_split(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc, bias, relu);
        return;
    }
#endif
    if (bias)
        ELBO_PARALLEL_FOR(M * N > ELBO_PAR_MIN,
                          for (int64_t r = 0; r < M; r++)
                              memcpy(C + r * ldc, bias, (size_t)N * sizeof(float)););
    elbo__sgemm(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, bias ? 1.0f : 0.0f, C, ldc);
    if (relu)
        ELBO_PARALLEL_FOR(M * N > ELBO_PAR_MIN, for (int64_t r = 0; r < M; r++) {
            float *c = C + r * ldc;
            for (int64_t j = 0; j < N; j++) c[j] = c[j] > 0 ? c[j] : 0.0f;
        });
}

/* Columns in blocks of 64: each block is one thread's, summed over rows in order in double.
 * With y, the rows summed are dz = [y > 0] dy, stored to dz as they go (dz may be dy); db
 * may then be NULL. */
static void colsum_blocks(float *db, int accumulate, const float *dy, const float *y, float *dz,
                          int64_t R, int64_t N) {
    enum { CB = 64 };
    int64_t nblk = (N + CB - 1) / CB;
    ELBO_PARALLEL_FOR(
        R * N > ELBO_PAR_MIN, for (int64_t blk = 0; blk < nblk; blk++) {
            int64_t j0 = blk * CB, n = N - j0 < CB ? N - j0 : CB;
            double s[CB] = {0};
#ifdef __AVX512F__
            __m512d acc[CB / 8];
            for (int q = 0; q < CB / 8; q++) acc[q] = _mm512_setzero_pd();
            for (int64_t r = 0; r < R; r++) {
                const float *g = dy + r * N + j0;
                for (int q = 0; q < CB / 16 && 16 * q < n; q++) {
                    __mmask16 m = elbo__lanes16(n - 16 * q);
                    __m512 v = _mm512_maskz_loadu_ps(m, g + 16 * q);
                    if (y) {
                        __m512 yv = _mm512_maskz_loadu_ps(m, y + r * N + j0 + 16 * q);
                        v = _mm512_maskz_mov_ps(
                            _mm512_cmp_ps_mask(yv, _mm512_setzero_ps(), _CMP_GT_OQ), v);
                        _mm512_mask_storeu_ps(dz + r * N + j0 + 16 * q, m, v);
                    }
                    __m256 lo = _mm512_castps512_ps256(v);
                    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
                    acc[2 * q] = _mm512_add_pd(acc[2 * q], _mm512_cvtps_pd(lo));
                    acc[2 * q + 1] = _mm512_add_pd(acc[2 * q + 1], _mm512_cvtps_pd(hi));
                }
            }
            for (int q = 0; q < CB / 8; q++) _mm512_storeu_pd(s + 8 * q, acc[q]);
#else
            for (int64_t r = 0; r < R; r++) {
                const float *g = dy + r * N + j0;
                for (int64_t j = 0; j < n; j++) {
                    float v = g[j];
                    if (y) {
                        v = y[r * N + j0 + j] > 0 ? v : 0.0f;
                        dz[r * N + j0 + j] = v;
                    }
                    s[j] += v;
                }
            }
#endif
            if (db)
                for (int64_t j = 0; j < n; j++)
                    db[j0 + j] = (accumulate ? db[j0 + j] : 0.0f) + (float)s[j];
        });
}

void elbo__colsum(float *db, const float *dy, int64_t R, int64_t N, int accumulate) {
    colsum_blocks(db, accumulate, dy, NULL, NULL, R, N);
}

void elbo__relu_grad_colsum(float *dz, const float *dy, const float *y, int64_t R, int64_t N,
                            float *db, int accumulate) {
    colsum_blocks(db, accumulate, dy, y, dz, R, N);
}
