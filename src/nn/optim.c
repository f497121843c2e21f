/* Optimisers, gradient clipping, EMA of the weights and learning-rate schedules, all over a
 * paramset's flat value and gradient blocks. Each update is one flat loop whose element i
 * depends only on element i of the blocks, so it parallelises without changing any bit.
 * The float arithmetic repeats PyTorch 1.13's single-tensor (for-loop) implementations op by
 * op, in the same order and with the same fused multiply-adds (its x.add_(y, alpha=a) and
 * addcmul_ are computed as fma(y, a, x) by its AVX2 kernels): the results agree with PyTorch
 * to the bit (tests/test_optim.c). fmaf is exact in IEEE arithmetic, so this holds on any
 * machine. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

struct elbo_optim {
    elbo_paramset *ps;
    elbo_optim_params p;
    int64_t steps;
    int64_t n;
    float *m; /* Adam first moment / SGD momentum buffer */
    float *v; /* Adam second moment */
};

void elbo_optim_params_init(elbo_optim_params *p, elbo_opt_kind kind) {
    memset(p, 0, sizeof *p);
    p->kind = kind;
    p->beta1 = 0.9f;
    p->beta2 = 0.999f;
    p->eps = 1e-8f;
    switch (kind) {
    case ELBO_OPT_ADAM:
        p->lr = 1e-3f;
        break;
    case ELBO_OPT_ADAMW:
        p->lr = 1e-3f;
        p->weight_decay = 1e-2f;
        break;
    case ELBO_OPT_SGD:
        p->lr = 1e-2f;
        break;
    }
}

/* The shortest decimal that rounds to x, as a double: 0.999f -> 0.999. Hyper-parameters
 * arrive as floats but are meant as decimals, and PyTorch forms 1 - beta2, 1 - beta^t and
 * lr / (1 - beta1^t) in double from the decimal; float(1 - 0.999f) differs from
 * float(1 - 0.999) by 1.3e-5 relative, which would show in every Adam step. */
static double decimal(float x) {
    char buf[32];
    for (int prec = 6; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)x);
        double d = strtod(buf, NULL);
        if ((float)d == x) return d;
    }
    return (double)x;
}

static float *zeroed(int64_t n) {
    float *x = aligned_alloc(64, ((size_t)(n ? n : 1) * sizeof(float) + 63) / 64 * 64);
    if (x) memset(x, 0, (size_t)n * sizeof(float));
    return x;
}

elbo_optim *elbo_optim_new(elbo_paramset *ps, const elbo_optim_params *p) {
    if (!ps || !p) {
        elbo_error(ELBO_ERR_ARG, "optim_new: NULL paramset or params");
        return NULL;
    }
    if (!elbo_paramset_data(ps)) {
        elbo_error(ELBO_ERR_STATE, "optim_new: the paramset is not finalized");
        return NULL;
    }
    if (p->kind != ELBO_OPT_ADAM && p->kind != ELBO_OPT_ADAMW && p->kind != ELBO_OPT_SGD) {
        elbo_error(ELBO_ERR_ARG, "optim_new: unknown optimiser kind %d", (int)p->kind);
        return NULL;
    }
    if (p->kind == ELBO_OPT_SGD && p->nesterov && (p->momentum <= 0 || p->dampening != 0)) {
        /* As torch.optim.SGD: Nesterov momentum requires a momentum and zero dampening. */
        elbo_error(ELBO_ERR_ARG, "optim_new: nesterov needs momentum > 0 and dampening 0");
        return NULL;
    }
    if (!(p->weight_decay >= 0) || !(p->momentum >= 0) || !(p->eps >= 0) ||
        !(p->beta1 >= 0 && p->beta1 < 1) || !(p->beta2 >= 0 && p->beta2 < 1)) {
        elbo_error(ELBO_ERR_ARG,
                   "optim_new: invalid hyper-parameter (weight_decay %g, momentum "
                   "%g, eps %g, betas %g %g)",
                   p->weight_decay, p->momentum, p->eps, p->beta1, p->beta2);
        return NULL;
    }
    elbo_optim *o = calloc(1, sizeof *o);
    if (!o) {
        elbo_error(ELBO_ERR_NOMEM, "optim_new: out of memory");
        return NULL;
    }
    o->ps = ps;
    o->p = *p;
    o->n = elbo_paramset_numel(ps);
    int need_m = p->kind != ELBO_OPT_SGD || p->momentum != 0;
    int need_v = p->kind != ELBO_OPT_SGD;
    if ((need_m && !(o->m = zeroed(o->n))) || (need_v && !(o->v = zeroed(o->n)))) {
        elbo_optim_free(o);
        elbo_error(ELBO_ERR_NOMEM, "optim_new: cannot allocate state for %lld parameters",
                   (long long)o->n);
        return NULL;
    }
    return o;
}

void elbo_optim_free(elbo_optim *opt) {
    if (!opt) return;
    free(opt->m);
    free(opt->v);
    free(opt);
}

/* Adam (Kingma & Ba 2015) as torch.optim.Adam 1.13, for step t:
 *   g <- g + wd p                                   (Adam: L2 penalty in the gradient)
 *   p <- p (1 - lr wd)                              (AdamW: decoupled decay, Loshchilov & Hutter)
 *   m <- beta1 m + (1 - beta1) g;   v <- beta2 v + (1 - beta2) g^2
 *   p <- p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps) */
static void adam_step(elbo_optim *o, float lr) {
    const elbo_optim_params *q = &o->p;
    double t = (double)o->steps, b1 = decimal(q->beta1), b2 = decimal(q->beta2);
    double lr_d = decimal(lr);
    double bc1 = 1.0 - pow(b1, t), bc2 = 1.0 - pow(b2, t);
    float neg_step_size = (float)(-lr_d / bc1), bc2_sqrt = (float)sqrt(bc2);
    float beta1 = q->beta1, beta2 = q->beta2, eps = q->eps;
    float one_m_beta1 = (float)(1.0 - b1), one_m_beta2 = (float)(1.0 - b2);
    float l2 = q->kind == ELBO_OPT_ADAM ? q->weight_decay : 0.0f;
    float decay = q->kind == ELBO_OPT_ADAMW ? (float)(1.0 - lr_d * decimal(q->weight_decay)) : 1.0f;
    float *p = elbo_paramset_data(o->ps), *m = o->m, *v = o->v;
    const float *g = elbo_paramset_grad(o->ps);
    int64_t n = o->n;
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) {
            float gi = l2 != 0.0f ? fmaf(p[i], l2, g[i]) : g[i];
            float pi = decay != 1.0f ? p[i] * decay : p[i];
            float mi = fmaf(gi, one_m_beta1, m[i] * beta1);
            float vi = fmaf(one_m_beta2 * gi, gi, v[i] * beta2);
            float denom = sqrtf(vi) / bc2_sqrt + eps;
            m[i] = mi;
            v[i] = vi;
            p[i] = pi + neg_step_size * mi / denom;
        });
}

/* SGD as torch.optim.SGD 1.13:
 *   d <- g + wd p;   b <- d (first step), else b <- mu b + (1 - dampening) d
 *   d <- d + mu b (Nesterov) or d <- b;   p <- p - lr d */
static void sgd_step(elbo_optim *o, float lr) {
    const elbo_optim_params *q = &o->p;
    float wd = q->weight_decay, mu = q->momentum, one_m_damp = (float)(1.0 - decimal(q->dampening));
    float neg_lr = -lr;
    int first = o->steps == 1, nesterov = q->nesterov;
    float *p = elbo_paramset_data(o->ps), *b = o->m;
    const float *g = elbo_paramset_grad(o->ps);
    int64_t n = o->n;
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) {
            float d = wd != 0.0f ? fmaf(p[i], wd, g[i]) : g[i];
            if (b) {
                float bi = first ? d : fmaf(d, one_m_damp, b[i] * mu);
                b[i] = bi;
                d = nesterov ? fmaf(bi, mu, d) : bi;
            }
            p[i] = fmaf(d, neg_lr, p[i]);
        });
}

elbo_status elbo_optim_step(elbo_optim *opt, float lr) {
    if (!opt) return elbo_error(ELBO_ERR_ARG, "optim_step: NULL optimiser");
    opt->steps++;
    if (opt->p.kind == ELBO_OPT_SGD)
        sgd_step(opt, lr);
    else
        adam_step(opt, lr);
    return ELBO_OK;
}

int64_t elbo_optim_steps(const elbo_optim *opt) { return opt ? opt->steps : 0; }

void elbo_optim_set_steps(elbo_optim *opt, int64_t steps) {
    if (opt) opt->steps = steps < 0 ? 0 : steps;
}

float *elbo_optim_state(elbo_optim *opt, int which, int64_t *n) {
    float *s = !opt ? NULL : which == 0 ? opt->m : which == 1 ? opt->v : NULL;
    if (n) *n = s ? opt->n : 0;
    return s;
}

/* ||g||_2 over every gradient; g <- g max_norm / (||g|| + 1e-6) when that factor is < 1. */
float elbo_clip_grad_norm(elbo_paramset *ps, float max_norm) {
    float *g = elbo_paramset_grad(ps);
    int64_t n = elbo_paramset_numel(ps);
    if (!g) return 0.0f;
    float norm = (float)sqrt(elbo__sumsq_f32(g, n));
    float coef = max_norm / (norm + 1e-6f);
    if (coef < 1.0f) {
        ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) g[i] *= coef;);
    }
    return norm;
}

struct elbo_ema {
    float decay;
    int warmup; /* 1: the decay ramps up as in diffusers' EMAModel (elbo_ema_decay_at) */
    int64_t n;
    float *w;
};

elbo_ema *elbo_ema_new(elbo_paramset *ps, float decay) {
    const float *p = elbo_paramset_data(ps);
    if (!p) {
        elbo_error(ELBO_ERR_STATE, "ema_new: the paramset is missing or not finalized");
        return NULL;
    }
    if (!(decay >= 0 && decay <= 1)) {
        elbo_error(ELBO_ERR_ARG, "ema_new: decay %g outside [0, 1]", decay);
        return NULL;
    }
    elbo_ema *e = calloc(1, sizeof *e);
    if (e) {
        e->decay = decay;
        e->n = elbo_paramset_numel(ps);
        e->w = zeroed(e->n);
    }
    if (!e || !e->w) {
        free(e);
        elbo_error(ELBO_ERR_NOMEM, "ema_new: out of memory");
        return NULL;
    }
    memcpy(e->w, p, (size_t)e->n * sizeof(float));
    return e;
}

void elbo_ema_free(elbo_ema *e) {
    if (!e) return;
    free(e->w);
    free(e);
}

void elbo_ema_set_warmup(elbo_ema *e, int on) {
    if (e) e->warmup = on != 0;
}

/* The decay of the n-th update (n >= 1). Without warm-up, the constant decay. With it,
 * diffusers' EMAModel.get_decay (use_ema_warmup off, update_after_step 0): with s = n - 1,
 * 0 at s = 0 (the first update copies the weights), then min(decay, (1 + s) / (10 + s)),
 * so that the EMA forgets the initial weights within the first few hundred steps. */
float elbo_ema_decay_at(const elbo_ema *e, int64_t n) {
    if (!e) return 0.0f;
    if (!e->warmup) return e->decay;
    if (n <= 1) return 0.0f;
    double s = (double)(n - 1), ramp = (1.0 + s) / (10.0 + s);
    return ramp < decimal(e->decay) ? (float)ramp : e->decay;
}

/* ema <- d ema + (1 - d) theta. */
static void ema_mix(elbo_ema *e, const elbo_paramset *ps, float d) {
    const float *theta = elbo_paramset_data((elbo_paramset *)ps);
    float one_m_d = (float)(1.0 - d);
    float *w = e->w;
    int64_t n = e->n;
    ELBO_PARALLEL_FOR(n > ELBO_PAR_MIN,
                      for (int64_t i = 0; i < n; i++) w[i] = d * w[i] + one_m_d * theta[i];);
}

/* The n-th update (n >= 1), with d = elbo_ema_decay_at(e, n). */
void elbo_ema_update_at(elbo_ema *e, const elbo_paramset *ps, int64_t n) {
    if (e && ps) ema_mix(e, ps, elbo_ema_decay_at(e, n));
}

/* ema <- decay ema + (1 - decay) theta, the constant decay whatever the warm-up. */
void elbo_ema_update(elbo_ema *e, const elbo_paramset *ps) {
    if (e && ps) ema_mix(e, ps, e->decay);
}

void elbo_ema_swap(elbo_ema *e, elbo_paramset *ps) {
    if (!e || !ps) return;
    float *theta = elbo_paramset_data(ps), *w = e->w;
    int64_t n = e->n;
    ELBO_PARALLEL_FOR(
        n > ELBO_PAR_MIN, for (int64_t i = 0; i < n; i++) {
            float t = theta[i];
            theta[i] = w[i];
            w[i] = t;
        });
}

float *elbo_ema_data(elbo_ema *e, int64_t *n) {
    if (n) *n = e ? e->n : 0;
    return e ? e->w : NULL;
}

/* See optim.h: warm-up lr = base (step+1)/warmup, then
 * lr = min + (base - min) (1 + cos(pi (step - warmup) / (total - warmup))) / 2. */
float elbo_lr_at(const elbo_lr_schedule *s, int64_t step) {
    if (step < 0) step = 0;
    if (step < s->warmup_steps)
        return (float)((double)s->base_lr * (double)(step + 1) / (double)s->warmup_steps);
    if (s->total_steps <= s->warmup_steps) return s->base_lr;
    if (step >= s->total_steps) return s->min_lr;
    double progress = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    return (float)(s->min_lr +
                   0.5 * ((double)s->base_lr - s->min_lr) * (1.0 + cos(M_PI * progress)));
}
