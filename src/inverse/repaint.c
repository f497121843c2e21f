/* RePaint (Lugmayr et al. 2022, "RePaint: inpainting using denoising diffusion probabilistic
 * models", alg. 1 and the jump schedule of their code): ancestral steps on the unknown pixels,
 * the known ones drawn from q(x_s | y), and resampling by going back up; see
 * include/elbo/inverse.h. */
#include "sample/sample_internal.h"
#include "solvers_internal.h"

#include <stdlib.h>
#include <string.h>

void elbo_repaint_params_init(elbo_repaint_params *rp) {
    memset(rp, 0, sizeof *rp);
    rp->steps = 250;
    rp->jump = 10;
    rp->resample = 10;
    rp->seed = 0;
}

/* The jump schedule of RePaint's code (guided_diffusion/scheduler.py, get_schedule_jump with
 * t_T = K, n_sample = 1, jump_length = jump, jump_n_sample = resample), on the indices
 * j = K-1 .. -1 of DDPM's steps (index j is the level t = (j + 1) / K here, -1 is t = 0):
 * one step down at a time from K-1; on reaching a j that is a multiple of `jump` with
 * j < K - jump, go up `jump` steps and back down `jump`, resample - 1 times. The length is
 *   K + 2 (resample - 1) jump n_j,   n_j = #{j = 0, jump, 2 jump, ... < K - jump}. */
int64_t elbo_repaint_schedule_length(const elbo_repaint_params *rp) {
    if (!rp || rp->steps < 1 || rp->jump < 1 || rp->resample < 1) return -1;
    const int64_t K = rp->steps, J = rp->jump;
    const int64_t n_j = K > J ? (K - J - 1) / J + 1 : 0;
    return K + 2 * (int64_t)(rp->resample - 1) * J * n_j;
}

static elbo_status repaint_check(const elbo_prior *prior, const elbo_operator *op, const float *y,
                                 const elbo_repaint_params *rp) {
    if (!op) return elbo_error(ELBO_ERR_ARG, "repaint_solve: op is NULL");
    if (op->kind != ELBO_OP_INPAINT)
        return elbo_error(ELBO_ERR_ARG,
                          "repaint_solve: op must be an inpaint operator, got kind %d (%s)",
                          (int)op->kind,
                          op->kind == ELBO_OP_SUPERRES  ? "superres"
                          : op->kind == ELBO_OP_DENOISE ? "denoise"
                          : op->kind == ELBO_OP_DEBLUR  ? "deblur"
                                                        : "unknown");
    if (!op->mask) return elbo_error(ELBO_ERR_ARG, "repaint_solve: op->mask is NULL");
    if (op->c != prior->c || op->h != prior->h || op->w != prior->w)
        return elbo_error(ELBO_ERR_ARG,
                          "repaint_solve: op shape (%lld, %lld, %lld) differs from the prior's "
                          "(%lld, %lld, %lld)",
                          (long long)op->c, (long long)op->h, (long long)op->w, (long long)prior->c,
                          (long long)prior->h, (long long)prior->w);
    for (int64_t k = 0; k < op->h * op->w; k++)
        if (op->mask[k] != 0.0f && op->mask[k] != 1.0f)
            return elbo_error(ELBO_ERR_ARG, "repaint_solve: op->mask[%lld] = %g, not 0 or 1",
                              (long long)k, (double)op->mask[k]);
    if (!y) return elbo_error(ELBO_ERR_ARG, "repaint_solve: y is NULL");
    if (!rp) return elbo_error(ELBO_ERR_ARG, "repaint_solve: params are NULL");
    if (rp->steps < 1)
        return elbo_error(ELBO_ERR_ARG, "repaint_solve: steps must be >= 1, got %d", rp->steps);
    if (rp->jump < 1)
        return elbo_error(ELBO_ERR_ARG, "repaint_solve: jump must be >= 1, got %d", rp->jump);
    if (rp->resample < 1)
        return elbo_error(ELBO_ERR_ARG, "repaint_solve: resample must be >= 1, got %d",
                          rp->resample);
    return ELBO_OK;
}

typedef struct {
    const elbo_prior *prior;
    const elbo_operator *op;
    const float *y;
    int64_t n, hw;
    int K;
    float *x0_hat, *z;
    elbo_rng *rng, *rng_known;
} repaint_state;

/* One step down from index j to j - 1 (t = (j + 1) / K to s = j / K):
 *   x_s^unknown ~ p(x_s | x_t) (the ancestral step, its draws from the main stream),
 *   x_s^known ~ q(x_s | y) = N(alpha_s y, sigma_s^2 I) (draws from the known pixels' stream),
 *   x_s = m (.) x_s^known + (1 - m) (.) x_s^unknown. */
static elbo_status repaint_down(repaint_state *r, float *x, int j) {
    const elbo_process *p = r->prior->process;
    elbo_noise_level lt, ls;
    elbo_posterior_coefs q;
    elbo_status st = elbo_process_at(p, (double)(j + 1) / r->K, &lt);
    if (!st) st = elbo_process_at(p, (double)j / r->K, &ls);
    if (!st) st = elbo_posterior_coefs_at(&ls, &lt, &q);
    if (!st) st = r->prior->denoise(r->prior->denoise_user, x, r->n, &lt, r->x0_hat);
    if (st) return st;
    elbo__ancestral_step(r->rng, &q, x, r->x0_hat, r->z, r->n);
    elbo_rng_normal(r->rng_known, r->z, (size_t)r->n, 0.0f, 1.0f);
    const float *m = r->op->mask;
    for (int64_t k = 0; k < r->n; k++)
        if (m[k % r->hw] != 0.0f) x[k] = (float)(ls.alpha * r->y[k] + ls.sigma * r->z[k]);
    return ELBO_OK;
}

/* One step up from index j to j + 1 (s = (j + 1) / K to t = (j + 2) / K):
 * x_t ~ q(x_t | x_s) = N(alpha_ts x_s, sigma_ts^2 I), from the main stream. */
static elbo_status repaint_up(repaint_state *r, float *x, int j) {
    const elbo_process *p = r->prior->process;
    elbo_noise_level ls, lt;
    elbo_posterior_coefs q;
    elbo_status st = elbo_process_at(p, (double)(j + 1) / r->K, &ls);
    if (!st) st = elbo_process_at(p, (double)(j + 2) / r->K, &lt);
    if (!st) st = elbo_posterior_coefs_at(&ls, &lt, &q);
    if (st) return st;
    elbo_rng_normal(r->rng, r->z, (size_t)r->n, 0.0f, 1.0f);
    const double sd = sqrt(q.var_ts);
    for (int64_t k = 0; k < r->n; k++) x[k] = (float)(q.alpha_ts * x[k] + sd * r->z[k]);
    return ELBO_OK;
}

/* x_1 ~ N(0, prior_std^2 I) from seed, then the jump schedule (elbo_repaint_schedule_length):
 * each step down as repaint_down, each step up as repaint_up; the output x0_hat = D(x_0, 0)
 * with the known pixels of y pasted in. The unknown pixels' chain draws from the stream of
 * seed exactly as the ancestral sampler (sample.h) does, and the known pixels' noise from a
 * second stream, so that with an all-zero mask and resample 1 this is the ancestral sampler
 * bit for bit. Calls: K + (resample - 1) jump n_j + 1 (one per step down, and the output). */
elbo_status elbo_repaint_solve(const elbo_prior *prior, const elbo_operator *op, const float *y,
                               const elbo_repaint_params *rp, float *x, int64_t B) {
    int64_t D = 0;
    elbo_status st = elbo__solver_check("repaint_solve", prior, 0, x, B, &D);
    if (st) return st;
    if ((st = repaint_check(prior, op, y, rp))) return st;
    const int64_t n = B * D;
    float *x0_hat = malloc((size_t)n * 2 * sizeof(float));
    if (!x0_hat)
        return elbo_error(ELBO_ERR_NOMEM, "repaint_solve: out of memory for %lld values",
                          (long long)n);
    elbo_rng rng, rng_known;
    elbo_rng_init(&rng, rp->seed);
    elbo_rng_init(&rng_known, rp->seed ^ 0x9E3779B97F4A7C15ull);
    repaint_state r = {prior,     op,     y,          n,    op->h * op->w,
                       rp->steps, x0_hat, x0_hat + n, &rng, &rng_known};
    elbo_rng_normal(&rng, x, (size_t)n, 0.0f, (float)elbo_process_prior_std(prior->process));
    const int K = rp->steps, J = rp->jump;
    for (int j = K - 1; j >= 0; j--) {
        if ((st = repaint_down(&r, x, j))) goto done;
        const int a = j - 1; /* the index reached */
        if (a >= 0 && a % J == 0 && a < K - J)
            for (int k = 1; k < rp->resample; k++) {
                for (int u = 0; u < J; u++)
                    if ((st = repaint_up(&r, x, a + u))) goto done;
                for (int u = 0; u < J; u++)
                    if ((st = repaint_down(&r, x, a + J - u))) goto done;
            }
    }
    /* the output: x0_hat at t = 0, the known pixels y */
    elbo_noise_level l0;
    if ((st = elbo_process_at(prior->process, 0.0, &l0))) goto done;
    if ((st = prior->denoise(prior->denoise_user, x, n, &l0, x0_hat))) goto done;
    if (!elbo__all_finite(x0_hat, n)) {
        st = elbo_error(ELBO_ERR_STATE, "repaint_solve: the samples diverged (values not finite)");
        goto done;
    }
    for (int64_t k = 0; k < n; k++) x[k] = op->mask[k % r.hw] != 0.0f ? y[k] : x0_hat[k];
done:
    free(x0_hat);
    return st;
}
