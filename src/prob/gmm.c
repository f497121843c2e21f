/* The Gaussian mixture of include/elbo/gmm.h: noised marginals, score, denoiser, sampling. */
#include "elbo/gmm.h"

#include <math.h>

#define LOG_2PI 1.8378770664093454836

elbo_status elbo_gmm_check(const elbo_gmm *g) {
    if (!g || g->k < 1 || g->k > ELBO_GMM_MAX_K || g->d < 1)
        return elbo_error(ELBO_ERR_ARG, "gmm: need 1..%d components and d >= 1", ELBO_GMM_MAX_K);
    if (!g->weight || !g->mean || !g->std) return elbo_error(ELBO_ERR_ARG, "gmm: missing arrays");
    double sum = 0;
    for (int j = 0; j < g->k; j++) {
        if (!(g->weight[j] > 0))
            return elbo_error(ELBO_ERR_ARG, "gmm: weight %d is %g, not > 0", j, g->weight[j]);
        if (!(g->std[j] > 0) || !isfinite(g->std[j]))
            return elbo_error(ELBO_ERR_ARG, "gmm: std %d is %g, not > 0", j, g->std[j]);
        sum += g->weight[j];
    }
    if (fabs(sum - 1) > 1e-9)
        return elbo_error(ELBO_ERR_ARG, "gmm: weights sum to %.12g, not 1", sum);
    if (g->component < -1 || g->component >= g->k)
        return elbo_error(ELBO_ERR_ARG, "gmm: component %d not in [-1, %d)", g->component, g->k);
    return ELBO_OK;
}

/* log w_j + log N(x; alpha mu_j, v_j I) for each active j into lp (the others -inf);
 * returns their log-sum-exp and turns lp into r_j. */
static double log_joint(const elbo_gmm *g, const elbo_noise_level *l, const double *x, double *lp) {
    double m = -INFINITY;
    for (int j = 0; j < g->k; j++) {
        if (g->component >= 0 && j != g->component) {
            lp[j] = -INFINITY;
            continue;
        }
        double v = l->alpha * l->alpha * g->std[j] * g->std[j] + l->sigma * l->sigma, d2 = 0;
        for (int i = 0; i < g->d; i++) {
            double e = x[i] - l->alpha * g->mean[j * g->d + i];
            d2 += e * e;
        }
        double wj = g->component >= 0 ? 1.0 : g->weight[j];
        lp[j] = log(wj) - 0.5 * g->d * (LOG_2PI + log(v)) - 0.5 * d2 / v;
        if (lp[j] > m) m = lp[j];
    }
    double s = 0;
    for (int j = 0; j < g->k; j++) s += exp(lp[j] - m);
    double lse = m + log(s);
    for (int j = 0; j < g->k; j++) lp[j] = exp(lp[j] - lse);
    return lse;
}

double elbo_gmm_log_density(const elbo_gmm *g, const elbo_noise_level *l, const double *x,
                            double *r) {
    double buf[ELBO_GMM_MAX_K];
    double lse = log_joint(g, l, x, buf);
    if (r)
        for (int j = 0; j < g->k; j++) r[j] = buf[j];
    return lse;
}

double elbo_gmm_score(const elbo_gmm *g, const elbo_noise_level *l, const double *x,
                      double *score) {
    double r[ELBO_GMM_MAX_K];
    double lse = log_joint(g, l, x, r);
    for (int i = 0; i < g->d; i++) score[i] = 0;
    for (int j = 0; j < g->k; j++) {
        if (r[j] == 0) continue;
        double v = l->alpha * l->alpha * g->std[j] * g->std[j] + l->sigma * l->sigma;
        for (int i = 0; i < g->d; i++)
            score[i] += r[j] * (l->alpha * g->mean[j * g->d + i] - x[i]) / v;
    }
    return lse;
}

/* E[x | x_t] = sum_j r_j (mu_j + (alpha s_j^2 / v_j)(x_t - alpha mu_j)), which needs no
 * division by alpha. */
elbo_status elbo_gmm_denoiser(void *gmm, const float *x_t, int64_t n, const elbo_noise_level *l,
                              float *x0_hat) {
    const elbo_gmm *g = gmm;
    if (n % g->d)
        return elbo_error(ELBO_ERR_ARG, "gmm denoiser: %lld values, not points of %d", (long long)n,
                          g->d);
    if (g->d > 64) return elbo_error(ELBO_ERR_ARG, "gmm denoiser: d = %d > 64", g->d);
    double x[64] = {0}, r[ELBO_GMM_MAX_K];
    for (int64_t p = 0; p < n / g->d; p++) {
        for (int i = 0; i < g->d; i++) x[i] = x_t[p * g->d + i];
        log_joint(g, l, x, r);
        for (int i = 0; i < g->d; i++) {
            double e = 0;
            for (int j = 0; j < g->k; j++) {
                if (r[j] == 0) continue;
                double s2 = g->std[j] * g->std[j],
                       v = l->alpha * l->alpha * s2 + l->sigma * l->sigma;
                double mu = g->mean[j * g->d + i];
                e += r[j] * (mu + l->alpha * s2 / v * (x[i] - l->alpha * mu));
            }
            x0_hat[p * g->d + i] = (float)e;
        }
    }
    return ELBO_OK;
}

elbo_status elbo_gmm_sample(const elbo_gmm *g, elbo_rng *rng, float *x, int32_t *labels,
                            int64_t n) {
    elbo_status st = elbo_gmm_check(g);
    if (st) return st;
    for (int64_t p = 0; p < n; p++) {
        int j = g->component;
        if (j < 0) {
            float u;
            elbo_rng_uniform(rng, &u, 1, 0.0f, 1.0f);
            double c = 0;
            for (j = 0; j < g->k - 1; j++)
                if (u < (c += g->weight[j])) break;
        }
        elbo_rng_normal(rng, x + p * g->d, (size_t)g->d, 0.0f, 1.0f);
        for (int i = 0; i < g->d; i++)
            x[p * g->d + i] = (float)(g->mean[j * g->d + i] + g->std[j] * x[p * g->d + i]);
        if (labels) labels[p] = j;
    }
    return ELBO_OK;
}

void elbo_gmm_8gaussians(elbo_gmm *g, double *weight, double *mean, double *std) {
    for (int j = 0; j < 8; j++) {
        weight[j] = 1.0 / 8;
        std[j] = 0.5 / 1.414;
        mean[2 * j] = 4 * cos(j * M_PI / 4) / 1.414;
        mean[2 * j + 1] = 4 * sin(j * M_PI / 4) / 1.414;
    }
    g->k = 8;
    g->d = 2;
    g->weight = weight;
    g->mean = mean;
    g->std = std;
    g->component = -1;
}
