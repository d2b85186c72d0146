/*
 * gconv_tile.h -- the register tile of the SIMD grouped kernels (internal;
 * included once by each gconv_<isa>.c, contract: gconv.h).
 *
 * The band's output is cut into segments of up to GC_LANES columns of one
 * row (a 7-wide map: one segment a row). A tile is MB output channels by V
 * segments (V = 1 or 2: two segments may lie on two rows); for each input
 * channel and tap row, the 3 tap vectors of each segment are loaded once
 * (plain loads: stride 2 rows hold their even columns, then their odd ones)
 * and feed all MB x V accumulators, the weights broadcast from memory. Each
 * accumulator starts from the bias and sums its terms in (ci, ky, kx) order.
 *
 * The including file defines before it: AI; gc_vec, GC_LANES, gc_set1(x),
 * gc_load(p); GC_MB (the most output channels of a tile, at most 8);
 * GC_FMA(w, t, acc), acc + w * t rounded once; store_seg(out, res, n, acc,
 * lo, hi, clamp_lo, clamp_hi): adds res (unless NULL), clamps where asked
 * and stores the first n lanes.
 */

typedef struct {
    int64_t in, out, n; /* offsets in an input and an output plane, columns */
} gc_seg;

static AI gc_seg seg_at(const pthcv_gconv_band *b, int64_t s, int64_t per_row, const int S)
{
    int64_t oy = s / per_row, ox = s % per_row * GC_LANES;
    return (gc_seg){oy * S * b->ldi + ox, oy * b->ow + ox, b->ow - ox < GC_LANES ? b->ow - ox : GC_LANES};
}

/* Output channels [co, co + MB) at the V segments sg. */
static AI void tile(const pthcv_gconv_band *b, int co, const gc_seg *sg, const int MB, const int V, const int S)
{
    gc_vec acc[GC_MB][2]; /* fixed sizes: arrays sized by MB or V would be VLAs */
#pragma GCC unroll 8
    for (int m = 0; m < MB; m++) {
        gc_vec b0 = gc_set1((b->bias ? b->bias[co + m] : 0.0f) + 0.0f);
#pragma GCC unroll 2
        for (int v = 0; v < V; v++) acc[m][v] = b0;
    }
    const int64_t wstride = (int64_t)b->cin_g * 9, ldi = b->ldi, odd = b->odd;
    const float *w = b->w + co * wstride, *in = b->in;
    for (int ci = 0; ci < b->cin_g; ci++, w += 9, in += b->lds) {
#pragma GCC unroll 3
        for (int ky = 0; ky < 3; ky++) {
            gc_vec t[2][3];
#pragma GCC unroll 2
            for (int v = 0; v < V; v++) {
                const float *row = in + ky * ldi + sg[v].in;
                t[v][0] = gc_load(row);
                t[v][1] = gc_load(row + (S == 1 ? 1 : odd));
                t[v][2] = gc_load(row + (S == 1 ? 2 : 1));
            }
#pragma GCC unroll 3
            for (int kx = 0; kx < 3; kx++)
#pragma GCC unroll 8
                for (int m = 0; m < MB; m++) {
                    gc_vec wv = gc_set1(w[m * wstride + ky * 3 + kx]);
#pragma GCC unroll 2
                    for (int v = 0; v < V; v++) acc[m][v] = GC_FMA(wv, t[v][kx], acc[m][v]);
                }
        }
    }
    const gc_vec lo = gc_set1(b->lo), hi = gc_set1(b->hi);
#pragma GCC unroll 8
    for (int m = 0; m < MB; m++)
#pragma GCC unroll 2
        for (int v = 0; v < V; v++)
            store_seg(b->out + (co + m) * b->ocs + sg[v].out, b->res ? b->res + (co + m) * b->rcs + sg[v].out : NULL,
                      sg[v].n, acc[m][v], lo, hi, b->lo > -INFINITY, b->hi < INFINITY);
}

/* A tile of mb output channels (mb > GC_MB: GC_MB), constant in each case. */
static AI void tile_mb(const pthcv_gconv_band *b, int co, int mb, const gc_seg *sg, const int V, const int S)
{
    switch (mb < GC_MB ? mb : GC_MB) {
    case 1: tile(b, co, sg, 1, V, S); break;
    case 2: tile(b, co, sg, 2, V, S); break;
    case 3: tile(b, co, sg, 3, V, S); break;
#if GC_MB > 4
    case 4: tile(b, co, sg, 4, V, S); break;
    case 5: tile(b, co, sg, 5, V, S); break;
    case 6: tile(b, co, sg, 6, V, S); break;
    case 7: tile(b, co, sg, 7, V, S); break;
#endif
    default: tile(b, co, sg, GC_MB, V, S); break;
    }
}

/* The whole band: output channels in blocks of GC_MB, each over all the
 * segments two at a time. */
static AI void band_s(const pthcv_gconv_band *b, const int S)
{
    int64_t per_row = (b->ow + GC_LANES - 1) / GC_LANES, nseg = b->rows * per_row;
    for (int co = 0; co < b->cout_g; co += GC_MB) {
        int mb = b->cout_g - co;
        int64_t s = 0;
        for (; s + 2 <= nseg; s += 2) {
            gc_seg sg[2] = {seg_at(b, s, per_row, S), seg_at(b, s + 1, per_row, S)};
            tile_mb(b, co, mb, sg, 2, S);
        }
        if (s < nseg) {
            gc_seg sg[1] = {seg_at(b, s, per_row, S)};
            tile_mb(b, co, mb, sg, 1, S);
        }
    }
}

static AI void gconv_entry(const pthcv_gconv_band *b)
{
    assert(b->in && b->out && b->w && b->cin_g > 0 && b->cout_g > 0 && b->rows > 0 && b->ow > 0);
    assert(b->stride == 1 ? b->ldi >= b->ow + 2 : b->stride == 2 && b->odd >= b->ow + 1 && b->ldi >= b->odd + b->ow);
    if (b->stride == 1) band_s(b, 1);
    else band_s(b, 2);
}
