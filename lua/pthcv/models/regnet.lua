-- lua/pthcv/models/regnet.lua: torchvision's RegNet X (no squeeze-
-- excitation) and Y (with it), 400MF to 128GF. The stage widths and
-- depths come from torchvision's quantised linear rule (BlockParams), its
-- float32 arithmetic reproduced step by step. The forwards are
-- torchvision's; once planned (pthcv.nn.plan) each ResBottleneckBlock runs
-- its 1x1, grouped 3x3 and 1x1 convolutions fused with their BatchNorms
-- (and ReLUs), the shortcut added in the last convolution's store.
local ffi = require "ffi"
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"

local M = {}
local CNA, make_divisible = blocks.Conv2dNormActivation, blocks.make_divisible

-- float32 rounding of a double (torch computes BlockParams in float32)
local f32box = ffi.new("float[1]")
local function f32(v)
  f32box[0] = v
  return f32box[0]
end
-- round half to even, as torch.round
local function round_even(v)
  local r = math.floor(v + 0.5)
  if r - v == 0.5 and r % 2 ~= 0 then r = r - 1 end
  return r
end

-- BlockParams.from_init_params: per-stage widths, depths and group widths.
function M.block_params(depth, w_0, w_a, w_m, group_width, bottleneck_multiplier, se_ratio)
  bottleneck_multiplier = bottleneck_multiplier or 1.0
  if w_a < 0 or w_0 <= 0 or w_m <= 1 or w_0 % 8 ~= 0 then error("pthcv: RegNet: invalid RegNet settings", 3) end
  local log_wm = f32(math.log(w_m))
  local widths = {}
  for i = 0, depth - 1 do
    local cont = f32(f32(i * f32(w_a)) + w_0)                    -- arange(depth) * w_a + w_0
    local cap = round_even(f32(f32(math.log(f32(cont / w_0))) / log_wm))
    widths[#widths + 1] = round_even(f32(f32(w_0 * f32(f32(w_m) ^ cap)) / 8)) * 8
  end
  local stage_widths, stage_depths = {}, {}
  for i, w in ipairs(widths) do
    if i == 1 or w ~= widths[i - 1] then
      stage_widths[#stage_widths + 1] = w
      stage_depths[#stage_depths + 1] = 0
    end
    stage_depths[#stage_depths] = stage_depths[#stage_depths] + 1
  end
  -- _adjust_widths_groups_compatibilty
  local group_widths = {}
  for i, w in ipairs(stage_widths) do
    local w_bot = math.floor(w * bottleneck_multiplier)
    local g = math.min(group_width, w_bot)
    stage_widths[i] = math.floor(make_divisible(w_bot, g) / bottleneck_multiplier)
    group_widths[i] = g
  end
  return { depths = stage_depths, widths = stage_widths, group_widths = group_widths,
           bottleneck_multiplier = bottleneck_multiplier, se_ratio = se_ratio }
end

-- SimpleStemIN(width_in, width_out, norm_layer, activation_layer): 3x3 stride 2, BN, ReLU
local SimpleStemIN = nn.class("SimpleStemIN", CNA, { torch_class = "torchvision.models.regnet.SimpleStemIN" })
M.SimpleStemIN = SimpleStemIN
function SimpleStemIN:__init(width_in, width_out, norm_layer, activation_layer)
  CNA.__init(self, width_in, width_out, { kernel_size = 3, stride = 2, norm_layer = norm_layer,
                                          activation_layer = activation_layer })
end

-- BottleneckTransform: a (1x1), b (3x3 grouped), se (optional), c (1x1)
local BottleneckTransform = nn.class("BottleneckTransform", nn.Sequential,
  { torch_class = "torchvision.models.regnet.BottleneckTransform" })
M.BottleneckTransform = BottleneckTransform
BottleneckTransform.keeps_no_tensors = true

function BottleneckTransform:__init(width_in, width_out, stride, norm_layer, act, group_width, bm, se_ratio)
  local w_b = math.floor(width_out * bm + 0.5)
  local g = math.floor(w_b / group_width)
  self:add_module("a", CNA(width_in, w_b, { kernel_size = 1, stride = 1, norm_layer = norm_layer,
                                            activation_layer = act }))
  self:add_module("b", CNA(w_b, w_b, { kernel_size = 3, stride = stride, groups = g, norm_layer = norm_layer,
                                       activation_layer = act }))
  if se_ratio and se_ratio ~= 0 then
    self:add_module("se", blocks.SqueezeExcitation(w_b, round_even(se_ratio * width_in), act))
  end
  self:add_module("c", CNA(w_b, width_out, { kernel_size = 1, stride = 1, norm_layer = norm_layer,
                                             activation_layer = false }))
end

-- ResBottleneckBlock: activation(x + f(x)) or activation(proj(x) + f(x))
local ResBottleneckBlock = nn.class("ResBottleneckBlock", nil,
  { torch_class = "torchvision.models.regnet.ResBottleneckBlock" })
M.ResBottleneckBlock = ResBottleneckBlock
ResBottleneckBlock.keeps_no_tensors = true

function ResBottleneckBlock:__init(width_in, width_out, stride, norm_layer, act, group_width, bm, se_ratio)
  if width_in ~= width_out or stride ~= 1 then
    self.proj = CNA(width_in, width_out, { kernel_size = 1, stride = stride, norm_layer = norm_layer,
                                           activation_layer = false })
  end
  self.f = BottleneckTransform(width_in, width_out, stride, norm_layer, act, group_width or 1, bm or 1.0, se_ratio)
  self.activation = act(true)
end

function ResBottleneckBlock:forward(x)
  local shortcut = self.proj and self.proj(x) or x
  local t = self.f(x)
  local y = shortcut + t
  release(t)
  release(shortcut, x)
  local out = self.activation(y)
  release(y, out)
  return out
end

-- AnyStage(width_in, width_out, stride, depth, block, norm_layer, act, group_width, bm, se_ratio, stage_index)
local AnyStage = nn.class("AnyStage", nn.Sequential, { torch_class = "torchvision.models.regnet.AnyStage" })
M.AnyStage = AnyStage
AnyStage.keeps_no_tensors = true

function AnyStage:__init(width_in, width_out, stride, depth, block, norm_layer, act, group_width, bm, se_ratio, index)
  for i = 0, depth - 1 do
    self:add_module(string.format("block%d-%d", index, i),
                    block(i == 0 and width_in or width_out, width_out, i == 0 and stride or 1, norm_layer, act,
                          group_width, bm, se_ratio))
  end
end

-- RegNet(block_params, {num_classes = 1000, stem_width = 32, norm_layer, activation})
local RegNet = nn.class("RegNet", nil, { torch_class = "torchvision.models.regnet.RegNet" })
M.RegNet = RegNet

function RegNet:__init(bp, o)
  o = o or {}
  local norm_layer = o.norm_layer or function(c) return nn.BatchNorm2d(c) end
  local act = o.activation or nn.ReLU
  local stem_width = o.stem_width or 32
  self.stem = SimpleStemIN(3, stem_width, norm_layer, act)
  local current, stages = stem_width, {}
  for i, w in ipairs(bp.widths) do
    stages[#stages + 1] = { "block" .. i, AnyStage(current, w, 2, bp.depths[i], ResBottleneckBlock, norm_layer, act,
                                                   bp.group_widths[i], bp.bottleneck_multiplier, bp.se_ratio, i) }
    current = w
  end
  self.trunk_output = nn.Sequential(stages)
  self.avgpool = nn.AdaptiveAvgPool2d({ 1, 1 })
  self.fc = nn.Linear(current, o.num_classes or 1000)
end

function RegNet:forward(x)
  local s = self.stem(x)
  local t = self.trunk_output(s)
  release(s, t)
  local p = self.avgpool(t)
  release(t, p)
  local y = self.fc(F.flatten(p, 1))
  release(p)
  return y
end

local function builder(depth, w_0, w_a, w_m, group_width, se_ratio)
  return function(o)
    return RegNet(M.block_params(depth, w_0, w_a, w_m, group_width, 1.0, se_ratio), o)
  end
end
M.regnet_y_400mf = builder(16, 48, 27.89, 2.09, 8, 0.25)
M.regnet_y_800mf = builder(14, 56, 38.84, 2.4, 16, 0.25)
M.regnet_y_1_6gf = builder(27, 48, 20.71, 2.65, 24, 0.25)
M.regnet_y_3_2gf = builder(21, 80, 42.63, 2.66, 24, 0.25)
M.regnet_y_8gf = builder(17, 192, 76.82, 2.19, 56, 0.25)
M.regnet_y_16gf = builder(18, 200, 106.23, 2.48, 112, 0.25)
M.regnet_y_32gf = builder(20, 232, 115.89, 2.53, 232, 0.25)
M.regnet_y_128gf = builder(27, 456, 160.83, 2.52, 264, 0.25)
M.regnet_x_400mf = builder(22, 24, 24.48, 2.54, 16)
M.regnet_x_800mf = builder(16, 56, 35.73, 2.28, 16)
M.regnet_x_1_6gf = builder(18, 80, 34.01, 2.25, 24)
M.regnet_x_3_2gf = builder(25, 88, 26.31, 2.25, 48)
M.regnet_x_8gf = builder(23, 80, 49.56, 2.88, 120)
M.regnet_x_16gf = builder(22, 216, 55.59, 2.1, 128)
M.regnet_x_32gf = builder(23, 320, 69.86, 2.0, 168)

return M
