/* Losses and log-likelihoods. The elementwise ones run through the broadcasting engine: with
 * MEAN or SUM the per-element values are summed slice by slice in a fixed order as they are
 * computed (no full-size temporary), and the backward recomputes what it needs from the
 * inputs, summing over broadcast axes where an input was broadcast. */
#include "broadcast.h"
#include "vmath.h"

#include <math.h>

#define LOG_2PI 1.8378770664093454836

static int check_reduction(const char *op, elbo_reduction r) {
    if (r == ELBO_REDUCE_MEAN || r == ELBO_REDUCE_SUM || r == ELBO_REDUCE_NONE) return 0;
    elbo_error(ELBO_ERR_ARG, "%s: unknown reduction %d", op, (int)r);
    return -1;
}

/* ---- elementwise losses: definition and shared driver ---------------------------------- */
typedef struct {
    const char *op;
    int n_in;            /* tensor inputs, 2 or 3 */
    int same_shape;      /* inputs must have equal shapes (no broadcasting) */
    elbo__bc_fn value;   /* (in0, in1[, in2]) -> per-element loss */
    elbo__bc_fn grad[3]; /* (gy, in0, in1[, in2]) -> gy * d value / d in_k; NULL: zero */
} ew_loss_def;

static float reduction_scale(elbo_reduction r, int64_t numel) {
    return r == ELBO_REDUCE_MEAN ? 1.0f / (float)numel : 1.0f;
}

static void ew_loss_backward(elbo_ctx *ctx, elbo_node *n) {
    const ew_loss_def *def = n->saved;
    elbo_tensor *y = n->out;
    int nd;
    int64_t shape[ELBO_MAX_DIMS];
    elbo__bc_shape(def->op, def->n_in, n->in, &nd, shape); /* checked in the forward */
    float scale = reduction_scale((elbo_reduction)n->iarg[0], elbo_shape_numel(nd, shape));
    const elbo_tensor *sh[4] = {y};
    const float *pt[4] = {y->grad};
    for (int k = 0; k < def->n_in; k++) {
        sh[k + 1] = n->in[k];
        pt[k + 1] = n->in[k]->data;
    }
    for (int k = 0; k < def->n_in; k++) {
        if (!def->grad[k]) {
            elbo__grad(ctx, n->in[k]); /* a zero gradient, materialised if required */
            continue;
        }
        elbo__bc_grad(ctx, n->in[k], nd, shape, scale, def->n_in + 1, sh, pt, def->grad[k],
                      n->farg);
    }
}

/* Per-element values over the broadcast shape of the inputs; NONE returns them, MEAN / SUM
 * reduce them on the fly into a scalar. par (up to 4 floats) is passed to the kernels. */
static elbo_tensor *ew_loss(elbo_ctx *ctx, const ew_loss_def *def, elbo_tensor **in,
                            elbo_reduction r, const float *par) {
    for (int k = 0; k < def->n_in; k++)
        if (!in[k]) return NULL;
    if (check_reduction(def->op, r)) return NULL;
    int nd;
    int64_t shape[ELBO_MAX_DIMS];
    if (def->same_shape) {
        for (int k = 1; k < def->n_in; k++)
            if (!elbo_same_shape(in[0], in[k])) {
                elbo__shape_error(def->op, in[0], in[k], "equal shapes required");
                return NULL;
            }
    }
    if (elbo__bc_shape(def->op, def->n_in, in, &nd, shape)) return NULL;
    elbo_tensor *y =
        r == ELBO_REDUCE_NONE ? elbo_tensor_new(ctx, nd, shape) : elbo_tensor_new(ctx, 0, NULL);
    if (!y) return NULL;
    float farg[4] = {0, 0, 0, 0};
    for (int k = 0; k < 4 && par; k++) farg[k] = par[k];
    const elbo_tensor *ops[4] = {y};
    const float *pt[3];
    for (int k = 0; k < def->n_in; k++) {
        ops[k + 1] = in[k];
        pt[k] = in[k]->data;
    }
    elbo__bc p;
    elbo__bc_plan_t(&p, nd, shape, def->n_in + 1, ops);
    elbo__bc_apply(&p, y->data, 0, reduction_scale(r, p.numel), pt, def->value, farg);
    int ok;
    elbo_node *n =
        def->n_in == 2
            ? elbo__record(ctx, def->op, y, ew_loss_backward, &ok, 2, in[0], in[1])
            : elbo__record(ctx, def->op, y, ew_loss_backward, &ok, 3, in[0], in[1], in[2]);
    if (!ok) return NULL;
    if (n) {
        n->saved = (void *)def;
        n->iarg[0] = r;
        memcpy(n->farg, farg, sizeof farg);
    }
    return y;
}

/* ---- mse: (p - t)^2; dp = 2 (p - t), dt = -2 (p - t) ----------------------------------- */
ELBO_BC_KERNEL2(k_mse, (v0 - v1) * (v0 - v1))
ELBO_BC_KERNEL3(k_mse_dp, 2.0f * v0 * (v1 - v2))
ELBO_BC_KERNEL3(k_mse_dt, -2.0f * v0 * (v1 - v2))
static const ew_loss_def mse_def = {"mse_loss", 2, 1, k_mse, {k_mse_dp, k_mse_dt, NULL}};

elbo_tensor *elbo_mse_loss(elbo_ctx *ctx, elbo_tensor *pred, elbo_tensor *target,
                           elbo_reduction r) {
    elbo_tensor *in[2] = {pred, target};
    return ew_loss(ctx, &mse_def, in, r, NULL);
}

/* ---- bce with logits l, target y: max(l,0) - l y + log1p(e^-|l|) (never overflows);
 * dl = sigmoid(l) - y, dy = -l. ---------------------------------------------------------- */
ELBO_BC_KERNEL2(k_bce_scalar,
                elbo__selectf(v0 > 0.0f, v0, 0.0f) - v0 * v1 + elbo__log1pf(elbo__expf(-fabsf(v0))))
ELBO_BC_KERNEL3(k_bce_dl_scalar, v0 *(elbo__sigmoidf(v1) - v2))
/* The same on 16 lanes where all operands are contiguous, with the scalar bits (vmath.h). */
static void k_bce(int64_t n, const float *const *in, const int *inc, float *restrict out,
                  void *user) {
#ifdef __AVX512F__
    if (inc[0] && inc[1]) {
        const float *l = in[0], *y = in[1];
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
            __m512 v0 = _mm512_maskz_loadu_ps(m, l + i), v1 = _mm512_maskz_loadu_ps(m, y + i);
            __m512 minus_abs = _mm512_castsi512_ps(
                _mm512_or_si512(_mm512_castps_si512(v0), _mm512_set1_epi32((int)0x80000000u)));
            __m512 pos = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(v0, _mm512_setzero_ps(), _CMP_GT_OQ),
                                             v0);
            __m512 a = _mm512_sub_ps(pos, _mm512_mul_ps(v0, v1));
            _mm512_mask_storeu_ps(out + i, m,
                                  _mm512_add_ps(a, elbo__log1pf16_0to1(elbo__expf16(minus_abs))));
        }
        return;
    }
#endif
    k_bce_scalar(n, in, inc, out, user);
}
static void k_bce_dl(int64_t n, const float *const *in, const int *inc, float *restrict out,
                     void *user) {
#ifdef __AVX512F__
    if (inc[1] && inc[2]) { /* dL/dloss contiguous, or one value (a reduced loss) */
        for (int64_t i = 0; i < n; i += 16) {
            __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
            __m512 v0 = inc[0] ? _mm512_maskz_loadu_ps(m, in[0] + i) : _mm512_set1_ps(in[0][0]),
                   v1 = _mm512_maskz_loadu_ps(m, in[1] + i), v2 = _mm512_maskz_loadu_ps(m, in[2] + i);
            _mm512_mask_storeu_ps(out + i, m,
                                  _mm512_mul_ps(v0, _mm512_sub_ps(elbo__sigmoidf16(v1), v2)));
        }
        return;
    }
#endif
    k_bce_dl_scalar(n, in, inc, out, user);
}
ELBO_BC_KERNEL3(k_bce_dy, -v0 *v1)
static const ew_loss_def bce_def = {"bce_with_logits", 2, 1, k_bce, {k_bce_dl, k_bce_dy, NULL}};

elbo_tensor *elbo_bce_with_logits(elbo_ctx *ctx, elbo_tensor *logits, elbo_tensor *target,
                                  elbo_reduction r) {
    elbo_tensor *in[2] = {logits, target};
    return ew_loss(ctx, &bce_def, in, r, NULL);
}

/* ---- Gaussian log-likelihood: -0.5 [log 2 pi + lv + (x - m)^2 e^-lv];
 * dx = -(x - m) e^-lv, dm = (x - m) e^-lv, dlv = -0.5 [1 - (x - m)^2 e^-lv]. ---------------- */
ELBO_BC_KERNEL3(k_gll, -0.5f * ((float)LOG_2PI + v2 + (v0 - v1) * (v0 - v1) * elbo__expf(-v2)))
ELBO_BC_KERNEL4(k_gll_dx, -v0 *(v1 - v2) * elbo__expf(-v3))
ELBO_BC_KERNEL4(k_gll_dm, v0 *(v1 - v2) * elbo__expf(-v3))
ELBO_BC_KERNEL4(k_gll_dlv, -0.5f * v0 * (1.0f - (v1 - v2) * (v1 - v2) * elbo__expf(-v3)))
static const ew_loss_def gll_def = {
    "gaussian_log_likelihood", 3, 0, k_gll, {k_gll_dx, k_gll_dm, k_gll_dlv}};

elbo_tensor *elbo_gaussian_log_likelihood(elbo_ctx *ctx, elbo_tensor *x, elbo_tensor *mean,
                                          elbo_tensor *log_var, elbo_reduction r) {
    elbo_tensor *in[3] = {x, mean, log_var};
    return ew_loss(ctx, &gll_def, in, r, NULL);
}

/* ---- discretized logistic (Salimans et al. 2017, PixelCNN++ single component) ----------
 * c = x - mu, 1/s = e^-log_scale, d = 1/(n_bins - 1), p = (c + d)/s, q = (c - d)/s:
 *   x < -0.999: log sigma(p) = p - softplus(p)
 *   x >  0.999: log(1 - sigma(q)) = -softplus(q)
 *   cdf_delta = sigma(p) - sigma(q) > 1e-5: log max(cdf_delta, 1e-12)
 *   otherwise: log pdf at the centre + log bin width: mid - log_scale - 2 softplus(mid)
 *              - log((n_bins - 1)/2), mid = c/s.
 * The bin term is evaluated in the equivalent form (same value, no cancellation of two
 * sigmoids near 0 or 1, no underflow), with u = p - q = 2d/s:
 *   sigma(p) - sigma(q) = -expm1(-u) / ((1 + e^-p)(1 + e^q)),
 *   log cdf_delta = log(-expm1(-u)) - softplus(-p) - softplus(q),
 * whose derivatives simplify to
 *   d/dmu = (sigma(q) - sigma(-p)) / s,  d/dlog_scale = -u / expm1(u) - p sigma(-p) + q sigma(q).
 * Edges: d/dmu = -sigma(-p)/s, d/dls = -p sigma(-p) (left); sigma(q)/s, q sigma(q) (right).
 * Centre: t = 1 - 2 sigma(mid): d/dmu = -t/s, d/dls = -t mid - 1.
 * Every branch is computed and one selected, so the loops vectorise. */
#define DL_LOG_1EM5 (-11.512925464970229f) /* log 1e-5 */

typedef enum { DL_VALUE, DL_DMU, DL_DLS } dl_what;

/* softplus(z) and sigmoid(z) from one exponential e^-|z|. */
static inline void softplus_sigmoid(float z, float *sp, float *sig) {
    float e = elbo__expf(-fabsf(z)), r = 1.0f / (1.0f + e);
    *sp = elbo__selectf(z > 0.0f, z, 0.0f) + elbo__log1pf(e);
    *sig = elbo__selectf(z >= 0.0f, r, e * r);
}

static inline float dlogistic(float x, float mu, float ls, const float *par, dl_what what) {
    float d = par[1], log_half_bins = par[2]; /* 1/(n_bins-1), log((n_bins-1)/2) */
    float inv_s = elbo__expf(-ls), c = x - mu;
    float p = inv_s * (c + d), q = inv_s * (c - d), u = 2.0f * d * inv_s, mid = inv_s * c;
    float sp_np, sig_np, sp_q, sig_q, sp_mid, sig_mid;
    softplus_sigmoid(-p, &sp_np, &sig_np);
    softplus_sigmoid(q, &sp_q, &sig_q);
    softplus_sigmoid(mid, &sp_mid, &sig_mid);
    float em1 = elbo__expm1f(-u); /* in (-1, 0) */
    float log_delta = elbo__logf(-em1) - sp_np - sp_q;
    int left = x<-0.999f, right = x> 0.999f, bin = log_delta > DL_LOG_1EM5;
    float v_left, v_right, v_bin, v_mid;
    if (what == DL_VALUE) {
        v_left = -sp_np;
        v_right = -sp_q;
        v_bin = log_delta;
        v_mid = mid - ls - 2.0f * sp_mid - log_half_bins;
    } else {
        float t = 1.0f - 2.0f * sig_mid;
        if (what == DL_DMU) {
            v_left = -sig_np * inv_s;
            v_right = sig_q * inv_s;
            v_bin = (sig_q - sig_np) * inv_s;
            v_mid = -t * inv_s;
        } else {
            /* u / expm1(u) = -u e^-u / expm1(-u) */
            float u_over_em1 = u * (1.0f + em1) / -em1;
            v_left = -p * sig_np;
            v_right = q * sig_q;
            v_bin = -u_over_em1 - p * sig_np + q * sig_q;
            v_mid = -t * mid - 1.0f;
        }
    }
    float v = elbo__selectf(bin, v_bin, v_mid);
    v = elbo__selectf(right, v_right, v);
    return elbo__selectf(left, v_left, v);
}

ELBO_BC_KERNEL3(k_dl, dlogistic(v0, v1, v2, (const float *)user, DL_VALUE))
ELBO_BC_KERNEL4(k_dl_dm, v0 *dlogistic(v1, v2, v3, (const float *)user, DL_DMU))
ELBO_BC_KERNEL4(k_dl_dls, v0 *dlogistic(v1, v2, v3, (const float *)user, DL_DLS))
/* x is data: its gradient is zero. */
static const ew_loss_def dl_def = {
    "discretized_logistic_log_likelihood", 3, 0, k_dl, {NULL, k_dl_dm, k_dl_dls}};

elbo_tensor *elbo_discretized_logistic_log_likelihood(elbo_ctx *ctx, elbo_tensor *x,
                                                      elbo_tensor *mean, elbo_tensor *log_scale,
                                                      int n_bins, elbo_reduction r) {
    if (!x || !mean || !log_scale) return NULL;
    if (n_bins < 2) {
        elbo_error(ELBO_ERR_ARG, "discretized_logistic_log_likelihood: n_bins %d (at least 2)",
                   n_bins);
        return NULL;
    }
    elbo_tensor *in[3] = {x, mean, log_scale};
    float par[4] = {(float)n_bins, (float)(1.0 / (n_bins - 1)), (float)log((n_bins - 1) / 2.0), 0};
    return ew_loss(ctx, &dl_def, in, r, par);
}

/* ---- cross entropy: loss_i = logsumexp_j l_ij - l_{i,y_i}; dl_ij = g_i (softmax_ij - [j = y_i]).
 * Saves the labels (copied) and the per-row logsumexp (N floats) for the backward. ------- */
typedef struct {
    int32_t *labels;
    float *lse;
} ce_saved;

static void ce_backward(elbo_ctx *ctx, elbo_node *n) {
    elbo_tensor *l = n->in[0], *y = n->out;
    float *gl = elbo__grad(ctx, l);
    if (!gl) return;
    const ce_saved *s = n->saved;
    int64_t N = l->shape[0], K = l->shape[1];
    elbo_reduction r = (elbo_reduction)n->iarg[0];
    float scale = reduction_scale(r, N);
    ELBO_PARALLEL_FOR(
        l->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < N; i++) {
            float g = r == ELBO_REDUCE_NONE ? y->grad[i] : y->grad[0] * scale, lse = s->lse[i];
            const float *li = l->data + i * K;
            float *gi = gl + i * K;
            for (int64_t j = 0; j < K; j++) gi[j] += g * elbo__expf(li[j] - lse);
            gi[s->labels[i]] -= g;
        });
}

elbo_tensor *elbo_cross_entropy(elbo_ctx *ctx, elbo_tensor *logits, const int32_t *labels,
                                elbo_reduction r) {
    if (!logits) return NULL;
    if (check_reduction("cross_entropy", r)) return NULL;
    if (logits->ndim != 2) {
        char s[96];
        elbo_error(ELBO_ERR_SHAPE, "cross_entropy: logits must be (N, K), got %s",
                   elbo_shape_str(logits, s, sizeof s));
        return NULL;
    }
    int64_t N = logits->shape[0], K = logits->shape[1];
    if (N > 0 && !labels) {
        elbo_error(ELBO_ERR_ARG, "cross_entropy: NULL labels");
        return NULL;
    }
    for (int64_t i = 0; i < N; i++)
        if (labels[i] < 0 || labels[i] >= K) {
            elbo_error(ELBO_ERR_ARG, "cross_entropy: label %d of row %lld outside [0, %lld)",
                       (int)labels[i], (long long)i, (long long)K);
            return NULL;
        }
    elbo_tensor *y =
        r == ELBO_REDUCE_NONE ? elbo_tensor_new(ctx, 1, &N) : elbo_tensor_new(ctx, 0, NULL);
    float *lse = elbo_ctx_alloc(ctx, (size_t)(N ? N : 1) * sizeof(float));
    float *loss = r == ELBO_REDUCE_NONE ? (y ? y->data : NULL)
                                        : elbo_ctx_alloc(ctx, (size_t)(N ? N : 1) * sizeof(float));
    if (!y || !lse || !loss) return NULL;
    ELBO_PARALLEL_FOR(
        logits->numel > ELBO_PAR_MIN, for (int64_t i = 0; i < N; i++) {
            const float *li = logits->data + i * K;
            lse[i] = elbo__row_logsumexp(li, K);
            loss[i] = lse[i] - li[labels[i]];
        });
    if (r != ELBO_REDUCE_NONE) {
        double total = elbo__sum_f32(loss, N);
        y->data[0] = (float)(r == ELBO_REDUCE_MEAN ? total / (double)N : total);
    }
    int ok;
    elbo_node *n = elbo__record(ctx, "cross_entropy", y, ce_backward, &ok, 1, logits);
    if (!ok) return NULL;
    if (n) {
        ce_saved *s = elbo_ctx_alloc(ctx, sizeof *s);
        int32_t *lab = elbo_ctx_alloc(ctx, (size_t)(N ? N : 1) * sizeof(int32_t));
        if (!s || !lab) return NULL;
        if (N) memcpy(lab, labels, (size_t)N * sizeof(int32_t));
        s->labels = lab;
        s->lse = lse;
        n->saved = s;
        n->iarg[0] = r;
    }
    return y;
}
