/* Diffusion posterior sampling (Chung et al. 2023, "Diffusion posterior sampling for general
 * noisy inverse problems", alg. 1): the ancestral sampler with a gradient step on E(x0_hat)
 * through the denoiser after each step; see include/elbo/inverse.h. */
#include "core/internal.h"
#include "sample/sample_internal.h"
#include "solvers_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const dps_step_names[] = {"likelihood", "norm", "pigdm"};

elbo_status elbo_dps_step_parse(const char *name, elbo_dps_step *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("dps step", dps_step_names, 3, name, &k);
    if (st == ELBO_OK) *out = (elbo_dps_step)k;
    return st;
}

void elbo_dps_params_init(elbo_dps_params *dp) {
    memset(dp, 0, sizeof *dp);
    dp->steps = 1000;
    dp->zeta = 1.0;
    dp->step = ELBO_DPS_NORM;
    dp->seed = 0;
}

static elbo_status dps_check(const elbo_energy *energy, const elbo_dps_params *dp) {
    if (!energy || !energy->fn)
        return elbo_error(ELBO_ERR_ARG, "dps_solve: energy (or its fn) is NULL");
    if (!dp) return elbo_error(ELBO_ERR_ARG, "dps_solve: params are NULL");
    if (dp->steps < 1)
        return elbo_error(ELBO_ERR_ARG, "dps_solve: steps must be >= 1, got %d", dp->steps);
    if (!(dp->aat >= 0) || !isfinite(dp->aat))
        return elbo_error(ELBO_ERR_ARG, "dps_solve: aat must be >= 0 and finite, got %g", dp->aat);
    if (!(dp->zeta > 0) || !isfinite(dp->zeta))
        return elbo_error(ELBO_ERR_ARG, "dps_solve: zeta must be > 0 and finite, got %g", dp->zeta);
    if (dp->step != ELBO_DPS_LIKELIHOOD && dp->step != ELBO_DPS_NORM && dp->step != ELBO_DPS_PIGDM)
        return elbo_error(ELBO_ERR_ARG, "dps_solve: unknown step %d", (int)dp->step);
    if (dp->step != ELBO_DPS_LIKELIHOOD &&
        (!(energy->norm_scale > 0) || !isfinite(energy->norm_scale)))
        return elbo_error(ELBO_ERR_ARG,
                          "dps_solve: energy->norm_scale must be > 0 and finite for the norm and "
                          "pigdm steps, "
                          "got %g",
                          energy->norm_scale);
    return ELBO_OK;
}

/* The cotangent u = grad E(x0_hat) (and E's values when wanted). */
typedef struct {
    const elbo_energy *energy;
    int64_t B;
    double *value;
} dps_cot_state;

static elbo_status dps_cotangent(void *user, const float *x0_hat, int64_t n, float *u) {
    const dps_cot_state *c = user;
    (void)n;
    return c->energy->fn(c->energy->user, x0_hat, c->B, c->value, u);
}

/* On the grid t_i = i / K from x_1 ~ N(0, prior_std^2 I), for i = K .. 1 (t = t_i, s = t_{i-1}):
 *   x0_hat = D(x_t, t),  g = grad E(x0_hat),  vjp = (d x0_hat / d x_t)^T g,
 *   likelihood  x0_hat <- x0_hat - zeta (sigma_t^2 / alpha_t) vjp, then the ancestral step
 *               (pigdm: times s^2 / (s^2 + c r_t^2), r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2),
 *               c = aat)
 *               x_s ~ q(x_s | x_t, x = x0_hat): guidance by grad_{x_t} log p(y | x_t) ~
 *               -grad E(x0_hat(x_t)) at scale zeta, as classifier guidance (guidance.h)
 *   norm        x_s ~ q(x_s | x_t, x = x0_hat) (the ancestral step of the sampler, its RNG
 *               draws), then x_s -= zeta_b vjp per image b with
 *               zeta_b = zeta s^2 / ||r_b||, ||r_b|| = s sqrt(2 E_b) (s = norm_scale), i.e.
 *                 x_s -= zeta grad_{x_t} ||r_b|| since grad ||r|| = s^2 grad E / ||r||
 *                 (the released code's x_t -= scale grad ||y - A x0_hat||; 0 when r_b = 0);
 * then the output x0_hat = D(x_0, 0). Calls: K fused VJP + 1 (K denoiser + K VJP + 1
 * without prior->denoise_vjp_at). */
elbo_status elbo_dps_solve(const elbo_prior *prior, const elbo_energy *energy,
                           const elbo_dps_params *dp, float *x, int64_t B) {
    int64_t D = 0;
    elbo_status st = elbo__solver_check("dps_solve", prior, 1, x, B, &D);
    if (st) return st;
    if ((st = dps_check(energy, dp))) return st;
    const int64_t n = B * D;
    const int K = dp->steps, norm = dp->step == ELBO_DPS_NORM;
    /* scratch, once: x0_hat, grad E, vjp, z (also the VJP call's x0_hat); E's values, zeta_b */
    float *x0_hat = malloc((size_t)n * 4 * sizeof(float) + (size_t)B * 2 * sizeof(double));
    if (!x0_hat)
        return elbo_error(ELBO_ERR_NOMEM, "dps_solve: out of memory for %lld values", (long long)n);
    float *g = x0_hat + n, *vjp = g + n, *z = vjp + n;
    double *value = (double *)(z + n), *zeta_b = value + B;
    const elbo_process *p = prior->process;
    elbo_rng rng;
    elbo_rng_init(&rng, dp->seed);
    elbo_rng_normal(&rng, x, (size_t)n, 0.0f, (float)elbo_process_prior_std(p));
    elbo_noise_level lt, ls;
    if ((st = elbo_process_at(p, 1.0, &lt))) goto done;
    for (int i = K; i >= 1; i--) {
        if ((st = elbo_process_at(p, (double)(i - 1) / K, &ls))) goto done;
        dps_cot_state cs = {energy, B, norm ? value : NULL};
        if ((st = elbo__prior_vjp_at(prior, x, n, &lt, dps_cotangent, &cs, x0_hat, g, vjp, z)))
            goto done;
        for (int64_t b = 0; b < B; b++) {
            if (!norm) {
                zeta_b[b] = dp->zeta;
                continue;
            }
            if (!(value[b] >= 0) || !isfinite(value[b])) {
                st = elbo_error(ELBO_ERR_ARG,
                                "dps_solve: the norm step needs an energy >= 0, got E = %g for "
                                "image %lld",
                                value[b], (long long)b);
                goto done;
            }
            const double s = energy->norm_scale, r = s * sqrt(2.0 * value[b]);
            zeta_b[b] = r > 0 ? dp->zeta * s * s / r : 0.0;
        }
        elbo_posterior_coefs q;
        if ((st = elbo_posterior_coefs_at(&ls, &lt, &q))) goto done;
        if (!norm) {
            /* guidance through Tweedie: x0_hat - zeta (sigma_t^2 / alpha_t) grad E; pigdm:
             * E's variance s^2 inflated to s^2 + r_t^2, r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2) */
            double c = dp->zeta * lt.sigma * lt.sigma / lt.alpha;
            if (dp->step == ELBO_DPS_PIGDM) {
                const double s2 = energy->norm_scale * energy->norm_scale,
                             cA = dp->aat > 0 ? dp->aat : 1.0,
                             r2 = cA * lt.sigma * lt.sigma /
                                  (lt.alpha * lt.alpha + lt.sigma * lt.sigma);
                c *= s2 / (s2 + r2);
            }
            for (int64_t j = 0; j < n; j++) x0_hat[j] = (float)(x0_hat[j] - c * vjp[j]);
        }
        elbo__ancestral_step(&rng, &q, x, x0_hat, z, n);
        if (norm)
            for (int64_t b = 0; b < B; b++)
                for (int64_t j = b * D; j < (b + 1) * D; j++)
                    x[j] = (float)(x[j] - zeta_b[b] * vjp[j]);
        lt = ls;
    }
    /* the output: x0_hat at t = 0 */
    if ((st = prior->denoise(prior->denoise_user, x, n, &lt, x0_hat))) goto done;
    if (!elbo__all_finite(x0_hat, n)) {
        st = elbo_error(ELBO_ERR_STATE, "dps_solve: the samples diverged (values not finite); "
                                        "lower zeta or use the norm step");
        goto done;
    }
    memcpy(x, x0_hat, (size_t)n * sizeof(float));
done:
    free(x0_hat);
    return st;
}
