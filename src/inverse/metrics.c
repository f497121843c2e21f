/* The image metrics (PSNR, SSIM) and the baselines (mean and nearest fill for inpainting,
 * bicubic upsampling for super-resolution, a Gaussian filter for denoising) of
 * include/elbo/inverse.h. Sums are accumulated in double; scratch is allocated once per call. */
#include "elbo/inverse.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* PSNR = 10 log10(1 / MSE), MSE = sum (x - ref)^2 / D (data range 1); +inf when equal,
 * NaN for NULL inputs or D < 1. */
double elbo_psnr(const float *x, const float *ref, int64_t D) {
    if (!x || !ref || D < 1) return NAN;
    double ss = 0;
    for (int64_t i = 0; i < D; i++) {
        const double d = (double)x[i] - ref[i];
        ss += d * d;
    }
    return ss == 0 ? INFINITY : 10.0 * log10((double)D / ss);
}

#define SSIM_WIN 11
#define SSIM_R 5

/* SSIM (Wang et al. 2004, eq. 13) per channel, with weighted local statistics under the
 * normalised 11 x 11 Gaussian window g (std 1.5, the outer product of its 1-D factor):
 *   mu_x = g * x, sigma_x^2 = g * x^2 - mu_x^2, sigma_xy = g * xy - mu_x mu_y,
 *   S = (2 mu_x mu_y + C1)(2 sigma_xy + C2) / ((mu_x^2 + mu_y^2 + C1)(sigma_x^2 + sigma_y^2 + C2)),
 * C1 = (0.01)^2, C2 = (0.03)^2, over the (h - 10) x (w - 10) valid positions; the mean of S,
 * averaged over channels. Scratch: 5 h (w - 10) doubles for the row-filtered moments. */
elbo_status elbo_ssim(const float *x, const float *ref, int64_t c, int64_t h, int64_t w,
                      double *out) {
    if (!x || !ref || !out)
        return elbo_error(ELBO_ERR_ARG, "ssim: %s is NULL", !x ? "x" : !ref ? "ref" : "out");
    if (c < 1 || h < SSIM_WIN || w < SSIM_WIN)
        return elbo_error(ELBO_ERR_ARG,
                          "ssim: shape (c, h, w) = (%lld, %lld, %lld) needs c >= 1, h, w >= %d",
                          (long long)c, (long long)h, (long long)w, SSIM_WIN);
    const double C1 = 0.01 * 0.01, C2 = 0.03 * 0.03;
    double g[SSIM_WIN], gs = 0;
    for (int j = -SSIM_R; j <= SSIM_R; j++) gs += g[j + SSIM_R] = exp(-0.5 * j * j / (1.5 * 1.5));
    for (int j = 0; j < SSIM_WIN; j++) g[j] /= gs;
    const int64_t wv = w - 2 * SSIM_R, hv = h - 2 * SSIM_R, plane = h * wv;
    double *t = malloc((size_t)(5 * plane) * sizeof *t);
    if (!t) return elbo_error(ELBO_ERR_NOMEM, "ssim: out of memory");
    double total = 0;
    for (int64_t ch = 0; ch < c; ch++) {
        const float *a = x + ch * h * w, *b = ref + ch * h * w;
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < wv; j++) {
                double m[5] = {0, 0, 0, 0, 0};
                for (int k = 0; k < SSIM_WIN; k++) {
                    const double u = a[i * w + j + k], v = b[i * w + j + k];
                    m[0] += g[k] * u;
                    m[1] += g[k] * v;
                    m[2] += g[k] * u * u;
                    m[3] += g[k] * v * v;
                    m[4] += g[k] * u * v;
                }
                for (int q = 0; q < 5; q++) t[q * plane + i * wv + j] = m[q];
            }
        double sum = 0;
        for (int64_t i = 0; i < hv; i++)
            for (int64_t j = 0; j < wv; j++) {
                double m[5] = {0, 0, 0, 0, 0};
                for (int k = 0; k < SSIM_WIN; k++)
                    for (int q = 0; q < 5; q++) m[q] += g[k] * t[q * plane + (i + k) * wv + j];
                const double mx = m[0], my = m[1];
                const double vx = m[2] - mx * mx, vy = m[3] - my * my, cxy = m[4] - mx * my;
                sum += (2 * mx * my + C1) * (2 * cxy + C2) /
                       ((mx * mx + my * my + C1) * (vx + vy + C2));
            }
        total += sum / (double)(hv * wv);
    }
    free(t);
    *out = total / (double)c;
    return ELBO_OK;
}

/* Checks of the baselines' common arguments: pointers, shape, a 0/1 mask when given. */
static elbo_status base_check(const char *fn, const float *in, const char *in_name,
                              const float *mask, int need_mask, int64_t B, int64_t c, int64_t h,
                              int64_t w, const float *out, const char *out_name) {
    if (!in || !out || (need_mask && !mask))
        return elbo_error(ELBO_ERR_ARG, "%s: %s is NULL", fn,
                          !in ? in_name : !out ? out_name : "mask");
    if (B < 0 || c < 1 || h < 1 || w < 1)
        return elbo_error(ELBO_ERR_ARG, "%s: shape B = %lld, (c, h, w) = (%lld, %lld, %lld) not valid",
                          fn, (long long)B, (long long)c, (long long)h, (long long)w);
    if (!need_mask) return ELBO_OK;
    int64_t seen = 0;
    for (int64_t i = 0; i < h * w; i++) {
        if (mask[i] != 0.0f && mask[i] != 1.0f)
            return elbo_error(ELBO_ERR_ARG, "%s: mask[%lld] = %g, not 0 or 1", fn, (long long)i,
                              mask[i]);
        seen += mask[i] != 0.0f;
    }
    if (seen == 0) return elbo_error(ELBO_ERR_ARG, "%s: mask has no observed pixel", fn);
    return ELBO_OK;
}

/* x = m (.) y + (1 - m) mean_{m = 1}(y) per image and channel. x may alias y. */
elbo_status elbo_fill_mean(const float *y, const float *mask, int64_t B, int64_t c, int64_t h,
                           int64_t w, float *x) {
    elbo_status st = base_check("fill_mean", y, "y", mask, 1, B, c, h, w, x, "x");
    if (st) return st;
    const int64_t hw = h * w;
    for (int64_t q = 0; q < B * c; q++) {
        const float *src = y + q * hw;
        float *dst = x + q * hw;
        double s = 0;
        int64_t k = 0;
        for (int64_t i = 0; i < hw; i++)
            if (mask[i] != 0.0f) s += src[i], k++;
        const float mean = (float)(s / (double)k);
        for (int64_t i = 0; i < hw; i++) dst[i] = mask[i] != 0.0f ? src[i] : mean;
    }
    return ELBO_OK;
}

/* For each pixel p the observed pixel q minimising (|p - q|^2, index q) lexicographically
 * (Euclidean distance, ties to the first in row-major order), found row by row: within a row
 * the nearest observed column is the closer of the nearest at or left of p's column (lft)
 * and at or right of it (rgt), the left on a tie; rows are visited at growing distance |dr|
 * until dr^2 exceeds the best distance. Scratch: 3 h w int64. x may alias y. */
elbo_status elbo_fill_nearest(const float *y, const float *mask, int64_t B, int64_t c,
                              int64_t h, int64_t w, float *x) {
    elbo_status st = base_check("fill_nearest", y, "y", mask, 1, B, c, h, w, x, "x");
    if (st) return st;
    const int64_t hw = h * w;
    int64_t *lft = malloc((size_t)(3 * hw) * sizeof *lft);
    if (!lft) return elbo_error(ELBO_ERR_NOMEM, "fill_nearest: out of memory");
    int64_t *rgt = lft + hw, *src = lft + 2 * hw;
    for (int64_t i = 0; i < h; i++) {
        int64_t last = -1;
        for (int64_t j = 0; j < w; j++) {
            if (mask[i * w + j] != 0.0f) last = j;
            lft[i * w + j] = last;
        }
        last = -1;
        for (int64_t j = w - 1; j >= 0; j--) {
            if (mask[i * w + j] != 0.0f) last = j;
            rgt[i * w + j] = last;
        }
    }
    for (int64_t i = 0; i < h; i++)
        for (int64_t j = 0; j < w; j++) {
            int64_t best = -1, bd = INT64_MAX;
            for (int64_t dr = 0; dr < h && (best < 0 || dr * dr <= bd); dr++)
                for (int side = 0; side < 2; side++) {
                    const int64_t r = side ? i + dr : i - dr;
                    if ((side && dr == 0) || r < 0 || r >= h) continue;
                    const int64_t cl = lft[r * w + j], cr = rgt[r * w + j];
                    int64_t cc = cl;
                    if (cl < 0 || (cr >= 0 && cr - j < j - cl)) cc = cr;
                    if (cc < 0) continue; /* no observed pixel in row r */
                    const int64_t d = dr * dr + (cc - j) * (cc - j), idx = r * w + cc;
                    if (d < bd || (d == bd && idx < best)) bd = d, best = idx;
                }
            src[i * w + j] = best;
        }
    for (int64_t q = 0; q < B * c; q++)
        for (int64_t i = 0; i < hw; i++)
            x[q * hw + i] = y[q * hw + (mask[i] != 0.0f ? i : src[i])];
    free(lft);
    return ELBO_OK;
}

/* Keys' cubic convolution weights at offset t in [0, 1) for the taps -1, 0, 1, 2, with
 * a = -0.75 (PyTorch's upsample_bicubic2d):
 *   W(d) = (a + 2)|d|^3 - (a + 3)|d|^2 + 1 for |d| <= 1, a|d|^3 - 5a|d|^2 + 8a|d| - 4a for
 *   1 < |d| < 2. */
static void cubic_weights(double t, double wt[4]) {
    const double a = -0.75, d0 = 1 + t, d1 = t, d2 = 1 - t, d3 = 2 - t;
    wt[0] = ((a * d0 - 5 * a) * d0 + 8 * a) * d0 - 4 * a;
    wt[1] = ((a + 2) * d1 - (a + 3)) * d1 * d1 + 1;
    wt[2] = ((a + 2) * d2 - (a + 3)) * d2 * d2 + 1;
    wt[3] = ((a * d3 - 5 * a) * d3 + 8 * a) * d3 - 4 * a;
}

/* For each of the n output positions o: the source coordinate s = (o + 1/2) / f - 1/2
 * (half-pixel centres, unclamped as in PyTorch's cubic path), its 4 taps floor(s) - 1 ..
 * floor(s) + 2 clamped to [0, n_in) and their weights. */
static void cubic_taps(int64_t n, int64_t n_in, int f, int64_t *idx, double *wt) {
    for (int64_t o = 0; o < n; o++) {
        const double s = ((double)o + 0.5) / f - 0.5, fl = floor(s);
        cubic_weights(s - fl, wt + 4 * o);
        for (int k = 0; k < 4; k++) {
            int64_t i = (int64_t)fl - 1 + k;
            idx[4 * o + k] = i < 0 ? 0 : i >= n_in ? n_in - 1 : i;
        }
    }
}

/* x (B, c, h, w) = sum_{k,l} W_k(i) W_l(j) y[clamp(r_k(i))][clamp(c_l(j))] for y (B, c, h/f, w/f).
 * Scratch: the taps and weights of both axes, 4 (h + w) each. */
elbo_status elbo_upsample_bicubic(const float *y, int64_t B, int64_t c, int64_t h, int64_t w,
                                  int factor, float *x) {
    elbo_status st = base_check("upsample_bicubic", y, "y", NULL, 0, B, c, h, w, x, "x");
    if (st) return st;
    if (factor < 1 || h % factor || w % factor)
        return elbo_error(ELBO_ERR_ARG,
                          "upsample_bicubic: factor %d, not >= 1 dividing h = %lld and w = %lld",
                          factor, (long long)h, (long long)w);
    const int64_t hi = h / factor, wi = w / factor;
    int64_t *ri = malloc((size_t)(4 * (h + w)) * sizeof *ri);
    double *rw = malloc((size_t)(4 * (h + w)) * sizeof *rw);
    if (!ri || !rw) {
        free(ri);
        free(rw);
        return elbo_error(ELBO_ERR_NOMEM, "upsample_bicubic: out of memory");
    }
    int64_t *ci = ri + 4 * h;
    double *cw = rw + 4 * h;
    cubic_taps(h, hi, factor, ri, rw);
    cubic_taps(w, wi, factor, ci, cw);
    for (int64_t q = 0; q < B * c; q++) {
        const float *src = y + q * hi * wi;
        float *dst = x + q * h * w;
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                double s = 0;
                for (int k = 0; k < 4; k++) {
                    const float *row = src + ri[4 * i + k] * wi;
                    double rs = 0;
                    for (int l = 0; l < 4; l++) rs += cw[4 * j + l] * row[ci[4 * j + l]];
                    s += rw[4 * i + k] * rs;
                }
                dst[i * w + j] = (float)s;
            }
    }
    free(ri);
    free(rw);
    return ELBO_OK;
}

/* out = k * x per channel, circular boundaries: the forward of a deblur operator with
 * blur_sigma = sigma and the default radius ceil(3 sigma) (capped). */
elbo_status elbo_gaussian_filter(const float *x, int64_t B, int64_t c, int64_t h, int64_t w,
                                 double sigma, float *out) {
    elbo_status st = base_check("gaussian_filter", x, "x", NULL, 0, B, c, h, w, out, "out");
    if (st) return st;
    if (!(sigma > 0) || !isfinite(sigma))
        return elbo_error(ELBO_ERR_ARG, "gaussian_filter: sigma %g, not a finite value > 0", sigma);
    elbo_operator op;
    memset(&op, 0, sizeof op);
    op.kind = ELBO_OP_DEBLUR;
    op.c = c;
    op.h = h;
    op.w = w;
    op.blur_sigma = sigma;
    if ((st = elbo_op_init(&op))) return st;
    return elbo_op_forward(&op, x, B, out);
}
