/*
 * pthcv.h -- the one public header of pthcv's C core.
 *
 * pthcv reads the files written by torch.save and torch.jit.save without
 * executing anything: a pickle machine builds an inert value tree whose
 * tensors point at storages that are read from the file on first touch.
 *
 *   pthcv_file *f;
 *   if (pthcv_open("ckpt.pth", NULL, &f) != PTHCV_OK)
 *       fprintf(stderr, "%s\n", pthcv_last_error());
 *   const pthcv_value *root = pthcv_file_root(f);
 *   ...walk root->items; a PTHCV_V_TENSOR node has ->tensor...
 *   void *p = pthcv_tensor_data(t);   // reads the storage once, shares it
 *   pthcv_close(f);                    // tensors you retained stay valid
 *
 * Conventions: functions returning int give a PTHCV_* status; on failure
 * pthcv_last_error() (per thread) says what, naming the file, the record or
 * byte offset and the problem. Functions returning pointers give NULL on
 * failure with the same message. Nothing here aborts on bad input.
 *
 * This header is also parsed by the LuaJIT FFI: everything between the
 * PTHCV_CDEF_BEGIN/END markers must stay plain declarations (no includes,
 * no macros but PTHCV_API, which starts every function declaration and which
 * tools/gen-cdef strips); spec/cdef_spec.lua checks lua/pthcv/cdef.lua
 * against it, and that no function declaration lacks PTHCV_API.
 */
#ifndef PTHCV_H
#define PTHCV_H

#include <stddef.h>
#include <stdint.h>

/* PTHCV_API marks what libpthcv.so exports. The library is built with
 * -fvisibility=hidden: everything else in it stays internal. */
#if defined(__GNUC__)
#define PTHCV_API __attribute__((visibility("default")))
#else
#define PTHCV_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* PTHCV_CDEF_BEGIN */

/* Status codes. */
enum {
    PTHCV_OK = 0,
    PTHCV_ERR_IO = 1,         /* the file cannot be opened or read */
    PTHCV_ERR_FORMAT = 2,     /* damaged, truncated or unrecognised content */
    PTHCV_ERR_UNSAFE = 3,     /* the pickle references a dangerous global */
    PTHCV_ERR_LIMIT = 4,      /* a configured resource limit was exceeded */
    PTHCV_ERR_NOMEM = 5,      /* out of memory */
    PTHCV_ERR_ARG = 6,        /* the caller passed a bad argument */
    PTHCV_ERR_UNSUPPORTED = 7 /* valid input that pthcv cannot represent */
};

PTHCV_API const char *pthcv_last_error(void);
PTHCV_API int pthcv_last_status(void);
PTHCV_API const char *pthcv_version(void);

/* Element types, named as torch names them (pthcv_dtype_name). */
typedef enum {
    PTHCV_FLOAT32 = 0,
    PTHCV_FLOAT64,
    PTHCV_FLOAT16,
    PTHCV_BFLOAT16,
    PTHCV_INT8,
    PTHCV_INT16,
    PTHCV_INT32,
    PTHCV_INT64,
    PTHCV_UINT8,
    PTHCV_UINT16,
    PTHCV_UINT32,
    PTHCV_UINT64,
    PTHCV_BOOL,
    PTHCV_COMPLEX32,
    PTHCV_COMPLEX64,
    PTHCV_COMPLEX128,
    PTHCV_QINT8,
    PTHCV_QUINT8,
    PTHCV_QINT32,
    PTHCV_QUINT4X2,
    PTHCV_QUINT2X4,
    PTHCV_FLOAT8_E4M3FN,
    PTHCV_FLOAT8_E5M2,
    PTHCV_FLOAT8_E4M3FNUZ,
    PTHCV_FLOAT8_E5M2FNUZ,
    PTHCV_DTYPE_COUNT
} pthcv_dtype;

PTHCV_API const char *pthcv_dtype_name(int dtype);     /* "float32", ...; NULL if out of range */
PTHCV_API int pthcv_dtype_from_name(const char *name); /* -1 if unknown */
PTHCV_API int pthcv_dtype_size(int dtype);             /* bytes per element; 0 if out of range */
PTHCV_API int pthcv_dtype_is_floating(int dtype);      /* float16/32/64, bfloat16, float8 kinds */
PTHCV_API int pthcv_dtype_is_complex(int dtype);
PTHCV_API int pthcv_dtype_is_quantized(int dtype);

/* Quantization schemes (tensor->qscheme). */
enum {
    PTHCV_QSCHEME_NONE = 0,
    PTHCV_QSCHEME_PER_TENSOR_AFFINE = 1,
    PTHCV_QSCHEME_PER_CHANNEL_AFFINE = 2,
    PTHCV_QSCHEME_PER_TENSOR_SYMMETRIC = 3,
    PTHCV_QSCHEME_PER_CHANNEL_SYMMETRIC = 4,
    PTHCV_QSCHEME_PER_CHANNEL_AFFINE_FLOAT_QPARAMS = 5
};

enum { PTHCV_MAX_DIMS = 16 };

/* A storage: one run of bytes, shared by every tensor that views it, read
 * from the file once, on first touch. Opaque; reference counted. */
typedef struct pthcv_storage pthcv_storage;

/* A tensor, laid out as torch lays it: element counts and element strides
 * over a storage, from an element offset. Fields are public for speed; treat
 * them as read-only and create tensors with the functions below. */
typedef struct pthcv_tensor {
    int32_t refcount;
    int32_t dtype; /* pthcv_dtype */
    int32_t ndim;  /* 0 for a scalar tensor */
    int32_t flags; /* PTHCV_TENSOR_* bits */
    int64_t shape[PTHCV_MAX_DIMS];
    int64_t stride[PTHCV_MAX_DIMS]; /* in elements */
    int64_t offset;                 /* storage offset, in elements */
    int64_t numel;
    pthcv_storage *storage;
    /* quantization parameters, when dtype is a quantized type */
    int32_t qscheme;                   /* PTHCV_QSCHEME_* */
    int32_t qaxis;                     /* per-channel axis */
    double qscale;                     /* per-tensor */
    int64_t qzero_point;               /* per-tensor */
    struct pthcv_tensor *qscales;      /* per-channel: float64 or float32 [shape[qaxis]] */
    struct pthcv_tensor *qzero_points; /* per-channel: int64 or float [shape[qaxis]] */
} pthcv_tensor;

enum {
    PTHCV_TENSOR_REQUIRES_GRAD = 1,
    PTHCV_TENSOR_PARAMETER = 2 /* rebuilt as torch.nn.Parameter */
};

/* A new contiguous tensor owning zeroed memory. shape may be NULL when ndim is 0. */
PTHCV_API pthcv_tensor *pthcv_tensor_new(int dtype, int ndim, const int64_t *shape);
/* A new tensor viewing t's storage with other sizes, strides and offset; the
 * view is checked against the storage's extent. */
PTHCV_API pthcv_tensor *pthcv_tensor_view(pthcv_tensor *t, int ndim, const int64_t *shape, const int64_t *stride,
                                          int64_t offset);
/* A tensor over memory someone else owns (an OpenCV Mat, ...), not copied:
 * shape/stride in elements from data, checked against nbytes. release(ctx)
 * runs once the last tensor viewing the memory is released (release may be
 * NULL). On failure release is not called: the caller keeps its memory. */
PTHCV_API pthcv_tensor *pthcv_tensor_from_data(int dtype, int ndim, const int64_t *shape, const int64_t *stride,
                                               void *data, int64_t nbytes, void (*release)(void *ctx), void *ctx);
PTHCV_API pthcv_tensor *pthcv_tensor_retain(pthcv_tensor *t);
PTHCV_API void pthcv_tensor_release(pthcv_tensor *t);

/* Pointer to element 0 of the tensor (storage start + offset), reading the
 * storage from its file on first touch. NULL on error (short record, I/O). */
PTHCV_API void *pthcv_tensor_data(pthcv_tensor *t);
/* Nonzero once the storage's bytes are in memory. */
PTHCV_API int pthcv_tensor_is_materialized(const pthcv_tensor *t);
PTHCV_API int pthcv_tensor_is_contiguous(const pthcv_tensor *t);
PTHCV_API int64_t pthcv_tensor_nbytes(const pthcv_tensor *t); /* numel * element size */

/* Storage facts, for listing and for telling shared storages apart. */
PTHCV_API int64_t pthcv_tensor_storage_nbytes(const pthcv_tensor *t);
PTHCV_API const char *pthcv_tensor_storage_key(const pthcv_tensor *t); /* record key, "" for memory */
PTHCV_API const void *pthcv_tensor_storage_id(const pthcv_tensor *t);  /* same pointer = same storage */
/* Storage memory, in bytes (doubles: exact to 2^53, and LuaJIT returns them
 * unboxed): held by live storages, and made since the process began
 * (tensor/storage_memory.c). Lua's collector sees a tensor as a few bytes;
 * pthcv.tensor paces it by these. pthcv_storage_malloc_tuned: 1 when pthcv
 * set glibc's mmap and trim thresholds to keep freed activations' pages for
 * the next pass (PTHCV_MALLOC_TUNE=0 or a malloc setting in GLIBC_TUNABLES
 * leaves them alone), else 0. */
PTHCV_API double pthcv_storage_bytes_held(void);
PTHCV_API double pthcv_storage_bytes_made(void);
PTHCV_API int pthcv_storage_malloc_tuned(void);

/* New contiguous tensors (new references; the caller releases them). */
PTHCV_API pthcv_tensor *pthcv_tensor_contiguous(pthcv_tensor *t);    /* t retained when already contiguous */
PTHCV_API pthcv_tensor *pthcv_tensor_to(pthcv_tensor *t, int dtype); /* value conversion, as torch's .to(dtype) */
PTHCV_API pthcv_tensor *pthcv_tensor_dequantize(pthcv_tensor *t);    /* float32, as torch's .dequantize() */

/* One element, by element offset from the tensor's data pointer (the sum of
 * index * stride). Complex types fill *im; others set it to 0. A NaN comes
 * out as the positive quiet NaN, whatever its stored sign and payload (some
 * are not numbers to LuaJIT; see pthcv_tensor_get). */
PTHCV_API int pthcv_tensor_get(pthcv_tensor *t, int64_t element_offset, double *re, double *im);
PTHCV_API int pthcv_tensor_set(pthcv_tensor *t, int64_t element_offset, double re, double im);

/* Scalar conversions used by the exporters and the Lua side. */
PTHCV_API float pthcv_half_to_float(uint16_t h);
PTHCV_API uint16_t pthcv_float_to_half(float f);
PTHCV_API float pthcv_bfloat16_to_float(uint16_t b);
PTHCV_API uint16_t pthcv_float_to_bfloat16(float f);

/* The value tree built by the pickle machine. */
typedef enum {
    PTHCV_V_NONE = 0,
    PTHCV_V_BOOL,      /* i */
    PTHCV_V_INT,       /* i */
    PTHCV_V_BIGINT,    /* s, len: little-endian two's complement bytes */
    PTHCV_V_FLOAT,     /* f */
    PTHCV_V_COMPLEX,   /* f + f_im * 1j */
    PTHCV_V_STR,       /* s, len: UTF-8, NUL-terminated */
    PTHCV_V_BYTES,     /* s, len */
    PTHCV_V_BYTEARRAY, /* s, len */
    PTHCV_V_LIST,      /* items[0..n) */
    PTHCV_V_TUPLE,     /* items[0..n) */
    PTHCV_V_DICT,      /* items[2k] -> items[2k+1], k < n, insertion order; PTHCV_VF_ORDERED */
    PTHCV_V_SET,       /* items[0..n) */
    PTHCV_V_FROZENSET, /* items[0..n) */
    PTHCV_V_TENSOR,    /* tensor */
    PTHCV_V_STORAGE,   /* tensor: a 1-d view of the whole storage (uint8 when untyped) */
    PTHCV_V_GLOBAL,    /* s: "module.name", a class or function referenced, never called */
    PTHCV_V_OBJECT     /* s: "module.name" of its class or constructor; args, state, items */
} pthcv_kind;

enum {
    PTHCV_VF_ORDERED = 1, /* a collections.OrderedDict */
    PTHCV_VF_UNSAFE = 2   /* a GLOBAL or OBJECT naming a dangerous global (scan mode only) */
};

typedef struct pthcv_value pthcv_value;
struct pthcv_value {
    int32_t kind;  /* pthcv_kind */
    int32_t flags; /* PTHCV_VF_* */
    int64_t i;
    double f, f_im;
    const char *s;
    int64_t len;
    int64_t n; /* LIST/TUPLE/SET: items; DICT: pairs; OBJECT: dict pairs or list items */
    pthcv_value **items;
    pthcv_tensor *tensor; /* owned by the tree; retain it to keep it */
    pthcv_value *args;    /* OBJECT: constructor arguments (a tuple) or NULL */
    pthcv_value *kwargs;  /* OBJECT: NEWOBJ_EX keyword arguments (a dict) or NULL */
    pthcv_value *state;   /* OBJECT, DICT, ...: the BUILD state or NULL */
    int64_t cap;          /* internal: allocated slots in items */
    int64_t depth;        /* internal: container nesting below this value */
};
/* An OBJECT that received APPEND(S) holds list items in items[0..n); one that
 * received SETITEM(S) holds dict pairs and has PTHCV_VF_OBJECT_DICT. */
enum { PTHCV_VF_OBJECT_DICT = 4 };

/* Reading options; pthcv_options_init fills in the defaults. */
typedef struct pthcv_options {
    int32_t scan_only;          /* collect globals, never refuse: for pthcv_scan */
    int32_t max_depth;          /* open MARKs / container nesting on the pickle stack */
    int64_t max_memo;           /* memo entries */
    int64_t max_string;         /* bytes of one str/bytes value */
    int64_t max_pickle;         /* bytes of one pickle record */
    int64_t max_values;         /* values built per file */
    int64_t max_total_bytes;    /* storage bytes one file may declare, all storages together */
    int64_t max_zip_entries;    /* entries in a zip archive */
    int64_t max_zip_ratio;      /* uncompressed / compressed size of a deflated entry (zip bombs) */
    int64_t max_expanded_bytes; /* bytes tensors may span beyond their storages (stride-0 views),
                                   all tensors together: what a contiguous copy would allocate
                                   that the file's own bytes do not justify */
} pthcv_options;

PTHCV_API void pthcv_options_init(pthcv_options *o);

typedef struct pthcv_file pthcv_file;

/* Opens a file written by torch.save or torch.jit.save, or any other file
 * torch.load would read (a plain pickle), recognised by its first bytes as
 * torch.load recognises it. Reads and checks every pickle and every
 * storage's extent; no storage bytes are read. opts may be NULL for the
 * defaults. With opts->scan_only, every pickle torch would unpickle is read
 * for its globals and nothing is refused or followed to a storage; a file
 * that breaks off after a dangerous global still opens, and
 * pthcv_file_scan_error says where it broke off. */
PTHCV_API int pthcv_open(const char *path, const pthcv_options *opts, pthcv_file **out);
/* Frees the value tree; storages retained through tensors stay readable. */
PTHCV_API void pthcv_close(pthcv_file *f);

PTHCV_API const char *pthcv_file_path(const pthcv_file *f);
/* "zip", "legacy", "tar", "torchscript" or "pickle" (a plain pickle, not a
 * file torch.save wrote; it references no storage). */
PTHCV_API const char *pthcv_file_format(const pthcv_file *f);
/* The unpickled object: data.pkl, the legacy main pickle. */
PTHCV_API const pthcv_value *pthcv_file_root(const pthcv_file *f);
/* TorchScript archives: the constants.pkl tuple; NULL for other formats. */
PTHCV_API const pthcv_value *pthcv_file_constants(const pthcv_file *f);
/* Scan mode: the error that ended the scan early, after a dangerous global
 * had been found; NULL when every pickle was read. */
PTHCV_API const char *pthcv_file_scan_error(const pthcv_file *f);
/* Every distinct global the file's pickles reference, "module.name", in
 * first-seen order; *unsafe is set for dangerous ones. */
PTHCV_API int pthcv_file_global_count(const pthcv_file *f);
PTHCV_API const char *pthcv_file_global(const pthcv_file *f, int i, int *unsafe);
/* Nonzero when a global is one pthcv refuses (os.system, builtins.eval, ...). */
PTHCV_API int pthcv_global_is_unsafe(const char *module, const char *name);

/* Writers: every tensor under its name, bytes as in memory (contiguous copy). */
PTHCV_API int pthcv_save_npy(const char *path, pthcv_tensor *t);
PTHCV_API int pthcv_save_npz(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors);
/* A zip archive whose entry names[i] holds tensor i's bytes as they are
 * (row-major, no header), stored uncompressed: the container of torch's .pth
 * files (pthcv.quant.save writes its pickle and storages with it). */
PTHCV_API int pthcv_save_zip_raw(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors);
PTHCV_API int pthcv_save_safetensors(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors,
                                     const char *metadata_json);

/* ==== Inference (csrc/kernels/) ===========================================
 * Operations on float32 tensors with PyTorch's semantics. Activations are
 * NCHW (or any layout the op documents) and need not be contiguous unless
 * said; results are new contiguous tensors the caller releases. Every kernel
 * has a scalar reference and SIMD versions (AVX2+FMA, AVX-512, NEON) chosen
 * at run time; results do not depend on the thread count. */

/* Threads used by the kernels; default: the number of online CPUs. */
PTHCV_API void pthcv_set_num_threads(int n);
PTHCV_API int pthcv_get_num_threads(void);
/* The instruction sets this CPU offers and the one the kernels use, e.g.
 * "avx2 fma f16c; using avx2". */
PTHCV_API const char *pthcv_cpu_info(void);
/* Forces a kernel family for tests and benchmarks: "scalar", "avx2",
 * "avx512", "neon", or "auto". Fails if the CPU lacks it. */
PTHCV_API int pthcv_set_isa(const char *isa);

/* The op profile (pthcv bench --profile): on (1) clears it and starts
 * timing every kernel entry point by kind of op and path ("conv 3x3/1
 * winograd", "pool2d max 3x3/2", ...); off (0) stops. The report is one
 * line per kind, "kind<TAB>milliseconds<TAB>calls\n", written into buf
 * (NUL-terminated, cut to size); returns the length of the whole report. */
PTHCV_API void pthcv_profile_ops(int on);
PTHCV_API int64_t pthcv_profile_ops_report(char *buf, int64_t size);

/* Activations, fusable into convolutions and linear layers. alpha/beta:
 * LEAKY_RELU slope, ELU alpha, CLAMP min/max (ReLU6 is CLAMP 0..6). */
enum {
    PTHCV_ACT_NONE = 0,
    PTHCV_ACT_RELU,
    PTHCV_ACT_RELU6,
    PTHCV_ACT_LEAKY_RELU,
    PTHCV_ACT_ELU,
    PTHCV_ACT_SIGMOID,
    PTHCV_ACT_TANH,
    PTHCV_ACT_SILU,
    PTHCV_ACT_HARDSWISH,
    PTHCV_ACT_HARDSIGMOID,
    PTHCV_ACT_GELU,
    PTHCV_ACT_GELU_TANH,
    PTHCV_ACT_CLAMP
};
typedef struct pthcv_activation {
    int32_t kind;
    float alpha, beta;
} pthcv_activation;

enum { PTHCV_PAD_ZEROS = 0, PTHCV_PAD_REFLECT, PTHCV_PAD_REPLICATE, PTHCV_PAD_CIRCULAR, PTHCV_PAD_CONSTANT };

typedef struct pthcv_conv2d_params {
    int32_t stride[2], padding[2], dilation[2]; /* (h, w) */
    int32_t groups;
    int32_t padding_mode; /* PTHCV_PAD_ZEROS/REFLECT/REPLICATE/CIRCULAR */
    pthcv_activation act; /* applied after bias and residual */
} pthcv_conv2d_params;

/* A convolution prepared once: weights [out, in/groups, kh, kw] packed into
 * the layout the kernels stream, bias folded in. The pack is the only copy
 * of the weights it keeps. float16 weights stay float16 in the pack (half
 * the memory) and are converted block by block as the kernels stream them
 * (F16C / NEON); the arithmetic is float32. The bias is float32. */
typedef struct pthcv_conv2d pthcv_conv2d;
PTHCV_API pthcv_conv2d *pthcv_conv2d_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_conv2d_params *p);
PTHCV_API void pthcv_conv2d_free(pthcv_conv2d *c);
/* y = act(conv(x) + bias + residual); residual (same shape as y) may be NULL. */
PTHCV_API pthcv_tensor *pthcv_conv2d_forward(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual);
/* torch.cat([conv(x) for conv in convs], 1) without the copies: each
 * convolution writes its channels of the one output (SqueezeNet's Fire,
 * Inception branches). The outputs must share their height and width. */
PTHCV_API pthcv_tensor *pthcv_conv2d_forward_cat(int32_t n, pthcv_conv2d *const *convs, pthcv_tensor *x);
/* The weights the pack computes with, as a new float32 tensor
 * [out, in/groups, kh, kw] (a folded BatchNorm included). */
PTHCV_API pthcv_tensor *pthcv_conv2d_weight(pthcv_conv2d *c);
/* Bytes of weights the pack holds now (all its packed copies). */
PTHCV_API int64_t pthcv_conv2d_weight_bytes(pthcv_conv2d *c);
/* Folds eval-mode BatchNorm into the preceding convolution, in double
 * precision: returns new weight and bias (bias may be NULL on input). */
PTHCV_API int pthcv_fold_batchnorm(pthcv_tensor *weight, pthcv_tensor *bias, pthcv_tensor *running_mean,
                                   pthcv_tensor *running_var, pthcv_tensor *gamma, pthcv_tensor *beta, double eps,
                                   pthcv_tensor **new_weight, pthcv_tensor **new_bias);

PTHCV_API pthcv_tensor *pthcv_conv_transpose2d(pthcv_tensor *x, pthcv_tensor *weight, pthcv_tensor *bias,
                                               const int32_t stride[2], const int32_t padding[2],
                                               const int32_t output_padding[2], const int32_t dilation[2],
                                               int32_t groups);

/* Linear: y = act(x W^T + b) over the last dimension of x. */
typedef struct pthcv_linear pthcv_linear;
PTHCV_API pthcv_linear *pthcv_linear_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_activation *act);
PTHCV_API void pthcv_linear_free(pthcv_linear *l);
PTHCV_API pthcv_tensor *pthcv_linear_forward(pthcv_linear *l, pthcv_tensor *x);
/* Bytes of weights the layer holds now (float16 weights stay float16). */
PTHCV_API int64_t pthcv_linear_weight_bytes(pthcv_linear *l);

/* Quantized (int8) layers, torch's quantized semantics: activations quint8
 * per tensor (real = scale * (q - zero_point)), weights qint8 per output
 * channel (axis 0) or per tensor with zero points 0, bias float32. The
 * output is quint8 with the layer's scale and zero point, rounded half to
 * even, or float32 (out_float: the real value before rounding). The
 * activation may be none, relu, relu6 or clamp (applied in the output's
 * units); a quint8 residual of the output's shape is added before it. The
 * sums are exact integers: results are the same on every instruction set
 * (AVX512-VNNI, AVX2, NEON dot product, scalar) and thread count. */
typedef struct pthcv_qconv2d pthcv_qconv2d;
PTHCV_API pthcv_qconv2d *pthcv_qconv2d_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_conv2d_params *p,
                                               double out_scale, int32_t out_zero_point);
PTHCV_API void pthcv_qconv2d_free(pthcv_qconv2d *q);
PTHCV_API pthcv_tensor *pthcv_qconv2d_forward(pthcv_qconv2d *q, pthcv_tensor *x, pthcv_tensor *residual,
                                              int32_t out_float);
/* torch.cat({qconv(x) for each of the n convolutions}, 1), each writing its
 * channels of the one quint8 output (no copies): the convolutions must
 * share the output's scale and zero point and have groups 1. */
PTHCV_API pthcv_tensor *pthcv_qconv2d_forward_cat(int32_t n, pthcv_qconv2d *const *qs, pthcv_tensor *x);
typedef struct pthcv_qlinear pthcv_qlinear;
PTHCV_API pthcv_qlinear *pthcv_qlinear_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_activation *act,
                                               double out_scale, int32_t out_zero_point);
PTHCV_API void pthcv_qlinear_free(pthcv_qlinear *l);
PTHCV_API pthcv_tensor *pthcv_qlinear_forward(pthcv_qlinear *l, pthcv_tensor *x, int32_t out_float);
/* float32 -> quint8: clamp(round_half_even(x / scale) + zero_point, 0, 255). */
PTHCV_API pthcv_tensor *pthcv_quantize_per_tensor(pthcv_tensor *x, double scale, int32_t zero_point);
/* float32 weights [out, ...] -> qint8 per output channel, symmetric:
 * scale = max |w| / 127 per channel (1 for an all-zero channel), values
 * round_half_even(w / scale) in [-127, 127]. */
PTHCV_API pthcv_tensor *pthcv_quantize_weight(pthcv_tensor *w);
/* a + b of two quint8 tensors of one shape, then ReLU when relu is set, as
 * quint8 (scale, zero_point): QNNPACK's fixed-point arithmetic and rounding,
 * so the bits of torch's quantized add (add_relu) with the qnnpack engine. */
PTHCV_API pthcv_tensor *pthcv_qadd(pthcv_tensor *a, pthcv_tensor *b, double scale, int32_t zero_point, int32_t relu);
/* The other int8 ops of torch's quantized MobileNetV3, quint8 in and out,
 * with torch's arithmetic for the qnnpack engine (the same bits):
 * hardswish and hardsigmoid through QNNPACK's 256-entry table (torch's
 * quantized hardsigmoid always gives scale 1/256, zero point 0); mul as
 * torch's quantized mul, zero_point + round_half_even((a - za) (b - zb)
 * sa sb / scale), where one operand may be the other's leading dimensions
 * followed by ones (squeeze-excitation's [N, C, 1, 1] factor); the global
 * average pool [N, C, H, W] -> [N, C, 1, 1] keeps the input's scale and
 * zero point, as torch's quantized adaptive_avg_pool2d to 1x1. */
PTHCV_API pthcv_tensor *pthcv_qhardswish(pthcv_tensor *x, double scale, int32_t zero_point);
PTHCV_API pthcv_tensor *pthcv_qhardsigmoid(pthcv_tensor *x, double scale, int32_t zero_point);
PTHCV_API pthcv_tensor *pthcv_qmul(pthcv_tensor *a, pthcv_tensor *b, double scale, int32_t zero_point);
PTHCV_API pthcv_tensor *pthcv_qglobal_avg_pool2d(pthcv_tensor *x);

/* Normalisation (eval mode). weight/bias may be NULL. */
PTHCV_API pthcv_tensor *pthcv_batch_norm(pthcv_tensor *x, pthcv_tensor *running_mean, pthcv_tensor *running_var,
                                         pthcv_tensor *weight, pthcv_tensor *bias, double eps);
PTHCV_API pthcv_tensor *pthcv_layer_norm(pthcv_tensor *x, int32_t normalized_ndim, pthcv_tensor *weight,
                                         pthcv_tensor *bias, double eps);
PTHCV_API pthcv_tensor *pthcv_group_norm(pthcv_tensor *x, int32_t groups, pthcv_tensor *weight, pthcv_tensor *bias,
                                         double eps);

/* Elementwise. */
PTHCV_API pthcv_tensor *pthcv_activate(pthcv_tensor *x, const pthcv_activation *act);
PTHCV_API pthcv_tensor *pthcv_prelu(pthcv_tensor *x, pthcv_tensor *weight); /* weight: 1 or C values, channel dim 1 */
PTHCV_API pthcv_tensor *pthcv_softmax(pthcv_tensor *x, int32_t dim, int32_t log);
enum { PTHCV_BIN_ADD = 0, PTHCV_BIN_SUB, PTHCV_BIN_MUL, PTHCV_BIN_DIV, PTHCV_BIN_MAX, PTHCV_BIN_MIN };
/* a op b with NumPy/PyTorch broadcasting. */
PTHCV_API pthcv_tensor *pthcv_binary(pthcv_tensor *a, pthcv_tensor *b, int32_t op);
PTHCV_API pthcv_tensor *pthcv_binary_scalar(pthcv_tensor *a, double s, int32_t op, int32_t scalar_first);

/* Pooling over the last two dimensions. */
enum { PTHCV_POOL_MAX = 0, PTHCV_POOL_AVG = 1 };
typedef struct pthcv_pool2d_params {
    int32_t kind;
    int32_t kernel[2], stride[2], padding[2], dilation[2];
    int32_t ceil_mode, count_include_pad, divisor_override; /* divisor_override 0: none */
} pthcv_pool2d_params;
PTHCV_API pthcv_tensor *pthcv_pool2d(pthcv_tensor *x, const pthcv_pool2d_params *p);
PTHCV_API pthcv_tensor *pthcv_adaptive_pool2d(pthcv_tensor *x, int32_t kind, int32_t out_h, int32_t out_w);

/* Shapes and data movement (views need no kernel: pthcv_tensor_view). */
PTHCV_API pthcv_tensor *pthcv_cat(int32_t n, pthcv_tensor *const *xs, int32_t dim);
/* pads: (left, right) pairs from the last dimension backwards, as F.pad. */
PTHCV_API pthcv_tensor *pthcv_pad(pthcv_tensor *x, int32_t npairs, const int64_t *pads, int32_t mode, double value);
enum { PTHCV_REDUCE_SUM = 0, PTHCV_REDUCE_MEAN, PTHCV_REDUCE_MAX, PTHCV_REDUCE_MIN };
PTHCV_API pthcv_tensor *pthcv_reduce(pthcv_tensor *x, int32_t op, int32_t ndims, const int32_t *dims, int32_t keepdim);
/* torch.matmul semantics (1-d, 2-d and batched with broadcasting). */
PTHCV_API pthcv_tensor *pthcv_matmul(pthcv_tensor *a, pthcv_tensor *b);
enum { PTHCV_INTERP_NEAREST = 0, PTHCV_INTERP_BILINEAR = 1 };
/* scale_h/scale_w: the scale factors the user gave (0: derive from sizes),
 * as torch's interpolate uses them for the source index. */
PTHCV_API pthcv_tensor *pthcv_interpolate(pthcv_tensor *x, int32_t out_h, int32_t out_w, int32_t mode,
                                          int32_t align_corners, double scale_h, double scale_w);

/* What the steps of a planned forward (pthcv.nn.plan) run besides the ops
 * above. pthcv_conv2d_forward_into: pthcv_conv2d_forward with the output
 * written into out, a float32 view of the output's shape whose planes
 * (n, c) are each oh*ow contiguous floats, anywhere: a channel slice of a
 * concatenation's destination, every g-th channel of a channel shuffle's.
 * out must not share the input's storage. 0 or an error status. */
PTHCV_API int pthcv_conv2d_forward_into(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual, pthcv_tensor *out);
/* torchvision's SqueezeExcitation in one call: y = x * act2(W2 act1(W1
 * mean_hw(x) + b1) + b2) per image; x [N, C, H, W] or [C, H, W], w1 [S, C]
 * (or [S, C, 1, 1]), w2 [C, S], biases [S] / [C] or NULL, all float32. */
PTHCV_API pthcv_tensor *pthcv_squeeze_excitation(pthcv_tensor *x, pthcv_tensor *w1, pthcv_tensor *b1,
                                                 const pthcv_activation *act1, pthcv_tensor *w2, pthcv_tensor *b2,
                                                 const pthcv_activation *act2);
/* A depthwise convolution dw, then a pointwise (1x1, stride 1, unpadded,
 * one group) convolution pw: y = pw(dw(x)) with pw's residual (or NULL),
 * into a new tensor (dst NULL) or into dst (as pthcv_conv2d_forward_into).
 * Runs band by band of output rows so that the depthwise result stays in
 * cache; the values are those of the two forwards, bit for bit. band_rows:
 * the band height, 0 to choose it (pairs that gain nothing from bands then
 * run as the two forwards). A new reference to the output, or NULL. */
PTHCV_API pthcv_tensor *pthcv_dwpw_forward(pthcv_conv2d *dw, pthcv_conv2d *pw, pthcv_tensor *x,
                                           pthcv_tensor *residual, pthcv_tensor *dst, int32_t band_rows);
/* The band height pthcv_dwpw_forward(dw, pw, x, ..., 0) takes for an x of
 * this shape at the current thread count; 0 when it runs the two forwards. */
PTHCV_API int32_t pthcv_dwpw_band_rows(pthcv_conv2d *dw, pthcv_conv2d *pw, int32_t ndim, const int64_t *shape);
/* dst = src, float32 tensors of one shape, any strides (dst a view into
 * another tensor); they must not share a storage. 0 or an error status. */
PTHCV_API int pthcv_copy_into(pthcv_tensor *dst, pthcv_tensor *src);
/* A new contiguous tensor whose values are not set: for a destination that
 * kernels will write whole (pthcv_tensor_new zeroes its memory). */
PTHCV_API pthcv_tensor *pthcv_tensor_empty(int dtype, int ndim, const int64_t *shape);
/* A tensor with this layout and no bytes: reading its data fails with an
 * error naming `what` (what a planned forward hands out for a value it
 * fused away, so that a stray use is an error, never a wrong value). */
PTHCV_API pthcv_tensor *pthcv_tensor_placeholder(int dtype, int ndim, const int64_t *shape, const int64_t *stride,
                                                 int64_t offset, const char *what);

/* Elementwise math, comparisons, selection and sorting (csrc/kernels/ops_math*.c),
 * as torch computes them in float32. Unary ops take float32 (any strides):
 * exp and log are correctly rounded (computed in double; log but for 3 of
 * the 2^32 inputs, off by 1e-9 ulp; torch's SLEEF kernels are within 1 ulp), sqrt, rsqrt (1 / sqrt), reciprocal, abs,
 * floor, ceil, round (half to even) and sign (0 for NaN, as torch) are
 * exact. */
enum {
    PTHCV_MATH_EXP = 0,
    PTHCV_MATH_LOG,
    PTHCV_MATH_SQRT,
    PTHCV_MATH_RSQRT,
    PTHCV_MATH_ABS,
    PTHCV_MATH_FLOOR,
    PTHCV_MATH_CEIL,
    PTHCV_MATH_ROUND,
    PTHCV_MATH_SIGN,
    PTHCV_MATH_RECIPROCAL
};
PTHCV_API pthcv_tensor *pthcv_unary(pthcv_tensor *x, int32_t op);
/* x ** e for a scalar e, with torch's shortcuts (e = 0: 1, 1: x, 0.5: sqrt,
 * -0.5: rsqrt, -1: reciprocal, 2: x*x, 3: x*x*x, -2: 1/(x*x)); other
 * exponents rounded to float32 (as torch's vectorised kernel does), then
 * the double pow of libm, rounded once. */
PTHCV_API pthcv_tensor *pthcv_pow_scalar(pthcv_tensor *x, double e);
/* a ** b elementwise with broadcasting, float32 (a 0-d tensor for a scalar). */
PTHCV_API pthcv_tensor *pthcv_pow(pthcv_tensor *a, pthcv_tensor *b);

/* Comparisons and logical ops with broadcasting; results are bool tensors.
 * Operands: bool, uint8, int8, int16, int32, int64, float32, float64,
 * compared in the type torch's promotion gives (integers and bools as
 * int64, exactly; float32 unless a float64 operand decides; a 0-d operand
 * does not widen a dimensioned one of its own kind). NaN compares unequal
 * to everything, itself included. The logical ops take any of these types
 * (nonzero is true); PTHCV_LOGICAL_NOT is pthcv_logical_not. */
enum {
    PTHCV_CMP_EQ = 0,
    PTHCV_CMP_NE,
    PTHCV_CMP_LT,
    PTHCV_CMP_LE,
    PTHCV_CMP_GT,
    PTHCV_CMP_GE,
    PTHCV_LOGICAL_AND,
    PTHCV_LOGICAL_OR,
    PTHCV_LOGICAL_XOR
};
PTHCV_API pthcv_tensor *pthcv_compare(pthcv_tensor *a, pthcv_tensor *b, int32_t op);
PTHCV_API pthcv_tensor *pthcv_logical_not(pthcv_tensor *x);
/* cond ? a : b with broadcasting over the three; cond must be bool. a and b
 * of one dtype (any of 1, 2, 4 or 8 bytes), or of two the comparisons
 * promote (the result has the promoted type). */
PTHCV_API pthcv_tensor *pthcv_where(pthcv_tensor *cond, pthcv_tensor *a, pthcv_tensor *b);

/* Index tensors are int64. index_base says how their values count: 0 as in
 * torch, 1 as pthcv's Lua Tensor methods (1-based); out-of-range indices are
 * refused, naming the index and where it is. */
/* The largest (find_min: smallest) float32 value along dim and the index of
 * its first occurrence; a NaN wins (its first one), as torch.max/min.
 * keepdim: dim stays with size 1. *values and *indices are new tensors;
 * either pointer may be NULL (not computed). */
PTHCV_API int pthcv_max_dim(pthcv_tensor *x, int32_t dim, int32_t keepdim, int32_t find_min, int32_t index_base,
                            pthcv_tensor **values, pthcv_tensor **indices);
/* A stable sort of float32 values along dim (torch.sort(stable=True)):
 * equal values keep their order; NaN counts as larger than everything (last
 * ascending, first descending); -0.0 equals 0.0. values may be NULL
 * (argsort). */
PTHCV_API int pthcv_sort(pthcv_tensor *x, int32_t dim, int32_t descending, int32_t index_base, pthcv_tensor **values,
                         pthcv_tensor **indices);
/* torch.gather: out[..., i, ...] = x[..., index[..., i, ...], ...] along dim;
 * index has x's number of dims and no dim larger than x's (dim apart); the
 * result has index's shape and x's dtype (any). */
PTHCV_API pthcv_tensor *pthcv_gather(pthcv_tensor *x, int32_t dim, pthcv_tensor *index, int32_t index_base);
/* torch.index_select: the slices of x at the listed positions along dim;
 * index 0-d or 1-d, int64 or int32; x of any dtype. */
PTHCV_API pthcv_tensor *pthcv_index_select(pthcv_tensor *x, int32_t dim, pthcv_tensor *index, int32_t index_base);

/* ==== Transformer ops (csrc/kernels/ops_attention.c, ops_layernorm.c) =======
 * Scaled dot-product attention in one fused pass: for each query row,
 * scores against every key, softmax, weighted sum of the values, the score
 * matrix kept in cache (never written out). q [..., L, D], k [..., S, D],
 * v [..., S, Dv] share their leading dimensions (batch, heads, windows) and
 * may be strided views whose rows are contiguous (a packed qkv projection
 * viewed per head needs no copy); bias (or NULL) broadcasts to [..., L, S]
 * and is added to the scores (relative position bias, masks: -inf masks a
 * key out); head_scale (or NULL): float32, one factor per head (dimension -3
 * of q) multiplying that head's scores (Swin V2's exp(logit_scale)).
 *   scores = scale * head_scale[h] * q_i . k_j + bias[i, j]
 * scale 0 means 1 / sqrt(D); cosine: q and k rows are first divided by
 * max(|row|_2, 1e-12) (torch's F.normalize). The result is [..., L, Dv],
 * or with heads_last [..., L, H, Dv] (H = dimension -3 of q: the heads
 * merged back as torch's out.transpose(1, 2) does, without a copy). When
 * weights is not NULL it receives a new tensor [..., L, S] of the softmax
 * probabilities (nn.MultiheadAttention's need_weights). */
typedef struct pthcv_attention_params {
    double scale;
    int32_t cosine;
    int32_t heads_last;
} pthcv_attention_params;
PTHCV_API pthcv_tensor *pthcv_attention(pthcv_tensor *q, pthcv_tensor *k, pthcv_tensor *v, pthcv_tensor *bias,
                                        pthcv_tensor *head_scale, const pthcv_attention_params *p,
                                        pthcv_tensor **weights);
/* LayerNorm over dimension 1 of x [N, C, ...]: torch's layer_norm of
 * x.permute(0, 2, 3, 1) permuted back (ConvNeXt's LayerNorm2d) without the
 * transposing copies, vectorised across the pixels. Mean and variance in
 * double per pixel as pthcv_layer_norm; weight and bias (or NULL) have C
 * values. The result has x's shape, contiguous. */
PTHCV_API pthcv_tensor *pthcv_layer_norm_channels(pthcv_tensor *x, pthcv_tensor *weight, pthcv_tensor *bias,
                                                  double eps);

/* ==== Images (csrc/opencv/bridge.cpp, through OpenCV) =======================
 * An image is a tensor [H, W, C] (C = 1, 3 or 4 channels in OpenCV's BGR(A)
 * order) of uint8 (or int8, uint16, int16, int32, float16, float32,
 * float64) elements. Images given are read without a copy when each row's
 * pixels are packed (rows may be apart: a crop), else copied once. Images
 * returned view the cv::Mat OpenCV made, which lives as long as a tensor
 * (or a view of it) does. include/pthcv_opencv.hpp converts Mats and
 * tensors for C++ programs. */
enum { PTHCV_IMREAD_UNCHANGED = -1, PTHCV_IMREAD_GRAYSCALE = 0, PTHCV_IMREAD_COLOR = 1 };
/* OpenCV's cv::InterpolationFlags values. */
enum {
    PTHCV_INTER_NEAREST = 0,
    PTHCV_INTER_LINEAR = 1,
    PTHCV_INTER_CUBIC = 2,
    PTHCV_INTER_AREA = 3,
    PTHCV_INTER_LANCZOS4 = 4,
    PTHCV_INTER_LINEAR_EXACT = 5,
    PTHCV_INTER_NEAREST_EXACT = 6
};

/* Image files (these three are in libpthcv_imgcodecs.so, beside
 * libpthcv.so: OpenCV's imgcodecs and its many dependencies are loaded only
 * by programs that read or write image files).
 * cv::imread / cv::imdecode; flags PTHCV_IMREAD_*. */
PTHCV_API pthcv_tensor *pthcv_image_read(const char *path, int32_t flags);
PTHCV_API pthcv_tensor *pthcv_image_decode(const void *data, int64_t nbytes, int32_t flags);
/* cv::imwrite, the format from the extension; params: OpenCV's
 * (IMWRITE_* flag, value) pairs, nparams ints in all (may be 0). */
PTHCV_API int pthcv_image_write(const char *path, pthcv_tensor *image, int32_t nparams, const int32_t *params);
/* cv::resize: to width x height, or by fx, fy when width and height are 0. */
PTHCV_API pthcv_tensor *pthcv_image_resize(pthcv_tensor *image, int32_t width, int32_t height, double fx, double fy,
                                           int32_t interpolation);
/* cv::cvtColor; code: a cv::ColorConversionCodes value (COLOR_BGR2RGB = 4...). */
PTHCV_API pthcv_tensor *pthcv_image_cvt_color(pthcv_tensor *image, int32_t code);
/* cv::Mat::convertTo: element type dtype, value * scale + shift, saturated. */
PTHCV_API pthcv_tensor *pthcv_image_convert(pthcv_tensor *image, int32_t dtype, double scale, double shift);

/* A network input from images, pthcv_blob_params_init fills in the defaults. */
typedef struct pthcv_blob_params {
    int32_t width, height; /* output size; 0, 0: the image's size (after resize) */
    int32_t resize;        /* > 0: first scale so that the shorter side is this
                               (torchvision's Resize(n)), then centre-crop to the size
                               (torchvision's CenterCrop) when crop is set */
    int32_t crop;          /* without resize: scale keeping the aspect ratio so that the
                               size is covered, then centre-crop (cv::dnn::blobFromImage) */
    int32_t swap_rb;       /* output channels 0 and 2 swapped (BGR to RGB) */
    int32_t interpolation; /* PTHCV_INTER_*; default linear */
    double scale;          /* default 1 */
    double mean[4];        /* per output channel; default 0 */
    double std[4];         /* per output channel; default 1 */
} pthcv_blob_params;
PTHCV_API void pthcv_blob_params_init(pthcv_blob_params *p);
/* float32 [n, C, height, width]: (pixel * scale - mean[c]) / std[c]. The
 * images must give the same size and channel count. */
PTHCV_API pthcv_tensor *pthcv_image_blob(int32_t n, pthcv_tensor *const *images, const pthcv_blob_params *p);

/* ==== FileStorage weights (csrc/opencv/bridge.cpp, cv::FileStorage) =========
 * Writes n tensors to path through cv::FileStorage, the format from the
 * name: .yml/.yaml, .xml or .json, each optionally .gz. Each tensor is one
 * cv::Mat (one channel) under a key made from its name: characters a key
 * cannot hold become '_', a leading digit or '-' gets a '_' before it, a
 * repeated key gets _2, _3, ...; 0-d and 1-d tensors are 1 x n Mats, n-d
 * tensors n-d Mats. Element types: uint8/bool CV_8U, int8 CV_8S, uint16
 * CV_16U, int16 CV_16S, int32 CV_32S, float16 CV_16F, float32 CV_32F,
 * float64 CV_64F; bfloat16 as CV_32F (exact); int64/uint32/uint64 as
 * CV_32S when every value fits, else refused naming the tensor; complex,
 * float8 and quantized tensors are refused. The top-level sequence
 * pthcv_names lists {key, name, dtype, shape} for every tensor. The file is
 * written whole (through a temporary file) or not at all. */
PTHCV_API int pthcv_filestorage_write(const char *path, int32_t n, const char *const *names,
                                      pthcv_tensor *const *tensors);
/* The same, calling progress(ctx, done, total) after each tensor is
 * written, done and total counting elements (progress may be NULL). Text
 * formatting makes FileStorage slow: a resnet18 takes seconds. */
typedef void (*pthcv_progress_fn)(void *ctx, double done, double total);
PTHCV_API int pthcv_filestorage_write_progress(const char *path, int32_t n, const char *const *names,
                                               pthcv_tensor *const *tensors, pthcv_progress_fn progress, void *ctx);
/* The key pthcv_filestorage_write derives from name (without collision
 * suffixes), into key[size]. */
PTHCV_API int pthcv_filestorage_key(const char *name, char *key, int64_t size);

/* ==== TorchScript source (csrc/jit/) =======================================
 * A TorchScript archive (torch.jit.trace / torch.jit.script, then save)
 * carries its forward pass as source: code/__torch__/<module path>.py,
 * the Python subset torch's python_print.cpp writes. pthcv_jit_parse turns
 * one such file into a syntax tree and nothing more: nothing in it is run
 * here; lua/pthcv/jit interprets the tree over pthcv's own ops.
 *
 * The parser is an explicit-limit recursive descent: a source larger than
 * max_source bytes, with more than max_tokens tokens, nesting blocks and
 * expressions deeper than max_nesting, or holding a string literal longer
 * than max_literal bytes is refused with PTHCV_ERR_LIMIT, naming the limit.
 * Syntax errors are PTHCV_ERR_FORMAT; Python constructs TorchScript never
 * prints (lambda, try, yield, class bodies with statements, ...) are
 * PTHCV_ERR_UNSUPPORTED. Every message starts "<name>:<line>: ". */
typedef struct pthcv_jit_limits {
    int64_t max_source;  /* bytes of one source file (default 16 MiB) */
    int64_t max_tokens;  /* tokens of one file (default 4 million) */
    int32_t max_nesting; /* nesting of blocks, brackets and operators (default 100, at most 256) */
    int64_t max_literal; /* bytes of one string literal (default 1 MiB) */
} pthcv_jit_limits;
PTHCV_API void pthcv_jit_limits_init(pthcv_jit_limits *l);

/* Syntax tree nodes. Children are listed by index: node.first is the first
 * child (-1: none), each child's next its next sibling (-1: last); nkids
 * counts them. Optional parts are PTHCV_JIT_EMPTY nodes, so a kind's
 * children always sit at the same positions:
 *   MODULE     statements...
 *   CLASS      s = name; bases (a TUPLE), BLOCK
 *   DEF        s = name; PARAMS, return annotation | EMPTY, BLOCK
 *   PARAMS     PARAM...           PARAM  s = name; annotation | EMPTY, default | EMPTY
 *   BLOCK      statements...
 *   ASSIGN     target..., value   (a = b = v: two targets; a, b = v: one TUPLE target)
 *   ANNASSIGN  target, annotation, value | EMPTY
 *   AUGASSIGN  op = PTHCV_JOP_ADD...; target, value
 *   EXPR       expression         RETURN  value | EMPTY      RAISE  exception | EMPTY
 *   IF         test, BLOCK, else (BLOCK | EMPTY; elif is an else BLOCK holding one IF)
 *   WHILE      test, BLOCK        FOR     target, iterable, BLOCK
 *   ASSERT     test, message | EMPTY
 *   WITH       context, target | EMPTY, BLOCK
 *   DEL        targets...         IMPORT  s = dotted name
 *   PASS, BREAK, CONTINUE: no children
 *   NAME s; INT i; FLOAT f; STR s, len (escapes resolved, NUL-terminated);
 *   CONST op = PTHCV_JCONST_NONE / TRUE / FALSE
 *   ATTR       s = attribute; value
 *   SUBSCRIPT  value, index (a TUPLE for x[a, b])
 *   SLICE      lower | EMPTY, upper | EMPTY, step | EMPTY
 *   CALL       callee, positional arguments..., KEYWORD...    KEYWORD s = name; value
 *   BINOP, COMPARE, BOOLOP  op; left, right      UNARY  op; operand
 *   IFEXP      test, value if true, value if false
 *   LIST, TUPLE  items...         DICT  key, value, key, value...
 * line: the 1-based line the node starts on. */
enum {
    PTHCV_JIT_EMPTY = 0,
    PTHCV_JIT_MODULE,
    PTHCV_JIT_CLASS,
    PTHCV_JIT_DEF,
    PTHCV_JIT_PARAMS,
    PTHCV_JIT_PARAM,
    PTHCV_JIT_BLOCK,
    PTHCV_JIT_ASSIGN,
    PTHCV_JIT_ANNASSIGN,
    PTHCV_JIT_AUGASSIGN,
    PTHCV_JIT_EXPR,
    PTHCV_JIT_IF,
    PTHCV_JIT_WHILE,
    PTHCV_JIT_FOR,
    PTHCV_JIT_RETURN,
    PTHCV_JIT_PASS,
    PTHCV_JIT_BREAK,
    PTHCV_JIT_CONTINUE,
    PTHCV_JIT_RAISE,
    PTHCV_JIT_ASSERT,
    PTHCV_JIT_WITH,
    PTHCV_JIT_DEL,
    PTHCV_JIT_IMPORT,
    PTHCV_JIT_NAME,
    PTHCV_JIT_INT,
    PTHCV_JIT_FLOAT,
    PTHCV_JIT_STR,
    PTHCV_JIT_CONST,
    PTHCV_JIT_ATTR,
    PTHCV_JIT_SUBSCRIPT,
    PTHCV_JIT_SLICE,
    PTHCV_JIT_CALL,
    PTHCV_JIT_KEYWORD,
    PTHCV_JIT_BINOP,
    PTHCV_JIT_UNARY,
    PTHCV_JIT_BOOLOP,
    PTHCV_JIT_COMPARE,
    PTHCV_JIT_IFEXP,
    PTHCV_JIT_LIST,
    PTHCV_JIT_TUPLE,
    PTHCV_JIT_DICT,
    PTHCV_JIT_KIND_COUNT
};
/* Operators (node.op). */
enum {
    PTHCV_JOP_NONE = 0,
    PTHCV_JOP_ADD,
    PTHCV_JOP_SUB,
    PTHCV_JOP_MUL,
    PTHCV_JOP_DIV,
    PTHCV_JOP_FLOORDIV,
    PTHCV_JOP_MOD,
    PTHCV_JOP_POW,
    PTHCV_JOP_MATMUL,
    PTHCV_JOP_LSHIFT,
    PTHCV_JOP_RSHIFT,
    PTHCV_JOP_BITAND,
    PTHCV_JOP_BITOR,
    PTHCV_JOP_BITXOR,
    PTHCV_JOP_NEG,
    PTHCV_JOP_POS,
    PTHCV_JOP_INVERT,
    PTHCV_JOP_NOT,
    PTHCV_JOP_AND,
    PTHCV_JOP_OR,
    PTHCV_JOP_EQ,
    PTHCV_JOP_NE,
    PTHCV_JOP_LT,
    PTHCV_JOP_LE,
    PTHCV_JOP_GT,
    PTHCV_JOP_GE,
    PTHCV_JOP_IS,
    PTHCV_JOP_ISNOT,
    PTHCV_JOP_IN,
    PTHCV_JOP_NOTIN,
    PTHCV_JOP_COUNT
};
enum { PTHCV_JCONST_NONE = 0, PTHCV_JCONST_TRUE = 1, PTHCV_JCONST_FALSE = 2 };

typedef struct pthcv_jit_node {
    int32_t kind; /* PTHCV_JIT_* */
    int32_t op;   /* PTHCV_JOP_* or PTHCV_JCONST_* */
    int32_t line;
    int32_t nkids;
    int32_t first, next; /* child and sibling indices, -1 for none */
    int64_t i;
    double f;
    const char *s; /* NUL-terminated; owned by the tree */
    int64_t len;
} pthcv_jit_node;

typedef struct pthcv_jit_ast pthcv_jit_ast;
/* Parses len bytes of source; name ("code/__torch__/m.py") prefixes every
 * message. lim may be NULL for the defaults. NULL on failure. */
PTHCV_API pthcv_jit_ast *pthcv_jit_parse(const char *src, int64_t len, const char *name, const pthcv_jit_limits *lim);
/* The nodes, nodes[0] being the MODULE; valid until pthcv_jit_ast_free. */
PTHCV_API const pthcv_jit_node *pthcv_jit_ast_nodes(const pthcv_jit_ast *a, int32_t *count);
PTHCV_API void pthcv_jit_ast_free(pthcv_jit_ast *a);

/* The records of a zip archive, named relative to its top folder
 * ("code/__torch__/torchvision/models/resnet.py", "constants.pkl"), in
 * directory order; 0 records for the legacy and tar formats. */
PTHCV_API int64_t pthcv_file_record_count(const pthcv_file *f);
PTHCV_API const char *pthcv_file_record_name(const pthcv_file *f, int64_t i); /* NULL when out of range */
/* One record, read whole into new memory (NUL-terminated, *len bytes
 * before the NUL) that the caller frees with pthcv_free; at most
 * max_pickle bytes. NULL on failure. */
PTHCV_API void *pthcv_file_read_record(pthcv_file *f, const char *name, int64_t *len);
PTHCV_API void pthcv_free(void *p);

/* ==== Detection (csrc/kernels/ops_detection.c, ops_roi.c, ops_masks.c) =====
 * torchvision.ops' box operations and the detectors' post-processing steps,
 * with torchvision 0.14's float32 arithmetic and operation order, and with
 * torch's order for equal scores (its unstable sort and its top-k replayed:
 * ops_order.c), so that the same boxes survive in the same order. Boxes are
 * float32 [N, 4] as (x1, y1, x2, y2); indices, given and returned, are
 * int64 and 0-based. Results are new tensors the caller releases. */

/* IoU of every pair: float32 [N, M] (torchvision.ops.box_iou). */
PTHCV_API pthcv_tensor *pthcv_box_iou(pthcv_tensor *boxes1, pthcv_tensor *boxes2);
/* The boxes non-maximum suppression keeps, by decreasing score: int64 [K]
 * (torchvision.ops.nms: a box is dropped when its IoU with a kept,
 * higher-ranked box is > iou_threshold). */
PTHCV_API pthcv_tensor *pthcv_nms(pthcv_tensor *boxes, pthcv_tensor *scores, double iou_threshold);
/* NMS within each category, idxs int64 [N]: torchvision.ops.batched_nms,
 * with its two strategies (boxes offset per category up to 1000 boxes, one
 * NMS per category above) and so its exact results. */
PTHCV_API pthcv_tensor *pthcv_batched_nms(pthcv_tensor *boxes, pthcv_tensor *scores, pthcv_tensor *idxs,
                                          double iou_threshold);
/* [..., 4k] boxes clamped to x in [0, width], y in [0, height]. */
PTHCV_API pthcv_tensor *pthcv_clip_boxes_to_image(pthcv_tensor *boxes, int64_t height, int64_t width);
/* int64 indices of the boxes whose width and height are both >= min_size. */
PTHCV_API pthcv_tensor *pthcv_remove_small_boxes(pthcv_tensor *boxes, double min_size);
/* BoxCoder.decode_single: rel_codes [N, 4k] (dx, dy, dw, dh per box)
 * against reference boxes [N, 4]; weights: 4 values (wx, wy, ww, wh); dw and
 * dh clamped at bbox_xform_clip (torchvision: log(1000 / 16)). [N, 4k]. */
PTHCV_API pthcv_tensor *pthcv_box_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes, const double *weights,
                                         double bbox_xform_clip);
/* BoxLinearCoder.decode (FCOS): rel_codes [N, 4] (left, top, right, bottom
 * distances from the box centre, times its size when normalize_by_size). */
PTHCV_API pthcv_tensor *pthcv_box_linear_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes,
                                                int32_t normalize_by_size);
/* torch.sort(values, descending=True)[1] and torch.topk(values, k)[1] of a
 * float32 [N]: int64 indices in torch's order, ties included. */
PTHCV_API pthcv_tensor *pthcv_sort_desc_indices(pthcv_tensor *values);
PTHCV_API pthcv_tensor *pthcv_topk_indices(pthcv_tensor *values, int64_t k);
/* SSD's per-class candidates for one image (ops_ssd.c; the loop of
 * torchvision's SSD.postprocess_detections before batched_nms): scores
 * float32 [A, C] (after the softmax), boxes [A, 4] (decoded, clipped); for
 * each label 1..C-1 in order, the anchors whose score is > score_thresh
 * (compared in float32), their min(topk_candidates, count) best in
 * torch.topk's order, ties included. *boxes [M, 4], *scores [M] and
 * *labels int64 [M] of the labels concatenated. */
PTHCV_API int pthcv_ssd_candidates(pthcv_tensor *scores, pthcv_tensor *boxes, double score_thresh,
                                   int64_t topk_candidates, pthcv_tensor **out_boxes, pthcv_tensor **out_scores,
                                   pthcv_tensor **out_labels);
/* torchvision's to_tensor of an OpenCV picture (ops_to_tensor.c;
 * pthcv.detect's input): image uint8 [H, W, 3], BGR, any strides ->
 * float32 [3, H, W], RGB, each value / 255 in float32 (torch's
 * img.permute(2, 0, 1).float().div(255) of the RGB picture). */
PTHCV_API pthcv_tensor *pthcv_image_to_tensor(pthcv_tensor *image);
/* torchvision.ops.roi_align: input [N, C, H, W], rois [K, 5] (batch index,
 * x1, y1, x2, y2 in input coordinates / spatial_scale); sampling_ratio <= 0:
 * ceil(roi size / output size) samples per bin; aligned: the -0.5 pixel
 * shift. float32 [K, C, out_h, out_w]. */
PTHCV_API pthcv_tensor *pthcv_roi_align(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                                        int32_t out_w, int32_t sampling_ratio, int32_t aligned);
/* torchvision.ops.roi_pool: the maximum of each bin (0 for an empty bin). */
PTHCV_API pthcv_tensor *pthcv_roi_pool(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                                       int32_t out_w);
/* Mask R-CNN's paste_masks_in_image: masks float32 [N, 1, M, M] (after the
 * sigmoid), boxes [N, 4] in the image, padding 1 in torchvision: float32
 * [N, 1, height, width], each mask resized into its box, zero elsewhere. */
PTHCV_API pthcv_tensor *pthcv_paste_masks(pthcv_tensor *masks, pthcv_tensor *boxes, int64_t height, int64_t width,
                                          int32_t padding);
/* Keypoint R-CNN's heatmaps_to_keypoints: maps float32 [R, K, S, S], rois
 * [R, 4]: *keypoints float32 [R, K, 3] (x, y, 1) and *scores [R, K]. */
PTHCV_API int pthcv_heatmaps_to_keypoints(pthcv_tensor *maps, pthcv_tensor *rois, pthcv_tensor **keypoints,
                                          pthcv_tensor **scores);
/* A segmentation model's class map (csrc/kernels/ops_segment.c): logits
 * float32 [C, H, W] or [1, C, H, W], C <= 256 -> uint8 [H, W], per pixel
 * the largest channel's index (the first on ties, NaN the largest, as
 * torch.argmax); with scores non-NULL also *scores float32 [H, W], that
 * class's softmax probability. out_h, out_w > 0: of the logits resized to
 * that size first (bilinear, align_corners false: the values of
 * pthcv_interpolate, without making that tensor, even at the same size);
 * (0, 0): of the logits as they are. */
PTHCV_API pthcv_tensor *pthcv_class_map(pthcv_tensor *logits, int32_t out_h, int32_t out_w, pthcv_tensor **scores);

/* ==== Drawing (csrc/opencv/draw.cpp, OpenCV imgproc) ========================
 * In place on an image [H, W, C] (C = 1, 3 or 4, BGR(A)) whose pixels are
 * packed within rows (an image pthcv made, a clone or a crop of one; others
 * are refused, not drawn on a copy). color: 4 values, one per channel;
 * thickness < 0 fills; line_type 4, 8 or 16 (antialiased), as cv::LineTypes;
 * font: a cv::HersheyFonts value. Coordinates are pixels, (x, y) from the
 * top-left corner. */
PTHCV_API int pthcv_draw_rectangle(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2,
                                   const double *color, int32_t thickness, int32_t line_type);
PTHCV_API int pthcv_draw_line(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2, const double *color,
                              int32_t thickness, int32_t line_type);
PTHCV_API int pthcv_draw_circle(pthcv_tensor *image, int32_t x, int32_t y, int32_t radius, const double *color,
                                int32_t thickness, int32_t line_type);
/* (x, y): the text's bottom-left corner (cv::putText). */
PTHCV_API int pthcv_draw_text(pthcv_tensor *image, const char *text, int32_t x, int32_t y, int32_t font, double scale,
                              const double *color, int32_t thickness, int32_t line_type);
/* size[0..2] = width, height, baseline (cv::getTextSize). */
PTHCV_API int pthcv_text_size(const char *text, int32_t font, double scale, int32_t thickness, int32_t *size);
/* image = image * (1 - alpha) + color * alpha where mask [H, W] > threshold. */
PTHCV_API int pthcv_blend_mask(pthcv_tensor *image, pthcv_tensor *mask, double threshold, const double *color,
                               double alpha);

/* ==== Video (csrc/opencv/videoio.cpp, in libpthcv_videoio.so) ================
 * cv::VideoCapture and cv::VideoWriter, in a library of their own beside
 * libpthcv.so that pthcv loads only when video is used (OpenCV's videoio
 * pulls in FFmpeg and GStreamer). Frames are images [H, W, 3] uint8 BGR. */
typedef struct pthcv_video pthcv_video;
/* A video file (any FFmpeg-readable path or URL) or a camera (index >= 0,
 * path NULL). NULL with the error set when it cannot be opened. */
PTHCV_API pthcv_video *pthcv_video_open(const char *path, int32_t camera);
/* info[0..3]: frames per second (0 unknown), width, height, frame count (-1 unknown). */
PTHCV_API int pthcv_video_info(pthcv_video *v, double *info);
/* The next frame, or NULL: at the end with status PTHCV_OK, else an error. */
PTHCV_API pthcv_tensor *pthcv_video_read(pthcv_video *v);
PTHCV_API void pthcv_video_close(pthcv_video *v);

typedef struct pthcv_video_writer pthcv_video_writer;
/* A video file of frames width x height at fps; fourcc: 4 characters
 * ("mp4v", "MJPG", ...), or NULL for one chosen from the extension. */
PTHCV_API pthcv_video_writer *pthcv_video_writer_open(const char *path, const char *fourcc, double fps, int32_t width,
                                                      int32_t height);
PTHCV_API int pthcv_video_write(pthcv_video_writer *w, pthcv_tensor *frame);
/* Finishes the file; returns its status (an error when a write failed). */
PTHCV_API int pthcv_video_writer_close(pthcv_video_writer *w);

/* PTHCV_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* PTHCV_H */
