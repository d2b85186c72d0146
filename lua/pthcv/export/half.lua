-- lua/pthcv/export/half.lua: float16 weights.
--
-- to_half(name, t): t as float16 for writing (`pthcv convert --half`):
-- float32, float64 and bfloat16 tensors are converted (round to nearest
-- even), other dtypes are returned unchanged. A value beyond float16's
-- range (a finite |v| > 65504) would become infinite: such a tensor is
-- refused, naming it (infinities and NaNs are kept).
local bit = require "bit"

local M = {}

M.MAX = 65504

local CONVERTED = { float32 = true, float64 = true, bfloat16 = true }

function M.convertible(t) return CONVERTED[t.dtype] == true end

function M.to_half(name, t)
  if not M.convertible(t) then return t end
  local h = t:to("float16")
  -- a finite value that became infinite was beyond the range
  local src = t.dtype == "bfloat16" and t:float() or t:contiguous()
  local p, q = src:data(), h:contiguous():data()
  for i = 0, t.numel - 1 do
    if bit.band(q[i], 0x7fff) == 0x7c00 and p[i] == p[i] and p[i] ~= math.huge and p[i] ~= -math.huge then
      error(string.format("pthcv: --half: tensor '%s' holds %g, beyond float16's range (65504)", name, p[i]), 0)
    end
  end
  return h
end

return M
