/* bench_silu.c -- ns a value of the SiLU rows (csrc/kernels/silu_x86.h) and of
 * the scalar vm_silu and vm_silu_unfused (vmath.h: a CPU without FMA's), on 4096 values in L1 as one row and as the
 * AVX-512 GEMM store's 32-value rows, with the worst relative error against
 * x / (1 + exp(-x)) in double over those values (uniform in [-8, 8]).
 * x86-64; a row form the CPU lacks is skipped.
 *
 *   cc -O2 -ffp-contract=off -Icsrc/kernels -o build/bench_silu tools/bench_silu.c -lm \
 *       && build/bench_silu
 *
 * Each time is the best of 21 repetitions of 2000 rows, the row's copy from
 * its source included (docs/performance.md, "SiLU with multiply-adds"). */
#include "silu_x86.h"
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { N = 4096, ROWS = 2000, REPS = 21 };
static float src[N], dst[N];

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static void scalar_row(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = vm_silu(x[i]);
}

static void unfused_row(float *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] = vm_silu_unfused(x[i]);
}

/* row applied to the values in pieces of `width` */
static void report(const char *name, void (*row)(float *, int64_t), int width)
{
    double best = 1e9;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = now();
        for (int it = 0; it < ROWS; it++) {
            memcpy(dst, src, sizeof dst);
            for (int i = 0; i < N; i += width) row(dst + i, width);
        }
        double t = (now() - t0) / ROWS / N * 1e9;
        if (t < best) best = t;
    }
    double worst = 0;
    for (int i = 0; i < N; i++) {
        double x = src[i], want = x / (1 + exp(-x));
        double err = want != 0 ? fabs((dst[i] - want) / want) : fabs(dst[i]);
        if (err > worst) worst = err;
    }
    printf("%-14s rows of %4d  %.3f ns a value  worst relative error %.2e\n", name, width, best, worst);
}

int main(void)
{
    unsigned s = 1;
    for (int i = 0; i < N; i++) {
        s = s * 1664525u + 1013904223u;
        src[i] = (s >> 8) / 16777216.0f * 16 - 8;
    }
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) {
        report("avx512", silu_row_avx512, N);
        report("avx512", silu_row_avx512, 32);
    }
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) report("avx2+fma", silu_row_avx2, N);
    report("vm_silu", scalar_row, N);
    report("unfused", unfused_row, N);
    return 0;
}
