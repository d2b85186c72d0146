-- lua/pthcv/models/alexnet.lua: torchvision's AlexNet.
local nn = require "pthcv.nn"
local F = nn.F

local M = {}

local AlexNet = nn.class("AlexNet", nil, { torch_class = "torchvision.models.alexnet.AlexNet" })
M.AlexNet = AlexNet

-- AlexNet({num_classes = 1000, dropout = 0.5})
function AlexNet:__init(o)
  o = o or {}
  local p = o.dropout or 0.5
  self.features = nn.Sequential(
    nn.Conv2d(3, 64, 11, { stride = 4, padding = 2 }), nn.ReLU(true), nn.MaxPool2d(3, 2),
    nn.Conv2d(64, 192, 5, { padding = 2 }), nn.ReLU(true), nn.MaxPool2d(3, 2),
    nn.Conv2d(192, 384, 3, { padding = 1 }), nn.ReLU(true),
    nn.Conv2d(384, 256, 3, { padding = 1 }), nn.ReLU(true),
    nn.Conv2d(256, 256, 3, { padding = 1 }), nn.ReLU(true), nn.MaxPool2d(3, 2))
  self.avgpool = nn.AdaptiveAvgPool2d({ 6, 6 })
  self.classifier = nn.Sequential(
    nn.Dropout(p), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(true),
    nn.Dropout(p), nn.Linear(4096, 4096), nn.ReLU(true),
    nn.Linear(4096, o.num_classes or 1000))
end

function AlexNet:forward(x)
  return self.classifier(F.flatten(self.avgpool(self.features(x)), 1))
end

function M.alexnet(o) return AlexNet(o) end

return M
