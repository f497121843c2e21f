/* Shared flag parsing of the `elbo` command (see args.h). */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

int args_fail(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("elbo: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}

static void describe(char *buf, size_t len, long long min, long long max, int with_max) {
    if (min == 1)
        snprintf(buf, len, "a positive integer");
    else if (min == 0)
        snprintf(buf, len, "a non-negative integer");
    else
        snprintf(buf, len, "an integer >= %lld", min);
    if (with_max) {
        size_t k = strlen(buf);
        snprintf(buf + k, len - k, " <= %lld", max);
    }
}

int args_parse_ll(const char *flag, const char *s, long long min, long long max,
                  long long *out) {
    char what[96];
    char *end;
    errno = 0;
    /* strtoll accepts leading spaces and '+': refuse both, and empty strings */
    int digits_first = s[0] == '-' ? (s[1] >= '0' && s[1] <= '9') : (s[0] >= '0' && s[0] <= '9');
    long long x = digits_first ? strtoll(s, &end, 10) : 0;
    if (!digits_first || *end) {
        describe(what, sizeof what, min, max, 0);
        return args_fail(ARGS_USAGE, "%s: expected %s, got \"%s\"", flag, what, s);
    }
    if (errno == ERANGE || x < min || x > max) {
        describe(what, sizeof what, min, max, errno == ERANGE ? max < LLONG_MAX : x > max);
        return args_fail(ARGS_USAGE, "%s: expected %s, got \"%s\"%s", flag, what, s,
                         errno == ERANGE || x > max ? " (too large)" : "");
    }
    *out = x;
    return ARGS_OK;
}

int args_parse_u64(const char *flag, const char *s, uint64_t *out) {
    char *end;
    errno = 0;
    if (!(s[0] >= '0' && s[0] <= '9'))
        return args_fail(ARGS_USAGE, "%s: expected a non-negative integer, got \"%s\"", flag, s);
    unsigned long long x = strtoull(s, &end, 10);
    if (*end)
        return args_fail(ARGS_USAGE, "%s: expected a non-negative integer, got \"%s\"", flag, s);
    if (errno == ERANGE || x > UINT64_MAX)
        return args_fail(ARGS_USAGE,
                         "%s: expected a non-negative integer < 2^64, got \"%s\" (too large)",
                         flag, s);
    *out = (uint64_t)x;
    return ARGS_OK;
}

int args_parse_double(const char *flag, const char *s, int positive, double *out) {
    const char *what = positive > 0 ? "a positive number" : positive == 0 ? "a non-negative number" : "a number";
    char *end;
    errno = 0;
    int ok_first = (s[0] >= '0' && s[0] <= '9') || s[0] == '.' || s[0] == '-';
    double x = ok_first ? strtod(s, &end) : 0;
    if (!ok_first || *end || end == s || !isfinite(x) || errno == ERANGE)
        return args_fail(ARGS_USAGE, "%s: expected %s, got \"%s\"", flag, what, s);
    if (positive > 0 ? !(x > 0) : positive == 0 ? !(x >= 0) : 0)
        return args_fail(ARGS_USAGE, "%s: expected %s, got \"%s\"", flag, what, s);
    *out = x;
    return ARGS_OK;
}

static arg_flag mk(const char *name, arg_kind kind, void *dst, const char *meta,
                   const char *help, const char *deflt, long long min, long long max) {
    arg_flag f;
    memset(&f, 0, sizeof f);
    f.name = name;
    f.kind = kind;
    f.dst = dst;
    f.meta = meta;
    f.help = help;
    f.deflt = deflt;
    f.min = min;
    f.max = max;
    return f;
}

arg_flag args_seed(uint64_t *dst, const char *deflt) {
    return mk("--seed", ARG_U64, dst, "S", "seed of every random draw", deflt, 0, 0);
}
arg_flag args_threads(int *dst, const char *deflt) {
    return mk("--threads", ARG_INT, dst, "N",
              "threads for elbo's kernels and OpenBLAS",
              deflt, 0, 4096);
}
arg_flag args_out(const char **dst, const char *help, const char *deflt) {
    return mk("--out", ARG_STRING, dst, "PATH", help, deflt, 0, 0);
}
arg_flag args_steps(int64_t *dst, const char *deflt) {
    return mk("--steps", ARG_I64, dst, "N", "training steps", deflt, 1, INT64_MAX);
}
arg_flag args_epochs(int64_t *dst, const char *deflt) {
    return mk("--epochs", ARG_I64, dst, "N", "passes over the training set", deflt, 1,
              INT32_MAX);
}
arg_flag args_batch(int *dst, const char *deflt) {
    return mk("--batch", ARG_INT, dst, "N", "batch size", deflt, 1, INT32_MAX);
}
arg_flag args_lr(double *dst, const char *deflt) {
    return mk("--lr", ARG_DOUBLE, dst, "X", "learning rate", deflt, 1, 0);
}
arg_flag args_int(const char *name, int *dst, long long min, long long max, const char *meta,
                  const char *help, const char *deflt) {
    return mk(name, ARG_INT, dst, meta, help, deflt, min, max);
}
arg_flag args_string(const char *name, const char **dst, const char *meta, const char *help,
                     const char *deflt) {
    return mk(name, ARG_STRING, dst, meta, help, deflt, 0, 0);
}
arg_flag args_bool(const char *name, int *dst, const char *help) {
    return mk(name, ARG_BOOL, dst, NULL, help, "off", 0, 0);
}

void args_print_help(FILE *f, const char *usage, const arg_flag *flags, int n) {
    fputs(usage, f);
    fputs("\nflags:\n", f);
    for (int i = 0; i < n; i++) {
        char left[64];
        if (flags[i].kind == ARG_BOOL)
            snprintf(left, sizeof left, "%s", flags[i].name);
        else
            snprintf(left, sizeof left, "%s %s", flags[i].name, flags[i].meta);
        fprintf(f, "  %-18s %s (default: %s)\n", left, flags[i].help, flags[i].deflt);
    }
    fprintf(f, "  %-18s %s\n", "--help", "print this help");
}

static int set_value(arg_flag *f, const char *v) {
    long long x;
    int r;
    switch (f->kind) {
    case ARG_INT:
        if ((r = args_parse_ll(f->name, v, f->min, f->max < INT_MAX ? f->max : INT_MAX, &x)))
            return r;
        *(int *)f->dst = (int)x;
        return ARGS_OK;
    case ARG_I64:
        if ((r = args_parse_ll(f->name, v, f->min, f->max, &x))) return r;
        *(int64_t *)f->dst = (int64_t)x;
        return ARGS_OK;
    case ARG_U64: return args_parse_u64(f->name, v, (uint64_t *)f->dst);
    case ARG_DOUBLE: return args_parse_double(f->name, v, f->min > 0, (double *)f->dst);
    case ARG_STRING:
        if (!v[0]) return args_fail(ARGS_USAGE, "%s: expected a value, got \"\"", f->name);
        *(const char **)f->dst = v;
        return ARGS_OK;
    case ARG_BOOL: *(int *)f->dst = 1; return ARGS_OK;
    }
    return ARGS_USAGE;
}

/* "300,300" -> w[0..n), each in 1..65536, at most max; "" -> none. Non-zero when bad
 * (nothing printed). */
int args_int_list(const char *s, int *w, int max, int *n) {
    *n = 0;
    if (!*s) return 0;
    for (;;) {
        char *end;
        if (*s < '0' || *s > '9') return 1;
        long v = strtol(s, &end, 10);
        if (end == s || v < 1 || v > 65536 || *n >= max || (*end && *end != ',')) return 1;
        w[(*n)++] = (int)v;
        if (!*end) return 0;
        s = end + 1;
    }
}

int args_seen(const arg_flag *flags, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(flags[i].name, name)) return flags[i].seen;
    return 0;
}

int args_parse(const char *cmd, const char *usage, arg_flag *flags, int n, int argc,
               char **argv, const char **pos, int max_pos, int *n_pos) {
    int np = 0, flags_done = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!flags_done && (!strcmp(a, "--help") || !strcmp(a, "-h"))) {
            args_print_help(stdout, usage, flags, n);
            return ARGS_HELP;
        }
        if (!flags_done && !strcmp(a, "--")) {
            flags_done = 1;
            continue;
        }
        if (flags_done || a[0] != '-' || a[1] == 0) {
            if (np >= max_pos)
                return args_fail(ARGS_USAGE, "%s: unexpected argument \"%s\" (see elbo %s --help)",
                                 cmd, a, cmd);
            pos[np++] = a;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t len = eq ? (size_t)(eq - a) : strlen(a);
        arg_flag *f = NULL;
        for (int k = 0; k < n; k++)
            if (strlen(flags[k].name) == len && !strncmp(flags[k].name, a, len)) f = &flags[k];
        if (!f)
            return args_fail(ARGS_USAGE, "%s: unknown flag %.*s (see elbo %s --help)", cmd,
                             (int)len, a, cmd);
        const char *v;
        if (f->kind == ARG_BOOL) {
            if (eq) return args_fail(ARGS_USAGE, "%s: takes no value", f->name);
            v = "";
        } else if (eq) {
            v = eq + 1;
        } else {
            if (i + 1 >= argc) return args_fail(ARGS_USAGE, "%s: needs a value", f->name);
            v = argv[++i];
        }
        if (f->seen && f->kind != ARG_BOOL)
            return args_fail(ARGS_USAGE, "%s: given twice", f->name);
        int r = set_value(f, v);
        if (r) return r;
        f->seen = 1;
    }
    if (n_pos) *n_pos = np;
    return ARGS_OK;
}

void args_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(f, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", f);
        else if (*p == '\t')
            fputs("\\t", f);
        else if (*p < 0x20)
            fprintf(f, "\\u%04x", *p);
        else
            fputc(*p, f);
    }
    fputc('"', f);
}
