-- lua/pthcv/models/segmentation/init.lua: pthcv.models.segmentation,
-- torchvision 0.14's semantic segmentation models with its names, options
-- and state_dict keys: fcn_resnet50/101, deeplabv3_resnet50/101,
-- deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large.
--
--   local seg = pthcv.models.segmentation
--   local m = seg.deeplabv3_mobilenet_v3_large{ aux_loss = true }   -- the aux head, as in the VOC weights
--   m:load_state_dict(pthcv.state_dict("deeplabv3.pth")); m:eval()
--   local r = m(x)        -- x float32 [N, 3, H, W], normalised (ImageNet mean and std)
--   -- r.out [N, num_classes, H, W] logits (r.aux too with aux_loss)
--
-- Options: num_classes (21, VOC's), aux_loss (false; the torchvision
-- weights have it: weights = "COCO_WITH_VOC_LABELS_V1" sets it as torchvision does).
local nn = require "pthcv.nn"
local F = nn.F
local models = require "pthcv.models"
local util = require "pthcv.models.detection.util"
local backbones = require "pthcv.models.detection.backbones"
local heads = require "pthcv.models.segmentation.heads"

local M = {}
M.heads = heads

local function upsample(x, h, w)
  return F.interpolate(x, { size = { h, w }, mode = "bilinear", align_corners = false })
end

-- _SimpleSegmentationModel: backbone -> classifier (and aux_classifier), the
-- logits upsampled to the input's size. FCN and DeepLabV3 are this.
local function simple_model(name)
  local cls = nn.class(name, nil, { torch_class = "torchvision.models.segmentation." .. name:lower() .. "." .. name })
  function cls:__init(backbone, classifier, aux_classifier)
    self.backbone, self.classifier, self.aux_classifier = backbone, classifier, aux_classifier
  end
  function cls:forward(x)
    local H, W = x.shape[3], x.shape[4]
    local feats = self.backbone(x)
    local named = {}
    for i, n in ipairs(feats.names) do named[n] = feats[i] end
    local result = { out = upsample(self.classifier(named.out), H, W) }
    if self.aux_classifier then result.aux = upsample(self.aux_classifier(named.aux), H, W) end
    return result
  end
  -- forward(x).out before its upsampling to x's size (pthcv.segment
  -- resizes and classes the pixels in one step)
  function cls:logits(x)
    local feats = self.backbone(x)
    for i, n in ipairs(feats.names) do if n == "out" then return self.classifier(feats[i]) end end
  end
  return cls
end
M.FCN = simple_model("FCN")
M.DeepLabV3 = simple_model("DeepLabV3")

local LRASPP = nn.class("LRASPP", nil, { torch_class = "torchvision.models.segmentation.lraspp.LRASPP" })
M.LRASPP = LRASPP
function LRASPP:__init(backbone, low_channels, high_channels, num_classes, inter_channels)
  self.backbone = backbone
  self.classifier = heads.LRASPPHead(low_channels, high_channels, num_classes, inter_channels or 128)
end
function LRASPP:forward(x)
  return { out = upsample(self:logits(x), x.shape[3], x.shape[4]) }
end
-- forward(x).out before its upsampling to x's size
function LRASPP:logits(x)
  local feats = self.backbone(x)
  local named = {}
  for i, n in ipairs(feats.names) do named[n] = feats[i] end
  return self.classifier(named.low, named.high)
end

local defaults = { num_classes = 21, aux_loss = false }

local function options(name, opts)
  local o = util.options(name, defaults, opts)
  if o.weights then
    if o.weights ~= "COCO_WITH_VOC_LABELS_V1" and o.weights ~= "DEFAULT" then
      error("pthcv: " .. name .. ": unknown weights '" .. tostring(o.weights) .. "' (COCO_WITH_VOC_LABELS_V1)", 3)
    end
    if opts.aux_loss == nil then o.aux_loss = true end
  end
  return o
end

local function resnet_model(name, depth, cls, head)
  return function(opts)
    local o = options(name, opts)
    local r = models["resnet" .. depth] { replace_stride_with_dilation = { false, true, true } }
    local layers = { { "layer4", "out" } }
    if o.aux_loss then layers[2] = { "layer3", "aux" } end
    local backbone = backbones.IntermediateLayerGetter(r, layers)
    return cls(backbone, head(2048, o.num_classes), o.aux_loss and heads.FCNHead(1024, o.num_classes) or nil)
  end
end
M.fcn_resnet50 = resnet_model("fcn_resnet50", 50, M.FCN, heads.FCNHead)
M.fcn_resnet101 = resnet_model("fcn_resnet101", 101, M.FCN, heads.FCNHead)
M.deeplabv3_resnet50 = resnet_model("deeplabv3_resnet50", 50, M.DeepLabV3, heads.DeepLabHead)
M.deeplabv3_resnet101 = resnet_model("deeplabv3_resnet101", 101, M.DeepLabV3, heads.DeepLabHead)

-- MobileNetV3-Large (dilated) and its stages C2 (output stride 8), C5 (16)
local function mobilenet()
  local features = models.mobilenet_v3_large({ dilated = true }).features
  local stages = backbones.mobilenet_stages(features)
  local low, high = stages[#stages - 3], stages[#stages]
  local kids = features:children()
  return features, low, high, kids[low + 1].out_channels, kids[high + 1].out_channels
end

function M.deeplabv3_mobilenet_v3_large(opts)
  local o = options("deeplabv3_mobilenet_v3_large", opts)
  local features, aux_pos, out_pos, aux_c, out_c = mobilenet()
  local layers = { { tostring(out_pos), "out" } }
  if o.aux_loss then layers[2] = { tostring(aux_pos), "aux" } end
  local backbone = backbones.IntermediateLayerGetter(features, layers)
  return M.DeepLabV3(backbone, heads.DeepLabHead(out_c, o.num_classes),
                     o.aux_loss and heads.FCNHead(aux_c, o.num_classes) or nil)
end

function M.lraspp_mobilenet_v3_large(opts)
  if opts and opts.aux_loss then error("pthcv: lraspp_mobilenet_v3_large: this model has no auxiliary head", 2) end
  local o = util.options("lraspp_mobilenet_v3_large", { num_classes = 21 }, opts)
  local features, low, high, low_c, high_c = mobilenet()
  local backbone = backbones.IntermediateLayerGetter(features, { { tostring(low), "low" }, { tostring(high), "high" } })
  return LRASPP(backbone, low_c, high_c, o.num_classes)
end

local names = { "deeplabv3_mobilenet_v3_large", "deeplabv3_resnet101", "deeplabv3_resnet50", "fcn_resnet101",
                "fcn_resnet50", "lraspp_mobilenet_v3_large" }
function M.list() return { unpack(names) } end
function M.has(name)
  for _, n in ipairs(names) do if n == name then return true end end
  return false
end

-- pthcv.models.segmentation.get(name [, opts])
function M.get(name, opts)
  for _, n in ipairs(names) do if n == name then return M[n](opts) end end
  error("pthcv: unknown segmentation model '" .. tostring(name) .. "' (known: " .. table.concat(names, ", ") .. ")", 2)
end

return M
