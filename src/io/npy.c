/* NumPy .npy files (numpy.lib.format, versions 1.0 to 3.0) and atomic file writes.
 *
 * File layout: "\x93NUMPY", major, minor, header length (uint16 LE for 1.0, uint32 LE for
 * 2.0 and 3.0), the header: a Python dict literal
 *   {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }
 * padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes,
 * then the data in C order. */
#include "elbo/io.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- atomic writes -------------------------------------------------------------------- */
static unsigned atomic_counter;

elbo_status elbo_atomic_open(elbo_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    if (!path || !*path) return elbo_error(ELBO_ERR_ARG, "atomic write: empty path");
    size_t len = strlen(path);
    af->path = malloc(len + 1);
    af->tmp_path = malloc(len + 64);
    if (!af->path || !af->tmp_path) {
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    }
    memcpy(af->path, path, len + 1);
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 100 && fd < 0; attempt++) {
        unsigned n = __atomic_fetch_add(&atomic_counter, 1, __ATOMIC_RELAXED);
        snprintf(af->tmp_path, len + 64, "%s.tmp.%ld.%u", path, (long)getpid(), n);
        fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        err = errno;
        if (fd < 0 && err != EEXIST) break;
    }
    if (fd >= 0) af->fp = fdopen(fd, "wb");
    if (!af->fp) {
        if (fd >= 0) {
            err = errno;
            close(fd);
            unlink(af->tmp_path);
        }
        free(af->path);
        free(af->tmp_path);
        memset(af, 0, sizeof *af);
        return elbo_error(ELBO_ERR_IO, "%s: cannot create a file there: %s", path, strerror(err));
    }
    return ELBO_OK;
}

static void atomic_release(elbo_atomic_file *af) {
    free(af->path);
    free(af->tmp_path);
    memset(af, 0, sizeof *af);
}

void elbo_atomic_abort(elbo_atomic_file *af) {
    if (!af) return;
    if (af->fp) fclose(af->fp);
    if (af->tmp_path) unlink(af->tmp_path);
    atomic_release(af);
}

/* fsync of the directory holding path, so that the rename itself is durable (best effort). */
static void sync_dir(const char *path) {
    size_t len = strlen(path);
    char *copy = malloc(len + 1);
    if (!copy) return;
    memcpy(copy, path, len + 1);
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

elbo_status elbo_atomic_commit(elbo_atomic_file *af) {
    if (!af || !af->fp) return elbo_error(ELBO_ERR_ARG, "atomic write: file not open");
    int err = 0;
    const char *what = "write";
    if (ferror(af->fp))
        err = errno ? errno : EIO;
    else if (fflush(af->fp) != 0)
        err = errno, what = "flush";
    else if (fsync(fileno(af->fp)) != 0)
        err = errno, what = "fsync";
    int close_rc = fclose(af->fp);
    af->fp = NULL;
    if (!err && close_rc != 0) err = errno, what = "close";
    if (!err && rename(af->tmp_path, af->path) != 0) err = errno, what = "rename";
    if (err) {
        unlink(af->tmp_path);
        elbo_status st =
            elbo_error(ELBO_ERR_IO, "%s: %s failed: %s", af->path, what, strerror(err));
        atomic_release(af);
        return st;
    }
    sync_dir(af->path);
    atomic_release(af);
    return ELBO_OK;
}

/* ---- dtypes and byte order ------------------------------------------------------------ */
static int host_is_little_endian(void) {
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

/* Reverses the bytes of each of n elements of size sz, in place. */
static void swap_bytes(void *data, size_t n, size_t sz) {
    uint8_t *p = data;
    for (size_t i = 0; i < n; i++, p += sz)
        for (size_t a = 0, b = sz - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

size_t elbo_npy_dtype_size(elbo_npy_dtype dtype) {
    switch (dtype) {
    case ELBO_NPY_U8: return 1;
    case ELBO_NPY_F32: return 4;
    case ELBO_NPY_I64: return 8;
    }
    return 0;
}

static const char *dtype_descr(elbo_npy_dtype dtype) {
    switch (dtype) {
    case ELBO_NPY_U8: return "|u1";
    case ELBO_NPY_F32: return "<f4";
    case ELBO_NPY_I64: return "<i8";
    }
    return NULL;
}

/* numel and byte size of a shape; 0 on overflow of int64 or size_t. */
static int shape_size(int ndim, const int64_t *shape, size_t itemsize, int64_t *numel,
                      size_t *nbytes) {
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0) return 0;
        if (shape[i] != 0 && n > INT64_MAX / shape[i]) return 0;
        n *= shape[i];
    }
    /* The check against a zero dimension comes after: (0, huge, huge) must still fit. */
    if ((uint64_t)n > SIZE_MAX / itemsize || n > INT64_MAX / (int64_t)itemsize) return 0;
    *numel = n;
    *nbytes = (size_t)n * itemsize;
    return 1;
}

/* ---- write ---------------------------------------------------------------------------- */
#define NPY_MAGIC "\x93NUMPY"
#define NPY_ALIGN 64
#define NPY_GROWTH_DIGITS 21 /* numpy's GROWTH_AXIS_MAX_DIGITS */

/* The header, magic through '\n', exactly as numpy's _write_array_header writes it for
 * version 1.0. Returns its length (a multiple of 64), or 0 if buf is too small. */
static size_t npy_header(char *buf, size_t cap, elbo_npy_dtype dtype, int ndim,
                         const int64_t *shape) {
    char dict[1024];
    size_t len = 0;
    len += (size_t)snprintf(dict + len, sizeof dict - len,
                            "{'descr': '%s', 'fortran_order': False, 'shape': (",
                            dtype_descr(dtype));
    for (int i = 0; i < ndim; i++)
        len += (size_t)snprintf(dict + len, sizeof dict - len, "%s%lld", i ? ", " : "",
                                (long long)shape[i]);
    len += (size_t)snprintf(dict + len, sizeof dict - len, "%s), }", ndim == 1 ? "," : "");
    /* Spare room so that shape[0] can grow in place (numpy >= 1.24). */
    if (ndim > 0) {
        char d0[32];
        int digits = snprintf(d0, sizeof d0, "%lld", (long long)shape[0]);
        for (int i = digits; i < NPY_GROWTH_DIGITS; i++) dict[len++] = ' ';
    }
    size_t hlen = len + 1; /* + '\n' */
    size_t padlen = NPY_ALIGN - ((6 + 2 + 2 + hlen) % NPY_ALIGN); /* 1..64, as numpy */
    size_t total = 10 + hlen + padlen;
    if (total > cap || hlen + padlen > 65535) return 0;
    memcpy(buf, NPY_MAGIC, 6);
    buf[6] = 1;
    buf[7] = 0;
    buf[8] = (char)((hlen + padlen) & 0xff);
    buf[9] = (char)((hlen + padlen) >> 8);
    memcpy(buf + 10, dict, len);
    memset(buf + 10 + len, ' ', padlen);
    buf[total - 1] = '\n';
    return total;
}

/* Writes n elements of size sz little-endian. Returns 0 on a write error. */
static int write_le(FILE *fp, const void *data, size_t n, size_t sz) {
    if (n == 0) return 1;
    if (sz == 1 || host_is_little_endian()) return fwrite(data, sz, n, fp) == n;
    uint8_t chunk[4096];
    size_t per = sizeof chunk / sz;
    for (size_t i = 0; i < n; i += per) {
        size_t k = n - i < per ? n - i : per;
        memcpy(chunk, (const uint8_t *)data + i * sz, k * sz);
        swap_bytes(chunk, k, sz);
        if (fwrite(chunk, sz, k, fp) != k) return 0;
    }
    return 1;
}

elbo_status elbo_npy_write(const char *path, elbo_npy_dtype dtype, int ndim,
                           const int64_t *shape, const void *data) {
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_npy_write: NULL path");
    size_t sz = elbo_npy_dtype_size(dtype);
    if (sz == 0) return elbo_error(ELBO_ERR_ARG, "%s: unknown dtype %d", path, (int)dtype);
    if (ndim < 0 || ndim > ELBO_NPY_MAX_DIMS || (ndim > 0 && !shape))
        return elbo_error(ELBO_ERR_ARG, "%s: bad ndim %d", path, ndim);
    int64_t numel;
    size_t nbytes;
    if (!shape_size(ndim, shape, sz, &numel, &nbytes))
        return elbo_error(ELBO_ERR_ARG, "%s: negative or overflowing shape", path);
    if (numel > 0 && !data) return elbo_error(ELBO_ERR_ARG, "%s: NULL data", path);
    char header[2048];
    size_t hl = npy_header(header, sizeof header, dtype, ndim, shape);
    if (hl == 0) return elbo_error(ELBO_ERR_ARG, "%s: header too long", path);
    elbo_atomic_file af;
    elbo_status st = elbo_atomic_open(&af, path);
    if (st != ELBO_OK) return st;
    if (fwrite(header, 1, hl, af.fp) != hl || !write_le(af.fp, data, (size_t)numel, sz)) {
        st = elbo_error(ELBO_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        elbo_atomic_abort(&af);
        return st;
    }
    return elbo_atomic_commit(&af);
}

elbo_status elbo_npy_write_tensor(const char *path, const elbo_tensor *t) {
    if (!t) return elbo_error(ELBO_ERR_ARG, "%s: NULL tensor", path ? path : "(null)");
    return elbo_npy_write(path, ELBO_NPY_F32, t->ndim, t->shape, t->data);
}

/* ---- header parsing ------------------------------------------------------------------- */
typedef struct {
    const char *s, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->s < c->end && (*c->s == ' ' || *c->s == '\t')) c->s++;
}

static int accept(cursor *c, char ch) {
    skip_ws(c);
    if (c->s < c->end && *c->s == ch) {
        c->s++;
        return 1;
    }
    return 0;
}

/* A quoted string ('...' or "...", no escapes) into out (NUL-terminated). */
static int parse_str(cursor *c, char *out, size_t cap) {
    skip_ws(c);
    if (c->s >= c->end || (*c->s != '\'' && *c->s != '"')) return 0;
    char q = *c->s++;
    size_t n = 0;
    while (c->s < c->end && *c->s != q) {
        if (*c->s == '\\' || *c->s == '\n' || n + 1 >= cap) return 0;
        out[n++] = *c->s++;
    }
    if (c->s >= c->end) return 0;
    c->s++;
    out[n] = 0;
    return 1;
}

static int accept_word(cursor *c, const char *w) {
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->s) < n || memcmp(c->s, w, n) != 0) return 0;
    const char *after = c->s + n;
    if (after < c->end && ((*after >= 'a' && *after <= 'z') || (*after >= 'A' && *after <= 'Z') ||
                           (*after >= '0' && *after <= '9') || *after == '_'))
        return 0;
    c->s = after;
    return 1;
}

/* A non-negative decimal integer; sets *overflow if it does not fit int64. */
static int parse_int(cursor *c, int64_t *v, int *overflow) {
    skip_ws(c);
    if (c->s >= c->end || *c->s < '0' || *c->s > '9') return 0;
    int64_t x = 0;
    while (c->s < c->end && *c->s >= '0' && *c->s <= '9') {
        int d = *c->s++ - '0';
        if (x > (INT64_MAX - d) / 10) *overflow = 1;
        else x = x * 10 + d;
    }
    *v = x;
    return 1;
}

/* Parses the header dict into dtype/ndim/shape. Returns ELBO_OK or an error naming path. */
static elbo_status parse_header(const char *path, const char *h, size_t len,
                                elbo_npy_array *out) {
    if (len == 0 || h[len - 1] != '\n')
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy header does not end in a newline", path);
    for (size_t i = 0; i < len; i++)
        if (h[i] == 0 || (unsigned char)h[i] >= 0x80)
            return elbo_error(ELBO_ERR_FORMAT, "%s: npy header is not ASCII text", path);
    cursor c = {h, h + len - 1};
    int seen_descr = 0, seen_fortran = 0, seen_shape = 0;
    char descr[64] = "";
    if (!accept(&c, '{')) return elbo_error(ELBO_ERR_FORMAT, "%s: npy header is not a dict", path);
    for (;;) {
        if (accept(&c, '}')) break;
        char key[32];
        if (!parse_str(&c, key, sizeof key) || !accept(&c, ':'))
            return elbo_error(ELBO_ERR_FORMAT, "%s: malformed npy header dict", path);
        if (strcmp(key, "descr") == 0 && !seen_descr) {
            seen_descr = 1;
            if (!parse_str(&c, descr, sizeof descr))
                return elbo_error(ELBO_ERR_FORMAT,
                                  "%s: npy descr is not a simple type string (structured "
                                  "dtypes are not supported)",
                                  path);
        } else if (strcmp(key, "fortran_order") == 0 && !seen_fortran) {
            seen_fortran = 1;
            if (accept_word(&c, "True"))
                return elbo_error(ELBO_ERR_FORMAT,
                                  "%s: fortran_order True is not supported (save in C order)",
                                  path);
            if (!accept_word(&c, "False"))
                return elbo_error(ELBO_ERR_FORMAT, "%s: npy fortran_order is not a bool", path);
        } else if (strcmp(key, "shape") == 0 && !seen_shape) {
            seen_shape = 1;
            if (!accept(&c, '('))
                return elbo_error(ELBO_ERR_FORMAT, "%s: npy shape is not a tuple", path);
            int n = 0, overflow = 0, comma = 0;
            while (!accept(&c, ')')) {
                if (n > 0 && !comma)
                    return elbo_error(ELBO_ERR_FORMAT, "%s: malformed npy shape", path);
                if (n >= ELBO_NPY_MAX_DIMS)
                    return elbo_error(ELBO_ERR_FORMAT, "%s: npy shape has more than %d axes",
                                      path, ELBO_NPY_MAX_DIMS);
                if (!parse_int(&c, &out->shape[n], &overflow))
                    return elbo_error(ELBO_ERR_FORMAT, "%s: malformed npy shape", path);
                n++;
                comma = accept(&c, ',');
            }
            /* Python: "(5)" is an int, a 1-tuple needs its comma. */
            if (n == 1 && !comma)
                return elbo_error(ELBO_ERR_FORMAT, "%s: malformed npy shape", path);
            if (overflow)
                return elbo_error(ELBO_ERR_FORMAT, "%s: npy shape does not fit int64", path);
            out->ndim = n;
        } else {
            return elbo_error(ELBO_ERR_FORMAT, "%s: unexpected or repeated npy header key '%s'",
                              path, key);
        }
        if (accept(&c, '}')) break;
        if (!accept(&c, ','))
            return elbo_error(ELBO_ERR_FORMAT, "%s: malformed npy header dict", path);
    }
    skip_ws(&c);
    if (c.s != c.end)
        return elbo_error(ELBO_ERR_FORMAT, "%s: unexpected text after the npy header dict", path);
    if (!seen_descr || !seen_fortran || !seen_shape)
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy header lacks '%s'", path,
                          !seen_descr ? "descr" : !seen_fortran ? "fortran_order" : "shape");
    if (strcmp(descr, "|u1") == 0 || strcmp(descr, "<u1") == 0)
        out->dtype = ELBO_NPY_U8;
    else if (strcmp(descr, "<f4") == 0)
        out->dtype = ELBO_NPY_F32;
    else if (strcmp(descr, "<i8") == 0)
        out->dtype = ELBO_NPY_I64;
    else if (descr[0] == '>')
        return elbo_error(ELBO_ERR_FORMAT,
                          "%s: big-endian dtype '%s' is not supported (save as little-endian)",
                          path, descr);
    else
        return elbo_error(ELBO_ERR_FORMAT,
                          "%s: unsupported dtype '%s' (expected '|u1', '<f4' or '<i8')", path,
                          descr);
    if (!shape_size(out->ndim, out->shape, elbo_npy_dtype_size(out->dtype), &out->numel,
                    &out->nbytes))
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy shape's size overflows", path);
    return ELBO_OK;
}

/* ---- read ----------------------------------------------------------------------------- */
#define NPY_MAX_HEADER (1u << 20)

static elbo_status read_fp(const char *path, FILE *fp, elbo_npy_array *out) {
    struct stat sb;
    int64_t file_size = -1; /* known for regular files */
    if (fstat(fileno(fp), &sb) == 0 && S_ISREG(sb.st_mode)) file_size = (int64_t)sb.st_size;
    if (file_size == 0) return elbo_error(ELBO_ERR_FORMAT, "%s: empty file, not a .npy", path);
    uint8_t pre[12];
    size_t got = fread(pre, 1, 8, fp);
    if (ferror(fp)) return elbo_error(ELBO_ERR_IO, "%s: read failed: %s", path, strerror(errno));
    if (got < 6 || memcmp(pre, NPY_MAGIC, 6) != 0)
        return elbo_error(ELBO_ERR_FORMAT, "%s: not a .npy file (bad magic)", path);
    if (got < 8) return elbo_error(ELBO_ERR_FORMAT, "%s: truncated npy header", path);
    int major = pre[6], minor = pre[7];
    if (!((major == 1 || major == 2 || major == 3) && minor == 0))
        return elbo_error(ELBO_ERR_FORMAT, "%s: unsupported npy version %d.%d", path, major,
                          minor);
    size_t lbytes = major == 1 ? 2 : 4;
    if (fread(pre + 8, 1, lbytes, fp) != lbytes)
        return elbo_error(ELBO_ERR_FORMAT, "%s: truncated npy header", path);
    uint32_t hlen = (uint32_t)pre[8] | (uint32_t)pre[9] << 8;
    if (lbytes == 4) hlen |= (uint32_t)pre[10] << 16 | (uint32_t)pre[11] << 24;
    int64_t data_off = 8 + (int64_t)lbytes + hlen;
    if (file_size >= 0 && data_off > file_size)
        return elbo_error(ELBO_ERR_FORMAT,
                          "%s: npy header length %u runs past the end of the file (%lld bytes)",
                          path, hlen, (long long)file_size);
    if (hlen > NPY_MAX_HEADER)
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy header length %u is too large", path, hlen);
    char *h = malloc(hlen ? hlen : 1);
    if (!h) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    if (fread(h, 1, hlen, fp) != hlen) {
        free(h);
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy header length %u runs past the end of the file",
                          path, hlen);
    }
    elbo_status st = parse_header(path, h, hlen, out);
    free(h);
    if (st != ELBO_OK) return st;
    if (file_size >= 0) {
        int64_t have = file_size - data_off;
        if ((uint64_t)have < out->nbytes)
            return elbo_error(ELBO_ERR_FORMAT,
                              "%s: npy data is %lld bytes, shape needs %zu (truncated file)",
                              path, (long long)have, out->nbytes);
        if ((uint64_t)have > out->nbytes)
            return elbo_error(ELBO_ERR_FORMAT,
                              "%s: %lld trailing bytes after the npy data", path,
                              (long long)((uint64_t)have - out->nbytes));
    }
    out->data = malloc(out->nbytes ? out->nbytes : 1);
    if (!out->data) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory (%zu bytes)", path,
                                      out->nbytes);
    if (fread(out->data, 1, out->nbytes, fp) != out->nbytes) {
        if (ferror(fp))
            return elbo_error(ELBO_ERR_IO, "%s: read failed: %s", path, strerror(errno));
        return elbo_error(ELBO_ERR_FORMAT, "%s: npy data shorter than the shape needs", path);
    }
    if (fgetc(fp) != EOF)
        return elbo_error(ELBO_ERR_FORMAT, "%s: trailing bytes after the npy data", path);
    size_t sz = elbo_npy_dtype_size(out->dtype);
    if (sz > 1 && !host_is_little_endian()) swap_bytes(out->data, (size_t)out->numel, sz);
    return ELBO_OK;
}

elbo_status elbo_npy_read(const char *path, elbo_npy_array *out) {
    if (!out) return elbo_error(ELBO_ERR_ARG, "elbo_npy_read: NULL output");
    memset(out, 0, sizeof *out);
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_npy_read: NULL path");
    FILE *fp = fopen(path, "rb");
    if (!fp) return elbo_error(ELBO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    elbo_status st = read_fp(path, fp, out);
    fclose(fp);
    if (st != ELBO_OK) elbo_npy_free(out);
    return st;
}

void elbo_npy_free(elbo_npy_array *a) {
    if (!a) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
