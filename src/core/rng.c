/* Philox-4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3",
 * SC 2011). A counter-based generator: value = f(key, counter), so any element of any fill
 * can be computed independently, on any thread, and the stream never depends on the
 * thread count. Element i of a fill uses counter (offset + i/4), lane i%4. */
#include "internal.h"

#include <math.h>

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

void elbo_philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]) {
    uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0, p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

void elbo_rng_init(elbo_rng *rng, uint64_t seed) {
    rng->seed = seed;
    rng->offset = 0;
}

/* [0,1) with 24 bits, and (0,1] for logs. */
static inline float u01(uint32_t u) { return (float)(u >> 8) * 0x1p-24f; }
static inline float u01_open0(uint32_t u) { return (float)((u >> 8) + 1) * 0x1p-24f; }

typedef enum { FILL_UNIFORM, FILL_NORMAL, FILL_RADEMACHER } fill_kind;

/* The four values of counter c: U[a, b), N(a, b^2) by Box-Muller
 * (u1, u2) -> sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2), or +-1. */
static inline void philox_values(uint64_t key, uint64_t c, fill_kind kind, float a, float b,
                                 float z[4]) {
    uint32_t r[4];
    elbo_philox4x32(key, c, r);
    if (kind == FILL_UNIFORM) {
        for (int l = 0; l < 4; l++) z[l] = a + (b - a) * u01(r[l]);
    } else if (kind == FILL_NORMAL) {
        for (int p = 0; p < 2; p++) {
            float rad = sqrtf(-2.0f * logf(u01_open0(r[2 * p])));
            float th = 6.28318530717958647692f * u01(r[2 * p + 1]);
            z[2 * p] = a + b * rad * cosf(th);
            z[2 * p + 1] = a + b * rad * sinf(th);
        }
    } else {
        for (int l = 0; l < 4; l++) z[l] = (r[l] >> 31) ? 1.0f : -1.0f;
    }
}

/* x[i] = value (i % 4) of counter offset + i / 4; advances the offset past the fill. */
static void philox_fill(elbo_rng *rng, float *x, size_t n, fill_kind kind, float a, float b) {
    uint64_t base = rng->offset, key = rng->seed;
    int64_t nc = (int64_t)((n + 3) / 4);
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t c = 0; c < nc; c++) {
            float z[4];
            philox_values(key, base + (uint64_t)c, kind, a, b, z);
            for (int l = 0; l < 4; l++) {
                size_t i = (size_t)c * 4 + l;
                if (i < n) x[i] = z[l];
            }
        });
    rng->offset += (uint64_t)nc;
}

void elbo_rng_uniform(elbo_rng *rng, float *x, size_t n, float lo, float hi) {
    philox_fill(rng, x, n, FILL_UNIFORM, lo, hi);
}

void elbo_rng_normal(elbo_rng *rng, float *x, size_t n, float mean, float std) {
    philox_fill(rng, x, n, FILL_NORMAL, mean, std);
}

void elbo_rng_rademacher(elbo_rng *rng, float *x, size_t n) {
    philox_fill(rng, x, n, FILL_RADEMACHER, 0, 0);
}

/* Lemire's multiply-shift; the bias is below 2^-32 * n, far under any statistic we report. */
uint32_t elbo_rng_below(elbo_rng *rng, uint32_t n) {
    uint32_t r[4];
    elbo_philox4x32(rng->seed, rng->offset++, r);
    return (uint32_t)(((uint64_t)r[0] * n) >> 32);
}
