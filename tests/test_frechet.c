/* The Frechet distance between Gaussians and the covariance estimate (include/elbo/prob.h):
 * the closed form for commuting (diagonal) covariances, numpy's value for a random pair,
 * invariance under a rotation of both, and zero for a Gaussian against itself. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* numpy 1.24: rng = default_rng(0); d = 5; A, B = rng.normal(size=(d, d)) x2;
 * c1 = A A^T / d + 0.1 I; c2 = B B^T / d + 0.2 I; m1, m2 = rng.normal(size=d) x2;
 * fd = |m1 - m2|^2 + tr(c1 + c2) - 2 sum sqrt(eigvalsh(s c2 s)), s = sqrtm(c1) by eigh */
static const double C1[25] = {
    0.24826933330474887,  0.21675127931937177,   -0.18567622098683012, -0.1475994107980983,
    -0.21395415115132826, 0.21675127931937177,   1.064932846731377,    -0.12858048060911337,
    -0.57659151267976,    -0.057048574330241866, -0.18567622098683012, -0.12858048060911337,
    1.5792221751858588,   -0.0439242091184729,   0.09612600762947363,  -0.1475994107980983,
    -0.57659151267976,    -0.0439242091184729,   0.5377505864093594,   0.12947698404530886,
    -0.21395415115132826, -0.057048574330241866, 0.09612600762947363,  0.12947698404530886,
    0.7532090456141086};
static const double C2[25] = {
    0.5338411878083037,  0.001414997990643135, 0.12179981932195175,  -0.5567781862001812,
    -0.6910890191337311, 0.001414997990643135, 0.4854056773573118,   0.10864004980273807,
    0.24390783735453336, 0.19130860039680203,  0.12179981932195175,  0.10864004980273807,
    0.8831070860073222,  -0.12085055241773864, 0.4115046050021235,   -0.5567781862001812,
    0.24390783735453336, -0.12085055241773864, 1.473795230294267,    1.3992539047087633,
    -0.6910890191337311, 0.19130860039680203,  0.4115046050021235,   1.3992539047087633,
    2.408474126131069};
static const double M1[5] = {0.357380410658956, -1.2083186322821715, -0.004454133120083229,
                             0.6564749350763358, -1.2883614637495544};
static const double M2[5] = {0.39512206018200824, 0.42986369482223, 0.6960427239628685,
                             -1.184117966757189, -0.6617025720390349};

TEST(frechet_matches_numpy_and_closed_forms) {
    double fd;
    CHECK(elbo_frechet_distance(M1, C1, M2, C2, 5, NULL, &fd) == ELBO_OK);
    CHECK_NEAR(fd, 8.820969732914982, 1e-10);
    double self;
    CHECK(elbo_frechet_distance(M1, C1, M1, C1, 5, NULL, &self) == ELBO_OK);
    CHECK_NEAR(self, 0.0, 1e-10);
    /* diagonal: sum (m1 - m2)^2 + sum (sqrt(a) - sqrt(b))^2 */
    double a[9] = {4, 0, 0, 0, 1, 0, 0, 0, 0.25}, b[9] = {1, 0, 0, 0, 9, 0, 0, 0, 0.25};
    double ma[3] = {1, 2, 3}, mb[3] = {0, 2, 5}, want = 1 + 4 + (2 - 1) * (2 - 1) + (1 - 3) * (1 - 3);
    CHECK(elbo_frechet_distance(ma, a, mb, b, 3, NULL, &fd) == ELBO_OK);
    CHECK_NEAR(fd, want, 1e-10);
    /* rotating both Gaussians by the same orthogonal R keeps the distance */
    double r[9], ra[9], rb[9], rma[3], rmb[3], tmp[9];
    double th = 0.7, c = cos(th), s = sin(th);
    double r0[9] = {c, -s, 0, s, c, 0, 0, 0, 1};
    memcpy(r, r0, sizeof r);
    for (int k = 0; k < 2; k++) {
        const double *src = k ? b : a;
        double *dst = k ? rb : ra;
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double e = 0;
                for (int q = 0; q < 3; q++) e += r[i * 3 + q] * src[q * 3 + j];
                tmp[i * 3 + j] = e;
            }
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                double e = 0;
                for (int q = 0; q < 3; q++) e += tmp[i * 3 + q] * r[j * 3 + q];
                dst[i * 3 + j] = e;
            }
    }
    for (int i = 0; i < 3; i++) {
        rma[i] = rmb[i] = 0;
        for (int q = 0; q < 3; q++) rma[i] += r[i * 3 + q] * ma[q], rmb[i] += r[i * 3 + q] * mb[q];
    }
    CHECK(elbo_frechet_distance(rma, ra, rmb, rb, 3, NULL, &fd) == ELBO_OK);
    CHECK_NEAR(fd, want, 1e-9);
    CHECK(elbo_frechet_distance(ma, a, mb, b, 0, NULL, &fd) == ELBO_ERR_ARG);
}

TEST(frechet_mean_cov_of_samples) {
    /* 20000 draws of N((1, -2), [[4, 1.2], [1.2, 1]]) via x = m + L z */
    enum { N = 20000 };
    float *x = malloc(sizeof(float) * 2 * N);
    elbo_rng rng;
    elbo_rng_init(&rng, 4);
    elbo_rng_normal(&rng, x, 2 * N, 0, 1);
    const double l00 = 2, l10 = 0.6, l11 = 0.8; /* L L^T = [[4, 1.2], [1.2, 1]] */
    for (int i = 0; i < N; i++) {
        double z0 = x[2 * i], z1 = x[2 * i + 1];
        x[2 * i] = (float)(1 + l00 * z0);
        x[2 * i + 1] = (float)(-2 + l10 * z0 + l11 * z1);
    }
    double mu[2], cov[4];
    CHECK(elbo_mean_cov(x, N, 2, mu, cov) == ELBO_OK);
    CHECK(elbo_mean_cov(x, 1, 2, mu, cov) == ELBO_ERR_ARG);
    free(x);
    /* standard errors: sd / sqrt(N) for means, about var sqrt(2 / N) for variances */
    CHECK_NEAR(mu[0], 1, 4 * 2 / sqrt(N));
    CHECK_NEAR(mu[1], -2, 4 * 1 / sqrt(N));
    CHECK_NEAR(cov[0], 4, 4 * 4 * sqrt(2.0 / N));
    CHECK_NEAR(cov[3], 1, 4 * 1 * sqrt(2.0 / N));
    CHECK_NEAR(cov[1], 1.2, 4 * sqrt((4 * 1 + 1.2 * 1.2) / N));
    CHECK(cov[1] == cov[2]);
}
