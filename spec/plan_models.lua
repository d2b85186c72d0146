-- spec/plan_models.lua: EfficientNet and ShuffleNetV2 written against
-- pthcv.nn as a user would, from torchvision 0.14's efficientnet.py and
-- shufflenetv2.py (same classes, attribute names and forwards, so
-- torchvision's state_dicts load), with no pthcv-specific fusion: what
-- spec/plan_spec.lua checks the optimiser fuses as well as hand-written
-- code. Configurations as torchvision's constructors take them.
local pthcv = require "pthcv"
local nn, F = pthcv.nn, pthcv.F

local M = {}

-- ---- EfficientNet -------------------------------------------------------------------
local function make_divisible(v, divisor)
  local new_v = math.max(divisor, math.floor((v + divisor / 2) / divisor) * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return new_v
end

-- Conv2dNormActivation: conv, BatchNorm, optional SiLU ("0", "1", "2")
local Conv2dNormActivation = nn.class("Conv2dNormActivation", nn.Sequential)
function Conv2dNormActivation:__init(cin, cout, kernel_size, stride, groups, activation)
  self:append(nn.Conv2d(cin, cout, kernel_size, { stride = stride or 1, padding = math.floor((kernel_size - 1) / 2),
                                                  groups = groups or 1, bias = false }))
  self:append(nn.BatchNorm2d(cout))
  if activation ~= false then self:append(nn.SiLU(true)) end
end

-- torchvision.ops.SqueezeExcitation: scale = sigmoid(fc2(silu(fc1(avgpool(x))))); scale * x
local SqueezeExcitation = nn.class("SqueezeExcitation")
function SqueezeExcitation:__init(input_channels, squeeze_channels)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
  self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
  self.activation = nn.SiLU(true)
  self.scale_activation = nn.Sigmoid()
end
function SqueezeExcitation:_scale(x)
  local scale = self.avgpool(x)
  scale = self.fc1(scale)
  scale = self.activation(scale)
  scale = self.fc2(scale)
  return self.scale_activation(scale)
end
function SqueezeExcitation:forward(x)
  local scale = self:_scale(x)
  return scale * x
end

-- MBConv(cnf): expand (1x1), depthwise, squeeze-excitation, project, residual
local MBConv = nn.class("MBConv")
function MBConv:__init(cnf)
  self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
  local expanded = make_divisible(cnf.input_channels * cnf.expand_ratio, 8)
  local layers = {}
  if expanded ~= cnf.input_channels then layers[#layers + 1] = Conv2dNormActivation(cnf.input_channels, expanded, 1) end
  layers[#layers + 1] = Conv2dNormActivation(expanded, expanded, cnf.kernel, cnf.stride, expanded)
  layers[#layers + 1] = SqueezeExcitation(expanded, math.max(1, math.floor(cnf.input_channels / 4)))
  layers[#layers + 1] = Conv2dNormActivation(expanded, cnf.out_channels, 1, 1, 1, false)
  self.block = nn.Sequential(layers)
  self.stochastic_depth = nn.Identity()   -- StochasticDepth: the identity at inference
end
function MBConv:forward(input)
  local result = self.block(input)
  if self.use_res_connect then
    result = self.stochastic_depth(result)
    result = result + input
  end
  return result
end

-- EfficientNet(setting, num_classes): setting rows {expand_ratio, kernel,
-- stride, input_channels, out_channels, num_layers}, as MBConvConfig's
local EfficientNet = nn.class("EfficientNet")
M.EfficientNet = EfficientNet
function EfficientNet:__init(setting, num_classes)
  local layers = { Conv2dNormActivation(3, setting[1][4], 3, 2) }
  for _, s in ipairs(setting) do
    local stage = {}
    for i = 1, s[6] do
      stage[i] = MBConv({ expand_ratio = s[1], kernel = s[2], stride = i == 1 and s[3] or 1,
                          input_channels = i == 1 and s[4] or s[5], out_channels = s[5] })
    end
    layers[#layers + 1] = nn.Sequential(stage)
  end
  local last_in = setting[#setting][5]
  layers[#layers + 1] = Conv2dNormActivation(last_in, 4 * last_in, 1)
  self.features = nn.Sequential(layers)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.classifier = nn.Sequential(nn.Dropout(0.2, true), nn.Linear(4 * last_in, num_classes))
end
function EfficientNet:forward(x)
  x = self.features(x)
  x = self.avgpool(x)
  x = F.flatten(x, 1)
  return self.classifier(x)
end

-- ---- ShuffleNetV2 -------------------------------------------------------------------
-- torchvision's channel_shuffle: view, transpose, contiguous, view (Tensor
-- methods count dims from 1)
local function channel_shuffle(x, groups)
  local n, c, h, w = unpack(x.shape)
  x = x:view(n, groups, c / groups, h, w)
  x = x:transpose(2, 3):contiguous()
  return x:view(n, c, h, w)
end

local function depthwise_conv(i, o, kernel_size, stride, padding)
  return nn.Conv2d(i, o, kernel_size, { stride = stride, padding = padding, bias = false, groups = i })
end

local InvertedResidual = nn.class("InvertedResidual")
function InvertedResidual:__init(inp, oup, stride)
  self.stride = stride
  local branch_features = oup / 2
  if stride > 1 then
    self.branch1 = nn.Sequential(
      depthwise_conv(inp, inp, 3, stride, 1), nn.BatchNorm2d(inp),
      nn.Conv2d(inp, branch_features, 1, { bias = false }), nn.BatchNorm2d(branch_features), nn.ReLU(true))
  else
    self.branch1 = nn.Sequential()
  end
  self.branch2 = nn.Sequential(
    nn.Conv2d(stride > 1 and inp or branch_features, branch_features, 1, { bias = false }),
    nn.BatchNorm2d(branch_features), nn.ReLU(true),
    depthwise_conv(branch_features, branch_features, 3, stride, 1), nn.BatchNorm2d(branch_features),
    nn.Conv2d(branch_features, branch_features, 1, { bias = false }), nn.BatchNorm2d(branch_features), nn.ReLU(true))
end
function InvertedResidual:forward(x)
  local out
  if self.stride == 1 then
    local x1, x2 = unpack(F.chunk(x, 2, 1))
    out = F.cat({ x1, self.branch2(x2) }, 1)
  else
    out = F.cat({ self.branch1(x), self.branch2(x) }, 1)
  end
  return channel_shuffle(out, 2)
end

-- ShuffleNetV2(stages_repeats, stages_out_channels, num_classes)
local ShuffleNetV2 = nn.class("ShuffleNetV2")
M.ShuffleNetV2 = ShuffleNetV2
function ShuffleNetV2:__init(stages_repeats, stages_out_channels, num_classes)
  local input_channels, output_channels = 3, stages_out_channels[1]
  self.conv1 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 3, 2, 1, { bias = false }),
                             nn.BatchNorm2d(output_channels), nn.ReLU(true))
  input_channels = output_channels
  self.maxpool = nn.MaxPool2d(3, 2, 1)
  for i, repeats in ipairs(stages_repeats) do
    output_channels = stages_out_channels[i + 1]
    local seq = { InvertedResidual(input_channels, output_channels, 2) }
    for _ = 2, repeats do seq[#seq + 1] = InvertedResidual(output_channels, output_channels, 1) end
    self["stage" .. (i + 1)] = nn.Sequential(seq)
    input_channels = output_channels
  end
  output_channels = stages_out_channels[#stages_out_channels]
  self.conv5 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, 1, 0, { bias = false }),
                             nn.BatchNorm2d(output_channels), nn.ReLU(true))
  self.fc = nn.Linear(output_channels, num_classes)
end
function ShuffleNetV2:forward(x)
  x = self.conv1(x)
  x = self.maxpool(x)
  x = self.stage2(x)
  x = self.stage3(x)
  x = self.stage4(x)
  x = self.conv5(x)
  x = F.mean(x, { 2, 3 })   -- globalpool
  return self.fc(x)
end

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
