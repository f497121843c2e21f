/* Classifier guidance as a wrapping denoiser, the classifier-free mix, and a Gaussian
 * mixture's Bayes classifier; see include/elbo/guidance.h. */
#include "elbo/guidance.h"

#include <math.h>

elbo_status elbo_guided_denoiser(void *state, const float *x_t, int64_t n,
                                 const elbo_noise_level *lvl, float *x0_hat) {
    elbo_guided_state *g = state;
    if (!g || !g->denoise || !g->classifier || !g->labels || !g->work)
        return elbo_error(ELBO_ERR_ARG, "guidance: incomplete state");
    elbo_status st = g->denoise(g->denoise_user, x_t, n, lvl, x0_hat);
    if (st || g->scale == 0.0) return st;
    if ((st = g->classifier(g->classifier_user, x_t, n, lvl, g->labels, g->work, NULL))) return st;
    /* x0_hat + s (sigma^2 / alpha) grad log p(y | x_t) */
    const double c = g->scale * lvl->sigma * lvl->sigma / lvl->alpha;
    for (int64_t i = 0; i < n; i++) x0_hat[i] = (float)(x0_hat[i] + c * g->work[i]);
    return ELBO_OK;
}

void elbo_cfg_combine(const float *x0_cond, const float *x0_uncond, double w, float *out,
                      int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = (float)((1.0 + w) * x0_cond[i] - w * (double)x0_uncond[i]);
}

elbo_status elbo_gmm_classifier_grad(void *gmm, const float *x_t, int64_t n,
                                     const elbo_noise_level *lvl, const int32_t *labels,
                                     float *grad, double *log_prob) {
    elbo_gmm g = *(const elbo_gmm *)gmm;
    g.component = -1;
    const int d = g.d;
    if (d > 64 || n % d)
        return elbo_error(ELBO_ERR_ARG, "gmm classifier: %lld values, not points of d = %d <= 64",
                          (long long)n, d);
    double x[64] = {0}, r[ELBO_GMM_MAX_K], sbar[64];
    for (int64_t q = 0; q < n / d; q++) {
        const int y = labels[q];
        if (y < 0 || y >= g.k)
            return elbo_error(ELBO_ERR_ARG, "gmm classifier: label %d not in [0, %d)", y, g.k);
        for (int i = 0; i < d; i++) x[i] = x_t[q * d + i];
        elbo_gmm_score(&g, lvl, x, sbar);
        elbo_gmm_log_density(&g, lvl, x, r);
        const double a = lvl->alpha;
        const double v = a * a * g.std[y] * g.std[y] + lvl->sigma * lvl->sigma;
        for (int i = 0; i < d; i++)
            grad[q * d + i] = (float)((a * g.mean[y * d + i] - x[i]) / v - sbar[i]);
        if (log_prob) log_prob[q] = log(r[y]);
    }
    return ELBO_OK;
}
