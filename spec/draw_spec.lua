-- spec/draw_spec.lua: pthcv.image.draw_detections / draw_segmentation
-- (csrc/opencv/draw.cpp), pthcv.video (csrc/opencv/videoio.cpp) and the
-- picture conversion of pthcv.detect, without models.
local support = require "support"
local pthcv = require "pthcv"
local draw = require "pthcv.image.draw"
local detect = require "pthcv.image.detect"

local function pixel(img, x, y) -- {b, g, r} at 0-based (x, y)
  return { img:get(y + 1, x + 1, 1), img:get(y + 1, x + 1, 2), img:get(y + 1, x + 1, 3) }
end

local function gray(h, w, v) return pthcv.full({ h, w, 3 }, v, "uint8") end

describe("pthcv.image.draw_detections", function()
  local img = gray(120, 160, 100)
  local dets = {
    { box = { 20, 40, 80, 100 }, label = 1, name = "person", score = 0.93 },
    { box = { 90, 10, 150, 60 }, label = 18, name = "dog", score = 0.51,
      mask = (function()
        local m = pthcv.zeros(120, 160)
        for y = 20, 40 do for x = 100, 140 do m:set(y, x, 0.9) end end
        return m
      end)() },
  }

  it("draws boxes in each class's colour on a copy", function()
    local out = draw.draw_detections(img, dets, { thickness = 2 })
    assert.are.same({ 100, 100, 100 }, pixel(img, 20, 70))          -- the input is not changed
    assert.are.same(draw.class_color(1), pixel(out, 20, 70))        -- the left edge of box 1
    assert.are.same(draw.class_color(18), pixel(out, 150, 45))      -- the right edge of box 2
    assert.are_not.same(draw.class_color(1), draw.class_color(18))
    assert.are.same({ 100, 100, 100 }, pixel(out, 50, 75))          -- inside box 1: untouched
  end)

  it("writes a label tag above the box and tints masks", function()
    local out = draw.draw_detections(img, dets)
    local c, ink = draw.class_color(1), 0
    local tag_color = 0
    for y = 20, 38 do
      for x = 21, 70 do
        local p = pixel(out, x, y)
        if p[1] == c[1] and p[2] == c[2] and p[3] == c[3] then tag_color = tag_color + 1
        elseif p[1] ~= 100 then ink = ink + 1 end
      end
    end
    assert.is_true(tag_color > 200, "the tag's background")
    assert.is_true(ink > 20, "the tag's text")
    -- the dog's mask: 100 * 0.55 + colour * 0.45 inside, untouched outside
    local m, d = pixel(out, 130, 37), draw.class_color(18)
    for k = 1, 3 do assert.is_true(math.abs(m[k] - (100 * 0.55 + d[k] * 0.45)) <= 1) end
    assert.are.same({ 100, 100, 100 }, pixel(out, 120, 45))
  end)

  it("keeps the tag of a box overlapping a better one readable", function()
    local big = gray(200, 200, 100)
    local a = { box = { 40, 60, 160, 180 }, label = 1, name = "person", score = 0.9 }
    local b = { box = { 50, 62, 150, 170 }, label = 18, name = "dog", score = 0.5 }
    local out = draw.draw_detections(big, { b, a })   -- the order given does not matter
    local function count(color, x0, y0, x1, y1)
      local n = 0
      for y = y0, y1 do
        for x = x0, x1 do
          local p = pixel(out, x, y)
          if p[1] == color[1] and p[2] == color[2] and p[3] == color[3] then n = n + 1 end
        end
      end
      return n
    end
    local ca, cb = draw.class_color(1), draw.class_color(18)
    -- the better box's tag above it, whole; the other's inside its own box
    assert.is_true(count(ca, 41, 45, 90, 59) > 300, "person's tag above its box")
    assert.are.equal(0, count(cb, 41, 40, 90, 59))
    assert.is_true(count(cb, 52, 64, 90, 76) > 200, "dog's tag inside its box")
  end)

  it("gives distinct colours to the first classes", function()
    local seen = {}
    for label = 1, 20 do
      local key = table.concat(draw.class_color(label), ",")
      assert.is_nil(seen[key], "class " .. label .. " repeats a colour")
      seen[key] = true
    end
  end)

  it("refuses what it cannot draw on", function()
    assert.has_error(function() draw.draw_detections(pthcv.zeros(10, 10, 3), dets) end)
    local strided = gray(10, 20, 0):narrow(2, 1, 10):transpose(1, 2)
    assert.has_error(function() draw.rectangle(strided, 0, 0, 5, 5, { 255, 0, 0 }, 1) end,
      "pthcv: pthcv_draw_rectangle: pthcv_draw_rectangle: the image's pixels are not packed within rows, so it "
      .. "cannot be drawn on in place: draw on image:clone()")
  end)

  it("draws a segmentation with a legend", function()
    local classes = pthcv.zeros({ 120, 160 }, "uint8")
    for y = 1, 60 do for x = 1, 160 do classes:set(y, x, 15) end end
    local out = draw.draw_segmentation(img, { classes = classes, present = {
      { label = 15, name = "person", pixels = 9600 }, { label = 0, name = "__background__", pixels = 9600 } } })
    local c = draw.class_color(15)
    local p = pixel(out, 100, 40)
    for k = 1, 3 do assert.is_true(math.abs(p[k] - (100 * 0.5 + c[k] * 0.5)) <= 1) end
    assert.are.same({ 100, 100, 100 }, pixel(out, 100, 100))
  end)
end)

describe("pthcv.detect's picture conversion", function()
  it("is torchvision's to_tensor of the RGB picture", function()
    local img = pthcv.image.read(support.root .. "/examples/demo.jpg")
    local x = detect.to_tensor(img)
    assert.are.same({ 3, 300, 400 }, x.shape)
    for _, p in ipairs({ { 1, 1 }, { 150, 200 }, { 300, 400 } }) do
      local y, xx = p[1], p[2]
      assert.are.equal(require("pthcv.models.detection.util").f32(img:get(y, xx, 3) / 255), x:get(1, y, xx))
      assert.are.equal(require("pthcv.models.detection.util").f32(img:get(y, xx, 1) / 255), x:get(3, y, xx))
    end
  end)
end)

describe("pthcv.video", function()
  it("writes and reads back a video file", function()
    local path = support.tmpname(".avi")
    local w = pthcv.video.writer(path, { fps = 10, width = 64, height = 48 })
    for i = 1, 5 do w:write(gray(48, 64, 40 * i)) end
    w:close()
    local v = pthcv.video.open(path)
    assert.are.same({ 64, 48, 10 }, { v.width, v.height, v.fps })
    local n = 0
    for frame in v:frames() do
      n = n + 1
      assert.are.same({ 48, 64, 3 }, frame.shape)
      assert.is_true(math.abs(frame:get(24, 32, 2) - 40 * n) <= 3, "frame " .. n)   -- MJPG is lossy
    end
    v:close()
    assert.are.equal(5, n)
    os.remove(path)
  end)

  it("refuses missing files, wrong frames and bad writers with messages", function()
    assert.has_error(function() pthcv.video.open("/nonexistent/clip.mp4") end,
                     "pthcv: /nonexistent/clip.mp4: cannot open the video file")
    -- a camera index whose V4L2 device is not there (no machine here has camera 63)
    local f = io.open("/dev/video63")
    if f then f:close() else
      assert.has_error(function() pthcv.video.open(63) end,
                       "pthcv: camera 63: there is no /dev/video63 (no such camera here)")
    end
    local path = support.tmpname(".avi")
    local w = pthcv.video.writer(path, { fps = 10, width = 64, height = 48 })
    assert.has_error(function() w:write(gray(10, 10, 0)) end)
    assert.has_error(function() w:close() end)
    os.remove(path)
    assert.has_error(function() pthcv.video.writer(path, { fps = 10, width = 0, height = 48 }) end)
    assert.has_error(function() pthcv.video.writer(path, { fps = 10, width = 8, height = 8, fourcc = "toolong" }) end)
  end)
end)
