/* Reverse-mode autodiff on a tape. Each op that touches a tensor requiring a gradient
 * appends a node (its inputs, output and backward function) to the context's tape; backward
 * walks the nodes newest first, so every node's output gradient is complete before its
 * backward runs (the tape order is a topological order of the graph). */
#include "internal.h"

elbo_node *elbo__record_v(elbo_ctx *ctx, const char *op, elbo_tensor *out, elbo_backward_fn bw,
                          int *ok, int n_in, elbo_tensor *const *inputs) {
    *ok = 1;
    if (ctx->prof) elbo__prof_forward(ctx->prof, op);
    if (!ctx->grad_enabled) return NULL;
    int need = 0;
    for (int i = 0; i < n_in; i++)
        if (inputs[i] && inputs[i]->requires_grad) need = 1;
    if (!need) return NULL;
    elbo_node *n = elbo_ctx_alloc(ctx, sizeof *n);
    elbo_tensor **in =
        n ? elbo_ctx_alloc(ctx, sizeof(elbo_tensor *) * (size_t)(n_in ? n_in : 1)) : NULL;
    if (!n || !in) {
        *ok = 0;
        return NULL;
    }
    memset(n, 0, sizeof *n);
    for (int i = 0; i < n_in; i++) in[i] = inputs[i];
    n->backward = bw;
    n->op = op;
    n->out = out;
    n->n_in = n_in;
    n->in = in;
    n->prev = ctx->tape;
    ctx->tape = n;
    out->node = n;
    out->requires_grad = 1;
    return n;
}

elbo_node *elbo__record(elbo_ctx *ctx, const char *op, elbo_tensor *out, elbo_backward_fn bw,
                        int *ok, int n_in, ...) {
    elbo_tensor *in[16];
    va_list ap;
    va_start(ap, n_in);
    for (int i = 0; i < n_in && i < 16; i++) in[i] = va_arg(ap, elbo_tensor *);
    va_end(ap);
    return elbo__record_v(ctx, op, out, bw, ok, n_in < 16 ? n_in : 16, in);
}

static _Thread_local int backward_oom;

float *elbo__grad_fresh(elbo_ctx *ctx, elbo_tensor *t, int *fresh) {
    *fresh = 0;
    if (!t || !t->requires_grad) return NULL;
    if (!t->grad && t->grad_slot) { /* a parameter after zero_grad: its slot, to be stored */
        t->grad = t->grad_slot;
        *fresh = 1;
    } else if (!t->grad) {
        t->grad = elbo_ctx_alloc(ctx, (size_t)t->numel * sizeof(float));
        if (!t->grad) {
            backward_oom = 1;
            return NULL;
        }
        *fresh = 1;
    }
    return t->grad;
}

float *elbo__backward_alloc(elbo_ctx *ctx, size_t bytes) {
    float *p = elbo_ctx_alloc(ctx, bytes);
    if (!p) backward_oom = 1;
    return p;
}

int elbo__grad_pass_on(elbo_tensor *x, const elbo_tensor *y) {
    if (!x || !x->requires_grad || x->grad || x->grad_slot || !y->grad || y->retain_grad ||
        !y->node || x->numel != y->numel)
        return 0;
    x->grad = y->grad;
    return 1;
}

float *elbo__grad(elbo_ctx *ctx, elbo_tensor *t) {
    int fresh;
    float *g = elbo__grad_fresh(ctx, t, &fresh);
    if (fresh) elbo__zero(g, t->numel);
    return g;
}

float *elbo_tensor_grad(elbo_ctx *ctx, elbo_tensor *t) {
    if (!t) return NULL;
    int rg = t->requires_grad;
    t->requires_grad = 1;
    float *g = elbo__grad(ctx, t);
    t->requires_grad = rg;
    return g;
}

elbo_status elbo_backward_with(elbo_ctx *ctx, elbo_tensor *out, const float *grad_out) {
    if (!out)
        return elbo_error(ELBO_ERR_ARG, "backward: NULL output (an earlier op failed: %s)",
                          elbo_last_error());
    if (!out->requires_grad)
        return elbo_error(ELBO_ERR_STATE,
                          "backward: the output does not depend on anything that requires a "
                          "gradient (or gradients were disabled)");
    backward_oom = 0;
    float *g = elbo__grad(ctx, out);
    if (!g) return elbo_error(ELBO_ERR_NOMEM, "backward: out of memory");
    for (int64_t i = 0; i < out->numel; i++) g[i] += grad_out ? grad_out[i] : 1.0f;
    for (elbo_node *n = ctx->tape; n; n = n->prev) {
        if (!n->out->grad) continue; /* nothing flowed back to this node */
        if (ctx->prof) {
            double t0 = elbo__now_s();
            n->backward(ctx, n);
            elbo__prof_backward(ctx->prof, n->op, elbo__now_s() - t0);
        } else {
            n->backward(ctx, n);
        }
        if (backward_oom) return elbo_error(ELBO_ERR_NOMEM, "backward (%s): out of memory", n->op);
    }
    return ELBO_OK;
}

elbo_status elbo_backward(elbo_ctx *ctx, elbo_tensor *loss) {
    if (loss && loss->numel != 1) {
        char s[96];
        return elbo_error(ELBO_ERR_SHAPE, "backward: loss has shape %s, expected a scalar",
                          elbo_shape_str(loss, s, sizeof s));
    }
    return elbo_backward_with(ctx, loss, NULL);
}
