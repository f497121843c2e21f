/* The linear measurement operators of include/elbo/inverse.h (inpaint, superres, denoise,
 * deblur) with their adjoints and pseudo-inverses, the masks, and the two energies (a
 * measurement's Gaussian likelihood, a classifier's constraint). Sums are accumulated in
 * double; each function allocates its scratch once, outside its loops. */
#include "core/internal.h"
#include "elbo/inverse.h"

#include "elbo/io.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const op_names[ELBO_OP_COUNT] = {"inpaint", "superres", "denoise", "deblur"};
static const char *const mask_names[3] = {"box", "random", "half"};

elbo_status elbo_op_kind_parse(const char *name, elbo_op_kind *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("operator", op_names, ELBO_OP_COUNT, name, &k);
    if (st == ELBO_OK) *out = (elbo_op_kind)k;
    return st;
}

const char *elbo_op_kind_name(elbo_op_kind k) {
    return (unsigned)k < ELBO_OP_COUNT ? op_names[k] : "?";
}

elbo_status elbo_mask_kind_parse(const char *name, elbo_mask_kind *out) {
    int k = 0;
    elbo_status st = elbo__parse_name("mask", mask_names, 3, name, &k);
    if (st == ELBO_OK) *out = (elbo_mask_kind)k;
    return st;
}

/* ---- operators ---------------------------------------------------------------------------- */

/* The normalised 1-D Gaussian k[j + r] = exp(-j^2 / (2 sigma^2)) / sum, j = -r..r; the 2-D
 * kernel is its outer product (also of sum 1). */
static void gauss_kernel(double sigma, int r, float *k) {
    double sum = 0, v[2 * ELBO_OP_MAX_RADIUS + 1];
    for (int j = -r; j <= r; j++) sum += v[j + r] = exp(-0.5 * (double)j * j / (sigma * sigma));
    for (int j = 0; j <= 2 * r; j++) k[j] = (float)(v[j] / sum);
}

elbo_status elbo_op_init(elbo_operator *op) {
    if (!op) return elbo_error(ELBO_ERR_ARG, "op_init: op is NULL");
    if ((unsigned)op->kind >= ELBO_OP_COUNT)
        return elbo_error(ELBO_ERR_ARG, "op_init: kind %d is not an operator", (int)op->kind);
    const char *nm = op_names[op->kind];
    if (op->c < 1 || op->h < 1 || op->w < 1)
        return elbo_error(ELBO_ERR_ARG, "op_init (%s): shape (c, h, w) = (%lld, %lld, %lld), not >= 1",
                          nm, (long long)op->c, (long long)op->h, (long long)op->w);
    if (!(op->sigma_y >= 0) || !isfinite(op->sigma_y))
        return elbo_error(ELBO_ERR_ARG, "op_init (%s): sigma_y %g, not a finite value >= 0", nm,
                          op->sigma_y);
    op->radius = 0;
    switch (op->kind) {
    case ELBO_OP_INPAINT:
        if (!op->mask)
            return elbo_error(ELBO_ERR_ARG, "op_init (inpaint): mask is NULL (h w values needed)");
        for (int64_t i = 0; i < op->h * op->w; i++)
            if (op->mask[i] != 0.0f && op->mask[i] != 1.0f)
                return elbo_error(ELBO_ERR_ARG, "op_init (inpaint): mask[%lld] = %g, not 0 or 1",
                                  (long long)i, op->mask[i]);
        break;
    case ELBO_OP_SUPERRES:
        if (op->factor < 1 || op->h % op->factor || op->w % op->factor)
            return elbo_error(ELBO_ERR_ARG,
                              "op_init (superres): factor %d, not >= 1 dividing h = %lld and w = %lld",
                              op->factor, (long long)op->h, (long long)op->w);
        break;
    case ELBO_OP_DEBLUR:
        if (!(op->blur_sigma > 0) || !isfinite(op->blur_sigma))
            return elbo_error(ELBO_ERR_ARG, "op_init (deblur): blur_sigma %g, not a finite value > 0",
                              op->blur_sigma);
        if (op->blur_radius < 0 || op->blur_radius > ELBO_OP_MAX_RADIUS)
            return elbo_error(ELBO_ERR_ARG, "op_init (deblur): blur_radius %d, not in 0..%d",
                              op->blur_radius, ELBO_OP_MAX_RADIUS);
        if (op->blur_radius > 0)
            op->radius = op->blur_radius;
        else {
            double r = ceil(3 * op->blur_sigma);
            op->radius = r > ELBO_OP_MAX_RADIUS ? ELBO_OP_MAX_RADIUS : (int)r;
        }
        memset(op->kernel, 0, sizeof op->kernel);
        gauss_kernel(op->blur_sigma, op->radius, op->kernel);
        break;
    default: break;
    }
    return ELBO_OK;
}

int64_t elbo_op_dim_x(const elbo_operator *op) { return op ? op->c * op->h * op->w : 0; }

int64_t elbo_op_dim_y(const elbo_operator *op) {
    if (!op) return 0;
    if (op->kind == ELBO_OP_SUPERRES && op->factor >= 1)
        return op->c * (op->h / op->factor) * (op->w / op->factor);
    return op->c * op->h * op->w;
}

/* Checks shared by forward, adjoint, pinv and measure. */
static elbo_status op_check(const char *fn, const elbo_operator *op, const void *in,
                            const char *in_name, int64_t B, const void *out, const char *out_name) {
    if (!op) return elbo_error(ELBO_ERR_ARG, "%s: op is NULL", fn);
    if ((unsigned)op->kind >= ELBO_OP_COUNT)
        return elbo_error(ELBO_ERR_ARG, "%s: op kind %d is not an operator", fn, (int)op->kind);
    if (!in || !out) return elbo_error(ELBO_ERR_ARG, "%s: %s is NULL", fn, !in ? in_name : out_name);
    if (B < 0) return elbo_error(ELBO_ERR_ARG, "%s: batch B = %lld, not >= 0", fn, (long long)B);
    if (op->kind == ELBO_OP_INPAINT && !op->mask)
        return elbo_error(ELBO_ERR_ARG, "%s: inpaint op without a mask", fn);
    if (op->kind == ELBO_OP_SUPERRES && (op->factor < 1 || op->h % op->factor || op->w % op->factor))
        return elbo_error(ELBO_ERR_ARG, "%s: superres factor %d does not divide (h, w) = (%lld, %lld)",
                          fn, op->factor, (long long)op->h, (long long)op->w);
    if (op->kind == ELBO_OP_DEBLUR && (op->radius < 1 || op->radius > ELBO_OP_MAX_RADIUS))
        return elbo_error(ELBO_ERR_ARG, "%s: deblur op not initialised (call elbo_op_init)", fn);
    return ELBO_OK;
}

/* out = m (.) in, m (h w) shared by the n = B c images. */
static void apply_mask(const float *m, const float *in, int64_t n, int64_t hw, float *out) {
    for (int64_t q = 0; q < n; q++)
        for (int64_t i = 0; i < hw; i++) out[q * hw + i] = m[i] != 0.0f ? in[q * hw + i] : 0.0f;
}

/* The separable circular blur of n images (h, w): tmp = rows (*) k, out = columns (*) k, with
 * out[i][j] = sum_{a,b} k[a] k[b] in[(i + a - r) mod h][(j + b - r) mod w]. Correlation and
 * convolution agree (k symmetric). tmp: h w doubles. out may alias in. */
static void blur(const float *k, int r, const float *in, int64_t n, int64_t h, int64_t w,
                 float *out, double *tmp) {
    for (int64_t q = 0; q < n; q++) {
        const float *src = in + q * h * w;
        float *dst = out + q * h * w;
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) {
                double s = 0;
                for (int a = 0; a <= 2 * r; a++) {
                    int64_t jj = (j + a - r) % w;
                    if (jj < 0) jj += w;
                    s += (double)k[a] * src[i * w + jj];
                }
                tmp[i * w + j] = s;
            }
        for (int64_t i = 0; i < h; i++) {
            for (int64_t j = 0; j < w; j++) {
                double s = 0;
                for (int a = 0; a <= 2 * r; a++) {
                    int64_t ii = (i + a - r) % h;
                    if (ii < 0) ii += h;
                    s += (double)k[a] * tmp[ii * w + j];
                }
                dst[i * w + j] = (float)s;
            }
        }
    }
}

/* y = A x: per kind as in inverse.h (superres: the mean of each f x f block). */
elbo_status elbo_op_forward(const elbo_operator *op, const float *x, int64_t B, float *y) {
    elbo_status st = op_check("op_forward", op, x, "x", B, y, "y");
    if (st || B == 0) return st;
    const int64_t n = B * op->c, h = op->h, w = op->w;
    switch (op->kind) {
    case ELBO_OP_INPAINT: apply_mask(op->mask, x, n, h * w, y); break;
    case ELBO_OP_DENOISE: memmove(y, x, (size_t)(n * h * w) * sizeof *y); break;
    case ELBO_OP_SUPERRES: {
        const int64_t f = op->factor, ho = h / f, wo = w / f;
        const double inv = 1.0 / (double)(f * f);
        for (int64_t q = 0; q < n; q++)
            for (int64_t i = 0; i < ho; i++)
                for (int64_t j = 0; j < wo; j++) {
                    double s = 0;
                    for (int64_t a = 0; a < f; a++)
                        for (int64_t b = 0; b < f; b++)
                            s += x[(q * h + i * f + a) * w + j * f + b];
                    y[(q * ho + i) * wo + j] = (float)(s * inv);
                }
        break;
    }
    case ELBO_OP_DEBLUR: {
        double *tmp = malloc((size_t)(h * w) * sizeof *tmp);
        if (!tmp) return elbo_error(ELBO_ERR_NOMEM, "op_forward: out of memory");
        blur(op->kernel, op->radius, x, n, h, w, y, tmp);
        free(tmp);
        break;
    }
    default: break;
    }
    return ELBO_OK;
}

/* Replicates each value of r (n, h/f, w/f) over its f x f block of x (n, h, w), times s:
 * s = 1/f^2 is A^T of the block mean, s = 1 is A^+ = f^2 A^T. */
static void spread(const float *r, int64_t n, int64_t h, int64_t w, int64_t f, double s, float *x) {
    const int64_t ho = h / f, wo = w / f;
    for (int64_t q = 0; q < n; q++)
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                x[(q * h + i) * w + j] = (float)(s * r[(q * ho + i / f) * wo + j / f]);
}

/* x = A^T r: inpaint m (.) r, superres r / f^2 spread over blocks, denoise r, deblur k * r. */
elbo_status elbo_op_adjoint(const elbo_operator *op, const float *r, int64_t B, float *x) {
    elbo_status st = op_check("op_adjoint", op, r, "r", B, x, "x");
    if (st || B == 0) return st;
    if (op->kind == ELBO_OP_SUPERRES) {
        spread(r, B * op->c, op->h, op->w, op->factor, 1.0 / ((double)op->factor * op->factor), x);
        return ELBO_OK;
    }
    return elbo_op_forward(op, r, B, x); /* the other three are symmetric */
}

/* x = A^+ y: inpaint m (.) y, superres nearest-neighbour replication, denoise y. */
elbo_status elbo_op_pinv(const elbo_operator *op, const float *y, int64_t B, float *x) {
    elbo_status st = op_check("op_pinv", op, y, "y", B, x, "x");
    if (st) return st;
    if (op->kind == ELBO_OP_DEBLUR)
        return elbo_error(ELBO_ERR_ARG, "op_pinv: op kind deblur has no cheap pseudo-inverse");
    if (B == 0) return ELBO_OK;
    if (op->kind == ELBO_OP_SUPERRES) {
        spread(y, B * op->c, op->h, op->w, op->factor, 1.0, x);
        return ELBO_OK;
    }
    return elbo_op_forward(op, y, B, x);
}

/* y = A x + sigma_y z (inpaint: A (x + sigma_y z)), z ~ N(0, I) drawn in one fill. */
elbo_status elbo_op_measure(const elbo_operator *op, const float *x, int64_t B, elbo_rng *rng,
                            float *y) {
    elbo_status st = op_check("op_measure", op, x, "x", B, y, "y");
    if (st) return st;
    if (!rng) return elbo_error(ELBO_ERR_ARG, "op_measure: rng is NULL");
    if (!(op->sigma_y >= 0) || !isfinite(op->sigma_y))
        return elbo_error(ELBO_ERR_ARG, "op_measure: sigma_y %g, not a finite value >= 0",
                          op->sigma_y);
    if (B == 0) return ELBO_OK;
    const int64_t M = elbo_op_dim_y(op);
    if ((st = elbo_op_forward(op, x, B, y))) return st;
    if (op->sigma_y == 0) return ELBO_OK;
    float *z = malloc((size_t)(B * M) * sizeof *z);
    if (!z) return elbo_error(ELBO_ERR_NOMEM, "op_measure: out of memory");
    elbo_rng_normal(rng, z, (size_t)(B * M), 0.0f, 1.0f);
    if (op->kind == ELBO_OP_INPAINT) apply_mask(op->mask, z, B * op->c, op->h * op->w, z);
    for (int64_t i = 0; i < B * M; i++) y[i] = (float)(y[i] + op->sigma_y * z[i]);
    free(z);
    return ELBO_OK;
}

/* ---- masks ---------------------------------------------------------------------------------- */

/* box: rows [(h - h/2)/2, + h/2) x columns [(w - w/2)/2, + w/2) missing; random: mask_i =
 * [u_i < keep], u ~ U[0, 1) from Philox(seed); half: columns >= w/2 missing. */
elbo_status elbo_mask_make(elbo_mask_kind kind, int64_t h, int64_t w, double keep,
                           uint64_t seed, float *mask) {
    if ((unsigned)kind > ELBO_MASK_HALF)
        return elbo_error(ELBO_ERR_ARG, "mask_make: kind %d is not a mask kind", (int)kind);
    if (h < 1 || w < 1)
        return elbo_error(ELBO_ERR_ARG, "mask_make: size h x w = %lld x %lld, not >= 1",
                          (long long)h, (long long)w);
    if (!mask) return elbo_error(ELBO_ERR_ARG, "mask_make: mask is NULL");
    switch (kind) {
    case ELBO_MASK_BOX: {
        const int64_t sh = h / 2, sw = w / 2, r0 = (h - sh) / 2, c0 = (w - sw) / 2;
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++)
                mask[i * w + j] = (i >= r0 && i < r0 + sh && j >= c0 && j < c0 + sw) ? 0.0f : 1.0f;
        break;
    }
    case ELBO_MASK_RANDOM: {
        if (!(keep >= 0 && keep <= 1))
            return elbo_error(ELBO_ERR_ARG, "mask_make (random): keep %g, not in [0, 1]", keep);
        elbo_rng rng;
        elbo_rng_init(&rng, seed);
        elbo_rng_uniform(&rng, mask, (size_t)(h * w), 0.0f, 1.0f);
        for (int64_t i = 0; i < h * w; i++) mask[i] = (double)mask[i] < keep ? 1.0f : 0.0f;
        break;
    }
    case ELBO_MASK_HALF:
        for (int64_t i = 0; i < h; i++)
            for (int64_t j = 0; j < w; j++) mask[i * w + j] = j >= w / 2 ? 0.0f : 1.0f;
        break;
    }
    return ELBO_OK;
}

/* mask_i = [first channel of pixel i >= 128] of a gray or RGB PNG of exactly h x w. */
elbo_status elbo_mask_load_png(const char *path, int64_t h, int64_t w, float *mask) {
    if (!path) return elbo_error(ELBO_ERR_ARG, "mask_load_png: path is NULL");
    if (!mask) return elbo_error(ELBO_ERR_ARG, "mask_load_png: %s: mask is NULL", path);
    if (h < 1 || w < 1)
        return elbo_error(ELBO_ERR_ARG, "mask_load_png: %s: size h x w = %lld x %lld, not >= 1",
                          path, (long long)h, (long long)w);
    uint8_t *px = NULL;
    int64_t ph = 0, pw = 0, pc = 0;
    elbo_status st = elbo_png_read(path, &px, &ph, &pw, &pc);
    if (st) return st; /* the message starts with the path */
    if (ph != h || pw != w) {
        free(px);
        return elbo_error(ELBO_ERR_FORMAT, "%s: mask image is %lld x %lld (h x w), expected %lld x %lld",
                          path, (long long)ph, (long long)pw, (long long)h, (long long)w);
    }
    for (int64_t i = 0; i < h * w; i++) mask[i] = px[i * pc] >= 128 ? 1.0f : 0.0f;
    free(px);
    return ELBO_OK;
}

/* ---- energies ------------------------------------------------------------------------------- */

/* E_b = ||y_b - A x_b||^2 / (2 s^2), grad = A^T (A x - y) / s^2, s = sigma_y (1/255 at 0). */
elbo_status elbo_measurement_energy_fn(void *user, const float *x, int64_t B, double *value,
                                       float *grad) {
    const elbo_measurement_energy *e = user;
    if (!e) return elbo_error(ELBO_ERR_ARG, "measurement energy: user is NULL");
    if (!e->op || !e->y || !e->work)
        return elbo_error(ELBO_ERR_ARG, "measurement energy: %s is NULL",
                          !e->op ? "op" : !e->y ? "y" : "work");
    if (!x) return elbo_error(ELBO_ERR_ARG, "measurement energy: x is NULL");
    const elbo_operator *op = e->op;
    const int64_t M = elbo_op_dim_y(op);
    const double s = op->sigma_y > 0 ? op->sigma_y : 1.0 / 255.0, inv2 = 1.0 / (s * s);
    elbo_status st = elbo_op_forward(op, x, B, e->work);
    if (st) return st;
    for (int64_t b = 0; b < B; b++) {
        double ss = 0;
        for (int64_t i = b * M; i < (b + 1) * M; i++) {
            const double r = (double)e->work[i] - e->y[i];
            e->work[i] = (float)(r * inv2); /* the residual scaled by 1/s^2, for the gradient */
            ss += r * r;
        }
        if (value) value[b] = 0.5 * ss * inv2;
    }
    return grad ? elbo_op_adjoint(op, e->work, B, grad) : ELBO_OK;
}

/* E_b = -weight log p(k_b | x_b), grad = -weight grad_x log p(k_b | x_b) (lvl = NULL: the
 * clean classifier); scratch for the classifier's gradient only when grad is NULL. */
elbo_status elbo_constraint_energy_fn(void *user, const float *x, int64_t B, double *value,
                                      float *grad) {
    const elbo_constraint_energy *e = user;
    if (!e) return elbo_error(ELBO_ERR_ARG, "constraint energy: user is NULL");
    if (!e->classifier || !e->labels)
        return elbo_error(ELBO_ERR_ARG, "constraint energy: %s is NULL",
                          !e->classifier ? "classifier" : "labels");
    if (!x) return elbo_error(ELBO_ERR_ARG, "constraint energy: x is NULL");
    if (e->dim < 1)
        return elbo_error(ELBO_ERR_ARG, "constraint energy: dim %lld, not >= 1", (long long)e->dim);
    if (!(e->weight > 0) || !isfinite(e->weight))
        return elbo_error(ELBO_ERR_ARG, "constraint energy: weight %g, not a finite value > 0",
                          e->weight);
    if (B < 0) return elbo_error(ELBO_ERR_ARG, "constraint energy: B = %lld, not >= 0", (long long)B);
    if (B == 0 || (!value && !grad)) return ELBO_OK;
    const int64_t n = B * e->dim;
    float *g = grad ? grad : malloc((size_t)n * sizeof *g);
    if (!g) return elbo_error(ELBO_ERR_NOMEM, "constraint energy: out of memory");
    elbo_status st = e->classifier(e->classifier_user, x, n, NULL, e->labels, g, value);
    if (st == ELBO_OK) {
        if (grad)
            for (int64_t i = 0; i < n; i++) grad[i] = (float)(-e->weight * grad[i]);
        if (value)
            for (int64_t b = 0; b < B; b++) value[b] = -e->weight * value[b];
    }
    if (!grad) free(g);
    return st;
}
