-- lua/pthcv/quant/torch_ops.lua: the int8 steps of torch's quantized
-- MobileNetV3 besides convolutions and linear layers, for load_torch
-- (quant/torch.lua), each computing as torch 1.13 does with the qnnpack
-- engine (the C ops of csrc/kernels/quant_elementwise.c):
--   * Hardswish (torch: QuantizedHardswish, its own output scale P.scale /
--     P.zero_point), standalone or after the convolution or linear layer a
--     Sequential fused it with (see M.fused_activations);
--   * squeeze-excitation (torchvision's QuantizableSqueezeExcitation):
--     quantized global average pool, fc1 with its ReLU (torch fuses them),
--     fc2, Hardsigmoid (torch's fixed output scale 1/256, zero point 0), then
--     skip_mul (P.skip_mul.scale / zero_point) of the factor and the input;
--   * AdaptiveAvgPool2d to 1x1 on a quint8 input: the quantized global
--     average pool, which keeps the input's scale.
local core = require "pthcv.core"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local containers = require "pthcv.nn.containers"
local release = require "pthcv.nn.release"

local C = core.C
local M = {}

-- torch's quantized hardsigmoid always gives this scale and zero point
M.HARDSIGMOID_SCALE, M.HARDSIGMOID_ZERO_POINT = 1 / 256, 0

local function need_quint8(x, what)
  if not Tensor.is(x) or x.dtype ~= "quint8" then
    error("pthcv: load_torch: " .. what .. " expects a quint8 input, got " .. (Tensor.is(x) and x.dtype or type(x)), 0)
  end
end

function M.hardswish(x, scale, zp, where)
  need_quint8(x, where)
  return F._result(C.pthcv_qhardswish(x.ct, scale, zp), "qhardswish")
end

function M.hardsigmoid(x, where)
  need_quint8(x, where)
  return F._result(C.pthcv_qhardsigmoid(x.ct, M.HARDSIGMOID_SCALE, M.HARDSIGMOID_ZERO_POINT), "qhardsigmoid")
end

function M.global_avg_pool(x, where)
  need_quint8(x, where)
  return F._result(C.pthcv_qglobal_avg_pool2d(x.ct), "qglobal_avg_pool2d")
end

-- module -> the activation module a Sequential fuses with it (the child
-- after it, or after its BatchNorm2d: nn/containers.lua's rule)
function M.fused_activations(model)
  local act_of = {}
  for _, m in ipairs(model:modules()) do
    if containers.is_a(m, "Sequential") then
      local kids = m:children()
      for i, k in ipairs(kids) do
        local j = i + 1
        if kids[j] and containers.is_a(kids[j], "BatchNorm2d") then j = j + 1 end
        if kids[j] and kids[j].act_spec then act_of[k] = kids[j] end
      end
    end
  end
  return act_of
end

local function is_one(size)
  if type(size) == "number" then return size == 1 end
  return type(size) == "table" and size[1] == 1 and (size[2] == nil or size[2] == 1)
end

-- Installs the forwards above on the model's modules (instance fields);
-- qparams(path, what) gives a module's (scale, zero_point) or raises an
-- error that names the key.
function M.install(model, qparams)
  for _, kv in ipairs(model:named_modules()) do
    local path, m = kv[1], kv[2]
    local name = m:typename():gsub("^nn%.", "")
    if name == "SqueezeExcitation" then
      local scale, zp = qparams(path .. ".skip_mul", "squeeze-excitation's skip_mul")
      local fc1 = rawget(m.fc1, "_pack")
      if not (fc1 and fc1.quantized) then error("pthcv: load_torch: " .. path .. ".fc1 has no int8 pack", 0) end
      if not containers.is_a(m.activation, "ReLU") or not containers.is_a(m.scale_activation, "Hardsigmoid") then
        error("pthcv: load_torch: " .. path .. " is a squeeze-excitation with " .. m.activation:typename() .. " and "
              .. m.scale_activation:typename() .. ", torchvision's quantizable one has ReLU and Hardsigmoid", 0)
      end
      fc1.act = "relu"   -- torch fuses fc1 with its ReLU (QuantizedConvReLU2d)
      rawset(m, "forward", function(self, x)
        local p = M.global_avg_pool(x, path)
        local s = self.fc2(self.fc1(p))
        release(p)
        local h = M.hardsigmoid(s, path .. ".scale_activation")
        release(s)
        local y = F._result(C.pthcv_qmul(h.ct, x.ct, scale, zp), "qmul")
        release(h)
        return y
      end)
    elseif name == "AdaptiveAvgPool2d" and is_one(m.output_size) then
      local forward = m.forward
      rawset(m, "forward", function(self, x)
        if Tensor.is(x) and x.dtype == "quint8" then return M.global_avg_pool(x, path) end
        return forward(self, x)
      end)
    elseif name == "Hardswish" then
      local scale, zp
      rawset(m, "forward", function(_, x)
        if not scale then scale, zp = qparams(path, "Hardswish's output") end
        return M.hardswish(x, scale, zp, path)
      end)
    elseif name == "Hardsigmoid" then
      rawset(m, "forward", function(_, x) return M.hardsigmoid(x, path) end)
    end
  end
end

return M
