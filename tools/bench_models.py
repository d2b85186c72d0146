#!/usr/bin/python3
"""make bench (model part): pthcv against PyTorch, OpenCV DNN and ncnn, side by side.

Batch 1, 3x224x224, float32, on resnet18, resnet50, mobilenet_v2,
mobilenet_v3_large, squeezenet1_1, shufflenet_v2_x1_0, efficientnet_b0,
densenet121, regnet_y_400mf, convnext_tiny, vit_b_16 and swin_t at 1 and 2
threads, in one run (a model not in pthcv's zoo yet is timed for the others
and marked "-"), then the Lua-script forms of examples/ (SCRIPTS:
efficientnet_b0.lua and shufflenet_v2.lua, run by `pthcv bench --script` on
their zoo model's weights) beside their zoo rows:
  - the weights: torchvision's model with seeded random weights and trained-like
    statistics (random BatchNorm running mean/var, BatchNorm and LayerNorm
    affine, and biases), saved as
    a state_dict (.pth) for pthcv and exported by torch.onnx.export for OpenCV
    (opset 11; where OpenCV 4.6 rejects it, opset 9, and the table says so);
    kept in build/bench/models/ and made again only when missing;
  - every engine runs in a process of its own per (model, threads), with its
    thread count pinned (pthcv --threads; torch.set_num_threads and
    OMP/MKL_NUM_THREADS; cv2.setNumThreads): the first forward pass is timed
    alone (weight packing, first-call set-up), then warm-up passes, then the
    medians over PTHCV_BENCH_RUNS (>= 15, default 21; 1 checks that every row
    runs, its times mean nothing) passes; the peak RSS is
    the process's ru_maxrss (os.wait4; this parent imports neither torch
    nor cv2, as a child's high-water mark starts at its parent's);
  - each engine's output is compared with torch's (max |diff| / max |torch|);
  - ncnn, when NCNN_BENCH points at a benchncnn build (tools/bench_ncnn.py):
    its own benchncnn on its own param files, in a process of its own; the
    ratio against it is pthcv's median over benchncnn's mean (benchncnn prints
    min, max and mean, its warm-up passes excluded);
  - each row's time split by kind of op: pthcv's from `pthcv bench
    --profile` (in a process of its own, after the timed one), ncnn's from its
    per-layer build, side by side, so that a gap is located, not guessed;
  - the FMA peak comes from tools/fma_peak.c (a register-only FMA loop),
    compiled and run here for 1 and 2 threads; effective GFLOP/s = 2 x the
    multiply-adds of the convolutions, linear layers and attention's
    projections and matrix products / median time.
VARIANTS: a row for torchvision's architecture changed to match a peer's.
ncnn's resnet50.param is ResNet-50 v1 (Caffe's: stride 2 on the first 1x1
of each downsampling block, 3.86 G multiply-adds) where torchvision's
resnet50 is v1.5 (stride 2 on the 3x3, 4.09 G); the row "resnet50_v1" is
torchvision's resnet50 with those strides moved, run by torch, OpenCV and
ncnn, and by pthcv through its trace (pthcv.jit: the zoo has no v1), so
that ncnn is set against the network it runs. ncnn is timed on that row
only (bench_ncnn.PARAMS).
Beside the zoo rows of resnet18 and mobilenet_v3_large (TRACED), a row
"NAME (traced)": the same model and weights through torch.jit.trace
(build/bench/models/NAME.trace.pt), run by pthcv's TorchScript interpreter
(`pthcv bench NAME.trace.pt`, pthcv.jit), pthcv's columns only; its output
is checked against torch's and its time set against the zoo row's.
pthcv also runs with --half (float16 weights in memory, float32 arithmetic):
its time and peak RSS are the table's last columns. Prints a markdown table;
ratio = pthcv (float32) / the fastest peer. Also written to
build/bench/models.md. The scripts are also set against their zoo rows in PTHCV_BENCH_PAIRS
(default 5) alternating pairs of processes, and their plans' summaries
compared. PTHCV_BENCH_MODELS / PTHCV_BENCH_THREADS narrow the run
(comma lists of zoo names and examples/ scripts, e.g.
PTHCV_BENCH_MODELS=vit_b_16,examples/shufflenet_v2.lua); PTHCV_BENCH_ROUNDS
(default 1) runs every engine that many times, interleaved, and keeps each
one's best median (ROUNDS). Run from the checkout root.
"""
import json, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "build", "bench", "models")
import bench_ncnn  # noqa: E402 (tools/ is this file's folder)

# The Lua-script forms of zoo models (examples/, written against pthcv.nn as
# a user would from torchvision's source) -> the zoo model whose weights they load
SCRIPTS = {"examples/efficientnet_b0.lua": "efficientnet_b0", "examples/shufflenet_v2.lua": "shufflenet_v2_x1_0"}
MODELS = os.environ.get("PTHCV_BENCH_MODELS", "resnet18,resnet50,resnet50_v1,mobilenet_v2,mobilenet_v3_large,squeezenet1_1,"
                        "shufflenet_v2_x1_0,efficientnet_b0,densenet121,regnet_y_400mf,convnext_tiny,vit_b_16,swin_t,"
                        + ",".join(SCRIPTS)).split(",")
THREADS = [int(t) for t in os.environ.get("PTHCV_BENCH_THREADS", "1,2").split(",")]
RUNS_ASKED = int(os.environ.get("PTHCV_BENCH_RUNS", "21"))
# 1: a check that every row runs (PTHCV_BENCH_RUNS=1), not a measurement
RUNS = 1 if RUNS_ASKED == 1 else max(15, RUNS_ASKED)
# Rounds per (row, threads): every engine runs once per round, the rounds one
# after the other, and each engine's round with the lowest median is the
# one shown. On a shared VM one process can run a third slower than the next
# for its whole life (a neighbour on the same physical core), whatever the
# engine: the best of a few interleaved processes compares the engines, one
# process each does not (docs/performance.md).
ROUNDS = max(1, int(os.environ.get("PTHCV_BENCH_ROUNDS", "1")))


def model_of(name):
    """The zoo model of a row: itself, or the one a script's weights are."""
    return SCRIPTS.get(name, name)


def key_of(name):
    """A row's name in build/bench/models/ files (a script's: MODEL.script)."""
    return model_of(name) + ".script" if name in SCRIPTS else name
WARMUP = 3
# zoo models also timed as torch.jit.trace archives run by pthcv.jit
TRACED = ["resnet18", "mobilenet_v3_large"]
TRACED_ROW = " (traced)"



def resnet_v1(m):
    """torchvision's ResNet (v1.5: the stride of a downsampling bottleneck on
    its 3x3) as v1 (on its first 1x1, as Caffe's ResNet-50 and ncnn's
    resnet50.param): the same weights, 3.86 G multiply-adds for resnet50
    against 4.09 G."""
    for layer in (m.layer2, m.layer3, m.layer4):
        block = layer[0]
        block.conv1.stride, block.conv2.stride = block.conv2.stride, block.conv1.stride
    return m


# architecture variants: row name -> (torchvision model, the change); pthcv
# runs them through their trace (NAME.trace.pt)
VARIANTS = {"resnet50_v1": ("resnet50", resnet_v1)}


def torchvision_model(name):
    """A row's architecture with torchvision's initial weights."""
    import torchvision
    base, change = VARIANTS.get(name, (name, lambda m: m))
    return change(getattr(torchvision.models, base)())


def path(name, ext):
    return os.path.join(DIR, name + ext)


# ---- set-up (in this process) ------------------------------------------------
def make_model(name):
    """The model with trained-like random weights (seeded by its name)."""
    import torch
    torch.manual_seed(sum(map(ord, name)))
    m = torchvision_model(name)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.copy_(torch.randn_like(mod.running_mean) * 0.1)
                mod.running_var.copy_(torch.rand_like(mod.running_var) * 0.5 + 0.75)
                mod.weight.copy_(1 + torch.randn_like(mod.weight) * 0.1)
                mod.bias.copy_(torch.randn_like(mod.bias) * 0.1)
            elif isinstance(mod, torch.nn.LayerNorm) and mod.elementwise_affine:
                mod.weight.copy_(1 + torch.randn_like(mod.weight) * 0.1)
                mod.bias.copy_(torch.randn_like(mod.bias) * 0.1)
            elif isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear)):
                if not mod.weight.any():   # a zero-initialised head (ViT's): every logit would be its bias
                    mod.weight.normal_(0, 0.02)
                if mod.bias is not None:
                    mod.bias.copy_(torch.randn_like(mod.bias) * 0.05)
    return m.eval()


def flops_of(m, x):
    """2 x multiply-adds of the convolutions, linear layers and attention:
    nn.MultiheadAttention's and Swin's window attention's projections (their
    weights are used by functions, the Linear modules are not called) and
    products Q.K^T and scores.V."""
    import torch
    from torchvision.models.swin_transformer import ShiftedWindowAttention
    total = [0]

    def hook(mod, inp, out):
        if isinstance(mod, torch.nn.Conv2d):
            total[0] += 2 * out.numel() * mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        elif isinstance(mod, torch.nn.Linear):
            total[0] += 2 * mod.in_features * mod.out_features * (out.numel() // mod.out_features)
        elif isinstance(mod, torch.nn.MultiheadAttention):   # self-attention; its output [N, T, E] (batch_first):
            n, t, e = out[0].shape                          # torchvision passes the inputs by keyword, not seen here
            total[0] += 2 * n * t * 4 * e * e + 2 * 2 * n * t * t * e   # q, k, v, out; Q.K^T, scores.V
        else:   # ShiftedWindowAttention: [N, H, W, C] in windows of L tokens, padded to whole windows
            n, h, w, c = inp[0].shape
            wh, ww = mod.window_size
            hp, wp = -(-h // wh) * wh, -(-w // ww) * ww
            total[0] += 2 * n * hp * wp * 4 * c * c + 2 * 2 * n * hp * wp * wh * ww * c
    kinds = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MultiheadAttention, ShiftedWindowAttention)
    hs = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, kinds)]
    with torch.no_grad():
        m(x)
    for h in hs:
        h.remove()
    return total[0]


def opencv_accepts(onnx_file, x):
    code = ("import sys, numpy as np, cv2\n"
            "net = cv2.dnn.readNetFromONNX(sys.argv[1]); net.setInput(np.load(sys.argv[2])); net.forward()\n")
    r = subprocess.run([sys.executable, "-c", code, onnx_file, x], capture_output=True, text=True)
    return r.returncode == 0


def setup(name):
    """Writes name.pth, name.onnx, name.input.npy, name.output.npy; returns its info."""
    info_file = path(name, ".json")
    if os.path.exists(info_file):
        with open(info_file) as f:
            return json.load(f)
    import numpy as np, torch
    os.makedirs(DIR, exist_ok=True)
    m = make_model(name)
    torch.manual_seed(1)
    x = torch.randn(1, 3, 224, 224)
    np.save(path(name, ".input.npy"), x.numpy())
    with torch.no_grad():
        y = m(x)
    np.save(path(name, ".output.npy"), y.numpy())
    torch.save(m.state_dict(), path(name, ".pth"))
    info = {"flops": flops_of(m, x)}
    for opset in (11, 9):
        try:
            torch.onnx.export(m, x, path(name, ".onnx"), opset_version=opset, input_names=["input"],
                              output_names=["output"], do_constant_folding=True)
        except Exception as e:   # noqa: BLE001 -- some opsets cannot express a layer
            info["onnx_error_%d" % opset] = str(e).splitlines()[0][:200]
            continue
        if opencv_accepts(path(name, ".onnx"), path(name, ".input.npy")):
            info["opset"] = opset
            break
    with open(info_file, "w") as f:
        json.dump(info, f)
    return info


def setup_traced(name):
    """Writes name.trace.pt: torch.jit.trace of the model with name.pth's weights."""
    if os.path.exists(path(name, ".trace.pt")):
        return
    import numpy as np, torch
    m = torchvision_model(name)
    m.load_state_dict(torch.load(path(name, ".pth")))
    m.eval()
    with torch.no_grad():
        torch.jit.trace(m, torch.from_numpy(np.load(path(name, ".input.npy")))).save(path(name, ".trace.pt"))


def rows_of(models):
    """The rows' names: each model, then its traced row (TRACED)."""
    return [row for name in models for row in ([name] + ([name + TRACED_ROW] if name in TRACED else []))]


# ---- workers (one process per engine, model and thread count) -------------------
def worker(engine, name, threads):
    import numpy as np
    x = np.load(path(name, ".input.npy"))
    if engine == "torch":
        import torch
        torch.set_num_threads(threads)
        m = torchvision_model(name)
        m.load_state_dict(torch.load(path(name, ".pth")))
        m.eval()
        xt = torch.from_numpy(x)

        def fwd():
            with torch.no_grad():
                return m(xt).numpy()
    else:
        import cv2
        cv2.setNumThreads(threads)
        net = cv2.dnn.readNetFromONNX(path(name, ".onnx"))
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)

        def fwd():
            net.setInput(x)
            return net.forward()
    t = time.perf_counter()
    y = fwd()
    first = time.perf_counter() - t
    for _ in range(WARMUP - 1):
        fwd()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fwd()
        times.append(time.perf_counter() - t)
    np.save(path(name, ".%s.out.npy" % engine), np.asarray(y, dtype=np.float32))
    print(json.dumps({"median_ms": statistics.median(times) * 1e3, "first_ms": first * 1e3}))


def run_engine(engine, name, threads):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    cwd = None
    if engine == "ncnn":
        cwd = bench_ncnn.bench_dir()
        argv = bench_ncnn.argv(cwd, model_of(name), threads, RUNS)
    elif engine in ("pthcv", "pthcv16"):
        argv = pthcv_argv("bench", name) + ["--threads", str(threads), "--runs", str(RUNS), "--warmup",
                                            str(WARMUP)] + (["--half"] if engine == "pthcv16" else [])
    elif engine in ("pthcv_traced", "pthcv_traced16"):
        argv = [os.path.join(ROOT, "bin", "pthcv"), "bench", path(name, ".trace.pt"), "--input", path(name, ".input.npy"),
                "--threads", str(threads), "--runs", str(RUNS), "--warmup", str(WARMUP)] + \
            (["--half"] if engine == "pthcv_traced16" else [])
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--worker", engine, model_of(name), str(threads)]
    # stderr to a file: a pipe read after stdout could fill and stall the child
    with tempfile.TemporaryFile("w+") as errf:
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=errf, text=True, env=env, cwd=cwd)
        out = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        errf.seek(0)
        err = errf.read()
    if status != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(argv), err[-2000:]))
    rss = ru.ru_maxrss / 1024.0
    if engine == "ncnn":
        r = bench_ncnn.parse_summary(err)
        r.update(median_ms=r["avg_ms"], rss=rss)
        return r
    if engine.startswith("pthcv"):
        kv = dict(tok.split("=", 1) for line in out.splitlines() for tok in line.split() if "=" in tok)
        cpu = next((l[5:] for l in out.splitlines() if l.startswith("cpu: ")), "?")
        return {"median_ms": float(kv["median_ms"]), "min_ms": float(kv["min_ms"]),
                "first_ms": float(kv.get("first_ms", "nan")), "rss": rss, "cpu": cpu}
    r = json.loads(out.strip().splitlines()[-1])
    r["rss"] = rss
    return r


def pthcv_argv(command, name):
    """pthcv COMMAND on a row's model (--model, or a script's --script) with
    its weights and input."""
    model = model_of(name)
    if name in VARIANTS:   # not in the zoo: its trace, through pthcv.jit
        return [os.path.join(ROOT, "bin", "pthcv"), command, path(name, ".trace.pt"), "--input",
                path(name, ".input.npy")]
    what = ["--script", os.path.join(ROOT, name)] if name in SCRIPTS else ["--model", name]
    return [os.path.join(ROOT, "bin", "pthcv"), command] + what + ["--weights", path(model, ".pth"), "--input",
                                                                   path(model, ".input.npy")]


def pthcv_output(name, half=False):
    out = path(key_of(name), ".pthcv16.out.npy" if half else ".pthcv.out.npy")
    subprocess.run(pthcv_argv("run", name) + ["--output", out] + (["--half"] if half else []),
                   check=True, stdout=subprocess.DEVNULL)
    return out


def pthcv_traced_output(name):
    out = path(name, ".pthcv_traced.out.npy")
    subprocess.run([os.path.join(ROOT, "bin", "pthcv"), "run", path(name, ".trace.pt"), "--input",
                    path(name, ".input.npy"), "--output", out], check=True, stdout=subprocess.DEVNULL)
    return out


def rel_diff(name, engine):
    import numpy as np
    ref = np.load(path(model_of(name), ".output.npy"))
    f = path(key_of(name) if engine.startswith("pthcv") else model_of(name), ".%s.out.npy" % engine)
    if not os.path.exists(f):
        return float("nan")
    y = np.load(f).reshape(ref.shape)
    return float(np.abs(y - ref).max() / np.abs(ref).max())


def fma_peak(threads):
    exe = os.path.join(ROOT, "build", "fma_peak")
    src = os.path.join(ROOT, "tools", "fma_peak.c")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        subprocess.run(["cc", "-O2", "-pthread", "-o", exe, src], check=True)
    out = subprocess.run([exe, str(threads)], check=True, capture_output=True, text=True).stdout
    return float(out.split("gflops=")[1])


def pthcv_models():
    out = subprocess.run([os.path.join(ROOT, "bin", "pthcv"), "models"], check=True, capture_output=True,
                         text=True).stdout
    return set(out.split())


def pthcv_split(name, threads):
    """pthcv's time by kind of op (bench --profile, a process of its own)."""
    argv = pthcv_argv("bench", name) + ["--threads", str(threads), "--runs", str(min(10, RUNS)), "--warmup",
                                        str(WARMUP), "--profile"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return bench_ncnn.parse_pthcv_ops(out)


# Processes per side of a script's paired comparison with its zoo row
PAIRS = int(os.environ.get("PTHCV_BENCH_PAIRS", "5"))


def script_pairs(name, threads):
    """A Lua script's time over its zoo model's, measured in PAIRS
    alternating pairs of processes (zoo, script, zoo, script, ...), so that
    the machine's drift during the run falls on both sides alike: the
    median of the pairs' ratios, and the lowest and highest ratio."""
    ratios = []
    for _ in range(PAIRS):
        zoo = run_engine("pthcv", model_of(name), threads)["median_ms"]
        script = run_engine("pthcv", name, threads)["median_ms"]
        ratios.append(script / zoo)
    return statistics.median(ratios), min(ratios), max(ratios)


def plan_summary(name):
    """The plan's summary lines (bench --profile's "plan:" lines) of a row's
    model at 1 thread: what the optimiser fused, and the kernel calls and
    bytes of the planned pass."""
    argv = pthcv_argv("bench", name) + ["--threads", "1", "--runs", "1", "--warmup", str(WARMUP), "--profile"]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    return [l[len("plan: "):] for l in out.splitlines() if l.startswith("plan: ")]


def fused_part(plan):
    """A plan's summary without the count of recorded ops (a script records
    its views and copies as ops of their own): what was fused and run."""
    return [l.split(" ops recorded, ", 1)[-1] for l in plan]


def measure(name, t, infos, in_pthcv, ncnn_on, peers):
    """One row: every engine in turn (interleaved, one case before the next),
    then the splits by kind of op. A script's row takes torch's, OpenCV's
    and ncnn's times from its zoo model's row when that ran (peers: {(model,
    threads): {engine: result}})."""
    if name.endswith(TRACED_ROW):   # pthcv's columns only, through pthcv.jit
        base = name[:-len(TRACED_ROW)]
        r = {"model": name, "base": base, "threads": t, "torch": None, "opencv": None, "ncnn": None,
             "pthcv": run_engine("pthcv_traced", base, t), "pthcv16": run_engine("pthcv_traced16", base, t)}
        print("%s %d threads: pthcv %.1f ms  pthcv16 %.1f ms" % (name, t, r["pthcv"]["median_ms"],
                                                                r["pthcv16"]["median_ms"]), file=sys.stderr, flush=True)
        return r
    r = {"model": name, "threads": t}
    model = model_of(name)
    known = peers.setdefault((model, t), {})
    engines = [e for e in ("pthcv", "pthcv16", "torch", "opencv", "ncnn") if e not in known]
    for engine in ("pthcv", "pthcv16", "torch", "opencv", "ncnn"):
        skip = ((engine in ("pthcv", "pthcv16") and name not in in_pthcv) or (engine == "opencv" and "opset" not in infos[model])
                or (engine == "ncnn" and not (ncnn_on and bench_ncnn.param_of(model, bench_ncnn.bench_dir()))))
        r[engine] = known[engine] if engine in known else None
        if skip and engine in engines:
            engines.remove(engine)
    for _ in range(ROUNDS):
        for engine in engines:
            got = run_engine(engine, name, t)
            if r[engine] is None or got["median_ms"] < r[engine]["median_ms"]:
                r[engine] = got
    for engine in ("torch", "opencv", "ncnn"):
        known[engine] = r[engine]
    if r["pthcv"]:
        r["pthcv_split"] = pthcv_split(name, t)
    if ncnn_on and bench_ncnn.layers_dir() and name not in SCRIPTS:
        r["ncnn_split"] = bench_ncnn.ncnn_split(name, t)
    print("%s %d threads: %s" % (name, t, "  ".join(
        "%s %.1f ms" % (e, r[e]["median_ms"]) for e in ("pthcv", "pthcv16", "torch", "opencv", "ncnn") if r[e])),
        file=sys.stderr, flush=True)
    return r


def table_row(r, infos, peaks):
    p, tq, ocv, nc, h = r["pthcv"], r["torch"], r["opencv"], r["ncnn"], r["pthcv16"]
    peers = [e["median_ms"] for e in (tq, ocv) if e]
    info = infos[r.get("base", model_of(r["model"]))]
    opset = info.get("opset")
    f = lambda e, k, fmt: (fmt % e[k]) if e else "-"
    ocv_ms = ("%.1f" % ocv["median_ms"] + (" (opset 9)" if opset == 9 else "")) if ocv else \
        ("-" if "base" in r else "rejected")
    gf = info["flops"] / (p["median_ms"] * 1e-3) * 1e-9 if p else None
    return "| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s / %s / %s | %s / %s / %s / %s | %s | %s |" % (
        r["model"], r["threads"], f(p, "median_ms", "%.1f"), f(tq, "median_ms", "%.1f"), ocv_ms,
        (f(nc, "avg_ms", "%.1f") + f(nc, "min_ms", " (min %.1f)")) if nc else "-",
        "**%.2f**" % (p["median_ms"] / nc["avg_ms"]) if p and nc else "-",
        "%.2f" % (p["median_ms"] / min(peers)) if p and peers else "-",
        "%.1f" % gf if gf else "-", "%.0f%%" % (100 * gf / peaks[r["threads"]]) if gf else "-",
        f(p, "first_ms", "%.0f"), f(tq, "first_ms", "%.0f"), f(ocv, "first_ms", "%.0f"),
        f(p, "rss", "%.0f"), f(tq, "rss", "%.0f"), f(ocv, "rss", "%.0f"), f(nc, "rss", "%.0f"),
        f(h, "median_ms", "%.1f"), f(h, "rss", "%.0f"))


def torch_blas():
    """the BLAS this torch process runs on: Debian's python3-torch takes
    whichever libblas.so.3 is installed, and netlib's reference BLAS makes
    its Linear layers and fallback convolutions many times slower"""
    import torch
    torch.mm(torch.ones(2, 2), torch.ones(2, 2))
    with open("/proc/self/maps") as f:
        libs = {line.split()[-1] for line in f if "blas" in line.split()[-1].rsplit("/", 1)[-1]}
    real = sorted({os.path.realpath(l) for l in libs if l.startswith("/")})
    return ", ".join(os.path.relpath(r, "/usr/lib/x86_64-linux-gnu") if r.startswith("/usr/lib/x86_64-linux-gnu/")
                     else r for r in real) or "no BLAS library loaded"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    if len(sys.argv) > 1 and sys.argv[1] == "--setup":
        import cv2, torch
        infos = {model: setup(model) for model in dict.fromkeys(map(model_of, MODELS))}
        for name in MODELS:
            if name in TRACED or name in VARIANTS:
                setup_traced(name)
        print(json.dumps({"infos": infos, "torch": torch.__version__ + " with " + torch_blas(), "cv2": cv2.__version__}))
        return
    # torch and cv2 stay out of this process: on Linux a child's ru_maxrss
    # starts from its parent's (fork + exec keep the high-water mark), so
    # the parent must be smaller than every engine it measures
    t_start = time.time()
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--setup"], check=True, capture_output=True,
                         text=True).stdout
    meta = json.loads(out.strip().splitlines()[-1])
    infos = meta["infos"]
    in_pthcv = pthcv_models() | {s for s in SCRIPTS if os.path.exists(os.path.join(ROOT, s))} | set(VARIANTS)
    for name in MODELS:
        if name in in_pthcv:
            pthcv_output(name)
            pthcv_output(name, half=True)
            if name in TRACED:
                pthcv_traced_output(name)
    ncnn_on = bench_ncnn.bench_dir() is not None
    model_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    peaks = {t: fma_peak(t) for t in THREADS}
    load0 = os.getloadavg()[0]
    peers = {}
    rows = [measure(name, t, infos, in_pthcv, ncnn_on, peers) for name in rows_of(MODELS) for t in THREADS]
    peaks_end = {t: fma_peak(t) for t in THREADS}
    peaks = {t: max(peaks[t], peaks_end[t]) for t in THREADS}
    load1 = os.getloadavg()[0]
    cpu = next((r["pthcv"]["cpu"] for r in rows if r["pthcv"]), "?")

    lines = []
    lines.append("Machine: %s, %d CPUs (pthcv sees: %s); torch %s, OpenCV %s, ncnn %s; %s; batch 1, 3x224x224 "
                 "float32; medians of %d runs after %d warm-up passes (ncnn: benchncnn's mean of %d), the best of %d "
                 "interleaved round%s per engine; load average "
                 "%.2f at start, %.2f at end; %.0f s."
                 % (model_name, os.cpu_count(), cpu, meta["torch"], meta["cv2"],
                    bench_ncnn.commit(bench_ncnn.bench_dir()) if ncnn_on else "not run (NCNN_BENCH unset)",
                    "FMA peak (tools/fma_peak.c) " + ", ".join("%.1f GFLOP/s on %d thread%s" % (peaks[t], t, "s" if t > 1 else "")
                                                               for t in THREADS),
                    RUNS, WARMUP, RUNS, ROUNDS, "s" if ROUNDS > 1 else "", load0, load1, time.time() - t_start)
                 + (" PTHCV_BENCH_RUNS=1: a check that every row runs; these times are not measurements."
                    if RUNS == 1 else ""))
    lines.append("")
    lines.append("| model | threads | pthcv ms | torch ms | OpenCV ms | ncnn ms | pthcv / ncnn | pthcv / best of torch, OpenCV "
                 "| pthcv GFLOP/s | % FMA peak | first pass ms (pthcv / torch / OpenCV) "
                 "| peak RSS MiB (pthcv / torch / OpenCV / ncnn) | pthcv --half ms | pthcv --half peak RSS MiB |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|")
    lines += [table_row(r, infos, peaks) for r in rows]
    by_model = {}
    for r in rows:
        if r["pthcv"] and r["threads"] in (1, 2):
            by_model.setdefault(r["model"], {})[r["threads"]] = r["pthcv"]["median_ms"]
    scal = ["%s %.2fx" % (n, v[1] / v[2]) for n, v in by_model.items() if 1 in v and 2 in v]
    if scal:
        lines.append("")
        lines.append("pthcv, 1 -> 2 threads: " + ", ".join(scal) + ".")
    zoo_rows = {(r["model"], r["threads"]): r["pthcv"] for r in rows if r["pthcv"] and r["model"] not in SCRIPTS and "base" not in r}
    vs_zoo = ["%s / %s, %d thread%s: %.2f" % (r["model"], model_of(r["model"]), r["threads"], "s" if r["threads"] > 1 else "",
                                               r["pthcv"]["median_ms"] / zoo_rows[(model_of(r["model"]), r["threads"])]["median_ms"])
              for r in rows if r["model"] in SCRIPTS and r["pthcv"] and (model_of(r["model"]), r["threads"]) in zoo_rows]
    if vs_zoo:
        lines.append("")
        lines.append("Lua scripts against their zoo rows (pthcv ms / pthcv ms; the same weights, fused by the "
                     "plan): " + "; ".join(vs_zoo) + ".")
        scripts = [n for n in MODELS if n in SCRIPTS and n in in_pthcv and model_of(n) in in_pthcv]
        if RUNS > 1 and PAIRS > 0:
            paired = []
            for n in scripts:
                for t in THREADS:
                    med, lo, hi = script_pairs(n, t)
                    paired.append("%s / %s, %d thread%s: %.2f (pairs %.2f to %.2f)"
                                  % (n, model_of(n), t, "s" if t > 1 else "", med, lo, hi))
            lines.append("")
            lines.append("The same, in %d alternating pairs of processes (zoo, script) per thread count, the median "
                         "of the pairs' ratios: " % PAIRS + "; ".join(paired) + ".")
        for n in scripts:
            zoo_plan, script_plan = plan_summary(model_of(n)), plan_summary(n)
            lines.append("")
            if fused_part(zoo_plan) == fused_part(script_plan):
                lines.append("Plans of %s and %s: the same fused steps, kernel calls and bytes (%s)."
                             % (model_of(n), n, "; ".join(script_plan)))
            else:
                lines.append("Plans of %s and %s differ: zoo %s; script %s."
                             % (model_of(n), n, " | ".join(zoo_plan), " | ".join(script_plan)))
    zoo_ms = {(r["model"], r["threads"]): r["pthcv"]["median_ms"] for r in rows if r["pthcv"] and "base" not in r}
    vs_zoo = ["%s, %d thread%s: %.2f" % (r["base"], r["threads"], "s" if r["threads"] > 1 else "",
                                          r["pthcv"]["median_ms"] / zoo_ms[(r["base"], r["threads"])])
              for r in rows if "base" in r and (r["base"], r["threads"]) in zoo_ms]
    if vs_zoo:
        lines.append("")
        lines.append("Traced archives (pthcv.jit) against their zoo rows (pthcv ms / pthcv ms; the same weights): "
                     + "; ".join(vs_zoo) + ". Their outputs against torch's: " + "; ".join(
                         "%s %.1e" % (n, rel_diff(n, "pthcv_traced")) for n in MODELS if n in TRACED) + ".")
    lines.append("")
    lines.append("Outputs against torch (max |diff| / max |torch|): " + "; ".join(
        "%s pthcv %.1e (--half %.1e), OpenCV %.1e" % (n, rel_diff(n, "pthcv"), rel_diff(n, "pthcv16"), rel_diff(n, "opencv"))
        for n in MODELS) + ".")
    for n in MODELS:
        if n in SCRIPTS:
            continue
        if n not in in_pthcv:
            lines.append("%s: not in pthcv's model zoo in this build." % n)
        for k, v in infos[n].items():
            if k.startswith("onnx_error"):
                lines.append("%s: torch.onnx.export %s: %s" % (n, k[-2:].strip("_"), v))
        if infos[n].get("opset") == 9:
            lines.append("%s: OpenCV 4.6 rejects the opset-11 export; the opset-9 export is used." % n)
        elif "opset" not in infos[n]:
            lines.append("%s: OpenCV 4.6 rejects both the opset-11 and the opset-9 export." % n)
    lines += bench_ncnn.split_table(rows)
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(ROOT, "build", "bench", "models.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
