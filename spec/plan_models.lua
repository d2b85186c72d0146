-- spec/plan_models.lua: the networks of spec/plan_spec.lua written against
-- pthcv.nn as a user would, from torchvision 0.14's source (same classes,
-- attribute names and forwards, so torchvision's state_dicts load), with no
-- pthcv-specific fusion: what plan_spec checks the optimiser fuses as well
-- as hand-written code. EfficientNet and ShuffleNetV2 are examples/'s
-- (efficientnet_b0.lua, shufflenet_v2.lua), configured as torchvision's
-- constructors take them; the ResNet is torchvision's resnet.py.
local pthcv = require "pthcv"
local nn, F = pthcv.nn, pthcv.F

local M = {}

local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
local function example_class(file)
  local _, class = dofile(here .. "/../examples/" .. file)
  return class
end
-- EfficientNet(num_classes [, setting]): setting rows {expand_ratio,
-- kernel, stride, input_channels, out_channels, num_layers}, as MBConvConfig's
M.EfficientNet = example_class("efficientnet_b0.lua")
-- ShuffleNetV2(stages_repeats, stages_out_channels, num_classes)
M.ShuffleNetV2 = example_class("shufflenet_v2.lua")

-- ---- ResNet (BasicBlock) ---------------------------------------------------------------
local BasicBlock = nn.class("BasicBlock")
function BasicBlock:__init(inplanes, planes, stride, downsample)
  self.conv1 = nn.Conv2d(inplanes, planes, 3, { stride = stride, padding = 1, bias = false })
  self.bn1 = nn.BatchNorm2d(planes)
  self.relu = nn.ReLU(true)
  self.conv2 = nn.Conv2d(planes, planes, 3, { stride = 1, padding = 1, bias = false })
  self.bn2 = nn.BatchNorm2d(planes)
  self.downsample = downsample
  self.stride = stride
end
function BasicBlock:forward(x)
  local identity = x
  local out = self.conv1(x)
  out = self.bn1(out)
  out = self.relu(out)
  out = self.conv2(out)
  out = self.bn2(out)
  if self.downsample then identity = self.downsample(x) end
  out = out + identity
  out = self.relu(out)
  return out
end

-- ResNet(layers, num_classes) with BasicBlock (torchvision's resnet18 for {2, 2, 2, 2})
local ResNet = nn.class("ResNet")
M.ResNet = ResNet
function ResNet:__init(layers, num_classes)
  self.inplanes = 64
  self.conv1 = nn.Conv2d(3, 64, 7, { stride = 2, padding = 3, bias = false })
  self.bn1 = nn.BatchNorm2d(64)
  self.relu = nn.ReLU(true)
  self.maxpool = nn.MaxPool2d(3, 2, 1)
  for i, planes in ipairs { 64, 128, 256, 512 } do
    local stride = i == 1 and 1 or 2
    local downsample
    if stride ~= 1 or self.inplanes ~= planes then
      downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, 1, { stride = stride, bias = false }),
                                 nn.BatchNorm2d(planes))
    end
    local blocks = { BasicBlock(self.inplanes, planes, stride, downsample) }
    self.inplanes = planes
    for _ = 2, layers[i] do blocks[#blocks + 1] = BasicBlock(planes, planes, 1) end
    self["layer" .. i] = nn.Sequential(blocks)
  end
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.fc = nn.Linear(512, num_classes)
end
function ResNet:forward(x)
  x = self.relu(self.bn1(self.conv1(x)))
  x = self.maxpool(x)
  x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
  x = self.avgpool(x)
  x = F.flatten(x, 1)
  return self.fc(x)
end

return M
