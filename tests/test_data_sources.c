/* Data sources beyond IDX: CIFAR-10 binary batches, folders of PNGs and uint8 .npy arrays,
 * through the --data spec parser and elbo_dataset_load; exact pixels and labels for files the
 * tests write themselves, and every kind of bad input (status, one-line message naming the
 * file, nothing allocated). */
#include "test.h"

#include "elbo/data.h"
#include "elbo/io.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------- */
static int src_tmp_dir(char *buf, size_t len) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, len, "%s/elbo-test-src-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf) != NULL;
}

/* Removes dir and everything under it (the tests' own scratch directories only). */
static void src_rm_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[2048];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
            src_rm_tree(p);
        else
            unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int src_write(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = n ? fwrite(b, 1, n, f) : 0;
    return fclose(f) == 0 && w == n;
}

/* The status is `want`, also as elbo_last_status(), and the message is one line naming
 * `name`; the dataset holds nothing. Writes what went wrong to why. */
static int src_rejects(elbo_status st, elbo_status want, const char *name, const elbo_dataset *ds,
                       char *why, size_t len) {
    const char *m = elbo_last_error();
    int ok = st == want && elbo_last_status() == want && strstr(m, name) &&
             !strchr(m, '\n') && ds->images == NULL && ds->labels == NULL && ds->n == 0;
    if (!ok)
        snprintf(why, len, "%.300s: status %d (want %d), message '%.400s'", name, st, want, m);
    return ok;
}

#define CHECK_REJECTS(call, want, name)                                                            \
    do {                                                                                           \
        elbo_dataset ds_;                                                                          \
        char why_[800];                                                                            \
        memset(&ds_, 0x5a, sizeof ds_); /* the loader must clear it */                             \
        elbo_clear_error();                                                                        \
        elbo_status st_ = (call(&ds_));                                                            \
        int ok_ = src_rejects(st_, want, name, &ds_, why_, sizeof why_);                           \
        if (!ok_ && st_ == ELBO_OK) elbo_dataset_free(&ds_);                                       \
        if (!ok_) {                                                                                \
            src_rm_tree(dir);                                                                      \
            test_fail(__FILE__, __LINE__, "%s", why_);                                             \
            return;                                                                                \
        }                                                                                          \
    } while (0)

/* Loads spec's split through the parser, as the command line does. */
static elbo_status load_spec(const char *spec, elbo_data_split split, elbo_dataset *ds) {
    elbo_data_spec s;
    elbo_status st = elbo_data_spec_parse(spec, &s);
    if (st != ELBO_OK) {
        memset(ds, 0, sizeof *ds);
        return st;
    }
    return elbo_dataset_load(&s, split, ds);
}

/* ---- specs ---------------------------------------------------------------------------- */
TEST(data_src_spec_forms_and_errors) {
    elbo_data_spec s;
    CHECK(elbo_data_spec_parse("cifar10:/data/cifar", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_CIFAR10 && strcmp(s.dir, "/data/cifar") == 0 &&
          strcmp(s.name, "cifar10") == 0 && s.labels[0] == 0);
    CHECK(elbo_data_spec_parse("folder:imgs", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_FOLDER && strcmp(s.dir, "imgs") == 0 &&
          strcmp(s.name, "folder") == 0);
    CHECK(elbo_data_spec_parse("npy:x.npy", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_NPY && strcmp(s.dir, "x.npy") == 0 && s.labels[0] == 0 &&
          strcmp(s.name, "npy") == 0);
    CHECK(elbo_data_spec_parse("npy:/a/x.npy,/b/y.npy", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_NPY && strcmp(s.dir, "/a/x.npy") == 0 &&
          strcmp(s.labels, "/b/y.npy") == 0);
    /* the IDX forms are as before */
    CHECK(elbo_data_spec_parse("mnist:d", &s) == ELBO_OK && s.kind == ELBO_DATA_IDX);
    const char *bad[] = {"cifar10", "folder", "npy", "cifar10:", "folder:", "npy:",
                         "npy:a,", "npy:,b", "npy:a,b,c", "cifar", "Folder:x", "npz:x"};
    for (int i = 0; i < 12; i++) {
        elbo_status st = elbo_data_spec_parse(bad[i], &s);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        CHECK_MSG(st == ELBO_ERR_ARG && strstr(elbo_last_error(), quoted) &&
                      !strchr(elbo_last_error(), '\n'),
                  "'%s' gave %d: %s", bad[i], st, elbo_last_error());
    }
    CHECK(elbo_data_spec_parse("nope", &s) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "cifar10:DIR") && strstr(elbo_last_error(), "folder:DIR") &&
          strstr(elbo_last_error(), "npy:FILE[,LABELS]"));
    CHECK(elbo_data_spec_parse("folder", &s) == ELBO_ERR_ARG &&
          strstr(elbo_last_error(), "folder:DIR"));
}

/* The split rule of data.h: item i is test iff i % 10 == 9. */
TEST(data_src_split_rule) {
    int64_t tr = 0, te = 0;
    for (int64_t i = 0; i < 25; i++) {
        int a = elbo_data_in_split(i, ELBO_SPLIT_TRAIN), b = elbo_data_in_split(i, ELBO_SPLIT_TEST);
        CHECK(a + b == 1);
        CHECK(b == (i == 9 || i == 19));
        tr += a, te += b;
    }
    CHECK(tr == 23 && te == 2);
    CHECK(elbo_data_split_count(25, ELBO_SPLIT_TRAIN) == 23);
    CHECK(elbo_data_split_count(25, ELBO_SPLIT_TEST) == 2);
    CHECK(elbo_data_split_count(9, ELBO_SPLIT_TEST) == 0);
    CHECK(elbo_data_split_count(10, ELBO_SPLIT_TEST) == 1);
}

/* ---- CIFAR-10 ------------------------------------------------------------------------- */
enum { REC = 3073, PIX = 3072 };

/* Byte j of the image of record r of file f (f 0..4 train batches, 5 the test batch). */
static uint8_t cifar_px(int f, int r, int j) { return (uint8_t)(f * 31 + r * 7 + j * 13 + j / 1024); }
static uint8_t cifar_label(int f, int r) { return (uint8_t)((f * 3 + r * 5 + 1) % 10); }

/* Writes dir/name with n records of file index f. */
static int cifar_write(const char *dir, const char *name, int f, int n) {
    uint8_t *b = malloc((size_t)n * REC);
    if (!b) return 0;
    for (int r = 0; r < n; r++) {
        b[r * REC] = cifar_label(f, r);
        for (int j = 0; j < PIX; j++) b[r * REC + 1 + j] = cifar_px(f, r, j);
    }
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    int ok = src_write(p, b, (size_t)n * REC);
    free(b);
    return ok;
}

static const int cifar_counts[6] = {1, 2, 1, 1, 3, 2}; /* records per file; [5]: test */

static int cifar_write_all(const char *dir) {
    int ok = 1;
    char name[64];
    for (int f = 0; f < 5; f++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", f + 1);
        ok = ok && cifar_write(dir, name, f, cifar_counts[f]);
    }
    return ok && cifar_write(dir, "test_batch.bin", 5, cifar_counts[5]);
}

/* ds holds files f0..f1 in order; 0 if any pixel or label differs (where in *bad). */
static int cifar_matches(const elbo_dataset *ds, int f0, int f1, char *bad, size_t len) {
    int64_t i = 0;
    for (int f = f0; f <= f1; f++)
        for (int r = 0; r < cifar_counts[f]; r++, i++) {
            if (i >= ds->n || ds->labels[i] != cifar_label(f, r)) {
                snprintf(bad, len, "file %d record %d: label", f, r);
                return 0;
            }
            /* channel-major (3, 32, 32): byte j of the record is channel j / 1024, row
             * (j % 1024) / 32, column j % 32 */
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++)
                        if (ds->images[i * PIX + (ch * 32 + y) * 32 + x] !=
                            cifar_px(f, r, ch * 1024 + y * 32 + x)) {
                            snprintf(bad, len, "file %d record %d: pixel %d %d %d", f, r, ch, y, x);
                            return 0;
                        }
        }
    return i == ds->n;
}

TEST(data_src_cifar10_loads_exact_records) {
    char dir[256], spec[600], bad[128] = "";
    CHECK(src_tmp_dir(dir, sizeof dir));
    int ok = cifar_write_all(dir);
    snprintf(spec, sizeof spec, "cifar10:%s", dir);
    elbo_dataset tr, te;
    elbo_status s1 = load_spec(spec, ELBO_SPLIT_TRAIN, &tr);
    elbo_status s2 = load_spec(spec, ELBO_SPLIT_TEST, &te);
    /* the tarball layout: DIR/cifar-10-batches-bin/ */
    char sub[600], parent[600];
    snprintf(parent, sizeof parent, "%s/p", dir);
    snprintf(sub, sizeof sub, "%s/p/cifar-10-batches-bin", dir);
    ok = ok && mkdir(parent, 0700) == 0 && mkdir(sub, 0700) == 0 && cifar_write_all(sub);
    elbo_dataset te2;
    elbo_status s3 = elbo_dataset_load_cifar10_dir(parent, ELBO_SPLIT_TEST, &te2);
    src_rm_tree(dir);
    CHECK(ok);
    CHECK(s1 == ELBO_OK && s2 == ELBO_OK && s3 == ELBO_OK);
    int good = tr.n == 8 && tr.c == 3 && tr.h == 32 && tr.w == 32 && tr.num_classes == 10 &&
               te.n == 2 && te.c == 3 && te.num_classes == 10;
    good = good && cifar_matches(&tr, 0, 4, bad, sizeof bad) &&
           cifar_matches(&te, 5, 5, bad, sizeof bad) && cifar_matches(&te2, 5, 5, bad, sizeof bad);
    /* spot values by hand: test record 1, red (0, 0) and blue (31, 31) */
    good = good && te.labels[1] == (5 * 3 + 5 + 1) % 10 && te.images[PIX] == (uint8_t)(155 + 7) &&
           te.images[PIX + 3071] == (uint8_t)(155 + 7 + 3071 * 13 + 2);
    /* a batch of a 3-channel set: image 7 is record 2 of batch 5, scaled to [0, 1] */
    float x[PIX];
    int32_t y;
    int64_t idx = 7;
    good = good && elbo_dataset_batch(&tr, &idx, 1, ELBO_PIXELS_SCALE01, 0, NULL, x, &y) == ELBO_OK;
    for (int j = 0; good && j < PIX; j++) good = x[j] == cifar_px(4, 2, j) / 255.0f;
    good = good && y == cifar_label(4, 2);
    elbo_dataset_free(&tr);
    elbo_dataset_free(&te);
    elbo_dataset_free(&te2);
    CHECK_MSG(good, "CIFAR-10 contents differ (%s)", bad);
}

/* A 3-channel horizontal flip mirrors each channel's rows of the CIFAR layout. */
TEST(data_src_cifar10_hflip_per_channel) {
    char dir[256];
    CHECK(src_tmp_dir(dir, sizeof dir));
    int ok = cifar_write_all(dir);
    elbo_dataset te;
    elbo_status st = elbo_dataset_load_cifar10_dir(dir, ELBO_SPLIT_TEST, &te);
    src_rm_tree(dir);
    CHECK(ok && st == ELBO_OK);
    enum { B = 64 };
    static float x[B * PIX];
    int64_t idx[B];
    for (int k = 0; k < B; k++) idx[k] = k % 2;
    elbo_rng r;
    elbo_rng_init(&r, 3);
    st = elbo_dataset_batch(&te, idx, B, ELBO_PIXELS_SCALE01, 1, &r, x, NULL);
    int flipped = 0, good = st == ELBO_OK;
    for (int k = 0; good && k < B; k++) {
        int orig = 1, flip = 1;
        for (int ch = 0; ch < 3; ch++)
            for (int yy = 0; yy < 32; yy++)
                for (int xx = 0; xx < 32; xx++) {
                    float v = x[k * PIX + (ch * 32 + yy) * 32 + xx];
                    orig = orig && v == cifar_px(5, k % 2, ch * 1024 + yy * 32 + xx) / 255.0f;
                    flip = flip && v == cifar_px(5, k % 2, ch * 1024 + yy * 32 + 31 - xx) / 255.0f;
                }
        good = orig || flip;
        flipped += flip;
    }
    elbo_dataset_free(&te);
    CHECK(good);
    CHECK(flipped > 0 && flipped < B);
}

static char g_dir[1024]; /* the directory the CIFAR/folder rejection cases load */
static elbo_status cifar_train(elbo_dataset *ds) {
    return elbo_dataset_load_cifar10_dir(g_dir, ELBO_SPLIT_TRAIN, ds);
}
static elbo_status cifar_test(elbo_dataset *ds) {
    return elbo_dataset_load_cifar10_dir(g_dir, ELBO_SPLIT_TEST, ds);
}
static elbo_status folder_train(elbo_dataset *ds) {
    return elbo_dataset_load_folder(g_dir, ELBO_SPLIT_TRAIN, ds);
}
static elbo_status folder_test(elbo_dataset *ds) {
    return elbo_dataset_load_folder(g_dir, ELBO_SPLIT_TEST, ds);
}
static elbo_status spec_train(elbo_dataset *ds) { return load_spec(g_dir, ELBO_SPLIT_TRAIN, ds); }

TEST(data_src_cifar10_rejects_bad_input) {
    char dir[256], p[1100];
    CHECK(src_tmp_dir(dir, sizeof dir));
    /* a missing directory, and a file where the directory should be */
    snprintf(g_dir, sizeof g_dir, "%s/none", dir);
    CHECK_REJECTS(cifar_train, ELBO_ERR_IO, g_dir);
    snprintf(g_dir, sizeof g_dir, "cifar10:%s/none", dir);
    snprintf(p, sizeof p, "%s/none", dir);
    CHECK_REJECTS(spec_train, ELBO_ERR_IO, p);
    snprintf(g_dir, sizeof g_dir, "%s/file", dir);
    CHECK(src_write(g_dir, "x", 1));
    CHECK_REJECTS(cifar_train, ELBO_ERR_IO, g_dir);
    /* a missing batch: data_batch_3.bin */
    snprintf(g_dir, sizeof g_dir, "%s", dir);
    CHECK(cifar_write(dir, "data_batch_1.bin", 0, 1) && cifar_write(dir, "data_batch_2.bin", 1, 1) &&
          cifar_write(dir, "data_batch_4.bin", 3, 1) && cifar_write(dir, "data_batch_5.bin", 4, 1));
    CHECK_REJECTS(cifar_train, ELBO_ERR_IO, "data_batch_3.bin");
    CHECK_REJECTS(cifar_test, ELBO_ERR_IO, "test_batch.bin");
    /* a size that is not a multiple of 3073 (one byte short, one byte over), and empty */
    static uint8_t b[2 * REC + 1];
    for (size_t i = 0; i < sizeof b; i++) b[i] = (uint8_t)(i % 10);
    snprintf(p, sizeof p, "%s/data_batch_3.bin", dir);
    CHECK(src_write(p, b, 2 * REC - 1));
    CHECK_REJECTS(cifar_train, ELBO_ERR_FORMAT, p);
    CHECK(strstr(elbo_last_error(), "3073"));
    CHECK(src_write(p, b, 2 * REC + 1));
    CHECK_REJECTS(cifar_train, ELBO_ERR_FORMAT, p);
    CHECK(src_write(p, b, 0));
    CHECK_REJECTS(cifar_train, ELBO_ERR_FORMAT, p);
    /* a label byte >= 10 in the second record */
    b[0] = 9;
    b[REC] = 10;
    CHECK(src_write(p, b, 2 * REC));
    CHECK_REJECTS(cifar_train, ELBO_ERR_FORMAT, p);
    CHECK(strstr(elbo_last_error(), "label 10") && strstr(elbo_last_error(), "record 1"));
    b[REC] = 255;
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    CHECK(src_write(p, b, 2 * REC));
    CHECK_REJECTS(cifar_test, ELBO_ERR_FORMAT, p);
    /* fixed: both load */
    b[REC] = 3;
    snprintf(p, sizeof p, "%s/data_batch_3.bin", dir);
    elbo_dataset ds;
    int ok = src_write(p, b, 2 * REC) && cifar_train(&ds) == ELBO_OK;
    ok = ok && ds.n == 6 && ds.labels[2] == 9 && ds.labels[3] == 3 && ds.images[2 * PIX] == 1;
    elbo_dataset_free(&ds);
    src_rm_tree(dir);
    CHECK(ok);
}

/* ---- folders of PNGs ------------------------------------------------------------------ */
/* Pixel (y, x, ch) of image k, for an (h, w, c) PNG. */
static uint8_t png_px(int k, int y, int x, int ch) {
    return (uint8_t)(k * 17 + y * 5 + x * 3 + ch * 71 + 2);
}

static int png_write_k(const char *dir, const char *name, int k, int h, int w, int c) {
    uint8_t buf[64 * 64 * 3];
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) buf[(y * w + x) * c + ch] = png_px(k, y, x, ch);
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return elbo_png_write(p, buf, h, w, c) == ELBO_OK;
}

/* Image i of ds is image k of png_px in (c, h, w). */
static int png_matches(const elbo_dataset *ds, int64_t i, int k) {
    int64_t c = ds->c, h = ds->h, w = ds->w;
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                if (ds->images[((i * c + ch) * h + y) * w + x] != png_px(k, y, x, ch)) return 0;
    return 1;
}

TEST(data_src_folder_loads_sorted_and_split) {
    char dir[256], rgb[600], gray[600], spec[700];
    CHECK(src_tmp_dir(dir, sizeof dir));
    snprintf(rgb, sizeof rgb, "%s/rgb", dir);
    snprintf(gray, sizeof gray, "%s/gray", dir);
    int ok = mkdir(rgb, 0700) == 0 && mkdir(gray, 0700) == 0;
    /* 12 RGB images of height 3, width 4, written in reverse order of their names; image k is
     * img_<k>.png. Also a text file, an upper-case .PNG and a directory named like a PNG. */
    char name[64];
    for (int k = 11; k >= 0 && ok; k--) {
        snprintf(name, sizeof name, k == 5 ? "img_%02d.PNG" : "img_%02d.png", k);
        ok = png_write_k(rgb, name, k, 3, 4, 3);
    }
    char extra[700];
    snprintf(extra, sizeof extra, "%s/notes.txt", rgb);
    ok = ok && src_write(extra, "not an image", 12);
    snprintf(extra, sizeof extra, "%s/zz_dir.png", rgb);
    ok = ok && mkdir(extra, 0700) == 0;
    /* 10 gray images of height 2, width 5 */
    for (int k = 0; k < 10 && ok; k++) {
        snprintf(name, sizeof name, "g%d.png", k);
        ok = png_write_k(gray, name, 100 + k, 2, 5, 1);
    }
    elbo_dataset tr, te, gtr, gte;
    snprintf(spec, sizeof spec, "folder:%s", rgb);
    elbo_status s1 = load_spec(spec, ELBO_SPLIT_TRAIN, &tr);
    elbo_status s2 = load_spec(spec, ELBO_SPLIT_TEST, &te);
    elbo_status s3 = elbo_dataset_load_folder(gray, ELBO_SPLIT_TRAIN, &gtr);
    elbo_status s4 = elbo_dataset_load_folder(gray, ELBO_SPLIT_TEST, &gte);
    src_rm_tree(dir);
    CHECK(ok);
    CHECK(s1 == ELBO_OK && s2 == ELBO_OK && s3 == ELBO_OK && s4 == ELBO_OK);
    int good = tr.n == 11 && tr.c == 3 && tr.h == 3 && tr.w == 4 && tr.labels == NULL &&
               tr.num_classes == 0 && te.n == 1 && te.c == 3 && te.h == 3 && te.w == 4 &&
               te.labels == NULL;
    /* train: sorted images 0..8, 10, 11; test: image 9 */
    for (int64_t i = 0; good && i < 11; i++) good = png_matches(&tr, i, i < 9 ? (int)i : (int)i + 1);
    good = good && png_matches(&te, 0, 9);
    /* by hand: test image 9, green (channel 1) at row 2, column 3 */
    good = good && te.images[(1 * 3 + 2) * 4 + 3] == (uint8_t)(9 * 17 + 10 + 9 + 71 + 2);
    good = good && gtr.n == 9 && gtr.c == 1 && gtr.h == 2 && gtr.w == 5 && gte.n == 1 &&
           gte.c == 1 && gtr.labels == NULL;
    for (int64_t i = 0; good && i < 9; i++) good = png_matches(&gtr, i, 100 + (int)i);
    good = good && png_matches(&gte, 0, 109);
    elbo_dataset_free(&tr);
    elbo_dataset_free(&te);
    elbo_dataset_free(&gtr);
    elbo_dataset_free(&gte);
    CHECK(good);
}

TEST(data_src_folder_rejects_bad_input) {
    char dir[256], p[1100], name[64];
    CHECK(src_tmp_dir(dir, sizeof dir));
    /* missing directory */
    snprintf(g_dir, sizeof g_dir, "%s/none", dir);
    CHECK_REJECTS(folder_train, ELBO_ERR_IO, g_dir);
    snprintf(g_dir, sizeof g_dir, "folder:%s/none", dir);
    snprintf(p, sizeof p, "%s/none", dir);
    CHECK_REJECTS(spec_train, ELBO_ERR_IO, p);
    /* no PNGs: an empty directory, and one with only other files */
    snprintf(g_dir, sizeof g_dir, "%s/empty", dir);
    CHECK(mkdir(g_dir, 0700) == 0);
    CHECK_REJECTS(folder_train, ELBO_ERR_FORMAT, g_dir);
    snprintf(p, sizeof p, "%s/empty/a.jpg", dir);
    CHECK(src_write(p, "x", 1));
    CHECK_REJECTS(folder_test, ELBO_ERR_FORMAT, g_dir);
    CHECK(strstr(elbo_last_error(), "no .png"));
    /* two sizes: b.png is 4x5 after a.png's 4x4 */
    snprintf(g_dir, sizeof g_dir, "%s/sizes", dir);
    CHECK(mkdir(g_dir, 0700) == 0);
    CHECK(png_write_k(g_dir, "a.png", 0, 4, 4, 1) && png_write_k(g_dir, "b.png", 1, 4, 5, 1) &&
          png_write_k(g_dir, "c.png", 2, 4, 4, 1));
    snprintf(p, sizeof p, "%s/b.png", g_dir);
    CHECK_REJECTS(folder_train, ELBO_ERR_FORMAT, p);
    CHECK(strstr(elbo_last_error(), "width 5") && strstr(elbo_last_error(), "a.png"));
    CHECK_REJECTS(folder_test, ELBO_ERR_FORMAT, p); /* whichever split */
    /* gray and RGB mixed: c.png is RGB after gray a.png, b.png */
    snprintf(g_dir, sizeof g_dir, "%s/mixed", dir);
    CHECK(mkdir(g_dir, 0700) == 0);
    CHECK(png_write_k(g_dir, "a.png", 0, 4, 4, 1) && png_write_k(g_dir, "b.png", 1, 4, 4, 1) &&
          png_write_k(g_dir, "c.png", 2, 4, 4, 3));
    snprintf(p, sizeof p, "%s/c.png", g_dir);
    CHECK_REJECTS(folder_train, ELBO_ERR_FORMAT, p);
    CHECK(strstr(elbo_last_error(), "RGB") && strstr(elbo_last_error(), "gray"));
    /* a corrupt PNG among good ones: a valid file with its data cut short, and garbage */
    snprintf(g_dir, sizeof g_dir, "%s/corrupt", dir);
    CHECK(mkdir(g_dir, 0700) == 0);
    for (int k = 0; k < 12; k++) {
        snprintf(name, sizeof name, "i%02d.png", k);
        CHECK(png_write_k(g_dir, name, k, 8, 8, 3));
    }
    snprintf(p, sizeof p, "%s/i07.png", g_dir);
    static uint8_t buf[4096];
    FILE *f = fopen(p, "rb");
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f) fclose(f);
    CHECK(n > 60);
    CHECK(src_write(p, buf, n - 20));
    CHECK_REJECTS(folder_train, ELBO_ERR_FORMAT, p);
    CHECK_REJECTS(folder_test, ELBO_ERR_FORMAT, p);
    CHECK(src_write(p, "garbage, not a PNG", 18));
    CHECK_REJECTS(folder_train, ELBO_ERR_FORMAT, p);
    /* fewer than 10 images: the test split is empty */
    snprintf(g_dir, sizeof g_dir, "%s/sizes", dir);
    snprintf(p, sizeof p, "%s/b.png", g_dir);
    unlink(p);
    CHECK_REJECTS(folder_test, ELBO_ERR_FORMAT, g_dir);
    CHECK(strstr(elbo_last_error(), "test split"));
    elbo_dataset ds;
    CHECK(folder_train(&ds) == ELBO_OK);
    int ok = ds.n == 2 && ds.c == 1 && png_matches(&ds, 0, 0) && png_matches(&ds, 1, 2);
    elbo_dataset_free(&ds);
    src_rm_tree(dir);
    CHECK(ok);
}

/* ---- .npy arrays ---------------------------------------------------------------------- */
static uint8_t npy_px(int64_t i) { return (uint8_t)(i * 11 + i / 7 + 3); }

TEST(data_src_npy_layouts_and_labels) {
    char dir[256], f3[600], f4c[600], f4l[600], l64[600], l8[600], spec[1300];
    CHECK(src_tmp_dir(dir, sizeof dir));
    snprintf(f3, sizeof f3, "%s/nhw.npy", dir);
    snprintf(f4c, sizeof f4c, "%s/nchw.npy", dir);
    snprintf(f4l, sizeof f4l, "%s/nhwc.npy", dir);
    snprintf(l64, sizeof l64, "%s/l64.npy", dir);
    snprintf(l8, sizeof l8, "%s/l8.npy", dir);
    enum { N = 12, C = 3, H = 2, W = 5 };
    static uint8_t a[N * C * H * W];
    for (int i = 0; i < N * C * H * W; i++) a[i] = npy_px(i);
    const int64_t s3[3] = {N, H, W}, s4c[4] = {N, C, H, W}, s4l[4] = {N, H, W, C}, sl[1] = {N};
    int64_t lab64[N];
    uint8_t lab8[N];
    for (int i = 0; i < N; i++) lab64[i] = (i * 7) % 6, lab8[i] = (uint8_t)(i % 4);
    int ok = elbo_npy_write(f3, ELBO_NPY_U8, 3, s3, a) == ELBO_OK &&
             elbo_npy_write(f4c, ELBO_NPY_U8, 4, s4c, a) == ELBO_OK &&
             elbo_npy_write(f4l, ELBO_NPY_U8, 4, s4l, a) == ELBO_OK &&
             elbo_npy_write(l64, ELBO_NPY_I64, 1, sl, lab64) == ELBO_OK &&
             elbo_npy_write(l8, ELBO_NPY_U8, 1, sl, lab8) == ELBO_OK;
    elbo_dataset g, gt, c, ct, l, lt;
    snprintf(spec, sizeof spec, "npy:%s", f3);
    elbo_status s1 = load_spec(spec, ELBO_SPLIT_TRAIN, &g);
    elbo_status s2 = load_spec(spec, ELBO_SPLIT_TEST, &gt);
    snprintf(spec, sizeof spec, "npy:%s,%s", f4c, l64);
    elbo_status s3_ = load_spec(spec, ELBO_SPLIT_TRAIN, &c);
    elbo_status s4 = load_spec(spec, ELBO_SPLIT_TEST, &ct);
    snprintf(spec, sizeof spec, "npy:%s,%s", f4l, l8);
    elbo_status s5 = load_spec(spec, ELBO_SPLIT_TRAIN, &l);
    elbo_status s6 = load_spec(spec, ELBO_SPLIT_TEST, &lt);
    src_rm_tree(dir);
    CHECK(ok);
    CHECK(s1 == ELBO_OK && s2 == ELBO_OK && s3_ == ELBO_OK && s4 == ELBO_OK && s5 == ELBO_OK &&
          s6 == ELBO_OK);
    /* (N, H, W): gray, rows 0..8, 10, 11 train and row 9 test, unlabelled */
    int good = g.n == 11 && g.c == 1 && g.h == H && g.w == W && g.labels == NULL &&
               g.num_classes == 0 && gt.n == 1 && gt.c == 1 && gt.labels == NULL;
    for (int64_t k = 0; good && k < 11; k++) {
        int64_t i = k < 9 ? k : k + 1;
        for (int j = 0; j < H * W; j++) good = good && g.images[k * H * W + j] == npy_px(i * H * W + j);
    }
    for (int j = 0; good && j < H * W; j++) good = gt.images[j] == npy_px(9 * H * W + j);
    CHECK_MSG(good, "(N, H, W) contents");
    /* (N, C, H, W): as is; int64 labels, 6 classes (largest label 5) */
    good = c.n == 11 && c.c == C && c.h == H && c.w == W && c.num_classes == 6 && ct.n == 1 &&
           ct.num_classes == 6 && ct.labels[0] == (9 * 7) % 6;
    for (int64_t k = 0; good && k < 11; k++) {
        int64_t i = k < 9 ? k : k + 1;
        good = c.labels[k] == (i * 7) % 6;
        for (int j = 0; j < C * H * W; j++)
            good = good && c.images[k * C * H * W + j] == npy_px(i * C * H * W + j);
    }
    for (int j = 0; good && j < C * H * W; j++) good = ct.images[j] == npy_px(9 * C * H * W + j);
    CHECK_MSG(good, "(N, C, H, W) contents");
    /* (N, H, W, C): transposed, element (i, ch, y, x) = file element (i, y, x, ch); uint8
     * labels, 4 classes */
    good = l.n == 11 && l.c == C && l.h == H && l.w == W && l.num_classes == 4 && lt.n == 1 &&
           lt.c == C && lt.labels[0] == 1;
    for (int64_t k = 0; good && k < 11; k++) {
        int64_t i = k < 9 ? k : k + 1;
        good = l.labels[k] == i % 4;
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < H; y++)
                for (int x = 0; x < W; x++)
                    good = good && l.images[((k * C + ch) * H + y) * W + x] ==
                                       npy_px(((i * H + y) * W + x) * C + ch);
    }
    /* by hand: test image (row 9), channel 2, row 1, column 4 = file byte 9*30 + (1*5+4)*3 + 2 */
    good = good && lt.images[(2 * H + 1) * W + 4] == npy_px(270 + 27 + 2);
    CHECK_MSG(good, "(N, H, W, C) contents");
    elbo_dataset_free(&g);
    elbo_dataset_free(&gt);
    elbo_dataset_free(&c);
    elbo_dataset_free(&ct);
    elbo_dataset_free(&l);
    elbo_dataset_free(&lt);
}

static char g_img[900], g_lab[900];
static elbo_status npy_train(elbo_dataset *ds) {
    return elbo_dataset_load_npy(g_img, g_lab[0] ? g_lab : NULL, ELBO_SPLIT_TRAIN, ds);
}
static elbo_status npy_test(elbo_dataset *ds) {
    return elbo_dataset_load_npy(g_img, g_lab[0] ? g_lab : NULL, ELBO_SPLIT_TEST, ds);
}

TEST(data_src_npy_rejects_bad_input) {
    char dir[256];
    CHECK(src_tmp_dir(dir, sizeof dir));
    static uint8_t a[20 * 4 * 4 * 3];
    static float fa[20 * 16];
    for (size_t i = 0; i < sizeof a; i++) a[i] = (uint8_t)i;
    g_lab[0] = 0;
    /* missing file */
    snprintf(g_img, sizeof g_img, "%s/none.npy", dir);
    CHECK_REJECTS(npy_train, ELBO_ERR_IO, g_img);
    snprintf(g_dir, sizeof g_dir, "npy:%s", g_img);
    CHECK_REJECTS(spec_train, ELBO_ERR_IO, g_img);
    /* wrong dtype: float32 and int64 images */
    snprintf(g_img, sizeof g_img, "%s/f32.npy", dir);
    const int64_t s3[3] = {20, 4, 4};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_F32, 3, s3, fa) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    CHECK(strstr(elbo_last_error(), "float32"));
    snprintf(g_img, sizeof g_img, "%s/i64.npy", dir);
    const int64_t s2[2] = {20, 16};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_I64, 1, s2, fa) == ELBO_OK); /* (20,) int64 */
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    /* wrong ndim: 2, 5 */
    snprintf(g_img, sizeof g_img, "%s/two.npy", dir);
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 2, s2, a) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    CHECK(strstr(elbo_last_error(), "(20, 16)"));
    snprintf(g_img, sizeof g_img, "%s/five.npy", dir);
    const int64_t s5[5] = {20, 1, 4, 4, 3};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 5, s5, a) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    /* 4-d with neither axis 1 nor axis 3 of size 1 or 3 */
    snprintf(g_img, sizeof g_img, "%s/c4.npy", dir);
    const int64_t s4[4] = {20, 4, 3, 4};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 4, s4, a) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    /* an empty axis, and too few images for a test split */
    snprintf(g_img, sizeof g_img, "%s/empty.npy", dir);
    const int64_t s0[3] = {0, 4, 4};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 3, s0, a) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_img);
    snprintf(g_img, sizeof g_img, "%s/few.npy", dir);
    const int64_t s9[3] = {9, 4, 4};
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 3, s9, a) == ELBO_OK);
    CHECK_REJECTS(npy_test, ELBO_ERR_FORMAT, g_img);
    CHECK(strstr(elbo_last_error(), "test split"));
    /* a good image file with bad labels */
    snprintf(g_img, sizeof g_img, "%s/img.npy", dir);
    CHECK(elbo_npy_write(g_img, ELBO_NPY_U8, 3, s3, a) == ELBO_OK);
    snprintf(g_lab, sizeof g_lab, "%s/no-labels.npy", dir);
    CHECK_REJECTS(npy_train, ELBO_ERR_IO, g_lab);
    int64_t lab[21];
    for (int i = 0; i < 21; i++) lab[i] = i % 10;
    const int64_t n19[1] = {19}, n21[1] = {21}, n20[1] = {20}, m2[2] = {20, 1};
    snprintf(g_lab, sizeof g_lab, "%s/short.npy", dir);
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_I64, 1, n19, lab) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_lab);
    CHECK(strstr(elbo_last_error(), "19 labels for 20 images"));
    snprintf(g_lab, sizeof g_lab, "%s/long.npy", dir);
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_U8, 1, n21, a) == ELBO_OK);
    CHECK_REJECTS(npy_test, ELBO_ERR_FORMAT, g_lab);
    snprintf(g_lab, sizeof g_lab, "%s/f32.npy", dir);
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_F32, 1, n20, fa) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_lab);
    snprintf(g_lab, sizeof g_lab, "%s/2d.npy", dir);
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_I64, 2, m2, lab) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_lab);
    /* labels out of range: -1 and ELBO_DATA_MAX_CLASSES */
    snprintf(g_lab, sizeof g_lab, "%s/neg.npy", dir);
    lab[13] = -1;
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_I64, 1, n20, lab) == ELBO_OK);
    CHECK_REJECTS(npy_train, ELBO_ERR_FORMAT, g_lab);
    CHECK(strstr(elbo_last_error(), "label -1 of item 13"));
    snprintf(g_lab, sizeof g_lab, "%s/big.npy", dir);
    lab[13] = ELBO_DATA_MAX_CLASSES;
    CHECK(elbo_npy_write(g_lab, ELBO_NPY_I64, 1, n20, lab) == ELBO_OK);
    CHECK_REJECTS(npy_test, ELBO_ERR_FORMAT, g_lab);
    /* the largest label is fine: 1000 classes */
    lab[13] = ELBO_DATA_MAX_CLASSES - 1;
    elbo_dataset ds;
    int ok = elbo_npy_write(g_lab, ELBO_NPY_I64, 1, n20, lab) == ELBO_OK && npy_train(&ds) == ELBO_OK;
    ok = ok && ds.n == 18 && ds.num_classes == ELBO_DATA_MAX_CLASSES && ds.labels[12] == 999 &&
         ds.labels[9] == 0 && ds.images[9 * 16] == (uint8_t)(10 * 16);
    elbo_dataset_free(&ds);
    g_lab[0] = 0;
    src_rm_tree(dir);
    CHECK(ok);
}
