/* Special functions for the distributions: lgamma, digamma (differentiable ops), trigamma,
 * the regularised incomplete gamma P(a, x), and the Gamma(alpha, 1) sampler with its implicit
 * reparameterisation gradient. Everything is evaluated in double. */
#include "internal.h"

#include <math.h>

#define PI_D 3.14159265358979323846

/* psi(x): psi(x) = psi(x + 1) - 1/x up to x >= 6, then
 * psi(x) ~ log x - 1/(2x) - sum B_2k / (2k x^2k) (A&S 6.3.18); x < 0 by reflection
 * psi(1 - x) - psi(x) = pi cot(pi x) (A&S 6.3.7). */
double elbo_digamma_d(double x) {
    if (isnan(x)) return x;
    if (x == 0) return -INFINITY; /* torch.digamma(0) = -inf */
    if (x < 0) {
        if (x == floor(x)) return NAN;
        return elbo_digamma_d(1.0 - x) - PI_D / tan(PI_D * x);
    }
    double r = 0;
    while (x < 6) {
        r -= 1.0 / x;
        x += 1;
    }
    double f = 1.0 / (x * x);
    double t =
        f * (-1.0 / 12 +
             f * (1.0 / 120 +
                  f * (-1.0 / 252 + f * (1.0 / 240 + f * (-1.0 / 132 + f * (691.0 / 32760))))));
    return r + log(x) - 0.5 / x + t;
}

/* psi_1(x): psi_1(x) = psi_1(x + 1) + 1/x^2 up to x >= 6, then
 * psi_1(x) ~ 1/x + 1/(2x^2) + sum B_2k / x^(2k+1) (A&S 6.4.12); x < 0 by reflection
 * psi_1(1 - x) + psi_1(x) = pi^2 / sin^2(pi x). */
double elbo_trigamma_d(double x) {
    if (isnan(x)) return x;
    if (x <= 0 && x == floor(x)) return INFINITY;
    if (x < 0) {
        double s = sin(PI_D * x);
        return -elbo_trigamma_d(1.0 - x) + PI_D * PI_D / (s * s);
    }
    double r = 0;
    while (x < 6) {
        r += 1.0 / (x * x);
        x += 1;
    }
    double f = 1.0 / (x * x);
    double t =
        1.0 / x + f / 2 +
        f / x * (1.0 / 6 + f * (-1.0 / 30 + f * (1.0 / 42 + f * (-1.0 / 30 + f * (5.0 / 66)))));
    return r + t;
}

/* log |Gamma(x)|, the reentrant libm form (lgamma writes the global signgam). */
static double lgamma_d(double x) {
    int sign;
    return lgamma_r(x, &sign);
}

/* P(a, x) = gamma(a, x) / Gamma(a) (Numerical Recipes 6.2): for x < a + 1 the series
 * e^-x x^a / Gamma(a+1) sum_n x^n / ((a+1)...(a+n)); otherwise 1 - Q with Q by the modified
 * Lentz continued fraction Q = e^-x x^a / Gamma(a) * 1/(x+1-a- 1(1-a)/(x+3-a- ...)). */
double elbo_gammainc_d(double a, double x) {
    if (!(a > 0) || isnan(x)) return NAN;
    if (x <= 0) return 0.0;
    if (isinf(x)) return 1.0;
    double lpre = a * log(x) - x - lgamma_d(a);
    if (x < a + 1) {
        double ap = a, term = 1.0 / a, sum = term;
        for (int n = 0; n < 100000; n++) {
            ap += 1;
            term *= x / ap;
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-17) break;
        }
        return sum * exp(lpre);
    }
    const double tiny = 1e-300;
    double b = x + 1 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-16) break;
    }
    return 1.0 - exp(lpre) * h;
}

/* ---- lgamma / digamma ops: y = f(x), dx += dy f'(x) ----------------------------------- */
static void lgamma_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    for (int64_t i = 0; i < x->numel; i++)
        gx[i] += (float)((double)y->grad[i] * elbo_digamma_d((double)x->data[i]));
}

static void digamma_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *x = n->in[0], *y = n->out;
    float *gx = elbo__grad(ctx, x);
    if (!gx) return;
    for (int64_t i = 0; i < x->numel; i++)
        gx[i] += (float)((double)y->grad[i] * elbo_trigamma_d((double)x->data[i]));
}

/* lgamma(x) = log |Gamma(x)|; d/dx = psi(x). */
elbo_tensor *elbo_lgamma(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    elbo_tensor *y = elbo__new_like(ctx, x);
    if (!y) return NULL;
    for (int64_t i = 0; i < x->numel; i++) y->data[i] = (float)lgamma_d((double)x->data[i]);
    int ok;
    elbo__record(ctx, "lgamma", y, lgamma_backward, &ok, 1, x);
    return ok ? y : NULL;
}

/* psi(x) = d/dx lgamma(x); d/dx = psi_1(x). */
elbo_tensor *elbo_digamma(elbo_ctx *ctx, elbo_tensor *x) {
    if (!x) return NULL;
    elbo_tensor *y = elbo__new_like(ctx, x);
    if (!y) return NULL;
    for (int64_t i = 0; i < x->numel; i++) y->data[i] = (float)elbo_digamma_d((double)x->data[i]);
    int ok;
    elbo__record(ctx, "digamma", y, digamma_backward, &ok, 1, x);
    return ok ? y : NULL;
}

/* ---- Gamma(alpha, 1) draws ------------------------------------------------------------ */
/* Per-element Philox stream: word j of element i is lane j%4 of counter (i << 24) + j/4
 * under the fill's key, so element i's draws do not depend on other elements or threads. */
typedef struct {
    uint64_t key, counter;
    uint32_t w[4];
    int used;
} elem_stream;

static uint32_t stream_word(elem_stream *s) {
    if (s->used == 4) {
        elbo_philox4x32(s->key, s->counter++, s->w);
        s->used = 0;
    }
    return s->w[s->used++];
}
/* u in (0, 1): (k + 1/2) 2^-32. */
static double stream_u(elem_stream *s) { return ((double)stream_word(s) + 0.5) * 0x1p-32; }
/* N(0, 1) by Box-Muller (one value of the pair; simple, and the cost is negligible here). */
static double stream_normal(elem_stream *s) {
    double u1 = stream_u(s), u2 = stream_u(s);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * PI_D * u2);
}

/* One Gamma(alpha, 1) draw. Integer alpha <= 64: -sum_{j<alpha} log u_j (a sum of alpha
 * Exp(1)). Otherwise Marsaglia & Tsang 2000: d = alpha - 1/3, c = 1/sqrt(9 d), x ~ N(0,1),
 * v = (1 + c x)^3, accept d v when log u < x^2/2 + d - d v + d log v; alpha < 1 uses
 * Gamma(alpha + 1) u^(1/alpha). */
static double gamma_draw(elem_stream *s, double alpha) {
    if (alpha == floor(alpha) && alpha <= 64) {
        double g = 0;
        for (int j = 0; j < (int)alpha; j++) g -= log(stream_u(s));
        return g;
    }
    double boost = 1.0, a = alpha;
    if (a < 1) {
        boost = pow(stream_u(s), 1.0 / a);
        a += 1;
    }
    double d = a - 1.0 / 3, c = 1.0 / sqrt(9 * d);
    for (;;) {
        double x = stream_normal(s), v = 1 + c * x;
        if (v <= 0) continue;
        v = v * v * v;
        double u = stream_u(s);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v * boost;
    }
}

/* dG/dalpha = -(dP(alpha, G)/dalpha) / p(G; alpha) (Figurnov et al. 2018, eq. 6), with a
 * central difference in alpha, step h = 1e-4 alpha (truncation ~h^2, rounding ~1e-16/h). */
static double gamma_implicit_grad(double alpha, double g) {
    if (!(g > 0)) return 0.0;
    double h = 1e-4 * alpha;
    double dp = (elbo_gammainc_d(alpha + h, g) - elbo_gammainc_d(alpha - h, g)) / (2 * h);
    double logpdf = (alpha - 1) * log(g) - g - lgamma_d(alpha);
    return -dp / exp(logpdf);
}

static void gamma_standard_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *alpha = n->in[0], *g = n->out;
    float *ga = elbo__grad(ctx, alpha);
    if (!ga) return;
    int64_t na = alpha->numel;
    for (int64_t i = 0; i < g->numel; i++) {
        int64_t j = i % na;
        ga[j] += (float)((double)g->grad[i] *
                         gamma_implicit_grad((double)alpha->data[j], (double)g->data[i]));
    }
}

elbo_tensor *elbo_gamma_standard(elbo_ctx *ctx, elbo_tensor *alpha, elbo_rng *rng, int64_t n) {
    if (!alpha) return NULL;
    if (!rng || n < 0) {
        elbo_error(ELBO_ERR_ARG, "gamma: rsample needs an rng and n >= 0 (got n = %lld)",
                   (long long)n);
        return NULL;
    }
    int ndim = alpha->ndim + (n > 0);
    if (ndim > ELBO_MAX_DIMS) {
        elbo_error(ELBO_ERR_SHAPE, "gamma: rsample of %d axes exceeds ELBO_MAX_DIMS", ndim);
        return NULL;
    }
    for (int64_t i = 0; i < alpha->numel; i++)
        if (!(alpha->data[i] > 0) || isinf(alpha->data[i])) {
            elbo_error(ELBO_ERR_ARG, "gamma: concentration[%lld] = %g must be finite and > 0",
                       (long long)i, (double)alpha->data[i]);
            return NULL;
        }
    int64_t shape[ELBO_MAX_DIMS];
    if (n > 0) shape[0] = n;
    for (int k = 0; k < alpha->ndim; k++) shape[k + (n > 0)] = alpha->shape[k];
    elbo_tensor *g = elbo_tensor_new(ctx, ndim, shape);
    if (!g) return NULL;
    /* The fill's key: a Philox word pair of (seed, offset); the offset advances by one. */
    uint32_t kw[4];
    elbo_philox4x32(rng->seed, rng->offset++, kw);
    uint64_t key = (uint64_t)kw[0] | (uint64_t)kw[1] << 32;
    int64_t na = alpha->numel;
    ELBO_PARALLEL_FOR(
        g->numel > 4096, for (int64_t i = 0; i < g->numel; i++) {
            elem_stream s = {key, (uint64_t)i << 24, {0, 0, 0, 0}, 4};
            g->data[i] = (float)gamma_draw(&s, (double)alpha->data[i % na]);
        });
    int ok;
    elbo__record(ctx, "gamma_standard", g, gamma_standard_backward, &ok, 1, alpha);
    return ok ? g : NULL;
}
