-- lua/pthcv/models/detection/rpn.lua: torchvision's region proposal
-- network (rpn.py), inference.
--
-- RPNHead: per level, conv_depth 3x3 convolutions + ReLU, then objectness
-- logits (A per location) and box deltas (4 A). RegionProposalNetwork:
-- anchors decoded with the deltas (BoxCoder weights 1, 1, 1, 1), then per
-- image: the pre_nms_top_n best objectness logits of each level (torch's
-- top-k order), sigmoid, boxes clipped to the image, boxes smaller than
-- 1e-3 dropped, scores below score_thresh dropped, NMS per level
-- (nms_thresh), the post_nms_top_n best kept.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local blocks = require "pthcv.models.blocks"
local util = require "pthcv.models.detection.util"

local M = {}

local RPNHead = nn.class("RPNHead", nil, { torch_class = "torchvision.models.detection.rpn.RPNHead" })
M.RPNHead = RPNHead

-- RPNHead(in_channels, num_anchors [, conv_depth = 1])
function RPNHead:__init(in_channels, num_anchors, conv_depth)
  local convs = {}
  for i = 1, conv_depth or 1 do
    convs[i] = blocks.Conv2dNormActivation(in_channels, in_channels, { kernel_size = 3, norm_layer = false })
  end
  self.conv = nn.Sequential(convs)
  self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1, 1)
  self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1, 1)
end

-- features {t, ...} -> objectness {[N, A, H, W], ...}, deltas {[N, 4A, H, W], ...}
function RPNHead:forward(x)
  local logits, reg = {}, {}
  for i, feature in ipairs(x) do
    local t = self.conv(feature)
    logits[i], reg[i] = self.cls_logits(t), self.bbox_pred(t)
  end
  return logits, reg
end

local RPN = nn.class("RegionProposalNetwork", nil,
  { torch_class = "torchvision.models.detection.rpn.RegionProposalNetwork" })
M.RegionProposalNetwork = RPN

-- RegionProposalNetwork(anchor_generator, head, {pre_nms_top_n, post_nms_top_n,
-- nms_thresh, score_thresh = 0}) (the testing values)
function RPN:__init(anchor_generator, head, o)
  self.anchor_generator, self.head = anchor_generator, head
  self.box_coder = ops.BoxCoder({ 1.0, 1.0, 1.0, 1.0 })
  self.pre_nms_top_n, self.post_nms_top_n = o.pre_nms_top_n, o.post_nms_top_n
  self.nms_thresh, self.score_thresh = o.nms_thresh, o.score_thresh or 0.0
  self.min_size = 1e-3
end

-- objectness [N, A, H, W] per level -> [N, sum HWA]; deltas -> [N * sum HWA, 4]
local function concat_levels(objectness, deltas)
  local obj, reg = {}, {}
  for i = 1, #objectness do
    obj[i] = util.permute_and_flatten(objectness[i], 1)
    reg[i] = util.permute_and_flatten(deltas[i], 4)
  end
  local o = util.cat_dim(obj, 1)
  local r = util.cat_dim(reg, 1)
  return o:reshape(o.shape[1], -1), r:reshape(-1, 4)
end

-- one image: proposals [A, 4], objectness [A] (logits), anchors per level
function RPN:filter_proposals(proposals, objectness, image_size, per_level)
  -- the top pre_nms_top_n logits of each level, in torch's top-k order
  local picked, levels, offset = {}, {}, 0
  for lvl, n in ipairs(per_level) do
    local ob = objectness:narrow(1, offset + 1, n)
    local k = math.min(self.pre_nms_top_n, n)
    local idx = ops.topk_indices(ob, k)
    local p = idx:data()
    for i = 0, k - 1 do p[i] = p[i] + offset end
    picked[#picked + 1] = idx
    levels[#levels + 1] = util.full_int64(k, lvl - 1)
    offset = offset + n
  end
  local top = util.cat(picked, { 0 }, "int64")
  local lvl = util.cat(levels, { 0 }, "int64")
  local scores = F.sigmoid(util.take(objectness, top))
  local boxes = ops.clip_boxes_to_image(util.take(proposals, top), image_size)
  local keep = ops.remove_small_boxes(boxes, self.min_size)
  boxes, scores, lvl = util.take(boxes, keep), util.take(scores, keep), util.take(lvl, keep)
  keep = util.where(scores, self.score_thresh, true)   -- >=, as torchvision
  boxes, scores, lvl = util.take(boxes, keep), util.take(scores, keep), util.take(lvl, keep)
  keep = ops.batched_nms(boxes, scores, lvl, self.nms_thresh)
  if keep.numel > self.post_nms_top_n then keep = keep:narrow(1, 1, self.post_nms_top_n) end
  return util.take(boxes, keep), util.take(scores, keep)
end

-- images [N, 3, H, W], sizes {{h, w}, ...}, features {t, ...} -> proposals
-- {[K_i, 4], ...} (and their scores)
function RPN:forward(images, sizes, features)
  local t0 = util.now()
  local objectness, deltas = self.head(features)
  util.span("network", t0)
  local grids, per_level = {}, {}
  for i, f in ipairs(features) do
    grids[i] = { f.shape[3], f.shape[4] }
    per_level[i] = objectness[i].shape[2] * f.shape[3] * f.shape[4]
  end
  local anchors = self.anchor_generator:anchors({ images.shape[3], images.shape[4] }, grids)
  local obj, reg = concat_levels(objectness, deltas)
  local num_images = images.shape[1]
  local total = anchors.shape[1]
  local boxes, scores = {}, {}
  for i = 1, num_images do
    local props = self.box_coder:decode_single(reg:narrow(1, (i - 1) * total + 1, total), anchors)
    boxes[i], scores[i] = self:filter_proposals(props, obj:narrow(1, i, 1):reshape(-1), sizes[i], per_level)
  end
  return boxes, scores
end

return M
