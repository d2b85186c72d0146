/*
 * qpool.h -- max pooling of int8 activations (quint8 per tensor) on the
 * stored bytes, as torch's quantized max_pool2d: max commutes with the
 * monotonic dequantization, so the output is the window's largest byte
 * with the input's scale and zero point (qpool.c).
 *
 * ops_pool.c checks the parameters and works out the geometry (torch's
 * output size, ceil_mode, the interior [lo, hi) of output columns whose
 * every tap lies inside the width), then hands a quint8 max pool here.
 */
#ifndef PTHCV_QPOOL_H
#define PTHCV_QPOOL_H

#include "ops.h"

typedef struct {
    int64_t H, W, OH, OW;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
    int64_t lo, hi; /* output columns [lo, hi): every tap inside [0, W) */
} qpool_geom;

/* x quint8 per tensor (any strides), ndim >= 2, g its pooling over the
 * last two dimensions: a new contiguous quint8 tensor with x's scale and
 * zero point, or NULL with the error set. A window with no tap inside
 * the input (impossible with torch's sizes) gives byte 0. */
pthcv_tensor *qpool_max2d(pthcv_tensor *x, const qpool_geom *g);

/* For the tests (spec/c/quant_test.c): the instruction set the row
 * kernels use from now on, 0 scalar, 1 AVX2, 2 AVX-512 (x86-64), 3 NEON
 * (AArch64); -1 back to the CPU's best. Returns the level in force, which
 * is lower than asked when this CPU or build lacks it. */
int qpool_force_level(int level);

#endif
