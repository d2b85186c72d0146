-- lua/pthcv/models/detection/transform.lua: torchvision's
-- GeneralizedRCNNTransform, the detectors' pre- and post-processing.
--
-- forward(images): each image [3, H, W] (float32, RGB in 0..1) normalised
-- ((x - mean) / std per channel, float32), then resized by
-- min(min_size / min(H, W), max_size / max(H, W)) (that scale in float32,
-- the new size floor(side * scale), bilinear without align_corners as
-- F.interpolate with recompute_scale_factor), or to fixed_size; the images
-- then padded with zeros to a common size rounded up to size_divisible.
-- Returns the batch [N, 3, H', W'] and each image's size before padding.
-- postprocess(detections, sizes, original_sizes) maps boxes (and
-- keypoints, masks) back to the original images.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local util = require "pthcv.models.detection.util"
local py = require "pthcv.nn.repr"
local release = require "pthcv.nn.release"

local f32 = util.f32
local M = {}

local Transform = nn.class("GeneralizedRCNNTransform", nil,
  { torch_class = "torchvision.models.detection.transform.GeneralizedRCNNTransform" })
M.GeneralizedRCNNTransform = Transform

-- GeneralizedRCNNTransform(min_size, max_size, image_mean, image_std
-- [, size_divisible = 32, fixed_size = {w, h}])
function Transform:__init(min_size, max_size, image_mean, image_std, size_divisible, fixed_size)
  if type(min_size) == "number" then min_size = { min_size } end
  self.min_size, self.max_size = min_size, max_size
  self.image_mean, self.image_std = image_mean, image_std
  self.size_divisible = size_divisible or 32
  self.fixed_size = fixed_size
  self._mean = Tensor.from_table({ { { image_mean[1] } }, { { image_mean[2] } }, { { image_mean[3] } } }, "float32")
  self._std = Tensor.from_table({ { { image_std[1] } }, { { image_std[2] } }, { { image_std[3] } } }, "float32")
end

function Transform:normalize(image)
  if image.dtype ~= "float32" then
    error("pthcv: GeneralizedRCNNTransform: images must be float32 in 0..1, got " .. image.dtype, 3)
  end
  if image.shape[1] ~= 3 then
    error("pthcv: GeneralizedRCNNTransform: images must have 3 channels (RGB), got " .. tostring(image), 3)
  end
  local centred = image - self._mean
  local y = centred / self._std
  release(centred) -- this call's own: freed now, not at the next collection
  return y
end

-- the size an image [3, h, w] is resized to (torchvision's
-- _resize_image_and_masks, evaluation: the last min_size)
function Transform:resized_size(h, w)
  if self.fixed_size then return self.fixed_size[2], self.fixed_size[1] end
  local lo, hi = f32(math.min(h, w)), f32(math.max(h, w))
  local size = self.min_size[#self.min_size]
  local scale = math.min(f32(f32(size) / lo), f32(f32(self.max_size) / hi))
  return math.floor(h * scale), math.floor(w * scale)
end

function Transform:resize(image)
  local h, w = image.shape[2], image.shape[3]
  local oh, ow = self:resized_size(h, w)
  local batch1 = image:unsqueeze(1)
  local x = F.interpolate(batch1, { size = { oh, ow }, mode = "bilinear", align_corners = false })
  local y = x:squeeze(1)
  release(batch1) -- views are references too: freed now, they would hold image's bytes
  release(x)      -- y, a view, holds the bytes
  return y
end

-- images [3, h_i, w_i] -> [N, 3, H, W] zero-padded, H and W rounded up to
-- multiples of size_divisible
function Transform:batch_images(images)
  local H, W = 0, 0
  for _, img in ipairs(images) do H, W = math.max(H, img.shape[2]), math.max(W, img.shape[3]) end
  local d = self.size_divisible
  H, W = math.ceil(H / d) * d, math.ceil(W / d) * d
  local parts = {}
  for i, img in ipairs(images) do
    local h, w = img.shape[2], img.shape[3]
    local padded = (h == H and w == W) and img or F.pad(img, { 0, W - w, 0, H - h })
    parts[i] = padded:unsqueeze(1)
    release(padded, img) -- the view in parts holds the bytes
  end
  local batch = #parts == 1 and parts[1]:contiguous() or F.cat(parts, 0)
  for _, p in ipairs(parts) do release(p, batch) end
  return batch
end

-- images -> batch [N, 3, H, W], sizes {{h, w}, ...} after resizing
function Transform:forward(images)
  local resized, sizes = {}, {}
  for i, img in ipairs(images) do
    local normalized = self:normalize(img)
    local r = self:resize(normalized)
    release(normalized)
    resized[i] = r
    sizes[i] = { r.shape[2], r.shape[3] }
  end
  -- the intermediates are this call's own: freed now (a view the batch
  -- takes keeps its own reference to the bytes)
  local batch = self:batch_images(resized)
  for _, r in ipairs(resized) do release(r, batch) end
  return batch, sizes
end

-- boxes [N, 4] from an image of size `from` {h, w} to one of size `to`
-- (torchvision's resize_boxes: float32 ratios)
function M.resize_boxes(boxes, from, to)
  local rh, rw = f32(to[1] / from[1]), f32(to[2] / from[2])
  local out = boxes:contiguous():clone()
  local p = out:data()
  for i = 0, out.shape[1] - 1 do
    p[4 * i], p[4 * i + 2] = p[4 * i] * rw, p[4 * i + 2] * rw
    p[4 * i + 1], p[4 * i + 3] = p[4 * i + 1] * rh, p[4 * i + 3] * rh
  end
  return out
end

-- keypoints [N, K, 3] likewise (x and y scaled, visibility kept)
function M.resize_keypoints(keypoints, from, to)
  local rh, rw = f32(to[1] / from[1]), f32(to[2] / from[2])
  local out = keypoints:contiguous():clone()
  local p = out:data()
  for i = 0, out.numel / 3 - 1 do
    p[3 * i], p[3 * i + 1] = p[3 * i] * rw, p[3 * i + 1] * rh
  end
  return out
end

function Transform:postprocess(detections, sizes, original_sizes)
  for i, det in ipairs(detections) do
    local from, to = sizes[i], original_sizes[i]
    det.boxes = M.resize_boxes(det.boxes, from, to)
    if det.masks then det.masks = ops.paste_masks_in_image(det.masks, det.boxes, to, 1) end
    if det.keypoints then det.keypoints = M.resize_keypoints(det.keypoints, from, to) end
  end
  return detections
end

function Transform:repr()
  return string.format("GeneralizedRCNNTransform(\n    Normalize(mean=%s, std=%s)\n    Resize(min_size=%s, "
                       .. "max_size=%s, mode='bilinear')\n)", py.value(self.image_mean), py.value(self.image_std),
                       py.value(self.min_size), py.value(self.max_size))
end

return M
