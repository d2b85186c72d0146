-- lua/pthcv/jit/module.lua: ScriptModule, a TorchScript module as a
-- pthcv.nn module: the archive's object tree (data.pkl) rebuilt as nn
-- modules (children, parameters and buffers under torch's names, every
-- other attribute as it was saved), whose forward runs the archive's code.
--
--   local m = pthcv.jit.load("resnet18_traced.pt"):eval()
--   local y = m(x)                      -- forward, interpreted
--   m.layer1["0"].conv1                 -- submodules by torch's names
--   m.fc.weight, m:state_dict()         -- parameters and buffers
--   print(m); print(m.code); m:graph()  -- tree with settings, forward source, op list
--
-- Each TorchScript class gets a Lua class (a subclass of ScriptModule)
-- named as torch names it, so print(m) reads as torch's repr.
local base = require "pthcv.nn.module"
local OrderedDict = require "pthcv.reader.odict"
local values = require "pthcv.reader.values"
local Tensor = require "pthcv.tensor"
local V = require "pthcv.jit.values"
local track = require "pthcv.jit.track"
local expr = require "pthcv.jit.expr"
local release = require "pthcv.nn.release"

local M = {}
local ScriptModule = base.class("ScriptModule")
M.ScriptModule = ScriptModule

local MAX_NESTING = 200

local function fail(where, msg) error("pthcv: " .. where .. ": " .. msg, 0) end

-- torch's class path without the archive's decorations:
-- __torch__.torch.nn.modules.conv.___torch_mangle_3.Conv2d -> torch.nn.modules.conv.Conv2d
function M.torch_class(qualname)
  return (qualname:gsub("^__torch__%.", ""):gsub("%.___torch_mangle_%d+", ""))
end

local function lua_class(cls)
  if not cls.lua_class then
    cls.lua_class = base.class(cls.name, ScriptModule, { torch_class = M.torch_class(cls.qualname) })
  end
  return cls.lua_class
end

-- An attribute name the nn.Module side owns (fields and methods).
local function collides(name)
  return expr.RESERVED[name] or (name ~= "training" and base.Module[name] ~= nil) or name == "code"
end

local build

-- A pickled value as the interpreter's value: objects rebuilt, containers walked.
local function convert(ctx, v, path, memo, depth)
  if type(v) ~= "table" then return v end
  local mt = getmetatable(v)
  if mt == values.Object then return build(ctx, v, path, memo, depth + 1) end
  if memo[v] then return memo[v] end
  if mt == values.List or mt == values.Tuple then
    memo[v] = v
    for i = 1, #v do v[i] = convert(ctx, v[i], path .. "." .. (i - 1), memo, depth + 1) end
  elseif OrderedDict.is(v) then
    memo[v] = v
    for _, kv in ipairs(OrderedDict.items(v)) do v[kv[1]] = convert(ctx, kv[2], path .. "." .. tostring(kv[1]), memo, depth + 1) end
  end
  return v
end

-- Rebuilds the object obj of the tree (memo: shared objects stay shared).
build = function(ctx, obj, path, memo, depth)
  if memo[obj] then return memo[obj] end
  if depth > MAX_NESTING then fail(ctx.archive.path, "objects nested deeper than " .. MAX_NESTING .. " at " .. path) end
  local cls = ctx.archive:class_of(obj, path)
  local state = obj.state
  if not OrderedDict.is(state) then
    fail(ctx.archive.path, (path ~= "" and path or "the root") .. " (" .. cls.name .. ") has no attribute dict")
  end
  cls.ctx = ctx
  local o
  if cls.kind == "module" then
    o = base.Module.blank(lua_class(cls))
  else
    o = setmetatable({}, V.Object)
  end
  rawset(o, "_class", cls)
  memo[obj] = o
  for _, kv in ipairs(OrderedDict.items(state)) do
    local name, v = kv[1], kv[2]
    local where = path == "" and name or (path .. "." .. name)
    if type(name) ~= "string" then fail(ctx.archive.path, path .. ": an attribute name that is not a string") end
    if collides(name) then fail(ctx.archive.path, "attribute '" .. where .. "' collides with pthcv.nn.Module's own '" .. name .. "'") end
    v = convert(ctx, v, where, memo, depth)
    if type(v) == "table" and not Tensor.is(v) and not base.is_module(v) then
      ctx.containers[#ctx.containers + 1] = v   -- what a call may store tensors into
    end
    if cls.kind ~= "module" then
      rawset(o, name, v)
    elseif base.is_module(v) then
      o:add_module(name, v)
    elseif cls.param_set[name] or cls.buffer_set[name] then
      if v ~= V.None and not Tensor.is(v) then fail(ctx.archive.path, where .. " is a parameter or buffer but not a tensor") end
      if cls.param_set[name] then o:register_parameter(name, v ~= V.None and v or nil)
      else o:register_buffer(name, v ~= V.None and v or nil) end
    else
      rawset(o, name, v)
    end
  end
  if cls.kind == "module" then rawset(o, "code", M.source_of(ctx, cls, "forward")) end
  return o
end

function M.build(ctx, root)
  ctx.instances = {}   -- pickled object -> rebuilt module
  ctx.containers = {}
  return build(ctx, root, "", ctx.instances, 0)
end

-- The source text of a method (its def and body), as the archive has it.
function M.source_of(ctx, cls, name)
  local def = cls.methods[name]
  if not def then return nil end
  cls.sources = cls.sources or {}
  if cls.sources[name] then return cls.sources[name] end
  local src = ctx.archive.sources[cls.file] or ""
  local lines, out, indent = {}, {}, nil
  for line in (src .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = line end
  for i = def.line, #lines do
    local l = lines[i]
    local ind = #l:match("^%s*")
    if i == def.line then indent = ind
    elseif l:match("%S") and ind <= indent and not l:match("^%s*[%)%]]") then break end
    out[#out + 1] = l:sub(indent + 1)
  end
  while #out > 0 and not out[#out]:match("%S") do out[#out] = nil end
  cls.sources[name] = table.concat(out, "\n")
  return cls.sources[name]
end

-- ---- running ------------------------------------------------------------------
-- Marks every tensor reachable from v (through lists, tuples, dicts and
-- plain objects; not modules, whose tensors are their own).
local function reach(v, seen, depth)
  if depth > 100 or seen[v] then return end
  if Tensor.is(v) then seen[v] = true; return end
  if type(v) ~= "table" or base.is_module(v) then return end
  seen[v] = true
  if OrderedDict.is(v) then
    for _, kv in ipairs(OrderedDict.items(v)) do reach(kv[1], seen, depth + 1); reach(kv[2], seen, depth + 1) end
    return
  end
  for k, x in pairs(v) do if k ~= "_class" then reach(x, seen, depth + 1) end end
end

-- Releases the tensors the operators made during a call that nothing
-- kept holds: the result, the attributes the call set, the containers the
-- modules hold.
local function sweep(ctx, result)
  local seen = {}
  reach(result, seen, 0)
  for _, v in ipairs(track.kept) do reach(v, seen, 0) end
  for _, v in ipairs(ctx.containers) do reach(v, seen, 0) end
  local created = track.created
  for i = 1, track.n do
    local t = created[i]
    created[i] = nil
    if not seen[t] then release(t) end
  end
  track.n, track.kept, track.active = 0, {}, false
end
local function strip(msg)
  msg = tostring(msg)
  return (msg:gsub("^pthcv: ", ""))
end

-- Runs the compiled method `name` of module self with args; errors name the
-- archive's file and line.
function M.run(self, name, ...)
  local cls = rawget(self, "_class")
  local ctx = cls.ctx
  local entry = ctx:method(cls, name)
  if not entry then error("pthcv: " .. cls.name .. " has no method '" .. name .. "'", 2) end
  local where = ctx.archive.path .. ": "
  if #ctx.problems > 0 then error("pthcv: " .. where .. ctx.problems[1].loc .. ": " .. ctx.problems[1].msg, 2) end
  local n = select("#", ...)
  local args = { ... }
  local nparams = #entry.params - 1
  if n > nparams then error("pthcv: " .. cls.name .. "." .. name .. " takes " .. nparams .. " arguments, " .. n .. " given", 2) end
  for i = n + 1, nparams do
    local d = entry.params[i + 1].default
    if d == require("pthcv.jit.schema").NO_DEFAULT then
      error("pthcv: " .. cls.name .. "." .. name .. " is missing the argument '" .. entry.params[i + 1].name .. "'", 2)
    end
    args[i] = d
  end
  for i = 1, nparams do if args[i] == nil then args[i] = V.None end end
  local rt = ctx.rt
  local outer, outer_loc = rt.depth, rt.loc
  rt.loc = entry.file .. ":" .. entry.line
  local top = not track.active
  if top then track.active, track.n, track.kept = true, 0, {} end
  local ok, r = pcall(entry.fn, self, unpack(args, 1, nparams))
  rt.depth = outer
  if top then sweep(ctx, ok and r or nil) end
  if not ok then
    local loc = rt.loc
    rt.loc = outer_loc
    r = strip(r)
    if r:sub(1, #where) == where then error("pthcv: " .. r, 0) end   -- from a nested call
    error("pthcv: " .. where .. loc .. ": " .. r, 0)
  end
  rt.loc = outer_loc
  return r
end

function ScriptModule:forward(...) return M.run(self, "forward", ...) end

-- Drops the packs made for this model (after its weights were changed in
-- place; new weight tensors get new packs by themselves), and the plans
-- whose steps fused them.
function ScriptModule:clear_packs()
  local layers = require "pthcv.jit.layers"
  for _, p in ipairs(self:parameters()) do layers.forget(p) end
  base.touch()
end

-- module:method(name): a callable running another method of the archive's
-- class (torch's @torch.jit.export methods), e.g. m:method("features")(x).
function ScriptModule:method(name)
  return function(...) return M.run(self, name, ...) end
end

-- ---- straight-line code: pthcv.nn.plan may run its ops without it ----------------
-- Statements and expressions that choose what runs (or raise), and stores
-- into anything but a local: code with none of them runs the same ops with
-- the same constants whenever its arguments have the same layout (shapes
-- and constants follow from the layouts; pthcv.nn.plan refuses passes that
-- read tensor elements in Lua). torch.jit.trace writes such code.
local BRANCHES = { IF = true, WHILE = true, FOR = true, BREAK = true, CONTINUE = true, RAISE = true, ASSERT = true,
                   WITH = true, DEL = true, IFEXP = true, BOOLOP = true }
local function local_target(t)
  if t.k == "NAME" then return true end
  if t.k ~= "TUPLE" and t.k ~= "LIST" then return false end
  for i = 1, #t do if not local_target(t[i]) then return false end end
  return true
end

-- Does the assignment statement e store into locals only?
local function stores_locally(e)
  local k = e.k
  if k == "ASSIGN" then   -- targets, then the value
    for i = 1, #e - 1 do if not local_target(e[i]) then return false end end
  elseif k == "ANNASSIGN" or k == "AUGASSIGN" then
    return local_target(e[1])
  end
  return true
end

-- Whether the syntax tree node is straight-line (an explicit stack: no
-- recursion whose depth the archive chooses).
local function straight(node)
  local calls = require "pthcv.jit.calls"
  local stack, n = { node }, 1
  while n > 0 do
    local e = stack[n]
    stack[n] = nil
    n = n - 1
    local k = e.k
    if BRANCHES[k] then return false end
    if not stores_locally(e) then return false end
    if k == "CALL" and e[1].k == "ATTR" and (calls.MUTATES["aten::" .. e[1].s] or e[1].s == "__setitem__") then return false end
    for i = 1, #e do
      if type(e[i]) == "table" then n = n + 1; stack[n] = e[i] end
    end
  end
  return true
end

-- pthcv.nn.plan's question: does every call of this module's forward with
-- the same argument layout run the same ops? Yes when no method or function
-- of the archive read so far (every one a pass ran) has a branch, a loop or
-- a store into an attribute or a container.
function ScriptModule:runs_same_ops()
  local archive = rawget(self, "_class").ctx.archive
  if archive.straight_line == nil then
    local ok = true
    for _, cls in pairs(archive.classes) do
      for _, def in pairs(cls.methods) do ok = ok and straight(def) end
    end
    for _, f in pairs(archive.functions) do ok = ok and straight(f.node) end
    archive.straight_line = ok
  end
  return archive.straight_line
end

function ScriptModule:repr_name() return rawget(self, "_class").name end
function ScriptModule:extra_repr() return require("pthcv.jit.describe").extra_repr(self) end
function ScriptModule:graph() return require("pthcv.jit.describe").graph(self) end

-- The original class path, as torch would print type(m).
function ScriptModule:torch_class() return M.torch_class(rawget(self, "_class").qualname) end

return M
