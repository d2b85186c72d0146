-- spec/ops_spec.lua: pthcv.ops against torchvision.ops' own answers
-- (spec/fixtures/make_detection_ops.py): the committed set in
-- spec/fixtures/detection_ops and, when torch is installed, a fresh one
-- (PTHCV_FIXTURES_DETECTION_OPS, written by tools/run-specs). Indices must
-- be equal (equal scores included); IoU, clipping, roi_align and roi_pool
-- the same bits; decoded boxes, pasted masks and keypoint scores within the
-- rounding of torch's exp and interpolation kernels.
local support = require "support"
local pthcv = require "pthcv"
local ops = pthcv.ops

local sets = { support.root .. "/spec/fixtures/detection_ops" }
local fresh = os.getenv("PTHCV_FIXTURES_DETECTION_OPS")
if fresh and fresh ~= "" then sets[#sets + 1] = fresh end

-- calls the op of a case on its inputs: its results, in the order of `expected`
local run = {
  nms = function(i, a) return ops.nms(i.boxes, i.scores, a.iou_threshold) end,
  batched_nms = function(i, a) return ops.batched_nms(i.boxes, i.scores, i.idxs, a.iou_threshold) end,
  box_iou = function(i) return ops.box_iou(i.boxes1, i.boxes2) end,
  clip_boxes_to_image = function(i, a) return ops.clip_boxes_to_image(i.boxes, { a.height, a.width }) end,
  remove_small_boxes = function(i, a) return ops.remove_small_boxes(i.boxes, a.min_size) end,
  box_decode = function(i, a) return ops.BoxCoder(a.weights):decode_single(i.rel_codes, i.boxes) end,
  box_linear_decode = function(i, a) return ops.BoxLinearCoder(a.normalize_by_size):decode(i.rel_codes, i.boxes) end,
  sort_desc_indices = function(i) return ops.sort_desc_indices(i.values) end,
  topk_indices = function(i, a) return ops.topk_indices(i.values, a.k) end,
  roi_align = function(i, a)
    return ops.roi_align(i.input, i.rois, a.output_size, a.spatial_scale, a.sampling_ratio, a.aligned)
  end,
  roi_pool = function(i, a) return ops.roi_pool(i.input, i.rois, a.output_size, a.spatial_scale) end,
  paste_masks_in_image = function(i, a)
    return ops.paste_masks_in_image(i.masks, i.boxes, { a.height, a.width }, a.padding)
  end,
  heatmaps_to_keypoints = function(i) return ops.heatmaps_to_keypoints(i.maps, i.rois) end,
  ssd_candidates = function(i, a) return ops.ssd_candidates(i.scores, i.boxes, a.score_thresh, a.topk_candidates) end,
  image_to_tensor = function(i) return require("pthcv.image.detect").to_tensor(i.image) end,
}

-- relative tolerance per op (0: the same bits; NaN equals NaN). torch's own
-- kernels (exp, interpolation) are built per instruction set with fused
-- multiply-adds, so their last bits differ from plain float32 arithmetic.
local tolerance = { box_decode = 2e-6, paste_masks_in_image = 1e-6, heatmaps_to_keypoints = 1e-5 }

local function same_values(got, want, tol)
  assert.are.same(want.shape, got.shape)
  assert.are.equal(want.dtype, got.dtype)
  local g, w = got:contiguous(), want:contiguous()
  local pg, pw = g:data(), w:data()
  local scale = 0
  for i = 0, w.numel - 1 do
    local v = tonumber(pw[i])
    if v == v and math.abs(v) > scale then scale = math.abs(v) end
  end
  for i = 0, w.numel - 1 do
    local a, b = tonumber(pg[i]), tonumber(pw[i])
    local ok = (a ~= a and b ~= b) or a == b or (tol > 0 and math.abs(a - b) <= tol * math.max(scale, 1))
    if not ok then error(string.format("element %d: %.9g, torchvision %.9g", i, a, b), 0) end
  end
end

for _, dir in ipairs(sets) do
  local manifest = dofile(dir .. "/cases.lua")
  describe("pthcv.ops against torchvision " .. manifest.torchvision .. " (" .. dir:match("[^/]+$") .. ")", function()
    for _, c in ipairs(manifest.cases) do
      it(c.op .. " " .. c.name, function()
        local inputs = {}
        for k, f in pairs(c.inputs) do inputs[k] = pthcv.load_npy(dir .. "/" .. f) end
        local got = { run[c.op](inputs, c.args) }
        assert.are.equal(#c.expected, #got)
        for i, f in ipairs(c.expected) do
          local ok, err = pcall(same_values, got[i], pthcv.load_npy(dir .. "/" .. f), tolerance[c.op] or 0)
          assert(ok, c.op .. " " .. c.name .. " result " .. i .. ": " .. tostring(err))
        end
      end)
    end
  end)
end

describe("pthcv.ops", function()
  local boxes = pthcv.tensor({ { 0, 0, 10, 10 }, { 1, 1, 11, 11 }, { 50, 50, 60, 60 } }, "float32")
  local scores = pthcv.tensor({ 0.9, 0.8, 0.7 }, "float32")

  it("keeps the higher-scoring of two overlapping boxes", function()
    assert.are.same({ 0, 2 }, ops.nms(boxes, scores, 0.5):totable())
    assert.are.same({ 0, 1, 2 }, ops.nms(boxes, scores, 0.9):totable())
    assert.are.same({ 0, 1, 2 }, ops.batched_nms(boxes, scores, pthcv.tensor({ 1, 2, 1 }, "int64"), 0.5):totable())
  end)

  it("selects rows with 0-based indices", function()
    local picked = ops.take(boxes, pthcv.tensor({ 2, 0 }, "int64"))
    assert.are.same({ { 50, 50, 60, 60 }, { 0, 0, 10, 10 } }, picked:totable())
    assert.has_error(function() ops.take(boxes, pthcv.tensor({ 3 }, "int64")) end,
                     "pthcv.ops.take: index 3 is out of range for 3 rows")
  end)

  it("takes per-image box lists for roi_align", function()
    local x = pthcv.arange(2 * 1 * 4 * 4):reshape(2, 1, 4, 4)
    local a = ops.roi_align(x, { pthcv.tensor({ { 0, 0, 2, 2 } }, "float32"), pthcv.tensor({ { 0, 0, 2, 2 } }, "float32") },
                            1, 1, 1, true)
    assert.are.same({ 2, 1, 1, 1 }, a.shape)
    assert.are.equal(2.5, a:get(1, 1, 1, 1))      -- the mean of 0, 1, 4, 5: map 0's corner
    assert.are.equal(18.5, a:get(2, 1, 1, 1))     -- and map 1's
  end)

  it("refuses bad arguments with messages naming them", function()
    assert.has_error(function() ops.nms(boxes:narrow(2, 1, 3), scores, 0.5) end,
                     "pthcv: pthcv_nms: boxes must be [N, 4] (x1, y1, x2, y2), got [3, 3]")
    assert.has_error(function() ops.nms(boxes, scores:narrow(1, 1, 2), 0.5) end,
                     "pthcv: pthcv_nms: scores must be [3] like the boxes, got [2]")
    assert.has_error(function() ops.batched_nms(boxes, scores, pthcv.tensor({ 1, 2 }, "int64"), 0.5) end,
                     "pthcv: pthcv_batched_nms: idxs must be int64 [3] like the boxes, got int64 [2]")
    assert.has_error(function() ops.nms(boxes, scores) end, "pthcv.ops.nms: iou_threshold must be a number")
    local rois = pthcv.tensor({ { 2, 0, 0, 1, 1 } }, "float32")
    assert.has_error(function() ops.roi_align(pthcv.zeros(1, 1, 4, 4), rois, 2) end,
                     "pthcv: pthcv_roi_align: roi 0 names batch element 2 of an input of 1")
    local huge = pthcv.tensor({ { 0, 0, 0, 1e9, 1e9 } }, "float32")
    assert.has_error(function() ops.roi_align(pthcv.zeros(1, 1, 4, 4), huge, 7) end)
    assert.has_error(function() ops.topk_indices(scores, 4) end,
                     "pthcv: pthcv_topk_indices: k = 4 is out of range for 3 values")
  end)
end)
