/* Heap-call counter of tests/malloc_count.c (see there). */
#ifndef ELBO_MALLOC_COUNT_H
#define ELBO_MALLOC_COUNT_H

#include <stddef.h>

typedef struct {
    long calls[2];      /* [0]: from the executable (libelbo, tests); [1]: shared libraries */
    char first[2][256]; /* the first call of each: "kind(size) from symbol (object)" */
} malloc_count_result;

/* 0 under AddressSanitizer (allocator not interposed). */
int malloc_count_available(void);
void malloc_count_start(void);
void malloc_count_stop(malloc_count_result *r);
void malloc_count_hit(const char *kind, size_t size, void *caller, void *ptr, int is_free);

#endif
