/* Linear algebra ops: matrix products (plain, transposed, batched) and torch.nn.Linear.
 * Transposes are passed to sgemm as flags, never materialised. For C = op(A) op(B):
 *   d op(A) = dC op(B)^T,  d op(B) = op(A)^T dC. */
#include "internal.h"
#include "kernels/cpu/kernels.h"

/* Batches of products this small (M*N*K) run one product per thread; larger ones run in
 * order, each product split over the threads by elbo__sgemm. The choice depends only on
 * the shapes, and elbo__sgemm gives the same bits in both settings. */
#define SMALL_GEMM_MNK 262144.0

/* The (M,K,N) of op(a) op(b) for 2-D storage shapes; 0 and an error when they do not fit. */
static int product_dims(const char *op, const elbo_tensor *a, const elbo_tensor *b, int ta, int tb,
                        int64_t *M, int64_t *N, int64_t *K) {
    int nd = a->ndim;
    *M = ta ? a->shape[nd - 1] : a->shape[nd - 2];
    *K = ta ? a->shape[nd - 2] : a->shape[nd - 1];
    int64_t kb = tb ? b->shape[nd - 1] : b->shape[nd - 2];
    *N = tb ? b->shape[nd - 2] : b->shape[nd - 1];
    if (kb != *K) {
        char why[128];
        snprintf(why, sizeof why, "inner dimensions %lld and %lld differ (ta %d, tb %d)",
                 (long long)*K, (long long)kb, ta != 0, tb != 0);
        elbo__shape_error(op, a, b, why);
        return 0;
    }
    return 1;
}

/* Records c = op(a) op(b) (matmul or bmm) with its transposes and inner size K. */
static elbo_tensor *record_product(elbo_ctx *ctx, const char *op, elbo_tensor *c,
                                   elbo_backward_fn bw, elbo_tensor *a, elbo_tensor *b, int ta,
                                   int tb, int64_t K) {
    int ok;
    elbo_node *n = elbo__record(ctx, op, c, bw, &ok, 2, a, b);
    if (!ok) return NULL;
    if (n) {
        n->iarg[0] = ta != 0;
        n->iarg[1] = tb != 0;
        n->iarg[2] = K;
    }
    return c;
}

/* ---- matmul: a (M,K) @ b (K,N) -> (M,N), with ta / tb ---------------------------------- */
static void matmul_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    int ta = (int)n->iarg[0], tb = (int)n->iarg[1];
    float *ga = elbo__grad(ctx, a), *gb = elbo__grad(ctx, b);
    elbo__sgemm_backward(ta, tb, c->shape[0], c->shape[1], n->iarg[2], a->data, b->data, c->grad,
                         ga, gb);
}

static elbo_tensor *matmul_op(elbo_ctx *ctx, const char *op, elbo_tensor *a, elbo_tensor *b, int ta,
                              int tb) {
    if (!a || !b) return NULL;
    if (a->ndim != 2 || b->ndim != 2) {
        elbo__shape_error(op, a, b, "both must be 2-D");
        return NULL;
    }
    int64_t M, N, K;
    if (!product_dims(op, a, b, ta, tb, &M, &N, &K)) return NULL;
    elbo_tensor *c = elbo_tensor_new2(ctx, M, N);
    if (!c) return NULL;
    elbo__sgemm(ta, tb, M, N, K, 1.0f, a->data, a->shape[1], b->data, b->shape[1], 0.0f, c->data,
                N);
    return record_product(ctx, op, c, matmul_backward, a, b, ta, tb, K);
}

elbo_tensor *elbo_matmul(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b) {
    return matmul_op(ctx, "matmul", a, b, 0, 0);
}

elbo_tensor *elbo_matmul_t(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int ta, int tb) {
    return matmul_op(ctx, "matmul_t", a, b, ta, tb);
}

/* ---- bmm: a (B,M,K) @ b (B,K,N) -> (B,M,N), transposes on the last two axes ------------- */
static void bmm_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *a = n->in[0], *b = n->in[1], *c = n->out;
    int ta = (int)n->iarg[0], tb = (int)n->iarg[1];
    int64_t B = c->shape[0], M = c->shape[1], N = c->shape[2], K = n->iarg[2];
    float *ga = elbo__grad(ctx, a), *gb = elbo__grad(ctx, b);
    if (!ga && !gb) return;
    int par = (double)M * N * K <= SMALL_GEMM_MNK;
    elbo__blas_single_thread();
    ELBO_PARALLEL_FOR(par && B > 1, for (int64_t i = 0; i < B; i++) elbo__sgemm_backward(
                                        ta, tb, M, N, K, a->data + i * M * K, b->data + i * K * N,
                                        c->grad + i * M * N, ga ? ga + i * M * K : NULL,
                                        gb ? gb + i * K * N : NULL););
}

elbo_tensor *elbo_bmm(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int ta, int tb) {
    if (!a || !b) return NULL;
    if (a->ndim != 3 || b->ndim != 3) {
        elbo__shape_error("bmm", a, b, "both must be 3-D (batch, rows, cols)");
        return NULL;
    }
    if (a->shape[0] != b->shape[0]) {
        elbo__shape_error("bmm", a, b, "batch sizes differ");
        return NULL;
    }
    int64_t M, N, K, B = a->shape[0];
    if (!product_dims("bmm", a, b, ta, tb, &M, &N, &K)) return NULL;
    elbo_tensor *c = elbo_tensor_new3(ctx, B, M, N);
    if (!c) return NULL;
    int64_t lda = a->shape[2], ldb = b->shape[2];
    int par = (double)M * N * K <= SMALL_GEMM_MNK;
    elbo__blas_single_thread();
    ELBO_PARALLEL_FOR(par && B > 1, for (int64_t i = 0; i < B; i++) elbo__sgemm(
                                        ta, tb, M, N, K, 1.0f, a->data + i * M * K, lda,
                                        b->data + i * K * N, ldb, 0.0f, c->data + i * M * N, N););
    return record_product(ctx, "bmm", c, bmm_backward, a, b, ta, tb, K);
}

/* ---- linear: y (R,out) = x (R,in) W^T + b, R = product of x's leading axes;
 * linear_relu: y = max(x W^T + b, 0) in the same pass (the bits of linear, then relu) ------ */
/* dx = dz W, dW = dz^T x, db = sum_r dz, with dz = dy (linear) or [y > 0] dy (linear_relu). */
static void linear_grads(elbo_ctx *ctx, elbo_node *n, int relu) {
    elbo_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2], *y = n->out;
    int64_t out = w->shape[0], in = w->shape[1], R = elbo_shape_numel(x->ndim - 1, x->shape);
    int fresh_x, fresh_w, fresh_b; /* a fresh gradient is stored (beta 0), else added to */
    float *gx = elbo__grad_fresh(ctx, x, &fresh_x), *gw = elbo__grad_fresh(ctx, w, &fresh_w),
          *gb = elbo__grad_fresh(ctx, b, &fresh_b);
    const float *dz = y->grad;
    if (relu) { /* in place unless y's own gradient is kept (elbo_tensor_retain_grad) */
        float *m = y->retain_grad ? elbo__backward_alloc(ctx, (size_t)y->numel * sizeof(float))
                                  : y->grad;
        if (!m) return;
        elbo__relu_grad_colsum(m, y->grad, y->data, R, out, gb, !fresh_b);
        dz = m;
    } else if (gb) {
        elbo__colsum(gb, dz, R, out, !fresh_b);
    }
    if (gx) elbo__sgemm(0, 0, R, in, out, 1.0f, dz, out, w->data, in, !fresh_x, gx, in);
    if (gw) elbo__sgemm(1, 0, out, in, R, 1.0f, dz, out, x->data, in, !fresh_w, gw, in);
}
static void linear_backward(elbo_ctx *ctx, elbo_node *n) { linear_grads(ctx, n, 0); }
static void linear_relu_backward(elbo_ctx *ctx, elbo_node *n) { linear_grads(ctx, n, 1); }

static elbo_tensor *linear_op(elbo_ctx *ctx, const char *op, elbo_tensor *x, elbo_tensor *w,
                              elbo_tensor *b, int relu) {
    if (!x || !w) return NULL;
    if (w->ndim != 2 || x->ndim < 1 || x->shape[x->ndim - 1] != w->shape[1]) {
        elbo__shape_error(op, x, w, "x must be (..., in) and w (out, in)");
        return NULL;
    }
    int64_t out = w->shape[0], in = w->shape[1];
    if (b && (b->ndim != 1 || b->shape[0] != out)) {
        elbo__shape_error(op, w, b, "bias must be (out) for w (out, in)");
        return NULL;
    }
    int64_t shape[ELBO_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = out;
    elbo_tensor *y = elbo_tensor_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    int64_t R = elbo_shape_numel(x->ndim - 1, x->shape);
    elbo__sgemm_bias_relu(0, 1, R, out, in, x->data, in, w->data, in, b ? b->data : NULL, relu,
                          y->data, out);
    int ok;
    elbo__record(ctx, op, y, relu ? linear_relu_backward : linear_backward, &ok, 3, x, w, b);
    return ok ? y : NULL;
}

elbo_tensor *elbo_linear(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b) {
    return linear_op(ctx, "linear", x, w, b, 0);
}

elbo_tensor *elbo_linear_relu(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *w, elbo_tensor *b) {
    return linear_op(ctx, "linear_relu", x, w, b, 1);
}
