-- lua/pthcv/quant/packs.lua: the int8 packs that replace a quantized
-- model's float packs; F.conv2d_packed / F.linear_packed run them.
--
-- A convolution's pack quantizes a float input (and residual) with the
-- ranges calibration observed; a uint8 input (another int8 layer's output)
-- goes in as it is, with its own scale. Its output is uint8 with the
-- observed output range, the fused activation (ReLU, ReLU6, clamp) applied
-- in the int8 kernel's store; an activation the kernel cannot fuse
-- (hardswish, SiLU, ...) runs on the float output instead. A linear
-- layer's output is float32 (classifier logits, mostly).
local ffi = require "ffi"
local core = require "pthcv.core"
local A = require "pthcv.nn.args"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local stats = require "pthcv.quant.stats"

local C = core.C
local M = {}
local FUSABLE = { [C.PTHCV_ACT_NONE] = true, [C.PTHCV_ACT_RELU] = true, [C.PTHCV_ACT_RELU6] = true,
                  [C.PTHCV_ACT_CLAMP] = true }

local function qparams_of(s, method, opts)
  local lo, hi = stats.range(s, method, opts)
  return stats.qparams(lo, hi)
end

-- x as uint8: as it is, or quantized with (scale, zp); the second value is
-- the new tensor to release after use
local function as_quint8(x, scale, zp)
  if x.dtype == "quint8" then return x, nil end
  local f = x.dtype == "float32" and x or x:float()
  local q = Tensor.wrap(C.pthcv_quantize_per_tensor(f.ct, scale, zp), true)
  return q, q
end

local QConv = { quantized = true }
QConv.__index = QConv

function QConv:forward(x, residual)
  local xq, tx = as_quint8(x, self.in_scale, self.in_zp)
  local rq, tr
  if residual and self.res_scale then rq, tr = as_quint8(residual, self.res_scale, self.res_zp) end
  local r = C.pthcv_qconv2d_forward(self.q, xq.ct, rq and rq.ct or nil, self.post and 1 or 0)
  release(tx)
  release(tr)
  local y = F._result(r, "qconv2d")
  if self.post then   -- the unfused activation (and the residual before it), in float
    if residual then
      local t = F.add(y, residual)
      release(y)
      y = t
    end
    local t = F._result(C.pthcv_activate(y.ct, self.post), "activate")
    release(y)
    y = t
  end
  return y
end

-- torch.cat({pk(x) for pk in list}, 1) with each int8 convolution writing
-- its channels of one quint8 output (pthcv_qconv2d_forward_cat), when they
-- can: plain convolutions (groups 1, the activation in the kernel) with one
-- output scale and zero point, and one input quantization (they read the
-- same x). nil otherwise: the caller concatenates their outputs.
function M.forward_cat(list, x)
  local first = list[1]
  for _, q in ipairs(list) do
    if getmetatable(q) ~= QConv or q.post or q.groups ~= 1 or q.out_scale ~= first.out_scale
       or q.out_zp ~= first.out_zp or q.in_scale ~= first.in_scale or q.in_zp ~= first.in_zp then
      return nil
    end
  end
  local arr = ffi.new("pthcv_qconv2d *[?]", #list)
  for i, q in ipairs(list) do arr[i - 1] = q.q end
  local xq, tx = as_quint8(x, first.in_scale, first.in_zp)
  local r = C.pthcv_qconv2d_forward_cat(#list, arr, xq.ct)
  release(tx)
  return F._result(r, "qconv2d_cat")
end

local QLinear = { quantized = true }
QLinear.__index = QLinear

function QLinear:forward(x)
  local xq, tx = as_quint8(x, self.in_scale, self.in_zp)
  local r = C.pthcv_qlinear_forward(self.q, xq.ct, 1)
  release(tx)
  return F._result(r, "qlinear")
end

local function quantized_weight(w)
  local f = w.dtype == "float32" and w or w:float()
  return Tensor.wrap(C.pthcv_quantize_weight(f.ct) or core.fail("quantize_weight"), true)
end

-- The int8 pack for float pack pk (lua/pthcv/nn/packs.lua) from its int8
-- weights w (qint8 per channel), bias b (float or nil) and quantization
-- parameters qp = {in_scale, in_zp, out_scale, out_zp[, res_scale, res_zp]}.
function M.build(pk, w, b, qp)
  local fields = { w = w, b = b, in_scale = qp.in_scale, in_zp = qp.in_zp, out_scale = qp.out_scale, out_zp = qp.out_zp }
  if pk.op == "linear" then
    local act = A.activation_struct(pk.rec.act)
    if act.kind ~= C.PTHCV_ACT_NONE and act.kind ~= C.PTHCV_ACT_RELU then
      error("pthcv: quantize: a linear layer with a fused " .. pk.rec.act.kind .. " cannot be quantized", 0)
    end
    local q = C.pthcv_qlinear_prepare(w.ct, b and b.ct or nil, act, qp.out_scale, qp.out_zp)
    if q == nil then core.fail("qlinear_prepare") end
    fields.q = ffi.gc(q, C.pthcv_qlinear_free)
    return setmetatable(fields, QLinear)
  end
  local p = A.conv2d_params(pk.rec)
  if not FUSABLE[tonumber(p.act.kind)] then
    fields.post = A.activation_struct(pk.rec.act)
    p.act.kind = C.PTHCV_ACT_NONE
  end
  fields.groups = tonumber(p.groups)
  local q = C.pthcv_qconv2d_prepare(w.ct, b and b.ct or nil, p, qp.out_scale, qp.out_zp)
  if q == nil then core.fail("qconv2d_prepare") end
  fields.q = ffi.gc(q, C.pthcv_qconv2d_free)
  if qp.res_scale and not fields.post then fields.res_scale, fields.res_zp = qp.res_scale, qp.res_zp end
  return setmetatable(fields, QConv)
end

-- The int8 pack for float pack pk from its calibration statistics s;
-- out_range {lo, hi}: the output's range instead of s's (a concatenation's,
-- shared with the other packs writing into it).
function M.make(pk, s, method, opts, out_range)
  local qp = {}
  qp.in_scale, qp.in_zp = qparams_of(s.x, method, opts)
  if out_range then qp.out_scale, qp.out_zp = stats.qparams(out_range[1], out_range[2])
  else qp.out_scale, qp.out_zp = qparams_of(s.y, method, opts) end
  if s.r then qp.res_scale, qp.res_zp = qparams_of(s.r, method, opts) end
  local w = quantized_weight(pk.op == "linear" and pk.weight or F.conv2d_pack_weight(pk))
  local b = pk.bias and (pk.bias.dtype == "float32" and pk.bias or pk.bias:float())
  return M.build(pk, w, b, qp)
end

return M
