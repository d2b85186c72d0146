#!/usr/bin/python3
"""make bench (int8 part): pthcv's int8 models against its float32 ones and
ncnn's int8 benchmark models.

For resnet18, mobilenet_v2 and squeezenet1_1 (batch 1, 3x224x224):
  - the float32 weights are make bench's (tools/bench_models.py: torchvision's
    model with seeded random weights and trained-like statistics, in
    build/bench/models/); the int8 model is `pthcv quantize` of them
    (post-training static, min-max), calibrated on CALIB_CROPS crops of
    examples/demo.jpg written to build/bench/int8/calib/ (the same pictures
    every run), and kept in build/bench/int8/;
  - float32 and int8 run by `pthcv bench` in PAIRS alternating pairs of
    processes per thread count (float32, int8, float32, int8, ...), so that
    the machine's drift falls on both alike: each side's median over its
    processes' medians, and the median of the pairs' speed-ups;
  - ncnn, when NCNN_BENCH points at a benchncnn build (tools/bench_ncnn.py):
    benchncnn on its own int8 params (resnet18_int8, mobilenet_int8,
    squeezenet_int8), in a process of its own. ncnn's mobilenet_int8 is
    MobileNet v1, not v2: its column is the nearest model ncnn ships, and the
    table says so.
Prints a markdown table, also written to build/bench/int8.md.
PTHCV_BENCH_THREADS narrows the run (a comma list); PTHCV_BENCH_PAIRS
(default 5) sets the pairs. Run from the checkout root.
"""
import os, statistics, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "build", "bench", "int8")
MODELS_DIR = os.path.join(ROOT, "build", "bench", "models")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_ncnn  # noqa: E402

MODELS = os.environ.get("PTHCV_BENCH_INT8_MODELS", "resnet18,mobilenet_v2,squeezenet1_1").split(",")
THREADS = [int(t) for t in os.environ.get("PTHCV_BENCH_THREADS", "1,2").split(",")]
PAIRS = int(os.environ.get("PTHCV_BENCH_PAIRS", "5"))
RUNS = max(15, int(os.environ.get("PTHCV_BENCH_RUNS", "21")))
WARMUP = 3
CALIB_CROPS = 8
# pthcv's model -> ncnn's int8 benchmark param (and what it is when not the same network)
NCNN_INT8 = {"resnet18": ("resnet18_int8", None), "mobilenet_v2": ("mobilenet_int8", "MobileNet v1"),
             "squeezenet1_1": ("squeezenet_int8", None)}
PTHCV = os.path.join(ROOT, "bin", "pthcv")


def calibration_pictures():
    """CALIB_CROPS crops of examples/demo.jpg (corners, centre, halves), the
    same every run, as JPEG files in build/bench/int8/calib/."""
    d = os.path.join(DIR, "calib")
    if len(os.listdir(d) if os.path.isdir(d) else []) >= CALIB_CROPS:
        return d
    import cv2
    os.makedirs(d, exist_ok=True)
    img = cv2.imread(os.path.join(ROOT, "examples", "demo.jpg"))
    h, w = img.shape[:2]
    s = min(h, w) * 3 // 4
    boxes = [(0, 0), (0, w - s), (h - s, 0), (h - s, w - s), ((h - s) // 2, (w - s) // 2)]
    crops = [img[y:y + s, x:x + s] for y, x in boxes]
    crops += [img[:, : w // 2], img[:, w // 2:], cv2.flip(img, 1)]
    for i, c in enumerate(crops[:CALIB_CROPS]):
        cv2.imwrite(os.path.join(d, "crop%d.jpg" % i), c)
    return d


def float_weights(name):
    pth = os.path.join(MODELS_DIR, name + ".pth")
    if not os.path.exists(pth):   # bench_models.py's setup writes them (torch needed)
        env = dict(os.environ, PTHCV_BENCH_MODELS=name)
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "bench_models.py"), "--setup"], check=True,
                       env=env, stdout=subprocess.DEVNULL)
    return pth


def int8_weights(name, calib):
    """written afresh on every run (seconds): an int8 file from an older
    pthcv quantize would measure that version's choices, not this one's"""
    out = os.path.join(DIR, name + "_int8.pth")
    subprocess.run([PTHCV, "quantize", "--model", name, "--weights", float_weights(name), "--calib", calib,
                    "-o", out], check=True, stdout=subprocess.DEVNULL)
    return out


def pthcv_ms(name, weights, threads):
    argv = [PTHCV, "bench", "--model", name, "--weights", weights, "--input",
            os.path.join(MODELS_DIR, name + ".input.npy"), "--threads", str(threads), "--runs", str(RUNS),
            "--warmup", str(WARMUP)]
    out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    kv = dict(tok.split("=", 1) for tok in out.split() if "=" in tok)
    return float(kv["median_ms"])


def ncnn_ms(name, threads):
    d = bench_ncnn.bench_dir()
    param = NCNN_INT8.get(name, (None,))[0]
    if not d or not param or not os.path.exists(os.path.join(d, param + ".param")):
        return None
    argv = [os.path.join(d, "benchncnn"), str(RUNS), str(threads), "0", "-1", "0", "param=%s.param" % param,
            "shape=[224,224,3]"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=d)
    return bench_ncnn.parse_summary(r.stderr)["avg_ms"]


def main():
    os.makedirs(DIR, exist_ok=True)
    calib = calibration_pictures()
    model_name = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    load0 = os.getloadavg()[0]
    lines = ["| model | threads | float32 ms | int8 ms | int8 speed-up (median of pairs; range) | ncnn int8 ms "
             "| pthcv int8 / ncnn int8 |", "|---|---:|---:|---:|---|---:|---:|"]
    notes = []
    for name in MODELS:
        w32, w8 = float_weights(name), int8_weights(name, calib)
        for t in THREADS:
            f32, i8, ups = [], [], []
            for _ in range(PAIRS):
                a, b = pthcv_ms(name, w32, t), pthcv_ms(name, w8, t)
                f32.append(a)
                i8.append(b)
                ups.append(a / b)
            n = ncnn_ms(name, t)
            m32, m8 = statistics.median(f32), statistics.median(i8)
            other = NCNN_INT8.get(name, (None, None))[1]
            lines.append("| %s | %d | %.1f | %.1f | **%.2fx** (%.2f to %.2f) | %s | %s |" % (
                name, t, m32, m8, statistics.median(ups), min(ups), max(ups),
                "-" if n is None else "%.1f%s" % (n, " (%s)" % other if other else ""),
                "-" if n is None else "%s%.2f" % ("(" if other else "", m8 / n) + (")" if other else "")))
            print("%s %d threads: float32 %.1f ms, int8 %.1f ms%s" % (name, t, m32, m8,
                  "" if n is None else ", ncnn int8 %.1f ms" % n), file=sys.stderr, flush=True)
            note = "ncnn's %s is %s, the nearest int8 model it ships; its ratio is in brackets." % (
                NCNN_INT8[name][0], other)
            if other and n is not None and note not in notes:
                notes.append(note)
    head = ("Machine: %s, %d CPUs; int8 from `pthcv quantize` (min-max) calibrated on %d crops of "
            "examples/demo.jpg; medians of %d runs after %d warm-up passes per process, %d alternating pairs "
            "of processes per row; ncnn %s; load average %.2f at start, %.2f at end."
            % (model_name, os.cpu_count(), CALIB_CROPS, RUNS, WARMUP, PAIRS,
               bench_ncnn.commit(bench_ncnn.bench_dir()) if bench_ncnn.bench_dir() else "not run (NCNN_BENCH unset)",
               load0, os.getloadavg()[0]))
    text = "\n".join([head, ""] + lines + ([""] + notes if notes else [])) + "\n"
    with open(os.path.join(ROOT, "build", "bench", "int8.md"), "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
