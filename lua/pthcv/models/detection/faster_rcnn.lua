-- lua/pthcv/models/detection/faster_rcnn.lua: torchvision's Faster R-CNN
-- (faster_rcnn.py, generalized_rcnn.py): the GeneralizedRCNN forward, the
-- box heads, and the builders fasterrcnn_resnet50_fpn(_v2) and
-- fasterrcnn_mobilenet_v3_large(_320)_fpn, with torchvision 0.14's options
-- and state_dict keys (backbones with FrozenBatchNorm2d, as its COCO weights).
--
--   local m = pthcv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn{ box_score_thresh = 0.5 }
--   m:load_state_dict(pthcv.state_dict("fasterrcnn.pth")); m:eval()
--   local dets = m(img)        -- img float32 [3, H, W] RGB in 0..1 (or a list)
--   -- dets[1].boxes [K, 4] (x1, y1, x2, y2 in img's pixels), .labels (int64), .scores
local nn = require "pthcv.nn"
local Tensor = require "pthcv.tensor"
local models = require "pthcv.models"
local blocks = require "pthcv.models.blocks"
local util = require "pthcv.models.detection.util"
local release = require "pthcv.nn.release"
local transform = require "pthcv.models.detection.transform"
local anchors = require "pthcv.models.detection.anchors"
local backbones = require "pthcv.models.detection.backbones"
local fpn = require "pthcv.models.detection.fpn"
local rpn = require "pthcv.models.detection.rpn"
local poolers = require "pthcv.models.detection.poolers"
local roi_heads = require "pthcv.models.detection.roi_heads"

local F = nn.F
local M = {}

-- ---- GeneralizedRCNN ---------------------------------------------------------------------
local GeneralizedRCNN = nn.class("GeneralizedRCNN", nil,
  { torch_class = "torchvision.models.detection.generalized_rcnn.GeneralizedRCNN" })
M.GeneralizedRCNN = GeneralizedRCNN

-- images -> {{boxes, labels, scores [, masks, keypoints, keypoints_scores]}, ...}
function GeneralizedRCNN:forward(images)
  local _, original, batch, sizes = util.prepare(self, images, self:typename())
  local t0 = util.now()
  local features = self.backbone(batch)
  util.span("network", t0)
  if Tensor.is(features) then features = { features, names = { "0" } } end
  local proposals = self.rpn(batch, sizes, features)
  release(batch) -- this call's own, read no more (as the feature maps after the heads)
  local detections = self.roi_heads(features, proposals, sizes)
  for _, f in ipairs(features) do release(f) end
  return self.transform:postprocess(detections, sizes, original)
end

-- strict loading that also takes BatchNorm2d checkpoints into
-- FrozenBatchNorm2d layers: their num_batches_tracked entries are dropped
function GeneralizedRCNN:load_state_dict(sd, opts)
  return nn.Module.load_state_dict(self, M.without_batch_counts(self, sd), opts)
end

-- sd without the "*.num_batches_tracked" keys the model does not have
function M.without_batch_counts(model, sd)
  local have = {}
  for _, kv in ipairs(model:named_buffers()) do have[kv[1]] = true end
  local OrderedDict = require "pthcv.reader.odict"
  local items = OrderedDict.is(sd) and OrderedDict.items(sd) or nil
  if not items then return sd end
  local out = OrderedDict.new("collections.OrderedDict")
  for _, kv in ipairs(items) do
    if not (kv[1]:match("%.num_batches_tracked$") and not have[kv[1]]) then out[kv[1]] = kv[2] end
  end
  return out
end

-- ---- box heads -------------------------------------------------------------------------------
local TwoMLPHead = nn.class("TwoMLPHead", nil, { torch_class = "torchvision.models.detection.faster_rcnn.TwoMLPHead" })
M.TwoMLPHead = TwoMLPHead
function TwoMLPHead:__init(in_channels, representation_size)
  self.fc6 = nn.Linear(in_channels, representation_size)
  self.fc7 = nn.Linear(representation_size, representation_size)
end
function TwoMLPHead:prepare()
  self.fc6:claim(); self.fc7:claim()
  self._fc6, self._fc7 = self.fc6:make_pack("relu"), self.fc7:make_pack("relu")
end
function TwoMLPHead:forward(x)
  return F.linear_packed(self._fc7, F.linear_packed(self._fc6, F.flatten(x, 1)))
end

-- FastRCNNConvFCHead({C, H, W}, conv_layers, fc_layers [, norm_layer])
local ConvFCHead = nn.class("FastRCNNConvFCHead", nn.Sequential,
  { torch_class = "torchvision.models.detection.faster_rcnn.FastRCNNConvFCHead" })
M.FastRCNNConvFCHead = ConvFCHead
function ConvFCHead:__init(input_size, conv_layers, fc_layers, norm_layer)
  local prev = input_size[1]
  for _, c in ipairs(conv_layers) do
    self:append(blocks.Conv2dNormActivation(prev, c, { norm_layer = norm_layer or false }))
    prev = c
  end
  self:append(nn.Flatten())
  prev = prev * input_size[2] * input_size[3]
  for _, c in ipairs(fc_layers) do
    self:append(nn.Linear(prev, c))
    self:append(nn.ReLU(true))
    prev = c
  end
end

local Predictor = nn.class("FastRCNNPredictor", nil,
  { torch_class = "torchvision.models.detection.faster_rcnn.FastRCNNPredictor" })
M.FastRCNNPredictor = Predictor
function Predictor:__init(in_channels, num_classes)
  self.cls_score = nn.Linear(in_channels, num_classes)
  self.bbox_pred = nn.Linear(in_channels, num_classes * 4)
end
function Predictor:forward(x)
  x = F.flatten(x, 1)
  return self.cls_score(x), self.bbox_pred(x)
end

-- ---- FasterRCNN ---------------------------------------------------------------------------------
-- torchvision's FasterRCNN options (the training ones are accepted and unused)
M.defaults = {
  num_classes = 91, min_size = 800, max_size = 1333, image_mean = { 0.485, 0.456, 0.406 },
  image_std = { 0.229, 0.224, 0.225 }, size_divisible = 32,
  rpn_pre_nms_top_n_train = 2000, rpn_pre_nms_top_n_test = 1000, rpn_post_nms_top_n_train = 2000,
  rpn_post_nms_top_n_test = 1000, rpn_nms_thresh = 0.7, rpn_fg_iou_thresh = 0.7, rpn_bg_iou_thresh = 0.3,
  rpn_batch_size_per_image = 256, rpn_positive_fraction = 0.5, rpn_score_thresh = 0.0,
  box_score_thresh = 0.05, box_nms_thresh = 0.5, box_detections_per_img = 100, box_fg_iou_thresh = 0.5,
  box_bg_iou_thresh = 0.5, box_batch_size_per_image = 512, box_positive_fraction = 0.25,
  bbox_reg_weights = false,
}

local FasterRCNN = nn.class("FasterRCNN", GeneralizedRCNN,
  { torch_class = "torchvision.models.detection.faster_rcnn.FasterRCNN" })
M.FasterRCNN = FasterRCNN

-- FasterRCNN(backbone, o): o has every option of M.defaults, plus optional
-- modules rpn_anchor_generator, rpn_head, box_roi_pool, box_head, box_predictor
function FasterRCNN:__init(backbone, o)
  local out_channels = backbone.out_channels
  local anchor_gen = o.rpn_anchor_generator or M.default_anchorgen()
  self.transform = transform.GeneralizedRCNNTransform(o.min_size, o.max_size, o.image_mean, o.image_std,
                                                      o.size_divisible)
  self.backbone = backbone
  self.rpn = rpn.RegionProposalNetwork(anchor_gen, o.rpn_head or rpn.RPNHead(out_channels,
    anchor_gen:num_anchors_per_location()[1]), { pre_nms_top_n = o.rpn_pre_nms_top_n_test,
    post_nms_top_n = o.rpn_post_nms_top_n_test, nms_thresh = o.rpn_nms_thresh, score_thresh = o.rpn_score_thresh })
  local pool = o.box_roi_pool or poolers.MultiScaleRoIAlign({ "0", "1", "2", "3" }, 7, 2)
  local head = o.box_head or TwoMLPHead(out_channels * pool.output_size[1] ^ 2, 1024)
  local predictor = o.box_predictor or Predictor(1024, o.num_classes)
  self.roi_heads = roi_heads.RoIHeads(pool, head, predictor, { score_thresh = o.box_score_thresh,
    nms_thresh = o.box_nms_thresh, detections_per_img = o.box_detections_per_img,
    bbox_reg_weights = o.bbox_reg_weights or nil })
end

-- torchvision's _default_anchorgen: sizes 32..512 one per level, 3 ratios
function M.default_anchorgen()
  return anchors.AnchorGenerator({ { 32 }, { 64 }, { 128 }, { 256 }, { 512 } },
                                 { { 0.5, 1.0, 2.0 }, { 0.5, 1.0, 2.0 }, { 0.5, 1.0, 2.0 }, { 0.5, 1.0, 2.0 },
                                   { 0.5, 1.0, 2.0 } })
end

-- torchvision's resnet50 backbone for the detectors: FrozenBatchNorm2d
-- (v1, as the COCO weights were trained) or BatchNorm2d (the v2 models)
function M.resnet50_backbone(frozen)
  local r = models.resnet50()
  if frozen then backbones.freeze_batchnorm(r, 1e-5) end
  return r
end

-- the weights whose FrozenBatchNorm2d torchvision gives eps 0 (overwrite_eps)
function M.apply_weights_option(model, name, o, eps0)
  local w = o.weights
  if w and w ~= "COCO_V1" and w ~= "DEFAULT" and w ~= "COCO_LEGACY" then
    error("pthcv: " .. name .. ": unknown weights '" .. tostring(w) .. "' (COCO_V1, DEFAULT)", 3)
  end
  if w and eps0 then backbones.overwrite_eps(model, 0.0) end
  return model
end

function M.fasterrcnn_resnet50_fpn(opts)
  local o = util.options("fasterrcnn_resnet50_fpn", M.defaults, opts)
  local m = FasterRCNN(backbones.resnet_fpn(M.resnet50_backbone(true)), o)
  return M.apply_weights_option(m, "fasterrcnn_resnet50_fpn", o, true)
end

-- the v2 models' Faster R-CNN (BatchNorm in the FPN and the box head, two
-- convolutions in the RPN head), with options o
function M.faster_rcnn_v2(o)
  local bn = function(c) return nn.BatchNorm2d(c) end
  local backbone = backbones.resnet_fpn(M.resnet50_backbone(false), nil, nil, bn)
  local gen = M.default_anchorgen()
  o.rpn_anchor_generator = gen
  o.rpn_head = rpn.RPNHead(backbone.out_channels, gen:num_anchors_per_location()[1], 2)
  o.box_head = ConvFCHead({ backbone.out_channels, 7, 7 }, { 256, 256, 256, 256 }, { 1024 }, bn)
  return FasterRCNN(backbone, o), bn
end

function M.fasterrcnn_resnet50_fpn_v2(opts)
  local o = util.options("fasterrcnn_resnet50_fpn_v2", M.defaults, opts)
  return M.apply_weights_option(M.faster_rcnn_v2(o), "fasterrcnn_resnet50_fpn_v2", o, false)
end

local function mobilenet_fpn(name, defaults, opts)
  local d = {}
  for k, v in pairs(M.defaults) do d[k] = v end
  for k, v in pairs(defaults) do d[k] = v end
  local o = util.options(name, d, opts)
  local mb = backbones.freeze_batchnorm(models.mobilenet_v3_large(), 1e-5)
  local backbone = backbones.mobilenet_fpn(mb)
  local sizes = { 32, 64, 128, 256, 512 }
  o.rpn_anchor_generator = anchors.AnchorGenerator({ sizes, sizes, sizes },
                                                   { { 0.5, 1.0, 2.0 }, { 0.5, 1.0, 2.0 }, { 0.5, 1.0, 2.0 } })
  return M.apply_weights_option(FasterRCNN(backbone, o), name, o, false)
end

function M.fasterrcnn_mobilenet_v3_large_320_fpn(opts)
  return mobilenet_fpn("fasterrcnn_mobilenet_v3_large_320_fpn", { min_size = 320, max_size = 640,
    rpn_pre_nms_top_n_test = 150, rpn_post_nms_top_n_test = 150, rpn_score_thresh = 0.05 }, opts)
end

function M.fasterrcnn_mobilenet_v3_large_fpn(opts)
  return mobilenet_fpn("fasterrcnn_mobilenet_v3_large_fpn", { rpn_score_thresh = 0.05 }, opts)
end

M.fpn = fpn
return M
