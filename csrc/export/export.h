/*
 * export.h -- what the writers (npy.c, npz.c, safetensors.c) share: files
 * written whole or not at all, and the .npy header. pthcv writes bytes as they
 * are in memory and declares them little-endian: it targets little-endian hosts.
 */
#ifndef PTHCV_EXPORT_H
#define PTHCV_EXPORT_H

#include "internal.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the writers declare little-endian data");

/* A file written to `path.tmp` and renamed over `path` only once complete,
 * so a failure never leaves a half-written file under the real name. */
typedef struct {
    const char *path; /* borrowed from the caller */
    char *tmp;
    FILE *f;
} pthcv_outfile;

/* Each returns PTHCV_OK or a status, with a message starting with the path. */
int pthcv_out_open(pthcv_outfile *o, const char *path);
int pthcv_out_write(pthcv_outfile *o, const void *p, size_t n);
/* Writes t's elements in row-major order, through a contiguous copy if needed. */
int pthcv_out_tensor(pthcv_outfile *o, pthcv_tensor *t);
/* Closes and renames; on failure removes the temporary file. */
int pthcv_out_commit(pthcv_outfile *o);
/* Gives up: closes and removes the temporary file, keeping the current error. */
void pthcv_out_abort(pthcv_outfile *o);

/* "<path>.tmp", malloc'd; NULL with the error set. */
char *pthcv_tmp_path(const char *path);
/* Re-raises the current error with "<path>: " in front, keeping its status. */
int pthcv_fail_in(const char *path);

/* The .npy v1.0 header of t, exactly as numpy.save writes it, padded so the
 * data starts at a multiple of 64 bytes. label names the tensor in messages
 * ("tensor 'w'"). Returns the header length, or -1 with the error set when
 * NumPy has no dtype for t. */
enum { PTHCV_NPY_HEADER_MAX = 1024 };
int pthcv_npy_header(const char *path, const char *label, const pthcv_tensor *t, char buf[PTHCV_NPY_HEADER_MAX]);

#endif /* PTHCV_EXPORT_H */
