/* elbo plots: scatter plots of 2-D samples, heat maps of densities, score (vector) fields and
 * loss curves, drawn by a small rasteriser of our own and written as RGB PNG through
 * elbo_png_write (so every file write is atomic).
 *
 * Conventions
 * - An image is W x H RGB, white background. The plot rectangle ("frame", 1 px, black) has
 *   its corners at pixels (pad, pad) and (W-1-pad, H-1-pad); tick marks (4 px) point outward
 *   from its bottom and left edges. Data x grows to the right, y grows upward: x = xmin maps
 *   to column pad, x = xmax to column W-1-pad, y = ymin to row H-1-pad, y = ymax to row pad
 *   (pixel centres at integer coordinates; with log_y the map is linear in log10 y).
 * - Everything is clipped to the inside of the frame, so no coordinate writes outside the
 *   buffer; points or vertices with NaN or inf coordinates (or y <= 0 on a log axis) are
 *   skipped; a point whose centre is outside the axis range is not drawn.
 * - Rendering is deterministic: the same inputs give the same bytes.
 * - Errors follow io.h: ELBO_ERR_ARG (message names the argument), ELBO_ERR_NOMEM,
 *   ELBO_ERR_IO / ELBO_ERR_FORMAT (message starts with the file's path). Nothing exits.
 * - Colours: labels and series use matplotlib's "tab10" palette (label k: colour k mod 10);
 *   heat maps use matplotlib's viridis, as a 16-entry table (entries 0, 17, ..., 255 of the
 *   256-entry table) with linear interpolation.
 */
#ifndef ELBO_PLOT_H
#define ELBO_PLOT_H

#include <stdint.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest width or height of a plot, largest point / grid / series element count. */
#define ELBO_PLOT_MAX_SIDE 16384
#define ELBO_PLOT_MAX_ELEMS ((int64_t)1 << 31)

typedef struct {
    int width, height; /* image size, pixels; 2 pad + 3 <= side <= ELBO_PLOT_MAX_SIDE */
    int pad;           /* pixels from the image edge to the frame, >= 0 */
    /* axis range: has_range 1 uses [xmin, xmax] x [ymin, ymax] (xmin < xmax, ymin < ymax,
     * finite; with log_y, 0 < ymin); 0 takes it from the finite data with a `margin`
     * fraction of the span added on each side (a degenerate span gets +-0.5, or a decade
     * on a log axis; no finite data gives [0, 1]). */
    int has_range;
    double xmin, xmax, ymin, ymax;
    double margin;  /* 0 <= margin <= 1; default 0.05 */
    float radius;   /* point disc radius in pixels, 0.5 .. 64; default 2 */
    float alpha;    /* point opacity, 0 < alpha <= 1 (blended over what is drawn); default 1 */
    int log_y;      /* lines: 1 for a log10 y axis (ticks at decades) */
    int ticks;      /* linear axes: about this many tick marks, 0 .. 50 (0: none); default 5 */
    /* density: has_vrange 1 normalises values by [vmin, vmax] (vmin < vmax, finite),
     * 0 by the finite min..max of the field (a constant field maps to the colour map's
     * middle). Values outside are clamped; NaN cells are left white. */
    int has_vrange;
    double vmin, vmax;
} elbo_plot_opts;

/* Fills o with the defaults: 480 x 480, pad 24, range from the data, margin 0.05, radius 2,
 * alpha 1, linear y, 5 ticks, value range from the field. */
void elbo_plot_opts_default(elbo_plot_opts *o);

/* The tab10 colour of label k (k mod 10; negative k: gray 127). */
void elbo_plot_palette(int k, uint8_t rgb[3]);
/* Viridis at t in [0, 1] (clamped; NaN gives t = 0): (68, 1, 84) at 0, (253, 231, 37) at 1. */
void elbo_plot_viridis(double t, uint8_t rgb[3]);

/* ---- a canvas, for composing plots in memory ------------------------------------------ */
typedef struct {
    int width, height, pad;
    uint8_t *rgb; /* height x width x 3, row-major; malloc'd, owned */
    double xmin, xmax, ymin, ymax; /* the axis range (ymin, ymax > 0 with log_y) */
    int log_y, ticks;
} elbo_plot;

/* A white canvas of o's size (o NULL: defaults) with the axis range [xmin, xmax] x
 * [ymin, ymax] (o's has_range is ignored here; the range is required). Errors: ELBO_ERR_ARG
 * (bad size, pad, range, NULL p), ELBO_ERR_NOMEM. On failure p->rgb is NULL. */
elbo_status elbo_plot_init(elbo_plot *p, const elbo_plot_opts *o, double xmin, double xmax,
                           double ymin, double ymax);
/* Releases p->rgb. Safe on a zeroed or freed plot. */
void elbo_plot_free(elbo_plot *p);
/* Pixel coordinates (column px, row py; fractional) of the data point (x, y). Returns 0
 * when x or y is not finite (or y <= 0 on a log axis), 1 otherwise. */
int elbo_plot_map(const elbo_plot *p, double x, double y, double *px, double *py);

/* Draws n points xy (n, 2) as discs of radius `radius` px, opacity alpha (blended; a disc's
 * edge pixels by 4x4 supersampled coverage), colour tab10[labels[i]] if labels is non-NULL,
 * else `rgb` (NULL: tab10[0]). 0 <= n <= ELBO_PLOT_MAX_ELEMS; xy may be NULL only if n is 0.
 * Errors: ELBO_ERR_ARG. */
elbo_status elbo_plot_points(elbo_plot *p, const float *xy, int64_t n, const int32_t *labels,
                             const uint8_t *rgb, float radius, float alpha);
/* Fills the plot rectangle with a heat map of f (ny, nx), row-major, f[j nx + i] the value
 * at x_i = xmin + i (xmax - xmin) / (nx - 1), y_j = ymin + j (ymax - ymin) / (ny - 1) (the
 * canvas range; j = 0 is the bottom row), bilinearly interpolated (nearest cell next to a
 * NaN), normalised by [vmin, vmax] if vmin < vmax else by the finite min..max of f, mapped
 * through viridis. nx, ny >= 1, nx ny <= ELBO_PLOT_MAX_ELEMS. Errors: ELBO_ERR_ARG. */
elbo_status elbo_plot_heat(elbo_plot *p, const float *f, int64_t nx, int64_t ny, double vmin,
                           double vmax);
/* Draws n arrows with tails at (x[i], y[i]) and direction (u[i], v[i]) (data units): each is
 * scale (u, v) long in data units, or, with scale <= 0 (or not finite), scaled so that the
 * longest arrow is 0.9 of the grid spacing sqrt(plot area / n) px. A small two-stroke head
 * sits at the tip. Arrows with a non-finite component or zero length are skipped.
 * 0 <= n <= ELBO_PLOT_MAX_ELEMS; arrays may be NULL only if n is 0. rgb NULL: black.
 * Errors: ELBO_ERR_ARG. */
elbo_status elbo_plot_arrows(elbo_plot *p, const float *x, const float *y, const float *u,
                             const float *v, int64_t n, double scale, const uint8_t *rgb);
/* Draws the polyline (x[i], y[i]), i < n (x NULL: x = i), 1 px (Bresenham), clipped to
 * the frame; a non-finite vertex (or y <= 0 on a log axis) breaks the line.
 * 1 <= n <= ELBO_PLOT_MAX_ELEMS. rgb NULL: tab10[0]. Errors: ELBO_ERR_ARG. */
elbo_status elbo_plot_polyline(elbo_plot *p, const float *x, const float *y, int64_t n,
                               const uint8_t *rgb);
/* Draws the frame and tick marks (linear axes: about p->ticks "nice" 1-2-5 steps; log axis:
 * every decade), over whatever is drawn. Idempotent. */
void elbo_plot_frame(elbo_plot *p);
/* elbo_plot_frame, then writes the canvas to `path` as an RGB PNG (atomic).
 * Errors: ELBO_ERR_ARG (NULL path or canvas), ELBO_ERR_IO. */
elbo_status elbo_plot_save(elbo_plot *p, const char *path);

/* ---- one-call plots, each to an RGB PNG at `path` (atomic); o NULL: defaults --------- */
/* A scatter plot of xy (n, 2) float32, 1 <= n <= ELBO_PLOT_MAX_ELEMS, labels (n) or NULL
 * (then every point tab10[0]); o's radius and alpha; the range from o (has_range) or the
 * data. Errors: ELBO_ERR_ARG (NULL path or xy, bad n or options), ELBO_ERR_NOMEM,
 * ELBO_ERR_IO. */
elbo_status elbo_plot_scatter(const char *path, const float *xy, int64_t n,
                              const int32_t *labels, const elbo_plot_opts *o);
/* A heat map of the field f (ny, nx) (layout as elbo_plot_heat) evaluated over
 * [xmin, xmax] x [ymin, ymax] (finite, xmin < xmax, ymin < ymax: the plot's range; o's
 * has_range is ignored), normalised by o's vmin..vmax or the field's min..max, with the
 * points xy (n_points, 2) (samples) drawn over it in tab10[1] (orange) with o's radius and
 * alpha when n_points > 0 (xy may be NULL when n_points is 0). Errors: ELBO_ERR_ARG, ELBO_ERR_NOMEM,
 * ELBO_ERR_IO. */
elbo_status elbo_plot_density(const char *path, const float *f, int64_t nx, int64_t ny,
                              double xmin, double xmax, double ymin, double ymax,
                              const float *xy, int64_t n_points, const elbo_plot_opts *o);
/* A vector (score) field: n arrows at (x[i], y[i]) with direction (u[i], v[i]), auto-scaled
 * to the grid spacing (see elbo_plot_arrows), in black. The range is o's (has_range) or
 * that of the tails with o's margin. 1 <= n <= ELBO_PLOT_MAX_ELEMS.
 * Errors: ELBO_ERR_ARG, ELBO_ERR_NOMEM, ELBO_ERR_IO. */
elbo_status elbo_plot_vector_field(const char *path, const float *x, const float *y,
                                   const float *u, const float *v, int64_t n,
                                   const elbo_plot_opts *o);
/* Line plot of n_series series y (n_series, n) row-major against x (n) (NULL: x = i),
 * series k in tab10[k]; o->log_y for a log y axis (values <= 0 skipped). Range from o or
 * the finite data (log axis: margin in log10 units). 1 <= n_series <= 64,
 * 1 <= n, n_series n <= ELBO_PLOT_MAX_ELEMS. Errors: ELBO_ERR_ARG, ELBO_ERR_NOMEM,
 * ELBO_ERR_IO. */
elbo_status elbo_plot_lines(const char *path, const float *x, const float *y,
                            int64_t n_series, int64_t n, const elbo_plot_opts *o);
/* Plots columns of a CSV file as lines. The first line is a header of column names
 * separated by ',' (surrounding spaces and a final '\r' are ignored); every other non-empty
 * line is a data row of exactly as many cells, each a number as strtod reads it (nan, inf
 * allowed; NaN cells are skipped when drawing). `y_columns` is a comma-separated list of
 * names ("loss" or "loss,kl"), at most 64, series k drawn in tab10[k]; NULL or "" plots every
 * column except the x column(s). `x_columns` is NULL or "" (the "step" column, or the row
 * index 0, 1, ... if there is none), one name (x of every series), or one name per series
 * (series k is y_k against x_k: a parametric curve such as a metric-against-metric
 * trade-off). markers != 0 also draws each vertex as a disc of o's radius. The axis range
 * is o's (has_range) or that of every series' finite data with o's margin; o->log_y for a
 * log y axis. Errors: ELBO_ERR_ARG (NULL path, unknown column name: message names it, a
 * count of x columns that is neither 1 nor that of the series, bad options); ELBO_ERR_IO
 * (the CSV cannot be opened or read, or the PNG cannot be written); ELBO_ERR_FORMAT (an
 * empty file, a header missing or with a numeric or empty name, a non-numeric cell, a row
 * with a different number of cells, no data rows): the message is
 * "<csv_path>:<line>: <reason>". */
elbo_status elbo_plot_csv(const char *csv_path, const char *png_path, const char *x_columns,
                          const char *y_columns, int markers, const elbo_plot_opts *o);
/* A training log's loss curves: elbo_plot_csv(csv_path, png_path, NULL, columns, 0, o), i.e.
 * columns against "step". */
elbo_status elbo_plot_loss_csv(const char *csv_path, const char *png_path, const char *columns,
                               const elbo_plot_opts *o);

#ifdef __cplusplus
}
#endif
#endif
