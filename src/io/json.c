/* Strict JSON reader and writing helpers (see json.h). Recursive descent with a depth limit;
 * every failure reports the byte offset where the text stops being JSON. */
#include "io/json.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t len, pos;
    char *err;
    size_t err_len;
    int failed;
} parser;

static int fail(parser *p, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static int fail(parser *p, const char *fmt, ...) {
    if (p->failed) return -1;
    p->failed = 1;
    char what[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    if (p->err && p->err_len) snprintf(p->err, p->err_len, "%s at byte %zu", what, p->pos);
    return -1;
}

static void skip_ws(parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
            p->pos++;
        else
            break;
    }
}

/* Length of the valid UTF-8 sequence at s[0..n), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t k;
    unsigned cp, min;
    if ((c & 0xE0) == 0xC0) k = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) k = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) k = 4, cp = c & 0x07, min = 0x10000;
    else return 0;
    if (n < k) return 0;
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return k;
}

int elbo__utf8_valid(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

static int hex4(parser *p, unsigned *out) {
    if (p->len - p->pos < 4) return fail(p, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos + i];
        unsigned d;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return fail(p, "bad hex digit in \\u escape");
        v = v * 16 + d;
    }
    p->pos += 4;
    *out = v;
    return 0;
}

static void put_utf8(char *dst, size_t *k, unsigned cp) {
    if (cp < 0x80) {
        dst[(*k)++] = (char)cp;
    } else if (cp < 0x800) {
        dst[(*k)++] = (char)(0xC0 | (cp >> 6));
        dst[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
        dst[(*k)++] = (char)(0xE0 | (cp >> 12));
        dst[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*k)++] = (char)(0x80 | (cp & 0x3F));
    } else {
        dst[(*k)++] = (char)(0xF0 | (cp >> 18));
        dst[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3F));
        dst[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3F));
        dst[(*k)++] = (char)(0x80 | (cp & 0x3F));
    }
}

/* At the opening quote. The decoded string is never longer than its source text. */
static int parse_string(parser *p, char **out, size_t *out_len) {
    p->pos++; /* '"' */
    size_t start = p->pos, end = start;
    /* find the closing quote to size the buffer */
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) return fail(p, "unterminated string");
    char *dst = malloc(end - start + 1);
    if (!dst) return fail(p, "out of memory");
    size_t k = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            dst[k] = 0;
            *out = dst;
            *out_len = k;
            return 0;
        }
        if (c < 0x20) {
            free(dst);
            return fail(p, "raw control character 0x%02x in string", c);
        }
        if (c == '\\') {
            p->pos++;
            if (p->pos >= p->len) break;
            char e = p->s[p->pos++];
            switch (e) {
            case '"': dst[k++] = '"'; break;
            case '\\': dst[k++] = '\\'; break;
            case '/': dst[k++] = '/'; break;
            case 'b': dst[k++] = '\b'; break;
            case 'f': dst[k++] = '\f'; break;
            case 'n': dst[k++] = '\n'; break;
            case 'r': dst[k++] = '\r'; break;
            case 't': dst[k++] = '\t'; break;
            case 'u': {
                unsigned cp, lo;
                if (hex4(p, &cp)) {
                    free(dst);
                    return -1;
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(dst);
                    return fail(p, "lone low surrogate in \\u escape");
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        free(dst);
                        return fail(p, "high surrogate not followed by a low surrogate");
                    }
                    p->pos += 2;
                    if (hex4(p, &lo)) {
                        free(dst);
                        return -1;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        free(dst);
                        return fail(p, "high surrogate not followed by a low surrogate");
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                put_utf8(dst, &k, cp); /* at most 4 bytes for 6 or 12 source bytes */
                break;
            }
            default:
                free(dst);
                p->pos--;
                return fail(p, "invalid escape '\\%c'", e);
            }
            continue;
        }
        size_t n = utf8_seq((const unsigned char *)p->s + p->pos, p->len - p->pos);
        if (!n) {
            free(dst);
            return fail(p, "invalid UTF-8 in string");
        }
        memcpy(dst + k, p->s + p->pos, n);
        k += n;
        p->pos += n;
    }
    free(dst);
    return fail(p, "unterminated string");
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, elbo__json *v) {
    size_t start = p->pos;
    int neg = 0, frac = 0;
    if (p->s[p->pos] == '-') neg = 1, p->pos++;
    if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "invalid number");
    if (p->s[p->pos] == '0') {
        p->pos++;
        if (p->pos < p->len && is_digit(p->s[p->pos])) return fail(p, "leading zero in number");
    } else {
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    size_t int_end = p->pos;
    if (p->pos < p->len && p->s[p->pos] == '.') {
        frac = 1;
        p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "digit expected after '.'");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        frac = 1;
        p->pos++;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || !is_digit(p->s[p->pos])) return fail(p, "digit expected in exponent");
        while (p->pos < p->len && is_digit(p->s[p->pos])) p->pos++;
    }
    v->type = ELBO__JSON_NUMBER;
    if (!neg && !frac) {
        uint64_t u = 0;
        int ok = 1;
        for (size_t i = start; i < int_end; i++) {
            unsigned d = (unsigned)(p->s[i] - '0');
            if (u > (UINT64_MAX - d) / 10) {
                ok = 0;
                break;
            }
            u = u * 10 + d;
        }
        v->is_uint = ok;
        v->u = ok ? u : 0;
    }
    char tmp[64];
    size_t n = p->pos - start;
    if (n < sizeof tmp) {
        memcpy(tmp, p->s + start, n);
        tmp[n] = 0;
        v->num = strtod(tmp, NULL);
    } else {
        char *big = malloc(n + 1);
        if (!big) return fail(p, "out of memory");
        memcpy(big, p->s + start, n);
        big[n] = 0;
        v->num = strtod(big, NULL);
        free(big);
    }
    return 0;
}

static int parse_value(parser *p, elbo__json *v, int depth);

static int grow(parser *p, elbo__json *v, size_t *cap, int object) {
    if (v->n < *cap) return 0;
    size_t nc = *cap ? 2 * *cap : 4;
    elbo__json *items = realloc(v->items, nc * sizeof *items);
    if (!items) return fail(p, "out of memory");
    v->items = items;
    if (object) {
        char **keys = realloc(v->keys, nc * sizeof *keys);
        if (!keys) return fail(p, "out of memory");
        v->keys = keys;
        size_t *kl = realloc(v->key_len, nc * sizeof *kl);
        if (!kl) return fail(p, "out of memory");
        v->key_len = kl;
    }
    *cap = nc;
    return 0;
}

typedef struct {
    const char *k;
    size_t len;
} key_ref;

static int key_cmp(const void *a, const void *b) {
    const key_ref *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->k, y->k, n);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

/* Rejects duplicate keys: sort references to the keys and compare neighbours. */
static int check_duplicates(parser *p, const elbo__json *v) {
    if (v->n < 2) return 0;
    key_ref *r = malloc(v->n * sizeof *r);
    if (!r) return fail(p, "out of memory");
    for (size_t i = 0; i < v->n; i++) r[i].k = v->keys[i], r[i].len = v->key_len[i];
    qsort(r, v->n, sizeof *r, key_cmp);
    for (size_t i = 1; i < v->n; i++)
        if (!key_cmp(&r[i - 1], &r[i])) {
            char shown[80];
            size_t k = 0;
            for (size_t j = 0; j < r[i].len && k + 4 < sizeof shown; j++) {
                unsigned char c = (unsigned char)r[i].k[j];
                shown[k++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
            }
            shown[k] = 0;
            free(r);
            return fail(p, "duplicate key \"%s\"", shown);
        }
    free(r);
    return 0;
}

static int parse_container(parser *p, elbo__json *v, int depth, int object) {
    char close = object ? '}' : ']';
    size_t cap = 0;
    v->type = object ? ELBO__JSON_OBJECT : ELBO__JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) {
        p->pos++;
        return 0;
    }
    for (;;) {
        skip_ws(p);
        if (grow(p, v, &cap, object)) return -1;
        if (object) {
            if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "expected a string key");
            if (parse_string(p, &v->keys[v->n], &v->key_len[v->n])) return -1;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') {
                free(v->keys[v->n]);
                return fail(p, "expected ':'");
            }
            p->pos++;
        }
        memset(&v->items[v->n], 0, sizeof v->items[v->n]);
        if (parse_value(p, &v->items[v->n], depth + 1)) {
            elbo__json_free(&v->items[v->n]);
            if (object) free(v->keys[v->n]);
            return -1;
        }
        v->n++;
        skip_ws(p);
        if (p->pos >= p->len) return fail(p, object ? "unterminated object" : "unterminated array");
        char c = p->s[p->pos];
        if (c == ',') {
            p->pos++;
            continue;
        }
        if (c == close) {
            p->pos++;
            return object ? check_duplicates(p, v) : 0;
        }
        return fail(p, object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int literal(parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n)) return fail(p, "invalid literal");
    p->pos += n;
    return 0;
}

static int parse_value(parser *p, elbo__json *v, int depth) {
    if (depth > ELBO__JSON_MAX_DEPTH) return fail(p, "nested deeper than %d", ELBO__JSON_MAX_DEPTH);
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "unexpected end of text");
    char c = p->s[p->pos];
    switch (c) {
    case '{': return parse_container(p, v, depth, 1);
    case '[': return parse_container(p, v, depth, 0);
    case '"': v->type = ELBO__JSON_STRING; return parse_string(p, &v->str, &v->len);
    case 't': v->type = ELBO__JSON_BOOL; v->boolean = 1; return literal(p, "true");
    case 'f': v->type = ELBO__JSON_BOOL; v->boolean = 0; return literal(p, "false");
    case 'n': v->type = ELBO__JSON_NULL; return literal(p, "null");
    default:
        if (c == '-' || is_digit(c)) return parse_number(p, v);
        return fail(p, "unexpected character '%c'", c >= 0x20 && c < 0x7f ? c : '?');
    }
}

int elbo__json_parse(const char *text, size_t len, elbo__json *out, char *err, size_t err_len) {
    parser p = {text, len, 0, err, err_len, 0};
    memset(out, 0, sizeof *out);
    if (err && err_len) err[0] = 0;
    if (parse_value(&p, out, 0) == 0) {
        skip_ws(&p);
        if (p.pos == p.len) return 0;
        fail(&p, "trailing characters after the value");
    }
    elbo__json_free(out);
    memset(out, 0, sizeof *out);
    return -1;
}

void elbo__json_free(elbo__json *v) {
    if (!v) return;
    free(v->str);
    for (size_t i = 0; i < v->n; i++) {
        elbo__json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->key_len);
    memset(v, 0, sizeof *v);
}

const elbo__json *elbo__json_get(const elbo__json *v, const char *key) {
    if (!v || v->type != ELBO__JSON_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < v->n; i++)
        if (v->key_len[i] == n && !memcmp(v->keys[i], key, n)) return &v->items[i];
    return NULL;
}

/* ---- writing -------------------------------------------------------------------------- */
void elbo__jbuf_put(elbo__jbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1) cap *= 2;
        char *q = realloc(b->p, cap);
        if (!q) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void elbo__jbuf_puts(elbo__jbuf *b, const char *s) { elbo__jbuf_put(b, s, strlen(s)); }

void elbo__jbuf_u64(elbo__jbuf *b, uint64_t v) {
    char tmp[24];
    int k = snprintf(tmp, sizeof tmp, "%llu", (unsigned long long)v);
    elbo__jbuf_put(b, tmp, (size_t)k);
}

void elbo__jbuf_string(elbo__jbuf *b, const char *s) {
    static const char hex[] = "0123456789abcdef";
    elbo__jbuf_put(b, "\"", 1);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char e[7];
        switch (*c) {
        case '"': elbo__jbuf_put(b, "\\\"", 2); break;
        case '\\': elbo__jbuf_put(b, "\\\\", 2); break;
        case '\b': elbo__jbuf_put(b, "\\b", 2); break;
        case '\t': elbo__jbuf_put(b, "\\t", 2); break;
        case '\n': elbo__jbuf_put(b, "\\n", 2); break;
        case '\f': elbo__jbuf_put(b, "\\f", 2); break;
        case '\r': elbo__jbuf_put(b, "\\r", 2); break;
        default:
            if (*c < 0x20) {
                e[0] = '\\', e[1] = 'u', e[2] = '0', e[3] = '0', e[4] = hex[*c >> 4],
                e[5] = hex[*c & 15];
                elbo__jbuf_put(b, e, 6);
            } else {
                elbo__jbuf_put(b, (const char *)c, 1);
            }
        }
    }
    elbo__jbuf_put(b, "\"", 1);
}

void elbo__jbuf_free(elbo__jbuf *b) {
    free(b->p);
    memset(b, 0, sizeof *b);
}
