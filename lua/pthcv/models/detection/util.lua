-- lua/pthcv/models/detection/util.lua: small tensor steps the detectors'
-- post-processing shares (selections by threshold, rows by index, lists of
-- tensors joined), written as torchvision writes them with torch tensors.
-- Comparisons with Python numbers happen in float32 as torch does them:
-- the threshold is rounded to float32 first (M.f32).
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local ops = require "pthcv.ops"
local release = require "pthcv.nn.release"

local M = {}

local box = ffi.new("float[1]")
-- x rounded to the nearest float32 (as torch casts a Python number for a
-- float32 tensor op)
function M.f32(x)
  box[0] = x
  return box[0]
end

M.take = ops.take

-- round half to even, as torch.round
function M.round_even(x)
  local f = math.floor(x)
  local d = x - f
  if d > 0.5 or (d == 0.5 and f % 2 == 1) then return f + 1 end
  return f
end

-- int64 [K]: the 0-based positions of the elements of a 1-d float32 tensor
-- that are > thresh (>= when inclusive): torch.where(t > thresh)[0]
function M.where(t, thresh, inclusive)
  local c = t:contiguous()
  local p, n = c:data(), c.numel
  local lim = M.f32(thresh)
  local idx, k = {}, 0
  for i = 0, n - 1 do
    local v = p[i]
    if v > lim or (inclusive and v == lim) then
      k = k + 1
      idx[k] = i
    end
  end
  local out = Tensor.zeros({ k }, "int64")
  local o = out:data()
  for i = 1, k do o[i - 1] = idx[i] end
  return out
end

-- int64 [n] filled with v
function M.full_int64(n, v)
  return Tensor.full({ n }, v, "int64")
end

-- int64 [n]: start, start + 1, ...
function M.arange_int64(n, start)
  local t = Tensor.zeros({ n }, "int64")
  local p = t:data()
  for i = 0, n - 1 do p[i] = (start or 0) + i end
  return t
end

-- the tensors of a list joined along dim 0; `empty_shape` ({0, 4}...) and
-- dtype when the list is empty
function M.cat(list, empty_shape, dtype)
  if #list == 0 then return Tensor.zeros(empty_shape, dtype or "float32") end
  if #list == 1 then return list[1] end
  if list[1].dtype == "float32" then return F.cat(list, 0) end
  -- other dtypes (int64 labels...): rows copied
  local rows = 0
  for _, t in ipairs(list) do rows = rows + t.shape[1] end
  local shape = list[1].shape
  shape[1] = rows
  local out = Tensor.zeros(shape, list[1].dtype)
  local dst, at = ffi.cast("uint8_t *", out:data()), 0
  for _, t in ipairs(list) do
    local c = t:contiguous()
    if c.nbytes > 0 then ffi.copy(dst + at, c:data(), c.nbytes) end
    at = at + c.nbytes
  end
  return out
end

-- dst[idx[i]] = src[i] for the rows of two contiguous tensors of one dtype
-- (torch's dst[idx] = src)
function M.put_rows(dst, idx, src)
  local s = src:contiguous()
  local rows = dst.shape[1]
  local row_bytes = rows > 0 and dst.nbytes / rows or 0
  local dp, sp, ip = ffi.cast("uint8_t *", dst:data()), ffi.cast("const uint8_t *", s:data()), idx:data()
  for i = 0, idx.numel - 1 do
    local r = tonumber(ip[i])
    assert(r >= 0 and r < rows, "put_rows: index out of range")
    ffi.copy(dp + r * row_bytes, sp + i * row_bytes, row_bytes)
  end
  return dst
end

-- the tensors of a list joined along torch's (0-based) dim
function M.cat_dim(list, dim)
  if #list == 1 then return list[1] end
  return F.cat(list, dim)
end

-- int64 [n] with fn(value) applied to each element of an int64 tensor
function M.map_int64(t, fn)
  local c = t:contiguous()
  local out = Tensor.zeros({ c.numel }, "int64")
  local p, o = c:data(), out:data()
  for i = 0, c.numel - 1 do o[i] = fn(p[i]) end
  return out
end

-- x [N, A*C, H, W] -> [N, H*W*A, C] (torchvision's permute_and_flatten)
function M.permute_and_flatten(x, C)
  local n, ac, h, w = unpack(x.shape)
  local v = x:view(n, ac / C, C, h, w)
  local p = v:permute(1, 4, 5, 2, 3)
  local y = p:reshape(n, -1, C)
  -- the views are references to x's bytes: freed now, not at the next collection
  release(v, y)
  release(p, y)
  return y
end

-- the list of images [C, H, W] of a call: one image, a batch [N, C, H, W]
-- or a list of images
function M.image_list(images, who)
  if Tensor.is(images) then
    if images.ndim == 3 then return { images } end
    if images.ndim == 4 then
      local out = {}
      for i = 1, images.shape[1] do out[i] = images:narrow(1, i, 1):squeeze(1) end
      return out
    end
  elseif type(images) == "table" and #images > 0 then
    for i, img in ipairs(images) do
      if not Tensor.is(img) or img.ndim ~= 3 then
        error(string.format("pthcv: %s: image %d must be a Tensor [C, H, W], got %s", who, i, tostring(img)), 3)
      end
    end
    return images
  end
  error("pthcv: " .. who .. ": expects an image Tensor [C, H, W] (float32, RGB in 0..1), a batch [N, C, H, W] or "
        .. "a list of images, got " .. tostring(images), 3)
end

-- ---- stage times -----------------------------------------------------------------------
-- When M.timer is a table, the models add the seconds they spend in
-- "preprocess" (the transform) and "network" (backbone and heads) to it;
-- the rest of a call is post-processing (anchors, NMS, boxes mapped back,
-- masks pasted). pthcv.image.pipeline reads it for its status line.
local now = require "pthcv.nn.clock"
M.timer = nil
M.now = now
-- adds the time since t0 to stage `name` (when timing)
function M.span(name, t0)
  local t = M.timer
  if t then t[name] = (t[name] or 0) + (now() - t0) end
end

-- The start of every detector's forward: the list of images, their sizes
-- {h, w}, and the batch and resized sizes from the model's transform
-- (timed as "preprocess").
function M.prepare(model, images, who)
  images = M.image_list(images, who)
  local original = {}
  for i, img in ipairs(images) do original[i] = { img.shape[2], img.shape[3] } end
  local t0 = now()
  local batch, sizes = model.transform(images)
  M.span("preprocess", t0)
  return images, original, batch, sizes
end

-- options with torchvision's names over defaults; unknown names are errors
function M.options(who, defaults, given)
  local o = {}
  for k, v in pairs(defaults) do o[k] = v end
  for k, v in pairs(given or {}) do
    if defaults[k] == nil and not M.common_options[k] then
      local names = {}
      for n in pairs(defaults) do names[#names + 1] = n end
      table.sort(names)
      error("pthcv: " .. who .. ": unknown option '" .. tostring(k) .. "' (known: " .. table.concat(names, ", ") .. ")", 3)
    end
    o[k] = v
  end
  return o
end
-- accepted by every builder (pthcv's own, not torchvision's)
M.common_options = { weights = true }

return M
