/* dtype.c -- facts about element types, named as torch names them. */
#include "internal.h"
#include <string.h>

static const struct {
    const char *name;
    int size; /* bytes per storage element */
    int floating, complex, quantized;
} dtypes[PTHCV_DTYPE_COUNT] = {
    [PTHCV_FLOAT32] = {"float32", 4, 1, 0, 0},
    [PTHCV_FLOAT64] = {"float64", 8, 1, 0, 0},
    [PTHCV_FLOAT16] = {"float16", 2, 1, 0, 0},
    [PTHCV_BFLOAT16] = {"bfloat16", 2, 1, 0, 0},
    [PTHCV_INT8] = {"int8", 1, 0, 0, 0},
    [PTHCV_INT16] = {"int16", 2, 0, 0, 0},
    [PTHCV_INT32] = {"int32", 4, 0, 0, 0},
    [PTHCV_INT64] = {"int64", 8, 0, 0, 0},
    [PTHCV_UINT8] = {"uint8", 1, 0, 0, 0},
    [PTHCV_UINT16] = {"uint16", 2, 0, 0, 0},
    [PTHCV_UINT32] = {"uint32", 4, 0, 0, 0},
    [PTHCV_UINT64] = {"uint64", 8, 0, 0, 0},
    [PTHCV_BOOL] = {"bool", 1, 0, 0, 0},
    [PTHCV_COMPLEX32] = {"complex32", 4, 0, 1, 0}, /* two float16 */
    [PTHCV_COMPLEX64] = {"complex64", 8, 0, 1, 0},
    [PTHCV_COMPLEX128] = {"complex128", 16, 0, 1, 0},
    [PTHCV_QINT8] = {"qint8", 1, 0, 0, 1},
    [PTHCV_QUINT8] = {"quint8", 1, 0, 0, 1},
    [PTHCV_QINT32] = {"qint32", 4, 0, 0, 1},
    /* sub-byte types: torch's element_size() is 1, values are packed 2 or 4 to a byte */
    [PTHCV_QUINT4X2] = {"quint4x2", 1, 0, 0, 1},
    [PTHCV_QUINT2X4] = {"quint2x4", 1, 0, 0, 1},
    [PTHCV_FLOAT8_E4M3FN] = {"float8_e4m3fn", 1, 1, 0, 0},
    [PTHCV_FLOAT8_E5M2] = {"float8_e5m2", 1, 1, 0, 0},
    [PTHCV_FLOAT8_E4M3FNUZ] = {"float8_e4m3fnuz", 1, 1, 0, 0},
    [PTHCV_FLOAT8_E5M2FNUZ] = {"float8_e5m2fnuz", 1, 1, 0, 0},
};

static int valid(int dtype) { return dtype >= 0 && dtype < PTHCV_DTYPE_COUNT; }

const char *pthcv_dtype_name(int dtype) { return valid(dtype) ? dtypes[dtype].name : NULL; }
int pthcv_dtype_size(int dtype) { return valid(dtype) ? dtypes[dtype].size : 0; }
int pthcv_dtype_is_floating(int dtype) { return valid(dtype) && dtypes[dtype].floating; }
int pthcv_dtype_is_complex(int dtype) { return valid(dtype) && dtypes[dtype].complex; }
int pthcv_dtype_is_quantized(int dtype) { return valid(dtype) && dtypes[dtype].quantized; }

int pthcv_dtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < PTHCV_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return -1;
}

int pthcv_dtype_values_per_element(int dtype) { return dtype == PTHCV_QUINT4X2 ? 2 : dtype == PTHCV_QUINT2X4 ? 4 : 1; }
