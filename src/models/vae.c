/* The model "vae": Kingma & Welling (2014), "Auto-Encoding Variational Bayes", behind the
 * elbo_model interface, with the estimators and regularisers of include/elbo/vae.h.
 *
 * Shapes: x (B, D), D = c h w; mu, logvar (B, Z); L samples of z per example as rows b L + l
 * of (B L, Z); the decoder's output (B L, m D), m = 2 when it also gives a log-variance or
 * log-scale per pixel, else 1. */
#include "internal.h"
#include "models/vae_internal.h"

#include "elbo/train.h"
#include "io/json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ------------------------------------------------------------------------------ */
static const char *LIK_NAMES[] = {"bernoulli", "gaussian", "logistic"};
static const char *EST_NAMES[] = {"A", "B", "iwae"};
static const char *ARCH_NAMES[] = {"mlp", "conv"};

static elbo_status parse_name(const char *what, const char **names, int n, const char *s,
                              int *out) {
    for (int i = 0; i < n; i++)
        if (s && !strcmp(s, names[i])) {
            *out = i;
            return ELBO_OK;
        }
    char list[96] = "";
    for (int i = 0; i < n; i++) {
        strncat(list, names[i], sizeof list - strlen(list) - 1);
        if (i + 1 < n) strncat(list, i + 2 < n ? ", " : " or ", sizeof list - strlen(list) - 1);
    }
    return elbo_error(ELBO_ERR_ARG, "%s: expected %s, got \"%s\"", what, list, s ? s : "(null)");
}

elbo_status elbo_likelihood_parse(const char *s, elbo_likelihood *out) {
    int v = 0;
    elbo_status st = parse_name("likelihood", LIK_NAMES, 3, s, &v);
    if (st == ELBO_OK) *out = (elbo_likelihood)v;
    return st;
}
const char *elbo_likelihood_name(elbo_likelihood l) { return (unsigned)l < 3 ? LIK_NAMES[l] : "?"; }
elbo_status elbo_vae_estimator_parse(const char *s, elbo_vae_estimator *out) {
    int v = 0;
    elbo_status st = parse_name("estimator", EST_NAMES, 3, s, &v);
    if (st == ELBO_OK) *out = (elbo_vae_estimator)v;
    return st;
}
const char *elbo_vae_estimator_name(elbo_vae_estimator e) {
    return (unsigned)e < 3 ? EST_NAMES[e] : "?";
}
elbo_status elbo_vae_arch_parse(const char *s, elbo_vae_arch *out) {
    int v = 0;
    elbo_status st = parse_name("arch", ARCH_NAMES, 2, s, &v);
    if (st == ELBO_OK) *out = (elbo_vae_arch)v;
    return st;
}
const char *elbo_vae_arch_name(elbo_vae_arch a) { return (unsigned)a < 2 ? ARCH_NAMES[a] : "?"; }

void elbo_vae_objective_init(elbo_vae_objective *o) {
    memset(o, 0, sizeof *o);
    o->likelihood = ELBO_LIK_BERNOULLI;
    o->binarize = ELBO_BINARIZE_DYNAMIC;
    o->estimator = ELBO_SGVB_B;
    o->samples = 1;
    o->beta = 1.0f;
    o->logvar_min = -INFINITY;
}

elbo_status elbo__objective_check(const char *model, const elbo_vae_objective *o) {
    if ((unsigned)o->likelihood > 2) return elbo_error(ELBO_ERR_ARG, "%s: bad likelihood", model);
    if (!(o->sigma >= 0) || !isfinite(o->sigma))
        return elbo_error(ELBO_ERR_ARG, "%s: sigma must be >= 0 (0: learned), got %g", model, o->sigma);
    if ((unsigned)o->binarize > 2) return elbo_error(ELBO_ERR_ARG, "%s: bad binarize", model);
    if ((unsigned)o->estimator > 2) return elbo_error(ELBO_ERR_ARG, "%s: bad estimator", model);
    if (o->samples < 1 || o->samples > 100000)
        return elbo_error(ELBO_ERR_ARG, "%s: samples (L or k) must be in 1..100000, got %d", model,
                          o->samples);
    if (!(o->beta >= 0) || !isfinite(o->beta))
        return elbo_error(ELBO_ERR_ARG, "%s: beta must be >= 0, got %g", model, o->beta);
    if (o->kl_warmup < 0)
        return elbo_error(ELBO_ERR_ARG, "%s: kl_warmup must be >= 0 steps, got %lld", model,
                          (long long)o->kl_warmup);
    if (!(o->free_bits >= 0) || !isfinite(o->free_bits))
        return elbo_error(ELBO_ERR_ARG, "%s: free_bits must be >= 0 nats, got %g", model, o->free_bits);
    if (o->free_bits > 0 && o->estimator == ELBO_IWAE)
        return elbo_error(ELBO_ERR_ARG, "%s: free bits apply to estimators A and B, not iwae", model);
    if (isnan(o->logvar_min) || o->logvar_min == INFINITY)
        return elbo_error(ELBO_ERR_ARG, "%s: logvar_min must be a number or -inf", model);
    return ELBO_OK;
}

float elbo__objective_beta(const elbo_vae_objective *o, int64_t step) {
    if (o->kl_warmup <= 0 || step + 1 >= o->kl_warmup) return o->beta;
    return o->beta * (float)((double)(step + 1) / (double)o->kl_warmup);
}

void elbo__objective_json(elbo__jbuf *j, elbo_activation act, const elbo_vae_objective *o) {
    char buf[256];
    snprintf(buf, sizeof buf, "\"act\":\"%s\",\"likelihood\":\"%s\",\"sigma\":%.9g,"
             "\"binarize\":\"%s\",\"estimator\":\"%s\",\"samples\":%d,\"beta\":%.9g,"
             "\"kl_warmup\":%lld,\"free_bits\":%.9g,",
             elbo_activation_name(act), elbo_likelihood_name(o->likelihood), o->sigma,
             elbo_binarize_name(o->binarize), elbo_vae_estimator_name(o->estimator), o->samples,
             o->beta, (long long)o->kl_warmup, o->free_bits);
    elbo__jbuf_puts(j, buf);
    if (isinf(o->logvar_min))
        elbo__jbuf_puts(j, "\"logvar_min\":null}");
    else {
        snprintf(buf, sizeof buf, "\"logvar_min\":%.9g}", o->logvar_min);
        elbo__jbuf_puts(j, buf);
    }
    elbo__jbuf_put(j, "", 1);
}

elbo_status elbo__objective_parse(const elbo__json *o, elbo_activation *act, elbo_vae_objective *ob) {
    int64_t samples = ob->samples, warm = ob->kl_warmup;
    elbo_status st = elbo__cfg_int(o, "samples", 1, 100000, &samples);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "kl_warmup", 0, INT64_MAX, &warm);
    if (st == ELBO_OK) st = elbo__cfg_float(o, "sigma", &ob->sigma);
    if (st == ELBO_OK) st = elbo__cfg_float(o, "beta", &ob->beta);
    if (st == ELBO_OK) st = elbo__cfg_float(o, "free_bits", &ob->free_bits);
    const elbo__json *lv = elbo__json_get(o, "logvar_min");
    if (st == ELBO_OK && lv && lv->type != ELBO__JSON_NULL)
        st = elbo__cfg_float(o, "logvar_min", &ob->logvar_min);
    const char *s;
    if (st == ELBO_OK && (s = elbo__cfg_str(o, "act"))) st = elbo_activation_parse(s, act);
    if (st == ELBO_OK && (s = elbo__cfg_str(o, "likelihood"))) st = elbo_likelihood_parse(s, &ob->likelihood);
    if (st == ELBO_OK && (s = elbo__cfg_str(o, "binarize"))) st = elbo_binarize_parse(s, &ob->binarize);
    if (st == ELBO_OK && (s = elbo__cfg_str(o, "estimator"))) st = elbo_vae_estimator_parse(s, &ob->estimator);
    ob->samples = (int)samples;
    ob->kl_warmup = warm;
    return st;
}

void elbo__lse_push(double *mx, double *sum, double v) {
    if (v > *mx) {
        *sum = *sum * exp(*mx - v) + 1.0;
        *mx = v;
    } else {
        *sum += exp(v - *mx);
    }
}

void elbo_vae_config_init(elbo_vae_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->c = 1;
    cfg->h = cfg->w = 28;
    cfg->arch = ELBO_VAE_MLP;
    cfg->n_hidden = 2;
    cfg->hidden[0] = cfg->hidden[1] = 300;
    cfg->z = 40;
    cfg->act = ELBO_ACT_RELU;
    elbo_vae_objective_init(&cfg->obj);
}

elbo_status elbo_vae_config_check(const elbo_vae_config *cfg) {
    if (cfg->c < 1 || cfg->h < 1 || cfg->w < 1 || cfg->c * cfg->h * cfg->w > (1 << 24))
        return elbo_error(ELBO_ERR_ARG, "vae: bad image shape (%lld, %lld, %lld)",
                          (long long)cfg->c, (long long)cfg->h, (long long)cfg->w);
    if ((unsigned)cfg->arch > 1) return elbo_error(ELBO_ERR_ARG, "vae: bad arch");
    if (cfg->arch == ELBO_VAE_CONV && (cfg->h % 4 || cfg->w % 4))
        return elbo_error(ELBO_ERR_ARG, "vae: arch conv needs h and w divisible by 4, got %lldx%lld",
                          (long long)cfg->h, (long long)cfg->w);
    int need = cfg->arch == ELBO_VAE_CONV ? 1 : 0;
    if (cfg->n_hidden < need || cfg->n_hidden > (cfg->arch == ELBO_VAE_CONV ? 1 : ELBO_VAE_MAX_HIDDEN))
        return elbo_error(ELBO_ERR_ARG, "vae: %d hidden layers (arch %s takes %s)", cfg->n_hidden,
                          elbo_vae_arch_name(cfg->arch),
                          cfg->arch == ELBO_VAE_CONV ? "exactly 1" : "0 to 8");
    for (int i = 0; i < cfg->n_hidden; i++)
        if (cfg->hidden[i] < 1 || cfg->hidden[i] > (1 << 16))
            return elbo_error(ELBO_ERR_ARG, "vae: hidden width %d must be in 1..65536", cfg->hidden[i]);
    if (cfg->z < 1 || cfg->z > (1 << 16))
        return elbo_error(ELBO_ERR_ARG, "vae: latent dimension z = %d must be in 1..65536", cfg->z);
    return elbo__objective_check("vae", &cfg->obj);
}

/* ---- the networks ------------------------------------------------------------------------ */
typedef struct {
    elbo_model base;
    elbo_vae_config cfg;
    elbo_paramset *ps;
    int64_t D, m; /* pixels per example; decoder outputs per pixel (1 or 2) */
    elbo__lik lik;
    /* mlp */
    elbo_nn_mlp enc, dec;
    /* conv: enc conv1 (c->32, s2) conv2 (32->64, s2) fc1 (64 h/4 w/4 -> H) fc2 (H -> 2Z);
     *       dec fc1 (Z -> H) fc2 (H -> 64 h/4 w/4) up conv1 (64->32) up conv2 (32 -> m c) */
    elbo_nn_conv2d e_conv1, e_conv2, d_conv1, d_conv2;
    elbo_nn_linear e_fc1, e_fc2, d_fc1, d_fc2;
    /* eval accumulators (per latent dimension, in double): sums of mu and mu^2 */
    double *mu_sum, *mu_sq;
    elbo_ctx *chunk_ctx; /* the decoder's memory for one chunk of importance samples */
} vae_model;

static elbo_status vae_nets_init(vae_model *v) {
    const elbo_vae_config *c = &v->cfg;
    elbo_paramset *ps = v->ps;
    const int Z = c->z, D = (int)v->D, m = (int)v->m;
    elbo_status st;
    if (c->arch == ELBO_VAE_MLP) {
        int enc[ELBO_VAE_MAX_HIDDEN + 2], dec[ELBO_VAE_MAX_HIDDEN + 2], n = c->n_hidden;
        enc[0] = D;
        dec[0] = Z;
        for (int i = 0; i < n; i++) {
            enc[1 + i] = c->hidden[i];
            dec[1 + i] = c->hidden[n - 1 - i];
        }
        enc[n + 1] = 2 * Z;
        dec[n + 1] = m * D;
        st = elbo_nn_mlp_init(&v->enc, ps, "enc", n + 1, enc, c->act);
        if (st == ELBO_OK) st = elbo_nn_mlp_init(&v->dec, ps, "dec", n + 1, dec, c->act);
        return st;
    }
    const int H = c->hidden[0], flat = 64 * (int)(c->h / 4) * (int)(c->w / 4), C = (int)c->c;
    st = elbo_nn_conv2d_init(&v->e_conv1, ps, "enc.conv1", C, 32, 3, 2, 1, 1);
    if (st == ELBO_OK) st = elbo_nn_conv2d_init(&v->e_conv2, ps, "enc.conv2", 32, 64, 3, 2, 1, 1);
    if (st == ELBO_OK) st = elbo_nn_linear_init(&v->e_fc1, ps, "enc.fc1", flat, H, 1);
    if (st == ELBO_OK) st = elbo_nn_linear_init(&v->e_fc2, ps, "enc.fc2", H, 2 * Z, 1);
    if (st == ELBO_OK) st = elbo_nn_linear_init(&v->d_fc1, ps, "dec.fc1", Z, H, 1);
    if (st == ELBO_OK) st = elbo_nn_linear_init(&v->d_fc2, ps, "dec.fc2", H, flat, 1);
    if (st == ELBO_OK) st = elbo_nn_conv2d_init(&v->d_conv1, ps, "dec.conv1", 64, 32, 3, 1, 1, 1);
    if (st == ELBO_OK) st = elbo_nn_conv2d_init(&v->d_conv2, ps, "dec.conv2", 32, m * C, 3, 1, 1, 1);
    return st;
}

/* x (B, D) -> mu, logvar (B, Z); logvar floored at logvar_min (a clamp: no gradient below). */
static elbo_status encode_q(elbo_ctx *ctx, const vae_model *v, elbo_tensor *x, elbo_tensor **mu,
                            elbo_tensor **logvar) {
    const elbo_vae_config *c = &v->cfg;
    const int64_t B = x->shape[0];
    elbo_tensor *h;
    if (c->arch == ELBO_VAE_MLP) {
        h = elbo_nn_mlp_forward(ctx, &v->enc, x);
    } else {
        h = elbo_reshape4(ctx, x, B, c->c, c->h, c->w);
        h = elbo_activate(ctx, elbo_nn_conv2d_forward(ctx, &v->e_conv1, h), c->act);
        h = elbo_activate(ctx, elbo_nn_conv2d_forward(ctx, &v->e_conv2, h), c->act);
        h = elbo_reshape2(ctx, h, B, -1);
        h = elbo_activate(ctx, elbo_nn_linear_forward(ctx, &v->e_fc1, h), c->act);
        h = elbo_nn_linear_forward(ctx, &v->e_fc2, h);
    }
    elbo_tensor *parts[2];
    const int64_t sizes[2] = {c->z, c->z};
    if (!h || elbo_split(ctx, h, 1, 2, sizes, parts) != ELBO_OK) return elbo_last_status();
    *mu = parts[0];
    *logvar = isinf(c->obj.logvar_min) ? parts[1] : elbo_clamp(ctx, parts[1], c->obj.logvar_min, INFINITY);
    return *logvar ? ELBO_OK : elbo_last_status();
}

/* z (N, Z) -> the decoder's parameters: a (N, D) (logits or mean) and, when m = 2, b (N, D)
 * (log-variance or log-scale; else NULL). */
static elbo_status decode_p(elbo_ctx *ctx, const vae_model *v, elbo_tensor *z, elbo_tensor **a,
                            elbo_tensor **b) {
    const elbo_vae_config *c = &v->cfg;
    const int64_t N = z->shape[0];
    elbo_tensor *h;
    if (c->arch == ELBO_VAE_MLP) {
        h = elbo_nn_mlp_forward(ctx, &v->dec, z);
    } else {
        h = elbo_activate(ctx, elbo_nn_linear_forward(ctx, &v->d_fc1, z), c->act);
        h = elbo_activate(ctx, elbo_nn_linear_forward(ctx, &v->d_fc2, h), c->act);
        h = elbo_reshape4(ctx, h, N, 64, c->h / 4, c->w / 4);
        h = elbo_upsample_nearest2x(ctx, h);
        h = elbo_activate(ctx, elbo_nn_conv2d_forward(ctx, &v->d_conv1, h), c->act);
        h = elbo_upsample_nearest2x(ctx, h);
        h = elbo_nn_conv2d_forward(ctx, &v->d_conv2, h);   /* (N, m c, h, w) */
        h = elbo_reshape2(ctx, h, N, v->m * v->D);         /* [a's c channels, b's c channels] */
    }
    if (!h) return elbo_last_status();
    *b = NULL;
    if (v->m == 1) {
        *a = h;
        return ELBO_OK;
    }
    elbo_tensor *parts[2];
    const int64_t sizes[2] = {v->D, v->D};
    if (elbo_split(ctx, h, 1, 2, sizes, parts) != ELBO_OK) return elbo_last_status();
    *a = parts[0];
    *b = parts[1];
    return ELBO_OK;
}

/* log 256 per pixel: a density on x = (pixel + u) / 256 is a bound on the discrete
 * likelihood of the pixels after adding D log(1/256) (uniform dequantization, Theis et al.
 * 2016), so the Gaussian's figures add D log 256 to -log p. */
double elbo__lik_dequant_nats(const elbo__lik *l) {
    return l->kind == ELBO_LIK_GAUSSIAN ? (double)l->D * log(256.0) : 0.0;
}

/* log p(x|z) per row: x (N, D), decoder output a, b (N, D) -> (N) (without dequant_nats).
 *   bernoulli: -sum BCE-with-logits(a, x)
 *   gaussian:  sum log N(x; a, exp(b)), or exp(2 log sigma) when sigma is fixed
 *   logistic:  sum log [sig((x + 1/255 - a)/s) - sig((x - 1/255 - a)/s)], s = exp(max(b, -7))
 *              (PixelCNN++, Salimans et al. 2017: the log-scale floor of -7 is theirs) */
elbo_tensor *elbo__lik_log_px(elbo_ctx *ctx, const elbo__lik *l, elbo_tensor *x, elbo_tensor *a,
                              elbo_tensor *b) {
    elbo_tensor *ll;
    switch (l->kind) {
    case ELBO_LIK_BERNOULLI:
        ll = elbo_neg(ctx, elbo_bce_with_logits(ctx, a, x, ELBO_REDUCE_NONE));
        break;
    case ELBO_LIK_GAUSSIAN:
        if (!b) {
            int64_t one = 1;
            b = elbo_tensor_full(ctx, 1, &one, 2.0f * logf(l->sigma));
        }
        ll = elbo_gaussian_log_likelihood(ctx, x, a, b, ELBO_REDUCE_NONE);
        break;
    default:
        ll = elbo_discretized_logistic_log_likelihood(ctx, x, a, elbo_clamp(ctx, b, -7.0f, INFINITY),
                                                      256, ELBO_REDUCE_NONE);
        break;
    }
    return elbo_sum_axis(ctx, ll, 1, 0);
}

/* The decoder's mean image in [0, 1]: sigmoid(a) (bernoulli), a (gaussian), (a + 1) / 2
 * (logistic), clipped. */
void elbo__lik_mean_image(const elbo__lik *l, const elbo_tensor *a, float *out) {
    for (int64_t i = 0; i < a->numel; i++) {
        float t = a->data[i];
        float y = l->kind == ELBO_LIK_BERNOULLI  ? 1.0f / (1.0f + expf(-t))
                  : l->kind == ELBO_LIK_GAUSSIAN ? t
                                                 : 0.5f * (t + 1.0f);
        out[i] = y < 0 ? 0 : y > 1 ? 1 : y;
    }
}

int64_t elbo__lik_outputs(const elbo__lik *l) {
    return l->kind == ELBO_LIK_LOGISTIC || (l->kind == ELBO_LIK_GAUSSIAN && l->sigma == 0) ? 2 : 1;
}

elbo_pixel_transform elbo__lik_transform(elbo_likelihood kind, elbo_binarize binarize) {
    return kind == ELBO_LIK_BERNOULLI  ? elbo_binarize_transform(binarize)
           : kind == ELBO_LIK_GAUSSIAN ? ELBO_PIXELS_DEQUANTIZE
                                       : ELBO_PIXELS_SCALE11;
}

/* KL(N(mu, e^logvar) || N(0, 1)) per dimension: 0.5 (mu^2 + e^logvar - 1 - logvar)
 * (Kingma & Welling 2014, appendix B) -> (B, Z). */
elbo_tensor *elbo__kl_normal_std(elbo_ctx *ctx, elbo_tensor *mu, elbo_tensor *logvar) {
    elbo_tensor *t = elbo_sub(ctx, elbo_add(ctx, elbo_square(ctx, mu), elbo_exp(ctx, logvar)), logvar);
    return elbo_affine(ctx, t, 0.5f, -0.5f);
}

/* z = mu + exp(logvar / 2) eps for L samples per row: mu, logvar (B, Z), eps (B, L, Z)
 * -> (B L, Z). */
elbo_tensor *elbo__reparam(elbo_ctx *ctx, elbo_tensor *mu, elbo_tensor *logvar, elbo_tensor *eps) {
    const int64_t B = mu->shape[0], Z = mu->shape[1], L = eps->shape[1];
    elbo_tensor *mu3 = elbo_reshape3(ctx, mu, B, 1, Z);
    elbo_tensor *std3 = elbo_reshape3(ctx, elbo_exp(ctx, elbo_scale(ctx, logvar, 0.5f)), B, 1, Z);
    return elbo_reshape2(ctx, elbo_add(ctx, mu3, elbo_mul(ctx, std3, eps)), B * L, Z);
}

/* x (B, D) repeated L times as rows b L + l -> (B L, D), a leaf. */
elbo_tensor *elbo__repeat_rows(elbo_ctx *ctx, const float *x, int64_t B, int64_t L, int64_t D) {
    elbo_tensor *r = elbo_tensor_new2(ctx, B * L, D);
    if (!r) return NULL;
    for (int64_t b = 0; b < B; b++)
        for (int64_t l = 0; l < L; l++)
            memcpy(r->data + (b * L + l) * D, x + b * D, (size_t)D * sizeof(float));
    return r;
}

/* log p(z) - log q(z|x) per dimension: z (B L, Z), mu, logvar (B, Z) -> (B, L, Z). */
static elbo_tensor *log_pz_minus_qz(elbo_ctx *ctx, elbo_tensor *z, elbo_tensor *mu,
                                    elbo_tensor *logvar, int64_t L) {
    const int64_t B = mu->shape[0], Z = mu->shape[1];
    int64_t one = 1;
    elbo_tensor *zero = elbo_tensor_zeros(ctx, 1, &one);
    elbo_tensor *z3 = elbo_reshape3(ctx, z, B, L, Z);
    elbo_tensor *lp = elbo_gaussian_log_likelihood(ctx, z3, zero, zero, ELBO_REDUCE_NONE);
    elbo_tensor *lq = elbo_gaussian_log_likelihood(ctx, z3, elbo_reshape3(ctx, mu, B, 1, Z),
                                                   elbo_reshape3(ctx, logvar, B, 1, Z),
                                                   ELBO_REDUCE_NONE);
    return elbo_sub(ctx, lp, lq);
}

/* The training loss, the estimator's negative bound per example (means over the batch):
 *   B:    recon + beta_t sum_j k_j,  k_j = mean_b KL_j(q(z|x_b) || p(z))
 *   A:    recon + beta_t sum_j k_j,  k_j = mean_{b,l} [log q(z_bl,j|x_b) - log p(z_bl,j)]
 *         with recon = mean_{b,l} -log p(x_b|z_bl); free bits: k_j -> max(lambda, k_j), the
 *         KL of each dimension averaged over the minibatch (Kingma et al. 2016, eq. 15)
 *   iwae: -mean_b [logsumexp_l log w_bl - log L],
 *         log w_bl = log p(x_b|z_bl) + beta_t [log p(z_bl) - log q(z_bl|x_b)] (beta 1: IWAE)
 * extras: recon, the closed-form kl, beta_t. */
static elbo_tensor *vae_loss(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                             int64_t B, elbo_rng *rng, double *extra) {
    (void)labels;
    vae_model *v = (vae_model *)m;
    const elbo_vae_config *c = &v->cfg;
    const int64_t L = c->obj.samples, Z = c->z, D = v->D;
    int64_t xs[2] = {B, D};
    elbo_tensor *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs), *mu, *logvar;
    if (!xt || encode_q(ctx, v, xt, &mu, &logvar) != ELBO_OK) return NULL;
    elbo_tensor *eps = elbo_tensor_new3(ctx, B, L, Z);
    if (!eps) return NULL;
    elbo_rng_normal(rng, eps->data, (size_t)(B * L * Z), 0.0f, 1.0f);
    elbo_tensor *z = elbo__reparam(ctx, mu, logvar, eps), *a, *b;
    elbo_tensor *xr = L == 1 ? xt : elbo__repeat_rows(ctx, x, B, L, D);
    if (!z || !xr || decode_p(ctx, v, z, &a, &b) != ELBO_OK) return NULL;
    elbo_tensor *lpx = elbo__lik_log_px(ctx, &v->lik, xr, a, b); /* (B L) */
    elbo_tensor *kl = elbo__kl_normal_std(ctx, mu, logvar);  /* (B, Z) */
    const float beta = elbo__objective_beta(&c->obj, m->step); /* KL warm-up */
    elbo_tensor *loss;
    if (c->obj.estimator == ELBO_IWAE) {
        elbo_tensor *lw = elbo_add(ctx, elbo_reshape2(ctx, lpx, B, L),
                                   elbo_scale(ctx, elbo_sum_axis(ctx, log_pz_minus_qz(ctx, z, mu, logvar, L), 2, 0), beta));
        elbo_tensor *iw = elbo_add_scalar(ctx, elbo_logsumexp(ctx, lw, 1, 0), -logf((float)L));
        loss = elbo_scale(ctx, elbo_mean(ctx, iw), -1.0f);
    } else {
        elbo_tensor *kj; /* (Z): each dimension's KL, averaged over the batch (and samples) */
        if (c->obj.estimator == ELBO_SGVB_B) {
            kj = elbo_mean_axis(ctx, kl, 0, 0);
        } else {
            const int ax[2] = {0, 1};
            kj = elbo_scale(ctx, elbo_mean_axes(ctx, log_pz_minus_qz(ctx, z, mu, logvar, L), 2, ax, 0), -1.0f);
        }
        if (c->obj.free_bits > 0) kj = elbo_clamp(ctx, kj, c->obj.free_bits, INFINITY);
        loss = elbo_add(ctx, elbo_scale(ctx, elbo_mean(ctx, lpx), -1.0f),
                        elbo_scale(ctx, elbo_sum(ctx, kj), beta));
    }
    loss = elbo_add_scalar(ctx, loss, (float)elbo__lik_dequant_nats(&v->lik));
    if (!loss) return NULL;
    if (extra) {
        double s = 0, k = 0;
        for (int64_t i = 0; i < B * L; i++) s += lpx->data[i];
        for (int64_t i = 0; i < B * Z; i++) k += kl->data[i];
        extra[0] = -s / (double)(B * L) + elbo__lik_dequant_nats(&v->lik);
        extra[1] = k / (double)B;
        extra[2] = beta;
    }
    return loss;
}

void elbo__vae_family_fill(elbo_model *m, const char *name, elbo_paramset *ps, int64_t c,
                           int64_t h, int64_t w, const elbo_vae_objective *o) {
    static const char *EVAL[5] = {"neg_elbo", "recon", "kl", "nll_iwae", "active_units"};
    m->name = name;
    m->ps = ps;
    m->c = c;
    m->h = h;
    m->w = w;
    m->transform = elbo__lik_transform(o->likelihood, o->binarize);
    m->n_extra = 3;
    m->extra_names[0] = "recon";
    m->extra_names[1] = "kl";
    m->extra_names[2] = "beta";
    m->n_eval = 5;
    for (int i = 0; i < 5; i++) m->eval_names[i] = EVAL[i];
}

double elbo_log_mean_exp(const double *a, int64_t n) {
    double mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        if (a[i] > mx) mx = a[i];
    if (!isfinite(mx)) return mx;
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += exp(a[i] - mx);
    return mx + log(s / (double)n);
}

/* Importance samples per chunk of the decoder: about 2^22 floats of its output. */
static int64_t chunk_samples(const vae_model *v, int64_t B, int64_t k) {
    int64_t s = ((int64_t)1 << 22) / (B * v->D * v->m);
    return s < 1 ? 1 : s > k ? k : s;
}

/* sums += per-example sums of: neg_elbo = recon + kl, recon = mean_i -log p(x|z_i),
 * kl (closed form), nll_iwae = -[logsumexp_i log w_i - log k], active-unit accumulators;
 * log w_i = log p(x|z_i) + log p(z_i) - log q(z_i|x), z_i ~ q(z|x), i < k, drawn in chunks
 * with a running (max, sum) log-sum-exp in double. */
static elbo_status vae_eval(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                            int64_t B, elbo_rng *rng, double *sums) {
    (void)labels;
    vae_model *v = (vae_model *)m;
    const int64_t Z = v->cfg.z, D = v->D, k = m->eval_samples > 0 ? m->eval_samples : 1;
    int grad = elbo_ctx_set_grad(ctx, 0);
    int64_t xs[2] = {B, D};
    elbo_tensor *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs), *mu = NULL, *logvar = NULL;
    elbo_status st = xt ? encode_q(ctx, v, xt, &mu, &logvar) : elbo_last_status();
    elbo_tensor *kl = st == ELBO_OK ? elbo__kl_normal_std(ctx, mu, logvar) : NULL;
    double *run_max = elbo_ctx_alloc(ctx, (size_t)B * sizeof(double));
    double *run_sum = elbo_ctx_alloc(ctx, (size_t)B * sizeof(double));
    double *rec = elbo_ctx_alloc(ctx, (size_t)B * sizeof(double));
    if (st == ELBO_OK && (!kl || !run_max || !run_sum || !rec)) st = elbo_last_status();
    const int64_t S = chunk_samples(v, B, k);
    for (int64_t b = 0; st == ELBO_OK && b < B; b++) {
        run_max[b] = -INFINITY;
        run_sum[b] = rec[b] = 0;
    }
    elbo_ctx *cc = v->chunk_ctx;
    elbo_ctx_set_grad(cc, 0);
    for (int64_t i0 = 0; st == ELBO_OK && i0 < k; i0 += S) {
        const int64_t L = k - i0 < S ? k - i0 : S;
        elbo_ctx_reset(cc);
        elbo_tensor *eps = elbo_tensor_new3(cc, B, L, Z), *a, *bb;
        if (!eps) {
            st = elbo_last_status();
            break;
        }
        elbo_rng_normal(rng, eps->data, (size_t)(B * L * Z), 0.0f, 1.0f);
        elbo_tensor *z = elbo__reparam(cc, mu, logvar, eps);
        elbo_tensor *xr = L == 1 ? xt : elbo__repeat_rows(cc, x, B, L, D);
        if (!z || !xr || (st = decode_p(cc, v, z, &a, &bb)) != ELBO_OK) break;
        elbo_tensor *lpx = elbo__lik_log_px(cc, &v->lik, xr, a, bb);
        elbo_tensor *lpq = elbo_sum_axis(cc, log_pz_minus_qz(cc, z, mu, logvar, L), 2, 0);
        if (!lpx || !lpq) {
            st = elbo_last_status();
            break;
        }
        for (int64_t b = 0; b < B; b++)
            for (int64_t l = 0; l < L; l++) {
                double lw = (double)lpx->data[b * L + l] + (double)lpq->data[b * L + l];
                rec[b] -= lpx->data[b * L + l];
                elbo__lse_push(&run_max[b], &run_sum[b], lw);
            }
    }
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    const double dq = elbo__lik_dequant_nats(&v->lik);
    for (int64_t b = 0; b < B; b++) {
        double kb = 0;
        for (int64_t j = 0; j < Z; j++) {
            kb += kl->data[b * Z + j];
            double mj = mu->data[b * Z + j];
            v->mu_sum[j] += mj;
            v->mu_sq[j] += mj * mj;
        }
        double rb = rec[b] / (double)k + dq;
        sums[0] += rb + kb;
        sums[1] += rb;
        sums[2] += kb;
        sums[3] += -(run_max[b] + log(run_sum[b]) - log((double)k)) + dq;
    }
    return ELBO_OK;
}

static elbo_status vae_eval_begin(elbo_model *m) {
    vae_model *v = (vae_model *)m;
    memset(v->mu_sum, 0, (size_t)v->cfg.z * sizeof(double));
    memset(v->mu_sq, 0, (size_t)v->cfg.z * sizeof(double));
    return ELBO_OK;
}

/* active units: #{u : Var_x(mu_u(x)) > 0.01} over the n examples (Burda et al. 2016, 5.2). */
static elbo_status vae_eval_end(elbo_model *m, int64_t n, double *means) {
    vae_model *v = (vae_model *)m;
    int au = 0;
    for (int j = 0; j < v->cfg.z; j++) {
        double mean = v->mu_sum[j] / (double)n, var = v->mu_sq[j] / (double)n - mean * mean;
        if (var > 0.01) au++;
    }
    means[4] = au;
    return ELBO_OK;
}

static elbo_status vae_decode(elbo_ctx *ctx, elbo_model *m, const float *z, int64_t n, float *out) {
    vae_model *v = (vae_model *)m;
    int grad = elbo_ctx_set_grad(ctx, 0);
    int64_t zs[2] = {n, v->cfg.z};
    elbo_tensor *zt = elbo_tensor_wrap(ctx, (float *)z, 2, zs), *a = NULL, *b;
    elbo_status st = zt ? decode_p(ctx, v, zt, &a, &b) : elbo_last_status();
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    elbo__lik_mean_image(&v->lik, a, out);
    return ELBO_OK;
}

static elbo_status vae_encode(elbo_ctx *ctx, elbo_model *m, const float *x, int64_t B, float *z) {
    vae_model *v = (vae_model *)m;
    int grad = elbo_ctx_set_grad(ctx, 0);
    int64_t xs[2] = {B, v->D};
    elbo_tensor *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs), *mu = NULL, *logvar;
    elbo_status st = xt ? encode_q(ctx, v, xt, &mu, &logvar) : elbo_last_status();
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    memcpy(z, mu->data, (size_t)(B * v->cfg.z) * sizeof(float));
    return ELBO_OK;
}

/* n prior samples: the decoder's mean image at z ~ N(0, I). */
static elbo_status vae_sample(elbo_ctx *ctx, elbo_model *m, int64_t n, elbo_rng *rng, float *out) {
    vae_model *v = (vae_model *)m;
    float *z = elbo_ctx_alloc(ctx, (size_t)(n * v->cfg.z) * sizeof(float));
    if (!z) return elbo_last_status();
    elbo_rng_normal(rng, z, (size_t)(n * v->cfg.z), 0.0f, 1.0f);
    return vae_decode(ctx, m, z, n, out);
}

static void vae_free(elbo_model *m) {
    if (!m) return;
    vae_model *v = (vae_model *)m;
    elbo_paramset_free(v->ps);
    elbo_ctx_free(v->chunk_ctx);
    free(v->mu_sum);
    free(v->mu_sq);
    free(m->config);
    free(v);
}

/* The configuration as JSON, every field by name (the checkpoint's "config"). */
static char *config_json(const elbo_vae_config *c) {
    elbo__jbuf j = {0};
    char buf[160];
    snprintf(buf, sizeof buf, "{\"c\":%lld,\"h\":%lld,\"w\":%lld,\"arch\":\"%s\",\"hidden\":[",
             (long long)c->c, (long long)c->h, (long long)c->w, elbo_vae_arch_name(c->arch));
    elbo__jbuf_puts(&j, buf);
    for (int i = 0; i < c->n_hidden; i++) {
        snprintf(buf, sizeof buf, "%s%d", i ? "," : "", c->hidden[i]);
        elbo__jbuf_puts(&j, buf);
    }
    snprintf(buf, sizeof buf, "],\"z\":%d,", c->z);
    elbo__jbuf_puts(&j, buf);
    elbo__objective_json(&j, c->act, &c->obj);
    if (j.oom) {
        elbo__jbuf_free(&j);
        return NULL;
    }
    return j.p;
}

elbo_status elbo_vae_model_new(const elbo_vae_config *cfg, uint64_t seed, elbo_model **out) {
    *out = NULL;
    elbo_status st = elbo_vae_config_check(cfg);
    if (st != ELBO_OK) return st;
    vae_model *v = calloc(1, sizeof *v);
    if (!v) return elbo_error(ELBO_ERR_NOMEM, "vae: out of memory");
    v->cfg = *cfg;
    v->D = cfg->c * cfg->h * cfg->w;
    v->lik = (elbo__lik){cfg->obj.likelihood, cfg->obj.sigma, v->D};
    v->m = elbo__lik_outputs(&v->lik);
    v->ps = elbo_paramset_new();
    v->mu_sum = calloc((size_t)cfg->z, sizeof(double));
    v->mu_sq = calloc((size_t)cfg->z, sizeof(double));
    v->chunk_ctx = elbo_ctx_new(0);
    v->base.config = config_json(cfg);
    if (!v->ps || !v->mu_sum || !v->mu_sq || !v->chunk_ctx || !v->base.config)
        st = elbo_error(ELBO_ERR_NOMEM, "vae: out of memory");
    if (st == ELBO_OK) st = vae_nets_init(v);
    if (st == ELBO_OK) st = elbo_paramset_finalize(v->ps, seed);
    if (st != ELBO_OK) {
        vae_free(&v->base);
        return st;
    }
    elbo_model *m = &v->base;
    elbo__vae_family_fill(m, "vae", v->ps, cfg->c, cfg->h, cfg->w, &cfg->obj);
    m->loss = vae_loss;
    m->eval = vae_eval;
    m->eval_begin = vae_eval_begin;
    m->eval_end = vae_eval_end;
    m->sample = vae_sample;
    m->z_dim = cfg->z;
    m->encode = vae_encode;
    m->decode = vae_decode;
    m->free = vae_free;
    m->impl = v;
    *out = m;
    return ELBO_OK;
}

/* ---- from the checkpoint's JSON ------------------------------------------------------- */
elbo_status elbo__cfg_int(const elbo__json *o, const char *key, int64_t lo, int64_t hi,
                            int64_t *dst) {
    const elbo__json *v = elbo__json_get(o, key);
    if (!v) return ELBO_OK;
    if (v->type != ELBO__JSON_NUMBER || !v->is_uint || (int64_t)v->u < lo || (int64_t)v->u > hi)
        return elbo_error(ELBO_ERR_ARG, "config: \"%s\" must be an integer in %lld..%lld", key,
                          (long long)lo, (long long)hi);
    *dst = (int64_t)v->u;
    return ELBO_OK;
}

elbo_status elbo__cfg_float(const elbo__json *o, const char *key, float *dst) {
    const elbo__json *v = elbo__json_get(o, key);
    if (!v) return ELBO_OK;
    if (v->type != ELBO__JSON_NUMBER)
        return elbo_error(ELBO_ERR_ARG, "config: \"%s\" must be a number", key);
    *dst = (float)v->num;
    return ELBO_OK;
}

elbo_status elbo__cfg_int_list(const elbo__json *o, const char *key, int max, int *dst, int *n) {
    const elbo__json *v = elbo__json_get(o, key);
    if (!v) return ELBO_OK;
    if (v->type != ELBO__JSON_ARRAY || v->n > (size_t)max)
        return elbo_error(ELBO_ERR_ARG, "config: \"%s\" must be an array of at most %d integers",
                          key, max);
    for (size_t i = 0; i < v->n; i++) {
        const elbo__json *e = &v->items[i];
        if (e->type != ELBO__JSON_NUMBER || !e->is_uint || e->u < 1 || e->u > 65536)
            return elbo_error(ELBO_ERR_ARG, "config: \"%s\" entries must be in 1..65536", key);
        dst[i] = (int)e->u;
    }
    *n = (int)v->n;
    return ELBO_OK;
}

const char *elbo__cfg_str(const elbo__json *o, const char *key) {
    const elbo__json *v = elbo__json_get(o, key);
    return v && v->type == ELBO__JSON_STRING ? v->str : NULL;
}

elbo_status elbo__cfg_process(const elbo__json *o, elbo_process *p) {
    const char *s = elbo__cfg_str(o, "schedule");
    if (s && elbo_process_set_schedule(p, s) != ELBO_OK)
        return elbo_error(ELBO_ERR_ARG, "config: %s", elbo_last_error());
    const struct {
        const char *key;
        double *dst;
    } dbl[] = {{"log_snr_min", &p->log_snr_min}, {"log_snr_max", &p->log_snr_max},
               {"beta_min", &p->beta_min},       {"beta_max", &p->beta_max},
               {"sigma_min", &p->sigma_min},     {"sigma_max", &p->sigma_max}};
    for (size_t i = 0; i < sizeof dbl / sizeof dbl[0]; i++) {
        const elbo__json *j = elbo__json_get(o, dbl[i].key);
        if (!j) continue;
        if (j->type != ELBO__JSON_NUMBER)
            return elbo_error(ELBO_ERR_ARG, "config: \"%s\" must be a number", dbl[i].key);
        *dbl[i].dst = j->num;
    }
    return ELBO_OK;
}

void elbo__process_json(const elbo_process *p, char *buf, size_t n) {
    snprintf(buf, n,
             "\"schedule\":\"%s\",\"log_snr_min\":%.17g,\"log_snr_max\":%.17g,\"beta_min\":%.17g,"
             "\"beta_max\":%.17g,\"sigma_min\":%.17g,\"sigma_max\":%.17g",
             elbo_process_schedule_name(p), p->log_snr_min, p->log_snr_max, p->beta_min,
             p->beta_max, p->sigma_min, p->sigma_max);
}

elbo_status elbo__vae_from_json(const elbo__json *o, uint64_t seed, elbo_model **out) {
    elbo_vae_config cfg;
    elbo_vae_config_init(&cfg);
    int64_t z = cfg.z;
    elbo_status st = elbo__cfg_int(o, "c", 1, 4, &cfg.c);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "h", 1, 4096, &cfg.h);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "w", 1, 4096, &cfg.w);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "z", 1, 65536, &z);
    if (st == ELBO_OK) st = elbo__objective_parse(o, &cfg.act, &cfg.obj);
    const char *s;
    if (st == ELBO_OK && (s = elbo__cfg_str(o, "arch"))) st = elbo_vae_arch_parse(s, &cfg.arch);
    if (st == ELBO_OK) st = elbo__cfg_int_list(o, "hidden", ELBO_VAE_MAX_HIDDEN, cfg.hidden, &cfg.n_hidden);
    if (st != ELBO_OK) return st;
    cfg.z = (int)z;
    return elbo_vae_model_new(&cfg, seed, out);
}
