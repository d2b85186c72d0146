-- lua/pthcv/reader/values.lua: the Lua classes of the values a pickle holds.
--
--   Python            Lua
--   None              values.None (a unique sentinel; `x == pthcv.None`)
--   list / tuple      List / Tuple: plain 1-based arrays with a metatable
--   set / frozenset   Set: 1-based array of the members, .frozen
--   bytes/bytearray   Bytes: .data (a Lua string), .bytearray
--   complex           Complex: .re, .im
--   int beyond 64 bit BigInt: .bytes (little-endian two's complement), tostring() in decimal
--   a global          Global: .name = "module.name"
--   an inert object   Object: .class, .args, .kwargs, .state, .items
-- One instance per Lua state, even when package.loaded is cleared (busted
-- does between spec files): FFI types and metatables cannot be redefined.
local REGISTRY_KEY = "pthcv.reader.values"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
local M = {}

local function class(name, extra)
  local c = extra or {}
  c.__name = name
  c.__index = c
  if not c.__tostring then
    c.__tostring = function(x)
      local n = #x
      return string.format("%s(%d)", name, n)
    end
  end
  return c
end

M.None = setmetatable({}, {
  __name = "None",
  __tostring = function() return "None" end,
  __newindex = function() error("pthcv: None is read-only", 2) end,
})

M.List = class("List")
M.Tuple = class("Tuple")
M.Set = class("Set")
function M.Set.has(s, x)
  for i = 1, #s do if s[i] == x then return true end end
  return false
end

M.Bytes = class("Bytes", {
  __tostring = function(b) return string.format("Bytes(%d)", #b.data) end,
})
M.Complex = class("Complex", {
  __tostring = function(c) return string.format("(%.17g%+.17gj)", c.re, c.im) end,
})
function M.complex(re, im) return setmetatable({ re = re, im = im }, M.Complex) end

-- Decimal digits of a little-endian two's complement integer.
local function bigint_decimal(bytes)
  local n = #bytes
  if n == 0 then return "0" end
  local b = { bytes:byte(1, -1) }
  local negative = b[n] >= 128
  if negative then -- two's complement negate: invert and add one
    local carry = 1
    for i = 1, n do
      local v = (255 - b[i]) + carry
      b[i] = v % 256
      carry = v >= 256 and 1 or 0
    end
  end
  -- repeated division by 10^7 of the base-256 number, most significant first
  local digits = {}
  local top = n
  while top > 0 and b[top] == 0 do top = top - 1 end
  while top > 0 do
    local rem = 0
    for i = top, 1, -1 do
      local cur = rem * 256 + b[i]
      b[i] = math.floor(cur / 10000000)
      rem = cur % 10000000
    end
    while top > 0 and b[top] == 0 do top = top - 1 end
    digits[#digits + 1] = top > 0 and string.format("%07d", rem) or tostring(rem)
  end
  if #digits == 0 then return "0" end
  local parts = {}
  for i = #digits, 1, -1 do parts[#parts + 1] = digits[i] end
  return (negative and "-" or "") .. table.concat(parts)
end

M.BigInt = class("BigInt", {
  __tostring = function(x) return bigint_decimal(x.bytes) end,
})
M.BigInt.decimal = bigint_decimal

-- names come from the file: escaped (core.escape) when shown
M.Global = class("Global", {
  __tostring = function(g) return "Global(" .. require("pthcv.core").escape(g.name) .. ")" end,
})
M.Object = class("Object", {
  __tostring = function(o) return "Object(" .. require("pthcv.core").escape(o.class) .. ")" end,
})
-- o:attr(name): an attribute from the object's state (its __dict__), when
-- the state is a dict or a (dict, slots) tuple.
function M.Object.attr(o, name)
  local s = o.state
  if type(s) == "table" and getmetatable(s) == M.Tuple then s = s[1] end
  local OrderedDict = require "pthcv.reader.odict"
  if OrderedDict.is(s) then return OrderedDict.get(s, name) end
  return nil
end

debug.getregistry()[REGISTRY_KEY] = M
return M
