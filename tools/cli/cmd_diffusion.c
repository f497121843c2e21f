/* `elbo train diffusion`, diffusion sampling for `elbo sample`, and `elbo denoise`: the
 * variational diffusion model of include/elbo/diffusion_model.h from the command line. */
#include "elbo.h"
#include "elbo/inverse.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- train diffusion ----------------------------------------------------------------- */
static const char *TRAIN_DIFFUSION_USAGE =
    "usage: elbo train diffusion --data SPEC [flags]\n"
    "\n"
    "A variational diffusion model (Kingma et al. 2021; Ho et al. 2020) on 8-bit images\n"
    "scaled to [-1, 1]: q(x_t|x) = N(alpha(t) x, sigma(t)^2 I), t in [0, 1] (or T steps),\n"
    "and a denoising network (the DDPM UNet) whose output --param is eps, x0, v or the score.\n"
    "The loss is 1/2 w(t) ||eps - eps_hat(x_t; t)||^2 at low-discrepancy times: --loss elbo\n"
    "weighs it so that, with the prior KL at t = 1 and the 256-bin reconstruction term at\n"
    "t = 0, it is the negative ELBO in nats (bits/dim = nats / (D ln 2)); simple is DDPM's\n"
    "eps-MSE; snr-trunc weighs by max(SNR, 1) in x-space (Salimans & Ho 2022).\n"
    "--schedule: linear (DDPM's betas 1e-4 .. 0.02 as a continuous VP process; --beta-min,\n"
    "--beta-max in units of 1/T_ddpm = 1/1000), cosine (Nichol & Dhariwal, truncated to\n"
    "[--log-snr-min, --log-snr-max]), loglinear (VDM's fixed log-SNR), subvp, ve (sigma from\n"
    "--sigma-min to --sigma-max), learned (VDM's monotone network from the log-linear one, its\n"
    "endpoints trained on the bound and its interior on the variance of the diffusion term;\n"
    "needs --loss elbo). --cond trains on the dataset's labels with a null label\n"
    "(probability --p-uncond) for classifier-free guidance. The trainer's flags (data order,\n"
    "checkpoints, --resume, EMA, schedules) are those of every elbo train.\n"
    "--data toy:NAME trains on --toy-n fixed points of a 2-D toy (continuous data, a Gaussian\n"
    "reconstruction term), with a time-embedded MLP (--hidden, --layers) unless --net unet.\n"
    "--levels L trains on the noise ladder t_i = i / (L - 1) only (NCSN).\n"
    "\n"
    "elbo train ncsn: a noise-conditional score network (Song & Ermon 2019): the same model\n"
    "with --schedule ve (the geometric ladder sigma_i from --sigma-max to --sigma-min), --levels\n"
    "100 and --loss simple, which is denoising score matching weighted by lambda(sigma) =\n"
    "sigma^2: 1/2 sigma^2 ||s(x_t, sigma) + eps / sigma||^2 = 1/2 ||eps - eps_hat||^2 with\n"
    "score = -eps_hat / sigma (--param eps is NCSNv2's s(x, sigma) = net(x, sigma) / sigma).\n"
    "NCSNv2's rules for images: sigma_1 about the largest distance between training images,\n"
    "adjacent levels overlapping (for 28 x 28, a ratio near 1.08: 100 levels over 0.01..50).\n"
    "Sample with elbo sample --sampler langevin --steps L (annealed Langevin dynamics).\n"
    "\n"
    "elbo train sde --sde ve|vp|subvp: continuous-time denoising score matching on a score SDE\n"
    "(Song et al. 2021): ve (sigma_min (sigma_max / sigma_min)^t), vp (beta from --beta-min to\n"
    "--beta-max: DDPM's continuous limit) or subvp, lambda(t) = sigma(t)^2 (--loss simple), t\n"
    "uniform in (0, 1]. Any sampler of elbo sample runs the result: em, pc, ode, ...\n";

/* "32,64,64" into w[0..n), each in 1..65536; a usage error naming the flag when bad. */
static int parse_int_list(const char *flag, const char *s, int *w, int max, int *n) {
    if (args_int_list(s, w, max, n))
        return args_fail(ARGS_USAGE, "%s: expected up to %d comma-separated integers in "
                         "1..65536, got \"%s\"", flag, max, s);
    return 0;
}

int cli_process_num_flags(arg_flag *f, cli_process_nums *p) {
    memset(p, 0, sizeof *p);
    f[0] = args_string("--log-snr-min", &p->lmin, "X", "cosine, loglinear: log SNR at t = 1", "-5");
    f[1] = args_string("--log-snr-max", &p->lmax, "X", "cosine, loglinear: log SNR at t = 0", "13.3");
    f[2] = args_string("--beta-min", &p->bmin, "X", "linear, subvp: beta at t = 0", "0.1");
    f[3] = args_string("--beta-max", &p->bmax, "X", "linear, subvp: beta at t = 1", "20");
    f[4] = args_string("--sigma-min", &p->smin, "X", "ve: sigma at t = 0", "0.01");
    f[5] = args_string("--sigma-max", &p->smax, "X", "ve: sigma at t = 1", "50");
    return 6;
}

int cli_process_nums_apply(const cli_process_nums *p, elbo_process *proc) {
    const struct {
        const char *flag, *s;
        int positive;
        double *dst;
    } nums[] = {{"--log-snr-min", p->lmin, -1, &proc->log_snr_min},
                {"--log-snr-max", p->lmax, -1, &proc->log_snr_max},
                {"--beta-min", p->bmin, 1, &proc->beta_min},
                {"--beta-max", p->bmax, 1, &proc->beta_max},
                {"--sigma-min", p->smin, 1, &proc->sigma_min},
                {"--sigma-max", p->smax, 1, &proc->sigma_max}};
    int r;
    for (size_t j = 0; j < sizeof nums / sizeof nums[0]; j++)
        if (nums[j].s && (r = args_parse_double(nums[j].flag, nums[j].s, nums[j].positive, nums[j].dst)))
            return r;
    return 0;
}

/* kind: "diffusion", "ncsn" or "sde" (argv[0]): the same model with other defaults. */
int cmd_train_diffusion(int argc, char **argv) {
    train_common tc;
    arg_flag flags[52];
    int n_flags = train_common_flags(flags, &tc);
    const char *kind = argv[0];
    const int ncsn = !strcmp(kind, "ncsn"), sde = !strcmp(kind, "sde");
    const char *schedule = ncsn ? "ve" : "loglinear", *param = "eps",
               *loss = ncsn || sde ? "simple" : "elbo", *time_s = "continuous",
               *channels_s = "32,64,64", *attn_s = NULL, *net_s = "unet", *sde_s = "vp";
    const char *dropout_s = "0", *p_uncond_s = "0.1";
    cli_process_nums pn;
    int blocks = 1, temb = 128, groups = 8, cond = 0, hidden = 256, layers = 3, toy_n = 60000;
    int levels = ncsn ? 100 : 0, fourier = 0;
    const arg_flag model_flags[] = {
        args_string("--sde", &sde_s, "S", "train sde: ve | vp | subvp", "vp"),
        args_int("--levels", &levels, 0, 1000000, "L", "train on the ladder t_i = i / (L - 1) only "
                 "(0: every t)", ncsn ? "100" : "0"),
        args_string("--schedule", &schedule, "S", "linear | cosine | loglinear | learned | subvp | ve",
                    ncsn ? "ve" : "loglinear"),
        args_string("--param", &param, "P", "network output: eps | x0 | v | score", "eps"),
        args_string("--loss", &loss, "L", "simple | elbo | snr-trunc", ncsn || sde ? "simple" : "elbo"),
        args_string("--time", &time_s, "T", "continuous | discrete:T (T steps)", "continuous"),
        args_string("--net", &net_s, "N", "unet | mlp (a time-embedded MLP on the flattened x)",
                    "unet"),
        args_string("--channels", &channels_s, "LIST", "unet: channels per level", "32,64,64"),
        args_int("--blocks", &blocks, 1, ELBO_UNET_MAX_BLOCKS, "N", "unet: residual blocks per level", "1"),
        args_string("--attn", &attn_s, "LIST", "unet: resolutions with self-attention (both "
                    "paths)", "the lowest level's"),
        args_string("--dropout", &dropout_s, "P", "unet: dropout in the residual blocks", "0"),
        args_int("--temb", &temb, 2, 65536, "N", "unet: time-embedding width (even)", "128"),
        args_int("--groups", &groups, 1, 65536, "G", "unet: GroupNorm groups", "8"),
        args_int("--hidden", &hidden, 1, 65536, "N", "mlp: hidden width", "256"),
        args_int("--layers", &layers, 1, ELBO_MLP_MAX_LAYERS - 1, "N", "mlp: hidden layers", "3"),
        args_int("--toy-n", &toy_n, 1, 1 << 28, "N", "toy:NAME data: points in the train set "
                 "(drawn from --seed)", "60000"),
        args_bool("--cond", &cond, "condition on the dataset's class labels (plus a null label)"),
        args_bool("--fourier", &fourier, "unet: VDM's Fourier features sin, cos(2^n 2 pi x_t), n = "
                  "6, 7, as extra input channels"),
        args_string("--p-uncond", &p_uncond_s, "P", "--cond: probability of the null label in "
                    "training", "0.1"),
    };
    for (size_t j = 0; j < sizeof model_flags / sizeof model_flags[0]; j++)
        flags[n_flags++] = model_flags[j];
    n_flags += cli_process_num_flags(flags + n_flags, &pn);
    const char *pos[1];
    int np = 0;
    int r = args_parse("train", TRAIN_DIFFUSION_USAGE, flags, n_flags, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    char default_out[64];
    if ((r = train_common_check(&tc, kind, default_out, sizeof default_out))) return r;
    const int net_seen = args_seen(flags, n_flags, "--net");
    if (!sde && args_seen(flags, n_flags, "--sde"))
        return args_fail(ARGS_USAGE, "--sde: applies to elbo train sde");
    if (sde) {
        if (args_seen(flags, n_flags, "--schedule"))
            return args_fail(ARGS_USAGE, "--schedule: elbo train sde takes --sde ve|vp|subvp");
        if (!strcmp(sde_s, "vp")) schedule = "linear";
        else if (!strcmp(sde_s, "ve") || !strcmp(sde_s, "subvp")) schedule = sde_s;
        else return args_fail(ARGS_USAGE, "--sde: expected ve, vp or subvp, got \"%s\"", sde_s);
    }

    elbo_diffusion_config c;
    elbo_diffusion_config_init(&c);
    if (elbo_process_set_schedule(&c.process, schedule) != ELBO_OK ||
        elbo_param_parse(param, &c.param) != ELBO_OK || elbo_loss_kind_parse(loss, &c.loss) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--%s", elbo_last_error());
    if (!strcmp(net_s, "mlp")) c.net = ELBO_DENOISER_MLP;
    else if (strcmp(net_s, "unet")) return args_fail(ARGS_USAGE, "--net: expected unet or mlp, got \"%s\"", net_s);
    if (!strcmp(time_s, "continuous")) c.T = 0;
    else {
        long long T;
        if (strncmp(time_s, "discrete:", 9))
            return args_fail(ARGS_USAGE, "--time: expected continuous or discrete:T, got \"%s\"", time_s);
        if ((r = args_parse_ll("--time", time_s + 9, 1, 1000000, &T))) return r;
        c.T = (int)T;
    }
    if ((r = cli_process_nums_apply(&pn, &c.process))) return r;
    double dropout, p_uncond;
    if ((r = args_parse_double("--dropout", dropout_s, 0, &dropout)) ||
        (r = args_parse_double("--p-uncond", p_uncond_s, 0, &p_uncond)))
        return r;
    c.unet.dropout = (float)dropout;
    c.p_uncond = (float)p_uncond;
    int n_ch;
    if ((r = parse_int_list("--channels", channels_s, c.unet.channels, ELBO_UNET_MAX_LEVELS, &n_ch)))
        return r;
    if (n_ch < 1) return args_fail(ARGS_USAGE, "--channels: at least one level");
    c.unet.n_levels = n_ch;
    c.unet.blocks_per_level = blocks;
    c.unet.temb_dim = temb;
    c.unet.groups = groups;
    c.mlp_hidden = hidden;
    c.mlp_layers = layers;
    c.levels = levels;
    c.fourier = fourier;

    elbo_data_spec spec;
    if (elbo_data_spec_parse(tc.data, &spec) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--data: %s", elbo_last_error());
    elbo_dataset ds;
    if (spec.kind == ELBO_DATA_TOY) { /* a fixed set of points, an MLP unless --net says */
        if (elbo_dataset_toy(spec.toy, toy_n, tc.seed, ELBO_SPLIT_TRAIN, &ds) != ELBO_OK)
            return args_fail(ARGS_USAGE, "train: %s", elbo_last_error());
        c.discrete = 0;
        if (!net_seen) c.net = ELBO_DENOISER_MLP;
    } else if (elbo_dataset_load(&spec, ELBO_SPLIT_TRAIN, &ds) != ELBO_OK) {
        return args_fail(ARGS_RUNTIME, "train: %s", elbo_last_error());
    }
    c.c = ds.c, c.h = ds.h, c.w = ds.w;
    if (!c.discrete && c.net == ELBO_DENOISER_UNET) {
        elbo_dataset_free(&ds);
        return args_fail(ARGS_USAGE, "--net: unet takes images; %s is 2-D points (use mlp)", tc.data);
    }
    memset(c.unet.attn, 0, sizeof c.unet.attn);
    if (attn_s) {
        int res[ELBO_UNET_MAX_LEVELS], n_res;
        if ((r = parse_int_list("--attn", attn_s, res, ELBO_UNET_MAX_LEVELS, &n_res))) {
            elbo_dataset_free(&ds);
            return r;
        }
        for (int i = 0; i < n_res; i++) {
            int found = 0;
            for (int l = 0; l < n_ch; l++)
                if ((c.h >> l) == res[i]) c.unet.attn[l] = 2, found = 1;
            if (!found) {
                elbo_dataset_free(&ds);
                return args_fail(ARGS_USAGE, "--attn: no level has resolution %d (%lld halved "
                                 "per level, %d levels)", res[i], (long long)c.h, n_ch);
            }
        }
    } else {
        c.unet.attn[n_ch - 1] = 2;
    }
    if (cond) {
        if (!ds.labels || ds.num_classes < 1) {
            elbo_dataset_free(&ds);
            return args_fail(ARGS_USAGE, "--cond: dataset %s has no labels", tc.data);
        }
        c.classes = ds.num_classes;
    }
    elbo_model *m = NULL;
    if (elbo_diffusion_model_new(&c, tc.seed, &m) != ELBO_OK) {
        elbo_dataset_free(&ds);
        return args_fail(ARGS_USAGE, "train: %s", elbo_last_error());
    }
    elbo_train_params tp;
    elbo_train_params_init(&tp);
    train_common_apply(&tc, &tp);
    return train_run_and_report(m, &ds, &tp);
}

/* ---- sampling ----------------------------------------------------------------------- */

/* Snapshots of x_t and x0_hat of the first rows of the batch at about 10 levels. */
typedef struct {
    int rows, K, n_snap, max_snap;
    int64_t D;
    float *buf; /* [row][2][snap][D] */
} trajectory;

static void traj_step(void *user, int i, const elbo_noise_level *l, const float *x_t,
                      const float *x0_hat, int64_t n) {
    (void)l, (void)n;
    trajectory *tr = user;
    int every = tr->K / 10 > 0 ? tr->K / 10 : 1;
    if ((i % every && i != 0) || tr->n_snap >= tr->max_snap) return;
    for (int r = 0; r < tr->rows; r++)
        for (int k = 0; k < 2; k++) {
            const float *src = (k ? x0_hat : x_t) + r * tr->D;
            elbo_pixels_to01(src, tr->D, tr->buf + (((int64_t)r * 2 + k) * tr->max_snap + tr->n_snap) * tr->D);
        }
    tr->n_snap++;
}

/* 1 when two processes are the same (every field a sample or a classifier reads). */
static int process_equal(const elbo_process *a, const elbo_process *b) {
    return a->kind == b->kind && a->schedule == b->schedule && a->beta_min == b->beta_min &&
           a->beta_max == b->beta_max && a->t0 == b->t0 && a->log_snr_min == b->log_snr_min &&
           a->log_snr_max == b->log_snr_max && a->sigma_min == b->sigma_min &&
           a->sigma_max == b->sigma_max;
}

int cli_sample_diffusion(elbo_model *m, int n, const elbo_sampler_params *sp_in, double guidance,
                         const int32_t *labels, elbo_model *clf, float *x,
                         const char *trajectory_png, int *nfe_out) {
    const elbo_diffusion_config *c = elbo_diffusion_config_of(m);
    elbo_sampler_params sp = *sp_in;
    /* the samplers that step down the model's T-step grid */
    const int on_grid = sp.kind != ELBO_SAMPLER_ODE && sp.kind != ELBO_SAMPLER_LANGEVIN;
    sp.steps = sp.steps > 0 ? sp.steps
               : c->T > 0 && on_grid ? c->T
               : sp.kind == ELBO_SAMPLER_LANGEVIN ? (c->levels > 1 ? c->levels : 10) : 100;
    if (c->T > 0 && on_grid && c->T % sp.steps)
        return args_fail(ARGS_USAGE, "--steps: %d does not divide the model's %d training steps",
                         sp.steps, c->T);
    sp.batch = n;
    const elbo_classifier_config *cc = clf ? elbo_classifier_config_of(clf) : NULL;
    if (clf) { /* classifier guidance: a noisy classifier of this model's process and images */
        if (!cc || !cc->noisy)
            return args_fail(ARGS_USAGE, "--classifier: %s", cc ? "a clean classifier cannot "
                             "guide (train one with --noisy)" : "not a classifier checkpoint");
        if (cc->c != c->c || cc->h != c->h || cc->w != c->w)
            return args_fail(ARGS_USAGE, "--classifier: it takes (%lld, %lld, %lld) images, the "
                             "model makes (%lld, %lld, %lld)", (long long)cc->c, (long long)cc->h,
                             (long long)cc->w, (long long)c->c, (long long)c->h, (long long)c->w);
        if (!process_equal(&cc->process, &c->process))
            return args_fail(ARGS_USAGE, "--classifier: trained on another noise process (%s) "
                             "than the model's (%s); train it with --process-of CKPT",
                             elbo_process_schedule_name(&cc->process),
                             elbo_process_schedule_name(&c->process));
        if (!labels) return args_fail(ARGS_USAGE, "--classifier: which class? (--class)");
        for (int i = 0; i < n; i++)
            if (labels[i] >= cc->classes)
                return args_fail(ARGS_USAGE, "--class: %d not in [0, %d) (the classifier's)",
                                 labels[i], cc->classes);
    } else {
        if ((guidance != 0 || labels) && !c->classes)
            return args_fail(ARGS_USAGE, "--guidance, --class: the model is not class-conditional "
                             "(or give a --classifier)");
        for (int i = 0; labels && i < n; i++)
            if (labels[i] >= c->classes)
                return args_fail(ARGS_USAGE, "--class: %d not in [0, %d)", labels[i], c->classes);
    }
    const int64_t D = m->c * m->h * m->w;
    trajectory tr = {0};
    if (trajectory_png) {
        tr.rows = n < 8 ? n : 8;
        tr.K = sp.steps;
        tr.max_snap = 12;
        tr.D = D;
        tr.buf = calloc((size_t)(tr.rows * 2 * tr.max_snap * D), sizeof(float));
        sp.on_step = traj_step;
        sp.on_step_user = &tr;
    }
    elbo_ctx *ctx = elbo_ctx_new(0), *cctx = clf ? elbo_ctx_new(0) : NULL;
    float *work = clf ? malloc((size_t)(n * D) * sizeof *work) : NULL;
    elbo_status st = !ctx || (trajectory_png && !tr.buf) || (clf && (!cctx || !work))
                         ? elbo_error(ELBO_ERR_NOMEM, "sample: out of memory")
                         : ELBO_OK;
    /* the model's own labels only when it has classes; the classifier's otherwise */
    elbo_diffusion_denoiser_state ds = {m, ctx, n, c->classes ? labels : NULL, clf ? 0.0 : guidance};
    elbo_classifier_grad_state cgs = {clf, cctx, n};
    elbo_guided_state gs = {elbo_diffusion_denoiser, &ds, elbo_classifier_grad, &cgs, labels,
                            guidance, work};
    int nfe = 0;
    if (st == ELBO_OK)
        st = clf ? elbo_diffusion_sample(&c->process, &sp, elbo_guided_denoiser, &gs, x, n * D, &nfe)
                 : elbo_diffusion_sample(&c->process, &sp, elbo_diffusion_denoiser, &ds, x, n * D, &nfe);
    if (nfe_out) *nfe_out = nfe;
    if (st == ELBO_OK && c->discrete) elbo_pixels_to01(x, n * D, x);
    if (st == ELBO_OK && trajectory_png) {
        /* rows: x_t then x0_hat of each sample; columns: the snapshots, t from 1 to 0 */
        float *grid = malloc((size_t)(tr.rows * 2 * tr.n_snap * D) * sizeof *grid);
        if (!grid) st = elbo_error(ELBO_ERR_NOMEM, "sample: out of memory");
        else {
            for (int r = 0; r < tr.rows * 2; r++)
                memcpy(grid + (int64_t)r * tr.n_snap * D, tr.buf + (int64_t)r * tr.max_snap * D,
                       (size_t)(tr.n_snap * D) * sizeof *grid);
            st = cli_write_images(trajectory_png, grid, tr.rows * 2 * tr.n_snap, m->c, m->h, m->w,
                                  tr.n_snap);
            free(grid);
        }
    }
    elbo_ctx_free(ctx);
    elbo_ctx_free(cctx);
    free(work);
    free(tr.buf);
    if (st != ELBO_OK) return args_fail(ARGS_RUNTIME, "sample: %s", elbo_last_error());
    if (sp.kind == ELBO_SAMPLER_ODE)
        fprintf(stderr, "elbo: sample: ode (rtol %g, atol %g), %d network evaluations\n", sp.rtol,
                sp.atol, nfe);
    else
        fprintf(stderr, "elbo: sample: %s, %d %s, %d network evaluations\n",
                elbo_sampler_name(sp.kind), sp.steps,
                sp.kind == ELBO_SAMPLER_LANGEVIN ? "noise levels" : "steps", nfe);
    return 0;
}

/* ---- denoise ------------------------------------------------------------------------ */
static const char *DENOISE_USAGE =
    "usage: elbo denoise CKPT --data SPEC --sigma S --out FILE.png [flags]\n"
    "\n"
    "Adds Gaussian noise of standard deviation S (in pixel units of [0, 1]) to --n images of\n"
    "a split of SPEC and removes it in one step with the diffusion model of CKPT: a noisy\n"
    "image y = x + s eps (s = 2 S on the model's [-1, 1] scale) is the process's\n"
    "x_t / alpha(t) at the time where sigma(t) / alpha(t) = s, so the model's x0_hat(alpha(t)\n"
    "y, t) is Tweedie's posterior mean E[x | y] = (x_t + sigma^2 score) / alpha (Efron 2011).\n"
    "The PNG has three rows: clean, noisy, denoised. Prints {\"ckpt\", \"sigma\", \"t\",\n"
    "\"log_snr\", \"n\", \"psnr_noisy_db\", \"psnr_denoised_db\", \"out\"} (PSNR on [0, 1]).\n";

int cmd_denoise(int argc, char **argv) {
    const char *data = NULL, *out = NULL, *npy_out = NULL, *split_s = "test", *sigma_s = NULL;
    int n = 8, from = 0, threads = 0;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_string("--data", &data, "SPEC", "the dataset (" ELBO_DATA_SPEC_FORMS ")", "required"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_string("--sigma", &sigma_s, "S", "noise std in [0, 1] pixel units", "required"),
        args_int("--n", &n, 1, 4096, "N", "images", "8"),
        args_int("--from", &from, 0, 1 << 30, "I", "index of the first image", "0"),
        args_out(&out, "output PNG", "required"),
        args_string("--npy", &npy_out, "FILE", "also write the three rows as .npy", "none"),
        args_seed(&seed, "0"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("denoise", DENOISE_USAGE, flags, (int)(sizeof flags / sizeof flags[0]), argc,
                       argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "denoise: which checkpoint? (see elbo denoise --help)");
    if (!data) return args_fail(ARGS_USAGE, "denoise: --data: required");
    if (!sigma_s) return args_fail(ARGS_USAGE, "denoise: --sigma: required");
    if (!out) return args_fail(ARGS_USAGE, "denoise: --out: required");
    double sigma;
    if ((r = args_parse_double("--sigma", sigma_s, 1, &sigma))) return r;
    if ((r = cli_check_image_out("--out", out, 0)) || (r = cli_check_image_out("--npy", npy_out, 1)))
        return r;
    elbo_data_split split;
    elbo_data_spec spec;
    if ((r = cli_parse_data(data, split_s, &spec, &split))) return r;
    if (threads > 0) elbo_set_threads(threads);
    elbo_model *m = NULL;
    if (elbo_model_load(pos[0], &m, NULL, NULL) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "denoise: %s", elbo_last_error());
    const elbo_diffusion_config *c = elbo_diffusion_config_of(m);
    if (!c || !c->discrete) {
        int rc = args_fail(ARGS_USAGE, "denoise: %s: not a diffusion model of 8-bit images", pos[0]);
        elbo_model_free(m);
        return rc;
    }
    /* the time where sigma / alpha = s: log_snr(t) = -2 log s */
    const double s = 2.0 * sigma;
    elbo_noise_level lo, hi, l;
    elbo_process_at(&c->process, 0.0, &lo);
    elbo_process_at(&c->process, 1.0, &hi);
    if (elbo_process_time_at_log_snr(&c->process, -2.0 * log(s), &l) != ELBO_OK) {
        int rc = args_fail(ARGS_USAGE, "--sigma: %g is outside the model's noise range [%.3g, %.3g]",
                           sigma, 0.5 * exp(-0.5 * lo.log_snr), 0.5 * exp(-0.5 * hi.log_snr));
        elbo_model_free(m);
        return rc;
    }
    elbo_dataset ds;
    if (elbo_dataset_load(&spec, split, &ds) != ELBO_OK) {
        elbo_model_free(m);
        return args_fail(ARGS_RUNTIME, "denoise: %s", elbo_last_error());
    }
    int status = 0;
    const int64_t D = m->c * m->h * m->w;
    if (ds.c != m->c || ds.h != m->h || ds.w != m->w || from + n > ds.n) {
        status = args_fail(ARGS_USAGE, "denoise: %s has %lld images of (%lld, %lld, %lld); the "
                           "model wants (%lld, %lld, %lld) and --from %d --n %d", data,
                           (long long)ds.n, (long long)ds.c, (long long)ds.h, (long long)ds.w,
                           (long long)m->c, (long long)m->h, (long long)m->w, from, n);
    } else {
        float *rows = malloc((size_t)(3 * n * D) * sizeof *rows), *xt = malloc((size_t)(n * D) * sizeof *xt);
        float *x0 = malloc((size_t)(n * D) * sizeof *x0), *eps = malloc((size_t)(n * D) * sizeof *eps);
        elbo_ctx *ctx = elbo_ctx_new(0);
        elbo_status st = rows && xt && x0 && eps && ctx ? ELBO_OK : elbo_error(ELBO_ERR_NOMEM, "out of memory");
        if (st == ELBO_OK) {
            elbo_rng rng;
            elbo_rng_init(&rng, seed);
            elbo_rng_normal(&rng, eps, (size_t)(n * D), 0.0f, 1.0f);
            float *clean = rows, *noisy = rows + n * D, *den = rows + 2 * n * D;
            elbo_pixels_scale11(ds.images + (int64_t)from * D, n * D, x0); /* x in [-1, 1] */
            elbo_pixels_to01(x0, n * D, clean);
            for (int64_t i = 0; i < n * D; i++) noisy[i] = (float)(x0[i] + s * eps[i]); /* y = x + s eps */
            elbo_diffusion_denoiser_state dst = {m, ctx, n, NULL, 0.0};
            st = elbo_tweedie_denoise(&c->process, elbo_diffusion_denoiser, &dst, noisy, n * D, s,
                                      xt, x0, NULL);
            elbo_pixels_to01(noisy, n * D, noisy);
            if (st == ELBO_OK) elbo_pixels_to01(x0, n * D, den);
            if (st == ELBO_OK) st = cli_write_images(out, rows, 3 * n, m->c, m->h, m->w, n);
            if (st == ELBO_OK && npy_out) st = cli_write_images(npy_out, rows, 3 * n, m->c, m->h, m->w, n);
            if (st == ELBO_OK) {
                printf("{\"ckpt\":");
                args_json_string(stdout, pos[0]);
                printf(", \"sigma\":%g, \"t\":%.6f, \"log_snr\":%.4f, \"n\":%d, \"psnr_noisy_db\":%.3f, "
                       "\"psnr_denoised_db\":%.3f, \"out\":", sigma, l.t, l.log_snr, n,
                       elbo_psnr(noisy, clean, n * D), elbo_psnr(den, clean, n * D));
                args_json_string(stdout, out);
                printf("}\n");
            }
        }
        if (st != ELBO_OK) status = args_fail(ARGS_RUNTIME, "denoise: %s", elbo_last_error());
        elbo_ctx_free(ctx);
        free(rows);
        free(xt);
        free(x0);
        free(eps);
    }
    elbo_dataset_free(&ds);
    elbo_model_free(m);
    return status;
}
