-- lua/pthcv/nn/functional_transformer.lua: the transformer ops of pthcv.F:
-- attention over the fused kernel pthcv_attention (csrc/kernels/
-- ops_attention.c: scores, softmax and the product with the values in one
-- pass, the score matrix kept in cache), and LayerNorm over the channels of
-- an NCHW map (ops_layernorm.c).
--
--   local y = F.scaled_dot_product_attention(q, k, v)          -- torch 2.x's signature
--   local y = F.attention(q, k, v, { bias = rel_bias, heads_last = true })
--   local z = F.layer_norm_channels(x, weight, bias, 1e-6)     -- ConvNeXt's LayerNorm2d
--
-- q [..., L, D], k [..., S, D], v [..., S, Dv] (any leading dims, shared;
-- strided views whose rows are contiguous are read in place). Each op runs
-- through pthcv.tensor.dispatch with its record ("F.attention": {scale,
-- cosine, heads_last, need_weights}; "F.layer_norm_channels": {eps}).
-- Installed into pthcv.F by functional.lua (this file gets F, it does not
-- require it).
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"

local C = core.C
local check, result, call = A.tensor, A.result, D.call

return function(F)
  local run = F.run

  -- A boolean (or uint8) mask as an additive float mask: masked entries
  -- -inf, the others 0. masked_value: the mask value that masks out (torch's
  -- nn.MultiheadAttention: true; F.scaled_dot_product_attention: false).
  -- A float mask is returned as it is (float32).
  function F.mask_to_bias(mask, masked_value)
    check(mask, "mask_to_bias", "mask")
    if mask.dtype ~= "bool" and mask.dtype ~= "uint8" then return F.f32(mask) end
    local m = mask:contiguous()
    local out = Tensor.zeros(m.shape)
    local src, dst = ffi.cast("const uint8_t *", m:data()), out:data()
    local hit = masked_value and 1 or 0
    for i = 0, m.numel - 1 do
      if (src[i] ~= 0 and 1 or 0) == hit then dst[i] = -math.huge end
    end
    return F.constant(out)
  end

  local function attention_impl(rec, q, k, v, bias, head_scale)
    local p = ffi.new("pthcv_attention_params")
    p.scale, p.cosine, p.heads_last = rec.scale, rec.cosine and 1 or 0, rec.heads_last and 1 or 0
    local w = rec.need_weights and ffi.new("pthcv_tensor *[1]") or nil
    local out = result(C.pthcv_attention(q.ct, k.ct, v.ct, bias and bias.ct or nil, head_scale and head_scale.ct or nil,
                                         p, w), "attention")
    if w then return out, Tensor.wrap(w[0], true) end
    return out
  end
  run.attention = D.op("F.attention", attention_impl)

  -- F.attention(q, k, v [, {bias, scale, cosine, head_scale, heads_last,
  -- need_weights}]) -> out [, weights]
  --   scores = scale * head_scale[h] * q_i . k_j + bias[i, j], softmax over j,
  --   out_i = sum_j p_ij v_j.
  -- bias: float, broadcast to [..., L, S] (-inf masks out). scale: default
  -- 1/sqrt(D). cosine: q and k rows L2-normalised first (Swin V2).
  -- head_scale: one factor per head (dim -3 of q). heads_last: out is
  -- [..., L, H, Dv] (heads merged as torch's out.transpose(-3, -2)).
  -- need_weights: also returns the probabilities [..., L, S].
  function F.attention(q, k, v, o)
    o = o or {}
    check(q, "attention", "query"); check(k, "attention", "key"); check(v, "attention", "value")
    local bias = o.bias and F.f32(check(o.bias, "attention", "bias"))
    local hs = o.head_scale and F.f32(check(o.head_scale, "attention", "head_scale"))
    local rec = { scale = o.scale or 0, cosine = o.cosine and true or false, heads_last = o.heads_last and true or false,
                  need_weights = o.need_weights and true or false }
    return call("F.attention", rec, attention_impl, q, k, v, bias, hs)
  end

  -- F.scaled_dot_product_attention(query, key, value [, attn_mask,
  -- dropout_p, is_causal, scale]) as torch 2.x's: attn_mask boolean (true:
  -- takes part) or float (added); is_causal masks keys after the query's
  -- position; dropout_p is ignored (inference).
  function F.scaled_dot_product_attention(q, k, v, ...)
    local a = A.named("scaled_dot_product_attention", { "attn_mask", "dropout_p", "is_causal", "scale" }, ...)
    check(q, "scaled_dot_product_attention", "query")
    check(k, "scaled_dot_product_attention", "key")
    local bias = a.attn_mask and F.mask_to_bias(a.attn_mask, false)
    if a.is_causal then
      if bias then error("pthcv: scaled_dot_product_attention: give attn_mask or is_causal, not both", 2) end
      local L, S = q:size(q.ndim - 1), k:size(k.ndim - 1)
      bias = Tensor.zeros({ L, S })
      local d = bias:data()
      for i = 0, L - 1 do for j = i + 1, S - 1 do d[i * S + j] = -math.huge end end
      bias = F.constant(bias)
    end
    return F.attention(q, k, v, { bias = bias, scale = a.scale })
  end

  local function layer_norm_channels_impl(rec, x, weight, bias)
    return result(C.pthcv_layer_norm_channels(x.ct, weight and weight.ct or nil, bias and bias.ct or nil, rec.eps),
                  "layer_norm_channels")
  end
  run.layer_norm_channels = D.op("F.layer_norm_channels", layer_norm_channels_impl)

  -- F.layer_norm_channels(x, weight, bias [, eps = 1e-5]): x [N, C, ...]
  -- normalised over dim 1, the same as F.layer_norm over the last dim of
  -- x permuted to channels-last, permuted back (no copies).
  function F.layer_norm_channels(x, weight, bias, eps)
    check(x, "layer_norm_channels")
    return call("F.layer_norm_channels", { eps = eps or 1e-5 }, layer_norm_channels_impl, x, F.f32(weight), F.f32(bias))
  end
end
