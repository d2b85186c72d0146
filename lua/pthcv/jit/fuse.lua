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

-- Unforced pending values, to compute before their inputs are overwritten:
-- a list emptied when a top-level call ends (pthcv.jit.module).
local live = { n = 0 }
local function add_live(p)
  local n = live.n + 1
  live.n = n
  live[n] = p
end
function M.reset_live()
  for i = 1, live.n do live[i] = nil end
  live.n = 0
end

-- ---- parameter records, interned ------------------------------------------------
-- A convolution's parameters as one shared record {stride_l, padding_l,
-- dilation_l, groups, conv1d}, found again by the identity of the lists a
-- call passes (the interpreter shares literal lists): no table or string
-- is made per call once a site has run.
local by_lists = setmetatable({}, { __mode = "k" })
local by_text = {}

local function ints(l, n)
  if type(l) == "number" then l = { l } end
  local out = {}
  for i = 1, n do out[i] = l[i] or l[1] end
  return out
end

local function level(t, k)
  local v = t[k]
  if not v then v = setmetatable({}, { __mode = "k" }); t[k] = v end
  return v
end

local function conv_params(stride, padding, dilation, groups, n)
  local l3 = level(level(level(by_lists, stride), padding), dilation)
  local rec = l3[groups]
  if rec then return rec end
  local st, dl = ints(stride, n), ints(dilation, n)
  local pd = type(padding) == "string" and padding or ints(padding, n)
  if n == 1 then   -- a 1-d convolution runs as a 2-d one over rows of one
    table.insert(st, 1, 1); table.insert(dl, 1, 1)
    if type(pd) ~= "string" then table.insert(pd, 1, 0) end
  end
  local text = table.concat({ n, table.concat(st, ","), type(pd) == "string" and pd or table.concat(pd, ","),
                              table.concat(dl, ","), groups }, "|")
  rec = by_text[text]
  if not rec then
    rec = { stride_l = st, padding_l = pd, dilation_l = dl, groups = groups, conv1d = n == 1 }
    by_text[text] = rec
  end
  l3[groups] = rec
  return rec
end

local FUSABLE = { relu = true, relu6 = true, clamp = true, hardswish = true, hardsigmoid = true, sigmoid = true,
                  tanh = true, silu = true, leaky_relu = true, elu = true, gelu = true, gelu_tanh = true }
local acts = {}
local function act_record(kind, alpha, beta)
  alpha, beta = alpha or 0, beta or 0
  local a = level(level(acts, kind), alpha)
  local rec = a[beta]
  if not rec then rec = { kind = kind, alpha = alpha, beta = beta }; a[beta] = rec end
  return rec
end

-- ---- packs ------------------------------------------------------------------
-- weight -> {entry...}, one table per loaded archive (M.use_packs, set by
-- pthcv.jit.module for the call that runs): the packs go with the model.
-- (Not one global table with weak keys: a LuaJIT trace may hold a weight
-- as a constant, and would then keep that model's packs alive.)
local packs = setmetatable({}, { __mode = "k" })
function M.new_packs() return setmetatable({}, { __mode = "k" }) end
function M.use_packs(t) local old = packs; packs = t; return old end

-- A pack of weights w (and bias b, conv record, BatchNorm record, activation
-- record), made by pthcv.nn's own layers (BatchNorm folded in double
-- precision, float16 weights kept float16).
local function make_pack(kind, w, b, conv, bn, a)
  local nn = require "pthcv.nn"
  local act = a and { kind = a.kind, alpha = a.alpha, beta = a.beta }
  if kind == "linear" then
    return nn.Linear.make_pack(setmetatable({ weight = w, bias = b }, nn.Linear), act)
  end
  local c = conv
  local layer = setmetatable({ weight = w, bias = b, stride = c.stride_l, padding = c.padding_l,
                               dilation = c.dilation_l, groups = c.groups, padding_mode = "zeros" }, nn.Conv2d)
  local nbn = bn and { running_mean = bn.mean, running_var = bn.var, weight = bn.w, bias = bn.b, eps = bn.eps }
  return nn.Conv2d.make_pack(layer, nbn, act)
end

-- The pack of a pending value, from the running model's cache or made.
local function pack_of(p)
  local list = packs[p.w]
  if not list then list = {}; packs[p.w] = list end
  local bn = p.bn
  for i = 1, #list do
    local e = list[i]
    if e.conv == p.conv and e.act == p.act and e.b == p.b and e.bn == bn then return e.pack end
  end
  local kind, b, conv, act = p.kind, p.b, p.conv, p.act
  local pk = make_pack(kind, p.w, b, conv, bn, act)
  -- the cache's entry must not hold its weak key (LuaJIT's weak tables are
  -- not ephemerons): a pack keeping the weight would keep it, and every
  -- pack made from it, as long as the model lives (each load_state_dict
  -- would add a model's worth). So neither the pack nor its remake (what
  -- F.pack_restore calls after pthcv.nn.plan evicted it; the layer's own
  -- would hold the weight) refers to the weight but through weight_ref.
  -- pk.weight_ref[1]: the weight while the model holds it (a linear pack's
  -- weights cannot be read back from C; the ONNX and Caffe exporters need them)
  local ref = setmetatable({ p.w }, { __mode = "v" })
  pk.module, pk.weight = nil, nil
  pk.weight_ref = ref
  pk.remake = function()
    local w = ref[1]
    if not w then error("pthcv: jit: a pack's weights were freed with their model; it cannot be made again", 0) end
    local fresh = make_pack(kind, w, b, conv, bn, act)
    fresh.module, fresh.weight, fresh.remake = nil, nil, nil
    return fresh
  end
  M.stats.packs = M.stats.packs + 1
  list[#list + 1] = { conv = p.conv, act = p.act, b = p.b, bn = bn, pack = pk }
  return pk
end

-- Drops the cached packs of the running model (after weights were changed
-- in place); module:clear_packs() for a loaded one.
function M.clear() for k in pairs(packs) do packs[k] = nil end end

-- BatchNorm records, one per set of tensors and eps: a pack made with one
-- is found again by identity
local bns = setmetatable({}, { __mode = "k" })
-- (the tensors held weakly: a record must not keep its module's buffers,
-- its own weak keys, alive)
local WEAK_VALUES = { __mode = "v" }
local function bn_record(w, b, mean, var, eps)
  local l = level(level(level(level(bns, mean), var), w or false), b or false)
  local rec = l[eps]
  if not rec then rec = setmetatable({ w = w, b = b, mean = mean, var = var, eps = eps }, WEAK_VALUES); l[eps] = rec end
  return rec
end

-- ---- pending values -----------------------------------------------------------
local function new_pending(kind, x, w, b, conv, bn, act, residual)
  local p = setmetatable({ kind = kind, x = x, w = w, b = b, conv = conv, bn = bn, act = act, residual = residual }, Pending)
  add_live(p)
  return p
end

-- The value of v: a pending value computed once (then remembered).
local function force(v)
  if type(v) ~= "table" or getmetatable(v) ~= Pending then return v end
  local y = v.value
  if y then return y end
  local pk = pack_of(v)
  if v.kind == "linear" then
    y = F.linear_packed(pk, v.x)
  elseif v.conv.conv1d then
    y = m.squeeze(F.conv2d_packed(pk, m.unsqueeze(v.x, 3), v.residual), 3)
  else
    y = F.conv2d_packed(pk, v.x, v.residual)
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
  local c = p.conv
  local s = { xs[1], ws[1] }
  for i = 1, c.conv1d and 1 or 2 do
    local j = c.conv1d and 2 or i   -- the 2-d parameters of a 1-d convolution: the second
    local size, k = xs[2 + i], ws[2 + i]
    local st, pad, dil = c.stride_l[j], c.padding_l, c.dilation_l[j]
    if pad == "same" then s[2 + i] = size
    else
      pad = pad == "valid" and 0 or pad[j]
      s[2 + i] = math.floor((size + 2 * pad - dil * (k - 1) - 1) / st) + 1
    end
  end
  p.shape = s
  return s
end
M.shape = out_shape

-- Can the pending value still take a BatchNorm / an activation / a residual?
local function open(p) return type(p) == "table" and getmetatable(p) == Pending and not p.value end

local conv1d_weights = setmetatable({}, { __mode = "k" })

-- aten::conv2d / conv1d / _convolution (not transposed)
function M.convolution(x, w, b, stride, padding, dilation, groups)
  x = force(x)
  if not is_tensor(x) or not is_tensor(w) then error("convolution: input and weight must be tensors", 0) end
  local nd = w.ndim
  if nd ~= 4 and nd ~= 3 then error("convolution: " .. (nd - 2) .. "-d convolutions are not supported (1-d and 2-d are)", 0) end
  if x.ndim ~= nd then error("convolution: expected a " .. nd .. "-d input for a " .. nd .. "-d weight, got " .. tostring(x), 0) end
  local conv = conv_params(stride, padding, dilation, groups, nd - 2)
  if nd == 3 then
    -- [out, in, 1, k], made once per weight (the pack cache keys on it)
    local w2 = conv1d_weights[w]
    if not w2 then w2 = m.unsqueeze(w, 3); conv1d_weights[w] = w2 end
    w = w2
  end
  local p = new_pending("conv", x, w, b, conv)
  if not M.enabled then return force(p) end
  return p
end

function M.linear(x, w, b)
  x = force(x)
  if not is_tensor(x) or not is_tensor(w) then error("linear: input and weight must be tensors", 0) end
  local p = new_pending("linear", x, w, b)
  if not M.enabled then return force(p) end
  return p
end

-- aten::batch_norm in eval mode
function M.batch_norm(x, w, b, mean, var, eps)
  if open(x) and x.kind == "conv" and not x.bn and not x.act and not x.residual then
    M.stats.fused_bn = M.stats.fused_bn + 1
    return new_pending("conv", x.x, x.w, x.b, x.conv, bn_record(w, b, mean, var, eps))
  end
  return F.batch_norm(force(x), mean, var, w, b, false, 0, eps)
end

-- Can the activation `kind` fold into x? (pthcv.jit.ops.nn's activations)
function M.can_act(x, kind) return open(x) and not x.act and FUSABLE[kind] end

-- x with the activation folded: a new pending value, or x itself (in place).
function M.with_act(x, kind, alpha, beta, inplace)
  M.stats.fused_act = M.stats.fused_act + 1
  local act = act_record(kind, alpha, beta)
  if inplace then x.act = act; return x end
  return new_pending(x.kind, x.x, x.w, x.b, x.conv, x.bn, act, x.residual)
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
  M.stats.fused_add = M.stats.fused_add + 1
  if inplace then a.residual = b; return a end
  return new_pending(a.kind, a.x, a.w, a.b, a.conv, a.bn, a.act, b)
end

-- Computes the pending values that read t (or its storage), before t is
-- written in place; the numbers prim::NumToTensor remembers of t (or of
-- what shares its storage) are forgotten.
function M.before_write(t)
  local numbers = require("pthcv.jit.ops.scalar").numbers
  for n in pairs(numbers) do
    if m.shares_storage(n, t) then numbers[n] = nil end
  end
  for i = 1, live.n do
    local p = live[i]
    if not p.value and ((p.x and m.shares_storage(p.x, t)) or (p.residual and m.shares_storage(p.residual, t))) then
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
