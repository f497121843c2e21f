/* elbo classifier: an image classifier p_phi(y | x_t, t) behind the elbo_model interface
 * (model "classifier"), the classifier of classifier guidance (Dhariwal & Nichol 2021,
 * guidance.h): trained on noised images x_t = alpha(t) x + sigma(t) eps of a noise process
 * (diffusion.h) and conditioned on t, or on clean images without a time input.
 *
 *   network  conv_in (3x3, c -> channels[0]); per level l a residual block (nn.h,
 *            channels[l-1] -> channels[l], the shared time embedding when noisy) then a 2x2
 *            average pool except after the last level; GroupNorm + SiLU; the mean over H, W
 *            -> features (B, F = channels[n_levels-1]); head, a Linear F -> K -> logits.
 *            The time input is the sinusoidal embedding of 1000 t (as the diffusion model's
 *            network sees t) through a Linear-SiLU-Linear MLP (temb.0, temb.2), a cut-down
 *            version of guided-diffusion's EncoderUNetModel with pool "adaptive".
 *   loss     the mean cross-entropy -log p(y | x) over the batch, on x (clean) or on x_t at
 *            low-discrepancy times t in (0, 1] with eps ~ N(0, I) (noisy); extra "accuracy".
 *   eval     sums of "xent" (-log p(y | x)) and "accuracy" (the 0/1 correct indicator),
 *            noisy at fresh times as in the loss.
 * Labels are required (ELBO_ERR_ARG when NULL or outside [0, K)); there is no sample().
 *
 * Not included by elbo.h: include "elbo/train.h" (which includes this). */
#ifndef ELBO_CLASSIFIER_H
#define ELBO_CLASSIFIER_H

#include "diffusion.h"
#include "models.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct elbo_model elbo_model;

#define ELBO_CLASSIFIER_MAX_LEVELS 4

typedef struct {
    int64_t c, h, w;                          /* image shape (1, 28, 28) */
    int classes;                              /* K: 10 (2..100000) */
    int n_levels;                             /* 3 (1..4; h and w at least 2^(n_levels - 1)) */
    int channels[ELBO_CLASSIFIER_MAX_LEVELS]; /* 32, 64, 128 */
    int groups;           /* GroupNorm groups, dividing every channel count: 8 */
    int temb;             /* time-embedding width (even): 128 when noisy, 0 when clean */
    int noisy;            /* 1: trained on x_t = alpha(t) x + sigma(t) eps, t ~ U(0, 1] (low-
                           * discrepancy, elbo_diffusion_sample_times) of `process`, conditioned
                           * on t; 0: clean images, no time input */
    elbo_process process; /* noisy: the noise process (elbo_process_init's default: VP
                           * loglinear); a learned schedule is refused */
    float dropout;        /* 0 (in [0, 1)) */
} elbo_classifier_config;
/* The defaults above: a noisy classifier of (1, 28, 28) images into 10 classes. */
void elbo_classifier_config_init(elbo_classifier_config *c);

/* Config JSON: {"c","h","w","classes","channels":[..],"groups","temb","noisy","dropout",
 * "schedule","log_snr_min","log_snr_max","beta_min","beta_max","sigma_min","sigma_max"};
 * each member optional ("temb" absent: 128 when noisy, 0 when clean). Errors name the field. */
elbo_status elbo_classifier_model_new(const elbo_classifier_config *cfg, uint64_t seed,
                                      elbo_model **out);
/* The configuration of a classifier model (NULL for another model). */
const elbo_classifier_config *elbo_classifier_config_of(const elbo_model *m);
/* F = channels[n_levels - 1], the width of the features (0 for another model). */
int elbo_classifier_feature_dim(const elbo_model *m);

/* logits (B, K) and features (B, F) (the penultimate layer: after the global average pool)
 * of x (B, c h w) in the model's [-1, 1] scale at level lvl (NULL: t = 0, the clean input; a
 * clean model ignores lvl). Either output may be NULL. ctx is reset by the call; no tape,
 * eval mode (no dropout). */
elbo_status elbo_classifier_forward(elbo_ctx *ctx, elbo_model *m, const float *x, int64_t B,
                                    const elbo_noise_level *lvl, float *logits, float *features);

/* For guidance (an elbo_classifier_grad_fn of guidance.h, user = elbo_classifier_grad_state):
 * grad[0..n) = d/dx_t log softmax(f(x_t, t))[y_b] per example (n = B c h w, B = batch),
 * log_prob[b] = log p(y_b | x_t, t) unless NULL. The parameters are left off the tape for
 * the call, so backward computes only d / d x_t. ctx is reset by the call. */
typedef struct {
    elbo_model *model;
    elbo_ctx *ctx;
    int64_t batch;
} elbo_classifier_grad_state;
elbo_status elbo_classifier_grad(void *state, const float *x_t, int64_t n,
                                 const elbo_noise_level *lvl, const int32_t *labels, float *grad,
                                 double *log_prob);

#ifdef __cplusplus
}
#endif
#endif
