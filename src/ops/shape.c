/* Indexing and shape ops that copy: embedding, concat, permute/transpose, and inverted
 * dropout. Every backward writes each gradient element from one thread in a fixed order, so
 * results are bitwise identical for any thread count (no atomics, no reductions whose split
 * depends on the thread count). */
#include "internal.h"

#include <math.h>

/* ---- copy helpers ------------------------------------------------------------------- */
/* Copies (acc = 0) or adds (acc = 1) `rows` rows of `len` floats from src (row stride
 * ss) into dst (row stride ds). Parallel over rows, or over chunks of a single long row;
 * every destination element is written by one thread. */
#define COPY_CHUNK 4096
static void copy_rows(float *dst, int64_t ds, const float *src, int64_t ss, int64_t rows,
                      int64_t len, int acc) {
    int64_t total = rows * len;
    if (total == 0) return;
    if (rows == 1) {
        int64_t nc = (len + COPY_CHUNK - 1) / COPY_CHUNK;
        ELBO_PARALLEL_FOR(
            total > ELBO_PAR_MIN, for (int64_t c = 0; c < nc; c++) {
                int64_t lo = c * COPY_CHUNK, hi = lo + COPY_CHUNK < len ? lo + COPY_CHUNK : len;
                if (acc)
                    for (int64_t i = lo; i < hi; i++) dst[i] += src[i];
                else
                    memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
            });
        return;
    }
    ELBO_PARALLEL_FOR(
        total > ELBO_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
            float *d = dst + r * ds;
            const float *s = src + r * ss;
            if (acc)
                for (int64_t i = 0; i < len; i++) d[i] += s[i];
            else
                memcpy(d, s, (size_t)len * sizeof(float));
        });
}

/* x viewed as (outer, shape[axis], inner). */
static void outer_inner(const elbo_tensor *x, int axis, int64_t *outer, int64_t *inner) {
    *outer = 1;
    *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= x->shape[i];
    for (int i = axis + 1; i < x->ndim; i++) *inner *= x->shape[i];
}

/* ---- embedding: y[i, :] = W[ids[i], :], W (V,D) -> (n,D) ------------------------------ */
/* dW[v, :] += sum_{i : ids[i] = v} dy[i, :], the i in increasing order. The ids are
 * bucketed by a stable counting sort so that each vocabulary row is owned by one thread. */
static void embedding_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *w = n->in[0], *y = n->out;
    float *gw = elbo__grad(ctx, w);
    if (!gw) return;
    const int32_t *ids = n->saved;
    const float *gy = y->grad;
    int64_t nid = y->shape[0], V = w->shape[0], D = w->shape[1];
    /* start[v] .. start[v+1]: positions i with ids[i] = v, increasing. */
    int64_t *start = nid * D > ELBO_PAR_MIN
                         ? elbo_ctx_scratch(ctx, (size_t)(V + 1 + nid) * sizeof(int64_t))
                         : NULL;
    if (!start) { /* small (or no scratch memory): the same sums, in the same order */
        for (int64_t i = 0; i < nid; i++) {
            float *dst = gw + (int64_t)ids[i] * D;
            const float *src = gy + i * D;
            for (int64_t d = 0; d < D; d++) dst[d] += src[d];
        }
        return;
    }
    int64_t *order = start + V + 1;
    memset(start, 0, (size_t)(V + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < nid; i++) start[ids[i] + 1]++;
    for (int64_t v = 0; v < V; v++) start[v + 1] += start[v];
    /* Fill with a moving cursor per row: start[v] is advanced, then restored. */
    for (int64_t i = 0; i < nid; i++) order[start[ids[i]]++] = i;
    for (int64_t v = V; v > 0; v--) start[v] = start[v - 1];
    start[0] = 0;
    ELBO_PARALLEL_FOR(
        1, for (int64_t v = 0; v < V; v++) {
            float *dst = gw + v * D;
            for (int64_t k = start[v]; k < start[v + 1]; k++) {
                const float *src = gy + order[k] * D;
                for (int64_t d = 0; d < D; d++) dst[d] += src[d];
            }
        });
}

elbo_tensor *elbo_embedding(elbo_ctx *ctx, elbo_tensor *weight, const int32_t *ids, int64_t n) {
    if (!weight) return NULL;
    char s[96];
    if (weight->ndim != 2) {
        elbo_error(ELBO_ERR_SHAPE, "embedding: weight has shape %s, expected (V, D)",
                   elbo_shape_str(weight, s, sizeof s));
        return NULL;
    }
    if (n < 0 || (n > 0 && !ids)) {
        elbo_error(ELBO_ERR_ARG, "embedding: %lld ids%s", (long long)n, ids ? "" : " (NULL)");
        return NULL;
    }
    int64_t V = weight->shape[0], D = weight->shape[1];
    for (int64_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= V) {
            elbo_error(ELBO_ERR_ARG, "embedding: id %d at position %lld is outside [0, %lld)",
                       (int)ids[i], (long long)i, (long long)V);
            return NULL;
        }
    elbo_tensor *y = elbo_tensor_new2(ctx, n, D);
    if (!y) return NULL;
    const float *wd = weight->data;
    float *yd = y->data;
    ELBO_PARALLEL_FOR(n * D > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < n; i++)
                          memcpy(yd + i * D, wd + (int64_t)ids[i] * D, (size_t)D * sizeof(float)););
    int ok;
    elbo_node *node = elbo__record(ctx, "embedding", y, embedding_backward, &ok, 1, weight);
    if (!ok) return NULL;
    if (node) {
        int32_t *saved = elbo_ctx_alloc(ctx, (size_t)(n ? n : 1) * sizeof(int32_t));
        if (!saved) return NULL;
        if (n) memcpy(saved, ids, (size_t)n * sizeof(int32_t));
        node->saved = saved;
    }
    return y;
}

/* ---- concat: xs[i] (..., L_i, ...) along axis -> (..., sum L_i, ...) ------------------ */
/* Each input's gradient is its block of dy along the axis. */
static void concat_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *y = n->out;
    int axis = (int)n->iarg[0];
    int64_t outer, inner, off = 0;
    outer_inner(y, axis, &outer, &inner);
    int64_t L = y->shape[axis];
    for (int i = 0; i < n->n_in; i++) {
        elbo_tensor *x = n->in[i];
        int64_t Li = x->shape[axis];
        int fresh;
        float *gx = elbo__grad_fresh(ctx, x, &fresh);
        if (gx)
            copy_rows(gx, Li * inner, y->grad + off * inner, L * inner, outer, Li * inner, !fresh);
        off += Li;
    }
}

elbo_tensor *elbo_concat(elbo_ctx *ctx, elbo_tensor *const *xs, int n, int axis) {
    if (n < 1 || !xs) {
        elbo_error(ELBO_ERR_ARG, "concat: %d inputs (need at least 1)", n);
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!xs[i]) return NULL;
    int a = elbo__axis("concat", xs[0], axis);
    if (a < 0) return NULL;
    int64_t shape[ELBO_MAX_DIMS];
    for (int d = 0; d < xs[0]->ndim; d++) shape[d] = xs[0]->shape[d];
    for (int i = 1; i < n; i++) {
        int bad = xs[i]->ndim != xs[0]->ndim;
        for (int d = 0; d < xs[0]->ndim && !bad; d++)
            if (d != a && xs[i]->shape[d] != xs[0]->shape[d]) bad = 1;
        if (bad) {
            char why[96];
            snprintf(why, sizeof why, "inputs 0 and %d differ outside axis %d", i, a);
            elbo__shape_error("concat", xs[0], xs[i], why);
            return NULL;
        }
        shape[a] += xs[i]->shape[a];
    }
    elbo_tensor *y = elbo_tensor_new(ctx, xs[0]->ndim, shape);
    if (!y) return NULL;
    int64_t outer, inner, off = 0, L = shape[a];
    outer_inner(y, a, &outer, &inner);
    for (int i = 0; i < n; i++) {
        int64_t Li = xs[i]->shape[a];
        copy_rows(y->data + off * inner, L * inner, xs[i]->data, Li * inner, outer, Li * inner, 0);
        off += Li;
    }
    /* elbo__record takes a fixed argument list: record with one input that needs a
     * gradient (if any), then attach the full input list. */
    elbo_tensor *any = NULL;
    for (int i = 0; i < n && !any; i++)
        if (xs[i]->requires_grad) any = xs[i];
    int ok;
    elbo_node *node = elbo__record(ctx, "concat", y, concat_backward, &ok, 1, any);
    if (!ok) return NULL;
    if (node) {
        elbo_tensor **in = elbo_ctx_alloc(ctx, sizeof(elbo_tensor *) * (size_t)n);
        if (!in) return NULL;
        for (int i = 0; i < n; i++) in[i] = xs[i];
        node->in = in;
        node->n_in = n;
        node->iarg[0] = a;
    }
    return y;
}

elbo_tensor *elbo_cat2(elbo_ctx *ctx, elbo_tensor *a, elbo_tensor *b, int axis) {
    if (!a || !b) return NULL;
    elbo_tensor *xs[2] = {a, b};
    return elbo_concat(ctx, xs, 2, axis);
}

/* ---- permute: y.shape[i] = x.shape[perm[i]] ------------------------------------------- */
/* The permutation is first reduced to its essential form: size-1 axes are dropped and
 * runs of output axes that are consecutive in the source are merged, so NCHW -> NHWC
 * becomes (N, C, HW) -> (N, HW, C) and every last-two-axes transpose becomes (B, M, N) ->
 * (B, N, M). Then either the innermost output axis is contiguous in the source (rows are
 * copied), or the output axis that is contiguous in the source is transposed with the
 * innermost output axis in TILE x TILE tiles, so reads and writes both stay in cache. */
#define TILE 32

typedef struct {
    int k;                      /* essential rank */
    int64_t n[ELBO_MAX_DIMS];   /* output sizes */
    int64_t sst[ELBO_MAX_DIMS]; /* source stride of each output axis */
    int64_t dst[ELBO_MAX_DIMS]; /* output (contiguous) stride of each output axis */
} perm_plan;

static void perm_plan_make(perm_plan *pl, int ndim, const int64_t *shape, const int *perm) {
    int map[ELBO_MAX_DIMS], q[ELBO_MAX_DIMS], m = 0, k = 0;
    int64_t ssz[ELBO_MAX_DIMS];
    for (int a = 0; a < ndim; a++) {
        map[a] = shape[a] > 1 ? m : -1;
        if (shape[a] > 1) ssz[m++] = shape[a];
    }
    for (int i = 0; i < ndim; i++)
        if (map[perm[i]] >= 0) q[k++] = map[perm[i]];
    /* Groups of source axes, listed in output order. */
    int last[ELBO_MAX_DIMS], ng = 0;
    int64_t gsz[ELBO_MAX_DIMS];
    for (int i = 0; i < k; i++) {
        if (ng > 0 && q[i] == last[ng - 1] + 1) {
            last[ng - 1] = q[i];
            gsz[ng - 1] *= ssz[q[i]];
        } else {
            last[ng] = q[i];
            gsz[ng] = ssz[q[i]];
            ng++;
        }
    }
    /* Source stride of a group: the product of the sizes of the source axes after it. */
    for (int g = 0; g < ng; g++) {
        int64_t st = 1;
        for (int b = last[g] + 1; b < m; b++) st *= ssz[b];
        pl->sst[g] = st;
        pl->n[g] = gsz[g];
    }
    pl->k = ng;
    int64_t st = 1;
    for (int g = ng - 1; g >= 0; g--) {
        pl->dst[g] = st;
        st *= gsz[g];
    }
}

/* dst (= or +=) src permuted by perm; src has the given shape. */
static void permute_kernel(float *dst, const float *src, int ndim, const int64_t *shape,
                           const int *perm, int acc) {
    perm_plan pl;
    perm_plan_make(&pl, ndim, shape, perm);
    int64_t numel = elbo_shape_numel(ndim, shape);
    if (numel == 0) return;
    int k = pl.k;
    if (k <= 1) { /* the identity on memory */
        copy_rows(dst, numel, src, numel, 1, numel, acc);
        return;
    }
    if (pl.sst[k - 1] == 1) {
        /* Innermost axis contiguous in both: copy rows of n[k-1]. */
        int64_t len = pl.n[k - 1], rows = numel / len;
        ELBO_PARALLEL_FOR(
            numel > ELBO_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
                int64_t rem = r, so = 0;
                for (int i = k - 2; i >= 0; i--) {
                    so += (rem % pl.n[i]) * pl.sst[i];
                    rem /= pl.n[i];
                }
                float *d = dst + r * len;
                const float *s = src + so;
                if (acc)
                    for (int64_t t = 0; t < len; t++) d[t] += s[t];
                else
                    memcpy(d, s, (size_t)len * sizeof(float));
            });
        return;
    }
    /* j: the output axis that is contiguous in the source. */
    int j = 0;
    while (pl.sst[j] != 1) j++;
    int oax[ELBO_MAX_DIMS], no = 0;
    int64_t n_outer = 1;
    for (int i = 0; i < k - 1; i++)
        if (i != j) {
            oax[no++] = i;
            n_outer *= pl.n[i];
        }
    int64_t A = pl.n[j], Bn = pl.n[k - 1];
    int64_t ta = (A + TILE - 1) / TILE, tb = (Bn + TILE - 1) / TILE;
    int64_t dsa = pl.dst[j], ssb = pl.sst[k - 1];
    int64_t items = n_outer * ta * tb;
    ELBO_PARALLEL_FOR(
        numel > ELBO_PAR_MIN, for (int64_t it = 0; it < items; it++) {
            int64_t o = it / (ta * tb), t = it % (ta * tb);
            int64_t a0 = (t / tb) * TILE, b0 = (t % tb) * TILE;
            int64_t a1 = a0 + TILE < A ? a0 + TILE : A, b1 = b0 + TILE < Bn ? b0 + TILE : Bn;
            int64_t so = 0, dof = 0, rem = o;
            for (int q = no - 1; q >= 0; q--) {
                int i = oax[q];
                int64_t c = rem % pl.n[i];
                rem /= pl.n[i];
                so += c * pl.sst[i];
                dof += c * pl.dst[i];
            }
            /* y[a, b] = x[a + b ssb] over the tile; b is innermost in the output. */
            for (int64_t a = a0; a < a1; a++) {
                float *d = dst + dof + a * dsa;
                const float *s = src + so + a;
                if (acc)
                    for (int64_t b = b0; b < b1; b++) d[b] += s[b * ssb];
                else
                    for (int64_t b = b0; b < b1; b++) d[b] = s[b * ssb];
            }
        });
}

/* dx += permute(dy, perm^-1). */
static void permute_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    int inv[ELBO_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) inv[n->iarg[i]] = i;
    permute_kernel(gx, y->grad, y->ndim, y->shape, inv, 1);
}

/* Validates perm against x (negative entries count from the end) into p; 0 on error. */
static int check_perm(const char *op, const elbo_tensor *x, const int *perm, int *p) {
    int seen[ELBO_MAX_DIMS] = {0}, bad = !perm;
    for (int i = 0; i < x->ndim && !bad; i++) {
        int a = perm[i] < 0 ? perm[i] + x->ndim : perm[i];
        if (a < 0 || a >= x->ndim || seen[a])
            bad = 1;
        else {
            seen[a] = 1;
            p[i] = a;
        }
    }
    if (!bad) return 1;
    char s[96], ps[96] = "NULL";
    if (perm) {
        size_t k = (size_t)snprintf(ps, sizeof ps, "(");
        for (int i = 0; i < x->ndim && k < sizeof ps; i++)
            k += (size_t)snprintf(ps + k, sizeof ps - k, i ? ", %d" : "%d", perm[i]);
        if (k < sizeof ps) snprintf(ps + k, sizeof ps - k, ")");
    }
    elbo_error(ELBO_ERR_ARG, "%s: %s is not a permutation of the %d axes of shape %s", op, ps,
               x->ndim, elbo_shape_str(x, s, sizeof s));
    return 0;
}

/* perm already validated and normalised. */
static elbo_tensor *permute_impl(elbo_ctx *ctx, elbo_tensor *x, const int *p) {
    int64_t shape[ELBO_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[p[i]];
    elbo_tensor *y = elbo_tensor_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    permute_kernel(y->data, x->data, x->ndim, x->shape, p, 0);
    int ok;
    elbo_node *node = elbo__record(ctx, "permute", y, permute_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (node)
        for (int i = 0; i < x->ndim; i++) node->iarg[i] = p[i];
    return y;
}

elbo_tensor *elbo_permute(elbo_ctx *ctx, elbo_tensor *x, const int *perm) {
    if (!x) return NULL;
    int p[ELBO_MAX_DIMS];
    if (!check_perm("permute", x, perm, p)) return NULL;
    return permute_impl(ctx, x, p);
}

elbo_tensor *elbo_transpose(elbo_ctx *ctx, elbo_tensor *x, int axis0, int axis1) {
    if (!x) return NULL;
    int a0 = elbo__axis("transpose", x, axis0),
        a1 = a0 < 0 ? -1 : elbo__axis("transpose", x, axis1);
    if (a0 < 0 || a1 < 0) return NULL;
    int p[ELBO_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) p[i] = i;
    p[a0] = a1;
    p[a1] = a0;
    return permute_impl(ctx, x, p);
}

/* ---- dropout: y = x m, m = [u >= p] / (1 - p), u ~ U[0,1) ----------------------------- */
/* Inverted dropout (Srivastava et al. 2014, as torch.nn.functional.dropout); dx += dy m. */
static void dropout_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    const float *m = n->saved, *gy = y->grad;
    ELBO_PARALLEL_FOR(x->numel > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < x->numel; i++) gx[i] += gy[i] * m[i];);
}

elbo_tensor *elbo_dropout(elbo_ctx *ctx, elbo_tensor *x, float p) {
    if (!x) return NULL;
    if (!(p >= 0.0f && p < 1.0f)) {
        elbo_error(ELBO_ERR_ARG, "dropout: probability %g outside [0, 1)", (double)p);
        return NULL;
    }
    if (!elbo_ctx_training(ctx) || p == 0.0f) return x;
    elbo_tensor *y = elbo__new_like(ctx, x);
    float *m = y ? elbo_ctx_alloc(ctx, (size_t)(x->numel ? x->numel : 1) * sizeof(float)) : NULL;
    if (!m) return NULL;
    elbo_rng_uniform(elbo_ctx_rng(ctx), m, (size_t)x->numel, 0.0f, 1.0f);
    float scale = 1.0f / (1.0f - p);
    const float *xd = x->data;
    float *yd = y->data;
    ELBO_PARALLEL_FOR(
        x->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < x->numel; i++) {
            m[i] = m[i] >= p ? scale : 0.0f;
            yd[i] = xd[i] * m[i];
        });
    int ok;
    elbo_node *node = elbo__record(ctx, "dropout", y, dropout_backward, &ok, 1, x);
    if (!ok) return NULL;
    if (node) node->saved = m;
    return y;
}
