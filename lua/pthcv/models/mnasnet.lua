-- lua/pthcv/models/mnasnet.lua: torchvision's MNASNet (B1) 0.5, 0.75, 1.0,
-- 1.3 (version 2: the stem's widths scale with alpha too). Every layer sits
-- in Sequentials, so eval() folds the BatchNorms and fuses the ReLUs; the
-- residual add runs inside the projection convolution.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"

local M = {}

-- TensorFlow's 0.9997 momentum, as torch's (1 - 0.9997)
local BN_MOMENTUM = 1 - 0.9997
local function bn(c, momentum) return nn.BatchNorm2d(c, { momentum = momentum }) end

-- _InvertedResidual(in_ch, out_ch, kernel_size, stride, expansion_factor, bn_momentum)
local InvertedResidual = nn.class("_InvertedResidual", nil,
  { torch_class = "torchvision.models.mnasnet._InvertedResidual" })
M._InvertedResidual = InvertedResidual
InvertedResidual.keeps_no_tensors = true

function InvertedResidual:__init(in_ch, out_ch, kernel_size, stride, expansion_factor, bn_momentum)
  if stride ~= 1 and stride ~= 2 then error("pthcv: MNASNet: stride should be 1 or 2 instead of " .. stride, 3) end
  if kernel_size ~= 3 and kernel_size ~= 5 then
    error("pthcv: MNASNet: kernel_size should be 3 or 5 instead of " .. kernel_size, 3)
  end
  bn_momentum = bn_momentum or 0.1
  local mid_ch = in_ch * expansion_factor
  self.apply_residual = in_ch == out_ch and stride == 1
  self.layers = nn.Sequential(
    nn.Conv2d(in_ch, mid_ch, 1, { bias = false }), bn(mid_ch, bn_momentum), nn.ReLU(true),
    nn.Conv2d(mid_ch, mid_ch, kernel_size, { padding = math.floor(kernel_size / 2), stride = stride, groups = mid_ch,
                                             bias = false }),
    bn(mid_ch, bn_momentum), nn.ReLU(true),
    nn.Conv2d(mid_ch, out_ch, 1, { bias = false }), bn(out_ch, bn_momentum))
end

function InvertedResidual:forward(x)
  if self.apply_residual then return blocks.residual(self.layers, x) end
  return self.layers(x)
end

local function stack(in_ch, out_ch, kernel_size, stride, exp_factor, repeats, bn_momentum)
  local layers = { InvertedResidual(in_ch, out_ch, kernel_size, stride, exp_factor, bn_momentum) }
  for _ = 2, repeats do layers[#layers + 1] = InvertedResidual(out_ch, out_ch, kernel_size, 1, exp_factor, bn_momentum) end
  return nn.Sequential(layers)
end

-- torchvision's _round_to_multiple_of (round_up_bias 0.9)
local function round_to_multiple_of(val, divisor)
  local new_val = math.max(divisor, math.floor(math.floor(val + divisor / 2) / divisor) * divisor)
  if new_val >= 0.9 * val then return new_val end
  return new_val + divisor
end

-- MNASNet(alpha, {num_classes = 1000, dropout = 0.2})
local MNASNet = nn.class("MNASNet", nil, { torch_class = "torchvision.models.mnasnet.MNASNet" })
M.MNASNet = MNASNet

function MNASNet:__init(alpha, o)
  o = o or {}
  if not (alpha > 0) then error("pthcv: MNASNet: alpha should be greater than 0.0 instead of " .. tostring(alpha), 3) end
  self.alpha = alpha
  self.num_classes = o.num_classes or 1000
  local d = {}
  for i, depth in ipairs { 32, 16, 24, 40, 80, 96, 192, 320 } do d[i] = round_to_multiple_of(depth * alpha, 8) end
  local m = BN_MOMENTUM
  self.layers = nn.Sequential(
    nn.Conv2d(3, d[1], 3, { padding = 1, stride = 2, bias = false }), bn(d[1], m), nn.ReLU(true),
    nn.Conv2d(d[1], d[1], 3, { padding = 1, stride = 1, groups = d[1], bias = false }), bn(d[1], m), nn.ReLU(true),
    nn.Conv2d(d[1], d[2], 1, { padding = 0, stride = 1, bias = false }), bn(d[2], m),
    stack(d[2], d[3], 3, 2, 3, 3, m), stack(d[3], d[4], 5, 2, 3, 3, m), stack(d[4], d[5], 5, 2, 6, 3, m),
    stack(d[5], d[6], 3, 1, 6, 2, m), stack(d[6], d[7], 5, 2, 6, 4, m), stack(d[7], d[8], 3, 1, 6, 1, m),
    nn.Conv2d(d[8], 1280, 1, { padding = 0, stride = 1, bias = false }), bn(1280, m), nn.ReLU(true))
  self.classifier = nn.Sequential(nn.Dropout(o.dropout or 0.2, true), nn.Linear(1280, self.num_classes))
end

function MNASNet:forward(x)
  local t = self.layers(x)
  local p = F.mean(t, { 2, 3 })
  release(t, x)
  local y = self.classifier(p)
  release(p, y)
  return y
end

local function builder(alpha) return function(o) return MNASNet(alpha, o) end end
M.mnasnet0_5 = builder(0.5)
M.mnasnet0_75 = builder(0.75)
M.mnasnet1_0 = builder(1.0)
M.mnasnet1_3 = builder(1.3)

return M
