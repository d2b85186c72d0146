/* storage_memory.c -- the bytes of owned storages, malloc'd and counted.
 *
 * The counters (relaxed atomics, so a storage made on a worker thread counts
 * right) let pthcv.tensor pace Lua's collector by storage bytes.
 *
 * Keeping the pages between passes. A forward pass makes and frees the same
 * activations pass after pass. glibc's malloc hands large chunks to the
 * kernel when they are freed: chunks over its mmap threshold are unmapped,
 * and the heap's top is trimmed once more than its trim threshold lies free
 * there. Both thresholds start low (128 KiB) and rise only as far as the
 * largest mapped chunk freed so far, so a network whose activations are
 * small (shufflenet_v2's largest is 1.2 MB) kept giving its pages back, and
 * every pass faulted them in afresh: about 210 page faults a shufflenet_v2
 * pass at 224x224; on this project's VM a fresh page can cost the host's
 * fault too, and half of the passes took 13 ms instead of 3.5
 * (docs/performance.md, "Storage memory"). So the first storage sets both
 * thresholds where glibc's own rule would end (32 MiB mapped, 64 MiB
 * trimmed: DEFAULT_MMAP_THRESHOLD_MAX and twice it), once per process, unless
 *   - PTHCV_MALLOC_TUNE=0 says not to, or GLIBC_TUNABLES already sets a
 *     malloc parameter (the program's own choice);
 *   - the C library is not glibc, or the build has AddressSanitizer (its
 *     allocator is its own).
 * A pool of pthcv's own for freed storages was tried and measured first: it
 * ended the faults, but a layer's output then went to a block of its size
 * class freed long before, cold in the caches, where malloc hands out the
 * chunk freed last, still warm: mobilenet_v3_large 5-10% slower a pass. */
#include "internal.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define PTHCV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTHCV_ASAN 1
#endif
#endif

static int64_t held_bytes, made_bytes;
static pthread_once_t tune_once = PTHREAD_ONCE_INIT;
static int tuned;

static void tune_malloc(void)
{
#if defined(__GLIBC__) && !defined(PTHCV_ASAN)
    const char *off = getenv("PTHCV_MALLOC_TUNE"), *glibc = getenv("GLIBC_TUNABLES");
    if ((off && strcmp(off, "0") == 0) || (glibc && strstr(glibc, "glibc.malloc."))) return;
    tuned = mallopt(M_MMAP_THRESHOLD, 32 << 20) && mallopt(M_TRIM_THRESHOLD, 64 << 20);
#endif
}

void *pthcv_storage_data_alloc(size_t size, int zeroed)
{
    pthread_once(&tune_once, tune_malloc);
    void *data = zeroed ? calloc(1, size) : malloc(size);
    if (data) {
        __atomic_fetch_add(&held_bytes, (int64_t)size, __ATOMIC_RELAXED);
        __atomic_fetch_add(&made_bytes, (int64_t)size, __ATOMIC_RELAXED);
    }
    return data;
}

void pthcv_storage_data_free(void *data, size_t size)
{
    if (!data) return;
    __atomic_fetch_sub(&held_bytes, (int64_t)size, __ATOMIC_RELAXED);
    free(data);
}

double pthcv_storage_bytes_held(void) { return (double)__atomic_load_n(&held_bytes, __ATOMIC_RELAXED); }
double pthcv_storage_bytes_made(void) { return (double)__atomic_load_n(&made_bytes, __ATOMIC_RELAXED); }

int pthcv_storage_malloc_tuned(void)
{
    pthread_once(&tune_once, tune_malloc);
    return tuned;
}
