-- lua/pthcv/export/onnx/ops_keypoint.lua: Keypoint R-CNN's last step in
-- ONNX (keypointrcnn_resnet50_fpn; ops_rcnn.lua traces the rest): the
-- heatmaps of the detections turned into keypoints as torchvision's
-- roi_heads.heatmaps_to_keypoints does (pthcv's ops.heatmaps_to_keypoints,
-- csrc/kernels/ops_masks.c, is the value the export's check compares).
--
-- export.keypoints: heatmaps [R, K, S, S] (the detections' rows grouped by
-- FPN level, as export.mask_rois pools them), boxes [N, 4] (the
-- detections, in the resized image), rows [R] (the detection of each
-- row) -> keypoints [N, K, 3] (x, y, 1) and keypoints_scores [N, K], in
-- the detections' order. The nodes: each row's box (Gather), then a Scan
-- over the rows (heatmap [K, S, S], box [4]) whose body is, per box:
--   w = max(x2 - x1, 1), h likewise; the map resized to ceil(h) x ceil(w)
--   by Resize (mode cubic, cubic_coeff_a -0.75, half_pixel: torch's
--   bicubic with align_corners=False, including sizes of 1, where
--   pytorch_half_pixel would differ; edges clamped, exclude_outside 0);
--   per keypoint ArgMax (the first maximum) and ReduceMax (its score) of
--   the map flattened; x = (pos mod ceil(w) + 0.5) * (w / ceil(w)) + x1,
--   y = (pos div ceil(w) + 0.5) * (h / ceil(h)) + y1, and 1;
-- then the rows put back in the detections' order (TopK of -rows). The
-- Scan runs over one more row (a zero heatmap, box (0, 0, 1, 1)) that is
-- never read: onnxruntime 1.20's Scan refuses a sequence of length 0
-- ("Invalid dim0_offset of 0. Dimension 0 is 0"), i.e. a picture with no
-- detection.
-- A Scan rather than torchvision's Loop: its body reads only its own
-- inputs and constants, no outer-scope value. Opset 11 on (Resize-11).
local Tensor = require "pthcv.tensor"
local nn = require "pthcv.nn"
local F = nn.F
local ops = require "pthcv.ops"
local onnx_ops = require "pthcv.export.onnx.ops"
local evaluate = require "pthcv.export.onnx.evaluate"
local proto = require "pthcv.export.onnx.proto"
local graph = require "pthcv.export.onnx.graph"
local util = require "pthcv.models.detection.util"

local M = {}
local H, K = onnx_ops.handlers, evaluate.kernels
local f32 = util.f32
local WHERE = "the detector's post-processing (ops_keypoint.lua)"
local FLOAT, INT64 = proto.DTYPE.float32, proto.DTYPE.int64

-- the row of each detection: the inverse of rows [R] (int64)
local function inverse(rows)
  local rc = rows:contiguous() -- referenced while rp points into it
  local inv, rp = {}, rc:data()
  for j = 0, rows.numel - 1 do inv[tonumber(rp[j]) + 1] = j end
  return Tensor.from_table(inv, "int64")
end

-- export.keypoints's value: pthcv's keypoints of the detections (the
-- heatmaps' rows put in the detections' order first)
function M.impl(_, heatmaps, boxes, rows)
  if rows.numel == 0 then
    local k = heatmaps.shape[2]
    return Tensor.zeros({ 0, k, 3 }, "float32"), Tensor.zeros({ 0, k }, "float32")
  end
  return ops.heatmaps_to_keypoints(util.take(heatmaps, inverse(rows)), boxes)
end

-- The Scan's body for K maps of S x S (names unique in g: the body shares
-- its counters): a graph record with its inputs, outputs and their shapes.
local function body_graph(g, k, s)
  local b = graph.new()
  b.count, b.used_names, b.where, b.op_name = g.count, g.used_names, WHERE, "export.keypoints"
  local map, box = b:fresh("heatmap"), b:fresh("box")
  local function corner(j)
    return b:op("Slice", { box, b:ints({ j }, "starts"), b:ints({ j + 1 }, "ends"), b:ints({ 0 }, "axes") })
  end
  local function side(lo, hi) -- the box's side (at least 1), its ceiling, and side / ceiling
    local len = b:op("Max", { b:op("Sub", { corner(hi), corner(lo) }), b:constant({ 1 }, "float32", { 1 }, "one") })
    local ceil = b:op("Ceil", { len })
    return ceil, b:op("Div", { len, ceil })
  end
  local function int(t) return b:op("Cast", { t }, { { "to", "int", INT64 } }) end
  local wc, wcorr = side(0, 2)
  local hc, hcorr = side(1, 3)
  local wi = int(wc)
  local sizes = b:op("Concat", { b:ints({ 1, k }, "batch_channels"), int(hc), wi }, { { "axis", "int", 0 } })
  local x = b:op("Reshape", { map, b:ints({ 1, k, s, s }, "shape") })
  local resized = b:op("Resize", { x, b:input(Tensor.zeros({ 0 }, "float32"), "roi"),
                                   b:input(Tensor.zeros({ 0 }, "float32"), "scales"), sizes },
                       { { "mode", "string", "cubic" }, { "cubic_coeff_a", "float", -0.75 },
                         { "coordinate_transformation_mode", "string", "half_pixel" },
                         { "exclude_outside", "int", 0 } })
  local flat = b:op("Reshape", { resized, b:ints({ k, -1 }, "shape") })
  local pos = b:op("ArgMax", { flat }, { { "axis", "int", 1 }, { "keepdims", "int", 1 } })      -- [K, 1]
  local half = b:constant({ 0.5 }, "float32", { 1 }, "half")
  local function coord(index, corr, lo) -- (index + 0.5) * corr + the box's corner, [K, 1]
    local fi = b:op("Cast", { index }, { { "to", "int", FLOAT } })
    return b:op("Add", { b:op("Mul", { b:op("Add", { fi, half }), corr }), corner(lo) })
  end
  local kp, ks = b:fresh("keypoints"), b:fresh("keypoints_scores")
  local ones = b:constant((function() local t = {} for i = 1, k do t[i] = 1 end return t end)(), "float32", { k, 1 },
                          "visible")
  b:node("Concat", { coord(b:op("Mod", { pos, wi }), wcorr, 0), coord(b:op("Div", { pos, wi }), hcorr, 1), ones },
         { kp }, { { "axis", "int", 1 } })
  b:node("ReduceMax", { flat }, { ks }, { { "axes", "ints", { 1 } }, { "keepdims", "int", 0 } })
  b.scan_inputs, b.scan_outputs, b.scan_shapes = { map, box }, { kp, ks }, { { k, 3 }, { k } }
  local nodes, inits = b:to_proto()
  b.proto = proto.graph({ name = "heatmaps_to_keypoints", nodes = nodes, initializers = inits,
                          inputs = { proto.value_info(map, FLOAT, { k, s, s }), proto.value_info(box, FLOAT, { 4 }) },
                          outputs = { proto.value_info(kp, FLOAT, { k, 3 }), proto.value_info(ks, FLOAT, { k }) } })
  return b
end

H["export.keypoints"] = function(g, a, r)
  g.where = WHERE
  local k, s = a[1].shape[2], a[1].shape[3]
  local rows = g:input(a[3])
  local boxes = g:op("Gather", { g:input(a[2]), rows }, { { "axis", "int", 0 } })            -- each row's box
  -- a last row that no Gather below reads: onnxruntime 1.20's Scan fails on
  -- a sequence of length 0 (no detections)
  local axis0 = { { "axis", "int", 0 } }
  local spare_map = g:op("Expand", { g:constant({ 0 }, "float32", { 1, 1, 1, 1 }, "spare_heatmap"),
                                     g:ints({ 1, k, s, s }, "shape") })
  local heatmaps = g:op("Concat", { g:input(a[1]), spare_map }, axis0)
  boxes = g:op("Concat", { boxes, g:constant({ 0, 0, 1, 1 }, "float32", { 1, 4 }, "spare_box") }, axis0)
  local body = body_graph(g, k, s)
  local kp, ks = g:fresh("t"), g:fresh("t")
  g:node("Scan", { heatmaps, boxes }, { kp, ks }, { { "body", "graph", body.proto }, { "num_scan_inputs", "int", 2 } })
  g.nodes[#g.nodes].body = body
  local inv = g:fresh("t")
  g:node("TopK", { g:op("Neg", { g:op("Cast", { rows }, { { "to", "int", FLOAT } }) }), g:op("Shape", { rows }) },
         { g:fresh("t"), inv }, { { "axis", "int", 0 } })
  g:output(r[1], g:op("Gather", { kp, inv }, { { "axis", "int", 0 } }))
  g:output(r[2], g:op("Gather", { ks, inv }, { { "axis", "int", 0 } }))
end

-- ---- the evaluator's kernels ----------------------------------------------------------------
-- Scan of a body pthcv wrote (node.body): scan inputs along axis 0, no state
K.Scan = function(ins, _, node, ctx)
  local body = node.body or error("not evaluated: a Scan whose body pthcv did not write", 0)
  local n, outs = ins[1].shape[1], {}
  for j = 1, #body.scan_outputs do outs[j] = {} end
  for i = 1, n do
    local values = {}
    for name, t in pairs(body.init_of) do values[name] = t end
    for j, name in ipairs(body.scan_inputs) do values[name] = ins[j]:narrow(1, i, 1):squeeze(1):contiguous() end
    local res = evaluate.run(body.nodes, values, { ctx = ctx, outputs = body.scan_outputs, form = "the Scan's body" })
    for j, name in ipairs(body.scan_outputs) do outs[j][i] = res[name]:unsqueeze(1) end
  end
  local result = {}
  for j, shape in ipairs(body.scan_shapes) do
    result[j] = n > 0 and F.cat(outs[j], 0) or Tensor.zeros({ 0, unpack(shape) }, "float32")
  end
  return result
end

-- torch's bicubic weights of one axis (A = -0.75, align_corners=False,
-- source indices clamped) as a matrix [n_in, n_out]: out = in^T @ it
local function cubic_matrix(n_in, n_out)
  local A = -0.75
  local w = Tensor.zeros({ n_in, n_out }, "float32")
  local p = w:data()
  local scale = f32(n_in / n_out)
  for o = 0, n_out - 1 do
    local real = f32(f32(scale * f32(o + 0.5)) - 0.5)
    local i0 = math.floor(real)
    local t = f32(real - i0)
    local x1, x2 = t + 1, 1 - t
    local x3 = x2 + 1
    local taps = { ((A * x1 - 5 * A) * x1 + 8 * A) * x1 - 4 * A, ((A + 2) * t - (A + 3)) * t * t + 1,
                   ((A + 2) * x2 - (A + 3)) * x2 * x2 + 1, ((A * x3 - 5 * A) * x3 + 8 * A) * x3 - 4 * A }
    for j = 1, 4 do
      local src = math.min(math.max(i0 + j - 2, 0), n_in - 1)
      p[src * n_out + o] = p[src * n_out + o] + f32(taps[j])
    end
  end
  return w
end

-- Resize mode cubic (as export.keypoints writes it: sizes, half_pixel,
-- cubic_coeff_a -0.75, exclude_outside 0) as two products: rows, then columns
local other_resize = K.Resize
K.Resize = function(ins, at, node, ctx)
  if (at.mode or "nearest") ~= "cubic" then return other_resize(ins, at, node, ctx) end
  if (at.coordinate_transformation_mode or "half_pixel") ~= "half_pixel" or (at.cubic_coeff_a or -0.75) ~= -0.75
     or (at.exclude_outside or 0) ~= 0 or not ins[4] or ins[1].ndim ~= 4 then
    error("not evaluated: cubic Resize other than export.keypoints's", 0)
  end
  local x, sizes = ins[1]:contiguous(), evaluate.values(ins[4])
  local n, c, h, w = unpack(x.shape)
  if sizes[1] ~= n or sizes[2] ~= c then error("not evaluated: Resize of the batch or channel dims", 0) end
  local oh, ow = sizes[3], sizes[4]
  local cols = F.matmul(x:reshape({ n * c * h, w }), cubic_matrix(w, ow))                   -- [NCH, ow]
  local t = cols:reshape({ n * c, h, ow }):permute({ 1, 3, 2 }):contiguous():reshape({ n * c * ow, h })
  local y = F.matmul(t, cubic_matrix(h, oh)):reshape({ n * c, ow, oh }):permute({ 1, 3, 2 }):contiguous()
  return { y:reshape({ n, c, oh, ow }) }
end

return M
