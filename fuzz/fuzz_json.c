/* libFuzzer target: the internal strict JSON reader (src/io/json.h), straight from memory. */
#include "io/json.h"

#include <stdlib.h>
#include <string.h>

/* Walks the tree, touching every string and key, and checks elbo__json_get finds each key. */
static size_t walk(const elbo__json *v) {
    size_t s = 0;
    switch (v->type) {
    case ELBO__JSON_STRING:
        s += v->len + (v->str[v->len] == 0 ? 0 : 1000000); /* NUL-terminated */
        break;
    case ELBO__JSON_OBJECT:
        for (size_t i = 0; i < v->n; i++) {
            s += v->key_len[i] + walk(&v->items[i]);
            if (strlen(v->keys[i]) == v->key_len[i] && !elbo__json_get(v, v->keys[i])) abort();
        }
        break;
    case ELBO__JSON_ARRAY:
        for (size_t i = 0; i < v->n; i++) s += walk(&v->items[i]);
        break;
    default:
        break;
    }
    return s;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    elbo__json v;
    char err[256];
    if (elbo__json_parse((const char *)data, size, &v, err, sizeof err) == 0) {
        volatile size_t sink = walk(&v);
        (void)sink;
        elbo__json_free(&v);
    }
    return 0;
}
