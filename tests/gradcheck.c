/* Central finite differences against the tape's gradients (the method of ggml's
 * test-backend-ops): L(x) = sum_i out_i w_i with fixed random w, so every output element
 * contributes; the numeric derivative is (L(x + eps e_j) - L(x - eps e_j)) / (2 eps) with L
 * accumulated in double. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static double weighted_sum(const elbo_tensor *out, const float *w) {
    double s = 0;
    for (int64_t i = 0; i < out->numel; i++) s += (double)out->data[i] * w[i];
    return s;
}

int gradcheck(const char *op, gc_build_fn build, void *user, const gc_spec *spec, char *msg,
              size_t msg_len) {
    float eps = spec->eps > 0 ? spec->eps : 1e-3f;
    int max_checks = spec->max_checks > 0 ? spec->max_checks : 200;
    elbo_rng rng;
    elbo_rng_init(&rng, spec->seed ? spec->seed : 1234);
    elbo_ctx *ctx = elbo_ctx_new(1 << 20);
    float *vals[6] = {0};
    int rc = 1;
    msg[0] = 0;
    for (int i = 0; i < spec->n_in; i++) {
        int64_t n = elbo_shape_numel(spec->ndim[i], spec->shape[i]);
        vals[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (spec->init[i])
            memcpy(vals[i], spec->init[i], (size_t)n * sizeof(float));
        else
            elbo_rng_normal(&rng, vals[i], (size_t)n, 0, 1);
    }
    /* Analytic gradients. */
    elbo_tensor *in[6];
    for (int i = 0; i < spec->n_in; i++) {
        in[i] = elbo_tensor_wrap(ctx, vals[i], spec->ndim[i], spec->shape[i]);
        in[i]->requires_grad = !spec->no_grad[i];
    }
    elbo_tensor *out = build(ctx, in, user);
    if (!out) {
        snprintf(msg, msg_len, "build failed: %s", elbo_last_error());
        goto done;
    }
    float *w = malloc((size_t)out->numel * sizeof(float));
    elbo_rng_normal(&rng, w, (size_t)out->numel, 0, 1);
    if (elbo_backward_with(ctx, out, w) != ELBO_OK) {
        snprintf(msg, msg_len, "backward failed: %s", elbo_last_error());
        free(w);
        goto done;
    }
    float *analytic[6] = {0};
    for (int i = 0; i < spec->n_in; i++) {
        if (spec->no_grad[i]) continue;
        int64_t n = in[i]->numel;
        analytic[i] = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (in[i]->grad)
            memcpy(analytic[i], in[i]->grad, (size_t)n * sizeof(float));
        else
            memset(analytic[i], 0, (size_t)n * sizeof(float));
    }
    double worst = 0;
    rc = 0;
    elbo_ctx_set_grad(ctx, 0);
    for (int i = 0; i < spec->n_in && !rc; i++) {
        if (spec->no_grad[i]) continue;
        int64_t n = elbo_shape_numel(spec->ndim[i], spec->shape[i]);
        int64_t step = n > max_checks ? (n + max_checks - 1) / max_checks : 1;
        for (int64_t j = 0; j < n; j += step) {
            float x0 = vals[i][j];
            double lp, lm;
            elbo_ctx_reset(ctx);
            for (int k = 0; k < spec->n_in; k++)
                in[k] = elbo_tensor_wrap(ctx, vals[k], spec->ndim[k], spec->shape[k]);
            vals[i][j] = x0 + eps;
            elbo_tensor *o = build(ctx, in, user);
            lp = o ? weighted_sum(o, w) : NAN;
            elbo_ctx_reset(ctx);
            for (int k = 0; k < spec->n_in; k++)
                in[k] = elbo_tensor_wrap(ctx, vals[k], spec->ndim[k], spec->shape[k]);
            vals[i][j] = x0 - eps;
            o = build(ctx, in, user);
            lm = o ? weighted_sum(o, w) : NAN;
            vals[i][j] = x0;
            double numeric = (lp - lm) / (2.0 * eps);
            double a = analytic[i][j];
            double err = fabs(a - numeric) / (spec->atol + spec->rtol * fabs(numeric));
            if (!(err <= 1.0)) {
                snprintf(
                    msg, msg_len,
                    "input %d element %lld: analytic %.7g, numeric %.7g (atol %.1g, rtol %.1g)", i,
                    (long long)j, a, numeric, spec->atol, spec->rtol);
                rc = 1;
                break;
            }
            if (err > worst) worst = err;
        }
    }
    (void)op;
    for (int i = 0; i < spec->n_in; i++) free(analytic[i]);
    free(w);
done:
    for (int i = 0; i < spec->n_in; i++) free(vals[i]);
    elbo_ctx_free(ctx);
    return rc;
}
