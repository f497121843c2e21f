/* Broadcasting arithmetic (NumPy/PyTorch rules) and where. The gradient of an input that
 * was broadcast is the upstream gradient times the local derivative, summed over the
 * broadcast axes (elbo__bc_grad: one thread per gradient element, fixed order). */
#include "broadcast.h"

ELBO_BC_KERNEL1(k_copy, v0)
ELBO_BC_KERNEL2(k_add, v0 + v1)
ELBO_BC_KERNEL2(k_sub, v0 - v1)
ELBO_BC_KERNEL2(k_mul, v0 *v1)
ELBO_BC_KERNEL2(k_div, v0 / v1)
/* d(a/b)/db = -a / b^2, times gy: (gy, a, b). */
ELBO_BC_KERNEL3(k_div_db, -v0 *v1 / (v2 * v2))

/* y = f(a, b) over the broadcast shape of a and b. */
static elbo_tensor *binary(elbo_ctx *ctx, const char *op, elbo_tensor *a, elbo_tensor *b,
                           elbo__bc_fn fwd, elbo_backward_fn bw) {
    if (!a || !b) return NULL;
    elbo_tensor *ts[2] = {a, b};
    int nd;
    int64_t shape[ELBO_MAX_DIMS];
    if (elbo__bc_shape(op, 2, ts, &nd, shape)) return NULL;
    elbo_tensor *y = elbo_tensor_new(ctx, nd, shape);
    if (!y) return NULL;
    elbo__bc p;
    const elbo_tensor *ops[3] = {y, a, b};
    elbo__bc_plan_t(&p, nd, shape, 3, ops);
    const float *in[2] = {a->data, b->data};
    elbo__bc_apply(&p, y->data, 0, 1.0f, in, fwd, NULL);
    int ok;
    elbo__record(ctx, op, y, bw, &ok, 2, a, b);
    return ok ? y : NULL;
}

/* x->grad += scale * sum over broadcast axes of f(gy, extra...). */
static void grad2(elbo_ctx *ctx, elbo_node *n, elbo_tensor *x, float scale, elbo__bc_fn fn,
                  const elbo_tensor *e1, const elbo_tensor *e2) {
    const elbo_tensor *y = n->out;
    const elbo_tensor *sh[3] = {y, e1, e2};
    const float *pt[3] = {y->grad, e1 ? e1->data : NULL, e2 ? e2->data : NULL};
    elbo__bc_grad(ctx, x, y->ndim, y->shape, scale, 1 + (e1 != NULL) + (e2 != NULL), sh, pt, fn,
                  NULL);
}

/* ---- a + b, a - b: da += gy, db += +-gy ------------------------------------------------ */
/* da = gy is y's buffer passed on when a can take it (elbo__grad_pass_on; else a copy), or
 * else db = gy for a + b. When a and b are one tensor its gradient is passed on first and
 * then has gy added (a + a) or subtracted (a - a): 2 gy or 0, as with two copies. */
static void add_backward(elbo_ctx *ctx, elbo_node *n) {
    if (elbo__grad_pass_on(n->in[0], n->out))
        grad2(ctx, n, n->in[1], 1.0f, k_copy, NULL, NULL);
    else if (n->in[0] != n->in[1] && elbo__grad_pass_on(n->in[1], n->out))
        grad2(ctx, n, n->in[0], 1.0f, k_copy, NULL, NULL);
    else {
        grad2(ctx, n, n->in[0], 1.0f, k_copy, NULL, NULL);
        grad2(ctx, n, n->in[1], 1.0f, k_copy, NULL, NULL);
    }
}

static void sub_backward(elbo_ctx *ctx, elbo_node *n) {
    if (!elbo__grad_pass_on(n->in[0], n->out)) grad2(ctx, n, n->in[0], 1.0f, k_copy, NULL, NULL);
    grad2(ctx, n, n->in[1], -1.0f, k_copy, NULL, NULL);
}

/* ---- a b: da += gy b, db += gy a ------------------------------------------------------- */
static void mul_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *a = n->in[0], *b = n->in[1];
    grad2(ctx, n, a, 1.0f, k_mul, b, NULL);
    grad2(ctx, n, b, 1.0f, k_mul, a, NULL);
}

/* ---- a / b: da += gy / b, db += -gy a / b^2 -------------------------------------------- */
static void div_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *a = n->in[0], *b = n->in[1];
    grad2(ctx, n, a, 1.0f, k_div, b, NULL);
    grad2(ctx, n, b, 1.0f, k_div_db, a, b);
}

elbo_tensor *elbo_add(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b) {
    return binary(ctx, "add", a, b, k_add, add_backward);
}
elbo_tensor *elbo_sub(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b) {
    return binary(ctx, "sub", a, b, k_sub, sub_backward);
}
elbo_tensor *elbo_mul(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b) {
    return binary(ctx, "mul", a, b, k_mul, mul_backward);
}
elbo_tensor *elbo_div(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b) {
    return binary(ctx, "div", a, b, k_div, div_backward);
}

/* ---- where: y = mask != 0 ? a : b; da += [mask] gy, db += [!mask] gy --------------------- */
ELBO_BC_KERNEL3(k_where, v0 != 0.0f ? v1 : v2)
ELBO_BC_KERNEL2(k_where_da, v1 != 0.0f ? v0 : 0.0f)
ELBO_BC_KERNEL2(k_where_db, v1 != 0.0f ? 0.0f : v0)

static void where_backward(elbo_ctx *ctx, elbo_node *n) {
    const elbo_tensor *mask = n->saved;
    grad2(ctx, n, n->in[0], 1.0f, k_where_da, mask, NULL);
    grad2(ctx, n, n->in[1], 1.0f, k_where_db, mask, NULL);
}

elbo_tensor *elbo_where(elbo_ctx *ctx, elbo_tensor *mask, elbo_tensor *a, elbo_tensor *b) {
    if (!mask || !a || !b) return NULL;
    elbo_tensor *ts[3] = {mask, a, b};
    int nd;
    int64_t shape[ELBO_MAX_DIMS];
    if (elbo__bc_shape("where", 3, ts, &nd, shape)) return NULL;
    elbo_tensor *y = elbo_tensor_new(ctx, nd, shape);
    if (!y) return NULL;
    elbo__bc p;
    const elbo_tensor *ops[4] = {y, mask, a, b};
    elbo__bc_plan_t(&p, nd, shape, 4, ops);
    const float *in[3] = {mask->data, a->data, b->data};
    elbo__bc_apply(&p, y->data, 0, 1.0f, in, k_where, NULL);
    int ok;
    /* The mask is kept in saved, not as an input: it gets no gradient. */
    elbo_node *node = elbo__record(ctx, "where", y, where_backward, &ok, 2, a, b);
    if (!ok) return NULL;
    if (node) node->saved = mask;
    return y;
}
