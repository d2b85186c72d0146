/*
 * ops.h -- what the ops share (ops_*.c, conv_transpose2d.c; conv2d.c takes
 * the shape strings and the padding modes): argument checking, output
 * allocation, shape strings for messages, the padding modes' index
 * arithmetic, and the SIMD dispatch macro.
 *
 * Conventions of every op: inputs must be float32 (any strides; the ops make
 * a contiguous copy where that is simpler), results are new contiguous
 * float32 tensors, failures return NULL with pthcv_last_error() naming the op
 * and the shapes involved. Work is split over threads by output rows or
 * planes only, never inside one reduction, so results do not depend on the
 * thread count.
 */
#ifndef PTHCV_OPS_H
#define PTHCV_OPS_H

#include "kernels.h"
#include <stddef.h>

/* Accumulator lanes of the vectorised reductions: the element i of a row
 * goes to lane i % OPS_LANES, lanes are added in order at the end. */
enum { OPS_LANES = 16 };

/* Elements a thread should at least get: below this, splitting costs more
 * than it saves. */
enum { OPS_GRAIN = 1 << 15 };

/* x checked (non-NULL, float32) and made contiguous: a new reference the
 * caller releases, with its data in *data. `op` and `what` name the op and
 * the argument in messages ("max_pool2d: input must be float32, got
 * int64"). NULL on failure, error set. */
pthcv_tensor *ops_input(pthcv_tensor *x, const char *op, const char *what, const float **data);

/* A quantized tensor (an int8 layer's output, pthcv.quant) is taken by the
 * float ops as its real values: OPS_REAL(t) at the top of an op replaces
 * the pthcv_tensor *t by a dequantized float32 copy, released when the op
 * returns (t is left as it was when it is not quantized, or when the copy
 * cannot be made: the op's own check then reports it). ops_input does the
 * same for the ops that use it. */
pthcv_tensor *ops_dequantized(pthcv_tensor **t);
static inline void ops_release_ptr(pthcv_tensor **t) { pthcv_tensor_release(*t); }
#define OPS_REAL(t) pthcv_tensor *t##_real_ __attribute__((cleanup(ops_release_ptr), unused)) = ops_dequantized(&(t))

/* An int8 activation (quint8 per tensor) the op gives back as int8, as
 * torch's quantized pooling does: 1 if x is one. ops_requantize_like
 * quantizes the op's float result y with like's scale and zero point
 * (exact where y's values are on like's grid: a max, a view) and releases
 * y; NULL if y is NULL or on failure. */
int ops_is_qactivation(const pthcv_tensor *x);
pthcv_tensor *ops_requantize_like(pthcv_tensor *y, const pthcv_tensor *like);
/* ReLU, ReLU6 or clamp (act->kind, checked by the caller) of an int8
 * activation on its bytes, as torch's quantized relu / relu6 / hardtanh:
 * clamp(q, round(lo / scale) + zp, round(hi / scale) + zp), the input's
 * scale and zero point kept (quantize.c). */
pthcv_tensor *quant_clamp_activate(pthcv_tensor *x, const pthcv_activation *act);

/* A new contiguous float32 tensor of that shape, data in *data. */
pthcv_tensor *ops_output(int ndim, const int64_t *shape, float **data);
/* ops_output for a kernel that writes every element of its output: the
 * bytes are not zeroed first (calloc's memset was 0.2 ms of an
 * efficientnet_b0 pass in squeeze-excitation alone). */
pthcv_tensor *ops_output_whole(int ndim, const int64_t *shape, float **data);

/* Bilinear resizing row by row (ops_interp.c; pthcv_interpolate's rules
 * and bits): the taps of an (H, W) -> (OH, OW) resize, and a task's two
 * rows of horizontal taps for `group` planes (H * W apart), kept for the
 * output rows that share them. ops_bilinear_row writes output row oh of
 * the group starting at x to y, its planes' rows ystride apart. */
typedef struct {
    int64_t H, W, OH, OW;
    int64_t *hidx, *widx; /* two per output row, per output column */
    float *hlam, *wlam;
} ops_bilinear;
typedef struct {
    float *t;
    const float *tag[2]; /* the input row (of the group's first plane) each half of t holds */
    int64_t group;
} ops_bilinear_rows;
int ops_bilinear_init(ops_bilinear *b, int64_t H, int64_t W, int64_t OH, int64_t OW, int align_corners,
                      double scale_h, double scale_w);
void ops_bilinear_free(ops_bilinear *b);
int ops_bilinear_rows_init(ops_bilinear_rows *r, const ops_bilinear *b, int64_t group); /* 0: out of memory */
void ops_bilinear_rows_free(ops_bilinear_rows *r);
void ops_bilinear_row(const ops_bilinear *b, ops_bilinear_rows *r, const float *x, int64_t oh, float *y,
                      int64_t ystride);

/* (Shapes into a buffer: pthcv_format_dims, internal.h.) */
/* The shape of t, in a per-thread rotating buffer (four at a time), for
 * messages naming several shapes. */
const char *ops_shape(const pthcv_tensor *t);

/* dim in [-ndim, ndim) mapped to [0, ndim); -1 when out of range. As in
 * torch, a 0-d tensor accepts 0 and -1 (both give 0). */
int ops_dim(int dim, int ndim);

/* A PTHCV_PAD_* mode as F.pad names it: "zeros", "reflect", ...; "unknown"
 * out of range. */
const char *ops_pad_mode_name(int mode);

/* The source index that padding position i (in [-pad, n + pad)) reads along
 * a dimension of n >= 1 elements: i itself inside; outside, reflected
 * (without repeating the edge), replicated (the edge) or wrapped around
 * (circular); -1 for zeros and constant padding (the fill value). The
 * callers have checked the pads: reflect pads < n, circular pads <= n. */
static inline int64_t ops_pad_index(int64_t i, int64_t n, int mode)
{
    if (i >= 0 && i < n) return i;
    switch (mode) {
    case PTHCV_PAD_REFLECT: return i < 0 ? -i : 2 * (n - 1) - i;
    case PTHCV_PAD_REPLICATE: return i < 0 ? 0 : n - 1;
    case PTHCV_PAD_CIRCULAR: return ((i % n) + n) % n;
    default: return -1;
    }
}

/* Grain (items per thread at least) for items that cost `work` elements each. */
static inline int64_t ops_grain(int64_t work) { return work >= OPS_GRAIN ? 1 : OPS_GRAIN / (work > 0 ? work : 1); }

/* The float32 sum of a row, lane by lane (see OPS_LANES); identical across
 * instruction sets. Used by softmax and the reductions. */
float ops_sum_f32(const float *x, int64_t n);
/* The double sum of a row and of its squared deviations from mean, lane by
 * lane (norms). */
double ops_sum_f64(const float *x, int64_t n);
double ops_sumsq_dev_f64(const float *x, int64_t n, double mean);
/* Max / min of a row; NaN if any element is NaN (torch's amax/amin); n >= 1. */
float ops_max_f32(const float *x, int64_t n);
float ops_min_f32(const float *x, int64_t n);

/* Pooling's inner loop in AVX-512 / AVX2 (ops_pool_simd.c): n outputs of
 * one row whose windows are inside the input's width; output i takes the
 * taps base[r * row_step + i * sw + kx * dw] for r < rows, kx < kw, in that
 * order, as max (is_max) or as a sum divided by divisor, with the scalar
 * loop's bits. 0: not available here (the caller runs its own loop). */
int ops_pool_run_simd(float *y, const float *base, int64_t n, int64_t rows, int64_t row_step, int64_t kw, int64_t sw,
                      int64_t dw, int is_max, float divisor);

/* Copies a strided block of `ndim` dimensions (shape; element strides of
 * source and destination) from src to dst. */
void ops_copy_strided(float *dst, const int64_t *dst_stride, const float *src, const int64_t *src_stride, int ndim,
                      const int64_t *shape);

/* ---- broadcasting over several operands (ops_math.c) -------------------------
 * The comparisons, where and pow walk their operands in place (any strides)
 * over the broadcast shape: dims of size 1 dropped, neighbours that are one
 * run in every operand merged, the last dim a row. */
enum { OPS_BCAST_MAX = 3 };
typedef struct {
    int nops, ndim;
    int64_t numel;
    int64_t shape[PTHCV_MAX_DIMS];
    int64_t stride[OPS_BCAST_MAX][PTHCV_MAX_DIMS]; /* elements; 0 where an operand broadcasts */
} ops_bcast;
/* The broadcast shape of the n tensors (torch's rule: aligned from the
 * right, sizes equal or 1) into *out_ndim / out_shape, and b set to walk
 * it. 0 on failure, the error naming fn and the shapes. */
int ops_broadcast(ops_bcast *b, int n, pthcv_tensor *const *xs, const char *fn, int *out_ndim, int64_t *out_shape);
/* Rows of the walk (numel / row length; 0 when empty), and the element
 * offsets of row r in each operand; returns the row length. */
int64_t ops_bcast_rows(const ops_bcast *b);
int64_t ops_bcast_row(const ops_bcast *b, int64_t r, int64_t *offsets);

#endif
