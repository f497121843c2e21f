/* The step context: a bump arena for one step's tensors, tape nodes and gradients, reset
 * every step. The arena grows in chunks during the first steps; at reset, several chunks
 * are merged into one of their total size, so from then on a step allocates nothing. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

#define ALIGN 64
#define DEFAULT_ARENA (64u << 20)

static elbo_chunk *chunk_new(size_t size) {
    elbo_chunk *c = malloc(sizeof *c);
    if (!c) return NULL;
    c->mem = aligned_alloc(ALIGN, (size + ALIGN - 1) / ALIGN * ALIGN);
    if (!c->mem) {
        free(c);
        return NULL;
    }
    c->size = size;
    c->used = 0;
    c->next = NULL;
    return c;
}

static void chunks_free(elbo_chunk *c) {
    while (c) {
        elbo_chunk *n = c->next;
        free(c->mem);
        free(c);
        c = n;
    }
}

elbo_ctx *elbo_ctx_new(size_t arena_bytes) {
    elbo_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) {
        elbo_error(ELBO_ERR_NOMEM, "elbo_ctx_new: out of memory");
        return NULL;
    }
    if (!arena_bytes) arena_bytes = DEFAULT_ARENA;
    ctx->chunks = chunk_new(arena_bytes);
    if (!ctx->chunks) {
        free(ctx);
        elbo_error(ELBO_ERR_NOMEM, "elbo_ctx_new: cannot allocate a %zu-byte arena", arena_bytes);
        return NULL;
    }
    ctx->capacity = arena_bytes;
    ctx->grad_enabled = 1;
    ctx->training = 1;
    elbo_rng_init(&ctx->rng, 0);
    return ctx;
}

void elbo_ctx_free(elbo_ctx *ctx) {
    if (!ctx) return;
    chunks_free(ctx->chunks);
    free(ctx->scratch);
    free(ctx->prof);
    free(ctx);
}

void elbo_ctx_reset(elbo_ctx *ctx) {
    if (ctx->chunks && ctx->chunks->next) {
        /* Merge: one chunk as large as everything this step needed. */
        size_t total = ctx->capacity;
        elbo_chunk *one = chunk_new(total);
        if (one) {
            chunks_free(ctx->chunks);
            ctx->chunks = one;
        } else {
            for (elbo_chunk *c = ctx->chunks; c; c = c->next) c->used = 0;
        }
    }
    if (ctx->chunks) ctx->chunks->used = 0;
    ctx->used = 0;
    ctx->tape = NULL;
    if (ctx->prof) elbo__prof_mark(ctx->prof);
}

int elbo_ctx_set_grad(elbo_ctx *ctx, int enabled) {
    int prev = ctx->grad_enabled;
    ctx->grad_enabled = enabled != 0;
    return prev;
}
int elbo_ctx_grad_enabled(const elbo_ctx *ctx) { return ctx->grad_enabled; }
int elbo_ctx_set_training(elbo_ctx *ctx, int training) {
    int prev = ctx->training;
    ctx->training = training != 0;
    return prev;
}
int elbo_ctx_training(const elbo_ctx *ctx) { return ctx->training; }
elbo_rng *elbo_ctx_rng(elbo_ctx *ctx) { return &ctx->rng; }
size_t elbo_ctx_arena_used(const elbo_ctx *ctx) { return ctx->used; }
size_t elbo_ctx_arena_capacity(const elbo_ctx *ctx) { return ctx->capacity; }
size_t elbo_ctx_arena_peak(const elbo_ctx *ctx) { return ctx->peak; }

void *elbo_ctx_alloc(elbo_ctx *ctx, size_t bytes) {
    bytes = (bytes + ALIGN - 1) / ALIGN * ALIGN;
    elbo_chunk *c = ctx->chunks;
    /* Chunks after the first are full or skipped: only the current (first) one is used. */
    if (!c || c->used + bytes > c->size) {
        size_t want = ctx->capacity > bytes ? ctx->capacity : bytes; /* doubles the total */
        elbo_chunk *n = chunk_new(want);
        if (!n) {
            elbo_error(ELBO_ERR_NOMEM, "arena: cannot allocate %zu bytes", want);
            return NULL;
        }
        n->next = c;
        ctx->chunks = c = n;
        ctx->capacity += want;
    }
    void *p = c->mem + c->used;
    c->used += bytes;
    ctx->used += bytes;
    if (ctx->used > ctx->peak) ctx->peak = ctx->used;
    return p;
}

void *elbo_ctx_scratch(elbo_ctx *ctx, size_t bytes) {
    if (bytes > ctx->scratch_size) {
        size_t sz = (bytes + ALIGN - 1) / ALIGN * ALIGN;
        void *p = aligned_alloc(ALIGN, sz);
        if (!p) {
            elbo_error(ELBO_ERR_NOMEM, "scratch: cannot allocate %zu bytes", bytes);
            return NULL;
        }
        free(ctx->scratch);
        ctx->scratch = p;
        ctx->scratch_size = sz;
    }
    return ctx->scratch;
}
