-- lua/pthcv/models/googlenet.lua: torchvision's GoogLeNet (Inception v1).
-- Each BasicConv2d (conv, BatchNorm eps 0.001, ReLU) runs, once planned, as
-- one fused convolution. The auxiliary classifiers (aux_logits, the default
-- without pretrained weights) are kept for the state_dict and print; in eval
-- mode torch does not run them, nor does pthcv.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local layers = require "pthcv.models.layers"

local M = {}

local BasicConv2d = layers.basic_conv2d("torchvision.models.googlenet.BasicConv2d")
M.BasicConv2d = BasicConv2d

-- Inception(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
local Inception = nn.class("Inception", nil, { torch_class = "torchvision.models.googlenet.Inception" })
M.Inception = Inception
Inception.keeps_no_tensors = true

function Inception:__init(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
  self.branch1 = BasicConv2d(in_channels, ch1x1, { kernel_size = 1 })
  self.branch2 = nn.Sequential(BasicConv2d(in_channels, ch3x3red, { kernel_size = 1 }),
                               BasicConv2d(ch3x3red, ch3x3, { kernel_size = 3, padding = 1 }))
  -- kernel_size 3, not 5: torchvision's known bug (pytorch/vision#906), kept for its weights
  self.branch3 = nn.Sequential(BasicConv2d(in_channels, ch5x5red, { kernel_size = 1 }),
                               BasicConv2d(ch5x5red, ch5x5, { kernel_size = 3, padding = 1 }))
  self.branch4 = nn.Sequential(nn.MaxPool2d({ kernel_size = 3, stride = 1, padding = 1, ceil_mode = true }),
                               BasicConv2d(in_channels, pool_proj, { kernel_size = 1 }))
end

-- the branches of x, concatenated along the channels
function M.branches(x, fns)
  local outs = {}
  for i, f in ipairs(fns) do outs[i] = f(x) end
  local y = F.cat(outs, 1)
  for _, t in ipairs(outs) do release(t) end
  return y
end

function Inception:forward(x)
  return M.branches(x, { self.branch1, self.branch2, self.branch3, self.branch4 })
end

-- InceptionAux(in_channels, num_classes [, dropout = 0.7])
local InceptionAux = nn.class("InceptionAux", nil, { torch_class = "torchvision.models.googlenet.InceptionAux" })
M.InceptionAux = InceptionAux

function InceptionAux:__init(in_channels, num_classes, dropout)
  self.conv = BasicConv2d(in_channels, 128, { kernel_size = 1 })
  self.fc1 = nn.Linear(2048, 1024)
  self.fc2 = nn.Linear(1024, num_classes)
  self.dropout = nn.Dropout(dropout or 0.7)
end

function InceptionAux:forward(x)
  x = self.conv(F.adaptive_avg_pool2d(x, { 4, 4 }))
  return self.fc2(F.relu(self.fc1(F.flatten(x, 1))))
end

-- GoogLeNet({num_classes = 1000, aux_logits = true, transform_input = false,
-- dropout = 0.2, dropout_aux = 0.7})
local GoogLeNet = nn.class("GoogLeNet", nil, { torch_class = "torchvision.models.googlenet.GoogLeNet" })
M.GoogLeNet = GoogLeNet

function GoogLeNet:__init(o)
  o = o or {}
  local nc = o.num_classes or 1000
  self.aux_logits = o.aux_logits == nil or o.aux_logits
  self.transform_input = o.transform_input or false
  local function pool(k) return nn.MaxPool2d(k, { stride = 2, ceil_mode = true }) end
  self.conv1 = BasicConv2d(3, 64, { kernel_size = 7, stride = 2, padding = 3 })
  self.maxpool1 = pool(3)
  self.conv2 = BasicConv2d(64, 64, { kernel_size = 1 })
  self.conv3 = BasicConv2d(64, 192, { kernel_size = 3, padding = 1 })
  self.maxpool2 = pool(3)
  self.inception3a = Inception(192, 64, 96, 128, 16, 32, 32)
  self.inception3b = Inception(256, 128, 128, 192, 32, 96, 64)
  self.maxpool3 = pool(3)
  self.inception4a = Inception(480, 192, 96, 208, 16, 48, 64)
  self.inception4b = Inception(512, 160, 112, 224, 24, 64, 64)
  self.inception4c = Inception(512, 128, 128, 256, 24, 64, 64)
  self.inception4d = Inception(512, 112, 144, 288, 32, 64, 64)
  self.inception4e = Inception(528, 256, 160, 320, 32, 128, 128)
  self.maxpool4 = pool(2)
  self.inception5a = Inception(832, 256, 160, 320, 32, 128, 128)
  self.inception5b = Inception(832, 384, 192, 384, 48, 128, 128)
  if self.aux_logits then
    self.aux1 = InceptionAux(512, nc, o.dropout_aux or 0.7)
    self.aux2 = InceptionAux(528, nc, o.dropout_aux or 0.7)
  end
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.dropout = nn.Dropout(o.dropout or 0.2)
  self.fc = nn.Linear(1024, nc)
end

-- eval mode: the main classifier only (torch returns the aux logits in training)
local TRUNK = { "conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                "inception5a", "inception5b", "avgpool" }

function M.run_trunk(self, names, x)
  local y = x
  for _, name in ipairs(names) do
    local t = self[name](y)
    release(y, x)
    y = t
  end
  return y
end

function GoogLeNet:forward(x)
  local y = M.run_trunk(self, TRUNK, self.transform_input and layers.transform_input(x) or x)
  local out = self.fc(F.flatten(y, 1))
  release(y)
  return out
end

function M.googlenet(o) return GoogLeNet(o) end

return M
