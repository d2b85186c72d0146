-- spec/cli_detect_spec.lua: `pthcv detect` and `pthcv segment` (cli/detect.lua
-- over pthcv.image.pipeline). With the detection fixtures (PTHCV_DETECTION,
-- spec/fixtures/make_detection_fixtures.py), the command's JSON on a
-- picture is torchvision's answer for it (the same tolerances as
-- detection_spec), its drawing is written, video runs frame by frame with
-- a status line and a drawn video; usage errors exit 2 and say why.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local dir = os.getenv("PTHCV_DETECTION")

local function lines_of(s)
  local out = {}
  for l in s:gmatch("[^\n]+") do out[#out + 1] = l end
  return out
end

describe("pthcv detect and segment: usage", function()
  it("are listed in pthcv --help and answer --help", function()
    local code, out = support.pthcv("--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("detect --model NAME --weights FILE", 1, true))
    assert.truthy(out:find("segment --model NAME --weights FILE", 1, true))
    code, out = support.pthcv("detect", "--help")
    assert.are.equal(0, code)
    assert.truthy(out:find("--score-thresh S", 1, true))
    assert.truthy(out:find("--camera N", 1, true))
  end)

  it("refuse unknown models, missing options and sources with exit 2", function()
    local code, _, err = support.pthcv("detect", "--model", "ssdlite", "--weights", "w.pth", "a.jpg")
    assert.are.equal(2, code)
    assert.truthy(err:find("pthcv: --model: 'ssdlite' is not a detection model (did you mean "
                           .. "ssdlite320_mobilenet_v3_large?)", 1, true), err)
    code, _, err = support.pthcv("segment", "--model", "ssdlite320_mobilenet_v3_large", "--weights", "w.pth", "a.jpg")
    assert.are.equal(2, code)
    assert.truthy(err:find("is not a segmentation model", 1, true), err)
    code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "a.jpg")
    assert.are.same({ 2, "pthcv: detection needs --weights FILE (see pthcv detect --help)\n" }, { code, err })
    code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "--weights", "w.pth")
    assert.are.same({ 2, "pthcv: give pictures, --video FILE or --camera N (see pthcv detect --help)\n" }, { code, err })
    code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "--weights", "w.pth", "a.jpg", "--camera", "0")
    assert.are.equal(2, code)
    assert.truthy(err:find("only one of them", 1, true), err)
    code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "--weights", "w.pth", "a.jpg",
                                 "--score-thresh", "high")
    assert.are.same({ 2, "pthcv: --score-thresh takes a number, got 'high' (see pthcv detect --help)\n" }, { code, err })
  end)

  it("name a missing weights file", function()
    local code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "--weights", "/nonexistent/w.pth", "a.jpg")
    assert.are.equal(1, code)
    assert.truthy(err:find("/nonexistent/w.pth", 1, true), err)
  end)
end)

describe("pthcv detect and segment on pictures and video", function()
  if not dir or dir == "" then
    it("need the detection fixtures", function()
      pending("the torchvision parity fixtures (PTHCV_DETECTION) were not written (tools/run-specs writes them when torch and torchvision are installed, unless PTHCV_DETECTION=skip)")
    end)
    return
  end
  local picture = dir .. "/images/street.png"
  local model = "ssdlite320_mobilenet_v3_large"
  local weights = dir .. "/" .. model .. ".pth"

  it("detect --json gives torchvision's detections above --score-thresh and draws them", function()
    local out_png = support.tmpname(".png")
    local code, out, err = support.pthcv("detect", "--model", model, "--weights", weights, picture,
                                         "--score-thresh", "0.3", "--json", "--draw", out_png)
    assert.are.equal(0, code, err)
    local recs = lines_of(out)
    assert.are.equal(1, #recs)
    local rec = json.decode(recs[1])
    assert.are.equal(picture, rec.image)
    assert.are.equal(out_png, rec.drawn)
    -- torchvision with score_thresh = 0.3 (make_detection_fixtures.py's options)
    local base = dir .. "/" .. model .. ".street."
    local scores, labels = pthcv.load_npy(base .. "scores.npy"), pthcv.load_npy(base .. "labels.npy")
    local boxes = pthcv.load_npy(base .. "boxes.npy")
    assert.is_true(scores.numel > 5, "torchvision's detections: " .. scores.numel)
    assert.are.equal(scores.numel, #rec.detections)
    local size = 640
    for i, d in ipairs(rec.detections) do
      assert.are.equal(labels:get(i), d.label)
      assert.is_true(math.abs(scores:get(i) - d.score) <= 1e-4, "score " .. i)
      for k = 1, 4 do assert.is_true(math.abs(boxes:get(i, k) - d.box[k]) <= 1e-3 * size, "box " .. i) end
      assert.are.equal(require("pthcv.image.detection_labels").coco[d.label], d.name)
    end
    local drawn = pthcv.image.read(out_png)
    local img = pthcv.image.read(picture)
    assert.are.same(img.shape, drawn.shape)
    assert.is_true((drawn:float() - img:float()):abs():max() > 100, "nothing drawn")
    os.remove(out_png)
  end)

  it("detect prints one line per detection without --json", function()
    local code, out = support.pthcv("detect", "--model", model, "--weights", weights, picture, "--score-thresh", "0.5")
    assert.are.equal(0, code)
    local l = lines_of(out)
    assert.are.equal(picture, l[1])
    local n = pthcv.load_npy(dir .. "/" .. model .. ".street.scores.npy")
    local above = 0
    for i = 1, n.numel do if n:get(i) >= 0.5 then above = above + 1 end end
    assert.are.equal(above + 1, #l)
    assert.truthy(l[2]:match("^  %S.- 0%.%d%d%d%d  %(%d+%.%d, %d+%.%d%) %- %(%d+%.%d, %d+%.%d%)  %(%d+%)$"), l[2])
  end)

  it("segment --json counts the classes as pthcv.segment does and draws them", function()
    local seg = "lraspp_mobilenet_v3_large"
    local seg_weights = dir .. "/" .. seg .. ".pth"
    local out_png = support.tmpname(".png")
    local code, out, err = support.pthcv("segment", "--model", seg, "--weights", seg_weights, picture, "--json",
                                         "--draw", out_png)
    assert.are.equal(0, code, err)
    local rec = json.decode(lines_of(out)[1])
    local m = pthcv.models.segmentation.get(seg)
    m:load_state_dict(pthcv.state_dict(seg_weights))
    m:eval()
    local r = pthcv.segment(m, pthcv.image.read(picture))
    assert.are.same({ 640, 427 }, rec.size)
    assert.are.equal(#r.present, #rec.classes)
    local total = 0
    for i, c in ipairs(rec.classes) do
      assert.are.same({ r.present[i].label, r.present[i].name, r.present[i].pixels }, { c.label, c.name, c.pixels })
      total = total + c.pixels
    end
    assert.are.equal(640 * 427, total)
    assert.are.same({ 427, 640, 3 }, pthcv.image.read(out_png).shape)
    os.remove(out_png)
  end)

  it("detect --video reads frames, prints a record per frame and a status line, writes the drawn video", function()
    local clip, drawn = support.tmpname(".avi"), support.tmpname(".avi")
    local img = pthcv.image.read(picture)
    local w = pthcv.video.writer(clip, { fps = 5, width = 640, height = 427 })
    for _ = 1, 3 do w:write(img) end
    w:close()
    local code, out, err = support.pthcv("detect", "--model", model, "--weights", weights, "--video", clip,
                                         "--max-frames", "2", "--score-thresh", "0.5", "--json", "--draw", drawn)
    assert.are.equal(0, code, err)
    local recs = lines_of(out)
    assert.are.equal(2, #recs)
    for i, line in ipairs(recs) do
      local rec = json.decode(line)
      assert.are.equal(i, rec.frame)
      assert.is_true(#rec.detections > 0, "frame " .. i .. ": no detection")
    end
    assert.truthy(err:find("frame 2/3", 1, true), err)
    for _, stage in ipairs({ "fps", "decode", "preprocess", "network", "postprocess", "draw" }) do
      assert.truthy(err:find(stage, 1, true), stage .. " missing from the status line: " .. err)
    end
    assert.truthy(err:find("2 frames drawn into " .. drawn, 1, true), err)
    local src = pthcv.video.open(clip)   -- MJPG keeps even heights: 426 rows
    local shape = { src.height, src.width, 3 }
    src:close()
    local v = pthcv.video.open(drawn)
    local n = 0
    for frame in v:frames() do
      n = n + 1
      assert.are.same(shape, frame.shape)
    end
    v:close()
    assert.are.equal(2, n)
    os.remove(clip); os.remove(drawn)
  end)

  it("names a video file that cannot be opened", function()
    local code, _, err = support.pthcv("detect", "--model", model, "--weights", weights, "--video", "/nonexistent/c.mp4")
    assert.are.equal(1, code)
    assert.truthy(err:find("/nonexistent/c.mp4: cannot open the video file", 1, true), err)
  end)
end)
