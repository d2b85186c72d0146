-- lua/pthcv/models/convnext.lua: torchvision's ConvNeXt tiny, small, base
-- and large. A CNBlock is a 7x7 depthwise convolution, then channels-last
-- LayerNorm, Linear, GELU, Linear (the GELU fused into the first Linear),
-- times a per-channel layer scale, plus the input. LayerNorm2d normalises
-- the channels of an NCHW map in place of torch's permute, layer_norm,
-- permute (F.layer_norm_channels).
local nn = require "pthcv.nn"
local F = nn.F
local release = require "pthcv.nn.release"
local Tensor = require "pthcv.tensor"
local blocks = require "pthcv.models.blocks"
local layers = require "pthcv.models.layers"

local M = {}

-- LayerNorm2d(num_channels [, eps, elementwise_affine]): LayerNorm over dim 1 of NCHW
local LayerNorm2d = nn.class("LayerNorm2d", nn.LayerNorm, { torch_class = "torchvision.models.convnext.LayerNorm2d" })
M.LayerNorm2d = LayerNorm2d
LayerNorm2d.keeps_no_tensors = true
function LayerNorm2d:forward(x) return F.layer_norm_channels(x, self.weight, self.bias, self.eps) end

local function ln2d(c) return LayerNorm2d(c, { eps = 1e-6 }) end

-- CNBlock(dim, layer_scale, stochastic_depth_prob [, norm_layer])
local CNBlock = nn.class("CNBlock", nil, { torch_class = "torchvision.models.convnext.CNBlock" })
M.CNBlock = CNBlock
CNBlock.keeps_no_tensors = true

function CNBlock:__init(dim, layer_scale, sd_prob, norm_layer)
  norm_layer = norm_layer or function(c) return nn.LayerNorm(c, { eps = 1e-6 }) end
  self.block = nn.Sequential(
    nn.Conv2d(dim, dim, 7, { padding = 3, groups = dim, bias = true }), layers.Permute({ 0, 2, 3, 1 }),
    norm_layer(dim), nn.Linear(dim, 4 * dim, { bias = true }), nn.GELU(), nn.Linear(4 * dim, dim, { bias = true }),
    layers.Permute({ 0, 3, 1, 2 }))
  self:register_parameter("layer_scale", F.mul(Tensor.ones({ dim, 1, 1 }), layer_scale))
  self.stochastic_depth = layers.StochasticDepth(sd_prob, "row")
end

function CNBlock:forward(x)
  local t = self.block(x)
  local s = F.mul(F.f32(self.layer_scale), t)   -- float16 after half()
  release(t)
  local y = F.add(s, x)
  release(s)
  return y
end

-- ConvNeXt(block_setting, {stochastic_depth_prob = 0, layer_scale = 1e-6, num_classes = 1000})
-- block_setting: {{input_channels, out_channels or false, num_layers}, ...}
local ConvNeXt = nn.class("ConvNeXt", nil, { torch_class = "torchvision.models.convnext.ConvNeXt" })
M.ConvNeXt = ConvNeXt

function ConvNeXt:__init(setting, o)
  o = o or {}
  if #setting == 0 then error("pthcv: ConvNeXt: the block_setting should not be empty", 3) end
  local sd, scale = o.stochastic_depth_prob or 0.0, o.layer_scale or 1e-6
  local l = { blocks.Conv2dNormActivation(3, setting[1][1], { kernel_size = 4, stride = 4, padding = 0,
                                                             norm_layer = ln2d, activation_layer = false, bias = true }) }
  local total, id = 0, 0
  for _, cnf in ipairs(setting) do total = total + cnf[3] end
  for _, cnf in ipairs(setting) do
    local stage = {}
    for _ = 1, cnf[3] do
      stage[#stage + 1] = CNBlock(cnf[1], scale, sd * id / (total - 1.0))
      id = id + 1
    end
    l[#l + 1] = nn.Sequential(stage)
    if cnf[2] then
      l[#l + 1] = nn.Sequential(ln2d(cnf[1]), nn.Conv2d(cnf[1], cnf[2], 2, { stride = 2 }))
    end
  end
  self.features = nn.Sequential(l)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  local last = setting[#setting]
  local c = last[2] or last[1]
  self.classifier = nn.Sequential(ln2d(c), nn.Flatten(1), nn.Linear(c, o.num_classes or 1000))
end

function ConvNeXt:forward(x)
  local t = self.features(x)
  local p = self.avgpool(t)
  release(t, x)
  local y = self.classifier(p)
  release(p, y)
  return y
end

local function builder(setting, sd)
  return function(o)
    o = o or {}
    local opts = { stochastic_depth_prob = sd }
    for k, v in pairs(o) do opts[k] = v end
    return ConvNeXt(setting, opts)
  end
end
M.convnext_tiny = builder({ { 96, 192, 3 }, { 192, 384, 3 }, { 384, 768, 9 }, { 768, false, 3 } }, 0.1)
M.convnext_small = builder({ { 96, 192, 3 }, { 192, 384, 3 }, { 384, 768, 27 }, { 768, false, 3 } }, 0.4)
M.convnext_base = builder({ { 128, 256, 3 }, { 256, 512, 3 }, { 512, 1024, 27 }, { 1024, false, 3 } }, 0.5)
M.convnext_large = builder({ { 192, 384, 3 }, { 384, 768, 3 }, { 768, 1536, 27 }, { 1536, false, 3 } }, 0.5)

return M
