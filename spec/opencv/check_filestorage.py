#!/usr/bin/python3
"""FileStorage files pthcv wrote, read back by OpenCV's own Python binding
(Debian's python3-opencv) and compared with torch, bit for bit
(spec/filestorage_spec.lua runs it):

    check_filestorage.py make DIR
        DIR/weights.pth: a state_dict with every dtype FileStorage takes,
        0-d to 5-d shapes and names that need key rewriting;
        DIR/half.pth (the same without the extremes), DIR/overflow.pth (an
        int64 beyond int32), DIR/complex.pth
    check_filestorage.py check FILE=WEIGHTS.pth ...
        one JSON line per FILE: {"file", "checked", "skipped", "errors"}

OpenCV's text writer prints every integral float as "%d." (so -0.0 reads
back as +0.0) and NaN as .Nan: zeros are compared with their sign cleared,
every other value bit for bit (infinities, subnormals, extremes included).
float16 (CV_16F) Mats are not compared here: cv2 4.6 converts them to
NumPy wrongly (it gives uint64); examples/read_filestorage.cpp checks them
through cv::FileStorage in C++.
"""
import json
import re
import sys

import cv2
import numpy as np
import torch


def make(out):
    g = torch.Generator().manual_seed(6)
    sd = {
        "conv1.weight": torch.randn(4, 3, 3, 3, generator=g),
        "conv1.bias": torch.randn(4, generator=g),
        "0.bn.running_var": torch.rand(4, generator=g, dtype=torch.float64),
        "fc/weight": torch.randn(3, 5, generator=g).to(torch.float16),
        "fc.weight": torch.randn(2, 2, generator=g),       # same key as fc/weight: gets a suffix
        "fc_weight": torch.randn(2, generator=g),           # and again
        "pthcv_names": torch.ones(1),                       # the reserved key
        "bf": torch.randn(6, generator=g).to(torch.bfloat16),
        "i8": torch.tensor([-128, -1, 0, 127], dtype=torch.int8),
        "u8": torch.tensor([0, 1, 255], dtype=torch.uint8),
        "i16": torch.tensor([-32768, 7, 32767], dtype=torch.int16),
        "i32": torch.tensor([[-2**31, 0], [5, 2**31 - 1]], dtype=torch.int32),
        "bn.num_batches_tracked": torch.tensor(12345, dtype=torch.int64),
        "i64": torch.tensor([-2**31, 2**31 - 1, 3], dtype=torch.int64),
        "mask": torch.tensor([True, False, True]),
        "scalar": torch.tensor(3.25),
        "vol": torch.randn(2, 1, 3, 2, 2, generator=g),
        "extremes": torch.tensor([float("inf"), float("-inf"), 1e-45, -0.0, 3.4e38, -1.17549435e-38]),
        "extremes64": torch.tensor([5e-324, -1.7976931348623157e308, 1 / 3, -0.0], dtype=torch.float64),
        "empty": torch.zeros(0, 3),
    }
    torch.save(sd, f"{out}/weights.pth")
    # for --half: without the values float16 cannot hold
    torch.save({k: v for k, v in sd.items() if not k.startswith("extremes")}, f"{out}/half.pth")
    torch.save({"ok": torch.ones(2), "big.counter": torch.tensor([1, 2**40])}, f"{out}/overflow.pth")
    torch.save({"z": torch.ones(2, dtype=torch.complex64)}, f"{out}/complex.pth")


KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def expected(t):
    if t.dtype == torch.bfloat16:
        t = t.float()
    elif t.dtype == torch.bool:
        t = t.to(torch.uint8)
    elif t.dtype == torch.int64:
        t = t.to(torch.int32)
    a = t.contiguous().numpy()
    if a.dtype.kind == "f":
        a = np.where(a == 0, np.zeros_like(a), a)  # -0.0 is written as "0."
    return a


def check(path, weights):
    sd = torch.load(weights)
    fs = cv2.FileStorage(path, cv2.FileStorage_READ)
    r = {"file": path, "checked": 0, "skipped": 0, "errors": []}
    names = fs.getNode("pthcv_names")
    seen_keys, seen_names = set(), set()
    for i in range(names.size()):
        e = names.at(i)
        key, name, dtype = e.getNode("key").string(), e.getNode("name").string(), e.getNode("dtype").string()
        sh = e.getNode("shape")
        # XML cannot tell a one-element sequence from a number, nor [] from ""
        if sh.isSeq():
            shape = [int(sh.at(j).real()) for j in range(sh.size())]
        else:
            shape = [int(sh.real())] if sh.isInt() or sh.isReal() else []
        seen_names.add(name)
        if not KEY.match(key) or key in seen_keys or key == "pthcv_names":
            r["errors"].append(f"bad or repeated key {key!r}")
        seen_keys.add(key)
        t = sd.get(name)
        if t is None:
            r["errors"].append(f"{name}: not in the torch file")
            continue
        if dtype != str(t.dtype).replace("torch.", "") or shape != list(t.shape):
            r["errors"].append(f"{name}: dtype/shape {dtype} {shape} vs torch {t.dtype} {list(t.shape)}")
        if t.dtype == torch.float16:
            r["skipped"] += 1
            continue
        want = expected(t)
        m = fs.getNode(key).mat()
        if want.size == 0:
            if m is not None and m.size != 0:
                r["errors"].append(f"{name}: expected an empty Mat")
            r["checked"] += 1
            continue
        if m is None:
            r["errors"].append(f"{name}: no Mat under {key}")
            continue
        if m.dtype != want.dtype or m.size != want.size:
            r["errors"].append(f"{name}: Mat {m.dtype} {m.shape} vs {want.dtype} {want.shape}")
            continue
        if m.reshape(want.shape).tobytes() != want.tobytes():
            r["errors"].append(f"{name}: values differ")
            continue
        r["checked"] += 1
    missing = set(sd) - seen_names
    if missing:
        r["errors"].append(f"not listed in pthcv_names: {sorted(missing)}")
    return r


def main():
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        for arg in sys.argv[2:]:
            path, weights = arg.split("=", 1)
            print(json.dumps(check(path, weights)), flush=True)


if __name__ == "__main__":
    main()
