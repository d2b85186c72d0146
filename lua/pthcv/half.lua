-- lua/pthcv/half.lua: float16 weights.
--
-- to_half(name, t): t as float16 for writing (`pthcv convert --half`):
-- float32, float64 and bfloat16 tensors are converted (round to nearest
-- even), other dtypes are returned unchanged. A value beyond float16's
-- range (|v| > 65504) would become infinite: such a tensor is refused,
-- naming it.
local M = {}

M.MAX = 65504

local CONVERTED = { float32 = true, float64 = true, bfloat16 = true }

function M.convertible(t) return CONVERTED[t.dtype] == true end

function M.to_half(name, t)
  if not M.convertible(t) then return t end
  if t.numel > 0 then
    local lo, hi = t:min(), t:max()
    if hi > M.MAX or lo < -M.MAX then
      error(string.format("pthcv: --half: tensor '%s' holds %g, beyond float16's range (65504)", name,
                          hi > M.MAX and hi or lo), 0)
    end
  end
  return t:to("float16")
end

return M
