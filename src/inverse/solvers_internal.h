/* Checks shared by the inverse-problem solvers of include/elbo/inverse.h (pnp.c, dps.c,
 * repaint.c): the prior, the image buffer and the batch. */
#ifndef ELBO_INVERSE_SOLVERS_INTERNAL_H
#define ELBO_INVERSE_SOLVERS_INTERNAL_H

#include "elbo/inverse.h"

#include <math.h>
#include <stdint.h>

/* The prior (its process, a denoiser, the VJP when need_vjp, an image shape c, h, w >= 1),
 * the output x and the batch B >= 1; *D = c h w. Errors are ELBO_ERR_ARG, prefixed by fn and
 * naming the argument. */
static inline elbo_status elbo__solver_check(const char *fn, const elbo_prior *prior, int need_vjp,
                                             const float *x, int64_t B, int64_t *D) {
    if (!prior) return elbo_error(ELBO_ERR_ARG, "%s: prior is NULL", fn);
    if (!prior->process) return elbo_error(ELBO_ERR_ARG, "%s: prior->process is NULL", fn);
    elbo_status st = elbo_process_check(prior->process);
    if (st) return st;
    if (!prior->denoise) return elbo_error(ELBO_ERR_ARG, "%s: prior->denoise is NULL", fn);
    if (need_vjp && !prior->denoise_vjp)
        return elbo_error(ELBO_ERR_ARG, "%s: prior->denoise_vjp is NULL (the solver needs the VJP)",
                          fn);
    if (prior->c < 1 || prior->h < 1 || prior->w < 1)
        return elbo_error(ELBO_ERR_ARG, "%s: prior shape (c, h, w) = (%lld, %lld, %lld), need >= 1",
                          fn, (long long)prior->c, (long long)prior->h, (long long)prior->w);
    if (B < 1) return elbo_error(ELBO_ERR_ARG, "%s: B must be >= 1, got %lld", fn, (long long)B);
    if (!x) return elbo_error(ELBO_ERR_ARG, "%s: x is NULL", fn);
    const int64_t limit = INT64_MAX / 64;
    if (prior->c > limit / prior->h || prior->c * prior->h > limit / prior->w ||
        prior->c * prior->h * prior->w > limit / B)
        return elbo_error(ELBO_ERR_ARG, "%s: B c h w too large", fn);
    *D = prior->c * prior->h * prior->w;
    return ELBO_OK;
}

/* x0_hat = D(x_t), u = cot(x0_hat), vjp = (d x0_hat / d x_t)^T u: by the prior's fused
 * denoise_vjp_at when it has one (one network pass), else denoise, cot and denoise_vjp (two;
 * scratch: n floats for the VJP call's copy of x0_hat). */
static inline elbo_status elbo__prior_vjp_at(const elbo_prior *p, const float *x_t, int64_t n,
                                             const elbo_noise_level *l, elbo_cotangent_fn cot,
                                             void *cot_user, float *x0_hat, float *u, float *vjp,
                                             float *scratch) {
    if (p->denoise_vjp_at) return p->denoise_vjp_at(p->vjp_user, x_t, n, l, cot, cot_user, x0_hat, u, vjp);
    elbo_status st = p->denoise(p->denoise_user, x_t, n, l, x0_hat);
    if (!st) st = cot(cot_user, x0_hat, n, u);
    if (!st) st = p->denoise_vjp(p->vjp_user, x_t, n, l, u, scratch, vjp);
    return st;
}

/* 1 when every value of v[0..n) is finite. */
static inline int elbo__all_finite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(v[i])) return 0;
    return 1;
}

#endif
