-- lua/pthcv/export/onnx/init.lua: ONNX export by tracing, for OpenCV's cv::dnn.
--
--   local onnx = require "pthcv.export.onnx"
--   onnx.export(model, "model.onnx", { input = {1, 3, 224, 224} })
--   model:export_onnx("model.onnx", { input = {1, 3, 224, 224} })   -- the same
--
-- One forward pass of the prepared (eval) module runs on a real input while
-- trace.lua watches every op at pthcv.tensor.dispatch: the graph's values
-- are the tensors themselves (by identity), its nodes the ops (ops.lua maps
-- each, from its argument record, to ONNX), and any tensor the pass did not
-- compute (weights, folded weights, constants) becomes an initializer.
-- Fused steps export as they run: a convolution with its BatchNorm already
-- folded, then the residual Add and the activation. Custom forwards are
-- covered as long as they use pthcv.F and Tensor methods; an op with no
-- ONNX form is refused by name, and so is a value computed in Lua (element
-- reads of traced values, tensors made by direct C calls).
--
-- Before anything is written, evaluate.lua runs the graph with pthcv's own
-- kernels on the tracing input and refuses it, naming the first differing
-- node, unless every traced value is within 1e-5 (relative to max(1, its
-- largest magnitude)) of the forward pass.
--
-- The file is opset 10 (IR version 5), the form OpenCV 4.6's importer
-- reads: Clip with min/max attributes, MaxPool/AveragePool with ceil_mode,
-- Hardswish as x * HardSigmoid(x). Protobuf is written by proto.lua.
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"
local graph = require "pthcv.export.onnx.graph"
local trace = require "pthcv.export.onnx.trace"
local evaluate = require "pthcv.export.onnx.evaluate"
require "pthcv.export.onnx.ops_math" -- the math ops' handlers and evaluator kernels

local M = {}
M.OPSET, M.IR_VERSION = require("pthcv.export.onnx.ops").OPSET, 5

local is_tensor = Tensor.is

-- Options: o.input, the input shape (default {1, 3, 224, 224}) or a
-- float32 Tensor; o.seed, the seed of a random input; o.name, the graph's;
-- o.half: refused (OpenCV 4.6 reads no float16 initializers).
-- Raises the error for options that cannot be honoured.
function M.check_options(o)
  if o.half then
    error("pthcv: export_onnx: float16 (--half) is refused: OpenCV 4.6's ONNX importer rejects FLOAT16 "
          .. "initializers (\"Unsupported data type: FLOAT16\" in getMatFromTensor), even behind Cast nodes; "
          .. "export float32 (pthcv convert --half writes float16 npz/safetensors/FileStorage weights)", 0)
  end
end

-- The ONNX model of module m as a proto message, its traced output, its
-- input and the graph (checked by the evaluator). Raises the error of a
-- refusal.
function M.trace_module(m, o)
  o = o or {}
  M.check_options(o)
  local x = o.input
  if x == nil or not is_tensor(x) then
    x = Tensor.randn(x or { 1, 3, 224, 224 }, { seed = o.seed or 0 })
  end
  if x.dtype ~= "float32" then x = x:float() end
  local param_names = {}
  for _, kv in ipairs(m:named_parameters()) do param_names[kv[2]] = kv[1] end
  for _, kv in ipairs(m:named_buffers()) do param_names[kv[2]] = param_names[kv[2]] or kv[1] end
  if m.training ~= false then m:eval() end
  m:prepare_tree()
  local g = graph.new(param_names)
  g.used_names.input = true
  g:output(x, "input")
  local ok, err = pcall(function()
    local y = trace.run(g, m, function() return m(x) end)
    if type(y) == "table" and not is_tensor(y) then y = y[1] end
    if is_tensor(y) and g.born[y] then
      graph.refuse("the forward pass returned " .. g:describe(y) .. ", made in " .. g.born[y]
                   .. " by no traced op (a direct C call or Tensor.wrap): the graph cannot compute it")
    end
    if not is_tensor(y) or not g:is_traced(y) then
      graph.refuse("the forward pass did not return a tensor computed from its input")
    end
    local out = g.names[y]
    if out == "input" then graph.refuse("the module returns its input unchanged") end
    evaluate.check(g, x, out)
    local nodes, inits = g:to_proto()
    local pb = proto.model({
      name = o.name or m:typename(), nodes = nodes, initializers = inits,
      inputs = { proto.value_info("input", proto.DTYPE.float32, x.shape) },
      outputs = { proto.value_info(out, proto.DTYPE.float32, y.shape) },
    }, { ir_version = M.IR_VERSION, opset = M.OPSET, producer_version = require("pthcv").version })
    return { pb, y }
  end)
  g:release()
  if not ok then error(err, 0) end
  return err[1], err[2], x, g
end

-- Writes module m as an ONNX file at path; returns {nodes = n, initializers = n,
-- bytes = n, output_shape = {...}}.
function M.export(m, path, o)
  local model, y, _, g = M.trace_module(m, o)
  model:write_file(path)
  return { nodes = #g.nodes, initializers = #g.inits, bytes = model.size, output_shape = y.shape }
end

return M
