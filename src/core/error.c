/* Per-thread last error: library functions return a status and leave the message here. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[512];
static _Thread_local elbo_status err_status = ELBO_OK;

const char *elbo_last_error(void) { return err_msg; }
elbo_status elbo_last_status(void) { return err_status; }

void elbo_clear_error(void) {
    err_msg[0] = 0;
    err_status = ELBO_OK;
}

/* Formats into a local buffer first: callers may pass elbo_last_error() itself as an
 * argument ("%s: %s", path, elbo_last_error()), which vsnprintf must not read while it
 * writes the same bytes. */
elbo_status elbo_error(elbo_status st, const char *fmt, ...) {
    char buf[sizeof err_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memcpy(err_msg, buf, sizeof err_msg);
    err_status = st;
    return st;
}

elbo_status elbo__parse_name(const char *what, const char *const *names, int n, const char *name,
                             int *out) {
    for (int k = 0; name && out && k < n; k++)
        if (strcmp(name, names[k]) == 0) {
            *out = k;
            return ELBO_OK;
        }
    char list[512];
    size_t len = 0;
    list[0] = 0;
    for (int k = 0; k < n && len < sizeof list; k++)
        len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", k ? ", " : "", names[k]);
    return elbo_error(ELBO_ERR_ARG, "%s: unknown '%s' (%s)", what, name ? name : "(null)", list);
}
