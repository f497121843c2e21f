/* Toy 2-D distributions of FFJORD (Grathwohl et al. 2019, toy_data.py, which calls
 * scikit-learn's make_swiss_roll, make_moons and make_circles). The constants are theirs:
 *   swissroll     t = 1.5 pi (1 + 2u), u ~ U[0,1); x = (t cos t, t sin t) + N(0, 1^2 I); x / 5
 *                 (make_swiss_roll(noise=1.0), columns 0 and 2, divided by 5)
 *   moons         n//2 points (cos s, sin s), s = linspace(0, pi), and the rest
 *                 (1 - cos s, 1/2 - sin s); shuffled; + N(0, 0.1^2 I); then x 2 + (-1, -0.2)
 *   8gaussians    centres 4 (cos k pi/4, sin k pi/4), k = 0..7, chosen uniformly; + N(0, 0.5^2 I);
 *                 divided by 1.414
 *   checkerboard  x1 ~ U[-2, 2), x2 ~ U[0, 1) - 2 b, b ~ Bernoulli(1/2), x2 += floor(x1) mod 2;
 *                 times 2 (the 4 x 4 board [-4, 4)^2, squares of side 2)
 *   circles       n//2 points on the unit circle and the rest on radius 0.5 (angles
 *                 linspace(0, 2 pi) without the endpoint); shuffled; + N(0, 0.08^2 I); times 3
 *   pinwheel      5 arms, class i % 5; f = (1 + 0.3 z1, 0.1 z2), z ~ N(0, I); angle
 *                 a = 2 pi class / 5 + 0.25 exp(f1); x = 2 (f1 cos a + f2 sin a,
 *                 -f1 sin a + f2 cos a); shuffled
 *   spirals       ("2spirals") s = 3 pi sqrt(u) (540 degrees), u, u', u'' ~ U[0,1);
 *                 d = (-s cos s + 0.5 u', s sin s + 0.5 u''); point i is d for even i and -d
 *                 for odd i; then d / 3 + N(0, 0.1^2 I)
 * Deviations, for a generator that draws any n points from a seed: FFJORD's spirals uses the
 * same (s, u', u'') for the two arms of a pair (the halves are exact negatives before the
 * Gaussian noise); here every point has its own draws, which has the same marginal density.
 * Pinwheel draws exactly n points (FFJORD: 5 (n // 5)).
 *
 * Draws: point i uses counters offset + K i .. offset + K i + K - 1 (K = 2 for spirals, 1
 * otherwise), then the shuffle (moons, circles, pinwheel) takes n - 1 draws of
 * elbo_rng_below; the result depends only on the seed. */
#include "elbo/data.h"
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const toy_names[ELBO_TOY_COUNT] = {
    "swissroll", "moons", "8gaussians", "checkerboard", "circles", "pinwheel", "spirals"};

const char *elbo_toy_name(elbo_toy_kind kind) {
    return kind >= 0 && kind < ELBO_TOY_COUNT ? toy_names[kind] : "unknown";
}

elbo_status elbo_toy_parse(const char *name, elbo_toy_kind *kind) {
    for (int i = 0; i < ELBO_TOY_COUNT; i++)
        if (name && strcmp(name, toy_names[i]) == 0) {
            *kind = (elbo_toy_kind)i;
            return ELBO_OK;
        }
    if (name && strcmp(name, "2spirals") == 0) {
        *kind = ELBO_TOY_SPIRALS;
        return ELBO_OK;
    }
    return elbo_error(ELBO_ERR_ARG,
                      "unknown toy distribution '%s': expected swissroll, moons, 8gaussians, "
                      "checkerboard, circles, pinwheel or spirals",
                      name ? name : "");
}

#define PI 3.14159265358979323846

/* U[0, 1) with 53 bits from two words, and a standard normal pair by Box-Muller
 * (u1, u2) -> sqrt(-2 log u1) (cos 2 pi u2, sin 2 pi u2), u1 in (0, 1]. */
static inline double u01(uint32_t r) { return r * 0x1p-32; }
static inline void normal2(uint32_t a, uint32_t b, double z[2]) {
    double u1 = ((double)a + 1.0) * 0x1p-32, th = 2 * PI * u01(b);
    double rad = sqrt(-2.0 * log(u1));
    z[0] = rad * cos(th);
    z[1] = rad * sin(th);
}

/* Rows i and j of x (n, 2) swapped for i = n-1..1, j = elbo_rng_below(i + 1): the row
 * permutation of elbo_shuffle. */
static void shuffle_rows(elbo_rng *rng, float *x, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = elbo_rng_below(rng, (uint32_t)(i + 1));
        float t0 = x[2 * i], t1 = x[2 * i + 1];
        x[2 * i] = x[2 * j];
        x[2 * i + 1] = x[2 * j + 1];
        x[2 * j] = t0;
        x[2 * j + 1] = t1;
    }
}

/* numpy's linspace(lo, hi, m, endpoint): point k. */
static inline double linspace(double lo, double hi, int64_t m, int endpoint, int64_t k) {
    int64_t div = endpoint ? m - 1 : m;
    return div > 0 ? lo + (hi - lo) * (double)k / (double)div : lo;
}

/* Point i of n from its counter words r (4 per counter; K counters; NULL for grid points). */
static void toy_point(elbo_toy_kind kind, const uint32_t *r, int64_t i, int64_t n, float *out) {
    double z[2], x = 0, y = 0;
    switch (kind) {
    case ELBO_TOY_SWISSROLL: {
        double t = 1.5 * PI * (1 + 2 * u01(r[0]));
        normal2(r[1], r[2], z);
        x = (t * cos(t) + 1.0 * z[0]) / 5;
        y = (t * sin(t) + 1.0 * z[1]) / 5;
        break;
    }
    case ELBO_TOY_MOONS: { /* noise-free part; noise after the shuffle */
        int64_t n_out = n / 2, n_in = n - n_out;
        if (i < n_out) {
            double s = linspace(0, PI, n_out, 1, i);
            x = cos(s);
            y = sin(s);
        } else {
            double s = linspace(0, PI, n_in, 1, i - n_out);
            x = 1 - cos(s);
            y = 1 - sin(s) - 0.5;
        }
        break;
    }
    case ELBO_TOY_8GAUSSIANS: {
        int k = (int)(r[2] >> 29); /* uniform in 0..7 */
        normal2(r[0], r[1], z);
        double a = k * PI / 4;
        x = (4 * cos(a) + 0.5 * z[0]) / 1.414;
        y = (4 * sin(a) + 0.5 * z[1]) / 1.414;
        break;
    }
    case ELBO_TOY_CHECKERBOARD: {
        double x1 = u01(r[0]) * 4 - 2;
        double x2 = u01(r[1]) - (double)(r[2] >> 31) * 2;
        double f = floor(x1);
        x2 += f - 2 * floor(f / 2); /* floor(x1) mod 2 in {0, 1}, as Python's % */
        x = 2 * x1;
        y = 2 * x2;
        break;
    }
    case ELBO_TOY_CIRCLES: {
        int64_t n_out = n / 2, n_in = n - n_out;
        if (i < n_out) {
            double s = linspace(0, 2 * PI, n_out, 0, i);
            x = cos(s);
            y = sin(s);
        } else {
            double s = linspace(0, 2 * PI, n_in, 0, i - n_out);
            x = 0.5 * cos(s);
            y = 0.5 * sin(s);
        }
        break;
    }
    case ELBO_TOY_PINWHEEL: {
        normal2(r[0], r[1], z);
        double f1 = 1 + 0.3 * z[0], f2 = 0.1 * z[1];
        double a = 2 * PI * (double)(i % 5) / 5 + 0.25 * exp(f1);
        x = 2 * (f1 * cos(a) + f2 * sin(a));
        y = 2 * (-f1 * sin(a) + f2 * cos(a));
        break;
    }
    case ELBO_TOY_SPIRALS: {
        double s = sqrt(u01(r[0])) * 540 * (2 * PI) / 360;
        double dx = -cos(s) * s + u01(r[1]) * 0.5;
        double dy = sin(s) * s + u01(r[2]) * 0.5;
        double sign = (i & 1) ? -1 : 1;
        normal2(r[4], r[5], z);
        x = sign * dx / 3 + 0.1 * z[0];
        y = sign * dy / 3 + 0.1 * z[1];
        break;
    }
    default:
        break;
    }
    out[0] = (float)x;
    out[1] = (float)y;
}

elbo_status elbo_toy_sample(elbo_toy_kind kind, elbo_rng *rng, float *x, int64_t n) {
    if (kind < 0 || kind >= ELBO_TOY_COUNT)
        return elbo_error(ELBO_ERR_ARG, "toy: unknown distribution %d", (int)kind);
    if (n < 0 || n > ((int64_t)1 << 32) || (n > 0 && (!x || !rng)))
        return elbo_error(ELBO_ERR_ARG, "toy %s: bad arguments (n = %lld)", toy_names[kind],
                          (long long)n);
    int K = kind == ELBO_TOY_SPIRALS ? 2 : 1;
    uint64_t key = rng->seed, base = rng->offset;
    int grid = kind == ELBO_TOY_MOONS || kind == ELBO_TOY_CIRCLES;
    if (grid) {
        /* sklearn's order: grid points, shuffle, then noise at each position. */
        for (int64_t i = 0; i < n; i++) toy_point(kind, NULL, i, n, x + 2 * i);
        rng->offset += (uint64_t)n;
        shuffle_rows(rng, x, n);
        double sd = kind == ELBO_TOY_MOONS ? 0.1 : 0.08;
        ELBO_PARALLEL_FOR(
            n > ELBO_PAR_MIN / 4, for (int64_t i = 0; i < n; i++) {
                uint32_t r[4];
                double z[2];
                elbo_philox4x32(key, base + (uint64_t)i, r);
                normal2(r[0], r[1], z);
                double px = x[2 * i] + sd * z[0], py = x[2 * i + 1] + sd * z[1];
                if (kind == ELBO_TOY_MOONS) {
                    px = px * 2 - 1;
                    py = py * 2 - 0.2;
                } else {
                    px *= 3;
                    py *= 3;
                }
                x[2 * i] = (float)px;
                x[2 * i + 1] = (float)py;
            });
        return ELBO_OK;
    }
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN / 4, for (int64_t i = 0; i < n; i++) {
            uint32_t r[8];
            for (int k = 0; k < K; k++)
                elbo_philox4x32(key, base + (uint64_t)(K * i + k), r + 4 * k);
            toy_point(kind, r, i, n, x + 2 * i);
        });
    rng->offset += (uint64_t)(K * n);
    if (kind == ELBO_TOY_PINWHEEL) shuffle_rows(rng, x, n);
    return ELBO_OK;
}

elbo_status elbo_dataset_toy(elbo_toy_kind kind, int64_t n, uint64_t seed, elbo_data_split split,
                             elbo_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    if (n < 1 || n > ((int64_t)1 << 28))
        return elbo_error(ELBO_ERR_ARG, "toy %s: %lld points (need 1 .. 2^28)", elbo_toy_name(kind),
                          (long long)n);
    float *p = malloc((size_t)n * 2 * sizeof *p);
    if (!p) return elbo_error(ELBO_ERR_NOMEM, "toy %s: out of memory for %lld points",
                              elbo_toy_name(kind), (long long)n);
    elbo_rng rng;
    elbo_rng_init(&rng, split == ELBO_SPLIT_TEST ? seed ^ 0x5eed7e57u : seed);
    elbo_status st = elbo_toy_sample(kind, &rng, p, n);
    if (st != ELBO_OK) {
        free(p);
        return st;
    }
    ds->n = n, ds->c = 2, ds->h = 1, ds->w = 1;
    ds->points = p;
    return ELBO_OK;
}
