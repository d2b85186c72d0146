// draw.cpp -- drawing on images with OpenCV's imgproc (pthcv.h, "Drawing"):
// rectangles, lines, circles, text and masks blended in a colour, for
// pthcv.image.draw_detections. Every function draws in place, so the image
// must be one OpenCV can write without a copy (its pixels packed within
// rows: an image pthcv made, a clone, or a crop of one); any other is
// refused rather than drawn on a copy that nobody would see.
#include "bridge.hpp"

#include <opencv2/imgproc.hpp>

namespace
{

// the image as a Mat over its own memory, or an exception
cv::Mat writable(pthcv_tensor *image, const char *what)
{
    cv::Mat m = image_mat(image, what);
    if (m.data != static_cast<uchar *>(pthcv_tensor_data(image)))
        throw pthcv::error(std::string(what) +
                           ": the image's pixels are not packed within rows, so it cannot be "
                           "drawn on in place: draw on image:clone()");
    return m;
}

cv::Scalar color_of(const double *c)
{
    if (!c) throw pthcv::error("no colour");
    return cv::Scalar(c[0], c[1], c[2], c[3]);
}

int line_type_of(int32_t t) { return t == 4 || t == 8 || t == cv::LINE_AA ? t : cv::LINE_8; }

} // namespace

extern "C" {

int pthcv_draw_rectangle(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2, const double *color,
                         int32_t thickness, int32_t line_type)
{
    return guarded<int>("pthcv_draw_rectangle", PTHCV_ERR_ARG, [&]() -> int {
        cv::Mat m = writable(image, "pthcv_draw_rectangle");
        cv::rectangle(m, cv::Point(x1, y1), cv::Point(x2, y2), color_of(color), thickness, line_type_of(line_type));
        return PTHCV_OK;
    });
}

int pthcv_draw_line(pthcv_tensor *image, int32_t x1, int32_t y1, int32_t x2, int32_t y2, const double *color,
                    int32_t thickness, int32_t line_type)
{
    return guarded<int>("pthcv_draw_line", PTHCV_ERR_ARG, [&]() -> int {
        cv::Mat m = writable(image, "pthcv_draw_line");
        cv::line(m, cv::Point(x1, y1), cv::Point(x2, y2), color_of(color), thickness, line_type_of(line_type));
        return PTHCV_OK;
    });
}

int pthcv_draw_circle(pthcv_tensor *image, int32_t x, int32_t y, int32_t radius, const double *color, int32_t thickness,
                      int32_t line_type)
{
    return guarded<int>("pthcv_draw_circle", PTHCV_ERR_ARG, [&]() -> int {
        cv::Mat m = writable(image, "pthcv_draw_circle");
        cv::circle(m, cv::Point(x, y), radius, color_of(color), thickness, line_type_of(line_type));
        return PTHCV_OK;
    });
}

int pthcv_draw_text(pthcv_tensor *image, const char *text, int32_t x, int32_t y, int32_t font, double scale,
                    const double *color, int32_t thickness, int32_t line_type)
{
    return guarded<int>("pthcv_draw_text", PTHCV_ERR_ARG, [&]() -> int {
        if (!text) throw pthcv::error("no text");
        cv::Mat m = writable(image, "pthcv_draw_text");
        cv::putText(m, text, cv::Point(x, y), font, scale, color_of(color), thickness, line_type_of(line_type));
        return PTHCV_OK;
    });
}

int pthcv_text_size(const char *text, int32_t font, double scale, int32_t thickness, int32_t *size)
{
    return guarded<int>("pthcv_text_size", PTHCV_ERR_ARG, [&]() -> int {
        if (!text || !size) throw pthcv::error("no text or no place for the size");
        int baseline = 0;
        cv::Size s = cv::getTextSize(text, font, scale, thickness, &baseline);
        size[0] = s.width;
        size[1] = s.height;
        size[2] = baseline;
        return PTHCV_OK;
    });
}

int pthcv_blend_mask(pthcv_tensor *image, pthcv_tensor *mask, double threshold, const double *color, double alpha)
{
    return guarded<int>("pthcv_blend_mask", PTHCV_ERR_ARG, [&]() -> int {
        cv::Mat m = writable(image, "pthcv_blend_mask");
        cv::Mat k = image_mat(mask, "pthcv_blend_mask (mask)");
        if (k.rows != m.rows || k.cols != m.cols || k.channels() != 1)
            throw pthcv::error("the mask must be [H, W] like the image");
        if (!(alpha >= 0.0 && alpha <= 1.0)) throw pthcv::error("alpha must be in [0, 1]");
        cv::Mat k32, sel;
        k.convertTo(k32, CV_32F);
        cv::compare(k32, threshold, sel, cv::CMP_GT);
        cv::Mat tint(m.size(), m.type(), color_of(color)), blended;
        cv::addWeighted(m, 1.0 - alpha, tint, alpha, 0.0, blended);
        blended.copyTo(m, sel);
        return PTHCV_OK;
    });
}

} // extern "C"
