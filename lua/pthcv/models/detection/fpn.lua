-- lua/pthcv/models/detection/fpn.lua: torchvision.ops.FeaturePyramidNetwork
-- and its extra blocks (LastLevelMaxPool, LastLevelP6P7).
--
-- forward(features): features {t1, ..., tn, names = {...}} from the
-- highest resolution down; each gets a 1x1 lateral convolution (inner
-- block), the coarser result upsampled (nearest, to the lateral's size) is
-- added to it (inside the convolution's kernel), and a 3x3 convolution
-- (layer block) gives the level's output. Extra blocks append levels.
local nn = require "pthcv.nn"
local F = nn.F
local blocks = require "pthcv.models.blocks"

local M = {}

local FPN = nn.class("FeaturePyramidNetwork", nil,
  { torch_class = "torchvision.ops.feature_pyramid_network.FeaturePyramidNetwork" })
M.FeaturePyramidNetwork = FPN

-- FeaturePyramidNetwork(in_channels_list, out_channels [, extra_blocks,
-- norm_layer = fn(c) -> module or nil])
function FPN:__init(in_channels_list, out_channels, extra_blocks, norm_layer)
  self.inner_blocks = nn.ModuleList()
  self.layer_blocks = nn.ModuleList()
  for _, c in ipairs(in_channels_list) do
    if c == 0 then error("pthcv: FeaturePyramidNetwork: in_channels=0 is not supported", 3) end
    self.inner_blocks:append(blocks.Conv2dNormActivation(c, out_channels, { kernel_size = 1, padding = 0,
      norm_layer = norm_layer or false, activation_layer = false }))
    self.layer_blocks:append(blocks.Conv2dNormActivation(out_channels, out_channels, { kernel_size = 3,
      norm_layer = norm_layer or false, activation_layer = false }))
  end
  self.extra_blocks = extra_blocks
end

-- inner block i applied to x, plus `add` (same shape as its output) if
-- given: torchvision's inner_lateral + inner_top_down, which the plan
-- (pthcv.nn.plan) runs as the 1x1 convolution's store adding `add`
local function lateral(block, x, add)
  if add == nil then return block(x) end
  return F.add(block(x), add)
end

function FPN:forward(x)
  local n = #x
  local inner, layer = self.inner_blocks:children(), self.layer_blocks:children()
  local last = inner[n](x[n])
  local results = { [n] = layer[n](last) }
  for i = n - 1, 1, -1 do
    local h, w = x[i].shape[3], x[i].shape[4]
    local top_down = F.interpolate(last, { size = { h, w }, mode = "nearest" })
    last = lateral(inner[i], x[i], top_down)
    results[i] = layer[i](last)
  end
  local names = {}
  for i = 1, n do names[i] = x.names[i] end
  results.names = names
  if self.extra_blocks then self.extra_blocks(results, x) end
  return results
end

-- LastLevelMaxPool(): a level "pool", max_pool2d(last, 1, 2, 0)
local LastLevelMaxPool = nn.class("LastLevelMaxPool", nil,
  { torch_class = "torchvision.ops.feature_pyramid_network.LastLevelMaxPool" })
M.LastLevelMaxPool = LastLevelMaxPool
function LastLevelMaxPool:forward(results)
  results[#results + 1] = F.max_pool2d(results[#results], 1, 2, 0)
  results.names[#results] = "pool"
end

-- LastLevelP6P7(in_channels, out_channels): RetinaNet's and FCOS's levels
-- p6 = conv(P5 or C5), p7 = conv(relu(p6))
local LastLevelP6P7 = nn.class("LastLevelP6P7", nil,
  { torch_class = "torchvision.ops.feature_pyramid_network.LastLevelP6P7" })
M.LastLevelP6P7 = LastLevelP6P7
function LastLevelP6P7:__init(in_channels, out_channels)
  self.p6 = nn.Conv2d(in_channels, out_channels, 3, 2, 1)
  self.p7 = nn.Conv2d(out_channels, out_channels, 3, 2, 1)
  self.use_P5 = in_channels == out_channels
end
function LastLevelP6P7:forward(p, c)
  local x = self.use_P5 and p[#p] or c[#c]
  local p6 = self.p6(x)
  local p7 = self.p7(F.relu(p6))
  local n = #p
  p[n + 1], p[n + 2] = p6, p7
  p.names[n + 1], p.names[n + 2] = "p6", "p7"
end

return M
