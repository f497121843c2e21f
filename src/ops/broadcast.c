/* Broadcasting engine (see broadcast.h): plans, and the driver that maps, accumulates or
 * reduces kernel values over fixed slices of the iteration space. */
#include "broadcast.h"

#define BC_CH 2048    /* elements per slice (map and total modes, reduce mode B) */
#define BC_CHA 512    /* slice of the kept inner axis (reduce mode A) */
#define BC_GROUP 1024 /* slices whose partial sums are combined per pass (total mode) */

int elbo__bc_shape(const char *op, int n, elbo_tensor *const *ts, int *ndim, int64_t *shape) {
    int nd = 0, owner[ELBO_MAX_DIMS];
    for (int i = 0; i < n; i++)
        if (ts[i] && ts[i]->ndim > nd) nd = ts[i]->ndim;
    for (int ax = 0; ax < nd; ax++) {
        shape[ax] = 1;
        owner[ax] = -1;
        for (int i = 0; i < n; i++) {
            if (!ts[i]) continue;
            int k = ax - (nd - ts[i]->ndim);
            if (k < 0 || ts[i]->shape[k] == 1) continue;
            if (owner[ax] < 0) {
                shape[ax] = ts[i]->shape[k];
                owner[ax] = i;
            } else if (shape[ax] != ts[i]->shape[k]) {
                elbo__shape_error(op, ts[owner[ax]], ts[i], "cannot broadcast");
                return -1;
            }
        }
    }
    *ndim = nd;
    return 0;
}

void elbo__bc_plan(elbo__bc *p, int ndim, const int64_t *shape, int nops, const int *ondim,
                   const int64_t *const *oshape) {
    memset(p, 0, sizeof *p);
    p->nops = nops;
    p->numel = elbo_shape_numel(ndim, shape);
    p->dst_numel = elbo_shape_numel(ondim[0], oshape[0]);
    int nd = 0;
    for (int ax = 0; ax < ndim; ax++) {
        if (shape[ax] == 1) continue;
        int64_t st[ELBO_BC_MAX_OPS];
        for (int k = 0; k < nops; k++) {
            int j = ax - (ndim - ondim[k]);
            st[k] = 0;
            if (j >= 0 && oshape[k][j] != 1) {
                st[k] = 1;
                for (int m = j + 1; m < ondim[k]; m++) st[k] *= oshape[k][m];
            }
        }
        /* Merge into the previous axis when every operand walks both as one. */
        int merge = nd > 0;
        for (int k = 0; k < nops && merge; k++)
            if (p->st[k][nd - 1] != st[k] * shape[ax]) merge = 0;
        if (merge) {
            p->dim[nd - 1] *= shape[ax];
            for (int k = 0; k < nops; k++) p->st[k][nd - 1] = st[k];
        } else {
            p->dim[nd] = shape[ax];
            for (int k = 0; k < nops; k++) p->st[k][nd] = st[k];
            nd++;
        }
    }
    if (nd == 0) { /* one element (or none) */
        nd = 1;
        p->dim[0] = p->numel;
    }
    p->nd = nd;
}

void elbo__bc_plan_t(elbo__bc *p, int ndim, const int64_t *shape, int nops,
                     const elbo_tensor *const *ops) {
    int ond[ELBO_BC_MAX_OPS];
    const int64_t *osh[ELBO_BC_MAX_OPS];
    for (int k = 0; k < nops; k++) {
        ond[k] = ops[k] ? ops[k]->ndim : ndim;
        osh[k] = ops[k] ? ops[k]->shape : shape;
    }
    elbo__bc_plan(p, ndim, shape, nops, ond, osh);
}

double elbo__dsum(const float *x, int64_t n) {
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0}, t = 0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int l = 0; l < 8; l++) s[l] += x[i + l];
    for (; i < n; i++) t += x[i];
    return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7])) + t;
}

/* An odometer over a list of plan axes, keeping every operand's offset. */
typedef struct {
    int n;
    int ax[ELBO_MAX_DIMS];
    int64_t idx[ELBO_MAX_DIMS];
    int64_t off[ELBO_BC_MAX_OPS];
} odo;

static void odo_init(odo *o, const elbo__bc *p, const int *axes, int n, int64_t r,
                     const int64_t *base) {
    o->n = n;
    for (int k = 0; k < p->nops; k++) o->off[k] = base ? base[k] : 0;
    for (int a = n - 1; a >= 0; a--) {
        int ax = axes[a];
        o->ax[a] = ax;
        o->idx[a] = r % p->dim[ax];
        r /= p->dim[ax];
        for (int k = 0; k < p->nops; k++) o->off[k] += o->idx[a] * p->st[k][ax];
    }
}

static void odo_next(odo *o, const elbo__bc *p) {
    for (int a = o->n - 1; a >= 0; a--) {
        int ax = o->ax[a];
        for (int k = 0; k < p->nops; k++) o->off[k] += p->st[k][ax];
        if (++o->idx[a] < p->dim[ax]) return;
        for (int k = 0; k < p->nops; k++) o->off[k] -= p->st[k][ax] * p->dim[ax];
        o->idx[a] = 0;
    }
}

/* Slicing of the full space into tasks: a task is a chunk of one row (long rows) or a run
 * of whole rows (short rows); rows are the index combinations of all but the last axis. */
typedef struct {
    int64_t L, rows, cpr, rpt, ntask;
    int outer[ELBO_MAX_DIMS];
    int n_outer;
} slicing;

static void slicing_init(slicing *s, const elbo__bc *p) {
    s->L = p->dim[p->nd - 1];
    s->rows = s->L ? p->numel / s->L : 0;
    if (s->L >= BC_CH) {
        s->cpr = (s->L + BC_CH - 1) / BC_CH;
        s->rpt = 1;
        s->ntask = s->rows * s->cpr;
    } else {
        s->cpr = 1;
        s->rpt = s->L ? BC_CH / s->L : 1;
        s->ntask = (s->rows + s->rpt - 1) / s->rpt;
    }
    s->n_outer = p->nd - 1;
    for (int a = 0; a < s->n_outer; a++) s->outer[a] = a;
}

/* Runs the kernel over task t; per stretch, either stores into dst (mode 0: dst full) or
 * returns the sum of the values (mode 1). */
static double run_task(const elbo__bc *p, const slicing *s, int64_t t, float *dst, int mode,
                       int accumulate, float scale, const float *const *in, const int *inc,
                       elbo__bc_fn fn, void *user) {
    float buf[BC_CH];
    int64_t r0, r1, j0, len;
    if (s->L >= BC_CH) {
        r0 = t / s->cpr;
        r1 = r0 + 1;
        j0 = (t % s->cpr) * BC_CH;
        len = s->L - j0 < BC_CH ? s->L - j0 : BC_CH;
    } else {
        r0 = t * s->rpt;
        r1 = r0 + s->rpt < s->rows ? r0 + s->rpt : s->rows;
        j0 = 0;
        len = s->L;
    }
    int nin = p->nops - 1;
    odo o;
    odo_init(&o, p, s->outer, s->n_outer, r0, NULL);
    double total = 0;
    for (int64_t r = r0; r < r1; r++) {
        const float *ptr[ELBO_BC_MAX_OPS];
        for (int k = 0; k < nin; k++) ptr[k] = in[k] + o.off[k + 1] + j0 * inc[k];
        if (mode == 1) {
            fn(len, ptr, inc, buf, user);
            total += elbo__dsum(buf, len);
        } else {
            float *d = dst + o.off[0] + j0;
            if (!accumulate && scale == 1.0f) {
                fn(len, ptr, inc, d, user);
            } else {
                fn(len, ptr, inc, buf, user);
                if (accumulate)
                    for (int64_t i = 0; i < len; i++) d[i] += scale * buf[i];
                else
                    for (int64_t i = 0; i < len; i++) d[i] = scale * buf[i];
            }
        }
        odo_next(&o, p);
    }
    return total;
}

/* Reduce mode A: the last axis is kept. A task is (kept outer index, chunk of the last axis);
 * it sums the chunk over every reduced index combination in row-major order. */
static void reduce_last_kept(const elbo__bc *p, float *dst, int accumulate, float scale,
                             const float *const *in, const int *inc, elbo__bc_fn fn, void *user) {
    int kept[ELBO_MAX_DIMS], red[ELBO_MAX_DIMS], nk = 0, nr = 0;
    int64_t Mo = 1, R = 1, L = p->dim[p->nd - 1];
    for (int ax = 0; ax < p->nd - 1; ax++) {
        if (p->st[0][ax]) {
            kept[nk++] = ax;
            Mo *= p->dim[ax];
        } else {
            red[nr++] = ax;
            R *= p->dim[ax];
        }
    }
    /* Narrower chunks when there would be too few tasks to share out (e.g. (N, D) -> (D)).
     * The chunking does not change any element's summation order. */
    int64_t ch = BC_CHA;
    while (ch > 64 && Mo * ((L + ch - 1) / ch) < 16) ch /= 2;
    int64_t cpr = (L + ch - 1) / ch, ntask = Mo * cpr;
    int nin = p->nops - 1;
    ELBO_PARALLEL_FOR(
        p->numel > ELBO_PAR_MIN, for (int64_t t = 0; t < ntask; t++) {
            float buf[BC_CHA];
            double acc[BC_CHA];
            int64_t r = t / cpr, j0 = (t % cpr) * ch;
            int64_t len = L - j0 < ch ? L - j0 : ch;
            odo base, o;
            odo_init(&base, p, kept, nk, r, NULL);
            odo_init(&o, p, red, nr, 0, base.off);
            for (int64_t j = 0; j < len; j++) acc[j] = 0;
            for (int64_t c = 0; c < R; c++) {
                const float *ptr[ELBO_BC_MAX_OPS];
                for (int k = 0; k < nin; k++) ptr[k] = in[k] + o.off[k + 1] + j0 * inc[k];
                fn(len, ptr, inc, buf, user);
                for (int64_t j = 0; j < len; j++) acc[j] += buf[j];
                odo_next(&o, p);
            }
            float *d = dst + base.off[0] + j0;
            if (accumulate)
                for (int64_t j = 0; j < len; j++) d[j] += (float)(scale * acc[j]);
            else
                for (int64_t j = 0; j < len; j++) d[j] = (float)(scale * acc[j]);
        });
}

/* Reduce mode B: the last axis is reduced. A task is one destination element; it sums the
 * contiguous last axis (in slices) for every reduced outer combination in row-major order. */
static void reduce_last_reduced(const elbo__bc *p, float *dst, int accumulate, float scale,
                                const float *const *in, const int *inc, elbo__bc_fn fn,
                                void *user) {
    int kept[ELBO_MAX_DIMS], red[ELBO_MAX_DIMS], nk = 0, nr = 0;
    int64_t M = 1, R = 1, L = p->dim[p->nd - 1];
    for (int ax = 0; ax < p->nd - 1; ax++) {
        if (p->st[0][ax]) {
            kept[nk++] = ax;
            M *= p->dim[ax];
        } else {
            red[nr++] = ax;
            R *= p->dim[ax];
        }
    }
    int nin = p->nops - 1;
    ELBO_PARALLEL_FOR(
        p->numel > ELBO_PAR_MIN, for (int64_t t = 0; t < M; t++) {
            float buf[BC_CH];
            odo base, o;
            odo_init(&base, p, kept, nk, t, NULL);
            odo_init(&o, p, red, nr, 0, base.off);
            double s = 0;
            for (int64_t c = 0; c < R; c++) {
                for (int64_t j0 = 0; j0 < L; j0 += BC_CH) {
                    int64_t len = L - j0 < BC_CH ? L - j0 : BC_CH;
                    const float *ptr[ELBO_BC_MAX_OPS];
                    for (int k = 0; k < nin; k++) ptr[k] = in[k] + o.off[k + 1] + j0 * inc[k];
                    fn(len, ptr, inc, buf, user);
                    s += elbo__dsum(buf, len);
                }
                odo_next(&o, p);
            }
            float *d = dst + base.off[0];
            if (accumulate)
                *d += (float)(scale * s);
            else
                *d = (float)(scale * s);
        });
}

void elbo__bc_apply(const elbo__bc *p, float *dst, int accumulate, float scale,
                    const float *const *in, elbo__bc_fn fn, void *user) {
    if (p->numel == 0) { /* an empty sum is 0; an empty mean (scale 1/0) is nan, as torch */
        if (!accumulate)
            for (int64_t i = 0; i < p->dst_numel; i++) dst[i] = 0.0f * scale;
        return;
    }
    int nd = p->nd, inc[ELBO_BC_MAX_OPS];
    for (int k = 1; k < p->nops; k++) inc[k - 1] = p->st[k][nd - 1] != 0;
    int n_red = 0;
    for (int ax = 0; ax < nd; ax++) n_red += p->st[0][ax] == 0;
    slicing s;
    slicing_init(&s, p);
    if (n_red == 0) { /* dst has the full shape */
        ELBO_PARALLEL_FOR(p->numel > ELBO_PAR_MIN,
                          for (int64_t t = 0; t < s.ntask; t++)
                              run_task(p, &s, t, dst, 0, accumulate, scale, in, inc, fn, user););
    } else if (n_red == nd) { /* dst is one element: fixed slices, partials in slice order */
        double total = 0;
        for (int64_t g0 = 0; g0 < s.ntask; g0 += BC_GROUP) {
            int64_t gn = s.ntask - g0 < BC_GROUP ? s.ntask - g0 : BC_GROUP;
            double part[BC_GROUP];
            ELBO_PARALLEL_FOR(p->numel > ELBO_PAR_MIN,
                              for (int64_t t = 0; t < gn; t++) part[t] =
                                  run_task(p, &s, g0 + t, NULL, 1, 0, 1.0f, in, inc, fn, user););
            for (int64_t t = 0; t < gn; t++) total += part[t];
        }
        if (accumulate)
            dst[0] += (float)(scale * total);
        else
            dst[0] = (float)(scale * total);
    } else if (p->st[0][nd - 1]) {
        reduce_last_kept(p, dst, accumulate, scale, in, inc, fn, user);
    } else {
        reduce_last_reduced(p, dst, accumulate, scale, in, inc, fn, user);
    }
}

void elbo__bc_grad(elbo_ctx *ctx, elbo_tensor *x, int ndim, const int64_t *shape, float scale,
                   int nin, const elbo_tensor *const *shapes, const float *const *ptrs,
                   elbo__bc_fn fn, void *user) {
    int fresh;
    float *gx = elbo__grad_fresh(ctx, x, &fresh);
    if (!gx) return;
    const elbo_tensor *ops[ELBO_BC_MAX_OPS];
    ops[0] = x;
    for (int k = 0; k < nin; k++) ops[k + 1] = shapes[k];
    elbo__bc p;
    elbo__bc_plan_t(&p, ndim, shape, nin + 1, ops);
    elbo__bc_apply(&p, gx, !fresh, scale, ptrs, fn, user);
}
