/* npy.c -- NumPy .npy files (format version 1.0), as numpy.save writes them. */
#include "export.h"
#include <string.h>

/* NumPy's dtype.str for each pthcv dtype it has; NULL where it has none. */
static const char *npy_descr(int dtype)
{
    switch (dtype) {
    case PTHCV_FLOAT32: return "<f4";
    case PTHCV_FLOAT64: return "<f8";
    case PTHCV_FLOAT16: return "<f2";
    case PTHCV_INT8: return "|i1";
    case PTHCV_INT16: return "<i2";
    case PTHCV_INT32: return "<i4";
    case PTHCV_INT64: return "<i8";
    case PTHCV_UINT8: return "|u1";
    case PTHCV_UINT16: return "<u2";
    case PTHCV_UINT32: return "<u4";
    case PTHCV_UINT64: return "<u8";
    case PTHCV_BOOL: return "|b1";
    case PTHCV_COMPLEX64: return "<c8";
    case PTHCV_COMPLEX128: return "<c16";
    default: return NULL;
    }
}

int pthcv_npy_header(const char *path, const char *label, const pthcv_tensor *t, char buf[PTHCV_NPY_HEADER_MAX])
{
    const char *descr = npy_descr(t->dtype), *name = pthcv_dtype_name(t->dtype);
    if (!descr && pthcv_dtype_is_quantized(t->dtype))
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: %s is quantized (%s), which NumPy cannot hold; "
                          "dequantize it first",
                          path, label, name),
               -1;
    if (!descr)
        return pthcv_fail(PTHCV_ERR_UNSUPPORTED,
                          "%s: %s is %s, which NumPy has no dtype for; "
                          "convert it first (to float32, say)",
                          path, label, name ? name : "of an unknown dtype"),
               -1;

    /* magic, version 1.0, then a little-endian uint16 header length */
    memcpy(buf, "\x93NUMPY\x01\x00\0\0", 10);
    int len = 10;
    len += snprintf(buf + len, 200, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int i = 0; i < t->ndim; i++) /* at most 16 * 22 bytes */
        len += snprintf(buf + len, 32, "%s%lld", i ? ", " : "", (long long)t->shape[i]);
    len += snprintf(buf + len, 8, "%s), }", t->ndim == 1 ? "," : ""); /* Python's "(n,)" */
    if (t->ndim > 0) {
        /* numpy >= 1.23 leaves room for the first size to grow to 21 digits */
        char digits[24];
        int spare = 21 - snprintf(digits, sizeof digits, "%lld", (long long)t->shape[0]);
        memset(buf + len, ' ', (size_t)spare);
        len += spare;
    }
    /* numpy pads with spaces and a newline to the next multiple of 64, a full
     * 64 more when already aligned */
    int pad = 64 - (len + 1) % 64;
    memset(buf + len, ' ', (size_t)pad);
    len += pad;
    buf[len++] = '\n';
    buf[8] = (char)((len - 10) & 0xFF);
    buf[9] = (char)((len - 10) >> 8);
    return len;
}

int pthcv_save_npy(const char *path, pthcv_tensor *t)
{
    char header[PTHCV_NPY_HEADER_MAX];
    pthcv_outfile o;
    if (!path || !t) return pthcv_fail(PTHCV_ERR_ARG, "pthcv_save_npy: no %s", path ? "tensor" : "path");
    int hlen = pthcv_npy_header(path, "the tensor", t, header);
    if (hlen < 0) return pthcv_last_status();
    int rc = pthcv_out_open(&o, path);
    if (rc != PTHCV_OK) return rc;
    if ((rc = pthcv_out_write(&o, header, (size_t)hlen)) != PTHCV_OK || (rc = pthcv_out_tensor(&o, t)) != PTHCV_OK) {
        pthcv_out_abort(&o);
        return rc;
    }
    return pthcv_out_commit(&o);
}
