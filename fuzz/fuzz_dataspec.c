/* libFuzzer target: elbo_data_spec_parse on the bytes as a NUL-terminated string (parsing
 * only: nothing is opened). */
#include "elbo/data.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *s = malloc(size + 1);
    if (!s) return 0;
    memcpy(s, data, size);
    s[size] = 0;
    elbo_data_spec spec;
    if (elbo_data_spec_parse(s, &spec) == ELBO_OK) {
        if (memchr(spec.name, 0, sizeof spec.name) == NULL ||
            memchr(spec.dir, 0, sizeof spec.dir) == NULL ||
            memchr(spec.labels, 0, sizeof spec.labels) == NULL)
            abort(); /* every field NUL-terminated */
    }
    free(s);
    return 0;
}
