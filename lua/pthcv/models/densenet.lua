-- lua/pthcv/models/densenet.lua: torchvision's DenseNet-BC: densenet121,
-- 161, 169 and 201. A dense layer's BatchNorm comes before its ReLU and
-- convolution (pre-activation), so norm1 + relu1 run as two elementwise
-- passes over the concatenated features; norm2 + relu2 follow conv1 directly
-- and the plan (pthcv.nn.plan) fuses them into it. load_state_dict also
-- takes torchvision's pretrained files, whose keys are the old
-- "norm.1.weight" form (renamed as torchvision's _load_state_dict does).
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local Tensor = require "pthcv.tensor"
local layers = require "pthcv.models.layers"

local M = {}
local chain = require("pthcv.models.blocks").chain

-- _DenseLayer(num_input_features, growth_rate, bn_size, drop_rate, memory_efficient)
local DenseLayer = nn.class("_DenseLayer", nil, { torch_class = "torchvision.models.densenet._DenseLayer" })
M._DenseLayer = DenseLayer
DenseLayer.keeps_no_tensors = true

function DenseLayer:__init(num_input_features, growth_rate, bn_size, drop_rate, memory_efficient)
  self.norm1 = nn.BatchNorm2d(num_input_features)
  self.relu1 = nn.ReLU(true)
  self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, 1, { stride = 1, bias = false })
  self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
  self.relu2 = nn.ReLU(true)
  self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, { stride = 1, padding = 1, bias = false })
  self.drop_rate = drop_rate or 0
  self.memory_efficient = memory_efficient or false
end

-- input: a tensor, or the list of every earlier output (torch's prev_features)
function DenseLayer:forward(input)
  local x = Tensor.is(input) and input or F.cat(input, 1)
  local bottleneck = chain(x, self.norm1, self.relu1, self.conv1)
  release(x, input)
  local y = chain(bottleneck, self.norm2, self.relu2, self.conv2)
  release(bottleneck)
  return y
end

-- _DenseBlock(num_layers, num_input_features, bn_size, growth_rate, drop_rate)
local DenseBlock = nn.class("_DenseBlock", nn.ModuleDict, { torch_class = "torchvision.models.densenet._DenseBlock" })
M._DenseBlock = DenseBlock
DenseBlock.keeps_no_tensors = true

function DenseBlock:__init(num_layers, num_input_features, bn_size, growth_rate, drop_rate, memory_efficient)
  for i = 1, num_layers do
    self:add_module("denselayer" .. i, DenseLayer(num_input_features + (i - 1) * growth_rate, growth_rate, bn_size,
                                                  drop_rate, memory_efficient))
  end
end

function DenseBlock:forward(init_features)
  local features = { init_features }
  for _, kv in ipairs(self:named_children()) do features[#features + 1] = kv[2](features) end
  local y = F.cat(features, 1)
  for i = 2, #features do release(features[i]) end
  return y
end

-- _Transition(num_input_features, num_output_features): norm, relu, conv, pool
local Transition = nn.class("_Transition", nn.Sequential, { torch_class = "torchvision.models.densenet._Transition" })
M._Transition = Transition
Transition.keeps_no_tensors = true

function Transition:__init(num_input_features, num_output_features)
  self.norm = nn.BatchNorm2d(num_input_features)
  self.relu = nn.ReLU(true)
  self.conv = nn.Conv2d(num_input_features, num_output_features, 1, { stride = 1, bias = false })
  self.pool = nn.AvgPool2d({ kernel_size = 2, stride = 2 })
end

-- DenseNet(growth_rate, block_config, num_init_features, {bn_size = 4,
-- drop_rate = 0, num_classes = 1000, memory_efficient = false})
local DenseNet = nn.class("DenseNet", nil, { torch_class = "torchvision.models.densenet.DenseNet" })
M.DenseNet = DenseNet

function DenseNet:__init(growth_rate, block_config, num_init_features, o)
  o = o or {}
  local bn_size = o.bn_size or 4
  self.features = nn.Sequential {
    { "conv0", nn.Conv2d(3, num_init_features, 7, { stride = 2, padding = 3, bias = false }) },
    { "norm0", nn.BatchNorm2d(num_init_features) },
    { "relu0", nn.ReLU(true) },
    { "pool0", nn.MaxPool2d({ kernel_size = 3, stride = 2, padding = 1 }) },
  }
  local num_features = num_init_features
  for i, num_layers in ipairs(block_config) do
    self.features:add_module("denseblock" .. i, DenseBlock(num_layers, num_features, bn_size, growth_rate,
                                                           o.drop_rate or 0, o.memory_efficient))
    num_features = num_features + num_layers * growth_rate
    if i ~= #block_config then
      self.features:add_module("transition" .. i, Transition(num_features, math.floor(num_features / 2)))
      num_features = math.floor(num_features / 2)
    end
  end
  self.features:add_module("norm5", nn.BatchNorm2d(num_features))
  self.classifier = nn.Linear(num_features, o.num_classes or 1000)
end

function DenseNet:forward(x)
  local t = self.features(x)
  local r = F.relu(t)
  release(t, x)
  local p = F.adaptive_avg_pool2d(r, { 1, 1 })
  release(r)
  local y = self.classifier(F.flatten(p, 1))
  release(p)
  return y
end

-- torchvision's pretrained files name "features.denseblock1.denselayer1.norm.1.weight"
-- what the model calls "...norm1.weight"; both load.
local function new_key(k)
  local head, tail = k:match("^(.*denselayer%d+%.[a-z]+)%.([12]%.[a-z_]+)$")
  if not head or not (head:match("%.norm$") or head:match("%.relu$") or head:match("%.conv$")) then return k end
  for _, what in ipairs { "weight", "bias", "running_mean", "running_var" } do
    if tail:sub(3) == what then return head .. tail end
  end
  return k
end

function DenseNet:load_state_dict(sd, opts) return layers.load_state_dict_renamed(self, sd, opts, new_key) end

local function builder(growth_rate, block_config, num_init_features)
  return function(o) return DenseNet(growth_rate, block_config, num_init_features, o) end
end
M.densenet121 = builder(32, { 6, 12, 24, 16 }, 64)
M.densenet161 = builder(48, { 6, 12, 36, 24 }, 96)
M.densenet169 = builder(32, { 6, 12, 32, 32 }, 64)
M.densenet201 = builder(32, { 6, 12, 48, 32 }, 64)

return M
