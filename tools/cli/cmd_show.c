/* `elbo reconstruct`, `elbo interpolate`, `elbo traverse`: pictures of a latent-variable
 * model's encoder and decoder (the encode / decode hooks of the elbo_model interface). Each
 * writes a PNG grid (--out FILE.png) or uint8 .npy (--out FILE.npy), and with --npy FILE
 * the .npy as well. */
#include "elbo.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int cli_parse_data(const char *data, const char *split_s, elbo_data_spec *spec,
                   elbo_data_split *split) {
    if (elbo_data_split_parse(split_s, split) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--split: expected train or test, got \"%s\"", split_s);
    if (elbo_data_spec_parse(data, spec) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--data: %s", elbo_last_error());
    return 0;
}

int cli_check_image_out(const char *flag, const char *path, int npy_only) {
    if (!path) return 0;
    if (cli_ends_with(path, ".npy") || (!npy_only && cli_ends_with(path, ".png"))) return 0;
    return args_fail(ARGS_USAGE, "%s: expected a path ending in %s, got \"%s\"", flag,
                     npy_only ? ".npy" : ".png or .npy", path);
}

elbo_status cli_write_images(const char *path, const float *x, int64_t n, int64_t c, int64_t h,
                             int64_t w, int nrow) {
    if (!cli_ends_with(path, ".npy")) return elbo_png_write_grid(path, x, n, c, h, w, 0.0f, 1.0f, nrow, 2, 0);
    const int64_t total = n * c * h * w;
    uint8_t *u8 = malloc((size_t)total);
    if (!u8) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < total; i++) {
        float v = x[i] < 0 ? 0 : x[i] > 1 ? 1 : x[i];
        u8[i] = (uint8_t)floorf(255.0f * v + 0.5f);
    }
    int64_t shape[4] = {n, c, h, w};
    elbo_status st = elbo_npy_write(path, ELBO_NPY_U8, 4, shape, u8);
    free(u8);
    return st;
}

/* An int64 flag >= 0 and a positive double flag under their own names. */
static arg_flag i64_flag(const char *name, int64_t *dst, const char *meta, const char *help,
                         const char *deflt) {
    arg_flag f = args_steps(dst, deflt);
    f.name = name;
    f.meta = meta;
    f.help = help;
    f.min = 0;
    return f;
}

static arg_flag positive_flag(const char *name, double *dst, const char *meta, const char *help,
                              const char *deflt) {
    arg_flag f = args_lr(dst, deflt);
    f.name = name;
    f.meta = meta;
    f.help = help;
    f.min = 1;
    return f;
}

/* The model of CKPT with its encoder and decoder, and the items `idx` of a split of SPEC as
 * the model's input x (deterministic: Bernoulli and Gaussian models see p / 255, logistic
 * ones 2 p / 255 - 1) and as [0, 1] pictures. */
typedef struct {
    elbo_model *m;
    elbo_dataset ds;
    int have_ds;
    int64_t step;
    int64_t D;
} show_ctx;

static int show_open(show_ctx *s, const char *cmd, const char *ckpt, const char *data,
                     const char *split_s) {
    memset(s, 0, sizeof *s);
    if (elbo_model_load(ckpt, &s->m, NULL, &s->step) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "%s: %s", cmd, elbo_last_error());
    if (!s->m->encode || !s->m->decode) {
        int rc = args_fail(ARGS_RUNTIME, "%s: %s: model %s has no encoder and decoder (use vae or hvae)",
                           cmd, ckpt, s->m->name);
        elbo_model_free(s->m);
        s->m = NULL;
        return rc;
    }
    s->D = s->m->c * s->m->h * s->m->w;
    if (!data) return 0;
    elbo_data_split split;
    elbo_data_spec spec;
    int pr = cli_parse_data(data, split_s, &spec, &split);
    if (pr) return pr;
    if (spec.kind == ELBO_DATA_TOY)
        return args_fail(ARGS_USAGE, "--data: %s: toy points are not images", data);
    if (elbo_dataset_load(&spec, split, &s->ds) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "%s: %s", cmd, elbo_last_error());
    s->have_ds = 1;
    if (s->ds.c != s->m->c || s->ds.h != s->m->h || s->ds.w != s->m->w)
        return args_fail(ARGS_RUNTIME, "%s: %s: images are (%lld, %lld, %lld), the model's (%lld, %lld, %lld)",
                         cmd, data, (long long)s->ds.c, (long long)s->ds.h, (long long)s->ds.w,
                         (long long)s->m->c, (long long)s->m->h, (long long)s->m->w);
    return 0;
}

static void show_close(show_ctx *s) {
    elbo_model_free(s->m);
    if (s->have_ds) elbo_dataset_free(&s->ds);
}

/* x (n, D) for the model and pic (n, D) in [0, 1] of items idx[0..n). */
static elbo_status show_items(show_ctx *s, const int64_t *idx, int64_t n, float *x, float *pic) {
    elbo_pixel_transform t = s->m->transform == ELBO_PIXELS_SCALE11 ? ELBO_PIXELS_SCALE11 : ELBO_PIXELS_SCALE01;
    elbo_status st = elbo_dataset_batch(&s->ds, idx, n, ELBO_PIXELS_SCALE01, 0, NULL, pic, NULL);
    if (st == ELBO_OK) st = elbo_dataset_batch(&s->ds, idx, n, t, 0, NULL, x, NULL);
    return st;
}

static int show_write(const char *cmd, const char *out, const char *npy, const float *img,
                      int64_t n, const elbo_model *m, int nrow) {
    elbo_status st = cli_write_images(out, img, n, m->c, m->h, m->w, nrow);
    if (st == ELBO_OK && npy) st = cli_write_images(npy, img, n, m->c, m->h, m->w, nrow);
    return st == ELBO_OK ? 0 : args_fail(ARGS_RUNTIME, "%s: %s", cmd, elbo_last_error());
}

static void print_json(const char *cmd, const char *ckpt, const show_ctx *s, int64_t n,
                       const char *out, const char *extra) {
    printf("{\"command\":\"%s\", \"ckpt\":", cmd);
    args_json_string(stdout, ckpt);
    printf(", \"model\":\"%s\", \"step\":%lld, \"images\":%lld%s, \"out\":", s->m->name,
           (long long)s->step, (long long)n, extra ? extra : "");
    args_json_string(stdout, out);
    printf("}\n");
}

/* ---- reconstruct ------------------------------------------------------------------------- */
static const char *RECON_USAGE =
    "usage: elbo reconstruct CKPT --data SPEC --out FILE.png|FILE.npy [flags]\n"
    "\n"
    "Items --first .. --first + --n - 1 of a split of SPEC and their reconstructions: the\n"
    "decoder's mean image at the encoder's mean, x -> E_q[z|x] -> E_p[x|z] (hvae: through the\n"
    "top layer, up the means of q and down the means of p). The PNG has the originals in\n"
    "the first row(s) and the reconstructions below them, --nrow per row; the .npy holds\n"
    "uint8 (2 N, C, H, W), originals first. Prints {\"command\", \"ckpt\", \"model\", \"step\",\n"
    "\"images\", \"out\"}.\n";

int cmd_reconstruct(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *npy = NULL, *split_s = "test";
    int n = 8, nrow = 8, threads = 0;
    int64_t first = 0;
    arg_flag flags[] = {
        args_string("--data", &data, "SPEC", "the dataset (" ELBO_DATA_SPEC_FORMS ")", "required"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_int("--n", &n, 1, 4096, "N", "images to reconstruct", "8"),
        i64_flag("--first", &first, "I", "index of the first item", "0"),
        args_out(&out, "output file, .png or .npy", "required"),
        args_string("--npy", &npy, "FILE", "also write the .npy here", "none"),
        args_int("--nrow", &nrow, 1, 65536, "K", "images per row of the PNG grid", "8"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("reconstruct", RECON_USAGE, flags, (int)(sizeof flags / sizeof flags[0]),
                       argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "reconstruct: which checkpoint? (see elbo reconstruct --help)");
    if (!data) return args_fail(ARGS_USAGE, "reconstruct: --data: required");
    if (!out) return args_fail(ARGS_USAGE, "reconstruct: --out: required");
    if ((r = cli_check_image_out("--out", out, 0)) || (r = cli_check_image_out("--npy", npy, 1))) return r;
    if (threads > 0) elbo_set_threads(threads);
    show_ctx s;
    if ((r = show_open(&s, "reconstruct", pos[0], data, split_s))) {
        show_close(&s);
        return r;
    }
    if (first + n > s.ds.n) {
        r = args_fail(ARGS_USAGE, "--first: items %lld..%lld asked for, the split has %lld",
                      (long long)first, (long long)(first + n - 1), (long long)s.ds.n);
        show_close(&s);
        return r;
    }
    const int64_t D = s.D, Z = s.m->z_dim;
    int64_t *idx = malloc((size_t)n * sizeof *idx);
    float *x = malloc((size_t)(n * D) * sizeof *x), *img = malloc((size_t)(2 * n * D) * sizeof *img);
    float *z = malloc((size_t)(n * Z) * sizeof *z);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_status st = idx && x && img && z && ctx ? ELBO_OK : elbo_error(ELBO_ERR_NOMEM, "out of memory");
    for (int64_t i = 0; idx && i < n; i++) idx[i] = first + i;
    if (st == ELBO_OK) st = show_items(&s, idx, n, x, img);
    if (st == ELBO_OK) st = s.m->encode(ctx, s.m, x, n, z);
    if (st == ELBO_OK) st = s.m->decode(ctx, s.m, z, n, img + n * D);
    if (st != ELBO_OK) r = args_fail(ARGS_RUNTIME, "reconstruct: %s", elbo_last_error());
    else if (!(r = show_write("reconstruct", out, npy, img, 2 * n, s.m, nrow)))
        print_json("reconstruct", pos[0], &s, 2 * n, out, NULL);
    elbo_ctx_free(ctx);
    free(idx);
    free(x);
    free(img);
    free(z);
    show_close(&s);
    return r;
}

/* ---- interpolate ------------------------------------------------------------------------- */
static const char *INTERP_USAGE =
    "usage: elbo interpolate CKPT --data SPEC --out FILE.png|FILE.npy [flags]\n"
    "\n"
    "Linear interpolation in latent space between two items a = --from and b = --to of a\n"
    "split of SPEC: z_t = (1 - t) E_q[z|x_a] + t E_q[z|x_b] for --steps values of t evenly in\n"
    "[0, 1], each decoded to its mean image. The PNG row is x_a, the --steps decodings, x_b;\n"
    "the .npy holds the decodings, uint8 (steps, C, H, W). Prints {\"command\", ..., \"out\"}.\n";

int cmd_interpolate(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *npy = NULL, *split_s = "test";
    int steps = 10, from = 0, to = 1, threads = 0;
    arg_flag flags[] = {
        args_string("--data", &data, "SPEC", "the dataset (" ELBO_DATA_SPEC_FORMS ")", "required"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_int("--from", &from, 0, INT32_MAX, "I", "index of the first item", "0"),
        args_int("--to", &to, 0, INT32_MAX, "J", "index of the second item", "1"),
        args_int("--steps", &steps, 2, 1024, "K", "interpolation points, ends included", "10"),
        args_out(&out, "output file, .png or .npy", "required"),
        args_string("--npy", &npy, "FILE", "also write the .npy here", "none"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("interpolate", INTERP_USAGE, flags, (int)(sizeof flags / sizeof flags[0]),
                       argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "interpolate: which checkpoint? (see elbo interpolate --help)");
    if (!data) return args_fail(ARGS_USAGE, "interpolate: --data: required");
    if (!out) return args_fail(ARGS_USAGE, "interpolate: --out: required");
    if ((r = cli_check_image_out("--out", out, 0)) || (r = cli_check_image_out("--npy", npy, 1))) return r;
    if (threads > 0) elbo_set_threads(threads);
    show_ctx s;
    if ((r = show_open(&s, "interpolate", pos[0], data, split_s))) {
        show_close(&s);
        return r;
    }
    if (from >= s.ds.n || to >= s.ds.n) {
        r = args_fail(ARGS_USAGE, "--%s: item %d asked for, the split has %lld", from >= s.ds.n ? "from" : "to",
                      from >= s.ds.n ? from : to, (long long)s.ds.n);
        show_close(&s);
        return r;
    }
    const int64_t D = s.D, Z = s.m->z_dim, K = steps;
    int64_t idx[2] = {from, to};
    float *x = malloc((size_t)(2 * D) * sizeof *x), *pic = malloc((size_t)(2 * D) * sizeof *pic);
    float *img = malloc((size_t)((K + 2) * D) * sizeof *img), *ze = malloc((size_t)(2 * Z) * sizeof *ze);
    float *z = malloc((size_t)(K * Z) * sizeof *z);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_status st = x && pic && img && ze && z && ctx ? ELBO_OK : elbo_error(ELBO_ERR_NOMEM, "out of memory");
    if (st == ELBO_OK) st = show_items(&s, idx, 2, x, pic);
    if (st == ELBO_OK) st = s.m->encode(ctx, s.m, x, 2, ze);
    for (int64_t k = 0; st == ELBO_OK && k < K; k++) {
        const float t = (float)k / (float)(K - 1);
        for (int64_t j = 0; j < Z; j++) z[k * Z + j] = (1.0f - t) * ze[j] + t * ze[Z + j];
    }
    if (st == ELBO_OK) st = s.m->decode(ctx, s.m, z, K, img + D);
    if (st != ELBO_OK) r = args_fail(ARGS_RUNTIME, "interpolate: %s", elbo_last_error());
    else {
        memcpy(img, pic, (size_t)D * sizeof *img);
        memcpy(img + (K + 1) * D, pic + D, (size_t)D * sizeof *img);
        const int is_npy = cli_ends_with(out, ".npy");
        /* the .npy: the decodings only; the PNG: with the two items at the ends */
        elbo_status w = is_npy ? cli_write_images(out, img + D, K, s.m->c, s.m->h, s.m->w, (int)K)
                               : cli_write_images(out, img, K + 2, s.m->c, s.m->h, s.m->w, (int)(K + 2));
        if (w == ELBO_OK && npy) w = cli_write_images(npy, img + D, K, s.m->c, s.m->h, s.m->w, (int)K);
        if (w != ELBO_OK) r = args_fail(ARGS_RUNTIME, "interpolate: %s", elbo_last_error());
        else print_json("interpolate", pos[0], &s, is_npy ? K : K + 2, out, NULL);
    }
    elbo_ctx_free(ctx);
    free(x);
    free(pic);
    free(img);
    free(ze);
    free(z);
    show_close(&s);
    return r;
}

/* ---- traverse ---------------------------------------------------------------------------- */
/* dims[0..*nd) <- the min(10, Z) dimensions of largest Var_x E_q[z_d|x] over the split's
 * first min(1000, N) items, largest first (ties: the lower index). */
static int most_active(show_ctx *s, int *dims, int *nd) {
    const int64_t Z = s->m->z_dim, D = s->D, N = s->ds.n < 1000 ? s->ds.n : 1000, B = 100;
    double *sum = calloc((size_t)Z, sizeof(double)), *sq = calloc((size_t)Z, sizeof(double));
    float *x = malloc((size_t)(B * D) * sizeof(float)), *pic = malloc((size_t)(B * D) * sizeof(float));
    float *z = malloc((size_t)(B * Z) * sizeof(float));
    int64_t idx[100];
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_status st = sum && sq && x && pic && z && ctx ? ELBO_OK : elbo_error(ELBO_ERR_NOMEM, "out of memory");
    for (int64_t i0 = 0; st == ELBO_OK && i0 < N; i0 += B) {
        const int64_t b = N - i0 < B ? N - i0 : B;
        for (int64_t k = 0; k < b; k++) idx[k] = i0 + k;
        elbo_ctx_reset(ctx);
        st = show_items(s, idx, b, x, pic);
        if (st == ELBO_OK) st = s->m->encode(ctx, s->m, x, b, z);
        for (int64_t k = 0; st == ELBO_OK && k < b; k++)
            for (int64_t j = 0; j < Z; j++) {
                sum[j] += z[k * Z + j];
                sq[j] += (double)z[k * Z + j] * z[k * Z + j];
            }
    }
    *nd = 0;
    for (int a = 0; st == ELBO_OK && a < Z && a < 10; a++) { /* selection of the a-th largest */
        int64_t best = -1;
        double bv = -1;
        for (int64_t j = 0; j < Z; j++) {
            int used = 0;
            for (int u = 0; u < *nd; u++) used |= dims[u] == j;
            double mean = sum[j] / (double)N, var = sq[j] / (double)N - mean * mean;
            if (!used && var > bv) {
                bv = var;
                best = j;
            }
        }
        dims[(*nd)++] = (int)best;
    }
    elbo_ctx_free(ctx);
    free(sum);
    free(sq);
    free(x);
    free(pic);
    free(z);
    return st == ELBO_OK ? 0 : args_fail(ARGS_RUNTIME, "traverse: %s", elbo_last_error());
}

static const char *TRAVERSE_USAGE =
    "usage: elbo traverse CKPT --out FILE.png|FILE.npy [flags]\n"
    "\n"
    "A latent traversal grid: one row per latent dimension d of --dims (default: with --data,\n"
    "the min(10, Z) dimensions whose E_q[z_d|x] varies most over the split's first 1000\n"
    "items, the most active first; without, the first min(10, Z)), --steps columns with z_d = v for v evenly in [-R, R] (R = --range) and the\n"
    "other coordinates at the base point: 0 (the prior's mean), or E_q[z|x] of item --index\n"
    "of --data. Each cell is the decoder's mean image. The .npy holds uint8 (rows steps, C,\n"
    "H, W). Prints {\"command\", ..., \"dims\", \"out\"}.\n";

int cmd_traverse(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *npy = NULL, *split_s = "test", *dims_s = NULL;
    int steps = 9, index = -1, threads = 0;
    double range = 3;
    arg_flag flags[] = {
        args_string("--dims", &dims_s, "LIST", "latent dimensions, comma-separated, 0-based",
                    "0,1,..,min(10,Z)-1"),
        args_int("--steps", &steps, 2, 1024, "K", "values per dimension", "9"),
        positive_flag("--range", &range, "R", "the values run over [-R, R]", "3"),
        args_string("--data", &data, "SPEC", "the dataset of --index and of the default --dims",
                    "none"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_int("--index", &index, 0, INT32_MAX, "I", "base point E_q[z|x_I] (needs --data)",
                 "none: z = 0"),
        args_out(&out, "output file, .png or .npy", "required"),
        args_string("--npy", &npy, "FILE", "also write the .npy here", "none"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("traverse", TRAVERSE_USAGE, flags, (int)(sizeof flags / sizeof flags[0]),
                       argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "traverse: which checkpoint? (see elbo traverse --help)");
    if (!out) return args_fail(ARGS_USAGE, "traverse: --out: required");
    if (index >= 0 && !data) return args_fail(ARGS_USAGE, "--index: needs --data");
    if ((r = cli_check_image_out("--out", out, 0)) || (r = cli_check_image_out("--npy", npy, 1))) return r;
    if (threads > 0) elbo_set_threads(threads);
    show_ctx s;
    if ((r = show_open(&s, "traverse", pos[0], data, split_s))) {
        show_close(&s);
        return r;
    }
    const int64_t D = s.D, Z = s.m->z_dim, K = steps;
    int dims[256], nd = 0;
    if (dims_s) {
        const char *p = dims_s;
        while (*p) {
            char *end;
            long v = (*p >= '0' && *p <= '9') ? strtol(p, &end, 10) : -1;
            if (v < 0 || v >= Z || nd >= 256 || (v >= 0 && *end && *end != ',')) {
                r = args_fail(ARGS_USAGE, "--dims: expected dimensions in 0..%lld, comma-separated, got \"%s\"",
                              (long long)Z - 1, dims_s);
                show_close(&s);
                return r;
            }
            dims[nd++] = (int)v;
            p = *end ? end + 1 : end;
        }
    } else if (!s.have_ds) {
        for (int d = 0; d < Z && d < 10; d++) dims[nd++] = d;
    } else if ((r = most_active(&s, dims, &nd))) {
        show_close(&s);
        return r;
    }
    if (index >= s.ds.n && s.have_ds) {
        r = args_fail(ARGS_USAGE, "--index: item %d asked for, the split has %lld", index, (long long)s.ds.n);
        show_close(&s);
        return r;
    }
    float *base = calloc((size_t)Z, sizeof *base), *x = malloc((size_t)D * sizeof *x);
    float *pic = malloc((size_t)D * sizeof *pic), *z = malloc((size_t)(nd * K * Z) * sizeof *z);
    float *img = malloc((size_t)(nd * K * D) * sizeof *img);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_status st = base && x && pic && z && img && ctx ? ELBO_OK : elbo_error(ELBO_ERR_NOMEM, "out of memory");
    if (st == ELBO_OK && index >= 0) {
        int64_t i = index;
        st = show_items(&s, &i, 1, x, pic);
        if (st == ELBO_OK) st = s.m->encode(ctx, s.m, x, 1, base);
    }
    for (int a = 0; st == ELBO_OK && a < nd; a++)
        for (int64_t k = 0; k < K; k++) {
            float *zk = z + (a * K + k) * Z;
            memcpy(zk, base, (size_t)Z * sizeof *zk);
            zk[dims[a]] = (float)(-range + 2 * range * (double)k / (double)(K - 1));
        }
    if (st == ELBO_OK) st = s.m->decode(ctx, s.m, z, nd * K, img);
    if (st != ELBO_OK) r = args_fail(ARGS_RUNTIME, "traverse: %s", elbo_last_error());
    else if (!(r = show_write("traverse", out, npy, img, nd * K, s.m, (int)K))) {
        char extra[64];
        snprintf(extra, sizeof extra, ", \"dims\":%d", nd);
        print_json("traverse", pos[0], &s, nd * K, out, extra);
    }
    elbo_ctx_free(ctx);
    free(base);
    free(x);
    free(pic);
    free(z);
    free(img);
    show_close(&s);
    return r;
}
