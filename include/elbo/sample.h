/* elbo sample: samplers for diffusion models. A sampler sees the model only through a
 * denoiser callback x0_hat = D(x_t, t), as in DESIGN.md: the process (diffusion.h) gives
 * alpha, sigma and log-SNR, the model's parameterisation is converted to x0_hat by the
 * model, and every sampler runs any process (VP, VE, sub-VP) and any model.
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
 * The score view of the same denoiser (Song et al. 2021, score SDEs; Song & Ermon 2019, NCSN):
 * score(x_t) = grad log q_t(x_t) = (alpha x0_hat - x_t) / sigma^2, and the reverse-time SDE
 *   dx = [f x - g^2 score] dt + g dw  (t running from 1 to 0):
 *   em         Euler-Maruyama on the reverse SDE, step h = 1/K:
 *              x_s = x_t - h (f x_t - g^2 score) + sqrt(g^2 h) z
 *   pc         predictor-corrector (score SDE alg. 1-3): at each level, `corrector_steps`
 *              Langevin steps x += e score + sqrt(2 e) z with e = 2 a (snr ||z|| / ||score||)^2
 *              (norms per example, averaged over the batch; a = alpha_ts^2 of the step, 1 for
 *              VE), then the predictor: "reverse" (reverse diffusion: the forward step
 *              x_t = alpha_ts x_s + sqrt(var_ts) z read backwards, x_s = x_t - (alpha_ts - 1)
 *              x_t + var_ts score + sqrt(var_ts) z; score SDE eq. 46 and its
 *              ReverseDiffusionPredictor), "euler" (the em step) or "none"
 *   langevin   annealed Langevin dynamics (NCSN alg. 1): K levels t_i = i / (K - 1) from 1 to
 *              0, step a_i = langevin_eps sigma_i^2 / sigma_L^2 (sigma_L = sigma(0)), T =
 *              langevin_steps updates x += a_i / 2 score + sqrt(a_i) z at each level
 *   ode        the probability-flow ODE dx/dt = f x - g^2 score / 2 from t = 1 to 0 by adaptive
 *              Dormand-Prince 5(4) (ode.h) with rtol and atol, as score SDE's RK45 sampler
 * Each sampler makes one more call for the output, at t = 0: x0_hat = D(x_0, 0) (VDM's
 * decoder mean; for VE, NCSN's final denoising step x + sigma_L^2 score). Calls: K + 1
 * (heun 2K + 1, pc K (corrector_steps + 1) + 1 or with predictor none K corrector_steps + 1,
 * langevin K T + 1, ode as the solver needs).
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

typedef enum {
    ELBO_SAMPLER_ANCESTRAL = 0,
    ELBO_SAMPLER_DDIM,
    ELBO_SAMPLER_HEUN,
    ELBO_SAMPLER_EM,
    ELBO_SAMPLER_PC,
    ELBO_SAMPLER_LANGEVIN,
    ELBO_SAMPLER_ODE,
    ELBO_SAMPLER_COUNT
} elbo_sampler_kind;
/* ancestral|ddim|heun|em|pc|langevin|ode */
elbo_status elbo_sampler_parse(const char *name, elbo_sampler_kind *out);
const char *elbo_sampler_name(elbo_sampler_kind k);

typedef enum { ELBO_PC_REVERSE = 0, ELBO_PC_EULER, ELBO_PC_NONE } elbo_pc_predictor;
elbo_status elbo_pc_predictor_parse(const char *name,
                                    elbo_pc_predictor *out); /* reverse|euler|none */

typedef struct {
    elbo_sampler_kind kind;
    int steps;        /* K >= 1 */
    double eta;       /* ddim: in [0, 1] */
    uint64_t seed;    /* x_1 and the noise of each step */
    int64_t batch;    /* examples the n values hold (pc's per-example norms); 0: one */
    elbo_pc_predictor predictor; /* pc: reverse */
    int corrector_steps;         /* pc: Langevin steps per level, >= 0: 1 */
    double snr;                  /* pc: the corrector's signal-to-noise ratio r > 0: 0.16 */
    int langevin_steps;          /* langevin: T >= 1 updates per level: 100 */
    double langevin_eps;         /* langevin: the step scale eps > 0: 2e-5 (NCSN) */
    double rtol, atol;           /* ode: 1e-5, 1e-5 (score SDE) */
    elbo_sample_step_fn on_step; /* optional */
    void *on_step_user;
} elbo_sampler_params;
/* ancestral, 100 steps, eta 0, seed 0, no callback; the defaults above */
void elbo_sampler_params_init(elbo_sampler_params *sp);

/* Draws n values (a batch of images, flattened) into x. Allocates its scratch (3 n floats;
 * ode: the solver's 9 n doubles) once before the loop; nothing inside it. *nfe (optional) gets the
 * denoiser calls made. ELBO_ERR_ARG for bad params or process; a denoiser error is passed back. */
elbo_status elbo_diffusion_sample(const elbo_process *p, const elbo_sampler_params *sp,
                                  elbo_denoiser_fn denoise, void *user, float *x, int64_t n,
                                  int *nfe);

/* Tweedie's one-step denoiser of a Gaussian observation y = x + s n, n ~ N(0, I) (Efron
 * 2011): y is x_t / alpha at the level where sigma / alpha = s (log_snr = -2 log s), so
 * E[x | y] = D(alpha y, t), one denoiser call on the n values. work: n floats; *lvl
 * (optional) gets the level. ELBO_ERR_ARG when s is outside the process's noise range. */
elbo_status elbo_tweedie_denoise(const elbo_process *p, elbo_denoiser_fn denoise, void *user,
                                 const float *y, int64_t n, double s, float *work, float *x0_hat,
                                 elbo_noise_level *lvl);

/* T steps of Langevin dynamics at one level, x <- x + a/2 score(x) + sqrt(a) z (Song & Ermon
 * 2019, eq. 4), score from the denoiser as above; without annealing when called alone (the
 * failure NCSN sec. 3.2 describes: mode weights are not recovered). work: 2 n floats (on
 * return work[0..n) holds x0_hat at the last step's start); *calls (optional) is
 * incremented per denoiser call. */
elbo_status elbo_langevin(elbo_denoiser_fn denoise, void *user, const elbo_noise_level *l, double a,
                          int T, elbo_rng *rng, float *x, int64_t n, float *work, int *calls);

#ifdef __cplusplus
}
#endif
#endif
