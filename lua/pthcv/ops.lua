-- lua/pthcv/ops.lua: pthcv.ops, torchvision.ops' detection operations over
-- the C kernels (csrc/kernels/ops_detection.c, ops_roi.c, ops_masks.c).
--
--   local ops = require("pthcv").ops
--   local keep = ops.nms(boxes, scores, 0.5)           -- int64 [K], 0-based
--   local keep = ops.batched_nms(boxes, scores, labels, 0.5)
--   local iou = ops.box_iou(a, b)                      -- float32 [N, M]
--   local pooled = ops.roi_align(features, { boxes }, 7, 1 / 16, 2, true)
--   local boxes = ops.BoxCoder{ 10, 10, 5, 5 }:decode_single(deltas, anchors)
--
-- Boxes are float32 [N, 4] tensors of (x1, y1, x2, y2). Indices, given and
-- returned, are int64 tensors COUNTED FROM 0 as torchvision's: they are data
-- that compare with torch's; ops.take(t, idx) selects rows with them (t[idx]
-- in torch). Results equal torchvision 0.14's, including the order of
-- boxes with equal scores (docs/detection.md).
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local C = core.C

local M = {}

local function result(r, what)
  if r == nil then core.fail(what) end
  return Tensor.wrap(r, true)
end
M._result = result

local function argerror(fname, msg, level) error("pthcv.ops." .. fname .. ": " .. msg, (level or 2) + 1) end

local function tensor_arg(fname, x, what)
  if not Tensor.is(x) then argerror(fname, what .. " must be a Tensor, got " .. type(x), 3) end
  return x
end

-- float32 (other float dtypes converted; the C side checks shapes)
local function f32(fname, x, what)
  tensor_arg(fname, x, what)
  if x.dtype ~= "float32" then
    if not x.is_floating_point then argerror(fname, what .. " must be floating point, got " .. x.dtype, 3) end
    return x:float()
  end
  return x
end

local function int64(fname, x, what)
  tensor_arg(fname, x, what)
  if x.dtype == "int64" then return x end
  if x.is_floating_point or x.is_complex then argerror(fname, what .. " must be integers, got " .. x.dtype, 3) end
  return x:to("int64")
end

-- (height, width) from {h, w} or {height = h, width = w}
local function hw(fname, size)
  if type(size) ~= "table" then argerror(fname, "the image size is {height, width}", 3) end
  local h, w = size[1] or size.height, size[2] or size.width
  if type(h) ~= "number" or type(w) ~= "number" then argerror(fname, "the image size is {height, width}", 3) end
  return h, w
end

-- ---- boxes ----------------------------------------------------------------------
function M.box_iou(boxes1, boxes2)
  local a, b = f32("box_iou", boxes1, "boxes1"), f32("box_iou", boxes2, "boxes2")
  return result(C.pthcv_box_iou(a.ct, b.ct), "box_iou")
end

-- (x2 - x1) * (y2 - y1) per box: float32 [N]
function M.box_area(boxes)
  local b = f32("box_area", boxes, "boxes"):contiguous()
  if b.ndim ~= 2 or b.shape[2] ~= 4 then argerror("box_area", "boxes must be [N, 4]") end
  local n = b.shape[1]
  local out = Tensor.zeros({ n }, "float32")
  local p, o = b:data(), out:data()
  for i = 0, n - 1 do o[i] = (p[4 * i + 2] - p[4 * i]) * (p[4 * i + 3] - p[4 * i + 1]) end
  return out
end

function M.nms(boxes, scores, iou_threshold)
  if type(iou_threshold) ~= "number" then argerror("nms", "iou_threshold must be a number") end
  local b, s = f32("nms", boxes, "boxes"), f32("nms", scores, "scores")
  return result(C.pthcv_nms(b.ct, s.ct, iou_threshold), "nms")
end

function M.batched_nms(boxes, scores, idxs, iou_threshold)
  if type(iou_threshold) ~= "number" then argerror("batched_nms", "iou_threshold must be a number") end
  local b, s, i = f32("batched_nms", boxes, "boxes"), f32("batched_nms", scores, "scores"),
                  int64("batched_nms", idxs, "idxs")
  return result(C.pthcv_batched_nms(b.ct, s.ct, i.ct, iou_threshold), "batched_nms")
end

-- ops.ssd_candidates(scores [A, C], boxes [A, 4], score_thresh,
-- topk_candidates) -> boxes [M, 4], scores [M], labels int64 [M]: SSD's
-- per-class candidates before batched_nms (torchvision's
-- SSD.postprocess_detections: per label 1..C-1, the scores > score_thresh,
-- their topk_candidates best in torch.topk's order), labels concatenated.
function M.ssd_candidates(scores, boxes, score_thresh, topk_candidates)
  if type(score_thresh) ~= "number" then argerror("ssd_candidates", "score_thresh must be a number") end
  if type(topk_candidates) ~= "number" then argerror("ssd_candidates", "topk_candidates must be a number") end
  local s, b = f32("ssd_candidates", scores, "scores"), f32("ssd_candidates", boxes, "boxes")
  local out = ffi.new("pthcv_tensor *[3]")
  core.check(C.pthcv_ssd_candidates(s.ct, b.ct, score_thresh, topk_candidates, out, out + 1, out + 2),
             "ssd_candidates")
  return Tensor.wrap(out[0], true), Tensor.wrap(out[1], true), Tensor.wrap(out[2], true)
end

-- ops.clip_boxes_to_image(boxes, {height, width})
function M.clip_boxes_to_image(boxes, size)
  local h, w = hw("clip_boxes_to_image", size)
  local b = f32("clip_boxes_to_image", boxes, "boxes")
  return result(C.pthcv_clip_boxes_to_image(b.ct, h, w), "clip_boxes_to_image")
end

function M.remove_small_boxes(boxes, min_size)
  if type(min_size) ~= "number" then argerror("remove_small_boxes", "min_size must be a number") end
  local b = f32("remove_small_boxes", boxes, "boxes")
  return result(C.pthcv_remove_small_boxes(b.ct, min_size), "remove_small_boxes")
end

-- torch.sort(values, descending=True)[1] and torch.topk(values, k)[1]:
-- int64 indices (0-based) in torch's order, equal values included.
function M.sort_desc_indices(values)
  local v = f32("sort_desc_indices", values, "values")
  return result(C.pthcv_sort_desc_indices(v.ct), "sort_desc_indices")
end
function M.topk_indices(values, k)
  local v = f32("topk_indices", values, "values")
  return result(C.pthcv_topk_indices(v.ct, k), "topk_indices")
end

-- ---- box coders ------------------------------------------------------------------
-- ops.BoxCoder(weights [, bbox_xform_clip = log(1000 / 16)]), as
-- torchvision.models.detection._utils.BoxCoder.
local BoxCoder = {}
BoxCoder.__index = BoxCoder
function M.BoxCoder(weights, bbox_xform_clip)
  if type(weights) ~= "table" or #weights ~= 4 then argerror("BoxCoder", "weights are 4 numbers") end
  return setmetatable({ weights = { unpack(weights) }, bbox_xform_clip = bbox_xform_clip or math.log(1000 / 16),
                        _w = ffi.new("double[4]", weights) }, BoxCoder)
end
-- rel_codes [N, 4k] against boxes [N, 4] -> [N, 4k]
function BoxCoder:decode_single(rel_codes, boxes)
  local r, b = f32("BoxCoder.decode_single", rel_codes, "rel_codes"), f32("BoxCoder.decode_single", boxes, "boxes")
  return result(C.pthcv_box_decode(r.ct, b.ct, self._w, self.bbox_xform_clip), "BoxCoder.decode")
end
-- rel_codes [sum N_i, ...] against a list of boxes [N_i, 4] -> [sum N_i, k, 4]
function BoxCoder:decode(rel_codes, boxes)
  local all = #boxes == 1 and boxes[1] or require("pthcv.nn.functional").cat(boxes, 0)
  local n = all.shape[1]
  local out = self:decode_single(n > 0 and rel_codes:reshape(n, -1) or rel_codes, all)
  if n > 0 then out = out:reshape(n, -1, 4) end
  return out
end

-- ops.BoxLinearCoder([normalize_by_size = true]) (FCOS)
local BoxLinearCoder = {}
BoxLinearCoder.__index = BoxLinearCoder
function M.BoxLinearCoder(normalize_by_size)
  return setmetatable({ normalize_by_size = normalize_by_size ~= false }, BoxLinearCoder)
end
function BoxLinearCoder:decode(rel_codes, boxes)
  local r, b = f32("BoxLinearCoder.decode", rel_codes, "rel_codes"), f32("BoxLinearCoder.decode", boxes, "boxes")
  return result(C.pthcv_box_linear_decode(r.ct, b.ct, self.normalize_by_size and 1 or 0), "BoxLinearCoder.decode")
end

-- ---- regions ------------------------------------------------------------------------
-- rois [K, 5] from a Tensor [K, 5] or a list of per-image boxes [L_i, 4]
-- (torchvision's convert_boxes_to_roi_format).
function M.to_roi_format(boxes, fname)
  fname = fname or "to_roi_format"
  if Tensor.is(boxes) then
    if boxes.ndim ~= 2 or boxes.shape[2] ~= 5 then argerror(fname, "a boxes tensor must be [K, 5], got " .. tostring(boxes), 3) end
    return f32(fname, boxes, "boxes")
  end
  if type(boxes) ~= "table" then argerror(fname, "boxes must be a Tensor [K, 5] or a list of Tensors [L, 4]", 3) end
  local total = 0
  for i, b in ipairs(boxes) do
    tensor_arg(fname, b, "boxes[" .. i .. "]")
    if b.ndim ~= 2 or b.shape[2] ~= 4 then argerror(fname, "boxes[" .. i .. "] must be [L, 4], got " .. tostring(b), 3) end
    total = total + b.shape[1]
  end
  local rois = Tensor.zeros({ total, 5 }, "float32")
  local o, row = rois:data(), 0
  for i, b in ipairs(boxes) do
    local c = f32(fname, b, "boxes"):contiguous()
    local p = c:data()
    for r = 0, c.shape[1] - 1 do
      o[5 * row] = i - 1
      for k = 0, 3 do o[5 * row + 1 + k] = p[4 * r + k] end
      row = row + 1
    end
  end
  return rois
end

local function out_size(fname, s)
  if type(s) == "number" then return s, s end
  if type(s) == "table" and type(s[1]) == "number" then return s[1], s[2] or s[1] end
  argerror(fname, "output_size is an int or {height, width}", 3)
end

-- ops.roi_align(input, boxes, output_size [, spatial_scale = 1,
-- sampling_ratio = -1, aligned = false]) -> [K, C, h, w]
function M.roi_align(input, boxes, output_size, spatial_scale, sampling_ratio, aligned)
  local x = f32("roi_align", input, "input")
  local rois = M.to_roi_format(boxes, "roi_align")
  local oh, ow = out_size("roi_align", output_size)
  return result(C.pthcv_roi_align(x.ct, rois.ct, spatial_scale or 1, oh, ow, sampling_ratio or -1,
                                  aligned and 1 or 0), "roi_align")
end

-- ops.roi_pool(input, boxes, output_size [, spatial_scale = 1])
function M.roi_pool(input, boxes, output_size, spatial_scale)
  local x = f32("roi_pool", input, "input")
  local rois = M.to_roi_format(boxes, "roi_pool")
  local oh, ow = out_size("roi_pool", output_size)
  return result(C.pthcv_roi_pool(x.ct, rois.ct, spatial_scale or 1, oh, ow), "roi_pool")
end

-- Mask R-CNN's paste_masks_in_image(masks [N, 1, M, M], boxes [N, 4],
-- {height, width} [, padding = 1]) -> float32 [N, 1, height, width]
function M.paste_masks_in_image(masks, boxes, size, padding)
  local h, w = hw("paste_masks_in_image", size)
  local m, b = f32("paste_masks_in_image", masks, "masks"), f32("paste_masks_in_image", boxes, "boxes")
  return result(C.pthcv_paste_masks(m.ct, b.ct, h, w, padding or 1), "paste_masks_in_image")
end

-- Keypoint R-CNN's heatmaps_to_keypoints(maps [R, K, S, S], rois [R, 4])
-- -> keypoints float32 [R, K, 3] (x, y, 1), scores [R, K]
function M.heatmaps_to_keypoints(maps, rois)
  local m, r = f32("heatmaps_to_keypoints", maps, "maps"), f32("heatmaps_to_keypoints", rois, "rois")
  local kp, sc = ffi.new("pthcv_tensor *[1]"), ffi.new("pthcv_tensor *[1]")
  core.check(C.pthcv_heatmaps_to_keypoints(m.ct, r.ct, kp, sc), "heatmaps_to_keypoints")
  return Tensor.wrap(kp[0], true), Tensor.wrap(sc[0], true)
end

-- ---- selection -----------------------------------------------------------------------
-- ops.take(t, idx): the rows of t at int64 indices idx (0-based), as torch's
-- t[idx] (any leading-dimension tensor; the rows are copied).
function M.take(t, idx)
  tensor_arg("take", t, "the tensor")
  local ix = int64("take", idx, "idx"):contiguous()
  local n = ix.numel
  local src = t:contiguous()
  local shape = src.shape
  local rows = shape[1]
  shape[1] = n
  local out = Tensor.zeros(shape, src.dtype)
  local row_bytes = rows > 0 and src.nbytes / rows or 0
  local sp, op, ip = ffi.cast("const uint8_t *", src:data()), ffi.cast("uint8_t *", out:data()), ix:data()
  for i = 0, n - 1 do
    local r = tonumber(ip[i])
    if r < 0 or r >= rows then argerror("take", "index " .. r .. " is out of range for " .. rows .. " rows") end
    ffi.copy(op + i * row_bytes, sp + r * row_bytes, row_bytes)
  end
  return out
end

-- Lazily: MultiScaleRoIAlign and FeaturePyramidNetwork (torchvision.ops'
-- modules) live with the detection models.
return setmetatable(M, { __index = function(t, k)
  local where = { MultiScaleRoIAlign = "pthcv.models.detection.poolers",
                  FeaturePyramidNetwork = "pthcv.models.detection.fpn" }
  if where[k] then
    local v = require(where[k])[k]
    rawset(t, k, v)
    return v
  end
end })
