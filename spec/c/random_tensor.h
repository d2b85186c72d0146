/* random_tensor.h -- the seeded data of the kernels' C tests
 * (kernels_test.c, gconv_test.c): xorshift64 values uniform in [-1, 1),
 * the same sequence on every run and machine, and float32 tensors of
 * them. Included once per test program, after internal.h. */
#ifndef PTHCV_RANDOM_TENSOR_H
#define PTHCV_RANDOM_TENSOR_H

static const char *isa_names[PTHCV_ISA_COUNT] = {"scalar", "avx2", "avx512", "neon"};

static uint64_t rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) / (double)(1ull << 24)) * 2.0f - 1.0f;
}

static pthcv_tensor *random_tensor(int ndim, const int64_t *shape)
{
    pthcv_tensor *t = pthcv_tensor_new(PTHCV_FLOAT32, ndim, shape);
    float *d = pthcv_tensor_data(t);
    for (int64_t i = 0; i < t->numel; i++) d[i] = frand();
    return t;
}

#endif
