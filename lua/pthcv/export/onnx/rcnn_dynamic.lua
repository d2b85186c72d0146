-- lua/pthcv/export/onnx/rcnn_dynamic.lua: the nodes of ops_rcnn.lua's ops
-- that depend on the picture's size, computed in the graph for --dynamic
-- height,width (detector_dynamic.lua rewrites the transform and the RPN's
-- anchors; the rest of the graph is the fixed export's):
--   * the resized size (out_h, out_w): the Shape of the transform's Resize
--     output, which the rewritten Resize computes (the value `resized` that
--     RCNNExport passes to each op);
--   * the RPN's per-level top-n: per level the objectness's Shape gives the
--     anchors of the level n, k = min(pre_nms_top_n, n) (ReduceMin), the
--     level's slice [first, first + n) of the concatenated objectness, and
--     the level of each of its k candidates (TopK's indices * 0 + level);
--   * the pooler's scales, as torchvision's MultiScaleRoIAlign infer_scale:
--     2 ^ round(log2(feature height / resized height)) (Round: half to
--     even, as torch.round), and from them the LevelMapper's k_min, k_max
--     (-log2 of the first and last scale). RoiAlign's spatial_scale is an
--     attribute, so the rois are multiplied by the level's scale in the
--     graph (a power of 2: exact) and RoiAlign reads them with scale 1;
--   * the clipping bounds of the box head's boxes: the resized size.
-- Every value here is computed the same way from Shape at any size, so the
-- two traces of detector_dynamic.lua are the same graph.
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"
local evaluate = require "pthcv.export.onnx.evaluate"
local util = require "pthcv.models.detection.util"

local M = {}
local F32 = proto.DTYPE.float32

local function dim(g, v, d) -- [1] int64: dim d (0-based) of value v's shape
  return g:op("Slice", { g:op("Shape", { v }), g:ints({ d }, "starts"), g:ints({ d + 1 }, "ends"),
                         g:ints({ 0 }, "axes") })
end
local function cast(g, v, to) return g:op("Cast", { v }, { { "to", "int", to } }) end
-- v [1] as a scalar (Clip's bounds are scalars)
function M.scalar(g, v) return g:op("Reshape", { v, g:input(Tensor.zeros({ 0 }, "int64"), "scalar_shape") }) end

-- The resized height and width, float32 [1] each, from the traced value
-- resized [1, 3, out_h, out_w] (its name in g).
function M.resized_size(g, resized)
  return cast(g, dim(g, resized, 2), F32), cast(g, dim(g, resized, 3), F32)
end

-- The RPN's per-level candidates (export.rcnn_rois): obj [A] (the
-- concatenated objectness), objs (the traced per-level objectness [1, n, 1]),
-- pre_nms_top_n -> tops (the candidates' indices in obj, per level) and
-- level_of [1, K] int64 (the level of each candidate).
function M.level_topk(g, obj, objs, pre_nms_top_n)
  local tops, levels = {}, {}
  local first = g:ints({ 0 }, "level_start")
  for l, o in ipairs(objs) do
    local n = dim(g, g:input(o), 1)
    local k = g:op("ReduceMin", { g:op("Concat", { g:ints({ pre_nms_top_n }, "pre_nms_top_n"), n },
                                       { { "axis", "int", 0 } }) }, { { "keepdims", "int", 1 } })
    local after = g:op("Add", { first, n })
    local s = g:op("Slice", { obj, first, after, g:ints({ 0 }, "axes") })
    local v, idx = g:fresh("t"), g:fresh("t")
    g:node("TopK", { s, k }, { v, idx }, { { "axis", "int", 0 } })
    tops[l] = g:op("Add", { idx, first })
    levels[l] = g:op("Add", { g:op("Mul", { idx, g:ints({ 0 }, "zero") }), g:ints({ l - 1 }, "level") })
    first = after
  end
  local level_of = g:op("Reshape", { g:op("Concat", levels, { { "axis", "int", 0 } }), g:ints({ 1, -1 }, "shape") })
  return tops, level_of
end

-- The pooler's scales from the maps (traced tensors) and the resized
-- height out_h (float32 [1]): per map its scale (float32 [1]), and k_min,
-- k_max (float32 scalars).
function M.pooler_scales(g, maps, out_h)
  local scales, exps = {}, {}
  local ln2 = g:scalar(math.log(2), "ln2")
  for l, map in ipairs(maps) do
    local ratio = g:op("Div", { cast(g, dim(g, g:input(map), 2), F32), out_h })
    exps[l] = g:op("Round", { g:op("Div", { g:op("Log", { ratio }), ln2 }) })
    scales[l] = g:op("Pow", { g:scalar(2, "two"), exps[l] })
  end
  return scales, M.scalar(g, g:op("Neg", { exps[1] })), M.scalar(g, g:op("Neg", { exps[#exps] }))
end

-- ---- the evaluator's kernels --------------------------------------------------------------------
local K = evaluate.kernels
-- Round, half to even (ONNX's and torch.round's)
K.Round = function(ins)
  local x = ins[1]:contiguous()
  local out = Tensor.zeros(x.shape, x.dtype)
  local xp, op = x:data(), out:data()
  for i = 0, x.numel - 1 do
    op[i] = util.round_even(tonumber(xp[i]))
  end
  return { out }
end
return M
