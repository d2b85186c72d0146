-- lua/pthcv/models/detection/poolers.lua: torchvision.ops.MultiScaleRoIAlign.
--
-- Each box is pooled (roi_align, aligned=False) from one level of the
-- feature pyramid: level floor(4 + log2(sqrt(area) / 224) + 1e-6) clamped
-- to the levels there are (float32, torchvision's LevelMapper); a level's
-- scale is 2^round(log2(map height / image height)) (the largest image of
-- the batch). torchvision caches the scales of its first call; here they
-- are worked out at every call (the same for images of similar shapes).
local ffi = require "ffi"
local nn = require "pthcv.nn"
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local util = require "pthcv.models.detection.util"
local py = require "pthcv.nn.repr"

pcall(ffi.cdef, "float log2f(float x); float sqrtf(float x);")
local f32, round_even = util.f32, util.round_even
local M = {}

local MSRA = nn.class("MultiScaleRoIAlign", nil, { torch_class = "torchvision.ops.poolers.MultiScaleRoIAlign" })
M.MultiScaleRoIAlign = MSRA

-- MultiScaleRoIAlign(featmap_names, output_size, sampling_ratio
-- [, {canonical_scale = 224, canonical_level = 4}])
function MSRA:__init(featmap_names, output_size, sampling_ratio, o)
  o = o or {}
  if type(output_size) == "number" then output_size = { output_size, output_size } end
  self.featmap_names, self.output_size, self.sampling_ratio = featmap_names, output_size, sampling_ratio
  self.canonical_scale, self.canonical_level = o.canonical_scale or 224, o.canonical_level or 4
end

-- torchvision's _infer_scale, from the heights: the scale 2^e and e
local function infer_scale(feature, image_h)
  local approx = f32(feature.shape[3] / image_h)
  local e = round_even(ffi.C.log2f(approx))
  return 2 ^ e, e
end

-- the level (0-based) of every box of `boxes` {[K_i, 4], ...}
local function map_levels(boxes, k_min, k_max, s0, lvl0)
  local out, n = {}, 0
  local eps = f32(1e-6)
  for _, b in ipairs(boxes) do
    local c = b:contiguous()
    local p = c:data()
    for i = 0, c.shape[1] - 1 do
      local area = f32(f32(p[4 * i + 2] - p[4 * i]) * f32(p[4 * i + 3] - p[4 * i + 1]))
      local s = ffi.C.sqrtf(area)
      local lvl = math.floor(f32(f32(lvl0 + ffi.C.log2f(f32(s / f32(s0)))) + eps))
      lvl = math.min(math.max(lvl, k_min), k_max)
      n = n + 1
      out[n] = lvl - k_min
    end
  end
  return out
end

-- features {t, ..., names = {...}}, boxes {[K_i, 4], ...}, image_sizes
-- {{h, w}, ...} -> [sum K_i, C, h, w]
function MSRA:forward(features, boxes, image_sizes)
  local wanted, x = {}, {}
  for _, n in ipairs(self.featmap_names) do wanted[n] = true end
  for i, t in ipairs(features) do if wanted[features.names[i]] then x[#x + 1] = t end end
  local max_h = 0
  for _, s in ipairs(image_sizes) do max_h = math.max(max_h, s[1]) end
  local scales, exps = {}, {}
  for i, t in ipairs(x) do scales[i], exps[i] = infer_scale(t, max_h) end
  local rois = ops.to_roi_format(boxes, "MultiScaleRoIAlign")
  local oh, ow = self.output_size[1], self.output_size[2]
  if #x == 1 then return ops.roi_align(x[1], rois, { oh, ow }, scales[1], self.sampling_ratio) end
  local k_min, k_max = -exps[1], -exps[#x]
  local levels = map_levels(boxes, k_min, k_max, self.canonical_scale, self.canonical_level)
  local R, C = rois.shape[1], x[1].shape[2]
  local counts = {}
  for _, l in ipairs(levels) do counts[l] = (counts[l] or 0) + 1 end
  for level = 0, #x - 1 do   -- every box on one level: its roi_align is the result, rows in order
    if R > 0 and counts[level] == R then
      return ops.roi_align(x[level + 1], rois, { oh, ow }, scales[level + 1], self.sampling_ratio)
    end
  end
  local result = Tensor.zeros({ R, C, oh, ow }, "float32")
  for level = 0, #x - 1 do
    local idx = {}
    for i, l in ipairs(levels) do if l == level then idx[#idx + 1] = i - 1 end end
    if #idx > 0 then
      local it = Tensor.from_table(idx, "int64")
      local pooled = ops.roi_align(x[level + 1], util.take(rois, it), { oh, ow }, scales[level + 1], self.sampling_ratio)
      util.put_rows(result, it, pooled)
    end
  end
  return result
end

function MSRA:repr()
  return string.format("MultiScaleRoIAlign(featmap_names=%s, output_size=(%d, %d), sampling_ratio=%d)",
                       py.value(self.featmap_names), self.output_size[1], self.output_size[2], self.sampling_ratio)
end

return M
