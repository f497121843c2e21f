/* Training checkpoints on top of safetensors (layout in include/elbo/checkpoint.h). Saving
 * gathers borrowed pointers into one elbo_safetensors_write call (atomic); loading opens
 * the file, checks every tensor it will copy against the live objects, and only then
 * copies, so a failed load changes nothing. */
#include "elbo/checkpoint.h"

#include "io/io_internal.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define P_OR_NULL(p) ((p) ? (p) : "(null)")

/* ---- small helpers -------------------------------------------------------------------- */
static void put_i64(unsigned char b[8], uint64_t v) {
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *b) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)b[i] << (8 * i);
    return v;
}



/* "prefix" + name into a malloc'd string (NULL when out of memory). */
static char *prefixed(const char *prefix, const char *name) {
    size_t a = strlen(prefix), b = strlen(name);
    char *s = malloc(a + b + 1);
    if (s) {
        memcpy(s, prefix, a);
        memcpy(s + a, name, b + 1);
    }
    return s;
}

static int is_json_object(const char *text) {
    elbo__json v;
    char err[160];
    if (elbo__json_parse(text, strlen(text), &v, err, sizeof err) != 0) return 0;
    int ok = v.type == ELBO__JSON_OBJECT;
    elbo__json_free(&v);
    return ok;
}

/* ---- saving --------------------------------------------------------------------------- */
elbo_status elbo_checkpoint_save(const char *path, const elbo_checkpoint *ck) {
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "checkpoint save: empty path");
    if (!ck || !ck->params)
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint save: NULL checkpoint or paramset", path);
    elbo_paramset *ps = ck->params;
    float *flat = elbo_paramset_data(ps);
    int64_t numel = elbo_paramset_numel(ps);
    int n = elbo_paramset_count(ps);
    if (!flat) return elbo_error(ELBO_ERR_STATE, "%s: checkpoint save: the paramset is not finalised", path);
    if (!ck->model || !*ck->model)
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint save: the model name is empty", path);
    if (!ck->config || !*ck->config)
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint save: the model configuration is empty", path);
    if (!is_json_object(ck->config))
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint save: the model configuration is not a JSON object",
                          path);
    if (ck->step < 0)
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint save: negative step %lld", path,
                          (long long)ck->step);
    float *state[2] = {NULL, NULL};
    for (int w = 0; ck->optim && w < 2; w++) {
        int64_t len = 0;
        state[w] = elbo_optim_state(ck->optim, w, &len);
        if (state[w] && len != numel)
            return elbo_error(ELBO_ERR_ARG,
                              "%s: checkpoint save: the optimiser holds %lld values, the "
                              "paramset %lld",
                              path, (long long)len, (long long)numel);
    }
    float *ema = NULL;
    if (ck->ema) {
        int64_t len = 0;
        ema = elbo_ema_data(ck->ema, &len);
        if (len != numel)
            return elbo_error(ELBO_ERR_ARG,
                              "%s: checkpoint save: the EMA holds %lld values, the paramset %lld",
                              path, (long long)len, (long long)numel);
    }

    /* Tensors: parameters, optim.m.*, optim.v.*, optim.step, ema.*, train.step, train.rng. */
    int cap = 4 * n + 3;
    elbo_st_tensor *t = calloc((size_t)cap, sizeof *t);
    char **names = calloc((size_t)cap, sizeof *names);
    elbo_status st = ELBO_OK;
    if (!t || !names) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: checkpoint save: out of memory", path);
        goto done;
    }
    int k = 0;
    for (int i = 0; i < n; i++) {
        const elbo_tensor *p = elbo_paramset_get(ps, i);
        t[k++] = (elbo_st_tensor){.name = p->name, .dtype = ELBO_DTYPE_F32, .ndim = p->ndim,
                                  .shape = p->shape, .data = p->data};
    }
    static const char *const state_prefix[2] = {"optim.m.", "optim.v."};
    static const int64_t rng_shape[1] = {2};
    unsigned char optim_step[8], train_step[8], train_rng[16];
    for (int w = 0; w < 2; w++) {
        if (!state[w]) continue;
        for (int i = 0; i < n; i++) {
            const elbo_tensor *p = elbo_paramset_get(ps, i);
            names[k] = prefixed(state_prefix[w], p->name);
            if (!names[k]) {
                st = elbo_error(ELBO_ERR_NOMEM, "%s: checkpoint save: out of memory", path);
                goto done;
            }
            t[k] = (elbo_st_tensor){.name = names[k], .dtype = ELBO_DTYPE_F32, .ndim = p->ndim,
                                    .shape = p->shape, .data = state[w] + (p->data - flat)};
            k++;
        }
    }
    if (ck->optim) {
        put_i64(optim_step, (uint64_t)elbo_optim_steps(ck->optim));
        t[k++] = (elbo_st_tensor){.name = "optim.step", .dtype = ELBO_DTYPE_I64, .ndim = 0,
                                  .data = optim_step};
    }
    for (int i = 0; ema && i < n; i++) {
        const elbo_tensor *p = elbo_paramset_get(ps, i);
        names[k] = prefixed("ema.", p->name);
        if (!names[k]) {
            st = elbo_error(ELBO_ERR_NOMEM, "%s: checkpoint save: out of memory", path);
            goto done;
        }
        t[k] = (elbo_st_tensor){.name = names[k], .dtype = ELBO_DTYPE_F32, .ndim = p->ndim,
                                .shape = p->shape, .data = ema + (p->data - flat)};
        k++;
    }
    put_i64(train_step, (uint64_t)ck->step);
    put_i64(train_rng, ck->rng.seed);
    put_i64(train_rng + 8, ck->rng.offset);
    t[k++] = (elbo_st_tensor){.name = "train.step", .dtype = ELBO_DTYPE_I64, .ndim = 0,
                              .data = train_step};
    t[k++] = (elbo_st_tensor){.name = "train.rng", .dtype = ELBO_DTYPE_I64, .ndim = 1,
                              .shape = rng_shape, .data = train_rng};
    const elbo_st_meta meta[4] = {{"format", ELBO_CHECKPOINT_FORMAT},
                                  {"version", ELBO_CHECKPOINT_VERSION},
                                  {"model", ck->model},
                                  {"config", ck->config}};
    st = elbo_safetensors_write(path, t, k, meta, 4);
done:
    if (names)
        for (int i = 0; i < cap; i++) free(names[i]);
    free(names);
    free(t);
    return st;
}

/* ---- reading -------------------------------------------------------------------------- */
/* The format, version, model and config metadata. want_model NULL or "": any model. */
static elbo_status check_metadata(const elbo_safetensors *st, const char *path,
                                  const char *want_model) {
    const char *format = elbo_safetensors_metadata(st, "format");
    const char *version = elbo_safetensors_metadata(st, "version");
    const char *model = elbo_safetensors_metadata(st, "model");
    const char *config = elbo_safetensors_metadata(st, "config");
    if (!format || strcmp(format, ELBO_CHECKPOINT_FORMAT))
        return elbo_error(ELBO_ERR_FORMAT,
                          format ? "%s: not an elbo checkpoint (metadata format '%s', expected '"
                                   ELBO_CHECKPOINT_FORMAT "')"
                                 : "%s: not an elbo checkpoint (no metadata format%s)",
                          path, format ? SHOWN(format) : "");
    if (!version || strcmp(version, ELBO_CHECKPOINT_VERSION))
        return elbo_error(ELBO_ERR_FORMAT,
                          "%s: checkpoint version '%s' is not supported (expected '"
                          ELBO_CHECKPOINT_VERSION "')",
                          path, version ? SHOWN(version) : "(none)");
    if (!model || !*model)
        return elbo_error(ELBO_ERR_FORMAT, "%s: checkpoint names no model", path);
    if (!config || !*config)
        return elbo_error(ELBO_ERR_FORMAT, "%s: checkpoint has no model configuration", path);
    if (want_model && *want_model && strcmp(model, want_model))
        return elbo_error(ELBO_ERR_FORMAT, "%s: checkpoint of model '%s', expected '%s'", path,
                          SHOWN(model), SHOWN(want_model));
    return ELBO_OK;
}

/* The I64 tensor `name` of ndim 0 (n == 1) or shape (n,); its values into out[0..n). */
static elbo_status read_i64(const elbo_safetensors *st, const char *path, const char *name,
                            int ndim, int64_t n, uint64_t *out) {
    const elbo_st_tensor *t = elbo_safetensors_find(st, name);
    if (!t) return elbo_error(ELBO_ERR_FORMAT, "%s: checkpoint lacks '%s'", path, name);
    if (t->dtype != ELBO_DTYPE_I64)
        return elbo_error(ELBO_ERR_FORMAT, "%s: '%s' is %s, expected I64", path, name,
                          elbo_dtype_name(t->dtype));
    if (t->ndim != ndim || t->numel != n) {
        char a[160], b[32];
        const int64_t want[1] = {n};
        return elbo_error(ELBO_ERR_SHAPE, "%s: '%s' has shape %s in the file, expected %s", path,
                          name, elbo_dims_str(t->ndim, t->shape, a, sizeof a),
                          elbo_dims_str(ndim, want, b, sizeof b));
    }
    for (int64_t i = 0; i < n; i++) out[i] = get_u64((const unsigned char *)t->data + 8 * i);
    return ELBO_OK;
}

/* The F32 tensor `name` with exactly p's shape; NULL + error otherwise. what names the kind
 * of tensor for the "missing" message ("parameter", "optimiser state", "EMA weights"). */
static const elbo_st_tensor *find_like(const elbo_safetensors *st, const char *path,
                                       const char *name, const elbo_tensor *p, const char *what) {
    const elbo_st_tensor *t = elbo_safetensors_find(st, name);
    if (!t) {
        elbo_error(ELBO_ERR_FORMAT, "%s: checkpoint lacks %s '%s'", path, what, SHOWN(name));
        return NULL;
    }
    if (t->dtype != ELBO_DTYPE_F32) {
        elbo_error(ELBO_ERR_FORMAT, "%s: '%s' is %s, expected F32", path, SHOWN(name),
                   elbo_dtype_name(t->dtype));
        return NULL;
    }
    int same = t->ndim == p->ndim;
    for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
    if (!same) {
        char a[160], b[160];
        elbo_error(ELBO_ERR_SHAPE, "%s: '%s' has shape %s in the file, expected %s", path,
                   SHOWN(name), elbo_dims_str(t->ndim, t->shape, a, sizeof a),
                   elbo_dims_str(p->ndim, p->shape, b, sizeof b));
        return NULL;
    }
    return t;
}

/* Sources for one load: src[0] parameters, src[1..2] optimiser m and v, src[3] EMA; each an
 * array of n tensor pointers (NULL arrays for what is not restored). */
enum { SRC_PARAM, SRC_M, SRC_V, SRC_EMA, SRC_COUNT };

elbo_status elbo_checkpoint_load(const char *path, elbo_checkpoint *ck) {
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "checkpoint load: empty path");
    if (!ck || !ck->params)
        return elbo_error(ELBO_ERR_ARG, "%s: checkpoint load: NULL checkpoint or paramset", path);
    elbo_paramset *ps = ck->params;
    float *flat = elbo_paramset_data(ps);
    int64_t numel = elbo_paramset_numel(ps);
    int n = elbo_paramset_count(ps);
    if (!flat) return elbo_error(ELBO_ERR_STATE, "%s: checkpoint load: the paramset is not finalised", path);

    float *dst[SRC_COUNT] = {flat, NULL, NULL, NULL};
    for (int w = 0; ck->optim && w < 2; w++) {
        int64_t len = 0;
        dst[SRC_M + w] = elbo_optim_state(ck->optim, w, &len);
        if (dst[SRC_M + w] && len != numel)
            return elbo_error(ELBO_ERR_ARG,
                              "%s: checkpoint load: the optimiser holds %lld values, the "
                              "paramset %lld",
                              path, (long long)len, (long long)numel);
    }
    if (ck->ema) {
        int64_t len = 0;
        dst[SRC_EMA] = elbo_ema_data(ck->ema, &len);
        if (len != numel)
            return elbo_error(ELBO_ERR_ARG,
                              "%s: checkpoint load: the EMA holds %lld values, the paramset %lld",
                              path, (long long)len, (long long)numel);
    }

    elbo_safetensors *st = NULL;
    elbo_status s = elbo_safetensors_open(path, &st);
    if (s) return s;
    const elbo_st_tensor **src = calloc((size_t)(n > 0 ? n : 1) * SRC_COUNT, sizeof *src);
    size_t max_name = 0;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(elbo_paramset_get(ps, i)->name);
        if (l > max_name) max_name = l;
    }
    char *name = malloc(max_name + 16);
    if (!src || !name) {
        s = elbo_error(ELBO_ERR_NOMEM, "%s: checkpoint load: out of memory", path);
        goto done;
    }
    if ((s = check_metadata(st, path, ck->model))) goto done;

    /* Check everything. */
    static const char *const prefix[SRC_COUNT] = {"", "optim.m.", "optim.v.", "ema."};
    static const char *const what[SRC_COUNT] = {"parameter", "optimiser state",
                                                "optimiser state", "EMA weights"};
    for (int w = 0; w < SRC_COUNT; w++) {
        if (!dst[w]) {
            /* An optimiser without this buffer cannot take one from the file. */
            if (ck->optim && (w == SRC_M || w == SRC_V) && n > 0) {
                snprintf(name, max_name + 16, "%s%s", prefix[w], elbo_paramset_get(ps, 0)->name);
                if (elbo_safetensors_find(st, name)) {
                    s = elbo_error(ELBO_ERR_FORMAT,
                                   "%s: checkpoint holds optimiser state '%s' that the given "
                                   "optimiser does not have (another optimiser kind?)",
                                   path, SHOWN(name));
                    goto done;
                }
            }
            continue;
        }
        for (int i = 0; i < n; i++) {
            const elbo_tensor *p = elbo_paramset_get(ps, i);
            snprintf(name, max_name + 16, "%s%s", prefix[w], p->name);
            if (!(src[w * n + i] = find_like(st, path, name, p, what[w]))) {
                s = elbo_last_status();
                goto done;
            }
        }
    }
    uint64_t step = 0, rng[2] = {0, 0}, optim_steps = 0;
    if ((s = read_i64(st, path, "train.step", 0, 1, &step))) goto done;
    if ((s = read_i64(st, path, "train.rng", 1, 2, rng))) goto done;
    if (ck->optim && (s = read_i64(st, path, "optim.step", 0, 1, &optim_steps))) goto done;
    if (step > (uint64_t)INT64_MAX || optim_steps > (uint64_t)INT64_MAX) {
        s = elbo_error(ELBO_ERR_FORMAT, "%s: negative step count in the checkpoint", path);
        goto done;
    }

    /* Copy. */
    for (int w = 0; w < SRC_COUNT; w++) {
        if (!dst[w]) continue;
        for (int i = 0; i < n; i++) {
            const elbo_tensor *p = elbo_paramset_get(ps, i);
            const elbo_st_tensor *t = src[w * n + i];
            if (t->nbytes) memcpy(dst[w] + (p->data - flat), t->data, t->nbytes);
        }
    }
    if (ck->optim) elbo_optim_set_steps(ck->optim, (int64_t)optim_steps);
    ck->step = (int64_t)step;
    ck->rng.seed = rng[0];
    ck->rng.offset = rng[1];
done:
    free(name);
    free(src);
    elbo_safetensors_close(st);
    return s;
}

void elbo_checkpoint_info_free(elbo_checkpoint_info *info) {
    if (!info) return;
    free(info->model);
    free(info->config);
    memset(info, 0, sizeof *info);
}

elbo_status elbo_checkpoint_read_info(const char *path, elbo_checkpoint_info *info) {
    if (!info) return elbo_error(ELBO_ERR_ARG, "checkpoint info: NULL output");
    memset(info, 0, sizeof *info);
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "checkpoint info: empty path");
    elbo_safetensors *st = NULL;
    elbo_status s = elbo_safetensors_open(path, &st);
    if (s) return s;
    uint64_t step = 0, rng[2] = {0, 0}, optim_steps = 0;
    if ((s = check_metadata(st, path, NULL))) goto done;
    if ((s = read_i64(st, path, "train.step", 0, 1, &step))) goto done;
    if ((s = read_i64(st, path, "train.rng", 1, 2, rng))) goto done;
    if (step > (uint64_t)INT64_MAX) {
        s = elbo_error(ELBO_ERR_FORMAT, "%s: negative step count in the checkpoint", path);
        goto done;
    }
    info->optim_steps = -1;
    if (elbo_safetensors_find(st, "optim.step")) {
        if ((s = read_i64(st, path, "optim.step", 0, 1, &optim_steps))) goto done;
        info->optim_steps = (int64_t)(optim_steps & (uint64_t)INT64_MAX);
    }
    for (int i = 0; i < elbo_safetensors_count(st); i++) {
        const elbo_st_tensor *t = elbo_safetensors_get(st, i);
        if (!strncmp(t->name, "optim.m.", 8))
            info->has_optim_m = 1;
        else if (!strncmp(t->name, "optim.v.", 8))
            info->has_optim_v = 1;
        else if (!strncmp(t->name, "ema.", 4))
            info->has_ema = 1;
        else if (strncmp(t->name, "train.", 6) && strncmp(t->name, "optim.", 6)) {
            info->n_params++;
            info->n_scalars += t->numel;
        }
    }
    info->step = (int64_t)step;
    info->rng.seed = rng[0];
    info->rng.offset = rng[1];
    info->model = prefixed("", elbo_safetensors_metadata(st, "model"));
    info->config = prefixed("", elbo_safetensors_metadata(st, "config"));
    if (!info->model || !info->config) {
        elbo_checkpoint_info_free(info);
        s = elbo_error(ELBO_ERR_NOMEM, "%s: checkpoint info: out of memory", path);
    }
done:
    if (s) elbo_checkpoint_info_free(info);
    elbo_safetensors_close(st);
    return s;
}
