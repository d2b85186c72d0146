-- lua/pthcv/models/inception.lua: torchvision's Inception v3 (inception_v3;
-- 299x299 inputs in its training, any size from 75x75 runs). Each
-- BasicConv2d runs, once planned, as one fused convolution. transform_input
-- = true (what torchvision sets with its pretrained weights) re-normalises
-- an input normalised with ImageNet's mean and std to the (x - 0.5) / 0.5
-- the ported weights expect. AuxLogits (aux_logits, the default) is kept for
-- the state_dict and print and, as in torch's eval mode, not run.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local layers = require "pthcv.models.layers"
local googlenet = require "pthcv.models.googlenet"

local M = {}
local branches = googlenet.branches

local BasicConv2d = layers.basic_conv2d("torchvision.models.inception.BasicConv2d")
M.BasicConv2d = BasicConv2d

local function conv(cin, cout, k, o)
  o = o or {}
  o.kernel_size = k
  return BasicConv2d(cin, cout, o)
end

-- a chain of convolutions, called in order
local function chain(...)
  local convs = { ... }
  return function(x)
    local y = x
    for _, c in ipairs(convs) do
      local t = c(y)
      release(y, x)
      y = t
    end
    return y
  end
end

local function avg_pool_then(c)
  return function(x)
    local p = F.avg_pool2d(x, 3, { stride = 1, padding = 1 })
    local y = c(p)
    release(p)
    return y
  end
end
local function max_pool(x) return F.max_pool2d(x, 3, { stride = 2 }) end

local function block(name)
  local cls = nn.class(name, nil, { torch_class = "torchvision.models.inception." .. name })
  cls.keeps_no_tensors = true
  M[name] = cls
  return cls
end

local InceptionA = block("InceptionA")
function InceptionA:__init(in_channels, pool_features)
  self.branch1x1 = conv(in_channels, 64, 1)
  self.branch5x5_1 = conv(in_channels, 48, 1)
  self.branch5x5_2 = conv(48, 64, 5, { padding = 2 })
  self.branch3x3dbl_1 = conv(in_channels, 64, 1)
  self.branch3x3dbl_2 = conv(64, 96, 3, { padding = 1 })
  self.branch3x3dbl_3 = conv(96, 96, 3, { padding = 1 })
  self.branch_pool = conv(in_channels, pool_features, 1)
end
function InceptionA:forward(x)
  return branches(x, { self.branch1x1, chain(self.branch5x5_1, self.branch5x5_2),
                       chain(self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                       avg_pool_then(self.branch_pool) })
end

local InceptionB = block("InceptionB")
function InceptionB:__init(in_channels)
  self.branch3x3 = conv(in_channels, 384, 3, { stride = 2 })
  self.branch3x3dbl_1 = conv(in_channels, 64, 1)
  self.branch3x3dbl_2 = conv(64, 96, 3, { padding = 1 })
  self.branch3x3dbl_3 = conv(96, 96, 3, { stride = 2 })
end
function InceptionB:forward(x)
  return branches(x, { self.branch3x3, chain(self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                       max_pool })
end

local InceptionC = block("InceptionC")
function InceptionC:__init(in_channels, channels_7x7)
  local c7 = channels_7x7
  self.branch1x1 = conv(in_channels, 192, 1)
  self.branch7x7_1 = conv(in_channels, c7, 1)
  self.branch7x7_2 = conv(c7, c7, { 1, 7 }, { padding = { 0, 3 } })
  self.branch7x7_3 = conv(c7, 192, { 7, 1 }, { padding = { 3, 0 } })
  self.branch7x7dbl_1 = conv(in_channels, c7, 1)
  self.branch7x7dbl_2 = conv(c7, c7, { 7, 1 }, { padding = { 3, 0 } })
  self.branch7x7dbl_3 = conv(c7, c7, { 1, 7 }, { padding = { 0, 3 } })
  self.branch7x7dbl_4 = conv(c7, c7, { 7, 1 }, { padding = { 3, 0 } })
  self.branch7x7dbl_5 = conv(c7, 192, { 1, 7 }, { padding = { 0, 3 } })
  self.branch_pool = conv(in_channels, 192, 1)
end
function InceptionC:forward(x)
  return branches(x, { self.branch1x1, chain(self.branch7x7_1, self.branch7x7_2, self.branch7x7_3),
                       chain(self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                             self.branch7x7dbl_5),
                       avg_pool_then(self.branch_pool) })
end

local InceptionD = block("InceptionD")
function InceptionD:__init(in_channels)
  self.branch3x3_1 = conv(in_channels, 192, 1)
  self.branch3x3_2 = conv(192, 320, 3, { stride = 2 })
  self.branch7x7x3_1 = conv(in_channels, 192, 1)
  self.branch7x7x3_2 = conv(192, 192, { 1, 7 }, { padding = { 0, 3 } })
  self.branch7x7x3_3 = conv(192, 192, { 7, 1 }, { padding = { 3, 0 } })
  self.branch7x7x3_4 = conv(192, 192, 3, { stride = 2 })
end
function InceptionD:forward(x)
  return branches(x, { chain(self.branch3x3_1, self.branch3x3_2),
                       chain(self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4),
                       max_pool })
end

local InceptionE = block("InceptionE")
function InceptionE:__init(in_channels)
  self.branch1x1 = conv(in_channels, 320, 1)
  self.branch3x3_1 = conv(in_channels, 384, 1)
  self.branch3x3_2a = conv(384, 384, { 1, 3 }, { padding = { 0, 1 } })
  self.branch3x3_2b = conv(384, 384, { 3, 1 }, { padding = { 1, 0 } })
  self.branch3x3dbl_1 = conv(in_channels, 448, 1)
  self.branch3x3dbl_2 = conv(448, 384, 3, { padding = 1 })
  self.branch3x3dbl_3a = conv(384, 384, { 1, 3 }, { padding = { 0, 1 } })
  self.branch3x3dbl_3b = conv(384, 384, { 3, 1 }, { padding = { 1, 0 } })
  self.branch_pool = conv(in_channels, 192, 1)
end
-- a convolution split in two: (1x3 | 3x1) side by side
local function split(first, a, b)
  return function(x)
    local t = first(x)
    local y = branches(t, { a, b })
    release(t)
    return y
  end
end
function InceptionE:forward(x)
  return branches(x, { self.branch1x1, split(self.branch3x3_1, self.branch3x3_2a, self.branch3x3_2b),
                       split(chain(self.branch3x3dbl_1, self.branch3x3dbl_2), self.branch3x3dbl_3a,
                             self.branch3x3dbl_3b),
                       avg_pool_then(self.branch_pool) })
end

local InceptionAux = block("InceptionAux")
function InceptionAux:__init(in_channels, num_classes)
  self.conv0 = conv(in_channels, 128, 1)
  self.conv1 = conv(128, 768, 5)
  self.fc = nn.Linear(768, num_classes)
end
function InceptionAux:forward(x)
  x = self.conv1(self.conv0(F.avg_pool2d(x, 5, { stride = 3 })))
  return self.fc(F.flatten(F.adaptive_avg_pool2d(x, { 1, 1 }), 1))
end

-- Inception3({num_classes = 1000, aux_logits = true, transform_input = false, dropout = 0.5})
local Inception3 = nn.class("Inception3", nil, { torch_class = "torchvision.models.inception.Inception3" })
M.Inception3 = Inception3

function Inception3:__init(o)
  o = o or {}
  local nc = o.num_classes or 1000
  self.aux_logits = o.aux_logits == nil or o.aux_logits
  self.transform_input = o.transform_input or false
  self.Conv2d_1a_3x3 = conv(3, 32, 3, { stride = 2 })
  self.Conv2d_2a_3x3 = conv(32, 32, 3)
  self.Conv2d_2b_3x3 = conv(32, 64, 3, { padding = 1 })
  self.maxpool1 = nn.MaxPool2d({ kernel_size = 3, stride = 2 })
  self.Conv2d_3b_1x1 = conv(64, 80, 1)
  self.Conv2d_4a_3x3 = conv(80, 192, 3)
  self.maxpool2 = nn.MaxPool2d({ kernel_size = 3, stride = 2 })
  self.Mixed_5b = InceptionA(192, 32)
  self.Mixed_5c = InceptionA(256, 64)
  self.Mixed_5d = InceptionA(288, 64)
  self.Mixed_6a = InceptionB(288)
  self.Mixed_6b = InceptionC(768, 128)
  self.Mixed_6c = InceptionC(768, 160)
  self.Mixed_6d = InceptionC(768, 160)
  self.Mixed_6e = InceptionC(768, 192)
  if self.aux_logits then self.AuxLogits = InceptionAux(768, nc) end
  self.Mixed_7a = InceptionD(768)
  self.Mixed_7b = InceptionE(1280)
  self.Mixed_7c = InceptionE(2048)
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.dropout = nn.Dropout(o.dropout or 0.5)
  self.fc = nn.Linear(2048, nc)
end

local TRUNK = { "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool" }

function Inception3:forward(x)
  local y = googlenet.run_trunk(self, TRUNK, self.transform_input and layers.transform_input(x) or x)
  local out = self.fc(F.flatten(y, 1))
  release(y)
  return out
end

function M.inception_v3(o) return Inception3(o) end

return M
