-- lua/pthcv/export/onnx/ops_math.lua: the ONNX (opset 10) form of the math
-- ops of lua/pthcv/tensor/math.lua, registered into the handler table of
-- lua/pthcv/export/onnx/ops.lua (same contract: handler(g, args, results)).
--
-- Opset 10 has no Round (11), GatherElements (torch.gather, 11),
-- GreaterOrEqual / LessOrEqual (12), and its Equal takes integers only:
-- round, and gather of tensors of more than one dim, are refused by name
-- (gather of 1-d tensors is index_select: Gather); ge/le are written
-- Or(Greater, Equal), and eq on floats as "neither less nor greater, and no
-- NaN" (the same answers, NaN included). Sorting is TopK (descending;
-- ascending as Neg, TopK, Neg): before opset 11 ONNX does not define the
-- order of equal values or NaN, which torch's stable sort does. The
-- methods' 1-based indices get an Add / Sub of 1 around the 0-based ONNX
-- ones. docs/nn.md lists what OpenCV 4.6 runs of this.
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"
local ops = require "pthcv.export.onnx.ops"
local tmath = require "pthcv.tensor.math"

local H = ops.handlers
local args_of = F._args

local function refuse(what) error("pthcv: export_onnx: " .. what, 0) end

-- dims as ONNX axes: F's are torch's (0-based), the methods' 1-based
local function axis(x, d, one_based) return tmath.dim_of(x, d, "export_onnx", one_based) end

local function cast(g, name, dtype) return g:op("Cast", { name }, { { "to", "int", proto.DTYPE[dtype] } }) end

-- a traced or constant tensor as a float32 value (Cast for other dtypes)
local function float_input(g, x)
  local n = g:input(x)
  if x.dtype ~= "float32" then n = cast(g, n, "float32") end
  return n
end

-- ---- unary ------------------------------------------------------------------------
local UNARY = { exp = "Exp", log = "Log", sqrt = "Sqrt", abs = "Abs", floor = "Floor", ceil = "Ceil",
                sign = "Sign", reciprocal = "Reciprocal", sigmoid = "Sigmoid", tanh = "Tanh", relu = "Relu" }
for name, op in pairs(UNARY) do
  local h = function(g, a, r)
    local x = a[1]
    if (name == "floor" or name == "ceil") and not x.is_floating_point then return g:alias(r[1], x) end
    g:output(r[1], g:op(op, { float_input(g, x) }))
  end
  H["F." .. name], H["Tensor." .. name] = h, h
end
H["F.rsqrt"] = function(g, a, r) g:output(r[1], g:op("Reciprocal", { g:op("Sqrt", { float_input(g, a[1]) }) })) end
H["Tensor.rsqrt"] = H["F.rsqrt"]
local function no_round(g, a, r)
  if not a[1].is_floating_point then return g:alias(r[1], a[1]) end
  refuse("round has no opset-10 form (ONNX's Round is opset 11)")
end
H["F.round"], H["Tensor.round"] = no_round, no_round

-- pow(tensor, number), pow(number, tensor), pow(tensor, tensor): Pow, the
-- number a float32 constant (pthcv rounds the exponent to float32 too)
local function pow(g, a, r)
  local base = Tensor.is(a[1]) and float_input(g, a[1]) or g:scalar(a[1])
  local e = Tensor.is(a[2]) and float_input(g, a[2]) or g:scalar(a[2])
  g:output(r[1], g:op("Pow", { base, e }))
end
H["F.pow"], H["Tensor.pow"] = pow, pow

-- ---- comparisons ------------------------------------------------------------------
-- whether a and b are compared as floats (tensor/math.lua's promotion)
local function float_compare(a, b)
  local function is_float(v, other)
    if Tensor.is(v) then return v.is_floating_point end
    if type(v) == "number" then return v % 1 ~= 0 or (Tensor.is(other) and other.is_floating_point) end
    return false
  end
  return is_float(a, b) or is_float(b, a)
end

-- a and b as values of one type (float32 or int64); also whether each may hold NaN
local function cmp_operands(g, a, b)
  local float = float_compare(a, b)
  local function name(v)
    if Tensor.is(v) then
      if v.dtype == "float64" then refuse("comparisons of float64 tensors (OpenCV reads float32)") end
      local n = g:input(v)
      if float and not v.is_floating_point then return cast(g, n, "float32"), false end
      if not float and v.dtype ~= "int64" then return cast(g, n, "int64"), false end
      return n, float
    end
    if type(v) == "boolean" then v = v and 1 or 0 end
    if float then return g:scalar(v), v ~= v end
    return g:constant({ v }, "int64", {}, "const"), false
  end
  local na, nan_a = name(a)
  local nb, nan_b = name(b)
  return na, nb, float, nan_a or nan_b, nan_a, nan_b
end

-- a == b: Equal on integers; on floats, not (a < b or a > b), and no NaN
local function equal(g, na, nb, float, nan_a, nan_b)
  if not float then return g:op("Equal", { na, nb }) end
  local differ = g:op("Or", { g:op("Less", { na, nb }), g:op("Greater", { na, nb }) })
  if nan_a then differ = g:op("Or", { differ, g:op("IsNaN", { na }) }) end
  if nan_b then differ = g:op("Or", { differ, g:op("IsNaN", { nb }) }) end
  return g:op("Not", { differ })
end

local COMPARE = {
  gt = function(g, na, nb) return g:op("Greater", { na, nb }) end,
  lt = function(g, na, nb) return g:op("Less", { na, nb }) end,
  eq = equal,
  ne = function(g, ...) return g:op("Not", { equal(g, ...) }) end,
  ge = function(g, na, nb, ...) return g:op("Or", { g:op("Greater", { na, nb }), equal(g, na, nb, ...) }) end,
  le = function(g, na, nb, ...) return g:op("Or", { g:op("Less", { na, nb }), equal(g, na, nb, ...) }) end,
}
for name, fn in pairs(COMPARE) do
  local h = function(g, a, r)
    local na, nb, float, _, nan_a, nan_b = cmp_operands(g, a[1], a[2])
    g:output(r[1], fn(g, na, nb, float, nan_a, nan_b))
  end
  H["F." .. name], H["Tensor." .. name] = h, h
end

-- logical ops on truth values (Cast to bool: nonzero is true)
local function truth(g, v)
  if Tensor.is(v) then
    local n = g:input(v)
    return v.dtype == "bool" and n or cast(g, n, "bool")
  end
  return g:constant({ (v == true or (type(v) == "number" and v ~= 0)) and 1 or 0 }, "bool", {}, "const")
end
for name, op in pairs { logical_and = "And", logical_or = "Or", logical_xor = "Xor" } do
  local h = function(g, a, r) g:output(r[1], g:op(op, { truth(g, a[1]), truth(g, a[2]) })) end
  H["F." .. name], H["Tensor." .. name] = h, h
end
H["F.logical_not"] = function(g, a, r) g:output(r[1], g:op("Not", { truth(g, a[1]) })) end
H["Tensor.logical_not"] = H["F.logical_not"]

-- where(cond, a, b); Tensor.where(x, cond, other) is where(cond, x, other)
local function where(g, r, cond, a, b)
  local float = float_compare(a, b) or (not Tensor.is(a) and not Tensor.is(b))
  local function value(v)
    if Tensor.is(v) then
      if float then return float_input(g, v) end
      return v.dtype == "int64" and g:input(v) or cast(g, g:input(v), "int64")
    end
    return float and g:scalar(v) or g:constant({ v }, "int64", {}, "const")
  end
  g:output(r[1], g:op("Where", { g:input(cond), value(a), value(b) }))
end
H["F.where"] = function(g, a, r) where(g, r, a[1], a[2], a[3]) end
H["Tensor.where"] = function(g, a, r) where(g, r, a[2], a[1], a[3]) end

-- ---- max / min / argmax / sort ------------------------------------------------------
-- 0-based ONNX indices as the methods' 1-based ones
local function plus_one(g, idx) return g:op("Add", { idx, g:constant({ 1 }, "int64", { 1 }, "one") }) end

local function reduce_with_index(g, x, d, keepdim, name, one_based, r)
  local keep = { { "keepdims", "int", keepdim and 1 or 0 } }
  local xin = g:input(x)
  g:output(r[1], g:op(name == "max" and "ReduceMax" or "ReduceMin", { xin }, { { "axes", "ints", { d } }, keep[1] }))
  local idx = g:op(name == "max" and "ArgMax" or "ArgMin", { xin }, { { "axis", "int", d }, keep[1] })
  g:output(r[2], one_based and plus_one(g, idx) or idx)
end

for _, name in ipairs { "max", "min" } do
  local whole, both = name == "max" and "ReduceMax" or "ReduceMin", name == "max" and "Max" or "Min"
  H["F." .. name] = function(g, a, r)
    local o = args_of(name, { "dim", "keepdim" }, unpack(a, 2, a.n))
    if o.dim == nil then -- every axis listed: OpenCV 4.6 cannot read a ReduceMax without axes
      local axes = {}
      for d = 1, a[1].ndim do axes[d] = d - 1 end
      return g:output(r[1], g:op(whole, { g:input(a[1]) }, { { "axes", "ints", axes }, { "keepdims", "int", 0 } }))
    end
    if Tensor.is(o.dim) then return g:output(r[1], g:op(both, { g:input(a[1]), g:input(o.dim) })) end
    reduce_with_index(g, a[1], axis(a[1], o.dim), o.keepdim, name, false, r)
  end
  H["Tensor." .. name] = function(g, a, r)
    if Tensor.is(a[2]) then return g:output(r[1], g:op(both, { g:input(a[1]), g:input(a[2]) })) end
    reduce_with_index(g, a[1], axis(a[1], a[2], true), a[3], name, true, r)
  end
end

-- argmax / argmin: ArgMax over the flattened tensor without a dim
local function arg_nodes(g, x, dim, keepdim, op, one_based)
  local xin, d = g:input(x), 0
  if dim == nil then
    xin = g:op("Reshape", { xin, g:ints({ -1 }, "shape") })
  else
    d = axis(x, dim, one_based)
  end
  local idx = g:op(op, { xin }, { { "axis", "int", d }, { "keepdims", "int", keepdim and 1 or 0 } })
  return one_based and plus_one(g, idx) or idx
end
for name, op in pairs { argmax = "ArgMax", argmin = "ArgMin" } do
  H["F." .. name] = function(g, a, r)
    local o = args_of(name, { "dim", "keepdim" }, unpack(a, 2, a.n))
    g:output(r[1], arg_nodes(g, a[1], o.dim, o.keepdim, op, false))
  end
  H["Tensor." .. name] = function(g, a, r) g:output(r[1], arg_nodes(g, a[1], a[2], a[3], op, true)) end
end

-- the k largest (smallest: of -x) along axis d: TopK's values and indices
local function topk_nodes(g, x, d, k, largest)
  local xin = g:input(x)
  if x.dtype ~= "float32" then refuse("sorting a " .. x.dtype .. " tensor (TopK reads floats)") end
  if not largest then xin = g:op("Neg", { xin }) end
  local vals, idx = g:fresh("t"), g:fresh("t")
  g:node("TopK", { xin, g:ints({ k }, "k") }, { vals, idx }, { { "axis", "int", d } })
  if not largest then vals = g:op("Neg", { vals }) end
  return vals, idx
end

local function sort_handler(name, one_based, with_values)
  return function(g, a, r)
    local x, dim, desc = a[1], a[2], a[3]
    if not one_based then
      local o = args_of(name, { "dim", "descending", "stable" }, unpack(a, 2, a.n))
      dim, desc = o.dim, o.descending
    end
    local d = axis(x, dim or -1, one_based)
    local vals, idx = topk_nodes(g, x, d, x.ndim == 0 and 1 or x.shape[d + 1], desc)
    if one_based then idx = plus_one(g, idx) end
    if with_values then g:output(r[1], vals); g:output(r[2], idx) else g:output(r[1], idx) end
  end
end
H["F.sort"], H["F.argsort"] = sort_handler("sort", false, true), sort_handler("argsort", false, false)
H["Tensor.sort"], H["Tensor.argsort"] = sort_handler("sort", true, true), sort_handler("argsort", true, false)
H["F.topk"] = function(g, a, r)
  local o = args_of("topk", { "dim", "largest", "sorted" }, unpack(a, 3, a.n))
  local vals, idx = topk_nodes(g, a[1], axis(a[1], o.dim or -1), a[2], o.largest ~= false)
  g:output(r[1], vals)
  g:output(r[2], idx)
end
-- Tensor.topk (tensor/init.lua): the k largest, 1-based indices
H["Tensor.topk"] = function(g, a, r)
  local vals, idx = topk_nodes(g, a[1], axis(a[1], a[3] or -1, true), a[2], true)
  g:output(r[1], vals)
  g:output(r[2], plus_one(g, idx))
end

-- ---- index_select and gather -----------------------------------------------------------
-- the index as 0-based int64 values: a traced tensor (minus 1 for the
-- methods), or a constant made from a tensor or a Lua list
local function index_input(g, index, one_based)
  if Tensor.is(index) and g:is_traced(index) then
    local n = index.dtype == "int64" and g:input(index) or cast(g, g:input(index), "int64")
    return one_based and g:op("Sub", { n, g:constant({ 1 }, "int64", {}, "one") }) or n
  end
  local list = Tensor.is(index) and index:to("int64"):totable() or index
  if type(list) ~= "table" then list = { list } end
  local values = {}
  for i, v in ipairs(list) do values[i] = one_based and v - 1 or v end
  return g:constant(values, "int64", Tensor.is(index) and index.shape or { #values }, "index")
end
H["F.index_select"] = function(g, a, r)
  g:output(r[1], g:op("Gather", { g:input(a[1]), index_input(g, a[3], false) }, { { "axis", "int", axis(a[1], a[2]) } }))
end
H["Tensor.index_select"] = function(g, a, r)
  g:output(r[1], g:op("Gather", { g:input(a[1]), index_input(g, a[3], true) },
                      { { "axis", "int", axis(a[1], a[2], true) } }))
end
-- gather of 1-d tensors is index_select; other gathers need GatherElements
local function gather(one_based)
  return function(g, a, r)
    local x, index = a[1], a[3]
    local flat_index = (Tensor.is(index) and index.ndim <= 1) or (type(index) == "table" and type(index[1]) ~= "table")
    if x.ndim > 1 or not flat_index then
      refuse("gather of a " .. x.ndim .. "-d tensor has no opset-10 form (ONNX's GatherElements is opset 11; "
             .. "index_select, and gather of 1-d tensors, export as Gather)")
    end
    g:output(r[1], g:op("Gather", { g:input(x), index_input(g, index, one_based) }, { { "axis", "int", 0 } }))
  end
end
H["F.gather"], H["Tensor.gather"] = gather(false), gather(true)

return H
