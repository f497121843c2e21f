/* Elementwise unary ops and activations: y = f(x), dx += dy * f'(x). */
#include "internal.h"
#include "vmath.h"

#include <math.h>

/* ---- relu: y = max(x, 0), f' = [x > 0] ---------------------------------------------- */
static void relu_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    const float *gy = y->grad, *xd = x->data;
    ELBO_PARALLEL_FOR(x->numel > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < x->numel; i++) gx[i] += xd[i] > 0 ? gy[i] : 0.0f;);
}

elbo_tensor *elbo_relu(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    elbo_tensor *y = elbo__new_like(ctx, x);
    if (!y) return NULL;
    const float *xd = x->data;
    float *yd = y->data;
    ELBO_PARALLEL_FOR(x->numel > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < x->numel; i++) yd[i] = xd[i] > 0 ? xd[i] : 0.0f;);
    int ok;
    elbo__record(ctx, "relu", y, relu_backward, &ok, 1, x);
    return ok ? y : NULL;
}

/* ---- the pattern for the rest: y = FWD(x), dx += BWD(x, y, g) with g = dy ---------------
 * a0, a1 are the op's scalar parameters (n->farg[0..1]). */
/* gx[i] (= or +=) BWD over every element; x, y, g are x[i], y[i], dy[i]. */
#define UNARY_GRAD_LOOP(ASSIGN, BWD)                                                               \
    ELBO_PARALLEL_FOR(                                                                             \
        xt->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < xt->numel; i++) {                        \
            const float x = xd[i], y = yd[i], g = gy[i];                                           \
            (void)x;                                                                               \
            (void)y;                                                                               \
            gx[i] ASSIGN(BWD);                                                                     \
        })

#define UNARY_OP(NAME, OPNAME, FWD, BWD)                                                           \
    static void NAME##_backward(elbo_ctx *ctx, elbo_node *n) {                                     \
        elbo_tensor *xt = n->in[0], *yt = n->out;                                                  \
        int fresh;                                                                                 \
        float *gx = elbo__grad_fresh(ctx, xt, &fresh);                                             \
        if (!gx) return;                                                                           \
        const float *gy = yt->grad, *xd = xt->data, *yd = yt->data;                                \
        const float a0 = n->farg[0], a1 = n->farg[1];                                              \
        (void)a0;                                                                                  \
        (void)a1;                                                                                  \
        if (fresh)                                                                                 \
            UNARY_GRAD_LOOP(=, BWD);                                                               \
        else                                                                                       \
            UNARY_GRAD_LOOP(+=, BWD);                                                              \
    }                                                                                              \
    static elbo_tensor *NAME##_op(elbo_ctx *ctx, elbo_tensor *xt, float a0, float a1) {            \
        (void)a0;                                                                                  \
        (void)a1;                                                                                  \
        if (!xt) return NULL;                                                                      \
        elbo_tensor *yt = elbo__new_like(ctx, xt);                                                 \
        if (!yt) return NULL;                                                                      \
        const float *xd = xt->data;                                                                \
        float *yd = yt->data;                                                                      \
        ELBO_PARALLEL_FOR(                                                                         \
            xt->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < xt->numel; i++) {                    \
                const float x = xd[i];                                                             \
                yd[i] = (FWD);                                                                     \
            });                                                                                    \
        int ok;                                                                                    \
        elbo_node *n = elbo__record(ctx, OPNAME, yt, NAME##_backward, &ok, 1, xt);                 \
        if (!ok) return NULL;                                                                      \
        if (n) {                                                                                   \
            n->farg[0] = a0;                                                                       \
            n->farg[1] = a1;                                                                       \
        }                                                                                          \
        return yt;                                                                                 \
    }

/* softplus as torch.nn.functional.softplus (beta 1, threshold 20):
 * x for x > 20, else log1p(exp(-|x|)) + max(x, 0) (never overflows). */
static inline float softplus_f(float x) {
    float sp = elbo__log1pf(elbo__expf(-fabsf(x))) + elbo__selectf(x > 0.0f, x, 0.0f);
    return elbo__selectf(x > 20.0f, x, sp);
}

/* gelu (Hendrycks & Gimpel 2016), exact form as torch's default: x Phi(x);
 * d/dx = Phi(x) + x phi(x), phi(x) = e^(-x^2/2) / sqrt(2 pi). */
#define INV_SQRT2PI 0.39894228040143268f
static inline float gelu_grad_f(float x) {
    return elbo__normcdff(x) + x * INV_SQRT2PI * elbo__expf(-0.5f * x * x);
}

/* pow with the exponents that come up often done exactly. */
static inline float pow_f(float x, float p) {
    if (p == 2.0f) return x * x;
    if (p == 1.0f) return x;
    return powf(x, p);
}

/* Scalar ops. */
UNARY_OP(scale, "scale", a0 *x, a0 *g)
UNARY_OP(add_scalar, "add_scalar", x + a0, g)
UNARY_OP(affine, "affine", a0 *x + a1, a0 *g)
UNARY_OP(neg, "neg", -x, -g)
/* d x^p = p x^(p-1) (0 for p = 0, as torch). */
UNARY_OP(pow_scalar, "pow_scalar", pow_f(x, a0), a0 == 0.0f ? 0.0f : g * a0 * pow_f(x, a0 - 1.0f))
/* Unary. */
UNARY_OP(exp, "exp", elbo__expf(x), g *y)
UNARY_OP(log, "log", elbo__logf(x), g / x)
UNARY_OP(sqrt, "sqrt", sqrtf(x), g * 0.5f / y)
UNARY_OP(square, "square", x *x, 2.0f * x * g)
/* d|x| = sign(x), 0 at 0 (as torch). */
UNARY_OP(abs, "abs", fabsf(x), x > 0 ? g : (x < 0 ? -g : 0.0f))
/* max(lo, min(hi, x)); gradient 1 on [lo, hi] (edges included, as torch). */
UNARY_OP(clamp, "clamp", fmaxf(a0, fminf(a1, x)), (x >= a0 && x <= a1) ? g : 0.0f)
/* For sinusoidal embeddings of a differentiated time (VDM's learned schedule); evaluated in
 * double and rounded, as elbo_timestep_embedding, so the two embeddings agree bit for bit. */
UNARY_OP(sin, "sin", (float)sin((double)x), g *(float)cos((double)x))
UNARY_OP(cos, "cos", (float)cos((double)x), -g * (float)sin((double)x))
/* Activations. silu: x s(x), d = s (1 + x (1 - s)). */
UNARY_OP(silu, "silu", x *elbo__sigmoidf(x),
         g *elbo__sigmoidf(x) * (1.0f + x * (1.0f - elbo__sigmoidf(x))))
UNARY_OP(gelu, "gelu", x *elbo__normcdff(x), g *gelu_grad_f(x))
UNARY_OP(sigmoid, "sigmoid", elbo__sigmoidf(x), g *y *(1.0f - y))
UNARY_OP(tanh, "tanh", elbo__tanhf(x), g *(1.0f - y * y))
/* d softplus = sigmoid(x) (1 above the threshold). */
UNARY_OP(softplus, "softplus", softplus_f(x), elbo__selectf(x > 20.0f, g, g *elbo__sigmoidf(x)))
/* elu (Clevert et al. 2016): x for x > 0, alpha (e^x - 1) otherwise; d = alpha e^x below 0. */
UNARY_OP(elu, "elu", elbo__selectf(x > 0, x, a0 *elbo__expm1f(x)),
         elbo__selectf(x > 0, g, g *a0 *elbo__expf(x)))

elbo_tensor *elbo_scale(elbo_ctx *ctx, elbo_tensor *x, float s) { return scale_op(ctx, x, s, 0); }
elbo_tensor *elbo_add_scalar(elbo_ctx *ctx, elbo_tensor *x, float c) {
    return add_scalar_op(ctx, x, c, 0);
}
elbo_tensor *elbo_affine(elbo_ctx *ctx, elbo_tensor *x, float s, float c) {
    return affine_op(ctx, x, s, c);
}
elbo_tensor *elbo_neg(elbo_ctx *ctx, elbo_tensor *x) { return neg_op(ctx, x, 0, 0); }
elbo_tensor *elbo_pow_scalar(elbo_ctx *ctx, elbo_tensor *x, float p) {
    return pow_scalar_op(ctx, x, p, 0);
}
elbo_tensor *elbo_exp(elbo_ctx *ctx, elbo_tensor *x) { return exp_op(ctx, x, 0, 0); }
elbo_tensor *elbo_log(elbo_ctx *ctx, elbo_tensor *x) { return log_op(ctx, x, 0, 0); }
elbo_tensor *elbo_sqrt(elbo_ctx *ctx, elbo_tensor *x) { return sqrt_op(ctx, x, 0, 0); }
elbo_tensor *elbo_square(elbo_ctx *ctx, elbo_tensor *x) { return square_op(ctx, x, 0, 0); }
elbo_tensor *elbo_sin(elbo_ctx *ctx, elbo_tensor *x) { return sin_op(ctx, x, 0, 0); }
elbo_tensor *elbo_cos(elbo_ctx *ctx, elbo_tensor *x) { return cos_op(ctx, x, 0, 0); }
elbo_tensor *elbo_abs(elbo_ctx *ctx, elbo_tensor *x) { return abs_op(ctx, x, 0, 0); }
elbo_tensor *elbo_clamp(elbo_ctx *ctx, elbo_tensor *x, float lo, float hi) {
    if (x && !(lo <= hi)) {
        elbo_error(ELBO_ERR_ARG, "clamp: lo %g > hi %g", (double)lo, (double)hi);
        return NULL;
    }
    return clamp_op(ctx, x, lo, hi);
}
elbo_tensor *elbo_silu(elbo_ctx *ctx, elbo_tensor *x) { return silu_op(ctx, x, 0, 0); }
elbo_tensor *elbo_gelu(elbo_ctx *ctx, elbo_tensor *x) { return gelu_op(ctx, x, 0, 0); }
elbo_tensor *elbo_sigmoid(elbo_ctx *ctx, elbo_tensor *x) { return sigmoid_op(ctx, x, 0, 0); }
elbo_tensor *elbo_tanh(elbo_ctx *ctx, elbo_tensor *x) { return tanh_op(ctx, x, 0, 0); }
elbo_tensor *elbo_softplus(elbo_ctx *ctx, elbo_tensor *x) { return softplus_op(ctx, x, 0, 0); }
elbo_tensor *elbo_elu(elbo_ctx *ctx, elbo_tensor *x, float alpha) {
    return elu_op(ctx, x, alpha, 0);
}
