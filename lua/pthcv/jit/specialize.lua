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

-- ---- the statement and expression closures ---------------------------------------
-- Made from these fixed templates, with the values they use passed in.
local sources = {
  assign = [[local rt, loc, slot, value = ...
    return function(f) rt.loc = loc; f[slot] = value(f) end]],
  expr = [[local rt, loc, e = ...
    return function(f) rt.loc = loc; e(f) end]],
  ret = [[local rt, loc, e, RETURN = ...
    return function(f) rt.loc = loc; f[0] = e(f); return RETURN end]],
  name = [[local i, s, error = ...
    return function(f)
      local v = f[i]
      if v == nil then error("UnboundLocalError: local variable '" .. s .. "' referenced before assignment", 0) end
      return v
    end]],
  getattr = [[local obj, attr, getattr, rawget, type = ...
    return function(f)
      local o = obj(f)
      local v = type(o) == "table" and rawget(o, attr)
      if v then return v end
      return getattr(o, attr)
    end]],
  method = [[local recv, cls, static, dynamic, type, rawget = ...
    return function(f)
      local o = recv(f)
      if type(o) == "table" and rawget(o, "_class") == cls then return static(o, f) end
      return dynamic(o, f)
    end]],
}
local compiled_sources = {}
function M.site(kind, ...)
  local maker = compiled_sources[kind]
  if not maker then maker = assert(loadstring(sources[kind], "=pthcv.jit.specialize." .. kind)); compiled_sources[kind] = maker end
  return maker(...)
end

-- A block of n statement closures run in order (a signal stops it),
-- unrolled for up to 8 statements.
local sequences = {}
function M.sequence(stmts)
  local n = #stmts
  if n == 0 then return function() end end
  if n == 1 then return stmts[1] end
  if n > 8 then
    return function(f)
      for i = 1, n do
        local r = stmts[i](f)
        if r then return r end
      end
    end
  end
  local maker = sequences[n]
  if not maker then
    local lines = { "local " .. names("s", n) .. " = ...", "return function(f)", "  local r" }
    for i = 1, n - 1 do lines[#lines + 1] = string.format("  r = s%d(f); if r then return r end", i) end
    lines[#lines + 1] = string.format("  return s%d(f)", n)
    lines[#lines + 1] = "end"
    maker = assert(loadstring(table.concat(lines, "\n"), "=pthcv.jit.specialize.sequence"))
    sequences[n] = maker
  end
  return maker(unpack(stmts, 1, n))
end

local calls = {}

-- call(n, tracked, consts) -> maker(fn, after, a1..an) ->
-- closure(frame): fn(v1..vn) with vi = ai(frame), or ai itself where
-- consts (a string of n "c"/"v") says the argument is a constant;
-- tracked: the result passes through after(r).
local function call_maker(n, tracked, consts)
  local key = n .. (tracked and "t" or "") .. consts
  local maker = calls[key]
  if maker then return maker end
  local lines = { "return function(fn, after" .. (n > 0 and ", " or "") .. names("a", n) .. ")",
                  "  return function(f)" }
  for i = 1, n do
    if consts:sub(i, i) == "c" then
      lines[#lines + 1] = string.format("    local v%d = a%d", i, i)
    else
      lines[#lines + 1] = string.format("    local v%d = a%d(f)", i, i)
    end
  end
  local call = "fn(" .. names("v", n) .. ")"
  lines[#lines + 1] = "    return " .. (tracked and ("after(" .. call .. ")") or call)
  lines[#lines + 1] = "  end"
  lines[#lines + 1] = "end"
  maker = assert(loadstring(table.concat(lines, "\n"), "=pthcv.jit.specialize.call"))()
  calls[key] = maker
  return maker
end

-- A closure calling fn over the argument closures args (see call_maker).
function M.call(fn, args, after)
  local n = #args
  local consts, values = {}, {}
  for i = 1, n do
    local c = constants[args[i]]
    consts[i] = c and "c" or "v"
    if c then values[i] = c[1] else values[i] = args[i] end
  end
  return call_maker(n, after ~= nil, table.concat(consts))(fn, after, unpack(values, 1, n))
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
