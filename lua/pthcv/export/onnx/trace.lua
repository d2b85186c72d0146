-- lua/pthcv/export/onnx/trace.lua: records one forward pass into a graph
-- (graph.lua) by hooking pthcv.tensor.dispatch, the point every op passes.
--
-- While the pass runs:
--   * the outermost op (not one called inside another op, nor inside a
--     handler) that touches a traced value is recorded by its handler
--     (ops.lua, keyed by op name, given the op's record and operands); an
--     op with no handler is refused by name;
--   * ops on constants only compute constants (weights reshaped, ...);
--   * tensors made by no op (Tensor.wrap of a direct C call) are "born":
--     a traced op consuming one is refused (graph.lua's Graph:input), and
--     so is anything computed from one;
--   * reading or writing element values of a traced or born tensor from Lua
--     (t:data(), get, set, item, totable, sum, max, topk, ...) is refused:
--     what Lua computes from them cannot be part of the graph;
--   * F.constant(t) declares t a constant (its values as they are now).
-- Refusals name the module the op ran in (its path in the model, from the
-- nn.Module observer hook) and the value. Hooks are put back afterwards,
-- also after an error.
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local base = require "pthcv.nn.module"
local ops = require "pthcv.export.onnx.ops"
local graph = require "pthcv.export.onnx.graph"

local is_tensor = Tensor.is
local refuse = graph.refuse
local M = {}

-- Whether any operand (or a tensor inside a list operand) is in set.
local function touches(set, a)
  for i = 1, a.n do
    local v = a[i]
    if is_tensor(v) then
      if set[v] then return v end
    elseif type(v) == "table" and getmetatable(v) == nil then
      for _, x in ipairs(v) do if is_tensor(x) and set[x] then return x end end
    end
  end
  return nil
end

local function returns_tensor(res)
  for i = 2, res.n do
    local r = res[i]
    if is_tensor(r) then return true end
    if type(r) == "table" and getmetatable(r) == nil and is_tensor(r[1]) then return true end
  end
  return false
end

local function pack(...) return { n = select("#", ...), ... } end

-- Marks every tensor result as born in where (computed from a born value).
local function taint(g, res, where)
  for i = 2, res.n do
    local r = res[i]
    if is_tensor(r) then g.born[r] = where
    elseif type(r) == "table" and getmetatable(r) == nil then
      for _, x in ipairs(r) do if is_tensor(x) then g.born[x] = where end end
    end
  end
end

-- Runs fn() (the forward pass on the graph's input) with the hooks set;
-- model: the module being traced (its named_modules name the places).
function M.run(g, model, fn)
  local paths = {}
  for _, kv in ipairs(model:named_modules()) do paths[kv[2]] = kv[1] end
  local function describe(m)
    if m == nil then return "the model's forward (" .. model:typename() .. ")" end
    local p = paths[m]
    if p == nil then return "a module outside the model (" .. m:typename() .. ")" end
    if p == "" then return "the model's forward (" .. m:typename() .. ")" end
    return p .. " (" .. m:typename() .. ")"
  end
  local stack, depth = {}, 0
  -- where op runs: the layer that made its pack when it has one, else the
  -- innermost module being called
  local function where(a)
    local pk = a and a[1]
    if type(pk) == "table" and pk.handle and pk.module and paths[pk.module] then return describe(pk.module) end
    return describe(stack[#stack])
  end

  -- Before the op runs: F.constant, and the ops that read or write element
  -- values in Lua (refused on traced or born values).
  local function admit(op, a)
    if op == "F.constant" then
      if g:is_traced(a[1]) then
        refuse(g.where .. ": F.constant of " .. g:describe(a[1]) .. ", a value computed from the model's input")
      end
      g.born[a[1]] = nil
      return
    end
    local v = touches(g.traced, a) or touches(g.born, a)
    if v then
      refuse(string.format("%s: %s reads the elements of %s in Lua: what Lua computes from them is not part of "
        .. "the graph, so the file would differ from the forward pass. Compute with pthcv.F and Tensor methods "
        .. "(or declare a constant with F.constant)", g.where, op, g:describe(v)))
    end
  end

  -- After the op ran (res: pcall's results): its nodes, by its handler.
  local function record(op, a, res)
    if not returns_tensor(res) then return end
    if touches(g.traced, a) then
      -- it returned its input (dropout, ...), unless it wrote into it (rec.inplace)
      if is_tensor(res[2]) and rawequal(res[2], a[1]) and not (a.rec and a.rec.inplace) then return end
      local handler = ops.handlers[op]
      if not handler then refuse(op .. " has no ONNX form") end
      local r = {}
      for i = 2, res.n do r[i - 1] = res[i] end
      handler(g, a, r)
    elseif touches(g.born, a) then
      taint(g, res, g.where)
    end
  end

  local function hook(op, rec, impl, ...)
    if depth > 0 then return impl(rec, ...) end
    local a = pack(...)
    a.rec = rec
    g.op_name, g.where = op, where(a)
    local before = op == "F.constant" or Tensor.element_ops[op]
    if before then admit(op, a) end
    depth = 1
    if type(rec) == "table" and rec.inplace and is_tensor(a[1]) and g.traced[a[1]] then g:before_overwrite(a[1]) end
    local res = pack(pcall(impl, rec, ...))
    if res[1] and not before then
      local ok, err = pcall(record, op, a, res)
      if not ok then res = { false, err, n = 2 } end
    end
    depth = 0
    if not res[1] then error(res[2], 0) end
    return unpack(res, 2, res.n)
  end

  local saved_hook, saved_wrap, saved_observer = D.hook, D.on_wrap, base.observer
  D.hook, base.observer = hook, base.stack_observer(stack)
  D.on_wrap = function(t) if depth == 0 then g.born[t] = describe(stack[#stack]) end end
  local res = pack(pcall(fn))
  D.hook, D.on_wrap, base.observer = saved_hook, saved_wrap, saved_observer
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

return M
