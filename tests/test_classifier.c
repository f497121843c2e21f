/* The classifier model (include/elbo/classifier.h): its input gradient for guidance against
 * central differences, training to a known accuracy on separable images (clean and on noised
 * images, against the Bayes classifier's accuracy), its configuration and checkpoint round
 * trips, its errors, and features that feed the head. */
#include "elbo/train.h"
#include "malloc_count.h"
#include "test.h"
#include "tmpdir.h"

#include <stdlib.h>
#include <string.h>

/* A tiny classifier of (1, 8, 8) images: channels 8, 16 (two levels), groups 4, temb 16
 * when noisy (0 when clean). */
static void tiny_config(elbo_classifier_config *c, int noisy, int classes) {
    elbo_classifier_config_init(c);
    c->c = 1, c->h = 8, c->w = 8;
    c->classes = classes;
    c->n_levels = 2;
    c->channels[0] = 8, c->channels[1] = 16;
    c->groups = 4;
    c->noisy = noisy;
    c->temb = noisy ? 16 : 0;
}

/* log softmax(logits)[y] in double, logits (K). */
static double log_softmax_at(const float *logits, int K, int y) {
    double mx = logits[0], s = 0;
    for (int k = 1; k < K; k++) mx = logits[k] > mx ? logits[k] : mx;
    for (int k = 0; k < K; k++) s += exp(logits[k] - mx);
    return logits[y] - mx - log(s);
}

/* Every parameter has requires_grad 1 and no gradient (grad NULL, as after zero_grad). */
static int params_untouched(const elbo_model *m) {
    for (int i = 0; i < elbo_paramset_count(m->ps); i++) {
        const elbo_tensor *p = elbo_paramset_get(m->ps, i);
        if (p->requires_grad != 1 || p->grad) return 0;
    }
    return 1;
}

/* Wrong labels, batches and models are ELBO_ERR_ARG, from every entry point. */
TEST(classifier_rejects_bad_labels_and_batches) {
    enum { B = 2, D = 64 };
    elbo_classifier_config c;
    tiny_config(&c, 1, 4);
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 1, &m) == ELBO_OK);
    CHECK(!strcmp(m->name, "classifier") && m->transform == ELBO_PIXELS_SCALE11 && !m->sample);
    CHECK(m->n_extra == 1 && !strcmp(m->extra_names[0], "accuracy"));
    CHECK(m->n_eval == 2 && !strcmp(m->eval_names[0], "xent") &&
          !strcmp(m->eval_names[1], "accuracy"));
    elbo_ctx *ctx = elbo_ctx_new(0);
    CHECK(ctx);
    float x[B * D] = {0}, g[B * D];
    const int32_t bad[B] = {1, 4}, neg[B] = {-1, 0}, good[B] = {1, 3};
    double sums[2] = {0, 0};
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    CHECK(!m->loss(ctx, m, x, bad, B, &rng, NULL) && elbo_last_status() == ELBO_ERR_ARG &&
          strstr(elbo_last_error(), "label 4"));
    CHECK(!m->loss(ctx, m, x, neg, B, &rng, NULL) && elbo_last_status() == ELBO_ERR_ARG);
    CHECK(!m->loss(ctx, m, x, NULL, B, &rng, NULL) && elbo_last_status() == ELBO_ERR_ARG &&
          strstr(elbo_last_error(), "labels"));
    CHECK(m->eval(ctx, m, x, bad, B, &rng, sums) == ELBO_ERR_ARG && sums[0] == 0);
    CHECK(m->eval(ctx, m, x, NULL, B, &rng, sums) == ELBO_ERR_ARG);
    elbo_classifier_grad_state gs = {m, ctx, B};
    CHECK(elbo_classifier_grad(&gs, x, B * D, NULL, bad, g, NULL) == ELBO_ERR_ARG);
    CHECK(elbo_classifier_grad(&gs, x, B * D - 1, NULL, good, g, NULL) == ELBO_ERR_ARG);
    for (int i = 0; i < elbo_paramset_count(m->ps); i++)
        CHECK(elbo_paramset_get(m->ps, i)->requires_grad == 1);
    CHECK(elbo_classifier_grad(&gs, x, B * D, NULL, good, g, NULL) == ELBO_OK);
    CHECK(elbo_classifier_forward(ctx, m, x, 0, NULL, NULL, NULL) == ELBO_ERR_ARG);
    /* another model is no classifier */
    elbo_model *vae = NULL;
    CHECK(elbo_model_new("vae-mlp", "{\"h\":8,\"w\":8,\"hidden\":4,\"z\":2}", 1, &vae) == ELBO_OK);
    CHECK(!elbo_classifier_config_of(vae) && elbo_classifier_feature_dim(vae) == 0);
    CHECK(elbo_classifier_forward(ctx, vae, x, 1, NULL, NULL, NULL) == ELBO_ERR_ARG);
    elbo_classifier_grad_state gv = {vae, ctx, 1};
    CHECK(elbo_classifier_grad(&gv, x, D, NULL, good, g, NULL) == ELBO_ERR_ARG);
    elbo_model_free(vae);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* The fields of two configurations agree (channels up to n_levels). */
static int same_config(const elbo_classifier_config *a, const elbo_classifier_config *b) {
    if (a->c != b->c || a->h != b->h || a->w != b->w || a->classes != b->classes ||
        a->n_levels != b->n_levels || a->groups != b->groups || a->temb != b->temb ||
        a->noisy != b->noisy || a->dropout != b->dropout)
        return 0;
    for (int l = 0; l < a->n_levels; l++)
        if (a->channels[l] != b->channels[l]) return 0;
    const elbo_process *p = &a->process, *q = &b->process;
    return p->kind == q->kind && p->schedule == q->schedule && p->beta_min == q->beta_min &&
           p->beta_max == q->beta_max && p->t0 == q->t0 && p->log_snr_min == q->log_snr_min &&
           p->log_snr_max == q->log_snr_max && p->sigma_min == q->sigma_min &&
           p->sigma_max == q->sigma_max;
}

/* m->config rebuilds the same configuration and parameters through elbo_model_new. */
static void check_round_trip(const elbo_classifier_config *c) {
    elbo_model *m = NULL, *back = NULL;
    CHECK(elbo_classifier_model_new(c, 5, &m) == ELBO_OK);
    CHECK(elbo_model_new("classifier", m->config, 7, &back) == ELBO_OK);
    CHECK_MSG(same_config(elbo_classifier_config_of(m), elbo_classifier_config_of(back)) &&
                  same_config(c, elbo_classifier_config_of(m)),
              "config %s did not round-trip", m->config);
    CHECK(elbo_paramset_count(m->ps) == elbo_paramset_count(back->ps));
    CHECK(elbo_paramset_numel(m->ps) == elbo_paramset_numel(back->ps));
    for (int i = 0; i < elbo_paramset_count(m->ps); i++)
        CHECK(!strcmp(elbo_paramset_get(m->ps, i)->name, elbo_paramset_get(back->ps, i)->name));
    /* the module tree of the header */
    CHECK(elbo_paramset_find(m->ps, "conv_in.weight") && elbo_paramset_find(m->ps, "head.bias"));
    CHECK(elbo_paramset_find(m->ps, "norm_out.weight"));
    CHECK(elbo_paramset_find(m->ps, "down.0.res.conv1.weight"));
    CHECK(!elbo_paramset_find(m->ps, "temb.0.weight") == !c->noisy);
    CHECK(!elbo_paramset_find(m->ps, "temb.2.bias") == !c->noisy);
    CHECK(!elbo_paramset_find(m->ps, "down.0.res.temb_proj.weight") == !c->noisy);
    CHECK(elbo_classifier_feature_dim(m) == c->channels[c->n_levels - 1]);
    elbo_model_free(back);
    elbo_model_free(m);
}

/* A bad configuration is ELBO_ERR_ARG naming the field. */
static int refused_json(const char *json, const char *field) {
    elbo_model *m = NULL;
    elbo_status st = elbo_model_new("classifier", json, 1, &m);
    int ok = st == ELBO_ERR_ARG && !m && strstr(elbo_last_error(), field);
    if (!ok) printf("    %s: status %d, \"%s\"\n", json, st, elbo_last_error());
    elbo_model_free(m);
    return ok;
}
static int refused(const elbo_classifier_config *c, const char *field) {
    elbo_model *m = NULL;
    elbo_status st = elbo_classifier_model_new(c, 1, &m);
    int ok = st == ELBO_ERR_ARG && !m && strstr(elbo_last_error(), field);
    if (!ok) printf("    field %s: status %d, \"%s\"\n", field, st, elbo_last_error());
    elbo_model_free(m);
    return ok;
}

TEST(classifier_config_round_trip_and_errors) {
    elbo_classifier_config c, d;
    tiny_config(&c, 1, 4);
    c.n_levels = 3;
    c.channels[2] = 12;
    c.dropout = 0.25f;
    CHECK(elbo_process_set_schedule(&c.process, "cosine") == ELBO_OK);
    c.process.log_snr_min = -7.5;
    c.process.log_snr_max = 11.25;
    check_round_trip(&c);
    if (test_failed()) return;
    tiny_config(&c, 0, 3);
    check_round_trip(&c);
    if (test_failed()) return;
    tiny_config(&c, 1, 10);
    CHECK(elbo_process_set_schedule(&c.process, "ve") == ELBO_OK);
    c.process.sigma_max = 20;
    check_round_trip(&c);
    if (test_failed()) return;
    /* "{}" is the default configuration; a clean one without "temb" has temb 0 */
    elbo_model *m = NULL;
    CHECK(elbo_model_new("classifier", "{}", 1, &m) == ELBO_OK);
    elbo_classifier_config_init(&d);
    CHECK(same_config(elbo_classifier_config_of(m), &d) && elbo_classifier_feature_dim(m) == 128);
    elbo_model_free(m);
    CHECK(elbo_model_new("classifier", "{\"noisy\":0,\"h\":8,\"w\":8}", 1, &m) == ELBO_OK);
    CHECK(elbo_classifier_config_of(m)->temb == 0 && !elbo_classifier_config_of(m)->noisy);
    elbo_model_free(m);
    /* the JSON path */
    CHECK(refused_json("{\"classes\":0}", "classes"));
    CHECK(refused_json("{\"classes\":1}", "classes"));
    CHECK(refused_json("{\"temb\":15}", "temb"));
    CHECK(refused_json("{\"noisy\":0,\"temb\":16}", "temb"));
    CHECK(refused_json("{\"schedule\":\"learned\"}", "schedule"));
    CHECK(refused_json("{\"schedule\":\"nope\"}", "nope"));
    CHECK(refused_json("{\"channels\":[]}", "channels"));
    CHECK(refused_json("{\"channels\":[8,16,32,64,128]}", "channels"));
    CHECK(refused_json("{\"channels\":[8,12]}", "groups"));
    CHECK(refused_json("{\"h\":2,\"w\":2}", "channels"));
    CHECK(refused_json("{\"dropout\":1}", "dropout"));
    CHECK(refused_json("{\"noisy\":2}", "noisy"));
    CHECK(refused_json("{\"log_snr_min\":\"x\"}", "log_snr_min"));
    CHECK(refused_json("{\"log_snr_min\":20}", "classifier"));
    /* the struct path */
    tiny_config(&c, 1, 4);
    d = c, d.classes = 0;
    CHECK(refused(&d, "classes"));
    d = c, d.temb = 15;
    CHECK(refused(&d, "temb"));
    d = c, d.noisy = 0; /* temb 16 left on a clean model */
    CHECK(refused(&d, "temb"));
    d = c, d.process.schedule = ELBO_SCHEDULE_LEARNED;
    CHECK(refused(&d, "schedule learned"));
    d = c, d.channels[1] = 0;
    CHECK(refused(&d, "channels[1]"));
    d = c, d.n_levels = 0;
    CHECK(refused(&d, "channels"));
    d = c, d.groups = 3;
    CHECK(refused(&d, "groups"));
}

/* The features have feature_dim columns and are the head's input: logits = W f + b; the
 * forward is in eval mode (the same logits twice with dropout 0.5). */
TEST(classifier_features_feed_the_head) {
    enum { B = 5, D = 64, K = 4, F = 16 };
    elbo_classifier_config c;
    tiny_config(&c, 1, K);
    c.dropout = 0.5f; /* off in the forward: eval mode */
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 9, &m) == ELBO_OK);
    CHECK(elbo_classifier_feature_dim(m) == F);
    elbo_ctx *ctx = elbo_ctx_new(0);
    CHECK(ctx);
    float x[B * D], logits[B * K], only[B * K], feat[B * F + 8];
    for (int i = 0; i < B * F + 8; i++) feat[i] = -12345.0f;
    elbo_rng rng;
    elbo_rng_init(&rng, 4);
    elbo_rng_normal(&rng, x, B * D, 0.0f, 1.0f);
    elbo_noise_level lv;
    CHECK(elbo_process_at(&c.process, 0.5, &lv) == ELBO_OK);
    CHECK(elbo_classifier_forward(ctx, m, x, B, &lv, logits, feat) == ELBO_OK);
    for (int i = B * F; i < B * F + 8; i++) CHECK(feat[i] == -12345.0f);
    for (int i = 0; i < B * F; i++) CHECK(feat[i] != -12345.0f && isfinite(feat[i]));
    const elbo_tensor *W = elbo_paramset_find(m->ps, "head.weight");
    const elbo_tensor *bias = elbo_paramset_find(m->ps, "head.bias");
    CHECK(W && bias && W->shape[0] == K && W->shape[1] == F);
    for (int b = 0; b < B; b++)
        for (int k = 0; k < K; k++) {
            double z = bias->data[k];
            for (int j = 0; j < F; j++) z += (double)W->data[k * F + j] * feat[b * F + j];
            CHECK_NEAR(logits[b * K + k], z, 1e-5 * (1 + fabs(z)));
        }
    /* either output may be NULL; the logits are the same */
    CHECK(elbo_classifier_forward(ctx, m, x, B, &lv, only, NULL) == ELBO_OK);
    CHECK(!memcmp(only, logits, sizeof only));
    CHECK(elbo_classifier_forward(ctx, m, x, B, &lv, NULL, feat) == ELBO_OK);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* ---- training on separable images ----------------------------------------------------- */
/* Class k of 4: an 8x8 image at -1 with a 3x3 square at +1 in quadrant k (0 top left, 1 top
 * right, 2 bottom left, 3 bottom right), at one of the 4 offsets (0 or 1 in each axis) in the
 * quadrant, plus N(0, 0.2^2) noise on every pixel; in the models' [-1, 1] scale. */
#define PIX_SD 0.2
static void square_template(int k, int j, float *mu) {
    const int r0 = (k / 2) * 4 + j / 2, c0 = (k % 2) * 4 + j % 2;
    for (int i = 0; i < 64; i++) {
        int r = i / 8, col = i % 8;
        mu[i] = r >= r0 && r < r0 + 3 && col >= c0 && col < c0 + 3 ? 1.0f : -1.0f;
    }
}
static void corner_images(elbo_rng *rng, int64_t n, float *x, int32_t *y) {
    elbo_rng_normal(rng, x, (size_t)(n * 64), 0.0f, (float)PIX_SD);
    for (int64_t b = 0; b < n; b++) {
        float mu[64];
        y[b] = (int32_t)elbo_rng_below(rng, 4);
        square_template(y[b], (int)elbo_rng_below(rng, 4), mu);
        for (int i = 0; i < 64; i++) x[b * 64 + i] += mu[i];
    }
}

/* The Bayes classifier's accuracy on x_t = alpha x + sigma eps of these images at t ~ U(0, 1]
 * (Monte Carlo over n draws): x_t | k, j ~ N(alpha mu_kj, s^2 I), s^2 = alpha^2 0.04 +
 * sigma^2, so p(k | x_t) is proportional to sum_j exp(-|x_t - alpha mu_kj|^2 / (2 s^2)). */
static double bayes_accuracy(const elbo_process *p, int n, uint64_t seed) {
    float mu[16][64], x[64], eps[64];
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) square_template(k, j, mu[4 * k + j]);
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    int right = 0;
    for (int i = 0; i < n; i++) {
        int32_t y;
        corner_images(&rng, 1, x, &y);
        float u;
        elbo_rng_uniform(&rng, &u, 1, 0.0f, 1.0f);
        elbo_noise_level lv;
        elbo_process_at(p, 1.0 - u, &lv); /* u in [0, 1): t in (0, 1] */
        elbo_rng_normal(&rng, eps, 64, 0.0f, 1.0f);
        const double s2 = lv.alpha * lv.alpha * PIX_SD * PIX_SD + lv.sigma * lv.sigma;
        double best = -INFINITY;
        int arg = 0;
        for (int k = 0; k < 4; k++) {
            double mx = -INFINITY, sum = 0, e[4];
            for (int j = 0; j < 4; j++) {
                double d2 = 0;
                for (int q = 0; q < 64; q++) {
                    double r = lv.alpha * x[q] + lv.sigma * eps[q] - lv.alpha * mu[4 * k + j][q];
                    d2 += r * r;
                }
                e[j] = -d2 / (2 * s2);
                mx = fmax(mx, e[j]);
            }
            for (int j = 0; j < 4; j++) sum += exp(e[j] - mx);
            if (mx + log(sum) > best) best = mx + log(sum), arg = k;
        }
        right += arg == y;
    }
    return (double)right / n;
}

/* Adam on m->loss with fresh images every step (the loop of test_diffusion_model.c's
 * train_8gaussians), learning rate 2e-3 with cosine decay. */
static elbo_status train_corners(elbo_model *m, elbo_ctx *ctx, int steps, int B) {
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    elbo_optim *opt = elbo_optim_new(m->ps, &op);
    float *x = malloc((size_t)B * 64 * sizeof *x);
    int32_t *y = malloc((size_t)B * sizeof *y);
    if (!opt || !x || !y) return ELBO_ERR_NOMEM;
    elbo_rng rng, data;
    elbo_rng_init(&rng, 1);
    elbo_rng_init(&data, 2);
    elbo_status st = ELBO_OK;
    for (int s = 0; s < steps && st == ELBO_OK; s++) {
        elbo_ctx_reset(ctx);
        elbo_paramset_zero_grad(m->ps);
        corner_images(&data, B, x, y);
        elbo_tensor *loss = m->loss(ctx, m, x, y, B, &rng, NULL);
        if (!loss || (st = elbo_backward(ctx, loss)) != ELBO_OK) st = st ? st : elbo_last_status();
        if (st == ELBO_OK) st = elbo_optim_step(opt, (float)(1e-3 * (1 + cos(M_PI * s / steps))));
    }
    free(x);
    free(y);
    elbo_optim_free(opt);
    return st;
}

/* m->eval's means (xent, accuracy) over n test images (batches of 256), and the accuracy
 * through elbo_classifier_forward at the level of t = 0 (lvl) or without one (NULL). */
static elbo_status test_corners(elbo_model *m, elbo_ctx *ctx, int n, const elbo_noise_level *lvl,
                                double *means, double *acc0) {
    enum { BT = 256 };
    static float x[BT * 64], logits[BT * 4];
    int32_t y[BT];
    elbo_rng data, rng;
    elbo_rng_init(&data, 99);
    elbo_rng_init(&rng, 7);
    double sums[2] = {0, 0};
    int right = 0;
    for (int i = 0; i < n; i += BT) {
        corner_images(&data, BT, x, y);
        elbo_ctx_reset(ctx);
        elbo_status st = m->eval(ctx, m, x, y, BT, &rng, sums);
        if (st == ELBO_OK) st = elbo_classifier_forward(ctx, m, x, BT, lvl, logits, NULL);
        if (st) return st;
        for (int b = 0; b < BT; b++) {
            int best = 0;
            for (int k = 1; k < 4; k++) best = logits[b * 4 + k] > logits[b * 4 + best] ? k : best;
            right += best == y[b];
        }
    }
    means[0] = sums[0] / n, means[1] = sums[1] / n;
    *acc0 = (double)right / n;
    return ELBO_OK;
}

/* d/dx log p(y|x) of elbo_classifier_grad against central differences of log p(y|x) through
 * elbo_classifier_forward, per example along a random direction v (only that example's rows
 * moved), step 1e-2, relative tolerance 1e-3 (the float32 network's rounding divided by the
 * step is ~1e-5 of |log p|). On a model trained for 100 steps (at its initial weights log p
 * is nearly flat in x) and on faint squares 0.5 mu + N(0, 0.5^2) with the true label and
 * two wrong ones, so log p is neither saturated nor flat. Measured worst relative errors:
 * clean 1.3e-4, noisy 1.2e-4 (|grad . v| from 0.04 to 1.4). */
static void check_grad(int noisy) {
    enum { B = 3, D = 64, K = 4 };
    elbo_classifier_config c;
    tiny_config(&c, noisy, K);
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 3, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    CHECK(ctx);
    CHECK(train_corners(m, ctx, 100, 64) == ELBO_OK);
    float x[B * D], v[B * D], g[B * D], xp[B * D], logits[B * K], lp_plus[B * K], lp_minus[B * K];
    int32_t y[B], k[B];
    elbo_rng rng;
    elbo_rng_init(&rng, 11);
    corner_images(&rng, B, x, k);
    elbo_rng_normal(&rng, v, B * D, 0.0f, 0.5f);
    for (int i = 0; i < B * D; i++) x[i] = 0.5f * (x[i] + 1.0f) - 1.0f + v[i];
    for (int b = 0; b < B; b++) y[b] = (k[b] + b) % K; /* the true label, then wrong ones */
    elbo_rng_normal(&rng, v, B * D, 0.0f, 1.0f);
    elbo_noise_level lv;
    CHECK(elbo_process_at(&c.process, 0.6, &lv) == ELBO_OK);
    elbo_paramset_zero_grad(m->ps);
    double log_prob[B];
    elbo_classifier_grad_state gs = {m, ctx, B};
    CHECK(elbo_classifier_grad(&gs, x, B * D, &lv, y, g, log_prob) == ELBO_OK);
    CHECK_MSG(params_untouched(m), "a parameter kept requires_grad 0 or got a gradient");
    CHECK(elbo_classifier_forward(ctx, m, x, B, &lv, logits, NULL) == ELBO_OK);
    const double h = 1e-2;
    double worst = 0;
    for (int b = 0; b < B; b++) {
        CHECK_NEAR(log_prob[b], log_softmax_at(logits + b * K, K, y[b]), 1e-5);
        for (int s = -1; s <= 1; s += 2) {
            memcpy(xp, x, sizeof xp);
            for (int i = 0; i < D; i++) xp[b * D + i] += (float)(s * h * v[b * D + i]);
            CHECK(elbo_classifier_forward(ctx, m, xp, B, &lv, s > 0 ? lp_plus : lp_minus, NULL) ==
                  ELBO_OK);
        }
        double num =
            (log_softmax_at(lp_plus + b * K, K, y[b]) - log_softmax_at(lp_minus + b * K, K, y[b])) /
            (2 * h);
        double ana = 0;
        for (int i = 0; i < D; i++) ana += (double)g[b * D + i] * v[b * D + i];
        printf("    %s example %d: log p %.4f, grad . v %.6g, central difference %.6g\n",
               noisy ? "noisy" : "clean", b, log_prob[b], ana, num);
        CHECK_MSG(fabs(num) > 1e-2, "example %d: a flat direction (%g) checks nothing", b, num);
        CHECK_MSG(fabs(ana - num) <= 1e-3 * fabs(num),
                  "%s example %d: grad . v = %.9g, central "
                  "difference %.9g",
                  noisy ? "noisy" : "clean", b, ana, num);
        worst = fmax(worst, fabs(ana - num) / fabs(num));
    }
    printf("    %s: worst relative error of the directional derivative %.2g\n",
           noisy ? "noisy" : "clean", worst);
    /* a clean model ignores the level; a noisy one does not */
    float g0[B * D];
    CHECK(elbo_classifier_grad(&gs, x, B * D, NULL, y, g0, NULL) == ELBO_OK);
    double diff = 0;
    for (int i = 0; i < B * D; i++) diff = fmax(diff, fabs(g0[i] - g[i]));
    CHECK_MSG(noisy ? diff > 1e-4 : diff == 0, "grad at t = 0 and t = 0.6 differ by %g", diff);
    CHECK(params_untouched(m));
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

TEST(classifier_grad_matches_central_differences) {
    check_grad(0);
    if (test_failed()) return;
    check_grad(1);
}

/* Clean: 300 steps of batch 64 take the test accuracy from chance (0.25) to >= 0.95;
 * measured: xent 1.418 -> 0.032, accuracy 0.2515 -> 1.0000 over 2048 test images (model
 * seeds 5 and 8: 1.0000 too). */
TEST(classifier_trains_clean) {
    elbo_classifier_config c;
    tiny_config(&c, 0, 4);
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 2, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    CHECK(ctx);
    double before[2], after[2], a0;
    CHECK(test_corners(m, ctx, 2048, NULL, before, &a0) == ELBO_OK);
    CHECK(train_corners(m, ctx, 300, 64) == ELBO_OK);
    CHECK(test_corners(m, ctx, 2048, NULL, after, &a0) == ELBO_OK);
    printf("    clean: xent %.4f -> %.4f, accuracy %.4f -> %.4f\n", before[0], after[0], before[1],
           after[1]);
    CHECK_MSG(after[1] >= 0.95 && a0 == after[1], "test accuracy %.4f (forward: %.4f)", after[1],
              a0);
    CHECK(after[0] < 0.2 && after[0] < before[0]);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* Noisy (VP loglinear, log_snr 13.3 .. -5): at t ~ U(0, 1] the images drown in the noise
 * for log_snr below about -2 (t > 0.84), so no classifier reaches 0.95 on average over t;
 * the test compares the accuracy of m->eval with the Bayes classifier's (Monte Carlo, 20000
 * draws; its standard error 0.002, the eval's 0.006) and asks for >= 0.95 at t = 0.
 * Measured after 600 steps of batch 64: xent 1.415 -> 0.217, eval accuracy 0.2534 -> 0.9131
 * against Bayes 0.9190; at t = 0 accuracy 1.0000 (model seeds 5 and 8: 0.9180 and 0.9180,
 * t = 0 1.0000). */
TEST(classifier_trains_noisy) {
    elbo_classifier_config c;
    tiny_config(&c, 1, 4);
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 2, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    CHECK(ctx);
    elbo_noise_level zero;
    CHECK(elbo_process_at(&c.process, 0.0, &zero) == ELBO_OK);
    double before[2], after[2], a0;
    CHECK(test_corners(m, ctx, 2048, &zero, before, &a0) == ELBO_OK);
    CHECK(train_corners(m, ctx, 600, 64) == ELBO_OK);
    CHECK(test_corners(m, ctx, 2048, &zero, after, &a0) == ELBO_OK);
    const double bayes = bayes_accuracy(&c.process, 20000, 5);
    printf("    noisy: xent %.4f -> %.4f, accuracy %.4f -> %.4f (Bayes %.4f), at t = 0 %.4f\n",
           before[0], after[0], before[1], after[1], bayes, a0);
    CHECK_MSG(a0 >= 0.95, "accuracy at t = 0: %.4f", a0);
    CHECK_MSG(after[1] >= bayes - 0.04 && after[1] <= bayes + 0.02,
              "test accuracy %.4f, the Bayes classifier's %.4f", after[1], bayes);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

/* The trainer runs the model on a labelled uint8 dataset and elbo_model_load rebuilds it
 * from the checkpoint: the same configuration, the same evaluation. Measured after 100 steps
 * of batch 32 (noisy): test xent 0.370, accuracy 0.902. */
TEST(classifier_trainer_checkpoint_loads) {
    enum { N = 512 };
    elbo_dataset train = {0}, test = {0};
    elbo_dataset *ds[2] = {&train, &test};
    static float x[N * 64];
    elbo_rng data;
    elbo_rng_init(&data, 3);
    for (int d = 0; d < 2; d++) {
        ds[d]->n = N, ds[d]->c = 1, ds[d]->h = 8, ds[d]->w = 8, ds[d]->num_classes = 4;
        ds[d]->images = malloc(N * 64);
        ds[d]->labels = malloc(N * sizeof(int32_t));
        CHECK(ds[d]->images && ds[d]->labels);
        corner_images(&data, N, x, ds[d]->labels);
        for (int i = 0; i < N * 64; i++) {
            double v = round((x[i] + 1) * 127.5);
            ds[d]->images[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    elbo_classifier_config c;
    tiny_config(&c, 1, 4);
    elbo_model *m = NULL, *back = NULL;
    CHECK(elbo_classifier_model_new(&c, 4, &m) == ELBO_OK);
    tmpdir td;
    CHECK(td_make_tag(&td, "classifier"));
    elbo_train_params p;
    elbo_train_params_init(&p);
    p.steps = 100;
    p.batch = 32;
    p.lr = 2e-3f;
    p.out_dir = td.dir;
    p.progress = NULL;
    p.plot = 0;
    p.ckpt_every = 0;
    elbo_train_result r;
    double after[2], again[2];
    CHECK(elbo_train(m, &train, &p, &r) == ELBO_OK);
    CHECK(elbo_evaluate(m, &test, 64, 1, after) == ELBO_OK);
    printf("    trainer: 100 steps, test xent %.4f, accuracy %.4f\n", after[0], after[1]);
    CHECK(after[1] > 0.5);
    CHECK(elbo_model_load(r.ckpt_path, &back, NULL, NULL) == ELBO_OK);
    CHECK(!strcmp(back->name, "classifier") && !strcmp(back->config, m->config));
    CHECK(same_config(elbo_classifier_config_of(back), &c));
    CHECK(elbo_evaluate(back, &test, 64, 1, again) == ELBO_OK);
    CHECK(again[0] == after[0] && again[1] == after[1]);
    elbo_model_free(back);
    elbo_model_free(m);
    td_remove(&td);
    elbo_dataset_free(&train);
    elbo_dataset_free(&test);
}

/* A training step (loss, backward, Adam) and a guidance gradient allocate nothing once the
 * arena has grown (as tests/test_train.c checks for the other models); under
 * AddressSanitizer, where the allocator is not interposed, only the arena's growth. */
TEST(classifier_steps_allocate_nothing) {
    enum { B = 16, D = 64 };
    elbo_classifier_config c;
    tiny_config(&c, 1, 4);
    c.dropout = 0.1f;
    elbo_model *m = NULL;
    CHECK(elbo_classifier_model_new(&c, 1, &m) == ELBO_OK);
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    elbo_optim *opt = elbo_optim_new(m->ps, &op);
    elbo_ctx *ctx = elbo_ctx_new(0), *gctx = elbo_ctx_new(0);
    CHECK(opt && ctx && gctx);
    static float x[B * D], g[B * D];
    int32_t y[B];
    elbo_rng rng, data;
    elbo_rng_init(&rng, 1);
    elbo_rng_init(&data, 2);
    corner_images(&data, B, x, y);
    elbo_noise_level lv;
    CHECK(elbo_process_at(&c.process, 0.5, &lv) == ELBO_OK);
    elbo_classifier_grad_state gs = {m, gctx, B};
    malloc_count_result r;
    size_t cap = 0, gcap = 0;
    int ok = 1;
    for (int s = 0; s < 8 && ok; s++) {
        if (s == 3) {
            cap = elbo_ctx_arena_capacity(ctx), gcap = elbo_ctx_arena_capacity(gctx);
            malloc_count_start();
        }
        elbo_ctx_reset(ctx);
        elbo_paramset_zero_grad(m->ps);
        double acc;
        elbo_tensor *loss = m->loss(ctx, m, x, y, B, &rng, &acc);
        ok = loss && elbo_backward(ctx, loss) == ELBO_OK &&
             elbo_optim_step(opt, 1e-3f) == ELBO_OK &&
             elbo_classifier_grad(&gs, x, B * D, &lv, y, g, NULL) == ELBO_OK;
    }
    malloc_count_stop(&r);
    CHECK(ok);
    CHECK(elbo_ctx_arena_capacity(ctx) == cap && elbo_ctx_arena_capacity(gctx) == gcap);
    CHECK_MSG(r.calls[0] == 0 && r.calls[1] == 0,
              "%ld + %ld allocator calls in 5 steady-state steps, the first %s / %s", r.calls[0],
              r.calls[1], r.first[0], r.first[1]);
    elbo_optim_free(opt);
    elbo_ctx_free(gctx);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}
