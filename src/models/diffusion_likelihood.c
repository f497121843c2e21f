/* The probability-flow ODE likelihood of a diffusion model over a dataset, with uniform
 * dequantization of 8-bit data; see include/elbo/diffusion_model.h and likelihood.h. */
#include "elbo/diffusion_model.h"
#include "elbo/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836

elbo_status elbo_dequant_parse(const char *name, elbo_dequant_kind *out) {
    if (name && !strcmp(name, "uniform"))
        *out = ELBO_DEQUANT_UNIFORM;
    else if (name && !strcmp(name, "process"))
        *out = ELBO_DEQUANT_PROCESS;
    else
        return elbo_error(ELBO_ERR_ARG, "dequant: unknown '%s' (uniform, process)",
                          name ? name : "(null)");
    return ELBO_OK;
}

elbo_status elbo_diffusion_ode_likelihood(elbo_model *m, const elbo_dataset *ds, int batch,
                                          const elbo_ode_likelihood_params *lp,
                                          elbo_dequant_kind dequant, uint64_t seed,
                                          elbo_diffusion_ode_nll *out) {
    const elbo_diffusion_config *c = elbo_diffusion_config_of(m);
    if (!c) return elbo_error(ELBO_ERR_ARG, "ode likelihood: not a diffusion model");
    if (!ds || ds->n < 1 || batch < 1 || !lp || !out)
        return elbo_error(ELBO_ERR_ARG, "ode likelihood: bad argument");
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return elbo_error(ELBO_ERR_SHAPE,
                          "ode likelihood: the data's items are (%lld, %lld, %lld), "
                          "the model's (%lld, %lld, %lld)",
                          (long long)ds->c, (long long)ds->h, (long long)ds->w, (long long)m->c,
                          (long long)m->h, (long long)m->w);
    const int64_t D = m->c * m->h * m->w, B = batch < ds->n ? batch : ds->n;
    const double log_delta = log(2.0 / 255.0); /* the bin width of the [-1, 1] grid */
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t *idx = malloc((size_t)B * sizeof *idx);
    float *x = malloc((size_t)(3 * B * D) * sizeof *x), *u = x ? x + B * D : NULL;
    float *y = x ? x + 2 * B * D : NULL; /* the dequantized point, x_0 for process */
    elbo_noise_level zero;
    elbo_status st0 = elbo_process_at(&c->process, 0.0, &zero);
    if (st0) return st0;
    double *logp = malloc((size_t)(2 * B) * sizeof *logp), *prior = logp ? logp + B : NULL;
    elbo_status st = ELBO_OK;
    if (!ctx || !idx || !x || !logp)
        st = elbo_error(ELBO_ERR_NOMEM, "ode likelihood: out of memory");
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    double sum = 0, sum2 = 0, sum_prior = 0;
    int64_t nfe_total = 0;
    int batches = 0;
    for (int64_t i0 = 0; st == ELBO_OK && i0 < ds->n; i0 += B) {
        const int64_t b = ds->n - i0 < B ? ds->n - i0 : B;
        for (int64_t k = 0; k < b; k++) idx[k] = i0 + k;
        if ((st = elbo_dataset_batch(ds, idx, b, m->transform, 0, NULL, x, NULL))) break;
        if (!c->discrete) {
            memcpy(y, x, (size_t)(b * D) * sizeof *y);
        } else if (dequant == ELBO_DEQUANT_UNIFORM) {
            /* y = x_k + Delta (u - 1/2) */
            elbo_rng_uniform(&rng, u, (size_t)(b * D), 0.0f, 1.0f);
            for (int64_t i = 0; i < b * D; i++) y[i] = (float)(x[i] + (2.0 / 255.0) * (u[i] - 0.5));
        } else {
            /* x_0 = alpha_0 x + sigma_0 eps */
            elbo_rng_normal(&rng, u, (size_t)(b * D), 0.0f, 1.0f);
            for (int64_t i = 0; i < b * D; i++)
                y[i] = (float)(zero.alpha * x[i] + zero.sigma * u[i]);
        }
        elbo_diffusion_denoiser_state dst = {m, ctx, b, NULL, 0.0};
        elbo_ode_likelihood_params bl = *lp;
        /* the probes' stream apart from the dequantization's (seed) */
        bl.seed = lp->seed + 0x9E3779B97F4A7C15ull * (uint64_t)(batches + 1);
        int nfe = 0;
        st = elbo_ode_log_likelihood(&c->process, &bl, elbo_diffusion_denoiser_vjp, &dst, y, b, D,
                                     logp, prior, NULL, &nfe);
        if (st) break;
        for (int64_t k = 0; k < b; k++) {
            double nll = -logp[k];
            if (c->discrete && dequant == ELBO_DEQUANT_UNIFORM) nll -= (double)D * log_delta;
            if (c->discrete && dequant == ELBO_DEQUANT_PROCESS) {
                /* + log q(x_0 | x) - log p(x | x_0) */
                double lq = 0;
                for (int64_t i = 0; i < D; i++) lq += (double)u[k * D + i] * u[k * D + i];
                lq = -0.5 * (double)D * (LOG_2PI + 2.0 * log(zero.sigma)) - 0.5 * lq;
                nll += lq + elbo_diffusion_recon_8bit(&zero, x + k * D, u + k * D, D);
            }
            sum += nll;
            sum2 += nll * nll;
            sum_prior += -prior[k];
        }
        nfe_total += nfe;
        batches++;
    }
    if (st == ELBO_OK) {
        const double n = (double)ds->n, mean = sum / n;
        out->n = ds->n;
        out->nll_nats = mean;
        out->nll_se = ds->n > 1 ? sqrt(fmax(sum2 / n - mean * mean, 0.0) / (n - 1)) : 0.0;
        out->bits_per_dim = mean / ((double)D * log(2.0));
        out->prior_nats = sum_prior / n;
        out->nfe = nfe_total;
        out->batches = batches;
    }
    elbo_ctx_free(ctx);
    free(idx);
    free(x);
    free(logp);
    return st;
}
