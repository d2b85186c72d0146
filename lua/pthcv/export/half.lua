-- lua/pthcv/export/half.lua: floating tensors in another floating dtype.
--
-- cast(name, t, dtype): t as dtype (float32, float16 or bfloat16; `pthcv
-- convert --dtype`): floating tensors (float16/32/64, bfloat16, float8
-- kinds) are converted (round to nearest even), other dtypes are returned
-- unchanged. A finite value beyond the target's range (|v| > 65504 for
-- float16) would become infinite: such a tensor is refused, naming it
-- (infinities and NaNs are kept).
-- to_half(name, t): cast(name, t, "float16") (`pthcv convert --half`).
local M = {}

M.MAX = 65504

local FLOATING = { float32 = true, float64 = true, float16 = true, bfloat16 = true, float8_e4m3fn = true,
                   float8_e5m2 = true, float8_e4m3fnuz = true, float8_e5m2fnuz = true }

function M.convertible(t) return FLOATING[t.dtype] == true end

function M.cast(name, t, dtype)
  if not M.convertible(t) or t.dtype == dtype then return t end
  local r = t:to(dtype)
  -- a finite value that became infinite was beyond the range
  -- the float64 copies stay referenced while p and q point into them: a
  -- collection (pthcv.tensor paces one by storage bytes) would free them
  local td, rd = t:double(), r:double()
  local p, q = td:data(), rd:data()
  for i = 0, t.numel - 1 do
    local a, b = p[i], q[i]
    if (b == math.huge or b == -math.huge) and a == a and a ~= math.huge and a ~= -math.huge then
      error(string.format("pthcv: tensor '%s' holds %g, beyond %s's range%s", name, a, dtype,
                          dtype == "float16" and " (65504)" or ""), 0)
    end
  end
  return r
end

function M.to_half(name, t) return M.cast(name, t, "float16") end

return M
