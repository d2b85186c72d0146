-- lua/pthcv/export/onnx/init.lua: ONNX export by tracing, for OpenCV's cv::dnn
-- and other runtimes.
--
--   local onnx = require "pthcv.export.onnx"
--   onnx.export(model, "model.onnx", { input = {1, 3, 224, 224}, opset = 13 })
--   model:export_onnx("model.onnx", { input = {1, 3, 224, 224} })   -- the same
--
-- One forward pass of the prepared (eval) module runs on a real input while
-- trace.lua watches every op at pthcv.tensor.dispatch: the graph's values
-- are the tensors themselves (by identity), its nodes the ops (ops.lua maps
-- each, from its argument record, to canonical ONNX nodes), and any tensor
-- the pass did not compute (weights, folded weights, constants) becomes an
-- initializer. Fused steps export as they run: a convolution with its
-- BatchNorm already folded, then the residual Add and the activation.
-- Custom forwards are covered as long as they use pthcv.F and Tensor
-- methods; an op with no ONNX form is refused by name, and so is a value
-- computed in Lua (element reads of traced values, tensors made by direct
-- C calls).
--
-- Then, in order: the outputs get their names (--output-names, else
-- "logits" for a 2-d output, "output", "output_<i>" for a list, the keys
-- of a table); --dynamic traces again at a probe input and computes the
-- reshapes in the graph (dynamic.lua); lower.lua writes the nodes for the
-- opset (10 to 17); --half stores float16 weights behind Cast nodes
-- (half.lua). Before anything is written, evaluate.lua runs the final graph
-- with pthcv's own kernels on the tracing input (and on the probe input)
-- and refuses it, naming the first differing node, unless every traced
-- value is within 1e-5 (relative to max(1, its largest magnitude)) of the
-- forward pass. What OpenCV 4.6 cannot run of the result is returned as
-- warnings (opencv46.lua). Protobuf is written by proto.lua.
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"
local graph = require "pthcv.export.onnx.graph"
local trace = require "pthcv.export.onnx.trace"
local fold = require "pthcv.export.onnx.fold"
local evaluate = require "pthcv.export.onnx.evaluate"
local lower = require "pthcv.export.onnx.lower"
local dynamic = require "pthcv.export.onnx.dynamic"
local opencv46 = require "pthcv.export.onnx.opencv46"
require "pthcv.export.onnx.ops_math" -- the math ops' handlers and evaluator kernels

local M = {}
M.OPSET_MIN, M.OPSET_MAX = 10, 17
-- The default opset: what OpenCV 4.6 reads best (spec/onnx_opset_spec.lua).
M.OPSET = 11
-- IR version by opset (onnx/helper.py's VERSION_TABLE)
M.IR_VERSIONS = { [10] = 5, [11] = 6, [12] = 7, [13] = 7, [14] = 7, [15] = 8, [16] = 8, [17] = 8 }

local is_tensor = Tensor.is
local refuse = graph.refuse

local function is_list_of_strings(v)
  if type(v) ~= "table" then return false end
  for _, s in ipairs(v) do if type(s) ~= "string" or s == "" then return false end end
  return true
end

-- Options: o.input, the input shape (default {1, 3, 224, 224}) or a float32
-- Tensor; o.seed, the seed of a random input; o.name, the graph's; o.opset
-- (default M.OPSET); o.dynamic, a list of axes ("batch", "height",
-- "width", "channels", "AXIS=NAME"); o.input_names (one name),
-- o.output_names (one per output); o.half, float16 weights (the module is
-- converted with module:half() first). Raises the error of options that
-- cannot be honoured.
function M.check_options(o)
  local opset = o.opset or M.OPSET
  if type(opset) ~= "number" or opset % 1 ~= 0 or opset < M.OPSET_MIN or opset > M.OPSET_MAX then
    error(string.format("pthcv: export_onnx: opset %s: pthcv writes opsets %d to %d", tostring(opset), M.OPSET_MIN,
                        M.OPSET_MAX), 0)
  end
  for _, key in ipairs { "dynamic", "input_names", "output_names" } do
    if o[key] ~= nil and not is_list_of_strings(o[key]) then
      error("pthcv: export_onnx: " .. key .. " must be a list of names", 0)
    end
  end
  if o.input_names and #o.input_names ~= 1 then
    error("pthcv: export_onnx: the model has one input; input_names gives " .. #o.input_names, 0)
  end
end

-- The outputs of a forward pass as {{key, tensor}, ...}: a tensor, a list of
-- tensors, or a table of tensors by name (in the order of the names).
local function outputs_of(y)
  if is_tensor(y) then return { { nil, y } } end
  if type(y) ~= "table" then refuse("the forward pass returned a " .. type(y) .. ", not tensors") end
  local out = {}
  if y[1] ~= nil then
    for i, t in ipairs(y) do out[i] = { nil, t } end
  else
    for k, t in pairs(y) do out[#out + 1] = { tostring(k), t } end
    table.sort(out, function(a, b) return a[1] < b[1] end)
  end
  for _, kv in ipairs(out) do
    if not is_tensor(kv[2]) then refuse("the forward pass returned a table holding a " .. type(kv[2]) .. "") end
  end
  return out
end

local function default_names(outs)
  local names = {}
  for i, kv in ipairs(outs) do
    if kv[1] then names[i] = kv[1]
    elseif #outs > 1 then names[i] = "output_" .. i
    else names[i] = kv[2].ndim == 2 and "logits" or "output" end
  end
  return names
end

-- One traced pass of the prepared module m on x: the canonical graph (its
-- values named input_name and names[i]) and the outputs {{name, tensor}}.
local function trace_pass(m, x, o, param_names)
  local g = graph.new(param_names)
  g.opset = o.opset or M.OPSET
  local input_name = o.input_names and o.input_names[1] or "input"
  g.used_names[input_name] = true
  g:output(x, input_name)
  g.inputs = { { name = input_name, shape = x.shape } }
  local ok, err = pcall(function()
    local outs = outputs_of(trace.run(g, m, function() return m(x) end))
    local names = o.output_names or default_names(outs)
    if #names ~= #outs then
      refuse(string.format("%d output names for %d outputs", #names, #outs))
    end
    g.outputs = {}
    local seen, renamed = {}, {}
    for i, kv in ipairs(outs) do
      local y, name = kv[2], names[i]
      if g.born[y] then
        refuse("the forward pass returned " .. g:describe(y) .. ", made in " .. g.born[y]
               .. " by no traced op (a direct C call or Tensor.wrap): the graph cannot compute it")
      end
      if not g:is_traced(y) then refuse("the forward pass did not return a tensor computed from its input") end
      local current = g.names[y]
      if current == input_name then refuse("the module returns its input unchanged") end
      if seen[name] then refuse("two outputs are named " .. name) end
      seen[name] = true
      if current ~= name and g.used_names[name] then
        refuse("the output name " .. name .. " is already the name of another value (a parameter or the input)")
      end
      if renamed[y] then -- the same value twice: a copy
        g.where = "the model's outputs"
        g:node("Identity", { renamed[y] }, { name })
        g.refs[name] = g.refs[renamed[y]]
      else
        g:rename(current, name)
        renamed[y] = name
      end
      g.outputs[i] = { name = name, shape = y.shape }
    end
    local out_names = {}
    for i, e in ipairs(g.outputs) do out_names[i] = e.name end
    fold.batch_norms(g, out_names)
  end)
  if not ok then g:release(); error(err, 0) end
  return g
end

-- The module's parameter and buffer names by tensor (initializers take them).
local function parameter_names(m)
  local names = {}
  for _, kv in ipairs(m:named_parameters()) do names[kv[2]] = kv[1] end
  for _, kv in ipairs(m:named_buffers()) do names[kv[2]] = names[kv[2]] or kv[1] end
  return names
end

local function input_tensor(input, seed)
  local x = input
  if x == nil or not is_tensor(x) then x = Tensor.randn(x or { 1, 3, 224, 224 }, { seed = seed or 0 }) end
  if x.dtype ~= "float32" then x = x:float() end
  return x
end

-- The traced model: {g = canonical graph (refs, inputs, outputs), x = the
-- input, probe = {g, x} (with --dynamic), axes = {[axis] = name}}.
-- The caller releases it with M.release(t).
function M.trace(m, o)
  o = o or {}
  M.check_options(o)
  local x = input_tensor(o.input, o.seed)
  if o.half then m:half() end
  if m.training ~= false then m:eval() end
  m:prepare_tree()
  local names = parameter_names(m)
  local t = { x = x, axes = {} }
  t.g = trace_pass(m, x, o, names)
  if o.dynamic and #o.dynamic > 0 then
    local ok, err = pcall(function()
      t.axes = dynamic.parse(o.dynamic, x.ndim)
      local shape_b = dynamic.probe_shape(x.shape, t.axes)
      local xb = Tensor.randn(shape_b, { seed = (o.seed or 0) + 1 })
      local okb, gb = pcall(trace_pass, m, xb, o, names)
      if not okb then
        refuse(string.format("--dynamic: the model does not run at input [%s] (each dynamic axis is checked at a "
          .. "second size: the batch + 1, the others + %d, + %d, ...): %s", table.concat(shape_b, ", "),
          dynamic.PROBE_STEP, 2 * dynamic.PROBE_STEP,
          tostring(gb):gsub("^pthcv: export_onnx: ", "")))
      end
      t.probe = { g = gb, x = xb }
      dynamic.compare(t.g, gb, x.shape, shape_b)
      t.warnings = dynamic.resolve(t.g, gb)
    end)
    if not ok then M.release(t); error(err, 0) end
  end
  return t
end

function M.release(t)
  if t.g then t.g:release() end
  if t.probe then t.probe.g:release() end
end

-- The symbolic (or fixed) shapes of t's input and outputs.
local function io_shapes(t)
  local input = t.g.inputs[1]
  local inputs, outputs = {}, {}
  local sym_in = {}
  for d, v in ipairs(input.shape) do sym_in[d] = t.axes[d - 1] or v end
  inputs[1] = { name = input.name, shape = sym_in }
  for i, out in ipairs(t.g.outputs) do
    local shape = out.shape
    if t.probe then
      shape = dynamic.symbolic(out.shape, t.probe.g.outputs[i].shape, input.shape, t.probe.x.shape, t.axes, out.name)
    end
    outputs[i] = { name = out.name, shape = shape }
  end
  return inputs, outputs
end

-- The ONNX model of module m as a proto message, and what was made:
-- {nodes, initializers, opset, outputs = {{name, shape}}, warnings,
-- half = n, float = n}. Raises the error of a refusal.
function M.build(m, o)
  o = o or {}
  local detection = require "pthcv.export.onnx.ops_detection" -- the SSD detectors' own route
  if detection.handles(m, o) then return detection.build(M, m, o) end
  local t = M.trace(m, o)
  local g = t.g
  local ok, res = pcall(function()
    local opset = o.opset or M.OPSET
    lower.run(g, opset)
    local info = { opset = opset, warnings = t.warnings or {} }
    if o.half then info.half, info.float = require("pthcv.export.onnx.half").run(g) end
    evaluate.check(g, { [g.inputs[1].name] = t.x }, g.refs)
    if t.probe then
      evaluate.check(g, { [g.inputs[1].name] = t.probe.x }, t.probe.g.refs,
                     { at = " at the probe input [" .. table.concat(t.probe.x.shape, ", ") .. "]" })
    end
    for _, w in ipairs(opencv46.warnings(g)) do info.warnings[#info.warnings + 1] = w end
    local inputs, outputs = io_shapes(t)
    local vi_in, vi_out = {}, {}
    for i, v in ipairs(inputs) do vi_in[i] = proto.value_info(v.name, proto.DTYPE.float32, v.shape) end
    for i, v in ipairs(outputs) do vi_out[i] = proto.value_info(v.name, proto.DTYPE.float32, v.shape) end
    local nodes, inits = g:to_proto()
    local pb = proto.model({ name = o.name or m:typename(), nodes = nodes, initializers = inits, inputs = vi_in,
                             outputs = vi_out },
                           { ir_version = M.IR_VERSIONS[opset], opset = opset,
                             producer_version = require("pthcv").version })
    info.nodes, info.initializers, info.outputs, info.inputs = #g.nodes, #inits, outputs, inputs
    return { pb, info }
  end)
  M.release(t)
  if not ok then error(res, 0) end
  return res[1], res[2]
end

-- Writes module m as an ONNX file at path; returns {nodes = n, initializers = n,
-- bytes = n, output_shape = {...} (the first output's), outputs, warnings, opset}.
function M.export(m, path, o)
  local model, info = M.build(m, o)
  model:write_file(path)
  info.bytes = model.size
  info.output_shape = info.outputs[1].shape
  return info
end

return M
