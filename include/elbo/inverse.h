/* elbo inverse: a pretrained diffusion model as a plug-and-play prior for inverse problems,
 * with no retraining: measurement operators y = A(x) + sigma_y n, the energies a solver
 * minimises or guides with, the solvers (plug-and-play optimisation, DPS, RePaint), the
 * image metrics (PSNR, SSIM) and the simple baselines they are compared with.
 *
 * Conventions
 * - Images are B x (c, h, w) float32, row-major, flattened to n = B D values, D = c h w, in
 *   whatever units the caller uses (the diffusion models' [-1, 1]; the metrics take [0, 1]).
 * - sigma_y is in the units of x. The CLI states it in the [0, 1] pixel range and passes
 *   2 sigma_y to the operator, since the models see [-1, 1].
 * - Every operator here is linear, y = A x: forward A, adjoint A^T (so the gradient of
 *   ||y - A x||^2 / 2 is A^T (A x - y)), and a pseudo-inverse A^+ where it is cheap.
 * - Errors follow core.h: ELBO_ERR_ARG with a message naming the argument; nothing exits.
 *   No function allocates inside its loops; scratch is allocated once per call.
 */
#ifndef ELBO_INVERSE_H
#define ELBO_INVERSE_H

#include <stdint.h>

#include "likelihood.h"
#include "sample.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- measurement operators -------------------------------------------------------------
 *   inpaint   y = m (.) x, m in {0, 1}^(h w) the mask of observed pixels (1: observed),
 *             shared by the c channels; M = D (y is 0 where m is 0). A^T = A, A^+ = A.
 *   superres  y = avgpool_f(x), the mean of each f x f block (f = factor, dividing h and w);
 *             M = c (h/f) (w/f). A^T y spreads each value / f^2 over its block;
 *             A A^T = I / f^2, so A^+ = f^2 A^T (nearest-neighbour replication).
 *   denoise   y = x; M = D. A^T = A^+ = I.
 *   deblur    y = k * x, a 2-D Gaussian kernel of std blur_sigma pixels, size 2 r + 1 with
 *             r = blur_radius (0: ceil(3 blur_sigma)), normalised to sum 1, applied per
 *             channel with circular (periodic) boundaries; M = D. The kernel is symmetric,
 *             so A^T = A. No cheap pseudo-inverse (elbo_op_pinv returns ELBO_ERR_ARG). */
typedef enum {
    ELBO_OP_INPAINT = 0,
    ELBO_OP_SUPERRES,
    ELBO_OP_DENOISE,
    ELBO_OP_DEBLUR,
    ELBO_OP_COUNT
} elbo_op_kind;
/* inpaint|superres|denoise|deblur */
elbo_status elbo_op_kind_parse(const char *name, elbo_op_kind *out);
const char *elbo_op_kind_name(elbo_op_kind k);

#define ELBO_OP_MAX_RADIUS 32

typedef struct {
    elbo_op_kind kind;
    int64_t c, h, w;     /* the image shape */
    const float *mask;   /* inpaint: h w values in {0, 1}, not owned (must outlive op) */
    int factor;          /* superres: f >= 1, dividing h and w */
    double blur_sigma;   /* deblur: kernel std in pixels, > 0 */
    int blur_radius;     /* deblur: 0..ELBO_OP_MAX_RADIUS (0: ceil(3 sigma), capped) */
    double sigma_y;      /* measurement noise std (units of x), >= 0 */
    float kernel[2 * ELBO_OP_MAX_RADIUS + 1]; /* deblur: the 1-D factor, filled by init */
    int radius;          /* deblur: the radius in use, filled by init */
} elbo_operator;

/* Validates op (shape, mask values, factor, sigma) and fills its derived fields (the blur
 * kernel). Call once before use. ELBO_ERR_ARG names the bad field. */
elbo_status elbo_op_init(elbo_operator *op);
/* D = c h w and M, the values per image of x and of y. */
int64_t elbo_op_dim_x(const elbo_operator *op);
int64_t elbo_op_dim_y(const elbo_operator *op);
/* y (B, M) = A x for x (B, D). */
elbo_status elbo_op_forward(const elbo_operator *op, const float *x, int64_t B, float *y);
/* x (B, D) = A^T r for r (B, M). */
elbo_status elbo_op_adjoint(const elbo_operator *op, const float *r, int64_t B, float *x);
/* x (B, D) = A^+ y (inpaint, superres, denoise); ELBO_ERR_ARG for deblur. */
elbo_status elbo_op_pinv(const elbo_operator *op, const float *y, int64_t B, float *x);
/* y = A x + sigma_y z, z ~ N(0, I) from rng (a measurement of x); for inpaint
 * y = A (x + sigma_y z), so y stays 0 where m is 0. Draws B M normals when sigma_y > 0. */
elbo_status elbo_op_measure(const elbo_operator *op, const float *x, int64_t B, elbo_rng *rng,
                            float *y);

/* Masks of h x w (1 observed, 0 missing) into mask[0..h w):
 *   box     a centred rectangle of h/2 x w/2 (rounded down) missing: rows
 *           [(h - h/2)/2, (h - h/2)/2 + h/2), columns likewise (offsets rounded down)
 *   random  each pixel observed with probability keep (Bernoulli, from seed)
 *   half    the right half (columns >= w/2) missing */
typedef enum { ELBO_MASK_BOX = 0, ELBO_MASK_RANDOM, ELBO_MASK_HALF } elbo_mask_kind;
elbo_status elbo_mask_kind_parse(const char *name, elbo_mask_kind *out); /* box|random|half */
elbo_status elbo_mask_make(elbo_mask_kind kind, int64_t h, int64_t w, double keep,
                           uint64_t seed, float *mask);
/* A mask from a grayscale or RGB PNG of h x w: a pixel is observed when its (first channel)
 * value is >= 128. ELBO_ERR_IO / ELBO_ERR_FORMAT name the file (also a size mismatch). */
elbo_status elbo_mask_load_png(const char *path, int64_t h, int64_t w, float *mask);

/* ---- energies: what a solver pushes x towards ---------------------------------------------
 * value[b] = E(x_b) and grad (B, D) = d E / d x for each of the B images (either may be
 * NULL when not wanted). `norm_scale` s turns E into the residual norm ||r|| = s sqrt(2 E)
 * that DPS's step-size convention uses (sigma_y for a measurement; 1 for a constraint). */
typedef elbo_status (*elbo_energy_fn)(void *user, const float *x, int64_t B, double *value,
                                      float *grad);
typedef struct {
    elbo_energy_fn fn;
    void *user;
    double norm_scale;
} elbo_energy;

/* The measurement energy E(x) = ||y - A x||^2 / (2 sigma_y^2) = -log p(y | x) + const
 * (sigma_y > 0), grad = A^T (A x - y) / sigma_y^2; with sigma_y = 0 the weight 1/(2 s0^2)
 * with s0 = 1/255 stands in (noiseless data, stated by the CLI). user = this struct;
 * work: B M floats of scratch, owned by the caller. */
typedef struct {
    const elbo_operator *op;
    const float *y;   /* (B, M) */
    float *work;      /* B M floats */
} elbo_measurement_energy;
elbo_status elbo_measurement_energy_fn(void *user, const float *x, int64_t B, double *value,
                                       float *grad);
/* The energy of a constraint from a classifier: E(x) = -weight log p(k_b | x_b) with a
 * classifier gradient (guidance.h's elbo_classifier_grad_fn at lvl = NULL: the clean
 * classifier). user = this struct. */
typedef struct {
    elbo_status (*classifier)(void *user, const float *x, int64_t n, const elbo_noise_level *lvl,
                              const int32_t *labels, float *grad, double *log_prob);
    void *classifier_user;
    const int32_t *labels; /* (B) */
    double weight;         /* > 0 */
    int64_t dim;           /* D = c h w, the values per image (the classifier takes n = B D) */
} elbo_constraint_energy;
elbo_status elbo_constraint_energy_fn(void *user, const float *x, int64_t B, double *value,
                                      float *grad);

/* ---- the prior: the pretrained model through its denoiser ------------------------------- */
typedef struct {
    const elbo_process *process;
    elbo_denoiser_fn denoise;        /* x0_hat = D(x_t, t) */
    void *denoise_user;
    elbo_denoiser_vjp_fn denoise_vjp; /* x0_hat and (d x0_hat / d x_t)^T u */
    void *vjp_user;
    int64_t c, h, w;                 /* the model's image shape (checked against the op) */
    /* optional: the VJP at a cotangent formed from x0_hat, in one forward pass (the diffusion
     * model's elbo_diffusion_denoiser_vjp_at, user vjp_user); NULL: denoise, then denoise_vjp
     * (two passes). PnP and DPS use it when set; the results are the same bytes. */
    elbo_denoiser_vjp_at_fn denoise_vjp_at;
} elbo_prior;

/* ---- plug-and-play (Graikos et al. 2022) ---------------------------------------------------
 * Optimises x by Adam (lr, beta1 0.9, beta2 0.999, eps 1e-8) on
 *   L(x) = w(t) ||eps - eps_hat(alpha_t x + sigma_t eps, t)||^2 + E(x)
 * with a fresh eps ~ N(0, I) at each step and the full gradient through the network:
 *   d/dx ||eps - eps_hat||^2 = 2 alpha J_eps^T (eps_hat - eps),
 *   J_eps = (I - alpha J_x0) / sigma  (eps_hat = (x_t - alpha x0_hat) / sigma),
 * so J_eps^T u = (u - alpha vjp_x0(u)) / sigma.
 * Weightings of the prior term (elbo_pnp_weighting):
 *   elbo    w(t) = -dlog_snr/dt / 2, the ELBO's weight: with t ~ U(0, 1) the prior term is an
 *           unbiased estimate of the diffusion ELBO's -log p(x) bound (VDM eq. 17, the prior
 *           and reconstruction terms aside), which for the exact denoiser of a Gaussian equals
 *           -log p(x) + const; so the fixed point is the MAP of p(x | y)
 *   simple  w(t) = 1 / D, the mean squared error per image (the paper's notebook:
 *           F.mse_loss(eps_pred, eps) for one image), which weighs high noise far more
 * energy_decay = 1 multiplies E by (1 - i/N) at step i (the notebook's 0.01 (steps - i) /
 * steps on its constraint), so the prior alone shapes the last steps; 0 keeps E whole.
 * Schedules of t over the steps i = 0..N-1:
 *   anneal   the paper's: t_i = clamp((1 - i/N)(1 + cos(i/50) / 4) t_max, t_min, t_max),
 *            high to low noise (their MNIST notebook), mode-seeking
 *   uniform  t_i ~ U(t_min, t_max): stochastic gradient on the bound above
 * x starts at x_init if non-NULL, else N(0, I) from seed. The output is x itself. Each step
 * needs the VJP at u = eps_hat - eps, formed from x0_hat: one prior->denoise_vjp_at call, or
 * prior->denoise then prior->denoise_vjp; all B images share t_i. energy is required. */
typedef enum { ELBO_PNP_ANNEAL = 0, ELBO_PNP_UNIFORM } elbo_pnp_schedule;
elbo_status elbo_pnp_schedule_parse(const char *name, elbo_pnp_schedule *out); /* anneal|uniform */
typedef enum { ELBO_PNP_WEIGHT_ELBO = 0, ELBO_PNP_WEIGHT_SIMPLE } elbo_pnp_weighting;
elbo_status elbo_pnp_weighting_parse(const char *name, elbo_pnp_weighting *out); /* elbo|simple */

typedef struct {
    int steps;                 /* N >= 1: 1000 */
    double lr;                 /* Adam's step size: 0.01 (paper) */
    elbo_pnp_schedule schedule; /* anneal */
    double t_min, t_max;       /* 0.02, 1 (0 <= t_min < t_max <= 1) */
    double prior_weight;       /* multiplies w(t): 1 */
    elbo_pnp_weighting weighting; /* w(t): elbo */
    int energy_decay;          /* 1: E's weight (1 - i/N) at step i; 0 (default): E whole */
    uint64_t seed;             /* x's init and the eps of each step */
} elbo_pnp_params;
void elbo_pnp_params_init(elbo_pnp_params *pp);
/* x (B, D) in, solution out (x_init: x holds it on entry when init_from_x != 0). */
elbo_status elbo_pnp_solve(const elbo_prior *prior, const elbo_energy *energy,
                           const elbo_pnp_params *pp, int init_from_x, float *x, int64_t B);

/* ---- DPS: diffusion posterior sampling (Chung et al. 2023, alg. 1) --------------------------
 * The ancestral sampler of sample.h on the grid t_i = i / K, pushed by the gradient of
 * E(x0_hat(x_t)) taken through Tweedie's x0_hat (the denoiser's VJP at u = grad E(x0_hat)).
 * Step-size conventions (elbo_dps_step):
 *   likelihood  guidance by DPS's approximation p(y | x_t) ~ p(y | x0_hat(x_t)) = N(y; A x0_hat,
 *               sigma_y^2 I) at scale zeta, as classifier guidance (guidance.h): x0_hat <-
 *               x0_hat - zeta (sigma_t^2 / alpha_t) grad_{x_t} E before the ancestral step, so
 *               zeta = 1 adds grad log p(y | x_t) to the score exactly, at every step size
 *   norm        after the ancestral step, x_s -= zeta_i grad_{x_t} E with zeta_i = zeta s^2 /
 *               ||r||, i.e. x_s -= zeta grad ||y - A x0_hat||_2, the released code's (scale
 *               zeta, per image ||r|| = s sqrt(2 E), s = norm_scale, so grad ||r|| = s^2 grad E
 *               / ||r||; 0 where r = 0); the paper's zeta_i = zeta' / ||y - A(x0_hat)|| (app.
 *               C.2) on grad ||r||^2 is zeta = 2 zeta'. It does not depend on sigma_y.
 *   pigdm       likelihood with p(y | x_t) ~ N(y; A x0_hat, (s^2 + c r_t^2) I), s = norm_scale
 *               (sigma_y), r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2) the variance of x given
 *               x_t under a unit-variance Gaussian prior (Song et al. 2023, PiGDM's r_t): the
 *               guidance step times s^2 / (s^2 + c r_t^2), c = aat (A A^T = c I), which stops
 *               DPS's over-confidence at high noise (exact for A A^T = c I and that prior:
 *               inpainting, super-resolution, denoising; approximate for deblurring)
 * Each step needs the VJP at u = grad E(x0_hat), formed from x0_hat: one prior->denoise_vjp_at
 * call, or without it prior->denoise then prior->denoise_vjp; K fused calls + 1 denoiser
 * call. With E = 0 it is the ancestral sampler (same seed, same bytes). Output: x0_hat at
 * t = 0. */
typedef enum { ELBO_DPS_LIKELIHOOD = 0, ELBO_DPS_NORM, ELBO_DPS_PIGDM } elbo_dps_step;
/* likelihood|norm|pigdm */
elbo_status elbo_dps_step_parse(const char *name, elbo_dps_step *out);

typedef struct {
    int steps;           /* K >= 1: 1000 */
    double zeta;         /* > 0: 1 */
    elbo_dps_step step;  /* norm */
    double aat;          /* pigdm: c of A A^T = c I (superres 1 / f^2; inpaint on the observed
                          * pixels, denoise: 1; deblur: 1, the kernel's largest eigenvalue);
                          * the variance is s^2 + c r_t^2. 0: 1 */
    uint64_t seed;
} elbo_dps_params;
void elbo_dps_params_init(elbo_dps_params *dp);
elbo_status elbo_dps_solve(const elbo_prior *prior, const elbo_energy *energy,
                           const elbo_dps_params *dp, float *x, int64_t B);

/* ---- RePaint (Lugmayr et al. 2022) ----------------------------------------------------------
 * Inpainting with the known pixels y (an inpaint operator's measurement) by resampling: at
 * each step down s < t, x_s = m (.) x_s^known + (1 - m) (.) x_s^unknown with
 * x_s^known ~ q(x_s | y) = N(alpha_s y, sigma_s^2 I) and x_s^unknown ~ p(x_s | x_t) (the
 * ancestral step); the time schedule goes back up `jump` steps `resample - 1` times after
 * each `jump` steps down (their jump schedule; jump 1, resample 1: no resampling), each step
 * up x_t ~ q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2 I). Output: x0_hat at t = 0 with the
 * known pixels of y pasted in. ELBO_ERR_ARG unless op is an inpaint operator with a mask of
 * 0s and 1s and the prior's shape. The unknown pixels' chain draws from seed as the ancestral
 * sampler does (the known pixels' noise from a second stream): with an all-zero mask and
 * resample 1 it is that sampler, bit for bit. Calls: one per step down, plus the output. */
typedef struct {
    int steps;     /* K >= 1: 250 */
    int jump;      /* >= 1: 10 */
    int resample;  /* >= 1: 10 (resample 1: no resampling) */
    uint64_t seed;
} elbo_repaint_params;
void elbo_repaint_params_init(elbo_repaint_params *rp);
elbo_status elbo_repaint_solve(const elbo_prior *prior, const elbo_operator *op, const float *y,
                               const elbo_repaint_params *rp, float *x, int64_t B);
/* The number of steps (down plus up) of the jump schedule, for progress and NFE counts:
 * K + 2 (resample - 1) jump n_j, n_j = #{j = 0, jump, 2 jump, ... < K - jump}; the denoiser
 * calls are (length + K) / 2 + 1. -1 for NULL or a field out of range. */
int64_t elbo_repaint_schedule_length(const elbo_repaint_params *rp);

/* ---- metrics (on images in [0, 1], data range 1) ----------------------------------------- */
/* PSNR = 10 log10(1 / MSE) of one image pair of D values (+inf when equal). */
double elbo_psnr(const float *x, const float *ref, int64_t D);
/* SSIM (Wang et al. 2004) of one image pair (c, h, w): per channel the mean of the SSIM map
 * with an 11 x 11 Gaussian window of std 1.5 over the valid region (no padding), K1 = 0.01,
 * K2 = 0.03, L = 1, then averaged over channels; skimage's structural_similarity with
 * gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1. Needs h, w >=
 * 11 (ELBO_ERR_ARG otherwise). */
elbo_status elbo_ssim(const float *x, const float *ref, int64_t c, int64_t h, int64_t w,
                      double *out);

/* ---- baselines ---------------------------------------------------------------------------- */
/* Inpainting: missing pixels get the mean of the image's observed pixels (per channel); the
 * observed pixels are copied from y. An all-missing mask is ELBO_ERR_ARG. */
elbo_status elbo_fill_mean(const float *y, const float *mask, int64_t B, int64_t c, int64_t h,
                           int64_t w, float *x);
/* Inpainting: each missing pixel takes the value of the nearest observed pixel (Euclidean
 * distance; ties to the first in row-major order). An all-missing mask is ELBO_ERR_ARG. */
elbo_status elbo_fill_nearest(const float *y, const float *mask, int64_t B, int64_t c,
                              int64_t h, int64_t w, float *x);
/* Super-resolution: bicubic upsampling by `factor` of y (B, c, h/f, w/f) to (B, c, h, w),
 * Keys' cubic convolution kernel with a = -0.75 (PyTorch's choice; Keys and Matlab use
 * -0.5), half-pixel centres (align_corners=False), edge clamping: PyTorch's
 * interpolate(mode="bicubic", align_corners=False). */
elbo_status elbo_upsample_bicubic(const float *y, int64_t B, int64_t c, int64_t h, int64_t w,
                                  int factor, float *x);
/* Denoising: a Gaussian filter of std sigma pixels (radius ceil(3 sigma), capped at
 * ELBO_OP_MAX_RADIUS), per channel, with circular boundaries (the deblur operator's kernel). */
elbo_status elbo_gaussian_filter(const float *x, int64_t B, int64_t c, int64_t h, int64_t w,
                                 double sigma, float *out);

#ifdef __cplusplus
}
#endif
#endif
