-- lua/pthcv/models/detection/retinanet.lua: torchvision's RetinaNet
-- (retinanet.py): retinanet_resnet50_fpn and _v2, and the one-stage
-- post-processing FCOS shares.
--
-- forward(images): the transform, the ResNet-50 FPN (P3-P7), per level four
-- 3x3 convolutions (+GroupNorm in v2) + ReLU and the class logits (A x C)
-- and box deltas (A x 4); then per image and level (torchvision's
-- postprocess_detections): sigmoid scores of every (anchor, class) >
-- score_thresh, their topk_candidates best (torch's top-k order), each
-- decoded against its anchor (BoxCoder 1, 1, 1, 1) and clipped; all levels
-- through NMS per class (nms_thresh); the detections_per_img best.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local blocks = require "pthcv.models.blocks"
local util = require "pthcv.models.detection.util"
local transform = require "pthcv.models.detection.transform"
local anchors = require "pthcv.models.detection.anchors"
local backbones = require "pthcv.models.detection.backbones"
local fpn = require "pthcv.models.detection.fpn"
local faster_rcnn = require "pthcv.models.detection.faster_rcnn"

local M = {}

-- ---- one-stage post-processing (RetinaNet, FCOS) ----------------------------------------
-- One level's candidates: scores [K, C] (float32, anchor-major, the values
-- torch thresholds and ranks) -> (scores [k], anchor indices, labels), the
-- k = min(topk, count > thresh) best in torch's top-k order.
function M.level_candidates(scores, thresh, topk)
  local c = scores:contiguous()
  local C = c.shape[2]
  local p, lim = c:data(), util.f32(thresh)
  local pos, vals = {}, {}
  for i = 0, c.numel - 1 do
    if p[i] > lim then pos[#pos + 1], vals[#vals + 1] = i, p[i] end
  end
  local v = Tensor.from_table(vals, "float32")
  if #vals == 0 then v = Tensor.zeros({ 0 }, "float32") end
  local top = ops.topk_indices(v, math.min(topk, #vals))
  local tp, k = top:data(), top.numel
  local idx, labels = Tensor.zeros({ k }, "int64"), Tensor.zeros({ k }, "int64")
  local ip, lp = idx:data(), labels:data()
  for i = 0, k - 1 do
    local flat = pos[tonumber(tp[i]) + 1]
    ip[i], lp[i] = math.floor(flat / C), flat % C
  end
  return util.take(v, top), idx, labels
end

-- levels: {{scores [K, C], decode = fn(anchor_idx) -> boxes [k, 4]}, ...}
-- -> {boxes, scores, labels} after clipping, NMS per class and the cap
function M.merge_levels(levels, image_size, o)
  local bs, ss, ls = {}, {}, {}
  for i, lvl in ipairs(levels) do
    local s, idx, labels = M.level_candidates(lvl.scores, o.score_thresh, o.topk_candidates)
    bs[i] = ops.clip_boxes_to_image(lvl.decode(idx), image_size)
    ss[i], ls[i] = s, labels
  end
  local b, s, l = util.cat(bs, { 0, 4 }), util.cat(ss, { 0 }), util.cat(ls, { 0 }, "int64")
  local keep = ops.batched_nms(b, s, l, o.nms_thresh)
  if keep.numel > o.detections_per_img then keep = keep:narrow(1, 1, o.detections_per_img) end
  return { boxes = util.take(b, keep), scores = util.take(s, keep), labels = util.take(l, keep) }
end

-- the common forward of the one-stage detectors: self.transform, .backbone,
-- .head, .anchor_generator and self:postprocess(outputs, anchors, per_level,
-- image index, image size)
function M.forward(self, images, who)
  local original, batch, sizes
  images, original, batch, sizes = util.prepare(self, images, who)
  local t0 = util.now()
  local features = self.backbone(batch)
  local out = self.head(features)
  util.span("network", t0)
  local grids, per_level = {}, {}
  for i, f in ipairs(features) do
    grids[i] = { f.shape[3], f.shape[4] }
    per_level[i] = f.shape[3] * f.shape[4]
  end
  local a = self.anchor_generator:anchors({ batch.shape[3], batch.shape[4] }, grids)
  local A = a.shape[1]
  local total = 0
  for _, n in ipairs(per_level) do total = total + n end
  for i, n in ipairs(per_level) do per_level[i] = n * (A / total) end
  local detections = {}
  for i = 1, #images do detections[i] = self:postprocess(out, a, per_level, i, sizes[i]) end
  return self.transform:postprocess(detections, sizes, original)
end

-- ---- heads ----------------------------------------------------------------------------------
local function tower(in_channels, norm_layer)
  local convs = {}
  for i = 1, 4 do convs[i] = blocks.Conv2dNormActivation(in_channels, in_channels, { norm_layer = norm_layer or false }) end
  return nn.Sequential(convs)
end

-- [N, A*K, H, W] per level -> [N, sum HWA, K]
function M.flatten_levels(maps, K)
  local parts = {}
  for i, m in ipairs(maps) do parts[i] = util.permute_and_flatten(m, K) end
  return util.cat_dim(parts, 1)
end

local ClsHead = nn.class("RetinaNetClassificationHead", nil,
  { torch_class = "torchvision.models.detection.retinanet.RetinaNetClassificationHead" })
M.RetinaNetClassificationHead = ClsHead
function ClsHead:__init(in_channels, num_anchors, num_classes, norm_layer)
  self.conv = tower(in_channels, norm_layer)
  self.cls_logits = nn.Conv2d(in_channels, num_anchors * num_classes, 3, 1, 1)
  self.num_classes, self.num_anchors = num_classes, num_anchors
end
function ClsHead:forward(x)
  local maps = {}
  for i, f in ipairs(x) do maps[i] = self.cls_logits(self.conv(f)) end
  return M.flatten_levels(maps, self.num_classes)
end

local RegHead = nn.class("RetinaNetRegressionHead", nil,
  { torch_class = "torchvision.models.detection.retinanet.RetinaNetRegressionHead" })
M.RetinaNetRegressionHead = RegHead
function RegHead:__init(in_channels, num_anchors, norm_layer)
  self.conv = tower(in_channels, norm_layer)
  self.bbox_reg = nn.Conv2d(in_channels, num_anchors * 4, 3, 1, 1)
end
function RegHead:forward(x)
  local maps = {}
  for i, f in ipairs(x) do maps[i] = self.bbox_reg(self.conv(f)) end
  return M.flatten_levels(maps, 4)
end

local Head = nn.class("RetinaNetHead", nil, { torch_class = "torchvision.models.detection.retinanet.RetinaNetHead" })
M.RetinaNetHead = Head
function Head:__init(in_channels, num_anchors, num_classes, norm_layer)
  self.classification_head = ClsHead(in_channels, num_anchors, num_classes, norm_layer)
  self.regression_head = RegHead(in_channels, num_anchors, norm_layer)
end
function Head:forward(x)
  return { cls_logits = self.classification_head(x), bbox_regression = self.regression_head(x) }
end

-- ---- RetinaNet ----------------------------------------------------------------------------------
M.defaults = { num_classes = 91, min_size = 800, max_size = 1333, image_mean = { 0.485, 0.456, 0.406 },
               image_std = { 0.229, 0.224, 0.225 }, size_divisible = 32, score_thresh = 0.05, nms_thresh = 0.5,
               detections_per_img = 300, fg_iou_thresh = 0.5, bg_iou_thresh = 0.4, topk_candidates = 1000 }

local RetinaNet = nn.class("RetinaNet", nil, { torch_class = "torchvision.models.detection.retinanet.RetinaNet" })
M.RetinaNet = RetinaNet

function RetinaNet:__init(backbone, o, head_norm)
  self.backbone = backbone
  self.anchor_generator = M.default_anchorgen()
  self.head = Head(backbone.out_channels, self.anchor_generator:num_anchors_per_location()[1], o.num_classes, head_norm)
  self.box_coder = ops.BoxCoder({ 1.0, 1.0, 1.0, 1.0 })
  self.transform = transform.GeneralizedRCNNTransform(o.min_size, o.max_size, o.image_mean, o.image_std,
                                                      o.size_divisible)
  self.o = o
end

function RetinaNet:postprocess(out, a, per_level, i, image_size)
  local logits = F.sigmoid(out.cls_logits:narrow(1, i, 1):squeeze(1))
  local reg = out.bbox_regression:narrow(1, i, 1):squeeze(1)
  local levels, first = {}, 1
  for l, n in ipairs(per_level) do
    local lvl_reg, lvl_anchors = reg:narrow(1, first, n), a:narrow(1, first, n)
    levels[l] = { scores = logits:narrow(1, first, n), decode = function(idx)
      return self.box_coder:decode_single(util.take(lvl_reg, idx), util.take(lvl_anchors, idx))
    end }
    first = first + n
  end
  return M.merge_levels(levels, image_size, self.o)
end

function RetinaNet:forward(images) return M.forward(self, images, "RetinaNet") end
RetinaNet.load_state_dict = faster_rcnn.GeneralizedRCNN.load_state_dict

-- torchvision's retinanet _default_anchorgen: 3 sizes x 3 ratios per level
function M.default_anchorgen()
  local sizes, ratios = {}, {}
  for i, x in ipairs({ 32, 64, 128, 256, 512 }) do
    sizes[i] = { x, math.floor(x * 2 ^ (1.0 / 3)), math.floor(x * 2 ^ (2.0 / 3)) }
    ratios[i] = { 0.5, 1.0, 2.0 }
  end
  return anchors.AnchorGenerator(sizes, ratios)
end

function M.retinanet_resnet50_fpn(opts)
  local o = util.options("retinanet_resnet50_fpn", M.defaults, opts)
  local backbone = backbones.resnet_fpn(faster_rcnn.resnet50_backbone(true), { 2, 3, 4 }, fpn.LastLevelP6P7(256, 256))
  return faster_rcnn.apply_weights_option(RetinaNet(backbone, o), "retinanet_resnet50_fpn", o, true)
end

function M.retinanet_resnet50_fpn_v2(opts)
  local o = util.options("retinanet_resnet50_fpn_v2", M.defaults, opts)
  local backbone = backbones.resnet_fpn(faster_rcnn.resnet50_backbone(false), { 2, 3, 4 },
                                        fpn.LastLevelP6P7(2048, 256))
  local gn = function(c) return nn.GroupNorm(32, c) end
  return faster_rcnn.apply_weights_option(RetinaNet(backbone, o, gn), "retinanet_resnet50_fpn_v2", o, false)
end

return M
