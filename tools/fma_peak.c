/* fma_peak.c -- the machine's float32 FMA peak, measured: a register-only
 * loop of independent FMAs (12 accumulators, no loads or stores), run by N
 * threads at once; prints the best GFLOP/s over a few repetitions.
 *
 *   cc -O2 -pthread -o build/fma_peak tools/fma_peak.c && build/fma_peak [threads]
 *
 * x86-64: 256-bit vfmadd231ps (AVX2+FMA; AVX-512 is not used: on the
 * project machine it does not exist, and pthcv's kernels here are AVX2);
 * AArch64: 128-bit fmla. (tools/bench_models.py builds and runs it.) */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ITERS = 20000000 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#if defined(__x86_64__)
enum { FLOPS_PER_ITER = 12 * 8 * 2 };
static void loop(long n)
{
    __asm__ volatile(
        "vxorps %%ymm0,%%ymm0,%%ymm0\n vmovaps %%ymm0,%%ymm1\n vmovaps %%ymm0,%%ymm2\n vmovaps %%ymm0,%%ymm3\n"
        "vmovaps %%ymm0,%%ymm4\n vmovaps %%ymm0,%%ymm5\n vmovaps %%ymm0,%%ymm6\n vmovaps %%ymm0,%%ymm7\n"
        "vmovaps %%ymm0,%%ymm8\n vmovaps %%ymm0,%%ymm9\n vmovaps %%ymm0,%%ymm10\n vmovaps %%ymm0,%%ymm11\n"
        "vmovaps %%ymm0,%%ymm12\n vmovaps %%ymm0,%%ymm13\n"
        "1:\n"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm0\n vfmadd231ps %%ymm12,%%ymm13,%%ymm1\n vfmadd231ps %%ymm12,%%ymm13,%%ymm2\n"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm3\n vfmadd231ps %%ymm12,%%ymm13,%%ymm4\n vfmadd231ps %%ymm12,%%ymm13,%%ymm5\n"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm6\n vfmadd231ps %%ymm12,%%ymm13,%%ymm7\n vfmadd231ps %%ymm12,%%ymm13,%%ymm8\n"
        "vfmadd231ps %%ymm12,%%ymm13,%%ymm9\n vfmadd231ps %%ymm12,%%ymm13,%%ymm10\n vfmadd231ps %%ymm12,%%ymm13,%%ymm11\n"
        "dec %0\n jnz 1b\n vzeroupper\n"
        : "+r"(n)::"xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10", "xmm11",
          "xmm12", "xmm13", "cc");
}
#elif defined(__aarch64__)
enum { FLOPS_PER_ITER = 12 * 4 * 2 };
static void loop(long n)
{
    __asm__ volatile(
        "movi v0.4s, #0\n mov v1.16b, v0.16b\n mov v2.16b, v0.16b\n mov v3.16b, v0.16b\n mov v4.16b, v0.16b\n"
        "mov v5.16b, v0.16b\n mov v6.16b, v0.16b\n mov v7.16b, v0.16b\n mov v8.16b, v0.16b\n mov v9.16b, v0.16b\n"
        "mov v10.16b, v0.16b\n mov v11.16b, v0.16b\n mov v12.16b, v0.16b\n mov v13.16b, v0.16b\n"
        "1:\n"
        "fmla v0.4s, v12.4s, v13.4s\n fmla v1.4s, v12.4s, v13.4s\n fmla v2.4s, v12.4s, v13.4s\n"
        "fmla v3.4s, v12.4s, v13.4s\n fmla v4.4s, v12.4s, v13.4s\n fmla v5.4s, v12.4s, v13.4s\n"
        "fmla v6.4s, v12.4s, v13.4s\n fmla v7.4s, v12.4s, v13.4s\n fmla v8.4s, v12.4s, v13.4s\n"
        "fmla v9.4s, v12.4s, v13.4s\n fmla v10.4s, v12.4s, v13.4s\n fmla v11.4s, v12.4s, v13.4s\n"
        "subs %0, %0, #1\n b.ne 1b\n"
        : "+r"(n)::"v0", "v1", "v2", "v3", "v4", "v5", "v6", "v7", "v8", "v9", "v10", "v11", "v12", "v13", "cc");
}
#else
#error "fma_peak: x86-64 or AArch64 only"
#endif

static void *run(void *arg)
{
    loop(ITERS);
    return arg;
}

int main(int argc, char **argv)
{
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (threads < 1 || threads > 256) threads = 1;
    pthread_t t[256];
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now();
        for (int i = 1; i < threads; i++) pthread_create(&t[i], NULL, run, NULL);
        run(NULL);
        for (int i = 1; i < threads; i++) pthread_join(t[i], NULL);
        double g = (double)ITERS * FLOPS_PER_ITER * threads / (now() - t0) * 1e-9;
        if (g > best) best = g;
    }
    printf("threads=%d gflops=%.1f\n", threads, best);
    return 0;
}
