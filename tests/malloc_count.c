/* Counts heap calls while a flag is on, for the no-allocation test of tests/test_train.c.
 * The test binary defines malloc, calloc, realloc, free, aligned_alloc, posix_memalign,
 * memalign and valloc; the dynamic linker resolves every library's calls to them (libelbo,
 * OpenBLAS, libgomp, libc's own stdio), and they forward to glibc's __libc_* allocator.
 * To find a caller, break on malloc_count_hit in gdb.
 * Compiled out under AddressSanitizer, which interposes these itself: then
 * malloc_count_available() returns 0 and the test checks the arena instead. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#if defined(__SANITIZE_ADDRESS__)
#define MC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MC_ASAN 1
#endif
#endif

#include "malloc_count.h"

#include <dlfcn.h>
#include <stdio.h>

/* Counting state, per origin (0: this executable, i.e. libelbo and the tests, which link
 * libelbo statically; 1: a shared library): the number of calls, and the kind, size and
 * caller of the first one. */
static volatile int mc_on;
static long mc_calls[2];
static const char *volatile mc_first_kind[2];
static volatile size_t mc_first_size[2];
static void *volatile mc_first_caller[2];

#ifndef MC_ASAN
extern char __executable_start, etext; /* the executable's code, from the linker */

int malloc_count_available(void) { return 1; }

/* Pointers recently handed to shared libraries, to attribute their frees: a library may
 * reach free through a chain of tail calls (libgomp's GOMP_parallel -> gomp_team_end ->
 * free), so that free's return address is in the library's caller. */
#define MC_RECENT 256
static void *volatile mc_recent[MC_RECENT];
static unsigned mc_recent_next;

static int in_exe(const void *caller) {
    return (const char *)caller >= &__executable_start && (const char *)caller < &etext;
}

static int recent_lib_pointer(const void *p) {
    for (int i = 0; i < MC_RECENT; i++)
        if (mc_recent[i] == p) return 1;
    return 0;
}

/* A function to break on (gdb: break malloc_count_hit). ptr is the block allocated, or
 * the one freed (is_free). */
__attribute__((noinline)) void malloc_count_hit(const char *kind, size_t size, void *caller,
                                                void *ptr, int is_free) {
    int lib = !in_exe(caller) || (is_free && recent_lib_pointer(ptr));
    if (lib && !is_free && ptr)
        mc_recent[__atomic_fetch_add(&mc_recent_next, 1, __ATOMIC_RELAXED) % MC_RECENT] = ptr;
    if (__atomic_fetch_add(&mc_calls[lib], 1, __ATOMIC_RELAXED) == 0) {
        mc_first_kind[lib] = kind;
        mc_first_size[lib] = size;
        mc_first_caller[lib] = caller;
    }
    __asm__ volatile("" ::: "memory");
}

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
extern void *__libc_memalign(size_t, size_t);
extern void *__libc_valloc(size_t);

/* Counts an allocation p of n bytes made by the caller of the enclosing function. */
#define COUNT(kind, n, p)                                                                          \
    do {                                                                                           \
        if (mc_on) malloc_count_hit(kind, n, __builtin_return_address(0), p, 0);                   \
    } while (0)

void *malloc(size_t n) {
    void *p = __libc_malloc(n);
    COUNT("malloc", n, p);
    return p;
}
void *calloc(size_t m, size_t n) {
    void *p = __libc_calloc(m, n);
    COUNT("calloc", m * n, p);
    return p;
}
void *realloc(void *old, size_t n) {
    void *p = __libc_realloc(old, n);
    COUNT("realloc", n, p);
    return p;
}
void free(void *p) {
    if (p && mc_on) malloc_count_hit("free", 0, __builtin_return_address(0), p, 1);
    __libc_free(p);
}
void *aligned_alloc(size_t align, size_t n) {
    void *p = __libc_memalign(align, n);
    COUNT("aligned_alloc", n, p);
    return p;
}
void *memalign(size_t align, size_t n) {
    void *p = __libc_memalign(align, n);
    COUNT("memalign", n, p);
    return p;
}
void *valloc(size_t n) {
    void *p = __libc_valloc(n);
    COUNT("valloc", n, p);
    return p;
}
int posix_memalign(void **out, size_t align, size_t n) {
    if (align < sizeof(void *) || (align & (align - 1))) return EINVAL;
    void *p = __libc_memalign(align, n);
    COUNT("posix_memalign", n, p);
    if (!p && n) return ENOMEM;
    *out = p;
    return 0;
}
#else
int malloc_count_available(void) { return 0; }
void malloc_count_hit(const char *kind, size_t size, void *caller, void *ptr, int is_free) {
    (void)kind, (void)size, (void)caller, (void)ptr, (void)is_free;
}
#endif

void malloc_count_start(void) {
#ifndef MC_ASAN
    for (int i = 0; i < MC_RECENT; i++) mc_recent[i] = NULL;
#endif
    for (int i = 0; i < 2; i++) {
        mc_calls[i] = 0;
        mc_first_kind[i] = "";
        mc_first_size[i] = 0;
        mc_first_caller[i] = NULL;
    }
    __atomic_store_n(&mc_on, 1, __ATOMIC_SEQ_CST);
}

void malloc_count_stop(malloc_count_result *r) {
    __atomic_store_n(&mc_on, 0, __ATOMIC_SEQ_CST);
    for (int i = 0; i < 2; i++) {
        r->calls[i] = __atomic_load_n(&mc_calls[i], __ATOMIC_SEQ_CST);
        void *c = mc_first_caller[i];
        Dl_info info;
        if (c && dladdr(c, &info) && info.dli_fname)
            snprintf(r->first[i], sizeof r->first[i], "%s(%zu) from %s (%s)", mc_first_kind[i],
                     (size_t)mc_first_size[i], info.dli_sname ? info.dli_sname : "?",
                     info.dli_fname);
        else
            snprintf(r->first[i], sizeof r->first[i], "%s(%zu) from %p", mc_first_kind[i],
                     (size_t)mc_first_size[i], c);
    }
}
