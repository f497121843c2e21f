/* PNG images through libpng: a grid of float images (torchvision's make_grid + save_image
 * layout), one uint8 image, and a reader to uint8 (H, W, C). libpng reports errors by
 * longjmp to the setjmp in each *_body function; those functions keep every value that
 * changes after setjmp in a caller-owned struct, so nothing is clobbered by the jump. */
#include "elbo/io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

/* libpng's error callbacks: keep the message, jump back to the setjmp. */
typedef struct {
    char msg[200];
} png_err;

static void on_error(png_structp png, png_const_charp msg) {
    png_err *e = png_get_error_ptr(png);
    if (e) snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "libpng error");
    png_longjmp(png, 1);
}

static void on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

/* ---- write ---------------------------------------------------------------------------- */
/* Encodes img (h rows of w*c bytes) into fp; rows has room for h pointers. 0 on success. */
static int write_body(png_structp png, png_infop info, FILE *fp, const uint8_t *img,
                      uint32_t h, uint32_t w, int c, png_bytep *rows) {
    if (setjmp(png_jmpbuf(png))) return -1;
    static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                                 PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_init_io(png, fp);
    png_set_IHDR(png, info, w, h, 8, types[c], PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    for (uint32_t y = 0; y < h; y++) rows[y] = (png_bytep)(img + (size_t)y * w * (size_t)c);
    png_set_rows(png, info, rows);
    png_write_png(png, info, PNG_TRANSFORM_IDENTITY, NULL);
    return 0;
}

static int valid_size(int64_t h, int64_t w, int64_t c) {
    return h >= 1 && w >= 1 && h <= ELBO_PNG_MAX_SIDE && w <= ELBO_PNG_MAX_SIDE &&
           (uint64_t)h * (uint64_t)w * (uint64_t)c <= ELBO_PNG_MAX_BYTES;
}

elbo_status elbo_png_write(const char *path, const uint8_t *data, int64_t h, int64_t w,
                           int64_t c) {
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_png_write: NULL path");
    if (!data) return elbo_error(ELBO_ERR_ARG, "%s: NULL image data", path);
    if (c < 1 || c > 4)
        return elbo_error(ELBO_ERR_ARG, "%s: a PNG needs 1 to 4 channels, not %lld", path,
                          (long long)c);
    if (!valid_size(h, w, c))
        return elbo_error(ELBO_ERR_ARG, "%s: image size %lld x %lld x %lld is out of range", path,
                          (long long)h, (long long)w, (long long)c);
    png_bytep *rows = malloc((size_t)h * sizeof *rows);
    if (!rows) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    png_err err = {""};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        free(rows);
        return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory (libpng)", path);
    }
    elbo_atomic_file af;
    elbo_status st = elbo_atomic_open(&af, path);
    if (st == ELBO_OK) {
        if (write_body(png, info, af.fp, data, (uint32_t)h, (uint32_t)w, (int)c, rows) != 0) {
            elbo_atomic_abort(&af);
            st = elbo_error(ELBO_ERR_IO, "%s: PNG write failed: %s", path, err.msg);
        } else {
            st = elbo_atomic_commit(&af);
        }
    }
    png_destroy_write_struct(&png, &info);
    free(rows);
    return st;
}

/* v in [lo, hi] -> 0..255: floor(255 t + 0.5), t = (v - lo) / (hi - lo) clamped to [0, 1]. */
static uint8_t to_u8(float v, float lo, float inv_range) {
    float t = (v - lo) * inv_range;
    if (!(t > 0.0f)) return 0; /* also NaN */
    if (t >= 1.0f) return 255;
    return (uint8_t)floorf(t * 255.0f + 0.5f);
}

elbo_status elbo_png_write_grid(const char *path, const float *x, int64_t n, int64_t c,
                                int64_t h, int64_t w, float lo, float hi, int nrow, int pad,
                                uint8_t pad_value) {
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_png_write_grid: NULL path");
    if (!x) return elbo_error(ELBO_ERR_ARG, "%s: NULL images", path);
    if (c != 1 && c != 3)
        return elbo_error(ELBO_ERR_ARG, "%s: image grid needs C = 1 or 3, not %lld", path,
                          (long long)c);
    if (!(hi > lo) || !isfinite(lo) || !isfinite(hi))
        return elbo_error(ELBO_ERR_ARG, "%s: value range [%g, %g] needs finite lo < hi", path,
                          (double)lo, (double)hi);
    if (nrow < 1 || pad < 0 || n < 1 || h < 1 || w < 1 || h > ELBO_PNG_MAX_SIDE ||
        w > ELBO_PNG_MAX_SIDE || pad > ELBO_PNG_MAX_SIDE || n > INT32_MAX)
        return elbo_error(ELBO_ERR_ARG,
                          "%s: bad grid arguments (N %lld, H %lld, W %lld, nrow %d, pad %d)",
                          path, (long long)n, (long long)h, (long long)w, nrow, pad);
    int64_t ncol = n < nrow ? n : nrow;
    int64_t nrows = (n + ncol - 1) / ncol;
    /* Every factor is bounded (<= 2^31 by 2^17), so these products do not overflow. */
    int64_t gh = nrows * (h + pad) + pad, gw = ncol * (w + pad) + pad;
    if (!valid_size(gh, gw, c))
        return elbo_error(ELBO_ERR_ARG, "%s: grid of %lld x %lld pixels is too large", path,
                          (long long)gh, (long long)gw);
    size_t row_bytes = (size_t)gw * (size_t)c;
    uint8_t *img = malloc((size_t)gh * row_bytes);
    if (!img) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    memset(img, pad_value, (size_t)gh * row_bytes);
    float inv = 1.0f / (hi - lo);
    for (int64_t i = 0; i < n; i++) {
        int64_t y0 = pad + (i / ncol) * (h + pad), x0 = pad + (i % ncol) * (w + pad);
        for (int64_t ch = 0; ch < c; ch++) {
            const float *src = x + ((i * c + ch) * h) * w;
            for (int64_t y = 0; y < h; y++) {
                uint8_t *dst = img + (size_t)(y0 + y) * row_bytes + (size_t)x0 * (size_t)c + ch;
                for (int64_t xx = 0; xx < w; xx++) dst[xx * c] = to_u8(src[y * w + xx], lo, inv);
            }
        }
    }
    elbo_status st = elbo_png_write(path, img, gh, gw, c);
    free(img);
    return st;
}

elbo_status elbo_png_write_grid_tensor(const char *path, const elbo_tensor *x, float lo,
                                       float hi, int nrow, int pad, uint8_t pad_value) {
    if (!x || x->ndim != 4)
        return elbo_error(ELBO_ERR_SHAPE, "%s: image grid needs a 4-d tensor (N, C, H, W)",
                          path ? path : "(null)");
    return elbo_png_write_grid(path, x->data, x->shape[0], x->shape[1], x->shape[2],
                               x->shape[3], lo, hi, nrow, pad, pad_value);
}

/* ---- read ----------------------------------------------------------------------------- */
typedef struct {
    uint8_t *data;
    png_bytep *rows;
    uint32_t h, w;
    int c;
} read_state;

/* Decodes fp (signature already checked and consumed) into st. Returns 0 on success. */
static int read_body(png_structp png, png_infop info, FILE *fp, read_state *st) {
    if (setjmp(png_jmpbuf(png))) return -1;
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, ELBO_PNG_MAX_SIDE, ELBO_PNG_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, type, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &type, &interlace, NULL, NULL);
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16) png_set_scale_16(png);
    if (type & PNG_COLOR_MASK_ALPHA) png_set_strip_alpha(png);
    if (interlace != PNG_INTERLACE_NONE) png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int c = png_get_channels(png, info);
    if ((c != 1 && c != 3) || png_get_bit_depth(png, info) != 8)
        png_error(png, "unexpected pixel layout after expansion");
    if ((uint64_t)h * w * (uint64_t)c > ELBO_PNG_MAX_BYTES) png_error(png, "image too large");
    size_t row_bytes = (size_t)w * (size_t)c;
    if (png_get_rowbytes(png, info) != row_bytes) png_error(png, "unexpected row size");
    st->data = malloc((size_t)h * row_bytes);
    st->rows = malloc((size_t)h * sizeof *st->rows);
    if (!st->data || !st->rows) png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++) st->rows[y] = st->data + (size_t)y * row_bytes;
    png_read_image(png, st->rows);
    png_read_end(png, NULL); /* reads through IEND: a truncated tail is an error too */
    st->h = h;
    st->w = w;
    st->c = c;
    return 0;
}

elbo_status elbo_png_read(const char *path, uint8_t **data, int64_t *h, int64_t *w,
                          int64_t *c) {
    if (!data || !h || !w || !c) return elbo_error(ELBO_ERR_ARG, "elbo_png_read: NULL output");
    *data = NULL;
    *h = *w = *c = 0;
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_png_read: NULL path");
    FILE *fp = fopen(path, "rb");
    if (!fp) return elbo_error(ELBO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t sig[8];
    size_t got = fread(sig, 1, 8, fp);
    if (ferror(fp)) {
        int e = errno;
        fclose(fp);
        return elbo_error(ELBO_ERR_IO, "%s: read failed: %s", path, strerror(e));
    }
    if (got < 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp);
        return elbo_error(ELBO_ERR_FORMAT, "%s: not a PNG file (%s)", path,
                          got == 0 ? "empty" : "bad signature");
    }
    png_err err = {""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, on_error, on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(&png, NULL, NULL);
        fclose(fp);
        return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory (libpng)", path);
    }
    read_state st = {0};
    int rc = read_body(png, info, fp, &st);
    png_destroy_read_struct(&png, &info, NULL);
    int read_error = ferror(fp);
    fclose(fp);
    free(st.rows);
    if (rc != 0) {
        free(st.data);
        if (strcmp(err.msg, "out of memory") == 0)
            return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory decoding the PNG", path);
        if (read_error) return elbo_error(ELBO_ERR_IO, "%s: read failed", path);
        return elbo_error(ELBO_ERR_FORMAT, "%s: corrupt or unsupported PNG: %s", path, err.msg);
    }
    *data = st.data;
    *h = st.h;
    *w = st.w;
    *c = st.c;
    return ELBO_OK;
}
