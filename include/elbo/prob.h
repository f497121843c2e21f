/* elbo prob: probability distributions on the tape: reparameterised sampling (rsample), log
 * densities, entropies and KL divergences, plus the special functions they need.
 *
 * A distribution is a plain struct holding its parameters as tensors of any broadcastable
 * shapes (parameters by scale, not log-scale, as torch.distributions, so values compare
 * directly). The batch shape is the broadcast of the parameter shapes; Dirichlet adds one
 * event axis, the last axis of its concentration. Everything returned is a tensor built from
 * differentiable ops, so gradients flow to the parameters:
 *
 *   rsample  z = g(theta, eps), eps drawn from the elbo_rng passed in: the three
 *            reparameterisation families of Kingma & Welling 2014 sec 2.4
 *              location-scale  Normal, Laplace, Logistic, Cauchy, Gumbel: z = loc + scale eps
 *              inverse CDF     eps = F^-1(u) of the standard member, u ~ U(0,1)
 *              composition     LogNormal = exp(Normal), Gamma(k integer) = sum of k
 *                              Exponentials, Dirichlet = Gammas normalised
 *            Gamma and Dirichlet have a pathwise gradient in the concentration too, by
 *            implicit reparameterisation (Figurnov et al. 2018), see elbo_gamma_standard.
 *   log_prob elementwise log density of x (Dirichlet: summed over the event axis); x outside
 *            the support (x < 0 for Exponential, x <= 0 for LogNormal / Gamma, not on the
 *            simplex for Dirichlet) is an ELBO_ERR_ARG error, as torch's validate_args.
 *   entropy  H = -E[log p(z)], of the batch shape.
 *   kl       closed form for the pairs listed at elbo_kl; elbo_kl_mc for any pair.
 *
 * Constructors check what is cheap: parameters present, shapes broadcastable, scale / rate /
 * concentration finite and > 0 (a scan of the values). Errors are one line naming the
 * distribution and the parameter; functions return NULL (or a status) and never abort.
 */
#ifndef ELBO_PROB_H
#define ELBO_PROB_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    ELBO_DIST_NORMAL = 0,  /* loc, scale */
    ELBO_DIST_LAPLACE,     /* loc, scale */
    ELBO_DIST_LOGISTIC,    /* loc, scale */
    ELBO_DIST_CAUCHY,      /* loc, scale */
    ELBO_DIST_EXPONENTIAL, /* rate */
    ELBO_DIST_GUMBEL,      /* loc, scale */
    ELBO_DIST_LOGNORMAL,   /* loc, scale of log z */
    ELBO_DIST_GAMMA,       /* concentration (shape k), rate */
    ELBO_DIST_DIRICHLET,   /* concentration (..., K) */
    ELBO_DIST_COUNT
} elbo_dist_kind;

typedef struct {
    elbo_dist_kind kind;
    elbo_tensor *loc;           /* Normal, Laplace, Logistic, Cauchy, Gumbel, LogNormal */
    elbo_tensor *scale;         /* the same */
    elbo_tensor *rate;          /* Exponential, Gamma */
    elbo_tensor *concentration; /* Gamma, Dirichlet */
    int batch_ndim;             /* broadcast shape of the parameters (Dirichlet: without K) */
    int64_t batch_shape[ELBO_MAX_DIMS];
    int64_t event_size; /* K for Dirichlet, 0 for the scalar distributions */
} elbo_dist;

/* "normal", "laplace", ... */
const char *elbo_dist_name(elbo_dist_kind kind);

/* ---- constructors: fill *d; ELBO_ERR_ARG for a NULL or non-positive parameter,
 * ELBO_ERR_SHAPE for shapes that do not broadcast. ------------------------------------- */
/* N(loc, scale^2): p(x) = exp(-(x - loc)^2 / (2 scale^2)) / (scale sqrt(2 pi)). */
elbo_status elbo_dist_normal(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* Laplace: p(x) = exp(-|x - loc| / scale) / (2 scale). */
elbo_status elbo_dist_laplace(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* Logistic: p(x) = e^-t / (scale (1 + e^-t)^2), t = (x - loc) / scale. */
elbo_status elbo_dist_logistic(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* Cauchy: p(x) = 1 / (pi scale (1 + t^2)), t = (x - loc) / scale. */
elbo_status elbo_dist_cauchy(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* Exponential: p(x) = rate e^(-rate x), x >= 0. */
elbo_status elbo_dist_exponential(elbo_dist *d, elbo_tensor *rate);
/* Gumbel (maximum): p(x) = e^-(t + e^-t) / scale, t = (x - loc) / scale. */
elbo_status elbo_dist_gumbel(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* LogNormal: log z ~ N(loc, scale^2). */
elbo_status elbo_dist_lognormal(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale);
/* Gamma(k, rate): p(x) = rate^k x^(k-1) e^(-rate x) / Gamma(k), x > 0. */
elbo_status elbo_dist_gamma(elbo_dist *d, elbo_tensor *concentration, elbo_tensor *rate);
/* Dirichlet(alpha), alpha (..., K), K >= 2: p(x) = prod x_i^(alpha_i - 1) / B(alpha) on the
 * simplex. */
elbo_status elbo_dist_dirichlet(elbo_dist *d, elbo_tensor *concentration);

/* ---- sampling, density, entropy ------------------------------------------------------- */
/* n reparameterised draws: shape (n, batch..., [K]) for n >= 1, the batch shape for n == 0
 * (one draw). Randomness only from rng (advanced), so the same seed gives the same bits.
 * Gradients flow to every parameter; Gamma / Dirichlet as described at elbo_gamma_standard. */
elbo_tensor *elbo_dist_rsample(elbo_ctx *ctx, const elbo_dist *d, elbo_rng *rng, int64_t n);
/* log p(x), x broadcast against the batch shape (Dirichlet: x (..., K), summed over K). */
elbo_tensor *elbo_dist_log_prob(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *x);
/* Differential entropy H[p] = -E_p[log p(z)], of the batch shape. */
elbo_tensor *elbo_dist_entropy(elbo_ctx *ctx, const elbo_dist *d);

/* ---- KL divergence -------------------------------------------------------------------- */
/* 1 when KL(p || q) of these kinds has a closed form in elbo_kl. */
int elbo_kl_has_closed_form(elbo_dist_kind p, elbo_dist_kind q);
/* KL(p || q) = E_p[log p(z) - log q(z)] in closed form, of the broadcast batch shape, for
 * the same-kind pairs Normal, Laplace, Cauchy, Exponential, Gumbel, LogNormal, Gamma and
 * Dirichlet. Any other pair: NULL with ELBO_ERR_ARG "kl: no closed form for KL(p || q)". */
elbo_tensor *elbo_kl(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q);
/* Monte-Carlo KL for any pair: (1/n) sum_s [log p(z_s) - log q(z_s)], z_s = rsample(p)
 * (n >= 1), of the batch shape; differentiable through the pathwise draws. An unbiased
 * estimate with standard error sd(log p - log q) / sqrt(n). */
elbo_tensor *elbo_kl_mc(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q, elbo_rng *rng,
                        int64_t n);
/* The closed form when there is one (*exact = 1), otherwise elbo_kl_mc with n draws
 * (*exact = 0). exact may be NULL. */
elbo_tensor *elbo_kl_auto(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q, elbo_rng *rng,
                          int64_t n, int *exact);

/* ---- special functions ---------------------------------------------------------------- */
/* Differentiable elementwise ops, evaluated in double and rounded to float:
 * lgamma(x) = log |Gamma(x)|, d/dx = digamma(x);
 * digamma(x) = d/dx lgamma(x), d/dx = trigamma(x) (digamma(0) = -inf, NaN at the negative
 * integers, as torch.digamma). */
elbo_tensor *elbo_lgamma(elbo_ctx *ctx, elbo_tensor *x);
elbo_tensor *elbo_digamma(elbo_ctx *ctx, elbo_tensor *x);
/* The same in double: psi(x) by recurrence to x >= 6 and the asymptotic series (reflection
 * for x < 0); psi_1(x) likewise (Abramowitz & Stegun 6.3.18, 6.4.12). */
double elbo_digamma_d(double x);
double elbo_trigamma_d(double x);
/* Regularised lower incomplete gamma P(a, x) = gamma(a, x) / Gamma(a) (a > 0, x >= 0), as
 * torch.special.gammainc: series for x < a + 1, Lentz continued fraction for Q otherwise
 * (Numerical Recipes sec 6.2). */
double elbo_gammainc_d(double a, double x);

/* G ~ Gamma(alpha, 1) elementwise (shape (n, alpha...) for n >= 1, alpha's for n == 0):
 * integer alpha <= 64 as a sum of alpha Exp(1) draws -sum log u_j, any other alpha by
 * Marsaglia & Tsang 2000 (alpha < 1 boosted: G(alpha) = G(alpha + 1) u^(1/alpha)).
 * Element i draws from Philox with a key taken from rng and counter (i, attempt), so the
 * bits do not depend on threads. Its gradient in alpha is the implicit reparameterisation
 * gradient (Figurnov, Mohamed & Mnih 2018, eq. 6): dG/dalpha = -(dP(alpha, G)/dalpha) /
 * p(G; alpha), with dP/dalpha by a central difference of elbo_gammainc_d in double (relative
 * step 1e-4: error ~1e-8, far below float32). This is the derivative of the inverse-CDF map
 * G = P^-1(u; alpha) at fixed u, not of the Marsaglia-Tsang map at fixed noise, so it is
 * checked against the inverse CDF and against d/dalpha E[f(G)] (tests/test_prob.c). */
elbo_tensor *elbo_gamma_standard(elbo_ctx *ctx, elbo_tensor *alpha, elbo_rng *rng, int64_t n);

/* The unbiased estimate of the squared maximum mean discrepancy between the samples x (n, d)
 * and y (m, d), n, m >= 2, under the Gaussian kernel k(a, b) = exp(-|a - b|^2 / (2 h^2))
 * (Gretton et al. 2012, eq. 3):
 *   MMD^2_u = sum_{i != j} k(x_i, x_j) / (n (n-1)) + sum_{i != j} k(y_i, y_j) / (m (m-1))
 *             - 2 sum_{i, j} k(x_i, y_j) / (n m),
 * summed in double over fixed row blocks (the same value for any thread count). It can be
 * slightly negative when the two laws are equal. NAN for bad arguments. */
double elbo_mmd2_rbf(const float *x, int64_t n, const float *y, int64_t m, int64_t d, double h);

/* The mean mu (d) and the unbiased covariance cov (d, d) of the n >= 2 rows of x (n, d), in
 * double. ELBO_ERR_ARG for n < 2 or d < 1. */
elbo_status elbo_mean_cov(const float *x, int64_t n, int d, double *mu, double *cov);
/* The Frechet (2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2) (Dowson &
 * Landau 1982; Heusel et al. 2017's FID on other features):
 *   d^2 = |mu1 - mu2|^2 + tr(cov1 + cov2 - 2 (cov1^1/2 cov2 cov1^1/2)^1/2),
 * the square roots by cyclic Jacobi eigendecompositions of the symmetric matrices in double
 * (eigenvalues below 0 from rounding clipped to 0). d <= 1024; work: 4 d^2 + d doubles or
 * NULL (allocated once here). Returns d^2 (>= 0) in *out. */
elbo_status elbo_frechet_distance(const double *mu1, const double *cov1, const double *mu2,
                                  const double *cov2, int d, double *work, double *out);
/* Eigenvalues w (d) and eigenvectors (the columns of v, (d, d) row-major) of the symmetric
 * a (d, d) by cyclic Jacobi rotations (Golub & Van Loan, 8.5); a is overwritten. */
void elbo_sym_eigen(double *a, int d, double *w, double *v);

#ifdef __cplusplus
}
#endif
#endif
