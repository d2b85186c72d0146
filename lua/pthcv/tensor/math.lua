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
-- Every op runs through pthcv.tensor.dispatch as "F.<name>" or
-- "Tensor.<name>" with its record: {code} for the elementwise ops and
-- comparisons; {dim (0-based), keepdim, find_min, base} for max/min along a
-- dim ("F.max", "Tensor.max_dim", ...; base: what indices count from);
-- {dim, descending, base, values} for the sorts; {dim, k, largest} for
-- topk; {dim, base, index} for gather and index_select (index: a Lua list
-- given instead of an index tensor). Operands are the tensors and the
-- numbers next to them. The module installs into Tensor.methods (methods,
-- from tensor/init.lua) and pthcv.F (functional, from nn/functional.lua).
local ffi = require "ffi"
local core = require "pthcv.core"
local D = require "pthcv.tensor.dispatch"
local C = core.C
local call = D.call

local M = {}
local T -- the Tensor module

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
local SWAPPED = { lt = C.PTHCV_CMP_GT, gt = C.PTHCV_CMP_LT, le = C.PTHCV_CMP_GE, ge = C.PTHCV_CMP_LE }
M.UNARY, M.COMPARE = UNARY, COMPARE

-- one record per elementwise op: {op, code}
local RECORDS = {}
for name, code in pairs(UNARY) do RECORDS[name] = { op = name, code = code } end
for name, code in pairs(COMPARE) do RECORDS[name] = { op = name, code = code } end

local function result(r, what)
  if r == nil then core.fail(what) end
  return T.wrap(r, true)
end

local function check_tensor(x, fname, what)
  if not T.is(x) then
    error(string.format("pthcv: %s: %s must be a Tensor, got %s", fname, what or "input", type(x)), 3)
  end
  return x
end

-- operands of a binary op: at least one tensor (where: or two numbers),
-- the other a number or a boolean
local function check_operands(a, b, fname)
  if not T.is(a) and not T.is(b) and fname ~= "where" then error("pthcv: " .. fname .. ": needs a tensor operand", 3) end
  for _, v in ipairs { a, b } do
    if not T.is(v) and type(v) ~= "number" and type(v) ~= "boolean" then
      error(string.format("pthcv: %s: expected a Tensor or a number, got %s", fname, type(v)), 3)
    end
  end
end

-- A Lua value next to tensor `like` as the 0-d tensor torch would make of it.
local function scalar(v, like)
  if type(v) == "boolean" then return T.from_table(v and 1 or 0, "bool") end
  local dtype = "float32"
  if like and like.is_floating_point then
    if like.dtype == "float64" then dtype = "float64" end
  elseif like and v == math.floor(v) and v > -2 ^ 63 and v < 2 ^ 63 then
    dtype = "int64"
  end
  return T.from_table(v, dtype)
end
M.scalar = scalar

-- both operands as tensors
local function tensors(a, b)
  if not T.is(a) then a = scalar(a, b) end
  if not T.is(b) then b = scalar(b, a) end
  return a, b
end

-- ---- the kernels' calls (impl(rec, operands...)) ----------------------------------
local function unary_impl(rec, x)
  if not x.is_floating_point then
    if TO_FLOAT[rec.op] then
      x = x:float()
    elseif INT_IDENTITY[rec.op] then
      return x:clone()
    end
  end
  return result(C.pthcv_unary(x.ct, rec.code), rec.op)
end

-- pow(tensor, number), pow(tensor, tensor), pow(number, tensor); float32
local function pow_impl(_, a, b)
  if T.is(a) and not T.is(b) then return result(C.pthcv_pow_scalar(a.ct, b), "pow") end
  if not T.is(a) then a = scalar(a) end
  return result(C.pthcv_pow(a.ct, b.ct), "pow")
end

local function compare_impl(rec, a, b)
  local code = rec.code
  if not T.is(a) and SWAPPED[rec.op] then a, b, code = b, a, SWAPPED[rec.op] end
  a, b = tensors(a, b)
  return result(C.pthcv_compare(a.ct, b.ct, code), rec.op)
end

local function logical_not_impl(_, x) return result(C.pthcv_logical_not(x.ct), "logical_not") end

local function where_impl(_, cond, a, b)
  if not T.is(a) and not T.is(b) then
    a, b = scalar(a), scalar(b)
  else
    a, b = tensors(a, b)
  end
  return result(C.pthcv_where(cond.ct, a.ct, b.ct), "where")
end

local out_values, out_indices = ffi.new("pthcv_tensor *[1]"), ffi.new("pthcv_tensor *[1]")

-- rec: {dim (0-based; nil: the flattened tensor), keepdim, find_min, base,
-- values}: values and indices, or the indices alone
local function max_impl(rec, x)
  local d = rec.dim
  if d == nil then x, d = x:reshape(-1), 0 end
  local status = C.pthcv_max_dim(x.ct, d, rec.keepdim and 1 or 0, rec.find_min and 1 or 0, rec.base,
                                 rec.values and out_values or nil, out_indices)
  if status ~= 0 then core.fail(rec.find_min and "min" or "max") end
  local idx = T.wrap(out_indices[0], true)
  if rec.values then return T.wrap(out_values[0], true), idx end
  return idx
end

-- rec: {dim, descending, base, values}
local function sort_impl(rec, x)
  local status = C.pthcv_sort(x.ct, rec.dim, rec.descending and 1 or 0, rec.base,
                              rec.values and out_values or nil, out_indices)
  if status ~= 0 then core.fail("sort") end
  local idx = T.wrap(out_indices[0], true)
  if rec.values then return T.wrap(out_values[0], true), idx end
  return idx
end

-- rec: {dim, k, largest}: the first k of the stable sort
local function topk_impl(rec, x)
  local v, i = sort_impl({ dim = rec.dim, descending = rec.largest, base = 0, values = true }, x)
  if x.ndim == 0 then return v, i end
  return v:narrow(rec.dim + 1, 1, rec.k), i:narrow(rec.dim + 1, 1, rec.k)
end

-- rec: {dim, base, index}; index: an index tensor, or nil for rec.index
local function index_of(rec, index) return index or T.from_table(rec.index, "int64") end
local function gather_impl(rec, x, index)
  return result(C.pthcv_gather(x.ct, rec.dim, index_of(rec, index).ct, rec.base), "gather")
end
local function index_select_impl(rec, x, index)
  return result(C.pthcv_index_select(x.ct, rec.dim, index_of(rec, index).ct, rec.base), "index_select")
end

-- ---- argument handling --------------------------------------------------------------
-- A dim of the F forms (0-based; a 0-d tensor takes 0 and -1, as torch) or
-- of the methods (one_based; negative from the end), as a 0-based index.
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

-- an index tensor, or a Lua list of numbers (kept in the record)
local function index_arg(index, fname)
  if T.is(index) then return index, nil end
  if type(index) == "number" then return nil, index end
  if type(index) == "table" then return nil, index end
  error("pthcv: " .. fname .. ": index must be an int64 Tensor or a list of numbers, got " .. type(index), 3)
end

local function gather_call(op, x, d, index, base)
  local k, list = index_arg(index, op)
  local impl = op:find("gather") and gather_impl or index_select_impl
  if k then return call(op, { dim = d, base = base }, impl, x, k) end
  return call(op, { dim = d, base = base, index = list }, impl, x)
end

-- ---- Tensor methods (1-based dims and indices) -----------------------------------
function M.methods(Tensor)
  T = Tensor
  local methods = Tensor.methods
  for name in pairs(UNARY) do
    local op, rec = "Tensor." .. name, RECORDS[name]
    methods[name] = function(x) return call(op, rec, unary_impl, check_tensor(x, name)) end
  end
  for name in pairs(COMPARE) do
    local op, rec = "Tensor." .. name, RECORDS[name]
    methods[name] = function(a, b)
      check_operands(a, b, name)
      return call(op, rec, compare_impl, a, b)
    end
  end
  function methods.logical_not(x) return call("Tensor.logical_not", nil, logical_not_impl, x) end
  function methods.pow(a, b)
    check_operands(a, b, "pow")
    return call("Tensor.pow", nil, pow_impl, a, b)
  end
  -- x:where(cond, other): x where cond holds, else other (torch's Tensor.where)
  function methods.where(x, cond, other)
    check_tensor(cond, "where", "condition")
    check_operands(x, other, "where")
    return call("Tensor.where", nil, where_impl, cond, x, other)
  end
  -- the activations pthcv.F has, as methods
  for _, name in ipairs { "sigmoid", "tanh", "relu" } do
    methods[name] = function(x) return require("pthcv.nn.functional")[name](x) end
  end

  -- x:max(): the largest value as a number (NaN when there is one, as
  -- torch; other dtypes than float32 as before: over their float64 values);
  -- x:max(other): maximum; x:max(dim [, keepdim]): values and 1-based
  -- indices along dim.
  for _, name in ipairs { "max", "min" } do
    local whole, find_min = methods[name], name == "min"
    local op, kind = "Tensor." .. name, name == "max" and C.PTHCV_REDUCE_MAX or C.PTHCV_REDUCE_MIN
    local function nan_impl(_, x) return result(C.pthcv_reduce(x.ct, kind, 0, nil, 0), name):item() end
    methods[name] = function(x, dim, keepdim)
      if dim == nil then
        if not T.is(x) or x.dtype ~= "float32" or x.numel == 0 then return whole(x) end
        return call(op, nil, nan_impl, x)
      end
      if T.is(dim) then return T.binary(x, dim, T.binary_ops[name]) end
      check_tensor(x, name)
      local rec = { dim = dim_of(x, dim, name, true), keepdim = keepdim == true, find_min = find_min, base = 1,
                    values = true }
      return call(op .. "_dim", rec, max_impl, x)
    end
  end
  -- x:argmin(): the 1-based flat index of the smallest value (first on ties,
  -- a NaN first); x:argmin(dim [, keepdim]): 1-based int64 indices along dim.
  local function argmin_all(_, x) return max_impl({ find_min = true, base = 1 }, x):item() end
  function methods.argmin(x, dim, keepdim)
    check_tensor(x, "argmin")
    if dim == nil then return call("Tensor.argmin", nil, argmin_all, x) end
    local rec = { dim = dim_of(x, dim, "argmin", true), keepdim = keepdim == true, find_min = true, base = 1 }
    return call("Tensor.argmin_dim", rec, max_impl, x)
  end
  -- x:sort([dim = -1 [, descending]]): values and 1-based indices; stable
  for name, values in pairs { sort = true, argsort = false } do
    local op = "Tensor." .. name
    methods[name] = function(x, dim, descending)
      check_tensor(x, name)
      local rec = { dim = dim_of(x, dim or -1, name, true), descending = descending == true, base = 1,
                    values = values }
      return call(op, rec, sort_impl, x)
    end
  end
  for _, name in ipairs { "gather", "index_select" } do
    local op = "Tensor." .. name
    methods[name] = function(x, dim, index)
      check_tensor(x, name)
      return gather_call(op, x, dim_of(x, dim, name, true), index, 1)
    end
  end
  -- they return Lua numbers made from element values (element.lua)
  Tensor.element_ops["Tensor.argmin"] = true
end

-- ---- pthcv.F (torch's 0-based dims and indices) -----------------------------------
function M.functional(F)
  -- after busted clears package.loaded, tensor/init.lua returns its one
  -- instance without calling M.methods on this fresh copy of the module
  T = T or require "pthcv.tensor"
  local args = F._args
  for name in pairs(UNARY) do
    local op, rec = "F." .. name, RECORDS[name]
    F[name] = function(x) return call(op, rec, unary_impl, check_tensor(x, name)) end
  end
  for name in pairs(COMPARE) do
    local op, rec = "F." .. name, RECORDS[name]
    F[name] = function(a, b)
      check_operands(a, b, name)
      return call(op, rec, compare_impl, a, b)
    end
  end
  function F.logical_not(x) return call("F.logical_not", nil, logical_not_impl, check_tensor(x, "logical_not")) end
  function F.pow(a, b)
    check_operands(a, b, "pow")
    return call("F.pow", nil, pow_impl, a, b)
  end
  function F.where(cond, a, b)
    check_tensor(cond, "where", "condition")
    check_operands(a, b, "where")
    return call("F.where", nil, where_impl, cond, a, b)
  end

  -- F.max(x): the largest value as a 0-d tensor (NaN if any); F.max(x, other):
  -- maximum; F.max(x, dim [, keepdim]): values and 0-based indices.
  for _, name in ipairs { "max", "min" } do
    local amax, binary = name == "max" and "amax" or "amin", name == "max" and "maximum" or "minimum"
    F[name] = function(x, ...)
      check_tensor(x, name)
      local a = args(name, { "dim", "keepdim" }, ...)
      if a.dim == nil then return F[amax](x) end
      if T.is(a.dim) then return F[binary](x, a.dim) end
      local rec = { dim = dim_of(x, a.dim, name), keepdim = a.keepdim == true, find_min = name == "min", base = 0,
                    values = true }
      return call("F." .. name, rec, max_impl, x)
    end
  end
  -- F.argmax(x [, dim, keepdim]): 0-based int64 indices (of the flattened
  -- tensor without dim), the first of equal values, a NaN first.
  for _, name in ipairs { "argmax", "argmin" } do
    F[name] = function(x, ...)
      check_tensor(x, name)
      local a = args(name, { "dim", "keepdim" }, ...)
      local rec = { dim = a.dim ~= nil and dim_of(x, a.dim, name) or nil, keepdim = a.keepdim == true,
                    find_min = name == "argmin", base = 0 }
      return call("F." .. name, rec, max_impl, x)
    end
  end
  -- F.sort(x [, dim = -1, descending = false, stable]): values, indices.
  -- Always stable (torch's stable=True): equal values keep their order,
  -- NaN sorts as the largest value, -0.0 equals 0.0.
  for name, values in pairs { sort = true, argsort = false } do
    F[name] = function(x, ...)
      check_tensor(x, name)
      local a = args(name, { "dim", "descending", "stable" }, ...)
      local rec = { dim = dim_of(x, a.dim or -1, name), descending = a.descending == true, base = 0, values = values }
      return call("F." .. name, rec, sort_impl, x)
    end
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
    return call("F.topk", { dim = d, k = k, largest = a.largest ~= false }, topk_impl, x)
  end
  for _, name in ipairs { "gather", "index_select" } do
    F[name] = function(x, dim, index)
      check_tensor(x, name)
      return gather_call("F." .. name, x, dim_of(x, dim, name), index, 0)
    end
  end
end

return M
