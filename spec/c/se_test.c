/* se_test.c -- checks of the squeeze-excitation kernel (csrc/kernels/se.c).
 *
 *   se_test
 *
 * For inputs of 1, 3, 7, 17, 33, 100 and 960 channels (squeezed to 1 .. 240:
 * rows and columns past and short of the 4-row blocks and the 16 lanes),
 * maps from 1x1 to 7x9, batch 1 and 2, with and without biases:
 *   1. pthcv_squeeze_excitation bit-identical to a reference written here
 *      from se.c's contract (the mean of each plane as the global average
 *      pool's, each matrix-vector product summed with product k in lane
 *      k % 16 and the lanes added in order, y = x * factor), at 1, 2 and 3
 *      threads;
 *   2. within 1e-5 of the same computation in double.
 * Built twice by `make ctest`, with the SIMD clones and scalar
 * (-DPTHCV_NO_CLONES): both must match the reference's bits, so every
 * instruction set gives the same result. Ends with "N passed, N failed";
 * exit status 1 if anything failed. */
#include "internal.h"
#include "kernels/ops.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int passed, failed;

#include "check.h"

#include "random_tensor.h"

enum { LANES = 16 };

/* act(b[r] + sum_k w[r][k] * in[k]) the contract's way (f) and in double (d) */
static void ref_matvec(float *f, double *d, const float *w, const float *b, const float *in_f, const double *in_d,
                       int64_t rows, int64_t cols, const pthcv_activation *act)
{
    for (int64_t r = 0; r < rows; r++) {
        float lane[LANES] = {0};
        double sd = 0;
        for (int64_t k = 0; k < cols; k++) {
            float p = w[r * cols + k] * in_f[k];
            lane[k % LANES] = lane[k % LANES] + p;
            sd += (double)w[r * cols + k] * in_d[k];
        }
        float s = 0.0f;
        for (int j = 0; j < LANES; j++) s = s + lane[j];
        f[r] = pthcv_act_scalar(b ? s + b[r] : s, act);
        d[r] = pthcv_act_scalar((float)(b ? sd + b[r] : sd), act);
    }
}

typedef struct {
    int64_t n, ch, sq, h, w;
    int bias;
    int act1, act2;
} se_case;

static void run_case(const se_case *c)
{
    int64_t hw = c->h * c->w, xs[4] = {c->n, c->ch, c->h, c->w}, w1s[4] = {c->sq, c->ch, 1, 1};
    int64_t w2s[2] = {c->ch, c->sq}, b1s[1] = {c->sq}, b2s[1] = {c->ch};
    pthcv_tensor *x = random_tensor(4, xs), *w1 = random_tensor(4, w1s), *w2 = random_tensor(2, w2s);
    pthcv_tensor *b1 = c->bias ? random_tensor(1, b1s) : NULL, *b2 = c->bias ? random_tensor(1, b2s) : NULL;
    const float *xd = pthcv_tensor_data(x), *w1d = pthcv_tensor_data(w1), *w2d = pthcv_tensor_data(w2);
    const float *b1d = b1 ? pthcv_tensor_data(b1) : NULL, *b2d = b2 ? pthcv_tensor_data(b2) : NULL;
    pthcv_activation a1 = {.kind = c->act1}, a2 = {.kind = c->act2};
    int64_t total = c->n * c->ch * hw;
    float *ref = malloc(sizeof(float) * (size_t)total), *mean_f = malloc(sizeof(float) * (size_t)c->ch);
    float *hid_f = malloc(sizeof(float) * (size_t)c->sq), *fac_f = malloc(sizeof(float) * (size_t)c->ch);
    double *ref_d = malloc(sizeof(double) * (size_t)total), *mean_d = malloc(sizeof(double) * (size_t)c->ch);
    double *hid_d = malloc(sizeof(double) * (size_t)c->sq), *fac_d = malloc(sizeof(double) * (size_t)c->ch);
    for (int64_t i = 0; i < c->n; i++) {
        for (int64_t k = 0; k < c->ch; k++) {
            const float *plane = xd + (i * c->ch + k) * hw;
            mean_f[k] = (float)(ops_sum_f64(plane, hw) / (double)hw);
            double s = 0;
            for (int64_t j = 0; j < hw; j++) s += plane[j];
            mean_d[k] = s / (double)hw;
        }
        ref_matvec(hid_f, hid_d, w1d, b1d, mean_f, mean_d, c->sq, c->ch, &a1);
        ref_matvec(fac_f, fac_d, w2d, b2d, hid_f, hid_d, c->ch, c->sq, &a2);
        for (int64_t k = 0; k < c->ch; k++)
            for (int64_t j = 0; j < hw; j++) {
                int64_t at = (i * c->ch + k) * hw + j;
                ref[at] = xd[at] * fac_f[k];
                ref_d[at] = xd[at] * fac_d[k];
            }
    }
    char name[96];
    snprintf(name, sizeof name, "n%lld c%lld->%lld %lldx%lld%s %s/%s", (long long)c->n, (long long)c->ch,
             (long long)c->sq, (long long)c->h, (long long)c->w, c->bias ? " bias" : "", pthcv_act_name(c->act1),
             pthcv_act_name(c->act2));
    for (int threads = 1; threads <= 3; threads++) {
        pthcv_set_num_threads(threads);
        pthcv_tensor *y = pthcv_squeeze_excitation(x, w1, b1, &a1, w2, b2, &a2);
        CHECK(y != NULL, "%s: %s", name, pthcv_last_error());
        if (!y) continue;
        const float *yd = pthcv_tensor_data(y);
        int64_t bad = -1;
        double err = 0, mx = 1e-3;
        for (int64_t j = 0; j < total; j++) {
            if (bad < 0 && memcmp(yd + j, ref + j, sizeof(float)) != 0) bad = j;
            if (fabs(ref_d[j]) > mx) mx = fabs(ref_d[j]);
            double e = fabs(yd[j] - ref_d[j]);
            if (!(e <= err)) err = e;
        }
        CHECK(bad < 0, "%s, %d threads: element %lld is %.9g, the reference's %.9g", name, threads, (long long)bad,
              bad < 0 ? 0.0 : yd[bad], bad < 0 ? 0.0 : ref[bad]);
        CHECK(err / mx < 1e-5, "%s, %d threads: %.3g from the double reference", name, threads, err / mx);
        pthcv_tensor_release(y);
    }
    pthcv_set_num_threads(1);
    free(ref), free(mean_f), free(hid_f), free(fac_f), free(ref_d), free(mean_d), free(hid_d), free(fac_d);
    pthcv_tensor_release(x), pthcv_tensor_release(w1), pthcv_tensor_release(w2);
    pthcv_tensor_release(b1), pthcv_tensor_release(b2);
}

int main(void)
{
    const se_case cases[] = {
        {1, 1, 1, 1, 1, 1, PTHCV_ACT_RELU, PTHCV_ACT_SIGMOID},
        {1, 3, 1, 7, 9, 0, PTHCV_ACT_SILU, PTHCV_ACT_HARDSIGMOID},
        {2, 7, 3, 5, 5, 1, PTHCV_ACT_RELU, PTHCV_ACT_HARDSIGMOID},
        {1, 17, 5, 3, 4, 1, PTHCV_ACT_SILU, PTHCV_ACT_SIGMOID},
        {2, 33, 8, 7, 7, 0, PTHCV_ACT_RELU, PTHCV_ACT_SIGMOID},
        {1, 100, 24, 2, 3, 1, PTHCV_ACT_SILU, PTHCV_ACT_SIGMOID},
        {1, 960, 240, 7, 7, 1, PTHCV_ACT_RELU, PTHCV_ACT_HARDSIGMOID},
    };
    (void)isa_names; /* random_tensor.h's, for the tests that switch instruction sets */
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(&cases[i]);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
