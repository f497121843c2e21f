/* Noise processes, the posterior q(x_s|x_t,x) and the parameterisations of
 * include/elbo/diffusion.h: identities of every schedule, derivatives against central
 * differences, DDPM's discrete betas, q(x_t|x) and q(x_s|x_t,x) against Monte Carlo, the
 * conversions round-trip, and Tweedie's formula against the exact posterior mean of
 * Gaussian data. Monte-Carlo tolerances are 5 standard errors of the same sample. */
#include "test.h"

#include "elbo/diffusion.h"

#include <stdlib.h>
#include <string.h>

#define PI_D 3.14159265358979323846

static const char *all_schedules[] = {"linear", "cosine", "loglinear", "subvp", "ve"};

/* A learned schedule with fixed pseudo-random weights (n = 16). */
typedef struct {
    float w1, w2[16], b2[16], w3[16], gamma_0, gamma_1;
    elbo_learned_schedule l;
} learned_fixture;

static void learned_fixture_init(learned_fixture *f, uint64_t seed) {
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    f->w1 = 1.5f;
    elbo_rng_normal(&rng, f->w2, 16, 0, 2); /* signs are ignored: |w| */
    elbo_rng_normal(&rng, f->b2, 16, 0, 1);
    elbo_rng_normal(&rng, f->w3, 16, 0, 1);
    f->gamma_0 = -13.3f;
    f->gamma_1 = 5.0f;
    f->l = (elbo_learned_schedule){16, &f->w1, f->w2, f->b2, f->w3, &f->gamma_0, &f->gamma_1};
}

static void process_named(elbo_process *p, const char *name, const elbo_learned_schedule *l) {
    elbo_process_init(p);
    elbo_process_set_schedule(p, name);
    p->learned = l;
}

/* log_snr = log(alpha^2 / sigma^2); VP: alpha^2 + sigma^2 = 1; sub-VP: sigma = 1 - alpha^2;
 * VE: alpha = 1; log_snr strictly decreasing on a fine grid. */
TEST(diffusion_process_identities) {
    learned_fixture lf;
    learned_fixture_init(&lf, 3);
    const char *names[] = {"linear", "cosine", "loglinear", "learned", "subvp", "ve"};
    for (int k = 0; k < 6; k++) {
        elbo_process p;
        process_named(&p, names[k], &lf.l);
        CHECK(strcmp(elbo_process_schedule_name(&p), names[k]) == 0);
        double prev = INFINITY;
        for (int i = 0; i <= 1000; i++) {
            elbo_noise_level n;
            CHECK(elbo_process_at(&p, i / 1000.0, &n) == ELBO_OK);
            CHECK_MSG(n.log_snr < prev, "%s: log_snr not decreasing at t = %g", names[k], n.t);
            prev = n.log_snr;
            CHECK_NEAR(n.log_snr, 2 * log(n.alpha / n.sigma), 1e-9 * (1 + fabs(n.log_snr)));
            if (p.kind == ELBO_PROCESS_VP) CHECK_NEAR(n.alpha * n.alpha + n.sigma * n.sigma, 1, 1e-12);
            if (p.kind == ELBO_PROCESS_SUBVP) CHECK_NEAR(n.sigma, 1 - n.alpha * n.alpha, 1e-12);
            if (p.kind == ELBO_PROCESS_VE) CHECK(n.alpha == 1.0 && n.f == 0.0);
            CHECK(n.dlog_snr_dt < 0 && n.g2 > 0);
        }
    }
}

/* d log_snr/dt, f = d log alpha/dt and g^2 = d sigma^2/dt - 2 f sigma^2 against central
 * differences with h = 1e-5 (truncation error ~ h^2 |f'''|, far below the tolerance). */
TEST(diffusion_process_derivatives_fd) {
    learned_fixture lf;
    learned_fixture_init(&lf, 5);
    const char *names[] = {"linear", "cosine", "loglinear", "learned", "subvp", "ve"};
    const double h = 1e-5;
    for (int k = 0; k < 6; k++) {
        elbo_process p;
        process_named(&p, names[k], &lf.l);
        for (int i = 1; i < 20; i++) {
            double t = i / 20.0;
            elbo_noise_level n, a, b;
            CHECK(elbo_process_at(&p, t, &n) == ELBO_OK);
            CHECK(elbo_process_at(&p, t - h, &a) == ELBO_OK);
            CHECK(elbo_process_at(&p, t + h, &b) == ELBO_OK);
            double dlam = (b.log_snr - a.log_snr) / (2 * h);
            double dlog_alpha = (log(b.alpha) - log(a.alpha)) / (2 * h);
            double dvar = (b.sigma * b.sigma - a.sigma * a.sigma) / (2 * h);
            double tol = 1e-5 * (1 + fabs(dlam));
            CHECK_MSG(fabs(n.dlog_snr_dt - dlam) <= tol, "%s t=%g: dlog_snr %.9g vs fd %.9g",
                      names[k], t, n.dlog_snr_dt, dlam);
            CHECK_NEAR(n.f, dlog_alpha, 1e-5 * (1 + fabs(dlog_alpha)));
            double g2 = dvar - 2 * n.f * n.sigma * n.sigma;
            CHECK_NEAR(n.g2, g2, 1e-5 * (1 + fabs(g2)));
        }
    }
}

/* Endpoints: cosine and loglinear hit log_snr_max at 0 and log_snr_min at 1; VE hits
 * sigma_min and sigma_max; the learned one hits -gamma_0 and -gamma_1; the untruncated
 * cosine is alpha^2 = cos^2(pi t / 2). */
TEST(diffusion_process_endpoints) {
    learned_fixture lf;
    learned_fixture_init(&lf, 7);
    elbo_process p;
    elbo_noise_level a, b;
    const char *names[] = {"cosine", "loglinear"};
    for (int k = 0; k < 2; k++) {
        process_named(&p, names[k], NULL);
        CHECK(elbo_process_at(&p, 0, &a) == ELBO_OK && elbo_process_at(&p, 1, &b) == ELBO_OK);
        CHECK_NEAR(a.log_snr, 13.3, 1e-9);
        CHECK_NEAR(b.log_snr, -5.0, 1e-9);
    }
    process_named(&p, "learned", &lf.l);
    CHECK(elbo_process_at(&p, 0, &a) == ELBO_OK && elbo_process_at(&p, 1, &b) == ELBO_OK);
    CHECK_NEAR(a.log_snr, 13.3, 1e-5);
    CHECK_NEAR(b.log_snr, -5.0, 1e-5);
    process_named(&p, "ve", NULL);
    CHECK(elbo_process_at(&p, 0, &a) == ELBO_OK && elbo_process_at(&p, 1, &b) == ELBO_OK);
    CHECK_NEAR(a.sigma, 0.01, 1e-12);
    CHECK_NEAR(b.sigma, 50.0, 1e-9);
    CHECK(elbo_process_prior_std(&p) == 50.0);
    process_named(&p, "cosine", NULL);
    p.log_snr_min = -60;
    p.log_snr_max = 60;
    for (int i = 1; i < 10; i++) {
        double t = i / 10.0, c = cos(PI_D * t / 2);
        CHECK(elbo_process_at(&p, t, &a) == ELBO_OK);
        CHECK_NEAR(a.alpha * a.alpha, c * c, 1e-9);
    }
}

/* elbo_process_time_at_log_snr inverts log_snr(t): loglinear's log_snr(t) = 13.3 - 18.3 t
 * exactly, and for every schedule the level it returns has the requested log SNR. */
TEST(diffusion_time_at_log_snr) {
    elbo_process p;
    elbo_noise_level l;
    process_named(&p, "loglinear", NULL);
    CHECK(elbo_process_time_at_log_snr(&p, 4.15, &l) == ELBO_OK);
    CHECK_NEAR(l.t, 0.5, 1e-12);
    const char *names[] = {"cosine", "linear", "subvp", "ve"};
    for (int k = 0; k < 4; k++) {
        process_named(&p, names[k], NULL);
        elbo_noise_level a, b;
        CHECK(elbo_process_at(&p, 0, &a) == ELBO_OK && elbo_process_at(&p, 1, &b) == ELBO_OK);
        for (int i = 0; i <= 8; i++) {
            double target = b.log_snr + (a.log_snr - b.log_snr) * i / 8.0;
            CHECK(elbo_process_time_at_log_snr(&p, target, &l) == ELBO_OK);
            CHECK_MSG(fabs(l.log_snr - target) < 1e-9 * (1 + fabs(target)), "%s: %g at %g",
                      names[k], l.log_snr, target);
        }
        elbo_clear_error();
        CHECK(elbo_process_time_at_log_snr(&p, a.log_snr + 1, &l) == ELBO_ERR_ARG);
        CHECK(strstr(elbo_last_error(), "range") != NULL);
    }
}

/* The linear schedule against DDPM's discrete betas (1e-4 .. 0.02, T = 1000):
 * alpha_bar_i = prod_{j <= i} (1 - beta_j) at t = (i - 1) / 999. The continuous schedule
 * integrates beta over [0, i/T] where DDPM sums beta_j (a half-step shift, 10% of log
 * alpha_bar at step 1) and log(1 - beta) = -beta - beta^2/2 (0.068 nats by step 1000), so
 * the two agree to 0.07 nats of log alpha_bar, and 10% of it, at every step. */
TEST(diffusion_linear_matches_ddpm) {
    elbo_process p;
    process_named(&p, "linear", NULL);
    double log_abar = 0;
    for (int i = 1; i <= 1000; i++) {
        double beta = 1e-4 + (0.02 - 1e-4) * (i - 1) / 999.0;
        log_abar += log1p(-beta);
        elbo_noise_level n;
        CHECK(elbo_process_at(&p, (i - 1) / 999.0, &n) == ELBO_OK);
        double d = fabs(2 * log(n.alpha) - log_abar);
        CHECK_MSG(d <= 0.07 && d <= 0.1 * fabs(log_abar), "step %d: log alpha^2 %.6g vs DDPM %.6g",
                  i, 2 * log(n.alpha), log_abar);
    }
}

/* Mean and variance of n samples. */
static void moments(const double *x, int n, double *mean, double *var) {
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += x[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (x[i] - m) * (x[i] - m);
    *mean = m;
    *var = v / (n - 1);
}

/* Draw x_s ~ q(x_s|x) and x_t ~ q(x_t|x_s) = N(alpha_ts x_s, var_ts): x_t must be
 * q(x_t|x) = N(alpha_t x, sigma_t^2), and the regression of x_s on x_t must be the posterior
 * q(x_s|x_t,x): slope coef_xt, intercept coef_x x, residual variance var. */
TEST(diffusion_posterior_monte_carlo) {
    enum { N = 200000 };
    double *xs = malloc(N * sizeof *xs), *xt = malloc(N * sizeof *xt);
    float *e = malloc(2 * N * sizeof *e);
    CHECK(xs && xt && e);
    const double x = 0.7;
    const double pairs[][2] = {{0.1, 0.3}, {0.5, 0.52}, {0.0, 1.0}};
    for (int k = 0; k < 5; k++) {
        for (int q = 0; q < 3; q++) {
            elbo_process p;
            process_named(&p, all_schedules[k], NULL);
            elbo_noise_level s, t;
            elbo_posterior_coefs c;
            CHECK(elbo_process_at(&p, pairs[q][0], &s) == ELBO_OK);
            CHECK(elbo_process_at(&p, pairs[q][1], &t) == ELBO_OK);
            CHECK(elbo_posterior_coefs_at(&s, &t, &c) == ELBO_OK);
            elbo_rng rng;
            elbo_rng_init(&rng, 100 + 10 * k + q);
            elbo_rng_normal(&rng, e, 2 * N, 0, 1);
            for (int i = 0; i < N; i++) {
                xs[i] = s.alpha * x + s.sigma * e[2 * i];
                xt[i] = c.alpha_ts * xs[i] + sqrt(c.var_ts) * e[2 * i + 1];
            }
            double mt, vt;
            moments(xt, N, &mt, &vt);
            CHECK_NEAR(mt, t.alpha * x, 5 * t.sigma / sqrt(N));
            CHECK_NEAR(vt, t.sigma * t.sigma, 5 * t.sigma * t.sigma * sqrt(2.0 / N));
            /* least squares x_s = a x_t + b + r */
            double ms, vs, cov = 0;
            moments(xs, N, &ms, &vs);
            for (int i = 0; i < N; i++) cov += (xs[i] - ms) * (xt[i] - mt);
            cov /= N - 1;
            double slope = cov / vt, icpt = ms - slope * mt, res = 0;
            for (int i = 0; i < N; i++) {
                double r = xs[i] - slope * xt[i] - icpt;
                res += r * r;
            }
            res /= N - 2;
            double se_slope = sqrt(c.var / (vt * N));
            CHECK_MSG(fabs(slope - c.coef_xt) <= 5 * se_slope + 1e-12,
                      "%s (%g,%g): slope %.6g vs %.6g", all_schedules[k], s.t, t.t, slope, c.coef_xt);
            double se_icpt = sqrt(c.var * (1.0 / N + mt * mt / (vt * N)));
            CHECK_NEAR(icpt, c.coef_x * x, 5 * se_icpt + 1e-12);
            CHECK_NEAR(res, c.var, 5 * c.var * sqrt(2.0 / N) + 1e-15);
        }
    }
    free(xs);
    free(xt);
    free(e);
}

/* from -> to -> from is the identity for every pair; and on an exact (x0, eps) every
 * conversion gives the matching exact value. */
TEST(diffusion_param_conversions) {
    enum { N = 64 };
    float x0[N], eps[N], xt[N], truth[4][N], out[N], back[N];
    elbo_rng rng;
    elbo_rng_init(&rng, 9);
    elbo_rng_uniform(&rng, x0, N, -1, 1);
    elbo_rng_normal(&rng, eps, N, 0, 1);
    const double levels[][2] = {{0.95, 0.3122}, {0.3, 0.9539}, {1.0, 7.5}, {0.6, 0.64}};
    for (int l = 0; l < 4; l++) {
        double a = levels[l][0], s = levels[l][1];
        for (int i = 0; i < N; i++) {
            xt[i] = (float)(a * x0[i] + s * eps[i]);
            truth[ELBO_PARAM_EPS][i] = eps[i];
            truth[ELBO_PARAM_X0][i] = x0[i];
            truth[ELBO_PARAM_V][i] = (float)(a * eps[i] - s * x0[i]);
            truth[ELBO_PARAM_SCORE][i] = (float)(-eps[i] / s);
        }
        /* use the rounded x_t's exact eps so that the truths are consistent with it */
        for (int i = 0; i < N; i++) {
            double e_exact = (xt[i] - a * x0[i]) / s;
            truth[ELBO_PARAM_EPS][i] = (float)e_exact;
            truth[ELBO_PARAM_V][i] = (float)(a * e_exact - s * x0[i]);
            truth[ELBO_PARAM_SCORE][i] = (float)(-e_exact / s);
        }
        for (int from = 0; from < 4; from++)
            for (int to = 0; to < 4; to++) {
                elbo_param_convert(from, to, truth[from], xt, a, s, out, N);
                elbo_param_convert(to, from, out, xt, a, s, back, N);
                for (int i = 0; i < N; i++) {
                    double scale = 1 + fabs(truth[to][i]) + fabs(xt[i]) / (a < s ? a : s);
                    CHECK_MSG(fabs(out[i] - truth[to][i]) <= 3e-6 * scale,
                              "%s -> %s [%d]: %.9g vs %.9g", elbo_param_name(from),
                              elbo_param_name(to), i, out[i], truth[to][i]);
                    CHECK_MSG(fabs(back[i] - truth[from][i]) <=
                                  3e-6 * (1 + fabs(truth[from][i]) + fabs(xt[i]) / (a < s ? a : s)),
                              "%s -> %s -> back [%d]", elbo_param_name(from), elbo_param_name(to), i);
                }
            }
    }
    elbo_param_kind k;
    CHECK(elbo_param_parse("v", &k) == ELBO_OK && k == ELBO_PARAM_V);
    CHECK(elbo_param_parse("score", &k) == ELBO_OK && k == ELBO_PARAM_SCORE);
    CHECK(elbo_param_parse("noise", &k) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "noise") != NULL);
}

/* Data x ~ N(m, s^2): q(x_t) = N(alpha m, alpha^2 s^2 + sigma^2) has the exact score
 * -(x_t - alpha m) / (alpha^2 s^2 + sigma^2), and E[x|x_t] = m + alpha s^2 (x_t - alpha m) /
 * (alpha^2 s^2 + sigma^2). Tweedie's formula applied to the exact score must give it. */
TEST(diffusion_tweedie_gaussian_data) {
    enum { N = 32 };
    const double m = 0.3, sd = 0.8;
    float xt[N], score[N], x0_hat[N];
    elbo_rng rng;
    elbo_rng_init(&rng, 11);
    elbo_rng_normal(&rng, xt, N, 0, 2);
    for (int k = 0; k < 5; k++) {
        elbo_process p;
        process_named(&p, all_schedules[k], NULL);
        for (int j = 0; j <= 4; j++) {
            elbo_noise_level n;
            CHECK(elbo_process_at(&p, j / 4.0, &n) == ELBO_OK);
            double v = n.alpha * n.alpha * sd * sd + n.sigma * n.sigma;
            for (int i = 0; i < N; i++) score[i] = (float)(-(xt[i] - n.alpha * m) / v);
            elbo_tweedie_x0(score, xt, n.alpha, n.sigma, x0_hat, N);
            for (int i = 0; i < N; i++) {
                double want = m + n.alpha * sd * sd * (xt[i] - n.alpha * m) / v;
                CHECK_MSG(fabs(x0_hat[i] - want) <= 1e-5 * (1 + fabs(want)) / n.alpha,
                          "%s t=%g: x0_hat %.8g vs E[x|x_t] %.8g", all_schedules[k], n.t,
                          x0_hat[i], want);
            }
        }
    }
}

TEST(diffusion_process_errors) {
    elbo_process p;
    elbo_noise_level n;
    elbo_process_init(&p);
    CHECK(elbo_process_set_schedule(&p, "quadratic") == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "quadratic") != NULL);
    CHECK(elbo_process_at(&p, 1.5, &n) == ELBO_ERR_ARG);
    CHECK(elbo_process_at(&p, NAN, &n) == ELBO_ERR_ARG);
    p.log_snr_min = 20;
    CHECK(elbo_process_at(&p, 0.5, &n) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "log_snr_min") != NULL);
    process_named(&p, "learned", NULL);
    CHECK(elbo_process_at(&p, 0.5, &n) == ELBO_ERR_ARG);
    process_named(&p, "ve", NULL);
    p.sigma_min = 0;
    CHECK(elbo_process_at(&p, 0.5, &n) == ELBO_ERR_ARG);
    process_named(&p, "linear", NULL);
    elbo_noise_level s, t;
    elbo_posterior_coefs c;
    CHECK(elbo_process_at(&p, 0.5, &s) == ELBO_OK && elbo_process_at(&p, 0.2, &t) == ELBO_OK);
    CHECK(elbo_posterior_coefs_at(&s, &t, &c) == ELBO_ERR_ARG);
}

/* ---- the bound ------------------------------------------------------------------------- */

/* Data x ~ N(m, s^2) (one dimension) and the exact denoiser x0_hat = E[x|x_t]: the expected
 * squared error is E||eps - eps_hat||^2 = SNR(t) Var[x|x_t] = alpha^2 s^2 / (alpha^2 s^2 +
 * sigma^2), so L_inf = -1/2 int lambda'(t) s^2 SNR / (1 + s^2 SNR) dt
 *                    = 1/2 log((1 + s^2 SNR(0)) / (1 + s^2 SNR(1))). */
static double gauss_eps_err(const elbo_noise_level *n, double sd) {
    double a2s2 = n->alpha * n->alpha * sd * sd;
    return a2s2 / (a2s2 + n->sigma * n->sigma);
}

static double gauss_L_inf(const elbo_process *p, double sd) {
    elbo_noise_level a, b;
    elbo_process_at(p, 0, &a);
    elbo_process_at(p, 1, &b);
    return 0.5 * (log1p(sd * sd * exp(a.log_snr)) - log1p(sd * sd * exp(b.log_snr)));
}

/* The exact T-step diffusion loss L_T = 1/2 sum_i expm1(lambda(s_i) - lambda(t_i)) e(t_i):
 * it falls as T doubles (VDM sec. 3.3) towards the continuous L_inf, from above, at first
 * order: the gap halves with each doubling of T (checked at T = 8192 -> 16384). How fast
 * depends on how fast log-SNR falls near t = 0 (computed, gap / L_inf at T = 1024 and
 * 16384): loglinear 0.83% / 0.05%, VE 0.74% / 0.05%, linear 10% / 0.55% (d log_snr/dt is
 * about -900 at t = 0), sub-VP 24% / 1.08%, cosine 25% / 1.12% (about -2300); so the
 * deterministic check is gap < 1.2% at T = 16384. */
TEST(diffusion_T_step_bound_converges) {
    const double sd = 0.8;
    for (int k = 0; k < 5; k++) {
        elbo_process p;
        process_named(&p, all_schedules[k], NULL);
        double L_inf = gauss_L_inf(&p, sd), prev = INFINITY;
        for (int T = 1; T <= 16384; T *= 2) {
            double L = 0;
            elbo_noise_level s, t;
            CHECK(elbo_process_at(&p, 0, &s) == ELBO_OK);
            for (int i = 1; i <= T; i++) {
                CHECK(elbo_process_at(&p, (double)i / T, &t) == ELBO_OK);
                L += 0.5 * elbo_diffusion_weight(ELBO_LOSS_ELBO, &t, &s, T) / T * gauss_eps_err(&t, sd);
                s = t;
            }
            CHECK_MSG(L < prev && L > L_inf, "%s T=%d: L_T %.9g (L_T/2 %.9g, L_inf %.9g)",
                      all_schedules[k], T, L, prev, L_inf);
            if (T == 16384) {
                double ratio = (prev - L_inf) / (L - L_inf);
                CHECK_MSG(ratio > 1.9 && ratio < 2.1, "%s: gap ratio %.4g at T = 16384",
                          all_schedules[k], ratio);
                CHECK_MSG(L - L_inf < 0.012 * L_inf, "%s: L_16384 %.9g vs L_inf %.9g",
                          all_schedules[k], L, L_inf);
            }
            prev = L;
        }
    }
}

/* Low-discrepancy times (VDM appendix) against independent ones on the exact expected
 * integrand 1/2 w(t) e(t) of the Gaussian case: one stratum per batch element leaves a
 * batch mean's variance O(1/B^2) of the iid one's O(1/B); measured (B
 * = 64, 2000 batches, seed 23): 0.0017 against 0.19, so a factor of 20 is asked for. */
TEST(diffusion_low_discrepancy_times) {
    enum { B = 64, NB = 2000 };
    elbo_process p;
    process_named(&p, "loglinear", NULL);
    elbo_rng rng;
    elbo_rng_init(&rng, 23);
    double var[2];
    for (int ld = 0; ld < 2; ld++) {
        double s1 = 0, s2 = 0;
        for (int nb = 0; nb < NB; nb++) {
            double t[B], mean = 0;
            elbo_diffusion_sample_times(&rng, B, ld, 0, t);
            for (int b = 0; b < B; b++) {
                elbo_noise_level n;
                CHECK(elbo_process_at(&p, t[b], &n) == ELBO_OK);
                mean += 0.5 * elbo_diffusion_weight(ELBO_LOSS_ELBO, &n, NULL, 0) * gauss_eps_err(&n, 0.8) / B;
            }
            s1 += mean;
            s2 += mean * mean;
        }
        var[ld] = (s2 - s1 * s1 / NB) / (NB - 1);
        CHECK_NEAR(s1 / NB, gauss_L_inf(&p, 0.8), 5 * sqrt(var[ld] / NB));
    }
    CHECK_MSG(var[1] * 20 < var[0], "low-discrepancy batch variance %.4g vs iid %.4g", var[1], var[0]);
}

/* The whole continuous bound by Monte Carlo, for Gaussian data and the exact denoiser,
 * through the library's own path (times, process, x0 -> eps conversion, weight, prior and
 * reconstruction terms), against its closed form:
 *   E L_prior = 1/2 (sigma_1^2 + alpha_1^2 (m^2 + s^2) - 1 - log sigma_1^2)
 *   E L_recon = 1/2 log(2 pi sigma_0^2 / alpha_0^2) + 1/2,   E L_diffusion = L_inf above.
 * The closed form bounds the data's entropy 1/2 log(2 pi e s^2) from above, by under 0.01
 * nats on the log-linear schedule. */
TEST(diffusion_bound_gaussian_data) {
    enum { B = 64, NB = 2000 };
    const double m = 0.3, sd = 0.8;
    elbo_process p;
    process_named(&p, "loglinear", NULL);
    elbo_noise_level zero, one;
    CHECK(elbo_process_at(&p, 0, &zero) == ELBO_OK && elbo_process_at(&p, 1, &one) == ELBO_OK);
    double want_prior = 0.5 * (one.sigma * one.sigma + one.alpha * one.alpha * (m * m + sd * sd) -
                               1 - 2 * log(one.sigma));
    double want_recon = 0.5 * log(2 * PI_D * zero.sigma * zero.sigma / (zero.alpha * zero.alpha)) + 0.5;
    double want_diff = gauss_L_inf(&p, sd);
    double entropy = 0.5 * log(2 * PI_D * exp(1.0) * sd * sd);
    double gap = want_prior + want_recon + want_diff - entropy;
    CHECK_MSG(gap > 0 && gap < 0.01, "closed-form bound - entropy = %.6g", gap);

    elbo_rng rng;
    elbo_rng_init(&rng, 21);
    double sum[3] = {0}, sum2[3] = {0};
    {
        for (int nb = 0; nb < NB; nb++) {
            double t[B];
            float x[B], e[B], e0[B], xt[1], eps_hat[1], x0_hat[1];
            elbo_diffusion_sample_times(&rng, B, 1, 0, t);
            elbo_rng_normal(&rng, x, B, (float)m, (float)sd);
            elbo_rng_normal(&rng, e, B, 0, 1);
            elbo_rng_normal(&rng, e0, B, 0, 1);
            for (int b = 0; b < B; b++) {
                elbo_noise_level n;
                CHECK(elbo_process_at(&p, t[b], &n) == ELBO_OK);
                xt[0] = (float)(n.alpha * x[b] + n.sigma * e[b]);
                double v = n.alpha * n.alpha * sd * sd + n.sigma * n.sigma;
                x0_hat[0] = (float)(m + n.alpha * sd * sd * (xt[0] - n.alpha * m) / v);
                elbo_param_convert(ELBO_PARAM_X0, ELBO_PARAM_EPS, x0_hat, xt, n.alpha, n.sigma,
                                   eps_hat, 1);
                double r = e[b] - eps_hat[0];
                double terms[3] = {0.5 * elbo_diffusion_weight(ELBO_LOSS_ELBO, &n, NULL, 0) * r * r,
                                   elbo_diffusion_prior_kl(&one, 1.0, &x[b], 1),
                                   elbo_diffusion_recon_gauss(&zero, &x[b], &e0[b], 1)};
                for (int j = 0; j < 3; j++) {
                    sum[j] += terms[j];
                    sum2[j] += terms[j] * terms[j];
                }
            }
        }
    }
    const double n = (double)B * NB, want[3] = {want_diff, want_prior, want_recon};
    for (int j = 0; j < 3; j++) {
        double mean = sum[j] / n, se = sqrt((sum2[j] / n - mean * mean) / n);
        CHECK_MSG(fabs(mean - want[j]) <= 5 * se + 1e-9, "term %d: MC %.6g +- %.2g, closed form %.6g",
                  j, mean, se, want[j]);
    }
}

/* The 8-bit decoder against a brute-force softmax over all 256 bins at the same x_0 (the
 * library skips bins more than 80 nats down); it is a distribution: with x_0 fixed, sum_k
 * p(x_k|x_0) = 1 (checked where sigma_0 is large enough that writing x_0 as alpha_0 x_k +
 * sigma_0 eps_k in float moves it by under 1e-6 nats); and at log_snr(0) = 13.3 (sigma_0 =
 * 0.0013, a sixth of a bin) a pixel with |eps| <= 0.5, or any eps pushing an edge pixel
 * outwards, is decoded to its own bin with probability 1 - 1e-6. */
static double brute_nll_8bit(double y, double var, int k_true) {
    double l[256], top = -INFINITY, sum = 0;
    for (int k = 0; k < 256; k++) {
        double dy = y - (2.0 * k / 255 - 1);
        l[k] = -dy * dy / (2 * var);
        if (l[k] > top) top = l[k];
    }
    for (int k = 0; k < 256; k++) sum += exp(l[k] - top);
    return -(l[k_true] - top) + log(sum);
}

TEST(diffusion_recon_8bit_normalised) {
    elbo_process p;
    process_named(&p, "loglinear", NULL);
    const double lmax[] = {2.0, 4.0, 8.0, 13.3};
    for (int q = 0; q < 4; q++) {
        p.log_snr_max = lmax[q];
        elbo_noise_level zero;
        CHECK(elbo_process_at(&p, 0, &zero) == ELBO_OK);
        double var = zero.sigma * zero.sigma / (zero.alpha * zero.alpha);
        const double z0s[] = {-1.3, -0.5, 0.0123, 0.77, 1.01};
        for (int j = 0; j < 5; j++) {
            double total = 0;
            for (int k = 0; k < 256; k++) {
                float x = (float)(2.0 * k / 255 - 1);
                float e = (float)((z0s[j] - zero.alpha * x) / zero.sigma);
                double nll = elbo_diffusion_recon_8bit(&zero, &x, &e, 1);
                double z0 = zero.alpha * x + zero.sigma * (double)e;
                double brute = brute_nll_8bit(z0 / zero.alpha, var, k);
                if (brute < 700)
                    CHECK_MSG(fabs(nll - brute) <= 1e-9 * (1 + brute), "bin %d: %.12g vs %.12g", k,
                              nll, brute);
                total += exp(-nll);
            }
            if (q < 2)
                CHECK_MSG(fabs(total - 1) < 1e-6, "log_snr_max %g, x_0 %g: sum_k p = %.9g",
                          lmax[q], z0s[j], total);
        }
    }
    elbo_noise_level zero;
    p.log_snr_max = 13.3;
    CHECK(elbo_process_at(&p, 0, &zero) == ELBO_OK);
    float x[3] = {-1.0f, (float)(2.0 * 100 / 255 - 1), 1.0f}, e[3] = {0.5f, -0.5f, 2.0f};
    CHECK(elbo_diffusion_recon_8bit(&zero, x, e, 3) < 1e-6);
}

TEST(diffusion_times_and_weights) {
    elbo_rng rng;
    elbo_rng_init(&rng, 4);
    double t[100];
    elbo_diffusion_sample_times(&rng, 100, 1, 0, t);
    /* low-discrepancy: one point in each interval [j/B, (j+1)/B) after sorting */
    int seen[100] = {0};
    for (int b = 0; b < 100; b++) {
        CHECK(t[b] > 0 && t[b] <= 1);
        int j = (int)floor(t[b] * 100);
        if (j == 100) j = 0;
        CHECK(!seen[j]);
        seen[j] = 1;
    }
    elbo_diffusion_sample_times(&rng, 100, 0, 10, t);
    for (int b = 0; b < 100; b++) CHECK(t[b] > 0 && t[b] <= 1 && fabs(t[b] * 10 - lround(t[b] * 10)) < 1e-12);
    elbo_process p;
    process_named(&p, "cosine", NULL);
    elbo_noise_level a, s;
    CHECK(elbo_process_at(&p, 0.9, &a) == ELBO_OK && elbo_process_at(&p, 0.8, &s) == ELBO_OK);
    CHECK(elbo_diffusion_weight(ELBO_LOSS_SIMPLE, &a, &s, 10) == 1.0);
    CHECK_NEAR(elbo_diffusion_weight(ELBO_LOSS_SNR_TRUNC, &a, &s, 10), exp(-a.log_snr), 1e-12);
    CHECK(elbo_diffusion_weight(ELBO_LOSS_SNR_TRUNC, &s, &s, 0) >= 1.0);
    CHECK_NEAR(elbo_diffusion_weight(ELBO_LOSS_ELBO, &a, &s, 10), 10 * expm1(s.log_snr - a.log_snr), 1e-12);
    CHECK(elbo_diffusion_weight(ELBO_LOSS_ELBO, &a, NULL, 0) == -a.dlog_snr_dt);
    elbo_loss_kind k;
    CHECK(elbo_loss_kind_parse("snr-trunc", &k) == ELBO_OK && k == ELBO_LOSS_SNR_TRUNC);
    CHECK(elbo_loss_kind_parse("vlb", &k) == ELBO_ERR_ARG && strstr(elbo_last_error(), "vlb"));
}

/* The learned schedule's vector-Jacobian product against central differences of gamma(t) =
 * -log_snr(t) and gamma'(t) = -d log_snr/dt from elbo_process_at, every parameter perturbed
 * in turn (the step taken as the float it rounds to: h = 1e-3 relative, at least 1e-3). */
TEST(diffusion_learned_schedule_vjp_fd) {
    learned_fixture lf;
    learned_fixture_init(&lf, 13);
    lf.w2[3] = -lf.w2[3]; /* both signs of each |w| */
    lf.w3[5] = -fabsf(lf.w3[5]);
    elbo_process p;
    process_named(&p, "learned", &lf.l);
    enum { B = 5, NP = 3 * 16 + 3 };
    const double t[B] = {0.0, 0.13, 0.5, 0.77, 1.0}, cg[B] = {0.3, -1.2, 0.8, 2.0, -0.4},
                 cgp[B] = {-0.5, 0.25, 1.1, -0.7, 0.9};
    /* the second set of coefficients: (2 cg, -cgp), whose product must be the matching sum */
    double cg2[B], cgp2[B], grad[NP] = {0}, grad2[NP] = {0}, work[5 * (3 * 16 + 1)];
    for (int b = 0; b < B; b++) cg2[b] = 2 * cg[b], cgp2[b] = -cgp[b];
    elbo_learned_schedule_vjp(&lf.l, B, t, cg, cgp, grad, cg2, cgp2, grad2, work);
    float *params[NP];
    int k = 0;
    params[k++] = &lf.w1;
    for (int i = 0; i < 16; i++) params[k++] = &lf.w2[i];
    for (int i = 0; i < 16; i++) params[k++] = &lf.b2[i];
    for (int i = 0; i < 16; i++) params[k++] = &lf.w3[i];
    params[k++] = &lf.gamma_0;
    params[k++] = &lf.gamma_1;
    for (int j = 0; j < NP; j++) {
        float w = *params[j];
        double h = fmax(1e-3, 1e-3 * fabs(w)), f[2] = {0, 0}, f2[2] = {0, 0}, step[2];
        for (int side = 0; side < 2; side++) {
            *params[j] = (float)(w + (side ? h : -h));
            step[side] = (double)*params[j] - w;
            for (int b = 0; b < B; b++) {
                elbo_noise_level n;
                CHECK(elbo_process_at(&p, t[b], &n) == ELBO_OK);
                f[side] += cg[b] * -n.log_snr + cgp[b] * -n.dlog_snr_dt;
                f2[side] += cg2[b] * -n.log_snr + cgp2[b] * -n.dlog_snr_dt;
            }
        }
        *params[j] = w;
        double fd = (f[1] - f[0]) / (step[1] - step[0]), fd2 = (f2[1] - f2[0]) / (step[1] - step[0]);
        CHECK_MSG(fabs(fd - grad[j]) <= 2e-4 * (1 + fabs(fd)), "parameter %d: vjp %.9g, fd %.9g", j,
                  grad[j], fd);
        CHECK_MSG(fabs(fd2 - grad2[j]) <= 2e-4 * (1 + fabs(fd2)), "parameter %d: second vjp %.9g, fd %.9g",
                  j, grad2[j], fd2);
    }
}

/* A VP noise level with gamma = -log_snr. */
static elbo_noise_level vp_level(double gamma) {
    elbo_noise_level n = {0};
    n.log_snr = -gamma;
    n.alpha = sqrt(1.0 / (1.0 + exp(gamma)));
    n.sigma = sqrt(1.0 / (1.0 + exp(-gamma)));
    return n;
}

/* d L_recon / d gamma_0 and d L_prior / d gamma_1 against central differences (h = 1e-5). */
TEST(diffusion_end_terms_dgamma_fd) {
    enum { D = 40 };
    float x[D], e[D];
    elbo_rng rng;
    elbo_rng_init(&rng, 17);
    elbo_rng_normal(&rng, e, D, 0, 1);
    for (int i = 0; i < D; i++) x[i] = (float)(2.0 * ((i * 37) % 256) / 255 - 1);
    const double h = 1e-5, g0s[] = {-13.3, -8.0, -4.0, -1.0};
    for (int q = 0; q < 4; q++) {
        elbo_noise_level l = vp_level(g0s[q]), a = vp_level(g0s[q] - h), b = vp_level(g0s[q] + h);
        double fd = (elbo_diffusion_recon_8bit(&b, x, e, D) - elbo_diffusion_recon_8bit(&a, x, e, D)) / (2 * h);
        double an = elbo_diffusion_recon_8bit_dgamma0(&l, x, e, D);
        CHECK_MSG(fabs(an - fd) <= 1e-5 * (1 + fabs(fd)), "gamma_0 %g: d recon %.9g, fd %.9g", g0s[q], an, fd);
    }
    const double g1s[] = {-2.0, 5.0, 10.0};
    for (int q = 0; q < 3; q++) {
        elbo_noise_level l = vp_level(g1s[q]), a = vp_level(g1s[q] - h), b = vp_level(g1s[q] + h);
        double fd = (elbo_diffusion_prior_kl(&b, 1.0, x, D) - elbo_diffusion_prior_kl(&a, 1.0, x, D)) / (2 * h);
        double an = elbo_diffusion_prior_kl_dgamma1(&l, x, D);
        CHECK_MSG(fabs(an - fd) <= 1e-6 * (1 + fabs(fd)), "gamma_1 %g: d prior %.9g, fd %.9g", g1s[q], an, fd);
    }
}
