-- examples/shufflenet_v2.lua: ShuffleNetV2 written against pthcv.nn as a
-- user would, from torchvision's shufflenetv2.py (0.14): the same modules
-- under the same attribute names, so torchvision's state_dict loads
-- unchanged and the logits equal torch's. pthcv.models.shufflenet_v2_x1_0
-- is the zoo's version of the same network; this one uses nothing but
-- pthcv.nn and pthcv.F.
--
--   luajit examples/shufflenet_v2.lua WEIGHTS.pth INPUT.npy [OUTPUT.npy]   (x1.0)
--   bin/pthcv run --script examples/shufflenet_v2.lua --weights WEIGHTS.pth --input x.npy --output y.npy
--
-- Returns the (unloaded) x1.0 module when loaded as a script by `pthcv run`,
-- and its class: ShuffleNetV2(stages_repeats, stages_out_channels, num_classes).
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
local pthcv = require "pthcv"
local nn, F = pthcv.nn, pthcv.F

local function depthwise_conv(i, o, stride)
  return nn.Conv2d(i, o, 3, { stride = stride, padding = 1, bias = false, groups = i })
end

-- the (N, C, H, W) channels as `groups` interleaved groups: view, transpose, copy
local function channel_shuffle(x, groups)
  local n, c, h, w = unpack(x.shape)
  x = x:view(n, groups, c / groups, h, w):transpose(2, 3):contiguous()   -- Tensor methods: dims from 1
  return x:view(n, c, h, w)
end

local InvertedResidual = nn.class("InvertedResidual")
function InvertedResidual:__init(inp, oup, stride)
  self.stride = stride
  local branch_features = oup / 2
  if stride > 1 then
    self.branch1 = nn.Sequential(
      depthwise_conv(inp, inp, stride), nn.BatchNorm2d(inp),
      nn.Conv2d(inp, branch_features, 1, { bias = false }), nn.BatchNorm2d(branch_features), nn.ReLU(true))
  else
    self.branch1 = nn.Sequential()
  end
  self.branch2 = nn.Sequential(
    nn.Conv2d(stride > 1 and inp or branch_features, branch_features, 1, { bias = false }),
    nn.BatchNorm2d(branch_features), nn.ReLU(true),
    depthwise_conv(branch_features, branch_features, stride), nn.BatchNorm2d(branch_features),
    nn.Conv2d(branch_features, branch_features, 1, { bias = false }), nn.BatchNorm2d(branch_features), nn.ReLU(true))
end
-- F takes torch's 0-based dims: F.chunk(x, 2, 1) splits the channels, as x.chunk(2, dim=1)
function InvertedResidual:forward(x)
  local out
  if self.stride == 1 then
    local halves = F.chunk(x, 2, 1)
    out = F.cat({ halves[1], self.branch2(halves[2]) }, 1)
  else
    out = F.cat({ self.branch1(x), self.branch2(x) }, 1)
  end
  return channel_shuffle(out, 2)
end

local ShuffleNetV2 = nn.class("ShuffleNetV2")
function ShuffleNetV2:__init(stages_repeats, stages_out_channels, num_classes)
  local input_channels = stages_out_channels[1]
  self.conv1 = nn.Sequential(nn.Conv2d(3, input_channels, 3, 2, 1, { bias = false }),
                             nn.BatchNorm2d(input_channels), nn.ReLU(true))
  self.maxpool = nn.MaxPool2d(3, 2, 1)
  for i, repeats in ipairs(stages_repeats) do
    local output_channels = stages_out_channels[i + 1]
    local seq = { InvertedResidual(input_channels, output_channels, 2) }
    for _ = 2, repeats do seq[#seq + 1] = InvertedResidual(output_channels, output_channels, 1) end
    self["stage" .. (i + 1)] = nn.Sequential(seq)
    input_channels = output_channels
  end
  local last = stages_out_channels[5]
  self.conv5 = nn.Sequential(nn.Conv2d(input_channels, last, 1, 1, 0, { bias = false }), nn.BatchNorm2d(last),
                             nn.ReLU(true))
  self.fc = nn.Linear(last, num_classes or 1000)
end
function ShuffleNetV2:forward(x)
  x = self.maxpool(self.conv1(x))
  x = self.conv5(self.stage4(self.stage3(self.stage2(x))))
  return self.fc(F.mean(x, { 2, 3 }))   -- global pooling, as x.mean([2, 3])
end

local model = ShuffleNetV2({ 4, 8, 4 }, { 24, 116, 232, 464, 1024 }, 1000)

-- Run directly: weights, input (.npy) and optionally where to write the logits.
if not pcall(debug.getlocal, 4, 1) then
  if not arg[2] then
    io.stderr:write("usage: luajit examples/shufflenet_v2.lua WEIGHTS.pth INPUT.npy [OUTPUT.npy]\n")
    os.exit(2)
  end
  local sd = pthcv.state_dict(arg[1])
  model = ShuffleNetV2({ 4, 8, 4 }, { 24, 116, 232, 464, 1024 }, sd["fc.weight"]:size(1))
  model:load_state_dict(sd)
  model:eval()
  local y = model(pthcv.load_npy(arg[2]))
  if arg[3] then pthcv.save(arg[3], y) end
  local p, idx = F.softmax(y, -1):topk(5)
  for i = 1, 5 do print(string.format("class %4d  p %.4f", idx:get(1, i) - 1, p:get(1, i))) end
end

return model, ShuffleNetV2
