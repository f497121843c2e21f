/* Per-thread last error: library functions return a status and leave the message here. */
#include "internal.h"

#include <stdio.h>

static _Thread_local char err_msg[512];
static _Thread_local elbo_status err_status = ELBO_OK;

const char *elbo_last_error(void) { return err_msg; }
elbo_status elbo_last_status(void) { return err_status; }

void elbo_clear_error(void) {
    err_msg[0] = 0;
    err_status = ELBO_OK;
}

elbo_status elbo_error(elbo_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_status = st;
    return st;
}
