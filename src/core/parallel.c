/* Threads and deterministic reductions. Kernels split work with `omp parallel for
 * schedule(static)` over independent outputs, so the thread count never changes a result;
 * reductions use fixed-size blocks combined in block order (elbo__sum_f32). */
#include "internal.h"

#include <omp.h>

#ifdef ELBO_HAVE_OPENBLAS_THREADS
void openblas_set_num_threads(int n);
#endif

static int n_threads = 0;

/* OpenBLAS itself stays single-threaded: its threaded driver splits K differently from the
 * serial one, so its results change with the thread count. elbo__sgemm cuts each product
 * into tiles fixed by the shape and runs the tiles on elbo's threads instead. */
void elbo_set_threads(int n) {
    if (n < 1) n = 1;
    n_threads = n;
    omp_set_num_threads(n);
#ifdef ELBO_HAVE_OPENBLAS_THREADS
    openblas_set_num_threads(1);
#endif
}

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define MXCSR_FTZ_DAZ 0x8040u /* flush to zero (bit 15), denormals are zero (bit 6) */
static void set_mxcsr_flush(int on) {
    unsigned csr = _mm_getcsr();
    _mm_setcsr(on ? (csr | MXCSR_FTZ_DAZ) : (csr & ~MXCSR_FTZ_DAZ));
}
#endif

elbo_status elbo_set_flush_denormals(int on) {
#if defined(__SSE__) || defined(__x86_64__)
    set_mxcsr_flush(on);
    int n = elbo_get_threads();
    /* one region over the whole pool: every thread sets its own register */
#pragma omp parallel num_threads(n)
    set_mxcsr_flush(on);
    return ELBO_OK;
#else
    return on ? elbo_error(ELBO_ERR_ARG, "flush_denormals: not supported on this CPU") : ELBO_OK;
#endif
}

int elbo_get_flush_denormals(void) {
#if defined(__SSE__) || defined(__x86_64__)
    return (_mm_getcsr() & MXCSR_FTZ_DAZ) == MXCSR_FTZ_DAZ;
#else
    return 0;
#endif
}

int elbo__parallel_ok(void) { return elbo_get_threads() > 1 && !omp_in_parallel(); }

int elbo_get_threads(void) { return n_threads > 0 ? n_threads : omp_get_max_threads(); }

#define SUM_BLOCK 4096

/* Sum (or sum of squares) of one block in 8 double lanes, combined in a fixed order. */
static double lane_sum(const float *x, int64_t n, int squares) {
    double acc[8] = {0};
    int64_t i = 0;
    if (squares)
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += (double)x[i + l] * x[i + l];
    else
        for (; i + 8 <= n; i += 8)
            for (int l = 0; l < 8; l++) acc[l] += x[i + l];
    for (; i < n; i++) acc[i & 7] += squares ? (double)x[i] * x[i] : x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

static double block_sum(const float *x, int64_t n, int squares) {
    int64_t nb = (n + SUM_BLOCK - 1) / SUM_BLOCK;
    if (nb <= 1) return lane_sum(x, n, squares);
    if (nb > 64) {
        /* Large inputs: two levels of fixed blocks keep the order fixed without a buffer. */
        int64_t per = (nb + 63) / 64 * SUM_BLOCK;
        int64_t ng = (n + per - 1) / per;
        double s = 0;
        for (int64_t g = 0; g < ng; g++) {
            int64_t b = g * per, e = b + per < n ? b + per : n;
            s += block_sum(x + b, e - b, squares);
        }
        return s;
    }
    double parts[64];
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t b = 0; b < nb; b++) {
            int64_t lo = b * SUM_BLOCK, hi = lo + SUM_BLOCK < n ? lo + SUM_BLOCK : n;
            parts[b] = lane_sum(x + lo, hi - lo, squares);
        });
    double s = 0;
    for (int64_t b = 0; b < nb; b++) s += parts[b];
    return s;
}

double elbo__sum_f32(const float *x, int64_t n) { return block_sum(x, n, 0); }
double elbo__sumsq_f32(const float *x, int64_t n) { return block_sum(x, n, 1); }

void elbo__acc(float *dst, const float *src, int64_t n) {
    ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) dst[i] += src[i];);
}

void elbo__zero(float *x, int64_t n) {
    if (n <= ELBO_PAR_MIN * 4) {
        memset(x, 0, (size_t)n * sizeof(float));
        return;
    }
    int64_t nb = (n + 65535) / 65536;
    ELBO_PARALLEL_FOR(
        1, for (int64_t b = 0; b < nb; b++) {
            int64_t lo = b * 65536, hi = lo + 65536 < n ? lo + 65536 : n;
            memset(x + lo, 0, (size_t)(hi - lo) * sizeof(float));
        });
}
