/* safetensors: round trips, the exact bytes of a small file, every kind of corrupt file, the
 * atomic write, and saving/loading a paramset. */
#include "test.h"

#include "elbo/safetensors.h"

#include <dirent.h>
#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------- */
static int make_dir(char *dir, size_t len) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, len, "%s/elbo_st_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(dir) != NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void remove_dir(const char *dir) {
    chmod(dir, 0700);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = fwrite(p, 1, n, f) == n;
    return fclose(f) == 0 && ok;
}

/* A file of: u64 strlen(json), json, then n_data zero bytes. */
static int write_st(const char *path, const char *json, size_t n_data) {
    size_t h = strlen(json);
    unsigned char *b = calloc(1, 8 + h + n_data);
    if (!b) return 0;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(b + 8, json, h);
    int ok = write_bytes(path, b, 8 + h + n_data);
    free(b);
    return ok;
}

/* Reads a whole file into a malloc'd buffer (NULL when missing). */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char *b = NULL;
    size_t cap = 0, len = 0, k;
    do {
        if (len == cap) {
            cap = cap ? 2 * cap : 4096;
            b = realloc(b, cap);
        }
        k = fread(b + len, 1, cap - len, f);
        len += k;
    } while (k > 0);
    fclose(f);
    *n = len;
    return b;
}

/* Entries of dir whose name contains ".tmp". */
static int count_temp_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp")) n++;
    closedir(d);
    return n;
}

/* open must fail with status want, *out NULL, and a one-line message naming the file and
 * containing `what`. */
#define CHECK_OPEN_FAILS(path, want, what)                                                         \
    do {                                                                                           \
        elbo_safetensors *s_ = (elbo_safetensors *)&s_;                                            \
        elbo_status st_ = elbo_safetensors_open(path, &s_);                                        \
        const char *m_ = elbo_last_error();                                                        \
        CHECK_MSG(st_ == (want) && s_ == NULL && strstr(m_, path) && strstr(m_, what) &&           \
                      !strchr(m_, '\n'),                                                           \
                  "open %s: status %d (want %d), message '%s' (want '%s')", path, (int)st_,       \
                  (int)(want), m_, what);                                                          \
    } while (0)

/* ---- round trip ----------------------------------------------------------------------- */
TEST(safetensors_round_trip_tensors_and_metadata) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/model.safetensors", dir);

    float w[6] = {0.5f, -1.25f, 3.0f, 1e-30f, -0.0f, 65504.0f};
    float scalar = 2.718281828f;
    float img[2 * 1 * 2 * 3];
    for (int i = 0; i < 12; i++) img[i] = (float)i * 0.1f - 0.3f;
    int64_t step = 123456789012345LL;
    uint8_t rng[16];
    for (int i = 0; i < 16; i++) rng[i] = (uint8_t)(i * 17 + 3);
    const int64_t s_w[] = {2, 3}, s_empty[] = {0, 4}, s_img[] = {2, 1, 2, 3}, s_step[] = {1},
                  s_rng[] = {16};
    elbo_st_tensor t[] = {
        {.name = "enc.0.weight", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = s_w, .data = w},
        {.name = "scale", .dtype = ELBO_DTYPE_F32, .ndim = 0, .shape = NULL, .data = &scalar},
        {.name = "empty", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = s_empty, .data = NULL},
        {.name = "images", .dtype = ELBO_DTYPE_F32, .ndim = 4, .shape = s_img, .data = img},
        {.name = "step", .dtype = ELBO_DTYPE_I64, .ndim = 1, .shape = s_step, .data = &step},
        {.name = "rng \"state\" \xc3\xa9", .dtype = ELBO_DTYPE_U8, .ndim = 1, .shape = s_rng,
         .data = rng},
    };
    elbo_st_meta meta[] = {
        {"format", "pt"},
        {"model", "vae-mlp"},
        {"tricky \"key\"", "back\\slash\nnew line\ttab \x01 \xd0\xba\xd0\xbb\xd1\x8e\xd1\x87"},
    };
    CHECK(elbo_safetensors_write(path, t, 6, meta, 3) == ELBO_OK);
    CHECK(count_temp_files(dir) == 0);

    /* The header size makes 8 + N a multiple of 8, and the file is exactly header + data. */
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    CHECK(bytes != NULL);
    uint64_t hlen = 0;
    for (int i = 0; i < 8; i++) hlen |= (uint64_t)bytes[i] << (8 * i);
    size_t data_bytes = 6 * 4 + 4 + 0 + 12 * 4 + 8 + 16;
    int layout_ok = (8 + hlen) % 8 == 0 && n == 8 + hlen + data_bytes && bytes[8] == '{';
    free(bytes);
    CHECK(layout_ok);

    elbo_safetensors *st = NULL;
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK && st != NULL);
    CHECK(elbo_safetensors_count(st) == 6);
    CHECK(!strcmp(elbo_safetensors_path(st), path));
    for (int i = 0; i < 6; i++) {
        const elbo_st_tensor *g = elbo_safetensors_get(st, i); /* header order = given order */
        CHECK(g && !strcmp(g->name, t[i].name));
        const elbo_st_tensor *f = elbo_safetensors_find(st, t[i].name);
        CHECK(f == g);
        CHECK(f->dtype == t[i].dtype && f->ndim == t[i].ndim);
        int64_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) {
            CHECK(f->shape[d] == t[i].shape[d]);
            numel *= t[i].shape[d];
        }
        CHECK(f->numel == numel);
        CHECK(f->nbytes == (size_t)numel * elbo_dtype_size(t[i].dtype));
        if (f->nbytes) CHECK(memcmp(f->data, t[i].data, f->nbytes) == 0);
    }
    CHECK(elbo_safetensors_get(st, 6) == NULL && elbo_safetensors_get(st, -1) == NULL);
    CHECK(elbo_safetensors_find(st, "missing") == NULL);
    CHECK(elbo_safetensors_find(st, "enc.0") == NULL);
    /* Values, not just bytes: the F32 and I64 read back as numbers. */
    const elbo_st_tensor *fw = elbo_safetensors_find(st, "enc.0.weight");
    CHECK(((const float *)fw->data)[1] == -1.25f && ((const float *)fw->data)[5] == 65504.0f);
    CHECK(((uintptr_t)fw->data % 64) == 0); /* begin 0: the buffer's 64-byte alignment */
    /* "step" begins at byte 76: not 8-aligned (tensors keep the given order), so memcpy */
    const elbo_st_tensor *ts = elbo_safetensors_find(st, "step");
    int64_t step_back;
    memcpy(&step_back, ts->data, sizeof step_back);
    CHECK(step_back == 123456789012345LL);
    CHECK((const char *)ts->data - (const char *)fw->data == 76);
    CHECK(*(const float *)elbo_safetensors_find(st, "scale")->data == 2.718281828f);

    CHECK(elbo_safetensors_metadata_count(st) == 3);
    for (int i = 0; i < 3; i++) {
        const char *k, *v;
        CHECK(elbo_safetensors_metadata_get(st, i, &k, &v) == 0);
        CHECK(!strcmp(k, meta[i].key) && !strcmp(v, meta[i].value));
        CHECK(!strcmp(elbo_safetensors_metadata(st, meta[i].key), meta[i].value));
    }
    CHECK(elbo_safetensors_metadata(st, "absent") == NULL);
    CHECK(elbo_safetensors_metadata_get(st, 3, NULL, NULL) == -1);
    elbo_safetensors_close(st);
    remove_dir(dir);
}

/* The file, derived by hand from the format:
 *   JSON {"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},
 *         "b":{"dtype":"U8","shape":[3],"data_offsets":[8,11]}}  (one line, no spaces)
 *   = 32 + 53 + 53 = 138 bytes; 8 + 138 = 146, padded with 6 spaces to 8 + 144 = 152, so
 *   N = 144 = 0x90, written 90 00 00 00 00 00 00 00;
 *   a = {1.0f, -2.0f} = 00 00 80 3f  00 00 00 c0;   b = {1, 2, 3} = 01 02 03.
 * 8 + 144 + 11 = 163 bytes in all. */
TEST(safetensors_exact_bytes_of_a_small_file) {
    static const unsigned char expect_len[8] = {0x90, 0, 0, 0, 0, 0, 0, 0};
    static const char expect_json[] =
        "{\"__metadata__\":{\"format\":\"pt\"},"
        "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}"
        "      ";
    static const unsigned char expect_data[11] = {0x00, 0x00, 0x80, 0x3f, 0x00, 0x00,
                                                  0x00, 0xc0, 0x01, 0x02, 0x03};
    CHECK(sizeof expect_json - 1 == 144);

    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/small.safetensors", dir);
    const float a[2] = {1.0f, -2.0f};
    const uint8_t b[3] = {1, 2, 3};
    const int64_t sa[1] = {2}, sb[1] = {3};
    elbo_st_tensor t[2] = {{.name = "a", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = sa, .data = a},
                           {.name = "b", .dtype = ELBO_DTYPE_U8, .ndim = 1, .shape = sb, .data = b}};
    elbo_st_meta m = {"format", "pt"};
    CHECK(elbo_safetensors_write(path, t, 2, &m, 1) == ELBO_OK);
    size_t n = 0;
    unsigned char *got = slurp(path, &n);
    CHECK(got != NULL);
    int same = n == 163 && !memcmp(got, expect_len, 8) && !memcmp(got + 8, expect_json, 144) &&
               !memcmp(got + 152, expect_data, 11);
    free(got);
    CHECK_MSG(same, "file of %zu bytes differs from the hand-derived 163 bytes", n);

    /* And a file written by hand with those bytes reads back. */
    unsigned char file[163];
    memcpy(file, expect_len, 8);
    memcpy(file + 8, expect_json, 144);
    memcpy(file + 152, expect_data, 11);
    snprintf(path, sizeof path, "%s/by_hand.safetensors", dir);
    CHECK(write_bytes(path, file, sizeof file));
    elbo_safetensors *st;
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK);
    const elbo_st_tensor *ta = elbo_safetensors_find(st, "a"), *tb = elbo_safetensors_find(st, "b");
    CHECK(ta && tb && ta->dtype == ELBO_DTYPE_F32 && tb->dtype == ELBO_DTYPE_U8);
    CHECK(((const float *)ta->data)[0] == 1.0f && ((const float *)ta->data)[1] == -2.0f);
    CHECK(((const uint8_t *)tb->data)[2] == 3 && tb->shape[0] == 3);
    CHECK(!strcmp(elbo_safetensors_metadata(st, "format"), "pt"));
    elbo_safetensors_close(st);
    remove_dir(dir);
}

TEST(safetensors_reads_escapes_scalars_and_empty_files) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/esc.safetensors", dir);
    /* a name with \u escapes (a surrogate pair), whitespace and a null metadata */
    CHECK(write_st(path,
                   "{ \"__metadata__\" : null ,\n \"x\\u00e9\\ud83d\\ude00\\/\" : {\"shape\": [],"
                   " \"data_offsets\": [0, 8], \"dtype\": \"F64\"} }   ",
                   8));
    elbo_safetensors *st;
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK);
    const elbo_st_tensor *t = elbo_safetensors_find(st, "x\xc3\xa9\xf0\x9f\x98\x80/");
    CHECK(t && t->ndim == 0 && t->numel == 1 && t->nbytes == 8 && t->dtype == ELBO_DTYPE_F64);
    CHECK(*(const double *)t->data == 0.0);
    CHECK(elbo_safetensors_metadata_count(st) == 0);
    elbo_safetensors_close(st);
    /* no tensors at all: "{}" and an empty buffer */
    CHECK(write_st(path, "{}", 0));
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK && elbo_safetensors_count(st) == 0);
    elbo_safetensors_close(st);
    /* every dtype name of the format is recognised, with its size */
    static const struct {
        const char *name;
        size_t size;
    } dt[] = {{"F32", 4}, {"F64", 8}, {"I64", 8}, {"I32", 4}, {"U8", 1}, {"F16", 2},
              {"BF16", 2}, {"BOOL", 1}, {"I8", 1}, {"I16", 2}, {"U16", 2}, {"U32", 4},
              {"U64", 8}, {"F8_E4M3", 1}, {"F8_E5M2", 1}};
    for (size_t i = 0; i < sizeof dt / sizeof dt[0]; i++) {
        elbo_dtype d;
        CHECK(elbo_dtype_from_name(dt[i].name, &d) == 0);
        CHECK(elbo_dtype_size(d) == dt[i].size && !strcmp(elbo_dtype_name(d), dt[i].name));
        char json[160];
        snprintf(json, sizeof json,
                 "{\"t\":{\"dtype\":\"%s\",\"shape\":[3],\"data_offsets\":[0,%zu]}}", dt[i].name,
                 3 * dt[i].size);
        CHECK(write_st(path, json, 3 * dt[i].size));
        CHECK(elbo_safetensors_open(path, &st) == ELBO_OK);
        CHECK(elbo_safetensors_find(st, "t")->dtype == d);
        elbo_safetensors_close(st);
    }
    CHECK(elbo_dtype_from_name("F33", NULL) == -1 && elbo_dtype_name(ELBO_DTYPE_COUNT) == NULL);
    remove_dir(dir);
}

/* ---- corrupt files -------------------------------------------------------------------- */
TEST(safetensors_missing_empty_and_short_files) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK_OPEN_FAILS(path, ELBO_ERR_IO, "cannot open");
    CHECK_OPEN_FAILS(dir, ELBO_ERR_IO, "not a regular file");

    snprintf(path, sizeof path, "%s/empty.safetensors", dir);
    CHECK(write_bytes(path, "", 0));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "too short");

    snprintf(path, sizeof path, "%s/short.safetensors", dir);
    CHECK(write_bytes(path, "\x02\0\0\0\0", 5));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "too short");

    /* N = 1000 in a 8 + 2 byte file */
    snprintf(path, sizeof path, "%s/past.safetensors", dir);
    CHECK(write_bytes(path, "\xe8\x03\0\0\0\0\0\0{}", 10));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "past the end");

    /* N = 100,000,001 (0x05f5e101): over the limit, whatever the file size */
    snprintf(path, sizeof path, "%s/huge.safetensors", dir);
    CHECK(write_bytes(path, "\x01\xe1\xf5\x05\0\0\0\0{}", 10));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "100 MB");
    /* N = 2^64 - 1 */
    CHECK(write_bytes(path, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "100 MB");
    /* N = 0: an empty header is not JSON */
    CHECK(write_bytes(path, "\0\0\0\0\0\0\0\0", 8));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "start with '{'");
    remove_dir(dir);
}

TEST(safetensors_corrupt_headers_are_format_errors) {
#define E(shape, offs) "{\"dtype\":\"F32\",\"shape\":" shape ",\"data_offsets\":" offs "}"
    static const struct {
        const char *json;
        size_t n_data;
        const char *what;
    } cases[] = {
        /* invalid JSON */
        {"{\"a\":" E("[1]", "[0,4]") ",}", 4, "invalid JSON"},
        {"{\"a\":" E("[1]", "[0,4]"), 4, "invalid JSON"},
        {"{\"a\":" E("[01]", "[0,4]") "}", 4, "leading zero"},
        {"{\"a\":" E("[1]", "[0,4]") "} x", 4, "trailing"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,4]}}", 4, "invalid JSON"},
        {"{/*c*/\"a\":" E("[1]", "[0,4]") "}", 4, "invalid JSON"},
        {"{\"\\ud800\":" E("[1]", "[0,4]") "}", 4, "surrogate"},
        {"{\"a\\x\":" E("[1]", "[0,4]") "}", 4, "escape"},
        {"{\"\xff\":" E("[1]", "[0,4]") "}", 4, "UTF-8"},
        {"{\"a\tb\":" E("[1]", "[0,4]") "}", 4, "control"},
        {"{'a':" E("[1]", "[0,4]") "}", 4, "invalid JSON"},
        {"[1]", 0, "start with '{'"},
        {" {}", 0, "start with '{'"},
        /* wrong types and keys */
        {"{\"a\":1}", 0, "'a': entry is not an object"},
        {"{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': dtype is not"},
        {"{\"a\":" E("\"1\"", "[0,4]") "}", 4, "'a': shape is not an array"},
        {"{\"a\":" E("[-1]", "[0,4]") "}", 4, "shape[0] is not a non-negative integer"},
        {"{\"a\":" E("[1.0]", "[0,4]") "}", 4, "shape[0] is not a non-negative integer"},
        {"{\"a\":" E("[1]", "[0]") "}", 4, "'a': data_offsets is not"},
        {"{\"a\":" E("[1]", "[0,4,4]") "}", 4, "'a': data_offsets is not"},
        {"{\"a\":" E("[1]", "[\"0\",4]") "}", 4, "'a': data_offsets is not"},
        {"{\"a\":" E("[1]", "[0,18446744073709551616]") "}", 4, "'a': data_offsets is not"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "'a': missing \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4,
         "'a': unknown key 'x'"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "metadata 'k' is not a string"},
        {"{\"__metadata__\":[]}", 0, "not an object of strings"},
        {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "NUL"},
        {"{\"a\\u0000b\":" E("[1]", "[0,4]") "}", 4, "NUL"},
        {"{\"a\":" E("[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1]", "[0,4]") "}", 4, "17 dimensions"},
        /* dtypes */
        {"{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "'a': unknown dtype 'F33'"},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype"},
        /* offsets */
        {"{\"a\":" E("[2]", "[0,8]") "}", 4, "'a': data_offsets [0, 8] run past the 4-byte buffer"},
        {"{\"a\":" E("[0]", "[4,0]") "}", 4, "'a': data_offsets [4, 0] end before"},
        {"{\"a\":" E("[1]", "[0,4]") ",\"b\":" E("[1]", "[8,12]") "}", 12, "'b': the buffer has a hole"},
        {"{\"a\":" E("[1]", "[4,8]") "}", 8, "'a': the buffer has a hole: bytes [0, 4)"},
        {"{\"a\":" E("[2]", "[0,8]") ",\"b\":" E("[1]", "[4,8]") "}", 8, "overlaps tensor"},
        {"{\"a\":" E("[1]", "[0,4]") ",\"b\":" E("[1]", "[0,4]") "}", 4, "overlaps tensor"},
        {"{\"a\":" E("[1]", "[0,4]") "}", 8, "bytes [4, 8) of the buffer belong to no tensor"},
        /* sizes */
        {"{\"a\":" E("[4294967296,4294967296,4]", "[0,4]") "}", 4, "'a': the size of its shape overflows"},
        {"{\"a\":" E("[9223372036854775808,0]", "[0,0]") "}", 0, "overflows"},
        {"{\"a\":" E("[2,3]", "[0,20]") "}", 20, "hold 20 bytes, but its shape of F32 needs 24"},
        {"{\"a\":" E("[]", "[0,0]") "}", 0, "needs 4"},
        /* duplicates */
        {"{\"a\":" E("[1]", "[0,4]") ",\"a\":" E("[1]", "[4,8]") "}", 8, "duplicate key \"a\""},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
         "duplicate key \"dtype\""},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key \"k\""},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key"},
    };
#undef E
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        CHECK(write_st(path, cases[i].json, cases[i].n_data));
        elbo_clear_error();
        CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, cases[i].what);
    }
    /* Nesting past the depth limit is an error, not a stack overflow. */
    char deep[400] = "{\"a\":";
    for (int i = 0; i < 100; i++) strcat(deep, "[");
    CHECK(write_st(path, deep, 0));
    CHECK_OPEN_FAILS(path, ELBO_ERR_FORMAT, "nested deeper");
    remove_dir(dir);
}

/* ---- atomic writes -------------------------------------------------------------------- */
TEST(safetensors_failed_write_keeps_old_file_and_leaves_no_temp) {
    char dir[256], path[300], sub[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/ckpt.safetensors", dir);
    const float v[4] = {1, 2, 3, 4};
    const int64_t s4[] = {4}, sneg[] = {-1};
    elbo_st_tensor good = {.name = "w", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = s4, .data = v};
    CHECK(elbo_safetensors_write(path, &good, 1, NULL, 0) == ELBO_OK);
    size_t n_old;
    unsigned char *old = slurp(path, &n_old);
    CHECK(old && n_old == 8 + 56 + 16); /* 55 bytes of JSON + 1 space */

    /* bad arguments: nothing is written */
    elbo_st_tensor dup[2] = {good, good};
    elbo_st_tensor bad[6] = {good, good, good, good, good, good};
    bad[0].name = "";
    bad[1].dtype = ELBO_DTYPE_COUNT;
    bad[2].shape = sneg;
    bad[3].data = NULL;
    bad[4].name = "__metadata__";
    bad[5].ndim = ELBO_SAFETENSORS_MAX_DIMS + 1;
    const char *want[6] = {"no name", "unknown dtype", "negative size", "NULL data", "reserved",
                           "bad ndim"};
    elbo_st_meta dup_meta[2] = {{"k", "1"}, {"k", "2"}}, null_meta = {"k", NULL};
    CHECK(elbo_safetensors_write(path, dup, 2, NULL, 0) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), path) && strstr(elbo_last_error(), "duplicate tensor name 'w'"));
    for (int i = 0; i < 6; i++) {
        CHECK(elbo_safetensors_write(path, &bad[i], 1, NULL, 0) == ELBO_ERR_ARG);
        CHECK_MSG(strstr(elbo_last_error(), path) && strstr(elbo_last_error(), want[i]),
                  "case %d: '%s'", i, elbo_last_error());
    }
    CHECK(elbo_safetensors_write(path, &good, 1, dup_meta, 2) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "duplicate metadata key 'k'"));
    CHECK(elbo_safetensors_write(path, &good, 1, &null_meta, 1) == ELBO_ERR_ARG);
    CHECK(elbo_safetensors_write(path, &good, -1, NULL, 0) == ELBO_ERR_ARG);
    CHECK(elbo_safetensors_write(path, NULL, 1, NULL, 0) == ELBO_ERR_ARG);
    CHECK(elbo_safetensors_write(NULL, &good, 1, NULL, 0) == ELBO_ERR_ARG);

    /* the rename fails: the target is a directory; the temp file is removed */
    snprintf(sub, sizeof sub, "%s/adir.safetensors", dir);
    CHECK(mkdir(sub, 0755) == 0);
    CHECK(elbo_safetensors_write(sub, &good, 1, NULL, 0) == ELBO_ERR_IO);
    CHECK(strstr(elbo_last_error(), sub) && strstr(elbo_last_error(), "rename"));
    struct stat sb;
    CHECK(stat(sub, &sb) == 0 && S_ISDIR(sb.st_mode));

    /* the directory does not exist */
    snprintf(sub, sizeof sub, "%s/no/such/dir/x.safetensors", dir);
    CHECK(elbo_safetensors_write(sub, &good, 1, NULL, 0) == ELBO_ERR_IO);
    CHECK(strstr(elbo_last_error(), sub) != NULL);

    /* a directory we may not write to (root may write anywhere: skip the check there) */
    if (geteuid() != 0) {
        CHECK(chmod(dir, 0555) == 0);
        elbo_status st = elbo_safetensors_write(path, &good, 1, NULL, 0);
        chmod(dir, 0755);
        CHECK(st == ELBO_ERR_IO && strstr(elbo_last_error(), path));
    }

    size_t n_now;
    unsigned char *now = slurp(path, &n_now);
    int intact = now && n_now == n_old && !memcmp(now, old, n_old);
    free(now);
    free(old);
    CHECK(intact);
    CHECK(count_temp_files(dir) == 0);

    /* and a successful write replaces the file */
    const float v2[2] = {7, 8};
    const int64_t s2[] = {2};
    elbo_st_tensor repl = {.name = "w2", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = s2, .data = v2};
    CHECK(elbo_safetensors_write(path, &repl, 1, NULL, 0) == ELBO_OK);
    elbo_safetensors *st;
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK);
    CHECK(elbo_safetensors_count(st) == 1 && elbo_safetensors_find(st, "w") == NULL);
    CHECK(((const float *)elbo_safetensors_find(st, "w2")->data)[1] == 8.0f);
    elbo_safetensors_close(st);
    CHECK(count_temp_files(dir) == 0);
    remove_dir(dir);
}

/* ---- paramsets ------------------------------------------------------------------------ */
static elbo_paramset *make_params(uint64_t seed, int64_t out) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_linear l1, l2;
    elbo_nn_group_norm gn;
    if (!ps || elbo_nn_linear_init(&l1, ps, "enc.0", 3, 5, 1) || elbo_nn_linear_init(&l2, ps, "enc.2", 5, (int)out, 1) ||
        elbo_nn_group_norm_init(&gn, ps, "norm", 1, 5) || elbo_paramset_finalize(ps, seed)) {
        elbo_paramset_free(ps);
        return NULL;
    }
    return ps;
}

TEST(safetensors_paramset_save_load_round_trip) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/params.safetensors", dir);
    elbo_paramset *a = make_params(1, 2), *b = make_params(2, 2);
    CHECK(a && b);
    int64_t n = elbo_paramset_numel(a);
    CHECK(n == 3 * 5 + 5 + 5 * 2 + 2 + 5 + 5);
    CHECK(memcmp(elbo_paramset_data(a), elbo_paramset_data(b), (size_t)n * 4) != 0);
    elbo_st_meta m = {"model", "test"};
    CHECK(elbo_paramset_save_safetensors(path, a, &m, 1) == ELBO_OK);

    elbo_safetensors *st;
    CHECK(elbo_safetensors_open(path, &st) == ELBO_OK);
    CHECK(elbo_safetensors_count(st) == 6);
    const char *names[6] = {"enc.0.weight", "enc.0.bias", "enc.2.weight", "enc.2.bias",
                            "norm.weight", "norm.bias"};
    for (int i = 0; i < 6; i++) CHECK(!strcmp(elbo_safetensors_get(st, i)->name, names[i]));
    const elbo_st_tensor *w = elbo_safetensors_find(st, "enc.0.weight");
    CHECK(w->ndim == 2 && w->shape[0] == 5 && w->shape[1] == 3);
    CHECK(elbo_paramset_load_safetensors(st, b) == ELBO_OK);
    CHECK(memcmp(elbo_paramset_data(a), elbo_paramset_data(b), (size_t)n * 4) == 0);
    CHECK(elbo_paramset_find(b, "norm.weight")->data[0] == 1.0f);
    elbo_safetensors_close(st);

    /* the path form */
    elbo_paramset *c = make_params(3, 2);
    CHECK(c && elbo_paramset_load_safetensors_file(path, c) == ELBO_OK);
    CHECK(memcmp(elbo_paramset_data(a), elbo_paramset_data(c), (size_t)n * 4) == 0);
    elbo_paramset_free(a);
    elbo_paramset_free(b);
    elbo_paramset_free(c);
    remove_dir(dir);
}

TEST(safetensors_paramset_load_names_the_first_mismatch) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/params.safetensors", dir);
    elbo_paramset *a = make_params(1, 2), *b = make_params(2, 4);
    CHECK(a && b);
    CHECK(elbo_paramset_save_safetensors(path, a, NULL, 0) == ELBO_OK);
    int64_t n = elbo_paramset_numel(b);
    float *before = malloc((size_t)n * 4);
    CHECK(before);
    memcpy(before, elbo_paramset_data(b), (size_t)n * 4);
    /* enc.2.weight is (2, 5) in the file and (4, 5) in b: nothing of b changes */
    CHECK(elbo_paramset_load_safetensors_file(path, b) == ELBO_ERR_FORMAT);
    CHECK(strstr(elbo_last_error(), path) &&
          strstr(elbo_last_error(), "'enc.2.weight' has shape (2, 5) in the file, expected (4, 5)"));
    CHECK(memcmp(before, elbo_paramset_data(b), (size_t)n * 4) == 0);
    free(before);

    /* a missing parameter, and one stored with another dtype */
    const float v[5] = {0};
    const int64_t s5[] = {5};
    elbo_st_tensor only = {.name = "enc.0.bias", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = s5,
                           .data = v};
    CHECK(elbo_safetensors_write(path, &only, 1, NULL, 0) == ELBO_OK);
    CHECK(elbo_paramset_load_safetensors_file(path, a) == ELBO_ERR_FORMAT);
    CHECK(strstr(elbo_last_error(), "'enc.0.weight' is missing") && strstr(elbo_last_error(), path));
    const int32_t iv[15] = {0};
    const int64_t s53[] = {5, 3};
    elbo_st_tensor wrong = {.name = "enc.0.weight", .dtype = ELBO_DTYPE_I32, .ndim = 2,
                            .shape = s53, .data = iv};
    CHECK(elbo_safetensors_write(path, &wrong, 1, NULL, 0) == ELBO_OK);
    CHECK(elbo_paramset_load_safetensors_file(path, a) == ELBO_ERR_FORMAT);
    CHECK(strstr(elbo_last_error(), "'enc.0.weight' is I32, expected F32"));
    /* a missing file */
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    CHECK(elbo_paramset_load_safetensors_file(path, a) == ELBO_ERR_IO);

    /* a set that is not finalised */
    elbo_paramset *p = elbo_paramset_new();
    const int64_t s1[] = {1};
    CHECK(elbo_paramset_add(p, "", "x", 1, s1, (elbo_init){ELBO_INIT_CONST, 0}) != NULL);
    CHECK(elbo_paramset_save_safetensors(path, p, NULL, 0) == ELBO_ERR_STATE);
    elbo_paramset_free(p);
    elbo_paramset_free(a);
    elbo_paramset_free(b);
    remove_dir(dir);
}
