/*
 * parallel.c -- a small pool of worker threads for the kernels.
 *
 * pthcv_parallel_for publishes one job (function, context, chunks of the
 * index range), and every thread, the caller included, takes chunks until
 * none is left; the caller then waits until every chunk is done. Chunks go
 * to whoever asks first: when a worker is slow to wake (its core busy, or a
 * virtual CPU descheduled by the host) the others take its share instead of
 * waiting for it. Results do not depend on who runs a chunk: each index is
 * computed independently (kernels.h). One job at a time: the pool is
 * guarded by a mutex, and a call made from inside a task runs serially.
 *
 * The job's state is one 64-bit ticket: the job's number in the high half,
 * the next chunk in the low half. A thread takes chunk i by a compare-and-
 * swap from (job, i) to (job, i + 1), so it can only take a chunk of the job
 * it read the fields of: before writing the next job's fields the caller
 * closes the ticket ((next job, CLOSED)), and after that no swap on the old
 * job can succeed.
 *
 * Waiting spins briefly before it sleeps. A forward pass at batch 1 is a
 * long chain of short jobs with little Lua between them, and waking a
 * sleeping thread through a futex takes a sizeable part of a short job
 * (docs/performance.md has the numbers). Spinning workers find the next job
 * at once; after about a millisecond without work they sleep on a condition
 * variable, so an idle pool costs nothing. The hand-off uses sequentially consistent atomics on both sides
 * (publish the ticket / count sleepers; count sleepers / re-check the
 * ticket), so a job is never published to a worker that is about to sleep
 * without that worker either seeing it or being woken.
 */
#include "kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* SPIN checks before sleeping: the first SPIN_PAUSE with a pause
 * instruction, the rest yielding the core, so that a thread count above the
 * core count (or a busy machine) does not leave a spinner in the way of the
 * thread it waits for. About a millisecond in all on an idle core.
 * CHUNKS_PER_THREAD: how finely a job is cut (chunks stay at least `grain`
 * long). */
enum { MAX_THREADS = 256, SPIN = 3000, SPIN_PAUSE = 200, CHUNKS_PER_THREAD = 4 };
#define CLOSED 0xffffffffu

static struct {
    pthread_mutex_t lock; /* held by the caller for a whole job */
    pthread_mutex_t m;    /* sleeping and waking */
    pthread_cond_t work, done;
    int nworkers;               /* started workers (threads - 1) */
    int nthreads;               /* requested thread count */
    _Atomic uint64_t ticket;    /* job number << 32 | next chunk (CLOSED: fields being written) */
    atomic_long remaining;      /* chunks not finished yet */
    atomic_int sleepers;        /* workers blocked on `work` */
    atomic_int caller_sleeping; /* the caller is blocked on `done` */
    /* the job's fields, written by the caller while the ticket is closed */
    _Atomic(pthcv_task_fn) fn;
    _Atomic(void *) ctx;
    atomic_llong n, chunk, nchunks;
    atomic_int helpers;  /* workers 1..helpers take part (the thread count may have dropped) */
    atomic_int profiled; /* the op profile is on: chunks are timed (profile.c) */
    atomic_llong work_ns, max_chunk_ns;
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .m = PTHREAD_MUTEX_INITIALIZER,
          .work = PTHREAD_COND_INITIALIZER,
          .done = PTHREAD_COND_INITIALIZER};

static _Thread_local int in_task;

static inline void cpu_relax(int i)
{
    if (i >= SPIN_PAUSE) {
        sched_yield();
        return;
    }
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int open_job_after(uint64_t t, uint32_t seen)
{
    return (uint32_t)(t >> 32) != seen && (uint32_t)t != CLOSED;
}

/* Takes and runs chunks of job `job` until none is left; 1 if this thread
 * finished the job's last chunk. */
static int take_chunks(uint32_t job)
{
    int last = 0;
    for (;;) {
        uint64_t t = atomic_load(&pool.ticket);
        uint32_t i = (uint32_t)t;
        if ((uint32_t)(t >> 32) != job || i == CLOSED) return last;
        /* valid for this job if the swap below succeeds (see the top) */
        pthcv_task_fn fn = atomic_load_explicit(&pool.fn, memory_order_relaxed);
        void *ctx = atomic_load_explicit(&pool.ctx, memory_order_relaxed);
        int64_t n = atomic_load_explicit(&pool.n, memory_order_relaxed);
        int64_t chunk = atomic_load_explicit(&pool.chunk, memory_order_relaxed);
        int64_t nchunks = atomic_load_explicit(&pool.nchunks, memory_order_relaxed);
        if ((int64_t)i >= nchunks) return last;
        if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
        /* chunks of chunk or chunk + 1 indices, the longer ones first */
        int64_t longer = n - chunk * nchunks, begin = (int64_t)i * chunk + ((int64_t)i < longer ? i : longer);
        int64_t end = begin + chunk + ((int64_t)i < longer);
        if (atomic_load_explicit(&pool.profiled, memory_order_relaxed)) {
            int64_t t0 = pthcv_thread_cpu_ns();
            fn(ctx, begin, end);
            long long dt = pthcv_thread_cpu_ns() - t0, m = atomic_load(&pool.max_chunk_ns);
            atomic_fetch_add(&pool.work_ns, dt);
            while (dt > m && !atomic_compare_exchange_weak(&pool.max_chunk_ns, &m, dt)) {}
        } else {
            fn(ctx, begin, end);
        }
        if (atomic_fetch_sub(&pool.remaining, 1) == 1) last = 1;
    }
}

/* The ticket of a job after job `seen`: spins, then sleeps until one is published. */
static uint64_t next_job(uint32_t seen)
{
    uint64_t t;
    for (int i = 0; i < SPIN; i++) {
        if (open_job_after(t = atomic_load(&pool.ticket), seen)) return t;
        cpu_relax(i);
    }
    pthread_mutex_lock(&pool.m);
    atomic_fetch_add(&pool.sleepers, 1);
    while (!open_job_after(t = atomic_load(&pool.ticket), seen)) pthread_cond_wait(&pool.work, &pool.m);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.m);
    return t;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg; /* 1..nworkers */
    uint32_t seen = 0;
    in_task = 1;
    for (;;) {
        seen = (uint32_t)(next_job(seen) >> 32);
        if (id > atomic_load(&pool.helpers)) continue;
        if (take_chunks(seen) && atomic_load(&pool.caller_sleeping)) {
            pthread_mutex_lock(&pool.m);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.m);
        }
    }
    return NULL;
}

/* The online CPU count, read once: glibc's sysconf opens and reads
 * /sys/devices/system/cpu/online on every call, and pthcv_parallel_for asks
 * for the thread count on every job (a program that never set one paid three
 * system calls per kernel call, about 10% of a small network's pass). */
static int default_threads(void)
{
    static atomic_int cached;
    int n = atomic_load_explicit(&cached, memory_order_relaxed);
    if (n > 0) return n;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    n = online < 1 ? 1 : online > MAX_THREADS ? MAX_THREADS : (int)online;
    atomic_store_explicit(&cached, n, memory_order_relaxed);
    return n;
}

void pthcv_set_num_threads(int n)
{
    pthread_mutex_lock(&pool.lock);
    pool.nthreads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    pthread_mutex_unlock(&pool.lock);
}

int pthcv_get_num_threads(void) { return pool.nthreads ? pool.nthreads : default_threads(); }

void pthcv_parallel_for(int64_t n, int64_t grain, pthcv_task_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int threads = pthcv_get_num_threads();
    int64_t most = n / grain; /* chunks of at least `grain` */
    if (most <= 1 || threads <= 1 || in_task) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.nworkers < threads - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(pool.nworkers + 1)) != 0) break;
        pthread_detach(t);
        pool.nworkers++;
    }
    int helpers = pool.nworkers < threads - 1 ? pool.nworkers : threads - 1;
    if (helpers == 0) { /* no thread could be started */
        pthread_mutex_unlock(&pool.lock);
        fn(ctx, 0, n);
        return;
    }
    /* nchunks chunks as equal as can be (their lengths differ by 1 at
     * most): rounding every chunk up to one length left fewer, and an odd
     * count of them (7 of 2 for 14 indices, say) gave one thread a whole
     * chunk more than the other */
    int64_t want = (int64_t)(helpers + 1) * CHUNKS_PER_THREAD;
    int64_t nchunks = most < want ? most : want;
    int64_t chunk = n / nchunks;

    /* close the ticket (no thread can take a chunk of the last job any
     * more), write the fields, then open it */
    uint32_t job = (uint32_t)(atomic_load(&pool.ticket) >> 32) + 1;
    if (job == 0) job = 1; /* 0 is "no job yet" for the workers */
    atomic_store(&pool.ticket, (uint64_t)job << 32 | CLOSED);
    atomic_store_explicit(&pool.fn, fn, memory_order_relaxed);
    atomic_store_explicit(&pool.ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&pool.n, n, memory_order_relaxed);
    atomic_store_explicit(&pool.chunk, chunk, memory_order_relaxed);
    atomic_store_explicit(&pool.nchunks, nchunks, memory_order_relaxed);
    atomic_store(&pool.helpers, helpers);
    int profiled = pthcv_profiling();
    atomic_store(&pool.profiled, profiled);
    atomic_store(&pool.work_ns, 0);
    atomic_store(&pool.max_chunk_ns, 0);
    atomic_store(&pool.remaining, nchunks);
    atomic_store(&pool.ticket, (uint64_t)job << 32); /* publishes the fields above */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.m);
        pthread_cond_broadcast(&pool.work);
        pthread_mutex_unlock(&pool.m);
    }

    in_task = 1;
    take_chunks(job);
    in_task = 0;

    for (int i = 0; i < SPIN && atomic_load(&pool.remaining) > 0; i++) cpu_relax(i);
    if (atomic_load(&pool.remaining) > 0) {
        pthread_mutex_lock(&pool.m);
        atomic_store(&pool.caller_sleeping, 1);
        while (atomic_load(&pool.remaining) > 0) pthread_cond_wait(&pool.done, &pool.m);
        atomic_store(&pool.caller_sleeping, 0);
        pthread_mutex_unlock(&pool.m);
    }
    if (profiled) pthcv_profile_job(atomic_load(&pool.work_ns), atomic_load(&pool.max_chunk_ns), helpers + 1);
    pthread_mutex_unlock(&pool.lock);
}
