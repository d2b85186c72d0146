-- spec/detection_spec.lua: pthcv.models.detection and .segmentation against
-- torchvision 0.14, model by model. Runs when tools/run-specs wrote the
-- fixtures (PTHCV_DETECTION, from spec/fixtures/make_detection_fixtures.py;
-- `make test-large` adds PTHCV_DETECTION_LARGE): each model is built with
-- the fixture's options, loads torchvision's state_dict strictly, and on
-- the same pictures gives
--   detection: as many detections, the same labels, scores within 1e-4,
--     boxes (and keypoints) within 1e-3 of the picture's size, masks
--     (> 0.5) equal on 99.9% of pixels;
--   segmentation: the same argmax on 99.9% of pixels, logits within 1e-4
--     of their magnitude (a 16 x 16 corner).
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local now = require "pthcv.nn.clock"

local dir = os.getenv("PTHCV_DETECTION")
local large = os.getenv("PTHCV_DETECTION_LARGE")

local DETECTION = {
  "ssdlite320_mobilenet_v3_large", "fasterrcnn_mobilenet_v3_large_320_fpn", "ssd300_vgg16",
  "fasterrcnn_mobilenet_v3_large_fpn", "fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2",
  "retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn", "maskrcnn_resnet50_fpn",
  "maskrcnn_resnet50_fpn_v2", "keypointrcnn_resnet50_fpn",
}
local SEGMENTATION = {
  "lraspp_mobilenet_v3_large", "deeplabv3_mobilenet_v3_large", "fcn_resnet50", "fcn_resnet101",
  "deeplabv3_resnet50", "deeplabv3_resnet101",
}

-- Under the sanitizers (make sanitize), one model of each backbone and head
-- runs; each of these repeats the kernels of the models named beside it at
-- ASan's cost (all 18 took 304 s under ASan on the 2026-12-01 VM, these
-- six 118 s). make test runs them all.
local SANITIZE_COVERED_BY = {
  fasterrcnn_mobilenet_v3_large_fpn = "fasterrcnn_mobilenet_v3_large_320_fpn",
  fasterrcnn_resnet50_fpn = "maskrcnn_resnet50_fpn",
  maskrcnn_resnet50_fpn_v2 = "fasterrcnn_resnet50_fpn_v2 and maskrcnn_resnet50_fpn",
  fcn_resnet101 = "fcn_resnet50",
  deeplabv3_resnet50 = "fcn_resnet50 and deeplabv3_mobilenet_v3_large",
  deeplabv3_resnet101 = "fcn_resnet50 and deeplabv3_mobilenet_v3_large",
}
local sanitize = os.getenv("PTHCV_SANITIZE") == "1"

local function max_abs(t) return math.max(t:max(), -t:min()) end

-- fraction of equal values of two tensors of one shape (after fn on each value)
local function agreement(a, b, fn)
  local x, y = a:contiguous(), b:contiguous()
  local p, q = x:data(), y:data()
  local same = 0
  for i = 0, x.numel - 1 do if fn(p[i]) == fn(q[i]) then same = same + 1 end end
  return same / math.max(x.numel, 1)
end

-- argmax over dim 2 of [1, C, H, W] as an int64 [H, W]
local function argmax_channels(t)
  local c = t:contiguous()
  local C, H, W = c.shape[2], c.shape[3], c.shape[4]
  local out = pthcv.zeros({ H, W }, "int64")
  local p, o = c:data(), out:data()
  for i = 0, H * W - 1 do
    local best, bi = p[i], 0
    for k = 1, C - 1 do
      local v = p[k * H * W + i]
      if v > best then best, bi = v, k end
    end
    o[i] = bi
  end
  return out
end

-- pthcv.segment's class map (C) against the argmax above and softmax in double;
-- low (the model's logits before its last upsampling): the map made with
-- that upsampling is the same
local function check_class_map(logits, argmax, low)
  local class_map = require("pthcv.image.detect").class_map
  local classes, scores = class_map(logits)
  if low then
    local c2, s2 = class_map(low, logits.shape[3], logits.shape[4])
    assert.are.equal(1.0, agreement(classes, c2, tonumber), "class_map resizing: the classes")
    assert.are.equal(0, max_abs(scores - s2), "class_map resizing: the probabilities")
  end
  assert.are.equal(1.0, agreement(classes, argmax, tonumber), "class_map: the argmax")
  local c = logits:contiguous()
  local C, plane = c.shape[2], c.shape[3] * c.shape[4]
  local p, cp, sp, worst = c:data(), classes:data(), scores:data(), 0
  for i = 0, plane - 1, 7 do
    local sum = 0
    for k = 0, C - 1 do sum = sum + math.exp(p[k * plane + i] - p[cp[i] * plane + i]) end
    worst = math.max(worst, math.abs(sp[i] - 1 / sum))
  end
  assert.is_true(worst <= 1e-6, "class_map: the probabilities differ by " .. worst)
end

local function check_detections(key, img, got, base, size)
  local function want(field) return pthcv.load_npy(base .. "." .. field .. ".npy") end
  local scores = want("scores")
  assert.are.equal(scores.numel, got.scores.numel, key .. " " .. img .. ": number of detections")
  -- a comparison of nothing proves nothing: the generator spreads the
  -- heads' scores (SPREAD) so that every picture gets some
  assert.is_true(scores.numel >= 5, key .. " " .. img .. ": the fixture has " .. scores.numel
                 .. " detections, too few to compare (make_detection_fixtures.py's SPREAD)")
  assert.are.same(want("labels"):totable(), got.labels:totable(), key .. " " .. img .. ": labels")
  local ds = max_abs(got.scores - scores)
  assert.is_true(ds <= 1e-4, string.format("%s %s: scores differ by %g", key, img, ds))
  local db = max_abs(got.boxes - want("boxes"))
  assert.is_true(db <= 1e-3 * size, string.format("%s %s: boxes differ by %g pixels", key, img, db))
  if got.masks then
    local a = agreement(got.masks, want("masks"), function(v) return v > 0.5 end)
    assert.is_true(a >= 0.999, string.format("%s %s: masks agree on %.5f of the pixels", key, img, a))
  end
  if got.keypoints then
    local dk = max_abs(got.keypoints - want("keypoints"))
    assert.is_true(dk <= 1e-3 * size, string.format("%s %s: keypoints differ by %g pixels", key, img, dk))
    local dks = max_abs(got.keypoints_scores - want("keypoints_scores"))
    local scale = math.max(max_abs(want("keypoints_scores")), 1)
    assert.is_true(dks <= 1e-4 * scale, string.format("%s %s: keypoint scores differ by %g", key, img, dks))
  end
  return ds, db
end

-- the model of a fixture, torchvision's state_dict loaded strictly, in eval mode
local function loaded(registry, fixtures, key, info)
  local m = registry.get(info.model, info.options)
  local r = m:load_state_dict(pthcv.state_dict(fixtures .. "/" .. key .. ".pth"))
  assert.are.same({}, r.missing_keys)
  assert.are.same({}, r.unexpected_keys)
  return m:eval()
end

local function run_detection(fixtures, key, info)
  local m = loaded(pthcv.models.detection, fixtures, key, info)
  local images = {}
  for i, img in ipairs(info.images) do images[i] = pthcv.load_npy(fixtures .. "/images/" .. img .. ".npy") end
  local out = m(images)
  assert.are.equal(#images, #out)
  local notes = {}
  for i, img in ipairs(info.images) do
    local size = math.max(images[i].shape[2], images[i].shape[3])
    local ds, db = check_detections(key, img, out[i], fixtures .. "/" .. key .. "." .. img, size)
    notes[#notes + 1] = string.format("%s %d dets, max|dscore| %.2g, max|dbox| %.2g px", img, out[i].scores.numel,
                                      ds or 0, db or 0)
  end
  return table.concat(notes, "; ")
end

local function run_segmentation(fixtures, key, info)
  local m = loaded(pthcv.models.segmentation, fixtures, key, info)
  local notes = {}
  for _, img in ipairs(info.images) do
    local base = fixtures .. "/" .. key .. "." .. img
    local out = m(pthcv.load_npy(base .. ".input.npy"))
    for _, field in ipairs({ "out", "aux" }) do
      if support.read_file(base .. "." .. field .. "_argmax.npy") then
        assert.is_not_nil(out[field], key .. ": no " .. field .. " output")
        local argmax = argmax_channels(out[field])
        local a = agreement(argmax, pthcv.load_npy(base .. "." .. field .. "_argmax.npy"), tonumber)
        check_class_map(out[field], argmax, field == "out" and m:logits(pthcv.load_npy(base .. ".input.npy")) or nil)
        assert.is_true(a >= 0.999, string.format("%s %s: %s argmax agrees on %.5f of the pixels", key, img, field, a))
        local crop = pthcv.load_npy(base .. "." .. field .. "_crop.npy")
        local d = max_abs(out[field]:narrow(3, 1, 16):narrow(4, 1, 16):squeeze(1) - crop)
        assert.is_true(d <= 1e-4 * max_abs(crop), string.format("%s %s: %s logits differ by %g", key, img, field, d))
        notes[#notes + 1] = string.format("%s %s argmax %.5f, max|dlogit| %.2g", img, field, a, d)
      else
        assert.is_nil(out[field], key .. ": unexpected " .. field .. " output")
      end
    end
  end
  return table.concat(notes, "; ")
end

local function parity(fixtures, names)
  local manifest = json.decode((assert(support.read_file(fixtures .. "/manifest.json"), "no manifest in " .. fixtures)))
  local function check(key)
    local info = assert(manifest[key], "no fixtures for " .. key)
    local t0 = now()
    local note = (info.kind == "detection" and run_detection or run_segmentation)(fixtures, key, info)
    print(string.format("# detection %-38s %.1fs %s", key, now() - t0, note))
    collectgarbage()
    collectgarbage()
  end
  for _, key in ipairs(names) do
    if sanitize and SANITIZE_COVERED_BY[key] then
      pending(key .. " under the sanitizers: its kernels run in " .. SANITIZE_COVERED_BY[key] .. " (make test runs it)")
    else
      it(key .. " matches torchvision", function() check(key) end)
    end
  end
end

describe("detection and segmentation models", function()
  it("builds every model without weights", function()
    for _, name in ipairs(DETECTION) do
      assert.is_true(pthcv.models.detection.get(name):num_parameters() > 0, name)
    end
    for _, name in ipairs(SEGMENTATION) do
      assert.is_true(pthcv.models.segmentation.get(name):num_parameters() > 0, name)
    end
  end)

  it("refuses unknown models and options by name", function()
    assert.has_error(function() pthcv.models.detection.get("yolo") end)
    assert.has_error(function() pthcv.models.detection.ssdlite320_mobilenet_v3_large { box_score_thresh = 0.5 } end,
      "pthcv: ssdlite320_mobilenet_v3_large: unknown option 'box_score_thresh' (known: detections_per_img, "
      .. "image_mean, image_std, iou_thresh, nms_thresh, num_classes, positive_fraction, score_thresh, topk_candidates)")
    assert.has_error(function() pthcv.models.segmentation.lraspp_mobilenet_v3_large { aux_loss = true } end)
  end)

  if not dir or dir == "" then
    pending("the torchvision parity fixtures (PTHCV_DETECTION) were not written (tools/run-specs writes them when torch and torchvision are installed, unless PTHCV_DETECTION=skip)")
    return
  end
  parity(dir, DETECTION)
  parity(dir, SEGMENTATION)
  if large and large ~= "" then parity(large, { "maskrcnn_resnet50_fpn@800" }) end
end)
