/* bench_kernels.c -- GFLOP/s of the convolution kernels on typical layers
 * (ResNet-18 and MobileNetV2 shapes, batch 1), at 1 and 2 threads, float32
 * and int8 (pthcv_qconv2d; "GFLOP/s" then counts int8 multiply-adds as 2
 * operations, as float32's). `build/bench_kernels [isa] [int8]`
 *
 *   make && cc -O2 -Icsrc -o build/bench_kernels tools/bench_kernels.c \
 *       -Lbuild -lpthcv -Wl,-rpath,$PWD/build && build/bench_kernels [isa]
 *
 * Each layer runs until 0.3 s have passed; the median time is reported. */
#define _GNU_SOURCE
#include "pthcv.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double clock_of(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now(void) { return clock_of(CLOCK_MONOTONIC); }
static double cpu(void) { return clock_of(CLOCK_PROCESS_CPUTIME_ID); }

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct {
    const char *name;
    int cin, h, cout, k, stride, pad, groups;
} layer;

/* Median wall time; *gflops from it, *cpu_gflops per CPU-second (all threads'
 * CPU time: on a busy machine this still tells the kernels' efficiency). */
static int int8;

static double bench(const layer *l, int threads, double *gflops, double *cpu_gflops)
{
    int64_t xs[4] = { 1, l->cin, l->h, l->h }, ws[4] = { l->cout, l->cin / l->groups, l->k, l->k }, bs[1] = { l->cout };
    pthcv_tensor *x = pthcv_tensor_new(PTHCV_FLOAT32, 4, xs), *w = pthcv_tensor_new(PTHCV_FLOAT32, 4, ws);
    pthcv_tensor *b = pthcv_tensor_new(PTHCV_FLOAT32, 1, bs);
    float *xd = pthcv_tensor_data(x), *wd = pthcv_tensor_data(w);
    for (int64_t i = 0; i < x->numel; i++) xd[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    for (int64_t i = 0; i < w->numel; i++) wd[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    pthcv_conv2d_params p = { { l->stride, l->stride }, { l->pad, l->pad }, { 1, 1 }, l->groups, 0, { PTHCV_ACT_RELU, 0, 0 } };
    pthcv_conv2d *c = int8 ? NULL : pthcv_conv2d_prepare(w, b, &p);
    pthcv_tensor *wq = int8 ? pthcv_quantize_weight(w) : NULL, *xq = int8 ? pthcv_quantize_per_tensor(x, 1.0 / 255, 128) : NULL;
    pthcv_qconv2d *qc = int8 ? pthcv_qconv2d_prepare(wq, b, &p, 0.05, 0) : NULL;
    pthcv_set_num_threads(threads);
    double t[1000];
    int n = 0;
    double start = now(), cstart = cpu();
    while (n < 1000 && (n < 5 || now() - start < 0.3)) {
        double t0 = now();
        pthcv_tensor *y = int8 ? pthcv_qconv2d_forward(qc, xq, NULL, 0) : pthcv_conv2d_forward(c, x, NULL);
        t[n++] = now() - t0;
        if (!y) {
            fprintf(stderr, "%s: %s\n", l->name, pthcv_last_error());
            exit(1);
        }
        pthcv_tensor_release(y);
    }
    double ctime = (cpu() - cstart) / n;
    qsort(t, (size_t)n, sizeof t[0], cmp);
    int oh = (l->h + 2 * l->pad - l->k) / l->stride + 1;
    double flops = 2.0 * l->cout * oh * oh * (double)(l->cin / l->groups) * l->k * l->k;
    *gflops = flops / t[n / 2] * 1e-9;
    *cpu_gflops = flops / ctime * 1e-9 * threads;
    pthcv_conv2d_free(c);
    pthcv_qconv2d_free(qc);
    pthcv_tensor_release(wq), pthcv_tensor_release(xq);
    pthcv_tensor_release(x), pthcv_tensor_release(w), pthcv_tensor_release(b);
    return t[n / 2];
}

int main(int argc, char **argv)
{
    int8 = argc > 2 && strcmp(argv[2], "int8") == 0;
    if (argc > 1 && strcmp(argv[1], "auto") != 0 && pthcv_set_isa(argv[1]) != PTHCV_OK) {
        fprintf(stderr, "%s\n", pthcv_last_error());
        return 1;
    }
    printf("# %s\n", pthcv_cpu_info());
    static const layer layers[] = {
        { "gemm 1x1 256->256 56x56", 256, 56, 256, 1, 1, 0, 1 },
        { "r18 conv1 7x7 s2 3->64", 3, 224, 64, 7, 2, 3, 1 },
        { "r18 3x3 64->64 56x56", 64, 56, 64, 3, 1, 1, 1 },
        { "r18 3x3 s2 64->128", 64, 56, 128, 3, 2, 1, 1 },
        { "r18 3x3 s2 128->256", 128, 28, 256, 3, 2, 1, 1 },
        { "r18 3x3 s2 256->512", 256, 14, 512, 3, 2, 1, 1 },
        { "mb2 stem 3x3 s2 3->32", 3, 224, 32, 3, 2, 1, 1 },
        { "r18 3x3 128->128 28x28", 128, 28, 128, 3, 1, 1, 1 },
        { "r18 3x3 256->256 14x14", 256, 14, 256, 3, 1, 1, 1 },
        { "r18 3x3 512->512 7x7", 512, 7, 512, 3, 1, 1, 1 },
        { "mb2 1x1 32->192 56x56", 32, 56, 192, 1, 1, 0, 1 },
        { "mb2 1x1 192->32 56x56", 192, 56, 32, 1, 1, 0, 1 },
        { "mb2 dw3x3 144 56x56", 144, 56, 144, 3, 1, 1, 144 },
        { "mb2 dw3x3 s2 144 56x56", 144, 56, 144, 3, 2, 1, 144 },
        { "mb2 dw3x3 960 7x7", 960, 7, 960, 3, 1, 1, 960 },
    };
    printf("GFLOP/s from the median wall time; cpu: per CPU-second x threads (unaffected by other load)\n");
    printf("%-28s %9s %8s %8s %9s %8s %8s\n", "layer", "1T ms", "GFLOP/s", "cpu", "2T ms", "GFLOP/s", "cpu");
    for (size_t i = 0; i < sizeof layers / sizeof layers[0]; i++) {
        double g1, g2, c1, c2;
        double t1 = bench(&layers[i], 1, &g1, &c1), t2 = bench(&layers[i], 2, &g2, &c2);
        printf("%-28s %9.3f %8.1f %8.1f %9.3f %8.1f %8.1f\n", layers[i].name, t1 * 1e3, g1, c1, t2 * 1e3, g2, c2);
    }
    return 0;
}
