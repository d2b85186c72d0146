// examples/read_filestorage.cpp: reads weights that `pthcv convert` wrote
// in OpenCV's FileStorage format (.yml/.xml/.json, optionally .gz) with
// cv::FileStorage alone, no pthcv.
//
//   c++ -std=c++17 examples/read_filestorage.cpp $(pkg-config --cflags --libs opencv4) -o read_filestorage
//   ./read_filestorage weights.yml.gz
//
// The top-level sequence pthcv_names maps each key to the tensor's torch
// name, dtype and shape; every key holds a cv::Mat. Prints one line per
// tensor: name, key, Mat depth, Mat sizes, torch shape, the sum of its
// values (as double) and a 64-bit FNV-1a hash of its bytes (what
// spec/filestorage_spec.lua compares with pthcv's own tensors).
#include <opencv2/core.hpp>

#include <cstdint>
#include <cstdio>
#include <string>

static const char *depth_name(int depth)
{
    switch (depth) {
    case CV_8U: return "CV_8U";
    case CV_8S: return "CV_8S";
    case CV_16U: return "CV_16U";
    case CV_16S: return "CV_16S";
    case CV_32S: return "CV_32S";
    case CV_32F: return "CV_32F";
    case CV_64F: return "CV_64F";
    case CV_16F: return "CV_16F";
    default: return "?";
    }
}

static uint64_t fnv1a(const cv::Mat &m)
{
    uint64_t h = 14695981039346656037ull;
    const unsigned char *p = m.data;
    const size_t n = m.total() * m.elemSize();
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s WEIGHTS.yml|.xml|.json[.gz]\n", argv[0]);
        return 2;
    }
    try {
        cv::FileStorage fs(argv[1], cv::FileStorage::READ);
        if (!fs.isOpened()) {
            std::fprintf(stderr, "cannot open %s\n", argv[1]);
            return 1;
        }
        cv::FileNode names = fs["pthcv_names"];
        if (!names.isSeq()) {
            std::fprintf(stderr, "%s: no pthcv_names sequence\n", argv[1]);
            return 1;
        }
        for (cv::FileNodeIterator it = names.begin(); it != names.end(); ++it) {
            const cv::FileNode entry = *it;
            const std::string key = (std::string)entry["key"], name = (std::string)entry["name"];
            cv::Mat m;
            fs[key] >> m;
            std::string sizes, shape;
            for (int d = 0; d < m.dims; d++)
                sizes += (d ? "x" : "") + std::to_string(m.size[d]);
            const cv::FileNode sh = entry["shape"];
            for (cv::FileNodeIterator s = sh.begin(); s != sh.end(); ++s)
                shape += (shape.empty() ? "" : "x") + std::to_string((int)*s);
            cv::Mat d64;
            if (!m.empty())
                m.convertTo(d64, CV_64F);
            const double sum = m.empty() ? 0.0 : cv::sum(d64.reshape(1, 1))[0];
            std::printf("%s\t%s\t%s\t%s\t[%s]\t%.17g\t%016llx\n", name.c_str(), key.c_str(), depth_name(m.depth()),
                        sizes.c_str(), shape.c_str(), sum, (unsigned long long)fnv1a(m));
        }
    } catch (const cv::Exception &e) {
        std::fprintf(stderr, "OpenCV: %s\n", e.what());
        return 1;
    }
    return 0;
}
