-- lua/pthcv/jit/ops/scalar.lua: TorchScript's operators on ints, floats,
-- bools, strings, lists and dicts (register_prim_ops.cpp's aten:: names):
-- the arithmetic and comparisons of shape computations and control flow.
-- Overloads over tensors live in pthcv.jit.ops.tensor, which calls these
-- for the scalar cases.
local V = require "pthcv.jit.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"

local None, List = V.None, V.List
local is_tensor = Tensor.is
local floor = math.floor

local S = {}

local function type_error(op, ...)
  local names = {}
  for i = 1, select("#", ...) do names[i] = V.typename((select(i, ...))) end
  error(op .. ": unsupported operand types (" .. table.concat(names, ", ") .. ")", 0)
end
S.type_error = type_error

local function num(v)
  if type(v) == "number" then return v end
  if v == true then return 1 elseif v == false then return 0 end
end
S.num = num

-- A list index (0-based, negative from the end) as a 1-based one.
local function list_index(l, i, op)
  local n = #l
  if type(i) ~= "number" or i % 1 ~= 0 then error(op .. ": list indices must be integers, not " .. V.typename(i), 0) end
  if i < 0 then i = i + n end
  if i < 0 or i >= n then error(op .. ": list index out of range", 0) end
  return i + 1
end
S.list_index = list_index

-- Python's slice bounds for a sequence of length n: 1-based first, last, step.
function S.slice_bounds(n, start, stop, step)
  if step == nil or step == None then step = 1 end
  if step == 0 then error("slice step cannot be zero", 0) end
  local function clamp(v, default)
    if v == nil or v == None then return default end
    if v < 0 then v = v + n end
    if step > 0 then return math.max(0, math.min(v, n)) end
    return math.max(-1, math.min(v, n - 1))
  end
  local lo = clamp(start, step > 0 and 0 or n - 1)
  local hi = clamp(stop, step > 0 and n or -1)
  return lo + 1, hi + 1, step   -- iterate i = lo+1, lo+1+step, ... while (step > 0 and i < hi+1) or (step < 0 and i > hi+1)
end

function S.slice_seq(seq, start, stop, step, mt)
  local lo, hi, st = S.slice_bounds(#seq, start, stop, step)
  local out = {}
  local i = lo
  while (st > 0 and i < hi) or (st < 0 and i > hi) do
    out[#out + 1] = seq[i]
    i = i + st
  end
  return setmetatable(out, mt or getmetatable(seq))
end

function S.str_slice(s, start, stop, step)
  local chars = {}
  for i = 1, #s do chars[i] = s:sub(i, i) end
  return table.concat(S.slice_seq(chars, start, stop, step, List))
end

-- ---- arithmetic on numbers (the tensor ops call these) ----------------------
function S.add(a, b)
  local x, y = num(a), num(b)
  if x and y then return x + y end
  if type(a) == "string" and type(b) == "string" then return a .. b end
  if V.is_list(a) and V.is_list(b) then
    local out = {}
    for i = 1, #a do out[i] = a[i] end
    for i = 1, #b do out[#a + i] = b[i] end
    return setmetatable(out, List)
  end
  type_error("aten::add", a, b)
end

function S.mul(a, b)
  local x, y = num(a), num(b)
  if x and y then return x * y end
  if V.is_list(a) and type(b) == "number" then
    local out = {}
    for _ = 1, math.max(b, 0) do for i = 1, #a do out[#out + 1] = a[i] end end
    return setmetatable(out, List)
  end
  type_error("aten::mul", a, b)
end

function S.floordiv(a, b)
  local x, y = num(a), num(b)
  if not (x and y) then type_error("aten::floordiv", a, b) end
  if y == 0 then error("ZeroDivisionError: integer division or modulo by zero", 0) end
  return floor(x / y)
end

function S.remainder(a, b)
  local x, y = num(a), num(b)
  if not (x and y) then type_error("aten::remainder", a, b) end
  if y == 0 then error("ZeroDivisionError: integer division or modulo by zero", 0) end
  return x - floor(x / y) * y   -- Python's sign rule (the divisor's)
end

function S.div(a, b)
  local x, y = num(a), num(b)
  if not (x and y) then type_error("aten::div", a, b) end
  if y == 0 then error("ZeroDivisionError: float division by zero", 0) end
  return x / y
end

-- Comparisons of numbers, strings and (for eq/ne) anything Python compares.
local function ordered(op, a, b, f)
  local x, y = num(a), num(b)
  if x and y then return f(x, y) end
  if type(a) == "string" and type(b) == "string" then return f(a, b) end
  if (V.is_list(a) or V.is_tuple(a)) and getmetatable(a) == getmetatable(b) then
    for i = 1, math.min(#a, #b) do
      if not V.eq(a[i], b[i]) then return ordered(op, a[i], b[i], f) end
    end
    return f(#a, #b)
  end
  type_error(op, a, b)
end
S.lt = function(a, b) return ordered("aten::lt", a, b, function(x, y) return x < y end) end
S.le = function(a, b) return ordered("aten::le", a, b, function(x, y) return x <= y end) end
S.gt = function(a, b) return ordered("aten::gt", a, b, function(x, y) return x > y end) end
S.ge = function(a, b) return ordered("aten::ge", a, b, function(x, y) return x >= y end) end
S.eq = V.eq
S.ne = function(a, b) return not V.eq(a, b) end

-- The numbers prim::NumToTensor made tensors of (weak keys; a tensor
-- written in place is forgotten: pthcv.jit.ops.tensor's before_write): int() of such a tensor gives the
-- number back without reading the tensor. Traced code wraps every size
-- it computes with (ops.prim.NumToTensor(torch.size(x, 0)), then int(_0)),
-- and a pass that reads elements in Lua cannot be planned (pthcv.nn.plan).
S.numbers = setmetatable({}, { __mode = "k" })

-- Python's int(), float(), bool() of a scalar or a one-element tensor.
local function scalar_of(v, op)
  if is_tensor(v) then
    local n = S.numbers[v]
    if n ~= nil then return n end
    if v.numel ~= 1 then error(op .. ": a Tensor with " .. v.numel .. " elements cannot be converted to a scalar", 0) end
    return v:item()
  end
  return v
end
S.scalar_of = scalar_of

function S.Int(v)
  v = scalar_of(v, "aten::Int")
  if type(v) == "boolean" then return v and 1 or 0 end
  if type(v) == "string" then
    local n = tonumber(v:match("^%s*(.-)%s*$"), 10)
    if not n or n % 1 ~= 0 then error("ValueError: invalid literal for int(): '" .. v .. "'", 0) end
    return n
  end
  if type(v) ~= "number" then type_error("aten::Int", v) end
  if v ~= v or v == math.huge or v == -math.huge then error("ValueError: cannot convert float " .. V.str(v) .. " to integer", 0) end
  return v >= 0 and floor(v) or -floor(-v)
end

function S.Float(v)
  v = scalar_of(v, "aten::Float")
  if type(v) == "boolean" then return v and 1 or 0 end
  if type(v) == "string" then
    local s = v:match("^%s*(.-)%s*$"):lower()
    if s == "inf" or s == "+inf" then return math.huge elseif s == "-inf" then return -math.huge
    elseif s == "nan" then return 0 / 0 end
    local n = tonumber(s)
    if not n then error("ValueError: could not convert string to float: '" .. v .. "'", 0) end
    return n
  end
  if type(v) ~= "number" then type_error("aten::Float", v) end
  return v
end

function S.Bool(v)
  v = scalar_of(v, "aten::Bool")
  return V.truthy(v)
end

-- Python's str.format for "{}" fields (what torch.format supports).
function S.format(fmt, ...)
  local args, n = { ... }, select("#", ...)
  local i = 0
  local out = fmt:gsub("{}", function()
    i = i + 1
    if i > n then return "{}" end
    return V.str(args[i])
  end)
  return out
end

function S.len(v)
  if type(v) == "string" then return #v end
  if V.is_dict(v) then return OrderedDict.len(v) end
  if is_tensor(v) then
    if v.ndim == 0 then error("TypeError: len() of a 0-d tensor", 0) end
    return v:size(1)
  end
  if type(v) == "table" and (V.is_list(v) or V.is_tuple(v)) then return #v end
  type_error("aten::len", v)
end

-- x in container
function S.contains(container, x)
  if type(container) == "string" then return container:find(x, 1, true) ~= nil end
  if V.is_dict(container) then return OrderedDict.has(container, x) end
  if V.is_list(container) or V.is_tuple(container) then
    for i = 1, #container do if V.eq(container[i], x) then return true end end
    return false
  end
  type_error("aten::__contains__", container, x)
end

-- container[index] for lists, tuples, dicts and strings.
function S.getitem(c, i)
  local mt = type(c) == "table" and getmetatable(c)
  if mt == List or mt == V.Tuple then return c[list_index(c, i, "aten::__getitem__")] end
  if mt == OrderedDict.mt then
    local v = OrderedDict.get(c, i)
    if v == nil then error("KeyError: " .. V.repr(i), 0) end
    return v
  end
  if type(c) == "string" then
    local k = list_index({ c:byte(1, -1) }, i, "aten::__getitem__")
    return c:sub(k, k)
  end
  type_error("aten::__getitem__", c, i)
end

function S.setitem(c, i, v)
  if V.is_list(c) then c[list_index(c, i, "aten::_set_item")] = v; return c end
  if V.is_dict(c) then c[i] = v; return c end
  type_error("aten::_set_item", c, i, v)
end

return S
