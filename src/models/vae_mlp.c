/* vae-mlp of bench-models.md: the VAE of Kingma & Welling (2014) with MLP encoder and
 * decoder and a Bernoulli likelihood, trained on the negative ELBO with one reparameterised
 * sample (SGVB estimator B, their eq. 10). */
#include "internal.h"

elbo_status elbo_vae_mlp_init(elbo_vae_mlp *m, int x_dim, int hidden, int z_dim, uint64_t seed) {
    memset(m, 0, sizeof *m);
    if (x_dim < 1 || hidden < 1 || z_dim < 1)
        return elbo_error(ELBO_ERR_ARG, "vae_mlp: x_dim %d, hidden %d, z_dim %d must be >= 1",
                          x_dim, hidden, z_dim);
    m->ps = elbo_paramset_new();
    if (!m->ps) return elbo_last_status() ? elbo_last_status() : ELBO_ERR_NOMEM;
    m->x_dim = x_dim;
    m->hidden = hidden;
    m->z_dim = z_dim;
    const int enc[4] = {x_dim, hidden, hidden, 2 * z_dim}, dec[4] = {z_dim, hidden, hidden, x_dim};
    elbo_status st = elbo_nn_mlp_init(&m->enc, m->ps, "enc", 3, enc, ELBO_ACT_RELU);
    if (st == ELBO_OK) st = elbo_nn_mlp_init(&m->dec, m->ps, "dec", 3, dec, ELBO_ACT_RELU);
    if (st == ELBO_OK) st = elbo_paramset_finalize(m->ps, seed);
    if (st != ELBO_OK) {
        elbo_paramset_free(m->ps);
        m->ps = NULL;
    }
    return st;
}

void elbo_vae_mlp_free(elbo_vae_mlp *m) {
    if (!m || !m->ps) return;
    elbo_paramset_free(m->ps);
    m->ps = NULL;
}

/* -ELBO / B = [sum BCE-with-logits(dec(z), x) + KL(N(mu, exp(logvar)) || N(0, I))] / B,
 * KL = 0.5 sum(mu^2 + exp(logvar) - 1 - logvar) (Kingma & Welling 2014, appendix B),
 * z = mu + exp(0.5 logvar) eps, (mu, logvar) = split(enc(x)). */
elbo_tensor *elbo_vae_mlp_loss(elbo_ctx *ctx, const elbo_vae_mlp *m, elbo_tensor *x,
                               elbo_tensor *eps) {
    if (!x || !eps) return NULL;
    if (!m || !m->ps) {
        elbo_error(ELBO_ERR_ARG, "vae_mlp_loss: model not initialised");
        return NULL;
    }
    if (x->ndim != 2 || x->shape[1] != m->x_dim || eps->ndim != 2 || eps->shape[1] != m->z_dim ||
        eps->shape[0] != x->shape[0]) {
        elbo__shape_error("vae_mlp_loss", x, eps, "x must be (B, x_dim) and eps (B, z_dim)");
        return NULL;
    }
    const int64_t B = x->shape[0];
    elbo_tensor *h = elbo_nn_mlp_forward(ctx, &m->enc, x), *mu_logvar[2];
    const int64_t sizes[2] = {m->z_dim, m->z_dim};
    if (!h || elbo_split(ctx, h, 1, 2, sizes, mu_logvar) != ELBO_OK) return NULL;
    elbo_tensor *mu = mu_logvar[0], *logvar = mu_logvar[1];
    elbo_tensor *z =
        elbo_add(ctx, mu, elbo_mul(ctx, elbo_exp(ctx, elbo_scale(ctx, logvar, 0.5f)), eps));
    elbo_tensor *logits = elbo_nn_mlp_forward(ctx, &m->dec, z);
    elbo_tensor *rec = elbo_bce_with_logits(ctx, logits, x, ELBO_REDUCE_SUM);
    elbo_tensor *kl_terms = elbo_add_scalar(
        ctx, elbo_sub(ctx, elbo_add(ctx, elbo_square(ctx, mu), elbo_exp(ctx, logvar)), logvar),
        -1.0f);
    elbo_tensor *kl = elbo_scale(ctx, elbo_sum(ctx, kl_terms), 0.5f);
    return elbo_scale(ctx, elbo_add(ctx, rec, kl), 1.0f / (float)B);
}
