/* The samplers of include/elbo/sample.h over a noise process and a denoiser callback:
 * ancestral, DDIM and Heun (the variational view), Euler-Maruyama, predictor-corrector,
 * annealed Langevin and the probability-flow ODE (the score view). */
#include "core/internal.h"
#include "elbo/ode.h"
#include "elbo/sample.h"
#include "sample_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const sampler_names[ELBO_SAMPLER_COUNT] = {"ancestral", "ddim",     "heun", "em",
                                                              "pc",        "langevin", "ode"};
static const char *const predictor_names[] = {"reverse", "euler", "none"};

elbo_status elbo_sampler_parse(const char *name, elbo_sampler_kind *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("sampler", sampler_names, ELBO_SAMPLER_COUNT, name, &k);
    if (st == ELBO_OK) *out = (elbo_sampler_kind)k;
    return st;
}

const char *elbo_sampler_name(elbo_sampler_kind k) {
    return (unsigned)k < ELBO_SAMPLER_COUNT ? sampler_names[k] : "?";
}

elbo_status elbo_pc_predictor_parse(const char *name, elbo_pc_predictor *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("predictor", predictor_names, 3, name, &k);
    if (st == ELBO_OK) *out = (elbo_pc_predictor)k;
    return st;
}

void elbo_sampler_params_init(elbo_sampler_params *sp) {
    memset(sp, 0, sizeof *sp);
    sp->kind = ELBO_SAMPLER_ANCESTRAL;
    sp->steps = 100;
    sp->predictor = ELBO_PC_REVERSE;
    sp->corrector_steps = 1;
    sp->snr = 0.16;
    sp->langevin_steps = 100;
    sp->langevin_eps = 2e-5;
    sp->rtol = 1e-5;
    sp->atol = 1e-5;
}

/* score = grad log q_t(x_t) = (alpha x0_hat - x_t) / sigma^2 (Tweedie read backwards); out
 * may alias x0_hat. */
static void score_from_x0(const elbo_noise_level *l, const float *x, const float *x0_hat,
                          float *score, int64_t n) {
    double c = 1.0 / (l->sigma * l->sigma);
    for (int64_t i = 0; i < n; i++) score[i] = (float)(c * (l->alpha * x0_hat[i] - (double)x[i]));
}

/* The mean over the B examples of the Euclidean norm of each example's n / B values. */
static double mean_norm(const float *v, int64_t n, int64_t B) {
    int64_t d = n / B;
    double total = 0;
    for (int64_t b = 0; b < B; b++) {
        double s = 0;
        for (int64_t i = 0; i < d; i++) s += (double)v[b * d + i] * v[b * d + i];
        total += sqrt(s);
    }
    return total / (double)B;
}

/* One Langevin step x += e score + sqrt(2 e) z with e = 2 a (snr ||z|| / ||score||)^2, the
 * corrector of score SDE (Song et al. 2021, alg. 4 and its LangevinCorrector). z is drawn
 * here; score is read. */
static void langevin_corrector_step(elbo_rng *rng, double snr, double a, float *x,
                                    const float *score, float *z, int64_t n, int64_t B) {
    elbo_rng_normal(rng, z, (size_t)n, 0.0f, 1.0f);
    double gn = mean_norm(score, n, B), zn = mean_norm(z, n, B);
    double r = gn > 0 ? snr * zn / gn : 0.0, e = 2.0 * a * r * r, sd = sqrt(2.0 * e);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(x[i] + e * score[i] + sd * z[i]);
}

/* One Euler-Maruyama step of the reverse SDE from t down to t - h:
 * x <- x - h (f x - g^2 score) + sqrt(g^2 h) z. */
static void reverse_sde_euler_step(elbo_rng *rng, const elbo_noise_level *t, double h, float *x,
                                   const float *score, float *z, int64_t n) {
    elbo_rng_normal(rng, z, (size_t)n, 0.0f, 1.0f);
    double sd = sqrt(t->g2 * h);
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(x[i] - h * (t->f * x[i] - t->g2 * score[i]) + sd * z[i]);
}

elbo_status elbo_langevin(elbo_denoiser_fn denoise, void *user, const elbo_noise_level *l, double a,
                          int T, elbo_rng *rng, float *x, int64_t n, float *work, int *calls) {
    float *x0_hat = work, *z = work + n;
    double sd = sqrt(a), c = 1.0 / (l->sigma * l->sigma);
    for (int k = 0; k < T; k++) {
        elbo_status st = denoise(user, x, n, l, x0_hat);
        if (st) return st;
        if (calls) (*calls)++;
        elbo_rng_normal(rng, z, (size_t)n, 0.0f, 1.0f);
        /* score = (alpha x0_hat - x) / sigma^2 */
        for (int64_t j = 0; j < n; j++)
            x[j] = (float)(x[j] + 0.5 * a * c * (l->alpha * x0_hat[j] - (double)x[j]) + sd * z[j]);
    }
    return ELBO_OK;
}

void elbo__ancestral_step(elbo_rng *rng, const elbo_posterior_coefs *q, float *x,
                          const float *x0_hat, float *z, int64_t n) {
    const double c = sqrt(q->var);
    if (c > 0) {
        /* the mean of q(x_s | x_t, x0_hat) plus its standard deviation times z */
        elbo_rng_normal(rng, z, (size_t)n, 0.0f, 1.0f);
        for (int64_t j = 0; j < n; j++)
            x[j] = (float)(q->coef_xt * x[j] + q->coef_x * x0_hat[j] + c * z[j]);
    } else {
        for (int64_t j = 0; j < n; j++) x[j] = (float)(q->coef_xt * x[j] + q->coef_x * x0_hat[j]);
    }
}

/* Annealed Langevin dynamics (Song & Ermon 2019, alg. 1) over K levels t_i = i / (K - 1):
 * a_i = eps sigma_i^2 / sigma_L^2 and T Langevin updates per level (work: 2 n floats). */
static elbo_status annealed_langevin(const elbo_process *p, const elbo_sampler_params *sp,
                                     elbo_denoiser_fn denoise, void *user, float *x, int64_t n,
                                     float *work, elbo_rng *rng, int *calls) {
    const int K = sp->steps;
    elbo_noise_level lt, last;
    elbo_status st = elbo_process_at(p, 0.0, &last);
    if (st) return st;
    for (int i = K - 1; i >= 0; i--) {
        if ((st = elbo_process_at(p, (double)i / (K - 1), &lt))) return st;
        double a = sp->langevin_eps * (lt.sigma * lt.sigma) / (last.sigma * last.sigma);
        if ((st = elbo_langevin(denoise, user, &lt, a, sp->langevin_steps, rng, x, n, work, calls)))
            return st;
        if (sp->on_step) sp->on_step(sp->on_step_user, i, &lt, x, work, n);
    }
    return ELBO_OK;
}

/* The probability-flow ODE as an elbo_ode_fn: dx/dt = f x + g^2 (x - alpha x0_hat) /
 * (2 sigma^2), the state in double, the denoiser in float. */
typedef struct {
    const elbo_process *p;
    elbo_denoiser_fn denoise;
    void *user;
    float *xf, *x0_hat;
    int *calls;
} pf_ode_state;

static elbo_status pf_ode_fn(void *user, double t, const double *y, double *dydt, int64_t n) {
    pf_ode_state *s = user;
    elbo_noise_level l;
    elbo_status st = elbo_process_at(s->p, t < 0 ? 0 : t > 1 ? 1 : t, &l);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) s->xf[i] = (float)y[i];
    if ((st = s->denoise(s->user, s->xf, n, &l, s->x0_hat))) return st;
    (*s->calls)++;
    double c = l.g2 / (2.0 * l.sigma * l.sigma);
    for (int64_t i = 0; i < n; i++) dydt[i] = l.f * y[i] + c * (y[i] - l.alpha * s->x0_hat[i]);
    return ELBO_OK;
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
    if ((unsigned)sp->kind >= ELBO_SAMPLER_COUNT)
        return elbo_error(ELBO_ERR_ARG, "sampler: unknown kind %d", (int)sp->kind);
    if (!(sp->eta >= 0 && sp->eta <= 1))
        return elbo_error(ELBO_ERR_ARG, "sampler ddim: --eta must be in [0, 1], got %g", sp->eta);
    const int64_t B = sp->batch > 0 ? sp->batch : 1;
    if (sp->kind == ELBO_SAMPLER_PC) {
        if ((unsigned)sp->predictor > ELBO_PC_NONE)
            return elbo_error(ELBO_ERR_ARG, "sampler pc: unknown predictor %d", (int)sp->predictor);
        if (sp->corrector_steps < 0)
            return elbo_error(ELBO_ERR_ARG, "sampler pc: --corrector-steps must be >= 0, got %d",
                              sp->corrector_steps);
        if (!(sp->snr > 0) || !isfinite(sp->snr))
            return elbo_error(ELBO_ERR_ARG, "sampler pc: --snr must be > 0, got %g", sp->snr);
        if (sp->corrector_steps == 0 && sp->predictor == ELBO_PC_NONE)
            return elbo_error(ELBO_ERR_ARG,
                              "sampler pc: predictor none needs --corrector-steps >= 1");
        if (n % B)
            return elbo_error(ELBO_ERR_ARG,
                              "sampler pc: %lld values do not split into %lld examples",
                              (long long)n, (long long)B);
    }
    if (sp->kind == ELBO_SAMPLER_LANGEVIN) {
        if (sp->steps < 2)
            return elbo_error(ELBO_ERR_ARG,
                              "sampler langevin: --steps (noise levels) must be >= 2, "
                              "got %d",
                              sp->steps);
        if (sp->langevin_steps < 1)
            return elbo_error(ELBO_ERR_ARG,
                              "sampler langevin: --langevin-steps must be >= 1, got %d",
                              sp->langevin_steps);
        if (!(sp->langevin_eps > 0) || !isfinite(sp->langevin_eps))
            return elbo_error(ELBO_ERR_ARG, "sampler langevin: --langevin-eps must be > 0, got %g",
                              sp->langevin_eps);
    }
    if (sp->kind == ELBO_SAMPLER_ODE &&
        !(sp->rtol > 0 && sp->atol > 0 && isfinite(sp->rtol) && isfinite(sp->atol)))
        return elbo_error(ELBO_ERR_ARG, "sampler ode: --rtol and --atol must be > 0, got %g, %g",
                          sp->rtol, sp->atol);
    if (!denoise || !x || n < 1) return elbo_error(ELBO_ERR_ARG, "sampler: no denoiser or no output");
    /* one block: (ode) the state and the solver's work in double, then 3 n floats */
    size_t n_double = sp->kind == ELBO_SAMPLER_ODE ? (size_t)n + elbo_ode_work_size(n) : 0;
    double *ode_y = malloc(n_double * sizeof(double) + (size_t)n * 3 * sizeof(float));
    if (!ode_y)
        return elbo_error(ELBO_ERR_NOMEM, "sampler: out of memory for %lld values", (long long)n);
    float *x0_hat = (float *)(ode_y + n_double);
    float *z = x0_hat + n, *aux = z + n; /* noise; Heun's Euler point and velocity */
    elbo_rng rng;
    elbo_rng_init(&rng, sp->seed);
    elbo_rng_normal(&rng, x, (size_t)n, 0.0f, (float)elbo_process_prior_std(p));
    const int K = sp->steps;
    int calls = 0;
    elbo_noise_level lt, ls;
    if (sp->kind == ELBO_SAMPLER_LANGEVIN) {
        if ((st = annealed_langevin(p, sp, denoise, user, x, n, x0_hat, &rng, &calls))) goto done;
        if ((st = elbo_process_at(p, 0.0, &lt))) goto done;
        goto output;
    }
    if (sp->kind == ELBO_SAMPLER_ODE) {
        for (int64_t j = 0; j < n; j++) ode_y[j] = x[j];
        pf_ode_state os = {p, denoise, user, aux, x0_hat, &calls};
        elbo_ode_params op;
        elbo_ode_params_init(&op);
        op.rtol = sp->rtol;
        op.atol = sp->atol;
        if ((st = elbo_ode_dopri5(pf_ode_fn, &os, 1.0, 0.0, ode_y, n, &op, ode_y + n, NULL)))
            goto done;
        for (int64_t j = 0; j < n; j++) x[j] = (float)ode_y[j];
        if ((st = elbo_process_at(p, 0.0, &lt))) goto done;
        goto output;
    }
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
        } else if (sp->kind == ELBO_SAMPLER_EM) {
            float *score = x0_hat;
            score_from_x0(&lt, x, x0_hat, score, n);
            reverse_sde_euler_step(&rng, &lt, lt.t - ls.t, x, score, z, n);
        } else if (sp->kind == ELBO_SAMPLER_PC) {
            elbo_posterior_coefs q;
            if ((st = elbo_posterior_coefs_at(&ls, &lt, &q))) goto done;
            float *score = x0_hat;
            /* corrector_steps Langevin steps at t (the first on the call above), then the
             * predictor from t to s on a fresh call */
            for (int c = 0; c < sp->corrector_steps; c++) {
                if (c > 0) {
                    if ((st = denoise(user, x, n, &lt, x0_hat))) goto done;
                    calls++;
                }
                score_from_x0(&lt, x, x0_hat, score, n);
                langevin_corrector_step(&rng, sp->snr, q.alpha_ts * q.alpha_ts, x, score, z, n, B);
            }
            if (sp->predictor != ELBO_PC_NONE) {
                if (sp->corrector_steps > 0) {
                    if ((st = denoise(user, x, n, &lt, x0_hat))) goto done;
                    calls++;
                }
                score_from_x0(&lt, x, x0_hat, score, n);
                if (sp->predictor == ELBO_PC_EULER) {
                    reverse_sde_euler_step(&rng, &lt, lt.t - ls.t, x, score, z, n);
                } else {
                    /* reverse diffusion: x_s = x_t - (alpha_ts - 1) x_t + var_ts score +
                     * sqrt(var_ts) z */
                    elbo_rng_normal(&rng, z, (size_t)n, 0.0f, 1.0f);
                    double sd = sqrt(q.var_ts);
                    for (int64_t j = 0; j < n; j++)
                        x[j] = (float)((2.0 - q.alpha_ts) * x[j] + q.var_ts * score[j] + sd * z[j]);
                }
            }
        } else {
            elbo_posterior_coefs q;
            if ((st = elbo_posterior_coefs_at(&ls, &lt, &q))) goto done;
            if (sp->kind == ELBO_SAMPLER_ANCESTRAL) {
                elbo__ancestral_step(&rng, &q, x, x0_hat, z, n);
            } else {
                double c2 = sp->eta * sp->eta * q.var, c = sqrt(c2);
                if (c > 0) elbo_rng_normal(&rng, z, (size_t)n, 0.0f, 1.0f);
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
output:
    /* the output: x0_hat at t = 0 */
    if ((st = denoise(user, x, n, &lt, x0_hat))) goto done;
    calls++;
    if (sp->on_step) sp->on_step(sp->on_step_user, 0, &lt, x, x0_hat, n);
    /* diverged: a value not finite, or beyond 1e6 times the prior's scale, in x_0 or in the
     * output (a normalising network can map a blown-up x_0 to finite values) */
    const double limit = 1e6 * fmax(1.0, elbo_process_prior_std(p));
    for (int64_t j = 0; j < n; j++)
        if (!(fabs(x[j]) <= limit) || !(fabs(x0_hat[j]) <= limit)) {
            st = elbo_error(ELBO_ERR_STATE,
                            "sampler %s: the samples diverged (values not finite or beyond 1e6 "
                            "times the prior's scale)%s",
                            elbo_sampler_name(sp->kind),
                            sp->kind == ELBO_SAMPLER_LANGEVIN ? "; lower --langevin-eps"
                            : sp->kind == ELBO_SAMPLER_PC     ? "; lower --snr"
                                                              : "; try more --steps");
            goto done;
        }
    memcpy(x, x0_hat, (size_t)n * sizeof(float));
done:
    free(ode_y);
    if (nfe) *nfe = calls;
    return st;
}

elbo_status elbo_tweedie_denoise(const elbo_process *p, elbo_denoiser_fn denoise, void *user,
                                 const float *y, int64_t n, double s, float *work, float *x0_hat,
                                 elbo_noise_level *lvl) {
    if (!p || !denoise || !y || !work || !x0_hat)
        return elbo_error(ELBO_ERR_ARG, "tweedie_denoise: NULL argument");
    if (!(s > 0) || !isfinite(s))
        return elbo_error(ELBO_ERR_ARG, "tweedie_denoise: noise std %g, need a finite s > 0", s);
    elbo_noise_level l;
    elbo_status st = elbo_process_time_at_log_snr(p, -2.0 * log(s), &l);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) work[i] = (float)(l.alpha * y[i]);
    if ((st = denoise(user, work, n, &l, x0_hat))) return st;
    if (lvl) *lvl = l;
    return ELBO_OK;
}
