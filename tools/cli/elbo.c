/* The `elbo` command: a thin shell over the public API. Every failure prints one line naming
 * the flag or file and exits non-zero. */
#include "elbo.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: elbo COMMAND [flags]\n"
    "\n"
    "commands:\n"
    "  bench NAME     time a training step and a no-grad forward of a benchmark model\n"
    "                 (NAME: vae-mlp | unet-s) and print one JSON line\n"
    "  version        print the version\n"
    "\n"
    "Run `elbo COMMAND --help` for a command's flags.\n";

static const char *BENCH_USAGE =
    "usage: elbo bench NAME [flags]\n"
    "\n"
    "Trains NAME (vae-mlp | unet-s, see bench-models.md) with its real loss and prints\n"
    "{\"model\":..., \"batch\":..., \"threads\":..., \"step_ms\":..., \"forward_ms\":...,\n"
    " \"gflops\":..., \"peak_rss_mb\":...}. Times are medians over the timed steps.\n"
    "\n"
    "flags:\n"
    "  --threads N    threads for elbo's kernels and OpenBLAS (default: OMP_NUM_THREADS or all "
    "cores)\n"
    "  --batch N      batch size (default: 128 for vae-mlp, 64 for unet-s)\n"
    "  --steps N      timed training steps (default: 20 for vae-mlp, 5 for unet-s)\n"
    "  --warmup N     untimed steps before timing (default: 3 for vae-mlp, 2 for unet-s)\n"
    "  --seed N       seed for weights and data (default: 0)\n";

static int die(const char *fmt, const char *a) {
    fprintf(stderr, "elbo: ");
    fprintf(stderr, fmt, a);
    fprintf(stderr, "\n");
    return 2;
}

/* Parses a non-negative integer flag value; returns -1 on error. */
static long long parse_int(const char *flag, const char *v) {
    if (!v) {
        die("%s needs a value", flag);
        return -1;
    }
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || *end || end == v || x < 0) {
        fprintf(stderr, "elbo: %s: '%s' is not a non-negative integer\n", flag, v);
        return -1;
    }
    return x;
}

static int cmd_bench(int argc, char **argv) {
    elbo_bench_params p;
    elbo_bench_params_init(&p);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(BENCH_USAGE, stdout);
            return 0;
        }
        long long v;
        if (!strcmp(a, "--threads") || !strcmp(a, "--batch") || !strcmp(a, "--steps") ||
            !strcmp(a, "--warmup") || !strcmp(a, "--seed")) {
            if ((v = parse_int(a, i + 1 < argc ? argv[i + 1] : NULL)) < 0) return 2;
            i++;
            if (!strcmp(a, "--threads"))
                p.threads = (int)v;
            else if (!strcmp(a, "--batch"))
                p.batch = (int)v;
            else if (!strcmp(a, "--steps"))
                p.steps = (int)v;
            else if (!strcmp(a, "--warmup"))
                p.warmup = (int)v;
            else
                p.seed = (uint64_t)v;
        } else if (a[0] == '-') {
            return die("bench: unknown flag %s (see elbo bench --help)", a);
        } else if (!p.model) {
            p.model = a;
        } else {
            return die("bench: unexpected argument %s", a);
        }
    }
    if (!p.model) return die("bench: %s", "which model? (vae-mlp | unet-s)");
    elbo_bench_result r;
    if (elbo_bench_run(&p, &r) != ELBO_OK) {
        fprintf(stderr, "elbo: bench: %s\n", elbo_last_error());
        return 1;
    }
    printf(
        "{\"model\":\"%s\", \"batch\":%d, \"threads\":%d, \"step_ms\":%.2f, \"forward_ms\":%.2f, "
        "\"gflops\":%.1f, \"peak_rss_mb\":%.1f}\n",
        p.model, r.batch, r.threads, r.step_ms, r.forward_ms, r.gflops, r.peak_rss_mb);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(USAGE, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("elbo %s\n", ELBO_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "bench")) return cmd_bench(argc - 2, argv + 2);
    return die("unknown command '%s' (see elbo --help)", argv[1]);
}
