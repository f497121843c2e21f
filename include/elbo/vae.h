/* The VAE family behind the elbo_model interface (include/elbo/train.h): the VAE of Kingma &
 * Welling, "Auto-Encoding Variational Bayes" (ICLR 2014), with its two SGVB estimators, beta
 * weighting (Higgins et al. 2017), KL warm-up (Sønderby et al. 2016), free bits (Kingma et
 * al. 2016, eq. 15) and the importance-weighted bound (Burda et al., ICLR 2016).
 *
 *   q(z|x) = N(z; mu(x), diag exp(logvar(x))),  p(z) = N(0, I),  p(x|z) from the decoder
 *   z = mu + exp(logvar / 2) eps,  eps ~ N(0, I)                (the reparameterisation trick)
 *   ELBO(x) = E_q[log p(x|z)] - KL(q(z|x) || p(z))  <=  log p(x)
 *   SGVB A:  (1/L) sum_l [log p(x, z_l) - log q(z_l|x)]                   (their eq. 6)
 *   SGVB B:  -KL(q(z|x) || p(z)) + (1/L) sum_l log p(x|z_l), KL in closed form (eq. 7)
 *   IWAE_k:  log (1/k) sum_i p(x, z_i) / q(z_i|x),  ELBO <= IWAE_k <= IWAE_{k+1} <= log p(x)
 *
 * Not included by elbo.h on its own: include "elbo/train.h", which includes it. */
#ifndef ELBO_VAE_H
#define ELBO_VAE_H

#include "core.h"
#include "data.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

struct elbo_model;

#define ELBO_VAE_MAX_HIDDEN 8

typedef enum { ELBO_VAE_MLP = 0, ELBO_VAE_CONV } elbo_vae_arch;
typedef enum {
    ELBO_LIK_BERNOULLI = 0, /* binary or [0,1] x: logits; -log p = BCE-with-logits */
    ELBO_LIK_GAUSSIAN,      /* x = (pixel + u) / 256 dequantized; mean, and log-variance when
                             * learned (sigma == 0) or a fixed sigma */
    ELBO_LIK_LOGISTIC       /* 8-bit x in [-1,1]: discretized logistic (mean, log-scale) */
} elbo_likelihood;
typedef enum { ELBO_SGVB_A = 0, ELBO_SGVB_B, ELBO_IWAE } elbo_vae_estimator;

/* "bernoulli" | "gaussian" | "logistic";  "A" | "B" | "iwae";  "mlp" | "conv". */
elbo_status elbo_likelihood_parse(const char *s, elbo_likelihood *out);
const char *elbo_likelihood_name(elbo_likelihood l);
elbo_status elbo_vae_estimator_parse(const char *s, elbo_vae_estimator *out);
const char *elbo_vae_estimator_name(elbo_vae_estimator e);
elbo_status elbo_vae_arch_parse(const char *s, elbo_vae_arch *out);
const char *elbo_vae_arch_name(elbo_vae_arch a);

/* What the VAE family's models share: the likelihood, the training objective and its
 * regularisers (elbo_vae_config and elbo_hvae_config hold one). */
typedef struct {
    elbo_likelihood likelihood; /* bernoulli */
    float sigma;                /* gaussian: 0 = learned per-pixel variance, else fixed std */
    elbo_binarize binarize;     /* bernoulli: dynamic */
    elbo_vae_estimator estimator; /* training objective; B */
    int samples;                /* L (A, B) or k (iwae) samples of z per example; 1 */
    float beta;                 /* weight of the KL terms (iwae: of log p(z) - log q(z|x)); 1 */
    int64_t kl_warmup;          /* beta ramps linearly from beta/N to beta over N steps; 0 = off */
    float free_bits;            /* lambda nats per latent dimension (A, B); 0 = off */
    float logvar_min;           /* floor on the Gaussian log-variances; -INFINITY = none */
} elbo_vae_objective;
/* The defaults above. */
void elbo_vae_objective_init(elbo_vae_objective *o);

typedef struct {
    int64_t c, h, w;            /* the image shape; 1, 28, 28 */
    elbo_vae_arch arch;         /* mlp */
    int n_hidden;               /* hidden layers of the MLP (conv: 1, the fully connected one) */
    int hidden[ELBO_VAE_MAX_HIDDEN]; /* their widths, encoder order (the decoder mirrors); 300, 300 */
    int z;                      /* latent dimensions; 40 */
    elbo_activation act;        /* between layers; relu */
    elbo_vae_objective obj;     /* likelihood, estimator and regularisers */
} elbo_vae_config;
void elbo_vae_config_init(elbo_vae_config *cfg);
/* Checks every field; ELBO_ERR_ARG with a message naming it (beta < 0, samples < 1, z < 1,
 * free bits with iwae, conv with h or w not divisible by 4, ...). */
elbo_status elbo_vae_config_check(const elbo_vae_config *cfg);

/* The model "vae" (config JSON: the fields above by name, hidden as an array).
 * loss:   the estimator's negative bound per example; extras "recon", "kl", "beta".
 * eval:   "neg_elbo" (recon + kl), "recon" (E_q[-log p(x|z)], over the k samples), "kl"
 *         (closed form), "nll_iwae" (-IWAE_k), "active_units" (Burda et al. 2016: latent
 *         dimensions with Cov_x(E_q[z_u]) > 0.01), in nats per example; k = the model's
 *         eval_samples (default 1: nll_iwae is then the one-sample bound A).
 *         Gaussian figures include the dequantization term D log 256, so every figure is a
 *         bound on the discrete -log P(pixels) and bits/dim = nats / (D ln 2).
 * sample: the decoder's mean image at z ~ N(0, I), in [0, 1]; encode: mu(x); decode: z ->
 *         the mean image. */
elbo_status elbo_vae_model_new(const elbo_vae_config *cfg, uint64_t seed,
                               struct elbo_model **out);
/* ---- the hierarchical (Markovian) VAE -------------------------------------------------
 *   p(x, z_1:L) = p(z_L) p(z_L-1|z_L) ... p(z_1|z_2) p(x|z_1),  p(z_L) = N(0, I)
 *   q(z_1:L|x)  = q(z_1|x) q(z_2|z_1) ... q(z_L|z_L-1)        (bottom-up, Markov)
 *   ELBO = E_q[log p(x|z_1)] - sum_t KL_t, KL_t = E_q[log q(z_t|z_t-1) - log p(z_t|z_t+1)]
 *   (Monte Carlo), KL_L = E_q[KL(q(z_L|z_L-1) || N(0, I))] (closed form with estimator B). */
#define ELBO_HVAE_MAX_LAYERS 8
typedef struct {
    int64_t c, h, w;            /* 1, 28, 28 */
    int layers;                 /* L; 2 */
    int z[ELBO_HVAE_MAX_LAYERS]; /* dimensions of z_1 (bottom) .. z_L (top); 64, 32 */
    int n_hidden;               /* hidden layers of every conditional's MLP; 2 */
    int hidden[ELBO_VAE_MAX_HIDDEN]; /* their widths; 300, 300 */
    elbo_activation act;        /* relu */
    elbo_vae_objective obj;     /* as vae's; free bits per dimension of every layer, the
                                 * log-variance floor on every conditional */
} elbo_hvae_config;
void elbo_hvae_config_init(elbo_hvae_config *cfg);
elbo_status elbo_hvae_config_check(const elbo_hvae_config *cfg);
/* The model "hvae". loss, extras and eval as "vae", with eval figures after the first five:
 * "kl_1".."kl_L" (nats per example) and "active_1".."active_L" ([4] is their total; a
 * layer's units are those whose mean given one sampled chain varies over x by > 0.01).
 * sample: ancestral (z_L ~ N(0, I), z_t ~ p(z_t|z_t+1)), the mean image of p(x|z_1);
 * encode: z_L along the means of q; decode: z_L down the means of p. */
elbo_status elbo_hvae_model_new(const elbo_hvae_config *cfg, uint64_t seed,
                                struct elbo_model **out);

/* log (1/n) sum_i exp(a_i), stable (max subtracted), in double. n >= 1. */
double elbo_log_mean_exp(const double *a, int64_t n);

#ifdef __cplusplus
}
#endif
#endif
