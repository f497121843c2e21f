/* Per-op time profile of a context: forward and backward seconds and call counts, by op
 * name. Forward time is measured between consecutive recorded ops (ops record themselves
 * after computing their output), starting at the last elbo_ctx_reset or
 * elbo_ctx_profile_clear; so an op's forward figure also holds whatever unrecorded work ran
 * just before it (data preparation before the first op, say). Backward time is each
 * node's backward function, exactly. The table is allocated once, when profiling starts. */
#include "internal.h"

#include <stdlib.h>
#include <time.h>

#define PROF_MAX 128

typedef struct {
    const char *op;
    double fwd_s, bwd_s;
    int64_t calls; /* forward calls */
} prof_entry;

struct elbo__prof {
    prof_entry e[PROF_MAX];
    int n;
    double last;      /* time of the last forward mark */
    double other_s;   /* time of ops beyond PROF_MAX names */
};

double elbo__now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static prof_entry *entry(elbo__prof *p, const char *op) {
    for (int i = 0; i < p->n; i++)
        if (p->e[i].op == op || strcmp(p->e[i].op, op) == 0) return &p->e[i];
    if (p->n == PROF_MAX) return NULL;
    prof_entry *e = &p->e[p->n++];
    memset(e, 0, sizeof *e);
    e->op = op;
    return e;
}

/* Adds seconds to op's forward (fwd) or backward figure, or to the overflow past PROF_MAX. */
static void add(elbo__prof *p, const char *op, int fwd, double seconds) {
    prof_entry *e = entry(p, op);
    if (!e)
        p->other_s += seconds;
    else if (fwd) {
        e->fwd_s += seconds;
        e->calls++;
    } else {
        e->bwd_s += seconds;
    }
}

void elbo__prof_forward(elbo__prof *p, const char *op) {
    double t = elbo__now_s();
    add(p, op, 1, t - p->last);
    p->last = t;
}

void elbo__prof_backward(elbo__prof *p, const char *op, double seconds) {
    add(p, op, 0, seconds);
}

void elbo__prof_mark(elbo__prof *p) { p->last = elbo__now_s(); }

elbo_status elbo_ctx_set_profile(elbo_ctx *ctx, int on) {
    if (!on) {
        free(ctx->prof);
        ctx->prof = NULL;
        return ELBO_OK;
    }
    if (!ctx->prof) {
        ctx->prof = calloc(1, sizeof *ctx->prof);
        if (!ctx->prof) return elbo_error(ELBO_ERR_NOMEM, "profile: out of memory");
    }
    elbo_ctx_profile_clear(ctx);
    return ELBO_OK;
}

void elbo_ctx_profile_clear(elbo_ctx *ctx) {
    if (!ctx->prof) return;
    ctx->prof->n = 0;
    ctx->prof->other_s = 0;
    elbo__prof_mark(ctx->prof);
}

static int by_total(const void *a, const void *b) {
    const prof_entry *x = a, *y = b;
    double tx = x->fwd_s + x->bwd_s, ty = y->fwd_s + y->bwd_s;
    return (tx < ty) - (tx > ty);
}

/* The table, one op per line, largest total first:
 *   op  calls  forward ms  backward ms  total ms  share
 * with times divided by `per` (the number of steps profiled; 1 gives sums). */
int elbo_ctx_profile_format(const elbo_ctx *ctx, int per, char *buf, size_t len) {
    if (!ctx->prof) return snprintf(buf, len, "profile: not enabled\n");
    if (per < 1) per = 1;
    prof_entry e[PROF_MAX];
    int n = ctx->prof->n;
    memcpy(e, ctx->prof->e, sizeof e[0] * (size_t)n);
    qsort(e, (size_t)n, sizeof e[0], by_total);
    double all = ctx->prof->other_s;
    for (int i = 0; i < n; i++) all += e[i].fwd_s + e[i].bwd_s;
    size_t at = 0;
#define PUT(...)                                                                                   \
    do {                                                                                           \
        int k = snprintf(at < len ? buf + at : NULL, at < len ? len - at : 0, __VA_ARGS__);       \
        if (k > 0) at += (size_t)k;                                                                \
    } while (0)
    PUT("%-24s %8s %12s %12s %12s %6s\n", "op (per step)", "calls", "forward ms", "backward ms",
        "total ms", "share");
    for (int i = 0; i < n; i++) {
        double t = e[i].fwd_s + e[i].bwd_s;
        PUT("%-24s %8.1f %12.3f %12.3f %12.3f %5.1f%%\n", e[i].op, (double)e[i].calls / per,
            1e3 * e[i].fwd_s / per, 1e3 * e[i].bwd_s / per, 1e3 * t / per,
            all > 0 ? 100.0 * t / all : 0.0);
    }
    if (ctx->prof->other_s > 0)
        PUT("%-24s %8s %12s %12s %12.3f\n", "(more op names)", "", "", "",
            1e3 * ctx->prof->other_s / per);
    PUT("%-24s %8s %12s %12s %12.3f\n", "all recorded ops", "", "", "", 1e3 * all / per);
#undef PUT
    return (int)at;
}
