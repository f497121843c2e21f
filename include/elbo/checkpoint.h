/* elbo checkpoint: a training run's whole state in one safetensors file, so that a resumed
 * run continues bit for bit where the saved one stopped.
 *
 * File contents (every name below is a safetensors tensor; see elbo/safetensors.h):
 *   <name>              F32, each parameter under its dotted name, with its shape
 *   optim.m.<name>      F32, the optimiser's first buffer (Adam m, SGD momentum) for that
 *                       parameter, same shape; present when the optimiser has the buffer
 *   optim.v.<name>      F32, Adam's second moment v; present when the optimiser has it
 *   optim.step          I64 scalar, the optimiser's update count (Adam's bias correction t)
 *   ema.<name>          F32, the EMA weights of that parameter, when an EMA is given
 *   train.step          I64 scalar, the caller's step count
 *   train.rng           I64 (2,), the training RNG state {seed, offset} (the u64 bits)
 * and __metadata__ {"format": "elbo-checkpoint", "version": "1", "model": <model name>,
 * "config": <the model configuration, a JSON text>}.
 * The optimiser state is stored per parameter (not as one flat block) so that other readers
 * (PyTorch's safetensors.torch.load_file) see one tensor per parameter and state.
 * Optimiser hyper-parameters are not stored: the caller rebuilds the optimiser from its own
 * configuration (the "config" metadata is the place for them).
 *
 * Not included by elbo.h: include "elbo/checkpoint.h". */
#ifndef ELBO_CHECKPOINT_H
#define ELBO_CHECKPOINT_H

#include "optim.h"
#include "safetensors.h"

#ifdef __cplusplus
extern "C" {
#endif

#define ELBO_CHECKPOINT_FORMAT "elbo-checkpoint"
#define ELBO_CHECKPOINT_VERSION "1"

/* What a checkpoint holds. The pointers are borrowed, never freed here. */
typedef struct {
    elbo_paramset *params; /* required, finalised */
    elbo_optim *optim;     /* optional (NULL: none saved / none restored) */
    elbo_ema *ema;         /* optional (NULL: none saved / none restored) */
    int64_t step;          /* training steps done (>= 0) */
    elbo_rng rng;          /* the training RNG's state after those steps */
    const char *model;     /* model name, e.g. "vae-mlp" (save: required, non-empty;
                            * load: when non-NULL and non-empty, must match the file's) */
    const char *config;    /* model configuration as JSON text (save: required, a non-empty
                            * JSON object; load: ignored, see elbo_checkpoint_read_info) */
} elbo_checkpoint;

/* Writes ck to path atomically (temporary file, fsync, rename: an existing file at path is
 * untouched on failure). Errors: ELBO_ERR_ARG (NULL path/ck/params, empty model, empty or
 * a config that is not a JSON object, negative step, optimiser or EMA sized for another paramset),
 * ELBO_ERR_STATE (paramset not finalised), ELBO_ERR_NOMEM, ELBO_ERR_IO. */
elbo_status elbo_checkpoint_save(const char *path, const elbo_checkpoint *ck);

/* Restores ck->params, ck->optim (when non-NULL: its buffers and update count), ck->ema
 * (when non-NULL), ck->step and ck->rng from path, into objects already built with the
 * same architecture. Checks, all before anything is changed (so on failure nothing is):
 * the format and version metadata, the model name (when ck->model is set), every parameter
 * present as F32 with exactly its shape, the optimiser's state (each buffer the optimiser
 * has must be in the file, and the file may not hold a buffer the optimiser lacks), the
 * EMA weights, and train.step / train.rng / optim.step as I64 of the right shape.
 * Tensors the caller did not ask for (EMA weights when ck->ema is NULL, say) are ignored.
 * Errors (one line naming the file): ELBO_ERR_IO (missing or unreadable), ELBO_ERR_FORMAT
 * (not a safetensors file, truncated, wrong format/version/model, a tensor missing or of
 * another dtype), ELBO_ERR_SHAPE ("'enc.2.weight' has shape (2, 5) in the file, expected
 * (4, 5)"), ELBO_ERR_ARG (NULL path/ck/params), ELBO_ERR_STATE, ELBO_ERR_NOMEM. */
elbo_status elbo_checkpoint_load(const char *path, elbo_checkpoint *ck);

/* What a checkpoint says about itself, read without a model (for `elbo info`). */
typedef struct {
    char *model;         /* malloc'd, NUL-terminated */
    char *config;        /* malloc'd JSON text */
    int64_t step;        /* train.step */
    elbo_rng rng;        /* train.rng */
    int64_t optim_steps; /* optim.step, or -1 when there is no optimiser state */
    int has_optim_m;     /* 1 when optim.m.* tensors are present */
    int has_optim_v;     /* 1 when optim.v.* tensors are present */
    int has_ema;         /* 1 when ema.* tensors are present */
    int n_params;        /* tensors that are parameters (not optim.*, ema.* or train.*) */
    int64_t n_scalars;   /* their total number of elements */
} elbo_checkpoint_info;

/* Fills *info from path (checking format, version, model, config, train.step and
 * train.rng); free with elbo_checkpoint_info_free. On failure *info is zeroed and the
 * status is as for elbo_checkpoint_load. */
elbo_status elbo_checkpoint_read_info(const char *path, elbo_checkpoint_info *info);
void elbo_checkpoint_info_free(elbo_checkpoint_info *info);

#ifdef __cplusplus
}
#endif
#endif
