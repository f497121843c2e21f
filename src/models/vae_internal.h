/* Pieces shared by the VAE family's models (vae.c, hvae.c): the likelihoods p(x|z), the
 * Gaussian-latent algebra, and reading a model's JSON configuration. Internal. */
#ifndef ELBO_MODELS_VAE_INTERNAL_H
#define ELBO_MODELS_VAE_INTERNAL_H

#include "elbo/train.h"
#include "elbo/diffusion.h"
#include "io/json.h"

/* p(x|z) over D pixels: its kind and, for a Gaussian, a fixed std (0: learned). */
typedef struct {
    elbo_likelihood kind;
    float sigma;
    int64_t D;
} elbo__lik;

/* Decoder outputs per pixel: 2 (mean and log-variance or log-scale) or 1. */
int64_t elbo__lik_outputs(const elbo__lik *l);
/* The pixel transform that feeds it: the binarize mode's, DEQUANTIZE, or SCALE11. */
elbo_pixel_transform elbo__lik_transform(elbo_likelihood kind, elbo_binarize binarize);
/* log p(x|z) per row, x (N, D), decoder outputs a and b (N, D) (b NULL when 1 output):
 * bernoulli -sum BCE-with-logits(a, x); gaussian sum log N(x; a, e^b) (or sigma^2);
 * logistic the discretized logistic with log-scale max(b, -7) (PixelCNN++). -> (N). */
elbo_tensor *elbo__lik_log_px(elbo_ctx *ctx, const elbo__lik *l, elbo_tensor *x, elbo_tensor *a,
                              elbo_tensor *b);
/* D log 256 for the dequantized Gaussian (added to every -log p figure), else 0. */
double elbo__lik_dequant_nats(const elbo__lik *l);
/* The mean image in [0, 1] of decoder output a (N, D). */
void elbo__lik_mean_image(const elbo__lik *l, const elbo_tensor *a, float *out);

/* KL(N(mu, e^logvar) || N(0, 1)) per dimension = 0.5 (mu^2 + e^logvar - 1 - logvar). */
elbo_tensor *elbo__kl_normal_std(elbo_ctx *ctx, elbo_tensor *mu, elbo_tensor *logvar);
/* z = mu + e^(logvar/2) eps: mu, logvar (B, Z), eps (B, L, Z) -> (B L, Z), row b L + l. */
elbo_tensor *elbo__reparam(elbo_ctx *ctx, elbo_tensor *mu, elbo_tensor *logvar, elbo_tensor *eps);
/* x (B, D) repeated L times as rows b L + l -> (B L, D), a leaf. */
elbo_tensor *elbo__repeat_rows(elbo_ctx *ctx, const float *x, int64_t B, int64_t L, int64_t D);

/* Members of a configuration object: absent leaves *dst unchanged; a wrong type or range is
 * ELBO_ERR_ARG naming the key. */
elbo_status elbo__cfg_int(const elbo__json *o, const char *key, int64_t lo, int64_t hi,
                          int64_t *dst);
elbo_status elbo__cfg_float(const elbo__json *o, const char *key, float *dst);
const char *elbo__cfg_str(const elbo__json *o, const char *key); /* NULL unless a string */
/* The noise process's members of a config object ("schedule", "log_snr_min", "log_snr_max",
 * "beta_min", "beta_max", "sigma_min", "sigma_max"), each optional, into p (the diffusion
 * model's and the classifier's configs). Errors name the member. */
elbo_status elbo__cfg_process(const elbo__json *o, elbo_process *p);
/* Those members as JSON, "\"schedule\":\"..\",...,\"sigma_max\":.." (no braces, doubles
 * to 17 digits so a config round-trips exactly), into buf[0..n). */
void elbo__process_json(const elbo_process *p, char *buf, size_t n);
/* An array of at most max integers in 1..65536 into dst[0..*n) (absent: unchanged). */
elbo_status elbo__cfg_int_list(const elbo__json *o, const char *key, int max, int *dst, int *n);

/* The objective shared by vae and hvae: its checks (messages start "model: "), beta at a
 * step (KL warm-up: beta min(1, (step + 1) / kl_warmup), Sønderby et al. 2016), its JSON
 * members with act (closing the object), and their parsing. */
elbo_status elbo__objective_check(const char *model, const elbo_vae_objective *o);
float elbo__objective_beta(const elbo_vae_objective *o, int64_t step);
void elbo__objective_json(elbo__jbuf *j, elbo_activation act, const elbo_vae_objective *o);
elbo_status elbo__objective_parse(const elbo__json *o, elbo_activation *act, elbo_vae_objective *ob);
/* A running log-sum-exp in double: (mx, sum) <- the pair for log(e^mx sum + e^v); start
 * from (-inf, 0); the result is mx + log(sum). */
void elbo__lse_push(double *mx, double *sum, double v);

/* The interface members vae and hvae fill alike: name, parameters, image shape, the pixel
 * transform of the likelihood, extras (recon, kl, beta) and the first five eval figures
 * (neg_elbo, recon, kl, nll_iwae, active_units; n_eval = 5). */
void elbo__vae_family_fill(elbo_model *m, const char *name, elbo_paramset *ps, int64_t c,
                           int64_t h, int64_t w, const elbo_vae_objective *o);

/* The registry's constructors from a checkpoint's configuration JSON. */
elbo_status elbo__vae_from_json(const elbo__json *o, uint64_t seed, elbo_model **out);
elbo_status elbo__hvae_from_json(const elbo__json *o, uint64_t seed, elbo_model **out);
elbo_status elbo__diffusion_from_json(const elbo__json *o, uint64_t seed, elbo_model **out);
elbo_status elbo__classifier_from_json(const elbo__json *o, uint64_t seed, elbo_model **out);

#endif
