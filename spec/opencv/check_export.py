#!/usr/bin/python3
"""Checks the files `pthcv export` wrote, in one process (spec/onnx_opset_spec.lua,
spec/onnx_dynamic_spec.lua and spec/caffe_spec.lua run it):

    /usr/bin/python3 spec/opencv/check_export.py JOBS.json

JOBS: a list of {"name", "kind": "onnx" | "caffe", "model": FILE, "weights":
FILE.caffemodel (caffe), "cases": [{"input": X.npy, "expected": Y.npy (or
{OUTPUT_NAME: Y.npy} for several outputs), "torch": {"whole": MODEL.pth} |
{"custom": STATE_DICT.pth}}]}.

For each job: an ONNX file passes onnx.checker.check_model with full_check
(python3-onnx; shape inference included), then OpenCV 4.6's importer
(cv2.dnn.readNetFromONNX, or readNetFromCaffe with the .caffemodel) loads it
once and runs it on every case in turn (so a --dynamic file runs at each
input size on one Net). Each output is compared with the case's expected
array (pthcv's forward pass) and, with "torch", with torch's own output on
the same input: a whole-model pickle (torch.save(model)) or the example
U-Net of examples/make_custom_model.py with a state_dict.

Prints one JSON object per job: {"name", "checker": "ok" | error,
"opencv": "ok" | error, "cases": [{"shape", "max_diff", "scale",
"torch_diff"}]} where max_diff = max |opencv - expected|, scale =
max |expected|, torch_diff = max |opencv - torch|.
"""
import json
import os
import sys

import cv2
import numpy as np


def torch_output(spec, x):
    import torch
    if "whole" in spec:
        # the zoo's whole-model pickles keep their weights as float16 (their
        # values are what the fixtures' float32 logits were computed with)
        model = torch.load(spec["whole"]).float()
    else:
        here = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
        sys.path.insert(0, here)
        from make_custom_model import TinyUNet  # noqa: E402 - the example's own definition
        model = TinyUNet()
        model.load_state_dict(torch.load(spec["custom"]))
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def check(job):
    r = {"name": job["name"]}
    if job["kind"] == "onnx":
        try:
            import onnx
            onnx.checker.check_model(onnx.load(job["model"]), full_check=True)
            r["checker"] = "ok"
        except Exception as e:  # noqa: BLE001 - the spec reports the message
            r["checker"] = str(e).splitlines()[0][:300]
    try:
        if job["kind"] == "onnx":
            net = cv2.dnn.readNetFromONNX(job["model"])
        else:
            net = cv2.dnn.readNetFromCaffe(job["model"], job["weights"])
        cases = []
        for case in job["cases"]:
            x = np.load(case["input"])
            net.setInput(x)
            if isinstance(case["expected"], dict):  # several outputs by name: the largest difference
                names = sorted(case["expected"])
                outs = net.forward(names)
                out = np.concatenate([o.reshape(-1) for o in outs])
                ref = np.concatenate([np.load(case["expected"][n]).reshape(-1) for n in names])
            else:
                out = net.forward()
                ref = np.load(case["expected"])
            c = {"shape": list(out.shape)}
            if out.shape != ref.shape and out.size == ref.size:
                out = out.reshape(ref.shape)
            c["max_diff"] = float(np.abs(out.astype(np.float64) - ref).max()) if out.shape == ref.shape else None
            c["scale"] = float(np.abs(ref).max())
            if "torch" in case:
                t = torch_output(case["torch"], x)
                c["torch_diff"] = float(np.abs(out.astype(np.float64) - t).max()) if t.shape == out.shape else None
            cases.append(c)
        r["opencv"] = "ok"
        r["cases"] = cases
    except Exception as e:  # noqa: BLE001
        r["opencv"] = str(e).strip().splitlines()[-1][:300]
    return r


def main():
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    for job in jobs:
        print(json.dumps(check(job)), flush=True)


if __name__ == "__main__":
    main()
