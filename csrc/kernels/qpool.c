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
#define AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
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

/* ---- AVX2 (and SSE2 below a vector) -------------------------------------------------------- */
/* A row shorter than a vector takes 16-byte steps; the last partial step
 * of a row of at least one vector is a whole step overlapping the one
 * before (a max computed twice is the same max). */
#ifdef QPOOL_X86
AVX2 static inline void vmax32(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t i)
{
    __m256i m = _mm256_loadu_si256((const __m256i *)(rows[0] + i));
    for (int64_t r = 1; r < nrows; r++) m = _mm256_max_epu8(m, _mm256_loadu_si256((const __m256i *)(rows[r] + i)));
    _mm256_storeu_si256((__m256i *)(acc + i), m);
}

AVX2 static inline void vmax16(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t i)
{
    __m128i m = _mm_loadu_si128((const __m128i *)(rows[0] + i));
    for (int64_t r = 1; r < nrows; r++) m = _mm_max_epu8(m, _mm_loadu_si128((const __m128i *)(rows[r] + i)));
    _mm_storeu_si128((__m128i *)(acc + i), m);
}

AVX2 static void vmax_avx2(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    int64_t i = 0;
    if (n >= 32) {
        for (; i + 32 <= n; i += 32) vmax32(acc, rows, nrows, i);
        if (i < n) vmax32(acc, rows, nrows, n - 32);
        return;
    }
    if (n >= 16) {
        vmax16(acc, rows, nrows, 0);
        if (n > 16) vmax16(acc, rows, nrows, n - 16);
        return;
    }
    vmax_scalar(acc, rows, nrows, n);
}

/* the even bytes of p[0 .. 63] / p[0 .. 31] */
AVX2 static inline __m256i even32_avx2(const uint8_t *p)
{
    const __m256i lo = _mm256_set1_epi16(0x00ff);
    __m256i a = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), lo);
    __m256i b = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)(p + 32)), lo);
    return _mm256_permute4x64_epi64(_mm256_packus_epi16(a, b), 0xd8);
}

AVX2 static inline __m128i even16_sse(const uint8_t *p)
{
    const __m128i lo = _mm_set1_epi16(0x00ff);
    __m128i a = _mm_and_si128(_mm_loadu_si128((const __m128i *)p), lo);
    return _mm_packus_epi16(a, _mm_and_si128(_mm_loadu_si128((const __m128i *)(p + 16)), lo));
}

/* outputs i .. i + 31 (i .. i + 15) of y[i] = max_k m[i sw + k dw], sw 1 or 2 */
AVX2 static inline void hmax32(uint8_t *y, const uint8_t *m, int64_t i, int64_t kw, int64_t sw, int64_t dw)
{
    const uint8_t *p = m + i * sw;
    __m256i v = sw == 1 ? _mm256_loadu_si256((const __m256i *)p) : even32_avx2(p);
    for (int64_t k = 1; k < kw; k++)
        v = _mm256_max_epu8(v, sw == 1 ? _mm256_loadu_si256((const __m256i *)(p + k * dw)) : even32_avx2(p + k * dw));
    _mm256_storeu_si256((__m256i *)(y + i), v);
}

AVX2 static inline void hmax16(uint8_t *y, const uint8_t *m, int64_t i, int64_t kw, int64_t sw, int64_t dw)
{
    const uint8_t *p = m + i * sw;
    __m128i v = sw == 1 ? _mm_loadu_si128((const __m128i *)p) : even16_sse(p);
    for (int64_t k = 1; k < kw; k++)
        v = _mm_max_epu8(v, sw == 1 ? _mm_loadu_si128((const __m128i *)(p + k * dw)) : even16_sse(p + k * dw));
    _mm_storeu_si128((__m128i *)(y + i), v);
}

AVX2 static int64_t hmax_avx2(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    if (sw != 1 && sw != 2) return 0;
    int64_t i = 0;
    if (n >= 32) {
        for (; i + 32 <= n; i += 32) hmax32(y, m, i, kw, sw, dw);
        if (i < n) hmax32(y, m, n - 32, kw, sw, dw);
        return n;
    }
    if (n >= 16) {
        hmax16(y, m, 0, kw, sw, dw);
        if (n > 16) hmax16(y, m, n - 16, kw, sw, dw);
        return n;
    }
    return 0;
}

/* ---- AVX-512 (BW): masked loads and stores for the last partial step ---------------------- */
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
    if (sw == 1)
        for (int64_t i = 0; i < n; i += 64) {
            __mmask64 lanes = n - i >= 64 ? ~(__mmask64)0 : ((__mmask64)1 << (n - i)) - 1;
            __m512i v = _mm512_maskz_loadu_epi8(lanes, m + i);
            for (int64_t k = 1; k < kw; k++) v = _mm512_max_epu8(v, _mm512_maskz_loadu_epi8(lanes, m + i + k * dw));
            _mm512_mask_storeu_epi8(y + i, lanes, v);
        }
    else if (sw == 2)
        for (int64_t i = 0; i < n; i += 32) { /* the even bytes of 64: vpmovwb; taps 2 i + k dw .. + 2 cnt - 2 */
            int64_t cnt = n - i >= 32 ? 32 : n - i;
            __mmask64 in = cnt == 32 ? ~(__mmask64)0 >> 1 : ((__mmask64)1 << (2 * cnt - 1)) - 1;
            __m256i v = _mm512_cvtepi16_epi8(_mm512_maskz_loadu_epi8(in, m + 2 * i));
            for (int64_t k = 1; k < kw; k++)
                v = _mm256_max_epu8(v, _mm512_cvtepi16_epi8(_mm512_maskz_loadu_epi8(in, m + 2 * i + k * dw)));
            _mm256_mask_storeu_epi8(y + i, (__mmask32)(cnt == 32 ? 0xffffffffu : (1u << cnt) - 1), v);
        }
    else
        return 0;
    return n;
}
#endif

/* ---- NEON: a whole step overlapping the one before for the last partial step ------------ */
#ifdef QPOOL_NEON
static inline void vmax16_neon(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t i)
{
    uint8x16_t m = vld1q_u8(rows[0] + i);
    for (int64_t r = 1; r < nrows; r++) m = vmaxq_u8(m, vld1q_u8(rows[r] + i));
    vst1q_u8(acc + i, m);
}

static void vmax_neon(uint8_t *acc, const uint8_t *const *rows, int64_t nrows, int64_t n)
{
    if (n < 16) return vmax_scalar(acc, rows, nrows, n);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) vmax16_neon(acc, rows, nrows, i);
    if (i < n) vmax16_neon(acc, rows, nrows, n - 16);
}

/* outputs i .. i + 15; sw 2: vld2's first register, the even bytes of 32 */
static inline void hmax16_neon(uint8_t *y, const uint8_t *m, int64_t i, int64_t kw, int64_t sw, int64_t dw)
{
    const uint8_t *p = m + i * sw;
    uint8x16_t v = sw == 1 ? vld1q_u8(p) : vld2q_u8(p).val[0];
    for (int64_t k = 1; k < kw; k++) v = vmaxq_u8(v, sw == 1 ? vld1q_u8(p + k * dw) : vld2q_u8(p + k * dw).val[0]);
    vst1q_u8(y + i, v);
}

static int64_t hmax_neon(uint8_t *y, const uint8_t *m, int64_t n, int64_t kw, int64_t sw, int64_t dw)
{
    if ((sw != 1 && sw != 2) || n < 16) return 0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) hmax16_neon(y, m, i, kw, sw, dw);
    if (i < n) hmax16_neon(y, m, n - 16, kw, sw, dw);
    return n;
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
    int avx512 = __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
    level = avx512 ? 2 : __builtin_cpu_supports("avx2") ? 1 : 0;
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
