"""ncnn's side of make bench (imported by tools/bench_models.py), and the
split of each engine's time by kind of op.

ncnn runs through its own benchncnn (built by ../shared/tools/build-ncnn-bench
from a snapshot of Tencent/ncnn; never committed), found through
NCNN_BENCH=DIR (benchncnn and ncnn's benchmark .param files, which hold the
architecture only: benchncnn runs them on zero weights, which costs the same
time as trained ones). A second build with -DNCNN_BENCHMARK=ON prints every
layer's time; it is found through NCNN_BENCH_LAYERS=DIR, or DIR-layers beside
NCNN_BENCH. Its per-layer times are only used to split ncnn's time by kind
(printing them slows it down); the table's ncnn column comes from the plain
build.
"""
import os, re, statistics, subprocess

# pthcv's model name -> ncnn's benchmark param (the same architecture)
PARAMS = {
    "resnet18": "resnet18", "mobilenet_v2": "mobilenet_v2",
    "resnet50_v1": "resnet50",              # Caffe's ResNet-50 v1, not torchvision's v1.5 (bench_models.VARIANTS)
    "mobilenet_v3_large": "mobilenet_v3",   # ncnn's mobilenet_v3 is the large one (16-channel first block)
    "squeezenet1_1": "squeezenet",          # v1.1: 3x3 64-channel stem
    "shufflenet_v2_x1_0": "shufflenet_v2", "efficientnet_b0": "efficientnet_b0",
    "regnet_y_400mf": "regnety_400m",       # RegNetY-400MF: 32-channel stem, widths 48, 104, 208, 440
}


def bench_dir():
    d = os.environ.get("NCNN_BENCH")
    return d if d and os.path.exists(os.path.join(d, "benchncnn")) else None


def layers_dir():
    d = os.environ.get("NCNN_BENCH_LAYERS") or (bench_dir() or "").rstrip("/") + "-layers"
    return d if d and os.path.exists(os.path.join(d, "benchncnn")) else None


def param_of(name, d):
    p = PARAMS.get(name)
    return p if p and d and os.path.exists(os.path.join(d, p + ".param")) else None


def commit(d):
    """ncnn's commit as build-ncnn-bench left it (NCNN_COMMIT overrides)."""
    if os.environ.get("NCNN_COMMIT"):
        return os.environ["NCNN_COMMIT"]
    f = os.path.join(d, "COMMIT")
    return open(f).read().strip() if os.path.exists(f) else "?"


def argv(d, name, threads, loops):
    return [os.path.join(d, "benchncnn"), str(loops), str(threads), "0", "-1", "0",
            "param=%s.param" % param_of(name, d), "shape=[224,224,3]"]


SUMMARY = re.compile(r"min =\s*([\d.]+)\s+max =\s*([\d.]+)\s+avg =\s*([\d.]+)")


def parse_summary(err):
    m = SUMMARY.search(err)
    if not m:
        raise RuntimeError("benchncnn printed no timing:\n" + err[-2000:])
    return {"min_ms": float(m.group(1)), "max_ms": float(m.group(2)), "avg_ms": float(m.group(3))}


# ---- the split by kind of op -------------------------------------------------------
LAYER = re.compile(r"^(\w+)\s+(\S+)\s+([\d.]+)ms\s+\|(.*)$")
KERNEL = re.compile(r"kernel: (\d+) x (\d+)\s+stride: (\d+) x (\d+)")
ELEMENTWISE = {"BinaryOp", "Eltwise", "ReLU", "Clip", "Sigmoid", "Swish", "HardSwish", "HardSigmoid", "Mish",
               "TanH", "ELU", "PReLU", "Scale", "BatchNorm", "Dropout"}
LAYOUT = {"Split", "Concat", "ShuffleChannel", "Slice", "Crop", "Reshape", "Flatten", "Permute", "Padding",
          "Packing", "Cast"}


def ncnn_kind(layer_type, rest):
    k = KERNEL.search(rest)
    if layer_type in ("Convolution", "ConvolutionDepthWise") and k:
        kw, kh, sw, sh = k.groups()
        return "%s %sx%s/%s" % ("conv" if layer_type == "Convolution" else "dwconv", kh, kw, sh)
    if layer_type == "Pooling":
        return "pool"
    if layer_type == "InnerProduct":
        return "linear"
    if layer_type in ELEMENTWISE:
        return "elementwise"
    if layer_type in LAYOUT:
        return "layout"
    if layer_type == "Input":
        return None
    return layer_type.lower()


def ncnn_split(name, threads, loops=12):
    """ms per pass by kind, from the layers build: each layer's median over
    the passes benchncnn prints (its warm-up passes included)."""
    d = layers_dir()
    if not param_of(name, d):
        return None
    r = subprocess.run(argv(d, name, threads, loops), cwd=d, capture_output=True, text=True)
    per_layer = {}
    for line in r.stderr.splitlines():
        m = LAYER.match(line)
        if m:
            per_layer.setdefault((m.group(1), m.group(2), m.group(4)), []).append(float(m.group(3)))
    split = {}
    for (typ, _, rest), times in per_layer.items():
        kind = ncnn_kind(typ, rest)
        if kind:
            split[kind] = split.get(kind, 0.0) + statistics.median(times)
    if not split:
        raise RuntimeError("the layers build of benchncnn printed no layer times:\n" + r.stderr[-2000:])
    return split


def pthcv_kind(op):
    """pthcv's op profile row ("conv 3x3/1 winograd", "binary add", ...) ->
    (common kind, pthcv's path)."""
    m = re.match(r"(conv|dwconv) (\d+x\d+/\d+)\s*(.*)", op)
    if m:
        return "%s %s" % (m.group(1), m.group(2)), m.group(3)
    for prefix, kind in (("pool2d", "pool"), ("adaptive_pool2d", "pool"), ("binary", "elementwise"),
                         ("activate", "elementwise"), ("batch_norm", "elementwise"), ("prelu", "elementwise"),
                         ("linear", "linear"), ("cat", "layout"), ("pad", "layout"), ("softmax", "softmax")):
        if op.startswith(prefix):
            return kind, ""
    return op, ""


def parse_pthcv_ops(out):
    """The op section of pthcv bench --profile -> ({kind: ms}, {kind: paths})."""
    split, paths, on = {}, {}, False
    for line in out.splitlines():
        if line.startswith("op ") and "ms/pass" in line:
            on = True
            continue
        if not on:
            continue
        parts = line.split()
        if not parts or parts[0] == "total":
            break
        if line.startswith("[pool jobs: "):   # the pool's rows: not an op
            paths.setdefault("[pool]", {})[line.split("]")[0][12:]] = float(parts[-2])
            continue
        # "kind words... ms calls" ("rest" has no calls column worth reading)
        try:
            ms = float(parts[-2])
            op = " ".join(parts[:-2])
        except (ValueError, IndexError):
            continue
        kind, path = pthcv_kind(op)
        split[kind] = split.get(kind, 0.0) + ms
        if path:
            paths.setdefault(kind, set()).add(path)
    return split, paths


def split_table(rows):
    """Markdown: one block per (model, threads), kinds by pthcv's time."""
    lines = []
    for r in rows:
        ps, paths = r.get("pthcv_split") or ({}, {})
        paths = dict(paths)
        pool = paths.pop("[pool]", {})
        ns = r.get("ncnn_split") or {}
        if not ps and not ns:
            continue
        lines.append("")
        lines.append("%s, %d thread%s: pthcv %s ms, ncnn %s ms%s" % (
            r["model"], r["threads"], "s" if r["threads"] > 1 else "",
            "%.2f" % sum(ps.values()) if ps else "-", "%.2f" % sum(ns.values()) if ns else "-",
            "; pthcv's thread-pool jobs: %.2f ms of chunk CPU time, %.2f ms on idle cores"
            % (pool.get("chunks' cpu", 0), pool.get("on idle cores", 0)) if pool else ""))
        lines.append("")
        lines.append("| op kind | pthcv ms | pthcv path | ncnn ms | pthcv - ncnn |")
        lines.append("|---|---:|---|---:|---:|")
        kinds = sorted(set(ps) | set(ns), key=lambda k: -max(ps.get(k, 0), ns.get(k, 0)))
        for k in kinds:
            p, n = ps.get(k), ns.get(k)
            lines.append("| %s | %s | %s | %s | %s |" % (
                k, "%.2f" % p if p is not None else "-", ", ".join(sorted(paths.get(k, ()))),
                "%.2f" % n if n is not None else "-", "%+.2f" % ((p or 0) - (n or 0))))
    if lines:
        lines.insert(0, "Time by kind of op (pthcv bench --profile; ncnn's per-layer times from its "
                        "-DNCNN_BENCHMARK=ON build, each layer's median; rest: pthcv's time outside every "
                        "kernel, Lua and allocation):")
    return lines
