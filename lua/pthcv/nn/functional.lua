-- lua/pthcv/nn/functional.lua: pthcv.F, torch.nn.functional over the C kernels.
--
--   local F = require("pthcv").F
--   local y = F.relu(F.conv2d(x, w, b, 1, 1))          -- stride 1, padding 1
--   local z = F.cat({ y, F.interpolate(y, { scale_factor = 2 }) }, 1)
--
-- Arguments follow torch.nn.functional, positionally, or as a trailing table
-- of keywords: F.max_pool2d(x, 3, 2, 1) == F.max_pool2d(x, 3, { stride = 2, padding = 1 }).
-- DIMENSIONS ARE torch's, COUNTED FROM 0 (F.cat(xs, 1) joins channels;
-- F.flatten(x, 1) keeps the batch), so forward code ports from Python as is;
-- Tensor methods (x:size(1), x:transpose(1, 2)) count from 1 as Lua does.
-- Results are new tensors (or views, for the shape functions); inputs are
-- never modified. Everything runs in float32 with torch's eval semantics.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local C = core.C

local F = {}
local wrap, is_tensor = Tensor.wrap, Tensor.is
local methods = Tensor.methods

-- A C result (a new reference) as a Tensor, or the C error raised.
local function result(r, what)
  if r == nil then core.fail(what) end
  return wrap(r, true)
end
F._result = result

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

local function check_tensor(x, fname, what)
  if not is_tensor(x) then
    error(string.format("pthcv: %s: %s must be a Tensor, got %s", fname, what or "input", type(x)), 3)
  end
  return x
end

-- A keyword table: a table with a string key (tuples are arrays).
local function is_kw(v)
  if type(v) ~= "table" or is_tensor(v) or getmetatable(v) ~= nil then return false end
  for k in next, v do if type(k) == "string" then return true end end
  return false
end

-- Positional and keyword arguments into one table by name; unknown keywords
-- are errors (they are usually typos).
local function args(fname, names, ...)
  local n = select("#", ...)
  local a = {}
  local last = n > 0 and select(n, ...) or nil
  local kwt
  if is_kw(last) then kwt = last; n = n - 1 end
  for i = 1, n do
    if i > #names then error("pthcv: " .. fname .. ": too many arguments", 3) end
    a[names[i]] = (select(i, ...))
  end
  if kwt then
    local known = {}
    for _, nm in ipairs(names) do known[nm] = true end
    for k, v in pairs(kwt) do
      if not known[k] then error("pthcv: " .. fname .. ": unknown argument '" .. tostring(k) .. "'", 3) end
      a[k] = v
    end
  end
  return a
end
F._args = args

-- (h, w) from an int or a pair.
local function pair(v, fname, what)
  if type(v) == "number" then return v, v end
  if type(v) == "table" and #v == 2 then return v[1], v[2] end
  if type(v) == "table" and #v == 1 then return v[1], v[1] end
  error(string.format("pthcv: %s: %s must be an int or a pair, got %s", fname, what, tostring(v)), 3)
end
F._pair = pair

-- A torch (0-based, negative from the end) dim as a 0-based index.
local function dim0(x, d, fname, extra)
  local nd = x.ndim + (extra or 0)
  if type(d) ~= "number" or d % 1 ~= 0 then
    error("pthcv: " .. fname .. ": dim must be an integer, got " .. tostring(d), 3)
  end
  if d < 0 then d = d + nd end
  if d < 0 or d >= nd then
    error(string.format("pthcv: %s: dim %d out of range for a %d-d tensor", fname, d, x.ndim), 3)
  end
  return d
end
F._dim0 = dim0
-- a torch dim as the 1-based dim of Tensor methods
local function dim1(x, d, fname, extra) return dim0(x, d, fname, extra) + 1 end

-- ---- activations -------------------------------------------------------
local ACT = {
  none = C.PTHCV_ACT_NONE, relu = C.PTHCV_ACT_RELU, relu6 = C.PTHCV_ACT_RELU6,
  leaky_relu = C.PTHCV_ACT_LEAKY_RELU, elu = C.PTHCV_ACT_ELU, sigmoid = C.PTHCV_ACT_SIGMOID,
  tanh = C.PTHCV_ACT_TANH, silu = C.PTHCV_ACT_SILU, hardswish = C.PTHCV_ACT_HARDSWISH,
  hardsigmoid = C.PTHCV_ACT_HARDSIGMOID, gelu = C.PTHCV_ACT_GELU, gelu_tanh = C.PTHCV_ACT_GELU_TANH,
  clamp = C.PTHCV_ACT_CLAMP,
}
F.ACT = ACT

-- An activation description {kind = "relu", alpha, beta} as the C struct
-- (nil or "none": no activation).
function F.activation_struct(a)
  local s = ffi.new("pthcv_activation")
  if a == nil then return s end
  if type(a) == "string" then a = { kind = a } end
  local k = ACT[a.kind]
  if not k then error("pthcv: unknown activation '" .. tostring(a.kind) .. "'", 2) end
  s.kind, s.alpha, s.beta = k, a.alpha or 0, a.beta or 0
  return s
end

local function activate(x, fname, kind, alpha, beta)
  check_tensor(x, fname)
  local s = ffi.new("pthcv_activation")
  s.kind, s.alpha, s.beta = kind, alpha or 0, beta or 0
  return result(C.pthcv_activate(x.ct, s), fname)
end

function F.relu(x) return activate(x, "relu", ACT.relu) end
function F.relu6(x) return activate(x, "relu6", ACT.relu6) end
function F.leaky_relu(x, negative_slope)
  if is_kw(negative_slope) then negative_slope = negative_slope.negative_slope end
  return activate(x, "leaky_relu", ACT.leaky_relu, negative_slope or 0.01)
end
function F.elu(x, alpha)
  if is_kw(alpha) then alpha = alpha.alpha end
  return activate(x, "elu", ACT.elu, alpha or 1.0)
end
function F.hardtanh(x, min_val, max_val)
  if is_kw(min_val) then min_val, max_val = min_val.min_val, min_val.max_val end
  return activate(x, "hardtanh", ACT.clamp, min_val or -1, max_val or 1)
end
function F.clamp(x, min, max)
  return activate(x, "clamp", ACT.clamp, min or -math.huge, max or math.huge)
end
function F.sigmoid(x) return activate(x, "sigmoid", ACT.sigmoid) end
function F.tanh(x) return activate(x, "tanh", ACT.tanh) end
function F.silu(x) return activate(x, "silu", ACT.silu) end
function F.hardswish(x) return activate(x, "hardswish", ACT.hardswish) end
function F.hardsigmoid(x) return activate(x, "hardsigmoid", ACT.hardsigmoid) end
-- F.gelu(x [, "tanh" | {approximate = "tanh"}])
function F.gelu(x, approximate)
  if is_kw(approximate) then approximate = approximate.approximate end
  if approximate == nil or approximate == "none" then return activate(x, "gelu", ACT.gelu) end
  if approximate == "tanh" then return activate(x, "gelu", ACT.gelu_tanh) end
  error("pthcv: gelu: approximate must be 'none' or 'tanh', got " .. tostring(approximate), 2)
end
function F.prelu(x, weight)
  check_tensor(x, "prelu"); check_tensor(weight, "prelu", "weight")
  local w = f32(weight)
  return result(C.pthcv_prelu(x.ct, w.ct), "prelu")
end

-- torch's implicit softmax dim (dim=None, deprecated there)
local function softmax_dim(x, dim)
  if dim ~= nil then return dim end
  local nd = x.ndim
  if nd == 0 or nd == 1 or nd == 3 then return 0 end
  return 1
end
function F.softmax(x, dim)
  check_tensor(x, "softmax")
  if is_kw(dim) then dim = dim.dim end
  return result(C.pthcv_softmax(x.ct, dim0(x, softmax_dim(x, dim), "softmax"), 0), "softmax")
end
function F.log_softmax(x, dim)
  check_tensor(x, "log_softmax")
  if is_kw(dim) then dim = dim.dim end
  return result(C.pthcv_softmax(x.ct, dim0(x, softmax_dim(x, dim), "log_softmax"), 1), "log_softmax")
end

function F.dropout(x) return x end -- inference: the identity
F.dropout2d = F.dropout
function F.identity(x) return x end

-- ---- convolution and linear ----------------------------------------------
local PAD_MODES = { zeros = C.PTHCV_PAD_ZEROS, reflect = C.PTHCV_PAD_REFLECT,
                    replicate = C.PTHCV_PAD_REPLICATE, circular = C.PTHCV_PAD_CIRCULAR }
F.PAD_MODES = PAD_MODES

-- What each prepared (packed) convolution or linear layer was made from:
-- pack -> {op = "conv2d"|"linear", weight, bias, options | act}. Exporters
-- (pthcv.onnx) read it to describe a fused step; the packs themselves are
-- opaque C objects. Weak keys: an entry goes with its pack. A convolution
-- with a folded BatchNorm records no weight (keeping the folded copy alive
-- would double the model's memory): F.conv2d_pack_weight reads it back.
F.pack_info = setmetatable({}, { __mode = "k" })

-- The C parameters of a convolution. padding: int, pair, "valid" or "same"
-- (stride 1; the total padding must be even per dim: the kernels pad both
-- sides alike).
function F.conv2d_params(kh, kw, o)
  local p = ffi.new("pthcv_conv2d_params")
  local sh, sw = pair(o.stride or 1, "conv2d", "stride")
  local dh, dw = pair(o.dilation or 1, "conv2d", "dilation")
  local ph, pw
  local padding = o.padding or 0
  if padding == "valid" then
    ph, pw = 0, 0
  elseif padding == "same" then
    if sh ~= 1 or sw ~= 1 then error("pthcv: conv2d: padding='same' needs stride 1", 3) end
    local th, tw = dh * (kh - 1), dw * (kw - 1)
    if th % 2 ~= 0 or tw % 2 ~= 0 then
      error("pthcv: conv2d: padding='same' with an even kernel pads unevenly, which is not supported", 3)
    end
    ph, pw = th / 2, tw / 2
  else
    ph, pw = pair(padding, "conv2d", "padding")
  end
  p.stride[0], p.stride[1] = sh, sw
  p.padding[0], p.padding[1] = ph, pw
  p.dilation[0], p.dilation[1] = dh, dw
  p.groups = o.groups or 1
  local mode = PAD_MODES[o.padding_mode or "zeros"]
  if not mode then error("pthcv: conv2d: unknown padding_mode '" .. tostring(o.padding_mode) .. "'", 3) end
  p.padding_mode = mode
  if o.act then p.act = F.activation_struct(o.act) end
  return p
end

-- A prepared (packed) convolution: weight [out, in/groups, kh, kw] float32,
-- bias or nil, o = {stride, padding, dilation, groups, padding_mode, act}.
-- Freed by the garbage collector.
function F.conv2d_prepare(weight, bias, o)
  check_tensor(weight, "conv2d", "weight")
  if weight.ndim ~= 4 then
    error("pthcv: conv2d: weight must be 4-d [out, in/groups, kh, kw], got " .. tostring(weight), 2)
  end
  local p = F.conv2d_params(weight:size(3), weight:size(4), o or {})
  local w, b = pack_weight(weight), f32(bias)
  local c = C.pthcv_conv2d_prepare(w.ct, b and b.ct or nil, p)
  if c == nil then core.fail("conv2d_prepare") end
  c = ffi.gc(c, C.pthcv_conv2d_free)
  F.pack_info[c] = { op = "conv2d", weight = weight, bias = bias, options = o or {} }
  return c
end

-- The weights a prepared convolution computes with (a folded BatchNorm
-- included), as a new float32 tensor: the pack is their only copy.
function F.conv2d_pack_weight(c)
  return result(C.pthcv_conv2d_weight(c), "conv2d_weight")
end

-- Bytes of weights a pack (conv2d or linear) holds: float16 weights
-- (module:half()) stay float16 in their packs.
function F.pack_bytes(pk)
  local info = F.pack_info[pk]
  if info and info.op == "linear" then return tonumber(C.pthcv_linear_weight_bytes(pk)) end
  return tonumber(C.pthcv_conv2d_weight_bytes(pk))
end

-- Runs a prepared convolution; residual (same shape as the output) is
-- added before the activation.
function F.conv2d_packed(c, x, residual)
  check_tensor(x, "conv2d")
  return result(C.pthcv_conv2d_forward(c, x.ct, residual and residual.ct or nil), "conv2d")
end

-- Packs made by the functional forms, per weight tensor and parameters: a
-- forward calling F.conv2d(x, self.weight, ...) packs once, not per call.
local pack_cache = setmetatable({}, { __mode = "k" })
local function cached_pack(weight, bias, key, make)
  local per = pack_cache[weight]
  if not per then per = {}; pack_cache[weight] = per end
  local e = per[key]
  if e and e.bias == bias then return e.pack end
  local pk = make()
  per[key] = { pack = pk, bias = bias }
  return pk
end

-- F.conv2d(x, weight [, bias, stride, padding, dilation, groups]) as torch's,
-- plus keywords padding_mode and act (a fused activation, e.g. "relu").
function F.conv2d(x, weight, ...)
  local a = args("conv2d", { "bias", "stride", "padding", "dilation", "groups", "padding_mode", "act" }, ...)
  check_tensor(x, "conv2d"); check_tensor(weight, "conv2d", "weight")
  local key = table.concat({ tostring(a.stride), tostring(a.padding), tostring(a.dilation),
    tostring(a.groups), tostring(a.padding_mode), tostring(type(a.act) == "table" and a.act.kind or a.act) }, "|")
  if type(a.stride) == "table" or type(a.padding) == "table" or type(a.dilation) == "table" then
    local function s(v) return type(v) == "table" and table.concat(v, ",") or tostring(v) end
    key = s(a.stride) .. "|" .. s(a.padding) .. "|" .. s(a.dilation) .. "|" .. key
  end
  local pk = cached_pack(weight, a.bias or false, key, function() return F.conv2d_prepare(weight, a.bias, a) end)
  return F.conv2d_packed(pk, x)
end

-- F.conv_transpose2d(x, weight [, bias, stride, padding, output_padding, groups, dilation])
-- weight: [in, out/groups, kh, kw], as torch's.
function F.conv_transpose2d(x, weight, ...)
  local a = args("conv_transpose2d", { "bias", "stride", "padding", "output_padding", "groups", "dilation" }, ...)
  check_tensor(x, "conv_transpose2d"); check_tensor(weight, "conv_transpose2d", "weight")
  local st, pd, op, dl = ffi.new("int32_t[2]"), ffi.new("int32_t[2]"), ffi.new("int32_t[2]"), ffi.new("int32_t[2]")
  st[0], st[1] = pair(a.stride or 1, "conv_transpose2d", "stride")
  pd[0], pd[1] = pair(a.padding or 0, "conv_transpose2d", "padding")
  op[0], op[1] = pair(a.output_padding or 0, "conv_transpose2d", "output_padding")
  dl[0], dl[1] = pair(a.dilation or 1, "conv_transpose2d", "dilation")
  local w, b = f32(weight), f32(a.bias)
  return result(C.pthcv_conv_transpose2d(x.ct, w.ct, b and b.ct or nil, st, pd, op, dl,
                                         a.groups or 1), "conv_transpose2d")
end

-- A prepared linear layer: weight [out, in], bias or nil, act or nil.
function F.linear_prepare(weight, bias, act)
  check_tensor(weight, "linear", "weight")
  local w, b = pack_weight(weight), f32(bias)
  local l = C.pthcv_linear_prepare(w.ct, b and b.ct or nil, F.activation_struct(act))
  if l == nil then core.fail("linear_prepare") end
  l = ffi.gc(l, C.pthcv_linear_free)
  F.pack_info[l] = { op = "linear", weight = weight, bias = bias, act = act }
  return l
end
function F.linear_packed(l, x)
  check_tensor(x, "linear")
  return result(C.pthcv_linear_forward(l, x.ct), "linear")
end
-- F.linear(x, weight [, bias]): x W^T + b over the last dimension.
function F.linear(x, weight, bias, act)
  check_tensor(x, "linear"); check_tensor(weight, "linear", "weight")
  local key = tostring(type(act) == "table" and act.kind or act)
  local pk = cached_pack(weight, bias or false, key, function() return F.linear_prepare(weight, bias, act) end)
  return F.linear_packed(pk, x)
end

-- ---- normalisation (eval mode) ---------------------------------------------
local function opt_ct(t) return t and t.ct or nil end

-- F.batch_norm(x, running_mean, running_var [, weight, bias, training, momentum, eps])
function F.batch_norm(x, running_mean, running_var, ...)
  local a = args("batch_norm", { "weight", "bias", "training", "momentum", "eps" }, ...)
  check_tensor(x, "batch_norm")
  check_tensor(running_mean, "batch_norm", "running_mean"); check_tensor(running_var, "batch_norm", "running_var")
  local mean, var, w, b = f32(running_mean), f32(running_var), f32(a.weight), f32(a.bias)
  return result(C.pthcv_batch_norm(x.ct, mean.ct, var.ct, opt_ct(w), opt_ct(b), a.eps or 1e-5), "batch_norm")
end

-- F.layer_norm(x, normalized_shape [, weight, bias, eps])
function F.layer_norm(x, normalized_shape, ...)
  local a = args("layer_norm", { "weight", "bias", "eps" }, ...)
  check_tensor(x, "layer_norm")
  local n = type(normalized_shape) == "number" and 1 or #normalized_shape
  local w, b = f32(a.weight), f32(a.bias)
  return result(C.pthcv_layer_norm(x.ct, n, opt_ct(w), opt_ct(b), a.eps or 1e-5), "layer_norm")
end

-- F.group_norm(x, num_groups [, weight, bias, eps])
function F.group_norm(x, num_groups, ...)
  local a = args("group_norm", { "weight", "bias", "eps" }, ...)
  check_tensor(x, "group_norm")
  local w, b = f32(a.weight), f32(a.bias)
  return result(C.pthcv_group_norm(x.ct, num_groups, opt_ct(w), opt_ct(b), a.eps or 1e-5), "group_norm")
end

-- ---- pooling ---------------------------------------------------------------
local function pool(x, kind, fname, a)
  check_tensor(x, fname)
  local p = ffi.new("pthcv_pool2d_params")
  p.kind = kind
  p.kernel[0], p.kernel[1] = pair(a.kernel_size, fname, "kernel_size")
  local stride = a.stride
  if stride == nil or (type(stride) == "table" and #stride == 0) then stride = a.kernel_size end
  p.stride[0], p.stride[1] = pair(stride, fname, "stride")
  p.padding[0], p.padding[1] = pair(a.padding or 0, fname, "padding")
  p.dilation[0], p.dilation[1] = pair(a.dilation or 1, fname, "dilation")
  p.ceil_mode = a.ceil_mode and 1 or 0
  p.count_include_pad = (a.count_include_pad == nil or a.count_include_pad) and 1 or 0
  p.divisor_override = a.divisor_override or 0
  return result(C.pthcv_pool2d(x.ct, p), fname)
end

-- F.max_pool2d(x, kernel_size [, stride, padding, dilation, ceil_mode])
function F.max_pool2d(x, ...)
  local a = args("max_pool2d", { "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices" }, ...)
  if a.return_indices then error("pthcv: max_pool2d: return_indices is not supported", 2) end
  return pool(x, C.PTHCV_POOL_MAX, "max_pool2d", a)
end
-- F.avg_pool2d(x, kernel_size [, stride, padding, ceil_mode, count_include_pad, divisor_override])
function F.avg_pool2d(x, ...)
  local a = args("avg_pool2d", { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                 "divisor_override" }, ...)
  return pool(x, C.PTHCV_POOL_AVG, "avg_pool2d", a)
end

-- output_size: int, pair, or a pair with nil/None for "as the input".
local function adaptive(x, kind, fname, output_size)
  check_tensor(x, fname)
  if x.ndim < 2 then error("pthcv: " .. fname .. ": expects a 3-d or 4-d input", 3) end
  local oh, ow
  if type(output_size) == "number" then
    oh, ow = output_size, output_size
  elseif type(output_size) == "table" then
    oh, ow = output_size[1], output_size[2]
    if #output_size == 1 and ow == nil then ow = oh end
  else
    error("pthcv: " .. fname .. ": output_size must be an int or a pair", 3)
  end
  local values = require "pthcv.reader.values"
  if oh == nil or oh == values.None then oh = x:size(x.ndim - 1) end
  if ow == nil or ow == values.None then ow = x:size(x.ndim) end
  return result(C.pthcv_adaptive_pool2d(x.ct, kind, oh, ow), fname)
end
function F.adaptive_avg_pool2d(x, output_size)
  if is_kw(output_size) then output_size = output_size.output_size end
  return adaptive(x, C.PTHCV_POOL_AVG, "adaptive_avg_pool2d", output_size)
end
function F.adaptive_max_pool2d(x, output_size)
  if is_kw(output_size) then output_size = output_size.output_size end
  return adaptive(x, C.PTHCV_POOL_MAX, "adaptive_max_pool2d", output_size)
end

-- ---- resampling and padding --------------------------------------------------
local INTERP = { nearest = C.PTHCV_INTERP_NEAREST, bilinear = C.PTHCV_INTERP_BILINEAR }

-- F.interpolate(x [, size, scale_factor, mode, align_corners, recompute_scale_factor])
-- 4-d input; mode "nearest" or "bilinear". Output size and source indices
-- as torch computes them (the given scale factor is used for the source
-- index unless recompute_scale_factor).
function F.interpolate(x, ...)
  local a = args("interpolate", { "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor" }, ...)
  check_tensor(x, "interpolate")
  if x.ndim ~= 4 then error("pthcv: interpolate: expects a 4-d input (N, C, H, W), got " .. tostring(x), 2) end
  local mode = INTERP[a.mode or "nearest"]
  if not mode then error("pthcv: interpolate: mode '" .. tostring(a.mode) .. "' is not supported (nearest, bilinear)", 2) end
  if a.align_corners ~= nil and (a.mode or "nearest") == "nearest" then
    error("pthcv: interpolate: align_corners only applies to bilinear", 2)
  end
  local ih, iw = x:size(3), x:size(4)
  local oh, ow, sh, sw
  if a.size ~= nil then
    if a.scale_factor ~= nil then error("pthcv: interpolate: give size or scale_factor, not both", 2) end
    oh, ow = pair(a.size, "interpolate", "size")
    sh, sw = 0, 0
  elseif a.scale_factor ~= nil then
    sh, sw = pair(a.scale_factor, "interpolate", "scale_factor")
    oh, ow = math.floor(ih * sh), math.floor(iw * sw)
    if a.recompute_scale_factor then sh, sw = 0, 0 end
  else
    error("pthcv: interpolate: size or scale_factor is needed", 2)
  end
  return result(C.pthcv_interpolate(x.ct, oh, ow, mode, a.align_corners and 1 or 0, sh, sw), "interpolate")
end
F.upsample = F.interpolate

local PAD = { constant = C.PTHCV_PAD_CONSTANT, reflect = C.PTHCV_PAD_REFLECT,
              replicate = C.PTHCV_PAD_REPLICATE, circular = C.PTHCV_PAD_CIRCULAR }
-- F.pad(x, pads [, mode, value]): pads = {left, right, top, bottom, ...}
-- from the last dimension backwards, as torch's.
function F.pad(x, pads, ...)
  local a = args("pad", { "mode", "value" }, ...)
  check_tensor(x, "pad")
  if type(pads) ~= "table" or #pads % 2 ~= 0 then error("pthcv: pad: pads must be a table of pairs", 2) end
  local mode = PAD[a.mode or "constant"]
  if not mode then error("pthcv: pad: unknown mode '" .. tostring(a.mode) .. "'", 2) end
  local p = ffi.new("int64_t[?]", math.max(#pads, 1))
  for i = 1, #pads do p[i - 1] = pads[i] end
  return result(C.pthcv_pad(x.ct, #pads / 2, p, mode, a.value or 0), "pad")
end

-- ---- joining and shapes ------------------------------------------------------
-- F.cat({a, b, ...} [, dim = 0])
function F.cat(xs, dim)
  if is_kw(dim) then dim = dim.dim end
  if type(xs) ~= "table" or #xs == 0 then error("pthcv: cat: expects a non-empty list of tensors", 2) end
  local arr = ffi.new("pthcv_tensor *[?]", #xs)
  for i, x in ipairs(xs) do
    if not is_tensor(x) then error("pthcv: cat: element " .. i .. " is not a tensor", 2) end
    arr[i - 1] = x.ct
  end
  local d = dim0(xs[1], dim or 0, "cat")
  local r = C.pthcv_cat(#xs, arr, d)
  local out = result(r, "cat")
  -- keep the inputs alive until the call returned (arr holds raw pointers)
  local _ = xs
  return out
end
F.concat = F.cat

-- F.stack({a, b, ...} [, dim = 0]): cat of unsqueezed views.
function F.stack(xs, dim)
  if is_kw(dim) then dim = dim.dim end
  local d = dim0(xs[1], dim or 0, "stack", 1)
  local us = {}
  for i, x in ipairs(xs) do us[i] = methods.unsqueeze(x, d + 1) end
  return F.cat(us, d)
end

-- F.flatten(x [, start_dim = 0, end_dim = -1])
function F.flatten(x, start_dim, end_dim)
  check_tensor(x, "flatten")
  if is_kw(start_dim) then start_dim, end_dim = start_dim.start_dim, start_dim.end_dim end
  if x.ndim == 0 then return methods.reshape(x, { 1 }) end
  return methods.flatten(x, dim1(x, start_dim or 0, "flatten"), dim1(x, end_dim or -1, "flatten"))
end
function F.reshape(x, ...) return methods.reshape(check_tensor(x, "reshape"), ...) end
function F.view(x, ...) return methods.view(check_tensor(x, "view"), ...) end
function F.contiguous(x) return methods.contiguous(check_tensor(x, "contiguous")) end
-- F.permute(x, dims): dims 0-based, as torch's
function F.permute(x, ...)
  check_tensor(x, "permute")
  local dims = Tensor.shape_arg(...)
  local d1 = {}
  for i, d in ipairs(dims) do d1[i] = dim1(x, d, "permute") end
  return methods.permute(x, d1)
end
function F.transpose(x, a, b)
  check_tensor(x, "transpose")
  return methods.transpose(x, dim1(x, a, "transpose"), dim1(x, b, "transpose"))
end
-- F.narrow(x, dim, start, length): start 0-based, as torch's
function F.narrow(x, dim, start, length)
  check_tensor(x, "narrow")
  local d = dim1(x, dim, "narrow")
  if start < 0 then start = start + x:size(d) end
  return methods.narrow(x, d, start + 1, length)
end
function F.chunk(x, chunks, dim)
  check_tensor(x, "chunk")
  return methods.chunk(x, chunks, dim1(x, dim or 0, "chunk"))
end
function F.split(x, split_size_or_sections, dim)
  check_tensor(x, "split")
  return methods.split(x, split_size_or_sections, dim1(x, dim or 0, "split"))
end
function F.squeeze(x, dim)
  check_tensor(x, "squeeze")
  if dim == nil then return methods.squeeze(x) end
  return methods.squeeze(x, dim1(x, dim, "squeeze"))
end
function F.unsqueeze(x, dim)
  check_tensor(x, "unsqueeze")
  return methods.unsqueeze(x, dim1(x, dim, "unsqueeze", 1))
end

-- F.channel_shuffle(x, groups): (N, g*k, ...) -> channels interleaved by group,
-- as torch's ChannelShuffle: a view, a transpose, one contiguous copy.
function F.channel_shuffle(x, groups)
  check_tensor(x, "channel_shuffle")
  local shape = x.shape
  local c = shape[2]
  if not c or c % groups ~= 0 then
    error("pthcv: channel_shuffle: " .. tostring(c) .. " channels do not split into " .. groups .. " groups", 2)
  end
  local split = { shape[1], groups, c / groups }
  for i = 3, #shape do split[#split + 1] = shape[i] end
  local y = methods.contiguous(methods.transpose(methods.reshape(x, split), 2, 3))
  return methods.view(y, shape)
end

-- F.pixel_shuffle(x, r): (N, C*r*r, H, W) -> (N, C, H*r, W*r)
function F.pixel_shuffle(x, r)
  check_tensor(x, "pixel_shuffle")
  local n, c, h, w = unpack(x.shape)
  local oc = c / (r * r)
  local y = methods.permute(methods.reshape(x, { n, oc, r, r, h, w }), { 1, 2, 5, 3, 6, 4 })
  return methods.reshape(y, { n, oc, h * r, w * r })
end

-- ---- arithmetic and reductions ---------------------------------------------------
function F.add(a, b) return Tensor.binary(a, b, 0) end
function F.sub(a, b) return Tensor.binary(a, b, 1) end
function F.mul(a, b) return Tensor.binary(a, b, 2) end
function F.div(a, b) return Tensor.binary(a, b, 3) end
function F.maximum(a, b) return Tensor.binary(a, b, 4) end
function F.minimum(a, b) return Tensor.binary(a, b, 5) end

function F.matmul(a, b)
  check_tensor(a, "matmul"); check_tensor(b, "matmul", "other")
  return result(C.pthcv_matmul(a.ct, b.ct), "matmul")
end

local REDUCE = { sum = C.PTHCV_REDUCE_SUM, mean = C.PTHCV_REDUCE_MEAN, amax = C.PTHCV_REDUCE_MAX,
                 amin = C.PTHCV_REDUCE_MIN }
local function reduce(name)
  return function(x, dim, keepdim)
    check_tensor(x, name)
    if is_kw(dim) then dim, keepdim = dim.dim, dim.keepdim end
    local dims
    if dim == nil then
      dims = {}
      for d = 0, x.ndim - 1 do dims[#dims + 1] = d end
    elseif type(dim) == "number" then
      dims = { dim0(x, dim, name) }
    else
      dims = {}
      for i, d in ipairs(dim) do dims[i] = dim0(x, d, name) end
    end
    local arr = ffi.new("int32_t[?]", math.max(#dims, 1))
    for i, d in ipairs(dims) do arr[i - 1] = d end
    return result(C.pthcv_reduce(x.ct, REDUCE[name], #dims, arr, keepdim and 1 or 0), name)
  end
end
for name in pairs(REDUCE) do F[name] = reduce(name) end

-- attention and channels LayerNorm (F.attention, F.scaled_dot_product_attention,
-- F.layer_norm_channels): functional_transformer.lua
require("pthcv.nn.functional_transformer")(F)

return F
