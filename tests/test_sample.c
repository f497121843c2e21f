/* The diffusion samplers of include/elbo/sample.h on a case with a known answer: Gaussian
 * data x ~ N(m, s^2) (each of n values an independent draw) and its exact denoiser
 *   D(x_t) = E[x | x_t] = m + k_t (x_t - alpha_t m),  k_t = alpha_t s^2 / (alpha_t^2 s^2 + sigma_t^2).
 * Every sampler is then affine-Gaussian in x_1, so its output law is known exactly:
 *   - DDIM (eta = 0) and Heun are deterministic affine maps x_1 -> A x_1 + c, fitted by
 *     regression on the sampler's own x_1 and compared with the exact probability-flow map
 *     N(mu_1, v_1) -> N(mu_0, v_0), mu_t = alpha_t m, v_t = alpha_t^2 s^2 + sigma_t^2, then D:
 *     the error falls at first order (DDIM) and second order (Heun) in the steps;
 *   - ancestral and DDIM with eta > 0: Monte Carlo against the mean and variance of the
 *     output that the sampler's own recursion implies, computed here in double, which also
 *     tend to (m, s^2) as the steps grow. */
#include "test.h"

#include "elbo/sample.h"
#include "malloc_count.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    double m, sd;
    int calls;
    int fail_at; /* return an error on this call (0: never) */
} gauss_denoiser;

static elbo_status gauss_denoise(void *user, const float *x_t, int64_t n, const elbo_noise_level *l,
                                 float *x0_hat) {
    gauss_denoiser *g = user;
    if (++g->calls == g->fail_at) return elbo_error(ELBO_ERR_STATE, "denoiser: test failure");
    double k = l->alpha * g->sd * g->sd / (l->alpha * l->alpha * g->sd * g->sd + l->sigma * l->sigma);
    for (int64_t i = 0; i < n; i++) x0_hat[i] = (float)(g->m + k * ((double)x_t[i] - l->alpha * g->m));
    return ELBO_OK;
}

static void process_named(elbo_process *p, const char *name) {
    elbo_process_init(p);
    elbo_process_set_schedule(p, name);
    if (p->kind == ELBO_PROCESS_VP && p->schedule != ELBO_SCHEDULE_LINEAR) {
        p->log_snr_min = -12; /* x_1 ~ N(0, 1) then matches q(x_1) to 1e-5 */
        p->log_snr_max = 10;
    }
}

/* The exact map x_1 -> output of the probability-flow ODE followed by D at t = 0. */
static void exact_flow_map(const elbo_process *p, double m, double sd, double *A, double *c) {
    elbo_noise_level a, b;
    elbo_process_at(p, 1, &b);
    elbo_process_at(p, 0, &a);
    double v1 = b.alpha * b.alpha * sd * sd + b.sigma * b.sigma;
    double v0 = a.alpha * a.alpha * sd * sd + a.sigma * a.sigma;
    double r = sqrt(v0 / v1), k0 = a.alpha * sd * sd / v0;
    /* x_0 = alpha_0 m + r (x_1 - alpha_1 m); out = m + k0 (x_0 - alpha_0 m) */
    *A = k0 * r;
    *c = m - k0 * r * b.alpha * m;
}

/* Runs a sampler and fits out = A x_1 + c (x_1 regenerated from the seed, as the sampler
 * draws it first); returns the largest residual of the fit. */
static double fit_affine(const elbo_process *p, elbo_sampler_params *sp, gauss_denoiser *g,
                         int64_t n, double *A, double *c) {
    float *x = malloc((size_t)n * sizeof *x), *x1 = malloc((size_t)n * sizeof *x1);
    elbo_rng rng;
    elbo_rng_init(&rng, sp->seed);
    elbo_rng_normal(&rng, x1, (size_t)n, 0.0f, (float)elbo_process_prior_std(p));
    double res = INFINITY;
    if (elbo_diffusion_sample(p, sp, gauss_denoise, g, x, n, NULL) == ELBO_OK) {
        double mx = 0, my = 0, sxx = 0, sxy = 0;
        for (int64_t i = 0; i < n; i++) mx += x1[i], my += x[i];
        mx /= n, my /= n;
        for (int64_t i = 0; i < n; i++) sxx += (x1[i] - mx) * (x1[i] - mx), sxy += (x1[i] - mx) * (x[i] - my);
        *A = sxy / sxx;
        *c = my - *A * mx;
        res = 0;
        for (int64_t i = 0; i < n; i++) res = fmax(res, fabs(x[i] - (*A * x1[i] + *c)));
    }
    free(x);
    free(x1);
    return res;
}

/* DDIM's error halves and Heun's quarters as the steps double (error ratios measured over
 * K = 16 -> 32 -> 64 on VP log-linear, VP linear and VE: DDIM 1.92 - 1.97, Heun 3.90 - 5.10,
 * VE's Heun still pre-asymptotic at K = 16; Heun's error at K = 64 is 3e-5 - 2e-4). */
TEST(sample_deterministic_order) {
    const char *names[] = {"loglinear", "linear", "ve"};
    const double m = 0.3, sd = 0.8;
    for (int q = 0; q < 3; q++) {
        elbo_process p;
        process_named(&p, names[q]);
        double A0, c0;
        exact_flow_map(&p, m, sd, &A0, &c0);
        for (int kind = ELBO_SAMPLER_DDIM; kind <= ELBO_SAMPLER_HEUN; kind++) {
            double prev = 0;
            for (int K = 16; K <= 64; K *= 2) {
                elbo_sampler_params sp;
                elbo_sampler_params_init(&sp);
                sp.kind = kind;
                sp.steps = K;
                sp.seed = 5;
                gauss_denoiser g = {m, sd, 0, 0};
                double A, c;
                double res = fit_affine(&p, &sp, &g, 4096, &A, &c);
                CHECK_MSG(res < 1e-4, "%s %s K=%d: not affine (residual %.3g)", names[q],
                          elbo_sampler_name(kind), K, res);
                double err = fabs(A - A0) + fabs(c - c0);
                if (K > 16) {
                    double ratio = prev / err, want = kind == ELBO_SAMPLER_HEUN ? 4.0 : 2.0;
                    CHECK_MSG(ratio > 0.75 * want && ratio < 1.35 * want,
                              "%s %s K=%d: error %.4g after %.4g (ratio %.3g, want ~%g)", names[q],
                              elbo_sampler_name(kind), K, err, prev, ratio, want);
                }
                prev = err;
            }
        }
    }
}

/* The output law of the stochastic samplers: with D affine, each step is x_s = A x_t + C +
 * c z, so mean and variance follow in closed form. */
static void stochastic_law(const elbo_process *p, const elbo_sampler_params *sp, double m, double sd,
                           double *mean, double *var) {
    double mu = 0, V = elbo_process_prior_std(p) * elbo_process_prior_std(p);
    const int K = sp->steps;
    elbo_noise_level lt, ls;
    elbo_process_at(p, 1, &lt);
    for (int i = K; i >= 1; i--) {
        elbo_process_at(p, (double)(i - 1) / K, &ls);
        double vt = lt.alpha * lt.alpha * sd * sd + lt.sigma * lt.sigma, k = lt.alpha * sd * sd / vt;
        double e = m * (1 - k * lt.alpha); /* D(x) = k x + e */
        double r = -expm1(lt.log_snr - ls.log_snr), var_post = ls.sigma * ls.sigma * r;
        double eta = sp->kind == ELBO_SAMPLER_ANCESTRAL ? 1.0 : sp->eta, c2 = eta * eta * var_post;
        double A, C;
        if (sp->kind == ELBO_SAMPLER_ANCESTRAL) {
            double a = lt.alpha / ls.alpha * ls.sigma * ls.sigma / (lt.sigma * lt.sigma), b = ls.alpha * r;
            A = a + b * k;
            C = b * e;
        } else {
            double d = sqrt(ls.sigma * ls.sigma - c2) / lt.sigma;
            A = ls.alpha * k + d * (1 - lt.alpha * k);
            C = (ls.alpha - d * lt.alpha) * e;
        }
        mu = A * mu + C;
        V = A * A * V + c2;
        lt = ls;
    }
    double v0 = lt.alpha * lt.alpha * sd * sd + lt.sigma * lt.sigma, k0 = lt.alpha * sd * sd / v0;
    *mean = m + k0 * (mu - lt.alpha * m);
    *var = k0 * k0 * V;
}

TEST(sample_stochastic_law) {
    enum { N = 100000 };
    const double m = 0.3, sd = 0.8;
    float *x = malloc(N * sizeof *x);
    CHECK(x);
    const char *names[] = {"loglinear", "cosine", "ve"};
    for (int q = 0; q < 3; q++) {
        elbo_process p;
        process_named(&p, names[q]);
        for (int v = 0; v < 3; v++) {
            elbo_sampler_params sp;
            elbo_sampler_params_init(&sp);
            sp.kind = v == 0 ? ELBO_SAMPLER_ANCESTRAL : ELBO_SAMPLER_DDIM;
            sp.eta = v == 1 ? 1.0 : 0.5;
            sp.steps = 50;
            sp.seed = 40 + 3 * q + v;
            gauss_denoiser g = {m, sd, 0, 0};
            int nfe = 0;
            CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, x, N, &nfe) == ELBO_OK);
            CHECK(nfe == 51 && g.calls == 51);
            double mean = 0, var = 0, want_mean, want_var;
            for (int i = 0; i < N; i++) mean += x[i];
            mean /= N;
            for (int i = 0; i < N; i++) var += (x[i] - mean) * (x[i] - mean);
            var /= N - 1;
            stochastic_law(&p, &sp, m, sd, &want_mean, &want_var);
            CHECK_MSG(fabs(mean - want_mean) <= 5 * sqrt(want_var / N),
                      "%s %s eta %g: mean %.5g vs %.5g", names[q], elbo_sampler_name(sp.kind), sp.eta,
                      mean, want_mean);
            CHECK_MSG(fabs(var - want_var) <= 5 * want_var * sqrt(2.0 / N),
                      "%s %s eta %g: var %.5g vs %.5g", names[q], elbo_sampler_name(sp.kind), sp.eta,
                      var, want_var);
            /* and the law tends to the data's as the steps grow */
            double err50 = fabs(want_var - sd * sd) + fabs(want_mean - m);
            sp.steps = 1000;
            stochastic_law(&p, &sp, m, sd, &want_mean, &want_var);
            double err1000 = fabs(want_var - sd * sd) + fabs(want_mean - m);
            /* measured: 0.04 - 0.12 at 50 steps, 0.002 - 0.007 at 1000 */
            CHECK_MSG(err1000 < err50 / 5 && err1000 < 0.01, "%s: law error %.3g at 50 steps, %.3g at 1000",
                      names[q], err50, err1000);
        }
    }
    free(x);
}

static int n_steps_seen, last_i;
static void count_step(void *user, int i, const elbo_noise_level *l, const float *x_t,
                       const float *x0_hat, int64_t n) {
    (void)user, (void)x_t, (void)x0_hat, (void)n;
    if (i == last_i - 1 && fabs(l->t - i / 10.0) < 1e-12) n_steps_seen++;
    last_i = i;
}

/* Calls, trajectory callbacks, reproducibility, no allocation inside the loop, errors. */
TEST(sample_contract) {
    enum { N = 256 };
    float a[N], b[N];
    elbo_process p;
    process_named(&p, "cosine");
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_HEUN;
    sp.steps = 10;
    sp.on_step = count_step;
    gauss_denoiser g = {0, 1, 0, 0};
    int nfe;
    n_steps_seen = 0, last_i = 11;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, &nfe) == ELBO_OK);
    CHECK(nfe == 21 && g.calls == 21 && n_steps_seen == 11);
    sp.on_step = NULL;
    sp.kind = ELBO_SAMPLER_ANCESTRAL;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, NULL) == ELBO_OK);
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, b, N, NULL) == ELBO_OK);
    CHECK(memcmp(a, b, sizeof a) == 0);
    sp.seed = 1;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, b, N, NULL) == ELBO_OK);
    CHECK(memcmp(a, b, sizeof a) != 0);
    if (malloc_count_available()) {
        malloc_count_result r5, r50;
        sp.steps = 5;
        malloc_count_start();
        CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, NULL) == ELBO_OK);
        malloc_count_stop(&r5);
        sp.steps = 50;
        malloc_count_start();
        CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, NULL) == ELBO_OK);
        malloc_count_stop(&r50);
        CHECK_MSG(r5.calls[0] == r50.calls[0] && r5.calls[0] <= 2,
                  "heap calls: %ld at 5 steps, %ld at 50 (%s)", r5.calls[0], r50.calls[0], r50.first[0]);
    }
    sp.steps = 0;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "steps"));
    sp.steps = 10;
    sp.kind = ELBO_SAMPLER_DDIM;
    sp.eta = 1.5;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "eta"));
    sp.eta = 0;
    g.calls = 0;
    g.fail_at = 4;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, N, &nfe) == ELBO_ERR_STATE);
    CHECK(nfe == 3);
    elbo_sampler_kind k;
    CHECK(elbo_sampler_parse("heun", &k) == ELBO_OK && k == ELBO_SAMPLER_HEUN);
    CHECK(elbo_sampler_parse("euler", &k) == ELBO_ERR_ARG && strstr(elbo_last_error(), "euler"));
}

/* Tweedie's one-step denoiser on a Gaussian prior N(mu, v I) (a one-component mixture, whose
 * noised denoiser is exact): E[x | y] = mu + v / (v + s^2) (y - mu) for y = x + s n, at s =
 * 0.05, 0.3, 1 on the default VP process; an s outside the process's range is refused. */
TEST(sample_tweedie_denoise_gaussian_posterior_mean) {
    const double w[1] = {1}, mean[2] = {0.5, -1}, sd[1] = {0.7};
    elbo_gmm g = {1, 2, w, mean, sd, -1};
    elbo_process p;
    elbo_process_init(&p);
    float y[8] = {0.3f, -0.2f, 1.5f, -1.1f, -2.f, 0.f, 0.9f, -3.f}, work[8], x0[8];
    const double ss[3] = {0.05, 0.3, 1.0};
    for (int k = 0; k < 3; k++) {
        elbo_noise_level l;
        CHECK(elbo_tweedie_denoise(&p, elbo_gmm_denoiser, &g, y, 8, ss[k], work, x0, &l) == ELBO_OK);
        CHECK_NEAR(l.sigma / l.alpha, ss[k], 1e-9);
        const double v = sd[0] * sd[0], c = v / (v + ss[k] * ss[k]);
        for (int i = 0; i < 8; i++)
            CHECK_NEAR(x0[i], mean[i % 2] + c * (y[i] - mean[i % 2]), 1e-5);
    }
    elbo_clear_error();
    CHECK(elbo_tweedie_denoise(&p, elbo_gmm_denoiser, &g, y, 8, 1e-9, work, x0, NULL) == ELBO_ERR_ARG);
    CHECK(elbo_tweedie_denoise(&p, elbo_gmm_denoiser, &g, y, 8, -1, work, x0, NULL) == ELBO_ERR_ARG);
}
