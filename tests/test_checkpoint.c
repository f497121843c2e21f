/* Training checkpoints: a resumed vae-mlp run is bit-identical to an uninterrupted one (and
 * would not be without the saved RNG state), every field round-trips, the metadata reader,
 * and every kind of bad file fails with a one-line message naming it, changing nothing. */
#include "test.h"

#include "elbo/checkpoint.h"

#include <ftw.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers -------------------------------------------------------------------------- */
static int make_dir(char *dir, size_t len) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, len, "%s/elbo_ck_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(dir) != NULL;
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void remove_dir(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* A vae-mlp with Adam and an EMA, fixed data, and the training RNG that draws the
 * reparameterisation noise eps of every step. */
typedef struct {
    elbo_vae_mlp vae;
    elbo_optim *opt;
    elbo_ema *ema;
    elbo_ctx *ctx;
    elbo_rng rng; /* per-step noise; saved in the checkpoint */
    float *x, *eps;
    int64_t x_shape[2], eps_shape[2];
} trainer;

static void trainer_free(trainer *tr) {
    elbo_optim_free(tr->opt);
    elbo_ema_free(tr->ema);
    elbo_ctx_free(tr->ctx);
    elbo_vae_mlp_free(&tr->vae);
    free(tr->x);
    free(tr->eps);
    memset(tr, 0, sizeof *tr);
}

/* x_dim, hidden, z_dim; init_seed for the weights; the data always from seed 77 and the
 * training RNG from seed 5 at offset 0. */
static int trainer_init(trainer *tr, int x_dim, int hidden, int z_dim, int B, uint64_t init_seed) {
    memset(tr, 0, sizeof *tr);
    if (elbo_vae_mlp_init(&tr->vae, x_dim, hidden, z_dim, init_seed) != ELBO_OK) return 0;
    tr->x_shape[0] = tr->eps_shape[0] = B;
    tr->x_shape[1] = x_dim;
    tr->eps_shape[1] = z_dim;
    tr->x = malloc((size_t)B * (size_t)x_dim * sizeof(float));
    tr->eps = malloc((size_t)B * (size_t)z_dim * sizeof(float));
    if (!tr->x || !tr->eps) return 0;
    elbo_rng data;
    elbo_rng_init(&data, 77);
    elbo_rng_uniform(&data, tr->x, (size_t)B * (size_t)x_dim, 0.0f, 1.0f);
    elbo_rng_init(&tr->rng, 5);
    elbo_optim_params op;
    elbo_optim_params_init(&op, ELBO_OPT_ADAM);
    tr->opt = elbo_optim_new(tr->vae.ps, &op);
    tr->ema = elbo_ema_new(tr->vae.ps, 0.9f);
    tr->ctx = elbo_ctx_new(0);
    return tr->opt && tr->ema && tr->ctx;
}

/* ctx reset, zero grads, eps ~ N(0, I) from tr->rng, -ELBO, backward, Adam (lr 1e-3), EMA. */
static int trainer_step(trainer *tr) {
    elbo_ctx_reset(tr->ctx);
    elbo_paramset_zero_grad(tr->vae.ps);
    elbo_rng_normal(&tr->rng, tr->eps, (size_t)elbo_shape_numel(2, tr->eps_shape), 0.0f, 1.0f);
    elbo_tensor *x = elbo_tensor_wrap(tr->ctx, tr->x, 2, tr->x_shape);
    elbo_tensor *eps = elbo_tensor_wrap(tr->ctx, tr->eps, 2, tr->eps_shape);
    elbo_tensor *loss = elbo_vae_mlp_loss(tr->ctx, &tr->vae, x, eps);
    if (!loss || elbo_backward(tr->ctx, loss) != ELBO_OK || !isfinite(loss->data[0])) return 0;
    if (elbo_optim_step(tr->opt, 1e-3f) != ELBO_OK) return 0;
    elbo_ema_update(tr->ema, tr->vae.ps);
    return 1;
}

static int trainer_steps(trainer *tr, int n) {
    for (int s = 0; s < n; s++)
        if (!trainer_step(tr)) return 0;
    return 1;
}

static elbo_checkpoint trainer_ck(trainer *tr, int64_t step) {
    return (elbo_checkpoint){.params = tr->vae.ps, .optim = tr->opt, .ema = tr->ema,
                             .step = step, .rng = tr->rng, .model = "vae-mlp",
                             .config = "{\"x_dim\": 784, \"hidden\": 512, \"z_dim\": 32}"};
}

/* The whole training state (weights, m, v, EMA) copied into one malloc'd block. */
typedef struct {
    float *w;
    int64_t n;
    int64_t opt_steps;
} snapshot;

static int snap(const trainer *tr, snapshot *s) {
    int64_t n = elbo_paramset_numel(tr->vae.ps), nm, nv, ne;
    const float *m = elbo_optim_state(tr->opt, 0, &nm), *v = elbo_optim_state(tr->opt, 1, &nv);
    const float *e = elbo_ema_data(tr->ema, &ne);
    s->n = n;
    s->opt_steps = elbo_optim_steps(tr->opt);
    s->w = malloc(4 * (size_t)n * sizeof(float));
    if (!s->w || !m || !v || !e || nm != n || nv != n || ne != n) return 0;
    memcpy(s->w, elbo_paramset_data(tr->vae.ps), (size_t)n * sizeof(float));
    memcpy(s->w + n, m, (size_t)n * sizeof(float));
    memcpy(s->w + 2 * n, v, (size_t)n * sizeof(float));
    memcpy(s->w + 3 * n, e, (size_t)n * sizeof(float));
    return 1;
}

/* Which of the four blocks first differs (-1: none), and where. */
static int snap_diff(const snapshot *a, const snapshot *b, int64_t *at) {
    for (int blk = 0; blk < 4; blk++)
        for (int64_t i = 0; i < a->n; i++)
            if (memcmp(&a->w[blk * a->n + i], &b->w[blk * b->n + i], sizeof(float))) {
                *at = i;
                return blk;
            }
    return -1;
}

static const char *const block_name[4] = {"weights", "Adam m", "Adam v", "EMA weights"};

/* ---- bit-exact resume ----------------------------------------------------------------- */
/* The vae-mlp benchmark model (784-512-32) at batch 8: 5 uninterrupted steps versus 3 steps,
 * save, load into a model built from another seed, 2 more steps with the restored RNG. The
 * same resume with the RNG as a fresh run would have it (offset 0) must differ. */
TEST(checkpoint_resume_is_bit_exact) {
    enum { N = 3, M = 2, B = 8 };
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/run.safetensors", dir);
    trainer a, b, c, d;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    memset(&c, 0, sizeof c);
    memset(&d, 0, sizeof d);
    snapshot sa = {0}, sc = {0}, sd = {0};
    int ok = trainer_init(&a, 784, 512, 32, B, 11) && trainer_steps(&a, N + M) && snap(&a, &sa);
    ok = ok && trainer_init(&b, 784, 512, 32, B, 11) && trainer_steps(&b, N);
    elbo_checkpoint ckb = trainer_ck(&b, N);
    elbo_status save_st = ok ? elbo_checkpoint_save(path, &ckb) : ELBO_ERR_STATE;
    elbo_rng saved_rng = b.rng;
    trainer_free(&b);

    /* Resume: a fresh model of other weights; its RNG comes from the checkpoint. */
    ok = ok && save_st == ELBO_OK && trainer_init(&c, 784, 512, 32, B, 999);
    elbo_checkpoint ckc = {.params = c.vae.ps, .optim = c.opt, .ema = c.ema, .model = "vae-mlp"};
    elbo_status load_st = ok ? elbo_checkpoint_load(path, &ckc) : ELBO_ERR_STATE;
    int restored_fields = load_st == ELBO_OK && ckc.step == N && ckc.rng.seed == saved_rng.seed &&
                          ckc.rng.offset == saved_rng.offset && elbo_optim_steps(c.opt) == N;
    c.rng = ckc.rng;
    ok = ok && load_st == ELBO_OK && trainer_steps(&c, M) && snap(&c, &sc);

    /* The same resume with a forgotten RNG (the fresh trainer's, at offset 0). */
    ok = ok && trainer_init(&d, 784, 512, 32, B, 999);
    elbo_checkpoint ckd = {.params = d.vae.ps, .optim = d.opt, .ema = d.ema};
    ok = ok && elbo_checkpoint_load(path, &ckd) == ELBO_OK && d.rng.offset != ckd.rng.offset &&
         trainer_steps(&d, M) && snap(&d, &sd);

    int64_t at = -1, at_d = -1;
    int diff = ok ? snap_diff(&sa, &sc, &at) : -2;
    int diff_d = ok ? snap_diff(&sa, &sd, &at_d) : -2;
    int same_steps = sa.opt_steps == N + M && sc.opt_steps == N + M;
    trainer_free(&a);
    trainer_free(&c);
    trainer_free(&d);
    free(sa.w);
    free(sc.w);
    free(sd.w);
    remove_dir(dir);
    CHECK_MSG(save_st == ELBO_OK, "save: %s", elbo_last_error());
    CHECK_MSG(load_st == ELBO_OK, "load: %s", elbo_last_error());
    CHECK_MSG(ok, "training failed: %s", elbo_last_error());
    CHECK_MSG(restored_fields, "step %lld, rng {%llu, %llu} (want %d, {%llu, %llu})",
              (long long)ckc.step, (unsigned long long)ckc.rng.seed,
              (unsigned long long)ckc.rng.offset, N, (unsigned long long)saved_rng.seed,
              (unsigned long long)saved_rng.offset);
    CHECK_MSG(saved_rng.offset > 0, "the training RNG was never advanced");
    CHECK_MSG(same_steps, "optimiser steps %lld and %lld, want %d", (long long)sa.opt_steps,
              (long long)sc.opt_steps, N + M);
    CHECK_MSG(diff == -1, "resumed run differs from the uninterrupted one in %s at %lld",
              diff >= 0 ? block_name[diff] : "?", (long long)at);
    CHECK_MSG(diff_d == 0, "a resume with the RNG at offset 0 gave the same weights (block %d)",
              diff_d);
}

/* ---- round trip ----------------------------------------------------------------------- */
TEST(checkpoint_round_trip_of_every_field) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/small.safetensors", dir);
    trainer a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    snapshot sa = {0}, sb = {0};
    const char *config = "{\"x_dim\": 6, \"hidden\": 5, \"z_dim\": 2, \"name\": \"caf\\u00e9\"}";
    int ok = trainer_init(&a, 6, 5, 2, 4, 1) && trainer_steps(&a, 4) && snap(&a, &sa);
    elbo_checkpoint ck = {.params = a.vae.ps, .optim = a.opt, .ema = a.ema, .step = 1234567890123,
                          .rng = {UINT64_MAX - 5, (1ull << 63) + 17}, .model = "vae-mlp",
                          .config = config};
    elbo_status save_st = ok ? elbo_checkpoint_save(path, &ck) : ELBO_ERR_STATE;
    ok = ok && save_st == ELBO_OK && trainer_init(&b, 6, 5, 2, 4, 42);
    elbo_checkpoint ck2 = {.params = b.vae.ps, .optim = b.opt, .ema = b.ema, .model = "vae-mlp"};
    elbo_status load_st = ok ? elbo_checkpoint_load(path, &ck2) : ELBO_ERR_STATE;
    ok = ok && load_st == ELBO_OK && snap(&b, &sb);
    int64_t at = -1;
    int diff = ok ? snap_diff(&sa, &sb, &at) : -2;

    /* What other readers see. */
    elbo_safetensors *st = NULL;
    int layout = elbo_safetensors_open(path, &st) == ELBO_OK;
    const elbo_st_tensor *m0 = layout ? elbo_safetensors_find(st, "optim.m.enc.0.weight") : NULL;
    const elbo_st_tensor *v4 = layout ? elbo_safetensors_find(st, "optim.v.dec.4.bias") : NULL;
    const elbo_st_tensor *e2 = layout ? elbo_safetensors_find(st, "ema.enc.2.weight") : NULL;
    const elbo_st_tensor *rng = layout ? elbo_safetensors_find(st, "train.rng") : NULL;
    const elbo_st_tensor *stp = layout ? elbo_safetensors_find(st, "train.step") : NULL;
    const elbo_st_tensor *ostp = layout ? elbo_safetensors_find(st, "optim.step") : NULL;
    layout = layout && m0 && m0->dtype == ELBO_DTYPE_F32 && m0->ndim == 2 && m0->shape[0] == 5 &&
             m0->shape[1] == 6 && !memcmp(m0->data, sa.w + sa.n, m0->nbytes) && v4 &&
             v4->ndim == 1 && v4->shape[0] == 6 && e2 && e2->ndim == 2 && rng &&
             rng->dtype == ELBO_DTYPE_I64 && rng->ndim == 1 && rng->shape[0] == 2 && stp &&
             stp->dtype == ELBO_DTYPE_I64 && stp->ndim == 0 && ostp && ostp->ndim == 0 &&
             elbo_safetensors_count(st) == 12 * 4 + 3;
    const char *fmt = st ? elbo_safetensors_metadata(st, "format") : NULL;
    const char *ver = st ? elbo_safetensors_metadata(st, "version") : NULL;
    const char *model = st ? elbo_safetensors_metadata(st, "model") : NULL;
    const char *cfg = st ? elbo_safetensors_metadata(st, "config") : NULL;
    int meta = fmt && !strcmp(fmt, "elbo-checkpoint") && ver && !strcmp(ver, "1") && model &&
               !strcmp(model, "vae-mlp") && cfg && !strcmp(cfg, config);
    elbo_safetensors_close(st);
    trainer_free(&a);
    trainer_free(&b);
    free(sa.w);
    free(sb.w);
    remove_dir(dir);
    CHECK_MSG(save_st == ELBO_OK, "save: %s", elbo_last_error());
    CHECK_MSG(load_st == ELBO_OK, "load: %s", elbo_last_error());
    CHECK(ok);
    CHECK_MSG(diff == -1, "%s differ at %lld after the round trip",
              diff >= 0 ? block_name[diff] : "?", (long long)at);
    CHECK_MSG(sb.opt_steps == 4, "optimiser steps %lld, want 4", (long long)sb.opt_steps);
    CHECK_MSG(ck2.step == 1234567890123, "step %lld", (long long)ck2.step);
    CHECK_MSG(ck2.rng.seed == UINT64_MAX - 5 && ck2.rng.offset == (1ull << 63) + 17,
              "rng {%llu, %llu}", (unsigned long long)ck2.rng.seed,
              (unsigned long long)ck2.rng.offset);
    CHECK_MSG(layout, "the file's tensors are not as documented");
    CHECK_MSG(meta, "the file's metadata is not as documented");
}

TEST(checkpoint_metadata_reader) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/info.safetensors", dir);
    trainer a;
    memset(&a, 0, sizeof a);
    int ok = trainer_init(&a, 6, 5, 2, 4, 1) && trainer_steps(&a, 3);
    int64_t numel = ok ? elbo_paramset_numel(a.vae.ps) : 0;
    elbo_checkpoint ck = {.params = a.vae.ps, .optim = a.opt, .ema = a.ema, .step = 3,
                          .rng = a.rng, .model = "vae-mlp", .config = "{\"hidden\": 5}"};
    elbo_status s1 = ok ? elbo_checkpoint_save(path, &ck) : ELBO_ERR_STATE;
    elbo_checkpoint_info info;
    elbo_status s2 = elbo_checkpoint_read_info(path, &info);
    int good = s2 == ELBO_OK && info.model && !strcmp(info.model, "vae-mlp") && info.config &&
               !strcmp(info.config, "{\"hidden\": 5}") && info.step == 3 &&
               info.rng.seed == a.rng.seed && info.rng.offset == a.rng.offset &&
               info.optim_steps == 3 && info.has_optim_m && info.has_optim_v && info.has_ema &&
               info.n_params == 12 && info.n_scalars == numel;
    elbo_checkpoint_info_free(&info);
    int freed = !info.model && !info.config;
    /* Without optimiser and EMA. */
    ck.optim = NULL;
    ck.ema = NULL;
    elbo_status s3 = ok ? elbo_checkpoint_save(path, &ck) : ELBO_ERR_STATE;
    elbo_status s4 = elbo_checkpoint_read_info(path, &info);
    int bare = s4 == ELBO_OK && info.optim_steps == -1 && !info.has_optim_m &&
               !info.has_optim_v && !info.has_ema && info.n_params == 12;
    elbo_checkpoint_info_free(&info);
    /* A missing file. */
    snprintf(path, sizeof path, "%s/none.safetensors", dir);
    elbo_status s5 = elbo_checkpoint_read_info(path, &info);
    int missing = s5 == ELBO_ERR_IO && strstr(elbo_last_error(), path) && !info.model;
    trainer_free(&a);
    remove_dir(dir);
    CHECK(ok);
    CHECK_MSG(s1 == ELBO_OK && s3 == ELBO_OK, "save: %s", elbo_last_error());
    CHECK_MSG(s2 == ELBO_OK && s4 == ELBO_OK, "read_info failed");
    CHECK_MSG(good, "read_info with optimiser and EMA gave wrong fields");
    CHECK(freed);
    CHECK_MSG(bare, "read_info without optimiser and EMA gave wrong fields");
    CHECK_MSG(missing, "missing file: status %d", (int)s5);
}

/* ---- failures ------------------------------------------------------------------------- */
/* Loads path into tr (optimiser and EMA as given) and expects status want with the path and
 * `what` in the message and every bit of tr's state (and its optimiser's step) unchanged. */
#define CHECK_LOAD_FAILS(path, tr, use_opt, use_ema, want, what)                                   \
    do {                                                                                           \
        snapshot before_ = {0}, after_ = {0};                                                      \
        int snapped_ = snap(&(tr), &before_);                                                      \
        elbo_checkpoint ck_ = {.params = (tr).vae.ps, .optim = (use_opt) ? (tr).opt : NULL,        \
                               .ema = (use_ema) ? (tr).ema : NULL, .step = -7,                     \
                               .rng = {3, 4}, .model = "vae-mlp"};                                 \
        elbo_status st_ = elbo_checkpoint_load(path, &ck_);                                        \
        char msg_[512];                                                                            \
        snprintf(msg_, sizeof msg_, "%s", elbo_last_error());                                      \
        snapped_ = snapped_ && snap(&(tr), &after_);                                               \
        int64_t at_ = -1;                                                                          \
        int diff_ = snapped_ ? snap_diff(&before_, &after_, &at_) : -2;                            \
        int same_steps_ = before_.opt_steps == after_.opt_steps;                                   \
        free(before_.w);                                                                           \
        free(after_.w);                                                                            \
        CHECK_MSG(st_ == (want) && strstr(msg_, path) && strstr(msg_, what) && !strchr(msg_, '\n'), \
                  "load %s: status %d (want %d), message '%s' (want '%s')", path, (int)st_,        \
                  (int)(want), msg_, what);                                                        \
        CHECK_MSG(diff_ == -1 && same_steps_ && ck_.step == -7 && ck_.rng.seed == 3 &&             \
                      ck_.rng.offset == 4,                                                         \
                  "load %s failed but changed the state (block %d at %lld)", path, diff_,          \
                  (long long)at_);                                                                 \
    } while (0)

/* A checkpoint of a vae-mlp with hidden 2 loaded into one with hidden 4 (x_dim 5): the first
 * parameter, enc.0.weight, is (2, 5) in the file and (4, 5) in the model. */
TEST(checkpoint_other_architecture_fails_and_changes_nothing) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/h2.safetensors", dir);
    trainer small, big;
    memset(&small, 0, sizeof small);
    memset(&big, 0, sizeof big);
    int ok = trainer_init(&small, 5, 2, 2, 3, 1) && trainer_steps(&small, 1);
    elbo_checkpoint ck = trainer_ck(&small, 1);
    ok = ok && elbo_checkpoint_save(path, &ck) == ELBO_OK;
    ok = ok && trainer_init(&big, 5, 4, 2, 3, 2) && trainer_steps(&big, 2);
    if (!ok) {
        trainer_free(&small);
        trainer_free(&big);
        remove_dir(dir);
        CHECK_MSG(0, "setup: %s", elbo_last_error());
    }
    CHECK_LOAD_FAILS(path, big, 1, 1, ELBO_ERR_SHAPE,
                     "'enc.0.weight' has shape (2, 5) in the file, expected (4, 5)");
    CHECK_LOAD_FAILS(path, big, 0, 0, ELBO_ERR_SHAPE,
                     "'enc.0.weight' has shape (2, 5) in the file, expected (4, 5)");
    trainer_free(&small);
    trainer_free(&big);
    remove_dir(dir);
}

TEST(checkpoint_bad_files_fail_and_change_nothing) {
    char dir[256], path[300], bad[320];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/good.safetensors", dir);
    trainer a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    int ok = trainer_init(&a, 6, 5, 2, 4, 1) && trainer_steps(&a, 2);
    elbo_checkpoint ck = trainer_ck(&a, 2);
    ok = ok && elbo_checkpoint_save(path, &ck) == ELBO_OK;
    ok = ok && trainer_init(&b, 6, 5, 2, 4, 9) && trainer_steps(&b, 1);
    /* A truncated copy of the good file. */
    FILE *f = ok ? fopen(path, "rb") : NULL;
    unsigned char *bytes = malloc(1 << 16);
    size_t n = f && bytes ? fread(bytes, 1, 1 << 16, f) : 0;
    if (f) fclose(f);
    snprintf(bad, sizeof bad, "%s/truncated.safetensors", dir);
    FILE *g = n > 100 && n < (1 << 16) ? fopen(bad, "wb") : NULL;
    ok = ok && g && fwrite(bytes, 1, n - 100, g) == n - 100;
    if (g) ok = fclose(g) == 0 && ok;
    free(bytes);
    if (!ok) {
        trainer_free(&a);
        trainer_free(&b);
        remove_dir(dir);
        CHECK_MSG(0, "setup: %s", elbo_last_error());
    }
    CHECK_LOAD_FAILS(bad, b, 1, 1, ELBO_ERR_FORMAT, "");

    snprintf(bad, sizeof bad, "%s/missing.safetensors", dir);
    CHECK_LOAD_FAILS(bad, b, 1, 1, ELBO_ERR_IO, "cannot open");

    /* Wrong or missing format metadata: a plain parameter file, then other values. */
    snprintf(bad, sizeof bad, "%s/plain.safetensors", dir);
    CHECK(elbo_paramset_save_safetensors(bad, b.vae.ps, NULL, 0) == ELBO_OK);
    CHECK_LOAD_FAILS(bad, b, 0, 0, ELBO_ERR_FORMAT, "not an elbo checkpoint");
    const elbo_st_meta wrong[4] = {{"format", "pytorch"}, {"version", "1"},
                                   {"model", "vae-mlp"}, {"config", "{}"}};
    CHECK(elbo_paramset_save_safetensors(bad, b.vae.ps, wrong, 4) == ELBO_OK);
    CHECK_LOAD_FAILS(bad, b, 0, 0, ELBO_ERR_FORMAT, "metadata format 'pytorch'");
    const elbo_st_meta v2[4] = {{"format", "elbo-checkpoint"}, {"version", "2"},
                                {"model", "vae-mlp"}, {"config", "{}"}};
    CHECK(elbo_paramset_save_safetensors(bad, b.vae.ps, v2, 4) == ELBO_OK);
    CHECK_LOAD_FAILS(bad, b, 0, 0, ELBO_ERR_FORMAT, "version '2'");
    /* Right metadata but no train.step. */
    const elbo_st_meta v1[4] = {{"format", "elbo-checkpoint"}, {"version", "1"},
                                {"model", "vae-mlp"}, {"config", "{}"}};
    CHECK(elbo_paramset_save_safetensors(bad, b.vae.ps, v1, 4) == ELBO_OK);
    CHECK_LOAD_FAILS(bad, b, 0, 0, ELBO_ERR_FORMAT, "lacks 'train.step'");

    /* Another model's checkpoint. */
    {
        elbo_checkpoint ck_other = trainer_ck(&a, 2);
        ck_other.model = "unet-s";
        snprintf(bad, sizeof bad, "%s/other_model.safetensors", dir);
        CHECK(elbo_checkpoint_save(bad, &ck_other) == ELBO_OK);
        CHECK_LOAD_FAILS(bad, b, 1, 1, ELBO_ERR_FORMAT, "model 'unet-s', expected 'vae-mlp'");
    }

    /* No optimiser state (or EMA) in the file, but one given: every parameter would fit, yet
     * nothing may be copied. */
    {
        elbo_checkpoint ck_bare = trainer_ck(&a, 2);
        ck_bare.optim = NULL;
        ck_bare.ema = NULL;
        snprintf(bad, sizeof bad, "%s/no_optim.safetensors", dir);
        CHECK(elbo_checkpoint_save(bad, &ck_bare) == ELBO_OK);
        CHECK_LOAD_FAILS(bad, b, 1, 0, ELBO_ERR_FORMAT,
                         "lacks optimiser state 'optim.m.enc.0.weight'");
        CHECK_LOAD_FAILS(bad, b, 0, 1, ELBO_ERR_FORMAT, "lacks EMA weights 'ema.enc.0.weight'");
        ck_bare.optim = a.opt;
        CHECK(elbo_checkpoint_save(bad, &ck_bare) == ELBO_OK);
        CHECK_LOAD_FAILS(bad, b, 1, 1, ELBO_ERR_FORMAT, "lacks EMA weights 'ema.enc.0.weight'");
    }

    /* Adam state into an SGD optimiser without momentum (it has no buffers to take it). */
    {
        elbo_optim_params sp;
        elbo_optim_params_init(&sp, ELBO_OPT_SGD);
        elbo_optim *sgd = elbo_optim_new(b.vae.ps, &sp);
        CHECK(sgd);
        elbo_checkpoint cks = {.params = b.vae.ps, .optim = sgd, .model = "vae-mlp"};
        elbo_status s = elbo_checkpoint_load(path, &cks);
        int good = s == ELBO_ERR_FORMAT && strstr(elbo_last_error(), path) &&
                   strstr(elbo_last_error(), "optim.m.enc.0.weight") && elbo_optim_steps(sgd) == 0;
        elbo_optim_free(sgd);
        CHECK_MSG(good, "Adam state into SGD: status %d, '%s'", (int)s, elbo_last_error());
    }

    /* The good file still loads. */
    elbo_checkpoint ok_ck = {.params = b.vae.ps, .optim = b.opt, .ema = b.ema, .model = "vae-mlp"};
    CHECK(elbo_checkpoint_load(path, &ok_ck) == ELBO_OK && ok_ck.step == 2 &&
          elbo_optim_steps(b.opt) == 2 &&
          !memcmp(elbo_paramset_data(b.vae.ps), elbo_paramset_data(a.vae.ps),
                  (size_t)elbo_paramset_numel(a.vae.ps) * sizeof(float)));
    trainer_free(&a);
    trainer_free(&b);
    remove_dir(dir);
}

TEST(checkpoint_save_rejects_bad_arguments) {
    char dir[256], path[300];
    CHECK(make_dir(dir, sizeof dir));
    snprintf(path, sizeof path, "%s/x.safetensors", dir);
    trainer a;
    memset(&a, 0, sizeof a);
    int ok = trainer_init(&a, 6, 5, 2, 4, 1);
    elbo_checkpoint ck = trainer_ck(&a, 0);
    struct {
        const char *model, *config;
        int64_t step;
        int null_params;
        const char *what;
    } cases[] = {
        {"vae-mlp", "", 0, 0, "configuration is empty"},
        {"vae-mlp", NULL, 0, 0, "configuration is empty"},
        {"vae-mlp", "{\"hidden\": 5,}", 0, 0, "not a JSON object"},
        {"vae-mlp", "[1, 2]", 0, 0, "not a JSON object"},
        {"", "{}", 0, 0, "model name is empty"},
        {NULL, "{}", 0, 0, "model name is empty"},
        {"vae-mlp", "{}", -1, 0, "negative step"},
        {"vae-mlp", "{}", 0, 1, "NULL checkpoint or paramset"},
    };
    int n_cases = (int)(sizeof cases / sizeof cases[0]), bad = -1;
    elbo_status got = ELBO_OK;
    for (int i = 0; ok && i < n_cases && bad < 0; i++) {
        elbo_checkpoint c = ck;
        c.model = cases[i].model;
        c.config = cases[i].config;
        c.step = cases[i].step;
        if (cases[i].null_params) c.params = NULL;
        got = elbo_checkpoint_save(path, &c);
        if (got != ELBO_ERR_ARG || !strstr(elbo_last_error(), path) ||
            !strstr(elbo_last_error(), cases[i].what) || file_exists(path))
            bad = i;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "%s", elbo_last_error());
    elbo_status dir_st = ok ? elbo_checkpoint_save(dir, &ck) : ELBO_OK; /* a directory */
    trainer_free(&a);
    remove_dir(dir);
    CHECK(ok);
    CHECK_MSG(bad < 0, "case %d: status %d, message '%s' (want '%s')", bad, (int)got, msg,
              bad >= 0 ? cases[bad].what : "");
    CHECK_MSG(dir_st == ELBO_ERR_IO, "saving over a directory: status %d", (int)dir_st);
}
