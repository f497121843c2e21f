/* elbo progress: a training progress reporter and CSV loss log.
 *
 * - On a terminal (isatty on the output stream, or forced with opts.tty = 1) one line is
 *   redrawn with '\r' (at most every opts.redraw_s seconds, and always at the last step):
 *     "[#####.........] 100/1000 loss 0.123457 12.50 it/s eta 1m12s"
 *   elbo_progress_finish ends it with '\n'.
 * - Otherwise (a pipe, a file) a plain line every opts.log_every steps and at the last step:
 *     "step 100/1000 loss 0.123457 kl 1.5 12.50 it/s eta 1m12s"
 *   (without a total: "step 100 loss 0.123457 12.50 it/s"; "?" for a rate or ETA that is
 *   not known yet).
 * - The CSV log (opts.csv_path) has the header "step,loss[,extra columns]" and one row per
 *   step passed to elbo_progress_step with step % csv_every == 0 (or the last step),
 *   numbers as "%.9g", flushed after every row. It is created (truncated) fresh, or with
 *   opts.csv_append (resuming) appended to: a non-empty existing file must start with the
 *   same header line (else ELBO_ERR_FORMAT) and gets no second header.
 * - Rate (it/s) = (step - start_step) / (now - t0), t0 the clock at creation; ETA =
 *   (total - step) / rate seconds. The clock is injectable (opts.clock) for tests; the
 *   default is CLOCK_MONOTONIC in seconds.
 * - Everything is allocated by elbo_progress_create; elbo_progress_step does not allocate
 *   (lines are formatted into a buffer of the reporter). Functions return a status;
 *   nothing exits.
 */
#ifndef ELBO_PROGRESS_H
#define ELBO_PROGRESS_H

#include <stdint.h>
#include <stdio.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest number of extra CSV / log columns, and the longest column name. */
#define ELBO_PROGRESS_MAX_COLUMNS 16
#define ELBO_PROGRESS_MAX_NAME 31

/* Seconds on a monotonic clock. */
typedef double (*elbo_progress_clock)(void *user);

typedef struct {
    FILE *out;             /* progress output; NULL: none (CSV only) */
    int tty;               /* -1: isatty(fileno(out)) (default); 0: plain lines; 1: bar */
    int64_t total;         /* total steps, 0 if unknown */
    int64_t start_step;    /* steps already done (resuming); the rate counts from here */
    int64_t log_every;     /* K: a plain line every K steps (default 100); >= 1 */
    double redraw_s;       /* bar: least seconds between redraws (default 0.1); >= 0 */
    int bar_width;         /* bar: characters between the brackets (default 30), 0..200 */
    const char *csv_path;  /* NULL: no CSV log */
    int csv_append;        /* 1: append to an existing log (resume); 0: create fresh */
    int64_t csv_every;     /* a CSV row every this many steps (default 1); >= 1 */
    const char *const *columns; /* names of extra values logged after loss (may be NULL) */
    int n_columns;              /* 0..ELBO_PROGRESS_MAX_COLUMNS */
    elbo_progress_clock clock;  /* NULL: CLOCK_MONOTONIC */
    void *clock_user;
} elbo_progress_opts;

/* Fills o with the defaults above (out stderr, no CSV). */
void elbo_progress_opts_default(elbo_progress_opts *o);

typedef struct elbo_progress elbo_progress;

/* Creates a reporter and opens (or appends to) the CSV log, writing its header. Errors:
 * ELBO_ERR_ARG (bad option, column name empty, too long or containing ',', '"' or a
 * control character), ELBO_ERR_IO (the CSV cannot be opened or written: the message starts
 * with its path), ELBO_ERR_FORMAT (appending to a log with another header), ELBO_ERR_NOMEM.
 * On failure *out is NULL and nothing is left open. */
elbo_status elbo_progress_create(const elbo_progress_opts *o, elbo_progress **out);

/* Reports that `step` steps are done (steps increase strictly, step > start_step) with the
 * loss and the n_columns extra values (extra may be NULL when there are none). Writes the
 * bar or plain line and the CSV row as described above. Errors: ELBO_ERR_ARG (a step that
 * does not increase, or past a known total), ELBO_ERR_IO (a write to the CSV failed: the log
 * is then cut back to its last whole row and closed, and later steps add no rows). */
elbo_status elbo_progress_step(elbo_progress *p, int64_t step, double loss, const double *extra);

/* Iterations per second since creation at time `now` for `step` steps done (0 when no
 * time has passed or no step is done), and the ETA in seconds (-1 when the rate or total
 * is unknown). Pure functions of their arguments and the reporter's t0 and start_step. */
double elbo_progress_rate(const elbo_progress *p, int64_t step, double now);
double elbo_progress_eta(const elbo_progress *p, int64_t step, double now);

/* Formats a duration as "7s", "2m05s" or "1h02m03s" ("?" for a negative or non-finite
 * value) into buf (at least 24 bytes). Returns buf. */
char *elbo_progress_format_duration(double seconds, char *buf, size_t len);

/* Ends a redrawn bar with '\n', flushes the output and closes the CSV log. ELBO_ERR_IO if
 * closing the CSV failed. Idempotent. */
elbo_status elbo_progress_finish(elbo_progress *p);
/* elbo_progress_finish (its status ignored) and frees p. NULL is ignored. */
void elbo_progress_free(elbo_progress *p);

#ifdef __cplusplus
}
#endif
#endif
