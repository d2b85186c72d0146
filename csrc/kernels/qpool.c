/*
 * qpool.c -- max pooling of quint8 activations on their bytes (qpool.h).
 *
 * Each output row is made in two passes over bytes:
 *   1. the vertical max of the window's input rows (ih = h0, h0 + dh, ...
 *      clipped to the input) into a row buffer of W bytes;
 *   2. the horizontal max of that buffer over each window's taps: the
 *      border columns (taps outside [0, W) skipped) one by one, the
 *      interior [lo, hi) a vector at a time for strides 1 and 2.
 * Both passes have a scalar reference (level 0) and AVX2, AVX-512 (BW)
 * and NEON versions; a byte max is exact, so every level and thread count
 * gives the same bytes. The x86 functions carry their instruction set as
 * a target attribute, as ops_pool_simd.c's do, so that the op tests, which
 * compile the ops in one command, build them too; the CPU is asked once,
 * and PTHCV_ISA=avx2 or scalar picks a lower family, as isa.c's variable.
 * Threads split the planes.
 */
#include "qpool.h"
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(PTHCV_NO_CLONES)
#define QPOOL_X86 1
#include <immintrin.h>
#define AVX512 __attribute__((target("avx512f,avx512bw")))
#define AVX2 __attribute__((target("avx2")))
#endif
#if defined(__aarch64__) && defined(__ARM_NEON)
#define QPOOL_NEON 1
#include <arm_neon.h>
#endif

enum { SLACK = 64 }; /* bytes past a row buffer's W: the stride-2 loads' last odd byte */

static inline uint8_t max_u8(uint8_t a, uint8_t b) { return a > b ? a : b; }

/* ---- scalar reference --------------------------------------------------------------------- */
/* acc[i] = max over r < nrows of rows[r][i], for i < n (nrows >= 1) */
static void vmax_scalar(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        uint8_t m = rows[0][i];
        for (int64_t r = 1; r < nrows; r++) m = max_u8(m, rows[r][i]);
        acc[i] = m;
    }
}

/* y[i] = max over k < kw of m[i sw + k dw], for i < n */
static void hmax_scalar(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    for (int64_t i = 0; i < n; i++) {
        uint8_t v = m[i * sw];
        for (int64_t k = 1; k < kw; k++) v = max_u8(v, m[i * sw + k * dw]);
        y[i] = v;
    }
}

/* ---- AVX2 ---------------------------------------------------------------------------------- */
#ifdef QPOOL_X86
AVX2 static void vmax_avx2(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i m = _mm256_loadu_si256((const __m256i *)(rows[0] + i));
        for (int64_t r = 1; r < nrows; r++) m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)(rows[r] + i)));
        _mm256_storeu_si256((__m256i *)(acc + i), m);
    }
    for (; i < n; i++) {
        uint8_t m = rows[0][i];
        for (int64_t r = 1; r < nrows; r++) m = max_u8(m, rows[r][i]);
        acc[i] = m;
    }
}

/* the even bytes of p[0 .. 63] */
AVX2 static inline __m256i even32_avx2(const uint8_t *p)
{
    const __m256i lo = _mm256_set1_epi16(0x00ff);
    __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), lo);
    __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 32)), lo);
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
}

AVX2 static int64_t hmax_avx2(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    int64_t i = 0;
    if (sw == 1)
        for (; i + 32 <= n; i += 32) {
            __m256i v = _mm256_loadu_si256((const __m256i *)(m + i));
            for (int64_t k = 1; k < kw; k++) v = _mm256_max_epu8(v, _mm256_loadu_si256((const __m256i *)(m + i + k * dw)));
            _mm256_storeu_si256((__m256i *)(y + i), v);
        }
    else if (sw == 2)
        for (; i + 32 <= n; i += 32) {
            __m256i v = even32_avx2(m + 2 * i);
            for (int64_t k = 1; k < kw; k++) v = _mm256_max_epu8(v, even32_avx2(m + 2 * i + k * dw));
            _mm256_storeu_si256((__m256i *)(y + i), v);
        }
    return i;
}

/* ---- AVX-512 (BW) ------------------------------------------------------------------------- */
AVX512 static void vmax_avx512(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    for (int64_t i = 0; i < n; i += 64) {
        __mmask64 k = n - i >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (n - i)) - 1;
        __m512i m = _mm512_maskz_loadu_epi8(k, rows[0] + i);
        for (int64_t r = 1; r < nrows; r++) m = _mm512_max_epu8(m, _mm512_maskz_loadu_epi8(k, rows[r] + i));
        _mm512_mask_storeu_epi8(acc + i, k, m);
    }
}

AVX512 static int64_t hmax_avx512(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    int64_t i = 0;
    if (sw == 1)
        for (; i + 64 <= n; i += 64) {
            __m512i v = _mm512_loadu_si512(m + i);
            for (int64_t k = 1; k < kw; k++) v = _mm512_max_epu8(v, _mm512_loadu_si512(m + i + k * dw));
            _mm512_storeu_si512(y + i, v);
        }
    else if (sw == 2)
        for (; i + 32 <= n; i += 32) { /* the even bytes of 64: vpmovwb */
            __m256i v = _mm512_cvtepi16_epi8(_mm512_loadu_si512(m + 2 * i));
            for (int64_t k = 1; k < kw; k++)
                v = _mm256_max_epu8(v, _mm512_cvtepi16_epi8(_mm512_loadu_si512(m + 2 * i + k * dw)));
            _mm256_storeu_si256((__m256i *)(y + i), v);
        }
    return i;
}
#endif

/* ---- NEON ------------------------------------------------------------------------------------ */
#ifdef QPOOL_NEON
static void vmax_neon(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        uint8x16_t m = vld1q_u8(rows[0] + i);
        for (int64_t r = 1; r < nrows; r++) m = vmaxq_u8(m, vld1q_u8(rows[r] + i));
        vst1q_u8(acc + i, m);
    }
    for (; i < n; i++) {
        uint8_t m = rows[0][i];
        for (int64_t r = 1; r < nrows; r++) m = max_u8(m, rows[r][i]);
        acc[i] = m;
    }
}

static int64_t hmax_neon(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    int64_t i = 0;
    if (sw == 1)
        for (; i + 16 <= n; i += 16) {
            uint8x16_t v = vld1q_u8(m + i);
            for (int64_t k = 1; k < kw; k++) v = vmaxq_u8(v, vld1q_u8(m + i + k * dw));
            vst1q_u8(y + i, v);
        }
    else if (sw == 2)
        for (; i + 16 <= n; i += 16) { /* vld2's first register: the even bytes of 32 */
            uint8x16_t v = vld2q_u8(m + 2 * i).val[0];
            for (int64_t k = 1; k < kw; k++) v = vmaxq_u8(v, vld2q_u8(m + 2 * i + k * dw).val[0]);
            vst1q_u8(y + i, v);
        }
    return i;
}
#endif

/* ---- the level in use ------------------------------------------------------------------------ */
static atomic_int forced = -1, best = -1;

static int best_level(void)
{
    int level = atomic_load_explicit(&best, memory_order_relaxed);
    if (level >= 0) return level;
    level = 0;
#ifdef QPOOL_X86
    __builtin_cpu_init();
    level = __builtin_cpu_supports("avx512bw") ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
    const char *env = getenv("PTHCV_ISA"); /* a lower family on request, as isa.c's */
    if (env && strcmp(env, "avx2") == 0 && level > 1) level = 1;
    if (env && strcmp(env, "scalar") == 0) level = 0;
#endif
#ifdef QPOOL_NEON
    const char *env = getenv("PTHCV_ISA");
    level = env && strcmp(env, "scalar") == 0 ? 0 : 3;
#endif
    atomic_store_explicit(&best, level, memory_order_relaxed);
    return level;
}

static int level_now(void)
{
    int f = atomic_load_explicit(&forced, memory_order_relaxed);
    return f >= 0 ? f : best_level();
}

int qpool_force_level(int level)
{
    int b = best_level();
    int ok = level <= 0 || level == b || (b == 2 && level == 1);
    int set = level < 0 ? -1 : ok ? level : 0;
    atomic_store_explicit(&forced, set, memory_order_relaxed);
    return set < 0 ? b : set;
}

static void vmax_rows(int level, uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
#ifdef QPOOL_X86
    if (level == 2) return vmax_avx512(acc, rows, nrows, n);
    if (level == 1) return vmax_avx2(acc, rows, nrows, n);
#endif
#ifdef QPOOL_NEON
    if (level == 3) return vmax_neon(acc, rows, nrows, n);
#endif
    (void)level;
    vmax_scalar(acc, rows, nrows, n);
}

/* the interior: y[i] = max_k m[i sw + k dw], i < n; m has SLACK readable bytes past its taps */
static void hmax_run(int level, uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    int64_t done = 0;
#ifdef QPOOL_X86
    if (level == 2) done = hmax_avx512(y, m, n, kw, sw, dw);
    if (level == 1) done = hmax_avx2(y, m, n, kw, sw, dw);
#endif
#ifdef QPOOL_NEON
    if (level == 3) done = hmax_neon(y, m, n, kw, sw, dw);
#endif
    (void)level;
    hmax_scalar(y + done, m + done * sw, n - done, kw, sw, dw);
}

/* ---- the op ------------------------------------------------------------------------------------ */
typedef struct {
    const qpool_geom *g;
    const uint8_t *x;
    uint8_t *y;
    int level;
    atomic_int failed;
} qpool_ctx;

/* output row oh of one plane, the vertical max in buf (W + SLACK bytes) */
static void pool_row(const qpool_ctx *c, const uint8_t *plane, uint8_t *buf, uint8_t *y, int64_t oh)
{
    const qpool_geom *g = c->g;
    int64_t h0 = oh * g->sh - g->ph, h1 = h0 + (g->kh - 1) * g->dh + 1;
    if (h1 > g->H) h1 = g->H;
    while (h0 < 0) h0 += g->dh;
    const uint8_t *rows[64];
    int64_t nrows = 0;
    for (int64_t ih = h0; ih < h1; ih += g->dh) {
        if (nrows == 64) { /* a tall window: fold what is gathered into the buffer */
            vmax_rows(c->level, buf, rows, nrows, g->W);
            rows[0] = buf, nrows = 1;
        }
        rows[nrows++] = plane + ih * g->W;
    }
    if (nrows == 0) {
        memset(y, 0, (size_t)g->OW);
        return;
    }
    vmax_rows(c->level, buf, rows, nrows, g->W);
    for (int64_t ow = 0; ow < g->OW; ow++) {
        if (ow == g->lo && g->lo < g->hi) ow = g->hi; /* the interior is done below */
        if (ow >= g->OW) break;
        int64_t w0 = ow * g->sw - g->pw, w1 = w0 + (g->kw - 1) * g->dw + 1;
        if (w1 > g->W) w1 = g->W;
        while (w0 < 0) w0 += g->dw;
        uint8_t m = 0;
        for (int64_t iw = w0; iw < w1; iw += g->dw) m = max_u8(m, buf[iw]);
        y[ow] = m;
    }
    if (g->lo < g->hi)
        hmax_run(c->level, y + g->lo, buf + g->lo * g->sw - g->pw, g->hi - g->lo, g->kw, g->sw, g->dw);
}

static void qpool_task(void *vctx, int64_t begin, int64_t end)
{
    qpool_ctx *c = vctx;
    const qpool_geom *g = c->g;
    uint8_t *buf = malloc((size_t)(g->W + SLACK));
    if (!buf) {
        atomic_store(&c->failed, 1);
        return;
    }
    memset(buf + g->W, 0, SLACK);
    for (int64_t p = begin; p < end; p++)
        for (int64_t oh = 0; oh < g->OH; oh++)
            pool_row(c, c->x + p * g->H * g->W, buf, c->y + (p * g->OH + oh) * g->OW, oh);
    free(buf);
}

pthcv_tensor *qpool_max2d(pthcv_tensor *x, const qpool_geom *g)
{
    int nd = x->ndim;
    int64_t shape[PTHCV_MAX_DIMS];
    for (int d = 0; d < nd - 2; d++) shape[d] = x->shape[d];
    shape[nd - 2] = g->OH, shape[nd - 1] = g->OW;
    pthcv_tensor *xc = pthcv_tensor_contiguous(x);
    const uint8_t *xd = xc ? pthcv_tensor_data(xc) : NULL;
    pthcv_tensor *y = xd ? pthcv_tensor_new_uninit(PTHCV_QUINT8, nd, shape) : NULL;
    if (y) {
        y->qscheme = PTHCV_QSCHEME_PER_TENSOR_AFFINE, y->qscale = x->qscale, y->qzero_point = x->qzero_point;
        uint8_t *yd = y->numel ? pthcv_tensor_data(y) : NULL;
        if (y->numel && !yd) goto fail;
        if (y->numel) {
            qpool_ctx c = {.g = g, .x = xd, .y = yd, .level = level_now()};
            atomic_init(&c.failed, 0);
            int64_t planes = y->numel / (g->OH * g->OW);
            pthcv_parallel_for(planes, ops_grain(g->H * g->W * g->kh), qpool_task, &c);
            if (atomic_load(&c.failed)) {
                pthcv_fail(PTHCV_ERR_NOMEM, "max_pool2d: out of memory for a row of %lld bytes", (long long)g->W);
                goto fail;
            }
        }
    }
    pthcv_tensor_release(xc);
    return y;
fail:
    pthcv_tensor_release(y);
    pthcv_tensor_release(xc);
    return NULL;
}
