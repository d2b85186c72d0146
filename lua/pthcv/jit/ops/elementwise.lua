-- lua/pthcv/jit/ops/elementwise.lua: torch's elementwise rules for the
-- interpreter's binary operators: scalars against scalars, float32 tensors
-- through the C kernels (pthcv_binary, pthcv_binary_scalar), and every
-- other combination (integer and bool tensors, 0-d tensors from
-- prim::NumToTensor and constants.pkl, comparisons) elementwise in Lua
-- with torch's type promotion and broadcasting. The Lua path serves the
-- small tensors of shape arithmetic and post-processing, not feature maps.
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"

local E = {}
local is_tensor = Tensor.is
local BIN = Tensor.binary_ops

local CATEGORY = {
  bool = 0, uint8 = 1, int8 = 1, int16 = 1, int32 = 1, int64 = 1,
  float16 = 2, bfloat16 = 2, float32 = 2, float64 = 2,
}
local WIDTH = { bool = 0, uint8 = 1, int8 = 1, int16 = 2, int32 = 3, int64 = 4,
                float16 = 1, bfloat16 = 1, float32 = 3, float64 = 4 }

local function category_of(v)
  if type(v) == "boolean" then return 0 end
  if type(v) == "number" then return v % 1 == 0 and 1 or 2 end
  return CATEGORY[v.dtype] or error("elementwise ops on " .. v.dtype .. " tensors are not supported", 0)
end

local function promote(d1, d2)
  if not d1 then return d2 end
  if not d2 then return d1 end
  if CATEGORY[d1] ~= CATEGORY[d2] then return CATEGORY[d1] > CATEGORY[d2] and d1 or d2 end
  return WIDTH[d1] >= WIDTH[d2] and d1 or d2
end
local DEFAULT = { [0] = "bool", "int64", "float32" }

-- torch's result dtype of a op b (torch.result_type): dimensioned tensors
-- decide; a 0-d tensor only when it is of a higher category (bool < int <
-- float), a Python scalar likewise, giving its category's default dtype.
function E.result_dtype(a, b)
  local dim, zero, wrapped
  for _, v in ipairs { a, b } do
    if is_tensor(v) then
      category_of(v)
      if v.ndim > 0 then dim = promote(dim, v.dtype) else zero = promote(zero, v.dtype) end
    else
      local c = category_of(v)
      if not wrapped or c > wrapped then wrapped = c end
    end
  end
  local res = dim
  if zero and (not res or CATEGORY[zero] > CATEGORY[res]) then res = promote(res, zero) end
  if wrapped and (not res or wrapped > CATEGORY[res]) then res = DEFAULT[wrapped] end
  return res
end

-- Broadcast shape of two shapes, or an error naming them.
local function broadcast(sa, sb)
  local n = math.max(#sa, #sb)
  local out = {}
  for i = 1, n do
    local x, y = sa[#sa - n + i] or 1, sb[#sb - n + i] or 1
    if x ~= y and x ~= 1 and y ~= 1 then
      error("The size of tensor a (" .. x .. ") must match the size of tensor b (" .. y .. ") at non-singleton dimension " .. (i - 1), 0)
    end
    out[i] = x == 1 and y or x
  end
  return out
end
E.broadcast = broadcast

-- Values of t as a contiguous float64 array and its shape.
local function doubles(t)
  local c = t:to("float64"):contiguous()
  return c:data(), c.shape, c
end

-- a op b elementwise in Lua: f(x, y) on doubles, the result of dtype out.
function E.lua_binary(a, b, f, out)
  local pa, sa, ka, pb, sb, kb
  if is_tensor(a) then pa, sa, ka = doubles(a) else sa = {} end
  if is_tensor(b) then pb, sb, kb = doubles(b) else sb = {} end
  local shape = broadcast(sa, sb)
  local n = #shape
  -- element strides of each input over the output's index space
  local function strides(s)
    local st, acc = {}, 1
    for i = #s, 1, -1 do st[i] = acc; acc = acc * s[i] end
    local full = {}
    for i = 1, n do
      local j = i - (n - #s)
      full[i] = (j >= 1 and s[j] ~= 1) and st[j] or 0
    end
    return full
  end
  local ta, tb = strides(sa), strides(sb)
  local y = Tensor.zeros(shape, out)
  local total = y.numel
  local res = ffi.new("double[?]", math.max(total, 1))
  local idx = {}
  for i = 1, n do idx[i] = 0 end
  local xa, xb = not pa and S.num(a) or nil, not pb and S.num(b) or nil
  for k = 0, total - 1 do
    local oa, ob = 0, 0
    for i = 1, n do oa = oa + idx[i] * ta[i]; ob = ob + idx[i] * tb[i] end
    res[k] = f(pa and pa[oa] or xa, pb and pb[ob] or xb)
    for i = n, 1, -1 do
      idx[i] = idx[i] + 1
      if idx[i] < shape[i] then break end
      idx[i] = 0
    end
  end
  local _ = ka and kb
  local src = Tensor.zeros(shape, "float64")
  if total > 0 then ffi.copy(src:data(), res, total * 8) end
  return src:to(out)
end

-- A one-element tensor's value, for 0-d operands against real tensors.
local function item(v) return is_tensor(v) and v.numel == 1 and v.ndim == 0 and v:item() or v end

-- a op b on 0-d operands, one of them a number prim::NumToTensor made a
-- tensor of (S.numbers): computed from the numbers, and remembered of the
-- result too, when it is an int64 or float64 (exact as a Lua number). Traced
-- code computes sizes so (torch.floor_divide(NumToTensor(size), c) before
-- int(...)); nil when this does not apply.
local function known_numbers(a, b, at, bt, f, out)
  local numbers = S.numbers
  local na, nb = at and numbers[a], bt and numbers[b]
  if not (na ~= nil and na ~= false or nb ~= nil and nb ~= false) then return nil end
  if (at and a.ndim ~= 0) or (bt and b.ndim ~= 0) or (out ~= "int64" and out ~= "float64") then return nil end
  local x = not at and S.num(a) or (na ~= nil and na ~= false) and S.num(na) or a:item()
  local y = not bt and S.num(b) or (nb ~= nil and nb ~= false) and S.num(nb) or b:item()
  local v = f(x, y)
  if type(v) ~= "number" or (out == "int64" and (v % 1 ~= 0 or math.abs(v) >= 2 ^ 53)) then return nil end
  local t = Tensor.from_table(v, out)
  numbers[t] = v
  return t
end

-- a op b for the arithmetic ops: BIN code for the C kernels, f for Lua,
-- scalar for two scalars; division always gives floats.
function E.binary(a, b, code, f, scalar, true_division)
  local at, bt = is_tensor(a), is_tensor(b)
  if not at and not bt then return scalar(a, b) end
  if (at and a.ndim == 0) or (bt and b.ndim == 0) then
    local out = E.result_dtype(a, b)
    if true_division and CATEGORY[out] < 2 then out = "float32" end
    local t = known_numbers(a, b, at, bt, f, out)
    if t then return t end
  end
  -- the common case first: float32 feature maps, or one and a number
  if code and at and a.dtype == "float32" and a.ndim > 0 and ((bt and b.dtype == "float32" and b.ndim > 0)
     or type(b) == "number") then
    return Tensor.binary(a, b, code)
  end
  -- a 0-d operand against a dimensioned float32 tensor is a scalar
  if at and bt and a.ndim > 0 and b.ndim == 0 and a.dtype == "float32" then b, bt = item(b), false end
  if at and bt and b.ndim > 0 and a.ndim == 0 and b.dtype == "float32" then a, at = item(a), false end
  local out = E.result_dtype(a, b)
  if true_division and CATEGORY[out] < 2 then out = "float32" end
  if code and out == "float32" and (not at or a.dtype == "float32") and (not bt or b.dtype == "float32")
     and (at or type(a) == "number") and (bt or type(b) == "number") then
    return Tensor.binary(a, b, code)
  end
  return E.lua_binary(a, b, f, out)
end

E.BIN = BIN
E.category_of = category_of
E.item = item
return E
