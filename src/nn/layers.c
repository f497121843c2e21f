/* Layers with named parameters: thin wrappers that declare PyTorch-named parameters with
 * PyTorch's default initialisation and call the ops. Forward functions record ops on the
 * tape and allocate only in the step arena. */
#include "nn/nn_internal.h"

#include <math.h>

/* A layer's name, from one of its parameters ("down.0.conv1.weight" -> "down.0.conv1"). */
static int layer_name_len(const char *param_name) {
    const char *dot = strrchr(param_name, '.');
    return dot ? (int)(dot - param_name) : (int)strlen(param_name);
}

/* So that "conv2d: shapes ... do not match" says which of a UNet's convolutions failed. */
elbo_tensor *elbo__in_layer(elbo_tensor *y, const elbo_tensor *param) {
    if (!y && param && param->name) {
        char msg[512];
        snprintf(msg, sizeof msg, "%s", elbo_last_error());
        elbo_status st = elbo_last_status();
        elbo_error(st ? st : ELBO_ERR_ARG, "%.*s: %s", layer_name_len(param->name), param->name,
                   msg);
    }
    return y;
}

static elbo_init uniform_fan_in(int64_t fan_in) {
    /* kaiming_uniform_(a = sqrt(5)): bound = gain sqrt(3 / fan_in), gain = sqrt(2 / (1 + 5)),
     * i.e. 1 / sqrt(fan_in); the bias uses the same bound. */
    elbo_init u = {ELBO_INIT_UNIFORM, (float)(1.0 / sqrt((double)fan_in))};
    return u;
}

static elbo_status bad_size(const char *layer, const char *name, const char *what, int v) {
    return elbo_error(ELBO_ERR_ARG, "%s %s: %s %d", layer, name ? name : "", what, v);
}

static const char *ACT_NAMES[] = {"none", "relu", "silu", "gelu", "tanh", "sigmoid", "softplus", "elu"};

elbo_status elbo_activation_parse(const char *s, elbo_activation *out) {
    for (int i = 0; i < 8; i++)
        if (s && !strcmp(s, ACT_NAMES[i])) {
            *out = (elbo_activation)i;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "activation: expected none, relu, silu, gelu, tanh, sigmoid, "
                      "softplus or elu, got \"%s\"", s ? s : "(null)");
}

const char *elbo_activation_name(elbo_activation a) { return (unsigned)a < 8 ? ACT_NAMES[a] : "?"; }

elbo_tensor *elbo_activate(elbo_ctx *ctx, elbo_tensor *x, elbo_activation act) {
    if (!x) return NULL;
    switch (act) {
    case ELBO_ACT_NONE:
        return x;
    case ELBO_ACT_RELU:
        return elbo_relu(ctx, x);
    case ELBO_ACT_SILU:
        return elbo_silu(ctx, x);
    case ELBO_ACT_GELU:
        return elbo_gelu(ctx, x);
    case ELBO_ACT_TANH:
        return elbo_tanh(ctx, x);
    case ELBO_ACT_SIGMOID:
        return elbo_sigmoid(ctx, x);
    case ELBO_ACT_SOFTPLUS:
        return elbo_softplus(ctx, x);
    case ELBO_ACT_ELU:
        return elbo_elu(ctx, x, 1.0f); /* torch.nn.ELU default alpha */
    }
    elbo_error(ELBO_ERR_ARG, "activate: unknown activation %d", (int)act);
    return NULL;
}

/* ---- Linear: y = x W^T + b, W (out, in) ----------------------------------------------- */
elbo_status elbo_nn_linear_init(elbo_nn_linear *l, elbo_paramset *ps, const char *name, int in,
                                int out, int bias) {
    if (!l || !ps) return elbo_error(ELBO_ERR_ARG, "linear_init: NULL layer or paramset");
    memset(l, 0, sizeof *l);
    if (in <= 0) return bad_size("linear", name, "in_features", in);
    if (out <= 0) return bad_size("linear", name, "out_features", out);
    elbo_init u = uniform_fan_in(in);
    int64_t ws[2] = {out, in}, bs[1] = {out};
    if (!(l->weight = elbo_paramset_add(ps, name, "weight", 2, ws, u))) return elbo_last_status();
    if (bias && !(l->bias = elbo_paramset_add(ps, name, "bias", 1, bs, u)))
        return elbo_last_status();
    l->in_features = in;
    l->out_features = out;
    return ELBO_OK;
}

/* x (..., in) -> (..., out) */
elbo_tensor *elbo_nn_linear_forward(elbo_ctx *ctx, const elbo_nn_linear *l, elbo_tensor *x) {
    if (!x) return NULL;
    return elbo__in_layer(elbo_linear(ctx, x, l->weight, l->bias), l->weight);
}

/* ---- Conv2d: weight (out, in, k, k), fan_in = in k k ---------------------------------- */
elbo_status elbo_nn_conv2d_init(elbo_nn_conv2d *c, elbo_paramset *ps, const char *name, int in,
                                int out, int kernel, int stride, int pad, int bias) {
    if (!c || !ps) return elbo_error(ELBO_ERR_ARG, "conv2d_init: NULL layer or paramset");
    memset(c, 0, sizeof *c);
    if (in <= 0) return bad_size("conv2d", name, "in_channels", in);
    if (out <= 0) return bad_size("conv2d", name, "out_channels", out);
    if (kernel <= 0) return bad_size("conv2d", name, "kernel", kernel);
    if (stride <= 0) return bad_size("conv2d", name, "stride", stride);
    if (pad < 0) return bad_size("conv2d", name, "pad", pad);
    elbo_init u = uniform_fan_in((int64_t)in * kernel * kernel);
    int64_t ws[4] = {out, in, kernel, kernel}, bs[1] = {out};
    if (!(c->weight = elbo_paramset_add(ps, name, "weight", 4, ws, u))) return elbo_last_status();
    if (bias && !(c->bias = elbo_paramset_add(ps, name, "bias", 1, bs, u)))
        return elbo_last_status();
    c->in_channels = in;
    c->out_channels = out;
    c->kernel = kernel;
    c->stride = stride;
    c->pad = pad;
    return ELBO_OK;
}

/* x (B, in, H, W) -> (B, out, (H + 2 pad - k) / stride + 1, ...) */
elbo_tensor *elbo_nn_conv2d_forward(elbo_ctx *ctx, const elbo_nn_conv2d *c, elbo_tensor *x) {
    return elbo_nn_conv2d_forward_add(ctx, c, x, NULL, NULL);
}

/* The same plus e (B, out)[:, :, None, None] and r (the output's shape), each optional
 * (elbo_conv2d_add). */
elbo_tensor *elbo_nn_conv2d_forward_add(elbo_ctx *ctx, const elbo_nn_conv2d *c, elbo_tensor *x,
                                        elbo_tensor *e, elbo_tensor *r) {
    if (!x) return NULL;
    return elbo__in_layer(elbo_conv2d_add(ctx, x, c->weight, c->bias, e, r, c->stride, c->pad),
                          c->weight);
}

/* ---- GroupNorm / LayerNorm: weight 1, bias 0, eps 1e-5 -------------------------------- */
static elbo_status affine_params(elbo_tensor **w, elbo_tensor **b, elbo_paramset *ps,
                                 const char *name, int64_t n) {
    if (!(*w = elbo_paramset_add(ps, name, "weight", 1, &n, (elbo_init){ELBO_INIT_CONST, 1.0f})))
        return elbo_last_status();
    if (!(*b = elbo_paramset_add(ps, name, "bias", 1, &n, (elbo_init){ELBO_INIT_CONST, 0.0f})))
        return elbo_last_status();
    return ELBO_OK;
}

elbo_status elbo_nn_group_norm_init(elbo_nn_group_norm *g, elbo_paramset *ps, const char *name,
                                    int groups, int channels) {
    if (!g || !ps) return elbo_error(ELBO_ERR_ARG, "group_norm_init: NULL layer or paramset");
    memset(g, 0, sizeof *g);
    if (groups <= 0 || channels <= 0 || channels % groups)
        return elbo_error(ELBO_ERR_ARG, "group_norm %s: %d channels cannot be split into %d groups",
                          name ? name : "", channels, groups);
    elbo_status st = affine_params(&g->weight, &g->bias, ps, name, channels);
    if (st) return st;
    g->groups = groups;
    g->channels = channels;
    g->eps = 1e-5f;
    return ELBO_OK;
}

/* x (B, C, ...) -> same shape */
elbo_tensor *elbo_nn_group_norm_forward(elbo_ctx *ctx, const elbo_nn_group_norm *g,
                                        elbo_tensor *x) {
    if (!x) return NULL;
    return elbo__in_layer(elbo_group_norm(ctx, x, g->groups, g->weight, g->bias, g->eps),
                          g->weight);
}

elbo_status elbo_nn_layer_norm_init(elbo_nn_layer_norm *l, elbo_paramset *ps, const char *name,
                                    int dim) {
    if (!l || !ps) return elbo_error(ELBO_ERR_ARG, "layer_norm_init: NULL layer or paramset");
    memset(l, 0, sizeof *l);
    if (dim <= 0) return bad_size("layer_norm", name, "dim", dim);
    elbo_status st = affine_params(&l->weight, &l->bias, ps, name, dim);
    if (st) return st;
    l->dim = dim;
    l->eps = 1e-5f;
    return ELBO_OK;
}

/* x (..., D) -> same shape */
elbo_tensor *elbo_nn_layer_norm_forward(elbo_ctx *ctx, const elbo_nn_layer_norm *l,
                                        elbo_tensor *x) {
    if (!x) return NULL;
    return elbo__in_layer(elbo_layer_norm(ctx, x, l->weight, l->bias, l->eps), l->weight);
}

/* ---- Embedding: weight (num, dim) ~ N(0, 1) ------------------------------------------- */
elbo_status elbo_nn_embedding_init(elbo_nn_embedding *e, elbo_paramset *ps, const char *name,
                                   int num, int dim) {
    if (!e || !ps) return elbo_error(ELBO_ERR_ARG, "embedding_init: NULL layer or paramset");
    memset(e, 0, sizeof *e);
    if (num <= 0) return bad_size("embedding", name, "num", num);
    if (dim <= 0) return bad_size("embedding", name, "dim", dim);
    int64_t ws[2] = {num, dim};
    if (!(e->weight =
              elbo_paramset_add(ps, name, "weight", 2, ws, (elbo_init){ELBO_INIT_NORMAL, 1.0f})))
        return elbo_last_status();
    e->num = num;
    e->dim = dim;
    return ELBO_OK;
}

/* ids[0..n) -> (n, dim) */
elbo_tensor *elbo_nn_embedding_forward(elbo_ctx *ctx, const elbo_nn_embedding *e,
                                       const int32_t *ids, int64_t n) {
    return elbo__in_layer(elbo_embedding(ctx, e->weight, ids, n), e->weight);
}

/* ---- MLP: Linear, act, Linear, act, ..., Linear as torch.nn.Sequential ----------------- */
elbo_status elbo_nn_mlp_init(elbo_nn_mlp *m, elbo_paramset *ps, const char *name, int n_layers,
                             const int *sizes, elbo_activation act) {
    if (!m || !ps || !sizes) return elbo_error(ELBO_ERR_ARG, "mlp_init: NULL argument");
    memset(m, 0, sizeof *m);
    if (n_layers < 1 || n_layers > ELBO_MLP_MAX_LAYERS)
        return elbo_error(ELBO_ERR_ARG, "mlp %s: %d layers (1 to %d)", name ? name : "", n_layers,
                          ELBO_MLP_MAX_LAYERS);
    if (act < ELBO_ACT_NONE || act > ELBO_ACT_ELU)
        return elbo_error(ELBO_ERR_ARG, "mlp %s: unknown activation %d", name ? name : "",
                          (int)act);
    for (int i = 0; i < n_layers; i++) {
        /* Sequential indices: the activations take the odd slots. */
        char buf[256];
        if (!elbo_name_index(buf, sizeof buf, name, 2 * i)) return elbo_last_status();
        elbo_status st = elbo_nn_linear_init(&m->layers[i], ps, buf, sizes[i], sizes[i + 1], 1);
        if (st) return st;
    }
    m->n_layers = n_layers;
    m->act = act;
    return ELBO_OK;
}

/* x (..., sizes[0]) -> (..., sizes[n_layers]); a relu between layers runs fused with the
 * linear before it (elbo_linear_relu: the same bits). */
elbo_tensor *elbo_nn_mlp_forward(elbo_ctx *ctx, const elbo_nn_mlp *m, elbo_tensor *x) {
    for (int i = 0; i < m->n_layers && x; i++) {
        const elbo_nn_linear *l = &m->layers[i];
        int hidden = i + 1 < m->n_layers;
        if (hidden && m->act == ELBO_ACT_RELU) {
            x = elbo__in_layer(elbo_linear_relu(ctx, x, l->weight, l->bias), l->weight);
            continue;
        }
        x = elbo_nn_linear_forward(ctx, l, x);
        if (hidden) x = elbo_activate(ctx, x, m->act);
    }
    return x;
}
