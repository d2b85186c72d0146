-- lua/pthcv/jit/calls.lua: call expressions: operators (bound to their
-- schemas when compiling), the archive's functions and methods (bound to
-- their parameters), python_print's builtins, NamedTuple construction and
-- object creation. See pthcv.jit.expr for how names resolve.
local V = require "pthcv.jit.values"
local ops = require "pthcv.jit.ops"
local schema = require "pthcv.jit.schema"
local track = require "pthcv.jit.track"
local Tensor = require "pthcv.tensor"
local specialize = require "pthcv.jit.specialize"

local M = {}
local Tuple = V.Tuple
local is_tensor = Tensor.is

local const = specialize.const

-- A call of fn over argument closures; after: the result passes through
-- it (the tracking of tensors made during a call).
local function make_call(fn, args, after)
  return specialize.call(fn, args, after)
end
M.make_call = make_call

-- Argument closures in parameter order, from a binding plan over the
-- compiled positional (pargs) and keyword (kargs) closures.
local function plan_args(plan, pargs, kargs)
  local args = {}
  for i, p in ipairs(plan) do
    if p.pos then args[i] = pargs[p.pos]
    elseif p.kw then args[i] = kargs[p.kw]
    else args[i] = const(p.default) end
  end
  for _, j in ipairs(plan.extra or {}) do args[#args + 1] = pargs[j] end
  return args
end

-- A list or tuple display of literals as one shared value, or nil.
local function literal_list(e, depth)
  if depth > 8 or (e.k ~= "LIST" and e.k ~= "TUPLE") then return nil end
  local out = {}
  for i = 1, #e do
    local k = e[i].k
    if k == "INT" or k == "FLOAT" or k == "STR" then out[i] = e[i].k == "STR" and e[i].s or e[i].v
    elseif k == "CONST" then out[i] = e[i].op == "None" and V.None or e[i].op == "True"
    else
      out[i] = literal_list(e[i], depth + 1)
      if out[i] == nil then return nil end
    end
  end
  return setmetatable(out, e.k == "LIST" and V.List or Tuple)
end

-- Argument closures; shared: a display of literals ([2, 2], (1, 1)) is
-- made once, for operators that do not modify their arguments.
local function compile_args(x, fc, pos, kws, shared)
  local pargs, kargs = {}, {}
  local function arg(e)
    local l = shared and literal_list(e, 0)
    if l then return const(l) end
    return x:compile(fc, e)
  end
  for i, p in ipairs(pos) do pargs[i] = arg(p) end
  for i, k in ipairs(kws) do kargs[i] = arg(k[1]) end
  return pargs, kargs
end

-- Operators that modify a list or dict argument in place.
local MUTATES = {}
for name in ([[aten::append aten::extend aten::insert aten::pop aten::remove aten::clear aten::reverse aten::sort
  aten::_set_item aten::setdefault aten::update]]):gmatch("%S+") do MUTATES[name] = true end

-- Notes the tensors an operator made (pthcv.jit.track).
local created = track.note
local function track_result(r)
  if track.active then
    if is_tensor(r) then created(r)
    elseif type(r) == "table" and (getmetatable(r) == V.List or getmetatable(r) == Tuple) then
      for i = 1, #r do if is_tensor(r[i]) then created(r[i]) end end
    end
  end
  return r
end

local function kw_names(kws)
  local out = {}
  for i, k in ipairs(kws) do out[i] = k.s end
  return out
end

-- The operator NS::X bound to a call's arguments: op, plan; or nil (and
-- the problem recorded). uncounted: not counted again in ops_report.
function M.bind_op(x, name, pos, kws, loc, uncounted)
  local op = ops.get(name)
  if not uncounted then x.ctx:use_op(name, loc, op ~= nil) end
  if not op then x.ctx:problem(loc, name .. " is not supported"); return nil end
  local plan, err = schema.bind(op.schema, #pos, kw_names(kws))
  if not plan then x.ctx:problem(loc, err); return nil end
  return op, plan
end
M.literal_list, M.MUTATES, M.track_result, M.kw_names = literal_list, MUTATES, track_result, kw_names

-- torch.X(...) / ops.NS.X(...): the operator NS::X
function M.op_call(x, fc, name, pos, kws, loc)
  local op, plan = M.bind_op(x, name, pos, kws, loc)
  if not op then return function() error(name .. " is not supported", 0) end end
  return make_call(op.fn, plan_args(plan, compile_args(x, fc, pos, kws, not MUTATES[name])), track_result)
end

-- The parameters of an archive function (or method, without self) as a schema.
function M.params_schema(entry, skip_self)
  local s = { name = entry.name, params = {}, vararg = false }
  for i = skip_self and 2 or 1, #entry.params do
    local p = entry.params[i]
    s.params[#s.params + 1] = { name = p.name, default = p.default, kwonly = false }
  end
  return s
end

-- A call of an archive function entry with bound arguments; rt.loc is
-- restored after it.
local function entry_call(x, entry, pargs, kargs, kws, loc)
  local plan, err = schema.bind(M.params_schema(entry, false), #pargs, kw_names(kws))
  if not plan then return x.ctx:problem(loc, err) end
  local args = plan_args(plan, pargs, kargs)
  local rt = x.rt
  local call = make_call(function(...) return entry.fn(...) end, args)
  return function(f)
    local r = call(f)
    rt.loc = loc
    return r
  end
end

-- Positional arguments completed with an entry's defaults, at run time.
local function fill_defaults(entry, v, n, first)
  for i = n + 1, #entry.params - first do
    local d = entry.params[i + first].default
    if d == schema.NO_DEFAULT then error("TypeError: " .. entry.name .. " is missing the argument '" .. entry.params[i + first].name .. "'", 0) end
    v[i] = d
  end
  return v
end

-- Builtin methods of values that are not objects (x.tolist(), l.append(v), ...):
-- the aten:: operator of that name with the receiver first.
local function value_method(o, name, args)
  if name == "tolist" and is_tensor(o) then
    local function lists(t) if type(t) == "table" then for i = 1, #t do t[i] = lists(t[i]) end return V.list(t) end return t end
    return lists(o:totable())
  end
  local op = ops.get("aten::" .. name)
  if not op then error("AttributeError: '" .. V.typename(o) .. "' object has no method '" .. name .. "'", 0) end
  local plan, err = schema.bind(op.schema, #args + 1, {})
  if not plan then error(err, 0) end
  local v = { o }
  for i, p in ipairs(plan) do if i > 1 then v[i] = p.pos and args[p.pos - 1] or p.default end end
  return op.fn(unpack(v, 1, #plan))
end

-- (o).name(v...) dispatched on the receiver's class at run time, with the
-- argument values v (positional; a method compiled on first use).
function M.dispatch(ctx, name, loc, o, v, n)
  local ocls = type(o) == "table" and getmetatable(o) ~= Tuple and rawget(o, "_class")
  if not ocls then
    return value_method(o, name, v)
  end
  local nproblems = #ctx.problems
  local entry = ctx:method(ocls, name)
  if not entry then error("AttributeError: " .. ocls.name .. " has no method '" .. name .. "'", 0) end
  local p = ctx.problems[nproblems + 1]
  if p then error(p.loc .. ": " .. p.msg, 0) end
  local r = entry.fn(o, unpack(fill_defaults(entry, v, n, 1), 1, #entry.params - 1))
  ctx.rt.loc = loc
  return r
end

-- (o).name(args), the dispatch at run time as a closure fn(o, frame).
local function dynamic_method(x, name, pargs, kws, loc)
  local n, ctx = #pargs, x.ctx
  local dispatch = M.dispatch
  return function(o, f)
    if #kws > 0 then error("keyword arguments in a call of ." .. name .. "() on a receiver of unknown class", 0) end
    local v = {}
    for i = 1, n do v[i] = pargs[i](f) end
    return dispatch(ctx, name, loc, o, v, n)
  end
end

-- entry.fn(o, args...) for an evaluated receiver: fn(o, frame)
local function static_method(entry, args, rt, loc)
  local n = #args
  local a1, a2, a3 = args[1], args[2], args[3]
  if n == 0 then return function(o) local r = entry.fn(o); rt.loc = loc; return r end end
  if n == 1 then return function(o, f) local r = entry.fn(o, a1(f)); rt.loc = loc; return r end end
  if n == 2 then return function(o, f) local r = entry.fn(o, a1(f), a2(f)); rt.loc = loc; return r end end
  if n == 3 then return function(o, f) local r = entry.fn(o, a1(f), a2(f), a3(f)); rt.loc = loc; return r end end
  return function(o, f)
    local v = { o }
    for i = 1, n do v[i + 1] = args[i](f) end
    local r = entry.fn(unpack(v, 1, n + 1))
    rt.loc = loc
    return r
  end
end

-- (recv).name(args): a receiver whose class is known statically gets its
-- method compiled (and checked) now; another class at run time dispatches.
function M.method_call(x, fc, recv_node, name, pos, kws, loc)
  local recv, info = x:compile(fc, recv_node)
  local pargs, kargs = compile_args(x, fc, pos, kws)
  local cls = info and info.cls
  local dynamic = dynamic_method(x, name, pargs, kws, loc)
  if not cls or cls.kind == "interface" then return function(f) return dynamic(recv(f), f) end end
  local entry = x.ctx:method(cls, name)
  if not entry then return x.ctx:problem(loc, "class " .. cls.name .. " has no method '" .. name .. "'") end
  local plan, err = schema.bind(M.params_schema(entry, true), #pargs, kw_names(kws))
  if not plan then return x.ctx:problem(loc, err) end
  local static = static_method(entry, plan_args(plan, pargs, kargs), x.rt, loc)
  return specialize.site("method", recv, cls, static, dynamic, type, rawget), entry.ret and x:type_info(entry.ret) or nil
end

-- f(args) where f is a local holding a function value
local function value_call(x, fc, callee, pos, kws, loc)
  local fn, info = x:compile(fc, callee)
  if info and info.func then
    local entry = x.ctx:func(info.func)
    if entry then
      local pargs, kargs = compile_args(x, fc, pos, kws)
      return entry_call(x, entry, pargs, kargs, kws, loc)
    end
  end
  if #kws > 0 then return x.ctx:problem(loc, "keyword arguments in a call of a function value") end
  local args = {}
  for i, p in ipairs(pos) do args[i] = x:compile(fc, p) end
  local ctx, rt = x.ctx, x.rt
  return function(f)
    local r = fn(f)
    if type(r) ~= "table" or getmetatable(r) ~= V.FunctionRef then error("TypeError: '" .. V.typename(r) .. "' object is not callable", 0) end
    local entry = ctx:func(r.fn)
    local v = {}
    for i = 1, #args do v[i] = args[i](f) end
    local out = entry.fn(unpack(fill_defaults(entry, v, #args, 0), 1, #entry.params))
    rt.loc = loc
    return out
  end
end

-- __torch__.a.b.X(...): a function, a NamedTuple, or X.__new__(X)
local function archive_call(x, fc, name, pos, kws, loc)
  local cname = name:match("^(.*)%.__new__$")
  if cname then
    local cls = x.archive:class(cname)
    if not cls then return x.ctx:problem(loc, "class " .. cname .. " has no source in the archive") end
    return function() return setmetatable({ _class = cls }, V.Object) end, { cls = cls }
  end
  local entry = x.ctx:func(name)
  if entry then
    local pargs, kargs = compile_args(x, fc, pos, kws)
    return entry_call(x, entry, pargs, kargs, kws, loc), entry.ret and x:type_info(entry.ret) or nil
  end
  local cls = x.archive:class(name)
  if cls and cls.kind == "namedtuple" then
    local s = { name = cls.name, params = {}, vararg = false }
    for i, fname in ipairs(cls.fields) do s.params[i] = { name = fname, default = schema.NO_DEFAULT } end
    local plan, err = schema.bind(s, #pos, kw_names(kws))
    if not plan then return x.ctx:problem(loc, err) end
    local args = plan_args(plan, compile_args(x, fc, pos, kws))
    return function(f)
      local t = { _class = cls }
      for i = 1, #args do t[i] = args[i](f) end
      return setmetatable(t, Tuple)
    end
  end
  return x.ctx:problem(loc, name .. " is not a function or NamedTuple of the archive")
end

-- ---- builtins ---------------------------------------------------------------------
local builtins = {}
M.BUILTINS = builtins

local function nargs(x, loc, pos, n, name)
  if #pos ~= n then x.ctx:problem(loc, name .. "() takes " .. n .. " arguments, " .. #pos .. " given"); return false end
  return true
end

-- annotate(T, v) and unchecked_cast(T, v): v, typed T
function builtins.annotate(x, fc, pos, kws, loc)
  if not nargs(x, loc, pos, 2, "annotate") then return const(None) end
  local v = x:compile(fc, pos[2])
  return v, x:type_info(pos[1])
end
builtins.unchecked_cast = builtins.annotate
function builtins.uninitialized() return const(V.Uninitialized) end

function builtins.isinstance(x, fc, pos, kws, loc)
  if not nargs(x, loc, pos, 2, "isinstance") then return const(false) end
  local v = x:compile(fc, pos[1])
  local tnodes = pos[2].k == "TUPLE" and pos[2] or { pos[2] }
  local types = {}
  for i = 1, #tnodes do types[i] = V.parse_type(tnodes[i], function(n) return x.archive:class(n) end) end
  return function(f)
    local val = v(f)
    for i = 1, #types do if V.isinstance(val, types[i]) then return true end end
    return false
  end
end

function builtins.getattr(x, fc, pos, kws, loc)
  if #pos ~= 2 or pos[2].k ~= "STR" then return x.ctx:problem(loc, "getattr() needs an object and a literal name") end
  return x:compile(fc, { k = "ATTR", s = pos[2].s, line = pos[1].line, pos[1] })
end

function builtins.hasattr(x, fc, pos, kws, loc)
  if #pos ~= 2 or pos[2].k ~= "STR" then return x.ctx:problem(loc, "hasattr() needs an object and a literal name") end
  local o, name = x:compile(fc, pos[1]), pos[2].s
  return function(f) return (pcall(x.getattr, o(f), name)) end
end

local ALIASES = { int = "aten::Int", float = "aten::Float", bool = "aten::Bool", str = "aten::str",
                  len = "aten::len", print = "prim::Print", sorted = "aten::sorted", min = "prim::min",
                  max = "prim::max", abs = "prim::abs", list = "aten::list", dict = "aten::dict" }
for name, op in pairs(ALIASES) do
  builtins[name] = function(x, fc, pos, kws, loc) return M.op_call(x, fc, op, pos, kws, loc) end
end
for _, name in ipairs { "fork", "wait", "range", "enumerate", "zip", "tuple", "set", "map", "filter" } do
  builtins[name] = function(x, _, _, _, loc)
    return x.ctx:problem(loc, name .. "() is not supported" .. (name == "range" and " outside a for loop" or ""))
  end
end

-- ---- dispatch ----------------------------------------------------------------------
function M.call(x, fc, e)
  local callee = e[1]
  local pos, kws = {}, {}
  for i = 2, #e do
    if e[i].k == "KEYWORD" then kws[#kws + 1] = e[i] else pos[#pos + 1] = e[i] end
  end
  local loc = fc:loc(e)
  if callee.k == "NAME" and not fc.slots[callee.s] then
    local b = builtins[callee.s]
    if b then return b(x, fc, pos, kws, loc) end
    return x:global_name(fc, callee.s, loc)
  end
  local name = V.dotted(callee)
  local root = name and name:match("^[^.]+")
  if root and not fc.slots[root] then
    if root == "torch" then
      local op = name:match("^torch%.([%w_]+)$")
      if not op then return x.ctx:problem(loc, name .. " is not supported") end
      return M.op_call(x, fc, "aten::" .. op, pos, kws, loc)
    elseif root == "ops" then
      local ns, op = name:match("^ops%.([%w_]+)%.([%w_]+)$")
      if not ns then return x.ctx:problem(loc, name .. " is not supported") end
      return M.op_call(x, fc, ns .. "::" .. op, pos, kws, loc)
    elseif root == "__torch__" then
      return archive_call(x, fc, name, pos, kws, loc)
    elseif callee.k == "ATTR" and callee[1].k == "NAME" then
      return x:global_name(fc, root, loc)
    end
  end
  if callee.k == "ATTR" then return M.method_call(x, fc, callee[1], callee.s, pos, kws, loc) end
  return value_call(x, fc, callee, pos, kws, loc)
end

return M
