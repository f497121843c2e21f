/* Training progress: a redrawn bar on a terminal, plain log lines elsewhere, and a CSV loss
 * log (see include/elbo/progress.h). Nothing is allocated after elbo_progress_create. */
#include "elbo/progress.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 1024

struct elbo_progress {
    elbo_progress_opts o;
    char columns[ELBO_PROGRESS_MAX_COLUMNS][ELBO_PROGRESS_MAX_NAME + 1];
    char *csv_path; /* owned copy */
    FILE *csv;
    int tty;
    double t0, last_draw;
    int drawn;          /* bar: something is on the current line */
    int last_len;       /* bar: length of the last line drawn, to blank a shorter one */
    int64_t last_step;  /* last step passed to elbo_progress_step */
    int finished;
    char line[LINE_MAX_BYTES];
};

static double monotonic_now(void *user) {
    (void)user;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void elbo_progress_opts_default(elbo_progress_opts *o) {
    memset(o, 0, sizeof *o);
    o->out = stderr;
    o->tty = -1;
    o->log_every = 100;
    o->redraw_s = 0.1;
    o->bar_width = 30;
    o->csv_every = 1;
}

static int bad_name(const char *s) {
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > ELBO_PROGRESS_MAX_NAME) return 1;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == ',' || c == '"') return 1;
    }
    return 0;
}

/* The CSV header, "step,loss[,col...]\n", into buf. */
static void csv_header(const elbo_progress *p, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "step,loss");
    for (int i = 0; i < p->o.n_columns && k < len; i++)
        k += (size_t)snprintf(buf + k, len - k, ",%s", p->columns[i]);
    if (k < len) snprintf(buf + k, len - k, "\n");
}

static elbo_status open_csv(elbo_progress *p) {
    char header[LINE_MAX_BYTES];
    csv_header(p, header, sizeof header);
    const char *path = p->csv_path;
    if (p->o.csv_append) {
        FILE *f = fopen(path, "a+");
        if (!f) return elbo_error(ELBO_ERR_IO, "%s: cannot open for appending: %s", path,
                                  strerror(errno));
        if (fseek(f, 0, SEEK_END) != 0) {
            fclose(f);
            return elbo_error(ELBO_ERR_IO, "%s: cannot seek: %s", path, strerror(errno));
        }
        long size = ftell(f);
        if (size > 0) {
            char first[LINE_MAX_BYTES];
            rewind(f);
            if (!fgets(first, sizeof first, f) || strcmp(first, header) != 0) {
                fclose(f);
                size_t hl = strlen(header);
                return elbo_error(ELBO_ERR_FORMAT,
                                  "%s: cannot append: its header is not \"%.*s\"", path,
                                  (int)(hl ? hl - 1 : 0), header);
            }
            /* writes in "a+" mode go to the end whatever the read position */
            fseek(f, 0, SEEK_END);
            p->csv = f;
            return ELBO_OK;
        }
        p->csv = f;
    } else {
        p->csv = fopen(path, "w");
        if (!p->csv)
            return elbo_error(ELBO_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
    }
    if (fputs(header, p->csv) == EOF || fflush(p->csv) != 0) {
        int e = errno;
        fclose(p->csv);
        p->csv = NULL;
        /* no half-written log: a fresh one is removed, an empty one to append to stays empty */
        if (p->o.csv_append)
            (void)truncate(path, 0);
        else
            (void)unlink(path);
        return elbo_error(ELBO_ERR_IO, "%s: cannot write: %s", path, strerror(e));
    }
    return ELBO_OK;
}

elbo_status elbo_progress_create(const elbo_progress_opts *o, elbo_progress **out) {
    if (!out) return elbo_error(ELBO_ERR_ARG, "elbo_progress_create: out is NULL");
    *out = NULL;
    if (!o) return elbo_error(ELBO_ERR_ARG, "elbo_progress_create: opts is NULL");
    if (o->total < 0 || o->start_step < 0 || (o->total > 0 && o->start_step > o->total))
        return elbo_error(ELBO_ERR_ARG,
                          "elbo_progress_create: bad total %lld or start_step %lld",
                          (long long)o->total, (long long)o->start_step);
    if (o->log_every < 1 || o->csv_every < 1)
        return elbo_error(ELBO_ERR_ARG,
                          "elbo_progress_create: log_every and csv_every must be >= 1");
    if (!(o->redraw_s >= 0) || o->bar_width < 0 || o->bar_width > 200)
        return elbo_error(ELBO_ERR_ARG, "elbo_progress_create: bad redraw_s or bar_width");
    if (o->n_columns < 0 || o->n_columns > ELBO_PROGRESS_MAX_COLUMNS ||
        (o->n_columns > 0 && !o->columns))
        return elbo_error(ELBO_ERR_ARG, "elbo_progress_create: bad n_columns %d (0..%d)",
                          o->n_columns, ELBO_PROGRESS_MAX_COLUMNS);
    for (int i = 0; i < o->n_columns; i++)
        if (bad_name(o->columns[i]))
            return elbo_error(ELBO_ERR_ARG,
                              "elbo_progress_create: bad column name \"%s\" (1..%d characters, "
                              "no ',', '\"' or control characters)",
                              o->columns[i] ? o->columns[i] : "(null)", ELBO_PROGRESS_MAX_NAME);
    if (o->csv_path && !o->csv_path[0])
        return elbo_error(ELBO_ERR_ARG, "elbo_progress_create: empty csv_path");

    elbo_progress *p = calloc(1, sizeof *p);
    if (!p) return elbo_error(ELBO_ERR_NOMEM, "elbo_progress_create: out of memory");
    p->o = *o;
    p->o.columns = NULL; /* copied below; the caller's array need not outlive p */
    for (int i = 0; i < o->n_columns; i++)
        snprintf(p->columns[i], sizeof p->columns[i], "%s", o->columns[i]);
    if (!p->o.clock) p->o.clock = monotonic_now;
    if (o->csv_path) {
        p->csv_path = strdup(o->csv_path);
        if (!p->csv_path) {
            free(p);
            return elbo_error(ELBO_ERR_NOMEM, "elbo_progress_create: out of memory");
        }
        elbo_status st = open_csv(p);
        if (st != ELBO_OK) {
            free(p->csv_path);
            free(p);
            return st;
        }
    }
    p->tty = o->tty;
    if (p->tty < 0) p->tty = o->out ? isatty(fileno(o->out)) : 0;
    p->t0 = p->o.clock(p->o.clock_user);
    p->last_draw = -INFINITY;
    p->last_step = o->start_step;
    *out = p;
    return ELBO_OK;
}

double elbo_progress_rate(const elbo_progress *p, int64_t step, double now) {
    double dt = now - p->t0;
    double n = (double)(step - p->o.start_step);
    if (!(dt > 0) || !(n > 0)) return 0;
    return n / dt;
}

double elbo_progress_eta(const elbo_progress *p, int64_t step, double now) {
    double rate = elbo_progress_rate(p, step, now);
    if (p->o.total <= 0 || !(rate > 0)) return -1;
    int64_t left = p->o.total - step;
    return left > 0 ? (double)left / rate : 0;
}

char *elbo_progress_format_duration(double s, char *buf, size_t len) {
    if (!(s >= 0) || !isfinite(s) || s > 1e12) {
        snprintf(buf, len, "?");
        return buf;
    }
    long long t = (long long)floor(s + 0.5);
    long long h = t / 3600, m = t / 60 % 60, sec = t % 60;
    if (h > 0)
        snprintf(buf, len, "%lldh%02lldm%02llds", h, m, sec);
    else if (m > 0)
        snprintf(buf, len, "%lldm%02llds", m, sec);
    else
        snprintf(buf, len, "%llds", sec);
    return buf;
}

/* Appends printf output to p->line at *k, never past the buffer. */
static void add(elbo_progress *p, size_t *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void add(elbo_progress *p, size_t *k, const char *fmt, ...) {
    if (*k >= sizeof p->line - 1) return;
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(p->line + *k, sizeof p->line - *k, fmt, ap);
    va_end(ap);
    if (r < 0) return;
    *k += (size_t)r;
    if (*k > sizeof p->line - 1) *k = sizeof p->line - 1;
}

/* " loss L[ name v...] R it/s[ eta T]" */
static void add_values(elbo_progress *p, size_t *k, int64_t step, double loss,
                       const double *extra, double now) {
    add(p, k, " loss %.6g", loss);
    for (int i = 0; i < p->o.n_columns; i++) add(p, k, " %s %.6g", p->columns[i], extra[i]);
    double rate = elbo_progress_rate(p, step, now);
    if (rate > 0)
        add(p, k, " %.2f it/s", rate);
    else
        add(p, k, " ? it/s");
    if (p->o.total > 0) {
        char d[32];
        add(p, k, " eta %s",
            elbo_progress_format_duration(elbo_progress_eta(p, step, now), d, sizeof d));
    }
}

static void draw_bar(elbo_progress *p, int64_t step, double loss, const double *extra,
                     double now) {
    size_t k = 0;
    add(p, &k, "\r");
    if (p->o.total > 0 && p->o.bar_width > 0) {
        int w = p->o.bar_width;
        int fill = (int)((double)w * (double)step / (double)p->o.total);
        if (fill > w) fill = w;
        add(p, &k, "[");
        for (int i = 0; i < w; i++) add(p, &k, "%c", i < fill ? '#' : '.');
        add(p, &k, "] %lld/%lld", (long long)step, (long long)p->o.total);
    } else {
        add(p, &k, "%lld", (long long)step);
    }
    add_values(p, &k, step, loss, extra, now);
    int len = (int)k - 1;
    for (int i = len; i < p->last_len; i++) add(p, &k, " ");
    p->last_len = len;
    fwrite(p->line, 1, k, p->o.out);
    fflush(p->o.out);
    p->drawn = 1;
    p->last_draw = now;
}

static void plain_line(elbo_progress *p, int64_t step, double loss, const double *extra,
                       double now) {
    size_t k = 0;
    if (p->o.total > 0)
        add(p, &k, "step %lld/%lld", (long long)step, (long long)p->o.total);
    else
        add(p, &k, "step %lld", (long long)step);
    add_values(p, &k, step, loss, extra, now);
    add(p, &k, "\n");
    fwrite(p->line, 1, k, p->o.out);
    fflush(p->o.out);
}

static elbo_status csv_row(elbo_progress *p, int64_t step, double loss, const double *extra) {
    size_t k = 0;
    add(p, &k, "%lld,%.9g", (long long)step, loss);
    for (int i = 0; i < p->o.n_columns; i++) add(p, &k, ",%.9g", extra[i]);
    add(p, &k, "\n");
    off_t start = ftello(p->csv); /* the end of the last whole row (flushed after each) */
    if (fwrite(p->line, 1, k, p->csv) != k || fflush(p->csv) != 0) {
        /* A full disk may have taken part of the row: close the log and cut it back to its
         * last whole row; later steps write no more rows. */
        int e = errno;
        fclose(p->csv);
        p->csv = NULL;
        if (start >= 0) (void)truncate(p->csv_path, start);
        return elbo_error(ELBO_ERR_IO, "%s: cannot write: %s", p->csv_path, strerror(e));
    }
    return ELBO_OK;
}

elbo_status elbo_progress_step(elbo_progress *p, int64_t step, double loss, const double *extra) {
    if (!p) return elbo_error(ELBO_ERR_ARG, "elbo_progress_step: NULL reporter");
    if (p->finished) return elbo_error(ELBO_ERR_STATE, "elbo_progress_step: already finished");
    if (step <= p->last_step || (p->o.total > 0 && step > p->o.total))
        return elbo_error(ELBO_ERR_ARG,
                          "elbo_progress_step: step %lld after step %lld (total %lld)",
                          (long long)step, (long long)p->last_step, (long long)p->o.total);
    if (p->o.n_columns > 0 && !extra)
        return elbo_error(ELBO_ERR_ARG, "elbo_progress_step: %d extra values expected, got NULL",
                          p->o.n_columns);
    p->last_step = step;
    int last = p->o.total > 0 && step == p->o.total;
    if (p->o.out) {
        double now = p->o.clock(p->o.clock_user);
        if (p->tty) {
            if (last || now - p->last_draw >= p->o.redraw_s) draw_bar(p, step, loss, extra, now);
        } else if (last || step % p->o.log_every == 0) {
            plain_line(p, step, loss, extra, now);
        }
    }
    if (p->csv && (last || step % p->o.csv_every == 0)) return csv_row(p, step, loss, extra);
    return ELBO_OK;
}

elbo_status elbo_progress_finish(elbo_progress *p) {
    if (!p || p->finished) return ELBO_OK;
    p->finished = 1;
    if (p->o.out) {
        if (p->tty && p->drawn) fputc('\n', p->o.out);
        fflush(p->o.out);
    }
    elbo_status st = ELBO_OK;
    if (p->csv) {
        if (fclose(p->csv) != 0)
            st = elbo_error(ELBO_ERR_IO, "%s: cannot close: %s", p->csv_path, strerror(errno));
        p->csv = NULL;
    }
    return st;
}

void elbo_progress_free(elbo_progress *p) {
    if (!p) return;
    elbo_progress_finish(p);
    free(p->csv_path);
    free(p);
}
