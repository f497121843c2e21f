/* The vae-mlp model behind the elbo_model interface: the VAE of Kingma & Welling (2014) with
 * MLP encoder and decoder and a Bernoulli likelihood (src/models/vae_mlp.c), on images
 * flattened to x_dim = c h w values in [0, 1], binarized dynamically by default as in the
 * VAE papers (Salakhutdinov & Murray 2008). Also the model registry (elbo_model_new) and
 * elbo_model_load. */
#include "internal.h"

#include "elbo/train.h"
#include "io/json.h"
#include "models/vae_internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    elbo_model base;
    elbo_vae_mlp vae;
    elbo_vae_mlp_config cfg;
} vae_model;

static const char *BINARIZE_NAMES[] = {"dynamic", "static", "none"};

elbo_status elbo_binarize_parse(const char *s, elbo_binarize *out) {
    for (int i = 0; i < 3; i++)
        if (s && !strcmp(s, BINARIZE_NAMES[i])) {
            *out = (elbo_binarize)i;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "binarize: expected dynamic, static or none, got \"%s\"",
                      s ? s : "(null)");
}

const char *elbo_binarize_name(elbo_binarize b) {
    return (unsigned)b < 3 ? BINARIZE_NAMES[b] : "?";
}

elbo_pixel_transform elbo_binarize_transform(elbo_binarize b) {
    return b == ELBO_BINARIZE_DYNAMIC  ? ELBO_PIXELS_BINARIZE
           : b == ELBO_BINARIZE_STATIC ? ELBO_PIXELS_BINARIZE_STATIC
                                       : ELBO_PIXELS_SCALE01;
}

void elbo_vae_mlp_config_init(elbo_vae_mlp_config *cfg) {
    cfg->c = 1;
    cfg->h = 28;
    cfg->w = 28;
    cfg->hidden = 512;
    cfg->z = 32;
    cfg->binarize = ELBO_BINARIZE_DYNAMIC;
}

/* The graph of elbo_vae_mlp_loss, op for op (so the value is the same bits), keeping the
 * two sums: rec = sum BCE-with-logits(dec(z), x), kl = 0.5 sum(mu^2 + exp(logvar) - 1 - logvar),
 * z = mu + exp(0.5 logvar) eps. x (B, x_dim), eps (B, z). */
static elbo_status vae_terms(elbo_ctx *ctx, const elbo_vae_mlp *m, elbo_tensor *x,
                             elbo_tensor *eps, elbo_tensor **rec, elbo_tensor **kl) {
    elbo_tensor *h = elbo_nn_mlp_forward(ctx, &m->enc, x), *mu_logvar[2];
    const int64_t sizes[2] = {m->z_dim, m->z_dim};
    if (!h || elbo_split(ctx, h, 1, 2, sizes, mu_logvar) != ELBO_OK) return elbo_last_status();
    elbo_tensor *mu = mu_logvar[0], *logvar = mu_logvar[1];
    elbo_tensor *z =
        elbo_add(ctx, mu, elbo_mul(ctx, elbo_exp(ctx, elbo_scale(ctx, logvar, 0.5f)), eps));
    elbo_tensor *logits = elbo_nn_mlp_forward(ctx, &m->dec, z);
    *rec = elbo_bce_with_logits(ctx, logits, x, ELBO_REDUCE_SUM);
    elbo_tensor *kl_terms = elbo_add_scalar(
        ctx, elbo_sub(ctx, elbo_add(ctx, elbo_square(ctx, mu), elbo_exp(ctx, logvar)), logvar),
        -1.0f);
    *kl = elbo_scale(ctx, elbo_sum(ctx, kl_terms), 0.5f);
    return *rec && *kl ? ELBO_OK : elbo_last_status();
}

/* Wraps x (B, x_dim) and draws eps (B, z) ~ N(0, I) from rng into the arena. */
static elbo_status vae_inputs(elbo_ctx *ctx, vae_model *vm, const float *x, int64_t B,
                              elbo_rng *rng, elbo_tensor **xt, elbo_tensor **eps) {
    int64_t xs[2] = {B, vm->vae.x_dim};
    *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs);
    *eps = elbo_tensor_new2(ctx, B, vm->vae.z_dim);
    if (!*xt || !*eps) return elbo_last_status();
    elbo_rng_normal(rng, (*eps)->data, (size_t)(B * vm->vae.z_dim), 0.0f, 1.0f);
    return ELBO_OK;
}

/* -ELBO / B (SGVB estimator B, one sample); extras: recon / B, kl / B. */
static elbo_tensor *vae_loss(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                             int64_t B, elbo_rng *rng, double *extra) {
    (void)labels;
    vae_model *vm = (vae_model *)m;
    elbo_tensor *xt, *eps, *rec, *kl;
    if (vae_inputs(ctx, vm, x, B, rng, &xt, &eps) != ELBO_OK) return NULL;
    if (vae_terms(ctx, &vm->vae, xt, eps, &rec, &kl) != ELBO_OK) return NULL;
    elbo_tensor *loss = elbo_scale(ctx, elbo_add(ctx, rec, kl), 1.0f / (float)B);
    if (loss && extra) {
        extra[0] = rec->data[0] / (double)B;
        extra[1] = kl->data[0] / (double)B;
    }
    return loss;
}

/* sums += (sum -ELBO, sum recon, sum kl) over the batch, in nats; -ELBO = recon + kl. */
static elbo_status vae_eval(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                            int64_t B, elbo_rng *rng, double *sums) {
    (void)labels;
    vae_model *vm = (vae_model *)m;
    int grad = elbo_ctx_set_grad(ctx, 0);
    elbo_tensor *xt, *eps, *rec = NULL, *kl = NULL;
    elbo_status st = vae_inputs(ctx, vm, x, B, rng, &xt, &eps);
    if (st == ELBO_OK) st = vae_terms(ctx, &vm->vae, xt, eps, &rec, &kl);
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    double r = rec->data[0], k = kl->data[0];
    sums[0] += r + k;
    sums[1] += r;
    sums[2] += k;
    return ELBO_OK;
}

/* out (n, c, h, w) = sigmoid(dec(z)), z ~ N(0, I): the decoder's Bernoulli means. */
static elbo_status vae_sample(elbo_ctx *ctx, elbo_model *m, int64_t n, elbo_rng *rng,
                              float *out) {
    vae_model *vm = (vae_model *)m;
    int grad = elbo_ctx_set_grad(ctx, 0);
    elbo_tensor *z = elbo_tensor_new2(ctx, n, vm->vae.z_dim);
    if (z) elbo_rng_normal(rng, z->data, (size_t)(n * vm->vae.z_dim), 0.0f, 1.0f);
    elbo_tensor *mean = elbo_sigmoid(ctx, elbo_nn_mlp_forward(ctx, &vm->vae.dec, z));
    elbo_ctx_set_grad(ctx, grad);
    if (!mean) return elbo_last_status();
    memcpy(out, mean->data, (size_t)(n * vm->vae.x_dim) * sizeof *out);
    return ELBO_OK;
}

static void vae_free(elbo_model *m) {
    if (!m) return;
    vae_model *vm = (vae_model *)m;
    elbo_vae_mlp_free(&vm->vae);
    free(m->config);
    free(vm);
}

elbo_vae_mlp *elbo_vae_mlp_of(elbo_model *m) {
    return m && m->free == vae_free ? &((vae_model *)m)->vae : NULL;
}

elbo_status elbo_vae_mlp_model_new(const elbo_vae_mlp_config *cfg, uint64_t seed,
                                   elbo_model **out) {
    *out = NULL;
    if (cfg->c < 1 || cfg->h < 1 || cfg->w < 1 || cfg->c * cfg->h * cfg->w > (1 << 24))
        return elbo_error(ELBO_ERR_ARG, "vae-mlp: bad image shape (%lld, %lld, %lld)",
                          (long long)cfg->c, (long long)cfg->h, (long long)cfg->w);
    if (cfg->hidden < 1 || cfg->hidden > (1 << 16) || cfg->z < 1 || cfg->z > (1 << 16))
        return elbo_error(ELBO_ERR_ARG, "vae-mlp: hidden %d and z %d must be in 1..65536",
                          cfg->hidden, cfg->z);
    if ((unsigned)cfg->binarize > 2) return elbo_error(ELBO_ERR_ARG, "vae-mlp: bad binarize");
    vae_model *vm = calloc(1, sizeof *vm);
    char buf[256];
    snprintf(buf, sizeof buf,
             "{\"c\":%lld,\"h\":%lld,\"w\":%lld,\"hidden\":%d,\"z\":%d,\"binarize\":\"%s\"}",
             (long long)cfg->c, (long long)cfg->h, (long long)cfg->w, cfg->hidden, cfg->z,
             elbo_binarize_name(cfg->binarize));
    char *config = vm ? strdup(buf) : NULL;
    if (!vm || !config) {
        free(vm);
        free(config);
        return elbo_error(ELBO_ERR_NOMEM, "vae-mlp: out of memory");
    }
    elbo_status st =
        elbo_vae_mlp_init(&vm->vae, (int)(cfg->c * cfg->h * cfg->w), cfg->hidden, cfg->z, seed);
    if (st != ELBO_OK) {
        free(vm);
        free(config);
        return st;
    }
    vm->cfg = *cfg;
    elbo_model *m = &vm->base;
    m->name = "vae-mlp";
    m->config = config;
    m->ps = vm->vae.ps;
    m->c = cfg->c;
    m->h = cfg->h;
    m->w = cfg->w;
    m->transform = elbo_binarize_transform(cfg->binarize);
    m->n_extra = 2;
    m->extra_names[0] = "recon";
    m->extra_names[1] = "kl";
    m->n_eval = 3;
    m->eval_names[0] = "neg_elbo";
    m->eval_names[1] = "recon";
    m->eval_names[2] = "kl";
    m->loss = vae_loss;
    m->eval = vae_eval;
    m->sample = vae_sample;
    m->free = vae_free;
    m->impl = vm;
    *out = m;
    return ELBO_OK;
}

/* ---- the registry ---------------------------------------------------------------------- */
const char *elbo_model_names(void) { return "vae | hvae | diffusion | classifier | vae-mlp"; }



static elbo_status vae_from_json(const elbo__json *o, uint64_t seed, elbo_model **out) {
    elbo_vae_mlp_config cfg;
    elbo_vae_mlp_config_init(&cfg);
    int64_t hidden = cfg.hidden, z = cfg.z;
    elbo_status st = elbo__cfg_int(o, "c", 1, 3, &cfg.c);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "h", 1, 4096, &cfg.h);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "w", 1, 4096, &cfg.w);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "hidden", 1, 65536, &hidden);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "z", 1, 65536, &z);
    if (st != ELBO_OK) return st;
    const elbo__json *b = elbo__json_get(o, "binarize");
    if (b && (b->type != ELBO__JSON_STRING || elbo_binarize_parse(b->str, &cfg.binarize) != ELBO_OK))
        return elbo_error(ELBO_ERR_ARG, "config: \"binarize\" must be dynamic, static or none");
    cfg.hidden = (int)hidden;
    cfg.z = (int)z;
    return elbo_vae_mlp_model_new(&cfg, seed, out);
}

elbo_status elbo_model_new(const char *name, const char *config, uint64_t seed, elbo_model **out) {
    *out = NULL;
    int vae = name && !strcmp(name, "vae"), hvae = name && !strcmp(name, "hvae");
    int diffusion = name && !strcmp(name, "diffusion");
    int classifier = name && !strcmp(name, "classifier");
    if (!name || (!vae && !hvae && !diffusion && !classifier && strcmp(name, "vae-mlp")))
        return elbo_error(ELBO_ERR_ARG, "unknown model \"%s\" (known: %s)", name ? name : "",
                          elbo_model_names());
    elbo__json o;
    char err[160];
    const char *text = config && *config ? config : "{}";
    if (elbo__json_parse(text, strlen(text), &o, err, sizeof err) != 0)
        return elbo_error(ELBO_ERR_ARG, "%s config: %s", name, err);
    elbo_status st = o.type == ELBO__JSON_OBJECT
                         ? (vae    ? elbo__vae_from_json(&o, seed, out)
                            : hvae      ? elbo__hvae_from_json(&o, seed, out)
                            : diffusion ? elbo__diffusion_from_json(&o, seed, out)
                            : classifier ? elbo__classifier_from_json(&o, seed, out)
                                        : vae_from_json(&o, seed, out))
                         : elbo_error(ELBO_ERR_ARG, "%s config: not a JSON object", name);
    elbo__json_free(&o);
    return st;
}

void elbo_model_free(elbo_model *m) {
    if (m && m->free) m->free(m);
}

elbo_status elbo_model_load(const char *path, elbo_model **out, int *used_ema, int64_t *step) {
    *out = NULL;
    if (used_ema) *used_ema = 0;
    elbo_checkpoint_info info;
    elbo_status st = elbo_checkpoint_read_info(path, &info);
    if (st != ELBO_OK) return st;
    elbo_model *m = NULL;
    st = elbo_model_new(info.model, info.config, 0, &m);
    if (st != ELBO_OK) {
        st = elbo_error(st, "%s: %s", path, elbo_last_error());
        elbo_checkpoint_info_free(&info);
        return st;
    }
    elbo_ema *ema = info.has_ema ? elbo_ema_new(m->ps, 0.0f) : NULL;
    elbo_checkpoint ck = {0};
    ck.params = m->ps;
    ck.ema = ema;
    ck.model = m->name;
    if (info.has_ema && !ema) st = elbo_last_status() ? elbo_last_status() : ELBO_ERR_NOMEM;
    if (st == ELBO_OK) st = elbo_checkpoint_load(path, &ck);
    if (st == ELBO_OK && ema) {
        elbo_ema_swap(ema, m->ps); /* sample and evaluate with the averaged weights */
        if (used_ema) *used_ema = 1;
    }
    elbo_ema_free(ema);
    elbo_checkpoint_info_free(&info);
    if (st != ELBO_OK) {
        elbo_model_free(m);
        return st;
    }
    if (step) *step = ck.step;
    *out = m;
    return ELBO_OK;
}
