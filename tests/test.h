/* A small test harness: TEST(name) registers a test at load time; CHECK* record a failure
 * with file, line and message and leave the test. The runner (tests/main.c) prints one line
 * per test and ends with "N passed, N failed". */
#ifndef ELBO_TEST_H
#define ELBO_TEST_H

#include "elbo.h"

#include <math.h>
#include <stdio.h>

typedef void (*elbo_test_fn)(void);
void test_register(const char *name, elbo_test_fn fn);
void test_fail(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int test_failed(void);

#define TEST(name)                                                                                 \
    static void test_##name(void);                                                                 \
    __attribute__((constructor)) static void test_reg_##name(void) {                               \
        test_register(#name, test_##name);                                                         \
    }                                                                                              \
    static void test_##name(void)

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, "%s (last error: %s)", #cond, elbo_last_error());        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#define CHECK_MSG(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            test_fail(__FILE__, __LINE__, __VA_ARGS__);                                            \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* |a - b| <= tol */
#define CHECK_NEAR(a, b, tol)                                                                      \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol))) {                                                           \
            test_fail(__FILE__, __LINE__, "%s = %.9g, %s = %.9g, |diff| %.3g > %.3g", #a, a_, #b,  \
                      b_, fabs(a_ - b_), (double)(tol));                                           \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- finite-difference gradient check (tests/gradcheck.c) ----------------------------- */
/* Builds the op under test from its inputs. */
typedef elbo_tensor *(*gc_build_fn)(elbo_ctx *ctx, elbo_tensor **in, void *user);

typedef struct {
    int n_in;
    int ndim[6];
    int64_t shape[6][ELBO_MAX_DIMS];
    const float *init[6]; /* initial values (NULL: N(0,1) from seed) */
    int no_grad[6];       /* 1: input is not differentiated (e.g. a mask) */
    float eps;            /* finite-difference step (default 1e-3) */
    float atol, rtol;     /* pass if |analytic - numeric| <= atol + rtol |numeric| */
    int max_checks;       /* elements checked per input (default 200, spread evenly) */
    uint64_t seed;
} gc_spec;

/* Compares the tape's gradients of L = sum(out * w), w ~ N(0,1) fixed, with central
 * differences (L(x + eps e_j) - L(x - eps e_j)) / (2 eps) evaluated in double. Returns 0
 * on success; on failure writes the worst element into msg. */
int gradcheck(const char *op, gc_build_fn build, void *user, const gc_spec *spec, char *msg,
              size_t msg_len);

#define CHECK_GRAD(op, build, user, spec)                                                          \
    do {                                                                                           \
        char gc_msg_[512];                                                                         \
        if (gradcheck(op, build, user, spec, gc_msg_, sizeof gc_msg_) != 0) {                      \
            test_fail(__FILE__, __LINE__, "gradcheck %s: %s", op, gc_msg_);                        \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* ---- PyTorch fixtures (tests/fixture.c) ----------------------------------------------- */
/* File format written by tools/gen_fixtures.py, little endian:
 *   "EFX1", u32 count, then per entry: u32 name_len, name, u32 dtype (0 f32, 1 i32),
 *   u32 ndim, i64 shape[ndim], data (numel * 4 bytes). */
typedef struct {
    char name[128];
    int dtype;
    int ndim;
    int64_t shape[ELBO_MAX_DIMS];
    int64_t numel;
    void *data;
} fx_entry;

typedef struct {
    int count;
    fx_entry *e;
} fx_file;

/* Loads tests/fixtures/<name>.bin (relative to the source tree: ELBO_FIXTURE_DIR env var or
 * "tests/fixtures"). Returns 0 on success. */
int fx_load(fx_file *f, const char *name);
void fx_free(fx_file *f);
const fx_entry *fx_get(const fx_file *f, const char *name);
/* A tensor in ctx holding a f32 entry's values and shape (NULL if missing). */
elbo_tensor *fx_tensor(elbo_ctx *ctx, const fx_file *f, const char *name);
/* max |a - b| / (atol + rtol |b|) <= 1 over n elements; writes the worst index to msg. */
int fx_close(const float *a, const float *b, int64_t n, float atol, float rtol, char *msg,
             size_t len);

#define CHECK_CLOSE_ARR(what, a, b, n, atol, rtol)                                                 \
    do {                                                                                           \
        char cc_msg_[256];                                                                         \
        if (!fx_close(a, b, n, atol, rtol, cc_msg_, sizeof cc_msg_)) {                             \
            test_fail(__FILE__, __LINE__, "%s: %s", what, cc_msg_);                                \
            return;                                                                                \
        }                                                                                          \
    } while (0)

#endif
