-- lua/pthcv/jit/ops/prim.lua: prim:: operators and aten:: operators on
-- ints, floats, bools, strings, lists and dicts (register_prim_ops.cpp):
-- exceptions, conversions, formatting, list and dict methods.
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"

local None, List = V.None, V.List
local is_tensor = Tensor.is

-- torch's ScalarType numbers, as prim::dtype gives them and aten::to takes.
local SCALAR_TYPES = {
  [0] = "uint8", "int8", "int16", "int32", "int64", "float16", "float32", "float64",
  "complex32", "complex64", "complex128", "bool", "qint8", "quint8", "qint32", "bfloat16",
}
local SCALAR_TYPE_OF = {}
for k, v in pairs(SCALAR_TYPES) do SCALAR_TYPE_OF[v] = k end

return function(ops)
  local def = ops.def
  ops.SCALAR_TYPES, ops.SCALAR_TYPE_OF = SCALAR_TYPES, SCALAR_TYPE_OF

  -- ---- exceptions, printing ----
  def("prim::RaiseException(str msg, str? cls=None) -> ()", function(msg, cls)
    local name = cls ~= None and tostring(cls):gsub("^builtins%.", "") or nil
    if name and not msg:find("^" .. name) then msg = name .. ": " .. msg end
    error(V.str(msg), 0)
  end)
  def("aten::warn(str message, int stacklevel=2) -> ()", function() return None end)
  def("prim::Print(...) -> ()", function(...)
    local parts = {}
    for i = 1, select("#", ...) do parts[i] = V.str((select(i, ...))) end
    io.stderr:write(table.concat(parts, " "), "\n")
    return None
  end)

  -- ---- identity and truth ----
  def("aten::__is__(t1 self, t2 obj) -> bool", function(a, b) return rawequal(a, b) end)
  def("aten::__isnot__(t1 self, t2 obj) -> bool", function(a, b) return not rawequal(a, b) end)
  def("aten::__not__(bool self) -> bool", function(a) return not V.truthy(a) end)

  -- ---- conversions ----
  def("aten::Int(a) -> int", S.Int)
  def("aten::Float(a) -> float", S.Float)
  def("aten::Bool(a) -> bool", S.Bool)
  def("aten::ScalarImplicit(Tensor a) -> Scalar", function(a) return S.scalar_of(a, "aten::ScalarImplicit") end)
  def("aten::IntImplicit(Tensor a) -> int", S.Int)
  def("aten::FloatImplicit(Tensor a) -> float", S.Float)
  def("aten::str(t elem) -> str", function(v) return V.str(v) end)
  def("aten::format(str self, ...) -> str", S.format)
  def("aten::device(str a) -> Device", function(s)
    local kind, index = s:match("^(%a+):?(%d*)$")
    if kind ~= "cpu" then error("RuntimeError: pthcv runs on the CPU only, not on device '" .. s .. "'", 0) end
    return V.device(kind, tonumber(index))
  end)

  -- ---- tensor facts that are not tensors ----
  def("prim::dtype(Tensor a) -> int", function(t)
    local id = SCALAR_TYPE_OF[t.dtype]
    if not id then error("prim::dtype: " .. t.dtype .. " has no torch ScalarType number", 0) end
    return id
  end)
  def("prim::device(Tensor a) -> Device", function() return V.device("cpu") end)
  def("prim::is_cuda(Tensor a) -> bool", function() return false end)
  def("prim::is_quantized(Tensor a) -> bool", function(t) return t.is_quantized end)
  def("prim::requires_grad(Tensor a) -> bool", function() return false end)
  def("prim::is_nested(Tensor a) -> bool", function() return false end)
  def("aten::is_grad_enabled() -> bool", function() return false end)
  def("aten::is_autocast_enabled() -> bool", function() return false end)
  def("prim::layout(Tensor a) -> Layout", function() return 0 end)

  -- ---- numbers ----
  def("aten::floordiv(a, b)", S.floordiv)
  def("aten::__range_length(int lo, int hi, int step) -> int", function(lo, hi, step)
    if step == 0 then error("range() arg 3 must not be zero", 0) end
    if step > 0 and lo < hi then return 1 + math.floor((hi - 1 - lo) / step) end
    if step < 0 and lo > hi then return 1 + math.floor((lo - 1 - hi) / -step) end
    return 0
  end)
  def("aten::__derive_index(int index, int start, int step) -> int", function(i, start, step) return start + i * step end)
  local function extreme(name, better)
    return function(a, b)
      if b ~= None then return better(S.num(a), S.num(b)) and a or b end
      if not V.is_list(a) then S.type_error(name, a) end
      if #a == 0 then error("ValueError: " .. name .. "() arg is an empty sequence", 0) end
      local m = a[1]
      for i = 2, #a do if better(a[i], m) then m = a[i] end end
      return m
    end
  end
  def("prim::min(a, b=None)", extreme("min", function(x, y) return x < y end))
  def("prim::max(a, b=None)", extreme("max", function(x, y) return x > y end))
  def("prim::abs(a)", function(a) return math.abs(a) end)

  -- ---- lists ----
  local function list_arg(l, op) if not V.is_list(l) then S.type_error(op, l) end return l end
  def("aten::len(t[] a) -> int", S.len)
  def("aten::append(t[](a!) self, t(c -> *) el) -> t[](a!)", function(l, x) list_arg(l, "aten::append")[#l + 1] = x; return l end)
  def("aten::extend(t[](a!) self, t[] other) -> ()", function(l, o)
    list_arg(l, "aten::extend")
    for i = 1, #o do l[#l + 1] = o[i] end
    return None
  end)
  def("aten::insert(t[](a!) self, int idx, t(b -> *) el) -> ()", function(l, i, x)
    local n = #list_arg(l, "aten::insert")
    if i < 0 then i = math.max(i + n, 0) end
    table.insert(l, math.min(i, n) + 1, x)
    return None
  end)
  def("aten::pop(t[](a!) self, int idx=-1) -> t(*)", function(l, i)
    if V.is_dict(l) then
      local v = OrderedDict.get(l, i)
      if v == nil then error("KeyError: " .. V.repr(i), 0) end
      l[i] = nil
      return v
    end
    if #list_arg(l, "aten::pop") == 0 then error("IndexError: pop from empty list", 0) end
    return table.remove(l, S.list_index(l, i, "aten::pop"))
  end)
  def("aten::clear(t[](a!) self) -> ()", function(l)
    if V.is_dict(l) then for _, k in ipairs(OrderedDict.keys(l)) do l[k] = nil end return None end
    for i = #list_arg(l, "aten::clear"), 1, -1 do l[i] = nil end
    return None
  end)
  def("aten::copy(t[](a) self) -> t[]", function(l)
    if V.is_dict(l) then
      local d = OrderedDict.new()
      for _, kv in ipairs(OrderedDict.items(l)) do d[kv[1]] = kv[2] end
      return d
    end
    return S.slice_seq(list_arg(l, "aten::copy"), None, None, 1)
  end)
  def("aten::list(t[] l) -> t[]", function(l)
    if type(l) == "string" then
      local out = {}
      for i = 1, #l do out[i] = l:sub(i, i) end
      return setmetatable(out, List)
    end
    return S.slice_seq(l, None, None, 1, List)
  end)
  def("aten::index(t[] self, t el) -> int", function(l, x)
    for i = 1, #l do if V.eq(l[i], x) then return i - 1 end end
    error("ValueError: " .. V.repr(x) .. " is not in list", 0)
  end)
  def("aten::count(t[] self, t el) -> int", function(l, x)
    local n = 0
    for i = 1, #l do if V.eq(l[i], x) then n = n + 1 end end
    return n
  end)
  def("aten::reverse(t[](a!) self) -> ()", function(l)
    local n = #l
    for i = 1, math.floor(n / 2) do l[i], l[n + 1 - i] = l[n + 1 - i], l[i] end
    return None
  end)
  local function sort(l, reverse)
    table.sort(l, function(a, b) if reverse then return S.gt(a, b) end return S.lt(a, b) end)
  end
  -- list.sort(reverse) and torch.sort(tensor, dim, descending) (pthcv.jit.ops.detection)
  def("aten::sort(self, a=None, b=None, *, bool? stable=None, int dim=-1, bool descending=False, bool reverse=False) -> ()",
      function(l, a, b, _, dim, descending, reverse)
        if Tensor.is(l) then
          return require("pthcv.jit.ops.detection").sort(l, a == None and dim or a, b == None and descending or b)
        end
        if a ~= None then reverse = a end
        sort(list_arg(l, "aten::sort"), reverse == true)
        return None
      end)
  def("aten::sorted(t[](a) input) -> t[]", function(l)
    local c = S.slice_seq(l, None, None, 1, List)
    sort(c, false)
    return c
  end)
  def("aten::__contains__(t[] l, t item) -> bool", S.contains)
  def("aten::__getitem__(t[](a) list, int idx) -> t(*)", S.getitem)
  def("aten::_set_item(t[](a!) l, int idx, t(b -> *) el) -> t[](a!)", S.setitem)

  -- ---- dicts ----
  local function dict_arg(d, op) if not V.is_dict(d) then S.type_error(op, d) end return d end
  def("aten::keys(Dict(t, t) self) -> t[]", function(d) return V.list(OrderedDict.keys(dict_arg(d, "aten::keys"))) end)
  def("aten::values(Dict(t, t) self) -> t[]", function(d) return V.list(OrderedDict.values(dict_arg(d, "aten::values"))) end)
  def("aten::items(Dict(t, t) self) -> (t, t)[]", function(d)
    local out = V.list()
    for i, kv in ipairs(OrderedDict.items(dict_arg(d, "aten::items"))) do out[i] = V.tuple { kv[1], kv[2] } end
    return out
  end)
  def("aten::get(Dict(t, t) self, t key, t default_value=None) -> t?", function(d, k, default)
    local v = OrderedDict.get(dict_arg(d, "aten::get"), k)
    if v == nil then return default end
    return v
  end)
  def("aten::setdefault(Dict(t, t)(a!) self, t(b -> *) key, t(c -> *) default_value) -> t(*)", function(d, k, default)
    local v = OrderedDict.get(dict_arg(d, "aten::setdefault"), k)
    if v == nil then d[k] = default; return default end
    return v
  end)
  -- dict() and dict(pairs): a list of (key, value) tuples, or a dict copied
  def("aten::dict(a=None) -> Dict(str, Tensor)", function(pairs_)
    local d = OrderedDict.new()
    if pairs_ == None then return d end
    if V.is_dict(pairs_) then
      for _, kv in ipairs(OrderedDict.items(pairs_)) do d[kv[1]] = kv[2] end
      return d
    end
    for _, kv in ipairs(list_arg(pairs_, "aten::dict")) do
      if not V.is_tuple(kv) or #kv ~= 2 then error("TypeError: dict() takes (key, value) pairs, got a " .. V.typename(kv), 0) end
      d[kv[1]] = kv[2]
    end
    return d
  end)
  def("aten::update(Dict(t, t)(a!) self, Dict(t, t)(a!) to_add) -> ()", function(d, o)
    for _, kv in ipairs(OrderedDict.items(dict_arg(o, "aten::update"))) do dict_arg(d, "aten::update")[kv[1]] = kv[2] end
    return None
  end)

  -- ---- strings ----
  def("aten::join(str self, str[] values) -> str", function(sep, l) return table.concat(l, sep) end)
  def("aten::find(str self, str substr, int start=0, int end=-1) -> int", function(s, sub, start, stop)
    local n = #s
    if start < 0 then start = math.max(start + n, 0) end
    if stop < 0 then stop = stop + n + 1 end   -- torch's default -1: to the end
    local at = s:sub(1, stop):find(sub, start + 1, true)
    return at and at - 1 or -1
  end)
  def("aten::startswith(str self, str substr, int start=0, int end=-1) -> bool", function(s, p) return s:sub(1, #p) == p end)
  def("aten::endswith(str self, str substr, int start=0, int end=-1) -> bool", function(s, p) return p == "" or s:sub(-#p) == p end)
end
