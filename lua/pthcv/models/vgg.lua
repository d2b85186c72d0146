-- lua/pthcv/models/vgg.lua: torchvision's VGG 11/13/16/19, with and
-- without BatchNorm (eval() folds it into the convolutions).
local nn = require "pthcv.nn"
local F = nn.F

local M = {}

local cfgs = {
  A = { 64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M" },
  B = { 64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M" },
  D = { 64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M" },
  E = { 64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M" },
}

local function make_layers(cfg, batch_norm)
  local layers, cin = {}, 3
  for _, v in ipairs(cfg) do
    if v == "M" then
      layers[#layers + 1] = nn.MaxPool2d(2, 2)
    else
      layers[#layers + 1] = nn.Conv2d(cin, v, 3, { padding = 1 })
      if batch_norm then layers[#layers + 1] = nn.BatchNorm2d(v) end
      layers[#layers + 1] = nn.ReLU(true)
      cin = v
    end
  end
  return nn.Sequential(layers)
end

local VGG = nn.class("VGG", nil, { torch_class = "torchvision.models.vgg.VGG" })
M.VGG = VGG

-- VGG(features, {num_classes = 1000, dropout = 0.5})
function VGG:__init(features, o)
  o = o or {}
  local p = o.dropout or 0.5
  self.features = features
  self.avgpool = nn.AdaptiveAvgPool2d({ 7, 7 })
  self.classifier = nn.Sequential(
    nn.Linear(512 * 7 * 7, 4096), nn.ReLU(true), nn.Dropout(p),
    nn.Linear(4096, 4096), nn.ReLU(true), nn.Dropout(p),
    nn.Linear(4096, o.num_classes or 1000))
end

function VGG:forward(x)
  return self.classifier(F.flatten(self.avgpool(self.features(x)), 1))
end

for name, cfg in pairs { vgg11 = "A", vgg13 = "B", vgg16 = "D", vgg19 = "E" } do
  M[name] = function(o) return VGG(make_layers(cfgs[cfg], false), o) end
  M[name .. "_bn"] = function(o) return VGG(make_layers(cfgs[cfg], true), o) end
end

return M
