/* Data: IDX files (raw and gzip), the Fashion-MNIST sets, malformed inputs, dataset specs,
 * shuffling, pixel transforms and the toy 2-D distributions. */
#include "test.h"

#include "elbo/data.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- helpers: a scratch directory and IDX bytes written by hand ----------------------- */
static int make_tmp_dir(char *buf, size_t len) {
    const char *t = getenv("TMPDIR");
    snprintf(buf, len, "%s/elbo-test-data-XXXXXX", t && *t ? t : "/tmp");
    return mkdtemp(buf) != NULL;
}

static void remove_tmp_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = fwrite(b, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static int write_gz(const char *path, const void *b, size_t n) {
    gzFile g = gzopen(path, "wb");
    if (!g) return 0;
    int w = n ? gzwrite(g, b, (unsigned)n) : 0;
    return gzclose(g) == Z_OK && (size_t)w == n;
}

/* The bytes of an IDX file: 0, 0, type, ndim, big-endian dims, then ndata bytes of data. */
static size_t make_idx(uint8_t *buf, uint8_t type, int ndim, const uint32_t *dims,
                       const uint8_t *data, size_t ndata) {
    size_t p = 0;
    buf[p++] = 0;
    buf[p++] = 0;
    buf[p++] = type;
    buf[p++] = (uint8_t)ndim;
    for (int d = 0; d < ndim; d++) {
        buf[p++] = (uint8_t)(dims[d] >> 24);
        buf[p++] = (uint8_t)(dims[d] >> 16);
        buf[p++] = (uint8_t)(dims[d] >> 8);
        buf[p++] = (uint8_t)dims[d];
    }
    memcpy(buf + p, data, ndata);
    return p + ndata;
}

static int error_names(const char *path) { return strstr(elbo_last_error(), path) != NULL; }

/* ---- IDX files ------------------------------------------------------------------------ */
TEST(data_idx_raw_and_gzip_read_back_exactly) {
    char dir[512], raw[600], gz[600];
    CHECK(make_tmp_dir(dir, sizeof dir));
    static uint8_t data[3 * 5 * 7], buf[4096];
    for (int i = 0; i < 3 * 5 * 7; i++) data[i] = (uint8_t)(i * 37 + 11);
    const uint32_t dims[3] = {3, 5, 7};
    size_t n = make_idx(buf, 0x08, 3, dims, data, sizeof data);
    snprintf(raw, sizeof raw, "%s/a-idx3-ubyte", dir);
    snprintf(gz, sizeof gz, "%s/a-idx3-ubyte.gz", dir);
    int ok = write_bytes(raw, buf, n) && write_gz(gz, buf, n);
    /* a 1-D and a 4-D file too */
    const uint32_t d1[1] = {5}, d4[4] = {2, 1, 3, 2};
    char one[600], four[600];
    snprintf(one, sizeof one, "%s/b", dir);
    snprintf(four, sizeof four, "%s/c.gz", dir);
    ok = ok && write_bytes(one, buf, make_idx(buf, 0x08, 1, d1, data, 5));
    ok = ok && write_gz(four, buf, make_idx(buf, 0x08, 4, d4, data, 12));
    elbo_idx a, b, c, d;
    elbo_status sa = elbo_idx_read(raw, &a), sb = elbo_idx_read(gz, &b);
    elbo_status sc = elbo_idx_read(one, &c), sd = elbo_idx_read(four, &d);
    remove_tmp_dir(dir);
    CHECK(ok);
    CHECK(sa == ELBO_OK && sb == ELBO_OK && sc == ELBO_OK && sd == ELBO_OK);
    int same = a.ndim == 3 && b.ndim == 3 && a.numel == 105 && b.numel == 105 &&
               memcmp(a.data, data, 105) == 0 && memcmp(b.data, data, 105) == 0;
    for (int k = 0; k < 3; k++) same = same && a.dims[k] == dims[k] && b.dims[k] == dims[k];
    same = same && c.ndim == 1 && c.dims[0] == 5 && memcmp(c.data, data, 5) == 0;
    same = same && d.ndim == 4 && d.numel == 12 && d.dims[2] == 3 && memcmp(d.data, data, 12) == 0;
    elbo_idx_free(&a);
    elbo_idx_free(&b);
    elbo_idx_free(&c);
    elbo_idx_free(&d);
    CHECK(same);
    CHECK(a.data == NULL); /* freed and cleared */
}

/* Every malformed input: the right status, a message naming the file, nothing allocated. */
TEST(data_idx_rejects_malformed_files) {
    char dir[512];
    CHECK(make_tmp_dir(dir, sizeof dir));
    static uint8_t data[64], buf[4096], gzbuf[8192];
    for (int i = 0; i < 64; i++) data[i] = (uint8_t)(255 - 3 * i);
    const uint32_t dims[3] = {4, 4, 4}, big[4] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 16};
    const uint32_t zero[2] = {4, 0}, five[5] = {1, 1, 1, 1, 1}, large[2] = {65536, 65536};
    struct {
        const char *name;
        elbo_status want;
        size_t len;
        uint8_t bytes[256];
        int gz;
    } cases[16];
    int nc = 0;
#define ADD(nm, st, gzip)                                                                          \
    (cases[nc].name = nm, cases[nc].want = st, cases[nc].gz = gzip, &cases[nc++])
    size_t n;
    ADD("empty", ELBO_ERR_FORMAT, 0)->len = 0;
    n = make_idx(buf, 0x08, 3, dims, data, 64);
    buf[0] = 0x12;
    memcpy(ADD("bad-magic", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x0D, 3, dims, data, 64); /* 0x0D: float32 */
    memcpy(ADD("type-float", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 0, dims, data, 0);
    memcpy(ADD("zero-dims", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 5, five, data, 1);
    memcpy(ADD("five-dims", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 2, zero, data, 0);
    memcpy(ADD("zero-dim", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 4, big, data, 64); /* the product overflows 64 bits */
    memcpy(ADD("dims-overflow", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 2, large, data, 64); /* 4 GiB: above the limit */
    memcpy(ADD("dims-too-large", ELBO_ERR_FORMAT, 1)->bytes, buf, n), cases[nc - 1].len = n;
    n = make_idx(buf, 0x08, 3, dims, data, 63);
    memcpy(ADD("truncated", ELBO_ERR_FORMAT, 0)->bytes, buf, n), cases[nc - 1].len = n;
    memcpy(ADD("truncated.gz", ELBO_ERR_FORMAT, 1)->bytes, buf, n), cases[nc - 1].len = n;
    memcpy(ADD("header-cut", ELBO_ERR_FORMAT, 0)->bytes, buf, 9), cases[nc - 1].len = 9;
    n = make_idx(buf, 0x08, 3, dims, data, 64);
    buf[n] = 7;
    memcpy(ADD("trailing", ELBO_ERR_FORMAT, 0)->bytes, buf, n + 1), cases[nc - 1].len = n + 1;
#undef ADD
    int ok = 1;
    char path[16][600];
    for (int i = 0; i < nc; i++) {
        snprintf(path[i], sizeof path[i], "%s/%s", dir, cases[i].name);
        ok = ok && (cases[i].gz ? write_gz(path[i], cases[i].bytes, cases[i].len)
                                : write_bytes(path[i], cases[i].bytes, cases[i].len));
    }
    /* A corrupt gzip stream: a valid file with bytes in the middle of its deflate data
     * flipped (whatever they decode to, the stream or its CRC-32 check fails). */
    char corrupt[600], cut[600];
    snprintf(corrupt, sizeof corrupt, "%s/corrupt.gz", dir);
    snprintf(cut, sizeof cut, "%s/cut.gz", dir);
    n = make_idx(buf, 0x08, 3, dims, data, 64);
    ok = ok && write_gz(corrupt, buf, n);
    FILE *f = fopen(corrupt, "rb");
    size_t gn = f ? fread(gzbuf, 1, sizeof gzbuf, f) : 0;
    if (f) fclose(f);
    ok = ok && gn > 40;
    for (size_t k = gn / 2 - 4; k < gn / 2 + 4; k++) gzbuf[k] ^= 0x55;
    ok = ok && write_bytes(corrupt, gzbuf, gn);
    for (size_t k = gn / 2 - 4; k < gn / 2 + 4; k++) gzbuf[k] ^= 0x55;
    ok = ok && write_bytes(cut, gzbuf, gn - 12); /* a valid stream cut before its end */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-file", dir);

    int failures = 0;
    char report[512] = "";
    for (int i = 0; i < nc + 4 && ok; i++) {
        const char *p = i < nc        ? path[i]
                        : i == nc     ? corrupt
                        : i == nc + 1 ? cut
                        : i == nc + 2 ? missing
                                      : dir;
        elbo_status want = i < nc ? cases[i].want : i < nc + 2 ? ELBO_ERR_FORMAT : ELBO_ERR_IO;
        elbo_idx x;
        elbo_clear_error();
        elbo_status st = elbo_idx_read(p, &x);
        int line = strchr(elbo_last_error(), '\n') == NULL;
        if (st != want || !error_names(p) || !line || x.data != NULL ||
            elbo_last_status() != want) {
            failures++;
            snprintf(report, sizeof report, "%.200s: status %d (want %d), message '%.250s'", p, st,
                     want, elbo_last_error());
            elbo_idx_free(&x);
        }
    }
    remove_tmp_dir(dir);
    CHECK(ok);
    CHECK_MSG(failures == 0, "%d malformed inputs not rejected right; last: %s", failures, report);
}

/* ---- datasets ------------------------------------------------------------------------- */
/* A small dataset of 4 images of 2 x 3 with labels 3, 1, 4, 1, written as IDX files. */
static int write_small_set(const char *dir, const char *images_name, int images_gz,
                           const char *labels_name, int n_labels, uint8_t bad_label,
                           int image_ndim) {
    uint8_t buf[256], px[24], lb[5] = {3, 1, 4, 1, 5};
    for (int i = 0; i < 24; i++) px[i] = (uint8_t)(i * 11);
    if (bad_label) lb[2] = bad_label;
    const uint32_t d3[3] = {4, 2, 3}, d2[2] = {4, 6}, dl[1] = {(uint32_t)n_labels};
    char p[600];
    size_t n = image_ndim == 3 ? make_idx(buf, 8, 3, d3, px, 24) : make_idx(buf, 8, 2, d2, px, 24);
    snprintf(p, sizeof p, "%s/%s", dir, images_name);
    int ok = images_gz ? write_gz(p, buf, n) : write_bytes(p, buf, n);
    n = make_idx(buf, 8, 1, dl, lb, (size_t)n_labels);
    snprintf(p, sizeof p, "%s/%s", dir, labels_name);
    return ok && write_bytes(p, buf, n);
}

TEST(data_dataset_from_dir_with_and_without_gz) {
    char dir[512], ip[600], lp[600];
    CHECK(make_tmp_dir(dir, sizeof dir));
    int ok =
        write_small_set(dir, "train-images-idx3-ubyte.gz", 1, "train-labels-idx1-ubyte", 4, 0, 3);
    elbo_dataset ds;
    elbo_status st = elbo_dataset_load_idx_dir(dir, ELBO_SPLIT_TRAIN, &ds);
    /* the test split is absent: an I/O error naming the file looked for */
    elbo_dataset none;
    elbo_status st_test = elbo_dataset_load_idx_dir(dir, ELBO_SPLIT_TEST, &none);
    snprintf(ip, sizeof ip, "%s/t10k-images-idx3-ubyte", dir);
    int named = error_names(ip);
    /* count mismatch, a label of 10 and 2-D images, each naming the offending file */
    ok = ok && write_small_set(dir, "m-images", 0, "m-labels", 5, 0, 3);
    ok = ok && write_small_set(dir, "l-images", 0, "l-labels", 4, 10, 3);
    ok = ok && write_small_set(dir, "d-images", 0, "d-labels", 4, 0, 2);
    elbo_dataset bad;
    int bad_ok = 1;
    const char *names[3][2] = {
        {"m-images", "m-labels"}, {"l-images", "l-labels"}, {"d-images", "d-labels"}};
    for (int k = 0; k < 3; k++) {
        snprintf(ip, sizeof ip, "%s/%s", dir, names[k][0]);
        snprintf(lp, sizeof lp, "%s/%s", dir, names[k][1]);
        elbo_status s = elbo_dataset_load_idx(ip, lp, &bad);
        bad_ok = bad_ok && s == ELBO_ERR_FORMAT && bad.images == NULL && bad.labels == NULL &&
                 error_names(k == 2 ? ip : lp);
    }
    remove_tmp_dir(dir);
    CHECK(ok);
    CHECK(st == ELBO_OK);
    int good = ds.n == 4 && ds.c == 1 && ds.h == 2 && ds.w == 3 && ds.num_classes == 10 &&
               ds.labels[0] == 3 && ds.labels[1] == 1 && ds.labels[2] == 4 && ds.labels[3] == 1;
    for (int i = 0; i < 24; i++) good = good && ds.images[i] == (uint8_t)(i * 11);
    /* a batch: images 2 and 0 scaled to [0, 1], with their labels; a bad index is refused */
    int64_t idx[2] = {2, 0}, oob[1] = {4};
    float x[12];
    int32_t y[2];
    elbo_status sb = elbo_dataset_batch(&ds, idx, 2, ELBO_PIXELS_SCALE01, 0, NULL, x, y);
    for (int j = 0; j < 6; j++)
        good =
            good && x[j] == (float)((12 + j) * 11) / 255.0f && x[6 + j] == (float)(j * 11) / 255.0f;
    good = good && y[0] == 4 && y[1] == 3;
    elbo_status so = elbo_dataset_batch(&ds, oob, 1, ELBO_PIXELS_SCALE01, 0, NULL, x, y);
    elbo_dataset_free(&ds);
    CHECK(good && sb == ELBO_OK);
    CHECK(so == ELBO_ERR_ARG);
    CHECK(st_test == ELBO_ERR_IO && named);
    CHECK(bad_ok);
}

static void label_histogram(const elbo_dataset *ds, int64_t hist[10]) {
    for (int k = 0; k < 10; k++) hist[k] = 0;
    for (int64_t i = 0; i < ds->n; i++) hist[ds->labels[i]]++;
}

/* Debian's dataset-fashion-mnist: 60000 training and 10000 test images of 28 x 28, 6000 /
 * 1000 of each of the 10 classes. Skipped (with a note) where the package is absent. */
TEST(data_fashion_mnist_train_and_test_sets) {
    struct stat sb;
    if (stat(ELBO_FASHION_MNIST_DIR, &sb) != 0) {
        printf("    note: %s is absent (Debian package dataset-fashion-mnist): skipped\n",
               ELBO_FASHION_MNIST_DIR);
        return;
    }
    elbo_data_spec spec;
    CHECK(elbo_data_spec_parse("fashion-mnist", &spec) == ELBO_OK);
    elbo_dataset tr, te;
    CHECK(elbo_dataset_load(&spec, ELBO_SPLIT_TRAIN, &tr) == ELBO_OK);
    if (elbo_dataset_load(&spec, ELBO_SPLIT_TEST, &te) != ELBO_OK) {
        elbo_dataset_free(&tr);
        CHECK(!"test split loads");
    }
    int64_t ht[10], he[10];
    label_histogram(&tr, ht);
    label_histogram(&te, he);
    /* mean pixel of the training set: 0.2860 of 255 (the usual normalisation constant) */
    double sum = 0;
    int maxpx = 0;
    for (int64_t i = 0; i < tr.n * 784; i++) {
        sum += tr.images[i];
        if (tr.images[i] > maxpx) maxpx = tr.images[i];
    }
    double mean = sum / ((double)tr.n * 784 * 255);
    int shapes = tr.n == 60000 && tr.c == 1 && tr.h == 28 && tr.w == 28 && te.n == 10000 &&
                 te.c == 1 && te.h == 28 && te.w == 28 && tr.num_classes == 10;
    elbo_dataset_free(&tr);
    elbo_dataset_free(&te);
    CHECK(shapes);
    for (int k = 0; k < 10; k++)
        CHECK_MSG(ht[k] == 6000 && he[k] == 1000, "class %d: %lld / %lld", k, (long long)ht[k],
                  (long long)he[k]);
    CHECK(maxpx == 255);
    CHECK_NEAR(mean, 0.2860, 0.0005);
}

TEST(data_spec_parse_forms_and_errors) {
    elbo_data_spec s;
    CHECK(elbo_data_spec_parse("fashion-mnist", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_IDX && strcmp(s.dir, ELBO_FASHION_MNIST_DIR) == 0 &&
          strcmp(s.name, "fashion-mnist") == 0);
    CHECK(elbo_data_spec_parse("fashion-mnist:/data/fm", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_IDX && strcmp(s.dir, "/data/fm") == 0);
    CHECK(elbo_data_spec_parse("mnist:rel/dir", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_IDX && strcmp(s.dir, "rel/dir") == 0 && strcmp(s.name, "mnist") == 0);
    CHECK(elbo_data_spec_parse("toy:8gaussians", &s) == ELBO_OK);
    CHECK(s.kind == ELBO_DATA_TOY && s.toy == ELBO_TOY_8GAUSSIANS);
    CHECK(elbo_data_spec_parse("toy:2spirals", &s) == ELBO_OK && s.toy == ELBO_TOY_SPIRALS);
    elbo_dataset ds;
    CHECK(elbo_dataset_load(&s, ELBO_SPLIT_TRAIN, &ds) == ELBO_ERR_ARG && ds.images == NULL);
    /* unknown specs name themselves and list the valid forms */
    const char *bad[] = {"cifar10", "", "mnist", "fashion-mnist:", "toy:rings", "Toy:moons"};
    for (int i = 0; i < 6; i++) {
        elbo_status st = elbo_data_spec_parse(bad[i], &s);
        CHECK_MSG(st == ELBO_ERR_ARG, "'%s' gave %d", bad[i], st);
        char quoted[64];
        snprintf(quoted, sizeof quoted, "'%s'", bad[i]);
        CHECK_MSG(strstr(elbo_last_error(), quoted), "'%s': %s", bad[i], elbo_last_error());
    }
    CHECK(elbo_data_spec_parse("cifar10", &s) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "fashion-mnist:DIR") &&
          strstr(elbo_last_error(), "mnist:DIR") && strstr(elbo_last_error(), "toy:NAME"));
    CHECK(elbo_data_spec_parse("toy:rings", &s) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "checkerboard") && strstr(elbo_last_error(), "pinwheel"));
    elbo_data_split sp;
    CHECK(elbo_data_split_parse("test", &sp) == ELBO_OK && sp == ELBO_SPLIT_TEST);
    CHECK(elbo_data_split_parse("valid", &sp) == ELBO_ERR_ARG &&
          strstr(elbo_last_error(), "valid"));
}

/* ---- shuffling ------------------------------------------------------------------------ */
TEST(data_shuffle_is_a_seeded_permutation) {
    enum { N = 1000 };
    static int64_t a[N], b[N], c[N], d[N];
    static char seen[N];
    elbo_rng r;
    elbo_rng_init(&r, 5);
    CHECK(elbo_shuffle(&r, a, N) == ELBO_OK);
    CHECK(r.offset == N - 1); /* one draw per swap */
    int saved = elbo_get_threads();
    elbo_set_threads(saved > 1 ? 1 : 2);
    elbo_rng_init(&r, 5);
    elbo_shuffle(&r, b, N);
    elbo_set_threads(saved);
    elbo_rng_init(&r, 6);
    elbo_shuffle(&r, c, N);
    int fixed = 0, same_c = 0;
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < N; i++) {
        CHECK(a[i] >= 0 && a[i] < N && !seen[a[i]]);
        seen[a[i]] = 1;
        fixed += a[i] == i;
        same_c += a[i] == c[i];
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    /* a random permutation has ~Poisson(1) fixed points, and agrees with another at ~1 place */
    CHECK(fixed < 10 && same_c < 10);
    /* uniform over the 6 permutations of 3: each with frequency 1/6 within 5 standard errors */
    enum { M = 60000 };
    int count[6] = {0};
    elbo_rng_init(&r, 99);
    for (int t = 0; t < M; t++) {
        elbo_shuffle(&r, d, 3);
        count[d[0] * 2 + (d[1] > d[2])]++;
    }
    for (int k = 0; k < 6; k++)
        CHECK_NEAR(count[k] / (double)M, 1.0 / 6, 5 * sqrt((1.0 / 6) * (5.0 / 6) / M));
    CHECK(elbo_shuffle(&r, d, -1) == ELBO_ERR_ARG);
}

/* ---- pixel transforms ----------------------------------------------------------------- */
TEST(data_transform_scaling_endpoints_exact) {
    uint8_t x[256];
    float y[256], z[256];
    for (int i = 0; i < 256; i++) x[i] = (uint8_t)i;
    elbo_pixels_scale01(x, 256, y);
    elbo_pixels_scale11(x, 256, z);
    CHECK(y[0] == 0.0f && y[255] == 1.0f);
    CHECK(z[0] == -1.0f && z[255] == 1.0f);
    for (int i = 0; i < 256; i++) {
        CHECK_NEAR(y[i], i / 255.0, 1e-7);
        CHECK_NEAR(z[i], 2.0 * i / 255.0 - 1.0, 2e-7);
        CHECK(z[i] == -z[255 - i]); /* symmetric about 127.5 */
        if (i) CHECK(y[i] > y[i - 1] && z[i] > z[i - 1]);
    }
    /* static binarization: threshold 0.5, i.e. 127 -> 0 and 128 -> 1, no randomness */
    elbo_pixels_binarize_static(x, 256, y);
    for (int i = 0; i < 256; i++) CHECK(y[i] == (i >= 128 ? 1.0f : 0.0f));
}

TEST(data_transform_dequantize_inside_its_bin) {
    enum { N = 256 * 400 };
    static uint8_t x[N];
    static float y[N], y2[N], y3[N];
    for (int i = 0; i < N; i++) x[i] = (uint8_t)(i % 256);
    elbo_rng r;
    int saved = elbo_get_threads();
    elbo_set_threads(1);
    elbo_rng_init(&r, 3);
    elbo_pixels_dequantize(&r, x, N, y);
    CHECK(r.offset == N / 4);
    elbo_set_threads(2);
    elbo_rng_init(&r, 3);
    elbo_pixels_dequantize(&r, x, N, y2);
    elbo_set_threads(saved);
    CHECK(memcmp(y, y2, sizeof y) == 0);
    elbo_rng_init(&r, 4);
    elbo_pixels_dequantize(&r, x, N, y3);
    CHECK(memcmp(y, y3, sizeof y) != 0);
    double m = 0;
    for (int i = 0; i < N; i++) {
        CHECK_MSG(y[i] >= x[i] / 256.0f && y[i] < (x[i] + 1) / 256.0f, "x %d -> %.9g", x[i], y[i]);
        m += 256.0 * y[i] - x[i];
    }
    m /= N;
    /* u = 256 y - x ~ U[0, 1): mean 1/2 within 5 standard errors (sd 1/sqrt(12)) */
    CHECK_NEAR(m, 0.5, 5.0 / sqrt(12.0 * N));
}

TEST(data_transform_dynamic_binarization_mean) {
    enum { M = 20000 };
    static uint8_t x[M];
    static float y[M], y2[M];
    const int pixels[] = {0, 1, 64, 128, 200, 254, 255};
    elbo_rng r;
    elbo_rng_init(&r, 11);
    for (int p = 0; p < 7; p++) {
        memset(x, pixels[p], sizeof x);
        elbo_pixels_binarize_dynamic(&r, x, M, y);
        elbo_pixels_binarize_dynamic(&r, x, M, y2); /* a fresh draw */
        double q = pixels[p] / 255.0, m = 0;
        int differ = 0;
        for (int i = 0; i < M; i++) {
            CHECK(y[i] == 0.0f || y[i] == 1.0f);
            m += y[i];
            differ += y[i] != y2[i];
        }
        m /= M;
        /* Binomial: mean q, standard deviation sqrt(q (1 - q) / M); 5 of them (0 at the ends) */
        CHECK_NEAR(m, q, 5 * sqrt(q * (1 - q) / M));
        if (pixels[p] > 0 && pixels[p] < 255) CHECK(differ > 0);
    }
}

TEST(data_transform_hflip_half_the_images) {
    enum { B = 4000, C = 2, H = 2, W = 3 };
    static float x[B * C * H * W];
    for (int i = 0; i < B * C * H * W; i++) x[i] = (float)(i % (C * H * W));
    elbo_rng r;
    elbo_rng_init(&r, 8);
    elbo_images_hflip(&r, x, B, C, H, W);
    CHECK(r.offset == B / 4);
    int flipped = 0;
    for (int b = 0; b < B; b++) {
        const float *img = x + b * C * H * W;
        int is_orig = 1, is_flip = 1;
        for (int row = 0; row < C * H; row++)
            for (int w = 0; w < W; w++) {
                is_orig = is_orig && img[row * W + w] == (float)(row * W + w);
                is_flip = is_flip && img[row * W + w] == (float)(row * W + (W - 1 - w));
            }
        CHECK(is_orig || is_flip);
        flipped += is_flip;
    }
    /* Bernoulli(1/2) per image: B/2 within 5 sqrt(B/4) */
    CHECK_NEAR(flipped, B / 2.0, 5 * sqrt(B / 4.0));
}

/* A batch's draws are those of the gathered uint8 batch transformed at once, whether the
 * image size is a multiple of 4 (images align with counters) or not. */
TEST(data_batch_draws_match_the_gathered_batch) {
    for (int shape = 0; shape < 2; shape++) {
        int64_t h = 2, w = shape ? 3 : 2, chw = h * w, n = 7, b = 5;
        uint8_t img[7 * 6], gathered[5 * 6];
        int32_t lab[7];
        for (int i = 0; i < n * chw; i++) img[i] = (uint8_t)(i * 29 + 5);
        for (int i = 0; i < n; i++) lab[i] = i % 10;
        elbo_dataset ds = {.n = n, .c = 1, .h = h, .w = w, .images = img, .labels = lab, .num_classes = 10};
        int64_t idx[5] = {6, 0, 3, 3, 1};
        for (int k = 0; k < b; k++) memcpy(gathered + k * chw, img + idx[k] * chw, (size_t)chw);
        for (int t = 0; t < 2; t++) {
            float xb[30], xr[30];
            int32_t yb[5];
            elbo_rng r1, r2;
            elbo_rng_init(&r1, 21);
            elbo_rng_init(&r2, 21);
            elbo_pixel_transform tf = t ? ELBO_PIXELS_BINARIZE : ELBO_PIXELS_DEQUANTIZE;
            CHECK(elbo_dataset_batch(&ds, idx, b, tf, 1, &r1, xb, yb) == ELBO_OK);
            if (t)
                elbo_pixels_binarize_dynamic(&r2, gathered, b * chw, xr);
            else
                elbo_pixels_dequantize(&r2, gathered, b * chw, xr);
            elbo_images_hflip(&r2, xr, b, 1, h, w);
            CHECK(r1.offset == r2.offset);
            CHECK_MSG(memcmp(xb, xr, (size_t)(b * chw) * sizeof(float)) == 0, "shape %d, tf %d",
                      shape, t);
            for (int k = 0; k < b; k++) CHECK(yb[k] == lab[idx[k]]);
        }
    }
}

/* ---- toy 2-D distributions ------------------------------------------------------------ */
static float *toy_draw(elbo_toy_kind kind, uint64_t seed, int64_t n) {
    float *x = malloc((size_t)n * 2 * sizeof(float));
    elbo_rng r;
    elbo_rng_init(&r, seed);
    if (x && elbo_toy_sample(kind, &r, x, n) != ELBO_OK) {
        free(x);
        return NULL;
    }
    return x;
}

TEST(data_toy_deterministic_and_finite) {
    enum { N = 20000 };
    int saved = elbo_get_threads();
    for (int k = 0; k < ELBO_TOY_COUNT; k++) {
        elbo_toy_kind kind = (elbo_toy_kind)k, parsed;
        CHECK(elbo_toy_parse(elbo_toy_name(kind), &parsed) == ELBO_OK && parsed == kind);
        elbo_set_threads(1);
        float *a = toy_draw(kind, 1, N);
        elbo_set_threads(2);
        float *b = toy_draw(kind, 1, N);
        elbo_set_threads(saved);
        float *c = toy_draw(kind, 2, N);
        int ok = a && b && c;
        int same = ok && memcmp(a, b, N * 2 * sizeof(float)) == 0;
        int differ = ok && memcmp(a, c, N * 2 * sizeof(float)) != 0;
        int finite = ok;
        for (int i = 0; ok && i < 2 * N; i++) finite = finite && isfinite(a[i]) && fabsf(a[i]) < 20;
        free(a);
        free(b);
        free(c);
        CHECK_MSG(ok && same && differ && finite, "%s: same %d differ %d finite %d",
                  elbo_toy_name(kind), same, differ, finite);
    }
    elbo_toy_kind k;
    CHECK(elbo_toy_parse("rings", &k) == ELBO_ERR_ARG && strstr(elbo_last_error(), "rings"));
    elbo_rng r;
    elbo_rng_init(&r, 0);
    float one[2];
    CHECK(elbo_toy_sample(ELBO_TOY_COUNT, &r, one, 1) == ELBO_ERR_ARG);
}

/* Sample mean and its standard error of f over the points. */
typedef double (*point_fn)(const float *p);
static void mean_se(const float *x, int64_t n, point_fn f, double *mean, double *se) {
    double s = 0, ss = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = f(x + 2 * i);
        s += v;
        ss += v * v;
    }
    *mean = s / n;
    *se = sqrt((ss / n - *mean * *mean) / n);
}
static double px(const float *p) { return p[0]; }
static double py(const float *p) { return p[1]; }
static double r2(const float *p) { return (double)p[0] * p[0] + (double)p[1] * p[1]; }
static double r2x9(const float *p) { return 9 * r2(p); }
static double r2x25(const float *p) { return 25 * r2(p); }

/* 8gaussians: 8 clusters of sd 0.5/1.414 at radius 4/1.414, each with probability 1/8. */
TEST(data_toy_8gaussians_clusters) {
    enum { N = 20000 };
    float *x = toy_draw(ELBO_TOY_8GAUSSIANS, 3, N);
    CHECK(x);
    double R = 4 / 1.414, sd = 0.5 / 1.414;
    int64_t cnt[8] = {0};
    double mx[8] = {0}, my[8] = {0}, dist = 0;
    for (int i = 0; i < N; i++) {
        double a = atan2(x[2 * i + 1], x[2 * i]);
        int k = ((int)lround(a / (M_PI / 4)) + 8) % 8;
        cnt[k]++;
        mx[k] += x[2 * i];
        my[k] += x[2 * i + 1];
        dist += hypot(x[2 * i] - R * cos(k * M_PI / 4), x[2 * i + 1] - R * sin(k * M_PI / 4));
    }
    free(x);
    for (int k = 0; k < 8; k++) {
        CHECK_NEAR(cnt[k] / (double)N, 0.125, 5 * sqrt(0.125 * 0.875 / N));
        CHECK_NEAR(mx[k] / cnt[k], R * cos(k * M_PI / 4), 5 * sd / sqrt(cnt[k]));
        CHECK_NEAR(my[k] / cnt[k], R * sin(k * M_PI / 4), 5 * sd / sqrt(cnt[k]));
    }
    /* distance to the centre is Rayleigh(sd): mean sd sqrt(pi/2), sd sd sqrt((4 - pi)/2) */
    CHECK_NEAR(dist / N, sd * sqrt(M_PI / 2), 5 * sd * sqrt((4 - M_PI) / 2) / sqrt(N));
}

/* circles: half the points at radius 3, half at 1.5, with N(0, 0.24^2) noise per coordinate:
 * E r = R + 0.24^2 / (2 R) to second order. */
TEST(data_toy_circles_two_radii) {
    enum { N = 20000 };
    float *x = toy_draw(ELBO_TOY_CIRCLES, 4, N);
    CHECK(x);
    double sin_ = 0, sout = 0;
    int nin = 0;
    for (int i = 0; i < N; i++) {
        double r = hypot(x[2 * i], x[2 * i + 1]);
        if (r < 2.25)
            sin_ += r, nin++;
        else
            sout += r;
    }
    free(x);
    double s = 0.24;
    CHECK_NEAR(nin / (double)N, 0.5, 0.005); /* misassigned: P(|noise| > 0.75) ~ 1e-3 */
    CHECK_NEAR(sin_ / nin, 1.5 + s * s / 3.0, 5 * s / sqrt(nin) + 1e-3);
    CHECK_NEAR(sout / (N - nin), 3.0 + s * s / 6.0, 5 * s / sqrt(N - nin) + 1e-3);
}

/* moons: the grid halves average to (1/2, 1/4) exactly; after x 2 + (-1, -0.2): (0, 0.3),
 * noise sd 0.2. */
TEST(data_toy_moons_mean) {
    enum { N = 20000 };
    float *x = toy_draw(ELBO_TOY_MOONS, 5, N);
    CHECK(x);
    double m, se;
    mean_se(x, N, px, &m, &se);
    double mx = 0, my = 0;
    for (int i = 0; i < N; i++) mx += x[2 * i], my += x[2 * i + 1];
    free(x);
    CHECK_NEAR(mx / N, 0.0, 5 * 0.2 / sqrt(N));
    CHECK_NEAR(my / N, 0.3, 5 * 0.2 / sqrt(N));
    CHECK(se > 0.005); /* spread: x covers [-3, 3] */
}

/* checkerboard: inside [-4, 4)^2, only the 8 squares with floor(x/2) + floor(y/2) even, each
 * with probability 1/8. */
TEST(data_toy_checkerboard_squares) {
    enum { N = 20000 };
    float *x = toy_draw(ELBO_TOY_CHECKERBOARD, 6, N);
    CHECK(x);
    int64_t cnt[16] = {0};
    int outside = 0, white = 0;
    for (int i = 0; i < N; i++) {
        double a = x[2 * i], b = x[2 * i + 1];
        if (!(a >= -4 && a <= 4 && b >= -4 && b <= 4)) outside++;
        int fa = (int)floor(a / 2), fb = (int)floor(b / 2);
        /* skip points within float rounding of a square's edge */
        if (fabs(a / 2 - lround(a / 2)) < 1e-6 || fabs(b / 2 - lround(b / 2)) < 1e-6) continue;
        if ((fa + fb) & 1)
            white++;
        else if (fa >= -2 && fa < 2 && fb >= -2 && fb < 2)
            cnt[(fa + 2) * 4 + fb + 2]++;
    }
    free(x);
    CHECK(outside == 0 && white == 0);
    int64_t total = 0;
    for (int k = 0; k < 16; k++) total += cnt[k];
    CHECK(total > N - 10);
    for (int k = 0; k < 16; k++) {
        int fa = k / 4 - 2, fb = k % 4 - 2;
        if ((fa + fb) & 1) continue;
        CHECK_NEAR(cnt[k] / (double)N, 0.125, 5 * sqrt(0.125 * 0.875 / N));
    }
}

/* swissroll: t ~ U[1.5 pi, 4.5 pi), x = (t cos t, t sin t) + N(0, I), / 5. E t cos t = 2 and
 * E t sin t = 2 / (3 pi); E |5x|^2 = E t^2 + 2 = 9.75 pi^2 + 2. */
TEST(data_toy_swissroll_moments) {
    enum { N = 100000 };
    float *x = toy_draw(ELBO_TOY_SWISSROLL, 7, N);
    CHECK(x);
    double m[3], se[3];
    mean_se(x, N, px, &m[0], &se[0]);
    mean_se(x, N, py, &m[1], &se[1]);
    mean_se(x, N, r2x25, &m[2], &se[2]);
    free(x);
    CHECK_NEAR(m[0], 2.0 / 5, 5 * se[0]);
    CHECK_NEAR(m[1], 2.0 / (3 * M_PI) / 5, 5 * se[1]);
    CHECK_NEAR(m[2], 9.75 * M_PI * M_PI + 2, 5 * se[2]);
}

/* pinwheel: a rotation keeps |f|, so E |x|^2 = 4 E|f|^2 = 4 (1 + 0.3^2 + 0.1^2) = 4.4; the
 * five arms have equal weight, so the mean is 0. */
TEST(data_toy_pinwheel_radius) {
    enum { N = 20000 };
    float *x = toy_draw(ELBO_TOY_PINWHEEL, 8, N);
    CHECK(x);
    double m[3], se[3];
    mean_se(x, N, r2, &m[0], &se[0]);
    mean_se(x, N, px, &m[1], &se[1]);
    mean_se(x, N, py, &m[2], &se[2]);
    free(x);
    CHECK_NEAR(m[0], 4.4, 5 * se[0]);
    CHECK_NEAR(m[1], 0.0, 5 * se[1]);
    CHECK_NEAR(m[2], 0.0, 5 * se[2]);
}

/* spirals: 3x = +-d + N(0, 0.3^2 I), d = (-s cos s + u'/2, s sin s + u''/2), s = 3 pi sqrt(u)
 * (density 2s / (9 pi^2) on [0, 3 pi]): E|3x|^2 = E s^2 + (E s sin s - E s cos s)/2 + 1/6
 * + 0.18 with E s^2 = 4.5 pi^2, E s sin s = 2 (9 pi^2 - 4) / (9 pi^2), E s cos s = -4/(3 pi). */
TEST(data_toy_spirals_second_moment) {
    enum { N = 100000 };
    float *x = toy_draw(ELBO_TOY_SPIRALS, 9, N);
    CHECK(x);
    double m[3], se[3];
    mean_se(x, N, r2x9, &m[0], &se[0]);
    mean_se(x, N, px, &m[1], &se[1]);
    mean_se(x, N, py, &m[2], &se[2]);
    free(x);
    double pi2 = M_PI * M_PI;
    double want =
        4.5 * pi2 + 0.5 * (2 * (9 * pi2 - 4) / (9 * pi2) + 4 / (3 * M_PI)) + 1.0 / 6 + 0.18;
    CHECK_NEAR(m[0], want, 5 * se[0]);
    CHECK_NEAR(m[1], 0.0, 5 * se[1]);
    CHECK_NEAR(m[2], 0.0, 5 * se[2]);
}

/* elbo_pixels_to01 undoes elbo_pixels_scale11 and clamps: every 8-bit value comes back as
 * p / 255 to a float ulp; values outside [-1, 1] go to the ends. */
TEST(pixels_to01_inverts_scale11) {
    uint8_t p[256];
    float x[256], y[256];
    for (int i = 0; i < 256; i++) p[i] = (uint8_t)i;
    elbo_pixels_scale11(p, 256, x);
    elbo_pixels_to01(x, 256, y);
    for (int i = 0; i < 256; i++) CHECK_NEAR(y[i], i / 255.0, 1e-7);
    float out[3] = {-1.5f, 2.0f, 0.0f};
    elbo_pixels_to01(out, 3, out);
    CHECK(out[0] == 0.0f && out[1] == 1.0f && out[2] == 0.5f);
}
