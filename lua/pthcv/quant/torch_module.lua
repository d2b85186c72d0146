-- lua/pthcv/quant/torch_module.lua: a quantized torch model pickled whole
-- (torch.save(model)) read as the flat names load_torch reads from a
-- state_dict. A whole model is needed where the state_dict loses what the
-- model computes with: torch 1.13's quantized Hardswish keeps its output
-- scale and zero point as plain attributes, outside the state_dict (so
-- torchvision's quantized MobileNetV3 runs only from the whole model).
--
-- Nothing is executed: the pickle's objects are walked as data
-- (pthcv.reader). What each module gives, under its path P:
--   * its _parameters and _buffers, as P.NAME (the QuantStub's scale and
--     zero_point are buffers);
--   * a quantized convolution (torch.ao.nn.quantized Conv2d, ConvReLU2d)
--     pickles its __getstate__, a tuple of 15: weight and bias (11th and
--     12th), scale, zero_point: P.weight, P.bias, P.scale, P.zero_point;
--   * numbers in its attributes scale and zero_point (quantized Linear,
--     Hardswish, QFunctional): P.scale, P.zero_point;
--   * a torch.ScriptObject in its attribute _packed_params (a quantized
--     Linear's LinearPackedParams) with a state ((weight, bias), class):
--     P._packed_params.0 and P._packed_params.1.
local OrderedDict = require "pthcv.reader.odict"
local SD = require "pthcv.reader.state_dict"
local Tensor = require "pthcv.tensor"
local values = require "pthcv.reader.values"

local M = {}

-- modules nested deeper than this are refused (the walk is iterative, the
-- limit only bounds what a file can ask for)
M.max_depth = 64

local CONV_STATE = 15

function M.is_module(x) return SD.is_module(x) end

local function fail(path, msg)
  error("pthcv: load_torch: module " .. (path == "" and "(the model)" or path) .. ": " .. msg, 0)
end

local function is_tuple(x) return type(x) == "table" and getmetatable(x) == values.Tuple end

-- the names one module gives (see above); children pushed on stack
local function visit(o, path, depth, dict, stack)
  local function put(name, v) dict[path == "" and name or path .. "." .. name] = v end
  local class = tostring(o.class)
  if is_tuple(o.state) then
    local s = o.state
    if #s ~= CONV_STATE or not class:find("quantized", 1, true) or not Tensor.is(s[11])
       or type(s[13]) ~= "number" or type(s[14]) ~= "number" then
      fail(path, "a " .. class .. " pickled as a tuple of " .. #s .. " values, not a quantized convolution's "
           .. CONV_STATE)
    end
    put("weight", s[11])
    if Tensor.is(s[12]) then put("bias", s[12]) end
    put("scale", s[13])
    put("zero_point", s[14])
    return
  end
  local d = SD.object_dict(o)
  if not d then fail(path, "a " .. class .. " without an attribute dict") end
  for _, group in ipairs({ "_parameters", "_buffers" }) do
    local g = OrderedDict.get(d, group)
    if OrderedDict.is(g) then
      for _, kv in ipairs(g:items()) do if Tensor.is(kv[2]) then put(kv[1], kv[2]) end end
    end
  end
  for _, name in ipairs({ "scale", "zero_point" }) do
    local v = OrderedDict.get(d, name)
    if type(v) == "number" then put(name, v) end
  end
  local packed = OrderedDict.get(d, "_packed_params")
  if type(packed) == "table" and getmetatable(packed) == values.Object then
    -- state: ((weight, bias), "__torch__.torch.classes.quantized.LinearPackedParamsBase")
    local s = packed.state
    local wb = is_tuple(s) and s[1]
    if not is_tuple(wb) or not Tensor.is(wb[1]) or type(s[2]) ~= "string"
       or not s[2]:find("LinearPackedParamsBase", 1, true) then
      fail(path, "_packed_params (" .. tostring(packed.class) .. ") is not a quantized linear layer's "
           .. "((weight, bias), LinearPackedParamsBase)")
    end
    put("_packed_params.0", wb[1])
    if Tensor.is(wb[2]) then put("_packed_params.1", wb[2]) end
  end
  local kids = OrderedDict.get(d, "_modules")
  if OrderedDict.is(kids) then
    local items = kids:items()
    for i = #items, 1, -1 do
      local name, child = items[i][1], items[i][2]
      if SD.is_module(child) or (getmetatable(child) == values.Object and is_tuple(child.state)) then
        stack[#stack + 1] = { child, path == "" and name or path .. "." .. name, depth + 1 }
      elseif child ~= nil and tostring(child) ~= "None" then
        fail(path, "child " .. tostring(name) .. " is not a module")
      end
    end
  end
end

-- flatten(model object) -> { name = Tensor or number }
function M.flatten(root)
  local dict, stack = {}, { { root, "", 0 } }
  while #stack > 0 do
    local top = table.remove(stack)
    if top[3] > M.max_depth then fail(top[2], "modules nested deeper than " .. M.max_depth) end
    visit(top[1], top[2], top[3], dict, stack)
  end
  return dict
end

return M
