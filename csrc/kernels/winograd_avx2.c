/*
 * winograd_avx2.c -- the Winograd F(4x4, 3x3) and F(2x2, 3x3) transforms on 8 tiles with
 * AVX2: one ymm lane per tile, lanes 0-3 one quad (4 adjacent tiles), 4-7
 * the other, so each 128-bit half of a register holds one quad and the
 * gathers and scatters are 4x4 transposes inside the halves.
 * Contract and operation order: winograd.h / pthcv_wino_*_scalar in
 * winograd.c (every operation here is the same IEEE operation in the same
 * order, so both give the same bits).
 */
#include "winograd.h"
#include <immintrin.h>

/* 4x4 transposes inside both 128-bit halves: r_j[l] = a_l[j] per half */
static inline void transpose4(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 r[4])
{
    __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpacklo_ps(a2, a3);
    __m256 t2 = _mm256_unpackhi_ps(a0, a1), t3 = _mm256_unpackhi_ps(a2, a3);
    r[0] = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(1, 0, 1, 0));
    r[1] = _mm256_shuffle_ps(t0, t1, _MM_SHUFFLE(3, 2, 3, 2));
    r[2] = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(1, 0, 1, 0));
    r[3] = _mm256_shuffle_ps(t2, t3, _MM_SHUFFLE(3, 2, 3, 2));
}

static inline __m256 k(float v) { return _mm256_set1_ps(v); }

/* bt6 of winograd.c on 8 lanes */
static inline void bt6(const __m256 d[6], __m256 r[6])
{
    __m256 a12 = _mm256_fmadd_ps(k(-4.0f), d[2], d[4]), b12 = _mm256_fmadd_ps(k(-4.0f), d[1], d[3]);
    __m256 a34 = _mm256_sub_ps(d[4], d[2]), b34 = _mm256_sub_ps(d[3], d[1]);
    r[0] = _mm256_fmadd_ps(k(4.0f), d[0], _mm256_fmadd_ps(k(-5.0f), d[2], d[4]));
    r[1] = _mm256_add_ps(a12, b12);
    r[2] = _mm256_sub_ps(a12, b12);
    r[3] = _mm256_fmadd_ps(k(2.0f), b34, a34);
    r[4] = _mm256_fmadd_ps(k(-2.0f), b34, a34);
    r[5] = _mm256_fmadd_ps(k(4.0f), d[1], _mm256_fmadd_ps(k(-5.0f), d[3], d[5]));
}

/* at6 of winograd.c on 8 lanes */
static inline void at6(const __m256 m[6], __m256 r[4])
{
    __m256 s12 = _mm256_add_ps(m[1], m[2]), d12 = _mm256_sub_ps(m[1], m[2]);
    __m256 s34 = _mm256_add_ps(m[3], m[4]), d34 = _mm256_sub_ps(m[3], m[4]);
    r[0] = _mm256_add_ps(_mm256_add_ps(m[0], s12), s34);
    r[1] = _mm256_fmadd_ps(k(2.0f), d34, d12);
    r[2] = _mm256_fmadd_ps(k(4.0f), s34, s12);
    r[3] = _mm256_add_ps(_mm256_fmadd_ps(k(8.0f), d34, d12), m[5]);
}

/* two quads' 128-bit rows: [pa + off | pb + off] */
static inline __m256 load2(const float *pa, const float *pb, int64_t off)
{
    return _mm256_setr_m128(_mm_loadu_ps(pa + off), _mm_loadu_ps(pb + off));
}

/* 4 values of row i of a quad's block, from column c0, through the
 * epilogue into d (pthcv_wino_finish on 4 lanes: max with lo, then min with
 * hi, operands in the order that keeps a NaN). store4: at o (the residual
 * at r, or NULL), inside the output; store4_cut: any block (only its rows x
 * cols: a block's last columns through masked loads and stores, which
 * touch nothing past the output's row). */
static inline void store4(__m128 v, float *o, const float *r, int clamp, __m128 lo, __m128 hi)
{
    if (r) v = _mm_add_ps(v, _mm_loadu_ps(r));
    if (clamp) v = _mm_min_ps(hi, _mm_max_ps(lo, v));
    _mm_storeu_ps(o, v);
}

static inline void store4_cut(__m128 v, const pthcv_wino_dst *d, const pthcv_wino_epi *e, int i, int c0)
{
    if (i >= d->rows || c0 >= d->cols) return;
    int64_t off = i * d->ld + c0;
    __m128 lo = _mm_set1_ps(e->lo), hi = _mm_set1_ps(e->hi);
    if (c0 + 4 <= d->cols) {
        store4(v, d->o + off, d->r ? d->r + off : NULL, e->clamp, lo, hi);
        return;
    }
    __m128i cols = _mm_cmpgt_epi32(_mm_set1_epi32(d->cols - c0), _mm_setr_epi32(0, 1, 2, 3));
    if (d->r) v = _mm_add_ps(v, _mm_maskload_ps(d->r + off, cols));
    if (e->clamp) v = _mm_min_ps(hi, _mm_max_ps(lo, v));
    _mm_maskstore_ps(d->o + off, cols, v);
}

/* The destinations of an out8, read once (the stores cannot change them) */
typedef struct {
    const pthcv_wino_dst *da, *db;
    const pthcv_wino_epi *e;
    float *oa, *ob;
    const float *ra, *rb;
    int64_t lda, ldb;
    int whole_a, whole_b, clamp; /* whole: the block is inside the output */
    __m128 lo, hi;
} stores;

static inline stores stores_of(const pthcv_wino_dst *da, const pthcv_wino_dst *db, const pthcv_wino_epi *e, int m)
{
    stores s = {.da = da, .db = db, .e = e, .oa = da->o, .ob = db->o, .ra = da->r, .rb = db->r};
    s.lda = da->ld, s.ldb = db->ld, s.clamp = e->clamp;
    s.whole_a = da->rows == m && da->cols == 4 * m;
    s.whole_b = db->rows == m && db->cols == 4 * m;
    s.lo = _mm_set1_ps(e->lo), s.hi = _mm_set1_ps(e->hi);
    return s;
}

/* both quads' 4 values of row i from column c0: lanes 0-3 to da, 4-7 to db */
static inline void store8(__m256 v, const stores *s, int i, int c0)
{
    __m128 va = _mm256_castps256_ps128(v), vb = _mm256_extractf128_ps(v, 1);
    int64_t oa = i * s->lda + c0, ob = i * s->ldb + c0;
    if (s->whole_a) store4(va, s->oa + oa, s->ra ? s->ra + oa : NULL, s->clamp, s->lo, s->hi);
    else store4_cut(va, s->da, s->e, i, c0);
    if (s->whole_b) store4(vb, s->ob + ob, s->rb ? s->rb + ob : NULL, s->clamp, s->lo, s->hi);
    else store4_cut(vb, s->db, s->e, i, c0);
}

void pthcv_wino_in8_avx2(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs)
{
    __m256 t[6][6];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        const float *ra = pa + i * ld, *rb = pb + i * ld;
        /* columns 0-3 of each tile's row: tile l's 4 values are floats
         * 4l..4l+3 of its quad's row, so a transpose gathers column j */
        __m256 d[6];
        transpose4(load2(ra, rb, 0), load2(ra, rb, 4), load2(ra, rb, 8), load2(ra, rb, 12), d);
        /* columns 4 and 5 are columns 0 and 1 of the next tile: shift each
         * half down one lane and bring in float 16 (17) of the quad's row */
        __m256 e4 = _mm256_setr_m128(_mm_load_ss(ra + 16), _mm_load_ss(rb + 16));
        __m256 e5 = _mm256_setr_m128(_mm_load_ss(ra + 17), _mm_load_ss(rb + 17));
        d[4] = _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(e4), _mm256_castps_si256(d[0]), 4));
        d[5] = _mm256_castsi256_ps(_mm256_alignr_epi8(_mm256_castps_si256(e5), _mm256_castps_si256(d[1]), 4));
        bt6(d, t[i]);
    }
#pragma GCC unroll 6
    for (int j = 0; j < 6; j++) {
        __m256 col[6] = {t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]}, r[6];
        bt6(col, r);
#pragma GCC unroll 6
        for (int i = 0; i < 6; i++) _mm256_storeu_ps(v + (i * 6 + j) * vs, r[i]);
    }
}

void pthcv_wino_out8_avx2(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                          const pthcv_wino_dst *db)
{
    __m256 t[6][4];
#pragma GCC unroll 6
    for (int i = 0; i < 6; i++) {
        __m256 row[6];
#pragma GCC unroll 6
        for (int j = 0; j < 6; j++) row[j] = _mm256_loadu_ps(m + (i * 6 + j) * ms);
        at6(row, t[i]);
    }
    __m256 y[4][4], b = _mm256_set1_ps(e->bias);
    stores st = stores_of(da, db, e, 4);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256 col[6] = {t[0][j], t[1][j], t[2][j], t[3][j], t[4][j], t[5][j]}, r[4];
        at6(col, r);
        for (int i = 0; i < 4; i++) y[i][j] = _mm256_add_ps(b, r[i]);
    }
    /* back to rows: tile l's 4 values of output row i are columns 4l..4l+3
     * of its quad's 16 */
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m256 u[4];
        transpose4(y[i][0], y[i][1], y[i][2], y[i][3], u);
#pragma GCC unroll 4
        for (int l = 0; l < 4; l++) store8(u[l], &st, i, 4 * l);
    }
}

/* ---- F(2x2, 3x3) ---------------------------------------------------------------- */
/* bt4 and at4 of winograd.c on 8 lanes */
static inline void bt4(const __m256 d[4], __m256 r[4])
{
    r[0] = _mm256_sub_ps(d[0], d[2]);
    r[1] = _mm256_add_ps(d[1], d[2]);
    r[2] = _mm256_sub_ps(d[2], d[1]);
    r[3] = _mm256_sub_ps(d[1], d[3]);
}

static inline void at4(const __m256 m[4], __m256 r[2])
{
    r[0] = _mm256_add_ps(_mm256_add_ps(m[0], m[1]), m[2]);
    r[1] = _mm256_sub_ps(_mm256_sub_ps(m[1], m[2]), m[3]);
}

void pthcv_wino23_in8_avx2(const float *pa, const float *pb, int64_t ld, float *v, int64_t vs)
{
    __m256 t[4][4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const float *ra = pa + i * ld, *rb = pb + i * ld;
        /* tile l starts at column 2l: columns j of the 4 tiles are floats
         * j, j+2, j+4, j+6 of the quad's row, picked by even/odd shuffles */
        __m256 a = load2(ra, rb, 0), b = load2(ra, rb, 4), c = load2(ra, rb, 2), e = load2(ra, rb, 6);
        __m256 d[4] = {
            _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)),
            _mm256_shuffle_ps(c, e, _MM_SHUFFLE(2, 0, 2, 0)), _mm256_shuffle_ps(c, e, _MM_SHUFFLE(3, 1, 3, 1))};
        bt4(d, t[i]);
    }
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        __m256 col[4] = {t[0][j], t[1][j], t[2][j], t[3][j]}, r[4];
        bt4(col, r);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) _mm256_storeu_ps(v + (i * 4 + j) * vs, r[i]);
    }
}

void pthcv_wino23_out8_avx2(const float *m, int64_t ms, const pthcv_wino_epi *e, const pthcv_wino_dst *da,
                            const pthcv_wino_dst *db)
{
    __m256 t[4][2];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        __m256 row[4];
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) row[j] = _mm256_loadu_ps(m + (i * 4 + j) * ms);
        at4(row, t[i]);
    }
    __m256 y[2][2], b = _mm256_set1_ps(e->bias);
    stores st = stores_of(da, db, e, 2);
#pragma GCC unroll 2
    for (int j = 0; j < 2; j++) {
        __m256 col[4] = {t[0][j], t[1][j], t[2][j], t[3][j]}, r[2];
        at4(col, r);
#pragma GCC unroll 2
        for (int i = 0; i < 2; i++) y[i][j] = _mm256_add_ps(b, r[i]);
    }
    /* tile l's 2 values of output row i are columns 2l, 2l+1 of its quad's 8 */
#pragma GCC unroll 2
    for (int i = 0; i < 2; i++) {
        store8(_mm256_unpacklo_ps(y[i][0], y[i][1]), &st, i, 0);
        store8(_mm256_unpackhi_ps(y[i][0], y[i][1]), &st, i, 4);
    }
}
