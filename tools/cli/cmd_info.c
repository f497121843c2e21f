/* `elbo info FILE`: a safetensors file's metadata, a table of its tensors, a totals line
 * and one JSON line for scripts. */
#include "elbo.h"
#include "elbo/safetensors.h"

#include "args.h"
#include "cli.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *INFO_USAGE =
    "usage: elbo info FILE\n"
    "\n"
    "Prints the __metadata__ of the safetensors file FILE (keys and values; a JSON value such\n"
    "as \"config\" as is), a table of its tensors (name, dtype, shape, elements, bytes), a\n"
    "totals line, and finally one JSON line\n"
    "{\"file\":..., \"tensors\":N, \"parameters\":total elements, \"bytes\":total tensor bytes}.\n";

/* "[d0, d1, ...]" ("[]" for a scalar) into buf. */
static void shape_str(const elbo_st_tensor *t, char *buf, size_t len) {
    size_t k = (size_t)snprintf(buf, len, "[");
    for (int d = 0; d < t->ndim && k < len; d++)
        k += (size_t)snprintf(buf + k, len - k, "%s%lld", d ? ", " : "", (long long)t->shape[d]);
    if (k < len) snprintf(buf + k, len - k, "]");
}

static int has_control(const char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) return 1;
    return 0;
}

int cmd_info(int argc, char **argv) {
    const char *pos[1];
    int np = 0;
    int r = args_parse("info", INFO_USAGE, NULL, 0, argc, argv, pos, 1, &np);
    if (r == ARGS_HELP) return 0;
    if (r) return r;
    if (np < 1) return args_fail(ARGS_USAGE, "info: which file? (see elbo info --help)");
    const char *path = pos[0];
    elbo_safetensors *st;
    if (elbo_safetensors_open(path, &st) != ELBO_OK)
        return args_fail(ARGS_RUNTIME, "info: %s", elbo_last_error());
    struct stat sb;
    long long file_bytes = stat(path, &sb) == 0 ? (long long)sb.st_size : -1;
    printf("file: %s (%lld bytes)\n", path, file_bytes);

    int nm = elbo_safetensors_metadata_count(st);
    if (nm == 0) printf("metadata: none\n");
    else printf("metadata (%d %s):\n", nm, nm == 1 ? "entry" : "entries");
    for (int i = 0; i < nm; i++) {
        const char *k, *v;
        if (elbo_safetensors_metadata_get(st, i, &k, &v) != 0) continue;
        int json = v[0] == '{' || v[0] == '[';
        printf("  %s: ", k);
        if (json || !has_control(v))
            fputs(v, stdout); /* JSON (a "config") as is */
        else
            args_json_string(stdout, v);
        fputc('\n', stdout);
    }

    int n = elbo_safetensors_count(st);
    int wname = 4, wshape = 5;
    char shape[512];
    for (int i = 0; i < n; i++) {
        const elbo_st_tensor *t = elbo_safetensors_get(st, i);
        int l = (int)strlen(t->name);
        if (l > wname) wname = l;
        shape_str(t, shape, sizeof shape);
        l = (int)strlen(shape);
        if (l > wshape) wshape = l;
    }
    printf("%-*s  %-5s  %-*s  %12s  %14s\n", wname, "name", "dtype", wshape, "shape",
           "elements", "bytes");
    long long total_el = 0, total_bytes = 0;
    for (int i = 0; i < n; i++) {
        const elbo_st_tensor *t = elbo_safetensors_get(st, i);
        shape_str(t, shape, sizeof shape);
        printf("%-*s  %-5s  %-*s  %12lld  %14lld\n", wname, t->name, elbo_dtype_name(t->dtype),
               wshape, shape, (long long)t->numel, (long long)t->nbytes);
        total_el += (long long)t->numel;
        total_bytes += (long long)t->nbytes;
    }
    printf("total: %d %s, %lld elements, %lld bytes\n", n, n == 1 ? "tensor" : "tensors",
           total_el, total_bytes);
    printf("{\"file\":");
    args_json_string(stdout, path);
    printf(", \"tensors\":%d, \"parameters\":%lld, \"bytes\":%lld}\n", n, total_el, total_bytes);
    elbo_safetensors_close(st);
    if (fflush(stdout) != 0) return args_fail(ARGS_RUNTIME, "info: cannot write to stdout");
    return 0;
}
