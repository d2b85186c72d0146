// bridge.cpp -- images through OpenCV (core, imgproc) behind the extern "C"
// functions pthcv.h declares, so that the LuaJIT FFI and C programs can call
// them. Reading and writing image files (imgcodecs) is in imgcodecs.cpp, a
// library of its own: see there why.
//
// Every function converts its tensors to cv::Mat headers over the same
// memory (include/pthcv_opencv.hpp), calls OpenCV, and hands back tensors
// that view the Mat OpenCV allocated. No exception crosses into C: each
// entry point catches them and sets pthcv's last error.
#include "bridge.hpp"
#include "pthcv_opencv.hpp"

extern "C" {
#include "internal.h"
}

#include <opencv2/imgproc.hpp>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

// The C enums carry OpenCV's values, so they are passed through unchanged.
constexpr bool same(int a, int b) { return a == b; }
static_assert(same(PTHCV_INTER_NEAREST, cv::INTER_NEAREST) && same(PTHCV_INTER_LINEAR, cv::INTER_LINEAR) &&
                  same(PTHCV_INTER_CUBIC, cv::INTER_CUBIC) && same(PTHCV_INTER_AREA, cv::INTER_AREA) &&
                  same(PTHCV_INTER_LANCZOS4, cv::INTER_LANCZOS4) &&
                  same(PTHCV_INTER_LINEAR_EXACT, cv::INTER_LINEAR_EXACT) &&
                  same(PTHCV_INTER_NEAREST_EXACT, cv::INTER_NEAREST_EXACT),
              "PTHCV_INTER_* must be OpenCV's values");


extern "C" {

pthcv_tensor *pthcv_image_resize(pthcv_tensor *image, int32_t width, int32_t height, double fx, double fy,
                                 int32_t interpolation)
{
    return guarded<pthcv_tensor *>("pthcv_image_resize", nullptr, [&]() -> pthcv_tensor * {
        if (width < 0 || height < 0 || (width == 0) != (height == 0))
            throw pthcv::error("give width and height, or neither and fx, fy");
        if (width == 0 && !(fx > 0 && fy > 0)) throw pthcv::error("fx and fy must be positive when no size is given");
        cv::Mat out;
        cv::resize(image_mat(image, "pthcv_image_resize"), out, cv::Size(width, height), fx, fy, interpolation);
        return image_tensor(out);
    });
}

pthcv_tensor *pthcv_image_cvt_color(pthcv_tensor *image, int32_t code)
{
    return guarded<pthcv_tensor *>("pthcv_image_cvt_color", nullptr, [&]() -> pthcv_tensor * {
        cv::Mat out;
        cv::cvtColor(image_mat(image, "pthcv_image_cvt_color"), out, code);
        return image_tensor(out);
    });
}

pthcv_tensor *pthcv_image_convert(pthcv_tensor *image, int32_t dtype, double scale, double shift)
{
    return guarded<pthcv_tensor *>("pthcv_image_convert", nullptr, [&]() -> pthcv_tensor * {
        int depth = pthcv::depth_of_dtype(dtype);
        if (depth < 0) throw pthcv::error("OpenCV has no element type for dtype " + std::to_string(dtype));
        cv::Mat out;
        image_mat(image, "pthcv_image_convert").convertTo(out, depth, scale, shift);
        return image_tensor(out);
    });
}

void pthcv_blob_params_init(pthcv_blob_params *p)
{
    if (!p) return;
    std::memset(p, 0, sizeof *p);
    p->interpolation = PTHCV_INTER_LINEAR;
    p->scale = 1.0;
    for (double &s : p->std) s = 1.0;
}

} // extern "C"

namespace
{

// One image brought to the blob's geometry (before the arithmetic).
//  - resize > 0: the shorter side scaled to `resize`, the longer one to
//    int(resize * long / short) (torchvision's Resize); then the size is a
//    centre crop at round((H - h) / 2), round((W - w) / 2), halves to even
//    (torchvision's CenterCrop), or without crop a plain resize;
//  - else crop: scaled by max(w / W, h / H) (as float) and centre-cropped
//    at (int)(0.5 * (W' - w)), ... -- what cv::dnn::blobFromImage does;
//  - else resized to the size, when it differs.
cv::Mat fit(const cv::Mat &img, const pthcv_blob_params &p)
{
    cv::Mat m = img;
    const int interp = p.interpolation;
    cv::Size size(p.width, p.height);
    if (p.resize > 0) {
        int w = m.cols, h = m.rows;
        int64_t s = std::min(w, h), l = std::max(w, h);
        int new_long = (int)((double)((int64_t)p.resize * l) / (double)s);
        cv::Size to = w <= h ? cv::Size(p.resize, new_long) : cv::Size(new_long, p.resize);
        if (to != m.size()) {
            cv::Mat r;
            cv::resize(m, r, to, 0, 0, interp);
            m = r;
        }
        if (size.area() == 0 || size == m.size()) return m;
        if (p.crop) {
            if (size.width > m.cols || size.height > m.rows)
                throw pthcv::error("the crop " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                                   " is larger than the resized image " + std::to_string(m.cols) + "x" +
                                   std::to_string(m.rows));
            int top = (int)std::nearbyint((m.rows - size.height) / 2.0); // round half to even
            int left = (int)std::nearbyint((m.cols - size.width) / 2.0);
            return m(cv::Rect(left, top, size.width, size.height));
        }
    }
    if (size.area() == 0 || size == m.size()) return m;
    if (p.crop) {
        float f = std::max(size.width / (float)m.cols, size.height / (float)m.rows);
        cv::Mat r;
        cv::resize(m, r, cv::Size(), f, f, interp);
        cv::Rect roi(cv::Point((int)(0.5 * (r.cols - size.width)), (int)(0.5 * (r.rows - size.height))), size);
        return r(roi);
    }
    cv::Mat r;
    cv::resize(m, r, size, 0, 0, interp);
    return r;
}

} // namespace

extern "C" pthcv_tensor *pthcv_image_blob(int32_t n, pthcv_tensor *const *images, const pthcv_blob_params *params)
{
    return guarded<pthcv_tensor *>("pthcv_image_blob", nullptr, [&]() -> pthcv_tensor * {
        if (n < 1 || !images) throw pthcv::error("no images");
        pthcv_blob_params p;
        if (params) p = *params;
        else pthcv_blob_params_init(&p);
        if (p.width < 0 || p.height < 0 || (p.width == 0) != (p.height == 0))
            throw pthcv::error("the size must be two positive numbers (or none)");
        for (int c = 0; c < 4; c++)
            if (p.std[c] == 0) throw pthcv::error("std must not be 0");

        std::vector<cv::Mat> fitted;
        for (int32_t i = 0; i < n; i++) {
            cv::Mat m = fit(image_mat(images[i], "pthcv_image_blob"), p);
            if (m.channels() > 4)
                throw pthcv::error("images have 1 to 4 channels, got " + std::to_string(m.channels()));
            if (i > 0 && (m.size() != fitted[0].size() || m.channels() != fitted[0].channels()))
                throw pthcv::error("image " + std::to_string(i + 1) + " gives " + std::to_string(m.cols) + "x" +
                                   std::to_string(m.rows) + "x" + std::to_string(m.channels()) + ", image 1 " +
                                   std::to_string(fitted[0].cols) + "x" + std::to_string(fitted[0].rows) + "x" +
                                   std::to_string(fitted[0].channels()) + ": give a size");
            fitted.push_back(m);
        }
        const int C = fitted[0].channels(), H = fitted[0].rows, W = fitted[0].cols;
        int64_t shape[4] = {n, C, H, W};
        pthcv::detail::tensor_ref blob(pthcv_tensor_new(PTHCV_FLOAT32, 4, shape));
        if (!blob.t) pthcv::throw_last_error("cannot allocate the blob");
        float *out = static_cast<float *>(pthcv::detail::data_of(blob.t));

        // output channel c reads input channel src[c] and uses mean[c], std[c]
        int src[4] = {0, 1, 2, 3};
        if (p.swap_rb && C >= 3) std::swap(src[0], src[2]);
        float scale = (float)p.scale, mean[4], stdev[4];
        for (int c = 0; c < 4; c++) mean[c] = (float)p.mean[c], stdev[c] = (float)p.std[c];
        const bool unit_std = p.std[0] == 1 && p.std[1] == 1 && p.std[2] == 1 && p.std[3] == 1;

        for (int32_t i = 0; i < n; i++) {
            cv::Mat f;
            fitted[i].convertTo(f, CV_32F); // as blobFromImage: resized in the source type, then float
            for (int c = 0; c < C; c++) {
                float *plane = out + ((int64_t)i * C + c) * H * W;
                const int s = src[c];
                for (int y = 0; y < H; y++) {
                    const float *row = f.ptr<float>(y);
                    float *o = plane + (int64_t)y * W;
                    if (unit_std)
                        for (int x = 0; x < W; x++) o[x] = row[x * C + s] * scale - mean[c];
                    else
                        for (int x = 0; x < W; x++) o[x] = (row[x * C + s] * scale - mean[c]) / stdev[c];
                }
            }
        }
        return blob.release();
    });
}

// ==== (reserved) FileStorage export: issue 6 adds its writers below ========

// ============================================================================
// FileStorage weights (issue 6): tensors written by cv::FileStorage, each as
// a cv::Mat, plus a top-level sequence `pthcv_names` of maps
// {key, name, dtype, shape} giving every key's tensor name, torch dtype and
// shape. See pthcv_filestorage_write in pthcv.h and docs/cli.md.
// ============================================================================
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <set>
#include <string>

namespace
{

// FileStorage keys: a letter or '_' first, then letters, digits, '_', '-'.
bool fs_key_char(char c) { return std::isalnum((unsigned char)c) || c == '_' || c == '-'; }

std::string fs_key(const std::string &name)
{
    std::string k;
    for (char c : name) k += fs_key_char(c) ? c : '_';
    if (k.empty() || !(std::isalpha((unsigned char)k[0]) || k[0] == '_')) k = "_" + k;
    return k;
}

// The extension that names the format (".yml.gz", ".json", ...), or "".
std::string fs_suffix(const std::string &path)
{
    static const char *const known[] = {".yml.gz", ".yaml.gz", ".xml.gz", ".json.gz", ".yml", ".yaml", ".xml", ".json"};
    std::string lower(path);
    for (char &c : lower) c = (char)std::tolower((unsigned char)c);
    for (const char *s : known) {
        size_t n = std::strlen(s);
        if (lower.size() > n && lower.compare(lower.size() - n, n, s) == 0) return path.substr(path.size() - n);
    }
    return "";
}

// An owned tensor reference.
struct owned {
    pthcv_tensor *t = nullptr;
    owned() = default;
    explicit owned(pthcv_tensor *x) : t(x) {}
    owned(owned &&o) noexcept : t(o.t) { o.t = nullptr; }
    owned &operator=(owned &&o) noexcept
    {
        std::swap(t, o.t);
        return *this;
    }
    owned(const owned &) = delete;
    ~owned() { pthcv_tensor_release(t); }
};

owned checked(pthcv_tensor *t, const std::string &what)
{
    if (!t) throw pthcv::error(what + ": " + pthcv_last_error());
    return owned(t);
}

// The contiguous tensor to write for t and its Mat depth: the dtype kept
// where OpenCV has it; bool as CV_8U; bfloat16 as float32 (exact);
// int64/uint32/uint64 as CV_32S when every value fits, else refused.
owned fs_prepare(pthcv_tensor *t, const std::string &name, int *depth)
{
    const int dt = t->dtype;
    const std::string what = "tensor '" + name + "'";
    if (pthcv_dtype_is_quantized(dt))
        throw pthcv::error(what + " is quantized (" + pthcv_dtype_name(dt) +
                           "): FileStorage has no quantized types (dequantize it first: --dequantize)");
    switch (dt) {
    case PTHCV_UINT8:
    case PTHCV_BOOL: *depth = CV_8U; break;
    case PTHCV_INT8: *depth = CV_8S; break;
    case PTHCV_UINT16: *depth = CV_16U; break;
    case PTHCV_INT16: *depth = CV_16S; break;
    case PTHCV_INT32: *depth = CV_32S; break;
    case PTHCV_FLOAT32: *depth = CV_32F; break;
    case PTHCV_FLOAT64: *depth = CV_64F; break;
    case PTHCV_FLOAT16: *depth = CV_16F; break;
    case PTHCV_BFLOAT16: *depth = CV_32F; return checked(pthcv_tensor_to(t, PTHCV_FLOAT32), what);
    case PTHCV_INT64:
    case PTHCV_UINT32:
    case PTHCV_UINT64: {
        owned c = checked(pthcv_tensor_contiguous(t), what);
        const void *p = pthcv_tensor_data(c.t);
        if (!p && t->numel > 0) throw pthcv::error(what + ": " + pthcv_last_error());
        for (int64_t i = 0; i < t->numel; i++) {
            bool fits;
            if (dt == PTHCV_INT64) {
                int64_t v = static_cast<const int64_t *>(p)[i];
                fits = v >= INT32_MIN && v <= INT32_MAX;
            } else if (dt == PTHCV_UINT32) {
                fits = static_cast<const uint32_t *>(p)[i] <= (uint32_t)INT32_MAX;
            } else {
                fits = static_cast<const uint64_t *>(p)[i] <= (uint64_t)INT32_MAX;
            }
            if (!fits)
                throw pthcv::error(what + " (" + pthcv_dtype_name(dt) + ") holds a value outside int32 at flat index " +
                                   std::to_string(i) + ": FileStorage has no 64-bit integers");
        }
        *depth = CV_32S;
        return checked(pthcv_tensor_to(c.t, PTHCV_INT32), what);
    }
    default: throw pthcv::error(what + " has dtype " + pthcv_dtype_name(dt) + ", which OpenCV has no Mat type for");
    }
    return checked(pthcv_tensor_contiguous(t), what);
}

// A Mat header over the contiguous tensor c: 0-d and 1-d tensors as one
// row (1 x n), others with their own sizes (n-d Mats for n > 2).
cv::Mat fs_mat(pthcv_tensor *c, int depth, const std::string &name)
{
    std::vector<int> sizes;
    for (int i = 0; i < c->ndim; i++) {
        if (c->shape[i] > INT32_MAX)
            throw pthcv::error("tensor '" + name + "': dimension " + std::to_string(i) + " is too large for a cv::Mat");
        sizes.push_back((int)c->shape[i]);
    }
    if (sizes.size() < 2) sizes.insert(sizes.begin(), 2 - sizes.size(), 1);
    static_assert(PTHCV_MAX_DIMS <= 32, "a cv::Mat has at most 32 dimensions");
    void *data = c->numel > 0 ? pthcv_tensor_data(c) : nullptr;
    if (c->numel > 0 && !data) throw pthcv::error("tensor '" + name + "': " + pthcv_last_error());
    if (c->numel == 0) return cv::Mat();
    return cv::Mat((int)sizes.size(), sizes.data(), CV_MAKETYPE(depth, 1), data);
}

} // namespace

extern "C" {

int pthcv_filestorage_key(const char *name, char *key, int64_t size)
{
    return guarded("filestorage_key", (int)PTHCV_ERR_ARG, [&]() -> int {
        std::string k = fs_key(name ? name : "");
        if (!key || size < (int64_t)k.size() + 1)
            return pthcv_fail(PTHCV_ERR_ARG, "filestorage_key: the buffer needs %zu bytes", k.size() + 1);
        std::memcpy(key, k.c_str(), k.size() + 1);
        return (int)PTHCV_OK;
    });
}

int pthcv_filestorage_write(const char *path, int32_t n, const char *const *names, pthcv_tensor *const *tensors)
{
    return pthcv_filestorage_write_progress(path, n, names, tensors, nullptr, nullptr);
}

int pthcv_filestorage_write_progress(const char *path, int32_t n, const char *const *names,
                                     pthcv_tensor *const *tensors, pthcv_progress_fn progress, void *ctx)
{
    return guarded("filestorage_write", (int)PTHCV_ERR_ARG, [&]() -> int {
        const std::string out(path ? path : "");
        const std::string suffix = fs_suffix(out);
        if (suffix.empty())
            return pthcv_fail(PTHCV_ERR_ARG, "%s: FileStorage files end in .yml, .yaml, .xml or .json (optionally .gz)",
                              out.c_str());
        // keys: the names made valid, unique (a suffix _2, _3, ... on collisions;
        // pthcv_names is taken)
        std::vector<std::string> keys;
        std::set<std::string> used{"pthcv_names"};
        for (int32_t i = 0; i < n; i++) {
            std::string base = fs_key(names[i]), k = base;
            for (int s = 2; used.count(k); s++) k = base + "_" + std::to_string(s);
            used.insert(k);
            keys.push_back(k);
        }
        // every tensor converted before anything is written
        std::vector<owned> prepared;
        std::vector<cv::Mat> mats;
        for (int32_t i = 0; i < n; i++) {
            int depth = 0;
            prepared.push_back(fs_prepare(tensors[i], names[i], &depth));
            mats.push_back(fs_mat(prepared.back().t, depth, names[i]));
        }
        // written under a temporary name with the same format suffix, then renamed:
        // the file is whole or absent
        const std::string tmp = out + ".tmp" + suffix;
        try {
            cv::FileStorage fs(tmp, cv::FileStorage::WRITE);
            if (!fs.isOpened()) throw pthcv::error("cannot create " + tmp);
            fs << "pthcv_names"
               << "[";
            for (int32_t i = 0; i < n; i++) {
                fs << "{"
                   << "key" << keys[i] << "name" << std::string(names[i]) << "dtype"
                   << std::string(pthcv_dtype_name(tensors[i]->dtype)) << "shape"
                   << "[:";
                for (int d = 0; d < tensors[i]->ndim; d++) fs << (int)tensors[i]->shape[d];
                fs << "]"
                   << "}";
            }
            fs << "]";
            double total = 0, done = 0;
            for (int32_t i = 0; i < n; i++) total += (double)tensors[i]->numel;
            for (int32_t i = 0; i < n; i++) {
                fs << keys[i] << mats[i];
                done += (double)tensors[i]->numel;
                if (progress) progress(ctx, done, total);
            }
            fs.release();
        } catch (...) {
            std::remove(tmp.c_str());
            throw;
        }
        if (std::rename(tmp.c_str(), out.c_str()) != 0) {
            std::remove(tmp.c_str());
            return pthcv_fail(PTHCV_ERR_IO, "%s: cannot rename %s: %s", out.c_str(), tmp.c_str(), std::strerror(errno));
        }
        return (int)PTHCV_OK;
    });
}

} // extern "C"
