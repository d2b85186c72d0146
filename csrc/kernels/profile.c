/*
 * profile.c -- the op profile behind `pthcv bench --profile`: while it is
 * on, every kernel entry point adds its wall time to a row named by the op
 * and the path it took ("conv 3x3/1 winograd", "pool2d max 3x3/2", ...), so
 * that a model's time splits by kind of work (tools/bench_models.py puts
 * that split next to ncnn's per-layer times).
 *
 * A probe (PTHCV_PROFILE_OP, kernels.h) costs one relaxed atomic load when
 * the profile is off. Only the outermost probe of a thread counts: an entry
 * point called by another is part of its caller's time.
 */
#include "kernels.h"
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_ROWS = 256 };

static struct {
    pthread_mutex_t lock;
    atomic_int on;
    int nrows;
    struct {
        char kind[PTHCV_PROBE_KIND];
        int64_t ns, calls;
    } rows[MAX_ROWS];
} prof = {.lock = PTHREAD_MUTEX_INITIALIZER};

static _Thread_local int depth;

/* thread-pool jobs while profiling: the CPU time of their chunks, and an
 * estimate of their time on idle cores (work / threads, or the longest
 * chunk if longer: what a greedy split of the chunks achieves at best) */
static struct {
    int64_t jobs, work_ns, path_ns;
} pool_prof;

int pthcv_profiling(void) { return atomic_load_explicit(&prof.on, memory_order_relaxed); }

int64_t pthcv_thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

void pthcv_profile_job(int64_t work_ns, int64_t max_chunk_ns, int threads)
{
    int64_t even = work_ns / (threads > 0 ? threads : 1);
    pthread_mutex_lock(&prof.lock);
    pool_prof.jobs++;
    pool_prof.work_ns += work_ns;
    pool_prof.path_ns += even > max_chunk_ns ? even : max_chunk_ns;
    pthread_mutex_unlock(&prof.lock);
}

/* PTHCV_PROFILE_CLOCK=thread: the calling thread's CPU time instead of wall
 * time (with one thread every kernel runs on it: a busy machine's waits for
 * a core then do not count) */
static int64_t now_ns(void)
{
    static int clock_id = -1;
    if (clock_id < 0) {
        const char *e = getenv("PTHCV_PROFILE_CLOCK");
        clock_id = e && strcmp(e, "thread") == 0 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC;
    }
    struct timespec ts;
    clock_gettime(clock_id, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

pthcv_probe pthcv_probe_begin(const char *kind)
{
    pthcv_probe p = {0};
    if (!atomic_load_explicit(&prof.on, memory_order_relaxed)) return p;
    p.counted = 1;
    if (depth++ > 0) return p;
    p.active = 1;
    snprintf(p.kind, sizeof p.kind, "%s", kind);
    p.t0 = now_ns();
    return p;
}

void pthcv_probe_label(pthcv_probe *p, const char *fmt, ...)
{
    if (!p->active) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->kind, sizeof p->kind, fmt, ap);
    va_end(ap);
}

void pthcv_probe_end(pthcv_probe *p)
{
    if (p->counted) depth--;
    if (!p->active) return;
    int64_t dt = now_ns() - p->t0;
    pthread_mutex_lock(&prof.lock);
    int i = 0;
    while (i < prof.nrows && strcmp(prof.rows[i].kind, p->kind) != 0) i++;
    if (i == prof.nrows && prof.nrows < MAX_ROWS) {
        snprintf(prof.rows[i].kind, sizeof prof.rows[i].kind, "%s", p->kind);
        prof.rows[i].ns = prof.rows[i].calls = 0;
        prof.nrows++;
    }
    if (i < prof.nrows) prof.rows[i].ns += dt, prof.rows[i].calls++;
    pthread_mutex_unlock(&prof.lock);
}

void pthcv_profile_ops(int on)
{
    pthread_mutex_lock(&prof.lock);
    if (on) prof.nrows = 0, memset(&pool_prof, 0, sizeof pool_prof);
    atomic_store(&prof.on, on != 0);
    pthread_mutex_unlock(&prof.lock);
}

int64_t pthcv_profile_ops_report(char *buf, int64_t size)
{
    pthread_mutex_lock(&prof.lock);
    int64_t used = 0;
    for (int i = 0; i < prof.nrows; i++) {
        char line[PTHCV_PROBE_KIND + 64];
        int n = snprintf(line, sizeof line, "%s\t%.6f\t%lld\n", prof.rows[i].kind, prof.rows[i].ns * 1e-6,
                         (long long)prof.rows[i].calls);
        if (buf && used < size - 1) memcpy(buf + used, line, (size_t)(used + n < size ? n : size - 1 - used));
        used += n;
    }
    if (pool_prof.jobs) { /* two rows about the thread pool, in brackets */
        char line[160];
        int n = snprintf(
            line, sizeof line, "[pool jobs: chunks' cpu]\t%.6f\t%lld\n[pool jobs: on idle cores]\t%.6f\t%lld\n",
            pool_prof.work_ns * 1e-6, (long long)pool_prof.jobs, pool_prof.path_ns * 1e-6, (long long)pool_prof.jobs);
        if (buf && used < size - 1) memcpy(buf + used, line, (size_t)(used + n < size ? n : size - 1 - used));
        used += n;
    }
    if (buf && size > 0) buf[used < size ? used : size - 1] = '\0';
    pthread_mutex_unlock(&prof.lock);
    return used;
}
