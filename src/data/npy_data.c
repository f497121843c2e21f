/* A uint8 .npy array of images (and an optional .npy of labels) as a dataset: (N, H, W),
 * (N, C, H, W) or (N, H, W, C) converted to (N, C, H, W), split every
 * ELBO_DATA_TEST_EVERY-th row to test (data.h). */
#include "elbo/data.h"
#include "elbo/io.h"

#include <stdlib.h>
#include <string.h>

static const char *dtype_name(elbo_npy_dtype d) {
    return d == ELBO_NPY_U8 ? "uint8" : d == ELBO_NPY_F32 ? "float32" : "int64";
}


/* Labels of the whole file into lab[0..n), checked; *num_classes = 1 + the largest. */
static elbo_status read_labels(const char *path, int64_t n, int32_t *lab, int *num_classes) {
    elbo_npy_array a;
    elbo_status st = elbo_npy_read(path, &a);
    if (st != ELBO_OK) return st;
    char shp[256];
    elbo_dims_str(a.ndim, a.shape, shp, sizeof shp);
    if (a.dtype != ELBO_NPY_I64 && a.dtype != ELBO_NPY_U8)
        st = elbo_error(ELBO_ERR_FORMAT, "%s: labels must be int64 or uint8, not %s", path,
                        dtype_name(a.dtype));
    else if (a.ndim != 1)
        st = elbo_error(ELBO_ERR_FORMAT, "%s: labels must have 1 dimension (N), not shape %s",
                        path, shp);
    else if (a.shape[0] != n)
        st = elbo_error(ELBO_ERR_FORMAT, "%s: %lld labels for %lld images", path,
                        (long long)a.shape[0], (long long)n);
    int32_t top = -1;
    for (int64_t i = 0; st == ELBO_OK && i < n; i++) {
        int64_t v = a.dtype == ELBO_NPY_U8 ? ((const uint8_t *)a.data)[i]
                                           : ((const int64_t *)a.data)[i];
        if (v < 0 || v >= ELBO_DATA_MAX_CLASSES) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s: label %lld of item %lld is not in 0..%d", path,
                            (long long)v, (long long)i, ELBO_DATA_MAX_CLASSES - 1);
            break;
        }
        lab[i] = (int32_t)v;
        if (lab[i] > top) top = lab[i];
    }
    elbo_npy_free(&a);
    *num_classes = (int)top + 1;
    return st;
}

elbo_status elbo_dataset_load_npy(const char *images_path, const char *labels_path,
                                  elbo_data_split split, elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!images_path || !*images_path) return elbo_error(ELBO_ERR_ARG, "npy: no file given");
    if (split != ELBO_SPLIT_TRAIN && split != ELBO_SPLIT_TEST)
        return elbo_error(ELBO_ERR_ARG, "npy: unknown split %d", (int)split);
    if (labels_path && !*labels_path) labels_path = NULL;
    elbo_npy_array a;
    elbo_status st = elbo_npy_read(images_path, &a);
    if (st != ELBO_OK) return st;
    char shp[256];
    elbo_dims_str(a.ndim, a.shape, shp, sizeof shp);
    /* The layout: n, c, h, w and the strides (in bytes) of c, h, w in the file. */
    int64_t n = 0, c = 0, h = 0, w = 0, sc = 0, sh = 0, sw = 0;
    int64_t *s = a.shape;
    if (a.dtype != ELBO_NPY_U8) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: images must be uint8, not %s", images_path,
                        dtype_name(a.dtype));
    } else if (a.ndim == 3) {
        n = s[0], c = 1, h = s[1], w = s[2];
        sc = 0, sh = w, sw = 1;
    } else if (a.ndim == 4 && (s[1] == 1 || s[1] == 3)) {
        n = s[0], c = s[1], h = s[2], w = s[3];
        sc = h * w, sh = w, sw = 1;
    } else if (a.ndim == 4 && (s[3] == 1 || s[3] == 3)) {
        n = s[0], h = s[1], w = s[2], c = s[3];
        sc = 1, sh = w * c, sw = c;
    } else if (a.ndim == 4) {
        st = elbo_error(ELBO_ERR_FORMAT,
                        "%s: shape %s is neither (N, C, H, W) nor (N, H, W, C) with C 1 or 3",
                        images_path, shp);
    } else {
        st = elbo_error(ELBO_ERR_FORMAT,
                        "%s: images must have 3 or 4 dimensions ((N, H, W), (N, C, H, W) or "
                        "(N, H, W, C)), not shape %s",
                        images_path, shp);
    }
    if (st == ELBO_OK && (n < 1 || h < 1 || w < 1))
        st = elbo_error(ELBO_ERR_FORMAT, "%s: shape %s has an empty axis", images_path, shp);
    int64_t m = st == ELBO_OK ? elbo_data_split_count(n, split) : 0;
    if (st == ELBO_OK && m == 0)
        st = elbo_error(ELBO_ERR_FORMAT,
                        "%s: %lld images leave the test split empty (every %dth image is test)",
                        images_path, (long long)n, ELBO_DATA_TEST_EVERY);
    int32_t *all_labels = NULL;
    if (st == ELBO_OK && labels_path) {
        all_labels = malloc((size_t)n * sizeof(int32_t));
        if (!all_labels)
            st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld labels", labels_path,
                            (long long)n);
        else
            st = read_labels(labels_path, n, all_labels, &ds->num_classes);
    }
    int64_t chw = c * h * w;
    if (st == ELBO_OK) {
        ds->images = malloc((size_t)(m * chw));
        ds->labels = labels_path ? malloc((size_t)m * sizeof(int32_t)) : NULL;
        if (!ds->images || (labels_path && !ds->labels))
            st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld images", images_path,
                            (long long)m);
    }
    if (st != ELBO_OK) {
        free(all_labels);
        elbo_npy_free(&a);
        elbo_dataset_free(ds);
        return st;
    }
    const uint8_t *src = a.data;
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        if (!elbo_data_in_split(i, split)) continue;
        const uint8_t *img = src + i * chw;
        uint8_t *dst = ds->images + at * chw;
        if (sw == 1 && (c == 1 || sc == h * w)) {
            memcpy(dst, img, (size_t)chw);
        } else {
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t y = 0; y < h; y++)
                    for (int64_t x = 0; x < w; x++)
                        dst[(ch * h + y) * w + x] = img[ch * sc + y * sh + x * sw];
        }
        if (ds->labels) ds->labels[at] = all_labels[i];
        at++;
    }
    free(all_labels);
    elbo_npy_free(&a);
    ds->n = m;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    return ELBO_OK;
}
