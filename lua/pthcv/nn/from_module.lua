-- lua/pthcv/nn/from_module.lua: nn.from_module(obj), a runnable module from
-- a whole-model pickle (torch.save(model)) that pthcv.load read as inert
-- Objects.
--
--   local root = pthcv.load("model.pth")      -- Object(torch.nn.modules.container.Sequential)
--   local m = pthcv.nn.from_module(root):eval()
--
-- Every object in the tree must be of a class pthcv knows: torch.nn's
-- layers and containers, or the zoo's torchvision classes (ResNet,
-- Bottleneck, InvertedResidual, Conv2dNormActivation, ...). Nothing is
-- constructed through __init: each Lua module is made blank and given the
-- pickled attributes (in_channels, kernel_size, stride, eps, ...: the Lua
-- classes use torch's attribute names), parameters, buffers and children,
-- so any hyper-parameters torch saved are honoured. opts.classes maps more
-- Python class paths to Lua classes (nn.class) for custom modules;
-- opts.settings(obj) may give hyper-parameters the tree lacks (a
-- TorchScript archive keeps them in its code: pthcv.jit.to_nn).
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local sdmod = require "pthcv.reader.state_dict"
local base = require "pthcv.nn.module"

local M = {}

-- Python class path -> Lua class, from every loaded class that declares one.
local registry
local function known_classes()
  if registry then return registry end
  registry = {}
  local nn = require "pthcv.nn"
  for _, cls in pairs(nn) do
    if type(cls) == "table" and rawget(cls, "__is_module_class") and rawget(cls, "__torch_class") then
      registry[cls.__torch_class] = cls
    end
  end
  local models = require "pthcv.models"
  for _, fam in ipairs(models.families) do
    for _, cls in pairs(require("pthcv.models." .. fam)) do
      if type(cls) == "table" and rawget(cls, "__is_module_class") and rawget(cls, "__torch_class") then
        registry[cls.__torch_class] = cls
      end
    end
  end
  -- torch.nn classes pickled under their defining module's older names
  registry["torchvision.ops.misc.ConvNormActivation"] = registry["torchvision.ops.misc.Conv2dNormActivation"]
  return registry
end

-- A pickled attribute as a plain Lua value: tuples and lists become arrays,
-- None nil (inside arrays: values.None, which the layers understand).
local function plain(v, depth)
  depth = depth or 0
  if v == values.None then return nil end
  local t = type(v)
  if t ~= "table" then return v end
  local mt = getmetatable(v)
  if (mt == values.Tuple or mt == values.List) and depth < 8 then
    local out = {}
    for i = 1, #v do
      local x = plain(v[i], depth + 1)
      if x == nil then x = values.None end
      out[i] = x
    end
    return out
  end
  return v
end

-- TorchScript module trees (pthcv.load of a torch.jit.save archive) name
-- classes __torch__.<path>, with ___torch_mangle_N when torch compiled a
-- class more than once, and keep attributes in the object itself: the
-- class path without them, and the dict as a pickled module's. Their
-- tensors are parameters but for torch.nn's buffers (BatchNorm's).
local SCRIPT_BUFFERS = { running_mean = true, running_var = true, num_batches_tracked = true }
local function script_class(name) return (name:gsub("^__torch__%.", ""):gsub("%.___torch_mangle_%d+", "")) end
local function script_dict(d)
  local out = OrderedDict.new()
  local params, buffers, mods = OrderedDict.new(), OrderedDict.new(), OrderedDict.new()
  for _, kv in ipairs(OrderedDict.items(d)) do
    local k, v = kv[1], kv[2]
    if Tensor.is(v) then (SCRIPT_BUFFERS[k] and buffers or params)[k] = v
    elseif sdmod.is_module(v) then mods[k] = v
    else out[k] = v end
  end
  out._parameters, out._buffers, out._modules = params, buffers, mods
  return out
end

local function fail(path, msg)
  error("pthcv: from_module: " .. (path == "" and "(root)" or path) .. ": " .. msg, 0)
end

local function convert(obj, path, classes, settings)
  if not sdmod.is_module(obj) then
    fail(path, "not a pickled torch.nn.Module (" .. tostring(obj) .. ")")
  end
  local script = type(obj.class) == "string" and obj.class:sub(1, 10) == "__torch__."
  local cname = script and script_class(obj.class) or obj.class
  local cls = classes[obj.class] or classes[cname] or known_classes()[cname]
  if not cls then
    fail(path, "class " .. tostring(obj.class) .. " is not a torch.nn layer or a pthcv.models class; "
               .. "define it with nn.class and pass it as opts.classes[\"" .. tostring(obj.class) .. "\"]")
  end
  -- torch.nn's layers keep their settings as TorchScript class constants,
  -- in the archive's code: without opts.settings they would be missing
  if script and not settings and cname:match("^torch%.nn%.modules%.") and not cname:match("%.container%.") then
    fail(path, "class " .. obj.class .. " is a TorchScript module: its settings (kernel_size, stride, eps, ...) "
               .. "are in the archive's code, not in its tree; pthcv.jit.to_nn(path) reads them")
  end
  local d = sdmod.object_dict(obj)
  if script and not OrderedDict.has(d, "_modules") then d = script_dict(d) end
  local m = base.Module.blank(cls)
  -- hyper-parameters: every public, plain attribute
  for _, kv in ipairs(OrderedDict.items(d)) do
    local k, v = kv[1], kv[2]
    if type(k) == "string" and k:sub(1, 1) ~= "_" then
      local pv = plain(v)
      local tv = type(pv)
      if tv == "number" or tv == "string" or tv == "boolean" or (tv == "table" and getmetatable(pv) == nil) then
        rawset(m, k, pv)
      end
    end
  end
  for k, v in pairs(settings and settings(obj) or {}) do if rawget(m, k) == nil then rawset(m, k, v) end end
  if d["momentum"] == values.None and m.num_features then rawset(m, "momentum", false) end
  local function tensors(field, register)
    local t = d[field]
    if OrderedDict.is(t) then
      for _, kv in ipairs(OrderedDict.items(t)) do
        local v = kv[2]
        if v == values.None then v = nil end
        if v ~= nil and not Tensor.is(v) then fail(path, field .. "." .. tostring(kv[1]) .. " is not a tensor") end
        if v ~= nil and v.is_floating_point and v.dtype ~= "float32" then v = v:float() end
        register(kv[1], v)
      end
    end
  end
  local nonpersistent = {}
  local np = d["_non_persistent_buffers_set"]
  if type(np) == "table" then for i = 1, #np do nonpersistent[np[i]] = true end end
  tensors("_parameters", function(k, v) m:register_parameter(k, v) end)
  tensors("_buffers", function(k, v) m:register_buffer(k, v, not nonpersistent[k]) end)
  local mods = d["_modules"]
  if OrderedDict.is(mods) then
    for _, kv in ipairs(OrderedDict.items(mods)) do
      local name, child = kv[1], kv[2]
      if child ~= values.None then
        m:add_module(name, convert(child, path == "" and name or (path .. "." .. name), classes, settings))
      end
    end
  end
  -- layers whose forward reads attributes torch derives in __init
  if cls.__from_module then cls.__from_module(m) end
  return m
end

function M.convert(obj, opts)
  local classes = (opts and opts.classes) or {}
  local m = convert(obj, "", classes, opts and opts.settings)
  base.touch()
  return m
end

return M
