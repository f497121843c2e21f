/* Named parameters: declared one by one by the layers, then allocated as one flat block of
 * values and one of gradients (64-byte aligned) and initialised in declaration order from a
 * single Philox stream, so a seed fixes every weight whatever the thread count. */
#include "internal.h"

#include <stdlib.h>

#define PS_ALIGN 64

struct elbo_paramset {
    elbo_tensor **p; /* parameters in declaration order (malloc'd, names owned) */
    elbo_init *init;
    int64_t *offset; /* start of parameter i in the flat blocks */
    int n, cap;
    int64_t numel;
    float *data, *grad;
    int finalized;
};

elbo_paramset *elbo_paramset_new(void) {
    elbo_paramset *ps = calloc(1, sizeof *ps);
    if (!ps) elbo_error(ELBO_ERR_NOMEM, "paramset: out of memory");
    return ps;
}

void elbo_paramset_free(elbo_paramset *ps) {
    if (!ps) return;
    for (int i = 0; i < ps->n; i++) {
        free((char *)ps->p[i]->name);
        free(ps->p[i]);
    }
    free(ps->p);
    free(ps->init);
    free(ps->offset);
    free(ps->data);
    free(ps->grad);
    free(ps);
}

const char *elbo_name_join(char *buf, size_t len, const char *prefix, const char *name) {
    int k = prefix && *prefix ? snprintf(buf, len, "%s.%s", prefix, name)
                              : snprintf(buf, len, "%s", name);
    if (k < 0 || (size_t)k >= len) {
        elbo_error(ELBO_ERR_ARG, "parameter name '%s.%s' longer than %zu characters",
                   prefix ? prefix : "", name, len ? len - 1 : 0);
        return NULL;
    }
    return buf;
}

const char *elbo_name_index(char *buf, size_t len, const char *prefix, int i) {
    char idx[16];
    snprintf(idx, sizeof idx, "%d", i);
    return elbo_name_join(buf, len, prefix, idx);
}

elbo_tensor *elbo_paramset_find(const elbo_paramset *ps, const char *name) {
    if (!ps || !name) return NULL;
    for (int i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i]->name, name)) return ps->p[i];
    return NULL;
}

elbo_tensor *elbo_paramset_add(elbo_paramset *ps, const char *prefix, const char *name, int ndim,
                               const int64_t *shape, elbo_init init) {
    if (!ps || !name || !*name) {
        elbo_error(ELBO_ERR_ARG, "paramset_add: NULL paramset or empty name");
        return NULL;
    }
    size_t len = (prefix && *prefix ? strlen(prefix) + 1 : 0) + strlen(name) + 1;
    char *full = malloc(len);
    if (!full) {
        elbo_error(ELBO_ERR_NOMEM, "paramset_add: out of memory");
        return NULL;
    }
    if (prefix && *prefix)
        snprintf(full, len, "%s.%s", prefix, name);
    else
        snprintf(full, len, "%s", name);
    if (ps->finalized) {
        elbo_error(ELBO_ERR_STATE, "paramset_add: '%s' declared after finalize", full);
        free(full);
        return NULL;
    }
    if (elbo_paramset_find(ps, full)) {
        elbo_error(ELBO_ERR_ARG, "paramset_add: duplicate parameter name '%s'", full);
        free(full);
        return NULL;
    }
    if (ndim < 0 || ndim > ELBO_MAX_DIMS) {
        elbo_error(ELBO_ERR_SHAPE, "paramset_add: '%s' has %d dimensions (at most %d)", full, ndim,
                   ELBO_MAX_DIMS);
        free(full);
        return NULL;
    }
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0) {
            elbo_error(ELBO_ERR_SHAPE, "paramset_add: '%s' has negative size %lld in axis %d", full,
                       (long long)shape[i], i);
            free(full);
            return NULL;
        }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 16;
        elbo_tensor **p = realloc(ps->p, (size_t)cap * sizeof *p);
        if (p) ps->p = p;
        elbo_init *in = p ? realloc(ps->init, (size_t)cap * sizeof *in) : NULL;
        if (in) ps->init = in;
        int64_t *off = in ? realloc(ps->offset, (size_t)cap * sizeof *off) : NULL;
        if (off) ps->offset = off;
        if (!off) {
            elbo_error(ELBO_ERR_NOMEM, "paramset_add: out of memory");
            free(full);
            return NULL;
        }
        ps->cap = cap;
    }
    elbo_tensor *t = calloc(1, sizeof *t);
    if (!t) {
        elbo_error(ELBO_ERR_NOMEM, "paramset_add: out of memory");
        free(full);
        return NULL;
    }
    elbo__set_shape(t, ndim, shape);
    t->name = full;
    t->requires_grad = 1;
    ps->p[ps->n] = t;
    ps->init[ps->n] = init;
    ps->offset[ps->n] = ps->numel;
    ps->numel += t->numel;
    ps->n++;
    return t;
}

static float *aligned_block(int64_t n) {
    size_t bytes = (size_t)(n ? n : 1) * sizeof(float);
    return aligned_alloc(PS_ALIGN, (bytes + PS_ALIGN - 1) / PS_ALIGN * PS_ALIGN);
}

elbo_status elbo_paramset_finalize(elbo_paramset *ps, uint64_t seed) {
    if (!ps) return elbo_error(ELBO_ERR_ARG, "paramset_finalize: NULL paramset");
    if (ps->finalized) return elbo_error(ELBO_ERR_STATE, "paramset_finalize: already finalized");
    ps->data = aligned_block(ps->numel);
    ps->grad = aligned_block(ps->numel);
    if (!ps->data || !ps->grad) {
        free(ps->data);
        free(ps->grad);
        ps->data = ps->grad = NULL;
        return elbo_error(ELBO_ERR_NOMEM, "paramset_finalize: cannot allocate %lld parameters",
                          (long long)ps->numel);
    }
    memset(ps->grad, 0, (size_t)ps->numel * sizeof(float));
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    for (int i = 0; i < ps->n; i++) {
        elbo_tensor *t = ps->p[i];
        t->data = ps->data + ps->offset[i];
        t->grad = t->grad_slot = ps->grad + ps->offset[i];
        t->requires_grad = 1;
        elbo_init in = ps->init[i];
        size_t n = (size_t)t->numel;
        switch (in.kind) {
        case ELBO_INIT_CONST:
            for (size_t j = 0; j < n; j++) t->data[j] = in.a;
            break;
        case ELBO_INIT_UNIFORM:
            elbo_rng_uniform(&rng, t->data, n, -in.a, in.a);
            break;
        case ELBO_INIT_NORMAL:
            elbo_rng_normal(&rng, t->data, n, 0.0f, in.a);
            break;
        }
    }
    ps->finalized = 1;
    return ELBO_OK;
}

int elbo_paramset_count(const elbo_paramset *ps) { return ps ? ps->n : 0; }

elbo_tensor *elbo_paramset_get(const elbo_paramset *ps, int i) {
    if (!ps || i < 0 || i >= ps->n) {
        elbo_error(ELBO_ERR_ARG, "paramset_get: index %d out of range [0, %d)", i, ps ? ps->n : 0);
        return NULL;
    }
    return ps->p[i];
}

int64_t elbo_paramset_numel(const elbo_paramset *ps) { return ps ? ps->numel : 0; }
float *elbo_paramset_data(elbo_paramset *ps) { return ps ? ps->data : NULL; }
/* The flat gradient block, every parameter's gradient defined: one that backward has not
 * reached since zero_grad reads as zero (it is zeroed here, and points at its slot again). */
float *elbo_paramset_grad(elbo_paramset *ps) {
    if (!ps || !ps->grad) return NULL;
    for (int i = 0; i < ps->n; i++) {
        elbo_tensor *t = ps->p[i];
        if (!t->grad) {
            memset(t->grad_slot, 0, (size_t)t->numel * sizeof(float));
            t->grad = t->grad_slot;
        }
    }
    return ps->grad;
}

/* Gradients to "none", as PyTorch's zero_grad(set_to_none=True): the next backward stores
 * each parameter's first gradient instead of adding it to zeros, so no pass over the block
 * clears it (vae-mlp: a 5.5 MB memset per step, and the weight-gradient products read no C). */
void elbo_paramset_zero_grad(elbo_paramset *ps) {
    if (!ps || !ps->grad) return;
    for (int i = 0; i < ps->n; i++) ps->p[i]->grad = NULL;
}
