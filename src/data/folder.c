/* A directory of PNG images as an unlabelled dataset: names sorted by strcmp, split every
 * ELBO_DATA_TEST_EVERY-th image to test (data.h), each (H, W, C) PNG stored as (C, H, W). */
#include "elbo/data.h"
#include "elbo/io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

static int is_png_name(const char *name) {
    size_t len = strlen(name);
    return len > 4 && strcasecmp(name + len - 4, ".png") == 0;
}

/* The sorted names of the regular files of dir that end in .png; *count 0 is possible. */
static elbo_status list_pngs(const char *dir, char ***out, size_t *count) {
    *out = NULL;
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) return elbo_error(ELBO_ERR_IO, "%s: cannot open directory: %s", dir, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    char path[4096];
    elbo_status st = ELBO_OK;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (!is_png_name(e->d_name)) continue;
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 64;
            char **p = realloc(names, ncap * sizeof *names);
            if (!p) {
                st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory listing the directory", dir);
                break;
            }
            names = p;
            cap = ncap;
        }
        if (!(names[n] = strdup(e->d_name))) {
            st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory listing the directory", dir);
            break;
        }
        n++;
        errno = 0;
    }
    if (st == ELBO_OK && errno != 0)
        st = elbo_error(ELBO_ERR_IO, "%s: cannot read directory: %s", dir, strerror(errno));
    closedir(d);
    if (st != ELBO_OK) {
        free_names(names, n);
        return st;
    }
    if (n) qsort(names, n, sizeof *names, cmp_names);
    *out = names;
    *count = n;
    return ELBO_OK;
}

static const char *channels_name(int64_t c) { return c == 1 ? "gray" : "RGB"; }

elbo_status elbo_dataset_load_folder(const char *dir, elbo_data_split split, elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (!dir || !*dir) return elbo_error(ELBO_ERR_ARG, "folder: no directory given");
    if (split != ELBO_SPLIT_TRAIN && split != ELBO_SPLIT_TEST)
        return elbo_error(ELBO_ERR_ARG, "folder: unknown split %d", (int)split);
    if (strlen(dir) + 256 > 4096) return elbo_error(ELBO_ERR_ARG, "%s: directory name too long", dir);
    char **names;
    size_t nfiles;
    elbo_status st = list_pngs(dir, &names, &nfiles);
    if (st != ELBO_OK) return st;
    if (nfiles == 0) return elbo_error(ELBO_ERR_FORMAT, "%s: no .png images in the directory", dir);
    int64_t n = elbo_data_split_count((int64_t)nfiles, split);
    char path[4096], first[4096];
    int64_t h0 = 0, w0 = 0, c0 = 0, at = 0;
    for (size_t i = 0; i < nfiles; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        uint8_t *px;
        int64_t h, w, c;
        st = elbo_png_read(path, &px, &h, &w, &c);
        if (st != ELBO_OK) break;
        if (i == 0) {
            h0 = h, w0 = w, c0 = c;
            snprintf(first, sizeof first, "%s", path);
            ds->images = malloc((size_t)(n ? n : 1) * (size_t)(c * h * w));
            if (!ds->images) {
                free(px);
                st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory for %lld images of %lldx%lld",
                                dir, (long long)n, (long long)h, (long long)w);
                break;
            }
        } else if (h != h0 || w != w0 || c != c0) {
            free(px);
            if (c != c0)
                st = elbo_error(ELBO_ERR_FORMAT,
                                "%s: %s image (%lld channel%s) but %s is %s (%lld channel%s): "
                                "all images must have the same channels",
                                path, channels_name(c), (long long)c, c == 1 ? "" : "s", first,
                                channels_name(c0), (long long)c0, c0 == 1 ? "" : "s");
            else
                st = elbo_error(ELBO_ERR_FORMAT,
                                "%s: image of height %lld, width %lld but %s is height %lld, "
                                "width %lld: all images must have the same size",
                                path, (long long)h, (long long)w, first, (long long)h0,
                                (long long)w0);
            break;
        }
        if (elbo_data_in_split((int64_t)i, split)) {
            /* (H, W, C) interleaved -> (C, H, W) planes */
            uint8_t *dst = ds->images + at * c * h * w;
            for (int64_t ch = 0; ch < c; ch++)
                for (int64_t p = 0; p < h * w; p++) dst[ch * h * w + p] = px[p * c + ch];
            at++;
        }
        free(px);
    }
    free_names(names, nfiles);
    if (st == ELBO_OK && n == 0)
        st = elbo_error(ELBO_ERR_FORMAT,
                        "%s: %zu images leave the test split empty (every %dth image, by name, "
                        "is test)",
                        dir, nfiles, ELBO_DATA_TEST_EVERY);
    if (st != ELBO_OK) {
        elbo_dataset_free(ds);
        return st;
    }
    ds->n = n;
    ds->c = c0;
    ds->h = h0;
    ds->w = w0;
    ds->labels = NULL;
    ds->num_classes = 0;
    return ELBO_OK;
}
