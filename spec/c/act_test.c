/* act_test.c -- the hand-vectorised SiLU rows (csrc/kernels/silu_x86.h)
 * against vm_silu (vmath.h), value by value, to the bit.
 *
 *   act_test
 *
 * Inputs: every 4099th float bit pattern (the whole range: zeros,
 * denormals, the clamp bounds' neighbourhoods, infinities, NaNs), a dense
 * run over [-100, 100], and the clamp bounds themselves and their float
 * neighbours mixed into blocks of ordinary values (a block with one value
 * out of range goes the slow way). Each row function (AVX-512 and AVX2, on
 * a CPU that has them) and pthcv_act_row run on rows of 0 .. 70 values at
 * offsets 0 .. 3 (the blocks' and the masked tails' edges); NaN must stay
 * NaN, every other value must have vm_silu's bits. On other machines only
 * pthcv_act_row runs. Ends with "N passed, N failed"; exit 1 if anything
 * failed. */
#include "kernels/kernels.h"
#include "kernels/vmath.h"
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include "kernels/silu_x86.h"
#endif

static int passed, failed;

#include "check.h"

/* the first index where y differs from vm_silu(x), or -1 */
static int64_t first_wrong(const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float r = vm_silu(x[i]);
        if (isnan(r) ? !isnan(y[i]) : memcmp(&r, y + i, sizeof r) != 0) return i;
    }
    return -1;
}

typedef void (*row_fn)(float *, int64_t);

static void act_row_silu(float *x, int64_t n)
{
    pthcv_activation a = {.kind = PTHCV_ACT_SILU};
    pthcv_act_row(x, n, &a);
}

static void check_rows(const char *name, row_fn fn, const float *src, int64_t count)
{
    float *buf = malloc(sizeof(float) * (size_t)(count + 8));
    int64_t bad = -1;
    fn(memcpy(buf, src, sizeof(float) * (size_t)count), count); /* the whole input */
    bad = first_wrong(src, buf, count);
    CHECK(bad < 0, "%s: silu(%.9g) = %.9g, vm_silu's %.9g", name, bad < 0 ? 0.0 : src[bad], bad < 0 ? 0.0 : buf[bad],
          bad < 0 ? 0.0 : vm_silu(src[bad]));
    int wrong = 0;
    for (int64_t n = 0; n <= 70 && !wrong; n++)
        for (int off = 0; off < 4 && !wrong; off++)
            for (int64_t at = 0; at + off + n <= count && at < 2048 && !wrong; at += 97) {
                memcpy(buf + off, src + at, sizeof(float) * (size_t)n);
                buf[off + n] = 12345.0f; /* past the row: must stay */
                fn(buf + off, n);
                int64_t w = first_wrong(src + at, buf + off, n);
                if (w >= 0 || buf[off + n] != 12345.0f) {
                    wrong = 1;
                    CHECK(0, "%s: a row of %lld at offset %d: value %lld wrong, or one written past the row", name,
                          (long long)n, off, (long long)w);
                }
            }
    if (!wrong) CHECK(1, "%s: rows", name);
    free(buf);
}

int main(void)
{
    /* the inputs */
    const float edges[] = {-86.64f, 86.64f, -88.7228f, 88.7228f, 0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-40f};
    enum { EDGES = sizeof edges / sizeof edges[0], PLACES = 5 }; /* block positions 0, 7, .., 28 */
    int64_t count = 0, cap = (1ll << 32) / 4099 + 1 + 200000 + EDGES * 3 * PLACES * 32;
    float *src = malloc(sizeof(float) * (size_t)cap);
    for (uint64_t u = 0; u < (1ull << 32); u += 4099) {
        uint32_t b = (uint32_t)u;
        memcpy(src + count++, &b, sizeof b);
    }
    for (int64_t i = 0; i < 200000; i++) src[count++] = -100.0f + (float)i * 0.001f;
    for (int e = 0; e < EDGES; e++)
        for (int k = 0; k < 3; k++) {
            float v = k == 0 ? edges[e] : nextafterf(edges[e], k == 1 ? INFINITY : -INFINITY);
            /* alone in a block of ordinary values, at each position of a 32-value block */
            for (int pos = 0; pos < 7 * PLACES; pos += 7) {
                for (int j = 0; j < 32; j++) src[count + j] = (float)(j - 16) * 0.37f;
                src[count + pos] = v;
                count += 32;
            }
        }

    check_rows("pthcv_act_row", act_row_silu, src, count);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) check_rows("silu_row_avx512", silu_row_avx512, src, count);
    else printf("# skipped: silu_row_avx512 (not on this CPU)\n");
    if (__builtin_cpu_supports("avx2")) check_rows("silu_row_avx2", silu_row_avx2, src, count);
    else printf("# skipped: silu_row_avx2 (not on this CPU)\n");
#endif
    free(src);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
