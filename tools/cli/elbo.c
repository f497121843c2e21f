/* The `elbo` command: a thin shell over the public API. Every failure prints one line naming
 * the flag or file and exits non-zero: 2 for usage errors, 1 for runtime errors. */
#include "elbo.h"

#include "args.h"
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *USAGE =
    "usage: elbo COMMAND [flags]\n"
    "\n"
    "commands:\n"
    "  bench NAME     time a training step and a no-grad forward of a benchmark model\n"
    "                 (NAME: vae-mlp | unet-s) and print one JSON line\n"
    "  data show      write a grid (PNG), scatter plot (toy data) or .npy of a dataset's\n"
    "                 first images\n"
    "  info FILE      print a safetensors file's metadata and tensors\n"
    "  train MODEL    train a model (vae | hvae | diffusion | ncsn | sde | classifier |\n"
    "                 vae-mlp) on a dataset, with checkpoints and a loss log\n"
    "  sample CKPT    draw samples of a checkpoint's model to a PNG grid or .npy (diffusion:\n"
    "                 ancestral, DDIM, Heun, Euler-Maruyama, predictor-corrector, annealed\n"
    "                 Langevin, the probability-flow ODE; guidance, trajectories)\n"
    "  eval CKPT      the bounds (nats, bits/dim) of a checkpoint on a dataset split: ELBO\n"
    "                 and its terms, the importance-weighted bound, active units; diffusion:\n"
    "                 the probability-flow ODE's exact likelihood (--likelihood ode)\n"
    "  reconstruct CKPT   test images and their reconstructions\n"
    "  interpolate CKPT   decodings along a line in latent space between two images\n"
    "  traverse CKPT      a latent traversal grid, one row per latent dimension\n"
    "  denoise CKPT       remove Gaussian noise from test images in one step (Tweedie)\n"
    "  score-field [CKPT]  a 2-D model's density and score field, Langevin chains with and\n"
    "                     without annealing (or a Gaussian mixture's, --true)\n"
    "  eval-samples S.npy  a clean classifier's accuracy, feature Frechet distance and class\n"
    "                     entropy for a set of samples\n"
    "  inverse CKPT   inverse problems with the model as a prior: inpainting, super-\n"
    "                 resolution, denoising, deblurring, a classifier constraint (PnP, DPS,\n"
    "                 RePaint), PSNR / SSIM against baselines\n"
    "  plot FILE.csv  columns of a CSV file (a loss log, a sweep) as lines in a PNG\n"
    "  version        print the version\n"
    "\n"
    "Run `elbo COMMAND --help` for a command's flags.\n"
    "Exit status: 0 success, 1 runtime error, 2 usage error.\n";

static const char *BENCH_USAGE =
    "usage: elbo bench NAME [flags]\n"
    "\n"
    "Trains NAME (vae-mlp | unet-s, see bench-models.md) with its real loss and prints\n"
    "{\"model\":..., \"batch\":..., \"threads\":..., \"step_ms\":..., \"forward_ms\":...,\n"
    " \"gflops\":..., \"peak_rss_mb\":...}. Times are medians over the timed steps.\n";

int cmd_bench(int argc, char **argv) {
    elbo_bench_params p;
    elbo_bench_params_init(&p);
    int profile = 0;
    arg_flag flags[] = {
        args_threads(&p.threads, "0: OMP_NUM_THREADS or all cores"),
        args_int("--batch", &p.batch, 0, INT32_MAX, "N", "batch size (0: the model's)",
                 "128 for vae-mlp, 64 for unet-s"),
        args_int("--steps", &p.steps, 0, INT32_MAX, "N", "timed training steps (0: default)",
                 "20 for vae-mlp, 5 for unet-s"),
        args_int("--warmup", &p.warmup, 0, INT32_MAX, "N", "untimed steps before timing",
                 "3 for vae-mlp, 2 for unet-s"),
        args_seed(&p.seed, "0"),
        args_bool("--profile", &profile,
                  "also print the time of each op (forward, backward) per training step to stderr"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("bench", BENCH_USAGE, flags, (int)(sizeof flags / sizeof flags[0]), argc,
                       argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "bench: which model? (vae-mlp | unet-s)");
    p.model = pos[0];
    static char table[32768];
    if (profile) {
        p.profile = table;
        p.profile_len = sizeof table;
    }
    elbo_bench_result res;
    if (elbo_bench_run(&p, &res) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "bench: %s", elbo_last_error());
    printf(
        "{\"model\":\"%s\", \"batch\":%d, \"threads\":%d, \"step_ms\":%.2f, \"forward_ms\":%.2f, "
        "\"gflops\":%.1f, \"peak_rss_mb\":%.1f}\n",
        p.model, res.batch, res.threads, res.step_ms, res.forward_ms, res.gflops,
        res.peak_rss_mb);
    if (profile) {
        fflush(stdout);
        fputs(table, stderr);
    }
    return 0;
}

/* GNU OpenMP's idle threads spin for GOMP_SPINCOUNT (default 300000) turns before they
 * sleep. On an idle machine that is fastest, but when another process wants the same cores
 * the spinning steals them: two vae-mlp benchmarks at once ran a step in 300 ms instead of
 * 16 (6 ms alone). libgomp reads the variable when it loads, before main, so when the user
 * has set neither GOMP_SPINCOUNT nor OMP_WAIT_POLICY the command sets GOMP_SPINCOUNT=3000
 * and runs itself again (once; the same speed alone: 6.0-6.4 ms either way, measured). */
static void bounded_spin(char **argv) {
    if (getenv("GOMP_SPINCOUNT") || getenv("OMP_WAIT_POLICY") || getenv("ELBO_NO_REEXEC")) return;
    if (setenv("GOMP_SPINCOUNT", "3000", 1) != 0 || setenv("ELBO_NO_REEXEC", "1", 1) != 0) return;
    execv("/proc/self/exe", argv); /* returns only on failure: carry on as we are */
}

int main(int argc, char **argv) {
    bounded_spin(argv);
    /* A file-size limit (ulimit -f) is then an ordinary write error (EFBIG): the library
     * removes the temporary file and we exit 1 with one line, not die from the signal. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? ARGS_USAGE : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("elbo %s\n", ELBO_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    if (!strcmp(argv[1], "info")) return cmd_info(argc - 2, argv + 2);
    if (!strcmp(argv[1], "data")) return cmd_data(argc - 2, argv + 2);
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 2, argv + 2);
    if (!strcmp(argv[1], "sample")) return cmd_sample(argc - 2, argv + 2);
    if (!strcmp(argv[1], "eval")) return cmd_eval(argc - 2, argv + 2);
    if (!strcmp(argv[1], "reconstruct")) return cmd_reconstruct(argc - 2, argv + 2);
    if (!strcmp(argv[1], "interpolate")) return cmd_interpolate(argc - 2, argv + 2);
    if (!strcmp(argv[1], "traverse")) return cmd_traverse(argc - 2, argv + 2);
    if (!strcmp(argv[1], "denoise")) return cmd_denoise(argc - 2, argv + 2);
    if (!strcmp(argv[1], "score-field")) return cmd_score_field(argc - 2, argv + 2);
    if (!strcmp(argv[1], "eval-samples")) return cmd_eval_samples(argc - 2, argv + 2);
    if (!strcmp(argv[1], "plot")) return cmd_plot(argc - 2, argv + 2);
    if (!strcmp(argv[1], "inverse")) return cmd_inverse(argc - 2, argv + 2);
    return args_fail(ARGS_USAGE, "unknown command \"%s\" (see elbo --help)", argv[1]);
}
