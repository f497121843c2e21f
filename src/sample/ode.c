/* The Dormand-Prince 5(4) solver with scipy's RK45 step-size control; see
 * include/elbo/ode.h. */
#include "elbo/ode.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* The Dormand-Prince tableau (Dormand & Prince 1980; Hairer et al. I, II.5): nodes c_i,
 * stage weights a_ij, 5th-order weights b_i (also the row a_7j, FSAL), and the error weights
 * e_i = b_i - b*_i of the 5th minus the embedded 4th-order solution (scipy's RK45.E). */
static const double dp_c[7] = {0.0, 1.0 / 5, 3.0 / 10, 4.0 / 5, 8.0 / 9, 1.0, 1.0};
static const double dp_a[6][5] = {
    {0},
    {1.0 / 5},
    {3.0 / 40, 9.0 / 40},
    {44.0 / 45, -56.0 / 15, 32.0 / 9},
    {19372.0 / 6561, -25360.0 / 2187, 64448.0 / 6561, -212.0 / 729},
    {9017.0 / 3168, -355.0 / 33, 46732.0 / 5247, 49.0 / 176, -5103.0 / 18656},
};
static const double dp_b[6] = {35.0 / 384,     0.0,      500.0 / 1113, 125.0 / 192,
                               -2187.0 / 6784, 11.0 / 84};
static const double dp_e[7] = {-71.0 / 57600,    0.0,         71.0 / 16695, -71.0 / 1920,
                               17253.0 / 339200, -22.0 / 525, 1.0 / 40};

#define SAFETY 0.9              /* factor = SAFETY err_norm^(-1/5) (scipy's rk.py) */
#define MIN_FACTOR 0.2          /* largest decrease of h after a rejection */
#define MAX_FACTOR 10.0         /* largest increase of h after an acceptance */
#define ERR_EXPONENT (-1.0 / 5) /* -1 / (q + 1), q = 4 the order of the error estimate */

void elbo_ode_params_init(elbo_ode_params *p) {
    memset(p, 0, sizeof *p);
    p->rtol = 1e-5;
    p->atol = 1e-5;
    p->max_steps = 100000;
}

/* 8 n: the stages k_1..k_7 and the stage argument (which ends as y_new). */
size_t elbo_ode_work_size(int64_t n) { return n > 0 ? 8 * (size_t)n : 0; }

/* The right-hand side with its evaluation count; a non-finite dy/dt is an error. */
typedef struct {
    elbo_ode_fn f;
    void *user;
    int64_t n;
    int nfe;
} ode_rhs;

/* dydt = F(t, y). */
static elbo_status rhs_eval(ode_rhs *r, double t, const double *y, double *dydt) {
    r->nfe++;
    elbo_status st = r->f(r->user, t, y, dydt, r->n);
    if (st) return st;
    for (int64_t i = 0; i < r->n; i++)
        if (!isfinite(dydt[i]))
            return elbo_error(ELBO_ERR_STATE,
                              "ode: F returned a non-finite value (dydt[%lld] = %g at t = %.17g)",
                              (long long)i, dydt[i], t);
    return ELBO_OK;
}

/* x / sc, with 0 / 0 = 0 (a zero error or value needs no tolerance, even where atol == 0). */
static double scaled(double x, double sc) { return x == 0 ? 0.0 : x / sc; }

/* One Dormand-Prince step from (t, y) with k[0] = F(t, y):
 *   k_i = F(t + c_i h, y + h sum_{j<i} a_ij k_j),  i = 2..6,
 *   y_new = y + h sum_{i<=6} b_i k_i,   k_7 = F(t + h, y_new).
 * y_new is written to y_new (also the stage argument); k[1..6] are overwritten. */
static elbo_status dopri5_step(ode_rhs *r, double t, double h, const double *y, double *const k[7],
                               double *y_new) {
    const int64_t n = r->n;
    elbo_status st;
    for (int s = 1; s < 6; s++) {
        for (int64_t i = 0; i < n; i++) {
            double dy = 0;
            for (int j = 0; j < s; j++) dy += dp_a[s][j] * k[j][i];
            y_new[i] = y[i] + h * dy;
        }
        if ((st = rhs_eval(r, t + dp_c[s] * h, y_new, k[s]))) return st;
    }
    for (int64_t i = 0; i < n; i++) {
        double dy = 0;
        for (int j = 0; j < 6; j++) dy += dp_b[j] * k[j][i];
        y_new[i] = y[i] + h * dy;
    }
    return rhs_eval(r, t + h, y_new, k[6]);
}

/* err_norm = sqrt(mean_i (err_i / sc_i)^2), err_i = h sum_i e_i k_i,
 * sc_i = atol + rtol max(|y_i|, |y_new_i|) (scipy's RK45._estimate_error_norm). */
static double error_norm(double h, double *const k[7], const double *y, const double *y_new,
                         int64_t n, double rtol, double atol) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double err = 0;
        for (int j = 0; j < 7; j++) err += dp_e[j] * k[j][i];
        err *= h;
        double sc = atol + rtol * fmax(fabs(y[i]), fabs(y_new[i]));
        double q = scaled(err, sc);
        sum += q * q;
    }
    return sqrt(sum / (double)n);
}

/* ||x / sc||, the RMS norm of Hairer et al. II.4 (scipy's common.norm); x1 - x0 if x0 is
 * given. */
static double rms_scaled(const double *x1, const double *x0, const double *sc, int64_t n) {
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        double q = scaled(x0 ? x1[i] - x0[i] : x1[i], sc[i]);
        sum += q * q;
    }
    return sqrt(sum / (double)n);
}

/* Hairer's starting step (Solving ODEs I, II.4; scipy's select_initial_step, order q = 4):
 *   sc = atol + rtol |y0|,  d0 = ||y0 / sc||,  d1 = ||f0 / sc||,
 *   h' = 0.01 d0 / d1 (1e-6 if d0 < 1e-5 or d1 < 1e-5), at most |t1 - t0|,
 *   d2 = ||(F(t0 + dir h', y0 + dir h' f0) - f0) / sc|| / h',
 *   h1 = (0.01 / max(d1, d2))^(1/(q+1))  (max(1e-6, 1e-3 h') if d1, d2 <= 1e-15),
 *   h0 = min(100 h', h1, |t1 - t0|).
 * sc, y1 and f1 are scratch of n doubles each. */
static elbo_status initial_step(ode_rhs *r, double t0, double t1, double dir, const double *y0,
                                const double *f0, double rtol, double atol, double *sc, double *y1,
                                double *f1, double *h_out) {
    const int64_t n = r->n;
    double interval = fabs(t1 - t0);
    for (int64_t i = 0; i < n; i++) sc[i] = atol + fabs(y0[i]) * rtol;
    double d0 = rms_scaled(y0, NULL, sc, n), d1 = rms_scaled(f0, NULL, sc, n);
    double h = (d0 < 1e-5 || d1 < 1e-5) ? 1e-6 : 0.01 * d0 / d1;
    h = fmin(h, interval);
    for (int64_t i = 0; i < n; i++) y1[i] = y0[i] + h * dir * f0[i];
    elbo_status st = rhs_eval(r, t0 + h * dir, y1, f1);
    if (st) return st;
    double d2 = rms_scaled(f1, f0, sc, n) / h;
    double h1 =
        (d1 <= 1e-15 && d2 <= 1e-15) ? fmax(1e-6, h * 1e-3) : pow(0.01 / fmax(d1, d2), 1.0 / 5);
    *h_out = fmin(fmin(100 * h, h1), interval);
    return ELBO_OK;
}

/* A finite x >= 0. */
static int finite_nonneg(double x) { return isfinite(x) && x >= 0; }

elbo_status elbo_ode_dopri5(elbo_ode_fn f, void *user, double t0, double t1, double *y, int64_t n,
                            const elbo_ode_params *p, double *work, elbo_ode_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    elbo_ode_params def;
    if (!p) {
        elbo_ode_params_init(&def);
        p = &def;
    }
    if (!f) return elbo_error(ELBO_ERR_ARG, "ode: f (the right-hand side F) is NULL");
    if (!y) return elbo_error(ELBO_ERR_ARG, "ode: y is NULL");
    if (n < 1) return elbo_error(ELBO_ERR_ARG, "ode: n must be >= 1, got %lld", (long long)n);
    if (!isfinite(t0)) return elbo_error(ELBO_ERR_ARG, "ode: t0 must be finite, got %g", t0);
    if (!isfinite(t1)) return elbo_error(ELBO_ERR_ARG, "ode: t1 must be finite, got %g", t1);
    if (!finite_nonneg(p->rtol))
        return elbo_error(ELBO_ERR_ARG, "ode: rtol must be finite and >= 0, got %g", p->rtol);
    if (!finite_nonneg(p->atol))
        return elbo_error(ELBO_ERR_ARG, "ode: atol must be finite and >= 0, got %g", p->atol);
    if (!finite_nonneg(p->h0))
        return elbo_error(ELBO_ERR_ARG, "ode: h0 must be finite and >= 0 (0: automatic), got %g",
                          p->h0);
    if (!finite_nonneg(p->h_fixed))
        return elbo_error(ELBO_ERR_ARG,
                          "ode: h_fixed must be finite and >= 0 (0: adaptive), got %g", p->h_fixed);
    if (p->max_steps < 1)
        return elbo_error(ELBO_ERR_ARG, "ode: max_steps must be >= 1, got %d", p->max_steps);
    const int fixed = p->h_fixed > 0;
    if (!fixed && p->rtol == 0 && p->atol == 0)
        return elbo_error(ELBO_ERR_ARG,
                          "ode: rtol and atol are both 0 (adaptive steps need a tolerance)");
    if (t0 == t1) return ELBO_OK;

    double *own = NULL;
    if (!work) {
        if ((uint64_t)n > SIZE_MAX / (8 * sizeof(double)) ||
            !(own = malloc(elbo_ode_work_size(n) * sizeof(double))))
            return elbo_error(ELBO_ERR_NOMEM, "ode: out of memory for %lld unknowns", (long long)n);
        work = own;
    }
    double *k[7];
    for (int j = 0; j < 7; j++) k[j] = work + (size_t)j * (size_t)n;
    double *y_new = work + 7 * (size_t)n; /* the stage argument; y_new after the step */

    ode_rhs r = {f, user, n, 0};
    const double dir = t1 > t0 ? 1.0 : -1.0;
    const double rtol = p->rtol, atol = p->atol;
    int accepted = 0, rejected = 0;
    double t = t0, h_last = 0, h_abs;
    elbo_status st = rhs_eval(&r, t0, y, k[0]);
    if (st) goto done;
    if (fixed)
        h_abs = p->h_fixed;
    else if (p->h0 > 0)
        h_abs = p->h0;
    else if ((st = initial_step(&r, t0, t1, dir, y, k[0], rtol, atol, k[1], y_new, k[2], &h_abs)))
        goto done;
    /* fixed steps: t_j = t0 + dir j h for j < N, t_N = t1, N = ceil(|t1 - t0| / h) (a remainder
     * below 1e-9 h joins the last step instead of making a step of its own) */
    const double n_fixed = fixed ? fmax(1.0, ceil(fabs(t1 - t0) / h_abs - 1e-9)) : 0;

    while (dir * (t - t1) < 0) {
        /* scipy's min_step: 10 ulp of t in the direction of integration */
        double min_step = 10 * fabs(nextafter(t, dir * INFINITY) - t);
        if (!fixed && h_abs < min_step) h_abs = min_step;
        int rejected_here = 0;
        double t_new, h;
        for (;;) {
            if (h_abs < min_step) {
                st = elbo_error(ELBO_ERR_STATE,
                                "ode: step size underflow at t = %.17g (|h| = %g < 10 ulp(t); "
                                "the ODE may be stiff or singular there)",
                                t, h_abs);
                goto done;
            }
            if (accepted + rejected >= p->max_steps) {
                st = elbo_error(ELBO_ERR_STATE,
                                "ode: max_steps = %d reached at t = %.17g on the way from %g to %g "
                                "(%d accepted, %d rejected)",
                                p->max_steps, t, t0, t1, accepted, rejected);
                goto done;
            }
            if (fixed)
                t_new = accepted + 1 >= n_fixed ? t1 : t0 + dir * (accepted + 1) * h_abs;
            else {
                t_new = t + dir * h_abs;
                if (dir * (t_new - t1) > 0) t_new = t1;
            }
            h = t_new - t;
            if (!fixed) h_abs = fabs(h);
            if ((st = dopri5_step(&r, t, h, y, k, y_new))) goto done;
            if (fixed) {
                accepted++;
                break;
            }
            double err = error_norm(h, k, y, y_new, n, rtol, atol);
            if (err < 1) {
                double factor =
                    err == 0 ? MAX_FACTOR : fmin(MAX_FACTOR, SAFETY * pow(err, ERR_EXPONENT));
                if (rejected_here) factor = fmin(1.0, factor);
                h_abs *= factor;
                accepted++;
                break;
            }
            /* err_norm >= 1 or NaN (then fmax gives MIN_FACTOR) */
            h_abs *= fmax(MIN_FACTOR, SAFETY * pow(err, ERR_EXPONENT));
            rejected++;
            rejected_here = 1;
        }
        t = t_new;
        h_last = fabs(h);
        memcpy(y, y_new, (size_t)n * sizeof(double));
        double *k1 = k[0]; /* FSAL: k_7 = F(t_new, y_new) is the next step's k_1 */
        k[0] = k[6];
        k[6] = k1;
    }
done:
    if (stats) {
        stats->nfe = r.nfe;
        stats->accepted = accepted;
        stats->rejected = rejected;
        stats->h_last = h_last;
    }
    free(own);
    return st;
}
