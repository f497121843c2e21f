/* The score view of include/elbo/sample.h (Euler-Maruyama, predictor-corrector, annealed
 * Langevin, the probability-flow ODE) and the SDEs of include/elbo/diffusion.h, on Gaussian
 * mixtures whose noised score is known in closed form (include/elbo/gmm.h).
 *
 * The mixture of NCSN's toy (Song & Ermon 2019, sec. 3.2): 1/5 N((-5,-5), I) + 4/5 N((5,5), I).
 * A sampler driven by the true score must put 20% and 80% of its points in the two modes
 * (each point assigned to the nearer mean), with each mode's spread that of its component.
 * With 4000 points the share has a standard error of 0.0063; the tolerance 0.03 is 4.7 of
 * them. Plain Langevin at one small noise level, started from uniform noise, does not: its
 * shares follow the starting basins (about half and half), the failure annealing repairs. */
#include "test.h"

#include "elbo/gmm.h"
#include "elbo/sample.h"
#include "malloc_count.h"

#include <stdlib.h>
#include <string.h>

static double ncsn_w[2] = {0.2, 0.8}, ncsn_mu[4] = {-5, -5, 5, 5}, ncsn_sd[2] = {1, 1};
static const elbo_gmm ncsn_mixture = {2, 2, ncsn_w, ncsn_mu, ncsn_sd, -1};

/* VE, sigma from 0.05 to 100. The prior N(0, sigma_max^2 I) stands in for q_1, whose mean
 * is 0.6 (5, 5): at sigma_max = 20 that offset (0.21 prior std) alone moves the ODE's share
 * of the small mode to 0.24; at 100 it is 0.04 std. */
static void ve_process(elbo_process *p) {
    elbo_process_init(p);
    elbo_process_set_schedule(p, "ve");
    p->sigma_min = 0.05;
    p->sigma_max = 100;
}

typedef struct {
    double share[2];           /* of the points nearer mean j */
    double mean[2][2], var[2]; /* per mode: mean, variance per coordinate */
} mode_stats;

static mode_stats stats_of(const float *x, int64_t n) {
    mode_stats s;
    memset(&s, 0, sizeof s);
    double cnt[2] = {0, 0}, sq[2] = {0, 0};
    for (int64_t i = 0; i < n; i++) {
        double a = x[2 * i], b = x[2 * i + 1];
        int j = a + b > 0; /* nearer (5,5) */
        cnt[j]++;
        s.mean[j][0] += a, s.mean[j][1] += b;
    }
    for (int j = 0; j < 2; j++) {
        s.share[j] = cnt[j] / (double)n;
        if (cnt[j] > 0) s.mean[j][0] /= cnt[j], s.mean[j][1] /= cnt[j];
    }
    for (int64_t i = 0; i < n; i++) {
        double a = x[2 * i], b = x[2 * i + 1];
        int j = a + b > 0;
        sq[j] += (a - s.mean[j][0]) * (a - s.mean[j][0]) + (b - s.mean[j][1]) * (b - s.mean[j][1]);
    }
    for (int j = 0; j < 2; j++) s.var[j] = cnt[j] > 1 ? sq[j] / (2 * (cnt[j] - 1)) : 0;
    return s;
}

/* Samples n points with sp from the true score of the NCSN mixture under process p, checks
 * the shares (0.03), the modes' means (0.15) and variances (within 15% of 1). */
/* CHECK_MSG for the int helpers below: records the failure and returns 0. */
#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
            return 0;                                                                              \
        }                                                                                          \
    } while (0)

static int check_reproduces_mixture(const elbo_process *p, elbo_sampler_params *sp, int64_t n,
                                    const char *what, int *nfe) {
    float *x = malloc((size_t)(2 * n) * sizeof *x);
    elbo_status st =
        elbo_diffusion_sample(p, sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 2 * n, nfe);
    mode_stats s = stats_of(x, n);
    free(x);
    REQUIRE(st == ELBO_OK, "%s: %s", what, elbo_last_error());
    printf(
        "    %s: shares %.4f %.4f, means (%.3f %.3f) (%.3f %.3f), variances %.3f %.3f, %d calls\n",
        what, s.share[0], s.share[1], s.mean[0][0], s.mean[0][1], s.mean[1][0], s.mean[1][1],
        s.var[0], s.var[1], nfe ? *nfe : -1);
    for (int j = 0; j < 2; j++) {
        REQUIRE(fabs(s.share[j] - ncsn_w[j]) <= 0.03, "%s: mode %d share %.4f, want %.2f", what, j,
                s.share[j], ncsn_w[j]);
        for (int i = 0; i < 2; i++)
            REQUIRE(fabs(s.mean[j][i] - ncsn_mu[2 * j + i]) <= 0.15, "%s: mode %d mean %.3f", what,
                    j, s.mean[j][i]);
        REQUIRE(fabs(s.var[j] - 1) <= 0.15, "%s: mode %d variance %.3f, want 1", what, j, s.var[j]);
    }
    return 1;
}

TEST(score_annealed_langevin_true_score_recovers_mode_weights) {
    elbo_process p;
    ve_process(&p);
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_LANGEVIN;
    /* 200 levels 1.04 apart, 20 steps each: the small mode's share is 0.204 at 20000 points.
     * Coarser ladders leave more there (10 levels 2.3 apart, NCSN's L, with T = 100: 0.23;
     * 50 levels: 0.22): the middle is split by geometry at a level where the modes no longer
     * mix, which is why NCSNv2 (technique 2) asks adjacent levels to overlap. */
    sp.steps = 200;
    sp.langevin_steps = 20;
    sp.langevin_eps = 5e-4; /* a_L = 5e-4 at sigma 0.05: a / sigma^2 = 0.2 at every level */
    sp.seed = 3;
    int nfe = 0;
    if (!check_reproduces_mixture(&p, &sp, 4000, "annealed langevin", &nfe)) return;
    CHECK(nfe == 200 * 20 + 1);
}

TEST(score_plain_langevin_misses_mode_weights) {
    /* NCSN sec. 3.2: Langevin at the data's own (tiny) noise level, from U[-8, 8]^2, keeps
     * the share each basin had at the start (about 1/2), not the weights 0.2 / 0.8. */
    const int64_t n = 4000;
    float *x = malloc((size_t)(2 * n) * sizeof *x), *work = malloc((size_t)(4 * n) * sizeof *work);
    elbo_rng rng;
    elbo_rng_init(&rng, 5);
    elbo_rng_uniform(&rng, x, (size_t)(2 * n), -8.0f, 8.0f);
    elbo_noise_level l = {0};
    l.alpha = 1;
    l.sigma = 0.05;
    elbo_status st = elbo_langevin(elbo_gmm_denoiser, (void *)&ncsn_mixture, &l, 0.01, 1000, &rng,
                                   x, 2 * n, work, NULL);
    mode_stats s = stats_of(x, n);
    free(x);
    free(work);
    CHECK(st == ELBO_OK);
    printf("    plain langevin: shares %.4f %.4f\n", s.share[0], s.share[1]);
    CHECK_MSG(fabs(s.share[0] - 0.5) < 0.05, "share %.4f, want about 1/2", s.share[0]);
    CHECK(fabs(s.var[0] - 1) < 0.15 && fabs(s.var[1] - 1) < 0.15); /* each mode itself is right */
}

TEST(score_pc_sampler_true_score_recovers_mode_weights) {
    elbo_process p;
    ve_process(&p);
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_PC;
    sp.steps = 200;
    sp.batch = 4000; /* the corrector's norms per point, as score SDE does per image */
    sp.seed = 7;
    int nfe = 0;
    if (!check_reproduces_mixture(&p, &sp, 4000, "pc reverse + langevin", &nfe)) return;
    CHECK(nfe == 200 * 2 + 1);
    sp.predictor = ELBO_PC_EULER;
    if (!check_reproduces_mixture(&p, &sp, 4000, "pc euler + langevin", &nfe)) return;
    /* corrector alone: annealed Langevin with the snr rule (share 0.207 at 20000 points; at
     * snr 0.16 it is 0.213, with 5 steps a level 0.24) */
    sp.predictor = ELBO_PC_NONE;
    sp.steps = 100;
    sp.corrector_steps = 20;
    sp.snr = 0.3;
    if (!check_reproduces_mixture(&p, &sp, 4000, "pc corrector only", &nfe)) return;
    CHECK(nfe == 100 * 20 + 1);
}

TEST(score_reverse_sde_pc_and_ode_true_score_recover_mode_weights) {
    const char *sched[] = {"ve", "linear", "subvp"};
    for (int k = 0; k < 3; k++) {
        elbo_process p;
        ve_process(&p);
        elbo_process_set_schedule(&p, sched[k]);
        elbo_sampler_params sp;
        elbo_sampler_params_init(&sp);
        sp.seed = 11;
        char what[64];
        sp.kind = ELBO_SAMPLER_EM;
        sp.steps = 500;
        snprintf(what, sizeof what, "em %s", sched[k]);
        if (!check_reproduces_mixture(&p, &sp, 4000, what, NULL)) return;
        sp.kind = ELBO_SAMPLER_PC;
        sp.batch = 4000;
        snprintf(what, sizeof what, "pc %s", sched[k]);
        if (!check_reproduces_mixture(&p, &sp, 4000, what, NULL)) return;
        sp.kind = ELBO_SAMPLER_ODE;
        snprintf(what, sizeof what, "ode %s", sched[k]);
        int nfe = 0;
        if (!check_reproduces_mixture(&p, &sp, 4000, what, &nfe)) return;
        CHECK(nfe > 10 && nfe < 2000);
    }
}

/* Each SDE dx = f x dt + g dw, simulated forward by Euler-Maruyama from x_0 ~ q(x_0 | x) =
 * N(alpha(0) x, sigma(0)^2), has the marginal N(alpha(t) x, sigma(t)^2) of its process: f
 * and g^2 are consistent with alpha and sigma. 20000 paths of 2000 steps; at t = 0.5 and 1
 * the mean within 4 standard errors plus 1% (Euler's O(dt) bias), the variance within 4
 * standard errors (sqrt(2/n) relative) plus 1%. */
TEST(score_sde_marginals_match_closed_form) {
    const char *sched[] = {"ve", "linear", "subvp", "cosine", "loglinear"};
    const int n = 20000, steps = 2000;
    const double x = 0.7;
    float *y = malloc((size_t)n * sizeof *y), *z = malloc((size_t)n * sizeof *z);
    for (int k = 0; k < 5; k++) {
        elbo_process p;
        elbo_process_init(&p);
        elbo_process_set_schedule(&p, sched[k]);
        p.sigma_max = 5; /* VE: keep sigma(1) / sigma(0) moderate for 2000 Euler steps */
        elbo_rng rng;
        elbo_rng_init(&rng, 100 + k);
        elbo_noise_level l0, l;
        CHECK(elbo_process_at(&p, 0, &l0) == ELBO_OK);
        elbo_rng_normal(&rng, y, (size_t)n, 0.0f, 1.0f);
        for (int i = 0; i < n; i++) y[i] = (float)(l0.alpha * x + l0.sigma * y[i]);
        double h = 1.0 / steps;
        for (int s = 0; s < steps; s++) {
            CHECK(elbo_process_at(&p, s * h, &l) == ELBO_OK);
            elbo_rng_normal(&rng, z, (size_t)n, 0.0f, 1.0f);
            double sd = sqrt(l.g2 * h);
            for (int i = 0; i < n; i++) y[i] = (float)(y[i] + h * l.f * y[i] + sd * z[i]);
            if (s + 1 == steps / 2 || s + 1 == steps) {
                elbo_noise_level lt;
                CHECK(elbo_process_at(&p, (s + 1) * h, &lt) == ELBO_OK);
                double m = 0, v = 0;
                for (int i = 0; i < n; i++) m += y[i];
                m /= n;
                for (int i = 0; i < n; i++) v += (y[i] - m) * (y[i] - m);
                v /= n - 1;
                double want_v = lt.sigma * lt.sigma, se_m = lt.sigma / sqrt(n);
                CHECK_MSG(fabs(m - lt.alpha * x) <= 4 * se_m + 0.01 * fabs(lt.alpha * x) + 1e-4,
                          "%s t=%.2f: mean %.5f, closed form %.5f", sched[k], lt.t, m,
                          lt.alpha * x);
                CHECK_MSG(fabs(v / want_v - 1) <= 4 * sqrt(2.0 / n) + 0.01,
                          "%s t=%.2f: variance %.6g, closed form %.6g", sched[k], lt.t, v, want_v);
            }
        }
    }
    free(y);
    free(z);
}

TEST(score_samplers_contract) {
    elbo_process p;
    ve_process(&p);
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    float x[8];
    sp.kind = ELBO_SAMPLER_PC;
    sp.snr = 0;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "--snr"));
    sp.snr = 0.16;
    sp.corrector_steps = 0;
    sp.predictor = ELBO_PC_NONE;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    sp.predictor = ELBO_PC_REVERSE;
    sp.batch = 3;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "examples"));
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_LANGEVIN;
    sp.steps = 1;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "levels"));
    sp.steps = 3;
    sp.langevin_eps = -1;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_ODE;
    sp.rtol = 0;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "--rtol"));
    /* an unstable step is an error, not NaN samples: a / sigma^2 = 400 at every level */
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_LANGEVIN;
    sp.steps = 3;
    sp.langevin_steps = 50; /* |1 - a / 2 sigma^2| = 199 a step: past float range */
    sp.langevin_eps = 1.0;
    CHECK(elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser, (void *)&ncsn_mixture, x, 8, NULL) ==
          ELBO_ERR_STATE);
    CHECK(strstr(elbo_last_error(), "--langevin-eps"));
    elbo_sampler_kind k;
    CHECK(elbo_sampler_parse("langevin", &k) == ELBO_OK && k == ELBO_SAMPLER_LANGEVIN);
    CHECK(elbo_sampler_parse("pc", &k) == ELBO_OK && k == ELBO_SAMPLER_PC);
    CHECK(elbo_sampler_parse("rk4", &k) == ELBO_ERR_ARG);
    elbo_pc_predictor pr;
    CHECK(elbo_pc_predictor_parse("euler", &pr) == ELBO_OK && pr == ELBO_PC_EULER);
    CHECK(elbo_pc_predictor_parse("heun", &pr) == ELBO_ERR_ARG);
}

/* Only the scratch allocated before the loop: a fixed count whatever the steps. */
TEST(score_samplers_allocate_outside_the_loop) {
    if (!malloc_count_available()) return;
    elbo_process p;
    ve_process(&p);
    float x[64];
    elbo_sampler_kind kinds[] = {ELBO_SAMPLER_EM, ELBO_SAMPLER_PC, ELBO_SAMPLER_LANGEVIN,
                                 ELBO_SAMPLER_ODE};
    for (int k = 0; k < 4; k++) {
        long counts[2];
        for (int r = 0; r < 2; r++) {
            elbo_sampler_params sp;
            elbo_sampler_params_init(&sp);
            sp.kind = kinds[k];
            sp.steps = r ? 40 : 4;
            sp.langevin_steps = 3;
            malloc_count_result res;
            malloc_count_start();
            elbo_status st = elbo_diffusion_sample(&p, &sp, elbo_gmm_denoiser,
                                                   (void *)&ncsn_mixture, x, 64, NULL);
            malloc_count_stop(&res);
            CHECK(st == ELBO_OK);
            counts[r] = res.calls[0];
        }
        CHECK_MSG(counts[0] == counts[1] && counts[0] <= 2, "%s: %ld and %ld allocations",
                  elbo_sampler_name(kinds[k]), counts[0], counts[1]);
    }
}

/* The mixture's closed forms: the score is the gradient of the log density (central
 * differences), Tweedie's formula agrees with the posterior-mean form of the denoiser, and
 * the density integrates to 1 on a grid. */
TEST(score_gmm_closed_forms) {
    CHECK(elbo_gmm_check(&ncsn_mixture) == ELBO_OK);
    elbo_noise_level l = {0};
    l.alpha = 0.8, l.sigma = 1.3;
    double x[2] = {1.5, -0.4}, sc[2];
    elbo_gmm_score(&ncsn_mixture, &l, x, sc);
    for (int i = 0; i < 2; i++) {
        double xp[2] = {x[0], x[1]}, xm[2] = {x[0], x[1]}, h = 1e-5;
        xp[i] += h, xm[i] -= h;
        double fd = (elbo_gmm_log_density(&ncsn_mixture, &l, xp, NULL) -
                     elbo_gmm_log_density(&ncsn_mixture, &l, xm, NULL)) /
                    (2 * h);
        CHECK_NEAR(sc[i], fd, 1e-6);
    }
    float xf[2] = {1.5f, -0.4f}, x0[2];
    CHECK(elbo_gmm_denoiser((void *)&ncsn_mixture, xf, 2, &l, x0) == ELBO_OK);
    for (int i = 0; i < 2; i++)
        CHECK_NEAR(x0[i], (xf[i] + l.sigma * l.sigma * sc[i]) / l.alpha, 1e-5);
    double mass = 0, hgrid = 0.05;
    for (double a = -15; a < 15; a += hgrid)
        for (double b = -15; b < 15; b += hgrid) {
            double p2[2] = {a + hgrid / 2, b + hgrid / 2};
            mass += exp(elbo_gmm_log_density(&ncsn_mixture, &l, p2, NULL)) * hgrid * hgrid;
        }
    CHECK_NEAR(mass, 1.0, 1e-6);
    double bad_w[2] = {0.5, 0.6};
    elbo_gmm bad = ncsn_mixture;
    bad.weight = bad_w;
    CHECK(elbo_gmm_check(&bad) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "sum"));
}
