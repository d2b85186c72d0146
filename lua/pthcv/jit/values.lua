-- lua/pthcv/jit/values.lua: TorchScript's values as the interpreter holds
-- them, and Python's rules over them (truth, equality, str, isinstance).
--
--   TorchScript           Lua
--   None                  values.None (the reader's sentinel)
--   bool, int, float      boolean, number (ints are exact up to 2^53; an
--                         integral float is not told apart from an int)
--   str                   string
--   Tensor                pthcv.Tensor
--   List[T], Tuple[...]   the reader's List / Tuple: 1-based arrays
--   NamedTuple            a Tuple with a _class field (its class record)
--   Dict[K, V]            the reader's OrderedDict (insertion order)
--   a module or object    a ScriptModule (pthcv.jit.module) or a table
--                         {_class = class record, attribute = value...}
--   Device                {type = "cpu", index = -1} (metatable Device)
--   a function value      {fn = qualified name} (metatable FunctionRef)
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"

local V = {}
local None, List, Tuple = values.None, values.List, values.Tuple
V.None, V.List, V.Tuple, V.Dict = None, List, Tuple, OrderedDict

V.Uninitialized = setmetatable({}, { __tostring = function() return "uninitialized" end })
V.Device = { __name = "Device" }
V.Device.__index = V.Device
V.Device.__tostring = function(d) return d.index >= 0 and (d.type .. ":" .. d.index) or d.type end
V.FunctionRef = { __name = "FunctionRef" }
V.FunctionRef.__tostring = function(f) return "<function " .. f.fn .. ">" end
V.Object = { __name = "ScriptObject" }   -- instances of non-module classes

function V.list(t) return setmetatable(t or {}, List) end
function V.tuple(t) return setmetatable(t or {}, Tuple) end
function V.device(kind, index) return setmetatable({ type = kind, index = index or -1 }, V.Device) end

local is_tensor = Tensor.is

-- Python's type name of a value, for messages.
function V.typename(v)
  local t = type(v)
  if v == None then return "NoneType" end
  if t == "boolean" then return "bool" end
  if t == "number" then return v % 1 == 0 and "int" or "float" end
  if t == "string" then return "str" end
  if is_tensor(v) then return "Tensor" end
  if t == "table" then
    local mt = getmetatable(v)
    if mt == List then return "List" end
    if mt == Tuple then return rawget(v, "_class") and v._class.name or "Tuple" end
    if mt == OrderedDict.mt then return "Dict" end
    if mt == V.Device then return "Device" end
    if mt == V.FunctionRef then return "Function" end
    local cls = rawget(v, "_class")
    if cls then return cls.name end
  end
  return t
end

function V.is_list(v) return type(v) == "table" and getmetatable(v) == List end
function V.is_tuple(v) return type(v) == "table" and getmetatable(v) == Tuple end
function V.is_dict(v) return type(v) == "table" and getmetatable(v) == OrderedDict.mt end
function V.is_object(v) return type(v) == "table" and rawget(v, "_class") ~= nil and getmetatable(v) ~= Tuple end

-- Python's truth of a value (conditions are bools in TorchScript; the rest
-- is for hand-written archives).
function V.truthy(v)
  if v == true or v == false then return v end
  if v == None or v == nil then return false end
  local t = type(v)
  if t == "number" then return v ~= 0 end
  if t == "string" then return #v > 0 end
  if is_tensor(v) then
    if v.numel ~= 1 then
      error("Boolean value of Tensor with more than one value is ambiguous", 0)
    end
    return v:item() ~= 0
  end
  if V.is_dict(v) then return OrderedDict.len(v) > 0 end
  if t == "table" and (getmetatable(v) == List or getmetatable(v) == Tuple) then return #v > 0 end
  return true
end

-- Python's == on values (tensors compare by identity here; aten::eq on
-- tensors is elementwise and lives in the ops).
function V.eq(a, b)
  if a == b then return true end
  local ta, tb = type(a), type(b)
  if ta == "boolean" and tb == "number" then return (a and 1 or 0) == b end
  if tb == "boolean" and ta == "number" then return (b and 1 or 0) == a end
  if ta ~= "table" or tb ~= "table" then return false end
  local ma, mb = getmetatable(a), getmetatable(b)
  if (ma == List or ma == Tuple) and ma == mb then
    if #a ~= #b then return false end
    for i = 1, #a do if not V.eq(a[i], b[i]) then return false end end
    return true
  end
  if ma == V.Device and mb == V.Device then return a.type == b.type and a.index == b.index end
  if ma == OrderedDict.mt and mb == OrderedDict.mt then
    if OrderedDict.len(a) ~= OrderedDict.len(b) then return false end
    for _, kv in ipairs(OrderedDict.items(a)) do
      local w = OrderedDict.get(b, kv[1])
      if w == nil or not V.eq(kv[2], w) then return false end
    end
    return true
  end
  return false
end

local float_repr = require("pthcv.nn.repr").float
V.float_repr = float_repr

-- Python's str(v) (int-valued numbers print as ints: see the top).
function V.str(v, depth)
  depth = depth or 0
  local t = type(v)
  if v == None then return "None" end
  if t == "boolean" then return v and "True" or "False" end
  if t == "number" then
    if v % 1 == 0 and v > -2 ^ 63 and v < 2 ^ 63 then return string.format("%d", v) end
    return float_repr(v)
  end
  if t == "string" then return v end
  if depth > 20 then return "..." end
  if t == "table" then
    local mt = getmetatable(v)
    if mt == List or mt == Tuple then
      local parts = {}
      for i = 1, #v do parts[i] = V.repr(v[i], depth + 1) end
      if mt == List then return "[" .. table.concat(parts, ", ") .. "]" end
      return "(" .. table.concat(parts, ", ") .. (#v == 1 and ",)" or ")")
    end
    if mt == OrderedDict.mt then
      local parts = {}
      for i, kv in ipairs(OrderedDict.items(v)) do
        parts[i] = V.repr(kv[1], depth + 1) .. ": " .. V.repr(kv[2], depth + 1)
      end
      return "{" .. table.concat(parts, ", ") .. "}"
    end
  end
  return tostring(v)
end

function V.repr(v, depth)
  if type(v) == "string" then return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'" end
  return V.str(v, depth)
end

-- ---- types --------------------------------------------------------------
-- An annotation (Optional[List[int]], __torch__.a.B, ...) as a type
-- descriptor {k = "Tensor"|"int"|"float"|"bool"|"str"|"None"|"Any"|
-- "Optional"|"List"|"Tuple"|"Dict"|"Union"|"Device"|"number"|"class", ...}.
local simple = {
  Tensor = "Tensor", int = "int", float = "float", bool = "bool", str = "str", NoneType = "None",
  None = "None", Any = "Any", Device = "Device", number = "number", Scalar = "number",
  ScalarType = "int", Layout = "int", MemoryFormat = "int", Generator = "Any", Storage = "Any",
}

-- dotted name of an ATTR/NAME chain, or nil
local function dotted(e)
  if e.k == "NAME" then return e.s end
  if e.k == "ATTR" then
    local base = dotted(e[1])
    return base and (base .. "." .. e.s)
  end
end
V.dotted = dotted

function V.parse_type(e, resolve_class)
  if e.k == "CONST" and e.op == "None" then return { k = "None" } end
  if e.k == "NAME" and simple[e.s] then return { k = simple[e.s] } end
  -- isinstance(x, (list, tuple)): the containers with any elements
  if e.k == "NAME" and (e.s == "list" or e.s == "List") then return { k = "List", t = { k = "Any" } } end
  if e.k == "NAME" and (e.s == "tuple" or e.s == "Tuple") then return { k = "Tuple" } end
  if e.k == "NAME" and (e.s == "dict" or e.s == "Dict") then return { k = "Dict" } end
  if e.k == "SUBSCRIPT" and e[1].k == "NAME" then
    local head, arg = e[1].s, e[2]
    local args = arg.k == "TUPLE" and arg or { arg }
    local ts = {}
    for i = 1, #args do ts[i] = V.parse_type(args[i], resolve_class) end
    if head == "Optional" or head == "List" or head == "Final" or head == "Future" then
      return { k = head == "Final" and ts[1].k or head, t = ts[1], ts = ts[1].ts, name = ts[1].name }
    end
    if head == "Tuple" or head == "Union" then return { k = head, ts = ts } end
    if head == "Dict" then return { k = "Dict", kt = ts[1], vt = ts[2] } end
  end
  local name = dotted(e)
  if name and name:sub(1, 10) == "__torch__." then
    return { k = "class", name = name, cls = resolve_class and resolve_class(name) }
  end
  return { k = "Any", text = name }
end

-- Python's isinstance(v, T) for a type descriptor.
function V.isinstance(v, ty)
  local k = ty.k
  if k == "Any" then return true end
  if k == "None" then return v == None end
  if k == "Optional" then return v == None or V.isinstance(v, ty.t) end
  if k == "Union" then
    for _, t in ipairs(ty.ts) do if V.isinstance(v, t) then return true end end
    return false
  end
  if k == "Tensor" then return is_tensor(v) end
  if k == "bool" then return type(v) == "boolean" end
  if k == "int" then return type(v) == "number" and v % 1 == 0 end
  if k == "float" then return type(v) == "number" end
  if k == "number" then return type(v) == "number" end
  if k == "str" then return type(v) == "string" end
  if k == "Device" then return type(v) == "table" and getmetatable(v) == V.Device end
  if k == "List" then
    if not V.is_list(v) then return false end
    for i = 1, #v do if not V.isinstance(v[i], ty.t) then return false end end
    return true
  end
  if k == "Tuple" then
    if not V.is_tuple(v) or (ty.ts and #ty.ts ~= #v) then return false end
    for i = 1, #v do if ty.ts and not V.isinstance(v[i], ty.ts[i]) then return false end end
    return true
  end
  if k == "Dict" then return V.is_dict(v) end
  if k == "class" then
    local cls = type(v) == "table" and rawget(v, "_class")
    return cls and cls.qualname == ty.name or false
  end
  return false
end

return V
