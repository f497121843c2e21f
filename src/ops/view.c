/* Views: reshape and slice share their base's memory when no copy is needed. Their
 * backward adds the view's gradient into the base's; for a reshape whose base has no
 * gradient yet, the view's gradient buffer is passed on (elbo__grad_pass_on: no copy, no
 * add). */
#include "internal.h"

static void reshape_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    if (!x->requires_grad || elbo__grad_pass_on(x, y)) return;
    float *gx = elbo__grad(ctx, x); /* a parameter's slot, a retained y, or more to add */
    if (gx) elbo__acc(gx, y->grad, x->numel);
}

elbo_tensor *elbo_reshape(elbo_ctx *ctx, elbo_tensor *x, int ndim, const int64_t *shape) {
    if (!x) return NULL;
    if (ndim < 0 || ndim > ELBO_MAX_DIMS) {
        elbo_error(ELBO_ERR_SHAPE, "reshape: %d dimensions (at most %d)", ndim, ELBO_MAX_DIMS);
        return NULL;
    }
    int64_t s[ELBO_MAX_DIMS] = {0}, known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        s[i] = shape[i];
        if (s[i] == -1 && infer < 0)
            infer = i;
        else if (s[i] < 0) {
            elbo_error(ELBO_ERR_SHAPE, "reshape: bad size %lld in axis %d", (long long)s[i], i);
            return NULL;
        } else
            known *= s[i];
    }
    if (infer >= 0) s[infer] = known ? x->numel / known : 0;
    if (elbo_shape_numel(ndim, s) != x->numel) {
        char a[96], b[96] = "(";
        size_t k = 1;
        for (int i = 0; i < ndim; i++)
            k += (size_t)snprintf(b + k, sizeof b - k, i ? ", %lld" : "%lld", (long long)shape[i]);
        snprintf(b + k, sizeof b - k, ")");
        elbo_error(ELBO_ERR_SHAPE, "reshape: cannot view shape %s as %s",
                   elbo_shape_str(x, a, sizeof a), b);
        return NULL;
    }
    elbo_tensor *y = elbo_tensor_wrap(ctx, x->data, ndim, s);
    if (!y) return NULL;
    y->base = x->base ? x->base : x;
    int ok;
    elbo__record(ctx, "reshape", y, reshape_backward, &ok, 1, x);
    return ok ? y : NULL;
}

elbo_tensor *elbo_reshape2(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return elbo_reshape(ctx, x, 2, s);
}
elbo_tensor *elbo_reshape3(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return elbo_reshape(ctx, x, 3, s);
}
elbo_tensor *elbo_reshape4(elbo_ctx *ctx, elbo_tensor *x, int64_t d0, int64_t d1, int64_t d2,
                           int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    return elbo_reshape(ctx, x, 4, s);
}

/* x viewed as (outer, len_axis, inner). */
static void axis_split(const elbo_tensor *x, int axis, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

/* y = x[.., start:start+len, ..]: backward adds gy into the slice of gx. */
static void slice_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    int axis = (int)n->iarg[0];
    int64_t start = n->iarg[1], len = y->shape[axis], outer, inner;
    axis_split(x, axis, &outer, &inner);
    int64_t L = x->shape[axis];
    ELBO_PARALLEL_FOR(
        y->numel > ELBO_PAR_MIN, for (int64_t o = 0; o < outer; o++) {
            float *dst = gx + (o * L + start) * inner;
            const float *src = y->grad + o * len * inner;
            for (int64_t i = 0; i < len * inner; i++) dst[i] += src[i];
        });
}

elbo_tensor *elbo_slice(elbo_ctx *ctx, elbo_tensor *x, int axis, int64_t start, int64_t len) {
    if (!x) return NULL;
    int a = elbo__axis("slice", x, axis);
    if (a < 0) return NULL;
    if (start < 0 || len < 0 || start + len > x->shape[a]) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE, "slice: range [%lld, %lld) outside axis %d of shape %s",
                   (long long)start, (long long)(start + len), axis,
                   elbo_shape_str(x, s, sizeof s));
        return NULL;
    }
    int64_t outer, inner, shape[ELBO_MAX_DIMS];
    axis_split(x, a, &outer, &inner);
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[a] = len;
    elbo_tensor *y;
    if (outer == 1) { /* contiguous: a view */
        y = elbo_tensor_wrap(ctx, x->data + start * inner, x->ndim, shape);
        if (!y) return NULL;
        y->base = x->base ? x->base : x;
    } else {
        y = elbo_tensor_new(ctx, x->ndim, shape);
        if (!y) return NULL;
        int64_t L = x->shape[a];
        ELBO_PARALLEL_FOR(y->numel > ELBO_PAR_MIN,
                          for (int64_t o = 0; o < outer; o++)
                              memcpy(y->data + o * len * inner, x->data + (o * L + start) * inner,
                                     (size_t)(len * inner) * sizeof(float)););
    }
    int ok;
    elbo_node *n = elbo__record(ctx, "slice", y, slice_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = a;
        n->iarg[1] = start;
    }
    return y;
}

elbo_status elbo_split(elbo_ctx *ctx, elbo_tensor *x, int axis, int n, const int64_t *sizes,
                       elbo_tensor **outs) {
    if (!x) return elbo_last_status() ? elbo_last_status() : ELBO_ERR_ARG;
    int a = elbo__axis("split", x, axis);
    if (a < 0) return ELBO_ERR_ARG;
    int64_t total = 0;
    for (int i = 0; i < n; i++) total += sizes[i];
    if (total != x->shape[a]) {
        char s[96];
        return elbo_error(ELBO_ERR_SHAPE, "split: sizes sum to %lld but axis %d of %s has %lld",
                          (long long)total, axis, elbo_shape_str(x, s, sizeof s),
                          (long long)x->shape[a]);
    }
    int64_t start = 0;
    for (int i = 0; i < n; i++) {
        outs[i] = elbo_slice(ctx, x, a, start, sizes[i]);
        if (!outs[i]) return elbo_last_status();
        start += sizes[i];
    }
    return ELBO_OK;
}
