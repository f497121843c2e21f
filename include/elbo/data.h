/* elbo data: IDX files (MNIST, Fashion-MNIST), image datasets, dataset specs, deterministic
 * shuffling, pixel transforms and toy 2-D distributions.
 *
 * Conventions
 * - Images are kept as uint8 (N, C, H, W) in memory, the form they have on disk; a batch is
 *   turned into float32 (B, C, H, W) by one of the pixel transforms below.
 * - Every random draw comes from the Philox RNG of core.h: element i of a draw uses counter
 *   rng->offset + i/4, lane i%4 (as elbo_rng_uniform), so results depend only on the seed,
 *   never on the thread count.
 * - Functions return a status; on failure elbo_last_error() holds a one-line message naming
 *   the file or argument, and nothing is left allocated.
 */
#ifndef ELBO_DATA_H
#define ELBO_DATA_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- IDX files ------------------------------------------------------------------------ */
/* The IDX format of LeCun et al.'s MNIST distribution: bytes 0, 0, a type byte (only 0x08,
 * unsigned byte, is accepted) and the number of dimensions; then each dimension as a
 * big-endian uint32; then the data, row-major. The file may be gzip-compressed (detected by
 * the magic bytes 1f 8b). */
#define ELBO_IDX_MAX_DIMS 4
#define ELBO_IDX_MAX_BYTES ((int64_t)1 << 31) /* larger data is rejected as malformed */

typedef struct {
    int ndim;
    int64_t dims[ELBO_IDX_MAX_DIMS];
    int64_t numel; /* prod(dims) */
    uint8_t *data; /* numel bytes, malloc'd; free with elbo_idx_free */
} elbo_idx;

/* Reads one IDX file. ELBO_ERR_IO: missing or unreadable; ELBO_ERR_FORMAT: bad magic,
 * unsupported type, 0 or more than 4 dims, a zero dim, more than ELBO_IDX_MAX_BYTES of
 * data, data shorter or longer than the dims say, or a corrupt gzip stream. */
elbo_status elbo_idx_read(const char *path, elbo_idx *out);
void elbo_idx_free(elbo_idx *idx);

/* ---- image datasets ------------------------------------------------------------------- */
typedef enum { ELBO_SPLIT_TRAIN = 0, ELBO_SPLIT_TEST = 1 } elbo_data_split;

typedef struct {
    int64_t n, c, h, w;
    uint8_t *images; /* (n, c, h, w), malloc'd */
    int32_t *labels; /* (n), each in [0, num_classes), malloc'd */
    int num_classes;
} elbo_dataset;

/* Images from an IDX file of shape (N, H, W) and labels from one of shape (N), both uint8,
 * as a dataset of (N, 1, H, W) with 10 classes. The counts must agree and every label
 * must be < 10. */
elbo_status elbo_dataset_load_idx(const char *images_path, const char *labels_path,
                                  elbo_dataset *ds);
/* The MNIST-layout files of a directory: train-images-idx3-ubyte, train-labels-idx1-ubyte
 * (split train) or t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte (split test), each with
 * or without .gz (the uncompressed name is tried first). */
elbo_status elbo_dataset_load_idx_dir(const char *dir, elbo_data_split split, elbo_dataset *ds);
void elbo_dataset_free(elbo_dataset *ds);
/* "train" or "test" (ELBO_ERR_ARG otherwise). */
elbo_status elbo_data_split_parse(const char *s, elbo_data_split *split);

/* ---- toy 2-D distributions ------------------------------------------------------------ */
/* The 2-D densities of FFJORD's toy_data.py (Grathwohl et al. 2019); constants in toy.c. */
typedef enum {
    ELBO_TOY_SWISSROLL = 0,
    ELBO_TOY_MOONS,
    ELBO_TOY_8GAUSSIANS,
    ELBO_TOY_CHECKERBOARD,
    ELBO_TOY_CIRCLES,
    ELBO_TOY_PINWHEEL,
    ELBO_TOY_SPIRALS,
    ELBO_TOY_COUNT
} elbo_toy_kind;

/* "swissroll", "moons", "8gaussians", "checkerboard", "circles", "pinwheel", "spirals". */
const char *elbo_toy_name(elbo_toy_kind kind);
/* The kind for a name above ("2spirals" is accepted for spirals); ELBO_ERR_ARG otherwise. */
elbo_status elbo_toy_parse(const char *name, elbo_toy_kind *kind);
/* x (n, 2) float32: n points of the distribution drawn from rng (advances rng->offset). */
elbo_status elbo_toy_sample(elbo_toy_kind kind, elbo_rng *rng, float *x, int64_t n);

/* ---- dataset specs -------------------------------------------------------------------- */
/* The forms accepted by elbo_data_spec_parse:
 *   fashion-mnist         IDX files in ELBO_FASHION_MNIST_DIR (Debian's dataset-fashion-mnist)
 *   fashion-mnist:DIR     IDX files in DIR
 *   mnist:DIR             IDX files in DIR
 *   toy:NAME              a toy 2-D distribution (elbo_toy_name) */
#define ELBO_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define ELBO_DATA_SPEC_FORMS "fashion-mnist, fashion-mnist:DIR, mnist:DIR, toy:NAME"

typedef enum { ELBO_DATA_IDX = 0, ELBO_DATA_TOY = 1 } elbo_data_kind;

typedef struct {
    elbo_data_kind kind;
    char name[32];     /* "fashion-mnist", "mnist", or the toy's name */
    char dir[1024];    /* ELBO_DATA_IDX: the directory of the IDX files */
    elbo_toy_kind toy; /* ELBO_DATA_TOY */
} elbo_data_spec;

/* Parses a spec; an unknown one is ELBO_ERR_ARG with a message naming it and listing the
 * valid forms. */
elbo_status elbo_data_spec_parse(const char *spec, elbo_data_spec *out);
/* Loads the image dataset of an ELBO_DATA_IDX spec (ELBO_ERR_ARG for a toy spec: toys are
 * drawn with elbo_toy_sample). */
elbo_status elbo_dataset_load(const elbo_data_spec *spec, elbo_data_split split, elbo_dataset *ds);

/* ---- shuffling ------------------------------------------------------------------------ */
/* perm[0..n) = a uniformly random permutation of 0..n-1 (Fisher-Yates: for i = n-1 down to
 * 1, j = elbo_rng_below(rng, i + 1), swap perm[i], perm[j]; n - 1 draws in that order).
 * Serial, so the same for any thread count. n <= 2^32. */
elbo_status elbo_shuffle(elbo_rng *rng, int64_t *perm, int64_t n);

/* ---- pixel transforms: uint8 x[0..n) -> float32 y[0..n) ------------------------------- */
/* y = x / 255, in [0, 1] (0 -> 0, 255 -> 1 exactly). */
void elbo_pixels_scale01(const uint8_t *x, int64_t n, float *y);
/* y = 2 x / 255 - 1, in [-1, 1] (0 -> -1, 255 -> 1 exactly). */
void elbo_pixels_scale11(const uint8_t *x, int64_t n, float *y);
/* Uniform dequantization (Theis et al. 2016): y = (x + u) / 256, u ~ U[0, 1), so y lies in
 * [x/256, (x+1)/256). u has 16-bit resolution (k / 2^16, k uniform in 0..2^16-1), which
 * makes y = (2^16 x + k) / 2^24 exact in float32: a 24-bit u would round 255 + u up to 256. */
void elbo_pixels_dequantize(elbo_rng *rng, const uint8_t *x, int64_t n, float *y);
/* Dynamic binarization (Salakhutdinov & Murray 2008): y ~ Bernoulli(x / 255), a fresh draw
 * per call: y = 1 iff 255 r < 2^32 x for a 32-bit uniform r, so P(y = 1) = x/255 up to 2^-32. */
void elbo_pixels_binarize_dynamic(elbo_rng *rng, const uint8_t *x, int64_t n, float *y);
/* Static binarization: y = 1 if x / 255 > 0.5 (x >= 128), else 0; no randomness. */
void elbo_pixels_binarize_static(const uint8_t *x, int64_t n, float *y);
/* Random horizontal flip of images x (b, c, h, w) in place: image i is mirrored along W,
 * x[i, :, :, w'] <- x[i, :, :, W-1-w'], when bit 31 of draw i is set (probability 1/2). */
void elbo_images_hflip(elbo_rng *rng, float *x, int64_t b, int64_t c, int64_t h, int64_t w);

typedef enum {
    ELBO_PIXELS_SCALE01 = 0,    /* elbo_pixels_scale01 */
    ELBO_PIXELS_SCALE11,        /* elbo_pixels_scale11 */
    ELBO_PIXELS_DEQUANTIZE,     /* elbo_pixels_dequantize */
    ELBO_PIXELS_BINARIZE,       /* elbo_pixels_binarize_dynamic */
    ELBO_PIXELS_BINARIZE_STATIC /* elbo_pixels_binarize_static */
} elbo_pixel_transform;

/* One batch: x (b, c, h, w) float32 = transform(images[idx[k]]) for k < b, then a random
 * horizontal flip of each image if hflip; labels[k] = ds->labels[idx[k]] (labels may be
 * NULL). Draws: the transform's (b*c*h*w elements), then the flip's (b). rng may be NULL
 * when nothing is random. ELBO_ERR_ARG for an index outside [0, n). */
elbo_status elbo_dataset_batch(const elbo_dataset *ds, const int64_t *idx, int64_t b,
                               elbo_pixel_transform transform, int hflip, elbo_rng *rng, float *x,
                               int32_t *labels);

#ifdef __cplusplus
}
#endif
#endif
