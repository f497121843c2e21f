/* elbo I/O: NumPy .npy arrays, PNG images, and atomic file writes.
 *
 * Conventions
 * - Every function returns a status; on failure elbo_last_error() holds a one-line message
 *   that starts with the file's path. A file that cannot be opened, read or written is
 *   ELBO_ERR_IO; a file that is not in the expected format is ELBO_ERR_FORMAT; a bad
 *   argument is ELBO_ERR_ARG. Nothing here exits or aborts.
 * - Writes are atomic: the bytes go to a temporary file in the target's directory, which is
 *   flushed, fsync'ed and renamed over the target. On any failure the temporary file is
 *   removed and the target is left as it was, so no half-written output remains.
 * - Buffers returned by the readers are malloc'd; release them with free() (or
 *   elbo_npy_free for an elbo_npy_array). On failure nothing is allocated and the output's
 *   data pointer is NULL.
 */
#ifndef ELBO_IO_H
#define ELBO_IO_H

#include <stdint.h>
#include <stdio.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- atomic writes -------------------------------------------------------------------- */
typedef struct {
    FILE *fp;       /* write the contents here */
    char *tmp_path; /* "<path>.tmp.<pid>.<n>", in the target's directory */
    char *path;     /* the target */
} elbo_atomic_file;

/* Creates the temporary file for `path` (mode 0666 less the umask). On failure af->fp is
 * NULL and nothing is left on disk. */
elbo_status elbo_atomic_open(elbo_atomic_file *af, const char *path);
/* fflush + fsync + fclose + rename over af->path (+ a best-effort fsync of the directory).
 * On failure, including an earlier write error on af->fp, the temporary file is removed
 * and ELBO_ERR_IO returned. Always releases af. */
elbo_status elbo_atomic_commit(elbo_atomic_file *af);
/* Closes and removes the temporary file; the target is untouched. Safe on a released af. */
void elbo_atomic_abort(elbo_atomic_file *af);

/* ---- NumPy .npy (format versions 1.0, 2.0, 3.0) --------------------------------------- */
#define ELBO_NPY_MAX_DIMS 32

typedef enum {
    ELBO_NPY_U8 = 0,  /* descr '|u1' (also read: '<u1') */
    ELBO_NPY_F32 = 1, /* descr '<f4' */
    ELBO_NPY_I64 = 2  /* descr '<i8' */
} elbo_npy_dtype;

/* An array read from a .npy file: C order, host byte order, `data` malloc'd. */
typedef struct {
    elbo_npy_dtype dtype;
    int ndim;                         /* 0 (a scalar) .. ELBO_NPY_MAX_DIMS */
    int64_t shape[ELBO_NPY_MAX_DIMS]; /* shape[0..ndim) */
    int64_t numel;                    /* product of the shape (1 for ndim 0) */
    size_t nbytes;                    /* numel * elbo_npy_dtype_size(dtype) */
    void *data;                       /* nbytes bytes (at least 1 allocated); free() it */
} elbo_npy_array;

/* Bytes per element: 1, 4 or 8 (0 for an unknown dtype). */
size_t elbo_npy_dtype_size(elbo_npy_dtype dtype);

/* Writes data (numel(shape) elements of dtype, C order, host byte order) to `path` as a
 * version 1.0 .npy file, byte for byte as numpy >= 1.24 writes it: "\x93NUMPY", 1, 0,
 * uint16 LE header length, then "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
 * (1-d "(5,)", 0-d "()"), numpy's 21-digit growth spaces for shape[0] when ndim > 0, space
 * padding and '\n', so that magic through newline is a multiple of 64 bytes; then the data
 * little-endian. ndim in 0..ELBO_NPY_MAX_DIMS, shape[i] >= 0 (shape may be NULL for ndim 0).
 * Errors: ELBO_ERR_ARG (bad dtype/ndim/shape, NULL data with numel > 0), ELBO_ERR_IO. */
elbo_status elbo_npy_write(const char *path, elbo_npy_dtype dtype, int ndim,
                           const int64_t *shape, const void *data);
/* Writes a float32 tensor with its shape (see elbo_npy_write). */
elbo_status elbo_npy_write_tensor(const char *path, const elbo_tensor *t);

/* Reads a .npy file of dtype '|u1'/'<u1', '<f4' or '<i8', C order, into out (out->data
 * malloc'd; release with elbo_npy_free or free(out->data)). The header is parsed strictly:
 * a Python dict literal with exactly the keys 'descr', 'fortran_order', 'shape' (any order,
 * ' or " quotes, optional trailing comma), then only spaces up to a final '\n'.
 * ELBO_ERR_FORMAT for: bad magic or version, a header length or data running past the end
 * of the file, a malformed header, fortran_order True, big-endian or unknown descr, a shape
 * whose element count or byte size overflows int64/size_t, and trailing bytes after the data
 * (rejected: they mean the shape does not describe the file). ELBO_ERR_IO when the file
 * cannot be opened or read; ELBO_ERR_NOMEM. On failure *out is zeroed (out->data NULL). */
elbo_status elbo_npy_read(const char *path, elbo_npy_array *out);
/* free(a->data) and zero *a. Safe on a zeroed array. */
void elbo_npy_free(elbo_npy_array *a);

/* ---- PNG (libpng) --------------------------------------------------------------------- */
/* Largest width or height written or read, and largest decoded size in bytes (H * W * C). */
#define ELBO_PNG_MAX_SIDE 65536
#define ELBO_PNG_MAX_BYTES ((size_t)1 << 30)

/* Writes one 8-bit image, data uint8 (H, W, C) interleaved, row-major, C = 1 (gray),
 * 2 (gray + alpha), 3 (RGB) or 4 (RGBA). 1 <= H, W <= ELBO_PNG_MAX_SIDE.
 * Errors: ELBO_ERR_ARG, ELBO_ERR_IO (also for libpng write failures). Atomic. */
elbo_status elbo_png_write(const char *path, const uint8_t *data, int64_t h, int64_t w,
                           int64_t c);

/* Writes a grid of n images x float32 (N, C, H, W), C = 1 (gray PNG) or 3 (RGB PNG), laid
 * out as torchvision's make_grid + save_image: ncol = min(nrow, N) images per row,
 * nrows = ceil(N / ncol) rows; the PNG is (nrows (H + pad) + pad) x (ncol (W + pad) + pad),
 * i.e. `pad` pixels between tiles and around the border; image i sits at row i / ncol,
 * column i % ncol, top-left pixel (pad + row (H + pad), pad + col (W + pad)). Padding and
 * empty cells of the last row hold pad_value (0..255, every channel). A value v maps to
 * floor(255 t + 0.5) with t = (v - lo) / (hi - lo) clamped to [0, 1]; NaN maps to 0.
 * Needs hi > lo, nrow >= 1, pad >= 0, N, H, W >= 1. Errors: ELBO_ERR_ARG, ELBO_ERR_NOMEM,
 * ELBO_ERR_IO. Atomic. */
elbo_status elbo_png_write_grid(const char *path, const float *x, int64_t n, int64_t c,
                                int64_t h, int64_t w, float lo, float hi, int nrow, int pad,
                                uint8_t pad_value);
/* elbo_png_write_grid of a 4-d tensor (N, C, H, W). */
elbo_status elbo_png_write_grid_tensor(const char *path, const elbo_tensor *x, float lo,
                                       float hi, int nrow, int pad, uint8_t pad_value);

/* Reads a PNG into *data = malloc'd uint8 (H, W, C), interleaved, row-major; release with
 * free(). C = 1 for gray and gray + alpha images, 3 for RGB, RGBA and palette images.
 * Palettes and 1/2/4-bit gray are expanded to 8 bits, 16-bit samples are scaled to 8 bits
 * (round(v * 255 / 65535)), alpha and tRNS transparency are dropped (not composited),
 * interlaced images are de-interlaced; gamma and colour chunks are ignored.
 * ELBO_ERR_FORMAT (message: path and libpng's reason) for a bad signature, a corrupt or
 * truncated file (checked through IEND), or a size over ELBO_PNG_MAX_SIDE /
 * ELBO_PNG_MAX_BYTES; ELBO_ERR_IO when the file cannot be opened; ELBO_ERR_NOMEM.
 * On failure *data is NULL and *h, *w, *c are 0. */
elbo_status elbo_png_read(const char *path, uint8_t **data, int64_t *h, int64_t *w,
                          int64_t *c);

#ifdef __cplusplus
}
#endif
#endif
