/* Progress reporter: exact plain-log lines and CSV contents, the rate and ETA arithmetic on
 * an injected clock, the redrawn bar, resuming a CSV log, the errors for bad options and an
 * unwritable CSV path, and no allocation per step. */
#include "test.h"

#include "elbo/progress.h"
#include "malloc_count.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A clock that returns *t, advanced by the test. */
static double fake_clock(void *user) { return *(const double *)user; }

/* The whole contents of a file ("" if missing), malloc'd. */
static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    rewind(f);
    char *s = malloc((size_t)n + 1);
    size_t got = fread(s, 1, (size_t)n, f);
    s[got] = 0;
    fclose(f);
    return s;
}

static void tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "/tmp/elbo_test_progress_%ld_%s", (long)getpid(), name);
}

TEST(progress_plain_lines_and_csv) {
    char csv[256];
    tmp_path(csv, sizeof csv, "log.csv");
    unlink(csv);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CHECK(out);
    double t = 100.0;
    const char *cols[] = {"kl", "lr"};
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = out;
    o.total = 10;
    o.log_every = 4;
    o.csv_path = csv;
    o.columns = cols;
    o.n_columns = 2;
    o.clock = fake_clock;
    o.clock_user = &t;
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    for (int s = 1; s <= 10; s++) {
        t = 100.0 + 0.5 * s; /* 2 it/s */
        double extra[2] = {0.25 * s, 1e-3};
        CHECK(elbo_progress_step(p, s, 1.0 / s, extra) == ELBO_OK);
    }
    CHECK(elbo_progress_finish(p) == ELBO_OK);
    elbo_progress_free(p);
    fclose(out);
    const char *want =
        "step 4/10 loss 0.25 kl 1 lr 0.001 2.00 it/s eta 3s\n"
        "step 8/10 loss 0.125 kl 2 lr 0.001 2.00 it/s eta 1s\n"
        "step 10/10 loss 0.1 kl 2.5 lr 0.001 2.00 it/s eta 0s\n";
    CHECK_MSG(!strcmp(buf, want), "log:\n%s\nwant:\n%s", buf, want);
    free(buf);
    char *c = slurp(csv);
    /* losses are doubles, "%.9g": 1/3 is 0.333333333 */
    const char *want_csv_d = "step,loss,kl,lr\n"
                             "1,1,0.25,0.001\n"
                             "2,0.5,0.5,0.001\n"
                             "3,0.333333333,0.75,0.001\n"
                             "4,0.25,1,0.001\n"
                             "5,0.2,1.25,0.001\n"
                             "6,0.166666667,1.5,0.001\n"
                             "7,0.142857143,1.75,0.001\n"
                             "8,0.125,2,0.001\n"
                             "9,0.111111111,2.25,0.001\n"
                             "10,0.1,2.5,0.001\n";
    int ok = !strcmp(c, want_csv_d);
    unlink(csv);
    CHECK_MSG(ok, "csv:\n%s\nwant:\n%s", c, want_csv_d);
    free(c);
}

TEST(progress_csv_flushed_each_row) {
    char csv[256];
    tmp_path(csv, sizeof csv, "flush.csv");
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.csv_path = csv;
    o.csv_every = 2;
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    char *c = slurp(csv);
    int ok = !strcmp(c, "step,loss\n");
    free(c);
    CHECK(ok);
    CHECK(elbo_progress_step(p, 1, 3.0, NULL) == ELBO_OK);
    CHECK(elbo_progress_step(p, 2, 2.5, NULL) == ELBO_OK);
    c = slurp(csv); /* before finish: the row is on disk already */
    ok = !strcmp(c, "step,loss\n2,2.5\n");
    free(c);
    elbo_progress_free(p);
    unlink(csv);
    CHECK(ok);
}

TEST(progress_rate_eta_arithmetic) {
    double t = 10.0;
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.total = 1000;
    o.start_step = 200; /* resumed: the rate counts steps done since creation */
    o.clock = fake_clock;
    o.clock_user = &t;
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    CHECK_NEAR(elbo_progress_rate(p, 200, 10.0), 0, 0);  /* no time, no steps */
    CHECK_NEAR(elbo_progress_eta(p, 200, 10.0), -1, 0);  /* unknown */
    CHECK_NEAR(elbo_progress_rate(p, 250, 10.0), 0, 0);  /* no time */
    CHECK_NEAR(elbo_progress_rate(p, 250, 14.0), 12.5, 1e-12);
    CHECK_NEAR(elbo_progress_eta(p, 250, 14.0), 750 / 12.5, 1e-9); /* 60 s */
    CHECK_NEAR(elbo_progress_rate(p, 1000, 42.0), 25.0, 1e-12);
    CHECK_NEAR(elbo_progress_eta(p, 1000, 42.0), 0, 0);
    elbo_progress_free(p);

    char d[32];
    CHECK(!strcmp(elbo_progress_format_duration(0, d, sizeof d), "0s"));
    CHECK(!strcmp(elbo_progress_format_duration(7.4, d, sizeof d), "7s"));
    CHECK(!strcmp(elbo_progress_format_duration(59.6, d, sizeof d), "1m00s"));
    CHECK(!strcmp(elbo_progress_format_duration(125, d, sizeof d), "2m05s"));
    CHECK(!strcmp(elbo_progress_format_duration(3723, d, sizeof d), "1h02m03s"));
    CHECK(!strcmp(elbo_progress_format_duration(-1, d, sizeof d), "?"));
    CHECK(!strcmp(elbo_progress_format_duration(NAN, d, sizeof d), "?"));

    /* no total: no ETA in the line; before any time passes the rate is "?" */
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CHECK(out);
    t = 0;
    elbo_progress_opts_default(&o);
    o.out = out;
    o.tty = 0;
    o.log_every = 1;
    o.clock = fake_clock;
    o.clock_user = &t;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    CHECK(elbo_progress_step(p, 1, 2.0, NULL) == ELBO_OK);
    t = 4;
    CHECK(elbo_progress_step(p, 3, 1.5, NULL) == ELBO_OK);
    elbo_progress_free(p);
    fclose(out);
    int ok = !strcmp(buf, "step 1 loss 2 ? it/s\nstep 3 loss 1.5 0.75 it/s\n");
    CHECK_MSG(ok, "got:\n%s", buf);
    free(buf);
}

TEST(progress_bar_redraw) {
    char *buf = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&buf, &len);
    CHECK(out);
    double t = 0;
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = out;
    o.tty = 1;
    o.total = 4;
    o.bar_width = 4;
    o.redraw_s = 1.0;
    o.clock = fake_clock;
    o.clock_user = &t;
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    t = 2;
    CHECK(elbo_progress_step(p, 1, 10.0, NULL) == ELBO_OK); /* drawn */
    t = 2.5;
    CHECK(elbo_progress_step(p, 2, 9.0, NULL) == ELBO_OK); /* too soon: skipped */
    t = 4;
    CHECK(elbo_progress_step(p, 3, 8.0, NULL) == ELBO_OK); /* drawn */
    t = 4.1;
    CHECK(elbo_progress_step(p, 4, 7.0, NULL) == ELBO_OK); /* last: always drawn */
    CHECK(elbo_progress_finish(p) == ELBO_OK);
    CHECK(elbo_progress_finish(p) == ELBO_OK); /* idempotent */
    elbo_progress_free(p);
    fclose(out);
    const char *want = "\r[#...] 1/4 loss 10 0.50 it/s eta 6s"
                       "\r[###.] 3/4 loss 8 0.75 it/s eta 1s "
                       "\r[####] 4/4 loss 7 0.98 it/s eta 0s"
                       "\n";
    CHECK_MSG(!strcmp(buf, want), "bar:\n[%s]\nwant:\n[%s]", buf, want);
    free(buf);
}

TEST(progress_csv_append_resume) {
    char csv[256];
    tmp_path(csv, sizeof csv, "resume.csv");
    unlink(csv);
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.csv_path = csv;
    o.csv_append = 1; /* no file yet: created with a header */
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    CHECK(elbo_progress_step(p, 1, 4.0, NULL) == ELBO_OK);
    CHECK(elbo_progress_step(p, 2, 3.0, NULL) == ELBO_OK);
    elbo_progress_free(p);
    o.start_step = 2;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    CHECK(elbo_progress_step(p, 2, 1.0, NULL) == ELBO_ERR_ARG); /* not after start_step */
    CHECK(elbo_progress_step(p, 3, 2.0, NULL) == ELBO_OK);
    elbo_progress_free(p);
    char *c = slurp(csv);
    int ok = !strcmp(c, "step,loss\n1,4\n2,3\n3,2\n");
    free(c);
    CHECK(ok);
    /* another header: refused, the file untouched */
    const char *cols[] = {"kl"};
    o.columns = cols;
    o.n_columns = 1;
    p = (elbo_progress *)1;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_FORMAT);
    CHECK(p == NULL);
    CHECK(strstr(elbo_last_error(), csv) != NULL);
    c = slurp(csv);
    ok = !strcmp(c, "step,loss\n1,4\n2,3\n3,2\n");
    free(c);
    CHECK(ok);
    /* not appending: created fresh */
    o.csv_append = 0;
    o.start_step = 0;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    elbo_progress_free(p);
    c = slurp(csv);
    ok = !strcmp(c, "step,loss,kl\n");
    free(c);
    unlink(csv);
    CHECK(ok);
}

TEST(progress_errors) {
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.csv_path = "/nonexistent_elbo_dir/log.csv";
    elbo_progress *p = (elbo_progress *)1;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_IO);
    CHECK(p == NULL);
    CHECK(strstr(elbo_last_error(), "/nonexistent_elbo_dir/log.csv") != NULL);
    CHECK(strchr(elbo_last_error(), '\n') == NULL);
    o.csv_append = 1;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_IO);
    CHECK(strstr(elbo_last_error(), "/nonexistent_elbo_dir/log.csv") != NULL);

    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.log_every = 0;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_ARG);
    elbo_progress_opts_default(&o);
    o.out = NULL;
    const char *bad[] = {"a,b"};
    o.columns = bad;
    o.n_columns = 1;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_ARG);
    CHECK(strstr(elbo_last_error(), "a,b") != NULL);
    o.n_columns = ELBO_PROGRESS_MAX_COLUMNS + 1;
    CHECK(elbo_progress_create(&o, &p) == ELBO_ERR_ARG);

    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.total = 3;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    CHECK(elbo_progress_step(p, 0, 1.0, NULL) == ELBO_ERR_ARG);
    CHECK(elbo_progress_step(p, 4, 1.0, NULL) == ELBO_ERR_ARG); /* past the total */
    CHECK(elbo_progress_step(p, 2, 1.0, NULL) == ELBO_OK);
    CHECK(elbo_progress_step(p, 2, 1.0, NULL) == ELBO_ERR_ARG); /* not increasing */
    elbo_progress_free(p);
    elbo_progress_free(NULL);
}

TEST(progress_no_allocation_per_step) {
    if (!malloc_count_available()) return; /* allocator not interposed (ASan) */
    char csv[256], log[256];
    tmp_path(csv, sizeof csv, "alloc.csv");
    tmp_path(log, sizeof log, "alloc.log");
    FILE *out = fopen(log, "w");
    CHECK(out);
    const char *cols[] = {"kl"};
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = out;
    o.tty = 0;
    o.total = 1000;
    o.log_every = 10;
    o.csv_path = csv;
    o.columns = cols;
    o.n_columns = 1;
    elbo_progress *p;
    CHECK(elbo_progress_create(&o, &p) == ELBO_OK);
    double kl = 0.5;
    /* the first steps let stdio allocate its buffers */
    for (int s = 1; s <= 10; s++) CHECK(elbo_progress_step(p, s, 1.0, &kl) == ELBO_OK);
    malloc_count_result r;
    malloc_count_start();
    elbo_status st = ELBO_OK;
    for (int s = 11; s <= 1000 && st == ELBO_OK; s++) st = elbo_progress_step(p, s, 1.0 / s, &kl);
    malloc_count_stop(&r);
    elbo_progress_free(p);
    fclose(out);
    unlink(csv);
    unlink(log);
    CHECK(st == ELBO_OK);
    CHECK_MSG(r.calls[0] == 0 && r.calls[1] == 0, "%ld + %ld heap calls per 990 steps, first %s %s",
              r.calls[0], r.calls[1], r.first[0], r.first[1]);
}
