/* `elbo plot`: columns of a CSV file (a training log, a sweep table) as lines in a PNG,
 * through elbo_plot_csv. */
#include "elbo.h"

#include "args.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char *PLOT_USAGE =
    "usage: elbo plot FILE.csv --out PLOT.png [--x COLS] [--y COLS] [flags]\n"
    "\n"
    "Draws columns of a CSV file (a header of names, then rows of numbers; a training\n"
    "run's loss.csv, a sweep's table) as lines, series k in matplotlib's tab10 colour k\n"
    "(blue, orange, green, red, ...). --y names the series (default: every column but the\n"
    "x ones). --x is one column, the x of every series (default \"step\", or the row index),\n"
    "or one column per series: series k is y_k against x_k, a parametric curve such as\n"
    "class accuracy against Frechet distance over guidance scales. --markers draws each\n"
    "row's point. The plot has ticks but no text: the caption names the axes and colours.\n"
    "Prints {\"csv\":..., \"out\":..., \"x\":..., \"y\":...}.\n";

int cmd_plot(int argc, char **argv) {
    const char *out = NULL, *xcols = "", *ycols = "";
    int markers = 0, log_y = 0, width = 480, height = 480;
    arg_flag flags[] = {
        args_out(&out, "the PNG to write", "required"),
        args_string("--x", &xcols, "COLS", "x column, or one per --y column", "step, or the row index"),
        args_string("--y", &ycols, "COLS", "comma-separated columns to draw", "all but --x"),
        args_bool("--markers", &markers, "draw a disc at each row's point"),
        args_bool("--log-y", &log_y, "log10 y axis (values <= 0 are skipped)"),
        args_int("--width", &width, 16, ELBO_PLOT_MAX_SIDE, "PX", "image width", "480"),
        args_int("--height", &height, 16, ELBO_PLOT_MAX_SIDE, "PX", "image height", "480"),
    };
    const char *pos[1];
    int n_pos = 0;
    int r = args_parse("plot", PLOT_USAGE, flags, (int)(sizeof flags / sizeof flags[0]), argc,
                       argv, pos, 1, &n_pos);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (n_pos != 1) return args_fail(ARGS_USAGE, "plot: expected one CSV file (see elbo plot --help)");
    if (!out) return args_fail(ARGS_USAGE, "plot: --out: required (see elbo plot --help)");
    if (!cli_ends_with(out, ".png"))
        return args_fail(ARGS_USAGE, "--out: expected a .png file, got \"%s\"", out);
    elbo_plot_opts o;
    elbo_plot_opts_default(&o);
    o.width = width, o.height = height, o.log_y = log_y, o.radius = 3;
    if (elbo_plot_csv(pos[0], out, xcols, ycols, markers, &o) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "plot: %s", elbo_last_error());
    printf("{\"csv\":");
    args_json_string(stdout, pos[0]);
    printf(", \"out\":");
    args_json_string(stdout, out);
    printf(", \"x\":");
    args_json_string(stdout, *xcols ? xcols : "step");
    printf(", \"y\":");
    args_json_string(stdout, *ycols ? ycols : "*");
    printf("}\n");
    return 0;
}
