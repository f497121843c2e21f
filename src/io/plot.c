/* Plots with a small rasteriser: discs by a 4x4 supersampled coverage test, 1-px lines by
 * Bresenham after Cohen-Sutherland clipping to the plot rectangle, heat maps by bilinear
 * interpolation of a grid through viridis. Output is RGB PNG via elbo_png_write (atomic).
 * Pixel (column c, row r) has its centre at (c, r); every write goes through put(), which
 * checks the bounds it is given, so no input can write outside the buffer. */
#include "elbo/plot.h"

#include "elbo/io.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* matplotlib's tab10 (the default qualitative cycle). */
static const uint8_t TAB10[10][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},   {148, 103, 189},
    {140, 86, 75},  {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}};

/* matplotlib's viridis (van der Walt & Smith, CC0): entries 0, 17, 34, ..., 255 of its
 * 256-entry table, rounded to 8 bits; interpolated linearly in between. */
static const uint8_t VIRIDIS16[16][3] = {
    {68, 1, 84},    {72, 26, 108},  {71, 47, 125},  {65, 68, 135},  {57, 86, 140},  {49, 104, 142},
    {42, 120, 142}, {35, 136, 142}, {31, 152, 139}, {34, 168, 132}, {53, 183, 121}, {84, 197, 104},
    {122, 209, 81}, {165, 219, 54}, {210, 226, 27}, {253, 231, 37}};

static const uint8_t BLACK[3] = {0, 0, 0};

static uint8_t u8(double v) {
    if (!(v > 0)) return 0;
    if (v >= 255) return 255;
    return (uint8_t)floor(v + 0.5);
}

void elbo_plot_opts_default(elbo_plot_opts *o) {
    if (!o) return;
    memset(o, 0, sizeof *o);
    o->width = 480;
    o->height = 480;
    o->pad = 24;
    o->margin = 0.05;
    o->radius = 2.0f;
    o->alpha = 1.0f;
    o->ticks = 5;
}

void elbo_plot_palette(int k, uint8_t rgb[3]) {
    if (!rgb) return;
    if (k < 0) {
        rgb[0] = rgb[1] = rgb[2] = 127;
        return;
    }
    memcpy(rgb, TAB10[k % 10], 3);
}

void elbo_plot_viridis(double t, uint8_t rgb[3]) {
    if (!rgb) return;
    if (!(t > 0)) t = 0; /* NaN too */
    if (t > 1) t = 1;
    double s = t * 15;
    int i = (int)s;
    if (i >= 15) i = 14;
    double f = s - i;
    for (int ch = 0; ch < 3; ch++)
        rgb[ch] = u8(VIRIDIS16[i][ch] + f * (VIRIDIS16[i + 1][ch] - VIRIDIS16[i][ch]));
}

/* ---- options -------------------------------------------------------------------------- */
static elbo_status check_opts(const elbo_plot_opts *o) {
    if (o->width < 1 || o->width > ELBO_PLOT_MAX_SIDE)
        return elbo_error(ELBO_ERR_ARG, "plot: width %d out of range 1..%d", o->width,
                          ELBO_PLOT_MAX_SIDE);
    if (o->height < 1 || o->height > ELBO_PLOT_MAX_SIDE)
        return elbo_error(ELBO_ERR_ARG, "plot: height %d out of range 1..%d", o->height,
                          ELBO_PLOT_MAX_SIDE);
    if (o->pad < 0 || 2 * (int64_t)o->pad + 3 > o->width || 2 * (int64_t)o->pad + 3 > o->height)
        return elbo_error(ELBO_ERR_ARG, "plot: pad %d leaves no plot area in %d x %d", o->pad,
                          o->width, o->height);
    if (!(o->margin >= 0 && o->margin <= 1))
        return elbo_error(ELBO_ERR_ARG, "plot: margin %g not in [0, 1]", o->margin);
    if (!(o->radius >= 0.5f && o->radius <= 64))
        return elbo_error(ELBO_ERR_ARG, "plot: radius %g not in [0.5, 64]", (double)o->radius);
    if (!(o->alpha > 0 && o->alpha <= 1))
        return elbo_error(ELBO_ERR_ARG, "plot: alpha %g not in (0, 1]", (double)o->alpha);
    if (o->ticks < 0 || o->ticks > 50)
        return elbo_error(ELBO_ERR_ARG, "plot: ticks %d not in 0..50", o->ticks);
    if (o->has_vrange && !(isfinite(o->vmin) && isfinite(o->vmax) && o->vmin < o->vmax))
        return elbo_error(ELBO_ERR_ARG, "plot: value range vmin %g, vmax %g (need vmin < vmax)",
                          o->vmin, o->vmax);
    if (o->has_range) {
        if (!(isfinite(o->xmin) && isfinite(o->xmax) && o->xmin < o->xmax))
            return elbo_error(ELBO_ERR_ARG, "plot: x range [%g, %g] (need finite xmin < xmax)",
                              o->xmin, o->xmax);
        if (!(isfinite(o->ymin) && isfinite(o->ymax) && o->ymin < o->ymax))
            return elbo_error(ELBO_ERR_ARG, "plot: y range [%g, %g] (need finite ymin < ymax)",
                              o->ymin, o->ymax);
        if (o->log_y && !(o->ymin > 0))
            return elbo_error(ELBO_ERR_ARG, "plot: y range [%g, %g] on a log axis (need ymin > 0)",
                              o->ymin, o->ymax);
    }
    return ELBO_OK;
}

static const elbo_plot_opts *opts_or_default(const elbo_plot_opts *o, elbo_plot_opts *tmp) {
    if (o) return o;
    elbo_plot_opts_default(tmp);
    return tmp;
}

/* ---- canvas --------------------------------------------------------------------------- */
elbo_status elbo_plot_init(elbo_plot *p, const elbo_plot_opts *o, double xmin, double xmax,
                           double ymin, double ymax) {
    if (!p) return elbo_error(ELBO_ERR_ARG, "elbo_plot_init: p is NULL");
    memset(p, 0, sizeof *p);
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st = check_opts(o);
    if (st) return st;
    if (!(isfinite(xmin) && isfinite(xmax) && xmin < xmax))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_init: x range [%g, %g] (need xmin < xmax)",
                          xmin, xmax);
    if (!(isfinite(ymin) && isfinite(ymax) && ymin < ymax))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_init: y range [%g, %g] (need ymin < ymax)",
                          ymin, ymax);
    if (o->log_y && !(ymin > 0))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_init: y range [%g, %g] on a log axis", ymin,
                          ymax);
    size_t bytes = (size_t)o->width * (size_t)o->height * 3;
    p->rgb = malloc(bytes);
    if (!p->rgb) return elbo_error(ELBO_ERR_NOMEM, "plot: out of memory (%zu bytes)", bytes);
    memset(p->rgb, 255, bytes);
    p->width = o->width;
    p->height = o->height;
    p->pad = o->pad;
    p->xmin = xmin;
    p->xmax = xmax;
    p->ymin = ymin;
    p->ymax = ymax;
    p->log_y = o->log_y;
    p->ticks = o->ticks;
    return ELBO_OK;
}

void elbo_plot_free(elbo_plot *p) {
    if (!p) return;
    free(p->rgb);
    p->rgb = NULL;
}

int elbo_plot_map(const elbo_plot *p, double x, double y, double *px, double *py) {
    if (!isfinite(x) || !isfinite(y)) return 0;
    double y0 = p->ymin, y1 = p->ymax;
    if (p->log_y) {
        if (!(y > 0)) return 0;
        y = log10(y);
        y0 = log10(y0);
        y1 = log10(y1);
    }
    double wpx = p->width - 1 - 2 * p->pad, hpx = p->height - 1 - 2 * p->pad;
    *px = p->pad + (x - p->xmin) / (p->xmax - p->xmin) * wpx;
    *py = (p->height - 1 - p->pad) - (y - y0) / (y1 - y0) * hpx;
    return isfinite(*px) && isfinite(*py);
}

/* The inside of the frame, inclusive. */
typedef struct {
    int c0, c1, r0, r1;
} rect;

static rect inner(const elbo_plot *p) {
    rect r = {p->pad + 1, p->width - 2 - p->pad, p->pad + 1, p->height - 2 - p->pad};
    return r;
}

/* Blends rgb with opacity a over pixel (c, r) if it lies in the rectangle b. */
static void put(elbo_plot *p, rect b, int64_t c, int64_t r, const uint8_t *rgb, double a) {
    if (c < b.c0 || c > b.c1 || r < b.r0 || r > b.r1) return;
    uint8_t *q = p->rgb + ((size_t)r * (size_t)p->width + (size_t)c) * 3;
    if (a >= 1) {
        q[0] = rgb[0], q[1] = rgb[1], q[2] = rgb[2];
        return;
    }
    for (int ch = 0; ch < 3; ch++) q[ch] = u8(q[ch] + a * ((double)rgb[ch] - q[ch]));
}

static int in_range(const elbo_plot *p, double x, double y) {
    return x >= p->xmin && x <= p->xmax && y >= p->ymin && y <= p->ymax;
}

/* A disc of radius rad centred at (cx, cy) px. */
static void disc(elbo_plot *p, double cx, double cy, double rad, const uint8_t *rgb, double a) {
    rect b = inner(p);
    int64_t c0 = (int64_t)floor(cx - rad), c1 = (int64_t)ceil(cx + rad);
    int64_t r0 = (int64_t)floor(cy - rad), r1 = (int64_t)ceil(cy + rad);
    if (c0 < b.c0) c0 = b.c0;
    if (c1 > b.c1) c1 = b.c1;
    if (r0 < b.r0) r0 = b.r0;
    if (r1 > b.r1) r1 = b.r1;
    for (int64_t r = r0; r <= r1; r++)
        for (int64_t c = c0; c <= c1; c++) {
            double dx = c - cx, dy = r - cy, d = sqrt(dx * dx + dy * dy);
            double cov;
            if (d + 0.7072 <= rad) cov = 1;
            else if (d - 0.7072 > rad) cov = 0;
            else {
                int in = 0;
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        double sx = dx + (i - 1.5) * 0.25, sy = dy + (j - 1.5) * 0.25;
                        in += sx * sx + sy * sy <= rad * rad;
                    }
                cov = in / 16.0;
            }
            if (cov > 0) put(p, b, c, r, rgb, a * cov);
        }
}

/* Cohen-Sutherland: clips the segment to [c0, c1] x [r0, r1]; 0 if nothing is left. Each
 * step moves an outside end onto a boundary as x0 + (x1 - x0) * ratio with the ratio in
 * [0, 1], which stays accurate even for ends 1e30 px away (no cancellation). */
static int outcode(rect b, double x, double y) {
    return (x < b.c0) | (x > b.c1) << 1 | (y < b.r0) << 2 | (y > b.r1) << 3;
}

static int clip(rect b, double *x0, double *y0, double *x1, double *y1) {
    for (int it = 0; it < 8; it++) {
        int o0 = outcode(b, *x0, *y0), o1 = outcode(b, *x1, *y1);
        if (!(o0 | o1)) return 1;
        if (o0 & o1) return 0;
        int o = o0 ? o0 : o1;
        double x, y;
        if (o & 8) x = *x0 + (*x1 - *x0) * ((b.r1 - *y0) / (*y1 - *y0)), y = b.r1;
        else if (o & 4) x = *x0 + (*x1 - *x0) * ((b.r0 - *y0) / (*y1 - *y0)), y = b.r0;
        else if (o & 2) y = *y0 + (*y1 - *y0) * ((b.c1 - *x0) / (*x1 - *x0)), x = b.c1;
        else y = *y0 + (*y1 - *y0) * ((b.c0 - *x0) / (*x1 - *x0)), x = b.c0;
        if (!isfinite(x) || !isfinite(y)) return 0;
        if (o == o0) *x0 = x, *y0 = y;
        else *x1 = x, *y1 = y;
    }
    return !(outcode(b, *x0, *y0) | outcode(b, *x1, *y1));
}

/* A 1-px segment between pixel-space points, clipped to the inside of the frame. */
static void segment(elbo_plot *p, double x0, double y0, double x1, double y1, const uint8_t *rgb) {
    if (!isfinite(x0) || !isfinite(y0) || !isfinite(x1) || !isfinite(y1)) return;
    rect b = inner(p);
    if (!clip(b, &x0, &y0, &x1, &y1)) return;
    /* belt and braces: anything off the rectangle (or NaN) is dropped */
    if (!(x0 >= b.c0 - 1 && x0 <= b.c1 + 1 && x1 >= b.c0 - 1 && x1 <= b.c1 + 1 &&
          y0 >= b.r0 - 1 && y0 <= b.r1 + 1 && y1 >= b.r0 - 1 && y1 <= b.r1 + 1))
        return;
    int64_t c = (int64_t)floor(x0 + 0.5), r = (int64_t)floor(y0 + 0.5);
    int64_t ce = (int64_t)floor(x1 + 0.5), re = (int64_t)floor(y1 + 0.5);
    int64_t dc = ce > c ? ce - c : c - ce, dr = re > r ? r - re : re - r; /* dr <= 0 */
    int sc = c < ce ? 1 : -1, sr = r < re ? 1 : -1;
    int64_t err = dc + dr;
    for (;;) {
        put(p, b, c, r, rgb, 1);
        if (c == ce && r == re) break;
        int64_t e2 = 2 * err;
        if (e2 >= dr) err += dr, c += sc;
        if (e2 <= dc) err += dc, r += sr;
    }
}

elbo_status elbo_plot_points(elbo_plot *p, const float *xy, int64_t n, const int32_t *labels,
                             const uint8_t *rgb, float radius, float alpha) {
    if (!p || !p->rgb) return elbo_error(ELBO_ERR_ARG, "elbo_plot_points: p is not initialised");
    if (n < 0 || n > ELBO_PLOT_MAX_ELEMS)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_points: n %lld out of range",
                          (long long)n);
    if (n > 0 && !xy) return elbo_error(ELBO_ERR_ARG, "elbo_plot_points: xy is NULL");
    if (!(radius >= 0.5f && radius <= 64))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_points: radius %g not in [0.5, 64]",
                          (double)radius);
    if (!(alpha > 0 && alpha <= 1))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_points: alpha %g not in (0, 1]",
                          (double)alpha);
    for (int64_t i = 0; i < n; i++) {
        double x = xy[2 * i], y = xy[2 * i + 1], px, py;
        if (!elbo_plot_map(p, x, y, &px, &py) || !in_range(p, x, y)) continue;
        uint8_t col[3];
        if (labels) elbo_plot_palette(labels[i], col);
        else memcpy(col, rgb ? rgb : TAB10[0], 3);
        disc(p, px, py, radius, col, alpha);
    }
    return ELBO_OK;
}

/* The value of f at fractional grid index (fi, fj): bilinear, or the nearest cell when a
 * corner is not finite. */
static double sample(const float *f, int64_t nx, int64_t ny, double fi, double fj) {
    int64_t i0 = (int64_t)floor(fi), j0 = (int64_t)floor(fj);
    if (i0 < 0) i0 = 0;
    if (j0 < 0) j0 = 0;
    if (i0 > nx - 1) i0 = nx - 1;
    if (j0 > ny - 1) j0 = ny - 1;
    int64_t i1 = i0 + 1 < nx ? i0 + 1 : i0, j1 = j0 + 1 < ny ? j0 + 1 : j0;
    double a = fi - i0, b = fj - j0;
    if (a < 0) a = 0;
    if (a > 1) a = 1;
    if (b < 0) b = 0;
    if (b > 1) b = 1;
    double v00 = f[j0 * nx + i0], v10 = f[j0 * nx + i1], v01 = f[j1 * nx + i0],
           v11 = f[j1 * nx + i1];
    if (isfinite(v00) && isfinite(v10) && isfinite(v01) && isfinite(v11)) {
        /* lerps, exact where neighbours are equal (a field constant along an axis) */
        double lo = v00 + a * (v10 - v00), hi = v01 + a * (v11 - v01);
        return lo + b * (hi - lo);
    }
    int64_t in = a < 0.5 ? i0 : i1, jn = b < 0.5 ? j0 : j1;
    return f[jn * nx + in];
}

elbo_status elbo_plot_heat(elbo_plot *p, const float *f, int64_t nx, int64_t ny, double vmin,
                           double vmax) {
    if (!p || !p->rgb) return elbo_error(ELBO_ERR_ARG, "elbo_plot_heat: p is not initialised");
    if (!f) return elbo_error(ELBO_ERR_ARG, "elbo_plot_heat: f is NULL");
    if (nx < 1 || ny < 1 || nx > ELBO_PLOT_MAX_ELEMS / ny)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_heat: grid nx %lld x ny %lld out of range",
                          (long long)nx, (long long)ny);
    double lo = vmin, hi = vmax;
    if (!(isfinite(lo) && isfinite(hi) && lo < hi)) {
        lo = INFINITY, hi = -INFINITY;
        for (int64_t k = 0; k < nx * ny; k++)
            if (isfinite(f[k])) {
                if (f[k] < lo) lo = f[k];
                if (f[k] > hi) hi = f[k];
            }
        if (lo > hi) return ELBO_OK; /* no finite value: nothing to draw */
    }
    rect b = inner(p);
    double wpx = p->width - 1 - 2 * p->pad, hpx = p->height - 1 - 2 * p->pad;
    for (int r = b.r0; r <= b.r1; r++) {
        double fj = (p->height - 1 - p->pad - r) / hpx * (double)(ny - 1);
        for (int c = b.c0; c <= b.c1; c++) {
            double fi = (c - p->pad) / wpx * (double)(nx - 1);
            double v = sample(f, nx, ny, fi, fj);
            if (!isfinite(v)) continue;
            double t = hi > lo ? (v - lo) / (hi - lo) : 0.5;
            uint8_t col[3];
            elbo_plot_viridis(t, col);
            put(p, b, c, r, col, 1);
        }
    }
    return ELBO_OK;
}

elbo_status elbo_plot_arrows(elbo_plot *p, const float *x, const float *y, const float *u,
                             const float *v, int64_t n, double scale, const uint8_t *rgb) {
    if (!p || !p->rgb) return elbo_error(ELBO_ERR_ARG, "elbo_plot_arrows: p is not initialised");
    if (n < 0 || n > ELBO_PLOT_MAX_ELEMS)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_arrows: n %lld out of range", (long long)n);
    if (n > 0 && (!x || !y || !u || !v))
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_arrows: %s is NULL",
                          !x ? "x" : !y ? "y" : !u ? "u" : "v");
    if (!rgb) rgb = BLACK;
    double wpx = p->width - 1 - 2 * p->pad, hpx = p->height - 1 - 2 * p->pad;
    double y0 = p->log_y ? log10(p->ymin) : p->ymin, y1 = p->log_y ? log10(p->ymax) : p->ymax;
    double sx = wpx / (p->xmax - p->xmin), sy = hpx / (y1 - y0);
    double k = scale;
    if (!(isfinite(k) && k > 0)) {
        double lmax = 0;
        for (int64_t i = 0; i < n; i++) {
            double du = u[i] * sx, dv = v[i] * sy, l = sqrt(du * du + dv * dv);
            if (isfinite(l) && l > lmax) lmax = l;
        }
        if (!(lmax > 0)) return ELBO_OK;
        k = 0.9 * sqrt(wpx * hpx / (double)n) / lmax;
    }
    for (int64_t i = 0; i < n; i++) {
        double px, py;
        if (!elbo_plot_map(p, x[i], y[i], &px, &py) || !in_range(p, x[i], y[i])) continue;
        double dx = k * u[i] * sx, dy = -k * v[i] * sy, len = sqrt(dx * dx + dy * dy);
        if (!isfinite(len) || len == 0) continue;
        double tx = px + dx, ty = py + dy;
        segment(p, px, py, tx, ty, rgb);
        double h = 0.35 * len < 6 ? 0.35 * len : 6;
        if (h < 1.5) continue;
        double ux = dx / len, uy = dy / len, cs = cos(0.45), sn = sin(0.45);
        /* the two head strokes: the reversed direction rotated by +-0.45 rad */
        segment(p, tx, ty, tx - h * (ux * cs - uy * sn), ty - h * (ux * sn + uy * cs), rgb);
        segment(p, tx, ty, tx - h * (ux * cs + uy * sn), ty - h * (-ux * sn + uy * cs), rgb);
    }
    return ELBO_OK;
}

elbo_status elbo_plot_polyline(elbo_plot *p, const float *x, const float *y, int64_t n,
                               const uint8_t *rgb) {
    if (!p || !p->rgb)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_polyline: p is not initialised");
    if (!y) return elbo_error(ELBO_ERR_ARG, "elbo_plot_polyline: y is NULL");
    if (n < 1 || n > ELBO_PLOT_MAX_ELEMS)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_polyline: n %lld out of range", (long long)n);
    if (!rgb) rgb = TAB10[0];
    int have = 0;
    double lx = 0, ly = 0;
    for (int64_t i = 0; i < n; i++) {
        double px, py;
        if (!elbo_plot_map(p, x ? (double)x[i] : (double)i, y[i], &px, &py)) {
            have = 0;
            continue;
        }
        if (have) segment(p, lx, ly, px, py, rgb);
        else segment(p, px, py, px, py, rgb); /* a lone vertex is a dot */
        lx = px, ly = py, have = 1;
    }
    return ELBO_OK;
}

/* ---- frame and ticks ------------------------------------------------------------------ */
/* A "nice" step (1, 2 or 5 times a power of ten) giving about `ticks` intervals over span. */
static double nice_step(double span, int ticks) {
    double raw = span / ticks, mag = pow(10, floor(log10(raw))), m = raw / mag;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * mag;
}

void elbo_plot_frame(elbo_plot *p) {
    if (!p || !p->rgb) return;
    rect all = {0, p->width - 1, 0, p->height - 1};
    int l = p->pad, r = p->width - 1 - p->pad, t = p->pad, bt = p->height - 1 - p->pad;
    for (int c = l; c <= r; c++) put(p, all, c, t, BLACK, 1), put(p, all, c, bt, BLACK, 1);
    for (int q = t; q <= bt; q++) put(p, all, l, q, BLACK, 1), put(p, all, r, q, BLACK, 1);
    double px, py;
    if (p->ticks > 0) { /* x ticks, below the bottom edge */
        double st = nice_step(p->xmax - p->xmin, p->ticks), eps = 1e-9 * (p->xmax - p->xmin);
        int count = 0;
        for (double v = ceil((p->xmin - eps) / st) * st; v <= p->xmax + eps && count < 200;
             v += st, count++) {
            if (!elbo_plot_map(p, v, p->ymin, &px, &py)) continue;
            int64_t c = (int64_t)floor(px + 0.5);
            for (int k = 1; k <= 4; k++) put(p, all, c, bt + k, BLACK, 1);
        }
    }
    if (p->log_y) { /* every decade, left of the left edge */
        double d0 = ceil(log10(p->ymin) - 1e-9), d1 = floor(log10(p->ymax) + 1e-9);
        for (double d = d0; d <= d1 && d - d0 < 200; d += 1) {
            if (!elbo_plot_map(p, p->xmin, pow(10, d), &px, &py)) continue;
            int64_t q = (int64_t)floor(py + 0.5);
            for (int k = 1; k <= 4; k++) put(p, all, l - k, q, BLACK, 1);
        }
    } else if (p->ticks > 0) {
        double st = nice_step(p->ymax - p->ymin, p->ticks), eps = 1e-9 * (p->ymax - p->ymin);
        int count = 0;
        for (double v = ceil((p->ymin - eps) / st) * st; v <= p->ymax + eps && count < 200;
             v += st, count++) {
            if (!elbo_plot_map(p, p->xmin, v, &px, &py)) continue;
            int64_t q = (int64_t)floor(py + 0.5);
            for (int k = 1; k <= 4; k++) put(p, all, l - k, q, BLACK, 1);
        }
    }
}

elbo_status elbo_plot_save(elbo_plot *p, const char *path) {
    if (!p || !p->rgb) return elbo_error(ELBO_ERR_ARG, "elbo_plot_save: p is not initialised");
    if (!path) return elbo_error(ELBO_ERR_ARG, "elbo_plot_save: path is NULL");
    elbo_plot_frame(p);
    return elbo_png_write(path, p->rgb, p->height, p->width, 3);
}

/* ---- axis ranges from data ------------------------------------------------------------ */
/* Extends [*lo, *hi] by the finite values v[i * stride], i < n (log: positive ones, as
 * log10). */
static void extent(const float *v, int64_t n, int64_t stride, int log, double *lo, double *hi) {
    for (int64_t i = 0; i < n; i++) {
        double a = v[i * stride];
        if (!isfinite(a) || (log && !(a > 0))) continue;
        if (log) a = log10(a);
        if (a < *lo) *lo = a;
        if (a > *hi) *hi = a;
    }
}

/* The padded axis interval of the data extent [lo, hi] (in log10 units if log). */
static void pad_range(double lo, double hi, double margin, int log, double *a, double *b) {
    if (!(lo <= hi)) lo = 0, hi = 1; /* no finite data: [0, 1] (log: [1, 10]) */
    else if (hi - lo <= 1e-12 * (fabs(lo) + fabs(hi))) {
        double h = log ? 1 : 0.5;
        lo -= h, hi += h;
    } else {
        double m = margin * (hi - lo);
        lo -= m, hi += m;
    }
    if (log) lo = pow(10, lo), hi = pow(10, hi);
    *a = lo, *b = hi;
}

/* ---- one-call plots ------------------------------------------------------------------- */
static elbo_status check_path(const char *path, const char *fn) {
    return path ? ELBO_OK : elbo_error(ELBO_ERR_ARG, "%s: path is NULL", fn);
}

static elbo_status check_n(int64_t n, const char *fn, const char *what) {
    if (n < 1 || n > ELBO_PLOT_MAX_ELEMS)
        return elbo_error(ELBO_ERR_ARG, "%s: %s %lld out of range 1..%lld", fn, what,
                          (long long)n, (long long)ELBO_PLOT_MAX_ELEMS);
    return ELBO_OK;
}

elbo_status elbo_plot_scatter(const char *path, const float *xy, int64_t n,
                              const int32_t *labels, const elbo_plot_opts *o) {
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st;
    if ((st = check_path(path, "elbo_plot_scatter")) || (st = check_n(n, "elbo_plot_scatter", "n")))
        return st;
    if (!xy) return elbo_error(ELBO_ERR_ARG, "elbo_plot_scatter: xy is NULL");
    if ((st = check_opts(o))) return st;
    double x0 = o->xmin, x1 = o->xmax, y0 = o->ymin, y1 = o->ymax;
    if (!o->has_range) {
        double lo = INFINITY, hi = -INFINITY;
        extent(xy, n, 2, 0, &lo, &hi);
        pad_range(lo, hi, o->margin, 0, &x0, &x1);
        lo = INFINITY, hi = -INFINITY;
        extent(xy + 1, n, 2, 0, &lo, &hi);
        pad_range(lo, hi, o->margin, 0, &y0, &y1);
    }
    elbo_plot_opts lin = *o;
    lin.log_y = 0;
    elbo_plot p;
    if ((st = elbo_plot_init(&p, &lin, x0, x1, y0, y1))) return st;
    st = elbo_plot_points(&p, xy, n, labels, NULL, o->radius, o->alpha);
    if (!st) st = elbo_plot_save(&p, path);
    elbo_plot_free(&p);
    return st;
}

elbo_status elbo_plot_density(const char *path, const float *f, int64_t nx, int64_t ny,
                              double xmin, double xmax, double ymin, double ymax,
                              const float *xy, int64_t n_points, const elbo_plot_opts *o) {
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st;
    if ((st = check_path(path, "elbo_plot_density"))) return st;
    if (!f) return elbo_error(ELBO_ERR_ARG, "elbo_plot_density: f is NULL");
    if (nx < 1 || ny < 1 || nx > ELBO_PLOT_MAX_ELEMS / ny)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_density: grid nx %lld x ny %lld out of range",
                          (long long)nx, (long long)ny);
    if (n_points < 0 || n_points > ELBO_PLOT_MAX_ELEMS)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_density: n_points %lld out of range",
                          (long long)n_points);
    if (n_points > 0 && !xy) return elbo_error(ELBO_ERR_ARG, "elbo_plot_density: xy is NULL");
    elbo_plot_opts lin = *o;
    lin.log_y = 0;
    lin.has_range = 0;
    if ((st = check_opts(&lin))) return st;
    elbo_plot p;
    if ((st = elbo_plot_init(&p, &lin, xmin, xmax, ymin, ymax))) return st;
    st = elbo_plot_heat(&p, f, nx, ny, o->has_vrange ? o->vmin : 0, o->has_vrange ? o->vmax : 0);
    if (!st && n_points > 0)
        st = elbo_plot_points(&p, xy, n_points, NULL, TAB10[1], o->radius, o->alpha);
    if (!st) st = elbo_plot_save(&p, path);
    elbo_plot_free(&p);
    return st;
}

elbo_status elbo_plot_vector_field(const char *path, const float *x, const float *y,
                                   const float *u, const float *v, int64_t n,
                                   const elbo_plot_opts *o) {
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st;
    if ((st = check_path(path, "elbo_plot_vector_field")) ||
        (st = check_n(n, "elbo_plot_vector_field", "n")))
        return st;
    if (!x || !y || !u || !v)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_vector_field: %s is NULL",
                          !x ? "x" : !y ? "y" : !u ? "u" : "v");
    elbo_plot_opts lin = *o;
    lin.log_y = 0;
    if ((st = check_opts(&lin))) return st;
    double x0 = o->xmin, x1 = o->xmax, y0 = o->ymin, y1 = o->ymax;
    if (!o->has_range) {
        double lo = INFINITY, hi = -INFINITY;
        extent(x, n, 1, 0, &lo, &hi);
        pad_range(lo, hi, o->margin, 0, &x0, &x1);
        lo = INFINITY, hi = -INFINITY;
        extent(y, n, 1, 0, &lo, &hi);
        pad_range(lo, hi, o->margin, 0, &y0, &y1);
    }
    elbo_plot p;
    if ((st = elbo_plot_init(&p, &lin, x0, x1, y0, y1))) return st;
    st = elbo_plot_arrows(&p, x, y, u, v, n, 0, NULL);
    if (!st) st = elbo_plot_save(&p, path);
    elbo_plot_free(&p);
    return st;
}

elbo_status elbo_plot_lines(const char *path, const float *x, const float *y,
                            int64_t n_series, int64_t n, const elbo_plot_opts *o) {
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st;
    if ((st = check_path(path, "elbo_plot_lines")) || (st = check_n(n, "elbo_plot_lines", "n")))
        return st;
    if (n_series < 1 || n_series > 64 || n_series > ELBO_PLOT_MAX_ELEMS / n)
        return elbo_error(ELBO_ERR_ARG, "elbo_plot_lines: n_series %lld out of range 1..64",
                          (long long)n_series);
    if (!y) return elbo_error(ELBO_ERR_ARG, "elbo_plot_lines: y is NULL");
    if ((st = check_opts(o))) return st;
    double x0 = o->xmin, x1 = o->xmax, y0 = o->ymin, y1 = o->ymax;
    if (!o->has_range) {
        double lo = INFINITY, hi = -INFINITY;
        if (x) extent(x, n, 1, 0, &lo, &hi);
        else lo = 0, hi = (double)(n - 1);
        pad_range(lo, hi, o->margin, 0, &x0, &x1);
        lo = INFINITY, hi = -INFINITY;
        extent(y, n_series * n, 1, o->log_y, &lo, &hi);
        pad_range(lo, hi, o->margin, o->log_y, &y0, &y1);
    }
    elbo_plot p;
    if ((st = elbo_plot_init(&p, o, x0, x1, y0, y1))) return st;
    for (int64_t k = 0; k < n_series && !st; k++)
        st = elbo_plot_polyline(&p, x, y + k * n, n, TAB10[k % 10]);
    if (!st) st = elbo_plot_save(&p, path);
    elbo_plot_free(&p);
    return st;
}

/* ---- CSV training logs ---------------------------------------------------------------- */
/* Splits line (modified in place) at ',' into at most cap trimmed cells; returns the count
 * (cap + 1 if there are more). */
static int64_t split(char *line, char **cells, int64_t cap) {
    int64_t n = 0;
    char *s = line;
    for (;;) {
        char *e = strchr(s, ',');
        if (e) *e = 0;
        while (*s == ' ' || *s == '\t') s++;
        char *t = s + strlen(s);
        while (t > s && (t[-1] == ' ' || t[-1] == '\t')) *--t = 0;
        if (n < cap) cells[n] = s;
        n++;
        if (!e) break;
        s = e + 1;
    }
    return n > cap ? cap + 1 : n;
}

static int is_number(const char *s, double *v) {
    if (!*s) return 0;
    char *end;
    *v = strtod(s, &end);
    return *end == 0;
}

static void chomp(char *s) {
    size_t l = strlen(s);
    while (l && (s[l - 1] == '\n' || s[l - 1] == '\r')) s[--l] = 0;
}

#define CSV_MAX_COLS 4096

/* Index of the column `name` among names[0..ncols), or -1. */
static int64_t column_index(char **names, int64_t ncols, const char *name) {
    for (int64_t k = 0; k < ncols; k++)
        if (!strcmp(names[k], name)) return k;
    return -1;
}

/* Resolves the comma-separated column list `list` into sel[0..*nsel) (at most 64 names).
 * `what` names the argument in messages. */
static elbo_status select_columns(const char *list, const char *what, char **names,
                                  int64_t ncols, const char *csv_path, int64_t *sel,
                                  int64_t *nsel, char **buf) {
    *buf = strdup(list);
    if (!*buf) return elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
    char *want[65];
    int64_t nw = split(*buf, want, 64);
    if (nw > 64) return elbo_error(ELBO_ERR_ARG, "elbo_plot_csv: %s: more than 64 names", what);
    for (int64_t w = 0; w < nw; w++) {
        int64_t k = column_index(names, ncols, want[w]);
        if (k < 0)
            return elbo_error(ELBO_ERR_ARG, "elbo_plot_csv: %s: no column '%s' in %s", what,
                              want[w], csv_path);
        sel[w] = k;
    }
    *nsel = nw;
    return ELBO_OK;
}

elbo_status elbo_plot_loss_csv(const char *csv_path, const char *png_path, const char *columns,
                               const elbo_plot_opts *o) {
    return elbo_plot_csv(csv_path, png_path, NULL, columns, 0, o);
}

elbo_status elbo_plot_csv(const char *csv_path, const char *png_path, const char *x_columns,
                          const char *y_columns, int markers, const elbo_plot_opts *o) {
    if (!csv_path) return elbo_error(ELBO_ERR_ARG, "elbo_plot_csv: csv_path is NULL");
    if (!png_path) return elbo_error(ELBO_ERR_ARG, "elbo_plot_csv: png_path is NULL");
    elbo_plot_opts def;
    o = opts_or_default(o, &def);
    elbo_status st = check_opts(o);
    if (st) return st;
    FILE *fp = fopen(csv_path, "rb");
    if (!fp) return elbo_error(ELBO_ERR_IO, "%s: cannot open for reading", csv_path);
    char *line = NULL, *hdr = NULL, *colbuf = NULL, *xbuf = NULL;
    size_t cap = 0;
    char **names = malloc(CSV_MAX_COLS * sizeof *names);
    char **cells = malloc((CSV_MAX_COLS + 1) * sizeof *cells);
    double *data = NULL, *row = NULL;
    float *xs = NULL, *ys = NULL;
    int64_t nrows = 0, rcap = 0, ncols = 0, lineno = 0;
    if (!names || !cells) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
        goto done;
    }
    ssize_t len = getline(&line, &cap, fp);
    lineno = 1;
    if (len < 0) {
        st = ferror(fp) ? elbo_error(ELBO_ERR_IO, "%s: read error", csv_path)
                        : elbo_error(ELBO_ERR_FORMAT, "%s:1: empty file, no header", csv_path);
        goto done;
    }
    chomp(line);
    hdr = strdup(line);
    if (!hdr) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
        goto done;
    }
    ncols = split(hdr, names, CSV_MAX_COLS);
    if (ncols > CSV_MAX_COLS) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s:1: more than %d columns", csv_path, CSV_MAX_COLS);
        goto done;
    }
    for (int64_t k = 0; k < ncols; k++) {
        double v;
        if (!*names[k] || is_number(names[k], &v)) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s:1: no header (cell %lld is '%s', need a name)",
                            csv_path, (long long)k + 1, names[k]);
            goto done;
        }
    }
    row = malloc((size_t)ncols * sizeof *row);
    if (!row) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
        goto done;
    }
    while ((len = getline(&line, &cap, fp)) >= 0) {
        lineno++;
        chomp(line);
        if (!line[strspn(line, " \t")]) continue; /* blank line */
        int64_t nc = split(line, cells, ncols);
        if (nc != ncols) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s:%lld: %s%lld cells, the header has %lld",
                            csv_path, (long long)lineno, nc > ncols ? "more than " : "",
                            (long long)(nc > ncols ? ncols : nc), (long long)ncols);
            goto done;
        }
        for (int64_t k = 0; k < ncols; k++)
            if (!is_number(cells[k], &row[k])) {
                st = elbo_error(ELBO_ERR_FORMAT, "%s:%lld: column '%s': '%.40s' is not a number",
                                csv_path, (long long)lineno, names[k], cells[k]);
                goto done;
            }
        if (nrows == rcap) {
            int64_t nc2 = rcap ? 2 * rcap : 256;
            if (nc2 > ELBO_PLOT_MAX_ELEMS / ncols) {
                st = elbo_error(ELBO_ERR_FORMAT, "%s:%lld: too many rows", csv_path,
                                (long long)lineno);
                goto done;
            }
            double *d2 = realloc(data, (size_t)nc2 * (size_t)ncols * sizeof *d2);
            if (!d2) {
                st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
                goto done;
            }
            data = d2, rcap = nc2;
        }
        memcpy(data + nrows * ncols, row, (size_t)ncols * sizeof *row);
        nrows++;
    }
    if (ferror(fp)) {
        st = elbo_error(ELBO_ERR_IO, "%s:%lld: read error", csv_path, (long long)lineno + 1);
        goto done;
    }
    if (nrows == 0) {
        st = elbo_error(ELBO_ERR_FORMAT, "%s:%lld: no data rows", csv_path, (long long)lineno + 1);
        goto done;
    }
    /* the columns to plot: x either one column for every series (default "step", else
     * the row index) or one per series */
    int64_t xsel[64], nx = 0, sel[64], nsel = 0;
    if (x_columns && *x_columns) {
        if ((st = select_columns(x_columns, "x columns", names, ncols, csv_path, xsel, &nx,
                                 &xbuf)))
            goto done;
    } else {
        int64_t k = column_index(names, ncols, "step");
        if (k >= 0) xsel[0] = k, nx = 1;
    }
    if (y_columns && *y_columns) {
        if ((st = select_columns(y_columns, "columns", names, ncols, csv_path, sel, &nsel,
                                 &colbuf)))
            goto done;
    } else {
        for (int64_t k = 0; k < ncols && nsel < 64; k++) {
            int is_x = 0;
            for (int64_t j = 0; j < nx; j++) is_x |= xsel[j] == k;
            if (!is_x) sel[nsel++] = k;
        }
        if (nsel == 0) {
            st = elbo_error(ELBO_ERR_FORMAT, "%s:1: no column to plot besides '%s'", csv_path,
                            nx ? names[xsel[0]] : "step");
            goto done;
        }
    }
    if (nx > 1 && nx != nsel) {
        st = elbo_error(ELBO_ERR_ARG,
                        "elbo_plot_csv: x columns: %lld names for %lld series (give one, or "
                        "one per series)",
                        (long long)nx, (long long)nsel);
        goto done;
    }
    xs = malloc((size_t)nrows * (size_t)nsel * sizeof *xs);
    ys = malloc((size_t)nrows * (size_t)nsel * sizeof *ys);
    if (!xs || !ys) {
        st = elbo_error(ELBO_ERR_NOMEM, "%s: out of memory", csv_path);
        goto done;
    }
    for (int64_t s = 0; s < nsel; s++)
        for (int64_t i = 0; i < nrows; i++) {
            int64_t xk = nx ? xsel[nx > 1 ? s : 0] : -1;
            xs[s * nrows + i] = xk >= 0 ? (float)data[i * ncols + xk] : (float)i;
            ys[s * nrows + i] = (float)data[i * ncols + sel[s]];
        }
    /* the range over every series, then each series as a line (and its vertices) */
    double x0 = o->xmin, x1 = o->xmax, y0 = o->ymin, y1 = o->ymax;
    if (!o->has_range) {
        double lo = INFINITY, hi = -INFINITY;
        extent(xs, nsel * nrows, 1, 0, &lo, &hi);
        pad_range(lo, hi, o->margin, 0, &x0, &x1);
        lo = INFINITY, hi = -INFINITY;
        extent(ys, nsel * nrows, 1, o->log_y, &lo, &hi);
        pad_range(lo, hi, o->margin, o->log_y, &y0, &y1);
    }
    elbo_plot pl;
    if ((st = elbo_plot_init(&pl, o, x0, x1, y0, y1))) goto done;
    for (int64_t s = 0; s < nsel && !st; s++) {
        st = elbo_plot_polyline(&pl, xs + s * nrows, ys + s * nrows, nrows, TAB10[s % 10]);
        if (markers)
            for (int64_t i = 0; i < nrows && !st; i++) {
                float xy[2] = {xs[s * nrows + i], ys[s * nrows + i]};
                st = elbo_plot_points(&pl, xy, 1, NULL, TAB10[s % 10], o->radius, 1);
            }
    }
    if (!st) st = elbo_plot_save(&pl, png_path);
    elbo_plot_free(&pl);
done:
    fclose(fp);
    free(line);
    free(hdr);
    free(colbuf);
    free(xbuf);
    free(names);
    free(cells);
    free(data);
    free(row);
    free(xs);
    free(ys);
    return st;
}
