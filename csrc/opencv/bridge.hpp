// bridge.hpp -- what the OpenCV bridge's C entry points (bridge.cpp,
// imgcodecs.cpp) share: each runs its C++ inside guarded(), so that no
// exception crosses into C, and meets images as Mats over tensors.
#ifndef PTHCV_BRIDGE_HPP
#define PTHCV_BRIDGE_HPP

#include "pthcv_opencv.hpp"

extern "C" {
#include "internal.h"
}

#include <cstring>
#include <new>
#include <opencv2/core.hpp>

namespace
{

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
        if (!std::strncmp(msg, "pthcv: ", 7)) msg += 7;
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
[[maybe_unused]] cv::Mat image_mat(pthcv_tensor *image, const char *what)
{
    if (!image) throw pthcv::error(std::string(what) + ": no image");
    if (image->ndim != 2 && image->ndim != 3)
        throw pthcv::error(std::string(what) + ": an image is a tensor [H, W, C] or [H, W], got " +
                           std::to_string(image->ndim) + " dimensions");
    return pthcv::mat_from_tensor(image, pthcv::Layout::HWC);
}

[[maybe_unused]] pthcv_tensor *image_tensor(const cv::Mat &m) { return pthcv::tensor_from_mat(m, pthcv::Layout::HWC); }

} // namespace

#endif
