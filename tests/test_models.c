/* Benchmark models (bench-models.md) against PyTorch: tests/fixtures/model_*.bin, written by
 * tools/gen_model_fixtures.py. Weights are not stored: both sides set every parameter from
 * an integer hash of (name, element index) (models_hash_init here, hash_values in
 * tools/torch_models.py), so a fixture holds only inputs, outputs, the loss and a summary of
 * each parameter's gradient: [sum, sum of squares, 16 elements at floor((2k+1) n / 32)].
 *
 * Tolerances. Both sides compute in float32 with different summation orders (OpenBLAS or
 * elbo's tiled GEMM vs ATen, oneDNN convolutions, blocked reductions), so each value carries
 * a relative rounding error of order sqrt(K) 2^-24 per layer (K up to 1152 for the 3x3 convs
 * on 128 channels), compounded over ~25 layers. Observed: outputs within 1e-5 of their RMS,
 * gradients within 2e-5 of their tensor's RMS.
 *   - loss: rtol 1e-4 (one value, a sum of many such terms).
 *   - outputs: atol 1e-4 of the tensor's RMS + rtol 1e-4 per element (10x the observed).
 *   - parameter gradients and d/dx: each sampled element within 1e-3 of the tensor's RMS
 *     (+ rtol 1e-3); the sum within 1e-3 (|sum| + RMS sqrt(n)); the sum of squares rtol
 *     2e-3. Gradients pass back through every layer, and for the UNet through softmax and
 *     GroupNorm, whose backward subtracts near-equal terms, so an element loses more digits
 *     than the forward; 1e-3 is 50x the observed error and still far below what a wrong
 *     term (a missing factor, a transposed weight, a dropped path) produces.
 */
#include "internal.h"
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* ---- the hash initialisation of tools/torch_models.py (hash_values) ------------------ */
static uint32_t fnv1a32(const char *s) {
    uint32_t h = 0x811C9DC5u;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x01000193u;
    return h;
}

/* MurmurHash3 finaliser. */
static uint32_t fmix32(uint32_t h) {
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

static int is_norm_weight(const char *name) {
    const char *last = strrchr(name, '.');
    if (!last || strcmp(last, ".weight")) return 0;
    const char *prev = last;
    while (prev > name && prev[-1] != '.') prev--;
    return strncmp(prev, "norm", 4) == 0;
}

/* Element i: b (u 2^-23 - 1), u = fmix32(fnv1a32(name) + i) >> 8; b = 1/sqrt(fan_in) for
 * ndim >= 2, else 0.1; norm weights + 1. Each step is exact or one float32 rounding, as in
 * numpy float32. */
static void models_hash_init(elbo_paramset *ps) {
    for (int k = 0; k < elbo_paramset_count(ps); k++) {
        elbo_tensor *p = elbo_paramset_get(ps, k);
        uint32_t seed = fnv1a32(p->name);
        float b = p->ndim >= 2 ? (float)(1.0 / sqrt((double)(p->numel / p->shape[0]))) : 0.1f;
        int norm = is_norm_weight(p->name);
        for (int64_t i = 0; i < p->numel; i++) {
            float u = (float)(fmix32(seed + (uint32_t)i) >> 8) * 0x1p-23f - 1.0f;
            float v = u * b;
            p->data[i] = norm ? v + 1.0f : v;
        }
    }
}

/* Compares every parameter's gradient with its "g/<name>" summary. */
static int check_param_grads(const fx_file *f, elbo_paramset *ps, char *msg, size_t len) {
    int checked = 0;
    for (int k = 0; k < elbo_paramset_count(ps); k++) {
        elbo_tensor *p = elbo_paramset_get(ps, k);
        char key[160];
        snprintf(key, sizeof key, "g/%s", p->name);
        const fx_entry *e = fx_get(f, key);
        if (!e || e->numel != 18) {
            snprintf(msg, len, "fixture has no gradient summary %s", key);
            return 0;
        }
        const float *want = e->data;
        const int64_t n = p->numel;
        double sum = elbo__sum_f32(p->grad, n), sumsq = elbo__sumsq_f32(p->grad, n);
        double rms = sqrt((double)want[1] / (double)n);
        if (!(rms > 0)) {
            snprintf(msg, len, "%s: zero reference gradient", p->name);
            return 0;
        }
        if (!(fabs(sum - want[0]) <= 1e-3 * (fabs(want[0]) + rms * sqrt((double)n)))) {
            snprintf(msg, len, "%s: gradient sum %.7g, want %.7g", p->name, sum, want[0]);
            return 0;
        }
        if (!(fabs(sumsq - want[1]) <= 2e-3 * want[1])) {
            snprintf(msg, len, "%s: gradient sum of squares %.7g, want %.7g", p->name, sumsq,
                     want[1]);
            return 0;
        }
        for (int j = 0; j < 16; j++) {
            int64_t i = ((2 * j + 1) * n) / 32;
            double g = p->grad[i], w = want[2 + j];
            if (!(fabs(g - w) <= 1e-3 * rms + 1e-3 * fabs(w))) {
                snprintf(msg, len, "%s: gradient[%lld] = %.7g, want %.7g (rms %.3g)", p->name,
                         (long long)i, g, w, rms);
                return 0;
            }
        }
        checked++;
    }
    if (checked != elbo_paramset_count(ps)) return 0;
    return 1;
}

static double rms_of(const float *x, int64_t n) { return sqrt(elbo__sumsq_f32(x, n) / (double)n); }

#define CHECK_PARAM_GRADS(f, ps)                                                                   \
    do {                                                                                           \
        char pg_msg_[320];                                                                         \
        CHECK_MSG(check_param_grads(f, ps, pg_msg_, sizeof pg_msg_), "%s", pg_msg_);               \
    } while (0)

/* Outputs: atol 1e-4 of the reference's RMS, rtol 1e-4 (see the header). */
#define CHECK_OUTPUT(what, got, e)                                                                 \
    CHECK_CLOSE_ARR(what, got, (const float *)(e)->data, (e)->numel,                               \
                    (float)(1e-4 * rms_of((const float *)(e)->data, (e)->numel)), 1e-4f)

/* ---- parameter counts ----------------------------------------------------------------- */
TEST(models_param_counts) {
    elbo_vae_mlp v;
    CHECK(elbo_vae_mlp_init(&v, 784, 512, 32, 0) == ELBO_OK);
    int64_t nv = elbo_paramset_numel(v.ps);
    elbo_vae_mlp_free(&v);
    CHECK_MSG(nv == 1379152, "vae-mlp has %lld parameters, bench-models.md says 1,379,152",
              (long long)nv);
    elbo_unet_params p;
    elbo_unet_params_init(&p);
    elbo_paramset *ps = elbo_paramset_new();
    elbo_unet *u = elbo_unet_new(ps, "", &p);
    CHECK(u && elbo_paramset_finalize(ps, 0) == ELBO_OK);
    int64_t nu = elbo_paramset_numel(ps);
    CHECK(elbo_paramset_find(ps, "down.2.attn.0.qkv.weight") != NULL);
    CHECK(elbo_paramset_find(ps, "up.2.attn.0.qkv.weight") == NULL); /* attention: down path only */
    CHECK(elbo_paramset_find(ps, "mid.res.conv1.weight") != NULL);
    elbo_unet_free(u);
    elbo_paramset_free(ps);
    CHECK_MSG(nu == 566561, "unet-s has %lld parameters, bench-models.md says 566,561",
              (long long)nu);
}

/* ---- vae-mlp -------------------------------------------------------------------------- */
TEST(models_vae_mlp_matches_torch) {
    fx_file f;
    CHECK(fx_load(&f, "model_vae_mlp") == 0);
    elbo_vae_mlp m;
    CHECK(elbo_vae_mlp_init(&m, 784, 512, 32, 0) == ELBO_OK);
    models_hash_init(m.ps);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = fx_tensor(ctx, &f, "x"), *eps = fx_tensor(ctx, &f, "eps");
    elbo_paramset_zero_grad(m.ps);
    elbo_tensor *loss = elbo_vae_mlp_loss(ctx, &m, x, eps);
    CHECK(loss && loss->numel == 1);
    const float want = ((const float *)fx_get(&f, "loss")->data)[0];
    CHECK_NEAR(loss->data[0], want, 1e-4 * fabs(want));
    CHECK(elbo_backward(ctx, loss) == ELBO_OK);
    CHECK_PARAM_GRADS(&f, m.ps);
    /* The encoder output and the decoder logits, without gradients. */
    elbo_ctx_set_grad(ctx, 0);
    elbo_tensor *h = elbo_nn_mlp_forward(ctx, &m.enc, x);
    CHECK(h);
    CHECK_OUTPUT("enc_out", h->data, fx_get(&f, "enc_out"));
    elbo_tensor *z = elbo_tensor_new2(ctx, 4, 32);
    for (int b = 0; b < 4; b++)
        for (int j = 0; j < 32; j++)
            z->data[b * 32 + j] =
                h->data[b * 64 + j] + expf(0.5f * h->data[b * 64 + 32 + j]) * eps->data[b * 32 + j];
    elbo_tensor *logits = elbo_nn_mlp_forward(ctx, &m.dec, z);
    CHECK(logits);
    CHECK_OUTPUT("logits", logits->data, fx_get(&f, "logits"));
    elbo_ctx_free(ctx);
    elbo_vae_mlp_free(&m);
    fx_free(&f);
}

/* The loss by hand in double for a tiny VAE (x 3, hidden 2, z 1). */
TEST(models_vae_mlp_loss_by_hand) {
    elbo_vae_mlp m;
    CHECK(elbo_vae_mlp_init(&m, 3, 2, 1, 5) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    const int B = 2;
    float xv[6] = {0.1f, 0.9f, 0.5f, 1.0f, 0.0f, 0.3f}, ev[2] = {0.7f, -1.3f};
    elbo_tensor *x = elbo_tensor_new2(ctx, B, 3), *eps = elbo_tensor_new2(ctx, B, 1);
    memcpy(x->data, xv, sizeof xv);
    memcpy(eps->data, ev, sizeof ev);
    elbo_tensor *loss = elbo_vae_mlp_loss(ctx, &m, x, eps);
    CHECK(loss);
    /* Reference in double from the same weights. */
    const elbo_nn_linear *E = m.enc.layers, *D = m.dec.layers;
    double total = 0;
    for (int b = 0; b < B; b++) {
        double a[4], c[4], h[2];
        for (int o = 0; o < 2; o++) {
            a[o] = E[0].bias->data[o];
            for (int i = 0; i < 3; i++)
                a[o] += (double)E[0].weight->data[o * 3 + i] * xv[b * 3 + i];
            a[o] = a[o] > 0 ? a[o] : 0;
        }
        for (int o = 0; o < 2; o++) {
            c[o] = E[1].bias->data[o];
            for (int i = 0; i < 2; i++) c[o] += (double)E[1].weight->data[o * 2 + i] * a[i];
            c[o] = c[o] > 0 ? c[o] : 0;
        }
        for (int o = 0; o < 2; o++) {
            h[o] = E[2].bias->data[o];
            for (int i = 0; i < 2; i++) h[o] += (double)E[2].weight->data[o * 2 + i] * c[i];
        }
        double mu = h[0], logvar = h[1], z = mu + exp(0.5 * logvar) * ev[b];
        for (int o = 0; o < 2; o++) {
            a[o] = D[0].bias->data[o] + (double)D[0].weight->data[o] * z;
            a[o] = a[o] > 0 ? a[o] : 0;
        }
        for (int o = 0; o < 2; o++) {
            c[o] = D[1].bias->data[o];
            for (int i = 0; i < 2; i++) c[o] += (double)D[1].weight->data[o * 2 + i] * a[i];
            c[o] = c[o] > 0 ? c[o] : 0;
        }
        for (int o = 0; o < 3; o++) {
            double l = D[2].bias->data[o];
            for (int i = 0; i < 2; i++) l += (double)D[2].weight->data[o * 2 + i] * c[i];
            double y = xv[b * 3 + o];
            total += (l > 0 ? l : 0) - l * y + log1p(exp(-fabs(l)));
        }
        total += 0.5 * (mu * mu + exp(logvar) - 1 - logvar);
    }
    total /= B;
    /* float32 through 6 tiny layers: a few ulps of a value of order 1. */
    CHECK_NEAR(loss->data[0], total, 1e-5 * (1 + fabs(total)));
    elbo_ctx_free(ctx);
    elbo_vae_mlp_free(&m);
}

TEST(models_vae_mlp_bad_shapes) {
    elbo_vae_mlp m;
    CHECK(elbo_vae_mlp_init(&m, 8, 4, 2, 0) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_zeros(ctx, 2, (int64_t[]){3, 8});
    elbo_tensor *eps = elbo_tensor_zeros(ctx, 2, (int64_t[]){3, 3});
    elbo_clear_error();
    CHECK(elbo_vae_mlp_loss(ctx, &m, x, eps) == NULL);
    CHECK(strstr(elbo_last_error(), "vae_mlp_loss") && strstr(elbo_last_error(), "(3, 8)") &&
          strstr(elbo_last_error(), "(3, 3)"));
    elbo_ctx_free(ctx);
    elbo_vae_mlp_free(&m);
    CHECK(elbo_vae_mlp_init(&m, 0, 4, 2, 0) == ELBO_ERR_ARG && m.ps == NULL);
}

/* ---- UNet ----------------------------------------------------------------------------- */
static int fx_int(const fx_file *f, const char *name, int32_t *out, int n) {
    const fx_entry *e = fx_get(f, name);
    if (!e || e->dtype != 1 || e->numel != n) return 0;
    memcpy(out, e->data, (size_t)n * sizeof(int32_t));
    return 1;
}

/* Forward on x with times tf, and d sum(out * g) / dx. */
static void check_unet_forward_and_dx(const fx_file *f, const elbo_unet *u, elbo_paramset *ps,
                                      int check_param_grads_too) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_tensor *x = fx_tensor(ctx, f, "x");
    const fx_entry *tf = fx_get(f, "tf"), *g = fx_get(f, "g");
    CHECK(x && tf && g);
    elbo_tensor_requires_grad(x, 1);
    elbo_paramset_zero_grad(ps);
    elbo_tensor *out = elbo_unet_forward(ctx, u, x, tf->data);
    CHECK(out && out->numel == g->numel);
    CHECK_OUTPUT("unet out", out->data, fx_get(f, "out"));
    CHECK(elbo_backward_with(ctx, out, g->data) == ELBO_OK);
    CHECK(x->grad);
    CHECK_CLOSE_ARR("d sum(out g)/dx", x->grad, (const float *)fx_get(f, "dx")->data, x->numel,
                    (float)(1e-3 * rms_of(fx_get(f, "dx")->data, x->numel)), 1e-3f);
    if (check_param_grads_too) CHECK_PARAM_GRADS(f, ps);
    elbo_ctx_free(ctx);
}

TEST(models_unet_s_matches_torch) {
    fx_file f;
    CHECK(fx_load(&f, "model_unet_s") == 0);
    elbo_unet_params p;
    elbo_unet_params_init(&p);
    elbo_paramset *ps = elbo_paramset_new();
    elbo_unet *u = elbo_unet_new(ps, "", &p);
    CHECK(u && elbo_paramset_finalize(ps, 0) == ELBO_OK);
    models_hash_init(ps);
    /* DDPM loss and its parameter gradients. */
    float alpha_bar[1000];
    elbo_ddpm_alpha_bar_linear(alpha_bar, 1000, 1e-4, 0.02);
    CHECK_CLOSE_ARR("alpha_bar", alpha_bar, (const float *)fx_get(&f, "alpha_bar")->data, 1000, 0,
                    1e-6f);
    elbo_ctx *ctx = elbo_ctx_new(0);
    int32_t t[2];
    CHECK(fx_int(&f, "t", t, 2));
    elbo_tensor *x0 = fx_tensor(ctx, &f, "x0"), *eps = fx_tensor(ctx, &f, "eps");
    elbo_paramset_zero_grad(ps);
    elbo_tensor *loss = elbo_ddpm_eps_loss(ctx, u, x0, t, eps, alpha_bar);
    CHECK(loss);
    const float want = ((const float *)fx_get(&f, "loss")->data)[0];
    CHECK_NEAR(loss->data[0], want, 1e-4 * fabs(want));
    CHECK(elbo_backward(ctx, loss) == ELBO_OK);
    CHECK_PARAM_GRADS(&f, ps);
    elbo_ctx_free(ctx);
    check_unet_forward_and_dx(&f, u, ps, 0);
    if (test_failed()) return;
    elbo_unet_free(u);
    elbo_paramset_free(ps);
    fx_free(&f);
}

/* A general UNet: 3 levels (8, 16, 16), 2 blocks per level, attention in both paths of
 * level 1 and the down path of level 2, 2 -> 3 channels, temb 16, 4 groups, 12x12. */
TEST(models_unet_general_matches_torch) {
    fx_file f;
    CHECK(fx_load(&f, "model_unet_gen") == 0);
    elbo_unet_params p;
    elbo_unet_params_init(&p);
    p.in_channels = 2;
    p.out_channels = 3;
    p.channels[0] = 8;
    p.channels[1] = 16;
    p.channels[2] = 16;
    p.blocks_per_level = 2;
    p.attn[0] = 0;
    p.attn[1] = 2;
    p.attn[2] = 1;
    p.temb_dim = 16;
    p.groups = 4;
    elbo_paramset *ps = elbo_paramset_new();
    elbo_unet *u = elbo_unet_new(ps, "", &p);
    CHECK(u && elbo_paramset_finalize(ps, 0) == ELBO_OK);
    CHECK(elbo_paramset_find(ps, "up.1.attn.1.proj.bias") != NULL);
    models_hash_init(ps);
    check_unet_forward_and_dx(&f, u, ps, 1);
    if (test_failed()) return;
    elbo_unet_free(u);
    elbo_paramset_free(ps);
    fx_free(&f);
}

TEST(models_unet_prefix_names) {
    elbo_unet_params p;
    elbo_unet_params_init(&p);
    elbo_paramset *ps = elbo_paramset_new();
    elbo_unet *u = elbo_unet_new(ps, "model", &p);
    CHECK(u);
    CHECK(elbo_paramset_find(ps, "model.temb.0.weight") &&
          elbo_paramset_find(ps, "model.conv_out.bias") &&
          elbo_paramset_find(ps, "model.down.1.down.weight") &&
          elbo_paramset_find(ps, "model.up.0.res.0.skip.weight"));
    elbo_unet_free(u);
    elbo_paramset_free(ps);
}

TEST(models_unet_bad_input) {
    elbo_unet_params p;
    elbo_unet_params_init(&p);
    p.groups = 5; /* 32 channels are not a multiple of 5 groups */
    elbo_paramset *ps = elbo_paramset_new();
    elbo_clear_error();
    CHECK(elbo_unet_new(ps, "", &p) == NULL && strstr(elbo_last_error(), "groups"));
    elbo_unet_params_init(&p);
    elbo_unet *u = elbo_unet_new(ps, "", &p);
    CHECK(u && elbo_paramset_finalize(ps, 0) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(0);
    float t[2] = {1, 2};
    elbo_tensor *x = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 3, 28, 28}); /* 3 channels, not 1 */
    elbo_clear_error();
    CHECK(elbo_unet_forward(ctx, u, x, t) == NULL);
    CHECK(strstr(elbo_last_error(), "unet") && strstr(elbo_last_error(), "(2, 3, 28, 28)"));
    x = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 1, 30, 30}); /* 30 is not a multiple of 4 */
    CHECK(elbo_unet_forward(ctx, u, x, t) == NULL && strstr(elbo_last_error(), "multiples of 4"));
    elbo_tensor *x0 = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 1, 28, 28});
    elbo_tensor *eps = elbo_tensor_zeros(ctx, 4, (int64_t[]){2, 1, 28, 14});
    float ab[10];
    elbo_ddpm_alpha_bar_linear(ab, 10, 1e-4, 0.02);
    elbo_clear_error();
    CHECK(elbo_ddpm_eps_loss(ctx, u, x0, (int32_t[]){1, 2}, eps, ab) == NULL);
    CHECK(strstr(elbo_last_error(), "ddpm_eps_loss") &&
          strstr(elbo_last_error(), "(2, 1, 28, 14)"));
    elbo_ctx_free(ctx);
    elbo_unet_free(u);
    elbo_paramset_free(ps);
}

/* alpha_bar by hand: betas 0.1, 0.2, 0.3 -> 0.9, 0.72, 0.504; and the DDPM schedule's ends. */
TEST(models_ddpm_alpha_bar_linear) {
    float ab[3];
    elbo_ddpm_alpha_bar_linear(ab, 3, 0.1, 0.3);
    CHECK(ab[0] == (float)0.9 && ab[1] == (float)(0.9 * 0.8) && ab[2] == (float)(0.9 * 0.8 * 0.7));
    static float a[1000];
    elbo_ddpm_alpha_bar_linear(a, 1000, 1e-4, 0.02);
    double prod = 1;
    for (int i = 0; i < 1000; i++) prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999.0);
    CHECK(a[0] == (float)(1.0 - 1e-4));
    CHECK_NEAR(a[999], prod, 1e-7 * prod); /* ~4.0e-5 (Ho et al.: SNR at T near 4e-5) */
    for (int i = 1; i < 1000; i++) CHECK(a[i] < a[i - 1]);
}
