/* Reader for the PyTorch fixture files written by tools/gen_fixtures.py. */
#include "test.h"

#include <stdlib.h>
#include <string.h>

static int rd(FILE *fp, void *p, size_t n) { return fread(p, 1, n, fp) == n; }

int fx_load(fx_file *f, const char *name) {
    const char *dir = getenv("ELBO_FIXTURE_DIR");
    char path[512];
    snprintf(path, sizeof path, "%s/%s.bin", dir ? dir : "tests/fixtures", name);
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        elbo_error(ELBO_ERR_IO, "fixture %s: cannot open", path);
        return -1;
    }
    char magic[4];
    uint32_t count;
    if (!rd(fp, magic, 4) || memcmp(magic, "EFX1", 4) || !rd(fp, &count, 4) || count > 100000) {
        fclose(fp);
        elbo_error(ELBO_ERR_FORMAT, "fixture %s: bad header", path);
        return -1;
    }
    f->e = calloc(count ? count : 1, sizeof *f->e);
    f->count = (int)count;
    for (uint32_t i = 0; i < count; i++) {
        fx_entry *e = &f->e[i];
        uint32_t len, dtype, ndim;
        if (!rd(fp, &len, 4) || len >= sizeof e->name || !rd(fp, e->name, len)) goto bad;
        e->name[len] = 0;
        if (!rd(fp, &dtype, 4) || !rd(fp, &ndim, 4) || ndim > ELBO_MAX_DIMS) goto bad;
        e->dtype = (int)dtype;
        e->ndim = (int)ndim;
        if (ndim && !rd(fp, e->shape, 8 * ndim)) goto bad;
        e->numel = elbo_shape_numel(e->ndim, e->shape);
        e->data = malloc((size_t)(e->numel ? e->numel : 1) * 4);
        if (!rd(fp, e->data, (size_t)e->numel * 4)) goto bad;
    }
    fclose(fp);
    return 0;
bad:
    fclose(fp);
    fx_free(f);
    elbo_error(ELBO_ERR_FORMAT, "fixture %s: truncated", path);
    return -1;
}

void fx_free(fx_file *f) {
    for (int i = 0; i < f->count; i++) free(f->e[i].data);
    free(f->e);
    memset(f, 0, sizeof *f);
}

const fx_entry *fx_get(const fx_file *f, const char *name) {
    for (int i = 0; i < f->count; i++)
        if (!strcmp(f->e[i].name, name)) return &f->e[i];
    return NULL;
}

elbo_tensor *fx_tensor(elbo_ctx *ctx, const fx_file *f, const char *name) {
    const fx_entry *e = fx_get(f, name);
    if (!e || e->dtype != 0) {
        elbo_error(ELBO_ERR_ARG, "fixture entry %s missing or not f32", name);
        return NULL;
    }
    elbo_tensor *t = elbo_tensor_new(ctx, e->ndim, e->shape);
    if (t) memcpy(t->data, e->data, (size_t)e->numel * 4);
    return t;
}

int fx_close(const float *a, const float *b, int64_t n, float atol, float rtol, char *msg,
             size_t len) {
    double worst = 0;
    int64_t wi = -1;
    for (int64_t i = 0; i < n; i++) {
        double err = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(err <= worst) || isnan(err)) {
            worst = isnan(err) ? INFINITY : err;
            wi = i;
        }
    }
    if (worst <= 1.0) return 1;
    snprintf(msg, len, "element %lld: got %.7g, want %.7g (atol %.1g, rtol %.1g, %lld elements)",
             (long long)wi, a[wi], b[wi], atol, rtol, (long long)n);
    return 0;
}
