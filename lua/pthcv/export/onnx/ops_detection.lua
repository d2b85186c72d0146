-- lua/pthcv/export/onnx/ops_detection.lua: ONNX export of torchvision's
-- detectors, as torchvision's own export at opset 11 writes them: one image
-- in, the detections out. The SSDs (ssdlite320_mobilenet_v3_large,
-- ssd300_vgg16) here; RetinaNet and FCOS in ops_onestage.lua, Faster, Mask
-- and Keypoint R-CNN in ops_rcnn.lua (Keypoint R-CNN's keypoints in
-- ops_keypoint.lua) (their traced part and nodes; built and checked here).
--
--   input  [1, 3, H, W] float32 RGB in 0..1, at the size traced (o.input
--          may be the picture [3, H, W]); with o.dynamic
--          [1, 3, height, width] (detector_dynamic.lua)
--   boxes  [num_detections, 4] float32 (x1, y1, x2, y2) in the input's pixels
--   labels [num_detections] int64 (COCO's 91 ids, as torchvision's)
--   scores [num_detections] float32, in decreasing order
--
-- The graph: the model's transform (normalise, bilinear Resize to the fixed
-- size), backbone and head, softmax, the boxes decoded against the default
-- boxes (constants: the input's size is fixed) and clipped, all traced over
-- pthcv's kernels as any model is (trace.lua); then the post-processing of
-- ssd.lua's SSD:select written with ONNX's detection ops, opset 11 on:
--   TopK of each class's scores (topk_candidates), the candidates' boxes
--   (Gather), NonMaxSuppression with each class as one batch (per-class
--   NMS, torchvision's batched_nms; its score_threshold is score_thresh),
--   the kept (class, candidate) pairs read with GatherND, labels = class + 1
--   (background excluded), the detections_per_img best (TopK), boxes scaled
--   back to the input's size.
-- Opset 10 has NonMaxSuppression but no GatherND: refused by name.
--
-- o.no_postprocess: the network up to the head's outputs instead (what
-- cv2.dnn runs): bbox_regression [1, A, 4] and cls_logits [1, A, C] (and
-- FCOS's bbox_ctrness [1, A, 1]); the
-- default boxes [A, 4] (in the resized image's pixels) are returned as
-- info.anchors for the caller to write beside the file.
--
-- Before anything is written the graph is run with pthcv's kernels
-- (evaluate.lua, with kernels for the ops added here) and its detections
-- compared with the model's own forward pass on the same image (with NMS
-- per class, as ONNX defines it): the same labels, scores within 1e-4,
-- boxes within 1e-3 of the image's size.
-- --no-postprocess is refused for Faster, Mask and Keypoint R-CNN (their box
-- head runs on the RPN's post-processed proposals).
-- o.half: the model's weights made float16 (module:half()) and written so
-- behind Cast nodes (half.lua); the check above is against that model.
-- o.dynamic: the graph checked again, likewise, on o.probe (a picture or a
-- shape; by default the input with height + 32 and width + 64).
local Tensor = require "pthcv.tensor"
local nn = require "pthcv.nn"
local F = nn.F
local ops = require "pthcv.ops"
local graph = require "pthcv.export.onnx.graph"
local evaluate = require "pthcv.export.onnx.evaluate"
local lower = require "pthcv.export.onnx.lower"
local proto = require "pthcv.export.onnx.proto"
local opencv46 = require "pthcv.export.onnx.opencv46"
local detector_dynamic = require "pthcv.export.onnx.detector_dynamic"
local fold = require "pthcv.export.onnx.fold"

local refuse = graph.refuse
local K = evaluate.kernels
local M = { OPSET = 11 }
local POSTPROCESS = "the detector's post-processing" -- where its nodes are, for messages (ops_rcnn.lua's too)

local EXPORTED = { SSD = true, RetinaNet = true, FCOS = true, FasterRCNN = true, MaskRCNN = true,
                   KeypointRCNN = true }

-- m's detector name, torchvision's class name (pthcv's Mask and Keypoint
-- R-CNN are FasterRCNN modules with more heads), or its typename
local function detector_name(m)
  local name = m.typename and m:typename()
  local rh = name == "FasterRCNN" and m.roi_heads
  if rh and rh.keypoint_roi_pool then return "KeypointRCNN" end
  if rh and rh.mask_roi_pool then return "MaskRCNN" end
  return name
end

-- Whether m is a detector this module exports, refusing the others (and
-- o.no_postprocess for a model that is no detector).
function M.handles(m, o)
  local name = detector_name(m)
  if EXPORTED[name] then return true end
  if o and o.no_postprocess then
    refuse("--no-postprocess is for the SSD, RetinaNet and FCOS detectors; " .. tostring(name) .. " has no post-processing to leave out")
  end
  return false
end

-- Refuses a detector in a format with no form of its post-processing
-- (format: "Caffe"), naming what to do instead.
function M.refuse_format(m, format)
  local name = detector_name(m)
  if EXPORTED[name] then
    refuse(string.format("%s: %s has no form of a detector's post-processing (NMS): export ONNX (-o OUT.onnx; "
                         .. "--no-postprocess for the network alone, for the SSD, RetinaNet and FCOS detectors)",
                         name, format))
  end
end

-- ---- the traced part ----------------------------------------------------------------------------------
local SSDExport = nn.class("SSDExport")
-- detector: the SSD; size {h, w}: the input image's
function SSDExport:__init(detector, size, no_postprocess)
  local d = detector
  self.detector, self.no_postprocess = d, no_postprocess
  local t = d.transform
  self.out_h, self.out_w = t:resized_size(size[1], size[2])
  local m, s = t.image_mean, t.image_std
  self.mean = Tensor.from_table({ m[1], m[2], m[3] }, "float32"):reshape({ 1, 3, 1, 1 })
  self.std = Tensor.from_table({ s[1], s[2], s[3] }, "float32"):reshape({ 1, 3, 1, 1 })
end

-- the default boxes of the resized image, and the constants of their decoding
function SSDExport:set_anchors(features)
  local grids = {}
  for i, f in ipairs(features) do grids[i] = { f.shape[3], f.shape[4] } end
  local a = self.detector.anchor_generator:anchors({ self.out_h, self.out_w }, grids):contiguous()
  self.anchors = a
  local function col(j) return a:narrow(2, j, 1):contiguous() end
  self.widths, self.heights = col(3) - col(1), col(4) - col(2)
  self.ctr_x, self.ctr_y = col(1) + self.widths * 0.5, col(2) + self.heights * 0.5
end

-- torchvision's BoxCoder.decode_single and clip_boxes_to_image, in F ops
function SSDExport:decode(reg)
  local coder = self.detector.box_coder
  local w = coder.weights
  local function col(j) return reg:narrow(2, j, 1) end
  local dx, dy = col(1) / w[1], col(2) / w[2]
  local dw = F.clamp(col(3) / w[3], -math.huge, coder.bbox_xform_clip)
  local dh = F.clamp(col(4) / w[4], -math.huge, coder.bbox_xform_clip)
  local cx, cy = dx * self.widths + self.ctr_x, dy * self.heights + self.ctr_y
  local hw, hh = F.exp(dw) * self.widths * 0.5, F.exp(dh) * self.heights * 0.5
  local x1, x2 = F.clamp(cx - hw, 0, self.out_w), F.clamp(cx + hw, 0, self.out_w)
  local y1, y2 = F.clamp(cy - hh, 0, self.out_h), F.clamp(cy + hh, 0, self.out_h)
  return F.cat({ x1, y1, x2, y2 }, 1)
end

-- the backbone's feature maps; ssd300_vgg16's L2Norm (ssd.lua computes it
-- in Lua, in double precision) as F ops: x / max(sqrt(sum(x^2)), 1e-12) * w
local function backbone_features(backbone, y)
  if backbone:typename() ~= "SSDFeatureExtractorVGG" then
    local features = backbone(y)
    return Tensor.is(features) and { features } or features
  end
  local x = backbone.features(y)
  local w = backbone.scale_weight
  if w.dtype ~= "float32" then w = w:float() end -- --half: the scale computed in float32, as ssd.lua does
  local norm = F.maximum(F.sqrt(F.sum(x * x, 1, true)), 1e-12)
  local out = { x / norm * w:reshape({ 1, w.numel, 1, 1 }) }
  for _, block in ipairs(backbone.extra:children()) do
    x = block(x)
    out[#out + 1] = x
  end
  return out
end

function SSDExport:forward(x)
  local d = self.detector
  local y = F.interpolate((x - self.mean) / self.std,
                          { size = { self.out_h, self.out_w }, mode = "bilinear", align_corners = false })
  local features = backbone_features(d.backbone, y)
  local out = d.head(features)
  if self.no_postprocess then return { bbox_regression = out.bbox_regression, cls_logits = out.cls_logits } end
  return { raw_boxes = self:decode(out.bbox_regression:squeeze(1)), raw_scores = F.softmax(out.cls_logits, -1) }
end

-- The traced module of the SSD m for the image x [1, 3, H, W] (its
-- default boxes computed for that size): wrapper(x) gives {raw_boxes,
-- raw_scores}, or {bbox_regression, cls_logits} when no_postprocess.
function M.wrap(m, x, no_postprocess)
  m:eval()
  local wrapper = SSDExport(m, { x.shape[3], x.shape[4] }, no_postprocess)
  local y = F.interpolate((x - wrapper.mean) / wrapper.std,
                          { size = { wrapper.out_h, wrapper.out_w }, mode = "bilinear", align_corners = false })
  wrapper:set_anchors(backbone_features(m.backbone, y))
  return wrapper
end

-- ---- the post-processing nodes -------------------------------------------------------------------------
-- g: the traced graph (outputs raw_boxes [A, 4], raw_scores [1, A, C]);
-- sets g.outputs to boxes, labels, scores
local function postprocess(g, d, A, C, ratio)
  g.where = POSTPROCESS
  g.op_name = "postprocess"
  local k = math.min(d.topk_candidates, A)
  local s = g:op("Slice", { "raw_scores", g:ints({ 1 }, "starts"), g:ints({ C }, "ends"), g:ints({ 2 }, "axes") })
  s = g:op("Transpose", { s }, { { "perm", "ints", { 0, 2, 1 } } })
  s = g:op("Reshape", { s, g:ints({ C - 1, A }, "shape") })                         -- [C-1, A]
  local vals, idx = g:fresh("t"), g:fresh("t")
  g:node("TopK", { s, g:ints({ k }, "k") }, { vals, idx }, { { "axis", "int", 1 } }) -- [C-1, k]
  local flat = g:op("Reshape", { idx, g:ints({ -1 }, "shape") })
  local cand = g:op("Reshape", { g:op("Gather", { "raw_boxes", flat }, { { "axis", "int", 0 } }),
                                 g:ints({ C - 1, k, 4 }, "shape") })                -- [C-1, k, 4]
  local nms_scores = g:op("Reshape", { vals, g:ints({ C - 1, 1, k }, "shape") })
  local sel = g:op("NonMaxSuppression", { cand, nms_scores, g:ints({ k }, "max_output_boxes_per_class"),
                                          g:constant({ d.nms_thresh }, "float32", { 1 }, "iou_threshold"),
                                          g:constant({ d.score_thresh }, "float32", { 1 }, "score_threshold") })
  local pairs_ = g:op("Gather", { sel, g:ints({ 0, 2 }, "columns") }, { { "axis", "int", 1 } }) -- [n, 2]
  local sel_scores = g:op("GatherND", { vals, pairs_ })
  local sel_boxes = g:op("GatherND", { cand, pairs_ })
  local cls = g:op("Reshape", { g:op("Gather", { sel, g:ints({ 0 }, "columns") }, { { "axis", "int", 1 } }),
                                g:ints({ -1 }, "shape") })
  local sel_labels = g:op("Add", { cls, g:constant({ 1 }, "int64", { 1 }, "background") })
  M.finish(g, d.detections_per_img, sel_boxes, sel_labels, sel_scores, ratio)
end

-- ratio {h, w} (numbers), or {value = name of a float [3] value: h, w, 1}
-- (--dynamic: computed from the input's shape), as a value of the given
-- shape whose elements are the ratio's at pick (0-based: 0 h, 1 w, 2 one)
function M.ratio_of(g, ratio, pick, shape)
  if not ratio.value then
    local v = {}
    for i, k in ipairs(pick) do v[i] = ({ ratio[1], ratio[2], 1 })[k + 1] end
    return g:constant(v, "float32", shape, "ratio")
  end
  return g:op("Reshape", { g:op("Gather", { ratio.value, g:ints(pick, "pick") }, { { "axis", "int", 0 } }),
                           g:ints(shape, "shape") })
end

-- the detections_per_img best of the kept candidates by score, boxes
-- scaled from the resized image to the input's size (ratio: ratio_of's):
-- g's outputs boxes, labels, scores
-- (sel_masks: Mask R-CNN's [n, 1, M, M], output as masks; sel_keypoints:
-- Keypoint R-CNN's {[n, K, 3], [n, K]}, output as keypoints (x and y
-- scaled, the visibility kept) and keypoints_scores)
function M.finish(g, detections_per_img, sel_boxes, sel_labels, sel_scores, ratio, sel_masks, sel_keypoints)
  local n = g:op("ReduceMin", { g:op("Concat", { g:op("Shape", { sel_scores }), g:ints({ detections_per_img },
                                                                                       "detections_per_img") },
                                     { { "axis", "int", 0 } }) }, { { "keepdims", "int", 1 } })
  local order = g:fresh("t")
  g:node("TopK", { sel_scores, n }, { "scores", order }, { { "axis", "int", 0 } })
  local boxes = g:op("Gather", { sel_boxes, order }, { { "axis", "int", 0 } })
  g:node("Mul", { boxes, M.ratio_of(g, ratio, { 1, 0, 1, 0 }, { 1, 4 }) }, { "boxes" })
  g:node("Gather", { sel_labels, order }, { "labels" }, { { "axis", "int", 0 } })
  for _, name in ipairs { "boxes", "labels", "scores" } do g.used_names[name] = true end
  g.outputs = { { name = "boxes", shape = { "num_detections", 4 }, dtype = "float32" },
                { name = "labels", shape = { "num_detections" }, dtype = "int64" },
                { name = "scores", shape = { "num_detections" }, dtype = "float32" } }
  if sel_masks then
    g:node("Gather", { sel_masks, order }, { "masks" }, { { "axis", "int", 0 } })
    g.used_names.masks = true
    g.outputs[4] = { name = "masks", shape = { "num_detections", 1, 28, 28 }, dtype = "float32" }
  end
  if sel_keypoints then
    local kp = g:op("Gather", { sel_keypoints[1], order }, { { "axis", "int", 0 } })
    g:node("Mul", { kp, M.ratio_of(g, ratio, { 1, 0, 2 }, { 1, 1, 3 }) }, { "keypoints" })
    g:node("Gather", { sel_keypoints[2], order }, { "keypoints_scores" }, { { "axis", "int", 0 } })
    g.used_names.keypoints, g.used_names.keypoints_scores = true, true
    g.outputs[4] = { name = "keypoints", shape = { "num_detections", sel_keypoints.k, 3 }, dtype = "float32" }
    g.outputs[5] = { name = "keypoints_scores", shape = { "num_detections", sel_keypoints.k }, dtype = "float32" }
  end
end

-- ---- the evaluator's kernels for the nodes above --------------------------------------------------------
local function unsupported(what) error("not evaluated: " .. what, 0) end
local values = evaluate.values

-- boxes [B, N, 4], scores [B, C, N]: per batch and class, greedy NMS over
-- the boxes scoring above score_threshold (ops.nms: IoU > iou_threshold
-- suppresses), at most max_output_boxes_per_class; [n, 3] (batch, class, box)
K.NonMaxSuppression = function(ins, at)
  if (at.center_point_box or 0) ~= 0 then unsupported("NonMaxSuppression with center_point_box") end
  local boxes, scores = ins[1], ins[2]
  local max_out = ins[3] and values(ins[3])[1] or 0
  local iou = ins[4] and values(ins[4])[1] or 0
  local thresh = ins[5] and values(ins[5])[1]
  local rows = {}
  for b = 1, boxes.shape[1] do
    local bb = boxes:narrow(1, b, 1):squeeze(1):contiguous()
    for c = 1, scores.shape[2] do
      local sc = scores:narrow(1, b, 1):narrow(2, c, 1):reshape(-1):contiguous()
      local keep_idx, keep_s = {}, {}
      local sp = sc:data()
      for i = 0, sc.numel - 1 do
        if thresh == nil or sp[i] > thresh then keep_idx[#keep_idx + 1], keep_s[#keep_s + 1] = i, sp[i] end
      end
      if #keep_idx > 0 then
        local idx = Tensor.from_table(keep_idx, "int64")
        local keep = ops.nms(ops.take(bb, idx), Tensor.from_table(keep_s, "float32"), iou)
        local kp = keep:data()
        for j = 0, math.min(keep.numel, max_out) - 1 do
          rows[#rows + 1] = { b - 1, c - 1, keep_idx[tonumber(kp[j]) + 1] }
        end
      end
    end
  end
  if #rows == 0 then return { Tensor.zeros({ 0, 3 }, "int64") } end
  return { Tensor.from_table(rows, "int64") }
end

-- data [d1, ..., dr], indices [n, q] (batch_dims 0) -> [n, d(q+1), ..., dr]
K.GatherND = function(ins, at)
  if (at.batch_dims or 0) ~= 0 then unsupported("GatherND with batch_dims") end
  local data, index = ins[1]:contiguous(), ins[2]
  if index.ndim ~= 2 then unsupported("GatherND with " .. index.ndim .. "-d indices") end
  local n, q = index.shape[1], index.shape[2]
  local inner, shape = 1, { n }
  for dim = q + 1, data.ndim do inner = inner * data.shape[dim]; shape[#shape + 1] = data.shape[dim] end
  local out = Tensor.zeros(shape, data.dtype)
  local ic = index:contiguous() -- referenced while ip points into it
  local ip, dp, op = ic:data(), data:data(), out:data()
  for r = 0, n - 1 do
    local off = 0
    for j = 0, q - 1 do off = off * data.shape[j + 1] + tonumber(ip[r * q + j]) end
    for e = 0, inner - 1 do op[r * inner + e] = dp[off * inner + e] end
  end
  return { out }
end

-- ReduceMin of int64 vectors (the count of detections to keep)
local float_reduce_min = K.ReduceMin
K.ReduceMin = function(ins, at, node, ctx)
  if ins[1].dtype ~= "int64" then return float_reduce_min(ins, at, node, ctx) end
  if ins[1].ndim ~= 1 or at.axes then unsupported("ReduceMin of an int64 tensor but a vector") end
  local v = values(ins[1])
  local lo = math.huge
  for _, x in ipairs(v) do lo = math.min(lo, x) end
  return { Tensor.from_table({ lo }, "int64"):reshape((at.keepdims or 1) ~= 0 and { 1 } or {}) }
end

-- Gather on any axis with a 1-d index, int64 data too (the kernel of
-- ops_math.lua reads axis 0 of float data through index_select)
local float_gather = K.Gather
K.Gather = function(ins, at, node, ctx)
  local ok, res = pcall(float_gather, ins, at, node, ctx)
  if ok then return res end
  local data, index = ins[1]:contiguous(), ins[2]
  if index.ndim ~= 1 or data.ndim ~= 2 then error(res, 0) end
  local axis = at.axis or 0
  local ix, rows, cols = values(index), data.shape[1], data.shape[2]
  local out = Tensor.zeros(axis == 0 and { #ix, cols } or { rows, #ix }, data.dtype)
  local dp, op = data:data(), out:data()
  for i, k in ipairs(ix) do
    if axis == 0 then for c = 0, cols - 1 do op[(i - 1) * cols + c] = dp[k * cols + c] end
    else for r = 0, rows - 1 do op[r * #ix + i - 1] = dp[r * cols + k] end end
  end
  return { out }
end

-- ---- building and checking --------------------------------------------------------------------------------
-- (the comparisons with the model's own detections: detector_check.lua)
local check = require "pthcv.export.onnx.detector_check"
M.per_class_nms = check.per_class_nms

-- The ONNX model of the SSD m and info, as onnx.build (init.lua) returns.
function M.build(onnx, m, o)
  local opset = o.opset or onnx.OPSET
  local name = detector_name(m)
  local ssd = name == "SSD"
  local axes = detector_dynamic.axes(o, name)
  if o.input_names or o.output_names then refuse(name .. ": the detector's names are input, boxes, labels and scores") end
  if not o.no_postprocess and opset < M.OPSET then
    refuse(string.format("%s at opset %d: the post-processing %s, which is opset 11 (use --opset 11 or later, or "
                         .. "--no-postprocess)", name, opset,
                         ssd and "reads the kept boxes with GatherND" or "compares int64 labels with Equal"))
  end
  local x = o.input
  if not Tensor.is(x) then x = Tensor.rand(x or { 1, 3, 320, 320 }, { seed = o.seed or 0 }) end
  if x.ndim == 3 then x = x:unsqueeze(1):contiguous() end -- one picture [3, H, W], as pthcv.detect takes it
  if x.ndim ~= 4 or x.shape[1] ~= 1 or x.shape[2] ~= 3 then
    refuse(name .. ": the input is one RGB image [1, 3, H, W] in 0..1, not [" .. table.concat(x.shape, ", ") .. "]")
  end
  local size = { x.shape[3], x.shape[4] }
  local rcnn = name == "FasterRCNN" or name == "MaskRCNN" or name == "KeypointRCNN"
  if rcnn and o.no_postprocess then
    refuse(name .. ": --no-postprocess: the box head runs on the region proposals, which the post-processing "
           .. "of the RPN makes")
  end
  if o.half then m:half() end -- float16 weights, float32 arithmetic (as half.lua's classifiers)
  local onestage = not ssd and require(rcnn and "pthcv.export.onnx.ops_rcnn" or "pthcv.export.onnx.ops_onestage")
  local wrapper, names
  if ssd then
    wrapper = M.wrap(m, x, o.no_postprocess)
    names = o.no_postprocess and { "bbox_regression", "cls_logits" } or { "raw_boxes", "raw_scores" }
  else
    wrapper, names = onestage.wrap(m, x, o.no_postprocess, axes and true)
  end
  local t = onnx.trace(wrapper, { input = x, opset = opset, output_names = names })
  local g = t.g
  local dyn -- RetinaNet's and FCOS's values computed from the input's size
  local ok, res = pcall(function()
    local ratio = { size[1] / wrapper.out_h, size[2] / wrapper.out_w }
    if axes and ssd then
      detector_dynamic.fix_resize(g, x)
      g.where, g.op_name = POSTPROCESS, "postprocess"
      if not o.no_postprocess then ratio = detector_dynamic.ratio(g, wrapper.out_h, wrapper.out_w) end
    elseif axes then
      dyn = detector_dynamic.trace_onestage(onnx, m, t, wrapper, detector_dynamic.onestage_probe(o, x, wrapper), o,
                                            names, onestage)
      g.where, g.op_name = POSTPROCESS, "postprocess"
      ratio = detector_dynamic.ratio(g, nil, nil, dyn.out_hw)
    end
    if o.no_postprocess then -- nothing to add
    elseif ssd then
      postprocess(g, m, wrapper.anchors.shape[1], m.head.classification_head.num_columns, ratio)
    else
      g.where, g.op_name = POSTPROCESS, "postprocess"
      if rcnn then
        M.finish(g, m.roi_heads.detections_per_img, "det_boxes", "det_labels", "det_scores", ratio,
                 wrapper.mask_rec and "det_masks", wrapper.keypoint_rec and
                 { "det_keypoints", "det_keypoints_scores", k = m.roi_heads.keypoint_predictor.out_channels })
      else
        local b, l, s = onestage.postprocess(g, m, wrapper, dyn)
        M.finish(g, m.o.detections_per_img, b, l, s, ratio)
      end
    end
    if rcnn then onestage.set_opset(g, opset) end
    lower.run(g, opset)
    local info = { opset = opset, warnings = {}, anchors = o.no_postprocess and wrapper.anchors or nil }
    if o.half then
      info.half, info.float = require("pthcv.export.onnx.half").run(g)
      -- the float16 model's convolutions (BatchNorm folded by pthcv's plan, the weights
      -- rounded to float16 again) are checked as fold.lua's folded ones, within 1e-4: through
      -- ResNet-50 the evaluator's float32 convolutions drift from them by 1.2e-5 to 1.7e-5
      -- of the largest value (the float32 exports stay within 1e-5)
      for _, node in ipairs(g.nodes) do
        if node.op == "Conv" then node.tolerance = math.max(node.tolerance or 0, fold.TOL) end
      end
    end
    evaluate.check(g, { input = x }, g.refs)
    local function run_at(picture, outputs) -- the graph's values of outputs on picture
      local values_in = {}
      for name, v in pairs(g.init_of) do values_in[name] = v end
      values_in.input = picture
      return evaluate.run(g.nodes, values_in, { ctx = { opset = opset }, outputs = outputs,
                                                form = "opset-" .. opset .. " ONNX" })
    end
    local function check_at(picture) -- against the model's detections, or its head's outputs
      local at = " at [" .. table.concat(picture.shape, ", ") .. "]"
      if not o.no_postprocess then
        check.compare(run_at(picture, { "boxes", "labels", "scores" }), check.model_detections(m, picture),
                      { picture.shape[3], picture.shape[4] }, at)
      else
        check.compare_head(run_at(picture, names), M.wrap(m, picture, true)(picture), names, at)
      end
    end
    if not o.no_postprocess then check_at(x) end
    if axes then
      local probe = dyn and dyn.probe or detector_dynamic.probe(o, x)
      check_at(probe)
      info.probe_shape = probe.shape
    end
    if dyn then -- (OpenCV runs no whole detector: one warning for the sizes computed with Shape)
      info.warnings[#info.warnings + 1] = "OpenCV 4.6 cannot run --dynamic's sizes, anchors and reshape targets "
        .. "computed with Shape (its importer folds Shape at the declared sizes)"
    else
      for _, w in ipairs(opencv46.warnings(g)) do
        if not w:find(POSTPROCESS, 1, true) then info.warnings[#info.warnings + 1] = w end
      end
    end
    if not o.no_postprocess then
      info.warnings[#info.warnings + 1] = "OpenCV 4.6 cannot run the detector's post-processing (its importer has no "
        .. "NonMaxSuppression, TopK, Gather or GatherND layers): run the file with onnxruntime"
        .. (rcnn and "" or ", or export with --no-postprocess for cv2.dnn")
    end
    local in_shape = axes and { 1, 3, axes[2], axes[3] } or x.shape
    local vi_in, vi_out, outputs = { proto.value_info("input", proto.DTYPE.float32, in_shape) }, {}, {}
    for i, out in ipairs(g.outputs) do
      vi_out[i] = proto.value_info(out.name, proto.DTYPE[out.dtype or "float32"], out.shape)
      outputs[i] = { name = out.name, shape = out.shape }
    end
    local nodes, inits = g:to_proto()
    local pb = proto.model({ name = o.name or name, nodes = nodes, initializers = inits, inputs = vi_in,
                             outputs = vi_out },
                           { ir_version = onnx.IR_VERSIONS[opset], opset = opset,
                             producer_version = require("pthcv").version })
    info.nodes, info.initializers, info.outputs = #g.nodes, #inits, outputs
    info.inputs = { { name = "input", shape = in_shape } }
    return { pb, info }
  end)
  onnx.release(t)
  if not ok and tostring(res):find("differs from the forward pass at node", 1, true)
     and tostring(res):find(POSTPROCESS, 1, true) then
    res = res .. ". In a detector's post-processing this may come from scores that tie (as an untrained model's "
          .. "do): the graph's TopK and NMS may order them otherwise than the model; export trained weights"
  end
  if not ok then error(res, 0) end
  return res[1], res[2]
end

return M
