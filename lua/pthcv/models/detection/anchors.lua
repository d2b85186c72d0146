-- lua/pthcv/models/detection/anchors.lua: torchvision's anchor generators
-- (anchor_utils.py), in float32 with its formulas.
--
-- AnchorGenerator(sizes, aspect_ratios): per feature map, cell anchors
-- round([-w, -h, w, h] / 2) with h = size * sqrt(ratio), w = size / sqrt(ratio)
-- (float32, ratios outer, sizes inner), shifted to every location
-- (x * stride, y * stride; stride = image size // map size), locations
-- row-major, cell anchors innermost.
-- DefaultBoxGenerator(aspect_ratios, ...): SSD's default boxes, centres
-- ((i + 0.5) / f) and sizes per level (scales s_k, sqrt(s_k s_k+1), and
-- s_k * sqrt(ar) by s_k / sqrt(ar) both ways), in (x1, y1, x2, y2) pixels.
local ffi = require "ffi"
local nn = require "pthcv.nn"
local Tensor = require "pthcv.tensor"
local util = require "pthcv.models.detection.util"
local py = require "pthcv.nn.repr"

local f32, round_even = util.f32, util.round_even
local M = {}

local AnchorGenerator = nn.class("AnchorGenerator", nil,
  { torch_class = "torchvision.models.detection.anchor_utils.AnchorGenerator" })
M.AnchorGenerator = AnchorGenerator

-- sizes: {{32, 64}, {128}, ...} one list per feature map (or {32, 64, ...}:
-- one size per map); aspect_ratios likewise (or one list for every map)
function AnchorGenerator:__init(sizes, aspect_ratios)
  sizes = sizes or { { 128, 256, 512 } }
  aspect_ratios = aspect_ratios or { { 0.5, 1.0, 2.0 } }
  if type(sizes[1]) ~= "table" then
    local s = {}
    for i, v in ipairs(sizes) do s[i] = { v } end
    sizes = s
  end
  if type(aspect_ratios[1]) ~= "table" then
    local a = {}
    for i = 1, #sizes do a[i] = aspect_ratios end
    aspect_ratios = a
  end
  self.sizes, self.aspect_ratios = sizes, aspect_ratios
  self.cell_anchors = {}
  for i = 1, #sizes do self.cell_anchors[i] = M.generate_anchors(sizes[i], aspect_ratios[i]) end
end

-- {{x1, y1, x2, y2}, ...}: the cell anchors of one map
function M.generate_anchors(scales, aspect_ratios)
  local out = {}
  for _, ar in ipairs(aspect_ratios) do
    local h_ratio = f32(math.sqrt(f32(ar)))
    local w_ratio = f32(1 / h_ratio)
    for _, s in ipairs(scales) do
      local ws, hs = f32(w_ratio * f32(s)), f32(h_ratio * f32(s))
      out[#out + 1] = { round_even(f32(-ws / 2)), round_even(f32(-hs / 2)), round_even(f32(ws / 2)),
                        round_even(f32(hs / 2)) }
    end
  end
  return out
end

function AnchorGenerator:num_anchors_per_location()
  local out = {}
  for i = 1, #self.sizes do out[i] = #self.sizes[i] * #self.aspect_ratios[i] end
  return out
end

-- anchors of every map concatenated: float32 [sum H W A, 4]; image_size
-- {H, W} of the padded batch, grid_sizes {{h, w}, ...} of the feature maps
function AnchorGenerator:anchors(image_size, grid_sizes)
  if #grid_sizes ~= #self.cell_anchors then
    error(string.format("pthcv: AnchorGenerator: %d feature maps for %d anchor sizes", #grid_sizes,
                        #self.cell_anchors), 2)
  end
  local total = 0
  for i, g in ipairs(grid_sizes) do total = total + g[1] * g[2] * #self.cell_anchors[i] end
  local out = Tensor.zeros({ total, 4 }, "float32")
  local p, row = out:data(), 0
  for i, g in ipairs(grid_sizes) do
    local sy, sx = math.floor(image_size[1] / g[1]), math.floor(image_size[2] / g[2])
    local cells = self.cell_anchors[i]
    for y = 0, g[1] - 1 do
      for x = 0, g[2] - 1 do
        local ox, oy = x * sx, y * sy
        for _, c in ipairs(cells) do
          p[4 * row], p[4 * row + 1], p[4 * row + 2], p[4 * row + 3] = ox + c[1], oy + c[2], ox + c[3], oy + c[4]
          row = row + 1
        end
      end
    end
  end
  return out
end

function AnchorGenerator:forward(image_size, grid_sizes) return self:anchors(image_size, grid_sizes) end

-- ---- DefaultBoxGenerator ----------------------------------------------------------
local DefaultBoxGenerator = nn.class("DefaultBoxGenerator", nil,
  { torch_class = "torchvision.models.detection.anchor_utils.DefaultBoxGenerator" })
M.DefaultBoxGenerator = DefaultBoxGenerator

-- DefaultBoxGenerator(aspect_ratios, {min_ratio = 0.15, max_ratio = 0.9,
-- scales, steps, clip = true})
function DefaultBoxGenerator:__init(aspect_ratios, o)
  o = o or {}
  local min_ratio, max_ratio = o.min_ratio or 0.15, o.max_ratio or 0.9
  self.aspect_ratios, self.steps = aspect_ratios, o.steps
  self.clip = o.clip ~= false
  local n = #aspect_ratios
  if o.steps and #o.steps ~= n then error("pthcv: DefaultBoxGenerator: aspect_ratios and steps differ in length", 3) end
  if o.scales then
    self.scales = o.scales
  elseif n > 1 then
    self.scales = {}
    for k = 0, n - 1 do self.scales[k + 1] = min_ratio + (max_ratio - min_ratio) * k / (n - 1.0) end
    self.scales[n + 1] = 1.0
  else
    self.scales = { min_ratio, max_ratio }
  end
  self._wh_pairs = {}
  for k = 1, n do
    local s = self.scales[k]
    local sp = math.sqrt(s * self.scales[k + 1])
    local pairs_k = { { s, s }, { sp, sp } }
    for _, ar in ipairs(aspect_ratios[k]) do
      local sq = math.sqrt(ar)
      local w, h = s * sq, s / sq
      pairs_k[#pairs_k + 1] = { w, h }
      pairs_k[#pairs_k + 1] = { h, w }
    end
    for _, wh in ipairs(pairs_k) do
      for j = 1, 2 do
        wh[j] = f32(wh[j])
        if self.clip then wh[j] = math.min(math.max(wh[j], 0), 1) end
      end
    end
    self._wh_pairs[k] = pairs_k
  end
end

function DefaultBoxGenerator:num_anchors_per_location()
  local out = {}
  for i, r in ipairs(self.aspect_ratios) do out[i] = 2 + 2 * #r end
  return out
end

-- default boxes of every map in pixels (x1, y1, x2, y2): float32 [sum, 4]
function DefaultBoxGenerator:anchors(image_size, grid_sizes)
  local total = 0
  for k, g in ipairs(grid_sizes) do total = total + g[1] * g[2] * #self._wh_pairs[k] end
  local out = Tensor.zeros({ total, 4 }, "float32")
  local p, row = out:data(), 0
  local W, H = f32(image_size[2]), f32(image_size[1])
  local box = ffi.new("float[4]")
  for k, g in ipairs(grid_sizes) do
    local xf, yf = g[2], g[1]
    if self.steps then xf, yf = image_size[2] / self.steps[k], image_size[1] / self.steps[k] end
    xf, yf = f32(xf), f32(yf)
    for y = 0, g[1] - 1 do
      local cy = f32((y + 0.5) / yf)
      for x = 0, g[2] - 1 do
        local cx = f32((x + 0.5) / xf)
        for _, wh in ipairs(self._wh_pairs[k]) do
          local hw, hh = f32(0.5 * wh[1]), f32(0.5 * wh[2])
          box[0], box[1], box[2], box[3] = cx - hw, cy - hh, cx + hw, cy + hh
          p[4 * row], p[4 * row + 1] = box[0] * W, box[1] * H
          p[4 * row + 2], p[4 * row + 3] = box[2] * W, box[3] * H
          row = row + 1
        end
      end
    end
  end
  return out
end

function DefaultBoxGenerator:forward(image_size, grid_sizes) return self:anchors(image_size, grid_sizes) end

function DefaultBoxGenerator:repr()
  return string.format("DefaultBoxGenerator(aspect_ratios=%s, clip=%s, scales=%s, steps=%s)",
                       py.value(self.aspect_ratios), py.value(self.clip), py.value(self.scales),
                       self.steps and py.value(self.steps) or "None")
end

return M
