-- lua/pthcv/nn/plan/replay.lua: a forward pass run under its plan.
--
-- The forward's Lua code runs as written; every op it calls reaches the
-- hook at pthcv.tensor.dispatch, which checks it against the recorded
-- sequence (the op, its record, its operands: the same values of this pass
-- in the same places, the same constants) before doing the op's work the
-- plan's way:
--   * an op outside every step runs as recorded;
--   * a step's members hand out placeholders (tensors with the value's
--     layout and no bytes: pthcv_tensor_placeholder), except the last, which
--     hands out the step's result; the step's work happens at its exec op
--     (optimize.lua), its operands held (retained) from the op that passed
--     them, whatever the forward frees meanwhile.
-- When the pass leaves the recorded sequence (another op, other operands,
-- a placeholder read or returned, an error), the plan gives up for the
-- rest of the pass: the values behind every placeholder handed out so far
-- are computed as recorded (the ops that lead to them run again from the
-- values still alive), put into the placeholders' own tensors, and the
-- forward goes on as written. Nothing is run twice on the Lua side and no
-- value the forward sees is ever wrong.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local base = require "pthcv.nn.module"
local W = require "pthcv.nn.plan.weights"

local C = core.C
local is_tensor = Tensor.is
local wrap = Tensor.wrap
local M = {}

-- Work counters of every planned pass (specs, plan.describe): steps run by
-- kind, ops run as recorded (plain) and those of them that ran a kernel
-- (kernels: they wrote a new tensor when recorded), the copies cat steps
-- made and their bytes, placeholders made, passes that left their plan.
M.counters = { steps = {}, plain = 0, kernels = 0, copies = 0, copied_bytes = 0, twins = 0, deviations = 0, freed = 0,
               freed_bytes = 0 }

local function pack(...) return { n = select("#", ...), ... } end

-- (the counters read the C tensor's byte count straight, not through the
-- Tensor's property lookup)
local function nbytes(ct) return tonumber(C.pthcv_tensor_nbytes(ct)) end

local function result(ct, what)
  if ct == nil then core.fail(what) end
  return wrap(ct, true)
end

-- records equal as plain data (numbers, strings, booleans, lists, nested)
local function same_rec(a, b, depth)
  if rawequal(a, b) then return true end
  if type(a) ~= "table" or type(b) ~= "table" or depth > 4 then return false end
  for k, v in next, a do
    if not same_rec(v, rawget(b, k), depth + 1) then return false end
  end
  for k in next, b do if rawget(a, k) == nil then return false end end
  return true
end

local function matches(env, d, v)
  local k = d.k
  if k == "s" then return rawequal(env[d.s], v) end
  if k == "c" then return rawequal(d.v, v) end
  if k == "n" then return v == nil end
  if type(v) ~= "table" or #v ~= d.n then return false end
  for j, item in ipairs(d.items) do if not matches(env, item, v[j]) then return false end end
  return true
end

local function view_of(dst, v)
  return result(C.pthcv_tensor_view(dst.ct, 4, v.shape_c, v.stride_c, tonumber(dst.ct.offset) + v.offset), "view")
end

-- The destination of a cat step in this pass (made by its first writer).
local function dst_of(ctx, cat)
  local t = ctx.dst[cat]
  if t == nil then
    t = result(C.pthcv_tensor_empty(C.PTHCV_FLOAT32, 4, cat.shape_c), "cat destination")
    ctx.dst[cat] = t
  end
  return t
end

-- ---- the steps' work (ctx: the pass, st: the step, ...: the exec op's operands) ----
local EXEC = {}
function EXEC.conv(ctx, st)
  local x, r = ctx.held[st.need_x], st.need_res and ctx.held[st.need_res] or nil
  local h = W.handle(st.pack)
  if st.into then
    local v = view_of(dst_of(ctx, st.into.cat), st.into.part.view)
    core.check(C.pthcv_conv2d_forward_into(h, x, r, v.ct), "conv2d")
    return v
  end
  return result(C.pthcv_conv2d_forward(h, x, r), "conv2d")
end
function EXEC.dwpw(ctx, st)
  local x, r = ctx.held[st.need_x], st.need_res and ctx.held[st.need_res] or nil
  if not st.into then
    return result(C.pthcv_dwpw_forward(W.handle(st.dw_pack), W.handle(st.pw_pack), x, r, nil, 0), "dwpw")
  end
  -- written into its slice of the cat: the C call's new reference to that
  -- view is dropped at once (left to the collector, it kept the whole
  -- destination's bytes until the next collection: 3.3 MB a shufflenet pass)
  local v = view_of(dst_of(ctx, st.into.cat), st.into.part.view)
  local y = C.pthcv_dwpw_forward(W.handle(st.dw_pack), W.handle(st.pw_pack), x, r, v.ct, 0)
  if y == nil then core.fail("dwpw") end
  C.pthcv_tensor_release(y)
  return v
end
function EXEC.linear(ctx, st)
  return result(C.pthcv_linear_forward(W.handle(st.pack), ctx.held[st.need_x]), "linear")
end
function EXEC.se(ctx, st)
  return result(C.pthcv_squeeze_excitation(ctx.held[st.need_x], st.w1.ct, st.b1 and st.b1.ct or nil, st.a1,
                                           st.w2.ct, st.b2 and st.b2.ct or nil, st.a2), "squeeze_excitation")
end
function EXEC.cat(ctx, st, xs)
  local dst = dst_of(ctx, st)
  for _, p in ipairs(st.parts) do
    if not p.producer then
      local x = xs[p.item]
      -- the view is this copy's alone: released now, not left to the
      -- collector with a reference to the destination's bytes
      local v = view_of(dst, p.view)
      local rc = C.pthcv_copy_into(v.ct, x.ct)
      C.pthcv_tensor_release(v.ct)
      v.ct = nil
      core.check(rc, "cat")
      M.counters.copies = M.counters.copies + 1
      M.counters.copied_bytes = M.counters.copied_bytes + nbytes(x.ct)
    end
  end
  return dst
end

local function release_held(ctx, ids)
  local held = ctx.held
  for _, id in ipairs(ids) do
    local ct = held[id]
    if ct ~= nil then C.pthcv_tensor_release(ct); held[id] = nil end
  end
end

-- ---- leaving the plan ----------------------------------------------------------------
-- The slots op e made, as a list.
local function out_slots(e)
  local l = {}
  for _, s in ipairs(e.out) do
    if type(s) == "number" then l[#l + 1] = s
    elseif type(s) == "table" then for _, x in ipairs(s.list) do if x then l[#l + 1] = x end end end
  end
  return l
end

local function bind(vals, e, res)
  for j, s in ipairs(e.out) do
    local r = res[j]
    if type(s) == "number" then vals[s] = r
    elseif type(s) == "table" and type(r) == "table" then
      for k, x in ipairs(s.list) do if x then vals[x] = r[k] end end
    end
  end
end

-- The values behind the placeholders handed out before op upto, put into
-- the placeholders' tensors.
local function materialize(ctx, upto)
  local g, env, is_twin = ctx.plan.g, ctx.env, ctx.is_twin
  local function have(s)
    local v = env[s]
    return v ~= nil and not is_twin[s] and v.ct ~= nil
  end
  local need, todo, val = {}, {}, {}
  for t, s in pairs(ctx.twin_slot) do if t.ct ~= nil then need[s] = true end end
  local function mark(d)
    if d.k == "s" then need[d.s] = true
    elseif d.k == "l" then for _, x in ipairs(d.items) do mark(x) end end
  end
  for i = upto - 1, 1, -1 do
    local e = g.ops[i]
    for _, s in ipairs(out_slots(e)) do
      if need[s] and not have(s) then todo[i] = true end
    end
    if todo[i] then for _, d in ipairs(e.args) do mark(d) end end
  end
  local function value(s) if have(s) then return env[s] end return val[s] end
  local function operand(d)
    if d.k == "s" then return value(d.s) end
    if d.k == "c" then return d.v end
    if d.k == "n" then return nil end
    local l = {}
    for j, x in ipairs(d.items) do l[j] = operand(x) end
    return l
  end
  for i = 1, upto - 1 do
    if todo[i] then
      local e = g.ops[i]
      local a = {}
      for j = 1, e.nargs do a[j] = operand(e.args[j]) end
      bind(val, e, pack(e.impl(e.rec, unpack(a, 1, e.nargs))))
    end
  end
  for t, s in pairs(ctx.twin_slot) do
    if t.ct ~= nil then
      local v = value(s)
      if v == nil or v.ct == nil then
        error("pthcv: plan: the value behind a placeholder could not be computed again (its inputs were freed); "
              .. "run this model with module:plan(false)", 0)
      end
      C.pthcv_tensor_retain(v.ct)
      C.pthcv_tensor_release(t.ct)
      t.ct = v.ct
    end
  end
end

-- The plan gives up for the rest of the pass (see the top).
local function deviate(ctx, upto, why)
  if ctx.deviated then return end
  ctx.deviated, ctx.why = true, why
  D.hook = ctx.saved
  M.counters.deviations = M.counters.deviations + 1
  for id in pairs(ctx.held) do C.pthcv_tensor_release(ctx.held[id]) end
  ctx.held = {}
  materialize(ctx, upto)
end

-- The values no later op reads (plan.free_after[i]) freed: their tensors
-- get the plan's placeholder of their layout, as a fused-away value's (the
-- pass leaving the plan computes them again: materialize).
local function free_dead(ctx, l)
  local env, counters = ctx.env, M.counters
  for _, f in ipairs(l) do
    local t = env[f.slot]
    if t ~= nil and t.ct ~= nil and not ctx.is_twin[f.slot] then
      counters.freed, counters.freed_bytes = counters.freed + 1, counters.freed_bytes + nbytes(t.ct)
      C.pthcv_tensor_retain(f.twin)
      C.pthcv_tensor_release(t.ct)
      t.ct = f.twin
      ctx.twin_slot[t], ctx.is_twin[f.slot] = f.slot, true
    end
  end
end

-- A step ending with an op that writes in place (record.lua: e.inplace)
-- hands out the step's result v in the tensor the op overwrites, dst: a
-- placeholder of the step (optimize.lua only fuses an op that overwrites
-- the step's own value, which nothing else reads), now holding v's bytes.
-- v's reference moves to dst (v is the step's own value, which nothing
-- else holds): left in v, the bytes would wait for the collector, and
-- each pass would take fresh pages for them.
local function overwrite(ctx, dst, v)
  C.pthcv_tensor_release(dst.ct)
  dst.ct, v.ct = v.ct, nil
  ctx.twin_slot[dst] = nil
  return dst
end

-- ---- the hook ------------------------------------------------------------------------
local function make_hook(ctx)
  local plan = ctx.plan
  local ops, action, need_at, twins = plan.g.ops, plan.action, plan.need_at, plan.twins
  local env, counters, free_after = ctx.env, M.counters, plan.free_after
  local depth = 0

  -- op i's results, once the values it read last are freed
  local function done(i, ...)
    local l = free_after[i]
    if l and not ctx.deviated then free_dead(ctx, l) end
    return ...
  end

  local function fail(i, err)
    depth = 0
    deviate(ctx, i, "an op failed")
    error(err, 0)
  end

  local function step(i, e, st, ...)
    local needs = need_at[i]
    if needs then
      for _, nd in ipairs(needs) do
        local v = select(nd.arg, ...)
        if is_tensor(v) then
          C.pthcv_tensor_retain(v.ct)
          ctx.held[nd.id] = v.ct
        end
      end
    end
    if i == st.exec then
      local prof = base.profiler
      local t0 = prof and prof.now()
      depth = 1
      local ok, v = pcall(EXEC[st.kind], ctx, st, ...)
      depth = 0
      if not ok then fail(i, v) end
      release_held(ctx, st.need_ids)
      ctx.val[st] = v
      counters.steps[st.kind] = (counters.steps[st.kind] or 0) + 1
      if prof then prof.record(st.module, prof.now() - t0, " [" .. st.label .. "]") end
    end
    local out = e.out[1]
    if i == st.last then
      local v = ctx.val[st]
      if e.inplace then v = overwrite(ctx, (select(1, ...)), v) end
      env[out] = v
      return v
    end
    if e.inplace then
      -- the tensor it overwrites is this step's placeholder already: it
      -- stands for the new version (computed again from the old one's
      -- inputs should the pass leave the plan)
      local t = (select(1, ...))
      env[out] = t
      ctx.twin_slot[t], ctx.is_twin[out] = out, true
      return t
    end
    local t = wrap(twins[out])   -- a new reference to the plan's placeholder
    env[out] = t
    ctx.twin_slot[t], ctx.is_twin[out] = out, true
    counters.twins = counters.twins + 1
    return t
  end

  -- the values a step's op takes from outside have their recorded shapes
  local function fits(i, ...)
    for _, c in ipairs(plan.shapes[i]) do
      local v = select(c.arg, ...)
      if c.item then v = v[c.item] end
      local ct, shape = v.ct, c.shape
      if ct == nil or ct.ndim ~= #shape then return false end
      for d = 1, #shape do if ct.shape[d - 1] ~= shape[d] then return false end end
    end
    return true
  end

  local function check(e, ...)
    local n = select("#", ...)
    if n ~= e.nargs then return false end
    local args = e.args
    for j = 1, n do
      if not matches(env, args[j], (select(j, ...))) then return false end
    end
    return true
  end

  return function(op, rec, impl, ...)
    if depth > 0 then return impl(rec, ...) end
    local i = ctx.pos + 1
    local e = ops[i]
    if e == nil or e.op ~= op or e.impl ~= impl or not same_rec(e.rec, rec, 0) or not check(e, ...) then
      deviate(ctx, i, e == nil and ("an op past the recorded ones: " .. op)
                      or ("op " .. i .. ": " .. op .. " where " .. e.op .. " with these operands was recorded"))
      return impl(rec, ...)
    end
    local st = action[i]
    if st and not fits(i, ...) then
      deviate(ctx, i, "op " .. i .. ": " .. op .. " takes a value of another shape than recorded")
      return impl(rec, ...)
    end
    ctx.pos = i
    if st then return done(i, step(i, e, st, ...)) end
    counters.plain = counters.plain + 1
    if e.kernel then counters.kernels = counters.kernels + 1 end
    depth = 1
    if e.nres == 1 then
      local ok, r = pcall(impl, rec, ...)
      depth = 0
      if not ok then fail(i, r) end
      local s = e.out[1]
      if s then
        if type(s) == "number" then env[s] = r
        else for k, x in ipairs(s.list) do if x then env[x] = r[k] end end end
      end
      return done(i, r)
    end
    local res = pack(pcall(impl, rec, ...))
    depth = 0
    if not res[1] then fail(i, res[2]) end
    bind(env, e, { unpack(res, 2, res.n) })
    return done(i, unpack(res, 2, res.n))
  end
end

-- Whether a forward's results hold a placeholder of this pass.
local function holds_twin(ctx, v, level)
  if is_tensor(v) then return ctx.twin_slot[v] ~= nil end
  if type(v) == "table" and level < 3 then
    for _, x in pairs(v) do if holds_twin(ctx, x, level + 1) then return true end end
  end
  return false
end

-- Runs fn(...) (the forward pass, arguments as recorded) under plan.
-- Returns fn's results; plan.deviated is set when the pass left the plan.
function M.run(plan, fn, ...)
  local g = plan.g
  local ctx = { plan = plan, env = {}, held = {}, dst = {}, val = {}, twin_slot = {}, is_twin = {}, pos = 0,
                saved = D.hook }
  for i = 1, select("#", ...) do
    local s = g.input_slot[i]
    if s then ctx.env[s] = (select(i, ...)) end
  end
  D.hook = make_hook(ctx)
  local res = pack(pcall(fn, ...))
  D.hook = ctx.saved
  if res[1] and not ctx.deviated then
    if ctx.pos ~= #g.ops then
      deviate(ctx, ctx.pos + 1, "the forward ran " .. ctx.pos .. " of the " .. #g.ops .. " recorded ops")
    else
      for j = 2, res.n do
        if holds_twin(ctx, res[j], 1) then deviate(ctx, ctx.pos + 1, "the forward returned a fused-away value") end
      end
    end
  end
  for _, ct in pairs(ctx.held) do C.pthcv_tensor_release(ct) end
  if ctx.deviated then plan.deviated = ctx.why end
  if not res[1] then error(res[2], 0) end
  return unpack(res, 2, res.n)
end

-- Runs the recorded pass without its forward: each recorded op is handed
-- to the plan's hook with its operands as recorded (this pass's values in
-- the slots, the recorded constants), so steps, freed values and leaving
-- the plan work as in M.run. Only for forwards that run the same ops with
-- the same constants for every call with the same argument layout, whose
-- results are values of the pass or plain (plan.g.results): a traced
-- TorchScript graph (pthcv.jit: no control flow, no state written), whose
-- interpreted code would otherwise cost more than some of its kernels.
function M.run_ops(plan, ...)
  local g = plan.g
  local ctx = { plan = plan, env = {}, held = {}, dst = {}, val = {}, twin_slot = {}, is_twin = {}, pos = 0,
                saved = D.hook }
  local env = ctx.env
  for i = 1, select("#", ...) do
    local s = g.input_slot[i]
    if s then env[s] = (select(i, ...)) end
  end
  local function operand(d)
    local k = d.k
    if k == "s" then return env[d.s] end
    if k == "c" then return d.v end
    if k == "n" then return nil end
    local l = {}
    for j, x in ipairs(d.items) do l[j] = operand(x) end
    return l
  end
  local hook = make_hook(ctx)
  D.hook = hook
  local ok, err = pcall(function()
    local a = {}
    for i, e in ipairs(g.ops) do
      local n = e.nargs
      for j = 1, n do a[j] = operand(e.args[j]) end
      -- (once the pass left the plan the hook is no longer D.hook: ops run as recorded)
      local run = ctx.deviated and function(_, rec, impl, ...) return impl(rec, ...) end or hook
      bind(env, e, pack(run(e.op, e.rec, e.impl, unpack(a, 1, n))))
      for j = 1, n do a[j] = nil end
    end
  end)
  D.hook = ctx.saved
  local res = { n = g.results.n }
  if ok then
    for i = 1, res.n do
      local r = g.results[i]
      if r.slot then res[i] = env[r.slot] else res[i] = r.value end
      if r.slot and not ctx.deviated and ctx.twin_slot[res[i]] then
        deviate(ctx, #g.ops + 1, "the forward returned a fused-away value")
      end
    end
  end
  for _, ct in pairs(ctx.held) do C.pthcv_tensor_release(ct) end
  if ctx.deviated then plan.deviated = ctx.why end
  if not ok then error(err, 0) end
  return unpack(res, 1, res.n)
end

-- The C arrays a placeholder and a view are made from.
function M.layout_arrays(shape, stride)
  local n = math.max(#shape, 1)
  return ffi.new("int64_t[?]", n, shape), ffi.new("int64_t[?]", n, stride)
end

return M
