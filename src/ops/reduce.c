/* Reductions (sum, mean over all or some axes) and the axis-wise softmax family. Sums are
 * taken in double in a fixed order (elbo__sum_f32, elbo__bc_apply), so results do not depend
 * on the thread count. */
#include "broadcast.h"
#include "vmath.h"

#include <math.h>

ELBO_BC_KERNEL1(k_copy, v0)

/* ---- sum / mean of every element -> scalar: dx += s gy, s = 1 or 1/numel ------------- */
static void sum_all_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    const float g = n->out->grad[0] * n->farg[0];
    ELBO_PARALLEL_FOR(x->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < x->numel; i++) gx[i] += g;);
}

static elbo_tensor *sum_all(elbo_ctx *ctx, elbo_tensor *x, int mean, const char *op) {
    if (!x) return NULL;
    elbo_tensor *y = elbo_tensor_new(ctx, 0, NULL);
    if (!y) return NULL;
    double s = elbo__sum_f32(x->data, x->numel);
    float scale = mean ? 1.0f / (float)x->numel : 1.0f;
    y->data[0] = (float)(mean ? s / (double)x->numel : s);
    int ok;
    elbo_node *n = elbo__record(ctx, op, y, sum_all_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (n) n->farg[0] = scale;
    return y;
}

elbo_tensor *elbo_sum(elbo_ctx *ctx, elbo_tensor *x) { return sum_all(ctx, x, 0, "sum"); }
elbo_tensor *elbo_mean(elbo_ctx *ctx, elbo_tensor *x) { return sum_all(ctx, x, 1, "mean"); }

/* ---- sum / mean over a set of axes ------------------------------------------------------
 * y = s sum_{reduced axes} x; dx += s broadcast(gy). iarg[0] holds the reduced-axis mask. */
static void keepdim_shape(const elbo_tensor *x, int64_t mask, int64_t *ks) {
    for (int i = 0; i < x->ndim; i++) ks[i] = (mask >> i) & 1 ? 1 : x->shape[i];
}

static void sum_axes_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0];
    int64_t ks[ELBO_MAX_DIMS];
    keepdim_shape(x, n->iarg[0], ks);
    elbo_tensor gy_shape;
    memset(&gy_shape, 0, sizeof gy_shape);
    elbo__set_shape(&gy_shape, x->ndim, ks);
    const elbo_tensor *sh[1] = {&gy_shape};
    const float *pt[1] = {n->out->grad};
    elbo__bc_grad(ctx, x, x->ndim, x->shape, n->farg[0], 1, sh, pt, k_copy, NULL);
}

static elbo_tensor *sum_axes(elbo_ctx *ctx, elbo_tensor *x, int n_axes, const int *axes,
                             int keepdim, int mean, const char *op) {
    if (!x) return NULL;
    if (n_axes < 1 || !axes) {
        elbo_error(ELBO_ERR_ARG, "%s: no axes given (elbo_sum / elbo_mean reduce everything)", op);
        return NULL;
    }
    int64_t mask = 0, count = 1;
    for (int i = 0; i < n_axes; i++) {
        int a = elbo__axis(op, x, axes[i]);
        if (a < 0) return NULL;
        if ((mask >> a) & 1) {
            elbo_error(ELBO_ERR_ARG, "%s: axis %d listed twice", op, axes[i]);
            return NULL;
        }
        mask |= (int64_t)1 << a;
        count *= x->shape[a];
    }
    int64_t ks[ELBO_MAX_DIMS], os[ELBO_MAX_DIMS];
    keepdim_shape(x, mask, ks);
    int ond = 0;
    for (int i = 0; i < x->ndim; i++)
        if (keepdim || !((mask >> i) & 1)) os[ond++] = ks[i];
    elbo_tensor *y = elbo_tensor_new(ctx, ond, os);
    if (!y) return NULL;
    float scale = mean ? 1.0f / (float)count : 1.0f;
    /* y has the keepdim layout whatever its shape: reduce into it directly. */
    int ondim[2] = {x->ndim, x->ndim};
    const int64_t *oshape[2] = {ks, x->shape};
    elbo__bc p;
    elbo__bc_plan(&p, x->ndim, x->shape, 2, ondim, oshape);
    const float *in[1] = {x->data};
    elbo__bc_apply(&p, y->data, 0, scale, in, k_copy, NULL);
    int ok;
    elbo_node *n = elbo__record(ctx, op, y, sum_axes_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = mask;
        n->farg[0] = scale;
    }
    return y;
}

elbo_tensor *elbo_sum_axes(elbo_ctx *ctx, elbo_tensor *x, int n_axes, const int *axes,
                           int keepdim) {
    return sum_axes(ctx, x, n_axes, axes, keepdim, 0, "sum_axes");
}
elbo_tensor *elbo_mean_axes(elbo_ctx *ctx, elbo_tensor *x, int n_axes, const int *axes,
                            int keepdim) {
    return sum_axes(ctx, x, n_axes, axes, keepdim, 1, "mean_axes");
}
elbo_tensor *elbo_sum_axis(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim) {
    return sum_axes(ctx, x, 1, &axis, keepdim, 0, "sum_axis");
}
elbo_tensor *elbo_mean_axis(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim) {
    return sum_axes(ctx, x, 1, &axis, keepdim, 1, "mean_axis");
}

/* ---- softmax family along one axis ------------------------------------------------------
 * x is viewed as (outer, n, inner). With inner = 1 each row is contiguous; otherwise a task
 * takes a run of up to SM_CH inner positions and walks the axis with stride inner, so the
 * innermost loops stay contiguous. */
#define SM_CH 256

typedef enum { SM_SOFTMAX, SM_LOG_SOFTMAX, SM_LOGSUMEXP } sm_kind;

static void axis_view(const elbo_tensor *x, int a, int64_t *outer, int64_t *n, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < a; i++) *outer *= x->shape[i];
    for (int i = a + 1; i < x->ndim; i++) *inner *= x->shape[i];
    *n = x->shape[a];
}

/* Forward for one task: positions [j0, j0+len) of outer index o.
 * softmax: y = e^(x - m) / s; log_softmax: y = x - m - log s; logsumexp: y = m + log s,
 * m = max_k x_k, s = sum_k e^(x_k - m). */
static void sm_forward_task(const float *x, float *y, int64_t n, int64_t inner, int64_t j0,
                            int64_t len, sm_kind kind) {
    float m[SM_CH];
    double s[SM_CH];
    for (int64_t j = 0; j < len; j++) {
        m[j] = -INFINITY;
        s[j] = 0;
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xk = x + k * inner + j0;
        for (int64_t j = 0; j < len; j++) m[j] = xk[j] > m[j] ? xk[j] : m[j];
    }
    for (int64_t k = 0; k < n; k++) {
        const float *xk = x + k * inner + j0;
        if (kind == SM_SOFTMAX) {
            float *yk = y + k * inner + j0;
            for (int64_t j = 0; j < len; j++) {
                float e = elbo__expf(xk[j] - m[j]);
                yk[j] = e;
                s[j] += e;
            }
        } else {
            for (int64_t j = 0; j < len; j++) s[j] += elbo__expf(xk[j] - m[j]);
        }
    }
    if (kind == SM_LOGSUMEXP) {
        for (int64_t j = 0; j < len; j++) y[j0 + j] = m[j] + (float)log(s[j]);
        return;
    }
    float c[SM_CH]; /* 1/s (softmax) or log s (log_softmax) */
    for (int64_t j = 0; j < len; j++)
        c[j] = kind == SM_SOFTMAX ? (float)(1.0 / s[j]) : (float)log(s[j]);
    for (int64_t k = 0; k < n; k++) {
        const float *xk = x + k * inner + j0;
        float *yk = y + k * inner + j0;
        if (kind == SM_SOFTMAX)
            for (int64_t j = 0; j < len; j++) yk[j] *= c[j];
        else
            for (int64_t j = 0; j < len; j++) yk[j] = xk[j] - m[j] - c[j];
    }
}

/* Backward for one task, adding into gx:
 * softmax: gx = y (gy - sum_k gy_k y_k); log_softmax: gx = gy - e^y sum_k gy_k;
 * logsumexp (y, gy per (outer, inner)): gx = gy e^(x - y). */
static void sm_backward_task(const float *x, const float *y, const float *gy, float *gx, int64_t n,
                             int64_t inner, int64_t j0, int64_t len, sm_kind kind) {
    if (kind == SM_LOGSUMEXP) {
        for (int64_t k = 0; k < n; k++) {
            const float *xk = x + k * inner + j0;
            float *gk = gx + k * inner + j0;
            for (int64_t j = 0; j < len; j++) gk[j] += gy[j0 + j] * elbo__expf(xk[j] - y[j0 + j]);
        }
        return;
    }
    double s[SM_CH];
    for (int64_t j = 0; j < len; j++) s[j] = 0;
    for (int64_t k = 0; k < n; k++) {
        const float *gk = gy + k * inner + j0, *yk = y + k * inner + j0;
        if (kind == SM_SOFTMAX)
            for (int64_t j = 0; j < len; j++) s[j] += (double)gk[j] * yk[j];
        else
            for (int64_t j = 0; j < len; j++) s[j] += gk[j];
    }
    for (int64_t k = 0; k < n; k++) {
        const float *gk = gy + k * inner + j0, *yk = y + k * inner + j0;
        float *dk = gx + k * inner + j0;
        if (kind == SM_SOFTMAX)
            for (int64_t j = 0; j < len; j++) dk[j] += yk[j] * (gk[j] - (float)s[j]);
        else
            for (int64_t j = 0; j < len; j++) dk[j] += gk[j] - elbo__expf(yk[j]) * (float)s[j];
    }
}

/* Contiguous-row (inner = 1) versions: each pass is a separate loop over memory (max in 16
 * lanes, exp, sum in 8 double lanes), so every pass vectorises. */
static float row_max(const float *x, int64_t n) {
    float m[16];
    for (int l = 0; l < 16; l++) m[l] = -INFINITY;
    int64_t k = 0;
    for (; k + 16 <= n; k += 16)
        for (int l = 0; l < 16; l++) m[l] = x[k + l] > m[l] ? x[k + l] : m[l];
    for (; k < n; k++) m[0] = x[k] > m[0] ? x[k] : m[0];
    float r = m[0];
    for (int l = 1; l < 16; l++) r = m[l] > r ? m[l] : r;
    return r;
}

#define SM_ROW_CH 1024

float elbo__row_logsumexp(const float *x, int64_t n) {
    float m = row_max(x, n), e[SM_ROW_CH];
    double s = 0;
    for (int64_t k0 = 0; k0 < n; k0 += SM_ROW_CH) {
        int64_t len = n - k0 < SM_ROW_CH ? n - k0 : SM_ROW_CH;
        for (int64_t k = 0; k < len; k++) e[k] = elbo__expf(x[k0 + k] - m);
        s += elbo__dsum(e, len);
    }
    return m + (float)log(s);
}

static void sm_forward_row(const float *x, float *y, int64_t n, sm_kind kind) {
    if (kind == SM_LOGSUMEXP) {
        y[0] = elbo__row_logsumexp(x, n);
        return;
    }
    float m = row_max(x, n);
    for (int64_t k = 0; k < n; k++) y[k] = elbo__expf(x[k] - m);
    double s = elbo__dsum(y, n);
    if (kind == SM_SOFTMAX) {
        float inv = (float)(1.0 / s);
        for (int64_t k = 0; k < n; k++) y[k] *= inv;
    } else {
        float ls = (float)log(s);
        for (int64_t k = 0; k < n; k++) y[k] = x[k] - m - ls;
    }
}

/* Row backward (inner = 1): softmax gx += y (gy - <gy, y>); log_softmax gx += gy - e^y sum gy;
 * logsumexp gx += gy e^(x - y). */
static void sm_backward_row(const float *x, const float *y, const float *gy, float *gx, int64_t n,
                            sm_kind kind) {
    if (kind == SM_LOGSUMEXP) {
        float g = gy[0], lse = y[0];
        for (int64_t k = 0; k < n; k++) gx[k] += g * elbo__expf(x[k] - lse);
        return;
    }
    if (kind == SM_SOFTMAX) {
        double d[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;
        int64_t k = 0;
        for (; k + 8 <= n; k += 8)
            for (int l = 0; l < 8; l++) d[l] += (double)gy[k + l] * y[k + l];
        for (; k < n; k++) t += (double)gy[k] * y[k];
        float dot = (float)(((d[0] + d[1]) + (d[2] + d[3])) + ((d[4] + d[5]) + (d[6] + d[7])) + t);
        for (k = 0; k < n; k++) gx[k] += y[k] * (gy[k] - dot);
        return;
    }
    float sg = (float)elbo__dsum(gy, n);
    for (int64_t k = 0; k < n; k++) gx[k] += gy[k] - elbo__expf(y[k]) * sg;
}

typedef struct {
    int64_t outer, n, inner;
    sm_kind kind;
} sm_geom;

static void sm_backward(elbo_ctx *ctx, elbo_node *nd) {
    elbo_tensor *xt = nd->in[0], *yt = nd->out;
    float *gx = elbo__grad(ctx, xt);
    if (!gx) return;
    const sm_geom *g = nd->saved;
    int64_t n = g->n, inner = g->inner, cpo = (inner + SM_CH - 1) / SM_CH;
    int64_t ntask = g->outer * cpo;
    int64_t ystride = g->kind == SM_LOGSUMEXP ? inner : n * inner;
    if (inner == 1) {
        ELBO_PARALLEL_FOR(xt->numel > ELBO_PAR_MIN,
                          for (int64_t o = 0; o < g->outer; o++)
                              sm_backward_row(xt->data + o * n, yt->data + o * ystride,
                                              yt->grad + o * ystride, gx + o * n, n, g->kind););
        return;
    }
    ELBO_PARALLEL_FOR(
        xt->numel > ELBO_PAR_MIN, for (int64_t t = 0; t < ntask; t++) {
            int64_t o = t / cpo, j0 = (t % cpo) * SM_CH;
            int64_t len = inner - j0 < SM_CH ? inner - j0 : SM_CH;
            sm_backward_task(xt->data + o * n * inner, yt->data + o * ystride,
                             yt->grad + o * ystride, gx + o * n * inner, n, inner, j0, len,
                             g->kind);
        });
}

static elbo_tensor *sm_op(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim, sm_kind kind,
                          const char *op) {
    if (!x) return NULL;
    int a = elbo__axis(op, x, axis);
    if (a < 0) return NULL;
    int64_t outer, n, inner;
    axis_view(x, a, &outer, &n, &inner);
    elbo_tensor *y;
    if (kind == SM_LOGSUMEXP) {
        int64_t s[ELBO_MAX_DIMS];
        int nd = 0;
        for (int i = 0; i < x->ndim; i++)
            if (i != a)
                s[nd++] = x->shape[i];
            else if (keepdim)
                s[nd++] = 1;
        y = elbo_tensor_new(ctx, nd, s);
    } else {
        y = elbo__new_like(ctx, x);
    }
    if (!y) return NULL;
    if (n == 0) {
        /* logsumexp of nothing is -inf (torch); softmax of an empty axis is empty. */
        for (int64_t i = 0; i < y->numel; i++) y->data[i] = -INFINITY;
    } else if (inner == 1) {
        int64_t ystride = kind == SM_LOGSUMEXP ? 1 : n;
        ELBO_PARALLEL_FOR(x->numel > ELBO_PAR_MIN,
                          for (int64_t o = 0; o < outer; o++)
                              sm_forward_row(x->data + o * n, y->data + o * ystride, n, kind););
    } else {
        int64_t cpo = (inner + SM_CH - 1) / SM_CH, ntask = outer * cpo;
        int64_t ystride = kind == SM_LOGSUMEXP ? inner : n * inner;
        ELBO_PARALLEL_FOR(
            x->numel > ELBO_PAR_MIN, for (int64_t t = 0; t < ntask; t++) {
                int64_t o = t / cpo, j0 = (t % cpo) * SM_CH;
                int64_t len = inner - j0 < SM_CH ? inner - j0 : SM_CH;
                sm_forward_task(x->data + o * n * inner, y->data + o * ystride, n, inner, j0, len,
                                kind);
            });
    }
    int ok;
    elbo_node *node = elbo__record(ctx, op, y, sm_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (node) {
        sm_geom *g = elbo_ctx_alloc(ctx, sizeof *g);
        if (!g) return NULL;
        g->outer = outer;
        g->n = n;
        g->inner = inner;
        g->kind = kind;
        node->saved = g;
    }
    return y;
}

elbo_tensor *elbo_softmax(elbo_ctx *ctx, elbo_tensor *x, int axis) {
    return sm_op(ctx, x, axis, 0, SM_SOFTMAX, "softmax");
}
elbo_tensor *elbo_log_softmax(elbo_ctx *ctx, elbo_tensor *x, int axis) {
    return sm_op(ctx, x, axis, 0, SM_LOG_SOFTMAX, "log_softmax");
}
elbo_tensor *elbo_logsumexp(elbo_ctx *ctx, elbo_tensor *x, int axis, int keepdim) {
    return sm_op(ctx, x, axis, keepdim, SM_LOGSUMEXP, "logsumexp");
}
