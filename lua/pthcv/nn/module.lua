-- lua/pthcv/nn/module.lua: Module, the base class of pthcv.nn, as torch.nn.Module.
--
--   local Net = nn.class("Net")               -- a subclass of nn.Module
--   function Net:__init(nc)
--     self.conv = nn.Conv2d(3, 8, 3)           -- submodules register themselves,
--     self.fc = nn.Linear(8, nc)               -- in assignment order (torch's names)
--   end
--   function Net:forward(x) return self.fc(F.flatten(F.adaptive_avg_pool2d(self.conv(x), 1), 1)) end
--   local net = Net(10); net:load_state_dict(sd); net:eval(); local y = net(x)
--
-- Instances are plain tables: submodules, parameters and buffers are stored
-- as raw fields (so `self.conv` in a forward costs one table lookup) and their
-- names are kept in order lists for state_dict, load_state_dict and print.
--
-- Inference only: there is no autograd, BatchNorm always uses its running
-- statistics and Dropout is the identity, whatever train()/eval() say (the
-- flag is kept for torch compatibility). Calling a module "prepares" it
-- first when its weights changed since the last preparation: eval() does
-- it eagerly (folding BatchNorm into convolutions, packing weights for the
-- C kernels, fusing activations); a first call does it lazily.
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local pyrepr = require "pthcv.nn.repr"

local M = {}

-- Bumped whenever weights are loaded or a prepared module's structure
-- changes; a module prepared at an older version prepares itself again when
-- called. Modules being built (never prepared) do not bump it, so building a
-- second model does not make the first one prepare again.
local state = { version = 1 }
M.state = state
local function touch() state.version = state.version + 1 end
M.touch = touch
local function touch_if_prepared(self) if rawget(self, "_ready") ~= nil then touch() end end

local Module = { __typename = "Module", __torch_class = "torch.nn.modules.module.Module" }
M.Module = Module

-- Class identity: an instance's metatable is its class, and every class
-- table made by M.class has __is_module_class = true.
local function is_module(x)
  if type(x) ~= "table" then return false end
  local mt = getmetatable(x)
  return type(mt) == "table" and rawget(mt, "__is_module_class") == true
end
M.is_module = is_module
Module.is_module = is_module

-- Assigning a module to a new field registers it as a child (torch's
-- __setattr__); anything else is stored as is.
local function module_newindex(self, k, v)
  if is_module(v) then
    self:add_module(k, v)
  else
    rawset(self, k, v)
  end
end

-- Calling a module runs forward; errors raised inside a child are prefixed
-- with where it sits ("In 3 module of nn.Sequential: ..."), Torch7 style.
local function rethrow(self, ok, ...)
  if ok then return ... end
  local msg = ...
  local ctx = rawget(self, "_ctx")
  if ctx and type(msg) == "string" then msg = ctx .. msg end
  error(msg, 0)
end

local function pack_results(...) return { n = select("#", ...), ... } end

-- self:forward(...), timed when M.profiler is set, errors prefixed by
-- where self sits.
local function run_forward(self, ...)
  local prof = M.profiler
  if prof then
    -- --profile: inclusive wall time per module
    local t0 = prof.now()
    local res = pack_results(rethrow(self, pcall(self.forward, self, ...)))
    prof.record(self, prof.now() - t0)
    return unpack(res, 1, res.n)
  end
  if rawget(self, "_ctx") then
    return rethrow(self, pcall(self.forward, self, ...))
  end
  return self:forward(...)
end

-- M.observer: nil, or function(module, run_forward, ...) that must return
-- run_forward(module, ...)'s results: what sees which module is running
-- (the ONNX tracer names modules in its refusals). Ops themselves are
-- watched at pthcv.tensor.dispatch.
--
-- M.planner: nil, or function(module, run_forward, ...) that must return
-- run_forward(module, ...)'s results: pthcv.nn.plan, which runs a module
-- in eval mode through its fused plan (lua/pthcv/nn/plan).
local function module_call(self, ...)
  if rawget(self, "_ready") ~= state.version then self:prepare_tree() end
  local observer = M.observer
  if observer then return observer(self, run_forward, ...) end
  local planner = M.planner
  if planner and rawget(self, "training") == false then return planner(self, run_forward, ...) end
  return run_forward(self, ...)
end

-- An observer (M.observer) keeping stack[#stack] the module being called,
-- for tools that name where an op runs (the ONNX tracer, pthcv.nn.plan).
function M.stack_observer(stack)
  return function(m, run, ...)
    stack[#stack + 1] = m
    local res = pack_results(pcall(run, m, ...))
    stack[#stack] = nil
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, res.n)
  end
end

local function module_tostring(self) return self:repr() end

-- Metamethods are looked up raw in the metatable, so each class gets its own copy.
local META = { "__newindex", "__call", "__tostring" }
Module.__newindex = module_newindex
Module.__call = module_call
Module.__tostring = module_tostring
Module.__is_module_class = true
Module.__index = Module

-- nn.class(name [, parent [, opts]]) -> a new class; calling the class
-- makes an instance and runs its __init with the arguments. opts.torch_class:
-- the Python class path (for from_module and messages); opts.torch_nn: true
-- for torch.nn's own layers (errors then say "nn.Conv2d").
function M.class(name, parent, opts)
  parent = parent or Module
  opts = opts or {}
  local cls = {}
  for _, k in ipairs(META) do cls[k] = rawget(parent, k) end
  cls.__is_module_class = true
  cls.__typename = name
  cls.__torch_class = opts.torch_class
  cls.__torch_nn = opts.torch_nn or false
  -- containers index numbers too (seq[1]): their __index is a function that
  -- each subclass gets anew from the inherited __index_factory
  cls.__index = parent.__index_factory and parent.__index_factory(cls) or cls
  cls.super = parent
  setmetatable(cls, {
    __index = parent,
    __call = function(c, ...) return c.new(c, ...) end,
    __tostring = function() return "nn." .. name end,
  })
  return cls
end

-- A new, empty instance of class cls (no __init run): what from_module and
-- containers build on.
function Module.blank(cls)
  local self = {
    _child_names = {}, _param_names = {}, _buffer_names = {}, _nonpersistent = {},
    training = true,
  }
  return setmetatable(self, cls)
end

function Module.new(cls, ...)
  local self = Module.blank(cls)
  local init = cls.__init
  if init then init(self, ...) end
  return self
end

function Module:__init() end

-- The type name errors and print use: "nn.Conv2d" for torch.nn's layers,
-- the class name for others.
function Module:typename()
  local cls = getmetatable(self)
  if cls.__torch_nn then return "nn." .. cls.__typename end
  return cls.__typename
end

-- ---- registration ---------------------------------------------------------
local function add_name(list, name)
  for i = 1, #list do if list[i] == name then return end end
  list[#list + 1] = name
end

-- Names are strings, as torch's; numbers become their decimal text.
local function key_name(name)
  if type(name) == "number" then return string.format("%d", name) end
  if type(name) ~= "string" then error("pthcv: module attribute names must be strings", 3) end
  return name
end

function Module:add_module(name, m)
  name = key_name(name)
  if m ~= nil and not is_module(m) then
    error("pthcv: add_module: " .. tostring(m) .. " is not a module", 2)
  end
  add_name(rawget(self, "_child_names"), name)
  rawset(self, name, m)
  if m ~= nil and rawget(m, "_ctx") == nil then
    -- where errors inside m are reported; a module shared by two parents
    -- keeps its first place
    rawset(m, "_ctx", "In " .. name .. " module of " .. self:typename() .. ": ")
  end
  touch_if_prepared(self)
  return m
end

-- A parameter (a float32 Tensor, or nil for torch's None: listed nowhere).
function Module:register_parameter(name, t)
  if t ~= nil and not Tensor.is(t) then error("pthcv: register_parameter: not a tensor", 2) end
  add_name(rawget(self, "_param_names"), name)
  rawset(self, name, t)
  touch_if_prepared(self)
  return t
end

-- A buffer: in state_dict (unless persistent == false), never a parameter.
function Module:register_buffer(name, t, persistent)
  if t ~= nil and not Tensor.is(t) then error("pthcv: register_buffer: not a tensor", 2) end
  add_name(rawget(self, "_buffer_names"), name)
  rawget(self, "_nonpersistent")[name] = (persistent == false) or nil
  rawset(self, name, t)
  touch_if_prepared(self)
  return t
end

-- ---- traversal --------------------------------------------------------------
-- {{name, module}, ...} of the direct children, in registration order.
function Module:named_children()
  local out = {}
  for _, n in ipairs(rawget(self, "_child_names")) do
    local m = rawget(self, n)
    if is_module(m) then out[#out + 1] = { n, m } end
  end
  return out
end

function Module:children()
  local out = {}
  for i, kv in ipairs(self:named_children()) do out[i] = kv[2] end
  return out
end

-- {{"prefix.name", module}, ...}: self first, then depth-first (each module once).
function Module:named_modules(prefix, out, seen)
  out, seen, prefix = out or {}, seen or {}, prefix or ""
  if seen[self] then return out end
  seen[self] = true
  out[#out + 1] = { prefix, self }
  for _, kv in ipairs(self:named_children()) do
    kv[2]:named_modules(prefix == "" and kv[1] or (prefix .. "." .. kv[1]), out, seen)
  end
  return out
end

function Module:modules()
  local out = {}
  for i, kv in ipairs(self:named_modules()) do out[i] = kv[2] end
  return out
end

local function named_tensors(self, field, prefix)
  local out, seen = {}, {}
  for _, kv in ipairs(self:named_modules(prefix)) do
    local p, m = kv[1], kv[2]
    for _, n in ipairs(rawget(m, field)) do
      local t = rawget(m, n)
      if t ~= nil and not seen[t] then
        seen[t] = true
        out[#out + 1] = { p == "" and n or (p .. "." .. n), t }
      end
    end
  end
  return out
end

function Module:named_parameters(prefix) return named_tensors(self, "_param_names", prefix) end
function Module:named_buffers(prefix) return named_tensors(self, "_buffer_names", prefix) end
function Module:parameters()
  local out = {}
  for i, kv in ipairs(self:named_parameters()) do out[i] = kv[2] end
  return out
end

-- The number of parameter elements (as sum(p.numel() for p in m.parameters())).
function Module:num_parameters()
  local n = 0
  for _, p in ipairs(self:parameters()) do n = n + p.numel end
  return n
end

-- (name, tensor, module, local name) for every state_dict entry, in torch's
-- order: a module's parameters, then its persistent buffers, then its
-- children's entries.
local function state_entries(self, prefix, out)
  out = out or {}
  for _, n in ipairs(rawget(self, "_param_names")) do
    local t = rawget(self, n)
    if t ~= nil then out[#out + 1] = { prefix .. n, t, self, n, "parameter" } end
  end
  local np = rawget(self, "_nonpersistent")
  for _, n in ipairs(rawget(self, "_buffer_names")) do
    local t = rawget(self, n)
    if t ~= nil and not np[n] then out[#out + 1] = { prefix .. n, t, self, n, "buffer" } end
  end
  for _, kv in ipairs(self:named_children()) do
    state_entries(kv[2], prefix .. kv[1] .. ".", out)
  end
  return out
end

-- The weights as torch's module.state_dict() names them: an OrderedDict.
function Module:state_dict()
  local d = OrderedDict.new("collections.OrderedDict")
  for _, e in ipairs(state_entries(self, "")) do d[e[1]] = e[2] end
  return d
end

-- ---- load_state_dict: nn/load_state_dict.lua -------------------------------
require("pthcv.nn.load_state_dict").install(Module, state_entries, touch)

-- ---- modes and preparation ---------------------------------------------------
function Module:train(mode)
  if mode == nil then mode = true end
  for _, m in ipairs(self:modules()) do rawset(m, "training", mode) end
  return self
end

-- Inference mode, and the module prepared for it now (see the top).
function Module:eval()
  self:train(false)
  self:prepare_tree()
  return self
end

-- Runs prepare() over the tree, parents before children: a parent that fuses
-- a child (a Conv2d with the BatchNorm after it) claims it first, so the
-- child does not pack weights that nothing will use. It passes the dispatch
-- point as "nn.prepare": what it computes from weights are constants, also
-- when a traced forward prepares a module.
-- Preparing makes every pack anew, so the fusion plans of the tree's
-- modules (pthcv.nn.plan) are dropped with the packs they recorded: the next
-- call records again, whether eval() is called once or again after calls.
local function prepare_tree(_, self)
  local v = state.version
  local list = self:modules()
  for _, m in ipairs(list) do rawset(m, "_plans", nil) end
  -- a quantized model keeps its int8 packs (pthcv.quant): nothing to redo
  if rawget(self, "_quantized") then
    for _, m in ipairs(list) do rawset(m, "_ready", v) end
    return self
  end
  for _, m in ipairs(list) do rawset(m, "_claimed", nil) end
  for _, m in ipairs(list) do
    if type(m.args_record) == "function" then rawset(m, "_args", m:args_record()) end
    local prep = m.prepare
    if prep then prep(m) end
  end
  for _, m in ipairs(list) do rawset(m, "_ready", v) end
  return self
end
function Module:prepare_tree() return D.call("nn.prepare", nil, prepare_tree, self) end

-- A layer whose op arguments do not depend on its input defines
-- args_record(), which resolves its attributes into the op's record
-- (pthcv.nn.args); preparing keeps it, and forward runs the op with
-- self:op_args() (resolved anew when forward is called unprepared).
function Module:op_args() return rawget(self, "_args") or self:args_record() end

-- module:plan(false): calls of this module run its forward as written, not
-- through a fused plan (pthcv.nn.plan); module:plan(true) (the default)
-- plans them again.
function Module:plan(on)
  rawset(self, "_plan_off", on == false or nil)
  rawset(self, "_plans", nil)
  return self
end

-- A parent's prepare() calls this on the children it runs itself (fused).
-- module:quantize{calibration = ...}: int8 inference (pthcv.quant, docs/nn.md)
function Module:quantize(opts) return require("pthcv.quant").quantize(self, opts) end

function Module:claim() rawset(self, "_claimed", true) end
function Module:is_claimed() return rawget(self, "_claimed") == true end

function Module:forward()
  error("pthcv: " .. self:typename() .. " has no forward", 2)
end

-- fn(module) for every module, children first (torch's apply).
function Module:apply(fn)
  for _, c in ipairs(self:children()) do c:apply(fn) end
  fn(self)
  return self
end

-- module:half(): floating parameters and buffers kept as float16 (half the
-- memory of the weights themselves); the kernels still compute in float32:
-- convolution and linear packs are made from float32 copies converted on
-- the fly (F.f32), which are dropped once packed. module:float() converts
-- back. Either prepares the module again on its next call.
local function convert_floats(self, dtype)
  for _, m in ipairs(self:modules()) do
    for _, field in ipairs { "_param_names", "_buffer_names" } do
      for _, n in ipairs(rawget(m, field)) do
        local t = rawget(m, n)
        if t ~= nil and t.is_floating_point and t.dtype ~= dtype then rawset(m, n, t:to(dtype)) end
      end
    end
  end
  touch()
  return self
end
function Module:half() return convert_floats(self, "float16") end
function Module:float() return convert_floats(self, "float32") end

-- module:export_onnx(path [, {input = {1, 3, 224, 224}}]): an ONNX file
-- for OpenCV's cv::dnn, traced from one forward pass (lua/pthcv/export/onnx).
function Module:export_onnx(path, opts) return require("pthcv.export.onnx").export(self, path, opts) end

-- ---- print ----------------------------------------------------------------
function Module:extra_repr() return "" end

-- torch's repr: "Name(extra)" or "Name(\n  (child): ...\n)" (repr.lua).
function Module:repr() return pyrepr.module(self) end

function Module:repr_name() return getmetatable(self).__typename end

-- Python-style formatting helpers for extra_repr.
M.py = pyrepr

return M
