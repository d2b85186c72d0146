-- lua/pthcv/jit/layers.lua: aten's convolutions, linear layers and
-- eval-mode batch norms as pthcv.F's ops (F.conv2d, F.linear,
-- F.batch_norm), their argument records made once per call site. What
-- fuses with what (a batch norm folded into the convolution before it, a
-- residual add and an activation in its store) is pthcv.nn.plan's business,
-- as for every other model: the interpreter computes each op as written.
--
-- Records are found again by the identity of the lists a call passes (the
-- interpreter shares literal lists), so a call site allocates nothing once
-- it has run, and the plan's replay compares records by identity.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"

local M = {}
local is_tensor = Tensor.is
local m = Tensor.methods
local run = F.run

local function level(t, k)
  local v = t[k]
  if not v then v = setmetatable({}, { __mode = "k" }); t[k] = v end
  return v
end

local function ints(l, n)
  if type(l) == "number" then l = { l } end
  local out = {}
  for i = 1, n do out[i] = l[i] or l[1] end
  return out
end

-- The F.conv2d record of a call: by the identity of its lists (stride,
-- padding, dilation), groups and kernel size; by the text of its resolved
-- arguments (rec.key) when the lists are new.
local by_lists = setmetatable({}, { __mode = "k" })
local by_key = {}
local function conv_record(stride, padding, dilation, groups, kh, kw, n)
  local l = level(level(level(level(by_lists, stride), padding), dilation), groups)
  local k = kh * 65536 + kw
  local rec = l[k]
  if rec then return rec end
  local st, dl = ints(stride, n), ints(dilation, n)
  local pd = type(padding) == "string" and padding or ints(padding, n)
  if n == 1 then   -- a 1-d convolution runs as a 2-d one over rows of one
    table.insert(st, 1, 1); table.insert(dl, 1, 1)
    if type(pd) ~= "string" then table.insert(pd, 1, 0) end
  end
  rec = A.conv2d(kh, kw, { stride = st, padding = pd, dilation = dl, groups = groups })
  rec = by_key[rec.key] or rec
  by_key[rec.key] = rec
  l[k] = rec
  return rec
end

-- [out, in, 1, k] of a 1-d convolution's weight: made once per weight, as
-- a constant (nn.prepare: not an op of the pass pthcv.nn.plan records)
local conv1d_weights = setmetatable({}, { __mode = "k" })
local function as_2d(_, w) return m.unsqueeze(w, 3) end

-- Forgets the packs made of weight w (changed in place): F.conv2d's and
-- the plan's fused ones, of w and of its 2-d form.
function M.forget(w)
  local W = require "pthcv.nn.plan.weights"
  for _, t in ipairs { w, conv1d_weights[w] or false } do
    if t then F.pack_forget(t); W.forget(t) end
  end
end

-- aten::conv2d / conv1d / _convolution (not transposed)
function M.convolution(x, w, b, stride, padding, dilation, groups)
  if not is_tensor(x) or not is_tensor(w) then error("convolution: input and weight must be tensors", 0) end
  local nd = w.ndim
  if nd ~= 4 and nd ~= 3 then error("convolution: " .. (nd - 2) .. "-d convolutions are not supported (1-d and 2-d are)", 0) end
  if x.ndim ~= nd then error("convolution: expected a " .. nd .. "-d input for a " .. nd .. "-d weight, got " .. tostring(x), 0) end
  if nd == 3 then
    local w2 = conv1d_weights[w]
    if not w2 then w2 = D.call("nn.prepare", nil, as_2d, w); conv1d_weights[w] = w2 end
    local rec = conv_record(stride, padding, dilation, groups, 1, w.shape[3], 1)
    return m.squeeze(run.conv2d(rec, m.unsqueeze(x, 3), w2, b), 3)
  end
  return run.conv2d(conv_record(stride, padding, dilation, groups, w.shape[3], w.shape[4], 2), x, w, b)
end

local LINEAR = A.linear(nil)
function M.linear(x, w, b)
  if not is_tensor(x) or not is_tensor(w) then error("linear: input and weight must be tensors", 0) end
  return run.linear(LINEAR, x, w, b)
end

-- aten::batch_norm in eval mode
local bn_records = {}
function M.batch_norm(x, w, b, mean, var, eps)
  local rec = bn_records[eps]
  if not rec then rec = { eps = eps }; bn_records[eps] = rec end
  A.tensor(x, "batch_norm"); A.tensor(mean, "batch_norm", "running_mean"); A.tensor(var, "batch_norm", "running_var")
  return run.batch_norm(rec, x, mean, var, w, b)
end

return M
