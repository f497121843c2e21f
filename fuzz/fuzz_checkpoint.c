/* libFuzzer target: elbo_checkpoint_read_info (a checkpoint's metadata, without a model). */
#include "elbo/checkpoint.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    fuzz_write("in.ckpt", data, size, path, sizeof path);
    elbo_checkpoint_info info;
    if (elbo_checkpoint_read_info(path, &info) == ELBO_OK) {
        volatile size_t sink = strlen(info.model) + strlen(info.config);
        (void)sink;
        elbo_checkpoint_info_free(&info);
    }
    return 0;
}
