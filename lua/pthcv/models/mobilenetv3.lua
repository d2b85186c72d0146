-- lua/pthcv/models/mobilenetv3.lua: torchvision's MobileNetV3 small and
-- large (Hardswish, squeeze-excitation with Hardsigmoid, BatchNorm eps 0.001).
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"

local M = {}
local CNA, make_divisible = blocks.Conv2dNormActivation, blocks.make_divisible

local function norm_layer(c) return nn.BatchNorm2d(c, { eps = 0.001, momentum = 0.01 }) end

-- a bneck row: input, kernel, expanded, out, use_se, activation ("RE"/"HS"), stride, dilation
local function conf(input_channels, kernel, expanded, out, use_se, activation, stride, dilation, width_mult)
  local function adjust(c) return make_divisible(c * width_mult, 8) end
  return { input_channels = adjust(input_channels), kernel = kernel, expanded_channels = adjust(expanded),
           out_channels = adjust(out), use_se = use_se, use_hs = activation == "HS", stride = stride,
           dilation = dilation }
end

local InvertedResidual = nn.class("InvertedResidual", nil,
  { torch_class = "torchvision.models.mobilenetv3.InvertedResidual" })
M.InvertedResidual = InvertedResidual

function InvertedResidual:__init(cnf)
  self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
  local act = cnf.use_hs and nn.Hardswish or nn.ReLU
  local layers = {}
  if cnf.expanded_channels ~= cnf.input_channels then
    layers[#layers + 1] = CNA(cnf.input_channels, cnf.expanded_channels,
                              { kernel_size = 1, norm_layer = norm_layer, activation_layer = act })
  end
  local stride = cnf.dilation > 1 and 1 or cnf.stride
  layers[#layers + 1] = CNA(cnf.expanded_channels, cnf.expanded_channels,
                            { kernel_size = cnf.kernel, stride = stride, dilation = cnf.dilation,
                              groups = cnf.expanded_channels, norm_layer = norm_layer, activation_layer = act })
  if cnf.use_se then
    local squeeze = make_divisible(math.floor(cnf.expanded_channels / 4), 8)
    layers[#layers + 1] = blocks.SqueezeExcitation(cnf.expanded_channels, squeeze, nn.ReLU, nn.Hardsigmoid)
  end
  layers[#layers + 1] = CNA(cnf.expanded_channels, cnf.out_channels,
                            { kernel_size = 1, norm_layer = norm_layer, activation_layer = false })
  self.block = nn.Sequential(layers)
  self.out_channels = cnf.out_channels
  self._is_cn = cnf.stride > 1
end

function InvertedResidual:forward(x)
  if self.use_res_connect then return blocks.residual(self.block, x) end
  return self.block(x)
end
InvertedResidual.keeps_no_tensors = true

local MobileNetV3 = nn.class("MobileNetV3", nil, { torch_class = "torchvision.models.mobilenetv3.MobileNetV3" })
M.MobileNetV3 = MobileNetV3

-- MobileNetV3(settings, last_channel, {num_classes = 1000, dropout = 0.2})
function MobileNetV3:__init(settings, last_channel, o)
  o = o or {}
  local layers = { CNA(3, settings[1].input_channels, { kernel_size = 3, stride = 2, norm_layer = norm_layer,
                                                        activation_layer = nn.Hardswish }) }
  for _, cnf in ipairs(settings) do layers[#layers + 1] = InvertedResidual(cnf) end
  local lastconv_in = settings[#settings].out_channels
  local lastconv_out = 6 * lastconv_in
  layers[#layers + 1] = CNA(lastconv_in, lastconv_out, { kernel_size = 1, norm_layer = norm_layer,
                                                         activation_layer = nn.Hardswish })
  self.features = nn.Sequential(layers)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.classifier = nn.Sequential(nn.Linear(lastconv_out, last_channel), nn.Hardswish(true),
                                  nn.Dropout(o.dropout or 0.2, true), nn.Linear(last_channel, o.num_classes or 1000))
end

function MobileNetV3:forward(x)
  local t = self.features(x)
  local p = self.avgpool(t)
  release(t, x)
  local y = self.classifier(F.flatten(p, 1))
  release(p, y)
  return y
end

-- (settings, last_channel) of torchvision's _mobilenet_v3_conf
local function settings(arch, o)
  local wm = o.width_mult or 1.0
  local rd = o.reduced_tail and 2 or 1
  local dl = o.dilated and 2 or 1
  local function b(...) local a = { ... }; a[9] = wm; return conf(unpack(a, 1, 9)) end
  local s, last
  if arch == "large" then
    s = {
      b(16, 3, 16, 16, false, "RE", 1, 1), b(16, 3, 64, 24, false, "RE", 2, 1), b(24, 3, 72, 24, false, "RE", 1, 1),
      b(24, 5, 72, 40, true, "RE", 2, 1), b(40, 5, 120, 40, true, "RE", 1, 1), b(40, 5, 120, 40, true, "RE", 1, 1),
      b(40, 3, 240, 80, false, "HS", 2, 1), b(80, 3, 200, 80, false, "HS", 1, 1), b(80, 3, 184, 80, false, "HS", 1, 1),
      b(80, 3, 184, 80, false, "HS", 1, 1), b(80, 3, 480, 112, true, "HS", 1, 1), b(112, 3, 672, 112, true, "HS", 1, 1),
      b(112, 5, 672, 160 / rd, true, "HS", 2, dl), b(160 / rd, 5, 960 / rd, 160 / rd, true, "HS", 1, dl),
      b(160 / rd, 5, 960 / rd, 160 / rd, true, "HS", 1, dl),
    }
    last = make_divisible(1280 / rd * wm, 8)
  else
    s = {
      b(16, 3, 16, 16, true, "RE", 2, 1), b(16, 3, 72, 24, false, "RE", 2, 1), b(24, 3, 88, 24, false, "RE", 1, 1),
      b(24, 5, 96, 40, true, "HS", 2, 1), b(40, 5, 240, 40, true, "HS", 1, 1), b(40, 5, 240, 40, true, "HS", 1, 1),
      b(40, 5, 120, 48, true, "HS", 1, 1), b(48, 5, 144, 48, true, "HS", 1, 1), b(48, 5, 288, 96 / rd, true, "HS", 2, dl),
      b(96 / rd, 5, 576 / rd, 96 / rd, true, "HS", 1, dl), b(96 / rd, 5, 576 / rd, 96 / rd, true, "HS", 1, dl),
    }
    last = make_divisible(1024 / rd * wm, 8)
  end
  return s, last
end

function M.mobilenet_v3_large(o)
  o = o or {}
  local s, last = settings("large", o)
  return MobileNetV3(s, last, o)
end
function M.mobilenet_v3_small(o)
  o = o or {}
  local s, last = settings("small", o)
  return MobileNetV3(s, last, o)
end

return M
