/* The variational diffusion model (Kingma et al. 2021; Ho et al. 2020) behind the
 * elbo_model interface: see include/elbo/diffusion_model.h. The pieces it joins live
 * elsewhere: the process and the bound's terms in diffusion_process.c / diffusion_bound.c,
 * the samplers in src/sample/, the UNet in unet.c; this file is the network, the loss on the
 * tape and the bookkeeping. */
#include "internal.h"

#include "elbo/diffusion_model.h"
#include "elbo/train.h"
#include "io/json.h"
#include "models/vae_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    elbo_model base;
    elbo_diffusion_config cfg;
    elbo_paramset *ps;
    elbo_unet *unet;
    elbo_nn_mlp mlp;             /* net mlp: [x, temb] -> x-shaped output */
    elbo_nn_embedding label_emb; /* net mlp with classes */
    int64_t D;
    /* schedule learned: VDM's monotone network (parameters gamma.*), and what the last
     * loss() leaves for after_backward */
    elbo_tensor *g_w1, *g_w2, *g_b2, *g_w3, *g_0, *g_1;
    elbo_learned_schedule learned;
    double *vjp_work, *vjp_grad; /* 5 (3n + 1) and 2 (3n + 3) doubles, allocated once */
    struct {
        int64_t B;
        double *t, *s, *L;           /* times, the step before (T steps), diffusion terms */
        double *coef;                /* 7 B doubles of step memory for after_backward */
        elbo_tensor *G, *Gp, *Gs;    /* gamma(t), gamma'(t), gamma(s): leaves of the tape */
        double drecon, dprior;       /* d (mean recon) / d gamma_0, d (mean prior) / d gamma_1 */
    } last;
} diffusion_model;

#define LEARNED_FEATURES 1024 /* VDM's n */

void elbo_diffusion_config_init(elbo_diffusion_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->c = 1;
    cfg->h = 28;
    cfg->w = 28;
    cfg->net = ELBO_DENOISER_UNET;
    elbo_unet_params_init(&cfg->unet);
    cfg->unet.attn[cfg->unet.n_levels - 1] = 2; /* attention in both paths, as DDPM */
    cfg->mlp_hidden = 256;
    cfg->mlp_layers = 3;
    cfg->mlp_temb = 64;
    elbo_process_init(&cfg->process);
    cfg->param = ELBO_PARAM_EPS;
    cfg->loss = ELBO_LOSS_ELBO;
    cfg->T = 0;
    cfg->classes = 0;
    cfg->p_uncond = 0.1f;
    cfg->discrete = 1;
}

/* The network sees the time scaled to DDPM's step range, 1000 t, in its sinusoidal
 * embedding; with a learned schedule it sees the noise level instead, 1000 (gamma(t) -
 * gamma_min) / (gamma_max - gamma_min) over the configured endpoints (as VDM conditions its
 * network on gamma_t), so that the network is a function of the noise level whatever the
 * schedule becomes. */
#define TIME_SCALE 1000.0
static float net_time(const diffusion_model *dm, const elbo_noise_level *l) {
    const elbo_process *p = &dm->cfg.process;
    if (p->schedule != ELBO_SCHEDULE_LEARNED) return (float)(TIME_SCALE * l->t);
    return (float)(TIME_SCALE * (p->log_snr_max - l->log_snr) / (p->log_snr_max - p->log_snr_min));
}

/* VDM's Fourier features (Kingma et al. 2021, app. B; vdm's Base2FourierFeatures(6, 8)):
 * [x, sin(2^6 2 pi x), sin(2^7 2 pi x), cos(2^6 2 pi x), cos(2^7 2 pi x)] along the channels
 * (B, 5 c, h, w), on the tape. */
#define FOURIER_N0 6
#define FOURIER_NF 2
static elbo_tensor *fourier_features(elbo_ctx *ctx, elbo_tensor *x) {
    elbo_tensor *s = NULL, *co = NULL;
    for (int k = 0; k < FOURIER_NF; k++) {
        elbo_tensor *f = elbo_scale(ctx, x, (float)(ldexp(2.0 * M_PI, FOURIER_N0 + k)));
        s = k ? elbo_cat2(ctx, s, elbo_sin(ctx, f), 1) : elbo_sin(ctx, f);
        co = k ? elbo_cat2(ctx, co, elbo_cos(ctx, f), 1) : elbo_cos(ctx, f);
    }
    return elbo_cat2(ctx, elbo_cat2(ctx, x, s, 1), co, 1);
}

/* pred (B, c, h, w) = net(x_t, t, y) at the levels lv[0..B), or at the network times t_net (B)
 * on the tape when given (the learned schedule): labels NULL means the null label. */
static elbo_tensor *net_forward(elbo_ctx *ctx, const diffusion_model *dm, elbo_tensor *x_t,
                                const elbo_noise_level *lv, elbo_tensor *t_net,
                                const int32_t *labels) {
    const elbo_diffusion_config *c = &dm->cfg;
    const int64_t B = x_t->shape[0];
    float *tf = elbo_ctx_alloc(ctx, (size_t)B * sizeof *tf);
    if (!tf) return NULL;
    for (int64_t b = 0; b < B; b++) tf[b] = net_time(dm, &lv[b]);
    if (c->net == ELBO_DENOISER_UNET) {
        elbo_tensor *in = c->fourier ? fourier_features(ctx, x_t) : x_t;
        return t_net ? elbo_unet_forward_t(ctx, dm->unet, in, t_net, c->classes ? labels : NULL)
                     : elbo_unet_forward_cond(ctx, dm->unet, in, tf, c->classes ? labels : NULL);
    }
    /* mlp: h = [x_t, emb(t) (+ label_emb(y))] */
    elbo_tensor *emb = t_net ? elbo_timestep_embedding_t(ctx, t_net, c->mlp_temb)
                             : elbo_timestep_embedding(ctx, tf, B, c->mlp_temb);
    if (c->classes) {
        int32_t *y = elbo_ctx_alloc(ctx, (size_t)B * sizeof *y);
        if (!y) return NULL;
        for (int64_t b = 0; b < B; b++) y[b] = labels ? labels[b] : c->classes;
        emb = elbo_add(ctx, emb, elbo_nn_embedding_forward(ctx, &dm->label_emb, y, B));
    }
    elbo_tensor *h = elbo_cat2(ctx, elbo_reshape2(ctx, x_t, B, dm->D), emb, 1);
    elbo_tensor *out = elbo_nn_mlp_forward(ctx, &dm->mlp, h);
    return out ? elbo_reshape4(ctx, out, B, c->c, c->h, c->w) : NULL;
}

/* One batch of the bound's pieces, shared by loss and eval:
 *   x (B, D) data, t[B] times (in (0, 1]), eps (B, D) noise, labels or NULL ->
 *   sq (B): ||eps - eps_hat||^2 per example (on the tape when grad is on), and the levels. */
static elbo_tensor *squared_error(elbo_ctx *ctx, const diffusion_model *dm, const float *x,
                                  const double *t, const float *eps, const int32_t *labels,
                                  int64_t B, elbo_noise_level *lv) {
    const elbo_diffusion_config *c = &dm->cfg;
    const int64_t D = dm->D;
    elbo_tensor *x_t = elbo_tensor_new4(ctx, B, c->c, c->h, c->w);
    elbo_tensor *a = elbo_tensor_new4(ctx, B, 1, 1, 1);
    elbo_tensor *rest = elbo_tensor_new4(ctx, B, c->c, c->h, c->w); /* k x_t - eps */
    if (!x_t || !a || !rest) return NULL;
    for (int64_t b = 0; b < B; b++) {
        if (elbo_process_at(&c->process, t[b], &lv[b]) != ELBO_OK) return NULL;
        double ca, kx;
        elbo_param_eps_coefs(c->param, lv[b].alpha, lv[b].sigma, &ca, &kx);
        a->data[b] = (float)ca;
        for (int64_t i = 0; i < D; i++) {
            double xt = lv[b].alpha * x[b * D + i] + lv[b].sigma * eps[b * D + i];
            x_t->data[b * D + i] = (float)xt;
            rest->data[b * D + i] = (float)(kx * xt - eps[b * D + i]);
        }
    }
    elbo_tensor *pred = net_forward(ctx, dm, x_t, lv, NULL, labels);
    elbo_tensor *r = elbo_add(ctx, elbo_mul(ctx, pred, a), rest); /* eps_hat - eps */
    const int axes[3] = {1, 2, 3};
    return elbo_sum_axes(ctx, elbo_square(ctx, r), 3, axes, 0);
}

/* Times, noise and (for training) dropped labels of one batch, from rng. */
static elbo_status draw_batch(elbo_ctx *ctx, const diffusion_model *dm, int64_t B,
                              const int32_t *labels, int drop, elbo_rng *rng, double **t,
                              float **eps, int32_t **y) {
    const elbo_diffusion_config *c = &dm->cfg;
    *t = elbo_ctx_alloc(ctx, (size_t)B * sizeof **t);
    *eps = elbo_ctx_alloc(ctx, (size_t)(B * dm->D) * sizeof **eps);
    *y = NULL;
    if (!*t || !*eps) return elbo_last_status();
    elbo_diffusion_sample_times(rng, (int)B, 1, c->T, *t);
    if (c->levels > 1) /* the ladder: level floor(u L) of t in (0, 1], u = t (low-discrepancy) */
        for (int64_t b = 0; b < B; b++) {
            int i = (int)((*t)[b] * c->levels);
            (*t)[b] = (double)(i < c->levels ? i : c->levels - 1) / (c->levels - 1);
        }
    elbo_rng_normal(rng, *eps, (size_t)(B * dm->D), 0.0f, 1.0f);
    if (c->classes && labels) {
        *y = elbo_ctx_alloc(ctx, (size_t)B * sizeof **y);
        float *u = elbo_ctx_alloc(ctx, (size_t)B * sizeof *u);
        if (!*y || !u) return elbo_last_status();
        elbo_rng_uniform(rng, u, (size_t)B, 0.0f, 1.0f);
        for (int64_t b = 0; b < B; b++) {
            if (labels[b] < 0 || labels[b] >= c->classes)
                return elbo_error(ELBO_ERR_ARG, "diffusion: label %d not in [0, %d)", labels[b],
                                  c->classes);
            (*y)[b] = drop && u[b] < c->p_uncond ? c->classes : labels[b];
        }
    }
    return ELBO_OK;
}

/* The ELBO weight of example b (continuous or T-step). */
static double elbo_weight(const diffusion_model *dm, const elbo_noise_level *l) {
    const int T = dm->cfg.T;
    if (T <= 0) return elbo_diffusion_weight(ELBO_LOSS_ELBO, l, NULL, 0);
    elbo_noise_level s;
    if (elbo_process_at(&dm->cfg.process, l->t - 1.0 / T < 0 ? 0 : l->t - 1.0 / T, &s) != ELBO_OK)
        return NAN;
    return elbo_diffusion_weight(ELBO_LOSS_ELBO, l, &s, T);
}

/* The prior and reconstruction terms of example b (constants of a fixed schedule), at the
 * levels zero (t = 0) and one (t = 1). */
static void end_terms(const diffusion_model *dm, const elbo_noise_level *zero,
                      const elbo_noise_level *one, const float *x, const float *eps0, int64_t b,
                      double *prior, double *recon) {
    const elbo_diffusion_config *c = &dm->cfg;
    const float *xb = x + b * dm->D, *eb = eps0 + b * dm->D;
    *prior = elbo_diffusion_prior_kl(one, elbo_process_prior_std(&c->process), xb, dm->D);
    *recon = c->discrete ? elbo_diffusion_recon_8bit(zero, xb, eb, dm->D)
                         : elbo_diffusion_recon_gauss(zero, xb, eb, dm->D);
}

/* The process at t = 0 and t = 1 (the end terms' levels), once per batch. */
static elbo_status end_levels(const diffusion_model *dm, elbo_noise_level *zero,
                              elbo_noise_level *one) {
    elbo_status st = elbo_process_at(&dm->cfg.process, 0.0, zero);
    return st ? st : elbo_process_at(&dm->cfg.process, 1.0, one);
}

/* The bound with a learned schedule (VDM): gamma(t_b), gamma'(t_b) and, for T steps,
 * gamma(s_b) enter the tape as leaves, alpha = sqrt(sigmoid(-gamma)), sigma =
 * sqrt(sigmoid(gamma)), x_t = alpha x + sigma eps, L_b = 1/2 w_b ||eps - eps_hat||^2 with
 * w = gamma' (continuous) or T expm1(gamma(t) - gamma(s)); after_backward turns the leaves'
 * gradients into the schedule's (learned_after_backward). The network's noise-level input
 * is on the tape too (a differentiated sinusoidal embedding), as in VDM. */
static elbo_tensor *learned_loss(elbo_ctx *ctx, diffusion_model *dm, const float *x,
                                 const int32_t *y, int64_t B, const double *t, const float *eps,
                                 elbo_noise_level *lv, double *extra) {
    const elbo_diffusion_config *c = &dm->cfg;
    const int T = c->T;
    elbo_tensor *G = elbo_tensor_new1(ctx, B), *Gp = elbo_tensor_new1(ctx, B);
    elbo_tensor *Gs = T ? elbo_tensor_new1(ctx, B) : NULL;
    double *ts = elbo_ctx_alloc(ctx, (size_t)B * sizeof *ts), *L = elbo_ctx_alloc(ctx, (size_t)B * sizeof *L);
    double *coef = elbo_ctx_alloc(ctx, (size_t)(7 * B) * sizeof *coef);
    if (!G || !Gp || (T && !Gs) || !ts || !L || !coef) return NULL;
    for (int64_t b = 0; b < B; b++) {
        elbo_noise_level ls;
        if (elbo_process_at(&c->process, t[b], &lv[b]) != ELBO_OK) return NULL;
        G->data[b] = (float)-lv[b].log_snr;
        Gp->data[b] = (float)-lv[b].dlog_snr_dt;
        ts[b] = T ? (t[b] - 1.0 / T > 0 ? t[b] - 1.0 / T : 0.0) : 0.0;
        if (T) {
            if (elbo_process_at(&c->process, ts[b], &ls) != ELBO_OK) return NULL;
            Gs->data[b] = (float)-ls.log_snr;
        }
    }
    elbo_tensor_requires_grad(G, 1);
    elbo_tensor_requires_grad(Gp, 1);
    if (Gs) elbo_tensor_requires_grad(Gs, 1);
    elbo_tensor *alpha = elbo_reshape4(ctx, elbo_sqrt(ctx, elbo_sigmoid(ctx, elbo_neg(ctx, G))), B, 1, 1, 1);
    elbo_tensor *sigma = elbo_reshape4(ctx, elbo_sqrt(ctx, elbo_sigmoid(ctx, G)), B, 1, 1, 1);
    int64_t shape[4] = {B, c->c, c->h, c->w};
    elbo_tensor *xw = elbo_tensor_wrap(ctx, (float *)x, 4, shape), *ew = elbo_tensor_wrap(ctx, (float *)eps, 4, shape);
    elbo_tensor *x_t = elbo_add(ctx, elbo_mul(ctx, xw, alpha), elbo_mul(ctx, ew, sigma));
    /* the network's noise-level input, 1000 (gamma - gamma_min) / (gamma_max - gamma_min), on
     * the tape (as net_time) */
    const double lmax = c->process.log_snr_max, lmin = c->process.log_snr_min;
    elbo_tensor *t_net = elbo_scale(ctx, elbo_add_scalar(ctx, G, (float)lmax), (float)(TIME_SCALE / (lmax - lmin)));
    elbo_tensor *pred = x_t ? net_forward(ctx, dm, x_t, lv, t_net, y) : NULL, *eps_hat;
    switch (c->param) { /* eps_hat from the prediction (VP: alpha^2 + sigma^2 = 1) */
    case ELBO_PARAM_X0: eps_hat = elbo_div(ctx, elbo_sub(ctx, x_t, elbo_mul(ctx, alpha, pred)), sigma); break;
    case ELBO_PARAM_V: eps_hat = elbo_add(ctx, elbo_mul(ctx, sigma, x_t), elbo_mul(ctx, alpha, pred)); break;
    case ELBO_PARAM_SCORE: eps_hat = elbo_neg(ctx, elbo_mul(ctx, sigma, pred)); break;
    default: eps_hat = pred; break;
    }
    const int axes[3] = {1, 2, 3};
    elbo_tensor *sq = elbo_sum_axes(ctx, elbo_square(ctx, elbo_sub(ctx, eps_hat, ew)), 3, axes, 0);
    elbo_tensor *w = T ? elbo_scale(ctx, elbo_add_scalar(ctx, elbo_exp(ctx, elbo_sub(ctx, G, Gs)), -1.0f), (float)T)
                       : Gp;
    elbo_tensor *Lv = elbo_scale(ctx, elbo_mul(ctx, w, sq), 0.5f);
    elbo_tensor *loss = elbo_scale(ctx, elbo_sum(ctx, Lv), 1.0f / (float)B);
    if (!loss) return NULL;
    elbo_noise_level zero, one;
    if (end_levels(dm, &zero, &one) != ELBO_OK) return NULL;
    double ends = 0, diff = 0, mse = 0, drecon = 0, dprior = 0, prior, recon;
    for (int64_t b = 0; b < B; b++) {
        end_terms(dm, &zero, &one, x, eps, b, &prior, &recon);
        ends += prior + recon;
        drecon += elbo_diffusion_recon_8bit_dgamma0(&zero, x + b * dm->D, eps + b * dm->D, dm->D);
        dprior += elbo_diffusion_prior_kl_dgamma1(&one, x + b * dm->D, dm->D);
        L[b] = Lv->data[b];
        diff += L[b];
        mse += sq->data[b];
    }
    if (!c->discrete) drecon = 0; /* (a Gaussian recon is not learned through: see check_config) */
    dm->last.B = B, dm->last.t = (double *)t, dm->last.s = ts, dm->last.L = L, dm->last.coef = coef;
    dm->last.G = G, dm->last.Gp = Gp, dm->last.Gs = Gs;
    dm->last.drecon = drecon / (double)B, dm->last.dprior = dprior / (double)B;
    if (extra) {
        extra[0] = diff / (double)B;
        extra[1] = mse / (double)(B * dm->D);
    }
    return elbo_add_scalar(ctx, loss, (float)(ends / (double)B));
}

/* The schedule's gradient (VDM sec. 5 and appendix): its endpoints gamma_0, gamma_1 follow
 * the bound (the leaves' gradients through the normalisation, plus d recon / d gamma_0 and
 * d prior / d gamma_1), its interior the variance of the diffusion term, d/d eta mean_b
 * L_b^2 = mean_b 2 L_b dL_b/d eta: in continuous time the bound's expectation does not
 * depend on the interior, only its estimator's variance does. */
static elbo_status learned_after_backward(elbo_model *m) {
    diffusion_model *dm = (diffusion_model *)m;
    const int64_t B = dm->last.B, n = dm->learned.n_features, P = 3 * n + 1;
    if (B < 1 || !dm->last.G) return ELBO_OK;
    const float *gG = dm->last.G->grad, *gGp = dm->last.Gp->grad, *gGs = dm->last.Gs ? dm->last.Gs->grad : NULL;
    /* coefficients of d gamma(t_b), d gamma'(t_b), d gamma(s_b): the leaves' gradients for
     * the bound, times 2 L_b for the variance; and zeros (no gamma'(s) term) */
    double *cg = dm->last.coef, *cgp = cg + B, *cs = cgp + B, *vg = cs + B, *vgp = vg + B,
           *vs = vgp + B, *zero = vs + B;
    for (int64_t b = 0; b < B; b++) {
        double L2 = 2.0 * dm->last.L[b];
        cg[b] = gG ? gG[b] : 0, cgp[b] = gGp ? gGp[b] : 0, cs[b] = gGs ? gGs[b] : 0;
        vg[b] = L2 * cg[b], vgp[b] = L2 * cgp[b], vs[b] = L2 * cs[b], zero[b] = 0;
    }
    /* the bound: only its endpoint entries are kept */
    double *interior = dm->vjp_grad, *bound = dm->vjp_grad + P + 2;
    memset(dm->vjp_grad, 0, (size_t)(2 * (P + 2)) * sizeof *dm->vjp_grad);
    elbo_learned_schedule_vjp(&dm->learned, B, dm->last.t, cg, cgp, bound, vg, vgp, interior,
                              dm->vjp_work);
    if (gGs)
        elbo_learned_schedule_vjp(&dm->learned, B, dm->last.s, cs, zero, bound, vs, zero, interior,
                                  dm->vjp_work);
    double g0 = dm->last.drecon + bound[P], g1 = dm->last.dprior + bound[P + 1];
    /* the variance objective is a mean over the batch: (1/B) sum_b 2 L_b dL_b, and the
     * leaves hold (1/B) dL_b, so interior holds (1/B) sum 2 L_b dL_b already */
    elbo_tensor *params[4] = {dm->g_w1, dm->g_w2, dm->g_b2, dm->g_w3};
    int64_t off = 0;
    for (int k = 0; k < 4; k++) {
        elbo_tensor *p = params[k];
        p->grad = p->grad_slot;
        for (int64_t i = 0; i < p->numel; i++) p->grad[i] = (float)interior[off + i];
        off += p->numel;
    }
    dm->g_0->grad = dm->g_0->grad_slot;
    dm->g_1->grad = dm->g_1->grad_slot;
    dm->g_0->grad[0] = (float)g0;
    dm->g_1->grad[0] = (float)g1;
    dm->last.B = 0;
    return ELBO_OK;
}

/* loss (see the header); extras: "diffusion" (the ELBO-weighted term, nats), "mse" (mean
 * squared eps error per value). */
static elbo_tensor *diffusion_loss(elbo_ctx *ctx, elbo_model *m, const float *x,
                                   const int32_t *labels, int64_t B, elbo_rng *rng, double *extra) {
    diffusion_model *dm = (diffusion_model *)m;
    const elbo_diffusion_config *c = &dm->cfg;
    double *t;
    float *eps;
    int32_t *y;
    elbo_noise_level *lv = elbo_ctx_alloc(ctx, (size_t)B * sizeof *lv);
    if (!lv || draw_batch(ctx, dm, B, labels, 1, rng, &t, &eps, &y) != ELBO_OK) return NULL;
    if (c->process.schedule == ELBO_SCHEDULE_LEARNED)
        return learned_loss(ctx, dm, x, y, B, t, eps, lv, extra);
    elbo_tensor *sq = squared_error(ctx, dm, x, t, eps, y, B, lv);
    elbo_tensor *w = elbo_tensor_new1(ctx, B);
    if (!sq || !w) return NULL;
    double diff = 0, mse = 0;
    for (int64_t b = 0; b < B; b++) {
        double we = elbo_weight(dm, &lv[b]);
        diff += 0.5 * we * sq->data[b];
        mse += sq->data[b];
        double wl = c->loss == ELBO_LOSS_ELBO     ? we
                    : c->loss == ELBO_LOSS_SIMPLE ? 2.0 / (double)dm->D
                                                  : elbo_diffusion_weight(c->loss, &lv[b], NULL, 0);
        w->data[b] = (float)(0.5 * wl / (double)B);
    }
    elbo_tensor *loss = elbo_sum(ctx, elbo_mul(ctx, sq, w));
    if (loss && c->loss == ELBO_LOSS_ELBO) {
        /* + the prior and reconstruction terms, constant in the weights: the whole bound */
        double ends = 0, prior, recon;
        elbo_noise_level zero, one;
        if (end_levels(dm, &zero, &one) != ELBO_OK) return NULL;
        for (int64_t b = 0; b < B; b++) {
            end_terms(dm, &zero, &one, x, eps, b, &prior, &recon);
            ends += prior + recon;
        }
        loss = elbo_add_scalar(ctx, loss, (float)(ends / (double)B));
    }
    if (extra) {
        extra[0] = diff / (double)B;
        extra[1] = mse / (double)(B * dm->D);
    }
    return loss;
}

/* sums += (neg_elbo, prior, diffusion, recon) of the batch, in nats. The reconstruction
 * term's x_0 noise is drawn apart from the diffusion term's. */
static elbo_status diffusion_eval(elbo_ctx *ctx, elbo_model *m, const float *x,
                                  const int32_t *labels, int64_t B, elbo_rng *rng, double *sums) {
    diffusion_model *dm = (diffusion_model *)m;
    int grad = elbo_ctx_set_grad(ctx, 0), training = elbo_ctx_set_training(ctx, 0);
    double *t;
    float *eps, *eps0 = elbo_ctx_alloc(ctx, (size_t)(B * dm->D) * sizeof *eps0);
    int32_t *y;
    elbo_noise_level *lv = elbo_ctx_alloc(ctx, (size_t)B * sizeof *lv);
    elbo_status st = lv && eps0 ? draw_batch(ctx, dm, B, labels, 0, rng, &t, &eps, &y)
                                : elbo_last_status();
    elbo_tensor *sq = NULL;
    if (st == ELBO_OK) {
        elbo_rng_normal(rng, eps0, (size_t)(B * dm->D), 0.0f, 1.0f);
        sq = squared_error(ctx, dm, x, t, eps, y, B, lv);
        if (!sq) st = elbo_last_status();
    }
    elbo_ctx_set_grad(ctx, grad);
    elbo_ctx_set_training(ctx, training);
    elbo_noise_level zero, one;
    if (st == ELBO_OK) st = end_levels(dm, &zero, &one);
    if (st != ELBO_OK) return st;
    for (int64_t b = 0; b < B; b++) {
        double prior, recon, diff = 0.5 * elbo_weight(dm, &lv[b]) * sq->data[b];
        end_terms(dm, &zero, &one, x, eps0, b, &prior, &recon);
        sums[0] += prior + diff + recon;
        sums[1] += prior;
        sums[2] += diff;
        sums[3] += recon;
    }
    return ELBO_OK;
}

/* The n values a denoiser call gets must be `batch` examples of the model's D. */
static elbo_status check_denoiser_batch(const diffusion_model *dm, int64_t B, int64_t n) {
    if (B < 1 || n != B * dm->D)
        return elbo_error(ELBO_ERR_ARG,
                          "diffusion denoiser: %lld values are not %lld examples of %lld",
                          (long long)n, (long long)B, (long long)dm->D);
    return ELBO_OK;
}

elbo_status elbo_diffusion_denoiser(void *state, const float *x_t, int64_t n,
                                    const elbo_noise_level *lvl, float *x0_hat) {
    elbo_diffusion_denoiser_state *s = state;
    diffusion_model *dm = (diffusion_model *)s->model;
    const elbo_diffusion_config *c = &dm->cfg;
    const int64_t B = s->batch;
    elbo_status bst = check_denoiser_batch(dm, B, n);
    if (bst) return bst;
    const int guided = s->guidance_scale != 0.0;
    if (guided && !c->classes)
        return elbo_error(ELBO_ERR_ARG, "diffusion: guidance needs a class-conditional model");
    elbo_ctx_reset(s->ctx);
    int grad = elbo_ctx_set_grad(s->ctx, 0), training = elbo_ctx_set_training(s->ctx, 0);
    /* guided: one pass over [x_t; x_t] with [y; null] */
    const int64_t NB = guided ? 2 * B : B;
    elbo_tensor *xt = elbo_tensor_new4(s->ctx, NB, c->c, c->h, c->w);
    elbo_noise_level *t = elbo_ctx_alloc(s->ctx, (size_t)NB * sizeof *t);
    int32_t *y = guided ? elbo_ctx_alloc(s->ctx, (size_t)NB * sizeof *y) : NULL;
    elbo_tensor *pred = NULL;
    elbo_status st = ELBO_OK;
    if (!xt || !t || (guided && !y)) st = elbo_last_status();
    else {
        for (int64_t k = 0; k < NB / B; k++) memcpy(xt->data + k * n, x_t, (size_t)n * sizeof(float));
        for (int64_t b = 0; b < NB; b++) t[b] = *lvl;
        if (guided)
            for (int64_t b = 0; b < B; b++) y[b] = s->labels ? s->labels[b] : c->classes, y[B + b] = c->classes;
        pred = net_forward(s->ctx, dm, xt, t, NULL, guided ? y : s->labels);
        if (!pred) st = elbo_last_status();
    }
    elbo_ctx_set_grad(s->ctx, grad);
    elbo_ctx_set_training(s->ctx, training);
    if (st != ELBO_OK) return st;
    if (!guided) {
        elbo_param_convert(c->param, ELBO_PARAM_X0, pred->data, x_t, lvl->alpha, lvl->sigma, x0_hat, n);
        return ELBO_OK;
    }
    /* eps_hat = (1 + w) eps(x_t, y) - w eps(x_t, null), then x0_hat from it */
    float *e = xt->data; /* reuse: eps of both halves */
    elbo_param_convert(c->param, ELBO_PARAM_EPS, pred->data, x_t, lvl->alpha, lvl->sigma, e, n);
    elbo_param_convert(c->param, ELBO_PARAM_EPS, pred->data + n, x_t, lvl->alpha, lvl->sigma, e + n, n);
    const double w = s->guidance_scale;
    for (int64_t i = 0; i < n; i++) e[i] = (float)((1.0 + w) * e[i] - w * e[n + i]);
    elbo_param_convert(ELBO_PARAM_EPS, ELBO_PARAM_X0, e, x_t, lvl->alpha, lvl->sigma, x0_hat, n);
    return ELBO_OK;
}

/* Parameters in or out of the tape: off while a VJP wants d / d x_t only, so that backward
 * computes no weight gradients. */
static void params_require_grad(diffusion_model *dm, int on) {
    for (int i = 0; i < elbo_paramset_count(dm->ps); i++)
        elbo_paramset_get(dm->ps, i)->requires_grad = on;
}

/* The VJP of the denoiser at u, or, with cot, at u = cot(x0_hat) written to u_out: the
 * forward on the tape, x0_hat, the cotangent, then the backward. */
static elbo_status denoiser_vjp(void *state, const float *x_t, int64_t n,
                                const elbo_noise_level *lvl, const float *u_in,
                                elbo_cotangent_fn cot, void *cot_user, float *u_out,
                                float *x0_hat, float *vjp) {
    elbo_diffusion_denoiser_state *s = state;
    diffusion_model *dm = (diffusion_model *)s->model;
    const elbo_diffusion_config *c = &dm->cfg;
    const int64_t B = s->batch;
    elbo_status bst = check_denoiser_batch(dm, B, n);
    if (bst) return bst;
    if (s->guidance_scale != 0.0)
        return elbo_error(ELBO_ERR_ARG, "diffusion: the likelihood takes no guidance");
    elbo_ctx_reset(s->ctx);
    int grad = elbo_ctx_set_grad(s->ctx, 1), training = elbo_ctx_set_training(s->ctx, 0);
    params_require_grad(dm, 0);
    elbo_tensor *xt = elbo_tensor_new4(s->ctx, B, c->c, c->h, c->w);
    elbo_noise_level *t = elbo_ctx_alloc(s->ctx, (size_t)B * sizeof *t);
    elbo_status st = ELBO_OK;
    /* x0_hat = a0 pred + k0 x_t: from eps_hat = a pred + k x_t, x0_hat = (x_t - sigma eps_hat)
     * / alpha; so J^T u = J_pred^T (a0 u) + k0 u */
    double a, k;
    elbo_param_eps_coefs(c->param, lvl->alpha, lvl->sigma, &a, &k);
    const double a0 = -lvl->sigma * a / lvl->alpha, k0 = (1.0 - lvl->sigma * k) / lvl->alpha;
    float *seed = elbo_ctx_alloc(s->ctx, (size_t)n * sizeof *seed);
    elbo_tensor *pred = NULL;
    if (!xt || !t || !seed)
        st = elbo_last_status();
    else {
        memcpy(xt->data, x_t, (size_t)n * sizeof(float));
        elbo_tensor_requires_grad(xt, 1);
        for (int64_t b = 0; b < B; b++) t[b] = *lvl;
        pred = net_forward(s->ctx, dm, xt, t, NULL, s->labels);
        if (!pred) st = elbo_last_status();
    }
    const float *u = u_in;
    if (st == ELBO_OK) {
        for (int64_t i = 0; i < n; i++) x0_hat[i] = (float)(a0 * pred->data[i] + k0 * x_t[i]);
        if (cot) {
            st = cot(cot_user, x0_hat, n, u_out);
            u = u_out;
        }
    }
    if (st == ELBO_OK) {
        for (int64_t i = 0; i < n; i++) seed[i] = (float)(a0 * u[i]);
        st = elbo_backward_with(s->ctx, pred, seed);
    }
    params_require_grad(dm, 1);
    elbo_ctx_set_grad(s->ctx, grad);
    elbo_ctx_set_training(s->ctx, training);
    if (st != ELBO_OK) return st;
    for (int64_t i = 0; i < n; i++) vjp[i] = (float)((xt->grad ? xt->grad[i] : 0.0f) + k0 * u[i]);
    return ELBO_OK;
}

elbo_status elbo_diffusion_denoiser_vjp(void *state, const float *x_t, int64_t n,
                                        const elbo_noise_level *lvl, const float *u, float *x0_hat,
                                        float *vjp) {
    return denoiser_vjp(state, x_t, n, lvl, u, NULL, NULL, NULL, x0_hat, vjp);
}

elbo_status elbo_diffusion_denoiser_vjp_at(void *state, const float *x_t, int64_t n,
                                           const elbo_noise_level *lvl, elbo_cotangent_fn cot,
                                           void *cot_user, float *x0_hat, float *u, float *vjp) {
    if (!cot || !u)
        return elbo_error(ELBO_ERR_ARG, "elbo_diffusion_denoiser_vjp_at: %s is NULL",
                          !cot ? "cot" : "u");
    return denoiser_vjp(state, x_t, n, lvl, NULL, cot, cot_user, u, x0_hat, vjp);
}

/* n samples by ancestral sampling on the model's grid (T, or 1000 steps), mapped from the
 * data scale ([-1, 1] for 8-bit data) to [0, 1]. */
static elbo_status diffusion_sample(elbo_ctx *ctx, elbo_model *m, int64_t n, elbo_rng *rng,
                                    float *out) {
    diffusion_model *dm = (diffusion_model *)m;
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.steps = dm->cfg.T > 0 ? dm->cfg.T : 1000;
    sp.seed = (uint64_t)elbo_rng_below(rng, 0xffffffffu) << 32 | elbo_rng_below(rng, 0xffffffffu);
    elbo_diffusion_denoiser_state st = {m, ctx, n, NULL, 0.0};
    elbo_status r = elbo_diffusion_sample(&dm->cfg.process, &sp, elbo_diffusion_denoiser, &st, out,
                                          n * dm->D, NULL);
    if (r == ELBO_OK && dm->cfg.discrete) elbo_pixels_to01(out, n * dm->D, out);
    return r;
}

static void diffusion_free(elbo_model *m) {
    if (!m) return;
    diffusion_model *dm = (diffusion_model *)m;
    elbo_unet_free(dm->unet);
    elbo_paramset_free(dm->ps);
    free(dm->vjp_work);
    free(dm->vjp_grad);
    free(m->config);
    free(dm);
}

const elbo_diffusion_config *elbo_diffusion_config_of(const elbo_model *m) {
    return m && m->free == diffusion_free ? &((const diffusion_model *)m)->cfg : NULL;
}

/* The configuration as JSON (the checkpoint's "config"); every member, so a load rebuilds
 * the same model. */
static char *config_json(const elbo_diffusion_config *c) {
    char ch[128] = "", at[128] = "";
    size_t k = 0, q = 0;
    for (int l = 0; l < c->unet.n_levels; l++) {
        k += (size_t)snprintf(ch + k, sizeof ch - k, "%s%d", l ? "," : "", c->unet.channels[l]);
        if (c->unet.attn[l] && c->net == ELBO_DENOISER_UNET)
            q += (size_t)snprintf(at + q, sizeof at - q, "%s%lld", q ? "," : "",
                                  (long long)(c->h >> l));
    }
    char proc[512];
    elbo__process_json(&c->process, proc, sizeof proc);
    char *s = malloc(1024);
    if (!s) return NULL;
    snprintf(s, 1024,
             "{\"c\":%lld,\"h\":%lld,\"w\":%lld,\"net\":\"%s\",\"channels\":[%s],\"blocks\":%d,"
             "\"attn\":[%s],\"dropout\":%.9g,\"temb\":%d,\"groups\":%d,\"hidden\":%d,\"layers\":%d,"
             "\"mlp_temb\":%d,%s,"
             "\"param\":\"%s\",\"loss\":\"%s\",\"T\":%d,\"classes\":%d,\"p_uncond\":%.9g,"
             "\"discrete\":%d,\"levels\":%d,\"fourier\":%d}",
             (long long)c->c, (long long)c->h, (long long)c->w,
             c->net == ELBO_DENOISER_MLP ? "mlp" : "unet", ch, c->unet.blocks_per_level, at,
             (double)c->unet.dropout, c->unet.temb_dim, c->unet.groups, c->mlp_hidden,
             c->mlp_layers, c->mlp_temb, proc, elbo_param_name(c->param), elbo_loss_kind_name(c->loss), c->T, c->classes,
             (double)c->p_uncond, c->discrete, c->levels, c->fourier);
    return s;
}

static elbo_status check_config(const elbo_diffusion_config *c) {
    if (c->c < 1 || c->h < 1 || c->w < 1 || c->c * c->h * c->w > (1 << 24))
        return elbo_error(ELBO_ERR_ARG, "diffusion: bad data shape (%lld, %lld, %lld)",
                          (long long)c->c, (long long)c->h, (long long)c->w);
    if (c->process.schedule == ELBO_SCHEDULE_LEARNED) {
        if (!(c->process.log_snr_min < c->process.log_snr_max) || !isfinite(c->process.log_snr_min) ||
            !isfinite(c->process.log_snr_max))
            return elbo_error(ELBO_ERR_ARG, "diffusion: schedule learned needs finite log_snr_min < "
                              "log_snr_max (its initial endpoints), got %g, %g",
                              c->process.log_snr_min, c->process.log_snr_max);
        if (c->loss != ELBO_LOSS_ELBO || !c->discrete)
            return elbo_error(ELBO_ERR_ARG, "diffusion: schedule learned is trained on the bound: "
                              "it needs --loss elbo and 8-bit images");
    } else {
        elbo_status st = elbo_process_check(&c->process);
        if (st) return elbo_error(st, "diffusion: %s", elbo_last_error());
    }
    if ((unsigned)c->param > ELBO_PARAM_SCORE || (unsigned)c->loss > ELBO_LOSS_SNR_TRUNC)
        return elbo_error(ELBO_ERR_ARG, "diffusion: bad param or loss");
    if (c->T < 0 || c->T > 1000000)
        return elbo_error(ELBO_ERR_ARG, "diffusion: --time discrete:T needs T in 1..1000000, got %d", c->T);
    if (c->fourier && c->net != ELBO_DENOISER_UNET)
        return elbo_error(ELBO_ERR_ARG, "diffusion: --fourier is for the unet (images)");
    if (c->fourier != 0 && c->fourier != 1)
        return elbo_error(ELBO_ERR_ARG, "diffusion: fourier must be 0 or 1, got %d", c->fourier);
    if (c->levels < 0 || c->levels == 1 || c->levels > 1000000)
        return elbo_error(ELBO_ERR_ARG, "diffusion: --levels needs L in 2..1000000 (or 0), got %d",
                          c->levels);
    if (c->levels &&
        (c->T || c->loss == ELBO_LOSS_ELBO || c->process.schedule == ELBO_SCHEDULE_LEARNED))
        return elbo_error(ELBO_ERR_ARG,
                          "diffusion: --levels trains on a noise ladder (NCSN): it "
                          "takes continuous time and --loss simple or snr-trunc, not the bound");
    if (c->classes < 0 || c->classes > 100000)
        return elbo_error(ELBO_ERR_ARG, "diffusion: classes %d not in [0, 100000]", c->classes);
    if (!(c->p_uncond >= 0 && c->p_uncond < 1))
        return elbo_error(ELBO_ERR_ARG, "diffusion: p_uncond %g not in [0, 1)", (double)c->p_uncond);
    if (c->net == ELBO_DENOISER_MLP &&
        (c->mlp_hidden < 1 || c->mlp_hidden > 65536 || c->mlp_layers < 1 ||
         c->mlp_layers > ELBO_MLP_MAX_LAYERS - 1 || c->mlp_temb < 2 || c->mlp_temb % 2))
        return elbo_error(ELBO_ERR_ARG, "diffusion mlp: hidden %d, layers %d (1..%d), temb %d (even)",
                          c->mlp_hidden, c->mlp_layers, ELBO_MLP_MAX_LAYERS - 1, c->mlp_temb);
    return ELBO_OK;
}

elbo_status elbo_diffusion_model_new(const elbo_diffusion_config *cfg, uint64_t seed,
                                     elbo_model **out) {
    *out = NULL;
    elbo_status st = check_config(cfg);
    if (st) return st;
    diffusion_model *dm = calloc(1, sizeof *dm);
    if (!dm) return elbo_error(ELBO_ERR_NOMEM, "diffusion: out of memory");
    dm->cfg = *cfg;
    elbo_diffusion_config *c = &dm->cfg;
    c->process.learned = NULL;
    dm->D = c->c * c->h * c->w;
    dm->ps = elbo_paramset_new();
    if (!dm->ps) st = elbo_last_status();
    if (st == ELBO_OK && c->net == ELBO_DENOISER_UNET) {
        c->unet.in_channels = (int)(c->fourier ? c->c * (1 + 2 * FOURIER_NF) : c->c);
        c->unet.out_channels = (int)c->c;
        c->unet.n_classes = c->classes;
        dm->unet = elbo_unet_new(dm->ps, "", &c->unet);
        if (!dm->unet) st = elbo_last_status();
    } else if (st == ELBO_OK) {
        int sizes[ELBO_MLP_MAX_LAYERS + 1];
        sizes[0] = (int)dm->D + c->mlp_temb;
        for (int l = 1; l <= c->mlp_layers; l++) sizes[l] = c->mlp_hidden;
        sizes[c->mlp_layers + 1] = (int)dm->D;
        st = elbo_nn_mlp_init(&dm->mlp, dm->ps, "mlp", c->mlp_layers + 1, sizes, ELBO_ACT_SILU);
        if (st == ELBO_OK && c->classes)
            st = elbo_nn_embedding_init(&dm->label_emb, dm->ps, "label_emb", c->classes + 1, c->mlp_temb);
    }
    const int learned = c->process.schedule == ELBO_SCHEDULE_LEARNED;
    if (st == ELBO_OK && learned) {
        /* VDM's init: w1 = gamma_max - gamma_min, w2, w3 ~ N(0, 1), b2 = 0, and the
         * endpoints at the configured log-SNR range */
        const int64_t one = 1, nf = LEARNED_FEATURES;
        const double span = c->process.log_snr_max - c->process.log_snr_min;
        dm->g_w1 = elbo_paramset_add(dm->ps, "gamma", "w1", 1, &one, (elbo_init){ELBO_INIT_CONST, (float)span});
        dm->g_w2 = elbo_paramset_add(dm->ps, "gamma", "w2", 1, &nf, (elbo_init){ELBO_INIT_NORMAL, 1.0f});
        dm->g_b2 = elbo_paramset_add(dm->ps, "gamma", "b2", 1, &nf, (elbo_init){ELBO_INIT_CONST, 0.0f});
        dm->g_w3 = elbo_paramset_add(dm->ps, "gamma", "w3", 1, &nf, (elbo_init){ELBO_INIT_NORMAL, 1.0f});
        dm->g_0 = elbo_paramset_add(dm->ps, "gamma", "gamma_0", 1, &one,
                                    (elbo_init){ELBO_INIT_CONST, (float)-c->process.log_snr_max});
        dm->g_1 = elbo_paramset_add(dm->ps, "gamma", "gamma_1", 1, &one,
                                    (elbo_init){ELBO_INIT_CONST, (float)-c->process.log_snr_min});
        const int64_t P = 3 * nf + 1;
        dm->vjp_work = malloc((size_t)(5 * P) * sizeof(double));
        dm->vjp_grad = malloc((size_t)(2 * (P + 2)) * sizeof(double));
        if (!dm->g_w1 || !dm->g_w2 || !dm->g_b2 || !dm->g_w3 || !dm->g_0 || !dm->g_1)
            st = elbo_last_status();
        else if (!dm->vjp_work || !dm->vjp_grad)
            st = elbo_error(ELBO_ERR_NOMEM, "diffusion: out of memory");
    }
    if (st == ELBO_OK) st = elbo_paramset_finalize(dm->ps, seed);
    if (st == ELBO_OK && learned) {
        dm->learned = (elbo_learned_schedule){LEARNED_FEATURES, dm->g_w1->data, dm->g_w2->data,
                                              dm->g_b2->data, dm->g_w3->data, dm->g_0->data,
                                              dm->g_1->data};
        c->process.learned = &dm->learned;
        st = elbo_process_check(&c->process);
    }
    char *config = st == ELBO_OK ? config_json(c) : NULL;
    if (st == ELBO_OK && !config) st = elbo_error(ELBO_ERR_NOMEM, "diffusion: out of memory");
    if (st != ELBO_OK) {
        diffusion_free(&dm->base); /* what was built so far (the rest is NULL) */
        return st;
    }
    elbo_model *m = &dm->base;
    m->name = "diffusion";
    m->config = config;
    m->ps = dm->ps;
    m->c = c->c;
    m->h = c->h;
    m->w = c->w;
    m->transform = c->discrete ? ELBO_PIXELS_SCALE11 : ELBO_PIXELS_IDENTITY; /* points as they are */
    m->n_extra = 2;
    m->extra_names[0] = "diffusion";
    m->extra_names[1] = "mse";
    m->n_eval = 4;
    m->eval_names[0] = "neg_elbo";
    m->eval_names[1] = "prior";
    m->eval_names[2] = "diffusion";
    m->eval_names[3] = "recon";
    m->loss = diffusion_loss;
    m->eval = diffusion_eval;
    m->sample = diffusion_sample;
    m->free = diffusion_free;
    m->after_backward = learned ? learned_after_backward : NULL;
    m->impl = dm;
    *out = m;
    return ELBO_OK;
}

/* ---- from a checkpoint's configuration ------------------------------------------------ */
elbo_status elbo__diffusion_from_json(const elbo__json *o, uint64_t seed, elbo_model **out) {
    elbo_diffusion_config c;
    elbo_diffusion_config_init(&c);
    int64_t v;
    elbo_status st = ELBO_OK;
#define INT_FIELD(key, lo, hi, dst)                                                                \
    do {                                                                                           \
        v = (dst);                                                                                 \
        if (st == ELBO_OK && (st = elbo__cfg_int(o, key, lo, hi, &v)) == ELBO_OK) (dst) = (int)v;  \
    } while (0)
    if (st == ELBO_OK) st = elbo__cfg_int(o, "c", 1, 4096, &c.c);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "h", 1, 4096, &c.h);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "w", 1, 4096, &c.w);
    INT_FIELD("blocks", 1, ELBO_UNET_MAX_BLOCKS, c.unet.blocks_per_level);
    INT_FIELD("temb", 2, 65536, c.unet.temb_dim);
    INT_FIELD("groups", 1, 65536, c.unet.groups);
    INT_FIELD("hidden", 1, 65536, c.mlp_hidden);
    INT_FIELD("layers", 1, ELBO_MLP_MAX_LAYERS - 1, c.mlp_layers);
    INT_FIELD("mlp_temb", 2, 65536, c.mlp_temb);
    INT_FIELD("T", 0, 1000000, c.T);
    INT_FIELD("classes", 0, 100000, c.classes);
    INT_FIELD("discrete", 0, 1, c.discrete);
    INT_FIELD("levels", 0, 1000000, c.levels);
    INT_FIELD("fourier", 0, 1, c.fourier);
#undef INT_FIELD
    if (st == ELBO_OK) st = elbo__cfg_float(o, "dropout", &c.unet.dropout);
    if (st == ELBO_OK) st = elbo__cfg_float(o, "p_uncond", &c.p_uncond);
    int n_ch = c.unet.n_levels, attn_res[ELBO_UNET_MAX_LEVELS], n_attn = -1;
    if (st == ELBO_OK) st = elbo__cfg_int_list(o, "channels", ELBO_UNET_MAX_LEVELS, c.unet.channels, &n_ch);
    if (st == ELBO_OK) {
        const elbo__json *a = elbo__json_get(o, "attn");
        if (a) {
            n_attn = 0;
            if (a->type == ELBO__JSON_ARRAY && a->n == 0) n_attn = 0;
            else st = elbo__cfg_int_list(o, "attn", ELBO_UNET_MAX_LEVELS, attn_res, &n_attn);
        }
    }
    if (st != ELBO_OK) return st;
    c.unet.n_levels = n_ch;
    if (n_attn >= 0) {
        memset(c.unet.attn, 0, sizeof c.unet.attn);
        for (int i = 0; i < n_attn; i++) {
            int found = 0;
            for (int l = 0; l < n_ch; l++)
                if ((c.h >> l) == attn_res[i]) c.unet.attn[l] = 2, found = 1;
            if (!found)
                return elbo_error(ELBO_ERR_ARG,
                                  "config: \"attn\": no level of the UNet has resolution %d "
                                  "(levels: %lld, halving)", attn_res[i], (long long)c.h);
        }
    } else {
        memset(c.unet.attn, 0, sizeof c.unet.attn);
        c.unet.attn[n_ch - 1] = 2;
    }
    const char *s;
    if ((s = elbo__cfg_str(o, "net"))) {
        if (!strcmp(s, "unet")) c.net = ELBO_DENOISER_UNET;
        else if (!strcmp(s, "mlp")) c.net = ELBO_DENOISER_MLP;
        else return elbo_error(ELBO_ERR_ARG, "config: \"net\" must be unet or mlp, got \"%s\"", s);
    }
    if ((st = elbo__cfg_process(o, &c.process)) != ELBO_OK) return st;
    if ((s = elbo__cfg_str(o, "param")) && elbo_param_parse(s, &c.param) != ELBO_OK)
        return elbo_error(ELBO_ERR_ARG, "config: %s", elbo_last_error());
    if ((s = elbo__cfg_str(o, "loss")) && elbo_loss_kind_parse(s, &c.loss) != ELBO_OK)
        return elbo_error(ELBO_ERR_ARG, "config: %s", elbo_last_error());
    return elbo_diffusion_model_new(&c, seed, out);
}
