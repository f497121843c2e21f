/* Scalar ops, unary ops and activations: forward against double formulas, finite-difference
 * gradients, stability at large |x|. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    int id;
    float lo, hi; /* input range for the checks (inside the domain, away from kinks) */
} uop;

enum {
    U_SCALE,
    U_ADDS,
    U_AFFINE,
    U_NEG,
    U_POW,
    U_POW2,
    U_EXP,
    U_LOG,
    U_SQRT,
    U_SQUARE,
    U_ABS,
    U_CLAMP,
    U_RELU,
    U_SILU,
    U_GELU,
    U_SIGMOID,
    U_TANH,
    U_SOFTPLUS,
    U_ELU,
    U_SIN,
    U_COS,
    U_COUNT
};

static const uop UOPS[U_COUNT] = {
    {"scale", U_SCALE, -3, 3},     {"add_scalar", U_ADDS, -3, 3},  {"affine", U_AFFINE, -3, 3},
    {"neg", U_NEG, -3, 3},         {"pow_scalar", U_POW, 0.2f, 3}, {"pow_scalar2", U_POW2, -3, 3},
    {"exp", U_EXP, -3, 3},         {"log", U_LOG, 0.1f, 5},        {"sqrt", U_SQRT, 0.1f, 5},
    {"square", U_SQUARE, -3, 3},   {"abs", U_ABS, -3, 3},          {"clamp", U_CLAMP, -3, 3},
    {"relu", U_RELU, -3, 3},       {"silu", U_SILU, -5, 5},        {"gelu", U_GELU, -5, 5},
    {"sigmoid", U_SIGMOID, -6, 6}, {"tanh", U_TANH, -3, 3},        {"softplus", U_SOFTPLUS, -6, 6},
    {"elu", U_ELU, -3, 3},         {"sin", U_SIN, -7, 7},          {"cos", U_COS, -7, 7},
};

static elbo_tensor *apply(elbo_ctx *ctx, int id, elbo_tensor *x) {
    switch (id) {
    case U_SCALE:
        return elbo_scale(ctx, x, -1.5f);
    case U_ADDS:
        return elbo_add_scalar(ctx, x, 0.75f);
    case U_AFFINE:
        return elbo_affine(ctx, x, 2.5f, -1.0f);
    case U_NEG:
        return elbo_neg(ctx, x);
    case U_POW:
        return elbo_pow_scalar(ctx, x, 1.7f);
    case U_POW2:
        return elbo_pow_scalar(ctx, x, 2.0f);
    case U_EXP:
        return elbo_exp(ctx, x);
    case U_LOG:
        return elbo_log(ctx, x);
    case U_SQRT:
        return elbo_sqrt(ctx, x);
    case U_SQUARE:
        return elbo_square(ctx, x);
    case U_ABS:
        return elbo_abs(ctx, x);
    case U_CLAMP:
        return elbo_clamp(ctx, x, -1.0f, 1.5f);
    case U_RELU:
        return elbo_relu(ctx, x);
    case U_SILU:
        return elbo_silu(ctx, x);
    case U_GELU:
        return elbo_gelu(ctx, x);
    case U_SIGMOID:
        return elbo_sigmoid(ctx, x);
    case U_TANH:
        return elbo_tanh(ctx, x);
    case U_SOFTPLUS:
        return elbo_softplus(ctx, x);
    case U_SIN:
        return elbo_sin(ctx, x);
    case U_COS:
        return elbo_cos(ctx, x);
    default:
        return elbo_elu(ctx, x, 0.7f);
    }
}

/* The reference in double, written from the definitions. */
static double ref(int id, double x) {
    switch (id) {
    case U_SCALE:
        return -1.5 * x;
    case U_ADDS:
        return x + 0.75;
    case U_AFFINE:
        return 2.5 * x - 1.0;
    case U_NEG:
        return -x;
    case U_POW:
        return pow(x, 1.7);
    case U_POW2:
        return x * x;
    case U_EXP:
        return exp(x);
    case U_LOG:
        return log(x);
    case U_SQRT:
        return sqrt(x);
    case U_SQUARE:
        return x * x;
    case U_ABS:
        return fabs(x);
    case U_CLAMP:
        return x < -1 ? -1 : (x > 1.5 ? 1.5 : x);
    case U_RELU:
        return x > 0 ? x : 0;
    case U_SILU:
        return x / (1 + exp(-x));
    case U_GELU:
        return 0.5 * x * erfc(-x / sqrt(2.0)); /* no 1 + erf cancellation */
    case U_SIGMOID:
        return 1 / (1 + exp(-x));
    case U_TANH:
        return tanh(x);
    case U_SOFTPLUS:
        return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x)); /* (threshold: < 1e-9) */
    case U_SIN:
        return sin(x);
    case U_COS:
        return cos(x);
    default:
        return x > 0 ? x : 0.7 * expm1(x);
    }
}

/* Inputs spread over [lo, hi], nudged off the kinks of abs / relu (0) and clamp (-1, 1.5). */
static void inputs(const uop *u, float *x, int n) {
    for (int i = 0; i < n; i++) {
        float v = u->lo + (u->hi - u->lo) * (i + 0.5f) / n;
        if (fabsf(v) < 0.05f) v = 0.05f;
        if (fabsf(v + 1.0f) < 0.05f) v = -1.05f;
        if (fabsf(v - 1.5f) < 0.05f) v = 1.55f;
        x[i] = (i % 2 == 0) ? v : u->lo + u->hi - v; /* not monotone in memory */
        if (fabsf(x[i]) < 0.05f) x[i] = -0.05f;
    }
}

TEST(unary_forward_matches_double) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    enum { N = 37 };
    for (int k = 0; k < U_COUNT; k++) {
        elbo_tensor *x = elbo_tensor_new1(ctx, N);
        inputs(&UOPS[k], x->data, N);
        elbo_tensor *y = apply(ctx, UOPS[k].id, x);
        CHECK(y && y->numel == N && y->ndim == 1);
        for (int i = 0; i < N; i++) {
            double r = ref(UOPS[k].id, x->data[i]);
            /* float evaluation: a few ulps of the result (and of tanh/erf near 0). */
            CHECK_MSG(fabs(y->data[i] - r) <= 4e-7 * fabs(r) + 1e-7, "%s(%g) = %.9g, want %.9g",
                      UOPS[k].name, (double)x->data[i], (double)y->data[i], r);
        }
    }
    elbo_ctx_free(ctx);
}

static elbo_tensor *build_unary(elbo_ctx *ctx, elbo_tensor **in, void *u) {
    return apply(ctx, *(const int *)u, in[0]);
}

TEST(grad_unary_all) {
    enum { N = 24 };
    float x[N];
    for (int k = 0; k < U_COUNT; k++) {
        inputs(&UOPS[k], x, N);
        /* eps 1e-3 in float: truncation O(eps^2 f''') and rounding ~1e-7/eps stay below
         * 1e-3 relative for these smooth functions on the chosen ranges. */
        gc_spec s = {
            .n_in = 1, .ndim = {2}, .shape = {{4, 6}}, .init = {x}, .atol = 2e-3f, .rtol = 2e-3f};
        CHECK_GRAD(UOPS[k].name, build_unary, (void *)&UOPS[k].id, &s);
    }
}

/* The gradient of clamp is 1 on [lo, hi] and 0 outside; of abs, the sign. Exact values. */
TEST(unary_clamp_abs_grad_values) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_new1(ctx, 5);
    float v[5] = {-2, -1, 0.5f, 1.5f, 3};
    memcpy(x->data, v, sizeof v);
    elbo_tensor_requires_grad(x, 1);
    CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_clamp(ctx, x, -1, 1.5f))) == ELBO_OK);
    float want[5] = {0, 1, 1, 1, 0};
    for (int i = 0; i < 5; i++) CHECK(x->grad[i] == want[i]);
    elbo_ctx_reset(ctx); /* a fresh tape for the second backward */
    x = elbo_tensor_new1(ctx, 5);
    memcpy(x->data, v, sizeof v);
    elbo_tensor_requires_grad(x, 1);
    CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_abs(ctx, x))) == ELBO_OK);
    float want2[5] = {-1, -1, 1, 1, 1};
    for (int i = 0; i < 5; i++) CHECK(x->grad[i] == want2[i]);
    elbo_ctx_free(ctx);
}

/* Large |x|: no inf/nan, the right limits, softplus's threshold at 20 as torch. */
TEST(unary_stable_at_large_inputs) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    float v[6] = {-200, -89, -30, 25, 89, 200};
    elbo_tensor *x = elbo_tensor_new1(ctx, 6);
    memcpy(x->data, v, sizeof v);
    elbo_tensor_requires_grad(x, 1);
    elbo_tensor *sg = elbo_sigmoid(ctx, x), *sp = elbo_softplus(ctx, x), *si = elbo_silu(ctx, x);
    elbo_tensor *ge = elbo_gelu(ctx, x), *th = elbo_tanh(ctx, x), *el = elbo_elu(ctx, x, 1.0f);
    CHECK(sg && sp && si && ge && th && el);
    for (int i = 0; i < 6; i++) {
        CHECK(isfinite(sg->data[i]) && isfinite(sp->data[i]) && isfinite(si->data[i]) &&
              isfinite(ge->data[i]) && isfinite(th->data[i]) && isfinite(el->data[i]));
        double r = 1 / (1 + exp(-(double)v[i]));
        CHECK_NEAR(sg->data[i], r, 1e-6 * r + 1e-38);
        CHECK_NEAR(sp->data[i], v[i] > 0 ? v[i] : exp(v[i]), 1e-6 * fabs(v[i]) + 1e-40);
    }
    CHECK(sp->data[3] == 25.0f); /* above the threshold softplus is x itself */
    CHECK(si->data[0] == -0.0f && si->data[5] == 200.0f);
    CHECK(ge->data[0] == -0.0f && ge->data[5] == 200.0f);
    elbo_tensor *l = elbo_sum(ctx, elbo_add(ctx, elbo_add(ctx, sg, sp), si));
    CHECK(elbo_backward(ctx, l) == ELBO_OK);
    for (int i = 0; i < 6; i++) CHECK(isfinite(x->grad[i]));
    CHECK_NEAR(x->grad[5], 2.0, 1e-6); /* sigmoid' ~ 0, softplus' = 1, silu' = 1 */
    CHECK_NEAR(x->grad[0], 0.0, 1e-30);
    elbo_ctx_free(ctx);
}

TEST(unary_errors) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 1, (int64_t[]){3});
    CHECK(elbo_clamp(ctx, x, 2, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "clamp") != NULL);
    CHECK(elbo_exp(ctx, NULL) == NULL && elbo_gelu(ctx, NULL) == NULL &&
          elbo_pow_scalar(ctx, NULL, 2) == NULL);
    elbo_ctx_free(ctx);
}

/* Elementwise ops keep the same bits with 1 and 2 threads (independent outputs). */
TEST(unary_deterministic_across_threads) {
    enum { N = 70001 };
    float *out[2];
    int saved = elbo_get_threads();
    for (int t = 0; t < 2; t++) {
        elbo_set_threads(t + 1);
        elbo_ctx *ctx = elbo_ctx_new(1 << 22);
        elbo_tensor *x = elbo_tensor_new1(ctx, N);
        elbo_rng r;
        elbo_rng_init(&r, 5);
        elbo_rng_normal(&r, x->data, N, 0, 2);
        elbo_tensor_requires_grad(x, 1);
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_gelu(ctx, elbo_softplus(ctx, x)))) == ELBO_OK);
        out[t] = malloc(N * sizeof(float));
        memcpy(out[t], x->grad, N * sizeof(float));
        elbo_ctx_free(ctx);
    }
    elbo_set_threads(saved);
    int same = memcmp(out[0], out[1], N * sizeof(float)) == 0;
    free(out[0]);
    free(out[1]);
    CHECK(same);
}

/* The elementwise kernels use their own vectorisable exp/log/tanh/Phi: a dense sweep against
 * double libm, in units in the last place of the float result (|ref| below FLT_MIN: of
 * FLT_MIN's ulp). Bounds: the implementation's documented accuracy (src/ops/vmath.h). */
static double ulps(float got, double ref) {
    if (isinf(ref) || isinf((float)ref)) return got == (float)ref ? 0 : INFINITY;
    double r = fabs(ref) < 1.17549435e-38 ? 1.17549435e-38 : fabs(ref);
    int e;
    frexp(r, &e);
    return fabs(got - ref) / ldexp(1.0, e - 24);
}

typedef struct {
    int id;
    float lo, hi, max_ulp;
} sweep;

TEST(unary_accuracy_dense_sweep) {
    enum { N = 200001 };
    static const sweep SW[] = {
        {U_EXP, -103.0f, 88.7f, 2}, {U_LOG, 1e-30f, 1e30f, 2}, {U_SIGMOID, -80, 80, 3},
        {U_TANH, -12, 12, 2},       {U_SOFTPLUS, -80, 80, 2},  {U_SILU, -80, 80, 3},
        {U_ELU, -20, 5, 3},         {U_LOG, 0.5f, 2.0f, 2},    {U_TANH, -0.7f, 0.7f, 2},
        {U_GELU, -13, 13, 6},
    };
    elbo_ctx *ctx = elbo_ctx_new(1 << 22);
    for (size_t k = 0; k < sizeof SW / sizeof SW[0]; k++) {
        elbo_ctx_reset(ctx);
        elbo_tensor *x = elbo_tensor_new1(ctx, N);
        for (int i = 0; i < N; i++) {
            double t = (double)i / (N - 1);
            /* log: geometric spacing over many binades; others linear */
            x->data[i] = SW[k].id == U_LOG && SW[k].lo < 1e-20f
                             ? (float)exp(log(SW[k].lo) + t * (log(SW[k].hi) - log(SW[k].lo)))
                             : (float)(SW[k].lo + t * (SW[k].hi - SW[k].lo));
        }
        elbo_tensor *y = apply(ctx, SW[k].id, x);
        CHECK(y);
        double worst = 0;
        float wx = 0;
        for (int i = 0; i < N; i++) {
            double u = ulps(y->data[i], ref(SW[k].id, x->data[i]));
            if (u > worst) {
                worst = u;
                wx = x->data[i];
            }
        }
        if (getenv("ELBO_SHOW_ULP")) /* ELBO_SHOW_ULP=1 prints the measured errors */
            printf("    %s [%g, %g]: %.2f ulp at %.9g\n", UOPS[SW[k].id].name, (double)SW[k].lo,
                   (double)SW[k].hi, worst, (double)wx);
        CHECK_MSG(worst <= SW[k].max_ulp, "%s: %.2f ulp at x = %.9g (bound %.0f)",
                  UOPS[SW[k].id].name, worst, (double)wx, (double)SW[k].max_ulp);
    }
    elbo_ctx_free(ctx);
}

/* The 16-lane exp and sigmoid of vmath.h (AVX-512 builds) give the scalar functions' bits in
 * every lane: every 1021st float bit pattern (4.2 million values: normals, subnormals, both
 * zeros, infinities, NaNs), NaN in giving NaN out. */
#include "ops/vmath.h"
TEST(unary_vector_exp_sigmoid_match_scalar_bits) {
#ifdef __AVX512F__
    long bad_exp = 0, bad_sig = 0;
    uint32_t first_bad = 0;
    float in[16] __attribute__((aligned(64))), e16[16] __attribute__((aligned(64))),
        s16[16] __attribute__((aligned(64)));
    for (uint64_t u0 = 0; u0 < (1ull << 32); u0 += 16 * 1021) {
        for (int l = 0; l < 16; l++) in[l] = elbo__f32_from_bits((uint32_t)(u0 + 1021ull * l));
        __m512 v = _mm512_load_ps(in);
        _mm512_store_ps(e16, elbo__expf16(v));
        _mm512_store_ps(s16, elbo__sigmoidf16(v));
        for (int l = 0; l < 16; l++) {
            float e = elbo__expf(in[l]), s = elbo__sigmoidf(in[l]);
            int e_ok = (e != e) ? e16[l] != e16[l] : elbo__f32_bits(e) == elbo__f32_bits(e16[l]);
            int s_ok = (s != s) ? s16[l] != s16[l] : elbo__f32_bits(s) == elbo__f32_bits(s16[l]);
            if (!e_ok || !s_ok) {
                if (!bad_exp && !bad_sig) first_bad = elbo__f32_bits(in[l]);
                bad_exp += !e_ok;
                bad_sig += !s_ok;
            }
        }
    }
    CHECK_MSG(bad_exp == 0 && bad_sig == 0,
              "%ld exp and %ld sigmoid lanes differ from the scalar bits, first at 0x%08x", bad_exp,
              bad_sig, first_bad);
#else
    printf("    (not an AVX-512 build: no 16-lane kernels to compare)\n");
#endif
}

/* The 16-lane log on [1, 2] and log1p on [0, 1] of vmath.h (BCE's log1p(e^-|l|)) give the
 * scalar functions' bits: every 3rd float in [1, 2] (2.8 million) and every 257th in [0, 1] (4.1 million). */
TEST(unary_vector_log_log1p_match_scalar_bits) {
#ifdef __AVX512F__
    long bad_log = 0, bad_log1p = 0;
    uint32_t first_bad = 0;
    float in[16] __attribute__((aligned(64))), o[16] __attribute__((aligned(64)));
    for (int pass = 0; pass < 2; pass++) {
        uint32_t lo = pass == 0 ? 0x3f800000u : 0u, hi = pass == 0 ? 0x40000000u : 0x3f800000u;
        uint32_t step = pass == 0 ? 3u : 257u;
        for (uint64_t u0 = lo; u0 <= hi; u0 += 16ull * step) {
            for (int l = 0; l < 16; l++) {
                uint64_t u = u0 + (uint64_t)l * step;
                in[l] = elbo__f32_from_bits((uint32_t)(u > hi ? hi : u));
            }
            __m512 v = _mm512_load_ps(in);
            _mm512_store_ps(o, pass == 0 ? elbo__logf16_1to2(v) : elbo__log1pf16_0to1(v));
            for (int l = 0; l < 16; l++) {
                float want = pass == 0 ? elbo__logf(in[l]) : elbo__log1pf(in[l]);
                if (elbo__f32_bits(want) != elbo__f32_bits(o[l])) {
                    if (!bad_log && !bad_log1p) first_bad = elbo__f32_bits(in[l]);
                    if (pass == 0)
                        bad_log++;
                    else
                        bad_log1p++;
                }
            }
        }
    }
    CHECK_MSG(bad_log == 0 && bad_log1p == 0,
              "%ld log and %ld log1p lanes differ from the scalar bits, first at 0x%08x", bad_log,
              bad_log1p, first_bad);
#else
    printf("    (not an AVX-512 build: no 16-lane kernels to compare)\n");
#endif
}
