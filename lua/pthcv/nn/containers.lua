-- lua/pthcv/nn/containers.lua: Sequential, ModuleList, ModuleDict.
--
--   nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())          -- children "0", "1"
--   nn.Sequential{ {"conv", nn.Conv2d(3, 8, 3)}, {"relu", nn.ReLU()} }  -- named
--   seq[1]  -- the first child: numbers index from 1, as Lua tables do;
--   seq["0"] -- the same child by its torch name
--
-- When prepared (eval() or a first call), a Sequential plans its run: a
-- Conv2d followed by a BatchNorm2d and/or an activation layer becomes one
-- fused step (BatchNorm folded into the weights, activation in the kernel),
-- a Linear followed by an activation likewise, and Dropout/Identity are
-- skipped. The children stay as they are: state_dict and print are torch's.
-- (pthcv.nn.plan would fold the same ops from a recorded pass. This eager
-- fusion stays because what runs without a plan depends on it: int8
-- quantization calibrates and replaces the packs it made, BatchNorm folded
-- in (pthcv.quant), the detection backbones' Getter runs its steps, FPN and
-- inverted-residual blocks pass a residual to the last step's kernel
-- (accepts_residual), and a pass the plan does not run (the first,
-- recorded one; PTHCV_PLAN=0; an ONNX trace) keeps its fused kernels.)
local release = require "pthcv.nn.release"
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"

local class, is_module = base.class, base.is_module
local M = {}

-- The __index of containers: numbers pick the n-th child (negative from the
-- end), anything else the class's methods.
local function index_factory(cls)
  return function(self, k)
    if type(k) == "number" then
      local names = rawget(self, "_child_names")
      if k < 0 then k = #names + 1 + k end
      local n = names[k]
      return n and rawget(self, n)
    end
    return cls[k]
  end
end

local function container(name, torch_name)
  local cls = class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules.container." .. (torch_name or name) })
  cls.__index_factory = index_factory
  cls.__index = index_factory(cls)
  return cls
end

-- {{name, module}, ...} given as modules, or as one list of pairs.
local function collect(fname, ...)
  local n = select("#", ...)
  local first = ...
  if n == 1 and type(first) == "table" and not is_module(first) then
    local out = {}
    if type(first[1]) == "table" and not is_module(first[1]) then
      for _, kv in ipairs(first) do out[#out + 1] = { kv[1], kv[2] } end
    else
      for i, m in ipairs(first) do out[#out + 1] = { i - 1, m } end
    end
    return out
  end
  local out = {}
  for i = 1, n do
    local m = select(i, ...)
    if not is_module(m) then error("pthcv: " .. fname .. ": argument " .. i .. " is not a module", 4) end
    out[#out + 1] = { i - 1, m }
  end
  return out
end

-- ---- Sequential ------------------------------------------------------------------
local Sequential = container("Sequential")
M.Sequential = Sequential

function Sequential:__init(...)
  for _, kv in ipairs(collect("Sequential", ...)) do self:add_module(kv[1], kv[2]) end
end

function Sequential:len() return #self:named_children() end
-- seq:append(m) (torch) / seq:add(m) (Torch7): adds m under the next number
function Sequential:append(m)
  self:add_module(#rawget(self, "_child_names"), m)
  return self
end
Sequential.add = Sequential.append

local function is_a(m, name)
  local cls = getmetatable(m)
  while cls do
    if rawget(cls, "__typename") == name and rawget(cls, "__torch_nn") then return true end
    cls = rawget(cls, "super")
  end
  return false
end
M.is_a = is_a

-- One step of a planned run: a fused convolution or linear layer, or a
-- child module called as is.
local function fused_conv_step(conv, bn, actm)
  return { kind = "conv", pack = conv:make_pack(bn, actm and actm:act_spec()), module = conv,
           has_act = actm ~= nil, ctx = rawget(conv, "_ctx") or "",
           label = (bn and "+bn" or "") .. (actm and ("+" .. actm:repr_name()) or "") }
end

function Sequential:prepare()
  local steps = {}
  local kids = self:children()
  local i = 1
  while i <= #kids do
    local m = kids[i]
    local step
    if is_a(m, "Conv2d") then
      local j, bn, actm = i + 1, nil, nil
      if kids[j] and is_a(kids[j], "BatchNorm2d") and kids[j]:can_fold() then bn = kids[j]; j = j + 1 end
      if kids[j] and kids[j].act_spec then actm = kids[j]; j = j + 1 end
      if bn or actm then
        m:claim()
        step = fused_conv_step(m, bn, actm)
        i = j
      end
    elseif is_a(m, "Linear") and kids[i + 1] and kids[i + 1].act_spec then
      local actm = kids[i + 1]
      m:claim()
      step = { kind = "linear", pack = m:make_pack(actm:act_spec()), module = m, has_act = true,
               ctx = rawget(m, "_ctx") or "", label = "+" .. actm:repr_name() }
      i = i + 2
    end
    if not step then
      if not m.is_identity and not is_a(m, "Identity") then steps[#steps + 1] = { kind = "module", module = m } end
      i = i + 1
    end
    if step then steps[#steps + 1] = step end
  end
  self._steps = steps
end

-- Whether the last step can add a residual input inside its kernel (a
-- convolution with no activation after it, or a nested container that can).
function Sequential:accepts_residual()
  local steps = rawget(self, "_steps")
  local last = steps and steps[#steps]
  if not last then return false end
  if last.kind == "conv" then return not last.has_act end
  if last.kind == "module" then
    if is_a(last.module, "Conv2d") then return true end
    return last.module.accepts_residual ~= nil and last.module:accepts_residual()
  end
  return false
end

-- Runs a step with the kernel's error prefixed by where it happened.
local function run_fused(st, x, residual)
  local ok, y
  if st.kind == "conv" then ok, y = pcall(F.conv2d_packed, st.pack, x, residual)
  else ok, y = pcall(F.linear_packed, st.pack, x) end
  if not ok then error(st.ctx .. tostring(y), 0) end
  return y
end

-- y = seq(x); with residual (pthcv's fused blocks only): y = seq(x) + residual,
-- added in the last step's kernel (check accepts_residual first).
-- A module whose forward keeps no reference to its input or output: torch.nn's
-- own layers and classes that set keeps_no_tensors (the zoo's blocks); its
-- class itself must say so (a subclass may override forward).
local function keeps_no_tensors(m)
  local cls = getmetatable(m)
  return cls ~= nil and (rawget(cls, "__torch_nn") == true or rawget(cls, "keeps_no_tensors") == true)
end

function Sequential:forward(x, residual)
  local steps = rawget(self, "_steps")
  local n = #steps
  local prof = base.profiler
  -- owned: x was made by a step of this call and nobody else holds it, so it
  -- is freed as soon as the next step has consumed it
  local owned = false
  for i = 1, n do
    local st = steps[i]
    local r = (i == n) and residual or nil
    local t0 = prof and prof.now()
    local y, pure
    if st.kind == "module" then
      local m = st.module
      if r ~= nil then y = m(x, r) else y = m(x) end
      pure = keeps_no_tensors(m)
    else
      y = run_fused(st, x, r)
      pure = true
      if prof then prof.record(st.module, prof.now() - t0, st.label) end
    end
    if rawequal(y, x) then
      owned = owned and pure
    else
      if owned and pure then release(x) end
      x, owned = y, pure
    end
  end
  if n == 0 and residual ~= nil then x = F.add(x, residual) end
  return x
end

-- ---- ModuleList ----------------------------------------------------------------------
-- nn.ModuleList({m1, m2, ...}): holds modules (no forward); ml[i], ml:len(),
-- for i, m in ml:ipairs() do ... end
local ModuleList = container("ModuleList")
M.ModuleList = ModuleList

function ModuleList:__init(modules)
  if modules then for _, m in ipairs(modules) do self:append(m) end end
end
function ModuleList:append(m)
  self:add_module(#rawget(self, "_child_names"), m)
  return self
end
function ModuleList:extend(list)
  for _, m in ipairs(list) do self:append(m) end
  return self
end
function ModuleList:len() return #self:named_children() end
function ModuleList:ipairs() return ipairs(self:children()) end
function ModuleList:forward() error("pthcv: ModuleList has no forward: call its modules", 2) end

-- ---- ModuleDict ------------------------------------------------------------------------
-- nn.ModuleDict({ {"name", m}, ... }) keeps that order; a plain table
-- {name = m} is taken in sorted key order (Lua tables have none).
local ModuleDict = container("ModuleDict")
M.ModuleDict = ModuleDict

function ModuleDict:__init(modules)
  if modules == nil then return end
  if type(modules[1]) == "table" and not is_module(modules[1]) then
    for _, kv in ipairs(modules) do self:add_module(kv[1], kv[2]) end
  else
    local keys = {}
    for k in next, modules do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do self:add_module(k, modules[k]) end
  end
end
function ModuleDict:keys()
  local out = {}
  for i, kv in ipairs(self:named_children()) do out[i] = kv[1] end
  return out
end
function ModuleDict:items() return self:named_children() end
function ModuleDict:len() return #self:named_children() end
function ModuleDict:forward() error("pthcv: ModuleDict has no forward: call its modules", 2) end

return M
