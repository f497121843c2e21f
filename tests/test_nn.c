/* nn: parameter sets (names, allocation, initialisation) and layers. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

/* ---- paramset ------------------------------------------------------------------------- */

TEST(nn_paramset_names_order_and_blocks) {
    elbo_paramset *ps = elbo_paramset_new();
    int64_t s1[2] = {3, 4}, s2[1] = {5}, s3[3] = {2, 1, 7};
    elbo_init c = {ELBO_INIT_CONST, 0.5f};
    elbo_tensor *a = elbo_paramset_add(ps, "enc.0", "weight", 2, s1, c);
    elbo_tensor *b = elbo_paramset_add(ps, "", "scale", 1, s2, c);
    elbo_tensor *d = elbo_paramset_add(ps, NULL, "bias", 3, s3, c);
    CHECK(a && b && d);
    CHECK(!strcmp(a->name, "enc.0.weight") && !strcmp(b->name, "scale") &&
          !strcmp(d->name, "bias"));
    CHECK(a->data == NULL); /* values exist only after finalize */
    CHECK(elbo_paramset_count(ps) == 3 && elbo_paramset_numel(ps) == 12 + 5 + 14);
    CHECK(elbo_paramset_finalize(ps, 1) == ELBO_OK);
    float *data = elbo_paramset_data(ps), *grad = elbo_paramset_grad(ps);
    CHECK(((uintptr_t)data % 64) == 0 && ((uintptr_t)grad % 64) == 0);
    /* declaration order, contiguous ranges of one block */
    CHECK(a->data == data && b->data == data + 12 && d->data == data + 17);
    CHECK(a->grad == grad && b->grad == grad + 12 && d->grad == grad + 17);
    CHECK(a->requires_grad && b->requires_grad && d->requires_grad);
    for (int i = 0; i < 31; i++) CHECK(data[i] == 0.5f && grad[i] == 0.0f);
    CHECK(elbo_paramset_get(ps, 0) == a && elbo_paramset_get(ps, 2) == d);
    CHECK(elbo_paramset_get(ps, 3) == NULL);
    CHECK(elbo_paramset_find(ps, "enc.0.weight") == a && elbo_paramset_find(ps, "scale") == b);
    CHECK(elbo_paramset_find(ps, "enc.0") == NULL);
    grad[3] = 2;
    elbo_paramset_zero_grad(ps); /* set to none, as PyTorch's zero_grad(set_to_none=True) */
    CHECK(a->grad == NULL && b->grad == NULL && d->grad == NULL);
    CHECK(elbo_paramset_grad(ps) == grad); /* reading the block defines every gradient: zero */
    CHECK(a->grad == grad && d->grad == grad + 17 && grad[3] == 0);
    elbo_paramset_free(ps);
}

/* After zero_grad, backward stores each parameter's first gradient and adds the later ones;
 * a parameter it does not reach reads as zero through elbo_paramset_grad, not as the stale
 * gradient of the step before; without zero_grad, gradients accumulate. */
TEST(nn_zero_grad_set_to_none) {
    elbo_paramset *ps = elbo_paramset_new();
    int64_t sw[2] = {2, 3}, sb[1] = {2};
    elbo_init c = {ELBO_INIT_CONST, 0.5f};
    elbo_tensor *w = elbo_paramset_add(ps, NULL, "w", 2, sw, c);
    elbo_tensor *b = elbo_paramset_add(ps, NULL, "b", 1, sb, c);
    elbo_tensor *unused = elbo_paramset_add(ps, NULL, "unused", 1, sb, c);
    CHECK(elbo_paramset_finalize(ps, 1) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    float xv[6] = {1, 2, 3, -1, 0, 4};
    float want_w[6], want_b[2] = {2, 2}; /* d sum(x w^T + b) / dw[o,i] = sum_r x[r,i] */
    for (int i = 0; i < 3; i++) want_w[i] = want_w[3 + i] = xv[i] + xv[3 + i];
    for (int round = 0; round < 3; round++) {
        if (round < 2) elbo_paramset_zero_grad(ps); /* round 2 accumulates onto round 1 */
        elbo_ctx_reset(ctx);
        int64_t sx[2] = {2, 3};
        elbo_tensor *x = elbo_tensor_new(ctx, 2, sx);
        memcpy(x->data, xv, sizeof xv);
        elbo_tensor *y = elbo_sum(ctx, elbo_linear(ctx, x, w, b));
        CHECK(y && elbo_backward(ctx, y) == ELBO_OK);
        CHECK((unused->grad == NULL) == (round < 2)); /* round 2: still defined from round 1 */
        if (round == 0) unused->grad_slot[0] = 7; /* stale: must not survive zero_grad */
        float *g = elbo_paramset_grad(ps);
        CHECK(g && unused->grad == unused->grad_slot);
        float k = round == 2 ? 2.0f : 1.0f;
        for (int i = 0; i < 6; i++) CHECK(w->grad[i] == k * want_w[i]);
        for (int i = 0; i < 2; i++) CHECK(b->grad[i] == k * want_b[i]);
        CHECK(unused->grad[0] == 0 && unused->grad[1] == 0);
        if (round == 1) elbo_paramset_grad(ps); /* a second read changes nothing */
    }
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

TEST(nn_paramset_errors) {
    elbo_paramset *ps = elbo_paramset_new();
    int64_t s[1] = {4};
    elbo_init c = {ELBO_INIT_CONST, 0};
    CHECK(elbo_paramset_add(ps, "blk", "weight", 1, s, c));
    elbo_clear_error();
    CHECK(elbo_paramset_add(ps, "blk", "weight", 1, s, c) == NULL);
    CHECK(strstr(elbo_last_error(), "duplicate") && strstr(elbo_last_error(), "blk.weight"));
    int64_t bad[1] = {-1};
    CHECK(elbo_paramset_add(ps, "blk", "bias", 1, bad, c) == NULL);
    CHECK(elbo_paramset_count(ps) == 1);
    CHECK(elbo_paramset_finalize(ps, 0) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 0) == ELBO_ERR_STATE);
    CHECK(elbo_paramset_add(ps, "blk", "late", 1, s, c) == NULL);
    CHECK(strstr(elbo_last_error(), "blk.late") && strstr(elbo_last_error(), "finalize"));
    elbo_paramset_free(ps);
}

TEST(nn_name_helpers) {
    char buf[16];
    CHECK(!strcmp(elbo_name_join(buf, sizeof buf, "down", "conv1"), "down.conv1"));
    CHECK(!strcmp(elbo_name_join(buf, sizeof buf, "", "conv1"), "conv1"));
    CHECK(!strcmp(elbo_name_join(buf, sizeof buf, NULL, "conv1"), "conv1"));
    CHECK(!strcmp(elbo_name_index(buf, sizeof buf, "down", 12), "down.12"));
    CHECK(!strcmp(elbo_name_index(buf, sizeof buf, "", 3), "3"));
    CHECK(elbo_name_join(buf, sizeof buf, "a_long_prefix", "weight") == NULL); /* 20 > 15 */
    CHECK(strstr(elbo_last_error(), "a_long_prefix.weight"));
}

/* Same seed: same bits (also for any thread count, via the Philox stream); another seed:
 * other values. Declaration order fixes which draws each parameter gets. */
TEST(nn_paramset_init_reproducible) {
    float *v[3];
    uint64_t seeds[3] = {7, 7, 8};
    int saved = elbo_get_threads();
    for (int r = 0; r < 3; r++) {
        elbo_set_threads(r == 1 ? 2 : 1);
        elbo_paramset *ps = elbo_paramset_new();
        int64_t s[2] = {300, 100}, e[2] = {50, 8};
        elbo_paramset_add(ps, "", "w", 2, s, (elbo_init){ELBO_INIT_UNIFORM, 0.1f});
        elbo_paramset_add(ps, "", "emb", 2, e, (elbo_init){ELBO_INIT_NORMAL, 1.0f});
        CHECK(elbo_paramset_finalize(ps, seeds[r]) == ELBO_OK);
        int64_t n = elbo_paramset_numel(ps);
        v[r] = malloc((size_t)n * sizeof(float));
        memcpy(v[r], elbo_paramset_data(ps), (size_t)n * sizeof(float));
        elbo_paramset_free(ps);
    }
    elbo_set_threads(saved);
    size_t bytes = (30000 + 400) * sizeof(float);
    int same = !memcmp(v[0], v[1], bytes), differ = memcmp(v[0], v[2], bytes) != 0;
    /* The second parameter continues the stream: its draws are the normal draws of a
     * fresh stream advanced past the first parameter's 30000 uniforms. */
    elbo_rng r;
    elbo_rng_init(&r, 7);
    float skip[4];
    r.offset = 30000 / 4;
    elbo_rng_normal(&r, skip, 4, 0, 1);
    int cont = skip[0] == v[0][30000] && skip[3] == v[0][30003];
    for (int i = 0; i < 3; i++) free(v[i]);
    CHECK(same && differ && cont);
}

/* PyTorch's default Linear init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias. */
TEST(nn_linear_init_bound_and_variance) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_linear l;
    CHECK(elbo_nn_linear_init(&l, ps, "fc", 784, 512, 1) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 42) == ELBO_OK);
    CHECK(!strcmp(l.weight->name, "fc.weight") && !strcmp(l.bias->name, "fc.bias"));
    CHECK(l.weight->ndim == 2 && l.weight->shape[0] == 512 && l.weight->shape[1] == 784);
    CHECK(l.bias->ndim == 1 && l.bias->shape[0] == 512);
    double bound = 1.0 / sqrt(784.0), s2 = 0, m = 0;
    int64_t n = l.weight->numel;
    for (int64_t i = 0; i < n; i++) {
        double w = l.weight->data[i];
        CHECK(w >= -bound && w < bound);
        m += w;
        s2 += w * w;
    }
    for (int i = 0; i < 512; i++) CHECK(fabs(l.bias->data[i]) <= bound);
    m /= n;
    double var = s2 / n - m * m;
    /* U(-b, b): variance b^2/3; the sample variance's standard error is
     * sqrt((mu4 - sigma^4) / n) with mu4 = b^4/5, i.e. b^2 sqrt(4/45 / n). */
    double want = bound * bound / 3, se = bound * bound * sqrt(4.0 / 45.0 / (double)n);
    CHECK_NEAR(var, want, 5 * se);
    CHECK_NEAR(m, 0.0, 5 * sqrt(want / n));
    elbo_paramset_free(ps);
}

TEST(nn_init_conventions) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_conv2d c;
    elbo_nn_group_norm g, g_bad;
    elbo_nn_layer_norm ln;
    elbo_nn_embedding e;
    elbo_nn_linear nb;
    CHECK(elbo_nn_conv2d_init(&c, ps, "conv", 3, 8, 3, 1, 1, 1) == ELBO_OK);
    CHECK(elbo_nn_group_norm_init(&g, ps, "gn", 2, 8) == ELBO_OK);
    CHECK(elbo_nn_layer_norm_init(&ln, ps, "ln", 6) == ELBO_OK);
    CHECK(elbo_nn_embedding_init(&e, ps, "emb", 100, 40) == ELBO_OK);
    CHECK(elbo_nn_linear_init(&nb, ps, "nobias", 4, 2, 0) == ELBO_OK);
    CHECK(elbo_nn_group_norm_init(&g_bad, ps, "gn_bad", 3, 8) != ELBO_OK); /* 8 % 3 != 0 */
    CHECK(strstr(elbo_last_error(), "gn_bad"));
    CHECK(elbo_paramset_finalize(ps, 3) == ELBO_OK);
    CHECK(c.weight->ndim == 4 && c.weight->shape[0] == 8 && c.weight->shape[1] == 3 &&
          c.weight->shape[2] == 3 && c.weight->shape[3] == 3 && c.bias->numel == 8);
    double bound = 1.0 / sqrt(3.0 * 3 * 3), mx = 0; /* fan_in = in k k */
    for (int64_t i = 0; i < c.weight->numel; i++) mx = fmax(mx, fabs(c.weight->data[i]));
    for (int64_t i = 0; i < c.bias->numel; i++) mx = fmax(mx, fabs(c.bias->data[i]));
    CHECK(mx <= bound && mx > 0.8 * bound); /* 224 draws fill the range */
    for (int i = 0; i < 8; i++) CHECK(g.weight->data[i] == 1 && g.bias->data[i] == 0);
    for (int i = 0; i < 6; i++) CHECK(ln.weight->data[i] == 1 && ln.bias->data[i] == 0);
    CHECK(g.eps == 1e-5f && ln.eps == 1e-5f && g.groups == 2 && g.channels == 8);
    double m = 0, s2 = 0; /* N(0, 1) over 4000 draws */
    for (int i = 0; i < 4000; i++) {
        m += e.weight->data[i];
        s2 += (double)e.weight->data[i] * e.weight->data[i];
    }
    m /= 4000;
    CHECK_NEAR(m, 0, 5 / sqrt(4000.0));
    CHECK_NEAR(s2 / 4000 - m * m, 1, 5 * sqrt(2 / 4000.0));
    CHECK(nb.bias == NULL && elbo_paramset_find(ps, "nobias.bias") == NULL);
    elbo_paramset_free(ps);
}

TEST(nn_mlp_and_block_naming) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_mlp m;
    int sizes[4] = {784, 512, 512, 64};
    CHECK(elbo_nn_mlp_init(&m, ps, "enc", 3, sizes, ELBO_ACT_RELU) == ELBO_OK);
    const char *want[] = {"enc.0.weight", "enc.0.bias",   "enc.2.weight",
                          "enc.2.bias",   "enc.4.weight", "enc.4.bias"};
    CHECK(elbo_paramset_count(ps) == 6);
    for (int i = 0; i < 6; i++) CHECK(!strcmp(elbo_paramset_get(ps, i)->name, want[i]));
    CHECK(m.layers[2].in_features == 512 && m.layers[2].out_features == 64);
    /* vae-mlp encoder of bench-models.md: 784*512+512 + 512*512+512 + 512*64+64 */
    CHECK(elbo_paramset_numel(ps) == 784 * 512 + 512 + 512 * 512 + 512 + 512 * 64 + 64);
    elbo_paramset_free(ps);

    ps = elbo_paramset_new();
    elbo_nn_resblock r;
    elbo_nn_attention a;
    elbo_nn_time_embedding te;
    CHECK(elbo_nn_time_embedding_init(&te, ps, "temb", 128, 128) == ELBO_OK);
    CHECK(elbo_nn_resblock_init(&r, ps, "down.1", 32, 64, 128, 8, 0.0f) == ELBO_OK);
    CHECK(elbo_nn_attention_init(&a, ps, "mid.attn", 64, 8) == ELBO_OK);
    const char *names[] = {
        "temb.0.weight",         "temb.0.bias",          "temb.2.weight",
        "temb.2.bias",           "down.1.norm1.weight",  "down.1.norm1.bias",
        "down.1.conv1.weight",   "down.1.conv1.bias",    "down.1.temb_proj.weight",
        "down.1.temb_proj.bias", "down.1.norm2.weight",  "down.1.norm2.bias",
        "down.1.conv2.weight",   "down.1.conv2.bias",    "down.1.skip.weight",
        "down.1.skip.bias",      "mid.attn.norm.weight", "mid.attn.norm.bias",
        "mid.attn.qkv.weight",   "mid.attn.qkv.bias",    "mid.attn.proj.weight",
        "mid.attn.proj.bias"};
    int n = (int)(sizeof names / sizeof names[0]);
    CHECK(elbo_paramset_count(ps) == n);
    for (int i = 0; i < n; i++)
        CHECK_MSG(!strcmp(elbo_paramset_get(ps, i)->name, names[i]), "param %d: %s, want %s", i,
                  elbo_paramset_get(ps, i)->name, names[i]);
    CHECK(r.has_skip && r.has_temb);
    CHECK(elbo_paramset_find(ps, "down.1.skip.weight")->shape[2] == 1);
    CHECK(elbo_paramset_find(ps, "mid.attn.qkv.weight")->shape[0] == 192);
    /* identity skip and no time input: no skip / temb_proj parameters */
    elbo_nn_resblock r2;
    CHECK(elbo_nn_resblock_init(&r2, ps, "up.0", 64, 64, 0, 8, 0.1f) == ELBO_OK);
    CHECK(!r2.has_skip && !r2.has_temb && elbo_paramset_count(ps) == n + 8);
    CHECK(!elbo_paramset_find(ps, "up.0.skip.weight") &&
          !elbo_paramset_find(ps, "up.0.temb_proj.weight"));
    elbo_paramset_free(ps);
}

/* ---- double-precision references ------------------------------------------------------ */

static double silu_d(double v) { return v / (1.0 + exp(-v)); }

/* GroupNorm over (B, C, N) with biased variance, eps 1e-5. */
static void gn_ref(const double *x, int B, int C, int N, int G, const float *gamma,
                   const float *beta, double *y) {
    int cg = C / G;
    for (int b = 0; b < B; b++)
        for (int g = 0; g < G; g++) {
            const double *xs = x + ((size_t)b * C + g * cg) * N;
            double m = 0, v = 0;
            for (int i = 0; i < cg * N; i++) m += xs[i];
            m /= cg * N;
            for (int i = 0; i < cg * N; i++) v += (xs[i] - m) * (xs[i] - m);
            v /= cg * N;
            for (int c = g * cg; c < (g + 1) * cg; c++)
                for (int i = 0; i < N; i++) {
                    size_t k = ((size_t)b * C + c) * N + i;
                    y[k] = (x[k] - m) / sqrt(v + 1e-5) * gamma[c] + beta[c];
                }
        }
}

/* Cross-correlation x (B, C, H, W), w (OC, C, k, k) -> (B, OC, OH, OW). */
static void conv_ref(const double *x, int B, int C, int H, int W, const float *w, const float *bias,
                     int OC, int k, int stride, int pad, double *y, int *OH_, int *OW_) {
    int OH = (H + 2 * pad - k) / stride + 1, OW = (W + 2 * pad - k) / stride + 1;
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OC; o++)
            for (int i = 0; i < OH; i++)
                for (int j = 0; j < OW; j++) {
                    double s = bias ? bias[o] : 0;
                    for (int c = 0; c < C; c++)
                        for (int u = 0; u < k; u++)
                            for (int v = 0; v < k; v++) {
                                int hi = i * stride - pad + u, wj = j * stride - pad + v;
                                if (hi < 0 || hi >= H || wj < 0 || wj >= W) continue;
                                s += x[(((size_t)b * C + c) * H + hi) * W + wj] *
                                     w[((o * C + c) * k + u) * k + v];
                            }
                    y[(((size_t)b * OC + o) * OH + i) * OW + j] = s;
                }
    if (OH_) *OH_ = OH;
    if (OW_) *OW_ = OW;
}

static double *to_double(const float *x, int64_t n) {
    double *d = malloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

/* max |got - want| / (1 + |want|) */
static double max_rel(const float *got, const double *want, int64_t n) {
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double e = fabs(got[i] - want[i]) / (1.0 + fabs(want[i]));
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

static void fill_normal(float *x, int64_t n, uint64_t seed, float std) {
    elbo_rng r;
    elbo_rng_init(&r, seed);
    elbo_rng_normal(&r, x, (size_t)n, 0, std);
}

/* ---- layer forward values ------------------------------------------------------------- */

TEST(nn_linear_forward_values) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_linear l;
    CHECK(elbo_nn_linear_init(&l, ps, "fc", 3, 2, 1) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 1) == ELBO_OK);
    const float w[6] = {1, -2, 0.5f, 0, 3, -1}, b[2] = {0.25f, -4};
    memcpy(l.weight->data, w, sizeof w);
    memcpy(l.bias->data, b, sizeof b);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new2(ctx, 2, 3);
    const float xv[6] = {1, 2, 3, -1, 0.5f, 2};
    memcpy(x->data, xv, sizeof xv);
    elbo_tensor *y = elbo_nn_linear_forward(ctx, &l, x);
    CHECK(y && y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 2);
    /* y = x W^T + b, by hand: row 0: 1-4+1.5+0.25 = -1.25, 0+6-3-4 = -1;
     * row 1: -1-1+1+0.25 = -0.75, 0+1.5-2-4 = -4.5 (all exact in float) */
    CHECK(y->data[0] == -1.25f && y->data[1] == -1.0f && y->data[2] == -0.75f &&
          y->data[3] == -4.5f);
    /* a wrong input width fails, naming the layer and both shapes */
    elbo_tensor *bad = elbo_tensor_new2(ctx, 2, 4);
    CHECK(elbo_nn_linear_forward(ctx, &l, bad) == NULL);
    CHECK(strstr(elbo_last_error(), "fc") && strstr(elbo_last_error(), "(2, 4)") &&
          strstr(elbo_last_error(), "(2, 3)"));
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

TEST(nn_conv2d_forward_values) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_conv2d c;
    CHECK(elbo_nn_conv2d_init(&c, ps, "conv", 2, 3, 3, 2, 1, 1) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 5) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new4(ctx, 2, 2, 5, 4);
    fill_normal(x->data, x->numel, 11, 1);
    elbo_tensor *y = elbo_nn_conv2d_forward(ctx, &c, x);
    CHECK(y && y->shape[0] == 2 && y->shape[1] == 3 && y->shape[2] == 3 && y->shape[3] == 2);
    double *xd = to_double(x->data, x->numel), yd[2 * 3 * 3 * 2];
    int OH, OW;
    conv_ref(xd, 2, 2, 5, 4, c.weight->data, c.bias->data, 3, 3, 2, 1, yd, &OH, &OW);
    free(xd);
    /* 18-term float dot products of O(1) values: rounding ~1e-6 */
    CHECK_NEAR(max_rel(y->data, yd, y->numel), 0, 1e-5);
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

TEST(nn_norm_and_embedding_forward) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_group_norm g;
    elbo_nn_layer_norm ln;
    elbo_nn_embedding e;
    CHECK(elbo_nn_group_norm_init(&g, ps, "gn", 2, 4) == ELBO_OK);
    CHECK(elbo_nn_layer_norm_init(&ln, ps, "ln", 5) == ELBO_OK);
    CHECK(elbo_nn_embedding_init(&e, ps, "emb", 7, 3) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 2) == ELBO_OK);
    for (int i = 0; i < 4; i++) {
        g.weight->data[i] = 1 + 0.5f * i;
        g.bias->data[i] = -0.25f * i;
    }
    for (int i = 0; i < 5; i++) {
        ln.weight->data[i] = 2 - 0.3f * i;
        ln.bias->data[i] = 0.1f * i;
    }
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new4(ctx, 2, 4, 3, 2);
    fill_normal(x->data, x->numel, 3, 2);
    elbo_tensor *y = elbo_nn_group_norm_forward(ctx, &g, x);
    CHECK(y);
    double *xd = to_double(x->data, x->numel), yd[48];
    gn_ref(xd, 2, 4, 6, 2, g.weight->data, g.bias->data, yd);
    free(xd);
    CHECK_NEAR(max_rel(y->data, yd, 48), 0, 1e-5); /* float mean/var of 12 values */
    /* LayerNorm over the last axis = GroupNorm with one group over (1, D) rows */
    elbo_tensor *z = elbo_tensor_new2(ctx, 3, 5);
    fill_normal(z->data, z->numel, 4, 1);
    elbo_tensor *zn = elbo_nn_layer_norm_forward(ctx, &ln, z);
    CHECK(zn);
    double *zd = to_double(z->data, 15), zr[15];
    gn_ref(zd, 3, 1, 5, 1, (const float[]){1}, (const float[]){0}, zr);
    for (int i = 0; i < 15; i++) zr[i] = zr[i] * ln.weight->data[i % 5] + ln.bias->data[i % 5];
    free(zd);
    CHECK_NEAR(max_rel(zn->data, zr, 15), 0, 1e-5);
    const int32_t ids[4] = {6, 0, 6, 3};
    elbo_tensor *r = elbo_nn_embedding_forward(ctx, &e, ids, 4);
    CHECK(r && r->shape[0] == 4 && r->shape[1] == 3);
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 3; j++) CHECK(r->data[i * 3 + j] == e.weight->data[ids[i] * 3 + j]);
    const int32_t bad[1] = {7};
    CHECK(elbo_nn_embedding_forward(ctx, &e, bad, 1) == NULL);
    CHECK(strstr(elbo_last_error(), "emb"));
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

TEST(nn_activate_dispatch) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new1(ctx, 4);
    const float xv[4] = {-2, -0.5f, 0.5f, 3};
    memcpy(x->data, xv, sizeof xv);
    CHECK(elbo_activate(ctx, x, ELBO_ACT_NONE) == x);
    for (int act = ELBO_ACT_RELU; act <= ELBO_ACT_ELU; act++) {
        elbo_tensor *y = elbo_activate(ctx, x, (elbo_activation)act);
        CHECK(y);
        for (int i = 0; i < 4; i++) {
            double v = xv[i], want = 0;
            switch (act) {
            case ELBO_ACT_RELU:
                want = v > 0 ? v : 0;
                break;
            case ELBO_ACT_SILU:
                want = silu_d(v);
                break;
            case ELBO_ACT_GELU:
                want = 0.5 * v * (1 + erf(v / sqrt(2.0)));
                break;
            case ELBO_ACT_TANH:
                want = tanh(v);
                break;
            case ELBO_ACT_SIGMOID:
                want = 1 / (1 + exp(-v));
                break;
            case ELBO_ACT_SOFTPLUS:
                want = log1p(exp(v));
                break;
            case ELBO_ACT_ELU:
                want = v > 0 ? v : expm1(v);
                break;
            }
            CHECK_MSG(fabs(y->data[i] - want) <= 1e-6 * (1 + fabs(want)),
                      "activation %d at %g: %g, want %g", act, v, y->data[i], want);
        }
    }
    CHECK(elbo_activate(ctx, x, (elbo_activation)99) == NULL);
    elbo_ctx_free(ctx);
}

TEST(nn_mlp_forward_values) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_mlp m;
    int sizes[4] = {5, 7, 6, 3};
    CHECK(elbo_nn_mlp_init(&m, ps, "mlp", 3, sizes, ELBO_ACT_TANH) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 9) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new2(ctx, 4, 5);
    fill_normal(x->data, x->numel, 8, 1);
    elbo_tensor *y = elbo_nn_mlp_forward(ctx, &m, x);
    CHECK(y && y->shape[0] == 4 && y->shape[1] == 3);
    /* tanh between the layers, none after the last */
    double h[4][8], nh[4][8];
    for (int b = 0; b < 4; b++)
        for (int i = 0; i < 5; i++) h[b][i] = x->data[b * 5 + i];
    for (int l = 0; l < 3; l++) {
        const elbo_nn_linear *L = &m.layers[l];
        for (int b = 0; b < 4; b++)
            for (int o = 0; o < sizes[l + 1]; o++) {
                double s = L->bias->data[o];
                for (int i = 0; i < sizes[l]; i++) s += h[b][i] * L->weight->data[o * sizes[l] + i];
                nh[b][o] = l < 2 ? tanh(s) : s;
            }
        memcpy(h, nh, sizeof h);
    }
    for (int b = 0; b < 4; b++)
        for (int o = 0; o < 3; o++) CHECK_NEAR(y->data[b * 3 + o], h[b][o], 1e-5);
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

/* ---- timestep and time embedding ------------------------------------------------------ */

TEST(nn_timestep_embedding_values) {
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    const float t[4] = {0, 1, 37.5f, 999};
    for (int dim = 7; dim <= 128; dim += 121) { /* odd (zero last column) and unet-s's 128 */
        elbo_tensor *e = elbo_timestep_embedding(ctx, t, 4, dim);
        CHECK(e && e->shape[0] == 4 && e->shape[1] == dim);
        CHECK(!e->requires_grad && e->node == NULL); /* t is data: no tape */
        int half = dim / 2;
        for (int b = 0; b < 4; b++) {
            for (int i = 0; i < half; i++) {
                double f = exp(-log(10000.0) * i / half), arg = (double)t[b] * f;
                /* The argument is rounded to float (as a float32 reference has it):
                 * |error| <= 2^-24 |arg| from the product plus the same from f. */
                double tol = 2.5 * 0x1p-24 * fabs(arg) + 2e-7;
                CHECK_NEAR(e->data[b * dim + i], sin(arg), tol);
                CHECK_NEAR(e->data[b * dim + half + i], cos(arg), tol);
            }
            if (dim % 2) CHECK(e->data[b * dim + dim - 1] == 0.0f);
        }
    }
    CHECK(elbo_timestep_embedding(ctx, NULL, 4, 8) == NULL);
    elbo_ctx_free(ctx);
}

TEST(nn_time_embedding_forward) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_time_embedding te;
    CHECK(elbo_nn_time_embedding_init(&te, ps, "temb", 8, 6) == ELBO_OK);
    CHECK(elbo_paramset_finalize(ps, 4) == ELBO_OK);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    const float t[3] = {3, 250, 811};
    elbo_tensor *y = elbo_nn_time_embedding_forward(ctx, &te, t, 3);
    CHECK(y && y->shape[0] == 3 && y->shape[1] == 6 && y->requires_grad);
    elbo_tensor *emb = elbo_timestep_embedding(ctx, t, 3, 8);
    for (int b = 0; b < 3; b++) {
        double h[6];
        for (int o = 0; o < 6; o++) {
            double s = te.lin1.bias->data[o];
            for (int i = 0; i < 8; i++) s += emb->data[b * 8 + i] * te.lin1.weight->data[o * 8 + i];
            h[o] = silu_d(s);
        }
        for (int o = 0; o < 6; o++) {
            double s = te.lin2.bias->data[o];
            for (int i = 0; i < 6; i++) s += h[i] * te.lin2.weight->data[o * 6 + i];
            CHECK_NEAR(y->data[b * 6 + o], s, 1e-5);
        }
    }
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

/* ---- residual block ------------------------------------------------------------------- */

enum { RB_B = 2, RB_IN = 2, RB_OUT = 4, RB_H = 4, RB_W = 3, RB_T = 3, RB_G = 2 };

static elbo_nn_resblock make_resblock(elbo_paramset *ps, int in, int out, int temb_dim, float p) {
    elbo_nn_resblock r;
    elbo_nn_resblock_init(&r, ps, "rb", in, out, temb_dim, RB_G, p);
    elbo_paramset_finalize(ps, 17);
    /* non-trivial affine GroupNorm parameters */
    elbo_tensor *n[4] = {r.norm1.weight, r.norm1.bias, r.norm2.weight, r.norm2.bias};
    for (int k = 0; k < 4; k++)
        for (int64_t i = 0; i < n[k]->numel; i++)
            n[k]->data[i] = (k % 2 ? 0.2f : 1.0f) + 0.3f * (float)i - 0.1f * k;
    return r;
}

/* The block's equation in double from its parameters. */
static void resblock_ref(const elbo_nn_resblock *r, const float *x, const float *temb,
                         double *out) {
    int in = r->in_channels, oc = r->out_channels, N = RB_H * RB_W;
    int nx = RB_B * in * N, nh = RB_B * oc * N;
    double *a = calloc((size_t)nx, sizeof(double)), *h = malloc(sizeof(double) * nh),
           *g = malloc(sizeof(double) * nh), *s = malloc(sizeof(double) * nh);
    for (int i = 0; i < nx; i++) a[i] = x[i];
    double *an = malloc(sizeof(double) * nx);
    gn_ref(a, RB_B, in, N, RB_G, r->norm1.weight->data, r->norm1.bias->data, an);
    for (int i = 0; i < nx; i++) an[i] = silu_d(an[i]);
    conv_ref(an, RB_B, in, RB_H, RB_W, r->conv1.weight->data, r->conv1.bias->data, oc, 3, 1, 1, h,
             NULL, NULL);
    if (r->has_temb)
        for (int b = 0; b < RB_B; b++)
            for (int o = 0; o < oc; o++) {
                double p = r->temb_proj.bias->data[o];
                for (int j = 0; j < RB_T; j++)
                    p += temb[b * RB_T + j] * r->temb_proj.weight->data[o * RB_T + j];
                for (int i = 0; i < N; i++) h[(b * oc + o) * N + i] += p;
            }
    gn_ref(h, RB_B, oc, N, RB_G, r->norm2.weight->data, r->norm2.bias->data, g);
    for (int i = 0; i < nh; i++) g[i] = silu_d(g[i]);
    conv_ref(g, RB_B, oc, RB_H, RB_W, r->conv2.weight->data, r->conv2.bias->data, oc, 3, 1, 1, out,
             NULL, NULL);
    if (r->has_skip)
        conv_ref(a, RB_B, in, RB_H, RB_W, r->skip.weight->data, r->skip.bias->data, oc, 1, 1, 0, s,
                 NULL, NULL);
    else
        memcpy(s, a, sizeof(double) * nh);
    for (int i = 0; i < nh; i++) out[i] += s[i];
    free(a);
    free(an);
    free(h);
    free(g);
    free(s);
}

TEST(nn_resblock_forward_values) {
    for (int variant = 0; variant < 2; variant++) { /* 2 -> 4 with skip and temb; 4 -> 4 plain */
        int in = variant ? RB_OUT : RB_IN, temb_dim = variant ? 0 : RB_T;
        elbo_paramset *ps = elbo_paramset_new();
        elbo_nn_resblock r = make_resblock(ps, in, RB_OUT, temb_dim, 0.0f);
        CHECK(r.has_skip == !variant && r.has_temb == !variant);
        elbo_ctx *ctx = elbo_ctx_new(1 << 20);
        elbo_tensor *x = elbo_tensor_new4(ctx, RB_B, in, RB_H, RB_W);
        elbo_tensor *temb = elbo_tensor_new2(ctx, RB_B, RB_T);
        fill_normal(x->data, x->numel, 21, 1);
        fill_normal(temb->data, temb->numel, 22, 1);
        elbo_tensor *y = elbo_nn_resblock_forward(ctx, &r, x, temb);
        CHECK(y && y->shape[0] == RB_B && y->shape[1] == RB_OUT && y->shape[2] == RB_H &&
              y->shape[3] == RB_W);
        double want[RB_B * RB_OUT * RB_H * RB_W];
        resblock_ref(&r, x->data, temb->data, want);
        /* float GroupNorm statistics over 24 values and 36-term convolutions, twice: ~1e-6 */
        CHECK_NEAR(max_rel(y->data, want, y->numel), 0, 1e-5);
        elbo_ctx_free(ctx);
        elbo_paramset_free(ps);
    }
}

TEST(nn_resblock_dropout_and_errors) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_resblock r = make_resblock(ps, RB_IN, RB_OUT, RB_T, 0.5f);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new4(ctx, RB_B, RB_IN, RB_H, RB_W);
    elbo_tensor *temb = elbo_tensor_new2(ctx, RB_B, RB_T);
    fill_normal(x->data, x->numel, 21, 1);
    fill_normal(temb->data, temb->numel, 22, 1);
    elbo_ctx_set_training(ctx, 0); /* evaluation: dropout is the identity */
    elbo_tensor *y = elbo_nn_resblock_forward(ctx, &r, x, temb);
    double want[RB_B * RB_OUT * RB_H * RB_W];
    resblock_ref(&r, x->data, temb->data, want);
    CHECK(y);
    CHECK_NEAR(max_rel(y->data, want, y->numel), 0, 1e-5);
    elbo_ctx_set_training(ctx, 1);
    elbo_tensor *yt = elbo_nn_resblock_forward(ctx, &r, x, temb);
    CHECK(yt && memcmp(yt->data, y->data, (size_t)y->numel * sizeof(float)) != 0);
    CHECK(elbo_nn_resblock_forward(ctx, &r, x, NULL) == NULL);
    CHECK(strstr(elbo_last_error(), "temb"));
    elbo_tensor *wrong = elbo_tensor_new4(ctx, RB_B, 3, RB_H, RB_W);
    CHECK(elbo_nn_resblock_forward(ctx, &r, wrong, temb) == NULL);
    CHECK(strstr(elbo_last_error(), "rb.norm1"));
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

/* The block runs GroupNorm + SiLU fused (elbo_group_norm_silu); in training with dropout it
 * must give what the unfused chain conv2(dropout(silu(norm2(...)))) gives from the same rng
 * state: the same forward bits (the fused op rounds exactly as the two ops do) and gradients
 * within 1e-5 relative + 1e-6 (only silu' rounding differs). */
static elbo_tensor *resblock_unfused(elbo_ctx *ctx, const elbo_nn_resblock *r, elbo_tensor *x,
                                     elbo_tensor *temb) {
    elbo_tensor *h = elbo_silu(ctx, elbo_nn_group_norm_forward(ctx, &r->norm1, x));
    h = elbo_nn_conv2d_forward(ctx, &r->conv1, h);
    elbo_tensor *tp = elbo_nn_linear_forward(ctx, &r->temb_proj, temb);
    h = elbo_add(ctx, h, elbo_reshape4(ctx, tp, tp->shape[0], tp->shape[1], 1, 1));
    h = elbo_silu(ctx, elbo_nn_group_norm_forward(ctx, &r->norm2, h));
    h = elbo_nn_conv2d_forward(ctx, &r->conv2, elbo_dropout(ctx, h, r->dropout));
    return elbo_add(ctx, h, elbo_nn_conv2d_forward(ctx, &r->skip, x));
}

TEST(nn_resblock_fused_norm_silu_matches_unfused) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_resblock r = make_resblock(ps, RB_IN, RB_OUT, RB_T, 0.3f);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_ctx_set_training(ctx, 1);
    enum { NY = RB_B * RB_OUT * RB_H * RB_W, NX = RB_B * RB_IN * RB_H * RB_W };
    float y[2][NY], gx[2][NX], gw[2][RB_IN];
    for (int k = 0; k < 2; k++) {
        elbo_ctx_reset(ctx);
        elbo_paramset_zero_grad(ps);
        elbo_tensor *x = elbo_tensor_new4(ctx, RB_B, RB_IN, RB_H, RB_W);
        elbo_tensor *temb = elbo_tensor_new2(ctx, RB_B, RB_T);
        fill_normal(x->data, x->numel, 23, 1);
        fill_normal(temb->data, temb->numel, 24, 1);
        elbo_tensor_requires_grad(x, 1);
        elbo_rng_init(elbo_ctx_rng(ctx), 99);
        elbo_tensor *out =
            k ? resblock_unfused(ctx, &r, x, temb) : elbo_nn_resblock_forward(ctx, &r, x, temb);
        CHECK(out && out->numel == NY);
        if (!out) break;
        CHECK(elbo_backward(ctx, elbo_sum(ctx, elbo_square(ctx, out))) == ELBO_OK);
        memcpy(y[k], out->data, sizeof y[k]);
        memcpy(gx[k], x->grad, sizeof gx[k]);
        memcpy(gw[k], r.norm1.weight->grad, sizeof gw[k]);
    }
    CHECK(memcmp(y[0], y[1], sizeof y[0]) == 0);
    for (int i = 0; i < NX; i++) CHECK_NEAR(gx[0][i], gx[1][i], 1e-6 + 1e-5 * fabs(gx[1][i]));
    for (int i = 0; i < RB_IN; i++) CHECK_NEAR(gw[0][i], gw[1][i], 1e-6 + 1e-5 * fabs(gw[1][i]));
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

typedef struct {
    elbo_nn_resblock r;
} rb_user;

/* Gradient inputs: x, temb, conv1.weight, temb_proj.weight, norm2.weight, skip.weight; the
 * other parameters stay those of the paramset. */
static elbo_tensor *build_resblock(elbo_ctx *ctx, elbo_tensor **in, void *user) {
    elbo_nn_resblock r = ((rb_user *)user)->r;
    r.conv1.weight = in[2];
    r.temb_proj.weight = in[3];
    r.norm2.weight = in[4];
    r.skip.weight = in[5];
    return elbo_nn_resblock_forward(ctx, &r, in[0], in[1]);
}

TEST(grad_nn_resblock) {
    elbo_paramset *ps = elbo_paramset_new();
    rb_user u = {make_resblock(ps, RB_IN, RB_OUT, RB_T, 0.0f)};
    elbo_nn_resblock *r = &u.r;
    gc_spec s = {.n_in = 6,
                 .ndim = {4, 2, 4, 2, 1, 4},
                 .shape = {{RB_B, RB_IN, RB_H, RB_W},
                           {RB_B, RB_T},
                           {RB_OUT, RB_IN, 3, 3},
                           {RB_OUT, RB_T},
                           {RB_OUT},
                           {RB_OUT, RB_IN, 1, 1}},
                 .init = {NULL, NULL, r->conv1.weight->data, r->temb_proj.weight->data,
                          r->norm2.weight->data, r->skip.weight->data},
                 /* A smooth chain, but GroupNorm over only 24 values curves strongly: at eps
                  * 1e-2 the truncation error eps^2 |f'''| / 6 reaches 3e-3; at 1e-3 the float
                  * rounding of L = sum w_i y_i (96 outputs, |L| ~ 10) divided by 2 eps
                  * reaches 1e-3. eps 3e-3 balances them: the worst error seen is 2.5e-4,
                  * and 1e-3 + 1e-3 |g| leaves a 4x margin. */
                 .eps = 3e-3f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f,
                 .seed = 31};
    CHECK_GRAD("resblock", build_resblock, &u, &s);
    elbo_paramset_free(ps);
}

/* ---- attention ------------------------------------------------------------------------ */

enum { AT_B = 2, AT_C = 4, AT_H = 2, AT_W = 3, AT_G = 2 };

static elbo_nn_attention make_attention(elbo_paramset *ps) {
    elbo_nn_attention a;
    elbo_nn_attention_init(&a, ps, "attn", AT_C, AT_G);
    elbo_paramset_finalize(ps, 23);
    for (int i = 0; i < AT_C; i++) {
        a.norm.weight->data[i] = 0.8f + 0.2f * i;
        a.norm.bias->data[i] = 0.1f * i - 0.15f;
    }
    /* weights larger than the default init so that the softmax is far from uniform */
    for (int64_t i = 0; i < a.qkv.weight->numel; i++) a.qkv.weight->data[i] *= 3;
    return a;
}

static void attention_ref(const elbo_nn_attention *a, const float *x, double *out) {
    enum { N = AT_H * AT_W, C = AT_C };
    double xd[AT_B * C * N], h[AT_B * C * N], qkv[AT_B * 3 * C * N], o[AT_B * C * N];
    for (int i = 0; i < AT_B * C * N; i++) xd[i] = x[i];
    gn_ref(xd, AT_B, C, N, AT_G, a->norm.weight->data, a->norm.bias->data, h);
    conv_ref(h, AT_B, C, AT_H, AT_W, a->qkv.weight->data, a->qkv.bias->data, 3 * C, 1, 1, 0, qkv,
             NULL, NULL);
    for (int b = 0; b < AT_B; b++) {
        const double *q = qkv + (size_t)b * 3 * C * N, *k = q + C * N, *v = k + C * N;
        for (int i = 0; i < N; i++) {
            double s[N], mx = -1e300, z = 0;
            for (int j = 0; j < N; j++) {
                s[j] = 0;
                for (int c = 0; c < C; c++) s[j] += q[c * N + i] * k[c * N + j];
                s[j] /= sqrt((double)C);
                mx = fmax(mx, s[j]);
            }
            for (int j = 0; j < N; j++) z += (s[j] = exp(s[j] - mx));
            for (int c = 0; c < C; c++) {
                double acc = 0;
                for (int j = 0; j < N; j++) acc += v[c * N + j] * s[j] / z;
                o[(b * C + c) * N + i] = acc;
            }
        }
    }
    conv_ref(o, AT_B, C, AT_H, AT_W, a->proj.weight->data, a->proj.bias->data, C, 1, 1, 0, out,
             NULL, NULL);
    for (int i = 0; i < AT_B * C * N; i++) out[i] += xd[i];
}

TEST(nn_attention_forward_values) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_attention a = make_attention(ps);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    elbo_tensor *x = elbo_tensor_new4(ctx, AT_B, AT_C, AT_H, AT_W);
    fill_normal(x->data, x->numel, 41, 1);
    elbo_tensor *y = elbo_nn_attention_forward(ctx, &a, x);
    CHECK(y && elbo_same_shape(x, y));
    double want[AT_B * AT_C * AT_H * AT_W];
    attention_ref(&a, x->data, want);
    CHECK_NEAR(max_rel(y->data, want, y->numel), 0, 1e-5); /* short float sums: ~1e-6 */
    elbo_tensor *wrong = elbo_tensor_new4(ctx, AT_B, AT_C + 1, AT_H, AT_W);
    CHECK(elbo_nn_attention_forward(ctx, &a, wrong) == NULL);
    CHECK(strstr(elbo_last_error(), "attn.qkv") && strstr(elbo_last_error(), "(2, 5, 2, 3)"));
    elbo_ctx_free(ctx);
    elbo_paramset_free(ps);
}

/* Gradient inputs: x, norm.weight, norm.bias, qkv.weight, qkv.bias, proj.weight. */
static elbo_tensor *build_attention(elbo_ctx *ctx, elbo_tensor **in, void *user) {
    elbo_nn_attention a = *(elbo_nn_attention *)user;
    a.norm.weight = in[1];
    a.norm.bias = in[2];
    a.qkv.weight = in[3];
    a.qkv.bias = in[4];
    a.proj.weight = in[5];
    return elbo_nn_attention_forward(ctx, &a, in[0]);
}

TEST(grad_nn_attention) {
    elbo_paramset *ps = elbo_paramset_new();
    elbo_nn_attention a = make_attention(ps);
    gc_spec s = {.n_in = 6,
                 .ndim = {4, 1, 1, 4, 1, 4},
                 .shape = {{AT_B, AT_C, AT_H, AT_W},
                           {AT_C},
                           {AT_C},
                           {3 * AT_C, AT_C, 1, 1},
                           {3 * AT_C},
                           {AT_C, AT_C, 1, 1}},
                 .init = {NULL, a.norm.weight->data, a.norm.bias->data, a.qkv.weight->data,
                          a.qkv.bias->data, a.proj.weight->data},
                 /* smooth (GroupNorm over 12 values, softmax, products): eps and
                  * tolerance as for the resblock (worst error seen below 2e-4) */
                 .eps = 3e-3f,
                 .atol = 1e-3f,
                 .rtol = 1e-3f,
                 .seed = 43};
    CHECK_GRAD("attention", build_attention, &a, &s);
    elbo_paramset_free(ps);
}

/* A unet-s sized resblock + attention step (B 4, 32 -> 64 channels, 14 x 14, so every
 * parallel loop splits): output and every parameter gradient have the same bits with 1 and
 * 2 threads. */
TEST(nn_blocks_same_bits_any_thread_count) {
    float *res[2];
    int64_t n_out = 0, n_par = 0;
    int saved = elbo_get_threads();
    for (int r = 0; r < 2; r++) {
        elbo_set_threads(r + 1);
        elbo_paramset *ps = elbo_paramset_new();
        elbo_nn_resblock rb;
        elbo_nn_attention at;
        CHECK(elbo_nn_resblock_init(&rb, ps, "rb", 32, 64, 16, 8, 0.1f) == ELBO_OK);
        CHECK(elbo_nn_attention_init(&at, ps, "attn", 64, 8) == ELBO_OK);
        CHECK(elbo_paramset_finalize(ps, 77) == ELBO_OK);
        elbo_ctx *ctx = elbo_ctx_new(0);
        elbo_rng_init(elbo_ctx_rng(ctx), 5); /* dropout masks */
        elbo_tensor *x = elbo_tensor_new4(ctx, 4, 32, 14, 14), *temb = elbo_tensor_new2(ctx, 4, 16);
        fill_normal(x->data, x->numel, 1, 1);
        fill_normal(temb->data, temb->numel, 2, 1);
        elbo_tensor *y =
            elbo_nn_attention_forward(ctx, &at, elbo_nn_resblock_forward(ctx, &rb, x, temb));
        CHECK(y);
        CHECK(elbo_backward(ctx, elbo_mean(ctx, elbo_square(ctx, y))) == ELBO_OK);
        n_out = y->numel;
        n_par = elbo_paramset_numel(ps);
        res[r] = malloc((size_t)(n_out + n_par) * sizeof(float));
        memcpy(res[r], y->data, (size_t)n_out * sizeof(float));
        memcpy(res[r] + n_out, elbo_paramset_grad(ps), (size_t)n_par * sizeof(float));
        elbo_ctx_free(ctx);
        elbo_paramset_free(ps);
    }
    elbo_set_threads(saved);
    int same = !memcmp(res[0], res[1], (size_t)(n_out + n_par) * sizeof(float));
    double gsum = 0;
    for (int64_t i = 0; i < n_par; i++) gsum += fabs(res[0][n_out + i]);
    free(res[0]);
    free(res[1]);
    CHECK(same);
    CHECK(gsum > 0);
}

/* The tape's sinusoidal embedding: the same values as elbo_timestep_embedding (bit for
 * bit: sin and cos in double of the same float argument) and d emb / d t against finite
 * differences. */
static elbo_tensor *build_temb_t(elbo_ctx *ctx, elbo_tensor **in, void *user) {
    (void)user;
    return elbo_timestep_embedding_t(ctx, in[0], 16);
}

TEST(nn_timestep_embedding_t_grad) {
    elbo_ctx *ctx = elbo_ctx_new(0);
    const float t[4] = {0.0f, 0.37f, 2.5f, 9.0f};
    elbo_tensor *tt = elbo_tensor_new1(ctx, 4);
    memcpy(tt->data, t, sizeof t);
    elbo_tensor *a = elbo_timestep_embedding(ctx, t, 4, 16), *b = elbo_timestep_embedding_t(ctx, tt, 16);
    CHECK(a && b && memcmp(a->data, b->data, 64 * sizeof(float)) == 0);
    CHECK(elbo_timestep_embedding_t(ctx, tt, 15) == NULL);
    elbo_ctx_free(ctx);
    gc_spec s = {.n_in = 1, .ndim = {1}, .shape = {{4}}, .init = {t}, .eps = 1e-3f, .atol = 2e-3f, .rtol = 2e-3f};
    CHECK_GRAD("timestep_embedding_t", build_temb_t, NULL, &s);
}
