-- lua/pthcv/reader/inspect_modules.lua: what `pthcv inspect` says beyond the
-- tensor list (reader/inspect.lua uses these):
--
--   counts(root, state_dict)  -> parameters, buffers, how
--       torch's sum(p.numel() for p in model.parameters()) and the same over
--       model.buffers(). Modules in the file (whole-model pickles) say which
--       tensor is which; a bare state_dict does not, so there the tensors
--       named as torch.nn's buffers (BatchNorm's running_mean, running_var,
--       num_batches_tracked) are the buffers and the rest parameters.
--   modules(root)             -> {{path, lines}}: print(model) as torch
--       prints it, for the root and the values of a root dict that are
--       modules. Classes pthcv knows (torch.nn, the zoo) print their
--       settings as torch's extra_repr does (through nn.from_module); a
--       user's class prints as torch's default does (its children only), a
--       torch.nn class pthcv lacks lists its public attributes. M.module_printers lets other
--       readers print what this cannot (TorchScript archives, whose layers
--       are code, not attributes): each printer(obj) returns lines or nil.
--   values(root, names)       -> the tree as JSON values: dicts as objects
--       (keys in file order), lists/tuples/sets as arrays, objects as
--       {"__class__": ..., their attributes}, tensors as {"tensor": name}.
local pthcv = require "pthcv"
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local sdmod = require "pthcv.reader.state_dict"

local M = {}
M.max_depth = 48            -- levels of JSON values and of printed modules
M.module_printers = {}      -- printer(obj) -> lines or nil, tried in order (TorchScript: lua/pthcv/jit)

-- ---- parameters and buffers ---------------------------------------------------
M.buffer_names = { running_mean = true, running_var = true, num_batches_tracked = true }

local function is_nn_module(x)
  if not (type(x) == "table" and getmetatable(x) == values.Object) then return false end
  local d = sdmod.object_dict(x)
  return d ~= nil and (OrderedDict.has(d, "_modules") or OrderedDict.has(d, "_parameters"))
end

-- The first module object among the root and its dict values.
local function first_module(root)
  if is_nn_module(root) then return root end
  if OrderedDict.is(root) then
    for _, kv in ipairs(OrderedDict.items(root)) do
      if is_nn_module(kv[2]) then return kv[2] end
    end
  end
end

-- Sums of model.parameters() and model.buffers() over a module object tree
-- (shared tensors once, as torch's iterators give them once).
local function module_counts(root)
  local seen, params, buffers = {}, 0, 0
  local stack = { root }
  local visited = {}
  while #stack > 0 do
    local m = table.remove(stack)
    if not visited[m] then
      visited[m] = true
      local d = sdmod.object_dict(m)
      for field, add in pairs { _parameters = "p", _buffers = "b" } do
        local t = d[field]
        if OrderedDict.is(t) then
          for _, kv in ipairs(OrderedDict.items(t)) do
            local v = kv[2]
            if Tensor.is(v) and not seen[tostring(v.ct)] then
              seen[tostring(v.ct)] = true
              if add == "p" then params = params + v.numel else buffers = buffers + v.numel end
            end
          end
        end
      end
      local mods = d["_modules"]
      if OrderedDict.is(mods) then
        for _, kv in ipairs(OrderedDict.items(mods)) do
          if is_nn_module(kv[2]) then stack[#stack + 1] = kv[2] end
        end
      end
    end
  end
  return params, buffers
end

-- parameters, buffers, and how they were told apart ("modules" or "names").
function M.counts(root, state_dict)
  local m = first_module(root)
  if m then
    local p, b = module_counts(m)
    return p, b, "modules"
  end
  local p, b = 0, 0
  for _, kv in ipairs(state_dict or {}) do
    if M.buffer_names[kv[1]:match("([^%.]+)$")] then b = b + kv[2].numel else p = p + kv[2].numel end
  end
  return p, b, "names"
end

-- ---- print(model) ---------------------------------------------------------------
local py = require "pthcv.nn.repr"

-- A pickled attribute as torch's repr shows it (tuples "(3, 3)", strings quoted).
local function attr_repr(v, depth)
  local ty = pthcv.type(v)
  if ty == "none" then return "None" end
  if ty == "bool" then return v and "True" or "False" end
  if ty == "int" then return type(v) == "number" and string.format("%d", v) or tostring(v):gsub("[LU]+$", "") end
  if ty == "float" then return py.float(v) end
  if ty == "str" then return "'" .. v:gsub("[%c'\\\128-\255]", function(c) return string.format("\\x%02x", c:byte()) end) .. "'" end
  if (ty == "tuple" or ty == "list") and depth < 4 then
    local parts = {}
    for i = 1, #v do parts[i] = attr_repr(v[i], depth + 1) end
    if ty == "list" then return "[" .. table.concat(parts, ", ") .. "]" end
    return #parts == 1 and "(" .. parts[1] .. ",)" or "(" .. table.concat(parts, ", ") .. ")"
  end
  return nil   -- tensors, containers, objects: not settings
end

local function short_class(cls) return (tostring(cls):match("([^%.]+)$")) end

local function indent(lines, by)
  for i = 2, #lines do lines[i] = by .. lines[i] end
  return lines
end

-- print(model)'s lines for a module object, depth levels at most.
local function module_lines(obj, depth)
  for _, printer in ipairs(M.module_printers) do
    local lines = printer(obj)
    if lines then return lines end
  end
  if not is_nn_module(obj) then return { tostring(obj.class) .. "(...)" } end
  -- a class pthcv has: its own extra_repr, as torch prints it
  local ok, m = pcall(require("pthcv.nn.from_module").convert, obj)
  if ok then
    local lines = {}
    for l in (m:repr() .. "\n"):gmatch("([^\n]*)\n") do lines[#lines + 1] = l end
    return lines
  end
  -- other classes: torch prints what their extra_repr returns, which only
  -- their code knows. A user's class has the default, nothing; a torch.nn
  -- class pthcv lacks gets its public attributes instead.
  local d = sdmod.object_dict(obj)
  local settings = {}
  for _, kv in ipairs(tostring(obj.class):match("^torch%.nn%.") and OrderedDict.items(d) or {}) do
    local k = kv[1]
    if type(k) == "string" and k:sub(1, 1) ~= "_" and k ~= "training" then
      local r = attr_repr(kv[2], 0)
      if r then settings[#settings + 1] = k .. "=" .. r end
    end
  end
  local children = {}
  local mods = d["_modules"]
  if OrderedDict.is(mods) then
    for _, kv in ipairs(OrderedDict.items(mods)) do
      if is_nn_module(kv[2]) then children[#children + 1] = kv end
    end
  end
  local head = short_class(obj.class) .. "("
  if #children == 0 then return { head .. table.concat(settings, ", ") .. ")" } end
  local lines = { head }
  if #settings > 0 then lines[#lines + 1] = "  " .. table.concat(settings, ", ") end
  for _, kv in ipairs(children) do
    local sub = depth < M.max_depth and module_lines(kv[2], depth + 1) or { "..." }
    sub[1] = "  (" .. tostring(kv[1]) .. "): " .. sub[1]
    for _, l in ipairs(indent(sub, "  ")) do lines[#lines + 1] = l end
  end
  lines[#lines + 1] = ")"
  return lines
end

-- {{path, lines}}: the root if it is a module, else the root dict's module values.
function M.modules(root)
  local out = {}
  local function printable(x)
    if is_nn_module(x) then return true end
    for _, printer in ipairs(M.module_printers) do if printer(x) then return true end end
    return false
  end
  if printable(root) then return { { "", module_lines(root, 0) } } end
  if OrderedDict.is(root) then
    for _, kv in ipairs(OrderedDict.items(root)) do
      if printable(kv[2]) then out[#out + 1] = { sdmod.key_string(kv[1]), module_lines(kv[2], 0) } end
    end
  end
  return out
end

-- ---- the tree as JSON values ------------------------------------------------------
local json_null

-- JSON needs valid UTF-8: other bytes become \xNN text (and so do control
-- characters with printable = true, for messages).
-- (Messages use core.escape, which also escapes the backslash; JSON escapes
-- control characters itself.)
local function utf8_text(s, printable)
  if printable then
    s = s:gsub("[%z\1-\31\127]", function(ch) return string.format("\\x%02x", ch:byte()) end)
  end
  local ok = true
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or c >= 0xf0 and c < 0xf5 and 4 or c >= 0xe0 and 3 or c >= 0xc2 and c < 0xe0 and 2 or 0
    if len == 0 or i + len - 1 > n then ok = false; break end
    for j = i + 1, i + len - 1 do
      if bit.band(s:byte(j), 0xc0) ~= 0x80 then ok = false end
    end
    if not ok then break end
    i = i + len
  end
  if ok then return s end
  return (s:gsub("[\128-\255]", function(ch) return string.format("\\x%02x", ch:byte()) end))
end

local function ordered(keys, t) return setmetatable(t, { __jsonorder = keys }) end

local function convert(x, names, depth)
  local ty = pthcv.type(x)
  if ty == "none" then return json_null end
  if ty == "bool" then return x end
  if ty == "int" or ty == "float" then
    if type(x) ~= "number" then return tostring(x):gsub("[LU]+$", "") end
    if x ~= x or x == math.huge or x == -math.huge then return py.float(x) end
    return x
  end
  if ty == "str" then return utf8_text(x) end
  if ty == "tensor" then return { tensor = names[x] and utf8_text(names[x]) or (x.dtype .. " [" .. table.concat(x.shape, ", ") .. "]") } end
  if ty == "bytes" then return { __bytes__ = #x.data } end
  if ty == "complex" then return { __complex__ = setmetatable({ x.re, x.im }, { __jsontype = "array" }) } end
  if ty == "bigint" then return tostring(x) end
  if ty == "global" then return { __global__ = utf8_text(x.name) } end
  if depth >= M.max_depth then return "..." end
  if ty == "list" or ty == "tuple" or ty == "set" then
    local a = setmetatable({}, { __jsontype = "array" })
    for i = 1, #x do a[i] = convert(x[i], names, depth + 1) end
    return a
  end
  local keys, obj = {}, {}
  local function put(k, v)
    local key = utf8_text(type(k) == "string" and k or sdmod.key_string(k))
    while obj[key] ~= nil do key = key .. "'" end   -- keys equal as strings (1 and "1")
    keys[#keys + 1] = key
    obj[key] = convert(v, names, depth + 1)
  end
  if ty == "dict" then
    for _, kv in ipairs(OrderedDict.items(x)) do put(kv[1], kv[2]) end
    return ordered(keys, obj)
  end
  if ty == "object" then
    put("__class__", x.class)
    if x.args ~= nil and #x.args > 0 then put("__args__", x.args) end
    local d = sdmod.object_dict(x)
    if d then for _, kv in ipairs(OrderedDict.items(d)) do put(kv[1], kv[2]) end
    elseif x.state ~= nil then put("__state__", x.state) end
    if x.items ~= nil then put("__items__", x.items) end
    return ordered(keys, obj)
  end
  return tostring(x)
end

M.utf8_text = utf8_text

-- The tree as plain values for dkjson; `names`: tensor -> its inspect name.
function M.values(root, names)
  json_null = require("dkjson").null
  return convert(root, names, 0)
end

return M
