-- lua/pthcv/models/efficientnet.lua: torchvision's EfficientNet: b0 to b7
-- (MBConv: expansion, depthwise, squeeze-excitation with SiLU, projection)
-- and V2 s/m/l (FusedMBConv in the early stages). Every
-- Conv2dNormActivation is a Sequential (BatchNorm folded, SiLU fused), the
-- residual add runs in the projection convolution; StochasticDepth is the
-- identity at inference.
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"
local layers = require "pthcv.models.layers"

local M = {}
local CNA, make_divisible = blocks.Conv2dNormActivation, blocks.make_divisible

local function adjust_channels(c, width_mult) return make_divisible(c * width_mult, 8) end

-- a stage row: block ("MBConv" | "FusedMBConv"), expand_ratio, kernel,
-- stride, input/out channels, layers (scaled by width/depth for MBConv)
local function mbconv(expand, kernel, stride, cin, cout, n, width_mult, depth_mult)
  width_mult, depth_mult = width_mult or 1.0, depth_mult or 1.0
  return { block = "MBConv", expand_ratio = expand, kernel = kernel, stride = stride,
           input_channels = adjust_channels(cin, width_mult), out_channels = adjust_channels(cout, width_mult),
           num_layers = math.ceil(n * depth_mult) }
end
local function fused(expand, kernel, stride, cin, cout, n)
  return { block = "FusedMBConv", expand_ratio = expand, kernel = kernel, stride = stride, input_channels = cin,
           out_channels = cout, num_layers = n }
end

local function silu() return nn.SiLU(true) end

-- a block's shared part: the residual (when shapes allow) around block
local function residual_forward(self, x)
  if self.use_res_connect then return blocks.residual(self.block, x) end
  return self.block(x)
end

-- MBConv(cnf, stochastic_depth_prob, norm_layer)
local MBConv = nn.class("MBConv", nil, { torch_class = "torchvision.models.efficientnet.MBConv" })
M.MBConv = MBConv
MBConv.keeps_no_tensors = true

function MBConv:__init(cnf, sd_prob, norm_layer)
  if cnf.stride < 1 or cnf.stride > 2 then error("pthcv: EfficientNet: illegal stride value", 3) end
  self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
  local expanded = adjust_channels(cnf.input_channels, cnf.expand_ratio)
  local l = {}
  if expanded ~= cnf.input_channels then
    l[#l + 1] = CNA(cnf.input_channels, expanded, { kernel_size = 1, norm_layer = norm_layer,
                                                   activation_layer = nn.SiLU })
  end
  l[#l + 1] = CNA(expanded, expanded, { kernel_size = cnf.kernel, stride = cnf.stride, groups = expanded,
                                        norm_layer = norm_layer, activation_layer = nn.SiLU })
  l[#l + 1] = blocks.SqueezeExcitation(expanded, math.max(1, math.floor(cnf.input_channels / 4)), silu)
  l[#l + 1] = CNA(expanded, cnf.out_channels, { kernel_size = 1, norm_layer = norm_layer, activation_layer = false })
  self.block = nn.Sequential(l)
  self.stochastic_depth = layers.StochasticDepth(sd_prob, "row")
  self.out_channels = cnf.out_channels
end
MBConv.forward = residual_forward

-- FusedMBConv(cnf, stochastic_depth_prob, norm_layer)
local FusedMBConv = nn.class("FusedMBConv", nil, { torch_class = "torchvision.models.efficientnet.FusedMBConv" })
M.FusedMBConv = FusedMBConv
FusedMBConv.keeps_no_tensors = true

function FusedMBConv:__init(cnf, sd_prob, norm_layer)
  if cnf.stride < 1 or cnf.stride > 2 then error("pthcv: EfficientNet: illegal stride value", 3) end
  self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
  local expanded = adjust_channels(cnf.input_channels, cnf.expand_ratio)
  local l = {}
  if expanded ~= cnf.input_channels then
    l[1] = CNA(cnf.input_channels, expanded, { kernel_size = cnf.kernel, stride = cnf.stride, norm_layer = norm_layer,
                                              activation_layer = nn.SiLU })
    l[2] = CNA(expanded, cnf.out_channels, { kernel_size = 1, norm_layer = norm_layer, activation_layer = false })
  else
    l[1] = CNA(cnf.input_channels, cnf.out_channels, { kernel_size = cnf.kernel, stride = cnf.stride,
                                                      norm_layer = norm_layer, activation_layer = nn.SiLU })
  end
  self.block = nn.Sequential(l)
  self.stochastic_depth = layers.StochasticDepth(sd_prob, "row")
  self.out_channels = cnf.out_channels
end
FusedMBConv.forward = residual_forward

-- EfficientNet(setting, dropout, {stochastic_depth_prob = 0.2, num_classes
-- = 1000, norm_layer = BatchNorm2d, last_channel})
local EfficientNet = nn.class("EfficientNet", nil, { torch_class = "torchvision.models.efficientnet.EfficientNet" })
M.EfficientNet = EfficientNet

function EfficientNet:__init(setting, dropout, o)
  o = o or {}
  if #setting == 0 then error("pthcv: EfficientNet: the inverted_residual_setting should not be empty", 3) end
  local norm_layer = o.norm_layer or function(c) return nn.BatchNorm2d(c) end
  local sd = o.stochastic_depth_prob or 0.2
  local l = { CNA(3, setting[1].input_channels, { kernel_size = 3, stride = 2, norm_layer = norm_layer,
                                                  activation_layer = nn.SiLU }) }
  local total, id = 0, 0
  for _, cnf in ipairs(setting) do total = total + cnf.num_layers end
  for _, cnf in ipairs(setting) do
    local stage = {}
    for _ = 1, cnf.num_layers do
      local c = {}
      for k, v in pairs(cnf) do c[k] = v end
      if #stage > 0 then c.input_channels, c.stride = c.out_channels, 1 end
      local cls = c.block == "MBConv" and MBConv or FusedMBConv
      stage[#stage + 1] = cls(c, sd * id / total, norm_layer)
      id = id + 1
    end
    l[#l + 1] = nn.Sequential(stage)
  end
  local last_in = setting[#setting].out_channels
  local last_out = o.last_channel or 4 * last_in
  l[#l + 1] = CNA(last_in, last_out, { kernel_size = 1, norm_layer = norm_layer, activation_layer = nn.SiLU })
  self.features = nn.Sequential(l)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.classifier = nn.Sequential(nn.Dropout(dropout, true), nn.Linear(last_out, o.num_classes or 1000))
end

function EfficientNet:forward(x)
  local t = self.features(x)
  local p = self.avgpool(t)
  release(t, x)
  local y = self.classifier(F.flatten(p, 1))
  release(p, y)
  return y
end

-- builders: (width_mult, depth_mult, dropout[, BatchNorm eps/momentum]) for
-- b0-b7, and V2's fixed settings
local function b_setting(w, d)
  return { mbconv(1, 3, 1, 32, 16, 1, w, d), mbconv(6, 3, 2, 16, 24, 2, w, d), mbconv(6, 5, 2, 24, 40, 2, w, d),
           mbconv(6, 3, 2, 40, 80, 3, w, d), mbconv(6, 5, 1, 80, 112, 3, w, d), mbconv(6, 5, 2, 112, 192, 4, w, d),
           mbconv(6, 3, 1, 192, 320, 1, w, d) }
end

local V2 = {
  s = { fused(1, 3, 1, 24, 24, 2), fused(4, 3, 2, 24, 48, 4), fused(4, 3, 2, 48, 64, 4), mbconv(4, 3, 2, 64, 128, 6),
        mbconv(6, 3, 1, 128, 160, 9), mbconv(6, 3, 2, 160, 256, 15) },
  m = { fused(1, 3, 1, 24, 24, 3), fused(4, 3, 2, 24, 48, 5), fused(4, 3, 2, 48, 80, 5), mbconv(4, 3, 2, 80, 160, 7),
        mbconv(6, 3, 1, 160, 176, 14), mbconv(6, 3, 2, 176, 304, 18), mbconv(6, 3, 1, 304, 512, 5) },
  l = { fused(1, 3, 1, 32, 32, 4), fused(4, 3, 2, 32, 64, 7), fused(4, 3, 2, 64, 96, 7), mbconv(4, 3, 2, 96, 192, 10),
        mbconv(6, 3, 1, 192, 224, 19), mbconv(6, 3, 2, 224, 384, 25), mbconv(6, 3, 1, 384, 640, 7) },
}

local function with(o, extra)
  local out = {}
  for k, v in pairs(o or {}) do out[k] = v end
  for k, v in pairs(extra) do if out[k] == nil then out[k] = v end end
  return out
end

local function bn(eps, momentum)
  return function(c) return nn.BatchNorm2d(c, { eps = eps, momentum = momentum }) end
end

local function b_builder(w, d, dropout, norm)
  return function(o)
    o = o or {}
    return EfficientNet(b_setting(w, d), o.dropout or dropout, with(o, { norm_layer = norm }))
  end
end
M.efficientnet_b0 = b_builder(1.0, 1.0, 0.2)
M.efficientnet_b1 = b_builder(1.0, 1.1, 0.2)
M.efficientnet_b2 = b_builder(1.1, 1.2, 0.3)
M.efficientnet_b3 = b_builder(1.2, 1.4, 0.3)
M.efficientnet_b4 = b_builder(1.4, 1.8, 0.4)
M.efficientnet_b5 = b_builder(1.6, 2.2, 0.4, bn(0.001, 0.01))
M.efficientnet_b6 = b_builder(1.8, 2.6, 0.5, bn(0.001, 0.01))
M.efficientnet_b7 = b_builder(2.0, 3.1, 0.5, bn(0.001, 0.01))

local function v2_builder(arch, dropout)
  return function(o)
    o = o or {}
    return EfficientNet(V2[arch], o.dropout or dropout, with(o, { norm_layer = bn(0.001), last_channel = 1280 }))
  end
end
M.efficientnet_v2_s = v2_builder("s", 0.2)
M.efficientnet_v2_m = v2_builder("m", 0.3)
M.efficientnet_v2_l = v2_builder("l", 0.4)

return M
