/* The model "hvae": the Markovian hierarchical VAE of the notes (Luo 2022, "Understanding
 * Diffusion Models: A Unified Perspective", eqs. 23-25; the two-layer case of Burda et al.
 * 2016 and Sønderby et al. 2016, with a bottom-up Markov inference chain):
 *
 *   generative  p(x, z_1:L) = p(z_L) p(z_L-1 | z_L) ... p(z_1 | z_2) p(x | z_1),  p(z_L) = N(0, I)
 *   inference   q(z_1:L | x) = q(z_1 | x) q(z_2 | z_1) ... q(z_L | z_L-1)
 *   every conditional a diagonal Gaussian N(mu(.), exp(logvar(.))) from an MLP, logvar
 *   floored at logvar_min, and p(x|z_1) one of the likelihoods of vae.c.
 *
 *   ELBO = E_q[log p(x|z_1)] - sum_t KL_t,
 *     KL_t = E_q[log q(z_t | z_t-1) - log p(z_t | z_t+1)]  (t < L; z_0 = x), by Monte Carlo
 *     KL_L = E_q[KL(q(z_L | z_L-1) || N(0, I))]              in closed form (estimator B)
 *            or by Monte Carlo like the others (estimator A)
 *   IWAE_k = log (1/k) sum_i p(x, z^i_1:L) / q(z^i_1:L | x), z^i_1:L ~ q the whole chain.
 *
 * Beta, KL warm-up and free bits (per latent dimension of every layer) act on every KL_t, as
 * in the vae model. Shapes: x (B, D); layer t has Z_t dimensions; with S samples per example
 * the chain runs on rows b S + s. */
#include "internal.h"
#include "models/vae_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    elbo_model base;
    elbo_hvae_config cfg;
    elbo_paramset *ps;
    elbo__lik lik;
    int64_t D, m;
    elbo_nn_mlp q[ELBO_HVAE_MAX_LAYERS];     /* q[t]: z_t (x for t = 0) -> (mu, logvar) of z_t+1 */
    elbo_nn_mlp p[ELBO_HVAE_MAX_LAYERS - 1]; /* p[t]: z_t+2 -> (mu, logvar) of z_t+1 */
    elbo_nn_mlp px;                          /* z_1 -> the likelihood's outputs */
    char names[ELBO_MODEL_MAX_FIGURES][24]; /* "kl_t", "active_t" */
    double *mu_sum, *mu_sq; /* per dimension of every layer, for active units */
    int64_t z_off[ELBO_HVAE_MAX_LAYERS + 1];
    elbo_ctx *chunk_ctx;
} hvae_model;

void elbo_hvae_config_init(elbo_hvae_config *c) {
    memset(c, 0, sizeof *c);
    c->c = 1;
    c->h = c->w = 28;
    c->layers = 2;
    c->z[0] = 64;
    c->z[1] = 32;
    c->n_hidden = 2;
    c->hidden[0] = c->hidden[1] = 300;
    c->act = ELBO_ACT_RELU;
    elbo_vae_objective_init(&c->obj);
}

elbo_status elbo_hvae_config_check(const elbo_hvae_config *c) {
    if (c->c < 1 || c->h < 1 || c->w < 1 || c->c * c->h * c->w > (1 << 24))
        return elbo_error(ELBO_ERR_ARG, "hvae: bad image shape (%lld, %lld, %lld)", (long long)c->c,
                          (long long)c->h, (long long)c->w);
    if (c->layers < 1 || c->layers > ELBO_HVAE_MAX_LAYERS)
        return elbo_error(ELBO_ERR_ARG, "hvae: layers must be in 1..%d, got %d",
                          ELBO_HVAE_MAX_LAYERS, c->layers);
    for (int t = 0; t < c->layers; t++)
        if (c->z[t] < 1 || c->z[t] > (1 << 16))
            return elbo_error(ELBO_ERR_ARG, "hvae: latent dimension z of layer %d = %d must be in "
                              "1..65536", t + 1, c->z[t]);
    if (c->n_hidden < 0 || c->n_hidden > ELBO_VAE_MAX_HIDDEN)
        return elbo_error(ELBO_ERR_ARG, "hvae: %d hidden layers (0 to %d)", c->n_hidden,
                          ELBO_VAE_MAX_HIDDEN);
    for (int i = 0; i < c->n_hidden; i++)
        if (c->hidden[i] < 1 || c->hidden[i] > (1 << 16))
            return elbo_error(ELBO_ERR_ARG, "hvae: hidden width %d must be in 1..65536", c->hidden[i]);
    return elbo__objective_check("hvae", &c->obj);
}

/* An MLP in -> hidden... -> out named `name`. */
static elbo_status mlp(hvae_model *h, elbo_nn_mlp *net, const char *name, int in, int out) {
    int sizes[ELBO_VAE_MAX_HIDDEN + 2], n = h->cfg.n_hidden;
    sizes[0] = in;
    for (int i = 0; i < n; i++) sizes[1 + i] = h->cfg.hidden[i];
    sizes[n + 1] = out;
    return elbo_nn_mlp_init(net, h->ps, name, n + 1, sizes, h->cfg.act);
}

static elbo_status nets_init(hvae_model *h) {
    const elbo_hvae_config *c = &h->cfg;
    char name[16];
    elbo_status st = ELBO_OK;
    for (int t = 0; t < c->layers && st == ELBO_OK; t++) { /* q.1 = q(z_1|x), q.2 = q(z_2|z_1) */
        snprintf(name, sizeof name, "q.%d", t + 1);
        st = mlp(h, &h->q[t], name, t == 0 ? (int)h->D : c->z[t - 1], 2 * c->z[t]);
    }
    for (int t = 0; t + 1 < c->layers && st == ELBO_OK; t++) { /* p.1 = p(z_1|z_2) */
        snprintf(name, sizeof name, "p.%d", t + 1);
        st = mlp(h, &h->p[t], name, c->z[t + 1], 2 * c->z[t]);
    }
    if (st == ELBO_OK) st = mlp(h, &h->px, "px", c->z[0], (int)(h->m * h->D));
    return st;
}

/* A Gaussian conditional: net(in) -> mu, logvar (N, Z), logvar floored. */
static elbo_status gauss(elbo_ctx *ctx, const hvae_model *h, const elbo_nn_mlp *net,
                         elbo_tensor *in, int64_t Z, elbo_tensor **mu, elbo_tensor **logvar) {
    elbo_tensor *o = elbo_nn_mlp_forward(ctx, net, in), *parts[2];
    const int64_t sizes[2] = {Z, Z};
    if (!o || elbo_split(ctx, o, 1, 2, sizes, parts) != ELBO_OK) return elbo_last_status();
    *mu = parts[0];
    *logvar = isinf(h->cfg.obj.logvar_min) ? parts[1]
                                       : elbo_clamp(ctx, parts[1], h->cfg.obj.logvar_min, INFINITY);
    return *logvar ? ELBO_OK : elbo_last_status();
}

/* S draws z ~ N(mu, e^logvar) per row: mu, logvar (N, Z) -> (N S, Z), eps from rng in row
 * order (elbo__reparam). NULL + error when out of memory. */
static elbo_tensor *draw(elbo_ctx *ctx, elbo_tensor *mu, elbo_tensor *logvar, int64_t S,
                         elbo_rng *rng) {
    elbo_tensor *eps = elbo_tensor_new3(ctx, mu->shape[0], S, mu->shape[1]);
    if (!eps) return NULL;
    elbo_rng_normal(rng, eps->data, (size_t)eps->numel, 0.0f, 1.0f);
    return elbo__reparam(ctx, mu, logvar, eps);
}

/* log N(z; mu, e^logvar) per element (broadcasting). */
static elbo_tensor *log_normal(elbo_ctx *ctx, elbo_tensor *z, elbo_tensor *mu, elbo_tensor *logvar) {
    return elbo_gaussian_log_likelihood(ctx, z, mu, logvar, ELBO_REDUCE_NONE);
}

/* One pass down the inference chain and up the generative one, S samples per example:
 *   lpx (B S)            log p(x | z_1)
 *   kl[t] (B S, Z_t)     log q(z_t | z_t-1) - log p(z_t | z_t+1) per dimension (Monte Carlo),
 *                        or for the top layer with closed_top the closed-form KL to N(0, I)
 *                        (then (B S, Z_L) too: the KL at the sampled z_L-1)
 *   mu1 (B, Z_1)         the mean of q(z_1 | x), for active units
 * eps drawn from rng: (B, S, Z_1) for z_1, then (B S, Z_t) for each later layer. */
typedef struct {
    elbo_tensor *lpx, *kl[ELBO_HVAE_MAX_LAYERS], *mu[ELBO_HVAE_MAX_LAYERS];
    elbo_tensor *kl_top; /* KL(q(z_L | z_L-1) || N(0, I)) per dimension, closed form: (B S, Z_L),
                          * or (B, Z_L) when L = 1 (q(z_1 | x) is per example) */
} chain;

static elbo_status run_chain(elbo_ctx *ctx, const hvae_model *h, elbo_tensor *x, const float *xd,
                             int64_t B, int64_t S, int closed_top, elbo_rng *rng, chain *out) {
    const elbo_hvae_config *c = &h->cfg;
    const int Lz = c->layers;
    elbo_tensor *z[ELBO_HVAE_MAX_LAYERS], *qmu[ELBO_HVAE_MAX_LAYERS], *qlv[ELBO_HVAE_MAX_LAYERS];
    elbo_status st = gauss(ctx, h, &h->q[0], x, c->z[0], &qmu[0], &qlv[0]);
    if (st != ELBO_OK) return st;
    if (!(z[0] = draw(ctx, qmu[0], qlv[0], S, rng))) return elbo_last_status();
    out->mu[0] = qmu[0];
    /* q(z_1 | x) per sample row: the same (mu, logvar) broadcast over the S samples */
    elbo_tensor *q1 = log_normal(ctx, elbo_reshape3(ctx, z[0], B, S, c->z[0]),
                                 elbo_reshape3(ctx, qmu[0], B, 1, c->z[0]),
                                 elbo_reshape3(ctx, qlv[0], B, 1, c->z[0]));
    elbo_tensor *logq[ELBO_HVAE_MAX_LAYERS];
    logq[0] = elbo_reshape2(ctx, q1, B * S, c->z[0]);
    for (int t = 1; t < Lz; t++) { /* z_t+1 ~ q(z_t+1 | z_t) */
        if ((st = gauss(ctx, h, &h->q[t], z[t - 1], c->z[t], &qmu[t], &qlv[t])) != ELBO_OK) return st;
        if (!(z[t] = draw(ctx, qmu[t], qlv[t], 1, rng))) return elbo_last_status();
        logq[t] = log_normal(ctx, z[t], qmu[t], qlv[t]);
        out->mu[t] = qmu[t];
    }
    for (int t = 0; t < Lz; t++) {
        if (t == Lz - 1) { /* p(z_L) = N(0, I) */
            out->kl_top = elbo__kl_normal_std(ctx, qmu[t], qlv[t]);
            if (closed_top && (t > 0 || S == 1)) {
                out->kl[t] = out->kl_top;
            } else if (closed_top) { /* one layer: (B, Z) at the example, over the samples */
                const int64_t shape[3] = {B, S, c->z[0]};
                out->kl[t] = elbo_reshape2(
                    ctx, elbo_add(ctx, elbo_reshape3(ctx, out->kl_top, B, 1, c->z[0]),
                                  elbo_tensor_zeros(ctx, 3, shape)),
                    B * S, c->z[0]);
            } else {
                int64_t one = 1;
                elbo_tensor *zero = elbo_tensor_zeros(ctx, 1, &one);
                out->kl[t] = elbo_sub(ctx, logq[t], log_normal(ctx, z[t], zero, zero));
            }
        } else { /* p(z_t | z_t+1) */
            elbo_tensor *pmu, *plv;
            if ((st = gauss(ctx, h, &h->p[t], z[t + 1], c->z[t], &pmu, &plv)) != ELBO_OK) return st;
            out->kl[t] = elbo_sub(ctx, logq[t], log_normal(ctx, z[t], pmu, plv));
        }
        if (!out->kl[t]) return elbo_last_status();
    }
    elbo_tensor *a, *b = NULL, *o = elbo_nn_mlp_forward(ctx, &h->px, z[0]);
    if (!o) return elbo_last_status();
    if (h->m == 2) {
        elbo_tensor *parts[2];
        const int64_t sizes[2] = {h->D, h->D};
        if (elbo_split(ctx, o, 1, 2, sizes, parts) != ELBO_OK) return elbo_last_status();
        a = parts[0];
        b = parts[1];
    } else {
        a = o;
    }
    elbo_tensor *xr = S == 1 ? x : elbo__repeat_rows(ctx, xd, B, S, h->D);
    out->lpx = elbo__lik_log_px(ctx, &h->lik, xr, a, b);
    return out->lpx ? ELBO_OK : elbo_last_status();
}

/* Training loss per example, as the vae model:
 *   A, B: -mean log p(x|z_1) + beta_t sum_t sum_j k_tj, k_tj = the batch-mean KL of dimension
 *         j of layer t (max(lambda, k_tj) with free bits)
 *   iwae: -mean_b [logsumexp_s log w_bs - log S], log w = log p(x|z_1) - beta_t sum_t KL_t
 * extras: recon, kl (sum over layers), beta. */
static elbo_tensor *hvae_loss(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                              int64_t B, elbo_rng *rng, double *extra) {
    (void)labels;
    hvae_model *h = (hvae_model *)m;
    const elbo_hvae_config *c = &h->cfg;
    const int64_t S = c->obj.samples;
    int64_t xs[2] = {B, h->D};
    elbo_tensor *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs);
    chain ch;
    if (!xt || run_chain(ctx, h, xt, x, B, S, c->obj.estimator == ELBO_SGVB_B, rng, &ch) != ELBO_OK)
        return NULL;
    const float beta = elbo__objective_beta(&c->obj, m->step); /* KL warm-up */
    elbo_tensor *loss, *klsum = NULL;
    if (c->obj.estimator == ELBO_IWAE) {
        for (int t = 0; t < c->layers; t++) {
            elbo_tensor *kt = elbo_sum_axis(ctx, ch.kl[t], 1, 0);
            klsum = klsum ? elbo_add(ctx, klsum, kt) : kt;
        }
        elbo_tensor *lw = elbo_reshape2(ctx, elbo_sub(ctx, ch.lpx, elbo_scale(ctx, klsum, beta)), B, S);
        loss = elbo_scale(ctx, elbo_mean(ctx, elbo_add_scalar(ctx, elbo_logsumexp(ctx, lw, 1, 0),
                                                              -logf((float)S))), -1.0f);
    } else {
        loss = elbo_scale(ctx, elbo_mean(ctx, ch.lpx), -1.0f);
        for (int t = 0; t < c->layers; t++) {
            elbo_tensor *kj = elbo_mean_axis(ctx, ch.kl[t], 0, 0);
            if (c->obj.free_bits > 0) kj = elbo_clamp(ctx, kj, c->obj.free_bits, INFINITY);
            loss = elbo_add(ctx, loss, elbo_scale(ctx, elbo_sum(ctx, kj), beta));
        }
    }
    loss = elbo_add_scalar(ctx, loss, (float)elbo__lik_dequant_nats(&h->lik));
    if (!loss) return NULL;
    if (extra) {
        double s = 0, k = 0;
        for (int64_t i = 0; i < ch.lpx->numel; i++) s += ch.lpx->data[i];
        for (int t = 0; t < c->layers; t++)
            for (int64_t i = 0; i < ch.kl[t]->numel; i++) k += ch.kl[t]->data[i];
        extra[0] = -s / (double)(B * S) + elbo__lik_dequant_nats(&h->lik);
        extra[1] = k / (double)(B * S);
        extra[2] = beta;
    }
    return loss;
}

/* sums += per-example: neg_elbo, recon, kl, nll_iwae (k = eval_samples chains per example,
 * in chunks, running log-sum-exp in double), [4] active units (eval_end), then kl_t per
 * layer; the top KL in closed form, the others by Monte Carlo over the same k chains. */
static elbo_status hvae_eval(elbo_ctx *ctx, elbo_model *m, const float *x, const int32_t *labels,
                             int64_t B, elbo_rng *rng, double *sums) {
    (void)labels;
    hvae_model *h = (hvae_model *)m;
    const elbo_hvae_config *c = &h->cfg;
    const int Lz = c->layers;
    const int64_t k = m->eval_samples > 0 ? m->eval_samples : 1;
    int64_t S = ((int64_t)1 << 22) / (B * h->D * h->m);
    S = S < 1 ? 1 : S > k ? k : S;
    int grad = elbo_ctx_set_grad(ctx, 0);
    double *run_max = elbo_ctx_alloc(ctx, (size_t)B * sizeof(double));
    double *run_sum = elbo_ctx_alloc(ctx, (size_t)B * sizeof(double));
    double *acc = elbo_ctx_alloc(ctx, (size_t)B * (2 + Lz) * sizeof(double)); /* rec, kl_t... */
    elbo_status st = run_max && run_sum && acc ? ELBO_OK : elbo_last_status();
    for (int64_t b = 0; st == ELBO_OK && b < B; b++) {
        run_max[b] = -INFINITY;
        run_sum[b] = 0;
        for (int j = 0; j < 2 + Lz; j++) acc[b * (2 + Lz) + j] = 0;
    }
    int64_t xs[2] = {B, h->D};
    elbo_tensor *xt = elbo_tensor_wrap(ctx, (float *)x, 2, xs);
    elbo_ctx *cc = h->chunk_ctx;
    elbo_ctx_set_grad(cc, 0);
    for (int64_t i0 = 0; st == ELBO_OK && i0 < k; i0 += S) {
        const int64_t L = k - i0 < S ? k - i0 : S;
        elbo_ctx_reset(cc);
        chain mc; /* Monte-Carlo KLs for log w; the top one also in closed form */
        if ((st = run_chain(cc, h, xt, x, B, L, 0, rng, &mc)) != ELBO_OK) break;
        for (int64_t b = 0; b < B; b++)
            for (int64_t l = 0; l < L; l++) {
                const int64_t row = b * L + l;
                double lw = mc.lpx->data[row];
                acc[b * (2 + Lz)] -= mc.lpx->data[row];
                for (int t = 0; t < Lz; t++) {
                    const int64_t Z = c->z[t];
                    double kmc = 0, kcf = 0;
                    const int64_t rt = Lz == 1 ? b : row; /* kl_top's row */
                    for (int64_t j = 0; j < Z; j++) {
                        kmc += mc.kl[t]->data[row * Z + j];
                        if (t == Lz - 1) kcf += mc.kl_top->data[rt * Z + j];
                    }
                    lw -= kmc;
                    acc[b * (2 + Lz) + 2 + t] += t == Lz - 1 ? kcf : kmc;
                }
                elbo__lse_push(&run_max[b], &run_sum[b], lw);
            }
        if (i0 == 0) /* active units: the means of the first chunk's chains, sample 0 */
            for (int t = 0; t < Lz; t++)
                for (int64_t b = 0; b < B; b++)
                    for (int64_t j = 0; j < c->z[t]; j++) {
                        const int64_t row = t == 0 ? b : b * L;
                        double mj = mc.mu[t]->data[row * c->z[t] + j];
                        h->mu_sum[h->z_off[t] + j] += mj;
                        h->mu_sq[h->z_off[t] + j] += mj * mj;
                    }
    }
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    const double dq = elbo__lik_dequant_nats(&h->lik);
    for (int64_t b = 0; b < B; b++) {
        double rb = acc[b * (2 + Lz)] / (double)k + dq, kb = 0;
        for (int t = 0; t < Lz; t++) {
            double kt = acc[b * (2 + Lz) + 2 + t] / (double)k;
            sums[5 + t] += kt;
            kb += kt;
        }
        sums[0] += rb + kb;
        sums[1] += rb;
        sums[2] += kb;
        sums[3] += -(run_max[b] + log(run_sum[b]) - log((double)k)) + dq;
    }
    return ELBO_OK;
}

static elbo_status hvae_eval_begin(elbo_model *m) {
    hvae_model *h = (hvae_model *)m;
    const int64_t n = h->z_off[h->cfg.layers];
    memset(h->mu_sum, 0, (size_t)n * sizeof(double));
    memset(h->mu_sq, 0, (size_t)n * sizeof(double));
    return ELBO_OK;
}

/* active units of every layer (Var_x of the mean of q(z_t | z_t-1) along one sampled chain
 * > 0.01), their total in [4], each layer's after the per-layer KLs. */
static elbo_status hvae_eval_end(elbo_model *m, int64_t n, double *means) {
    hvae_model *h = (hvae_model *)m;
    int total = 0;
    for (int t = 0; t < h->cfg.layers; t++) {
        int au = 0;
        for (int64_t j = h->z_off[t]; j < h->z_off[t + 1]; j++) {
            double mean = h->mu_sum[j] / (double)n, var = h->mu_sq[j] / (double)n - mean * mean;
            au += var > 0.01;
        }
        means[5 + h->cfg.layers + t] = au;
        total += au;
    }
    means[4] = total;
    return ELBO_OK;
}

/* z_L (n, Z_L) -> the mean image, going down the chain by the means of p(z_t | z_t+1). */
static elbo_status hvae_decode(elbo_ctx *ctx, elbo_model *m, const float *zl, int64_t n, float *out) {
    hvae_model *h = (hvae_model *)m;
    const elbo_hvae_config *c = &h->cfg;
    int grad = elbo_ctx_set_grad(ctx, 0);
    int64_t zs[2] = {n, c->z[c->layers - 1]};
    elbo_tensor *z = elbo_tensor_wrap(ctx, (float *)zl, 2, zs), *lv;
    elbo_status st = z ? ELBO_OK : elbo_last_status();
    for (int t = c->layers - 2; t >= 0 && st == ELBO_OK; t--) st = gauss(ctx, h, &h->p[t], z, c->z[t], &z, &lv);
    elbo_tensor *o = st == ELBO_OK ? elbo_nn_mlp_forward(ctx, &h->px, z) : NULL;
    elbo_tensor *a = o && h->m == 2 ? elbo_slice(ctx, o, 1, 0, h->D) : o;
    elbo_ctx_set_grad(ctx, grad);
    if (!a) return elbo_last_status();
    elbo__lik_mean_image(&h->lik, a, out);
    return ELBO_OK;
}

/* x -> the mean of z_L going up the chain by the means of q. */
static elbo_status hvae_encode(elbo_ctx *ctx, elbo_model *m, const float *x, int64_t B, float *zl) {
    hvae_model *h = (hvae_model *)m;
    const elbo_hvae_config *c = &h->cfg;
    int grad = elbo_ctx_set_grad(ctx, 0);
    int64_t xs[2] = {B, h->D};
    elbo_tensor *z = elbo_tensor_wrap(ctx, (float *)x, 2, xs), *lv;
    elbo_status st = z ? ELBO_OK : elbo_last_status();
    for (int t = 0; t < c->layers && st == ELBO_OK; t++) st = gauss(ctx, h, &h->q[t], z, c->z[t], &z, &lv);
    elbo_ctx_set_grad(ctx, grad);
    if (st != ELBO_OK) return st;
    memcpy(zl, z->data, (size_t)z->numel * sizeof(float));
    return ELBO_OK;
}

/* Ancestral samples: z_L ~ N(0, I), z_t ~ p(z_t | z_t+1), then the mean image of p(x | z_1). */
static elbo_status hvae_sample(elbo_ctx *ctx, elbo_model *m, int64_t n, elbo_rng *rng, float *out) {
    hvae_model *h = (hvae_model *)m;
    const elbo_hvae_config *c = &h->cfg;
    int grad = elbo_ctx_set_grad(ctx, 0);
    elbo_tensor *z = elbo_tensor_new2(ctx, n, c->z[c->layers - 1]), *mu = NULL, *lv = NULL;
    elbo_status st = z ? ELBO_OK : elbo_last_status();
    if (z) elbo_rng_normal(rng, z->data, (size_t)z->numel, 0.0f, 1.0f);
    for (int t = c->layers - 2; t >= 0 && st == ELBO_OK; t--) {
        st = gauss(ctx, h, &h->p[t], z, c->z[t], &mu, &lv);
        if (st == ELBO_OK && !(z = draw(ctx, mu, lv, 1, rng))) st = elbo_last_status();
    }
    elbo_tensor *o = st == ELBO_OK ? elbo_nn_mlp_forward(ctx, &h->px, z) : NULL;
    elbo_tensor *a = o && h->m == 2 ? elbo_slice(ctx, o, 1, 0, h->D) : o;
    elbo_ctx_set_grad(ctx, grad);
    if (!a) return st != ELBO_OK ? st : elbo_last_status();
    elbo__lik_mean_image(&h->lik, a, out);
    return ELBO_OK;
}

static void hvae_free(elbo_model *m) {
    if (!m) return;
    hvae_model *h = (hvae_model *)m;
    elbo_paramset_free(h->ps);
    elbo_ctx_free(h->chunk_ctx);
    free(h->mu_sum);
    free(h->mu_sq);
    free(m->config);
    free(h);
}

static char *config_json(const elbo_hvae_config *c) {
    elbo__jbuf j = {0};
    char buf[192];
    snprintf(buf, sizeof buf, "{\"c\":%lld,\"h\":%lld,\"w\":%lld,\"layers\":%d,\"z\":[",
             (long long)c->c, (long long)c->h, (long long)c->w, c->layers);
    elbo__jbuf_puts(&j, buf);
    for (int i = 0; i < c->layers; i++) {
        snprintf(buf, sizeof buf, "%s%d", i ? "," : "", c->z[i]);
        elbo__jbuf_puts(&j, buf);
    }
    elbo__jbuf_puts(&j, "],\"hidden\":[");
    for (int i = 0; i < c->n_hidden; i++) {
        snprintf(buf, sizeof buf, "%s%d", i ? "," : "", c->hidden[i]);
        elbo__jbuf_puts(&j, buf);
    }
    elbo__jbuf_puts(&j, "],");
    elbo__objective_json(&j, c->act, &c->obj);
    if (j.oom) {
        elbo__jbuf_free(&j);
        return NULL;
    }
    return j.p;
}

elbo_status elbo_hvae_model_new(const elbo_hvae_config *cfg, uint64_t seed, elbo_model **out) {
    *out = NULL;
    elbo_status st = elbo_hvae_config_check(cfg);
    if (st != ELBO_OK) return st;
    hvae_model *h = calloc(1, sizeof *h);
    if (!h) return elbo_error(ELBO_ERR_NOMEM, "hvae: out of memory");
    h->cfg = *cfg;
    h->D = cfg->c * cfg->h * cfg->w;
    h->lik = (elbo__lik){cfg->obj.likelihood, cfg->obj.sigma, h->D};
    h->m = elbo__lik_outputs(&h->lik);
    for (int t = 0; t < cfg->layers; t++) h->z_off[t + 1] = h->z_off[t] + cfg->z[t];
    h->ps = elbo_paramset_new();
    h->mu_sum = calloc((size_t)h->z_off[cfg->layers], sizeof(double));
    h->mu_sq = calloc((size_t)h->z_off[cfg->layers], sizeof(double));
    h->chunk_ctx = elbo_ctx_new(0);
    h->base.config = config_json(cfg);
    if (!h->ps || !h->mu_sum || !h->mu_sq || !h->chunk_ctx || !h->base.config)
        st = elbo_error(ELBO_ERR_NOMEM, "hvae: out of memory");
    if (st == ELBO_OK) st = nets_init(h);
    if (st == ELBO_OK) st = elbo_paramset_finalize(h->ps, seed);
    if (st != ELBO_OK) {
        hvae_free(&h->base);
        return st;
    }
    elbo_model *m = &h->base;
    elbo__vae_family_fill(m, "hvae", h->ps, cfg->c, cfg->h, cfg->w, &cfg->obj);
    m->n_eval = 5 + 2 * cfg->layers;
    for (int t = 0; t < cfg->layers; t++) {
        snprintf(h->names[2 * t], sizeof h->names[0], "kl_%d", t + 1);
        snprintf(h->names[2 * t + 1], sizeof h->names[0], "active_%d", t + 1);
        m->eval_names[5 + t] = h->names[2 * t];
        m->eval_names[5 + cfg->layers + t] = h->names[2 * t + 1];
    }
    m->loss = hvae_loss;
    m->eval = hvae_eval;
    m->eval_begin = hvae_eval_begin;
    m->eval_end = hvae_eval_end;
    m->sample = hvae_sample;
    m->z_dim = cfg->z[cfg->layers - 1];
    m->encode = hvae_encode;
    m->decode = hvae_decode;
    m->free = hvae_free;
    m->impl = h;
    *out = m;
    return ELBO_OK;
}

elbo_status elbo__hvae_from_json(const elbo__json *o, uint64_t seed, elbo_model **out) {
    elbo_hvae_config cfg;
    elbo_hvae_config_init(&cfg);
    int64_t layers = cfg.layers;
    int nz = -1;
    elbo_status st = elbo__cfg_int(o, "c", 1, 4, &cfg.c);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "h", 1, 4096, &cfg.h);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "w", 1, 4096, &cfg.w);
    if (st == ELBO_OK) st = elbo__cfg_int(o, "layers", 1, ELBO_HVAE_MAX_LAYERS, &layers);
    if (st == ELBO_OK) st = elbo__objective_parse(o, &cfg.act, &cfg.obj);
    if (st == ELBO_OK) st = elbo__cfg_int_list(o, "z", ELBO_HVAE_MAX_LAYERS, cfg.z, &nz);
    if (st == ELBO_OK) st = elbo__cfg_int_list(o, "hidden", ELBO_VAE_MAX_HIDDEN, cfg.hidden, &cfg.n_hidden);
    if (st != ELBO_OK) return st;
    cfg.layers = (int)layers;
    if (nz >= 0 && nz != cfg.layers)
        return elbo_error(ELBO_ERR_ARG, "config: \"z\" has %d entries for %d layers", nz, cfg.layers);
    return elbo_hvae_model_new(&cfg, seed, out);
}
