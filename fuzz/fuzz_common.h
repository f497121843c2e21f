/* Shared helpers of the libFuzzer targets (fuzz/fuzz_*.c; `make fuzz`, `make fuzz-run`).
 *
 * File-based readers get the fuzzer's bytes through a file in a per-process temporary
 * directory (under /dev/shm when it exists, else $TMPDIR or /tmp), created on first use
 * and removed, with what is in it, at exit. A target writes nothing outside it. */
#ifndef ELBO_FUZZ_COMMON_H
#define ELBO_FUZZ_COMMON_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[512];

/* Removes dir and the files (and one level of subdirectories) in it. */
static void fuzz_rmtree(const char *dir, int depth) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[1024];
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            struct stat st;
            if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode) && depth < 2)
                fuzz_rmtree(p, depth + 1);
            else
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void fuzz_cleanup(void) {
    if (fuzz_dir[0]) fuzz_rmtree(fuzz_dir, 0);
    fuzz_dir[0] = 0;
}

/* The per-process temporary directory (aborts when it cannot be made: nothing to fuzz). */
static const char *fuzz_tmpdir(void) {
    if (fuzz_dir[0]) return fuzz_dir;
    struct stat st;
    const char *base = stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                           ? "/dev/shm"
                           : (getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    snprintf(fuzz_dir, sizeof fuzz_dir, "%s/elbo-fuzz.XXXXXX", base);
    if (!mkdtemp(fuzz_dir)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir;
}

/* path = <tmpdir>/<name> (name may hold one subdirectory "sub/file", made here). */
static const char *fuzz_path(const char *name, char *path, size_t cap) {
    snprintf(path, cap, "%s/%s", fuzz_tmpdir(), name);
    const char *slash = strchr(name, '/');
    if (slash) {
        char sub[1024];
        snprintf(sub, sizeof sub, "%s/%.*s", fuzz_tmpdir(), (int)(slash - name), name);
        mkdir(sub, 0700);
    }
    return path;
}

/* Writes data[0..size) to <tmpdir>/<name>; returns the path (static buffer per call site
 * is the caller's: pass one). */
static const char *fuzz_write(const char *name, const uint8_t *data, size_t size, char *path,
                              size_t cap) {
    fuzz_path(name, path, cap);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
    return path;
}

#endif
