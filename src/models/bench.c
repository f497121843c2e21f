/* `elbo bench`: times the benchmark models of bench-models.md with their real losses, the
 * same way bench/bench_torch.py times PyTorch. Data, model, optimiser and context are set up
 * first; a training step is then ctx reset, zero grads, forward loss, backward, Adam step
 * (lr 1e-3), and allocates nothing once the arena has grown (after the warm-up). step_ms and
 * forward_ms are medians over the timed repetitions; FLOPs are counted analytically. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#define DDPM_T 1000

void elbo_bench_params_init(elbo_bench_params *p) {
    memset(p, 0, sizeof *p);
    p->warmup = -1;
}

/* The current error status, or ELBO_ERR_NOMEM when a constructor failed without one. */
static elbo_status failed(void) {
    elbo_status st = elbo_last_status();
    return st != ELBO_OK ? st : ELBO_ERR_NOMEM;
}

static double now_ms(void) { return 1e3 * elbo__now_s(); }

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* 2 B (in out) per Linear of the encoder and decoder. */
static double vae_forward_flops(int B, int x_dim, int hidden, int z_dim) {
    double mm = (double)x_dim * hidden + (double)hidden * hidden + (double)hidden * 2 * z_dim;
    mm += (double)z_dim * hidden + (double)hidden * hidden + (double)hidden * x_dim;
    return 2.0 * B * mm;
}

/* 2 B OH OW OC C K K per convolution, 2 B in out per Linear, 2 B HW HW C for each of the two
 * attention products (as unet_forward_flops in tools/torch_models.py); norms, activations
 * and the softmax are not counted. */
static double conv_flops(int B, int ci, int co, int k, int64_t hw) {
    return 2.0 * B * (double)hw * co * ci * k * k;
}
static double res_flops(int B, int ci, int co, int td, int64_t hw) {
    double f = conv_flops(B, ci, co, 3, hw) + conv_flops(B, co, co, 3, hw) + 2.0 * B * td * co;
    return f + (ci != co ? conv_flops(B, ci, co, 1, hw) : 0.0);
}
static double attn_flops(int B, int c, int64_t hw) {
    return conv_flops(B, c, 3 * c, 1, hw) + conv_flops(B, c, c, 1, hw) +
           4.0 * B * (double)hw * hw * c;
}
static double unet_forward_flops(const elbo_unet_params *p, int B, int H, int W) {
    const int L = p->n_levels, nb = p->blocks_per_level, td = p->temb_dim;
    const int *ch = p->channels;
    int64_t hw[ELBO_UNET_MAX_LEVELS] = {0};
    double f = 2.0 * B * td * td * 2 + conv_flops(B, p->in_channels, ch[0], 3, (int64_t)H * W);
    int c = ch[0], h = H, w = W;
    for (int l = 0; l < L; l++) {
        if (l > 0) {
            h = (h + 1) / 2;
            w = (w + 1) / 2;
            f += conv_flops(B, c, c, 3, (int64_t)h * w);
        }
        hw[l] = (int64_t)h * w;
        for (int j = 0; j < nb; j++) {
            f += res_flops(B, j == 0 ? c : ch[l], ch[l], td, hw[l]);
            if (p->attn[l]) f += attn_flops(B, ch[l], hw[l]);
        }
        c = ch[l];
    }
    f += res_flops(B, c, c, td, hw[L - 1]);
    for (int l = L - 1; l >= 0; l--) {
        int co = l > 0 ? ch[l - 1] : ch[0];
        for (int j = 0; j < nb; j++) {
            f += res_flops(B, j == 0 ? c + ch[l] : co, co, td, hw[l]);
            if (p->attn[l] == 2) f += attn_flops(B, co, hw[l]);
        }
        c = co;
    }
    return f + conv_flops(B, ch[0], p->out_channels, 3, (int64_t)H * W);
}

/* One benchmark: the model behind a step and a no-grad forward. */
typedef struct {
    elbo_ctx *ctx;
    elbo_paramset *ps;
    elbo_optim *opt;
    elbo_rng rng;
    int B;
    /* vae-mlp */
    elbo_vae_mlp vae;
    float *x, *eps;
    /* unet-s */
    elbo_unet *unet;
    float *alpha_bar, *tf;
    int32_t *t;
    int64_t x_shape[4], eps_shape[4];
    int is_unet;
} bench;

/* ctx reset, zero grads, forward loss, backward, Adam step. */
static elbo_status train_step(bench *b) {
    elbo_ctx_reset(b->ctx);
    elbo_paramset_zero_grad(b->ps);
    elbo_tensor *loss;
    if (b->is_unet) {
        for (int i = 0; i < b->B; i++) b->t[i] = (int32_t)elbo_rng_below(&b->rng, DDPM_T);
        elbo_rng_normal(&b->rng, b->eps, (size_t)elbo_shape_numel(4, b->eps_shape), 0.0f, 1.0f);
        elbo_tensor *x0 = elbo_tensor_wrap(b->ctx, b->x, 4, b->x_shape);
        elbo_tensor *eps = elbo_tensor_wrap(b->ctx, b->eps, 4, b->eps_shape);
        loss = elbo_ddpm_eps_loss(b->ctx, b->unet, x0, b->t, eps, b->alpha_bar);
    } else {
        elbo_rng_normal(&b->rng, b->eps, (size_t)elbo_shape_numel(2, b->eps_shape), 0.0f, 1.0f);
        elbo_tensor *x = elbo_tensor_wrap(b->ctx, b->x, 2, b->x_shape);
        elbo_tensor *eps = elbo_tensor_wrap(b->ctx, b->eps, 2, b->eps_shape);
        loss = elbo_vae_mlp_loss(b->ctx, &b->vae, x, eps);
    }
    if (!loss) return failed();
    if (!isfinite(loss->data[0]))
        return elbo_error(ELBO_ERR_STATE, "benchmark loss is not finite (%g)",
                          (double)loss->data[0]);
    elbo_status st = elbo_backward(b->ctx, loss);
    if (st != ELBO_OK) return st;
    return elbo_optim_step(b->opt, 1e-3f);
}

/* vae-mlp: the loss without gradients; unet-s: the eps prediction without gradients. */
static elbo_status forward_nograd(bench *b) {
    elbo_ctx_reset(b->ctx);
    int prev = elbo_ctx_set_grad(b->ctx, 0);
    elbo_tensor *y;
    if (b->is_unet) {
        elbo_tensor *x = elbo_tensor_wrap(b->ctx, b->x, 4, b->x_shape);
        y = elbo_unet_forward(b->ctx, b->unet, x, b->tf);
    } else {
        elbo_tensor *x = elbo_tensor_wrap(b->ctx, b->x, 2, b->x_shape);
        elbo_tensor *eps = elbo_tensor_wrap(b->ctx, b->eps, 2, b->eps_shape);
        y = elbo_vae_mlp_loss(b->ctx, &b->vae, x, eps);
    }
    elbo_ctx_set_grad(b->ctx, prev);
    return y ? ELBO_OK : failed();
}

static void bench_free(bench *b) {
    if (b->opt) elbo_optim_free(b->opt);
    if (b->is_unet) {
        elbo_unet_free(b->unet);
        if (b->ps) elbo_paramset_free(b->ps);
    } else {
        elbo_vae_mlp_free(&b->vae);
    }
    elbo_ctx_free(b->ctx);
    free(b->x);
    free(b->eps);
    free(b->alpha_bar);
    free(b->tf);
    free(b->t);
}

elbo_status elbo_bench_run(const elbo_bench_params *p, elbo_bench_result *r) {
    if (!p || !r || !p->model)
        return elbo_error(ELBO_ERR_ARG, "elbo_bench_run: NULL params, result or model");
    memset(r, 0, sizeof *r);
    bench b;
    memset(&b, 0, sizeof b);
    int steps, warmup;
    double fwd_flops;
    if (!strcmp(p->model, "vae-mlp")) {
        b.B = p->batch > 0 ? p->batch : 128;
        steps = p->steps > 0 ? p->steps : 20;
        warmup = p->warmup >= 0 ? p->warmup : 3;
    } else if (!strcmp(p->model, "unet-s")) {
        b.is_unet = 1;
        b.B = p->batch > 0 ? p->batch : 64;
        steps = p->steps > 0 ? p->steps : 5;
        warmup = p->warmup >= 0 ? p->warmup : 2;
    } else {
        return elbo_error(ELBO_ERR_ARG, "unknown benchmark model '%s' (vae-mlp | unet-s)",
                          p->model);
    }
    if (p->threads > 0) elbo_set_threads(p->threads);
    r->threads = elbo_get_threads();
    r->batch = b.B;
    elbo_rng_init(&b.rng, p->seed ^ 0x62656e6368ULL); /* data stream, apart from the weights' */

    elbo_status st = ELBO_OK;
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    op.lr = 1e-3f;
    if (b.is_unet) {
        elbo_unet_params up;
        elbo_unet_params_init(&up);
        const int H = 28, W = 28;
        b.ps = elbo_paramset_new();
        b.unet = b.ps ? elbo_unet_new(b.ps, "", &up) : NULL;
        if (!b.unet || elbo_paramset_finalize(b.ps, p->seed) != ELBO_OK) st = failed();
        int64_t s[4] = {b.B, up.in_channels, H, W};
        memcpy(b.x_shape, s, sizeof s);
        memcpy(b.eps_shape, s, sizeof s);
        size_t n = (size_t)elbo_shape_numel(4, s);
        b.x = malloc(n * sizeof(float));
        b.eps = malloc(n * sizeof(float));
        b.alpha_bar = malloc(DDPM_T * sizeof(float));
        b.t = malloc((size_t)b.B * sizeof(int32_t));
        b.tf = malloc((size_t)b.B * sizeof(float));
        if (st == ELBO_OK && (!b.x || !b.eps || !b.alpha_bar || !b.t || !b.tf))
            st = elbo_error(ELBO_ERR_NOMEM, "benchmark: out of memory");
        if (st == ELBO_OK) {
            elbo_rng_uniform(&b.rng, b.x, n, -1.0f, 1.0f);
            elbo_ddpm_alpha_bar_linear(b.alpha_bar, DDPM_T, 1e-4, 0.02);
            for (int i = 0; i < b.B; i++) b.tf[i] = (float)elbo_rng_below(&b.rng, DDPM_T);
        }
        fwd_flops = unet_forward_flops(&up, b.B, H, W);
    } else {
        const int x_dim = 784, hidden = 512, z_dim = 32;
        st = elbo_vae_mlp_init(&b.vae, x_dim, hidden, z_dim, p->seed);
        b.ps = b.vae.ps;
        b.x_shape[0] = b.B;
        b.x_shape[1] = x_dim;
        b.eps_shape[0] = b.B;
        b.eps_shape[1] = z_dim;
        b.x = malloc((size_t)b.B * x_dim * sizeof(float));
        b.eps = malloc((size_t)b.B * z_dim * sizeof(float));
        if (st == ELBO_OK && (!b.x || !b.eps))
            st = elbo_error(ELBO_ERR_NOMEM, "benchmark: out of memory");
        if (st == ELBO_OK) elbo_rng_uniform(&b.rng, b.x, (size_t)b.B * x_dim, 0.0f, 1.0f);
        fwd_flops = vae_forward_flops(b.B, x_dim, hidden, z_dim);
    }
    double *times = malloc((size_t)steps * sizeof(double));
    if (st == ELBO_OK && !times) st = elbo_error(ELBO_ERR_NOMEM, "benchmark: out of memory");
    if (st == ELBO_OK) {
        b.opt = elbo_optim_new(b.ps, &op);
        b.ctx = elbo_ctx_new(0);
        if (!b.opt || !b.ctx) st = failed();
    }
    for (int i = 0; st == ELBO_OK && i < warmup + steps; i++) {
        if (p->profile && i == warmup) st = elbo_ctx_set_profile(b.ctx, 1);
        if (st != ELBO_OK) break;
        double t0 = now_ms();
        st = train_step(&b);
        if (i >= warmup) times[i - warmup] = now_ms() - t0;
    }
    if (st == ELBO_OK) r->step_ms = median(times, steps);
    if (st == ELBO_OK && p->profile) {
        elbo_ctx_profile_format(b.ctx, steps, p->profile, p->profile_len);
        elbo_ctx_set_profile(b.ctx, 0);
    }
    for (int i = 0; st == ELBO_OK && i < warmup + steps; i++) {
        double t0 = now_ms();
        st = forward_nograd(&b);
        if (i >= warmup) times[i - warmup] = now_ms() - t0;
    }
    if (st == ELBO_OK) {
        r->forward_ms = median(times, steps);
        r->gflops = 3.0 * fwd_flops / (r->step_ms * 1e6);
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        r->peak_rss_mb = ru.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
    }
    free(times);
    bench_free(&b);
    return st;
}
