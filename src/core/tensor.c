/* Tensors: shape bookkeeping and creation in the step arena. */
#include "internal.h"

#include <stdio.h>

int64_t elbo_shape_numel(int ndim, const int64_t *shape) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    return n;
}

char *elbo_dims_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, ")");
    return buf;
}

char *elbo_shape_str(const elbo_tensor *t, char *buf, size_t len) {
    return elbo_dims_str(t->ndim, t->shape, buf, len);
}

int elbo_same_shape(const elbo_tensor *a, const elbo_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

void elbo__set_shape(elbo_tensor *t, int ndim, const int64_t *shape) {
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    for (int i = ndim; i < ELBO_MAX_DIMS; i++) t->shape[i] = 1;
    t->numel = elbo_shape_numel(ndim, shape);
}

static elbo_tensor *header(elbo_ctx *ctx, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > ELBO_MAX_DIMS) {
        elbo_error(ELBO_ERR_SHAPE, "tensor: %d dimensions (at most %d)", ndim, ELBO_MAX_DIMS);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            elbo_error(ELBO_ERR_SHAPE, "tensor: negative size %lld in axis %d", (long long)shape[i],
                       i);
            return NULL;
        }
    elbo_tensor *t = elbo_ctx_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    elbo__set_shape(t, ndim, shape);
    return t;
}

elbo_tensor *elbo_tensor_new(elbo_ctx *ctx, int ndim, const int64_t *shape) {
    elbo_tensor *t = header(ctx, ndim, shape);
    if (!t) return NULL;
    t->data = elbo_ctx_alloc(ctx, (size_t)t->numel * sizeof(float));
    return t->data || t->numel == 0 ? t : NULL;
}

elbo_tensor *elbo_tensor_zeros(elbo_ctx *ctx, int ndim, const int64_t *shape) {
    elbo_tensor *t = elbo_tensor_new(ctx, ndim, shape);
    if (t) memset(t->data, 0, (size_t)t->numel * sizeof(float));
    return t;
}

elbo_tensor *elbo_tensor_full(elbo_ctx *ctx, int ndim, const int64_t *shape, float value) {
    elbo_tensor *t = elbo_tensor_new(ctx, ndim, shape);
    if (t)
        for (int64_t i = 0; i < t->numel; i++) t->data[i] = value;
    return t;
}

elbo_tensor *elbo_tensor_wrap(elbo_ctx *ctx, float *data, int ndim, const int64_t *shape) {
    elbo_tensor *t = header(ctx, ndim, shape);
    if (t) t->data = data;
    return t;
}

elbo_tensor *elbo_tensor_copy(elbo_ctx *ctx, const elbo_tensor *src) {
    if (!src) return NULL;
    elbo_tensor *t = elbo_tensor_new(ctx, src->ndim, src->shape);
    if (t) memcpy(t->data, src->data, (size_t)src->numel * sizeof(float));
    return t;
}

elbo_tensor *elbo_tensor_new1(elbo_ctx *ctx, int64_t d0) { return elbo_tensor_new(ctx, 1, &d0); }
elbo_tensor *elbo_tensor_new2(elbo_ctx *ctx, int64_t d0, int64_t d1) {
    int64_t s[2] = {d0, d1};
    return elbo_tensor_new(ctx, 2, s);
}
elbo_tensor *elbo_tensor_new3(elbo_ctx *ctx, int64_t d0, int64_t d1, int64_t d2) {
    int64_t s[3] = {d0, d1, d2};
    return elbo_tensor_new(ctx, 3, s);
}
elbo_tensor *elbo_tensor_new4(elbo_ctx *ctx, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
    int64_t s[4] = {d0, d1, d2, d3};
    return elbo_tensor_new(ctx, 4, s);
}

void elbo_tensor_retain_grad(elbo_tensor *t) {
    if (t) t->retain_grad = 1;
}

void elbo_tensor_requires_grad(elbo_tensor *t, int on) {
    if (t) t->requires_grad = on != 0;
}

elbo_tensor *elbo__new_like(elbo_ctx *ctx, const elbo_tensor *x) {
    return elbo_tensor_new(ctx, x->ndim, x->shape);
}

int elbo__axis(const char *op, const elbo_tensor *x, int axis) {
    int a = axis < 0 ? axis + x->ndim : axis;
    if (a < 0 || a >= x->ndim) {
        char s[96];
        elbo_error(ELBO_ERR_ARG, "%s: axis %d out of range for shape %s", op, axis,
                   elbo_shape_str(x, s, sizeof s));
        return -1;
    }
    return a;
}

elbo_status elbo__shape_error(const char *op, const elbo_tensor *a, const elbo_tensor *b,
                              const char *why) {
    char sa[96], sb[96];
    return elbo_error(ELBO_ERR_SHAPE, "%s: shapes %s and %s do not match%s%s", op,
                      elbo_shape_str(a, sa, sizeof sa), elbo_shape_str(b, sb, sizeof sb),
                      why && *why ? ": " : "", why ? why : "");
}
