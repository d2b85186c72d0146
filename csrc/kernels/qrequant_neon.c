/*
 * qrequant_neon.c -- the uint8 stores of the int8 kernels with NEON
 * (contract: qgemm.h, pthcv_qstore_fns): 4 values per vector, the last
 * partial vector through a small buffer; the store itself is qstore_neon.h's.
 */
#include "qstore_neon.h"

static void tile(const pthcv_qstore *s, const int32_t *acc, int rows, int n, int64_t lda, const int32_t *off,
                 const float *mul, const uint8_t *res, uint8_t *out, int64_t ldo)
{
    for (int r = 0; r < rows; r++) {
        const int32x4_t f = vdupq_n_s32(off[r]);
        const float32x4_t mr = vdupq_n_f32(mul[r]);
        const int32_t *a = acc + r * lda;
        const uint8_t *rr = res ? res + r * ldo : NULL;
        uint8_t *o = out + r * ldo;
        int j = 0;
        for (; j + 4 <= n; j += 4)
            store4(s, vmulq_f32(vcvtq_f32_s32(vaddq_s32(vld1q_s32(a + j), f)), mr), rr ? rr + j : NULL, o + j);
        if (j < n) {
            int32_t b[4] = {0};
            memcpy(b, a + j, sizeof(int32_t) * (size_t)(n - j));
            store_part(s, vmulq_f32(vcvtq_f32_s32(vaddq_s32(vld1q_s32(b), f)), mr), rr ? rr + j : NULL, o + j, n - j);
        }
    }
}

static void fsum(const pthcv_qstore *s, const float *acc, int64_t n, float off, float mul, const uint8_t *res,
                 uint8_t *out)
{
    const float32x4_t f = vdupq_n_f32(off), mr = vdupq_n_f32(mul);
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        store4(s, vmulq_f32(vaddq_f32(vld1q_f32(acc + j), f), mr), res ? res + j : NULL, out + j);
    if (j < n) {
        float b[4] = {0};
        memcpy(b, acc + j, sizeof(float) * (size_t)(n - j));
        store_part(s, vmulq_f32(vaddq_f32(vld1q_f32(b), f), mr), res ? res + j : NULL, out + j, n - j);
    }
}

static void widen(float *d, const uint8_t *src, int64_t n, float zx)
{
    const float32x4_t z = vdupq_n_f32(zx);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint16x8_t h = vmovl_u8(vld1_u8(src + i));
        vst1q_f32(d + i, vsubq_f32(vcvtq_f32_u32(vmovl_u16(vget_low_u16(h))), z));
        vst1q_f32(d + i + 4, vsubq_f32(vcvtq_f32_u32(vmovl_u16(vget_high_u16(h))), z));
    }
    for (; i < n; i++) d[i] = (float)src[i] - zx;
}

const pthcv_qstore_fns pthcv_qstore_neon = {tile, fsum, widen};
