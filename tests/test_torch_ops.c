/* Every op of include/elbo/ops.h against PyTorch: forward output and the gradients of all
 * differentiable inputs for a random upstream gradient. The fixtures (tests/fixtures/op_*.bin)
 * are written by tools/gen_fixtures.py (`make fixtures`): inputs drawn in float32, reference
 * evaluated by PyTorch in float64 and rounded to float32, so the tolerances below bound
 * elbo's own float32 error. A check passes when |got - want| <= atol + rtol |want|. */
#include "test.h"

#include <string.h>

typedef struct {
    float atol, rtol;
} tol;

/* Data movement (copy, permute, concat, slice, gather): the values are copied, bit-exact. */
static const tol T_EXACT = {1e-30f, 0.0f};
/* Elementwise maths: a few ulp of libm (expf, erff, ...) and at most ~6 terms summed by a
 * broadcast gradient or a pooling window. */
static const tol T_ELEM = {1e-6f, 1e-5f};
/* GEMM / convolution with K up to 256 (inputs scaled by 1/sqrt(K), outputs O(1)): float32
 * sums in a different order (OpenBLAS blocking, FMA) give ~sqrt(K) ulp. */
static const tol T_GEMM = {1e-5f, 1e-4f};
/* Reductions of up to 120 terms, softmax / logsumexp (exp, log and a sum). */
static const tol T_REDUCE = {1e-5f, 1e-5f};
/* Group / layer norm: mean and variance over <= 36 values, 1/sqrt, and a backward made of
 * cancelling terms (g - mean(g) - xhat mean(g xhat)) / sigma. */
static const tol T_NORM = {1e-5f, 1e-4f};
/* Losses and log-likelihoods: elementwise exp/log, then a sum of <= 35 terms. The
 * discretized logistic's bin probability is a difference of two sigmoids that cancels badly
 * in float32 (~1e-7 / p in log p); elbo evaluates it in double, so it meets this bound too. */
static const tol T_LOSS = {1e-5f, 1e-5f};

/* ---- fixture case: loaded entries, the op's inputs, the comparison -------------------- */
#define FXC_MAX_IN 8
typedef struct {
    fx_file f;
    elbo_ctx *ctx;
    int n_in;
    const char *in_name[FXC_MAX_IN];
    elbo_tensor *in[FXC_MAX_IN];
    const char *missing; /* first entry the builder asked for that the fixture lacks */
} fxc;

/* The f32 entry `name` as an op input; it requires a gradient when the fixture holds
 * grad_<name>. Missing entries give NULL (the op then returns NULL). */
static elbo_tensor *fxc_in(fxc *c, const char *name) {
    elbo_tensor *t = fx_tensor(c->ctx, &c->f, name);
    if (!t) {
        if (!c->missing) c->missing = name;
        return NULL;
    }
    char g[160];
    snprintf(g, sizeof g, "grad_%s", name);
    t->requires_grad = fx_get(&c->f, g) != NULL;
    if (c->n_in < FXC_MAX_IN) {
        c->in_name[c->n_in] = name;
        c->in[c->n_in++] = t;
    }
    return t;
}

/* An optional input (bias, gamma): NULL when the fixture has none. */
static elbo_tensor *fxc_opt(fxc *c, const char *name) {
    return fx_get(&c->f, name) ? fxc_in(c, name) : NULL;
}

static const fx_entry *fxc_entry(fxc *c, const char *name, int dtype) {
    const fx_entry *e = fx_get(&c->f, name);
    if (!e || e->dtype != dtype) {
        if (!c->missing) c->missing = name;
        return NULL;
    }
    return e;
}

/* int32 / f32 parameter entries ("args", "fargs", "ids", ...); zeros when missing. */
static const int32_t *fxc_i32(fxc *c, const char *name, int64_t *n) {
    static const int32_t zeros[8];
    const fx_entry *e = fxc_entry(c, name, 1);
    if (n) *n = e ? e->numel : 0;
    return e ? (const int32_t *)e->data : zeros;
}
static const float *fxc_f32(fxc *c, const char *name) {
    static const float zeros[8];
    const fx_entry *e = fxc_entry(c, name, 0);
    return e ? (const float *)e->data : zeros;
}
#define ARGS(c) fxc_i32(c, "args", NULL)
#define FARGS(c) fxc_f32(c, "fargs")
#define IN(name) fxc_in(c, name)

static void shape_str(int ndim, const int64_t *s, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "(");
    for (int i = 0; i < ndim && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, i ? ", %lld" : "%lld", (long long)s[i]);
    if (k < len) snprintf(buf + k, len - k, ")");
}

/* y against "y", then backward with "gy" and every input's gradient against grad_<input>. */
static void fxc_check(fxc *c, elbo_tensor *y, tol ty, tol tg) {
    CHECK_MSG(!c->missing, "fixture entry %s missing", c->missing);
    CHECK_MSG(y != NULL, "op failed: %s", elbo_last_error());
    const fx_entry *ey = fx_get(&c->f, "y"), *eg = fx_get(&c->f, "gy");
    CHECK(ey && eg && ey->numel == eg->numel);
    int same = y->ndim == ey->ndim;
    for (int i = 0; same && i < y->ndim; i++) same = y->shape[i] == ey->shape[i];
    char a[96], b[96];
    shape_str(y->ndim, y->shape, a, sizeof a);
    shape_str(ey->ndim, ey->shape, b, sizeof b);
    CHECK_MSG(same, "output shape %s, torch %s", a, b);
    CHECK_CLOSE_ARR("y", y->data, (const float *)ey->data, y->numel, ty.atol, ty.rtol);
    /* every grad_* of the fixture belongs to an input of the op */
    for (int k = 0; k < c->f.count; k++) {
        const char *nm = c->f.e[k].name;
        if (strncmp(nm, "grad_", 5)) continue;
        int found = 0;
        for (int i = 0; i < c->n_in; i++) found |= !strcmp(c->in_name[i], nm + 5);
        CHECK_MSG(found, "fixture has %s but the test gives no such input", nm);
    }
    CHECK_MSG(elbo_backward_with(c->ctx, y, (const float *)eg->data) == ELBO_OK, "backward: %s",
              elbo_last_error());
    for (int i = 0; i < c->n_in; i++) {
        char g[160];
        snprintf(g, sizeof g, "grad_%s", c->in_name[i]);
        const fx_entry *e = fx_get(&c->f, g);
        if (!e) continue;
        elbo_tensor *t = c->in[i];
        CHECK_MSG(t->grad != NULL, "no gradient reached input %s", c->in_name[i]);
        CHECK(e->numel == t->numel);
        CHECK_CLOSE_ARR(g, t->grad, (const float *)e->data, t->numel, tg.atol, tg.rtol);
    }
}

typedef elbo_tensor *(*fxc_build)(fxc *c);

/* Loads op_<name>.bin, builds the op from it and checks output and gradients. */
static void run_case(const char *name, fxc_build build, tol ty, tol tg) {
    fxc c;
    memset(&c, 0, sizeof c);
    char file[160];
    snprintf(file, sizeof file, "op_%s", name);
    if (fx_load(&c.f, file) != 0) {
        test_fail(__FILE__, __LINE__, "%s", elbo_last_error());
        return;
    }
    c.ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *y = build(&c);
    fxc_check(&c, y, ty, tg);
    elbo_ctx_free(c.ctx);
    fx_free(&c.f);
}

#define TORCH_CASE(name, ty, tg, expr)                                                             \
    static elbo_tensor *build_##name(fxc *c) { return (expr); }                                    \
    TEST(torch_##name) { run_case(#name, build_##name, ty, tg); }

/* ---- linear algebra ------------------------------------------------------------------- */
TORCH_CASE(matmul, T_GEMM, T_GEMM, elbo_matmul(c->ctx, IN("a"), IN("b")))
TORCH_CASE(matmul_k256, T_GEMM, T_GEMM, elbo_matmul(c->ctx, IN("a"), IN("b")))
#define MATMUL_T elbo_matmul_t(c->ctx, IN("a"), IN("b"), ARGS(c)[0], ARGS(c)[1])
TORCH_CASE(matmul_ta, T_GEMM, T_GEMM, MATMUL_T)
TORCH_CASE(matmul_tb, T_GEMM, T_GEMM, MATMUL_T)
TORCH_CASE(matmul_tatb, T_GEMM, T_GEMM, MATMUL_T)
#define BMM elbo_bmm(c->ctx, IN("a"), IN("b"), ARGS(c)[0], ARGS(c)[1])
TORCH_CASE(bmm, T_GEMM, T_GEMM, BMM)
TORCH_CASE(bmm_ta, T_GEMM, T_GEMM, BMM)
TORCH_CASE(bmm_tb, T_GEMM, T_GEMM, BMM)
TORCH_CASE(bmm_tatb, T_GEMM, T_GEMM, BMM)
TORCH_CASE(linear_3d, T_GEMM, T_GEMM, elbo_linear(c->ctx, IN("x"), IN("w"), IN("b")))
TORCH_CASE(linear_nobias, T_GEMM, T_GEMM, elbo_linear(c->ctx, IN("x"), IN("w"), NULL))

/* ---- convolution and resampling ------------------------------------------------------- */
/* args = [stride_h, stride_w, pad_h, pad_w] */
#define CONV elbo_conv2d(c->ctx, IN("x"), IN("w"), fxc_opt(c, "b"), ARGS(c)[0], ARGS(c)[2])
TORCH_CASE(conv2d_k3s1p1, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_k3s2p1, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_k1, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_k5p2, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_k16c16, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_chunks, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_chunks_tdx, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_k1_direct, T_GEMM, T_GEMM, CONV)
TORCH_CASE(conv2d_ex, T_GEMM, T_GEMM,
           elbo_conv2d_ex(c->ctx, IN("x"), IN("w"), fxc_opt(c, "b"), ARGS(c)[0], ARGS(c)[1],
                          ARGS(c)[2], ARGS(c)[3]))
/* the gradient sums the 4 copies of each input pixel */
TORCH_CASE(upsample2x, T_EXACT, T_ELEM, elbo_upsample_nearest2x(c->ctx, IN("x")))
#define POOL elbo_avg_pool2d(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1])
TORCH_CASE(avg_pool_k2s2, T_ELEM, T_ELEM, POOL)
TORCH_CASE(avg_pool_k3s1, T_ELEM, T_ELEM, POOL)
TORCH_CASE(avg_pool_k2s2_odd, T_ELEM, T_ELEM, POOL)

/* ---- normalisation -------------------------------------------------------------------- */
#define GN                                                                                         \
    elbo_group_norm(c->ctx, IN("x"), ARGS(c)[0], fxc_opt(c, "gamma"), fxc_opt(c, "beta"),          \
                    FARGS(c)[0])
TORCH_CASE(group_norm_g2, T_NORM, T_NORM, GN)
TORCH_CASE(group_norm_g4, T_NORM, T_NORM, GN)
TORCH_CASE(group_norm_3d_noaffine, T_NORM, T_NORM, GN)
#define GN_SILU                                                                                    \
    elbo_group_norm_silu(c->ctx, IN("x"), ARGS(c)[0], fxc_opt(c, "gamma"), fxc_opt(c, "beta"),     \
                         FARGS(c)[0])
TORCH_CASE(group_norm_silu_g2, T_NORM, T_NORM, GN_SILU)
TORCH_CASE(group_norm_silu_3d_noaffine, T_NORM, T_NORM, GN_SILU)
#define LN elbo_layer_norm(c->ctx, IN("x"), fxc_opt(c, "gamma"), fxc_opt(c, "beta"), FARGS(c)[0])
TORCH_CASE(layer_norm, T_NORM, T_NORM, LN)
TORCH_CASE(layer_norm_noaffine, T_NORM, T_NORM, LN)

/* ---- indexing and shape --------------------------------------------------------------- */
static elbo_tensor *embedding_op(fxc *c) {
    int64_t n;
    const int32_t *ids = fxc_i32(c, "ids", &n);
    return elbo_embedding(c->ctx, IN("weight"), ids, n);
}
/* the gradient sums the rows of repeated ids */
TORCH_CASE(embedding, T_EXACT, T_ELEM, embedding_op(c))

static elbo_tensor *concat_op(fxc *c) {
    elbo_tensor *xs[3] = {IN("x0"), IN("x1"), IN("x2")};
    return elbo_concat(c->ctx, xs, 3, ARGS(c)[0]);
}
TORCH_CASE(concat, T_EXACT, T_EXACT, concat_op(c))
TORCH_CASE(cat2, T_EXACT, T_EXACT, elbo_cat2(c->ctx, IN("a"), IN("b"), ARGS(c)[0]))
TORCH_CASE(slice, T_EXACT, T_EXACT, elbo_slice(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1], ARGS(c)[2]))

/* x split along axis 1 into sizes args[0..2], concatenated back as (p2, p0, p1). */
static elbo_tensor *split_op(fxc *c) {
    const int32_t *a = ARGS(c);
    int64_t sizes[3] = {a[0], a[1], a[2]};
    elbo_tensor *p[3];
    if (elbo_split(c->ctx, IN("x"), 1, 3, sizes, p) != ELBO_OK) return NULL;
    elbo_tensor *q[3] = {p[2], p[0], p[1]};
    return elbo_concat(c->ctx, q, 3, 1);
}
TORCH_CASE(split, T_EXACT, T_EXACT, split_op(c))
TORCH_CASE(reshape, T_EXACT, T_EXACT, elbo_reshape2(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1]))

static elbo_tensor *permute_op(fxc *c) {
    int64_t n;
    const int32_t *p = fxc_i32(c, "perm", &n);
    int perm[ELBO_MAX_DIMS] = {0};
    for (int64_t i = 0; i < n && i < ELBO_MAX_DIMS; i++) perm[i] = p[i];
    return elbo_permute(c->ctx, IN("x"), perm);
}
TORCH_CASE(permute, T_EXACT, T_EXACT, permute_op(c))
TORCH_CASE(transpose, T_EXACT, T_EXACT, elbo_transpose(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1]))
TORCH_CASE(transpose_neg, T_EXACT, T_EXACT, elbo_transpose(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1]))

/* ---- arithmetic (broadcasting) -------------------------------------------------------- */
/* b1: (2,3,4)&(4)  b2: (2,3,4)&(3,1)  b3: (2,1,4)&(1,3,1)  same: (3,4)&(3,4)  rev: (4)&(2,3,4) */
#define BIN(op) elbo_##op(c->ctx, IN("a"), IN("b"))
TORCH_CASE(add_b1, T_ELEM, T_ELEM, BIN(add))
TORCH_CASE(add_b2, T_ELEM, T_ELEM, BIN(add))
TORCH_CASE(add_b3, T_ELEM, T_ELEM, BIN(add))
TORCH_CASE(add_same, T_ELEM, T_ELEM, BIN(add))
TORCH_CASE(sub_b1, T_ELEM, T_ELEM, BIN(sub))
TORCH_CASE(sub_b2, T_ELEM, T_ELEM, BIN(sub))
TORCH_CASE(sub_b3, T_ELEM, T_ELEM, BIN(sub))
TORCH_CASE(sub_rev, T_ELEM, T_ELEM, BIN(sub))
TORCH_CASE(mul_b1, T_ELEM, T_ELEM, BIN(mul))
TORCH_CASE(mul_b2, T_ELEM, T_ELEM, BIN(mul))
TORCH_CASE(mul_b3, T_ELEM, T_ELEM, BIN(mul))
TORCH_CASE(mul_same, T_ELEM, T_ELEM, BIN(mul))
TORCH_CASE(div_b1, T_ELEM, T_ELEM, BIN(div))
TORCH_CASE(div_b2, T_ELEM, T_ELEM, BIN(div))
TORCH_CASE(div_b3, T_ELEM, T_ELEM, BIN(div))
TORCH_CASE(div_rev, T_ELEM, T_ELEM, BIN(div))
/* mask (3,1), a (2,3,4), b (1,4): b's gradient sums over the broadcast axes */
TORCH_CASE(where, T_EXACT, T_ELEM, elbo_where(c->ctx, IN("mask"), IN("a"), IN("b")))

TORCH_CASE(scale, T_ELEM, T_ELEM, elbo_scale(c->ctx, IN("x"), FARGS(c)[0]))
TORCH_CASE(add_scalar, T_ELEM, T_ELEM, elbo_add_scalar(c->ctx, IN("x"), FARGS(c)[0]))
TORCH_CASE(affine, T_ELEM, T_ELEM, elbo_affine(c->ctx, IN("x"), FARGS(c)[0], FARGS(c)[1]))
TORCH_CASE(neg, T_EXACT, T_EXACT, elbo_neg(c->ctx, IN("x")))
TORCH_CASE(pow_scalar, T_ELEM, T_ELEM, elbo_pow_scalar(c->ctx, IN("x"), FARGS(c)[0]))
TORCH_CASE(pow_scalar_int, T_ELEM, T_ELEM, elbo_pow_scalar(c->ctx, IN("x"), FARGS(c)[0]))
TORCH_CASE(pow_scalar_neg, T_ELEM, T_ELEM, elbo_pow_scalar(c->ctx, IN("x"), FARGS(c)[0]))

/* ---- unary and activations ------------------------------------------------------------ */
TORCH_CASE(exp, T_ELEM, T_ELEM, elbo_exp(c->ctx, IN("x")))
TORCH_CASE(log, T_ELEM, T_ELEM, elbo_log(c->ctx, IN("x")))
TORCH_CASE(sqrt, T_ELEM, T_ELEM, elbo_sqrt(c->ctx, IN("x")))
TORCH_CASE(square, T_ELEM, T_ELEM, elbo_square(c->ctx, IN("x")))
TORCH_CASE(abs, T_ELEM, T_ELEM, elbo_abs(c->ctx, IN("x")))
TORCH_CASE(clamp, T_ELEM, T_ELEM, elbo_clamp(c->ctx, IN("x"), FARGS(c)[0], FARGS(c)[1]))
TORCH_CASE(relu, T_ELEM, T_ELEM, elbo_relu(c->ctx, IN("x")))
TORCH_CASE(silu, T_ELEM, T_ELEM, elbo_silu(c->ctx, IN("x")))
TORCH_CASE(gelu, T_ELEM, T_ELEM, elbo_gelu(c->ctx, IN("x")))
TORCH_CASE(sigmoid, T_ELEM, T_ELEM, elbo_sigmoid(c->ctx, IN("x")))
TORCH_CASE(tanh, T_ELEM, T_ELEM, elbo_tanh(c->ctx, IN("x")))
TORCH_CASE(sin, T_ELEM, T_ELEM, elbo_sin(c->ctx, IN("x")))
TORCH_CASE(cos, T_ELEM, T_ELEM, elbo_cos(c->ctx, IN("x")))
TORCH_CASE(softplus, T_ELEM, T_ELEM, elbo_softplus(c->ctx, IN("x")))
TORCH_CASE(elu, T_ELEM, T_ELEM, elbo_elu(c->ctx, IN("x"), FARGS(c)[0]))
TORCH_CASE(elu_alpha, T_ELEM, T_ELEM, elbo_elu(c->ctx, IN("x"), FARGS(c)[0]))

/* ---- reductions ----------------------------------------------------------------------- */
TORCH_CASE(sum, T_REDUCE, T_EXACT, elbo_sum(c->ctx, IN("x")))
TORCH_CASE(mean, T_REDUCE, T_ELEM, elbo_mean(c->ctx, IN("x")))

/* args = [keepdim, axes...] */
static elbo_tensor *axes_op(fxc *c, int mean) {
    int64_t n;
    const int32_t *a = fxc_i32(c, "args", &n);
    int axes[ELBO_MAX_DIMS] = {0}, na = (int)(n > 1 ? n - 1 : 0);
    for (int i = 0; i < na && i < ELBO_MAX_DIMS; i++) axes[i] = a[1 + i];
    if (na == 1)
        return mean ? elbo_mean_axis(c->ctx, IN("x"), axes[0], a[0])
                    : elbo_sum_axis(c->ctx, IN("x"), axes[0], a[0]);
    return mean ? elbo_mean_axes(c->ctx, IN("x"), na, axes, a[0])
                : elbo_sum_axes(c->ctx, IN("x"), na, axes, a[0]);
}
TORCH_CASE(sum_axes_keep, T_REDUCE, T_EXACT, axes_op(c, 0))
TORCH_CASE(sum_axes, T_REDUCE, T_EXACT, axes_op(c, 0))
TORCH_CASE(sum_axis, T_REDUCE, T_EXACT, axes_op(c, 0))
TORCH_CASE(sum_axis_keep, T_REDUCE, T_EXACT, axes_op(c, 0))
TORCH_CASE(mean_axes, T_REDUCE, T_ELEM, axes_op(c, 1))
TORCH_CASE(mean_axis, T_REDUCE, T_ELEM, axes_op(c, 1))
TORCH_CASE(mean_axis_keep, T_REDUCE, T_ELEM, axes_op(c, 1))

TORCH_CASE(softmax_last, T_REDUCE, T_REDUCE, elbo_softmax(c->ctx, IN("x"), ARGS(c)[0]))
TORCH_CASE(softmax_axis1, T_REDUCE, T_REDUCE, elbo_softmax(c->ctx, IN("x"), ARGS(c)[0]))
TORCH_CASE(log_softmax_last, T_REDUCE, T_REDUCE, elbo_log_softmax(c->ctx, IN("x"), ARGS(c)[0]))
TORCH_CASE(log_softmax_axis1, T_REDUCE, T_REDUCE, elbo_log_softmax(c->ctx, IN("x"), ARGS(c)[0]))
TORCH_CASE(logsumexp_last, T_REDUCE, T_REDUCE,
           elbo_logsumexp(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1]))
TORCH_CASE(logsumexp_axis1_keep, T_REDUCE, T_REDUCE,
           elbo_logsumexp(c->ctx, IN("x"), ARGS(c)[0], ARGS(c)[1]))

/* ---- losses and log-likelihoods (args[0] = reduction: 0 mean, 1 sum, 2 none) ---------- */
#define RED(c) ((elbo_reduction)ARGS(c)[0])
#define MSE elbo_mse_loss(c->ctx, IN("pred"), IN("target"), RED(c))
TORCH_CASE(mse_mean, T_LOSS, T_LOSS, MSE)
TORCH_CASE(mse_sum, T_LOSS, T_LOSS, MSE)
TORCH_CASE(mse_none, T_LOSS, T_LOSS, MSE)
#define BCE elbo_bce_with_logits(c->ctx, IN("logits"), IN("target"), RED(c))
TORCH_CASE(bce_logits_mean, T_LOSS, T_LOSS, BCE)
TORCH_CASE(bce_logits_none, T_LOSS, T_LOSS, BCE)
#define CE elbo_cross_entropy(c->ctx, IN("logits"), fxc_i32(c, "labels", NULL), RED(c))
TORCH_CASE(cross_entropy_mean, T_LOSS, T_LOSS, CE)
TORCH_CASE(cross_entropy_sum, T_LOSS, T_LOSS, CE)
TORCH_CASE(cross_entropy_none, T_LOSS, T_LOSS, CE)
/* x (2,3,4), mean (2,3,4), log_var (3,1) */
#define GLL elbo_gaussian_log_likelihood(c->ctx, IN("x"), IN("mean"), IN("log_var"), RED(c))
TORCH_CASE(gaussian_ll_mean, T_LOSS, T_LOSS, GLL)
TORCH_CASE(gaussian_ll_sum, T_LOSS, T_LOSS, GLL)
TORCH_CASE(gaussian_ll_none, T_LOSS, T_LOSS, GLL)
/* x (4,8) on the 256-level grid incl. -1 and 1 (no gradient), mean (4,8), log_scale (4,8)
 * or (1,8); the "none"/"sum" fixtures include two underflowing tail bins */
#define DLL                                                                                        \
    elbo_discretized_logistic_log_likelihood(c->ctx, IN("x"), IN("mean"), IN("log_scale"),         \
                                             ARGS(c)[1], RED(c))
TORCH_CASE(dlogistic_ll_none, T_LOSS, T_LOSS, DLL)
TORCH_CASE(dlogistic_ll_sum, T_LOSS, T_LOSS, DLL)
TORCH_CASE(dlogistic_ll_mean_bcast, T_LOSS, T_LOSS, DLL)
