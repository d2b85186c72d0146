// examples/resnet_filestorage.cpp: a torchvision ResNet run by OpenCV alone,
// from the weights `pthcv convert` wrote as an OpenCV FileStorage file: the
// seed's second route (the weights extracted for your own OpenCV code).
//
//   pthcv convert resnet18.pth -o resnet18.yml.gz
//   c++ -std=c++17 -O2 examples/resnet_filestorage.cpp $(pkg-config --cflags --libs opencv4) -o resnet_filestorage
//   ./resnet_filestorage resnet18.yml.gz input.yml.gz logits.yml     # input: key "input", [N, 3, H, W]
//   ./resnet_filestorage resnet18.yml.gz cat.jpg                     # an image: resized, ImageNet-normalised
//
// The network is a cv::dnn::Net built layer by layer from cv::dnn::LayerParams
// whose blobs are the cv::Mat of each tensor, found by its torch name
// (the pthcv_names sequence maps names to FileStorage keys). The depth
// and block kind come from the names themselves: layer<s>.<i>.conv3 means
// Bottleneck blocks (resnet50/101/152, resnext, wide_resnet), else
// BasicBlock (resnet18/34); the groups of conv2 from its weight's shape.
// BatchNorm layers take torch's running statistics, weight and bias as they
// are (eps 1e-5); the stride of a stage's first block sits on conv1
// (BasicBlock) or conv2 (Bottleneck), as in torchvision. Writes the logits
// (key "logits", [N, classes]) and prints each image's top-5 classes.
#include <opencv2/core.hpp>
#include <opencv2/dnn.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

using Weights = std::map<std::string, cv::Mat>;

// Every tensor of a pthcv FileStorage file, by its torch name.
Weights read_weights(const std::string &path)
{
    cv::FileStorage fs(path, cv::FileStorage::READ);
    if (!fs.isOpened())
        throw std::runtime_error("cannot open " + path);
    const cv::FileNode names = fs["pthcv_names"];
    if (!names.isSeq())
        throw std::runtime_error(path + ": no pthcv_names sequence (not written by pthcv convert?)");
    Weights w;
    for (cv::FileNodeIterator it = names.begin(); it != names.end(); ++it) {
        cv::Mat m;
        fs[(std::string)(*it)["key"]] >> m;
        w[(std::string)(*it)["name"]] = m;
    }
    return w;
}

const cv::Mat &need(const Weights &w, const std::string &name)
{
    auto it = w.find(name);
    if (it == w.end())
        throw std::runtime_error("the weights have no " + name + " (a torchvision ResNet's state_dict?)");
    return it->second;
}

bool has(const Weights &w, const std::string &name) { return w.count(name) != 0; }

// Builds the net; each add() connects the new layer to the given inputs.
class Builder {
  public:
    explicit Builder(const Weights &w) : w_(w) {}
    cv::dnn::Net net;

    int add(const std::string &name, const std::string &type, cv::dnn::LayerParams lp, std::vector<int> inputs)
    {
        lp.name = name;
        lp.type = type;
        const int id = net.addLayer(name, type, lp);
        for (size_t i = 0; i < inputs.size(); i++)
            net.connect(inputs[i], 0, id, (int)i);
        return id;
    }

    // torch's Conv2d named `name` (bias-free in ResNets), padding k / 2.
    int conv(const std::string &name, int input, int stride)
    {
        const cv::Mat &weight = need(w_, name + ".weight");  // [out, in/groups, kh, kw]
        const int in_channels = channels_[input];
        cv::dnn::LayerParams lp;
        lp.set("num_output", weight.size[0]);
        lp.set("kernel_h", weight.size[2]);
        lp.set("kernel_w", weight.size[3]);
        lp.set("stride", stride);
        lp.set("pad_h", weight.size[2] / 2);
        lp.set("pad_w", weight.size[3] / 2);
        lp.set("group", in_channels / weight.size[1]);
        lp.set("bias_term", false);
        lp.blobs.push_back(weight);
        const int id = add(name, "Convolution", lp, {input});
        channels_[id] = weight.size[0];
        return id;
    }

    // torch's BatchNorm2d in eval mode: running statistics, then weight and bias.
    int batch_norm(const std::string &name, int input)
    {
        cv::dnn::LayerParams lp;
        lp.set("has_weight", true);
        lp.set("has_bias", true);
        lp.set("eps", 1e-5f);
        for (const char *field : {".running_mean", ".running_var", ".weight", ".bias"})
            lp.blobs.push_back(need(w_, name + field).reshape(1, 1));
        const int id = add(name, "BatchNorm", lp, {input});
        channels_[id] = channels_[input];
        return id;
    }

    int relu(const std::string &name, int input)
    {
        const int id = add(name, "ReLU", cv::dnn::LayerParams(), {input});
        channels_[id] = channels_[input];
        return id;
    }

    int sum(const std::string &name, int a, int b)
    {
        cv::dnn::LayerParams lp;
        lp.set("operation", "sum");
        const int id = add(name, "Eltwise", lp, {a, b});
        channels_[id] = channels_[a];
        return id;
    }

    std::map<int, int> channels_ = {{0, 3}};  // layer id -> its output's channels (0: the input)

  private:
    const Weights &w_;
};

// conv, batch norm [, relu] of `prefix`.conv<i> / bn<i>
int conv_bn(Builder &b, const std::string &prefix, int i, int input, int stride, bool relu)
{
    const std::string n = std::to_string(i);
    int x = b.conv(prefix + ".conv" + n, input, stride);
    x = b.batch_norm(prefix + ".bn" + n, x);
    return relu ? b.relu(prefix + ".relu" + n, x) : x;
}

cv::dnn::Net build_resnet(const Weights &w, int *num_classes)
{
    Builder b(w);
    int x = b.conv("conv1", 0, 2);
    x = b.relu("relu", b.batch_norm("bn1", x));
    cv::dnn::LayerParams pool;
    pool.set("pool", "max");
    pool.set("kernel_size", 3);
    pool.set("stride", 2);
    pool.set("pad", 1);
    pool.set("ceil_mode", false);  // torch's floor
    x = b.add("maxpool", "Pooling", pool, {x});
    b.channels_[x] = 64;
    const bool bottleneck = has(w, "layer1.0.conv3.weight");
    for (int stage = 1; stage <= 4; stage++) {
        for (int i = 0; has(w, "layer" + std::to_string(stage) + "." + std::to_string(i) + ".conv1.weight"); i++) {
            const std::string p = "layer" + std::to_string(stage) + "." + std::to_string(i);
            const int stride = (stage > 1 && i == 0) ? 2 : 1;
            int y;
            if (bottleneck) {
                y = conv_bn(b, p, 1, x, 1, true);
                y = conv_bn(b, p, 2, y, stride, true);
                y = conv_bn(b, p, 3, y, 1, false);
            } else {
                y = conv_bn(b, p, 1, x, stride, true);
                y = conv_bn(b, p, 2, y, 1, false);
            }
            int skip = x;
            if (has(w, p + ".downsample.0.weight"))
                skip = b.batch_norm(p + ".downsample.1", b.conv(p + ".downsample.0", x, stride));
            x = b.relu(p + ".relu", b.sum(p + ".add", y, skip));
        }
    }
    cv::dnn::LayerParams gap;
    gap.set("pool", "ave");
    gap.set("global_pooling", true);
    x = b.add("avgpool", "Pooling", gap, {x});
    const cv::Mat &fc = need(w, "fc.weight");  // [classes, features]
    cv::dnn::LayerParams lp;
    lp.set("num_output", fc.rows);
    lp.set("bias_term", true);
    lp.set("axis", 1);
    lp.blobs.push_back(fc);
    lp.blobs.push_back(need(w, "fc.bias").reshape(1, 1));
    b.add("fc", "InnerProduct", lp, {x});
    *num_classes = fc.rows;
    b.net.setInputsNames({"input"});
    return b.net;
}

// An image as a [1, 3, 224, 224] blob: resized to 256 on its short side,
// center-cropped, RGB, ImageNet's mean and std (torchvision's preset).
cv::Mat image_blob(const std::string &path)
{
    cv::Mat img = cv::imread(path, cv::IMREAD_COLOR);
    if (img.empty())
        throw std::runtime_error("cannot read image " + path);
    const double s = 256.0 / std::min(img.rows, img.cols);
    cv::resize(img, img, cv::Size(), s, s, cv::INTER_LINEAR);
    img = img(cv::Rect((img.cols - 224) / 2, (img.rows - 224) / 2, 224, 224)).clone();
    cv::Mat blob = cv::dnn::blobFromImage(img, 1.0 / 255, cv::Size(), cv::Scalar(), true, false, CV_32F);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, stdev[3] = {0.229f, 0.224f, 0.225f};
    for (int c = 0; c < 3; c++) {
        cv::Mat plane(224, 224, CV_32F, blob.ptr<float>(0, c));
        plane = (plane - mean[c]) / stdev[c];
    }
    return blob;
}

bool ends_with(const std::string &s, const std::string &end)
{
    return s.size() >= end.size() && s.compare(s.size() - end.size(), end.size(), end) == 0;
}

}  // namespace

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 4) {
        std::fprintf(stderr, "usage: %s WEIGHTS.yml[.gz] INPUT.yml[.gz]|IMAGE [LOGITS.yml]\n", argv[0]);
        return 2;
    }
    try {
        const Weights w = read_weights(argv[1]);
        int num_classes = 0;
        cv::dnn::Net net = build_resnet(w, &num_classes);
        const std::string in = argv[2];
        cv::Mat x;
        if (ends_with(in, ".yml") || ends_with(in, ".yml.gz") || ends_with(in, ".xml") || ends_with(in, ".json")) {
            cv::FileStorage fs(in, cv::FileStorage::READ);
            fs["input"] >> x;
            if (x.empty() || x.dims != 4)
                throw std::runtime_error(in + ": no 4-d \"input\" Mat");
        } else {
            x = image_blob(in);
        }
        net.setInput(x);
        cv::Mat logits = net.forward().reshape(1, x.size[0]);  // [N, classes]
        if (argc == 4) {
            cv::FileStorage out(argv[3], cv::FileStorage::WRITE);
            out << "logits" << logits;
        }
        for (int n = 0; n < logits.rows; n++) {
            cv::Mat order;
            cv::sortIdx(logits.row(n), order, cv::SORT_EVERY_ROW | cv::SORT_DESCENDING);
            std::printf("image %d:", n);
            for (int k = 0; k < std::min(5, num_classes); k++) {
                const int c = order.at<int>(0, k);
                std::printf(" %d (%.4f)", c, logits.at<float>(n, c));
            }
            std::printf("\n");
        }
    } catch (const std::exception &e) {
        std::fprintf(stderr, "resnet_filestorage: %s\n", e.what());
        return 1;
    }
    return 0;
}
