/* Test runner: runs every registered test (or those whose name contains one of argv[1..])
 * and ends with the line "N passed, N failed". */
#include "test.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_TESTS 2048
static struct {
    const char *name;
    elbo_test_fn fn;
} tests[MAX_TESTS];
static int n_tests;
static int cur_failed;

void test_register(const char *name, elbo_test_fn fn) {
    if (n_tests < MAX_TESTS) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        n_tests++;
    }
}

void test_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    printf("    %s:%d: ", file, line);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    cur_failed = 1;
}

int test_failed(void) { return cur_failed; }

static int cmp(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int main(int argc, char **argv) {
    /* Registration order depends on link order: run in name order instead. */
    const char *names[MAX_TESTS];
    for (int i = 0; i < n_tests; i++) names[i] = tests[i].name;
    qsort(names, (size_t)n_tests, sizeof names[0], cmp);
    int passed = 0, failed = 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int k = 0; k < n_tests; k++) {
        int i = 0;
        while (tests[i].name != names[k]) i++;
        int run = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strstr(tests[i].name, argv[a])) run = 1;
        if (!run) continue;
        cur_failed = 0;
        elbo_clear_error();
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        tests[i].fn();
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
        printf("%s %s (%.0f ms)\n", cur_failed ? "FAIL" : "ok  ", tests[i].name, ms);
        if (cur_failed)
            failed++;
        else
            passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
