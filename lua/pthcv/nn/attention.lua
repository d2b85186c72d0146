-- lua/pthcv/nn/attention.lua: nn.MultiheadAttention, as torch.nn's, over the
-- fused attention kernel (F.attention).
--
--   local mha = nn.MultiheadAttention(768, 12, { batch_first = true })
--   local y, w = mha(x, x, x)                              -- self-attention, weights averaged
--   local y = mha(q, k, v, { need_weights = false, key_padding_mask = pad })
--
-- Parameters and state_dict keys are torch's: the packed in_proj_weight
-- [3E, E] and in_proj_bias [3E] (or q_proj_weight, k_proj_weight,
-- v_proj_weight when kdim/vdim differ from embed_dim), out_proj (a
-- NonDynamicallyQuantizableLinear), bias_k and bias_v with add_bias_kv.
-- The projections are packed once (eval()); for self-attention one GEMM
-- makes q, k and v, which the kernel reads per head in place, and it writes
-- its result with the heads merged, ready for out_proj.
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local linear = require "pthcv.nn.linear"
local release = require "pthcv.nn.release"

local class, args = base.class, F._args
local M = {}

-- torch's out_proj class (a Linear that dynamic quantisation leaves alone)
local NDQLinear = class("NonDynamicallyQuantizableLinear", linear.Linear,
  { torch_nn = true, torch_class = "torch.nn.modules.linear.NonDynamicallyQuantizableLinear" })
M.NonDynamicallyQuantizableLinear = NDQLinear

-- nn.MultiheadAttention(embed_dim, num_heads [, dropout = 0, bias = true,
-- add_bias_kv = false, add_zero_attn = false, kdim, vdim, batch_first = false])
local MHA = class("MultiheadAttention", nil,
  { torch_nn = true, torch_class = "torch.nn.modules.activation.MultiheadAttention" })
M.MultiheadAttention = MHA

function MHA:__init(embed_dim, num_heads, ...)
  local a = args("MultiheadAttention", { "dropout", "bias", "add_bias_kv", "add_zero_attn", "kdim", "vdim",
                                         "batch_first", "device", "dtype" }, ...)
  if type(embed_dim) ~= "number" or type(num_heads) ~= "number" then
    error("pthcv: MultiheadAttention(embed_dim, num_heads, ...) expected", 3)
  end
  if embed_dim % num_heads ~= 0 then
    error(string.format("pthcv: MultiheadAttention: embed_dim %d must be divisible by num_heads %d", embed_dim,
                        num_heads), 3)
  end
  self.embed_dim, self.num_heads = embed_dim, num_heads
  self.kdim, self.vdim = a.kdim or embed_dim, a.vdim or embed_dim
  self._qkv_same_embed_dim = self.kdim == embed_dim and self.vdim == embed_dim
  self.dropout = a.dropout or 0.0
  self.batch_first = a.batch_first or false
  self.head_dim = embed_dim / num_heads
  if self._qkv_same_embed_dim then
    self:register_parameter("in_proj_weight", Tensor.zeros({ 3 * embed_dim, embed_dim }))
  else
    self:register_parameter("q_proj_weight", Tensor.zeros({ embed_dim, embed_dim }))
    self:register_parameter("k_proj_weight", Tensor.zeros({ embed_dim, self.kdim }))
    self:register_parameter("v_proj_weight", Tensor.zeros({ embed_dim, self.vdim }))
  end
  local bias = a.bias == nil or a.bias
  if bias then self:register_parameter("in_proj_bias", Tensor.zeros({ 3 * embed_dim })) end
  self.out_proj = NDQLinear(embed_dim, embed_dim, { bias = bias })
  if a.add_bias_kv then
    self:register_parameter("bias_k", Tensor.zeros({ 1, 1, embed_dim }))
    self:register_parameter("bias_v", Tensor.zeros({ 1, 1, embed_dim }))
  end
  self.add_zero_attn = a.add_zero_attn or false
end

-- a pickled module (nn.from_module) does not carry the private flag
function MHA.__from_module(m) m._qkv_same_embed_dim = m.kdim == m.embed_dim and m.vdim == m.embed_dim end

-- The projections' packs: the packed q|k|v one for self-attention, made
-- here; one per projection (rows of in_proj_weight, or the separate
-- weights) when a call needs them (cross-attention), so that a model doing
-- self-attention only holds its weights packed once.
function MHA:prepare()
  self._packs = {}
  if self._qkv_same_embed_dim then self._packs.qkv = F.linear_prepare(self.in_proj_weight, self.in_proj_bias) end
end

local PROJ = { q = 0, k = 1, v = 2 }
function MHA:projection(name)
  local pk = self._packs[name]
  if pk then return pk end
  local E, i, b = self.embed_dim, PROJ[name], self.in_proj_bias
  local w = self._qkv_same_embed_dim and self.in_proj_weight:narrow(1, i * E + 1, E) or self[name .. "_proj_weight"]
  pk = F.linear_prepare(w, b and b:narrow(1, i * E + 1, E) or nil)
  self._packs[name] = pk
  return pk
end

-- [N, T, E] as [N, H, T, hd] heads, a view: columns from `col` of rows
-- `row` elements apart
local function heads_view(t, n, len, h, hd, row, col)
  return t:as_strided({ n, h, len, hd }, { len * row, hd, row, 1 }, t.offset + col)
end

-- x [N, T, E] with one more row per batch: row [1, 1, E] (bias_k, bias_v)
-- or zeros (add_zero_attn)
local function append_row(x, row)
  local r = Tensor.zeros({ x:size(1), 1, x:size(3) })
  if row then r = F.add(r, row) end
  return F.cat({ x, r }, 1)
end

-- masks as one additive float bias broadcastable to [N, H, L, S] (or nil)
local function mask_bias(self, attn_mask, key_padding_mask, n, L, S, extra)
  local H = self.num_heads
  local bias
  if attn_mask then
    bias = F.mask_to_bias(attn_mask, true)
    if bias.ndim == 3 then
      if bias:size(1) ~= n * H then
        error(string.format("pthcv: MultiheadAttention: the 3-D attn_mask %s should be [%d, %d, %d]",
                            tostring(attn_mask), n * H, L, S - extra), 3)
      end
      bias = bias:reshape(n, H, L, bias:size(3))
    elseif bias.ndim ~= 2 then
      error("pthcv: MultiheadAttention: attn_mask must be 2-D or 3-D, got " .. tostring(attn_mask), 3)
    end
  end
  if key_padding_mask then
    local kp = F.mask_to_bias(key_padding_mask, true)
    if kp.ndim == 1 then kp = kp:unsqueeze(1) end   -- unbatched: [S]
    if kp.ndim ~= 2 or kp:size(1) ~= n then
      error(string.format("pthcv: MultiheadAttention: key_padding_mask %s should be [%d, %d]",
                          tostring(key_padding_mask), n, S - extra), 3)
    end
    kp = kp:reshape(n, 1, 1, kp:size(2))
    bias = bias and F.add(bias, kp) or kp
  end
  if bias and extra > 0 then bias = F.pad(bias, { 0, extra }) end   -- bias_k / zero_attn keys: not masked
  return bias
end

-- y, weights = mha(query, key, value [, key_padding_mask, need_weights = true,
-- attn_mask, average_attn_weights = true]); query [L, N, E] ([N, L, E] with
-- batch_first, [L, E] unbatched). weights: nil unless need_weights.
function MHA:forward(query, key, value, ...)
  local a = args("MultiheadAttention", { "key_padding_mask", "need_weights", "attn_mask", "average_attn_weights" },
                 ...)
  if key == nil then key = query end
  if value == nil then value = key end
  local self_attn = rawequal(query, key) and rawequal(key, value)
  local batched = query.ndim == 3
  local function batch_first(t)
    if not batched then return t:unsqueeze(1) end
    if self.batch_first then return t end
    return t:transpose(1, 2)
  end
  local q_in = batch_first(query)
  local n, L = q_in:size(1), q_in:size(2)
  local E, H, hd = self.embed_dim, self.num_heads, self.head_dim
  local pk = self._packs
  local q, k, v, qkv, S
  if self_attn and pk.qkv then
    qkv = F.linear_packed(pk.qkv, q_in)                       -- [N, L, 3E]
    q = heads_view(qkv, n, L, H, hd, 3 * E, 0)
    S = L
    if not (self.bias_k or self.add_zero_attn) then
      k, v = heads_view(qkv, n, L, H, hd, 3 * E, E), heads_view(qkv, n, L, H, hd, 3 * E, 2 * E)
    else
      k = F.narrow(qkv, 2, E, E):contiguous()
      v = F.narrow(qkv, 2, 2 * E, E):contiguous()
    end
  else
    local k_in, v_in = batch_first(key), batch_first(value)
    q = heads_view(F.linear_packed(self:projection("q"), q_in), n, L, H, hd, E, 0)
    k, v = F.linear_packed(self:projection("k"), k_in), F.linear_packed(self:projection("v"), v_in)
    S = k:size(2)
  end
  local extra = 0
  if self.bias_k then k, v, extra = append_row(k, self.bias_k), append_row(v, self.bias_v), 1 end
  if self.add_zero_attn then k, v, extra = append_row(k), append_row(v), extra + 1 end
  if k.ndim == 3 then
    S = k:size(2)
    k, v = heads_view(k, n, S, H, hd, E, 0), heads_view(v, n, S, H, hd, E, 0)
  end
  local need = a.need_weights == nil or a.need_weights
  local bias = mask_bias(self, a.attn_mask, a.key_padding_mask, n, L, S, extra)
  local o, w = F.attention(q, k, v, { bias = bias, heads_last = true, need_weights = need })
  release(q); release(k); release(v); release(qkv)
  local y = self.out_proj(o:view(n, L, E))
  release(o)
  if not batched then y = y:squeeze(1)
  elseif not self.batch_first then y = y:transpose(1, 2) end
  if not need then return y, nil end
  if a.average_attn_weights == nil or a.average_attn_weights then
    w = F.div(F.sum(w, 1), H)                                   -- torch: sum over heads / num_heads
  end
  if not batched then w = w:squeeze(1) end
  return y, w
end

return M
