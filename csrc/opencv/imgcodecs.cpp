// imgcodecs.cpp -- reading and writing image files through OpenCV's
// imgcodecs, built as a library of its own (libpthcv_imgcodecs.so) that
// pthcv.image loads on first use. Debian's libopencv_imgcodecs pulls in
// about 120 more shared libraries (GDAL, codecs...), whose loading and
// relocation weighed on every start of pthcv (docs/performance.md); the
// reader, the kernels and the rest of the bridge need only OpenCV's core
// and imgproc.
#include "bridge.hpp"

#include <opencv2/imgcodecs.hpp>

#include <cstdio>
#include <vector>

// The C flags carry OpenCV's values, so they are passed through unchanged.
static_assert((int)PTHCV_IMREAD_UNCHANGED == (int)cv::IMREAD_UNCHANGED &&
                  (int)PTHCV_IMREAD_GRAYSCALE == (int)cv::IMREAD_GRAYSCALE &&
                  (int)PTHCV_IMREAD_COLOR == (int)cv::IMREAD_COLOR,
              "PTHCV_IMREAD_* must be OpenCV's values");

extern "C" {

pthcv_tensor *pthcv_image_read(const char *path, int32_t flags)
{
    return guarded<pthcv_tensor *>("pthcv_image_read", nullptr, [&]() -> pthcv_tensor * {
        if (!path) throw pthcv::error("no path");
        FILE *f = fopen(path, "rb"); // first, so that OpenCV does not log its own warning
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
        if (!data || nbytes <= 0 || nbytes > INT32_MAX) throw pthcv::error("no data or a bad size");
        cv::Mat buf(1, (int)nbytes, CV_8U, const_cast<void *>(data));
        cv::Mat m = cv::imdecode(buf, flags);
        if (m.empty()) {
            pthcv_fail(PTHCV_ERR_FORMAT, "pthcv_image_decode: %lld bytes that OpenCV cannot decode", (long long)nbytes);
            return nullptr;
        }
        return image_tensor(m);
    });
}

int pthcv_image_write(const char *path, pthcv_tensor *image, int32_t nparams, const int32_t *params)
{
    return guarded<int>("pthcv_image_write", PTHCV_ERR_ARG, [&]() -> int {
        if (!path) throw pthcv::error("no path");
        cv::Mat m = image_mat(image, path);
        std::vector<int> p(params, params + (params && nparams > 0 ? nparams : 0));
        if (!cv::imwrite(path, m, p)) return pthcv_fail(PTHCV_ERR_IO, "%s: OpenCV could not write the image", path);
        return PTHCV_OK;
    });
}

} // extern "C"
