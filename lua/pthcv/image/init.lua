-- lua/pthcv/image/init.lua: images through OpenCV and the network input made
-- from them (pthcv.image).
--
--   local image = require "pthcv.image"     -- or pthcv.image
--   local img = image.read("cat.jpg")        -- uint8 Tensor [H, W, 3], BGR, OpenCV's memory
--   local x = image.blob(img, {size = 224, resize = 256, crop = true, swap_rb = true,
--                              scale = 1 / 255, mean = {0.485, 0.456, 0.406},
--                              std = {0.229, 0.224, 0.225}})   -- float32 [1, 3, 224, 224]
--
-- An image is a Tensor [H, W, C] (C = 1, 3 or 4, BGR(A) as OpenCV orders
-- them) of uint8 (or uint16, int16, float32, ...); [H, W] tensors are taken
-- as one channel. Images returned view the cv::Mat OpenCV made: no copy,
-- and the Mat stays alive as long as the Tensor or a view of it (a crop)
-- does. Images given are passed to OpenCV without a copy when the pixels of
-- each row are packed (a crop qualifies), else copied once.
-- Coordinates follow OpenCV: sizes are {width, height}, a crop's corner
-- (x, y) counts pixels from the top-left corner, 0-based as cv::Rect.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local C = core.C

local M = {}

M.color = require "pthcv.image.codes"   -- cv::COLOR_* by name: M.color.BGR2RGB == 4

M.IMREAD_UNCHANGED, M.IMREAD_GRAYSCALE, M.IMREAD_COLOR = -1, 0, 1
local read_flags = { unchanged = -1, gray = 0, grayscale = 0, color = 1 }

local interpolations = { nearest = 0, linear = 1, cubic = 2, area = 3, lanczos4 = 4,
                         linear_exact = 5, nearest_exact = 6 }
for name, v in pairs(interpolations) do M["INTER_" .. name:upper()] = v end

-- cv::imwrite parameters by name (IMWRITE_* without the prefix, lower case).
local write_params = { jpeg_quality = 1, jpeg_progressive = 2, jpeg_optimize = 3, jpeg_rst_interval = 4,
                       jpeg_luma_quality = 5, jpeg_chroma_quality = 6, png_compression = 16,
                       png_strategy = 17, png_bilevel = 18, pxm_binary = 32, webp_quality = 64,
                       pam_tupletype = 128, tiff_resunit = 256, tiff_xdpi = 257, tiff_ydpi = 258,
                       tiff_compression = 259, jpeg2000_compression_x1000 = 272 }

local function argerror(fname, msg) error("pthcv.image." .. fname .. ": " .. msg, 3) end

local function check_image(fname, img)
  if not Tensor.is(img) then argerror(fname, "expected an image Tensor, got " .. type(img)) end
  if img.ndim ~= 2 and img.ndim ~= 3 then
    argerror(fname, "an image is a Tensor [H, W, C] or [H, W], got shape [" .. table.concat(img.shape, ", ") .. "]")
  end
  return img
end

local function wrap(ct, what)
  if ct == nil then core.fail(what) end
  return Tensor.wrap(ct, true)
end

local function flag_of(fname, v, names, default)
  if v == nil then return default end
  if type(v) == "number" then return v end
  local n = names[tostring(v):lower()]
  if not n then argerror(fname, "unknown option '" .. tostring(v) .. "'") end
  return n
end

local function interpolation_of(fname, v) return flag_of(fname, v, interpolations, 1) end
M.interpolation_of = function(v) return interpolation_of("interpolation", v) end

-- {w, h} or {width = w, height = h}, or a number n: n x n.
local function size_of(fname, s)
  if type(s) == "number" then return s, s end
  if type(s) ~= "table" then argerror(fname, "a size is {width, height} or a number") end
  local w, h = s[1] or s.width, s[2] or s.height
  if type(w) ~= "number" or type(h) ~= "number" then argerror(fname, "a size is {width, height}") end
  return w, h
end

local function positive_int(fname, v, what)
  if type(v) ~= "number" or v < 1 or v % 1 ~= 0 then
    argerror(fname, what .. " must be a positive integer, got " .. tostring(v))
  end
  return v
end

-- image.read(path [, flags]): flags "color" (default: 8-bit BGR), "gray",
-- "unchanged" (the file's depth and channels, alpha kept) or an IMREAD_* number.
function M.read(path, flags)
  if type(path) ~= "string" then argerror("read", "expected a file path, got " .. type(path)) end
  return wrap(core.codecs().pthcv_image_read(path, flag_of("read", flags, read_flags, 1)), "cannot read " .. path)
end

-- image.decode(bytes [, flags]): an image from the bytes of a PNG, JPEG... file.
function M.decode(bytes, flags)
  if type(bytes) ~= "string" then argerror("decode", "expected a string of bytes") end
  return wrap(core.codecs().pthcv_image_decode(bytes, #bytes, flag_of("decode", flags, read_flags, 1)), "cannot decode")
end

-- image.write(path, img [, params]): the format from the extension.
-- params: {jpeg_quality = 90, png_compression = 9, ...} or OpenCV's flat
-- list {flag, value, flag, value}.
function M.write(path, img, params)
  if type(path) ~= "string" then argerror("write", "expected a file path, got " .. type(path)) end
  check_image("write", img)
  local list = {}
  for i, v in ipairs(params or {}) do list[i] = v end
  for k, v in pairs(params or {}) do
    if type(k) == "string" then
      local flag = write_params[k:lower():gsub("^imwrite_", "")]
      if not flag then argerror("write", "unknown parameter '" .. k .. "'") end
      list[#list + 1] = flag
      list[#list + 1] = v == true and 1 or v == false and 0 or v
    end
  end
  local arr = #list > 0 and ffi.new("int32_t[?]", #list, list) or nil
  core.check(core.codecs().pthcv_image_write(path, img.ct, #list, arr), "cannot write " .. path)
  return path
end

-- image.resize(img, size [, interpolation]): size {w, h} (or n: n x n), or
-- {fx = 0.5, fy = 0.5} to scale; interpolation: "linear" (default),
-- "nearest", "cubic", "area", "lanczos4", "linear_exact", "nearest_exact"
-- or OpenCV's INTER_* number.
function M.resize(img, size, interpolation)
  check_image("resize", img)
  local interp = interpolation_of("resize", interpolation)
  if type(size) == "table" and (size.fx or size.fy) then
    local fx, fy = size.fx or size.fy, size.fy or size.fx
    return wrap(C.pthcv_image_resize(img.ct, 0, 0, fx, fy, interp), "cannot resize")
  end
  local w, h = size_of("resize", size)
  return wrap(C.pthcv_image_resize(img.ct, positive_int("resize", w, "the width"),
                                   positive_int("resize", h, "the height"), 0, 0, interp), "cannot resize")
end

-- image.cvt_color(img, code): code a name of M.color ("BGR2RGB", "BGR2GRAY",
-- "GRAY2BGR", "BGR2HSV", ...; case does not matter) or a cv::COLOR_* number.
local codes_upper = {}
for k, v in pairs(M.color) do codes_upper[k:upper()] = v end
function M.cvt_color(img, code)
  check_image("cvt_color", img)
  local c = code
  if type(code) == "string" then
    c = M.color[code:gsub("^COLOR_", "")] or codes_upper[code:upper():gsub("^COLOR_", "")]
  end
  if type(c) ~= "number" then argerror("cvt_color", "unknown colour conversion '" .. tostring(code) .. "'") end
  return wrap(C.pthcv_image_cvt_color(img.ct, c), "cannot convert colours")
end

-- image.crop(img, x, y, w, h): the w x h region whose top-left pixel is
-- (x, y) (0-based, as cv::Rect), a view sharing img's memory.
function M.crop(img, x, y, w, h)
  check_image("crop", img)
  for _, v in ipairs { x, y } do
    if type(v) ~= "number" or v < 0 or v % 1 ~= 0 then argerror("crop", "x and y must be integers >= 0") end
  end
  positive_int("crop", w, "the width")
  positive_int("crop", h, "the height")
  local H, W = img.shape[1], img.shape[2]
  if x + w > W or y + h > H then
    argerror("crop", string.format("the region %dx%d at (%d, %d) is outside the %dx%d image", w, h, x, y, W, H))
  end
  return img:narrow(1, y + 1, h):narrow(2, x + 1, w)
end

-- image.center_crop(img, size): the centred size {w, h} (or n x n) region, a
-- view; the corner is at round((H - h) / 2), round((W - w) / 2) with halves
-- to even, as torchvision's CenterCrop.
local function round_half_even(v)
  local f = math.floor(v)
  local d = v - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end
function M.center_crop(img, size)
  check_image("center_crop", img)
  local w, h = size_of("center_crop", size)
  local H, W = img.shape[1], img.shape[2]
  if w > W or h > H then
    argerror("center_crop", string.format("a %dx%d crop of a %dx%d image", w, h, W, H))
  end
  return M.crop(img, round_half_even((W - w) / 2), round_half_even((H - h) / 2), w, h)
end

-- image.to_float(img [, scale [, shift]]): float32 pixels, value * scale + shift
-- (cv::Mat::convertTo); the layout stays [H, W, C].
function M.to_float(img, scale, shift)
  check_image("to_float", img)
  return wrap(C.pthcv_image_convert(img.ct, C.PTHCV_FLOAT32, scale or 1, shift or 0), "cannot convert")
end

-- image.convert(img, dtype [, scale [, shift]]): any OpenCV element type, saturated.
function M.convert(img, dtype, scale, shift)
  check_image("convert", img)
  return wrap(C.pthcv_image_convert(img.ct, Tensor.dtype_id(dtype), scale or 1, shift or 0), "cannot convert")
end

-- Per-channel values: a number for all channels, or a list of up to 4.
local function per_channel(fname, what, v, default, into)
  if v == nil then
    for c = 0, 3 do into[c] = default end
  elseif type(v) == "number" then
    for c = 0, 3 do into[c] = v end
  elseif type(v) == "table" then
    if #v < 1 or #v > 4 then argerror(fname, what .. " has 1 to 4 values") end
    for c = 0, 3 do into[c] = v[c + 1] or (#v == 1 and v[1]) or default end
  else
    argerror(fname, what .. " must be a number or a list of numbers")
  end
end

-- image.blob(img or {img, ...}, opts) -> float32 Tensor [N, C, h, w]:
--   size = {w, h} or n      output size; default: the image's own (after resize)
--   resize = n              first scale so the shorter side is n (torchvision's
--                           Resize(n)); with crop (the default then), centre-crop
--                           to size as torchvision's CenterCrop
--   crop = true             without resize: scale keeping the aspect ratio so the
--                           size is covered, then centre-crop (cv::dnn::blobFromImage)
--   scale = 1, mean = 0, std = 1   each value becomes (pixel * scale - mean) / std;
--                           mean and std per output channel (numbers or lists)
--   swap_rb = false         BGR -> RGB (alias rgb); mean/std are in output order
--   interpolation = "linear"
-- With std 1 and no resize it equals cv::dnn::blobFromImage(img, scale, size,
-- mean / scale, swap_rb, crop) (OpenCV subtracts its mean before scaling).
function M.blob(images, opts)
  opts = opts or {}
  if Tensor.is(images) then images = { images } end
  if type(images) ~= "table" or #images == 0 then argerror("blob", "expected an image or a list of images") end
  local n = #images
  local arr = ffi.new("pthcv_tensor *[?]", n)
  for i, img in ipairs(images) do arr[i - 1] = check_image("blob", img).ct end
  local p = ffi.new("pthcv_blob_params")
  C.pthcv_blob_params_init(p)
  if opts.size ~= nil then
    local w, h = size_of("blob", opts.size)
    p.width, p.height = positive_int("blob", w, "the width"), positive_int("blob", h, "the height")
  end
  if opts.resize ~= nil then p.resize = positive_int("blob", opts.resize, "resize") end
  local crop = opts.crop
  if crop == nil then crop = opts.resize ~= nil end
  p.crop = crop and 1 or 0
  local swap = opts.swap_rb
  if swap == nil then swap = opts.rgb end
  p.swap_rb = swap and 1 or 0
  p.interpolation = interpolation_of("blob", opts.interpolation)
  if opts.scale ~= nil then
    if type(opts.scale) ~= "number" then argerror("blob", "scale must be a number") end
    p.scale = opts.scale
  end
  per_channel("blob", "mean", opts.mean, 0, p.mean)
  per_channel("blob", "std", opts.std, 1, p.std)
  local t = wrap(C.pthcv_image_blob(n, arr, p), "cannot make the blob")
  return t
end

-- Drawing (lua/pthcv/image/draw.lua): detections and segmentations on a
-- copy of the image, and video files and cameras (pthcv.image.video).
function M.draw_detections(img, dets, opts) return require("pthcv.image.draw").draw_detections(img, dets, opts) end
function M.draw_segmentation(img, seg, opts) return require("pthcv.image.draw").draw_segmentation(img, seg, opts) end
setmetatable(M, { __index = function(t, k)
  if k == "video" or k == "draw" then
    local v = require("pthcv.image." .. k)
    rawset(t, k, v)
    return v
  end
end })

return M
