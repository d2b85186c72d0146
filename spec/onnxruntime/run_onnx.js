// spec/onnxruntime/run_onnx.js: runs an ONNX file in onnxruntime (npm's
// onnxruntime-node, CPU) on one float32 .npy input and prints its outputs
// as one JSON object {name: {dims: [...], type: "float32" | "int64", data: [...]}}.
//
//   node spec/onnxruntime/run_onnx.js MODEL.onnx INPUT.npy
//
// The package is found through PTHCV_ONNXRUNTIME_NODE (its directory), else
// Node's own resolution (NODE_PATH): spec/onnx_detection_spec.lua sets it.
// Errors go to stderr with exit status 1.
"use strict";
const fs = require("fs");

function readNpy(path) {
  const buf = fs.readFileSync(path);
  if (buf.toString("latin1", 1, 6) !== "NUMPY") throw new Error(path + ": not a .npy file");
  const major = buf[6];
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString("latin1", start, start + hlen);
  if (!/'descr':\s*'<f4'/.test(header)) throw new Error(path + ": the input must be little-endian float32");
  if (/'fortran_order':\s*True/.test(header)) throw new Error(path + ": Fortran order is not read");
  const m = header.match(/'shape':\s*\(([^)]*)\)/);
  const dims = m[1].split(",").map((s) => s.trim()).filter((s) => s !== "").map(Number);
  const off = start + hlen;
  const n = dims.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = buf.readFloatLE(off + 4 * i);
  return { dims, data };
}

async function main() {
  const [model, input] = process.argv.slice(2);
  if (!model || !input) throw new Error("usage: run_onnx.js MODEL.onnx INPUT.npy");
  const ort = require(process.env.PTHCV_ONNXRUNTIME_NODE || "onnxruntime-node");
  const session = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const x = readNpy(input);
  const feeds = {};
  feeds[session.inputNames[0]] = new ort.Tensor("float32", x.data, x.dims);
  const results = await session.run(feeds);
  const out = {};
  for (const name of session.outputNames) {
    const t = results[name];
    out[name] = { dims: t.dims, type: t.type, data: Array.from(t.data, (v) => Number(v)) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => { process.stderr.write(String(e && e.message || e) + "\n"); process.exit(1); });
