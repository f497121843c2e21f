/* The classifier of classifier guidance (Dhariwal & Nichol 2021) behind the elbo_model
 * interface: see include/elbo/classifier.h. A noisy classifier learns p_phi(y | x_t, t) on
 * x_t = alpha(t) x + sigma(t) eps of the model's process; guidance (src/sample/guidance.c)
 * takes its gradient grad_x log p_phi(y | x_t, t) through elbo_classifier_grad. This file is
 * the network, the loss on the tape and the bookkeeping. */
#include "internal.h"

#include "elbo/classifier.h"
#include "elbo/train.h"
#include "io/json.h"
#include "models/vae_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    elbo_model base;
    elbo_classifier_config cfg;
    elbo_paramset *ps;
    elbo_nn_conv2d conv_in;
    elbo_nn_time_embedding temb; /* noisy only */
    elbo_nn_resblock res[ELBO_CLASSIFIER_MAX_LEVELS];
    elbo_nn_group_norm norm_out;
    elbo_nn_linear head;
    int64_t D; /* c h w */
} classifier_model;

/* The network sees the time as the diffusion model's does for a fixed schedule: 1000 t in
 * its sinusoidal embedding (DDPM's step range; TIME_SCALE of src/models/diffusion.c). */
#define TIME_SCALE 1000.0

void elbo_classifier_config_init(elbo_classifier_config *c) {
    memset(c, 0, sizeof *c);
    c->c = 1;
    c->h = 28;
    c->w = 28;
    c->classes = 10;
    c->n_levels = 3;
    c->channels[0] = 32;
    c->channels[1] = 64;
    c->channels[2] = 128;
    c->groups = 8;
    c->temb = 128;
    c->noisy = 1;
    elbo_process_init(&c->process);
    c->dropout = 0.0f;
}

/* The network f(x, t) (see the header):
 *   h = conv_in(x);  h = pool(res_l(h, temb(1000 t))) for l < L - 1, h = res_{L-1}(h, temb);
 *   features = mean_{H,W} SiLU(GroupNorm(h)) (B, F);  logits = head(features) (B, K).
 * x (B, c, h, w), t[0..B) the times (ignored when clean). *features gets the (B, F) tensor
 * unless features is NULL. */
static elbo_tensor *net_forward(elbo_ctx *ctx, const classifier_model *cm, elbo_tensor *x,
                                const double *t, elbo_tensor **features) {
    const elbo_classifier_config *c = &cm->cfg;
    const int64_t B = x ? x->shape[0] : 0;
    elbo_tensor *temb = NULL;
    if (c->noisy) {
        float *tf = elbo_ctx_alloc(ctx, (size_t)(B ? B : 1) * sizeof *tf);
        if (!tf) return NULL;
        for (int64_t b = 0; b < B; b++) tf[b] = (float)(TIME_SCALE * t[b]);
        temb = elbo_nn_time_embedding_forward(ctx, &cm->temb, tf, B);
        if (!temb) return NULL;
    }
    elbo_tensor *h = elbo_nn_conv2d_forward(ctx, &cm->conv_in, x);
    for (int l = 0; l < c->n_levels; l++) {
        h = elbo_nn_resblock_forward(ctx, &cm->res[l], h, temb);
        if (l + 1 < c->n_levels) h = elbo_avg_pool2d(ctx, h, 2, 2);
    }
    const elbo_nn_group_norm *g = &cm->norm_out;
    h = elbo_group_norm_silu(ctx, h, g->groups, g->weight, g->bias, g->eps);
    const int axes[2] = {2, 3};
    elbo_tensor *f = elbo_mean_axes(ctx, h, 2, axes, 0); /* (B, F) */
    if (features) *features = f;
    return elbo_nn_linear_forward(ctx, &cm->head, f);
}

/* labels[0..B) must be given and lie in [0, K). */
static elbo_status check_labels(const classifier_model *cm, const int32_t *labels, int64_t B) {
    if (!labels) return elbo_error(ELBO_ERR_ARG, "classifier: needs labels (a labelled dataset)");
    for (int64_t b = 0; b < B; b++)
        if (labels[b] < 0 || labels[b] >= cm->cfg.classes)
            return elbo_error(ELBO_ERR_ARG, "classifier: label %d of example %lld not in [0, %d)",
                              labels[b], (long long)b, cm->cfg.classes);
    return ELBO_OK;
}

/* The network's input for one batch of x (B, D): x itself (clean), or x_t = alpha(t) x +
 * sigma(t) eps with t from low-discrepancy times in (0, 1] (VDM appendix) and eps ~ N(0, I),
 * drawn from rng in that order (noisy). *t gets the times (NULL when clean). */
static elbo_tensor *model_input(elbo_ctx *ctx, const classifier_model *cm, const float *x,
                                int64_t B, elbo_rng *rng, double **t) {
    const elbo_classifier_config *c = &cm->cfg;
    const int64_t D = cm->D;
    *t = NULL;
    int64_t shape[4] = {B, c->c, c->h, c->w};
    if (!c->noisy) return elbo_tensor_wrap(ctx, (float *)x, 4, shape);
    elbo_tensor *x_t = elbo_tensor_new(ctx, 4, shape);
    *t = elbo_ctx_alloc(ctx, (size_t)B * sizeof **t);
    if (!x_t || !*t) return NULL;
    elbo_diffusion_sample_times(rng, (int)B, 1, 0, *t);
    elbo_rng_normal(rng, x_t->data, (size_t)(B * D), 0.0f, 1.0f); /* eps, then x_t in place */
    for (int64_t b = 0; b < B; b++) {
        elbo_noise_level lv;
        if (elbo_process_at(&c->process, (*t)[b], &lv) != ELBO_OK) return NULL;
        float *row = x_t->data + b * D;
        for (int64_t i = 0; i < D; i++)
            row[i] = (float)(lv.alpha * x[b * D + i] + lv.sigma * row[i]);
    }
    return x_t;
}

/* 1 when argmax_k logits[k] (the first of ties) is y. */
static int correct(const float *logits, int K, int32_t y) {
    int best = 0;
    for (int k = 1; k < K; k++)
        if (logits[k] > logits[best]) best = k;
    return best == y;
}

/* loss = (1/B) sum_b -log softmax(f(x_b, t_b))[y_b] (cross-entropy); extra[0] = the batch's
 * accuracy. */
static elbo_tensor *classifier_loss(elbo_ctx *ctx, elbo_model *m, const float *x,
                                    const int32_t *labels, int64_t B, elbo_rng *rng,
                                    double *extra) {
    classifier_model *cm = (classifier_model *)m;
    if (check_labels(cm, labels, B) != ELBO_OK) return NULL;
    double *t;
    elbo_tensor *in = model_input(ctx, cm, x, B, rng, &t);
    elbo_tensor *logits = in ? net_forward(ctx, cm, in, t, NULL) : NULL;
    elbo_tensor *loss = elbo_cross_entropy(ctx, logits, labels, ELBO_REDUCE_MEAN);
    if (loss && extra) {
        const int K = cm->cfg.classes;
        int64_t right = 0;
        for (int64_t b = 0; b < B; b++) right += correct(logits->data + b * K, K, labels[b]);
        extra[0] = (double)right / (double)B;
    }
    return loss;
}

/* sums += (sum_b -log p(y_b | x_b), sum_b 1[argmax f(x_b) = y_b]), noisy at fresh times. */
static elbo_status classifier_eval(elbo_ctx *ctx, elbo_model *m, const float *x,
                                   const int32_t *labels, int64_t B, elbo_rng *rng, double *sums) {
    classifier_model *cm = (classifier_model *)m;
    elbo_status st = check_labels(cm, labels, B);
    if (st) return st;
    int grad = elbo_ctx_set_grad(ctx, 0), training = elbo_ctx_set_training(ctx, 0);
    double *t;
    elbo_tensor *in = model_input(ctx, cm, x, B, rng, &t);
    elbo_tensor *logits = in ? net_forward(ctx, cm, in, t, NULL) : NULL;
    elbo_tensor *xent = elbo_cross_entropy(ctx, logits, labels, ELBO_REDUCE_NONE); /* (B) */
    elbo_ctx_set_grad(ctx, grad);
    elbo_ctx_set_training(ctx, training);
    if (!xent) return elbo_last_status();
    const int K = cm->cfg.classes;
    for (int64_t b = 0; b < B; b++) {
        sums[0] += xent->data[b];
        sums[1] += correct(logits->data + b * K, K, labels[b]);
    }
    return ELBO_OK;
}

static void classifier_free(elbo_model *m) {
    if (!m) return;
    classifier_model *cm = (classifier_model *)m;
    elbo_paramset_free(cm->ps);
    free(m->config);
    free(cm);
}

const elbo_classifier_config *elbo_classifier_config_of(const elbo_model *m) {
    return m && m->free == classifier_free ? &((const classifier_model *)m)->cfg : NULL;
}

int elbo_classifier_feature_dim(const elbo_model *m) {
    const elbo_classifier_config *c = elbo_classifier_config_of(m);
    return c ? c->channels[c->n_levels - 1] : 0;
}

/* The B examples of n values must be whole examples of the model's D. */
static elbo_status check_batch(const classifier_model *cm, const char *what, int64_t B, int64_t n) {
    if (B < 1 || n != B * cm->D)
        return elbo_error(ELBO_ERR_ARG, "classifier %s: %lld values are not %lld examples of %lld",
                          what, (long long)n, (long long)B, (long long)cm->D);
    return ELBO_OK;
}

/* The batch's times: lvl->t for every example, or 0 (lvl NULL). */
static double *level_times(elbo_ctx *ctx, int64_t B, const elbo_noise_level *lvl) {
    double *t = elbo_ctx_alloc(ctx, (size_t)B * sizeof *t);
    if (t)
        for (int64_t b = 0; b < B; b++) t[b] = lvl ? lvl->t : 0.0;
    return t;
}

elbo_status elbo_classifier_forward(elbo_ctx *ctx, elbo_model *m, const float *x, int64_t B,
                                    const elbo_noise_level *lvl, float *logits, float *features) {
    if (!elbo_classifier_config_of(m))
        return elbo_error(ELBO_ERR_ARG, "classifier forward: not a classifier model");
    classifier_model *cm = (classifier_model *)m;
    const elbo_classifier_config *c = &cm->cfg;
    elbo_status st = check_batch(cm, "forward", B, B * cm->D);
    if (st) return st;
    elbo_ctx_reset(ctx);
    int grad = elbo_ctx_set_grad(ctx, 0), training = elbo_ctx_set_training(ctx, 0);
    int64_t shape[4] = {B, c->c, c->h, c->w};
    elbo_tensor *xin = elbo_tensor_wrap(ctx, (float *)x, 4, shape), *f = NULL;
    double *t = level_times(ctx, B, lvl);
    elbo_tensor *out = xin && t ? net_forward(ctx, cm, xin, t, &f) : NULL;
    elbo_ctx_set_grad(ctx, grad);
    elbo_ctx_set_training(ctx, training);
    if (!out) return elbo_last_status();
    if (logits) memcpy(logits, out->data, (size_t)out->numel * sizeof *logits);
    if (features) memcpy(features, f->data, (size_t)f->numel * sizeof *features);
    return ELBO_OK;
}

/* Parameters in or out of the tape: off while the gradient wants d / d x_t only, so that
 * backward computes no weight gradients (as the diffusion model's VJP). */
static void params_require_grad(classifier_model *cm, int on) {
    for (int i = 0; i < elbo_paramset_count(cm->ps); i++)
        elbo_paramset_get(cm->ps, i)->requires_grad = on;
}

/* grad = d/dx_t sum_b log p(y_b | x_t,b, t): the examples are independent (GroupNorm is per
 * example), so row b of it is d/dx_t,b log p(y_b | x_t,b, t). One backward pass seeded with
 * -1 on the per-example cross-entropy (B). */
elbo_status elbo_classifier_grad(void *state, const float *x_t, int64_t n,
                                 const elbo_noise_level *lvl, const int32_t *labels, float *grad,
                                 double *log_prob) {
    elbo_classifier_grad_state *s = state;
    if (!s || !elbo_classifier_config_of(s->model))
        return elbo_error(ELBO_ERR_ARG, "classifier grad: not a classifier model");
    classifier_model *cm = (classifier_model *)s->model;
    const elbo_classifier_config *c = &cm->cfg;
    const int64_t B = s->batch;
    elbo_status st = check_batch(cm, "grad", B, n);
    if (st == ELBO_OK) st = check_labels(cm, labels, B);
    if (st) return st;
    elbo_ctx *ctx = s->ctx;
    elbo_ctx_reset(ctx);
    int grad_on = elbo_ctx_set_grad(ctx, 1), training = elbo_ctx_set_training(ctx, 0);
    params_require_grad(cm, 0);
    elbo_tensor *xt = elbo_tensor_new4(ctx, B, c->c, c->h, c->w), *xent = NULL;
    double *t = level_times(ctx, B, lvl);
    float *seed = elbo_ctx_alloc(ctx, (size_t)B * sizeof *seed);
    if (!xt || !t || !seed)
        st = elbo_last_status();
    else {
        memcpy(xt->data, x_t, (size_t)n * sizeof(float));
        elbo_tensor_requires_grad(xt, 1);
        xent = elbo_cross_entropy(ctx, net_forward(ctx, cm, xt, t, NULL), labels,
                                  ELBO_REDUCE_NONE); /* -log p(y_b | x_t,b) (B) */
        if (!xent) st = elbo_last_status();
    }
    if (st == ELBO_OK) {
        for (int64_t b = 0; b < B; b++) seed[b] = -1.0f;
        st = elbo_backward_with(ctx, xent, seed);
    }
    params_require_grad(cm, 1);
    elbo_ctx_set_grad(ctx, grad_on);
    elbo_ctx_set_training(ctx, training);
    if (st != ELBO_OK) return st;
    for (int64_t i = 0; i < n; i++) grad[i] = xt->grad ? xt->grad[i] : 0.0f;
    if (log_prob)
        for (int64_t b = 0; b < B; b++) log_prob[b] = -(double)xent->data[b];
    return ELBO_OK;
}

/* The configuration as JSON (the checkpoint's "config"); every member, so a load rebuilds
 * the same model. */
static char *config_json(const elbo_classifier_config *c) {
    char ch[64] = "";
    size_t k = 0;
    for (int l = 0; l < c->n_levels; l++)
        k += (size_t)snprintf(ch + k, sizeof ch - k, "%s%d", l ? "," : "", c->channels[l]);
    char proc[512];
    elbo__process_json(&c->process, proc, sizeof proc);
    char *s = malloc(1024);
    if (!s) return NULL;
    snprintf(s, 1024,
             "{\"c\":%lld,\"h\":%lld,\"w\":%lld,\"classes\":%d,\"channels\":[%s],\"groups\":%d,"
             "\"temb\":%d,\"noisy\":%d,\"dropout\":%.9g,%s}",
             (long long)c->c, (long long)c->h, (long long)c->w, c->classes, ch, c->groups, c->temb,
             c->noisy, (double)c->dropout, proc);
    return s;
}

static elbo_status check_config(const elbo_classifier_config *c) {
    if (c->c < 1 || c->h < 1 || c->w < 1 || c->c * c->h * c->w > (1 << 24))
        return elbo_error(ELBO_ERR_ARG, "classifier: bad image shape (%lld, %lld, %lld)",
                          (long long)c->c, (long long)c->h, (long long)c->w);
    if (c->classes < 2 || c->classes > 100000)
        return elbo_error(ELBO_ERR_ARG, "classifier: classes %d not in [2, 100000]", c->classes);
    if (c->n_levels < 1 || c->n_levels > ELBO_CLASSIFIER_MAX_LEVELS)
        return elbo_error(ELBO_ERR_ARG, "classifier: channels needs 1..%d levels, got %d",
                          ELBO_CLASSIFIER_MAX_LEVELS, c->n_levels);
    for (int l = 0; l < c->n_levels; l++)
        if (c->channels[l] < 1 || c->channels[l] > 65536)
            return elbo_error(ELBO_ERR_ARG, "classifier: channels[%d] = %d not in 1..65536", l,
                              c->channels[l]);
    if ((c->h >> (c->n_levels - 1)) < 1 || (c->w >> (c->n_levels - 1)) < 1)
        return elbo_error(ELBO_ERR_ARG,
                          "classifier: channels: %d levels halve %lldx%lld images below 1x1",
                          c->n_levels, (long long)c->h, (long long)c->w);
    if (c->groups < 1)
        return elbo_error(ELBO_ERR_ARG, "classifier: groups %d must be >= 1", c->groups);
    for (int l = 0; l < c->n_levels; l++)
        if (c->channels[l] % c->groups)
            return elbo_error(ELBO_ERR_ARG,
                              "classifier: groups %d does not divide channels[%d] = %d", c->groups,
                              l, c->channels[l]);
    if (c->noisy != 0 && c->noisy != 1)
        return elbo_error(ELBO_ERR_ARG, "classifier: noisy must be 0 or 1, got %d", c->noisy);
    if (c->noisy && (c->temb < 2 || c->temb > 65536 || c->temb % 2))
        return elbo_error(ELBO_ERR_ARG,
                          "classifier: temb %d must be even and in 2..65536 for a noisy classifier",
                          c->temb);
    if (!c->noisy && c->temb != 0)
        return elbo_error(ELBO_ERR_ARG,
                          "classifier: temb %d must be 0 for a clean classifier (noisy 0): it has "
                          "no time input",
                          c->temb);
    if (!(c->dropout >= 0 && c->dropout < 1))
        return elbo_error(ELBO_ERR_ARG, "classifier: dropout %g not in [0, 1)", (double)c->dropout);
    if (c->process.schedule == ELBO_SCHEDULE_LEARNED)
        return elbo_error(ELBO_ERR_ARG,
                          "classifier: schedule learned is not supported: a classifier is trained "
                          "on a fixed process (use the diffusion model's schedule, e.g. loglinear "
                          "with its log_snr_min and log_snr_max)");
    elbo_status st = elbo_process_check(&c->process);
    if (st) return elbo_error(st, "classifier: %s", elbo_last_error());
    return ELBO_OK;
}

elbo_status elbo_classifier_model_new(const elbo_classifier_config *cfg, uint64_t seed,
                                      elbo_model **out) {
    *out = NULL;
    elbo_status st = check_config(cfg);
    if (st) return st;
    classifier_model *cm = calloc(1, sizeof *cm);
    if (!cm) return elbo_error(ELBO_ERR_NOMEM, "classifier: out of memory");
    cm->cfg = *cfg;
    const elbo_classifier_config *c = &cm->cfg;
    cm->D = c->c * c->h * c->w;
    cm->ps = elbo_paramset_new();
    if (!cm->ps) st = elbo_last_status();
    /* the module tree: conv_in, temb.0, temb.2, down.{l}.res, norm_out, head */
    if (st == ELBO_OK)
        st = elbo_nn_conv2d_init(&cm->conv_in, cm->ps, "conv_in", (int)c->c, c->channels[0], 3, 1,
                                 1, 1);
    if (st == ELBO_OK && c->noisy)
        st = elbo_nn_time_embedding_init(&cm->temb, cm->ps, "temb", c->temb, c->temb);
    for (int l = 0; l < c->n_levels && st == ELBO_OK; l++) {
        char name[64];
        snprintf(name, sizeof name, "down.%d.res", l);
        st = elbo_nn_resblock_init(&cm->res[l], cm->ps, name, c->channels[l ? l - 1 : 0],
                                   c->channels[l], c->noisy ? c->temb : 0, c->groups, c->dropout);
    }
    const int F = c->channels[c->n_levels - 1];
    if (st == ELBO_OK)
        st = elbo_nn_group_norm_init(&cm->norm_out, cm->ps, "norm_out", c->groups, F);
    if (st == ELBO_OK) st = elbo_nn_linear_init(&cm->head, cm->ps, "head", F, c->classes, 1);
    if (st == ELBO_OK) st = elbo_paramset_finalize(cm->ps, seed);
    char *config = st == ELBO_OK ? config_json(c) : NULL;
    if (st == ELBO_OK && !config) st = elbo_error(ELBO_ERR_NOMEM, "classifier: out of memory");
    if (st != ELBO_OK) {
        classifier_free(&cm->base); /* what was built so far (the rest is NULL) */
        return st;
    }
    elbo_model *m = &cm->base;
    m->name = "classifier";
    m->config = config;
    m->ps = cm->ps;
    m->c = c->c;
    m->h = c->h;
    m->w = c->w;
    m->transform = ELBO_PIXELS_SCALE11; /* the diffusion model's scale of 8-bit images */
    m->n_extra = 1;
    m->extra_names[0] = "accuracy";
    m->n_eval = 2;
    m->eval_names[0] = "xent";
    m->eval_names[1] = "accuracy";
    m->loss = classifier_loss;
    m->eval = classifier_eval;
    m->sample = NULL;
    m->free = classifier_free;
    m->impl = cm;
    *out = m;
    return ELBO_OK;
}

/* ---- from a checkpoint's configuration ------------------------------------------------ */
elbo_status elbo__classifier_from_json(const elbo__json *o, uint64_t seed, elbo_model **out) {
    elbo_classifier_config c;
    elbo_classifier_config_init(&c);
    int64_t v;
    elbo_status st = ELBO_OK;
#define INT_FIELD(key, lo, hi, dst)                                                                \
    do {                                                                                           \
        v = (dst);                                                                                 \
        if (st == ELBO_OK && (st = elbo__cfg_int(o, key, lo, hi, &v)) == ELBO_OK) (dst) = (int)v;  \
    } while (0)
    if (st == ELBO_OK) st = elbo__cfg_int(o, "c", 1, 4096, &c.c);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "h", 1, 4096, &c.h);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "w", 1, 4096, &c.w);
    INT_FIELD("classes", 2, 100000, c.classes);
    INT_FIELD("groups", 1, 65536, c.groups);
    INT_FIELD("noisy", 0, 1, c.noisy);
    c.temb = c.noisy ? c.temb : 0; /* the default of a clean classifier */
    INT_FIELD("temb", 0, 65536, c.temb);
#undef INT_FIELD
    if (st == ELBO_OK) st = elbo__cfg_float(o, "dropout", &c.dropout);
    int n_ch = c.n_levels;
    if (st == ELBO_OK)
        st = elbo__cfg_int_list(o, "channels", ELBO_CLASSIFIER_MAX_LEVELS, c.channels, &n_ch);
    if (st != ELBO_OK) return st;
    if (n_ch < 1)
        return elbo_error(ELBO_ERR_ARG, "config: \"channels\" needs 1..%d entries, got none",
                          ELBO_CLASSIFIER_MAX_LEVELS);
    c.n_levels = n_ch;
    if ((st = elbo__cfg_process(o, &c.process)) != ELBO_OK) return st;
    return elbo_classifier_model_new(&c, seed, out);
}
