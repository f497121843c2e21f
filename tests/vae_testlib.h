/* Helpers shared by the VAE-family tests (test_vae.c, test_hvae.c). */
#ifndef ELBO_TEST_VAE_TESTLIB_H
#define ELBO_TEST_VAE_TESTLIB_H

#include "test.h"

#include "elbo/train.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    double mean, se;
} estimate;

/* R single-example evaluations of x with k importance samples: eval figure `which` (0
 * neg_elbo, 3 nll_iwae), negated to a bound on log p(x), as mean and standard error; figs
 * (may be NULL) gets the first evaluation's sums. */
static inline estimate eval_bound(elbo_model *m, const float *x, int64_t k, int which, int R,
                           uint64_t seed, double *figs) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    m->eval_samples = k;
    double s = 0, ss = 0;
    for (int r = 0; r < R; r++) {
        double sums[24] = {0};
        elbo_ctx_reset(ctx);
        if (m->eval_begin) m->eval_begin(m);
        if (m->eval(ctx, m, x, NULL, 1, &rng, sums) != ELBO_OK) {
            elbo_ctx_free(ctx);
            return (estimate){NAN, NAN};
        }
        if (figs && r == 0) memcpy(figs, sums, sizeof sums);
        s += -sums[which];
        ss += sums[which] * sums[which];
    }
    elbo_ctx_free(ctx);
    double mean = s / R, var = (ss / R - mean * mean) * R / (R - 1);
    return (estimate){mean, sqrt(var / R)};
}

/* The training loss of model m at x (B rows) with the rng from seed; extras to extra. */
static inline double loss_at(elbo_model *m, const float *x, int64_t B, uint64_t seed, double *extra) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    elbo_tensor *l = m->loss(ctx, m, x, NULL, B, &rng, extra);
    double v = l ? l->data[0] : NAN;
    elbo_ctx_free(ctx);
    return v;
}

/* 8 random binary prototypes; item i is prototype i % 8 with 5% of its pixels flipped. */
static inline int prototype_data(elbo_dataset *ds, int64_t n, uint64_t seed) {
    memset(ds, 0, sizeof *ds);
    ds->n = n;
    ds->c = 1;
    ds->h = ds->w = 28;
    ds->images = malloc((size_t)n * 784);
    if (!ds->images) return 0;
    elbo_rng rng;
    elbo_rng_init(&rng, 99);
    static uint8_t proto[8][784];
    for (int p = 0; p < 8; p++)
        for (int i = 0; i < 784; i++) proto[p][i] = elbo_rng_below(&rng, 2) ? 255 : 0;
    elbo_rng_init(&rng, seed);
    for (int64_t k = 0; k < n; k++)
        for (int i = 0; i < 784; i++) {
            uint8_t v = proto[k % 8][i];
            ds->images[k * 784 + i] = elbo_rng_below(&rng, 100) < 5 ? (uint8_t)(255 - v) : v;
        }
    return 1;
}

/* Pathwise gradients: with the noise fixed (the same seed), the loss is a smooth function
 * of the weights; its tape gradient matches central differences (h = 1e-2 on a few weights
 * spread over the parameters, every n/every-th; the loss in float32, so |diff| <= 2e-2 |g| + 2e-3). */
static inline int fd_check(elbo_model *m, const float *x, int64_t B, int every, char *msg,
                           size_t len) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_rng rng;
    elbo_rng_init(&rng, 21);
    elbo_paramset_zero_grad(m->ps);
    elbo_tensor *loss = m->loss(ctx, m, x, NULL, B, &rng, NULL);
    if (!loss || elbo_backward(ctx, loss) != ELBO_OK) {
        snprintf(msg, len, "loss: %s", elbo_last_error());
        elbo_ctx_free(ctx);
        return 0;
    }
    float *g = elbo_paramset_grad(m->ps), *p = elbo_paramset_data(m->ps);
    const int64_t n = elbo_paramset_numel(m->ps);
    float *g0 = malloc((size_t)n * sizeof(float));
    memcpy(g0, g, (size_t)n * sizeof(float));
    elbo_ctx_free(ctx);
    int ok = 1;
    for (int64_t i = 0; i < n && ok; i += n / every + 1) {
        const float h = 1e-2f, p0 = p[i];
        p[i] = p0 + h;
        double up = loss_at(m, x, B, 21, NULL);
        p[i] = p0 - h;
        double dn = loss_at(m, x, B, 21, NULL);
        p[i] = p0;
        double fd = (up - dn) / (2 * h);
        if (!(fabs(fd - g0[i]) <= 2e-2 * fabs(g0[i]) + 2e-3)) {
            snprintf(msg, len, "parameter %lld: tape %.6g, finite differences %.6g", (long long)i,
                     g0[i], fd);
            ok = 0;
        }
    }
    free(g0);
    return ok;
}

#endif
