#!/usr/bin/python3
"""Runs ONNX files pthcv wrote with a small NumPy interpreter, for the graphs
OpenCV 4.6 cannot run (Where, TopK, Gather, And/Or, ...) and Debian 12 has
no onnxruntime (spec/onnx_math_spec.lua runs it):

    /usr/bin/python3 spec/opencv/eval_onnx_numpy.py NAME=MODEL.onnx,INPUT.npy,EXPECTED.npy ...

Prints one JSON object per file: {"name", "numpy": "ok" | error,
"max_diff": max |result - expected|, "scale": max |expected|, "shape",
"opencv_refuses": the node OpenCV's importer cannot read, or null}.
The interpreter knows the opset-10 nodes the math ops and the arithmetic
export to, with ONNX's semantics; TopK keeps equal values in index order
(what onnxruntime does; opset 10 leaves it open).
"""
import json
import re
import sys

import numpy as np
import onnx
from onnx import helper, numpy_helper

CAST = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 11: np.float64}


def unary(fn):
    return lambda i, a: fn(i[0])


def reduce(fn):
    return lambda i, a: fn(i[0], axis=tuple(a["axes"]) if "axes" in a else None, keepdims=bool(a.get("keepdims", 1)))


def arg(fn):
    def run(i, a):
        r = fn(i[0], axis=a.get("axis", 0)).astype(np.int64)
        return np.expand_dims(r, a.get("axis", 0)) if a.get("keepdims", 1) else r
    return run


def topk(i, a):
    x, k, ax = i[0], int(i[1].reshape(-1)[0]), a.get("axis", -1)
    idx = np.take(np.argsort(-x, axis=ax, kind="stable"), np.arange(k), axis=ax)
    return np.take_along_axis(x, idx, axis=ax), idx.astype(np.int64)


def slice_(i, a):
    x = i[0]
    axes = i[3] if len(i) > 3 and i[3] is not None else range(len(i[1]))
    index = [slice(None)] * x.ndim
    for s, e, ax in zip(i[1], i[2], axes):
        index[int(ax)] = slice(int(s), int(e))
    return x[tuple(index)]


OPS = {
    "Exp": unary(np.exp), "Log": unary(np.log), "Sqrt": unary(np.sqrt), "Abs": unary(np.abs),
    "Floor": unary(np.floor), "Ceil": unary(np.ceil), "Sign": unary(np.sign), "Neg": unary(np.negative),
    "Reciprocal": unary(lambda x: (np.float32(1) / x).astype(x.dtype)), "Not": unary(np.logical_not),
    "IsNaN": unary(np.isnan), "Relu": unary(lambda x: np.maximum(x, np.float32(0))),
    "Sigmoid": unary(lambda x: (1 / (1 + np.exp(-x))).astype(np.float32)), "Tanh": unary(np.tanh),
    "Pow": lambda i, a: np.power(i[0], i[1]).astype(i[0].dtype),
    "Add": lambda i, a: i[0] + i[1], "Sub": lambda i, a: i[0] - i[1], "Mul": lambda i, a: i[0] * i[1],
    "Div": lambda i, a: i[0] / i[1], "Max": lambda i, a: np.maximum(i[0], i[1]),
    "Min": lambda i, a: np.minimum(i[0], i[1]),
    "Greater": lambda i, a: i[0] > i[1], "Less": lambda i, a: i[0] < i[1], "Equal": lambda i, a: i[0] == i[1],
    "And": lambda i, a: i[0] & i[1], "Or": lambda i, a: i[0] | i[1], "Xor": lambda i, a: i[0] ^ i[1],
    "Where": lambda i, a: np.where(i[0], i[1], i[2]), "Cast": lambda i, a: i[0].astype(CAST[a["to"]]),
    "ReduceMax": reduce(np.max), "ReduceMin": reduce(np.min), "ArgMax": arg(np.argmax), "ArgMin": arg(np.argmin),
    "TopK": topk, "Gather": lambda i, a: np.take(i[0], i[1], axis=a.get("axis", 0)),
    "Reshape": lambda i, a: i[0].reshape([int(s) for s in i[1]]), "Slice": slice_,
    "Concat": lambda i, a: np.concatenate(i, axis=a["axis"]), "Transpose": lambda i, a: np.transpose(i[0], a["perm"]),
    "Flatten": lambda i, a: i[0].reshape(int(np.prod(i[0].shape[:a.get("axis", 1)])), -1),
}


def run(model, x):
    env = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    env[model.graph.input[0].name] = x
    for node in model.graph.node:
        if node.op_type not in OPS:
            raise ValueError("no NumPy form for " + node.op_type)
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        out = OPS[node.op_type]([env[k] if k else None for k in node.input], attrs)
        for name, v in zip(node.output, out if isinstance(out, tuple) else (out,)):
            env[name] = np.asarray(v)
    return env[model.graph.output[0].name]


def main():
    for arg_ in sys.argv[1:]:
        name, files = arg_.split("=", 1)
        path, inp, want = files.split(",")
        r = {"name": name}
        try:
            with np.errstate(all="ignore"):
                out = run(onnx.load(path), np.load(inp))
            ref = np.load(want)
            r.update(numpy="ok", shape=list(out.shape),
                     max_diff=float(np.abs(out.astype(np.float64) - ref.reshape(out.shape)).max()) if out.size else 0.0,
                     scale=float(np.abs(ref).max()) if ref.size else 0.0)
        except Exception as e:  # noqa: BLE001 - the spec reports the message
            r["numpy"] = (type(e).__name__ + ": " + str(e))[:300]
        r["opencv_refuses"] = opencv_refuses(path)
        print(json.dumps(r), flush=True)


def opencv_refuses(path):
    """The op of the first node cv2.dnn (python3-opencv) cannot import, if any."""
    try:
        import cv2
        cv2.dnn.readNetFromONNX(path)
        return None
    except ImportError:
        return None
    except Exception as e:  # noqa: BLE001
        m = re.search(r"Node \[(\w+)@", str(e))
        return m.group(1) if m else str(e).strip().splitlines()[0][:200]


if __name__ == "__main__":
    main()
