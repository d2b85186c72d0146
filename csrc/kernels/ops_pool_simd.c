/*
 * ops_pool_simd.c -- the inner loop of 2-d pooling (ops_pool.c) in AVX-512
 * and AVX2: a run of n outputs of one output row whose windows lie inside
 * the input in the width direction (no bounds checks), one output per lane.
 *
 * Contract of ops_pool_run_simd (ops.h): output i reads, for each of the
 * `rows` rows r (row r starts at base + r * row_step) and each of the kw
 * taps kx, the element at i * sw + kx * dw, in that order (row by row, left
 * to right: torch's order), and
 *  - max: keeps the first of equal values and takes a NaN (the last one) as
 *    torch's `(v > m) || isnan(v)` does; -inf when rows is 0. maxps alone
 *    is that rule but for a NaN tap (it keeps the accumulator), so a step
 *    also sums its taps, and a step whose sum is NaN (a NaN tap, or inf and
 *    -inf) runs again with the NaN rule;
 *  - sum: adds in that order from 0.0f, then divides by `divisor`;
 * so every lane computes the scalar loop's bits. Loads are masked: nothing
 * past a window's last tap is read. Returns 0 when no SIMD version runs
 * here (another architecture, a build with PTHCV_NO_CLONES, or a CPU
 * without AVX2); the caller then runs its scalar loop.
 *
 * The functions carry their instruction set as a target attribute (not the
 * Makefile's per-file flags) so that the op tests, which compile ops_*.c in
 * one command, build them too; the CPU is asked once, as for PTHCV_SIMD's
 * clones, and PTHCV_ISA=avx2 or scalar (isa.c's variable) picks a lower
 * family, so that the op tests run each (Makefile, ctest).
 */
#include "ops.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(PTHCV_NO_CLONES)
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define AVX512 __attribute__((target("avx512f")))
#define AVX2 __attribute__((target("avx2,fma")))

/* ---- AVX-512: 16 outputs a step ------------------------------------------ */

/* the elements p[j * sw] for the lanes j set in `lanes` (cnt of them, the low ones) */
AVX512 static inline __m512 load16(const float *p, int64_t sw, __mmask16 lanes, int cnt)
{
    if (sw == 1) return cnt == 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes, p);
    if (sw == 2 && cnt == 16) { /* p[0..15] and p[15..30]: nothing past p[30] */
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 17, 19, 21, 23, 25, 27, 29, 31);
        return _mm512_permutex2var_ps(_mm512_loadu_ps(p), even, _mm512_loadu_ps(p + 15));
    }
    if (sw == 2) {
        uint32_t m32 = (uint32_t)((1ull << (2 * cnt - 1)) - 1); /* elements 0 .. 2 (cnt - 1) */
        __m512 a = _mm512_maskz_loadu_ps((__mmask16)m32, p), b = _mm512_maskz_loadu_ps((__mmask16)(m32 >> 16), p + 16);
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        return _mm512_permutex2var_ps(a, even, b);
    }
    __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                     _mm512_set1_epi32((int)sw));
    return _mm512_mask_i32gather_ps(_mm512_setzero_ps(), lanes, idx, p, 4);
}

/* One step of `cnt` outputs; inlined with constant sw / is_max / cnt where
 * the caller has them, so the loads and the update are chosen at compile time. */
AVX512 static inline __attribute__((always_inline)) void step16(float *y, const float *row, int64_t rows,
                                                                int64_t row_step, int64_t kw, int64_t sw, int64_t dw,
                                                                int is_max, float divisor, int cnt)
{
    __mmask16 lanes = (__mmask16)((1u << cnt) - 1);
    __m512 acc = _mm512_set1_ps(is_max ? -INFINITY : 0.0f), sum = _mm512_setzero_ps();
    const float *row0 = row;
    for (int64_t r = 0; r < rows; r++, row += row_step)
#pragma GCC unroll 4
        for (int64_t kx = 0; kx < kw; kx++) {
            __m512 v = load16(row + kx * dw, sw, lanes, cnt);
            if (is_max) acc = _mm512_max_ps(v, acc); /* (v > acc) ? v : acc */
            else acc = _mm512_add_ps(acc, v);
            if (is_max) sum = _mm512_add_ps(sum, v); /* NaN when a tap is (or inf - inf) */
        }
    if (is_max && _mm512_mask_cmp_ps_mask(lanes, sum, sum, _CMP_UNORD_Q)) { /* again, taking NaNs */
        row = row0;
        acc = _mm512_set1_ps(-INFINITY);
        for (int64_t r = 0; r < rows; r++, row += row_step)
            for (int64_t kx = 0; kx < kw; kx++) {
                __m512 v = load16(row + kx * dw, sw, lanes, cnt);
                acc = _mm512_mask_mov_ps(_mm512_max_ps(v, acc), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), v);
            }
    }
    if (!is_max) acc = _mm512_div_ps(acc, _mm512_set1_ps(divisor));
    if (cnt == 16) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, lanes, acc);
}

AVX512 static inline __attribute__((always_inline)) void run16(float *y, const float *base, int64_t n, int64_t rows,
                                                               int64_t row_step, int64_t kw, int64_t sw, int64_t dw,
                                                               int is_max, float divisor)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) step16(y + i, base + i * sw, rows, row_step, kw, sw, dw, is_max, divisor, 16);
    if (i < n) step16(y + i, base + i * sw, rows, row_step, kw, sw, dw, is_max, divisor, (int)(n - i));
}

AVX512 static void run_avx512(float *y, const float *base, int64_t n, int64_t rows, int64_t row_step, int64_t kw,
                              int64_t sw, int64_t dw, int is_max, float divisor)
{
    if (is_max && sw == 2 && kw == 3 && dw == 1) run16(y, base, n, rows, row_step, 3, 2, 1, 1, divisor);
    else if (is_max && sw == 1 && kw == 3 && dw == 1) run16(y, base, n, rows, row_step, 3, 1, 1, 1, divisor);
    else if (is_max && sw == 2) run16(y, base, n, rows, row_step, kw, 2, dw, 1, divisor);
    else if (is_max && sw == 1) run16(y, base, n, rows, row_step, kw, 1, dw, 1, divisor);
    else if (is_max) run16(y, base, n, rows, row_step, kw, sw, dw, 1, divisor);
    else if (sw == 2) run16(y, base, n, rows, row_step, kw, 2, dw, 0, divisor);
    else if (sw == 1) run16(y, base, n, rows, row_step, kw, 1, dw, 0, divisor);
    else run16(y, base, n, rows, row_step, kw, sw, dw, 0, divisor);
}

/* ---- AVX2: 8 outputs a step ------------------------------------------------ */

AVX2 static inline __m256i lanes_below(int cnt)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(cnt), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* The elements p[j * sw] for the lanes j below cnt. For sw == 2 they come
 * in the order of lanes 0 1 4 5 | 2 3 6 7 (two in-lane shuffles give that
 * without a cross-lane step), which lane_order puts right once per step. */
AVX2 static inline __m256 load8(const float *p, int64_t sw, __m256i lanes, int cnt)
{
    if (sw == 1) return cnt == 8 ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lanes);
    if (sw == 2 && cnt == 8) /* p[0..7] and p[7..14]: nothing past p[14]; p0 p2 p8 p10 | p4 p6 p12 p14 */
        return _mm256_shuffle_ps(_mm256_loadu_ps(p), _mm256_loadu_ps(p + 7), 0xd8);
    if (sw == 2) { /* elements 0 .. 2 (cnt - 1) of p, then the even ones: a0 a2 b0 b2 | a4 a6 b4 b6 */
        __m256 a = _mm256_maskload_ps(p, lanes_below(2 * cnt - 1));
        __m256 b = _mm256_maskload_ps(p + 8, lanes_below(2 * cnt - 9));
        return _mm256_shuffle_ps(a, b, 0x88);
    }
    __m256i idx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)sw));
    return _mm256_mask_i32gather_ps(_mm256_setzero_ps(), p, idx, _mm256_castsi256_ps(lanes), 4);
}

AVX2 static inline __m256 lane_order(__m256 v, int64_t sw)
{
    return sw == 2 ? _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(v), 0xd8)) : v;
}

AVX2 static inline __attribute__((always_inline)) void step8(float *y, const float *row, int64_t rows,
                                                             int64_t row_step, int64_t kw, int64_t sw, int64_t dw,
                                                             int is_max, float divisor, int cnt)
{
    __m256i lanes = lanes_below(cnt);
    __m256 acc = _mm256_set1_ps(is_max ? -INFINITY : 0.0f), sum = _mm256_setzero_ps();
    const float *row0 = row;
    for (int64_t r = 0; r < rows; r++, row += row_step)
#pragma GCC unroll 4
        for (int64_t kx = 0; kx < kw; kx++) {
            __m256 v = load8(row + kx * dw, sw, lanes, cnt);
            if (is_max) acc = _mm256_max_ps(v, acc); /* (v > acc) ? v : acc */
            else acc = _mm256_add_ps(acc, v);
            if (is_max) sum = _mm256_add_ps(sum, v); /* NaN when a tap is (or inf - inf) */
        }
    sum = lane_order(sum, sw);
    if (is_max && (_mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(sum, sum, _CMP_UNORD_Q), _mm256_castsi256_ps(lanes))))) {
        row = row0; /* again, taking NaNs */
        acc = _mm256_set1_ps(-INFINITY);
        for (int64_t r = 0; r < rows; r++, row += row_step)
            for (int64_t kx = 0; kx < kw; kx++) {
                __m256 v = load8(row + kx * dw, sw, lanes, cnt);
                acc = _mm256_blendv_ps(_mm256_max_ps(v, acc), v, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
            }
    }
    acc = lane_order(acc, sw);
    if (!is_max) acc = _mm256_div_ps(acc, _mm256_set1_ps(divisor));
    if (cnt == 8) _mm256_storeu_ps(y, acc);
    else _mm256_maskstore_ps(y, lanes, acc);
}

AVX2 static inline __attribute__((always_inline)) void run8(float *y, const float *base, int64_t n, int64_t rows,
                                                            int64_t row_step, int64_t kw, int64_t sw, int64_t dw,
                                                            int is_max, float divisor)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) step8(y + i, base + i * sw, rows, row_step, kw, sw, dw, is_max, divisor, 8);
    if (i < n) step8(y + i, base + i * sw, rows, row_step, kw, sw, dw, is_max, divisor, (int)(n - i));
}

AVX2 static void run_avx2(float *y, const float *base, int64_t n, int64_t rows, int64_t row_step, int64_t kw,
                          int64_t sw, int64_t dw, int is_max, float divisor)
{
    if (is_max && sw == 2 && kw == 3 && dw == 1) run8(y, base, n, rows, row_step, 3, 2, 1, 1, divisor);
    else if (is_max && sw == 1 && kw == 3 && dw == 1) run8(y, base, n, rows, row_step, 3, 1, 1, 1, divisor);
    else if (is_max && sw == 2) run8(y, base, n, rows, row_step, kw, 2, dw, 1, divisor);
    else if (is_max && sw == 1) run8(y, base, n, rows, row_step, kw, 1, dw, 1, divisor);
    else if (is_max) run8(y, base, n, rows, row_step, kw, sw, dw, 1, divisor);
    else if (sw == 2) run8(y, base, n, rows, row_step, kw, 2, dw, 0, divisor);
    else if (sw == 1) run8(y, base, n, rows, row_step, kw, 1, dw, 0, divisor);
    else run8(y, base, n, rows, row_step, kw, sw, dw, 0, divisor);
}

int ops_pool_run_simd(float *y, const float *base, int64_t n, int64_t rows, int64_t row_step, int64_t kw, int64_t sw,
                      int64_t dw, int is_max, float divisor)
{
    static atomic_int known = -1; /* 2: AVX-512, 1: AVX2, 0: neither; every thread finds the same */
    int level = atomic_load_explicit(&known, memory_order_relaxed);
    if (level < 0) {
        __builtin_cpu_init();
        level = __builtin_cpu_supports("avx512f") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
        const char *env = getenv("PTHCV_ISA"); /* a lower family on request, as isa.c's */
        if (env && strcmp(env, "avx2") == 0 && level > 1) level = 1;
        if (env && strcmp(env, "scalar") == 0) level = 0;
        atomic_store_explicit(&known, level, memory_order_relaxed);
    }
    if (level == 2) run_avx512(y, base, n, rows, row_step, kw, sw, dw, is_max, divisor);
    else if (level == 1) run_avx2(y, base, n, rows, row_step, kw, sw, dw, is_max, divisor);
    return level > 0;
}

#else

int ops_pool_run_simd(float *y, const float *base, int64_t n, int64_t rows, int64_t row_step, int64_t kw, int64_t sw,
                      int64_t dw, int is_max, float divisor)
{
    return 0;
}

#endif
