/*
 * activation.c -- the one definition of every fusable activation
 * (pthcv_activation), shared by the convolution and linear kernels (fused
 * into their store) and by the elementwise ops. Formulas follow PyTorch's
 * eval-mode definitions in float32; NaN propagates as in torch.
 */
#include "kernels.h"
#include "vmath.h"
#include <math.h>
/* hand-vectorised SiLU rows where the SIMD clones are built (x86-64) */
#if defined(__x86_64__) && !defined(PTHCV_NO_CLONES)
#define PTHCV_SILU_X86 1
#include "silu_x86.h"
#endif

/* SiLU's bits depend on the CPU, not on the path: where it has FMA every
 * path gives vm_silu's (the SIMD rows of silu_x86.h, and the scalar form,
 * which the build may have to emulate: only pthcv_act_scalar's callers pay
 * that); without FMA every path gives vm_silu_unfused's, at the cost of the
 * separate multiplies and adds. Each value within 3e-7 of torch's. */
int pthcv_silu_fused(void)
{
#if VM_FMA_IN_HARDWARE
    return 1;
#elif defined(__x86_64__) && defined(__GNUC__) /* PTHCV_NO_CLONES's build too: its bits are the clones' */
    return __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

float pthcv_act_scalar(float v, const pthcv_activation *a)
{
    switch (a->kind) {
    case PTHCV_ACT_NONE: return v;
    case PTHCV_ACT_RELU: return v < 0.0f ? 0.0f : v;
    case PTHCV_ACT_RELU6: return v < 0.0f ? 0.0f : v > 6.0f ? 6.0f : v;
    case PTHCV_ACT_LEAKY_RELU: return v > 0.0f ? v : v * a->alpha;
    case PTHCV_ACT_ELU: return v > 0.0f ? v : a->alpha * expm1f(v);
    case PTHCV_ACT_SIGMOID: return vm_sigmoid(v); /* vmath.h: vectorised in pthcv_act_row */
    case PTHCV_ACT_TANH: return tanhf(v);
    case PTHCV_ACT_SILU: /* x / (1 + exp(-x)), torch's form */
        return pthcv_silu_fused() ? vm_silu(v) : vm_silu_unfused(v);
    case PTHCV_ACT_HARDSWISH: {
        float r = v + 3.0f;
        r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
        return v * r / 6.0f;
    }
    case PTHCV_ACT_HARDSIGMOID: {
        float r = v + 3.0f;
        r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
        return r / 6.0f;
    }
    case PTHCV_ACT_GELU: return vm_gelu(v); /* vmath.h: vectorised in pthcv_act_row */
    case PTHCV_ACT_GELU_TANH: return vm_gelu_tanh(v);
    case PTHCV_ACT_CLAMP: return v < a->alpha ? a->alpha : v > a->beta ? a->beta : v;
    default: return v;
    }
}

int pthcv_act_valid(const pthcv_activation *a)
{
    return a == NULL || (a->kind >= PTHCV_ACT_NONE && a->kind <= PTHCV_ACT_CLAMP);
}

const char *pthcv_act_name(int kind)
{
    static const char *const names[] = {"identity", "relu",      "relu6",       "leaky_relu", "elu",  "sigmoid", "tanh",
                                        "silu",     "hardswish", "hardsigmoid", "gelu",       "gelu", "clamp"};
    return kind >= PTHCV_ACT_NONE && kind <= PTHCV_ACT_CLAMP ? names[kind] : "activation";
}

/* The piecewise-linear kinds get their own loops so the compiler vectorises
 * them (they are the common fused ones); the others call the scalar
 * definition, which keeps every path bit-identical to it. */
PTHCV_SIMD void pthcv_act_row(float *x, int64_t n, const pthcv_activation *a)
{
    if (a == NULL || a->kind == PTHCV_ACT_NONE) return;
    switch (a->kind) {
    case PTHCV_ACT_RELU:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i];
        return;
    case PTHCV_ACT_RELU6:
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < 0.0f ? 0.0f : x[i] > 6.0f ? 6.0f : x[i];
        return;
    case PTHCV_ACT_CLAMP: {
        float lo = a->alpha, hi = a->beta;
        for (int64_t i = 0; i < n; i++) x[i] = x[i] < lo ? lo : x[i] > hi ? hi : x[i];
        return;
    }
    case PTHCV_ACT_LEAKY_RELU: {
        float alpha = a->alpha;
        for (int64_t i = 0; i < n; i++) x[i] = x[i] > 0.0f ? x[i] : x[i] * alpha;
        return;
    }
    case PTHCV_ACT_HARDSWISH: /* MobileNetV3's: a scalar call per value weighed on its time */
        for (int64_t i = 0; i < n; i++) {
            float v = x[i], r = v + 3.0f;
            r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
            x[i] = v * r / 6.0f;
        }
        return;
    case PTHCV_ACT_HARDSIGMOID:
        for (int64_t i = 0; i < n; i++) {
            float r = x[i] + 3.0f;
            r = r < 0.0f ? 0.0f : r > 6.0f ? 6.0f : r;
            x[i] = r / 6.0f;
        }
        return;
    case PTHCV_ACT_SIGMOID: /* squeeze-excitation gates */
        for (int64_t i = 0; i < n; i++) x[i] = vm_sigmoid(x[i]);
        return;
    case PTHCV_ACT_SILU: /* EfficientNet's, MaxViT's: expf per value kept the loop scalar */
#ifdef PTHCV_SILU_X86
        /* the same bits (silu_x86.h), by the CPU as the clones are chosen */
        if (__builtin_cpu_supports("avx512f")) {
            silu_row_avx512(x, n);
            return;
        }
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
            silu_row_avx2(x, n);
            return;
        }
#endif
        if (pthcv_silu_fused())
            for (int64_t i = 0; i < n; i++) x[i] = vm_silu(x[i]);
        else
            for (int64_t i = 0; i < n; i++) x[i] = vm_silu_unfused(x[i]);
        return;
    case PTHCV_ACT_GELU: /* ViT's and ConvNeXt's MLPs: erff per value kept the loop scalar */
        for (int64_t i = 0; i < n; i++) x[i] = vm_gelu(x[i]);
        return;
    case PTHCV_ACT_GELU_TANH:
        for (int64_t i = 0; i < n; i++) x[i] = vm_gelu_tanh(x[i]);
        return;
    default:
        for (int64_t i = 0; i < n; i++) x[i] = pthcv_act_scalar(x[i], a);
        return;
    }
}
