/* Ancestral, DDIM and Heun samplers over a noise process and a denoiser callback; see
 * include/elbo/sample.h. */
#include "elbo/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *sampler_names[] = {"ancestral", "ddim", "heun"};

elbo_status elbo_sampler_parse(const char *name, elbo_sampler_kind *out) {
    for (int k = 0; name && k < 3; k++)
        if (strcmp(name, sampler_names[k]) == 0) {
            *out = (elbo_sampler_kind)k;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "sampler: unknown '%s' (ancestral, ddim, heun)",
                      name ? name : "(null)");
}

const char *elbo_sampler_name(elbo_sampler_kind k) { return (unsigned)k < 3 ? sampler_names[k] : "?"; }

void elbo_sampler_params_init(elbo_sampler_params *sp) {
    memset(sp, 0, sizeof *sp);
    sp->kind = ELBO_SAMPLER_ANCESTRAL;
    sp->steps = 100;
}

/* Probability-flow ODE velocity dx/dt = f x + g^2 (x - alpha x0_hat) / (2 sigma^2); v may
 * alias x0_hat. */
static void pf_ode_velocity(const elbo_noise_level *l, const float *x, const float *x0_hat,
                            float *v, int64_t n) {
    double c = l->g2 / (2.0 * l->sigma * l->sigma);
    for (int64_t i = 0; i < n; i++)
        v[i] = (float)(l->f * x[i] + c * ((double)x[i] - l->alpha * x0_hat[i]));
}

elbo_status elbo_diffusion_sample(const elbo_process *p, const elbo_sampler_params *sp,
                                  elbo_denoiser_fn denoise, void *user, float *x, int64_t n,
                                  int *nfe) {
    elbo_status st = elbo_process_check(p);
    if (st) return st;
    if (!sp || sp->steps < 1)
        return elbo_error(ELBO_ERR_ARG, "sampler: --steps must be >= 1, got %d", sp ? sp->steps : 0);
    if ((unsigned)sp->kind > ELBO_SAMPLER_HEUN)
        return elbo_error(ELBO_ERR_ARG, "sampler: unknown kind %d", (int)sp->kind);
    if (!(sp->eta >= 0 && sp->eta <= 1))
        return elbo_error(ELBO_ERR_ARG, "sampler ddim: --eta must be in [0, 1], got %g", sp->eta);
    if (!denoise || !x || n < 1) return elbo_error(ELBO_ERR_ARG, "sampler: no denoiser or no output");
    float *x0_hat = malloc((size_t)n * 3 * sizeof(float));
    if (!x0_hat) return elbo_error(ELBO_ERR_NOMEM, "sampler: out of memory for %lld values", (long long)n);
    float *z = x0_hat + n, *aux = z + n; /* noise; Heun's Euler point and velocity */
    elbo_rng rng;
    elbo_rng_init(&rng, sp->seed);
    elbo_rng_normal(&rng, x, (size_t)n, 0.0f, (float)elbo_process_prior_std(p));
    const int K = sp->steps;
    int calls = 0;
    elbo_noise_level lt, ls;
    if ((st = elbo_process_at(p, 1.0, &lt))) goto done;
    for (int i = K; i >= 1; i--) {
        if ((st = elbo_process_at(p, (double)(i - 1) / K, &ls))) goto done;
        if ((st = denoise(user, x, n, &lt, x0_hat))) goto done;
        calls++;
        if (sp->on_step) sp->on_step(sp->on_step_user, i, &lt, x, x0_hat, n);
        if (sp->kind == ELBO_SAMPLER_HEUN) {
            /* Euler to s, then the trapezoid of the velocities at t and at the Euler point */
            double h = ls.t - lt.t;
            float *v = z;
            pf_ode_velocity(&lt, x, x0_hat, v, n);
            for (int64_t j = 0; j < n; j++) aux[j] = (float)(x[j] + h * v[j]);
            if ((st = denoise(user, aux, n, &ls, x0_hat))) goto done;
            calls++;
            float *v_s = x0_hat; /* the velocity at the Euler point, over its x0_hat */
            pf_ode_velocity(&ls, aux, x0_hat, v_s, n);
            for (int64_t j = 0; j < n; j++) x[j] = (float)(x[j] + 0.5 * h * ((double)v[j] + v_s[j]));
        } else {
            elbo_posterior_coefs q;
            if ((st = elbo_posterior_coefs_at(&ls, &lt, &q))) goto done;
            double eta = sp->kind == ELBO_SAMPLER_ANCESTRAL ? 1.0 : sp->eta;
            double c2 = eta * eta * q.var, c = sqrt(c2);
            if (c > 0) elbo_rng_normal(&rng, z, (size_t)n, 0.0f, 1.0f);
            if (sp->kind == ELBO_SAMPLER_ANCESTRAL) {
                /* mean of q(x_s | x_t, x0_hat) plus its standard deviation times z */
                for (int64_t j = 0; j < n; j++)
                    x[j] = (float)(q.coef_xt * x[j] + q.coef_x * x0_hat[j] + c * z[j]);
            } else {
                /* eps_hat = (x_t - alpha_t x0_hat) / sigma_t */
                double d = sqrt(fmax(ls.sigma * ls.sigma - c2, 0.0)) / lt.sigma;
                for (int64_t j = 0; j < n; j++) {
                    double eps_hat_d = d * ((double)x[j] - lt.alpha * x0_hat[j]);
                    x[j] = (float)(ls.alpha * x0_hat[j] + eps_hat_d + (c > 0 ? c * z[j] : 0.0));
                }
            }
        }
        lt = ls;
    }
    /* the output: x0_hat at t = 0 */
    if ((st = denoise(user, x, n, &lt, x0_hat))) goto done;
    calls++;
    if (sp->on_step) sp->on_step(sp->on_step_user, 0, &lt, x, x0_hat, n);
    memcpy(x, x0_hat, (size_t)n * sizeof(float));
done:
    free(x0_hat);
    if (nfe) *nfe = calls;
    return st;
}
