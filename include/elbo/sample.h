/* elbo sample: samplers for diffusion models. A sampler sees the model only through a
 * denoiser callback x0_hat = D(x_t, t), as in DESIGN.md: the process (diffusion.h) gives
 * alpha, sigma and log-SNR, the model's parameterisation is converted to x0_hat by the
 * model, and the same three samplers run any process (VP, VE, sub-VP) and any model.
 *
 * Times run down the grid t_i = i / K, i = K .. 0, from x_1 ~ N(0, prior_std^2 I); the
 * output is x0_hat = D(x_0, 0) at the last level (VDM's decoder mean at t = 0).
 *   ancestral  x_s ~ p(x_s|x_t) = q(x_s | x_t, x = x0_hat): the generative model of the
 *              bound, DDPM's sampler (Ho et al. 2020, alg. 2) on any grid
 *   ddim       x_s = alpha_s x0_hat + sqrt(sigma_s^2 - c^2) eps_hat + c z, c^2 = eta^2 var(
 *              q(x_s|x_t,x)) (Song et al. 2021, eq. 12); eta = 1 is ancestral, eta = 0 the
 *              deterministic DDIM, a first-order solver of the probability-flow ODE
 *   heun       Heun's method on the probability-flow ODE (Song et al. 2021, score SDE eq. 13;
 *              Karras et al. 2022 alg. 1): dx/dt = f x - g^2 score / 2
 *                                                = f x + g^2 (x - alpha x0_hat) / (2 sigma^2),
 *              two denoiser calls a step, second order.
 * Each sampler makes one more call for the output, at t = 0: K + 1 calls (heun 2K + 1).
 */
#ifndef ELBO_SAMPLE_H
#define ELBO_SAMPLE_H

#include "diffusion.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x0_hat[0..n) = E[x | x_t] as the model estimates it, at the level lvl (the same t for all
 * n values). A non-zero status stops the sampler, which returns it. */
typedef elbo_status (*elbo_denoiser_fn)(void *user, const float *x_t, int64_t n,
                                        const elbo_noise_level *lvl, float *x0_hat);
/* Called after each denoiser evaluation of the main chain, for trajectories: step i (K ..
 * 0), the current x_t and its x0_hat. */
typedef void (*elbo_sample_step_fn)(void *user, int i, const elbo_noise_level *lvl,
                                    const float *x_t, const float *x0_hat, int64_t n);

typedef enum { ELBO_SAMPLER_ANCESTRAL = 0, ELBO_SAMPLER_DDIM, ELBO_SAMPLER_HEUN } elbo_sampler_kind;
elbo_status elbo_sampler_parse(const char *name, elbo_sampler_kind *out); /* ancestral|ddim|heun */
const char *elbo_sampler_name(elbo_sampler_kind k);

typedef struct {
    elbo_sampler_kind kind;
    int steps;        /* K >= 1 */
    double eta;       /* ddim: in [0, 1] */
    uint64_t seed;    /* x_1 and the noise of each step */
    elbo_sample_step_fn on_step; /* optional */
    void *on_step_user;
} elbo_sampler_params;
/* ancestral, 100 steps, eta 0, seed 0, no callback */
void elbo_sampler_params_init(elbo_sampler_params *sp);

/* Draws n values (a batch of images, flattened) into x. Allocates its scratch (3 n floats)
 * once before the loop; nothing inside it. *nfe (optional) gets the denoiser calls made.
 * ELBO_ERR_ARG for bad params or process; a denoiser error is passed back. */
elbo_status elbo_diffusion_sample(const elbo_process *p, const elbo_sampler_params *sp,
                                  elbo_denoiser_fn denoise, void *user, float *x, int64_t n,
                                  int *nfe);

#ifdef __cplusplus
}
#endif
#endif
