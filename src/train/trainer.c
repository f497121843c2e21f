/* The one training loop of elbo (include/elbo/train.h): any elbo_model, Adam (or another
 * optimiser), gradient clipping, EMA, warm-up + cosine learning rate, checkpoints that
 * resume bit for bit, progress and a CSV loss log, and a clean stop on SIGINT/SIGTERM.
 * Everything is allocated before the first step; a steady-state step only resets the step
 * arena and reuses its buffers. */
#include "internal.h"

#include "elbo/train.h"
#include "io/json.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* Set by the signal handler (and elbo_train_request_stop); read after every step. */
static volatile sig_atomic_t g_stop = 0;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1;
}

void elbo_train_request_stop(void) { g_stop = 1; }

void elbo_train_params_init(elbo_train_params *p) {
    memset(p, 0, sizeof *p);
    p->steps = 1000;
    p->batch = 128;
    p->seed = 0;
    p->threads = 0;
    elbo_optim_params_init(&p->optim, ELBO_OPT_ADAM);
    p->lr = 1e-3f;
    p->warmup_steps = 0;
    p->cosine = 0;
    p->min_lr = 0.0f;
    p->grad_clip = 0.0f;
    p->ema_decay = 0.0f;
    p->ema_warmup = 0;
    p->log_every = 100;
    p->ckpt_every = 1000;
    p->out_dir = NULL;
    p->resume = NULL;
    p->progress = stderr;
    p->tty = -1;
    p->plot = 1;
    p->handle_signals = 1;
    p->flush_denormals = 1;
}

/* The data-order RNG of epoch e: seed_e = w0 | w1 << 32, w = Philox(seed, 2^63 + e). */
static void epoch_rng(uint64_t seed, int64_t e, elbo_rng *r) {
    uint32_t w[4];
    elbo_philox4x32(seed, ((uint64_t)1 << 63) + (uint64_t)e, w);
    elbo_rng_init(r, (uint64_t)w[0] | (uint64_t)w[1] << 32);
}

/* The checkpoint's config: the model's JSON object with a "train" member appended,
 * {...,"train":{"seed":S,"batch":B}} (what a bit-exact resume needs to be the same). */
static char *checkpoint_config(const elbo_model *m, const elbo_train_params *p) {
    size_t n = strlen(m->config);
    char *s = malloc(n + 96);
    if (!s) return NULL;
    memcpy(s, m->config, n);
    /* m->config is an object: drop its final '}' ("{}" keeps no member, so no comma) */
    while (n > 0 && s[n - 1] != '}') n--;
    if (n > 0) n--;
    int empty = n == 1;
    snprintf(s + n, 96, "%s\"train\":{\"seed\":%llu,\"batch\":%d}}", empty ? "" : ",",
             (unsigned long long)p->seed, p->batch);
    return s;
}

/* Checks that checkpoint `path` belongs to this model, configuration, seed and batch. */
static elbo_status check_resume(const char *path, const elbo_model *m,
                                const elbo_train_params *p, const char *want_config) {
    elbo_checkpoint_info info;
    elbo_status st = elbo_checkpoint_read_info(path, &info);
    if (st != ELBO_OK) return st;
    if (strcmp(info.model, m->name)) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: a checkpoint of model \"%s\", not \"%s\"", path,
                        info.model, m->name);
        goto done;
    }
    /* the model part: everything before ,"train": must be the model's own config */
    const char *t = strstr(want_config, "\"train\":");
    size_t model_len = (size_t)(t - want_config);
    if (strncmp(info.config, want_config, model_len) || strncmp(info.config + model_len, "\"train\":", 8)) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: trained with another configuration (%s), not %s",
                        path, info.config, m->config);
        goto done;
    }
    elbo__json o;
    char err[160];
    if (elbo__json_parse(info.config, strlen(info.config), &o, err, sizeof err) != 0) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s: config: %s", path, err);
        goto done;
    }
    const elbo__json *tr = elbo__json_get(&o, "train");
    const elbo__json *seed = elbo__json_get(tr, "seed"), *batch = elbo__json_get(tr, "batch");
    if (!seed || !seed->is_uint || !batch || !batch->is_uint)
        st = elbo_error(ELBO_ERR_FORMAT, "%s: config has no train.seed and train.batch", path);
    else if (seed->u != p->seed)
        st = elbo_error(ELBO_ERR_ARG, "%s: trained with seed %llu, not %llu (the data order "
                        "would differ)", path, (unsigned long long)seed->u,
                        (unsigned long long)p->seed);
    else if (batch->u != (uint64_t)p->batch)
        st = elbo_error(ELBO_ERR_ARG, "%s: trained with batch %llu, not %d", path,
                        (unsigned long long)batch->u, p->batch);
    else if (info.step > p->steps)
        st = elbo_error(ELBO_ERR_ARG, "%s: already at step %lld, past --steps %lld", path,
                        (long long)info.step, (long long)p->steps);
    elbo__json_free(&o);
done:
    elbo_checkpoint_info_free(&info);
    return st;
}

/* mkdir -p of dir (one level at a time). */
static elbo_status make_dirs(const char *dir) {
    char buf[4096];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof buf) return elbo_error(ELBO_ERR_ARG, "out dir \"%s\": bad path", dir);
    memcpy(buf, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char c = buf[i];
        buf[i] = '\0';
        if (mkdir(buf, 0777) != 0 && errno != EEXIST)
            return elbo_error(ELBO_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
        buf[i] = c;
    }
    struct stat sb;
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return elbo_error(ELBO_ERR_IO, "%s: not a directory", dir);
    return ELBO_OK;
}

static elbo_status save(const char *path, elbo_model *m, elbo_optim *opt, elbo_ema *ema,
                        int64_t step, const elbo_rng *rng, const char *config) {
    elbo_checkpoint ck = {0};
    ck.params = m->ps;
    ck.optim = opt;
    ck.ema = ema;
    ck.step = step;
    ck.rng = *rng;
    ck.model = m->name;
    ck.config = config;
    return elbo_checkpoint_save(path, &ck);
}

elbo_status elbo_train(elbo_model *m, const elbo_dataset *ds, const elbo_train_params *p,
                       elbo_train_result *r) {
    memset(r, 0, sizeof *r);
    if (!m || !m->ps || !m->loss || !ds || !p) return elbo_error(ELBO_ERR_ARG, "train: NULL argument");
    if (p->steps < 1) return elbo_error(ELBO_ERR_ARG, "train: steps %lld must be >= 1", (long long)p->steps);
    if (p->batch < 1) return elbo_error(ELBO_ERR_ARG, "train: batch %d must be >= 1", p->batch);
    if (!(p->lr > 0) || !isfinite(p->lr)) return elbo_error(ELBO_ERR_ARG, "train: lr %g must be > 0", p->lr);
    if (!(p->grad_clip >= 0)) return elbo_error(ELBO_ERR_ARG, "train: grad_clip %g must be >= 0", p->grad_clip);
    if (!(p->ema_decay >= 0 && p->ema_decay < 1))
        return elbo_error(ELBO_ERR_ARG, "train: ema_decay %g must be in [0, 1)", p->ema_decay);
    if (p->log_every < 1 || p->ckpt_every < 0 || p->warmup_steps < 0)
        return elbo_error(ELBO_ERR_ARG, "train: log_every must be >= 1, ckpt_every and warmup >= 0");
    if (!p->out_dir || !*p->out_dir) return elbo_error(ELBO_ERR_ARG, "train: no output directory");
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return elbo_error(ELBO_ERR_SHAPE,
                          "train: the data's images are (%lld, %lld, %lld), the model's (%lld, %lld, %lld)",
                          (long long)ds->c, (long long)ds->h, (long long)ds->w, (long long)m->c,
                          (long long)m->h, (long long)m->w);
    if (ds->n < p->batch)
        return elbo_error(ELBO_ERR_ARG, "train: batch %d is larger than the dataset (%lld items)",
                          p->batch, (long long)ds->n);
    if (p->threads > 0) elbo_set_threads(p->threads);
    /* after the thread count, so that the whole pool flushes; restored at the end */
    int flushed_before = elbo_get_flush_denormals();
    if (p->flush_denormals) (void)elbo_set_flush_denormals(1); /* ignored off x86 */

    char ckpt_path[4096], csv_path[4096], png_path[4096];
    if (snprintf(ckpt_path, sizeof ckpt_path, "%s/ckpt.safetensors", p->out_dir) >= (int)sizeof ckpt_path ||
        snprintf(csv_path, sizeof csv_path, "%s/loss.csv", p->out_dir) >= (int)sizeof csv_path ||
        snprintf(png_path, sizeof png_path, "%s/loss.png", p->out_dir) >= (int)sizeof png_path)
        return elbo_error(ELBO_ERR_ARG, "train: output directory name too long");

    const int64_t B = p->batch, x_dim = m->c * m->h * m->w, spe = ds->n / B;
    elbo_status st = ELBO_OK;
    elbo_optim_params op = p->optim;
    op.lr = p->lr;
    char *config = checkpoint_config(m, p);
    elbo_optim *opt = elbo_optim_new(m->ps, &op);
    elbo_ema *ema = p->ema_decay > 0 ? elbo_ema_new(m->ps, p->ema_decay) : NULL;
    elbo_ema_set_warmup(ema, p->ema_warmup);
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t *perm = malloc((size_t)ds->n * sizeof *perm);
    float *x = malloc((size_t)(B * x_dim) * sizeof *x);
    int32_t *labels = ds->labels ? malloc((size_t)B * sizeof *labels) : NULL;
    elbo_progress *prog = NULL;
    struct sigaction old_int, old_term;
    int signals_set = 0;
    if (!config || !opt || (p->ema_decay > 0 && !ema) || !ctx || !perm || !x ||
        (ds->labels && !labels)) {
        st = elbo_last_status() ? elbo_last_status() : ELBO_ERR_NOMEM;
        if (st == ELBO_OK || !*elbo_last_error()) st = elbo_error(ELBO_ERR_NOMEM, "train: out of memory");
        goto done;
    }

    /* ---- resume: validated and loaded before anything is written ---- */
    elbo_rng rng;
    elbo_rng_init(&rng, p->seed);
    int64_t step = 0;
    if (p->resume && *p->resume) {
        if ((st = check_resume(p->resume, m, p, config)) != ELBO_OK) goto done;
        elbo_checkpoint ck = {0};
        ck.params = m->ps;
        ck.optim = opt;
        ck.ema = ema;
        ck.model = m->name;
        if ((st = elbo_checkpoint_load(p->resume, &ck)) != ELBO_OK) goto done;
        step = ck.step;
        rng = ck.rng;
    }
    r->start_step = r->step = step;
    if ((st = make_dirs(p->out_dir)) != ELBO_OK) goto done;

    elbo_progress_opts po;
    elbo_progress_opts_default(&po);
    po.out = p->progress;
    po.tty = p->tty;
    po.total = p->steps;
    po.start_step = step;
    po.log_every = p->log_every;
    po.csv_path = csv_path;
    po.csv_append = step > 0;
    po.columns = m->extra_names;
    po.n_columns = m->n_extra;
    if ((st = elbo_progress_create(&po, &prog)) != ELBO_OK) goto done;

    g_stop = 0;
    if (p->handle_signals) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, &old_int);
        sigaction(SIGTERM, &sa, &old_term);
        signals_set = 1;
    }

    elbo_lr_schedule sched = {p->lr, p->min_lr, p->warmup_steps, p->cosine ? p->steps : 0};
    double extra[ELBO_MODEL_MAX_FIGURES] = {0};
    int64_t epoch = -1;
    const double t0 = elbo__now_s();
    int64_t saved = step;
    /* ---- the loop: step s takes batch s mod spe of epoch s / spe ---- */
    for (int64_t s = step; s < p->steps; s++) {
        if (s / spe != epoch) {
            epoch = s / spe;
            elbo_rng er;
            epoch_rng(p->seed, epoch, &er);
            if ((st = elbo_shuffle(&er, perm, ds->n)) != ELBO_OK) break;
        }
        elbo_ctx_reset(ctx);
        st = elbo_dataset_batch(ds, perm + (s % spe) * B, B, m->transform, 0, &rng, x, labels);
        if (st != ELBO_OK) break;
        elbo_paramset_zero_grad(m->ps);
        m->step = s;
        elbo_tensor *loss = m->loss(ctx, m, x, labels, B, &rng, extra);
        if (!loss) {
            st = elbo_last_status() ? elbo_last_status() : ELBO_ERR_STATE;
            break;
        }
        const double lv = loss->data[0];
        if (!isfinite(lv)) {
            st = elbo_error(ELBO_ERR_STATE, "train: the loss is %g at step %lld (the last "
                            "checkpoint is at step %lld)", lv, (long long)(s + 1), (long long)saved);
            break;
        }
        if ((st = elbo_backward(ctx, loss)) != ELBO_OK) break;
        if (m->after_backward && (st = m->after_backward(m)) != ELBO_OK) break;
        if (p->grad_clip > 0) elbo_clip_grad_norm(m->ps, p->grad_clip);
        if ((st = elbo_optim_step(opt, elbo_lr_at(&sched, s))) != ELBO_OK) break;
        if (ema) elbo_ema_update_at(ema, m->ps, s + 1);
        r->step = s + 1;
        r->loss = lv;
        if ((st = elbo_progress_step(prog, s + 1, lv, extra)) != ELBO_OK) break;
        if (p->on_step && p->on_step(s + 1, lv, p->on_step_user)) g_stop = 1;
        if (g_stop) {
            r->interrupted = 1;
            break;
        }
        if (p->ckpt_every > 0 && (s + 1) % p->ckpt_every == 0 && s + 1 < p->steps) {
            if ((st = save(ckpt_path, m, opt, ema, s + 1, &rng, config)) != ELBO_OK) break;
            saved = s + 1;
        }
    }
    r->seconds = elbo__now_s() - t0;
    if (st == ELBO_OK && r->step > saved) st = save(ckpt_path, m, opt, ema, r->step, &rng, config);
    if (st == ELBO_OK) snprintf(r->ckpt_path, sizeof r->ckpt_path, "%s", ckpt_path);
    {
        elbo_status fst = elbo_progress_finish(prog);
        if (st == ELBO_OK) st = fst;
    }
    if (st == ELBO_OK && p->plot && r->step > 0)
        st = elbo_plot_loss_csv(csv_path, png_path, "loss", NULL);

done:
    if (p->flush_denormals) (void)elbo_set_flush_denormals(flushed_before);
    if (signals_set) {
        sigaction(SIGINT, &old_int, NULL);
        sigaction(SIGTERM, &old_term, NULL);
    }
    elbo_progress_free(prog);
    free(config);
    elbo_optim_free(opt);
    elbo_ema_free(ema);
    elbo_ctx_free(ctx);
    free(perm);
    free(x);
    free(labels);
    return st;
}

/* Mean over ds of m's n_eval figures; batches of `batch` items in the dataset's order. */
elbo_status elbo_evaluate(elbo_model *m, const elbo_dataset *ds, int batch, uint64_t seed,
                          double *means) {
    if (!m || !m->eval || !ds || !means || batch < 1)
        return elbo_error(ELBO_ERR_ARG, "evaluate: bad argument");
    if (ds->c != m->c || ds->h != m->h || ds->w != m->w)
        return elbo_error(ELBO_ERR_SHAPE,
                          "evaluate: the data's images are (%lld, %lld, %lld), the model's (%lld, %lld, %lld)",
                          (long long)ds->c, (long long)ds->h, (long long)ds->w, (long long)m->c,
                          (long long)m->h, (long long)m->w);
    if (ds->n < 1) return elbo_error(ELBO_ERR_ARG, "evaluate: empty dataset");
    const int64_t x_dim = m->c * m->h * m->w, B = batch < ds->n ? batch : ds->n;
    double sums[ELBO_MODEL_MAX_FIGURES] = {0};
    elbo_ctx *ctx = elbo_ctx_new(0);
    int64_t *idx = malloc((size_t)B * sizeof *idx);
    float *x = malloc((size_t)(B * x_dim) * sizeof *x);
    int32_t *labels = ds->labels ? malloc((size_t)B * sizeof *labels) : NULL;
    elbo_status st = ELBO_OK;
    if (!ctx || !idx || !x || (ds->labels && !labels)) st = elbo_error(ELBO_ERR_NOMEM, "evaluate: out of memory");
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    int training = ctx ? elbo_ctx_set_training(ctx, 0) : 0;
    (void)training;
    if (st == ELBO_OK && m->eval_begin) st = m->eval_begin(m);
    for (int64_t i0 = 0; st == ELBO_OK && i0 < ds->n; i0 += B) {
        int64_t b = ds->n - i0 < B ? ds->n - i0 : B;
        for (int64_t k = 0; k < b; k++) idx[k] = i0 + k;
        elbo_ctx_reset(ctx);
        st = elbo_dataset_batch(ds, idx, b, m->transform, 0, &rng, x, labels);
        if (st == ELBO_OK) st = m->eval(ctx, m, x, labels, b, &rng, sums);
    }
    if (st == ELBO_OK)
        for (int i = 0; i < m->n_eval; i++) means[i] = sums[i] / (double)ds->n;
    if (st == ELBO_OK && m->eval_end) st = m->eval_end(m, ds->n, means);
    elbo_ctx_free(ctx);
    free(idx);
    free(x);
    free(labels);
    return st;
}
