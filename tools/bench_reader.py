#!/usr/bin/python3
"""make bench (reader part): pthcv against torch.load and a plain read, side by side.

Writes a ~1 GiB checkpoint once (build/bench/big.pth, seeded), warms the page
cache, then times in one run:
  - listing it: pthcv in-process (open + every tensor's name/dtype/shape) and
    the whole `pthcv inspect --json` command, against torch.load(mmap-less)
  - materialising every tensor: pthcv, torch.load, and reading the file's bytes
Prints medians and the ratios pthcv / peer. Run from the checkout root.
"""
import os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIG = os.path.join(ROOT, "build", "bench", "big.pth")
SIZE_MB = int(os.environ.get("PTHCV_BENCH_MB", "1024"))


def lua_runs(mode, runs):
    out = subprocess.run(["luajit", os.path.join(ROOT, "tools", "bench_reader.lua"), BIG, mode, str(runs)],
                         check=True, capture_output=True, text=True).stdout
    return [float(l.split()[0].split("=")[1]) for l in out.splitlines() if l.startswith("seconds=")]


def timed(fn, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def main():
    import torch
    os.makedirs(os.path.dirname(BIG), exist_ok=True)
    if not os.path.exists(BIG) or os.path.getsize(BIG) < SIZE_MB * 1024 * 1024 * 0.9:
        subprocess.run([sys.executable, os.path.join(ROOT, "spec", "fixtures", "make_big.py"), BIG, str(SIZE_MB)], check=True)
    size = os.path.getsize(BIG)
    with open(BIG, "rb") as f:              # warm the page cache for everyone
        while f.read(1 << 24):
            pass
    torch.set_num_threads(1)

    list_pthcv = statistics.median(lua_runs("list", 9))
    cli = statistics.median(timed(lambda: subprocess.run([os.path.join(ROOT, "bin", "pthcv"), "inspect", "--json", BIG],
                                                         check=True, stdout=subprocess.DEVNULL), 5))
    # Materialising is timed inside fresh processes (the first load of each),
    # so every reader pays for fresh memory as a one-shot load does; after
    # interpreter start-up, which is not counted.
    def fresh_python(code):
        out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
        return float(out.split()[-1])
    torch_code = ("import time, torch; torch.set_num_threads(1); t = time.perf_counter(); "
                  f"torch.load({BIG!r}); print(time.perf_counter() - t)")
    read_code = (f"import time; t = time.perf_counter(); open({BIG!r}, 'rb', buffering=0).read(); "
                 "print(time.perf_counter() - t)")
    runs = 5
    torch_load = statistics.median(fresh_python(torch_code) for _ in range(runs))
    plain_read = statistics.median(fresh_python(read_code) for _ in range(runs))
    mat_pthcv = statistics.median(lua_runs("materialize", 1)[0] for _ in range(runs))

    gib = size / (1 << 30)
    print(f"checkpoint: {BIG} ({size / (1 << 20):.0f} MiB), page cache warm, medians; "
          f"materialize = first load in a fresh process")
    print(f"{'case':44s} {'ms':>9s} {'GiB/s':>7s}  ratio")
    print(f"{'list: pthcv (open + names/dtypes/shapes)':44s} {list_pthcv * 1e3:9.1f} {'':>7s}  "
          f"{list_pthcv / torch_load:.4f} of torch.load  (target < 50 ms)")
    print(f"{'list: pthcv inspect --json (whole command)':44s} {cli * 1e3:9.1f}")
    print(f"{'materialize: pthcv (every page of every tensor)':44s} {mat_pthcv * 1e3:9.1f} {gib / mat_pthcv:7.2f}  "
          f"{mat_pthcv / torch_load:.3f} x torch.load, {mat_pthcv / plain_read:.3f} x plain read")
    print(f"{'materialize: torch.load':44s} {torch_load * 1e3:9.1f} {gib / torch_load:7.2f}")
    print(f"{'plain read of the file into memory':44s} {plain_read * 1e3:9.1f} {gib / plain_read:7.2f}")


if __name__ == "__main__":
    main()
