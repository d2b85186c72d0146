-- lua/pthcv/reader/state_dict.lua: naming the tensors of a loaded tree.
--
-- named_tensors(root): every tensor reachable from the root, depth-first in
-- file order, named by its path: dict keys and list/tuple indices (0-based)
-- joined by ".", and inside torch.nn.Module objects (whole-model pickles) and
-- TorchScript modules the names model.state_dict() gives.
--
-- state_dict(root): the model weights, found in the common checkpoint layouts,
-- with a DataParallel "module." prefix stripped.
--
-- Both walk with an explicit stack (no recursion: depth comes from the file).
-- A container met twice on one path (a cycle) is not entered again; one
-- shared by two paths is listed under both, as torch's state_dict does.
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"

local M = {}
local List, Tuple, Set, Object = values.List, values.Tuple, values.Set, values.Object
local is_tensor, is_dict = Tensor.is, OrderedDict.is

-- Visits at most this many nodes per walk: shared references can make the
-- number of paths grow exponentially with the file's size.
M.max_visits = 10000000

local function is_object(x) return type(x) == "table" and getmetatable(x) == Object end

-- The attribute dict of an object: its BUILD state when that is a dict, or
-- the dict of a (dict, slots) state tuple.
local function object_dict(o)
  local s = o.state
  if is_dict(s) then return s end
  if type(s) == "table" and getmetatable(s) == Tuple and is_dict(s[1]) then return s[1] end
  return nil
end
M.object_dict = object_dict

-- A torch.nn.Module pickled whole: its __dict__ has _parameters/_modules.
local function is_nn_module(x)
  if not is_object(x) then return false end
  local d = object_dict(x)
  return d ~= nil and (OrderedDict.has(d, "_modules") or OrderedDict.has(d, "_parameters"))
end

-- A TorchScript module: an object of class __torch__.* with attributes.
local function is_script_module(x)
  return is_object(x) and type(x.class) == "string" and x.class:sub(1, 10) == "__torch__."
         and object_dict(x) ~= nil
end

function M.is_module(x) return is_nn_module(x) or is_script_module(x) end

-- A quantized convolution of torch.ao.nn.quantized (Conv2d, ConvReLU2d...)
-- pickles its __getstate__: a tuple of 15 whose 11th to 14th values are
-- weight, bias, scale and zero_point (quant/torch_module.lua reads it too).
local QCONV_STATE = 15
local function is_quantized_conv(x)
  if not is_object(x) or type(x.class) ~= "string" or not x.class:find("quantized", 1, true) then return false end
  local s = x.state
  return type(s) == "table" and getmetatable(s) == Tuple and #s == QCONV_STATE and is_tensor(s[11])
         and type(s[13]) == "number" and type(s[14]) == "number"
end

-- The quantized modules whose _save_to_state_dict adds their output scale
-- and zero point (plain attributes) as tensors: Linear (LinearReLU and the
-- dynamic Linear inherit it) and QFunctional. Hardswish and the other
-- quantized activations keep theirs out, as torch does.
local SAVES_SCALE = { Linear = true, LinearReLU = true, QFunctional = true }
local function saves_scale(class)
  return type(class) == "string" and class:find("quantized", 1, true) ~= nil
         and SAVES_SCALE[class:match("([%w_]+)$")] == true
end

local function scalar(v, dtype) return Tensor.from_table({ v }, dtype):reshape({}) end

local function join(prefix, name)
  if prefix == "" then return name end
  return prefix .. "." .. name
end

local function key_string(k)
  if type(k) == "string" then return k end
  if type(k) == "number" then
    if k == math.floor(k) and math.abs(k) < 2 ^ 53 then return string.format("%d", k) end
    return tostring(k)
  end
  if k == true then return "True" elseif k == false then return "False" end
  if k == values.None then return "None" end
  return tostring(k)
end
M.key_string = key_string

local function set_members(s)
  local m = {}
  if type(s) == "table" then
    for i = 1, #s do m[s[i]] = true end
  end
  return m
end

-- Children of a node as a list of {name, value}, in the order torch lists
-- them. `modules_only`: outside modules, only containers that hold weights.
local function children(x)
  local out = {}
  if is_dict(x) then
    for _, kv in ipairs(OrderedDict.items(x)) do out[#out + 1] = { key_string(kv[1]), kv[2] } end
  elseif type(x) == "table" and (getmetatable(x) == List or getmetatable(x) == Tuple
                                  or getmetatable(x) == Set) then
    for i = 1, #x do out[#out + 1] = { string.format("%d", i - 1), x[i] } end
  elseif is_nn_module(x) then
    local d = object_dict(x)
    local params, buffers, modules = d["_parameters"], d["_buffers"], d["_modules"]
    local skip = set_members(d["_non_persistent_buffers_set"])
    if is_dict(params) then
      for _, kv in ipairs(OrderedDict.items(params)) do
        if is_tensor(kv[2]) then out[#out + 1] = { key_string(kv[1]), kv[2] } end
      end
    end
    if is_dict(buffers) then
      for _, kv in ipairs(OrderedDict.items(buffers)) do
        if is_tensor(kv[2]) and not skip[kv[1]] then out[#out + 1] = { key_string(kv[1]), kv[2] } end
      end
    end
    if saves_scale(x.class) and type(d["scale"]) == "number" and type(d["zero_point"]) == "number" then
      out[#out + 1] = { "scale", scalar(d["scale"], "float32") }       -- torch.tensor(self.scale)
      out[#out + 1] = { "zero_point", scalar(d["zero_point"], "int64") }
    end
    local packed = d["_packed_params"]   -- a LinearPackedParams': ((weight, bias), class)
    if is_object(packed) and type(packed.state) == "table" and getmetatable(packed.state) == Tuple
       and type(packed.state[1]) == "table" and getmetatable(packed.state[1]) == Tuple then
      out[#out + 1] = { "_packed_params", packed.state[1] }
    end
    if is_dict(modules) then
      for _, kv in ipairs(OrderedDict.items(modules)) do
        if M.is_module(kv[2]) or is_quantized_conv(kv[2]) then out[#out + 1] = { key_string(kv[1]), kv[2] } end
      end
    end
  elseif is_quantized_conv(x) then
    local s = x.state
    out[#out + 1] = { "weight", s[11] }
    if is_tensor(s[12]) then out[#out + 1] = { "bias", s[12] } end
    out[#out + 1] = { "scale", scalar(s[13], "float32") }
    out[#out + 1] = { "zero_point", scalar(s[14], "int64") }
  elseif is_script_module(x) then
    -- attributes: tensors are parameters and buffers, __torch__ objects submodules
    local d = object_dict(x)
    for _, kv in ipairs(OrderedDict.items(d)) do
      local v = kv[2]
      if is_tensor(v) then out[#out + 1] = { key_string(kv[1]), v } end
    end
    for _, kv in ipairs(OrderedDict.items(d)) do
      local v = kv[2]
      if is_script_module(v) then out[#out + 1] = { key_string(kv[1]), v } end
    end
  elseif is_object(x) then
    -- an inert object: its attributes (state), then its list or dict items
    local d = object_dict(x)
    if d then
      for _, kv in ipairs(OrderedDict.items(d)) do out[#out + 1] = { key_string(kv[1]), kv[2] } end
    elseif x.state ~= nil then
      out[#out + 1] = { nil, x.state } -- a non-dict state: same path
    end
    local items = x.items
    if is_dict(items) then
      for _, kv in ipairs(OrderedDict.items(items)) do out[#out + 1] = { key_string(kv[1]), kv[2] } end
    elseif type(items) == "table" then
      for i = 1, #items do out[#out + 1] = { string.format("%d", i - 1), items[i] } end
    end
  end
  return out
end

local function is_container(x)
  return type(x) == "table" and x ~= values.None and getmetatable(x) ~= values.Bytes
end

-- Calls emit(name, tensor) for every tensor under `root`, depth-first in
-- file order. `prefix` names the root ("" by default).
function M.walk(root, emit, prefix)
  local stack = { { root, prefix or "" } }
  local onpath = {}
  local visits = 0
  while #stack > 0 do
    local top = table.remove(stack)
    local x, name = top[1], top[2]
    if top.leave then
      onpath[x] = nil
    elseif is_tensor(x) then
      emit(name, x)
    elseif is_container(x) and not onpath[x] then
      visits = visits + 1
      if visits > M.max_visits then
        error("pthcv: too many paths through shared values to list (more than "
              .. M.max_visits .. ")", 0)
      end
      local kids = children(x)
      if #kids > 0 then
        onpath[x] = true
        stack[#stack + 1] = { x, leave = true }
        for i = #kids, 1, -1 do
          local k = kids[i]
          stack[#stack + 1] = { k[2], k[1] and join(name, k[1]) or name }
        end
      end
    end
  end
end

-- {{name, tensor}, ...} in order
function M.named_tensors(root)
  local out = {}
  M.walk(root, function(name, t) out[#out + 1] = { name, t } end)
  return out
end

-- ---- state_dict ------------------------------------------------------------
M.checkpoint_keys = { "state_dict", "model_state_dict", "model", "net", "network",
                      "ema", "model_ema", "state", "weights", "params" }

-- A dict of weights: at least one tensor value, and no nested dict or module.
local function is_weights_dict(x)
  if not is_dict(x) then return false end
  local any = false
  for _, v in pairs(x) do
    if is_tensor(v) then any = true
    elseif is_dict(v) or M.is_module(v) then return false end
  end
  return any
end
M.is_weights_dict = is_weights_dict

local function strip_module_prefix(list)
  if #list == 0 then return list end
  for _, kv in ipairs(list) do
    if kv[1]:sub(1, 7) ~= "module." then return list end
  end
  for _, kv in ipairs(list) do kv[1] = kv[1]:sub(8) end
  return list
end

local function weights_of(x)
  if is_weights_dict(x) then
    local out = {}
    for _, kv in ipairs(OrderedDict.items(x)) do
      local v = kv[2]
      if is_tensor(v) then
        out[#out + 1] = { key_string(kv[1]), v }
      elseif type(v) == "table" and getmetatable(v) == Tuple then
        -- a tuple of tensors (a quantized Linear's _packed_params: (weight, bias)) as NAME.0, NAME.1
        for i = 1, #v do
          if is_tensor(v[i]) then out[#out + 1] = { key_string(kv[1]) .. "." .. (i - 1), v[i] } end
        end
      end
    end
    return out
  end
  if M.is_module(x) then return M.named_tensors(x) end
  return nil
end

-- The list {{name, tensor}, ...} of model weights in `root`, or nil and why.
function M.find(root)
  local found = weights_of(root)
  if found then return strip_module_prefix(found), "" end
  if is_dict(root) then
    for _, k in ipairs(M.checkpoint_keys) do
      local v = root[k]
      if v ~= nil then
        found = weights_of(v)
        if found then return strip_module_prefix(found), k end
      end
    end
    -- one level further: {"model": {"state_dict": ...}}
    for _, k in ipairs(M.checkpoint_keys) do
      local v = root[k]
      if is_dict(v) then
        for _, k2 in ipairs(M.checkpoint_keys) do
          local v2 = v[k2]
          if v2 ~= nil then
            found = weights_of(v2)
            if found then return strip_module_prefix(found), k .. "." .. k2 end
          end
        end
      end
    end
  end
  return nil
end

-- An OrderedDict name -> Tensor of the model weights in `root`.
-- What the root is, for the message when no weights are found: its type
-- and its first keys (escaped: they come from the file).
local function describe(root)
  local escape = require("pthcv.core").escape
  if is_dict(root) then
    local keys = {}
    for k in pairs(root) do
      if #keys == 8 then keys[#keys + 1] = "..."; break end
      keys[#keys + 1] = "'" .. escape(k, 60) .. "'"
    end
    return #keys == 0 and "an empty dict" or "a dict with keys " .. table.concat(keys, ", ")
  end
  if is_object(root) then return "an object of class " .. escape(root.class) end
  return "a " .. require("pthcv").type(root)
end

function M.state_dict(root, where)
  local list, key = M.find(root)
  if not list then
    error("pthcv: no model weights found" .. (where and (" in " .. where) or "")
          .. ": the root is " .. describe(root) .. ", not a dict of tensors nor a module, and has none of the keys "
          .. table.concat(M.checkpoint_keys, ", "), 0)
  end
  local d = OrderedDict.new("collections.OrderedDict")
  for _, kv in ipairs(list) do d[kv[1]] = kv[2] end
  OrderedDict.attrs(d).found_at = key
  return d
end

return M
