-- examples/efficientnet_b0.lua: EfficientNet-B0 written against pthcv.nn as
-- a user would, from torchvision's efficientnet.py (0.14): the same modules
-- under the same attribute names, so torchvision's state_dict loads
-- unchanged and the logits equal torch's. pthcv.models.efficientnet_b0 is
-- the zoo's version of the same network; this one uses nothing but
-- pthcv.nn and pthcv.F.
--
--   luajit examples/efficientnet_b0.lua WEIGHTS.pth INPUT.npy [OUTPUT.npy]
--   bin/pthcv run --script examples/efficientnet_b0.lua --weights WEIGHTS.pth --input x.npy --output y.npy
--
-- Returns the (unloaded) module when loaded as a script by `pthcv run`, and
-- its class: EfficientNet(num_classes [, setting]), setting as below (B0's
-- by default; spec/plan_spec.lua builds a smaller one).
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
local pthcv = require "pthcv"
local nn, F = pthcv.nn, pthcv.F

-- torchvision's _make_divisible
local function make_divisible(v, divisor)
  local new_v = math.max(divisor, math.floor((v + divisor / 2) / divisor) * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return new_v
end

-- Conv2dNormActivation: conv, BatchNorm, optional SiLU (a Sequential: "0", "1", "2")
local Conv2dNormActivation = nn.class("Conv2dNormActivation", nn.Sequential)
function Conv2dNormActivation:__init(cin, cout, kernel_size, stride, groups, activation)
  self:append(nn.Conv2d(cin, cout, kernel_size, { stride = stride or 1, padding = math.floor((kernel_size - 1) / 2),
                                                  groups = groups or 1, bias = false }))
  self:append(nn.BatchNorm2d(cout))
  if activation ~= false then self:append(nn.SiLU(true)) end
end

-- SqueezeExcitation: x * sigmoid(fc2(silu(fc1(avgpool(x)))))
local SqueezeExcitation = nn.class("SqueezeExcitation")
function SqueezeExcitation:__init(input_channels, squeeze_channels)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
  self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
  self.activation = nn.SiLU(true)
  self.scale_activation = nn.Sigmoid()
end
function SqueezeExcitation:forward(x)
  local scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
  return scale * x
end

-- MBConv: expand (1x1), depthwise, squeeze-excitation, project (1x1), residual
local MBConv = nn.class("MBConv")
function MBConv:__init(expand_ratio, kernel, stride, cin, cout)
  self.use_res_connect = stride == 1 and cin == cout
  local expanded = make_divisible(cin * expand_ratio, 8)
  local layers = {}
  if expanded ~= cin then layers[#layers + 1] = Conv2dNormActivation(cin, expanded, 1) end
  layers[#layers + 1] = Conv2dNormActivation(expanded, expanded, kernel, stride, expanded)
  layers[#layers + 1] = SqueezeExcitation(expanded, math.max(1, math.floor(cin / 4)))
  layers[#layers + 1] = Conv2dNormActivation(expanded, cout, 1, 1, 1, false)
  self.block = nn.Sequential(layers)
  self.stochastic_depth = nn.Identity()   -- torchvision's StochasticDepth: the identity at inference
end
function MBConv:forward(x)
  local result = self.block(x)
  if self.use_res_connect then result = result + x end
  return result
end

-- EfficientNet-B0's stages (width and depth multipliers 1.0), one row per
-- stage as torchvision's MBConvConfig: expand_ratio, kernel, stride, input
-- channels, output channels, layers
local B0 = {
  { 1, 3, 1, 32, 16, 1 }, { 6, 3, 2, 16, 24, 2 }, { 6, 5, 2, 24, 40, 2 }, { 6, 3, 2, 40, 80, 3 },
  { 6, 5, 1, 80, 112, 3 }, { 6, 5, 2, 112, 192, 4 }, { 6, 3, 1, 192, 320, 1 },
}

local EfficientNet = nn.class("EfficientNet")
function EfficientNet:__init(num_classes, setting)
  setting = setting or B0
  local features = { Conv2dNormActivation(3, setting[1][4], 3, 2) }
  for _, s in ipairs(setting) do
    local stage = {}
    for i = 1, s[6] do
      stage[i] = MBConv(s[1], s[2], i == 1 and s[3] or 1, i == 1 and s[4] or s[5], s[5])
    end
    features[#features + 1] = nn.Sequential(stage)
  end
  local last = setting[#setting][5]   -- torchvision's lastconv_output_channels: 4 x its input
  features[#features + 1] = Conv2dNormActivation(last, 4 * last, 1)
  self.features = nn.Sequential(features)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.classifier = nn.Sequential(nn.Dropout(0.2, true), nn.Linear(4 * last, num_classes or 1000))
end
function EfficientNet:forward(x)
  return self.classifier(F.flatten(self.avgpool(self.features(x)), 1))
end

local model = EfficientNet(1000)

-- Run directly: weights, input (.npy) and optionally where to write the logits.
if not pcall(debug.getlocal, 4, 1) then
  if not arg[2] then
    io.stderr:write("usage: luajit examples/efficientnet_b0.lua WEIGHTS.pth INPUT.npy [OUTPUT.npy]\n")
    os.exit(2)
  end
  local sd = pthcv.state_dict(arg[1])
  model = EfficientNet(sd["classifier.1.weight"]:size(1))
  model:load_state_dict(sd)
  model:eval()
  local y = model(pthcv.load_npy(arg[2]))
  if arg[3] then pthcv.save(arg[3], y) end
  local p, idx = F.softmax(y, -1):topk(5)
  for i = 1, 5 do print(string.format("class %4d  p %.4f", idx:get(1, i) - 1, p:get(1, i))) end
end

return model, EfficientNet
