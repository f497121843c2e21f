/* Internal seams shared by ops, kernels and layers: the context and tape node layouts, the
 * op-recording helper, deterministic parallel loops and reductions. Not installed. */
#ifndef ELBO_INTERNAL_H
#define ELBO_INTERNAL_H

#include "elbo.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Loops shorter than this run on one thread (fork/join costs more than it saves). */
#define ELBO_PAR_MIN 16384

/* Runs the for statement given as the variadic argument across threads (static schedule)
 * when cond holds, more than one thread is set and no parallel region is active; otherwise
 * runs it serially without entering an OpenMP region (libgomp allocates a team for every
 * one-thread region, which would put malloc calls in the training loop). The loop's
 * iterations must be independent, so the result does not depend on the path taken. */
int elbo__parallel_ok(void);

/* *out = k where names[k] equals name (k < n); else ELBO_ERR_ARG "<what>: unknown '<name>'
 * (names[0], names[1], ...)". The enum parsers (samplers, operators, schedules) share it. */
elbo_status elbo__parse_name(const char *what, const char *const *names, int n, const char *name,
                             int *out);
#define ELBO_PARALLEL_FOR(cond, ...)                                                               \
    do {                                                                                           \
        if ((cond) && elbo__parallel_ok()) {                                                       \
            _Pragma("omp parallel for schedule(static)") __VA_ARGS__                               \
        } else {                                                                                   \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

/* The same with a dynamic schedule, for tasks of uneven cost (each task's result must not
 * depend on the thread that runs it). */
#define ELBO_PARALLEL_FOR_DYNAMIC(cond, ...)                                                       \
    do {                                                                                           \
        if ((cond) && elbo__parallel_ok()) {                                                       \
            _Pragma("omp parallel for schedule(dynamic, 1)") __VA_ARGS__                           \
        } else {                                                                                   \
            __VA_ARGS__                                                                            \
        }                                                                                          \
    } while (0)

/* ---- tape ----------------------------------------------------------------------------- */
struct elbo_node;
typedef void (*elbo_backward_fn)(elbo_ctx *ctx, struct elbo_node *n);

typedef struct elbo_node {
    elbo_backward_fn backward; /* accumulates out->grad into in[i]->grad (where required) */
    const char *op;            /* op name, for error messages */
    elbo_tensor *out;
    int n_in;
    elbo_tensor **in;
    int64_t iarg[8]; /* op parameters (stride, axis, ...) */
    float farg[4];   /* op parameters (eps, alpha, ...) */
    void *saved;     /* op-specific data saved for backward, in the arena */
    struct elbo_node *prev;
} elbo_node;

/* ---- arena ---------------------------------------------------------------------------- */
typedef struct elbo_chunk {
    struct elbo_chunk *next;
    size_t size, used;
    unsigned char *mem;
} elbo_chunk;

/* ---- profile (profile.c) ---------------------------------------------------------------- */
typedef struct elbo__prof elbo__prof;
double elbo__now_s(void); /* CLOCK_MONOTONIC, seconds (the profile, elbo bench, the trainer) */
/* Adds the time since the last mark to op's forward figure; marks now. */
void elbo__prof_forward(elbo__prof *p, const char *op);
void elbo__prof_backward(elbo__prof *p, const char *op, double seconds);
void elbo__prof_mark(elbo__prof *p);

struct elbo_ctx {
    elbo_chunk *chunks; /* current chunk first */
    size_t capacity;    /* sum of chunk sizes */
    size_t used;        /* bytes handed out this step (all chunks) */
    size_t peak;        /* high-water mark of used */
    void *scratch;
    size_t scratch_size;
    elbo_node *tape; /* last recorded node */
    int grad_enabled;
    int training;
    elbo_rng rng;
    elbo__prof *prof; /* NULL unless elbo_ctx_set_profile(ctx, 1) */
};

/* ---- helpers for ops ------------------------------------------------------------------ */
/* A new output tensor with x's shape. */
elbo_tensor *elbo__new_like(elbo_ctx *ctx, const elbo_tensor *x);
/* Records a node for out if gradients are enabled and any input requires grad; sets
 * out->requires_grad accordingly. Inputs may be NULL (optional bias). Returns the node,
 * or NULL when nothing was recorded; on allocation failure sets the error, sets *ok = 0. */
elbo_node *elbo__record(elbo_ctx *ctx, const char *op, elbo_tensor *out, elbo_backward_fn bw,
                        int *ok, int n_in, ...);
/* The same with the inputs given as an array (concat and other n-ary ops). */
elbo_node *elbo__record_v(elbo_ctx *ctx, const char *op, elbo_tensor *out, elbo_backward_fn bw,
                          int *ok, int n_in, elbo_tensor *const *in);
/* Gradient buffer of an op input, allocated zeroed on first use; NULL when the input does
 * not require a gradient (or when allocation failed: see elbo__backward_failed). */
float *elbo__grad(elbo_ctx *ctx, elbo_tensor *t);
/* The same for an op that writes every element of the gradient: on first use the buffer is
 * allocated without zero-filling and *fresh is set to 1, and the op must then store (=)
 * rather than accumulate (+=); this saves a zero-fill pass and a read per element. */
float *elbo__grad_fresh(elbo_ctx *ctx, elbo_tensor *t, int *fresh);
/* Arena memory for a backward's intermediate; NULL on failure, which backward then reports
 * as out of memory. */
float *elbo__backward_alloc(elbo_ctx *ctx, size_t bytes);
/* For an op whose input x receives exactly y's gradient, element for element in the same
 * order (x + b, x - b, a reshape of x): when x has no gradient yet and is no parameter, has
 * as many elements as y (for a + b: a was not broadcast) and y's gradient may be given away
 * (y not retained), x->grad becomes y->grad: one buffer, no copy. Returns 1 when done. Every
 * other consumer of x comes earlier on the tape, so its backward runs after this one and
 * adds to the passed-on buffer; nothing reads or adds to y->grad as y's any more. */
int elbo__grad_pass_on(elbo_tensor *x, const elbo_tensor *y);
/* Normalises a possibly negative axis; -1 (with an error naming op) if out of range. */
int elbo__axis(const char *op, const elbo_tensor *x, int axis);
/* Error for two mismatched shapes: "op: shapes (2, 3) and (4, 3) do not match: why". */
elbo_status elbo__shape_error(const char *op, const elbo_tensor *a, const elbo_tensor *b,
                              const char *why);
/* Sets a tensor's shape fields (ndim, shape, numel). */
void elbo__set_shape(elbo_tensor *t, int ndim, const int64_t *shape);

/* Sum of x[0..n) in double, split into fixed 4096-element blocks summed in parallel and
 * combined in block order: the same bits for any thread count. */
double elbo__sum_f32(const float *x, int64_t n);
/* Sum of squares, with the same fixed blocking. */
double elbo__sumsq_f32(const float *x, int64_t n);

/* x[0..n) = 0, parallel. */
void elbo__zero(float *x, int64_t n);
/* dst[i] += src[i], parallel. */
void elbo__acc(float *dst, const float *src, int64_t n);

#endif
