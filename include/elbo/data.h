/* elbo data: IDX files (MNIST, Fashion-MNIST), CIFAR-10 binary batches, folders of PNGs and
 * uint8 .npy arrays as image datasets, dataset specs, deterministic shuffling, pixel
 * transforms and toy 2-D distributions.
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
    int64_t n, c, h, w; /* c: 1 (gray) or 3 (RGB); toy points: (2, 1, 1) */
    uint8_t *images;    /* (n, c, h, w), malloc'd; NULL for a dataset of points */
    float *points;      /* (n, c, h, w) float32 values, malloc'd, when images is NULL */
    int32_t *labels;    /* (n), each in [0, num_classes), malloc'd; NULL for unlabelled data */
    int num_classes;    /* 0 for unlabelled data */
} elbo_dataset;

/* Splits of sources that have none of their own (folder:, npy:): item i of the source, in
 * its order (sorted file names, or rows of the array), belongs to the test split when
 * i % ELBO_DATA_TEST_EVERY == ELBO_DATA_TEST_EVERY - 1 (items 9, 19, 29, ...) and to the
 * train split otherwise: a fixed, deterministic 90/10 split that keeps the source's order
 * and, being interleaved, does not put a sorted source's last class only in test. A source
 * of fewer than ELBO_DATA_TEST_EVERY items has an empty test split, which is an error
 * (ELBO_ERR_FORMAT). Both splits check every item of the source, so a bad file is an error
 * whichever split is asked for. */
#define ELBO_DATA_TEST_EVERY 10
/* 1 if item i of a source of unsplit items is in `split`, else 0. */
static inline int elbo_data_in_split(int64_t i, elbo_data_split split) {
    int test = i % ELBO_DATA_TEST_EVERY == ELBO_DATA_TEST_EVERY - 1;
    return split == ELBO_SPLIT_TEST ? test : !test;
}
/* The number of the first n items that are in `split`. */
static inline int64_t elbo_data_split_count(int64_t n, elbo_data_split split) {
    int64_t test = n / ELBO_DATA_TEST_EVERY;
    return split == ELBO_SPLIT_TEST ? test : n - test;
}
/* Largest number of classes of a labelled .npy source. */
#define ELBO_DATA_MAX_CLASSES 1000

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

/* CIFAR-10, binary version (Krizhevsky 2009): data_batch_1.bin .. data_batch_5.bin (split
 * train, read in that order) or test_batch.bin (split test) in dir, or in
 * dir/cifar-10-batches-bin when dir/data_batch_1.bin does not exist (the tarball's layout).
 * Each file is records of 3073 bytes: a label byte in 0..9, then the 32x32 image as 1024
 * red, 1024 green and 1024 blue bytes, each plane row-major: (3, 32, 32), channel-major,
 * already the dataset's layout. Every batch must be present (ELBO_ERR_IO naming the missing
 * one) and hold at least one record; a size that is not a multiple of 3073 or a label >= 10
 * is ELBO_ERR_FORMAT. 10 classes. */
#define ELBO_CIFAR10_RECORD 3073
elbo_status elbo_dataset_load_cifar10_dir(const char *dir, elbo_data_split split,
                                          elbo_dataset *ds);

/* A directory of PNG images (names ending in .png, any case; other entries, and entries
 * that are not regular files, are ignored), read with elbo_png_read and taken in strcmp
 * order of their names, split by ELBO_DATA_TEST_EVERY. Gray (and gray + alpha) images give
 * c = 1, RGB (RGBA, palette) c = 3; every image must have the first one's height, width
 * and channel count, else ELBO_ERR_FORMAT naming the first file that differs and how.
 * A directory without PNGs is ELBO_ERR_FORMAT; a missing one ELBO_ERR_IO; a corrupt PNG
 * keeps elbo_png_read's status. Unlabelled: labels NULL, num_classes 0. */
elbo_status elbo_dataset_load_folder(const char *dir, elbo_data_split split, elbo_dataset *ds);

/* A uint8 .npy array of images, split by ELBO_DATA_TEST_EVERY over its first axis. Layouts:
 *   (N, H, W)                      gray, c = 1
 *   (N, C, H, W) with C = 1 or 3   channel-major, taken as is
 *   (N, H, W, C) with C = 1 or 3   channel-last (shape[1] not 1 or 3), transposed to
 *                                  (N, C, H, W)
 * (a 4-d shape whose axis 1 is 1 or 3 is read as (N, C, H, W)); every axis >= 1. labels_path
 * (NULL or "": unlabelled, labels NULL, num_classes 0) is a 1-d .npy of int64 or uint8 with
 * N entries in 0..ELBO_DATA_MAX_CLASSES-1; num_classes = 1 + the largest label of the whole
 * file (so both splits agree). ELBO_ERR_FORMAT for another dtype, ndim or layout, a wrong
 * label count or a label out of range; the .npy reader's errors otherwise. */
elbo_status elbo_dataset_load_npy(const char *images_path, const char *labels_path,
                                  elbo_data_split split, elbo_dataset *ds);

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
/* A dataset of n points of a toy distribution, (n, 2, 1, 1) float32 in ds->points: the
 * train split drawn from elbo_rng_init(seed), the test split from elbo_rng_init(seed ^
 * 0x5eed7e57) (independent draws), so a model trains and evaluates on fixed sets. */
elbo_status elbo_dataset_toy(elbo_toy_kind kind, int64_t n, uint64_t seed, elbo_data_split split,
                             elbo_dataset *ds);

/* ---- dataset specs -------------------------------------------------------------------- */
/* The forms accepted by elbo_data_spec_parse:
 *   fashion-mnist          IDX files in ELBO_FASHION_MNIST_DIR (Debian's dataset-fashion-mnist)
 *   fashion-mnist:DIR      IDX files in DIR
 *   mnist:DIR              IDX files in DIR
 *   cifar10:DIR            CIFAR-10 binary batches in DIR (elbo_dataset_load_cifar10_dir)
 *   folder:DIR             the PNG images of DIR (elbo_dataset_load_folder)
 *   npy:FILE               a uint8 .npy array of images (elbo_dataset_load_npy)
 *   npy:FILE,LABELS        the same with a .npy of labels (FILE must not contain a comma)
 *   toy:NAME               a toy 2-D distribution (elbo_toy_name) */
#define ELBO_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define ELBO_DATA_SPEC_FORMS                                                                     \
    "fashion-mnist, fashion-mnist:DIR, mnist:DIR, cifar10:DIR, folder:DIR, npy:FILE[,LABELS], "   \
    "toy:NAME"

typedef enum {
    ELBO_DATA_IDX = 0,
    ELBO_DATA_TOY = 1,
    ELBO_DATA_CIFAR10 = 2,
    ELBO_DATA_FOLDER = 3,
    ELBO_DATA_NPY = 4
} elbo_data_kind;

typedef struct {
    elbo_data_kind kind;
    char name[32];     /* "fashion-mnist", "mnist", "cifar10", "folder", "npy", or the toy's */
    char dir[1024];    /* IDX, CIFAR10, FOLDER: the directory; NPY: the images .npy file */
    char labels[1024]; /* NPY: the labels .npy file, "" for none */
    elbo_toy_kind toy; /* ELBO_DATA_TOY */
} elbo_data_spec;

/* Parses a spec; an unknown one is ELBO_ERR_ARG with a message naming it and listing the
 * valid forms, as is an empty DIR or FILE. Nothing is opened: missing files are found by
 * elbo_dataset_load. */
elbo_status elbo_data_spec_parse(const char *spec, elbo_data_spec *out);
/* Loads the image dataset of a spec (ELBO_ERR_ARG for a toy spec: toys are drawn with
 * elbo_toy_sample). */
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
/* The way back for pictures: y = (x + 1) / 2 clamped to [0, 1], x[0..n) on the [-1, 1]
 * scale (y may alias x). */
void elbo_pixels_to01(const float *x, int64_t n, float *y);
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
    ELBO_PIXELS_BINARIZE_STATIC, /* elbo_pixels_binarize_static */
    ELBO_PIXELS_IDENTITY         /* float points as they are (datasets of points only) */
} elbo_pixel_transform;

/* How a model with a Bernoulli likelihood sees pixels. */
typedef enum {
    ELBO_BINARIZE_DYNAMIC = 0, /* x ~ Bernoulli(pixel / 255), fresh every step */
    ELBO_BINARIZE_STATIC,      /* x = pixel >= 128 */
    ELBO_BINARIZE_NONE         /* x = pixel / 255 (a continuous Bernoulli target) */
} elbo_binarize;
/* "dynamic" | "static" | "none". */
elbo_status elbo_binarize_parse(const char *s, elbo_binarize *out);
const char *elbo_binarize_name(elbo_binarize b);
/* The transform of a binarize mode: BINARIZE, BINARIZE_STATIC or SCALE01. */
elbo_pixel_transform elbo_binarize_transform(elbo_binarize b);

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
