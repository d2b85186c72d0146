/*
 * dwconv.c -- the scalar references of the direct depthwise kernels (plain
 * and dilated), and the choice of kernel by instruction set (dwconv.h).
 */
#include "dwconv.h"

void pthcv_dw_plane_scalar(const pthcv_dw_args *a)
{
    for (int64_t oy = 0; oy < a->oh; oy++)
        for (int64_t ox = 0; ox < a->ow; ox++) a->out[oy * a->ow + ox] = pthcv_dw_point(a, oy, ox);
}

void pthcv_dw_dilated_plane_scalar(const pthcv_dw_args *a, int dilation)
{
    for (int64_t oy = 0; oy < a->oh; oy++)
        for (int64_t ox = 0; ox < a->ow; ox++) a->out[oy * a->ow + ox] = pthcv_dw_dilated_point(a, dilation, oy, ox);
}

void (*pthcv_dw_plane_for(int isa))(const pthcv_dw_args *)
{
    switch (isa) {
#if defined(__x86_64__)
    case PTHCV_ISA_AVX2: return pthcv_dw_plane_avx2;
    case PTHCV_ISA_AVX512: return pthcv_dw_plane_avx512;
#endif
#if defined(__aarch64__)
    case PTHCV_ISA_NEON: return pthcv_dw_plane_neon;
#endif
    default: return pthcv_dw_plane_scalar;
    }
}

void (*pthcv_dw_dilated_plane_for(int isa))(const pthcv_dw_args *, int)
{
    switch (isa) {
#if defined(__x86_64__)
    case PTHCV_ISA_AVX2: return pthcv_dw_dilated_plane_avx2;
    case PTHCV_ISA_AVX512: return pthcv_dw_dilated_plane_avx512;
#endif
#if defined(__aarch64__)
    case PTHCV_ISA_NEON: return pthcv_dw_dilated_plane_neon;
#endif
    default: return pthcv_dw_dilated_plane_scalar;
    }
}
