/* elbo ode: an adaptive explicit Runge-Kutta solver for dy/dt = F(t, y), y in R^n, as score
 * SDEs integrate the probability-flow ODE (Song et al. 2021 use scipy's solve_ivp, RK45,
 * rtol = atol = 1e-5).
 *
 * Method: the Dormand-Prince 5(4) pair (Dormand & Prince 1980, "A family of embedded
 * Runge-Kutta formulae"; Hairer, Norsett & Wanner, Solving ODEs I, II.5), 7 stages
 *   k_1 = F(t, y),  k_i = F(t + c_i h, y + h sum_{j<i} a_ij k_j),  i = 2..7,
 *   y_new = y + h sum_i b_i k_i   (5th order; a_7j = b_j, so k_7 = F(t + h, y_new)),
 * propagating the 5th-order solution (local extrapolation) and reusing k_7 as the next
 * step's k_1 (FSAL): an accepted or rejected step costs 6 evaluations of F.
 *
 * Error control as scipy's RK45 (Hairer et al. II.4, automatic step size control):
 *   err_i    = h sum_j e_j k_j,i      (5th minus 4th order solution, scipy's E)
 *   sc_i     = atol + rtol max(|y_i|, |y_new_i|)   (a term with err_i == 0 counts 0, also
 *                                                  where sc_i == 0, i.e. atol == 0)
 *   err_norm = sqrt(mean_i (err_i / sc_i)^2)
 * The step is accepted if err_norm < 1, and the next step size is h |factor| with
 *   accepted: factor = min(10, 0.9 err_norm^(-1/5))  (10 if err_norm == 0),
 *             and at most 1 if this step was rejected before;
 *   rejected: factor = max(0.2, 0.9 err_norm^(-1/5)), and the step is retried.
 * The last step is shortened to land exactly on t1. A step smaller than 10 ulp(t) (about
 * 10 eps |t|; scipy's min_step) gives up. The first step (h0 = 0) follows Hairer's rule
 * (II.4, "starting step size"; scipy's select_initial_step), one extra evaluation of F:
 *   d0 = ||y0 / sc||, d1 = ||f0 / sc||, sc = atol + rtol |y0|,
 *   h' = 0.01 d0 / d1 (1e-6 if d0 or d1 < 1e-5), capped at |t1 - t0|,
 *   d2 = ||(F(t0 + h', y0 + h' f0) - f0) / sc|| / h',
 *   h1 = (0.01 / max(d1, d2))^(1/5), or max(1e-6, 1e-3 h') if d1 and d2 <= 1e-15,
 *   h0 = min(100 h', h1, |t1 - t0|).
 *
 * Everything is double; the work buffer is the only memory and the step loop allocates
 * nothing. */
#ifndef ELBO_ODE_H
#define ELBO_ODE_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* dy/dt = F(t, y), y in R^n. A non-zero status stops the solver, which returns it. */
typedef elbo_status (*elbo_ode_fn)(void *user, double t, const double *y, double *dydt, int64_t n);

typedef struct {
    double rtol, atol; /* relative and absolute tolerance: 1e-5, 1e-5 (score_sde's defaults) */
    double h0;         /* first step size, > 0; 0: chosen automatically (Hairer's rule, as scipy's
                          select_initial_step) */
    double h_fixed; /* > 0: take fixed steps of this size (the last one shortened to land on t1), no
                       error control; for order tests. 0: adaptive */
    int max_steps;  /* attempted steps (accepted + rejected) before giving up with ELBO_ERR_STATE:
                       100000 */
} elbo_ode_params;
/* The defaults above. */
void elbo_ode_params_init(elbo_ode_params *p);

typedef struct {
    int nfe; /* evaluations of F */
    int accepted, rejected;
    double h_last; /* last accepted step size (absolute) */
} elbo_ode_stats;

/* Doubles of work space elbo_ode_dopri5 needs for n unknowns: 8 n (seven stages and the
 * stage argument). */
size_t elbo_ode_work_size(int64_t n);

/* Integrates y (n doubles, in place) from t0 to t1 (t1 < t0 integrates backward; t1 == t0 returns
 * at once with nfe 0). work: room for elbo_ode_work_size(n) doubles, or NULL to allocate it once
 * here (freed before returning); nothing is allocated inside the step loop. stats optional.
 * ELBO_ERR_ARG (message names the parameter) for non-finite t0/t1, rtol < 0, atol < 0, rtol == atol
 * == 0 in adaptive mode, h0 < 0, h_fixed < 0, max_steps < 1, n < 1, NULL y or f. ELBO_ERR_STATE
 * with a clear message if the step size underflows (|h| < 10 ulp(t), about 10 * eps * |t|, as
 * scipy) or max_steps is reached, or if F returns a non-finite value. p NULL: the defaults. On an
 * error y holds the solution at the last accepted step and stats the counts so far. With h_fixed,
 * every step costs 6 evaluations after the first. */
elbo_status elbo_ode_dopri5(elbo_ode_fn f, void *user, double t0, double t1, double *y, int64_t n,
                            const elbo_ode_params *p, double *work, elbo_ode_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
