-- lua/pthcv/quant/qat.lua: the state_dict of a model prepared for
-- quantization-aware training (torch.ao.quantization.prepare_qat: float
-- weights, BatchNorm kept beside its convolution, fake-quantize modules
-- holding the scales) turned into the names and values of the state_dict
-- torch.ao.quantization.convert would give, which quant/torch.lua loads.
-- It does what convert does:
--   * P.activation_post_process.{scale,zero_point}: the output quantization
--     of module P (a convolution, a linear layer, QuantStub, an add, a
--     Hardswish): P.scale, P.zero_point;
--   * a convolution P with P.weight_fake_quant: BatchNorm P.bn folded into
--     its weight and bias as torch's fuse_conv_bn_weights (float32, in its
--     order), then the weight rounded with the fake-quantize's scale as
--     torch.quantize_per_tensor/per_channel (value * (1 / scale) in float32,
--     half to even, clamped to [-128, 127]): P.weight (qint8), P.bias;
--   * a linear layer P (2-d weight): P._packed_params._packed_params.0
--     (weight) and .1 (bias).
-- BatchNorm's eps is not in a state_dict: it is the pthcv model's (all its
-- BatchNorm layers must agree, as in torchvision's models).
-- (A state_dict of a model already converted after QAT needs nothing of
-- this: it is a quantized model's state_dict like any other.)
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"

local C = core.C
local M = {}

-- Whether entries (name -> value) are a prepared-QAT model's.
function M.is_prepared(dict)
  return dict["quant.scale"] == nil and Tensor.is(dict["quant.activation_post_process.scale"])
end

local function floats(t, key)
  if not Tensor.is(t) then error("pthcv: load_torch: " .. key .. " is missing (a prepared-QAT state_dict)", 0) end
  local f = t:float():contiguous()
  return ffi.cast("const float *", C.pthcv_tensor_data(f.ct)), f
end

local f32 = ffi.new("float[1]")
local function float32(x) f32[0] = x; return f32[0] end

-- weight [out, ...] and bias of convolution P with BatchNorm P.bn folded in
-- (torch.nn.utils.fusion.fuse_conv_bn_weights, float32)
local function folded(dict, p, eps)
  local w = dict[p .. ".weight"]
  local rv = dict[p .. ".bn.running_var"]
  if not rv then return w:float():contiguous(), dict[p .. ".bias"] and dict[p .. ".bias"]:float() end
  local cout = w.shape[1]
  local var, kv = floats(rv, p .. ".bn.running_var")
  local mean, km = floats(dict[p .. ".bn.running_mean"], p .. ".bn.running_mean")
  local gamma, kg = floats(dict[p .. ".bn.weight"], p .. ".bn.weight")
  local beta, kb = floats(dict[p .. ".bn.bias"], p .. ".bn.bias")
  local cb = dict[p .. ".bias"]
  local conv_b, kc = nil, nil
  if cb then conv_b, kc = floats(cb, p .. ".bias") end
  local wf = w:float():clone()
  local wd = ffi.cast("float *", C.pthcv_tensor_data(wf.ct))
  local per = wf.numel / cout
  local b = Tensor.zeros({ cout }, "float32")
  local bd = ffi.cast("float *", C.pthcv_tensor_data(b.ct))
  for c = 0, cout - 1 do
    local rsqrt = float32(1 / float32(math.sqrt(float32(var[c] + float32(eps)))))
    local factor = float32(gamma[c] * rsqrt)
    for i = c * per, (c + 1) * per - 1 do wd[i] = float32(wd[i] * factor) end
    local cbv = conv_b and conv_b[c] or 0
    bd[c] = float32(float32(float32(float32(cbv - mean[c]) * rsqrt) * gamma[c]) + beta[c])
  end
  local _ = { kv, km, kg, kb, kc }   -- keep the float copies alive while their pointers are read
  return wf, b
end

-- The weight scales convert computes: it runs the weight's fake-quantize
-- once more on the (folded) weight, so while its observer is on, the
-- observer's running min and max move towards the weight's by torch's
-- averaging constant (0.01) first; the scale is then symmetric over the
-- int8 range [-128, 127] (torch's default weight observers):
-- max(-min(lo, 0), max(hi, 0)) / 127.5, at least the observer's eps.
local AVERAGING, HALF_RANGE = float32(0.01), 127.5
local function weight_scales(w, dict, key, n)
  local obs = key .. ".activation_post_process."
  local lo_t, hi_t, eps_t = dict[obs .. "min_val"], dict[obs .. "max_val"], dict[obs .. "eps"]
  local out = {}
  if not (Tensor.is(lo_t) and Tensor.is(hi_t) and lo_t.numel == n and hi_t.numel == n) then
    local scales = floats(dict[key .. ".scale"], key .. ".scale")
    for i = 1, n do out[i] = scales[i - 1] end
    return out
  end
  local lo, klo = floats(lo_t, obs .. "min_val")
  local hi, khi = floats(hi_t, obs .. "max_val")
  local eps = Tensor.is(eps_t) and eps_t:float():reshape({}):item() or 0
  local on = dict[key .. ".observer_enabled"]
  on = not Tensor.is(on) or on:reshape({ on.numel }):get(1) ~= 0
  local wd = ffi.cast("const float *", C.pthcv_tensor_data(w.ct))
  local per = w.numel / n
  for i = 0, n - 1 do
    local a, b = lo[i], hi[i]
    if on then
      local cmin, cmax = math.huge, -math.huge
      for j = i * per, (i + 1) * per - 1 do
        local v = wd[j]
        if v < cmin then cmin = v end
        if v > cmax then cmax = v end
      end
      a = (a == math.huge or a == -math.huge) and cmin or float32(a + float32(AVERAGING * float32(cmin - a)))
      b = (b == math.huge or b == -math.huge) and cmax or float32(b + float32(AVERAGING * float32(cmax - b)))
    end
    local m = math.max(-math.min(a, 0), math.max(b, 0))
    out[i + 1] = math.max(float32(m / HALF_RANGE), eps)
  end
  local _ = { klo, khi }   -- keep the float copies alive while their pointers are read
  return out
end

-- w (float32) as qint8 with the fake-quantize's scales (1 or one per output channel)
local function quantized(w, dict, key)
  local scale_t, zp_t = dict[key .. ".scale"], dict[key .. ".zero_point"]
  if not Tensor.is(zp_t) then error("pthcv: load_torch: " .. key .. ".zero_point is missing (a prepared-QAT state_dict)", 0) end
  local cout = w.shape[1]
  if scale_t.numel ~= 1 and scale_t.numel ~= cout then
    error("pthcv: load_torch: " .. key .. ".scale has " .. scale_t.numel .. " values for " .. cout
          .. " output channels", 0)
  end
  for i = 1, zp_t.numel do
    if zp_t:reshape({ zp_t.numel }):get(i) ~= 0 then
      error("pthcv: load_torch: " .. key .. ".zero_point is not 0: pthcv's int8 weights are symmetric", 0)
    end
  end
  local q = Tensor.wrap(C.pthcv_quantize_weight(w.ct) or core.fail("quantize_weight"), true)
  local qd = ffi.cast("int8_t *", C.pthcv_tensor_data(q.ct))
  local sd = ffi.cast("double *", C.pthcv_tensor_data(q.ct.qscales))
  local wd = ffi.cast("const float *", C.pthcv_tensor_data(w.ct))
  local scales = weight_scales(w, dict, key, scale_t.numel)
  local per = w.numel / cout
  for c = 0, cout - 1 do
    local s = scales[scale_t.numel == 1 and 1 or c + 1]
    if not (s > 0 and s < math.huge) then error("pthcv: load_torch: " .. key .. ".scale is not a positive number", 0) end
    sd[c] = s
    local inv = float32(1 / s)
    for i = c * per, (c + 1) * per - 1 do
      local v = float32(wd[i] * inv)
      local r = math.floor(v + 0.5)
      if r - v == 0.5 and r % 2 ~= 0 then r = r - 1 end   -- half to even
      qd[i] = r < -128 and -128 or r > 127 and 127 or r
    end
  end
  return q
end

-- the converted state_dict's entries from a prepared-QAT one; eps: BatchNorm's
function M.converted(dict, eps)
  local out = {}
  for k, v in pairs(dict) do
    local p = k:match("^(.-)%.activation_post_process%.scale$")
    if p and not p:find("%.activation_post_process$") and not p:find("weight_fake_quant$") then
      out[(p == "" and "" or p .. ".") .. "scale"] = v
      out[(p == "" and "" or p .. ".") .. "zero_point"] = dict[p .. ".activation_post_process.zero_point"]
    end
  end
  for k in pairs(dict) do
    local p = k:match("^(.-)%.weight_fake_quant%.scale$")
    if p then
      local key = p .. ".weight_fake_quant"
      local w = dict[p .. ".weight"]
      if not Tensor.is(w) then error("pthcv: load_torch: " .. p .. ".weight is missing (a prepared-QAT state_dict)", 0) end
      if w.ndim == 2 then
        out[p .. "._packed_params._packed_params.0"] = quantized(w:float():contiguous(), dict, key)
        out[p .. "._packed_params._packed_params.1"] = dict[p .. ".bias"]
      else
        if dict[p .. ".bn.running_var"] and not eps then
          error("pthcv: load_torch: " .. p .. ".bn: the model's BatchNorm layers do not share one eps", 0)
        end
        local wf, b = folded(dict, p, eps)
        out[p .. ".weight"] = quantized(wf, dict, key)
        out[p .. ".bias"] = b
      end
    end
  end
  return out
end

-- the eps every BatchNorm layer of a pthcv model has (nil when they differ or there is none)
function M.batch_norm_eps(model)
  local eps
  for _, m in ipairs(model:modules()) do
    local name = getmetatable(m).__typename
    if name == "BatchNorm2d" or name == "BatchNorm1d" then
      if eps and eps ~= m.eps then return nil end
      eps = m.eps
    end
  end
  return eps
end

return M
