/* Flag parsing shared by the `elbo` commands: one table of flags per command, strict
 * number parsing, errors that name the flag, and --help generated from the table (so it
 * lists every flag with its default).
 *
 * Exit statuses: ARGS_USAGE (2) for usage errors (unknown flag, bad or missing value,
 * missing argument), ARGS_RUNTIME (1) for failures while running. */
#ifndef ELBO_CLI_ARGS_H
#define ELBO_CLI_ARGS_H

#include <stdint.h>
#include <stdio.h>

#define ARGS_OK 0
#define ARGS_RUNTIME 1
#define ARGS_USAGE 2
#define ARGS_HELP (-1) /* --help was printed: exit 0 */

typedef enum {
    ARG_INT,    /* int in [min, max] */
    ARG_I64,    /* int64_t in [min, max] */
    ARG_U64,    /* uint64_t (seeds): any non-negative integer that fits */
    ARG_DOUBLE, /* finite double, > 0 when min > 0, >= 0 when min == 0 */
    ARG_STRING, /* const char * */
    ARG_BOOL    /* int set to 1 by the bare flag */
} arg_kind;

typedef struct {
    const char *name; /* "--seed" */
    arg_kind kind;
    void *dst;
    const char *meta;    /* value placeholder in --help ("N", "PATH"); unused for ARG_BOOL */
    const char *help;    /* one line */
    const char *deflt;   /* default shown in --help ("0", "none", "required") */
    long long min, max;  /* ARG_INT / ARG_I64 range; ARG_DOUBLE: min 1 means > 0 */
    int seen;            /* set by args_parse */
} arg_flag;

/* The shared flags: same names, ranges and help text in every command. */
arg_flag args_seed(uint64_t *dst, const char *deflt);
arg_flag args_threads(int *dst, const char *deflt); /* 0: OMP_NUM_THREADS or all cores */
arg_flag args_out(const char **dst, const char *help, const char *deflt);
arg_flag args_steps(int64_t *dst, const char *deflt);
arg_flag args_epochs(int64_t *dst, const char *deflt);
arg_flag args_batch(int *dst, const char *deflt);
arg_flag args_lr(double *dst, const char *deflt);
arg_flag args_int(const char *name, int *dst, long long min, long long max, const char *meta,
                  const char *help, const char *deflt);
arg_flag args_string(const char *name, const char **dst, const char *meta, const char *help,
                     const char *deflt);
arg_flag args_bool(const char *name, int *dst, const char *help);

/* Parses argv[0..argc) against flags[0..n). "--flag VALUE" and "--flag=VALUE" are accepted;
 * "--" ends the flags. Positional arguments go to pos[0..max_pos) (*n_pos set); more is a
 * usage error. --help / -h prints `usage` then the flag table to stdout and returns
 * ARGS_HELP. Errors are printed as one line "elbo: CMD: ..." (or "elbo: --flag: ...") to
 * stderr and ARGS_USAGE returned. */
int args_parse(const char *cmd, const char *usage, arg_flag *flags, int n, int argc,
               char **argv, const char **pos, int max_pos, int *n_pos);
/* "300,300" -> w[0..*n), each in 1..65536, at most max; "" -> none. Non-zero when bad
 * (nothing printed). */
int args_int_list(const char *s, int *w, int max, int *n);
/* 1 when the flag `name` of flags[0..n) was given on the command line (after args_parse). */
int args_seen(const arg_flag *flags, int n, const char *name);
/* Prints usage and the flag table. */
void args_print_help(FILE *f, const char *usage, const arg_flag *flags, int n);

/* Strict number parsing; on error prints `elbo: FLAG: expected ..., got "S"` and returns
 * ARGS_USAGE. */
int args_parse_ll(const char *flag, const char *s, long long min, long long max,
                  long long *out);
int args_parse_u64(const char *flag, const char *s, uint64_t *out);
/* positive: 1 wants x > 0, 0 wants x >= 0, -1 takes any finite number. */
int args_parse_double(const char *flag, const char *s, int positive, double *out);

/* Prints "elbo: " + printf message + "\n" to stderr and returns status. */
int args_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes s as a JSON string (with quotes) to f. */
void args_json_string(FILE *f, const char *s);

#endif
