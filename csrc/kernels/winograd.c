/*
 * winograd.c -- 3x3 stride-1 convolutions by Winograd's F(4x4, 3x3)
 * (Lavin & Gray 2015; interpolation points 0, +-1, +-2, infinity).
 *
 * Each 4x4 output tile comes from a 6x6 input tile d:
 *     y = A^T [ sum_ci (G g G^T)[co][ci] (.) (B^T d B)[ci] ] A
 * so the 36 positions xi of the 6x6 transformed tile are 36 independent
 * matrix products M[xi] (tiles x cout) = V[xi] (tiles x cin) . U[xi] (cin x cout),
 * which run on the packed GEMM (gemm.c) as 36 problems: V is written by the
 * input transform straight into the micro-kernel's A layout (MR tiles per
 * panel), U is packed once per instruction set as B. 36 multiply-adds per
 * tile and channel pair instead of 144: 4x fewer, for the cost of the
 * transforms (O(channels), not O(channels^2)).
 *
 * The transforms are written over 8 tiles or 8 channels at a time in plain
 * loops that the compiler vectorises (PTHCV_SIMD: every clone computes the
 * same bits). Results differ from the direct convolution by rounding only
 * (relative ~1e-6 for trained-like weights); the sums over channels are in
 * the GEMM, so they do not depend on the thread count.
 */
#include "winograd.h"
#include <stdatomic.h>
#include <string.h>

enum { L = 8 };   /* lanes per transform step */

/* ---- weights: U[xi][ci][co] = (G g G^T)[xi], in double ----------------------------- */
void pthcv_wino_weights(const float *w, int64_t cout, int64_t cin, float *u)
{
    static const double G[6][3] = {
        { 1.0 / 4, 0, 0 },          { -1.0 / 6, -1.0 / 6, -1.0 / 6 }, { -1.0 / 6, 1.0 / 6, -1.0 / 6 },
        { 1.0 / 24, 1.0 / 12, 1.0 / 6 }, { 1.0 / 24, -1.0 / 12, 1.0 / 6 }, { 0, 0, 1 },
    };
    for (int64_t co = 0; co < cout; co++)
        for (int64_t ci = 0; ci < cin; ci++) {
            const float *g = w + (co * cin + ci) * 9;
            double t[6][3];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 3; j++)
                    t[i][j] = G[i][0] * g[0 * 3 + j] + G[i][1] * g[1 * 3 + j] + G[i][2] * g[2 * 3 + j];
            for (int i = 0; i < 6; i++)
                for (int j = 0; j < 6; j++)
                    u[((i * 6 + j) * cin + ci) * cout + co] =
                        (float)(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
        }
}

/* ---- input transform ------------------------------------------------------------------ */
typedef struct {
    const pthcv_wino_args *a;
    int64_t th, tw, T, Tp;
    float *v;                      /* [36][Tp / mr][cin][mr] */
    float *m;                      /* [36][T][cout] */
    int mr;
} wino_ctx;

/* r[i] = (B^T d)[i] for 8 lanes; d rows at stride L */
#define BT_ROWS(r, d, S)                                                                  \
    for (int l = 0; l < L; l++) {                                                         \
        float d0 = d[0 * S + l], d1 = d[1 * S + l], d2 = d[2 * S + l], d3 = d[3 * S + l], \
              d4 = d[4 * S + l], d5 = d[5 * S + l];                                       \
        r[0 * S + l] = 4.0f * d0 - 5.0f * d2 + d4;                                        \
        r[1 * S + l] = -4.0f * d1 - 4.0f * d2 + d3 + d4;                                  \
        r[2 * S + l] = 4.0f * d1 - 4.0f * d2 - d3 + d4;                                   \
        r[3 * S + l] = -2.0f * d1 - d2 + 2.0f * d3 + d4;                                  \
        r[4 * S + l] = 2.0f * d1 - d2 - 2.0f * d3 + d4;                                   \
        r[5 * S + l] = 4.0f * d1 - 5.0f * d3 + d5;                                        \
    }

/* 8 tiles' 6x6 inputs d[i][j][l] -> V[i][j][l] = (B^T d B)[i][j] */
PTHCV_SIMD static void input_tiles(const float *restrict d, float *restrict v)
{
    float t[6][6][L];
    for (int j = 0; j < 6; j++) {
        const float *dj = d + j * L;
        float *tj = &t[0][j][0];
        BT_ROWS(tj, dj, 6 * L)
    }
    for (int i = 0; i < 6; i++) {
        const float *ti = &t[i][0][0];
        float *vi = v + i * 6 * L;
        BT_ROWS(vi, ti, L)
    }
}

static void input_task(void *vctx, int64_t begin, int64_t end)
{
    const wino_ctx *x = vctx;
    const pthcv_wino_args *a = x->a;
    int mr = x->mr;
    float d[36 * L], v[36 * L];
    for (int64_t ci = begin; ci < end; ci++) {
        const float *plane = a->x + ci * a->h * a->w;
        for (int64_t t0 = 0; t0 < x->Tp; t0 += L) {
            /* gather 8 tiles (zeros outside the image and past the last tile) */
            for (int l = 0; l < L; l++) {
                int64_t t = t0 + l;
                if (t >= x->T) {
                    for (int k = 0; k < 36; k++) d[k * L + l] = 0.0f;
                    continue;
                }
                int64_t y0 = t / x->tw * 4 - a->ph, x0 = t % x->tw * 4 - a->pw;
                for (int i = 0; i < 6; i++) {
                    int64_t yy = y0 + i;
                    const float *row = plane + yy * a->w;
                    int inside_y = yy >= 0 && yy < a->h;
                    if (inside_y && x0 >= 0 && x0 + 6 <= a->w) {
                        for (int j = 0; j < 6; j++) d[(i * 6 + j) * L + l] = row[x0 + j];
                    } else {
                        for (int j = 0; j < 6; j++) {
                            int64_t xx = x0 + j;
                            d[(i * 6 + j) * L + l] = inside_y && xx >= 0 && xx < a->w ? row[xx] : 0.0f;
                        }
                    }
                }
            }
            input_tiles(d, v);
            /* scatter: V[xi] panel (t / mr), row ci, lane t % mr */
            for (int l = 0; l < L; l++) {
                int64_t t = t0 + l;
                if (t >= x->Tp) break;
                float *dst = x->v + (t / mr * a->cin + ci) * mr + t % mr;
                for (int k = 0; k < 36; k++) dst[k * x->Tp * a->cin] = v[k * L + l];
            }
        }
    }
}

/* ---- output transform ------------------------------------------------------------------ */
/* 8 channels' 6x6 m[i][j][l] -> y[i][j][l] (4x4) = (A^T m A)[i][j] */
#define AT_ROWS(r, m, S)                                                                  \
    for (int l = 0; l < L; l++) {                                                         \
        float m0 = m[0 * S + l], m1 = m[1 * S + l], m2 = m[2 * S + l], m3 = m[3 * S + l], \
              m4 = m[4 * S + l], m5 = m[5 * S + l];                                       \
        float s12 = m1 + m2, d12 = m1 - m2, s34 = m3 + m4, d34 = m3 - m4;                 \
        r[0 * S + l] = m0 + s12 + s34;                                                    \
        r[1 * S + l] = d12 + 2.0f * d34;                                                  \
        r[2 * S + l] = s12 + 4.0f * s34;                                                  \
        r[3 * S + l] = d12 + 8.0f * d34 + m5;                                             \
    }

PTHCV_SIMD static void output_tiles(const float *restrict m, float *restrict y)
{
    float t[4][6][L];
    for (int j = 0; j < 6; j++) {
        const float *mj = m + j * L;
        float *tj = &t[0][j][0];
        AT_ROWS(tj, mj, 6 * L)
    }
    for (int i = 0; i < 4; i++) {
        const float *ti = &t[i][0][0];
        float *yi = y + i * 4 * L;
        AT_ROWS(yi, ti, L)
    }
}

static void output_task(void *vctx, int64_t begin, int64_t end)
{
    const wino_ctx *x = vctx;
    const pthcv_wino_args *a = x->a;
    float m[36 * L], y[16 * L];
    int64_t plane = a->oh * a->ow;
    for (int64_t t = begin; t < end; t++) {
        int64_t oy0 = t / x->tw * 4, ox0 = t % x->tw * 4;
        int ny = (int)(a->oh - oy0 < 4 ? a->oh - oy0 : 4), nx = (int)(a->ow - ox0 < 4 ? a->ow - ox0 : 4);
        for (int64_t c0 = 0; c0 < a->cout; c0 += L) {
            int nl = (int)(a->cout - c0 < L ? a->cout - c0 : L);
            const float *src = x->m + t * a->cout + c0;
            for (int k = 0; k < 36; k++) {
                const float *s = src + k * x->T * a->cout;
                int l = 0;
                for (; l < nl; l++) m[k * L + l] = s[l];
                for (; l < L; l++) m[k * L + l] = 0.0f;
            }
            output_tiles(m, y);
            for (int l = 0; l < nl; l++) {
                int64_t co = c0 + l;
                float b = a->bias ? a->bias[co] : 0.0f;
                float *o = a->out + co * plane + oy0 * a->ow + ox0;
                const float *r = a->res ? a->res + co * plane + oy0 * a->ow + ox0 : NULL;
                for (int i = 0; i < ny; i++, o += a->ow) {
                    float v[4];
                    for (int j = 0; j < 4; j++) v[j] = b + y[(i * 4 + j) * L + l];
                    if (r) {
                        for (int j = 0; j < nx; j++) v[j] += r[j];
                        r += a->ow;
                    }
                    if (a->fused) {
                        for (int j = 0; j < 4; j++) v[j] = v[j] < a->lo ? a->lo : v[j] > a->hi ? a->hi : v[j];
                        for (int j = 0; j < nx; j++) o[j] = v[j];
                    } else {
                        for (int j = 0; j < nx; j++) o[j] = v[j];
                        pthcv_act_row(o, nx, &a->act);
                    }
                }
            }
        }
    }
}

/* ---- the whole convolution of one image ------------------------------------------------ */
int pthcv_wino_forward(const pthcv_wino_args *a)
{
    const pthcv_gemm_kernel *k = a->kernel;
    wino_ctx x = { .a = a, .mr = k->mr };
    x.th = (a->oh + 3) / 4, x.tw = (a->ow + 3) / 4, x.T = x.th * x.tw;
    x.Tp = (x.T + k->mr - 1) / k->mr * k->mr;
    x.v = pthcv_scratch(PTHCV_SCRATCH_WINO_V, (size_t)(36 * x.Tp * a->cin));
    x.m = pthcv_scratch(PTHCV_SCRATCH_WINO_M, (size_t)(36 * x.T * a->cout));
    if (!x.v || !x.m) return pthcv_fail(PTHCV_ERR_NOMEM, "conv2d: out of memory for the Winograd buffers");
    pthcv_parallel_for(a->cin, 1, input_task, &x);
    pthcv_gemm_problem g = {
        .kernel = k, .M = x.T, .N = a->cout, .K = a->cin, .nprob = 36, .nsets = 36,
        .a_packed = x.v, .a_sstride = x.Tp * a->cin, .b_packed = a->u, .b_sstride = a->u_sstride,
        .c = x.m, .ldc = a->cout, .c_pstride = x.T * a->cout, .act = { PTHCV_ACT_NONE, 0, 0 },
    };
    int st = pthcv_gemm_run(&g);
    if (st != PTHCV_OK) return st;
    pthcv_parallel_for(x.T, 1, output_task, &x);
    return PTHCV_OK;
}
