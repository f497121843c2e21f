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

#endif
