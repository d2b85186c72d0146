-- spec/onnx_detector_options_spec.lua: --half and --dynamic for the whole
-- detectors (lua/pthcv/export/onnx/ops_detection.lua, detector_dynamic.lua,
-- detector_check.lua) on the detection fixtures (PTHCV_DETECTION,
-- spec/fixtures/make_detection_fixtures.py), the smallest detectors only:
--   --half (ssdlite320_mobilenet_v3_large at opsets 11 and 17,
--     fasterrcnn_mobilenet_v3_large_320_fpn at 13): onnx.checker, then
--     onnxruntime (npm's onnxruntime-node, spec/onnx_runtime.lua) against
--     pthcv's float16-weight model (labels equal, scores within 1e-4, boxes
--     within 1e-3 of the picture's size) and against pthcv's float32 model
--     within float16's tolerances (HALF below);
--   --half --dynamic height,width (ssdlite): one file at two sizes against
--     the float32 model within float16's tolerances;
--   --dynamic height,width (ssdlite): traced on one picture, checked by
--     pthcv's evaluator on a second (the export's probe), then one file in
--     onnxruntime at three sizes against pthcv's detections at each;
--   --no-postprocess --dynamic height,width (ssdlite): the head in cv2.dnn at
--     two sizes, within 1e-4 of pthcv's;
--   --dynamic height,width (fcos_resnet50_fpn at min_size 160): traced on
--     one picture and at a probe, one file in onnxruntime at four sizes
--     against pthcv's detections at each;
--   --dynamic height,width (fasterrcnn_mobilenet_v3_large_320_fpn at opsets
--     11 and 17; maskrcnn_resnet50_fpn and keypointrcnn_resnet50_fpn at
--     min_size 160, 20 detections, opset 17): one file in onnxruntime at
--     three or four sizes against pthcv's detections (and masks, keypoints)
--     at each;
--   the refusals: RetinaNet's --dynamic --no-postprocess, a dynamic batch.
local support = require "support"
local xs = require "export_support"
local R = require "onnx_runtime"
local pthcv = require "pthcv"
local json = require "dkjson"
local onnx = require "pthcv.export.onnx"
local check = require "pthcv.export.onnx.detector_check"

local dir = os.getenv("PTHCV_DETECTION")
local manifest = dir and json.decode(assert(support.read_file(dir .. "/manifest.json")))

-- float16 weights against float32 ones: each weight moves by up to 2^-11
-- of itself, and the fixtures' networks (trained-like statistics) carry
-- that to scores that move by up to 0.021 (ssdlite, street) and boxes by
-- up to 1.4 px of 640. Detections within 0.05 of the threshold may cross it
-- and are not compared; the others keep their labels.
local HALF = { score = 0.05, box = 1e-2, clear = 0.05 }

local function model(name)
  local e = manifest[name]
  local m = pthcv.models.detection[name](e.options)
  m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
  m:eval()
  return m, e
end

local checker = xs.onnx_checker

local max_abs = xs.max_abs

-- onnxruntime's detections of the file at path on each picture [3, H, W]
local function ort_detections(path, pictures)
  local cases = {}
  for i, p in ipairs(pictures) do cases[i] = { p:unsqueeze(1):contiguous() } end
  local out = {}
  for i, res in ipairs(R.run(path, cases)) do
    out[i] = {}
    for _, o in ipairs(res) do out[i][o.name] = o.value end
  end
  return out
end

-- got and want the same detections (the evaluator's tolerances, check.compare's)
local function assert_same(got, want, size, what)
  assert.are.equal(want.scores.numel, got.scores.numel, what .. ": number of detections")
  assert.is_true(got.scores.numel >= 5, what .. ": too few detections to tell")
  assert.are.same(want.labels:totable(), got.labels:totable(), what .. ": labels")
  local ds, db = max_abs(got.scores - want.scores), max_abs(got.boxes - want.boxes)
  assert.is_true(ds <= 1e-4, string.format("%s: scores differ by %g", what, ds))
  assert.is_true(db <= 1e-3 * math.max(size[1], size[2]), string.format("%s: boxes differ by %g px", what, db))
  return ds, db
end

local function picture(name) return pthcv.load_npy(dir .. "/images/" .. name .. ".npy") end

describe("ONNX export of whole detectors with --half and --dynamic", function()
  if not dir then
    it("needs the detection fixtures", function() pending("PTHCV_DETECTION is not set (tools/run-specs writes them)") end)
    return
  end

  -- name's --half file at each opset on the street picture, in onnxruntime
  local function half_detector(name, opsets, thresh)
    local ok, why = R.available()
    if not ok then return pending(why) end
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local image = picture("street")
    local size = { image.shape[2], image.shape[3] }
    local m32 = model(name)
    local want32 = m32({ image })[1]
    for _, opset in ipairs(opsets) do
      local m = model(name)
      local path = support.tmpname(".onnx")
      local info = onnx.export(m, path, { input = image, opset = opset, half = true })
      assert.is_true(info.half > 50 and info.float > 0, name .. ": float16 and float32 weights")
      checker(path)
      local got = ort_detections(path, { image })[1]
      local what = string.format("%s --half at opset %d", name, opset)
      local ds, db = assert_same(got, m({ image })[1], size, what .. " against pthcv's float16 model")
      local worst = check.match(got, want32, size, { thresh = thresh, clear = HALF.clear, score = HALF.score,
                                                     box = HALF.box })
      assert.is_true(worst.matched >= 5, what .. ": too few detections clear of the threshold")
      print(string.format("# %s: %d float16, %d float32 weights, %d bytes; onnxruntime - pthcv float16: scores %.2g, "
                          .. "boxes %.2g px; - pthcv float32: %d detections matched, scores %.2g, boxes %.2g px",
                          what, info.half, info.float, info.bytes, ds, db, worst.matched, worst.score, worst.box))
      os.remove(path)
    end
  end

  it("ssdlite320_mobilenet_v3_large --half (opsets 11 and 17): onnxruntime gives pthcv's float16 model's "
     .. "detections, and the float32 model's within float16's tolerances", function()
    half_detector("ssdlite320_mobilenet_v3_large", { 11, 17 }, 0.3)
  end)

  it("ssdlite320_mobilenet_v3_large --half --dynamic height,width (opset 17): one file in onnxruntime at 427x640 "
     .. "and 480x360 gives the float32 model's detections within float16's tolerances", function()
    local ok, why = R.available()
    if not ok then return pending(why) end
    local name = "ssdlite320_mobilenet_v3_large"
    local m32, m = model(name), model(name)
    local pictures = { picture("street"), picture("portrait") }
    local path = support.tmpname(".onnx")
    local info = onnx.export(m, path, { input = pictures[1], opset = 17, half = true, dynamic = { "height", "width" },
                                        probe = pictures[2] })
    assert.are.same({ 1, 3, "height", "width" }, info.inputs[1].shape)
    for i, got in ipairs(ort_detections(path, pictures)) do
      local p = pictures[i]
      local size = { p.shape[2], p.shape[3] }
      local worst = check.match(got, m32({ p })[1], size, { thresh = 0.3, clear = HALF.clear, score = HALF.score,
                                                            box = HALF.box })
      assert.is_true(worst.matched >= 5, "too few detections clear of the threshold")
      print(string.format("# ssdlite --half --dynamic at %dx%d - pthcv float32: %d detections matched, scores %.2g, "
                          .. "boxes %.2g px", size[1], size[2], worst.matched, worst.score, worst.box))
    end
    os.remove(path)
  end)

  it("fasterrcnn_mobilenet_v3_large_320_fpn --half (opset 13): onnxruntime gives pthcv's float16 model's detections, "
     .. "and the float32 model's within float16's tolerances", function()
    half_detector("fasterrcnn_mobilenet_v3_large_320_fpn", { 13 }, 0.3)
  end)

  it("ssdlite320_mobilenet_v3_large --dynamic height,width: traced at 427x640, checked at 480x360 by pthcv's "
     .. "evaluator, one file in onnxruntime at 427x640, 480x360 and 256x352 gives pthcv's detections at each", function()
    local ok, why = R.available()
    if not ok then return pending(why) end
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local m = model("ssdlite320_mobilenet_v3_large")
    local street, portrait = picture("street"), picture("portrait")
    local small = pthcv.nn.F.interpolate(street:unsqueeze(1), { size = { 256, 352 }, mode = "bilinear",
                                                                 align_corners = false }):squeeze(1):contiguous()
    local path = support.tmpname(".onnx")
    local info = onnx.export(m, path, { input = street, opset = 13, dynamic = { "height", "width" }, probe = portrait })
    assert.are.same({ 1, 3, "height", "width" }, info.inputs[1].shape)
    assert.are.same({ 1, 3, 480, 360 }, info.probe_shape)
    checker(path)
    local pictures = { street, portrait, small }
    for i, got in ipairs(ort_detections(path, pictures)) do
      local p = pictures[i]
      local size = { p.shape[2], p.shape[3] }
      local what = string.format("ssdlite --dynamic at %dx%d", size[1], size[2])
      local ds, db = assert_same(got, m({ p })[1], size, what)
      print(string.format("# %s: %d detections, onnxruntime - pthcv: scores %.2g, boxes %.2g px", what,
                          got.scores.numel, ds, db))
    end
    os.remove(path)
  end)

  it("ssdlite --no-postprocess --dynamic height,width: traced at 240x320, cv2.dnn runs the head at 427x640 and "
     .. "480x360 within 1e-4 of pthcv's", function()
    if not xs.has_python("cv2, onnx, numpy") then return pending("python3 with cv2, onnx and numpy is needed") end
    local det_export = require "pthcv.export.onnx.ops_detection"
    local name = "ssdlite320_mobilenet_v3_large"
    local m = model(name)
    local path = support.tmpname(".onnx")
    onnx.export(m, path, { input = { 1, 3, 240, 320 }, dynamic = { "height", "width" }, no_postprocess = true,
                           probe = picture("portrait") })
    local cases = {}
    for i, p in ipairs { picture("street"), picture("portrait") } do
      local x = p:unsqueeze(1):contiguous()
      local y = det_export.wrap(m, x, true)(x)
      cases[i] = { input = support.tmpname(".npy"), expected = {} }
      pthcv.save(cases[i].input, x)
      for _, k in ipairs { "bbox_regression", "cls_logits" } do
        cases[i].expected[k] = support.tmpname(".npy")
        pthcv.save(cases[i].expected[k], y[k])
      end
    end
    local r = xs.check({ { name = name, kind = "onnx", model = path, cases = cases } })
    xs.assert_close(r[name], name .. " --no-postprocess --dynamic", 1e-4)
  end)

  it("fcos_resnet50_fpn --dynamic height,width (min_size 160, max_size 320, score_thresh 0.15): traced at 427x640, "
     .. "checked at its probe, one file in onnxruntime at 427x640, 480x360, 256x352 and 301x517 gives pthcv's "
     .. "detections at each", function()
    local ok, why = R.available()
    if not ok then return pending(why) end
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local m = pthcv.models.detection.fcos_resnet50_fpn({ score_thresh = 0.15, min_size = 160, max_size = 320 })
    m:load_state_dict(pthcv.state_dict(dir .. "/fcos_resnet50_fpn.pth"))
    m:eval()
    local street = picture("street")
    local function resized(h, w)
      return pthcv.nn.F.interpolate(street:unsqueeze(1), { size = { h, w }, mode = "bilinear", align_corners = false })
        :squeeze(1):contiguous()
    end
    local path = support.tmpname(".onnx")
    local info = onnx.export(m, path, { input = street, opset = 11, dynamic = { "height", "width" } })
    assert.are.same({ 1, 3, "height", "width" }, info.inputs[1].shape)
    assert.are.same({ 1, 3, 213, 960 }, info.probe_shape) -- the first probe whose feature maps all differ
    checker(path)
    local pictures = { street, picture("portrait"), resized(256, 352), resized(301, 517) }
    for i, got in ipairs(ort_detections(path, pictures)) do
      local p = pictures[i]
      local size = { p.shape[2], p.shape[3] }
      local what = string.format("fcos --dynamic at %dx%d", size[1], size[2])
      local want = m({ p })[1]
      assert.is_true(want.scores.numel >= 10, what .. ": too few detections to tell")
      check.compare(got, want, size) -- labels, scores within 1e-4, boxes 1e-3 of the size (near-equal scores in either order)
      print(string.format("# %s: %d detections, onnxruntime - pthcv: scores %.2g", what, got.scores.numel,
                          max_abs(got.scores - want.scores)))
    end
    os.remove(path)
  end)

  -- name (options: the model's) exported with --dynamic height,width at
  -- opset, traced on the street picture and checked at its probe by pthcv's
  -- evaluator; the file through onnx.checker, then in onnxruntime at each
  -- of sizes (the street picture resized; the portrait) against pthcv's
  -- detections: check(got, want, size, what) compares the rest
  local function rcnn_dynamic(name, options, opset, sizes, check_more)
    local ok, why = R.available()
    if not ok then return pending(why) end
    if not xs.has_python("onnx") then return pending("python3 with onnx is needed for onnx.checker") end
    local m = pthcv.models.detection[name](options)
    m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
    m:eval()
    local street = picture("street")
    local pictures = { street }
    for i, s in ipairs(sizes) do
      pictures[i + 1] = s == "portrait" and picture("portrait")
        or pthcv.nn.F.interpolate(street:unsqueeze(1), { size = s, mode = "bilinear", align_corners = false })
             :squeeze(1):contiguous()
    end
    local path = support.tmpname(".onnx")
    local info = onnx.export(m, path, { input = street, opset = opset, dynamic = { "height", "width" } })
    assert.are.same({ 1, 3, "height", "width" }, info.inputs[1].shape)
    checker(path)
    for i, got in ipairs(ort_detections(path, pictures)) do
      local p = pictures[i]
      local size = { p.shape[2], p.shape[3] }
      local what = string.format("%s --dynamic (opset %d) at %dx%d", name, opset, size[1], size[2])
      local want = m({ p })[1]
      local ds, db = assert_same(got, want, size, what)
      print(string.format("# %s: %d detections, onnxruntime - pthcv: scores %.2g, boxes %.2g px%s", what,
                          got.scores.numel, ds, db, check_more and check_more(got, want, size, what) or ""))
    end
    os.remove(path)
    return info
  end

  -- (at 40x640 the picture keeps its size, padded to 64x640: the pooler's
  -- scale, infer_scale's 2^round(log2(2 / 40)), is 1/16, at the others 1/32)
  it("fasterrcnn_mobilenet_v3_large_320_fpn --dynamic height,width (opsets 11 and 17): traced at 427x640, checked "
     .. "at its probe, one file in onnxruntime at 427x640, 480x360, 256x352, 301x517 and 40x640 (the pooler's scale "
     .. "1/16, not the traced 1/32) gives pthcv's detections at each", function()
    local name = "fasterrcnn_mobilenet_v3_large_320_fpn"
    for _, opset in ipairs { 11, 17 } do
      local sizes = { "portrait", { 256, 352 }, { 301, 517 }, { 40, 640 } }
      local info = rcnn_dynamic(name, manifest[name].options, opset, sizes)
      if info then assert.are.same({ 1, 3, 213, 960 }, info.probe_shape) end
    end
  end)

  -- Mask and Keypoint R-CNN at min_size 160 (the fixtures' 320 halved: the
  -- ResNet-50 runs at a quarter of the pixels) and 20 detections (the
  -- mask and keypoint heads, and the evaluator's Scan, run per detection),
  -- for the spec's time
  local SMALL = { box_score_thresh = 0.3, min_size = 160, max_size = 320, box_detections_per_img = 20 }

  it("maskrcnn_resnet50_fpn --dynamic height,width (opset 17, min_size 160, 20 detections): one file in "
     .. "onnxruntime at 427x640, 480x360 and 256x352 gives pthcv's detections, its 28x28 masks pasted pthcv's on "
     .. "99.9% of the pixels", function()
    rcnn_dynamic("maskrcnn_resnet50_fpn", SMALL, 17, { "portrait", { 256, 352 } }, function(got, want, size)
      assert.are.same({ got.scores.numel, 1, 28, 28 }, got.masks.shape)
      local pasted = pthcv.ops.paste_masks_in_image(got.masks, got.boxes, size, 1):contiguous()
      local a, b = pasted:data(), want.masks:contiguous():data()
      local same = 0
      for i = 0, pasted.numel - 1 do if (a[i] > 0.5) == (b[i] > 0.5) then same = same + 1 end end
      assert.is_true(same / pasted.numel >= 0.999, "the pasted masks agree on " .. same / pasted.numel)
      return string.format(", pasted masks agree on %.5f of the pixels", same / pasted.numel)
    end)
  end)

  it("keypointrcnn_resnet50_fpn --dynamic height,width (opset 17, min_size 160, 20 detections): one file in "
     .. "onnxruntime at 427x640, 480x360 and 256x352 gives pthcv's detections, keypoints within 1e-3 of the "
     .. "picture's size and keypoint scores within 1e-4", function()
    rcnn_dynamic("keypointrcnn_resnet50_fpn", SMALL, 17, { "portrait", { 256, 352 } }, function(got, want, size, what)
      assert.are.same({ got.scores.numel, 17, 3 }, got.keypoints.shape)
      local dk, ds = max_abs(got.keypoints - want.keypoints), max_abs(got.keypoints_scores - want.keypoints_scores)
      assert.is_true(dk <= 1e-3 * math.max(size[1], size[2]), string.format("%s: keypoints differ by %g px", what, dk))
      assert.is_true(ds <= 1e-4, string.format("%s: keypoint scores differ by %g", what, ds))
      return string.format(", keypoints %.2g px, keypoint scores %.2g", dk, ds)
    end)
  end)

  it("refuses what it cannot write, by name", function()
    local x = pthcv.rand({ 1, 3, 64, 80 }, { seed = 1 })
    local ok, err = pcall(onnx.build, model("ssdlite320_mobilenet_v3_large"), { input = x, dynamic = { "batch" } })
    assert.is_false(ok)
    assert.matches("SSD: --dynamic: the batch stays 1 (a detector takes one picture)", err, 1, true)
    ok, err = pcall(onnx.build, model("ssdlite320_mobilenet_v3_large"), { input = x, dynamic = { "height" } })
    assert.is_false(ok)
    assert.matches("height and width are dynamic together", err, 1, true)
    ok, err = pcall(onnx.build, pthcv.models.detection.retinanet_resnet50_fpn(),
                    { input = x, dynamic = { "height", "width" }, no_postprocess = true })
    assert.is_false(ok)
    assert.matches("RetinaNet: --dynamic --no-postprocess: the anchors written beside the file are the traced size's",
                   err, 1, true)
    ok, err = pcall(onnx.build, pthcv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(),
                    { input = x, dynamic = { "height", "width" }, no_postprocess = true })
    assert.is_false(ok)
    assert.matches("FasterRCNN: --no-postprocess: the box head runs on the region proposals", err, 1, true)
    ok, err = pcall(onnx.build, pthcv.models.detection.fasterrcnn_mobilenet_v3_large_320_fpn(),
                    { input = x, dynamic = { "height", "width" }, opset = 10 })
    assert.is_false(ok)
    assert.matches("FasterRCNN at opset 10: the post-processing compares int64 labels with Equal, which is opset 11",
                   err, 1, true)
  end)
end)
