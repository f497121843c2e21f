/* Means, covariances and the Frechet distance between Gaussians of include/elbo/prob.h. */
#include "elbo/prob.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

elbo_status elbo_mean_cov(const float *x, int64_t n, int d, double *mu, double *cov) {
    if (!x || n < 2 || d < 1 || !mu || !cov)
        return elbo_error(ELBO_ERR_ARG, "mean_cov: need n >= 2 rows of d >= 1 values");
    for (int i = 0; i < d; i++) mu[i] = 0;
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < d; i++) mu[i] += x[r * d + i];
    for (int i = 0; i < d; i++) mu[i] /= (double)n;
    memset(cov, 0, sizeof(double) * (size_t)d * d);
    for (int64_t r = 0; r < n; r++)
        for (int i = 0; i < d; i++) {
            double ci = x[r * d + i] - mu[i];
            for (int j = 0; j <= i; j++) cov[i * d + j] += ci * (x[r * d + j] - mu[j]);
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j <= i; j++) cov[j * d + i] = cov[i * d + j] /= (double)(n - 1);
    return ELBO_OK;
}

/* Cyclic Jacobi: rotate away each off-diagonal a_pq in turn (the rotation of Golub & Van
 * Loan alg. 8.5.2) until the off-diagonal mass is below 1e-24 of the total or 100 sweeps. */
void elbo_sym_eigen(double *a, int d, double *w, double *v) {
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) v[i * d + j] = i == j;
    double total = 0;
    for (int i = 0; i < d * d; i++) total += a[i] * a[i];
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) off += 2 * a[p * d + q] * a[p * d + q];
        if (off <= 1e-24 * total || off == 0) break;
        for (int p = 0; p < d; p++)
            for (int q = p + 1; q < d; q++) {
                double apq = a[p * d + q];
                if (apq == 0) continue;
                double theta = (a[q * d + q] - a[p * d + p]) / (2 * apq);
                double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                double c = 1 / sqrt(t * t + 1), s = t * c;
                for (int k = 0; k < d; k++) { /* columns p, q */
                    double akp = a[k * d + p], akq = a[k * d + q];
                    a[k * d + p] = c * akp - s * akq;
                    a[k * d + q] = s * akp + c * akq;
                }
                for (int k = 0; k < d; k++) { /* rows p, q */
                    double apk = a[p * d + k], aqk = a[q * d + k];
                    a[p * d + k] = c * apk - s * aqk;
                    a[q * d + k] = s * apk + c * aqk;
                }
                for (int k = 0; k < d; k++) {
                    double vkp = v[k * d + p], vkq = v[k * d + q];
                    v[k * d + p] = c * vkp - s * vkq;
                    v[k * d + q] = s * vkp + c * vkq;
                }
            }
    }
    for (int i = 0; i < d; i++) w[i] = a[i * d + i];
}

elbo_status elbo_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                                  const double *cov2, int d, double *work, double *out) {
    if (!mu1 || !cov1 || !mu2 || !cov2 || !out || d < 1 || d > 1024)
        return elbo_error(ELBO_ERR_ARG, "frechet: need 1 <= d <= 1024 and both Gaussians");
    const size_t dd = (size_t)d * d;
    double *own = NULL;
    if (!work && !(work = own = malloc((4 * dd + (size_t)d) * sizeof(double))))
        return elbo_error(ELBO_ERR_NOMEM, "frechet: out of memory for d = %d", d);
    double *a = work, *v = a + dd, *s = v + dd, *m = s + dd, *w = m + dd;
    /* s = cov1^1/2 = V diag(sqrt(w)) V^T */
    memcpy(a, cov1, dd * sizeof(double));
    elbo_sym_eigen(a, d, w, v);
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double e = 0;
            for (int k = 0; k < d; k++) e += v[i * d + k] * sqrt(fmax(w[k], 0.0)) * v[j * d + k];
            s[i * d + j] = e;
        }
    /* m = s cov2 s, symmetric; tr sqrt(m) = sum sqrt(eig) */
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double e = 0;
            for (int k = 0; k < d; k++) e += s[i * d + k] * cov2[k * d + j];
            a[i * d + j] = e;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < d; j++) {
            double e = 0;
            for (int k = 0; k < d; k++) e += a[i * d + k] * s[k * d + j];
            m[i * d + j] = e;
        }
    for (int i = 0; i < d; i++)
        for (int j = 0; j < i; j++) m[i * d + j] = m[j * d + i] = 0.5 * (m[i * d + j] + m[j * d + i]);
    elbo_sym_eigen(m, d, w, v);
    double tr = 0, dm = 0;
    for (int i = 0; i < d; i++) {
        tr += cov1[i * d + i] + cov2[i * d + i] - 2 * sqrt(fmax(w[i], 0.0));
        dm += (mu1[i] - mu2[i]) * (mu1[i] - mu2[i]);
    }
    free(own);
    *out = fmax(dm + tr, 0.0);
    return ELBO_OK;
}
