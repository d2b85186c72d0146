-- lua/pthcv/models/detection/backbones.lua: the detectors' and segmenters'
-- backbones, as torchvision builds them from its classifiers
-- (backbone_utils.py, _utils.IntermediateLayerGetter, ops.misc):
--
--   FrozenBatchNorm2d        BatchNorm2d with fixed statistics, buffers only
--                            (what pretrained detectors' state_dicts hold)
--   IntermediateLayerGetter  a model's children up to the last returned one,
--                            run in order; returns the named outputs
--   BackboneWithFPN          body (an IntermediateLayerGetter) + fpn
--   resnet_fpn / mobilenet_fpn: torchvision's _resnet_fpn_extractor and
--                            _mobilenet_extractor(fpn=True)
-- Feature lists are Lua arrays of tensors with their names in `.names`
-- ({t1, t2, names = {"0", "1"}}), in torchvision's OrderedDict order.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local py = require "pthcv.nn.repr"
local fpn = require "pthcv.models.detection.fpn"

local M = {}

-- ---- FrozenBatchNorm2d ----------------------------------------------------------------
-- FrozenBatchNorm2d(num_features [, eps = 1e-5]): weight, bias,
-- running_mean, running_var as buffers (no num_batches_tracked). A subclass
-- of BatchNorm2d, so containers fold it into the convolution before it.
local FrozenBatchNorm2d = nn.class("FrozenBatchNorm2d", nn.BatchNorm2d,
  { torch_class = "torchvision.ops.misc.FrozenBatchNorm2d" })
M.FrozenBatchNorm2d = FrozenBatchNorm2d

function FrozenBatchNorm2d:__init(num_features, eps)
  self.num_features, self.eps = num_features, eps or 1e-5
  self.momentum, self.affine, self.track_running_stats = 0.1, true, true
  self:register_buffer("weight", Tensor.ones({ num_features }))
  self:register_buffer("bias", Tensor.zeros({ num_features }))
  self:register_buffer("running_mean", Tensor.zeros({ num_features }))
  self:register_buffer("running_var", Tensor.ones({ num_features }))
end
function FrozenBatchNorm2d:extra_repr() return string.format("%d, eps=%s", self.num_features, py.value(self.eps, true)) end

-- Every BatchNorm2d in m replaced by a FrozenBatchNorm2d (eps given, or
-- the BatchNorm's): torchvision's norm_layer=FrozenBatchNorm2d, for the
-- backbones of detectors trained from pretrained weights.
function M.freeze_batchnorm(m, eps)
  for _, kv in ipairs(m:named_modules()) do
    local parent = kv[2]
    for _, ch in ipairs(parent:named_children()) do
      local c = ch[2]
      if getmetatable(c) == nn.BatchNorm2d then
        parent:add_module(ch[1], FrozenBatchNorm2d(c.num_features, eps or c.eps))
      end
    end
  end
  return m
end

-- module:overwrite_eps(eps): torchvision's overwrite_eps: every
-- FrozenBatchNorm2d's eps (0 for some of torchvision's COCO weights)
function M.overwrite_eps(m, eps)
  for _, mod in ipairs(m:modules()) do
    if getmetatable(mod) == FrozenBatchNorm2d then mod.eps = eps end
  end
  require("pthcv.nn.module").touch()   -- the packs fold eps in: made again at the next call
  return m
end

-- ---- IntermediateLayerGetter ------------------------------------------------------------
-- A Sequential of model's children up to the last of return_layers
-- ({{"layer1", "0"}, ...}: child name, output name), so that containers'
-- fusions apply; forward returns the named outputs.
local Getter = nn.class("IntermediateLayerGetter", nn.Sequential,
  { torch_class = "torchvision.models._utils.IntermediateLayerGetter" })
M.IntermediateLayerGetter = Getter

function Getter:__init(model, return_layers)
  local wanted, left = {}, #return_layers
  for _, kv in ipairs(return_layers) do wanted[kv[1]] = kv[2] end
  for _, kv in ipairs(model:named_children()) do
    if left == 0 then break end
    self:add_module(kv[1], kv[2])
    if wanted[kv[1]] then left = left - 1 end
  end
  if left > 0 then error("pthcv: IntermediateLayerGetter: return_layers are not all children of the model", 3) end
  self._wanted = wanted
end

local function pure(m)
  local cls = getmetatable(m)
  return cls ~= nil and (rawget(cls, "__torch_nn") == true or rawget(cls, "keeps_no_tensors") == true)
end

function Getter:forward(x)
  local steps = rawget(self, "_steps")
  local names = {}
  for _, kv in ipairs(self:named_children()) do names[kv[2]] = kv[1] end
  local out = { names = {} }
  local owned = false   -- x made here, kept by nobody
  for _, st in ipairs(steps) do
    local y
    if st.kind == "conv" then y = F.conv2d_packed(st.pack, x)
    elseif st.kind == "linear" then y = F.linear_packed(st.pack, x)
    else y = st.module(x) end
    if owned and not rawequal(x, y) and (st.kind ~= "module" or pure(st.module)) then release(x) end
    local keep = self._wanted[names[st.module]]
    if keep then
      out[#out + 1] = y
      out.names[#out] = keep
    end
    x, owned = y, not keep and not rawequal(x, y)
  end
  return out
end
Getter.keeps_no_tensors = true

-- ---- BackboneWithFPN --------------------------------------------------------------------
local BackboneWithFPN = nn.class("BackboneWithFPN", nil,
  { torch_class = "torchvision.models.detection.backbone_utils.BackboneWithFPN" })
M.BackboneWithFPN = BackboneWithFPN

-- BackboneWithFPN(model, return_layers, in_channels_list, out_channels
-- [, extra_blocks = LastLevelMaxPool(), norm_layer])
function BackboneWithFPN:__init(model, return_layers, in_channels_list, out_channels, extra_blocks, norm_layer)
  self.body = Getter(model, return_layers)
  self.fpn = fpn.FeaturePyramidNetwork(in_channels_list, out_channels, extra_blocks or fpn.LastLevelMaxPool(),
                                       norm_layer)
  self.out_channels = out_channels
end

function BackboneWithFPN:forward(x) return self.fpn(self.body(x)) end

-- torchvision's _resnet_fpn_extractor(backbone, returned_layers = {1, 2, 3, 4},
-- extra_blocks, norm_layer): FPN of 256 channels over layer<k>
function M.resnet_fpn(backbone, returned_layers, extra_blocks, norm_layer)
  returned_layers = returned_layers or { 1, 2, 3, 4 }
  local return_layers, in_channels = {}, {}
  local stage2 = backbone.inplanes / 8
  for v, k in ipairs(returned_layers) do
    return_layers[v] = { "layer" .. k, tostring(v - 1) }
    in_channels[v] = stage2 * 2 ^ (k - 1)
  end
  return BackboneWithFPN(backbone, return_layers, in_channels, 256, extra_blocks, norm_layer)
end

-- the positions (0-based) of a MobileNet's stages: 0, each block with
-- stride > 1, the last layer (torchvision's stage_indices)
function M.mobilenet_stages(features)
  local kids = features:children()
  local idx = { 0 }
  for i, b in ipairs(kids) do if rawget(b, "_is_cn") then idx[#idx + 1] = i - 1 end end
  idx[#idx + 1] = #kids - 1
  return idx
end

-- torchvision's _mobilenet_extractor(backbone, fpn=True, returned_layers)
function M.mobilenet_fpn(backbone, returned_layers, extra_blocks)
  local features = backbone.features
  local stages = M.mobilenet_stages(features)
  local n = #stages
  returned_layers = returned_layers or { n - 2, n - 1 }
  local return_layers, in_channels = {}, {}
  for v, k in ipairs(returned_layers) do
    local pos = stages[k + 1]
    return_layers[v] = { tostring(pos), tostring(v - 1) }
    in_channels[v] = features[pos + 1].out_channels
  end
  return BackboneWithFPN(features, return_layers, in_channels, 256, extra_blocks)
end

return M
