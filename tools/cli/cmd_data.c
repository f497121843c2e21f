/* `elbo data show`: the first images of a dataset as a PNG grid or a .npy array, or points
 * of a toy 2-D distribution as a scatter plot or a .npy array. */
#include "elbo.h"

#include "args.h"
#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *DATA_USAGE =
    "usage: elbo data SUBCOMMAND [flags]\n"
    "\n"
    "subcommands:\n"
    "  show    write a dataset's first images as a PNG grid or .npy (toy data: a scatter\n"
    "          plot or .npy of points)\n"
    "\n"
    "Run `elbo data show --help` for its flags.\n";

static const char *SHOW_USAGE =
    "usage: elbo data show --data SPEC --out grid.png|grid.npy [flags]\n"
    "\n"
    "Loads SPEC (" ELBO_DATA_SPEC_FORMS ") and writes its first N images\n"
    "(after a deterministic shuffle by --seed with --shuffle): to a .png as a grid of\n"
    "--nrow images per row (2 px padding), to a .npy as uint8 (N, C, H, W) (float32 after a\n"
    "--transform other than none) with the labels, when the dataset has them, as int64 (N)\n"
    "in OUT's name with .npy replaced by .labels.npy. A toy:NAME spec draws N points\n"
    "(default 2000) from --seed: a scatter plot (.png) or float32 (N, 2) (.npy); --split,\n"
    "--nrow, --shuffle and --transform do not apply to it. Prints a one-line summary and a\n"
    "JSON line {\"data\":..., \"split\":..., \"n\":..., \"shape\":[C,H,W], \"out\":...}.\n";

static const char *TRANSFORMS = "none|scale01|dequantize|binarize-dynamic|binarize-static";

static int show_toy(const elbo_data_spec *spec, const char *data, int64_t n, uint64_t seed,
                    const char *out, int npy) {
    float *xy = malloc((size_t)n * 2 * sizeof *xy);
    if (!xy) return args_fail(ARGS_RUNTIME, "data show: out of memory for %lld points", (long long)n);
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    elbo_status st = elbo_toy_sample(spec->toy, &rng, xy, n);
    if (st == ELBO_OK) {
        int64_t shape[2] = {n, 2};
        st = npy ? elbo_npy_write(out, ELBO_NPY_F32, 2, shape, xy)
                 : elbo_plot_scatter(out, xy, n, NULL, NULL);
    }
    free(xy);
    if (st != ELBO_OK) return args_fail(ARGS_RUNTIME, "data show: %s", elbo_last_error());
    printf("%s: %lld points of %s (seed %llu) -> %s\n", data, (long long)n, spec->name,
           (unsigned long long)seed, out);
    printf("{\"data\":");
    args_json_string(stdout, data);
    printf(", \"split\":null, \"n\":%lld, \"shape\":[2], \"out\":", (long long)n);
    args_json_string(stdout, out);
    printf("}\n");
    return 0;
}

static int cmd_data_show(int argc, char **argv) {
    const char *data = NULL, *split_s = "train", *transform_s = "none", *out = NULL;
    int n_flag = 0, nrow = 8, shuffle = 0;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_string("--data", &data, "SPEC", "the dataset (" ELBO_DATA_SPEC_FORMS ")",
                    "required"),
        args_string("--split", &split_s, "SPLIT", "train | test", "train"),
        args_int("--n", &n_flag, 1, INT32_MAX, "N", "images (toy: points) to write",
                 "64; toy: 2000"),
        args_int("--nrow", &nrow, 1, 65536, "K", "images per row of the PNG grid", "8"),
        args_seed(&seed, "0"),
        args_bool("--shuffle", &shuffle, "take the first N of a random permutation by --seed"),
        args_string("--transform", &transform_s, "T",
                    "pixel transform: none|scale01|dequantize|binarize-dynamic|binarize-static",
                    "none"),
        args_out(&out, "output file, .png or .npy", "required"),
    };
    int r = args_parse("data show", SHOW_USAGE, flags, (int)(sizeof flags / sizeof flags[0]),
                       argc, argv, NULL, 0, NULL);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (!data) return args_fail(ARGS_USAGE, "data show: --data: required (see elbo data show --help)");
    if (!out) return args_fail(ARGS_USAGE, "data show: --out: required (see elbo data show --help)");
    int rc = cli_check_image_out("--out", out, 0);
    if (rc) return rc;
    int npy = cli_ends_with(out, ".npy");
    elbo_data_split split;
    if (elbo_data_split_parse(split_s, &split) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--split: expected train or test, got \"%s\"", split_s);
    int transform = -1; /* -1: none */
    if (!strcmp(transform_s, "none")) transform = -1;
    else if (!strcmp(transform_s, "scale01")) transform = ELBO_PIXELS_SCALE01;
    else if (!strcmp(transform_s, "dequantize")) transform = ELBO_PIXELS_DEQUANTIZE;
    else if (!strcmp(transform_s, "binarize-dynamic")) transform = ELBO_PIXELS_BINARIZE;
    else if (!strcmp(transform_s, "binarize-static")) transform = ELBO_PIXELS_BINARIZE_STATIC;
    else
        return args_fail(ARGS_USAGE, "--transform: expected one of %s, got \"%s\"", TRANSFORMS,
                         transform_s);
    elbo_data_spec spec;
    if (elbo_data_spec_parse(data, &spec) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--data: %s", elbo_last_error());

    if (spec.kind == ELBO_DATA_TOY) {
        if (transform >= 0)
            return args_fail(ARGS_USAGE, "--transform: does not apply to toy data (%s)", data);
        return show_toy(&spec, data, n_flag ? n_flag : 2000, seed, out, npy);
    }

    elbo_dataset ds;
    if (elbo_dataset_load(&spec, split, &ds) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "data show: %s", elbo_last_error());
    int64_t n = n_flag ? n_flag : 64;
    if (n > ds.n) n = ds.n;
    int64_t per = ds.c * ds.h * ds.w;
    int64_t *idx = malloc((size_t)ds.n * sizeof *idx);
    float *x = malloc((size_t)(n * per) * sizeof *x);
    uint8_t *u8 = malloc((size_t)(n * per));
    int64_t *labels = ds.labels ? malloc((size_t)n * sizeof *labels) : NULL;
    int32_t *lab32 = ds.labels ? malloc((size_t)n * sizeof *lab32) : NULL;
    int status = 0;
    char labels_path[4096] = "";
    if (!idx || !x || !u8 || (ds.labels && (!labels || !lab32))) {
        status = args_fail(ARGS_RUNTIME, "data show: out of memory for %lld images", (long long)n);
        goto done;
    }
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    for (int64_t i = 0; i < ds.n; i++) idx[i] = i;
    if (shuffle && elbo_shuffle(&rng, idx, ds.n) != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "data show: %s", elbo_last_error());
        goto done;
    }
    elbo_pixel_transform tf = transform < 0 ? ELBO_PIXELS_SCALE01 : (elbo_pixel_transform)transform;
    if (elbo_dataset_batch(&ds, idx, n, tf, 0, &rng, x, lab32) != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "data show: %s", elbo_last_error());
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        memcpy(u8 + i * per, ds.images + idx[i] * per, (size_t)per);
        if (labels) labels[i] = lab32[i];
    }
    elbo_status st;
    if (!npy) {
        st = elbo_png_write_grid(out, x, n, ds.c, ds.h, ds.w, 0.0f, 1.0f, nrow, 2, 0);
    } else {
        int64_t shape[4] = {n, ds.c, ds.h, ds.w};
        st = transform < 0 ? elbo_npy_write(out, ELBO_NPY_U8, 4, shape, u8)
                           : elbo_npy_write(out, ELBO_NPY_F32, 4, shape, x);
        if (st == ELBO_OK && labels) {
            snprintf(labels_path, sizeof labels_path, "%.*s.labels.npy",
                     (int)(strlen(out) - 4), out);
            int64_t lshape[1] = {n};
            st = elbo_npy_write(labels_path, ELBO_NPY_I64, 1, lshape, labels);
            if (st != ELBO_OK) unlink(out); /* no half-written output: both or neither */
        }
    }
    if (st != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "data show: %s", elbo_last_error());
        goto done;
    }
    printf("%s %s: %lld of %lld images, %lldx%lldx%lld, %d classes%s, transform %s -> %s%s%s\n",
           data, split_s, (long long)n, (long long)ds.n, (long long)ds.c, (long long)ds.h,
           (long long)ds.w, ds.num_classes, shuffle ? ", shuffled" : "", transform_s, out,
           labels_path[0] ? " + " : "", labels_path);
    printf("{\"data\":");
    args_json_string(stdout, data);
    printf(", \"split\":\"%s\", \"n\":%lld, \"shape\":[%lld,%lld,%lld], \"out\":", split_s,
           (long long)n, (long long)ds.c, (long long)ds.h, (long long)ds.w);
    args_json_string(stdout, out);
    if (labels_path[0]) {
        printf(", \"labels\":");
        args_json_string(stdout, labels_path);
    }
    printf("}\n");
done:
    free(idx);
    free(x);
    free(u8);
    free(labels);
    free(lab32);
    elbo_dataset_free(&ds);
    return status;
}

int cmd_data(int argc, char **argv) {
    if (argc < 1) {
        fputs(DATA_USAGE, stderr);
        return ARGS_USAGE;
    }
    if (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h") || !strcmp(argv[0], "help")) {
        fputs(DATA_USAGE, stdout);
        return 0;
    }
    if (!strcmp(argv[0], "show")) return cmd_data_show(argc - 1, argv + 1);
    return args_fail(ARGS_USAGE, "data: unknown subcommand \"%s\" (see elbo data --help)",
                     argv[0]);
}
