/* The diffusion model's denoiser VJP (d x0_hat / d x_t)^T u through the network, against
 * central differences, for each parameterisation; and the dataset-level ODE likelihood
 * (include/elbo/diffusion_model.h) on a tiny model: finite, positive bits/dim under both
 * dequantizations, the probes' seeds, and errors. */
#include "test.h"

#include "diffusion_testlib.h"
#include "elbo/inverse.h"
#include "elbo/train.h"

#include <stdlib.h>
#include <string.h>

/* <vjp, e> against (<u, D(x + h e)> - <u, D(x - h e)>) / 2h for random u, e: the network is
 * float32, so h = 1e-2 (1e-4 through the Fourier features) and a relative tolerance of 1e-3
 * of |<vjp, e>| + 1e-4. */
TEST(diffusion_likelihood_vjp_matches_finite_differences) {
    enum { B = 2, D = 64, N = B * D };
    /* eps, x0, v, and eps with VDM's Fourier features on the input */
    const elbo_param_kind kinds[] = {ELBO_PARAM_EPS, ELBO_PARAM_X0, ELBO_PARAM_V, ELBO_PARAM_EPS};
    for (int k = 0; k < 4; k++) {
        elbo_diffusion_config c;
        tiny_image_config(&c);
        c.param = kinds[k];
        c.fourier = k == 3;
        elbo_model *m;
        CHECK(elbo_diffusion_model_new(&c, 3, &m) == ELBO_OK);
        elbo_ctx *ctx = elbo_ctx_new(0);
        float x[N], u[N], e[N], x0[N], x0b[N], vjp[N], xp[N], xm[N], dp[N], dm[N];
        elbo_rng rng;
        elbo_rng_init(&rng, 4 + k);
        elbo_rng_normal(&rng, x, N, 0, 1);
        elbo_rng_normal(&rng, u, N, 0, 1);
        elbo_rng_normal(&rng, e, N, 0, 1);
        elbo_noise_level l;
        CHECK(elbo_process_at(&c.process, 0.4, &l) == ELBO_OK);
        elbo_diffusion_denoiser_state s = {m, ctx, B, NULL, 0.0};
        CHECK(elbo_diffusion_denoiser_vjp(&s, x, N, &l, u, x0, vjp) == ELBO_OK);
        CHECK(elbo_diffusion_denoiser(&s, x, N, &l, x0b) == ELBO_OK);
        double jd = 0, fd = 0, dx = 0;
        for (int i = 0; i < N; i++) {
            jd += (double)vjp[i] * e[i];
            dx = fmax(dx, fabs(x0[i] - x0b[i]));
        }
        CHECK_MSG(dx < 1e-5, "%s: the VJP's x0_hat differs from the denoiser's by %.3g",
                  elbo_param_name(kinds[k]), dx);
        /* the Fourier features turn x by 2^7 2 pi = 804 radians per unit: steps of 1e-4 and
         * 5e-5 combined by Richardson's extrapolation, (4 fd(h/2) - fd(h)) / 3; float32
         * rounding limits that to about 1% (measured: the plain difference wanders by 0.5 of
         * 17 below h = 1e-5) */
        const double steps[2] = {k == 3 ? 1e-4 : 1e-2, 5e-5};
        double fds[2] = {0, 0};
        for (int r = 0; r < (k == 3 ? 2 : 1); r++) {
            for (int i = 0; i < N; i++) {
                xp[i] = (float)(x[i] + steps[r] * e[i]);
                xm[i] = (float)(x[i] - steps[r] * e[i]);
            }
            CHECK(elbo_diffusion_denoiser(&s, xp, N, &l, dp) == ELBO_OK);
            CHECK(elbo_diffusion_denoiser(&s, xm, N, &l, dm) == ELBO_OK);
            for (int i = 0; i < N; i++)
                fds[r] += (double)u[i] * ((double)dp[i] - dm[i]) / (2 * steps[r]);
        }
        fd = k == 3 ? (4 * fds[1] - fds[0]) / 3 : fds[0];
        const double tol = k == 3 ? 1e-2 : 1e-3;
        printf("    %s%s: <vjp, e> %.6f, central difference %.6f\n", elbo_param_name(kinds[k]),
               k == 3 ? " + fourier" : "", jd, fd);
        CHECK_MSG(fabs(jd - fd) <= tol * fabs(jd) + 1e-4, "%s: %.6f vs %.6f",
                  elbo_param_name(kinds[k]), jd, fd);
        /* the parameters stay on the tape for training, and got no gradient here */
        elbo_paramset *ps = m->ps;
        for (int i = 0; i < elbo_paramset_count(ps); i++) {
            elbo_tensor *t = elbo_paramset_get(ps, i);
            CHECK(t->requires_grad == 1);
        }
        elbo_ctx_free(ctx);
        elbo_model_free(m);
    }
}

/* 8 images of 8-bit noise: bits/dim finite and positive under both dequantizations; the
 * same seed gives the same figure; a guided state is refused. */
TEST(diffusion_likelihood_dataset_figures) {
    elbo_diffusion_config c;
    tiny_image_config(&c);
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 3, &m) == ELBO_OK);
    elbo_dataset ds = {0};
    ds.n = 8, ds.c = 1, ds.h = 8, ds.w = 8;
    ds.images = malloc(8 * 64);
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    for (int i = 0; i < 8 * 64; i++) ds.images[i] = (uint8_t)elbo_rng_below(&rng, 256);
    elbo_ode_likelihood_params lp;
    elbo_ode_likelihood_params_init(&lp);
    lp.rtol = lp.atol = 1e-4;
    elbo_diffusion_ode_nll r1, r2, r3;
    CHECK(elbo_diffusion_ode_likelihood(m, &ds, 4, &lp, ELBO_DEQUANT_UNIFORM, 7, &r1) == ELBO_OK);
    CHECK(elbo_diffusion_ode_likelihood(m, &ds, 4, &lp, ELBO_DEQUANT_UNIFORM, 7, &r2) == ELBO_OK);
    CHECK(elbo_diffusion_ode_likelihood(m, &ds, 4, &lp, ELBO_DEQUANT_PROCESS, 7, &r3) == ELBO_OK);
    printf("    uniform %.4f bits/dim (%d batches, %lld calls), process %.4f\n", r1.bits_per_dim,
           r1.batches, (long long)r1.nfe, r3.bits_per_dim);
    CHECK(r1.n == 8 && r1.batches == 2 && r1.nfe > 0);
    CHECK(isfinite(r1.bits_per_dim) && r1.bits_per_dim > 0);
    CHECK(isfinite(r3.bits_per_dim) && r3.bits_per_dim > 0);
    CHECK(r1.bits_per_dim == r2.bits_per_dim);
    CHECK_NEAR(r1.bits_per_dim, r1.nll_nats / (64 * log(2.0)), 1e-12);
    elbo_dataset bad = ds;
    bad.h = 4;
    CHECK(elbo_diffusion_ode_likelihood(m, &bad, 4, &lp, ELBO_DEQUANT_UNIFORM, 7, &r1) ==
          ELBO_ERR_SHAPE);
    elbo_dequant_kind dq;
    CHECK(elbo_dequant_parse("process", &dq) == ELBO_OK && dq == ELBO_DEQUANT_PROCESS);
    CHECK(elbo_dequant_parse("variational", &dq) == ELBO_ERR_ARG);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float x[64] = {0}, u[64] = {0}, o[64], v[64];
    elbo_noise_level l;
    CHECK(elbo_process_at(&c.process, 0.5, &l) == ELBO_OK);
    elbo_diffusion_denoiser_state s = {m, ctx, 1, NULL, 1.5};
    CHECK(elbo_diffusion_denoiser_vjp(&s, x, 64, &l, u, o, v) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "guidance"));
    elbo_ctx_free(ctx);
    free(ds.images);
    elbo_model_free(m);
}

/* u = 2 x0_hat - 1, a cotangent formed from the output. */
static elbo_status twice_minus_one(void *user, const float *x0_hat, int64_t n, float *u) {
    (void)user;
    for (int64_t i = 0; i < n; i++) u[i] = 2.0f * x0_hat[i] - 1.0f;
    return ELBO_OK;
}

/* A quadratic energy E(x) = |x - 0.3|^2 / 2 per image, for the solvers below. */
static elbo_status quad_energy(void *user, const float *x, int64_t B, double *value, float *grad) {
    const int64_t D = *(const int64_t *)user;
    for (int64_t b = 0; b < B; b++) {
        double e = 0;
        for (int64_t j = b * D; j < (b + 1) * D; j++) {
            double r = x[j] - 0.3;
            e += 0.5 * r * r;
            if (grad) grad[j] = (float)r;
        }
        if (value) value[b] = e;
    }
    return ELBO_OK;
}

/* The fused VJP (one forward, the cotangent formed from x0_hat) gives the bytes of the
 * denoiser followed by the two-pass VJP; PnP and DPS on the diffusion model give the same
 * bytes with and without prior->denoise_vjp_at. */
TEST(diffusion_denoiser_vjp_at_matches_two_passes) {
    enum { B = 2, D = 64, N = B * D };
    elbo_diffusion_config c;
    tiny_image_config(&c);
    elbo_model *m;
    CHECK(elbo_diffusion_model_new(&c, 5, &m) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float x[N], x0a[N], x0b[N], ua[N], ub[N], va[N], vb[N];
    elbo_rng rng;
    elbo_rng_init(&rng, 2);
    elbo_rng_normal(&rng, x, N, 0.0f, 1.0f);
    elbo_noise_level l;
    CHECK(elbo_process_at(&c.process, 0.4, &l) == ELBO_OK);
    elbo_diffusion_denoiser_state s = {m, ctx, B, NULL, 0.0};
    CHECK(elbo_diffusion_denoiser_vjp_at(&s, x, N, &l, twice_minus_one, NULL, x0a, ua, va) == ELBO_OK);
    CHECK(elbo_diffusion_denoiser(&s, x, N, &l, x0b) == ELBO_OK);
    CHECK(twice_minus_one(NULL, x0b, N, ub) == ELBO_OK);
    float x0c[N];
    CHECK(elbo_diffusion_denoiser_vjp(&s, x, N, &l, ub, x0c, vb) == ELBO_OK);
    CHECK(memcmp(x0a, x0b, sizeof x0a) == 0 && memcmp(x0a, x0c, sizeof x0a) == 0);
    CHECK(memcmp(ua, ub, sizeof ua) == 0 && memcmp(va, vb, sizeof va) == 0);
    double vn = 0;
    for (int i = 0; i < N; i++) vn += fabs(va[i]);
    CHECK(vn > 0);
    CHECK(elbo_diffusion_denoiser_vjp_at(&s, x, N, &l, NULL, NULL, x0a, ua, va) == ELBO_ERR_ARG);

    int64_t dim = D;
    elbo_energy e = {quad_energy, &dim, 1.0};
    elbo_prior fused = {&c.process, elbo_diffusion_denoiser, &s, elbo_diffusion_denoiser_vjp, &s,
                        1, 8, 8, elbo_diffusion_denoiser_vjp_at};
    elbo_prior plain = fused;
    plain.denoise_vjp_at = NULL;
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    pp.steps = 4;
    CHECK(elbo_pnp_solve(&fused, &e, &pp, 0, x0a, B) == ELBO_OK);
    CHECK(elbo_pnp_solve(&plain, &e, &pp, 0, x0b, B) == ELBO_OK);
    CHECK(memcmp(x0a, x0b, sizeof x0a) == 0);
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    dp.steps = 4;
    CHECK(elbo_dps_solve(&fused, &e, &dp, x0a, B) == ELBO_OK);
    CHECK(elbo_dps_solve(&plain, &e, &dp, x0b, B) == ELBO_OK);
    CHECK(memcmp(x0a, x0b, sizeof x0a) == 0);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
}
