/* The commands of `elbo`; each returns the process exit status (0, 1 runtime, 2 usage). */
#ifndef ELBO_CLI_H
#define ELBO_CLI_H

#include "args.h"
#include "elbo/core.h"
#include "elbo/train.h"

int cmd_bench(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_data(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_score_field(int argc, char **argv);
int cmd_train_classifier(int argc, char **argv);
/* The noise process's numeric flags, shared by train diffusion | ncsn | sde | classifier:
 * --log-snr-min, --log-snr-max, --beta-min, --beta-max, --sigma-min, --sigma-max. */
typedef struct {
    const char *lmin, *lmax, *bmin, *bmax, *smin, *smax; /* NULL: not given */
} cli_process_nums;
/* Appends the six flags (writing into p) to f; returns 6. */
int cli_process_num_flags(arg_flag *f, cli_process_nums *p);
/* Parses the given ones into proc's fields: 0, or the usage error's status (printed). */
int cli_process_nums_apply(const cli_process_nums *p, elbo_process *proc);
int cmd_eval_samples(int argc, char **argv);
int cmd_plot(int argc, char **argv);
int cmd_inverse(int argc, char **argv);
int cmd_reconstruct(int argc, char **argv);
int cmd_interpolate(int argc, char **argv);
int cmd_traverse(int argc, char **argv);
int cmd_train_diffusion(int argc, char **argv);
int cmd_denoise(int argc, char **argv);


/* The trainer's flags, shared by every `elbo train MODEL` (cmd_train.c). */
typedef struct {
    const char *data, *out, *resume;
    int64_t steps, ckpt_every, log_every, warmup;
    int batch, threads, cosine, keep_denormals, ema_warmup;
    double lr, clip, ema;
    uint64_t seed;
} train_common;
/* Writes the flags into f (room for 16) and returns how many; sets the defaults. */
int train_common_flags(arg_flag *f, train_common *c);
/* --data required, --out defaulting to runs/MODEL (in default_out), --ema < 1, --ema-warmup
 * only with --ema; 0 or the exit status of the usage error it printed. */
int train_common_check(train_common *c, const char *model, char *default_out, size_t len);
void train_common_apply(const train_common *c, elbo_train_params *tp);
/* Runs the trainer, frees m and ds, prints the JSON line; the exit status. */
int train_run_and_report(elbo_model *m, elbo_dataset *ds, const elbo_train_params *tp);
/* Diffusion sampling for `elbo sample` (cmd_diffusion.c): n samples into x (n, c, h, w) in
 * [0, 1] with the sampler of sp (steps 0: the model's own, T or 100), for labels[0..n) (NULL:
 * unconditional / the null label), guided by --guidance: with a (noisy) classifier clf, the
 * classifier scale s of classifier guidance; without, the classifier-free weight w of a
 * class-conditional model. Optionally a trajectory PNG; *nfe gets the network evaluations.
 * Returns the exit status (0 or the printed error's). */
int cli_sample_diffusion(elbo_model *m, int n, const elbo_sampler_params *sp, double guidance,
                         const int32_t *labels, elbo_model *clf, float *x, const char *trajectory,
                         int *nfe);
/* Images x (n, c, h, w) in [0, 1] to path: a PNG grid of nrow per row (2 px padding) or,
 * for a .npy path, uint8 (n, c, h, w) = round(255 x). Atomic. */
elbo_status cli_write_images(const char *path, const float *x, int64_t n, int64_t c, int64_t h,
                             int64_t w, int nrow);
/* 0 when path (NULL allowed) ends in .png or .npy (.npy only with npy_only), else prints
 * the usage error naming flag and returns ARGS_USAGE. */
int cli_check_image_out(const char *flag, const char *path, int npy_only);
/* --split SPLIT and --data SPEC into split and spec; 0, or the exit status of the usage
 * error it printed (naming the flag). */
int cli_parse_data(const char *data, const char *split_s, elbo_data_spec *spec,
                   elbo_data_split *split);
/* 1 when s ends with suf. */
int cli_ends_with(const char *s, const char *suf);

#endif
