"""check_exports.py OUTDIR -- reads back what tensor_test wrote into OUTDIR.

NumPy checks the .npy and .npz files byte for byte against numpy.save and
numpy.savez; the safetensors files are parsed by hand (header JSON, offsets,
bytes). When torch is importable, pthcv's conversions and dequantisation are
compared with torch's, bit for bit. Ends with "N passed, N failed".
"""
import io
import json
import os
import struct
import sys
import zipfile

import numpy as np

OUT = sys.argv[1]
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL", what)


def path(name):
    return os.path.join(OUT, name)


def npy_bytes(arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def read(name):
    with open(path(name), "rb") as f:
        return f.read()


def safetensors(name):
    """(header dict, data bytes) of a safetensors file, checking its framing."""
    raw = read(name)
    (n,) = struct.unpack("<Q", raw[:8])
    check((8 + n) % 8 == 0, name + ": data starts 8-aligned")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    end = 0
    for begin, stop in spans:
        check(begin == end, name + ": tensors packed without gaps")
        end = stop
    check(end == len(data), name + ": offsets cover the data")
    return header, data


def tensor_bytes(header, data, key):
    begin, end = header[key]["data_offsets"]
    return data[begin:end]


# what tensor_test stores in each dtype sample: 0..23, the last element -1.5 (+2.5j)
def sample(dtype):
    a = np.arange(24).reshape(2, 3, 4).astype(dtype)
    flat = a.reshape(-1)
    if np.issubdtype(dtype, np.complexfloating):
        flat[23] = -1.5 + 2.5j
    elif np.issubdtype(dtype, np.floating):
        flat[23] = -1.5
    elif dtype == np.bool_:
        flat[23] = True
    else:   # truncated toward zero, then wrapped: -1 as the unsigned types see it
        flat[23] = np.array(-1, dtype=np.int64).astype(dtype)
    return a


NPY_DTYPES = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "int8": np.int8,
              "int16": np.int16, "int32": np.int32, "int64": np.int64, "uint8": np.uint8, "uint16": np.uint16,
              "uint32": np.uint32, "uint64": np.uint64, "bool": np.bool_, "complex64": np.complex64,
              "complex128": np.complex128}
ST_DTYPES = {"float32": "F32", "float64": "F64", "float16": "F16", "int8": "I8", "int16": "I16", "int32": "I32",
             "int64": "I64", "uint8": "U8", "uint16": "U16", "uint32": "U32", "uint64": "U64", "bool": "BOOL",
             "complex64": "C64"}
transposed = np.arange(6, dtype=np.float32).reshape(2, 3).T

# ---- .npy: byte for byte as numpy.save writes them --------------------------
check(read("transposed.npy") == npy_bytes(np.ascontiguousarray(transposed)), "transposed.npy")
check(read("scalar.npy") == npy_bytes(np.array(4, dtype=np.float32)), "scalar.npy (0-d)")
check(read("empty.npy") == npy_bytes(np.zeros((0, 3), dtype=np.int64)), "empty.npy")
for name, dt in NPY_DTYPES.items():
    got = read("dtype_%s.npy" % name)
    check(got == npy_bytes(sample(dt)), "dtype_%s.npy matches numpy.save" % name)
    check(len(got) - sample(dt).nbytes in (64, 128), "dtype_%s.npy: data 64-aligned" % name)

# ---- .npz ----------------------------------------------------------------------
with np.load(path("all.npz")) as z:
    check(list(z.keys()) == list(NPY_DTYPES) + ["transposed"], "all.npz: names in order")
    for name, dt in NPY_DTYPES.items():
        check(z[name].dtype == dt and np.array_equal(z[name], sample(dt)), "all.npz: " + name)
    check(np.array_equal(z["transposed"], transposed), "all.npz: transposed")
with zipfile.ZipFile(path("all.npz")) as zf:
    check(zf.testzip() is None, "all.npz: CRCs")
    check(all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist()), "all.npz: stored uncompressed")
    check(zf.read("int8.npy") == npy_bytes(sample(np.int8)), "all.npz: entry bytes are a .npy file")
buf = io.BytesIO()
np.savez(buf)
check(read("none.npz") == buf.getvalue(), "none.npz matches numpy.savez()")

# ---- safetensors -------------------------------------------------------------
header, data = safetensors("all.safetensors")
check(header.get("__metadata__") == {"format": "pt", "note": "x"}, "metadata inserted")
for name, code in ST_DTYPES.items():
    h = header[name]
    check(h["dtype"] == code and h["shape"] == [2, 3, 4], "all.safetensors: %s header" % name)
    check(tensor_bytes(header, data, name) == sample(NPY_DTYPES[name]).tobytes(), "all.safetensors: %s bytes" % name)
check(header["bfloat16"]["dtype"] == "BF16", "bfloat16 dtype")
bf16 = (np.arange(6, dtype=np.float32).view(np.uint32) >> 16).astype("<u2")
check(tensor_bytes(header, data, "bfloat16") == bf16.tobytes(), "bfloat16 bytes")
check(header["float8_e4m3fn"]["dtype"] == "F8_E4M3", "float8 dtype")
check(tensor_bytes(header, data, "float8_e4m3fn") == bytes([0x00, 0x38, 0x40, 0x44, 0x48, 0x4A]), "float8 bytes")
weird = 'we"ird\\na\nme\x01 \u00e9'
check(weird in header and header[weird]["shape"] == [3, 2], "escaped name")
check(tensor_bytes(header, data, weird) == transposed.tobytes(), "transposed bytes")
check(header["scalar"]["shape"] == [] and tensor_bytes(header, data, "scalar") == np.float32(4).tobytes(), "0-d")
check(header["empty"]["shape"] == [0, 3] and header["empty"]["data_offsets"][0] == header["empty"]["data_offsets"][1],
      "empty tensor")
header, data = safetensors("nometa.safetensors")
check("__metadata__" not in header and list(header) == ["float32"], "nometa.safetensors")

# ---- parity with torch ---------------------------------------------------------
try:
    import torch
except ImportError:
    torch = None
    print("torch not installed: parity checks skipped")

if torch is not None:
    x = np.load(path("parity_in.npy"))
    src = torch.from_numpy(x)
    with np.errstate(invalid="ignore"):
        # torch's float -> integer casts are undefined out of range: compare where defined
        in_int32 = np.isfinite(x) & (np.abs(x) < 2.0 ** 31)
        in_int64 = np.isfinite(x) & (np.abs(x) < 2.0 ** 63)
    masks = {"int32": in_int32, "int8": in_int32, "uint8": in_int64, "int64": in_int64}
    for name, tdt in [("float16", torch.float16), ("bfloat16", torch.bfloat16), ("int32", torch.int32),
                      ("int8", torch.int8), ("uint8", torch.uint8), ("bool", torch.bool), ("int64", torch.int64),
                      ("float64", torch.float64)]:
        header, data = safetensors("parity_%s.safetensors" % name)
        want = src.to(tdt)
        width = want.element_size()
        want = want.view(torch.uint8).numpy().reshape(-1, width)
        got = np.frombuffer(tensor_bytes(header, data, name), dtype=np.uint8).reshape(-1, width)
        mask = masks.get(name, np.ones(len(x), dtype=bool))
        if name == "bfloat16":
            # torch's vectorised kernel writes NaN as 0xffff, its scalar c10::BFloat16
            # (which pthcv follows) as 0x7fc0: any NaN will do
            mask = mask & ~np.isnan(x)
        bad = np.nonzero((want != got).any(axis=1) & mask)[0]
        check(len(bad) == 0, "to(%s) differs from torch at %d elements, first %s"
              % (name, len(bad), [(float(x[i]), got[i].tobytes().hex(), want[i].tobytes().hex()) for i in bad[:3]]))

    raw = torch.from_numpy(np.load(path("dq_raw.npy")))
    q = torch._make_per_tensor_quantized_tensor(raw, 0.0372, -3)
    check(np.load(path("dq_per_tensor.npy")).tobytes() == q.dequantize().numpy().tobytes(),
          "per-tensor dequantize matches torch")
    scales = torch.tensor([0.0372, 0.11, 1.0 / 3, 0.007, 2.5], dtype=torch.float64)
    zps = torch.tensor([-3, 0, 7, 100, -128])
    q = torch._make_per_channel_quantized_tensor(raw, scales, zps, 1)
    check(np.load(path("dq_per_channel.npy")).tobytes() == q.dequantize().numpy().tobytes(),
          "per-channel dequantize matches torch")

print("%d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
