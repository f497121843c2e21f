/* I/O: .npy headers byte for byte, round trips, PNG grids with exact pixels, and corrupt
 * inputs (each must give the right status, a message naming the file, and no allocation). */
#include "test.h"

#include "elbo/io.h"

#include <dirent.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "tmpdir.h"
#define td_make(td) td_make_tag((td), "io")

static int write_raw(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = n ? fwrite(buf, 1, n, f) : 0;
    return fclose(f) == 0 && w == n;
}

/* The whole file into buf (at most cap bytes); returns its length or -1. */
static long read_raw(const char *path, void *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return -1;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return (long)n;
}

static int has(const char *msg, const char *sub) { return strstr(msg, sub) != NULL; }

#define S10 "          "

/* ---- npy: exact header bytes ---------------------------------------------------------- */
/* numpy.save(np.arange(6, dtype='<f4').reshape(2, 3)): dict of 59 characters, 20 growth
 * spaces + 38 padding spaces (58 in all), '\n': 128 header bytes, header length 118. */
TEST(io_npy_header_bytes_f32_2x3) {
    static const char expect[] = "\x93NUMPY\x01\x00\x76\x00"
                                 "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"
                                 S10 S10 S10 S10 S10 "        "
                                 "\n"
                                 "\x00\x00\x00\x00" "\x00\x00\x80\x3f" "\x00\x00\x00\x40"
                                 "\x00\x00\x40\x40" "\x00\x00\x80\x40" "\x00\x00\xa0\x40";
    CHECK(sizeof expect - 1 == 128 + 24);
    tmpdir td;
    CHECK(td_make(&td));
    const float x[6] = {0, 1, 2, 3, 4, 5};
    const int64_t shape[2] = {2, 3};
    CHECK(elbo_npy_write(td_file(&td, "a.npy"), ELBO_NPY_F32, 2, shape, x) == ELBO_OK);
    unsigned char got[512];
    long n = read_raw(td.path, got, sizeof got);
    td_remove(&td);
    CHECK_MSG(n == 152, "file is %ld bytes, expected 152", n);
    for (int i = 0; i < 152; i++)
        CHECK_MSG(got[i] == (unsigned char)expect[i], "byte %d: got 0x%02x, expected 0x%02x", i,
                  got[i], (unsigned char)expect[i]);
}

/* 1-d "(5,)" with '|u1', and 0-d "()" with '<i8' (no growth spaces for 0-d). */
TEST(io_npy_header_bytes_u8_1d_and_i64_0d) {
    static const char expect_u8[] = "\x93NUMPY\x01\x00\x76\x00"
                                    "{'descr': '|u1', 'fortran_order': False, 'shape': (5,), }"
                                    S10 S10 S10 S10 S10 S10
                                    "\n"
                                    "\x01\x02\x03\xfe\xff";
    static const char expect_i64[] = "\x93NUMPY\x01\x00\x76\x00"
                                     "{'descr': '<i8', 'fortran_order': False, 'shape': (), }"
                                     S10 S10 S10 S10 S10 S10 "  "
                                     "\n"
                                     "\xfe\xff\xff\xff\xff\xff\xff\xff";
    CHECK(sizeof expect_u8 - 1 == 128 + 5 && sizeof expect_i64 - 1 == 128 + 8);
    tmpdir td;
    CHECK(td_make(&td));
    const uint8_t u[5] = {1, 2, 3, 254, 255};
    const int64_t shape[1] = {5};
    const int64_t v = -2;
    unsigned char a[512], b[512];
    CHECK(elbo_npy_write(td_file(&td, "u.npy"), ELBO_NPY_U8, 1, shape, u) == ELBO_OK);
    long na = read_raw(td.path, a, sizeof a);
    CHECK(elbo_npy_write(td_file(&td, "i.npy"), ELBO_NPY_I64, 0, NULL, &v) == ELBO_OK);
    long nb = read_raw(td.path, b, sizeof b);
    td_remove(&td);
    CHECK(na == (long)sizeof expect_u8 - 1 && memcmp(a, expect_u8, (size_t)na) == 0);
    CHECK(nb == (long)sizeof expect_i64 - 1 && memcmp(b, expect_i64, (size_t)nb) == 0);
}

/* For many shape lengths the data starts at a multiple of 64 and the header is dict, spaces,
 * '\n'. numpy's growth spaces (21 - digits of shape[0]) can add a 64-byte block: for
 * (0, 1000000 x5) the dict is 101 characters, 102 + 20 + 10 > 128, so 192 bytes in all. */
TEST(io_npy_header_64_byte_alignment) {
    tmpdir td;
    CHECK(td_make(&td));
    int64_t shape[ELBO_NPY_MAX_DIMS];
    unsigned char buf[4096];
    for (int nd = 0; nd <= ELBO_NPY_MAX_DIMS; nd++) {
        for (int big = 0; big < 2; big++) {
            /* big: the first axis 0 and the rest 10^9, an empty array with a long header */
            for (int i = 0; i < nd; i++) shape[i] = big ? (i == 0 ? 0 : 1000000000) : 1;
            uint8_t one = 42;
            CHECK(elbo_npy_write(td_file(&td, "s.npy"), ELBO_NPY_U8, nd, shape, &one) ==
                  ELBO_OK);
            long n = read_raw(td.path, buf, sizeof buf);
            CHECK(n > 10);
            long hl = buf[8] | buf[9] << 8;
            long data = big && nd > 0 ? 0 : 1;
            CHECK_MSG((10 + hl) % 64 == 0 && n == 10 + hl + data,
                      "ndim %d big %d: header length %ld, file %ld bytes", nd, big, hl, n);
            CHECK(buf[10 + hl - 1] == '\n' && buf[10 + hl - 2] == ' ' && buf[10] == '{');
            CHECK(!data || buf[10 + hl] == 42);
            elbo_npy_array a;
            CHECK(elbo_npy_read(td.path, &a) == ELBO_OK);
            CHECK(a.ndim == nd && a.dtype == ELBO_NPY_U8 && a.numel == (big && nd ? 0 : 1));
            for (int i = 0; i < nd; i++) CHECK(a.shape[i] == shape[i]);
            elbo_npy_free(&a);
            CHECK(a.data == NULL && a.ndim == 0);
        }
    }
    const int64_t grow[6] = {0, 1000000, 1000000, 1000000, 1000000, 1000000};
    CHECK(elbo_npy_write(td_file(&td, "g.npy"), ELBO_NPY_F32, 6, grow, NULL) == ELBO_OK);
    long n = read_raw(td.path, buf, sizeof buf);
    CHECK(td_count(&td) == 2);
    td_remove(&td);
    CHECK(n == 192 && buf[8] == 182 && buf[9] == 0);
    CHECK(memcmp(buf + 10,
                 "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 1000000, 1000000, "
                 "1000000, 1000000, 1000000), }",
                 101) == 0);
}

/* ---- npy: round trips ----------------------------------------------------------------- */
TEST(io_npy_roundtrip_every_dtype_and_rank) {
    tmpdir td;
    CHECK(td_make(&td));
    enum { N = 2 * 3 * 4 * 5 };
    static uint8_t u8[N];
    static float f32[N];
    static int64_t i64[N];
    for (int i = 0; i < N; i++) {
        u8[i] = (uint8_t)(i * 37 + 11);
        f32[i] = (float)i * 0.37f - 7.25f;
        i64[i] = (int64_t)i * 1000003 - 60000000000LL;
    }
    f32[1] = -0.0f;
    f32[2] = INFINITY;
    f32[3] = NAN;
    f32[4] = 1e-45f; /* denormal */
    i64[5] = INT64_MIN;
    i64[6] = INT64_MAX;
    const int64_t s4[4] = {2, 3, 4, 5}, s1[1] = {N}, s2[2] = {0, 3};
    const void *src[3] = {u8, f32, i64};
    const elbo_npy_dtype dt[3] = {ELBO_NPY_U8, ELBO_NPY_F32, ELBO_NPY_I64};
    const size_t sz[3] = {1, 4, 8};
    for (int k = 0; k < 3; k++) {
        CHECK(elbo_npy_dtype_size(dt[k]) == sz[k]);
        struct {
            int nd;
            const int64_t *shape;
            int64_t numel;
        } cases[4] = {{0, NULL, 1}, {1, s1, N}, {4, s4, N}, {2, s2, 0}};
        for (int c = 0; c < 4; c++) {
            CHECK(elbo_npy_write(td_file(&td, "r.npy"), dt[k], cases[c].nd, cases[c].shape,
                                 src[k]) == ELBO_OK);
            elbo_npy_array a;
            CHECK(elbo_npy_read(td.path, &a) == ELBO_OK);
            int ok = a.dtype == dt[k] && a.ndim == cases[c].nd && a.numel == cases[c].numel &&
                     a.nbytes == (size_t)cases[c].numel * sz[k] && a.data != NULL &&
                     memcmp(a.data, src[k], a.nbytes) == 0;
            for (int i = 0; i < cases[c].nd; i++) ok = ok && a.shape[i] == cases[c].shape[i];
            elbo_npy_free(&a);
            CHECK_MSG(ok, "dtype %d case %d: round trip differs", k, c);
        }
    }
    CHECK(td_count(&td) == 1); /* no temporary files left behind */
    td_remove(&td);
}

TEST(io_npy_write_tensor_and_overwrite) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_ctx *ctx = elbo_ctx_new(1 << 16);
    elbo_tensor *t = elbo_tensor_new3(ctx, 2, 1, 3);
    for (int i = 0; i < 6; i++) t->data[i] = (float)(i * i) - 2.5f;
    const char *p = td_file(&td, "t.npy");
    CHECK(write_raw(p, "old contents", 12));
    CHECK(elbo_npy_write_tensor(p, t) == ELBO_OK);
    elbo_npy_array a;
    CHECK(elbo_npy_read(p, &a) == ELBO_OK);
    int ok = a.dtype == ELBO_NPY_F32 && a.ndim == 3 && a.shape[0] == 2 && a.shape[1] == 1 &&
             a.shape[2] == 3 && memcmp(a.data, t->data, 24) == 0;
    elbo_npy_free(&a);
    elbo_ctx_free(ctx);
    CHECK(ok);
    CHECK(td_count(&td) == 1);
    td_remove(&td);
}

/* Versions 2.0 and 3.0 (uint32 header length, here 56), keys in another order, double quotes,
 * no trailing comma, no spaces, '<u1'; the reader does not require 64-byte alignment. */
TEST(io_npy_read_versions_2_and_3) {
    tmpdir td;
    CHECK(td_make(&td));
    static const char v2[] = "\x93NUMPY\x02\x00\x38\x00\x00\x00"
                             "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<i8\"}"
                             "\n"
                             "\x01\x00\x00\x00\x00\x00\x00\x00"
                             "\xff\xff\xff\xff\xff\xff\xff\xff"
                             "\x00\x01\x00\x00\x00\x00\x00\x00";
    static const char v3[] = "\x93NUMPY\x03\x00\x38\x00\x00\x00"
                             "{'fortran_order':False,'descr':'<u1','shape':(1, 2)}   "
                             "\n"
                             "\x07\x09";
    CHECK(write_raw(td_file(&td, "v2.npy"), v2, sizeof v2 - 1));
    elbo_npy_array a;
    CHECK(elbo_npy_read(td.path, &a) == ELBO_OK);
    const int64_t *q = a.data;
    int ok = a.dtype == ELBO_NPY_I64 && a.ndim == 1 && a.shape[0] == 3 && q[0] == 1 &&
             q[1] == -1 && q[2] == 256;
    elbo_npy_free(&a);
    CHECK(ok);
    CHECK(write_raw(td_file(&td, "v3.npy"), v3, sizeof v3 - 1));
    CHECK(elbo_npy_read(td.path, &a) == ELBO_OK);
    const uint8_t *b = a.data;
    ok = a.dtype == ELBO_NPY_U8 && a.ndim == 2 && a.shape[0] == 1 && a.shape[1] == 2 &&
         b[0] == 7 && b[1] == 9;
    elbo_npy_free(&a);
    td_remove(&td);
    CHECK(ok);
}

/* ---- npy: corrupt inputs -------------------------------------------------------------- */
/* Writes bytes to a file named `name`, reads it, and checks the status, that the message
 * names the file (and contains `word`), and that nothing was returned. */
static int bad_npy(tmpdir *td, const char *name, const void *bytes, size_t n, elbo_status want,
                   const char *word, char *why, size_t why_len) {
    const char *p = td_file(td, name);
    if (bytes && !write_raw(p, bytes, n)) return snprintf(why, why_len, "cannot write %s", p), 0;
    elbo_npy_array a;
    memset(&a, 0x5a, sizeof a);
    elbo_clear_error();
    elbo_status st = elbo_npy_read(p, &a);
    const char *msg = elbo_last_error();
    int ok = st == want && elbo_last_status() == want && has(msg, p) && !strchr(msg, '\n') &&
             a.data == NULL && a.ndim == 0 && a.numel == 0 && (!word || has(msg, word));
    if (!ok)
        snprintf(why, why_len, "%s: status %d (want %d), message \"%s\", data %p", name, (int)st,
                 (int)want, msg, a.data);
    if (a.data) free(a.data);
    return ok;
}

/* A version 1.0 file: magic, the header length of hdr, hdr (text up to its '\n'), data. */
static int bad_npy_hdr(tmpdir *td, const char *name, const char *hdr, const char *data,
                       size_t data_len, elbo_status want, const char *word, char *why,
                       size_t why_len) {
    char buf[512];
    size_t hl = strlen(hdr);
    if (10 + hl + data_len > sizeof buf) return snprintf(why, why_len, "too long"), 0;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (char)(hl & 0xff);
    buf[9] = (char)(hl >> 8);
    memcpy(buf + 10, hdr, hl);
    memcpy(buf + 10 + hl, data, data_len);
    return bad_npy(td, name, buf, 10 + hl + data_len, want, word, why, why_len);
}

#define CHECK_BAD_NPYH(name, hdr, data, want, word)                                               \
    do {                                                                                           \
        char why_[512];                                                                            \
        CHECK_MSG(bad_npy_hdr(&td, name, hdr, data, sizeof data - 1, want, word, why_,             \
                              sizeof why_),                                                        \
                  "%s", why_);                                                                     \
    } while (0)
#define CHECK_BAD_NPY(name, lit, want, word)                                                       \
    do {                                                                                           \
        char why_[512];                                                                            \
        CHECK_MSG(bad_npy(&td, name, lit, sizeof lit - 1, want, word, why_, sizeof why_), "%s",  \
                  why_);                                                                           \
    } while (0)

TEST(io_npy_corrupt_inputs) {
    tmpdir td;
    CHECK(td_make(&td));
    char why[512];
    CHECK_MSG(bad_npy(&td, "missing.npy", NULL, 0, ELBO_ERR_IO, "No such file", why, sizeof why),
              "%s", why);
    CHECK_BAD_NPY("empty.npy", "", ELBO_ERR_FORMAT, "empty");
    CHECK_BAD_NPY("magic_only.npy", "\x93NUMPY\x01", ELBO_ERR_FORMAT, "truncated");
    CHECK_BAD_NPY("no_len.npy", "\x93NUMPY\x01\x00\x10", ELBO_ERR_FORMAT, "truncated");
    CHECK_BAD_NPY("badmagic.npy", "\x93NUMPZ\x01\x00\x10\x00{}          \n", ELBO_ERR_FORMAT,
                  "magic");
    CHECK_BAD_NPY("text.npy", "hello, world\n", ELBO_ERR_FORMAT, "magic");
    CHECK_BAD_NPY("version.npy", "\x93NUMPY\x04\x00\x10\x00{}            \n", ELBO_ERR_FORMAT,
                  "version");
    /* header length 0x7600 (0xffffffff in 2.0) but the file ends a few bytes later */
    CHECK_BAD_NPY("hlen.npy", "\x93NUMPY\x01\x00\x00\x76{'descr': '<f4', ", ELBO_ERR_FORMAT,
                  "past the end");
    CHECK_BAD_NPY("hlen2.npy", "\x93NUMPY\x02\x00\xff\xff\xff\xff{", ELBO_ERR_FORMAT,
                  "past the end");
    /* (2, 3) float32 needs 24 bytes; 20 given */
    CHECK_BAD_NPYH("short.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)}\n",
                   "12345678901234567890", ELBO_ERR_FORMAT, "truncated");
    CHECK_BAD_NPYH("trailing.npy",
                   "{'descr': '|u1', 'fortran_order': False, 'shape': (2,)}\n",
                   "abc", ELBO_ERR_FORMAT, "trailing");
    CHECK_BAD_NPYH("dim_overflow.npy",
                   "{'descr': '|u1', 'fortran_order': False, 'shape': (99999999999999999999,)}\n",
                   "", ELBO_ERR_FORMAT, "int64");
    CHECK_BAD_NPYH("numel_overflow.npy",
                   "{'descr': '|u1', 'fortran_order': False, 'shape': (4294967296, 4294967296)}\n",
                   "", ELBO_ERR_FORMAT, "overflow");
    /* 2^61 elements fit int64, their 2^63 bytes do not */
    CHECK_BAD_NPYH("bytes_overflow.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (2305843009213693952,)}\n",
                   "", ELBO_ERR_FORMAT, "overflow");
    CHECK_BAD_NPYH("f8.npy",
                   "{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\n",
                   "12345678", ELBO_ERR_FORMAT, "'<f8'");
    CHECK_BAD_NPYH("bigendian.npy",
                   "{'descr': '>f4', 'fortran_order': False, 'shape': (1,)}\n",
                   "1234", ELBO_ERR_FORMAT, "big-endian");
    CHECK_BAD_NPYH("fortran.npy",
                   "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2)}\n",
                   "1234123412341234", ELBO_ERR_FORMAT, "fortran_order");
    CHECK_BAD_NPYH("structured.npy",
                   "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,)}\n",
                   "1234", ELBO_ERR_FORMAT, "descr");
    CHECK_BAD_NPYH("not_tuple.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (1)}\n",
                   "1234", ELBO_ERR_FORMAT, "shape");
    CHECK_BAD_NPYH("negative.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}\n",
                   "", ELBO_ERR_FORMAT, "shape");
    CHECK_BAD_NPYH("nokey.npy",
                   "{'descr': '<f4', 'shape': (1,), }    \n",
                   "1234", ELBO_ERR_FORMAT, "fortran_order");
    CHECK_BAD_NPYH("extrakey.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}\n",
                   "1234", ELBO_ERR_FORMAT, "'x'");
    CHECK_BAD_NPYH("repeated.npy",
                   "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}\n",
                   "1234", ELBO_ERR_FORMAT, "repeated");
    CHECK_BAD_NPYH("nonewline.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} ",
                   "1234", ELBO_ERR_FORMAT, "newline");
    CHECK_BAD_NPYH("garbage_after_dict.npy",
                   "{'descr': '<f4', 'fortran_order': False, 'shape': ()}xy\n",
                   "1234", ELBO_ERR_FORMAT, "after");
    /* A directory opens but cannot be read. */
    CHECK(mkdir(td_file(&td, "dir.npy"), 0755) == 0);
    CHECK_MSG(bad_npy(&td, "dir.npy", NULL, 0, ELBO_ERR_IO, NULL, why, sizeof why), "%s", why);
    td_remove(&td);
}

TEST(io_npy_write_errors_leave_nothing) {
    tmpdir td;
    CHECK(td_make(&td));
    const int64_t neg[2] = {2, -1}, ok2[2] = {2, 2};
    const float x[4] = {1, 2, 3, 4};
    CHECK(elbo_npy_write(td_file(&td, "a.npy"), ELBO_NPY_F32, 2, neg, x) == ELBO_ERR_ARG);
    CHECK(has(elbo_last_error(), td.path));
    CHECK(elbo_npy_write(td.path, (elbo_npy_dtype)7, 2, ok2, x) == ELBO_ERR_ARG);
    CHECK(elbo_npy_write(td.path, ELBO_NPY_F32, ELBO_NPY_MAX_DIMS + 1, ok2, x) == ELBO_ERR_ARG);
    CHECK(elbo_npy_write(td.path, ELBO_NPY_F32, 2, ok2, NULL) == ELBO_ERR_ARG);
    CHECK(td_count(&td) == 0);
    /* missing directory: cannot create the temporary file */
    CHECK(elbo_npy_write(td_file(&td, "nodir/a.npy"), ELBO_NPY_F32, 2, ok2, x) == ELBO_ERR_IO);
    CHECK(has(elbo_last_error(), td.path));
    /* the target is a directory: the rename fails and the temporary file is removed */
    CHECK(mkdir(td_file(&td, "sub"), 0755) == 0);
    CHECK(elbo_npy_write(td.path, ELBO_NPY_F32, 2, ok2, x) == ELBO_ERR_IO);
    CHECK(has(elbo_last_error(), td.path) && has(elbo_last_error(), "rename"));
    CHECK(td_count(&td) == 1);
    /* an aborted atomic write leaves the old file as it was */
    const char *p = td_file(&td, "keep.npy");
    CHECK(write_raw(p, "old", 3));
    elbo_atomic_file af;
    CHECK(elbo_atomic_open(&af, p) == ELBO_OK);
    CHECK(fputs("new contents", af.fp) >= 0);
    CHECK(td_count(&td) == 3);
    elbo_atomic_abort(&af);
    char buf[16];
    CHECK(read_raw(p, buf, sizeof buf) == 3 && memcmp(buf, "old", 3) == 0);
    CHECK(td_count(&td) == 2 && af.fp == NULL && af.tmp_path == NULL);
    elbo_atomic_abort(&af); /* released: a no-op */
    td_remove(&td);
}

/* ---- PNG ------------------------------------------------------------------------------ */
/* A gray grid of 3 images 2x2, nrow 2, pad 1 (value 7), range [-1, 1]: 7 x 7 pixels.
 * -1 -> 0, 1 -> 255, 0 -> floor(127.5 + 0.5) = 128, 0.5 -> floor(191.25 + 0.5) = 191,
 * -0.5 -> floor(63.75 + 0.5) = 64, -2 and 3 clamp to 0 and 255, NaN -> 0; the empty
 * fourth cell is padding. */
TEST(io_png_grid_gray_exact_pixels) {
    tmpdir td;
    CHECK(td_make(&td));
    const float x[3 * 4] = {-1, 1, 0, -2, /* image 0 */
                            3, 0.5f, -0.5f, NAN, /* image 1 */
                            1, 1, -1, -1};       /* image 2 */
    static const uint8_t expect[7 * 7] = {
        7, 7,   7,   7, 7,   7,   7, /* */
        7, 0,   255, 7, 255, 191, 7, /* */
        7, 128, 0,   7, 64,  0,   7, /* */
        7, 7,   7,   7, 7,   7,   7, /* */
        7, 255, 255, 7, 7,   7,   7, /* */
        7, 0,   0,   7, 7,   7,   7, /* */
        7, 7,   7,   7, 7,   7,   7,
    };
    const char *p = td_file(&td, "grid.png");
    CHECK(elbo_png_write_grid(p, x, 3, 1, 2, 2, -1, 1, 2, 1, 7) == ELBO_OK);
    uint8_t *img;
    int64_t h, w, c;
    CHECK(elbo_png_read(p, &img, &h, &w, &c) == ELBO_OK);
    int same = h == 7 && w == 7 && c == 1 && memcmp(img, expect, sizeof expect) == 0;
    char first[64] = "";
    for (int i = 0; !same && i < 49 && h * w == 49; i++)
        if (img[i] != expect[i]) {
            snprintf(first, sizeof first, "pixel %d: %d, expected %d", i, img[i], expect[i]);
            break;
        }
    free(img);
    CHECK(td_count(&td) == 1);
    td_remove(&td);
    CHECK_MSG(same, "grid %lldx%lldx%lld differs: %s", (long long)h, (long long)w, (long long)c,
              first);
}

/* RGB: 2 images of 1x2, nrow 8 (one row of 2), pad 2 (value 255), range [0, 1]: the PNG is
 * 5 x 10 x 3, channels interleaved; 0.1 -> floor(25.5 + 0.5) = 26, 0.2 -> 51. */
TEST(io_png_grid_rgb_exact_pixels) {
    tmpdir td;
    CHECK(td_make(&td));
    /* x[n][c][0][w] */
    const float x[2 * 3 * 2] = {0, 1, 0.5f, 0.1f, 0.2f, 1.5f, /* image 0: R, G, B planes */
                                -1, 0.25f, 1, 0, 0.75f, 0.2f};
    const char *p = td_file(&td, "rgb.png");
    CHECK(elbo_png_write_grid(p, x, 2, 3, 1, 2, 0, 1, 8, 2, 255) == ELBO_OK);
    uint8_t *img;
    int64_t h, w, c;
    CHECK(elbo_png_read(p, &img, &h, &w, &c) == ELBO_OK);
    td_remove(&td);
    int ok = h == 5 && w == 10 && c == 3;
    /* row 2 (the only image row), pixel x: image 0 at x = 2, 3; image 1 at x = 6, 7 */
    const uint8_t row2[10 * 3] = {255, 255, 255, 255, 255, 255, 0,   128, 51,  255, 26,  255,
                                  255, 255, 255, 255, 255, 255, 0,   255, 191, 64,  0,   51,
                                  255, 255, 255, 255, 255, 255};
    if (ok) ok = memcmp(img + 2 * 30, row2, 30) == 0;
    for (int y = 0; ok && y < 5; y++)
        for (int i = 0; ok && i < 30; i++)
            if (y != 2) ok = img[y * 30 + i] == 255;
    free(img);
    CHECK(ok);
}

TEST(io_png_write_read_roundtrip) {
    tmpdir td;
    CHECK(td_make(&td));
    enum { H = 5, W = 7 };
    uint8_t src[H * W * 4];
    for (int i = 0; i < H * W * 4; i++) src[i] = (uint8_t)(i * 73 + 5);
    for (int c = 1; c <= 4; c++) {
        const char *p = td_file(&td, "im.png");
        CHECK(elbo_png_write(p, src, H, W, c) == ELBO_OK);
        uint8_t *img;
        int64_t h, w, cc;
        CHECK(elbo_png_read(p, &img, &h, &w, &cc) == ELBO_OK);
        int want_c = c <= 2 ? 1 : 3; /* alpha is dropped */
        int ok = h == H && w == W && cc == want_c;
        for (int i = 0; ok && i < H * W; i++)
            for (int k = 0; ok && k < want_c; k++) ok = img[i * want_c + k] == src[i * c + k];
        free(img);
        CHECK_MSG(ok, "C = %d: round trip differs", c);
    }
    CHECK(elbo_png_write(td_file(&td, "x.png"), src, H, W, 5) == ELBO_ERR_ARG);
    CHECK(elbo_png_write(td.path, src, 0, W, 1) == ELBO_ERR_ARG);
    const float g[4] = {0};
    CHECK(elbo_png_write_grid(td.path, g, 1, 2, 2, 2, 0, 1, 1, 0, 0) == ELBO_ERR_ARG);
    CHECK(elbo_png_write_grid(td.path, g, 1, 1, 2, 2, 1, 1, 1, 0, 0) == ELBO_ERR_ARG);
    CHECK(elbo_png_write_grid(td.path, g, 1, 1, 2, 2, 0, 1, 0, 0, 0) == ELBO_ERR_ARG);
    CHECK(has(elbo_last_error(), td.path));
    CHECK(td_count(&td) == 1);
    td_remove(&td);
}

/* Writes rows with libpng directly, in formats elbo_png_write does not produce. */
static int write_png_raw(const char *path, uint32_t w, uint32_t h, int depth, int type,
                         int interlace, const uint8_t *data, size_t row_bytes,
                         const png_color *palette, int npal) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_bytep rows[16];
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        fclose(f);
        return 0;
    }
    png_init_io(png, f);
    png_set_IHDR(png, info, w, h, depth, type, interlace, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    if (palette) png_set_PLTE(png, info, palette, npal);
    for (uint32_t y = 0; y < h && y < 16; y++) rows[y] = (png_bytep)(data + y * row_bytes);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return fclose(f) == 0;
}

/* Palette -> RGB, 1-bit gray -> 0/255, 16-bit RGB -> round(v * 255 / 65535), interlaced. */
TEST(io_png_read_expands_formats) {
    tmpdir td;
    CHECK(td_make(&td));
    uint8_t *img;
    int64_t h, w, c;
    const png_color pal[3] = {{10, 20, 30}, {40, 50, 60}, {200, 100, 0}};
    const uint8_t idx[2 * 2] = {0, 1, 2, 1};
    CHECK(write_png_raw(td_file(&td, "pal.png"), 2, 2, 8, PNG_COLOR_TYPE_PALETTE,
                        PNG_INTERLACE_NONE, idx, 2, pal, 3));
    CHECK(elbo_png_read(td.path, &img, &h, &w, &c) == ELBO_OK);
    const uint8_t pe[12] = {10, 20, 30, 40, 50, 60, 200, 100, 0, 40, 50, 60};
    int ok = h == 2 && w == 2 && c == 3 && memcmp(img, pe, 12) == 0;
    free(img);
    CHECK(ok);
    const uint8_t bits[2] = {0xa0, 0x40}; /* rows 1010, 0100 */
    CHECK(write_png_raw(td_file(&td, "bits.png"), 4, 2, 1, PNG_COLOR_TYPE_GRAY,
                        PNG_INTERLACE_NONE, bits, 1, NULL, 0));
    CHECK(elbo_png_read(td.path, &img, &h, &w, &c) == ELBO_OK);
    const uint8_t be[8] = {255, 0, 255, 0, 0, 255, 0, 0};
    ok = h == 2 && w == 4 && c == 1 && memcmp(img, be, 8) == 0;
    free(img);
    CHECK(ok);
    /* 16-bit big-endian samples 0x0000, 0xffff, 0x8080 (-> 128), 0x0101 (-> 1), 0x7f7f,
     * 0x1234 (4660 * 255 / 65535 = 18.13 -> 18) */
    const uint8_t s16[12] = {0x00, 0x00, 0xff, 0xff, 0x80, 0x80, 0x01, 0x01, 0x7f, 0x7f, 0x12, 0x34};
    CHECK(write_png_raw(td_file(&td, "s16.png"), 2, 1, 16, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                        s16, 12, NULL, 0));
    CHECK(elbo_png_read(td.path, &img, &h, &w, &c) == ELBO_OK);
    const uint8_t se[6] = {0, 255, 128, 1, 127, 18};
    ok = h == 1 && w == 2 && c == 3 && memcmp(img, se, 6) == 0;
    free(img);
    CHECK(ok);
    uint8_t gray[9 * 9];
    for (int i = 0; i < 81; i++) gray[i] = (uint8_t)(i * 3);
    CHECK(write_png_raw(td_file(&td, "adam7.png"), 9, 9, 8, PNG_COLOR_TYPE_GRAY,
                        PNG_INTERLACE_ADAM7, gray, 9, NULL, 0));
    CHECK(elbo_png_read(td.path, &img, &h, &w, &c) == ELBO_OK);
    ok = h == 9 && w == 9 && c == 1 && memcmp(img, gray, 81) == 0;
    free(img);
    CHECK(ok);
    td_remove(&td);
}

/* Reads path and checks the status, that the message names the file (and has `word`), and
 * that nothing was returned. */
static int bad_png(const char *path, elbo_status want, const char *word, char *why,
                   size_t why_len) {
    uint8_t *img = (uint8_t *)"x";
    int64_t h = -1, w = -1, c = -1;
    elbo_clear_error();
    elbo_status st = elbo_png_read(path, &img, &h, &w, &c);
    const char *msg = elbo_last_error();
    int ok = st == want && has(msg, path) && !strchr(msg, '\n') && img == NULL && h == 0 &&
             w == 0 && c == 0 && (!word || has(msg, word));
    if (!ok) snprintf(why, why_len, "%s: status %d (want %d), \"%s\"", path, (int)st, (int)want,
                      msg);
    if (st == ELBO_OK) free(img);
    return ok;
}

/* Appends a PNG chunk (length, type, data, CRC) at p; returns the bytes written. */
static size_t png_chunk(uint8_t *p, const char *type, const uint8_t *data, uint32_t len) {
    p[0] = (uint8_t)(len >> 24), p[1] = (uint8_t)(len >> 16), p[2] = (uint8_t)(len >> 8);
    p[3] = (uint8_t)len;
    memcpy(p + 4, type, 4);
    if (len) memcpy(p + 8, data, len);
    uint32_t crc = (uint32_t)crc32(0, p + 4, 4 + len);
    p[8 + len] = (uint8_t)(crc >> 24), p[9 + len] = (uint8_t)(crc >> 16);
    p[10 + len] = (uint8_t)(crc >> 8), p[11 + len] = (uint8_t)crc;
    return 12 + len;
}

/* A PNG signature, an IHDR for a w x h 8-bit image of colour type `type`, an empty IDAT and
 * IEND: valid chunks, but no image data. */
static size_t png_ihdr_only(uint8_t *buf, uint32_t w, uint32_t h, int type) {
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    const uint8_t ihdr[13] = {(uint8_t)(w >> 24), (uint8_t)(w >> 16), (uint8_t)(w >> 8),
                              (uint8_t)w, (uint8_t)(h >> 24), (uint8_t)(h >> 16),
                              (uint8_t)(h >> 8), (uint8_t)h, 8, (uint8_t)type, 0, 0, 0};
    size_t n = 8;
    n += png_chunk(buf + n, "IHDR", ihdr, 13);
    n += png_chunk(buf + n, "IDAT", NULL, 0);
    n += png_chunk(buf + n, "IEND", NULL, 0);
    return n;
}

TEST(io_png_corrupt_inputs) {
    tmpdir td;
    CHECK(td_make(&td));
    char why[512];
    CHECK_MSG(bad_png(td_file(&td, "missing.png"), ELBO_ERR_IO, "No such file", why, sizeof why),
              "%s", why);
    CHECK(write_raw(td_file(&td, "empty.png"), "", 0));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, "empty", why, sizeof why), "%s", why);
    uint8_t rnd[1000];
    elbo_rng r;
    elbo_rng_init(&r, 3);
    for (int i = 0; i < 1000; i++) rnd[i] = (uint8_t)elbo_rng_below(&r, 256);
    CHECK(write_raw(td_file(&td, "random.png"), rnd, sizeof rnd));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, "signature", why, sizeof why), "%s", why);
    /* a valid signature followed by random bytes */
    memcpy(rnd, "\x89PNG\r\n\x1a\n", 8);
    CHECK(write_raw(td_file(&td, "random_sig.png"), rnd, sizeof rnd));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, NULL, why, sizeof why), "%s", why);

    /* a real PNG, truncated at several lengths, and with one flipped byte */
    enum { H = 16, W = 16 };
    uint8_t pix[H * W * 3];
    for (int i = 0; i < H * W * 3; i++) pix[i] = (uint8_t)elbo_rng_below(&r, 256);
    const char *good = td_file(&td, "good.png");
    CHECK(elbo_png_write(good, pix, H, W, 3) == ELBO_OK);
    static uint8_t file[8192];
    long n = read_raw(good, file, sizeof file);
    CHECK(n > 100 && n < (long)sizeof file);
    const long cuts[5] = {8, 20, 40, n / 2, n - 6};
    for (int k = 0; k < 5; k++) {
        CHECK(write_raw(td_file(&td, "trunc.png"), file, (size_t)cuts[k]));
        CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, "PNG", why, sizeof why), "cut %ld: %s",
                  cuts[k], why);
    }
    file[n / 2] ^= 0x55; /* inside IDAT: CRC or zlib error */
    CHECK(write_raw(td_file(&td, "flipped.png"), file, (size_t)n));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, NULL, why, sizeof why), "%s", why);

    /* sizes: over ELBO_PNG_MAX_SIDE, and 65536 x 65536 RGB over ELBO_PNG_MAX_BYTES */
    uint8_t hdr[64];
    size_t hn = png_ihdr_only(hdr, 100000, 1, 0);
    CHECK(write_raw(td_file(&td, "wide.png"), hdr, hn));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, NULL, why, sizeof why), "%s", why);
    hn = png_ihdr_only(hdr, 65536, 65536, 2);
    CHECK(write_raw(td_file(&td, "huge.png"), hdr, hn));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, "too large", why, sizeof why), "%s", why);
    /* a small valid IHDR but no image data */
    hn = png_ihdr_only(hdr, 4, 4, 0);
    CHECK(write_raw(td_file(&td, "nodata.png"), hdr, hn));
    CHECK_MSG(bad_png(td.path, ELBO_ERR_FORMAT, NULL, why, sizeof why), "%s", why);
    td_remove(&td);
}
