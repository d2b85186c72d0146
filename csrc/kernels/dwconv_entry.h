/*
 * dwconv_entry.h -- the choice of loop by kernel size and stride behind the
 * entry points of dwconv.h, the same for every instruction set. Included by
 * dwconv_{avx2,avx512,neon}.c after their plane_fixed (3x3 and 5x5 in row
 * blocks) and plane_any (any size, one row at a time, taps D apart); each
 * file's pthcv_dw_plane_ISA and pthcv_dw_dilated_plane_ISA call these.
 */
#ifndef PTHCV_DWCONV_ENTRY_H
#define PTHCV_DWCONV_ENTRY_H

/* 3x3 and 5x5 through plane_fixed: 1, or 0 for other sizes. The int8
 * planes (qdwconv_*.c, which define DW_FIXED_ONLY: no plane_any) take
 * only this. */
static AI int dw_fixed_entry(const pthcv_dw_args *a)
{
    assert(a->in && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0);
    assert(a->ldi >= (a->ow - 1) * a->stride + a->kw + PTHCV_DW_SLACK);
    if (a->kh == 3 && a->kw == 3) a->stride == 1 ? plane_fixed(a, 3, 3, 1) : plane_fixed(a, 3, 3, 2);
    else if (a->kh == 5 && a->kw == 5) a->stride == 1 ? plane_fixed(a, 5, 5, 1) : plane_fixed(a, 5, 5, 2);
    else return 0;
    return 1;
}

#ifndef DW_FIXED_ONLY
static AI void dw_entry(const pthcv_dw_args *a)
{
    assert(a->out);
    if (dw_fixed_entry(a)) return;
    if (a->stride == 1) plane_any(a, a->kh, a->kw, 1, 1);
    else plane_any(a, a->kh, a->kw, 2, 1);
}

/* Dilated: the one-row loop, unrolled for 3x3 and 5x5. */
static AI void dw_dilated_entry(const pthcv_dw_args *a, int dilation)
{
    assert(a->in && a->out && (a->stride == 1 || a->stride == 2) && a->kh > 0 && a->kw > 0 && dilation >= 1);
    assert(a->ldi >= (a->ow - 1) * a->stride + (int64_t)dilation * (a->kw - 1) + 1 + PTHCV_DW_SLACK);
    const int S = a->stride;
    if (a->kh == 3 && a->kw == 3) S == 1 ? plane_any(a, 3, 3, 1, dilation) : plane_any(a, 3, 3, 2, dilation);
    else if (a->kh == 5 && a->kw == 5) S == 1 ? plane_any(a, 5, 5, 1, dilation) : plane_any(a, 5, 5, 2, dilation);
    else if (S == 1) plane_any(a, a->kh, a->kw, 1, dilation);
    else plane_any(a, a->kh, a->kw, 2, dilation);
}
#endif

#endif
