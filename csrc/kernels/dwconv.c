/*
 * dwconv.c -- the scalar reference of the direct depthwise kernel (dwconv.h).
 */
#include "dwconv.h"

void pthcv_dw_plane_scalar(const pthcv_dw_args *a)
{
    for (int64_t oy = 0; oy < a->oh; oy++)
        for (int64_t ox = 0; ox < a->ow; ox++) a->out[oy * a->ow + ox] = pthcv_dw_point(a, oy, ox);
}
