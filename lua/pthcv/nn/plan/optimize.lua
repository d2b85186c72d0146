-- lua/pthcv/nn/plan/optimize.lua: a recorded pass (record.lua) rewritten
-- into fused steps. Which ops fuse is read from the ops themselves
-- (match.lua), so a model gets the same steps however its code was
-- written: nn layers in a Sequential, a custom forward over pthcv.F, the
-- zoo's classes or a TorchScript interpreter calling pthcv's ops.
--
--   local steps, action = optimize.build(g)
--
-- Steps (each one kernel call where the pass ran several):
--   conv    a convolution (or linear layer) and the ops that consume its
--           result alone, in order: an eval-mode batch norm (folded into
--           the weights), an add of a tensor of the output's shape (the
--           residual the kernel adds in its store; convolutions only),
--           an activation (applied in the store). With none of them it is
--           a step only when it writes into a concatenation (below).
--   se      squeeze-excitation: global average pool of x, a 1x1
--           convolution step, another, x times the result
--           (csrc/kernels/se.c).
--   dwpw    a depthwise convolution step (groups = its input's channels,
--           zero padding, stride 1 or 2) whose result only a 1x1
--           convolution step reads, as its input: one call that runs the
--           two band by band of output rows with the depthwise result kept
--           in cache where that pays (csrc/kernels/dwpw.c says when), the
--           pointwise's residual and cat slice as its own step would have
--           them.
--   cat     a concatenation of channels whose inputs made by a
--           convolution step alone are written by it into their slice of
--           the destination (no copy), the others copied there; when a
--           channel shuffle consumes the result alone and every input
--           lies within one group, the destination is the shuffled
--           tensor and each input's slice is every g-th channel of it.
-- In-place ops (record.lua: F.relu_, Tensor.add_) are members as the op
-- they are, on the value they overwrite; replay.lua puts the step's result
-- into that tensor.
-- A step's members are the recorded ops it replaces. Its work happens at
-- exec (the last member, where every operand has been seen; a cat's at the
-- cat itself), its result is handed out at last; the members before last
-- hand out placeholders (the plan's twins: a value's layout, no bytes).
-- action[i]: the step op i belongs to, or nil (the op runs as recorded).
local match = require "pthcv.nn.plan.match"
local Tensor = require "pthcv.tensor"

local is_tensor = Tensor.is
local slot, const = match.slot, match.const
local M = {}

-- dwpw steps are made unless PTHCV_DWPW=0 (for comparisons)
M.dwpw = os.getenv("PTHCV_DWPW") ~= "0"

local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- The layout of an operand description: the slot's, or a constant tensor's.
local function operand_shape(g, d)
  if d.k == "s" then return g.slots[d.s].shape, g.slots[d.s].dtype end
  if d.k == "c" and is_tensor(d.v) then return d.v.shape, d.v.dtype end
  return nil
end

-- ---- convolution and linear chains ---------------------------------------------
-- {kind, lead, info (match.conv/linear), members, bn, res = {op, arg},
-- act (record), out}: the longest run of ops that take the lead's result
-- alone, in the order a kernel's store can apply them, none of them taken
-- by an earlier chain (a residual add goes to the first convolution of the
-- two it adds).
local function chain_from(g, i, next1, taken)
  local e = g.ops[i]
  local info, kind = match.conv(e), "conv"
  if not info then info, kind = match.linear(e), "linear" end
  if not info then return nil end
  local c = { kind = kind, lead = i, info = info, members = { i }, x = { op = i, arg = info.x } }
  if info.residual then c.res = { op = i, arg = info.residual } end
  local acted = info.rec.act ~= nil and info.rec.act.kind ~= "none"
  local tail = match.out(e)
  if not tail then return nil end
  while true do
    local j = next1(tail)
    local f = j and not taken[j] and g.ops[j]
    local fout = f and match.out(f)
    if not fout then break end
    -- an op writing in place joins only when it overwrites the chain's own
    -- value (which nothing else reads: next1), never its other operand
    if f.inplace and slot(f, 1) ~= tail then break end
    local bn = not c.bn and not c.res and not acted and match.batch_norm(f, tail)
    if bn then
      c.bn = bn
    elseif kind == "conv" and not c.res and not acted and match.binary(f, 0) then
      local o = match.other(f, tail)
      local shape, dtype = operand_shape(g, f.args[o])
      if not shape or dtype ~= "float32" or slot(f, o) == tail or not same_shape(shape, g.slots[tail].shape) then break end
      c.res = { op = j, arg = o }
    elseif not acted and match.activation(f) then
      c.act, acted = f.rec, true
    else
      break
    end
    c.members[#c.members + 1] = j
    tail = fout
  end
  c.out = tail
  return c
end

-- The activation record a chain ends with (its own op's, or the one its
-- lead's pack already applies).
function M.chain_act(c) return c.act or c.info.rec.act end

-- ---- squeeze-excitation -------------------------------------------------------
-- pool(x) -> chain c1 (1x1) -> chain c2 (1x1) -> x * result, each value
-- consumed by the next alone.
local function se_from(g, i, next1, chain_at)
  local e = g.ops[i]
  local xs = slot(e, 1)
  if not xs or #g.slots[xs].shape ~= 4 or not match.global_pool(e, xs, g) then return nil end
  local p = match.out(e)
  local cs = {}
  local inp = p
  for k = 1, 2 do
    local j = inp and next1(inp)
    local c = j and chain_at[j]
    if not c or c.kind ~= "conv" or c.res or c.x.op ~= j or slot(g.ops[j], c.x.arg) ~= inp
       or not match.pointwise(c.info, c.info.weight or (c.info.pack and c.info.pack.weight)) then
      return nil
    end
    cs[k], inp = c, c.out
  end
  local m = next1(inp)
  local me = m and g.ops[m]
  if not me or not match.binary(me, 2) or not match.out(me) then return nil end
  local o = match.other(me, inp)
  if not o or slot(me, o) ~= xs then return nil end
  local xshape, sshape = g.slots[xs].shape, g.slots[inp].shape
  if not same_shape(sshape, { xshape[1], xshape[2], 1, 1 }) then return nil end
  local members = { i }
  for k = 1, 2 do for _, j in ipairs(cs[k].members) do members[#members + 1] = j end end
  members[#members + 1] = m
  return { kind = "se", members = members, c1 = cs[1], c2 = cs[2], x = { op = i, arg = 1 }, out = match.out(me) }
end

-- ---- concatenation (and channel shuffle) into one destination ---------------------
-- Each input's view of the destination [N, C, H, W] (contiguous):
-- {shape, stride, offset} in elements.
local function part_views(shape, sizes, groups)
  local n, c, h, w = unpack(shape)
  local hw, views, start = h * w, {}, 0
  for j, cj in ipairs(sizes) do
    if groups then
      local per = c / groups
      local grp = math.floor(start / per)
      if start + cj > (grp + 1) * per then return nil end
      local j0 = start - grp * per
      views[j] = { shape = { n, cj, h, w }, stride = { c * hw, groups * hw, w, 1 }, offset = (j0 * groups + grp) * hw }
    else
      views[j] = { shape = { n, cj, h, w }, stride = { c * hw, hw, w, 1 }, offset = start * hw }
    end
    start = start + cj
  end
  return views
end

local function cat_from(g, i, next1, chain_of_out)
  local e = g.ops[i]
  local items = match.channel_cat(e, g)
  if not items then return nil end
  local out = match.out(e)
  local shape = g.slots[out].shape
  local sizes = {}
  for j, d in ipairs(items) do
    local s, dtype = operand_shape(g, d)
    if not s or #s ~= 4 or dtype ~= "float32" or s[1] ~= shape[1] or s[3] ~= shape[3] or s[4] ~= shape[4] then
      return nil
    end
    sizes[j] = s[2]
  end
  local shuffle = match.channel_shuffle(g, out, next1)
  local views = shuffle and part_views(shape, sizes, shuffle.groups)
  if not views then shuffle, views = nil, part_views(shape, sizes, nil) end
  local st = { kind = "cat", members = { i }, exec = i, parts = {}, shape = shape, shuffle = shuffle }
  local produced = 0
  for j, d in ipairs(items) do
    local part = { view = views[j], item = j }
    local c = d.k == "s" and chain_of_out[d.s]
    local sl = d.k == "s" and g.slots[d.s]
    if c and c.kind == "conv" and not sl.escapes and #sl.uses == 1 then
      part.producer = c
      produced = produced + 1
    end
    st.parts[j] = part
  end
  if produced == 0 and not shuffle then return nil end
  if shuffle then for _, j in ipairs(shuffle.ops) do st.members[#st.members + 1] = j end end
  st.out = match.out(g.ops[st.members[#st.members]])
  return st
end

-- ---- depthwise then pointwise ---------------------------------------------------
local function dwpw_from(g, c1, next1, chain_at, taken)
  if taken[c1] or c1.kind ~= "conv" or c1.res or c1.into then return nil end
  local r = c1.info.rec
  local xs = slot(g.ops[c1.x.op], c1.x.arg)
  local shape = xs and g.slots[xs].shape
  if not shape or #shape ~= 4 or not r.groups or r.groups < 2 or shape[2] ~= r.groups or r.padding_mode ~= "zeros"
     or r.stride[1] ~= r.stride[2] or r.stride[1] > 2 or r.dilation[1] ~= 1 or r.dilation[2] ~= 1 then
    return nil
  end
  local j = next1(c1.out)
  local c2 = j and chain_at[j]
  if not c2 or taken[c2] or c2.kind ~= "conv" or c2.x.op ~= j or slot(g.ops[j], c2.x.arg) ~= c1.out
     or not match.pointwise(c2.info) then
    return nil
  end
  local members = {}
  for _, c in ipairs { c1, c2 } do for _, k in ipairs(c.members) do members[#members + 1] = k end end
  return { kind = "dwpw", dw = c1, pw = c2, members = members, x = c1.x, res = c2.res, into = c2.into, out = c2.out }
end

-- ---- the plan's steps -------------------------------------------------------------
function M.build(g)
  local function next1(s)
    local sl = g.slots[s]
    if sl.escapes or #sl.uses ~= 1 or sl.uses[1].item then return nil end
    return sl.uses[1].op
  end
  local chains, chain_at, chain_of_out, in_chain = {}, {}, {}, {}
  for i = 1, #g.ops do
    if not in_chain[i] then
      local c = chain_from(g, i, next1, in_chain)
      if c then
        chains[#chains + 1], chain_at[i], chain_of_out[c.out] = c, c, c
        for _, j in ipairs(c.members) do in_chain[j] = c end
      end
    end
  end
  local steps, taken = {}, {}
  for i = 1, #g.ops do
    local e = g.ops[i]
    if (e.op == "F.adaptive_avg_pool2d" or e.op == "F.mean") and not in_chain[i] then
      local se = se_from(g, i, next1, chain_at)
      if se then
        steps[#steps + 1] = se
        taken[se.c1], taken[se.c2] = true, true
      end
    end
  end
  for i = 1, #g.ops do
    local st = cat_from(g, i, next1, chain_of_out)
    if st then
      steps[#steps + 1] = st
      st.produced = 0
      for _, p in ipairs(st.parts) do
        if p.producer and not taken[p.producer] then
          p.producer.into = { cat = st, part = p }
          st.produced = st.produced + 1
        else
          p.producer = nil
        end
      end
    end
  end
  for _, c in ipairs(chains) do
    local st = M.dwpw and dwpw_from(g, c, next1, chain_at, taken)
    if st then
      steps[#steps + 1] = st
      taken[st.dw], taken[st.pw] = true, true
      if st.into then st.into.part.producer = st end
    end
  end
  for _, c in ipairs(chains) do
    if not taken[c] and (#c.members > 1 or c.into) then steps[#steps + 1] = c end
  end
  -- members, exec and last; what each op does
  local action = {}
  for _, st in ipairs(steps) do
    table.sort(st.members)
    st.last = st.members[#st.members]
    st.exec = st.exec or st.last
    for _, j in ipairs(st.members) do
      assert(action[j] == nil, "pthcv: plan: op in two steps")
      action[j] = st
    end
  end
  table.sort(steps, function(a, b) return a.exec < b.exec end)
  return steps, action
end

return M
