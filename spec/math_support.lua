-- spec/math_support.lua: what spec/math_spec.lua and spec/yolo_decode_spec.lua
-- share (not a spec itself): exact and ulp comparisons of tensors, index
-- shifts, fresh fixtures from torch.
local support = require "support"
local pthcv = require "pthcv"
local assert = require "luassert"
local ffi = require "ffi"

local M = {}

-- the distance to the next float32 away from zero, at v (a float32 value):
-- 2^(e-24) for v = m * 2^e with 0.5 <= |m| < 1, never below the smallest
-- subnormal.
local function spacing(v)
  local _, e = math.frexp(v)
  return math.max(2 ^ (e - 24), 2 ^ -149)
end

-- float32 elements are compared by their bits and read as numbers only when
-- they are not NaN: LuaJIT takes some NaN patterns for other types (torch's
-- max over a NaN stores 0xFFFFFFFF, which read as a float is nil), and read
-- them so, this helper failed 1 run in 30 (whether the loop ran compiled).
local bits32 = ffi.typeof("uint32_t *")
local function magnitude(u) return u % 0x80000000 end -- the bits without the sign
local function is_nan(u) return magnitude(u) > 0x7F800000 end
local function show(p, u, i)
  if is_nan(u[i]) then return string.format("nan (0x%08x)", u[i]) end
  return tostring(p[i])
end

-- got and want: same dtype and shape; float32 elements the same bits (NaN
-- matches any NaN; +0 and -0 differ) or, with ulp, within ulp spacings of a
-- finite want; others equal.
function M.assert_same(got, want, ulp, what)
  assert.is_true(pthcv.is_tensor(got), what .. ": not a tensor (" .. tostring(got) .. ")")
  assert.are.equal(want.dtype, got.dtype, what .. ": dtype")
  assert.are.same(want.shape, got.shape, what .. ": shape")
  -- g and w stay referenced while their data pointers are read
  local g, w = got:contiguous(), want:contiguous()
  local pg, pw = g:data(), w:data()
  local float = want.dtype == "float32"
  local ug, uw = ffi.cast(bits32, pg), ffi.cast(bits32, pw)
  for i = 0, want.numel - 1 do
    local ok
    if float then
      local x, y = ug[i], uw[i]
      ok = x == y or (is_nan(x) and is_nan(y))
           or (ulp ~= nil and not is_nan(x) and magnitude(y) < 0x7F800000
               and math.abs(pg[i] - pw[i]) <= ulp * spacing(pw[i]))
    else
      ok = pg[i] == pw[i]
    end
    if not ok then
      local a = float and show(pg, ug, i) or tostring(pg[i])
      local b = float and show(pw, uw, i) or tostring(pw[i])
      error(string.format("%s: element %d is %s, want %s%s", what, i, a, b,
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
