-- lua/pthcv/jit/fuse.lua: convolution + BatchNorm + residual + activation
-- fusion for interpreted graphs, by deferring work instead of matching
-- patterns ahead of time.
--
-- aten::conv2d (and aten::_convolution, aten::linear) return a *pending*
-- value: the call's inputs, not its result. The operators that can fold
-- into the convolution's pack take a pending value as it comes:
--   aten::batch_norm (eval)   folded into the weights, in double precision
--   aten::relu / hardswish / hardtanh / silu / ... (and their _ forms)
--                             the pack's fused activation
--   aten::add / add_          a residual the kernel adds before the activation
--   aten::dim / size          answered from the shapes, nothing computed
-- and every other use computes it (fuse.force): one packed convolution with
-- everything folded, in the kernel's store. So whatever the code's control
-- flow, each value is what torch computes; a pattern only changes how.
-- In-place forms (relu_, add_) update the pending value itself, so every
-- name bound to it sees the change, as torch's in-place semantics demand.
-- Before any tensor is written in place, the pending values reading it are
-- computed (fuse.before_write).
--
-- Packs are made by pthcv.nn's Conv2d and Linear (as the zoo's layers make
-- theirs), once per (weights, bias, BatchNorm tensors, parameters,
-- activation), and cached with weak keys on the weight tensor: a second
-- call reuses them (fuse.stats.packs counts the packs made), and replacing
-- the weights (module:half(), load_state_dict) makes new ones.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local V = require "pthcv.jit.values"

local M = {}
local is_tensor = Tensor.is
local m = Tensor.methods

local Pending = { __name = "Pending" }
Pending.__index = Pending
Pending.__tostring = function(p) return "Pending(" .. p.kind .. ")" end
M.Pending = Pending

local function is_pending(v) return type(v) == "table" and getmetatable(v) == Pending end
M.is_pending = is_pending
V.is_pending = is_pending

M.enabled = true
M.stats = { packs = 0, fused_bn = 0, fused_act = 0, fused_add = 0 }

-- The tensors operators made during a top-level call (pthcv.jit.module
-- releases those its result does not hold when the call returns: LuaJIT's
-- collector does not see their memory, so it would pile up between calls).
local track = { active = false, n = 0, created = {} }
M.track = track
function M.created(t)
  if track.active then
    local n = track.n + 1
    track.n = n
    track.created[n] = t
  end
  return t
end

-- unforced pending values, to compute before their inputs are overwritten
local live = setmetatable({}, { __mode = "k" })

-- ---- packs ------------------------------------------------------------------
local packs = setmetatable({}, { __mode = "k" })   -- weight -> {entry...}

local function same(a, b) return rawequal(a, b) end

local function find_pack(p, key)
  local list = packs[p.w]
  if not list then list = {}; packs[p.w] = list end
  for _, e in ipairs(list) do
    if e.key == key and same(e.b, p.b) and same(e.bn, p.bn and p.bn.w) and same(e.bnb, p.bn and p.bn.b)
       and same(e.mean, p.bn and p.bn.mean) and same(e.var, p.bn and p.bn.var) then
      return e.pack, list
    end
  end
  return nil, list
end

local function act_spec(p)
  if not p.act then return nil end
  return { kind = p.act.kind, alpha = p.act.alpha, beta = p.act.beta }
end

local function pack_of(p)
  local a = p.act
  local key = table.concat({ p.kind, p.stride or "", p.padding or "", p.dilation or "", p.groups or "",
                             a and a.kind or "", a and a.alpha or "", a and a.beta or "", p.bn and p.bn.eps or "" }, "|")
  local pk, list = find_pack(p, key)
  if pk then return pk end
  -- pthcv.nn's own layers make the pack (BatchNorm folded in double
  -- precision, float16 weights kept float16), from the pending call's values
  local nn = require "pthcv.nn"
  if p.kind == "linear" then
    pk = nn.Linear.make_pack(setmetatable({ weight = p.w, bias = p.b }, nn.Linear), act_spec(p))
  else
    local conv = setmetatable({ weight = p.w, bias = p.b, stride = p.stride_l, padding = p.padding_l,
                                dilation = p.dilation_l, groups = p.groups, padding_mode = "zeros" }, nn.Conv2d)
    local bn = p.bn and { running_mean = p.bn.mean, running_var = p.bn.var, weight = p.bn.w, bias = p.bn.b, eps = p.bn.eps }
    pk = nn.Conv2d.make_pack(conv, bn, act_spec(p))
  end
  pk.module = nil
  M.stats.packs = M.stats.packs + 1
  list[#list + 1] = { key = key, b = p.b, bn = p.bn and p.bn.w, bnb = p.bn and p.bn.b,
                      mean = p.bn and p.bn.mean, var = p.bn and p.bn.var, pack = pk }
  return pk
end

-- Drops every cached pack (after weights were changed in place).
function M.clear() packs = setmetatable({}, { __mode = "k" }) end

-- ---- pending values -----------------------------------------------------------
-- The value of v: a pending value computed once (then remembered).
local function force(v)
  if not is_pending(v) then return v end
  local y = rawget(v, "value")
  if y then return y end
  local pk = pack_of(v)
  live[v] = nil
  if v.kind == "linear" then
    y = F.linear_packed(pk, v.x)
  else
    local x = v.x
    if v.conv1d then x = m.unsqueeze(x, 3) end
    y = F.conv2d_packed(pk, x, v.residual)
    if v.conv1d then y = m.squeeze(y, 3) end
  end
  v.value, v.x, v.residual = y, nil, nil
  M.created(y)
  return y
end
M.force = force

-- The output shape of a pending value, without computing it.
local function out_shape(p)
  if p.value then return p.value.shape end
  if p.shape then return p.shape end
  local xs, ws = p.x.shape, p.w.shape
  if p.kind == "linear" then
    local s = { unpack(xs) }
    s[#s] = ws[1]
    p.shape = s
    return s
  end
  local s = { xs[1], ws[1] }
  local nsp = p.conv1d and 1 or 2
  for i = 1, nsp do
    local size, k = xs[2 + i], ws[2 + i]
    local st, pad, dil = p.stride_l[i], p.padding_l, p.dilation_l[i]
    if pad == "same" then s[2 + i] = size
    else
      pad = pad == "valid" and 0 or pad[i]
      s[2 + i] = math.floor((size + 2 * pad - dil * (k - 1) - 1) / st) + 1
    end
  end
  p.shape = s
  return s
end
M.shape = out_shape

local function copy(p)
  local q = {}
  for k, v in pairs(p) do q[k] = v end
  q.shape = nil
  live[q] = true
  return setmetatable(q, Pending)
end

-- Can the pending value still take a BatchNorm / an activation / a residual?
local function open(p) return is_pending(p) and not rawget(p, "value") end

local function ints(l, n)
  if type(l) == "number" then l = { l } end
  local out = {}
  for i = 1, n do out[i] = l[i] or l[1] end
  return out
end

-- aten::conv2d / conv1d / _convolution (not transposed)
function M.convolution(x, w, b, stride, padding, dilation, groups)
  x = force(x)
  if not is_tensor(x) or not is_tensor(w) then error("convolution: input and weight must be tensors", 0) end
  local nd = w.ndim
  if nd ~= 4 and nd ~= 3 then error("convolution: " .. (nd - 2) .. "-d convolutions are not supported (1-d and 2-d are)", 0) end
  if x.ndim ~= nd then error("convolution: expected a " .. nd .. "-d input for a " .. nd .. "-d weight, got " .. tostring(x), 0) end
  local n = nd - 2
  local p = setmetatable({ kind = "conv", x = x, w = w, b = b, groups = groups, conv1d = nd == 3 }, Pending)
  p.stride_l = ints(stride, n)
  p.dilation_l = ints(dilation, n)
  p.padding_l = type(padding) == "string" and padding or ints(padding, n)
  if p.conv1d then
    p.w = m.unsqueeze(w, 3)   -- [out, in, 1, k]: a 2-d convolution over rows of one
    p.w1 = w
    table.insert(p.stride_l, 1, 1); table.insert(p.dilation_l, 1, 1)
    if type(p.padding_l) ~= "string" then table.insert(p.padding_l, 1, 0) end
  end
  p.stride = table.concat(p.stride_l, ",")
  p.dilation = table.concat(p.dilation_l, ",")
  p.padding = type(p.padding_l) == "string" and p.padding_l or table.concat(p.padding_l, ",")
  if p.conv1d then
    -- the unsqueezed weight is a new object per call: cache on the original
    local list = packs[w]
    if list and list.w2 then p.w = list.w2 else packs[w] = list or {}; packs[w].w2 = p.w end
  end
  live[p] = true
  if not M.enabled then return force(p) end
  return p
end

function M.linear(x, w, b)
  x = force(x)
  if not is_tensor(x) or not is_tensor(w) then error("linear: input and weight must be tensors", 0) end
  local p = setmetatable({ kind = "linear", x = x, w = w, b = b }, Pending)
  live[p] = true
  if not M.enabled then return force(p) end
  return p
end

-- aten::batch_norm in eval mode
function M.batch_norm(x, w, b, mean, var, eps)
  if open(x) and x.kind == "conv" and not x.bn and not x.act and not x.residual then
    local q = copy(x)
    q.bn = { w = w, b = b, mean = mean, var = var, eps = eps }
    M.stats.fused_bn = M.stats.fused_bn + 1
    return q
  end
  return F.batch_norm(force(x), mean, var, w, b, false, 0, eps)
end

local FUSABLE = { relu = true, relu6 = true, clamp = true, hardswish = true, hardsigmoid = true, sigmoid = true,
                  tanh = true, silu = true, leaky_relu = true, elu = true, gelu = true, gelu_tanh = true }

-- An activation: folded into a pending value, or fallback(tensor).
function M.activation(x, kind, alpha, beta, fallback)
  if open(x) and not x.act and FUSABLE[kind] then
    local q = copy(x)
    q.act = { kind = kind, alpha = alpha or 0, beta = beta or 0 }
    M.stats.fused_act = M.stats.fused_act + 1
    return q
  end
  return fallback(force(x))
end

-- The in-place form: the pending value itself takes the activation.
function M.activation_(x, kind, alpha, beta, fallback, copy_into)
  if open(x) and not x.act and FUSABLE[kind] then
    x.act = { kind = kind, alpha = alpha or 0, beta = beta or 0 }
    M.stats.fused_act = M.stats.fused_act + 1
    return x
  end
  local t = force(x)
  copy_into(t, fallback(t))
  return x
end

-- a + b with a pending convolution and a same-shape float32 tensor: the
-- residual of the pack; nil when it does not apply (the caller computes).
function M.add(a, b, alpha, inplace)
  if alpha ~= 1 then return nil end
  if not (open(a) and a.kind == "conv" and not a.act and not a.residual) then
    if inplace or not (open(b) and b.kind == "conv" and not b.act and not b.residual) then return nil end
    a, b = b, a
  end
  b = force(b)
  if not is_tensor(b) or b.dtype ~= "float32" then return nil end
  local s, bs = out_shape(a), b.shape
  if #s ~= #bs then return nil end
  for i = 1, #s do if s[i] ~= bs[i] then return nil end end
  local q = inplace and a or copy(a)
  q.residual = b
  M.stats.fused_add = M.stats.fused_add + 1
  return q
end

-- Computes the pending values that read t (or its storage), before t is
-- written in place.
function M.before_write(t)
  for p in pairs(live) do
    if not rawget(p, "value") and ((p.x and m.shares_storage(p.x, t)) or (p.residual and m.shares_storage(p.residual, t))) then
      force(p)
    end
  end
end

-- v with every pending value inside (lists, tuples, dicts) computed.
function M.force_deep(v, depth)
  if is_pending(v) then return force(v) end
  depth = depth or 0
  if type(v) == "table" and depth < 100 then
    local mt = getmetatable(v)
    if mt == V.List or mt == V.Tuple then
      for i = 1, #v do v[i] = M.force_deep(v[i], depth + 1) end
    elseif V.is_dict(v) then
      for _, kv in ipairs(V.Dict.items(v)) do v[kv[1]] = M.force_deep(kv[2], depth + 1) end
    end
  end
  return v
end

return M
