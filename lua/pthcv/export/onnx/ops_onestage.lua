-- lua/pthcv/export/onnx/ops_onestage.lua: ONNX export of torchvision's
-- one-stage FPN detectors, RetinaNet (retinanet_resnet50_fpn and _v2) and
-- FCOS (fcos_resnet50_fpn), as whole detectors: one image in at the size
-- traced, boxes, labels and scores out (ops_detection.lua builds and checks
-- the file; its header describes the interface).
--
-- The traced part (trace.lua, over pthcv's kernels): the transform
-- (normalise, bilinear Resize to GeneralizedRCNNTransform's size, zero Pad
-- to size_divisible), backbone with FPN, head; then every anchor's scores
-- (RetinaNet: sigmoid(logits); FCOS: sqrt(sigmoid(logits) *
-- sigmoid(centerness))) and its box decoded against the anchor (constants:
-- the input's size is fixed) and clipped to the resized image, in F ops.
--
-- The post-processing nodes (retinanet.lua's merge_levels, torchvision's
-- postprocess_detections), opset 11 on:
--   per FPN level, TopK of its (anchor, class) scores flattened
--     (topk_candidates), anchor = index / C and label = index mod C;
--     torchvision thresholds before its top-k, which keeps the same
--     candidates above the threshold: the threshold is applied by NMS;
--   the levels' candidates concatenated, their boxes gathered;
--   NonMaxSuppression with each class as one of its classes (the scores of
--     the other classes' candidates set to -1, below any threshold): NMS per
--     class exactly, not torchvision's coordinate offsets, which round;
--     its score_threshold is score_thresh (kept: score > score_thresh);
--   the detections_per_img best by score (TopK), boxes scaled to the input.
local Tensor = require "pthcv.tensor"
local nn = require "pthcv.nn"
local F = nn.F

local M = {}

local OneStageExport = nn.class("OneStageExport")
M.OneStageExport = OneStageExport
-- detector: RetinaNet or FCOS; size {h, w}: the input image's
function OneStageExport:__init(detector, size, no_postprocess)
  local d = detector
  self.detector, self.no_postprocess = d, no_postprocess
  self.fcos = d:typename() == "FCOS"
  self.anchor_generator, self.box_coder = d.anchor_generator, d.box_coder
  local t = d.transform
  self.out_h, self.out_w = t:resized_size(size[1], size[2])
  local div = t.size_divisible
  self.pad_h, self.pad_w = math.ceil(self.out_h / div) * div, math.ceil(self.out_w / div) * div
  local m, s = t.image_mean, t.image_std
  self.mean = Tensor.from_table({ m[1], m[2], m[3] }, "float32"):reshape({ 1, 3, 1, 1 })
  self.std = Tensor.from_table({ s[1], s[2], s[3] }, "float32"):reshape({ 1, 3, 1, 1 })
end

-- the batch the model's transform makes of x [1, 3, H, W], and the resized
-- picture before its padding
-- (with --dynamic, padded even by 0: detector_dynamic.lua computes the pads)
function OneStageExport:batch(x)
  local y = F.interpolate((x - self.mean) / self.std,
                          { size = { self.out_h, self.out_w }, mode = "bilinear", align_corners = false })
  if self.pad_h == self.out_h and self.pad_w == self.out_w and not self.dynamic then return y, y end
  return F.pad(y, { 0, self.pad_w - self.out_w, 0, self.pad_h - self.out_h }), y
end

-- the anchors of the padded batch and the anchors per level (as
-- retinanet.forward computes them) from the maps {[1, ., H, W], ...} of the levels
function OneStageExport:set_anchors(features)
  local grids, per_level, total = {}, {}, 0
  for i, f in ipairs(features) do
    grids[i] = { f.shape[3], f.shape[4] }
    per_level[i] = f.shape[3] * f.shape[4]
    total = total + per_level[i]
  end
  local a = self.anchor_generator:anchors({ self.pad_h, self.pad_w }, grids):contiguous()
  for i, n in ipairs(per_level) do per_level[i] = n * (a.shape[1] / total) end
  self.anchors, self.per_level, self.grids = a, per_level, grids
  -- the clipping bounds as tensors (--dynamic replaces them with values computed in the graph)
  self.bound_w = Tensor.from_table({ self.out_w }, "float32"):reshape({ 1, 1 })
  self.bound_h = Tensor.from_table({ self.out_h }, "float32"):reshape({ 1, 1 })
  local function col(j) return a:narrow(2, j, 1):contiguous() end
  self.widths, self.heights = col(3) - col(1), col(4) - col(2)
  self.ctr_x, self.ctr_y = col(1) + self.widths * 0.5, col(2) + self.heights * 0.5
  self.mid_x, self.mid_y = (col(1) + col(3)) * 0.5, (col(2) + col(4)) * 0.5 -- FCOS's centres
end

-- reg [A, 4] -> boxes [A, 4] clipped to the resized image: RetinaNet's
-- BoxCoder(1, 1, 1, 1).decode_single, FCOS's BoxLinearCoder(normalize_by_size)
function OneStageExport:decode(reg)
  local function col(j) return reg:narrow(2, j, 1) end
  local x1, y1, x2, y2
  if self.fcos then
    local cx, cy = self.mid_x, self.mid_y
    x1, y1 = cx - col(1) * self.widths, cy - col(2) * self.heights
    x2, y2 = cx + col(3) * self.widths, cy + col(4) * self.heights
  else
    local coder = self.box_coder
    local w = coder.weights
    local dx, dy = col(1) / w[1], col(2) / w[2]
    local dw = F.clamp(col(3) / w[3], -math.huge, coder.bbox_xform_clip)
    local dh = F.clamp(col(4) / w[4], -math.huge, coder.bbox_xform_clip)
    local cx, cy = dx * self.widths + self.ctr_x, dy * self.heights + self.ctr_y
    local hw, hh = F.exp(dw) * self.widths * 0.5, F.exp(dh) * self.heights * 0.5
    x1, y1, x2, y2 = cx - hw, cy - hh, cx + hw, cy + hh
  end
  local function clip(v, bound, t) -- clamp(v, 0, bound); with --dynamic, the bound is the tensor t
    if self.dynamic then return F.minimum(F.maximum(v, 0), t) end
    return F.clamp(v, 0, bound)
  end
  x1, x2 = clip(x1, self.out_w, self.bound_w), clip(x2, self.out_w, self.bound_w)
  y1, y2 = clip(y1, self.out_h, self.bound_h), clip(y2, self.out_h, self.bound_h)
  return F.cat({ x1, y1, x2, y2 }, 1)
end

function OneStageExport:forward(x)
  local d = self.detector
  local batch = self:batch(x)
  local features = d.backbone(batch)
  self.features = features -- their names in the graph: detector_dynamic.lua's anchor grids
  local out = d.head(features)
  if self.no_postprocess then
    return { bbox_regression = out.bbox_regression, cls_logits = out.cls_logits, bbox_ctrness = out.bbox_ctrness }
  end
  local scores = F.sigmoid(out.cls_logits)
  if self.fcos then scores = F.sqrt(scores * F.sigmoid(out.bbox_ctrness)) end
  return { raw_boxes = self:decode(out.bbox_regression:squeeze(1)), raw_scores = scores }
end

-- The traced module of RetinaNet or FCOS m for the image x [1, 3, H, W],
-- and its output names.
function M.wrap(m, x, no_postprocess, dynamic) -- (names: the dict's keys in order)
  m:eval()
  local wrapper = OneStageExport(m, { x.shape[3], x.shape[4] }, no_postprocess)
  wrapper.dynamic = dynamic
  wrapper:set_anchors(m.backbone((wrapper:batch(x))))
  local names = { "raw_boxes", "raw_scores" }
  if no_postprocess then
    names = wrapper.fcos and { "bbox_ctrness", "bbox_regression", "cls_logits" } or { "bbox_regression", "cls_logits" }
  end
  return wrapper, names
end

-- g: the traced graph (raw_boxes [A, 4], raw_scores [1, A, C]); sets
-- g.outputs to boxes, labels, scores (see the header)
-- (dyn: detector_dynamic.onestage's, the anchors per level computed in the graph)
function M.postprocess(g, d, wrapper, dyn)
  local o = d.o
  local C = d.head.classification_head.num_classes
  local vals, anchor_of, label_of, first, K = {}, {}, {}, 0, 0
  local flat = g:op("Reshape", { "raw_scores", g:ints({ -1 }, "shape") })
  local function times_c(v) return g:op("Mul", { v, g:ints({ C }, "num_classes") }) end
  for l, n in ipairs(wrapper.per_level) do
    local k, starts, ends, level_start
    if dyn then -- first, n and k computed: k = min(topk_candidates, n * C)
      local count = dyn.counts[l]
      level_start = first == 0 and g:ints({ 0 }, "level_start") or first
      local next_first = g:op("Add", { level_start, count })
      starts, ends = times_c(level_start), times_c(next_first)
      k = g:op("ReduceMin", { g:op("Concat", { g:ints({ o.topk_candidates }, "topk_candidates"), times_c(count) },
                                   { { "axis", "int", 0 } }) }, { { "keepdims", "int", 1 } })
      first, K = next_first, K + o.topk_candidates
    else
      k = g:ints({ math.min(o.topk_candidates, n * C) }, "k")
      starts, ends, level_start = g:ints({ first * C }, "starts"), g:ints({ (first + n) * C }, "ends"),
                                  g:ints({ first }, "level_start")
      first, K = first + n, K + math.min(o.topk_candidates, n * C)
    end
    local lvl = g:op("Slice", { flat, starts, ends, g:ints({ 0 }, "axes") })
    local v, idx = g:fresh("t"), g:fresh("t")
    g:node("TopK", { lvl, k }, { v, idx }, { { "axis", "int", 0 } })
    vals[l] = v
    anchor_of[l] = g:op("Add", { g:op("Div", { idx, g:ints({ C }, "num_classes") }), level_start })
    label_of[l] = g:op("Mod", { idx, g:ints({ C }, "num_classes") })
  end
  local n_cand = dyn and -1 or K -- (with dyn, K bounds the candidates: max_output_boxes_per_class)
  local cat = function(list) return g:op("Concat", list, { { "axis", "int", 0 } }) end
  local scores, anchors, labels = cat(vals), cat(anchor_of), cat(label_of)        -- [K]
  local boxes = g:op("Gather", { "raw_boxes", anchors }, { { "axis", "int", 0 } }) -- [K, 4]
  local classes = {}
  for c = 0, C - 1 do classes[c + 1] = c end
  local same = g:op("Equal", { g:op("Reshape", { labels, g:ints({ 1, n_cand }, "shape") }),
                               g:constant(classes, "int64", { C, 1 }, "classes") })  -- [C, K]
  local per_class = g:op("Where", { same, g:op("Reshape", { scores, g:ints({ 1, n_cand }, "shape") }),
                                    g:constant({ -1 }, "float32", { 1 }, "other_class") })
  local sel = g:op("NonMaxSuppression", { g:op("Reshape", { boxes, g:ints({ 1, n_cand, 4 }, "shape") }),
                                          g:op("Reshape", { per_class, g:ints({ 1, C, n_cand }, "shape") }),
                                          g:ints({ K }, "max_output_boxes_per_class"),
                                          g:constant({ o.nms_thresh }, "float32", { 1 }, "iou_threshold"),
                                          g:constant({ o.score_thresh }, "float32", { 1 }, "score_threshold") })
  local kept = g:op("Reshape", { g:op("Gather", { sel, g:ints({ 2 }, "column") }, { { "axis", "int", 1 } }),
                                 g:ints({ -1 }, "shape") })
  local sel_scores = g:op("Gather", { scores, kept }, { { "axis", "int", 0 } })
  local sel_boxes = g:op("Gather", { boxes, kept }, { { "axis", "int", 0 } })
  local sel_labels = g:op("Gather", { labels, kept }, { { "axis", "int", 0 } })
  return sel_boxes, sel_labels, sel_scores
end

-- ---- the evaluator's kernels for the integer arithmetic above ---------------------------------
-- Div and Mod of int64 tensors by an int64 scalar (ONNX's integer Div
-- truncates, Mod (fmod 0) takes the divisor's sign: for the non-negative
-- indices here both are floor division and its remainder)
local evaluate = require "pthcv.export.onnx.evaluate"
local K = evaluate.kernels
local function integer_by_scalar(op, float_kernel, fn)
  K[op] = function(ins, at, node, ctx)
    if ins[1].dtype ~= "int64" then
      if not float_kernel then error("not evaluated: " .. op .. " of " .. ins[1].dtype, 0) end
      return float_kernel(ins, at, node, ctx)
    end
    if ins[2].numel ~= 1 or (at.fmod or 0) ~= 0 then error("not evaluated: " .. op .. " but by an int64 scalar", 0) end
    local d = tonumber(ins[2]:reshape(-1):totable()[1])
    local x = ins[1]:contiguous()
    local out = Tensor.zeros(x.shape, "int64")
    local xp, op_ = x:data(), out:data()
    for i = 0, x.numel - 1 do op_[i] = fn(tonumber(xp[i]), d) end
    return { out }
  end
end
integer_by_scalar("Div", K.Div, function(a, b) local q = a / b; return q >= 0 and math.floor(q) or math.ceil(q) end)
integer_by_scalar("Mod", K.Mod, function(a, b) return a - math.floor(a / b) * b end)

return M
