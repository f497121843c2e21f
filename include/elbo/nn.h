/* elbo nn: named parameters and layers.
 *
 * Parameters live in an elbo_paramset: declared by the layers with dotted names that match
 * the PyTorch state_dict of the same module tree ("down.1.res.0.conv1.weight"), then
 * allocated once, as one flat block of values and one of gradients, by
 * elbo_paramset_finalize(), which also initialises them as PyTorch's defaults do:
 *   Linear, Conv2d: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in))
 *                   (kaiming_uniform_ with a = sqrt(5), and the bias rule of reset_parameters)
 *   GroupNorm, LayerNorm: weight 1, bias 0;   Embedding: N(0, 1).
 * Layer forward functions only record ops on the context's tape; they allocate nothing
 * outside the step arena.
 */
#ifndef ELBO_NN_H
#define ELBO_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameters ----------------------------------------------------------------------- */
typedef enum {
    ELBO_INIT_CONST,   /* every element = a */
    ELBO_INIT_UNIFORM, /* U(-a, a) */
    ELBO_INIT_NORMAL   /* N(0, a^2) */
} elbo_init_kind;

typedef struct {
    elbo_init_kind kind;
    float a;
} elbo_init;

typedef struct elbo_paramset elbo_paramset;

elbo_paramset *elbo_paramset_new(void);
void elbo_paramset_free(elbo_paramset *ps);
/* Declares a parameter named "prefix.name" ("name" when prefix is empty). Its data and grad
 * pointers are valid after elbo_paramset_finalize(). Returns NULL + error on a duplicate
 * name, a finalised set or no memory. */
elbo_tensor *elbo_paramset_add(elbo_paramset *ps, const char *prefix, const char *name, int ndim,
                               const int64_t *shape, elbo_init init);
/* Allocates the flat value and gradient blocks and initialises every parameter in
 * declaration order from one Philox stream seeded with seed. */
elbo_status elbo_paramset_finalize(elbo_paramset *ps, uint64_t seed);
int elbo_paramset_count(const elbo_paramset *ps);
elbo_tensor *elbo_paramset_get(const elbo_paramset *ps, int i);
elbo_tensor *elbo_paramset_find(const elbo_paramset *ps, const char *name);
/* Total number of scalars, and the flat blocks (parameter i is a contiguous range). */
int64_t elbo_paramset_numel(const elbo_paramset *ps);
float *elbo_paramset_data(elbo_paramset *ps);
float *elbo_paramset_grad(elbo_paramset *ps);
void elbo_paramset_zero_grad(elbo_paramset *ps);

/* Joins a prefix and a component into buf ("a.b", or "b" when the prefix is empty); returns
 * buf, or NULL + error when the name does not fit in len. */
const char *elbo_name_join(char *buf, size_t len, const char *prefix, const char *name);
/* The same with an integer component: "a.3". */
const char *elbo_name_index(char *buf, size_t len, const char *prefix, int i);

/* ---- layers --------------------------------------------------------------------------- */
typedef enum {
    ELBO_ACT_NONE,
    ELBO_ACT_RELU,
    ELBO_ACT_SILU,
    ELBO_ACT_GELU,
    ELBO_ACT_TANH,
    ELBO_ACT_SIGMOID,
    ELBO_ACT_SOFTPLUS,
    ELBO_ACT_ELU
} elbo_activation;
elbo_tensor *elbo_activate(elbo_ctx *ctx, elbo_tensor *x, elbo_activation act);
/* "none" | "relu" | "silu" | "gelu" | "tanh" | "sigmoid" | "softplus" | "elu". */
elbo_status elbo_activation_parse(const char *s, elbo_activation *out);
const char *elbo_activation_name(elbo_activation a);

/* torch.nn.Linear: weight (out, in), bias (out). */
typedef struct {
    elbo_tensor *weight, *bias;
    int in_features, out_features;
} elbo_nn_linear;
elbo_status elbo_nn_linear_init(elbo_nn_linear *l, elbo_paramset *ps, const char *name, int in,
                                int out, int bias);
elbo_tensor *elbo_nn_linear_forward(elbo_ctx *ctx, const elbo_nn_linear *l, elbo_tensor *x);

/* torch.nn.Conv2d: weight (out, in, k, k), bias (out). */
typedef struct {
    elbo_tensor *weight, *bias;
    int in_channels, out_channels, kernel, stride, pad;
} elbo_nn_conv2d;
elbo_status elbo_nn_conv2d_init(elbo_nn_conv2d *c, elbo_paramset *ps, const char *name, int in,
                                int out, int kernel, int stride, int pad, int bias);
elbo_tensor *elbo_nn_conv2d_forward(elbo_ctx *ctx, const elbo_nn_conv2d *c, elbo_tensor *x);
/* conv(x) + e[:, :, None, None] + r, e (B, out) and r each optional (elbo_conv2d_add). */
elbo_tensor *elbo_nn_conv2d_forward_add(elbo_ctx *ctx, const elbo_nn_conv2d *c, elbo_tensor *x,
                                        elbo_tensor *e, elbo_tensor *r);

/* torch.nn.GroupNorm(groups, channels, eps=1e-5, affine=True). */
typedef struct {
    elbo_tensor *weight, *bias;
    int groups, channels;
    float eps;
} elbo_nn_group_norm;
elbo_status elbo_nn_group_norm_init(elbo_nn_group_norm *g, elbo_paramset *ps, const char *name,
                                    int groups, int channels);
elbo_tensor *elbo_nn_group_norm_forward(elbo_ctx *ctx, const elbo_nn_group_norm *g, elbo_tensor *x);

/* torch.nn.LayerNorm(dim, eps=1e-5). */
typedef struct {
    elbo_tensor *weight, *bias;
    int dim;
    float eps;
} elbo_nn_layer_norm;
elbo_status elbo_nn_layer_norm_init(elbo_nn_layer_norm *l, elbo_paramset *ps, const char *name,
                                    int dim);
elbo_tensor *elbo_nn_layer_norm_forward(elbo_ctx *ctx, const elbo_nn_layer_norm *l, elbo_tensor *x);

/* torch.nn.Embedding(num, dim): weight (num, dim) ~ N(0, 1). */
typedef struct {
    elbo_tensor *weight;
    int num, dim;
} elbo_nn_embedding;
elbo_status elbo_nn_embedding_init(elbo_nn_embedding *e, elbo_paramset *ps, const char *name,
                                   int num, int dim);
elbo_tensor *elbo_nn_embedding_forward(elbo_ctx *ctx, const elbo_nn_embedding *e,
                                       const int32_t *ids, int64_t n);

/* MLP: Linear layers with an activation between them (none after the last), named as a
 * torch.nn.Sequential would name them: name.0, name.2, name.4, ... */
#define ELBO_MLP_MAX_LAYERS 16
typedef struct {
    elbo_nn_linear layers[ELBO_MLP_MAX_LAYERS];
    int n_layers;
    elbo_activation act;
} elbo_nn_mlp;
/* sizes[0..n_layers] are the widths: input, hidden..., output. */
elbo_status elbo_nn_mlp_init(elbo_nn_mlp *m, elbo_paramset *ps, const char *name, int n_layers,
                             const int *sizes, elbo_activation act);
elbo_tensor *elbo_nn_mlp_forward(elbo_ctx *ctx, const elbo_nn_mlp *m, elbo_tensor *x);

/* Sinusoidal embedding of t (Vaswani et al. 2017; DDPM): with half = dim/2,
 * f_i = exp(-ln(10000) i / half), i = 0..half-1, emb = [sin(t f), cos(t f)] -> (B, dim).
 * t is data (no gradient). */
elbo_tensor *elbo_timestep_embedding(elbo_ctx *ctx, const float *t, int64_t batch, int dim);
/* The same on the tape, from a tensor t (B) (dim even): d emb / d t flows back to t. */
elbo_tensor *elbo_timestep_embedding_t(elbo_ctx *ctx, elbo_tensor *t, int dim);

/* Time embedding MLP: Linear(dim, out) SiLU Linear(out, out), named name.0 and name.2. */
typedef struct {
    elbo_nn_linear lin1, lin2;
    int dim;
} elbo_nn_time_embedding;
elbo_status elbo_nn_time_embedding_init(elbo_nn_time_embedding *te, elbo_paramset *ps,
                                        const char *name, int dim, int out);
/* t (B) -> temb (B, out). */
elbo_tensor *elbo_nn_time_embedding_forward(elbo_ctx *ctx, const elbo_nn_time_embedding *te,
                                            const float *t, int64_t batch);
/* The same from a tensor t (B) on the tape. */
elbo_tensor *elbo_nn_time_embedding_forward_t(elbo_ctx *ctx, const elbo_nn_time_embedding *te,
                                              elbo_tensor *t);

/* Residual block with time embedding (DDPM; Ho et al. 2020):
 *   h = conv1(SiLU(norm1(x))) + temb_proj(temb)[:, :, None, None]
 *   h = conv2(dropout(SiLU(norm2(h))))
 *   out = h + skip(x), skip = Conv1x1 when in != out, else identity.
 * Parameters: norm1, conv1, temb_proj, norm2, conv2, skip. temb_dim 0: no time input. */
typedef struct {
    elbo_nn_group_norm norm1, norm2;
    elbo_nn_conv2d conv1, conv2, skip;
    elbo_nn_linear temb_proj;
    int in_channels, out_channels, has_skip, has_temb;
    float dropout;
} elbo_nn_resblock;
elbo_status elbo_nn_resblock_init(elbo_nn_resblock *r, elbo_paramset *ps, const char *name, int in,
                                  int out, int temb_dim, int groups, float dropout);
elbo_tensor *elbo_nn_resblock_forward(elbo_ctx *ctx, const elbo_nn_resblock *r, elbo_tensor *x,
                                      elbo_tensor *temb);

/* Self-attention block over the H*W positions (single head, as in DDPM):
 *   q, k, v = split(qkv(norm(x))) each (B, C, HW);
 *   a = softmax over keys of (q^T k / sqrt(C));   out = x + proj(v a^T reshaped to (B,C,H,W)).
 * Parameters: norm, qkv (Conv1x1 C -> 3C), proj (Conv1x1 C -> C). */
typedef struct {
    elbo_nn_group_norm norm;
    elbo_nn_conv2d qkv, proj;
    int channels;
} elbo_nn_attention;
elbo_status elbo_nn_attention_init(elbo_nn_attention *a, elbo_paramset *ps, const char *name,
                                   int channels, int groups);
elbo_tensor *elbo_nn_attention_forward(elbo_ctx *ctx, const elbo_nn_attention *a, elbo_tensor *x);

#ifdef __cplusplus
}
#endif
#endif
