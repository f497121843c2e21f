/* Plug-and-play optimisation with a diffusion prior (Graikos et al. 2022, "Diffusion models
 * as plug-and-play priors"): Adam on L(x) = w(t) ||eps - eps_hat(alpha x + sigma eps, t)||^2
 * + E(x) with the gradient through the denoiser; see include/elbo/inverse.h. */
#include "core/internal.h"
#include "solvers_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const pnp_schedule_names[] = {"anneal", "uniform"};

elbo_status elbo_pnp_schedule_parse(const char *name, elbo_pnp_schedule *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("pnp schedule", pnp_schedule_names, 2, name, &k);
    if (st == ELBO_OK) *out = (elbo_pnp_schedule)k;
    return st;
}

static const char *const pnp_weighting_names[] = {"elbo", "simple"};

elbo_status elbo_pnp_weighting_parse(const char *name, elbo_pnp_weighting *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("pnp weighting", pnp_weighting_names, 2, name, &k);
    if (st == ELBO_OK) *out = (elbo_pnp_weighting)k;
    return st;
}

void elbo_pnp_params_init(elbo_pnp_params *pp) {
    memset(pp, 0, sizeof *pp);
    pp->steps = 1000;
    pp->lr = 0.01;
    pp->schedule = ELBO_PNP_ANNEAL;
    pp->t_min = 0.02;
    pp->t_max = 1.0;
    pp->prior_weight = 1.0;
    pp->weighting = ELBO_PNP_WEIGHT_ELBO;
    pp->energy_decay = 0;
    pp->seed = 0;
}

/* The paper's annealed time (their MNIST notebook): t_i = clamp((1 - i/N)(1 + cos(i/50) / 4)
 * t_max, t_min, t_max), high to low noise over the N steps. */
static double pnp_anneal_t(int i, int N, double t_min, double t_max) {
    double t = (1.0 - (double)i / N) * (1.0 + cos(i / 50.0) / 4.0) * t_max;
    return t < t_min ? t_min : t > t_max ? t_max : t;
}

static elbo_status pnp_check(const elbo_energy *energy, const elbo_pnp_params *pp) {
    if (!energy || !energy->fn)
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: energy (or its fn) is NULL");
    if (!pp) return elbo_error(ELBO_ERR_ARG, "pnp_solve: params are NULL");
    if (pp->steps < 1)
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: steps must be >= 1, got %d", pp->steps);
    if (!(pp->lr > 0) || !isfinite(pp->lr))
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: lr must be > 0 and finite, got %g", pp->lr);
    if (pp->schedule != ELBO_PNP_ANNEAL && pp->schedule != ELBO_PNP_UNIFORM)
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: unknown schedule %d", (int)pp->schedule);
    if (!(pp->t_min >= 0 && pp->t_min < pp->t_max && pp->t_max <= 1))
        return elbo_error(
            ELBO_ERR_ARG,
            "pnp_solve: t_min, t_max must satisfy 0 <= t_min < t_max <= 1, got %g, %g", pp->t_min,
            pp->t_max);
    if (pp->weighting != ELBO_PNP_WEIGHT_ELBO && pp->weighting != ELBO_PNP_WEIGHT_SIMPLE)
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: unknown weighting %d", (int)pp->weighting);
    if (pp->energy_decay != 0 && pp->energy_decay != 1)
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: energy_decay must be 0 or 1, got %d",
                          pp->energy_decay);
    if (!(pp->prior_weight >= 0) || !isfinite(pp->prior_weight))
        return elbo_error(ELBO_ERR_ARG, "pnp_solve: prior_weight must be >= 0 and finite, got %g",
                          pp->prior_weight);
    return ELBO_OK;
}

/* The cotangent of the prior term: u = eps_hat - eps, eps_hat = (x_t - alpha x0_hat) / sigma. */
typedef struct {
    const float *x_t, *eps;
    double alpha, sigma;
} pnp_cot_state;

static elbo_status pnp_cotangent(void *user, const float *x0_hat, int64_t n, float *u) {
    const pnp_cot_state *c = user;
    for (int64_t j = 0; j < n; j++)
        u[j] = (float)(((double)c->x_t[j] - c->alpha * x0_hat[j]) / c->sigma - c->eps[j]);
    return ELBO_OK;
}

/* Per step i (k = i + 1 the Adam step):
 *   t_i by the schedule, eps ~ N(0, I), x_t = alpha x + sigma eps,
 *   x0_hat = D(x_t, t), u = eps_hat - eps with eps_hat = (x_t - alpha x0_hat) / sigma,
 *   J_eps^T u = (u - alpha vjp_x0(u)) / sigma,
 *   g = prior_weight w(t) 2 alpha J_eps^T u + c_i grad E(x),
 *   w(t) = -dlog_snr/dt / 2 (elbo) or 1 / D (simple), c_i = 1 - i/N (energy_decay) or 1,
 *   Adam (Kingma & Ba 2015): m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2,
 *   x -= lr (m / (1 - b1^k)) / (sqrt(v / (1 - b2^k)) + eps_adam).
 * u depends on x0_hat: one fused call (prior->denoise_vjp_at) or a denoiser call and a VJP
 * call a step. The batch shares t_i; eps is drawn for every value. */
elbo_status elbo_pnp_solve(const elbo_prior *prior, const elbo_energy *energy,
                           const elbo_pnp_params *pp, int init_from_x, float *x, int64_t B) {
    int64_t D = 0;
    elbo_status st = elbo__solver_check("pnp_solve", prior, 1, x, B, &D);
    if (st) return st;
    if ((st = pnp_check(energy, pp))) return st;
    const int64_t n = B * D;
    const int N = pp->steps;
    /* scratch, once: eps, x_t, x0_hat, u, vjp, grad E, Adam's m and v, the VJP's x0_hat copy;
     * E's values */
    float *eps = malloc((size_t)n * 9 * sizeof(float) + (size_t)B * sizeof(double));
    if (!eps)
        return elbo_error(ELBO_ERR_NOMEM, "pnp_solve: out of memory for %lld values", (long long)n);
    float *x_t = eps + n, *x0_hat = x_t + n, *u = x0_hat + n, *vjp = u + n, *g = vjp + n;
    float *m = g + n, *v = m + n, *scratch = v + n;
    double *value = (double *)(scratch + n);
    memset(m, 0, (size_t)n * 2 * sizeof(float));
    elbo_rng rng;
    elbo_rng_init(&rng, pp->seed);
    if (!init_from_x) elbo_rng_normal(&rng, x, (size_t)n, 0.0f, 1.0f);
    const double b1 = 0.9, b2 = 0.999, eps_adam = 1e-8;
    double b1k = 1.0, b2k = 1.0; /* beta^k */
    for (int i = 0; i < N; i++) {
        double t;
        if (pp->schedule == ELBO_PNP_UNIFORM) {
            float r;
            elbo_rng_uniform(&rng, &r, 1, 0.0f, 1.0f);
            t = pp->t_min + (double)r * (pp->t_max - pp->t_min);
        } else {
            t = pnp_anneal_t(i, N, pp->t_min, pp->t_max);
        }
        elbo_noise_level l;
        if ((st = elbo_process_at(prior->process, t, &l))) goto done;
        elbo_rng_normal(&rng, eps, (size_t)n, 0.0f, 1.0f);
        for (int64_t j = 0; j < n; j++) x_t[j] = (float)(l.alpha * x[j] + l.sigma * eps[j]);
        pnp_cot_state cs = {x_t, eps, l.alpha, l.sigma};
        if ((st = elbo__prior_vjp_at(prior, x_t, n, &l, pnp_cotangent, &cs, x0_hat, u, vjp, scratch)))
            goto done;
        if ((st = energy->fn(energy->user, x, B, value, g))) goto done;
        /* prior_weight w(t) 2 alpha / sigma; elbo: -prior_weight dlog_snr/dt alpha / sigma */
        const double w_t = pp->weighting == ELBO_PNP_WEIGHT_SIMPLE ? 1.0 / (double)D
                                                                   : -0.5 * l.dlog_snr_dt;
        const double cp = pp->prior_weight * w_t * 2.0 * l.alpha / l.sigma;
        const double ce = pp->energy_decay ? 1.0 - (double)i / N : 1.0;
        b1k *= b1, b2k *= b2;
        const double step = pp->lr / (1.0 - b1k), bc2 = 1.0 - b2k;
        for (int64_t j = 0; j < n; j++) {
            double gj = ce * g[j] + cp * ((double)u[j] - l.alpha * vjp[j]);
            double mj = b1 * m[j] + (1.0 - b1) * gj, vj = b2 * v[j] + (1.0 - b2) * gj * gj;
            m[j] = (float)mj, v[j] = (float)vj;
            x[j] = (float)(x[j] - step * mj / (sqrt(vj / bc2) + eps_adam));
        }
    }
    if (!elbo__all_finite(x, n))
        st = elbo_error(ELBO_ERR_STATE, "pnp_solve: x diverged (values not finite); lower lr");
done:
    free(eps);
    return st;
}
