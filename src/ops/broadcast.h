/* Broadcasting engine for elementwise ops, their gradients and fused reductions.
 *
 * A plan describes a full (broadcast) iteration shape and up to ELBO_BC_MAX_OPS operands:
 * operand 0 is the destination, operands 1.. the inputs. Each operand has an element stride
 * per axis, 0 where it broadcasts. Axes of size 1 are dropped and adjacent axes that every
 * operand walks contiguously are merged, so (B,C,H,W) + (B,C,1,1) becomes (B*C, H*W) with
 * the second input's inner stride 0, and same-shape operands become one flat axis.
 *
 * A kernel computes out[i] = f(in[0][i], in[1][i], ...) for i < n over one stretch of the
 * innermost axis; inc[k] is 1 when input k advances along it and 0 when it is a single
 * broadcast value (in[k][0]). The driver (elbo__bc_apply) calls it on fixed slices of the
 * iteration space and
 *   - writes or accumulates the values into a full-shaped destination, or
 *   - sums them over the axes where the destination broadcasts (the gradient of a broadcast
 *     input, sum over axes, a fused loss reduction).
 * Every destination element is produced by one thread in a fixed order, with sums in double:
 * the result does not depend on the thread count.
 */
#ifndef ELBO_OPS_BROADCAST_H
#define ELBO_OPS_BROADCAST_H

#include "internal.h"

#define ELBO_BC_MAX_OPS 6

typedef struct {
    int nd;            /* rank after dropping size-1 axes and merging (>= 1) */
    int nops;          /* destination + inputs */
    int64_t numel;     /* of the full shape */
    int64_t dst_numel; /* of operand 0 */
    int64_t dim[ELBO_MAX_DIMS];
    int64_t st[ELBO_BC_MAX_OPS][ELBO_MAX_DIMS];
} elbo__bc;

typedef void (*elbo__bc_fn)(int64_t n, const float *const *in, const int *inc, float *out,
                            void *user);

/* Broadcast shape of ts[0..n) (NULL entries skipped) into (*ndim, shape). On a mismatch sets
 * an error naming op and the two shapes that clash, and returns -1. */
int elbo__bc_shape(const char *op, int n, elbo_tensor *const *ts, int *ndim, int64_t *shape);

/* Plan over the full shape (ndim, shape); operand k has shape (ondim[k], oshape[k]), which
 * must broadcast to the full shape (operand 0 is the destination). */
void elbo__bc_plan(elbo__bc *p, int ndim, const int64_t *shape, int nops, const int *ondim,
                   const int64_t *const *oshape);
/* The same with operand shapes taken from tensors (a NULL entry means the full shape). */
void elbo__bc_plan_t(elbo__bc *p, int ndim, const int64_t *shape, int nops,
                     const elbo_tensor *const *ops);

/* dst (operand 0) = or += scale * f(inputs), summed over the axes where dst broadcasts.
 * accumulate 0 overwrites dst. in[k] is the base of operand k+1. */
void elbo__bc_apply(const elbo__bc *p, float *dst, int accumulate, float scale,
                    const float *const *in, elbo__bc_fn fn, void *user);

/* x->grad += scale * f(inputs) summed over the axes where x broadcasts against the full
 * shape (ndim, shape); input k has the shape of shapes[k] (NULL: full) and data ptrs[k].
 * Nothing happens when x needs no gradient. */
void elbo__bc_grad(elbo_ctx *ctx, elbo_tensor *x, int ndim, const int64_t *shape, float scale,
                   int nin, const elbo_tensor *const *shapes, const float *const *ptrs,
                   elbo__bc_fn fn, void *user);

/* log sum_k e^(x_k) of one contiguous row, max-subtracted (reduce.c). */
float elbo__row_logsumexp(const float *x, int64_t n);

/* Sum of x[0..n) in double over 8 fixed lanes (deterministic, vectorisable). */
double elbo__dsum(const float *x, int64_t n);

/* Kernel generators. EXPR uses v0, v1, ... (the input values at i) and may use `user`.
 * Every combination of broadcast inputs gets its own loop, with broadcast values hoisted,
 * so the inner loops carry no index arithmetic. */
#define ELBO_BC_KERNEL1(NAME, EXPR)                                                                \
    static void NAME(int64_t n, const float *const *in, const int *inc, float *restrict out,       \
                     void *user) {                                                                 \
        (void)user;                                                                                \
        const float *restrict p0 = in[0];                                                          \
        if (inc[0]) {                                                                              \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v0 = p0[i];                                                                  \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        } else {                                                                                   \
            float v0 = p0[0];                                                                      \
            float r_ = (EXPR);                                                                     \
            for (int64_t i = 0; i < n; i++) out[i] = r_;                                           \
        }                                                                                          \
    }

#define ELBO_BC_KERNEL2(NAME, EXPR)                                                                \
    static void NAME(int64_t n, const float *const *in, const int *inc, float *restrict out,       \
                     void *user) {                                                                 \
        (void)user;                                                                                \
        const float *restrict p0 = in[0], *restrict p1 = in[1];                                    \
        switch (inc[0] | inc[1] << 1) {                                                            \
        case 3:                                                                                    \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v0 = p0[i], v1 = p1[i];                                                      \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
            break;                                                                                 \
        case 1: {                                                                                  \
            float v1 = p1[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v0 = p0[i];                                                                  \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        } break;                                                                                   \
        case 2: {                                                                                  \
            float v0 = p0[0];                                                                      \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v1 = p1[i];                                                                  \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        } break;                                                                                   \
        default: {                                                                                 \
            float v0 = p0[0], v1 = p1[0];                                                          \
            float r_ = (EXPR);                                                                     \
            for (int64_t i = 0; i < n; i++) out[i] = r_;                                           \
        }                                                                                          \
        }                                                                                          \
    }

/* Three inputs: the all-contiguous case is specialised, and the first input as one value
 * (a loss's backward: dL/dloss of a sum or mean, times the other two); otherwise broadcast
 * inputs are read through a 0/1 increment (still no division or carry in the loop). */
#define ELBO_BC_KERNEL3(NAME, EXPR)                                                                \
    static void NAME(int64_t n, const float *const *in, const int *inc, float *restrict out,       \
                     void *user) {                                                                 \
        (void)user;                                                                                \
        const float *restrict p0 = in[0], *restrict p1 = in[1], *restrict p2 = in[2];              \
        if (inc[0] && inc[1] && inc[2]) {                                                          \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v0 = p0[i], v1 = p1[i], v2 = p2[i];                                          \
                (void)v2;                                                                          \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        } else if (inc[1] && inc[2]) {                                                             \
            const float v0 = p0[0];                                                                \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v1 = p1[i], v2 = p2[i];                                                      \
                (void)v2;                                                                          \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        } else {                                                                                   \
            const int64_t i0 = inc[0], i1 = inc[1], i2 = inc[2];                                   \
            for (int64_t i = 0; i < n; i++) {                                                      \
                float v0 = p0[i * i0], v1 = p1[i * i1], v2 = p2[i * i2];                           \
                (void)v2;                                                                          \
                out[i] = (EXPR);                                                                   \
            }                                                                                      \
        }                                                                                          \
    }

#define ELBO_BC_KERNEL4(NAME, EXPR)                                                                \
    static void NAME(int64_t n, const float *const *in, const int *inc, float *restrict out,       \
                     void *user) {                                                                 \
        (void)user;                                                                                \
        const float *restrict p0 = in[0], *restrict p1 = in[1], *restrict p2 = in[2],              \
                              *restrict p3 = in[3];                                                \
        const int64_t i0 = inc[0], i1 = inc[1], i2 = inc[2], i3 = inc[3];                          \
        for (int64_t i = 0; i < n; i++) {                                                          \
            float v0 = p0[i * i0], v1 = p1[i * i1], v2 = p2[i * i2], v3 = p3[i * i3];              \
            (void)v2;                                                                              \
            (void)v3;                                                                              \
            out[i] = (EXPR);                                                                       \
        }                                                                                          \
    }

#endif
