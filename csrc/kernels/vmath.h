/*
 * vmath.h -- float32 exp, sigmoid, SiLU and GELU written so that gcc vectorises them in the
 * loops of PTHCV_SIMD functions (kernels.h): plain arithmetic, comparisons
 * as selects, bit casts through a union, no libm call. A libm call per value
 * (expf, erff) keeps a loop scalar; a softmax over ViT-B/16's attention
 * scores makes 5.6 million of them per image.
 *
 * Every operation is an IEEE float operation in a fixed order (-ffp-contract=off,
 * Makefile: no FMA contraction, no reassociation), so each SIMD clone and the scalar
 * build give the same bits, and the scalar form of a function (used by
 * pthcv_act_scalar) equals its vectorised use. Accuracy against libm in
 * double, checked by spec/c/transformer_test.c over the whole float range:
 *
 *   vm_exp(x)        relative error below 2.5e-7 (2 ulp); 0 below -86.64
 *                    (where exp is under 2.6e-38), +inf above 88.72, NaN kept
 *   vm_sigmoid(x)    relative error below 3e-7; vm_silu(x) = x * vm_sigmoid(x)
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

/* SiLU as x * sigmoid(x), the form of its ONNX decomposition (Sigmoid, Mul):
 * a fused SiLU and the exported graph give the same bits. */
static inline float vm_silu(float x) { return x * vm_sigmoid(x); }

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
