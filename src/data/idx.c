/* IDX files (MNIST, Fashion-MNIST), image datasets from them, dataset specs (all sources:
 * the CIFAR-10, folder and .npy loaders are in cifar.c, folder.c and npy_data.c), shuffling
 * and the pixel transforms that turn a uint8 batch into float32. */
#include "elbo/data.h"
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- IDX reader ----------------------------------------------------------------------- */
/* A source that is either a plain file or a gzip stream. */
typedef struct {
    const char *path;
    FILE *f;
    gzFile g;
} idx_src;

/* Reads up to len bytes into buf; returns the count read (short only at end of input), or
 * -1 with the error set. */
static int64_t src_read(idx_src *s, void *buf, int64_t len) {
    unsigned char *p = buf;
    int64_t got = 0;
    while (got < len) {
        int64_t want = len - got;
        if (want > (1 << 30)) want = 1 << 30;
        if (s->g) {
            int r = gzread(s->g, p + got, (unsigned)want);
            int errnum = Z_OK;
            const char *msg = gzerror(s->g, &errnum);
            if (r < 0 || (errnum != Z_OK && errnum != Z_STREAM_END && errnum != Z_BUF_ERROR)) {
                if (errnum == Z_ERRNO)
                    elbo_error(ELBO_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
                else if (errnum == Z_MEM_ERROR)
                    elbo_error(ELBO_ERR_NOMEM, "%s: out of memory in zlib", s->path);
                else {
                    /* zlib's message is "<fd:N>: why": keep the why */
                    const char *why = msg ? strstr(msg, ": ") : NULL;
                    elbo_error(ELBO_ERR_FORMAT, "%s: corrupt gzip stream (%s)", s->path,
                               why   ? why + 2
                               : msg ? msg
                                     : "unknown error");
                }
                return -1;
            }
            if (r == 0) break; /* end of input (Z_BUF_ERROR: the stream ended early) */
            got += r;
        } else {
            size_t r = fread(p + got, 1, (size_t)want, s->f);
            got += (int64_t)r;
            if (r < (size_t)want) {
                if (ferror(s->f)) {
                    elbo_error(ELBO_ERR_IO, "%s: read error: %s", s->path, strerror(errno));
                    return -1;
                }
                break;
            }
        }
    }
    return got;
}

/* A gzip stream cut short reads as a short count with Z_BUF_ERROR set. */
static int src_gzip_truncated(idx_src *s) {
    int errnum = Z_OK;
    if (!s->g) return 0;
    gzerror(s->g, &errnum);
    return errnum == Z_BUF_ERROR;
}

static void src_close(idx_src *s) {
    if (s->g) gzclose_r(s->g);
    if (s->f) fclose(s->f);
    s->g = NULL;
    s->f = NULL;
}

static uint32_t be32(const unsigned char *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

elbo_status elbo_idx_read(const char *path, elbo_idx *out) {
    memset(out, 0, sizeof *out);
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_idx_read: no path");
    idx_src s = {path, NULL, NULL};
    s.f = fopen(path, "rb");
    if (!s.f) return elbo_error(ELBO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(s.f), &st) == 0 && S_ISDIR(st.st_mode)) {
        src_close(&s);
        return elbo_error(ELBO_ERR_IO, "%s: is a directory", path);
    }
    unsigned char magic[4];
    size_t m = fread(magic, 1, 4, s.f);
    if (ferror(s.f)) {
        src_close(&s);
        return elbo_error(ELBO_ERR_IO, "%s: read error: %s", path, strerror(errno));
    }
    int gz = m >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (gz) {
        /* Reopen through zlib; gzdopen takes over the descriptor. */
        rewind(s.f);
        int fd = dup(fileno(s.f));
        fclose(s.f);
        s.f = NULL;
        if (fd < 0 || !(s.g = gzdopen(fd, "rb"))) {
            if (fd >= 0) close(fd);
            return elbo_error(ELBO_ERR_IO, "%s: cannot open gzip stream", path);
        }
        gzbuffer(s.g, 1 << 18);
        int64_t r = src_read(&s, magic, 4);
        if (r < 0) {
            src_close(&s);
            return elbo_last_status();
        }
        m = (size_t)r;
    }
    elbo_status status = ELBO_ERR_FORMAT;
    if (m < 4) {
        elbo_error(ELBO_ERR_FORMAT, "%s: not an IDX file (%s)", path,
                   m == 0 ? "empty" : "shorter than the 4-byte magic");
        goto fail;
    }
    if (magic[0] != 0 || magic[1] != 0) {
        elbo_error(ELBO_ERR_FORMAT, "%s: not an IDX file (magic %02x %02x %02x %02x)", path,
                   magic[0], magic[1], magic[2], magic[3]);
        goto fail;
    }
    if (magic[2] != 0x08) {
        elbo_error(ELBO_ERR_FORMAT,
                   "%s: IDX type 0x%02x is not supported (only 0x08, unsigned byte)", path,
                   magic[2]);
        goto fail;
    }
    int ndim = magic[3];
    if (ndim < 1 || ndim > ELBO_IDX_MAX_DIMS) {
        elbo_error(ELBO_ERR_FORMAT, "%s: IDX file has %d dimensions (1 to %d supported)", path,
                   ndim, ELBO_IDX_MAX_DIMS);
        goto fail;
    }
    unsigned char db[4 * ELBO_IDX_MAX_DIMS];
    int64_t r = src_read(&s, db, 4 * ndim);
    if (r < 0) {
        status = elbo_last_status();
        goto fail;
    }
    if (r < 4 * ndim) {
        elbo_error(ELBO_ERR_FORMAT, "%s: truncated IDX header (%d dimensions declared)", path,
                   ndim);
        goto fail;
    }
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        uint32_t v = be32(db + 4 * d);
        if (v == 0) {
            elbo_error(ELBO_ERR_FORMAT, "%s: IDX dimension %d is 0", path, d);
            goto fail;
        }
        /* numel * v cannot overflow: numel <= 2^31 and v < 2^32 fit in int64. */
        numel *= (int64_t)v;
        if (numel > ELBO_IDX_MAX_BYTES) {
            elbo_error(ELBO_ERR_FORMAT,
                       "%s: IDX dimensions too large (more than %lld bytes of data)", path,
                       (long long)ELBO_IDX_MAX_BYTES);
            goto fail;
        }
        out->dims[d] = v;
    }
    if (!gz && fstat(fileno(s.f), &st) == 0 && S_ISREG(st.st_mode) &&
        (int64_t)st.st_size < 4 + 4 * ndim + numel) {
        /* Checked before allocating, so a bad header cannot ask for gigabytes. */
        elbo_error(ELBO_ERR_FORMAT, "%s: truncated IDX data (%lld of %lld bytes)", path,
                   (long long)(st.st_size - 4 - 4 * ndim), (long long)numel);
        goto fail;
    }
    out->data = malloc((size_t)numel);
    if (!out->data) {
        elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld bytes", path, (long long)numel);
        status = ELBO_ERR_NOMEM;
        goto fail;
    }
    r = src_read(&s, out->data, numel);
    if (r < 0) {
        status = elbo_last_status();
        goto fail;
    }
    if (r < numel) {
        if (src_gzip_truncated(&s))
            elbo_error(ELBO_ERR_FORMAT, "%s: truncated gzip stream (IDX data %lld of %lld bytes)",
                       path, (long long)r, (long long)numel);
        else
            elbo_error(ELBO_ERR_FORMAT, "%s: truncated IDX data (%lld of %lld bytes)", path,
                       (long long)r, (long long)numel);
        goto fail;
    }
    /* The data must end the file; for gzip this read also checks the stream's CRC. */
    unsigned char extra;
    r = src_read(&s, &extra, 1);
    if (r < 0) {
        status = elbo_last_status();
        goto fail;
    }
    if (r > 0) {
        elbo_error(ELBO_ERR_FORMAT, "%s: bytes after the IDX data (dimensions say %lld bytes)",
                   path, (long long)numel);
        goto fail;
    }
    if (src_gzip_truncated(&s)) {
        elbo_error(ELBO_ERR_FORMAT, "%s: truncated gzip stream (no end of stream)", path);
        goto fail;
    }
    src_close(&s);
    out->ndim = ndim;
    out->numel = numel;
    return ELBO_OK;
fail:
    src_close(&s);
    free(out->data);
    memset(out, 0, sizeof *out);
    return status;
}

void elbo_idx_free(elbo_idx *idx) {
    if (!idx) return;
    free(idx->data);
    memset(idx, 0, sizeof *idx);
}

/* ---- datasets ------------------------------------------------------------------------- */
elbo_status elbo_dataset_load_idx(const char *images_path, const char *labels_path,
                                  elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    elbo_idx im, lb;
    elbo_status st = elbo_idx_read(images_path, &im);
    if (st != ELBO_OK) return st;
    if (im.ndim != 3) {
        elbo_idx_free(&im);
        return elbo_error(ELBO_ERR_FORMAT, "%s: images must have 3 dimensions (N, H, W), not %d",
                          images_path, im.ndim);
    }
    st = elbo_idx_read(labels_path, &lb);
    if (st != ELBO_OK) {
        elbo_idx_free(&im);
        return st;
    }
    if (lb.ndim != 1) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: labels must have 1 dimension (N), not %d",
                        labels_path, lb.ndim);
        goto fail;
    }
    if (lb.dims[0] != im.dims[0]) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: %lld labels for %lld images in %s", labels_path,
                        (long long)lb.dims[0], (long long)im.dims[0], images_path);
        goto fail;
    }
    int64_t n = im.dims[0];
    ds->labels = malloc((size_t)n * sizeof(int32_t));
    if (!ds->labels) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld labels", labels_path,
                        (long long)n);
        goto fail;
    }
    for (int64_t i = 0; i < n; i++) {
        if (lb.data[i] >= 10) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s: label %d of item %lld is not in 0..9",
                            labels_path, lb.data[i], (long long)i);
            goto fail;
        }
        ds->labels[i] = lb.data[i];
    }
    elbo_idx_free(&lb);
    ds->n = n;
    ds->c = 1;
    ds->h = im.dims[1];
    ds->w = im.dims[2];
    ds->images = im.data; /* (N, H, W) is (N, 1, H, W): take the buffer over */
    ds->num_classes = 10;
    return ELBO_OK;
fail:
    elbo_idx_free(&im);
    elbo_idx_free(&lb);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
    return st;
}

/* dir/base, or dir/base.gz if only that exists; 0 when neither exists (buf holds the
 * uncompressed name). */
static int find_idx(const char *dir, const char *base, char *buf, size_t len) {
    struct stat st;
    if (!buf || len == 0) return 0;
    snprintf(buf, len, "%s/%s", dir, base);
    if (stat(buf, &st) == 0) return 1;
    snprintf(buf, len, "%s/%s.gz", dir, base);
    if (stat(buf, &st) == 0) return 1;
    snprintf(buf, len, "%s/%s", dir, base);
    return 0;
}

elbo_status elbo_dataset_load_idx_dir(const char *dir, elbo_data_split split, elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!dir || !*dir) return elbo_error(ELBO_ERR_ARG, "dataset: no directory given");
    if (split != ELBO_SPLIT_TRAIN && split != ELBO_SPLIT_TEST)
        return elbo_error(ELBO_ERR_ARG, "dataset: unknown split %d", (int)split);
    const char *pre = split == ELBO_SPLIT_TRAIN ? "train" : "t10k";
    char base[64], ipath[4096], lpath[4096];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", pre);
    if (strlen(dir) + sizeof base + 8 > sizeof ipath)
        return elbo_error(ELBO_ERR_ARG, "%s: directory name too long", dir);
    if (!find_idx(dir, base, ipath, sizeof ipath))
        return elbo_error(ELBO_ERR_IO, "%s[.gz]: no such file", ipath);
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", pre);
    if (!find_idx(dir, base, lpath, sizeof lpath))
        return elbo_error(ELBO_ERR_IO, "%s[.gz]: no such file", lpath);
    return elbo_dataset_load_idx(ipath, lpath, ds);
}

void elbo_dataset_free(elbo_dataset *ds) {
    if (!ds) return;
    free(ds->images);
    free(ds->points);
    free(ds->labels);
    memset(ds, 0, sizeof *ds);
}

elbo_status elbo_data_split_parse(const char *s, elbo_data_split *split) {
    if (s && strcmp(s, "train") == 0) {
        *split = ELBO_SPLIT_TRAIN;
        return ELBO_OK;
    }
    if (s && strcmp(s, "test") == 0) {
        *split = ELBO_SPLIT_TEST;
        return ELBO_OK;
    }
    return elbo_error(ELBO_ERR_ARG, "unknown split '%s': expected train or test", s ? s : "");
}

/* ---- specs ---------------------------------------------------------------------------- */
static elbo_status spec_unknown(const char *spec) {
    return elbo_error(ELBO_ERR_ARG, "unknown dataset '%s': expected one of %s", spec,
                      ELBO_DATA_SPEC_FORMS);
}

/* A spec of the form NAME:DIR (kind IDX, CIFAR10 or FOLDER). */
static elbo_status spec_dir(const char *spec, elbo_data_kind kind, const char *name,
                            const char *dir, elbo_data_spec *out) {
    if (!*dir)
        return elbo_error(ELBO_ERR_ARG, "dataset '%s': empty directory (expected %s:DIR)", spec,
                          name);
    if (strlen(dir) >= sizeof out->dir)
        return elbo_error(ELBO_ERR_ARG, "dataset '%s': directory name too long", spec);
    out->kind = kind;
    snprintf(out->name, sizeof out->name, "%s", name);
    snprintf(out->dir, sizeof out->dir, "%s", dir);
    return ELBO_OK;
}

static elbo_status spec_idx(const char *spec, const char *name, const char *dir,
                            elbo_data_spec *out) {
    return spec_dir(spec, ELBO_DATA_IDX, name, dir, out);
}

/* npy:FILE or npy:FILE,LABELS */
static elbo_status spec_npy(const char *spec, const char *rest, elbo_data_spec *out) {
    const char *comma = strchr(rest, ',');
    size_t flen = comma ? (size_t)(comma - rest) : strlen(rest);
    if (flen == 0)
        return elbo_error(ELBO_ERR_ARG,
                          "dataset '%s': empty file name (expected npy:FILE or npy:FILE,LABELS)",
                          spec);
    if (comma && (!comma[1] || strchr(comma + 1, ',')))
        return elbo_error(ELBO_ERR_ARG,
                          "dataset '%s': %s (expected npy:FILE or npy:FILE,LABELS)", spec,
                          comma[1] ? "more than one comma" : "empty labels file name");
    if (flen >= sizeof out->dir || (comma && strlen(comma + 1) >= sizeof out->labels))
        return elbo_error(ELBO_ERR_ARG, "dataset '%s': file name too long", spec);
    out->kind = ELBO_DATA_NPY;
    snprintf(out->name, sizeof out->name, "npy");
    memcpy(out->dir, rest, flen);
    out->dir[flen] = 0;
    if (comma) snprintf(out->labels, sizeof out->labels, "%s", comma + 1);
    return ELBO_OK;
}

elbo_status elbo_data_spec_parse(const char *spec, elbo_data_spec *out) {
    memset(out, 0, sizeof *out);
    if (!spec)
        return elbo_error(ELBO_ERR_ARG, "no dataset given: expected one of %s",
                          ELBO_DATA_SPEC_FORMS);
    if (strcmp(spec, "fashion-mnist") == 0)
        return spec_idx(spec, "fashion-mnist", ELBO_FASHION_MNIST_DIR, out);
    if (strncmp(spec, "fashion-mnist:", 14) == 0)
        return spec_idx(spec, "fashion-mnist", spec + 14, out);
    if (strcmp(spec, "mnist") == 0)
        return elbo_error(ELBO_ERR_ARG,
                          "dataset 'mnist' needs a directory (mnist:DIR): Debian ships no MNIST");
    if (strncmp(spec, "mnist:", 6) == 0) return spec_idx(spec, "mnist", spec + 6, out);
    if (strncmp(spec, "cifar10:", 8) == 0)
        return spec_dir(spec, ELBO_DATA_CIFAR10, "cifar10", spec + 8, out);
    if (strncmp(spec, "folder:", 7) == 0)
        return spec_dir(spec, ELBO_DATA_FOLDER, "folder", spec + 7, out);
    if (strncmp(spec, "npy:", 4) == 0) return spec_npy(spec, spec + 4, out);
    if (strcmp(spec, "cifar10") == 0 || strcmp(spec, "folder") == 0 || strcmp(spec, "npy") == 0)
        return elbo_error(ELBO_ERR_ARG, "dataset '%s' needs a %s (%s:%s): expected one of %s",
                          spec, spec[0] == 'n' ? "file" : "directory", spec,
                          spec[0] == 'n' ? "FILE" : "DIR", ELBO_DATA_SPEC_FORMS);
    if (strncmp(spec, "toy:", 4) == 0) {
        elbo_toy_kind k;
        if (elbo_toy_parse(spec + 4, &k) != ELBO_OK) {
            char names[256] = "";
            for (int i = 0; i < ELBO_TOY_COUNT; i++) {
                strcat(names, i ? ", " : "");
                strcat(names, elbo_toy_name((elbo_toy_kind)i));
            }
            return elbo_error(ELBO_ERR_ARG, "unknown dataset '%s': toy:NAME takes NAME in %s", spec,
                              names);
        }
        out->kind = ELBO_DATA_TOY;
        out->toy = k;
        snprintf(out->name, sizeof out->name, "%s", elbo_toy_name(k));
        return ELBO_OK;
    }
    return spec_unknown(spec);
}

elbo_status elbo_dataset_load(const elbo_data_spec *spec, elbo_data_split split, elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (spec->kind == ELBO_DATA_TOY)
        return elbo_error(ELBO_ERR_ARG,
                          "dataset 'toy:%s' is a 2-D distribution, not an image dataset",
                          spec->name);
    switch (spec->kind) {
    case ELBO_DATA_IDX:
        return elbo_dataset_load_idx_dir(spec->dir, split, ds);
    case ELBO_DATA_CIFAR10:
        return elbo_dataset_load_cifar10_dir(spec->dir, split, ds);
    case ELBO_DATA_FOLDER:
        return elbo_dataset_load_folder(spec->dir, split, ds);
    case ELBO_DATA_NPY:
        return elbo_dataset_load_npy(spec->dir, spec->labels[0] ? spec->labels : NULL, split, ds);
    default:
        return elbo_error(ELBO_ERR_ARG, "dataset '%s': unknown kind %d", spec->name,
                          (int)spec->kind);
    }
}

/* ---- shuffling ------------------------------------------------------------------------ */
elbo_status elbo_shuffle(elbo_rng *rng, int64_t *perm, int64_t n) {
    if (n < 0 || n > ((int64_t)1 << 32))
        return elbo_error(ELBO_ERR_ARG, "shuffle: n = %lld is outside [0, 2^32]", (long long)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = elbo_rng_below(rng, (uint32_t)(i + 1));
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    return ELBO_OK;
}

/* ---- pixel transforms ----------------------------------------------------------------- */
/* y = x / 255: division (not x * (1/255)) so that 255 maps to exactly 1. */
void elbo_pixels_scale01(const uint8_t *x, int64_t n, float *y) {
    ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) y[i] = x[i] / 255.0f;);
}

/* y = 2 x / 255 - 1 = (2 x - 255) / 255: exact at both ends and symmetric about 127.5. */
void elbo_pixels_scale11(const uint8_t *x, int64_t n, float *y) {
    ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) y[i] =
                                            (float)(2 * (int)x[i] - 255) / 255.0f;);
}

void elbo_pixels_to01(const float *x, int64_t n, float *y) {
    for (int64_t i = 0; i < n; i++) {
        float v = 0.5f * (x[i] + 1.0f);
        y[i] = v < 0 ? 0 : v > 1 ? 1 : v;
    }
}

/* Dequantized value (x + k/2^16)/256 = (2^16 x + k) 2^-24 with k the top 16 bits of r: exact
 * in float32; or the binarized value [r / 2^32 < x / 255] = [255 r < 2^32 x]. */
typedef enum { PIX_DEQUANT, PIX_BINARIZE } pix_kind;

static inline float pix_value(pix_kind kind, uint8_t x, uint32_t r) {
    if (kind == PIX_DEQUANT) return (float)(((uint32_t)x << 16) | (r >> 16)) * 0x1p-24f;
    return (uint64_t)r * 255u < ((uint64_t)x << 32) ? 1.0f : 0.0f;
}

/* y[i] for elements e = e0 + i (i < n) of the draw that starts at counter base: element e
 * uses lane e%4 of counter base + e/4. Parallel over counters, so any thread count gives
 * the same values. */
static void pixels_random_at(uint64_t key, uint64_t base, int64_t e0, const uint8_t *x, int64_t n,
                             float *y, pix_kind kind) {
    if (n <= 0) return;
    int64_t c0 = e0 / 4, c1 = (e0 + n - 1) / 4;
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t c = c0; c <= c1; c++) {
            uint32_t r[4];
            elbo_philox4x32(key, base + (uint64_t)c, r);
            for (int l = 0; l < 4; l++) {
                int64_t i = c * 4 + l - e0;
                if (i >= 0 && i < n) y[i] = pix_value(kind, x[i], r[l]);
            }
        });
}

static void pixels_random(elbo_rng *rng, const uint8_t *x, int64_t n, float *y, pix_kind kind) {
    pixels_random_at(rng->seed, rng->offset, 0, x, n, y, kind);
    rng->offset += (uint64_t)((n + 3) / 4);
}

void elbo_pixels_dequantize(elbo_rng *rng, const uint8_t *x, int64_t n, float *y) {
    pixels_random(rng, x, n, y, PIX_DEQUANT);
}

void elbo_pixels_binarize_dynamic(elbo_rng *rng, const uint8_t *x, int64_t n, float *y) {
    pixels_random(rng, x, n, y, PIX_BINARIZE);
}

/* y = [x / 255 > 0.5] = [x >= 128] */
void elbo_pixels_binarize_static(const uint8_t *x, int64_t n, float *y) {
    ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < n; i++) y[i] = x[i] >= 128 ? 1.0f : 0.0f;);
}

/* x (b, c, h, w): image i flipped along w when bit 31 of draw i (lane i%4 of counter
 * offset + i/4) is set; the offset advances by ceil(b/4). */
void elbo_images_hflip(elbo_rng *rng, float *x, int64_t b, int64_t c, int64_t h, int64_t w) {
    uint64_t key = rng->seed, base = rng->offset;
    int64_t rows = c * h;
    for (int64_t i = 0; i < b; i++) {
        uint32_t r[4];
        elbo_philox4x32(key, base + (uint64_t)(i / 4), r);
        if (!(r[i % 4] >> 31)) continue;
        float *img = x + i * rows * w;
        for (int64_t row = 0; row < rows; row++) {
            float *p = img + row * w;
            for (int64_t a = 0, z = w - 1; a < z; a++, z--) {
                float t = p[a];
                p[a] = p[z];
                p[z] = t;
            }
        }
    }
    rng->offset += (uint64_t)((b + 3) / 4);
}

elbo_status elbo_dataset_batch(const elbo_dataset *ds, const int64_t *idx, int64_t b,
                               elbo_pixel_transform transform, int hflip, elbo_rng *rng, float *x,
                               int32_t *labels) {
    if (!ds || (!ds->images && !ds->points) || b < 0 || (b > 0 && (!idx || !x)))
        return elbo_error(ELBO_ERR_ARG, "dataset batch: missing dataset, indices or output");
    if (!ds->images != (transform == ELBO_PIXELS_IDENTITY))
        return elbo_error(ELBO_ERR_ARG, ds->images ? "dataset batch: images need a pixel transform"
                                                   : "dataset batch: points take no pixel transform "
                                                     "(a model of images on a toy dataset?)");
    int random = transform == ELBO_PIXELS_DEQUANTIZE || transform == ELBO_PIXELS_BINARIZE || hflip;
    if (random && !rng)
        return elbo_error(ELBO_ERR_ARG, "dataset batch: this transform needs an RNG");
    if (transform < ELBO_PIXELS_SCALE01 || transform > ELBO_PIXELS_IDENTITY)
        return elbo_error(ELBO_ERR_ARG, "dataset batch: unknown transform %d", (int)transform);
    for (int64_t k = 0; k < b; k++)
        if (idx[k] < 0 || idx[k] >= ds->n)
            return elbo_error(ELBO_ERR_ARG, "dataset batch: index %lld outside [0, %lld)",
                              (long long)idx[k], (long long)ds->n);
    int64_t chw = ds->c * ds->h * ds->w;
    /* The batch is one draw of b*chw elements: image k's pixels are elements k*chw.., as if
     * the gathered uint8 batch were transformed at once. */
    for (int64_t k = 0; k < b; k++) {
        float *dst = x + k * chw;
        if (ds->points) { /* float values as they are (ELBO_PIXELS_IDENTITY) */
            memcpy(dst, ds->points + idx[k] * chw, (size_t)chw * sizeof *dst);
            continue;
        }
        const uint8_t *src = ds->images + idx[k] * chw;
        switch (transform) {
        case ELBO_PIXELS_SCALE01:
            elbo_pixels_scale01(src, chw, dst);
            break;
        case ELBO_PIXELS_SCALE11:
            elbo_pixels_scale11(src, chw, dst);
            break;
        case ELBO_PIXELS_BINARIZE_STATIC:
            elbo_pixels_binarize_static(src, chw, dst);
            break;
        case ELBO_PIXELS_DEQUANTIZE:
            pixels_random_at(rng->seed, rng->offset, k * chw, src, chw, dst, PIX_DEQUANT);
            break;
        case ELBO_PIXELS_BINARIZE:
            pixels_random_at(rng->seed, rng->offset, k * chw, src, chw, dst, PIX_BINARIZE);
            break;
        case ELBO_PIXELS_IDENTITY: /* points only: refused above for images */
            break;
        }
    }
    if (transform == ELBO_PIXELS_DEQUANTIZE || transform == ELBO_PIXELS_BINARIZE)
        rng->offset += (uint64_t)((b * chw + 3) / 4);
    if (hflip) elbo_images_hflip(rng, x, b, ds->c, ds->h, ds->w);
    if (labels)
        for (int64_t k = 0; k < b; k++) labels[k] = ds->labels ? ds->labels[idx[k]] : 0;
    return ELBO_OK;
}
