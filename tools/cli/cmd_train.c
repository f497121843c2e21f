/* `elbo train`, `elbo sample`, `elbo eval`: a model trained by the one trainer of
 * include/elbo/train.h, sampled and evaluated from its checkpoint. */
#include "elbo.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static arg_flag flag_double(const char *name, double *dst, const char *help, const char *deflt) {
    arg_flag f = args_lr(dst, deflt); /* a non-negative double (min 0) under another name */
    f.name = name;
    f.help = help;
    f.min = 0;
    return f;
}

static arg_flag flag_i64(const char *name, int64_t *dst, long long min, const char *help,
                         const char *deflt) {
    arg_flag f = args_steps(dst, deflt);
    f.name = name;
    f.help = help;
    f.min = min;
    return f;
}

/* ---- train ------------------------------------------------------------------------------ */
static const char *TRAIN_USAGE =
    "usage: elbo train MODEL --data SPEC [flags]\n"
    "\n"
    "Trains MODEL (vae | hvae | vae-mlp; diffusion, ncsn, sde: see elbo train diffusion --help;\n"
    "classifier: see elbo train classifier --help) on the train split of SPEC\n"
    "(" ELBO_DATA_SPEC_FORMS ")\n"
    "with Adam. Writes OUT/ckpt.safetensors (every --ckpt-every steps and at the end),\n"
    "OUT/loss.csv (one row per step; appended to when resuming) and OUT/loss.png. Progress\n"
    "goes to stderr (a bar on a terminal, a line every --log-every steps otherwise); the\n"
    "last line on stdout is {\"model\", \"steps\", \"loss\", \"seconds\", \"out\"}.\n"
    "Epoch e visits the data in a permutation drawn from (--seed, e); step s takes batch\n"
    "s mod (N / B) of epoch s / (N / B), so --resume OUT/ckpt.safetensors with the same\n"
    "flags and a larger --steps continues bit for bit (another seed, batch or model\n"
    "configuration is refused). SIGINT or SIGTERM saves a checkpoint at the end of the\n"
    "current step and exits with status 130 after the JSON line (\"interrupted\": true).\n"
    "\n"
    "vae (Kingma & Welling 2014): q(z|x) = N(mu(x), diag exp(logvar(x))), p(z) = N(0, I),\n"
    "z = mu + exp(logvar/2) eps. --estimator B minimises recon + beta KL with the KL in closed\n"
    "form (SGVB B), A the Monte-Carlo mean of log q(z|x) - log p(x,z) (SGVB A), iwae the\n"
    "negative importance-weighted bound with k = --samples (Burda et al. 2016). --likelihood:\n"
    "bernoulli (binarized pixels, --binarize), gaussian (pixels dequantized to [0,1], learned\n"
    "per-pixel variance or a fixed --sigma), logistic (8-bit pixels in [-1,1], discretized\n"
    "logistic, PixelCNN++). Figures are nats per example; gaussian ones include D log 256.\n"
    "\n"
    "hvae: the Markovian hierarchical VAE, --layers L stochastic layers of --z sizes (bottom\n"
    "first): p(z_L) p(z_L-1|z_L) ... p(x|z_1) with the bottom-up q(z_1|x) ... q(z_L|z_L-1),\n"
    "every conditional a Gaussian MLP of --hidden widths; one KL term per layer (the top one\n"
    "in closed form with --estimator B). --grad-clip, --kl-warmup and --logvar-min keep it\n"
    "stable. The other vae flags apply as for vae.\n";

static int parse_widths(const char *s, int *w, int max, int *n) {
    if (args_int_list(s, w, max, n))
        return args_fail(ARGS_USAGE, "--hidden: expected up to %d comma-separated widths in "
                         "1..65536, like 300,300", max);
    return 0;
}

/* The trainer's flags, shared by every `elbo train MODEL` (cli.h). */
int train_common_flags(arg_flag *f, train_common *c) {
    memset(c, 0, sizeof *c);
    c->steps = 1000, c->ckpt_every = 1000, c->log_every = 100, c->batch = 128, c->lr = 1e-3;
    int n = 0;
    f[n++] = args_string("--data", &c->data, "SPEC", "the dataset (train split)", "required");
    f[n++] = args_steps(&c->steps, "1000");
    f[n++] = args_batch(&c->batch, "128");
    f[n++] = args_lr(&c->lr, "0.001");
    f[n++] = args_seed(&c->seed, "0");
    f[n++] = args_threads(&c->threads, "0: OMP_NUM_THREADS or all cores");
    f[n++] = args_out(&c->out, "output directory (created if missing)", "runs/MODEL");
    f[n++] = args_string("--resume", &c->resume, "CKPT", "continue from this checkpoint", "none");
    f[n++] = flag_i64("--ckpt-every", &c->ckpt_every, 0,
                      "checkpoint every N steps (0: only at the end)", "1000");
    f[n++] = flag_i64("--log-every", &c->log_every, 1, "progress line every N steps (no terminal)",
                      "100");
    f[n++] = flag_double("--grad-clip", &c->clip, "clip the global gradient L2 norm (0: off)", "0");
    f[n++] = flag_double("--ema", &c->ema, "EMA decay of the weights, < 1 (0: off)", "0");
    f[n++] = args_bool("--ema-warmup", &c->ema_warmup,
                       "ramp the EMA decay up as min(decay, n / (n + 9)) at update n (diffusers)");
    f[n++] = flag_i64("--warmup", &c->warmup, 0, "linear learning-rate warm-up steps (0: off)", "0");
    f[n++] = args_bool("--cosine", &c->cosine, "cosine learning-rate decay to 0 at --steps");
    f[n++] = args_bool("--keep-denormals", &c->keep_denormals,
                       "keep subnormal floats (default: flushed to zero, FTZ/DAZ; see "
                       "elbo_set_flush_denormals)");
    return n;
}

int train_common_check(train_common *c, const char *model, char *default_out, size_t len) {
    if (!c->data) return args_fail(ARGS_USAGE, "train: --data: required (see elbo train --help)");
    snprintf(default_out, len, "runs/%s", model);
    if (!c->out) c->out = default_out;
    if (!*c->out) return args_fail(ARGS_USAGE, "--out: empty");
    if (!(c->ema < 1)) return args_fail(ARGS_USAGE, "--ema: expected a decay < 1, got %g", c->ema);
    if (c->ema_warmup && !(c->ema > 0))
        return args_fail(ARGS_USAGE, "--ema-warmup: needs an EMA (--ema D, 0 < D < 1)");
    return 0;
}

void train_common_apply(const train_common *c, elbo_train_params *tp) {
    tp->flush_denormals = !c->keep_denormals;
    tp->steps = c->steps;
    tp->batch = c->batch;
    tp->lr = (float)c->lr;
    tp->seed = c->seed;
    tp->threads = c->threads;
    tp->out_dir = c->out;
    tp->resume = c->resume;
    tp->ckpt_every = c->ckpt_every;
    tp->log_every = c->log_every;
    tp->grad_clip = (float)c->clip;
    tp->ema_decay = (float)c->ema;
    tp->ema_warmup = c->ema_warmup;
    tp->warmup_steps = c->warmup;
    tp->cosine = c->cosine;
}

int train_run_and_report(elbo_model *m, elbo_dataset *ds, const elbo_train_params *tp) {
    elbo_train_result res;
    elbo_status st = elbo_train(m, ds, tp, &res);
    char name[32];
    snprintf(name, sizeof name, "%s", m->name);
    elbo_model_free(m);
    elbo_dataset_free(ds);
    if (st != ELBO_OK) return args_fail(ARGS_RUNTIME, "train: %s", elbo_last_error());
    if (res.interrupted)
        fprintf(stderr, "elbo: train: interrupted at step %lld; checkpoint %s (continue with "
                "--resume %s)\n", (long long)res.step, res.ckpt_path, res.ckpt_path);
    printf("{\"model\":\"%s\", \"steps\":%lld, \"loss\":%.6f, \"seconds\":%.3f, \"out\":", name,
           (long long)res.step, res.loss, res.seconds);
    args_json_string(stdout, tp->out_dir);
    printf("%s}\n", res.interrupted ? ", \"interrupted\":true" : "");
    return res.interrupted ? 130 : 0;
}

int cmd_train(int argc, char **argv) {
    if (argc > 0 && (!strcmp(argv[0], "diffusion") || !strcmp(argv[0], "ncsn") || !strcmp(argv[0], "sde")))
        return cmd_train_diffusion(argc, argv);
    if (argc > 0 && !strcmp(argv[0], "classifier")) return cmd_train_classifier(argc, argv);
    elbo_train_params tp;
    elbo_train_params_init(&tp);
    const char *binarize_s = "dynamic", *hidden_s = NULL, *arch_s = "mlp", *lik_s = "bernoulli",
               *est_s = "B", *act_s = "relu", *logvar_min_s = NULL;
    int64_t kl_warmup = 0;
    int samples = 1, layers = 2;
    const char *z_s = NULL;
    double sigma = 0, beta = 1, free_bits = 0;
    train_common tc;
    arg_flag flags[48];
    int n_flags = train_common_flags(flags, &tc);
    const arg_flag model_flags[] = {
        args_string("--binarize", &binarize_s, "MODE",
                    "bernoulli pixels -> x: dynamic (Bernoulli(p/255) each step) | static "
                    "(p >= 128) | none (p/255)",
                    "dynamic"),
        args_string("--hidden", &hidden_s, "LIST",
                    "hidden widths, encoder order (vae-mlp: one width; vae conv: one, the "
                    "fully connected layer)",
                    "300,300 (vae), 256 (vae conv), 512 (vae-mlp)"),
        args_string("--z", &z_s, "LIST", "latent dimensions (hvae: per layer, bottom first, or "
                    "one size for every layer)", "40 (vae), 64,32 (hvae), 32 (vae-mlp)"),
        args_int("--layers", &layers, 1, ELBO_HVAE_MAX_LAYERS, "L", "hvae: stochastic layers",
                 "2"),
        args_string("--arch", &arch_s, "A", "vae: mlp | conv (two stride-2 3x3 convolutions "
                    "each way, h and w divisible by 4)", "mlp"),
        args_string("--act", &act_s, "F", "vae: activation between layers (relu, silu, gelu, "
                    "tanh, softplus, elu)", "relu"),
        args_string("--likelihood", &lik_s, "L", "vae: bernoulli | gaussian | logistic",
                    "bernoulli"),
        flag_double("--sigma", &sigma, "vae gaussian: fixed std of p(x|z) (0: learned per "
                    "pixel)", "0"),
        args_string("--estimator", &est_s, "E", "vae: A | B | iwae (see above)", "B"),
        args_int("--samples", &samples, 1, 100000, "N",
                 "vae: samples of z per example (L for A and B, k for iwae)", "1"),
        flag_double("--beta", &beta, "vae: weight of the KL term (beta-VAE; iwae: of "
                    "log p(z) - log q(z|x))", "1"),
        flag_i64("--kl-warmup", &kl_warmup, 0, "vae: beta ramps linearly to --beta over N "
                 "steps (0: off)", "0"),
        flag_double("--free-bits", &free_bits, "vae A/B: nats per latent dimension below which "
                    "its batch-mean KL is not pushed down (0: off)", "0"),
        args_string("--logvar-min", &logvar_min_s, "X", "vae: floor on the encoder's "
                    "log-variance", "none"),
    };
    for (size_t j = 0; j < sizeof model_flags / sizeof model_flags[0]; j++)
        flags[n_flags++] = model_flags[j];
    const char *pos[1];
    int np = 0;
    int r = args_parse("train", TRAIN_USAGE, flags, n_flags, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "train: which model? (%s)", elbo_model_names());
    const int is_hvae = !strcmp(pos[0], "hvae"), is_vae = is_hvae || !strcmp(pos[0], "vae");
    if (!is_vae && strcmp(pos[0], "vae-mlp"))
        return args_fail(ARGS_USAGE, "train: unknown model \"%s\" (known: %s)", pos[0],
                         elbo_model_names());
    char default_out[64];
    if ((r = train_common_check(&tc, pos[0], default_out, sizeof default_out))) return r;
    const char *data = tc.data;
    if (!is_vae) { /* the vae flags do not apply to the benchmark model */
        static const char *vae_only[] = {"--arch", "--act", "--likelihood", "--sigma",
                                         "--estimator", "--samples", "--beta", "--kl-warmup",
                                         "--free-bits", "--logvar-min", "--layers"};
        for (size_t j = 0; j < sizeof vae_only / sizeof vae_only[0]; j++)
            if (args_seen(flags, n_flags, vae_only[j]))
                return args_fail(ARGS_USAGE, "%s: applies to models vae and hvae, not %s",
                                 vae_only[j], pos[0]);
    }
    elbo_binarize binarize;
    if (elbo_binarize_parse(binarize_s, &binarize) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--binarize: expected dynamic, static or none, got \"%s\"",
                         binarize_s);
    int widths[ELBO_VAE_MAX_HIDDEN], n_widths = -1;
    if (hidden_s && (r = parse_widths(hidden_s, widths, ELBO_VAE_MAX_HIDDEN, &n_widths)))
        return r;
    if (!is_vae && n_widths >= 0 && n_widths != 1)
        return args_fail(ARGS_USAGE, "--hidden: vae-mlp takes one width, got \"%s\"", hidden_s);
    if (is_hvae && args_seen(flags, n_flags, "--arch"))
        return args_fail(ARGS_USAGE, "--arch: hvae's conditionals are MLPs (use model vae for conv)");
    if (!is_hvae && args_seen(flags, n_flags, "--layers"))
        return args_fail(ARGS_USAGE, "--layers: applies to model hvae, not %s", pos[0]);
    int zs[ELBO_HVAE_MAX_LAYERS], n_z = 0;
    if (z_s) {
        if (args_int_list(z_s, zs, is_hvae ? ELBO_HVAE_MAX_LAYERS : 1, &n_z) || n_z < 1)
            return args_fail(ARGS_USAGE, "--z: expected %s in 1..65536, got \"%s\"",
                             is_hvae ? "one size or one per layer" : "one latent size", z_s);
        if (is_hvae && n_z != 1 && n_z != layers)
            return args_fail(ARGS_USAGE, "--z: %d sizes for %d layers (give one, or one per "
                             "layer)", n_z, layers);
    }
    int z = n_z ? zs[0] : 0;
    elbo_vae_config vc;
    elbo_vae_config_init(&vc);
    if (is_vae) {
        if (elbo_vae_arch_parse(arch_s, &vc.arch) != ELBO_OK ||
            elbo_activation_parse(act_s, &vc.act) != ELBO_OK ||
            elbo_likelihood_parse(lik_s, &vc.obj.likelihood) != ELBO_OK ||
            elbo_vae_estimator_parse(est_s, &vc.obj.estimator) != ELBO_OK)
            return args_fail(ARGS_USAGE, "--%s", elbo_last_error());
        if (vc.arch == ELBO_VAE_CONV) {
            vc.n_hidden = 1;
            vc.hidden[0] = 256;
        }
        if (n_widths >= 0) {
            vc.n_hidden = n_widths;
            memcpy(vc.hidden, widths, (size_t)n_widths * sizeof(int));
        }
        if (z) vc.z = z;
        vc.obj.sigma = (float)sigma;
        vc.obj.binarize = binarize;
        vc.obj.samples = samples;
        vc.obj.beta = (float)beta;
        vc.obj.kl_warmup = kl_warmup;
        vc.obj.free_bits = (float)free_bits;
        if (logvar_min_s) {
            double lv;
            if ((r = args_parse_double("--logvar-min", logvar_min_s, -1, &lv)) != 0) return r;
            vc.obj.logvar_min = (float)lv;
        }
        if (vc.obj.likelihood != ELBO_LIK_BERNOULLI && args_seen(flags, n_flags, "--binarize"))
            return args_fail(ARGS_USAGE, "--binarize: applies to --likelihood bernoulli only");
        if (vc.obj.likelihood != ELBO_LIK_GAUSSIAN && sigma != 0)
            return args_fail(ARGS_USAGE, "--sigma: applies to --likelihood gaussian only");
    }
    elbo_data_spec spec;
    if (elbo_data_spec_parse(data, &spec) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--data: %s", elbo_last_error());
    if (spec.kind == ELBO_DATA_TOY)
        return args_fail(ARGS_USAGE, "--data: %s: %s trains on images, not toy points", data,
                         pos[0]);

    elbo_dataset ds;
    if (elbo_dataset_load(&spec, ELBO_SPLIT_TRAIN, &ds) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "train: %s", elbo_last_error());
    elbo_model *m = NULL;
    elbo_status mst;
    if (is_hvae) {
        elbo_hvae_config hc;
        elbo_hvae_config_init(&hc);
        hc.c = ds.c;
        hc.h = ds.h;
        hc.w = ds.w;
        hc.layers = layers;
        for (int t = 0; t < layers; t++)
            hc.z[t] = n_z == 0 ? (t < 2 ? hc.z[t] : 32) : n_z == 1 ? zs[0] : zs[t];
        if (n_widths >= 0) {
            hc.n_hidden = n_widths;
            memcpy(hc.hidden, widths, (size_t)n_widths * sizeof(int));
        }
        hc.act = vc.act;
        hc.obj = vc.obj;
        mst = elbo_hvae_model_new(&hc, tc.seed, &m);
    } else if (is_vae) {
        vc.c = ds.c;
        vc.h = ds.h;
        vc.w = ds.w;
        mst = elbo_vae_model_new(&vc, tc.seed, &m);
    } else {
        elbo_vae_mlp_config cfg;
        elbo_vae_mlp_config_init(&cfg);
        cfg.binarize = binarize;
        cfg.c = ds.c;
        cfg.h = ds.h;
        cfg.w = ds.w;
        if (n_widths == 1) cfg.hidden = widths[0];
        if (z) cfg.z = z;
        mst = elbo_vae_mlp_model_new(&cfg, tc.seed, &m);
    }
    if (mst != ELBO_OK) {
        elbo_dataset_free(&ds);
        return args_fail(mst == ELBO_ERR_ARG ? ARGS_USAGE : ARGS_RUNTIME, "train: %s",
                         elbo_last_error());
    }
    train_common_apply(&tc, &tp);
    return train_run_and_report(m, &ds, &tp);
}

/* ---- sample ----------------------------------------------------------------------------- */
static const char *SAMPLE_USAGE =
    "usage: elbo sample CKPT --out FILE.png|FILE.npy [flags]\n"
    "\n"
    "Builds the model of checkpoint CKPT from its metadata (EMA weights when it has them)\n"
    "and draws --n samples (vae-mlp: the decoder's Bernoulli means sigmoid(dec(z)),\n"
    "z ~ N(0, I)). A .png is a grid of --nrow images per row (2 px padding); a .npy is\n"
    "uint8 (N, C, H, W) = round(255 mean). Prints {\"ckpt\", \"model\", \"step\", \"n\", \"out\"}\n"
    "and, for diffusion, score and SDE models, \"sampler\" and \"nfe\" (network evaluations).\n"
    "Diffusion samplers, all from x_1 ~ N(0, prior_std^2) down to t = 0, then x0_hat(x_0, 0):\n"
    "  ancestral  p(x_s|x_t) = q(x_s|x_t, x0_hat) on --steps levels (DDPM)\n"
    "  ddim       DDIM with --eta (0: deterministic)\n"
    "  heun       Heun's method on the probability-flow ODE (2 evaluations a step)\n"
    "  em         Euler-Maruyama on the reverse SDE dx = [f x - g^2 score] dt + g dw\n"
    "  pc         predictor-corrector (score SDE): --corrector-steps Langevin steps at --snr,\n"
    "             then the --predictor (reverse diffusion, euler, or none)\n"
    "  langevin   annealed Langevin dynamics (NCSN): --steps noise levels from t = 1 to 0,\n"
    "             --langevin-steps updates of step --langevin-eps sigma_i^2 / sigma_L^2 each\n"
    "  ode        the probability-flow ODE by adaptive Dormand-Prince 5(4) (--rtol, --atol)\n"
    "The score is (alpha x0_hat - x_t) / sigma^2 of the model's prediction, so every sampler\n"
    "runs every diffusion, NCSN and SDE checkpoint.\n";

int cmd_sample(int argc, char **argv) {
    const char *out = NULL, *npy_out = NULL, *sampler = "ancestral", *eta_s = "0",
               *guidance_s = "0", *trajectory = NULL, *mmd_data = NULL, *mmd_width_s = "0.5";
    const char *predictor = "reverse", *snr_s = "0.16", *leps_s = "2e-5", *rtol_s = "1e-5",
               *atol_s = "1e-5";
    const char *class_s = NULL, *classifier = NULL;
    int n = 64, nrow = 8, threads = 0, steps = 0, corrector_steps = 1, langevin_steps = 100;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_int("--n", &n, 1, 1 << 20, "N", "samples to draw", "64"),
        args_out(&out, "output file, .png or .npy", "required"),
        args_string("--npy", &npy_out, "FILE", "also write the .npy here", "none"),
        args_seed(&seed, "0"),
        args_int("--nrow", &nrow, 1, 65536, "K", "images per row of the PNG grid", "8"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
        args_string("--sampler", &sampler, "S", "diffusion: ancestral | ddim | heun | em | pc | "
                    "langevin | ode", "ancestral"),
        args_int("--steps", &steps, 1, 1000000, "K", "diffusion: sampler steps (langevin: noise "
                 "levels)", "the model's T (langevin: its --levels, or 10), or 100"),
        args_string("--eta", &eta_s, "X", "diffusion ddim: noise in [0, 1] (0: deterministic)", "0"),
        args_string("--predictor", &predictor, "P", "pc: reverse (reverse diffusion) | euler | none",
                    "reverse"),
        args_int("--corrector-steps", &corrector_steps, 0, 100000, "C", "pc: Langevin corrector "
                 "steps per level", "1"),
        args_string("--snr", &snr_s, "R", "pc: the corrector's signal-to-noise ratio", "0.16"),
        args_int("--langevin-steps", &langevin_steps, 1, 1000000, "T", "langevin: updates per "
                 "noise level", "100"),
        args_string("--langevin-eps", &leps_s, "E", "langevin: step a_i = E sigma_i^2 / sigma_L^2",
                    "2e-5"),
        args_string("--rtol", &rtol_s, "X", "ode: relative tolerance of Dormand-Prince 5(4)", "1e-5"),
        args_string("--atol", &atol_s, "X", "ode: absolute tolerance", "1e-5"),
        args_string("--guidance", &guidance_s, "W", "without --classifier: the classifier-free "
                    "weight w (Ho & Salimans: eps = (1 + w) eps(x, y) - w eps(x), w = 0 is "
                    "p(x|y)); with --classifier: the classifier scale s (Dhariwal & Nichol: "
                    "score + s grad log p(y|x_t), s = 1 is p(x|y))", "0"),
        args_string("--class", &class_s, "K", "the class of every sample, or all: one row of "
                    "--nrow per class (--n ignored)", "none: unconditional"),
        args_string("--classifier", &classifier, "CKPT", "classifier guidance by this noisy "
                    "classifier (elbo train classifier --noisy)", "none"),
        args_string("--trajectory", &trajectory, "FILE.png", "diffusion: x_t and x0_hat of the "
                    "first 8 samples at about 10 times, rows x_t / x0_hat", "none"),
        args_string("--data", &mmd_data, "toy:NAME", "point models: report MMD^2 of the samples "
                    "against N test points of this toy (Gaussian kernel, --mmd-width)", "none"),
        args_string("--mmd-width", &mmd_width_s, "H", "the kernel width h of --data's MMD^2", "0.5"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("sample", SAMPLE_USAGE, flags, (int)(sizeof flags / sizeof flags[0]), argc,
                       argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "sample: which checkpoint? (see elbo sample --help)");
    if (!out) return args_fail(ARGS_USAGE, "sample: --out: required (see elbo sample --help)");
    if ((r = cli_check_image_out("--out", out, 0)) || (r = cli_check_image_out("--npy", npy_out, 1)))
        return r;
    if (threads > 0) elbo_set_threads(threads);
    elbo_model *m = NULL;
    int used_ema = 0;
    int64_t step = 0;
    if (elbo_model_load(pos[0], &m, &used_ema, &step) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "sample: %s", elbo_last_error());
    if (!m->sample) {
        int rc = args_fail(ARGS_RUNTIME, "sample: %s: model %s cannot sample", pos[0], m->name);
        elbo_model_free(m);
        return rc;
    }
    const int is_diffusion = elbo_diffusion_config_of(m) != NULL;
    static const char *diffusion_only[] = {"--sampler", "--steps", "--eta", "--guidance",
                                           "--class", "--classifier", "--trajectory", "--predictor",
                                           "--corrector-steps", "--snr", "--langevin-steps",
                                           "--langevin-eps", "--rtol", "--atol"};
    for (size_t j = 0; !is_diffusion && j < sizeof diffusion_only / sizeof *diffusion_only; j++)
        if (args_seen(flags, (int)(sizeof flags / sizeof flags[0]), diffusion_only[j])) {
            int rc = args_fail(ARGS_USAGE, "%s: applies to diffusion models, not %s",
                               diffusion_only[j], m->name);
            elbo_model_free(m);
            return rc;
        }
    double eta = 0, guidance = 0, mmd_width = 0.5;
    elbo_data_spec mmd_spec;
    if (mmd_data && (elbo_data_spec_parse(mmd_data, &mmd_spec) != ELBO_OK ||
                     mmd_spec.kind != ELBO_DATA_TOY || m->transform != ELBO_PIXELS_IDENTITY)) {
        int rc = args_fail(ARGS_USAGE, "--data: %s: MMD is for a model of toy:NAME points", mmd_data);
        elbo_model_free(m);
        return rc;
    }
    if ((r = args_parse_double("--mmd-width", mmd_width_s, 1, &mmd_width)) ||
        (r = args_parse_double("--eta", eta_s, 0, &eta)) ||
        (eta > 1 && (r = args_fail(ARGS_USAGE, "--eta: expected a value in [0, 1], got %g", eta))) ||
        (r = args_parse_double("--guidance", guidance_s, -1, &guidance)) ||
        (trajectory && (r = cli_check_image_out("--trajectory", trajectory, 0)))) {
        elbo_model_free(m);
        return r;
    }
    elbo_sampler_params sp;
    elbo_sampler_params_init(&sp);
    sp.steps = steps;
    sp.eta = eta;
    sp.seed = seed;
    sp.corrector_steps = corrector_steps;
    sp.langevin_steps = langevin_steps;
    if (is_diffusion &&
        ((elbo_sampler_parse(sampler, &sp.kind) != ELBO_OK &&
          (r = args_fail(ARGS_USAGE, "--%s", elbo_last_error()))) ||
         (elbo_pc_predictor_parse(predictor, &sp.predictor) != ELBO_OK &&
          (r = args_fail(ARGS_USAGE, "--%s", elbo_last_error()))) ||
         (r = args_parse_double("--snr", snr_s, 1, &sp.snr)) ||
         (r = args_parse_double("--langevin-eps", leps_s, 1, &sp.langevin_eps)) ||
         (r = args_parse_double("--rtol", rtol_s, 1, &sp.rtol)) ||
         (r = args_parse_double("--atol", atol_s, 1, &sp.atol)) ||
         (sp.kind == ELBO_SAMPLER_PC && sp.predictor == ELBO_PC_NONE && corrector_steps == 0 &&
          (r = args_fail(ARGS_USAGE, "--corrector-steps: 0 with --predictor none does nothing"))) ||
         (sp.kind == ELBO_SAMPLER_LANGEVIN && steps == 1 &&
          (r = args_fail(ARGS_USAGE, "--steps: langevin needs at least 2 noise levels"))))) {
        elbo_model_free(m);
        return r;
    }
    /* --class K or all, against the classes of the guide (classifier or model) */
    elbo_model *clf = NULL;
    if (is_diffusion && classifier && elbo_model_load(classifier, &clf, NULL, NULL) != ELBO_OK) {
        elbo_model_free(m);
        return args_fail(ARGS_RUNTIME, "--classifier: %s", elbo_last_error());
    }
    const elbo_classifier_config *clf_cfg = clf ? elbo_classifier_config_of(clf) : NULL;
    if (clf && !clf_cfg) {
        elbo_model_free(clf);
        elbo_model_free(m);
        return args_fail(ARGS_USAGE, "--classifier: %s is not a classifier checkpoint", classifier);
    }
    const int n_classes = clf_cfg ? clf_cfg->classes : is_diffusion ? elbo_diffusion_config_of(m)->classes : 0;
    int32_t *labels = NULL;
    if (class_s) {
        long long k = -1;
        const int all = !strcmp(class_s, "all");
        if (!all && (r = args_parse_ll("--class", class_s, 0, 100000, &k))) {
            elbo_model_free(clf);
            elbo_model_free(m);
            return r;
        }
        if (n_classes < 1 || (!all && k >= n_classes)) {
            r = n_classes < 1 ? args_fail(ARGS_USAGE, "--class: the model is not class-conditional "
                                          "(or give a --classifier)")
                              : args_fail(ARGS_USAGE, "--class: %lld not in [0, %d)", k, n_classes);
            elbo_model_free(clf);
            elbo_model_free(m);
            return r;
        }
        if (all) n = n_classes * nrow;
        labels = malloc((size_t)n * sizeof *labels);
        for (int i = 0; labels && i < n; i++) labels[i] = all ? i / nrow : (int32_t)k;
    }
    int nfe = 0;
    const int64_t per = m->c * m->h * m->w;
    float *x = malloc((size_t)(n * per) * sizeof *x);
    elbo_ctx *ctx = elbo_ctx_new(0);
    elbo_status st = (!x || !ctx || (class_s && !labels))
                         ? elbo_error(ELBO_ERR_NOMEM, "out of memory for %d samples", n)
                         : ELBO_OK;
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    if (st == ELBO_OK && is_diffusion) {
        int rc = cli_sample_diffusion(m, n, &sp, guidance, labels, clf, x, trajectory, &nfe);
        if (rc) {
            elbo_ctx_free(ctx);
            free(x);
            free(labels);
            elbo_model_free(clf);
            elbo_model_free(m);
            return rc;
        }
    } else if (st == ELBO_OK) {
        st = m->sample(ctx, m, n, &rng, x);
    }
    if (m->transform == ELBO_PIXELS_IDENTITY) { /* points: float32 (n, D) .npy or a scatter plot */
        const int64_t shape[2] = {n, per};
        const char *paths[2] = {out, npy_out};
        for (int k = 0; k < 2 && st == ELBO_OK; k++) {
            if (!paths[k]) continue;
            if (cli_ends_with(paths[k], ".npy")) st = elbo_npy_write(paths[k], ELBO_NPY_F32, 2, shape, x);
            else if (per == 2) st = elbo_plot_scatter(paths[k], x, n, NULL, NULL);
            else st = elbo_error(ELBO_ERR_ARG, "%s: points of %lld values have no picture (write .npy)",
                                 paths[k], (long long)per);
        }
    } else {
        if (st == ELBO_OK) st = cli_write_images(out, x, n, m->c, m->h, m->w, nrow);
        if (st == ELBO_OK && npy_out) st = cli_write_images(npy_out, x, n, m->c, m->h, m->w, nrow);
    }
    /* the requested labels beside the .npy (NAME.labels.npy, int64), for elbo eval-samples */
    char labels_path[4096] = "";
    const char *npy_path = cli_ends_with(out, ".npy") ? out : npy_out;
    if (st == ELBO_OK && labels && npy_path) {
        snprintf(labels_path, sizeof labels_path, "%.*s.labels.npy", (int)(strlen(npy_path) - 4),
                 npy_path);
        int64_t *l64 = malloc((size_t)n * sizeof *l64);
        const int64_t lshape[1] = {n};
        for (int i = 0; l64 && i < n; i++) l64[i] = labels[i];
        st = l64 ? elbo_npy_write(labels_path, ELBO_NPY_I64, 1, lshape, l64)
                 : elbo_error(ELBO_ERR_NOMEM, "sample: out of memory");
        free(l64);
        if (st != ELBO_OK) unlink(npy_path); /* both or neither */
    }
    double mmd2 = NAN;
    if (st == ELBO_OK && mmd_data) { /* against n points of the toy's test split */
        elbo_dataset ref;
        st = elbo_dataset_toy(mmd_spec.toy, n, 0, ELBO_SPLIT_TEST, &ref);
        if (st == ELBO_OK) mmd2 = elbo_mmd2_rbf(x, n, ref.points, n, per, mmd_width);
        if (st == ELBO_OK && isnan(mmd2)) st = elbo_error(ELBO_ERR_ARG, "--data: MMD needs --n >= 2");
        elbo_dataset_free(&ref);
    }
    const char *name = m->name;
    int status = 0;
    if (st != ELBO_OK) status = args_fail(ARGS_RUNTIME, "sample: %s", elbo_last_error());
    else {
        printf("{\"ckpt\":");
        args_json_string(stdout, pos[0]);
        printf(", \"model\":\"%s\", \"step\":%lld, \"ema\":%s, \"n\":%d, \"out\":", name,
               (long long)step, used_ema ? "true" : "false", n);
        args_json_string(stdout, out);
        if (is_diffusion) printf(", \"sampler\":\"%s\", \"nfe\":%d", elbo_sampler_name(sp.kind), nfe);
        if (is_diffusion && (guidance != 0 || clf))
            printf(", \"guidance\":\"%s\", \"%s\":%g", clf ? "classifier" : "classifier-free",
                   clf ? "classifier_scale" : "guidance_weight", guidance);
        if (labels_path[0]) {
            printf(", \"labels\":");
            args_json_string(stdout, labels_path);
        }
        if (mmd_data) printf(", \"mmd2\":%.6g, \"mmd_width\":%g", mmd2, mmd_width);
        printf("}\n");
    }
    elbo_ctx_free(ctx);
    free(x);
    free(labels);
    elbo_model_free(clf);
    elbo_model_free(m);
    return status;
}

/* ---- eval ------------------------------------------------------------------------------- */
static const char *EVAL_USAGE =
    "usage: elbo eval CKPT --data SPEC [flags]\n"
    "\n"
    "The bounds of checkpoint CKPT's model on a split of SPEC, in nats per example (the mean\n"
    "over every item of the split; every draw, z and the dynamic binarization's pixels, from\n"
    "--seed): the negative ELBO with its reconstruction term E_q[-log p(x|z)] and\n"
    "KL(q(z|x) || p(z)) shown separately, and bits/dim = nats / (D ln 2), D = C H W.\n"
    "vae, hvae: with --iwae K, the k samples z_1..z_K ~ q(z|x) per example give the reconstruction\n"
    "term and -IWAE_K = -log (1/K) sum_i p(x, z_i) / q(z_i|x), an upper bound on -log p(x)\n"
    "that tightens as K grows (Burda et al. 2016; batched, log-sum-exp in double), and\n"
    "active_units counts the latent dimensions with Var_x(E_q[z_u|x]) > 0.01.\n"
    "Prints {\"ckpt\", \"model\", \"step\", \"data\", \"split\", \"n\", \"neg_elbo_nats\",\n"
    "\"recon_nats\", \"kl_nats\", \"bits_per_dim\"} and, for vae, \"iwae_k\",\n"
    "\"nll_iwae_nats\", \"nll_iwae_bits_per_dim\", \"active_units\"; hvae also \"kl_1_nats\" ..\n"
    "\"kl_L_nats\" (one KL term per layer) and \"active_1\" .. \"active_L\".\n"
    "diffusion: the VDM bound -log p(x) <= prior + diffusion + recon, each shown (\"prior_nats\",\n"
    "\"diffusion_nats\", \"recon_nats\"), the diffusion term at one time per image.\n"
    "--likelihood ode (diffusion, score and SDE checkpoints): log p(x) through the\n"
    "probability-flow ODE dx/dt = f x - g^2 score / 2, integrated from t = 0 to 1 by adaptive\n"
    "Dormand-Prince 5(4) (--rtol, --atol) with the instantaneous change of variables, the\n"
    "divergence by Hutchinson-Skilling (--probe rademacher|gaussian, one probe per image held\n"
    "along the path) or exactly (--probe exact, 2-D points). 8-bit images are dequantized\n"
    "uniformly within their bins (y = x + (2/255)(u - 1/2)) and scored as -(log p(y) + D\n"
    "log(2/255)), an upper bound on -log P(x) that cannot go below 0 in expectation (Song et\n"
    "al. 2021 app. D.2; Theis et al. 2016). Over the first --n items: prints \"nll_nats\"\n"
    "(\"nll_se\" its standard error), \"bits_per_dim\", \"nfe\" (network VJPs per batch)\n"
    "and, on the same items, the ELBO's \"elbo_bits_per_dim\". --dequant process instead takes\n"
    "the model's own q(x_0|x) = N(alpha_0 x, sigma_0^2) as the dequantizer with its 256-bin\n"
    "decoder: -log P(x) <= E_q[-log p(x|x_0) - log p_ode(x_0) + log q(x_0|x)], the ELBO with\n"
    "its prior and diffusion terms replaced by the ODE's exact log p(x_0).\n";

/* --likelihood ode: the ODE bound and, on the same items, the ELBO. */
static int eval_ode(elbo_model *m, elbo_dataset *ds, const char *ckpt, const char *data,
                    const char *split_s, int64_t step, int batch, uint64_t seed,
                    const char *probe_s, const char *rtol_s, const char *atol_s,
                    const char *dequant_s) {
    elbo_dequant_kind dq;
    if (elbo_dequant_parse(dequant_s, &dq) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--%s", elbo_last_error());
    elbo_ode_likelihood_params lp;
    elbo_ode_likelihood_params_init(&lp);
    int r;
    if (elbo_probe_parse(probe_s, &lp.probe) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--%s", elbo_last_error());
    if ((r = args_parse_double("--rtol", rtol_s, 1, &lp.rtol)) ||
        (r = args_parse_double("--atol", atol_s, 1, &lp.atol)))
        return r;
    if (lp.probe == ELBO_PROBE_EXACT && m->c * m->h * m->w > 64)
        return args_fail(ARGS_USAGE, "--probe exact: %lld values per item (at most 64); use "
                         "rademacher or gaussian", (long long)(m->c * m->h * m->w));
    lp.seed = seed;
    elbo_diffusion_ode_nll res;
    double means[ELBO_MODEL_MAX_FIGURES] = {0};
    if (elbo_diffusion_ode_likelihood(m, ds, batch, &lp, dq, seed, &res) != ELBO_OK ||
        elbo_evaluate(m, ds, batch, seed, means) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "eval: %s: %s", ckpt, elbo_last_error());
    const double D = (double)(m->c * m->h * m->w);
    printf("{\"ckpt\":");
    args_json_string(stdout, ckpt);
    printf(", \"model\":\"%s\", \"step\":%lld, \"data\":", m->name, (long long)step);
    args_json_string(stdout, data);
    printf(", \"split\":\"%s\", \"n\":%lld, \"likelihood\":\"ode\", \"dequant\":\"%s\", \"probe\":\"%s\", "
           "\"rtol\":%g, \"atol\":%g, \"nll_nats\":%.6f, \"nll_se\":%.6f, \"bits_per_dim\":%.6f, "
           "\"prior_nats\":%.6f, \"nfe\":%.1f, \"elbo_bits_per_dim\":%.6f}\n",
           split_s, (long long)res.n, elbo_diffusion_config_of(m)->discrete ? dequant_s : "none",
           elbo_probe_name(lp.probe), lp.rtol, lp.atol, res.nll_nats,
           res.nll_se, res.bits_per_dim, res.prior_nats, (double)res.nfe / res.batches,
           means[0] / (D * log(2.0)));
    return 0;
}

int cmd_eval(int argc, char **argv) {
    const char *data = NULL, *split_s = "test", *likelihood = "elbo", *probe_s = "rademacher";
    const char *rtol_s = "1e-5", *atol_s = "1e-5", *dequant_s = "uniform";
    int batch = 128, threads = 0, iwae = 1, toy_n = 10000;
    int64_t n_items = 0;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_string("--data", &data, "SPEC", "the dataset (" ELBO_DATA_SPEC_FORMS ")",
                    "required"),
        args_string("--split", &split_s, "SPLIT", "train | test", "test"),
        args_batch(&batch, "128"),
        args_int("--iwae", &iwae, 1, 1000000, "K", "vae: importance samples per example", "1"),
        args_int("--toy-n", &toy_n, 1, 1 << 28, "N", "toy:NAME: points in the split (drawn from "
                 "--seed; the test split apart from the train one)", "10000"),
        args_string("--likelihood", &likelihood, "KIND", "elbo (the model's bounds) | ode "
                    "(diffusion: the probability-flow ODE)", "elbo"),
        args_string("--probe", &probe_s, "KIND", "ode: rademacher | gaussian | exact",
                    "rademacher"),
        args_string("--dequant", &dequant_s, "KIND", "ode, 8-bit data: uniform | process (the "
                    "model's q(x_0|x) and decoder)", "uniform"),
        args_string("--rtol", &rtol_s, "X", "ode: relative tolerance", "1e-5"),
        args_string("--atol", &atol_s, "X", "ode: absolute tolerance", "1e-5"),
        {"--n", ARG_I64, &n_items, "N", "evaluate the first N items only (0: all)", "0", 0,
         (long long)1 << 40, 0},
        args_seed(&seed, "0"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const char *pos[1];
    int np = 0;
    int r = args_parse("eval", EVAL_USAGE, flags, (int)(sizeof flags / sizeof flags[0]), argc,
                       argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "eval: which checkpoint? (see elbo eval --help)");
    if (!data) return args_fail(ARGS_USAGE, "eval: --data: required (see elbo eval --help)");
    const int ode = !strcmp(likelihood, "ode");
    if (!ode && strcmp(likelihood, "elbo"))
        return args_fail(ARGS_USAGE, "--likelihood: expected elbo or ode, got \"%s\"", likelihood);
    elbo_data_split split;
    elbo_data_spec spec;
    if ((r = cli_parse_data(data, split_s, &spec, &split))) return r;
    if (threads > 0) elbo_set_threads(threads);
    elbo_model *m = NULL;
    int64_t step = 0;
    if (elbo_model_load(pos[0], &m, NULL, &step) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "eval: %s", elbo_last_error());
    const int points = m->transform == ELBO_PIXELS_IDENTITY;
    if ((spec.kind == ELBO_DATA_TOY) != points) {
        int rc = args_fail(ARGS_USAGE, "--data: %s: model %s of %s takes %s", data, m->name, pos[0],
                           points ? "toy:NAME points" : "images");
        elbo_model_free(m);
        return rc;
    }
    if (elbo_classifier_config_of(m) && !ode) { /* a classifier: its test accuracy */
        elbo_dataset cds;
        double cm[ELBO_MODEL_MAX_FIGURES] = {0};
        elbo_status cst = elbo_dataset_load(&spec, split, &cds);
        if (cst == ELBO_OK && n_items > 0 && n_items < cds.n) cds.n = n_items;
        if (cst == ELBO_OK) cst = elbo_evaluate(m, &cds, batch, seed, cm);
        int rc = 0;
        if (cst != ELBO_OK) rc = args_fail(ARGS_RUNTIME, "eval: %s: %s", pos[0], elbo_last_error());
        else {
            printf("{\"ckpt\":");
            args_json_string(stdout, pos[0]);
            printf(", \"model\":\"classifier\", \"step\":%lld, \"data\":", (long long)step);
            args_json_string(stdout, data);
            printf(", \"split\":\"%s\", \"n\":%lld, \"noisy\":%s, \"xent_nats\":%.6f, "
                   "\"accuracy\":%.4f}\n", split_s, (long long)cds.n,
                   elbo_classifier_config_of(m)->noisy ? "true" : "false", cm[0], cm[1]);
        }
        elbo_dataset_free(&cds);
        elbo_model_free(m);
        return rc;
    }
    if (!m->eval || m->n_eval < 3) {
        int rc = args_fail(ARGS_RUNTIME, "eval: %s: model %s has no ELBO", pos[0], m->name);
        elbo_model_free(m);
        return rc;
    }
    const int has_iwae = m->n_eval >= 5;
    if (iwae > 1 && !has_iwae) {
        int rc = args_fail(ARGS_USAGE, "--iwae: model %s has no importance-weighted bound", m->name);
        elbo_model_free(m);
        return rc;
    }
    if (ode && !elbo_diffusion_config_of(m)) {
        int rc = args_fail(ARGS_USAGE, "--likelihood ode: %s is a %s model, not a diffusion, "
                           "score or SDE model", pos[0], m->name);
        elbo_model_free(m);
        return rc;
    }
    m->eval_samples = iwae;
    elbo_dataset ds;
    if ((points ? elbo_dataset_toy(spec.toy, toy_n, seed, split, &ds)
                : elbo_dataset_load(&spec, split, &ds)) != ELBO_OK) {
        elbo_model_free(m);
        return args_fail(ARGS_RUNTIME, "eval: %s", elbo_last_error());
    }
    if (n_items > 0 && n_items < ds.n) ds.n = n_items; /* the first N items */
    if (ode) {
        int rc = eval_ode(m, &ds, pos[0], data, split_s, step, batch, seed, probe_s, rtol_s, atol_s,
                          dequant_s);
        elbo_dataset_free(&ds);
        elbo_model_free(m);
        return rc;
    }
    double means[ELBO_MODEL_MAX_FIGURES] = {0};
    elbo_status st = elbo_evaluate(m, &ds, batch, seed, means);
    int status = 0;
    if (st != ELBO_OK) status = args_fail(ARGS_RUNTIME, "eval: %s: %s", pos[0], elbo_last_error());
    else {
        const double D = (double)(m->c * m->h * m->w);
        printf("{\"ckpt\":");
        args_json_string(stdout, pos[0]);
        printf(", \"model\":\"%s\", \"step\":%lld, \"data\":", m->name, (long long)step);
        args_json_string(stdout, data);
        if (elbo_diffusion_config_of(m)) /* prior KL, diffusion term, reconstruction */
            printf(", \"split\":\"%s\", \"n\":%lld, \"neg_elbo_nats\":%.6f, \"prior_nats\":%.6f, "
                   "\"diffusion_nats\":%.6f, \"recon_nats\":%.6f, \"bits_per_dim\":%.6f",
                   split_s, (long long)ds.n, means[0], means[1], means[2], means[3],
                   means[0] / (D * log(2.0)));
        else
        printf(", \"split\":\"%s\", \"n\":%lld, \"neg_elbo_nats\":%.6f, \"recon_nats\":%.6f, "
               "\"kl_nats\":%.6f, \"bits_per_dim\":%.6f",
               split_s, (long long)ds.n, means[0], means[1], means[2], means[0] / (D * log(2.0)));
        if (has_iwae)
            printf(", \"iwae_k\":%d, \"nll_iwae_nats\":%.6f, \"nll_iwae_bits_per_dim\":%.6f, "
                   "\"active_units\":%d",
                   iwae, means[3], means[3] / (D * log(2.0)), (int)means[4]);
        for (int i = 5; i < m->n_eval; i++) /* per-layer figures: kl_t in nats, active_t */
            if (!strncmp(m->eval_names[i], "kl_", 3))
                printf(", \"%s_nats\":%.6f", m->eval_names[i], means[i]);
            else
                printf(", \"%s\":%d", m->eval_names[i], (int)means[i]);
        printf("}\n");
    }
    elbo_dataset_free(&ds);
    elbo_model_free(m);
    return status;
}
