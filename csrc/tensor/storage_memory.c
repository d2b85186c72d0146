/* storage_memory.c -- the bytes of owned storages, malloc'd and counted.
 *
 * The counters (relaxed atomics, so a storage made on a worker thread counts
 * right) let pthcv.tensor pace Lua's collector by storage bytes.
 *
 * Freed buffers go straight back to malloc. Keeping large ones for the next
 * storage of their size was tried and measured: it saved page faults in a
 * frame loop but no time, and it kept glibc from raising its mmap threshold
 * (glibc raises it when a mapped chunk is freed), so every size it did not
 * hold stayed a fresh mapping: densenet121 went from 61 to 66-79 ms a pass
 * (docs/performance.md, "Storage memory"). */
#include "internal.h"
#include <stdlib.h>

static int64_t held_bytes, made_bytes;

void *pthcv_storage_data_alloc(size_t size, int zeroed)
{
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
