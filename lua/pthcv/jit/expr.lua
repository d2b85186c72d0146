-- lua/pthcv/jit/expr.lua: TorchScript expressions into Lua closures
-- fn(frame) -> value (see pthcv.jit.compile), and their runtime helpers
-- (attribute access, subscripts, iteration).
--
-- Names resolve when compiling: locals to frame slots; `torch.X(...)` and
-- `ops.NS.X(...)` to the operator NS::X (pthcv.jit.ops, bound to torch's
-- schema with positional and keyword arguments); `__torch__.a.b.f(...)` to
-- the archive's functions and classes; `CONSTANTS.cN` to constants.pkl;
-- the builtins python_print writes (annotate, unchecked_cast,
-- uninitialized, isinstance, getattr, int, float, bool, str, len, print,
-- ...). Anything else is refused by name, Python's own modules and
-- builtins (os, open, eval, __import__, ...) as host code that never runs.
-- Method calls dispatch on the receiver's class at run time; when the
-- receiver's class is known statically, the method is compiled now.
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"
local ops = require "pthcv.jit.ops"
local schema = require "pthcv.jit.schema"
local track = require "pthcv.jit.track"
local calls = require "pthcv.jit.calls"
local Tensor = require "pthcv.tensor"

local M = {}
local X = {}
X.__index = X
local None, List, Tuple = V.None, V.List, V.Tuple
local is_tensor = Tensor.is

-- Fields pthcv.nn.Module keeps on every module: never archive attributes.
M.RESERVED = { _child_names = true, _param_names = true, _buffer_names = true, _nonpersistent = true,
               _ready = true, _ctx = true, _claimed = true, _class = true, _pack = true }

-- Python names that would run host code: refused by name.
M.DANGEROUS = {}
for name in ([[os sys subprocess socket shutil builtins importlib pickle marshal ctypes runpy posix nt pty
  platform signal io pathlib tempfile multiprocessing threading asyncio webbrowser urllib http requests
  eval exec compile open __import__ globals locals vars input breakpoint setattr delattr type object super
  memoryview help exit quit __builtins__ file execfile reload]]):gmatch("%S+") do M.DANGEROUS[name] = true end

function M.new(ctx)
  local x = setmetatable({ ctx = ctx, rt = ctx.rt, archive = ctx.archive }, X)
  x.setattr, x.setitem, x.iteration, x.getattr = M.setattr, M.setitem, M.iteration, M.getattr
  return x
end

local specialize = require "pthcv.jit.specialize"
local const = specialize.const
M.const = const

-- ---- runtime helpers -----------------------------------------------------------
function M.getattr(o, name)
  if type(o) == "table" then
    local v = rawget(o, name)
    if v ~= nil then return v end
    local cls = rawget(o, "_class")
    if cls then
      local c = cls.constants[name]
      if c ~= nil then return c end
      local i = cls.field_index[name]
      if i and getmetatable(o) == Tuple then return o[i] end
      if cls.attr_types[name] then return None end
    end
    if getmetatable(o) == V.Device and (name == "type" or name == "index") then return o[name] end
  end
  error("AttributeError: '" .. V.typename(o) .. "' object has no attribute '" .. name .. "'", 0)
end

function M.setattr(o, name, v)
  if type(o) ~= "table" or not rawget(o, "_class") or getmetatable(o) == Tuple then
    error("AttributeError: cannot set attribute '" .. name .. "' of a " .. V.typename(o), 0)
  end
  rawset(o, name, v)
  if track.active then track.kept[#track.kept + 1] = v end
end

function M.setitem(c, i, v) return S.setitem(c, i, v) end

-- c[i]: lists, tuples, dicts, strings, tensors (dimension 0) and module
-- containers (ModuleList / ModuleDict children by name).
function M.getitem(c, i)
  if is_tensor(c) then return ops.get("aten::select").fn(c, 0, i) end
  if type(c) == "table" and rawget(c, "_class") and getmetatable(c) ~= Tuple then
    local key = type(i) == "number" and string.format("%d", i) or i
    local v = rawget(c, key)
    if v == nil or M.RESERVED[key] then error("IndexError: " .. rawget(c, "_class").name .. " has no item " .. V.repr(i), 0) end
    return v
  end
  return S.getitem(c, i)
end

-- What a for loop walks: lists and tuples (live), dict keys, characters.
function M.iteration(v)
  if V.is_list(v) or V.is_tuple(v) then return v end
  if V.is_dict(v) then return V.Dict.keys(v) end
  if type(v) == "string" then
    local out = {}
    for i = 1, #v do out[i] = v:sub(i, i) end
    return out
  end
  if is_tensor(v) then return ops.get("aten::unbind").fn(v, 0) end
  error("TypeError: '" .. V.typename(v) .. "' object is not iterable", 0)
end

-- ---- static information (classes of receivers) ---------------------------------
-- {cls = record} for an annotation naming a class (or Optional of one).
function X:type_info(node)
  local ok, ty = pcall(V.parse_type, node, function(name) return self.archive:class(name) end)
  if not ok then return nil end
  if ty.k == "Optional" then ty = ty.t end
  if ty and ty.k == "class" and ty.cls then return { cls = ty.cls } end
  return nil
end

-- ---- compiling ------------------------------------------------------------------
local compilers = {}

function X:compile(fc, e)
  local f = compilers[e.k]
  if not f then return self.ctx:problem(fc:loc(e), "unexpected " .. e.k:lower() .. " expression"), nil end
  return f(self, fc, e)
end

function compilers.INT(_, _, e) return const(e.v) end
compilers.FLOAT = compilers.INT
function compilers.STR(_, _, e) return const(e.s) end
function compilers.CONST(_, _, e)
  if e.op == "None" then return const(None) end
  return const(e.op == "True")
end
function compilers.EMPTY(self, fc, e) return self.ctx:problem(fc:loc(e), "missing expression") end

-- A name that is not a local: refused, with why.
function X:global_name(fc, name, loc)
  if M.DANGEROUS[name] then
    return self.ctx:problem(loc, "refers to Python's '" .. name .. "': refused (nothing in a TorchScript archive runs as host code)")
  end
  if name == "torch" or name == "ops" or name == "__torch__" or name == "CONSTANTS" or calls.BUILTINS[name] then
    return self.ctx:problem(loc, "'" .. name .. "' cannot be used as a value")
  end
  return self.ctx:problem(loc, "name '" .. name .. "' is not defined")
end

function compilers.NAME(self, fc, e)
  local s = e.s
  local i = fc.slots[s]
  if i then return specialize.site("name", i, s, error), fc.info[s] or nil end
  if s == "inf" then return const(math.huge) end
  if s == "nan" then return const(0 / 0) end
  return self:global_name(fc, s, fc:loc(e))
end

function compilers.ATTR(self, fc, e)
  local loc = fc:loc(e)
  local name = V.dotted(e)
  local root = name and name:match("^[^.]+")
  if root and not fc.slots[root] then
    if root == "CONSTANTS" then
      local ok, v = pcall(self.archive.constant, self.archive, e.s, loc)
      if not ok then return self.ctx:problem(loc, (v:gsub("^pthcv: ", ""))) end
      return const(v)
    end
    if root == "__torch__" then
      if self.archive:func(name) then return const(setmetatable({ fn = name }, V.FunctionRef)), { func = name } end
      return self.ctx:problem(loc, name .. " is not a function of the archive")
    end
    if e[1].k == "NAME" then return self:global_name(fc, root, loc) end
  end
  if M.RESERVED[e.s] then return self.ctx:problem(loc, "attribute '" .. e.s .. "' is reserved by pthcv") end
  local obj, info = self:compile(fc, e[1])
  local attr = e.s
  local getattr = M.getattr
  local out_info
  if info and info.cls then
    local t = info.cls.attr_types[attr]
    out_info = t and self:type_info(t) or nil
  end
  return specialize.site("getattr", obj, attr, getattr, rawget, type), out_info
end

function compilers.SUBSCRIPT(self, fc, e)
  local c, info = self:compile(fc, e[1])
  local idx = e[2]
  if idx.k == "SLICE" then
    local parts = {}
    for i = 1, 3 do parts[i] = idx[i].k == "EMPTY" and const(None) or self:compile(fc, idx[i]) end
    local lo, hi, st = parts[1], parts[2], parts[3]
    return function(f)
      local v = c(f)
      if type(v) == "string" then return S.str_slice(v, lo(f), hi(f), st(f)) end
      if not (V.is_list(v) or V.is_tuple(v)) then error("TypeError: cannot slice a " .. V.typename(v), 0) end
      local r = S.slice_seq(v, lo(f), hi(f), st(f))
      rawset(r, "_class", nil)
      return r
    end
  end
  local i = self:compile(fc, idx)
  local out_info
  if info and info.cls and idx.k == "STR" then
    local t = info.cls.attr_types[idx.s]
    out_info = t and self:type_info(t) or nil
  end
  local getitem = M.getitem
  return function(f) return getitem(c(f), i(f)) end, out_info
end

-- [a, b] (a, b) {k: v}
local function items_of(self, fc, e, first, step)
  local out = {}
  for i = first, #e, step do out[#out + 1] = self:compile(fc, e[i]) end
  return out
end


function compilers.LIST(self, fc, e)
  local items, n = items_of(self, fc, e, 1, 1), #e
  local mt = e.k == "TUPLE" and Tuple or List
  return function(f)
    local t = {}
    for i = 1, n do t[i] = items[i](f) end
    return setmetatable(t, mt)
  end
end
compilers.TUPLE = compilers.LIST

function compilers.DICT(self, fc, e)
  local keys, vals = items_of(self, fc, e, 1, 2), items_of(self, fc, e, 2, 2)
  return function(f)
    local d = V.Dict.new()
    for i = 1, #keys do
      local k = keys[i](f)
      if k == nil or k ~= k then error("TypeError: unhashable dict key", 0) end
      d[k] = vals[i](f)
    end
    return d
  end
end

function compilers.IFEXP(self, fc, e)
  local c, a, b = self:compile(fc, e[1]), self:compile(fc, e[2]), self:compile(fc, e[3])
  return function(f) if V.truthy(c(f)) then return a(f) end return b(f) end
end

function compilers.BOOLOP(self, fc, e)
  local a, b = self:compile(fc, e[1]), self:compile(fc, e[2])
  if e.op == "and" then
    return function(f) local v = a(f); if not V.truthy(v) then return v end return b(f) end
  end
  return function(f) local v = a(f); if V.truthy(v) then return v end return b(f) end
end

-- Operators are the aten:: operators torch maps them to.
local BINOPS = { add = "aten::add", sub = "aten::sub", mul = "aten::mul", div = "aten::div",
                 floordiv = "aten::floordiv", mod = "aten::remainder", pow = "aten::pow", matmul = "aten::matmul",
                 lshift = "aten::__lshift__", rshift = "aten::__rshift__", bitand = "aten::__and__",
                 bitor = "aten::__or__", bitxor = "aten::__xor__",
                 eq = "aten::eq", ne = "aten::ne", lt = "aten::lt", le = "aten::le", gt = "aten::gt", ge = "aten::ge",
                 is = "aten::__is__", isnot = "aten::__isnot__", ["in"] = "aten::__contains__",
                 notin = "aten::__contains__" }

function compilers.BINOP(self, fc, e)
  local name = BINOPS[e.op]
  if not name then return self.ctx:problem(fc:loc(e), "the operator " .. tostring(e.op) .. " is not supported") end
  local a, b = e[1], e[2]
  if e.op == "in" or e.op == "notin" then a, b = b, a end
  local call = calls.op_call(self, fc, name, { a, b }, {}, fc:loc(e))
  if e.op == "notin" then return function(f) return not call(f) end end
  return call
end
compilers.COMPARE = compilers.BINOP

function compilers.UNARY(self, fc, e)
  if e.op == "pos" then return self:compile(fc, e[1]) end
  local name = ({ neg = "aten::neg", ["not"] = "aten::__not__", invert = "aten::bitwise_not" })[e.op]
  return calls.op_call(self, fc, name, { e[1] }, {}, fc:loc(e))
end

function compilers.CALL(self, fc, e) return calls.call(self, fc, e) end

function compilers.SLICE(self, fc, e) return self.ctx:problem(fc:loc(e), "a slice outside of a subscript") end
function compilers.KEYWORD(self, fc, e) return self.ctx:problem(fc:loc(e), "a keyword argument outside of a call") end

local _ = schema
return M
