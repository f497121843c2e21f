/* Distributions (include/elbo/prob.h): log_prob, entropy, KL and the special functions against
 * PyTorch (tests/fixtures/prob_*.bin, tools/gen_fixtures_prob.py: float32 inputs, float64
 * references); sample moments; closed-form KL and entropy against Monte Carlo; pathwise
 * gradients against finite differences and against the derivative of a known expectation;
 * errors; reproducibility.
 *
 * Monte-Carlo tolerances are Z standard errors with Z = 5, the standard error estimated from
 * the same sample (sd / sqrt(n); for a variance sqrt((m4 - m2^2) / n); for a quantile
 * sqrt(p (1 - p) / n) / f(x_p)). A correct implementation fails one such check with
 * probability 6e-7, so the ~100 checks here fail by chance with probability < 1e-4 (and the
 * seeds are fixed, so a pass is reproducible). */
#include "test.h"

#include <stdlib.h>
#include <string.h>

#define Z_SE 5.0
#define PI_D 3.14159265358979323846
#define EULER_D 0.57721566490153286061

/* A 1-D tensor holding v[0..n). */
static elbo_tensor *vec(elbo_ctx *ctx, int64_t n, const float *v) {
    elbo_tensor *t = elbo_tensor_new1(ctx, n);
    if (t) memcpy(t->data, v, (size_t)n * sizeof(float));
    return t;
}

/* Builds a distribution of the given kind from (a, b): (loc, scale), (rate, -),
 * (concentration, rate) or (concentration, -). */
static elbo_status make_dist(elbo_dist *d, elbo_dist_kind kind, elbo_tensor *a, elbo_tensor *b) {
    switch (kind) {
    case ELBO_DIST_NORMAL:
        return elbo_dist_normal(d, a, b);
    case ELBO_DIST_LAPLACE:
        return elbo_dist_laplace(d, a, b);
    case ELBO_DIST_LOGISTIC:
        return elbo_dist_logistic(d, a, b);
    case ELBO_DIST_CAUCHY:
        return elbo_dist_cauchy(d, a, b);
    case ELBO_DIST_EXPONENTIAL:
        return elbo_dist_exponential(d, a);
    case ELBO_DIST_GUMBEL:
        return elbo_dist_gumbel(d, a, b);
    case ELBO_DIST_LOGNORMAL:
        return elbo_dist_lognormal(d, a, b);
    case ELBO_DIST_GAMMA:
        return elbo_dist_gamma(d, a, b);
    case ELBO_DIST_DIRICHLET:
        return elbo_dist_dirichlet(d, a);
    default:
        return ELBO_ERR_ARG;
    }
}

static int has_b(elbo_dist_kind k) {
    return k != ELBO_DIST_EXPONENTIAL && k != ELBO_DIST_DIRICHLET;
}

/* The fixture names of (a, b). */
static void param_names(elbo_dist_kind k, const char **a, const char **b) {
    *a = "loc";
    *b = "scale";
    if (k == ELBO_DIST_EXPONENTIAL) *a = "rate", *b = NULL;
    if (k == ELBO_DIST_GAMMA) *a = "concentration", *b = "rate";
    if (k == ELBO_DIST_DIRICHLET) *a = "concentration", *b = NULL;
}

/* ---- special functions ---------------------------------------------------------------- */
/* lgamma / digamma / trigamma / gammainc against torch in float64, rounded to float32. elbo
 * evaluates in double too, so the only error is the final rounding (0.5 ulp = 3e-8
 * relative) plus the series' truncation (< 1e-13): 1e-6 relative (~16 ulp) with an absolute
 * 1e-6 floor for values near a zero of the function (lgamma(1) = lgamma(2) = 0). */
TEST(prob_special_vs_torch) {
    fx_file f;
    CHECK(fx_load(&f, "prob_special") == 0);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = fx_tensor(ctx, &f, "x");
    const fx_entry *lg = fx_get(&f, "lgamma"), *dg = fx_get(&f, "digamma"),
                   *tg = fx_get(&f, "trigamma"), *ga = fx_get(&f, "gammainc.a"),
                   *gx = fx_get(&f, "gammainc.x"), *gi = fx_get(&f, "gammainc");
    CHECK(x && lg && dg && tg && ga && gx && gi);
    elbo_tensor *y = elbo_lgamma(ctx, x);
    CHECK(y);
    CHECK_CLOSE_ARR("lgamma", y->data, (const float *)lg->data, x->numel, 1e-6f, 1e-6f);
    y = elbo_digamma(ctx, x);
    CHECK(y);
    CHECK_CLOSE_ARR("digamma", y->data, (const float *)dg->data, x->numel, 1e-6f, 1e-6f);
    float t[64], p[64];
    for (int64_t i = 0; i < x->numel; i++) t[i] = (float)elbo_trigamma_d(x->data[i]);
    CHECK_CLOSE_ARR("trigamma", t, (const float *)tg->data, x->numel, 1e-6f, 1e-6f);
    for (int64_t i = 0; i < ga->numel; i++)
        p[i] = (float)elbo_gammainc_d(((const float *)ga->data)[i], ((const float *)gx->data)[i]);
    CHECK_CLOSE_ARR("gammainc", p, (const float *)gi->data, ga->numel, 1e-6f, 1e-6f);
    /* torch's conventions at the poles. */
    CHECK(isinf(elbo_digamma_d(0.0)) && elbo_digamma_d(0.0) < 0);
    CHECK(isnan(elbo_digamma_d(-2.0)));
    elbo_ctx_free(ctx);
    fx_free(&f);
}

static elbo_tensor *build_lgamma(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    (void)u;
    return elbo_lgamma(ctx, in[0]);
}
static elbo_tensor *build_digamma(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    (void)u;
    return elbo_digamma(ctx, in[0]);
}

/* d lgamma = digamma, d digamma = trigamma against central differences (step 1e-3) of the
 * float32 ops on x in [0.5, 9] and two negative points: truncation eps^2 f'''/6 < 2e-5 and
 * rounding 6e-8 |f| / 2e-3 < 1e-4, inside atol = rtol = 1e-3. */
TEST(prob_special_grad) {
    static const float x[8] = {0.5f, 0.9f, 1.7f, 2.5f, 4.2f, 9.0f, -0.4f, -1.6f};
    gc_spec s = {.n_in = 1, .ndim = {1}, .shape = {{8}}, .init = {x}, .atol = 1e-3f, .rtol = 1e-3f};
    CHECK_GRAD("lgamma", build_lgamma, NULL, &s);
    CHECK_GRAD("digamma", build_digamma, NULL, &s);
}

/* ---- log_prob, entropy, KL against torch.distributions -------------------------------- */
static const elbo_dist_kind ALL_KINDS[] = {
    ELBO_DIST_NORMAL,    ELBO_DIST_LAPLACE,     ELBO_DIST_LOGISTIC,
    ELBO_DIST_CAUCHY,    ELBO_DIST_EXPONENTIAL, ELBO_DIST_GUMBEL,
    ELBO_DIST_LOGNORMAL, ELBO_DIST_GAMMA,       ELBO_DIST_DIRICHLET};
#define N_KINDS ((int)(sizeof ALL_KINDS / sizeof ALL_KINDS[0]))

static elbo_tensor *fx_param(elbo_ctx *ctx, const fx_file *f, const char *prefix,
                             const char *param) {
    char name[128];
    if (!param) return NULL;
    snprintf(name, sizeof name, "%s.%s", prefix, param);
    return fx_tensor(ctx, f, name);
}

/* log_prob and entropy are a few float32 ops over terms of magnitude <= 30 (Gamma:
 * k log rate, (k - 1) log x, lgamma k, for k <= 8), each rounded to 0.5 ulp (ulp(30) =
 * 1.9e-6) and then summed: about 2 ulp of the largest term, atol 4e-6, with rtol 2e-6
 * (~16 ulp) for the larger values. (Measured: <= 1e-6 absolute and relative.) */
TEST(prob_log_prob_entropy_vs_torch) {
    fx_file f;
    CHECK(fx_load(&f, "prob_dists") == 0);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    for (int i = 0; i < N_KINDS; i++) {
        elbo_dist_kind k = ALL_KINDS[i];
        const char *name = elbo_dist_name(k), *an, *bn;
        param_names(k, &an, &bn);
        elbo_tensor *a = fx_param(ctx, &f, name, an), *b = fx_param(ctx, &f, name, bn);
        elbo_tensor *x = fx_param(ctx, &f, name, "x");
        const fx_entry *lp, *h;
        char nm[64];
        snprintf(nm, sizeof nm, "%s.log_prob", name);
        lp = fx_get(&f, nm);
        snprintf(nm, sizeof nm, "%s.entropy", name);
        h = fx_get(&f, nm);
        CHECK_MSG(a && x && lp && (b || !has_b(k)), "%s: fixture entries missing", name);
        elbo_dist d;
        CHECK(make_dist(&d, k, a, b) == ELBO_OK);
        elbo_tensor *y = elbo_dist_log_prob(ctx, &d, x);
        CHECK_MSG(y && y->numel == lp->numel, "%s log_prob: %s", name, elbo_last_error());
        snprintf(nm, sizeof nm, "%s log_prob", name);
        CHECK_CLOSE_ARR(nm, y->data, (const float *)lp->data, y->numel, 4e-6f, 2e-6f);
        if (k == ELBO_DIST_LOGISTIC) continue; /* no torch entropy: prob_entropy_vs_mc */
        CHECK_MSG(h, "%s: no entropy entry", name);
        y = elbo_dist_entropy(ctx, &d);
        CHECK_MSG(y && y->numel == h->numel, "%s entropy: %s", name, elbo_last_error());
        snprintf(nm, sizeof nm, "%s entropy", name);
        CHECK_CLOSE_ARR(nm, y->data, (const float *)h->data, y->numel, 4e-6f, 2e-6f);
    }
    elbo_ctx_free(ctx);
    fx_free(&f);
}

/* The closed forms against torch.distributions.kl_divergence: a few float32 ops over terms
 * of magnitude <= 30 (as above), so atol 4e-6, rtol 2e-6. */
TEST(prob_kl_vs_torch) {
    static const elbo_dist_kind kinds[] = {
        ELBO_DIST_NORMAL,    ELBO_DIST_LAPLACE, ELBO_DIST_EXPONENTIAL, ELBO_DIST_GUMBEL,
        ELBO_DIST_LOGNORMAL, ELBO_DIST_GAMMA,   ELBO_DIST_DIRICHLET};
    fx_file f;
    CHECK(fx_load(&f, "prob_kl") == 0);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        elbo_dist_kind k = kinds[i];
        const char *name = elbo_dist_name(k), *an, *bn;
        param_names(k, &an, &bn);
        char pp[64], qp[64], nm[64];
        snprintf(pp, sizeof pp, "%s.p", name);
        snprintf(qp, sizeof qp, "%s.q", name);
        snprintf(nm, sizeof nm, "%s.kl", name);
        const fx_entry *want = fx_get(&f, nm);
        elbo_dist p, q;
        CHECK_MSG(want, "%s: no kl entry", name);
        CHECK(make_dist(&p, k, fx_param(ctx, &f, pp, an), fx_param(ctx, &f, pp, bn)) == ELBO_OK);
        CHECK(make_dist(&q, k, fx_param(ctx, &f, qp, an), fx_param(ctx, &f, qp, bn)) == ELBO_OK);
        elbo_tensor *kl = elbo_kl(ctx, &p, &q);
        CHECK_MSG(kl && kl->numel == want->numel, "%s kl: %s", name, elbo_last_error());
        snprintf(nm, sizeof nm, "%s kl", name);
        CHECK_CLOSE_ARR(nm, kl->data, (const float *)want->data, kl->numel, 4e-6f, 2e-6f);
    }
    elbo_ctx_free(ctx);
    fx_free(&f);
}

/* ---- sample moments ------------------------------------------------------------------- */
typedef struct {
    double mean, var, se_mean, se_var;
} moments;

/* Sample mean and (biased) variance of column j of x (n, c), with their standard errors. */
static moments column_moments(const float *x, int64_t n, int64_t c, int64_t j) {
    double m = 0, m2 = 0, m4 = 0;
    for (int64_t i = 0; i < n; i++) m += x[i * c + j];
    m /= (double)n;
    for (int64_t i = 0; i < n; i++) {
        double e = x[i * c + j] - m, e2 = e * e;
        m2 += e2;
        m4 += e2 * e2;
    }
    m2 /= (double)n;
    m4 /= (double)n;
    moments r = {m, m2, sqrt(m2 / (double)n), sqrt((m4 - m2 * m2) / (double)n)};
    return r;
}

#define N_MOM 200000

/* Mean and variance of every distribution but Cauchy against the closed forms, two or three
 * parameter settings each (one column per setting), N = 200000 draws, within Z_SE standard
 * errors. Gamma covers the integer shape (sum of Exponentials), shape < 1 (boosted
 * Marsaglia-Tsang) and shape > 1 (Marsaglia-Tsang). */
TEST(prob_sample_moments) {
    elbo_ctx *ctx = elbo_ctx_new(64 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 2024);
    static const float la[2] = {0.5f, -1.0f}, lb[2] = {1.5f, 0.4f};
    static const float ra[3] = {2.0f, 0.7f, 1.3f};
    static const float ka[3] = {3.0f, 0.45f, 7.5f};
    static const float lna[2] = {0.3f, -0.5f}, lnb[2] = {0.5f, 0.25f};
    static const float da[3] = {0.7f, 2.0f, 4.5f};
    for (int i = 0; i < N_KINDS; i++) {
        elbo_dist_kind k = ALL_KINDS[i];
        if (k == ELBO_DIST_CAUCHY) continue; /* no moments: prob_sample_cauchy_quantiles */
        elbo_ctx_reset(ctx);
        elbo_dist d;
        elbo_status st;
        int64_t c = 2;
        if (k == ELBO_DIST_EXPONENTIAL)
            c = 3, st = make_dist(&d, k, vec(ctx, 3, ra), NULL);
        else if (k == ELBO_DIST_GAMMA)
            c = 3, st = make_dist(&d, k, vec(ctx, 3, ka), vec(ctx, 3, ra));
        else if (k == ELBO_DIST_DIRICHLET)
            c = 3, st = make_dist(&d, k, vec(ctx, 3, da), NULL);
        else if (k == ELBO_DIST_LOGNORMAL)
            st = make_dist(&d, k, vec(ctx, 2, lna), vec(ctx, 2, lnb));
        else
            st = make_dist(&d, k, vec(ctx, 2, la), vec(ctx, 2, lb));
        CHECK(st == ELBO_OK);
        elbo_tensor *z = elbo_dist_rsample(ctx, &d, &rng, N_MOM);
        CHECK_MSG(z && z->numel == N_MOM * c, "%s rsample: %s", elbo_dist_name(k),
                  elbo_last_error());
        for (int64_t j = 0; j < c; j++) {
            double mean = 0, var = 0, m = la[j % 2], s = lb[j % 2];
            switch (k) {
            case ELBO_DIST_NORMAL:
                mean = m, var = s * s;
                break;
            case ELBO_DIST_LAPLACE:
                mean = m, var = 2 * s * s;
                break;
            case ELBO_DIST_LOGISTIC:
                mean = m, var = s * s * PI_D * PI_D / 3;
                break;
            case ELBO_DIST_GUMBEL:
                mean = m + s * EULER_D, var = PI_D * PI_D * s * s / 6;
                break;
            case ELBO_DIST_EXPONENTIAL:
                mean = 1 / ra[j], var = 1 / (ra[j] * ra[j]);
                break;
            case ELBO_DIST_LOGNORMAL: {
                double mu = lna[j], sg = lnb[j];
                mean = exp(mu + sg * sg / 2);
                var = (exp(sg * sg) - 1) * exp(2 * mu + sg * sg);
            } break;
            case ELBO_DIST_GAMMA:
                mean = ka[j] / ra[j], var = ka[j] / (ra[j] * ra[j]);
                break;
            case ELBO_DIST_DIRICHLET: {
                double a0 = da[0] + da[1] + da[2];
                mean = da[j] / a0;
                var = da[j] * (a0 - da[j]) / (a0 * a0 * (a0 + 1));
            } break;
            default:
                break;
            }
            moments r = column_moments(z->data, N_MOM, c, j);
            CHECK_MSG(fabs(r.mean - mean) <= Z_SE * r.se_mean,
                      "%s column %lld: mean %.6g, want %.6g (se %.2g)", elbo_dist_name(k),
                      (long long)j, r.mean, mean, r.se_mean);
            CHECK_MSG(fabs(r.var - var) <= Z_SE * r.se_var,
                      "%s column %lld: variance %.6g, want %.6g (se %.2g)", elbo_dist_name(k),
                      (long long)j, r.var, var, r.se_var);
        }
        if (k == ELBO_DIST_DIRICHLET) /* on the simplex: rows sum to 1 in float32 */
            for (int64_t r = 0; r < N_MOM; r += 997)
                CHECK_NEAR(z->data[3 * r] + z->data[3 * r + 1] + z->data[3 * r + 2], 1.0, 1e-6);
    }
    elbo_ctx_free(ctx);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Cauchy has no mean: its median loc and quartiles loc -+ scale instead. A sample quantile
 * of level p has standard error sqrt(p (1 - p) / n) / f(x_p), f(loc) = 1 / (pi scale),
 * f(loc +- scale) = 1 / (2 pi scale). */
TEST(prob_sample_cauchy_quantiles) {
    elbo_ctx *ctx = elbo_ctx_new(16 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 7);
    elbo_dist d;
    CHECK(elbo_dist_cauchy(&d, elbo_tensor_full(ctx, 1, (int64_t[]){1}, 0.7f),
                           elbo_tensor_full(ctx, 1, (int64_t[]){1}, 2.5f)) == ELBO_OK);
    elbo_tensor *z = elbo_dist_rsample(ctx, &d, &rng, N_MOM);
    CHECK(z);
    float *s = malloc(N_MOM * sizeof(float));
    memcpy(s, z->data, N_MOM * sizeof(float));
    qsort(s, N_MOM, sizeof(float), cmp_float);
    double n = N_MOM, loc = 0.7, scale = 2.5;
    double se_med = sqrt(0.25 / n) * PI_D * scale, se_q = sqrt(0.1875 / n) * 2 * PI_D * scale;
    double med = s[N_MOM / 2], q1 = s[N_MOM / 4], q3 = s[3 * N_MOM / 4];
    free(s);
    CHECK_NEAR(med, loc, Z_SE * se_med);
    CHECK_NEAR(q1, loc - scale, Z_SE * se_q);
    CHECK_NEAR(q3, loc + scale, Z_SE * se_q);
    elbo_ctx_free(ctx);
}

/* ---- closed forms against Monte Carlo ------------------------------------------------- */
/* Two parameter settings per kind, (p, q) as columns of 2-element tensors (Dirichlet: one
 * (1, 3) setting, Exponential / Gamma rate-only a or (concentration, rate)). */
static elbo_status mc_pair(elbo_ctx *ctx, elbo_dist_kind k, elbo_dist *p, elbo_dist *q) {
    static const float pa[2] = {0.3f, -1.0f}, pb[2] = {1.2f, 0.5f};
    static const float qa[2] = {-0.4f, 0.2f}, qb[2] = {0.8f, 1.7f};
    static const float kp[2] = {2.0f, 0.6f}, kq[2] = {3.5f, 1.4f};
    static const float rp[2] = {1.5f, 0.7f}, rq[2] = {0.6f, 2.2f};
    static const float dp[3] = {1.5f, 0.7f, 3.0f}, dq[3] = {2.0f, 2.0f, 1.0f};
    elbo_status st;
    if (k == ELBO_DIST_EXPONENTIAL) {
        st = make_dist(p, k, vec(ctx, 2, rp), NULL);
        return st ? st : make_dist(q, k, vec(ctx, 2, rq), NULL);
    }
    if (k == ELBO_DIST_GAMMA) {
        st = make_dist(p, k, vec(ctx, 2, kp), vec(ctx, 2, rp));
        return st ? st : make_dist(q, k, vec(ctx, 2, kq), vec(ctx, 2, rq));
    }
    if (k == ELBO_DIST_DIRICHLET) {
        st = make_dist(p, k, vec(ctx, 3, dp), NULL);
        return st ? st : make_dist(q, k, vec(ctx, 3, dq), NULL);
    }
    st = make_dist(p, k, vec(ctx, 2, pa), vec(ctx, 2, pb));
    return st ? st : make_dist(q, k, vec(ctx, 2, qa), vec(ctx, 2, qb));
}

#define N_MC 100000

/* Mean and standard error of column j of v (n, c). */
static void mean_se(const float *v, int64_t n, int64_t c, int64_t j, double *mean, double *se) {
    moments r = column_moments(v, n, c, j);
    *mean = r.mean;
    *se = r.se_mean;
}

/* Every closed-form KL against its Monte-Carlo estimate from N = 100000 draws of p:
 * |KL - mean(log p - log q)| <= Z_SE se + 1e-5 (the float32 rounding of each log-density,
 * a few ulp of |log p| <= 10, is not averaged away when it is a bias). Also elbo_kl_mc with
 * the same rng state returns that same mean. */
TEST(prob_kl_closed_vs_mc) {
    static const elbo_dist_kind kinds[] = {
        ELBO_DIST_NORMAL, ELBO_DIST_LAPLACE,   ELBO_DIST_CAUCHY, ELBO_DIST_EXPONENTIAL,
        ELBO_DIST_GUMBEL, ELBO_DIST_LOGNORMAL, ELBO_DIST_GAMMA,  ELBO_DIST_DIRICHLET};
    elbo_ctx *ctx = elbo_ctx_new(64 << 20);
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        elbo_dist_kind k = kinds[i];
        elbo_ctx_reset(ctx);
        elbo_dist p, q;
        CHECK(mc_pair(ctx, k, &p, &q) == ELBO_OK);
        CHECK(elbo_kl_has_closed_form(k, k));
        elbo_tensor *kl = elbo_kl(ctx, &p, &q);
        CHECK_MSG(kl, "%s kl: %s", elbo_dist_name(k), elbo_last_error());
        elbo_rng rng, rng2;
        elbo_rng_init(&rng, 100 + i);
        rng2 = rng;
        elbo_tensor *z = elbo_dist_rsample(ctx, &p, &rng, N_MC);
        elbo_tensor *r =
            elbo_sub(ctx, elbo_dist_log_prob(ctx, &p, z), elbo_dist_log_prob(ctx, &q, z));
        elbo_tensor *mc = elbo_kl_mc(ctx, &p, &q, &rng2, N_MC);
        CHECK_MSG(r && mc, "%s: %s", elbo_dist_name(k), elbo_last_error());
        int64_t c = kl->numel;
        CHECK(r->numel == N_MC * c && mc->numel == c);
        for (int64_t j = 0; j < c; j++) {
            double mean, se;
            mean_se(r->data, N_MC, c, j, &mean, &se);
            CHECK_MSG(fabs(kl->data[j] - mean) <= Z_SE * se + 1e-5,
                      "%s [%lld]: closed %.6g, MC %.6g (se %.2g)", elbo_dist_name(k), (long long)j,
                      kl->data[j], mean, se);
            CHECK_NEAR(mc->data[j], mean, 1e-5 + 1e-5 * fabs(mean));
        }
    }
    elbo_ctx_free(ctx);
}

/* Entropy against -mean log p(z), N = 100000 draws, within Z_SE se + 1e-5 (as above); the
 * only check of the Logistic entropy, which torch lacks. */
TEST(prob_entropy_vs_mc) {
    elbo_ctx *ctx = elbo_ctx_new(64 << 20);
    for (int i = 0; i < N_KINDS; i++) {
        elbo_dist_kind k = ALL_KINDS[i];
        elbo_ctx_reset(ctx);
        elbo_dist p, q;
        CHECK(mc_pair(ctx, k, &p, &q) == ELBO_OK);
        elbo_rng rng;
        elbo_rng_init(&rng, 300 + i);
        elbo_tensor *h = elbo_dist_entropy(ctx, &p);
        elbo_tensor *z = elbo_dist_rsample(ctx, &p, &rng, N_MC);
        elbo_tensor *lp = elbo_dist_log_prob(ctx, &p, z);
        CHECK_MSG(h && lp, "%s: %s", elbo_dist_name(k), elbo_last_error());
        for (int64_t j = 0; j < h->numel; j++) {
            double mean, se;
            mean_se(lp->data, N_MC, h->numel, j, &mean, &se);
            CHECK_MSG(fabs(h->data[j] + mean) <= Z_SE * se + 1e-5,
                      "%s [%lld]: entropy %.6g, MC %.6g (se %.2g)", elbo_dist_name(k), (long long)j,
                      h->data[j], -mean, se);
        }
    }
    elbo_ctx_free(ctx);
}

/* ---- gradients against finite differences --------------------------------------------- */
typedef struct {
    elbo_dist_kind kind;
    elbo_rng rng; /* copied for every build: the same eps each time */
    int what;     /* 0 rsample (z^2 + z), 1 log_prob(x = in[2]), 2 entropy, 3 kl(p = in[0..1],
                     q = in[2..3]) */
} gc_user;

static elbo_tensor *build_dist_fn(elbo_ctx *ctx, elbo_tensor **in, void *user) {
    gc_user *u = user;
    elbo_dist d;
    int two = has_b(u->kind);
    if (make_dist(&d, u->kind, in[0], two ? in[1] : NULL) != ELBO_OK) return NULL;
    switch (u->what) {
    case 0: {
        elbo_rng r = u->rng;
        elbo_tensor *z = elbo_dist_rsample(ctx, &d, &r, 3);
        return elbo_add(ctx, elbo_square(ctx, z), z);
    }
    case 1:
        return elbo_dist_log_prob(ctx, &d, in[two ? 2 : 1]);
    case 2:
        return elbo_dist_entropy(ctx, &d);
    default: {
        elbo_dist q;
        if (make_dist(&q, u->kind, in[two ? 2 : 1], two ? in[3] : NULL) != ELBO_OK) return NULL;
        return elbo_kl(ctx, &d, &q);
    }
    }
}

/* Pathwise gradients of f(z) = z^2 + z, z = rsample(theta, eps) with eps fixed (the rng
 * copied for each evaluation), and the gradients of log_prob (in the parameters and x),
 * entropy and the closed-form KL (in both distributions' parameters), against central
 * differences (step 1e-3). Parameters are (2, 1) against (3) (batch (2, 3)). Tolerance:
 * atol 2e-3, rtol 2e-3: the float32 rounding of f ~ 6e-8 |f| over 2e-3 is ~1e-4 for
 * |f| <= 4, and the truncation eps^2 f'''/6 is < 1e-4 for these parameters (scales >= 0.5,
 * |z| moderate). Gamma's concentration and Dirichlet's are excluded from the rsample check:
 * the draw at fixed noise is not the implicit-reparameterisation map (see
 * prob_gamma_implicit_grad_vs_inverse_cdf and prob_mc_gradient_known_expectation). */
TEST(prob_grad_vs_finite_differences) {
    static const float loc[2] = {0.3f, -0.6f}, scale[3] = {0.8f, 1.3f, 0.6f};
    static const float loc2[2] = {-0.2f, 0.5f}, scale2[3] = {1.1f, 0.7f, 1.6f};
    static const float x[6] = {0.4f, 1.2f, 0.9f, 2.1f, 0.6f, 1.5f}; /* > 0: in every support */
    static const float conc[2] = {2.5f, 1.5f}, conc2[2] = {1.2f, 3.0f};
    static const float dconc[6] = {1.5f, 2.0f, 0.9f, 2.5f, 1.2f, 3.0f};
    static const float dconc2[6] = {1.0f, 1.8f, 2.4f, 0.8f, 3.2f, 1.1f};
    static const float dx[6] = {0.2f, 0.3f, 0.5f, 0.6f, 0.1f, 0.3f};
    for (int i = 0; i < N_KINDS; i++) {
        elbo_dist_kind k = ALL_KINDS[i];
        for (int what = 0; what < 4; what++) {
            if (what == 3 && !elbo_kl_has_closed_form(k, k)) continue;
            gc_user u = {k, {0, 0}, what};
            elbo_rng_init(&u.rng, 55 + i);
            gc_spec s = {.atol = 2e-3f, .rtol = 2e-3f, .seed = 9};
            int two = has_b(k);
            if (k == ELBO_DIST_DIRICHLET) {
                s.n_in = 1;
                s.ndim[0] = 2, s.shape[0][0] = 2, s.shape[0][1] = 3, s.init[0] = dconc;
                if (what == 0) continue;
                if (what == 1) {
                    s.n_in = 2, s.ndim[1] = 2, s.shape[1][0] = 2, s.shape[1][1] = 3;
                    s.init[1] = dx, s.no_grad[1] = 1; /* x must stay on the simplex */
                }
                if (what == 3) {
                    s.n_in = 2, s.ndim[1] = 2, s.shape[1][0] = 2, s.shape[1][1] = 3;
                    s.init[1] = dconc2;
                }
            } else if (!two) { /* exponential: rate (2, 3) */
                s.n_in = 1;
                s.ndim[0] = 2, s.shape[0][0] = 2, s.shape[0][1] = 3, s.init[0] = x;
                if (what == 1) s.n_in = 2, s.ndim[1] = 1, s.shape[1][0] = 3, s.init[1] = scale2;
                if (what == 3) s.n_in = 2, s.ndim[1] = 1, s.shape[1][0] = 3, s.init[1] = scale;
            } else {
                int g = k == ELBO_DIST_GAMMA;
                s.n_in = 2;
                s.ndim[0] = 2, s.shape[0][0] = 2, s.shape[0][1] = 1, s.init[0] = g ? conc : loc;
                s.ndim[1] = 1, s.shape[1][0] = 3, s.init[1] = scale;
                if (what == 0 && g) s.no_grad[0] = 1;
                if (what == 1)
                    s.n_in = 3, s.ndim[2] = 2, s.shape[2][0] = 2, s.shape[2][1] = 3, s.init[2] = x;
                if (what == 3) {
                    s.n_in = 4;
                    s.ndim[2] = 2, s.shape[2][0] = 2, s.shape[2][1] = 1;
                    s.init[2] = g ? conc2 : loc2;
                    s.ndim[3] = 1, s.shape[3][0] = 3, s.init[3] = scale2;
                }
            }
            char op[64];
            snprintf(op, sizeof op, "%s %s", elbo_dist_name(k),
                     (const char *[]){"rsample", "log_prob", "entropy", "kl"}[what]);
            CHECK_GRAD(op, build_dist_fn, &u, &s);
        }
    }
}

/* ---- implicit reparameterisation of Gamma --------------------------------------------- */
/* z(alpha) = P^-1(u; alpha) at fixed u, by bisection then Newton in double. */
static double gamma_inv_cdf(double alpha, double u) {
    double lo = 0, hi = alpha + 40 * sqrt(alpha) + 40;
    for (int i = 0; i < 200; i++) {
        double mid = 0.5 * (lo + hi);
        if (elbo_gammainc_d(alpha, mid) < u)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* The op's dG/dalpha equals the derivative of the inverse-CDF map at fixed u = P(alpha, G):
 * (P^-1(u; alpha + h) - P^-1(u; alpha - h)) / 2h with h = 1e-4 alpha, evaluated in double
 * (truncation ~h^2 = 1e-8 relative). elbo's gradient is rounded to float32 and uses its own
 * difference of P (also ~1e-8): rtol 1e-4, atol 1e-6. Covers alpha < 1, integer alpha (sum
 * of Exponentials) and alpha > 1. */
TEST(prob_gamma_implicit_grad_vs_inverse_cdf) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 11);
    static const float a[8] = {0.3f, 0.3f, 0.8f, 1.0f, 3.0f, 3.0f, 7.5f, 25.0f};
    elbo_tensor *alpha = vec(ctx, 8, a);
    elbo_tensor_requires_grad(alpha, 1);
    elbo_tensor *g = elbo_gamma_standard(ctx, alpha, &rng, 0);
    CHECK(g && g->numel == 8);
    CHECK(elbo_backward_with(ctx, g, NULL) == ELBO_OK);
    CHECK(alpha->grad);
    for (int i = 0; i < 8; i++) {
        double al = a[i], z = g->data[i];
        double u = elbo_gammainc_d(al, z), h = 1e-4 * al;
        double fd = (gamma_inv_cdf(al + h, u) - gamma_inv_cdf(al - h, u)) / (2 * h);
        CHECK_MSG(fabs(alpha->grad[i] - fd) <= 1e-6 + 1e-4 * fabs(fd),
                  "alpha %g, G %g: grad %.7g, inverse-CDF difference %.7g", al, z,
                  (double)alpha->grad[i], fd);
    }
    elbo_ctx_free(ctx);
}

/* ---- gradient of a Monte-Carlo mean against the analytic derivative ------------------- */
/* Each of N draws gets its own copy of the parameter (a tensor of N equal values, so the
 * gradient of sum_i f(z_i) in element i is the single-sample pathwise gradient) and the mean
 * of those gradients is compared with d/dtheta E[f(z)] within Z_SE standard errors:
 *   Normal   d/dmu E[z^2] = 2 mu, d/dsigma E[z^2] = 2 sigma
 *   LogNormal d/dmu E[z] = exp(mu + sigma^2/2)
 *   Exponential d/drate E[z] = -1 / rate^2
 *   Gamma    d/dk E[z^2] = (2k + 1) / rate^2, d/drate E[z] = -k / rate^2 (k = 0.45, 3, 7.5)
 *   Dirichlet d/dalpha_j E[z_0] = (a0 [j == 0] - alpha_0) / a0^2 */
#define N_G 100000
static void grad_mean_se(const float *g, int64_t n, int64_t stride, int64_t j, double *mean,
                         double *se) {
    moments r = column_moments(g, n, stride, j);
    *mean = r.mean;
    *se = r.se_mean;
}

TEST(prob_mc_gradient_known_expectation) {
    elbo_ctx *ctx = elbo_ctx_new(64 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 77);
    int64_t n1[1] = {N_G};
    double mean, se;
    /* Normal(0.7, 1.3): f = z^2. */
    {
        elbo_tensor *mu = elbo_tensor_full(ctx, 1, n1, 0.7f),
                    *sg = elbo_tensor_full(ctx, 1, n1, 1.3f);
        elbo_tensor_requires_grad(mu, 1);
        elbo_tensor_requires_grad(sg, 1);
        elbo_dist d;
        CHECK(elbo_dist_normal(&d, mu, sg) == ELBO_OK);
        elbo_tensor *z = elbo_dist_rsample(ctx, &d, &rng, 0);
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_square(ctx, z))) == ELBO_OK);
        grad_mean_se(mu->grad, N_G, 1, 0, &mean, &se);
        CHECK_NEAR(mean, 2 * 0.7, Z_SE * se);
        grad_mean_se(sg->grad, N_G, 1, 0, &mean, &se);
        CHECK_NEAR(mean, 2 * 1.3, Z_SE * se);
    }
    /* LogNormal(0.2, 0.5): f = z. */
    {
        elbo_ctx_reset(ctx);
        elbo_tensor *mu = elbo_tensor_full(ctx, 1, n1, 0.2f),
                    *sg = elbo_tensor_full(ctx, 1, n1, 0.5f);
        elbo_tensor_requires_grad(mu, 1);
        elbo_dist d;
        CHECK(elbo_dist_lognormal(&d, mu, sg) == ELBO_OK);
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_dist_rsample(ctx, &d, &rng, 0))) == ELBO_OK);
        grad_mean_se(mu->grad, N_G, 1, 0, &mean, &se);
        CHECK_NEAR(mean, exp(0.2 + 0.125), Z_SE * se);
    }
    /* Exponential(1.7): f = z. */
    {
        elbo_ctx_reset(ctx);
        elbo_tensor *r = elbo_tensor_full(ctx, 1, n1, 1.7f);
        elbo_tensor_requires_grad(r, 1);
        elbo_dist d;
        CHECK(elbo_dist_exponential(&d, r) == ELBO_OK);
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_dist_rsample(ctx, &d, &rng, 0))) == ELBO_OK);
        grad_mean_se(r->grad, N_G, 1, 0, &mean, &se);
        CHECK_NEAR(mean, -1.0 / (1.7 * 1.7), Z_SE * se);
    }
    /* Gamma(k, 1.6): f = z^2 for the concentration, f = z for the rate. */
    static const float ks[3] = {0.45f, 3.0f, 7.5f};
    for (int i = 0; i < 3; i++) {
        for (int f = 0; f < 2; f++) {
            elbo_ctx_reset(ctx);
            elbo_tensor *k = elbo_tensor_full(ctx, 1, n1, ks[i]),
                        *r = elbo_tensor_full(ctx, 1, n1, 1.6f);
            elbo_tensor_requires_grad(f == 0 ? k : r, 1);
            elbo_dist d;
            CHECK(elbo_dist_gamma(&d, k, r) == ELBO_OK);
            elbo_tensor *z = elbo_dist_rsample(ctx, &d, &rng, 0);
            CHECK(elbo_backward(ctx, elbo_sum(ctx, f == 0 ? elbo_square(ctx, z) : z)) == ELBO_OK);
            grad_mean_se(f == 0 ? k->grad : r->grad, N_G, 1, 0, &mean, &se);
            double want = f == 0 ? (2 * ks[i] + 1) / (1.6 * 1.6) : -ks[i] / (1.6 * 1.6);
            CHECK_MSG(fabs(mean - want) <= Z_SE * se, "gamma k %g %s: %.6g, want %.6g (se %.2g)",
                      (double)ks[i], f == 0 ? "d/dk E[z^2]" : "d/drate E[z]", mean, want, se);
        }
    }
    /* Dirichlet(0.8, 2.0, 3.5): f = z_0. */
    {
        elbo_ctx_reset(ctx);
        static const float al[3] = {0.8f, 2.0f, 3.5f};
        elbo_tensor *a = elbo_tensor_new2(ctx, N_G, 3);
        for (int64_t i = 0; i < N_G; i++)
            for (int j = 0; j < 3; j++) a->data[3 * i + j] = al[j];
        elbo_tensor_requires_grad(a, 1);
        elbo_dist d;
        CHECK(elbo_dist_dirichlet(&d, a) == ELBO_OK);
        static const float e0[3] = {1, 0, 0};
        elbo_tensor *z = elbo_dist_rsample(ctx, &d, &rng, 0);
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_mul(ctx, z, vec(ctx, 3, e0)))) == ELBO_OK);
        double a0 = 0.8 + 2.0 + 3.5;
        for (int j = 0; j < 3; j++) {
            grad_mean_se(a->grad, N_G, 3, j, &mean, &se);
            double want = ((j == 0 ? a0 : 0) - 0.8) / (a0 * a0);
            CHECK_MSG(fabs(mean - want) <= Z_SE * se,
                      "dirichlet d/dalpha_%d E[z_0]: %.6g, want %.6g (se %.2g)", j, mean, want, se);
        }
    }
    elbo_ctx_free(ctx);
}

/* ---- errors --------------------------------------------------------------------------- */
static int msg_has(const char *s) { return strstr(elbo_last_error(), s) != NULL; }

TEST(prob_errors) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    static const float bad[3] = {1.0f, 0.0f, 2.0f}, good[3] = {1, 2, 3}, neg[1] = {-1};
    elbo_tensor *g3 = vec(ctx, 3, good), *b3 = vec(ctx, 3, bad),
                *g4 = elbo_tensor_full(ctx, 1, (int64_t[]){4}, 1);
    elbo_dist d, q;
    CHECK(elbo_dist_normal(&d, g3, b3) == ELBO_ERR_ARG && msg_has("normal: scale[1] = 0"));
    CHECK(elbo_dist_laplace(&d, NULL, g3) == ELBO_ERR_ARG && msg_has("laplace: loc is NULL"));
    CHECK(elbo_dist_gamma(&d, g3, b3) == ELBO_ERR_ARG && msg_has("gamma: rate[1]"));
    CHECK(elbo_dist_exponential(&d, vec(ctx, 1, neg)) == ELBO_ERR_ARG &&
          msg_has("exponential: rate"));
    float nanv = NAN;
    CHECK(elbo_dist_cauchy(&d, g3, vec(ctx, 1, &nanv)) == ELBO_ERR_ARG && msg_has("cauchy: scale"));
    /* mismatched shapes */
    CHECK(elbo_dist_gumbel(&d, g3, g4) == ELBO_ERR_SHAPE && msg_has("gumbel: loc and scale"));
    CHECK(elbo_dist_dirichlet(&d, elbo_tensor_full(ctx, 2, (int64_t[]){3, 1}, 1)) ==
              ELBO_ERR_SHAPE &&
          msg_has("dirichlet"));
    /* kl with no closed form: error when asked exactly, MC through elbo_kl_auto */
    CHECK(elbo_dist_normal(&d, g3, g3) == ELBO_OK && elbo_dist_laplace(&q, g3, g3) == ELBO_OK);
    CHECK(elbo_kl(ctx, &d, &q) == NULL && elbo_last_status() == ELBO_ERR_ARG &&
          msg_has("no closed form for KL(normal || laplace)"));
    CHECK(!elbo_kl_has_closed_form(ELBO_DIST_NORMAL, ELBO_DIST_LAPLACE));
    CHECK(!elbo_kl_has_closed_form(ELBO_DIST_LOGISTIC, ELBO_DIST_LOGISTIC));
    elbo_clear_error();
    int exact = -1;
    elbo_tensor *kl = elbo_kl_auto(ctx, &d, &q, &rng, 16, &exact);
    CHECK(kl && exact == 0 && kl->numel == 3);
    CHECK(elbo_kl_auto(ctx, &d, &d, &rng, 16, &exact) && exact == 1);
    CHECK(elbo_kl_mc(ctx, &d, &q, &rng, 0) == NULL && msg_has("kl_mc: n = 0"));
    /* mismatched batch shapes between p and q */
    CHECK(elbo_dist_laplace(&q, g4, g4) == ELBO_OK && elbo_dist_laplace(&d, g3, g3) == ELBO_OK);
    CHECK(elbo_kl(ctx, &d, &q) == NULL && elbo_last_status() == ELBO_ERR_SHAPE);
    /* outside the support; a log_prob of a mismatched shape */
    CHECK(elbo_dist_exponential(&d, g3) == ELBO_OK);
    CHECK(elbo_dist_log_prob(ctx, &d, vec(ctx, 1, neg)) == NULL &&
          msg_has("exponential: log_prob of x[0] = -1 outside the support"));
    CHECK(elbo_dist_log_prob(ctx, &d, g4) == NULL && elbo_last_status() == ELBO_ERR_SHAPE);
    CHECK(elbo_dist_dirichlet(&d, elbo_tensor_full(ctx, 1, (int64_t[]){3}, 1)) == ELBO_OK);
    CHECK(elbo_dist_log_prob(ctx, &d, g3) == NULL && msg_has("sums to"));
    /* KL(normal || exponential) by MC: the normal's draws leave the support of q */
    CHECK(elbo_dist_normal(&d, g3, g3) == ELBO_OK && elbo_dist_exponential(&q, g3) == ELBO_OK);
    CHECK(elbo_kl_auto(ctx, &d, &q, &rng, 64, &exact) == NULL && msg_has("outside the support"));
    CHECK(elbo_dist_rsample(ctx, &d, &rng, -1) == NULL && msg_has("n >= 0"));
    CHECK(elbo_dist_rsample(ctx, NULL, &rng, 1) == NULL);
    CHECK(elbo_dist_entropy(ctx, NULL) == NULL && elbo_kl(ctx, NULL, &d) == NULL);
    elbo_ctx_free(ctx);
}

/* ---- reproducibility ------------------------------------------------------------------ */
/* The same seed gives the same bits for every kind, with 1 or 2 threads (N = 40000 per draw
 * is above the parallel threshold); another seed gives other values; n == 0 gives the batch
 * shape. */
TEST(prob_same_seed_same_bits) {
    elbo_ctx *ctx = elbo_ctx_new(16 << 20);
    int saved = elbo_get_threads();
    static const float a[2] = {0.5f, 2.5f}, b[2] = {1.5f, 0.7f};
    for (int i = 0; i < N_KINDS; i++) {
        elbo_dist_kind k = ALL_KINDS[i];
        elbo_ctx_reset(ctx);
        elbo_dist d;
        CHECK(make_dist(&d, k, vec(ctx, 2, a), vec(ctx, 2, b)) == ELBO_OK);
        elbo_tensor *z[3];
        for (int r = 0; r < 3; r++) {
            elbo_rng rng;
            elbo_rng_init(&rng, r == 2 ? 43 : 42);
            elbo_set_threads(r == 1 ? 2 : 1);
            z[r] = elbo_dist_rsample(ctx, &d, &rng, 20000);
            CHECK(z[r]);
        }
        size_t bytes = (size_t)z[0]->numel * sizeof(float);
        CHECK_MSG(memcmp(z[0]->data, z[1]->data, bytes) == 0, "%s: bits differ", elbo_dist_name(k));
        CHECK_MSG(memcmp(z[0]->data, z[2]->data, bytes) != 0, "%s: seeds 42 and 43 agree",
                  elbo_dist_name(k));
        elbo_rng rng;
        elbo_rng_init(&rng, 1);
        elbo_tensor *one = elbo_dist_rsample(ctx, &d, &rng, 0);
        CHECK(one && one->ndim == 1 && one->shape[0] == 2);
    }
    elbo_set_threads(saved);
    elbo_ctx_free(ctx);
}

/* MMD^2 of N(0, 1) against N(mu, 1) under a Gaussian kernel of width h has the closed form
 * 2 h / sqrt(h^2 + 2) (1 - exp(-mu^2 / (2 (h^2 + 2)))) (E k(X, X') = h / sqrt(h^2 + 2) for
 * X - X' ~ N(0, 2)); the unbiased estimate's mean over 10 replicates of 1000 + 1000 points
 * must match it (mu = 1, and mu = 0 where it is 0) within 5 standard errors of that mean. */
TEST(prob_mmd2_rbf_gaussians) {
    enum { N = 1000, R = 10 };
    float x[N], y[N];
    const double h = 1.0, mus[2] = {1.0, 0.0};
    for (int k = 0; k < 2; k++) {
        double want = 2 * h / sqrt(h * h + 2) * (1 - exp(-mus[k] * mus[k] / (2 * (h * h + 2))));
        double s = 0, s2 = 0;
        for (int r = 0; r < R; r++) {
            elbo_rng rng;
            elbo_rng_init(&rng, 50 + 10 * k + r);
            elbo_rng_normal(&rng, x, N, 0.0f, 1.0f);
            elbo_rng_normal(&rng, y, N, (float)mus[k], 1.0f);
            double v = elbo_mmd2_rbf(x, N, y, N, 1, h);
            s += v, s2 += v * v;
        }
        double mean = s / R, se = sqrt((s2 / R - mean * mean) / (R - 1));
        CHECK_MSG(fabs(mean - want) <= Z_SE * se, "mu %g: MMD^2 %.5g +- %.2g, closed form %.5g",
                  mus[k], mean, se, want);
    }
    CHECK(isnan(elbo_mmd2_rbf(x, 1, y, N, 1, h)) && isnan(elbo_mmd2_rbf(x, N, y, N, 1, 0)));
}
