/* The operators, masks, energies, metrics and baselines of include/elbo/inverse.h:
 *   - every operator's adjoint satisfies <A x, r> = <x, A^T r> on random inputs, and the
 *     pseudo-inverses their defining properties (A A^+ A = A; superres A A^+ = I);
 *   - superres and deblur forwards match PyTorch (avg_pool2d; conv2d of the circularly
 *     padded image with the Gaussian kernel), bicubic upsampling matches interpolate(bicubic),
 *     SSIM matches a direct implementation of Wang et al.'s formula (fixtures of
 *     tools/gen_fixtures_inverse.py);
 *   - the energies' gradients match central differences (the measurement energy for each
 *     operator; the constraint energy with a linear softmax classifier coded here);
 *   - mask geometry, the random mask's keep fraction, the PNG mask loader and its errors;
 *   - PSNR on a constructed case, the fill baselines on hand-checked cases and against brute
 *     force, and ELBO_ERR_ARG with a message naming the argument for bad arguments. */
#include "test.h"

#include "elbo/inverse.h"
#include "elbo/io.h"
#include "tmpdir.h"

#include <stdlib.h>
#include <string.h>

#define CHECK_ERR(expr, status, word)                                                              \
    do {                                                                                           \
        elbo_clear_error();                                                                        \
        elbo_status st_ = (expr);                                                                  \
        CHECK_MSG(st_ == (status), "%s: status %d, want %d (%s)", #expr, (int)st_, (int)(status), \
                  elbo_last_error());                                                              \
        CHECK_MSG(strstr(elbo_last_error(), (word)) != NULL, "%s: message \"%s\" lacks \"%s\"",   \
                  #expr, elbo_last_error(), (word));                                               \
    } while (0)

static void randn(float *x, int64_t n, uint64_t seed) {
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    elbo_rng_normal(&rng, x, (size_t)n, 0.0f, 1.0f);
}

/* sum a_i b_i in double, and sum |a_i b_i| (the scale of its rounding error) */
static double dot(const float *a, const float *b, int64_t n, double *abs_sum) {
    double s = 0, t = 0;
    for (int64_t i = 0; i < n; i++) {
        s += (double)a[i] * b[i];
        t += fabs((double)a[i] * b[i]);
    }
    if (abs_sum) *abs_sum += t;
    return s;
}

static float g_mask[64 * 64];

/* An initialised operator of each kind (the inpaint mask random with keep 0.6). */
static elbo_status make_op(elbo_operator *op, elbo_op_kind kind, int64_t c, int64_t h, int64_t w) {
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->c = c;
    op->h = h;
    op->w = w;
    op->sigma_y = 0.3;
    if (kind == ELBO_OP_INPAINT) {
        elbo_status st = elbo_mask_make(ELBO_MASK_RANDOM, h, w, 0.6, 5, g_mask);
        if (st) return st;
        op->mask = g_mask;
    }
    op->factor = 2;
    op->blur_sigma = 1.2;
    return elbo_op_init(op);
}

/* <A x, r> = <x, A^T r> for x (B, D), r (B, M) ~ N(0, I): |lhs - rhs| within 1e-6 of the sum
 * of |terms| (float32 rounding of A x and A^T r is 6e-8 of it). */
static int adjoint_ok(const elbo_operator *op, int64_t B, char *msg, size_t len) {
    const int64_t D = elbo_op_dim_x(op), M = elbo_op_dim_y(op);
    float *x = malloc((size_t)(B * D) * sizeof *x), *ax = malloc((size_t)(B * M) * sizeof *ax);
    float *r = malloc((size_t)(B * M) * sizeof *r), *atr = malloc((size_t)(B * D) * sizeof *atr);
    randn(x, B * D, 1);
    randn(r, B * M, 2);
    int ok = elbo_op_forward(op, x, B, ax) == ELBO_OK && elbo_op_adjoint(op, r, B, atr) == ELBO_OK;
    double scale = 0, lhs = dot(ax, r, B * M, &scale), rhs = dot(x, atr, B * D, &scale);
    if (!ok)
        snprintf(msg, len, "%s", elbo_last_error());
    else if (!(fabs(lhs - rhs) <= 1e-6 * scale)) {
        snprintf(msg, len, "<Ax, r> = %.12g, <x, A^T r> = %.12g (scale %.3g)", lhs, rhs, scale);
        ok = 0;
    }
    free(x);
    free(ax);
    free(r);
    free(atr);
    return ok;
}

TEST(inverse_op_parse) {
    static const char *names[] = {"inpaint", "superres", "denoise", "deblur"};
    for (int k = 0; k < ELBO_OP_COUNT; k++) {
        elbo_op_kind kind = ELBO_OP_COUNT;
        CHECK(elbo_op_kind_parse(names[k], &kind) == ELBO_OK);
        CHECK(kind == (elbo_op_kind)k);
        CHECK(strcmp(elbo_op_kind_name(kind), names[k]) == 0);
    }
    CHECK(strcmp(elbo_op_kind_name(ELBO_OP_COUNT), "?") == 0);
    elbo_op_kind kind;
    CHECK_ERR(elbo_op_kind_parse("blur", &kind), ELBO_ERR_ARG, "'blur'");
    CHECK_ERR(elbo_op_kind_parse(NULL, &kind), ELBO_ERR_ARG, "(null)");
    static const char *masks[] = {"box", "random", "half"};
    for (int k = 0; k < 3; k++) {
        elbo_mask_kind mk = (elbo_mask_kind)99;
        CHECK(elbo_mask_kind_parse(masks[k], &mk) == ELBO_OK);
        CHECK(mk == (elbo_mask_kind)k);
    }
    elbo_mask_kind mk;
    CHECK_ERR(elbo_mask_kind_parse("circle", &mk), ELBO_ERR_ARG, "'circle'");
}

TEST(inverse_op_dims) {
    elbo_operator op;
    CHECK(make_op(&op, ELBO_OP_SUPERRES, 3, 8, 12) == ELBO_OK);
    CHECK(elbo_op_dim_x(&op) == 3 * 8 * 12);
    CHECK(elbo_op_dim_y(&op) == 3 * 4 * 6);
    for (int k = 0; k < ELBO_OP_COUNT; k++) {
        if (k == ELBO_OP_SUPERRES) continue;
        CHECK(make_op(&op, (elbo_op_kind)k, 3, 8, 12) == ELBO_OK);
        CHECK(elbo_op_dim_x(&op) == 288 && elbo_op_dim_y(&op) == 288);
    }
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 1, 8, 8) == ELBO_OK);
    CHECK(op.radius == 4); /* ceil(3 * 1.2) */
    op.blur_sigma = 20;
    CHECK(elbo_op_init(&op) == ELBO_OK);
    CHECK(op.radius == ELBO_OP_MAX_RADIUS); /* ceil(60) capped */
    op.blur_radius = 3;
    CHECK(elbo_op_init(&op) == ELBO_OK);
    CHECK(op.radius == 3);
}

TEST(inverse_adjoint_inpaint) {
    elbo_operator op;
    char msg[256];
    CHECK(make_op(&op, ELBO_OP_INPAINT, 3, 9, 7) == ELBO_OK);
    CHECK_MSG(adjoint_ok(&op, 2, msg, sizeof msg), "%s", msg);
}

TEST(inverse_adjoint_superres) {
    elbo_operator op;
    char msg[256];
    const int factors[3] = {2, 3, 4}, hs[3] = {8, 9, 12}, ws[3] = {12, 6, 8};
    for (int k = 0; k < 3; k++) {
        memset(&op, 0, sizeof op);
        op.kind = ELBO_OP_SUPERRES;
        op.c = 2, op.h = hs[k], op.w = ws[k], op.factor = factors[k];
        CHECK(elbo_op_init(&op) == ELBO_OK);
        CHECK_MSG(adjoint_ok(&op, 3, msg, sizeof msg), "factor %d: %s", factors[k], msg);
    }
}

TEST(inverse_adjoint_denoise) {
    elbo_operator op;
    char msg[256];
    CHECK(make_op(&op, ELBO_OP_DENOISE, 3, 5, 6) == ELBO_OK);
    CHECK_MSG(adjoint_ok(&op, 2, msg, sizeof msg), "%s", msg);
}

TEST(inverse_adjoint_deblur) {
    elbo_operator op;
    char msg[256];
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 2, 10, 9) == ELBO_OK);
    CHECK_MSG(adjoint_ok(&op, 2, msg, sizeof msg), "sigma 1.2: %s", msg);
    /* a kernel wider than the image: the circular wrap goes round more than once */
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 1, 5, 4) == ELBO_OK);
    op.blur_sigma = 2.5;
    CHECK(elbo_op_init(&op) == ELBO_OK);
    CHECK(op.radius == 8);
    CHECK_MSG(adjoint_ok(&op, 2, msg, sizeof msg), "sigma 2.5 on 5 x 4: %s", msg);
}

/* A A^+ A = A for inpaint, superres, denoise; superres A A^+ = I (exactly for f = 2, 4:
 * the mean of f^2 copies of a float is that float); inpaint and denoise A^+ = A. */
TEST(inverse_pinv) {
    enum { B = 2, C = 2, H = 12, W = 12 };
    float x[B * C * H * W], ax[B * C * H * W], pax[B * C * H * W], apax[B * C * H * W];
    randn(x, B * C * H * W, 3);
    elbo_operator op;
    for (int k = 0; k < 3; k++) {
        CHECK(make_op(&op, (elbo_op_kind)k, C, H, W) == ELBO_OK);
        const int64_t D = B * elbo_op_dim_x(&op), M = B * elbo_op_dim_y(&op);
        CHECK(elbo_op_forward(&op, x, B, ax) == ELBO_OK);
        CHECK(elbo_op_pinv(&op, ax, B, pax) == ELBO_OK);
        CHECK(elbo_op_forward(&op, pax, B, apax) == ELBO_OK);
        for (int64_t i = 0; i < M; i++)
            CHECK_MSG(apax[i] == ax[i], "%s: (A A^+ A x)[%lld] = %.9g, (A x) = %.9g",
                      elbo_op_kind_name(op.kind), (long long)i, apax[i], ax[i]);
        if (k != ELBO_OP_SUPERRES)
            for (int64_t i = 0; i < D; i++) CHECK(pax[i] == ax[i]); /* A^+ = A, A A = A */
    }
    const int factors[3] = {2, 3, 4};
    for (int k = 0; k < 3; k++) {
        CHECK(make_op(&op, ELBO_OP_SUPERRES, C, H, W) == ELBO_OK);
        op.factor = factors[k];
        CHECK(elbo_op_init(&op) == ELBO_OK);
        const int64_t M = B * elbo_op_dim_y(&op);
        float *y = ax; /* y (B, M) ~ N(0, I) */
        randn(y, M, 4);
        CHECK(elbo_op_pinv(&op, y, B, pax) == ELBO_OK);
        CHECK(elbo_op_forward(&op, pax, B, apax) == ELBO_OK);
        for (int64_t i = 0; i < M; i++) {
            if (factors[k] != 3)
                CHECK_MSG(apax[i] == y[i], "f %d: (A A^+ y)[%lld] = %.9g, y = %.9g", factors[k],
                          (long long)i, apax[i], y[i]);
            else
                CHECK_NEAR(apax[i], y[i], 1.2e-7 * fabs(y[i]));
        }
        /* A^+ = f^2 A^T */
        CHECK(elbo_op_adjoint(&op, y, B, apax) == ELBO_OK);
        for (int64_t i = 0; i < B * elbo_op_dim_x(&op); i++)
            CHECK_NEAR(pax[i], factors[k] * factors[k] * apax[i], 1.2e-7 * fabs(pax[i]));
    }
    CHECK(make_op(&op, ELBO_OP_DEBLUR, C, H, W) == ELBO_OK);
    CHECK_ERR(elbo_op_pinv(&op, x, B, pax), ELBO_ERR_ARG, "deblur");
}

TEST(inverse_superres_fixture) {
    fx_file f;
    CHECK(fx_load(&f, "inv_superres") == 0);
    static const char *cases[] = {"f2", "f4"};
    for (int k = 0; k < 2; k++) {
        char nx[32], ny[32], na[32];
        snprintf(nx, sizeof nx, "%s.x", cases[k]);
        snprintf(ny, sizeof ny, "%s.y", cases[k]);
        snprintf(na, sizeof na, "%s.args", cases[k]);
        const fx_entry *ex = fx_get(&f, nx), *ey = fx_get(&f, ny), *ea = fx_get(&f, na);
        CHECK_MSG(ex && ey && ea, "fixture entries of %s missing", cases[k]);
        const int32_t *a = ea->data;
        elbo_operator op;
        memset(&op, 0, sizeof op);
        op.kind = ELBO_OP_SUPERRES;
        op.c = a[1], op.h = a[2], op.w = a[3], op.factor = a[4];
        CHECK(elbo_op_init(&op) == ELBO_OK);
        CHECK(a[0] * elbo_op_dim_y(&op) == ey->numel);
        float *y = malloc((size_t)ey->numel * sizeof *y);
        CHECK(elbo_op_forward(&op, ex->data, a[0], y) == ELBO_OK);
        char what[64];
        snprintf(what, sizeof what, "avg_pool2d %s", cases[k]);
        char cc_msg[256];
        int ok = fx_close(y, ey->data, ey->numel, 1e-7f, 1e-6f, cc_msg, sizeof cc_msg);
        free(y);
        if (!ok) fx_free(&f);
        CHECK_MSG(ok, "%s: %s", what, cc_msg);
    }
    fx_free(&f);
}

TEST(inverse_deblur_fixture) {
    fx_file f;
    CHECK(fx_load(&f, "inv_deblur") == 0);
    static const char *cases[] = {"s12", "s08r2"};
    for (int k = 0; k < 2; k++) {
        char n[5][32];
        static const char *sfx[5] = {"x", "y", "kernel", "args", "sigma"};
        const fx_entry *e[5];
        for (int q = 0; q < 5; q++) {
            snprintf(n[q], sizeof n[q], "%s.%s", cases[k], sfx[q]);
            e[q] = fx_get(&f, n[q]);
        }
        CHECK_MSG(e[0] && e[1] && e[2] && e[3] && e[4], "fixture entries of %s missing", cases[k]);
        const int32_t *a = e[3]->data;
        elbo_operator op;
        memset(&op, 0, sizeof op);
        op.kind = ELBO_OP_DEBLUR;
        op.c = a[1], op.h = a[2], op.w = a[3], op.blur_radius = a[4];
        op.blur_sigma = ((const float *)e[4]->data)[0];
        CHECK(elbo_op_init(&op) == ELBO_OK);
        CHECK_MSG(2 * op.radius + 1 == e[2]->numel, "%s: radius %d, fixture %lld taps", cases[k],
                  op.radius, (long long)e[2]->numel);
        CHECK_CLOSE_ARR("kernel", op.kernel, (const float *)e[2]->data, e[2]->numel, 1e-8f, 1e-6f);
        float *y = malloc((size_t)e[1]->numel * sizeof *y);
        CHECK(elbo_op_forward(&op, e[0]->data, a[0], y) == ELBO_OK);
        char cc_msg[256];
        int ok = fx_close(y, e[1]->data, e[1]->numel, 1e-6f, 1e-5f, cc_msg, sizeof cc_msg);
        free(y);
        if (!ok) fx_free(&f);
        CHECK_MSG(ok, "circular conv2d %s: %s", cases[k], cc_msg);
    }
    fx_free(&f);
}

/* A kernel wider than the image, against the direct 2-D sum over the outer-product kernel
 * with indices taken modulo h and w. */
TEST(inverse_deblur_wrap) {
    enum { H = 5, W = 4 };
    elbo_operator op;
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 1, H, W) == ELBO_OK);
    op.blur_sigma = 2.0;
    op.blur_radius = 7;
    CHECK(elbo_op_init(&op) == ELBO_OK);
    float x[H * W], y[H * W];
    randn(x, H * W, 6);
    CHECK(elbo_op_forward(&op, x, 1, y) == ELBO_OK);
    const int r = op.radius;
    double ks = 0;
    for (int a = 0; a <= 2 * r; a++) ks += op.kernel[a];
    CHECK_NEAR(ks, 1.0, 1e-6);
    for (int i = 0; i < H; i++)
        for (int j = 0; j < W; j++) {
            double s = 0;
            for (int a = -r; a <= r; a++)
                for (int b = -r; b <= r; b++) {
                    const int ii = ((i + a) % H + H) % H, jj = ((j + b) % W + W) % W;
                    s += (double)op.kernel[a + r] * op.kernel[b + r] * x[ii * W + jj];
                }
            CHECK_NEAR(y[i * W + j], s, 1e-6);
        }
}

/* sigma_y = 0 gives A x exactly; the noise (y - A x) / sigma_y of a large measurement has
 * mean 0 and variance 1 (5 standard errors), a seed repeats it, and inpaint's y is 0 where
 * m is 0. */
TEST(inverse_measure) {
    enum { C = 2, H = 32, W = 32, D = C * H * W };
    static float x[D], y[D], ax[D], y2[D];
    randn(x, D, 7);
    for (int k = 0; k < ELBO_OP_COUNT; k++) {
        elbo_operator op;
        CHECK(make_op(&op, (elbo_op_kind)k, C, H, W) == ELBO_OK);
        const int64_t M = elbo_op_dim_y(&op);
        elbo_rng rng;
        op.sigma_y = 0;
        elbo_rng_init(&rng, 9);
        CHECK(elbo_op_measure(&op, x, 1, &rng, y) == ELBO_OK);
        CHECK(elbo_op_forward(&op, x, 1, ax) == ELBO_OK);
        CHECK(memcmp(y, ax, (size_t)M * sizeof *y) == 0);
        op.sigma_y = 0.5;
        elbo_rng_init(&rng, 9);
        CHECK(elbo_op_measure(&op, x, 1, &rng, y) == ELBO_OK);
        elbo_rng_init(&rng, 9);
        CHECK(elbo_op_measure(&op, x, 1, &rng, y2) == ELBO_OK);
        CHECK(memcmp(y, y2, (size_t)M * sizeof *y) == 0);
        double s = 0, s2 = 0;
        int64_t m = 0;
        for (int64_t i = 0; i < M; i++) {
            const double z = ((double)y[i] - ax[i]) / op.sigma_y;
            if (k == ELBO_OP_INPAINT && op.mask[i % (H * W)] == 0.0f) {
                CHECK_MSG(y[i] == 0.0f, "inpaint y[%lld] = %g where the mask is 0", (long long)i,
                          y[i]);
                continue;
            }
            s += z, s2 += z * z, m++;
        }
        const double mean = s / m, var = s2 / m - mean * mean;
        CHECK_MSG(fabs(mean) < 5 / sqrt((double)m), "%s: noise mean %g over %lld",
                  elbo_op_kind_name(op.kind), mean, (long long)m);
        CHECK_MSG(fabs(var - 1) < 5 * sqrt(2.0 / m), "%s: noise variance %g over %lld",
                  elbo_op_kind_name(op.kind), var, (long long)m);
    }
}

/* Central differences of a measurement energy. E is quadratic in x, so the central difference
 * (E(x + h e_j) - E(x - h e_j)) / (2 h) is exact in exact arithmetic for any h: a large h
 * (0.5) keeps the float32 rounding of A x small against the difference. Checks 60 coordinates
 * spread over the batch, and the value against ||y - A x||^2 / (2 s^2) with A x from
 * elbo_op_forward. */
static int energy_fd_ok(const elbo_operator *op, int64_t B, char *msg, size_t len) {
    const int64_t D = elbo_op_dim_x(op), M = elbo_op_dim_y(op), n = B * D;
    float *x = malloc((size_t)n * sizeof *x), *g = malloc((size_t)n * sizeof *g);
    float *y = malloc((size_t)(B * M) * sizeof *y), *work = malloc((size_t)(B * M) * sizeof *work);
    float *ax = malloc((size_t)(B * M) * sizeof *ax);
    double *v = malloc((size_t)B * sizeof *v), *vp = malloc((size_t)B * sizeof *vp);
    double *vm = malloc((size_t)B * sizeof *vm);
    randn(x, n, 11);
    randn(y, B * M, 12);
    elbo_measurement_energy me = {op, y, work};
    int ok = 0;
    if (elbo_measurement_energy_fn(&me, x, B, v, g) || elbo_op_forward(op, x, B, ax)) {
        snprintf(msg, len, "%s", elbo_last_error());
        goto done;
    }
    const double s = op->sigma_y > 0 ? op->sigma_y : 1.0 / 255;
    for (int64_t b = 0; b < B; b++) {
        double ss = 0;
        for (int64_t i = b * M; i < (b + 1) * M; i++) {
            const double d = (double)y[i] - ax[i];
            ss += d * d;
        }
        const double want = ss / (2 * s * s);
        if (!(fabs(v[b] - want) <= 1e-9 * want)) {
            snprintf(msg, len, "value[%lld] = %.12g, want %.12g", (long long)b, v[b], want);
            goto done;
        }
    }
    double gmax = 0;
    for (int64_t i = 0; i < n; i++) gmax = fmax(gmax, fabs(g[i]));
    for (int q = 0; q < 60; q++) {
        const int64_t j = (q * 7919) % n, b = j / D;
        const float x0 = x[j];
        x[j] = x0 + 0.5f;
        const double xp = x[j];
        elbo_measurement_energy_fn(&me, x, B, vp, NULL);
        x[j] = x0 - 0.5f;
        const double xm = x[j];
        elbo_measurement_energy_fn(&me, x, B, vm, NULL);
        x[j] = x0;
        const double fd = (vp[b] - vm[b]) / (xp - xm);
        if (!(fabs(fd - g[j]) <= 1e-5 * gmax + 1e-5 * fabs(fd))) {
            snprintf(msg, len, "grad[%lld] = %.9g, central difference %.9g (max |grad| %.3g)",
                     (long long)j, g[j], fd, gmax);
            goto done;
        }
        /* the other images' energies do not move */
        for (int64_t bb = 0; bb < B; bb++)
            if (bb != b && (vp[bb] != v[bb] || vm[bb] != v[bb])) {
                snprintf(msg, len, "x[%lld] changed the energy of image %lld", (long long)j,
                         (long long)bb);
                goto done;
            }
    }
    ok = 1;
done:
    free(x), free(g), free(y), free(work), free(ax), free(v), free(vp), free(vm);
    return ok;
}

TEST(inverse_measurement_energy_grad) {
    char msg[256];
    for (int k = 0; k < ELBO_OP_COUNT; k++) {
        elbo_operator op;
        CHECK(make_op(&op, (elbo_op_kind)k, 2, 8, 10) == ELBO_OK);
        CHECK_MSG(energy_fd_ok(&op, 3, msg, sizeof msg), "%s, sigma_y 0.3: %s",
                  elbo_op_kind_name(op.kind), msg);
        op.sigma_y = 0; /* the noiseless weight 1 / (2 (1/255)^2) */
        CHECK_MSG(energy_fd_ok(&op, 3, msg, sizeof msg), "%s, sigma_y 0: %s",
                  elbo_op_kind_name(op.kind), msg);
    }
}

TEST(inverse_measurement_energy_args) {
    elbo_operator op;
    CHECK(make_op(&op, ELBO_OP_DENOISE, 1, 4, 4) == ELBO_OK);
    float x[16] = {0}, y[16] = {0}, work[16];
    double v;
    elbo_measurement_energy me = {&op, y, NULL};
    CHECK_ERR(elbo_measurement_energy_fn(&me, x, 1, &v, NULL), ELBO_ERR_ARG, "work");
    me.work = work;
    me.y = NULL;
    CHECK_ERR(elbo_measurement_energy_fn(&me, x, 1, &v, NULL), ELBO_ERR_ARG, "y is NULL");
    me.y = y;
    me.op = NULL;
    CHECK_ERR(elbo_measurement_energy_fn(&me, x, 1, &v, NULL), ELBO_ERR_ARG, "op");
    CHECK_ERR(elbo_measurement_energy_fn(NULL, x, 1, &v, NULL), ELBO_ERR_ARG, "user");
}

/* A linear softmax classifier p(k | x) = softmax(W x + b)_k of D = 12 inputs and K = 3
 * classes; grad_x log p(k | x) = W_k - sum_j p_j W_j. It records n and lvl. */
enum { LC_D = 12, LC_K = 3 };
typedef struct {
    double W[LC_K][LC_D], b[LC_K];
    int64_t last_n;
    int lvl_null;
} lin_clf;

static elbo_status lin_clf_grad(void *user, const float *x, int64_t n, const elbo_noise_level *lvl,
                                const int32_t *labels, float *grad, double *log_prob) {
    lin_clf *c = user;
    c->last_n = n;
    c->lvl_null = lvl == NULL;
    for (int64_t q = 0; q < n / LC_D; q++) {
        double z[LC_K], m = -INFINITY, s = 0, p[LC_K];
        for (int k = 0; k < LC_K; k++) {
            z[k] = c->b[k];
            for (int i = 0; i < LC_D; i++) z[k] += c->W[k][i] * x[q * LC_D + i];
            m = fmax(m, z[k]);
        }
        for (int k = 0; k < LC_K; k++) s += exp(z[k] - m);
        for (int k = 0; k < LC_K; k++) p[k] = exp(z[k] - m) / s;
        const int y = labels[q];
        if (log_prob) log_prob[q] = z[y] - m - log(s);
        for (int i = 0; i < LC_D; i++) {
            double gi = c->W[y][i];
            for (int k = 0; k < LC_K; k++) gi -= p[k] * c->W[k][i];
            grad[q * LC_D + i] = (float)gi;
        }
    }
    return ELBO_OK;
}

TEST(inverse_constraint_energy_grad) {
    enum { B = 3, n = B * LC_D };
    lin_clf clf;
    float wv[LC_K * LC_D + LC_K];
    randn(wv, LC_K * LC_D + LC_K, 21);
    for (int k = 0; k < LC_K; k++) {
        for (int i = 0; i < LC_D; i++) clf.W[k][i] = wv[k * LC_D + i];
        clf.b[k] = wv[LC_K * LC_D + k];
    }
    const int32_t labels[B] = {2, 0, 1};
    elbo_constraint_energy ce = {lin_clf_grad, &clf, labels, 1.7, LC_D};
    float x[n], g[n];
    double v[B], v2[B], vp[B], vm[B];
    randn(x, n, 22);
    for (int i = 0; i < n; i++) x[i] *= 0.5f;
    CHECK(elbo_constraint_energy_fn(&ce, x, B, v, g) == ELBO_OK);
    CHECK(clf.last_n == n && clf.lvl_null);
    /* the value: -weight log softmax(W x + b)[k] */
    for (int b = 0; b < B; b++) {
        double z[LC_K], s = 0;
        for (int k = 0; k < LC_K; k++) {
            z[k] = clf.b[k];
            for (int i = 0; i < LC_D; i++) z[k] += clf.W[k][i] * x[b * LC_D + i];
            s += exp(z[k]);
        }
        CHECK_NEAR(v[b], -1.7 * (z[labels[b]] - log(s)), 1e-12 * fabs(v[b]) + 1e-14);
    }
    /* gradient against central differences, h = 2e-4 (truncation h^2 E''' / 6 ~ 1e-8) */
    for (int j = 0; j < n; j++) {
        const int b = j / LC_D;
        const float x0 = x[j];
        x[j] = x0 + 2e-4f;
        const double xp = x[j];
        CHECK(elbo_constraint_energy_fn(&ce, x, B, vp, NULL) == ELBO_OK);
        x[j] = x0 - 2e-4f;
        const double xm = x[j];
        CHECK(elbo_constraint_energy_fn(&ce, x, B, vm, NULL) == ELBO_OK);
        x[j] = x0;
        const double fd = (vp[b] - vm[b]) / (xp - xm);
        CHECK_NEAR(g[j], fd, 1e-6 + 1e-6 * fabs(fd));
    }
    /* value without grad (scratch inside), grad without value */
    CHECK(elbo_constraint_energy_fn(&ce, x, B, v2, NULL) == ELBO_OK);
    for (int b = 0; b < B; b++) CHECK(v2[b] == v[b]);
    float g2[n];
    CHECK(elbo_constraint_energy_fn(&ce, x, B, NULL, g2) == ELBO_OK);
    CHECK(memcmp(g, g2, sizeof g) == 0);
    ce.dim = 0;
    CHECK_ERR(elbo_constraint_energy_fn(&ce, x, B, v, g), ELBO_ERR_ARG, "dim");
    ce.dim = LC_D;
    ce.weight = 0;
    CHECK_ERR(elbo_constraint_energy_fn(&ce, x, B, v, g), ELBO_ERR_ARG, "weight");
    ce.weight = 1;
    ce.labels = NULL;
    CHECK_ERR(elbo_constraint_energy_fn(&ce, x, B, v, g), ELBO_ERR_ARG, "labels");
}

/* ---- masks ----------------------------------------------------------------------------------- */

TEST(inverse_mask_geometry) {
    float m[28 * 28];
    /* 4 x 4 box: rows 1..2 x columns 1..2 missing */
    static const float box44[16] = {1, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 1, 1, 1};
    CHECK(elbo_mask_make(ELBO_MASK_BOX, 4, 4, 0, 0, m) == ELBO_OK);
    CHECK(memcmp(m, box44, sizeof box44) == 0);
    /* 5 x 6 box: 2 x 3 missing at rows 1..2, columns 1..3 */
    static const float box56[30] = {1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0,
                                    0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(elbo_mask_make(ELBO_MASK_BOX, 5, 6, 0, 0, m) == ELBO_OK);
    CHECK(memcmp(m, box56, sizeof box56) == 0);
    /* 3 x 5 half: columns 2..4 missing */
    static const float half35[15] = {1, 1, 0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0};
    CHECK(elbo_mask_make(ELBO_MASK_HALF, 3, 5, 0, 0, m) == ELBO_OK);
    CHECK(memcmp(m, half35, sizeof half35) == 0);
    /* 28 x 28 box: the 14 x 14 square at rows and columns 7..20 */
    CHECK(elbo_mask_make(ELBO_MASK_BOX, 28, 28, 0, 0, m) == ELBO_OK);
    int missing = 0;
    for (int i = 0; i < 28 * 28; i++) missing += m[i] == 0.0f;
    CHECK(missing == 196);
    CHECK(m[7 * 28 + 7] == 0 && m[20 * 28 + 20] == 0 && m[7 * 28 + 20] == 0);
    CHECK(m[6 * 28 + 13] == 1 && m[21 * 28 + 13] == 1 && m[13 * 28 + 6] == 1 && m[13 * 28 + 21] == 1);
    CHECK(elbo_mask_make(ELBO_MASK_HALF, 28, 28, 0, 0, m) == ELBO_OK);
    missing = 0;
    for (int i = 0; i < 28 * 28; i++) missing += m[i] == 0.0f;
    CHECK(missing == 28 * 14 && m[13] == 1 && m[14] == 0);
    CHECK_ERR(elbo_mask_make(ELBO_MASK_BOX, 0, 4, 0, 0, m), ELBO_ERR_ARG, "size");
    CHECK_ERR(elbo_mask_make(ELBO_MASK_BOX, 4, 4, 0, 0, NULL), ELBO_ERR_ARG, "mask");
    CHECK_ERR(elbo_mask_make((elbo_mask_kind)7, 4, 4, 0, 0, m), ELBO_ERR_ARG, "kind");
}

/* The kept count of a 64 x 64 random mask is Binomial(4096, keep): within 5 standard
 * deviations; keep 0 and 1 are all-missing and all-observed; the seed decides the mask. */
TEST(inverse_mask_random) {
    enum { N = 64 * 64 };
    static float m[N], m2[N];
    const double keeps[3] = {0.1, 0.3, 0.75};
    for (int k = 0; k < 3; k++) {
        CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, keeps[k], 42, m) == ELBO_OK);
        int kept = 0;
        for (int i = 0; i < N; i++) {
            CHECK(m[i] == 0.0f || m[i] == 1.0f);
            kept += m[i] == 1.0f;
        }
        const double mean = N * keeps[k], sd = sqrt(N * keeps[k] * (1 - keeps[k]));
        CHECK_MSG(fabs(kept - mean) <= 5 * sd, "keep %g: %d kept of %d (mean %g, sd %g)", keeps[k],
                  kept, N, mean, sd);
    }
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 0.5, 42, m) == ELBO_OK);
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 0.5, 42, m2) == ELBO_OK);
    CHECK(memcmp(m, m2, sizeof m) == 0);
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 0.5, 43, m2) == ELBO_OK);
    CHECK(memcmp(m, m2, sizeof m) != 0);
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 0.0, 1, m) == ELBO_OK);
    for (int i = 0; i < N; i++) CHECK(m[i] == 0.0f);
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 1.0, 1, m) == ELBO_OK);
    for (int i = 0; i < N; i++) CHECK(m[i] == 1.0f);
    CHECK_ERR(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, 1.5, 1, m), ELBO_ERR_ARG, "keep");
    CHECK_ERR(elbo_mask_make(ELBO_MASK_RANDOM, 64, 64, NAN, 1, m), ELBO_ERR_ARG, "keep");
}

TEST(inverse_mask_png) {
    tmpdir td;
    CHECK(td_make_tag(&td, "invmask"));
    enum { H = 3, W = 4 };
    /* gray: observed where >= 128 */
    const uint8_t gray[H * W] = {0, 127, 128, 255, 255, 200, 12, 130, 127, 128, 1, 254};
    const float want[H * W] = {0, 0, 1, 1, 1, 1, 0, 1, 0, 1, 0, 1};
    float m[H * W];
    char path[160];
    snprintf(path, sizeof path, "%s", td_file(&td, "gray.png"));
    CHECK(elbo_png_write(path, gray, H, W, 1) == ELBO_OK);
    elbo_status st = elbo_mask_load_png(path, H, W, m);
    CHECK(st == ELBO_OK);
    CHECK(memcmp(m, want, sizeof m) == 0);
    /* RGB: the first channel decides (the others say the opposite) */
    uint8_t rgb[H * W * 3];
    for (int i = 0; i < H * W; i++) {
        rgb[3 * i] = gray[i];
        rgb[3 * i + 1] = rgb[3 * i + 2] = (uint8_t)(255 - gray[i]);
    }
    snprintf(path, sizeof path, "%s", td_file(&td, "rgb.png"));
    CHECK(elbo_png_write(path, rgb, H, W, 3) == ELBO_OK);
    memset(m, 0x7f, sizeof m);
    CHECK(elbo_mask_load_png(path, H, W, m) == ELBO_OK);
    CHECK(memcmp(m, want, sizeof m) == 0);
    /* wrong size: ELBO_ERR_FORMAT naming the file */
    elbo_clear_error();
    st = elbo_mask_load_png(path, W, H, m);
    int ok = st == ELBO_ERR_FORMAT && strstr(elbo_last_error(), path);
    /* a missing file: ELBO_ERR_IO naming it */
    char missing[160];
    snprintf(missing, sizeof missing, "%s", td_file(&td, "none.png"));
    elbo_clear_error();
    st = elbo_mask_load_png(missing, H, W, m);
    ok = ok && st == ELBO_ERR_IO && strstr(elbo_last_error(), missing);
    td_remove(&td);
    CHECK_MSG(ok, "errors: last status %d, message \"%s\"", (int)st, elbo_last_error());
    CHECK_ERR(elbo_mask_load_png(NULL, H, W, m), ELBO_ERR_ARG, "path");
}

TEST(inverse_op_init_errors) {
    elbo_operator op;
    CHECK(make_op(&op, ELBO_OP_SUPERRES, 1, 28, 28) == ELBO_OK);
    op.factor = 3;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "factor 3");
    op.factor = 0;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "factor");
    float m[16] = {1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0.5f, 1, 0, 1, 0};
    CHECK(make_op(&op, ELBO_OP_INPAINT, 1, 4, 4) == ELBO_OK);
    op.mask = m;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "mask[11]");
    op.mask = NULL;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "mask");
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 1, 8, 8) == ELBO_OK);
    op.blur_sigma = 0;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "blur_sigma");
    op.blur_sigma = -1;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "blur_sigma");
    op.blur_sigma = 1;
    op.blur_radius = ELBO_OP_MAX_RADIUS + 1;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "blur_radius");
    op.blur_radius = 0;
    op.sigma_y = -0.1;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "sigma_y");
    op.sigma_y = 0;
    op.c = 0;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "shape");
    CHECK_ERR(elbo_op_init(NULL), ELBO_ERR_ARG, "op");
    op.c = 1;
    op.kind = ELBO_OP_COUNT;
    CHECK_ERR(elbo_op_init(&op), ELBO_ERR_ARG, "kind");
    /* the calls' own arguments */
    float x[64], y[64];
    elbo_rng rng;
    elbo_rng_init(&rng, 1);
    CHECK(make_op(&op, ELBO_OP_DEBLUR, 1, 8, 8) == ELBO_OK);
    CHECK_ERR(elbo_op_forward(&op, NULL, 1, y), ELBO_ERR_ARG, "x is NULL");
    CHECK_ERR(elbo_op_forward(&op, x, 1, NULL), ELBO_ERR_ARG, "y is NULL");
    CHECK_ERR(elbo_op_adjoint(&op, NULL, 1, x), ELBO_ERR_ARG, "r is NULL");
    CHECK_ERR(elbo_op_forward(NULL, x, 1, y), ELBO_ERR_ARG, "op");
    CHECK_ERR(elbo_op_forward(&op, x, -1, y), ELBO_ERR_ARG, "B = -1");
    CHECK_ERR(elbo_op_measure(&op, x, 1, NULL, y), ELBO_ERR_ARG, "rng");
    op.radius = 0; /* as if elbo_op_init was not called */
    CHECK_ERR(elbo_op_forward(&op, x, 1, y), ELBO_ERR_ARG, "elbo_op_init");
}

/* ---- metrics ------------------------------------------------------------------------------- */

TEST(inverse_psnr) {
    /* 4 of 16 pixels off by 1/4: MSE = 4 (1/16) / 16 = 1/64, PSNR = 10 log10 64 */
    float x[16] = {0}, ref[16] = {0};
    x[1] = x[6] = 0.25f;
    x[11] = x[15] = -0.25f;
    CHECK_NEAR(elbo_psnr(x, ref, 16), 10 * log10(64.0), 1e-12);
    CHECK_NEAR(elbo_psnr(x, ref, 16), 18.061799739838872, 1e-12);
    CHECK(isinf(elbo_psnr(x, x, 16)) && elbo_psnr(x, x, 16) > 0);
    CHECK(isnan(elbo_psnr(NULL, ref, 16)) && isnan(elbo_psnr(x, ref, 0)));
}

TEST(inverse_ssim_fixture) {
    fx_file f;
    CHECK(fx_load(&f, "inv_ssim") == 0);
    static const char *cases[] = {"two", "rand"};
    for (int k = 0; k < 2; k++) {
        char nx[32], nr[32], ns[32];
        snprintf(nx, sizeof nx, "%s.x", cases[k]);
        snprintf(nr, sizeof nr, "%s.ref", cases[k]);
        snprintf(ns, sizeof ns, "%s.ssim", cases[k]);
        const fx_entry *ex = fx_get(&f, nx), *er = fx_get(&f, nr), *es = fx_get(&f, ns);
        CHECK_MSG(ex && er && es && ex->ndim == 3, "fixture entries of %s missing", cases[k]);
        double s = 0, s1 = 0;
        elbo_status st = elbo_ssim(ex->data, er->data, ex->shape[0], ex->shape[1], ex->shape[2], &s);
        if (st == ELBO_OK)
            st = elbo_ssim(ex->data, ex->data, ex->shape[0], ex->shape[1], ex->shape[2], &s1);
        const double want = ((const float *)es->data)[0];
        int ok = st == ELBO_OK && fabs(s - want) <= 1e-6 && fabs(s1 - 1) <= 1e-12;
        if (!ok) {
            test_fail(__FILE__, __LINE__, "%s: ssim %.9g want %.9g, ssim(x, x) = %.15g (%s)",
                      cases[k], s, want, s1, elbo_last_error());
            fx_free(&f);
            return;
        }
    }
    fx_free(&f);
    float a[10 * 12] = {0};
    double s;
    CHECK_ERR(elbo_ssim(a, a, 1, 10, 12, &s), ELBO_ERR_ARG, "(1, 10, 12)");
    CHECK_ERR(elbo_ssim(a, NULL, 1, 10, 12, &s), ELBO_ERR_ARG, "ref");
    CHECK_ERR(elbo_ssim(a, a, 1, 10, 12, NULL), ELBO_ERR_ARG, "out");
}

/* ---- baselines ----------------------------------------------------------------------------- */

TEST(inverse_bicubic_fixture) {
    fx_file f;
    CHECK(fx_load(&f, "inv_bicubic") == 0);
    static const char *cases[] = {"f2", "f4"};
    const int factors[2] = {2, 4};
    static float x[4 * 28 * 28], y4[4 * 14 * 14];
    for (int k = 0; k < 2; k++) {
        char ny[32], nx[32];
        snprintf(ny, sizeof ny, "%s.y", cases[k]);
        snprintf(nx, sizeof nx, "%s.x", cases[k]);
        const fx_entry *ey = fx_get(&f, ny), *ex = fx_get(&f, nx);
        CHECK_MSG(ey && ex && ex->numel == 28 * 28, "fixture entries of %s missing", cases[k]);
        CHECK(elbo_upsample_bicubic(ey->data, 1, 1, 28, 28, factors[k], x) == ELBO_OK);
        char cc_msg[256];
        int ok = fx_close(x, ex->data, 28 * 28, 1e-6f, 1e-6f, cc_msg, sizeof cc_msg);
        if (!ok) {
            test_fail(__FILE__, __LINE__, "interpolate bicubic x%d: %s", factors[k], cc_msg);
            fx_free(&f);
            return;
        }
        /* B = 2, c = 2: the fixture image and its negation in each channel, upsampled apart */
        const int64_t n = ey->numel;
        for (int q = 0; q < 4; q++)
            for (int64_t i = 0; i < n; i++)
                y4[q * n + i] = (q & 1 ? -1.0f : 1.0f) * ((const float *)ey->data)[i];
        CHECK(elbo_upsample_bicubic(y4, 2, 2, 28, 28, factors[k], x) == ELBO_OK);
        for (int q = 0; q < 4; q++)
            for (int i = 0; i < 28 * 28; i++)
                CHECK_NEAR(x[q * 784 + i], (q & 1 ? -1.0 : 1.0) * ((const float *)ex->data)[i],
                           1e-6);
    }
    fx_free(&f);
    /* factor 1 is the identity */
    float y[6 * 5], xi[6 * 5];
    randn(y, 30, 31);
    CHECK(elbo_upsample_bicubic(y, 1, 1, 6, 5, 1, xi) == ELBO_OK);
    CHECK(memcmp(y, xi, sizeof y) == 0);
    CHECK_ERR(elbo_upsample_bicubic(y, 1, 1, 28, 28, 3, x), ELBO_ERR_ARG, "factor 3");
    CHECK_ERR(elbo_upsample_bicubic(NULL, 1, 1, 28, 28, 2, x), ELBO_ERR_ARG, "y is NULL");
}

TEST(inverse_fill_mean) {
    /* 2 x 2, observed pixels 0 and 2; B = 2, c = 2 */
    const float mask[4] = {1, 0, 1, 0};
    const float y[16] = {1, 9, 3, 9, -1, 5, 0.5f, 7, /* image 0 */
                         4, 0, 8, 0, 2, 0, 2, 0};    /* image 1 */
    const float want[16] = {1, 2, 3, 2, -1, -0.25f, 0.5f, -0.25f, 4, 6, 8, 6, 2, 2, 2, 2};
    float x[16];
    CHECK(elbo_fill_mean(y, mask, 2, 2, 2, 2, x) == ELBO_OK);
    CHECK(memcmp(x, want, sizeof x) == 0);
    const float none[4] = {0, 0, 0, 0}, half[4] = {1, 0.5f, 0, 1};
    CHECK_ERR(elbo_fill_mean(y, none, 2, 2, 2, 2, x), ELBO_ERR_ARG, "no observed");
    CHECK_ERR(elbo_fill_mean(y, half, 2, 2, 2, 2, x), ELBO_ERR_ARG, "mask[1]");
    CHECK_ERR(elbo_fill_mean(y, NULL, 2, 2, 2, 2, x), ELBO_ERR_ARG, "mask");
}

/* The source pixel of each output of a fill_nearest over y = 0, 1, 2, ... (y[i] = i). */
static elbo_status nearest_src(const float *mask, int64_t h, int64_t w, int *src) {
    float y[32 * 32], x[32 * 32];
    for (int i = 0; i < 32 * 32; i++) y[i] = (float)i;
    elbo_status st = elbo_fill_nearest(y, mask, 1, 1, h, w, x);
    for (int64_t i = 0; i < h * w; i++) src[i] = (int)x[i];
    return st;
}

TEST(inverse_fill_nearest) {
    int src[32 * 32];
    /* 3 x 4, observed (0, 0) and (2, 3): distances worked by hand */
    const float m1[12] = {1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    const int s1[12] = {0, 0, 0, 11, 0, 0, 11, 11, 0, 11, 11, 11};
    CHECK(nearest_src(m1, 3, 4, src) == ELBO_OK);
    for (int i = 0; i < 12; i++) CHECK_MSG(src[i] == s1[i], "3x4: pixel %d from %d, want %d", i, src[i], s1[i]);
    /* ties: 1 x 5 observed at columns 0 and 4, the middle goes left */
    const float m2[5] = {1, 0, 0, 0, 1};
    const int s2[5] = {0, 0, 0, 4, 4};
    CHECK(nearest_src(m2, 1, 5, src) == ELBO_OK);
    for (int i = 0; i < 5; i++) CHECK_MSG(src[i] == s2[i], "1x5: pixel %d from %d, want %d", i, src[i], s2[i]);
    /* ties across rows: 3 x 3 observed at (0, 2) = 2 and (2, 0) = 6; (1, 1), (0, 0) and
     * (2, 2) are equidistant (2, 4, 4) and take 2, the first in row-major order */
    const float m3[9] = {0, 0, 1, 0, 0, 0, 1, 0, 0};
    const int s3[9] = {2, 2, 2, 6, 2, 2, 6, 6, 2};
    CHECK(nearest_src(m3, 3, 3, src) == ELBO_OK);
    for (int i = 0; i < 9; i++) CHECK_MSG(src[i] == s3[i], "3x3: pixel %d from %d, want %d", i, src[i], s3[i]);
    /* a random 17 x 13 mask (keep 0.1) against brute force over all observed pixels */
    enum { H = 17, W = 13 };
    float m4[H * W];
    CHECK(elbo_mask_make(ELBO_MASK_RANDOM, H, W, 0.1, 77, m4) == ELBO_OK);
    CHECK(nearest_src(m4, H, W, src) == ELBO_OK);
    for (int p = 0; p < H * W; p++) {
        int best = -1, bd = 1 << 30;
        for (int q = 0; q < H * W; q++) {
            if (m4[q] == 0.0f) continue;
            const int di = p / W - q / W, dj = p % W - q % W, d = di * di + dj * dj;
            if (d < bd) bd = d, best = q; /* q ascending: the first of equals stays */
        }
        CHECK_MSG(src[p] == best, "17x13: pixel %d from %d, brute force %d", p, src[p], best);
    }
    /* channels and images keep their own values */
    float y[2 * 2 * 12], x[2 * 2 * 12];
    for (int i = 0; i < 48; i++) y[i] = (float)(100 * (i / 12) + i % 12);
    CHECK(elbo_fill_nearest(y, m1, 2, 2, 3, 4, x) == ELBO_OK);
    for (int i = 0; i < 48; i++) CHECK(x[i] == (float)(100 * (i / 12) + s1[i % 12]));
    const float none[12] = {0};
    CHECK_ERR(elbo_fill_nearest(y, none, 2, 2, 3, 4, x), ELBO_ERR_ARG, "no observed");
    CHECK_ERR(elbo_fill_nearest(y, m1, 2, 2, 3, 4, NULL), ELBO_ERR_ARG, "x is NULL");
}

TEST(inverse_gaussian_filter) {
    enum { B = 2, C = 3, H = 9, W = 11, N = B * C * H * W };
    static float x[N], a[N], b[N];
    randn(x, N, 41);
    const double sigmas[3] = {0.7, 1.0, 2.5};
    for (int k = 0; k < 3; k++) {
        elbo_operator op;
        memset(&op, 0, sizeof op);
        op.kind = ELBO_OP_DEBLUR;
        op.c = C, op.h = H, op.w = W, op.blur_sigma = sigmas[k];
        CHECK(elbo_op_init(&op) == ELBO_OK);
        CHECK(elbo_op_forward(&op, x, B, a) == ELBO_OK);
        CHECK(elbo_gaussian_filter(x, B, C, H, W, sigmas[k], b) == ELBO_OK);
        CHECK(memcmp(a, b, sizeof a) == 0);
    }
    /* a constant image stays constant (the kernel sums to 1) */
    for (int i = 0; i < N; i++) a[i] = 0.25f;
    CHECK(elbo_gaussian_filter(a, B, C, H, W, 1.3, b) == ELBO_OK);
    for (int i = 0; i < N; i++) CHECK_NEAR(b[i], 0.25, 1e-7);
    CHECK_ERR(elbo_gaussian_filter(x, B, C, H, W, 0.0, b), ELBO_ERR_ARG, "sigma 0");
    CHECK_ERR(elbo_gaussian_filter(x, B, C, H, W, -2.0, b), ELBO_ERR_ARG, "sigma");
    CHECK_ERR(elbo_gaussian_filter(x, B, C, H, W, NAN, b), ELBO_ERR_ARG, "sigma");
    CHECK_ERR(elbo_gaussian_filter(x, B, C, H, W, 1.0, NULL), ELBO_ERR_ARG, "out is NULL");
}
