-- lua/pthcv/jit/specialize.lua: the interpreter's hot closures, one per
-- arity: a call over n argument closures and a function of n parameters,
-- without varargs or per-call tables (LuaJIT compiles these into straight
-- traces; the generic forms cost a table and an unpack per call).
--
-- They are made from the templates below with loadstring; the only thing
-- that varies is the arity, an integer: no text from an archive ever
-- reaches them.
local M = {}

local function names(prefix, n)
  local out = {}
  for i = 1, n do out[i] = prefix .. i end
  return table.concat(out, ", ")
end

-- (getmetatable of a Tensor, a cdata, would abort LuaJIT's traces: type first.)

-- Constant expressions: const(v) is a closure returning v, known as such
-- (a call passes the value itself, not the closure).
local constants = setmetatable({}, { __mode = "k" })
function M.const(v)
  local c = function() return v end
  constants[c] = { v }
  return c
end

local calls = {}

-- call(n, forced, tracked, consts) -> maker(fn, after, a1..an) ->
-- closure(frame): fn(v1..vn) with vi = ai(frame), or ai itself where
-- consts (a string of n "c"/"v") says the argument is a constant;
-- forced: a pending value is computed first (force); tracked: the result
-- passes through after(r).
local function call_maker(n, forced, tracked, consts)
  local key = n .. (forced and "f" or "") .. (tracked and "t" or "") .. consts
  local maker = calls[key]
  if maker then return maker end
  local lines = { "local Pending, force, getmetatable = ...",
                  "return function(fn, after" .. (n > 0 and ", " or "") .. names("a", n) .. ")",
                  "  return function(f)" }
  for i = 1, n do
    if consts:sub(i, i) == "c" then
      lines[#lines + 1] = string.format("    local v%d = a%d", i, i)
    else
      lines[#lines + 1] = string.format("    local v%d = a%d(f)", i, i)
      if forced then
        lines[#lines + 1] = string.format("    if type(v%d) == \"table\" and getmetatable(v%d) == Pending then v%d = force(v%d) end", i, i, i, i)
      end
    end
  end
  local call = "fn(" .. names("v", n) .. ")"
  lines[#lines + 1] = "    return " .. (tracked and ("after(" .. call .. ")") or call)
  lines[#lines + 1] = "  end"
  lines[#lines + 1] = "end"
  local fuse = require "pthcv.jit.fuse"
  maker = assert(loadstring(table.concat(lines, "\n"), "=pthcv.jit.specialize.call"))(fuse.Pending, fuse.force, getmetatable)
  calls[key] = maker
  return maker
end

-- A closure calling fn over the argument closures args (see call_maker).
function M.call(fn, args, forced, after)
  local n = #args
  local consts, values = {}, {}
  for i = 1, n do
    local c = constants[args[i]]
    consts[i] = c and "c" or "v"
    if c then values[i] = c[1] else values[i] = args[i] end
  end
  return call_maker(n, forced, after ~= nil, table.concat(consts))(fn, after, unpack(values, 1, n))
end

local functions = {}

-- body_fn(n) -> maker(body, rt, qualname, RETURN, None, nslots) ->
-- function(p1..pn): a frame of nslots locals (the parameters first; the
-- returned value in slot 0) run by body, the call depth bounded by
-- rt.max_call_depth.
function M.body_fn(n)
  local maker = functions[n]
  if maker then return maker end
  local lines = {
    "local tnew = ...",
    "return function(body, rt, qualname, RETURN, None, nslots)",
    "  return function(" .. names("p", n) .. ")",
    "    local d = rt.depth + 1",
    "    if d > rt.max_call_depth then",
    "      error('calls nested deeper than ' .. rt.max_call_depth .. ' (max_call_depth) in ' .. qualname, 0)",
    "    end",
    "    rt.depth = d",
    "    local f = tnew(nslots, 0)" }
  for i = 1, n do lines[#lines + 1] = string.format("    f[%d] = p%d", i, i) end
  lines[#lines + 1] = "    local sig = body(f)"
  lines[#lines + 1] = "    rt.depth = d - 1"
  lines[#lines + 1] = "    if sig == RETURN then return f[0] end"
  lines[#lines + 1] = "    return None"
  lines[#lines + 1] = "  end"
  lines[#lines + 1] = "end"
  maker = assert(loadstring(table.concat(lines, "\n"), "=pthcv.jit.specialize.body_fn"))(require "table.new")
  functions[n] = maker
  return maker
end

return M
