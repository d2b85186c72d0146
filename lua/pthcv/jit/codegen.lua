-- lua/pthcv/jit/codegen.lua: a function body as one Lua function, for
-- speed. The closure compiler (pthcv.jit.compile and expr) makes a closure
-- per statement and expression, shared by every site: LuaJIT's traces break
-- at such calls (each site calls another closure through one call
-- instruction), and an interpreted mobilenet spent more time there than in
-- its kernels. Here each statement, operator call and method call of the
-- body gets its own code, so each call site calls one function.
--
-- Nothing of the archive's text reaches the generated source: it is made
-- of fixed fragments, frame slot numbers, indices into the table U of the
-- values the code uses (operators, constants, names, entries, locations)
-- and numbers formatted by string.format("%d"). Locals stay in the frame
-- table f (slot numbers as in the closure compiler), so any statement or
-- expression this generator does not handle is compiled by the closure
-- compiler and called from the generated code: U[k](f).
local V = require "pthcv.jit.values"
local schema = require "pthcv.jit.schema"
local calls = require "pthcv.jit.calls"
local expr = require "pthcv.jit.expr"

local M = {}
local G = {}
G.__index = G

local function unbound(name) error("UnboundLocalError: local variable '" .. name .. "' referenced before assignment", 0) end
local function too_many(rt) error("a loop ran more than " .. rt.max_iterations .. " iterations (max_iterations)", 0) end

-- A value the code uses: an index into U.
function G:up(v)
  self.nu = self.nu + 1
  self.U[self.nu] = v
  return "U[" .. self.nu .. "]"
end

function G:const(v)
  if type(v) == "number" and v % 1 == 0 and v > -2 ^ 53 and v < 2 ^ 53 then return string.format("%d", v) end
  if v == true then return "true" elseif v == false then return "false" end
  return self:up(v)
end

function G:tmp()
  self.ntmp = self.ntmp + 1
  return "t" .. self.ntmp
end

function G:emit(line) self.out[#self.out + 1] = line end

-- A local's place: s<i> (locals mode) or the frame's f[i].
function G:slot(i)
  if self.locals then return "s" .. i end
  return string.format("f[%d]", i)
end

-- A node the closure compiler handles, called from here (its static
-- information kept for the assignment that stores it).
function G:closure(e)
  self.fallbacks = true
  local c, info = self.x:compile(self.fc, e)
  local t = self:tmp()
  self:emit(string.format("local %s = %s(f)", t, self:up(c)))
  self.infos[t] = info
  return t
end

-- ---- expressions: each gives a Lua expression (a local or a constant) ----
local gen = {}

function G:expr(e)
  local f = gen[e.k]
  if f then return f(self, e) end
  return self:closure(e)
end

function gen.INT(g, e) return g:const(e.v) end
gen.FLOAT = gen.INT
function gen.STR(g, e) return g:up(e.s) end
function gen.CONST(g, e)
  if e.op == "None" then return g:up(V.None) end
  return e.op == "True" and "true" or "false"
end

function gen.NAME(g, e)
  local i = g.fc.slots[e.s]
  if not i then return g:closure(e) end
  if g.locals then
    g:emit(string.format("if s%d == nil then UNBOUND(%s) end", i, g:up(e.s)))
    return "s" .. i
  end
  local t = g:tmp()
  g:emit(string.format("local %s = f[%d]; if %s == nil then UNBOUND(%s) end", t, i, t, g:up(e.s)))
  return t
end

function gen.ATTR(g, e)
  local name = V.dotted(e)
  local root = name and name:match("^[^.]+")
  if root == "CONSTANTS" and e[1].k == "NAME" and not g.fc.slots[root] then
    local ok, v = pcall(g.x.archive.constant, g.x.archive, e.s, g.fc:loc(e))
    if ok then return g:up(v) end
  end
  if (root and not g.fc.slots[root]) or expr.RESERVED[e.s] then return g:closure(e) end
  local o = g:expr(e[1])
  local t, a = g:tmp(), g:up(e.s)
  g:emit(string.format("local %s; if type(%s) == \"table\" then %s = rawget(%s, %s) end", t, o, t, o, a))
  g:emit(string.format("if %s == nil then %s = GETATTR(%s, %s) end", t, t, o, a))
  return t
end

function gen.SUBSCRIPT(g, e)
  if e[2].k == "SLICE" then return g:closure(e) end
  local c, i = g:expr(e[1]), g:expr(e[2])
  local t = g:tmp()
  g:emit(string.format("local %s = GETITEM(%s, %s)", t, c, i))
  return t
end

function gen.LIST(g, e)
  local items = {}
  for i = 1, #e do items[i] = g:expr(e[i]) end
  local t = g:tmp()
  g:emit(string.format("local %s = setmetatable({ %s }, %s)", t, table.concat(items, ", "),
                       g:up(e.k == "LIST" and V.List or V.Tuple)))
  return t
end
gen.TUPLE = gen.LIST

-- a and b, a or b, x if c else y: the second operand computed only if needed
local function conditional(g, first, test, second)
  local t = g:tmp()
  g:emit(string.format("local %s = %s", t, first))
  g:emit(string.format("if %s then", test(t)))
  g:emit(string.format("%s = %s", t, second()))
  g:emit("end")
  return t
end
function gen.BOOLOP(g, e)
  local a = g:expr(e[1])
  local test = e.op == "and" and function(t) return "TRUTHY(" .. t .. ")" end
               or function(t) return "not TRUTHY(" .. t .. ")" end
  return conditional(g, a, test, function() return g:expr(e[2]) end)
end
function gen.IFEXP(g, e)
  local c = g:expr(e[1])
  local t = g:tmp()
  g:emit(string.format("local %s", t))
  g:emit(string.format("if TRUTHY(%s) then", c))
  g:emit(string.format("%s = %s", t, g:expr(e[2])))
  g:emit("else")
  g:emit(string.format("%s = %s", t, g:expr(e[3])))
  g:emit("end")
  return t
end

-- The arguments of a bound call, in parameter order: constants as values,
-- the rest generated.
function G:args(plan, pos, kws, shared)
  local out = {}
  local function arg(node)
    local l = shared and calls.literal_list(node, 0)
    if l then return self:up(l) end
    return self:expr(node)
  end
  for i, p in ipairs(plan) do
    if p.pos then out[i] = arg(pos[p.pos])
    elseif p.kw then out[i] = arg(kws[p.kw][1])
    else out[i] = self:const(p.default) end
  end
  for _, j in ipairs(plan.extra or {}) do out[#out + 1] = arg(pos[j]) end
  return out
end

function G:op_call(name, pos, kws, loc)
  local op, plan = calls.bind_op(self.x, name, pos, kws, loc, self.dry)
  if not op then return self:up(function() error(name .. " is not supported", 0) end) .. "()" end
  local args = self:args(plan, pos, kws, not calls.MUTATES[name])
  local t = self:tmp()
  self:emit(string.format("local %s = TRACK(%s(%s))", t, self:up(op.fn), table.concat(args, ", ")))
  return t
end

local BINOPS = { add = "aten::add", sub = "aten::sub", mul = "aten::mul", div = "aten::div", floordiv = "aten::floordiv",
                 mod = "aten::remainder", pow = "aten::pow", matmul = "aten::matmul", eq = "aten::eq", ne = "aten::ne",
                 lt = "aten::lt", le = "aten::le", gt = "aten::gt", ge = "aten::ge", is = "aten::__is__",
                 isnot = "aten::__isnot__" }
function gen.BINOP(g, e)
  local name = BINOPS[e.op]
  if not name then return g:closure(e) end
  return g:op_call(name, { e[1], e[2] }, {}, g.fc:loc(e))
end
gen.COMPARE = gen.BINOP

-- the static class of a receiver expression: locals, self, attribute chains
function G:info(e)
  if e.k == "NAME" then return self.fc.info[e.s] or nil end
  if e.k == "ATTR" then
    local base = self:info(e[1])
    local t = base and base.cls and base.cls.attr_types[e.s]
    return t and self.x:type_info(t) or nil
  end
  if e.k == "CALL" and e[1].k == "NAME" and (e[1].s == "annotate" or e[1].s == "unchecked_cast") and e[2] then
    return self.x:type_info(e[2])
  end
end

function G:method_call(recv_node, name, pos, kws, loc)
  local info = self:info(recv_node)
  local cls = info and info.cls
  if cls and cls.kind == "interface" then cls = nil end
  local entry = cls and self.ctx:method(cls, name)
  if cls and not entry then return nil end
  local plan
  if entry then
    local err
    plan, err = schema.bind(calls.params_schema(entry, true), #pos, calls.kw_names(kws))
    if not plan then return nil end
  elseif #kws > 0 then
    return nil
  else
    plan = {}
    for i = 1, #pos do plan[i] = { pos = i } end
  end
  local o = self:expr(recv_node)
  local args = self:args(plan, pos, kws, false)
  local t, l = self:tmp(), self:up(loc)
  local list = table.concat(args, ", ")
  local dispatch = string.format("DISPATCH(CTX, %s, %s, %s, { %s }, %d)", self:up(name), l, o, list, #args)
  if entry then
    self:emit(string.format("local %s", t))
    self:emit(string.format("if type(%s) == \"table\" and rawget(%s, \"_class\") == %s then", o, o, self:up(cls)))
    local call = string.format("%s.fn(%s%s)", self:up(entry), o, #args > 0 and (", " .. list) or "")
    if cls.kind == "module" then
      -- a tool watching module calls (pthcv.nn.plan's recording, the ONNX
      -- tracer: nn.Module's observer) sees the submodule's call as its own
      self:emit(string.format("if MODULES.observer == nil then %s = %s", t, call))
      self:emit(string.format("else %s = MODULES.observer(%s, %s.fn%s) end", t, o, self:up(entry),
                              #args > 0 and (", " .. list) or ""))
    else
      self:emit(string.format("%s = %s", t, call))
    end
    self:emit(string.format("else %s = %s end", t, dispatch))
  else
    self:emit(string.format("local %s = %s", t, dispatch))
  end
  self:emit("rt.loc = " .. l)
  self.infos[t] = entry and entry.ret and self.x:type_info(entry.ret) or nil
  return t
end

function gen.CALL(g, e)
  local callee = e[1]
  local pos, kws = {}, {}
  for i = 2, #e do
    if e[i].k == "KEYWORD" then kws[#kws + 1] = e[i] else pos[#pos + 1] = e[i] end
  end
  local loc = g.fc:loc(e)
  local name = V.dotted(callee)
  local root = name and name:match("^[^.]+")
  if root and not g.fc.slots[root] then
    local op = name:match("^torch%.([%w_]+)$")
    if op then return g:op_call("aten::" .. op, pos, kws, loc) end
    local ns, o2 = name:match("^ops%.([%w_]+)%.([%w_]+)$")
    if ns then return g:op_call(ns .. "::" .. o2, pos, kws, loc) end
    return g:closure(e)
  end
  if callee.k == "ATTR" then
    local t = g:method_call(callee[1], callee.s, pos, kws, loc)
    if t then return t end
  end
  return g:closure(e)
end

-- ---- statements --------------------------------------------------------------------
local stmt = {}

-- A statement the closure compiler handles: its signals become ours.
function G:closure_stmt(st)
  self.fallbacks = true
  local s = self:tmp()
  self:emit(string.format("local %s = %s(f)", s, self:up((self.ctx.compile_stmt(self.fc, st)))))
  self:emit(string.format("if %s == 3 then return 3 end", s))
  if self.fc.loops > 0 then
    self:emit(string.format("if %s == 1 then break elseif %s == 2 then goto %s end", s, s, self.loops[#self.loops]))
  end
end

function G:stmt(st)
  self:emit("do rt.loc = " .. self:up(self.fc:loc(st)))
  local f = stmt[st.k]
  if f then f(self, st) else self:closure_stmt(st) end
  self:emit("end")
end

function G:block(node) for i = 1, #node do self:stmt(node[i]) end end

function stmt.ASSIGN(g, st)
  if #st ~= 2 or st[1].k ~= "NAME" then return g:closure_stmt(st) end
  local v = g:expr(st[2])
  local info = g:info(st[2]) or g.infos[v]
  g.fc:note(st[1].s, info)
  g:emit(string.format("%s = %s", g:slot(g.fc:slot(st[1].s)), v))
end
function stmt.EXPR(g, st)
  local v = g:expr(st[1])
  if not v:match("^[ts]%d+$") then g:emit("local _ = " .. v) end
end
function stmt.RETURN(g, st)
  local v = st[1].k == "EMPTY" and g:up(V.None) or g:expr(st[1])
  if g.locals then
    g:emit("rt.depth = d - 1")
    g:emit("do return " .. v .. " end")
  else
    g:emit("f[0] = " .. v)
    g:emit("do return 3 end")
  end
end
function stmt.PASS() end
function stmt.BREAK(g, st)
  if g.fc.loops == 0 then return g:closure_stmt(st) end
  g:emit("do break end")
end
function stmt.CONTINUE(g, st)
  if g.fc.loops == 0 then return g:closure_stmt(st) end
  g:emit("goto " .. g.loops[#g.loops])
end

local function test(c) return string.format("%s == true or (%s ~= false and TRUTHY(%s))", c, c, c) end

function stmt.IF(g, st)
  local c = g:expr(st[1])
  g:emit("if " .. test(c) .. " then")
  g:block(st[2])
  if st[3].k ~= "EMPTY" then
    g:emit("else")
    g:block(st[3])
  end
  g:emit("end")
end

-- A loop: body between "while true do" and its continue label.
local function loop(g, head, body, step)
  g.nlabel = g.nlabel + 1
  local label = "c" .. g.nlabel
  g.loops[#g.loops + 1] = label
  g.fc.loops = g.fc.loops + 1
  local n = g:tmp()
  g:emit(string.format("local %s = 0", n))
  g:emit("while true do")
  head()
  g:emit(string.format("%s = %s + 1; if %s > rt.max_iterations then TOO_MANY(rt) end", n, n, n))
  g:emit("do")
  g:block(body)
  g:emit("end")
  g:emit("::" .. label .. "::")
  if step then step() end
  g:emit("end")
  g.fc.loops = g.fc.loops - 1
  g.loops[#g.loops] = nil
end

function stmt.WHILE(g, st)
  loop(g, function()
    local c = g:expr(st[1])
    g:emit("if not (" .. test(c) .. ") then break end")
  end, st[2])
end

function stmt.FOR(g, st)
  local iter = st[2]
  if st[1].k ~= "NAME" then return g:closure_stmt(st) end
  local slot = g.fc:slot(st[1].s)
  g.fc:note(st[1].s, nil)
  local i = g:tmp()
  if iter.k == "CALL" and iter[1].k == "NAME" and iter[1].s == "range" and not g.fc.slots.range and #iter >= 2 and #iter <= 4 then
    local a = {}
    for k = 2, #iter do a[k - 1] = g:expr(iter[k]) end
    local lo, hi, step = "0", a[1], "1"
    if #a >= 2 then lo, hi = a[1], a[2] end
    if #a == 3 then step = a[3] end
    local s = g:tmp()
    g:emit(string.format("local %s, %s = %s, %s", i, s, lo, step))
    g:emit(string.format("if type(%s) ~= \"number\" or type(%s) ~= \"number\" or type(%s) ~= \"number\" or %s == 0 then RANGE() end",
                         i, hi, s, s))
    loop(g, function()
      g:emit(string.format("if not ((%s > 0 and %s < %s) or (%s < 0 and %s > %s)) then break end", s, i, hi, s, i, hi))
      g:emit(string.format("%s = %s", g:slot(slot), i))
    end, st[3], function() g:emit(string.format("%s = %s + %s", i, i, s)) end)
    return
  end
  local seq = g:tmp()
  g:emit(string.format("local %s, %s = ITER(%s), 1", seq, i, g:expr(iter)))
  loop(g, function()
    g:emit(string.format("if %s > #%s then break end", i, seq))
    g:emit(string.format("%s = %s[%s]", g:slot(slot), seq, i))
  end, st[3], function() g:emit(string.format("%s = %s + 1", i, i)) end)
end

local HEADER = "local U, rt, CTX, TRACK, GETATTR, GETITEM, ITER, DISPATCH, TRUTHY, UNBOUND, TOO_MANY, RANGE, " ..
               "type, rawget, setmetatable, None, qualname, MODULES = ...\n"

-- dry: the operators were counted by an earlier pass over the same body
local function generate(x, fc, block, locals, dry)
  local g = setmetatable({ x = x, fc = fc, ctx = x.ctx, U = {}, nu = 0, out = {}, ntmp = 0, loops = {}, nlabel = 0,
                           infos = {}, locals = locals, dry = dry }, G)
  fc.info, fc.loops = {}, 0
  for _, p in ipairs(fc.params) do fc:note(p.name, p.info) end
  g:block(block)
  return g
end

local function load(g, src, x)
  local chunk = loadstring(src, "=pthcv.jit.codegen")
  if not chunk then return nil end   -- beyond Lua's limits (200 locals...): the closures serve
  local fn = chunk(g.U, x.rt, x.ctx, calls.track_result, expr.getattr, expr.getitem, expr.iteration,
                   calls.dispatch, V.truthy, unbound, too_many,
                   function() error("TypeError: range() needs int arguments and a step other than 0", 0) end,
                   type, rawget, setmetatable, V.None, g.fc.name, require "pthcv.nn.module")
  -- LuaJIT cannot trace these long, loop-free bodies (a trace started in
  -- one ends at its return): interpreted, they do not abort traces of
  -- the code around them
  jit.off(fn)
  return fn
end

-- codegen.fn(x, fc, block, nparams) -> the def as one Lua function of its
-- parameters (entry.fn), or nil: locals as Lua locals when the closure
-- compiler is not needed for any part of the body and they fit Lua's
-- limits; else over a frame table shared with the closures it calls.
function M.fn(x, fc, block, nparams)
  local g = generate(x, fc, block, false)
  local depth = "local d = rt.depth + 1\nif d > rt.max_call_depth then error('calls nested deeper than ' .. rt.max_call_depth " ..
                ".. ' (max_call_depth) in ' .. qualname, 0) end\nrt.depth = d\n"
  local params = {}
  for i = 1, nparams do params[i] = "p" .. i end
  params = table.concat(params, ", ")
  if not g.fallbacks and fc.nslots <= 120 then
    local lg = generate(x, fc, block, true, true)
    if not lg.fallbacks then
      local slots = {}
      for i = 1, fc.nslots do slots[i] = "s" .. i end
      local src = HEADER .. "return function(" .. params .. ")\n" .. depth .. "local " .. table.concat(slots, ", ") ..
                  (nparams > 0 and (" = " .. params) or "") .. "\n" .. table.concat(lg.out, "\n") ..
                  "\nrt.depth = d - 1\nreturn None\nend"
      local fn = load(lg, src, x)
      if fn then return fn end
    end
  end
  local set = {}
  for i = 1, nparams do set[i] = string.format("f[%d] = p%d", i, i) end
  local src = HEADER .. "local tnew = require('table.new')\nlocal function body(f)\n" .. table.concat(g.out, "\n") ..
              "\nend\nreturn function(" .. params .. ")\n" .. depth .. "local f = tnew(" .. fc.nslots .. ", 0)\n" ..
              table.concat(set, "\n") .. "\nlocal r = body(f)\nrt.depth = d - 1\nif r == 3 then return f[0] end\nreturn None\nend"
  return load(g, src, x)
end

return M
