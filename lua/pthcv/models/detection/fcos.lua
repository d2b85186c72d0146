-- lua/pthcv/models/detection/fcos.lua: torchvision's FCOS (fcos.py),
-- fcos_resnet50_fpn.
--
-- The ResNet-50 FPN (P3-P7), one anchor per location (sizes 8..128, the
-- strides), heads of four 3x3 convolutions + GroupNorm(32) + ReLU giving
-- class logits, box distances (after a ReLU) and centerness; per image and
-- level the scores sqrt(sigmoid(logit) * sigmoid(centerness)) >
-- score_thresh, their topk_candidates best, the distances decoded from the
-- anchor's centre and size (BoxLinearCoder) and clipped; NMS per class; the
-- detections_per_img best (retinanet.lua's merge_levels).
local ffi = require "ffi"
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local util = require "pthcv.models.detection.util"
local transform = require "pthcv.models.detection.transform"
local anchors = require "pthcv.models.detection.anchors"
local backbones = require "pthcv.models.detection.backbones"
local fpn = require "pthcv.models.detection.fpn"
local faster_rcnn = require "pthcv.models.detection.faster_rcnn"
local retinanet = require "pthcv.models.detection.retinanet"

pcall(ffi.cdef, "float sqrtf(float x);")
local M = {}

-- Conv2d 3x3, GroupNorm(32), ReLU, num_convs times: children 0..3n-1
local function tower(in_channels, num_convs)
  local layers = {}
  for _ = 1, num_convs do
    layers[#layers + 1] = nn.Conv2d(in_channels, in_channels, 3, 1, 1)
    layers[#layers + 1] = nn.GroupNorm(32, in_channels)
    layers[#layers + 1] = nn.ReLU()
  end
  return nn.Sequential(layers)
end

-- RetinaNet's classification head with its own convolutions (the forward
-- is RetinaNet's: per level cls_logits(conv(x)), flattened)
local ClsHead = nn.class("FCOSClassificationHead", retinanet.RetinaNetClassificationHead,
  { torch_class = "torchvision.models.detection.fcos.FCOSClassificationHead" })
M.FCOSClassificationHead = ClsHead
function ClsHead:__init(in_channels, num_anchors, num_classes, num_convs)
  self.num_classes, self.num_anchors = num_classes, num_anchors
  self.conv = tower(in_channels, num_convs or 4)
  self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, 1, 1)
end

local RegHead = nn.class("FCOSRegressionHead", nil,
  { torch_class = "torchvision.models.detection.fcos.FCOSRegressionHead" })
M.FCOSRegressionHead = RegHead
function RegHead:__init(in_channels, num_anchors, num_convs)
  self.conv = tower(in_channels, num_convs or 4)
  self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, 1, 1)
  self.bbox_ctrness = nn.Conv2d(in_channels, num_anchors, 3, 1, 1)
end
function RegHead:forward(x)
  local regs, ctrs = {}, {}
  for i, f in ipairs(x) do
    local t = self.conv(f)
    regs[i], ctrs[i] = F.relu(self.bbox_reg(t)), self.bbox_ctrness(t)   -- fused by the plan
  end
  return retinanet.flatten_levels(regs, 4), retinanet.flatten_levels(ctrs, 1)
end

local Head = nn.class("FCOSHead", nil, { torch_class = "torchvision.models.detection.fcos.FCOSHead" })
M.FCOSHead = Head
function Head:__init(in_channels, num_anchors, num_classes, num_convs)
  self.classification_head = ClsHead(in_channels, num_anchors, num_classes, num_convs)
  self.regression_head = RegHead(in_channels, num_anchors, num_convs)
end
function Head:forward(x)
  local reg, ctr = self.regression_head(x)
  return { cls_logits = self.classification_head(x), bbox_regression = reg, bbox_ctrness = ctr }
end

M.defaults = { num_classes = 91, min_size = 800, max_size = 1333, image_mean = { 0.485, 0.456, 0.406 },
               image_std = { 0.229, 0.224, 0.225 }, size_divisible = 32, center_sampling_radius = 1.5,
               score_thresh = 0.2, nms_thresh = 0.6, detections_per_img = 100, topk_candidates = 1000 }

local FCOS = nn.class("FCOS", nil, { torch_class = "torchvision.models.detection.fcos.FCOS" })
M.FCOS = FCOS

function FCOS:__init(backbone, o)
  self.backbone = backbone
  self.anchor_generator = anchors.AnchorGenerator({ { 8 }, { 16 }, { 32 }, { 64 }, { 128 } },
                                                  { { 1.0 }, { 1.0 }, { 1.0 }, { 1.0 }, { 1.0 } })
  self.head = Head(backbone.out_channels, 1, o.num_classes)
  self.box_coder = ops.BoxLinearCoder(true)
  self.transform = transform.GeneralizedRCNNTransform(o.min_size, o.max_size, o.image_mean, o.image_std,
                                                      o.size_divisible)
  self.o = o
end

-- sqrt(sigmoid(logits) * sigmoid(centerness)) in float32, [K, C]
local function fcos_scores(logits, ctrness)
  local s, c = F.sigmoid(logits):contiguous(), F.sigmoid(ctrness):contiguous()
  local K, C = s.shape[1], s.shape[2]
  local out = Tensor.zeros({ K, C }, "float32")
  local sp, cp, op = s:data(), c:data(), out:data()
  for k = 0, K - 1 do
    local ck = cp[k]
    for j = k * C, k * C + C - 1 do op[j] = ffi.C.sqrtf(util.f32(sp[j] * ck)) end
  end
  return out
end

function FCOS:postprocess(out, a, per_level, i, image_size)
  local logits = out.cls_logits:narrow(1, i, 1):squeeze(1)
  local reg = out.bbox_regression:narrow(1, i, 1):squeeze(1)
  local ctr = out.bbox_ctrness:narrow(1, i, 1):squeeze(1)
  local levels, first = {}, 1
  for l, n in ipairs(per_level) do
    local lvl_reg, lvl_anchors = reg:narrow(1, first, n), a:narrow(1, first, n)
    levels[l] = { scores = fcos_scores(logits:narrow(1, first, n), ctr:narrow(1, first, n)), decode = function(idx)
      return self.box_coder:decode(util.take(lvl_reg, idx), util.take(lvl_anchors, idx))
    end }
    first = first + n
  end
  return retinanet.merge_levels(levels, image_size, self.o)
end

function FCOS:forward(images) return retinanet.forward(self, images, "FCOS") end
FCOS.load_state_dict = faster_rcnn.GeneralizedRCNN.load_state_dict

function M.fcos_resnet50_fpn(opts)
  local o = util.options("fcos_resnet50_fpn", M.defaults, opts)
  local backbone = backbones.resnet_fpn(faster_rcnn.resnet50_backbone(true), { 2, 3, 4 }, fpn.LastLevelP6P7(256, 256))
  return faster_rcnn.apply_weights_option(FCOS(backbone, o), "fcos_resnet50_fpn", o, false)
end

return M
