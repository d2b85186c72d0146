-- spec/math_support.lua: what spec/math_spec.lua and spec/yolo_decode_spec.lua
-- share (not a spec itself): exact and ulp comparisons of tensors, index
-- shifts, fresh fixtures from torch.
local support = require "support"
local pthcv = require "pthcv"
local ffi = require "ffi"
local assert = require "luassert"

local M = {}

local bits = ffi.new("union { float f; uint32_t u; }")
local function float_bits(v) bits.f = v; return bits.u end
-- the distance to the next float32 away from zero, at v
local function spacing(v)
  bits.f = v
  bits.u = bits.u + 1
  return math.abs(bits.f - v)
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
      ok = (a ~= a and b ~= b) or float_bits(a) == float_bits(b)
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
