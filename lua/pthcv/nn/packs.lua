-- lua/pthcv/nn/packs.lua: prepared (packed) convolution and linear weights,
-- and the functional forms that pack on first use. Installed into pthcv.F
-- by functional.lua: F.conv2d_prepare, F.conv2d_packed, F.conv2d,
-- F.linear_prepare, F.linear_packed, F.linear, F.conv2d_pack_weight,
-- F.pack_bytes, F.pack_free, F.pack_info.
--
-- A pack is a Lua table:
--   {handle = the C object (pthcv_conv2d * | pthcv_linear *, freed by the
--    garbage collector or F.pack_free), op = "conv2d" | "linear",
--    rec = its argument record (pthcv.nn.args: A.conv2d / A.linear, with
--    the fused activation), weight, bias = the tensors it was made from
--    (weight nil when the pack holds the only copy: a folded BatchNorm, or
--    a pack of F.conv2d's cache), module = the layer that made it, if any}.
-- Running a pack dispatches "F.conv2d_packed" / "F.linear_packed" with
-- rec = pack.rec and the pack as the first operand.
--
-- F.conv2d(x, w, ...) and F.linear(x, w, ...) keep one pack per weight
-- tensor, bias and record key (rec.key spells out every resolved argument,
-- the activation's bounds included), so a forward calling them with the
-- same arguments packs once, whatever form the arguments take.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"

local C = core.C
local call, check, result = D.call, A.tensor, A.result

return function(F)
  -- Weights kept as float16 (module:half()) or another float dtype reach the
  -- kernels as float32: converted for the call (packing, normalisation), the
  -- copy dropped afterwards. The caller keeps the result in a local for as
  -- long as its .ct is in use.
  local function f32(t)
    if t and Tensor.is(t) and t.dtype ~= "float32" then return t:float() end
    return t
  end
  F.f32 = f32

  -- Weights for a pack: float32, or float16 kept as float16 (the pack stays
  -- float16 and the kernels convert block by block: module:half()); other
  -- float dtypes packed from a float32 copy.
  local function pack_weight(t)
    if t and Tensor.is(t) and t.dtype ~= "float32" and t.dtype ~= "float16" then return t:float() end
    return t
  end
  F.pack_weight = pack_weight

  -- Every live pack (weak keys): what tools list (half_spec sums their bytes).
  F.pack_info = setmetatable({}, { __mode = "k" })

  -- ---- convolution ---------------------------------------------------------------
  -- A pack around the C object c (nil: the C error raised), freed by free.
  local function new_pack(c, free, op, rec, weight, bias, keep_weight)
    if c == nil then core.fail(op .. "_prepare") end
    local pk = { handle = ffi.gc(c, free), op = op, rec = rec, weight = keep_weight and weight or nil, bias = bias }
    F.pack_info[pk] = true
    return pk
  end

  local function conv2d_pack(weight, bias, rec, keep_weight)
    local w, b = pack_weight(weight), f32(bias)
    return new_pack(C.pthcv_conv2d_prepare(w.ct, b and b.ct or nil, A.conv2d_params(rec)), C.pthcv_conv2d_free,
                    "conv2d", rec, weight, bias, keep_weight)
  end

  local function check_conv_weight(weight, level)
    check(weight, "conv2d", "weight")
    if weight.ndim ~= 4 then
      error("pthcv: conv2d: weight must be 4-d [out, in/groups, kh, kw], got " .. tostring(weight), level)
    end
  end

  -- A prepared (packed) convolution: weight [out, in/groups, kh, kw],
  -- bias or nil, o = {stride, padding, dilation, groups, padding_mode, act}
  -- (pthcv.nn.args's A.conv2d). Freed by the garbage collector.
  function F.conv2d_prepare(weight, bias, o)
    check_conv_weight(weight, 3)
    return conv2d_pack(weight, bias, A.conv2d(weight:size(3), weight:size(4), o or {}), true)
  end

  -- The weights a prepared convolution computes with (a folded BatchNorm
  -- included), as a new float32 tensor: the pack may be their only copy.
  function F.conv2d_pack_weight(pk)
    return result(C.pthcv_conv2d_weight(pk.handle or F.pack_restore(pk)), "conv2d_weight")
  end

  -- Runs a prepared convolution; residual (same shape as the output) is
  -- added before the activation.
  local function conv2d_packed_impl(_, pk, x, residual)
    return result(C.pthcv_conv2d_forward(pk.handle or F.pack_restore(pk), x.ct, residual and residual.ct or nil),
                  "conv2d")
  end
  -- An int8 pack (pthcv.quant: quantized = true) runs itself; F.observer,
  -- when set (pthcv.quant's calibration), sees every float call.
  function F.conv2d_packed(pk, x, residual)
    if pk.quantized then return pk:forward(x, residual) end
    check(x, "conv2d")
    local y = call("F.conv2d_packed", pk.rec, conv2d_packed_impl, pk, x, residual)
    if F.observer then F.observer(pk, x, residual, y) end
    return y
  end

  -- torch.cat({F.conv2d_packed(pk, x) for pk in packs}, 1), each convolution
  -- writing its channels of the one output (pthcv_conv2d_forward_cat: no
  -- copies); int8 packs, an observer or a tracer take them one by one.
  function F.conv2d_packed_cat(packs, x)
    check(x, "conv2d")
    local plain = not F.observer and D.hook == nil
    for _, pk in ipairs(packs) do plain = plain and not pk.quantized end
    if not plain then
      local ys = {}
      for i, pk in ipairs(packs) do ys[i] = F.conv2d_packed(pk, x) end
      return F.cat(ys, 1)
    end
    local arr = ffi.new("pthcv_conv2d *[?]", #packs)
    for i, pk in ipairs(packs) do arr[i - 1] = pk.handle end
    return result(C.pthcv_conv2d_forward_cat(#packs, arr, x.ct), "conv2d_cat")
  end

  -- ---- linear --------------------------------------------------------------------------
  local function linear_pack(weight, bias, rec, keep_weight)
    local w, b = pack_weight(weight), f32(bias)
    return new_pack(C.pthcv_linear_prepare(w.ct, b and b.ct or nil, A.activation_struct(rec.act)),
                    C.pthcv_linear_free, "linear", rec, weight, bias, keep_weight)
  end

  -- A prepared linear layer: weight [out, in], bias or nil, act or nil.
  function F.linear_prepare(weight, bias, act)
    check(weight, "linear", "weight")
    return linear_pack(weight, bias, A.linear(act), true)
  end
  local function linear_packed_impl(_, pk, x)
    return result(C.pthcv_linear_forward(pk.handle or F.pack_restore(pk), x.ct), "linear")
  end
  function F.linear_packed(pk, x)
    if pk.quantized then return pk:forward(x) end
    check(x, "linear")
    local y = call("F.linear_packed", pk.rec, linear_packed_impl, pk, x)
    if F.observer then F.observer(pk, x, nil, y) end
    return y
  end

  -- ---- packs freed and made again --------------------------------------------------------
  -- F.pack_evict(pk): frees a pack's C object while something else does its
  -- work (pthcv.nn.plan's fused packs), when it knows how to make it again
  -- (pk.remake(): a new pack of the same weights, record and fusion: what
  -- Conv2d:make_pack and Linear:make_pack set). Running it afterwards makes
  -- it again first (F.pack_restore). Returns whether it was freed.
  function F.pack_evict(pk)
    if pk.handle == nil or type(pk.remake) ~= "function" then return false end
    local h = ffi.gc(pk.handle, nil)
    if pk.op == "linear" then C.pthcv_linear_free(h) else C.pthcv_conv2d_free(h) end
    pk.handle, pk.evicted = nil, true
    return true
  end

  -- The C object of a pack, made again when F.pack_evict freed it.
  function F.pack_restore(pk)
    if pk.handle ~= nil then return pk.handle end
    if not pk.evicted then error("pthcv: " .. tostring(pk.op) .. ": this pack was freed (F.pack_free)", 2) end
    local fresh = pk.remake()
    pk.handle, fresh.handle, pk.evicted = fresh.handle, nil, nil
    F.pack_info[fresh] = nil
    return pk.handle
  end

  -- ---- what a pack holds -------------------------------------------------------------
  -- Bytes of weights a pack holds: float16 weights (module:half()) stay
  -- float16 in their packs.
  function F.pack_bytes(pk)
    if pk.handle == nil then return 0 end
    if pk.op == "linear" then return tonumber(C.pthcv_linear_weight_bytes(pk.handle)) end
    return tonumber(C.pthcv_conv2d_weight_bytes(pk.handle))
  end

  -- Frees a pack's C object now rather than at the next collection (the
  -- collector does not see its size); the pack cannot run afterwards.
  function F.pack_free(pk)
    if pk.handle == nil then return end
    local h = ffi.gc(pk.handle, nil)
    if pk.op == "linear" then C.pthcv_linear_free(h) else C.pthcv_conv2d_free(h) end
    pk.handle = nil
    F.pack_info[pk] = nil
  end

  -- ---- the functional forms: packs cached per weight tensor -----------------------------
  -- weight -> {[rec.key] = {pack, bias}} (weak keys). The packs keep no
  -- reference to their weight: a value referring to its weak key would
  -- keep the entry alive forever.
  -- A cached pack can be freed while something else does its work
  -- (F.pack_evict: pthcv.nn.plan's fused packs) and made again from its
  -- weight while the weight lives (held weakly, for the same reason).
  local pack_cache = setmetatable({}, { __mode = "k" })
  local WEAK_VALUES = { __mode = "v" }
  local function cached_pack(weight, bias, rec, make)
    local per = pack_cache[weight]
    if not per then per = {}; pack_cache[weight] = per end
    local e = per[rec.key]
    if e and e.bias == bias then return e.pack end
    local pk = make(weight, bias or nil, rec, false)
    local ref = setmetatable({ weight }, WEAK_VALUES)
    pk.remake = function()
      local w = ref[1]
      if not w then error("pthcv: " .. pk.op .. ": a pack's weights were freed; it cannot be made again", 0) end
      return make(w, bias or nil, rec, false)
    end
    per[rec.key] = { pack = pk, bias = bias }
    return pk
  end
  -- Forgets the packs F.conv2d / F.linear made of weight (its values were
  -- changed in place: the next call packs them again).
  function F.pack_forget(weight) pack_cache[weight] = nil end

  -- The pack F.conv2d / F.linear made for (weight, bias, rec), or nil.
  function F.pack_cached(weight, bias, rec)
    local per = pack_cache[weight]
    local e = per and per[rec.key]
    if e and e.bias == (bias or false) then return e.pack end
    return nil
  end

  local function conv2d_impl(rec, x, weight, bias)
    return conv2d_packed_impl(nil, cached_pack(weight, bias or false, rec, conv2d_pack), x, nil)
  end
  -- F.conv2d(x, weight [, bias, stride, padding, dilation, groups]) as torch's,
  -- plus keywords padding_mode and act (a fused activation, e.g. "relu").
  function F.conv2d(x, weight, ...)
    local a = A.named("conv2d", { "bias", "stride", "padding", "dilation", "groups", "padding_mode", "act" }, ...)
    check(x, "conv2d")
    check_conv_weight(weight, 2)
    return call("F.conv2d", A.conv2d(weight:size(3), weight:size(4), a), conv2d_impl, x, weight, a.bias)
  end

  -- F.run.conv2d(rec, x, weight, bias): F.conv2d with its record (A.conv2d)
  -- made once by the caller (pthcv.jit's convolutions)
  F.run.conv2d = function(rec, x, weight, bias)
    check(x, "conv2d")
    check_conv_weight(weight, 3)
    return call("F.conv2d", rec, conv2d_impl, x, weight, bias)
  end

  local function linear_impl(rec, x, weight, bias)
    return linear_packed_impl(nil, cached_pack(weight, bias or false, rec, linear_pack), x)
  end
  -- F.linear(x, weight [, bias [, act]]): x W^T + b over the last dimension.
  function F.linear(x, weight, bias, act)
    check(x, "linear"); check(weight, "linear", "weight")
    return call("F.linear", A.linear(act), linear_impl, x, weight, bias)
  end
  -- F.run.linear(rec, x, weight, bias): F.linear with its record (A.linear) made once
  F.run.linear = function(rec, x, weight, bias) return call("F.linear", rec, linear_impl, x, weight, bias) end
end
