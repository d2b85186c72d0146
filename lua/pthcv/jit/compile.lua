-- lua/pthcv/jit/compile.lua: TorchScript functions and methods into Lua
-- closures, and the state that ties them together (a Context per archive).
--
-- Each def becomes a Lua function over a frame (a table of the function's
-- locals by slot); each statement a closure fn(frame) -> signal (nil, or
-- BREAK / CONTINUE / RETURN with the value in frame[0]); each expression a
-- closure fn(frame) -> value (pthcv.jit.expr). Nothing is run while
-- compiling: compiling a method compiles, first, every method and function
-- it can statically reach (receivers whose class the annotations give), so
-- an unsupported operator or construct anywhere on the way is found before
-- any computation. Problems are collected (ctx.problems), each with the
-- file and line it is at; pthcv.jit.load refuses an archive that has any,
-- pthcv.jit.ops_report lists them.
--
-- At run time: rt.loc is the file:line of the statement running (errors
-- carry it); calls nest at most rt.max_call_depth deep and a loop runs at
-- most rt.max_iterations times (max_call_depth, max_iterations options).
local V = require "pthcv.jit.values"
local schema = require "pthcv.jit.schema"
local ast = require "pthcv.jit.ast"
local specialize = require "pthcv.jit.specialize"

local M = {}
local None = V.None
local truthy = V.truthy
local BREAK, CONTINUE, RETURN = 1, 2, 3
M.BREAK, M.CONTINUE, M.RETURN = BREAK, CONTINUE, RETURN

local Ctx = {}
Ctx.__index = Ctx
M.Context = Ctx

-- compile.context(archive [, opts]) -> Context
function M.context(archive, opts)
  opts = opts or {}
  local ctx = setmetatable({
    archive = archive,
    rt = { loc = archive.path, depth = 0, max_call_depth = opts.max_call_depth or 200,
           max_iterations = opts.max_iterations or 10 * 1000 * 1000 },
    problems = {}, deferred = {}, ops_used = {}, op_order = {}, functions = {},
  }, Ctx)
  ctx.expr = require("pthcv.jit.expr").new(ctx)
  ctx.codegen = opts.codegen ~= false
  ctx.compile_stmt = function(fc, st) return M.compile_stmt(fc, st) end
  return ctx
end

-- Records a problem found while compiling; returns a closure raising it,
-- should the code ever run (it cannot: loading refuses such archives).
-- Torch's own functional library compiled into the archive
-- (torch.nn.functional, torch.functional) dispatches on ranks and modes at
-- run time (interpolate's 1-d and 3-d kernels...): its problems are
-- deferred, raised only if that branch runs, and listed by ops_report.
local LIBRARY = { "^code/__torch__/torch/nn/functional[/.]", "^code/__torch__/torch/functional[/.]" }
function Ctx:problem(loc, msg)
  local list = self.problems
  for _, pat in ipairs(LIBRARY) do if loc:match(pat) then list = self.deferred end end
  if not list[loc .. msg] then
    list[loc .. msg] = true
    list[#list + 1] = { loc = loc, msg = msg }
  end
  return function() error(msg, 0) end
end

-- Notes an operator a call site uses (for the listing of `inspect --ops`).
function Ctx:use_op(name, loc, supported)
  local u = self.ops_used[name]
  if not u then
    u = { name = name, count = 0, loc = loc, supported = supported }
    self.ops_used[name] = u
    self.op_order[#self.op_order + 1] = name
  end
  u.count = u.count + 1
end

-- ---- functions -------------------------------------------------------------
local Fn = {}
Fn.__index = Fn
local collect_locals

-- A frame slot for a local name.
function Fn:slot(name)
  local i = self.slots[name]
  if not i then
    self.nslots = self.nslots + 1
    i = self.nslots
    self.slots[name] = i
  end
  return i
end

-- Static knowledge of a local (its class, or the function it holds):
-- the first assignment sets it, a different later one clears it.
function Fn:note(name, info)
  local old = self.info[name]
  if old == nil then self.info[name] = info or false
  elseif old and (not info or old.cls ~= info.cls or old.func ~= info.func) then self.info[name] = false end
end

function Fn:loc(node) return self.file .. ":" .. node.line end

local compile_stmt

-- Every name a function body assigns is a local of the whole function (as
-- in Python), whichever statement assigns it first.
local function collect_targets(fc, t)
  if t.k == "NAME" then fc:slot(t.s)
  elseif t.k == "TUPLE" or t.k == "LIST" then for i = 1, #t do collect_targets(fc, t[i]) end end
end
collect_locals = function(fc, block)
  for _, st in ipairs(block) do
    local k = st.k
    if k == "ASSIGN" then for i = 1, #st - 1 do collect_targets(fc, st[i]) end
    elseif k == "ANNASSIGN" or k == "AUGASSIGN" or k == "FOR" then collect_targets(fc, st[1]) end
    if k == "WITH" and st[2].k ~= "EMPTY" then collect_targets(fc, st[2]) end
    for i = 1, #st do if st[i].k == "BLOCK" then collect_locals(fc, st[i]) end end
  end
end

local sequence = specialize.sequence

function Fn:block(node)
  local out = {}
  for i = 1, #node do out[#out + 1] = compile_stmt(self, node[i]) end
  return sequence(out)
end

-- Compiles a DEF (a method when cls is given) into an entry
-- {name, params = {{name, default, type}}, ret, fn}; fn takes every
-- parameter positionally (self first for methods).
function Ctx:compile_def(def, file, cls, qualname)
  local entry = { name = qualname, params = {}, ret = def[2].k ~= "EMPTY" and def[2] or nil, file = file, line = def.line }
  local fc = setmetatable({ ctx = self, file = file, cls = cls, slots = {}, nslots = 0, info = {}, loops = 0,
                            name = qualname }, Fn)
  for i, p in ipairs(def[1]) do
    fc:slot(p.s)
    local default = schema.NO_DEFAULT
    if p[2].k ~= "EMPTY" then
      local ok, v = pcall(self.archive.literal, self.archive, p[2], file)
      if ok then default = v else self:problem(fc:loc(p), "the default of parameter " .. p.s .. " is not a literal") end
    end
    entry.params[i] = { name = p.s, default = default, type = p[1].k ~= "EMPTY" and p[1] or nil }
    if i == 1 and cls then fc:note(p.s, { cls = cls })
    elseif p[1].k ~= "EMPTY" then fc:note(p.s, self.expr:type_info(p[1])) end
  end
  collect_locals(fc, def[3])
  fc.params = {}
  for i, p in ipairs(def[1]) do fc.params[i] = { name = p.s, info = fc.info[p.s] or nil } end
  local fn = self.codegen and require("pthcv.jit.codegen").fn(self.expr, fc, def[3], #entry.params)
  if fn then
    entry.fn = fn
    return entry
  end
  fc.info, fc.loops = {}, 0
  for _, p in ipairs(fc.params) do fc:note(p.name, p.info) end
  local body = fc:block(def[3])
  -- callers pass every parameter (bound when compiling, or completed
  -- with the defaults at run time)
  entry.fn = specialize.body_fn(#entry.params)(body, self.rt, qualname, RETURN, None, fc.nslots)
  return entry
end

-- The compiled method `name` of class record cls (compiled on first use);
-- nil when the class has no such method.
function Ctx:method(cls, name)
  local e = cls.compiled[name]
  if e then return e end
  local def = cls.methods[name]
  if not def then return nil end
  e = { name = cls.qualname .. "." .. name, params = {}, fn = function() error("pthcv: recursive call of " .. cls.name .. "." .. name, 0) end }
  cls.compiled[name] = e
  local real = self:compile_def(def, cls.file, cls, cls.qualname .. "." .. name)
  for k, v in pairs(real) do e[k] = v end
  return e
end

-- The compiled function of a qualified name, or nil.
function Ctx:func(qualname)
  local e = self.functions[qualname]
  if e then return e end
  local rec = self.archive:func(qualname)
  if not rec then return nil end
  e = { name = qualname, params = {}, fn = function() error("pthcv: recursive call of " .. qualname, 0) end }
  self.functions[qualname] = e
  local real = self:compile_def(rec.node, rec.file, nil, qualname)
  for k, v in pairs(real) do e[k] = v end
  return e
end

-- ---- statements ---------------------------------------------------------------
local stmt = {}

-- A closure storing a value into an assignment target.
local function assigner(fc, t, info)
  local k = t.k
  if k == "NAME" then
    local i = fc:slot(t.s)
    fc:note(t.s, info)
    return function(f, v) f[i] = v end
  end
  if k == "TUPLE" or k == "LIST" then
    local subs, n = {}, #t
    for i = 1, n do subs[i] = assigner(fc, t[i], nil) end
    return function(f, v)
      if not (V.is_tuple(v) or V.is_list(v)) then error("TypeError: cannot unpack a " .. V.typename(v), 0) end
      if #v ~= n then
        error("ValueError: " .. (#v < n and "not enough" or "too many") .. " values to unpack (expected " .. n .. ", got " .. #v .. ")", 0)
      end
      for i = 1, n do subs[i](f, v[i]) end
    end
  end
  if k == "ATTR" then
    local obj = fc.ctx.expr:compile(fc, t[1])
    local setattr, name = fc.ctx.expr.setattr, t.s
    return function(f, v) setattr(obj(f), name, v) end
  end
  if k == "SUBSCRIPT" then
    local c, i = fc.ctx.expr:compile(fc, t[1]), fc.ctx.expr:compile(fc, t[2])
    local setitem = fc.ctx.expr.setitem
    return function(f, v) setitem(c(f), i(f), v) end
  end
  local msg = fc.ctx:problem(fc:loc(t), "cannot assign to " .. ast.text(t))
  return function() msg() end
end

function stmt.ASSIGN(fc, st, loc, rt)
  local value, info = fc.ctx.expr:compile(fc, st[#st])
  local targets = {}
  for i = 1, #st - 1 do targets[i] = assigner(fc, st[i], info) end
  if #targets == 1 and st[1].k == "NAME" then
    local slot = fc.slots[st[1].s]
    return specialize.site("assign", rt, loc, slot, value)
  end
  return function(f)
    rt.loc = loc
    local v = value(f)
    for i = 1, #targets do targets[i](f, v) end
  end
end

function stmt.ANNASSIGN(fc, st, loc, rt)
  if st[3].k == "EMPTY" then return function() end end
  local value = fc.ctx.expr:compile(fc, st[3])
  local set = assigner(fc, st[1], fc.ctx.expr:type_info(st[2]))
  return function(f) rt.loc = loc; set(f, value(f)) end
end

function stmt.AUGASSIGN(fc, st, loc, rt)
  local e = fc.ctx.expr:compile(fc, { k = "BINOP", op = st.op, line = st.line, st[1], st[2] })
  local set = assigner(fc, st[1], nil)
  return function(f) rt.loc = loc; set(f, e(f)) end
end

function stmt.EXPR(fc, st, loc, rt)
  local e = fc.ctx.expr:compile(fc, st[1])
  return specialize.site("expr", rt, loc, e)
end

function stmt.PASS() return function() end end
function stmt.BREAK(fc, st)
  if fc.loops == 0 then return fc.ctx:problem(fc:loc(st), "'break' outside a loop") end
  return function() return BREAK end
end
function stmt.CONTINUE(fc, st)
  if fc.loops == 0 then return fc.ctx:problem(fc:loc(st), "'continue' outside a loop") end
  return function() return CONTINUE end
end

function stmt.RETURN(fc, st, loc, rt)
  if st[1].k == "EMPTY" then return function(f) f[0] = None; return RETURN end end
  local e = fc.ctx.expr:compile(fc, st[1])
  return specialize.site("ret", rt, loc, e, RETURN)
end

function stmt.IF(fc, st, loc, rt)
  local cond = fc.ctx.expr:compile(fc, st[1])
  local yes = fc:block(st[2])
  local no = st[3].k == "EMPTY" and function() end or fc:block(st[3])
  return function(f)
    rt.loc = loc
    local c = cond(f)
    if c == true or (c ~= false and truthy(c)) then return yes(f) end
    return no(f)
  end
end

-- The loop body's signal, as the loop acts on it: true to stop, and the
-- signal to pass on (RETURN).
local function loop_control(s)
  if s == BREAK then return true end
  if s == RETURN then return true, s end
  return false
end

function stmt.WHILE(fc, st, loc, rt)
  local cond = fc.ctx.expr:compile(fc, st[1])
  fc.loops = fc.loops + 1
  local body = fc:block(st[2])
  fc.loops = fc.loops - 1
  return function(f)
    rt.loc = loc
    local n, max = 0, rt.max_iterations
    while true do
      local c = cond(f)
      if not (c == true or (c ~= false and truthy(c))) then return end
      n = n + 1
      if n > max then error("a loop ran more than " .. max .. " iterations (max_iterations)", 0) end
      local stop, sig = loop_control(body(f))
      if stop then return sig end
      rt.loc = loc
    end
  end
end

-- for i in range(...) as a counted loop; for x in <list, tuple, dict, str>
function stmt.FOR(fc, st, loc, rt)
  local iter = st[2]
  local set = assigner(fc, st[1], nil)
  local is_range = iter.k == "CALL" and iter[1].k == "NAME" and iter[1].s == "range" and not fc.slots.range
  local args = {}
  if is_range then
    if #iter < 2 or #iter > 4 then return fc.ctx:problem(loc, "range() takes 1 to 3 arguments") end
    for i = 2, #iter do args[i - 1] = fc.ctx.expr:compile(fc, iter[i]) end
  else
    args[1] = fc.ctx.expr:compile(fc, iter)
  end
  fc.loops = fc.loops + 1
  local body = fc:block(st[3])
  fc.loops = fc.loops - 1
  local items = fc.ctx.expr.iteration
  return function(f)
    rt.loc = loc
    local lo, hi, step, seq
    if is_range then
      lo, hi, step = 0, args[1](f), 1
      if #args >= 2 then lo, hi = hi, args[2](f) end
      if #args == 3 then step = args[3](f) end
      if type(lo) ~= "number" or type(hi) ~= "number" or type(step) ~= "number" or step == 0 then
        error("TypeError: range() needs int arguments and a step other than 0", 0)
      end
    else
      seq = items(args[1](f))
      lo, hi, step = 1, math.huge, 1
    end
    local n, max, i = 0, rt.max_iterations, lo
    while (step > 0 and i < hi) or (step < 0 and i > hi) do
      local v = i
      if seq then
        if i > #seq then return end
        v = seq[i]
      end
      n = n + 1
      if n > max then error("a loop ran more than " .. max .. " iterations (max_iterations)", 0) end
      set(f, v)
      local stop, sig = loop_control(body(f))
      if stop then return sig end
      rt.loc = loc
      i = i + step
    end
  end
end

function stmt.ASSERT(fc, st, loc, rt)
  local cond = fc.ctx.expr:compile(fc, st[1])
  local msg = st[2].k ~= "EMPTY" and fc.ctx.expr:compile(fc, st[2]) or nil
  return function(f)
    rt.loc = loc
    if not truthy(cond(f)) then error("AssertionError" .. (msg and (": " .. V.str(msg(f))) or ""), 0) end
  end
end

-- raise Name(message): the exception's name and message, nothing called
function stmt.RAISE(fc, st, loc, rt)
  local e = st[1]
  if e.k == "EMPTY" then return fc.ctx:problem(loc, "a bare 'raise' (re-raise) is not supported") end
  local name, msg = ast.text(e), nil
  if e.k == "CALL" then
    name = ast.text(e[1])
    if e[2] then msg = fc.ctx.expr:compile(fc, e[2]) end
  end
  return function(f)
    rt.loc = loc
    error((name:gsub("^builtins%.", "")) .. (msg and (": " .. V.str(msg(f))) or ""), 0)
  end
end

-- with obj [as name]: on an object of an archive class that has __enter__
-- and __exit__ (torch.autograd.grad_mode.no_grad in torchvision's losses):
-- __enter__, the body, then __exit__(None, None, None), also when the body
-- raises. Anything else (a call, an object of unknown class) is refused.
function stmt.WITH(fc, st, loc, rt)
  local e = st[1]
  local info = e.k == "NAME" and fc.info[e.s] or nil
  local cls = info and info.cls
  local enter = cls and fc.ctx:method(cls, "__enter__")
  local exit = cls and fc.ctx:method(cls, "__exit__")
  if not (enter and exit) then
    return fc.ctx:problem(loc, "with statements are not supported (but on a local object of the archive's classes with __enter__ and __exit__)")
  end
  local obj = fc.ctx.expr:compile(fc, e)
  local set = st[2].k ~= "EMPTY" and assigner(fc, st[2], nil) or nil
  local body = fc:block(st[3])
  return function(f)
    rt.loc = loc
    local o = obj(f)
    local v = enter.fn(o)
    if set then set(f, v) end
    local ok, sig = pcall(body, f)
    rt.loc = loc
    exit.fn(o, None, None, None)
    if not ok then error(sig, 0) end
    return sig
  end
end

local refused = {
  DEL = "del statements are not supported",
  IMPORT = "imports inside a function are not supported", DEF = "nested functions are not supported",
  CLASS = "classes inside a function are not supported",
}

compile_stmt = function(fc, st)
  local loc = fc:loc(st)
  local f = stmt[st.k]
  if not f then return fc.ctx:problem(loc, refused[st.k] or ("unexpected statement " .. st.k)) end
  return f(fc, st, loc, fc.ctx.rt)
end

M.compile_stmt = compile_stmt
return M
