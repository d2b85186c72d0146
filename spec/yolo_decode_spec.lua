-- spec/yolo_decode_spec.lua: a YOLOv5-style decode of one head output written
-- in Lua with pthcv.F -- sigmoid, grid offsets, exp'd and squared box sizes,
-- the best class per anchor (max with indices), a score threshold (gt,
-- where), the top boxes (argsort, index_select, gather) -- against the same
-- code run by torch (spec/fixtures/make_math_fixtures.py, yolo()); then the
-- same steps through the Tensor methods (1-based dims and indices).
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local mathspec = require "math_support"

local F = pthcv.F

-- the Lua twin of make_math_fixtures.py's yolo(): p [1, na, ny, nx, 5 + nc]
-- logits, anchors [na, 2] in pixels; boxes x1 y1 x2 y2
local function decode(p, anchors, o)
  local _, na, ny, nx, no = unpack(p.shape)
  local s = F.sigmoid(p)
  local gx = pthcv.arange(nx):view(1, 1, 1, nx, 1)
  local gy = pthcv.arange(ny):view(1, 1, ny, 1, 1)
  local aw = F.narrow(anchors, 1, 0, 1):reshape(1, na, 1, 1, 1)
  local ah = F.narrow(anchors, 1, 1, 1):reshape(1, na, 1, 1, 1)
  local cx = (F.narrow(s, -1, 0, 1) * 2 - 0.5 + gx) * o.stride
  local cy = (F.narrow(s, -1, 1, 1) * 2 - 0.5 + gy) * o.stride
  local w = F.pow(F.narrow(s, -1, 2, 1) * 2, 2) * aw
  local h = F.exp(F.narrow(p, -1, 3, 1)) * ah
  local boxes = F.cat({ cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2 }, -1):reshape(-1, 4)
  local scores = F.narrow(s, -1, 4, 1) * F.narrow(s, -1, 5, no - 5)
  local score, label = F.max(scores, -1)
  score, label = score:reshape(-1), label:reshape(-1)
  local keep = F.gt(score, o.threshold)
  local masked = F.where(keep, score, -1.0)
  local order = F.narrow(F.argsort(masked, -1, true), 0, 0, o.top)
  return { boxes = F.index_select(boxes, 0, order), scores = F.gather(masked, 0, order),
           labels = F.gather(label, 0, order), order = order, keep = keep,
           all_boxes = boxes, all_scores = scores, masked = masked, label = label }
end

local function check(dir)
  local T = pthcv.load(dir .. "/tensors.pth")
  local o = json.decode(assert(support.read_file(dir .. "/yolo.json")))
  local r = decode(T["yolo.p"], T["yolo.anchors"], o)
  mathspec.assert_same(r.keep, T["yolo.keep"], nil, "keep")
  assert.are.equal(o.kept, r.keep:sum())
  mathspec.assert_same(r.order, T["yolo.order"], nil, "order")
  mathspec.assert_same(r.labels, T["yolo.labels"], nil, "labels")
  -- sigmoid and exp are torch's within an ulp or so; the boxes add them up
  mathspec.assert_same(r.scores, T["yolo.scores"], 2, "scores")
  local diff = (r.boxes - T["yolo.boxes"]):abs():max()
  assert.is_true(diff <= 1e-5 * T["yolo.boxes"]:abs():max(), "boxes differ by " .. diff)

  -- the same selection through the methods: dims and indices from 1
  local score1, label1 = r.all_scores:max(5)
  mathspec.assert_same(label1:reshape(-1), mathspec.plus(r.label, 1), nil, "labels of the methods")
  local order1 = r.masked:argsort(1, true):narrow(1, 1, o.top)
  mathspec.assert_same(order1, mathspec.plus(T["yolo.order"], 1), nil, "order, 1-based")
  mathspec.assert_same(r.all_boxes:index_select(1, order1), r.boxes, nil, "boxes, 1-based")
  mathspec.assert_same(label1:reshape(-1):gather(1, order1), mathspec.plus(T["yolo.labels"], 1), nil,
                       "labels, 1-based")
  mathspec.assert_same(score1:reshape(-1):where(r.keep, -1.0):gather(1, order1), r.scores, nil, "scores, methods")
end

describe("a YOLO-style decode written in Lua", function()
  it("gives torch's boxes, scores and classes (committed fixture)", function()
    check(support.root .. "/spec/fixtures/math")
  end)
  local fresh = mathspec.fresh_fixtures("math-yolo")
  if fresh then
    it("gives torch's boxes, scores and classes (fresh fixture)", function() check(fresh) end)
  else
    pending("torch is not importable: only the committed fixture ran")
  end
end)
