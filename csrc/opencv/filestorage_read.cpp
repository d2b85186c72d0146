// filestorage_read.cpp -- pthcv_open for OpenCV FileStorage files (.yml,
// .yaml, .xml, .json, each optionally gzip-compressed), such as
// pthcv_filestorage_write and `pthcv convert -o x.yml.gz` write: the value
// tree is a dict name -> tensor.
//
// OpenCV parses the text (cv::FileStorage, from memory: the format is told
// by the content, never the file name). The file is read whole first,
// within max_pickle bytes (gzip is inflated here, within max_pickle and
// max_zip_ratio: a small .gz cannot expand without bound). Every top-level
// node must be a cv::Mat (opencv-matrix or opencv-nd-matrix), except
// the sequence pthcv_names, whose maps {key, name, dtype, shape} restore
// torch's names, dtypes and shapes (pthcv.h, pthcv_filestorage_write).
// Without pthcv_names a Mat is named by its key, with its own type and
// sizes (a multi-channel Mat gains a last dimension of its channels).
#include "bridge.hpp"

extern "C" {
#include "reader/reader.h"
}

#include <cerrno>
#include <cstdio>
#include <map>
#include <string>
#include <vector>
#include <zlib.h>

namespace
{

struct owned_tensor { // a tensor reference released unless handed on
    pthcv_tensor *t;
    explicit owned_tensor(pthcv_tensor *x) : t(x) {}
    owned_tensor(const owned_tensor &) = delete;
    ~owned_tensor() { pthcv_tensor_release(t); }
    pthcv_tensor *release()
    {
        pthcv_tensor *r = t;
        t = nullptr;
        return r;
    }
};

struct fs_entry { // one map of pthcv_names
    std::string name;
    int dtype = -1;
    std::vector<int64_t> shape;
};

[[noreturn]] void fs_refuse(pthcv_file *f, int status, const std::string &msg)
{
    pthcv_fail(status, "%s: %s", f->path, msg.c_str());
    throw pthcv::error(msg);
}

std::string read_all(pthcv_file *f)
{
    FILE *fp = std::fopen(f->path, "rb");
    if (!fp) fs_refuse(f, PTHCV_ERR_IO, std::string("cannot open: ") + std::strerror(errno));
    std::string s;
    char buf[1 << 16];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, fp)) > 0) {
        if ((int64_t)(s.size() + n) > f->opts.max_pickle) {
            std::fclose(fp);
            fs_refuse(f, PTHCV_ERR_LIMIT,
                      "a FileStorage file of more than " + std::to_string(f->opts.max_pickle) + " bytes (max_pickle)");
        }
        s.append(buf, n);
    }
    bool failed = std::ferror(fp);
    std::fclose(fp);
    if (failed) fs_refuse(f, PTHCV_ERR_IO, "cannot read");
    return s;
}

// gzip (one or more members) inflated, bounded by max_pickle and max_zip_ratio.
std::string gunzip(pthcv_file *f, const std::string &gz)
{
    z_stream z{};
    if (inflateInit2(&z, 16 + MAX_WBITS) != Z_OK) fs_refuse(f, PTHCV_ERR_NOMEM, "cannot start zlib");
    const int64_t limit = std::min<int64_t>(f->opts.max_pickle, (int64_t)gz.size() * f->opts.max_zip_ratio + 4096);
    std::string out;
    char buf[1 << 16];
    z.next_in = (Bytef *)gz.data();
    z.avail_in = (uInt)gz.size();
    int rc = Z_OK;
    while (true) {
        z.next_out = (Bytef *)buf;
        z.avail_out = sizeof buf;
        rc = inflate(&z, Z_NO_FLUSH);
        out.append(buf, sizeof buf - z.avail_out);
        if ((int64_t)out.size() > limit) {
            inflateEnd(&z);
            fs_refuse(f, PTHCV_ERR_LIMIT,
                      "gzip expands beyond " + std::to_string(limit) +
                          " bytes (max_pickle, or max_zip_ratio times its size)");
        }
        if (rc == Z_STREAM_END && z.avail_in > 0) { // another gzip member follows
            if (inflateReset(&z) != Z_OK) break;
            continue;
        }
        if (rc != Z_OK) break;
    }
    inflateEnd(&z);
    if (rc != Z_STREAM_END)
        fs_refuse(f, PTHCV_ERR_FORMAT, std::string("damaged gzip data: ") + (z.msg ? z.msg : "truncated"));
    return out;
}

std::string checked_name(pthcv_file *f, const std::string &s, const char *what)
{
    if (s.empty() || !pthcv_name_is_printable(s.data(), s.size()))
        fs_refuse(f, PTHCV_ERR_FORMAT, std::string("pthcv_names: a ") + what + " that is empty or not printable UTF-8");
    return s;
}

std::map<std::string, fs_entry> read_names(pthcv_file *f, const cv::FileNode &seq)
{
    std::map<std::string, fs_entry> names;
    if (seq.empty()) return names;
    if (!seq.isSeq()) fs_refuse(f, PTHCV_ERR_FORMAT, "pthcv_names is not a sequence");
    size_t i = 0;
    for (cv::FileNodeIterator it = seq.begin(); it != seq.end(); ++it, ++i) {
        const cv::FileNode m = *it;
        const std::string at = "pthcv_names[" + std::to_string(i) + "]";
        if (!m.isMap() || !m["key"].isString() || !m["name"].isString() || !m["dtype"].isString())
            fs_refuse(f, PTHCV_ERR_FORMAT, at + " is not a map {key, name, dtype, shape} of strings");
        fs_entry e;
        std::string key = checked_name(f, m["key"].string(), "key");
        e.name = checked_name(f, m["name"].string(), "name");
        e.dtype = pthcv_dtype_from_name(m["dtype"].string().c_str());
        if (e.dtype < 0) fs_refuse(f, PTHCV_ERR_FORMAT, at + " (" + key + "): unknown dtype");
        const cv::FileNode shape = m["shape"];
        if (shape.isInt()) { // XML cannot tell [4] from 4
            e.shape.push_back((int)shape);
        } else if (shape.isSeq()) {
            if (shape.size() > PTHCV_MAX_DIMS)
                fs_refuse(f, PTHCV_ERR_FORMAT, at + " (" + key + "): more than 16 dimensions");
            for (cv::FileNodeIterator d = shape.begin(); d != shape.end(); ++d) {
                if (!(*d).isInt() || (int)*d < 0)
                    fs_refuse(f, PTHCV_ERR_FORMAT, at + " (" + key + "): shape holds a value that is not a size");
                e.shape.push_back((int)*d);
            }
        } else if (!shape.isNone() && !(shape.isString() && shape.string().empty())) { // XML's <shape></shape>: []
            fs_refuse(f, PTHCV_ERR_FORMAT, at + " (" + key + "): shape is not a list of sizes");
        }
        if (!names.emplace(key, e).second) fs_refuse(f, PTHCV_ERR_FORMAT, at + ": key '" + key + "' is listed twice");
    }
    return names;
}

// One size of a Mat's header: an integer from 0 to INT_MAX.
int64_t header_size(pthcv_file *f, const std::string &what, const cv::FileNode &n, const char *field)
{
    if (!n.isInt() || (int)n < 0) fs_refuse(f, PTHCV_ERR_FORMAT, what + ": the Mat's " + field + " is not a size");
    return (int)n;
}

// Checks what a Mat node's header claims -- rows x cols (or sizes) times
// the channels of dt -- against the values its data holds, before cv::read
// allocates the Mat: OpenCV allocates what the header says first, so a
// file of 100 bytes could make it ask for gigabytes.
void check_mat_header(pthcv_file *f, const std::string &what, const cv::FileNode &node)
{
    const std::string dt = node["dt"].isString() ? node["dt"].string() : "";
    size_t i = 0;
    int64_t channels = 0;
    while (i < dt.size() && dt[i] >= '0' && dt[i] <= '9' && channels <= CV_CN_MAX)
        channels = channels * 10 + (dt[i++] - '0');
    if (i == 0) channels = 1;
    if (channels < 1 || channels > CV_CN_MAX || i + 1 != dt.size() || !std::strchr("ucwsifdh", dt[i]))
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  what + ": the Mat's dt is not one element type with 1 to " + std::to_string(CV_CN_MAX) + " channels");
    int64_t claimed = channels;
    bool ok = true;
    if (!node["sizes"].empty()) {
        const cv::FileNode sizes = node["sizes"];
        if (!sizes.isSeq() || sizes.size() > PTHCV_MAX_DIMS)
            fs_refuse(f, PTHCV_ERR_FORMAT,
                      what + ": the Mat's sizes are not a list of at most " + std::to_string(PTHCV_MAX_DIMS) +
                          " sizes");
        for (cv::FileNodeIterator d = sizes.begin(); d != sizes.end(); ++d)
            ok = ok && pthcv_mul_ok(claimed, header_size(f, what, *d, "sizes"), &claimed);
    } else {
        ok = pthcv_mul_ok(claimed, header_size(f, what, node["rows"], "rows"), &claimed) &&
            pthcv_mul_ok(claimed, header_size(f, what, node["cols"], "cols"), &claimed);
    }
    const int64_t held = (int64_t)node["data"].size();
    if (!ok || claimed != held)
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  what + ": the Mat's header says " + (ok ? std::to_string(claimed) : "more than 2^63") +
                      " values, its data holds " + std::to_string(held));
}

// The tensor for the Mat under `key`, as pthcv_names describes it (or as
// the Mat is, when it is not described).
pthcv_tensor *mat_tensor(pthcv_file *f, const std::string &key, const cv::Mat &m, const fs_entry *e)
{
    const std::string what = "key '" + key + "'";
    const int depth_dtype = pthcv::dtype_of_depth(m.depth());
    if (depth_dtype < 0)
        fs_refuse(f, PTHCV_ERR_UNSUPPORTED, what + ": a Mat of an element type pthcv has no dtype for");
    std::vector<int64_t> shape;
    int64_t numel = 1;
    if (e) {
        shape = e->shape;
        for (int64_t d : shape)
            if (!pthcv_mul_ok(numel, d, &numel))
                fs_refuse(f, PTHCV_ERR_FORMAT, what + ": its shape overflows the element count");
    } else {
        for (int d = 0; d < m.dims; d++) shape.push_back(m.size[d]);
        if (m.channels() > 1) shape.push_back(m.channels());
        if (m.empty()) shape.assign(1, 0);
        if (shape.size() > PTHCV_MAX_DIMS) fs_refuse(f, PTHCV_ERR_FORMAT, what + ": more than 16 dimensions");
        for (int64_t d : shape) numel *= d;
    }
    const int64_t have = m.empty() ? 0 : (int64_t)m.total() * m.channels();
    if (have != numel)
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  what + ": the Mat holds " + std::to_string(have) + " values, its shape in pthcv_names needs " +
                      std::to_string(numel));
    const int dtype = e ? e->dtype : depth_dtype;
    if (numel == 0) { // an empty Mat has no element type of its own
        pthcv_tensor *t = pthcv_tensor_new(dtype, (int)shape.size(), shape.data());
        if (!t) fs_refuse(f, pthcv_last_status(), pthcv_last_error());
        return t;
    }
    // the dtypes pthcv_filestorage_write stores as another Mat type
    const bool fits = dtype == depth_dtype || (dtype == PTHCV_BOOL && depth_dtype == PTHCV_UINT8) ||
        (dtype == PTHCV_BFLOAT16 && depth_dtype == PTHCV_FLOAT32) ||
        ((dtype == PTHCV_INT64 || dtype == PTHCV_UINT32 || dtype == PTHCV_UINT64) && depth_dtype == PTHCV_INT32);
    if (!fits)
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  what + ": pthcv_names says " + pthcv_dtype_name(dtype) + ", the Mat holds " +
                      pthcv_dtype_name(depth_dtype));
    int64_t nbytes;
    if (!pthcv_mul_ok(numel, pthcv_dtype_size(dtype), &nbytes) || pthcv_file_charge(f, nbytes, key.c_str()))
        fs_refuse(f, PTHCV_ERR_LIMIT, pthcv_last_error());
    owned_tensor raw(pthcv_tensor_new(depth_dtype, (int)shape.size(), shape.data()));
    if (!raw.t) fs_refuse(f, PTHCV_ERR_NOMEM, what + ": out of memory");
    if (numel > 0) {
        cv::Mat c = m.isContinuous() ? m : m.clone();
        std::memcpy(pthcv_tensor_data(raw.t), c.data, (size_t)numel * pthcv_dtype_size(depth_dtype));
    }
    if (dtype == depth_dtype) return raw.release();
    if (dtype == PTHCV_BOOL || dtype == PTHCV_UINT32 || dtype == PTHCV_UINT64) { // values must fit
        for (int64_t i = 0; i < numel; i++) {
            double v, im;
            pthcv_tensor_get(raw.t, i, &v, &im);
            if (v < 0 || (dtype == PTHCV_BOOL && v > 1))
                fs_refuse(f, PTHCV_ERR_FORMAT,
                          what + ": " + pthcv_dtype_name(dtype) + " cannot hold " + std::to_string(v) +
                              " (flat index " + std::to_string(i) + ")");
        }
    }
    pthcv_tensor *t = pthcv_tensor_to(raw.t, dtype);
    if (!t) fs_refuse(f, pthcv_last_status(), pthcv_last_error());
    return t;
}

void add_tensor(pthcv_file *f, pthcv_value *dict, const std::string &name, pthcv_tensor *t)
{
    pthcv_value *k = pthcv_value_str(f, name.c_str()), *v = k ? pthcv_value_new(f, PTHCV_V_TENSOR) : nullptr;
    if (!v) {
        pthcv_tensor_release(t);
        throw pthcv::error(pthcv_last_error());
    }
    v->tensor = t;
    if (pthcv_value_push(dict, k, v)) throw pthcv::error(pthcv_last_error());
}

// Texts OpenCV 4.6's parser does not refuse but reads wrongly, refused
// first with where they go wrong:
//  - a NUL byte: OpenCV reads a text in memory as a C string, so it would
//    end there and whatever follows would be dropped unseen;
//  - XML whose last word is an attribute's '=' (`<a b=` and only white
//    space after it): its XML parser looks for the value past the end of
//    the text and dereferences a null pointer (make fuzz found
//    `<?xml von=`, spec/fuzz/regressions/asan-xml-attribute-at-end.xml).
void refuse_what_opencv_misreads(pthcv_file *f, const std::string &text)
{
    const size_t nul = text.find('\0');
    if (nul != std::string::npos)
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  "a NUL byte at offset " + std::to_string(nul) + ": a FileStorage text (YAML, XML or JSON) has none");
    if (text.compare(0, 5, "<?xml") != 0) return;
    size_t end = text.size();
    while (end > 0 && (text[end - 1] == ' ' || text[end - 1] == '\t' || text[end - 1] == '\r' || text[end - 1] == '\n'))
        end--;
    if (end > 0 && text[end - 1] == '=')
        fs_refuse(f, PTHCV_ERR_FORMAT,
                  "the XML ends inside a tag, after the '=' at offset " + std::to_string(end - 1) +
                      ": an attribute without its value (a truncated file?)");
}

} // namespace

extern "C" int pthcv_open_filestorage(pthcv_file *f)
{
    f->format = "filestorage";
    // guarded() turns the exceptions into "<path>: <message>", keeping the
    // status fs_refuse set
    int status = guarded(f->path, (int)PTHCV_ERR_FORMAT, [&]() -> int {
        std::string text = read_all(f);
        if (text.size() >= 2 && (unsigned char)text[0] == 0x1f && (unsigned char)text[1] == 0x8b)
            text = gunzip(f, text);
        if (!pthcv_is_filestorage((const unsigned char *)text.data(), text.size()) ||
            ((unsigned char)text[0] == 0x1f && (unsigned char)text[1] == 0x8b))
            fs_refuse(f, PTHCV_ERR_FORMAT, "gzip data that is not an OpenCV FileStorage text (YAML, XML or JSON)");
        refuse_what_opencv_misreads(f, text);
        cv::FileStorage fs;
        try {
            fs.open(text, cv::FileStorage::READ | cv::FileStorage::MEMORY);
        } catch (const cv::Exception &e) {
            fs_refuse(f, PTHCV_ERR_FORMAT, "OpenCV cannot parse it: " + e.err);
        }
        if (!fs.isOpened()) fs_refuse(f, PTHCV_ERR_FORMAT, "OpenCV cannot read it as a FileStorage file");
        pthcv_value *dict = pthcv_value_new(f, PTHCV_V_DICT);
        if (!dict) throw pthcv::error(pthcv_last_error());
        f->root = dict;
        std::map<std::string, fs_entry> names = read_names(f, fs["pthcv_names"]);
        size_t used = 0;
        const cv::FileNode root = fs.root();
        for (cv::FileNodeIterator it = root.begin(); it != root.end(); ++it) {
            const cv::FileNode node = *it;
            const std::string key = checked_name(f, node.name(), "key");
            if (key == "pthcv_names") continue;
            // the type tag is a YAML tag, or a type_id key in XML and JSON: look at the fields
            const bool is_mat = node.isMap() && !node["dt"].empty() && !node["data"].empty() &&
                ((!node["rows"].empty() && !node["cols"].empty()) || !node["sizes"].empty());
            if (!is_mat)
                fs_refuse(f, PTHCV_ERR_FORMAT, "key '" + key + "' is not a cv::Mat (pthcv reads files of Mats)");
            check_mat_header(f, "key '" + key + "'", node);
            cv::Mat m;
            try {
                cv::read(node, m);
            } catch (const cv::Exception &e) {
                fs_refuse(f, PTHCV_ERR_FORMAT, "key '" + key + "': OpenCV cannot read the Mat: " + e.err);
            }
            auto e = names.find(key);
            used += e != names.end();
            add_tensor(f, dict, e != names.end() ? e->second.name : key,
                       mat_tensor(f, key, m, e != names.end() ? &e->second : nullptr));
        }
        if (used != names.size())
            fs_refuse(f, PTHCV_ERR_FORMAT,
                      "pthcv_names lists " + std::to_string(names.size()) + " keys, the file has " +
                          std::to_string(used) + " of them");
        return pthcv_check_unique_keys(f, dict, "file");
    });
    return status;
}
