/* elbo train: the model interface and the one trainer that runs any model.
 *
 * The model does not own the training loop (DESIGN.md): a model exposes
 *   loss(batch)   -> a scalar on the tape (the quantity minimised), plus named extra figures
 *   eval(batch)   -> per-batch sums of its evaluation bound and its parts (in nats)
 *   sample(n)     -> n samples (when the model can sample)
 * and elbo_train() does everything else: data order, optimiser, clipping, EMA, learning-rate
 * schedule, checkpoints, progress, CSV log, loss plot and SIGINT/SIGTERM.
 *
 * Reproducibility (the contract of a resumed run being bit-exact):
 * - The dataset's items are visited in epochs of steps_per_epoch = floor(N / batch) steps
 *   (a final partial batch is dropped). Epoch e uses the permutation perm_e =
 *   elbo_shuffle(r_e, identity of 0..N-1), where r_e = elbo_rng_init(seed_e) and
 *   seed_e = w[0] | (uint64_t)w[1] << 32 for w = elbo_philox4x32(seed, 2^63 + e).
 *   Step s (0-based) takes items perm_e[k batch .. (k+1) batch) with e = s / steps_per_epoch,
 *   k = s mod steps_per_epoch.
 * - Every other draw of a step (dynamic binarization, then the model's own noise such as
 *   the reparameterisation eps) comes from one training RNG, elbo_rng_init(seed) at the
 *   start, whose state {seed, offset} is saved in each checkpoint (train.rng).
 * - The model's initial weights come from the seed given to its constructor.
 * So a run depends only on (model config, data, seed, batch, optimiser settings), and its
 * checkpoint records seed and batch (config member "train") so a resume with others fails.
 *
 * Not included by elbo.h: include "elbo/train.h". */
#ifndef ELBO_TRAIN_H
#define ELBO_TRAIN_H

#include <stdio.h>

#include "checkpoint.h"
#include "classifier.h"
#include "data.h"
#include "diffusion_model.h"
#include "optim.h"
#include "vae.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- the model interface -------------------------------------------------------------- */
#define ELBO_MODEL_MAX_FIGURES 24

typedef struct elbo_model elbo_model;
struct elbo_model {
    const char *name;        /* "vae-mlp" */
    char *config;            /* the model's configuration, a JSON object (malloc'd) */
    elbo_paramset *ps;       /* its parameters (finalised) */
    int64_t c, h, w;         /* the per-example input shape; x_dim = c h w */
    elbo_pixel_transform transform; /* how the trainer turns uint8 pixels into x */
    /* Names of the extra figures loss() reports per example (e.g. "recon", "kl"). */
    int n_extra;
    const char *extra_names[ELBO_MODEL_MAX_FIGURES];
    /* Names of eval()'s sums: [0] the bound itself, then its parts. */
    int n_eval;
    const char *eval_names[ELBO_MODEL_MAX_FIGURES];

    /* x (B, c h w) after `transform`, labels (B) or NULL; draws its noise from rng.
     * Returns the scalar training loss on ctx's tape, and writes the n_extra figures
     * (means per example) to extra (may be NULL). NULL + elbo_last_error() on failure. */
    elbo_tensor *(*loss)(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                         int64_t B, elbo_rng *rng, double *extra);
    /* Adds the batch's sums of the n_eval figures to sums[0..n_eval) (no tape). */
    elbo_status (*eval)(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                        int64_t B, elbo_rng *rng, double *sums);
    /* n samples -> out (n, c, h, w) in the data's [0, 1] scale; NULL if it cannot sample. */
    elbo_status (*sample)(elbo_ctx *ctx, elbo_model *m, int64_t n, elbo_rng *rng, float *out);
    /* Optional (NULL when the model has none). eval_begin resets accumulators before the
     * first eval() of a pass; eval_end(n) turns them into figures that are not per-example
     * sums (e.g. active units), overwriting means[i] for those. */
    elbo_status (*eval_begin)(elbo_model *m);
    elbo_status (*eval_end)(elbo_model *m, int64_t n, double *means);
    /* Optional: called by the trainer after backward and before clipping and the optimiser
     * step, for gradients the tape does not carry (the diffusion model's learned schedule:
     * its variance-minimising gradient). */
    elbo_status (*after_backward)(elbo_model *m);
    /* Latent-variable models: z_dim, encode x (B, c h w) -> E_q[z|x] (B, z_dim) and
     * decode z (n, z_dim) -> the mean image (n, c, h, w) in [0, 1]. */
    int64_t z_dim;
    elbo_status (*encode)(elbo_ctx *ctx, elbo_model *m, const float *x, int64_t B, float *z);
    elbo_status (*decode)(elbo_ctx *ctx, elbo_model *m, const float *z, int64_t n, float *out);
    /* Set by the trainer before each loss(): the 0-based step (KL warm-up reads it). */
    int64_t step;
    /* Importance samples per example in eval() (0: the model's default). */
    int64_t eval_samples;
    void (*free)(elbo_model *m); /* frees everything, including m */
    void *impl;
};

/* Known model names, "|"-separated ("vae-mlp"). */
const char *elbo_model_names(void);
/* Builds the model `name` from its configuration JSON (members the model does not know,
 * such as the trainer's "train", are ignored; missing ones take their defaults), with
 * initial weights from seed. ELBO_ERR_ARG: unknown name (the message lists the known ones)
 * or a bad configuration. */
elbo_status elbo_model_new(const char *name, const char *config, uint64_t seed, elbo_model **out);
void elbo_model_free(elbo_model *m);
/* Builds the model of checkpoint `path` from its metadata and loads its weights; the EMA
 * weights when the checkpoint has them (*used_ema = 1). Errors name the file. */
elbo_status elbo_model_load(const char *path, elbo_model **out, int *used_ema, int64_t *step);

/* ---- vae-mlp ---------------------------------------------------------------------------- */

typedef struct {
    int64_t c, h, w; /* 1, 28, 28 */
    int hidden, z;   /* 512, 32 */
    elbo_binarize binarize; /* dynamic */
} elbo_vae_mlp_config;
void elbo_vae_mlp_config_init(elbo_vae_mlp_config *cfg);
/* Config JSON: {"c":1,"h":28,"w":28,"hidden":512,"z":32,"binarize":"dynamic"}.
 * loss: -ELBO per example (elbo_vae_mlp_loss), extras "recon" (sum of BCE) and "kl";
 * eval: sums of "neg_elbo", "recon", "kl" in nats; sample: sigmoid(dec(z)), z ~ N(0, I). */
elbo_status elbo_vae_mlp_model_new(const elbo_vae_mlp_config *cfg, uint64_t seed,
                                   elbo_model **out);
/* The underlying elbo_vae_mlp of a vae-mlp model (NULL for another model). */
elbo_vae_mlp *elbo_vae_mlp_of(elbo_model *m);

/* ---- the trainer ------------------------------------------------------------------------ */
/* Called after every step (after the loss is logged, before a checkpoint); returning
 * non-zero stops the run as an interrupt does. */
typedef int (*elbo_train_step_fn)(int64_t step, double loss, void *user);

typedef struct {
    int64_t steps;        /* total steps of the run (a resume continues up to it); 1000 */
    int batch;            /* 128 */
    uint64_t seed;        /* data order and per-step noise (see above); 0 */
    int threads;          /* 0: leave elbo_get_threads() as it is */
    elbo_optim_params optim; /* Adam (torch defaults), lr overwritten by `lr` */
    float lr;             /* base learning rate; 1e-3 */
    int64_t warmup_steps; /* linear warm-up; 0 = off */
    int cosine;           /* 1: cosine decay to min_lr at `steps`; 0 = off */
    float min_lr;         /* 0 */
    float grad_clip;      /* max global L2 norm; 0 = off */
    float ema_decay;      /* 0 = off; else an EMA of the weights, saved in the checkpoint */
    int ema_warmup;       /* 1: the EMA's decay ramps up (elbo_ema_set_warmup); 0 */
    int64_t log_every;    /* plain progress line every N steps; 100 */
    int64_t ckpt_every;   /* checkpoint every N steps (0: only at the end); 1000 */
    const char *out_dir;  /* required: ckpt.safetensors, loss.csv, loss.png; created if missing */
    const char *resume;   /* a checkpoint to continue from, or NULL */
    FILE *progress;       /* progress output; stderr (NULL: none) */
    int tty;              /* -1: detect (bar on a terminal), 0: lines, 1: bar */
    int plot;             /* 1: write loss.png at the end */
    int handle_signals;   /* 1: SIGINT/SIGTERM stop the run with a checkpoint */
    int flush_denormals;  /* 1: subnormals flushed to zero during the run, the caller's
                           * setting restored after it (elbo_set_flush_denormals) */
    elbo_train_step_fn on_step; /* NULL */
    void *on_step_user;
} elbo_train_params;
void elbo_train_params_init(elbo_train_params *p);

typedef struct {
    int64_t start_step;  /* steps done before this call (resume) */
    int64_t step;        /* steps done at the end */
    double loss;         /* the last step's loss */
    double seconds;      /* wall time of the loop */
    int interrupted;     /* 1: stopped by a signal or on_step; a checkpoint was saved */
    char ckpt_path[4096];
} elbo_train_result;

/* Trains m on ds (whose images must have m's c, h, w) as described above. On an interrupt
 * it saves a checkpoint and returns ELBO_OK with r->interrupted = 1. Validation errors
 * (bad params, dataset too small for the batch, a resume checkpoint of another model, seed
 * or batch) happen before anything is written. */
elbo_status elbo_train(elbo_model *m, const elbo_dataset *ds, const elbo_train_params *p,
                       elbo_train_result *r);
/* Sets the stop flag the signal handler sets (for tests and embedding programs). */
void elbo_train_request_stop(void);

/* The mean over every item of ds (in order, the last batch may be smaller) of m's n_eval
 * figures, means[0..m->n_eval); noise from elbo_rng_init(seed). */
elbo_status elbo_evaluate(elbo_model *m, const elbo_dataset *ds, int batch, uint64_t seed,
                          double *means);

#ifdef __cplusplus
}
#endif
#endif
