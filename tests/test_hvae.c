/* The hierarchical VAE (src/models/hvae.c) against a two-layer model with 1-D latents whose
 * log p(x) and exact ELBO are 2-D quadratures, recomputed in double from the weights; per-
 * layer KL terms; pathwise gradients against finite differences; a short training run;
 * bad hyper-parameters; no allocation in a step. */
#include "test.h"
#include "malloc_count.h"
#include "tmpdir.h"
#include "vae_testlib.h"

#include "elbo/train.h"

#include <stdlib.h>
#include <string.h>

/* x: 4 binary pixels; z_1, z_2: 1-D; every conditional a tanh MLP of width 8. */
static elbo_model *tiny_hvae(elbo_vae_estimator est, int samples, uint64_t seed) {
    elbo_hvae_config c;
    elbo_hvae_config_init(&c);
    c.c = 1;
    c.h = c.w = 2;
    c.layers = 2;
    c.z[0] = c.z[1] = 1;
    c.n_hidden = 1;
    c.hidden[0] = 8;
    c.act = ELBO_ACT_TANH;
    c.obj.binarize = ELBO_BINARIZE_NONE;
    c.obj.estimator = est;
    c.obj.samples = samples;
    elbo_model *m = NULL;
    return elbo_hvae_model_new(&c, seed, &m) == ELBO_OK ? m : NULL;
}

/* net(x) for an MLP "name" with one tanh hidden layer of width 8: in -> 8 -> out. */
static void ref_mlp(const elbo_paramset *ps, const char *name, const double *x, int in, int out,
                    double *y) {
    char n0[32], n1[32], n2[32], n3[32];
    snprintf(n0, sizeof n0, "%s.0.weight", name);
    snprintf(n1, sizeof n1, "%s.0.bias", name);
    snprintf(n2, sizeof n2, "%s.2.weight", name);
    snprintf(n3, sizeof n3, "%s.2.bias", name);
    const elbo_tensor *w0 = elbo_paramset_find(ps, n0), *b0 = elbo_paramset_find(ps, n1),
                      *w1 = elbo_paramset_find(ps, n2), *b1 = elbo_paramset_find(ps, n3);
    double h[8];
    for (int o = 0; o < 8; o++) {
        double s = b0->data[o];
        for (int i = 0; i < in; i++) s += (double)w0->data[o * in + i] * x[i];
        h[o] = tanh(s);
    }
    for (int o = 0; o < out; o++) {
        double s = b1->data[o];
        for (int i = 0; i < 8; i++) s += (double)w1->data[o * 8 + i] * h[i];
        y[o] = s;
    }
}

static double log_normal(double z, double mu, double logvar) {
    return -0.5 * (log(2 * M_PI) + logvar + (z - mu) * (z - mu) / exp(logvar));
}

static double log_px_z1(const elbo_paramset *ps, const float *x, double z1) {
    double l[4], s = 0;
    ref_mlp(ps, "px", &z1, 1, 4, l);
    for (int i = 0; i < 4; i++)
        s += x[i] * l[i] - (l[i] > 0 ? l[i] + log1p(exp(-l[i])) : log1p(exp(l[i])));
    return s;
}

/* log p(x) = log int int p(x|z1) p(z1|z2) N(z2) and ELBO = int int q(z1|x) q(z2|z1) log w,
 * midpoint rule on [-10, 10]^2 with step 0.01 (smooth integrands, tails below e^-40). */
static void quadrature2(const elbo_paramset *ps, const float *x, double *log_px, double *elbo) {
    enum { N = 2000 };
    const double h = 0.01;
    static double lpx[N], pmu[N], plv[N], qmu2[N], qlv2[N];
    double xin[4], o[2];
    for (int i = 0; i < 4; i++) xin[i] = x[i];
    ref_mlp(ps, "q.1", xin, 4, 2, o);
    const double qmu1 = o[0], qlv1 = o[1];
    for (int i = 0; i < N; i++) {
        double z = -10 + h * (i + 0.5);
        lpx[i] = log_px_z1(ps, x, z);
        ref_mlp(ps, "p.1", &z, 1, 2, o); /* p(z1 | z2 = z) */
        pmu[i] = o[0];
        plv[i] = o[1];
        ref_mlp(ps, "q.2", &z, 1, 2, o); /* q(z2 | z1 = z) */
        qmu2[i] = o[0];
        qlv2[i] = o[1];
    }
    double mx = -INFINITY, s = 0, e = 0;
    for (int i = 0; i < N; i++) { /* z1 */
        double z1 = -10 + h * (i + 0.5), lq1 = log_normal(z1, qmu1, qlv1);
        for (int j = 0; j < N; j++) { /* z2 */
            double z2 = -10 + h * (j + 0.5);
            double lj = lpx[i] + log_normal(z1, pmu[j], plv[j]) + log_normal(z2, 0, 0);
            if (lj > mx) {
                s = s * exp(mx - lj) + 1;
                mx = lj;
            } else {
                s += exp(lj - mx);
            }
            double lq = lq1 + log_normal(z2, qmu2[i], qlv2[i]);
            e += exp(lq) * (lj - lq) * h * h;
        }
    }
    *log_px = mx + log(s * h * h);
    *elbo = e;
}


static const float X1[4] = {1, 0, 1, 1};

TEST(hvae_quadrature_bounds_elbo_iwae_log_px) {
    elbo_model *m = tiny_hvae(ELBO_SGVB_B, 1, 11);
    CHECK(m);
    double log_px, elbo;
    quadrature2(m->ps, X1, &log_px, &elbo);
    CHECK(elbo < log_px - 0.05);
    double figs[24] = {0};
    estimate i1 = eval_bound(m, X1, 1, 3, 4000, 1, NULL), e1 = eval_bound(m, X1, 1, 0, 4000, 2, figs);
    CHECK_NEAR(i1.mean, elbo, 4 * i1.se); /* E[IWAE_1] = ELBO */
    CHECK_NEAR(e1.mean, elbo, 4 * e1.se); /* recon + sum_t KL_t, the top KL in closed form */
    /* figures of one evaluation: neg_elbo = recon + kl, kl = kl_1 + kl_2 */
    CHECK_NEAR(figs[0], figs[1] + figs[2], 1e-9 * fabs(figs[0]));
    CHECK_NEAR(figs[2], figs[5] + figs[6], 1e-9 * fabs(figs[2]) + 1e-12);
    const int64_t ks[4] = {4, 16, 100, 1000};
    const int Rs[4] = {3000, 1500, 400, 100};
    estimate prev = i1;
    for (int i = 0; i < 4; i++) {
        estimate e = eval_bound(m, X1, ks[i], 3, Rs[i], 10 + i, NULL);
        CHECK_MSG(e.mean > prev.mean + 2 * sqrt(e.se * e.se + prev.se * prev.se) || ks[i] >= 100,
                  "IWAE_%lld = %.5f (se %.5f) does not rise above %.5f", (long long)ks[i], e.mean,
                  e.se, prev.mean);
        CHECK_MSG(e.mean >= elbo - 4 * e.se && e.mean <= log_px + 4 * e.se,
                  "IWAE_%lld = %.5f (se %.5f) outside [ELBO %.5f, log p(x) %.5f]", (long long)ks[i],
                  e.mean, e.se, elbo, log_px);
        prev = e;
    }
    CHECK_MSG(log_px - prev.mean < 0.05 * (log_px - elbo) + 4 * prev.se,
              "IWAE_1000 = %.5f leaves %.5f of the gap %.5f", prev.mean, log_px - prev.mean,
              log_px - elbo);
    elbo_model_free(m);
}

TEST(hvae_estimators_agree_with_exact_elbo) {
    const int L = 20000;
    elbo_model *a = tiny_hvae(ELBO_SGVB_A, L, 11), *b = tiny_hvae(ELBO_SGVB_B, L, 11);
    CHECK(a && b);
    double log_px, elbo;
    quadrature2(a->ps, X1, &log_px, &elbo);
    estimate i1 = eval_bound(a, X1, 1, 3, 2000, 3, NULL);
    const double se = i1.se * sqrt(2000.0) / sqrt((double)L);
    double ex[3];
    CHECK_NEAR(loss_at(a, X1, 1, 4, ex), -elbo, 4 * se);
    CHECK_NEAR(ex[0] + ex[1], -elbo, 4 * se);
    CHECK_NEAR(loss_at(b, X1, 1, 4, NULL), -elbo, 4 * se);
    elbo_model *i1m = tiny_hvae(ELBO_IWAE, 1, 11), *a1 = tiny_hvae(ELBO_SGVB_A, 1, 11);
    CHECK(i1m && a1);
    CHECK_NEAR(loss_at(a1, X1, 1, 9, NULL), loss_at(i1m, X1, 1, 9, NULL), 1e-4);
    elbo_model_free(a);
    elbo_model_free(b);
    elbo_model_free(i1m);
    elbo_model_free(a1);
}

TEST(hvae_pathwise_gradients_match_finite_differences) {
    const elbo_vae_estimator est[3] = {ELBO_SGVB_A, ELBO_SGVB_B, ELBO_IWAE};
    for (int e = 0; e < 3; e++) {
        elbo_hvae_config c;
        elbo_hvae_config_init(&c);
        c.c = 1;
        c.h = c.w = 2;
        c.layers = 3;
        c.z[0] = 3;
        c.z[1] = 2;
        c.z[2] = 2;
        c.n_hidden = 1;
        c.hidden[0] = 6;
        c.act = ELBO_ACT_TANH;
        c.obj.binarize = ELBO_BINARIZE_NONE;
        c.obj.estimator = est[e];
        c.obj.samples = 2;
        c.obj.beta = 0.8f;
        elbo_model *m = NULL;
        CHECK(elbo_hvae_model_new(&c, 4, &m) == ELBO_OK);
        const float x[8] = {0.9f, 0.1f, 0.8f, 0.7f, 0.2f, 0.1f, 0.9f, 0.3f};
        char msg[256];
        int ok = fd_check(m, x, 2, 29, msg, sizeof msg);
        elbo_model_free(m);
        CHECK_MSG(ok, "estimator %s: %s", elbo_vae_estimator_name(est[e]), msg);
    }
}

TEST(hvae_training_improves_test_elbo) {
    /* As for vae: from about 543 nats to under 260 in 400 steps of batch 32 (a two-layer
     * chain learns a little slower than one layer), never below the data entropy 157.7. */
    elbo_dataset train, test;
    CHECK(prototype_data(&train, 640, 1) && prototype_data(&test, 160, 2));
    elbo_hvae_config c;
    elbo_hvae_config_init(&c);
    c.hidden[0] = c.hidden[1] = 64;
    c.z[0] = 8;
    c.z[1] = 4;
    c.obj.binarize = ELBO_BINARIZE_STATIC;
    elbo_model *m = NULL;
    CHECK(elbo_hvae_model_new(&c, 3, &m) == ELBO_OK);
    double before[24], after[24];
    CHECK(elbo_evaluate(m, &test, 64, 1, before) == ELBO_OK);
    tmpdir td;
    CHECK(td_make_tag(&td, "hvae"));
    elbo_train_params p;
    elbo_train_params_init(&p);
    p.steps = 400;
    p.batch = 32;
    p.out_dir = td.dir;
    p.progress = NULL;
    p.plot = 0;
    p.ckpt_every = 0;
    p.grad_clip = 100;
    elbo_train_result r;
    CHECK(elbo_train(m, &train, &p, &r) == ELBO_OK);
    CHECK(elbo_evaluate(m, &test, 64, 1, after) == ELBO_OK);
    const double entropy = log(8.0) - 784 * (0.05 * log(0.05) + 0.95 * log(0.95));
    CHECK_MSG(before[0] > 500 && after[0] < 260 && after[0] > entropy - 6,
              "test -ELBO %.2f -> %.2f nats", before[0], after[0]);
    CHECK_NEAR(after[2], after[5] + after[6], 1e-9 * after[2]);
    CHECK(after[4] == after[7] + after[8] && after[7] >= 1);
    elbo_model *back = NULL;
    double again[24];
    CHECK(elbo_model_load(r.ckpt_path, &back, NULL, NULL) == ELBO_OK);
    CHECK(!strcmp(back->name, "hvae") && back->z_dim == 4 && back->n_eval == 9);
    CHECK(elbo_evaluate(back, &test, 64, 1, again) == ELBO_OK);
    for (int i = 0; i < 9; i++) CHECK(again[i] == after[i]);
    /* samples, encode and decode give images in [0, 1] */
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_rng rng;
    elbo_rng_init(&rng, 5);
    static float img[4 * 784], zl[4 * 4];
    CHECK(back->sample(ctx, back, 4, &rng, img) == ELBO_OK);
    int in01 = 1;
    for (int i = 0; i < 4 * 784; i++) in01 &= img[i] >= 0 && img[i] <= 1;
    CHECK(in01);
    for (int i = 0; i < 4 * 784; i++) img[i] = test.images[i] / 255.0f;
    CHECK(back->encode(ctx, back, img, 4, zl) == ELBO_OK);
    CHECK(back->decode(ctx, back, zl, 4, img) == ELBO_OK);
    elbo_ctx_free(ctx);
    elbo_model_free(back);
    elbo_model_free(m);
    td_remove(&td);
    elbo_dataset_free(&train);
    elbo_dataset_free(&test);
}

TEST(hvae_bad_hyperparameters_are_clear_errors) {
    for (int i = 0; i < 5; i++) {
        elbo_hvae_config c;
        elbo_hvae_config_init(&c);
        const char *want = "";
        switch (i) {
        case 0: c.layers = 0; want = "layers"; break;
        case 1: c.layers = ELBO_HVAE_MAX_LAYERS + 1; want = "layers"; break;
        case 2: c.z[1] = 0; want = "layer 2"; break;
        case 3: c.obj.beta = -1; want = "beta"; break;
        default: c.obj.samples = 0; want = "samples"; break;
        }
        elbo_model *m = (elbo_model *)1;
        CHECK(elbo_hvae_model_new(&c, 0, &m) == ELBO_ERR_ARG && m == NULL);
        CHECK_MSG(strstr(elbo_last_error(), want), "case %d: \"%s\" lacks \"%s\"", i,
                  elbo_last_error(), want);
    }
    elbo_model *m = NULL;
    CHECK(elbo_model_new("hvae", "{\"layers\":3,\"z\":[8,4]}", 0, &m) == ELBO_ERR_ARG && !m);
    CHECK(strstr(elbo_last_error(), "\"z\""));
}

TEST(hvae_step_no_alloc) {
    elbo_hvae_config c;
    elbo_hvae_config_init(&c);
    c.layers = 3;
    c.z[0] = 8;
    c.z[1] = c.z[2] = 4;
    c.n_hidden = 1;
    c.hidden[0] = 32;
    c.obj.samples = 2;
    c.obj.logvar_min = -6;
    for (int e = 0; e < 3; e++) {
        c.obj.estimator = (elbo_vae_estimator)e;
        elbo_model *m = NULL;
        CHECK(elbo_hvae_model_new(&c, 2, &m) == ELBO_OK);
        elbo_optim_params op;
        elbo_optim_params_init(&op, ELBO_OPT_ADAM);
        elbo_optim *opt = elbo_optim_new(m->ps, &op);
        elbo_ctx *ctx = elbo_ctx_new(0);
        static float x[16 * 784];
        for (int i = 0; i < 16 * 784; i++) x[i] = (float)((i * 37) % 2);
        elbo_rng rng;
        elbo_rng_init(&rng, 1);
        int ok = opt && ctx;
        malloc_count_result r;
        memset(&r, 0, sizeof r);
        for (int s = 0; ok && s < 8; s++) {
            if (s == 3) malloc_count_start();
            elbo_ctx_reset(ctx);
            elbo_paramset_zero_grad(m->ps);
            double extra[3];
            elbo_tensor *loss = m->loss(ctx, m, x, NULL, 16, &rng, extra);
            ok = loss && elbo_backward(ctx, loss) == ELBO_OK && elbo_optim_step(opt, 1e-3f) == ELBO_OK;
        }
        malloc_count_stop(&r);
        elbo_ctx_free(ctx);
        elbo_optim_free(opt);
        elbo_model_free(m);
        CHECK_MSG(ok, "%s", elbo_last_error());
        CHECK_MSG(r.calls[0] == 0 && r.calls[1] == 0, "estimator %d: %ld + %ld allocator calls, the first %s%s",
                  e, r.calls[0], r.calls[1], r.first[0], r.first[1]);
    }
}
