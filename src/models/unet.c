/* DDPM-style UNet (Ho et al. 2020, appendix B; the layout of bench-models.md's unet-s) with
 * one skip connection per level, and the DDPM epsilon-prediction loss.
 *
 * Down level l: [Conv3x3 stride 2 pad 1, channels kept, for l > 0], then blocks_per_level
 * ResBlocks to channels[l] (each followed by attention when attn[l]); its output s_l is the
 * level's skip. Middle: one ResBlock. Up level l, from the top down: [nearest upsampling x2
 * for l below the top], cat(u, s_l) on channels, then blocks_per_level ResBlocks to
 * channels[l-1] (channels[0] at level 0), each followed by attention when attn[l] == 2.
 * Output: Conv3x3(SiLU(GroupNorm(u))). Parameter names follow the PyTorch module tree of
 * tools/torch_models.py: temb.0, temb.2; conv_in; down.{l}.down, down.{l}.res.{j},
 * down.{l}.attn.{j}; mid.res; up.{l}.res.{j}, up.{l}.attn.{j}; norm_out; conv_out.
 */
#include "internal.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdlib.h>

typedef struct {
    elbo_nn_conv2d down; /* level > 0 only */
    elbo_nn_resblock res[ELBO_UNET_MAX_BLOCKS];
    elbo_nn_attention attn[ELBO_UNET_MAX_BLOCKS];
    int has_attn;
} unet_level;

struct elbo_unet {
    elbo_unet_params p;
    elbo_nn_time_embedding temb;
    elbo_nn_embedding label_emb; /* n_classes > 0 only */
    elbo_nn_conv2d conv_in, conv_out;
    unet_level down[ELBO_UNET_MAX_LEVELS], up[ELBO_UNET_MAX_LEVELS];
    elbo_nn_resblock mid;
    elbo_nn_group_norm norm_out;
};

void elbo_unet_params_init(elbo_unet_params *p) {
    memset(p, 0, sizeof *p);
    p->in_channels = 1;
    p->out_channels = 1;
    p->n_levels = 3;
    p->channels[0] = 32;
    p->channels[1] = 64;
    p->channels[2] = 64;
    p->blocks_per_level = 1;
    p->attn[2] = 1;
    p->temb_dim = 128;
    p->groups = 8;
    p->dropout = 0.0f;
}

static elbo_status check_params(const elbo_unet_params *p) {
    if (p->in_channels < 1 || p->out_channels < 1)
        return elbo_error(ELBO_ERR_ARG, "unet: in_channels %d and out_channels %d must be >= 1",
                          p->in_channels, p->out_channels);
    if (p->n_levels < 1 || p->n_levels > ELBO_UNET_MAX_LEVELS)
        return elbo_error(ELBO_ERR_ARG, "unet: n_levels %d not in [1, %d]", p->n_levels,
                          ELBO_UNET_MAX_LEVELS);
    if (p->blocks_per_level < 1 || p->blocks_per_level > ELBO_UNET_MAX_BLOCKS)
        return elbo_error(ELBO_ERR_ARG, "unet: blocks_per_level %d not in [1, %d]",
                          p->blocks_per_level, ELBO_UNET_MAX_BLOCKS);
    if (p->groups < 1) return elbo_error(ELBO_ERR_ARG, "unet: groups %d must be >= 1", p->groups);
    if (p->n_classes < 0 || p->n_classes > 100000)
        return elbo_error(ELBO_ERR_ARG, "unet: n_classes %d not in [0, 100000]", p->n_classes);
    if (p->temb_dim < 2 || p->temb_dim % 2)
        return elbo_error(ELBO_ERR_ARG, "unet: temb_dim %d must be even and >= 2", p->temb_dim);
    if (!(p->dropout >= 0.0f && p->dropout < 1.0f))
        return elbo_error(ELBO_ERR_ARG, "unet: dropout %g not in [0, 1)", (double)p->dropout);
    for (int l = 0; l < p->n_levels; l++) {
        if (p->channels[l] < 1 || p->channels[l] % p->groups)
            return elbo_error(ELBO_ERR_ARG,
                              "unet: channels[%d] = %d must be a positive multiple of groups %d", l,
                              p->channels[l], p->groups);
        if (p->attn[l] < 0 || p->attn[l] > 2)
            return elbo_error(ELBO_ERR_ARG, "unet: attn[%d] = %d not in {0, 1, 2}", l, p->attn[l]);
    }
    return ELBO_OK;
}

/* Declares the parameters in the order of the PyTorch module tree (named_parameters). */
static elbo_status declare(elbo_unet *u, elbo_paramset *ps, const char *prefix) {
    const elbo_unet_params *p = &u->p;
    const int L = p->n_levels, nb = p->blocks_per_level, td = p->temb_dim, g = p->groups;
    const int *ch = p->channels;
    char a[256], b[256], c[256];
    elbo_status st;
#define TRY(x)                                                                                     \
    do {                                                                                           \
        if ((st = (x)) != ELBO_OK) return st;                                                      \
    } while (0)
    TRY(elbo_nn_time_embedding_init(&u->temb, ps, elbo_name_join(a, sizeof a, prefix, "temb"), td,
                                    td));
    if (p->n_classes > 0)
        TRY(elbo_nn_embedding_init(&u->label_emb, ps, elbo_name_join(a, sizeof a, prefix, "label_emb"),
                                   p->n_classes + 1, td));
    TRY(elbo_nn_conv2d_init(&u->conv_in, ps, elbo_name_join(a, sizeof a, prefix, "conv_in"),
                            p->in_channels, ch[0], 3, 1, 1, 1));
    const char *down = elbo_name_join(c, sizeof c, prefix, "down");
    int cur = ch[0];
    for (int l = 0; l < L; l++) {
        unet_level *lv = &u->down[l];
        const char *lname = elbo_name_index(a, sizeof a, down, l);
        char lbuf[256];
        snprintf(lbuf, sizeof lbuf, "%s", lname);
        if (l > 0)
            TRY(elbo_nn_conv2d_init(&lv->down, ps, elbo_name_join(b, sizeof b, lbuf, "down"), cur,
                                    cur, 3, 2, 1, 1));
        char rbuf[256];
        snprintf(rbuf, sizeof rbuf, "%s", elbo_name_join(b, sizeof b, lbuf, "res"));
        for (int j = 0; j < nb; j++)
            TRY(elbo_nn_resblock_init(&lv->res[j], ps, elbo_name_index(b, sizeof b, rbuf, j),
                                      j == 0 ? cur : ch[l], ch[l], td, g, p->dropout));
        lv->has_attn = p->attn[l] != 0;
        if (lv->has_attn) {
            snprintf(rbuf, sizeof rbuf, "%s", elbo_name_join(b, sizeof b, lbuf, "attn"));
            for (int j = 0; j < nb; j++)
                TRY(elbo_nn_attention_init(&lv->attn[j], ps, elbo_name_index(b, sizeof b, rbuf, j),
                                           ch[l], g));
        }
        cur = ch[l];
    }
    TRY(elbo_nn_resblock_init(&u->mid, ps, elbo_name_join(a, sizeof a, prefix, "mid.res"), cur, cur,
                              td, g, p->dropout));
    /* Up levels: the input width of level l depends on the levels above it. */
    int in_ch[ELBO_UNET_MAX_LEVELS];
    for (int l = L - 1; l >= 0; l--) {
        in_ch[l] = cur;
        cur = l > 0 ? ch[l - 1] : ch[0];
    }
    const char *up = elbo_name_join(c, sizeof c, prefix, "up");
    for (int l = 0; l < L; l++) {
        unet_level *lv = &u->up[l];
        int co = l > 0 ? ch[l - 1] : ch[0];
        char lbuf[256], rbuf[256];
        snprintf(lbuf, sizeof lbuf, "%s", elbo_name_index(a, sizeof a, up, l));
        snprintf(rbuf, sizeof rbuf, "%s", elbo_name_join(b, sizeof b, lbuf, "res"));
        for (int j = 0; j < nb; j++)
            TRY(elbo_nn_resblock_init(&lv->res[j], ps, elbo_name_index(b, sizeof b, rbuf, j),
                                      j == 0 ? in_ch[l] + ch[l] : co, co, td, g, p->dropout));
        lv->has_attn = p->attn[l] == 2;
        if (lv->has_attn) {
            snprintf(rbuf, sizeof rbuf, "%s", elbo_name_join(b, sizeof b, lbuf, "attn"));
            for (int j = 0; j < nb; j++)
                TRY(elbo_nn_attention_init(&lv->attn[j], ps, elbo_name_index(b, sizeof b, rbuf, j),
                                           co, g));
        }
    }
    TRY(elbo_nn_group_norm_init(&u->norm_out, ps, elbo_name_join(a, sizeof a, prefix, "norm_out"),
                                g, ch[0]));
    TRY(elbo_nn_conv2d_init(&u->conv_out, ps, elbo_name_join(a, sizeof a, prefix, "conv_out"),
                            ch[0], p->out_channels, 3, 1, 1, 1));
#undef TRY
    return ELBO_OK;
}

elbo_unet *elbo_unet_new(elbo_paramset *ps, const char *prefix, const elbo_unet_params *p) {
    if (!ps || !p) {
        elbo_error(ELBO_ERR_ARG, "unet: NULL paramset or params");
        return NULL;
    }
    if (check_params(p) != ELBO_OK) return NULL;
    elbo_unet *u = calloc(1, sizeof *u);
    if (!u) {
        elbo_error(ELBO_ERR_NOMEM, "unet: out of memory");
        return NULL;
    }
    u->p = *p;
    if (declare(u, ps, prefix ? prefix : "") != ELBO_OK) {
        free(u);
        return NULL;
    }
    return u;
}

void elbo_unet_free(elbo_unet *u) { free(u); }

/* x (B, in, H, W), t[0..B) -> eps_hat (B, out, H, W); H and W divisible by 2^(levels-1). */
elbo_tensor *elbo_unet_forward(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x, const float *t) {
    return elbo_unet_forward_cond(ctx, u, x, t, NULL);
}

static elbo_tensor *unet_forward(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x,
                                 const float *t, elbo_tensor *t_tensor, const int32_t *labels);

elbo_tensor *elbo_unet_forward_cond(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x,
                                    const float *t, const int32_t *labels) {
    return unet_forward(ctx, u, x, t, NULL, labels);
}

elbo_tensor *elbo_unet_forward_t(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x, elbo_tensor *t,
                                 const int32_t *labels) {
    if (!t) return NULL;
    return unet_forward(ctx, u, x, NULL, t, labels);
}

static elbo_tensor *unet_forward(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x,
                                 const float *t, elbo_tensor *t_tensor, const int32_t *labels) {
    if (!x) return NULL;
    if (!u || (!t && !t_tensor)) {
        elbo_error(ELBO_ERR_ARG, "unet: NULL model or times");
        return NULL;
    }
    const elbo_unet_params *p = &u->p;
    const int L = p->n_levels, nb = p->blocks_per_level;
    const int64_t div = (int64_t)1 << (L - 1);
    if (x->ndim != 4 || x->shape[1] != p->in_channels || x->shape[2] % div || x->shape[3] % div ||
        x->shape[2] < 1 || x->shape[3] < 1) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE,
                   "unet: input %s must be (B, %d, H, W) with H and W multiples of %lld",
                   elbo_shape_str(x, s, sizeof s), p->in_channels, (long long)div);
        return NULL;
    }
    elbo_tensor *temb = t_tensor ? elbo_nn_time_embedding_forward_t(ctx, &u->temb, t_tensor)
                                 : elbo_nn_time_embedding_forward(ctx, &u->temb, t, x->shape[0]);
    if (p->n_classes > 0) {
        /* temb + label_emb(y), y = the null label n_classes where no label is given */
        const int64_t B = x->shape[0];
        int32_t *y = elbo_ctx_alloc(ctx, (size_t)B * sizeof *y);
        if (!y) return NULL;
        for (int64_t i = 0; i < B; i++) {
            y[i] = labels ? labels[i] : p->n_classes;
            if (y[i] < 0 || y[i] > p->n_classes) {
                elbo_error(ELBO_ERR_ARG, "unet: label %d of example %lld not in [0, %d]", y[i],
                           (long long)i, p->n_classes);
                return NULL;
            }
        }
        temb = elbo_add(ctx, temb, elbo_nn_embedding_forward(ctx, &u->label_emb, y, B));
    } else if (labels) {
        elbo_error(ELBO_ERR_ARG, "unet: labels given to an unconditional UNet");
        return NULL;
    }
    elbo_tensor *h = elbo_nn_conv2d_forward(ctx, &u->conv_in, x);
    elbo_tensor *skip[ELBO_UNET_MAX_LEVELS];
    for (int l = 0; l < L; l++) {
        const unet_level *lv = &u->down[l];
        if (l > 0) h = elbo_nn_conv2d_forward(ctx, &lv->down, h);
        for (int j = 0; j < nb; j++) {
            h = elbo_nn_resblock_forward(ctx, &lv->res[j], h, temb);
            if (lv->has_attn) h = elbo_nn_attention_forward(ctx, &lv->attn[j], h);
        }
        skip[l] = h;
    }
    h = elbo_nn_resblock_forward(ctx, &u->mid, h, temb);
    for (int l = L - 1; l >= 0; l--) {
        const unet_level *lv = &u->up[l];
        if (l < L - 1) h = elbo_upsample_nearest2x(ctx, h);
        h = elbo_cat2(ctx, h, skip[l], 1);
        for (int j = 0; j < nb; j++) {
            h = elbo_nn_resblock_forward(ctx, &lv->res[j], h, temb);
            if (lv->has_attn) h = elbo_nn_attention_forward(ctx, &lv->attn[j], h);
        }
    }
    if (!h) return NULL;
    h = elbo__in_layer(elbo_group_norm_silu(ctx, h, u->norm_out.groups, u->norm_out.weight,
                                            u->norm_out.bias, u->norm_out.eps),
                       u->norm_out.weight); /* SiLU(norm_out(h)), fused */
    return elbo_nn_conv2d_forward(ctx, &u->conv_out, h);
}

/* beta_i = beta_1 + (beta_T - beta_1) i / (T - 1), alpha_bar_i = prod_{s <= i} (1 - beta_s),
 * accumulated in double and rounded once (as numpy.cumprod over numpy.linspace). */
void elbo_ddpm_alpha_bar_linear(float *alpha_bar, int T, double beta_1, double beta_T) {
    double step = T > 1 ? (beta_T - beta_1) / (T - 1) : 0.0, prod = 1.0;
    for (int i = 0; i < T; i++) {
        double beta = i == T - 1 && T > 1 ? beta_T : beta_1 + i * step;
        prod *= 1.0 - beta;
        alpha_bar[i] = (float)prod;
    }
}

/* L_simple = mean (eps - eps_hat(x_t, t))^2,  x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps
 * (Ho et al. 2020, eq. 14). The caller guarantees t[i] < length of alpha_bar. */
elbo_tensor *elbo_ddpm_eps_loss(elbo_ctx *ctx, const elbo_unet *u, elbo_tensor *x0,
                                const int32_t *t, elbo_tensor *eps, const float *alpha_bar) {
    if (!x0 || !eps) return NULL;
    if (!u || !t || !alpha_bar) {
        elbo_error(ELBO_ERR_ARG, "ddpm_eps_loss: NULL model, times or alpha_bar");
        return NULL;
    }
    if (!elbo_same_shape(x0, eps) || x0->ndim != 4) {
        elbo__shape_error("ddpm_eps_loss", x0, eps, "x0 and eps must have one (B,C,H,W) shape");
        return NULL;
    }
    const int64_t B = x0->shape[0];
    elbo_tensor *a = elbo_tensor_new4(ctx, B, 1, 1, 1), *s = elbo_tensor_new4(ctx, B, 1, 1, 1);
    float *tf = elbo_ctx_alloc(ctx, (size_t)B * sizeof(float));
    if (!a || !s || !tf) return NULL;
    for (int64_t i = 0; i < B; i++) {
        if (t[i] < 0) {
            elbo_error(ELBO_ERR_ARG, "ddpm_eps_loss: t[%lld] = %d is negative", (long long)i, t[i]);
            return NULL;
        }
        float ab = alpha_bar[t[i]];
        a->data[i] = sqrtf(ab);
        s->data[i] = sqrtf(1.0f - ab);
        tf[i] = (float)t[i];
    }
    elbo_tensor *x_t = elbo_add(ctx, elbo_mul(ctx, x0, a), elbo_mul(ctx, eps, s));
    elbo_tensor *eps_hat = elbo_unet_forward(ctx, u, x_t, tf);
    return elbo_mse_loss(ctx, eps_hat, eps, ELBO_REDUCE_MEAN);
}
