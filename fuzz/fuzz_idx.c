/* libFuzzer target: elbo_idx_read (IDX files, plain or gzip-compressed). */
#include "elbo/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    fuzz_write("in.idx", data, size, path, sizeof path);
    elbo_idx idx;
    if (elbo_idx_read(path, &idx) == ELBO_OK) {
        volatile uint8_t sink = idx.numel > 0 ? idx.data[idx.numel - 1] : 0;
        (void)sink;
        elbo_idx_free(&idx);
    }
    return 0;
}
