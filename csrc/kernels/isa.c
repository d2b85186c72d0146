/*
 * isa.c -- which kernel family runs: CPU detection and the forced choice.
 *
 * x86-64: CPUID for AVX2+FMA(+F16C) and AVX-512 F/BW/DQ/VL, and XGETBV for
 * the operating system's consent (a CPU can have AVX-512 while the kernel
 * does not save the ZMM registers; using them then faults). AArch64: NEON is
 * part of the base architecture. Anything else: scalar only.
 *
 * Detection runs once (pthread_once). The environment variable PTHCV_ISA
 * gives the initial choice as pthcv_set_isa would ("auto" by default).
 */
#include "kernels.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

static pthread_once_t once = PTHREAD_ONCE_INIT;
static int has[PTHCV_ISA_COUNT]; /* indexed by PTHCV_ISA_* */
static int best = PTHCV_ISA_SCALAR;
static atomic_int current = -1; /* the family in use; -1 until detected */
static const char *names[PTHCV_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

#if defined(__x86_64__) || defined(__i386__)
static int has_f16c, has_vnni;
#endif
#if defined(__aarch64__)
static int has_dotprod;
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif
#if defined(__x86_64__) || defined(__i386__)

static uint64_t xgetbv0(void)
{
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((uint64_t)hi << 32) | lo;
}
#endif

static void detect_cpu(void)
{
    has[PTHCV_ISA_SCALAR] = 1;
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    if (__get_cpuid(1, &a, &b, &c, &d)) {
        int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
        has_f16c = (c >> 29) & 1;
        uint64_t xcr0 = osxsave ? xgetbv0() : 0;
        int os_ymm = (xcr0 & 0x6) == 0x6;   /* SSE and AVX state saved */
        int os_zmm = (xcr0 & 0xe6) == 0xe6; /* plus opmask, ZMM_Hi256, Hi16_ZMM */
        unsigned b7 = 0;
        if (__get_cpuid_count(7, 0, &a, &b7, &c, &d)) {
            int avx2 = (b7 >> 5) & 1;
            int f = (b7 >> 16) & 1, dq = (b7 >> 17) & 1, bw = (b7 >> 30) & 1, vl = (b7 >> 31) & 1;
            has[PTHCV_ISA_AVX2] = avx && avx2 && fma && os_ymm;
            has[PTHCV_ISA_AVX512] = has[PTHCV_ISA_AVX2] && f && dq && bw && vl && os_zmm;
            has_vnni = has[PTHCV_ISA_AVX512] && ((c >> 11) & 1); /* CPUID.7.0:ECX.AVX512_VNNI */
        }
    }
#elif defined(__aarch64__)
    has[PTHCV_ISA_NEON] = 1;
    has_dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
    /* A family counts only if its kernels were compiled in (see Makefile). */
#if !defined(__x86_64__)
    has[PTHCV_ISA_AVX2] = has[PTHCV_ISA_AVX512] = 0;
#endif
    for (int i = PTHCV_ISA_SCALAR; i <= PTHCV_ISA_NEON; i++)
        if (has[i] && (best == PTHCV_ISA_SCALAR || i == PTHCV_ISA_AVX512)) best = i;

    int start = best;
    const char *env = getenv("PTHCV_ISA");
    if (env && *env && strcmp(env, "auto") != 0)
        for (int i = 0; i < PTHCV_ISA_COUNT; i++)
            if (strcmp(env, names[i]) == 0 && has[i]) start = i;
    atomic_store(&current, start);
}

int pthcv_isa(void)
{
    int v = atomic_load_explicit(&current, memory_order_relaxed);
    if (v >= 0) return v;
    pthread_once(&once, detect_cpu);
    return atomic_load(&current);
}

int pthcv_cpu_has_f16c(void)
{
    pthread_once(&once, detect_cpu);
#if defined(__x86_64__) || defined(__i386__)
    return has_f16c;
#else
    return 0;
#endif
}

int pthcv_cpu_has_vnni(void)
{
    pthread_once(&once, detect_cpu);
#if defined(__x86_64__) || defined(__i386__)
    return has_vnni;
#else
    return 0;
#endif
}

int pthcv_cpu_has_dotprod(void)
{
    pthread_once(&once, detect_cpu);
#if defined(__aarch64__)
    return has_dotprod;
#else
    return 0;
#endif
}

int pthcv_isa_available(int isa)
{
    pthread_once(&once, detect_cpu);
    return isa >= 0 && isa < PTHCV_ISA_COUNT && has[isa];
}

const char *pthcv_isa_name(int isa) { return isa >= 0 && isa < PTHCV_ISA_COUNT ? names[isa] : "?"; }

int pthcv_set_isa(const char *isa)
{
    pthread_once(&once, detect_cpu);
    if (!isa) return pthcv_fail(PTHCV_ERR_ARG, "pthcv_set_isa: no name (expected scalar, avx2, avx512, neon or auto)");
    if (strcmp(isa, "auto") == 0) {
        atomic_store(&current, best);
        return PTHCV_OK;
    }
    for (int i = 0; i < PTHCV_ISA_COUNT; i++) {
        if (strcmp(isa, names[i]) != 0) continue;
        if (!has[i])
            return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                              "pthcv_set_isa: this CPU (or build) has no %s; available: %s%s%s%s", isa, "scalar",
                              has[PTHCV_ISA_AVX2] ? ", avx2" : "", has[PTHCV_ISA_AVX512] ? ", avx512" : "",
                              has[PTHCV_ISA_NEON] ? ", neon" : "");
        atomic_store(&current, i);
        return PTHCV_OK;
    }
    return pthcv_fail(PTHCV_ERR_ARG,
                      "pthcv_set_isa: unknown instruction set \"%s\" (expected scalar, avx2, avx512, neon or auto)",
                      isa);
}

const char *pthcv_cpu_info(void)
{
    static _Thread_local char buf[128];
    pthread_once(&once, detect_cpu);
#if defined(__x86_64__) || defined(__i386__)
    snprintf(buf, sizeof buf, "%s%s%s%s; using %s", has[PTHCV_ISA_AVX2] ? "avx2 fma" : "sse2", has_f16c ? " f16c" : "",
             has[PTHCV_ISA_AVX512] ? " avx512f avx512bw avx512dq avx512vl" : "", has_vnni ? " avx512_vnni" : "",
             names[pthcv_isa()]);
#elif defined(__aarch64__)
    snprintf(buf, sizeof buf, "neon%s; using %s", has_dotprod ? " dotprod" : "", names[pthcv_isa()]);
#else
    snprintf(buf, sizeof buf, "generic; using %s", names[pthcv_isa()]);
#endif
    return buf;
}
