/* elbo models: the two fixed benchmark models of bench-models.md, and the UNet they share
 * with the diffusion models. */
#ifndef ELBO_MODELS_H
#define ELBO_MODELS_H

#include "optim.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- vae-mlp: Kingma & Welling VAE with a Bernoulli decoder ---------------------------- */
/* encoder: Linear(784,512) ReLU Linear(512,512) ReLU Linear(512,2 z) -> (mu, logvar)
 * decoder: Linear(z,512) ReLU Linear(512,512) ReLU Linear(512,784) -> Bernoulli logits
 * Parameter names: enc.0, enc.2, enc.4, dec.0, dec.2, dec.4 (.weight/.bias). */
typedef struct {
    elbo_paramset *ps;
    elbo_nn_mlp enc, dec;
    int x_dim, hidden, z_dim;
} elbo_vae_mlp;
elbo_status elbo_vae_mlp_init(elbo_vae_mlp *m, int x_dim, int hidden, int z_dim, uint64_t seed);
void elbo_vae_mlp_free(elbo_vae_mlp *m);
/* Negative ELBO per batch (SGVB estimator B, one sample):
 *   [sum BCE-with-logits(dec(z), x) + 0.5 sum(mu^2 + exp(logvar) - 1 - logvar)] / B,
 *   z = mu + exp(0.5 logvar) eps.   x (B, 784) in [0,1], eps (B, z). */
elbo_tensor *elbo_vae_mlp_loss(elbo_ctx *ctx, const elbo_vae_mlp *m, elbo_tensor *x,
                               elbo_tensor *eps);

/* ---- UNet (DDPM style) ---------------------------------------------------------------- */
#define ELBO_UNET_MAX_LEVELS 6
#define ELBO_UNET_MAX_BLOCKS 4
typedef struct {
    int in_channels, out_channels;
    int n_levels;
    int channels[ELBO_UNET_MAX_LEVELS]; /* channels per level */
    int blocks_per_level;
    int attn[ELBO_UNET_MAX_LEVELS]; /* 0: none; 1: attention after each block of that
                                     * level's down path (unet-s); 2: of both paths */
    int temb_dim;                   /* sinusoidal and MLP width */
    int groups;                     /* GroupNorm groups */
    float dropout;
    int n_classes;                  /* 0: unconditional; K > 0: a label embedding label_emb
                                     * (K + 1, temb_dim) added to the time embedding, row K
                                     * the null label of classifier-free guidance */
} elbo_unet_params;
/* unet-s of bench-models.md: 1 -> 1 channels, (32, 64, 64), 1 block per level, attention at
 * the 7x7 level, temb 128, 8 groups, no dropout. */
void elbo_unet_params_init(elbo_unet_params *p);

typedef struct elbo_unet elbo_unet;
/* Declares the UNet's parameters in ps under prefix (may be ""). */
elbo_unet *elbo_unet_new(elbo_paramset *ps, const char *prefix, const elbo_unet_params *p);
void elbo_unet_free(elbo_unet *u);
/* x (B, in, H, W), t[0..B) -> (B, out, H, W). */
elbo_tensor *elbo_unet_forward(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x, const float *t);
/* The same with class labels[0..B) in [0, n_classes] (n_classes: the null label), or NULL
 * for the null label everywhere; labels must be NULL when n_classes is 0. */
elbo_tensor *elbo_unet_forward_cond(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x,
                                    const float *t, const int32_t *labels);
/* The same with the time as a tensor t (B) on the tape (its gradient flows back). */
elbo_tensor *elbo_unet_forward_t(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x, elbo_tensor *t,
                                 const int32_t *labels);

/* ---- unet-s DDPM benchmark loss ------------------------------------------------------- */
/* alpha_bar[0..T) for linear betas beta_t from beta_1 to beta_T: alpha_bar_t = prod (1 - beta). */
void elbo_ddpm_alpha_bar_linear(float *alpha_bar, int T, double beta_1, double beta_T);
/* L_simple = mean || eps - eps_hat(x_t, t) ||^2,  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
 * (Ho et al. 2020, eq. 14). x0 (B,C,H,W), t[0..B) integer steps, eps (B,C,H,W); the network
 * sees t as a float. */
elbo_tensor *elbo_ddpm_eps_loss(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x0,
                                const int32_t *t, elbo_tensor *eps, const float *alpha_bar);

/* ---- benchmarks (`elbo bench NAME`) -------------------------------------------------- */
typedef struct {
    const char *model; /* "vae-mlp" or "unet-s" */
    int batch;         /* 0: the model's default (128 / 64) */
    int threads;       /* 0: elbo_get_threads() */
    int steps;         /* timed training steps (0: default) */
    int warmup;        /* untimed steps first (-1: default, 3 / 2) */
    uint64_t seed;
    char *profile;       /* non-NULL: the per-op profile of the timed training steps (ms per
                            step, elbo_ctx_profile_format) is written here */
    size_t profile_len;  /* bytes at profile */
} elbo_bench_params;
void elbo_bench_params_init(elbo_bench_params *p);
typedef struct {
    int batch, threads;
    double step_ms;     /* median training step: forward, backward, Adam */
    double forward_ms;  /* median no-grad forward */
    double gflops;      /* training-step FLOPs / step time */
    double peak_rss_mb; /* process peak resident set */
} elbo_bench_result;
elbo_status elbo_bench_run(const elbo_bench_params *p, elbo_bench_result *r);

#ifdef __cplusplus
}
#endif
#endif
