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
