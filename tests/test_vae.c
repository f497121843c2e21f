/* The VAE family (src/models/vae.c) against cases with known answers:
 * - a model with a 1-D latent whose log p(x) and exact ELBO are quadratures, recomputed in
 *   double from the model's weights: E[IWAE_1] = ELBO, ELBO <= IWAE_k <= log p(x), IWAE_k
 *   rises with k and closes the gap;
 * - estimators A, B and iwae against the same exact ELBO; beta, warm-up and free bits;
 * - pathwise (reparameterisation) gradients of each estimator against finite differences;
 * - a short training run that must improve the test ELBO by a stated margin;
 * - bad hyper-parameters. */
#include "test.h"
#include "malloc_count.h"
#include "tmpdir.h"
#include "vae_testlib.h"

#include "elbo/train.h"

#include <stdlib.h>
#include <string.h>

/* A VAE on 2x2 images (unbinarized) with one hidden layer of `hidden` tanh units. */
static elbo_vae_config tiny_config(int hidden, int z) {
    elbo_vae_config c;
    elbo_vae_config_init(&c);
    c.c = 1;
    c.h = c.w = 2;
    c.n_hidden = 1;
    c.hidden[0] = hidden;
    c.z = z;
    c.act = ELBO_ACT_TANH;
    c.obj.binarize = ELBO_BINARIZE_NONE;
    return c;
}

/* ---- the 1-D latent model: x (4 binary pixels), z (1), tanh MLPs of width 8 ---------------- */
static elbo_model *tiny_model(elbo_vae_estimator est, int samples, uint64_t seed) {
    elbo_vae_config c = tiny_config(8, 1);
    c.obj.estimator = est;
    c.obj.samples = samples;
    elbo_model *m = NULL;
    return elbo_vae_model_new(&c, seed, &m) == ELBO_OK ? m : NULL;
}

/* y (out) = W (out, in) x + b, from the named parameters, in double. */
static void dense(const elbo_paramset *ps, const char *name, const double *x, int in, int out,
                  double *y) {
    char wn[64], bn[64];
    snprintf(wn, sizeof wn, "%s.weight", name);
    snprintf(bn, sizeof bn, "%s.bias", name);
    const elbo_tensor *w = elbo_paramset_find(ps, wn), *b = elbo_paramset_find(ps, bn);
    for (int o = 0; o < out; o++) {
        double s = b->data[o];
        for (int i = 0; i < in; i++) s += (double)w->data[o * in + i] * x[i];
        y[o] = s;
    }
}

/* The reference model in double: q(z|x) = N(mu, e^logvar); log p(x|z) for binary x. */
static void ref_encode(const elbo_paramset *ps, const float *x, double *mu, double *logvar) {
    double xin[4], h[8], o[2];
    for (int i = 0; i < 4; i++) xin[i] = x[i];
    dense(ps, "enc.0", xin, 4, 8, h);
    for (int i = 0; i < 8; i++) h[i] = tanh(h[i]);
    dense(ps, "enc.2", h, 8, 2, o);
    *mu = o[0];
    *logvar = o[1];
}

static double ref_log_px_given_z(const elbo_paramset *ps, const float *x, double z) {
    double h[8], l[4], s = 0;
    dense(ps, "dec.0", &z, 1, 8, h);
    for (int i = 0; i < 8; i++) h[i] = tanh(h[i]);
    dense(ps, "dec.2", h, 8, 4, l);
    for (int i = 0; i < 4; i++) /* x l - log(1 + e^l) */
        s += x[i] * l[i] - (l[i] > 0 ? l[i] + log1p(exp(-l[i])) : log1p(exp(l[i])));
    return s;
}

static double log_normal(double z, double mu, double var) {
    return -0.5 * (log(2 * M_PI * var) + (z - mu) * (z - mu) / var);
}

/* log p(x) = log int p(x|z) N(z; 0, 1) dz and the exact ELBO = int q(z|x) log p(x|z) dz -
 * KL(q || p), by the midpoint rule on z in [-12, 12] with step 1e-3 (the integrands are
 * smooth and their tails beyond |z| = 12 below e^-70). */
static void quadrature(const elbo_paramset *ps, const float *x, double *log_px, double *elbo) {
    double mu, logvar;
    ref_encode(ps, x, &mu, &logvar);
    const double var = exp(logvar), h = 1e-3;
    double mx = -INFINITY, s = 0, eq = 0;
    for (double z = -12 + h / 2; z < 12; z += h) {
        double lpx = ref_log_px_given_z(ps, x, z), a = lpx + log_normal(z, 0, 1);
        if (a > mx) {
            s = s * exp(mx - a) + 1;
            mx = a;
        } else {
            s += exp(a - mx);
        }
        eq += exp(log_normal(z, mu, var)) * lpx * h;
    }
    *log_px = mx + log(s * h);
    *elbo = eq - 0.5 * (mu * mu + var - 1 - logvar);
}




static const float X1[4] = {1, 0, 1, 1};

TEST(vae_quadrature_bounds_elbo_iwae_log_px) {
    elbo_model *m = tiny_model(ELBO_SGVB_B, 1, 7);
    CHECK(m);
    double log_px, elbo;
    quadrature(m->ps, X1, &log_px, &elbo);
    CHECK(elbo < log_px - 0.05); /* an untrained q: a clear gap for IWAE to close */
    /* E[IWAE_1] = E_q[log w] = ELBO; the eval's ELBO (closed-form KL, MC recon) too */
    estimate i1 = eval_bound(m, X1, 1, 3, 4000, 1, NULL), e1 = eval_bound(m, X1, 1, 0, 4000, 2, NULL);
    CHECK_NEAR(i1.mean, elbo, 4 * i1.se);
    CHECK_NEAR(e1.mean, elbo, 4 * e1.se);
    /* ELBO <= IWAE_k <= log p(x), rising with k, the gap closed to under 2% by k = 1000
     * (each figure a mean of R runs, compared within 4 standard errors) */
    const int64_t ks[5] = {3, 10, 30, 100, 1000};
    const int Rs[5] = {3000, 2000, 1000, 400, 100};
    estimate prev = i1;
    for (int i = 0; i < 5; i++) {
        estimate e = eval_bound(m, X1, ks[i], 3, Rs[i], 10 + i, NULL);
        CHECK_MSG(e.mean > prev.mean + 2 * sqrt(e.se * e.se + prev.se * prev.se) || ks[i] >= 100,
                  "IWAE_%lld = %.5f (se %.5f) does not rise above %.5f (se %.5f)",
                  (long long)ks[i], e.mean, e.se, prev.mean, prev.se);
        CHECK_MSG(e.mean >= elbo - 4 * e.se && e.mean <= log_px + 4 * e.se,
                  "IWAE_%lld = %.5f (se %.5f) outside [ELBO %.5f, log p(x) %.5f]",
                  (long long)ks[i], e.mean, e.se, elbo, log_px);
        prev = e;
    }
    CHECK_MSG(log_px - prev.mean < 0.02 * (log_px - elbo) + 4 * prev.se,
              "IWAE_1000 = %.5f leaves %.5f of the gap %.5f", prev.mean, log_px - prev.mean,
              log_px - elbo);
    elbo_model_free(m);
}


TEST(vae_estimators_a_b_iwae_agree_with_exact_elbo) {
    /* With L = 20000 samples, SGVB A and B are each within 4 standard errors of the exact
     * -ELBO (B's only noise is its reconstruction term); iwae with k samples is -IWAE_k of
     * one draw, below -ELBO. The standard error of A: sd(log w) / sqrt(L), sd from IWAE_1. */
    const int L = 20000;
    elbo_model *a = tiny_model(ELBO_SGVB_A, L, 7), *b = tiny_model(ELBO_SGVB_B, L, 7),
               *iw = tiny_model(ELBO_IWAE, 1000, 7);
    CHECK(a && b && iw);
    double log_px, elbo;
    quadrature(a->ps, X1, &log_px, &elbo);
    estimate i1 = eval_bound(a, X1, 1, 3, 2000, 3, NULL);
    const double sd = i1.se * sqrt(2000.0), se = sd / sqrt((double)L);
    double ea[3], eb[3];
    CHECK_NEAR(loss_at(a, X1, 1, 4, ea), -elbo, 4 * se);
    CHECK_NEAR(loss_at(b, X1, 1, 4, eb), -elbo, 4 * se);
    CHECK_NEAR(eb[0] + eb[1], -elbo, 4 * se); /* extras: recon + closed-form kl */
    double li = loss_at(iw, X1, 1, 5, NULL);
    CHECK(li < -elbo && li > -log_px - 0.05);
    /* iwae with k = 1 is SGVB A with L = 1: the same draws give the same value */
    elbo_model *a1 = tiny_model(ELBO_SGVB_A, 1, 7), *i1m = tiny_model(ELBO_IWAE, 1, 7);
    CHECK(a1 && i1m);
    CHECK_NEAR(loss_at(a1, X1, 1, 9, NULL), loss_at(i1m, X1, 1, 9, NULL), 1e-4);
    elbo_model_free(a);
    elbo_model_free(b);
    elbo_model_free(iw);
    elbo_model_free(a1);
    elbo_model_free(i1m);
}

TEST(vae_beta_warmup_free_bits) {
    elbo_vae_config c = tiny_config(8, 3);
    const float x[8] = {1, 0, 1, 1, 0, 0, 1, 0};
    double ex[3];
    elbo_model *m = NULL;
    /* beta = 0: the loss is the reconstruction term alone */
    c.obj.beta = 0;
    CHECK(elbo_vae_model_new(&c, 1, &m) == ELBO_OK);
    double l0 = loss_at(m, x, 2, 3, ex);
    CHECK_NEAR(l0, ex[0], 1e-5 * fabs(ex[0]));
    CHECK(ex[2] == 0 && ex[1] > 0);
    elbo_model_free(m);
    /* beta = 4: recon + 4 kl (estimator B: the closed-form KL) */
    c.obj.beta = 4;
    CHECK(elbo_vae_model_new(&c, 1, &m) == ELBO_OK);
    CHECK_NEAR(loss_at(m, x, 2, 3, ex), ex[0] + 4 * ex[1], 1e-5 * fabs(ex[0]));
    elbo_model_free(m);
    /* warm-up over 10 steps: beta_t = beta (t + 1) / 10 until t = 9 */
    c.obj.beta = 2;
    c.obj.kl_warmup = 10;
    CHECK(elbo_vae_model_new(&c, 1, &m) == ELBO_OK);
    const int64_t steps[4] = {0, 4, 9, 500};
    const double want[4] = {0.2, 1.0, 2.0, 2.0};
    for (int i = 0; i < 4; i++) {
        m->step = steps[i];
        double l = loss_at(m, x, 2, 3, ex);
        CHECK_NEAR(ex[2], want[i], 1e-6);
        CHECK_NEAR(l, ex[0] + want[i] * ex[1], 1e-5 * fabs(ex[0]));
    }
    elbo_model_free(m);
    /* free bits lambda = 50 nats per dimension, above every dimension's KL: the KL term is
     * 3 x 50 and gives the encoder's log-variance no gradient */
    c.obj.beta = 1;
    c.obj.kl_warmup = 0;
    c.obj.free_bits = 50;
    CHECK(elbo_vae_model_new(&c, 1, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 3);
    elbo_paramset_zero_grad(m->ps);
    elbo_tensor *loss = m->loss(ctx, m, x, NULL, 2, &rng, ex);
    CHECK(loss && ex[1] < 50);
    CHECK_NEAR(loss->data[0], ex[0] + 150, 1e-4 * fabs(ex[0] + 150));
    CHECK(elbo_backward(ctx, loss) == ELBO_OK);
    /* so every gradient is that of the reconstruction term alone (beta = 0, same draws) */
    const int64_t n = elbo_paramset_numel(m->ps);
    float *g_fb = malloc((size_t)n * sizeof(float));
    CHECK(g_fb);
    memcpy(g_fb, elbo_paramset_grad(m->ps), (size_t)n * sizeof(float));
    elbo_model_free(m);
    c.obj.free_bits = 0;
    c.obj.beta = 0;
    CHECK(elbo_vae_model_new(&c, 1, &m) == ELBO_OK);
    elbo_rng_init(&rng, 3);
    elbo_ctx_reset(ctx);
    elbo_paramset_zero_grad(m->ps);
    loss = m->loss(ctx, m, x, NULL, 2, &rng, ex);
    CHECK(loss && elbo_backward(ctx, loss) == ELBO_OK);
    int same = memcmp(g_fb, elbo_paramset_grad(m->ps), (size_t)n * sizeof(float)) == 0;
    free(g_fb);
    CHECK(same);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}

TEST(vae_pathwise_gradients_match_finite_differences) {
    const float x[8] = {1, 0, 1, 1, 0, 0, 1, 0};
    const elbo_vae_estimator est[3] = {ELBO_SGVB_A, ELBO_SGVB_B, ELBO_IWAE};
    const elbo_likelihood lik[3] = {ELBO_LIK_BERNOULLI, ELBO_LIK_GAUSSIAN, ELBO_LIK_LOGISTIC};
    for (int e = 0; e < 3; e++)
        for (int l = 0; l < 3; l++) {
            elbo_vae_config c = tiny_config(6, 2);
            c.obj.estimator = est[e];
            c.obj.likelihood = lik[l];
            c.obj.samples = 3;
            c.obj.beta = 0.7f;
            elbo_model *m = NULL;
            CHECK(elbo_vae_model_new(&c, 5, &m) == ELBO_OK);
            /* gaussian x in [0, 1]; logistic x on the 8-bit grid in [-1, 1] */
            float xs[8];
            for (int i = 0; i < 8; i++)
                xs[i] = lik[l] == ELBO_LIK_LOGISTIC ? (2.0f * (37 * i % 256) / 255.0f - 1.0f)
                                                    : x[i] * 0.8f + 0.1f * (l == 1);
            char msg[256];
            int ok = fd_check(m, xs, 2, 23, msg, sizeof msg);
            elbo_model_free(m);
            CHECK_MSG(ok, "estimator %s, likelihood %s: %s", elbo_vae_estimator_name(est[e]),
                      elbo_likelihood_name(lik[l]), msg);
        }
}


TEST(vae_training_improves_test_elbo) {
    /* Before training the Bernoulli decoder gives about D log 2 = 543 nats; 400 steps of
     * batch 32 must bring the test negative ELBO under 250 nats (the data's own entropy is
     * 784 H(0.05) = 156 nats plus log 8 for the prototype), with every latent unit counted. */
    elbo_dataset train, test;
    CHECK(prototype_data(&train, 640, 1) && prototype_data(&test, 160, 2));
    elbo_vae_config c;
    elbo_vae_config_init(&c);
    c.hidden[0] = c.hidden[1] = 64;
    c.z = 4;
    c.obj.binarize = ELBO_BINARIZE_STATIC;
    elbo_model *m = NULL;
    CHECK(elbo_vae_model_new(&c, 3, &m) == ELBO_OK);
    double before[8], after[8], again[8];
    CHECK(elbo_evaluate(m, &test, 64, 1, before) == ELBO_OK);
    tmpdir td;
    CHECK(td_make_tag(&td, "vae"));
    elbo_train_params p;
    elbo_train_params_init(&p);
    p.steps = 400;
    p.batch = 32;
    p.out_dir = td.dir;
    p.progress = NULL;
    p.plot = 0;
    p.ckpt_every = 0;
    elbo_train_result r;
    CHECK(elbo_train(m, &train, &p, &r) == ELBO_OK);
    CHECK(elbo_evaluate(m, &test, 64, 1, after) == ELBO_OK);
    CHECK_MSG(before[0] > 500 && after[0] < 250, "test -ELBO %.2f -> %.2f nats", before[0],
              after[0]);
    /* a bound: not below the data entropy ln 8 + 784 H(0.05) = 157.7 nats by more than its
     * sampling error (per-image sd about 18 nats over 160 images: 1.4) */
    const double entropy = log(8.0) - 784 * (0.05 * log(0.05) + 0.95 * log(0.95));
    CHECK_MSG(after[0] > entropy - 6, "test -ELBO %.2f below the entropy %.2f", after[0], entropy);
    CHECK_NEAR(after[0], after[1] + after[2], 1e-6 * after[0]);
    CHECK(after[4] >= 1 && after[4] <= 4);
    /* the checkpoint gives the same figures, bit for bit */
    elbo_model *back = NULL;
    CHECK(elbo_model_load(r.ckpt_path, &back, NULL, NULL) == ELBO_OK);
    CHECK(!strcmp(back->name, "vae") && back->z_dim == 4);
    CHECK(elbo_evaluate(back, &test, 64, 1, again) == ELBO_OK);
    for (int i = 0; i < 5; i++) CHECK(again[i] == after[i]);
    elbo_model_free(back);
    elbo_model_free(m);
    td_remove(&td);
    elbo_dataset_free(&train);
    elbo_dataset_free(&test);
}

TEST(vae_bad_hyperparameters_are_clear_errors) {
    struct {
        const char *what;
        void (*set)(elbo_vae_config *);
    } cases[] = {
        {"beta", NULL}, {"samples", NULL}, {"latent dimension", NULL}, {"free bits", NULL},
        {"divisible by 4", NULL}, {"sigma", NULL},
    };
    for (int i = 0; i < 6; i++) {
        elbo_vae_config c;
        elbo_vae_config_init(&c);
        switch (i) {
        case 0: c.obj.beta = -1; break;
        case 1: c.obj.samples = 0; break;
        case 2: c.z = 0; break;
        case 3: c.obj.estimator = ELBO_IWAE; c.obj.free_bits = 1; break;
        case 4: c.arch = ELBO_VAE_CONV; c.n_hidden = 1; c.h = 30; break;
        default: c.obj.sigma = -0.5f; break;
        }
        elbo_model *m = (elbo_model *)1;
        elbo_clear_error();
        CHECK(elbo_vae_model_new(&c, 0, &m) == ELBO_ERR_ARG && m == NULL);
        CHECK_MSG(strstr(elbo_last_error(), cases[i].what), "case %d: \"%s\" lacks \"%s\"", i,
                  elbo_last_error(), cases[i].what);
    }
    /* and through the registry's JSON */
    elbo_model *m = NULL;
    CHECK(elbo_model_new("vae", "{\"z\":0}", 0, &m) == ELBO_ERR_ARG && !m);
    CHECK(elbo_model_new("vae", "{\"beta\":-2}", 0, &m) == ELBO_ERR_ARG && !m);
    CHECK(elbo_model_new("vae", "{\"estimator\":\"C\"}", 0, &m) == ELBO_ERR_ARG && !m);
    CHECK(strstr(elbo_last_error(), "estimator"));
}

TEST(vae_log_mean_exp_is_stable) {
    const double a[3] = {-1000, -1000, -1000 + log(4.0)};
    CHECK_NEAR(elbo_log_mean_exp(a, 3), -1000 + log(2.0), 1e-12);
    const double b[2] = {800, 800};
    CHECK_NEAR(elbo_log_mean_exp(b, 2), 800, 1e-12);
    const double c[2] = {-INFINITY, -INFINITY};
    CHECK(elbo_log_mean_exp(c, 2) == -INFINITY);
}

/* One training step of every estimator (and the conv architecture) allocates nothing once
 * the arena has grown: loss, backward and Adam over 5 steady-state steps. */
static void step_no_alloc(elbo_vae_arch arch, elbo_vae_estimator est, elbo_likelihood lik) {
    elbo_vae_config c;
    elbo_vae_config_init(&c);
    c.arch = arch;
    c.n_hidden = 1;
    c.hidden[0] = 32;
    c.z = 4;
    c.obj.estimator = est;
    c.obj.likelihood = lik;
    c.obj.samples = 3;
    c.obj.free_bits = est == ELBO_IWAE ? 0 : 0.1f;
    elbo_model *m = NULL;
    CHECK(elbo_vae_model_new(&c, 2, &m) == ELBO_OK);
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    elbo_optim *opt = elbo_optim_new(m->ps, &op);
    elbo_ctx *ctx = elbo_ctx_new(0);
    static float x[16 * 784];
    for (int i = 0; i < 16 * 784; i++) x[i] = (float)((i * 37) % 256) / 255.0f;
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
        m->step = s;
        elbo_tensor *loss = m->loss(ctx, m, x, NULL, 16, &rng, extra);
        ok = loss && elbo_backward(ctx, loss) == ELBO_OK && elbo_optim_step(opt, 1e-3f) == ELBO_OK;
    }
    malloc_count_stop(&r);
    elbo_ctx_free(ctx);
    elbo_optim_free(opt);
    elbo_model_free(m);
    CHECK_MSG(ok, "%s %s: %s", elbo_vae_arch_name(arch), elbo_vae_estimator_name(est), elbo_last_error());
    CHECK_MSG(r.calls[0] == 0 && r.calls[1] == 0, "%s %s: %ld + %ld allocator calls, the first %s%s",
              elbo_vae_arch_name(arch), elbo_vae_estimator_name(est), r.calls[0], r.calls[1],
              r.first[0], r.first[1]);
}

TEST(vae_step_no_alloc) {
    step_no_alloc(ELBO_VAE_MLP, ELBO_SGVB_A, ELBO_LIK_BERNOULLI);
    step_no_alloc(ELBO_VAE_MLP, ELBO_SGVB_B, ELBO_LIK_GAUSSIAN);
    step_no_alloc(ELBO_VAE_MLP, ELBO_IWAE, ELBO_LIK_LOGISTIC);
    step_no_alloc(ELBO_VAE_CONV, ELBO_SGVB_B, ELBO_LIK_BERNOULLI);
}
