-- lua/pthcv/nn/plan/record.lua: one forward pass recorded as the sequence
-- of ops it ran, through the hook at pthcv.tensor.dispatch (as the ONNX
-- tracer records one), with the values' identities.
--
--   local g, results = record.run(root, fn, ...)   -- fn(...) is the forward pass
--   -- g.refused: why no plan can be made, or nil; else g.ops, g.slots
--
-- A value is a slot: a forward argument (g.input_slot[i]) or a result of a
-- recorded op (slot.producer: the op's index; 0 for arguments). An op's operands are described as
--   {k = "s", s = slot}   a value of this pass
--   {k = "c", v = value}  anything else: weights, packs, numbers, strings
--                         (compared by identity, or by value for numbers,
--                         strings and booleans, when the plan runs)
--   {k = "n"}             nil
--   {k = "l", items = {descriptions}}   a list of tensors (F.cat's)
-- and its results as slots: out = {slot, ...}, where a result that is a
-- list of tensors (F.chunk) is {list = {slot, ...}}, and a result that is
-- already a slot (an op that returned its input) keeps its slot (alias),
-- except for an op that wrote into its first operand and returned it (its
-- record says inplace = true: "F.relu_", "Tensor.add_"): e.inplace is set
-- and its result is a new slot, a new version of the same tensor (the old
-- slot's overwritten names it), so the ops after it read the new version
-- and the old one's uses end with the op that overwrote it.
-- Each slot keeps the layout of the value it had (shape, stride, offset,
-- dtype, numel, extent) and its uses {op = i, arg = j [, item = k]}; a
-- slot among the forward's results escapes; a slot whose value Lua still
-- holds after the pass (found by a full garbage collection) is held.
--
-- Ops run inside another op (depth > 0) are that op's business and not
-- recorded; preparing weights ("nn.prepare", "nn.make_pack") is not an op
-- of the pass: what it makes is a constant.
--
-- A plan must not change what the forward computes, so nothing is planned
-- (g.refused says why) when the pass reads or writes the elements of one
-- of its values from Lua (t:get, item, totable, sum, topk, ...: control
-- flow may then depend on them), or when an op consumes a tensor made by a
-- direct C call during the pass (no op recorded how it was made).
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local base = require "pthcv.nn.module"

local is_tensor = Tensor.is
local M = {}

local TRANSPARENT = { ["nn.prepare"] = true, ["nn.make_pack"] = true }
M.TRANSPARENT = TRANSPARENT

local function pack(...) return { n = select("#", ...), ... } end

-- The layout of tensor t as a slot keeps it.
local function layout(t)
  local ct = t.ct
  local nd = tonumber(ct.ndim)
  local shape, stride, extent = {}, {}, tonumber(ct.offset)
  for d = 0, nd - 1 do
    shape[d + 1], stride[d + 1] = tonumber(ct.shape[d]), tonumber(ct.stride[d])
    if shape[d + 1] > 0 then extent = extent + (shape[d + 1] - 1) * stride[d + 1] end
  end
  return { shape = shape, stride = stride, offset = tonumber(ct.offset), dtype = t.dtype, dtype_id = tonumber(ct.dtype),
           numel = tonumber(ct.numel), nbytes = t.nbytes, storage = t.storage_id, contiguous = t:is_contiguous() }
end
M.layout = layout

local function plain_list(v)
  return type(v) == "table" and getmetatable(v) == nil and #v > 0 and is_tensor(v[1])
end

-- Runs fn(...) with the hooks set; returns the graph and fn's results
-- packed ({n = ..., ...}). Errors of fn propagate (hooks put back first).
-- root: the module being planned (module attribution), or nil.
function M.run(root, fn, ...)
  local g = { ops = {}, slots = {}, ninputs = select("#", ...), refused = nil }
  local slot_of = setmetatable({}, { __mode = "k" })
  local born = setmetatable({}, { __mode = "k" })
  local depth, stack = 0, { root }

  local function new_slot(v, producer)
    local s = #g.slots + 1
    local info = layout(v)
    info.producer, info.uses = producer, {}
    g.slots[s] = info
    slot_of[v] = s
    return s
  end
  local function refuse(why) if not g.refused then g.refused = why end end

  -- g.input_slot[i]: the slot of argument i (false: not a tensor)
  local args = pack(...)
  g.input_slot = {}
  for i = 1, args.n do
    local v = args[i]
    g.input_slot[i] = is_tensor(v) and (slot_of[v] or new_slot(v, 0)) or false
  end

  local function describe(v, i, item)
    if v == nil then return { k = "n" } end
    if is_tensor(v) then
      local s = slot_of[v]
      if s then
        local u = g.slots[s].uses
        u[#u + 1] = { op = #g.ops + 1, arg = i, item = item }
        return { k = "s", s = s }
      end
      if born[v] then refuse(born[v]) end
      return { k = "c", v = v }
    end
    if item == nil and plain_list(v) then
      local items = {}
      for j, x in ipairs(v) do items[j] = describe(x, i, j) end
      return { k = "l", items = items, n = #v }
    end
    return { k = "c", v = v }
  end

  local function result(v, i, inplace)
    if is_tensor(v) then
      local s = slot_of[v]
      -- an op that wrote into its operand (rec.inplace): the value it made
      -- is a new version of that tensor; the old one is read no more
      if s and inplace then
        local v2 = new_slot(v, i)
        g.slots[s].overwritten = v2
        return v2
      end
      return s or new_slot(v, i)
    end
    if plain_list(v) then
      local l = {}
      for j, x in ipairs(v) do l[j] = is_tensor(x) and (slot_of[x] or new_slot(x, i)) or false end
      return { list = l }
    end
    return false
  end

  local function hook(op, rec, impl, ...)
    if depth > 0 or TRANSPARENT[op] then
      depth = depth + 1
      local res = pack(pcall(impl, rec, ...))
      depth = depth - 1
      if not res[1] then error(res[2], 0) end
      return unpack(res, 2, res.n)
    end
    local a = pack(...)
    local i = #g.ops + 1
    local e = { op = op, rec = rec, impl = impl, args = {}, nargs = a.n, module = stack[#stack], index = i }
    for j = 1, a.n do e.args[j] = describe(a[j], j) end
    if Tensor.element_ops[op] then
      for j = 1, a.n do
        if e.args[j].k == "s" then
          refuse(string.format("%s reads the elements of a value of the pass in Lua (%s): what Lua computes from "
                               .. "them may change the ops the forward runs", op, tostring(a[j])))
        end
      end
    end
    depth = 1
    local res = pack(pcall(impl, rec, ...))
    depth = 0
    if not res[1] then error(res[2], 0) end
    g.ops[i] = e
    e.out, e.nres = {}, res.n - 1
    local inplace = type(rec) == "table" and rec.inplace == true and res.n == 2 and rawequal(res[2], a[1])
    e.inplace = inplace or nil
    for j = 2, res.n do e.out[j - 1] = result(res[j], i, inplace) end
    return unpack(res, 2, res.n)
  end

  -- which module each op runs in: the innermost one being called
  local saved_hook, saved_wrap, saved_observer = D.hook, D.on_wrap, base.observer
  D.hook, base.observer = hook, base.stack_observer(stack)
  D.on_wrap = function(t)
    if depth == 0 then born[t] = "an op consumes a tensor made by a direct C call in the forward (" .. tostring(t)
                                  .. "): the plan could not tell how it was made" end
  end
  local res = pack(pcall(fn, ...))
  D.hook, D.on_wrap, base.observer = saved_hook, saved_wrap, saved_observer
  if not res[1] then error(res[2], 0) end
  res = { n = res.n - 1, unpack(res, 2, res.n) }
  -- the forward's results escape (also inside tables of results)
  local function escape(v, level)
    if is_tensor(v) then
      local s = slot_of[v]
      if s then g.slots[s].escapes = true end
    elseif type(v) == "table" and level < 3 then
      for _, x in pairs(v) do escape(x, level + 1) end
    end
  end
  for i = 1, res.n do escape(res[i], 1) end
  -- g.results[i]: {slot = s} for a result that is a value of the pass, {value
  -- = v} for one that is no table; nil when a result is anything else (a
  -- pass replay.run_ops can run without its forward gives its results back
  -- from these)
  g.results = { n = res.n }
  for i = 1, res.n do
    local v = res[i]
    if is_tensor(v) and slot_of[v] then g.results[i] = { slot = slot_of[v] }
    elseif type(v) ~= "table" and type(v) ~= "userdata" and type(v) ~= "cdata" then g.results[i] = { value = v }
    else g.results = nil; break end
  end
  -- the values something in Lua still holds once the pass is over (a module
  -- keeping its input, a cache): a full collection leaves them in slot_of.
  -- A plan never frees them early (replay.lua); the others die with the pass.
  args = nil
  collectgarbage()
  collectgarbage()
  for _, s in pairs(slot_of) do g.slots[s].held = true end
  return g, res
end

return M
