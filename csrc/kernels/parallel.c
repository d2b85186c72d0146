/*
 * parallel.c -- a small pool of worker threads for the kernels.
 *
 * pthcv_parallel_for publishes one job (function, context, ranges), runs the
 * first range itself and waits until every range is done. One job at a time:
 * the pool is guarded by a mutex, and a call made from inside a task runs
 * serially instead of waiting on itself.
 *
 * Waiting spins briefly before it sleeps. A forward pass at batch 1 is a
 * chain of a hundred or more short jobs (0.1-0.5 ms each) separated by a few
 * microseconds of Lua; waking a sleeping thread through a futex costs tens of
 * microseconds each time and made two threads slower than one on MobileNets.
 * Spinning workers find the next job at once; after about a millisecond
 * without work they sleep on a condition variable, so an idle pool costs
 * nothing. The hand-off uses sequentially consistent atomics on both sides
 * (publish generation / count sleepers; count sleepers / re-check
 * generation), so a job is never published to a worker that is about to
 * sleep without that worker either seeing it or being woken.
 */
#include "kernels.h"
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

/* SPIN checks before sleeping: the first SPIN_PAUSE with a pause
 * instruction, the rest yielding the core, so that a thread count above the
 * core count (or a busy machine) does not leave a spinner in the way of the
 * thread it waits for. About a millisecond in all on an idle core. */
enum { MAX_THREADS = 256, SPIN = 3000, SPIN_PAUSE = 200 };

static struct {
    pthread_mutex_t lock;          /* held by the caller for a whole job */
    pthread_mutex_t m;             /* sleeping and waking */
    pthread_cond_t work, done;
    int nworkers;                  /* started workers (threads - 1) */
    int nthreads;                  /* requested thread count */
    atomic_ulong generation;       /* bumped for every job, after its fields are set */
    atomic_int pending;            /* ranges not finished yet */
    atomic_int sleepers;           /* workers blocked on `work` */
    atomic_int caller_sleeping;    /* the caller is blocked on `done` */
    pthcv_task_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_int nranges;            /* read by every worker, also those not in the job */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
           PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, NULL, NULL, 0, 0, 0 };

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

static void run_range(int r)
{
    int64_t begin = (int64_t)r * pool.chunk, end = begin + pool.chunk;
    if (end > pool.n) end = pool.n;
    if (begin < end) pool.fn(pool.ctx, begin, end);
}

/* The generation after `seen`: spins, then sleeps until a job is published. */
static unsigned long next_job(unsigned long seen)
{
    unsigned long g;
    for (int i = 0; i < SPIN; i++) {
        if ((g = atomic_load(&pool.generation)) != seen) return g;
        cpu_relax(i);
    }
    pthread_mutex_lock(&pool.m);
    atomic_fetch_add(&pool.sleepers, 1);
    while ((g = atomic_load(&pool.generation)) == seen) pthread_cond_wait(&pool.work, &pool.m);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.m);
    return g;
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;   /* ranges 1..nworkers; range 0 is the caller's */
    unsigned long seen = 0;
    in_task = 1;
    for (;;) {
        seen = next_job(seen);
        if (id >= atomic_load(&pool.nranges)) continue;
        run_range(id);
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.caller_sleeping)) {
            pthread_mutex_lock(&pool.m);
            pthread_cond_signal(&pool.done);
            pthread_mutex_unlock(&pool.m);
        }
    }
    return NULL;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

void pthcv_set_num_threads(int n)
{
    pthread_mutex_lock(&pool.lock);
    pool.nthreads = n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : n;
    pthread_mutex_unlock(&pool.lock);
}

int pthcv_get_num_threads(void)
{
    return pool.nthreads ? pool.nthreads : default_threads();
}

void pthcv_parallel_for(int64_t n, int64_t grain, pthcv_task_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int threads = pthcv_get_num_threads();
    int64_t ranges = (n + grain - 1) / grain;
    if (ranges > threads) ranges = threads;
    if (ranges <= 1 || in_task) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    while (pool.nworkers < ranges - 1) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)(intptr_t)(pool.nworkers + 1)) != 0) break;
        pthread_detach(t);
        pool.nworkers++;
    }
    if (ranges > pool.nworkers + 1) ranges = pool.nworkers + 1;
    pool.fn = fn;
    pool.ctx = ctx;
    pool.n = n;
    pool.chunk = (n + ranges - 1) / ranges;
    atomic_store(&pool.nranges, (int)ranges);
    atomic_store(&pool.pending, (int)ranges - 1);
    atomic_fetch_add(&pool.generation, 1);          /* publishes the fields above */
    if (atomic_load(&pool.sleepers) > 0) {
        pthread_mutex_lock(&pool.m);
        pthread_cond_broadcast(&pool.work);
        pthread_mutex_unlock(&pool.m);
    }

    in_task = 1;
    run_range(0);
    in_task = 0;

    for (int i = 0; i < SPIN && atomic_load(&pool.pending) > 0; i++) cpu_relax(i);
    if (atomic_load(&pool.pending) > 0) {
        pthread_mutex_lock(&pool.m);
        atomic_store(&pool.caller_sleeping, 1);
        while (atomic_load(&pool.pending) > 0) pthread_cond_wait(&pool.done, &pool.m);
        atomic_store(&pool.caller_sleeping, 0);
        pthread_mutex_unlock(&pool.m);
    }
    pthread_mutex_unlock(&pool.lock);
}
