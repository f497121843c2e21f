/* safetensors reader and writer (layout in include/elbo/safetensors.h; the format is
 * huggingface/safetensors' README). The reader trusts nothing in the file: every number of
 * the header is checked against the file and the other entries before it is used. */
#include "elbo/safetensors.h"
#include "elbo/io.h"

#include "io/io_internal.h"
#include "io/json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c writes and reads tensor bytes as they are in memory: little-endian only"
#endif

/* ---- dtypes --------------------------------------------------------------------------- */
static const struct {
    const char *name;
    size_t size;
} dtypes[ELBO_DTYPE_COUNT] = {
    [ELBO_DTYPE_BOOL] = {"BOOL", 1},       [ELBO_DTYPE_U8] = {"U8", 1},
    [ELBO_DTYPE_I8] = {"I8", 1},           [ELBO_DTYPE_F8_E5M2] = {"F8_E5M2", 1},
    [ELBO_DTYPE_F8_E4M3] = {"F8_E4M3", 1}, [ELBO_DTYPE_I16] = {"I16", 2},
    [ELBO_DTYPE_U16] = {"U16", 2},         [ELBO_DTYPE_F16] = {"F16", 2},
    [ELBO_DTYPE_BF16] = {"BF16", 2},       [ELBO_DTYPE_I32] = {"I32", 4},
    [ELBO_DTYPE_U32] = {"U32", 4},         [ELBO_DTYPE_F32] = {"F32", 4},
    [ELBO_DTYPE_F64] = {"F64", 8},         [ELBO_DTYPE_I64] = {"I64", 8},
    [ELBO_DTYPE_U64] = {"U64", 8},
};

const char *elbo_dtype_name(elbo_dtype dt) {
    return (unsigned)dt < ELBO_DTYPE_COUNT ? dtypes[dt].name : NULL;
}

size_t elbo_dtype_size(elbo_dtype dt) {
    return (unsigned)dt < ELBO_DTYPE_COUNT ? dtypes[dt].size : 0;
}

int elbo_dtype_from_name(const char *name, elbo_dtype *out) {
    if (!name) return -1;
    for (int i = 0; i < ELBO_DTYPE_COUNT; i++)
        if (!strcmp(name, dtypes[i].name)) {
            if (out) *out = (elbo_dtype)i;
            return 0;
        }
    return -1;
}


/* numel = prod(shape) and bytes = numel * size, or -1 when either overflows int64. */
static int shape_bytes(int ndim, const uint64_t *shape, size_t size, int64_t *numel,
                       uint64_t *bytes) {
    uint64_t n = 1;
    int zero = 0;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] > (uint64_t)INT64_MAX) return -1; /* each size must fit an int64 */
        zero |= shape[i] == 0;
    }
    for (int i = 0; i < ndim && !zero; i++) {
        if (shape[i] > (uint64_t)INT64_MAX / n) return -1;
        n *= shape[i];
    }
    if (zero) n = 0;
    if (n > (uint64_t)INT64_MAX / size) return -1;
    *numel = (int64_t)n;
    *bytes = n * size;
    return 0;
}

/* ---- writing -------------------------------------------------------------------------- */
static int name_cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* 1 when some two of names[0..n) are equal; the duplicate in *dup. */
static int find_duplicate(const char **names, int n, const char **dup, int *oom) {
    *oom = 0;
    if (n < 2) return 0;
    const char **s = malloc((size_t)n * sizeof *s);
    if (!s) return *oom = 1, 0;
    memcpy(s, names, (size_t)n * sizeof *s);
    qsort(s, (size_t)n, sizeof *s, name_cmp);
    int found = 0;
    for (int i = 1; i < n && !found; i++)
        if (!strcmp(s[i - 1], s[i])) found = 1, *dup = s[i];
    free(s);
    return found;
}

static elbo_status check_args(const char *path, const elbo_st_tensor *t, int n,
                              const elbo_st_meta *meta, int n_meta, uint64_t *sizes) {
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "safetensors write: empty path");
    if (n < 0 || (n > 0 && !t))
        return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: bad tensor list (n = %d)", path, n);
    if (n_meta < 0 || (n_meta > 0 && !meta))
        return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: bad metadata list (n = %d)", path,
                          n_meta);
    for (int i = 0; i < n; i++) {
        const char *nm = t[i].name;
        if (!nm || !*nm)
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor %d has no name", path, i);
        if (!elbo__utf8_valid(nm, strlen(nm)))
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor %d: name is not UTF-8",
                              path, i);
        if (!strcmp(nm, "__metadata__"))
            return elbo_error(ELBO_ERR_ARG,
                              "%s: safetensors write: '__metadata__' is reserved, not a tensor name",
                              path);
        if (elbo_dtype_size(t[i].dtype) == 0)
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor '%s': unknown dtype %d",
                              path, SHOWN(nm), (int)t[i].dtype);
        if (t[i].ndim < 0 || t[i].ndim > ELBO_SAFETENSORS_MAX_DIMS || (t[i].ndim > 0 && !t[i].shape))
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor '%s': bad ndim %d", path,
                              SHOWN(nm), t[i].ndim);
        uint64_t shape[ELBO_SAFETENSORS_MAX_DIMS];
        for (int d = 0; d < t[i].ndim; d++) {
            if (t[i].shape[d] < 0)
                return elbo_error(ELBO_ERR_ARG,
                                  "%s: safetensors write: tensor '%s': negative size %lld in axis %d",
                                  path, SHOWN(nm), (long long)t[i].shape[d], d);
            shape[d] = (uint64_t)t[i].shape[d];
        }
        int64_t numel;
        if (shape_bytes(t[i].ndim, shape, elbo_dtype_size(t[i].dtype), &numel, &sizes[i]))
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor '%s': size overflows",
                              path, SHOWN(nm));
        if (sizes[i] > 0 && !t[i].data)
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: tensor '%s': NULL data", path,
                              SHOWN(nm));
    }
    for (int i = 0; i < n_meta; i++) {
        const char *k = meta[i].key, *v = meta[i].value;
        if (!k || !v)
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: metadata %d: NULL key or value",
                              path, i);
        if (!elbo__utf8_valid(k, strlen(k)) || !elbo__utf8_valid(v, strlen(v)))
            return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: metadata '%s': not UTF-8", path,
                              SHOWN(k));
    }
    const char *dup = NULL;
    int oom = 0, count = n > n_meta ? n : n_meta;
    const char **names = malloc((size_t)(count ? count : 1) * sizeof *names);
    if (!names) return elbo_error(ELBO_ERR_NOMEM, "%s: safetensors write: out of memory", path);
    for (int i = 0; i < n; i++) names[i] = t[i].name;
    if (find_duplicate(names, n, &dup, &oom)) {
        elbo_error(ELBO_ERR_ARG, "%s: safetensors write: duplicate tensor name '%s'", path,
                   SHOWN(dup));
        free(names);
        return ELBO_ERR_ARG;
    }
    for (int i = 0; i < n_meta && !oom; i++) names[i] = meta[i].key;
    if (!oom && find_duplicate(names, n_meta, &dup, &oom)) {
        elbo_error(ELBO_ERR_ARG, "%s: safetensors write: duplicate metadata key '%s'", path,
                   SHOWN(dup));
        free(names);
        return ELBO_ERR_ARG;
    }
    free(names);
    if (oom) return elbo_error(ELBO_ERR_NOMEM, "%s: safetensors write: out of memory", path);
    return ELBO_OK;
}

elbo_status elbo_safetensors_write(const char *path, const elbo_st_tensor *t, int n,
                                   const elbo_st_meta *meta, int n_meta) {
    uint64_t *sizes = malloc((size_t)(n > 0 ? n : 1) * sizeof *sizes);
    if (!sizes) return elbo_error(ELBO_ERR_NOMEM, "safetensors write: out of memory");
    elbo_status st = check_args(path, t, n, meta, n_meta, sizes);
    if (st) {
        free(sizes);
        return st;
    }
    /* The header: {"__metadata__":{...},"name":{"dtype":..,"shape":[..],"data_offsets":[..]}} */
    elbo__jbuf h = {0};
    elbo__jbuf_put(&h, "{", 1);
    if (n_meta > 0) {
        elbo__jbuf_puts(&h, "\"__metadata__\":{");
        for (int i = 0; i < n_meta; i++) {
            if (i) elbo__jbuf_put(&h, ",", 1);
            elbo__jbuf_string(&h, meta[i].key);
            elbo__jbuf_put(&h, ":", 1);
            elbo__jbuf_string(&h, meta[i].value);
        }
        elbo__jbuf_put(&h, "}", 1);
    }
    uint64_t offset = 0;
    for (int i = 0; i < n; i++) {
        if (i || n_meta > 0) elbo__jbuf_put(&h, ",", 1);
        elbo__jbuf_string(&h, t[i].name);
        elbo__jbuf_puts(&h, ":{\"dtype\":");
        elbo__jbuf_string(&h, elbo_dtype_name(t[i].dtype));
        elbo__jbuf_puts(&h, ",\"shape\":[");
        for (int d = 0; d < t[i].ndim; d++) {
            if (d) elbo__jbuf_put(&h, ",", 1);
            elbo__jbuf_u64(&h, (uint64_t)t[i].shape[d]);
        }
        elbo__jbuf_puts(&h, "],\"data_offsets\":[");
        elbo__jbuf_u64(&h, offset);
        elbo__jbuf_put(&h, ",", 1);
        elbo__jbuf_u64(&h, offset + sizes[i]);
        elbo__jbuf_puts(&h, "]}");
        offset += sizes[i];
    }
    elbo__jbuf_put(&h, "}", 1);
    while (!h.oom && h.len % 8) elbo__jbuf_put(&h, " ", 1); /* 8 + N a multiple of 8 */
    if (h.oom) {
        elbo__jbuf_free(&h);
        free(sizes);
        return elbo_error(ELBO_ERR_NOMEM, "%s: safetensors write: out of memory", path);
    }
    if (h.len > ELBO_SAFETENSORS_MAX_HEADER) {
        elbo__jbuf_free(&h);
        free(sizes);
        return elbo_error(ELBO_ERR_ARG, "%s: safetensors write: header of %zu bytes exceeds 100 MB",
                          path, h.len);
    }

    /* Atomic: a fresh temporary file next to the target, fsync, rename (io.h). */
    elbo_atomic_file af;
    st = elbo_atomic_open(&af, path);
    if (st == ELBO_OK) {
        unsigned char len8[8];
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
        int ok = fwrite(len8, 1, 8, af.fp) == 8 && fwrite(h.p, 1, h.len, af.fp) == h.len;
        for (int i = 0; i < n && ok; i++)
            ok = sizes[i] == 0 || fwrite(t[i].data, 1, (size_t)sizes[i], af.fp) == sizes[i];
        if (ok) {
            st = elbo_atomic_commit(&af);
        } else {
            int err = errno;
            elbo_atomic_abort(&af);
            st = elbo_error(ELBO_ERR_IO, "%s: write failed: %s", path, strerror(err));
        }
    }
    elbo__jbuf_free(&h);
    free(sizes);
    return st;
}

/* ---- reading -------------------------------------------------------------------------- */
struct elbo_safetensors {
    char *path;
    int n;
    elbo_st_tensor *t;
    int64_t (*shapes)[ELBO_SAFETENSORS_MAX_DIMS];
    uint64_t *begin; /* data offsets, for the coverage check */
    int *by_name;    /* tensor indices sorted by name */
    int n_meta;
    char **meta_key, **meta_val;
    void *data; /* the byte buffer */
    uint64_t data_size;
};

void elbo_safetensors_close(elbo_safetensors *st) {
    if (!st) return;
    for (int i = 0; i < st->n; i++) free((char *)st->t[i].name);
    for (int i = 0; i < st->n_meta; i++) {
        free(st->meta_key[i]);
        free(st->meta_val[i]);
    }
    free(st->t);
    free(st->shapes);
    free(st->begin);
    free(st->by_name);
    free(st->meta_key);
    free(st->meta_val);
    free(st->data);
    free(st->path);
    free(st);
}

const char *elbo_safetensors_path(const elbo_safetensors *st) { return st ? st->path : NULL; }
int elbo_safetensors_count(const elbo_safetensors *st) { return st ? st->n : 0; }

const elbo_st_tensor *elbo_safetensors_get(const elbo_safetensors *st, int i) {
    return st && i >= 0 && i < st->n ? &st->t[i] : NULL;
}

const elbo_st_tensor *elbo_safetensors_find(const elbo_safetensors *st, const char *name) {
    if (!st || !name) return NULL;
    int lo = 0, hi = st->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, st->t[st->by_name[mid]].name);
        if (!c) return &st->t[st->by_name[mid]];
        if (c < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return NULL;
}

const char *elbo_safetensors_metadata(const elbo_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (int i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta_key[i], key)) return st->meta_val[i];
    return NULL;
}

int elbo_safetensors_metadata_count(const elbo_safetensors *st) { return st ? st->n_meta : 0; }

int elbo_safetensors_metadata_get(const elbo_safetensors *st, int i, const char **key,
                                  const char **value) {
    if (!st || i < 0 || i >= st->n_meta) return -1;
    if (key) *key = st->meta_key[i];
    if (value) *value = st->meta_val[i];
    return 0;
}

static int read_all(int fd, void *p, uint64_t n) {
    char *c = p;
    while (n > 0) {
        size_t chunk = n > (1u << 30) ? (1u << 30) : (size_t)n;
        ssize_t k = read(fd, c, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) return 1; /* end of file */
        c += k;
        n -= (uint64_t)k;
    }
    return 0;
}

/* The file being sorted, for the qsort comparators (per thread, so open is reentrant). */
static _Thread_local const elbo_safetensors *sort_st;

static int by_name_cmp(const void *a, const void *b) {
    return strcmp(sort_st->t[*(const int *)a].name, sort_st->t[*(const int *)b].name);
}

static int by_offset_cmp(const void *a, const void *b) {
    int i = *(const int *)a, j = *(const int *)b;
    uint64_t bi = sort_st->begin[i], bj = sort_st->begin[j];
    if (bi != bj) return bi < bj ? -1 : 1;
    uint64_t ei = bi + sort_st->t[i].nbytes, ej = bj + sort_st->t[j].nbytes;
    if (ei != ej) return ei < ej ? -1 : 1;
    return (i > j) - (i < j);
}

#define FMT(...) (elbo_error(ELBO_ERR_FORMAT, __VA_ARGS__), ELBO_ERR_FORMAT)

static int has_nul(const char *s, size_t len) { return memchr(s, 0, len) != NULL; }

/* Fills st's tensors and metadata from the parsed header; data_size is the buffer size. */
static elbo_status parse_header(elbo_safetensors *st, const elbo__json *root) {
    const char *path = st->path;
    if (root->type != ELBO__JSON_OBJECT) return FMT("%s: safetensors header is not a JSON object", path);
    size_t n = 0;
    for (size_t i = 0; i < root->n; i++) n += strcmp(root->keys[i], "__metadata__") != 0;
    if (n > (size_t)INT32_MAX / 2) return FMT("%s: too many tensors", path);
    st->t = calloc(n ? n : 1, sizeof *st->t);
    st->shapes = calloc(n ? n : 1, sizeof *st->shapes);
    st->begin = calloc(n ? n : 1, sizeof *st->begin);
    st->by_name = calloc(n ? n : 1, sizeof *st->by_name);
    if (!st->t || !st->shapes || !st->begin || !st->by_name)
        return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    for (size_t i = 0; i < root->n; i++) {
        const char *key = root->keys[i];
        const elbo__json *v = &root->items[i];
        if (has_nul(key, root->key_len[i]))
            return FMT("%s: a tensor name contains a NUL character", path);
        if (!strcmp(key, "__metadata__")) {
            if (v->type == ELBO__JSON_NULL) continue;
            if (v->type != ELBO__JSON_OBJECT)
                return FMT("%s: \"__metadata__\" is not an object of strings", path);
            st->meta_key = calloc(v->n ? v->n : 1, sizeof *st->meta_key);
            st->meta_val = calloc(v->n ? v->n : 1, sizeof *st->meta_val);
            if (!st->meta_key || !st->meta_val)
                return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
            for (size_t m = 0; m < v->n; m++) {
                const elbo__json *mv = &v->items[m];
                if (mv->type != ELBO__JSON_STRING)
                    return FMT("%s: metadata '%s' is not a string", path, SHOWN(v->keys[m]));
                if (has_nul(v->keys[m], v->key_len[m]) || has_nul(mv->str, mv->len))
                    return FMT("%s: metadata '%s' contains a NUL character", path,
                               SHOWN(v->keys[m]));
                st->meta_key[st->n_meta] = strdup(v->keys[m]);
                st->meta_val[st->n_meta] = strdup(mv->str);
                st->n_meta++;
                if (!st->meta_key[st->n_meta - 1] || !st->meta_val[st->n_meta - 1])
                    return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
            }
            continue;
        }
        const char *nm = SHOWN(key);
        if (v->type != ELBO__JSON_OBJECT)
            return FMT("%s: tensor '%s': entry is not an object", path, nm);
        for (size_t k = 0; k < v->n; k++)
            if (strcmp(v->keys[k], "dtype") && strcmp(v->keys[k], "shape") &&
                strcmp(v->keys[k], "data_offsets"))
                return FMT("%s: tensor '%s': unknown key '%s'", path, nm, SHOWN(v->keys[k]));
        const elbo__json *dt = elbo__json_get(v, "dtype"), *shape = elbo__json_get(v, "shape"),
                         *off = elbo__json_get(v, "data_offsets");
        if (!dt || !shape || !off)
            return FMT("%s: tensor '%s': missing \"%s\"", path, nm,
                       !dt ? "dtype" : !shape ? "shape" : "data_offsets");
        if (dt->type != ELBO__JSON_STRING) return FMT("%s: tensor '%s': dtype is not a string", path, nm);
        elbo_dtype dtype;
        if (has_nul(dt->str, dt->len) || elbo_dtype_from_name(dt->str, &dtype))
            return FMT("%s: tensor '%s': unknown dtype '%s'", path, nm, SHOWN(dt->str));
        if (shape->type != ELBO__JSON_ARRAY)
            return FMT("%s: tensor '%s': shape is not an array", path, nm);
        if (shape->n > ELBO_SAFETENSORS_MAX_DIMS)
            return FMT("%s: tensor '%s': %zu dimensions (at most %d)", path, nm, shape->n,
                       ELBO_SAFETENSORS_MAX_DIMS);
        uint64_t dims[ELBO_SAFETENSORS_MAX_DIMS];
        for (size_t d = 0; d < shape->n; d++) {
            if (shape->items[d].type != ELBO__JSON_NUMBER || !shape->items[d].is_uint)
                return FMT("%s: tensor '%s': shape[%zu] is not a non-negative integer", path, nm, d);
            dims[d] = shape->items[d].u;
        }
        if (off->type != ELBO__JSON_ARRAY || off->n != 2 || off->items[0].type != ELBO__JSON_NUMBER ||
            !off->items[0].is_uint || off->items[1].type != ELBO__JSON_NUMBER || !off->items[1].is_uint)
            return FMT("%s: tensor '%s': data_offsets is not [begin, end] of non-negative integers",
                       path, nm);
        uint64_t b = off->items[0].u, e = off->items[1].u, bytes;
        int64_t numel;
        if (shape_bytes((int)shape->n, dims, elbo_dtype_size(dtype), &numel, &bytes))
            return FMT("%s: tensor '%s': the size of its shape overflows", path, nm);
        if (e < b)
            return FMT("%s: tensor '%s': data_offsets [%llu, %llu] end before they begin", path, nm,
                       (unsigned long long)b, (unsigned long long)e);
        if (e > st->data_size)
            return FMT("%s: tensor '%s': data_offsets [%llu, %llu] run past the %llu-byte buffer",
                       path, nm, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)st->data_size);
        if (e - b != bytes)
            return FMT("%s: tensor '%s': data_offsets [%llu, %llu] hold %llu bytes, but its shape "
                       "of %s needs %llu",
                       path, nm, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)(e - b), dtypes[dtype].name, (unsigned long long)bytes);
        int j = st->n;
        elbo_st_tensor *t = &st->t[j];
        t->name = strdup(key);
        if (!t->name) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
        st->n++;
        t->dtype = dtype;
        t->ndim = (int)shape->n;
        for (int d = 0; d < t->ndim; d++) st->shapes[j][d] = (int64_t)dims[d];
        t->shape = st->shapes[j];
        t->numel = numel;
        t->nbytes = (size_t)bytes;
        st->begin[j] = b;
        st->by_name[j] = j;
    }
    /* Coverage: sorted by offset, each tensor begins where the previous one ended. */
    int *ord = malloc((size_t)(st->n ? st->n : 1) * sizeof *ord);
    if (!ord) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < st->n; i++) ord[i] = i;
    sort_st = st;
    qsort(ord, (size_t)st->n, sizeof *ord, by_offset_cmp);
    qsort(st->by_name, (size_t)st->n, sizeof *st->by_name, by_name_cmp);
    sort_st = NULL;
    uint64_t expect = 0;
    elbo_status status = ELBO_OK;
    for (int k = 0; k < st->n && !status; k++) {
        int i = ord[k];
        uint64_t b = st->begin[i];
        if (b > expect)
            status = FMT("%s: tensor '%s': the buffer has a hole: bytes [%llu, %llu) belong to no "
                         "tensor",
                         path, SHOWN(st->t[i].name), (unsigned long long)expect,
                         (unsigned long long)b);
        else if (b < expect)
            status = FMT("%s: tensor '%s' overlaps tensor '%s' at bytes [%llu, %llu)", path,
                         SHOWN(st->t[i].name), SHOWN(st->t[ord[k - 1]].name),
                         (unsigned long long)b, (unsigned long long)expect);
        expect = b + st->t[i].nbytes;
    }
    free(ord);
    if (!status && expect != st->data_size)
        status = FMT("%s: bytes [%llu, %llu) of the buffer belong to no tensor", path,
                     (unsigned long long)expect, (unsigned long long)st->data_size);
    return status;
}

elbo_status elbo_safetensors_open(const char *path, elbo_safetensors **out) {
    if (!out) return elbo_error(ELBO_ERR_ARG, "safetensors open: NULL output");
    *out = NULL;
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "safetensors open: empty path");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return elbo_error(ELBO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return elbo_error(ELBO_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return elbo_error(ELBO_ERR_IO, "%s: not a regular file", path);
    }
    uint64_t size = (uint64_t)sb.st_size;
    elbo_status status = ELBO_OK;
    elbo_safetensors *st = calloc(1, sizeof *st);
    char *header = NULL;
    elbo__json root = {0};
    if (!st || !(st->path = strdup(path))) {
        status = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if (size < 8) {
        status = FMT("%s: %llu bytes, too short for a safetensors file (the header size alone is 8)",
                     path, (unsigned long long)size);
        goto done;
    }
    unsigned char len8[8];
    int r = read_all(fd, len8, 8);
    if (r) {
        status = r < 0 ? elbo_error(ELBO_ERR_IO, "%s: cannot read: %s", path, strerror(errno))
                       : FMT("%s: file shrank while being read", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)len8[i] << (8 * i);
    if (hlen > ELBO_SAFETENSORS_MAX_HEADER) {
        status = FMT("%s: header size %llu exceeds the safetensors limit of 100 MB", path,
                     (unsigned long long)hlen);
        goto done;
    }
    if (hlen > size - 8) {
        status = FMT("%s: header size %llu runs past the end of the %llu-byte file", path,
                     (unsigned long long)hlen, (unsigned long long)size);
        goto done;
    }
    st->data_size = size - 8 - hlen;
    header = malloc(hlen ? hlen : 1);
    if (!header) {
        status = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    if ((r = read_all(fd, header, hlen)) != 0) {
        status = r < 0 ? elbo_error(ELBO_ERR_IO, "%s: cannot read: %s", path, strerror(errno))
                       : FMT("%s: file shrank while being read", path);
        goto done;
    }
    if (hlen == 0 || header[0] != '{') {
        status = FMT("%s: the header does not start with '{'", path);
        goto done;
    }
    char jerr[256];
    if (elbo__json_parse(header, hlen, &root, jerr, sizeof jerr)) {
        status = FMT("%s: invalid JSON header: %s", path, jerr);
        goto done;
    }
    if ((status = parse_header(st, &root)) != ELBO_OK) goto done;
    if (st->data_size > SIZE_MAX - 64) {
        status = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    st->data = aligned_alloc(64, ((size_t)st->data_size + 63) / 64 * 64 + 64);
    if (!st->data) {
        status = elbo_error(ELBO_ERR_NOMEM, "%s: cannot allocate %llu bytes", path,
                            (unsigned long long)st->data_size);
        goto done;
    }
    if ((r = read_all(fd, st->data, st->data_size)) != 0) {
        status = r < 0 ? elbo_error(ELBO_ERR_IO, "%s: cannot read: %s", path, strerror(errno))
                       : FMT("%s: file shrank while being read", path);
        goto done;
    }
    for (int i = 0; i < st->n; i++) st->t[i].data = (const char *)st->data + st->begin[i];
done:
    close(fd);
    elbo__json_free(&root);
    free(header);
    if (status) {
        elbo_safetensors_close(st);
        return status;
    }
    *out = st;
    return ELBO_OK;
}

/* ---- parameters ----------------------------------------------------------------------- */
elbo_status elbo_paramset_save_safetensors(const char *path, const elbo_paramset *ps,
                                           const elbo_st_meta *meta, int n_meta) {
    if (!ps) return elbo_error(ELBO_ERR_ARG, "%s: save: NULL paramset", path ? path : "(null)");
    int n = elbo_paramset_count(ps);
    if (n > 0 && !elbo_paramset_get(ps, 0)->data)
        return elbo_error(ELBO_ERR_STATE, "%s: save: the paramset is not finalised",
                          path ? path : "(null)");
    elbo_st_tensor *t = calloc((size_t)(n > 0 ? n : 1), sizeof *t);
    if (!t) return elbo_error(ELBO_ERR_NOMEM, "%s: save: out of memory", path ? path : "(null)");
    for (int i = 0; i < n; i++) {
        const elbo_tensor *p = elbo_paramset_get(ps, i);
        t[i].name = p->name;
        t[i].dtype = ELBO_DTYPE_F32;
        t[i].ndim = p->ndim;
        t[i].shape = p->shape;
        t[i].data = p->data;
    }
    elbo_status st = elbo_safetensors_write(path, t, n, meta, n_meta);
    free(t);
    return st;
}

static const char *dims_str(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t k = 0;
    k += (size_t)snprintf(buf, len, "(");
    for (int d = 0; d < ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (k < len) snprintf(buf + k, len - k, ndim == 1 ? ",)" : ")");
    return buf;
}

elbo_status elbo_paramset_load_safetensors(const elbo_safetensors *st, elbo_paramset *ps) {
    if (!st || !ps) return elbo_error(ELBO_ERR_ARG, "load: NULL file or paramset");
    int n = elbo_paramset_count(ps);
    if (n > 0 && !elbo_paramset_get(ps, 0)->data)
        return elbo_error(ELBO_ERR_STATE, "%s: load: the paramset is not finalised", st->path);
    for (int i = 0; i < n; i++) {
        const elbo_tensor *p = elbo_paramset_get(ps, i);
        const elbo_st_tensor *t = elbo_safetensors_find(st, p->name);
        char a[160], b[160];
        if (!t) return FMT("%s: parameter '%s' is missing", st->path, SHOWN(p->name));
        if (t->dtype != ELBO_DTYPE_F32)
            return FMT("%s: parameter '%s' is %s, expected F32", st->path, SHOWN(p->name),
                       elbo_dtype_name(t->dtype));
        int same = t->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = t->shape[d] == p->shape[d];
        if (!same)
            return FMT("%s: parameter '%s' has shape %s in the file, expected %s", st->path,
                       SHOWN(p->name), dims_str(t->ndim, t->shape, a, sizeof a),
                       dims_str(p->ndim, p->shape, b, sizeof b));
    }
    for (int i = 0; i < n; i++) {
        elbo_tensor *p = elbo_paramset_get(ps, i);
        const elbo_st_tensor *t = elbo_safetensors_find(st, p->name);
        if (t->nbytes) memcpy(p->data, t->data, t->nbytes);
    }
    return ELBO_OK;
}

elbo_status elbo_paramset_load_safetensors_file(const char *path, elbo_paramset *ps) {
    elbo_safetensors *st;
    elbo_status s = elbo_safetensors_open(path, &st);
    if (s) return s;
    s = elbo_paramset_load_safetensors(st, ps);
    elbo_safetensors_close(st);
    return s;
}
