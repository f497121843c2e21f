/* A full disk while saving, simulated without root or mounts: each write runs in a forked
 * child whose file-size limit (RLIMIT_FSIZE) is a few KiB, with SIGXFSZ ignored, so that
 * write() fails with EFBIG where a full disk would fail with ENOSPC. Every writer must
 * return ELBO_ERR_IO with a one-line message naming the file, leave no temporary file in the
 * directory and leave a previous file at the target byte for byte as it was. The child
 * sends its status and message back through a pipe; the parent checks. (Data that fits but
 * an fsync or rename that fails is covered in test_io.c.) */
#include "test.h"

#include "elbo/checkpoint.h"
#include "elbo/io.h"
#include "elbo/progress.h"
#include "elbo/safetensors.h"

#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define FULL_LIMIT 4096 /* bytes a child may write to one file */

/* ---- helpers -------------------------------------------------------------------------- */
typedef struct {
    char dir[64];
    char target[128];
} fdir;

static int fd_make(fdir *d, const char *name) {
    const char *base = getenv("TMPDIR");
    snprintf(d->dir, sizeof d->dir, "%s/elbo_full_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(d->dir)) return 0;
    snprintf(d->target, sizeof d->target, "%s/%s", d->dir, name);
    return 1;
}

/* Entries in the directory; the name of a temporary file among them (else the first) in first. */
static int fd_count(const fdir *d, char *first, size_t len) {
    DIR *dd = opendir(d->dir);
    if (!dd) return -1;
    int n = 0;
    struct dirent *e;
    if (first && len) first[0] = 0;
    while ((e = readdir(dd))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (first && (n == 0 || strstr(e->d_name, ".tmp."))) snprintf(first, len, "%s", e->d_name);
        n++;
    }
    closedir(dd);
    return n;
}

static void fd_remove(const fdir *d) {
    DIR *dd = opendir(d->dir);
    if (dd) {
        struct dirent *e;
        char p[512];
        while ((e = readdir(dd))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            snprintf(p, sizeof p, "%s/%s", d->dir, e->d_name);
            unlink(p);
        }
        closedir(dd);
    }
    rmdir(d->dir);
}

static int write_raw(const char *path, const void *buf, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t w = n ? fwrite(buf, 1, n, f) : 0;
    return fclose(f) == 0 && w == n;
}

/* The whole file into a malloc'd buffer; *n its length. NULL if it cannot be read. */
static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + len, 1, cap - len, f)) > 0) {
        len += r;
        if (len == cap) {
            unsigned char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    fclose(f);
    *n = len;
    return buf;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* ---- running a write under a file-size limit ------------------------------------------ */
typedef elbo_status (*full_fn)(const char *path, void *user);

typedef struct {
    int exited;      /* 1: the child exited normally with status 0 (no signal) */
    int term_signal; /* the signal that ended it, or 0 */
    elbo_status st;
    char msg[512];
} full_result;

/* Runs fn(path, user) in a child with RLIMIT_FSIZE = limit and SIGXFSZ ignored. */
static int run_full(full_fn fn, const char *path, void *user, rlim_t limit, full_result *r) {
    memset(r, 0, sizeof *r);
    int pfd[2];
    if (pipe(pfd) != 0) return 0;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return 0;
    }
    if (pid == 0) {
        close(pfd[0]);
        signal(SIGXFSZ, SIG_IGN);
        struct rlimit rl;
        int ok = getrlimit(RLIMIT_FSIZE, &rl) == 0;
        rl.rlim_cur = limit;
        ok = ok && setrlimit(RLIMIT_FSIZE, &rl) == 0;
        full_result res;
        memset(&res, 0, sizeof res);
        res.st = ok ? fn(path, user) : ELBO_OK;
        snprintf(res.msg, sizeof res.msg, "%s", ok ? elbo_last_error() : "setrlimit failed");
        ssize_t w = write(pfd[1], &res, sizeof res);
        close(pfd[1]);
        _exit(ok && w == (ssize_t)sizeof res ? 0 : 3);
    }
    close(pfd[1]);
    size_t got = 0;
    while (got < sizeof *r) {
        ssize_t k = read(pfd[0], (char *)r + got, sizeof *r - got);
        if (k <= 0) break;
        got += (size_t)k;
    }
    close(pfd[0]);
    int ws = 0;
    if (waitpid(pid, &ws, 0) != pid) return 0;
    r->exited = WIFEXITED(ws) && WEXITSTATUS(ws) == 0 && got == sizeof *r;
    r->term_signal = WIFSIGNALED(ws) ? WTERMSIG(ws) : 0;
    return 1;
}

static const char PREVIOUS[] = "the previous contents of the target, which must survive\n";

/* The common check: a previous file at the target, the write under the limit fails with
 * ELBO_ERR_IO naming the target in one line, leaves no temporary file and the previous file
 * intact; then the same write without a limit succeeds and is larger than the limit (so
 * the limit, not something else, made it fail). */
static void check_full_write(full_fn fn, void *user, const char *name) {
    fdir d;
    CHECK(fd_make(&d, name));
    int ok = write_raw(d.target, PREVIOUS, sizeof PREVIOUS - 1);
    full_result r;
    ok = ok && run_full(fn, d.target, user, FULL_LIMIT, &r);
    char ent[256];
    int n = fd_count(&d, ent, sizeof ent);
    size_t len = 0;
    unsigned char *prev = read_all(d.target, &len);
    int intact = prev && len == sizeof PREVIOUS - 1 && !memcmp(prev, PREVIOUS, len);
    free(prev);
    elbo_status again = ok ? fn(d.target, user) : ELBO_ERR_IO;
    long size = file_size(d.target);
    fd_remove(&d);
    CHECK_MSG(ok, "%s: could not set up the test", name);
    CHECK_MSG(r.exited, "%s: child did not exit normally (signal %d)", name, r.term_signal);
    CHECK_MSG(r.st == ELBO_ERR_IO, "%s: status %d under a %d-byte limit (%s)", name,
              (int)r.st, FULL_LIMIT, r.msg);
    CHECK_MSG(strstr(r.msg, d.target) != NULL, "%s: message does not name the file: %s",
              name, r.msg);
    CHECK_MSG(!strchr(r.msg, '\n'), "%s: message is not one line: %s", name, r.msg);
    CHECK_MSG(n == 1, "%s: %d entries left in the directory (%s)", name, n, ent);
    CHECK_MSG(intact, "%s: the previous file was changed", name);
    CHECK_MSG(again == ELBO_OK, "%s: the write without a limit failed", name);
    CHECK_MSG(size > FULL_LIMIT, "%s: the file is only %ld bytes, not over the limit", name,
              size);
}

/* ---- npy ------------------------------------------------------------------------------ */
static elbo_status write_npy(const char *path, void *user) {
    const int64_t shape[2] = {64, 64}; /* 16 KiB of float32 */
    return elbo_npy_write(path, ELBO_NPY_F32, 2, shape, user);
}

TEST(io_full_npy) {
    static float x[64 * 64];
    for (int i = 0; i < 64 * 64; i++) x[i] = (float)i * 0.25f;
    check_full_write(write_npy, x, "x.npy");
}

/* ---- PNG grid ------------------------------------------------------------------------- */
static elbo_status write_grid(const char *path, void *user) {
    /* 4 RGB 32x32 images of uniform noise: about 12 KiB that deflate cannot shrink */
    return elbo_png_write_grid(path, user, 4, 3, 32, 32, 0.0f, 1.0f, 2, 2, 0);
}

TEST(io_full_png_grid) {
    static float x[4 * 3 * 32 * 32];
    elbo_rng rng;
    elbo_rng_init(&rng, 11);
    elbo_rng_uniform(&rng, x, sizeof x / sizeof x[0], 0.0f, 1.0f);
    check_full_write(write_grid, x, "grid.png");
}

/* ---- safetensors ---------------------------------------------------------------------- */
static elbo_status write_st(const char *path, void *user) {
    static const int64_t shape[2] = {32, 64};
    elbo_st_tensor t[2] = {
        {.name = "a", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = shape, .data = user},
        {.name = "b", .dtype = ELBO_DTYPE_F32, .ndim = 2, .shape = shape, .data = user},
    };
    elbo_st_meta meta[1] = {{"format", "test"}};
    return elbo_safetensors_write(path, t, 2, meta, 1);
}

TEST(io_full_safetensors) {
    static float x[32 * 64];
    for (int i = 0; i < 32 * 64; i++) x[i] = (float)i - 100.0f;
    check_full_write(write_st, x, "model.safetensors");
}

/* ---- checkpoint ----------------------------------------------------------------------- */
static elbo_status write_ckpt(const char *path, void *user) {
    elbo_checkpoint ck = {0};
    ck.params = user;
    ck.step = 7;
    elbo_rng_init(&ck.rng, 3);
    ck.model = "test-mlp";
    ck.config = "{\"hidden\": 64}";
    return elbo_checkpoint_save(path, &ck);
}

TEST(io_full_checkpoint) {
    elbo_paramset *ps = elbo_paramset_new();
    CHECK(ps);
    const int64_t w_shape[2] = {64, 32}, b_shape[1] = {64}; /* 8.25 KiB of F32 */
    elbo_init normal = {ELBO_INIT_NORMAL, 0.1f}, zero = {ELBO_INIT_CONST, 0.0f};
    int ok = elbo_paramset_add(ps, "enc", "weight", 2, w_shape, normal) != NULL &&
             elbo_paramset_add(ps, "enc", "bias", 1, b_shape, zero) != NULL &&
             elbo_paramset_finalize(ps, 1) == ELBO_OK;
    if (!ok) elbo_paramset_free(ps);
    CHECK(ok);
    check_full_write(write_ckpt, ps, "ckpt.safetensors");
    elbo_paramset_free(ps);
}

/* ---- the progress CSV log ------------------------------------------------------------- */
/* Steps until a CSV row cannot be written (or 100000 steps); returns that status. */
typedef struct {
    int append;
    int64_t start_step;
} csv_job;

static elbo_status write_csv(const char *path, void *user) {
    const csv_job *job = user;
    elbo_progress_opts o;
    elbo_progress_opts_default(&o);
    o.out = NULL;
    o.csv_path = path;
    o.csv_append = job->append;
    o.start_step = job->start_step;
    static const char *const cols[2] = {"recon", "kl"};
    o.columns = cols;
    o.n_columns = 2;
    elbo_progress *p = NULL;
    elbo_status st = elbo_progress_create(&o, &p);
    for (int64_t s = job->start_step + 1; st == ELBO_OK && s <= job->start_step + 100000; s++) {
        const double extra[2] = {0.5 * (double)s, 1.0 / (double)s};
        st = elbo_progress_step(p, s, 1.0 + 1.0 / (double)s, extra);
    }
    if (st == ELBO_OK) st = elbo_progress_finish(p);
    elbo_progress_free(p);
    return st;
}

#define CSV_HEADER "step,loss,recon,kl\n"

/* The file ends with a whole line. */
static int whole_lines(const unsigned char *buf, size_t n) { return n > 0 && buf[n - 1] == '\n'; }

TEST(io_full_progress_csv_fresh) {
    fdir d;
    CHECK(fd_make(&d, "loss.csv"));
    csv_job job = {0, 0};
    full_result r;
    int ok = run_full(write_csv, d.target, &job, FULL_LIMIT, &r);
    char ent[256];
    int n = fd_count(&d, ent, sizeof ent);
    size_t len = 0;
    unsigned char *buf = read_all(d.target, &len);
    int header_ok = buf && len >= sizeof CSV_HEADER - 1 && !memcmp(buf, CSV_HEADER, sizeof CSV_HEADER - 1);
    int whole = buf && whole_lines(buf, len);
    free(buf);
    fd_remove(&d);
    CHECK(ok);
    CHECK_MSG(r.exited, "child did not exit normally (signal %d)", r.term_signal);
    CHECK_MSG(r.st == ELBO_ERR_IO, "status %d (%s)", (int)r.st, r.msg);
    CHECK_MSG(strstr(r.msg, d.target) != NULL, "message does not name the file: %s", r.msg);
    CHECK_MSG(!strchr(r.msg, '\n'), "message is not one line: %s", r.msg);
    CHECK_MSG(n == 1, "%d entries left in the directory (%s)", n, ent);
    CHECK_MSG(header_ok, "the log lost its header");
    CHECK_MSG(whole, "the log ends with a partial row (%zu bytes)", len);
    CHECK_MSG(len <= FULL_LIMIT, "the log is %zu bytes, over the limit", len);
}

TEST(io_full_progress_csv_append) {
    fdir d;
    CHECK(fd_make(&d, "loss.csv"));
    /* a previous log of 200 rows (about 5 KiB, over the limit): nothing more fits */
    char prev[16384];
    size_t pl = (size_t)snprintf(prev, sizeof prev, "%s", CSV_HEADER);
    for (int s = 1; s <= 200; s++)
        pl += (size_t)snprintf(prev + pl, sizeof prev - pl, "%d,%.9g,%.9g,%.9g\n", s,
                               1.0 + 1.0 / s, 0.5 * s, 1.0 / s);
    int ok = pl > FULL_LIMIT && write_raw(d.target, prev, pl);
    csv_job job = {1, 200};
    full_result r;
    ok = ok && run_full(write_csv, d.target, &job, FULL_LIMIT, &r);
    char ent[256];
    int n = fd_count(&d, ent, sizeof ent);
    size_t len = 0;
    unsigned char *buf = read_all(d.target, &len);
    int intact = buf && len == pl && !memcmp(buf, prev, pl);
    free(buf);
    fd_remove(&d);
    CHECK(ok);
    CHECK_MSG(r.exited, "child did not exit normally (signal %d)", r.term_signal);
    CHECK_MSG(r.st == ELBO_ERR_IO, "status %d (%s)", (int)r.st, r.msg);
    CHECK_MSG(strstr(r.msg, d.target) != NULL, "message does not name the file: %s", r.msg);
    CHECK_MSG(n == 1, "%d entries left in the directory (%s)", n, ent);
    CHECK_MSG(intact, "the previous log was changed (%zu bytes, was %zu)", len, pl);
}

/* A previous log just under the limit: the row that crosses it is written in part by
 * write(); the log must be cut back to its last whole row, the previous rows intact. */
TEST(io_full_progress_csv_append_partial_row) {
    fdir d;
    CHECK(fd_make(&d, "loss.csv"));
    char prev[8192];
    size_t pl = (size_t)snprintf(prev, sizeof prev, "%s", CSV_HEADER);
    int s = 1;
    while (pl < FULL_LIMIT - 40)
        pl += (size_t)snprintf(prev + pl, sizeof prev - pl, "%d,%.9g,%.9g,%.9g\n", s,
                               1.0 + 1.0 / s, 0.5 * s, 1.0 / s), s++;
    int ok = pl < FULL_LIMIT && write_raw(d.target, prev, pl);
    csv_job job = {1, s - 1};
    full_result r;
    ok = ok && run_full(write_csv, d.target, &job, FULL_LIMIT, &r);
    size_t len = 0;
    unsigned char *buf = read_all(d.target, &len);
    int prefix = buf && len >= pl && !memcmp(buf, prev, pl);
    int whole = buf && whole_lines(buf, len);
    free(buf);
    int n = fd_count(&d, NULL, 0);
    fd_remove(&d);
    CHECK(ok);
    CHECK_MSG(r.exited, "child did not exit normally (signal %d)", r.term_signal);
    CHECK_MSG(r.st == ELBO_ERR_IO, "status %d (%s)", (int)r.st, r.msg);
    CHECK_MSG(strstr(r.msg, d.target) != NULL, "message does not name the file: %s", r.msg);
    CHECK_MSG(n == 1, "%d entries left in the directory", n);
    CHECK_MSG(prefix, "the previous rows were changed");
    CHECK_MSG(whole, "the log ends with a partial row (%zu bytes)", len);
}

/* Not even the header fits: the fresh log is removed, not left half-written. */
TEST(io_full_progress_csv_header) {
    fdir d;
    CHECK(fd_make(&d, "loss.csv"));
    csv_job job = {0, 0};
    full_result r;
    int ok = run_full(write_csv, d.target, &job, 8, &r);
    int n = fd_count(&d, NULL, 0);
    fd_remove(&d);
    CHECK(ok);
    CHECK_MSG(r.exited, "child did not exit normally (signal %d)", r.term_signal);
    CHECK_MSG(r.st == ELBO_ERR_IO, "status %d (%s)", (int)r.st, r.msg);
    CHECK_MSG(strstr(r.msg, d.target) != NULL, "message does not name the file: %s", r.msg);
    CHECK_MSG(n == 0, "%d entries left in the directory", n);
}
