/* The inverse-problem solvers of include/elbo/inverse.h (plug-and-play, DPS, RePaint) on a
 * case with a known answer: Gaussian data x ~ N(mu, Sigma) on a 1 x 4 x 4 "image" (D = 16),
 * Sigma = U diag(s2) U^T with a random orthogonal U and variances s2 from 0.1 to 2, under the
 * default VP process (log-linear log-SNR from 13.3 to -5). Its denoiser and VJP are exact:
 *   x0_hat = mu + K_t (x_t - alpha mu),  K_t = alpha Sigma (alpha^2 Sigma + sigma^2 I)^{-1}
 *          = U diag(alpha s2 / (alpha^2 s2 + sigma^2)) U^T   (symmetric, so vjp = K_t u),
 * and a linear measurement y = A x + sigma_y n (A: 2 x 2 average pooling, M = 4) has the
 * posterior mean m = mu + Sigma A^T (A Sigma A^T + sigma_y^2 I)^{-1} (y - A mu). The energies
 * and the operator here are local to the test (test_inverse*.c of operators.c test those). */
#include "test.h"

#include "elbo/inverse.h"
#include "malloc_count.h"

#include <stdlib.h>
#include <string.h>

enum { GD = 16, GH = 4, GW = 4, GM = 4 };

/* ---- the Gaussian prior ------------------------------------------------------------------ */
typedef struct {
    double mu[GD], U[GD * GD], s2[GD]; /* U[i GD + k] = component i of eigenvector k */
    double Sigma[GD * GD];
    int calls, vjp_calls, fail_at; /* fail_at: the denoiser call that fails (0: none) */
    double *levels;                /* optional: lvl->t of each denoiser call */
    int n_levels, cap;
} gauss_prior;

static void gauss_init(gauss_prior *g, uint64_t seed) {
    memset(g, 0, sizeof *g);
    float r[GD * GD];
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    elbo_rng_normal(&rng, r, GD * GD, 0.0f, 1.0f);
    /* Gram-Schmidt (modified, twice) on the columns of r */
    for (int k = 0; k < GD; k++) {
        double v[GD];
        for (int i = 0; i < GD; i++) v[i] = r[i * GD + k];
        for (int pass = 0; pass < 2; pass++)
            for (int j = 0; j < k; j++) {
                double d = 0;
                for (int i = 0; i < GD; i++) d += v[i] * g->U[i * GD + j];
                for (int i = 0; i < GD; i++) v[i] -= d * g->U[i * GD + j];
            }
        double nv = 0;
        for (int i = 0; i < GD; i++) nv += v[i] * v[i];
        for (int i = 0; i < GD; i++) g->U[i * GD + k] = v[i] / sqrt(nv);
    }
    for (int k = 0; k < GD; k++) g->s2[k] = 0.1 * pow(20.0, k / (GD - 1.0));
    for (int i = 0; i < GD; i++) g->mu[i] = 0.5 * cos(1.3 * i);
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < GD; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) s += g->U[i * GD + k] * g->s2[k] * g->U[j * GD + k];
            g->Sigma[i * GD + j] = s;
        }
}

/* out = K_t in, K_t = U diag(alpha s2 / (alpha^2 s2 + sigma^2)) U^T (in, out of GD values) */
static void gauss_apply_K(const gauss_prior *g, const elbo_noise_level *l, const double *in,
                          double *out) {
    double w[GD];
    for (int k = 0; k < GD; k++) {
        double d = 0;
        for (int i = 0; i < GD; i++) d += g->U[i * GD + k] * in[i];
        w[k] = d * l->alpha * g->s2[k] / (l->alpha * l->alpha * g->s2[k] + l->sigma * l->sigma);
    }
    for (int i = 0; i < GD; i++) {
        double s = 0;
        for (int k = 0; k < GD; k++) s += g->U[i * GD + k] * w[k];
        out[i] = s;
    }
}

static elbo_status gauss_x0(gauss_prior *g, const float *x_t, int64_t n, const elbo_noise_level *l,
                            float *x0_hat) {
    if (n % GD) return elbo_error(ELBO_ERR_ARG, "gauss denoiser: %lld values", (long long)n);
    if (g->levels && g->n_levels < g->cap) g->levels[g->n_levels++] = l->t;
    if (++g->calls == g->fail_at) return elbo_error(ELBO_ERR_STATE, "gauss denoiser: test failure");
    for (int64_t b = 0; b < n / GD; b++) {
        double d[GD], o[GD];
        for (int i = 0; i < GD; i++) d[i] = x_t[b * GD + i] - l->alpha * g->mu[i];
        gauss_apply_K(g, l, d, o);
        for (int i = 0; i < GD; i++) x0_hat[b * GD + i] = (float)(g->mu[i] + o[i]);
    }
    return ELBO_OK;
}

static elbo_status gauss_denoise(void *user, const float *x_t, int64_t n, const elbo_noise_level *l,
                                 float *x0_hat) {
    return gauss_x0(user, x_t, n, l, x0_hat);
}

/* x0_hat and vjp = K_t^T u = K_t u */
static elbo_status gauss_denoise_vjp(void *user, const float *x_t, int64_t n,
                                     const elbo_noise_level *l, const float *u, float *x0_hat,
                                     float *vjp) {
    gauss_prior *g = user;
    g->vjp_calls++;
    if (n % GD) return elbo_error(ELBO_ERR_ARG, "gauss vjp: %lld values", (long long)n);
    for (int64_t b = 0; b < n / GD; b++) {
        double d[GD], o[GD];
        for (int i = 0; i < GD; i++) d[i] = x_t[b * GD + i] - l->alpha * g->mu[i];
        gauss_apply_K(g, l, d, o);
        for (int i = 0; i < GD; i++) x0_hat[b * GD + i] = (float)(g->mu[i] + o[i]);
        for (int i = 0; i < GD; i++) d[i] = u[b * GD + i];
        gauss_apply_K(g, l, d, o);
        for (int i = 0; i < GD; i++) vjp[b * GD + i] = (float)o[i];
    }
    return ELBO_OK;
}

static elbo_prior gauss_as_prior(gauss_prior *g, const elbo_process *p) {
    elbo_prior pr = {p, gauss_denoise, g, gauss_denoise_vjp, g, 1, GH, GW, NULL};
    return pr;
}

/* ---- small dense linear algebra (double) -------------------------------------------------- */
/* Solves S X = B in place for SPD S (M x M, overwritten by its Cholesky factor) and B (M x R). */
static void chol_solve(double *S, int M, double *Bm, int R) {
    for (int j = 0; j < M; j++) {
        for (int k = 0; k < j; k++) S[j * M + j] -= S[j * M + k] * S[j * M + k];
        S[j * M + j] = sqrt(S[j * M + j]);
        for (int i = j + 1; i < M; i++) {
            for (int k = 0; k < j; k++) S[i * M + j] -= S[i * M + k] * S[j * M + k];
            S[i * M + j] /= S[j * M + j];
        }
    }
    for (int r = 0; r < R; r++) {
        for (int i = 0; i < M; i++) {
            for (int k = 0; k < i; k++) Bm[i * R + r] -= S[i * M + k] * Bm[k * R + r];
            Bm[i * R + r] /= S[i * M + i];
        }
        for (int i = M - 1; i >= 0; i--) {
            for (int k = i + 1; k < M; k++) Bm[i * R + r] -= S[k * M + i] * Bm[k * R + r];
            Bm[i * R + r] /= S[i * M + i];
        }
    }
}

/* The mean of N(mu, Sigma) given y = A x + N(0, sy2 I) (A: M x GD, M <= GD):
 * m = mu + Sigma A^T (A Sigma A^T + sy2 I)^{-1} (y - A mu). */
static void gauss_posterior_mean(const double *Sigma, const double *mu, const double *A, int M,
                                 const double *y, double sy2, double *m) {
    double SAt[GD * GD], S[GD * GD], r[GD];
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < M; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) s += Sigma[i * GD + k] * A[j * GD + k];
            SAt[i * M + j] = s;
        }
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < M; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) s += A[i * GD + k] * SAt[k * M + j];
            S[i * M + j] = s + (i == j ? sy2 : 0);
        }
        double s = 0;
        for (int k = 0; k < GD; k++) s += A[i * GD + k] * mu[k];
        r[i] = y[i] - s;
    }
    chol_solve(S, M, r, 1);
    for (int i = 0; i < GD; i++) {
        double s = 0;
        for (int j = 0; j < M; j++) s += SAt[i * M + j] * r[j];
        m[i] = mu[i] + s;
    }
}

static double dist(const double *a, const double *b, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (a[i] - b[i]) * (a[i] - b[i]);
    return sqrt(s);
}

/* The mean over the B images of x (B, GD). */
static void batch_mean(const float *x, int64_t B, double *mean) {
    for (int i = 0; i < GD; i++) mean[i] = 0;
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < GD; i++) mean[i] += x[b * GD + i];
    for (int i = 0; i < GD; i++) mean[i] /= (double)B;
}

/* ---- the measurement: 2 x 2 average pooling, and its energy ------------------------------- */
typedef struct {
    gauss_prior g;
    double A[GM * GD];
    double x_true[GD], y[GM], sy;
    double m[GD]; /* the posterior mean */
} gauss_problem;

static void problem_init(gauss_problem *P, double sy, uint64_t seed) {
    gauss_init(&P->g, seed);
    memset(P->A, 0, sizeof P->A);
    for (int i = 0; i < GH; i++)
        for (int j = 0; j < GW; j++) P->A[((i / 2) * 2 + j / 2) * GD + i * GW + j] = 0.25;
    float z[GD + GM];
    elbo_rng rng;
    elbo_rng_init(&rng, seed + 1);
    elbo_rng_normal(&rng, z, GD + GM, 0.0f, 1.0f);
    for (int i = 0; i < GD; i++) {
        double s = 0;
        for (int k = 0; k < GD; k++) s += P->g.U[i * GD + k] * sqrt(P->g.s2[k]) * z[k];
        P->x_true[i] = P->g.mu[i] + s;
    }
    for (int j = 0; j < GM; j++) {
        double s = 0;
        for (int k = 0; k < GD; k++) s += P->A[j * GD + k] * P->x_true[k];
        P->y[j] = s + sy * z[GD + j];
    }
    P->sy = sy;
    gauss_posterior_mean(P->g.Sigma, P->g.mu, P->A, GM, P->y, sy * sy, P->m);
}

/* E(x_b) = ||y - A x_b||^2 / (2 sy^2), grad = A^T (A x_b - y) / sy^2, the same y for every
 * image; user = gauss_problem *. */
static elbo_status pool_energy(void *user, const float *x, int64_t B, double *value, float *grad) {
    const gauss_problem *P = user;
    const double w = 1.0 / (P->sy * P->sy);
    for (int64_t b = 0; b < B; b++) {
        double r[GM], e = 0;
        for (int j = 0; j < GM; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) s += P->A[j * GD + k] * x[b * GD + k];
            r[j] = s - P->y[j];
            e += r[j] * r[j];
        }
        if (value) value[b] = 0.5 * w * e;
        if (grad)
            for (int k = 0; k < GD; k++) {
                double s = 0;
                for (int j = 0; j < GM; j++) s += P->A[j * GD + k] * r[j];
                grad[b * GD + k] = (float)(w * s);
            }
    }
    return ELBO_OK;
}

/* E = 0: nothing to condition on */
static elbo_status zero_energy(void *user, const float *x, int64_t B, double *value, float *grad) {
    (void)user, (void)x;
    for (int64_t b = 0; b < B; b++)
        if (value) value[b] = 0;
    if (grad) memset(grad, 0, (size_t)(B * GD) * sizeof(float));
    return ELBO_OK;
}

/* The fixed point of PnP's uniform schedule on [0, 1] (see inverse_pnp_uniform_recovers_the_
 * posterior_mean): the posterior mean under the prior N(mu, Sigma_eff), Sigma_eff = U diag(s2_k
 * / c_k) U^T, c_k = 1 / (1 + SNR(1) s2_k) - 1 / (1 + SNR(0) s2_k). */
static void pnp_fixed_point(const gauss_problem *P, const elbo_process *p, double *m_eff) {
    elbo_noise_level l0, l1;
    elbo_process_at(p, 0.0, &l0);
    elbo_process_at(p, 1.0, &l1);
    double S[GD * GD];
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < GD; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) {
                double s2 = P->g.s2[k];
                double c = 1 / (1 + exp(l1.log_snr) * s2) - 1 / (1 + exp(l0.log_snr) * s2);
                s += P->g.U[i * GD + k] * s2 / c * P->g.U[j * GD + k];
            }
            S[i * GD + j] = s;
        }
    gauss_posterior_mean(S, P->g.mu, P->A, GM, P->y, P->sy * P->sy, m_eff);
}

/* C = A B for GD x GD matrices (C may not alias) */
static void matmul(const double *A, const double *Bm, double *C) {
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < GD; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) s += A[i * GD + k] * Bm[k * GD + j];
            C[i * GD + j] = s;
        }
}

/* The output law of DPS with the likelihood step on the Gaussian problem. Every step is affine
 * in x_t plus independent Gaussian noise:
 *   x0_hat = mu + K_t (x_t - alpha_t mu),
 *   x_s = coef_xt x_t + coef_x (x0_hat - zeta (sigma_t^2 / alpha_t) K_t A^T (A x0_hat - y) /
 *         sy^2) + sqrt(var) z,
 * so with z_t = zeta coef_x sigma_t^2 / alpha_t and G_t = coef_xt I + coef_x K_t - z_t K_t
 * A^T A K_t / sy^2 the mean and covariance
 * follow exactly from x_1 ~ N(0, I): mean_s = (the map at mean_t), C_s = G_t C_t G_t^T + var I;
 * the output x0_hat(x_0) has mean mu + K_0 (mean_0 - alpha_0 mu), covariance K_0 C_0 K_0. */
static void dps_law_step(const gauss_problem *P, const elbo_process *p, int K, double zeta,
                         int pigdm, double *mean, double *cov);
static void dps_law(const gauss_problem *P, const elbo_process *p, int K, double zeta, double *mean,
                    double *cov) {
    dps_law_step(P, p, K, zeta, 0, mean, cov);
}
/* pigdm: the step times sy^2 / (sy^2 + r_t^2 / 4), r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2)
 * (A A^T = I / 4). */
static void dps_law_step(const gauss_problem *P, const elbo_process *p, int K, double zeta,
                         int pigdm, double *mean, double *cov) {
    double mt[GD] = {0}, C[GD * GD] = {0}, Kt[GD * GD], G[GD * GD], T1[GD * GD], AtA[GD * GD];
    for (int i = 0; i < GD; i++) C[i * GD + i] = 1;
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < GD; j++) {
            double s = 0;
            for (int k = 0; k < GM; k++) s += P->A[k * GD + i] * P->A[k * GD + j];
            AtA[i * GD + j] = s / (P->sy * P->sy);
        }
    elbo_noise_level lt, ls;
    elbo_process_at(p, 1.0, &lt);
    for (int i = K; i >= 0; i--) {
        /* K_t as a matrix, column by column */
        for (int j = 0; j < GD; j++) {
            double e[GD] = {0}, col[GD];
            e[j] = 1;
            gauss_apply_K(&P->g, &lt, e, col);
            for (int r = 0; r < GD; r++) Kt[r * GD + j] = col[r];
        }
        double d[GD], x0[GD];
        for (int r = 0; r < GD; r++) d[r] = mt[r] - lt.alpha * P->g.mu[r];
        gauss_apply_K(&P->g, &lt, d, x0);
        for (int r = 0; r < GD; r++) x0[r] += P->g.mu[r];
        if (i == 0) {
            for (int r = 0; r < GD; r++) mean[r] = x0[r];
            matmul(Kt, C, T1);
            matmul(T1, Kt, cov);
            return;
        }
        elbo_process_at(p, (double)(i - 1) / K, &ls);
        elbo_posterior_coefs q;
        elbo_posterior_coefs_at(&ls, &lt, &q);
        /* the mean step, with the data gradient at x0_hat(mean_t) */
        double res[GM], g[GD], kg[GD], ms[GD];
        for (int k = 0; k < GM; k++) {
            double s = 0;
            for (int r = 0; r < GD; r++) s += P->A[k * GD + r] * x0[r];
            res[k] = s - P->y[k];
        }
        for (int r = 0; r < GD; r++) {
            double s = 0;
            for (int k = 0; k < GM; k++) s += P->A[k * GD + r] * res[k];
            g[r] = s / (P->sy * P->sy);
        }
        gauss_apply_K(&P->g, &lt, g, kg);
        /* the guided x0_hat - zeta (sigma^2 / alpha) K_t grad E enters through coef_x */
        double zt = zeta * q.coef_x * lt.sigma * lt.sigma / lt.alpha;
        if (pigdm) {
            /* A is 2x2 average pooling: A A^T = I / 4 */
            const double s2 = P->sy * P->sy,
                         r2 = 0.25 * lt.sigma * lt.sigma / (lt.alpha * lt.alpha + lt.sigma * lt.sigma);
            zt *= s2 / (s2 + r2);
        }
        for (int r = 0; r < GD; r++) ms[r] = q.coef_xt * mt[r] + q.coef_x * x0[r] - zt * kg[r];
        /* G = coef_xt I + coef_x K_t - zt K_t AtA K_t */
        matmul(Kt, AtA, T1);
        matmul(T1, Kt, G);
        for (int r = 0; r < GD * GD; r++) G[r] = q.coef_x * Kt[r] - zt * G[r];
        for (int r = 0; r < GD; r++) G[r * GD + r] += q.coef_xt;
        matmul(G, C, T1);
        for (int r = 0; r < GD; r++)
            for (int c = 0; c < GD; c++) {
                double s = 0;
                for (int k = 0; k < GD; k++) s += T1[r * GD + k] * G[c * GD + k];
                C[r * GD + c] = s + (r == c ? q.var : 0);
            }
        memcpy(mt, ms, sizeof mt);
        lt = ls;
    }
}

/* An inpaint operator by hand (elbo_op_init lives elsewhere): kind, shape and mask. */
static elbo_operator inpaint_op(const float *mask) {
    elbo_operator op;
    memset(&op, 0, sizeof op);
    op.kind = ELBO_OP_INPAINT;
    op.c = 1, op.h = GH, op.w = GW;
    op.mask = mask;
    return op;
}

/* RePaint's get_schedule_jump (guided_diffusion/scheduler.py) with n_sample = 1 and no second
 * or third jump level, transcribed: the indices t_T - 1 .. -1 into ts; returns their count. */
static int ref_schedule(int t_T, int jump_length, int jump_n_sample, int *ts, int cap) {
    int jumps[1024] = {0}, n = 0; /* jumps[j] for j in range(0, t_T - jump_length, jump_length) */
    for (int j = 0; j < t_T - jump_length; j += jump_length) jumps[j] = jump_n_sample - 1;
    int t = t_T;
    while (t >= 1) {
        t = t - 1;
        if (n < cap) ts[n] = t;
        n++;
        if (t >= 0 && jumps[t] > 0) {
            jumps[t] = jumps[t] - 1;
            for (int k = 0; k < jump_length; k++) {
                t = t + 1;
                if (n < cap) ts[n] = t;
                n++;
            }
        }
    }
    if (n < cap) ts[n] = -1;
    return n + 1;
}

/* The output mean of RePaint on the Gaussian, following the schedule ts (index j is the level
 * (j + 1) / K): every step is affine in x plus independent noise, so the mean follows exactly:
 *   down j -> j - 1: mean_s = m (.) alpha_s y + (1 - m) (.) (coef_xt mean_t + coef_x
 * x0_hat(mean_t)) up j -> j + 1:   mean_t = alpha_ts mean_s, from mean_1 = 0, and the output m (.)
 * y + (1 - m) (.) x0_hat(mean_0). */
static void repaint_law_mean(const gauss_prior *g, const elbo_process *p, const int *ts, int n,
                             int K, const float *mask, const double *y, double *mean) {
    double mt[GD] = {0};
    for (int k = 0; k + 1 < n; k++) {
        elbo_noise_level la, lb;
        elbo_posterior_coefs q;
        elbo_process_at(p, (ts[k] + 1.0) / K, &la);
        elbo_process_at(p, (ts[k + 1] + 1.0) / K, &lb);
        if (ts[k + 1] < ts[k]) {
            double d[GD], x0[GD];
            elbo_posterior_coefs_at(&lb, &la, &q);
            for (int i = 0; i < GD; i++) d[i] = mt[i] - la.alpha * g->mu[i];
            gauss_apply_K(g, &la, d, x0);
            for (int i = 0; i < GD; i++)
                mt[i] =
                    mask[i] ? lb.alpha * y[i] : q.coef_xt * mt[i] + q.coef_x * (g->mu[i] + x0[i]);
        } else {
            elbo_posterior_coefs_at(&la, &lb, &q);
            for (int i = 0; i < GD; i++) mt[i] *= q.alpha_ts;
        }
    }
    elbo_noise_level l0;
    elbo_process_at(p, 0.0, &l0);
    double d[GD], x0[GD];
    for (int i = 0; i < GD; i++) d[i] = mt[i] - l0.alpha * g->mu[i];
    gauss_apply_K(g, &l0, d, x0);
    for (int i = 0; i < GD; i++) mean[i] = mask[i] ? y[i] : g->mu[i] + x0[i];
}

/* The copies' summed variance sum_i Var(x_i) over the B images (the spread^2 of a batch). */
static double batch_spread2(const float *x, int64_t B, const double *mean) {
    double s = 0;
    for (int64_t b = 0; b < B; b++)
        for (int i = 0; i < GD; i++) s += (x[b * GD + i] - mean[i]) * (x[b * GD + i] - mean[i]);
    return s / (double)(B - 1);
}

/* |A x - y| of one image of x */
static double residual(const gauss_problem *P, const float *xb) {
    double r = 0;
    for (int j = 0; j < GM; j++) {
        double s = -P->y[j];
        for (int k = 0; k < GD; k++) s += P->A[j * GD + k] * xb[k];
        r += s * s;
    }
    return sqrt(r);
}

/* PnP in five stages of falling lr (0.03 .. 0.0003, 11000 steps), each from the last one's x
 * (the first from N(0, I)), stage s with the seed seed0 + s: Adam's fluctuation around its
 * fixed point shrinks with lr. */
static elbo_status pnp_staged(const elbo_prior *prior, const elbo_energy *en, elbo_pnp_params *pp,
                              uint64_t seed0, float *x, int64_t B) {
    const double lrs[] = {0.03, 0.01, 0.003, 0.001, 0.0003};
    const int steps[] = {1000, 2000, 2000, 3000, 3000};
    elbo_status st = ELBO_OK;
    for (int s = 0; s < 5 && !st; s++) {
        pp->lr = lrs[s], pp->steps = steps[s], pp->seed = seed0 + (uint64_t)s;
        st = elbo_pnp_solve(prior, en, pp, s > 0, x, B);
    }
    return st;
}

/* (a) PnP with the uniform schedule on [0, 1] recovers the posterior mean (sigma_y = 0.3).
 * Why: in the eigenbasis of Sigma (a variance s2), with v = alpha^2 s2 + sigma^2, the exact
 * denoiser gives eps_hat - eps = (alpha sigma / v)(x - mu) - (alpha^2 s2 / v) eps, so a step's
 * prior gradient has the mean w(t) 2 (alpha sigma / v)^2 (x - mu). With t ~ U(0, 1), w =
 * -dlog_snr/dt / 2 and alpha^2 sigma^2 / v^2 = SNR / (1 + SNR s2)^2 (VP), its mean over t is
 *   int_{SNR(1)}^{SNR(0)} dSNR / (1 + SNR s2)^2 (x - mu) = (c / s2)(x - mu),
 *   c = 1 / (1 + SNR(1) s2) - 1 / (1 + SNR(0) s2),
 * the gradient of -log N(x; mu, Sigma_eff), Sigma_eff = U diag(s2 / c) U^T: the ELBO weight makes
 * the prior term -log p(x) up to the truncation of log-SNR to [-5, 13.3] (c = 0.9993 .. 0.987
 * here). Adam's fixed point in expectation is then m_eff, the posterior mean under Sigma_eff,
 * 0.005 from m. Adam on the noisy gradient fluctuates around it; lr decays in stages 0.03 ..
 * 0.0003 over 11000 steps, and the mean over B = 64 independent copies (own init and eps) has
 * the standard error spread / sqrt(B). Measured: standard error 0.010, |mean - m_eff| 0.012,
 * |mean - m| 0.014, against |m - mu| = 1.59. Asserted: |mean - m_eff| within 3 standard errors
 * of the run and |mean - m| < 0.03 (1.9% of |m - mu|); a prior weight of 2 would put the fixed
 * point 0.37 from m, so the test sees the ELBO weight and the factors of the Jacobian term. */
TEST(inverse_pnp_uniform_recovers_the_posterior_mean) {
    gauss_problem P;
    problem_init(&P, 0.3, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    enum { B = 64 };
    float *x = malloc(sizeof(float) * B * GD);
    CHECK(x);
    double m_eff[GD], mean[GD], m_2[GD], half[GD * GD];
    pnp_fixed_point(&P, &p, m_eff);
    for (int i = 0; i < GD * GD; i++) half[i] = P.g.Sigma[i] / 2;
    gauss_posterior_mean(half, P.g.mu, P.A, GM, P.y, P.sy * P.sy, m_2);
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    pp.schedule = ELBO_PNP_UNIFORM;
    pp.t_min = 0, pp.t_max = 1;
    CHECK(pnp_staged(&prior, &en, &pp, 11, x, B) == ELBO_OK);
    batch_mean(x, B, mean);
    const double se = sqrt(batch_spread2(x, B, mean) / B);
    const double e_eff = dist(mean, m_eff, GD), e = dist(mean, P.m, GD);
    printf("    |mean - m_eff| %.4f (standard error %.4f), |mean - m| %.4f, |m_eff - m| %.4f, "
           "|mu - m| %.3f, |m(prior weight 2) - m| %.3f\n",
           e_eff, se, e, dist(m_eff, P.m, GD), dist(P.g.mu, P.m, GD), dist(m_2, P.m, GD));
    CHECK_MSG(e_eff < 3 * se, "|mean - m_eff| %.4f, 3 standard errors %.4f", e_eff, 3 * se);
    CHECK_MSG(e < 0.03, "|mean - m| = %.4f", e);
    CHECK(dist(m_2, P.m, GD) > 10 * 0.03);
    free(x);
}

/* The fixed point of PnP at one level t (t_min = t_max - 1e-9) with the prior weight
 * prior_weight w(t): as in (a) a step's mean prior gradient is kappa_k (x - mu) in the
 * eigenbasis, kappa_k = prior_weight w(t) 2 (alpha sigma / v_k)^2, v_k = alpha^2 s2_k + sigma^2,
 * so it lands on the posterior mean under N(mu, U diag(1 / kappa_k) U^T). */
static void pnp_fixed_point_at(const gauss_problem *P, const elbo_process *p, double t, double w,
                               double *m_eff) {
    elbo_noise_level l;
    elbo_process_at(p, t, &l);
    double S[GD * GD];
    for (int i = 0; i < GD; i++)
        for (int j = 0; j < GD; j++) {
            double s = 0;
            for (int k = 0; k < GD; k++) {
                double v = l.alpha * l.alpha * P->g.s2[k] + l.sigma * l.sigma;
                double kappa = w * 2 * (l.alpha * l.sigma / v) * (l.alpha * l.sigma / v);
                s += P->g.U[i * GD + k] / kappa * P->g.U[j * GD + k];
            }
            S[i * GD + j] = s;
        }
    gauss_posterior_mean(S, P->g.mu, P->A, GM, P->y, P->sy * P->sy, m_eff);
}

/* (b) The simple weighting, w(t) = 1 / D (the paper's per-image mean squared error), at one
 * level t = 0.9 with prior_weight 100 (kappa_k 0.45 .. 0.52, against the measurement's 1 /
 * sigma_y^2 = 11): 64 copies land on the fixed point of pnp_fixed_point_at with w = 100 / D,
 * within 3 standard errors, and not on that of the ELBO weight at the same t (w = 100 *
 * -dlog_snr/dt / 2, 146 times larger). Measured: |mean - m_simple| 0.0019 (standard error
 * 0.0022), |m_simple - m_elbo| 1.63. */
TEST(inverse_pnp_simple_weighting_fixed_point) {
    gauss_problem P;
    problem_init(&P, 0.3, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    enum { B = 64 };
    float *x = malloc(sizeof(float) * B * GD);
    CHECK(x);
    const double t = 0.9, pw = 100;
    elbo_noise_level l;
    elbo_process_at(&p, t, &l);
    double m_simple[GD], m_elbo[GD], mean[GD];
    pnp_fixed_point_at(&P, &p, t, pw / GD, m_simple);
    pnp_fixed_point_at(&P, &p, t, pw * -0.5 * l.dlog_snr_dt, m_elbo);
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    CHECK(pp.weighting == ELBO_PNP_WEIGHT_ELBO && pp.energy_decay == 0);
    pp.weighting = ELBO_PNP_WEIGHT_SIMPLE;
    pp.schedule = ELBO_PNP_UNIFORM;
    pp.t_min = t - 1e-9, pp.t_max = t, pp.prior_weight = pw;
    CHECK(pnp_staged(&prior, &en, &pp, 21, x, B) == ELBO_OK);
    batch_mean(x, B, mean);
    const double se = sqrt(batch_spread2(x, B, mean) / B);
    const double e = dist(mean, m_simple, GD), gap = dist(m_simple, m_elbo, GD);
    printf("    |mean - m_simple| %.4f (standard error %.4f), |m_simple - m_elbo| %.3f\n", e, se,
           gap);
    CHECK_MSG(e < 3 * se, "|mean - m_simple| %.4f, 3 standard errors %.4f", e, 3 * se);
    CHECK_MSG(gap > 20 * se, "the two weightings' fixed points are %.4f apart", gap);
    free(x);
}

/* E(x) = g . x with a fixed g (grad g everywhere); user = const float * (GD values). */
static elbo_status linear_energy(void *user, const float *x, int64_t B, double *value,
                                 float *grad) {
    const float *gv = user;
    for (int64_t b = 0; b < B; b++) {
        double e = 0;
        for (int i = 0; i < GD; i++) e += (double)gv[i] * x[b * GD + i];
        if (value) value[b] = e;
        if (grad)
            for (int i = 0; i < GD; i++) grad[b * GD + i] = gv[i];
    }
    return ELBO_OK;
}

/* energy_decay multiplies grad E by c_i = 1 - i/N at step i. With prior_weight 0 and a linear
 * E (a constant gradient g) the path is Adam's on c_i g alone, recomputed here in double from
 * Kingma & Ba's recurrences: the solver matches it to float rounding (1e-5), and differs
 * from the undecayed path (whose steps keep their full size) by far more. */
TEST(inverse_pnp_energy_decay) {
    gauss_problem P;
    problem_init(&P, 0.3, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    float gv[GD], x[GD], x_plain[GD];
    for (int i = 0; i < GD; i++) gv[i] = (float)(0.5 + 0.1 * i) * (i % 2 ? -1.0f : 1.0f);
    elbo_energy en = {linear_energy, gv, 1.0};
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    pp.steps = 50, pp.prior_weight = 0, pp.lr = 0.1, pp.energy_decay = 1;
    for (int i = 0; i < GD; i++) x[i] = x_plain[i] = 0.25f;
    CHECK(elbo_pnp_solve(&prior, &en, &pp, 1, x, 1) == ELBO_OK);
    pp.energy_decay = 0;
    CHECK(elbo_pnp_solve(&prior, &en, &pp, 1, x_plain, 1) == ELBO_OK);
    double worst = 0, apart = 0;
    for (int i = 0; i < GD; i++) {
        double xr = 0.25, m = 0, v = 0, b1k = 1, b2k = 1;
        for (int k = 0; k < pp.steps; k++) {
            double g = (1.0 - (double)k / pp.steps) * gv[i];
            m = 0.9 * m + 0.1 * g, v = 0.999 * v + 0.001 * g * g;
            b1k *= 0.9, b2k *= 0.999;
            xr -= pp.lr * (m / (1 - b1k)) / (sqrt(v / (1 - b2k)) + 1e-8);
        }
        worst = fmax(worst, fabs(x[i] - xr));
        apart = fmax(apart, fabs(x_plain[i] - xr));
    }
    printf("    |x - Adam on (1 - i/N) g| %.2e, the undecayed path %.3f away\n", worst, apart);
    CHECK_MSG(worst < 1e-5, "|x - reference| %.3g", worst);
    CHECK(apart > 0.5);
}

/* (c) PnP with the paper's anneal schedule (t from t_max down to t_min): the levels follow
 * t_i = clamp((1 - i/N)(1 + cos(i/50)/4) t_max, t_min, t_max) (recorded at the denoiser); it is
 * not the MAP. As t -> t_min, sigma -> 0 and the prior term's weight w 2 (alpha sigma / v)^2
 * vanishes, so the last steps fit the data alone, and the null space of A keeps what the
 * earlier steps' prior gave. Measured over 64 copies from x ~ N(0, I) (3000 steps, lr 0.01,
 * the defaults' t range): mean per-copy |x - m| 0.46 (|mu - m| = 1.82, the start ~4.5), and
 * |A x - y| at most 0.0018 where the posterior mean has 0.040. Asserted: per-copy |x - m| <
 * 0.35 |mu - m| on average; |A x - y| < 0.25 |A m - y| for every copy (tighter than the
 * posterior mean: the data won at the end). */
TEST(inverse_pnp_anneal_lands_near_the_posterior_mean) {
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    enum { B = 64, N = 300 };
    float *x = malloc(sizeof(float) * B * GD);
    double levels[N];
    CHECK(x);
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    CHECK(pp.schedule == ELBO_PNP_ANNEAL);
    /* the schedule */
    pp.steps = N, pp.t_min = 0.05, pp.t_max = 0.9;
    P.g.levels = levels, P.g.cap = N, P.g.n_levels = 0;
    CHECK(elbo_pnp_solve(&prior, &en, &pp, 0, x, 1) == ELBO_OK);
    CHECK(P.g.n_levels == N && P.g.calls == N && P.g.vjp_calls == N);
    for (int i = 0; i < N; i++) {
        double t = (1.0 - (double)i / N) * (1.0 + cos(i / 50.0) / 4.0) * 0.9;
        t = t < 0.05 ? 0.05 : t > 0.9 ? 0.9 : t;
        CHECK_NEAR(levels[i], t, 1e-12);
    }
    CHECK(levels[0] == 0.9 && levels[N - 1] == 0.05);
    P.g.levels = NULL;
    /* the solution */
    elbo_pnp_params_init(&pp);
    pp.steps = 3000, pp.seed = 4;
    CHECK(elbo_pnp_solve(&prior, &en, &pp, 0, x, B) == ELBO_OK);
    float mf[GD];
    for (int i = 0; i < GD; i++) mf[i] = (float)P.m[i];
    const double d_mu = dist(P.g.mu, P.m, GD), r_m = residual(&P, mf);
    double d = 0, r_worst = 0;
    for (int b = 0; b < B; b++) {
        double xb[GD];
        for (int i = 0; i < GD; i++) xb[i] = x[b * GD + i];
        d += dist(xb, P.m, GD) / B;
        r_worst = fmax(r_worst, residual(&P, x + b * GD));
    }
    printf(
        "    per-copy |x - m| %.4f (|mu - m| %.3f), worst |A x - y| %.4f (posterior mean: %.4f)\n",
        d, d_mu, r_worst, r_m);
    CHECK_MSG(d < 0.35 * d_mu, "per-copy |x - m| %.4f, |mu - m| %.4f", d, d_mu);
    CHECK_MSG(r_worst < 0.25 * r_m, "|A x - y| %.4f, posterior mean's %.4f", r_worst, r_m);
    free(x);
}

/* DPS (zeta 1, K = 200, B = 2000 copies, seed 5) with `step` on the Gaussian problem of
 * sigma_y 0.1: *worst, the largest gap between the sample mean and the exact law's mean in
 * standard errors; *e_law and *e the distances of the law's and the sample mean to m; *d_mu
 * that of the prior mean. 0 on failure (the CHECK's message is in place). */
static int dps_against_law(elbo_dps_step step, double *worst, double *e_law, double *e,
                           double *d_mu) {
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    enum { B = 2000 };
    float *x = malloc(sizeof(float) * B * GD);
    if (!x) return 0;
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    dp.steps = 200, dp.step = step, dp.zeta = 1.0, dp.seed = 5;
    dp.aat = 0.25; /* A A^T = I / 4 (used by pigdm only) */
    int ok = elbo_dps_solve(&prior, &en, &dp, x, B) == ELBO_OK;
    ok = ok && P.g.calls == 201 && P.g.vjp_calls == 200;
    double mean[GD], lm[GD], cov[GD * GD];
    *worst = 0;
    if (ok) {
        batch_mean(x, B, mean);
        dps_law_step(&P, &p, dp.steps, dp.zeta, step == ELBO_DPS_PIGDM, lm, cov);
        for (int i = 0; i < GD; i++)
            *worst = fmax(*worst, fabs(mean[i] - lm[i]) / sqrt(cov[i * GD + i] / B));
        *e_law = dist(lm, P.m, GD), *e = dist(mean, P.m, GD), *d_mu = dist(P.g.mu, P.m, GD);
        printf("    sample mean vs law: worst %.2f standard errors; |law mean - m| %.4f, |sample "
               "mean - m| %.4f, |mu - m| %.3f\n",
               *worst, *e_law, *e, *d_mu);
    }
    free(x);
    return ok;
}

/* (b) DPS with the likelihood step: guidance by DPS's p(y | x_t) ~ N(y; A x0_hat, sigma_y^2 I)
 * at zeta = 1 through Tweedie (x0_hat - (sigma^2 / alpha) grad E), K = 200, sigma_y = 0.1, B =
 * 2000 copies. Its output law is Gaussian and known exactly (dps_law): the sample mean matches
 * the law's mean within 4.5 standard errors in every pixel (this checks the implementation:
 * grid, ancestral step, VJP, step size). The law's mean shows DPS's bias: p(y | x_t) ~ N(y;
 * A x0_hat, sigma_y^2 I) ignores A Cov[x | x_t] A^T, over-weighting the data at high noise.
 * Measured |law mean - m| at zeta 0.1, 0.3, 0.5, 1, 2: 0.257, 0.309, 0.362, 0.407, 0.435 (K =
 * 200), and nearly the same at K = 50 and 1000 (zeta 1: 0.412, 0.406): the convention makes
 * zeta a guidance scale independent of the step count. Sample mean at zeta 1: 0.417 (sampling
 * error rms ~0.04). Asserted: |law mean - m| < 0.45 and < 0.25 |mu - m| (|mu - m| = 1.82);
 * the sample mean likewise with 0.05 more; laws at K = 50 and K = 1000 within 0.02. */
TEST(inverse_dps_likelihood_step_matches_its_law_near_the_posterior_mean) {
    double worst, e_law, e, d_mu;
    CHECK(dps_against_law(ELBO_DPS_LIKELIHOOD, &worst, &e_law, &e, &d_mu));
    CHECK_MSG(worst < 4.5, "sample mean %.2f standard errors from the law's", worst);
    CHECK_MSG(e_law < 0.45 && e_law < 0.25 * d_mu, "|law mean - m| %.4f", e_law);
    CHECK_MSG(e < 0.5 && e < 0.25 * d_mu + 0.05, "|sample mean - m| %.4f", e);
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    double lm50[GD], lm1000[GD], cv[GD * GD];
    dps_law(&P, &p, 50, 1.0, lm50, cv);
    dps_law(&P, &p, 1000, 1.0, lm1000, cv);
    CHECK_MSG(dist(lm50, lm1000, GD) < 0.02, "the guidance depends on K: %.4f",
              dist(lm50, lm1000, GD));
}

/* DPS with the pigdm step (zeta 1, K = 200, B = 2000): the likelihood step with the variance
 * sy^2 + c r_t^2, here c = 1/4 (A is 2x2 average pooling, A A^T = I / 4). Its law is again
 * Gaussian (dps_law_step with pigdm): the sample mean matches it within 4.5 standard errors
 * (the implementation). PiGDM's r_t^2 = sigma_t^2 / (alpha_t^2 + sigma_t^2) stands in for
 * Cov[x | x_t] of a unit-variance prior (this one's variances run 0.1 .. 2): measured |law
 * mean - m| 0.127 against 0.407 for the plain likelihood step and 1.822 for the prior mean
 * (with c = 1, ignoring A A^T: 0.718). Asserted: the law matches the samples, |law mean - m| <
 * 0.2, and below the plain step's law (the inflation removes most of DPS's bias here). */
TEST(inverse_dps_pigdm_step_matches_its_law) {
    double worst, e_law, e, d_mu;
    CHECK(dps_against_law(ELBO_DPS_PIGDM, &worst, &e_law, &e, &d_mu));
    CHECK_MSG(worst < 4.5, "sample mean %.2f standard errors from the law's", worst);
    CHECK_MSG(e_law < 0.2, "|law mean - m| %.4f", e_law);
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    double lm[GD], cv[GD * GD];
    dps_law(&P, &p, 200, 1.0, lm, cv); /* the plain likelihood step */
    CHECK_MSG(e_law < dist(lm, P.m, GD), "pigdm %.4f, plain %.4f", e_law, dist(lm, P.m, GD));
    elbo_dps_step k;
    CHECK(elbo_dps_step_parse("pigdm", &k) == ELBO_OK && k == ELBO_DPS_PIGDM);
}

/* DPS with the norm step (the default, zeta 1, K = 200): x_s -= zeta grad ||y - A x0_hat||, so
 * the step does not depend on how E is scaled: E and norm_scale for sigma_y = 0.1 or 0.3 (E / 9,
 * s 3) give the same samples to float rounding (measured 1e-5; the update is zeta s^2 / ||r||
 * grad E, and zeta / ||r|| grad E would differ 9-fold). Measured on 1000 copies: |sample mean -
 * m| 0.31 (sampling error rms ~0.08) against |mu - m| = 1.82; 400 copies at zeta 0.27 gave
 * 0.14, at 2.4 0.44 (no exact law here: the step is nonlinear). Asserted: |sample mean - m| <
 * 0.25 |mu - m|. */
TEST(inverse_dps_norm_step) {
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    gauss_problem P2 = P;
    P2.sy = 0.3;
    elbo_energy en = {pool_energy, &P, P.sy}, en2 = {pool_energy, &P2, P2.sy};
    enum { B = 1000 };
    float *x = malloc(sizeof(float) * B * GD), *x2 = malloc(sizeof(float) * B * GD);
    CHECK(x && x2);
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    CHECK(dp.step == ELBO_DPS_NORM && dp.zeta == 1.0 && dp.steps == 1000);
    dp.steps = 200, dp.seed = 9;
    CHECK(elbo_dps_solve(&prior, &en, &dp, x, B) == ELBO_OK);
    CHECK(elbo_dps_solve(&prior, &en2, &dp, x2, B) == ELBO_OK);
    double worst = 0, mean[GD];
    for (int i = 0; i < B * GD; i++) worst = fmax(worst, fabs(x[i] - x2[i]));
    batch_mean(x, B, mean);
    const double e = dist(mean, P.m, GD), d_mu = dist(P.g.mu, P.m, GD);
    printf("    sigma_y 0.1 vs 0.3: max |diff| %.3g; |sample mean - m| %.4f, |mu - m| %.3f\n",
           worst, e, d_mu);
    CHECK_MSG(worst < 1e-4, "the norm step depends on E's scale: max |diff| %.3g", worst);
    CHECK_MSG(e < 0.25 * d_mu, "|sample mean - m| %.4f", e);
    free(x);
    free(x2);
}

/* With nothing to condition on, DPS (E = 0: both step kinds) and RePaint (an all-zero mask,
 * resample 1) are the ancestral sampler of sample.h, bit for bit: the same grid, steps, RNG
 * draws and output. */
TEST(inverse_solvers_unconditioned_are_the_ancestral_sampler) {
    gauss_prior g;
    gauss_init(&g, 3);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&g, &p);
    enum { B = 8, K = 40 };
    float a[B * GD], b[B * GD], y[B * GD] = {0}, mask[GD] = {0};
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.steps = K, sp.seed = 21;
    CHECK(elbo_diffusion_sample(&p, &sp, gauss_denoise, &g, a, B * GD, NULL) == ELBO_OK);
    elbo_energy en = {zero_energy, NULL, 1.0};
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    dp.steps = K, dp.seed = 21;
    for (int k = 0; k < 2; k++) {
        dp.step = k ? ELBO_DPS_NORM : ELBO_DPS_LIKELIHOOD;
        CHECK(elbo_dps_solve(&prior, &en, &dp, b, B) == ELBO_OK);
        CHECK_MSG(memcmp(a, b, sizeof a) == 0, "dps %s differs from the ancestral sampler",
                  k ? "norm" : "likelihood");
    }
    elbo_operator op = inpaint_op(mask);
    elbo_repaint_params rp;
    elbo_repaint_params_init(&rp);
    rp.steps = K, rp.jump = 3, rp.resample = 1, rp.seed = 21;
    CHECK(elbo_repaint_schedule_length(&rp) == K);
    CHECK(elbo_repaint_solve(&prior, &op, y, &rp, b, B) == ELBO_OK);
    CHECK_MSG(memcmp(a, b, sizeof a) == 0, "repaint differs from the ancestral sampler");
}

/* (d) RePaint on the Gaussian, the left half (columns 0, 1) known without noise. The known
 * pixels of the output are y exactly. Its output mean is known exactly too (repaint_law_mean,
 * on RePaint's own schedule), and the mean of the unknown pixels over B = 1000 copies matches it
 * within 4.5 standard errors in every pixel (the implementation). RePaint is not exact: the law's
 * |mean_u - conditional mean_u| (the conditional mu_u + Sigma_uk Sigma_kk^{-1} (y_k - mu_k), 2.15
 * from mu_u) is 1.09 at K = 50 without resampling (1.04 at K = 200, 1.02 at K = 1000: the halves
 * are never harmonised), and resampling drives it down: jump 5 at resample 5, 20, 40, 100: 0.43,
 * 0.155, 0.087, 0.038; K = 250, jump 10, resample 10 (the paper's): 0.20. Run here: K = 50,
 * jump 5, resample 20 and jump 1, resample 1. Asserted: |law mean_u - conditional_u| < 0.2 with
 * resampling (7% of |conditional_u - mu_u|), > 1 without, and the sample mean within 0.3 of the
 * conditional (measured 0.20; sampling error rms 0.055). */
TEST(inverse_repaint_samples_the_conditional) {
    gauss_problem P; /* its prior, and its x_true (a draw from it) gives the known pixels */
    problem_init(&P, 0.1, 7);
    gauss_prior *g = &P.g;
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(g, &p);
    float mask[GD];
    for (int i = 0; i < GD; i++) mask[i] = (i % GW) < 2;
    elbo_operator op = inpaint_op(mask);
    double Asel[GD * GD] = {0}, yk[GD], yd[GD], cm[GD];
    int M = 0;
    for (int i = 0; i < GD; i++) {
        yd[i] = mask[i] ? (double)(float)P.x_true[i] : 0.0;
        if (mask[i]) Asel[M * GD + i] = 1, yk[M] = yd[i], M++;
    }
    gauss_posterior_mean(g->Sigma, g->mu, Asel, M, yk, 0.0, cm);
    enum { B = 1000, CAP = 2048 };
    float *x = malloc(sizeof(float) * B * GD), *y = malloc(sizeof(float) * B * GD);
    int *ts = malloc(sizeof(int) * CAP);
    CHECK(x && y && ts);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < GD; i++) y[b * GD + i] = (float)yd[i];
    double e_law[2], e[2], se = 0, d_mu = 0, worst = 0;
    for (int run = 0; run < 2; run++) {
        elbo_repaint_params rp;
        elbo_repaint_params_init(&rp);
        rp.steps = 50, rp.jump = run ? 5 : 1, rp.resample = run ? 20 : 1, rp.seed = 3;
        g->calls = 0;
        CHECK(elbo_repaint_solve(&prior, &op, y, &rp, x, B) == ELBO_OK);
        CHECK(g->calls == (elbo_repaint_schedule_length(&rp) + rp.steps) / 2 + 1);
        for (int k = 0; k < B * GD; k++)
            if (mask[k % GD])
                CHECK_MSG(x[k] == y[k], "known pixel %d: %.9g, y %.9g", k, x[k], y[k]);
        const int n = ref_schedule(rp.steps, rp.jump, rp.resample, ts, CAP);
        CHECK(n <= CAP);
        double law[GD], mean[GD], var[GD] = {0};
        repaint_law_mean(g, &p, ts, n, rp.steps, mask, yd, law);
        batch_mean(x, B, mean);
        for (int b = 0; b < B; b++)
            for (int i = 0; i < GD; i++)
                var[i] += (x[b * GD + i] - mean[i]) * (x[b * GD + i] - mean[i]) / (B - 1);
        e_law[run] = dist(law, cm, GD), e[run] = dist(mean, cm, GD);
        for (int i = 0; i < GD; i++)
            if (!mask[i]) {
                worst = fmax(worst, fabs(mean[i] - law[i]) / sqrt(var[i] / B));
                if (run) se += var[i] / B, d_mu += (cm[i] - g->mu[i]) * (cm[i] - g->mu[i]);
            }
    }
    se = sqrt(se), d_mu = sqrt(d_mu);
    printf("    |mean_u - conditional_u|, law (sample): %.4f (%.4f) without resampling, %.4f "
           "(%.4f) with; sample vs law worst %.2f standard errors; |conditional_u - mu_u| %.3f\n",
           e_law[0], e[0], e_law[1], e[1], worst, d_mu);
    CHECK_MSG(worst < 4.5, "sample mean %.2f standard errors from the law's", worst);
    CHECK_MSG(e_law[1] < 0.2 && e_law[0] > 1, "law: %.4f with resampling, %.4f without", e_law[1],
              e_law[0]);
    CHECK_MSG(e[1] < 0.3, "|sample mean_u - conditional_u| %.4f", e[1]);
    free(x);
    free(y);
    free(ts);
}

/* A denoiser that records its levels t, for the schedule. */
static elbo_status record_denoise(void *user, const float *x_t, int64_t n,
                                  const elbo_noise_level *l, float *x0_hat) {
    gauss_prior *g = user;
    if (g->n_levels < g->cap) g->levels[g->n_levels++] = l->t;
    g->calls++;
    memcpy(x0_hat, x_t, (size_t)n * sizeof(float));
    return ELBO_OK;
}

/* The jump schedule. Its length: K = 6, jump 2, resample 3, counted by hand on the indices
 * K-1 .. -1: down 5 4 3 2, back up to 4 and down to 2 twice, down 1 0, up to 2 and down to 0
 * twice, down to -1: 4 + 2 (4 + 4) + 2 + 1 = 22 steps; the default 250 / 10 / 10 makes 4570.
 * The steps themselves, read back from the levels the denoiser sees (one call per step down,
 * at the level stepped from; the path between two calls at a and b is a -> a - 1, then up to
 * b), against RePaint's get_schedule_jump(t_T=10, n_sample=1, jump_length=3, jump_n_sample=2)
 * (guided_diffusion/scheduler.py), its output copied here, and against the transcription of it
 * (ref_schedule) for more cases. */
TEST(inverse_repaint_schedule) {
    elbo_repaint_params rp;
    elbo_repaint_params_init(&rp);
    CHECK(rp.steps == 250 && rp.jump == 10 && rp.resample == 10);
    CHECK(elbo_repaint_schedule_length(&rp) == 4570);
    rp.steps = 6, rp.jump = 2, rp.resample = 3;
    CHECK(elbo_repaint_schedule_length(&rp) == 22);
    rp.steps = 5, rp.jump = 5, rp.resample = 4; /* no j < K - jump: no jumps */
    CHECK(elbo_repaint_schedule_length(&rp) == 5);
    rp.jump = 0;
    CHECK(elbo_repaint_schedule_length(&rp) == -1);
    CHECK(elbo_repaint_schedule_length(NULL) == -1);
    static const int ref[] = {9, 8, 7, 6, 7, 8, 9, 8, 7, 6, 5, 4, 3, 4, 5,
                              6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, -1};
    enum { CAP = 512 };
    int ts[CAP], path[CAP];
    CHECK(ref_schedule(10, 3, 2, ts, CAP) == (int)(sizeof ref / sizeof ref[0]));
    CHECK(memcmp(ts, ref, sizeof ref) == 0);
    double levels[CAP];
    gauss_prior g;
    gauss_init(&g, 1);
    g.levels = levels, g.cap = CAP;
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&g, &p);
    prior.denoise = record_denoise;
    float mask[GD], x[GD], y[GD] = {0};
    for (int i = 0; i < GD; i++) mask[i] = i % 2;
    elbo_operator op = inpaint_op(mask);
    const int cases[][3] = {{10, 3, 2}, {6, 2, 3},  {7, 3, 3},  {5, 5, 4}, {4, 1, 2},
                            {20, 1, 1}, {25, 4, 3}, {30, 7, 2}, {1, 1, 3}, {12, 12, 2}};
    for (int c = 0; c < 10; c++) {
        rp.steps = cases[c][0], rp.jump = cases[c][1], rp.resample = cases[c][2];
        const int n_ref = ref_schedule(rp.steps, rp.jump, rp.resample, ts, CAP);
        CHECK(n_ref <= CAP);
        CHECK_MSG(elbo_repaint_schedule_length(&rp) == n_ref - 1,
                  "K %d jump %d resample %d: %lld, want %d", rp.steps, rp.jump, rp.resample,
                  (long long)elbo_repaint_schedule_length(&rp), n_ref - 1);
        g.n_levels = 0;
        CHECK(elbo_repaint_solve(&prior, &op, y, &rp, x, 1) == ELBO_OK);
        int n_path = 0;
        path[n_path++] = (int)lround(levels[0] * rp.steps) - 1;
        for (int k = 0; k + 1 < g.n_levels && n_path + rp.jump + 2 < CAP; k++) {
            /* every level on the grid */
            CHECK_NEAR(levels[k] * rp.steps, lround(levels[k] * rp.steps), 1e-9);
            int a = (int)lround(levels[k] * rp.steps) - 1,
                b = (int)lround(levels[k + 1] * rp.steps) - 1;
            CHECK(b >= a - 1);
            path[n_path++] = a - 1;
            for (int v = a; v <= b; v++) path[n_path++] = v;
        }
        CHECK_MSG(n_path == n_ref, "K %d jump %d resample %d: %d steps read back, want %d",
                  rp.steps, rp.jump, rp.resample, n_path - 1, n_ref - 1);
        for (int k = 0; k < n_ref; k++)
            CHECK_MSG(path[k] == ts[k], "K %d jump %d resample %d, step %d: index %d, want %d",
                      rp.steps, rp.jump, rp.resample, k, path[k], ts[k]);
    }
}

/* The same seed gives the same bytes; another seed, others. */
TEST(inverse_solvers_deterministic) {
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    enum { B = 4 };
    float a[B * GD], b[B * GD], y[B * GD], mask[GD];
    for (int i = 0; i < GD; i++) mask[i] = i < 8;
    for (int k = 0; k < B * GD; k++) y[k] = mask[k % GD] ? (float)P.x_true[k % GD] : 0.0f;
    elbo_operator op = inpaint_op(mask);
    for (int solver = 0; solver < 4; solver++) {
        for (int run = 0; run < 3; run++) {
            float *out = run ? b : a;
            const uint64_t seed = run == 2 ? 8 : 7;
            elbo_status st;
            if (solver < 2) {
                elbo_pnp_params pp;
                elbo_pnp_params_init(&pp);
                pp.steps = 50, pp.seed = seed;
                pp.schedule = solver ? ELBO_PNP_UNIFORM : ELBO_PNP_ANNEAL;
                st = elbo_pnp_solve(&prior, &en, &pp, 0, out, B);
            } else if (solver == 2) {
                elbo_dps_params dp;
                elbo_dps_params_init(&dp);
                dp.steps = 30, dp.seed = seed;
                st = elbo_dps_solve(&prior, &en, &dp, out, B);
            } else {
                elbo_repaint_params rp;
                elbo_repaint_params_init(&rp);
                rp.steps = 12, rp.jump = 3, rp.resample = 3, rp.seed = seed;
                st = elbo_repaint_solve(&prior, &op, y, &rp, out, B);
            }
            CHECK(st == ELBO_OK);
            if (run == 1)
                CHECK_MSG(memcmp(a, b, sizeof a) == 0, "solver %d: same seed, other bytes", solver);
            if (run == 2)
                CHECK_MSG(memcmp(a, b, sizeof a) != 0, "solver %d: another seed, same bytes",
                          solver);
        }
    }
}

/* Names, defaults, and a bad argument gives ELBO_ERR_ARG naming it; a denoiser's error comes
 * back. */
TEST(inverse_solvers_arguments) {
    elbo_pnp_schedule ps;
    CHECK(elbo_pnp_schedule_parse("anneal", &ps) == ELBO_OK && ps == ELBO_PNP_ANNEAL);
    CHECK(elbo_pnp_schedule_parse("uniform", &ps) == ELBO_OK && ps == ELBO_PNP_UNIFORM);
    CHECK(elbo_pnp_schedule_parse("cosine", &ps) == ELBO_ERR_ARG &&
          strstr(elbo_last_error(), "cosine"));
    CHECK(elbo_pnp_schedule_parse(NULL, &ps) == ELBO_ERR_ARG);
    elbo_pnp_weighting pw;
    CHECK(elbo_pnp_weighting_parse("elbo", &pw) == ELBO_OK && pw == ELBO_PNP_WEIGHT_ELBO);
    CHECK(elbo_pnp_weighting_parse("simple", &pw) == ELBO_OK && pw == ELBO_PNP_WEIGHT_SIMPLE);
    CHECK(elbo_pnp_weighting_parse("snr", &pw) == ELBO_ERR_ARG && strstr(elbo_last_error(), "snr"));
    elbo_dps_step ds;
    CHECK(elbo_dps_step_parse("likelihood", &ds) == ELBO_OK && ds == ELBO_DPS_LIKELIHOOD);
    CHECK(elbo_dps_step_parse("norm", &ds) == ELBO_OK && ds == ELBO_DPS_NORM);
    CHECK(elbo_dps_step_parse("l2", &ds) == ELBO_ERR_ARG && strstr(elbo_last_error(), "l2"));
    elbo_pnp_params pp;
    elbo_pnp_params_init(&pp);
    CHECK(pp.steps == 1000 && pp.lr == 0.01 && pp.schedule == ELBO_PNP_ANNEAL && pp.t_min == 0.02 &&
          pp.t_max == 1 && pp.prior_weight == 1 && pp.seed == 0);

    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    float x[2 * GD], y[2 * GD] = {0}, mask[GD];
    for (int i = 0; i < GD; i++) mask[i] = i < 4;
    elbo_operator op = inpaint_op(mask);
#define CHECK_ARG(call, word)                                                                      \
    do {                                                                                           \
        elbo_clear_error();                                                                        \
        elbo_status st_ = (call);                                                                  \
        CHECK_MSG(st_ == ELBO_ERR_ARG && strstr(elbo_last_error(), word),                          \
                  "%s: status %d, message '%s' (want '%s')", #call, (int)st_, elbo_last_error(),   \
                  word);                                                                           \
    } while (0)
    /* pnp */
    elbo_pnp_params_init(&pp);
    pp.steps = 0;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "steps");
    elbo_pnp_params_init(&pp);
    pp.t_min = 0.5, pp.t_max = 0.5;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "t_min");
    pp.t_min = 0.2, pp.t_max = 1.5;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "t_max");
    elbo_pnp_params_init(&pp);
    pp.lr = 0;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "lr");
    elbo_pnp_params_init(&pp);
    pp.prior_weight = -1;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "prior_weight");
    elbo_pnp_params_init(&pp);
    pp.weighting = (elbo_pnp_weighting)7;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "weighting");
    elbo_pnp_params_init(&pp);
    pp.energy_decay = 2;
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2), "energy_decay");
    elbo_pnp_params_init(&pp);
    CHECK_ARG(elbo_pnp_solve(&prior, NULL, &pp, 0, x, 2), "energy");
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, x, 0), "B");
    CHECK_ARG(elbo_pnp_solve(&prior, &en, &pp, 0, NULL, 2), "x");
    elbo_prior bad = prior;
    bad.denoise_vjp = NULL;
    CHECK_ARG(elbo_pnp_solve(&bad, &en, &pp, 0, x, 2), "denoise_vjp");
    bad = prior;
    bad.process = NULL;
    CHECK_ARG(elbo_pnp_solve(&bad, &en, &pp, 0, x, 2), "process");
    /* dps */
    elbo_dps_params dp;
    elbo_dps_params_init(&dp);
    dp.steps = 0;
    CHECK_ARG(elbo_dps_solve(&prior, &en, &dp, x, 2), "steps");
    elbo_dps_params_init(&dp);
    dp.zeta = 0;
    CHECK_ARG(elbo_dps_solve(&prior, &en, &dp, x, 2), "zeta");
    dp.zeta = -1;
    CHECK_ARG(elbo_dps_solve(&prior, &en, &dp, x, 2), "zeta");
    elbo_dps_params_init(&dp);
    elbo_energy en0 = en;
    en0.norm_scale = 0;
    CHECK_ARG(elbo_dps_solve(&prior, &en0, &dp, x, 2), "norm_scale");
    bad = prior;
    bad.denoise_vjp = NULL;
    CHECK_ARG(elbo_dps_solve(&bad, &en, &dp, x, 2), "denoise_vjp");
    /* repaint */
    elbo_repaint_params rp;
    elbo_repaint_params_init(&rp);
    rp.steps = 0;
    CHECK_ARG(elbo_repaint_solve(&prior, &op, y, &rp, x, 2), "steps");
    elbo_repaint_params_init(&rp);
    rp.jump = 0;
    CHECK_ARG(elbo_repaint_solve(&prior, &op, y, &rp, x, 2), "jump");
    elbo_repaint_params_init(&rp);
    rp.resample = 0;
    CHECK_ARG(elbo_repaint_solve(&prior, &op, y, &rp, x, 2), "resample");
    elbo_repaint_params_init(&rp);
    elbo_operator op2 = op;
    op2.kind = ELBO_OP_SUPERRES;
    CHECK_ARG(elbo_repaint_solve(&prior, &op2, y, &rp, x, 2), "inpaint");
    op2 = op;
    op2.mask = NULL;
    CHECK_ARG(elbo_repaint_solve(&prior, &op2, y, &rp, x, 2), "mask");
    op2 = op;
    op2.h = 2, op2.w = 8; /* the same D, another shape */
    CHECK_ARG(elbo_repaint_solve(&prior, &op2, y, &rp, x, 2), "shape");
    op2 = op;
    op2.c = 3;
    CHECK_ARG(elbo_repaint_solve(&prior, &op2, y, &rp, x, 2), "shape");
    float half[GD];
    for (int i = 0; i < GD; i++) half[i] = 0.5f;
    op2 = op;
    op2.mask = half;
    CHECK_ARG(elbo_repaint_solve(&prior, &op2, y, &rp, x, 2), "mask[0]");
    CHECK_ARG(elbo_repaint_solve(&prior, NULL, y, &rp, x, 2), "op");
    CHECK_ARG(elbo_repaint_solve(&prior, &op, NULL, &rp, x, 2), "y");
#undef CHECK_ARG
    /* a denoiser's error, from the first call and from a later one */
    for (int at = 1; at <= 3; at += 2) {
        P.g.fail_at = at, P.g.calls = 0;
        elbo_pnp_params_init(&pp);
        pp.steps = 5;
        CHECK(elbo_pnp_solve(&prior, &en, &pp, 0, x, 2) == ELBO_ERR_STATE);
        CHECK(strstr(elbo_last_error(), "test failure"));
        P.g.calls = 0;
        elbo_dps_params_init(&dp);
        dp.steps = 5;
        CHECK(elbo_dps_solve(&prior, &en, &dp, x, 2) == ELBO_ERR_STATE);
        P.g.calls = 0;
        elbo_repaint_params_init(&rp);
        rp.steps = 5;
        CHECK(elbo_repaint_solve(&prior, &op, y, &rp, x, 2) == ELBO_ERR_STATE);
    }
}

/* Scratch is allocated once per call: the same heap calls for 5 and 50 steps. */
TEST(inverse_solvers_no_allocation_in_loops) {
    if (!malloc_count_available()) return;
    gauss_problem P;
    problem_init(&P, 0.1, 7);
    elbo_process p;
    elbo_process_init(&p);
    elbo_prior prior = gauss_as_prior(&P.g, &p);
    elbo_energy en = {pool_energy, &P, P.sy};
    float x[2 * GD], y[2 * GD] = {0}, mask[GD];
    for (int i = 0; i < GD; i++) mask[i] = i < 4;
    elbo_operator op = inpaint_op(mask);
    for (int solver = 0; solver < 3; solver++) {
        malloc_count_result r[2];
        for (int k = 0; k < 2; k++) {
            const int steps = k ? 50 : 5;
            elbo_status st;
            malloc_count_start();
            if (solver == 0) {
                elbo_pnp_params pp;
                elbo_pnp_params_init(&pp);
                pp.steps = steps, pp.schedule = ELBO_PNP_UNIFORM;
                st = elbo_pnp_solve(&prior, &en, &pp, 0, x, 2);
            } else if (solver == 1) {
                elbo_dps_params dp;
                elbo_dps_params_init(&dp);
                dp.steps = steps;
                st = elbo_dps_solve(&prior, &en, &dp, x, 2);
            } else {
                elbo_repaint_params rp;
                elbo_repaint_params_init(&rp);
                rp.steps = steps, rp.jump = 2, rp.resample = 3;
                st = elbo_repaint_solve(&prior, &op, y, &rp, x, 2);
            }
            malloc_count_stop(&r[k]);
            CHECK(st == ELBO_OK);
        }
        CHECK_MSG(r[0].calls[0] == r[1].calls[0] && r[1].calls[0] <= 2,
                  "solver %d: heap calls %ld at 5 steps, %ld at 50 (%s)", solver, r[0].calls[0],
                  r[1].calls[0], r[1].first[0]);
    }
}
