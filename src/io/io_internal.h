/* Helpers shared by the file readers and writers of src/io (not part of the API). */
#ifndef ELBO_IO_INTERNAL_H
#define ELBO_IO_INTERNAL_H

#include <stddef.h>

/* A name for a one-line message: at most 64 bytes, control characters as '?'. */
static inline const char *elbo__shown(const char *s, char *buf, size_t len) {
    size_t k = 0;
    for (; s && *s && k + 4 < len; s++) buf[k++] = (unsigned char)*s < 0x20 || *s == 0x7f ? '?' : *s;
    if (s && *s) buf[k++] = '.', buf[k++] = '.', buf[k++] = '.';
    buf[k] = 0;
    return buf;
}
#define SHOWN(s) elbo__shown((s), (char[68]){0}, 68)

#endif
