#!/usr/bin/python3
"""make bench (detection part): pthcv against torchvision, end to end.

Image in, results out: the decoded picture (examples/demo.jpg scaled to
640x480, uint8 BGR in memory) converted and run through the model,
post-processing included (boxes, labels and scores; the class map for the
segmenter):
  - ssdlite320_mobilenet_v3_large and fasterrcnn_mobilenet_v3_large_320_fpn
    (pthcv.detect / torchvision's model on to_tensor(picture));
  - lraspp_mobilenet_v3_large at 520x520 (pthcv.segment with resize false /
    the normalised picture through the model, argmax);
at 1 and 2 threads, each engine in a process of its own with its threads
pinned; the first pass timed alone, then medians over PTHCV_BENCH_RUNS (>=
15, default 21) passes after 3 warm-up ones. The weights are the detection
specs' (spec/fixtures/make_detection_fixtures.py: trained-like, scores
spread), written into build/bench/detection once. Prints a markdown table,
also written to build/bench/detection.md; ratio = pthcv / torch.
PTHCV_BENCH_THREADS narrows the run (a comma list). Run from the checkout root.

--profile adds a second table: pthcv's median time per stage of a pass
(pthcv.models.detection.util's timer: preprocess = the picture converted
and the model's transform, network = backbone and heads, post-process =
the rest: anchors, decoding, candidates, NMS, boxes mapped back, tables),
from the same timed passes.

--ops adds, per model and thread count, the ops that take the most time in
each engine, ms per pass over 5 more passes: pthcv's kinds of kernel
(pthcv bench --profile's split: pthcv_profile_ops; "rest" is the time
outside every kernel, Lua's collections included) and torch.profiler's operators by self CPU time.
"""
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "build", "bench", "detection")
THREADS = [int(t) for t in os.environ.get("PTHCV_BENCH_THREADS", "1,2").split(",")]
RUNS = max(15, int(os.environ.get("PTHCV_BENCH_RUNS", "21")))
WARMUP = 3
CASES = [  # (model, kind, picture size w x h)
    ("ssdlite320_mobilenet_v3_large", "detection", (640, 480)),
    ("fasterrcnn_mobilenet_v3_large_320_fpn", "detection", (640, 480)),
    ("lraspp_mobilenet_v3_large", "segmentation", (520, 520)),
]

LUA_WORKER = r"""
local pthcv = require "pthcv"
local now = require "pthcv.nn.clock"
local kind, name, weights, picture, threads, runs, warmup = arg[1], arg[2], arg[3], arg[4], tonumber(arg[5]),
  tonumber(arg[6]), tonumber(arg[7])
pthcv.set_num_threads(threads)
local model = pthcv.models[kind].get(name)
model:load_state_dict(pthcv.state_dict(weights))
model:eval()
local img = pthcv.image.read(picture)
local util = require "pthcv.models.detection.util"
local function pass()
  if kind == "detection" then return pthcv.detect(model, img) end
  return pthcv.segment(model, img, { resize = false })
end
local t = now(); pass(); local first = now() - t
for _ = 2, warmup do pass() end
local times, stages = {}, { preprocess = {}, network = {}, post = {} }
local function median(list)
  table.sort(list)
  return list[math.floor(#list / 2) + 1] * 1e3
end
for i = 1, runs do
  util.timer = {}
  t = now(); pass(); times[i] = now() - t
  local pre, net = util.timer.preprocess or 0, util.timer.network or 0
  stages.preprocess[i], stages.network[i], stages.post[i] = pre, net, times[i] - pre - net
  util.timer = nil
end
print(string.format("median_ms=%.3f first_ms=%.3f preprocess_ms=%.3f network_ms=%.3f post_ms=%.3f", median(times),
                    first * 1e3, median(stages.preprocess), median(stages.network), median(stages.post)))
if arg[8] == "ops" then
  -- passes as a frame loop runs them, with no collection by hand between
  -- them (pthcv.tensor paces the collector by storage bytes), as the timed ones
  local report = require("pthcv.cli.op_profile")(pass, nil, 5)
  for line in report:gmatch("[^\n]+") do
    local kind, ms = line:match("^(.-)%s+([%d.]+)%s+%d+$")
    if kind and kind:sub(1, 1) ~= "[" then print("op\t" .. kind .. "\t" .. ms) end
  end
end
"""


def setup():
    sys.path.insert(0, os.path.join(ROOT, "spec", "fixtures"))
    import cv2
    import make_detection_fixtures as fx
    os.makedirs(DIR, exist_ok=True)
    img = cv2.imread(os.path.join(ROOT, "examples", "demo.jpg"))
    for name, kind, (w, h) in CASES:
        picture = os.path.join(DIR, "%s.png" % name)
        if not os.path.exists(picture):
            cv2.imwrite(picture, cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR))
        if not os.path.exists(os.path.join(DIR, name + ".pth")):
            # torchvision's default options: the weights do not depend on them;
            # detectors calibrate on two pictures, as the specs' fixtures do
            # (SSDlite's last BatchNorm sees 1x1 maps: one picture is one value)
            images = ["street", "portrait"] if kind == "detection" else ["street"]
            fx.write_model(DIR, name, name, kind, {}, images, fx.pictures(DIR), {})


def torch_worker(name, kind, threads):
    import cv2
    import torch
    from torchvision.models import detection as D, segmentation as S
    torch.set_num_threads(threads)
    model = (D if kind == "detection" else S).__dict__[name](weights=None, weights_backbone=None)
    sd = torch.load(os.path.join(DIR, name + ".pth"))
    if kind == "detection":
        sys.path.insert(0, os.path.join(ROOT, "spec", "fixtures"))
        import make_detection_fixtures as fx
        if name in fx.FROZEN:
            fx.freeze(model.backbone)
    model.load_state_dict(sd)
    model.eval()
    bgr = cv2.imread(os.path.join(DIR, "%s.png" % name))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]

    def run():
        with torch.no_grad():
            x = torch.from_numpy(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
            if kind == "detection":
                r = model([x])[0]
                return [r["boxes"], r["labels"], r["scores"]]
            return model(((x - mean) / std)[None])["out"].argmax(1)
    t = time.perf_counter()
    run()
    first = time.perf_counter() - t
    for _ in range(WARMUP - 1):
        run()
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    print("median_ms=%.3f first_ms=%.3f" % (statistics.median(times) * 1e3, first * 1e3))
    if "--ops" in sys.argv:
        from torch.profiler import profile, ProfilerActivity
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                run()
        for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]:
            print("op\t%s\t%.3f" % (e.key, e.self_cpu_time_total / 1e3 / 5))


def run_engine(engine, name, kind, threads, ops=False):
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if engine == "pthcv":
        argv = [os.path.join(ROOT, "bin", "pthcv"), "lua", os.path.join(DIR, "worker.lua"), kind, name,
                os.path.join(DIR, name + ".pth"), os.path.join(DIR, "%s.png" % name), str(threads), str(RUNS),
                str(WARMUP)] + (["ops"] if ops else [])
    else:
        argv = [sys.executable, os.path.abspath(__file__), "--worker", name, kind, str(threads)] + (["--ops"] if ops
                                                                                                   else [])
    r = subprocess.run(argv, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(argv), r.stderr[-2000:]))
    first_line = r.stdout.splitlines()[0] if r.stdout else ""
    kv = dict(tok.split("=", 1) for tok in first_line.split() if "=" in tok)
    ops_ms = [(op, float(ms)) for tag, op, ms in (line.split("\t") for line in r.stdout.splitlines()[1:]
                                                  if line.startswith("op\t"))]
    return float(kv["median_ms"]), float(kv["first_ms"]), {k[:-3]: float(v) for k, v in kv.items()
                                                          if k in ("preprocess_ms", "network_ms", "post_ms")}, ops_ms


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return torch_worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    setup()
    with open(os.path.join(DIR, "worker.lua"), "w") as f:
        f.write(LUA_WORKER)
    lines = ["Detection and segmentation, image in, results out; medians of %d runs after %d warm-up passes; "
             "load average %.2f at start." % (RUNS, WARMUP, os.getloadavg()[0]), "",
             "| model | picture | threads | pthcv ms | torch ms | ratio | first pass ms (pthcv / torch) |",
             "|---|---|---:|---:|---:|---:|---|"]
    profile = ["", "pthcv's median time per stage (ms; --profile):", "",
               "| model | threads | preprocess | network | post-process |", "|---|---:|---:|---:|---:|"]
    want_ops = "--ops" in sys.argv[1:]
    ops = ["", "The ops that take the most time, ms per pass (--ops; pthcv: kinds of kernel, torch: torch.profiler's "
           "self CPU time):", ""]
    for name, kind, (w, h) in CASES:
        for t in THREADS:
            p, pf, stages, p_ops = run_engine("pthcv", name, kind, t, want_ops)
            q, qf, _, q_ops = run_engine("torch", name, kind, t, want_ops)
            if want_ops:
                ops += ["| %s, %d threads: pthcv | ms | torch | ms |" % (name, t), "|---|---:|---|---:|"]
                p_top = sorted(p_ops, key=lambda o: -o[1])[:12]
                for i in range(max(len(p_top), len(q_ops))):
                    a = p_top[i] if i < len(p_top) else ("", None)
                    b = q_ops[i] if i < len(q_ops) else ("", None)
                    ops.append("| %s | %s | %s | %s |" % (a[0], "" if a[1] is None else "%.1f" % a[1], b[0],
                                                        "" if b[1] is None else "%.1f" % b[1]))
                ops.append("")
            print("%s %d threads: pthcv %.1f ms torch %.1f ms" % (name, t, p, q), file=sys.stderr, flush=True)
            lines.append("| %s | %dx%d | %d | %.1f | %.1f | **%.2f** | %.0f / %.0f |" % (name, w, h, t, p, q, p / q,
                                                                                       pf, qf))
            profile.append("| %s | %d | %.1f | %.1f | %.1f |" % (name, t, stages["preprocess"], stages["network"],
                                                                stages["post"]))
    if "--profile" in sys.argv[1:]:
        lines += profile
    if want_ops:
        lines += ops
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(ROOT, "build", "bench", "detection.md"), "w") as f:
        f.write(text + "\n")


if __name__ == "__main__":
    main()
