/* libFuzzer target: elbo_safetensors_open, then every accessor over what it read. */
#include "elbo/safetensors.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    fuzz_write("in.safetensors", data, size, path, sizeof path);
    elbo_safetensors *st = NULL;
    if (elbo_safetensors_open(path, &st) != ELBO_OK) return 0;
    volatile size_t sink = 0;
    int n = elbo_safetensors_count(st);
    for (int i = 0; i < n; i++) {
        const elbo_st_tensor *t = elbo_safetensors_get(st, i);
        sink += strlen(t->name) + (size_t)t->ndim + t->nbytes;
        for (int d = 0; d < t->ndim; d++) sink += (size_t)t->shape[d];
        if (t->nbytes) sink += ((const uint8_t *)t->data)[t->nbytes - 1];
        if (elbo_safetensors_find(st, t->name) == NULL) abort(); /* every name is found */
    }
    int m = elbo_safetensors_metadata_count(st);
    for (int i = 0; i < m; i++) {
        const char *k, *v;
        if (elbo_safetensors_metadata_get(st, i, &k, &v) == 0) {
            sink += strlen(k) + strlen(v);
            if (elbo_safetensors_metadata(st, k) == NULL) abort();
        }
    }
    (void)sink;
    elbo_safetensors_close(st);
    return 0;
}
