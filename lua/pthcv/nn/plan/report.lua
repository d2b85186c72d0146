-- lua/pthcv/nn/plan/report.lua: what a plan does, counted from the plan
-- itself: the fused steps by kind, and the work of one pass as recorded and
-- as planned (kernel calls, bytes the ops write, bytes of them that are
-- copies), for specs, `pthcv bench --profile` and plan.info.
local Tensor = require "pthcv.tensor"
local match = require "pthcv.nn.plan.match"

local is_tensor = Tensor.is
local M = {}

-- Ops that only move data: their output bytes are copies.
local COPY = { ["F.cat"] = true, ["F.stack"] = true, ["Tensor.contiguous"] = true, ["F.contiguous"] = true,
               ["F.channel_shuffle"] = true, ["Tensor.clone"] = true, ["Tensor.reshape"] = true,
               ["F.reshape"] = true, ["Tensor.flatten"] = true, ["F.flatten"] = true }

-- The bytes op e wrote into new storages (0 for a view or an op that
-- returned its input), and whether it ran a kernel.
local function written(g, e)
  local storages = {}
  for _, d in ipairs(e.args) do
    if d.k == "s" then storages[g.slots[d.s].storage] = true
    elseif d.k == "c" and is_tensor(d.v) and d.v.ct ~= nil then storages[d.v.storage_id] = true
    elseif d.k == "l" then
      for _, x in ipairs(d.items) do if x.k == "s" then storages[g.slots[x.s].storage] = true end end
    end
  end
  local bytes, kernel = 0, false
  for _, s in ipairs(e.out) do
    local list = type(s) == "table" and s.list or { s }
    for _, x in ipairs(list) do
      local sl = x and g.slots[x]
      -- (an op writing in place, record.lua's e.inplace, writes its operand's bytes)
      if sl and sl.producer == e.index and (e.inplace or not storages[sl.storage]) then
        bytes, kernel = bytes + sl.nbytes, true
        storages[sl.storage] = true
      end
    end
  end
  return bytes, kernel
end

-- The plan's counts: {ops, steps = {kind = n}, fused = {...}, before =
-- {kernels, written, copied}, after = {kernels, written, copied}}.
function M.stats(plan)
  local g = plan.g
  local before = { kernels = 0, written = 0, copied = 0 }
  local after = { kernels = 0, written = 0, copied = 0 }
  for i, e in ipairs(g.ops) do
    local bytes, kernel = written(g, e)
    e.kernel = kernel
    if kernel then
      before.kernels, before.written = before.kernels + 1, before.written + bytes
      if COPY[e.op] then before.copied = before.copied + bytes end
      if not plan.action[i] then
        after.kernels, after.written = after.kernels + 1, after.written + bytes
        if COPY[e.op] then after.copied = after.copied + bytes end
      end
    end
  end
  local fused = { batch_norm = 0, add = 0, activation = 0, in_place = 0, se = 0, cat = 0, shuffle = 0 }
  local steps = {}
  for _, st in ipairs(plan.steps) do
    steps[st.kind] = (steps[st.kind] or 0) + 1
    if st.kind == "conv" or st.kind == "linear" or st.kind == "dwpw" then
      for _, c in ipairs(st.kind == "dwpw" and { st.dw, st.pw } or { st }) do
        if c.bn then fused.batch_norm = fused.batch_norm + 1 end
        if c.res and c.res.op ~= c.lead then fused.add = fused.add + 1 end
        if c.act then fused.activation = fused.activation + 1 end
      end
      after.kernels = after.kernels + 1
      if st.into then fused.in_place = fused.in_place + 1   -- its bytes are the cat's
      else after.written = after.written + g.slots[st.out].nbytes end
      -- a pair the kernel does not band writes the depthwise result
      if st.kind == "dwpw" and st.band_rows == 0 then after.written = after.written + g.slots[st.dw.out].nbytes end
    elseif st.kind == "se" then
      fused.se = fused.se + 1
      after.kernels = after.kernels + 1
      after.written = after.written + g.slots[st.out].nbytes
    else
      fused.cat = fused.cat + 1
      if st.shuffle then fused.shuffle = fused.shuffle + 1 end
      for _, p in ipairs(st.parts) do
        if not p.producer then
          after.kernels, after.written, after.copied = after.kernels + 1, after.written + p.bytes, after.copied + p.bytes
        else
          after.written = after.written + p.bytes
        end
      end
    end
  end
  return { ops = #g.ops, steps = steps, fused = fused, before = before, after = after }
end

-- One line per step: where it runs and what it fused.
function M.steps(plan, path_of)
  local lines = {}
  for _, st in ipairs(plan.steps) do
    lines[#lines + 1] = string.format("%-40s %s", path_of(st.module), st.label)
  end
  return lines
end

-- " -> cat slice" of a step writing into a cat's destination.
function M.into_label(into) return into.cat.shuffle and " -> shuffled cat slice" or " -> cat slice" end

-- A step's name: the ops it does, e.g. "conv2d+batch_norm+add+relu" (a
-- chain's ops alone, without where it writes, when ops_only).
function M.label(g, st, ops_only)
  if st.kind == "se" then
    local function act(c) local a = c.act or c.info.rec.act; return a and a.kind or "none" end
    return string.format("squeeze_excitation(%s, %s)", act(st.c1), act(st.c2))
  end
  if st.kind == "dwpw" then
    local s = "depthwise " .. M.label(g, st.dw, true) .. " then pointwise " .. M.label(g, st.pw, true)
              .. (st.band_rows > 0 and string.format(" in %d-row bands", st.band_rows) or "")
    return s .. (st.into and M.into_label(st.into) or "")
  end
  if st.kind == "cat" then
    return string.format("cat%s: %d of %d inputs written in place", st.shuffle and "+channel_shuffle" or "",
                         st.produced, #st.parts)
  end
  local parts = { st.kind == "linear" and "linear" or "conv2d" }
  if st.info.pack and st.info.pack.batch_norm then parts[#parts + 1] = "batch_norm" end
  local a0 = st.info.rec.act
  if a0 and a0.kind ~= "none" then parts[#parts + 1] = a0.kind end
  if st.bn then parts[#parts + 1] = "batch_norm" end
  if st.res and st.res.op ~= st.lead then parts[#parts + 1] = "add" end
  if st.act then parts[#parts + 1] = st.act.kind end
  local s = table.concat(parts, "+")
  if st.into and not ops_only then s = s .. M.into_label(st.into) end
  return s
end

M.out = match.out
return M
