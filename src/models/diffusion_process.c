/* The Gaussian noise processes q(x_t|x) = N(alpha(t) x, sigma(t)^2 I) of include/elbo/diffusion.h:
 * VP (linear betas, cosine, log-linear and learned log-SNR), VE and sub-VP, their SDE
 * coefficients, the posterior q(x_s|x_t,x), and the conversions between parameterisations. */
#include "elbo/diffusion.h"

#include <math.h>
#include <string.h>

void elbo_process_init(elbo_process *p) {
    memset(p, 0, sizeof *p);
    p->kind = ELBO_PROCESS_VP;
    p->schedule = ELBO_SCHEDULE_LOGLINEAR;
    p->beta_min = 0.1;
    p->beta_max = 20.0;
    p->t0 = 1e-3;
    p->log_snr_min = -5.0;
    p->log_snr_max = 13.3;
    p->sigma_min = 0.01;
    p->sigma_max = 50.0;
}

static const struct {
    const char *name;
    elbo_process_kind kind;
    elbo_schedule_kind schedule;
} schedule_names[] = {
    {"linear", ELBO_PROCESS_VP, ELBO_SCHEDULE_LINEAR},
    {"cosine", ELBO_PROCESS_VP, ELBO_SCHEDULE_COSINE},
    {"loglinear", ELBO_PROCESS_VP, ELBO_SCHEDULE_LOGLINEAR},
    {"learned", ELBO_PROCESS_VP, ELBO_SCHEDULE_LEARNED},
    {"subvp", ELBO_PROCESS_SUBVP, ELBO_SCHEDULE_LINEAR},
    {"ve", ELBO_PROCESS_VE, ELBO_SCHEDULE_GEOMETRIC},
};
#define N_SCHEDULES (sizeof schedule_names / sizeof schedule_names[0])

elbo_status elbo_process_set_schedule(elbo_process *p, const char *name) {
    for (size_t i = 0; name && i < N_SCHEDULES; i++)
        if (strcmp(name, schedule_names[i].name) == 0) {
            p->kind = schedule_names[i].kind;
            p->schedule = schedule_names[i].schedule;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG,
                      "schedule: unknown '%s' (linear, cosine, loglinear, learned, subvp, ve)",
                      name ? name : "(null)");
}

const char *elbo_process_schedule_name(const elbo_process *p) {
    for (size_t i = 0; i < N_SCHEDULES; i++)
        if (schedule_names[i].kind == p->kind && schedule_names[i].schedule == p->schedule)
            return schedule_names[i].name;
    return "?";
}

elbo_status elbo_process_check(const elbo_process *p) {
    int ok_pair = 0;
    for (size_t i = 0; i < N_SCHEDULES; i++)
        ok_pair |= schedule_names[i].kind == p->kind && schedule_names[i].schedule == p->schedule;
    if (!ok_pair) return elbo_error(ELBO_ERR_ARG, "process: this kind has no such schedule");
    switch (p->schedule) {
    case ELBO_SCHEDULE_LINEAR:
        if (!(p->beta_min > 0 && p->beta_max > p->beta_min && isfinite(p->beta_max)))
            return elbo_error(ELBO_ERR_ARG, "schedule linear: need 0 < beta_min < beta_max, got %g, %g",
                              p->beta_min, p->beta_max);
        if (!(p->t0 > 0 && p->t0 < 1))
            return elbo_error(ELBO_ERR_ARG, "schedule linear: t0 must be in (0, 1), got %g", p->t0);
        return ELBO_OK;
    case ELBO_SCHEDULE_COSINE:
    case ELBO_SCHEDULE_LOGLINEAR:
        if (!(p->log_snr_min < p->log_snr_max && isfinite(p->log_snr_min) &&
              isfinite(p->log_snr_max)))
            return elbo_error(ELBO_ERR_ARG,
                              "schedule %s: need finite log_snr_min < log_snr_max, got %g, %g",
                              elbo_process_schedule_name(p), p->log_snr_min, p->log_snr_max);
        return ELBO_OK;
    case ELBO_SCHEDULE_LEARNED: {
        const elbo_learned_schedule *l = p->learned;
        if (!l || l->n_features < 1 || !l->w1 || !l->w2 || !l->b2 || !l->w3 || !l->gamma_0 ||
            !l->gamma_1)
            return elbo_error(ELBO_ERR_ARG, "schedule learned: its parameters are not set");
        if (!(*l->gamma_0 < *l->gamma_1))
            return elbo_error(ELBO_ERR_ARG, "schedule learned: need gamma_0 < gamma_1, got %g, %g",
                              (double)*l->gamma_0, (double)*l->gamma_1);
        return ELBO_OK;
    }
    case ELBO_SCHEDULE_GEOMETRIC:
        if (!(p->sigma_min > 0 && p->sigma_max > p->sigma_min && isfinite(p->sigma_max)))
            return elbo_error(ELBO_ERR_ARG, "schedule ve: need 0 < sigma_min < sigma_max, got %g, %g",
                              p->sigma_min, p->sigma_max);
        return ELBO_OK;
    }
    return elbo_error(ELBO_ERR_ARG, "process: unknown schedule %d", (int)p->schedule);
}

/* log sigmoid(x) = -softplus(-x), stable at both ends. */
static double log_sigmoid(double x) { return x >= 0 ? -log1p(exp(-x)) : x - log1p(exp(x)); }

/* The learned gamma~(t) and d gamma~/dt of VDM's monotone network (see the header). */
static void learned_gamma_tilde(const elbo_learned_schedule *l, double t, double *g, double *dg) {
    double w1 = fabs((double)*l->w1), u = 2.0 * t - 1.0;
    double sum = 0, dsum = 0;
    for (int k = 0; k < l->n_features; k++) {
        double w2 = fabs((double)l->w2[k]), w3 = fabs((double)l->w3[k]);
        double s = 1.0 / (1.0 + exp(-(w2 * u + (double)l->b2[k])));
        sum += w3 * (2.0 * s - 1.0);
        dsum += w3 * 2.0 * s * (1.0 - s) * w2 * 2.0; /* d/dt of 2 sigmoid(w2 (2t-1) + b2) */
    }
    *g = w1 * t + sum / l->n_features;
    *dg = w1 + dsum / l->n_features;
}

/* gamma~(t), gamma~'(t) and their derivatives D, Dp in (w1, w2[n], b2[n], w3[n]) (3n + 1
 * values each), sigma_k = sigmoid(|w2_k| u + b2_k), u = 2t - 1, s' = sigma (1 - sigma):
 *   d/dw1:   t,                          1                       (times sign(w1))
 *   d/dw2_k: |w3| 2 s' u / n,            |w3| 4 (s' + |w2| u s' (1 - 2 sigma)) / n  (sign(w2))
 *   d/db2_k: |w3| 2 s' / n,              |w3| 4 |w2| s' (1 - 2 sigma) / n
 *   d/dw3_k: (2 sigma - 1) / n,          4 s' |w2| / n           (times sign(w3)) */
static void learned_basis(const elbo_learned_schedule *l, double t, double *g, double *gp,
                          double *D, double *Dp) {
    const int n = l->n_features;
    const double u = 2.0 * t - 1.0, inv_n = 1.0 / n;
    double w1 = *l->w1, sum = 0, dsum = 0;
    D[0] = (w1 >= 0 ? 1.0 : -1.0) * t;
    Dp[0] = w1 >= 0 ? 1.0 : -1.0;
    for (int k = 0; k < n; k++) {
        double w2 = l->w2[k], w3 = l->w3[k], a2 = fabs(w2), a3 = fabs(w3);
        double sg2 = w2 >= 0 ? 1.0 : -1.0, sg3 = w3 >= 0 ? 1.0 : -1.0;
        double sig = 1.0 / (1.0 + exp(-(a2 * u + (double)l->b2[k]))), sp = sig * (1.0 - sig);
        sum += a3 * (2.0 * sig - 1.0);
        dsum += a3 * 4.0 * sp * a2;
        D[1 + k] = sg2 * a3 * 2.0 * sp * u * inv_n;
        Dp[1 + k] = sg2 * a3 * 4.0 * (sp + a2 * u * sp * (1.0 - 2.0 * sig)) * inv_n;
        D[1 + n + k] = a3 * 2.0 * sp * inv_n;
        Dp[1 + n + k] = a3 * 4.0 * a2 * sp * (1.0 - 2.0 * sig) * inv_n;
        D[1 + 2 * n + k] = sg3 * (2.0 * sig - 1.0) * inv_n;
        Dp[1 + 2 * n + k] = sg3 * 4.0 * sp * a2 * inv_n;
    }
    *g = fabs(w1) * t + sum * inv_n;
    *gp = fabs(w1) + dsum * inv_n;
}

/* gamma(t) = g0 + (g1 - g0) N(t), N = (g~(t) - g~(0)) / Delta, Delta = g~(1) - g~(0);
 * gamma'(t) = (g1 - g0) g~'(t) / Delta. Quotient rule for the network's weights; the
 * endpoints: d gamma/d g0 = 1 - N, d gamma/d g1 = N, d gamma'/d g1 = -d gamma'/d g0 =
 * g~'/Delta. */
void elbo_learned_schedule_vjp(const elbo_learned_schedule *l, int64_t B, const double *t,
                               const double *cg, const double *cgp, double *grad,
                               const double *cg2, const double *cgp2, double *grad2, double *work) {
    const int64_t P = 3 * (int64_t)l->n_features + 1;
    double *D0 = work, *D1 = work + P, *D = work + 2 * P, *Dp = work + 3 * P, *scratch = work + 4 * P;
    double g0, g1, gp0, gp1, g, gp;
    learned_basis(l, 0.0, &g0, &gp0, D0, scratch);
    learned_basis(l, 1.0, &g1, &gp1, D1, scratch);
    const double G0 = *l->gamma_0, G1 = *l->gamma_1, span = G1 - G0, delta = g1 - g0;
    for (int64_t b = 0; b < B; b++) {
        learned_basis(l, t[b], &g, &gp, D, Dp);
        double N = (g - g0) / delta;
        for (int64_t j = 0; j < P; j++) {
            double dG = span * ((D[j] - D0[j]) * delta - (g - g0) * (D1[j] - D0[j])) / (delta * delta);
            double dGp = span * (Dp[j] * delta - gp * (D1[j] - D0[j])) / (delta * delta);
            grad[j] += cg[b] * dG + cgp[b] * dGp;
            if (grad2) grad2[j] += cg2[b] * dG + cgp2[b] * dGp;
        }
        /* the endpoints */
        double dG0 = 1.0 - N, dG1 = N, dGp1 = gp / delta;
        grad[P] += cg[b] * dG0 - cgp[b] * dGp1;
        grad[P + 1] += cg[b] * dG1 + cgp[b] * dGp1;
        if (grad2) {
            grad2[P] += cg2[b] * dG0 - cgp2[b] * dGp1;
            grad2[P + 1] += cg2[b] * dG1 + cgp2[b] * dGp1;
        }
    }
}

/* VP: log_snr(t) and its derivative for the schedules given by log_snr directly. */
static void vp_log_snr(const elbo_process *p, double t, double *lam, double *dlam) {
    switch (p->schedule) {
    case ELBO_SCHEDULE_COSINE: {
        /* log_snr = -2 log tan(a t + b): log_snr(0) = log_snr_max, log_snr(1) = log_snr_min */
        double b = atan(exp(-0.5 * p->log_snr_max));
        double a = atan(exp(-0.5 * p->log_snr_min)) - b;
        double x = a * t + b;
        *lam = -2.0 * log(tan(x));
        *dlam = -4.0 * a / sin(2.0 * x); /* -2 a sec^2 x / tan x */
        return;
    }
    case ELBO_SCHEDULE_LEARNED: {
        const elbo_learned_schedule *l = p->learned;
        double g0, g1, gt, dg, dummy;
        learned_gamma_tilde(l, 0.0, &g0, &dummy);
        learned_gamma_tilde(l, 1.0, &g1, &dummy);
        learned_gamma_tilde(l, t, &gt, &dg);
        double gamma_0 = *l->gamma_0, gamma_1 = *l->gamma_1, scale = (gamma_1 - gamma_0) / (g1 - g0);
        *lam = -(gamma_0 + scale * (gt - g0));
        *dlam = -scale * dg;
        return;
    }
    default: /* loglinear */
        *lam = p->log_snr_max + (p->log_snr_min - p->log_snr_max) * t;
        *dlam = p->log_snr_min - p->log_snr_max;
        return;
    }
}

elbo_status elbo_process_at(const elbo_process *p, double t, elbo_noise_level *out) {
    if (!(t >= 0 && t <= 1))
        return elbo_error(ELBO_ERR_ARG, "process: t = %g is outside [0, 1]", t);
    elbo_status st = elbo_process_check(p);
    if (st) return st;
    elbo_noise_level n = {.t = t};
    if (p->schedule == ELBO_SCHEDULE_LINEAR) {
        /* B(u) = int_0^u beta = beta_min u + (beta_max - beta_min) u^2 / 2, alpha^2 = e^-B */
        double du = 1.0 - p->t0, u = p->t0 + du * t;
        double beta = (p->beta_min + u * (p->beta_max - p->beta_min)) * du; /* dB/dt */
        double B = p->beta_min * u + 0.5 * (p->beta_max - p->beta_min) * u * u;
        double one_m = -expm1(-B); /* 1 - alpha^2 */
        n.alpha = exp(-0.5 * B);
        n.f = -0.5 * beta;
        if (p->kind == ELBO_PROCESS_VP) {
            n.sigma = sqrt(one_m);
            n.log_snr = -B - log(one_m);
            n.dlog_snr_dt = -beta / one_m;
        } else { /* sub-VP: sigma = 1 - alpha^2 */
            n.sigma = one_m;
            n.log_snr = -B - 2.0 * log(one_m);
            n.dlog_snr_dt = -beta - 2.0 * beta * exp(-B) / one_m;
        }
    } else if (p->kind == ELBO_PROCESS_VE) {
        double r = log(p->sigma_max / p->sigma_min);
        n.alpha = 1.0;
        n.sigma = p->sigma_min * exp(r * t);
        n.log_snr = -2.0 * log(n.sigma);
        n.dlog_snr_dt = -2.0 * r;
        n.f = 0.0;
    } else {
        vp_log_snr(p, t, &n.log_snr, &n.dlog_snr_dt);
        /* alpha^2 = sigmoid(log_snr), sigma^2 = sigmoid(-log_snr) */
        n.alpha = exp(0.5 * log_sigmoid(n.log_snr));
        n.sigma = exp(0.5 * log_sigmoid(-n.log_snr));
        n.f = 0.5 * n.sigma * n.sigma * n.dlog_snr_dt; /* d log alpha/dt = sigma^2 lambda' / 2 */
    }
    n.g2 = -n.sigma * n.sigma * n.dlog_snr_dt;
    *out = n;
    return ELBO_OK;
}

double elbo_process_prior_std(const elbo_process *p) {
    return p->kind == ELBO_PROCESS_VE ? p->sigma_max : 1.0;
}

/* Bisection on the decreasing log_snr(t): 100 halvings of [0, 1] reach the double grid. */
elbo_status elbo_process_time_at_log_snr(const elbo_process *p, double target,
                                         elbo_noise_level *out) {
    if (!p || !out) return elbo_error(ELBO_ERR_ARG, "elbo_process_time_at_log_snr: NULL argument");
    elbo_noise_level lo, hi, l;
    elbo_status st = elbo_process_at(p, 0.0, &lo);
    if (!st) st = elbo_process_at(p, 1.0, &hi);
    if (st) return st;
    const double tol = 1e-12 * (1 + fabs(lo.log_snr) + fabs(hi.log_snr)); /* endpoint rounding */
    if (target > lo.log_snr && target <= lo.log_snr + tol) return elbo_process_at(p, 0.0, out);
    if (target < hi.log_snr && target >= hi.log_snr - tol) return elbo_process_at(p, 1.0, out);
    if (!(target <= lo.log_snr && target >= hi.log_snr))
        return elbo_error(ELBO_ERR_ARG,
                          "elbo_process_time_at_log_snr: log SNR %g outside the process's range "
                          "[%.4g, %.4g]",
                          target, hi.log_snr, lo.log_snr);
    double a = 0, b = 1;
    for (int it = 0; it < 100; it++) {
        double mid = 0.5 * (a + b);
        if ((st = elbo_process_at(p, mid, &l))) return st;
        if (l.log_snr > target) a = mid;
        else b = mid;
    }
    return elbo_process_at(p, 0.5 * (a + b), out);
}

elbo_status elbo_posterior_coefs_at(const elbo_noise_level *s, const elbo_noise_level *t,
                                    elbo_posterior_coefs *out) {
    if (!(s->t < t->t) || !(s->log_snr > t->log_snr))
        return elbo_error(ELBO_ERR_ARG, "posterior q(x_s|x_t,x): need s < t, got s = %g, t = %g",
                          s->t, t->t);
    /* sigma_ts^2 / sigma_t^2 = 1 - SNR(t) / SNR(s) */
    double r = -expm1(t->log_snr - s->log_snr);
    double sig_s2 = s->sigma * s->sigma, sig_t2 = t->sigma * t->sigma;
    out->alpha_ts = t->alpha / s->alpha;
    out->var_ts = sig_t2 * r;
    out->coef_xt = out->alpha_ts * sig_s2 / sig_t2;
    out->coef_x = s->alpha * r;
    out->var = sig_s2 * r;
    return ELBO_OK;
}

/* ---- parameterisations ------------------------------------------------------------------ */

static const char *param_names[] = {"eps", "x0", "v", "score"};

elbo_status elbo_param_parse(const char *name, elbo_param_kind *out) {
    for (int k = 0; name && k < 4; k++)
        if (strcmp(name, param_names[k]) == 0) {
            *out = (elbo_param_kind)k;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "param: unknown '%s' (eps, x0, v, score)",
                      name ? name : "(null)");
}

const char *elbo_param_name(elbo_param_kind k) {
    return (unsigned)k < 4 ? param_names[k] : "?";
}

void elbo_param_eps_coefs(elbo_param_kind kind, double alpha, double sigma, double *a, double *k) {
    double norm = alpha * alpha + sigma * sigma;
    switch (kind) {
    case ELBO_PARAM_X0: *a = -alpha / sigma, *k = 1.0 / sigma; break;  /* (x_t - alpha x0) / sigma */
    case ELBO_PARAM_V: *a = alpha / norm, *k = sigma / norm; break;    /* v = alpha eps - sigma x0 */
    case ELBO_PARAM_SCORE: *a = -sigma, *k = 0.0; break;               /* score = -eps / sigma */
    default: *a = 1.0, *k = 0.0; break;
    }
}

/* Each prediction gives eps_hat (elbo_param_eps_coefs) and x0_hat, the latter directly where
 * that is better conditioned than (x_t - sigma eps_hat) / alpha; each target is formed from
 * the two. */
void elbo_param_convert(elbo_param_kind from, elbo_param_kind to, const float *pred,
                        const float *x_t, double alpha, double sigma, float *out, int64_t n) {
    double a, k, norm = alpha * alpha + sigma * sigma;
    elbo_param_eps_coefs(from, alpha, sigma, &a, &k);
    for (int64_t i = 0; i < n; i++) {
        double p = pred[i], x = x_t[i], eps = a * p + k * x, x0;
        switch (from) {
        case ELBO_PARAM_X0: x0 = p; break;
        case ELBO_PARAM_V: x0 = (alpha * x - sigma * p) / norm; break;
        case ELBO_PARAM_SCORE: x0 = (x + sigma * sigma * p) / alpha; break;
        default: x0 = (x - sigma * p) / alpha; break;
        }
        switch (to) {
        case ELBO_PARAM_X0: out[i] = (float)x0; break;
        case ELBO_PARAM_V: out[i] = (float)(alpha * eps - sigma * x0); break;
        case ELBO_PARAM_SCORE: out[i] = (float)(-eps / sigma); break;
        default: out[i] = (float)eps; break;
        }
    }
}

void elbo_tweedie_x0(const float *score, const float *x_t, double alpha, double sigma,
                     float *x0_hat, int64_t n) {
    elbo_param_convert(ELBO_PARAM_SCORE, ELBO_PARAM_X0, score, x_t, alpha, sigma, x0_hat, n);
}
