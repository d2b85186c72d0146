-- image_spec: pthcv.image against OpenCV's Python binding (cv2, Debian's
-- python3-opencv): read, resize with each interpolation, cvt_color, crops
-- handed to OpenCV, to_float, and blob against cv2.dnn.blobFromImage(s) and
-- a torchvision-style pipeline; the Mat's lifetime under views; errors.
-- spec/fixtures/make_image_refs.py writes what cv2 says into a temporary
-- folder.
local support = require "support"
local pthcv = require "pthcv"
local image = require "pthcv.image"
local json = require "dkjson"

local IMG = support.root .. "/examples/demo.jpg"

local function has_cv2()
  return support.run("/usr/bin/python3 -c 'import cv2, numpy'") == 0
end

-- max |a - b| over two tensors of one shape (any dtypes)
local function max_diff(a, b)
  assert.are.same(a.shape, b.shape)
  local x, y = a:contiguous():double(), b:contiguous():double()
  local p, q = x:data(), y:data()
  local m = 0
  for i = 0, x.numel - 1 do
    local d = math.abs(p[i] - q[i])
    if d > m or d ~= d then m = d end
  end
  return m
end

describe("pthcv.image", function()
  it("is reachable as pthcv.image", function()
    assert.are.equal(image, pthcv.image)
  end)

  it("reads an image as a uint8 [H, W, 3] BGR tensor, gray as [H, W, 1]", function()
    local img = image.read(IMG)
    assert.are.equal("uint8", img.dtype)
    assert.are.same({ 300, 400, 3 }, img.shape)
    assert.are.same({ 1200, 3, 1 }, img.stride)
    local g = image.read(IMG, "gray")
    assert.are.same({ 300, 400, 1 }, g.shape)
    assert.are.same(g.shape, image.read(IMG, image.IMREAD_GRAYSCALE).shape)
    -- decode from bytes gives the same pixels
    local d = image.decode(support.read_file(IMG))
    assert.are.equal(0, max_diff(img, d))
  end)

  it("keeps OpenCV's memory alive while a view exists", function()
    local img = image.read(IMG)
    local expect = img:get(101, 201, 2)
    local view = image.crop(img, 200, 100, 50, 40)
    assert.is_true(view:shares_storage(img))
    img = nil -- luacheck: ignore
    collectgarbage(); collectgarbage()
    assert.are.equal(expect, view:get(1, 1, 2))
    local small = image.resize(view, { 25, 20 })  -- a strided view handed back to OpenCV
    assert.are.same({ 20, 25, 3 }, small.shape)
  end)

  it("crops and centre-crops as views, with torchvision's rounding", function()
    local img = image.read(IMG)
    local c = image.crop(img, 10, 20, 30, 40)
    assert.are.same({ 40, 30, 3 }, c.shape)
    assert.are.equal(img:get(21, 11, 1), c:get(1, 1, 1))
    -- (400 - 101) / 2 = 149.5 -> 150 (even), (300 - 99) / 2 = 100.5 -> 100
    local cc = image.center_crop(img, { 101, 99 })
    assert.are.same({ 99, 101, 3 }, cc.shape)
    assert.are.equal(img:get(101, 151, 3), cc:get(1, 1, 3))
    cc = image.center_crop(img, 224)
    assert.are.equal(img:get(39, 89, 1), cc:get(1, 1, 1))   -- (300-224)/2 = 38, (400-224)/2 = 88
    assert.has_error(function() image.crop(img, 390, 0, 20, 10) end)
    assert.has_error(function() image.center_crop(img, 500) end)
  end)

  it("writes PNG losslessly and JPEG with a quality", function()
    local img = image.read(IMG)
    local png = support.tmpname(".png")
    image.write(png, image.crop(img, 5, 6, 70, 50))
    local back = image.read(png)
    assert.are.equal(0, max_diff(back, image.crop(img, 5, 6, 70, 50)))
    local lo, hi = support.tmpname(".jpg"), support.tmpname(".jpg")
    image.write(lo, img, { jpeg_quality = 10 })
    image.write(hi, img, { 1, 95 })   -- OpenCV's flat (IMWRITE_JPEG_QUALITY, 95)
    assert.is_true(#support.read_file(lo) < #support.read_file(hi))
    os.remove(png); os.remove(lo); os.remove(hi)
    assert.has_error(function() image.write(png, img, { no_such_param = 1 }) end)
  end)

  it("converts to float32 and back, to other depths", function()
    local img = image.read(IMG)
    local f = image.to_float(img, 1 / 255)
    assert.are.equal("float32", f.dtype)
    assert.are.same(img.shape, f.shape)
    assert.is_true(math.abs(f:get(1, 1, 1) - img:get(1, 1, 1) / 255) < 1e-6)
    local u16 = image.convert(img, "uint16", 256)
    assert.are.equal(img:get(7, 9, 2) * 256, u16:get(7, 9, 2))
    assert.are.equal(0, max_diff(image.convert(f, "uint8", 255), img))
  end)

  it("converts colours by name or code", function()
    local img = image.read(IMG)
    local rgb = image.cvt_color(img, "BGR2RGB")
    assert.are.equal(img:get(1, 1, 1), rgb:get(1, 1, 3))
    assert.are.same({ 300, 400, 1 }, image.cvt_color(img, "bgr2gray").shape)
    assert.are.same({ 300, 400, 4 }, image.cvt_color(img, image.color.BGR2BGRA).shape)
    assert.has_error(function() image.cvt_color(img, "BGR2NOTHING") end)
    -- a 1-channel [H, W] tensor is an image too
    local g = image.cvt_color(img, "COLOR_BGR2GRAY"):narrow(3, 1, 1):squeeze(3)
    assert.are.same({ 300, 400, 3 }, image.cvt_color(g, "GRAY2BGR").shape)
  end)

  it("reports errors with the file and OpenCV's message", function()
    local ok, e = pcall(image.read, "/nonexistent/x.png")
    assert.is_false(ok)
    assert.matches("/nonexistent/x.png: cannot open", e, 1, true)
    ok, e = pcall(image.read, support.root .. "/README.md")
    assert.is_false(ok)
    assert.matches("not an image", e, 1, true)
    local img = image.read(IMG)
    ok, e = pcall(image.cvt_color, img, "GRAY2BGR")   -- 3 channels where 1 is needed
    assert.is_false(ok)
    assert.matches("OpenCV", e, 1, true)
    assert.has_error(function() image.resize(img, { 0, 10 }) end)
    assert.has_error(function() image.resize(pthcv.zeros({ 2, 3, 4, 5 }, "uint8"), { 4, 4 }) end)
    assert.has_error(function() image.blob(img, { std = 0 }) end)
    assert.has_error(function() image.blob({ img, image.resize(img, { 10, 10 }) }) end)  -- sizes differ
    assert.has_error(function() image.blob(img, { resize = 100, size = 224 }) end)         -- crop too large
  end)

  it("makes a blob [N, C, H, W] per output channel (pixel * scale - mean) / std", function()
    local img = image.read(IMG)
    local b = image.blob(img, { size = { 4, 2 }, scale = 2, mean = { 1, 2, 3 }, std = { 1, 2, 4 }, swap_rb = true,
                                interpolation = "nearest" })
    assert.are.same({ 1, 3, 2, 4 }, b.shape)
    local small = image.resize(img, { 4, 2 }, "nearest")
    for y = 1, 2 do
      for x = 1, 4 do
        assert.are.equal(small:get(y, x, 3) * 2 - 1, b:get(1, 1, y, x))
        assert.are.equal((small:get(y, x, 2) * 2 - 2) / 2, b:get(1, 2, y, x))
        assert.are.equal((small:get(y, x, 1) * 2 - 3) / 4, b:get(1, 3, y, x))
      end
    end
    local two = image.blob({ img, img }, { size = 8 })
    assert.are.same({ 2, 3, 8, 8 }, two.shape)
  end)

  if not has_cv2() then
    pending("cv2 (python3-opencv) is missing: no comparison with OpenCV's Python binding")
    return
  end

  local dir = support.tmpname("-image-refs")
  local refs
  local function ref(name) return pthcv.load_npy(dir .. "/" .. name .. ".npy") end
  setup(function()
    local code, _, err = support.run("/usr/bin/python3 " .. support.shell_quote(support.root ..
      "/spec/fixtures/make_image_refs.py") .. " " .. support.shell_quote(IMG) .. " " .. support.shell_quote(dir))
    assert(code == 0, "make_image_refs.py failed: " .. err)
    refs = json.decode(support.read_file(dir .. "/cases.json"))
  end)
  teardown(function() os.execute("rm -rf " .. support.shell_quote(dir)) end)

  it("reads the pixels cv2.imread reads", function()
    assert.are.equal(0, max_diff(image.read(IMG), ref("read_color")))
    local g = image.read(IMG, "gray")
    assert.are.equal(0, max_diff(g:squeeze(3), ref("read_gray")))
  end)

  it("resizes as cv2.resize, for each interpolation and by factors", function()
    local img = image.read(IMG)
    for _, interp in ipairs { "nearest", "linear", "cubic", "area", "lanczos4" } do
      assert.are.equal(0, max_diff(image.resize(img, { 123, 77 }, interp), ref("resize_" .. interp)), interp)
    end
    assert.are.equal(0, max_diff(image.resize(img, { fx = 0.5, fy = 0.25 }), ref("resize_fx")))
    assert.are.equal(0, max_diff(image.resize(image.crop(img, 30, 20, 200, 100), { 50, 25 }), ref("crop_resize")))
  end)

  it("converts colours as cv2.cvtColor, with cv2's code table", function()
    local img = image.read(IMG)
    assert.are.equal(0, max_diff(image.cvt_color(img, "BGR2GRAY"):squeeze(3), ref("cvt_BGR2GRAY")))
    assert.are.equal(0, max_diff(image.cvt_color(img, "BGR2HSV"), ref("cvt_BGR2HSV")))
    assert.are.equal(0, max_diff(image.cvt_color(img, "BGR2RGB"), ref("cvt_BGR2RGB")))
    local n = 0
    for name, code in pairs(refs.colors) do
      assert.are.equal(code, image.color[name], name)
      n = n + 1
    end
    for name in pairs(image.color) do assert.is_number(refs.colors[name], name) end
    assert.is_true(n > 300)
  end)

  it("converts to float as numpy does", function()
    assert.is_true(max_diff(image.to_float(image.read(IMG), 1 / 255), ref("to_float")) < 1e-7)
  end)

  it("equals cv2.dnn.blobFromImage(s) (std 1) and a torchvision-style pipeline", function()
    local inputs = { img = image.read(IMG) }
    inputs.gray = image.cvt_color(inputs.img, "BGR2GRAY")
    inputs.bgra = image.cvt_color(inputs.img, "BGR2BGRA")
    inputs.small = image.resize(inputs.img, { 160, 90 })
    assert.is_true(#refs.cases >= 8)
    for _, case in ipairs(refs.cases) do
      local imgs = {}
      for i, name in ipairs(case.images) do imgs[i] = inputs[name] end
      local got = image.blob(imgs, case.opts)
      local want = pthcv.load_npy(dir .. "/" .. case.file)
      assert.are.same(want.shape, got.shape, case.name)
      local d = max_diff(got, want)
      print(string.format("# blob %-12s %-16s max|diff| %g", case.name, table.concat(got.shape, "x"), d))
      assert.is_true(d <= case.tol, string.format("%s: max |diff| %g", case.name, d))
      if case.name == "plain" then assert.are.equal(0, d, "scale 1 is bit-exact") end
    end
  end)
end)

