/*
 * dwpw.c -- a depthwise convolution followed by a pointwise (1x1) one with
 * the depthwise result kept in cache (pthcv_dwpw_forward).
 *
 * Unfused, a MobileNet block writes its depthwise output (112x112x96
 * floats: 4.8 MB) to memory and the 1x1 GEMM reads it back. Here the
 * output rows are cut into bands; a task takes one band of one image:
 *   1. the depthwise kernel of dwconv*.c (bias, clamp in its store, other
 *      activations right after, as conv2d.c's depthwise path does) writes
 *      each channel's band rows into a per-thread scratch [C][rows * ow]
 *      small enough for L2, from a zero-padded copy of the input rows the
 *      band reads;
 *   2. the pointwise GEMM (gemm.c, prepacked weights as A, the scratch
 *      packed as B, run inside the task) writes the band's columns of the
 *      output, with its bias, residual and activation in the store.
 * Every output value is computed by the same kernels from the same values
 * in the same order as pthcv_conv2d_forward of the two layers (the GEMM's
 * sums depend on its K slices only), so the result is bit for bit the
 * unfused one for every band height and thread count.
 * Pairs that do not suit bands (see band_shape, pick_rows) run as the two
 * convolutions one after the other.
 */
#include "conv2d_view.h"
#include "dwconv.h"
#include "ops.h"
#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* The band's depthwise output stays under this many floats (256 KB: with
 * the GEMM's packed B block and the pointwise weights it fits a 1 MB L2). */
enum { DWPW_MID_FLOATS = 64 * 1024 };
/* Bands only pay where the whole depthwise output of an image would spill
 * out of a core's L2 (1 MB); a smaller one is read back from L2 by the
 * unfused GEMM at no cost, and the bands' halo rows and shorter GEMMs then
 * made the pair slower (docs/performance.md): such pairs run unfused. */
enum { DWPW_MIN_SPILL_BYTES = 1 << 20 };
/* Nor do bands narrower than this many pixels. */
enum { DWPW_MIN_PIXELS = 48 };

typedef struct {
    pthcv_conv2d_view dw, pw;
    const pthcv_gemm_kernel *k;
    const float *a_packed;
    const uint16_t *a_half;
    const float *x; /* contiguous [N, cin, h, w] */
    int64_t cin, h, w, oh, ow, rows, nbands;
    float *out; /* plane (n, c) at out + n*obs + c*ocs, oh*ow contiguous floats */
    int64_t ocs, obs;
    const float *res; /* contiguous [N, cout, oh, ow] or NULL (then ocs = oh*ow) */
    void (*plane)(const pthcv_dw_args *);
    float lo, hi; /* the depthwise's clamp (fused), else +-inf */
    int fused;
    atomic_int failed;
} band_ctx;

typedef struct {
    const float *mid; /* [K][n] */
    int64_t n;
} mid_ctx;

/* The GEMM's B block from the band's depthwise output: columns j0.. of rows
 * k0.., as NR-wide k-major panels (columns past n zero). */
static void pack_mid(const void *vctx, int64_t p, float *dst, int64_t k0, int64_t kc, int64_t j0, int64_t nc, int nr)
{
    (void)p;
    const mid_ctx *m = vctx;
    for (int64_t q = 0; q < nc; q += nr) {
        int64_t valid = m->n - (j0 + q) < nr ? m->n - (j0 + q) : nr;
        float *panel = dst + q / nr * kc * nr;
        const float *src = m->mid + k0 * m->n + j0 + q;
        for (int64_t kk = 0; kk < kc; kk++) {
            float *d = panel + kk * nr;
            const float *s = src + kk * m->n;
            /* whole panels of the instruction sets' NR copied inline: a call
             * to memcpy per 16 floats cost more than the copy */
            if (valid == 16) memcpy(d, s, 16 * sizeof(float));
            else if (valid == 32) memcpy(d, s, 32 * sizeof(float));
            else
                for (int64_t i = 0; i < valid; i++) d[i] = s[i];
            for (int64_t i = valid; i < nr; i++) d[i] = 0.0f;
        }
    }
}

/* Step 1 for output rows oy0..oy0+rows-1 of image img into mid [cout][rows*ow].
 * 0, or -1 when out of memory. */
static int depthwise_band(const band_ctx *b, int64_t img, int64_t oy0, int64_t rows, float *mid)
{
    const pthcv_conv2d_view *d = &b->dw;
    int s = d->p.stride[0], ph = d->p.padding[0], pw = d->p.padding[1];
    int64_t hin = (rows - 1) * s + d->kh, ldi = b->w + 2 * pw + PTHCV_DW_SLACK;
    int64_t size = hin * ldi + PTHCV_DW_SLACK;
    float *buf = pthcv_scratch(PTHCV_SCRATCH_DW, (size_t)size);
    if (!buf) return -1;
    /* buffer row r is input row iy0 + r; rows r0..r1-1 lie in the image, the
     * others and the columns around stay zero for every channel */
    memset(buf, 0, sizeof(float) * (size_t)size);
    int64_t iy0 = oy0 * s - ph, r0 = iy0 < 0 ? -iy0 : 0, r1 = b->h - iy0 < hin ? b->h - iy0 : hin;
    int64_t mult = d->cout / d->groups, n = rows * b->ow;
    for (int64_t c = 0; c < d->cout; c++) {
        const float *src = b->x + (img * b->cin + c / mult) * b->h * b->w;
        for (int64_t r = r0; r < r1; r++)
            memcpy(buf + r * ldi + pw, src + (iy0 + r) * b->w, sizeof(float) * (size_t)b->w);
        pthcv_dw_args a = {
            .in = buf,
            .ldi = ldi,
            .stride = s,
            .kh = (int)d->kh,
            .kw = (int)d->kw,
            .w = d->w + c * d->kh * d->kw,
            .bias = d->bias ? d->bias[c] : 0.0f,
            .out = mid + c * n,
            .oh = rows,
            .ow = b->ow,
            .lo = b->lo,
            .hi = b->hi,
        };
        b->plane(&a);
        if (!b->fused) pthcv_act_row(a.out, n, &d->p.act);
    }
    return 0;
}

static void band_task(void *vctx, int64_t begin, int64_t end)
{
    band_ctx *b = vctx;
    for (int64_t t = begin; t < end; t++) {
        int64_t img = t / b->nbands, oy0 = t % b->nbands * b->rows;
        int64_t rows = b->oh - oy0 < b->rows ? b->oh - oy0 : b->rows, n = rows * b->ow;
        float *mid = pthcv_scratch(PTHCV_SCRATCH_DWPW_MID, (size_t)(b->dw.cout * n));
        if (!mid || depthwise_band(b, img, oy0, rows, mid) != 0) goto fail;
        mid_ctx m = {.mid = mid, .n = n};
        /* inside a pool task the GEMM runs on this thread alone */
        pthcv_gemm_problem g = {
            .kernel = b->k,
            .M = b->pw.cout,
            .N = n,
            .K = b->pw.cin_g,
            .nprob = 1,
            .nsets = 1,
            .a_packed = b->a_packed,
            .a_half = b->a_half,
            .pack_b = pack_mid,
            .ctx = &m,
            .c = b->out + img * b->obs + oy0 * b->ow,
            .ldc = b->ocs,
            .res = b->res ? b->res + img * b->pw.cout * b->oh * b->ow + oy0 * b->ow : NULL,
            .bias_row = b->pw.bias,
            .act = b->pw.p.act,
        };
        if (pthcv_gemm_run(&g) != PTHCV_OK) goto fail;
    }
    return;
fail:
    atomic_store(&b->failed, 1);
}

/* Whether dw then pw can run in bands on an input of this shape: a
 * depthwise layer with zero padding feeding a 1x1, stride 1, unpadded,
 * ungrouped layer of as many input channels, on a batched input [N, C, h, w]
 * the kernel fits in; *oh, *ow set to the output's height and width. */
static int band_shape(const pthcv_conv2d_view *dw, const pthcv_conv2d_view *pw, int ndim, const int64_t *shape,
                      int64_t *oh, int64_t *ow)
{
    int layers = dw->depthwise && dw->p.padding_mode == PTHCV_PAD_ZEROS && pw->kh == 1 && pw->kw == 1 &&
        pw->p.stride[0] == 1 && pw->p.stride[1] == 1 && pw->p.padding[0] == 0 && pw->p.padding[1] == 0 &&
        pw->groups == 1 && pw->cin_g == dw->cout;
    if (!layers || ndim != 4 || shape[1] != dw->cin_g * dw->groups) return 0;
    int64_t hp = shape[2] + 2 * dw->p.padding[0], wp = shape[3] + 2 * dw->p.padding[1];
    if (hp < dw->kh || wp < dw->kw) return 0;
    *oh = (hp - dw->kh) / dw->p.stride[0] + 1, *ow = (wp - dw->kw) / dw->p.stride[0] + 1;
    return 1;
}

/* Band height for an oh x ow output of `channels` depthwise channels: the
 * scratch under DWPW_MID_FLOATS, at least two bands per thread; 0 (run
 * unfused) when the output is under DWPW_MIN_SPILL_BYTES an image or the
 * bands would be narrower than DWPW_MIN_PIXELS. */
static int64_t pick_rows(int64_t channels, int64_t batch, int64_t oh, int64_t ow, int threads)
{
    if ((int64_t)sizeof(float) * channels * oh * ow < DWPW_MIN_SPILL_BYTES) return 0;
    int64_t rows = DWPW_MID_FLOATS / (channels * ow);
    if (rows > oh) rows = oh;
    while (rows > 1 && threads > 1 && batch * ((oh + rows - 1) / rows) < 2 * threads) rows--;
    return rows >= 1 && rows * ow >= DWPW_MIN_PIXELS ? rows : 0;
}

/* y (a new tensor, or dst retained) = pw(dw(x)) the unfused way. */
static pthcv_tensor *unfused(pthcv_conv2d *dw, pthcv_conv2d *pw, pthcv_tensor *x, pthcv_tensor *residual,
                             pthcv_tensor *dst)
{
    pthcv_tensor *t = pthcv_conv2d_forward(dw, x, NULL);
    if (!t) return NULL;
    pthcv_tensor *y = NULL;
    if (!dst) y = pthcv_conv2d_forward(pw, t, residual);
    else if (pthcv_conv2d_forward_into(pw, t, residual, dst) == PTHCV_OK) y = pthcv_tensor_retain(dst);
    pthcv_tensor_release(t);
    return y;
}

/* The output's plane and image strides in dst (its planes contiguous, none
 * overlapping), or 0 when dst does not have that layout. */
static int dst_strides(const pthcv_tensor *dst, const int64_t oshape[4], int64_t *cs, int64_t *bs)
{
    if (dst->dtype != PTHCV_FLOAT32 || dst->ndim != 4) return 0;
    for (int i = 0; i < 4; i++)
        if (dst->shape[i] != oshape[i]) return 0;
    int64_t plane = oshape[2] * oshape[3];
    if ((oshape[3] > 1 && dst->stride[3] != 1) || (oshape[2] > 1 && dst->stride[2] != oshape[3])) return 0;
    *cs = dst->stride[1], *bs = dst->stride[0];
    if (oshape[1] > 1 && *cs < plane) return 0;
    if (oshape[0] > 1 && *bs < (oshape[1] - 1) * *cs + plane) return 0;
    return 1;
}

pthcv_tensor *pthcv_dwpw_forward(pthcv_conv2d *dw, pthcv_conv2d *pw, pthcv_tensor *x, pthcv_tensor *residual,
                                 pthcv_tensor *dst, int32_t band_rows)
{
    if (!dw || !pw || !x) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "dwpw: no convolution or no input");
    if (band_rows < 0) return PTHCV_FAIL_NULL(PTHCV_ERR_ARG, "dwpw: band_rows must be >= 0, got %d", band_rows);
    OPS_REAL(x);
    OPS_REAL(residual);
    band_ctx b = {.plane = NULL};
    pthcv_conv2d_view_of(dw, &b.dw);
    pthcv_conv2d_view_of(pw, &b.pw);
    int64_t oh, ow;
    if (x->dtype != PTHCV_FLOAT32 || !band_shape(&b.dw, &b.pw, x->ndim, x->shape, &oh, &ow))
        return unfused(dw, pw, x, residual, dst); /* or its error */
    int s = b.dw.p.stride[0];
    int64_t batch = x->shape[0], h = x->shape[2], w = x->shape[3];
    int64_t oshape[4] = {batch, b.pw.cout, oh, ow}, cs = oh * ow, bs = b.pw.cout * oh * ow;
    if (dst && (!dst_strides(dst, oshape, &cs, &bs) || dst->storage == x->storage || (residual && cs != oh * ow)))
        return unfused(dw, pw, x, residual, dst);
    if (residual) {
        int same = residual->dtype == PTHCV_FLOAT32 && residual->ndim == 4;
        for (int i = 0; same && i < 4; i++) same = residual->shape[i] == oshape[i];
        if (!same) return unfused(dw, pw, x, residual, dst); /* its error */
    }
    int64_t rows = band_rows ? band_rows : pick_rows(b.dw.cout, batch, oh, ow, pthcv_get_num_threads());
    if (rows == 0) return unfused(dw, pw, x, residual, dst);
    if (rows > oh) rows = oh;

    PTHCV_PROFILE_OP("dwpw");
    PTHCV_PROFILE_LABEL("dwpw %lldx%lld/%d + 1x1, %lld-row bands", (long long)b.dw.kh, (long long)b.dw.kw, s,
                        (long long)rows);
    pthcv_tensor *xc = NULL, *rc = NULL, *y = NULL;
    b.k = pthcv_gemm_kernel_for(pthcv_isa());
    int64_t sstride;
    const void *a = pthcv_conv2d_gemm_a(pw, b.k, &sstride);
    if (!a || !(xc = pthcv_tensor_contiguous(x)) || !(b.x = pthcv_tensor_data(xc))) goto done;
    if (residual && (!(rc = pthcv_tensor_contiguous(residual)) || !(b.res = pthcv_tensor_data(rc)))) goto done;
    if (b.pw.half) b.a_half = a;
    else b.a_packed = a;
    y = dst ? pthcv_tensor_retain(dst) : pthcv_tensor_new_uninit(PTHCV_FLOAT32, 4, oshape);
    if (!y || !(b.out = pthcv_tensor_data(y))) goto fail;
    b.cin = x->shape[1], b.h = h, b.w = w, b.oh = oh, b.ow = ow, b.rows = rows, b.nbands = (oh + rows - 1) / rows;
    b.ocs = cs, b.obs = bs;
    b.plane = pthcv_dw_plane_for(pthcv_isa());
    b.fused = pthcv_act_bounds(&b.dw.p.act, &b.lo, &b.hi);
    if (!b.fused) b.lo = -INFINITY, b.hi = INFINITY;
    atomic_init(&b.failed, 0);
    pthcv_parallel_for(batch * b.nbands, 1, band_task, &b);
    if (!atomic_load(&b.failed)) goto done;
    pthcv_fail(PTHCV_ERR_NOMEM, "dwpw: out of memory for a band's scratch");
fail:
    pthcv_tensor_release(y);
    y = NULL;
done:
    pthcv_tensor_release(xc);
    pthcv_tensor_release(rc);
    return y;
}

int32_t pthcv_dwpw_band_rows(pthcv_conv2d *dw, pthcv_conv2d *pw, int32_t ndim, const int64_t *shape)
{
    if (!dw || !pw || !shape) return 0;
    pthcv_conv2d_view vd, vp;
    pthcv_conv2d_view_of(dw, &vd);
    pthcv_conv2d_view_of(pw, &vp);
    int64_t oh, ow;
    if (!band_shape(&vd, &vp, ndim, shape, &oh, &ow)) return 0;
    return (int32_t)pick_rows(vd.cout, shape[0], oh, ow, pthcv_get_num_threads());
}
