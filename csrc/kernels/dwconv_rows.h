/*
 * dwconv_rows.h -- the row-block loop of the SIMD depthwise kernels
 * (internal; included once by each dwconv_<isa>.c, contract: dwconv.h).
 * Output rows [oy, oy + R) of a KH x KW kernel of stride S (all constants)
 * in one pass: input row i of the pass is loaded once and is tap row
 * ky = i - j * S of every output row j it belongs to. Each accumulator sums
 * its taps in (ky, kx) order, the order of the one-row loop.
 * The including file defines before it:
 *   AI, DW_ROWS (rows per pass, at most 4), dw_vec (its vector type),
 *   DW_LANES (floats per vector), dw_set1(x);
 *   row_taps(row, KW, S, t): t[kx] = the vector at row[ox * S + kx];
 *   store_row(a, oy, ox, acc, lo, hi): residual, clamp and store;
 *   dw_weights (the type of its weights argument wt) and
 *   DW_TAP(acc, wt, w, ky, kx, KH, KW, t): acc + weight (ky, kx) * t,
 *   w being the plane's float weights.
 */
static AI void row_block(const pthcv_dw_args *a, dw_weights wt, int64_t oy, const int R, const int KH, const int KW,
                         const int S)
{
    const dw_vec lo = dw_set1(a->lo), hi = dw_set1(a->hi);
    /* locals, not a->: the stores through out could alias *a for the compiler */
    const float *in = a->in + oy * S * a->ldi, *w = a->w;
    const int64_t ldi = a->ldi, ow = a->ow;
    (void)w;
    for (int64_t ox = 0; ox < ow; ox += DW_LANES) {
        dw_vec acc[4]; /* fixed sizes: arrays sized by R or KW would be VLAs on the stack */
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) acc[j] = dw_set1(a->bias);
#pragma GCC unroll 11
        for (int i = 0; i < (R - 1) * S + KH; i++) {
            dw_vec t[5];
            row_taps(in + i * ldi + ox * S, KW, S, t);
#pragma GCC unroll 4
            for (int j = 0; j < R; j++) {
                const int ky = i - j * S;
                if (ky < 0 || ky >= KH) continue;
#pragma GCC unroll 5
                for (int kx = 0; kx < KW; kx++) acc[j] = DW_TAP(acc[j], wt, w, ky, kx, KH, KW, t[kx]);
            }
        }
#pragma GCC unroll 4
        for (int j = 0; j < R; j++) store_row(a, oy + j, ox, acc[j], lo, hi);
    }
}

/* A whole plane in passes of DW_ROWS rows, the last 1 to 3 rows as a pair
 * and a single. */
static AI void plane_rows(const pthcv_dw_args *a, dw_weights wt, const int KH, const int KW, const int S)
{
    int64_t oy = 0;
    for (; oy + DW_ROWS <= a->oh; oy += DW_ROWS) row_block(a, wt, oy, DW_ROWS, KH, KW, S);
    if (oy + 2 <= a->oh) row_block(a, wt, oy, 2, KH, KW, S), oy += 2;
    if (oy < a->oh) row_block(a, wt, oy, 1, KH, KW, S);
}
