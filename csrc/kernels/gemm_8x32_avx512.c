/*
 * gemm_8x32_avx512.c -- the AVX-512 sgemm micro-kernel: an 8 x 32 tile of C
 * in 16 zmm accumulators; per k step two B loads, eight A broadcasts and
 * sixteen FMAs. Same structure as the AVX2 kernel (gemm_6x16_avx2.c), so
 * that one's tests vouch for the shape of this one where the CPU lacks
 * AVX-512. Contract: gemm.h (pthcv_ukernel_args).
 */
#include "gemm.h"
#include "silu_x86.h"
#include <assert.h>
#include <immintrin.h>

/* GELU (approximate='none') of 16 values: x Phi(x), Phi(-|x|) =
 * erfc(z)/2 for z = |x|/sqrt2 by Abramowitz and Stegun's 7.1.26,
 * t (a1 + t (a2 + ... a5 t)) exp(-z^2) with t = 1/(1 + p z) (absolute
 * error of erfc under 1.5e-7), in fused multiply-adds, t by rcp14 and one
 * Newton step, 2^k by scalef: about 35 operations where the
 * auto-vectorised vm_gelu takes over a hundred. Not vm_gelu's bits; the
 * same bound, error below 3e-7 max(1, |x|) (spec/c/kernels_test.c checks
 * both); NaN, inf and -inf give vm_gelu's NaN, inf, NaN. */
static inline __m512 gelu16(__m512 x)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    /* z = |x|/sqrt2 capped at 20, where the exp below is already 0: keeps
     * rcp14(inf) = 0 from making 0 * inf in the Newton step */
    __m512 z = _mm512_min_ps(_mm512_mul_ps(_mm512_abs_ps(x), _mm512_set1_ps(0.70710678118654752f)),
                             _mm512_set1_ps(20.0f));
    __m512 d = _mm512_fmadd_ps(_mm512_set1_ps(0.3275911f), z, one);
    __m512 t = _mm512_rcp14_ps(d);
    t = _mm512_fmadd_ps(_mm512_fnmadd_ps(d, t, one), t, t);
    __m512 p = _mm512_set1_ps(1.061405429f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-1.453152027f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.421413741f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.284496736f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.254829592f));
    t = _mm512_mul_ps(p, t);
    __m512 a = _mm512_mul_ps(_mm512_sub_ps(_mm512_setzero_ps(), z), z); /* exp(-z^2) */
    __mmask16 tiny = _mm512_cmp_ps_mask(a, _mm512_set1_ps(-86.64f), _CMP_LT_OQ);
    a = _mm512_max_ps(a, _mm512_set1_ps(-86.64f));
    __m512 k = _mm512_roundscale_ps(_mm512_mul_ps(a, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(k, _mm512_set1_ps(0.693359375f), a);
    r = _mm512_fnmadd_ps(k, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 e = _mm512_set1_ps(1.9875691500e-4f);
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.3981999507e-3f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(8.3334519073e-3f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(4.1665795894e-2f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(1.6666665459e-1f));
    e = _mm512_fmadd_ps(e, r, _mm512_set1_ps(5.0000001201e-1f));
    e = _mm512_fmadd_ps(e, _mm512_mul_ps(r, r), _mm512_add_ps(r, one));
    e = _mm512_maskz_scalef_ps((__mmask16)~tiny, e, k);
    __m512 h = _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), t), e); /* Phi(-|x|) */
    __mmask16 neg = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
    return _mm512_mul_ps(x, _mm512_mask_blend_ps(neg, _mm512_sub_ps(one, h), h));
}

void pthcv_gelu_avx512(float *x, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, gelu16(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 m = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(x + i, m, gelu16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* One A panel of 8 rows from a row-major matrix: dst[kk*8 + r] =
 * src[r*ld + kk] for kk < kc, rows past `rows` zero; 8 x 8 blocks
 * transposed in registers. */
void pthcv_pack_rows_8_avx512(float *dst, const float *src, int64_t ld, int rows, int64_t kc)
{
    const float *row[8];
    for (int r = 0; r < 8; r++) row[r] = r < rows ? src + r * ld : NULL;
    int64_t kk = 0;
    for (; kk + 8 <= kc; kk += 8) {
        __m256 x[8];
        for (int r = 0; r < 8; r++) x[r] = row[r] ? _mm256_loadu_ps(row[r] + kk) : _mm256_setzero_ps();
        __m256 t0 = _mm256_unpacklo_ps(x[0], x[1]), t1 = _mm256_unpackhi_ps(x[0], x[1]);
        __m256 t2 = _mm256_unpacklo_ps(x[2], x[3]), t3 = _mm256_unpackhi_ps(x[2], x[3]);
        __m256 t4 = _mm256_unpacklo_ps(x[4], x[5]), t5 = _mm256_unpackhi_ps(x[4], x[5]);
        __m256 t6 = _mm256_unpacklo_ps(x[6], x[7]), t7 = _mm256_unpackhi_ps(x[6], x[7]);
        __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
        __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
        __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
        __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
        float *d = dst + kk * 8;
        _mm256_storeu_ps(d, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(d + 8, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(d + 16, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(d + 24, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(d + 32, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(d + 40, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(d + 48, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(d + 56, _mm256_permute2f128_ps(u3, u7, 0x31));
    }
    for (; kk < kc; kk++)
        for (int r = 0; r < 8; r++) dst[kk * 8 + r] = row[r] ? row[r][kk] : 0.0f;
}

/* The kernel for the first R rows of the tile (R a constant: the rows
 * past it are compiled out, the A panel keeps its 8-row stride). Each
 * value's sum is the same sequence of FMAs for every R. */
#define ROW(r, X) \
    if (R > r) X(r)
static inline __attribute__((always_inline)) void kernel_rows(const pthcv_ukernel_args *p, const int R)
{
    assert(p->kc >= 0 && p->c && p->ldc >= 32 && (!p->res || p->ldr >= 32));
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = c60 = c61 = c70 = c71 = _mm512_setzero_ps();
    if (p->first) {
        __m512 b0 = _mm512_setzero_ps(), b1 = _mm512_setzero_ps();
        if (p->bias_col) b0 = _mm512_loadu_ps(p->bias_col), b1 = _mm512_loadu_ps(p->bias_col + 16);
#define INIT(r)                                                                         \
    {                                                                                   \
        __m512 br = p->bias_row ? _mm512_set1_ps(p->bias_row[r]) : _mm512_setzero_ps(); \
        c##r##0 = _mm512_add_ps(br, b0);                                                \
        c##r##1 = _mm512_add_ps(br, b1);                                                \
    }
        ROW(0, INIT) ROW(1, INIT) ROW(2, INIT) ROW(3, INIT) ROW(4, INIT) ROW(5, INIT) ROW(6, INIT) ROW(7, INIT)
#undef INIT
    } else {
#define LOAD(r) c##r##0 = _mm512_loadu_ps(p->c + r * p->ldc), c##r##1 = _mm512_loadu_ps(p->c + r * p->ldc + 16);
        ROW(0, LOAD) ROW(1, LOAD) ROW(2, LOAD) ROW(3, LOAD) ROW(4, LOAD) ROW(5, LOAD) ROW(6, LOAD) ROW(7, LOAD)
#undef LOAD
    }
    const float *a = p->a, *b = p->b;
#define STEP(r)                                     \
    {                                               \
        __m512 ar = _mm512_set1_ps(a[r]);           \
        c##r##0 = _mm512_fmadd_ps(ar, b0, c##r##0); \
        c##r##1 = _mm512_fmadd_ps(ar, b1, c##r##1); \
    }
    /* kc in a local: the loop then needs no reload of p->kc */
    const int64_t kc = p->kc;
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
        ROW(0, STEP) ROW(1, STEP) ROW(2, STEP) ROW(3, STEP) ROW(4, STEP) ROW(5, STEP) ROW(6, STEP) ROW(7, STEP)
        a += 8;
        b += 32;
    }
#undef STEP
    if (p->last) {
        if (p->res) {
#define RES(r)                                                              \
    c##r##0 = _mm512_add_ps(c##r##0, _mm512_loadu_ps(p->res + r * p->ldr)), \
    c##r##1 = _mm512_add_ps(c##r##1, _mm512_loadu_ps(p->res + r * p->ldr + 16));
            ROW(0, RES) ROW(1, RES) ROW(2, RES) ROW(3, RES) ROW(4, RES) ROW(5, RES) ROW(6, RES) ROW(7, RES)
#undef RES
        }
        if (p->lo > -__builtin_inff()) {
            __m512 lo = _mm512_set1_ps(p->lo);
#define LO(r) c##r##0 = _mm512_max_ps(c##r##0, lo), c##r##1 = _mm512_max_ps(c##r##1, lo);
            ROW(0, LO) ROW(1, LO) ROW(2, LO) ROW(3, LO) ROW(4, LO) ROW(5, LO) ROW(6, LO) ROW(7, LO)
#undef LO
        }
        if (p->hi < __builtin_inff()) {
            __m512 hi = _mm512_set1_ps(p->hi);
#define HI(r) c##r##0 = _mm512_min_ps(c##r##0, hi), c##r##1 = _mm512_min_ps(c##r##1, hi);
            ROW(0, HI) ROW(1, HI) ROW(2, HI) ROW(3, HI) ROW(4, HI) ROW(5, HI) ROW(6, HI) ROW(7, HI)
#undef HI
        }
        if (p->act == PTHCV_ACT_GELU) {
#define GELU(r) c##r##0 = gelu16(c##r##0), c##r##1 = gelu16(c##r##1);
            ROW(0, GELU) ROW(1, GELU) ROW(2, GELU) ROW(3, GELU) ROW(4, GELU) ROW(5, GELU) ROW(6, GELU) ROW(7, GELU)
#undef GELU
        }
        if (p->act == PTHCV_ACT_HARDSWISH) { /* pthcv_act_row's: v * clamp(v + 3, 0, 6) / 6, in that order */
            const __m512 three = _mm512_set1_ps(3.0f), six = _mm512_set1_ps(6.0f), zero = _mm512_setzero_ps();
#define HSWISH1(v) _mm512_div_ps(_mm512_mul_ps(v, _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, three), zero), six)), six)
#define HSWISH(r) c##r##0 = HSWISH1(c##r##0), c##r##1 = HSWISH1(c##r##1);
            ROW(0, HSWISH) ROW(1, HSWISH) ROW(2, HSWISH) ROW(3, HSWISH) ROW(4, HSWISH) ROW(5, HSWISH) ROW(6, HSWISH)
            ROW(7, HSWISH)
#undef HSWISH
#undef HSWISH1
        }
    }
    /* SiLU: vm_silu's bits for every value (silu_x86.h), as pthcv_act_row's */
    if (p->last && p->act == PTHCV_ACT_SILU) {
#define SILU(r) c##r##0 = silu16_avx512(c##r##0), c##r##1 = silu16_avx512(c##r##1);
        ROW(0, SILU) ROW(1, SILU) ROW(2, SILU) ROW(3, SILU) ROW(4, SILU) ROW(5, SILU) ROW(6, SILU) ROW(7, SILU)
#undef SILU
    }
#define STORE(r) _mm512_storeu_ps(p->c + r * p->ldc, c##r##0), _mm512_storeu_ps(p->c + r * p->ldc + 16, c##r##1);
    ROW(0, STORE) ROW(1, STORE) ROW(2, STORE) ROW(3, STORE) ROW(4, STORE) ROW(5, STORE) ROW(6, STORE) ROW(7, STORE)
#undef STORE
}
#undef ROW

/* rows (pthcv_ukernel_args) 1..7: only those rows of c, res and bias_row
 * are read or written */
void pthcv_ukernel_8x32_avx512(const pthcv_ukernel_args *p)
{
    switch (p->rows) {
    case 1: kernel_rows(p, 1); break;
    case 2: kernel_rows(p, 2); break;
    case 3: kernel_rows(p, 3); break;
    case 4: kernel_rows(p, 4); break;
    case 5: kernel_rows(p, 5); break;
    case 6: kernel_rows(p, 6); break;
    case 7: kernel_rows(p, 7); break;
    default: kernel_rows(p, 8); break;
    }
}
