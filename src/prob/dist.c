/* Distributions: constructors with validation, reparameterised sampling, log densities and
 * entropies, all built from differentiable ops (include/elbo/prob.h). */
#include "internal.h"
#include "ops/broadcast.h"
#include "prob_internal.h"

#include <math.h>

#define LOG_2PI_D 1.83787706640934548356
#define PI_D 3.14159265358979323846
#define EULER_GAMMA_D 0.57721566490153286061

static const char *const NAMES[ELBO_DIST_COUNT] = {"normal",    "laplace",     "logistic",
                                                   "cauchy",    "exponential", "gumbel",
                                                   "lognormal", "gamma",       "dirichlet"};

const char *elbo_dist_name(elbo_dist_kind kind) {
    return (unsigned)kind < ELBO_DIST_COUNT ? NAMES[kind] : "unknown";
}

/* ---- constructors --------------------------------------------------------------------- */
/* t present, every value finite and > 0. */
static elbo_status check_positive(elbo_dist_kind kind, const char *param, const elbo_tensor *t) {
    if (!t) return elbo_error(ELBO_ERR_ARG, "%s: %s is NULL", elbo_dist_name(kind), param);
    for (int64_t i = 0; i < t->numel; i++)
        if (!(t->data[i] > 0) || isinf(t->data[i]))
            return elbo_error(ELBO_ERR_ARG, "%s: %s[%lld] = %g must be finite and > 0",
                              elbo_dist_name(kind), param, (long long)i, (double)t->data[i]);
    return ELBO_OK;
}

/* Fills kind and the batch shape, the broadcast of a and b (b may be NULL). */
static elbo_status set_batch(elbo_dist *d, elbo_dist_kind kind, const char *an, elbo_tensor *a,
                             const char *bn, elbo_tensor *b) {
    char op[64];
    snprintf(op, sizeof op, "%s: %s and %s", elbo_dist_name(kind), an, bn ? bn : "");
    elbo_tensor *ts[2] = {a, b};
    d->kind = kind;
    d->event_size = 0;
    if (elbo__bc_shape(op, 2, ts, &d->batch_ndim, d->batch_shape) != 0) return ELBO_ERR_SHAPE;
    return ELBO_OK;
}

static elbo_status loc_scale(elbo_dist *d, elbo_dist_kind kind, elbo_tensor *loc,
                             elbo_tensor *scale) {
    if (!d) return elbo_error(ELBO_ERR_ARG, "%s: d is NULL", elbo_dist_name(kind));
    *d = (elbo_dist){0};
    if (!loc) return elbo_error(ELBO_ERR_ARG, "%s: loc is NULL", elbo_dist_name(kind));
    elbo_status st = check_positive(kind, "scale", scale);
    if (st) return st;
    st = set_batch(d, kind, "loc", loc, "scale", scale);
    if (st) return st;
    d->loc = loc;
    d->scale = scale;
    return ELBO_OK;
}

elbo_status elbo_dist_normal(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_NORMAL, loc, scale);
}
elbo_status elbo_dist_laplace(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_LAPLACE, loc, scale);
}
elbo_status elbo_dist_logistic(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_LOGISTIC, loc, scale);
}
elbo_status elbo_dist_cauchy(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_CAUCHY, loc, scale);
}
elbo_status elbo_dist_gumbel(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_GUMBEL, loc, scale);
}
elbo_status elbo_dist_lognormal(elbo_dist *d, elbo_tensor *loc, elbo_tensor *scale) {
    return loc_scale(d, ELBO_DIST_LOGNORMAL, loc, scale);
}

elbo_status elbo_dist_exponential(elbo_dist *d, elbo_tensor *rate) {
    if (!d) return elbo_error(ELBO_ERR_ARG, "exponential: d is NULL");
    *d = (elbo_dist){0};
    elbo_status st = check_positive(ELBO_DIST_EXPONENTIAL, "rate", rate);
    if (st) return st;
    st = set_batch(d, ELBO_DIST_EXPONENTIAL, "rate", rate, NULL, NULL);
    if (st) return st;
    d->rate = rate;
    return ELBO_OK;
}

elbo_status elbo_dist_gamma(elbo_dist *d, elbo_tensor *concentration, elbo_tensor *rate) {
    if (!d) return elbo_error(ELBO_ERR_ARG, "gamma: d is NULL");
    *d = (elbo_dist){0};
    elbo_status st = check_positive(ELBO_DIST_GAMMA, "concentration", concentration);
    if (!st) st = check_positive(ELBO_DIST_GAMMA, "rate", rate);
    if (!st) st = set_batch(d, ELBO_DIST_GAMMA, "concentration", concentration, "rate", rate);
    if (st) return st;
    d->concentration = concentration;
    d->rate = rate;
    return ELBO_OK;
}

elbo_status elbo_dist_dirichlet(elbo_dist *d, elbo_tensor *concentration) {
    if (!d) return elbo_error(ELBO_ERR_ARG, "dirichlet: d is NULL");
    *d = (elbo_dist){0};
    elbo_status st = check_positive(ELBO_DIST_DIRICHLET, "concentration", concentration);
    if (st) return st;
    if (concentration->ndim < 1 || concentration->shape[concentration->ndim - 1] < 2) {
        char buf[64];
        return elbo_error(ELBO_ERR_SHAPE,
                          "dirichlet: concentration %s needs a last (event) axis of size >= 2",
                          elbo_shape_str(concentration, buf, sizeof buf));
    }
    d->kind = ELBO_DIST_DIRICHLET;
    d->concentration = concentration;
    d->batch_ndim = concentration->ndim - 1;
    for (int k = 0; k < d->batch_ndim; k++) d->batch_shape[k] = concentration->shape[k];
    d->event_size = concentration->shape[concentration->ndim - 1];
    return ELBO_OK;
}

static elbo_status check_dist(const elbo_dist *d, const char *fn) {
    if (!d || (unsigned)d->kind >= ELBO_DIST_COUNT)
        return elbo_error(ELBO_ERR_ARG, "%s: no distribution (NULL or unknown kind)", fn);
    return ELBO_OK;
}

/* ---- helpers -------------------------------------------------------------------------- */
/* t broadcast up to d's batch shape (t + 0), so results have the batch shape. */
elbo_tensor *elbo__prob_expand(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *t) {
    if (!t) return NULL;
    int same = t->ndim == d->batch_ndim;
    for (int k = 0; same && k < t->ndim; k++) same = t->shape[k] == d->batch_shape[k];
    if (same) return t;
    return elbo_add(ctx, t, elbo_tensor_zeros(ctx, d->batch_ndim, d->batch_shape));
}

/* A no-grad tensor of shape (n, batch..., [K]) (no leading axis when n == 0). */
static elbo_tensor *sample_tensor(elbo_ctx *ctx, const elbo_dist *d, int64_t n) {
    int64_t shape[ELBO_MAX_DIMS];
    int nd = 0;
    if (d->batch_ndim + (n > 0) + (d->event_size > 0) > ELBO_MAX_DIMS) {
        elbo_error(ELBO_ERR_SHAPE, "%s: rsample of more than %d axes", elbo_dist_name(d->kind),
                   ELBO_MAX_DIMS);
        return NULL;
    }
    if (n > 0) shape[nd++] = n;
    for (int k = 0; k < d->batch_ndim; k++) shape[nd++] = d->batch_shape[k];
    if (d->event_size > 0) shape[nd++] = d->event_size;
    return elbo_tensor_new(ctx, nd, shape);
}

/* eps ~ the standard member (loc 0, scale 1 / rate 1) by the inverse CDF of
 * v ~ U(0, 1) open: v = u + 2^-25 with u on the 24-bit grid of elbo_rng_uniform. */
static elbo_tensor *standard_eps(elbo_ctx *ctx, const elbo_dist *d, elbo_rng *rng, int64_t n) {
    elbo_tensor *e = sample_tensor(ctx, d, n);
    if (!e) return NULL;
    size_t m = (size_t)e->numel;
    if (d->kind == ELBO_DIST_NORMAL || d->kind == ELBO_DIST_LOGNORMAL) {
        elbo_rng_normal(rng, e->data, m, 0.0f, 1.0f);
        return e;
    }
    elbo_rng_uniform(rng, e->data, m, 0.0f, 1.0f);
    for (size_t i = 0; i < m; i++) {
        double v = (double)e->data[i] + 0x1p-25, r;
        switch (d->kind) {
        case ELBO_DIST_LAPLACE: { /* F^-1(v) = -sign(v - 1/2) log(1 - 2|v - 1/2|) */
            double c = v - 0.5;
            r = c < 0 ? log1p(2 * c) : -log1p(-2 * c);
        } break;
        case ELBO_DIST_LOGISTIC:
            r = log(v) - log1p(-v);
            break; /* logit v */
        case ELBO_DIST_CAUCHY:
            r = tan(PI_D * (v - 0.5));
            break;
        case ELBO_DIST_EXPONENTIAL:
            r = -log(v);
            break;
        case ELBO_DIST_GUMBEL:
            r = -log(-log(v));
            break;
        default:
            r = 0;
            break;
        }
        e->data[i] = (float)r;
    }
    return e;
}

/* ---- rsample -------------------------------------------------------------------------- */
/* Location-scale: z = loc + scale eps; Exponential: z = eps / rate; LogNormal:
 * z = exp(loc + scale eps) (Kingma & Welling 2014 sec 2.4). Gamma: z = G / rate with
 * G ~ Gamma(k, 1) (elbo_gamma_standard); Dirichlet: z_i = G_i / sum_j G_j, G_i ~ Gamma(alpha_i, 1)
 * (Devroye 1986 ch. XI.4). */
elbo_tensor *elbo_dist_rsample(elbo_ctx *ctx, const elbo_dist *d, elbo_rng *rng, int64_t n) {
    if (check_dist(d, "rsample")) return NULL;
    if (!rng || n < 0) {
        elbo_error(ELBO_ERR_ARG, "%s: rsample needs an rng and n >= 0 (got n = %lld)",
                   elbo_dist_name(d->kind), (long long)n);
        return NULL;
    }
    switch (d->kind) {
    case ELBO_DIST_GAMMA: {
        elbo_tensor *k = elbo__prob_expand(ctx, d, d->concentration);
        return elbo_div(ctx, elbo_gamma_standard(ctx, k, rng, n), d->rate);
    }
    case ELBO_DIST_DIRICHLET: {
        elbo_tensor *g = elbo_gamma_standard(ctx, d->concentration, rng, n);
        return elbo_div(ctx, g, elbo_sum_axis(ctx, g, -1, 1));
    }
    default:
        break;
    }
    elbo_tensor *eps = standard_eps(ctx, d, rng, n);
    if (!eps) return NULL;
    if (d->kind == ELBO_DIST_EXPONENTIAL) return elbo_div(ctx, eps, d->rate);
    elbo_tensor *z = elbo_add(ctx, d->loc, elbo_mul(ctx, d->scale, eps));
    return d->kind == ELBO_DIST_LOGNORMAL ? elbo_exp(ctx, z) : z;
}

/* ---- log_prob ------------------------------------------------------------------------- */
/* x must lie in the support: x >= lo (strict when open), as torch's validate_args. */
static int check_support(const elbo_dist *d, const elbo_tensor *x, double lo, int open) {
    for (int64_t i = 0; i < x->numel; i++) {
        double v = x->data[i];
        if (!(open ? v > lo : v >= lo)) {
            elbo_error(ELBO_ERR_ARG, "%s: log_prob of x[%lld] = %g outside the support x %s %g",
                       elbo_dist_name(d->kind), (long long)i, v, open ? ">" : ">=", lo);
            return 0;
        }
    }
    return 1;
}

/* Dirichlet: x >= 0 and every row sums to 1 within 1e-4 (float32 normalisation of K terms). */
static int check_simplex(const elbo_dist *d, const elbo_tensor *x) {
    int64_t k = x->ndim ? x->shape[x->ndim - 1] : 0;
    if (k != d->event_size) {
        char buf[64];
        elbo_error(ELBO_ERR_SHAPE, "dirichlet: log_prob of x %s needs a last axis of size %lld",
                   elbo_shape_str(x, buf, sizeof buf), (long long)d->event_size);
        return 0;
    }
    if (!check_support(d, x, 0.0, 0)) return 0;
    for (int64_t r = 0; r < x->numel / k; r++) {
        double s = 0;
        for (int64_t j = 0; j < k; j++) s += x->data[r * k + j];
        if (!(fabs(s - 1) <= 1e-4)) {
            elbo_error(ELBO_ERR_ARG, "dirichlet: log_prob of x row %lld sums to %.7g, not 1",
                       (long long)r, s);
            return 0;
        }
    }
    return 1;
}

/* t = (x - loc) / scale. */
static elbo_tensor *standardise(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *x) {
    return elbo_div(ctx, elbo_sub(ctx, x, d->loc), d->scale);
}

/* log N(x; loc, scale^2) = -t^2/2 - log scale - log(2 pi)/2. */
static elbo_tensor *normal_log_prob(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *x) {
    elbo_tensor *t = standardise(ctx, d, x);
    return elbo_sub(ctx, elbo_affine(ctx, elbo_square(ctx, t), -0.5f, (float)(-0.5 * LOG_2PI_D)),
                    elbo_log(ctx, d->scale));
}

elbo_tensor *elbo_dist_log_prob(elbo_ctx *ctx, const elbo_dist *d, elbo_tensor *x) {
    if (check_dist(d, "log_prob") || !x) return NULL;
    switch (d->kind) {
    case ELBO_DIST_NORMAL:
        return normal_log_prob(ctx, d, x);
    case ELBO_DIST_LAPLACE: /* -|t| - log(2 scale) */
        return elbo_sub(ctx, elbo_neg(ctx, elbo_abs(ctx, standardise(ctx, d, x))),
                        elbo_log(ctx, elbo_scale(ctx, d->scale, 2.0f)));
    case ELBO_DIST_LOGISTIC: { /* -t - 2 softplus(-t) - log scale */
        elbo_tensor *t = standardise(ctx, d, x);
        elbo_tensor *a = elbo_add(ctx, t, elbo_scale(ctx, elbo_softplus(ctx, elbo_neg(ctx, t)), 2));
        return elbo_neg(ctx, elbo_add(ctx, a, elbo_log(ctx, d->scale)));
    }
    case ELBO_DIST_CAUCHY: { /* -log pi - log scale - log(1 + t^2) */
        elbo_tensor *t = standardise(ctx, d, x);
        elbo_tensor *a = elbo_log(ctx, elbo_add_scalar(ctx, elbo_square(ctx, t), 1.0f));
        return elbo_neg(
            ctx, elbo_add_scalar(ctx, elbo_add(ctx, a, elbo_log(ctx, d->scale)), (float)log(PI_D)));
    }
    case ELBO_DIST_EXPONENTIAL: /* log rate - rate x */
        if (!check_support(d, x, 0.0, 0)) return NULL;
        return elbo_sub(ctx, elbo_log(ctx, d->rate), elbo_mul(ctx, d->rate, x));
    case ELBO_DIST_GUMBEL: { /* -(t + e^-t) - log scale */
        elbo_tensor *t = standardise(ctx, d, x);
        elbo_tensor *a = elbo_add(ctx, t, elbo_exp(ctx, elbo_neg(ctx, t)));
        return elbo_neg(ctx, elbo_add(ctx, a, elbo_log(ctx, d->scale)));
    }
    case ELBO_DIST_LOGNORMAL: { /* log N(log x; loc, scale^2) - log x */
        if (!check_support(d, x, 0.0, 1)) return NULL;
        elbo_tensor *lx = elbo_log(ctx, x);
        return elbo_sub(ctx, normal_log_prob(ctx, d, lx), lx);
    }
    case ELBO_DIST_GAMMA: { /* k log rate + (k - 1) log x - rate x - lgamma(k) */
        if (!check_support(d, x, 0.0, 1)) return NULL;
        elbo_tensor *k = d->concentration;
        elbo_tensor *a = elbo_mul(ctx, k, elbo_log(ctx, d->rate));
        elbo_tensor *b = elbo_mul(ctx, elbo_add_scalar(ctx, k, -1.0f), elbo_log(ctx, x));
        elbo_tensor *c = elbo_add(ctx, elbo_mul(ctx, d->rate, x), elbo_lgamma(ctx, k));
        return elbo_sub(ctx, elbo_add(ctx, a, b), c);
    }
    case ELBO_DIST_DIRICHLET: { /* sum_i (alpha_i - 1) log x_i - log B(alpha) */
        if (!check_simplex(d, x)) return NULL;
        elbo_tensor *a = d->concentration;
        elbo_tensor *s = elbo_sum_axis(
            ctx, elbo_mul(ctx, elbo_add_scalar(ctx, a, -1.0f), elbo_log(ctx, x)), -1, 0);
        return elbo_sub(ctx, s, elbo__prob_log_beta(ctx, a));
    }
    default:
        return NULL;
    }
}

/* log B(alpha) = sum_i lgamma(alpha_i) - lgamma(sum_i alpha_i), over the last axis. */
elbo_tensor *elbo__prob_log_beta(elbo_ctx *ctx, elbo_tensor *alpha) {
    return elbo_sub(ctx, elbo_sum_axis(ctx, elbo_lgamma(ctx, alpha), -1, 0),
                    elbo_lgamma(ctx, elbo_sum_axis(ctx, alpha, -1, 0)));
}

/* ---- entropy -------------------------------------------------------------------------- */
/* Standard forms (e.g. Cover & Thomas 2006 table 17.1; Lazo & Rathie 1978). */
elbo_tensor *elbo_dist_entropy(elbo_ctx *ctx, const elbo_dist *d) {
    if (check_dist(d, "entropy")) return NULL;
    elbo_tensor *h = NULL;
    switch (d->kind) {
    case ELBO_DIST_NORMAL: /* 1/2 + log(2 pi)/2 + log scale */
        h = elbo_add_scalar(ctx, elbo_log(ctx, d->scale), (float)(0.5 + 0.5 * LOG_2PI_D));
        break;
    case ELBO_DIST_LAPLACE: /* 1 + log(2 scale) */
        h = elbo_add_scalar(ctx, elbo_log(ctx, d->scale), (float)(1.0 + log(2.0)));
        break;
    case ELBO_DIST_LOGISTIC: /* log scale + 2 */
        h = elbo_add_scalar(ctx, elbo_log(ctx, d->scale), 2.0f);
        break;
    case ELBO_DIST_CAUCHY: /* log(4 pi scale) */
        h = elbo_add_scalar(ctx, elbo_log(ctx, d->scale), (float)log(4.0 * PI_D));
        break;
    case ELBO_DIST_EXPONENTIAL: /* 1 - log rate */
        h = elbo_affine(ctx, elbo_log(ctx, d->rate), -1.0f, 1.0f);
        break;
    case ELBO_DIST_GUMBEL: /* log scale + 1 + gamma_E */
        h = elbo_add_scalar(ctx, elbo_log(ctx, d->scale), (float)(1.0 + EULER_GAMMA_D));
        break;
    case ELBO_DIST_LOGNORMAL: /* H[N(loc, scale^2)] + loc */
        h = elbo_add(ctx,
                     elbo_add_scalar(ctx, elbo_log(ctx, d->scale), (float)(0.5 + 0.5 * LOG_2PI_D)),
                     d->loc);
        break;
    case ELBO_DIST_GAMMA: { /* k - log rate + lgamma(k) + (1 - k) psi(k) */
        elbo_tensor *k = d->concentration;
        elbo_tensor *a = elbo_sub(ctx, k, elbo_log(ctx, d->rate));
        elbo_tensor *b = elbo_mul(ctx, elbo_affine(ctx, k, -1.0f, 1.0f), elbo_digamma(ctx, k));
        h = elbo_add(ctx, elbo_add(ctx, a, elbo_lgamma(ctx, k)), b);
    } break;
    case ELBO_DIST_DIRICHLET: { /* log B(a) + (a0 - K) psi(a0) - sum_i (a_i - 1) psi(a_i) */
        elbo_tensor *a = d->concentration;
        elbo_tensor *a0 = elbo_sum_axis(ctx, a, -1, 0);
        elbo_tensor *t =
            elbo_mul(ctx, elbo_add_scalar(ctx, a0, (float)-d->event_size), elbo_digamma(ctx, a0));
        elbo_tensor *s = elbo_sum_axis(
            ctx, elbo_mul(ctx, elbo_add_scalar(ctx, a, -1.0f), elbo_digamma(ctx, a)), -1, 0);
        h = elbo_sub(ctx, elbo_add(ctx, elbo__prob_log_beta(ctx, a), t), s);
    } break;
    default:
        return NULL;
    }
    return elbo__prob_expand(ctx, d, h);
}
