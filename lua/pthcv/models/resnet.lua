-- lua/pthcv/models/resnet.lua: torchvision's ResNet family: resnet18/34/50/
-- 101/152, resnext50_32x4d, resnext101_32x8d/64x4d, wide_resnet50_2/101_2.
-- The forwards are torchvision's; once planned (pthcv.nn.plan) each
-- conv+BatchNorm+ReLU is one kernel call, and the residual add with the
-- last ReLU runs in the last convolution's store.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local chain = require("pthcv.models.blocks").chain

local M = {}

local function conv3x3(cin, cout, stride, groups, dilation)
  dilation = dilation or 1
  return nn.Conv2d(cin, cout, 3, { stride = stride or 1, padding = dilation, groups = groups or 1, bias = false,
                                   dilation = dilation })
end
local function conv1x1(cin, cout, stride)
  return nn.Conv2d(cin, cout, 1, { stride = stride or 1, bias = false })
end

-- BasicBlock(inplanes, planes, stride, downsample)
local BasicBlock = nn.class("BasicBlock", nil, { torch_class = "torchvision.models.resnet.BasicBlock" })
M.BasicBlock = BasicBlock
BasicBlock.expansion = 1

function BasicBlock:__init(inplanes, planes, stride, downsample, groups, base_width, dilation)
  if (groups or 1) ~= 1 or (base_width or 64) ~= 64 then
    error("pthcv: BasicBlock only supports groups=1 and base_width=64", 3)
  end
  if (dilation or 1) > 1 then error("pthcv: dilation > 1 is not supported in BasicBlock", 3) end
  self.conv1 = conv3x3(inplanes, planes, stride)
  self.bn1 = nn.BatchNorm2d(planes)
  self.relu = nn.ReLU(true)
  self.conv2 = conv3x3(planes, planes)
  self.bn2 = nn.BatchNorm2d(planes)
  self.downsample = downsample
  self.stride = stride or 1
end

-- relu(bn2(conv2(relu(bn1(conv1(x))))) + identity)
local function residual_tail(self, y, x)
  local identity = x
  if self.downsample then identity = self.downsample(x) end
  local z = y + identity
  release(y)
  release(identity, x)
  local out = self.relu(z)
  release(z, out)
  return out
end

function BasicBlock:forward(x)
  local t = chain(x, self.conv1, self.bn1, self.relu)
  local y = chain(t, self.conv2, self.bn2)
  release(t)
  return residual_tail(self, y, x)
end
BasicBlock.keeps_no_tensors = true

-- Bottleneck(inplanes, planes, stride, downsample, groups, base_width, dilation)
local Bottleneck = nn.class("Bottleneck", nil, { torch_class = "torchvision.models.resnet.Bottleneck" })
M.Bottleneck = Bottleneck
Bottleneck.expansion = 4

function Bottleneck:__init(inplanes, planes, stride, downsample, groups, base_width, dilation)
  groups, base_width = groups or 1, base_width or 64
  local width = math.floor(planes * (base_width / 64)) * groups
  self.conv1 = conv1x1(inplanes, width)
  self.bn1 = nn.BatchNorm2d(width)
  self.conv2 = conv3x3(width, width, stride, groups, dilation)
  self.bn2 = nn.BatchNorm2d(width)
  self.conv3 = conv1x1(width, planes * 4)
  self.bn3 = nn.BatchNorm2d(planes * 4)
  self.relu = nn.ReLU(true)
  self.downsample = downsample
  self.stride = stride or 1
end

function Bottleneck:forward(x)
  local t = chain(x, self.conv1, self.bn1, self.relu)
  local u = chain(t, self.conv2, self.bn2, self.relu)
  release(t)
  local y = chain(u, self.conv3, self.bn3)
  release(u)
  return residual_tail(self, y, x)
end
Bottleneck.keeps_no_tensors = true

-- ResNet(block, layers, {num_classes = 1000, groups = 1, width_per_group = 64,
-- replace_stride_with_dilation = {false, false, false}}): the last option,
-- as torchvision's, dilates layer2..4 instead of striding (the segmentation
-- models' backbones)
local ResNet = nn.class("ResNet", nil, { torch_class = "torchvision.models.resnet.ResNet" })
M.ResNet = ResNet

function ResNet:__init(block, layers, o)
  o = o or {}
  local dilate = o.replace_stride_with_dilation or { false, false, false }
  self.inplanes = 64
  self.dilation = 1
  self.groups = o.groups or 1
  self.base_width = o.width_per_group or 64
  self.conv1 = nn.Conv2d(3, self.inplanes, 7, { stride = 2, padding = 3, bias = false })
  self.bn1 = nn.BatchNorm2d(self.inplanes)
  self.relu = nn.ReLU(true)
  self.maxpool = nn.MaxPool2d(3, 2, 1)
  self.layer1 = self:_make_layer(block, 64, layers[1])
  self.layer2 = self:_make_layer(block, 128, layers[2], 2, dilate[1])
  self.layer3 = self:_make_layer(block, 256, layers[3], 2, dilate[2])
  self.layer4 = self:_make_layer(block, 512, layers[4], 2, dilate[3])
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.fc = nn.Linear(512 * block.expansion, o.num_classes or 1000)
end

function ResNet:_make_layer(block, planes, blocks, stride, dilate)
  stride = stride or 1
  local downsample
  local previous_dilation = self.dilation
  if dilate then
    self.dilation = self.dilation * stride
    stride = 1
  end
  if stride ~= 1 or self.inplanes ~= planes * block.expansion then
    downsample = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                               nn.BatchNorm2d(planes * block.expansion))
  end
  local layers = { block(self.inplanes, planes, stride, downsample, self.groups, self.base_width, previous_dilation) }
  self.inplanes = planes * block.expansion
  for _ = 2, blocks do
    layers[#layers + 1] = block(self.inplanes, planes, 1, nil, self.groups, self.base_width, self.dilation)
  end
  return nn.Sequential(layers)
end

-- every intermediate is freed once used (release.lua); x is the caller's
function ResNet:forward(x)
  local y = chain(x, self.conv1, self.bn1, self.relu, self.maxpool, self.layer1, self.layer2, self.layer3,
                  self.layer4, self.avgpool)
  local p = F.flatten(y, 1)
  local out = self.fc(p)
  release(y, out)
  return out
end

local function builder(block, layers, extra)
  return function(o)
    o = o or {}
    local opts = { num_classes = o.num_classes, groups = o.groups, width_per_group = o.width_per_group,
                   replace_stride_with_dilation = o.replace_stride_with_dilation }
    for k, v in pairs(extra or {}) do if opts[k] == nil then opts[k] = v end end
    return ResNet(block, layers, opts)
  end
end

M.resnet18 = builder(BasicBlock, { 2, 2, 2, 2 })
M.resnet34 = builder(BasicBlock, { 3, 4, 6, 3 })
M.resnet50 = builder(Bottleneck, { 3, 4, 6, 3 })
M.resnet101 = builder(Bottleneck, { 3, 4, 23, 3 })
M.resnet152 = builder(Bottleneck, { 3, 8, 36, 3 })
M.resnext50_32x4d = builder(Bottleneck, { 3, 4, 6, 3 }, { groups = 32, width_per_group = 4 })
M.resnext101_32x8d = builder(Bottleneck, { 3, 4, 23, 3 }, { groups = 32, width_per_group = 8 })
M.resnext101_64x4d = builder(Bottleneck, { 3, 4, 23, 3 }, { groups = 64, width_per_group = 4 })
M.wide_resnet50_2 = builder(Bottleneck, { 3, 4, 6, 3 }, { width_per_group = 128 })
M.wide_resnet101_2 = builder(Bottleneck, { 3, 4, 23, 3 }, { width_per_group = 128 })

return M
