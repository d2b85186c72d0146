-- lua/pthcv/models/shufflenetv2.lua: torchvision's ShuffleNetV2 x0.5, x1.0,
-- x1.5 and x2.0. Each branch is a Sequential, so eval() folds its
-- BatchNorms into the convolutions and fuses the ReLUs.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"

local M = {}

local function depthwise_conv(i, o, kernel_size, stride, padding)
  return nn.Conv2d(i, o, kernel_size, { stride = stride, padding = padding, bias = false, groups = i })
end

-- InvertedResidual(inp, oup, stride)
local InvertedResidual = nn.class("InvertedResidual", nil,
  { torch_class = "torchvision.models.shufflenetv2.InvertedResidual" })
M.InvertedResidual = InvertedResidual
InvertedResidual.keeps_no_tensors = true

function InvertedResidual:__init(inp, oup, stride)
  if stride < 1 or stride > 3 then error("pthcv: ShuffleNetV2: illegal stride value " .. tostring(stride), 3) end
  self.stride = stride
  local branch_features = math.floor(oup / 2)
  if stride == 1 and inp ~= branch_features * 2 then
    error(string.format("pthcv: ShuffleNetV2: invalid combination of stride %d, inp %d and oup %d", stride, inp, oup), 3)
  end
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
    local b = self.branch2(x2)
    out = F.cat({ x1, b }, 1)
    release(b)
  else
    local b1, b2 = self.branch1(x), self.branch2(x)
    out = F.cat({ b1, b2 }, 1)
    release(b1); release(b2)
  end
  local y = F.channel_shuffle(out, 2)
  release(out)
  return y
end

-- ShuffleNetV2(stages_repeats, stages_out_channels, {num_classes = 1000})
local ShuffleNetV2 = nn.class("ShuffleNetV2", nil, { torch_class = "torchvision.models.shufflenetv2.ShuffleNetV2" })
M.ShuffleNetV2 = ShuffleNetV2

function ShuffleNetV2:__init(stages_repeats, stages_out_channels, o)
  o = o or {}
  if #stages_repeats ~= 3 then error("pthcv: ShuffleNetV2: expected stages_repeats as a list of 3 ints", 3) end
  if #stages_out_channels ~= 5 then error("pthcv: ShuffleNetV2: expected stages_out_channels as a list of 5 ints", 3) end
  self._stage_out_channels = stages_out_channels
  local input_channels, output_channels = 3, stages_out_channels[1]
  self.conv1 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 3, 2, 1, { bias = false }),
                             nn.BatchNorm2d(output_channels), nn.ReLU(true))
  input_channels = output_channels
  self.maxpool = nn.MaxPool2d({ kernel_size = 3, stride = 2, padding = 1 })
  for i, repeats in ipairs(stages_repeats) do
    output_channels = stages_out_channels[i + 1]
    local seq = { InvertedResidual(input_channels, output_channels, 2) }
    for _ = 2, repeats do seq[#seq + 1] = InvertedResidual(output_channels, output_channels, 1) end
    self["stage" .. (i + 1)] = nn.Sequential(seq)
    input_channels = output_channels
  end
  output_channels = stages_out_channels[5]
  self.conv5 = nn.Sequential(nn.Conv2d(input_channels, output_channels, 1, 1, 0, { bias = false }),
                             nn.BatchNorm2d(output_channels), nn.ReLU(true))
  self.fc = nn.Linear(output_channels, o.num_classes or 1000)
end

function ShuffleNetV2:forward(x)
  local y = x
  for _, name in ipairs { "conv1", "maxpool", "stage2", "stage3", "stage4", "conv5" } do
    local t = self[name](y)
    release(y, x)
    y = t
  end
  local p = F.mean(y, { 2, 3 })   -- globalpool
  release(y)
  y = self.fc(p)
  release(p)
  return y
end

local function builder(repeats, channels)
  return function(o) return ShuffleNetV2(repeats, channels, o) end
end
M.shufflenet_v2_x0_5 = builder({ 4, 8, 4 }, { 24, 48, 96, 192, 1024 })
M.shufflenet_v2_x1_0 = builder({ 4, 8, 4 }, { 24, 116, 232, 464, 1024 })
M.shufflenet_v2_x1_5 = builder({ 4, 8, 4 }, { 24, 176, 352, 704, 1024 })
M.shufflenet_v2_x2_0 = builder({ 4, 8, 4 }, { 24, 244, 488, 976, 2048 })

return M
