/* Guidance (include/elbo/guidance.h) on labelled Gaussian mixtures, where the Bayes
 * classifier p(y | x_t) and the class-conditional scores are closed-form (gmm.h):
 *   - classifier guidance at s = 1 turns the mixture's denoiser into component y's
 *     (pointwise), and classifier-free guidance at w = 0 is the conditional model, so both
 *     sample p(x | y): every point in the requested mode, with its mean and variance;
 *   - classifier-free guidance with weight w equals classifier guidance with s = 1 + w
 *     (pointwise, exact models);
 *   - the share of samples in the requested mode rises with the scale. */
#include "test.h"

#include "elbo/guidance.h"

#include <stdlib.h>
#include <string.h>

/* NCSN's mixture: separated modes */
static double w_sep[2] = {0.2, 0.8}, mu_sep[4] = {-5, -5, 5, 5}, sd_sep[2] = {1, 1};
static const elbo_gmm sep = {2, 2, w_sep, mu_sep, sd_sep, -1};
/* overlapping modes at (-1, 0) and (1, 0): p(x_1 > 0 | y = 1) = Phi(1) = 0.841 */
static double w_ov[2] = {0.5, 0.5}, mu_ov[4] = {-1, 0, 1, 0}, sd_ov[2] = {1, 1};
static const elbo_gmm ov = {2, 2, w_ov, mu_ov, sd_ov, -1};

static void ve_process(elbo_process *p) {
    elbo_process_init(p);
    elbo_process_set_schedule(p, "ve");
    p->sigma_min = 0.01;
    p->sigma_max = 100;
}

/* Classifier-free guidance over two mixtures' denoisers: conditional = component y, the
 * unconditional = the mixture. */
typedef struct {
    const elbo_gmm *g;
    int y;
    double w;
    float *work;
} cfg_state;

static elbo_status cfg_denoise(void *user, const float *x_t, int64_t n, const elbo_noise_level *l,
                               float *x0_hat) {
    cfg_state *s = user;
    elbo_gmm cond = *s->g, uncond = *s->g;
    cond.component = s->y;
    uncond.component = -1;
    elbo_status st = elbo_gmm_denoiser(&cond, x_t, n, l, x0_hat);
    if (!st) st = elbo_gmm_denoiser(&uncond, x_t, n, l, s->work);
    if (!st) elbo_cfg_combine(x0_hat, s->work, s->w, x0_hat, n);
    return st;
}

TEST(guidance_classifier_scale_one_is_the_conditional_denoiser) {
    enum { N = 64 };
    float x[2 * N], g1[2 * N], c1[2 * N], work[2 * N];
    int32_t y[N];
    elbo_rng rng;
    elbo_rng_init(&rng, 3);
    elbo_rng_normal(&rng, x, 2 * N, 0, 4);
    for (int i = 0; i < N; i++) y[i] = 1;
    const double ts[] = {0.05, 0.4, 0.8};
    elbo_process p;
    ve_process(&p);
    for (int k = 0; k < 3; k++) {
        elbo_noise_level l;
        CHECK(elbo_process_at(&p, ts[k], &l) == ELBO_OK);
        elbo_guided_state gs = {elbo_gmm_denoiser, (void *)&ov, elbo_gmm_classifier_grad,
                                (void *)&ov, y, 1.0, work};
        CHECK(elbo_guided_denoiser(&gs, x, 2 * N, &l, g1) == ELBO_OK);
        elbo_gmm comp = ov;
        comp.component = 1;
        CHECK(elbo_gmm_denoiser(&comp, x, 2 * N, &l, c1) == ELBO_OK);
        double worst = 0;
        for (int i = 0; i < 2 * N; i++) worst = fmax(worst, fabs(g1[i] - c1[i]) / (1 + fabs(c1[i])));
        CHECK_MSG(worst < 1e-5, "t = %.2f: guided and conditional denoisers differ by %.3g", ts[k],
                  worst);
        /* classifier-free w == classifier s = 1 + w */
        for (double w = 0; w <= 3; w += 1.5) {
            float cf[2 * N], cg[2 * N], wk[2 * N];
            cfg_state cs = {&ov, 1, w, wk};
            CHECK(cfg_denoise(&cs, x, 2 * N, &l, cf) == ELBO_OK);
            gs.scale = 1 + w;
            CHECK(elbo_guided_denoiser(&gs, x, 2 * N, &l, cg) == ELBO_OK);
            double d = 0;
            for (int i = 0; i < 2 * N; i++) d = fmax(d, fabs(cf[i] - cg[i]) / (1 + fabs(cf[i])));
            CHECK_MSG(d < 1e-5, "t = %.2f, w = %g: free %.3g from classifier s = 1 + w", ts[k], w, d);
        }
    }
    /* a label outside the mixture */
    y[3] = 2;
    elbo_noise_level l;
    CHECK(elbo_process_at(&p, 0.5, &l) == ELBO_OK);
    elbo_guided_state gs = {elbo_gmm_denoiser, (void *)&ov, elbo_gmm_classifier_grad, (void *)&ov,
                            y, 1.0, work};
    CHECK(elbo_guided_denoiser(&gs, x, 2 * N, &l, g1) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "label 2"));
}

/* Sampling p(x | y = 0), the small mode of NCSN's mixture, by classifier guidance (s = 1)
 * with ancestral, DDIM, PC and the ODE, and by classifier-free guidance (w = 0): every point
 * in mode 0, mean within 0.15 of (-5, -5), variance within 15% of 1. */
TEST(guidance_samples_the_requested_class) {
    enum { N = 2000 };
    float *x = malloc(sizeof(float) * 2 * N), *work = malloc(sizeof(float) * 2 * N);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) y[i] = 0;
    elbo_process p;
    ve_process(&p);
    const elbo_sampler_kind kinds[] = {ELBO_SAMPLER_ANCESTRAL, ELBO_SAMPLER_DDIM, ELBO_SAMPLER_PC,
                                       ELBO_SAMPLER_ODE, ELBO_SAMPLER_ANCESTRAL};
    for (int k = 0; k < 5; k++) {
        elbo_sampler_params sp;
        elbo_sampler_params_init(&sp);
        sp.kind = kinds[k];
        sp.steps = 200;
        sp.batch = N;
        sp.seed = 5 + k;
        elbo_guided_state gs = {elbo_gmm_denoiser, (void *)&sep, elbo_gmm_classifier_grad,
                                (void *)&sep, y, 1.0, work};
        cfg_state cs = {&sep, 0, 0.0, work};
        const int free_guidance = k == 4;
        elbo_status st = free_guidance
                             ? elbo_diffusion_sample(&p, &sp, cfg_denoise, &cs, x, 2 * N, NULL)
                             : elbo_diffusion_sample(&p, &sp, elbo_guided_denoiser, &gs, x, 2 * N, NULL);
        CHECK(st == ELBO_OK);
        double m[2] = {0, 0}, v = 0;
        int in = 0;
        for (int i = 0; i < N; i++) in += x[2 * i] + x[2 * i + 1] < 0, m[0] += x[2 * i], m[1] += x[2 * i + 1];
        m[0] /= N, m[1] /= N;
        for (int i = 0; i < N; i++)
            v += ((x[2 * i] - m[0]) * (x[2 * i] - m[0]) + (x[2 * i + 1] - m[1]) * (x[2 * i + 1] - m[1])) / 2;
        v /= N - 1;
        const char *what = free_guidance ? "classifier-free w = 0" : elbo_sampler_name(kinds[k]);
        printf("    %s: %d of %d in mode 0, mean (%.3f, %.3f), variance %.3f\n", what, in, N, m[0],
               m[1], v);
        CHECK_MSG(in == N, "%s: %d of %d in the requested mode", what, in, N);
        CHECK_MSG(fabs(m[0] + 5) < 0.15 && fabs(m[1] + 5) < 0.15, "%s: mean (%.3f, %.3f)", what,
                  m[0], m[1]);
        CHECK_MSG(fabs(v - 1) < 0.15, "%s: variance %.3f", what, v);
    }
    free(x);
    free(work);
    free(y);
}

/* Overlapping modes: the share of samples with x_1 > 0 when asking for y = 1 is 0.5 without
 * guidance, Phi(1) = 0.841 at s = 1 (p(x | y) itself; within 0.03 of 2000 points), and rises
 * strictly with s (2, 4) and with the classifier-free w (1, 3). */
TEST(guidance_share_rises_with_scale) {
    enum { N = 2000 };
    float *x = malloc(sizeof(float) * 2 * N), *work = malloc(sizeof(float) * 2 * N);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) y[i] = 1;
    elbo_process p;
    ve_process(&p);
    double share[7];
    const double scales[] = {0, 1, 2, 4};
    for (int k = 0; k < 7; k++) {
        elbo_sampler_params sp;
        elbo_sampler_params_init(&sp);
        sp.steps = 200;
        sp.seed = 11;
        elbo_guided_state gs = {elbo_gmm_denoiser, (void *)&ov, elbo_gmm_classifier_grad,
                                (void *)&ov, y, k < 4 ? scales[k] : 0, work};
        cfg_state cs = {&ov, 1, k == 4 ? 0.0 : k == 5 ? 1.0 : 3.0, work};
        elbo_status st = k < 4 ? elbo_diffusion_sample(&p, &sp, elbo_guided_denoiser, &gs, x, 2 * N, NULL)
                               : elbo_diffusion_sample(&p, &sp, cfg_denoise, &cs, x, 2 * N, NULL);
        CHECK(st == ELBO_OK);
        int in = 0;
        for (int i = 0; i < N; i++) in += x[2 * i] > 0;
        share[k] = (double)in / N;
    }
    printf("    classifier s = 0, 1, 2, 4: %.3f %.3f %.3f %.3f; free w = 0, 1, 3: %.3f %.3f %.3f\n",
           share[0], share[1], share[2], share[3], share[4], share[5], share[6]);
    CHECK_NEAR(share[0], 0.5, 0.035);
    CHECK_NEAR(share[1], 0.841, 0.03);
    CHECK_NEAR(share[4], 0.841, 0.03);
    CHECK(share[1] < share[2] && share[2] < share[3]);
    CHECK(share[4] < share[5] && share[5] < share[6]);
    free(x);
    free(work);
    free(y);
}
