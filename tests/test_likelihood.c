/* The probability-flow ODE likelihood of include/elbo/likelihood.h against a Gaussian
 * mixture's closed-form density (gmm.h), whose exact score drives the ODE: along the true
 * flow, int_0^1 div v dt = log q_0(x(0)) - log q_1(x(1)) exactly, and with q_1 close to the
 * prior the whole log p_0 is the mixture's log density. */
#include "test.h"

#include "elbo/gmm.h"
#include "elbo/likelihood.h"

#include <stdlib.h>
#include <string.h>

/* 0.3 N((-1, 0.5), 0.4^2) + 0.7 N((1, -0.5), 0.6^2): means near 0, so that under a VP process
 * q_1 is close to the prior N(0, I): its components are N(alpha_1 mu_j, (1 - alpha_1^2 (1 -
 * s_j^2)) I), so log p_1 - log q_1 is about alpha_1 x(1) . mu, a few 1e-3 nats (alpha_1 =
 * 0.0025 for log-SNR -12, 0.0067 for DDPM's linear betas). */
static double w2[2] = {0.3, 0.7}, mu2[4] = {-1, 0.5, 1, -0.5}, sd2[2] = {0.4, 0.6};
static const elbo_gmm mix = {2, 2, w2, mu2, sd2, -1};

static void vp_process(elbo_process *p, const char *sched) {
    elbo_process_init(p);
    elbo_process_set_schedule(p, sched);
    p->log_snr_min = -12;
    p->log_snr_max = 12;
}

/* log q_t(x) under process p at time t, for a float point */
static double log_q(const elbo_process *p, double t, const float *x) {
    elbo_noise_level l;
    elbo_process_at(p, t, &l);
    double xd[2] = {x[0], x[1]};
    return elbo_gmm_log_density(&mix, &l, xd, NULL);
}

TEST(likelihood_gmm_vjp_matches_finite_differences) {
    elbo_noise_level l = {0};
    l.alpha = 0.9, l.sigma = 0.5;
    float x[2] = {0.3f, -0.2f}, u[2] = {0.7f, -1.3f}, x0[2], vjp[2];
    CHECK(elbo_gmm_denoiser_vjp((void *)&mix, x, 2, &l, u, x0, vjp) == ELBO_OK);
    float x0b[2];
    CHECK(elbo_gmm_denoiser((void *)&mix, x, 2, &l, x0b) == ELBO_OK);
    CHECK_NEAR(x0[0], x0b[0], 1e-6);
    CHECK_NEAR(x0[1], x0b[1], 1e-6);
    /* (J^T u)_i = sum_k u_k d x0_k / d x_i by central differences in double through the
     * log density's score: x0_hat = (x + sigma^2 score) / alpha */
    for (int i = 0; i < 2; i++) {
        double h = 1e-5, fd = 0;
        for (int sgn = -1; sgn <= 1; sgn += 2) {
            double xd[2] = {x[0], x[1]}, sc[2];
            xd[i] += sgn * h;
            elbo_gmm_score(&mix, &l, xd, sc);
            for (int k = 0; k < 2; k++)
                fd += sgn * u[k] * (xd[k] + l.sigma * l.sigma * sc[k]) / l.alpha;
        }
        fd /= 2 * h;
        CHECK_NEAR(vjp[i], fd, 2e-5);
    }
}

/* Exact trace: the ODE's change in log density equals log q_0(x) - log q_1(x(1)) (the flow is
 * exact), for VE, VP and sub-VP, to 1e-3 nats at rtol = atol = 1e-7 (measured: below 1e-6);
 * and with q_1 close to the prior (VP) log p_0 is the mixture's log density to 0.01 nats
 * (measured 0.002 and 0.006, the prior mismatch above). */
TEST(likelihood_ode_matches_analytic_density) {
    const char *sched[] = {"ve", "loglinear", "linear", "subvp"};
    const int B = 16;
    float x[2 * B], x1[2 * B];
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    CHECK(elbo_gmm_sample(&mix, &rng, x, NULL, B) == ELBO_OK);
    for (int k = 0; k < 4; k++) {
        elbo_process p;
        vp_process(&p, sched[k]);
        p.sigma_min = 0.01, p.sigma_max = 30;
        elbo_ode_likelihood_params lp;
        elbo_ode_likelihood_params_init(&lp);
        lp.probe = ELBO_PROBE_EXACT;
        lp.rtol = lp.atol = 1e-7;
        double logp[B], prior[B];
        int nfe = 0;
        CHECK(elbo_ode_log_likelihood(&p, &lp, elbo_gmm_denoiser_vjp, (void *)&mix, x, B, 2, logp,
                                      prior, x1, &nfe) == ELBO_OK);
        double worst = 0, worst_full = 0;
        for (int b = 0; b < B; b++) {
            double want = log_q(&p, 0, x + 2 * b) - log_q(&p, 1, x1 + 2 * b);
            worst = fmax(worst, fabs((logp[b] - prior[b]) - want));
            worst_full = fmax(worst_full, fabs(logp[b] - log_q(&p, 0, x + 2 * b)));
        }
        printf("    %s: |flow - closed form| %.2e, |log p_0 - log q_0| %.2e nats, %d calls\n",
               sched[k], worst, worst_full, nfe);
        CHECK_MSG(worst < 1e-3, "%s: change of log density off by %.3g nats", sched[k], worst);
        if (k == 1 || k == 2) /* VP: q_1 = N(0, I) up to alpha_1 |mu| */
            CHECK_MSG(worst_full < 1e-2, "%s: log p_0 off by %.3g nats", sched[k], worst_full);
    }
}

/* Hutchinson-Skilling is unbiased: 4000 copies of one point, each with its own probe, have a
 * mean log p within 4 standard errors of the exact trace's (Rademacher and Gaussian), and
 * Gaussian probes have the larger variance (Hutchinson 1990: Rademacher's is minimal). */
TEST(likelihood_trace_estimator_is_unbiased) {
    elbo_process p;
    vp_process(&p, "loglinear");
    const int B = 4000;
    float *x = malloc(sizeof(float) * 2 * B);
    double *logp = malloc(sizeof(double) * B), exact;
    for (int b = 0; b < B; b++) x[2 * b] = 0.4f, x[2 * b + 1] = -0.1f;
    elbo_ode_likelihood_params lp;
    elbo_ode_likelihood_params_init(&lp);
    lp.probe = ELBO_PROBE_EXACT;
    CHECK(elbo_ode_log_likelihood(&p, &lp, elbo_gmm_denoiser_vjp, (void *)&mix, x, 1, 2, &exact,
                                  NULL, NULL, NULL) == ELBO_OK);
    double var[2];
    for (int k = 0; k < 2; k++) {
        lp.probe = k ? ELBO_PROBE_GAUSSIAN : ELBO_PROBE_RADEMACHER;
        lp.seed = 9 + k;
        CHECK(elbo_ode_log_likelihood(&p, &lp, elbo_gmm_denoiser_vjp, (void *)&mix, x, B, 2, logp,
                                      NULL, NULL, NULL) == ELBO_OK);
        double m = 0, v = 0;
        for (int b = 0; b < B; b++) m += logp[b];
        m /= B;
        for (int b = 0; b < B; b++) v += (logp[b] - m) * (logp[b] - m);
        v /= B - 1;
        var[k] = v;
        printf("    %s: mean %.5f (sd %.4f), exact %.5f\n", elbo_probe_name(lp.probe), m, sqrt(v),
               exact);
        CHECK_MSG(fabs(m - exact) <= 4 * sqrt(v / B) + 1e-4, "%s: mean %.5f, exact %.5f",
                  elbo_probe_name(lp.probe), m, exact);
        CHECK(v > 0);
    }
    CHECK(var[0] < var[1]);
    free(x);
    free(logp);
}

TEST(likelihood_contract) {
    elbo_process p;
    vp_process(&p, "loglinear");
    elbo_ode_likelihood_params lp;
    elbo_ode_likelihood_params_init(&lp);
    float x[130] = {0};
    double logp[2];
    lp.probe = ELBO_PROBE_EXACT;
    elbo_gmm big = mix;
    CHECK(elbo_ode_log_likelihood(&p, &lp, elbo_gmm_denoiser_vjp, &big, x, 1, 130, logp, NULL, NULL,
                                  NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "exact"));
    lp.probe = ELBO_PROBE_RADEMACHER;
    lp.rtol = -1;
    CHECK(elbo_ode_log_likelihood(&p, &lp, elbo_gmm_denoiser_vjp, (void *)&mix, x, 1, 2, logp, NULL,
                                  NULL, NULL) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "--rtol"));
    elbo_probe_kind k;
    CHECK(elbo_probe_parse("gaussian", &k) == ELBO_OK && k == ELBO_PROBE_GAUSSIAN);
    CHECK(elbo_probe_parse("normal", &k) == ELBO_ERR_ARG);
}
