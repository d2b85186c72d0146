-- lua/pthcv/models/detection/roi_heads.lua: torchvision's RoIHeads
-- (roi_heads.py), inference, with the box, mask and keypoint branches.
--
-- Boxes: proposals pooled (MultiScaleRoIAlign), the box head and predictor
-- give class logits and per-class deltas; then per image (torchvision's
-- postprocess_detections): deltas decoded (BoxCoder 10, 10, 5, 5), softmax
-- scores, boxes clipped, the background column dropped, every (box, class)
-- with score > score_thresh kept in proposal-major order, boxes smaller than
-- 1e-2 dropped, NMS per class (nms_thresh), the detections_per_img best.
-- Masks: the detections pooled again, mask head and predictor, sigmoid of
-- each detection's class channel [K, 1, M, M] (pasted into the image by the
-- transform's postprocess). Keypoints: pooled, keypoint head and predictor,
-- heatmaps -> keypoints [K, 17, 3] and keypoints_scores [K, 17].
local ffi = require "ffi"
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local util = require "pthcv.models.detection.util"
local release = require "pthcv.nn.release"

local M = {}

local RoIHeads = nn.class("RoIHeads", nil, { torch_class = "torchvision.models.detection.roi_heads.RoIHeads" })
M.RoIHeads = RoIHeads

-- RoIHeads(box_roi_pool, box_head, box_predictor, {score_thresh, nms_thresh,
-- detections_per_img, bbox_reg_weights = {10, 10, 5, 5}})
function RoIHeads:__init(box_roi_pool, box_head, box_predictor, o)
  self.box_roi_pool, self.box_head, self.box_predictor = box_roi_pool, box_head, box_predictor
  self.box_coder = ops.BoxCoder(o.bbox_reg_weights or { 10.0, 10.0, 5.0, 5.0 })
  self.score_thresh, self.nms_thresh, self.detections_per_img = o.score_thresh, o.nms_thresh, o.detections_per_img
end

-- one image: decoded boxes [R, C*4] (clipped), scores [R, C] -> detections
function RoIHeads:select(boxes, scores)
  local R, C = scores.shape[1], scores.shape[2]
  local bp, sp = boxes:data(), scores:data()
  local lim, small = util.f32(self.score_thresh), util.f32(1e-2)
  local keep_b, keep_s, keep_l = {}, {}, {}
  local n = 0
  for r = 0, R - 1 do
    for c = 1, C - 1 do
      local s = sp[r * C + c]
      if s > lim then
        local b = bp + (r * C + c) * 4
        if util.f32(b[2] - b[0]) >= small and util.f32(b[3] - b[1]) >= small then
          n = n + 1
          keep_b[n], keep_s[n], keep_l[n] = { b[0], b[1], b[2], b[3] }, s, c
        end
      end
    end
  end
  local cb, cs, cl = Tensor.zeros({ n, 4 }, "float32"), Tensor.zeros({ n }, "float32"), Tensor.zeros({ n }, "int64")
  local pb, ps, pl = cb:data(), cs:data(), cl:data()
  for i = 1, n do
    local b = keep_b[i]
    pb[4 * i - 4], pb[4 * i - 3], pb[4 * i - 2], pb[4 * i - 1] = b[1], b[2], b[3], b[4]
    ps[i - 1], pl[i - 1] = keep_s[i], keep_l[i]
  end
  local keep = ops.batched_nms(cb, cs, cl, self.nms_thresh)
  if keep.numel > self.detections_per_img then keep = keep:narrow(1, 1, self.detections_per_img) end
  return { boxes = util.take(cb, keep), scores = util.take(cs, keep), labels = util.take(cl, keep) }
end

function RoIHeads:postprocess_detections(class_logits, box_regression, proposals, image_sizes)
  local scores_all = F.softmax(class_logits, -1)
  local C = class_logits.shape[2]
  local out, first = {}, 1
  for i, props in ipairs(proposals) do
    local R = props.shape[1]
    local reg = box_regression:narrow(1, first, R)
    local boxes = self.box_coder:decode_single(reg, props)
    boxes = ops.clip_boxes_to_image(boxes, image_sizes[i]):contiguous()
    out[i] = self:select(boxes, scores_all:narrow(1, first, R):contiguous())
    assert(boxes.shape[2] == 4 * C)
    first = first + R
  end
  return out
end

-- the class channel of each detection's mask logits, after the sigmoid
local function mask_probabilities(logits, labels_per_image)
  local probs = F.sigmoid(logits)
  local K, C, Hm, Wm = unpack(probs.shape)
  local out = Tensor.zeros({ K, 1, Hm, Wm }, "float32")
  local src, dst = probs:data(), out:data()
  local row = 0
  for _, labels in ipairs(labels_per_image) do
    local lp = labels:data()
    for j = 0, labels.numel - 1 do
      local c = tonumber(lp[j])
      ffi.copy(dst + row * Hm * Wm, src + (row * C + c) * Hm * Wm, Hm * Wm * 4)
      row = row + 1
    end
  end
  return out
end

local function split_rows(t, detections, field, make)
  local first = 1
  for _, d in ipairs(detections) do
    local k = d.boxes.shape[1]
    d[field] = make(t, first, k)
    first = first + k
  end
end

function RoIHeads:forward(features, proposals, image_sizes)
  local t0 = util.now()
  local pooled = self.box_roi_pool(features, proposals, image_sizes)
  local x = self.box_head(pooled)
  release(pooled, x) -- [proposals, 256, 7, 7]: freed now, not at the next collection
  local class_logits, box_regression = self.box_predictor(x)
  release(x, class_logits)
  util.span("network", t0)
  local result = self:postprocess_detections(class_logits, box_regression, proposals, image_sizes)
  local boxes = {}
  for i, d in ipairs(result) do boxes[i] = d.boxes end
  if self.mask_roi_pool then
    local total = 0
    for _, b in ipairs(boxes) do total = total + b.shape[1] end
    if total > 0 then
      t0 = util.now()
      local logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, boxes, image_sizes)))
      util.span("network", t0)
      local labels = {}
      for i, d in ipairs(result) do labels[i] = d.labels end
      split_rows(mask_probabilities(logits, labels), result, "masks",
                 function(t, first, k) return t:narrow(1, first, k) end)
    else
      for _, d in ipairs(result) do d.masks = Tensor.zeros({ 0, 1, 28, 28 }, "float32") end
    end
  end
  if self.keypoint_roi_pool then
    local total = 0
    for _, b in ipairs(boxes) do total = total + b.shape[1] end
    local maps
    if total > 0 then
      t0 = util.now()
      maps = self.keypoint_predictor(self.keypoint_head(self.keypoint_roi_pool(features, boxes, image_sizes)))
      util.span("network", t0)
    end
    local first = 1
    for _, d in ipairs(result) do
      local k = d.boxes.shape[1]
      if k > 0 then
        d.keypoints, d.keypoints_scores = ops.heatmaps_to_keypoints(maps:narrow(1, first, k), d.boxes)
      else
        local nk = self.keypoint_predictor.out_channels
        d.keypoints, d.keypoints_scores = Tensor.zeros({ 0, nk, 3 }, "float32"), Tensor.zeros({ 0, nk }, "float32")
      end
      first = first + k
    end
  end
  return result
end

return M
