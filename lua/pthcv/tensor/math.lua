-- lua/pthcv/tensor/math.lua: elementwise math, comparisons, where, max/min,
-- sort and argsort along a dim, gather and index_select, as Tensor methods
-- and pthcv.F functions over the C kernels (csrc/kernels/ops_math*.c).
--
--   local conf = F.sigmoid(x):narrow(2, 5, 1)          -- (methods count dims from 1)
--   local keep = F.gt(conf, 0.25)                       -- a bool mask
--   local score, class = F.max(F.where(keep, conf, 0), 1)   -- F: torch's 0-based dims and indices
--   local order = F.argsort(score, -1, true)            -- descending, ties keep their order
--   local best = F.index_select(boxes, 0, order)
--
-- The two conventions are pthcv's usual ones: pthcv.F takes torch's
-- 0-based dims and gives and takes torch's 0-based indices; Tensor methods
-- count dims and indices from 1 (x:max(2) returns 1-based int64 indices, as
-- x:topk and x:argmax do, and x:gather / x:index_select take 1-based ones).
-- Indices are int64 tensors. A Lua number next to a tensor is a scalar of
-- the type torch gives it: the tensor's float type, int64 for an integer
-- against an integer tensor, float32 otherwise (two numbers in where:
-- float32). Results are new tensors; float32 is the compute type.
--
-- The module installs into Tensor.methods (methods) and pthcv.F
-- (functional); tensor/init.lua and nn/functional.lua call those.
local ffi = require "ffi"
local core = require "pthcv.core"
local C = core.C

local M = {}
local T -- the Tensor module, given to M.methods

local UNARY = { exp = C.PTHCV_MATH_EXP, log = C.PTHCV_MATH_LOG, sqrt = C.PTHCV_MATH_SQRT,
                rsqrt = C.PTHCV_MATH_RSQRT, abs = C.PTHCV_MATH_ABS, floor = C.PTHCV_MATH_FLOOR,
                ceil = C.PTHCV_MATH_CEIL, round = C.PTHCV_MATH_ROUND, sign = C.PTHCV_MATH_SIGN,
                reciprocal = C.PTHCV_MATH_RECIPROCAL }
-- the ones torch computes in float32 for integer and bool inputs
local TO_FLOAT = { exp = true, log = true, sqrt = true, rsqrt = true, reciprocal = true }
-- the ones that leave integers unchanged
local INT_IDENTITY = { floor = true, ceil = true, round = true }
local COMPARE = { eq = C.PTHCV_CMP_EQ, ne = C.PTHCV_CMP_NE, lt = C.PTHCV_CMP_LT, le = C.PTHCV_CMP_LE,
                  gt = C.PTHCV_CMP_GT, ge = C.PTHCV_CMP_GE, logical_and = C.PTHCV_LOGICAL_AND,
                  logical_or = C.PTHCV_LOGICAL_OR, logical_xor = C.PTHCV_LOGICAL_XOR }
-- a < b is b > a: the op for a scalar on the left
local SWAPPED = { lt = "gt", gt = "lt", le = "ge", ge = "le" }
M.UNARY, M.COMPARE = UNARY, COMPARE

local function result(r, what)
  if r == nil then core.fail(what) end
  return T.wrap(r, true)
end

local function check_tensor(x, fname, what)
  if not T.is(x) then
    error(string.format("pthcv: %s: %s must be a Tensor, got %s", fname, what or "input", type(x)), 4)
  end
  return x
end

-- A Lua value next to tensor `like` as the 0-d tensor torch would make of it.
local function scalar(v, like, fname)
  if type(v) == "boolean" then return T.from_table(v and 1 or 0, "bool") end
  if type(v) ~= "number" then
    error(string.format("pthcv: %s: expected a Tensor or a number, got %s", fname, type(v)), 4)
  end
  local dtype = "float32"
  if like and like.is_floating_point then
    if like.dtype == "float64" then dtype = "float64" end
  elseif like and v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
    dtype = "int64"
  end
  return T.from_table(v, dtype)
end

-- both operands as tensors (at least one must be one)
local function operands(a, b, fname)
  local ta, tb = T.is(a), T.is(b)
  if not ta and not tb then error("pthcv: " .. fname .. ": needs a tensor operand", 4) end
  if not ta then a = scalar(a, b, fname) end
  if not tb then b = scalar(b, a, fname) end
  return a, b
end

-- ---- the operations (dims 0-based, index base 0 or 1) ----------------------------
local function unary(x, name)
  check_tensor(x, name)
  if not x.is_floating_point then
    if TO_FLOAT[name] then
      x = x:float()
    elseif INT_IDENTITY[name] then
      return x:clone()
    end
  end
  return result(C.pthcv_unary(x.ct, UNARY[name]), name)
end

-- pow(tensor, number), pow(tensor, tensor), pow(number, tensor); float32
local function pow(a, b)
  if T.is(a) and type(b) == "number" then return result(C.pthcv_pow_scalar(a.ct, b), "pow") end
  check_tensor(b, "pow", "exponent")
  if not T.is(a) then a = scalar(a, nil, "pow") end
  return result(C.pthcv_pow(a.ct, b.ct), "pow")
end

local function compare(a, b, name)
  if not T.is(a) and SWAPPED[name] then a, b, name = b, a, SWAPPED[name] end
  a, b = operands(a, b, name)
  return result(C.pthcv_compare(a.ct, b.ct, COMPARE[name]), name)
end

local function logical_not(x)
  return result(C.pthcv_logical_not(check_tensor(x, "logical_not").ct), "logical_not")
end

local function where(cond, a, b)
  check_tensor(cond, "where", "condition")
  if not T.is(a) and not T.is(b) then
    a, b = scalar(a, nil, "where"), scalar(b, nil, "where")
  else
    a, b = operands(a, b, "where")
  end
  return result(C.pthcv_where(cond.ct, a.ct, b.ct), "where")
end

local out_values, out_indices = ffi.new("pthcv_tensor *[1]"), ffi.new("pthcv_tensor *[1]")

-- values and indices along dim d (0-based)
local function max_dim(x, d, keepdim, find_min, base)
  local status = C.pthcv_max_dim(x.ct, d, keepdim and 1 or 0, find_min and 1 or 0, base, out_values, out_indices)
  if status ~= 0 then core.fail(find_min and "min" or "max") end
  return T.wrap(out_values[0], true), T.wrap(out_indices[0], true)
end

local function sort(x, d, descending, base, want_values)
  local status = C.pthcv_sort(x.ct, d, descending and 1 or 0, base, want_values and out_values or nil, out_indices)
  if status ~= 0 then core.fail("sort") end
  local idx = T.wrap(out_indices[0], true)
  if want_values then return T.wrap(out_values[0], true), idx end
  return idx
end

-- an index argument: an int tensor, or a Lua list of numbers (made int64)
local function index_arg(index, fname)
  if T.is(index) then return index end
  if type(index) == "table" then return T.from_table(index, "int64") end
  if type(index) == "number" then return T.from_table(index, "int64") end
  error("pthcv: " .. fname .. ": index must be an int64 Tensor or a list of numbers, got " .. type(index), 4)
end

local function gather(x, d, index, base)
  local k = index_arg(index, "gather")
  return result(C.pthcv_gather(x.ct, d, k.ct, base), "gather")
end

local function index_select(x, d, index, base)
  local k = index_arg(index, "index_select")
  return result(C.pthcv_index_select(x.ct, d, k.ct, base), "index_select")
end

-- The value dims of the F and method forms: 0-based, where a 0-d tensor
-- takes 0 and -1 (torch); methods' 1-based dims (negative from the end).
local function dim_of(x, d, fname, one_based)
  if type(d) ~= "number" or d % 1 ~= 0 then
    error("pthcv: " .. fname .. ": dim must be an integer, got " .. tostring(d), 3)
  end
  local nd = x.ndim
  local lo, hi = (one_based and 1 or 0), (one_based and nd or nd - 1)
  if nd == 0 and (d == -1 or d == lo) then return 0 end
  if d < 0 then d = d + nd + lo end
  if d < lo or d > hi then
    error(string.format("pthcv: %s: dim %d out of range for a %d-d tensor", fname, d, nd), 3)
  end
  return d - lo
end
M.dim_of = dim_of

-- ---- Tensor methods (1-based dims and indices) -----------------------------------
function M.methods(Tensor)
  T = Tensor
  local methods = Tensor.methods
  for name in pairs(UNARY) do methods[name] = function(x) return unary(x, name) end end
  for name in pairs(COMPARE) do methods[name] = function(a, b) return compare(a, b, name) end end
  methods.logical_not = logical_not
  methods.pow = pow
  -- x:where(cond, other): x where cond holds, else other (torch's Tensor.where)
  function methods.where(x, cond, other) return where(cond, x, other) end
  local act = ffi.new("pthcv_activation")
  for name, kind in pairs { sigmoid = C.PTHCV_ACT_SIGMOID, tanh = C.PTHCV_ACT_TANH, relu = C.PTHCV_ACT_RELU } do
    methods[name] = function(x)
      check_tensor(x, name)
      act.kind = kind
      return result(C.pthcv_activate(x.ct, act), name)
    end
  end

  -- x:max(): the largest value as a number (NaN when there is one, as
  -- torch; other dtypes than float32 as before: over their float64 values);
  -- x:max(other): maximum; x:max(dim [, keepdim]): values and 1-based
  -- indices along dim.
  local reduce = { max = C.PTHCV_REDUCE_MAX, min = C.PTHCV_REDUCE_MIN }
  for _, name in ipairs { "max", "min" } do
    local whole = methods[name]
    methods[name] = function(x, dim, keepdim)
      if dim == nil then
        if not T.is(x) or x.dtype ~= "float32" or x.numel == 0 then return whole(x) end
        return result(C.pthcv_reduce(x.ct, reduce[name], 0, nil, 0), name):item()
      end
      if T.is(dim) then return T.binary(x, dim, T.binary_ops[name]) end
      check_tensor(x, name)
      return max_dim(x, dim_of(x, dim, name, true), keepdim, name == "min", 1)
    end
  end
  -- x:argmin(): the 1-based flat index of the smallest value (first on ties,
  -- a NaN first); x:argmin(dim [, keepdim]): 1-based int64 indices along dim.
  function methods.argmin(x, dim, keepdim)
    check_tensor(x, "argmin")
    if dim == nil then
      local _, i = max_dim(x:reshape(-1), 0, false, true, 1)
      return i:item()
    end
    local _, i = max_dim(x, dim_of(x, dim, "argmin", true), keepdim, true, 1)
    return i
  end
  -- x:sort([dim = -1 [, descending]]): values and 1-based indices; stable
  function methods.sort(x, dim, descending)
    check_tensor(x, "sort")
    return sort(x, dim_of(x, dim or -1, "sort", true), descending, 1, true)
  end
  function methods.argsort(x, dim, descending)
    check_tensor(x, "argsort")
    return sort(x, dim_of(x, dim or -1, "argsort", true), descending, 1, false)
  end
  function methods.gather(x, dim, index)
    check_tensor(x, "gather")
    return gather(x, dim_of(x, dim, "gather", true), index, 1)
  end
  function methods.index_select(x, dim, index)
    check_tensor(x, "index_select")
    return index_select(x, dim_of(x, dim, "index_select", true), index, 1)
  end
end

-- ---- pthcv.F (torch's 0-based dims and indices) -----------------------------------
function M.functional(F)
  -- after busted clears package.loaded, tensor/init.lua returns its one
  -- instance without calling M.methods on this fresh copy of the module
  T = T or require "pthcv.tensor"
  local args = F._args
  for name in pairs(UNARY) do F[name] = function(x) return unary(x, name) end end
  for name in pairs(COMPARE) do F[name] = function(a, b) return compare(a, b, name) end end
  F.logical_not, F.pow, F.where = logical_not, pow, where

  -- F.max(x): the largest value as a 0-d tensor (NaN if any); F.max(x, other):
  -- maximum; F.max(x, dim [, keepdim]): values and 0-based indices.
  for _, name in ipairs { "max", "min" } do
    local amax, binary = name == "max" and "amax" or "amin", name == "max" and "maximum" or "minimum"
    F[name] = function(x, ...)
      check_tensor(x, name)
      local a = args(name, { "dim", "keepdim" }, ...)
      if a.dim == nil then return F[amax](x) end
      if T.is(a.dim) then return F[binary](x, a.dim) end
      return max_dim(x, dim_of(x, a.dim, name), a.keepdim, name == "min", 0)
    end
  end
  -- F.argmax(x [, dim, keepdim]): 0-based int64 indices (of the flattened
  -- tensor without dim), the first of equal values, a NaN first.
  for _, name in ipairs { "argmax", "argmin" } do
    F[name] = function(x, ...)
      check_tensor(x, name)
      local a = args(name, { "dim", "keepdim" }, ...)
      if a.dim == nil then
        local _, i = max_dim(x:reshape(-1), 0, false, name == "argmin", 0)
        return i
      end
      local _, i = max_dim(x, dim_of(x, a.dim, name), a.keepdim, name == "argmin", 0)
      return i
    end
  end
  -- F.sort(x [, dim = -1, descending = false, stable]): values, indices.
  -- Always stable (torch's stable=True): equal values keep their order,
  -- NaN sorts as the largest value, -0.0 equals 0.0.
  function F.sort(x, ...)
    check_tensor(x, "sort")
    local a = args("sort", { "dim", "descending", "stable" }, ...)
    return sort(x, dim_of(x, a.dim or -1, "sort"), a.descending, 0, true)
  end
  function F.argsort(x, ...)
    check_tensor(x, "argsort")
    local a = args("argsort", { "dim", "descending", "stable" }, ...)
    return sort(x, dim_of(x, a.dim or -1, "argsort"), a.descending, 0, false)
  end
  -- F.topk(x, k [, dim = -1, largest = true, sorted = true]): values, indices
  -- of the k largest (smallest), in order; ties as the stable sort.
  function F.topk(x, k, ...)
    check_tensor(x, "topk")
    local a = args("topk", { "dim", "largest", "sorted" }, ...)
    local d = dim_of(x, a.dim or -1, "topk")
    local n = x.ndim == 0 and 1 or x.shape[d + 1]
    if type(k) ~= "number" or k % 1 ~= 0 or k < 0 or k > n then
      error(string.format("pthcv: topk: k=%s out of range 0..%d", tostring(k), n), 2)
    end
    local v, i = sort(x, d, a.largest ~= false, 0, true)
    if x.ndim == 0 then return v, i end
    return v:narrow(d + 1, 1, k), i:narrow(d + 1, 1, k)
  end
  function F.gather(x, dim, index)
    check_tensor(x, "gather")
    return gather(x, dim_of(x, dim, "gather"), index, 0)
  end
  function F.index_select(x, dim, index)
    check_tensor(x, "index_select")
    return index_select(x, dim_of(x, dim, "index_select"), index, 0)
  end
end

return M
