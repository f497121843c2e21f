/* elbo core: status codes, errors, threads, the counter-based RNG, tensors, the step context
 * (arena + tape) and reverse-mode autodiff.
 *
 * Conventions
 * - Tensors are float32, row-major and always contiguous (NCHW for images). A reshape, or a
 *   slice that needs no copy (all axes before the sliced one have size 1), is a view that
 *   shares the base's memory; anything else copies. Keeping every tensor contiguous makes
 *   each kernel a flat loop; the only views that matter for speed (reshape, batch slices) are
 *   free.
 * - Ops take a context and return a new tensor allocated in the context's step arena, or
 *   NULL with elbo_last_error() set. An op given a NULL input returns NULL and keeps the first
 *   error, so a whole forward pass can be written as nested calls and checked once.
 * - With gradients enabled, each op whose inputs need gradients records a node on the tape;
 *   elbo_backward() walks the tape in reverse and accumulates d loss / d input into ->grad
 *   of every input that requires it: parameters and any tensor marked requires_grad
 *   (images, for guidance and inverse problems).
 */
#ifndef ELBO_CORE_H
#define ELBO_CORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ELBO_VERSION "0.1.0"
#define ELBO_MAX_DIMS 6

/* ---- status and errors ---------------------------------------------------------------- */
typedef enum {
    ELBO_OK = 0,
    ELBO_ERR_ARG = 1,    /* a bad argument or flag */
    ELBO_ERR_SHAPE = 2,  /* shapes that do not fit the op */
    ELBO_ERR_NOMEM = 3,  /* allocation failed */
    ELBO_ERR_IO = 4,     /* a file could not be read or written */
    ELBO_ERR_FORMAT = 5, /* a file is not in the expected format */
    ELBO_ERR_STATE = 6   /* called in the wrong state (e.g. backward without a tape) */
} elbo_status;

/* The message of the most recent error on this thread ("" if none). */
const char *elbo_last_error(void);
/* The status of the most recent error on this thread (ELBO_OK if none). */
elbo_status elbo_last_status(void);
void elbo_clear_error(void);
/* Sets the thread's error (printf-style) and returns st, for `return elbo_error(...)`. */
elbo_status elbo_error(elbo_status st, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- threads -------------------------------------------------------------------------- */
/* Number of threads for elbo's kernels and for OpenBLAS. Results do not depend on it:
 * every kernel splits work into slices fixed by the problem size, not by the thread count. */
void elbo_set_threads(int n);
int elbo_get_threads(void);
/* Flush subnormal floats to zero (on: the x86 FTZ and DAZ bits of MXCSR) or keep IEEE gradual
 * underflow (off, the default), on the calling thread and on every thread of elbo's OpenMP
 * pool (threads created later inherit the caller's setting). Results stay deterministic and
 * independent of the thread count either way, but differ between the two settings wherever a
 * subnormal occurs. Arithmetic on subnormals takes microcode assists: Adam's first moments of
 * parameters whose gradient stays 0 (e.g. border pixels of Fashion-MNIST) decay into them
 * after about 800 steps, and `elbo train vae-mlp` then runs 1.5x slower. elbo_train turns
 * flushing on for the run (elbo_train_params.flush_denormals; TensorFlow and oneDNN flush by
 * default, PyTorch has set_flush_denormal).
 * ELBO_ERR_ARG where the CPU has no such control (non-x86). */
elbo_status elbo_set_flush_denormals(int on);
/* 1 when the calling thread flushes subnormals (FTZ and DAZ set), else 0. */
int elbo_get_flush_denormals(void);

/* ---- counter-based RNG (Philox-4x32-10, Salmon et al. 2011) --------------------------- */
/* A value depends only on (seed, counter): element i of a fill uses counter offset + i/4,
 * lane i%4, so the same seed gives the same numbers whatever the thread count. */
typedef struct {
    uint64_t seed;
    uint64_t offset; /* next unused counter; advanced by every fill */
} elbo_rng;

void elbo_rng_init(elbo_rng *rng, uint64_t seed);
/* Four 32-bit words of Philox-4x32-10 for (key, counter). */
void elbo_philox4x32(uint64_t key, uint64_t counter, uint32_t out[4]);
/* Fills x[0..n) with U[lo, hi), N(mean, std^2), or Rademacher +-1. */
void elbo_rng_uniform(elbo_rng *rng, float *x, size_t n, float lo, float hi);
void elbo_rng_normal(elbo_rng *rng, float *x, size_t n, float mean, float std);
void elbo_rng_rademacher(elbo_rng *rng, float *x, size_t n);
/* One uniform integer in [0, n). */
uint32_t elbo_rng_below(elbo_rng *rng, uint32_t n);

/* ---- tensors -------------------------------------------------------------------------- */
struct elbo_node;
typedef struct elbo_tensor {
    float *data;
    float *grad; /* d loss / d this; NULL until backward reaches it (parameters: also after
                  * elbo_paramset_zero_grad, as PyTorch's zero_grad(set_to_none=True)) */
    float *grad_slot; /* parameters: where grad lives, in the paramset's gradient block */
    int ndim;
    int64_t shape[ELBO_MAX_DIMS];
    int64_t numel;
    int requires_grad;
    struct elbo_node *node;   /* the op that produced it; NULL for leaves */
    struct elbo_tensor *base; /* for views: the tensor whose memory this shares */
    const char *name;         /* dotted parameter name, e.g. "down.1.conv1.weight" */
    int retain_grad;          /* keep grad after backward (elbo_tensor_retain_grad) */
} elbo_tensor;

/* Number of elements of a shape. */
int64_t elbo_shape_numel(int ndim, const int64_t *shape);
/* Writes "(2, 3, 4)" into buf; returns buf. */
char *elbo_shape_str(const elbo_tensor *t, char *buf, size_t len);
/* The same for a shape given as ndim sizes: "(2, 5)", "(5)", "()" (every message that names
 * a shape uses this form: ops, checkpoints, datasets). */
char *elbo_dims_str(int ndim, const int64_t *shape, char *buf, size_t len);
int elbo_same_shape(const elbo_tensor *a, const elbo_tensor *b);

/* ---- the step context: arena, tape, grad mode ----------------------------------------- */
typedef struct elbo_ctx elbo_ctx;

/* A context owns one step's memory. arena_bytes is a first-chunk size hint (0: 64 MiB);
 * the arena grows as needed during the first steps and is then reused without allocation. */
elbo_ctx *elbo_ctx_new(size_t arena_bytes);
void elbo_ctx_free(elbo_ctx *ctx);
/* Forgets every tensor and tape node of the step; keeps the memory. */
void elbo_ctx_reset(elbo_ctx *ctx);
/* Enables or disables recording of the tape (no-grad mode for sampling). Returns the
 * previous setting. */
int elbo_ctx_set_grad(elbo_ctx *ctx, int enabled);
int elbo_ctx_grad_enabled(const elbo_ctx *ctx);
/* Training mode (dropout active) or evaluation mode. Returns the previous setting. */
int elbo_ctx_set_training(elbo_ctx *ctx, int training);
int elbo_ctx_training(const elbo_ctx *ctx);
/* The context's RNG, used by ops that draw (dropout). */
elbo_rng *elbo_ctx_rng(elbo_ctx *ctx);
/* Bytes in use in the arena and its capacity, and the high-water mark over all steps. */
size_t elbo_ctx_arena_used(const elbo_ctx *ctx);
size_t elbo_ctx_arena_capacity(const elbo_ctx *ctx);
size_t elbo_ctx_arena_peak(const elbo_ctx *ctx);
/* Per-op time profile (src/core/profile.c). on = 1 starts it (an empty table, allocated once),
 * 0 stops it and frees the table. While on, each recorded op adds the time since the previous
 * recorded op (or since elbo_ctx_reset / elbo_ctx_profile_clear) to its forward figure, and
 * each backward function its own time to its backward figure. */
elbo_status elbo_ctx_set_profile(elbo_ctx *ctx, int on);
/* Empties the table and restarts the forward clock. */
void elbo_ctx_profile_clear(elbo_ctx *ctx);
/* Writes the table into buf (snprintf-style: returns the length it needed), one op per line,
 * largest total first, times divided by per (the number of profiled steps). */
int elbo_ctx_profile_format(const elbo_ctx *ctx, int per, char *buf, size_t len);

/* Raw arena memory for the step, 64-byte aligned, uninitialised (NULL + error when out
 * of memory). Freed by elbo_ctx_reset. */
void *elbo_ctx_alloc(elbo_ctx *ctx, size_t bytes);
/* A scratch buffer of at least `bytes` that lives until the next call of elbo_ctx_scratch
 * (for kernel temporaries such as im2col columns). It grows only when a larger size is
 * asked for, so a steady-state loop never allocates. */
void *elbo_ctx_scratch(elbo_ctx *ctx, size_t bytes);

/* New tensors in the step arena. ndim <= ELBO_MAX_DIMS. */
elbo_tensor *elbo_tensor_new(elbo_ctx *ctx, int ndim, const int64_t *shape);
elbo_tensor *elbo_tensor_zeros(elbo_ctx *ctx, int ndim, const int64_t *shape);
elbo_tensor *elbo_tensor_full(elbo_ctx *ctx, int ndim, const int64_t *shape, float value);
/* A tensor of the given shape over caller-owned memory (not copied, not freed). */
elbo_tensor *elbo_tensor_wrap(elbo_ctx *ctx, float *data, int ndim, const int64_t *shape);
/* A copy of src's values into the arena, as a leaf (not on the tape). */
elbo_tensor *elbo_tensor_copy(elbo_ctx *ctx, const elbo_tensor *src);
/* Shorthands: elbo_tensor_new4(ctx, B, C, H, W) etc. */
elbo_tensor *elbo_tensor_new1(elbo_ctx *ctx, int64_t d0);
elbo_tensor *elbo_tensor_new2(elbo_ctx *ctx, int64_t d0, int64_t d1);
elbo_tensor *elbo_tensor_new3(elbo_ctx *ctx, int64_t d0, int64_t d1, int64_t d2);
elbo_tensor *elbo_tensor_new4(elbo_ctx *ctx, int64_t d0, int64_t d1, int64_t d2, int64_t d3);
/* Marks a leaf tensor as needing d loss / d t (e.g. an image, for guidance). */
void elbo_tensor_requires_grad(elbo_tensor *t, int on);
/* The gradient buffer of t, allocated zeroed in the arena on first use. */
float *elbo_tensor_grad(elbo_ctx *ctx, elbo_tensor *t);
/* As PyTorch's retain_grad: after backward, the grad of a tensor computed by an op (not a
 * leaf) holds d loss / d t only if this was called on it before backward. Otherwise backward
 * may hand its buffer on to an input's gradient once it is complete (a + b passes d loss /
 * d(a + b) to a unchanged: one buffer, no copy), and the buffer then ends up holding that
 * input's gradient. Leaves (inputs, parameters) always keep theirs. */
void elbo_tensor_retain_grad(elbo_tensor *t);

/* ---- autodiff ------------------------------------------------------------------------- */
/* Backpropagates from a scalar (numel 1) loss: seeds d loss/d loss = 1 and accumulates
 * gradients into every tensor on the tape that requires them. */
elbo_status elbo_backward(elbo_ctx *ctx, elbo_tensor *loss);
/* The same, seeding with a caller-given upstream gradient of loss's shape (vector-Jacobian
 * product); grad_out == NULL means ones. */
elbo_status elbo_backward_with(elbo_ctx *ctx, elbo_tensor *out, const float *grad_out);

#ifdef __cplusplus
}
#endif
#endif
