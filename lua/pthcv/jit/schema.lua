-- lua/pthcv/jit/schema.lua: operator schemas as torch writes them
-- (native_functions.yaml, register_prim_ops.cpp), and how a call's
-- positional and keyword arguments bind to them.
--
--   local s = schema.parse("aten::max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], "
--                          .. "int[2] padding=0, int[2] dilation=1, bool ceil_mode=False) -> Tensor")
--   s.name == "aten::max_pool2d"; s.params[4] == {name = "padding", type = "int[2]", default = {0, 0}}
--   local plan = schema.bind(s, 2, {"ceil_mode"})   -- x, [3, 3], ceil_mode=True
--
-- Defaults are Lua values (None, booleans, numbers, strings, lists; an
-- int[N] default given as one number is that number N times, as torch
-- broadcasts it). Types are kept as text: the interpreter checks values
-- in the operators themselves.
local values = require "pthcv.reader.values"

local M = {}
local None, List = values.None, values.List
M.NO_DEFAULT = setmetatable({}, { __tostring = function() return "<required>" end })

-- Splits on commas outside brackets.
local function split_args(s)
  local out, depth, start = {}, 0, 1
  for i = 1, #s do
    local c = s:sub(i, i)
    if c == "(" or c == "[" then depth = depth + 1
    elseif c == ")" or c == "]" then depth = depth - 1
    elseif c == "," and depth == 0 then
      out[#out + 1] = s:sub(start, i - 1)
      start = i + 1
    end
  end
  local last = s:sub(start)
  if last:match("%S") then out[#out + 1] = last end
  return out
end

local function parse_default(text, ty, where)
  text = text:match("^%s*(.-)%s*$")
  local n = ty and ty:match("^%a+%[(%d+)%]")
  if text == "None" then return None end
  if text == "True" then return true end
  if text == "False" then return false end
  local num = tonumber(text)
  if num then
    if n then
      local l = setmetatable({}, List)
      for i = 1, tonumber(n) do l[i] = num end
      return l
    end
    return num
  end
  if text:sub(1, 1) == "[" then
    local l = setmetatable({}, List)
    for _, item in ipairs(split_args(text:sub(2, -2))) do l[#l + 1] = parse_default(item, nil, where) end
    if n and #l == 1 then for i = 2, tonumber(n) do l[i] = l[1] end end
    return l
  end
  local q = text:match("^'(.*)'$") or text:match('^"(.*)"$')
  if q then return q end
  if text:match("^[%a_][%w_]*$") then return text end   -- contiguous_format, long, ...
  error("pthcv.jit.schema: " .. where .. ": cannot read the default '" .. text .. "'", 0)
end

-- schema.parse(text) -> {name, params = {{name, type, default, kwonly}}, vararg, returns}
function M.parse(text)
  local name, args, ret = text:match("^%s*([%w_:%.]+)%s*(%b())%s*%->%s*(.-)%s*$")
  if not name then
    name, args = text:match("^%s*([%w_:%.]+)%s*(%b())%s*$")
    ret = "()"
  end
  if not name then error("pthcv.jit.schema: cannot read the schema '" .. text .. "'", 0) end
  local base = name:match("^([^%.]+)")   -- aten::add.Tensor -> aten::add
  local s = { name = base, overload = name:match("%.(.+)$"), params = {}, vararg = false, returns = ret }
  local kwonly = false
  for _, a in ipairs(split_args(args:sub(2, -2))) do
    a = a:match("^%s*(.-)%s*$")
    if a == "*" then
      kwonly = true
    elseif a == "..." then
      s.vararg = true
    else
      local decl, default = a:match("^(.-)%s*=%s*(.+)$")
      decl = decl or a
      local ty, pname = decl:match("^(.-)%s*([%a_][%w_]*)$")
      if not pname then error("pthcv.jit.schema: " .. name .. ": cannot read the argument '" .. a .. "'", 0) end
      if ty == "" then ty = nil end
      local value = M.NO_DEFAULT
      if default then value = parse_default(default, ty, name .. " " .. pname) end
      s.params[#s.params + 1] = { name = pname, type = ty, kwonly = kwonly, default = value }
    end
  end
  return s
end

-- schema.bind(s, npos, kwnames) -> plan, or nil and a message.
-- plan[i] for each parameter: {pos = j} (the j-th positional argument),
-- {kw = j} (the j-th keyword argument) or {default = value}; plan.extra:
-- positional arguments beyond the parameters (varargs schemas only).
function M.bind(s, npos, kwnames)
  local params, plan = s.params, {}
  local npositional = 0
  for _, p in ipairs(params) do if not p.kwonly then npositional = npositional + 1 end end
  if npos > npositional and not s.vararg then
    return nil, string.format("%s takes %d positional arguments but %d were given", s.name, npositional, npos)
  end
  local byname = {}
  for i, p in ipairs(params) do byname[p.name] = i end
  for j, kw in ipairs(kwnames) do
    local i = byname[kw]
    if not i then return nil, string.format("%s got an unexpected keyword argument '%s'", s.name, kw) end
    if not params[i].kwonly and i <= npos then
      return nil, string.format("%s got multiple values for argument '%s'", s.name, kw)
    end
    plan[i] = { kw = j }
  end
  local ipos = 0
  for i, p in ipairs(params) do
    if not p.kwonly and ipos < npos and not plan[i] then
      ipos = ipos + 1
      plan[i] = { pos = ipos }
    end
    if not plan[i] then
      if p.default == M.NO_DEFAULT then
        return nil, string.format("%s is missing the argument '%s'", s.name, p.name)
      end
      plan[i] = { default = p.default }
    end
  end
  if npos > ipos then
    plan.extra = {}
    for j = ipos + 1, npos do plan.extra[#plan.extra + 1] = j end
  end
  return plan
end

return M
