/* The blocks of a DDPM-style UNet (Ho et al. 2020, and its PyTorch ports): sinusoidal
 * timestep embedding, time-embedding MLP, residual block with a time input, and single-head
 * self-attention over the pixels. Each forward is a plain composition of ops, written so
 * that the chains worth fusing are visible; GroupNorm + SiLU runs as the fused op
 * elbo_group_norm_silu (the same parameters and results, one pass instead of two). */
#include "nn/nn_internal.h"

#include <math.h>

/* ---- sinusoidal timestep embedding ---------------------------------------------------- */
/* t[0..B) -> (B, dim): emb[b, i] = sin(t_b f_i), emb[b, half + i] = cos(t_b f_i),
 * f_i = exp(-ln(10000) i / half), half = dim / 2 (a last zero column when dim is odd, as
 * DDPM pads). The frequencies and the products t_b f_i are rounded to float, as a float32
 * PyTorch reference computes them; sin and cos of that argument are accurate. t is data: the
 * result is a new leaf, not on the tape. */
elbo_tensor *elbo_timestep_embedding(elbo_ctx *ctx, const float *t, int64_t batch, int dim) {
    if (!t || batch < 0 || dim <= 0) {
        elbo_error(ELBO_ERR_ARG,
                   "timestep_embedding: need t, batch >= 0 and dim > 0 (got %s, %lld, %d)",
                   t ? "t" : "NULL", (long long)batch, dim);
        return NULL;
    }
    elbo_tensor *emb = elbo_tensor_new2(ctx, batch, dim);
    if (!emb) return NULL;
    int half = dim / 2;
    float *f = elbo_ctx_alloc(ctx, (size_t)(half ? half : 1) * sizeof(float));
    if (!f) return NULL;
    for (int i = 0; i < half; i++) f[i] = (float)exp(-log(10000.0) * i / half);
    float *e = emb->data;
    ELBO_PARALLEL_FOR(
        batch * dim > ELBO_PAR_MIN, for (int64_t b = 0; b < batch; b++) {
            float *row = e + b * dim;
            for (int i = 0; i < half; i++) {
                float arg = t[b] * f[i];
                row[i] = (float)sin((double)arg);
                row[half + i] = (float)cos((double)arg);
            }
            if (dim % 2) row[dim - 1] = 0.0f;
        });
    return emb;
}

elbo_tensor *elbo_timestep_embedding_t(elbo_ctx *ctx, elbo_tensor *t, int dim) {
    if (!t) return NULL;
    if (t->ndim != 1 || dim < 2 || dim % 2) {
        char s[64];
        elbo_error(ELBO_ERR_SHAPE, "timestep_embedding: t %s must be (B) and dim %d even",
                   elbo_shape_str(t, s, sizeof s), dim);
        return NULL;
    }
    const int half = dim / 2;
    elbo_tensor *f = elbo_tensor_new2(ctx, 1, half);
    if (!f) return NULL;
    for (int i = 0; i < half; i++) f->data[i] = (float)exp(-log(10000.0) * i / half);
    elbo_tensor *arg = elbo_mul(ctx, elbo_reshape2(ctx, t, t->shape[0], 1), f); /* (B, half) */
    return elbo_cat2(ctx, elbo_sin(ctx, arg), elbo_cos(ctx, arg), 1);
}

/* ---- time embedding: Linear(dim, out) SiLU Linear(out, out) --------------------------- */
elbo_status elbo_nn_time_embedding_init(elbo_nn_time_embedding *te, elbo_paramset *ps,
                                        const char *name, int dim, int out) {
    if (!te || !ps) return elbo_error(ELBO_ERR_ARG, "time_embedding_init: NULL layer or paramset");
    memset(te, 0, sizeof *te);
    char buf[256];
    elbo_status st;
    if (!elbo_name_index(buf, sizeof buf, name, 0)) return elbo_last_status();
    if ((st = elbo_nn_linear_init(&te->lin1, ps, buf, dim, out, 1))) return st;
    if (!elbo_name_index(buf, sizeof buf, name, 2)) return elbo_last_status();
    if ((st = elbo_nn_linear_init(&te->lin2, ps, buf, out, out, 1))) return st;
    te->dim = dim;
    return ELBO_OK;
}

/* t[0..B) -> (B, out) */
elbo_tensor *elbo_nn_time_embedding_forward(elbo_ctx *ctx, const elbo_nn_time_embedding *te,
                                            const float *t, int64_t batch) {
    elbo_tensor *h = elbo_timestep_embedding(ctx, t, batch, te->dim);
    h = elbo_silu(ctx, elbo_nn_linear_forward(ctx, &te->lin1, h));
    return elbo_nn_linear_forward(ctx, &te->lin2, h);
}

elbo_tensor *elbo_nn_time_embedding_forward_t(elbo_ctx *ctx, const elbo_nn_time_embedding *te,
                                              elbo_tensor *t) {
    elbo_tensor *h = elbo_timestep_embedding_t(ctx, t, te->dim);
    h = elbo_silu(ctx, elbo_nn_linear_forward(ctx, &te->lin1, h));
    return elbo_nn_linear_forward(ctx, &te->lin2, h);
}

/* ---- residual block ------------------------------------------------------------------- */
/* SiLU(g(x)) for a GroupNorm layer g, errors prefixed with the layer's name. */
static elbo_tensor *norm_silu(elbo_ctx *ctx, const elbo_nn_group_norm *g, elbo_tensor *x) {
    if (!x) return NULL;
    return elbo__in_layer(elbo_group_norm_silu(ctx, x, g->groups, g->weight, g->bias, g->eps),
                          g->weight);
}

elbo_status elbo_nn_resblock_init(elbo_nn_resblock *r, elbo_paramset *ps, const char *name, int in,
                                  int out, int temb_dim, int groups, float dropout) {
    if (!r || !ps) return elbo_error(ELBO_ERR_ARG, "resblock_init: NULL block or paramset");
    memset(r, 0, sizeof *r);
    if (temb_dim < 0 || !(dropout >= 0 && dropout < 1))
        return elbo_error(ELBO_ERR_ARG, "resblock %s: temb_dim %d (>= 0), dropout %g (in [0, 1))",
                          name ? name : "", temb_dim, dropout);
    char b[6][256];
    const char *comp[6] = {"norm1", "conv1", "temb_proj", "norm2", "conv2", "skip"};
    for (int i = 0; i < 6; i++)
        if (!elbo_name_join(b[i], sizeof b[i], name, comp[i])) return elbo_last_status();
    elbo_status st;
    if ((st = elbo_nn_group_norm_init(&r->norm1, ps, b[0], groups, in))) return st;
    if ((st = elbo_nn_conv2d_init(&r->conv1, ps, b[1], in, out, 3, 1, 1, 1))) return st;
    if (temb_dim > 0 && (st = elbo_nn_linear_init(&r->temb_proj, ps, b[2], temb_dim, out, 1)))
        return st;
    if ((st = elbo_nn_group_norm_init(&r->norm2, ps, b[3], groups, out))) return st;
    if ((st = elbo_nn_conv2d_init(&r->conv2, ps, b[4], out, out, 3, 1, 1, 1))) return st;
    if (in != out && (st = elbo_nn_conv2d_init(&r->skip, ps, b[5], in, out, 1, 1, 0, 1))) return st;
    r->in_channels = in;
    r->out_channels = out;
    r->has_skip = in != out;
    r->has_temb = temb_dim > 0;
    r->dropout = dropout;
    return ELBO_OK;
}

/* x (B, in, H, W), temb (B, temb_dim) -> (B, out, H, W):
 *   h = conv1(SiLU(norm1(x))) + temb_proj(temb)[:, :, None, None]
 *   h = conv2(dropout(SiLU(norm2(h))));   out = h + skip(x).
 * temb is ignored when the block has no time input. */
elbo_tensor *elbo_nn_resblock_forward(elbo_ctx *ctx, const elbo_nn_resblock *r, elbo_tensor *x,
                                      elbo_tensor *temb) {
    if (!x || (r->has_temb && !temb)) {
        if (x)
            elbo_error(ELBO_ERR_ARG, "%s: the block takes a time embedding but temb is NULL",
                       r->conv1.weight ? r->conv1.weight->name : "resblock");
        return NULL;
    }
    /* The time-embedding term and the residual are added by the convolutions themselves
     * (elbo_conv2d_add: the bits of conv1(.) + tp and conv2(.) + s, without their passes). */
    elbo_tensor *h = norm_silu(ctx, &r->norm1, x), *tp = NULL;
    if (r->has_temb) {
        tp = elbo_nn_linear_forward(ctx, &r->temb_proj, temb); /* (B, out) */
        if (!tp) return NULL;
    }
    h = elbo_nn_conv2d_forward_add(ctx, &r->conv1, h, tp, NULL);
    h = norm_silu(ctx, &r->norm2, h);
    if (r->dropout > 0) h = elbo_dropout(ctx, h, r->dropout);
    if (!h) return NULL; /* keep the main path's error: the skip path would overwrite it */
    elbo_tensor *s = r->has_skip ? elbo_nn_conv2d_forward(ctx, &r->skip, x) : x;
    if (!s) return NULL;
    return elbo_nn_conv2d_forward_add(ctx, &r->conv2, h, NULL, s);
}

/* ---- self-attention ------------------------------------------------------------------- */
elbo_status elbo_nn_attention_init(elbo_nn_attention *a, elbo_paramset *ps, const char *name,
                                   int channels, int groups) {
    if (!a || !ps) return elbo_error(ELBO_ERR_ARG, "attention_init: NULL block or paramset");
    memset(a, 0, sizeof *a);
    char buf[256];
    elbo_status st;
    if (!elbo_name_join(buf, sizeof buf, name, "norm")) return elbo_last_status();
    if ((st = elbo_nn_group_norm_init(&a->norm, ps, buf, groups, channels))) return st;
    if (!elbo_name_join(buf, sizeof buf, name, "qkv")) return elbo_last_status();
    if ((st = elbo_nn_conv2d_init(&a->qkv, ps, buf, channels, 3 * channels, 1, 1, 0, 1))) return st;
    if (!elbo_name_join(buf, sizeof buf, name, "proj")) return elbo_last_status();
    if ((st = elbo_nn_conv2d_init(&a->proj, ps, buf, channels, channels, 1, 1, 0, 1))) return st;
    a->channels = channels;
    return ELBO_OK;
}

/* x (B, C, H, W) -> (B, C, H, W), N = H W positions:
 *   q, k, v = split(qkv(norm(x))) along channels, each (B, C, N)
 *   a = softmax_j(q^T k / sqrt(C))  (B, N, N), row i: query position i over keys j
 *   out = x + proj((v a^T) as (B, C, H, W)),  (v a^T)[c, i] = sum_j v[c, j] a[i, j]. */
elbo_tensor *elbo_nn_attention_forward(elbo_ctx *ctx, const elbo_nn_attention *a, elbo_tensor *x) {
    if (!x) return NULL;
    if (x->ndim != 4 || x->shape[1] != a->channels) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE, "%s: input %s, expected (B, %d, H, W)",
                   a->qkv.weight ? a->qkv.weight->name : "attention",
                   elbo_shape_str(x, s, sizeof s), a->channels);
        return NULL;
    }
    int64_t B = x->shape[0], C = a->channels, H = x->shape[2], W = x->shape[3], N = H * W;
    elbo_tensor *qkv =
        elbo_nn_conv2d_forward(ctx, &a->qkv, elbo_nn_group_norm_forward(ctx, &a->norm, x));
    qkv = elbo_reshape3(ctx, qkv, B, 3 * C, N);
    elbo_tensor *q = elbo_slice(ctx, qkv, 1, 0, C);
    elbo_tensor *k = elbo_slice(ctx, qkv, 1, C, C);
    elbo_tensor *v = elbo_slice(ctx, qkv, 1, 2 * C, C);
    elbo_tensor *scores =
        elbo_scale(ctx, elbo_bmm(ctx, q, k, 1, 0), (float)(1.0 / sqrt((double)C)));
    elbo_tensor *attn = elbo_softmax(ctx, scores, -1);
    elbo_tensor *o = elbo_bmm(ctx, v, attn, 0, 1); /* (B, C, N) */
    /* x + proj(o), the residual added by the convolution (elbo_conv2d_add, the same bits) */
    return elbo_nn_conv2d_forward_add(ctx, &a->proj, elbo_reshape4(ctx, o, B, C, H, W), NULL, x);
}
