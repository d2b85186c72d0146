/*
 * vmath.h -- float32 exp, sigmoid, SiLU and GELU written so that gcc vectorises them in the
 * loops of PTHCV_SIMD functions (kernels.h): plain arithmetic, comparisons
 * as selects, bit casts through a union, no libm call. A libm call per value
 * (expf, erff) keeps a loop scalar; a softmax over ViT-B/16's attention
 * scores makes 5.6 million of them per image.
 *
 * Every operation is an IEEE float operation in a fixed order (-ffp-contract=off,
 * Makefile: no FMA contraction, no reassociation; vm_silu's multiply-adds are
 * written out as vm_fmaf), so each SIMD clone and the scalar build give the
 * same bits, and the scalar form of a function (used by pthcv_act_scalar)
 * equals its vectorised use. Accuracy against libm in double, checked by
 * spec/c/transformer_test.c over the whole float range:
 *
 *   vm_exp(x)        relative error below 2.5e-7 (2 ulp); 0 below -86.64
 *                    (where exp is under 2.6e-38), +inf above 88.72, NaN kept
 *   vm_sigmoid(x)    relative error below 3e-7
 *   vm_silu(x)       x / (1 + exp(-x)), torch's form: relative error below
 *                    3e-7; -0 below -88.8, x above 17, NaN for NaN and -inf
 *                    (these two in spec/c/act_test.c, over [-88, 88]);
 *                    vm_silu_unfused(x), the same form and bounds
 *   vm_gelu(x)       x * Phi(x) (torch's GELU, approximate='none'):
 *                    error below 3e-7 * max(1, |x|)
 *   vm_gelu_tanh(x)  0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
 *                    (approximate='tanh'): the same bound
 */
#ifndef PTHCV_VMATH_H
#define PTHCV_VMATH_H

#include <math.h>
#include <stdint.h>

/* exp(x) = 2^k exp(r), k = round(x / ln 2), r = x - k ln 2 split in two
 * constants (Cody-Waite) so that k * C1 is exact, exp(r) by Cephes' expf
 * polynomial (|r| <= ln2 / 2). k is read from the bits of x/ln2 + 1.5*2^23
 * (the addition rounds to an integer); 2^k is built as 2^(k-1) * 2 so that
 * k = 128 (x near 88.72) stays representable on the way. */
static inline float vm_exp(float x)
{
    const float lo = -86.64f, hi = 88.7228f;
    float xc = x < lo ? lo : x;
    xc = xc > hi ? hi : xc; /* NaN passes through both */
    float m = xc * 1.44269504088896341f + 12582912.0f;
    float kf = m - 12582912.0f;
    union {
        float f;
        uint32_t u;
    } mb = {m}, s;
    s.u = (mb.u - 0x4B400000u + 126u) << 23; /* 2^(k-1): k in [-125, 128] */
    float r = xc - kf * 0.693359375f;
    r = r - kf * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * (r * r) + r + 1.0f;
    float y = p * s.f * 2.0f;
    y = x < lo ? 0.0f : y;
    return x > hi ? INFINITY : y;
}

/* sigmoid(x) = 1 / (1 + exp(-x)); 0 far below 0, 1 far above, NaN kept. */
static inline float vm_sigmoid(float x) { return 1.0f / (1.0f + vm_exp(-x)); }

/* 1 where the build's target has an FMA instruction (AArch64, x86 built
 * with -mfma, and any target on which gcc defines __FP_FAST_FMAF) */
#if defined(__FMA__) || defined(__aarch64__) || defined(__FP_FAST_FMAF)
#define VM_FMA_IN_HARDWARE 1
#else
#define VM_FMA_IN_HARDWARE 0
#endif

/* a * b + c rounded once, as an FMA instruction computes it. Where the
 * build has FMA (VM_FMA_IN_HARDWARE) that instruction; elsewhere (x86-64's
 * baseline build) the exact product in double and the sum rounded once in
 * double, then to float. That is the correctly rounded result unless the
 * double sum lies on a float rounding boundary; then the sum is rounded to
 * odd instead, which gives the same bits: a 53-bit sum rounded to odd, then
 * to 24 bits, rounds as the exact sum would (53 >= 24 + 2). Plain
 * arithmetic, no libm call (libm's fmaf on a CPU without FMA is tens of
 * ns). A vm_silu so emulated takes about 13 ns on x86, against 5 for
 * vm_silu_unfused: the rows use the FMA instructions themselves
 * (silu_x86.h), and a CPU without them vm_silu_unfused (activation.c). */
static inline float vm_fmaf(float a, float b, float c)
{
#if VM_FMA_IN_HARDWARE
    return __builtin_fmaf(a, b, c);
#else
    double p = (double)a * (double)b; /* exact: 24 + 24 bits */
    double s = p + (double)c;
    union {
        double d;
        uint64_t u;
    } sb = {s};
    /* s rounds to float as the exact sum would unless it lies halfway
     * between two floats (its last 29 bits 1 and 28 zeros) or below float's
     * normal range, where the halfway points lie elsewhere: nearly always */
    if ((sb.u & 0x1fffffffu) != 0x10000000u && fabs(s) >= 0x1p-126) return (float)s;
    double v = s - p;
    double e = (p - (s - v)) + ((double)c - v); /* s + e == p + c exactly (TwoSum) */
    union {
        double d;
        uint64_t u;
    } eb = {e};
    /* to odd: an inexact sum with an even last bit moves one ulp toward e */
    uint64_t step = (e != 0.0 && (sb.u & 1) == 0) ? 1 : 0;
    sb.u = ((sb.u ^ eb.u) >> 63) ? sb.u - step : sb.u + step;
    return (float)sb.d;
#endif
}

/* SiLU as torch computes it, x / (1 + exp(-x)), with exp(-x) as vm_exp's
 * steps but fused: -x clamped to [-86, 89] (exp(-86) is below 2^-24, so
 * 1 + e is 1 and the result x; past 88.72 e is +inf and the result -0, or
 * NaN for -inf as torch gives), k = round(-x / ln 2), Cody-Waite and the
 * polynomial as multiply-adds, e = p * 2^(k-1) * 2 (k in [-124, 128]: every
 * step exact but the last, which overflows to +inf where exp does). One
 * division, no reciprocal estimate: each step is exact or one IEEE rounding,
 * so silu_x86.h's AVX-512 and AVX2 forms (_mm512_scalef_ps for the power
 * of 2) give these bits on every CPU with FMA, and the GEMM's fused store
 * needs no range check. A CPU without FMA uses vm_silu_unfused
 * (activation.c). */
static inline float vm_silu(float x)
{
    float nx = -x;
    nx = nx < -86.0f ? -86.0f : nx;
    nx = nx > 89.0f ? 89.0f : nx;                      /* NaN passes both; x / NaN is NaN */
    float m = nx * 1.44269504088896341f + 12582912.0f; /* rounds to k + 1.5 * 2^23 */
    float kf = m - 12582912.0f;
    union {
        float f;
        uint32_t u;
    } mb = {m}, s;
    s.u = (mb.u - 0x4B400000u + 126u) << 23; /* 2^(k-1) */
    float r = vm_fmaf(-kf, 0.693359375f, nx);
    r = vm_fmaf(-kf, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = vm_fmaf(p, r, 1.3981999507e-3f);
    p = vm_fmaf(p, r, 8.3334519073e-3f);
    p = vm_fmaf(p, r, 4.1665795894e-2f);
    p = vm_fmaf(p, r, 1.6666665459e-1f);
    p = vm_fmaf(p, r, 5.0000001201e-1f);
    p = vm_fmaf(p, r * r, r + 1.0f);
    return x / (1.0f + p * s.f * 2.0f);
}

/* SiLU where the CPU has no FMA (activation.c): the same form,
 * x / (1 + exp(-x)), through vm_exp's separate multiplies and adds; the
 * same edges and bound as vm_silu, but not its bits. */
static inline float vm_silu_unfused(float x) { return x / (1.0f + vm_exp(-x)); }

/* Half of erfc(|z|) for z = x / sqrt(2), from Numerical Recipes' erfcc
 * (a Chebyshev fit of erfc(z) exp(z^2), fractional error under 1.2e-7). */
static inline float vm_half_erfc_abs(float x)
{
    float z = (x < 0.0f ? -x : x) * 0.70710678118654752f;
    float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t + -0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t + -1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t + -0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t + -1.26551223f;
    return 0.5f * t * vm_exp(p - z * z);
}

/* GELU(x) = x Phi(x) = x (1 - erfc(x/sqrt2)/2) for x >= 0, x erfc(-x/sqrt2)/2
 * below: no cancellation on either side (torch's 1 + erf(x/sqrt2) loses the
 * relative precision of small negative results; the absolute error is the
 * same). */
static inline float vm_gelu(float x)
{
    float h = vm_half_erfc_abs(x);
    return x * (x < 0.0f ? h : 1.0f - h);
}

/* 0.5 (1 + tanh(u)) = 1 / (1 + exp(-2u)): one exp, no tanh. */
static inline float vm_gelu_tanh(float x)
{
    float u = 0.79788456080286536f * (x + 0.044715f * x * x * x);
    return x / (1.0f + vm_exp(-2.0f * u));
}

#endif
