/* elbo diffusion: the Gaussian noise processes of diffusion and score models, the
 * conversions between what a denoiser can predict, and the terms of the variational bound.
 *
 * One process for all of them (Kingma et al. 2021, VDM; Song et al. 2021, score SDEs):
 *
 *   q(x_t | x) = N(alpha(t) x, sigma(t)^2 I),   t in [0, 1],
 *   log_snr(t) = log(alpha(t)^2 / sigma(t)^2), decreasing in t   (VDM's gamma(t) = -log_snr(t)).
 *
 * Three kinds, which differ only in how (alpha, sigma) follow from the schedule:
 *   VP      alpha^2 = sigmoid(log_snr), sigma^2 = sigmoid(-log_snr)   (DDPM, VDM)
 *   VE      alpha = 1, sigma = sigma_min (sigma_max / sigma_min)^t     (NCSN, score SDE VE)
 *   sub-VP  alpha as VP-linear, sigma = 1 - alpha^2                    (score SDE sub-VP)
 * T discrete steps are the grid t_i = i / T of the same process (VDM sec. 3.2), so every
 * sampler and bound sees one code path. The SDE of a process follows from alpha and sigma:
 *   dx = f(t) x dt + g(t) dw,  f = d log alpha / dt,  g^2 = d sigma^2/dt - 2 f sigma^2
 *                                                         = -sigma^2 d log_snr / dt.
 *
 * Everything here is scalar double math on one time t, or elementwise float math over an
 * image; nothing allocates. */
#ifndef ELBO_DIFFUSION_H
#define ELBO_DIFFUSION_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ELBO_PROCESS_VP = 0, ELBO_PROCESS_VE, ELBO_PROCESS_SUBVP } elbo_process_kind;

typedef enum {
    /* VP / sub-VP: beta(u) = beta_min + u (beta_max - beta_min), u = t0 + (1 - t0) t,
     * alpha^2 = exp(-int_0^u beta). With beta_min = 0.1, beta_max = 20, t0 = 1/1000 this is
     * the T -> infinity limit of DDPM's linear betas 1e-4 .. 0.02 over 1000 steps, t = 0 being
     * DDPM's x_1 and t = 1 its x_1000 (Ho et al. 2020; score SDE's VP). */
    ELBO_SCHEDULE_LINEAR = 0,
    /* VP: log_snr = -2 log tan(a t + b), the cosine schedule alpha^2 = cos^2(pi t / 2)
     * (Nichol & Dhariwal 2021, offset s = 0) truncated to [log_snr_min, log_snr_max]. */
    ELBO_SCHEDULE_COSINE,
    /* VP: log_snr linear in t from log_snr_max to log_snr_min (VDM's fixed schedule). */
    ELBO_SCHEDULE_LOGLINEAR,
    /* VP: VDM's learned monotone network; see elbo_learned_schedule. */
    ELBO_SCHEDULE_LEARNED,
    /* VE: sigma(t) = sigma_min (sigma_max / sigma_min)^t (Song & Ermon 2019; score SDE). */
    ELBO_SCHEDULE_GEOMETRIC
} elbo_schedule_kind;

/* VDM's learned schedule (Kingma et al. 2021, appendix; the body of vdm's NoiseSchedule_NNet):
 *   gamma~(t) = |w1| t + (1/n) sum_k |w3_k| (2 sigmoid(|w2_k| (2t - 1) + b2_k) - 1),
 *   increasing in t whatever the weights;
 *   gamma(t)  = gamma_0 + (gamma_1 - gamma_0) (gamma~(t) - gamma~(0)) / (gamma~(1) - gamma~(0)),
 *   log_snr(t) = -gamma(t), with the endpoints gamma_0 = -log_snr(0) < gamma_1 = -log_snr(1)
 *   learned too (the paper's form; the normalisation makes l1's bias and l3's redundant).
 * The pointers are parameters owned elsewhere (the model's paramset); the process reads
 * them and owns nothing. */
typedef struct {
    int n_features;                 /* n (VDM: 1024) */
    const float *w1;                /* (1) */
    const float *w2, *b2;           /* (n), (n) */
    const float *w3;                /* (n) */
    const float *gamma_0, *gamma_1; /* (1), (1) */
} elbo_learned_schedule;

typedef struct {
    elbo_process_kind kind;
    elbo_schedule_kind schedule;
    double beta_min, beta_max, t0;    /* linear (VP and sub-VP) */
    double log_snr_min, log_snr_max;  /* cosine, loglinear: log_snr(1), log_snr(0) */
    double sigma_min, sigma_max;      /* geometric (VE) */
    const elbo_learned_schedule *learned; /* learned */
} elbo_process;

/* The vector-Jacobian product of the learned schedule: with gamma(t) = -log_snr(t) and
 * gamma'(t) its derivative in t, adds
 *   sum_b cg[b] d gamma(t_b) / d theta + cgp[b] d gamma'(t_b) / d theta
 * to grad[0 .. 3n + 3) for theta = (w1, w2[0..n), b2[0..n), w3[0..n), gamma_0, gamma_1)
 * (|w| is differentiated as sign(w), sign(0) = 1), and the same for a second set of
 * coefficients (cg2, cgp2) into grad2 unless grad2 is NULL, from one pass over the
 * Jacobian. work: room for 5 (3n + 1) doubles. */
void elbo_learned_schedule_vjp(const elbo_learned_schedule *l, int64_t B, const double *t,
                               const double *cg, const double *cgp, double *grad,
                               const double *cg2, const double *cgp2, double *grad2, double *work);

/* kind VP, schedule LOGLINEAR; beta 0.1 .. 20, t0 = 1e-3; log_snr in [-5, 13.3] (VDM's
 * gamma_min = -13.3, gamma_max = 5); sigma 0.01 .. 50 (score SDE). */
void elbo_process_init(elbo_process *p);
/* Sets kind and schedule from a name: "linear", "cosine", "loglinear", "learned" (VP),
 * "subvp" (sub-VP, linear betas), "ve" (VE, geometric). Other fields keep their values.
 * ELBO_ERR_ARG names the schedule if unknown. */
elbo_status elbo_process_set_schedule(elbo_process *p, const char *name);
const char *elbo_process_schedule_name(const elbo_process *p);
/* Checks the fields: ranges ordered and finite, the learned parameters present. */
elbo_status elbo_process_check(const elbo_process *p);

/* The process at one time. */
typedef struct {
    double t;
    double alpha, sigma;   /* q(x_t|x) = N(alpha x, sigma^2) */
    double log_snr;        /* log(alpha^2 / sigma^2) */
    double dlog_snr_dt;    /* d log_snr / dt (< 0) */
    double f, g2;          /* SDE drift coefficient d log alpha / dt and g(t)^2 */
} elbo_noise_level;

/* The noise level at t in [0, 1]; ELBO_ERR_ARG for t outside it or not finite. */
elbo_status elbo_process_at(const elbo_process *p, double t, elbo_noise_level *out);
/* The standard deviation of the prior p(x_1): 1 for VP and sub-VP, sigma_max for VE. */
double elbo_process_prior_std(const elbo_process *p);
/* The time t in [0, 1] where log_snr(t) = target (log_snr decreases in t), by bisection to
 * machine precision, and its level; ELBO_ERR_ARG when target is outside [log_snr(1),
 * log_snr(0)] (the message gives the range). Used to read a noisy observation y = x + s n as
 * x_t / alpha at log_snr = -2 log s (Tweedie's one-step denoiser). */
elbo_status elbo_process_time_at_log_snr(const elbo_process *p, double target,
                                         elbo_noise_level *out);

/* ---- q(x_s | x_t, x) for s < t (VDM eq. 3, 4; Ho et al. eq. 6, 7) ----------------------
 *   alpha_ts = alpha_t / alpha_s,  sigma_ts^2 = sigma_t^2 - alpha_ts^2 sigma_s^2,
 *   mean = (alpha_ts sigma_s^2 / sigma_t^2) x_t + (alpha_s sigma_ts^2 / sigma_t^2) x,
 *   var  = sigma_ts^2 sigma_s^2 / sigma_t^2,
 * with sigma_ts^2 / sigma_t^2 = -expm1(log_snr_t - log_snr_s) for exactness at small gaps. */
typedef struct {
    double coef_xt, coef_x; /* mean = coef_xt x_t + coef_x x */
    double var;             /* variance of q(x_s | x_t, x) */
    double alpha_ts, var_ts; /* q(x_t | x_s) = N(alpha_ts x_s, var_ts) */
} elbo_posterior_coefs;
/* ELBO_ERR_ARG unless s < t (a level with sigma = 0 at s is allowed: var = 0). */
elbo_status elbo_posterior_coefs_at(const elbo_noise_level *s, const elbo_noise_level *t,
                                    elbo_posterior_coefs *out);

/* ---- parameterisations ----------------------------------------------------------------
 * What the network predicts at (x_t, t), and how each converts to the others, with
 * x_t = alpha x + sigma eps (alpha > 0, sigma > 0):
 *   eps    eps_hat
 *   x0     x0_hat = (x_t - sigma eps_hat) / alpha
 *   v      v_hat = alpha eps_hat - sigma x0_hat   (Salimans & Ho 2022; VP: x0 = alpha x_t -
 *          sigma v when alpha^2 + sigma^2 = 1; here in general x0 = (alpha x_t - sigma v) /
 *          (alpha^2 + sigma^2))
 *   score  score_hat = grad log q(x_t) = -eps_hat / sigma;  Tweedie (Efron 2011):
 *          E[x | x_t] = (x_t + sigma^2 score) / alpha. */
typedef enum { ELBO_PARAM_EPS = 0, ELBO_PARAM_X0, ELBO_PARAM_V, ELBO_PARAM_SCORE } elbo_param_kind;
elbo_status elbo_param_parse(const char *name, elbo_param_kind *out);
const char *elbo_param_name(elbo_param_kind k);

/* eps_hat = a pred + k x_t for a prediction of kind `kind` (x_t = alpha x + sigma eps):
 *   eps (1, 0); x0 (-alpha/sigma, 1/sigma); v (alpha, sigma) / (alpha^2 + sigma^2);
 *   score (-sigma, 0). The affine map a model puts on its tape. */
void elbo_param_eps_coefs(elbo_param_kind kind, double alpha, double sigma, double *a, double *k);
/* out[i] = the prediction `from` of element i converted to the kind `to`, given x_t[i] and
 * the level (alpha, sigma). out may alias pred. */
void elbo_param_convert(elbo_param_kind from, elbo_param_kind to, const float *pred,
                        const float *x_t, double alpha, double sigma, float *out, int64_t n);
/* x0_hat = (x_t + sigma^2 score) / alpha: Tweedie's formula for E[x | x_t]. */
void elbo_tweedie_x0(const float *score, const float *x_t, double alpha, double sigma,
                     float *x0_hat, int64_t n);

/* ---- the variational bound (VDM, Kingma et al. 2021, eq. 11-17), per example, in nats ----
 *   -log p(x) <= L_prior + L_diffusion + L_recon
 *   L_prior     = KL(q(x_1|x) || N(0, prior_std^2 I))
 *   L_recon     = -E_{q(x_0|x)} log p(x | x_0)
 *   L_diffusion = 1/2 E_{t, eps} [w(t) ||eps - eps_hat(x_t; t)||^2] with the ELBO weight
 *     continuous time (VDM eq. 17):    w(t) = -d log_snr/dt,  t ~ U(0, 1)
 *     T steps (VDM eq. 14, s = t - 1/T): w(t) = T (SNR(s)/SNR(t) - 1) = T expm1(log_snr(s) -
 *                                         log_snr(t)),  t ~ U{1/T, ..., 1}
 * The training losses of point 2 re-weight the same squared error: */
typedef enum {
    ELBO_LOSS_SIMPLE = 0, /* w = 1: DDPM's L_simple (Ho et al. eq. 14), up to its 1/D mean */
    ELBO_LOSS_ELBO,       /* w as above: the bound itself (VDM) */
    ELBO_LOSS_SNR_TRUNC   /* w = max(1, 1/SNR(t)), i.e. max(SNR, 1) ||x - x0_hat||^2 (truncated
                           * SNR weighting, Salimans & Ho 2022) */
} elbo_loss_kind;
elbo_status elbo_loss_kind_parse(const char *name, elbo_loss_kind *out); /* simple|elbo|snr-trunc */
const char *elbo_loss_kind_name(elbo_loss_kind k);

/* The weight w(t) of ||eps - eps_hat||^2 at a level (and the level one step before, s, when
 * T > 0; ignored otherwise). */
double elbo_diffusion_weight(elbo_loss_kind k, const elbo_noise_level *t, const elbo_noise_level *s,
                             int T);

/* Times for one batch: t_b = (u + b / B) mod 1 with one u ~ U(0, 1) when low_discrepancy
 * (VDM appendix), else B independent uniforms; with T > 0 rounded up to the grid, t = ceil(t
 * T) / T (never 0). Values in (0, 1]. */
void elbo_diffusion_sample_times(elbo_rng *rng, int B, int low_discrepancy, int T, double *t);

/* L_prior = sum_i KL(N(alpha_1 x_i, sigma_1^2) || N(0, prior_std^2)), x[0..d). */
double elbo_diffusion_prior_kl(const elbo_noise_level *one, double prior_std, const float *x,
                               int64_t d);
/* L_recon for 8-bit data x in [-1, 1] on the grid x_k = 2k/255 - 1, with x_0 = alpha_0 x +
 * sigma_0 eps: p(x_i = x_k | x_0) = softmax_k(-(x_0,i / alpha_0 - x_k)^2 / (2 sigma_0^2 /
 * alpha_0^2)) (VDM's discrete decoder). A sum over the d values. */
double elbo_diffusion_recon_8bit(const elbo_noise_level *zero, const float *x, const float *eps,
                                 int64_t d);
/* d L_recon / d gamma_0 of elbo_diffusion_recon_8bit for a VP process, gamma_0 = -log_snr(0)
 * (x_0 / alpha_0 = x + e^(gamma_0/2) eps, variance e^gamma_0): with f_k = (y - x_k)^2 / (2 v),
 * d f_k = (y - x_k)(y - x) / (2 v) - f_k and dL = d f_true - sum_k p_k d f_k. */
double elbo_diffusion_recon_8bit_dgamma0(const elbo_noise_level *zero, const float *x,
                                         const float *eps, int64_t d);
/* d L_prior / d gamma_1 for a VP process and prior N(0, I), gamma_1 = -log_snr(1), s =
 * sigma_1^2 = sigmoid(gamma_1): 1/2 (1 - s) sum_i (s - s x_i^2 - 1). */
double elbo_diffusion_prior_kl_dgamma1(const elbo_noise_level *one, const float *x, int64_t d);
/* L_recon for continuous data: -log N(x; x_0 / alpha_0, sigma_0^2 / alpha_0^2), summed. */
double elbo_diffusion_recon_gauss(const elbo_noise_level *zero, const float *x, const float *eps,
                                  int64_t d);

#ifdef __cplusplus
}
#endif
#endif
