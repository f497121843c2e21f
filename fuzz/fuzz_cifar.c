/* libFuzzer target: elbo_dataset_load_cifar10_dir, the bytes as <tmpdir>/cifar/test_batch.bin
 * and the test split loaded. */
#include "elbo/data.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024], dir[1024];
    fuzz_write("cifar/test_batch.bin", data, size, path, sizeof path);
    fuzz_path("cifar", dir, sizeof dir);
    elbo_dataset ds;
    if (elbo_dataset_load_cifar10_dir(dir, ELBO_SPLIT_TEST, &ds) == ELBO_OK)
        elbo_dataset_free(&ds);
    return 0;
}
