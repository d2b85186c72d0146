// bridge.cpp -- pthcv's one C++ file: images through OpenCV (core, imgproc,
// imgcodecs), behind the extern "C" functions pthcv.h declares so that the
// LuaJIT FFI and C programs can call them.
//
// Every function converts its tensors to cv::Mat headers over the same
// memory (include/pthcv_opencv.hpp), calls OpenCV, and hands back tensors
// that view the Mat OpenCV allocated. No exception crosses into C: each
// entry point catches them and sets pthcv's last error.
#include "pthcv_opencv.hpp"

extern "C" {
#include "internal.h"
}

#include <opencv2/imgcodecs.hpp>
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
static_assert(same(PTHCV_IMREAD_UNCHANGED, cv::IMREAD_UNCHANGED) &&
                  same(PTHCV_IMREAD_GRAYSCALE, cv::IMREAD_GRAYSCALE) && same(PTHCV_IMREAD_COLOR, cv::IMREAD_COLOR),
              "PTHCV_IMREAD_* must be OpenCV's values");

namespace {

// Runs f, turning exceptions into pthcv's last error; `fallback` is what a
// failure returns (NULL or a status).
template <typename R, typename F> R guarded(const char *what, R fallback, F f)
{
    pthcv_clear_error();
    try {
        return f();
    } catch (const cv::Exception &e) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: OpenCV: %s", what, e.err.c_str());
    } catch (const pthcv::error &e) {
        // the C error is already set when the C API failed: keep its status
        const char *msg = e.what();
        if (!std::strncmp(msg, "pthcv: ", 7))
            msg += 7;
        int status = pthcv_last_status();
        pthcv_fail(status == PTHCV_OK ? PTHCV_ERR_ARG : status, "%s: %s", what, msg);
    } catch (const std::bad_alloc &) {
        pthcv_fail(PTHCV_ERR_NOMEM, "%s: out of memory", what);
    } catch (const std::exception &e) {
        pthcv_fail(PTHCV_ERR_ARG, "%s: %s", what, e.what());
    }
    return fallback;
}

// An image argument as a Mat over its memory (a copy only when its pixels
// are not packed within rows).
cv::Mat image_mat(pthcv_tensor *image, const char *what)
{
    if (!image)
        throw pthcv::error(std::string(what) + ": no image");
    if (image->ndim != 2 && image->ndim != 3)
        throw pthcv::error(std::string(what) + ": an image is a tensor [H, W, C] or [H, W], got " +
                           std::to_string(image->ndim) + " dimensions");
    return pthcv::mat_from_tensor(image, pthcv::Layout::HWC);
}

pthcv_tensor *image_tensor(const cv::Mat &m) { return pthcv::tensor_from_mat(m, pthcv::Layout::HWC); }

} // namespace

extern "C" {

pthcv_tensor *pthcv_image_read(const char *path, int32_t flags)
{
    return guarded<pthcv_tensor *>("pthcv_image_read", nullptr, [&]() -> pthcv_tensor * {
        if (!path)
            throw pthcv::error("no path");
        FILE *f = fopen(path, "rb");   // first, so that OpenCV does not log its own warning
        if (!f) {
            pthcv_fail(PTHCV_ERR_IO, "%s: cannot open the image file", path);
            return nullptr;
        }
        fclose(f);
        cv::Mat m = cv::imread(path, flags);
        if (m.empty()) {
            pthcv_fail(PTHCV_ERR_FORMAT, "%s: not an image OpenCV can decode", path);
            return nullptr;
        }
        return image_tensor(m);
    });
}

pthcv_tensor *pthcv_image_decode(const void *data, int64_t nbytes, int32_t flags)
{
    return guarded<pthcv_tensor *>("pthcv_image_decode", nullptr, [&]() -> pthcv_tensor * {
        if (!data || nbytes <= 0 || nbytes > INT32_MAX)
            throw pthcv::error("no data or a bad size");
        cv::Mat buf(1, (int)nbytes, CV_8U, const_cast<void *>(data));
        cv::Mat m = cv::imdecode(buf, flags);
        if (m.empty()) {
            pthcv_fail(PTHCV_ERR_FORMAT, "pthcv_image_decode: %lld bytes that OpenCV cannot decode",
                       (long long)nbytes);
            return nullptr;
        }
        return image_tensor(m);
    });
}

int pthcv_image_write(const char *path, pthcv_tensor *image, int32_t nparams, const int32_t *params)
{
    return guarded<int>("pthcv_image_write", PTHCV_ERR_ARG, [&]() -> int {
        if (!path)
            throw pthcv::error("no path");
        cv::Mat m = image_mat(image, path);
        std::vector<int> p(params, params + (params && nparams > 0 ? nparams : 0));
        if (!cv::imwrite(path, m, p))
            return pthcv_fail(PTHCV_ERR_IO, "%s: OpenCV could not write the image", path);
        return PTHCV_OK;
    });
}

pthcv_tensor *pthcv_image_resize(pthcv_tensor *image, int32_t width, int32_t height, double fx, double fy,
                                 int32_t interpolation)
{
    return guarded<pthcv_tensor *>("pthcv_image_resize", nullptr, [&]() -> pthcv_tensor * {
        if (width < 0 || height < 0 || (width == 0) != (height == 0))
            throw pthcv::error("give width and height, or neither and fx, fy");
        if (width == 0 && !(fx > 0 && fy > 0))
            throw pthcv::error("fx and fy must be positive when no size is given");
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
        if (depth < 0)
            throw pthcv::error("OpenCV has no element type for dtype " + std::to_string(dtype));
        cv::Mat out;
        image_mat(image, "pthcv_image_convert").convertTo(out, depth, scale, shift);
        return image_tensor(out);
    });
}

void pthcv_blob_params_init(pthcv_blob_params *p)
{
    if (!p)
        return;
    std::memset(p, 0, sizeof *p);
    p->interpolation = PTHCV_INTER_LINEAR;
    p->scale = 1.0;
    for (double &s : p->std)
        s = 1.0;
}

} // extern "C"

namespace {

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
        if (size.area() == 0 || size == m.size())
            return m;
        if (p.crop) {
            if (size.width > m.cols || size.height > m.rows)
                throw pthcv::error("the crop " + std::to_string(size.width) + "x" + std::to_string(size.height) +
                                   " is larger than the resized image " + std::to_string(m.cols) + "x" +
                                   std::to_string(m.rows));
            int top = (int)std::nearbyint((m.rows - size.height) / 2.0);   // round half to even
            int left = (int)std::nearbyint((m.cols - size.width) / 2.0);
            return m(cv::Rect(left, top, size.width, size.height));
        }
    }
    if (size.area() == 0 || size == m.size())
        return m;
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
        if (n < 1 || !images)
            throw pthcv::error("no images");
        pthcv_blob_params p;
        if (params)
            p = *params;
        else
            pthcv_blob_params_init(&p);
        if (p.width < 0 || p.height < 0 || (p.width == 0) != (p.height == 0))
            throw pthcv::error("the size must be two positive numbers (or none)");
        for (int c = 0; c < 4; c++)
            if (p.std[c] == 0)
                throw pthcv::error("std must not be 0");

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
        if (!blob.t)
            pthcv::throw_last_error("cannot allocate the blob");
        float *out = static_cast<float *>(pthcv::detail::data_of(blob.t));

        // output channel c reads input channel src[c] and uses mean[c], std[c]
        int src[4] = {0, 1, 2, 3};
        if (p.swap_rb && C >= 3)
            std::swap(src[0], src[2]);
        float scale = (float)p.scale, mean[4], stdev[4];
        for (int c = 0; c < 4; c++)
            mean[c] = (float)p.mean[c], stdev[c] = (float)p.std[c];
        const bool unit_std = p.std[0] == 1 && p.std[1] == 1 && p.std[2] == 1 && p.std[3] == 1;

        for (int32_t i = 0; i < n; i++) {
            cv::Mat f;
            fitted[i].convertTo(f, CV_32F);   // as blobFromImage: resized in the source type, then float
            for (int c = 0; c < C; c++) {
                float *plane = out + ((int64_t)i * C + c) * H * W;
                const int s = src[c];
                for (int y = 0; y < H; y++) {
                    const float *row = f.ptr<float>(y);
                    float *o = plane + (int64_t)y * W;
                    if (unit_std)
                        for (int x = 0; x < W; x++)
                            o[x] = row[x * C + s] * scale - mean[c];
                    else
                        for (int x = 0; x < W; x++)
                            o[x] = (row[x * C + s] * scale - mean[c]) / stdev[c];
                }
            }
        }
        return blob.release();
    });
}

// ==== (reserved) FileStorage export: issue 6 adds its writers below ========
