/* elbo gmm: a Gaussian mixture whose noised marginals, scores, denoiser and class posterior
 * are known in closed form: the case with a known answer for samplers, likelihoods and
 * guidance (score SDE, NCSN and guidance tests; elbo score-field's analytic fields).
 *
 * Data: x ~ sum_j w_j N(mu_j, s_j^2 I) in d dimensions. Under a noise process level
 * (diffusion.h) x_t = alpha x + sigma eps, so
 *   q_t(x_t) = sum_j w_j N(x_t; alpha mu_j, v_j I),       v_j = alpha^2 s_j^2 + sigma^2,
 *   r_j(x_t) = q(j | x_t) = w_j N(x_t; alpha mu_j, v_j I) / q_t(x_t)   (responsibilities),
 *   score    = grad log q_t(x_t) = sum_j r_j (alpha mu_j - x_t) / v_j,
 *   E[x | x_t] = sum_j r_j (mu_j + (alpha s_j^2 / v_j)(x_t - alpha mu_j))
 *              = (x_t + sigma^2 score) / alpha   (Tweedie, for alpha > 0).
 * With labels y = j, r_j is the Bayes classifier p(y | x_t) and component j alone gives
 * the class-conditional score. Scalar double math; nothing allocates. */
#ifndef ELBO_GMM_H
#define ELBO_GMM_H

#include "diffusion.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ELBO_GMM_MAX_K 64

typedef struct {
    int k, d;             /* components (1 .. ELBO_GMM_MAX_K), dimensions */
    const double *weight; /* (k), positive, summing to 1 */
    const double *mean;   /* (k, d) */
    const double *std;    /* (k), > 0 */
    int component;        /* -1: the mixture; j >= 0: component j alone (p(x | y = j)) */
} elbo_gmm;

/* Checks k, d, weights (positive, sum 1 within 1e-9), std > 0, component in [-1, k). */
elbo_status elbo_gmm_check(const elbo_gmm *g);

/* log q_t(x) at one point x[0..d); the level's alpha and sigma (alpha = 1, sigma = 0: the
 * data density). Responsibilities into r[0..k) unless r is NULL. */
double elbo_gmm_log_density(const elbo_gmm *g, const elbo_noise_level *l, const double *x,
                            double *r);
/* score[0..d) = grad log q_t(x); returns log q_t(x). */
double elbo_gmm_score(const elbo_gmm *g, const elbo_noise_level *l, const double *x, double *score);

/* An elbo_denoiser_fn (sample.h) with user = const elbo_gmm *: x0_hat = E[x | x_t] for each
 * of the n / d points of x_t (n a multiple of d). */
elbo_status elbo_gmm_denoiser(void *gmm, const float *x_t, int64_t n, const elbo_noise_level *l,
                              float *x0_hat);

/* n points from the mixture (or its one component) into x (n, d), their components into
 * labels[0..n) unless NULL. */
elbo_status elbo_gmm_sample(const elbo_gmm *g, elbo_rng *rng, float *x, int32_t *labels, int64_t n);

/* toy:8gaussians of data.h as a mixture: 8 equal weights, means 4 (cos k pi/4, sin k pi/4) /
 * 1.414, std 0.5 / 1.414. The arrays are written into mean (16) and std, weight (8). */
void elbo_gmm_8gaussians(elbo_gmm *g, double *weight, double *mean, double *std);

#ifdef __cplusplus
}
#endif
#endif
