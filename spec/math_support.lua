-- spec/math_support.lua: what spec/math_spec.lua and spec/yolo_decode_spec.lua
-- share (not a spec itself): exact and ulp comparisons of tensors, index
-- shifts, fresh fixtures from torch.
local support = require "support"
local pthcv = require "pthcv"
local assert = require "luassert"

local M = {}

-- the distance to the next float32 away from zero, at v (a float32 value):
-- 2^(e-24) for v = m * 2^e with 0.5 <= |m| < 1, never below the smallest
-- subnormal. Plain arithmetic: type punning through an ffi union here once
-- read nil under the JIT on Debian's LuaJIT 2.1.0-beta3 (a flaky
-- "cannot convert 'nil' to 'float'" in max_all, 1 run in 3).
local function spacing(v)
  local _, e = math.frexp(v)
  return math.max(2 ^ (e - 24), 2 ^ -149)
end
-- same float32 bits: equal values with the same sign (+0 and -0 differ)
local function same_float(a, b)
  return a == b and (a ~= 0 or 1 / a == 1 / b)
end

-- got and want: same dtype and shape; float32 elements the same bits (NaN
-- matches any NaN) or, with ulp, within ulp spacings of want; others equal.
function M.assert_same(got, want, ulp, what)
  assert.is_true(pthcv.is_tensor(got), what .. ": not a tensor (" .. tostring(got) .. ")")
  assert.are.equal(want.dtype, got.dtype, what .. ": dtype")
  assert.are.same(want.shape, got.shape, what .. ": shape")
  local g, w = got:contiguous(), want:contiguous()
  local pg, pw = g:data(), w:data()
  local float = want.dtype == "float32"
  for i = 0, want.numel - 1 do
    local a, b = pg[i], pw[i]
    local ok
    if float then
      ok = (a ~= a and b ~= b) or same_float(a, b)
           or (ulp ~= nil and b == b and math.abs(b) < math.huge and math.abs(a - b) <= ulp * spacing(b))
    else
      ok = a == b
    end
    if not ok then
      error(string.format("%s: element %d is %s, want %s%s", what, i, tostring(a), tostring(b),
                          ulp and (" (within " .. ulp .. " ulp)") or ""), 2)
    end
  end
end

-- an int64 tensor with n added to every element (a copy)
function M.plus(t, n)
  local c = t:clone()
  local p = c:data()
  for i = 0, c.numel - 1 do p[i] = p[i] + n end
  return c
end

-- torch's answers written afresh into build/ (nil when torch is missing or
-- the generator fails: the spec then reports what it ran on)
function M.fresh_fixtures(name)
  if support.run("/usr/bin/python3 -c 'import torch'") ~= 0 then return nil end
  local dir = support.root .. "/build/fixtures-" .. name
  os.execute("rm -rf " .. support.shell_quote(dir))
  local c, _, e = support.run("/usr/bin/python3 " .. support.shell_quote(support.root ..
    "/spec/fixtures/make_math_fixtures.py") .. " " .. support.shell_quote(dir))
  assert(c == 0, "make_math_fixtures.py failed: " .. e)
  return dir
end

return M
