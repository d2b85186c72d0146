-- lua/pthcv/export/onnx/ops_math.lua: the ONNX (opset 10) form of the math
-- ops of lua/pthcv/tensor/math.lua, registered into the handler table of
-- ops.lua (same contract: handler(g, a, r), a.rec the op's record), and the
-- evaluator's kernels (evaluate.lua) for the node types written here.
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
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local proto = require "pthcv.export.onnx.proto"
local ops = require "pthcv.export.onnx.ops"
local graph = require "pthcv.export.onnx.graph"
local evaluate = require "pthcv.export.onnx.evaluate"

local H, K = ops.handlers, evaluate.kernels
local refuse = graph.refuse

local function cast(g, name, dtype) return g:op("Cast", { name }, { { "to", "int", proto.DTYPE[dtype] } }) end

-- a traced or constant tensor as a float32 value (Cast for other dtypes)
local function float_input(g, x)
  local n = g:input(x)
  if x.dtype ~= "float32" then n = cast(g, n, "float32") end
  return n
end

local function both(name, h) H["F." .. name], H["Tensor." .. name] = h, h end

-- ---- unary ------------------------------------------------------------------------
local UNARY = { exp = "Exp", log = "Log", sqrt = "Sqrt", abs = "Abs", floor = "Floor", ceil = "Ceil",
                sign = "Sign", reciprocal = "Reciprocal" }
for name, op in pairs(UNARY) do
  both(name, function(g, a, r)
    local x = a[1]
    if (name == "floor" or name == "ceil") and not x.is_floating_point then return g:alias(r[1], x) end
    g:output(r[1], g:op(op, { float_input(g, x) }))
  end)
end
both("rsqrt", function(g, a, r) g:output(r[1], g:op("Reciprocal", { g:op("Sqrt", { float_input(g, a[1]) }) })) end)
both("round", function(g, a, r)
  if not a[1].is_floating_point then return g:alias(r[1], a[1]) end
  refuse("round has no opset-10 form (ONNX's Round is opset 11)")
end)

-- pow(tensor, number), pow(number, tensor), pow(tensor, tensor): Pow, the
-- number a float32 constant (pthcv rounds the exponent to float32 too)
both("pow", function(g, a, r)
  local base = Tensor.is(a[1]) and float_input(g, a[1]) or g:scalar(a[1])
  local e = Tensor.is(a[2]) and float_input(g, a[2]) or g:scalar(a[2])
  g:output(r[1], g:op("Pow", { base, e }))
end)

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

-- a value of the compare type: float32 or int64; and whether it may be NaN
local function cmp_value(g, v, float)
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
  both(name, function(g, a, r)
    local float = float_compare(a[1], a[2])
    local na, nan_a = cmp_value(g, a[1], float)
    local nb, nan_b = cmp_value(g, a[2], float)
    g:output(r[1], fn(g, na, nb, float, nan_a, nan_b))
  end)
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
  both(name, function(g, a, r) g:output(r[1], g:op(op, { truth(g, a[1]), truth(g, a[2]) })) end)
end
both("logical_not", function(g, a, r) g:output(r[1], g:op("Not", { truth(g, a[1]) })) end)

-- where(cond, a, b) (the method's operands are in this order too)
both("where", function(g, a, r)
  local cond, x, y = a[1], a[2], a[3]
  local float = float_compare(x, y) or (not Tensor.is(x) and not Tensor.is(y))
  local function value(v)
    if Tensor.is(v) then
      if float then return float_input(g, v) end
      return v.dtype == "int64" and g:input(v) or cast(g, g:input(v), "int64")
    end
    return float and g:scalar(v) or g:constant({ v }, "int64", {}, "const")
  end
  g:output(r[1], g:op("Where", { g:input(cond), value(x), value(y) }))
end)

-- ---- max / min / argmax / sort ------------------------------------------------------
-- 0-based ONNX indices as the methods' 1-based ones
local function plus_base(g, idx, base)
  if base == 0 then return idx end
  return g:op("Add", { idx, g:constant({ base }, "int64", { 1 }, "base") })
end

-- rec: {dim (nil: flattened), keepdim, find_min, base, values}
local function max_handler(g, a, r)
  local rec, x = a.rec, a[1]
  local xin, d = g:input(x), rec.dim
  if d == nil then xin, d = g:op("Reshape", { xin, g:ints({ -1 }, "shape") }), 0 end
  local keep = { "keepdims", "int", rec.keepdim and 1 or 0 }
  local idx = g:op(rec.find_min and "ArgMin" or "ArgMax", { xin }, { { "axis", "int", d }, keep })
  if not rec.values then return g:output(r[1], plus_base(g, idx, rec.base)) end
  g:output(r[1], g:op(rec.find_min and "ReduceMin" or "ReduceMax", { xin }, { { "axes", "ints", { d } }, keep }))
  g:output(r[2], plus_base(g, idx, rec.base))
end
for _, op in ipairs { "F.max", "F.min", "F.argmax", "F.argmin", "Tensor.max_dim", "Tensor.min_dim",
                      "Tensor.argmin_dim" } do
  H[op] = max_handler
end

-- the k largest (smallest: of -x) along axis d: TopK's values and indices
local function topk_nodes(g, x, d, k, largest)
  if x.dtype ~= "float32" then refuse("sorting a " .. x.dtype .. " tensor (TopK reads floats)") end
  local xin = g:input(x)
  if not largest then xin = g:op("Neg", { xin }) end
  local vals, idx = g:fresh("t"), g:fresh("t")
  g:node("TopK", { xin, g:ints({ k }, "k") }, { vals, idx }, { { "axis", "int", d } })
  if not largest then vals = g:op("Neg", { vals }) end
  return vals, idx
end
-- rec: {dim, descending, base, values}
local function sort_handler(g, a, r)
  local rec, x = a.rec, a[1]
  local vals, idx = topk_nodes(g, x, rec.dim, x.ndim == 0 and 1 or x.shape[rec.dim + 1], rec.descending)
  idx = plus_base(g, idx, rec.base)
  if rec.values then g:output(r[1], vals); g:output(r[2], idx) else g:output(r[1], idx) end
end
both("sort", sort_handler)
both("argsort", sort_handler)
H["F.topk"] = function(g, a, r)
  local vals, idx = topk_nodes(g, a[1], a.rec.dim, a.rec.k, a.rec.largest)
  g:output(r[1], vals)
  g:output(r[2], idx)
end

-- ---- index_select and gather -----------------------------------------------------------
-- the index as 1-d 0-based int64 values: the index tensor's (traced, or a
-- constant), minus the base; or a constant from the record's Lua list
local function index_input(g, a)
  local rec, index = a.rec, a[2]
  if index then
    local n = index.dtype == "int64" and g:input(index, "index") or cast(g, g:input(index, "index"), "int64")
    if index.ndim == 0 then n = g:op("Reshape", { n, g:ints({ 1 }, "shape") }) end
    if rec.base ~= 0 then n = g:op("Sub", { n, g:constant({ rec.base }, "int64", { 1 }, "base") }) end
    return n
  end
  local list = type(rec.index) == "table" and rec.index or { rec.index }
  local values = {}
  for i, v in ipairs(list) do values[i] = v - rec.base end
  return g:ints(values, "index")
end
both("index_select", function(g, a, r)
  g:output(r[1], g:op("Gather", { g:input(a[1]), index_input(g, a) }, { { "axis", "int", a.rec.dim } }))
end)
-- gather of 1-d tensors is index_select; others need GatherElements
both("gather", function(g, a, r)
  local x, index, list = a[1], a[2], a.rec.index
  local flat_index = (index and index.ndim <= 1) or (list and type(list[1]) ~= "table")
  if x.ndim > 1 or not flat_index then
    refuse("gather of a " .. x.ndim .. "-d tensor has no opset-10 form (ONNX's GatherElements is opset 11; "
           .. "index_select, and gather of 1-d tensors, export as Gather)")
  end
  g:output(r[1], g:op("Gather", { g:input(x), index_input(g, a) }, { { "axis", "int", 0 } }))
end)

-- ---- the evaluator's kernels (ONNX's semantics, pthcv's kernels) ---------------------
local function unsupported(what) error("not evaluated: " .. what, 0) end
for name, op in pairs(UNARY) do K[op] = function(ins) return { F[name](ins[1]) } end end
K.Neg = function(ins) return { ins[1] * -1 } end
K.IsNaN = function(ins) return { F.ne(ins[1], ins[1]) } end
-- a 0-d operand as a number, so that pow takes torch's shortcuts as the op did
K.Pow = function(ins)
  local a, b = ins[1], ins[2]
  if b.ndim == 0 then b = b:item() elseif a.ndim == 0 then a = a:item() end
  return { F.pow(a, b) }
end
for op, fn in pairs { Greater = "gt", Less = "lt", Equal = "eq", And = "logical_and", Or = "logical_or",
                      Xor = "logical_xor" } do
  K[op] = function(ins) return { F[fn](ins[1], ins[2]) } end
end
K.Not = function(ins) return { F.logical_not(ins[1]) } end
K.Where = function(ins) return { F.where(ins[1], ins[2], ins[3]) } end
for op, fn in pairs { ArgMax = "argmax", ArgMin = "argmin" } do
  K[op] = function(ins, at) return { F[fn](ins[1], at.axis or 0, (at.keepdims or 1) ~= 0) } end
end
K.TopK = function(ins, at) return { F.topk(ins[1], ins[2]:reshape(-1):totable()[1], at.axis or -1) } end
K.Gather = function(ins, at)
  if ins[2].ndim ~= 1 then unsupported("Gather with a " .. ins[2].ndim .. "-d index") end
  return { F.index_select(ins[1], at.axis or 0, ins[2]) }
end
-- integer Add / Sub of one value (the methods' index base), else arithmetic as before
for op, sign in pairs { Add = 1, Sub = -1 } do
  local float_kernel = K[op]
  K[op] = function(ins, at)
    local x, c = ins[1], ins[2]
    if x.dtype ~= "int64" then return float_kernel(ins, at) end
    if #ins ~= 2 or c.dtype ~= "int64" or c.numel ~= 1 then unsupported(op .. " of int64 tensors") end
    local y, n = x:clone(), c:reshape(-1):totable()[1] * sign
    local p = y:data()
    for i = 0, y.numel - 1 do p[i] = p[i] + n end
    return { y }
  end
end

return H
