-- spec/onnx_detection_spec.lua: ONNX export of the segmentation models and
-- of the SSD detector (lua/pthcv/export/onnx/ops_detection.lua) on the
-- detection fixtures (PTHCV_DETECTION, spec/fixtures/make_detection_fixtures.py):
--   segmentation (out and aux): onnx.checker with full_check and cv2.dnn
--     against pthcv's forward within 1e-4 of the largest logit;
--   ssdlite320_mobilenet_v3_large and ssd300_vgg16, the whole detector
--     (NonMaxSuppression, TopK, GatherND) at opsets 11, 13 and 17 (12,
--     14, 15, 16: onnx.checker), with the fixtures' options and ssdlite's
--     defaults (300 detections, in order):
--     onnx.checker, then onnxruntime (npm's
--     onnxruntime-node, spec/onnx_runtime.lua) against pthcv's own
--     detections (labels equal, scores within 1e-4, boxes within 1e-3 of
--     the image's size) and torchvision's;
--   --no-postprocess: the head's outputs through cv2.dnn, and the default
--     boxes beside;
--   fasterrcnn_mobilenet_v3_large_320_fpn (opsets 11 and 16), maskrcnn_resnet50_fpn
--     (17; its masks pasted against pthcv's), retinanet_resnet50_fpn_v2 (11)
--     and fcos_resnet50_fpn (17), the whole detectors, likewise (torchvision's
--     detections where the fixture is of one picture);
--   keypointrcnn_resnet50_fpn (17), likewise, and its keypoints within 1e-3
--     of the image's size, keypoint scores within 1e-4 (pthcv's and
--     torchvision's); the keypoint step alone (the Scan of cubic Resize,
--     ArgMax; opsets 11 and 17) on boxes of every kind against
--     pthcv.ops.heatmaps_to_keypoints;
--   RetinaNet's and FCOS's --no-postprocess outputs and anchors;
--   refusals: opset 10 (no GatherND), Faster and Keypoint R-CNN's
--     --no-postprocess (--half and --dynamic: onnx_detector_options_spec.lua).
local support = require "support"
local xs = require "export_support"
local R = require "onnx_runtime"
-- onnxruntime's outputs of path on x, by name
local ort = {}
function ort.run(path, x)
  local out = {}
  for _, o in ipairs(R.run(path, { x })[1]) do out[o.name] = o.value end
  return out
end
local pthcv = require "pthcv"
local json = require "dkjson"
local onnx = require "pthcv.export.onnx"
local det_export = require "pthcv.export.onnx.ops_detection"

local dir = os.getenv("PTHCV_DETECTION")
local manifest = dir and json.decode(assert(support.read_file(dir .. "/manifest.json")))

local max_abs = xs.max_abs

local function model(name)
  local e = manifest[name]
  local m = pthcv.models[e.kind == "segmentation" and "segmentation" or "detection"][name](e.options)
  m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
  m:eval()
  return m, e
end

local checker = xs.onnx_checker

describe("ONNX export of segmentation and detection models", function()
  if not dir then
    it("needs the detection fixtures", function() pending("PTHCV_DETECTION is not set (tools/run-specs writes them)") end)
    return
  end
  local has_cv = xs.has_python("cv2, onnx, numpy")

  it("segmentation: out and aux through onnx.checker and cv2.dnn, within 1e-4 of pthcv's forward", function()
    if not has_cv then return pending("python3 with cv2, onnx and numpy is needed") end
    local jobs, names = {}, { "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50" }
    for _, name in ipairs(names) do
      local m, e = model(name)
      local x = pthcv.load_npy(dir .. "/" .. name .. "." .. e.images[1] .. ".input.npy")
      local path = support.tmpname(".onnx")
      local info = onnx.export(m, path, { input = x })
      local y = m(x)
      local want_outputs = y.aux and { "aux", "out" } or { "out" }
      local got = {}
      for i, out in ipairs(info.outputs) do got[i] = out.name end
      assert.are.same(want_outputs, got, name .. ": output names")
      local case = { input = support.tmpname(".npy"), expected = {} }
      pthcv.save(case.input, x)
      for _, k in ipairs(want_outputs) do
        case.expected[k] = support.tmpname(".npy")
        pthcv.save(case.expected[k], y[k])
      end
      jobs[#jobs + 1] = { name = name, kind = "onnx", model = path, cases = { case } }
    end
    local results = xs.check(jobs)
    for _, name in ipairs(names) do xs.assert_close(results[name], name, 1e-4) end
  end)

  -- the whole detector at each opset, on each picture: pthcv's detections and torchvision's
  local function whole_detector(name, opsets)
    local ok, why = R.available()
    if not ok then return pending(why) end
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local m, e = model(name)
    local last -- onnxruntime's outputs and pthcv's on the last picture
    for i, img in ipairs(e.images) do
      local image = pthcv.load_npy(dir .. "/images/" .. img .. ".npy")
      local x = image:unsqueeze(1):contiguous()
      local path = support.tmpname(".onnx")
      local opset = opsets[i] or opsets[#opsets]
      local info = onnx.export(m, path, { input = x, opset = opset })
      assert.are.equal(opset, info.opset)
      assert.are.same({ "boxes", "labels", "scores" }, { info.outputs[1].name, info.outputs[2].name, info.outputs[3].name })
      checker(path)
      local got = ort.run(path, x)
      local want = m({ image })[1]
      local size = math.max(image.shape[2], image.shape[3])
      local what = name .. " " .. img
      assert.are.equal(want.scores.numel, got.scores.numel, what .. ": number of detections")
      assert.is_true(got.scores.numel > 10, what .. ": too few detections to tell")
      assert.are.same(want.labels:totable(), got.labels:totable(), what .. ": labels")
      local ds = max_abs(got.scores - want.scores)
      assert.is_true(ds <= 1e-4, string.format("%s: scores differ by %g", what, ds))
      local db = max_abs(got.boxes - want.boxes)
      assert.is_true(db <= 1e-3 * size, string.format("%s: boxes differ by %g pixels", what, db))
      print(string.format("# %s at opset %d: %d detections, onnxruntime - pthcv: scores %.2g, boxes %.2g px", what, opset,
                          got.scores.numel, ds, db))
      -- and torchvision's own (the fixture): torchvision ran the fixture's
      -- pictures as one batch, which GeneralizedRCNNTransform pads to a common
      -- size (the SSDs resize every picture to one size): one picture's
      -- detections are the batch's for the SSDs and one-picture fixtures only
      local base = dir .. "/" .. name .. "." .. img
      if #e.images == 1 or name:find("^ssd") then
        assert.are.same(pthcv.load_npy(base .. ".labels.npy"):totable(), got.labels:totable(), what .. ": torch's labels")
        assert.is_true(max_abs(got.scores - pthcv.load_npy(base .. ".scores.npy")) <= 1e-4, what .. ": torch's scores")
        assert.is_true(max_abs(got.boxes - pthcv.load_npy(base .. ".boxes.npy")) <= 1e-3 * size,
                       what .. ": torch's boxes")
      end
      os.remove(path)
      last = { got = got, want = want }
    end
    return last
  end

  it("ssdlite320_mobilenet_v3_large: the whole detector (opsets 11 and 17) in onnxruntime gives pthcv's and "
     .. "torchvision's detections", function() whole_detector("ssdlite320_mobilenet_v3_large", { 11, 17 }) end)

  it("ssdlite320_mobilenet_v3_large with torchvision's default options: onnxruntime's 300 detections are pthcv's, "
     .. "in order", function()
    local ok, why = R.available()
    if not ok then return pending(why) end
    local m = pthcv.models.detection.ssdlite320_mobilenet_v3_large()
    m:load_state_dict(pthcv.state_dict(dir .. "/ssdlite320_mobilenet_v3_large.pth"))
    m:eval()
    local image = pthcv.load_npy(dir .. "/images/portrait.npy")
    local x = image:unsqueeze(1):contiguous()
    local path = support.tmpname(".onnx")
    onnx.export(m, path, { input = x })
    local got, want = ort.run(path, x), m({ image })[1]
    assert.are.equal(300, want.scores.numel)
    assert.are.equal(300, got.scores.numel)
    assert.are.same(want.labels:totable(), got.labels:totable())
    assert.is_true(max_abs(got.scores - want.scores) <= 1e-4)
    assert.is_true(max_abs(got.boxes - want.boxes) <= 1e-3 * 640)
    os.remove(path)
  end)

  it("the detector at opsets 12, 14, 15 and 16 passes onnx.checker with full_check", function()
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local m = model("ssdlite320_mobilenet_v3_large")
    for _, opset in ipairs { 12, 14, 15, 16 } do
      local path = support.tmpname(".onnx")
      assert.are.equal(opset, onnx.export(m, path, { input = { 1, 3, 96, 128 }, opset = opset }).opset)
      checker(path)
      os.remove(path)
    end
  end)

  it("ssd300_vgg16: the whole detector (opset 13, its L2Norm as ops) in onnxruntime gives pthcv's and "
     .. "torchvision's detections", function() whole_detector("ssd300_vgg16", { 13 }) end)

  it("fasterrcnn_mobilenet_v3_large_320_fpn: the whole detector (opsets 11 and 16: RPN, RoiAlign per FPN level "
     .. "(output_half_pixel at 16), box head, NMS) in onnxruntime gives pthcv's detections", function()
    whole_detector("fasterrcnn_mobilenet_v3_large_320_fpn", { 11, 16 })
  end)

  it("maskrcnn_resnet50_fpn: the whole detector (opset 17) in onnxruntime gives pthcv's and torchvision's "
     .. "detections; its 28x28 masks pasted are pthcv's on 99.9% of the pixels", function()
    local last = whole_detector("maskrcnn_resnet50_fpn", { 17 })
    if not last then return end
    local got, want = last.got, last.want
    local image = pthcv.load_npy(dir .. "/images/street.npy")
    assert.are.same({ got.scores.numel, 1, 28, 28 }, got.masks.shape)
    local size = { image.shape[2], image.shape[3] }
    local pasted = pthcv.ops.paste_masks_in_image(got.masks, got.boxes, size, 1):contiguous()
    local a, b = pasted:data(), want.masks:contiguous():data()
    local same = 0
    for i = 0, pasted.numel - 1 do if (a[i] > 0.5) == (b[i] > 0.5) then same = same + 1 end end
    print(string.format("# maskrcnn_resnet50_fpn: the pasted masks agree on %.5f of the pixels", same / pasted.numel))
    assert.is_true(same / pasted.numel >= 0.999)
  end)

  it("keypointrcnn_resnet50_fpn: the whole detector (opset 17: the keypoint head on the detections, a Scan of "
     .. "cubic Resize and ArgMax) in onnxruntime gives pthcv's and torchvision's detections, keypoints within 1e-3 of "
     .. "the image's size and keypoint scores within 1e-4", function()
    local name = "keypointrcnn_resnet50_fpn"
    local last = whole_detector(name, { 17 })
    if not last then return end
    local got, want = last.got, last.want
    local base = dir .. "/" .. name .. "." .. manifest[name].images[1]
    local image = pthcv.load_npy(dir .. "/images/" .. manifest[name].images[1] .. ".npy")
    local size = math.max(image.shape[2], image.shape[3])
    assert.are.same({ got.scores.numel, 17, 3 }, got.keypoints.shape)
    assert.are.same({ got.scores.numel, 17 }, got.keypoints_scores.shape)
    for who, w in pairs { pthcv = want, torchvision = { keypoints = pthcv.load_npy(base .. ".keypoints.npy"),
                                                         keypoints_scores = pthcv.load_npy(base .. ".keypoints_scores.npy") } } do
      local dk, ds = max_abs(got.keypoints - w.keypoints), max_abs(got.keypoints_scores - w.keypoints_scores)
      print(string.format("# %s: onnxruntime - %s: keypoints %.2g px, keypoint scores %.2g", name, who, dk, ds))
      assert.is_true(dk <= 1e-3 * size, string.format("%s: keypoints differ from %s's by %g pixels", name, who, dk))
      assert.is_true(ds <= 1e-4, string.format("%s: keypoint scores differ from %s's by %g", name, who, ds))
    end
  end)

  -- the keypoint step alone: heatmaps, boxes and rows in (any number),
  -- export.keypoints's nodes (ops_keypoint.lua), keypoints and scores out,
  -- against pthcv's kernel; and with no detection
  it("the keypoint step alone (opsets 11 and 17): onnxruntime's cubic Resize and ArgMax find pthcv's keypoints on "
     .. "boxes from 0.3 to 640 pixels a side, scores within 1e-4; no detection gives empty outputs", function()
    local ok, why = R.available()
    if not ok then return pending(why) end
    local graph = require "pthcv.export.onnx.graph"
    local proto = require "pthcv.export.onnx.proto"
    local handler = require("pthcv.export.onnx.ops").handlers["export.keypoints"]
    local keypoint = require "pthcv.export.onnx.ops_keypoint"
    local sides = { { 0.4, 0.3 }, { 1, 1 }, { 1.5, 2.2 }, { 3.7, 55.1 }, { 56, 56 }, { 100.25, 37.5 },
                    { 333.3, 250.9 }, { 639.9, 480.2 }, { 7, 8.01 }, { 112, 168 }, { 20.5, 0.9 }, { 64, 64 } }
    local n, rows, b = #sides, {}, {}
    for i, s in ipairs(sides) do
      local x, y = (i * 7.3) % 50, (i * 11.9) % 50
      b[i], rows[i] = { x, y, x + s[1], y + s[2] }, n - i -- the heatmaps' rows in reverse (as grouped by level)
    end
    local heatmaps, boxes = pthcv.randn({ n, 17, 56, 56 }, { seed = 3 }), pthcv.tensor(b)
    rows = pthcv.tensor(rows, "int64")
    local kp, ks = keypoint.impl(nil, heatmaps, boxes, rows)
    local F32 = proto.DTYPE.float32
    for _, opset in ipairs { 11, 17 } do
      local g = graph.new()
      g.names[heatmaps], g.names[boxes], g.names[rows] = "heatmaps", "boxes", "rows"
      handler(g, { heatmaps, boxes, rows }, { kp, ks })
      local nodes, inits = g:to_proto()
      local pb = proto.model({ name = "keypoints", nodes = nodes, initializers = inits,
                               inputs = { proto.value_info("heatmaps", F32, { "n", 17, 56, 56 }),
                                          proto.value_info("boxes", F32, { "n", 4 }),
                                          proto.value_info("rows", proto.DTYPE.int64, { "n" }) },
                               outputs = { proto.value_info(g.names[kp], F32, { "n", 17, 3 }),
                                           proto.value_info(g.names[ks], F32, { "n", 17 }) } },
                             { ir_version = onnx.IR_VERSIONS[opset], opset = opset })
      local path = support.tmpname(".onnx")
      pb:write_file(path)
      if xs.has_python("onnx") then checker(path) end
      local none = { pthcv.zeros({ 0, 17, 56, 56 }), pthcv.zeros({ 0, 4 }), pthcv.zeros({ 0 }, "int64") }
      local res = R.run(path, { { heatmaps, boxes, rows }, none })
      local got = res[1]
      local dk, ds = max_abs(got[1].value - kp), max_abs(got[2].value - ks)
      print(string.format("# the keypoint step at opset %d: onnxruntime - pthcv: keypoints %.2g px, scores %.2g",
                          opset, dk, ds))
      assert.is_true(dk <= 1e-4, string.format("opset %d: keypoints differ by %g pixels", opset, dk))
      assert.is_true(ds <= 1e-4, string.format("opset %d: keypoint scores differ by %g", opset, ds))
      assert.are.same({ 0, 17, 3 }, res[2][1].value.shape)
      assert.are.same({ 0, 17 }, res[2][2].value.shape)
      os.remove(path)
    end
  end)

  it("retinanet_resnet50_fpn_v2: the whole detector (opset 11, GroupNorm as ops) in onnxruntime gives pthcv's and "
     .. "torchvision's detections", function() whole_detector("retinanet_resnet50_fpn_v2", { 11 }) end)

  it("fcos_resnet50_fpn: the whole detector (opset 17) in onnxruntime gives pthcv's and torchvision's detections",
     function() whole_detector("fcos_resnet50_fpn", { 17 }) end)

  it("ssdlite --no-postprocess: the head's outputs through cv2.dnn, the default boxes beside", function()
    if not has_cv then return pending("python3 with cv2, onnx and numpy is needed") end
    local name = "ssdlite320_mobilenet_v3_large"
    local m = model(name)
    local image = pthcv.load_npy(dir .. "/images/street.npy")
    local x = image:unsqueeze(1):contiguous()
    local path = support.tmpname(".onnx")
    local info = onnx.export(m, path, { input = x, no_postprocess = true })
    assert.are.same({ 3234, 4 }, info.anchors.shape)
    local y = det_export.wrap(m, x, true)(x)
    local case = { input = support.tmpname(".npy"), expected = {} }
    pthcv.save(case.input, x)
    for _, k in ipairs { "bbox_regression", "cls_logits" } do
      case.expected[k] = support.tmpname(".npy")
      pthcv.save(case.expected[k], y[k])
    end
    local r = xs.check({ { name = name, kind = "onnx", model = path, cases = { case } } })
    xs.assert_close(r[name], name .. " --no-postprocess", 1e-4)
  end)

  it("retinanet and fcos --no-postprocess: the head's outputs, the anchors beside", function()
    for _, name in ipairs { "retinanet_resnet50_fpn", "fcos_resnet50_fpn" } do
      local m = model(name)
      local x = pthcv.rand({ 1, 3, 64, 96 }, { seed = 2 })
      local _, info = onnx.build(m, { input = x, no_postprocess = true })
      local names = {}
      for i, out in ipairs(info.outputs) do names[i] = out.name end
      local want = name == "fcos_resnet50_fpn" and { "bbox_ctrness", "bbox_regression", "cls_logits" }
                   or { "bbox_regression", "cls_logits" }
      assert.are.same(want, names, name)
      assert.are.same({ info.outputs[1].shape[2], 4 }, info.anchors.shape, name)
    end
  end)

  it("refuses what it cannot write, by name", function()
    local m = model("ssdlite320_mobilenet_v3_large")
    local x = pthcv.rand({ 1, 3, 64, 80 }, { seed = 1 })
    local ok, err = pcall(onnx.build, m, { input = x, opset = 10 })
    assert.is_false(ok)
    assert.matches("GatherND, which is opset 11", err, 1, true)
    local f = pthcv.models.detection.keypointrcnn_resnet50_fpn()
    ok, err = pcall(onnx.build, f, { input = x, no_postprocess = true })
    assert.is_false(ok)
    assert.matches("KeypointRCNN: --no-postprocess: the box head runs on the region proposals", err, 1, true)
    ok, err = pcall(onnx.build, model("fasterrcnn_mobilenet_v3_large_320_fpn"), { input = x, no_postprocess = true })
    assert.is_false(ok)
    assert.matches("FasterRCNN: --no-postprocess: the box head runs on the region proposals", err, 1, true)
    local code, _, e = support.pthcv("export", "--model", "ssdlite320_mobilenet_v3_large", "--weights",
                                     dir .. "/ssdlite320_mobilenet_v3_large.pth", "--shape", "1x3x64x64",
                                     "-o", support.tmpname(".prototxt"))
    assert.are.equal(1, code)
    assert.matches("SSD: Caffe has no form of a detector's post-processing (NMS)", e, 1, true)
  end)
end)
