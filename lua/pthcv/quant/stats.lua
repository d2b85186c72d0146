-- lua/pthcv/quant/stats.lua: the observed values of one activation tensor
-- during calibration, and the range its 8-bit quantization covers.
--
-- A statistic keeps the exact minimum and maximum and an evenly spread
-- sample of the values (at most SAMPLE of them, reservoir-replaced once
-- full, with a fixed seed: the same inputs give the same ranges).
local ffi = require "ffi"

local M = {}
local SAMPLE = 65536
local PER_CALL = 8192   -- values sampled from one tensor

function M.new()
  return { min = math.huge, max = -math.huge, sample = {}, n = 0, seen = 0, seed = 12345 }
end

local function next_random(s)
  s.seed = (s.seed * 1103515245 + 12345) % 2147483648
  return s.seed
end

-- Adds a float32 tensor's values (a quantized one: its real values).
function M.add(s, t)
  if t.is_quantized then t = t:dequantize() end
  if t.dtype ~= "float32" then t = t:float() end
  local c = t:contiguous()
  local p = ffi.cast("const float *", c:data())
  local n = c.numel
  local mn, mx = s.min, s.max
  for i = 0, n - 1 do
    local v = p[i]
    if v < mn then mn = v end
    if v > mx then mx = v end
  end
  s.min, s.max = mn, mx
  local step = math.max(1, math.floor(n / PER_CALL))
  local sample = s.sample
  for i = 0, n - 1, step do
    s.seen = s.seen + 1
    if s.n < SAMPLE then
      s.n = s.n + 1
      sample[s.n] = p[i]
    else
      local j = next_random(s) % s.seen
      if j < SAMPLE then sample[j + 1] = p[i] end
    end
  end
end

local function sorted(s)
  local a = {}
  for i = 1, s.n do a[i] = s.sample[i] end
  table.sort(a)
  return a
end

local function percentile(a, q)
  if #a == 0 then return 0 end
  local pos = q / 100 * (#a - 1) + 1
  local i = math.floor(pos)
  local f = pos - i
  return i >= #a and a[#a] or a[i] * (1 - f) + a[i + 1] * f
end

-- TensorRT's entropy calibration on |x|: the threshold among the 2048-bin
-- histogram's edges whose distribution, merged into `levels` bins and
-- expanded back, diverges least from the clipped original. Exact zeros
-- (ReLU's) are left out: they are exact at any threshold, and their mass
-- would make clipping the tail look cheap.
local function entropy_threshold(a, levels)
  local BINS = 2048
  local top = 0
  for i = 1, #a do top = math.max(top, math.abs(a[i])) end
  if top == 0 then return 0 end
  local hist = {}
  for i = 1, BINS do hist[i] = 0 end
  for i = 1, #a do
    if a[i] ~= 0 then
      local b = math.min(BINS, math.floor(math.abs(a[i]) / top * BINS) + 1)
      hist[b] = hist[b] + 1
    end
  end
  local best, best_kl = BINS, math.huge
  for t = levels, BINS do
    -- reference: the first t bins, the outliers folded into the last
    local p, total = {}, 0
    for i = 1, t do p[i] = hist[i] end
    for i = t + 1, BINS do p[t] = p[t] + hist[i] end
    for i = 1, t do total = total + p[i] end
    -- candidate: t bins merged into `levels`, spread back over the non-empty bins
    local q = {}
    for i = 1, t do q[i] = 0 end
    local per = t / levels
    for j = 0, levels - 1 do
      local b0, b1 = math.floor(j * per) + 1, math.floor((j + 1) * per)
      if j == levels - 1 then b1 = t end
      local sum, nonzero = 0, 0
      for i = b0, b1 do
        sum = sum + hist[i]
        if hist[i] > 0 then nonzero = nonzero + 1 end
      end
      for i = b0, b1 do if hist[i] > 0 then q[i] = sum / nonzero end end
    end
    local qtotal = 0
    for i = 1, t do qtotal = qtotal + q[i] end
    local kl = 0
    for i = 1, t do
      if p[i] > 0 then
        local pi, qi = p[i] / total, q[i] / qtotal
        kl = kl + pi * math.log(pi / (qi > 0 and qi or 1e-12))
      end
    end
    if kl < best_kl then best_kl, best = kl, t end
  end
  return (best + 0.5) / BINS * top
end

-- The real range [lo, hi] (0 inside it) that 8 bits will cover.
function M.range(s, method, opts)
  local lo, hi = s.min, s.max
  if s.n == 0 or lo > hi then return 0, 0 end
  if method == "percentile" then
    local a, q = sorted(s), opts.percentile or 99.99
    hi = math.min(hi, percentile(a, q))
    lo = math.max(lo, percentile(a, 100 - q))
  elseif method == "entropy" and not s.model_input then
    local a = sorted(s)
    local t = entropy_threshold(a, 128)
    hi, lo = math.min(hi, t), math.max(lo, -t)
  end
  return math.min(lo, 0), math.max(hi, 0)
end

-- Scale and zero point of uint8 covering [lo, hi], as torch's observers
-- compute them (a range of zero gets scale 1).
function M.qparams(lo, hi)
  if hi - lo <= 0 then return 1.0, 0 end
  local scale = (hi - lo) / 255
  local zp = math.floor(-lo / scale + 0.5)
  return scale, math.max(0, math.min(255, zp))
end

return M
