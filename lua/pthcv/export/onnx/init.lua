-- lua/pthcv/export/onnx/init.lua: ONNX export by tracing, for OpenCV's cv::dnn.
--
--   local onnx = require "pthcv.export.onnx"
--   onnx.export(model, "model.onnx", { input = {1, 3, 224, 224} })
--   model:export_onnx("model.onnx", { input = {1, 3, 224, 224} })   -- the same
--
-- One forward pass of the prepared (eval) module runs on a real input while
-- every function of pthcv.F and every Tensor method records what it did:
-- the graph's values are the tensors themselves (by identity), its nodes
-- the ops (lua/pthcv/export/onnx/ops.lua maps each to ONNX), and any tensor the
-- pass did not compute (weights, folded weights, constants of a custom
-- forward) becomes an initializer. Fused steps export as they run: a
-- convolution with its BatchNorm already folded, then the residual Add and
-- the activation. Custom forwards are covered as long as they use pthcv.F
-- and Tensor methods; an op with no ONNX form is refused by name.
--
-- The file is opset 10 (IR version 5), the form OpenCV 4.6's importer
-- reads: Clip with min/max attributes, MaxPool/AveragePool with ceil_mode,
-- Hardswish as x * HardSigmoid(x). Protobuf is written by
-- lua/pthcv/export/onnx/proto.lua.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local proto = require "pthcv.export.onnx.proto"
local ops = require "pthcv.export.onnx.ops"
require "pthcv.export.onnx.ops_math" -- the math ops' handlers (tensor/math.lua), into ops.handlers

local M = {}
M.OPSET, M.IR_VERSION = 10, 5

local is_tensor = Tensor.is

-- ---- the graph being recorded --------------------------------------------------
local Graph = {}
Graph.__index = Graph

local function new_graph(param_names)
  return setmetatable({
    nodes = {}, initializers = {}, names = {}, traced = {}, keep = {}, count = {}, used_names = {},
    param_names = param_names or {}, born = setmetatable({}, { __mode = "k" }),
  }, Graph)
end

-- A fresh, unused name starting with prefix.
function Graph:fresh(prefix)
  local n = (self.count[prefix] or 0) + 1
  self.count[prefix] = n
  local name = prefix .. "_" .. n
  while self.used_names[name] do
    n = n + 1
    self.count[prefix] = n
    name = prefix .. "_" .. n
  end
  self.used_names[name] = true
  return name
end

-- Whether t is a value the traced pass computed (not a constant).
function Graph:is_traced(t) return is_tensor(t) and self.traced[t] == true end

-- The name of t as a node input: its value name when traced, else an
-- initializer holding its contents (hint names it when it has no
-- parameter name). Floating constants other than float32 are stored as
-- float32: OpenCV 4.6 reads no other float initializers.
function Graph:input(t, hint)
  local name = self.names[t]
  if name then return name end
  if self.born[t] then
    error("pthcv: export_onnx: a tensor of the traced pass was computed by a call the tracer cannot see "
          .. "(a function of pthcv.F or a Tensor method saved in a local before tracing, or a direct C call)", 0)
  end
  local init = t
  if init.is_floating_point and init.dtype ~= "float32" then init = init:float() end
  name = self.param_names[t]
  if name == nil or self.used_names[name] then name = self:fresh(hint or "const") end
  self.used_names[name] = true
  self.names[t] = name
  self.keep[#self.keep + 1] = t
  self.initializers[#self.initializers + 1] = proto.tensor(name, init)
  return name
end

-- An initializer made from a Lua list (int64 shapes and axes, float scalars).
function Graph:constant(values, dtype, shape, hint)
  local t = Tensor.from_table(values, dtype)
  if shape then t = t:reshape(shape) end
  return self:input(t, hint or "const")
end
function Graph:ints(list, hint) return self:constant(list, "int64", { #list }, hint) end
function Graph:scalar(v, hint) return self:constant({ v }, "float32", {}, hint) end

-- Names t as the output of the node being recorded (a fresh name unless given).
function Graph:output(t, name)
  name = name or self:fresh("t")
  self.names[t] = name
  self.traced[t] = true
  self.keep[#self.keep + 1] = t
  return name
end

-- The result t is the same value as the traced input x (no node).
function Graph:alias(t, x)
  self.names[t] = self.names[x]
  self.traced[t] = true
  self.keep[#self.keep + 1] = t
end

-- Appends a node; attrs: {{name, kind, value}, ...} (proto.attribute).
-- outputs: names (strings); returns the first.
function Graph:node(op, inputs, outputs, attrs)
  self.nodes[#self.nodes + 1] = proto.node(op, inputs, outputs, self:fresh(op), attrs)
  return outputs[1]
end

-- A node with one fresh intermediate output; returns its name.
function Graph:op(op, inputs, attrs) return self:node(op, inputs, { self:fresh("t") }, attrs) end

-- ---- tracing ---------------------------------------------------------------------
-- Whether any argument (or a tensor inside a list argument) is traced.
local function touches_trace(g, args)
  for i = 1, args.n do
    local a = args[i]
    if g:is_traced(a) then return true end
    if type(a) == "table" and not is_tensor(a) and getmetatable(a) == nil then
      for _, v in ipairs(a) do if g:is_traced(v) then return true end end
    end
  end
  return false
end

local function returns_tensor(res)
  for i = 1, res.n do
    local r = res[i]
    if is_tensor(r) then return true end
    if type(r) == "table" and getmetatable(r) == nil and is_tensor(r[1]) then return true end
  end
  return false
end

local function pack_call(ok, ...) return ok, { n = select("#", ...), ... } end

-- Replaces the functions of tbl (those named in only, else all) by ones
-- that run them and, when it is the outermost op of the traced pass and
-- touches a traced value, record it with handlers[prefix .. name]; ops
-- with no handler are refused. Returns the originals, to put back.
local function instrument(g, tbl, prefix, state, only)
  local saved = {}
  for name, fn in pairs(tbl) do
    if type(fn) == "function" and name:sub(1, 1) ~= "_" and (not only or only[name]) then
      saved[name] = fn
      local key = prefix .. name
      local handler = ops.handlers[key]
      tbl[name] = function(...)
        if state.depth > 0 then return fn(...) end
        state.depth = 1
        local ok, res = pack_call(pcall(fn, ...))
        if not ok then state.depth = 0; error(res[1], 0) end
        local args = { n = select("#", ...), ... }
        if returns_tensor(res) and touches_trace(g, args) then
          local r1 = res[1]
          if is_tensor(r1) and rawequal(r1, args[1]) then
            -- the op returned its input (dropout, contiguous() of a contiguous tensor)
          elseif handler then
            -- handlers run as ops too: tensor calls they make are not recorded
            local hok, herr = pcall(handler, g, args, res)
            if not hok then state.depth = 0; error(herr, 0) end
          else
            state.depth = 0
            error("pthcv: export_onnx: " .. key .. " has no ONNX form (opset " .. M.OPSET .. ")", 0)
          end
        end
        state.depth = 0
        return unpack(res, 1, res.n)
      end
    end
  end
  return saved
end

local function restore(tbl, saved) for name, fn in pairs(saved) do tbl[name] = fn end end

-- Tensor constructors make constants, even inside forward.
local CONSTRUCTORS = { zeros = true, ones = true, full = true, from_table = true, randn = true, rand = true,
                       arange = true }
local function as_constants(tbl, state)
  local saved = {}
  for name in pairs(CONSTRUCTORS) do
    local fn = tbl[name]
    saved[name] = fn
    tbl[name] = function(...)
      state.depth = state.depth + 1
      local ok, res = pack_call(pcall(fn, ...))
      state.depth = state.depth - 1
      if not ok then error(res[1], 0) end
      return unpack(res, 1, res.n)
    end
  end
  return saved
end

-- The call in fn() wraps forward: depth 0 outside any op, 1 inside one.
local function trace(g, fn)
  local state = { depth = 0 }
  -- the C calls wrapped by F, Tensor methods and the binary operators
  local tables = { { F, "F." }, { Tensor.methods, "Tensor." }, { Tensor, "Tensor.", { binary = true } } }
  local saved = {}
  for i, tp in ipairs(tables) do saved[i] = instrument(g, tp[1], tp[2], state, tp[3]) end
  local saved_ctors = as_constants(Tensor, state)
  -- tensors made outside any op the tracer sees: refused if the graph uses them
  Tensor.on_wrap = function(t) if state.depth == 0 then g.born[t] = true end end
  local res = { pcall(fn) }
  Tensor.on_wrap = nil
  restore(Tensor, saved_ctors)
  for i, tp in ipairs(tables) do restore(tp[1], saved[i]) end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2)
end

-- ---- export ----------------------------------------------------------------------
-- The ONNX model of module m as a proto message, and its traced output.
-- o.input: the input shape (default {1, 3, 224, 224}) or a float32 Tensor;
-- o.half: refused (OpenCV 4.6 reads no float16 initializers).
-- Raises the error for options that cannot be honoured.
function M.check_options(o)
  if o.half then
    error("pthcv: export_onnx: float16 (--half) is refused: OpenCV 4.6's ONNX importer rejects FLOAT16 "
          .. "initializers (\"Unsupported data type: FLOAT16\" in getMatFromTensor), even behind Cast nodes; "
          .. "export float32 (pthcv convert --half writes float16 npz/safetensors/FileStorage weights)", 0)
  end
end

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
  local g = new_graph(param_names)
  g.used_names.input = true
  g:output(x, "input")
  local y = trace(g, function() return m(x) end)
  if type(y) == "table" and not is_tensor(y) then y = y[1] end
  if not is_tensor(y) or not g:is_traced(y) then
    error("pthcv: export_onnx: the forward pass did not return a tensor computed from its input", 0)
  end
  local out = g.names[y]
  if out == "input" then error("pthcv: export_onnx: the module returns its input unchanged", 0) end
  local graph = {
    name = o.name or m:typename(), nodes = g.nodes, initializers = g.initializers,
    inputs = { proto.value_info("input", proto.DTYPE.float32, x.shape) },
    outputs = { proto.value_info(out, proto.DTYPE.float32, y.shape) },
  }
  local pthcv_version = require("pthcv").version
  local model = proto.model(graph, { ir_version = M.IR_VERSION, opset = M.OPSET, producer_version = pthcv_version })
  return model, y, x, g
end

-- Writes module m as an ONNX file at path; returns {nodes = n, initializers = n,
-- bytes = n, output_shape = {...}}.
function M.export(m, path, o)
  local model, y, _, g = M.trace_module(m, o)
  model:write_file(path)
  return { nodes = #g.nodes, initializers = #g.initializers, bytes = model.size, output_shape = y.shape }
end

return M
