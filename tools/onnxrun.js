#!/usr/bin/env node
// tools/onnxrun.js: runs an ONNX file in onnxruntime (npm's onnxruntime-node,
// CPU) on inputs read from NumPy .npy files and writes its outputs as .npy:
//
//   node tools/onnxrun.js MODEL.onnx IN.npy[,IN2.npy...] OUT_PREFIX [IN... OUT_PREFIX ...]
//
// Each (inputs, prefix) pair is one run of one InferenceSession (so a file
// exported with --dynamic runs at several input sizes on one session): the
// inputs feed the model's inputs in order, and output NAME is written to
// OUT_PREFIX + NAME + ".npy". Prints one JSON line per run:
// {"outputs": [{"name", "dtype", "shape", "path"}]}. Errors (an unreadable
// or malformed .npy, a wrong number of inputs, onnxruntime's own refusal of
// the model or of an input) exit 1 with one line naming the file.
//
// onnxruntime-node is loaded from $PTHCV_NODE_MODULES when it is set, else
// from the checkout's build/node_modules (where tools/install-deps puts
// it) or node's own path. One intra-op thread: the specs share the machine.
"use strict";
const fs = require("fs");
const path = require("path");

function fail(msg) {
  process.stderr.write("onnxrun: " + msg + "\n");
  process.exit(1);
}

function loadOrt() {
  const dir = process.env.PTHCV_NODE_MODULES || path.join(__dirname, "..", "build", "node_modules");
  const where = path.join(dir, "onnxruntime-node");
  try {
    if (fs.existsSync(where) || process.env.PTHCV_NODE_MODULES) return require(where);
    return require("onnxruntime-node");
  } catch (e) {
    fail("onnxruntime-node is not installed in " + dir + " (tools/install-deps puts it there): " +
         String(e.message).split("\n")[0]);
  }
}

// .npy dtypes (little-endian) <-> onnxruntime tensor types and typed arrays
const DTYPES = {
  "<f4": { ort: "float32", array: Float32Array },
  "<f8": { ort: "float64", array: Float64Array },
  "<f2": { ort: "float16", array: Uint16Array },
  "<i8": { ort: "int64", array: BigInt64Array },
  "<i4": { ort: "int32", array: Int32Array },
  "|u1": { ort: "uint8", array: Uint8Array },
  "|i1": { ort: "int8", array: Int8Array },
  "|b1": { ort: "bool", array: Uint8Array },
};

// NumPy's .npy format (versions 1 to 3): magic, version, header length, a
// Python dict literal {'descr', 'fortran_order', 'shape'}, the data in C order
function readNpy(file) {
  let buf;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    fail(file + ": " + e.message);
  }
  const bad = (why) => fail(file + ": not a .npy file this runner reads: " + why);
  if (buf.length < 10 || buf.toString("latin1", 0, 6) !== "\x93NUMPY") bad("no .npy magic");
  const major = buf[6];
  if (major < 1 || major > 3) bad("format version " + major);
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = (major === 1 ? 10 : 12) + hlen;
  if (start > buf.length) bad("its header (" + hlen + " bytes) runs past the end of the file");
  const header = buf.toString(major === 3 ? "utf8" : "latin1", major === 1 ? 10 : 12, start);
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shape) bad("header " + JSON.stringify(header.trim()));
  const type = DTYPES[descr[1]];
  if (!type) bad("dtype " + descr[1] + " (reads " + Object.keys(DTYPES).join(", ") + ")");
  if (fortran[1] === "True") bad("Fortran order");
  const dims = shape[1].split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  if (dims.some((d) => !Number.isSafeInteger(d) || d < 0)) bad("shape (" + shape[1] + ")");
  const count = dims.reduce((a, b) => a * b, 1);
  const bytes = count * type.array.BYTES_PER_ELEMENT;
  if (buf.length - start !== bytes) {
    bad("shape [" + dims + "] of " + descr[1] + " needs " + bytes + " data bytes, the file has " + (buf.length - start));
  }
  const data = new type.array(count);
  Buffer.from(data.buffer).set(buf.subarray(start, start + bytes));
  return { type: type.ort, data, dims };
}

function writeNpy(file, tensor) {
  const descr = Object.keys(DTYPES).find((k) => DTYPES[k].ort === tensor.type);
  if (!descr) fail(file + ": onnxruntime gave a " + tensor.type + " output, which this runner does not write");
  const dims = tensor.dims.map(Number);
  const shape = dims.length === 1 ? "(" + dims[0] + ",)" : "(" + dims.join(", ") + ")";
  let header = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
  header += " ".repeat(63 - ((10 + header.length) % 64)) + "\n"; // data aligned to 64 bytes
  const head = Buffer.alloc(10);
  head.write("\x93NUMPY", 0, "latin1");
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(header.length, 8);
  const data = tensor.data;
  fs.writeFileSync(file, Buffer.concat([head, Buffer.from(header, "latin1"),
    Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
  return { dtype: tensor.type, shape: dims };
}

async function main() {
  const args = process.argv.slice(2);
  if (args.length < 3 || args.length % 2 !== 1) {
    fail("usage: node tools/onnxrun.js MODEL.onnx IN.npy[,IN2.npy...] OUT_PREFIX [IN... OUT_PREFIX ...]");
  }
  const model = args[0];
  if (!fs.existsSync(model)) fail(model + ": no such file");
  const ort = loadOrt();
  let session;
  try {
    session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1,
                                                         logSeverityLevel: 3 });
  } catch (e) {
    fail(model + ": onnxruntime refuses it: " + String(e.message).trim());
  }
  for (let i = 1; i < args.length; i += 2) {
    const files = args[i].split(",");
    if (files.length !== session.inputNames.length) {
      fail(model + ": has " + session.inputNames.length + " inputs (" + session.inputNames.join(", ") + "), given " +
           files.length + " .npy files");
    }
    const feeds = {};
    files.forEach((f, j) => {
      const t = readNpy(f);
      feeds[session.inputNames[j]] = new ort.Tensor(t.type, t.data, t.dims);
    });
    let results;
    try {
      results = await session.run(feeds);
    } catch (e) {
      fail(model + ": onnxruntime failed on " + args[i] + ": " + String(e.message).trim());
    }
    const outputs = session.outputNames.map((name) => {
      const file = args[i + 1] + name + ".npy";
      return Object.assign({ name, path: file }, writeNpy(file, results[name]));
    });
    process.stdout.write(JSON.stringify({ outputs }) + "\n");
  }
}

main().catch((e) => fail(String(e && e.stack || e)));
