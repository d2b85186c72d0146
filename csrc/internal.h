/*
 * internal.h -- what the parts of the C core share and users do not see:
 * error reporting, storages and their sources, checked arithmetic.
 */
#ifndef PTHCV_INTERNAL_H
#define PTHCV_INTERNAL_H

#include "pthcv.h"
#include <stdarg.h>
#include <stdio.h>

/* ---- errors (error.c) ---------------------------------------------------
 * pthcv_fail sets the thread's status and message and returns the status, so
 * a failing path reads `return pthcv_fail(PTHCV_ERR_FORMAT, "%s: ...", ...)`.
 * The message is always printable UTF-8: whatever the arguments hold, bytes
 * that are not valid UTF-8 and control characters come out as \xNN (line
 * ends and tabs as spaces), and a message cut at its size ends in "...".
 * Both are exported for libpthcv_imgcodecs.so. */
PTHCV_API int pthcv_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
PTHCV_API void pthcv_clear_error(void);
/* A string taken from a file (a global's name, a record, a key), escaped for
 * a message: printable UTF-8 stays, other bytes and control characters become
 * \xNN and a backslash \\, so the message shows exactly what the file holds
 * without passing raw bytes on. Cut to about 250 bytes ("..."). The result
 * lives in one of 8 per-thread buffers used in turn: good for the arguments
 * of one message, not for keeping. */
const char *pthcv_esc(const char *s);
const char *pthcv_esc_n(const char *s, size_t n);
/* Whether s[0..n) is printable UTF-8 as pthcv_esc would leave it unchanged
 * (valid sequences, no control character), so a name may stand in the tree
 * and in messages as it is (npz member names, safetensors keys). */
int pthcv_name_is_printable(const char *s, size_t n);
/* Whether s (NUL-terminated) is valid UTF-8; when not, *bad is the offset
 * of the first byte that starts no valid sequence. Writers whose formats
 * name tensors in UTF-8 (npz members, safetensors' JSON keys) check with it. */
int pthcv_utf8_valid(const char *s, size_t *bad);
/* A failure in a pointer-returning function: sets the error, returns NULL. */
#define PTHCV_FAIL_NULL(status, ...) (pthcv_fail((status), __VA_ARGS__), (void *)0)

/* ---- checked arithmetic on sizes that come from files ------------------- */
static inline int pthcv_mul_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline int pthcv_add_ok(int64_t a, int64_t b, int64_t *out) { return !__builtin_add_overflow(a, b, out); }

/* ---- sources: where a storage's bytes live ------------------------------
 * A source is the opened file, shared (reference counted) by every storage
 * read from it, so tensors outlive pthcv_close. read_record copies `nbytes`
 * bytes of one storage into dst. */
typedef struct pthcv_source pthcv_source;
struct pthcv_source {
    int refcount;
    char *path; /* for messages */
    void *impl; /* zip_t*, or a mapped file */
    int (*read)(pthcv_source *src, const pthcv_storage *st, void *dst);
    void (*destroy)(pthcv_source *src); /* frees impl; pthcv_source_release frees path and src */
    /* The whole file, mapped private (copy-on-write): a storage whose bytes
     * lie in it as they are (stored, aligned, native byte order) points
     * there instead of being copied; see pthcv_storage_materialize. */
    unsigned char *map;
    size_t map_size;
};
void pthcv_source_retain(pthcv_source *src);
void pthcv_source_release(pthcv_source *src);

/* ---- storages (tensor/storage.c) ----------------------------------------
 * Either owned memory (src == NULL, data set at creation) or a record of a
 * source, read on first touch. A storage never shrinks or moves once read. */
struct pthcv_storage {
    int refcount;
    int dtype;            /* declared element type; -1 for torch.UntypedStorage */
    int64_t nbytes;       /* extent declared by the pickle, checked against the file */
    void *data;           /* NULL until materialised */
    int owns_data;        /* free(data) at release; 0 when data points into a mapping */
    pthcv_source *src;    /* NULL for memory storages */
    char *key;            /* record key ("0", "140213"...) */
    char *record;         /* record name in the file, for messages */
    int64_t record_index; /* zip entry index */
    int64_t file_offset;  /* byte offset of the bytes in the mapped file, -1 if unknown */
    int in_place;         /* the bytes at file_offset can be used where they are */
    int swap_bytes;       /* element size to byte-swap by (big-endian files), 0 none */
    pthcv_storage *base;  /* a view: these bytes are base's from base_offset on */
    int64_t base_offset;
    /* memory someone else owns (pthcv_tensor_from_data: an OpenCV Mat...):
     * release(release_ctx) runs when the last reference goes */
    void (*release)(void *ctx);
    void *release_ctx;
};

pthcv_storage *pthcv_storage_new_memory(int dtype, int64_t nbytes); /* zeroed */
/* zeroed = 0: not initialised, for outputs a kernel writes whole (clearing
 * memory about to be overwritten shows in a forward pass's time) */
pthcv_storage *pthcv_storage_new_memory_as(int dtype, int64_t nbytes, int zeroed);
pthcv_tensor *pthcv_tensor_new_uninit(int dtype, int ndim, const int64_t *shape);
pthcv_storage *pthcv_storage_new_record(pthcv_source *src, int dtype, int64_t nbytes, const char *key,
                                        const char *record);
/* A storage that is a slice of another (legacy storage views): it shares the
 * base's memory, reading the base on first touch. */
pthcv_storage *pthcv_storage_new_view(pthcv_storage *base, int dtype, int64_t byte_offset, int64_t nbytes);
/* Memory owned elsewhere, not copied: release(ctx) at the last reference. */
pthcv_storage *pthcv_storage_new_external(int dtype, void *data, int64_t nbytes, void (*release)(void *ctx), void *ctx);
/* An owned storage's bytes (tensor/storage_memory.c): malloc'd and counted. */
void *pthcv_storage_data_alloc(size_t size, int zeroed);
void pthcv_storage_data_free(void *data, size_t size);
void pthcv_storage_retain(pthcv_storage *st);
void pthcv_storage_release(pthcv_storage *st);
/* Reads the bytes if needed; 0 or a status with the error set. */
int pthcv_storage_materialize(pthcv_storage *st);

/* A tensor over a storage, checked: sizes >= 0, strides >= 0, offset >= 0,
 * and offset + sum((size_i - 1) * stride_i) + 1 elements inside the storage,
 * without overflow. `where` names the file and record for the message. */
pthcv_tensor *pthcv_tensor_over(pthcv_storage *st, int dtype, int ndim, const int64_t *shape, const int64_t *stride,
                                int64_t offset, const char *where);

/* "[2, 3, 4]" into buf (cap >= 8), shortened with "...]" when too long;
 * returns buf. For messages naming shapes and strides (tensor.c). */
const char *pthcv_format_dims(char *buf, size_t cap, int ndim, const int64_t *dims);

/* Byte-swaps n elements of size elsize in place. */
void pthcv_swap_bytes(void *data, int64_t n, int elsize);

/* Values per storage element (dtype.c): 2 for quint4x2, 4 for quint2x4, else 1.
 * Sub-byte tensors count shape, strides and offset in values, packed low bits
 * first, as torch's quantizer packs them. */
int pthcv_dtype_values_per_element(int dtype);

#endif /* PTHCV_INTERNAL_H */
