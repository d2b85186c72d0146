// pthcv_opencv.hpp -- cv::Mat <-> pthcv tensor, for C++ programs using
// OpenCV. Header-only, over pthcv's C API (pthcv.h); link with -lpthcv and
// OpenCV (pkg-config opencv4).
//
//   cv::Mat img = cv::imread("cat.jpg");
//   pthcv_tensor *t = pthcv::tensor_from_mat(img);       // uint8 [H, W, 3], no copy
//   cv::Mat back = pthcv::mat_from_tensor(t);            // CV_8UC3, same memory
//   pthcv_tensor_release(t);                             // `back` keeps the bytes alive
//
// Layouts:
//   HWC   a 2-d Mat of C channels <-> a tensor [H, W, C] (always 3-d; C may be 1).
//         Zero-copy both ways: the tensor's row stride is the Mat's step, so
//         ROIs work too; a tensor whose pixels are not packed within rows is
//         copied once.
//   CHW   a tensor of any rank (e.g. [C, H, W], an NCHW blob) <-> an n-d
//         single-channel Mat of the same sizes and strides (what cv::dnn
//         uses for blobs). Zero-copy when the last stride is 1 and the
//         strides decrease; a 2-d multi-channel Mat is split into planes
//         (one copy).
// Element types: CV_8U uint8, CV_8S int8, CV_16U uint16, CV_16S int16,
// CV_32S int32, CV_16F float16, CV_32F float32, CV_64F float64.
//
// Ownership: a tensor made from a Mat holds a reference to the Mat's data
// (cv::Mat's own reference count); a Mat made from a tensor holds a
// reference to the tensor (through a cv::MatAllocator that releases it).
// Either side may be dropped first. Errors throw pthcv::error.
#ifndef PTHCV_OPENCV_HPP
#define PTHCV_OPENCV_HPP

#include "pthcv.h"

#include <opencv2/core.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace pthcv
{

struct error : std::runtime_error {
    explicit error(const std::string &what) : std::runtime_error(what) {}
};

// The C library's last error as an exception.
[[noreturn]] inline void throw_last_error(const char *what)
{
    const char *msg = pthcv_last_error();
    throw error(std::string("pthcv: ") + (msg && *msg ? msg : what));
}

enum class Layout { HWC, CHW };

// OpenCV depth <-> pthcv dtype; -1 when there is no counterpart.
inline int dtype_of_depth(int depth)
{
    switch (depth) {
    case CV_8U: return PTHCV_UINT8;
    case CV_8S: return PTHCV_INT8;
    case CV_16U: return PTHCV_UINT16;
    case CV_16S: return PTHCV_INT16;
    case CV_32S: return PTHCV_INT32;
    case CV_16F: return PTHCV_FLOAT16;
    case CV_32F: return PTHCV_FLOAT32;
    case CV_64F: return PTHCV_FLOAT64;
    default: return -1;
    }
}

inline int depth_of_dtype(int dtype)
{
    switch (dtype) {
    case PTHCV_UINT8: return CV_8U;
    case PTHCV_INT8: return CV_8S;
    case PTHCV_UINT16: return CV_16U;
    case PTHCV_INT16: return CV_16S;
    case PTHCV_INT32: return CV_32S;
    case PTHCV_FLOAT16: return CV_16F;
    case PTHCV_FLOAT32: return CV_32F;
    case PTHCV_FLOAT64: return CV_64F;
    default: return -1;
    }
}

namespace detail
{

// A Mat's memory for as long as the tensor storage viewing it lives.
inline void release_mat(void *ctx) { delete static_cast<cv::Mat *>(ctx); }

// Wraps m's memory (m.data, not m.datastart) in a tensor of the given shape
// and element strides; the tensor holds a reference to the Mat.
inline pthcv_tensor *wrap_mat(const cv::Mat &m, int dtype, int ndim, const int64_t *shape, const int64_t *stride)
{
    int64_t elsize = (int64_t)m.elemSize1(), extent = 1;
    for (int i = 0; i < ndim; i++)
        if (shape[i] > 0) extent += (shape[i] - 1) * stride[i];
    cv::Mat *owner = new cv::Mat(m);
    pthcv_tensor *t = pthcv_tensor_from_data(dtype, ndim, shape, stride, m.data, extent * elsize, release_mat, owner);
    if (!t) {
        delete owner;
        throw_last_error("cannot wrap a cv::Mat");
    }
    return t;
}

// A cv::MatAllocator whose Mats view a tensor's memory: the UMatData holds
// a tensor reference, released when the last Mat sharing it goes (the way
// OpenCV's Python binding keeps NumPy arrays alive). Mats that allocate
// anew (create() with another size) get the standard allocator.
class TensorAllocator : public cv::MatAllocator
{
  public:
    cv::UMatData *allocate(int dims, const int *sizes, int type, void *data, size_t *step, cv::AccessFlag flags,
                           cv::UMatUsageFlags usage) const override
    {
        return cv::Mat::getStdAllocator()->allocate(dims, sizes, type, data, step, flags, usage);
    }
    bool allocate(cv::UMatData *u, cv::AccessFlag flags, cv::UMatUsageFlags usage) const override
    {
        return cv::Mat::getStdAllocator()->allocate(u, flags, usage);
    }
    void deallocate(cv::UMatData *u) const override
    {
        if (!u || u->refcount != 0 || u->urefcount != 0) return;
        pthcv_tensor_release(static_cast<pthcv_tensor *>(u->userdata));
        delete u;
    }
    // A Mat of the given geometry over t's data, holding a reference to t.
    cv::Mat wrap(pthcv_tensor *t, void *data, int ndims, const int *sizes, int type, const size_t *steps, size_t nbytes)
    {
        cv::Mat m(ndims, sizes, type, data, steps);
        cv::UMatData *u = new cv::UMatData(this);
        u->data = u->origdata = static_cast<uchar *>(data);
        u->size = nbytes;
        u->userdata = pthcv_tensor_retain(t);
        m.u = u;
        m.addref();
        m.allocator = this;
        return m;
    }
};

inline TensorAllocator &tensor_allocator()
{
    static TensorAllocator alloc;
    return alloc;
}

inline void *data_of(pthcv_tensor *t)
{
    void *p = pthcv_tensor_data(t);
    if (!p) throw_last_error("cannot read a tensor's data");
    return p;
}

// Owns one tensor reference for the scope (exception safety).
struct tensor_ref {
    pthcv_tensor *t;
    explicit tensor_ref(pthcv_tensor *x) : t(x) {}
    ~tensor_ref() { pthcv_tensor_release(t); }
    tensor_ref(const tensor_ref &) = delete;
    tensor_ref &operator=(const tensor_ref &) = delete;
    pthcv_tensor *release()
    {
        pthcv_tensor *x = t;
        t = nullptr;
        return x;
    }
};

} // namespace detail

// A new tensor reference (release it with pthcv_tensor_release) viewing m.
//   HWC: [rows, cols, channels] of a 2-d Mat; an n-d Mat gives its sizes
//        (and a last dimension of channels when it has several). No copy.
//   CHW: a 2-d Mat of C > 1 channels becomes [C, rows, cols] (one copy); a
//        single-channel Mat is viewed as [1, rows, cols] (2-d) or with its
//        own sizes (n-d), without a copy.
inline pthcv_tensor *tensor_from_mat(const cv::Mat &m, Layout layout = Layout::HWC)
{
    if (m.empty()) throw error("pthcv: tensor_from_mat: the Mat is empty");
    int dtype = dtype_of_depth(m.depth());
    if (dtype < 0) throw error("pthcv: tensor_from_mat: unsupported Mat depth " + std::to_string(m.depth()));
    const int64_t elsize = (int64_t)m.elemSize1(), cn = m.channels();
    int64_t shape[PTHCV_MAX_DIMS], stride[PTHCV_MAX_DIMS];
    int nd = 0;

    if (layout == Layout::CHW && m.dims == 2) {
        if (cn == 1) {
            shape[0] = 1, stride[0] = (int64_t)m.rows * (int64_t)(m.step[0] / elsize);
            shape[1] = m.rows, stride[1] = (int64_t)(m.step[0] / elsize);
            shape[2] = m.cols, stride[2] = 1;
            return detail::wrap_mat(m, dtype, 3, shape, stride);
        }
        int64_t chw[3] = {cn, m.rows, m.cols};
        detail::tensor_ref t(pthcv_tensor_new(dtype, 3, chw));
        if (!t.t) throw_last_error("cannot allocate a tensor");
        uchar *p = static_cast<uchar *>(detail::data_of(t.t));
        std::vector<cv::Mat> planes;
        for (int64_t c = 0; c < cn; c++)
            planes.emplace_back(m.rows, m.cols, CV_MAKETYPE(m.depth(), 1), p + c * m.rows * m.cols * elsize);
        cv::split(m, planes);
        return t.release();
    }
    if (m.dims + 1 > PTHCV_MAX_DIMS) throw error("pthcv: tensor_from_mat: too many dimensions");
    for (int i = 0; i < m.dims; i++) {
        if (m.step[i] % elsize) throw error("pthcv: tensor_from_mat: a step is not a multiple of the element size");
        shape[nd] = m.size[i];
        stride[nd++] = (int64_t)(m.step[i] / elsize);
    }
    if (cn > 1 || (m.dims == 2 && layout == Layout::HWC)) {
        shape[nd] = cn;
        stride[nd++] = 1;
    }
    return detail::wrap_mat(m, dtype, nd, shape, stride);
}

inline cv::Mat copy_to_mat(pthcv_tensor *t, Layout layout);

// A Mat viewing t's memory (t stays alive while the Mat or a copy of its
// header does); copies once when the layout does not allow a view.
//   HWC: t is [H, W] or [H, W, C] -> a 2-d Mat of C channels.
//   CHW: t of any rank -> an n-d single-channel Mat of t's sizes (a 1-d
//        tensor gives a column of n rows, as OpenCV has no 1-d Mat).
inline cv::Mat mat_from_tensor(pthcv_tensor *t, Layout layout = Layout::HWC)
{
    if (!t) throw error("pthcv: mat_from_tensor: no tensor");
    int depth = depth_of_dtype(t->dtype);
    if (depth < 0) {
        const char *name = pthcv_dtype_name(t->dtype);
        throw error(std::string("pthcv: mat_from_tensor: OpenCV has no ") + (name ? name : "such") + " type");
    }
    const size_t elsize = (size_t)pthcv_dtype_size(t->dtype);
    if (layout == Layout::HWC) {
        if (t->ndim != 2 && t->ndim != 3)
            throw error("pthcv: mat_from_tensor: an HWC image is [H, W] or [H, W, C], got " + std::to_string(t->ndim) +
                        " dimensions");
        int64_t h = t->shape[0], w = t->shape[1], c = t->ndim == 3 ? t->shape[2] : 1;
        if (c < 1 || c > CV_CN_MAX) throw error("pthcv: mat_from_tensor: " + std::to_string(c) + " channels");
        if (h < 1 || w < 1 || h > INT32_MAX || w > INT32_MAX)
            throw error("pthcv: mat_from_tensor: an image of " + std::to_string(h) + "x" + std::to_string(w));
        int64_t sc = t->ndim == 3 ? t->stride[2] : 1;
        int64_t row = h == 1 ? w * c : t->stride[0];
        // pixels packed within each row, rows apart by at least a row
        bool packed = (c == 1 || sc == 1) && (w == 1 || t->stride[1] == c) && row >= w * c;
        if (!packed) return copy_to_mat(t, layout);
        int sizes[2] = {(int)h, (int)w};
        size_t steps[2] = {(size_t)row * elsize, (size_t)c * elsize};
        void *p = detail::data_of(t);
        return detail::tensor_allocator().wrap(t, p, 2, sizes, CV_MAKETYPE(depth, (int)c), steps,
                                               ((size_t)(h - 1) * (size_t)row + (size_t)(w * c)) * elsize);
    }
    if (t->numel == 0) throw error("pthcv: mat_from_tensor: an empty tensor");
    // OpenCV has no 0-d or 1-d Mat: a scalar is 1x1, a vector a column
    int nd = t->ndim < 2 ? 2 : t->ndim;
    int64_t shape[PTHCV_MAX_DIMS] = {1, 1}, stride[PTHCV_MAX_DIMS] = {1, 1};
    for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i], stride[i] = t->stride[i];
    int sizes[PTHCV_MAX_DIMS];
    size_t steps[PTHCV_MAX_DIMS];
    // the last step must be the element size and each step must cover the
    // dimension below it; size-1 dimensions (any stride in torch) get the
    // dense step
    size_t inner = elsize;
    for (int i = nd - 1; i >= 0; i--) {
        if (shape[i] > INT32_MAX) throw error("pthcv: mat_from_tensor: a dimension of " + std::to_string(shape[i]));
        sizes[i] = (int)shape[i];
        size_t step = shape[i] == 1 ? inner : (size_t)stride[i] * elsize;
        if (i == nd - 1 ? step != elsize : step < inner) return copy_to_mat(t, layout);
        steps[i] = step;
        inner = step * (size_t)sizes[i];
    }
    int64_t extent = 1;
    for (int i = 0; i < t->ndim; i++) extent += (t->shape[i] - 1) * t->stride[i];
    void *p = detail::data_of(t);
    return detail::tensor_allocator().wrap(t, p, nd, sizes, CV_MAKETYPE(depth, 1), steps, (size_t)extent * elsize);
}

// One contiguous copy of t, viewed as mat_from_tensor does.
inline cv::Mat copy_to_mat(pthcv_tensor *t, Layout layout)
{
    detail::tensor_ref copy(pthcv_tensor_contiguous(t));
    if (!copy.t) throw_last_error("cannot copy a tensor");
    if (copy.t == t) // already contiguous: nothing more a copy could fix
        throw error("pthcv: mat_from_tensor: no Mat can view this tensor");
    return mat_from_tensor(copy.t, layout);
}

} // namespace pthcv

#endif // PTHCV_OPENCV_HPP
