-- lua/pthcv/models/squeezenet.lua: torchvision's SqueezeNet 1.0 and 1.1
-- (their max pools use ceil_mode=True).
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local chain = require("pthcv.models.blocks").chain

local M = {}

-- Fire(inplanes, squeeze, expand1x1, expand3x3)
local Fire = nn.class("Fire", nil, { torch_class = "torchvision.models.squeezenet.Fire" })
M.Fire = Fire

function Fire:__init(inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes)
  self.inplanes = inplanes
  self.squeeze = nn.Conv2d(inplanes, squeeze_planes, 1)
  self.squeeze_activation = nn.ReLU(true)
  self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, 1)
  self.expand1x1_activation = nn.ReLU(true)
  self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, 3, { padding = 1 })
  self.expand3x3_activation = nn.ReLU(true)
end

-- once planned, each conv+ReLU is one kernel call and the two expand
-- convolutions write into their halves of the concatenation
function Fire:forward(x)
  local s = chain(x, self.squeeze, self.squeeze_activation)
  local a = chain(s, self.expand1x1, self.expand1x1_activation)
  local b = chain(s, self.expand3x3, self.expand3x3_activation)
  release(s)
  local y = F.cat({ a, b }, 1)
  release(a); release(b)
  return y
end
Fire.keeps_no_tensors = true

local SqueezeNet = nn.class("SqueezeNet", nil, { torch_class = "torchvision.models.squeezenet.SqueezeNet" })
M.SqueezeNet = SqueezeNet

-- SqueezeNet(version "1_0" | "1_1", {num_classes = 1000, dropout = 0.5})
function SqueezeNet:__init(version, o)
  o = o or {}
  self.num_classes = o.num_classes or 1000
  local function pool() return nn.MaxPool2d(3, { stride = 2, ceil_mode = true }) end
  if version == "1_0" then
    self.features = nn.Sequential(
      nn.Conv2d(3, 96, 7, { stride = 2 }), nn.ReLU(true), pool(),
      Fire(96, 16, 64, 64), Fire(128, 16, 64, 64), Fire(128, 32, 128, 128), pool(),
      Fire(256, 32, 128, 128), Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), pool(),
      Fire(512, 64, 256, 256))
  elseif version == "1_1" then
    self.features = nn.Sequential(
      nn.Conv2d(3, 64, 3, { stride = 2 }), nn.ReLU(true), pool(),
      Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), pool(),
      Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), pool(),
      Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256))
  else
    error("pthcv: Unsupported SqueezeNet version " .. tostring(version) .. ": 1_0 or 1_1 expected", 3)
  end
  self.classifier = nn.Sequential(nn.Dropout(o.dropout or 0.5), nn.Conv2d(512, self.num_classes, 1),
                                  nn.ReLU(true), nn.AdaptiveAvgPool2d({ 1, 1 }))
end

function SqueezeNet:forward(x)
  local f = self.features(x)
  local y = self.classifier(f)
  release(f, y) -- the last Fire's output: 86 KB a pass in int8, which no plan frees
  return F.flatten(y, 1)
end

function M.squeezenet1_0(o) return SqueezeNet("1_0", o) end
function M.squeezenet1_1(o) return SqueezeNet("1_1", o) end

return M
