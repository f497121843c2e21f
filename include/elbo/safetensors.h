/* elbo safetensors: the file format of elbo's checkpoints (huggingface/safetensors).
 *
 * Layout, all little-endian:
 *   u64 N                       the header size in bytes
 *   N bytes of UTF-8 JSON        {"__metadata__": {"key": "value", ...},        (optional)
 *                                 "name": {"dtype": "F32", "shape": [d0, d1, ...],
 *                                          "data_offsets": [begin, end]}, ...}
 *                               padded with spaces so that 8 + N is a multiple of 8
 *   the byte buffer             each tensor's values in C (row-major) order at
 *                               [begin, end) of the buffer; the tensors cover the buffer
 *                               exactly, without holes or overlaps.
 * The header may not exceed 100,000,000 bytes (the reference implementation's limit).
 * A shape [] is a scalar (one element); a dimension may be 0 (an empty tensor, begin == end).
 *
 * Not included by elbo.h: include "elbo/safetensors.h" (it includes elbo/nn.h).
 */
#ifndef ELBO_SAFETENSORS_H
#define ELBO_SAFETENSORS_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Element types of safetensors, by their names in the header. elbo computes in F32; the
 * others are stored and read as raw bytes (I64 and U8 for step counters and RNG state). */
typedef enum {
    ELBO_DTYPE_BOOL,
    ELBO_DTYPE_U8,
    ELBO_DTYPE_I8,
    ELBO_DTYPE_F8_E5M2,
    ELBO_DTYPE_F8_E4M3,
    ELBO_DTYPE_I16,
    ELBO_DTYPE_U16,
    ELBO_DTYPE_F16,
    ELBO_DTYPE_BF16,
    ELBO_DTYPE_I32,
    ELBO_DTYPE_U32,
    ELBO_DTYPE_F32,
    ELBO_DTYPE_F64,
    ELBO_DTYPE_I64,
    ELBO_DTYPE_U64,
    ELBO_DTYPE_COUNT
} elbo_dtype;

/* "F32", "I64", ...; NULL for a value outside the enum. */
const char *elbo_dtype_name(elbo_dtype dt);
/* Bytes per element (1, 2, 4 or 8); 0 for a value outside the enum. */
size_t elbo_dtype_size(elbo_dtype dt);
/* The dtype with that header name; returns 0 and sets *out, or -1 when unknown. */
int elbo_dtype_from_name(const char *name, elbo_dtype *out);

/* Dimensions a safetensors tensor may have here (files with more are rejected). */
#define ELBO_SAFETENSORS_MAX_DIMS 16
/* The header size limit, in bytes. */
#define ELBO_SAFETENSORS_MAX_HEADER 100000000ull

/* One tensor. For writing, fill name, dtype, ndim, shape and data (numel and nbytes are
 * ignored). From the reader, every field is set and points into the open file's memory. */
typedef struct {
    const char *name;     /* UTF-8, non-empty, not "__metadata__" */
    elbo_dtype dtype;
    int ndim;             /* 0..ELBO_SAFETENSORS_MAX_DIMS */
    const int64_t *shape; /* ndim sizes >= 0 (may be NULL when ndim == 0) */
    const void *data;     /* numel * elbo_dtype_size(dtype) bytes, little-endian, C order */
    int64_t numel;        /* reader: product of shape (1 for a scalar) */
    size_t nbytes;        /* reader: end - begin */
} elbo_st_tensor;

/* A metadata entry: UTF-8 strings. */
typedef struct {
    const char *key, *value;
} elbo_st_meta;

/* ---- writing -------------------------------------------------------------------------- */
/* Writes n tensors and n_meta metadata entries to path, atomically: the file is written to
 * "<path>.tmp.<pid>.<k>" in the same directory, flushed and fsync'ed, then renamed over path;
 * on any failure the temporary file is removed and an existing file at path is untouched.
 * The header lists "__metadata__" first (only when n_meta > 0), then the tensors in the
 * order given, without spaces, numbers as plain integers, strings JSON-escaped; the
 * tensors' bytes follow in the same order, contiguously.
 * Errors: ELBO_ERR_ARG (NULL path or arrays, an empty, duplicate, non-UTF-8 or reserved
 * name, a duplicate metadata key, a bad dtype, ndim or size, NULL data for a non-empty
 * tensor), ELBO_ERR_NOMEM, ELBO_ERR_IO (the file cannot be created, written or renamed). */
elbo_status elbo_safetensors_write(const char *path, const elbo_st_tensor *tensors, int n,
                                   const elbo_st_meta *meta, int n_meta);

/* ---- reading -------------------------------------------------------------------------- */
typedef struct elbo_safetensors elbo_safetensors;

/* Opens and validates a file, and reads it whole into memory (the byte buffer into one
 * 64-byte aligned block, so a tensor's data is aligned as its begin offset is: a value at a
 * begin that is not a multiple of its size must be read with memcpy); the file is closed
 * again before this returns. Checks: size >= 8, header size <= 100 MB and within the
 * file, the header starts with '{' and is strict JSON (no duplicate keys), every entry is
 * {"dtype": known name, "shape": [non-negative integers], "data_offsets": [begin, end]} with
 * no other keys, the shape's product and byte size do not overflow, begin <= end <= buffer
 * size, end - begin == numel * dtype size, the tensors cover the buffer exactly (no hole,
 * no overlap, no trailing bytes), "__metadata__" is an object of strings (or null), and no
 * name or string contains a NUL character.
 * On success *out is the open file; on failure *out = NULL and the status is ELBO_ERR_IO
 * (missing, unreadable or not a regular file), ELBO_ERR_FORMAT (malformed; the message
 * names the file, and the tensor where there is one), ELBO_ERR_NOMEM or ELBO_ERR_ARG. */
elbo_status elbo_safetensors_open(const char *path, elbo_safetensors **out);
/* Frees everything, including the memory the tensors' data point into. NULL is ignored. */
void elbo_safetensors_close(elbo_safetensors *st);
/* The path given to open. */
const char *elbo_safetensors_path(const elbo_safetensors *st);
/* The tensors in header order: count, and tensor i (NULL when out of range). */
int elbo_safetensors_count(const elbo_safetensors *st);
const elbo_st_tensor *elbo_safetensors_get(const elbo_safetensors *st, int i);
/* The tensor with that name, or NULL (no error is set). O(log n). */
const elbo_st_tensor *elbo_safetensors_find(const elbo_safetensors *st, const char *name);
/* The metadata value of key, or NULL when absent (no error is set). */
const char *elbo_safetensors_metadata(const elbo_safetensors *st, const char *key);
/* Metadata entries in header order: count, and entry i (returns -1 when out of range). */
int elbo_safetensors_metadata_count(const elbo_safetensors *st);
int elbo_safetensors_metadata_get(const elbo_safetensors *st, int i, const char **key,
                                  const char **value);

/* ---- parameters ----------------------------------------------------------------------- */
/* Saves every parameter of a finalised set as an F32 tensor named by its dotted name, in
 * declaration order, plus the metadata, atomically (elbo_safetensors_write). Errors as
 * there, and ELBO_ERR_STATE for a set that is not finalised. */
elbo_status elbo_paramset_save_safetensors(const char *path, const elbo_paramset *ps,
                                           const elbo_st_meta *meta, int n_meta);
/* Copies the values of every parameter of ps from the tensor of the same name in st.
 * Every parameter must be present as F32 with exactly its shape; tensors in the file that
 * are not parameters are ignored (a checkpoint may hold optimiser state too). Everything is
 * checked before anything is copied, so on failure ps is unchanged. Errors: ELBO_ERR_FORMAT
 * naming the file and the first parameter (in declaration order) that is missing or has
 * another dtype or shape; ELBO_ERR_STATE for a set that is not finalised; ELBO_ERR_ARG. */
elbo_status elbo_paramset_load_safetensors(const elbo_safetensors *st, elbo_paramset *ps);
/* The same, opening and closing path. */
elbo_status elbo_paramset_load_safetensors_file(const char *path, elbo_paramset *ps);

#ifdef __cplusplus
}
#endif
#endif
