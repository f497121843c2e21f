/* elbo optim: optimisers over a paramset's flat blocks, gradient clipping, EMA of weights
 * and learning-rate schedules. All state is allocated when the object is created; a step
 * allocates nothing and gives the same bits for any thread count. */
#ifndef ELBO_OPTIM_H
#define ELBO_OPTIM_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { ELBO_OPT_ADAM, ELBO_OPT_ADAMW, ELBO_OPT_SGD } elbo_opt_kind;

/* Defaults as torch.optim: Adam lr 1e-3, betas (0.9, 0.999), eps 1e-8, weight_decay 0
 * (L2 added to the gradient); AdamW the same with decoupled weight_decay 1e-2; SGD lr 1e-2,
 * momentum 0, dampening 0, nesterov off. */
typedef struct {
    elbo_opt_kind kind;
    float lr, beta1, beta2, eps, weight_decay;
    float momentum, dampening;
    int nesterov;
} elbo_optim_params;
void elbo_optim_params_init(elbo_optim_params *p, elbo_opt_kind kind);

typedef struct elbo_optim elbo_optim;
elbo_optim *elbo_optim_new(elbo_paramset *ps, const elbo_optim_params *p);
void elbo_optim_free(elbo_optim *opt);
/* One update from the gradients in ps, with learning rate lr (from a schedule). */
elbo_status elbo_optim_step(elbo_optim *opt, float lr);
int64_t elbo_optim_steps(const elbo_optim *opt);
/* State buffers for checkpoints: which = 0 (Adam m / SGD momentum), 1 (Adam v); NULL if the
 * optimiser has no such buffer. *n receives the length. */
float *elbo_optim_state(elbo_optim *opt, int which, int64_t *n);
void elbo_optim_set_steps(elbo_optim *opt, int64_t steps);

/* torch.nn.utils.clip_grad_norm_: scales all gradients by max_norm / (norm + 1e-6) when the
 * global L2 norm exceeds max_norm; returns the norm before clipping. */
float elbo_clip_grad_norm(elbo_paramset *ps, float max_norm);

/* Exponential moving average of the weights: ema = decay ema + (1 - decay) theta. */
typedef struct elbo_ema elbo_ema;
elbo_ema *elbo_ema_new(elbo_paramset *ps, float decay);
void elbo_ema_free(elbo_ema *e);
void elbo_ema_update(elbo_ema *e, const elbo_paramset *ps);
/* Warm-up of the decay (off by default), as diffusers' EMAModel: the n-th update (n >= 1)
 * uses 0 for n = 1 (a copy of the weights), then min(decay, n / (n + 9)). Without it, an
 * EMA started at the initial weights keeps decay^n of them after n updates (0.9995^4000 =
 * 0.14), which spoils the EMA of a run short against 1 / (1 - decay). */
void elbo_ema_set_warmup(elbo_ema *e, int on);
float elbo_ema_decay_at(const elbo_ema *e, int64_t n);
void elbo_ema_update_at(elbo_ema *e, const elbo_paramset *ps, int64_t n);
/* Exchanges the live weights and the EMA weights (call twice to restore). */
void elbo_ema_swap(elbo_ema *e, elbo_paramset *ps);
float *elbo_ema_data(elbo_ema *e, int64_t *n);

/* Linear warm-up from 0 to base_lr over warmup_steps, then cosine decay to min_lr at
 * total_steps (constant base_lr after warm-up when total_steps <= warmup_steps). For step
 * s = 0, 1, ... (the number of updates done before this one), W = warmup_steps,
 * T = total_steps:
 *   s < W:        lr = base_lr (s + 1) / W          (step 0 already moves; s = W-1 gives base_lr)
 *   W <= s < T:   lr = min_lr + (base_lr - min_lr) (1 + cos(pi (s - W) / (T - W))) / 2
 *   s >= T:       lr = min_lr    (base_lr when T <= W) */
typedef struct {
    float base_lr, min_lr;
    int64_t warmup_steps, total_steps;
} elbo_lr_schedule;
float elbo_lr_at(const elbo_lr_schedule *s, int64_t step);

#ifdef __cplusplus
}
#endif
#endif
