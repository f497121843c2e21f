/* A small strict JSON reader (RFC 8259) and the writing helpers elbo's file formats need.
 * Internal: not installed.
 *
 * The reader builds a tree of elbo__json values. It accepts exactly RFC 8259 text: no
 * comments, no trailing commas, no leading zeros, no NaN/Infinity, strings of valid UTF-8
 * with no raw control characters, escapes \" \\ \/ \b \f \n \r \t \uXXXX with surrogate
 * pairs (a lone surrogate is an error), nesting at most ELBO__JSON_MAX_DEPTH deep, and no
 * duplicate keys in any object. Object members keep the order of the text. */
#ifndef ELBO_IO_JSON_H
#define ELBO_IO_JSON_H

#include <stddef.h>
#include <stdint.h>

#define ELBO__JSON_MAX_DEPTH 64

typedef enum {
    ELBO__JSON_NULL,
    ELBO__JSON_BOOL,
    ELBO__JSON_NUMBER,
    ELBO__JSON_STRING,
    ELBO__JSON_ARRAY,
    ELBO__JSON_OBJECT
} elbo__json_type;

typedef struct elbo__json {
    elbo__json_type type;
    int boolean;           /* BOOL */
    double num;            /* NUMBER: the value as a double */
    int is_uint;           /* NUMBER: 1 when an integer in [0, 2^64) written without -, . or e */
    uint64_t u;            /* NUMBER: that integer */
    char *str;             /* STRING: decoded UTF-8, NUL-terminated (may contain NUL: use len) */
    size_t len;            /* STRING: bytes in str */
    struct elbo__json *items; /* ARRAY elements / OBJECT values, n of them */
    char **keys;           /* OBJECT keys (decoded, NUL-terminated) */
    size_t *key_len;       /* OBJECT key lengths */
    size_t n;
} elbo__json;

/* Parses text[0..len) into *out. Returns 0, or -1 with a one-line reason (naming the byte
 * offset) in err; *out is then empty. Free with elbo__json_free. */
int elbo__json_parse(const char *text, size_t len, elbo__json *out, char *err, size_t err_len);
void elbo__json_free(elbo__json *v);
/* The value of key in an object (NULL if absent or v is not an object). */
const elbo__json *elbo__json_get(const elbo__json *v, const char *key);

/* 1 when s[0..n) is valid UTF-8 (no overlong forms, no surrogates, at most U+10FFFF). */
int elbo__utf8_valid(const char *s, size_t n);

/* A growing byte buffer for writing JSON; oom is set (and further writes ignored) when an
 * allocation fails. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} elbo__jbuf;

void elbo__jbuf_put(elbo__jbuf *b, const char *s, size_t n);
void elbo__jbuf_puts(elbo__jbuf *b, const char *s);
void elbo__jbuf_u64(elbo__jbuf *b, uint64_t v);
/* s as a JSON string with quotes, escaped as serde_json does: \" \\ \b \t \n \f \r, other
 * control characters as \u00xx, everything else (UTF-8 included) verbatim. */
void elbo__jbuf_string(elbo__jbuf *b, const char *s);
void elbo__jbuf_free(elbo__jbuf *b);

#endif
