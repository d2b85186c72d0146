-- lua/pthcv/export/onnx/detector_check.lua: an exported detector's
-- detections against the model's own (ops_detection.lua's check before
-- writing; the specs' comparisons of --half files with the float32 model).
--
--   check.compare(got, want, size)            -- raises unless they are the same detections
--   check.match(got, want, size, tol) -> worst -- detections clear of the threshold, within tol
--   check.model_detections(m, x)             -- m's detections with NMS per class (the graph's)
--   check.per_class_nms(boxes, scores, labels, iou)
--
-- got and want are {boxes [n, 4], labels [n], scores [n]}; size {h, w} is
-- the picture's.
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local graph = require "pthcv.export.onnx.graph"

local refuse = graph.refuse
local M = {}

local function close_boxes(a, b, tol)
  for c = 1, 4 do if math.abs(a[c] - b[c]) > tol then return false end end
  return true
end

-- The graph's detections against the model's own on the same picture:
-- as many, each matched to one of the forward's with the same label, a
-- score within 1e-4 and a box within 1e-3 of the image's size (issue 17's
-- tolerances: the graph, run from its input alone, rounds differently
-- through the network, e.g. hardswish as x * HardSigmoid(x); equal or
-- near-equal scores may come in either order). at: the picture, for the
-- message.
function M.compare(got, want, size, at)
  at = at or ""
  local n = want.scores.numel
  if got.scores.numel ~= n then
    refuse(string.format("the exported graph finds %d detections%s where the forward pass finds %d; nothing was "
                         .. "written", got.scores.numel, at, n))
  end
  if n == 0 then return end
  local gl, wl = got.labels:totable(), want.labels:totable()
  local gs, ws = got.scores:totable(), want.scores:totable()
  local gb, wb = got.boxes:totable(), want.boxes:totable()
  local tol = 1e-3 * math.max(size[1], size[2])
  local used = {}
  for i = 1, n do
    local found = false
    for j = math.max(1, i - 50), math.min(n, i + 50) do
      if not used[j] and gl[i] == wl[j] and math.abs(gs[i] - ws[j]) <= 1e-4 and close_boxes(gb[i], wb[j], tol) then
        used[j], found = true, true
        break
      end
    end
    if not found then
      refuse(string.format("the exported graph's detection %d%s (label %d, score %.6g) is not among the forward "
                           .. "pass's; nothing was written", i, at, gl[i], gs[i]))
    end
  end
end

-- The head's outputs of the graph (got, by name) against the model's
-- (want) for --no-postprocess at a second picture size: each within 1e-4
-- of max(1, its largest magnitude) (the evaluator's 1e-5 is node by node;
-- here the whole network's rounding adds up, as for the detections).
function M.compare_head(got, want, names, at)
  for _, name in ipairs(names) do
    local g, w = got[name], want[name]
    if not g or not w or g.numel ~= w.numel then
      refuse(string.format("the exported graph's %s%s is not the forward pass's shape; nothing was written", name, at))
    end
    local d = g:float() - w:float()
    local diff, scale = math.max(d:max(), -d:min()), math.max(w:max(), -w:min())
    if diff > 1e-4 * math.max(1, scale) then
      refuse(string.format("the exported graph's %s%s differs from the forward pass's by %.3g (largest |value| %.3g); "
                           .. "nothing was written", name, at, diff, scale))
    end
  end
end

-- Detections that should agree within a rounding of the weights (a --half
-- file against the float32 model): every detection of either side whose
-- score is at least tol.clear above the threshold tol.thresh is matched to
-- one of the other side's with the same label, a score within tol.score
-- and each box coordinate within tol.box * max(size). The other
-- detections (near the threshold, which a rounding may move across) are
-- not compared. Returns {matched = n, score = worst, box = worst (pixels)};
-- raises naming the first detection without a match.
function M.match(got, want, size, tol)
  local worst = { matched = 0, score = 0, box = 0 }
  local px = tol.box * math.max(size[1], size[2])
  local function one_way(a, b, what)
    local al, as, ab = a.labels:totable(), a.scores:totable(), a.boxes:totable()
    local bl, bs, bb = b.labels:totable(), b.scores:totable(), b.boxes:totable()
    for i = 1, #as do
      if as[i] >= tol.thresh + tol.clear then
        local best
        for j = 1, #bs do
          if bl[j] == al[i] and math.abs(bs[j] - as[i]) <= tol.score and close_boxes(ab[i], bb[j], px) then
            local d = 0
            for c = 1, 4 do d = math.max(d, math.abs(ab[i][c] - bb[j][c])) end
            if not best or d < best.box then best = { box = d, score = math.abs(bs[j] - as[i]) } end
          end
        end
        if not best then
          error(string.format("%s detection %d (label %d, score %.4f, box %.1f %.1f %.1f %.1f) has no match: same "
                              .. "label, score within %g, box within %.3g px", what, i, al[i], as[i], ab[i][1], ab[i][2],
                              ab[i][3], ab[i][4], tol.score, px), 0)
        end
        worst.matched = worst.matched + 1
        worst.score, worst.box = math.max(worst.score, best.score), math.max(worst.box, best.box)
      end
    end
  end
  one_way(want, got, "the reference's")
  one_way(got, want, "the export's")
  return worst
end

-- batched_nms as NMS per class, each class over its boxes by itself (ONNX's
-- NonMaxSuppression; torchvision's _batched_nms_vanilla), the kept boxes
-- by decreasing score. torchvision (and ops.batched_nms) use it above 1000
-- boxes; below, the coordinate trick, which moves each class's boxes by
-- label * (max + 1) and so rounds their coordinates: an IoU within a
-- rounding of the threshold may then decide otherwise.
function M.per_class_nms(boxes, scores, labels, iou)
  local by_class, order = {}, {}
  local lc, sc = labels:contiguous(), scores:contiguous() -- referenced while lp, sp point into them
  local lp = lc:data()
  for i = 0, labels.numel - 1 do
    local c = tonumber(lp[i])
    if not by_class[c] then by_class[c] = {}; order[#order + 1] = c end
    table.insert(by_class[c], i)
  end
  local kept, sp = {}, sc:data()
  for _, c in ipairs(order) do
    local idx = Tensor.from_table(by_class[c], "int64")
    local keep = ops.nms(ops.take(boxes, idx), ops.take(scores, idx), iou)
    local kp = keep:data()
    for j = 0, keep.numel - 1 do kept[#kept + 1] = by_class[c][tonumber(kp[j]) + 1] end
  end
  table.sort(kept, function(a, b) if sp[a] ~= sp[b] then return sp[a] > sp[b] end return a < b end)
  if #kept == 0 then return Tensor.zeros({ 0 }, "int64") end
  return Tensor.from_table(kept, "int64")
end

-- The detector m's own detections on x [1, 3, H, W] with NMS per class
-- (the graph's), for the check before writing.
function M.model_detections(m, x)
  local saved = ops.batched_nms
  ops.batched_nms = M.per_class_nms
  local ok, res = pcall(m, { x:squeeze(1) })
  ops.batched_nms = saved
  if not ok then error(res, 0) end
  return res[1]
end

return M
