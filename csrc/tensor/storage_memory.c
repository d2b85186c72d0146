/* storage_memory.c -- the bytes of owned storages: malloc'd, counted, and
 * kept for reuse when large.
 *
 * Freed buffers of REUSE_MIN_BYTES and more are kept (up to REUSE_MAX_BYTES
 * in all, the oldest dropped first) for the next storage of the same size. A
 * frame loop makes the same sizes pass after pass; malloc would hand such
 * buffers back to the kernel, and every pass would then fault its outputs'
 * pages in afresh. PTHCV_STORAGE_REUSE=0 turns it off, and builds with
 * AddressSanitizer leave it off, so a use after free is still caught.
 *
 * The counters (relaxed atomics, so a storage made on a worker thread counts
 * right) let pthcv.tensor pace Lua's collector by storage bytes. */
#include "internal.h"
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static int64_t held_bytes, made_bytes;

enum { REUSE_SLOTS = 32, REUSE_MIN_BYTES = 64 << 10 };
#define REUSE_MAX_BYTES ((size_t)128 << 20)
static struct {
    void *data;
    size_t size;
} reuse[REUSE_SLOTS]; /* oldest first */
static int reuse_count;
static size_t reuse_bytes;
static pthread_mutex_t reuse_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t reuse_once = PTHREAD_ONCE_INIT;
static int reuse_on;

#if defined(__SANITIZE_ADDRESS__)
#define PTHCV_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define PTHCV_ASAN 1
#endif
#endif

static void reuse_setup(void)
{
#ifndef PTHCV_ASAN
    const char *env = getenv("PTHCV_STORAGE_REUSE");
    reuse_on = !(env && strcmp(env, "0") == 0);
#endif
}

static void reuse_drop_oldest(void)
{
    free(reuse[0].data);
    reuse_bytes -= reuse[0].size;
    memmove(reuse, reuse + 1, (size_t)--reuse_count * sizeof reuse[0]);
}

/* A kept buffer of exactly `size` bytes (the newest), or NULL. */
static void *reuse_take(size_t size)
{
    void *data = NULL;
    pthread_mutex_lock(&reuse_lock);
    for (int i = reuse_count - 1; i >= 0; i--) {
        if (reuse[i].size != size) continue;
        data = reuse[i].data;
        reuse_bytes -= size;
        memmove(reuse + i, reuse + i + 1, (size_t)(--reuse_count - i) * sizeof reuse[0]);
        break;
    }
    pthread_mutex_unlock(&reuse_lock);
    return data;
}

void *pthcv_storage_data_alloc(size_t size, int zeroed)
{
    pthread_once(&reuse_once, reuse_setup);
    void *data = reuse_on && size >= REUSE_MIN_BYTES ? reuse_take(size) : NULL;
    if (data && zeroed) memset(data, 0, size);
    if (!data) data = zeroed ? calloc(1, size) : malloc(size);
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
    if (!reuse_on || size < REUSE_MIN_BYTES || size > REUSE_MAX_BYTES / 2) {
        free(data);
        return;
    }
    pthread_mutex_lock(&reuse_lock);
    while (reuse_count == REUSE_SLOTS || reuse_bytes + size > REUSE_MAX_BYTES) reuse_drop_oldest();
    reuse[reuse_count].data = data;
    reuse[reuse_count++].size = size;
    reuse_bytes += size;
    pthread_mutex_unlock(&reuse_lock);
}

double pthcv_storage_bytes_held(void) { return (double)__atomic_load_n(&held_bytes, __ATOMIC_RELAXED); }
double pthcv_storage_bytes_made(void) { return (double)__atomic_load_n(&made_bytes, __ATOMIC_RELAXED); }

double pthcv_storage_bytes_kept(void)
{
    pthread_mutex_lock(&reuse_lock);
    size_t kept = reuse_bytes;
    pthread_mutex_unlock(&reuse_lock);
    return (double)kept;
}
