-- lua/pthcv/quant/torch.lua: torch's own int8 models (torch.ao.quantization,
-- torchvision.models.quantization) run by pthcv: pthcv.quant.load_torch(model,
-- state_dict) puts the int8 weights and the scales of a quantized state_dict
-- into a pthcv.models model of the same architecture (built with its
-- default, unused float weights), which then computes as torch's
-- quantized model does:
--   * QuantStub: the input quantized with quant.scale / quant.zero_point;
--   * every convolution (torch fused Conv+BN+ReLU into one: P.weight qint8,
--     P.bias, P.scale, P.zero_point) an int8 convolution whose output is
--     rounded to its own scale; ReLU6 is ReLU, as torchvision's quantizable
--     models replace it;
--   * a residual add (FloatFunctional add / add_relu after the block's last
--     convolution: B.add_relu, B.skip_add_relu or B.skip_add) rounded to the
--     add's scale, after the convolution's;
--   * pooling keeps its input's scale (as torch's quantized pooling);
--   * the last linear layer (P._packed_params._packed_params = (weight,
--     bias), P.scale, P.zero_point) rounded to its scale, then DeQuantStub;
--   * MobileNetV3's Hardswish (its own scale), squeeze-excitation and
--     quantized average pools: quant/torch_ops.lua. torch keeps Hardswish's
--     scale out of the state_dict, so MobileNetV3 loads from the model
--     pickled whole (torch.save(model): quant/torch_module.lua).
-- Each step rounds where torch's does, so the outputs agree with torch's to
-- within its last layer's quantization step (spec/quant_spec.lua).
local ffi = require "ffi"
local core = require "pthcv.core"
local A = require "pthcv.nn.args"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local slots = require "pthcv.quant.slots"
local torch_module = require "pthcv.quant.torch_module"
local torch_ops = require "pthcv.quant.torch_ops"

local C = core.C
local M = {}

local function number(sd, key, what)
  local t = sd[key]
  if type(t) == "number" then return t end
  if not Tensor.is(t) then error("pthcv: load_torch: " .. key .. " (" .. what .. ") is missing", 0) end
  return t.numel == 1 and t:reshape({}):item() or error("pthcv: load_torch: " .. key .. " is not one number", 0)
end

local function quantize(x, scale, zp)
  local f = x.dtype == "float32" and x or x:float()
  return Tensor.wrap(C.pthcv_quantize_per_tensor(f.ct, scale, zp) or core.fail("quantize"), true)
end

-- the dicts entries() made from a state_dict (not from a whole model)
local from_state_dict = setmetatable({}, { __mode = "k" })

-- (scale, zero point) of the module at path; torch's quantized Hardswish
-- keeps them out of the state_dict: then the whole model is needed
local function qparams(sd, path, what)
  local key = path .. ".scale"
  if sd[key] == nil and from_state_dict[sd] then
    error("pthcv: load_torch: the state_dict has no " .. key .. " (" .. what .. " scale): torch's quantized "
          .. "Hardswish keeps its scale and zero point out of the state_dict; save the whole quantized model "
          .. "(torch.save(model)) and load that file", 0)
  end
  return number(sd, key, what .. " scale"), number(sd, path .. ".zero_point", what .. " zero point")
end

-- the fused activation after the layer at path: nil, "relu" (ReLU, ReLU6) or
-- "hardswish" with its (scale, zero point), which torch applies as a layer
-- of its own after the layer's rounding
local function activation(sd, path, pk, act_module, paths)
  local act = pk.rec.act and pk.rec.act.kind
  if act == "relu6" then act = "relu" end
  if act == "hardswish" then
    local at = act_module and paths[act_module]
    if not at then error("pthcv: load_torch: " .. path .. " has a fused hardswish whose module has no path", 0) end
    local scale, zp = qparams(sd, at, "Hardswish's output")
    return "none", { scale = scale, zp = zp, path = at }
  end
  if act ~= nil and act ~= "none" and act ~= "relu" then
    error("pthcv: load_torch: " .. path .. " has a fused " .. act .. ", which torch's quantized models do not fuse", 0)
  end
  return act or "none"
end

-- y, or Hardswish(y) rounded to its own scale when the layer has one
local function post(self, y)
  if not self.post then return y end
  local z = torch_ops.hardswish(y, self.post.scale, self.post.zp, self.post.path)
  release(y)
  return z
end

-- ---- convolutions ---------------------------------------------------------------------
local Conv = { quantized = true }
Conv.__index = Conv

-- the int8 convolution with activation act (made on first use of each)
function Conv:kernel(act)
  local q = self.q[act]
  if q then return q end
  local p = A.conv2d_params(self.rec)
  p.act = A.activation_struct(A.activation(act))
  q = C.pthcv_qconv2d_prepare(self.w.ct, self.b and self.b.ct or nil, p, self.scale, self.zp)
  if q == nil then core.fail("qconv2d_prepare " .. self.path) end
  q = ffi.gc(q, C.pthcv_qconv2d_free)
  self.q[act] = q
  return q
end

function Conv:forward(x, residual)
  local tx
  if x.dtype ~= "quint8" then x = quantize(x, self.in_scale, self.in_zp); tx = x end
  -- with a residual, a ReLU belongs to the add that follows (add_relu)
  local act = (residual and self.add and self.add.relu) and "none" or self.act
  local y = F._result(C.pthcv_qconv2d_forward(self:kernel(act), x.ct, nil, 0), "qconv2d")
  release(tx)
  if not residual then return post(self, y) end
  if self.post then error("pthcv: load_torch: " .. self.path .. " takes a residual after its Hardswish", 0) end
  if not self.add then error("pthcv: load_torch: " .. self.path .. " takes a residual, but no add follows it in the state_dict", 0) end
  local tr
  if residual.dtype ~= "quint8" then residual = quantize(residual, self.in_scale, self.in_zp); tr = residual end
  local z = F._result(C.pthcv_qadd(y.ct, residual.ct, self.add.scale, self.add.zp, self.add.relu and 1 or 0), "qadd")
  release(y)
  release(tr)
  return z
end

-- the add after the block that holds convolution path (a prefix of it)
local function add_of(sd, path)
  local p = path
  while p do
    for _, name in ipairs({ "add_relu", "skip_add_relu", "skip_add" }) do
      local key = p .. "." .. name
      if Tensor.is(sd[key .. ".scale"]) or type(sd[key .. ".scale"]) == "number" then
        return { scale = number(sd, key .. ".scale", "scale"), zp = number(sd, key .. ".zero_point", "zero point"),
                 relu = name:find("relu") ~= nil }
      end
    end
    p = p:match("^(.*)%.[^.]+$")
  end
  return nil
end

local function conv_pack(sd, path, pk, input, act_module, paths)
  local w = sd[path .. ".weight"]
  if not Tensor.is(w) or w.dtype ~= "qint8" then
    error("pthcv: load_torch: " .. path .. ".weight is " .. (Tensor.is(w) and w.dtype or "missing")
          .. ", not qint8: not a quantized state_dict for this model", 0)
  end
  local act, hardswish = activation(sd, path, pk, act_module, paths)
  local b = sd[path .. ".bias"]
  return setmetatable({ path = path, w = w, b = b and b:float(), rec = pk.rec, act = act, post = hardswish, q = {},
                        scale = number(sd, path .. ".scale", "output scale"),
                        zp = number(sd, path .. ".zero_point", "output zero point"),
                        in_scale = input.scale, in_zp = input.zp, add = add_of(sd, path) }, Conv)
end

-- ---- linear layers ----------------------------------------------------------------------
local Linear = { quantized = true }
Linear.__index = Linear

function Linear:forward(x)
  local tx
  if x.dtype ~= "quint8" then x = quantize(x, self.in_scale, self.in_zp); tx = x end
  local y = F._result(C.pthcv_qlinear_forward(self.q, x.ct, 0), "qlinear")
  release(tx)
  return post(self, y)   -- quint8: DeQuantStub (the model's outputs are float32) follows
end

local function linear_pack(sd, path, pk, input, act_module, paths)
  local pre = path .. "._packed_params._packed_params."
  local w, b = sd[pre .. "0"], sd[pre .. "1"]
  if not Tensor.is(w) or w.dtype ~= "qint8" then
    error("pthcv: load_torch: " .. pre .. "0 is " .. (Tensor.is(w) and w.dtype or "missing")
          .. ", not qint8: not a quantized state_dict for this model", 0)
  end
  local scale, zp = number(sd, path .. ".scale", "output scale"), number(sd, path .. ".zero_point", "output zero point")
  local act, hardswish = activation(sd, path, pk, act_module, paths)
  local act_struct = act ~= "none" and A.activation_struct(A.activation(act)) or nil
  local q = C.pthcv_qlinear_prepare(w.ct, b and b:float().ct or nil, act_struct, scale, zp)
  if q == nil then core.fail("qlinear_prepare " .. path) end
  return setmetatable({ q = ffi.gc(q, C.pthcv_qlinear_free), in_scale = input.scale, in_zp = input.zp,
                        post = hardswish }, Linear)
end

-- The state_dict's entries by name; a tuple (a quantized linear layer's
-- _packed_params) as NAME.0, NAME.1 ..., as pthcv.state_dict names them.
-- A model pickled whole gives the same names (quant/torch_module.lua).
local function entries(sd)
  local OrderedDict = require "pthcv.reader.odict"
  if torch_module.is_module(sd) then return torch_module.flatten(sd) end
  if not OrderedDict.is(sd) then
    error("pthcv: load_torch: expected a quantized model's state_dict (torch.save(model.state_dict())), got "
          .. tostring(sd), 0)
  end
  local dict = {}
  from_state_dict[dict] = true
  for _, kv in ipairs(sd:items()) do
    local v = kv[2]
    if type(v) == "table" and not Tensor.is(v) and not OrderedDict.is(v) and #v > 0 then
      for i, e in ipairs(v) do dict[kv[1] .. "." .. (i - 1)] = e end
    else
      dict[kv[1]] = v
    end
  end
  return dict
end

-- load_torch(model, state_dict, whole model or file name) -> model, now int8
function M.load(model, sd)
  if type(sd) == "string" then sd = require("pthcv").load(sd) end
  local dict = entries(sd)
  local qat = require "pthcv.quant.qat"
  if qat.is_prepared(dict) then dict = qat.converted(dict, qat.batch_norm_eps(model)) end
  local input = { scale = number(dict, "quant.scale", "QuantStub's scale"),
                  zp = number(dict, "quant.zero_point", "QuantStub's zero point") }
  rawset(model, "_quantized", nil)
  require("pthcv.quant.fuse").install(model)
  local paths = {}
  for _, kv in ipairs(model:named_modules()) do paths[kv[2]] = kv[1] end
  local act_of = torch_ops.fused_activations(model)
  local n = 0
  for _, slot in ipairs(slots.of(model)) do
    local pk = slot.pack
    local path = pk.module and paths[pk.module]
    if not path then error("pthcv: load_torch: a packed layer of the model has no module path", 0) end
    local make = pk.op == "linear" and linear_pack or conv_pack
    slot.holder[slot.key] = make(dict, path, pk, input, act_of[pk.module], paths)
    n = n + 1
  end
  torch_ops.install(model, function(path, what) return qparams(dict, path, what) end)
  rawset(model, "_quantized", { layers = n, method = "torch" })
  slots.float_outputs(model)
  return model
end

return M
