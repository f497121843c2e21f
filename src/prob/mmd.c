/* The kernel two-sample statistic MMD^2 (Gretton et al. 2012) of include/elbo/prob.h. */
#include "elbo/prob.h"
#include "internal.h"

#include <math.h>

/* sum over rows i of a (na, d) and j of b (nb, d), j != i when same, of k(a_i, b_j). Rows of
 * a are split into fixed blocks of 64 whose partial sums are added in block order. */
static double kernel_sum(const float *a, int64_t na, const float *b, int64_t nb, int64_t d,
                         double inv2h2, int same) {
    enum { RB = 64 };
    int64_t nblk = (na + RB - 1) / RB;
    double part[4096], total = 0;
    for (int64_t base = 0; base < nblk; base += 4096) {
        int64_t cnt = nblk - base < 4096 ? nblk - base : 4096;
        ELBO_PARALLEL_FOR(
            na * nb * d > ELBO_PAR_MIN, for (int64_t q = 0; q < cnt; q++) {
                int64_t i0 = (base + q) * RB, i1 = i0 + RB < na ? i0 + RB : na;
                double s = 0;
                for (int64_t i = i0; i < i1; i++)
                    for (int64_t j = 0; j < nb; j++) {
                        if (same && i == j) continue;
                        double r2 = 0;
                        for (int64_t k = 0; k < d; k++) {
                            double t = (double)a[i * d + k] - b[j * d + k];
                            r2 += t * t;
                        }
                        s += exp(-r2 * inv2h2);
                    }
                part[q] = s;
            });
        for (int64_t q = 0; q < cnt; q++) total += part[q];
    }
    return total;
}

double elbo_mmd2_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t d, double h) {
    if (!x || !y || n < 2 || m < 2 || d < 1 || !(h > 0) || !isfinite(h)) return NAN;
    double c = 1.0 / (2.0 * h * h);
    double kxx = kernel_sum(x, n, x, n, d, c, 1) / ((double)n * (double)(n - 1));
    double kyy = kernel_sum(y, m, y, m, d, c, 1) / ((double)m * (double)(m - 1));
    double kxy = kernel_sum(x, n, y, m, d, c, 0) / ((double)n * (double)m);
    return kxx + kyy - 2.0 * kxy;
}
