-- lua/pthcv/reader/odict.lua: OrderedDict, the Lua value of a Python dict.
--
--   local d = OrderedDict.new()
--   d["b"] = 1; d["a"] = 2
--   for k, v in pairs(d) do ... end      -- "b", then "a": insertion order
--   d:keys()  --> {"b", "a"}             d:items() --> {{"b", 1}, {"a", 2}}
--   d:len()   --> 2                      d["zz"]   --> nil
--
-- Stored keys win over method names: when a dict has a key "keys",
-- d.keys is that value, and OrderedDict.keys(d) still lists the keys. Every
-- method is also a plain function of the module for that reason.
--
-- Iteration order relies on the __pairs metamethod. LuaJIT built without
-- Lua 5.2 compatibility (Debian's) ignores __pairs, so loading this module
-- replaces the global `pairs` with one that honours __pairs and behaves as
-- the builtin for everything else (it returns the real `next`, so loops stay
-- compiled). `#d` is not meaningful; use d:len().
-- Make plain pairs() honour __pairs when the running Lua does not. Called
-- at every load of this module and of pthcv: a test runner may restore the
-- globals between files.
local function honours_pairs()
  local probe = setmetatable({}, { __pairs = function() return function() return "yes" end end })
  for k in pairs(probe) do return k == "yes" end
  return false
end

local function install_pairs()
  if honours_pairs() then return end
  local rawnext, getmt = next, getmetatable
  local function pairs(t)
    local m = getmt(t)
    if type(m) == "table" then
      local p = rawget(m, "__pairs")
      if p then return p(t) end
    end
    if type(t) ~= "table" then
      error("bad argument #1 to 'pairs' (table expected, got " .. type(t) .. ")", 2)
    end
    return rawnext, t, nil
  end
  _G.pairs = pairs
end

-- One instance per Lua state, even when package.loaded is cleared (busted
-- does between spec files): FFI types and metatables cannot be redefined.
local REGISTRY_KEY = "pthcv.reader.odict"
do install_pairs(); local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
local KEYS, VALS, INDEX, ATTR = {}, {}, {}, {}

local OrderedDict = {}
local methods = {}
local mt = {}

local function new(class)
  return setmetatable({ [KEYS] = {}, [VALS] = {}, [INDEX] = {}, [ATTR] = { class = class or "dict" } }, mt)
end

mt.__index = function(d, k)
  local v = rawget(d, VALS)[k]
  if v ~= nil then return v end
  return methods[k]
end

-- d[k] = v appends a new key, replaces the value of an existing one in place,
-- d[k] = nil removes the key.
mt.__newindex = function(d, k, v)
  if k == nil or k ~= k then error("pthcv: OrderedDict key is nil or NaN", 2) end
  local vals, index = rawget(d, VALS), rawget(d, INDEX)
  if v == nil then
    local i = index[k]
    if i == nil then return end
    local keys = rawget(d, KEYS)
    table.remove(keys, i)
    index[k], vals[k] = nil, nil
    for j = i, #keys do index[keys[j]] = j end
    return
  end
  if index[k] == nil then
    local keys = rawget(d, KEYS)
    keys[#keys + 1] = k
    index[k] = #keys
  end
  vals[k] = v
end

mt.__pairs = function(d)
  local keys, vals, i = rawget(d, KEYS), rawget(d, VALS), 0
  return function()
    i = i + 1
    local k = keys[i]
    if k ~= nil then return k, vals[k] end
  end, d, nil
end

mt.__len = function(d) return #rawget(d, KEYS) end

mt.__tostring = function(d)
  local parts = {}
  local keys = rawget(d, KEYS)
  local escape = require("pthcv.core").escape   -- keys come from the file
  for i = 1, math.min(#keys, 8) do parts[i] = escape(keys[i], 80) end
  if #keys > 8 then parts[#parts + 1] = "..." end
  return string.format("OrderedDict(%d){%s}", #keys, table.concat(parts, ", "))
end

function methods.keys(d)
  local keys, out = rawget(d, KEYS), {}
  for i = 1, #keys do out[i] = keys[i] end
  return out
end

function methods.values(d)
  local keys, vals, out = rawget(d, KEYS), rawget(d, VALS), {}
  for i = 1, #keys do out[i] = vals[keys[i]] end
  return out
end

-- {{key, value}, ...} in order
function methods.items(d)
  local keys, vals, out = rawget(d, KEYS), rawget(d, VALS), {}
  for i = 1, #keys do out[i] = { keys[i], vals[keys[i]] } end
  return out
end

function methods.len(d) return #rawget(d, KEYS) end
function methods.get(d, k, default)
  local v = rawget(d, VALS)[k]
  if v == nil then return default end
  return v
end
function methods.has(d, k) return rawget(d, INDEX)[k] ~= nil end
function methods.set(d, k, v) mt.__newindex(d, k, v) end
-- the i-th key (1-based) and its value
function methods.at(d, i)
  local k = rawget(d, KEYS)[i]
  if k ~= nil then return k, rawget(d, VALS)[k] end
end
-- Python-side facts: attrs(d).class is "dict" or "collections.OrderedDict";
-- attrs(d).state is the BUILD state a pickle gave the dict (a state_dict's
-- _metadata), when it had one.
function methods.attrs(d) return rawget(d, ATTR) end

for k, f in pairs(methods) do OrderedDict[k] = f end
OrderedDict.new = new
OrderedDict.mt = mt
function OrderedDict.is(x) return type(x) == "table" and getmetatable(x) == mt end
-- builds one from {{k, v}, ...} or from a plain table (keys sorted by tostring)
function OrderedDict.from(t)
  local d = new()
  if t[1] ~= nil and type(t[1]) == "table" and #t[1] == 2 then
    for _, kv in ipairs(t) do d[kv[1]] = kv[2] end
  else
    local keys = {}
    for k in next, t do keys[#keys + 1] = k end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do d[k] = t[k] end
  end
  return d
end

OrderedDict.install_pairs = install_pairs
install_pairs()

debug.getregistry()[REGISTRY_KEY] = OrderedDict
return OrderedDict
