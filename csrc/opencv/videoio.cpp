// videoio.cpp -- video files and cameras through OpenCV's videoio
// (cv::VideoCapture, cv::VideoWriter), built as a library of its own
// (libpthcv_videoio.so) that pthcv loads only when video is used: videoio
// drags in FFmpeg, GStreamer and their dependencies, which programs that
// never touch video should not load. pthcv.h, "Video", has the contracts.
#include "bridge.hpp"

#include <cerrno>
#include <opencv2/videoio.hpp>

#include <cstdio>
#include <memory>
#include <string>

struct pthcv_video {
    cv::VideoCapture cap;
    std::string name; // for messages: the path or "camera N"
    int64_t frames_read = 0;
};

struct pthcv_video_writer {
    cv::VideoWriter out;
    std::string path;
    int width = 0, height = 0;
    int status = PTHCV_OK; // the first failure, reported again at close
};

extern "C" {

pthcv_video *pthcv_video_open(const char *path, int32_t camera)
{
    return guarded<pthcv_video *>("pthcv_video_open", nullptr, [&]() -> pthcv_video * {
        auto v = std::make_unique<pthcv_video>();
        if (path) {
            v->name = path;
            if (!std::strstr(path, "://")) { // a file: say so when it is missing, before OpenCV tries
                FILE *f = std::fopen(path, "rb");
                if (!f)
                    return static_cast<pthcv_video *>(
                        PTHCV_FAIL_NULL(PTHCV_ERR_IO, "%s: cannot open the video file", path));
                std::fclose(f);
            }
            v->cap.open(path);
        } else {
            if (camera < 0) throw pthcv::error("no path and no camera index");
            v->name = "camera " + std::to_string(camera);
#ifdef __linux__
            // V4L2 names camera N /dev/videoN: say which is missing, before
            // OpenCV tries every backend and logs its own warnings
            std::string dev = "/dev/video" + std::to_string(camera);
            FILE *f = std::fopen(dev.c_str(), "rb");
            if (!f && errno == ENOENT)
                return static_cast<pthcv_video *>(PTHCV_FAIL_NULL(
                    PTHCV_ERR_IO, "%s: there is no %s (no such camera here)", v->name.c_str(), dev.c_str()));
            if (!f)
                return static_cast<pthcv_video *>(PTHCV_FAIL_NULL(
                    PTHCV_ERR_IO, "%s: cannot open %s: %s", v->name.c_str(), dev.c_str(), std::strerror(errno)));
            std::fclose(f);
#endif
            v->cap.open(camera);
            if (!v->cap.isOpened())
                return static_cast<pthcv_video *>(PTHCV_FAIL_NULL(
                    PTHCV_ERR_IO, "%s: OpenCV cannot capture from it (busy, or not a capture device)",
                    v->name.c_str()));
        }
        if (!v->cap.isOpened())
            return static_cast<pthcv_video *>(PTHCV_FAIL_NULL(
                PTHCV_ERR_FORMAT, "%s: OpenCV cannot open it as a video (no decoder for it, or not a video)",
                v->name.c_str()));
        return v.release();
    });
}

int pthcv_video_info(pthcv_video *v, double *info)
{
    return guarded<int>("pthcv_video_info", PTHCV_ERR_ARG, [&]() -> int {
        if (!v || !info) throw pthcv::error("no video or no place for the information");
        info[0] = v->cap.get(cv::CAP_PROP_FPS);
        info[1] = v->cap.get(cv::CAP_PROP_FRAME_WIDTH);
        info[2] = v->cap.get(cv::CAP_PROP_FRAME_HEIGHT);
        double n = v->cap.get(cv::CAP_PROP_FRAME_COUNT);
        info[3] = n > 0 ? n : -1;
        return PTHCV_OK;
    });
}

pthcv_tensor *pthcv_video_read(pthcv_video *v)
{
    return guarded<pthcv_tensor *>("pthcv_video_read", nullptr, [&]() -> pthcv_tensor * {
        if (!v) throw pthcv::error("no video");
        cv::Mat frame;
        if (!v->cap.read(frame) || frame.empty()) return nullptr; // the end: status stays PTHCV_OK (guarded cleared it)
        v->frames_read++;
        if (frame.depth() != CV_8U || (frame.channels() != 3 && frame.channels() != 1))
            return static_cast<pthcv_tensor *>(
                PTHCV_FAIL_NULL(PTHCV_ERR_UNSUPPORTED, "%s: frame %lld has %d channels of depth %d, not 8-bit BGR",
                                v->name.c_str(), (long long)v->frames_read, frame.channels(), frame.depth()));
        return image_tensor(frame);
    });
}

void pthcv_video_close(pthcv_video *v) { delete v; }

pthcv_video_writer *pthcv_video_writer_open(const char *path, const char *fourcc, double fps, int32_t width,
                                            int32_t height)
{
    return guarded<pthcv_video_writer *>("pthcv_video_writer_open", nullptr, [&]() -> pthcv_video_writer * {
        if (!path) throw pthcv::error("no path");
        if (width < 1 || height < 1 || !(fps > 0))
            throw pthcv::error(std::string(path) + ": frames of " + std::to_string(width) + "x" +
                               std::to_string(height) + " at " + std::to_string(fps) + " fps");
        std::string code = fourcc ? fourcc : "";
        if (code.empty()) { // from the extension
            std::string p = path;
            std::string ext = p.size() > 4 ? p.substr(p.size() - 4) : "";
            code = ext == ".avi" ? "MJPG" : "mp4v";
        }
        if (code.size() != 4)
            throw pthcv::error(std::string(path) + ": a fourcc has 4 characters, got \"" + code + "\"");
        auto w = std::make_unique<pthcv_video_writer>();
        w->path = path;
        w->width = width;
        w->height = height;
        int cc = cv::VideoWriter::fourcc(code[0], code[1], code[2], code[3]);
        if (!w->out.open(path, cc, fps, cv::Size(width, height), true))
            return static_cast<pthcv_video_writer *>(
                PTHCV_FAIL_NULL(PTHCV_ERR_IO, "%s: OpenCV cannot write a %s video there", path, code.c_str()));
        return w.release();
    });
}

int pthcv_video_write(pthcv_video_writer *w, pthcv_tensor *frame)
{
    return guarded<int>("pthcv_video_write", PTHCV_ERR_ARG, [&]() -> int {
        if (!w) throw pthcv::error("no video writer");
        cv::Mat m = image_mat(frame, w->path.c_str());
        if (m.cols != w->width || m.rows != w->height || m.type() != CV_8UC3) {
            w->status = pthcv_fail(PTHCV_ERR_ARG, "%s: frames must be %dx%d uint8 BGR, got %dx%d of %d channels",
                                   w->path.c_str(), w->width, w->height, m.cols, m.rows, m.channels());
            return w->status;
        }
        w->out.write(m);
        return PTHCV_OK;
    });
}

int pthcv_video_writer_close(pthcv_video_writer *w)
{
    if (!w) return PTHCV_OK;
    int status = w->status;
    w->out.release();
    delete w;
    return status;
}

} // extern "C"
