/* `elbo score-field`: the energy and score view of a 2-D model (a diffusion, NCSN or SDE
 * checkpoint of toy points, or a Gaussian mixture in closed form): its density with the
 * score field over it, and Langevin trajectories without and with noise annealing. */
#include "elbo.h"
#include "elbo/train.h"

#include "args.h"
#include "cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *SCORE_FIELD_USAGE =
    "usage: elbo score-field [CKPT] --out FILE.png [flags]\n"
    "\n"
    "Draws three panels side by side for a 2-D model (a diffusion, NCSN or SDE checkpoint of\n"
    "toy:NAME points), or, with --true ncsn|8gaussians and no CKPT, for a Gaussian mixture\n"
    "whose noised score is known in closed form (ncsn: Song & Ermon's 1/5 N((-5,-5), I) +\n"
    "4/5 N((5,5), I); 8gaussians: toy:8gaussians) under a VE process (--sigma-min,\n"
    "--sigma-max):\n"
    "  1. the density p(x) at t = 0 as a heat map (a checkpoint's by its probability-flow\n"
    "     ODE with the exact trace; the mixture's in closed form) under the score field\n"
    "     grad log p_t(x) = (alpha x0_hat - x) / sigma^2 at time --t (arrows);\n"
    "  2. Langevin dynamics x <- x + a/2 score + sqrt(a) z at t = 0 only, step --plain-step,\n"
    "     --levels x --langevin-steps updates from --n uniform starting points: --paths of them\n"
    "     drawn as lines, every end point as a dot;\n"
    "  3. annealed Langevin dynamics (NCSN) from the same points: --levels levels t_i from 1\n"
    "     to 0, --langevin-steps updates of step --langevin-eps sigma_i^2 / sigma_L^2 each\n"
    "     (the lines join each chain's position at the end of every level).\n"
    "Without annealing the chains stay in the basin they start in, so the modes' weights\n"
    "follow their basins' areas, not the density (Song & Ermon 2019, sec. 3.2); annealing\n"
    "recovers them. Prints {\"out\", \"source\", \"n\", and for --true the share of end points\n"
    "per mixture component, \"weights\", \"plain_shares\", \"annealed_shares\"}.\n";

#define PANEL 480
#define MAX_PATHS 64

/* The denoiser of either source. */
typedef struct {
    elbo_denoiser_fn fn;
    void *user;
} source;

/* Langevin from x (n points) recording the first `paths` chains' positions into
 * track[(k) paths 2]: plain (one level, step a), after every update; annealed over the
 * process's levels, at the end of each level (the jumps at high noise would fill the panel).
 * *n_track gets the number of records. */
static elbo_status run_langevin(const elbo_process *p, const source *src, int anneal, int levels,
                                int steps, double a_plain, double eps, float *x, int64_t n,
                                float *work, int paths, float *track, int64_t *n_track,
                                elbo_rng *rng) {
    elbo_noise_level last, lt;
    elbo_status st = elbo_process_at(p, 0.0, &last);
    int k = 0;
    for (int i = levels - 1; st == ELBO_OK && i >= 0; i--) {
        if ((st = elbo_process_at(p, anneal ? (double)i / (levels - 1) : 0.0, &lt))) break;
        double a = anneal ? eps * lt.sigma * lt.sigma / (last.sigma * last.sigma) : a_plain;
        for (int s = 0; s < steps && st == ELBO_OK; s++) {
            st = elbo_langevin(src->fn, src->user, &lt, a, 1, rng, x, 2 * n, work, NULL);
            if (!anneal || s == steps - 1)
                memcpy(track + (int64_t)k++ * paths * 2, x, (size_t)paths * 2 * sizeof *x);
        }
    }
    *n_track = k;
    return st;
}

/* Share of the n points whose most responsible component is j, into share[0..k). */
static void component_shares(const elbo_gmm *g, const float *x, int64_t n, double *share) {
    elbo_noise_level clean = {0};
    clean.alpha = 1;
    double r[ELBO_GMM_MAX_K];
    for (int j = 0; j < g->k; j++) share[j] = 0;
    for (int64_t i = 0; i < n; i++) {
        double xd[2] = {x[2 * i], x[2 * i + 1]};
        elbo_gmm_log_density(g, &clean, xd, r);
        int best = 0;
        for (int j = 1; j < g->k; j++)
            if (r[j] > r[best]) best = j;
        share[best] += 1.0 / (double)n;
    }
}

static void print_shares(const char *name, const double *v, int k) {
    printf(", \"%s\":[", name);
    for (int j = 0; j < k; j++) printf("%s%.4f", j ? "," : "", v[j]);
    printf("]");
}

int cmd_score_field(int argc, char **argv) {
    const char *out = NULL, *true_s = NULL, *t_s = "0", *range_s = NULL, *plain_s = "0.01",
               *eps_s = "2e-5", *smin_s = "0.01", *smax_s = "10";
    int n = 1000, paths = 8, levels = 10, lsteps = 100, grid = 48, threads = 0;
    uint64_t seed = 0;
    arg_flag flags[] = {
        args_out(&out, "output PNG (three panels)", "required"),
        args_string("--true", &true_s, "MIX", "no CKPT: the mixture ncsn | 8gaussians", "none"),
        args_string("--t", &t_s, "T", "time of the score field's arrows, in [0, 1]", "0"),
        args_string("--range", &range_s, "R", "the square [-R, R]^2", "8 (ncsn), else 4"),
        args_int("--grid", &grid, 4, 256, "G", "density and arrow grid per side", "48"),
        args_int("--n", &n, 1, 100000, "N", "Langevin chains (uniform starts in the square)", "1000"),
        args_int("--paths", &paths, 0, MAX_PATHS, "K", "chains drawn as lines", "8"),
        args_int("--levels", &levels, 2, 100000, "L", "noise levels of the annealed chains", "10"),
        args_int("--langevin-steps", &lsteps, 1, 100000, "T", "updates per level (plain: L T in all)",
                 "100"),
        args_string("--plain-step", &plain_s, "A", "step a of Langevin without annealing", "0.01"),
        args_string("--langevin-eps", &eps_s, "E", "annealed step a_i = E sigma_i^2 / sigma_L^2",
                    "2e-5"),
        args_string("--sigma-min", &smin_s, "X", "--true: VE sigma at t = 0", "0.01"),
        args_string("--sigma-max", &smax_s, "X", "--true: VE sigma at t = 1", "10"),
        args_seed(&seed, "0"),
        args_threads(&threads, "0: OMP_NUM_THREADS or all cores"),
    };
    const int nf = (int)(sizeof flags / sizeof flags[0]);
    const char *pos[1];
    int np = 0;
    int r = args_parse("score-field", SCORE_FIELD_USAGE, flags, nf, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (!out) return args_fail(ARGS_USAGE, "score-field: --out: required");
    if ((r = cli_check_image_out("--out", out, 0))) return r;
    if (strlen(out) < 4 || strcmp(out + strlen(out) - 4, ".png"))
        return args_fail(ARGS_USAGE, "--out: %s: score-field writes a .png", out);
    if ((np > 0) == (true_s != NULL))
        return args_fail(ARGS_USAGE, "score-field: give a checkpoint or --true ncsn|8gaussians, "
                         "not %s", np ? "both" : "neither");
    if (true_s && strcmp(true_s, "ncsn") && strcmp(true_s, "8gaussians"))
        return args_fail(ARGS_USAGE, "--true: expected ncsn or 8gaussians, got \"%s\"", true_s);
    if (paths > n) paths = n;
    double t_field, range, plain_a, eps, smin, smax;
    if ((r = args_parse_double("--t", t_s, 0, &t_field)) ||
        (r = args_parse_double("--plain-step", plain_s, 1, &plain_a)) ||
        (r = args_parse_double("--langevin-eps", eps_s, 1, &eps)) ||
        (r = args_parse_double("--sigma-min", smin_s, 1, &smin)) ||
        (r = args_parse_double("--sigma-max", smax_s, 1, &smax)))
        return r;
    if (t_field > 1) return args_fail(ARGS_USAGE, "--t: expected a time in [0, 1], got %g", t_field);
    range = true_s && !strcmp(true_s, "ncsn") ? 8 : 4;
    if (range_s && (r = args_parse_double("--range", range_s, 1, &range))) return r;
    if (threads > 0) elbo_set_threads(threads);

    /* the source: a mixture or a 2-D checkpoint */
    double w8[8], mu8[16], sd8[8];
    static double wn[2] = {0.2, 0.8}, mun[4] = {-5, -5, 5, 5}, sdn[2] = {1, 1};
    elbo_gmm g = {2, 2, wn, mun, sdn, -1};
    if (true_s && !strcmp(true_s, "8gaussians")) elbo_gmm_8gaussians(&g, w8, mu8, sd8);
    elbo_process proc;
    elbo_model *m = NULL;
    elbo_ctx *ctx = NULL;
    elbo_diffusion_denoiser_state ds = {0};
    source src = {elbo_gmm_denoiser, &g};
    if (true_s) {
        elbo_process_init(&proc);
        elbo_process_set_schedule(&proc, "ve");
        proc.sigma_min = smin, proc.sigma_max = smax;
        if (elbo_process_check(&proc) != ELBO_OK)
            return args_fail(ARGS_USAGE, "--sigma-min, --sigma-max: %s", elbo_last_error());
    } else {
        int64_t step;
        if (elbo_model_load(pos[0], &m, NULL, &step) != ELBO_OK)
            return args_fail(ARGS_RUNTIME, "score-field: %s", elbo_last_error());
        const elbo_diffusion_config *c = elbo_diffusion_config_of(m);
        if (!c || c->c * c->h * c->w != 2 || c->discrete) {
            int rc = args_fail(ARGS_USAGE, "score-field: %s is not a model of 2-D points", pos[0]);
            elbo_model_free(m);
            return rc;
        }
        proc = c->process;
        ctx = elbo_ctx_new(0);
        src.fn = elbo_diffusion_denoiser;
        src.user = &ds;
    }
    const int64_t G = grid, NG = G * G, steps_total = (int64_t)levels * lsteps;
    const int64_t nmax = NG > n ? NG : n;
    float *gx = malloc((size_t)(2 * NG) * sizeof *gx), *dens = malloc((size_t)NG * sizeof *dens);
    float *u = malloc((size_t)(2 * NG) * sizeof *u), *ax = malloc((size_t)(4 * NG) * sizeof *ax);
    float *x0 = malloc((size_t)(2 * n) * sizeof *x0), *xp = malloc((size_t)(2 * n) * sizeof *xp);
    float *xa = malloc((size_t)(2 * n) * sizeof *xa), *work = malloc((size_t)(4 * nmax) * sizeof *work);
    float *track = malloc((size_t)(2 * steps_total * (paths ? paths : 1)) * sizeof *track);
    float *tx = malloc((size_t)steps_total * sizeof *tx), *ty = malloc((size_t)steps_total * sizeof *ty);
    double *logp = malloc((size_t)NG * sizeof *logp);
    uint8_t *img = malloc((size_t)PANEL * 3 * PANEL * 3);
    elbo_plot pl[3] = {{0}};
    elbo_status st = (!gx || !dens || !u || !ax || !x0 || !xp || !xa || !work || !track || !tx ||
                      !ty || !logp || !img || (!true_s && !ctx))
                         ? elbo_error(ELBO_ERR_NOMEM, "score-field: out of memory")
                         : ELBO_OK;
    /* panel 1: density at t = 0 and the score at --t on the grid */
    for (int64_t j = 0; j < G; j++)
        for (int64_t i = 0; i < G && gx; i++) {
            gx[2 * (j * G + i)] = (float)(-range + 2 * range * i / (G - 1));
            gx[2 * (j * G + i) + 1] = (float)(-range + 2 * range * j / (G - 1));
        }
    if (st == ELBO_OK && true_s) {
        elbo_noise_level clean = {0};
        clean.alpha = 1;
        for (int64_t q = 0; q < NG; q++) {
            double xd[2] = {gx[2 * q], gx[2 * q + 1]};
            dens[q] = (float)exp(elbo_gmm_log_density(&g, &clean, xd, NULL));
        }
    } else if (st == ELBO_OK) {
        elbo_ode_likelihood_params lp;
        elbo_ode_likelihood_params_init(&lp);
        lp.probe = ELBO_PROBE_EXACT;
        ds = (elbo_diffusion_denoiser_state){m, ctx, NG, NULL, 0.0};
        st = elbo_ode_log_likelihood(&proc, &lp, elbo_diffusion_denoiser_vjp, &ds, gx, NG, 2, logp,
                                     NULL, NULL, NULL);
        for (int64_t q = 0; st == ELBO_OK && q < NG; q++) dens[q] = (float)exp(logp[q]);
    }
    elbo_noise_level lf;
    if (st == ELBO_OK) st = elbo_process_at(&proc, t_field, &lf);
    if (st == ELBO_OK) {
        ds.batch = NG;
        st = src.fn(src.user, gx, 2 * NG, &lf, u); /* x0_hat, then the score */
        for (int64_t q = 0; st == ELBO_OK && q < NG; q++) {
            ax[q] = gx[2 * q], ax[NG + q] = gx[2 * q + 1];
            ax[2 * NG + q] = (float)((lf.alpha * u[2 * q] - gx[2 * q]) / (lf.sigma * lf.sigma));
            ax[3 * NG + q] = (float)((lf.alpha * u[2 * q + 1] - gx[2 * q + 1]) / (lf.sigma * lf.sigma));
        }
    }
    /* panels 2 and 3: Langevin from the same uniform starts */
    elbo_rng rng;
    elbo_rng_init(&rng, seed);
    if (st == ELBO_OK) {
        elbo_rng_uniform(&rng, x0, (size_t)(2 * n), (float)-range, (float)range);
        memcpy(xp, x0, (size_t)(2 * n) * sizeof *x0);
        memcpy(xa, x0, (size_t)(2 * n) * sizeof *x0);
        ds.batch = n;
    }
    static const uint8_t white[3] = {255, 255, 255}, black[3] = {0, 0, 0};
    for (int k = 0; k < 3 && st == ELBO_OK; k++) {
        elbo_plot_opts o;
        elbo_plot_opts_default(&o);
        o.width = o.height = PANEL;
        if ((st = elbo_plot_init(&pl[k], &o, -range, range, -range, range))) break;
        if (k == 0) {
            if ((st = elbo_plot_heat(&pl[0], dens, G, G, 0, 0))) break;
            st = elbo_plot_arrows(&pl[0], ax, ax + NG, ax + 2 * NG, ax + 3 * NG, NG, 0, white);
            continue;
        }
        float *x = k == 1 ? xp : xa;
        int64_t nt = 0;
        st = run_langevin(&proc, &src, k == 2, levels, lsteps, plain_a, eps, x, n, work, paths,
                          track, &nt, &rng);
        for (int q = 0; st == ELBO_OK && q < paths; q++) {
            for (int64_t s = 0; s < nt; s++) {
                tx[s] = track[(s * paths + q) * 2];
                ty[s] = track[(s * paths + q) * 2 + 1];
            }
            uint8_t rgb[3];
            elbo_plot_palette(q, rgb);
            st = elbo_plot_polyline(&pl[k], tx, ty, nt, rgb);
        }
        if (st == ELBO_OK) st = elbo_plot_points(&pl[k], x, n, NULL, black, 1.5f, 0.6f);
    }
    if (st == ELBO_OK) {
        /* the three panels side by side */
        for (int k = 0; k < 3; k++) {
            elbo_plot_frame(&pl[k]);
            for (int row = 0; row < PANEL; row++)
                memcpy(img + ((size_t)row * PANEL * 3 + (size_t)k * PANEL) * 3,
                       pl[k].rgb + (size_t)row * PANEL * 3, (size_t)PANEL * 3);
        }
        st = elbo_png_write(out, img, PANEL, 3 * PANEL, 3);
    }
    int status = 0;
    if (st != ELBO_OK) status = args_fail(ARGS_RUNTIME, "score-field: %s", elbo_last_error());
    else {
        printf("{\"out\":");
        args_json_string(stdout, out);
        printf(", \"source\":");
        args_json_string(stdout, true_s ? true_s : pos[0]);
        printf(", \"n\":%d", n);
        if (true_s) {
            double sp[ELBO_GMM_MAX_K], sa[ELBO_GMM_MAX_K];
            component_shares(&g, xp, n, sp);
            component_shares(&g, xa, n, sa);
            print_shares("weights", g.weight, g.k);
            print_shares("plain_shares", sp, g.k);
            print_shares("annealed_shares", sa, g.k);
        }
        printf("}\n");
    }
    for (int k = 0; k < 3; k++) elbo_plot_free(&pl[k]);
    free(gx), free(dens), free(u), free(ax), free(x0), free(xp), free(xa), free(work);
    free(track), free(tx), free(ty), free(logp), free(img);
    elbo_ctx_free(ctx);
    elbo_model_free(m);
    return status;
}
