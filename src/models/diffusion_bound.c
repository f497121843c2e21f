/* The terms of the diffusion variational bound (VDM, Kingma et al. 2021, sec. 3-4) and the
 * loss weightings that re-weight its diffusion term; see include/elbo/diffusion.h. */
#include "elbo/diffusion.h"

#include <math.h>
#include <string.h>

static const char *loss_names[] = {"simple", "elbo", "snr-trunc"};

elbo_status elbo_loss_kind_parse(const char *name, elbo_loss_kind *out) {
    for (int k = 0; name && k < 3; k++)
        if (strcmp(name, loss_names[k]) == 0) {
            *out = (elbo_loss_kind)k;
            return ELBO_OK;
        }
    return elbo_error(ELBO_ERR_ARG, "loss: unknown '%s' (simple, elbo, snr-trunc)",
                      name ? name : "(null)");
}

const char *elbo_loss_kind_name(elbo_loss_kind k) { return (unsigned)k < 3 ? loss_names[k] : "?"; }

double elbo_diffusion_weight(elbo_loss_kind k, const elbo_noise_level *t, const elbo_noise_level *s,
                             int T) {
    switch (k) {
    case ELBO_LOSS_ELBO:
        /* T steps: T (SNR(s) - SNR(t)) ||x - x0_hat||^2 = T expm1(lambda_s - lambda_t) ||eps -
         * eps_hat||^2; continuous: -SNR'(t) ||x - x0_hat||^2 = -lambda'(t) ||eps - eps_hat||^2 */
        return T > 0 ? T * expm1(s->log_snr - t->log_snr) : -t->dlog_snr_dt;
    case ELBO_LOSS_SNR_TRUNC: {
        double inv_snr = exp(-t->log_snr);
        return inv_snr > 1 ? inv_snr : 1.0;
    }
    default:
        return 1.0;
    }
}

void elbo_diffusion_sample_times(elbo_rng *rng, int B, int low_discrepancy, int T, double *t) {
    float u[1];
    for (int b = 0; b < B; b++) {
        if (b == 0 || !low_discrepancy) elbo_rng_uniform(rng, u, 1, 0, 1);
        double v = low_discrepancy ? fmod((double)u[0] + (double)b / B, 1.0) : (double)u[0];
        if (T > 0) {
            v = ceil(v * T) / T;
            if (v <= 0) v = 1.0 / T;
        } else if (v <= 0) {
            v = 1.0; /* U(0,1) draws 0 with probability 2^-24; (0, 1] keeps t - 1/T valid */
        }
        t[b] = v;
    }
}

double elbo_diffusion_prior_kl(const elbo_noise_level *one, double prior_std, const float *x,
                               int64_t d) {
    /* KL(N(m, v) || N(0, s^2)) = log(s / sqrt v) + (v + m^2) / (2 s^2) - 1/2, m = alpha_1 x */
    double v = one->sigma * one->sigma, s2 = prior_std * prior_std, sum_m2 = 0;
    for (int64_t i = 0; i < d; i++) {
        double m = one->alpha * (double)x[i];
        sum_m2 += m * m;
    }
    return (double)d * (0.5 * log(s2 / v) + 0.5 * v / s2 - 0.5) + 0.5 * sum_m2 / s2;
}

/* The bin k = round(127.5 (v + 1)) of a value in [-1, 1], clamped to 0..255. */
static int bin_of(double v) {
    int k = (int)lround((v + 1.0) * 127.5);
    return k < 0 ? 0 : k > 255 ? 255 : k;
}

/* The 8-bit decoder at one pixel: -log softmax_k(-f_k)[bin of x], f_k = (y - x_k)^2 / (2 var)
 * over the bins x_k = 2k/255 - 1, y = x_0 / alpha_0 = x + sqrt(var) eps. With dnll, also its
 * derivative in gamma_0 (var = e^gamma_0, d y / d gamma_0 = (y - x) / 2): d f_k = (y - x_k)
 * (y - x) / (2 var) - f_k, d nll = d f_true - sum_k p_k d f_k. Bins whose logit is more than
 * 80 below the largest add under e^-80 and are skipped: the loop walks out from the nearest
 * bin while the logits are within that margin. */
static double bin_nll(double x, double y, double var, double *dnll) {
    const int k0 = bin_of(y), kt = bin_of(x);
    const double c = 0.5 / var, dy0 = y - (2.0 * k0 / 255.0 - 1.0), top = -c * dy0 * dy0;
    double z = 0, ez = 0;
    for (int dir = -1; dir <= 1; dir += 2)
        for (int k = dir < 0 ? k0 : k0 + 1; k >= 0 && k <= 255; k += dir) {
            double dy = y - (2.0 * k / 255.0 - 1.0), f = c * dy * dy;
            if (-f - top < -80) break;
            double w = exp(-f - top);
            z += w;
            if (dnll) ez += w * (dy * (y - x) * c - f);
        }
    double dyt = y - (2.0 * kt / 255.0 - 1.0), ft = c * dyt * dyt;
    if (dnll) *dnll = (dyt * (y - x) * c - ft) - ez / z;
    return ft + top + log(z);
}

double elbo_diffusion_recon_8bit(const elbo_noise_level *zero, const float *x, const float *eps,
                                 int64_t d) {
    double var = zero->sigma * zero->sigma / (zero->alpha * zero->alpha), nll = 0;
    for (int64_t i = 0; i < d; i++) {
        double z0 = zero->alpha * (double)x[i] + zero->sigma * (double)eps[i];
        nll += bin_nll((double)x[i], z0 / zero->alpha, var, NULL);
    }
    return nll;
}

double elbo_diffusion_recon_gauss(const elbo_noise_level *zero, const float *x, const float *eps,
                                  int64_t d) {
    /* x - x_0 / alpha_0 = -sigma_0 eps / alpha_0 */
    double sd = zero->sigma / zero->alpha, sum = 0;
    for (int64_t i = 0; i < d; i++) {
        double z0 = zero->alpha * (double)x[i] + zero->sigma * (double)eps[i];
        double r = ((double)x[i] - z0 / zero->alpha) / sd;
        sum += r * r;
    }
    return 0.5 * sum + (double)d * (log(sd) + 0.5 * log(2.0 * 3.14159265358979323846));
}

double elbo_diffusion_recon_8bit_dgamma0(const elbo_noise_level *zero, const float *x,
                                         const float *eps, int64_t d) {
    double var = zero->sigma * zero->sigma / (zero->alpha * zero->alpha), total = 0, dnll;
    for (int64_t i = 0; i < d; i++) {
        double z0 = zero->alpha * (double)x[i] + zero->sigma * (double)eps[i];
        bin_nll((double)x[i], z0 / zero->alpha, var, &dnll);
        total += dnll;
    }
    return total;
}

double elbo_diffusion_prior_kl_dgamma1(const elbo_noise_level *one, const float *x, int64_t d) {
    double s = one->sigma * one->sigma, sum = 0;
    for (int64_t i = 0; i < d; i++) sum += s - s * (double)x[i] * x[i] - 1.0;
    return 0.5 * (1.0 - s) * sum;
}
