/*
 * parallel.c -- a small pool of worker threads for the kernels.
 *
 * Workers sleep on a condition variable; pthcv_parallel_for publishes one job
 * (function, context, ranges), wakes them, runs the first range itself and
 * waits until every range is done. One job at a time: the pool is guarded by
 * a mutex, and a call made from inside a task runs serially instead of
 * waiting on itself.
 */
#include "kernels.h"
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

enum { MAX_THREADS = 256 };

static struct {
    pthread_mutex_t lock;          /* held by the caller for a whole job */
    pthread_mutex_t m;             /* guards the fields below */
    pthread_cond_t work, done;
    int nworkers;                  /* started workers (threads - 1) */
    int nthreads;                  /* requested thread count */
    unsigned long generation;      /* bumped for every job */
    int pending;                   /* ranges not finished yet */
    pthcv_task_fn fn;
    void *ctx;
    int64_t n, chunk;
    int nranges;
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
           PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, 0, 0, 0 };

static _Thread_local int in_task;

static void run_range(int r)
{
    int64_t begin = (int64_t)r * pool.chunk, end = begin + pool.chunk;
    if (end > pool.n) end = pool.n;
    if (begin < end) pool.fn(pool.ctx, begin, end);
}

static void *worker(void *arg)
{
    int id = (int)(intptr_t)arg;   /* ranges 1..nworkers; range 0 is the caller's */
    unsigned long seen = 0;
    in_task = 1;
    pthread_mutex_lock(&pool.m);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.work, &pool.m);
        seen = pool.generation;
        int mine = id < pool.nranges;
        pthread_mutex_unlock(&pool.m);
        if (mine) run_range(id);
        pthread_mutex_lock(&pool.m);
        if (mine && --pool.pending == 0) pthread_cond_signal(&pool.done);
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
    pthread_mutex_lock(&pool.m);
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
    pool.nranges = (int)ranges;
    pool.pending = (int)ranges - 1;
    pool.generation++;
    pthread_cond_broadcast(&pool.work);
    pthread_mutex_unlock(&pool.m);

    in_task = 1;
    run_range(0);
    in_task = 0;

    pthread_mutex_lock(&pool.m);
    while (pool.pending > 0) pthread_cond_wait(&pool.done, &pool.m);
    pthread_mutex_unlock(&pool.m);
    pthread_mutex_unlock(&pool.lock);
}
