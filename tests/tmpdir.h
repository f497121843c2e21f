/* A temporary directory for tests that write files: td_make creates /tmp/elbo_test_<tag>_XXXXXX,
 * td_file names a file in it (one scratch path at a time), td_count counts its entries
 * (temporary files included), td_remove deletes its files and empty subdirectories, then it. */
#ifndef ELBO_TEST_TMPDIR_H
#define ELBO_TEST_TMPDIR_H

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    char dir[64];
    char path[128]; /* scratch for td_file */
} tmpdir;

static inline int td_make_tag(tmpdir *td, const char *tag) {
    snprintf(td->dir, sizeof td->dir, "/tmp/elbo_test_%s_XXXXXX", tag);
    return mkdtemp(td->dir) != NULL;
}

static inline const char *td_file(tmpdir *td, const char *name) {
    snprintf(td->path, sizeof td->path, "%s/%s", td->dir, name);
    return td->path;
}

static inline int td_count(const tmpdir *td) {
    DIR *d = opendir(td->dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

static inline void td_remove(const tmpdir *td) {
    DIR *d = opendir(td->dir);
    if (d) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", td->dir, e->d_name);
            if (unlink(p) != 0) rmdir(p);
        }
        closedir(d);
    }
    rmdir(td->dir);
}

#endif
