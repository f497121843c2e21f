/* The Dormand-Prince 5(4) solver of include/elbo/ode.h on ODEs with known solutions:
 *   y' = lambda y          y = y0 exp(lambda t)           (one rate, and six at once)
 *   y1' = y2, y2' = -y1    y = (cos t, -sin t)            (harmonic oscillator)
 *   y' = -2 t y            y = exp(-t^2)                  (time-dependent, forward and back)
 *   y' = y^2               y = 1 / (1 - t)                (blows up at t = 1: step underflow)
 * plus the order of the method with fixed steps, the FSAL evaluation count, the errors, and
 * the absence of allocation with a caller's work buffer.
 *
 * Bounds. The local error per step is held at err_norm < 1, i.e. about atol + rtol |y|; the
 * global error of the decaying and mildly growing problems on [0, 2] stays below that (it
 * was measured 0.02 .. 0.3 of it over tol 1e-3 .. 1e-9), so the tests ask for err_i <= 1 *
 * (atol + rtol |y_i|). The oscillator is neutrally stable and its error grows linearly in
 * time (measured about 2.6 tol per period); the test allows 10 tol per period.
 * scipy is not installed here (/usr/bin/python3 -c "import scipy" fails), so there is no
 * scipy fixture; the step rules are scipy's RK45 line by line (src/sample/ode.c). */
#include "test.h"

#include "elbo/ode.h"
#include "malloc_count.h"

#include <stdlib.h>
#include <string.h>

/* A right-hand side with a call counter; fail_at > 0 makes that call return an error,
 * nan_at > 0 makes it return a NaN (inf_at: +inf) derivative. */
typedef struct {
    int calls;
    int fail_at, nan_at, inf_at;
    const double *lambda; /* the rates of y' = lambda y */
} rhs;

static elbo_status count_call(rhs *r, double *dydt) {
    r->calls++;
    if (r->calls == r->fail_at)
        return elbo_error(ELBO_ERR_IO, "test rhs: failed at call %d", r->calls);
    if (r->calls == r->nan_at) dydt[0] = NAN;
    if (r->calls == r->inf_at) dydt[0] = INFINITY;
    return ELBO_OK;
}

/* y_i' = lambda_i y_i */
static elbo_status f_linear(void *user, double t, const double *y, double *dydt, int64_t n) {
    rhs *r = user;
    for (int64_t i = 0; i < n; i++) dydt[i] = r->lambda[i] * y[i];
    return count_call(r, dydt);
}

/* y1' = y2, y2' = -y1 */
static elbo_status f_oscillator(void *user, double t, const double *y, double *dydt, int64_t n) {
    dydt[0] = y[1];
    dydt[1] = -y[0];
    return count_call(user, dydt);
}

/* y' = -2 t y */
static elbo_status f_gauss(void *user, double t, const double *y, double *dydt, int64_t n) {
    dydt[0] = -2 * t * y[0];
    return count_call(user, dydt);
}

/* y' = y^2 */
static elbo_status f_square(void *user, double t, const double *y, double *dydt, int64_t n) {
    dydt[0] = y[0] * y[0];
    return count_call(user, dydt);
}

static const double lambda_1[1] = {-1.0};
static const double lambda_6[6] = {-1.0, -0.5, -2.0, 0.3, -3.7, 1.2};

static elbo_ode_params tol_params(double tol) {
    elbo_ode_params p;
    elbo_ode_params_init(&p);
    p.rtol = p.atol = tol;
    return p;
}

/* max_i |y_i - exact_i| / (atol + rtol |exact_i|) for y' = lambda y, y(0) = 1 on [0, T]. */
static double linear_error(const double *lambda, int n, double T, double tol, elbo_ode_stats *s,
                           double *abs_err) {
    rhs r = {0};
    r.lambda = lambda;
    elbo_ode_params p = tol_params(tol);
    *abs_err = INFINITY;
    double y[6];
    for (int i = 0; i < n; i++) y[i] = 1.0;
    if (elbo_ode_dopri5(f_linear, &r, 0.0, T, y, n, &p, NULL, s) != ELBO_OK) return INFINITY;
    double worst = 0, worst_abs = 0;
    for (int i = 0; i < n; i++) {
        double exact = exp(lambda[i] * T), e = fabs(y[i] - exact);
        worst = fmax(worst, e / (tol + tol * exact));
        worst_abs = fmax(worst_abs, e);
    }
    *abs_err = worst_abs;
    return worst;
}

TEST(ode_params_defaults) {
    elbo_ode_params p;
    memset(&p, 0xff, sizeof p);
    elbo_ode_params_init(&p);
    CHECK(p.rtol == 1e-5 && p.atol == 1e-5 && p.h0 == 0 && p.h_fixed == 0 && p.max_steps == 100000);
    CHECK(elbo_ode_work_size(10) == 80);
}

/* y' = -y on [0, 1] and y' = lambda y for six rates on [0, 2]: the error is within the
 * tolerance and falls as the tolerance tightens (by at least 30x per 1000x). */
TEST(ode_exp_decay) {
    const double tols[3] = {1e-3, 1e-6, 1e-9};
    double prev1 = INFINITY, prev6 = INFINITY;
    for (int k = 0; k < 3; k++) {
        elbo_ode_stats s1, s6;
        double abs1, abs6;
        double rel1 = linear_error(lambda_1, 1, 1.0, tols[k], &s1, &abs1);
        double rel6 = linear_error(lambda_6, 6, 2.0, tols[k], &s6, &abs6);
        CHECK_MSG(rel1 <= 1.0, "y' = -y, tol %g: error %.3g of the tolerance", tols[k], rel1);
        CHECK_MSG(rel6 <= 1.0, "y' = lambda y, tol %g: error %.3g of the tolerance", tols[k], rel6);
        CHECK_MSG(abs1 * 30 <= prev1 && abs6 * 30 <= prev6,
                  "tol %g: errors %.3g, %.3g after %.3g, %.3g", tols[k], abs1, abs6, prev1, prev6);
        CHECK(s1.accepted >= 1 && s6.accepted > s1.accepted);
        prev1 = abs1, prev6 = abs6;
    }
}

/* Five periods of the oscillator from (1, 0): the point (cos T, -sin T), the energy
 * y1^2 + y2^2 = 1 and the phase atan2(-y2, y1) = T mod 2 pi, each within 10 tol per period. */
TEST(ode_harmonic_oscillator) {
    const double tol = 1e-8, periods = 5, T = periods * 2 * M_PI, bound = 10 * tol * periods;
    elbo_ode_params p = tol_params(tol);
    rhs r = {0};
    elbo_ode_stats s;
    double y[2] = {1, 0};
    CHECK(elbo_ode_dopri5(f_oscillator, &r, 0.0, T, y, 2, &p, NULL, &s) == ELBO_OK);
    CHECK_NEAR(y[0], cos(T), bound);
    CHECK_NEAR(y[1], -sin(T), bound);
    CHECK_NEAR(y[0] * y[0] + y[1] * y[1], 1.0, bound);
    CHECK_NEAR(atan2(-y[1], y[0]), remainder(T, 2 * M_PI), bound);
    CHECK(r.calls == s.nfe);
}

/* y' = -2 t y: forward from y(0) = 1 to exp(-1), backward from y(1) = exp(-1) to 1 (negative
 * steps, t1 < t0), both within the tolerance, at tol 1e-3, 1e-6, 1e-9. */
TEST(ode_time_dependent_both_directions) {
    const double tols[3] = {1e-3, 1e-6, 1e-9};
    for (int k = 0; k < 3; k++) {
        double tol = tols[k];
        elbo_ode_params p = tol_params(tol);
        rhs r = {0};
        elbo_ode_stats s;
        double y = 1.0;
        CHECK(elbo_ode_dopri5(f_gauss, &r, 0.0, 1.0, &y, 1, &p, NULL, &s) == ELBO_OK);
        CHECK_NEAR(y, exp(-1.0), tol + tol * exp(-1.0));
        CHECK(s.accepted >= 1 && s.h_last > 0);
        y = exp(-1.0);
        CHECK(elbo_ode_dopri5(f_gauss, &r, 1.0, 0.0, &y, 1, &p, NULL, &s) == ELBO_OK);
        CHECK_NEAR(y, 1.0, tol + tol * 1.0);
        CHECK(s.accepted >= 1 && s.h_last > 0);
        /* across 0 and backward over a longer span: y(-1.5) from y(1) */
        y = exp(-1.0);
        CHECK(elbo_ode_dopri5(f_gauss, &r, 1.0, -1.5, &y, 1, &p, NULL, &s) == ELBO_OK);
        CHECK_NEAR(y, exp(-2.25), tol + tol * exp(-2.25));
    }
}

/* Global error with fixed steps h: halving h divides it by about 2^5, the observed order
 * log2(e(h) / e(h/2)) lies in [4.6, 5.4] (measured 5.00 for the oscillator at h = 0.2 ..
 * 0.025, 5.2 and 5.1 for y' = -2 t y at h = 0.05 .. 0.0125, where h^5 dominates), and N
 * steps cost 1 + 6 N evaluations. */
TEST(ode_fifth_order) {
    const double h_osc[4] = {0.2, 0.1, 0.05, 0.025}, h_gauss[3] = {0.05, 0.025, 0.0125};
    double e_prev = 0;
    for (int k = 0; k < 4; k++) {
        elbo_ode_params p;
        elbo_ode_params_init(&p);
        p.h_fixed = h_osc[k];
        rhs r = {0};
        elbo_ode_stats s;
        double y[2] = {1, 0};
        CHECK(elbo_ode_dopri5(f_oscillator, &r, 0.0, 2.0, y, 2, &p, NULL, &s) == ELBO_OK);
        int steps = (int)lround(2.0 / h_osc[k]);
        CHECK_MSG(s.accepted == steps && s.rejected == 0 && s.nfe == 1 + 6 * steps,
                  "h %g: %d accepted, %d rejected, nfe %d", h_osc[k], s.accepted, s.rejected,
                  s.nfe);
        double e = hypot(y[0] - cos(2.0), y[1] + sin(2.0));
        if (k) {
            double order = log2(e_prev / e);
            CHECK_MSG(order >= 4.6 && order <= 5.4, "oscillator h %g: observed order %.3f",
                      h_osc[k], order);
        }
        e_prev = e;
    }
    for (int k = 0; k < 3; k++) {
        elbo_ode_params p;
        elbo_ode_params_init(&p);
        p.h_fixed = h_gauss[k];
        rhs r = {0};
        double y = 1;
        CHECK(elbo_ode_dopri5(f_gauss, &r, 0.0, 2.0, &y, 1, &p, NULL, NULL) == ELBO_OK);
        double e = fabs(y - exp(-4.0));
        if (k) {
            double order = log2(e_prev / e);
            CHECK_MSG(order >= 4.6 && order <= 5.4, "y' = -2ty h %g: observed order %.3f",
                      h_gauss[k], order);
        }
        e_prev = e;
    }
    /* a step that does not divide the interval: 0.3 into 1 gives 3 full steps and a last of 0.1 */
    elbo_ode_params p;
    elbo_ode_params_init(&p);
    p.h_fixed = 0.3;
    rhs r = {0};
    r.lambda = lambda_1;
    elbo_ode_stats s;
    double y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, &s) == ELBO_OK);
    CHECK(s.accepted == 4 && s.nfe == 25);
    CHECK_NEAR(s.h_last, 0.1, 1e-15);
    /* DP5's stability function is R(z) = sum_{j<=5} z^j / j! + z^6 / 600, so each step of
     * y' = -y errs by about (1/600 - 1/720) h^6 = h^6 / 3600 = 2e-7 (measured 3.6e-7 in all) */
    CHECK_NEAR(y, exp(-1.0), 1e-6);
}

/* Evaluations: one F(t0, y0), one more for Hairer's initial step when h0 = 0, then 6 per
 * attempted step (FSAL: k_7 of an accepted step is the next k_1; a rejected step also
 * computes its k_7, for the error estimate). A given h0 skips the initial-step evaluation;
 * h0 = 1 with tol 1e-8 is too large and is rejected first. The callback's own count agrees. */
TEST(ode_fsal_evaluation_count) {
    const double tols[3] = {1e-3, 1e-6, 1e-9};
    for (int k = 0; k < 3; k++) {
        elbo_ode_params p = tol_params(tols[k]);
        rhs r = {0};
        elbo_ode_stats s;
        double y = 1;
        CHECK(elbo_ode_dopri5(f_gauss, &r, 0.0, 2.0, &y, 1, &p, NULL, &s) == ELBO_OK);
        CHECK_MSG(s.nfe == 2 + 6 * (s.accepted + s.rejected) && r.calls == s.nfe,
                  "tol %g: nfe %d, calls %d, %d accepted, %d rejected", tols[k], s.nfe, r.calls,
                  s.accepted, s.rejected);
    }
    elbo_ode_params p = tol_params(1e-8);
    p.h0 = 1.0;
    rhs r = {0};
    r.lambda = lambda_1;
    elbo_ode_stats s;
    double y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 3.0, &y, 1, &p, NULL, &s) == ELBO_OK);
    CHECK_MSG(s.rejected >= 1 && s.nfe == 1 + 6 * (s.accepted + s.rejected) && r.calls == s.nfe,
              "h0 = 1: nfe %d, %d accepted, %d rejected", s.nfe, s.accepted, s.rejected);
    CHECK_NEAR(y, exp(-3.0), 1e-8 + 1e-8 * exp(-3.0));
    /* one step: h0 covering the whole interval is clipped to it and, tolerance met, accepted */
    p = tol_params(1e-3);
    p.h0 = 5.0;
    r.calls = 0;
    y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 0.01, &y, 1, &p, NULL, &s) == ELBO_OK);
    CHECK(s.nfe == 7 && s.accepted == 1 && s.rejected == 0);
    CHECK_NEAR(s.h_last, 0.01, 1e-17);
}

/* t0 == t1: nothing is evaluated and y keeps its bits. */
TEST(ode_empty_interval) {
    rhs r = {0};
    r.lambda = lambda_6;
    double y[6] = {1, -2, 3, NAN, 5, 6}, y0[6];
    memcpy(y0, y, sizeof y);
    elbo_ode_stats s;
    memset(&s, 0x55, sizeof s);
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.25, 0.25, y, 6, NULL, NULL, &s) == ELBO_OK);
    CHECK(s.nfe == 0 && s.accepted == 0 && s.rejected == 0 && s.h_last == 0 && r.calls == 0);
    CHECK(memcmp(y, y0, sizeof y) == 0);
}

/* An error of F is returned as it is, status and message; a non-finite derivative stops
 * the solver with ELBO_ERR_STATE; y' = y^2 from y(0) = 1 to t = 2 crosses the pole at
 * t = 1, where the step size underflows. */
TEST(ode_callback_errors) {
    rhs r = {0};
    r.lambda = lambda_1;
    r.fail_at = 5;
    elbo_ode_stats s;
    double y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, NULL, NULL, &s) == ELBO_ERR_IO);
    CHECK(strcmp(elbo_last_error(), "test rhs: failed at call 5") == 0);
    CHECK(s.nfe == 5 && r.calls == 5);
    CHECK(y == 1.0); /* no step was completed */

    r = (rhs){0};
    r.lambda = lambda_1;
    r.nan_at = 10;
    y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, NULL, NULL, &s) == ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "ode:") && strstr(elbo_last_error(), "non-finite"));
    CHECK(s.nfe == 10 && s.accepted == 1); /* calls 1, 2 and 3..8 made the first step */
    CHECK(isfinite(y) && y < 1.0);

    r = (rhs){0};
    r.lambda = lambda_1;
    r.inf_at = 1;
    y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, NULL, NULL, &s) == ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "non-finite") && s.nfe == 1);

    r = (rhs){0};
    y = 1;
    CHECK(elbo_ode_dopri5(f_square, &r, 0.0, 2.0, &y, 1, NULL, NULL, &s) == ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "ode:") && strstr(elbo_last_error(), "underflow"));
    CHECK(y > 1e6 && s.rejected >= 1); /* it got close to the pole */
}

/* max_steps counts attempted steps: 3 are too few for y' = -y at tol 1e-9; in fixed mode 10
 * steps of 0.1 over [0, 1] need max_steps >= 10. */
TEST(ode_max_steps) {
    elbo_ode_params p = tol_params(1e-9);
    p.max_steps = 3;
    rhs r = {0};
    r.lambda = lambda_1;
    elbo_ode_stats s;
    double y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, &s) == ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "max_steps"));
    CHECK(s.accepted + s.rejected == 3 && s.nfe == 2 + 6 * 3);
    elbo_ode_params_init(&p);
    p.h_fixed = 0.1;
    p.max_steps = 9;
    y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, &s) == ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "max_steps") && s.accepted == 9);
    p.max_steps = 10;
    y = 1;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, &s) == ELBO_OK);
    CHECK(s.accepted == 10 && s.nfe == 61);
}

/* Bad arguments: ELBO_ERR_ARG with a message naming the parameter, before F is called. */
TEST(ode_bad_params) {
    rhs r = {0};
    r.lambda = lambda_1;
    double y = 1;
    elbo_ode_params p;
#define BAD(field, value, t0, t1, name)                                                            \
    do {                                                                                           \
        elbo_ode_params_init(&p);                                                                  \
        field = value;                                                                             \
        elbo_clear_error();                                                                        \
        CHECK_MSG(elbo_ode_dopri5(f_linear, &r, t0, t1, &y, 1, &p, NULL, NULL) == ELBO_ERR_ARG &&  \
                      strstr(elbo_last_error(), name),                                             \
                  "%s = %s: '%s'", #field, #value, elbo_last_error());                             \
    } while (0)
    BAD(p.rtol, -1e-3, 0.0, 1.0, "rtol");
    BAD(p.rtol, NAN, 0.0, 1.0, "rtol");
    BAD(p.atol, -1e-3, 0.0, 1.0, "atol");
    BAD(p.h0, -0.1, 0.0, 1.0, "h0");
    BAD(p.h_fixed, -0.1, 0.0, 1.0, "h_fixed");
    BAD(p.max_steps, 0, 0.0, 1.0, "max_steps");
    BAD(p.rtol, 1e-5, NAN, 1.0, "t0");
    BAD(p.rtol, 1e-5, 0.0, INFINITY, "t1");
    BAD(p.rtol, 1e-5, 0.0, -INFINITY, "t1");
    elbo_ode_params_init(&p);
    p.rtol = p.atol = 0;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "rtol") && strstr(elbo_last_error(), "atol"));
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 0, NULL, NULL, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "n must be"));
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, NULL, 1, NULL, NULL, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "y is NULL"));
    CHECK(elbo_ode_dopri5(NULL, &r, 0.0, 1.0, &y, 1, NULL, NULL, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "f (the right-hand side"));
    CHECK(r.calls == 0 && y == 1.0);
    /* no tolerance is needed with fixed steps */
    p.h_fixed = 0.25;
    CHECK(elbo_ode_dopri5(f_linear, &r, 0.0, 1.0, &y, 1, &p, NULL, NULL) == ELBO_OK);
    CHECK_NEAR(y, exp(-1.0), 1e-6); /* 4 h^6 / 3600 = 2.7e-7 (see ode_fifth_order) */
#undef BAD
}

/* With a caller's work buffer the solver makes no heap call at all; with work = NULL it
 * makes exactly two (the buffer's malloc and free), however many steps it takes. Results
 * are the same bits either way. */
TEST(ode_no_allocation) {
    if (!malloc_count_available()) return; /* ASan interposes malloc itself */
    enum { N = 6 };
    double *work = malloc(elbo_ode_work_size(N) * sizeof(double));
    CHECK(work);
    rhs r = {0};
    r.lambda = lambda_6;
    elbo_ode_params p = tol_params(1e-9);
    double y[N], y_null[N];
    for (int i = 0; i < N; i++) y[i] = y_null[i] = 1;
    elbo_ode_stats s, s_null, s_short;
    malloc_count_result mc, mc_null, mc_short;
    malloc_count_start();
    elbo_status st = elbo_ode_dopri5(f_linear, &r, 0.0, 2.0, y, N, &p, work, &s);
    malloc_count_stop(&mc);
    free(work);
    CHECK(st == ELBO_OK && s.accepted > 20);
    CHECK_MSG(mc.calls[0] == 0 && mc.calls[1] == 0, "heap calls: %ld (%s), %ld in libraries (%s)",
              mc.calls[0], mc.first[0], mc.calls[1], mc.first[1]);
    malloc_count_start();
    st = elbo_ode_dopri5(f_linear, &r, 0.0, 2.0, y_null, N, &p, NULL, &s_null);
    malloc_count_stop(&mc_null);
    CHECK(st == ELBO_OK);
    double y_short[N] = {1, 1, 1, 1, 1, 1};
    malloc_count_start();
    st = elbo_ode_dopri5(f_linear, &r, 0.0, 0.01, y_short, N, &p, NULL, &s_short);
    malloc_count_stop(&mc_short);
    CHECK(st == ELBO_OK && s_short.accepted < s_null.accepted);
    CHECK_MSG(mc_null.calls[0] == 2 && mc_short.calls[0] == 2, "heap calls: %ld and %ld (%s)",
              mc_null.calls[0], mc_short.calls[0], mc_null.first[0]);
    CHECK(memcmp(y, y_null, sizeof y) == 0 && s.nfe == s_null.nfe);
}
