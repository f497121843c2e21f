/* elbo likelihood: exact log-likelihood of a diffusion or score model through its
 * probability-flow ODE (Song et al. 2021, score SDE sec. 4.3 and app. D.2; Chen et al. 2018,
 * instantaneous change of variables; Grathwohl et al. 2019, FFJORD).
 *
 * With v(x, t) = f x - g^2 score / 2 = f x + c (x - alpha x0_hat),  c = g^2 / (2 sigma^2),
 * the ODE dx/dt = v carries q_0 to q_1 and
 *   log p_0(x(0)) = log p_1(x(1)) + int_0^1 div v(x(t), t) dt,
 *   div v = (f + c) D - c alpha tr(d x0_hat / d x_t),
 * with p_1 = N(0, prior_std^2 I). The trace is Hutchinson-Skilling's estimate eps^T J eps
 * (E[eps eps^T] = I: Rademacher or Gaussian eps, one draw per example held fixed along the
 * path, as score SDE), or exact from D vector-Jacobian products for small D. The augmented
 * state (x, delta) is integrated from t = 0 to 1 by adaptive Dormand-Prince 5(4) (ode.h).
 *
 * 8-bit data: the model's data are the grid x_k = 2k/255 - 1 in [-1, 1], bins of width
 * Delta = 2/255 around them. Uniform dequantization y = x_k + Delta (u - 1/2), u ~ U(0, 1)^D
 * gives log P(k) >= E_u[log p(y)] + D log Delta (Theis et al. 2016), so
 *   bits/dim = -(log p(y) + D log Delta) / (D ln 2)
 * is an upper bound on the discrete model's bits/dim, never negative in expectation. Scoring
 * p at the grid points themselves (no u) would reward spikes there without bound. */
#ifndef ELBO_LIKELIHOOD_H
#define ELBO_LIKELIHOOD_H

#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* x0_hat = D(x_t, t) as elbo_denoiser_fn, and vjp = (d x0_hat / d x_t)^T u (each example's
 * Jacobian; the n values of x_t, u and vjp hold the batch). */
typedef elbo_status (*elbo_denoiser_vjp_fn)(void *user, const float *x_t, int64_t n,
                                            const elbo_noise_level *lvl, const float *u,
                                            float *x0_hat, float *vjp);
/* u[0..n) = a cotangent formed from x0_hat[0..n) (e.g. grad E(x0_hat) for DPS). */
typedef elbo_status (*elbo_cotangent_fn)(void *user, const float *x0_hat, int64_t n, float *u);
/* The VJP at a cotangent that depends on the output: x0_hat = D(x_t, t), u = cot(x0_hat),
 * vjp = (d x0_hat / d x_t)^T u, from one forward pass (with elbo_denoiser_vjp_fn, u is needed
 * before the forward, so such a caller pays a second one). */
typedef elbo_status (*elbo_denoiser_vjp_at_fn)(void *user, const float *x_t, int64_t n,
                                               const elbo_noise_level *lvl, elbo_cotangent_fn cot,
                                               void *cot_user, float *x0_hat, float *u,
                                               float *vjp);

typedef enum { ELBO_PROBE_RADEMACHER = 0, ELBO_PROBE_GAUSSIAN, ELBO_PROBE_EXACT } elbo_probe_kind;
elbo_status elbo_probe_parse(const char *name,
                             elbo_probe_kind *out); /* rademacher|gaussian|exact */
const char *elbo_probe_name(elbo_probe_kind k);

typedef struct {
    elbo_probe_kind probe; /* rademacher */
    double rtol, atol;     /* 1e-5, 1e-5 (score SDE) */
    uint64_t seed;         /* the probes */
} elbo_ode_likelihood_params;
void elbo_ode_likelihood_params_init(elbo_ode_likelihood_params *lp);

/* log p_0(x) for B examples of D values x[0 .. B D) taken as the process's x_0: logp[b] in
 * nats; optional: prior_logp[b] = log p_1(x_b(1)), x1[0 .. B D) = x(1) (the ODE's latent),
 * *nfe the VJP calls (an exact trace makes D per ODE evaluation). The exact probe needs
 * D <= 64. Allocates its work once. */
elbo_status elbo_ode_log_likelihood(const elbo_process *p, const elbo_ode_likelihood_params *lp,
                                    elbo_denoiser_vjp_fn f, void *user, const float *x, int64_t B,
                                    int64_t D, double *logp, double *prior_logp, float *x1,
                                    int *nfe);

/* For a Gaussian mixture (gmm.h): the denoiser and its exact VJP,
 *   d x0_hat / d x_t = sum_j r_j k_j I + sum_j r_j m_j (s_j - s_bar)^T,
 * m_j = mu_j + k_j (x_t - alpha mu_j), k_j = alpha s_j^2 / v_j, s_j = (alpha mu_j - x_t) / v_j,
 * s_bar = sum_j r_j s_j (from d r_j / d x_t = r_j (s_j - s_bar)). user = const elbo_gmm *. */
elbo_status elbo_gmm_denoiser_vjp(void *gmm, const float *x_t, int64_t n, const elbo_noise_level *l,
                                  const float *u, float *x0_hat, float *vjp);

#ifdef __cplusplus
}
#endif
#endif
