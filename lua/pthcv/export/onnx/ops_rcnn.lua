-- lua/pthcv/export/onnx/ops_rcnn.lua: ONNX export of torchvision's
-- Faster R-CNN (fasterrcnn_mobilenet_v3_large_320_fpn, _mobilenet_v3_large_fpn,
-- _resnet50_fpn and _v2) and Mask R-CNN (maskrcnn_resnet50_fpn and _v2) as
-- whole detectors: one image in at the size traced, boxes, labels, scores
-- (and masks) out (ops_detection.lua builds and checks the file; its header
-- describes the interface). Opset 11 on.
--
-- One traced pass (trace.lua): the transform (as ops_onestage.lua's),
-- backbone and FPN, the RPN head, every anchor's proposal decoded (BoxCoder
-- 1, 1, 1, 1) and clipped to the resized image, then four ops of this file
-- between the traced heads, each with the nodes written here and the value
-- pthcv computes with its own RPN, RoIHeads and MultiScaleRoIAlign (NMS
-- per class or level, as the graph's), which the export's check compares:
--   export.rcnn_rois: per FPN level TopK of the objectness logits
--     (pre_nms_top_n), Sigmoid; boxes under 1e-3 wide or high out (their
--     scores -1); NonMaxSuppression with each level as one of its classes
--     (score_threshold just below rpn score_thresh: torchvision keeps
--     scores >= it); the post_nms_top_n best (TopK); then pooled:
--   (pooling) the level of each box as torchvision's LevelMapper
--     (floor(lvl0 + log2(sqrt(area) / s0) + 1e-6), clamped; Log / ln 2)
--     and per level NonZero, Gather and RoiAlign, as torchvision's
--     _onnx_merge_levels does, except that the rows stay grouped by level
--     (with their boxes; the heads work row by row);
--   the box head and predictor, traced (Flatten and Gemm, or v2's
--     convolutions: any number of rows);
--   export.rcnn_detections (roi_heads.lua's postprocess_detections):
--     Softmax, the deltas decoded (BoxCoder 10, 10, 5, 5) and clipped, the
--     background column dropped, boxes under 1e-2 out, NonMaxSuppression
--     with each class as one batch (score_threshold box_score_thresh),
--     GatherND of the kept (class, row), labels = class + 1, the
--     detections_per_img best (TopK);
--   Mask R-CNN: export.mask_rois pools the detections (14 x 14), the mask
--     head and predictor are traced, export.mask_select takes each
--     detection's class channel of their Sigmoid (a one-hot MatMul, exact)
--     and puts the rows back in the detections' order (TopK of -row):
--     masks [K, 1, 28, 28] probabilities, as torchvision's export returns
--     them (not pasted into the image);
--   Keypoint R-CNN: export.mask_rois pools the detections with the
--     keypoint pooler (14 x 14), the keypoint head and predictor are traced,
--     export.keypoints (ops_keypoint.lua) turns the heatmaps into keypoints.
-- ops_detection.lua's finish then scales the boxes to the input's size.
-- With --dynamic height,width (wrap's dynamic; detector_dynamic.lua traces
-- twice) the per-level top-n, the pooler's scales and levels and the box
-- head's clipping bounds are computed from Shape instead (rcnn_dynamic.lua).
-- RoiAlign is torchvision's aligned=False: ONNX's default before opset 16,
-- coordinate_transformation_mode output_half_pixel from 16 (set_opset).
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local nn = require "pthcv.nn"
local F = nn.F
local D = require "pthcv.tensor.dispatch"
local ops = require "pthcv.ops"
local onnx_ops = require "pthcv.export.onnx.ops"
local evaluate = require "pthcv.export.onnx.evaluate"
local proto = require "pthcv.export.onnx.proto"
local graph = require "pthcv.export.onnx.graph"
local onestage = require "pthcv.export.onnx.ops_onestage"
local keypoint = require "pthcv.export.onnx.ops_keypoint"
local rcnn_dynamic = require "pthcv.export.onnx.rcnn_dynamic"
local util = require "pthcv.models.detection.util"

pcall(ffi.cdef, "float log2f(float x); float sqrtf(float x); float nextafterf(float x, float y);")

local M = {}
local H, K = onnx_ops.handlers, evaluate.kernels
local f32 = util.f32
-- where the nodes of this file's ops are, for messages (ops_detection.lua
-- keeps OpenCV's warnings about them to one)
local WHERE = "the detector's post-processing (ops_rcnn.lua)"

local RCNNExport = nn.class("RCNNExport", onestage.OneStageExport)
function RCNNExport:__init(detector, size)
  onestage.OneStageExport.__init(self, detector, size, false)
  self.anchor_generator, self.box_coder = detector.rpn.anchor_generator, detector.rpn.box_coder
end

-- the pooler's feature maps of the backbone's output, and the constants of
-- the RPN and the pooler (the record of export.rcnn_rois)
function RCNNExport:setup(features)
  local d = self.detector
  local rpn, pool = d.rpn, d.roi_heads.box_roi_pool
  local wanted, maps = {}, {}
  for _, n in ipairs(pool.featmap_names) do wanted[n] = true end
  for i, t in ipairs(features) do if wanted[features.names[i]] then maps[#maps + 1] = i end end
  self.maps = maps
  local function pooler(p) -- a MultiScaleRoIAlign's constants
    local scales, exps = {}, {}
    for i, fi in ipairs(maps) do -- torchvision's _infer_scale (poolers.lua)
      local e = util.round_even(ffi.C.log2f(f32(features[fi].shape[3] / self.out_h)))
      scales[i], exps[i] = 2 ^ e, e
    end
    return { scales = scales, k_min = -exps[1], k_max = -exps[#exps], s0 = p.canonical_scale, lvl0 = p.canonical_level,
             output_size = p.output_size, sampling_ratio = p.sampling_ratio }
  end
  local rh = d.roi_heads
  for what, p in pairs { MaskRCNN = rh.mask_roi_pool, KeypointRCNN = rh.keypoint_roi_pool } do
    local same = #p.featmap_names == #maps
    for i, n in ipairs(p.featmap_names) do same = same and n == pool.featmap_names[i] end
    if not same then graph.refuse(what .. ": its second pooler reads other feature maps than the box pooler") end
  end
  self.rec = { per_level = self.per_level, pre_nms_top_n = rpn.pre_nms_top_n, post_nms_top_n = rpn.post_nms_top_n,
               nms_thresh = rpn.nms_thresh, score_thresh = rpn.score_thresh, min_size = rpn.min_size,
               pool = pooler(pool), image_size = { self.out_h, self.out_w }, rpn = rpn, dynamic = self.dynamic }
  self.det_rec = { roi_heads = rh, image_size = { self.out_h, self.out_w }, dynamic = self.dynamic }
  self.mask_rec = rh.mask_roi_pool and { pool = pooler(rh.mask_roi_pool), dynamic = self.dynamic }
  self.keypoint_rec = rh.keypoint_roi_pool and { pool = pooler(rh.keypoint_roi_pool), dynamic = self.dynamic }
end

local function features_of(d, batch)
  local features = d.backbone(batch)
  if Tensor.is(features) then features = { features, names = { "0" } } end
  return features
end

-- the level (0-based) of each row of rois [R, 4], as poolers.lua's map_levels
local function levels_of(rois, rec) -- (rec: a pooler's constants)
  local rc = rois:contiguous() -- referenced while p points into it
  local out, p = {}, rc:data()
  local eps = f32(1e-6)
  for i = 0, rois.shape[1] - 1 do
    local area = f32(f32(p[4 * i + 2] - p[4 * i]) * f32(p[4 * i + 3] - p[4 * i + 1]))
    local lvl = math.floor(f32(f32(rec.lvl0 + ffi.C.log2f(f32(ffi.C.sqrtf(area) / f32(rec.s0)))) + eps))
    out[i + 1] = math.min(math.max(lvl, rec.k_min), rec.k_max) - rec.k_min
  end
  return out
end

-- fn(...) with pthcv's batched_nms as NMS per class (the graph's)
local function with_nms_per_class(fn, ...)
  local saved = ops.batched_nms
  ops.batched_nms = require("pthcv.export.onnx.ops_detection").per_class_nms
  local res = { pcall(fn, ...) }
  ops.batched_nms = saved
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2)
end

-- rois [R, 4] pooled over maps as MultiScaleRoIAlign (rec: its constants),
-- grouped by level: pooled [R, C, h, w], the rois in that order, and their
-- rows (int64)
local function pool_values(rois, maps, rec)
  local levels = levels_of(rois, rec)
  local pooled, grouped, rows = {}, {}, {}
  for l = 0, #maps - 1 do
    local idx = {}
    for i, v in ipairs(levels) do if v == l then idx[#idx + 1] = i - 1 end end
    if #idx > 0 then
      local it = Tensor.from_table(idx, "int64")
      local r = util.take(rois, it)
      grouped[#grouped + 1], rows[#rows + 1] = r, it
      pooled[#pooled + 1] = ops.roi_align(maps[l + 1], { r }, rec.output_size, rec.scales[l + 1], rec.sampling_ratio)
    end
  end
  local C, oh, ow = maps[1].shape[2], rec.output_size[1], rec.output_size[2]
  return util.cat(pooled, { 0, C, oh, ow }), util.cat(grouped, { 0, 4 }), util.cat(rows, { 0 }, "int64")
end

-- export.rcnn_rois's value: pthcv's proposals, grouped by level, and their pooled features
local function rcnn_rois_impl(rec, objectness, proposals, maps)
  local rois = with_nms_per_class(rec.rpn.filter_proposals, rec.rpn, proposals, objectness, rec.image_size,
                                  rec.per_level)
  local pooled, grouped = pool_values(rois, maps, rec.pool)
  return pooled, grouped
end

-- export.rcnn_detections's value: pthcv's detections in the resized image
local function rcnn_detections_impl(rec, class_logits, box_regression, proposals)
  local rh = rec.roi_heads
  local det = with_nms_per_class(rh.postprocess_detections, rh, class_logits, box_regression, { proposals },
                                 { rec.image_size })[1]
  return det.boxes, det.labels, det.scores
end

-- export.mask_rois's value: the detections' pooled features (grouped by level) and their rows
local function mask_rois_impl(rec, boxes, maps)
  local pooled, _, rows = pool_values(boxes, maps, rec.pool)
  return pooled, rows
end

-- export.mask_select's value: each detection's class channel of the mask
-- probabilities, in the detections' order: [K, 1, M, M]
local function mask_select_impl(_, logits, labels, rows)
  local probs = F.sigmoid(logits):contiguous()
  local K, C, Hm, Wm = unpack(probs.shape)
  local out = Tensor.zeros({ K, 1, Hm, Wm }, "float32")
  local lc, rc = labels:contiguous(), rows:contiguous() -- referenced while lp, rp point into them
  local src, dst, lp, rp = probs:data(), out:data(), lc:data(), rc:data()
  for j = 0, K - 1 do
    local k = tonumber(rp[j])
    ffi.copy(dst + k * Hm * Wm, src + (j * C + tonumber(lp[k])) * Hm * Wm, Hm * Wm * 4)
  end
  return out
end

-- (the per-level objectness and the resized picture go to the ops too:
-- with --dynamic their nodes compute the sizes from them, rcnn_dynamic.lua)
function RCNNExport:forward(x)
  local d = self.detector
  local batch, resized = self:batch(x)
  local features = features_of(d, batch)
  self.features = features -- their names in the graph: detector_dynamic.lua's anchor grids
  local objectness, deltas = d.rpn.head(features)
  local obj, reg = {}, {}
  for i = 1, #objectness do
    obj[i] = util.permute_and_flatten(objectness[i], 1)
    reg[i] = util.permute_and_flatten(deltas[i], 4)
  end
  local o = F.cat(obj, 1):reshape(-1)
  local proposals = self:decode(F.cat(reg, 1):reshape(-1, 4))
  local maps = {}
  for i, fi in ipairs(self.maps) do maps[i] = features[fi] end
  local pooled, rois = D.call("export.rcnn_rois", self.rec, rcnn_rois_impl, o, proposals, maps, obj,
                                resized)
  local rh = d.roi_heads
  local class_logits, box_regression = rh.box_predictor(rh.box_head(pooled))
  local boxes, labels, scores = D.call("export.rcnn_detections", self.det_rec, rcnn_detections_impl, class_logits,
                                       box_regression, rois, resized)
  local out = { det_boxes = boxes, det_labels = labels, det_scores = scores }
  if self.mask_rec then
    local mpooled, rows = D.call("export.mask_rois", self.mask_rec, mask_rois_impl, boxes, maps, resized)
    local logits = rh.mask_predictor(rh.mask_head(mpooled))
    out.det_masks = D.call("export.mask_select", nil, mask_select_impl, logits, labels, rows)
  end
  if self.keypoint_rec then -- Keypoint R-CNN: the detections pooled (14 x 14), heatmaps, keypoints (ops_keypoint.lua)
    local kpooled, rows = D.call("export.mask_rois", self.keypoint_rec, mask_rois_impl, boxes, maps,
                                  resized)
    local heatmaps = rh.keypoint_predictor(rh.keypoint_head(kpooled))
    out.det_keypoints, out.det_keypoints_scores = D.call("export.keypoints", nil, keypoint.impl, heatmaps, boxes, rows)
  end
  return out
end

-- The traced module of the Faster R-CNN or Mask R-CNN m for the image x
-- [1, 3, H, W], and its output names (the dict's keys in order); dynamic:
-- for --dynamic height,width (detector_dynamic.lua, rcnn_dynamic.lua).
function M.wrap(m, x, _, dynamic)
  m:eval()
  local wrapper = RCNNExport(m, { x.shape[3], x.shape[4] })
  wrapper.dynamic = dynamic
  local features = features_of(m, (wrapper:batch(x)))
  local objectness = m.rpn.head(features)
  wrapper:set_anchors(objectness) -- the RPN's anchors: one grid per level, A per location
  wrapper:setup(features)
  if wrapper.mask_rec then return wrapper, { "det_boxes", "det_labels", "det_masks", "det_scores" } end
  if wrapper.keypoint_rec then
    return wrapper, { "det_boxes", "det_keypoints", "det_keypoints_scores", "det_labels", "det_scores" }
  end
  return wrapper, { "det_boxes", "det_labels", "det_scores" }
end

-- ---- export.rcnn_rois's nodes -----------------------------------------------------------------
local function col(g, t, j, axis) -- [.., 1] slice j (0-based) of the last axis
  return g:op("Slice", { t, g:ints({ j }, "starts"), g:ints({ j + 1 }, "ends"), g:ints({ axis }, "axes") })
end

-- scores of boxes [.., 4] (last axis) narrower or lower than min set to -1
local function drop_small(g, boxes, scores, min, axis, shape)
  local w = g:op("Sub", { col(g, boxes, 2, axis), col(g, boxes, 0, axis) })
  local h = g:op("Sub", { col(g, boxes, 3, axis), col(g, boxes, 1, axis) })
  local lim = g:scalar(min, "min_size")
  local ok = g:op("And", { g:op("Not", { g:op("Less", { w, lim }) }), g:op("Not", { g:op("Less", { h, lim }) }) })
  return g:op("Where", { g:op("Reshape", { ok, g:ints(shape, "shape") }), scores, g:scalar(-1, "dropped") })
end

local function flat(g, t) return g:op("Reshape", { t, g:ints({ -1 }, "shape") }) end

-- rois [R, 4] pooled over the maps (traced tensors) as MultiScaleRoIAlign
-- (prec: its constants): LevelMapper, then per level NonZero, Gather,
-- RoiAlign; the pooled rows, the rois and their rows, grouped by level.
-- resized (--dynamic): the resized picture's value, the scales and levels
-- computed from it (rcnn_dynamic.lua)
local function pool_nodes(g, rois, maps, prec, resized)
  local scales, k_min, k_max
  if resized then
    scales, k_min, k_max = rcnn_dynamic.pooler_scales(g, maps, (rcnn_dynamic.resized_size(g, g:input(resized))))
  else
    k_min, k_max = g:scalar(prec.k_min, "k_min"), g:scalar(prec.k_max, "k_max")
  end
  local area = g:op("Mul", { g:op("Sub", { col(g, rois, 2, 1), col(g, rois, 0, 1) }),
                             g:op("Sub", { col(g, rois, 3, 1), col(g, rois, 1, 1) }) })
  local log2 = g:op("Div", { g:op("Log", { g:op("Div", { g:op("Sqrt", { area }),
                                                          g:scalar(prec.s0, "canonical_scale") }) }),
                             g:scalar(math.log(2), "ln2") })
  local lv = g:op("Floor", { g:op("Add", { g:op("Add", { g:scalar(prec.lvl0, "canonical_level"), log2 }),
                                           g:scalar(1e-6, "eps") }) })
  lv = g:op("Clip", { lv, k_min, k_max })
  lv = flat(g, g:op("Cast", { g:op("Sub", { lv, k_min }) },
                    { { "to", "int", proto.DTYPE.int64 } }))
  local pooled, grouped, rows = {}, {}, {}
  local oh, ow = prec.output_size[1], prec.output_size[2]
  for l = 0, #maps - 1 do
    local idx = flat(g, g:op("NonZero", { g:op("Equal", { lv, g:ints({ l }, "level") }) }))
    local rl = g:op("Gather", { rois, idx }, { { "axis", "int", 0 } })
    grouped[l + 1], rows[l + 1] = rl, idx
    local attrs = { { "mode", "string", "avg" }, { "output_height", "int", oh }, { "output_width", "int", ow },
                    { "sampling_ratio", "int", prec.sampling_ratio },
                    { "spatial_scale", "float", scales and 1 or prec.scales[l + 1] } }
    local batch = g:op("Mul", { idx, g:ints({ 0 }, "zero") })
    local scaled = scales and g:op("Mul", { rl, scales[l + 1] }) or rl -- (a power of 2: exact)
    pooled[l + 1] = g:op("RoiAlign", { g:input(maps[l + 1]), scaled, batch }, attrs)
  end
  local cat = function(list) return g:op("Concat", list, { { "axis", "int", 0 } }) end
  return cat(pooled), cat(grouped), cat(rows)
end

H["export.rcnn_rois"] = function(g, a, r)
  local rec = a.rec
  g.where = WHERE
  local obj, props = g:input(a[1]), g:input(a[2])
  local tops, lvl, first, L = {}, {}, 0, #rec.per_level
  local level_of, Kc
  if rec.dynamic then tops, level_of = rcnn_dynamic.level_topk(g, obj, a[4], rec.pre_nms_top_n) end
  for l, n in ipairs(rec.dynamic and {} or rec.per_level) do
    local k = math.min(rec.pre_nms_top_n, n)
    local s = g:op("Slice", { obj, g:ints({ first }, "starts"), g:ints({ first + n }, "ends"), g:ints({ 0 }, "axes") })
    local v, idx = g:fresh("t"), g:fresh("t")
    g:node("TopK", { s, g:ints({ k }, "k") }, { v, idx }, { { "axis", "int", 0 } })
    tops[l] = g:op("Add", { idx, g:ints({ first }, "level_start") })
    for _ = 1, k do lvl[#lvl + 1] = l - 1 end
    first = first + n
  end
  -- Kc: the candidates, or with --dynamic -1 in reshapes and pre_nms_top_n
  -- as NMS's bound per level (each level is one of its classes)
  Kc = rec.dynamic and -1 or #lvl
  level_of = level_of or g:constant(lvl, "int64", { 1, Kc }, "level_of")
  local top = g:op("Concat", tops, { { "axis", "int", 0 } })
  local scores = g:op("Sigmoid", { g:op("Gather", { obj, top }, { { "axis", "int", 0 } }) })
  local boxes = g:op("Gather", { props, top }, { { "axis", "int", 0 } })
  scores = drop_small(g, boxes, scores, rec.min_size, 1, { -1 })
  local levels = {}
  for l = 0, L - 1 do levels[l + 1] = l end
  local same = g:op("Equal", { level_of, g:constant(levels, "int64", { L, 1 }, "levels") })
  local per_level = g:op("Where", { same, g:op("Reshape", { scores, g:ints({ 1, Kc }, "shape") }),
                                    g:scalar(-1, "other_level") })
  local thresh = ffi.C.nextafterf(f32(rec.score_thresh), -math.huge) -- kept: > it, i.e. >= score_thresh
  local sel = g:op("NonMaxSuppression", { g:op("Reshape", { boxes, g:ints({ 1, Kc, 4 }, "shape") }),
                                          g:op("Reshape", { per_level, g:ints({ 1, L, Kc }, "shape") }),
                                          g:ints({ rec.dynamic and rec.pre_nms_top_n or Kc },
                                                 "max_output_boxes_per_class"),
                                          g:constant({ rec.nms_thresh }, "float32", { 1 }, "iou_threshold"),
                                          g:constant({ thresh }, "float32", { 1 }, "score_threshold") })
  local kept = flat(g, g:op("Gather", { sel, g:ints({ 2 }, "column") }, { { "axis", "int", 1 } }))
  local ks = g:op("Gather", { scores, kept }, { { "axis", "int", 0 } })
  local n = g:op("ReduceMin", { g:op("Concat", { g:op("Shape", { ks }), g:ints({ rec.post_nms_top_n }, "post_nms_top_n") },
                                     { { "axis", "int", 0 } }) }, { { "keepdims", "int", 1 } })
  local order = g:fresh("t")
  g:node("TopK", { ks, n }, { g:fresh("t"), order }, { { "axis", "int", 0 } })
  local rois = g:op("Gather", { boxes, g:op("Gather", { kept, order }, { { "axis", "int", 0 } }) },
                    { { "axis", "int", 0 } })
  local pooled, grouped = pool_nodes(g, rois, a[3], rec.pool, rec.dynamic and a[5])
  g:output(r[1], pooled)
  g:output(r[2], grouped)
end

-- RoiAlign as torchvision's aligned=False at opset (from 16 ONNX's default
-- is half_pixel, aligned=True: the mode is written)
function M.set_opset(g, opset)
  if opset < 16 then return end
  for _, node in ipairs(g.nodes) do
    if node.op == "RoiAlign" then
      node.attrs[#node.attrs + 1] = { "coordinate_transformation_mode", "string", "output_half_pixel" }
    end
  end
end

-- ---- export.rcnn_detections's nodes: the box head's post-processing -----------------------------
-- class_logits [R, C], box_regression [R, 4C], proposals [R, 4] -> the
-- detections_per_img best boxes (in the resized image), labels, scores
H["export.rcnn_detections"] = function(g, a, r)
  g.where = WHERE
  local rh = a.rec.roi_heads
  local w = rh.box_coder.weights
  local C = a[1].shape[2]
  local scores = g:op("Softmax", { g:input(a[1]) }, { { "axis", "int", 1 } })
  local reg = g:op("Reshape", { g:input(a[2]), g:ints({ 0, -1, 4 }, "shape") })                -- [R, C, 4]
  local p = g:op("Reshape", { g:input(a[3]), g:ints({ -1, 1, 4 }, "shape") })                  -- [R, 1, 4]
  local widths = g:op("Sub", { col(g, p, 2, 2), col(g, p, 0, 2) })
  local heights = g:op("Sub", { col(g, p, 3, 2), col(g, p, 1, 2) })
  local half = g:scalar(0.5, "half")
  local ctr_x = g:op("Add", { col(g, p, 0, 2), g:op("Mul", { half, widths }) })
  local ctr_y = g:op("Add", { col(g, p, 1, 2), g:op("Mul", { half, heights }) })
  local function delta(j) return g:op("Div", { col(g, reg, j, 2), g:scalar(w[j + 1], "weight") }) end
  local clip = g:scalar(rh.box_coder.bbox_xform_clip, "bbox_xform_clip")
  local dw, dh = g:op("Min", { delta(2), clip }), g:op("Min", { delta(3), clip })
  local cx = g:op("Add", { g:op("Mul", { delta(0), widths }), ctr_x })
  local cy = g:op("Add", { g:op("Mul", { delta(1), heights }), ctr_y })
  local hw = g:op("Mul", { half, g:op("Mul", { g:op("Exp", { dw }), widths }) })
  local hh = g:op("Mul", { half, g:op("Mul", { g:op("Exp", { dh }), heights }) })
  local H_, W_
  if a.rec.dynamic then -- the resized size, computed (rcnn_dynamic.lua)
    local h, w = rcnn_dynamic.resized_size(g, g:input(a[4]))
    H_, W_ = rcnn_dynamic.scalar(g, h), rcnn_dynamic.scalar(g, w)
  else
    H_, W_ = g:scalar(a.rec.image_size[1], "image_size"), g:scalar(a.rec.image_size[2], "image_size")
  end
  local function clamp(t, hi) return g:op("Clip", { t, g:scalar(0, "zero"), hi }) end
  local boxes = g:op("Concat", { clamp(g:op("Sub", { cx, hw }), W_), clamp(g:op("Sub", { cy, hh }), H_),
                                 clamp(g:op("Add", { cx, hw }), W_), clamp(g:op("Add", { cy, hh }), H_) },
                     { { "axis", "int", 2 } })                                                    -- [R, C, 4]
  local fg = function(t, axis)
    return g:op("Slice", { t, g:ints({ 1 }, "starts"), g:ints({ C }, "ends"), g:ints({ axis }, "axes") })
  end
  boxes, scores = fg(boxes, 1), fg(scores, 1)                                                   -- background out
  scores = drop_small(g, boxes, scores, 1e-2, 2, { 0, C - 1 })
  local bt = g:op("Transpose", { boxes }, { { "perm", "ints", { 1, 0, 2 } } })                 -- [C-1, R, 4]
  local st = g:op("Transpose", { scores }, { { "perm", "ints", { 1, 0 } } })                    -- [C-1, R]
  local sel = g:op("NonMaxSuppression", { bt, g:op("Reshape", { st, g:ints({ C - 1, 1, -1 }, "shape") }),
                                          g:ints({ rh.detections_per_img }, "max_output_boxes_per_class"),
                                          g:constant({ rh.nms_thresh }, "float32", { 1 }, "iou_threshold"),
                                          g:constant({ rh.score_thresh }, "float32", { 1 }, "score_threshold") })
  local pairs_ = g:op("Gather", { sel, g:ints({ 0, 2 }, "columns") }, { { "axis", "int", 1 } })
  local labels = g:op("Add", { flat(g, g:op("Gather", { sel, g:ints({ 0 }, "columns") }, { { "axis", "int", 1 } })),
                               g:constant({ 1 }, "int64", { 1 }, "background") })
  local sel_scores = g:op("GatherND", { st, pairs_ })
  local n = g:op("ReduceMin", { g:op("Concat", { g:op("Shape", { sel_scores }),
                                                 g:ints({ rh.detections_per_img }, "detections_per_img") },
                                     { { "axis", "int", 0 } }) }, { { "keepdims", "int", 1 } })
  local top, order = g:fresh("t"), g:fresh("t")
  g:node("TopK", { sel_scores, n }, { top, order }, { { "axis", "int", 0 } })
  g:output(r[1], g:op("Gather", { g:op("GatherND", { bt, pairs_ }), order }, { { "axis", "int", 0 } }))
  g:output(r[2], g:op("Gather", { labels, order }, { { "axis", "int", 0 } }))
  g:output(r[3], top)
end

-- ---- Mask R-CNN's nodes ----------------------------------------------------------------------
H["export.mask_rois"] = function(g, a, r)
  g.where = WHERE
  local pooled, _, rows = pool_nodes(g, g:input(a[1]), a[2], a.rec.pool, a.rec.dynamic and a[3])
  g:output(r[1], pooled)
  g:output(r[2], rows)
end

-- logits [K, C, M, M] (rows grouped by level), labels [K] (the
-- detections'), rows [K] (the detection of each row) -> [K, 1, M, M]: the
-- class channel picked by a one-hot MatMul (exact: one product by 1, the
-- others 0), the rows put back in the detections' order (TopK of -rows)
H["export.mask_select"] = function(g, a, r)
  g.where = WHERE
  local C, Hm, Wm = a[1].shape[2], a[1].shape[3], a[1].shape[4]
  local probs = g:op("Reshape", { g:op("Sigmoid", { g:input(a[1]) }), g:ints({ 0, C, -1 }, "shape") })
  local rows = g:input(a[3])
  local lab = g:op("Gather", { g:input(a[2]), rows }, { { "axis", "int", 0 } })
  local classes = {}
  for c = 0, C - 1 do classes[c + 1] = c end
  local onehot = g:op("Cast", { g:op("Equal", { g:op("Reshape", { lab, g:ints({ -1, 1, 1 }, "shape") }),
                                                g:constant(classes, "int64", { 1, 1, C }, "classes") }) },
                      { { "to", "int", proto.DTYPE.float32 } })                                      -- [K, 1, C]
  local picked = g:op("Reshape", { g:op("MatMul", { onehot, probs }), g:ints({ -1, 1, Hm, Wm }, "shape") })
  local inv = g:fresh("t")
  g:node("TopK", { g:op("Neg", { g:op("Cast", { rows }, { { "to", "int", proto.DTYPE.float32 } }) }),
                   g:op("Shape", { rows }) }, { g:fresh("t"), inv }, { { "axis", "int", 0 } })
  g:output(r[1], g:op("Gather", { picked, inv }, { { "axis", "int", 0 } }))
end

-- ---- the evaluator's kernels ----------------------------------------------------------------
K.RoiAlign = function(ins, at, _, ctx)
  local opset = ctx and ctx.opset or 11
  local ctm = at.coordinate_transformation_mode or (opset >= 16 and "half_pixel" or "output_half_pixel")
  if (at.mode or "avg") ~= "avg" then error("not evaluated: RoiAlign mode " .. at.mode, 0) end
  local rois, bi = ins[2]:contiguous(), evaluate.values(ins[3])
  local n = rois.shape[1]
  local r5 = Tensor.zeros({ n, 5 }, "float32")
  local rp, op = rois:data(), r5:data()
  for i = 0, n - 1 do
    op[5 * i] = bi[i + 1]
    for k = 0, 3 do op[5 * i + 1 + k] = rp[4 * i + k] end
  end
  return { ops.roi_align(ins[1], r5, { at.output_height or 1, at.output_width or 1 }, at.spatial_scale or 1,
                         (at.sampling_ratio or 0) > 0 and at.sampling_ratio or -1, ctm == "half_pixel") }
end

-- indices [rank, n] of the non-zero elements (1-d input)
K.NonZero = function(ins)
  local v = evaluate.values(ins[1])
  if ins[1].ndim ~= 1 then error("not evaluated: NonZero of a " .. ins[1].ndim .. "-d tensor", 0) end
  local idx = {}
  for i, x in ipairs(v) do if x ~= 0 then idx[#idx + 1] = i - 1 end end
  if #idx == 0 then return { Tensor.zeros({ 1, 0 }, "int64") } end
  return { Tensor.from_table(idx, "int64"):reshape({ 1, #idx }) }
end

return M
