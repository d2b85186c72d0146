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
 * PTHCV_CDEF_BEGIN/END markers must stay plain declarations (no macros, no
 * includes); spec/cdef_spec.lua checks lua/pthcv/cdef.lua against it.
 */
#ifndef PTHCV_H
#define PTHCV_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* PTHCV_CDEF_BEGIN */

/* Status codes. */
enum {
    PTHCV_OK = 0,
    PTHCV_ERR_IO = 1,          /* the file cannot be opened or read */
    PTHCV_ERR_FORMAT = 2,      /* damaged, truncated or unrecognised content */
    PTHCV_ERR_UNSAFE = 3,      /* the pickle references a dangerous global */
    PTHCV_ERR_LIMIT = 4,       /* a configured resource limit was exceeded */
    PTHCV_ERR_NOMEM = 5,       /* out of memory */
    PTHCV_ERR_ARG = 6,         /* the caller passed a bad argument */
    PTHCV_ERR_UNSUPPORTED = 7  /* valid input that pthcv cannot represent */
};

const char *pthcv_last_error(void);
int pthcv_last_status(void);
const char *pthcv_version(void);

/* Element types, named as torch names them (pthcv_dtype_name). */
typedef enum {
    PTHCV_FLOAT32 = 0, PTHCV_FLOAT64, PTHCV_FLOAT16, PTHCV_BFLOAT16,
    PTHCV_INT8, PTHCV_INT16, PTHCV_INT32, PTHCV_INT64,
    PTHCV_UINT8, PTHCV_UINT16, PTHCV_UINT32, PTHCV_UINT64,
    PTHCV_BOOL,
    PTHCV_COMPLEX32, PTHCV_COMPLEX64, PTHCV_COMPLEX128,
    PTHCV_QINT8, PTHCV_QUINT8, PTHCV_QINT32, PTHCV_QUINT4X2, PTHCV_QUINT2X4,
    PTHCV_FLOAT8_E4M3FN, PTHCV_FLOAT8_E5M2, PTHCV_FLOAT8_E4M3FNUZ, PTHCV_FLOAT8_E5M2FNUZ,
    PTHCV_DTYPE_COUNT
} pthcv_dtype;

const char *pthcv_dtype_name(int dtype);        /* "float32", ...; NULL if out of range */
int pthcv_dtype_from_name(const char *name);    /* -1 if unknown */
int pthcv_dtype_size(int dtype);                /* bytes per element; 0 if out of range */
int pthcv_dtype_is_floating(int dtype);         /* float16/32/64, bfloat16, float8 kinds */
int pthcv_dtype_is_complex(int dtype);
int pthcv_dtype_is_quantized(int dtype);

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
    int32_t dtype;                  /* pthcv_dtype */
    int32_t ndim;                   /* 0 for a scalar tensor */
    int32_t flags;                  /* PTHCV_TENSOR_* bits */
    int64_t shape[PTHCV_MAX_DIMS];
    int64_t stride[PTHCV_MAX_DIMS]; /* in elements */
    int64_t offset;                 /* storage offset, in elements */
    int64_t numel;
    pthcv_storage *storage;
    /* quantization parameters, when dtype is a quantized type */
    int32_t qscheme;                /* PTHCV_QSCHEME_* */
    int32_t qaxis;                  /* per-channel axis */
    double qscale;                  /* per-tensor */
    int64_t qzero_point;            /* per-tensor */
    struct pthcv_tensor *qscales;      /* per-channel: float64 or float32 [shape[qaxis]] */
    struct pthcv_tensor *qzero_points; /* per-channel: int64 or float [shape[qaxis]] */
} pthcv_tensor;

enum {
    PTHCV_TENSOR_REQUIRES_GRAD = 1,
    PTHCV_TENSOR_PARAMETER = 2      /* rebuilt as torch.nn.Parameter */
};

/* A new contiguous tensor owning zeroed memory. shape may be NULL when ndim is 0. */
pthcv_tensor *pthcv_tensor_new(int dtype, int ndim, const int64_t *shape);
/* A new tensor viewing t's storage with other sizes, strides and offset; the
 * view is checked against the storage's extent. */
pthcv_tensor *pthcv_tensor_view(pthcv_tensor *t, int ndim, const int64_t *shape,
                                const int64_t *stride, int64_t offset);
/* A tensor over memory someone else owns (an OpenCV Mat, ...), not copied:
 * shape/stride in elements from data, checked against nbytes. release(ctx)
 * runs once the last tensor viewing the memory is released (release may be
 * NULL). On failure release is not called: the caller keeps its memory. */
pthcv_tensor *pthcv_tensor_from_data(int dtype, int ndim, const int64_t *shape, const int64_t *stride,
                                     void *data, int64_t nbytes, void (*release)(void *ctx), void *ctx);
pthcv_tensor *pthcv_tensor_retain(pthcv_tensor *t);
void pthcv_tensor_release(pthcv_tensor *t);

/* Pointer to element 0 of the tensor (storage start + offset), reading the
 * storage from its file on first touch. NULL on error (short record, I/O). */
void *pthcv_tensor_data(pthcv_tensor *t);
/* Nonzero once the storage's bytes are in memory. */
int pthcv_tensor_is_materialized(const pthcv_tensor *t);
int pthcv_tensor_is_contiguous(const pthcv_tensor *t);
int64_t pthcv_tensor_nbytes(const pthcv_tensor *t);        /* numel * element size */

/* Storage facts, for listing and for telling shared storages apart. */
int64_t pthcv_tensor_storage_nbytes(const pthcv_tensor *t);
const char *pthcv_tensor_storage_key(const pthcv_tensor *t);  /* record key, "" for memory */
const void *pthcv_tensor_storage_id(const pthcv_tensor *t);   /* same pointer = same storage */

/* New contiguous tensors (new references; the caller releases them). */
pthcv_tensor *pthcv_tensor_contiguous(pthcv_tensor *t);   /* t retained when already contiguous */
pthcv_tensor *pthcv_tensor_to(pthcv_tensor *t, int dtype);  /* value conversion, as torch's .to(dtype) */
pthcv_tensor *pthcv_tensor_dequantize(pthcv_tensor *t);   /* float32, as torch's .dequantize() */

/* One element, by element offset from the tensor's data pointer (the sum of
 * index * stride). Complex types fill *im; others set it to 0. */
int pthcv_tensor_get(pthcv_tensor *t, int64_t element_offset, double *re, double *im);
int pthcv_tensor_set(pthcv_tensor *t, int64_t element_offset, double re, double im);

/* Scalar conversions used by the exporters and the Lua side. */
float pthcv_half_to_float(uint16_t h);
uint16_t pthcv_float_to_half(float f);
float pthcv_bfloat16_to_float(uint16_t b);
uint16_t pthcv_float_to_bfloat16(float f);

/* The value tree built by the pickle machine. */
typedef enum {
    PTHCV_V_NONE = 0,
    PTHCV_V_BOOL,       /* i */
    PTHCV_V_INT,        /* i */
    PTHCV_V_BIGINT,     /* s, len: little-endian two's complement bytes */
    PTHCV_V_FLOAT,      /* f */
    PTHCV_V_COMPLEX,    /* f + f_im * 1j */
    PTHCV_V_STR,        /* s, len: UTF-8, NUL-terminated */
    PTHCV_V_BYTES,      /* s, len */
    PTHCV_V_BYTEARRAY,  /* s, len */
    PTHCV_V_LIST,       /* items[0..n) */
    PTHCV_V_TUPLE,      /* items[0..n) */
    PTHCV_V_DICT,       /* items[2k] -> items[2k+1], k < n, insertion order; PTHCV_VF_ORDERED */
    PTHCV_V_SET,        /* items[0..n) */
    PTHCV_V_FROZENSET,  /* items[0..n) */
    PTHCV_V_TENSOR,     /* tensor */
    PTHCV_V_STORAGE,    /* tensor: a 1-d view of the whole storage (uint8 when untyped) */
    PTHCV_V_GLOBAL,     /* s: "module.name", a class or function referenced, never called */
    PTHCV_V_OBJECT      /* s: "module.name" of its class or constructor; args, state, items */
} pthcv_kind;

enum {
    PTHCV_VF_ORDERED = 1,   /* a collections.OrderedDict */
    PTHCV_VF_UNSAFE = 2     /* a GLOBAL or OBJECT naming a dangerous global (scan mode only) */
};

typedef struct pthcv_value pthcv_value;
struct pthcv_value {
    int32_t kind;           /* pthcv_kind */
    int32_t flags;          /* PTHCV_VF_* */
    int64_t i;
    double f, f_im;
    const char *s;
    int64_t len;
    int64_t n;              /* LIST/TUPLE/SET: items; DICT: pairs; OBJECT: dict pairs or list items */
    pthcv_value **items;
    pthcv_tensor *tensor;   /* owned by the tree; retain it to keep it */
    pthcv_value *args;      /* OBJECT: constructor arguments (a tuple) or NULL */
    pthcv_value *kwargs;    /* OBJECT: NEWOBJ_EX keyword arguments (a dict) or NULL */
    pthcv_value *state;     /* OBJECT, DICT, ...: the BUILD state or NULL */
    int64_t cap;            /* internal: allocated slots in items */
    int64_t depth;          /* internal: container nesting below this value */
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

void pthcv_options_init(pthcv_options *o);

typedef struct pthcv_file pthcv_file;

/* Opens a file written by torch.save or torch.jit.save, recognised by its
 * first bytes. Reads and checks every pickle and every storage's extent; no
 * storage bytes are read. opts may be NULL for the defaults. */
int pthcv_open(const char *path, const pthcv_options *opts, pthcv_file **out);
/* Frees the value tree; storages retained through tensors stay readable. */
void pthcv_close(pthcv_file *f);

const char *pthcv_file_path(const pthcv_file *f);
/* "zip", "legacy", "tar" or "torchscript". */
const char *pthcv_file_format(const pthcv_file *f);
/* The unpickled object: data.pkl, the legacy main pickle. */
const pthcv_value *pthcv_file_root(const pthcv_file *f);
/* TorchScript archives: the constants.pkl tuple; NULL for other formats. */
const pthcv_value *pthcv_file_constants(const pthcv_file *f);
/* Every distinct global the file's pickles reference, "module.name", in
 * first-seen order; *unsafe is set for dangerous ones. */
int pthcv_file_global_count(const pthcv_file *f);
const char *pthcv_file_global(const pthcv_file *f, int i, int *unsafe);
/* Nonzero when a global is one pthcv refuses (os.system, builtins.eval, ...). */
int pthcv_global_is_unsafe(const char *module, const char *name);

/* Writers: every tensor under its name, bytes as in memory (contiguous copy). */
int pthcv_save_npy(const char *path, pthcv_tensor *t);
int pthcv_save_npz(const char *path, int n, const char *const *names, pthcv_tensor *const *tensors);
int pthcv_save_safetensors(const char *path, int n, const char *const *names,
                           pthcv_tensor *const *tensors, const char *metadata_json);

/* ==== Inference (csrc/kernels/) ===========================================
 * Operations on float32 tensors with PyTorch's semantics. Activations are
 * NCHW (or any layout the op documents) and need not be contiguous unless
 * said; results are new contiguous tensors the caller releases. Every kernel
 * has a scalar reference and SIMD versions (AVX2+FMA, AVX-512, NEON) chosen
 * at run time; results do not depend on the thread count. */

/* Threads used by the kernels; default: the number of online CPUs. */
void pthcv_set_num_threads(int n);
int pthcv_get_num_threads(void);
/* The instruction sets this CPU offers and the one the kernels use, e.g.
 * "avx2 fma f16c; using avx2". */
const char *pthcv_cpu_info(void);
/* Forces a kernel family for tests and benchmarks: "scalar", "avx2",
 * "avx512", "neon", or "auto". Fails if the CPU lacks it. */
int pthcv_set_isa(const char *isa);

/* Activations, fusable into convolutions and linear layers. alpha/beta:
 * LEAKY_RELU slope, ELU alpha, CLAMP min/max (ReLU6 is CLAMP 0..6). */
enum {
    PTHCV_ACT_NONE = 0, PTHCV_ACT_RELU, PTHCV_ACT_RELU6, PTHCV_ACT_LEAKY_RELU, PTHCV_ACT_ELU,
    PTHCV_ACT_SIGMOID, PTHCV_ACT_TANH, PTHCV_ACT_SILU, PTHCV_ACT_HARDSWISH, PTHCV_ACT_HARDSIGMOID,
    PTHCV_ACT_GELU, PTHCV_ACT_GELU_TANH, PTHCV_ACT_CLAMP
};
typedef struct pthcv_activation {
    int32_t kind;
    float alpha, beta;
} pthcv_activation;

enum { PTHCV_PAD_ZEROS = 0, PTHCV_PAD_REFLECT, PTHCV_PAD_REPLICATE, PTHCV_PAD_CIRCULAR, PTHCV_PAD_CONSTANT };

typedef struct pthcv_conv2d_params {
    int32_t stride[2], padding[2], dilation[2];   /* (h, w) */
    int32_t groups;
    int32_t padding_mode;                         /* PTHCV_PAD_ZEROS/REFLECT/REPLICATE/CIRCULAR */
    pthcv_activation act;                         /* applied after bias and residual */
} pthcv_conv2d_params;

/* A convolution prepared once: weights [out, in/groups, kh, kw] packed into
 * the layout the kernels stream, bias folded in. The pack is the only copy
 * of the weights it keeps. float16 weights stay float16 in the pack (half
 * the memory) and are converted block by block as the kernels stream them
 * (F16C / NEON); the arithmetic is float32. The bias is float32. */
typedef struct pthcv_conv2d pthcv_conv2d;
pthcv_conv2d *pthcv_conv2d_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_conv2d_params *p);
void pthcv_conv2d_free(pthcv_conv2d *c);
/* y = act(conv(x) + bias + residual); residual (same shape as y) may be NULL. */
pthcv_tensor *pthcv_conv2d_forward(pthcv_conv2d *c, pthcv_tensor *x, pthcv_tensor *residual);
/* The weights the pack computes with, as a new float32 tensor
 * [out, in/groups, kh, kw] (a folded BatchNorm included). */
pthcv_tensor *pthcv_conv2d_weight(pthcv_conv2d *c);
/* Bytes of weights the pack holds now (all its packed copies). */
int64_t pthcv_conv2d_weight_bytes(pthcv_conv2d *c);
/* Folds eval-mode BatchNorm into the preceding convolution, in double
 * precision: returns new weight and bias (bias may be NULL on input). */
int pthcv_fold_batchnorm(pthcv_tensor *weight, pthcv_tensor *bias, pthcv_tensor *running_mean,
                         pthcv_tensor *running_var, pthcv_tensor *gamma, pthcv_tensor *beta, double eps,
                         pthcv_tensor **new_weight, pthcv_tensor **new_bias);

pthcv_tensor *pthcv_conv_transpose2d(pthcv_tensor *x, pthcv_tensor *weight, pthcv_tensor *bias,
                                     const int32_t stride[2], const int32_t padding[2],
                                     const int32_t output_padding[2], const int32_t dilation[2], int32_t groups);

/* Linear: y = act(x W^T + b) over the last dimension of x. */
typedef struct pthcv_linear pthcv_linear;
pthcv_linear *pthcv_linear_prepare(pthcv_tensor *weight, pthcv_tensor *bias, const pthcv_activation *act);
void pthcv_linear_free(pthcv_linear *l);
pthcv_tensor *pthcv_linear_forward(pthcv_linear *l, pthcv_tensor *x);
/* Bytes of weights the layer holds now (float16 weights stay float16). */
int64_t pthcv_linear_weight_bytes(pthcv_linear *l);

/* Normalisation (eval mode). weight/bias may be NULL. */
pthcv_tensor *pthcv_batch_norm(pthcv_tensor *x, pthcv_tensor *running_mean, pthcv_tensor *running_var,
                               pthcv_tensor *weight, pthcv_tensor *bias, double eps);
pthcv_tensor *pthcv_layer_norm(pthcv_tensor *x, int32_t normalized_ndim, pthcv_tensor *weight,
                               pthcv_tensor *bias, double eps);
pthcv_tensor *pthcv_group_norm(pthcv_tensor *x, int32_t groups, pthcv_tensor *weight, pthcv_tensor *bias,
                               double eps);

/* Elementwise. */
pthcv_tensor *pthcv_activate(pthcv_tensor *x, const pthcv_activation *act);
pthcv_tensor *pthcv_prelu(pthcv_tensor *x, pthcv_tensor *weight);   /* weight: 1 or C values, channel dim 1 */
pthcv_tensor *pthcv_softmax(pthcv_tensor *x, int32_t dim, int32_t log);
enum { PTHCV_BIN_ADD = 0, PTHCV_BIN_SUB, PTHCV_BIN_MUL, PTHCV_BIN_DIV, PTHCV_BIN_MAX, PTHCV_BIN_MIN };
/* a op b with NumPy/PyTorch broadcasting. */
pthcv_tensor *pthcv_binary(pthcv_tensor *a, pthcv_tensor *b, int32_t op);
pthcv_tensor *pthcv_binary_scalar(pthcv_tensor *a, double s, int32_t op, int32_t scalar_first);

/* Pooling over the last two dimensions. */
enum { PTHCV_POOL_MAX = 0, PTHCV_POOL_AVG = 1 };
typedef struct pthcv_pool2d_params {
    int32_t kind;
    int32_t kernel[2], stride[2], padding[2], dilation[2];
    int32_t ceil_mode, count_include_pad, divisor_override;   /* divisor_override 0: none */
} pthcv_pool2d_params;
pthcv_tensor *pthcv_pool2d(pthcv_tensor *x, const pthcv_pool2d_params *p);
pthcv_tensor *pthcv_adaptive_pool2d(pthcv_tensor *x, int32_t kind, int32_t out_h, int32_t out_w);

/* Shapes and data movement (views need no kernel: pthcv_tensor_view). */
pthcv_tensor *pthcv_cat(int32_t n, pthcv_tensor *const *xs, int32_t dim);
/* pads: (left, right) pairs from the last dimension backwards, as F.pad. */
pthcv_tensor *pthcv_pad(pthcv_tensor *x, int32_t npairs, const int64_t *pads, int32_t mode, double value);
enum { PTHCV_REDUCE_SUM = 0, PTHCV_REDUCE_MEAN, PTHCV_REDUCE_MAX, PTHCV_REDUCE_MIN };
pthcv_tensor *pthcv_reduce(pthcv_tensor *x, int32_t op, int32_t ndims, const int32_t *dims, int32_t keepdim);
/* torch.matmul semantics (1-d, 2-d and batched with broadcasting). */
pthcv_tensor *pthcv_matmul(pthcv_tensor *a, pthcv_tensor *b);
enum { PTHCV_INTERP_NEAREST = 0, PTHCV_INTERP_BILINEAR = 1 };
/* scale_h/scale_w: the scale factors the user gave (0: derive from sizes),
 * as torch's interpolate uses them for the source index. */
pthcv_tensor *pthcv_interpolate(pthcv_tensor *x, int32_t out_h, int32_t out_w, int32_t mode,
                                int32_t align_corners, double scale_h, double scale_w);

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
enum { PTHCV_INTER_NEAREST = 0, PTHCV_INTER_LINEAR = 1, PTHCV_INTER_CUBIC = 2, PTHCV_INTER_AREA = 3,
       PTHCV_INTER_LANCZOS4 = 4, PTHCV_INTER_LINEAR_EXACT = 5, PTHCV_INTER_NEAREST_EXACT = 6 };

/* Image files (these three are in libpthcv_imgcodecs.so, beside
 * libpthcv.so: OpenCV's imgcodecs and its many dependencies are loaded only
 * by programs that read or write image files).
 * cv::imread / cv::imdecode; flags PTHCV_IMREAD_*. */
pthcv_tensor *pthcv_image_read(const char *path, int32_t flags);
pthcv_tensor *pthcv_image_decode(const void *data, int64_t nbytes, int32_t flags);
/* cv::imwrite, the format from the extension; params: OpenCV's
 * (IMWRITE_* flag, value) pairs, nparams ints in all (may be 0). */
int pthcv_image_write(const char *path, pthcv_tensor *image, int32_t nparams, const int32_t *params);
/* cv::resize: to width x height, or by fx, fy when width and height are 0. */
pthcv_tensor *pthcv_image_resize(pthcv_tensor *image, int32_t width, int32_t height, double fx, double fy,
                                 int32_t interpolation);
/* cv::cvtColor; code: a cv::ColorConversionCodes value (COLOR_BGR2RGB = 4...). */
pthcv_tensor *pthcv_image_cvt_color(pthcv_tensor *image, int32_t code);
/* cv::Mat::convertTo: element type dtype, value * scale + shift, saturated. */
pthcv_tensor *pthcv_image_convert(pthcv_tensor *image, int32_t dtype, double scale, double shift);

/* A network input from images, pthcv_blob_params_init fills in the defaults. */
typedef struct pthcv_blob_params {
    int32_t width, height;  /* output size; 0, 0: the image's size (after resize) */
    int32_t resize;         /* > 0: first scale so that the shorter side is this
                               (torchvision's Resize(n)), then centre-crop to the size
                               (torchvision's CenterCrop) when crop is set */
    int32_t crop;           /* without resize: scale keeping the aspect ratio so that the
                               size is covered, then centre-crop (cv::dnn::blobFromImage) */
    int32_t swap_rb;        /* output channels 0 and 2 swapped (BGR to RGB) */
    int32_t interpolation;  /* PTHCV_INTER_*; default linear */
    double scale;           /* default 1 */
    double mean[4];         /* per output channel; default 0 */
    double std[4];          /* per output channel; default 1 */
} pthcv_blob_params;
void pthcv_blob_params_init(pthcv_blob_params *p);
/* float32 [n, C, height, width]: (pixel * scale - mean[c]) / std[c]. The
 * images must give the same size and channel count. */
pthcv_tensor *pthcv_image_blob(int32_t n, pthcv_tensor *const *images, const pthcv_blob_params *p);

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
int pthcv_filestorage_write(const char *path, int32_t n, const char *const *names, pthcv_tensor *const *tensors);
/* The key pthcv_filestorage_write derives from name (without collision
 * suffixes), into key[size]. */
int pthcv_filestorage_key(const char *name, char *key, int64_t size);

/* ==== Detection (csrc/kernels/ops_detection.c, ops_roi.c, ops_masks.c) =====
 * torchvision.ops' box operations and the detectors' post-processing steps,
 * with torchvision 0.14's float32 arithmetic and operation order, and with
 * torch's order for equal scores (its unstable sort and its top-k replayed:
 * ops_order.c), so that the same boxes survive in the same order. Boxes are
 * float32 [N, 4] as (x1, y1, x2, y2); indices, given and returned, are
 * int64 and 0-based. Results are new tensors the caller releases. */

/* IoU of every pair: float32 [N, M] (torchvision.ops.box_iou). */
pthcv_tensor *pthcv_box_iou(pthcv_tensor *boxes1, pthcv_tensor *boxes2);
/* The boxes non-maximum suppression keeps, by decreasing score: int64 [K]
 * (torchvision.ops.nms: a box is dropped when its IoU with a kept,
 * higher-ranked box is > iou_threshold). */
pthcv_tensor *pthcv_nms(pthcv_tensor *boxes, pthcv_tensor *scores, double iou_threshold);
/* NMS within each category, idxs int64 [N]: torchvision.ops.batched_nms,
 * with its two strategies (boxes offset per category up to 1000 boxes, one
 * NMS per category above) and so its exact results. */
pthcv_tensor *pthcv_batched_nms(pthcv_tensor *boxes, pthcv_tensor *scores, pthcv_tensor *idxs, double iou_threshold);
/* [..., 4k] boxes clamped to x in [0, width], y in [0, height]. */
pthcv_tensor *pthcv_clip_boxes_to_image(pthcv_tensor *boxes, int64_t height, int64_t width);
/* int64 indices of the boxes whose width and height are both >= min_size. */
pthcv_tensor *pthcv_remove_small_boxes(pthcv_tensor *boxes, double min_size);
/* BoxCoder.decode_single: rel_codes [N, 4k] (dx, dy, dw, dh per box)
 * against reference boxes [N, 4]; weights: 4 values (wx, wy, ww, wh); dw and
 * dh clamped at bbox_xform_clip (torchvision: log(1000 / 16)). [N, 4k]. */
pthcv_tensor *pthcv_box_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes, const double *weights,
                               double bbox_xform_clip);
/* BoxLinearCoder.decode (FCOS): rel_codes [N, 4] (left, top, right, bottom
 * distances from the box centre, times its size when normalize_by_size). */
pthcv_tensor *pthcv_box_linear_decode(pthcv_tensor *rel_codes, pthcv_tensor *boxes, int32_t normalize_by_size);
/* torch.sort(values, descending=True)[1] and torch.topk(values, k)[1] of a
 * float32 [N]: int64 indices in torch's order, ties included. */
pthcv_tensor *pthcv_sort_desc_indices(pthcv_tensor *values);
pthcv_tensor *pthcv_topk_indices(pthcv_tensor *values, int64_t k);
/* torchvision.ops.roi_align: input [N, C, H, W], rois [K, 5] (batch index,
 * x1, y1, x2, y2 in input coordinates / spatial_scale); sampling_ratio <= 0:
 * ceil(roi size / output size) samples per bin; aligned: the -0.5 pixel
 * shift. float32 [K, C, out_h, out_w]. */
pthcv_tensor *pthcv_roi_align(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                              int32_t out_w, int32_t sampling_ratio, int32_t aligned);
/* torchvision.ops.roi_pool: the maximum of each bin (0 for an empty bin). */
pthcv_tensor *pthcv_roi_pool(pthcv_tensor *input, pthcv_tensor *rois, double spatial_scale, int32_t out_h,
                             int32_t out_w);
/* Mask R-CNN's paste_masks_in_image: masks float32 [N, 1, M, M] (after the
 * sigmoid), boxes [N, 4] in the image, padding 1 in torchvision: float32
 * [N, 1, height, width], each mask resized into its box, zero elsewhere. */
pthcv_tensor *pthcv_paste_masks(pthcv_tensor *masks, pthcv_tensor *boxes, int64_t height, int64_t width,
                                int32_t padding);
/* Keypoint R-CNN's heatmaps_to_keypoints: maps float32 [R, K, S, S], rois
 * [R, 4]: *keypoints float32 [R, K, 3] (x, y, 1) and *scores [R, K]. */
int pthcv_heatmaps_to_keypoints(pthcv_tensor *maps, pthcv_tensor *rois, pthcv_tensor **keypoints,
                                pthcv_tensor **scores);

/* ==== Drawing (csrc/opencv/draw.cpp, OpenCV imgproc) ========================
 * In place on an image [H, W, C] (C = 1, 3 or 4, BGR(A)) whose pixels are
 * packed within rows (an image pthcv made, a clone or a crop of one; others
 * are refused, not drawn on a copy). color: 4 values, one per channel;
 * thickness < 0 fills; line_type 4, 8 or 16 (antialiased), as cv::LineTypes;
 * font: a cv::HersheyFonts value. Coordinates are pixels, (x, y) from the
 * top-left corner. */
int pthcv_draw_rectangle(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2, const double *color,
                         int32_t thickness, int32_t line_type);
int pthcv_draw_line(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2, const double *color,
                    int32_t thickness, int32_t line_type);
int pthcv_draw_circle(pthcv_tensor *image, int32_t x, int32_t y, int32_t radius, const double *color,
                      int32_t thickness, int32_t line_type);
/* (x, y): the text's bottom-left corner (cv::putText). */
int pthcv_draw_text(pthcv_tensor *image, const char *text, int32_t x, int32_t y, int32_t font, double scale,
                    const double *color, int32_t thickness, int32_t line_type);
/* size[0..2] = width, height, baseline (cv::getTextSize). */
int pthcv_text_size(const char *text, int32_t font, double scale, int32_t thickness, int32_t *size);
/* image = image * (1 - alpha) + color * alpha where mask [H, W] > threshold. */
int pthcv_blend_mask(pthcv_tensor *image, pthcv_tensor *mask, double threshold, const double *color, double alpha);

/* ==== Video (csrc/opencv/videoio.cpp, in libpthcv_videoio.so) ================
 * cv::VideoCapture and cv::VideoWriter, in a library of their own beside
 * libpthcv.so that pthcv loads only when video is used (OpenCV's videoio
 * pulls in FFmpeg and GStreamer). Frames are images [H, W, 3] uint8 BGR. */
typedef struct pthcv_video pthcv_video;
/* A video file (any FFmpeg-readable path or URL) or a camera (index >= 0,
 * path NULL). NULL with the error set when it cannot be opened. */
pthcv_video *pthcv_video_open(const char *path, int32_t camera);
/* info[0..3]: frames per second (0 unknown), width, height, frame count (-1 unknown). */
int pthcv_video_info(pthcv_video *v, double *info);
/* The next frame, or NULL: at the end with status PTHCV_OK, else an error. */
pthcv_tensor *pthcv_video_read(pthcv_video *v);
void pthcv_video_close(pthcv_video *v);

typedef struct pthcv_video_writer pthcv_video_writer;
/* A video file of frames width x height at fps; fourcc: 4 characters
 * ("mp4v", "MJPG", ...), or NULL for one chosen from the extension. */
pthcv_video_writer *pthcv_video_writer_open(const char *path, const char *fourcc, double fps, int32_t width,
                                            int32_t height);
int pthcv_video_write(pthcv_video_writer *w, pthcv_tensor *frame);
/* Finishes the file; returns its status (an error when a write failed). */
int pthcv_video_writer_close(pthcv_video_writer *w);

/* PTHCV_CDEF_END */

#ifdef __cplusplus
}
#endif
#endif /* PTHCV_H */
