/* elbo diffusion_model: the variational diffusion model behind the elbo_model interface
 * (model "diffusion"): a noise process (diffusion.h), a denoising network (the UNet of
 * models.h for images, an MLP with a time embedding for 2-D points), a parameterisation of
 * its output, a loss weighting and continuous or T-step time.
 *
 *   loss   1/2 w(t) ||eps - eps_hat(x_t; t, y)||^2 per example, t from low-discrepancy
 *          times (VDM), x_t = alpha(t) x + sigma(t) eps; with loss "elbo" plus the prior
 *          and reconstruction terms, so it is the whole negative bound (nats per example);
 *          "simple" is DDPM's mean over the D values. With classes, each label is replaced
 *          by the null label with probability p_uncond (classifier-free guidance, Ho &
 *          Salimans 2021).
 *   eval   sums of neg_elbo = prior + diffusion + recon, in nats (VDM eq. 11): prior
 *          KL(q(x_1|x) || N(0, I)), the diffusion term at one time per example (low-
 *          discrepancy over the batch), recon -log p(x|x_0) over the 256 bins of 8-bit data
 *          or a Gaussian for continuous data.
 *   learned schedule (VDM): the monotone network of diffusion.h in the paramset (gamma.*);
 *          its endpoints are trained on the bound, its interior on the variance of the
 *          diffusion term (after_backward), and the network sees the noise level, not t.
 *   sample ancestral sampling with the model's own steps (T, or 1000 in continuous time);
 *          any sampler through elbo_diffusion_denoiser.
 *
 * Not included by elbo.h: include "elbo/train.h" (which includes this). */
#ifndef ELBO_DIFFUSION_MODEL_H
#define ELBO_DIFFUSION_MODEL_H

#include "data.h"
#include "diffusion.h"
#include "likelihood.h"
#include "models.h"
#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct elbo_model elbo_model;

typedef enum { ELBO_DENOISER_UNET = 0, ELBO_DENOISER_MLP } elbo_denoiser_net;

typedef struct {
    int64_t c, h, w;          /* the data's shape: (1, 28, 28) images, (2, 1, 1) points */
    elbo_denoiser_net net;    /* unet */
    elbo_unet_params unet;    /* channels 32,64,64, 1 block, attention at the last level, temb
                               * 128, 8 groups, dropout 0 (unet-s); n_classes from classes */
    int mlp_hidden, mlp_layers; /* mlp: 256 wide, 3 hidden layers (SiLU), time embedding 64 */
    int mlp_temb;
    elbo_process process;     /* VP log-linear (elbo_process_init) */
    elbo_param_kind param;    /* eps */
    elbo_loss_kind loss;      /* elbo */
    int T;                    /* 0: continuous time; T > 0: T steps */
    int fourier;              /* unet: 1 adds VDM's Fourier features of x_t to the input,
                               * sin(2^n 2 pi x_t) and cos(2^n 2 pi x_t) for n = 6, 7 (4 c more
                               * input channels: the fine scale of 8-bit data, where the
                               * likelihood is decided; Kingma et al. 2021, app. B); 0 */
    int levels;               /* L > 1: train on the noise ladder t_i = i / (L - 1), i = 0..L-1
                               * only (NCSN: with VE, the geometric sigma_1 > ... > sigma_L);
                               * 0: every t */
    int classes;              /* 0: unconditional; K: labels 0..K-1 and a null label */
    float p_uncond;           /* 0.1 */
    int discrete;             /* 1: 8-bit images in [-1, 1] (recon over 256 bins); 0: continuous
                               * points (a dataset of points, Gaussian recon) */
} elbo_diffusion_config;
void elbo_diffusion_config_init(elbo_diffusion_config *cfg);

/* Config JSON: {"c","h","w","net":"unet"|"mlp","channels":[..],"blocks","attn":[..],
 * "dropout","temb","groups","hidden","layers","mlp_temb","schedule","log_snr_min",
 * "log_snr_max","beta_min","beta_max","sigma_min","sigma_max","param","loss","T","classes",
 * "p_uncond","discrete","levels","fourier"}; each member optional. Errors name the field. */
elbo_status elbo_diffusion_model_new(const elbo_diffusion_config *cfg, uint64_t seed,
                                     elbo_model **out);
/* The configuration of a diffusion model (NULL for another model). */
const elbo_diffusion_config *elbo_diffusion_config_of(const elbo_model *m);

/* The model as a denoiser for elbo_diffusion_sample: x0_hat = D(x_t, t, y), with labels
 * y[0..B) (or NULL: the null label; NULL for an unconditional model) and, when
 * guidance_scale != 0, classifier-free guidance eps_hat = (1 + s) eps(x_t, y) - s eps(x_t, null)
 * (Ho & Salimans 2021). batch B fixes how the n values split into examples. */
typedef struct {
    elbo_model *model;
    elbo_ctx *ctx;          /* reset at each call: hold nothing of it across calls */
    int64_t batch;
    const int32_t *labels;
    double guidance_scale;
} elbo_diffusion_denoiser_state;
elbo_status elbo_diffusion_denoiser(void *state, const float *x_t, int64_t n,
                                    const elbo_noise_level *lvl, float *x0_hat);
/* The same denoiser (no guidance) and vjp = (d x0_hat / d x_t)^T u through the network, as
 * an elbo_denoiser_vjp_fn (likelihood.h). The parameters are left out of the tape for the
 * call, so backward computes d / d x_t only. */
elbo_status elbo_diffusion_denoiser_vjp(void *state, const float *x_t, int64_t n,
                                        const elbo_noise_level *lvl, const float *u, float *x0_hat,
                                        float *vjp);
/* The same with the cotangent formed from x0_hat between the forward and the backward pass
 * (an elbo_denoiser_vjp_at_fn): one network forward instead of the two of
 * elbo_diffusion_denoiser followed by elbo_diffusion_denoiser_vjp, the same bytes. */
elbo_status elbo_diffusion_denoiser_vjp_at(void *state, const float *x_t, int64_t n,
                                           const elbo_noise_level *lvl, elbo_cotangent_fn cot,
                                           void *cot_user, float *x0_hat, float *u, float *vjp);

/* -log p(x) through the probability-flow ODE (likelihood.h) over the first ds->n items, in
 * batches of `batch`, the model's unconditional density (null label). Points are scored as
 * -log p(x). 8-bit images x (the grid of the model's [-1, 1] scale) are dequantized:
 *   uniform  y = x + (2/255)(u - 1/2), u ~ U(0,1)^D: -(log p(y) + D log(2/255)), an upper
 *            bound on -log P(x) (likelihood.h); it also charges the model for putting its
 *            mass near the grid points it was trained on (within a bin, a density of width
 *            sigma(0) << 2/255 scores below the uniform one)
 *   process  the model's own q(x_0 | x) = N(alpha_0 x, sigma_0^2 I) as the dequantizer and
 *            its 256-bin decoder p(x | x_0) (VDM): -log P(x) <= E_q[-log p(x | x_0) -
 *            log p_ode(x_0) + log q(x_0 | x)], the ELBO with the prior and diffusion terms
 *            replaced by the ODE's exact log p(x_0)
 * The draws (u or the noise of x_0) come from `seed`; the probes of batch k (from 0) use
 * seed lp->seed + 0x9E3779B97F4A7C15 (k + 1), a stream apart from them. */
typedef enum { ELBO_DEQUANT_UNIFORM = 0, ELBO_DEQUANT_PROCESS } elbo_dequant_kind;
elbo_status elbo_dequant_parse(const char *name, elbo_dequant_kind *out); /* uniform|process */
typedef struct {
    int64_t n;
    double nll_nats, nll_se; /* mean over the items, and its standard error */
    double bits_per_dim;     /* nll_nats / (D ln 2) */
    double prior_nats;       /* mean -log p_1(x(1)), the part the prior scores */
    int64_t nfe;             /* network VJP calls, all batches */
    int batches;
} elbo_diffusion_ode_nll;
elbo_status elbo_diffusion_ode_likelihood(elbo_model *m, const elbo_dataset *ds, int batch,
                                          const elbo_ode_likelihood_params *lp,
                                          elbo_dequant_kind dequant, uint64_t seed,
                                          elbo_diffusion_ode_nll *out);

#ifdef __cplusplus
}
#endif
#endif
