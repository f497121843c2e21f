/* Writes the seed corpus of the fuzz targets with the library's own writers (run by
 * fuzz/make_corpus.sh): a few tiny valid files per target under argv[1]/<target>/. */
#include "elbo/checkpoint.h"
#include "elbo/data.h"
#include "elbo/io.h"
#include "elbo/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *root;

static void check(elbo_status s) {
    if (s != ELBO_OK) {
        fprintf(stderr, "make_corpus: %s\n", elbo_last_error());
        exit(1);
    }
}

static const char *path(const char *target, const char *name) {
    static char p[2048];
    snprintf(p, sizeof p, "%s/%s/%s", root, target, name);
    return p;
}

static void bytes(const char *target, const char *name, const void *data, size_t n) {
    FILE *f = fopen(path(target, name), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        perror(path(target, name));
        exit(1);
    }
}

static void text(const char *target, const char *name, const char *s) {
    bytes(target, name, s, strlen(s));
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: make_corpus DIR\n");
        return 2;
    }
    root = argv[1];
    uint8_t px[2 * 3 * 4 * 4];
    for (size_t i = 0; i < sizeof px; i++) px[i] = (uint8_t)(i * 37);

    /* idx: (2, 2, 2) images and (2) labels, uncompressed */
    const uint8_t idx3[] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4, 5, 6, 7, 8};
    const uint8_t idx1[] = {0, 0, 8, 1, 0, 0, 0, 2, 3, 9};
    bytes("idx", "images.idx3", idx3, sizeof idx3);
    bytes("idx", "labels.idx1", idx1, sizeof idx1);

    /* npy: u8 (10, 2, 2) gray images, u8 (10, 1, 2, 2), u8 (10, 2, 2, 3) channel-last,
     * f32 (2, 3), i64 (3) */
    int64_t s3[] = {10, 2, 2}, s4[] = {10, 1, 2, 2}, s4c[] = {10, 2, 2, 3};
    uint8_t big[10 * 2 * 2 * 3];
    for (size_t i = 0; i < sizeof big; i++) big[i] = (uint8_t)i;
    check(elbo_npy_write(path("npy", "gray.npy"), ELBO_NPY_U8, 3, s3, big));
    check(elbo_npy_write(path("npy", "nchw.npy"), ELBO_NPY_U8, 4, s4, big));
    check(elbo_npy_write(path("npy", "nhwc.npy"), ELBO_NPY_U8, 4, s4c, big));
    float f6[6] = {0, 1, 2, 3, 4, 5};
    int64_t s23[] = {2, 3}, s1[] = {3}, l3[] = {0, 1, 2};
    check(elbo_npy_write(path("npy", "f32.npy"), ELBO_NPY_F32, 2, s23, f6));
    check(elbo_npy_write(path("npy", "i64.npy"), ELBO_NPY_I64, 1, s1, l3));

    /* png: gray, gray + alpha, RGB, RGBA, 4x4 */
    check(elbo_png_write(path("png", "gray.png"), px, 4, 4, 1));
    check(elbo_png_write(path("png", "ga.png"), px, 4, 4, 2));
    check(elbo_png_write(path("png", "rgb.png"), px, 4, 4, 3));
    check(elbo_png_write(path("png", "rgba.png"), px, 2, 4, 4));

    /* cifar: one record, label 3 */
    static uint8_t rec[ELBO_CIFAR10_RECORD];
    rec[0] = 3;
    for (int i = 1; i < ELBO_CIFAR10_RECORD; i++) rec[i] = (uint8_t)(i % 251);
    bytes("cifar", "one_record.bin", rec, sizeof rec);

    /* safetensors: two tensors and metadata; an empty one */
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t step = 7, sw[] = {2, 3};
    elbo_st_tensor t[2] = {{.name = "w", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = sw, .data = w},
                           {.name = "step", .dtype = ELBO_DTYPE_I64, .ndim = 0, .data = &step}};
    elbo_st_meta meta[1] = {{"note", "seed"}};
    check(elbo_safetensors_write(path("safetensors", "two.safetensors"), t, 2, meta, 1));
    check(elbo_safetensors_write(path("safetensors", "empty.safetensors"), t, 0, NULL, 0));

    /* checkpoint: the metadata and tensors elbo_checkpoint_read_info checks */
    int64_t rng[2] = {42, 100}, s2[] = {2}, two = 2;
    float b[2] = {0.5f, -0.5f};
    elbo_st_tensor ct[6] = {
        {.name = "enc.weight", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = sw, .data = w},
        {.name = "enc.bias", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = s2, .data = b},
        {.name = "optim.m.enc.bias", .dtype = ELBO_DTYPE_F32, .ndim = 1, .shape = s2, .data = b},
        {.name = "optim.step", .dtype = ELBO_DTYPE_I64, .ndim = 0, .data = &two},
        {.name = "train.step", .dtype = ELBO_DTYPE_I64, .ndim = 0, .data = &step},
        {.name = "train.rng", .dtype = ELBO_DTYPE_I64, .ndim = 1, .shape = s2, .data = rng}};
    elbo_st_meta cm[4] = {{"format", ELBO_CHECKPOINT_FORMAT},
                          {"version", ELBO_CHECKPOINT_VERSION},
                          {"model", "vae-mlp"},
                          {"config", "{\"x_dim\":4,\"z_dim\":2}"}};
    check(elbo_safetensors_write(path("checkpoint", "tiny.ckpt"), ct, 6, cm, 4));

    /* json, csv, dataspec: literal text */
    text("json", "object.json",
         "{\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"\\u00e9\\ud83d\\ude00\\n\"}}");
    text("json", "array.json", "[0, 18446744073709551615, \"x\", [], {}]");
    text("json", "string.json", "\"caf\xc3\xa9 \\\\ \\/ \\t\"");
    text("csv", "loss.csv", "step,loss,kl\n0,1.5,0.2\n10,1.25,0.3\n20,nan,0.25\n");
    text("csv", "nostep.csv", " loss \r\n3\r\n2\r\n1e-3\r\n");
    text("dataspec", "fashion", "fashion-mnist");
    text("dataspec", "mnist", "mnist:/data/mnist");
    text("dataspec", "cifar", "cifar10:/data/cifar-10-batches-bin");
    text("dataspec", "folder", "folder:/data/pngs");
    text("dataspec", "npy", "npy:/data/x.npy,/data/y.npy");
    text("dataspec", "toy", "toy:8gaussians");
    return 0;
}
