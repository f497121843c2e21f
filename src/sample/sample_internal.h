/* Pieces of the samplers (src/sample/diffusion_sample.c) that other solvers share: the
 * inverse-problem solvers (src/inverse) take the same ancestral step, so that with nothing
 * to condition on they are the ancestral sampler, bit for bit. */
#ifndef ELBO_SAMPLE_INTERNAL_H
#define ELBO_SAMPLE_INTERNAL_H

#include "elbo/diffusion.h"

/* One ancestral step x_s ~ p(x_s | x_t) = q(x_s | x_t, x = x0_hat) (Ho et al. 2020, alg. 2,
 * on any grid; VDM eq. 3, 4): x <- coef_xt x + coef_x x0_hat + sqrt(var) z, with z ~ N(0, I)
 * drawn into z[0..n) from rng when var > 0 (nothing drawn when var = 0). */
void elbo__ancestral_step(elbo_rng *rng, const elbo_posterior_coefs *q, float *x,
                          const float *x0_hat, float *z, int64_t n);

#endif
