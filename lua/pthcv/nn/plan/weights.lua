-- lua/pthcv/nn/plan/weights.lua: the weights of fused steps: packs with a
-- batch norm folded in and an activation fused (as Conv2d:make_pack makes
-- them for a Sequential), and the plain float32 matrices of a
-- squeeze-excitation step.
--
-- A step's weights come from its lead op: the pack it ran (its weights kept
-- beside it, or read back from it when they were folded already:
-- F.conv2d_pack_weight), or F.conv2d's / F.linear's weight operands. A
-- batch norm is folded in double precision (pthcv_fold_batchnorm); float16
-- weights (module:half()) are folded from float32 copies and packed as
-- float16 again. Packs are kept per lead (weak keys) and key (the batch
-- norm's tensors, the activation), so plans for other input shapes share
-- them.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local release = require "pthcv.nn.release"

local C = core.C
local M = {}

-- lead pack or weight tensor -> {[key] = pack}
local cache = setmetatable({}, { __mode = "k" })

-- Forgets the fused packs made from weight (its values were changed in place).
function M.forget(weight) cache[weight] = nil end

-- The live C handle of a pack (F.pack_restore remakes an evicted one).
function M.handle(pk)
  local h = pk.handle
  if h == nil then h = F.pack_restore(pk) end
  return h
end

-- (weight, bias) of a chain's lead, as its pack or operands hold them.
local function lead_weights(info)
  if not info.pack then return info.weight, info.bias end
  local pk = info.pack
  if pk.weight then return pk.weight, pk.bias end
  if pk.op ~= "conv2d" then error("pthcv: plan: a linear pack without its weights", 0) end
  M.handle(pk)
  return F.conv2d_pack_weight(pk), pk.bias
end

-- (w, b) with bn folded in: new tensors (the caller's to release), or w, b
-- themselves when bn is nil (fresh = false).
local function fold(w, b, bn)
  if not bn then return w, b, false end
  local f32 = F.f32
  local w32, b32 = f32(w), f32(b)
  local mean, var, g, beta = f32(bn.running_mean), f32(bn.running_var), f32(bn.weight), f32(bn.bias)
  local nw, nb = ffi.new("pthcv_tensor *[1]"), ffi.new("pthcv_tensor *[1]")
  core.check(C.pthcv_fold_batchnorm(w32.ct, b32 and b32.ct or nil, mean.ct, var.ct, g and g.ct or nil,
                                    beta and beta.ct or nil, bn.eps, nw, nb), "fold_batchnorm")
  local fw, fb = Tensor.wrap(nw[0], true), Tensor.wrap(nb[0], true)
  if w.dtype == "float16" then
    local h = fw:to("float16")
    release(fw)
    fw = h
  end
  release(w32, w)
  return fw, fb, true
end

local function act_spec(a)
  if a == nil or a.kind == "none" then return nil end
  return { kind = a.kind, alpha = a.alpha, beta = a.beta }
end

local function key_of(c, act)
  local bn = c.bn
  local parts = { c.kind, act and act.key or "none" }
  if bn then
    for _, t in ipairs { bn.running_mean, bn.running_var, bn.weight or false, bn.bias or false } do
      parts[#parts + 1] = t and tostring(t) or "-"
    end
    parts[#parts + 1] = string.format("%.17g", bn.eps)
  end
  if not c.info.pack then parts[#parts + 1] = c.info.rec.key or "" end
  return table.concat(parts, "|")
end

-- The pack a conv/linear step runs: the lead's own when the step adds no
-- batch norm and no activation to it, else a new one (or the one a plan
-- for another input shape made). Returns pack, made (a pack of the plan's).
function M.chain_pack(c)
  local info = c.info
  local act = c.act
  if info.pack and not c.bn and not act then return info.pack, false end
  act = act or info.rec.act
  local owner = info.pack or info.weight
  local per = cache[owner]
  if not per then per = {}; cache[owner] = per end
  local key = key_of(c, act)
  if per[key] then return per[key], true end
  local w0, b0 = lead_weights(info)
  local read_back = info.pack ~= nil and info.pack.weight == nil   -- w0: a copy made for this
  local w, b, folded = fold(w0, b0, c.bn)
  local pk
  if c.kind == "linear" then
    pk = F.linear_prepare(w, b, act_spec(act))
  else
    local r = info.rec
    pk = F.conv2d_prepare(w, b, { stride = r.stride, padding = r.padding, dilation = r.dilation, groups = r.groups,
                                  padding_mode = r.padding_mode, act = act_spec(act) })
  end
  pk.planned = true
  -- the pack is the only copy of weights folded or read back for it
  if folded or read_back then pk.weight = nil end
  if folded then release(w) end
  if read_back then release(w0) end
  per[key] = pk
  return pk, true
end

-- The (weight, bias) of a squeeze-excitation's layer as contiguous float32
-- (a batch norm folded in).
function M.matrix(c)
  local w0, b0 = lead_weights(c.info)
  local w, b = fold(w0, b0, c.bn)
  return F.f32(w):contiguous(), b and F.f32(b):contiguous()
end

return M
