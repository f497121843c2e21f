/* `elbo train classifier` (clean, or noisy for classifier guidance) and `elbo eval-samples`
 * (class accuracy, a Frechet distance on the clean classifier's features, the entropy of its
 * predicted classes): the classifiers of include/elbo/classifier.h from the command line. */
#include "elbo.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *TRAIN_CLASSIFIER_USAGE =
    "usage: elbo train classifier --data SPEC [--noisy] [flags]\n"
    "\n"
    "An image classifier p(y | x) on SPEC's labels (images scaled to [-1, 1]): conv_in, one\n"
    "residual block per level (--channels) with 2x2 average pooling between levels, GroupNorm,\n"
    "SiLU, the global mean (the penultimate features) and a linear head. --noisy trains\n"
    "p(y | x_t, t) on x_t = alpha(t) x + sigma(t) eps at uniform times, conditioned on t, for\n"
    "classifier guidance (Dhariwal & Nichol 2021): the process must be the diffusion model's,\n"
    "so give --process-of DIFFUSION_CKPT (or the diffusion flags --schedule, --log-snr-min,\n"
    "--log-snr-max, --beta-min, --beta-max, --sigma-min, --sigma-max). Without --noisy, a\n"
    "classifier of clean images, the measuring stick of elbo eval-samples. elbo eval CKPT\n"
    "--data SPEC reports its test accuracy. The trainer's flags are those of every elbo train.\n";

int cmd_train_classifier(int argc, char **argv) {
    train_common tc;
    arg_flag flags[40];
    int n_flags = train_common_flags(flags, &tc);
    const char *channels_s = "32,64,128", *process_of = NULL, *schedule = "loglinear",
               *dropout_s = "0";
    cli_process_nums pn;
    int noisy = 0, groups = 8, temb = 128;
    const arg_flag model_flags[] = {
        args_bool("--noisy", &noisy, "train on noised images x_t, conditioned on t"),
        args_string("--process-of", &process_of, "CKPT", "--noisy: the noise process of this "
                    "diffusion checkpoint", "none"),
        args_string("--channels", &channels_s, "LIST", "channels per level (at most 4)", "32,64,128"),
        args_int("--groups", &groups, 1, 65536, "G", "GroupNorm groups", "8"),
        args_int("--temb", &temb, 2, 65536, "N", "--noisy: time-embedding width (even)", "128"),
        args_string("--dropout", &dropout_s, "P", "dropout in the residual blocks", "0"),
        args_string("--schedule", &schedule, "S", "--noisy: linear | cosine | loglinear | subvp | ve",
                    "loglinear"),
    };
    for (size_t j = 0; j < sizeof model_flags / sizeof model_flags[0]; j++)
        flags[n_flags++] = model_flags[j];
    n_flags += cli_process_num_flags(flags + n_flags, &pn);
    const char *pos[1];
    int np = 0;
    int r = args_parse("train", TRAIN_CLASSIFIER_USAGE, flags, n_flags, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    char default_out[64];
    if ((r = train_common_check(&tc, "classifier", default_out, sizeof default_out))) return r;
    static const char *noisy_only[] = {"--process-of", "--temb", "--schedule", "--log-snr-min",
                                       "--log-snr-max", "--beta-min", "--beta-max",
                                       "--sigma-min", "--sigma-max"};
    for (size_t j = 0; !noisy && j < sizeof noisy_only / sizeof *noisy_only; j++)
        if (args_seen(flags, n_flags, noisy_only[j]))
            return args_fail(ARGS_USAGE, "%s: applies to --noisy classifiers", noisy_only[j]);
    elbo_classifier_config c;
    elbo_classifier_config_init(&c);
    c.noisy = noisy;
    c.temb = noisy ? temb : 0;
    c.groups = groups;
    double dropout;
    if ((r = args_parse_double("--dropout", dropout_s, 0, &dropout))) return r;
    c.dropout = (float)dropout;
    int n_ch;
    if (args_int_list(channels_s, c.channels, ELBO_CLASSIFIER_MAX_LEVELS, &n_ch) || n_ch < 1)
        return args_fail(ARGS_USAGE, "--channels: expected 1 to %d comma-separated integers, got "
                         "\"%s\"", ELBO_CLASSIFIER_MAX_LEVELS, channels_s);
    c.n_levels = n_ch;
    if (noisy && process_of) {
        static const char *process_flags[] = {"--schedule", "--log-snr-min", "--log-snr-max",
                                              "--beta-min", "--beta-max", "--sigma-min",
                                              "--sigma-max"};
        for (size_t j = 0; j < sizeof process_flags / sizeof *process_flags; j++)
            if (args_seen(flags, n_flags, process_flags[j]))
                return args_fail(ARGS_USAGE, "%s: the process comes from --process-of",
                                 process_flags[j]);
        elbo_model *dm = NULL;
        if (elbo_model_load(process_of, &dm, NULL, NULL) != ELBO_OK)
            return args_fail(ARGS_RUNTIME, "--process-of: %s", elbo_last_error());
        const elbo_diffusion_config *dc = elbo_diffusion_config_of(dm);
        if (!dc || dc->process.schedule == ELBO_SCHEDULE_LEARNED) {
            int rc = args_fail(ARGS_USAGE, "--process-of: %s is %s", process_of,
                               dc ? "a learned schedule (its process moves during training)"
                                  : "not a diffusion checkpoint");
            elbo_model_free(dm);
            return rc;
        }
        c.process = dc->process;
        elbo_model_free(dm);
    } else if (noisy) {
        if (elbo_process_set_schedule(&c.process, schedule) != ELBO_OK)
            return args_fail(ARGS_USAGE, "--%s", elbo_last_error());
        if ((r = cli_process_nums_apply(&pn, &c.process))) return r;
    }
    elbo_data_spec spec;
    if (elbo_data_spec_parse(tc.data, &spec) != ELBO_OK)
        return args_fail(ARGS_USAGE, "--data: %s", elbo_last_error());
    if (spec.kind == ELBO_DATA_TOY)
        return args_fail(ARGS_USAGE, "--data: %s: the classifier takes labelled images", tc.data);
    elbo_dataset ds;
    if (elbo_dataset_load(&spec, ELBO_SPLIT_TRAIN, &ds) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "train: %s", elbo_last_error());
    if (!ds.labels || ds.num_classes < 2) {
        elbo_dataset_free(&ds);
        return args_fail(ARGS_USAGE, "--data: %s has no labels (or one class)", tc.data);
    }
    c.c = ds.c, c.h = ds.h, c.w = ds.w;
    c.classes = ds.num_classes;
    elbo_model *m = NULL;
    if (elbo_classifier_model_new(&c, tc.seed, &m) != ELBO_OK) {
        elbo_dataset_free(&ds);
        return args_fail(ARGS_USAGE, "train: %s", elbo_last_error());
    }
    elbo_train_params tp;
    elbo_train_params_init(&tp);
    train_common_apply(&tc, &tp);
    return train_run_and_report(m, &ds, &tp);
}

/* ---- eval-samples ---------------------------------------------------------------------- */
static const char *EVAL_SAMPLES_USAGE =
    "usage: elbo eval-samples SAMPLES.npy --classifier CLF --data SPEC [flags]\n"
    "\n"
    "Measures a set of samples (uint8 (N, C, H, W) .npy, as elbo sample writes them) with the\n"
    "clean classifier CLF (elbo train classifier without --noisy):\n"
    "  accuracy      the share classified as the class they were drawn for: the labels of\n"
    "                --labels, or of SAMPLES.labels.npy, which elbo sample writes with --class\n"
    "  frechet       the Frechet distance between Gaussians fitted to CLF's penultimate\n"
    "                features of the samples and of the first --n-ref test images of SPEC:\n"
    "                |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2). This is FID's\n"
    "                formula on another network's features: it is NOT Inception FID and cannot\n"
    "                be compared with published FIDs, only between runs measured by one CLF\n"
    "  entropy_nats  the entropy of the histogram of CLF's predicted classes (log K when the\n"
    "                classes are balanced; lower means less diverse)\n"
    "Prints {\"samples\", \"classifier\", \"n\", \"accuracy\" (null without labels), \"frechet\",\n"
    "\"n_ref\", \"entropy_nats\", \"entropy_max_nats\"}.\n";

/* logits (B, K) and features (B, F) of n images x (n, D) in [-1, 1], in batches of 256. */
static elbo_status classify_all(elbo_model *clf, elbo_ctx *ctx, const float *x, int64_t n,
                                float *logits, float *features) {
    const int64_t D = clf->c * clf->h * clf->w, K = elbo_classifier_config_of(clf)->classes,
                  F = elbo_classifier_feature_dim(clf);
    for (int64_t i = 0; i < n; i += 256) {
        int64_t b = n - i < 256 ? n - i : 256;
        elbo_status st = elbo_classifier_forward(ctx, clf, x + i * D, b, NULL,
                                                 logits ? logits + i * K : NULL, features + i * F);
        if (st) return st;
    }
    return ELBO_OK;
}

int cmd_eval_samples(int argc, char **argv) {
    const char *clf_path = NULL, *data = NULL, *labels_path = NULL;
    int threads = 0;
    int64_t n_ref = 10000;
    arg_flag flags[] = {
        args_string("--classifier", &clf_path, "CKPT", "the clean classifier", "required"),
        args_string("--data", &data, "SPEC", "the reference images' dataset (its test split)",
                    "required"),
        args_string("--labels", &labels_path, "FILE", "the requested labels (.npy, int64 or "
                    "uint8)", "SAMPLES.labels.npy if present"),
        {"--n-ref", ARG_I64, &n_ref, "N", "reference test images", "10000", 2, (long long)1 << 30, 0},
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const int nf = (int)(sizeof flags / sizeof flags[0]);
    const char *pos[1];
    int np = 0;
    int r = args_parse("eval-samples", EVAL_SAMPLES_USAGE, flags, nf, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "eval-samples: which samples? (a .npy)");
    if (!clf_path) return args_fail(ARGS_USAGE, "eval-samples: --classifier: required");
    if (!data) return args_fail(ARGS_USAGE, "eval-samples: --data: required");
    if (threads > 0) elbo_set_threads(threads);
    elbo_data_split split;
    elbo_data_spec spec;
    if ((r = cli_parse_data(data, "test", &spec, &split))) return r;
    elbo_model *clf = NULL;
    if (elbo_model_load(clf_path, &clf, NULL, NULL) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "eval-samples: %s", elbo_last_error());
    const elbo_classifier_config *cc = elbo_classifier_config_of(clf);
    if (!cc || cc->noisy) {
        int rc = args_fail(ARGS_USAGE, "--classifier: %s is %s", clf_path,
                           cc ? "a noisy classifier (train one without --noisy)" : "not a classifier");
        elbo_model_free(clf);
        return rc;
    }
    elbo_npy_array s = {0}, lab = {0};
    char auto_labels[4096] = "";
    int status = 0;
    elbo_dataset ds = {0};
    float *x = NULL, *fs = NULL, *fr = NULL, *logits = NULL, *xr = NULL;
    double *mu1 = NULL, *work = NULL;
    int32_t *want = NULL;
    elbo_ctx *ctx = NULL;
    if (elbo_npy_read(pos[0], &s) != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "eval-samples: %s", elbo_last_error());
        goto done;
    }
    const int64_t D = clf->c * clf->h * clf->w;
    if (s.dtype != ELBO_NPY_U8 || s.ndim != 4 || s.shape[1] != clf->c || s.shape[2] != clf->h ||
        s.shape[3] != clf->w || s.shape[0] < 2) {
        status = args_fail(ARGS_USAGE, "eval-samples: %s: expected uint8 (N >= 2, %lld, %lld, %lld) "
                           "images, as elbo sample writes", pos[0], (long long)clf->c,
                           (long long)clf->h, (long long)clf->w);
        goto done;
    }
    const int64_t n = s.shape[0];
    if (!labels_path && cli_ends_with(pos[0], ".npy")) {
        snprintf(auto_labels, sizeof auto_labels, "%.*s.labels.npy", (int)(strlen(pos[0]) - 4),
                 pos[0]);
        FILE *f = fopen(auto_labels, "rb");
        if (f) fclose(f), labels_path = auto_labels;
    }
    if (labels_path) {
        if (elbo_npy_read(labels_path, &lab) != ELBO_OK) {
            status = args_fail(ARGS_RUNTIME, "eval-samples: %s", elbo_last_error());
            goto done;
        }
        if (lab.ndim != 1 || lab.shape[0] != n || (lab.dtype != ELBO_NPY_I64 && lab.dtype != ELBO_NPY_U8)) {
            status = args_fail(ARGS_USAGE, "--labels: %s: expected %lld int64 or uint8 labels",
                               labels_path, (long long)n);
            goto done;
        }
        want = malloc((size_t)n * sizeof *want);
        for (int64_t i = 0; want && i < n; i++) {
            int64_t v = lab.dtype == ELBO_NPY_I64 ? ((const int64_t *)lab.data)[i]
                                                  : ((const uint8_t *)lab.data)[i];
            if (v < 0 || v >= cc->classes) {
                status = args_fail(ARGS_USAGE, "--labels: %s: label %lld not in [0, %d)",
                                   labels_path, (long long)v, cc->classes);
                goto done;
            }
            want[i] = (int32_t)v;
        }
    }
    if (elbo_dataset_load(&spec, ELBO_SPLIT_TEST, &ds) != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "eval-samples: %s", elbo_last_error());
        goto done;
    }
    if (ds.c != clf->c || ds.h != clf->h || ds.w != clf->w) {
        status = args_fail(ARGS_USAGE, "--data: %s's images are not the classifier's shape", data);
        goto done;
    }
    if (n_ref > ds.n) n_ref = ds.n;
    const int F = elbo_classifier_feature_dim(clf), K = cc->classes;
    x = malloc((size_t)(n * D) * sizeof *x);
    xr = malloc((size_t)(n_ref * D) * sizeof *xr);
    fs = malloc((size_t)(n * F) * sizeof *fs);
    fr = malloc((size_t)(n_ref * F) * sizeof *fr);
    logits = malloc((size_t)(n * K) * sizeof *logits);
    mu1 = malloc((size_t)(4 * F + 2 * F * F) * sizeof *mu1);
    work = malloc((size_t)(4 * F * F + F) * sizeof *work);
    ctx = elbo_ctx_new(0);
    int64_t *idx = malloc((size_t)n_ref * sizeof *idx);
    if (!x || !xr || !fs || !fr || !logits || !mu1 || !work || !ctx || !idx || (labels_path && !want)) {
        free(idx);
        status = args_fail(ARGS_RUNTIME, "eval-samples: out of memory");
        goto done;
    }
    for (int64_t i = 0; i < n * D; i++) x[i] = ((const uint8_t *)s.data)[i] / 127.5f - 1.0f;
    for (int64_t i = 0; i < n_ref; i++) idx[i] = i;
    elbo_status st = elbo_dataset_batch(&ds, idx, n_ref, clf->transform, 0, NULL, xr, NULL);
    free(idx);
    if (st == ELBO_OK) st = classify_all(clf, ctx, x, n, logits, fs);
    if (st == ELBO_OK) st = classify_all(clf, ctx, xr, n_ref, NULL, fr);
    double *mu2 = mu1 + F, *cov1 = mu2 + F, *cov2 = cov1 + (size_t)F * F, fd = NAN;
    if (st == ELBO_OK) st = elbo_mean_cov(fs, n, F, mu1, cov1);
    if (st == ELBO_OK) st = elbo_mean_cov(fr, n_ref, F, mu2, cov2);
    if (st == ELBO_OK) st = elbo_frechet_distance(mu1, cov1, mu2, cov2, F, work, &fd);
    if (st != ELBO_OK) {
        status = args_fail(ARGS_RUNTIME, "eval-samples: %s", elbo_last_error());
        goto done;
    }
    /* predicted classes: accuracy against the requested labels, entropy of the histogram */
    double hist[ELBO_DATA_MAX_CLASSES] = {0};
    int64_t correct = 0;
    for (int64_t i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (logits[i * K + k] > logits[i * K + best]) best = k;
        if (best < ELBO_DATA_MAX_CLASSES) hist[best] += 1.0 / (double)n;
        if (want && want[i] == best) correct++;
    }
    double ent = 0;
    for (int k = 0; k < K && k < ELBO_DATA_MAX_CLASSES; k++)
        if (hist[k] > 0) ent -= hist[k] * log(hist[k]);
    printf("{\"samples\":");
    args_json_string(stdout, pos[0]);
    printf(", \"classifier\":");
    args_json_string(stdout, clf_path);
    printf(", \"n\":%lld, \"accuracy\":", (long long)n);
    if (want) printf("%.4f", (double)correct / (double)n);
    else printf("null");
    printf(", \"frechet\":%.4f, \"n_ref\":%lld, \"entropy_nats\":%.4f, \"entropy_max_nats\":%.4f}\n",
           fd, (long long)n_ref, ent, log((double)K));
done:
    elbo_npy_free(&s);
    elbo_npy_free(&lab);
    elbo_dataset_free(&ds);
    free(x), free(xr), free(fs), free(fr), free(logits), free(mu1), free(work), free(want);
    elbo_ctx_free(ctx);
    elbo_model_free(clf);
    return status;
}
