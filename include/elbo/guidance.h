/* elbo guidance: conditional sampling from an unconditional or conditional diffusion model,
 * as a denoiser that wraps another (sample.h), so every sampler takes it.
 *
 * Classifier guidance (Dhariwal & Nichol 2021; Song et al. 2021, score SDE sec. 5): with a
 * classifier p_phi(y | x_t, t) of the noised data, the guided score
 *   score_s(x_t | y) = score(x_t) + s grad_x log p_phi(y | x_t, t)
 * is the score of p_t(x_t) p_phi(y | x_t)^s / Z; s = 1 is p_t(x_t | y) exactly. Through
 * Tweedie's formula the denoiser becomes
 *   x0_hat_s = (x_t + sigma^2 score_s) / alpha = x0_hat + s (sigma^2 / alpha) grad log p_phi,
 * which for eps-prediction is guided-diffusion's eps_hat - s sigma grad log p_phi.
 * Here s is the classifier scale (guided-diffusion's --classifier_scale).
 *
 * Classifier-free guidance (Ho & Salimans 2021): one network with a null label,
 *   eps_w = (1 + w) eps(x_t, y) - w eps(x_t, null),
 * w = 0 plain conditional sampling (their convention; others write the same as a guidance
 * scale gamma = 1 + w, as in Stable Diffusion's cfg_scale, where gamma = 1 is conditional).
 * Since eps = (x_t - alpha x0) / sigma is affine in x0 at fixed x_t, the same mix holds for
 * x0_hat: x0_w = (1 + w) x0(x_t, y) - w x0(x_t, null) (elbo_cfg_combine). With an exact
 * model, w corresponds to classifier guidance with s = 1 + w by the implicit classifier
 * p(y | x_t) proportional to p(x_t | y) / p(x_t). */
#ifndef ELBO_GUIDANCE_H
#define ELBO_GUIDANCE_H

#include "gmm.h"
#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* grad[0..n) = grad_x log p(y_b | x_t, t) for each of the B = n / d examples of x_t with
 * labels[b] (the classifier's log-probabilities into log_prob[b] unless NULL). */
typedef elbo_status (*elbo_classifier_grad_fn)(void *user, const float *x_t, int64_t n,
                                               const elbo_noise_level *lvl,
                                               const int32_t *labels, float *grad,
                                               double *log_prob);

/* The state of elbo_guided_denoiser: a denoiser, a classifier's gradient, the labels of the
 * batch and the classifier scale s. work: n floats of scratch, owned by the caller. */
typedef struct {
    elbo_denoiser_fn denoise;
    void *denoise_user;
    elbo_classifier_grad_fn classifier;
    void *classifier_user;
    const int32_t *labels;
    double scale;
    float *work;
} elbo_guided_state;

/* x0_hat_s = x0_hat + s (sigma^2 / alpha) grad log p_phi(y | x_t, t); an elbo_denoiser_fn
 * with user = elbo_guided_state *. */
elbo_status elbo_guided_denoiser(void *state, const float *x_t, int64_t n,
                                 const elbo_noise_level *lvl, float *x0_hat);

/* out = (1 + w) x0_cond - w x0_uncond (classifier-free guidance in x0 form); out may alias
 * either input. */
void elbo_cfg_combine(const float *x0_cond, const float *x0_uncond, double w, float *out,
                      int64_t n);

/* The Bayes classifier of a labelled Gaussian mixture (label = component) under the
 * process: grad log r_y(x_t) = s_y(x_t) - score(x_t), s_j = (alpha mu_j - x_t) / v_j the
 * component's score (gmm.h); user = const elbo_gmm * (its component field is ignored). */
elbo_status elbo_gmm_classifier_grad(void *gmm, const float *x_t, int64_t n,
                                     const elbo_noise_level *lvl, const int32_t *labels,
                                     float *grad, double *log_prob);

#ifdef __cplusplus
}
#endif
#endif
