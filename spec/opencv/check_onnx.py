#!/usr/bin/python3
"""Checks ONNX files pthcv wrote, in one process (spec/onnx_spec.lua runs it):

    /usr/bin/python3 spec/opencv/check_onnx.py NAME=MODEL.onnx,INPUT.npy,EXPECTED.npy ...

For each: onnx.checker.check_model with full_check (python3-onnx), then OpenCV's importer
(cv2.dnn.readNetFromONNX, python3-opencv 4.6) loads and runs it on INPUT;
prints one JSON object per line: {"name", "checker": "ok" | error,
"opencv": "ok" | error, "max_diff": max |opencv - expected|,
"scale": max |expected|, "shape": [...]}.
"""
import json
import sys

import cv2
import numpy as np
import onnx


def check(name, model, inp, want):
    r = {"name": name}
    try:
        onnx.checker.check_model(model, full_check=True)
        r["checker"] = "ok"
    except Exception as e:  # noqa: BLE001 - the spec reports the message
        r["checker"] = str(e).splitlines()[0][:300]
    try:
        net = cv2.dnn.readNetFromONNX(model)
        net.setInput(np.load(inp))
        out = net.forward()
        ref = np.load(want)
        r["opencv"] = "ok"
        r["shape"] = list(out.shape)
        if out.shape != ref.shape:
            out = out.reshape(ref.shape)
        r["max_diff"] = float(np.abs(out.astype(np.float64) - ref).max())
        r["scale"] = float(np.abs(ref).max())
    except Exception as e:  # noqa: BLE001
        r["opencv"] = str(e).strip().splitlines()[-1][:300]
    return r


def main():
    for arg in sys.argv[1:]:
        name, files = arg.split("=", 1)
        model, inp, want = files.split(",")
        print(json.dumps(check(name, model, inp, want)), flush=True)


if __name__ == "__main__":
    main()
