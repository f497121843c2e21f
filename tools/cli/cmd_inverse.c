/* `elbo inverse`: a pretrained diffusion checkpoint as a plug-and-play prior for inverse
 * problems (include/elbo/inverse.h): inpainting, super-resolution, denoising, deblurring and
 * a classifier constraint, solved by plug-and-play optimisation, DPS or RePaint, with PSNR /
 * SSIM against simple baselines. */
#include "elbo.h"
#include "elbo/inverse.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *INVERSE_USAGE =
    "usage: elbo inverse CKPT --task TASK --solver SOLVER --out FILE.png [flags]\n"
    "\n"
    "Solves y = A(x) + sigma_y n for x with the diffusion model of CKPT as the prior, without\n"
    "retraining it (x on the model's [-1, 1] scale; sigma_y is given in [0, 1] pixel units and\n"
    "is 2 sigma_y there). Tasks (the operator A):\n"
    "  inpaint     y = m x: --mask box (a centred h/2 x w/2 square missing) | random (each\n"
    "              pixel kept with probability --keep) | half (the right half missing) |\n"
    "              FILE.png (white = observed)\n"
    "  superres    y = the mean of each --factor x --factor block\n"
    "  denoise     y = x\n"
    "  deblur      y = a Gaussian blur of std --blur-sigma pixels (circular boundaries)\n"
    "  constraint  no measurement: generate images the clean classifier --classifier puts in\n"
    "              --class K (or all: --n per class), E(x) = -w log p(K | x) (Graikos et al.)\n"
    "Solvers (each for any task and any diffusion, NCSN or SDE checkpoint):\n"
    "  pnp      plug-and-play (Graikos et al. 2022): Adam on x against\n"
    "           w(t) ||eps - eps_hat(alpha x + sigma eps, t)||^2 + E(x), E(x) = ||y - A x||^2 /\n"
    "           (2 sigma_y^2), the gradient through the network, w(t) = -dlog_snr/dt / 2 (the\n"
    "           ELBO's), t annealed from --t-max to --t-min (--schedule anneal, the paper's) or\n"
    "           drawn uniformly (--schedule uniform: stochastic gradient on the bound, whose\n"
    "           fixed point is the MAP of p(x | y)); x starts at A^+ y (y for denoise and\n"
    "           deblur; --init measurement) or N(0, I) (--init noise, the paper's; constraint)\n"
    "  dps      diffusion posterior sampling (Chung et al. 2023): ancestral steps pushed by\n"
    "           grad_{x_t} E(x0_hat(x_t)) through Tweedie's x0_hat. --dps-step norm: after each\n"
    "           step x -= zeta grad ||y - A x0_hat|| (the released code's; independent of\n"
    "           sigma_y); likelihood: guidance by DPS's p(y | x_t) ~ N(y; A x0_hat, sigma_y^2 I)\n"
    "           at scale zeta, x0_hat -= zeta (sigma_t^2 / alpha_t) grad E (zeta = 1: that\n"
    "           likelihood exactly; over-confident at high noise, it can diverge); pigdm: the\n"
    "           same with the variance sigma_y^2 + c r_t^2, r_t^2 = sigma_t^2 / (alpha_t^2 +\n"
    "           sigma_t^2), A A^T = c I (PiGDM's, Song et al. 2023; c = 1 / f^2 for superres)\n"
    "  repaint  RePaint (Lugmayr et al. 2022), inpainting only: known pixels from q(x_s | y),\n"
    "           unknown from the ancestral step, --jump / --resample resampling\n"
    "Images: --data SPEC (--split, --from, --n) or --in FILE (.npy uint8 or float32 [0, 1]\n"
    "(N, C, H, W), or a .png of one image): the ground truth, measured by A with noise from\n"
    "--seed; or --y FILE.npy, a measurement itself (float32 [0, 1] or uint8, (N, C, H', W') as A\n"
    "gives: for superres the low-resolution images). --samples S draws S posterior samples\n"
    "per input; the PNG has rows truth, measurement, reconstruction (the mean of the samples)\n"
    "and, for S > 1, the per-pixel standard deviation (scaled to its maximum); --npy writes the\n"
    "mean as float32 [0, 1] (N, C, H, W), and for S > 1 NAME.std.npy and NAME.samples.npy\n"
    "(S, N, C, H, W). --eval prints PSNR and SSIM (on [0, 1]) of the reconstruction and of the\n"
    "task's simple baselines (inpaint: mean fill, nearest-neighbour fill; superres: bicubic;\n"
    "denoise: one Tweedie step of the model, a Gaussian filter of std --filter-sigma; deblur:\n"
    "the blurred measurement), a table then one JSON line. Without --eval the JSON line has\n"
    "the solver's figures only. For constraint, --eval reports the classifier's accuracy.\n";

typedef enum { SOLVER_PNP = 0, SOLVER_DPS, SOLVER_REPAINT } solver_kind;

/* The inputs of one run, gathered from the flags. */
typedef struct {
    elbo_model *m;
    int64_t c, h, w, D, M, N; /* image shape, values per image and per measurement, inputs */
    float *truth;             /* (N, D) in [-1, 1] or NULL (from --y, or constraint) */
    float *y;                 /* (N, M) on the model's scale, NULL for constraint */
    int32_t *labels;          /* constraint: (N) */
} inverse_inputs;

/* Loads images (N, c, h, w) from a .npy (uint8, or float32 in [0, 1]) or a one-image .png
 * into x (malloc'd, [-1, 1] scale when to11, else [0, 1]); the expected shape after the first
 * axis is (c, h, w). A mismatch is a usage error naming flag and file. */
static int load_images(const char *flag, const char *path, int64_t c, int64_t h, int64_t w,
                       float **x, int64_t *n) {
    *x = NULL, *n = 0;
    if (cli_ends_with(path, ".png")) {
        uint8_t *px = NULL;
        int64_t ph, pw, pc;
        if (elbo_png_read(path, &px, &ph, &pw, &pc) != ELBO_OK)
            return args_fail(ARGS_RUNTIME, "%s: %s", flag, elbo_last_error());
        if (ph != h || pw != w || (pc != c && !(c == 1 && pc == 3))) {
            free(px);
            return args_fail(ARGS_USAGE, "%s: %s is %lld x %lld with %lld channels; the model "
                             "wants (%lld, %lld, %lld)", flag, path, (long long)ph, (long long)pw,
                             (long long)pc, (long long)c, (long long)h, (long long)w);
        }
        float *v = malloc((size_t)(c * h * w) * sizeof *v);
        if (!v) {
            free(px);
            return args_fail(ARGS_RUNTIME, "%s: out of memory", flag);
        }
        for (int64_t k = 0; k < c; k++)
            for (int64_t i = 0; i < h * w; i++) v[k * h * w + i] = px[i * pc + k] / 127.5f - 1.0f;
        free(px);
        *x = v, *n = 1;
        return 0;
    }
    elbo_npy_array a = {0};
    if (elbo_npy_read(path, &a) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "%s: %s", flag, elbo_last_error());
    if (a.ndim != 4 || a.shape[1] != c || a.shape[2] != h || a.shape[3] != w || a.shape[0] < 1 ||
        (a.dtype != ELBO_NPY_U8 && a.dtype != ELBO_NPY_F32)) {
        int rc = args_fail(ARGS_USAGE, "%s: %s: expected uint8 or float32 (N, %lld, %lld, %lld), "
                           "got a %d-d %s array", flag, path, (long long)c, (long long)h,
                           (long long)w, a.ndim, a.dtype == ELBO_NPY_I64 ? "int64" : "image");
        elbo_npy_free(&a);
        return rc;
    }
    float *v = malloc((size_t)a.numel * sizeof *v);
    if (!v) {
        elbo_npy_free(&a);
        return args_fail(ARGS_RUNTIME, "%s: out of memory", flag);
    }
    for (int64_t i = 0; i < a.numel; i++)
        v[i] = a.dtype == ELBO_NPY_U8 ? ((const uint8_t *)a.data)[i] / 127.5f - 1.0f
                                      : 2.0f * ((const float *)a.data)[i] - 1.0f;
    *x = v, *n = a.shape[0];
    elbo_npy_free(&a);
    return 0;
}

/* Per-image mean PSNR and SSIM of x against ref (both (N, c, h, w) on [-1, 1]). */
static elbo_status score(const float *x, const float *ref, int64_t N, int64_t c, int64_t h,
                         int64_t w, float *a01, float *b01, double *psnr, double *ssim) {
    const int64_t D = c * h * w;
    double ps = 0, ss = 0;
    for (int64_t i = 0; i < N; i++) {
        elbo_pixels_to01(x + i * D, D, a01);
        elbo_pixels_to01(ref + i * D, D, b01);
        for (int64_t j = 0; j < D; j++) a01[j] = a01[j] < 0 ? 0 : a01[j] > 1 ? 1 : a01[j];
        double s;
        elbo_status st = elbo_ssim(a01, b01, c, h, w, &s);
        if (st) return st;
        double p = elbo_psnr(a01, b01, D);
        ps += isfinite(p) ? p : 100.0;
        ss += s;
    }
    *psnr = ps / (double)N, *ssim = ss / (double)N;
    return ELBO_OK;
}

int cmd_inverse(int argc, char **argv) {
    const char *task_s = NULL, *solver_s = NULL, *out = NULL, *npy_out = NULL, *data = NULL,
               *split_s = "test", *in = NULL, *y_in = NULL, *mask_s = "box", *clf_path = NULL,
               *class_s = "0", *schedule_s = "anneal", *dps_step_s = "norm", *init_s = NULL,
               *weighting_s = "elbo";
    int n_flag = 8, from = 0, threads = 0, samples = 1, factor = 4, batch = 64, do_eval = 0;
    int steps = 0, jump = 10, resample = 10, energy_decay = 0;
    double keep = 0.5, sigma_y = 0.05, blur_sigma = 2.0, lr = 0.01, t_min = 0.02, t_max = 1.0;
    double prior_weight = 1.0, zeta = 1.0, cweight = 1.0, filter_sigma = 1.0;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_string("--task", &task_s, "T", "inpaint | superres | denoise | deblur | constraint",
                    "required"),
        args_string("--solver", &solver_s, "S", "pnp | dps | repaint", "required"),
        args_out(&out, "the PNG grid", "required"),
        args_string("--npy", &npy_out, "FILE", "the reconstruction as float32 .npy", "none"),
        args_string("--data", &data, "SPEC", "ground-truth images (" ELBO_DATA_SPEC_FORMS ")",
                    "none"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_int("--from", &from, 0, 1 << 30, "I", "--data: the first image", "0"),
        args_int("--n", &n_flag, 1, 1 << 20, "N", "--data: images; constraint: images (per "
                 "class with --class all)", "8"),
        args_string("--in", &in, "FILE", "ground-truth images, .npy (N, C, H, W) or .png", "none"),
        args_string("--y", &y_in, "FILE", "a measurement .npy (N, C, H', W') instead", "none"),
        args_string("--mask", &mask_s, "M", "inpaint: box | random | half | FILE.png", "box"),
        {"--keep", ARG_DOUBLE, &keep, "P", "inpaint --mask random: observed share", "0.5", 1, 0, 0},
        args_int("--factor", &factor, 1, 64, "F", "superres: downsampling factor", "4"),
        {"--blur-sigma", ARG_DOUBLE, &blur_sigma, "S", "deblur: kernel std, pixels", "2", 1, 0, 0},
        {"--sigma-y", ARG_DOUBLE, &sigma_y, "S", "measurement noise std, [0, 1] pixel units",
         "0.05", 0, 0, 0},
        args_string("--classifier", &clf_path, "CKPT", "constraint: the clean classifier", "none"),
        args_string("--class", &class_s, "K", "constraint: the class, or all", "0"),
        {"--constraint-weight", ARG_DOUBLE, &cweight, "W", "constraint: w in -w log p(K | x)",
         "1", 1, 0, 0},
        args_int("--samples", &samples, 1, 1024, "S", "posterior samples per input", "1"),
        args_int("--steps", &steps, 0, 1 << 24, "K", "solver steps (0: pnp 1000, dps 1000, "
                 "repaint 250)", "0"),
        {"--lr", ARG_DOUBLE, &lr, "LR", "pnp: Adam's step size", "0.01", 1, 0, 0},
        args_string("--schedule", &schedule_s, "S", "pnp: anneal | uniform", "anneal"),
        args_string("--init", &init_s, "I", "pnp: x's start, measurement (A^+ y, or y for denoise "
                    "and deblur) | noise (N(0, I), the paper's)", "measurement; constraint: noise"),
        {"--t-min", ARG_DOUBLE, &t_min, "T", "pnp: the lowest t", "0.02", 0, 0, 0},
        {"--t-max", ARG_DOUBLE, &t_max, "T", "pnp: the highest t", "1", 1, 0, 0},
        {"--prior-weight", ARG_DOUBLE, &prior_weight, "W", "pnp: the prior term's weight", "1", 1,
         0, 0},
        args_string("--weighting", &weighting_s, "W", "pnp: the prior term's w(t), elbo "
                    "(-dlog_snr/dt / 2) | simple (1 / D, the paper's mean squared error)", "elbo"),
        args_bool("--energy-decay", &energy_decay, "pnp: E's weight (1 - i/N) at step i, the "
                  "paper's"),
        {"--zeta", ARG_DOUBLE, &zeta, "Z", "dps: the step scale", "1", 1, 0, 0},
        args_string("--dps-step", &dps_step_s, "S", "dps: norm | likelihood | pigdm", "norm"),
        args_int("--jump", &jump, 1, 1 << 20, "J", "repaint: jump length", "10"),
        args_int("--resample", &resample, 1, 1 << 20, "R", "repaint: resamplings per jump", "10"),
        args_bool("--eval", &do_eval, "PSNR / SSIM against the task's baselines"),
        {"--filter-sigma", ARG_DOUBLE, &filter_sigma, "S", "denoise baseline: Gaussian filter "
         "std, pixels", "1", 1, 0, 0},
        args_int("--batch", &batch, 1, 1 << 20, "B", "images per solver call", "64"),
        args_seed(&seed, "0"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const int nf = (int)(sizeof flags / sizeof flags[0]);
    const char *pos[1];
    int np = 0;
    int r = args_parse("inverse", INVERSE_USAGE, flags, nf, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "inverse: which checkpoint? (see elbo inverse --help)");
    if (!task_s) return args_fail(ARGS_USAGE, "inverse: --task: required");
    if (!solver_s) return args_fail(ARGS_USAGE, "inverse: --solver: required");
    if (!out) return args_fail(ARGS_USAGE, "inverse: --out: required");
    if (!cli_ends_with(out, ".png"))
        return args_fail(ARGS_USAGE, "--out: expected a .png file, got \"%s\"", out);
    if (npy_out && !cli_ends_with(npy_out, ".npy"))
        return args_fail(ARGS_USAGE, "--npy: expected a .npy file, got \"%s\"", npy_out);
    const int constraint = !strcmp(task_s, "constraint");
    elbo_op_kind op_kind = ELBO_OP_DENOISE;
    if (!constraint && elbo_op_kind_parse(task_s, &op_kind) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--task: expected inpaint, superres, denoise, deblur or "
                         "constraint, got \"%s\"", task_s);
    solver_kind solver;
    if (!strcmp(solver_s, "pnp")) solver = SOLVER_PNP;
    else if (!strcmp(solver_s, "dps")) solver = SOLVER_DPS;
    else if (!strcmp(solver_s, "repaint")) solver = SOLVER_REPAINT;
    else return args_fail(ARGS_USAGE, "--solver: expected pnp, dps or repaint, got \"%s\"", solver_s);
    if (solver == SOLVER_REPAINT && (constraint || op_kind != ELBO_OP_INPAINT))
        return args_fail(ARGS_USAGE, "--solver: repaint solves --task inpaint only");
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    elbo_repaint_params rp;
    elbo_repaint_params_init(&rp);
    if (elbo_pnp_schedule_parse(schedule_s, &pp.schedule) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--schedule: expected anneal or uniform, got \"%s\"", schedule_s);
    if (elbo_pnp_weighting_parse(weighting_s, &pp.weighting) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--weighting: expected elbo or simple, got \"%s\"",
                         weighting_s);
    pp.energy_decay = energy_decay;
    if (elbo_dps_step_parse(dps_step_s, &dp.step) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--dps-step: expected norm, likelihood or pigdm, got \"%s\"",
                         dps_step_s);
    if (!(t_min < t_max) || t_max > 1)
        return args_fail(ARGS_USAGE, "--t-min, --t-max: need 0 <= t-min < t-max <= 1, got %g, %g",
                         t_min, t_max);
    if (keep > 1) return args_fail(ARGS_USAGE, "--keep: expected a share in (0, 1], got %g", keep);
    pp.lr = lr, pp.t_min = t_min, pp.t_max = t_max, pp.prior_weight = prior_weight;
    if (init_s && strcmp(init_s, "measurement") && strcmp(init_s, "noise"))
        return args_fail(ARGS_USAGE, "--init: expected measurement or noise, got \"%s\"", init_s);
    const int init_measured = !constraint && (!init_s || !strcmp(init_s, "measurement"));
    if (steps) pp.steps = dp.steps = rp.steps = steps;
    dp.zeta = zeta;
    /* pigdm: A A^T = c I with c = 1 / f^2 for super-resolution, 1 otherwise */
    dp.aat = op_kind == ELBO_OP_SUPERRES ? 1.0 / ((double)factor * factor) : 1.0;
    rp.jump = jump, rp.resample = resample;
    int inputs = (data != NULL) + (in != NULL) + (y_in != NULL);
    if (constraint && inputs)
        return args_fail(ARGS_USAGE, "--task constraint: takes no --data, --in or --y (it generates)");
    if (!constraint && inputs != 1)
        return args_fail(ARGS_USAGE, "inverse: give one of --data, --in or --y");
    if (constraint && !clf_path)
        return args_fail(ARGS_USAGE, "--classifier: required by --task constraint");
    if (do_eval && y_in)
        return args_fail(ARGS_USAGE, "--eval: needs the ground truth (--data or --in), not --y");
    if (threads > 0) elbo_set_threads(threads);

    /* the prior */
    inverse_inputs I = {0};
    if (elbo_model_load(pos[0], &I.m, NULL, NULL) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
    const elbo_diffusion_config *cfg = elbo_diffusion_config_of(I.m);
    int status = 0;
    elbo_model *clf = NULL;
    float *mask = NULL, *results = NULL, *mean = NULL, *sd = NULL, *work = NULL;
    float *view = NULL, *grid = NULL, *base = NULL, *a01 = NULL, *b01 = NULL;
    char std_path[4096] = "", samples_path[4096] = "";
    elbo_ctx *ctx = NULL, *cctx = NULL;
    elbo_dataset ds = {0};
    if (!cfg || !cfg->discrete) {
        status = args_fail(ARGS_USAGE, "inverse: %s: not a diffusion model of 8-bit images", pos[0]);
        goto done;
    }
    I.c = I.m->c, I.h = I.m->h, I.w = I.m->w, I.D = I.c * I.h * I.w;

    /* the operator (model scale: sigma_y doubles) */
    elbo_operator op = {0};
    op.kind = op_kind, op.c = I.c, op.h = I.h, op.w = I.w;
    op.factor = factor, op.blur_sigma = blur_sigma, op.sigma_y = 2.0 * sigma_y;
    if (!constraint && op_kind == ELBO_OP_INPAINT) {
        mask = malloc((size_t)(I.h * I.w) * sizeof *mask);
        if (!mask) {
            status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
            goto done;
        }
        elbo_mask_kind mk;
        elbo_status st = cli_ends_with(mask_s, ".png")
                             ? elbo_mask_load_png(mask_s, I.h, I.w, mask)
                             : elbo_mask_kind_parse(mask_s, &mk) == ELBO_OK
                                   ? elbo_mask_make(mk, I.h, I.w, keep, seed, mask)
                                   : elbo_error(ELBO_ERR_ARG, "expected box, random, half or a "
                                                "mask .png, got \"%s\"", mask_s);
        if (st) {
            status = args_fail(st == ELBO_ERR_ARG ? ARGS_USAGE : ARGS_RUNTIME, "--mask: %s",
                               elbo_last_error());
            goto done;
        }
        op.mask = mask;
    }
    if (!constraint && elbo_op_init(&op) != ELBO_OK) {
        status = args_fail(ARGS_USAGE, "--task %s: %s", task_s, elbo_last_error());
        goto done;
    }
    I.M = constraint ? 0 : elbo_op_dim_y(&op);

    /* the inputs: ground truth (measured here) or a measurement */
    if (data) {
        elbo_data_spec spec;
        elbo_data_split split;
        if ((status = cli_parse_data(data, split_s, &spec, &split))) goto done;
        if (elbo_dataset_load(&spec, split, &ds) != ELBO_OK) {
            status = args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
            goto done;
        }
        if (ds.c != I.c || ds.h != I.h || ds.w != I.w || (int64_t)from + n_flag > ds.n) {
            status = args_fail(ARGS_USAGE, "--data: %s has %lld images of (%lld, %lld, %lld); the "
                               "model wants (%lld, %lld, %lld) and --from %d --n %d", data,
                               (long long)ds.n, (long long)ds.c, (long long)ds.h, (long long)ds.w,
                               (long long)I.c, (long long)I.h, (long long)I.w, from, n_flag);
            goto done;
        }
        I.N = n_flag;
        I.truth = malloc((size_t)(I.N * I.D) * sizeof *I.truth);
        if (!I.truth) {
            status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
            goto done;
        }
        elbo_pixels_scale11(ds.images + (int64_t)from * I.D, I.N * I.D, I.truth);
    } else if (in) {
        if ((status = load_images("--in", in, I.c, I.h, I.w, &I.truth, &I.N))) goto done;
    } else if (y_in) {
        int64_t yh = op_kind == ELBO_OP_SUPERRES ? I.h / factor : I.h;
        int64_t yw = op_kind == ELBO_OP_SUPERRES ? I.w / factor : I.w;
        if ((status = load_images("--y", y_in, I.c, yh, yw, &I.y, &I.N))) goto done;
    }
    if (constraint) {
        cctx = elbo_ctx_new(0);
        if (elbo_model_load(clf_path, &clf, NULL, NULL) != ELBO_OK) {
            status = args_fail(ARGS_RUNTIME, "--classifier: %s", elbo_last_error());
            goto done;
        }
        const elbo_classifier_config *cc = elbo_classifier_config_of(clf);
        if (!cc || cc->noisy || clf->c != I.c || clf->h != I.h || clf->w != I.w) {
            status = args_fail(ARGS_USAGE, "--classifier: %s is not a clean classifier of the "
                               "model's (%lld, %lld, %lld) images", clf_path, (long long)I.c,
                               (long long)I.h, (long long)I.w);
            goto done;
        }
        int all = !strcmp(class_s, "all");
        long long k = 0;
        if (!all && args_parse_ll("--class", class_s, 0, cc->classes - 1, &k)) {
            status = ARGS_USAGE;
            goto done;
        }
        I.N = all ? (int64_t)n_flag * cc->classes : n_flag;
        I.labels = malloc((size_t)I.N * sizeof *I.labels);
        if (!I.labels || !cctx) {
            status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < I.N; i++) I.labels[i] = all ? (int32_t)(i / n_flag) : (int32_t)k;
    }
    if (!constraint && !I.y) {
        I.y = malloc((size_t)(I.N * I.M) * sizeof *I.y);
        if (!I.y) {
            status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
            goto done;
        }
        elbo_rng mrng;
        elbo_rng_init(&mrng, seed ^ 0x6d656173ULL); /* "meas": apart from the solvers' streams */
        if (elbo_op_measure(&op, I.truth, I.N, &mrng, I.y) != ELBO_OK) {
            status = args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
            goto done;
        }
    }

    /* solve: S samples of every input, in chunks of --batch images */
    const int64_t N = I.N, D = I.D, S = samples, B = batch < N ? batch : N;
    results = malloc((size_t)(S * N * D) * sizeof *results);
    mean = malloc((size_t)(N * D) * sizeof *mean);
    sd = malloc((size_t)(N * D) * sizeof *sd);
    work = malloc((size_t)(B * (I.M > D ? I.M : D)) * sizeof *work);
    ctx = elbo_ctx_new(0);
    if (!results || !mean || !sd || !work || !ctx) {
        status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
        goto done;
    }
    elbo_diffusion_denoiser_state dst = {I.m, ctx, B, NULL, 0.0};
    elbo_prior prior = {&cfg->process, elbo_diffusion_denoiser, &dst,
                        elbo_diffusion_denoiser_vjp, &dst, I.c, I.h, I.w,
                        elbo_diffusion_denoiser_vjp_at};
    elbo_classifier_grad_state cgs = {clf, cctx, B};
    for (int64_t s = 0; s < S && !status; s++)
        for (int64_t i0 = 0; i0 < N && !status; i0 += B) {
            const int64_t b = N - i0 < B ? N - i0 : B;
            float *x = results + (s * N + i0) * D;
            dst.batch = b, cgs.batch = b;
            elbo_measurement_energy me = {&op, I.y ? I.y + i0 * I.M : NULL, work};
            elbo_constraint_energy ce = {elbo_classifier_grad, &cgs, I.labels ? I.labels + i0 : NULL,
                                         cweight, D};
            elbo_energy e = constraint ? (elbo_energy){elbo_constraint_energy_fn, &ce, 1.0}
                                       : (elbo_energy){elbo_measurement_energy_fn, &me,
                                                       op.sigma_y > 0 ? op.sigma_y : 1.0 / 255};
            /* one seed per (sample, chunk): the run is reproducible for a given --batch */
            uint64_t sd_seed = seed + 1000003ULL * (uint64_t)s + 7919ULL * (uint64_t)i0 + 1;
            elbo_status st;
            if (solver == SOLVER_PNP) {
                pp.seed = sd_seed;
                st = ELBO_OK;
                if (init_measured && (op_kind == ELBO_OP_INPAINT || op_kind == ELBO_OP_SUPERRES))
                    st = elbo_op_pinv(&op, I.y + i0 * I.M, b, x);
                else if (init_measured)
                    memcpy(x, I.y + i0 * I.M, (size_t)(b * D) * sizeof *x);
                if (!st) st = elbo_pnp_solve(&prior, &e, &pp, init_measured, x, b);
            } else if (solver == SOLVER_DPS) {
                dp.seed = sd_seed;
                st = elbo_dps_solve(&prior, &e, &dp, x, b);
            } else {
                rp.seed = sd_seed;
                st = elbo_repaint_solve(&prior, &op, I.y + i0 * I.M, &rp, x, b);
            }
            if (st) status = args_fail(ARGS_RUNTIME, "inverse: %s: %s", solver_s, elbo_last_error());
        }
    if (status) goto done;
    /* the mean and the per-pixel standard deviation over the samples */
    for (int64_t j = 0; j < N * D; j++) {
        double m1 = 0, m2 = 0;
        for (int64_t s = 0; s < S; s++) m1 += results[s * N * D + j];
        m1 /= (double)S;
        for (int64_t s = 0; s < S; s++) {
            double d = results[s * N * D + j] - m1;
            m2 += d * d;
        }
        mean[j] = (float)m1;
        sd[j] = (float)sqrt(m2 / (double)S);
    }

    /* the grid: truth, measurement, reconstruction, (std) rows of N, in [0, 1] */
    const int have_truth = I.truth != NULL, have_y = I.y != NULL;
    /* constraint: every sample, a row per sample */
    const int64_t rows = constraint ? S : have_truth + have_y + 1 + (S > 1);
    grid = malloc((size_t)(rows * N * D) * sizeof *grid);
    view = malloc((size_t)(N * D) * sizeof *view);
    if (!grid || !view) {
        status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
        goto done;
    }
    int64_t row = 0;
    if (have_truth) elbo_pixels_to01(I.truth, N * D, grid + (row++) * N * D);
    if (have_y) {
        elbo_status st = ELBO_OK;
        if (op_kind == ELBO_OP_INPAINT || op_kind == ELBO_OP_SUPERRES) st = elbo_op_pinv(&op, I.y, N, view);
        else memcpy(view, I.y, (size_t)(N * D) * sizeof *view);
        if (st) {
            status = args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
            goto done;
        }
        float *g = grid + (row++) * N * D;
        elbo_pixels_to01(view, N * D, g);
        if (op_kind == ELBO_OP_INPAINT) /* missing pixels in mid grey */
            for (int64_t i = 0; i < N; i++)
                for (int64_t k = 0; k < I.c; k++)
                    for (int64_t p = 0; p < I.h * I.w; p++)
                        if (mask[p] == 0) g[i * D + k * I.h * I.w + p] = 0.5f;
    }
    if (constraint) elbo_pixels_to01(results, S * N * D, grid), row = S;
    else elbo_pixels_to01(mean, N * D, grid + (row++) * N * D);
    if (S > 1 && !constraint) {
        float mx = 0;
        for (int64_t j = 0; j < N * D; j++) mx = sd[j] > mx ? sd[j] : mx;
        for (int64_t j = 0; j < N * D; j++) grid[row * N * D + j] = mx > 0 ? sd[j] / mx : 0;
        row++;
    }
    for (int64_t j = 0; j < rows * N * D; j++)
        grid[j] = grid[j] < 0 ? 0 : grid[j] > 1 ? 1 : grid[j];

    /* --eval: the solver's PSNR / SSIM against the baselines (or the constraint's accuracy) */
    double psnr = NAN, ssim = NAN, accuracy = NAN;
    double bpsnr[2] = {NAN, NAN}, bssim[2] = {NAN, NAN};
    const char *bname[2] = {NULL, NULL};
    a01 = malloc((size_t)D * sizeof *a01);
    b01 = malloc((size_t)D * sizeof *b01);
    base = malloc((size_t)(N * D) * sizeof *base);
    if (!a01 || !b01 || !base) {
        status = args_fail(ARGS_RUNTIME, "inverse: out of memory");
        goto done;
    }
    elbo_status st = ELBO_OK;
    if (have_truth) st = score(mean, I.truth, N, I.c, I.h, I.w, a01, b01, &psnr, &ssim);
    if (!st && do_eval && constraint) {
        /* every sample, against its input's label */
        const int K = elbo_classifier_config_of(clf)->classes;
        float *logits = malloc((size_t)(S * N * K) * sizeof *logits);
        if (!logits) st = elbo_error(ELBO_ERR_NOMEM, "out of memory");
        for (int64_t i = 0; !st && i < S * N; i += 256) {
            int64_t b = S * N - i < 256 ? S * N - i : 256;
            st = elbo_classifier_forward(cctx, clf, results + i * D, b, NULL, logits + i * K, NULL);
        }
        int64_t correct = 0;
        for (int64_t i = 0; !st && i < S * N; i++) {
            int best = 0;
            for (int k = 1; k < K; k++)
                if (logits[i * K + k] > logits[i * K + best]) best = k;
            correct += best == I.labels[i % N];
        }
        free(logits);
        accuracy = (double)correct / (double)(S * N);
    }
    for (int k = 0; !st && do_eval && !constraint && k < 2; k++) {
        if (op_kind == ELBO_OP_INPAINT) {
            bname[k] = k ? "nearest fill" : "mean fill";
            st = k ? elbo_fill_nearest(I.y, mask, N, I.c, I.h, I.w, base)
                   : elbo_fill_mean(I.y, mask, N, I.c, I.h, I.w, base);
        } else if (op_kind == ELBO_OP_SUPERRES) {
            if (k) break;
            bname[k] = "bicubic";
            st = elbo_upsample_bicubic(I.y, N, I.c, I.h, I.w, factor, base);
        } else if (op_kind == ELBO_OP_DENOISE) {
            if (k == 0) {
                /* one Tweedie step: y = x + s n is x_t / alpha at log_snr = -2 log s */
                bname[k] = "Tweedie step";
                for (int64_t i0 = 0; !st && i0 < N; i0 += B) {
                    const int64_t b = N - i0 < B ? N - i0 : B;
                    dst.batch = b;
                    st = elbo_tweedie_denoise(&cfg->process, elbo_diffusion_denoiser, &dst,
                                              I.y + i0 * D, b * D, op.sigma_y, work,
                                              base + i0 * D, NULL);
                }
            } else {
                bname[k] = "Gaussian filter";
                st = elbo_gaussian_filter(I.y, N, I.c, I.h, I.w, filter_sigma, base);
            }
        } else {
            if (k) break;
            bname[k] = "blurred input";
            memcpy(base, I.y, (size_t)(N * D) * sizeof *base);
        }
        if (!st) st = score(base, I.truth, N, I.c, I.h, I.w, a01, b01, &bpsnr[k], &bssim[k]);
    }
    if (st) {
        status = args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
        goto done;
    }

    /* the outputs (the .npy files, then the PNG; on a failure none is left), the report */
    if (npy_out) {
        int64_t shape[4] = {N, I.c, I.h, I.w};
        elbo_pixels_to01(mean, N * D, view);
        st = elbo_npy_write(npy_out, ELBO_NPY_F32, 4, shape, view);
        if (!st && S > 1) {
            snprintf(std_path, sizeof std_path, "%.*s.std.npy", (int)(strlen(npy_out) - 4), npy_out);
            for (int64_t j = 0; j < N * D; j++) view[j] = 0.5f * sd[j]; /* [-1, 1] -> [0, 1] units */
            st = elbo_npy_write(std_path, ELBO_NPY_F32, 4, shape, view);
        }
        if (!st && S > 1) {
            snprintf(samples_path, sizeof samples_path, "%.*s.samples.npy",
                     (int)(strlen(npy_out) - 4), npy_out);
            int64_t sshape[5] = {S, N, I.c, I.h, I.w};
            elbo_pixels_to01(results, S * N * D, results);
            st = elbo_npy_write(samples_path, ELBO_NPY_F32, 5, sshape, results);
        }
    }
    if (!st) st = cli_write_images(out, grid, rows * N, I.c, I.h, I.w, (int)N);
    if (st) {
        status = args_fail(ARGS_RUNTIME, "inverse: %s", elbo_last_error());
        if (npy_out) remove(npy_out);
        if (*std_path) remove(std_path);
        if (*samples_path) remove(samples_path);
        goto done;
    }
    if (do_eval && !constraint) {
        printf("| task | method | PSNR (dB) | SSIM |\n|---|---|---|---|\n");
        printf("| %s | %s | %.2f | %.4f |\n", task_s, solver_s, psnr, ssim);
        for (int k = 0; k < 2; k++)
            if (bname[k]) printf("| %s | %s | %.2f | %.4f |\n", task_s, bname[k], bpsnr[k], bssim[k]);
    }
    printf("{\"ckpt\":");
    args_json_string(stdout, pos[0]);
    printf(", \"task\":\"%s\", \"solver\":\"%s\", \"n\":%lld, \"samples\":%lld", task_s, solver_s,
           (long long)N, (long long)S);
    if (!constraint) printf(", \"sigma_y\":%g, \"sigma_y_units\":\"[0,1] pixels\"", sigma_y);
    if (solver == SOLVER_PNP)
        printf(", \"steps\":%d, \"schedule\":\"%s\", \"lr\":%g, \"weighting\":\"%s\", "
               "\"energy_decay\":%s", pp.steps, schedule_s, pp.lr, weighting_s,
               pp.energy_decay ? "true" : "false");
    else if (solver == SOLVER_DPS)
        printf(", \"steps\":%d, \"dps_step\":\"%s\", \"zeta\":%g", dp.steps, dps_step_s, dp.zeta);
    else
        printf(", \"steps\":%d, \"jump\":%d, \"resample\":%d", rp.steps, rp.jump, rp.resample);
    if (have_truth) printf(", \"psnr_db\":%.3f, \"ssim\":%.4f", psnr, ssim);
    if (do_eval && constraint) printf(", \"accuracy\":%.4f", accuracy);
    if (do_eval && !constraint) {
        printf(", \"baselines\":{");
        for (int k = 0, first = 1; k < 2; k++)
            if (bname[k]) {
                printf("%s\"%s\":{\"psnr_db\":%.3f, \"ssim\":%.4f}", first ? "" : ", ", bname[k],
                       bpsnr[k], bssim[k]);
                first = 0;
            }
        printf("}");
    }
    printf(", \"out\":");
    args_json_string(stdout, out);
    printf("}\n");
done:
    elbo_dataset_free(&ds);
    free(I.truth), free(I.y), free(I.labels), free(mask), free(results), free(mean), free(sd);
    free(work), free(view), free(grid), free(base), free(a01), free(b01);
    elbo_ctx_free(ctx);
    elbo_ctx_free(cctx);
    elbo_model_free(clf);
    elbo_model_free(I.m);
    return status;
}
