-- lua/pthcv/nn/plan: fusion that does not depend on how a model was
-- written. After eval(), calling a module records the ops its first
-- forward pass runs (record.lua); at the next call with the same input
-- layout the optimiser rewrites them into fused steps (optimize.lua), and
-- that call and the later ones run the forward under the plan
-- (replay.lua), which checks every op against the recording as it goes
-- and gives up where the pass differs, never computing a wrong value. A
-- new input layout records and plans again.
--
--   net:eval()
--   local y = net(x)                    -- recorded
--   y = net(x)                          -- planned, and run under the plan
--   print(pthcv.nn.plan.describe(net))  -- the steps, what they fused, the work saved
--   net:plan(false)                     -- this module runs as written from now on
--   pthcv.nn.plan.enabled = false       -- every module does (PTHCV_PLAN=0 at start)
--
-- Modules are planned where they are called from outside any planned pass
-- (a module called inside another's forward is part of that pass), in
-- eval mode, while no tool watches the ops (the ONNX tracer). Other code
-- runs its passes through the same optimiser with plan.wrap(fn): a Lua
-- script's function, an interpreter calling pthcv's ops (pthcv.jit).
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"
local base = require "pthcv.nn.module"
local record = require "pthcv.nn.plan.record"
local optimize = require "pthcv.nn.plan.optimize"
local replay = require "pthcv.nn.plan.replay"
local report = require "pthcv.nn.plan.report"
local W = require "pthcv.nn.plan.weights"
local match = require "pthcv.nn.plan.match"
local F = require "pthcv.nn.functional"

local C = core.C
local is_tensor = Tensor.is
local P = {}

P.enabled = os.getenv("PTHCV_PLAN") ~= "0"
-- Plans kept per module (input layouts): the oldest goes first.
P.max_plans = 4
-- Passes that may leave their plan before a module stops being planned.
P.max_deviations = 3
P.counters = replay.counters

-- ---- making a plan ---------------------------------------------------------------
local function path_finder(root)
  local paths = {}
  if base.is_module(root) then
    for _, kv in ipairs(root:named_modules()) do paths[kv[2]] = kv[1] end
  end
  return function(m)
    local p = m and paths[m]
    if p == nil then return m and base.is_module(m) and m:typename() or "(forward)" end
    return p == "" and ("(" .. m:typename() .. ")") or p
  end
end

-- The placeholder of slot s (made by op e in module `where`): one C tensor
-- per plan, each pass handing out a new reference to it. gone: what became
-- of the value ("fused away" by default).
local function twin_of(g, s, e, where, gone)
  local sl = g.slots[s]
  local shape, stride = replay.layout_arrays(sl.shape, sl.stride)
  local what = string.format("(a value pthcv.nn.plan %s: the result of %s in %s; module:plan(false) keeps "
                             .. "every value)", gone or "fused away", e.op, where)
  local ct = C.pthcv_tensor_placeholder(sl.dtype_id, #sl.shape, shape, stride, sl.offset, what)
  if ct == nil then core.fail("placeholder") end
  return ffi.gc(ct, C.pthcv_tensor_release)
end

-- The packs a plan runs as they are: those of the ops it runs as recorded
-- (F.conv2d's and F.linear's cached ones included), and the leads' own of
-- steps that fold nothing into them. The others its
-- steps replace are freed as soon as the step has what it needs from them
-- (F.pack_evict: a pass without the plan makes them again).
-- The pack F.conv2d / F.linear keep for the weights of op e (match.conv /
-- match.linear's info), or nil.
local function cached_pack(info)
  return info and info.weight and F.pack_cached(info.weight, info.bias, info.rec) or nil
end

local function packs_in_use(g, steps, action)
  local used = {}
  for i, e in ipairs(g.ops) do
    if not action[i] then
      for _, d in ipairs(e.args) do if d.k == "c" and type(d.v) == "table" then used[d.v] = true end end
      local pk = cached_pack(match.conv(e) or match.linear(e))
      if pk then used[pk] = true end
    end
  end
  for _, st in ipairs(steps) do
    for _, c in ipairs(st.kind == "dwpw" and { st.dw, st.pw } or { st }) do
      if c.info and c.info.pack and not c.bn and not c.act then used[c.info.pack] = true end
    end
  end
  return used
end

local function evict(used, c)
  local pk = c.info.pack or cached_pack(c.info)
  if pk and not used[pk] then F.pack_evict(pk) end
end

-- The recorded shapes of the values of the pass a step's op e takes from
-- outside the step: {{arg, item, shape}} (item: the place in a list
-- operand). A pass where one differs (a shape that depends on values, as
-- after nonzero) leaves the plan there: the step's placeholders and
-- destination have the recorded shapes.
local function outside_shapes(g, e, inside)
  local l = {}
  local function add(d, j, k)
    if d.k == "s" and not inside[d.s] then l[#l + 1] = { arg = j, item = k, shape = g.slots[d.s].shape } end
  end
  for j, d in ipairs(e.args) do
    if d.k == "l" then for k, x in ipairs(d.items) do add(x, j, k) end else add(d, j) end
  end
  return l
end

-- The values of the pass that die in it, by the op that reads them last:
-- after[i] = {{slot, twin}}. Not the forward's arguments or results, nor
-- what Lua still held after the recorded pass (record.lua), nor values
-- fused away. The replay frees their bytes after op i and leaves a
-- placeholder of their layout in the tensor the forward holds (its shape
-- still readable; its values computed again if the pass leaves the plan),
-- as the zoo's forwards free theirs by hand (nn/release.lua): a pass then
-- needs the memory of the values alive at once, not of all it made.
local function dying(g, plan, path_of)
  local after = {}
  for s, sl in ipairs(g.slots) do
    -- (a value overwritten in place lives on as its next version, the tensor's)
    if sl.producer > 0 and not sl.escapes and not sl.held and not sl.overwritten and not plan.twins[s] then
      local last = sl.producer
      for _, u in ipairs(sl.uses) do last = math.max(last, u.op) end
      local e = g.ops[sl.producer]
      local l = after[last] or {}
      after[last] = l
      l[#l + 1] = { slot = s, twin = twin_of(g, s, e, path_of(e.module), "freed after the last op reading it") }
    end
  end
  return after
end

-- The plan of a recorded pass g: its steps made runnable (weights,
-- operands to hold, placeholders, C layouts).
local function build(g, root)
  local steps, action = optimize.build(g)
  local plan = { g = g, steps = steps, action = action, twins = {}, need_at = {}, shapes = {} }
  local path_of = path_finder(root)
  plan.path_of = path_of
  local used = packs_in_use(g, steps, action)
  local nid = 0
  local function need(st, at)
    nid = nid + 1
    local l = plan.need_at[at.op]
    if not l then l = {}; plan.need_at[at.op] = l end
    l[#l + 1] = { id = nid, arg = at.arg }
    st.need_ids[#st.need_ids + 1] = nid
    return nid
  end
  for _, st in ipairs(steps) do
    st.need_ids = {}
    st.module = g.ops[st.kind == "se" and st.members[#st.members] or st.members[1]].module
    if st.kind == "conv" or st.kind == "linear" then
      st.pack = W.chain_pack(st)
      evict(used, st)
      st.need_x = need(st, st.x)
      if st.res then st.need_res = need(st, st.res) end
    elseif st.kind == "dwpw" then
      st.dw_pack, st.pw_pack = W.chain_pack(st.dw), W.chain_pack(st.pw)
      -- whether the kernel bands this pair (at the thread count of now): the report's bytes
      local xshape = g.slots[match.slot(g.ops[st.x.op], st.x.arg)].shape
      st.band_rows = C.pthcv_dwpw_band_rows(W.handle(st.dw_pack), W.handle(st.pw_pack), #xshape,
                                            ffi.new("int64_t[?]", #xshape, xshape))
      evict(used, st.dw)
      evict(used, st.pw)
      st.need_x = need(st, st.x)
      if st.res then st.need_res = need(st, st.res) end
    elseif st.kind == "se" then
      st.w1, st.b1 = W.matrix(st.c1)
      st.w2, st.b2 = W.matrix(st.c2)
      evict(used, st.c1)
      evict(used, st.c2)
      st.a1_rec, st.a2_rec = optimize.chain_act(st.c1), optimize.chain_act(st.c2)
      st.a1, st.a2 = A.activation_struct(st.a1_rec), A.activation_struct(st.a2_rec)
      st.need_x = need(st, st.x)
    else
      st.shape_c = replay.layout_arrays(st.shape, st.shape)
      for _, p in ipairs(st.parts) do
        local v = p.view
        v.shape_c, v.stride_c = replay.layout_arrays(v.shape, v.stride)
        p.bytes = 4 * v.shape[1] * v.shape[2] * v.shape[3] * v.shape[4]
      end
    end
    st.label = report.label(g, st)
    local inside = {}
    for _, j in ipairs(st.members) do
      local e = g.ops[j]
      if j ~= st.last then
        plan.twins[match.out(e)] = twin_of(g, match.out(e), e, path_of(e.module))
      end
      plan.shapes[j] = outside_shapes(g, e, inside)
      inside[match.out(e)] = true
    end
  end
  plan.free_after = dying(g, plan, path_of)
  -- a module whose forward runs the same ops for every call with the same
  -- argument layout (module:runs_same_ops(): a traced TorchScript graph)
  -- has its plan run without its forward (replay.run_ops)
  plan.run_ops = g.results ~= nil and root ~= nil and type(root.runs_same_ops) == "function" and root:runs_same_ops()
  plan.stats = report.stats(plan)
  return plan
end

-- ---- when a module is called -----------------------------------------------------------
-- The layout of the pass's arguments, or nil when one cannot be planned for
-- (a table, a function: the forward may read anything from them).
local function signature(...)
  local parts = {}
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    if is_tensor(v) then
      local ct = v.ct
      if ct == nil then return nil end
      local s = { tonumber(ct.dtype), tonumber(ct.offset) }
      for d = 0, ct.ndim - 1 do s[#s + 1] = tonumber(ct.shape[d]) .. "/" .. tonumber(ct.stride[d]) end
      parts[i] = table.concat(s, ",")
    elseif t == "number" or t == "string" or t == "boolean" then
      parts[i] = t .. ":" .. tostring(v)
    elseif v == nil then
      parts[i] = "nil"
    else
      return nil
    end
  end
  return table.concat(parts, ";")
end

local function pack(...) return { n = select("#", ...), ... } end

-- The state of an owner's plans (a module, or what wrap made), made anew
-- when weights were loaded since (base.state.version).
local function state_of(owner)
  local st = rawget(owner, "_plans")
  if st == nil or st.version ~= base.state.version then
    st = { version = base.state.version, by_sig = {}, order = {}, deviations = 0 }
    rawset(owner, "_plans", st)
  end
  return st
end

local function remember(st, sig, plan)
  if #st.order >= P.max_plans then st.by_sig[table.remove(st.order, 1)] = nil end
  st.by_sig[sig] = plan
  st.order[#st.order + 1] = sig
end

local function forget(st, sig)
  st.by_sig[sig] = nil
  for i, s in ipairs(st.order) do if s == sig then table.remove(st.order, i); break end end
end

-- Runs fn(...) planned for owner; the pass's inputs are fn's arguments
-- after the first skip (a module's forward: the module itself).
local function run(owner, root, skip, fn, ...)
  local st = state_of(owner)
  if st.off then return fn(...) end
  local sig = signature(select(skip + 1, ...))
  if sig == nil then return fn(...) end
  local plan = st.by_sig[sig]
  if plan == nil then
    -- the first pass is recorded; the plan is made when a second one comes
    -- (a program that runs a model once does not pay for fused packs)
    local g, res = record.run(root, fn, ...)
    remember(st, sig, g.refused and { refused = g.refused } or { recorded = g })
    return unpack(res, 1, res.n)
  end
  if plan.recorded then
    local ok, p = pcall(build, plan.recorded, root)
    plan = ok and p or { refused = "pthcv: plan: " .. tostring(p) }
    st.by_sig[sig] = plan
  end
  if plan.refused then return fn(...) end
  local res
  if plan.run_ops then res = pack(replay.run_ops(plan, ...))
  else res = pack(replay.run(plan, fn, ...)) end
  if plan.deviated then
    forget(st, sig)
    st.deviations = st.deviations + 1
    st.last_deviation = plan.deviated
    if st.deviations >= P.max_deviations then
      st.off = "the forward left its plan " .. st.deviations .. " times (last: " .. plan.deviated .. ")"
    end
  end
  return unpack(res, 1, res.n)
end

-- base.planner: module_call's way in (module.lua).
local function planner(m, run_forward, ...)
  if not P.enabled or D.hook ~= nil or rawget(m, "_plan_off") then return run_forward(m, ...) end
  return run(m, m, 1, run_forward, m, ...)
end
base.planner = planner

-- fn(...) planned: a function running fn's passes through the optimiser
-- (name: for messages). Arguments and results as fn's.
function P.wrap(fn, name)
  local owner = { name = name or "wrapped function" }
  return function(...)
    if not P.enabled or D.hook ~= nil then return fn(...) end
    return run(owner, nil, 0, fn, ...)
  end, owner
end

-- ---- what plans do --------------------------------------------------------------
-- The plans of a module (or of what wrap returned as its second value), one
-- per input layout: {{signature, steps = {...}, stats = {...}} | {signature,
-- refused = why}}, and why planning stopped (off).
function P.info(owner)
  local st = rawget(owner, "_plans")
  local out = { off = st and st.off, plans = {} }
  if not st then return out end
  for _, sig in ipairs(st.order) do
    local p = st.by_sig[sig]
    if p.recorded then
      out.plans[#out.plans + 1] = { signature = sig, recorded = true }
    elseif p.refused then
      out.plans[#out.plans + 1] = { signature = sig, refused = p.refused }
    else
      out.plans[#out.plans + 1] = { signature = sig, steps = p.steps, stats = p.stats, plan = p,
                                    lines = report.steps(p, p.path_of) }
    end
  end
  return out
end

-- A text report of a module's plans: per input layout what was fused and
-- the work of a pass before and after, then (steps ~= false) one line per
-- step. pthcv bench --profile prints it without the steps, whose times its
-- table lists.
function P.describe(owner, steps)
  local info = P.info(owner)
  local lines = {}
  if info.off then lines[#lines + 1] = "plan: off: " .. info.off end
  for _, p in ipairs(info.plans) do
    if p.recorded then
      lines[#lines + 1] = "plan: recorded, made at the next call with this input"
    elseif p.refused then
      lines[#lines + 1] = "plan: none for this input: " .. p.refused
    else
      local s, f = p.stats, p.stats.fused
      lines[#lines + 1] = string.format(
        "plan: %d ops recorded, %d fused steps (%d conv/linear, %d squeeze-excitation, %d cat, %d depthwise+pointwise); "
        .. "fused %d batch "
        .. "norms, %d adds, %d activations; %d convolutions write into a cat, %d channel shuffles in place", s.ops, #p.steps,
        (s.steps.conv or 0) + (s.steps.linear or 0), s.steps.se or 0, s.steps.cat or 0, s.steps.dwpw or 0, f.batch_norm, f.add,
        f.activation, f.in_place, f.shuffle)
      lines[#lines + 1] = string.format("plan: kernel calls %d -> %d, bytes written %.2f -> %.2f MB, copied %.2f -> %.2f MB",
        s.before.kernels, s.after.kernels, s.before.written / 1e6, s.after.written / 1e6, s.before.copied / 1e6,
        s.after.copied / 1e6)
      if steps ~= false then for _, l in ipairs(p.lines) do lines[#lines + 1] = "  " .. l end end
    end
  end
  return table.concat(lines, "\n")
end

return P
