/* elbo ops: differentiable tensor operations recorded on the tape.
 *
 * Every op returns a new tensor (or a view, where stated) in the context's step arena, or
 * NULL with elbo_last_error() set; a NULL input gives a NULL output. Gradients flow to every
 * input that requires them, parameters and data alike. Shape errors name the op and both
 * shapes. Broadcasting follows NumPy/PyTorch: shapes are aligned on their trailing axes and
 * an axis of size 1 stretches. Axis arguments may be negative (counted from the end).
 */
#ifndef ELBO_OPS_H
#define ELBO_OPS_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ELBO_REDUCE_MEAN = 0, ELBO_REDUCE_SUM = 1, ELBO_REDUCE_NONE = 2 } elbo_reduction;

/* ---- linear algebra (cblas_sgemm) ----------------------------------------------------- */
/* a (M,K) @ b (K,N) -> (M,N); with ta / tb set, a is given as (K,M) / b as (N,K). */
elbo_tensor *elbo_matmul(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b);
elbo_tensor *elbo_matmul_t(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int ta, int tb);
/* Batched: a (B,M,K) @ b (B,K,N) -> (B,M,N); ta / tb transpose the last two axes. */
elbo_tensor *elbo_bmm(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int ta, int tb);
/* y = x W^T + b: x (..., in), w (out, in) as in torch.nn.Linear, b (out) or NULL. */
elbo_tensor *elbo_linear(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b);
/* y = max(x W^T + b, 0): linear then relu in one pass (the relu applied as the product is
 * stored; backward masks dy by y > 0 in the bias gradient's pass). The bits of elbo_relu of
 * elbo_linear; one tape node, no pre-activation tensor. */
elbo_tensor *elbo_linear_relu(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b);

/* ---- convolution and resampling ------------------------------------------------------- */
/* x (B,C,H,W), w (OC,C,KH,KW), b (OC) or NULL -> (B,OC,OH,OW),
 * OH = (H + 2 pad - KH) / stride + 1 (cross-correlation, as torch.nn.functional.conv2d). */
elbo_tensor *elbo_conv2d(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b, int stride,
                         int pad);
elbo_tensor *elbo_conv2d_ex(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                            int stride_h, int stride_w, int pad_h, int pad_w);
/* y = ((conv2d(x, w, b) + e[:, :, None, None]) + r), e (B, OC) (or (B, OC, 1, 1)) and r of y's
 * shape each optional (NULL): a ResBlock's time-embedding term and its residual, added as
 * the unfused elbo_add calls would (the same bits) but, where the convolution runs Winograd
 * channel-last, in its output pass instead of two more passes over y; backward hands dY on
 * to r without a copy where it can (see elbo_tensor_retain_grad). stride and pad as
 * elbo_conv2d's. */
elbo_tensor *elbo_conv2d_add(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b,
                             elbo_tensor *e, elbo_tensor *r, int stride, int pad);
/* Nearest-neighbour upsampling by 2: (B,C,H,W) -> (B,C,2H,2W). */
elbo_tensor *elbo_upsample_nearest2x(elbo_ctx *ctx, elbo_tensor *x);
/* Average pooling with a k x k window and the given stride, no padding:
 * (B,C,H,W) -> (B,C,(H-k)/stride+1,(W-k)/stride+1). */
elbo_tensor *elbo_avg_pool2d(elbo_ctx *ctx, elbo_tensor *x, int k, int stride);

/* ---- normalisation -------------------------------------------------------------------- */
/* GroupNorm (Wu & He 2018): x (B,C,...) split into G groups of C/G channels;
 * y = (x - mean_g) / sqrt(var_g + eps) * gamma_c + beta_c, biased variance as in PyTorch.
 * gamma, beta (C) or NULL. */
elbo_tensor *elbo_group_norm(elbo_ctx *ctx, elbo_tensor *x, int groups, elbo_tensor *gamma,
                             elbo_tensor *beta, float eps);
/* SiLU(GroupNorm(x)) fused: one pass, the normalised values are not stored. */
elbo_tensor *elbo_group_norm_silu(elbo_ctx *ctx, elbo_tensor *x, int groups, elbo_tensor *gamma,
                                  elbo_tensor *beta, float eps);
/* LayerNorm over the last axis D: gamma, beta (D) or NULL. */
elbo_tensor *elbo_layer_norm(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *gamma, elbo_tensor *beta,
                             float eps);

/* ---- indexing and shape --------------------------------------------------------------- */
/* Rows of weight (V,D) picked by ids[0..n) -> (n,D); ids are copied. An id outside [0,V) is
 * an error. */
elbo_tensor *elbo_embedding(elbo_ctx *ctx, elbo_tensor *weight, const int32_t *ids, int64_t n);
/* Concatenation of n tensors along axis; all other axes must agree. */
elbo_tensor *elbo_concat(elbo_ctx *ctx, elbo_tensor *const *xs, int n, int axis);
elbo_tensor *elbo_cat2(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int axis);
/* x[..., start:start+len, ...] along axis: a view when every axis before it has size 1,
 * otherwise a copy. */
elbo_tensor *elbo_slice(elbo_ctx *ctx, elbo_tensor *x, int axis, int64_t start, int64_t len);
/* Splits x along axis into n parts of the given sizes (summing to the axis length) and
 * writes them to outs[0..n). */
elbo_status elbo_split(elbo_ctx *ctx, elbo_tensor *x, int axis, int n, const int64_t *sizes,
                       elbo_tensor **outs);
/* A view with a new shape of the same numel; one entry may be -1 (inferred). */
elbo_tensor *elbo_reshape(elbo_ctx *ctx, elbo_tensor *x, int ndim, const int64_t *shape);
elbo_tensor *elbo_reshape2(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1);
elbo_tensor *elbo_reshape3(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1, int64_t d2);
elbo_tensor *elbo_reshape4(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1, int64_t d2,
                           int64_t d3);
/* out.shape[i] = x.shape[perm[i]] (a copy), as torch.permute. */
elbo_tensor *elbo_permute(elbo_ctx *ctx, elbo_tensor *x, const int *perm);
elbo_tensor *elbo_transpose(elbo_ctx *ctx, elbo_tensor *x, int axis0, int axis1);
/* mask ? a : b elementwise, mask nonzero = true; mask, a and b broadcast together.
 * Gradients flow to a and b (not to the mask). */
elbo_tensor *elbo_where(elbo_ctx *ctx, elbo_tensor *mask, elbo_tensor *a, elbo_tensor *b);
/* Inverted dropout: in training mode zeroes each element with probability p and scales the
 * rest by 1/(1-p), drawing from the context's RNG; identity in evaluation mode. */
elbo_tensor *elbo_dropout(elbo_ctx *ctx, elbo_tensor *x, float p);

/* ---- arithmetic (broadcasting) -------------------------------------------------------- */
elbo_tensor *elbo_add(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b);
elbo_tensor *elbo_sub(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b);
elbo_tensor *elbo_mul(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b);
elbo_tensor *elbo_div(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b);
/* Scalar ops. */
elbo_tensor *elbo_scale(elbo_ctx *ctx, elbo_tensor *x, float s);           /* s x */
elbo_tensor *elbo_add_scalar(elbo_ctx *ctx, elbo_tensor *x, float c);      /* x + c */
elbo_tensor *elbo_affine(elbo_ctx *ctx, elbo_tensor *x, float s, float c); /* s x + c */
elbo_tensor *elbo_neg(elbo_ctx *ctx, elbo_tensor *x);                      /* -x */
elbo_tensor *elbo_pow_scalar(elbo_ctx *ctx, elbo_tensor *x, float p);      /* x^p */
/* Unary. */
elbo_tensor *elbo_exp(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_log(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_sqrt(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_square(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_abs(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_sin(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_cos(elbo_ctx *ctx, elbo_tensor *x);
/* max(lo, min(hi, x)); the gradient is 1 inside [lo, hi] and 0 outside. */
elbo_tensor *elbo_clamp(elbo_ctx *ctx, elbo_tensor *x, float lo, float hi);

/* ---- activations ---------------------------------------------------------------------- */
elbo_tensor *elbo_relu(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_silu(elbo_ctx *ctx, elbo_tensor *x); /* x sigmoid(x) */
elbo_tensor *elbo_gelu(elbo_ctx *ctx, elbo_tensor *x); /* x Phi(x), exact (erf) form */
elbo_tensor *elbo_sigmoid(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_tanh(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_softplus(elbo_ctx *ctx,
                           elbo_tensor *x); /* log(1 + e^x), as PyTorch (beta 1, threshold 20) */
elbo_tensor *elbo_elu(elbo_ctx *ctx, elbo_tensor *x, float alpha);

/* ---- reductions ----------------------------------------------------------------------- */
/* Over every element -> a scalar (ndim 0, numel 1). */
elbo_tensor *elbo_sum(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_mean(elbo_ctx *ctx, elbo_tensor *x);
/* Over the listed axes (keepdim keeps them as size 1). */
elbo_tensor *elbo_sum_axes(elbo_ctx *ctx, elbo_tensor *x, int n_axes, const int *axes, int keepdim);
elbo_tensor *elbo_mean_axes(elbo_ctx *ctx, elbo_tensor *x, int n_axes, const int *axes,
                            int keepdim);
elbo_tensor *elbo_sum_axis(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim);
elbo_tensor *elbo_mean_axis(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim);
/* Along one axis, max-subtracted for stability. */
elbo_tensor *elbo_softmax(elbo_ctx *ctx, elbo_tensor *x, int axis);
elbo_tensor *elbo_log_softmax(elbo_ctx *ctx, elbo_tensor *x, int axis);
/* log sum_i exp(x_i) along one axis (axis removed unless keepdim). */
elbo_tensor *elbo_logsumexp(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim);

/* ---- losses and log-likelihoods ------------------------------------------------------- */
/* (pred - target)^2. */
elbo_tensor *elbo_mse_loss(elbo_ctx *ctx, elbo_tensor *pred, elbo_tensor *target, elbo_reduction r);
/* -[y log sigmoid(l) + (1-y) log(1 - sigmoid(l))] = max(l,0) - l y + log(1 + e^-|l|). */
elbo_tensor *elbo_bce_with_logits(elbo_ctx *ctx, elbo_tensor *logits, elbo_tensor *target,
                                  elbo_reduction r);
/* -log softmax(logits)[label]: logits (N,K), labels[0..N) in [0,K). NONE gives (N). */
elbo_tensor *elbo_cross_entropy(elbo_ctx *ctx, elbo_tensor *logits, const int32_t *labels,
                                elbo_reduction r);
/* log N(x; mean, exp(log_var)) = -0.5 [log 2 pi + log_var + (x - mean)^2 / exp(log_var)],
 * elementwise with broadcasting; a log-likelihood (larger is better). */
elbo_tensor *elbo_gaussian_log_likelihood(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *mean,
                                          elbo_tensor *log_var, elbo_reduction r);
/* Discretized logistic log-likelihood of x in [-1,1] quantised to n_bins levels (256 for
 * 8-bit data; Salimans et al. 2017, PixelCNN++), bin half-width 1/(n_bins-1):
 *   log [sigma((x + d - mu)/s) - sigma((x - d - mu)/s)],  s = exp(log_scale),
 * with the edge bins open to -inf (x = -1) and +inf (x = 1), and the log-density at the bin
 * centre times the bin width where the bin probability underflows (< 1e-5). x, mean and
 * log_scale broadcast together. */
elbo_tensor *elbo_discretized_logistic_log_likelihood(elbo_ctx *ctx, elbo_tensor *x,
                                                      elbo_tensor *mean, elbo_tensor *log_scale,
                                                      int n_bins, elbo_reduction r);

#ifdef __cplusplus
}
#endif
#endif
