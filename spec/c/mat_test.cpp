// spec/c/mat_test.cpp -- include/pthcv_opencv.hpp: cv::Mat <-> tensor without
// copies where the layout allows, one copy otherwise, and either side
// outliving the other. Run by spec/cpp_spec.lua; prints "N passed, N failed".
#include "pthcv_opencv.hpp"

#include <cstdio>

static int passed, failed;
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (cond) passed++;                                                 \
        else {                                                              \
            failed++;                                                       \
            std::printf("not ok - %s:%d: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                   \
    } while (0)

int main()
{
    // HWC: a BGR Mat viewed as uint8 [H, W, 3], no copy
    cv::Mat img(4, 5, CV_8UC3);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 5; x++) img.at<cv::Vec3b>(y, x) = cv::Vec3b((uchar)(y * 10 + x), (uchar)x, (uchar)y);
    pthcv_tensor *t = pthcv::tensor_from_mat(img);
    CHECK(t->dtype == PTHCV_UINT8 && t->ndim == 3 && t->shape[0] == 4 && t->shape[1] == 5 && t->shape[2] == 3);
    CHECK(t->stride[0] == 15 && t->stride[1] == 3 && t->stride[2] == 1);
    CHECK(pthcv_tensor_data(t) == img.data);

    // the tensor keeps the pixels when the Mat goes
    uchar *pixels = img.data;
    img.release();
    CHECK(static_cast<uchar *>(pthcv_tensor_data(t))[3 * 7] == 12); // (y 1, x 2) blue

    // back to a Mat over the same memory; the Mat keeps the tensor
    cv::Mat m = pthcv::mat_from_tensor(t);
    CHECK(m.data == pixels && m.type() == CV_8UC3 && m.rows == 4 && m.cols == 5);
    pthcv_tensor_release(t);
    CHECK(m.at<cv::Vec3b>(3, 4)[0] == 34);
    cv::Mat copy_of_header = m; // shares the reference count
    m.release();
    CHECK(copy_of_header.at<cv::Vec3b>(2, 1)[2] == 2);
    copy_of_header.release();

    // an ROI: strided rows, still no copy, both ways
    cv::Mat big(10, 12, CV_32FC1);
    for (int y = 0; y < 10; y++)
        for (int x = 0; x < 12; x++) big.at<float>(y, x) = (float)(y * 100 + x);
    cv::Mat roi = big(cv::Rect(3, 2, 4, 5));
    pthcv_tensor *r = pthcv::tensor_from_mat(roi);
    CHECK(r->dtype == PTHCV_FLOAT32 && r->shape[0] == 5 && r->shape[1] == 4 && r->shape[2] == 1);
    CHECK(r->stride[0] == 12 && pthcv_tensor_data(r) == roi.data);
    cv::Mat rm = pthcv::mat_from_tensor(r);
    CHECK(rm.data == roi.data && rm.step[0] == 12 * sizeof(float) && rm.at<float>(1, 2) == 305.0f);
    pthcv_tensor_release(r);

    // CHW: a multi-channel Mat split into planes (one copy)
    cv::Mat rgb(2, 3, CV_32FC3, cv::Scalar(1, 2, 3));
    pthcv_tensor *chw = pthcv::tensor_from_mat(rgb, pthcv::Layout::CHW);
    CHECK(chw->ndim == 3 && chw->shape[0] == 3 && chw->shape[1] == 2 && chw->shape[2] == 3);
    const float *p = static_cast<const float *>(pthcv_tensor_data(chw));
    CHECK(p[0] == 1 && p[6] == 2 && p[12] == 3 && p[17] == 3);
    // ... and an NCHW-like tensor as an n-d Mat, no copy
    cv::Mat nd = pthcv::mat_from_tensor(chw, pthcv::Layout::CHW);
    CHECK(nd.dims == 3 && nd.size[0] == 3 && nd.size[1] == 2 && nd.size[2] == 3 && nd.ptr<float>() == p);
    // an n-d Mat back to a tensor of its sizes
    pthcv_tensor *back = pthcv::tensor_from_mat(nd, pthcv::Layout::CHW);
    CHECK(back->ndim == 3 && back->shape[0] == 3 && pthcv_tensor_data(back) == (void *)p);
    pthcv_tensor_release(back);
    pthcv_tensor_release(chw);
    nd.release();

    // a transposed tensor (pixels not packed) is copied once into a Mat
    int64_t shape[3] = {3, 2, 2};
    pthcv_tensor *c = pthcv_tensor_new(PTHCV_INT16, 3, shape);
    int16_t *cd = static_cast<int16_t *>(pthcv_tensor_data(c));
    for (int i = 0; i < 12; i++) cd[i] = (int16_t)i;
    int64_t tshape[3] = {2, 2, 3}, tstride[3] = {2, 1, 4}; // [C, H, W] seen as [H, W, C]
    pthcv_tensor *hwc = pthcv_tensor_view(c, 3, tshape, tstride, 0);
    cv::Mat hm = pthcv::mat_from_tensor(hwc);
    CHECK(hm.type() == CV_16SC3 && hm.ptr<int16_t>() != cd);
    CHECK(hm.at<cv::Vec3s>(1, 0)[2] == 10 && hm.at<cv::Vec3s>(0, 1)[1] == 5);
    pthcv_tensor_release(hwc);
    pthcv_tensor_release(c);

    // float16 Mats, and types OpenCV lacks
    cv::Mat h(2, 2, CV_16FC1, cv::Scalar(1.5));
    pthcv_tensor *ht = pthcv::tensor_from_mat(h);
    CHECK(ht->dtype == PTHCV_FLOAT16 && pthcv_half_to_float(static_cast<uint16_t *>(pthcv_tensor_data(ht))[3]) == 1.5f);
    pthcv_tensor_release(ht);
    int64_t one = 4;
    pthcv_tensor *i64 = pthcv_tensor_new(PTHCV_INT64, 1, &one);
    bool threw = false;
    try {
        pthcv::mat_from_tensor(i64, pthcv::Layout::CHW);
    } catch (const pthcv::error &) {
        threw = true;
    }
    CHECK(threw);
    pthcv_tensor_release(i64);

    std::printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
