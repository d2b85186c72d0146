-- lua/pthcv/jit/ops/tensor.lua: aten:: arithmetic, comparisons, creation
-- and conversions, over tensors and scalars alike (torch's overloads of one
-- name dispatch on the values: aten::add of two ints is an int, of a
-- tensor and a float a tensor). In-place forms (add_, relu_, ...) write
-- their result into the tensor given, as torch does.
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"
local E = require "pthcv.jit.ops.elementwise"
local core = require "pthcv.core"
local D = require "pthcv.tensor.dispatch"
local C = core.C

local None = V.None
local is_tensor = Tensor.is
local BIN = E.BIN

local T = {}

-- float32 into float32 of one shape, storages apart: one dispatched op
-- (pthcv.nn.plan records and replays it; reading the values in Lua would
-- keep the pass from being planned)
local function copy_impl(_, dst, src)
  if C.pthcv_copy_into(dst.ct, src.ct) ~= 0 then core.fail("copy_") end
  return dst
end

-- Before t is written in place: the numbers prim::NumToTensor remembers
-- of t (or of what shares its storage) are forgotten.
local function before_write(t)
  local numbers = S.numbers
  for n in pairs(numbers) do
    if n:shares_storage(t) then numbers[n] = nil end
  end
end

local function same_shape(a, b)
  if a.ndim ~= b.ndim then return false end
  for i = 1, a.ndim do if a.shape[i] ~= b.shape[i] then return false end end
  return true
end

-- Writes src's values into dst (same shape), as torch's copy_: in place,
-- whatever dst's layout. Returns dst.
function T.copy_into(dst, src)
  if not is_tensor(dst) then error("in-place operation on a " .. V.typename(dst) .. ", not a tensor", 0) end
  before_write(dst)
  if is_tensor(src) and dst.dtype == "float32" and src.dtype == "float32" and dst.numel > 0 and same_shape(dst, src)
     and not dst:shares_storage(src) then
    return D.call("jit.copy_", nil, copy_impl, dst, src)
  end
  if is_tensor(src) and src.dtype ~= dst.dtype then src = src:to(dst.dtype) end
  local n = dst.numel
  if not is_tensor(src) then
    src = Tensor.full(dst.shape, S.num(src), dst.dtype)
  elseif src.numel ~= n then
    src = E.lua_binary(Tensor.zeros(dst.shape, dst.dtype), src, function(_, y) return y end, dst.dtype)
    if src.numel ~= n then error("output with shape " .. tostring(dst) .. " doesn't match the broadcast shape", 0) end
  end
  if n == 0 then return dst end
  src = src:contiguous()
  if dst:is_contiguous() then
    ffi.copy(dst:data(), src:data(), dst.nbytes)
    return dst
  end
  -- a strided destination: walk its index space
  local shape, stride, nd = dst.shape, dst.stride, dst.ndim
  local pd, ps, esz = ffi.cast("char *", dst:data()), ffi.cast("char *", src:data()), dst.itemsize
  local idx = {}
  for i = 1, nd do idx[i] = 0 end
  for k = 0, n - 1 do
    local off = 0
    for i = 1, nd do off = off + idx[i] * stride[i] end
    ffi.copy(pd + off * esz, ps + k * esz, esz)
    for i = nd, 1, -1 do
      idx[i] = idx[i] + 1
      if idx[i] < shape[i] then break end
      idx[i] = 0
    end
  end
  return dst
end

-- A tensor function of one argument made in place: f(x) written into x.
function T.inplace(f) return function(x, ...) return T.copy_into(x, f(x, ...)) end end

-- ---- in-place ops as one dispatched op ---------------------------------------------
-- An activation or an addition written into its float32 operand is ONE op
-- at pthcv.tensor.dispatch ("F.relu_", "Tensor.add_"), whose record is the
-- out-of-place op's with inplace = true and whose result is the operand
-- itself: pthcv.nn.plan records it as the op on the value it overwrites (a
-- new version of that value) and fuses it into the convolution that made
-- the value when nothing else reads the value it overwrote.
local A = require "pthcv.nn.args"
local act_records = {}

local function act_inplace_impl(rec, dst)
  local y = C.pthcv_activate(dst.ct, A.activation_struct(rec))
  if y == nil then core.fail(rec.op) end
  local rc = C.pthcv_copy_into(dst.ct, y)
  C.pthcv_tensor_release(y)
  if rc ~= 0 then core.fail(rec.op) end
  return dst
end

-- Whether activation kind (alpha, beta) can run as T.activate_ on x.
function T.can_activate_(x, kind)
  return is_tensor(x) and x.dtype == "float32" and x.numel > 0 and A.ACT[kind] ~= nil
end

-- x with activation kind (alpha, beta) applied in place; returns x.
function T.activate_(x, kind, alpha, beta)
  local plain = A.activation({ kind = kind, alpha = alpha, beta = beta })
  local rec = act_records[plain.key]
  if not rec then
    rec = A.activation({ kind = kind, alpha = alpha, beta = beta }, plain.op .. "_")
    rec.inplace = true
    act_records[plain.key] = rec
  end
  before_write(x)
  return D.call(rec.op, rec, act_inplace_impl, x)
end

local ADD_ = { op = "add_", code = BIN.add, inplace = true }
local function add_inplace_impl(_, a, b)
  local y = C.pthcv_binary(a.ct, b.ct, BIN.add)
  if y == nil then core.fail("add_") end
  local rc = C.pthcv_copy_into(a.ct, y)
  C.pthcv_tensor_release(y)
  if rc ~= 0 then core.fail("add_") end
  return a
end

local function scalar_sub(a, b) return S.add(a, -S.num(b)) end
local function lua_floordiv(x, y) return math.floor(x / y) end
local function lua_remainder(x, y) return x - math.floor(x / y) * y end

local function f_add(x, y) return x + y end
local function f_sub(x, y) return x - y end
local function f_mul(x, y) return x * y end
local function f_div(x, y) return x / y end
local function f_trunc(x, y) local q = x / y; return q >= 0 and math.floor(q) or -math.floor(-q) end
local function s_trunc(x, y) local q = S.div(x, y); return q >= 0 and math.floor(q) or -math.floor(-q) end

local function scaled(b, alpha)
  if alpha ~= nil and alpha ~= 1 and alpha ~= None then return E.binary(b, alpha, BIN.mul, f_mul, S.mul) end
  return b
end
-- a + alpha * b (torch's add and sub take alpha)
local function add(a, b, alpha) return E.binary(a, scaled(b, alpha), BIN.add, f_add, S.add) end
local function sub(a, b, alpha) return E.binary(a, scaled(b, alpha), BIN.sub, f_sub, scalar_sub) end
local function mul(a, b) return E.binary(a, b, BIN.mul, f_mul, S.mul) end
local function div(a, b, rounding_mode)
  if rounding_mode == "floor" then return E.binary(a, b, nil, lua_floordiv, S.floordiv) end
  if rounding_mode == "trunc" then return E.binary(a, b, nil, f_trunc, s_trunc) end
  return E.binary(a, b, BIN.div, f_div, S.div, true)
end
T.add, T.sub, T.mul, T.div = add, sub, mul, div

-- A comparison: scalars give bools, tensors bool tensors.
local function comparison(name, f)
  return function(a, b)
    if not is_tensor(a) and not is_tensor(b) then return S[name](a, b) end
    return E.lua_binary(a, b, function(x, y) return f(x, y) and 1 or 0 end, "bool")
  end
end

-- A scalar function that also maps over tensors in Lua (math on sizes).
local function mapped(name, f)
  return function(a)
    if is_tensor(a) then return E.lua_binary(a, 0, function(x) return f(x) end, E.result_dtype(a, 0.5)) end
    if type(a) ~= "number" then S.type_error(name, a) end
    return f(a)
  end
end

return function(ops)
  local def = ops.def
  ops.copy_into, ops.inplace, ops.add, ops.mul = T.copy_into, T.inplace, add, mul
  ops.activate_, ops.can_activate_ = T.activate_, T.can_activate_

  def("aten::add(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", add)
  -- (a float32 add_ of one shape is one dispatched op: pthcv.nn.plan fuses it
  -- into the convolution that made self, as a residual)
  def("aten::add_(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)", function(a, b, alpha)
    if (alpha == 1 or alpha == None or alpha == nil) and is_tensor(a) and is_tensor(b) and a.dtype == "float32"
       and b.dtype == "float32" and a.numel > 0 and a.ndim > 0 and same_shape(a, b) then
      before_write(a)
      return D.call("Tensor.add_", ADD_, add_inplace_impl, a, b)
    end
    return T.copy_into(a, add(a, b, alpha))
  end)
  def("aten::sub(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", sub)
  def("aten::sub_(Tensor(a!) self, Tensor other, *, Scalar alpha=1) -> Tensor(a!)",
      function(a, b, alpha) return T.copy_into(a, sub(a, b, alpha)) end)
  def("aten::rsub(Tensor self, Tensor other, *, Scalar alpha=1) -> Tensor", function(a, b, alpha) return sub(b, a, alpha) end)
  def("aten::mul(Tensor self, Tensor other) -> Tensor", mul)
  def("aten::mul_(Tensor(a!) self, Tensor other) -> Tensor(a!)", function(a, b) return T.copy_into(a, mul(a, b)) end)
  def("aten::div(Tensor self, Tensor other, *, str? rounding_mode=None) -> Tensor", div)
  def("aten::div_(Tensor(a!) self, Tensor other, *, str? rounding_mode=None) -> Tensor(a!)",
      function(a, b, r) return T.copy_into(a, div(a, b, r)) end)
  def("aten::floor_divide(Tensor self, Tensor other) -> Tensor", function(a, b) return E.binary(a, b, nil, lua_floordiv, S.floordiv) end)
  def("aten::remainder(Tensor self, Tensor other) -> Tensor", function(a, b) return E.binary(a, b, nil, lua_remainder, S.remainder) end)
  def("aten::neg(Tensor self) -> Tensor", function(a)
    if is_tensor(a) then return mul(a, -1) end
    return -S.num(a)
  end)
  def("aten::pow(Tensor self, Tensor exponent) -> Tensor", function(a, b)
    return E.binary(a, b, nil, function(x, y) return x ^ y end, function(x, y) return S.num(x) ^ S.num(y) end)
  end)
  for _, name in ipairs { "eq", "ne", "lt", "le", "gt", "ge" } do
    local f = ({ eq = function(x, y) return x == y end, ne = function(x, y) return x ~= y end,
                 lt = function(x, y) return x < y end, le = function(x, y) return x <= y end,
                 gt = function(x, y) return x > y end, ge = function(x, y) return x >= y end })[name]
    def("aten::" .. name .. "(Tensor self, Tensor other) -> Tensor", comparison(name, f))
  end
  local function bitwise(name, fb)
    return function(a, b)
      if type(a) == "boolean" and type(b) == "boolean" then return fb(a, b) end
      if type(a) == "number" and type(b) == "number" then return S.num(bit[name](a, b)) end
      if is_tensor(a) or is_tensor(b) then
        return E.lua_binary(a, b, function(x, y) return bit[name](x, y) end, E.result_dtype(a, b))
      end
      S.type_error("aten::__" .. name:sub(4) .. "__", a, b)
    end
  end
  def("aten::__and__(Tensor self, Tensor other) -> Tensor", bitwise("band", function(x, y) return x and y end))
  def("aten::__or__(Tensor self, Tensor other) -> Tensor", bitwise("bor", function(x, y) return x or y end))
  def("aten::__xor__(Tensor self, Tensor other) -> Tensor", bitwise("bxor", function(x, y) return x ~= y end))
  -- logical operators and reductions over bool tensors (masks: small)
  local function truth(x) return x ~= 0 end
  for name, f in pairs { logical_or = function(x, y) return truth(x) or truth(y) end,
                         logical_and = function(x, y) return truth(x) and truth(y) end,
                         logical_xor = function(x, y) return truth(x) ~= truth(y) end } do
    def("aten::" .. name .. "(Tensor self, Tensor other) -> Tensor",
        function(a, b) return E.lua_binary(a, b, function(x, y) return f(x, y) and 1 or 0 end, "bool") end)
  end
  def("aten::logical_not(Tensor self) -> Tensor",
      function(a) return E.lua_binary(a, 0, function(x) return truth(x) and 0 or 1 end, "bool") end)
  local function reduce_bool(name, all)
    return function(x, dim, keepdim)
      if V.is_list(x) then
        for i = 1, #x do if V.truthy(x[i]) ~= all then return not all end end
        return all
      end
      if dim ~= nil and dim ~= None then error(name .. " over a dimension is not supported", 0) end
      local v = x:to("float64"):contiguous()
      local p = v:data()
      for i = 0, v.numel - 1 do if (p[i] ~= 0) ~= all then return Tensor.from_table(all and 0 or 1, "bool") end end
      return Tensor.from_table(all and 1 or 0, "bool")
    end
  end
  def("aten::all(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", reduce_bool("aten::all", true))
  def("aten::any(Tensor self, int? dim=None, bool keepdim=False) -> Tensor", reduce_bool("aten::any", false))
  local function masked_fill(x, mask, value)
    value = S.num(S.scalar_of(value, "aten::masked_fill"))
    local filled = E.lua_binary(mask, x, function(mk, v) if mk ~= 0 then return value end return v end, x.dtype)
    if filled.numel ~= x.numel then error("aten::masked_fill: the mask " .. tostring(mask) .. " does not broadcast to " .. tostring(x), 0) end
    return filled
  end
  def("aten::masked_fill(Tensor self, Tensor mask, Scalar value) -> Tensor", masked_fill)
  def("aten::masked_fill_(Tensor(a!) self, Tensor mask, Scalar value) -> Tensor(a!)",
      function(x, mask, value) return T.copy_into(x, masked_fill(x, mask, value)) end)
  def("aten::floor(Tensor self) -> Tensor", mapped("aten::floor", math.floor))
  def("aten::ceil(Tensor self) -> Tensor", mapped("aten::ceil", math.ceil))
  def("aten::abs(Tensor self) -> Tensor", mapped("aten::abs", math.abs))
  def("aten::sqrt(Tensor self) -> Tensor", mapped("aten::sqrt", math.sqrt))
  def("aten::log(Tensor self) -> Tensor", mapped("aten::log", math.log))
  def("aten::exp(Tensor self) -> Tensor", mapped("aten::exp", math.exp))
  def("aten::round(Tensor self) -> Tensor", mapped("aten::round", function(x)
    local r = math.floor(x + 0.5)
    if r - x == 0.5 and r % 2 ~= 0 then r = r - 1 end   -- halves to even, as Python
    return r
  end))

  -- ---- creation ----
  local function dtype_name(d, default)
    if d == nil or d == None then return default end
    local n = ops.SCALAR_TYPES[d]
    if not n then error("unknown ScalarType " .. tostring(d), 0) end
    return n
  end
  T.dtype_name = dtype_name
  local function shape_list(size, op)
    if type(size) == "number" then return { size } end
    if not (V.is_list(size) or V.is_tuple(size)) then S.type_error(op, size) end
    return { unpack(size) }
  end
  def("prim::NumToTensor(Scalar a) -> Tensor", function(a)
    local t
    if type(a) == "boolean" then t = Tensor.from_table(a and 1 or 0, "bool")
    else t = Tensor.from_table(a, a % 1 == 0 and "int64" or "float64") end
    S.numbers[t] = a
    return t
  end)
  def("aten::scalar_tensor(Scalar s, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
      function(s, dtype) return Tensor.from_table(S.num(s), dtype_name(dtype, "float32")) end)
  def("aten::tensor(t[] data, *, ScalarType? dtype=None, Device? device=None, bool requires_grad=False) -> Tensor",
      function(data, dtype)
        local probe = data
        while V.is_list(probe) do probe = probe[1] end
        local default = type(probe) == "boolean" and "bool" or (type(probe) == "number" and probe % 1 == 0) and "int64" or "float32"
        local function plain(v) if V.is_list(v) then local o = {} for i = 1, #v do o[i] = plain(v[i]) end return o end return S.num(v) end
        return Tensor.from_table(plain(data), dtype_name(dtype, default))
      end)
  local FACTORY = ", *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None"
  def("aten::zeros(int[] size" .. FACTORY .. ") -> Tensor",
      function(size, dtype) return Tensor.zeros(shape_list(size, "aten::zeros"), dtype_name(dtype, "float32")) end)
  def("aten::empty(int[] size" .. FACTORY .. ", MemoryFormat? memory_format=None) -> Tensor",
      function(size, dtype) return Tensor.zeros(shape_list(size, "aten::empty"), dtype_name(dtype, "float32")) end)
  def("aten::ones(int[] size" .. FACTORY .. ") -> Tensor",
      function(size, dtype) return Tensor.full(shape_list(size, "aten::ones"), 1, dtype_name(dtype, "float32")) end)
  def("aten::full(int[] size, Scalar fill_value" .. FACTORY .. ") -> Tensor", function(size, v, dtype)
    local default = type(v) == "boolean" and "bool" or (v % 1 == 0 and "int64" or "float32")
    return Tensor.full(shape_list(size, "aten::full"), S.num(v), dtype_name(dtype, default))
  end)
  local LIKE = FACTORY .. ", MemoryFormat? memory_format=None"
  def("aten::zeros_like(Tensor self" .. LIKE .. ") -> Tensor", function(x, dtype) return Tensor.zeros(x.shape, dtype_name(dtype, x.dtype)) end)
  def("aten::empty_like(Tensor self" .. LIKE .. ") -> Tensor", function(x, dtype) return Tensor.zeros(x.shape, dtype_name(dtype, x.dtype)) end)
  def("aten::ones_like(Tensor self" .. LIKE .. ") -> Tensor", function(x, dtype) return Tensor.full(x.shape, 1, dtype_name(dtype, x.dtype)) end)
  def("aten::full_like(Tensor self, Scalar fill_value" .. LIKE .. ") -> Tensor",
      function(x, v, dtype) return Tensor.full(x.shape, S.num(v), dtype_name(dtype, x.dtype)) end)
  def("aten::new_zeros(Tensor self, int[] size" .. FACTORY .. ") -> Tensor",
      function(x, size, dtype) return Tensor.zeros(shape_list(size, "aten::new_zeros"), dtype_name(dtype, x.dtype)) end)
  def("aten::new_ones(Tensor self, int[] size" .. FACTORY .. ") -> Tensor",
      function(x, size, dtype) return Tensor.full(shape_list(size, "aten::new_ones"), 1, dtype_name(dtype, x.dtype)) end)
  def("aten::new_full(Tensor self, int[] size, Scalar fill_value" .. FACTORY .. ") -> Tensor",
      function(x, size, v, dtype) return Tensor.full(shape_list(size, "aten::new_full"), S.num(v), dtype_name(dtype, x.dtype)) end)
  def("aten::arange(Scalar start, Scalar? end=None, Scalar? step=None" .. FACTORY .. ") -> Tensor",
      function(a, b, step, dtype)
        if b == None then a, b = 0, a end
        if step == None then step = 1 end
        local integral = a % 1 == 0 and b % 1 == 0 and step % 1 == 0
        return Tensor.arange(a, b, step, dtype_name(dtype, integral and "int64" or "float32"))
      end)
  def("aten::zero_(Tensor(a!) self) -> Tensor(a!)", function(x) return T.copy_into(x, 0) end)
  def("aten::fill_(Tensor(a!) self, Scalar value) -> Tensor(a!)", function(x, v) return T.copy_into(x, S.num(S.scalar_of(v, "aten::fill_"))) end)
  def("aten::copy_(Tensor(a!) self, Tensor src, bool non_blocking=False) -> Tensor(a!)", function(x, src) return T.copy_into(x, src) end)

  -- ---- conversions ----
  def("aten::item(Tensor self) -> Scalar", function(x) return S.scalar_of(x, "aten::item") end)
  def("aten::detach(Tensor(a) self) -> Tensor(a)", function(x) return x end)
  def("aten::clone(Tensor self, *, MemoryFormat? memory_format=None) -> Tensor", function(x) return x:clone() end)
  def("aten::contiguous(Tensor(a) self, *, MemoryFormat memory_format=contiguous_format) -> Tensor(a)",
      function(x) return x:contiguous() end)
  def("aten::is_floating_point(Tensor self) -> bool", function(x) return x.is_floating_point end)
  def("aten::numel(Tensor self) -> int", function(x) return x.numel end)
  def("aten::dim(Tensor self) -> int", function(x) return x.ndim end)
  -- aten::to's overloads, told apart by the values: (dtype), (device,
  -- dtype), (other tensor), each followed by non_blocking and copy.
  def("aten::to(Tensor(a) self, a=None, b=None, c=None, d=None, e=None, *, MemoryFormat? memory_format=None) -> Tensor(a)",
      function(x, a, b)
        local dtype = a
        if type(a) == "table" and getmetatable(a) == V.Device then dtype = b
        elseif is_tensor(a) then dtype = ops.SCALAR_TYPE_OF[a.dtype] end
        if type(dtype) ~= "number" then return x end
        local name = dtype_name(dtype)
        if name == x.dtype then return x end
        return x:to(name)
      end)
  def("aten::type_as(Tensor self, Tensor other) -> Tensor", function(x, o) return x.dtype == o.dtype and x or x:to(o.dtype) end)
end
