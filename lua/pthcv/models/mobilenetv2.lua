-- lua/pthcv/models/mobilenetv2.lua: torchvision's MobileNetV2.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"

local M = {}
local CNA, make_divisible = blocks.Conv2dNormActivation, blocks.make_divisible

-- InvertedResidual(inp, oup, stride, expand_ratio)
local InvertedResidual = nn.class("InvertedResidual", nil,
  { torch_class = "torchvision.models.mobilenetv2.InvertedResidual" })
M.InvertedResidual = InvertedResidual

function InvertedResidual:__init(inp, oup, stride, expand_ratio)
  self.stride = stride
  local hidden_dim = math.floor(inp * expand_ratio + 0.5)
  self.use_res_connect = stride == 1 and inp == oup
  local layers = {}
  if expand_ratio ~= 1 then
    layers[#layers + 1] = CNA(inp, hidden_dim, { kernel_size = 1, activation_layer = nn.ReLU6 })
  end
  layers[#layers + 1] = CNA(hidden_dim, hidden_dim, { stride = stride, groups = hidden_dim, activation_layer = nn.ReLU6 })
  layers[#layers + 1] = nn.Conv2d(hidden_dim, oup, 1, { bias = false })
  layers[#layers + 1] = nn.BatchNorm2d(oup)
  self.conv = nn.Sequential(layers)
  self.out_channels = oup
  self._is_cn = stride > 1
end

function InvertedResidual:forward(x)
  if self.use_res_connect then return blocks.residual(self.conv, x) end
  return self.conv(x)
end
InvertedResidual.keeps_no_tensors = true

local MobileNetV2 = nn.class("MobileNetV2", nil, { torch_class = "torchvision.models.mobilenetv2.MobileNetV2" })
M.MobileNetV2 = MobileNetV2

-- MobileNetV2({num_classes = 1000, width_mult = 1.0, round_nearest = 8, dropout = 0.2})
function MobileNetV2:__init(o)
  o = o or {}
  local width_mult, round_nearest = o.width_mult or 1.0, o.round_nearest or 8
  local setting = { { 1, 16, 1, 1 }, { 6, 24, 2, 2 }, { 6, 32, 3, 2 }, { 6, 64, 4, 2 }, { 6, 96, 3, 1 },
                    { 6, 160, 3, 2 }, { 6, 320, 1, 1 } }
  local input_channel = make_divisible(32 * width_mult, round_nearest)
  self.last_channel = make_divisible(1280 * math.max(1.0, width_mult), round_nearest)
  local features = { CNA(3, input_channel, { stride = 2, activation_layer = nn.ReLU6 }) }
  for _, s in ipairs(setting) do
    local t, c, n, st = s[1], s[2], s[3], s[4]
    local output_channel = make_divisible(c * width_mult, round_nearest)
    for i = 1, n do
      features[#features + 1] = InvertedResidual(input_channel, output_channel, i == 1 and st or 1, t)
      input_channel = output_channel
    end
  end
  features[#features + 1] = CNA(input_channel, self.last_channel, { kernel_size = 1, activation_layer = nn.ReLU6 })
  self.features = nn.Sequential(features)
  self.classifier = nn.Sequential(nn.Dropout(o.dropout or 0.2), nn.Linear(self.last_channel, o.num_classes or 1000))
end

function MobileNetV2:forward(x)
  local t = self.features(x)
  local p = F.adaptive_avg_pool2d(t, { 1, 1 })
  release(t, x)
  local flat = F.flatten(p, 1) -- a view: it holds p's storage until released too
  local y = self.classifier(flat)
  release(flat, y); release(p, y)
  return y
end

function M.mobilenet_v2(o) return MobileNetV2(o) end

return M
