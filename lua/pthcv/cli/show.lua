-- lua/pthcv/cli/show.lua: values as `pthcv repl` shows them, and its help.
--
--   show(v)    tensors as torch prints them (their values, abbreviated;
--              tensor/print.lua) and a comment with dtype and shape; Python
--              values as Python writes them ({'epoch': 3, ...}, [1, 2],
--              (3, 3), Namespace(lr=0.1, ...)); whole-model pickles as
--              print(model); plain Lua tables with their contents.
--   help       the global of the REPL: `help` says what there is,
--              help(f) shows f's documentation comment and where it is
--              defined, help(t) lists a table's functions.
local pthcv = require "pthcv"
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"

local M = {}
M.max_items = 20   -- items shown per container
M.max_depth = 3    -- container levels shown

local function quote(s)
  return "'" .. s:gsub("[\\'%c\128-\255]", function(c)
    if c == "'" then return "\\'" elseif c == "\\" then return "\\\\" elseif c == "\n" then return "\\n" end
    return string.format("\\x%02x", c:byte())
  end) .. "'"
end

local function short_class(cls) return (tostring(cls):match("([^%.]+)$")) end

local inline

-- items: {label or nil, value}; open/close brackets; `more` items not shown.
local function join(items, open, close, depth, seen, lua)
  local parts = {}
  for i, kv in ipairs(items) do
    if i > M.max_items then parts[#parts + 1] = "... (" .. (#items - M.max_items) .. " more)"; break end
    local v = inline(kv[2], depth + 1, seen, lua)
    parts[#parts + 1] = kv[1] and (kv[1] .. v) or v
  end
  return open .. table.concat(parts, ", ") .. close
end

-- One value on one line (nested containers down to max_depth); `lua`:
-- inside a plain Lua table, where booleans and strings are Lua's.
inline = function(v, depth, seen, lua)
  local ty = pthcv.type(v)
  if lua and (ty == "bool" or ty == "str") then return ty == "str" and string.format("%q", v) or tostring(v) end
  if ty == "none" then return "None" end
  if ty == "bool" then return v and "True" or "False" end
  if ty == "int" then return type(v) == "number" and string.format("%d", v) or (tostring(v):gsub("U?LL$", "")) end
  if ty == "float" then return require("pthcv.nn.repr").float(v) end
  if ty == "str" then return quote(v) end
  if ty == "tensor" then return tostring(v) end
  if ty == "bytes" or ty == "complex" or ty == "bigint" or ty == "global" then return tostring(v) end
  if type(v) ~= "table" then return tostring(v) end
  if seen[v] then return "<cycle>" end
  if depth >= M.max_depth then
    if ty == "dict" then return "OrderedDict(" .. OrderedDict.len(v) .. ")" end
    return ty == "object" and short_class(v.class) .. "(...)" or tostring(v)
  end
  seen[v] = true
  local out
  if ty == "dict" then
    local items = {}
    for _, kv in ipairs(OrderedDict.items(v)) do items[#items + 1] = { inline(kv[1], depth + 1, seen) .. ": ", kv[2] } end
    out = join(items, "{", "}", depth, seen)
  elseif ty == "list" or ty == "tuple" or ty == "set" then
    local items = {}
    for i = 1, #v do items[i] = { nil, v[i] } end
    local open, close = "[", "]"
    if ty == "tuple" then open, close = "(", #v == 1 and ",)" or ")" elseif ty == "set" then open, close = "{", "}" end
    out = join(items, open, close, depth, seen)
  elseif ty == "object" then
    -- an inert object: its class and fields, as a dataclass or Namespace prints
    local items = {}
    local d = require("pthcv.reader.state_dict").object_dict(v)
    if d then
      for _, kv in ipairs(OrderedDict.items(d)) do items[#items + 1] = { tostring(kv[1]) .. "=", kv[2] } end
    else
      for i = 1, #(v.args or {}) do items[#items + 1] = { nil, v.args[i] } end
    end
    out = join(items, short_class(v.class) .. "(", ")", depth, seen)
  elseif require("pthcv.nn").is_module(v) or (getmetatable(v) and getmetatable(v).__tostring) then
    out = tostring(v)
  else
    -- a plain Lua table: its array part, then its other keys sorted
    local items, keys = {}, {}
    for i = 1, #v do items[i] = { nil, v[i] } end
    for k in pairs(v) do
      if not (type(k) == "number" and k >= 1 and k <= #v and k % 1 == 0) then keys[#keys + 1] = k end
    end
    table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(keys) do
      local label = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or "[" .. inline(k, depth + 1, seen, true) .. "]"
      items[#items + 1] = { label .. " = ", v[k] }
    end
    out = join(items, "{", "}", depth, seen, true)
  end
  seen[v] = nil
  return out
end

function M.show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if pthcv.is_tensor(v) then
    local text = require("pthcv.tensor.print").format(v) or tostring(v)
    return text .. "  -- " .. v.dtype .. " [" .. table.concat(v.shape, ", ") .. "]"
  end
  if pthcv.type(v) == "object" then
    local mods = require("pthcv.reader.inspect_modules").modules(v)
    if mods[1] then return table.concat(mods[1][2], "\n") end
  end
  if type(v) == "table" and getmetatable(v) == values.None then return "None" end
  return inline(v, 0, {})
end

-- ---- help ------------------------------------------------------------------------
M.intro = [[
pthcv's REPL: Lua (LuaJIT) with the global pthcv. Expressions print their
values; an unfinished statement continues on the next line; Ctrl-D or exit
leaves. help(x) shows x's documentation: help(pthcv.load), help(pthcv.F).

  pthcv.load(path)            a .pth/.pt (or .npz, .safetensors, FileStorage) as Lua values
  pthcv.state_dict(path)      the model weights, name -> Tensor
  pthcv.scan(path)            the globals a file references, without loading it
  pthcv.save(path, x)         .npy, .npz, .safetensors, .yml/.xml/.json(.gz)
  pthcv.models.resnet18()     the torchvision zoo (pthcv.models.list())
  pthcv.nn, pthcv.F           torch.nn's layers and functions
  pthcv.image.read(path)      images through OpenCV
  pthcv.tensor{...}, pthcv.randn(2, 3), t:mean(), t:topk(5), t:repr()
Docs: docs/lua-api.md, docs/nn.md, docs/cli.md.
]]

-- Where pthcv's tables hold f: "pthcv.F.conv2d".
local function name_of(x)
  local roots = { { "pthcv", pthcv }, { "pthcv.F", pthcv.F }, { "pthcv.nn", pthcv.nn },
                  { "pthcv.models", pthcv.models }, { "pthcv.image", pthcv.image },
                  { "Tensor", require("pthcv.tensor").methods } }
  for _, r in ipairs(roots) do
    if r[2] == x then return r[1] end
    for k, v in pairs(r[2]) do
      if v == x then return r[1] .. (r[1] == "Tensor" and ":" or ".") .. tostring(k) end
    end
  end
end

-- The comment block right above line `n` of a source file, and that line.
local function comment_above(path, n)
  local f = io.open(path, "r")
  if not f then return nil end
  local lines = {}
  for l in f:lines() do lines[#lines + 1] = l end
  f:close()
  local doc = {}
  local i = n - 1
  while i >= 1 and lines[i]:match("^%s*%-%-") do
    table.insert(doc, 1, (lines[i]:gsub("^%s*%-%- ?", "")))
    i = i - 1
  end
  return doc, lines[n]
end

function M.help_text(x)
  if x == nil or x == M.help then return M.intro end
  if type(x) == "function" then
    local info = debug.getinfo(x, "S")
    local name = name_of(x) or "this function"
    if info.what == "C" or info.source:sub(1, 1) ~= "@" then return name .. ": a built-in function (no Lua source)\n" end
    local path = info.source:sub(2)
    local doc, def = comment_above(path, info.linedefined)
    local out = { name .. "  (" .. path:gsub("^.*/lua/", "lua/") .. ":" .. info.linedefined .. ")" }
    if def then out[#out + 1] = "  " .. def:gsub("^%s+", "") end
    for _, l in ipairs(doc or {}) do out[#out + 1] = "  " .. l end
    if not doc or #doc == 0 then out[#out + 1] = "  (no documentation comment above it)" end
    return table.concat(out, "\n") .. "\n"
  end
  if pthcv.is_tensor(x) then x = require("pthcv.tensor").methods end
  if type(x) == "table" then
    local fns = {}
    for k, v in pairs(x) do if type(v) == "function" then fns[#fns + 1] = tostring(k) end end
    table.sort(fns)
    local name = name_of(x) or (pthcv.type(x) == "object" and x.class) or "this table"
    if #fns == 0 then return name .. ": " .. M.show(x) .. "\n" end
    return name .. ": " .. #fns .. " functions (help(" .. (name_of(x) or "t") .. ".NAME) for one):\n  "
           .. table.concat(fns, ", ") .. "\n"
  end
  return tostring(x) .. ": a " .. type(x) .. "\n"
end

-- `help` prints the introduction; help(x) the documentation of x.
M.help = setmetatable({}, {
  __call = function(_, x) io.stdout:write(M.help_text(x)) end,
  __tostring = function() return (M.intro:gsub("\n$", "")) end,
})

return M
