/* Plots: exact pixels of points, frame and ticks, heat-map colours along a ramp, arrow
 * directions, loss curves on linear and log axes, non-finite and out-of-range input, bad
 * arguments, and malformed CSV logs (status and a message naming the file and line). Every
 * plot is written to a temporary directory and read back with elbo_png_read. */
#include "test.h"

#include "elbo/io.h"
#include "elbo/plot.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tmpdir.h"
#define td_make(td) td_make_tag((td), "plot")

static int write_text(const char *path, const char *s) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(s), w = fwrite(s, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static int has(const char *msg, const char *sub) { return strstr(msg, sub) != NULL; }

/* A decoded RGB image. */
typedef struct {
    uint8_t *px;
    int64_t h, w, c;
} image;

static int load(const char *path, image *im) {
    return elbo_png_read(path, &im->px, &im->h, &im->w, &im->c) == ELBO_OK && im->c == 3;
}

static const uint8_t *pix(const image *im, int64_t r, int64_t c) {
    return im->px + (r * im->w + c) * 3;
}

static int is_rgb(const image *im, int64_t r, int64_t c, int R, int G, int B) {
    const uint8_t *q = pix(im, r, c);
    return q[0] == R && q[1] == G && q[2] == B;
}

static int is_white(const image *im, int64_t r, int64_t c) { return is_rgb(im, r, c, 255, 255, 255); }
static int is_black(const image *im, int64_t r, int64_t c) { return is_rgb(im, r, c, 0, 0, 0); }

/* Number of non-white pixels strictly inside the frame at pad. */
static int inner_ink(const image *im, int pad) {
    int n = 0;
    for (int64_t r = pad + 1; r < im->h - 1 - pad; r++)
        for (int64_t c = pad + 1; c < im->w - 1 - pad; c++) n += !is_white(im, r, c);
    return n;
}

/* 101 x 101, pad 10: the frame runs over pixels 10..90, so data [0, 1] maps to 10 + 80 t
 * across and 90 - 80 t down. */
static elbo_plot_opts small_opts(void) {
    elbo_plot_opts o;
    elbo_plot_opts_default(&o);
    o.width = o.height = 101;
    o.pad = 10;
    o.has_range = 1;
    o.xmin = 0, o.xmax = 1, o.ymin = 0, o.ymax = 1;
    return o;
}

TEST(plot_palette_and_viridis_tables) {
    uint8_t c[3];
    elbo_plot_viridis(0, c);
    CHECK(c[0] == 68 && c[1] == 1 && c[2] == 84);
    elbo_plot_viridis(1, c);
    CHECK(c[0] == 253 && c[1] == 231 && c[2] == 37);
    elbo_plot_viridis(0.5, c); /* halfway between table entries 7 and 8 */
    CHECK(c[0] == 33 && c[1] == 144 && c[2] == 141);
    elbo_plot_viridis(NAN, c);
    CHECK(c[0] == 68 && c[1] == 1 && c[2] == 84);
    elbo_plot_viridis(7, c);
    CHECK(c[0] == 253 && c[1] == 231 && c[2] == 37);
    /* perceptual: luminance and green rise monotonically */
    double last_l = -1;
    int last_g = -1;
    for (int i = 0; i <= 1000; i++) {
        elbo_plot_viridis(i / 1000.0, c);
        double l = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        CHECK_MSG(l >= last_l - 0.5 && c[1] >= last_g, "viridis not monotone at %d", i);
        last_l = l, last_g = c[1];
    }
    elbo_plot_palette(0, c);
    CHECK(c[0] == 31 && c[1] == 119 && c[2] == 180);
    elbo_plot_palette(13, c);
    CHECK(c[0] == 214 && c[1] == 39 && c[2] == 40);
    elbo_plot_palette(-1, c);
    CHECK(c[0] == 127 && c[1] == 127 && c[2] == 127);
}

TEST(plot_scatter_point_at_expected_pixel) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    const float xy[2] = {0.5f, 0.25f}; /* -> column 50, row 70 */
    const int32_t lab[1] = {3};        /* tab10[3] = (214, 39, 40) */
    const char *p = td_file(&td, "s.png");
    elbo_status st = elbo_plot_scatter(p, xy, 1, lab, &o);
    image im = {0};
    int ok = st == ELBO_OK && load(p, &im);
    td_remove(&td);
    CHECK(ok);
    CHECK(im.h == 101 && im.w == 101);
    CHECK(is_rgb(&im, 70, 50, 214, 39, 40));
    CHECK(is_rgb(&im, 70, 49, 214, 39, 40) && is_rgb(&im, 69, 50, 214, 39, 40));
    CHECK(is_rgb(&im, 71, 51, 214, 39, 40)); /* every subsample within the radius */
    CHECK(is_white(&im, 70, 53) && is_white(&im, 66, 50) && is_white(&im, 30, 30));
    int ink = inner_ink(&im, 10);
    CHECK_MSG(ink >= 9 && ink <= 25, "disc of radius 2 covers %d pixels", ink);
    free(im.px);
}

TEST(plot_frame_and_tick_pixels) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    const float xy[2] = {NAN, 0.5f};
    const char *p = td_file(&td, "f.png");
    image im = {0};
    int ok = elbo_plot_scatter(p, xy, 1, NULL, &o) == ELBO_OK && load(p, &im);
    td_remove(&td);
    CHECK(ok);
    for (int k = 10; k <= 90; k++) {
        CHECK_MSG(is_black(&im, 10, k) && is_black(&im, 90, k), "frame row at column %d", k);
        CHECK_MSG(is_black(&im, k, 10) && is_black(&im, k, 90), "frame column at row %d", k);
        CHECK_MSG(is_white(&im, 9, k) && is_white(&im, k, 91), "outside the frame at %d", k);
        CHECK_MSG(is_white(&im, 11, k < 89 ? k + 1 : 50), "inside the frame at %d", k);
    }
    /* ticks: steps of 0.2 -> every 16 px; 4 px long, outward from bottom and left */
    for (int t = 0; t <= 5; t++) {
        int q = 10 + 16 * t;
        for (int k = 1; k <= 4; k++) {
            CHECK_MSG(is_black(&im, 90 + k, q), "x tick %d", t);
            CHECK_MSG(is_black(&im, 90 - 16 * t, 10 - k), "y tick %d", t);
        }
    }
    CHECK(is_white(&im, 92, 27) && is_white(&im, 95, 26) && is_white(&im, 73, 8));
    CHECK(is_white(&im, 0, 0) && is_white(&im, 100, 100));
    CHECK(inner_ink(&im, 10) == 0);
    free(im.px);
}

TEST(plot_scatter_alpha_auto_range_deterministic) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    o.has_range = 0;
    o.alpha = 0.5f;
    /* two identical points: the centre pixel is blended twice over white; the degenerate
     * data range becomes +-0.5 around the point, so it sits in the middle */
    const float xy[4] = {3, -2, 3, -2};
    const char *p1 = td_file(&td, "a.png");
    image a = {0}, b = {0};
    int ok = elbo_plot_scatter(p1, xy, 2, NULL, &o) == ELBO_OK && load(p1, &a);
    const char *p2 = td_file(&td, "b.png");
    ok = ok && elbo_plot_scatter(p2, xy, 2, NULL, &o) == ELBO_OK && load(p2, &b);
    td_remove(&td);
    CHECK(ok);
    const int col[3] = {31, 119, 180};
    int want[3];
    for (int ch = 0; ch < 3; ch++) {
        int once = (int)floor(255 + 0.5 * (col[ch] - 255) + 0.5);
        want[ch] = (int)floor(once + 0.5 * (col[ch] - once) + 0.5);
    }
    CHECK(is_rgb(&a, 50, 50, want[0], want[1], want[2]));
    CHECK(memcmp(a.px, b.px, 101 * 101 * 3) == 0);
    free(a.px);
    free(b.px);
}

TEST(plot_density_ramp_colours) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    float f[3 * 11], g[11 * 3];
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 11; i++) f[j * 11 + i] = (float)i; /* ramp in x */
    for (int j = 0; j < 11; j++)
        for (int i = 0; i < 3; i++) g[j * 3 + i] = (float)j; /* ramp in y */
    image a = {0}, b = {0}, c = {0};
    const char *pa = td_file(&td, "a.png");
    int ok = elbo_plot_density(pa, f, 11, 3, 0, 1, 0, 1, NULL, 0, &o) == ELBO_OK && load(pa, &a);
    const char *pb = td_file(&td, "b.png");
    ok = ok && elbo_plot_density(pb, g, 3, 11, 0, 1, 0, 1, NULL, 0, &o) == ELBO_OK && load(pb, &b);
    o.has_vrange = 1, o.vmin = 2, o.vmax = 8;
    const char *pc = td_file(&td, "c.png");
    ok = ok && elbo_plot_density(pc, f, 11, 3, 0, 1, 0, 1, NULL, 0, &o) == ELBO_OK && load(pc, &c);
    td_remove(&td);
    CHECK(ok);
    /* along the ramp: green (and luminance) non-decreasing, constant across it */
    for (int k = 12; k <= 89; k++) {
        CHECK_MSG(pix(&a, 50, k)[1] >= pix(&a, 50, k - 1)[1], "x ramp at column %d", k);
        CHECK_MSG(memcmp(pix(&a, 11, k), pix(&a, 89, k), 3) == 0, "x ramp varies in y at %d", k);
        /* y ramp: j = 0 is the bottom, so colours rise going up (row decreasing) */
        CHECK_MSG(pix(&b, 101 - k, 50)[1] >= pix(&b, 102 - k, 50)[1], "y ramp at row %d", 101 - k);
    }
    CHECK(pix(&a, 50, 89)[1] > pix(&a, 50, 11)[1] + 150);
    /* min..max normalisation: column c holds value (c - 10) / 8, t = value / 10 */
    uint8_t want[3];
    elbo_plot_viridis((11 - 10) / 80.0, want);
    CHECK(memcmp(pix(&a, 50, 11), want, 3) == 0);
    elbo_plot_viridis((89 - 10) / 80.0, want);
    CHECK(memcmp(pix(&a, 50, 89), want, 3) == 0);
    elbo_plot_viridis(0.5, want);
    CHECK(memcmp(pix(&a, 50, 50), want, 3) == 0);
    elbo_plot_viridis(1 / 80.0, want); /* y ramp: row 89 is just above the bottom */
    CHECK(memcmp(pix(&b, 89, 50), want, 3) == 0);
    elbo_plot_viridis(79 / 80.0, want);
    CHECK(memcmp(pix(&b, 11, 50), want, 3) == 0);
    /* a given range clamps: values <= 2 get the colour map's start, >= 8 its end */
    CHECK(is_rgb(&c, 50, 11, 68, 1, 84) && is_rgb(&c, 50, 20, 68, 1, 84));
    CHECK(is_rgb(&c, 50, 89, 253, 231, 37) && is_rgb(&c, 50, 80, 253, 231, 37));
    elbo_plot_viridis(0.5, want); /* value 5 at column 50 */
    CHECK(memcmp(pix(&c, 50, 50), want, 3) == 0);
    CHECK(is_black(&a, 10, 50) && is_black(&a, 50, 90)); /* the frame is drawn over it */
    free(a.px);
    free(b.px);
    free(c.px);
}

TEST(plot_density_with_samples_and_nan) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    float f[4] = {0, 1, 2, 3}, nanf4[4] = {NAN, NAN, INFINITY, NAN};
    const float xy[4] = {0.5f, 0.5f, NAN, 0.1f};
    image a = {0}, b = {0};
    const char *pa = td_file(&td, "a.png");
    int ok = elbo_plot_density(pa, f, 2, 2, 0, 1, 0, 1, xy, 2, &o) == ELBO_OK && load(pa, &a);
    const char *pb = td_file(&td, "b.png");
    ok = ok && elbo_plot_density(pb, nanf4, 2, 2, -1, 1, -1, 1, NULL, 0, &o) == ELBO_OK &&
         load(pb, &b);
    td_remove(&td);
    CHECK(ok);
    CHECK(is_rgb(&a, 50, 50, 255, 127, 14)); /* the sample, tab10[1], over the heat map */
    CHECK(!is_white(&a, 30, 30) && !is_rgb(&a, 30, 30, 255, 127, 14));
    CHECK(inner_ink(&b, 10) == 0); /* no finite value: nothing drawn */
    free(a.px);
    free(b.px);
}

TEST(plot_vector_field_arrow_direction) {
    elbo_plot_opts o = small_opts();
    elbo_plot pl;
    CHECK(elbo_plot_init(&pl, &o, -1, 1, -1, 1) == ELBO_OK);
    const float x[1] = {0}, y[1] = {0}, u[1] = {1}, v[1] = {0};
    /* scale 0.5: a unit vector is 0.5 data units = 20 px long; the tail at (50, 50) */
    CHECK(elbo_plot_arrows(&pl, x, y, u, v, 1, 0.5, NULL) == ELBO_OK);
    image im = {pl.rgb, pl.height, pl.width, 3};
    for (int k = 50; k <= 70; k++) CHECK_MSG(is_black(&im, 50, k), "shaft at column %d", k);
    for (int k = 20; k < 50; k++) CHECK_MSG(is_white(&im, 50, k), "behind the tail at %d", k);
    for (int k = 71; k < 90; k++) CHECK_MSG(is_white(&im, 50, k), "beyond the tip at %d", k);
    int up = 0, down = 0;
    for (int r = 45; r < 50; r++)
        for (int c = 60; c < 70; c++) up += is_black(&im, r, c);
    for (int r = 51; r <= 55; r++)
        for (int c = 60; c < 70; c++) down += is_black(&im, r, c);
    CHECK_MSG(up >= 2 && down >= 2 && up == down, "head strokes: %d above, %d below", up, down);
    for (int r = 11; r < 90; r++)
        for (int c = 71; c < 90; c++) CHECK(is_white(&im, r, c));
    elbo_plot_free(&pl);

    /* one-call form: one arrow pointing down (v < 0) goes to larger rows */
    tmpdir td;
    CHECK(td_make(&td));
    o.xmin = o.ymin = -1;
    const float vd[1] = {-1}, u0[1] = {0};
    const char *p = td_file(&td, "v.png");
    image b = {0};
    int ok = elbo_plot_vector_field(p, x, y, u0, vd, 1, &o) == ELBO_OK && load(p, &b);
    td_remove(&td);
    CHECK(ok);
    for (int r = 50; r <= 89; r++) CHECK_MSG(is_black(&b, r, 50), "down arrow at row %d", r);
    for (int r = 11; r < 50; r++) CHECK_MSG(is_white(&b, r, 50), "above the tail at row %d", r);
    free(b.px);
}

TEST(plot_loss_curve_decreasing_goes_down_right) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    o.has_range = 0;
    float y[10];
    for (int i = 0; i < 10; i++) y[i] = (float)(10 - i);
    const char *p = td_file(&td, "l.png");
    image im = {0};
    int ok = elbo_plot_lines(p, NULL, y, 1, 10, &o) == ELBO_OK && load(p, &im);
    td_remove(&td);
    CHECK(ok);
    int first = -1, last = -1, first_row = -1, last_row = -1, prev = -1;
    for (int c = 11; c < 90; c++) {
        int top = -1;
        for (int r = 11; r < 90 && top < 0; r++)
            if (!is_white(&im, r, c)) top = r;
        if (top < 0) continue;
        CHECK_MSG(is_rgb(&im, top, c, 31, 119, 180), "line colour at column %d", c);
        CHECK_MSG(top >= prev, "the curve rises at column %d (%d after %d)", c, top, prev);
        if (first < 0) first = c, first_row = top;
        last = c, last_row = top;
        prev = top;
    }
    CHECK_MSG(first >= 0 && first < 20 && first_row < 20, "starts at (%d, %d)", first_row, first);
    CHECK_MSG(last > 80 && last_row > 80, "ends at (%d, %d)", last_row, last);
    free(im.px);
}

TEST(plot_log_axis_decades_equal_steps) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    o.log_y = 1;
    o.ymin = 1, o.ymax = 1e4;
    float y[6] = {10, 10, 100, 100, 1000, 1000}; /* three constant series */
    const char *p = td_file(&td, "g.png");
    image im = {0};
    int ok = elbo_plot_lines(p, NULL, y, 3, 2, &o) == ELBO_OK && load(p, &im);
    td_remove(&td);
    CHECK(ok);
    /* four decades over 80 px: 10 -> row 70, 100 -> 50, 1000 -> 30 */
    CHECK(is_rgb(&im, 70, 50, 31, 119, 180) && is_white(&im, 69, 50) && is_white(&im, 71, 50));
    CHECK(is_rgb(&im, 50, 50, 255, 127, 14) && is_white(&im, 49, 50) && is_white(&im, 51, 50));
    CHECK(is_rgb(&im, 30, 50, 44, 160, 44) && is_white(&im, 29, 50) && is_white(&im, 31, 50));
    for (int d = 0; d <= 4; d++) CHECK_MSG(is_black(&im, 90 - 20 * d, 7), "decade tick %d", d);
    CHECK(is_white(&im, 76, 7)); /* 5 is not a decade */

    elbo_plot pl;
    CHECK(elbo_plot_init(&pl, &o, 0, 1, 1e-3, 1e3) == ELBO_OK);
    double px, r1, r10, r100, r1000;
    CHECK(elbo_plot_map(&pl, 0, 1, &px, &r1) && elbo_plot_map(&pl, 0, 10, &px, &r10));
    CHECK(elbo_plot_map(&pl, 0, 100, &px, &r100) && elbo_plot_map(&pl, 0, 1000, &px, &r1000));
    CHECK_NEAR(r1 - r10, r10 - r100, 1e-9);
    CHECK_NEAR(r10 - r100, r100 - r1000, 1e-9);
    CHECK_NEAR(r1 - r10, 80.0 / 6, 1e-9);
    CHECK(!elbo_plot_map(&pl, 0, 0, &px, &r1) && !elbo_plot_map(&pl, 0, -1, &px, &r1));
    elbo_plot_free(&pl);
    free(im.px);
}

TEST(plot_nonfinite_and_out_of_range_draw_nothing) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts();
    const float xy[] = {NAN, 0.5f, 0.5f, INFINITY, -INFINITY, 0.5f, 2, 0.5f, 0.5f, -3,
                        1e30f, 1e30f, -3e38f, 0.5f, 0.5f, NAN};
    const int32_t lab[8] = {0, 1, 2, 3, 4, 5, 6, -7};
    image a = {0}, b = {0}, c = {0}, d = {0};
    const char *pa = td_file(&td, "a.png");
    int ok = elbo_plot_scatter(pa, xy, 8, lab, &o) == ELBO_OK && load(pa, &a);
    /* log axis: zero, negative, NaN and inf values are skipped (all of them here) */
    elbo_plot_opts lg = o;
    lg.log_y = 1, lg.ymin = 1, lg.ymax = 10;
    const float ylog[6] = {0, -1, NAN, INFINITY, -INFINITY, 0};
    const char *pb = td_file(&td, "b.png");
    ok = ok && elbo_plot_lines(pb, NULL, ylog, 1, 6, &lg) == ELBO_OK && load(pb, &b);
    /* auto range over no finite data: still a valid (empty) plot */
    elbo_plot_opts au = o;
    au.has_range = 0;
    const float ynan[3] = {NAN, NAN, NAN};
    const char *pc = td_file(&td, "c.png");
    ok = ok && elbo_plot_lines(pc, NULL, ynan, 1, 3, &au) == ELBO_OK && load(pc, &c);
    /* huge values: clipped to the frame, nothing escapes into the margin */
    const float xh[4] = {0, 1, 0.5f, 1e30f}, yh[4] = {0.5f, 1e30f, -1e30f, 0.5f};
    const char *pd = td_file(&td, "d.png");
    ok = ok && elbo_plot_lines(pd, xh, yh, 1, 4, &o) == ELBO_OK && load(pd, &d);
    int files = td_count(&td);
    td_remove(&td);
    CHECK(ok);
    CHECK(files == 4);
    CHECK(inner_ink(&a, 10) == 0 && inner_ink(&b, 10) == 0 && inner_ink(&c, 10) == 0);
    /* (1, 1e30) -> (0.5, -1e30) crosses y = 0.5 at x = 0.75, column 70, nearly vertically */
    int hit = 0;
    for (int k = 68; k <= 72; k++) hit |= is_rgb(&d, 50, k, 31, 119, 180);
    CHECK(hit && inner_ink(&d, 10) > 0);
    for (int r = 0; r < 10; r++)
        for (int k = 0; k < 101; k++) CHECK(is_white(&d, r, k) && is_white(&d, k, 100 - r));
    /* arrows with non-finite or zero components, and tails outside the range */
    elbo_plot pl;
    CHECK(elbo_plot_init(&pl, &o, 0, 1, 0, 1) == ELBO_OK);
    const float ax[4] = {0.5f, 0.5f, 5, 0.5f}, ay[4] = {0.5f, 0.5f, 0.5f, NAN};
    const float au_[4] = {INFINITY, 0, 1, 1}, av[4] = {0, 0, 1, 1};
    CHECK(elbo_plot_arrows(&pl, ax, ay, au_, av, 4, 0, NULL) == ELBO_OK);
    image e = {pl.rgb, pl.height, pl.width, 3};
    CHECK(inner_ink(&e, 10) == 0);
    float fnan[4] = {NAN, NAN, NAN, NAN};
    CHECK(elbo_plot_heat(&pl, fnan, 2, 2, 0, 0) == ELBO_OK);
    CHECK(inner_ink(&e, 10) == 0);
    elbo_plot_free(&pl);
    free(a.px), free(b.px), free(c.px), free(d.px);
}

TEST(plot_bad_arguments) {
    tmpdir td;
    CHECK(td_make(&td));
    elbo_plot_opts o = small_opts(), bad;
    const float xy[2] = {0.5f, 0.5f}, f[4] = {0, 1, 2, 3};
    const char *p = td_file(&td, "x.png");
#define BAD(call, word)                                                                            \
    do {                                                                                           \
        elbo_clear_error();                                                                        \
        elbo_status st_ = (call);                                                                  \
        CHECK_MSG(st_ == ELBO_ERR_ARG && has(elbo_last_error(), word),                             \
                  "%s: status %d, message '%s'", #call, (int)st_, elbo_last_error());              \
    } while (0)
    BAD(elbo_plot_scatter(NULL, xy, 1, NULL, &o), "path");
    BAD(elbo_plot_scatter(p, NULL, 1, NULL, &o), "xy");
    BAD(elbo_plot_scatter(p, xy, 0, NULL, &o), "n");
    BAD(elbo_plot_scatter(p, xy, -5, NULL, &o), "n");
    BAD(elbo_plot_scatter(p, xy, (int64_t)1 << 40, NULL, &o), "n");
    bad = o, bad.width = 0;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "width");
    bad = o, bad.height = 1000000;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "height");
    bad = o, bad.pad = 50;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "pad");
    bad = o, bad.radius = 0;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "radius");
    bad = o, bad.alpha = 0;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "alpha");
    bad = o, bad.xmax = 0;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "x range");
    bad = o, bad.ymin = NAN;
    BAD(elbo_plot_scatter(p, xy, 1, NULL, &bad), "y range");
    bad = o, bad.log_y = 1;
    BAD(elbo_plot_lines(p, NULL, f, 1, 4, &bad), "log");
    BAD(elbo_plot_lines(p, NULL, NULL, 1, 4, &o), "y");
    BAD(elbo_plot_lines(p, NULL, f, 0, 4, &o), "n_series");
    BAD(elbo_plot_lines(p, NULL, f, 1, 0, &o), "n");
    BAD(elbo_plot_density(p, NULL, 2, 2, 0, 1, 0, 1, NULL, 0, &o), "f");
    BAD(elbo_plot_density(p, f, 0, 2, 0, 1, 0, 1, NULL, 0, &o), "nx");
    BAD(elbo_plot_density(p, f, 2, 2, 1, 0, 0, 1, NULL, 0, &o), "x range");
    BAD(elbo_plot_density(p, f, 2, 2, 0, 1, 0, 1, NULL, 3, &o), "xy");
    bad = o, bad.has_vrange = 1, bad.vmin = bad.vmax = 1;
    BAD(elbo_plot_density(p, f, 2, 2, 0, 1, 0, 1, NULL, 0, &bad), "vmin");
    BAD(elbo_plot_vector_field(p, xy, xy, NULL, xy, 1, &o), "u");
    BAD(elbo_plot_vector_field(p, xy, xy, xy, NULL, 1, &o), "v");
    BAD(elbo_plot_loss_csv(NULL, p, NULL, &o), "csv_path");
    BAD(elbo_plot_loss_csv(p, NULL, NULL, &o), "png_path");
    BAD(elbo_plot_init(NULL, &o, 0, 1, 0, 1), "p is");
    elbo_plot pl;
    BAD(elbo_plot_init(&pl, &o, 0, 1, 1, 1), "y range");
    CHECK(pl.rgb == NULL);
    BAD(elbo_plot_points(&pl, xy, 1, NULL, NULL, 2, 1), "p is");
    BAD(elbo_plot_save(&pl, p), "p is");
#undef BAD
    int files = td_count(&td);
    td_remove(&td);
    CHECK_MSG(files == 0, "%d files left by failed calls", files);
}

TEST(plot_loss_csv_columns) {
    tmpdir td;
    CHECK(td_make(&td));
    char csv[128];
    snprintf(csv, sizeof csv, "%s", td_file(&td, "log.csv"));
    int ok = write_text(csv, "step, loss ,kl\r\n0,1000,1\r\n100,100,2\r\n\r\n200,10,3\r\n"
                             "300,1,nan\r\n");
    elbo_plot_opts o = small_opts();
    o.has_range = 0, o.log_y = 1;
    const char *p = td_file(&td, "loss.png");
    elbo_status st = ok ? elbo_plot_loss_csv(csv, p, "loss", &o) : ELBO_ERR_IO;
    image a = {0}, b = {0};
    ok = st == ELBO_OK && load(p, &a);
    const char *p2 = td_file(&td, "all.png");
    ok = ok && elbo_plot_loss_csv(csv, p2, NULL, &o) == ELBO_OK && load(p2, &b);
    elbo_clear_error();
    st = elbo_plot_loss_csv(csv, td_file(&td, "no.png"), "loss,nope", &o);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", elbo_last_error());
    int files = td_count(&td);
    td_remove(&td);
    CHECK(ok);
    CHECK_MSG(st == ELBO_ERR_ARG && has(msg, "nope") && has(msg, csv), "status %d '%s'", st, msg);
    CHECK(files == 3);
    /* loss 1000 -> 1 over steps 0..300 on a log axis is a straight line down-right. With
     * the 5% margins the axes are steps [-15, 315] and log10 loss [-0.15, 3.15]. */
    int count = 0, ko = 0;
    for (int c = 16; c <= 85; c++) {
        double step = (c - 10) / 80.0 * 330 - 15, ly = 3 - step / 100;
        int r = (int)floor(90 - (ly + 0.15) / 3.3 * 80 + 0.5);
        int hit = 0;
        for (int dr = -1; dr <= 1; dr++) hit |= is_rgb(&a, r + dr, c, 31, 119, 180);
        count++, ko += !hit;
    }
    CHECK_MSG(ko == 0, "%d of %d columns miss the straight log-loss line", ko, count);
    /* every column but step: the kl series (tab10[1]) appears only in the second plot */
    int kl_a = 0, kl_b = 0;
    for (int64_t k = 0; k < a.h * a.w; k++) {
        kl_a += a.px[3 * k] == 255 && a.px[3 * k + 1] == 127 && a.px[3 * k + 2] == 14;
        kl_b += b.px[3 * k] == 255 && b.px[3 * k + 1] == 127 && b.px[3 * k + 2] == 14;
    }
    CHECK(kl_a == 0 && kl_b > 10);
    free(a.px);
    free(b.px);
}

/* elbo_plot_csv with one x column per series: a metric-against-metric curve per series, and
 * markers at the vertices. Series a runs (0.1, 0.1) -> (0.9, 0.9), series b (0.1, 0.9) ->
 * (0.9, 0.1) on [0, 1]^2 (pixel column 10 + 80 x, row 90 - 80 y). */
TEST(plot_csv_parametric_series_and_markers) {
    tmpdir td;
    CHECK(td_make(&td));
    char csv[128], p[128], q[128];
    snprintf(csv, sizeof csv, "%s", td_file(&td, "sweep.csv"));
    snprintf(p, sizeof p, "%s", td_file(&td, "lines.png"));
    snprintf(q, sizeof q, "%s", td_file(&td, "marks.png"));
    int ok = write_text(csv, "w,xa,ya,xb,yb\n0,0.1,0.1,0.1,0.9\n1,0.9,0.9,0.9,0.1\n");
    elbo_plot_opts o = small_opts();
    o.radius = 3;
    ok = ok && elbo_plot_csv(csv, p, "xa,xb", "ya,yb", 0, &o) == ELBO_OK;
    ok = ok && elbo_plot_csv(csv, q, "xa,xb", "ya,yb", 1, &o) == ELBO_OK;
    image a = {0}, b = {0};
    ok = ok && load(p, &a) && load(q, &b);
    elbo_clear_error();
    elbo_status st = elbo_plot_csv(csv, td_file(&td, "no.png"), "xa,xb,w", "ya,yb", 0, &o);
    char msg[256];
    snprintf(msg, sizeof msg, "%s", elbo_last_error());
    elbo_status st2 = elbo_plot_csv(csv, td_file(&td, "no.png"), "nope", "ya", 0, &o);
    int files = td_count(&td);
    td_remove(&td);
    CHECK(ok);
    CHECK_MSG(st == ELBO_ERR_ARG && has(msg, "x columns") && has(msg, "3 names"), "'%s'", msg);
    CHECK(st2 == ELBO_ERR_ARG);
    CHECK_MSG(files == 3, "%d files", files);
    if (!ok) return;
    int blue_a = 0, orange_a = 0;
    for (int d = -1; d <= 1; d++) {
        blue_a |= is_rgb(&a, 70 + d, 30, 31, 119, 180);   /* (0.25, 0.25) on series a */
        orange_a |= is_rgb(&a, 30 + d, 30, 255, 127, 14); /* (0.25, 0.75) on series b */
    }
    CHECK(blue_a && orange_a);
    /* (0.125, 0.1): 2 px right of series a's first vertex, off its line; inside its marker */
    CHECK(is_rgb(&a, 82, 20, 255, 255, 255));
    CHECK(is_rgb(&b, 82, 20, 31, 119, 180));
    CHECK(is_rgb(&b, 18, 20, 255, 127, 14)); /* series b's first vertex (0.1, 0.9) */
    free(a.px);
    free(b.px);
}

TEST(plot_loss_csv_malformed) {
    tmpdir td;
    CHECK(td_make(&td));
    const struct {
        const char *name, *text;
        elbo_status st;
        const char *where;
    } cases[] = {
        {"empty.csv", "", ELBO_ERR_FORMAT, ":1:"},
        {"nohdr.csv", "0,1.5\n1,1.0\n", ELBO_ERR_FORMAT, ":1:"},
        {"emptyname.csv", "step,,loss\n0,1,2\n", ELBO_ERR_FORMAT, ":1:"},
        {"text.csv", "step,loss\n0,1\n1,abc\n", ELBO_ERR_FORMAT, ":3:"},
        {"emptycell.csv", "step,loss\n0,\n", ELBO_ERR_FORMAT, ":2:"},
        {"long.csv", "step,loss\n0,1\n1,2\n2,3,4\n", ELBO_ERR_FORMAT, ":4:"},
        {"short.csv", "step,loss\n0\n", ELBO_ERR_FORMAT, ":2:"},
        {"nodata.csv", "step,loss\n\n", ELBO_ERR_FORMAT, "no data"},
        {"onlystep.csv", "step\n1\n", ELBO_ERR_FORMAT, ":1:"},
    };
    elbo_plot_opts o = small_opts();
    o.has_range = 0;
    char csv[128], png[128];
    snprintf(png, sizeof png, "%s", td_file(&td, "out.png"));
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        snprintf(csv, sizeof csv, "%s", td_file(&td, cases[i].name));
        CHECK(write_text(csv, cases[i].text));
        elbo_clear_error();
        elbo_status st = elbo_plot_loss_csv(csv, png, NULL, &o);
        const char *m = elbo_last_error();
        CHECK_MSG(st == cases[i].st && has(m, csv) && has(m, cases[i].where) && !strchr(m, '\n'),
                  "%s: status %d, message '%s'", cases[i].name, (int)st, m);
    }
    snprintf(csv, sizeof csv, "%s", td_file(&td, "missing.csv"));
    elbo_status st = elbo_plot_loss_csv(csv, png, NULL, &o);
    CHECK_MSG(st == ELBO_ERR_IO && has(elbo_last_error(), csv), "missing: %d '%s'", (int)st,
              elbo_last_error());
    int files = td_count(&td);
    td_remove(&td);
    CHECK_MSG(files == n, "%d files (a PNG was written for a bad CSV?)", files);
}
