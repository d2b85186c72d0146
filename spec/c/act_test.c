/* act_test.c -- the hand-vectorised SiLU rows (csrc/kernels/silu_x86.h)
 * against vm_silu (vmath.h), value by value, to the bit.
 *
 *   act_test
 *
 * Inputs: every 4099th float bit pattern (the whole range: zeros,
 * denormals, the clamp bounds' neighbourhoods, infinities, NaNs), a dense
 * run over [-100, 100], and the clamp bounds, exp's overflow edge and 1 + e's
 * rounding edge with their float neighbours, each at several places in
 * blocks of ordinary values. Each row function (AVX-512, and AVX2 with FMA,
 * on a CPU that has them) and pthcv_act_row run on rows of 0 .. 70 values
 * at offsets 0 .. 3 (the blocks' and the masked tails' edges); NaN must stay
 * NaN, every other value must have this CPU's SiLU bits: vm_silu's where it
 * has FMA, vm_silu_unfused's where not (pthcv_silu_fused; make ctest-neon
 * runs this test on such a CPU under qemu). pthcv_act_scalar, value by
 * value, too. On other machines only pthcv_act_row and pthcv_act_scalar run.
 *
 * vm_silu's vm_fmaf is checked against libm's fmaf (correctly rounded on
 * every CPU) on products and sums of every scale and on float rounding
 * boundaries, and vm_silu and vm_silu_unfused against torch's values at
 * their edges and against double over [-88, 88]. Ends with "N passed, N
 * failed"; exit 1 if anything failed. */
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

/* this CPU's SiLU (activation.c): vm_silu where it has FMA */
static float silu_here(float x) { return pthcv_silu_fused() ? vm_silu(x) : vm_silu_unfused(x); }

/* the first index where y differs from silu_here(x), or -1 */
static int64_t first_wrong(const float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        float r = silu_here(x[i]);
        if (isnan(r) ? !isnan(y[i]) : memcmp(&r, y + i, sizeof r) != 0) return i;
    }
    return -1;
}

typedef void (*row_fn)(float *, int64_t);

/* pthcv_act_scalar value by value: the single values the kernels take */
static void act_scalar_silu(float *x, int64_t n)
{
    pthcv_activation a = {.kind = PTHCV_ACT_SILU};
    for (int64_t i = 0; i < n; i++) x[i] = pthcv_act_scalar(x[i], &a);
}

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
    CHECK(bad < 0, "%s: silu(%.9g) = %.9g, this CPU's %.9g", name, bad < 0 ? 0.0 : src[bad], bad < 0 ? 0.0 : buf[bad],
          bad < 0 ? 0.0 : silu_here(src[bad]));
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

/* vm_fmaf against fmaf: the double form (rounding to odd) where the build
 * has no FMA, the instruction where it has */
static void check_fmaf(void)
{
    uint64_t st = 0x9E3779B97F4A7C15ull;
    int64_t bad = -1, tried = 0;
    float ba = 0, bb = 0, bc = 0;
    for (int64_t i = 0; i < 4000000 && bad < 0; i++, tried++) {
        float v[3];
        for (int j = 0; j < 3; j++) {
            st ^= st << 13, st ^= st >> 7, st ^= st << 17;
            /* sign, a mantissa, an exponent within 2^-40 .. 2^40 so products and sums cancel and carry */
            uint32_t b = (uint32_t)(st & 0x807fffffu) | (uint32_t)(87 + (st >> 40) % 80) << 23;
            memcpy(v + j, &b, sizeof b);
        }
        if (i % 4 == 1) v[2] = -v[0] * v[1]; /* near-cancellation */
        if (i % 4 == 3) {                    /* any bits: denormal and overflowing results, infinities, NaNs */
            uint32_t b = (uint32_t)(st >> 32);
            memcpy(v + (st >> 5) % 3, &b, sizeof b);
        }
        float r = vm_fmaf(v[0], v[1], v[2]), want = fmaf(v[0], v[1], v[2]);
        if (isnan(want) ? !isnan(r) : memcmp(&r, &want, sizeof r) != 0) bad = i, ba = v[0], bb = v[1], bc = v[2];
    }
    CHECK(bad < 0, "vm_fmaf(%.9g, %.9g, %.9g) = %.9g, fmaf's %.9g (%lld tried)", ba, bb, bc, vm_fmaf(ba, bb, bc),
          fmaf(ba, bb, bc), (long long)tried);
    /* products halfway between two floats, plus nothing (a tie, to even),
     * or plus or minus less than the double sum's last bit: there the sum
     * rounded once in double lies on the boundary and only the rounding to
     * odd is right. (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24, at two scales, and
     * 3 * 2^-150, halfway between two denormals. */
    const float a2[] = {1.0f + 0x1p-12f, 0x1p50f * (1.0f + 0x1p-12f), 3.0f * 0x1p-75f};
    const float b2[] = {1.0f + 0x1p-12f, 0x1p50f * (1.0f + 0x1p-12f), 0x1p-75f};
    const float c2[][5] = {{0.0f, 0x1p-80f, 0x1p-140f, 0x1p-149f, 1.0f},
                           {0.0f, 0x1p40f, 0x1p-20f, 0x1p-149f, 0x1p100f},
                           {0.0f, 0x1p-149f, 0x1p-148f, 0x1p-126f, 1.0f}};
    int wrong = 0;
    for (int i = 0; i < 3 && !wrong; i++)
        for (int j = 0; j < 5 * 4 && !wrong; j++) {
            float a = j & 1 ? -a2[i] : a2[i], c = j & 2 ? -c2[i][j / 4] : c2[i][j / 4];
            float r = vm_fmaf(a, b2[i], c), want = fmaf(a, b2[i], c);
            if (memcmp(&r, &want, sizeof r) != 0) {
                wrong = 1;
                CHECK(0, "vm_fmaf(%a, %a, %a) = %a, fmaf's %a", a, b2[i], c, r, want);
            }
        }
    if (!wrong) CHECK(1, "vm_fmaf on float rounding boundaries");
}

/* torch.nn.functional.silu's float32 values at the clamp and rounding
 * edges, from torch 1.13 (x / (1 + exp(-x))) */
static void check_edges_of(const char *name, float (*silu)(float))
{
    CHECK(silu(100.0f) == 100.0f && silu(16.7f) == 16.7f, "%s(x) is x above 16.6: %.9g", name, silu(16.7f));
    float m100 = silu(-100.0f), m90 = silu(-89.0f);
    CHECK(m100 == 0.0f && signbit(m100) && m90 == 0.0f && signbit(m90), "%s(-100), %s(-89) are -0: %g %g", name, name,
          m100, m90);
    CHECK(isnan(silu(-INFINITY)) && silu(INFINITY) == INFINITY && isnan(silu(NAN)), "%s(-inf, inf, nan)", name);
    double r = -88.0 / (1.0 + exp(88.0));
    CHECK(fabs(silu(-88.0f) / r - 1) < 3e-7, "%s(-88) = %.9g, want %.9g", name, silu(-88.0f), r);
    double worst = 0, wx = 0;
    for (float x = -88.0f; x < 88.0f; x += fmaxf(fabsf(x) * 3e-6f, 1e-6f)) {
        double want = (double)x / (1.0 + exp(-(double)x)), e = fabs(silu(x) - want) / fabs(want);
        if (want != 0 && e > worst) worst = e, wx = x;
    }
    CHECK(worst < 3e-7, "%s: relative error %.3g at %.9g", name, worst, wx);
}

static float silu_fused(float x) { return vm_silu(x); }
static float silu_unfused(float x) { return vm_silu_unfused(x); }

static void check_edges(void)
{
    check_edges_of("vm_silu", silu_fused);
    check_edges_of("vm_silu_unfused", silu_unfused);
}

int main(void)
{
    check_fmaf();
    check_edges();

    /* the inputs */
    const float edges[] = {-86.0f, 86.0f, -89.0f, 89.0f,    -88.7228f, 88.7228f, -16.6f,
                           16.6f,  0.0f,  -0.0f,  INFINITY, -INFINITY, NAN,      1e-40f};
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
    check_rows("pthcv_act_scalar", act_scalar_silu, src, count);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) check_rows("silu_row_avx512", silu_row_avx512, src, count);
    else printf("# skipped: silu_row_avx512 (not on this CPU)\n");
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
        check_rows("silu_row_avx2", silu_row_avx2, src, count);
    else printf("# skipped: silu_row_avx2 (not on this CPU)\n");
#endif
    free(src);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
