/* CIFAR-10 binary batches (Krizhevsky 2009, "Learning Multiple Layers of Features from Tiny
 * Images"; https://www.cs.toronto.edu/~kriz/cifar.html, "binary version"): each record is
 * <1 x label><3072 x pixel>, the pixels 1024 red, 1024 green, 1024 blue bytes of a 32x32
 * image, each plane row-major, i.e. (3, 32, 32), the dataset's own layout. */
#include "elbo/data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = 3 * CIFAR_SIDE * CIFAR_SIDE, CIFAR_BATCHES = 5 };

/* The record count of one batch file, checked against its size: ELBO_ERR_IO when missing,
 * ELBO_ERR_FORMAT when empty or not a multiple of the record size. */
static elbo_status cifar_count(const char *path, int64_t *count) {
    struct stat st;
    if (stat(path, &st) != 0)
        return elbo_error(ELBO_ERR_IO, "%s: cannot open CIFAR-10 batch: %s", path,
                          strerror(errno));
    if (S_ISDIR(st.st_mode)) return elbo_error(ELBO_ERR_IO, "%s: is a directory", path);
    int64_t size = (int64_t)st.st_size;
    if (size == 0 || size % ELBO_CIFAR10_RECORD != 0)
        return elbo_error(ELBO_ERR_FORMAT,
                          "%s: %lld bytes is not a positive multiple of the CIFAR-10 record "
                          "size %d (1 label byte + 3072 pixels)",
                          path, (long long)size, ELBO_CIFAR10_RECORD);
    *count = size / ELBO_CIFAR10_RECORD;
    return ELBO_OK;
}

/* Reads `count` records of path into images (count, 3, 32, 32) and labels. */
static elbo_status cifar_read(const char *path, int64_t count, uint8_t *images,
                              int32_t *labels) {
    FILE *f = fopen(path, "rb");
    if (!f) return elbo_error(ELBO_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    elbo_status st = ELBO_OK;
    for (int64_t r = 0; r < count; r++) {
        int lab = fgetc(f);
        size_t got = lab == EOF ? 0 : fread(images + r * CIFAR_PIXELS, 1, CIFAR_PIXELS, f);
        if (got != CIFAR_PIXELS) {
            st = ferror(f) ? elbo_error(ELBO_ERR_IO, "%s: read error: %s", path, strerror(errno))
                           : elbo_error(ELBO_ERR_FORMAT,
                                        "%s: file ended in record %lld (it shrank while read)",
                                        path, (long long)r);
            break;
        }
        if (lab >= 10) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s: label %d of record %lld is not in 0..9", path,
                            lab, (long long)r);
            break;
        }
        labels[r] = lab;
    }
    fclose(f);
    return st;
}

elbo_status elbo_dataset_load_cifar10_dir(const char *dir, elbo_data_split split,
                                          elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!dir || !*dir) return elbo_error(ELBO_ERR_ARG, "cifar10: no directory given");
    if (split != ELBO_SPLIT_TRAIN && split != ELBO_SPLIT_TEST)
        return elbo_error(ELBO_ERR_ARG, "cifar10: unknown split %d", (int)split);
    char path[CIFAR_BATCHES][4096], base[4000];
    if (strlen(dir) + 64 > sizeof base)
        return elbo_error(ELBO_ERR_ARG, "%s: directory name too long", dir);
    struct stat st;
    if (stat(dir, &st) != 0)
        return elbo_error(ELBO_ERR_IO, "%s: cannot open CIFAR-10 directory: %s", dir,
                          strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return elbo_error(ELBO_ERR_IO, "%s: not a directory (cifar10:DIR)", dir);
    /* The tarball unpacks to cifar-10-batches-bin/: accept its parent too. */
    snprintf(base, sizeof base, "%s/data_batch_1.bin", dir);
    if (stat(base, &st) != 0) {
        snprintf(base, sizeof base, "%s/cifar-10-batches-bin/data_batch_1.bin", dir);
        if (stat(base, &st) == 0)
            snprintf(base, sizeof base, "%s/cifar-10-batches-bin", dir);
        else
            snprintf(base, sizeof base, "%s", dir);
    } else {
        snprintf(base, sizeof base, "%s", dir);
    }
    int nfiles = split == ELBO_SPLIT_TRAIN ? CIFAR_BATCHES : 1;
    for (int k = 0; k < nfiles; k++) {
        if (split == ELBO_SPLIT_TRAIN)
            snprintf(path[k], sizeof path[k], "%s/data_batch_%d.bin", base, k + 1);
        else
            snprintf(path[k], sizeof path[k], "%s/test_batch.bin", base);
    }
    /* Sizes first, so the buffers are allocated once and a bad file costs no reading. */
    int64_t count[CIFAR_BATCHES], n = 0;
    for (int k = 0; k < nfiles; k++) {
        elbo_status s = cifar_count(path[k], &count[k]);
        if (s != ELBO_OK) return s;
        n += count[k];
    }
    ds->images = malloc((size_t)n * CIFAR_PIXELS);
    ds->labels = malloc((size_t)n * sizeof(int32_t));
    if (!ds->images || !ds->labels) {
        elbo_dataset_free(ds);
        return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld CIFAR-10 images", dir,
                          (long long)n);
    }
    int64_t at = 0;
    for (int k = 0; k < nfiles; k++) {
        elbo_status s =
            cifar_read(path[k], count[k], ds->images + at * CIFAR_PIXELS, ds->labels + at);
        if (s != ELBO_OK) {
            elbo_dataset_free(ds);
            return s;
        }
        at += count[k];
    }
    ds->n = n;
    ds->c = 3;
    ds->h = CIFAR_SIDE;
    ds->w = CIFAR_SIDE;
    ds->num_classes = 10;
    return ELBO_OK;
}
