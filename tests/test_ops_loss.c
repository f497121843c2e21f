/* Losses and log-likelihoods: forward against double closed forms for every reduction,
 * finite-difference gradients (broadcasting included), known answers (uniform cross-entropy
 * = log K, discretized logistic bins sum to 1), label and shape errors. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static void fill(float *x, int64_t n, uint64_t seed, float lo, float hi) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_uniform(&r, x, (size_t)n, lo, hi);
}

static const elbo_reduction REDS[3] = {ELBO_REDUCE_MEAN, ELBO_REDUCE_SUM, ELBO_REDUCE_NONE};

/* Checks y against per-element references ref[0..n) under reduction r. */
static int check_reduced(const elbo_tensor *y, const double *ref, int64_t n, elbo_reduction r,
                         double rtol, char *msg, size_t len) {
    if (r == ELBO_REDUCE_NONE) {
        if (y->numel != n) {
            snprintf(msg, len, "numel %lld, want %lld", (long long)y->numel, (long long)n);
            return 0;
        }
        for (int64_t i = 0; i < n; i++)
            if (!(fabs(y->data[i] - ref[i]) <= rtol * (fabs(ref[i]) + 1e-3))) {
                snprintf(msg, len, "element %lld: %.9g, want %.9g", (long long)i,
                         (double)y->data[i], ref[i]);
                return 0;
            }
        return 1;
    }
    double s = 0;
    for (int64_t i = 0; i < n; i++) s += ref[i];
    if (r == ELBO_REDUCE_MEAN) s /= (double)n;
    if (y->ndim != 0 || y->numel != 1 || !(fabs(y->data[0] - s) <= rtol * (fabs(s) + 1e-3))) {
        snprintf(msg, len, "ndim %d, value %.9g, want %.9g", y->ndim, (double)y->data[0], s);
        return 0;
    }
    return 1;
}

#define CHECK_REDUCED(y, ref, n, r, rtol)                                                          \
    do {                                                                                           \
        char m_[160];                                                                              \
        CHECK_MSG(y &&check_reduced(y, ref, n, r, rtol, m_, sizeof m_), "reduction %d: %s",        \
                  (int)(r), y ? m_ : elbo_last_error());                                           \
    } while (0)

/* ---- mse, bce ------------------------------------------------------------------------------ */
TEST(loss_mse_bce_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *p = elbo_tensor_new2(ctx, 3, 5), *t = elbo_tensor_new2(ctx, 3, 5);
    fill(p->data, 15, 1, -3, 3);
    fill(t->data, 15, 2, 0, 1);
    p->data[0] = 100; /* bce must not overflow at large |logit| */
    p->data[1] = -100;
    double mse[15], bce[15];
    for (int i = 0; i < 15; i++) {
        double l = p->data[i], y = t->data[i], d = l - y;
        mse[i] = d * d;
        /* -[y log sigma(l) + (1-y) log(1 - sigma(l))], log sigma(l) = -log1p(e^-l) */
        double ls = l > 0 ? -log1p(exp(-l)) : l - log1p(exp(l));
        double l1s = l > 0 ? -l - log1p(exp(-l)) : -log1p(exp(l));
        bce[i] = -(y * ls + (1 - y) * l1s);
    }
    for (int k = 0; k < 3; k++) {
        CHECK_REDUCED(elbo_mse_loss(ctx, p, t, REDS[k]), mse, 15, REDS[k], 1e-6);
        CHECK_REDUCED(elbo_bce_with_logits(ctx, p, t, REDS[k]), bce, 15, REDS[k], 2e-6);
    }
    elbo_ctx_free(ctx);
}

typedef struct {
    int which;
    elbo_reduction r;
} loss_user;

static elbo_tensor *build_loss2(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const loss_user *l = u;
    return l->which ? elbo_bce_with_logits(ctx, in[0], in[1], l->r)
                    : elbo_mse_loss(ctx, in[0], in[1], l->r);
}

TEST(grad_loss_mse_bce) {
    float tgt[12];
    fill(tgt, 12, 5, 0, 1);
    for (int which = 0; which < 2; which++)
        for (int k = 0; k < 3; k++) {
            loss_user u = {which, REDS[k]};
            /* Smooth O(1) functions; the sum of 12 float terms is the largest rounding
             * source (~1e-6 / eps = 1e-3 at worst relative to O(1) gradients). */
            gc_spec s = {.n_in = 2,
                         .ndim = {2, 2},
                         .shape = {{3, 4}, {3, 4}},
                         .init = {NULL, tgt},
                         .atol = 2e-3f,
                         .rtol = 2e-3f};
            CHECK_GRAD(which ? "bce_with_logits" : "mse_loss", build_loss2, &u, &s);
        }
}

/* The gradients of BCE and MSE are bitwise what their formulas give in float, for each way
 * dL/dloss arrives: one value (SUM and MEAN: the first input broadcast, the path a VAE's
 * reconstruction term takes) and a contiguous tensor (NONE times weights, then summed).
 * dl = scale * (gy * (sigmoid(l) - y)), dp = scale * (2 gy (p - t)), scale = 1/n for MEAN.
 * 7 x 37 elements (16-lane blocks and a tail), logits over [-40, 40] with +-0 and +-100. */
#include "ops/vmath.h"
TEST(loss_bce_mse_backward_bits_every_upstream_layout) {
    enum { R = 7, C = 37, N = R * C };
    elbo_ctx *ctx = elbo_ctx_new(0);
    float lv[N], tv[N], wv[N];
    fill(lv, N, 11, -40, 40);
    fill(tv, N, 12, 0, 1);
    fill(wv, N, 13, -2, 2);
    lv[0] = 0.0f, lv[1] = -0.0f, lv[2] = 100.0f, lv[3] = -100.0f, lv[N - 1] = -100.0f;
    for (int mode = 0; mode < 3; mode++) /* 0 SUM, 1 MEAN, 2 NONE * w summed */
        for (int which = 0; which < 2; which++) {
            elbo_tensor *l = elbo_tensor_new2(ctx, R, C), *t = elbo_tensor_new2(ctx, R, C);
            elbo_tensor *w = elbo_tensor_new2(ctx, R, C);
            memcpy(l->data, lv, sizeof lv);
            memcpy(t->data, tv, sizeof tv);
            memcpy(w->data, wv, sizeof wv);
            elbo_tensor_requires_grad(l, 1);
            elbo_reduction r = mode == 0 ? ELBO_REDUCE_SUM
                               : mode == 1 ? ELBO_REDUCE_MEAN
                                           : ELBO_REDUCE_NONE;
            elbo_tensor *y = which ? elbo_bce_with_logits(ctx, l, t, r) : elbo_mse_loss(ctx, l, t, r);
            if (mode == 2) y = elbo_sum(ctx, elbo_mul(ctx, y, w));
            CHECK(y && elbo_backward(ctx, y) == ELBO_OK && l->grad);
            if (!l->grad) continue;
            long bad = 0, first = -1;
            float want_first = 0;
            for (int i = 0; i < N; i++) {
                float gy = mode == 2 ? wv[i] * 1.0f : 1.0f;
                float d = which ? gy * (elbo__sigmoidf(lv[i]) - tv[i]) : 2.0f * gy * (lv[i] - tv[i]);
                float want = mode == 1 ? (1.0f / (float)N) * d : d;
                if (elbo__f32_bits(want) != elbo__f32_bits(l->grad[i])) {
                    bad++;
                    if (first < 0) first = i, want_first = want;
                }
            }
            CHECK_MSG(bad == 0, "%s mode %d: %ld gradients differ, first at %ld: %.9g, want %.9g",
                      which ? "bce" : "mse", mode, bad, first,
                      first < 0 ? 0.0 : (double)l->grad[first], (double)want_first);
            elbo_ctx_reset(ctx);
        }
    elbo_ctx_free(ctx);
}

TEST(loss_shape_mismatch_names_op_and_shapes) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *a = elbo_tensor_zeros(ctx, 2, (int64_t[]){4, 1});
    elbo_tensor *b = elbo_tensor_zeros(ctx, 1, (int64_t[]){4});
    CHECK(elbo_mse_loss(ctx, a, b, ELBO_REDUCE_MEAN) == NULL);
    CHECK(strstr(elbo_last_error(), "mse_loss") && strstr(elbo_last_error(), "(4, 1)") &&
          strstr(elbo_last_error(), "(4)"));
    CHECK(elbo_bce_with_logits(ctx, a, b, ELBO_REDUCE_SUM) == NULL);
    CHECK(strstr(elbo_last_error(), "bce_with_logits") && strstr(elbo_last_error(), "(4, 1)"));
    elbo_tensor *c = elbo_tensor_zeros(ctx, 2, (int64_t[]){3, 2});
    CHECK(elbo_gaussian_log_likelihood(ctx, a, b, c, ELBO_REDUCE_SUM) == NULL);
    CHECK(strstr(elbo_last_error(), "gaussian_log_likelihood") &&
          strstr(elbo_last_error(), "(3, 2)"));
    CHECK(elbo_discretized_logistic_log_likelihood(ctx, c, b, b, 256, ELBO_REDUCE_SUM) == NULL);
    CHECK(strstr(elbo_last_error(), "discretized_logistic") &&
          strstr(elbo_last_error(), "(3, 2)") && strstr(elbo_last_error(), "(4)"));
    CHECK(elbo_mse_loss(ctx, b, b, (elbo_reduction)7) == NULL);
    CHECK(strstr(elbo_last_error(), "reduction"));
    CHECK(elbo_cross_entropy(ctx, b, (int32_t[]){0, 0, 0, 0}, ELBO_REDUCE_MEAN) == NULL);
    CHECK(strstr(elbo_last_error(), "cross_entropy") && strstr(elbo_last_error(), "(4)"));
    elbo_ctx_free(ctx);
}

/* ---- cross entropy ------------------------------------------------------------------------ */
TEST(loss_cross_entropy_forward) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    /* Uniform logits: every class has probability 1/K, the loss is log K. */
    elbo_tensor *u = elbo_tensor_full(ctx, 2, (int64_t[]){4, 10}, 3.25f);
    int32_t lab[4] = {0, 9, 3, 3};
    elbo_tensor *y = elbo_cross_entropy(ctx, u, lab, ELBO_REDUCE_MEAN);
    CHECK(y && y->ndim == 0);
    CHECK_NEAR(y->data[0], log(10.0), 1e-6);
    /* Random logits against the double formula. */
    elbo_tensor *l = elbo_tensor_new2(ctx, 5, 7);
    fill(l->data, 35, 3, -5, 5);
    l->data[3] = 90; /* beyond float's exp range */
    int32_t lab2[5] = {3, 6, 0, 2, 5};
    double ref[5];
    for (int i = 0; i < 5; i++) {
        double m = -INFINITY, s = 0;
        for (int j = 0; j < 7; j++) m = fmax(m, l->data[i * 7 + j]);
        for (int j = 0; j < 7; j++) s += exp(l->data[i * 7 + j] - m);
        ref[i] = m + log(s) - l->data[i * 7 + lab2[i]];
    }
    for (int k = 0; k < 3; k++)
        CHECK_REDUCED(elbo_cross_entropy(ctx, l, lab2, REDS[k]), ref, 5, REDS[k], 1e-6);
    elbo_ctx_free(ctx);
}

TEST(loss_cross_entropy_bad_labels) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *l = elbo_tensor_zeros(ctx, 2, (int64_t[]){3, 4});
    CHECK(elbo_cross_entropy(ctx, l, (int32_t[]){0, 4, 1}, ELBO_REDUCE_MEAN) == NULL);
    CHECK(strstr(elbo_last_error(), "cross_entropy") && strstr(elbo_last_error(), "label 4") &&
          strstr(elbo_last_error(), "row 1") && strstr(elbo_last_error(), "[0, 4)"));
    CHECK(elbo_cross_entropy(ctx, l, (int32_t[]){-1, 0, 1}, ELBO_REDUCE_SUM) == NULL);
    CHECK(strstr(elbo_last_error(), "label -1"));
    elbo_ctx_free(ctx);
}

typedef struct {
    const int32_t *labels;
    elbo_reduction r;
} ce_user;

static elbo_tensor *build_ce(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const ce_user *c = u;
    return elbo_cross_entropy(ctx, in[0], c->labels, c->r);
}

TEST(grad_cross_entropy) {
    static const int32_t lab[4] = {2, 0, 4, 1};
    for (int k = 0; k < 3; k++) {
        ce_user u = {lab, REDS[k]};
        /* Smooth; values O(1). */
        gc_spec s = {.n_in = 1, .ndim = {2}, .shape = {{4, 5}}, .atol = 1e-3f, .rtol = 1e-3f};
        CHECK_GRAD("cross_entropy", build_ce, &u, &s);
    }
}

/* ---- Gaussian log-likelihood ------------------------------------------------------------- */
TEST(loss_gaussian_closed_form_broadcast) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new3(ctx, 2, 3, 4);
    elbo_tensor *m = elbo_tensor_new2(ctx, 3, 1);
    elbo_tensor *lv = elbo_tensor_new1(ctx, 4);
    fill(x->data, 24, 1, -2, 2);
    fill(m->data, 3, 2, -1, 1);
    fill(lv->data, 4, 3, -2, 1);
    double ref[24];
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 3; j++)
            for (int k = 0; k < 4; k++) {
                double d = x->data[(i * 3 + j) * 4 + k] - m->data[j], v = exp(lv->data[k]);
                /* log of the normal density N(x; m, v) */
                ref[(i * 3 + j) * 4 + k] = log(exp(-d * d / (2 * v)) / sqrt(2 * M_PI * v));
            }
    for (int k = 0; k < 3; k++) {
        elbo_tensor *y = elbo_gaussian_log_likelihood(ctx, x, m, lv, REDS[k]);
        CHECK_REDUCED(y, ref, 24, REDS[k], 1e-6);
        if (REDS[k] == ELBO_REDUCE_NONE) CHECK(y->ndim == 3 && y->shape[1] == 3);
    }
    elbo_ctx_free(ctx);
}

typedef struct {
    elbo_reduction r;
    int n_bins; /* 0: Gaussian */
} ll_user;

static elbo_tensor *build_ll(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    const ll_user *l = u;
    if (l->n_bins)
        return elbo_discretized_logistic_log_likelihood(ctx, in[0], in[1], in[2], l->n_bins, l->r);
    return elbo_gaussian_log_likelihood(ctx, in[0], in[1], in[2], l->r);
}

TEST(grad_gaussian_log_likelihood) {
    /* x (2,3,4), mean (3,1), log_var (4); then all the same shape; then mean scalar. */
    static const int nds[3][3] = {{3, 2, 1}, {2, 2, 2}, {2, 0, 2}};
    static const int64_t shs[3][3][3] = {
        {{2, 3, 4}, {3, 1}, {4}}, {{3, 4}, {3, 4}, {3, 4}}, {{3, 4}, {0}, {1, 4}}};
    for (int c = 0; c < 3; c++)
        for (int k = 0; k < 3; k++) {
            ll_user u = {REDS[k], 0};
            /* log_var ~ N(0,1) keeps e^-lv <= ~20; the quadratic term makes the gradients
             * up to ~50, hence the relative tolerance. */
            gc_spec s = {.n_in = 3, .atol = 2e-3f, .rtol = 3e-3f, .seed = 40 + (uint64_t)c};
            for (int i = 0; i < 3; i++) {
                s.ndim[i] = nds[c][i];
                memcpy(s.shape[i], shs[c][i], sizeof shs[c][i]);
            }
            CHECK_GRAD("gaussian_log_likelihood", build_ll, &u, &s);
        }
}

/* ---- discretized logistic ---------------------------------------------------------------- */
/* For a fixed (mean, log_scale) the 256 bin probabilities exp(ll) sum to 1: the interior bins
 * telescope, the edge bins are open to +-inf. */
TEST(loss_discretized_logistic_bins_sum_to_one) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    const float params[4][2] = {{0.1f, -3.0f}, {-0.7f, -5.0f}, {0.95f, -2.0f}, {0.0f, -7.5f}};
    elbo_tensor *x = elbo_tensor_new1(ctx, 256);
    for (int k = 0; k < 256; k++) x->data[k] = -1.0f + 2.0f * k / 255.0f;
    for (int c = 0; c < 4; c++) {
        elbo_tensor *m = elbo_tensor_full(ctx, 0, NULL, params[c][0]);
        elbo_tensor *ls = elbo_tensor_full(ctx, 1, (int64_t[]){1}, params[c][1]);
        elbo_tensor *ll =
            elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 256, ELBO_REDUCE_NONE);
        CHECK(ll && ll->numel == 256);
        double total = 0;
        for (int k = 0; k < 256; k++) total += exp((double)ll->data[k]);
        CHECK_MSG(fabs(total - 1.0) <= 1e-4, "mean %g log_scale %g: total %.7f",
                  (double)params[c][0], (double)params[c][1], total);
        /* An interior bin away from the edges: the logistic CDF difference in double. */
        int k = 128;
        double s = exp(params[c][1]), xc = x->data[k] - params[c][0], d = 1.0 / 255;
        double pr = 1 / (1 + exp(-(xc + d) / s)) - 1 / (1 + exp(-(xc - d) / s));
        if (pr > 1e-5) CHECK_NEAR(ll->data[k], log(pr), 1e-5 * fabs(log(pr)) + 1e-6);
    }
    elbo_ctx_free(ctx);
}

/* Each branch: left edge, right edge, interior bin, underflow (log density at the centre),
 * and a bin in the tail (c/s = 8) where sigma(p) - sigma(q) = 5e-5 is a difference of two
 * numbers near 1 (evaluated naively in float it would be off by ~1e-3 in the log). */
TEST(loss_discretized_logistic_branches) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    float xv[5] = {-1, 1, 0.2f, 0.8f, 0.6f}, mv[5] = {-0.3f, 0.4f, 0.25f, -0.5f, 0.2f};
    float lv[5] = {-2.0f, -1.5f, -3.0f, -4.0f, -2.9957323f};
    elbo_tensor *x = elbo_tensor_new1(ctx, 5), *m = elbo_tensor_new1(ctx, 5);
    elbo_tensor *ls = elbo_tensor_new1(ctx, 5);
    memcpy(x->data, xv, sizeof xv);
    memcpy(m->data, mv, sizeof mv);
    memcpy(ls->data, lv, sizeof lv);
    elbo_tensor *y = elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 256, ELBO_REDUCE_NONE);
    CHECK(y);
    double d = 1.0 / 255, ref[5];
    for (int i = 0; i < 5; i++) {
        double is = exp(-(double)lv[i]), c = (double)xv[i] - mv[i];
        double sp = 1 / (1 + exp(-is * (c + d))), sm = 1 / (1 + exp(-is * (c - d)));
        if (i == 0)
            ref[i] = log(sp);
        else if (i == 1)
            ref[i] = log(1 - sm);
        else if (i == 2 || i == 4) {
            CHECK(sp - sm > 1e-5); /* really the bin branch */
            ref[i] = log(sp - sm);
        } else {
            /* logistic log-density at the centre, times the bin width 2/255 */
            double z = is * c;
            ref[i] = z - lv[i] - 2 * log1p(exp(z)) + log(2.0 / 255);
            CHECK(sp - sm < 1e-5); /* really the underflow branch */
        }
        CHECK_NEAR(y->data[i], ref[i], 1e-5 * fabs(ref[i]) + 1e-6);
    }
    elbo_ctx_free(ctx);
}

TEST(grad_discretized_logistic) {
    /* x on the bin centres: both edges, interior bins near the mean and one far in the tail
     * (underflow branch). mean (2,1) and log_scale (4) broadcast against x (2,4). */
    float x[8] = {-1, -0.2f, 0.4f, 1, -1.0f + 2 * 30 / 255.0f, 1, 0.9f, -1};
    float m[2] = {0.3f, -0.45f};
    float ls[4] = {-2.5f, -1.2f, -3.0f, -2.0f};
    for (int k = 0; k < 3; k++) {
        ll_user u = {REDS[k], 256};
        /* The log of a bin difference is smooth in (mean, log_scale) at these points;
         * gradients O(10), float output rounding ~1e-6 / eps. */
        gc_spec s = {.n_in = 3,
                     .ndim = {2, 2, 1},
                     .shape = {{2, 4}, {2, 1}, {4}},
                     .init = {x, m, ls},
                     .no_grad = {1},
                     .eps = 1e-3f,
                     .atol = 3e-3f,
                     .rtol = 3e-3f};
        CHECK_GRAD("discretized_logistic", build_ll, &u, &s);
    }
}

/* x is data: when it requires a gradient it gets a zero one; mean and log_scale do not. */
TEST(loss_discretized_logistic_x_grad_zero) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new1(ctx, 3), *m = elbo_tensor_new1(ctx, 3);
    elbo_tensor *ls = elbo_tensor_new1(ctx, 3);
    float xv[3] = {-1, 0.0f, 1}, mv[3] = {-0.8f, 0.1f, 0.7f}, lv[3] = {-2, -3, -2};
    memcpy(x->data, xv, sizeof xv);
    memcpy(m->data, mv, sizeof mv);
    memcpy(ls->data, lv, sizeof lv);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor_requires_grad(m, 1);
    elbo_tensor_requires_grad(ls, 1);
    elbo_tensor *y = elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 256, ELBO_REDUCE_SUM);
    CHECK(elbo_backward(ctx, y) == ELBO_OK);
    CHECK(x->grad && m->grad && ls->grad);
    for (int i = 0; i < 3; i++) CHECK(x->grad[i] == 0 && m->grad[i] != 0 && ls->grad[i] != 0);
    CHECK(elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 1, ELBO_REDUCE_SUM) == NULL);
    CHECK(strstr(elbo_last_error(), "n_bins"));
    elbo_ctx_free(ctx);
}

/* Fused MEAN reduction of a large broadcast loss: same bits with 1 and 2 threads, and the
 * value equals the mean of the NONE output. */
TEST(loss_deterministic_across_threads) {
    int64_t sx[4] = {8, 3, 64, 64}, sm[4] = {8, 3, 64, 64}, sl[4] = {1, 3, 1, 1};
    float val[2], gm0 = 0, gm1 = 0;
    float *gls[2];
    int saved = elbo_get_threads();
    for (int t = 0; t < 2; t++) {
        elbo_set_threads(t + 1);
        elbo_ctx *ctx = elbo_ctx_new(1 << 24);
        elbo_tensor *x = elbo_tensor_new(ctx, 4, sx), *m = elbo_tensor_new(ctx, 4, sm);
        elbo_tensor *ls = elbo_tensor_new(ctx, 4, sl);
        fill(x->data, x->numel, 1, -1, 1);
        for (int64_t i = 0; i < x->numel; i++) /* on the 8-bit bin centres */
            x->data[i] = roundf((x->data[i] + 1) * 127.5f) / 127.5f - 1;
        fill(m->data, m->numel, 2, -1, 1);
        fill(ls->data, 3, 3, -4, -1);
        elbo_tensor_requires_grad(m, 1);
        elbo_tensor_requires_grad(ls, 1);
        elbo_tensor *y =
            elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 256, ELBO_REDUCE_MEAN);
        CHECK(elbo_backward(ctx, y) == ELBO_OK);
        val[t] = y->data[0];
        gls[t] = malloc(3 * sizeof(float));
        memcpy(gls[t], ls->grad, 3 * sizeof(float));
        if (t == 0)
            gm0 = m->grad[12345];
        else
            gm1 = m->grad[12345];
        elbo_ctx_set_grad(ctx, 0);
        elbo_tensor *yn =
            elbo_discretized_logistic_log_likelihood(ctx, x, m, ls, 256, ELBO_REDUCE_NONE);
        double s = 0;
        for (int64_t i = 0; i < yn->numel; i++) s += yn->data[i];
        CHECK_NEAR(val[t], s / (double)yn->numel, 1e-6 * fabs(s / (double)yn->numel));
        elbo_ctx_free(ctx);
    }
    elbo_set_threads(saved);
    int same = val[0] == val[1] && gm0 == gm1 && !memcmp(gls[0], gls[1], 3 * sizeof(float));
    free(gls[0]);
    free(gls[1]);
    CHECK(same);
}
