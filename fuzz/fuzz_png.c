/* libFuzzer target: elbo_png_read (libpng). Also covers the folder: dataset source, whose
 * only parser is this one. */
#include "elbo/io.h"
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[1024];
    fuzz_write("in.png", data, size, path, sizeof path);
    uint8_t *img = NULL;
    int64_t h, w, c;
    if (elbo_png_read(path, &img, &h, &w, &c) == ELBO_OK) {
        volatile uint8_t sink = img[h * w * c - 1];
        (void)sink;
        free(img);
    }
    return 0;
}
