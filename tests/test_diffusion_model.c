/* The diffusion model (include/elbo/diffusion_model.h): its eval bound recomputed through the
 * public pieces (denoiser -> elbo_param_convert -> weights -> prior and reconstruction) for
 * each parameterisation; classifier-free guidance against its formula; the configuration
 * round-trip; errors; a short training run that lowers the bound; and the 8-gaussians toy,
 * whose samples must fall on the modes in the right shares. */
#include "test.h"

#include "diffusion_testlib.h"
#include "elbo/gmm.h"
#include "elbo/train.h"

#include <stdlib.h>
#include <string.h>

/* 8-bit pixels of n images (1, 8, 8) in [-1, 1]: a bright square at a random place. */
static void square_images(float *x, int n, uint64_t seed) {
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    for (int i = 0; i < n; i++) {
        int r = (int)elbo_rng_below(&rng, 5), c = (int)elbo_rng_below(&rng, 5);
        for (int p = 0; p < 64; p++) {
            int pr = p / 8, pc = p % 8, in = pr >= r && pr < r + 3 && pc >= c && pc < c + 3;
            x[i * 64 + p] = in ? 1.0f : (float)(2.0 * 30 / 255 - 1);
        }
    }
}

/* eval through the model == the same bound assembled from the denoiser's x0_hat. */
TEST(diffusion_model_eval_matches_pieces) {
    enum { B = 4, D = 64 };
    float x[B * D];
    square_images(x, B, 1);
    const elbo_param_kind kinds[] = {ELBO_PARAM_EPS, ELBO_PARAM_X0, ELBO_PARAM_V, ELBO_PARAM_SCORE};
    for (int k = 0; k < 4; k++)
        for (int T = 0; T <= 10; T += 10) {
            elbo_diffusion_config c;
            tiny_image_config(&c);
            c.param = kinds[k];
            c.T = T;
            elbo_model *m;
            CHECK(elbo_diffusion_model_new(&c, 3, &m) == ELBO_OK);
            elbo_ctx *ctx = elbo_ctx_new(0), *ctx2 = elbo_ctx_new(0);
            CHECK(ctx && ctx2);
            double sums[4] = {0};
            elbo_rng rng;
            elbo_rng_init(&rng, 9);
            CHECK(m->eval(ctx, m, x, NULL, B, &rng, sums) == ELBO_OK);
            /* the same draws, in the model's order: times, eps, then the recon noise */
            elbo_rng_init(&rng, 9);
            double t[B];
            float eps[B * D], eps0[B * D], xt[D], x0_hat[D], eps_hat[D];
            elbo_diffusion_sample_times(&rng, B, 1, T, t);
            elbo_rng_normal(&rng, eps, B * D, 0, 1);
            elbo_rng_normal(&rng, eps0, B * D, 0, 1);
            double want[4] = {0};
            elbo_noise_level zero, one;
            CHECK(elbo_process_at(&c.process, 0, &zero) == ELBO_OK);
            CHECK(elbo_process_at(&c.process, 1, &one) == ELBO_OK);
            for (int b = 0; b < B; b++) {
                elbo_noise_level l, s;
                CHECK(elbo_process_at(&c.process, t[b], &l) == ELBO_OK);
                for (int i = 0; i < D; i++) xt[i] = (float)(l.alpha * x[b * D + i] + l.sigma * eps[b * D + i]);
                elbo_diffusion_denoiser_state ds = {m, ctx2, 1, NULL, 0.0};
                CHECK(elbo_diffusion_denoiser(&ds, xt, D, &l, x0_hat) == ELBO_OK);
                elbo_param_convert(ELBO_PARAM_X0, ELBO_PARAM_EPS, x0_hat, xt, l.alpha, l.sigma, eps_hat, D);
                double sq = 0;
                for (int i = 0; i < D; i++) sq += (eps_hat[i] - eps[b * D + i]) * (double)(eps_hat[i] - eps[b * D + i]);
                if (T) CHECK(elbo_process_at(&c.process, t[b] - 1.0 / T, &s) == ELBO_OK);
                double diff = 0.5 * elbo_diffusion_weight(ELBO_LOSS_ELBO, &l, &s, T) * sq;
                double prior = elbo_diffusion_prior_kl(&one, 1.0, x + b * D, D);
                double recon = elbo_diffusion_recon_8bit(&zero, x + b * D, eps0 + b * D, D);
                want[0] += prior + diff + recon, want[1] += prior, want[2] += diff, want[3] += recon;
            }
            for (int j = 0; j < 4; j++)
                CHECK_MSG(fabs(sums[j] - want[j]) <= 2e-4 * (1 + fabs(want[j])),
                          "param %s T %d: %s %.9g vs pieces %.9g", elbo_param_name(kinds[k]), T,
                          m->eval_names[j], sums[j], want[j]);
            elbo_ctx_free(ctx);
            elbo_ctx_free(ctx2);
            elbo_model_free(m);
        }
}

/* Guided x0_hat == the x0_hat of (1 + w) eps(x_t, y) - w eps(x_t, null). */
TEST(diffusion_model_guidance_formula) {
    enum { B = 3, D = 64 };
    elbo_diffusion_config c;
    tiny_image_config(&c);
    c.classes = 4;
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 5, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float xt[B * D], g[B * D], yc[B * D], yu[B * D], ec[B * D], eu[B * D];
    elbo_rng rng;
    elbo_rng_init(&rng, 2);
    elbo_rng_normal(&rng, xt, B * D, 0, 1);
    elbo_noise_level l;
    CHECK(elbo_process_at(&c.process, 0.6, &l) == ELBO_OK);
    const int32_t labels[B] = {0, 3, 1};
    elbo_diffusion_denoiser_state s = {m, ctx, B, labels, 2.5};
    CHECK(elbo_diffusion_denoiser(&s, xt, B * D, &l, g) == ELBO_OK);
    s.guidance_scale = 0;
    CHECK(elbo_diffusion_denoiser(&s, xt, B * D, &l, yc) == ELBO_OK);
    s.labels = NULL;
    CHECK(elbo_diffusion_denoiser(&s, xt, B * D, &l, yu) == ELBO_OK);
    elbo_param_convert(ELBO_PARAM_X0, ELBO_PARAM_EPS, yc, xt, l.alpha, l.sigma, ec, B * D);
    elbo_param_convert(ELBO_PARAM_X0, ELBO_PARAM_EPS, yu, xt, l.alpha, l.sigma, eu, B * D);
    double max_d = 0, max_cu = 0;
    for (int i = 0; i < B * D; i++) {
        double e = 3.5 * ec[i] - 2.5 * eu[i];
        double want = (xt[i] - l.sigma * e) / l.alpha;
        max_d = fmax(max_d, fabs(g[i] - want));
        max_cu = fmax(max_cu, fabs(yc[i] - yu[i]));
    }
    CHECK_MSG(max_d < 1e-4, "guided x0_hat off by %.3g", max_d);
    CHECK(max_cu > 1e-3); /* the label does change the prediction */
    /* guidance needs labels in the model */
    elbo_model *u;
    tiny_image_config(&c);
    CHECK(elbo_diffusion_model_new(&c, 5, &u) == ELBO_OK);
    elbo_diffusion_denoiser_state su = {u, ctx, B, NULL, 1.0};
    CHECK(elbo_diffusion_denoiser(&su, xt, B * D, &l, g) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "class-conditional"));
    elbo_model_free(u);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

TEST(diffusion_model_config_roundtrip_and_errors) {
    elbo_diffusion_config c;
    tiny_image_config(&c);
    c.param = ELBO_PARAM_V;
    c.loss = ELBO_LOSS_SNR_TRUNC;
    c.T = 250;
    c.classes = 10;
    elbo_process_set_schedule(&c.process, "cosine");
    elbo_model *m, *m2;
    CHECK(elbo_diffusion_model_new(&c, 1, &m) == ELBO_OK);
    CHECK(elbo_model_new("diffusion", m->config, 1, &m2) == ELBO_OK);
    CHECK_MSG(strcmp(m->config, m2->config) == 0, "%s\nvs\n%s", m->config, m2->config);
    CHECK(elbo_paramset_numel(m->ps) == elbo_paramset_numel(m2->ps));
    CHECK(elbo_paramset_find(m->ps, "label_emb.weight") != NULL);
    elbo_model_free(m2);
    elbo_model_free(m);
    CHECK(elbo_model_new("diffusion", "{\"schedule\":\"learned\",\"loss\":\"simple\"}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "learned"));
    CHECK(elbo_model_new("diffusion", "{\"schedule\":\"learned\",\"channels\":[8],\"groups\":4}", 1, &m) == ELBO_OK);
    CHECK(elbo_paramset_find(m->ps, "gamma.w2") && elbo_paramset_find(m->ps, "gamma.gamma_1"));
    CHECK(m->after_backward != NULL);
    elbo_model_free(m);
    CHECK(elbo_model_new("diffusion", "{\"attn\":[5]}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "resolution 5"));
    CHECK(elbo_model_new("diffusion", "{\"param\":\"noise\"}", 1, &m) == ELBO_ERR_ARG);
    CHECK(elbo_model_new("diffusion", "{\"T\":-1}", 1, &m) == ELBO_ERR_ARG);
    CHECK(elbo_model_new("diffusion", "{\"net\":\"cnn\"}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "net"));
    /* Fourier features: 1 + 2 x 2 input channels per data channel, and the round trip */
    tiny_image_config(&c);
    c.fourier = 1;
    CHECK(elbo_diffusion_model_new(&c, 1, &m) == ELBO_OK);
    CHECK(elbo_model_new("diffusion", m->config, 1, &m2) == ELBO_OK);
    CHECK(strcmp(m->config, m2->config) == 0 && strstr(m->config, "\"fourier\":1"));
    const elbo_tensor *w0 = NULL;
    for (int i = 0; i < elbo_paramset_count(m->ps) && !w0; i++)
        if (elbo_paramset_get(m->ps, i)->ndim == 4) w0 = elbo_paramset_get(m->ps, i);
    CHECK_MSG(w0 && w0->shape[1] == 5, "the first convolution takes %lld channels, want 5",
              w0 ? (long long)w0->shape[1] : -1LL);
    elbo_model_free(m2);
    elbo_model_free(m);
    CHECK(elbo_model_new("diffusion", "{\"net\":\"mlp\",\"c\":2,\"h\":1,\"w\":1,\"fourier\":1}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "fourier"));
    /* the NCSN ladder: L >= 2, not with the bound's loss */
    CHECK(elbo_model_new("diffusion", "{\"levels\":1,\"loss\":\"simple\"}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "levels"));
    CHECK(elbo_model_new("diffusion", "{\"levels\":10,\"loss\":\"elbo\"}", 1, &m) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "ladder"));
}

enum { SQ_N = 64, SQ_D = 64, SQ_B = 16 };

/* A model with an MLP denoiser (2 x 128) on 64 square images: the mean bound before and
 * after 400 Adam steps (lr 2e-3, batches of 16 in order, after_backward when the model has
 * one), each evaluated with the same draws. Returns 0, or -1 on an error. */
static int train_squares(const char *schedule, double *before, double *after, elbo_model **out) {
    float *x = malloc(SQ_N * SQ_D * sizeof *x);
    elbo_diffusion_config c;
    tiny_image_config(&c);
    c.net = ELBO_DENOISER_MLP;
    c.mlp_hidden = 128;
    c.mlp_layers = 2;
    elbo_process_set_schedule(&c.process, schedule);
    elbo_model *m = NULL;
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_optim *opt = NULL;
    int rc = -1;
    if (!x || !ctx || elbo_diffusion_model_new(&c, 2, &m) != ELBO_OK) goto done;
    square_images(x, SQ_N, 7);
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    if (!(opt = elbo_optim_new(m->ps, &op))) goto done;
    elbo_rng rng;
    for (int pass = 0; pass < 2; pass++) {
        double *sums = pass ? after : before;
        memset(sums, 0, 4 * sizeof *sums);
        for (int i = 0; i < SQ_N; i += SQ_B) {
            elbo_ctx_reset(ctx);
            elbo_rng_init(&rng, 100 + i);
            if (m->eval(ctx, m, x + i * SQ_D, NULL, SQ_B, &rng, sums) != ELBO_OK) goto done;
        }
        for (int j = 0; j < 4; j++) sums[j] /= SQ_N;
        if (pass) break;
        elbo_rng_init(&rng, 1);
        for (int s = 0; s < 400; s++) {
            elbo_ctx_reset(ctx);
            elbo_paramset_zero_grad(m->ps);
            elbo_tensor *loss = m->loss(ctx, m, x + (s % (SQ_N / SQ_B)) * SQ_B * SQ_D, NULL, SQ_B, &rng, NULL);
            if (!loss || elbo_backward(ctx, loss) != ELBO_OK) goto done;
            if (m->after_backward && m->after_backward(m) != ELBO_OK) goto done;
            if (elbo_optim_step(opt, 2e-3f) != ELBO_OK) goto done;
        }
    }
    rc = 0;
done:
    elbo_optim_free(opt);
    elbo_ctx_free(ctx);
    free(x);
    if (rc == 0 && out) *out = m;
    else elbo_model_free(m);
    return rc;
}

/* Adam on the whole bound (loss elbo, MLP denoiser) over 64 square images: the mean bound
 * on them must fall by at least 20% in 400 steps (measured: 560 -> 385 nats per image). */
TEST(diffusion_model_training_lowers_bound) {
    double before[4], after[4];
    CHECK(train_squares("loglinear", before, after, NULL) == 0);
    CHECK_MSG(after[0] < 0.8 * before[0], "bound %.4g -> %.4g nats per image", before[0], after[0]);
}

/* One example's loss and its diffusion term with a learned schedule, the same draws each
 * call (rng from seed). */
static double learned_loss_at(elbo_model *m, elbo_ctx *ctx, const float *x, uint64_t seed,
                              double *diff) {
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    elbo_ctx_reset(ctx);
    elbo_paramset_zero_grad(m->ps);
    double extra[2];
    elbo_tensor *loss = m->loss(ctx, m, x, NULL, 1, &rng, extra);
    if (diff) *diff = extra[0];
    return loss ? loss->data[0] : NAN;
}

/* The learned schedule's gradient, as after_backward writes it, against central
 * differences: the endpoints gamma_0, gamma_1 follow the loss (the whole bound), the
 * interior (w1, w2, b2, w3) follows L_diffusion^2 (one example, so the batch mean of L_b^2
 * is L^2); continuous time and T = 10 steps. The MLP's weights on its time embedding are
 * zeroed here: the network's noise-level input, 1000 (gamma - gamma_min) / span, reaches
 * sin(1000 ...) whose float argument moves in steps of 6e-5, too coarse for a difference
 * quotient; that path is autodiff through ops checked on their own (the embedding's
 * gradient in nn_timestep_embedding_t_grad). */
TEST(diffusion_model_learned_schedule_gradient) {
    enum { D = 64 };
    float x[D];
    square_images(x, 1, 3);
    for (int T = 0; T <= 10; T += 10) {
        elbo_diffusion_config c;
        tiny_image_config(&c);
        c.net = ELBO_DENOISER_MLP;
        c.mlp_hidden = 16;
        c.mlp_layers = 1;
        c.T = T;
        elbo_process_set_schedule(&c.process, "learned");
        elbo_model *m;
        CHECK(elbo_diffusion_model_new(&c, 6, &m) == ELBO_OK);
        elbo_tensor *w_in = elbo_paramset_find(m->ps, "mlp.0.weight"); /* (hidden, D + temb) */
        CHECK(w_in && w_in->shape[1] == D + c.mlp_temb);
        for (int64_t r = 0; r < w_in->shape[0]; r++)
            for (int64_t j = D; j < w_in->shape[1]; j++) w_in->data[r * w_in->shape[1] + j] = 0.0f;
        elbo_ctx *ctx = elbo_ctx_new(0);
        const char *names[6] = {"gamma.gamma_0", "gamma.gamma_1", "gamma.w1", "gamma.w2", "gamma.b2", "gamma.w3"};
        const int idx[6] = {0, 0, 0, 3, 7, 11};
        for (uint64_t seed = 1; seed <= 3; seed++) {
            elbo_rng rng;
            elbo_rng_init(&rng, seed);
            elbo_ctx_reset(ctx);
            elbo_paramset_zero_grad(m->ps);
            elbo_tensor *loss = m->loss(ctx, m, x, NULL, 1, &rng, NULL);
            CHECK(loss && elbo_backward(ctx, loss) == ELBO_OK && m->after_backward(m) == ELBO_OK);
            double grads[6];
            for (int j = 0; j < 6; j++) grads[j] = elbo_paramset_find(m->ps, names[j])->grad[idx[j]];
            for (int j = 0; j < 6; j++) {
                float *w = elbo_paramset_find(m->ps, names[j])->data + idx[j], w0 = *w;
                double h = fmax(1e-3, 1e-3 * fabs(w0)), f[2], step[2];
                for (int side = 0; side < 2; side++) {
                    *w = (float)(w0 + (side ? h : -h));
                    step[side] = (double)*w - w0;
                    double diff, l = learned_loss_at(m, ctx, x, seed, &diff);
                    f[side] = j < 2 ? l : diff * diff; /* the bound, or L_diffusion^2 */
                }
                *w = w0;
                double fd = (f[1] - f[0]) / (step[1] - step[0]);
                CHECK_MSG(fabs(fd - grads[j]) <= 0.002 * fabs(fd) + 1e-4 * (1 + fabs(f[0])),
                          "T %d seed %llu %s[%d]: gradient %.6g, finite difference %.6g", T,
                          (unsigned long long)seed, names[j], idx[j], grads[j], fd);
            }
        }
        elbo_ctx_free(ctx);
        elbo_model_free(m);
    }
}

/* Training with a learned schedule (400 Adam steps, as diffusion_model_training_lowers_bound)
 * lowers the bound by at least 20% (measured 560 -> 365 nats per image, against 385 with the
 * fixed log-linear schedule), moves both endpoints (measured log_snr(0) 13.3 -> 12.58,
 * log_snr(1) -5 -> -4.45) and keeps log_snr decreasing on a grid of 1001 times. */
TEST(diffusion_model_learned_schedule_trains) {
    double before[4], after[4];
    elbo_model *m = NULL;
    CHECK(train_squares("learned", before, after, &m) == 0);
    const elbo_diffusion_config *mc = elbo_diffusion_config_of(m);
    CHECK_MSG(after[0] < 0.8 * before[0], "bound %.4g -> %.4g nats per image", before[0], after[0]);
    elbo_noise_level e0, e1;
    CHECK(elbo_process_at(&mc->process, 0, &e0) == ELBO_OK && elbo_process_at(&mc->process, 1, &e1) == ELBO_OK);
    double prev = INFINITY;
    for (int i = 0; i <= 1000; i++) {
        elbo_noise_level l;
        CHECK(elbo_process_at(&mc->process, i / 1000.0, &l) == ELBO_OK);
        CHECK_MSG(l.log_snr < prev, "log_snr not decreasing at t = %g", l.t);
        prev = l.log_snr;
    }
    CHECK_MSG(fabs(e0.log_snr - 13.3) > 0.05 && fabs(e1.log_snr + 5.0) > 0.05,
              "the endpoints stayed at %.4g, %.4g", e0.log_snr, e1.log_snr);
    elbo_model_free(m);
}

/* 8 gaussians (centres 2.83 (cos k pi/4, sin k pi/4), sd 0.354): an MLP denoiser (3 x 128)
 * trained with DDPM's simple loss on fresh points each step (6000 steps of 256, learning
 * rate 2e-3 with cosine decay), then 2000 ancestral samples in 100 steps, each assigned to
 * its nearest centre. Statistics of the data / of a ring through the centres / measured
 * here: mean squared distance to the nearest centre 0.25 / about 0.5 / 0.306; share within
 * 2 sd of it 86.5% / - / 79.4%; 12.5% on each mode (+- 0.74% at 2000 samples) / - / 11.5% -
 * 14.1%. (3000 steps gave a ring, 0.9 of whose points are still within 3 sd of a centre:
 * hence these statistics.) The test asks for a mean squared distance under 0.35, at least
 * 72% within 2 sd and every mode within 8% - 17% (none dropped, none doubled). */
/* Trains m on fresh toy:8gaussians batches of 256 for `steps` steps (Adam, lr 1e-3 with
 * cosine decay), as the trainer does: subnormals (the decaying learning rate makes them)
 * flushed. */
static elbo_status train_8gaussians_labelled(elbo_model *m, elbo_ctx *ctx, int steps, int labelled);
static elbo_status train_8gaussians(elbo_model *m, elbo_ctx *ctx, int steps) {
    return train_8gaussians_labelled(m, ctx, steps, 0);
}

/* labelled: the same law drawn as the mixture of gmm.h, with each point's mode as its label. */
static elbo_status train_8gaussians_labelled(elbo_model *m, elbo_ctx *ctx, int steps, int labelled) {
    enum { B = 256 };
    double w8[8], mu8[16], sd8[8];
    elbo_gmm g;
    elbo_gmm_8gaussians(&g, w8, mu8, sd8);
    int32_t y[B];
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    elbo_optim *opt = elbo_optim_new(m->ps, &op);
    float *x = malloc(B * 2 * sizeof *x);
    if (!opt || !x) return ELBO_ERR_NOMEM;
    elbo_rng rng, data;
    elbo_rng_init(&rng, 1);
    elbo_rng_init(&data, 2);
    int ftz = elbo_get_flush_denormals();
    elbo_set_flush_denormals(1);
    elbo_status st = ELBO_OK;
    for (int s = 0; s < steps && st == ELBO_OK; s++) {
        elbo_ctx_reset(ctx);
        elbo_paramset_zero_grad(m->ps);
        st = labelled ? elbo_gmm_sample(&g, &data, x, y, B) : elbo_toy_sample(ELBO_TOY_8GAUSSIANS, &data, x, B);
        elbo_tensor *loss = st ? NULL : m->loss(ctx, m, x, labelled ? y : NULL, B, &rng, NULL);
        if (!loss || (st = elbo_backward(ctx, loss)) != ELBO_OK) st = st ? st : elbo_last_status();
        if (st == ELBO_OK) st = elbo_optim_step(opt, (float)(1e-3 * (1 + cos(M_PI * s / steps))));
    }
    elbo_set_flush_denormals(ftz);
    free(x);
    elbo_optim_free(opt);
    return st;
}

/* Samples x (ns points) against the 8 centres r (cos k pi/4, sin k pi/4), sd 0.5 / 1.414:
 * mean squared distance to the nearest centre below 0.35 (exact: 2 sd^2 = 0.25), at least
 * 72% within 2 sd (exact: 1 - e^-2 = 86%), each mode holding 8% to 17% (exact: 12.5%). */
static int check_8gaussians(const float *x, int ns, const char *what) {
    int count[8] = {0}, near = 0;
    double msd = 0;
    const double r = 4 / 1.414, sd = 0.5 / 1.414;
    for (int i = 0; i < ns; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int k = 0; k < 8; k++) {
            double dx = x[2 * i] - r * cos(k * M_PI / 4), dy = x[2 * i + 1] - r * sin(k * M_PI / 4);
            double d = dx * dx + dy * dy;
            if (d < bd) bd = d, best = k;
        }
        count[best]++;
        near += bd < 4 * sd * sd;
        msd += bd / ns;
    }
    printf("    %s: mean squared distance %.4f, %.3f within 2 sd\n", what, msd, (double)near / ns);
    if (!(msd < 0.35)) {
        test_fail(__FILE__, __LINE__, "%s: mean squared distance to the nearest centre %.4g", what, msd);
        return 0;
    }
    if (near < 0.72 * ns) {
        test_fail(__FILE__, __LINE__, "%s: %d of %d samples within 2 sd of a centre", what, near, ns);
        return 0;
    }
    for (int k = 0; k < 8; k++)
        if (!(count[k] > 0.08 * ns && count[k] < 0.17 * ns)) {
            test_fail(__FILE__, __LINE__, "%s: mode %d has %d of %d samples", what, k, count[k], ns);
            return 0;
        }
    return 1;
}

/* 2-D points, a 3 x 128 MLP, DDPM's simple loss. */
static void toy_mlp_config(elbo_diffusion_config *c) {
    elbo_diffusion_config_init(c);
    c->c = 2, c->h = 1, c->w = 1;
    c->net = ELBO_DENOISER_MLP;
    c->mlp_hidden = 128;
    c->mlp_layers = 3;
    c->discrete = 0;
    c->loss = ELBO_LOSS_SIMPLE;
}

TEST(diffusion_model_8gaussians) {
    enum { NS = 2000 };
    elbo_diffusion_config c;
    toy_mlp_config(&c);
    c.process.log_snr_min = -10;
    c.process.log_snr_max = 10;
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 4, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float *x = malloc(NS * 2 * sizeof *x);
    CHECK(ctx && x);
    CHECK(train_8gaussians(m, ctx, 6000) == ELBO_OK);
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.steps = 100;
    sp.seed = 3;
    elbo_diffusion_denoiser_state ds = {m, ctx, NS, NULL, 0.0};
    CHECK(elbo_diffusion_sample(&c.process, &sp, elbo_diffusion_denoiser, &ds, x, NS * 2, NULL) == ELBO_OK);
    if (!check_8gaussians(x, NS, "ancestral")) return;
    free(x);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* NCSN (Song & Ermon 2019): VE from sigma 10 to 0.01 on a ladder of 50 levels, denoising
 * score matching with lambda = sigma^2 (loss simple), sampled by annealed Langevin dynamics
 * (50 levels, T = 20, eps 2e-5) and by the PC sampler (200 levels, reverse diffusion and one
 * corrector step at snr 0.05): the same statistics as above. At score SDE's snr 0.16 (set
 * for 3072-dimensional images) the corrector's steps, 0.1 sigma^2 each in 2-D, spread the
 * trained model's samples (mean squared distance 0.44); with the true score they do not
 * (tests/test_score.c). */
TEST(diffusion_model_ncsn_8gaussians) {
    enum { NS = 2000 };
    elbo_diffusion_config c;
    toy_mlp_config(&c);
    elbo_process_set_schedule(&c.process, "ve");
    c.process.sigma_min = 0.01;
    c.process.sigma_max = 10;
    c.levels = 50;
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 4, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float *x = malloc(NS * 2 * sizeof *x);
    CHECK(ctx && x);
    CHECK(train_8gaussians(m, ctx, 6000) == ELBO_OK);
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.kind = ELBO_SAMPLER_LANGEVIN;
    sp.steps = 50;
    sp.langevin_steps = 20;
    sp.seed = 3;
    elbo_diffusion_denoiser_state ds = {m, ctx, NS, NULL, 0.0};
    CHECK(elbo_diffusion_sample(&c.process, &sp, elbo_diffusion_denoiser, &ds, x, NS * 2, NULL) == ELBO_OK);
    if (!check_8gaussians(x, NS, "annealed langevin")) return;
    sp.kind = ELBO_SAMPLER_PC;
    sp.steps = 200;
    sp.snr = 0.05;
    sp.batch = NS;
    CHECK(elbo_diffusion_sample(&c.process, &sp, elbo_diffusion_denoiser, &ds, x, NS * 2, NULL) == ELBO_OK);
    if (!check_8gaussians(x, NS, "pc")) return;
    free(x);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* Classifier-free guidance with a trained toy model (Ho & Salimans 2021): a class-conditional
 * MLP on 8 gaussians labelled by mode, the label dropped to the null label with probability
 * 0.1. Asked for mode k (each of the 8) with w = 0 and w = 2, at least 95% of 500 samples lie
 * nearest centre k (measured: all 500 at both); with the null label the samples spread over
 * every mode, each holding 5% to 20% of 2000 (the unconditional model, trained on a tenth of
 * the batches, is the weaker one: its mean squared distance to the centres is 0.78, against
 * 0.31 for the unconditional model of diffusion_model_8gaussians). */
TEST(diffusion_model_cfg_toy_picks_the_requested_mode) {
    enum { NS = 500 };
    elbo_diffusion_config c;
    toy_mlp_config(&c);
    c.classes = 8;
    c.process.log_snr_min = -10;
    c.process.log_snr_max = 10;
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 4, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float *x = malloc(NS * 8 * 2 * sizeof *x);
    int32_t *y = malloc(NS * 8 * sizeof *y);
    CHECK(ctx && x && y);
    CHECK(train_8gaussians_labelled(m, ctx, 6000, 1) == ELBO_OK);
    const double r = 4 / 1.414;
    for (int wi = 0; wi < 2; wi++) {
        for (int i = 0; i < NS * 8; i++) y[i] = i / NS;
        elbo_sampler_params sp;
        elbo_sampler_params_init(&sp);
        sp.seed = 9;
        elbo_diffusion_denoiser_state ds = {m, ctx, NS * 8, y, wi ? 2.0 : 0.0};
        CHECK(elbo_diffusion_sample(&c.process, &sp, elbo_diffusion_denoiser, &ds, x, NS * 8 * 2, NULL) == ELBO_OK);
        int worst = NS;
        for (int k = 0; k < 8; k++) {
            int hit = 0;
            for (int i = k * NS; i < (k + 1) * NS; i++) {
                int best = 0;
                double bd = INFINITY;
                for (int j = 0; j < 8; j++) {
                    double dx = x[2 * i] - r * cos(j * M_PI / 4), dy = x[2 * i + 1] - r * sin(j * M_PI / 4);
                    if (dx * dx + dy * dy < bd) bd = dx * dx + dy * dy, best = j;
                }
                hit += best == k;
            }
            if (hit < worst) worst = hit;
        }
        printf("    w = %d: the worst mode holds %d of %d of its requested samples\n", wi ? 2 : 0,
               worst, NS);
        CHECK_MSG(worst >= 0.95 * NS, "w = %d: a requested mode got only %d of %d", wi ? 2 : 0,
                  worst, NS);
    }
    /* the null label: unconditional */
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.seed = 10;
    elbo_diffusion_denoiser_state du = {m, ctx, 2000, NULL, 0.0};
    CHECK(elbo_diffusion_sample(&c.process, &sp, elbo_diffusion_denoiser, &du, x, 2000 * 2, NULL) == ELBO_OK);
    int count[8] = {0};
    for (int i = 0; i < 2000; i++) {
        int best = 0;
        double bd = INFINITY;
        for (int j = 0; j < 8; j++) {
            double dx = x[2 * i] - r * cos(j * M_PI / 4), dy = x[2 * i + 1] - r * sin(j * M_PI / 4);
            if (dx * dx + dy * dy < bd) bd = dx * dx + dy * dy, best = j;
        }
        count[best]++;
    }
    for (int j = 0; j < 8; j++)
        CHECK_MSG(count[j] >= 100 && count[j] <= 400, "null label: mode %d holds %d of 2000", j,
                  count[j]);
    free(x);
    free(y);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}
