/* KL divergences: closed forms for same-kind pairs, and a Monte-Carlo estimate for any pair.
 * The closed forms are those of torch.distributions.kl (and the references given there),
 * checked against PyTorch and against the Monte-Carlo estimate in tests/test_prob.c. */
#include "internal.h"
#include "prob_internal.h"

#include <math.h>

#define EULER_GAMMA_D 0.57721566490153286061

int elbo_kl_has_closed_form(elbo_dist_kind p, elbo_dist_kind q) {
    if (p != q) return 0;
    switch (p) {
    case ELBO_DIST_NORMAL:
    case ELBO_DIST_LAPLACE:
    case ELBO_DIST_CAUCHY:
    case ELBO_DIST_EXPONENTIAL:
    case ELBO_DIST_GUMBEL:
    case ELBO_DIST_LOGNORMAL:
    case ELBO_DIST_GAMMA:
    case ELBO_DIST_DIRICHLET:
        return 1;
    default:
        return 0;
    }
}

/* KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
 * (Kingma & Welling 2014 appendix B in the standard-normal case). Also LogNormal: KL is
 * invariant under the bijection exp. */
static elbo_tensor *kl_normal(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *r = elbo_div(ctx, p->scale, q->scale);                      /* s1 / s2 */
    elbo_tensor *t = elbo_div(ctx, elbo_sub(ctx, p->loc, q->loc), q->scale); /* (m1-m2)/s2 */
    elbo_tensor *a = elbo_add(ctx, elbo_square(ctx, r), elbo_square(ctx, t));
    return elbo_sub(ctx, elbo_affine(ctx, a, 0.5f, -0.5f), elbo_log(ctx, r));
}

/* KL(Laplace(m1, s1) || Laplace(m2, s2)) = log(s2/s1) + |m1 - m2|/s2
 *   + (s1/s2) e^(-|m1 - m2|/s1) - 1 (from E|z - m2| for z ~ Laplace(m1, s1);
 *   torch's _kl_laplace_laplace). */
static elbo_tensor *kl_laplace(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *r = elbo_div(ctx, p->scale, q->scale);
    elbo_tensor *dm = elbo_abs(ctx, elbo_sub(ctx, p->loc, q->loc));
    elbo_tensor *t2 = elbo_div(ctx, dm, q->scale);
    elbo_tensor *t3 = elbo_mul(ctx, r, elbo_exp(ctx, elbo_neg(ctx, elbo_div(ctx, dm, p->scale))));
    return elbo_add_scalar(ctx, elbo_sub(ctx, elbo_add(ctx, t2, t3), elbo_log(ctx, r)), -1.0f);
}

/* KL(Cauchy(m1, s1) || Cauchy(m2, s2)) = log(((s1 + s2)^2 + (m1 - m2)^2) / (4 s1 s2))
 * (Chyzak & Nielsen 2019, "A closed-form formula for the KL divergence between Cauchy
 * distributions"). */
static elbo_tensor *kl_cauchy(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *s = elbo_square(ctx, elbo_add(ctx, p->scale, q->scale));
    elbo_tensor *m = elbo_square(ctx, elbo_sub(ctx, p->loc, q->loc));
    elbo_tensor *den = elbo_scale(ctx, elbo_mul(ctx, p->scale, q->scale), 4.0f);
    return elbo_log(ctx, elbo_div(ctx, elbo_add(ctx, s, m), den));
}

/* KL(Exp(l1) || Exp(l2)) = l2/l1 - log(l2/l1) - 1. */
static elbo_tensor *kl_exponential(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *r = elbo_div(ctx, q->rate, p->rate);
    return elbo_add_scalar(ctx, elbo_sub(ctx, r, elbo_log(ctx, r)), -1.0f);
}

/* KL(Gumbel(m1, s1) || Gumbel(m2, s2)), c = s1/s2:
 *   -log c + (m1 - m2)/s2 + c gamma_E + e^((m2 - m1)/s2) Gamma(1 + c) - 1 - gamma_E
 * (from E[e^(-z/s2)] = e^(-m1/s2) Gamma(1 + s1/s2) for z ~ Gumbel(m1, s1); torch's
 * _kl_gumbel_gumbel). */
static elbo_tensor *kl_gumbel(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *c = elbo_div(ctx, p->scale, q->scale);
    elbo_tensor *dm = elbo_div(ctx, elbo_sub(ctx, p->loc, q->loc), q->scale); /* (m1-m2)/s2 */
    elbo_tensor *t1 = elbo_sub(ctx, dm, elbo_log(ctx, c));
    elbo_tensor *t2 = elbo_scale(ctx, c, (float)EULER_GAMMA_D);
    elbo_tensor *t3 =
        elbo_exp(ctx, elbo_sub(ctx, elbo_lgamma(ctx, elbo_add_scalar(ctx, c, 1.0f)), dm));
    return elbo_add_scalar(ctx, elbo_add(ctx, elbo_add(ctx, t1, t2), t3),
                           (float)(-1.0 - EULER_GAMMA_D));
}

/* KL(Gamma(k1, b1) || Gamma(k2, b2)) = k2 log(b1/b2) + lgamma(k2) - lgamma(k1)
 *   + (k1 - k2) psi(k1) + (b2 - b1) k1 / b1 (Penny 2001; torch's _kl_gamma_gamma). */
static elbo_tensor *kl_gamma(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *k1 = p->concentration, *k2 = q->concentration, *b1 = p->rate, *b2 = q->rate;
    elbo_tensor *t1 = elbo_mul(ctx, k2, elbo_log(ctx, elbo_div(ctx, b1, b2)));
    elbo_tensor *t2 = elbo_sub(ctx, elbo_lgamma(ctx, k2), elbo_lgamma(ctx, k1));
    elbo_tensor *t3 = elbo_mul(ctx, elbo_sub(ctx, k1, k2), elbo_digamma(ctx, k1));
    elbo_tensor *t4 = elbo_mul(ctx, elbo_sub(ctx, b2, b1), elbo_div(ctx, k1, b1));
    return elbo_add(ctx, elbo_add(ctx, t1, t2), elbo_add(ctx, t3, t4));
}

/* KL(Dir(a) || Dir(b)) = log B(b) - log B(a) + sum_i (a_i - b_i)(psi(a_i) - psi(a0)),
 * a0 = sum_i a_i (Penny 2001; torch's _kl_dirichlet_dirichlet). */
static elbo_tensor *kl_dirichlet(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    elbo_tensor *a = p->concentration, *b = q->concentration;
    if (p->event_size != q->event_size) {
        elbo_error(ELBO_ERR_SHAPE, "kl: dirichlet event sizes %lld and %lld differ",
                   (long long)p->event_size, (long long)q->event_size);
        return NULL;
    }
    elbo_tensor *a0 = elbo_sum_axis(ctx, a, -1, 1);
    elbo_tensor *dpsi = elbo_sub(ctx, elbo_digamma(ctx, a), elbo_digamma(ctx, a0));
    elbo_tensor *s = elbo_sum_axis(ctx, elbo_mul(ctx, elbo_sub(ctx, a, b), dpsi), -1, 0);
    elbo_tensor *lb = elbo_sub(ctx, elbo__prob_log_beta(ctx, b), elbo__prob_log_beta(ctx, a));
    return elbo_add(ctx, lb, s);
}

elbo_tensor *elbo_kl(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q) {
    if (!p || !q || (unsigned)p->kind >= ELBO_DIST_COUNT || (unsigned)q->kind >= ELBO_DIST_COUNT) {
        elbo_error(ELBO_ERR_ARG, "kl: no distribution (NULL or unknown kind)");
        return NULL;
    }
    if (!elbo_kl_has_closed_form(p->kind, q->kind)) {
        elbo_error(ELBO_ERR_ARG, "kl: no closed form for KL(%s || %s); use elbo_kl_mc",
                   elbo_dist_name(p->kind), elbo_dist_name(q->kind));
        return NULL;
    }
    switch (p->kind) {
    case ELBO_DIST_NORMAL:
    case ELBO_DIST_LOGNORMAL:
        return kl_normal(ctx, p, q);
    case ELBO_DIST_LAPLACE:
        return kl_laplace(ctx, p, q);
    case ELBO_DIST_CAUCHY:
        return kl_cauchy(ctx, p, q);
    case ELBO_DIST_EXPONENTIAL:
        return kl_exponential(ctx, p, q);
    case ELBO_DIST_GUMBEL:
        return kl_gumbel(ctx, p, q);
    case ELBO_DIST_GAMMA:
        return kl_gamma(ctx, p, q);
    case ELBO_DIST_DIRICHLET:
        return kl_dirichlet(ctx, p, q);
    default:
        return NULL;
    }
}

/* KL ~= (1/n) sum_s log p(z_s) - log q(z_s), z_s ~ p by rsample (pathwise in p's parameters;
 * e.g. the SGVB estimator A of Kingma & Welling 2014 uses it for the KL term). */
elbo_tensor *elbo_kl_mc(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q, elbo_rng *rng,
                        int64_t n) {
    if (!p || !q) {
        elbo_error(ELBO_ERR_ARG, "kl_mc: no distribution (NULL)");
        return NULL;
    }
    if (n < 1) {
        elbo_error(ELBO_ERR_ARG, "kl_mc: n = %lld samples, need >= 1", (long long)n);
        return NULL;
    }
    elbo_tensor *z = elbo_dist_rsample(ctx, p, rng, n);
    if (!z) return NULL;
    elbo_tensor *lp = elbo_dist_log_prob(ctx, p, z);
    elbo_tensor *lq = lp ? elbo_dist_log_prob(ctx, q, z) : NULL;
    return elbo_mean_axis(ctx, elbo_sub(ctx, lp, lq), 0, 0);
}

elbo_tensor *elbo_kl_auto(elbo_ctx *ctx, const elbo_dist *p, const elbo_dist *q, elbo_rng *rng,
                          int64_t n, int *exact) {
    int closed = p && q && elbo_kl_has_closed_form(p->kind, q->kind);
    if (exact) *exact = closed;
    return closed ? elbo_kl(ctx, p, q) : elbo_kl_mc(ctx, p, q, rng, n);
}
