/* Exact log-likelihood through the probability-flow ODE with a Hutchinson-Skilling (or exact)
 * trace; see include/elbo/likelihood.h. */
#include "elbo/gmm.h"
#include "elbo/likelihood.h"
#include "elbo/ode.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LOG_2PI 1.8378770664093454836

static const char *probe_names[] = {"rademacher", "gaussian", "exact"};

elbo_status elbo_probe_parse(const char *name, elbo_probe_kind *out) {
    for (int k = 0; name && k < 3; k++)
        if (strcmp(name, probe_names[k]) == 0) {
            *out = (elbo_probe_kind)k;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "probe: unknown '%s' (rademacher, gaussian, exact)",
                      name ? name : "(null)");
}

const char *elbo_probe_name(elbo_probe_kind k) { return (unsigned)k < 3 ? probe_names[k] : "?"; }

void elbo_ode_likelihood_params_init(elbo_ode_likelihood_params *lp) {
    memset(lp, 0, sizeof *lp);
    lp->probe = ELBO_PROBE_RADEMACHER;
    lp->rtol = 1e-5;
    lp->atol = 1e-5;
}

/* The augmented ODE: y = (x [B D], delta [B]),
 *   dx/dt = f x + c (x - alpha x0_hat),  d delta_b / dt = div v = (f + c) D - c alpha tr_b,
 * tr_b = eps_b^T J_b^T eps_b (Hutchinson) or sum_i e_i^T J_b^T e_i (exact). */
typedef struct {
    const elbo_process *p;
    elbo_probe_kind probe;
    elbo_denoiser_vjp_fn f;
    void *user;
    int64_t B, D;
    const float *eps;             /* the probes (B D) */
    float *xf, *x0_hat, *u, *vjp; /* B D each */
    int *calls;
} aug_state;

static elbo_status aug_fn(void *user, double t, const double *y, double *dydt, int64_t n) {
    aug_state *s = user;
    const int64_t B = s->B, D = s->D, N = B * D;
    elbo_noise_level l;
    elbo_status st = elbo_process_at(s->p, t < 0 ? 0 : t > 1 ? 1 : t, &l);
    if (st) return st;
    for (int64_t i = 0; i < N; i++) s->xf[i] = (float)y[i];
    double c = l.g2 / (2.0 * l.sigma * l.sigma);
    double *tr = dydt + N; /* the traces, then turned into div v */
    for (int64_t b = 0; b < B; b++) tr[b] = 0;
    if (s->probe != ELBO_PROBE_EXACT) {
        if ((st = s->f(s->user, s->xf, N, &l, s->eps, s->x0_hat, s->vjp))) return st;
        (*s->calls)++;
        for (int64_t b = 0; b < B; b++)
            for (int64_t i = 0; i < D; i++) tr[b] += (double)s->eps[b * D + i] * s->vjp[b * D + i];
    } else {
        for (int64_t k = 0; k < D; k++) {
            memset(s->u, 0, (size_t)N * sizeof *s->u);
            for (int64_t b = 0; b < B; b++) s->u[b * D + k] = 1.0f;
            if ((st = s->f(s->user, s->xf, N, &l, s->u, s->x0_hat, s->vjp))) return st;
            (*s->calls)++;
            for (int64_t b = 0; b < B; b++) tr[b] += s->vjp[b * D + k];
        }
    }
    for (int64_t i = 0; i < N; i++) dydt[i] = l.f * y[i] + c * (y[i] - l.alpha * s->x0_hat[i]);
    for (int64_t b = 0; b < B; b++) tr[b] = (l.f + c) * (double)D - c * l.alpha * tr[b];
    (void)n;
    return ELBO_OK;
}

elbo_status elbo_ode_log_likelihood(const elbo_process *p, const elbo_ode_likelihood_params *lp,
                                    elbo_denoiser_vjp_fn f, void *user, const float *x, int64_t B,
                                    int64_t D, double *logp, double *prior_logp, float *x1,
                                    int *nfe) {
    elbo_status st = elbo_process_check(p);
    if (st) return st;
    if (!lp || !f || !x || !logp || B < 1 || D < 1)
        return elbo_error(ELBO_ERR_ARG, "ode likelihood: missing arguments");
    if ((unsigned)lp->probe > ELBO_PROBE_EXACT)
        return elbo_error(ELBO_ERR_ARG, "ode likelihood: unknown probe %d", (int)lp->probe);
    if (lp->probe == ELBO_PROBE_EXACT && D > 64)
        return elbo_error(ELBO_ERR_ARG,
                          "ode likelihood: --probe exact needs D <= 64 values per "
                          "example (%lld here); use rademacher or gaussian",
                          (long long)D);
    if (!(lp->rtol > 0 && lp->atol > 0 && isfinite(lp->rtol) && isfinite(lp->atol)))
        return elbo_error(ELBO_ERR_ARG, "ode likelihood: --rtol and --atol must be > 0, got %g, %g",
                          lp->rtol, lp->atol);
    const int64_t N = B * D, n = N + B;
    double *y = malloc(((size_t)n + elbo_ode_work_size(n)) * sizeof(double) +
                       (size_t)(5 * N) * sizeof(float));
    if (!y)
        return elbo_error(ELBO_ERR_NOMEM, "ode likelihood: out of memory for %lld values",
                          (long long)N);
    float *eps = (float *)(y + n + elbo_ode_work_size(n));
    int calls = 0;
    aug_state s = {p,   lp->probe, f,           user,        B,           D,
                   eps, eps + N,   eps + 2 * N, eps + 3 * N, eps + 4 * N, &calls};
    elbo_rng rng;
    elbo_rng_init(&rng, lp->seed);
    if (lp->probe == ELBO_PROBE_RADEMACHER)
        elbo_rng_rademacher(&rng, eps, (size_t)N);
    else
        elbo_rng_normal(&rng, eps, (size_t)N, 0.0f, 1.0f);
    for (int64_t i = 0; i < N; i++) y[i] = x[i];
    for (int64_t b = 0; b < B; b++) y[N + b] = 0;
    elbo_ode_params op;
    elbo_ode_params_init(&op);
    op.rtol = lp->rtol;
    op.atol = lp->atol;
    st = elbo_ode_dopri5(aug_fn, &s, 0.0, 1.0, y, n, &op, y + n, NULL);
    if (st == ELBO_OK) {
        /* log p_1(x(1)) = log N(x(1); 0, prior_std^2 I) */
        double sd = elbo_process_prior_std(p);
        for (int64_t b = 0; b < B; b++) {
            double ss = 0;
            for (int64_t i = 0; i < D; i++) ss += y[b * D + i] * y[b * D + i];
            double lp1 = -0.5 * (double)D * (LOG_2PI + 2.0 * log(sd)) - 0.5 * ss / (sd * sd);
            if (prior_logp) prior_logp[b] = lp1;
            logp[b] = lp1 + y[N + b];
        }
        if (x1)
            for (int64_t i = 0; i < N; i++) x1[i] = (float)y[i];
    }
    free(y);
    if (nfe) *nfe = calls;
    return st;
}

elbo_status elbo_gmm_denoiser_vjp(void *gmm, const float *x_t, int64_t n, const elbo_noise_level *l,
                                  const float *u, float *x0_hat, float *vjp) {
    const elbo_gmm *g = gmm;
    const int d = g->d;
    if (d > 64 || n % d)
        return elbo_error(ELBO_ERR_ARG, "gmm denoiser: %lld values, not points of d = %d <= 64",
                          (long long)n, d);
    double x[64] = {0}, r[ELBO_GMM_MAX_K], sbar[64], m[64], sj[64];
    for (int64_t q = 0; q < n / d; q++) {
        for (int i = 0; i < d; i++) x[i] = x_t[q * d + i];
        elbo_gmm_log_density(g, l, x, r);
        double a = l->alpha;
        for (int i = 0; i < d; i++) sbar[i] = 0;
        for (int j = 0; j < g->k; j++) {
            if (r[j] == 0) continue;
            double v = a * a * g->std[j] * g->std[j] + l->sigma * l->sigma;
            for (int i = 0; i < d; i++) sbar[i] += r[j] * (a * g->mean[j * d + i] - x[i]) / v;
        }
        const float *uq = u + q * d;
        double out[64] = {0}, x0[64] = {0};
        for (int j = 0; j < g->k; j++) {
            if (r[j] == 0) continue;
            double s2 = g->std[j] * g->std[j], v = a * a * s2 + l->sigma * l->sigma, k = a * s2 / v;
            double mu = 0;
            for (int i = 0; i < d; i++) {
                m[i] = g->mean[j * d + i] + k * (x[i] - a * g->mean[j * d + i]);
                sj[i] = (a * g->mean[j * d + i] - x[i]) / v;
                mu += m[i] * uq[i];
                x0[i] += r[j] * m[i];
            }
            for (int i = 0; i < d; i++) out[i] += r[j] * (k * uq[i] + (sj[i] - sbar[i]) * mu);
        }
        for (int i = 0; i < d; i++) {
            x0_hat[q * d + i] = (float)x0[i];
            vjp[q * d + i] = (float)out[i];
        }
    }
    return ELBO_OK;
}
