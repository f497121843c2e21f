/* libFuzzer target: elbo_npy_read, and the same file as an image dataset
 * (elbo_dataset_load_npy, test split: its layout checks). */
#include "elbo/data.h"
#include "elbo/io.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    fuzz_write("in.npy", data, size, path, sizeof path);
    elbo_npy_array a;
    if (elbo_npy_read(path, &a) == ELBO_OK) {
        volatile uint8_t sink = a.nbytes ? ((const uint8_t *)a.data)[a.nbytes - 1] : 0;
        (void)sink;
        elbo_npy_free(&a);
        elbo_dataset ds;
        if (elbo_dataset_load_npy(path, NULL, ELBO_SPLIT_TEST, &ds) == ELBO_OK)
            elbo_dataset_free(&ds);
    }
    return 0;
}
