/* Elementwise unary ops and activations: y = f(x), dx += dy * f'(x). */
#include "internal.h"

#include <math.h>

/* ---- relu: y = max(x, 0), f' = [x > 0] ---------------------------------------------- */
static void relu_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    const float *gy = y->grad, *xd = x->data;
#pragma omp parallel for schedule(static) if (x->numel > ELBO_PAR_MIN)
    for (int64_t i = 0; i < x->numel; i++) gx[i] += xd[i] > 0 ? gy[i] : 0.0f;
}

elbo_tensor *elbo_relu(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    elbo_tensor *y = elbo__new_like(ctx, x);
    if (!y) return NULL;
    const float *xd = x->data;
    float *yd = y->data;
#pragma omp parallel for schedule(static) if (x->numel > ELBO_PAR_MIN)
    for (int64_t i = 0; i < x->numel; i++) yd[i] = xd[i] > 0 ? xd[i] : 0.0f;
    int ok;
    elbo__record(ctx, "relu", y, relu_backward, &ok, 1, x);
    return ok ? y : NULL;
}
