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
--
-- Each function resolves its arguments once into the op's record
-- (lua/pthcv/nn/args.lua) and runs the op through pthcv.tensor.dispatch
-- under the name "F.<function>". F.run.<op>(rec, operands...) runs an op
-- from a record resolved earlier: what layers do with the record they make
-- in prepare(). Shape functions: functional_shape.lua; packed weights
-- (conv2d, linear): packs.lua.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"
local C = core.C

local F = { run = {} }
local run = F.run
local call, op = D.call, D.op
local check, result, named = A.tensor, A.result, A.named

-- Before pthcv.nn.args existed, other modules parsed arguments through
-- these; kept for code written against them.
F._args, F._pair, F._dim0, F._result = A.named, A.pair, A.dim0, A.result
F.ACT, F.PAD_MODES = A.ACT, A.PAD_MODES
-- An activation description {kind = "relu", alpha, beta} as the C struct;
-- a convolution's C parameters from its kernel size and torch's arguments.
function F.activation_struct(a) return A.activation_struct(A.activation(a)) end
function F.conv2d_params(kh, kw, o) return A.conv2d_params(A.conv2d(kh, kw, o)) end

require("pthcv.nn.packs")(F)
local f32 = F.f32

-- F.constant(t): t, declared a constant of the model: a tracer records its
-- values as they are now, even when it was computed in Lua (a grid of
-- anchors, a lookup table). Outside a trace it does nothing.
local function constant_impl(_, t) return t end
function F.constant(t) return call("F.constant", nil, constant_impl, check(t, "constant")) end

-- ---- activations -------------------------------------------------------
-- rec: an activation record (A.activation); its op is the F function's name.
local function activation_impl(rec, x) return result(C.pthcv_activate(x.ct, A.activation_struct(rec)), rec.op) end
function run.activation(rec, x) return call(rec.op, rec, activation_impl, x) end
local run_act = run.activation

local function fixed(kind)
  local rec = A.activation(kind)
  return function(x) check(x, kind); return run_act(rec, x) end
end
F.relu, F.relu6, F.sigmoid, F.tanh = fixed("relu"), fixed("relu6"), fixed("sigmoid"), fixed("tanh")
F.silu, F.hardswish, F.hardsigmoid = fixed("silu"), fixed("hardswish"), fixed("hardsigmoid")
function F.leaky_relu(x, negative_slope)
  check(x, "leaky_relu")
  return run_act(A.activation({ kind = "leaky_relu", alpha = A.one(negative_slope, "negative_slope") }), x)
end
function F.elu(x, alpha)
  check(x, "elu")
  return run_act(A.activation({ kind = "elu", alpha = A.one(alpha, "alpha") }), x)
end
function F.hardtanh(x, min_val, max_val)
  check(x, "hardtanh")
  if A.is_kw(min_val) then min_val, max_val = min_val.min_val, min_val.max_val end
  return run_act(A.activation({ kind = "clamp", alpha = min_val or -1, beta = max_val or 1 }, "F.hardtanh"), x)
end
function F.clamp(x, min, max)
  check(x, "clamp")
  return run_act(A.activation({ kind = "clamp", alpha = min, beta = max }, "F.clamp"), x)
end
-- F.gelu(x [, "tanh" | {approximate = "tanh"}])
local GELU, GELU_TANH = A.activation("gelu"), A.activation("gelu_tanh")
function F.gelu(x, approximate)
  check(x, "gelu")
  approximate = A.one(approximate, "approximate")
  if approximate == nil or approximate == "none" then return run_act(GELU, x) end
  if approximate == "tanh" then return run_act(GELU_TANH, x) end
  error("pthcv: gelu: approximate must be 'none' or 'tanh', got " .. tostring(approximate), 2)
end
local function prelu_impl(_, x, weight)
  local w = f32(weight)
  return result(C.pthcv_prelu(x.ct, w.ct), "prelu")
end
function F.prelu(x, weight)
  check(x, "prelu"); check(weight, "prelu", "weight")
  return call("F.prelu", nil, prelu_impl, x, weight)
end

-- rec: {dim, log} (A.softmax)
local function softmax_impl(rec, x) return result(C.pthcv_softmax(x.ct, rec.dim, rec.log and 1 or 0), "softmax") end
run.softmax, run.log_softmax = op("F.softmax", softmax_impl), op("F.log_softmax", softmax_impl)
function F.softmax(x, dim)
  check(x, "softmax")
  return run.softmax(A.softmax(x, A.one(dim, "dim"), "softmax"), x)
end
function F.log_softmax(x, dim)
  check(x, "log_softmax")
  return run.log_softmax(A.softmax(x, A.one(dim, "dim"), "log_softmax"), x)
end

function F.dropout(x) return x end -- inference: the identity
F.dropout2d = F.dropout
function F.identity(x) return x end

-- ---- transposed convolution ------------------------------------------------
-- rec: A.conv_transpose2d's
local function pair_array(p)
  local a = ffi.new("int32_t[2]")
  a[0], a[1] = p[1], p[2]
  return a
end
local function conv_transpose2d_impl(rec, x, weight, bias)
  local w, b = f32(weight), f32(bias)
  return result(C.pthcv_conv_transpose2d(x.ct, w.ct, b and b.ct or nil, pair_array(rec.stride), pair_array(rec.padding),
                                         pair_array(rec.output_padding), pair_array(rec.dilation), rec.groups),
                "conv_transpose2d")
end
run.conv_transpose2d = op("F.conv_transpose2d", conv_transpose2d_impl)
-- F.conv_transpose2d(x, weight [, bias, stride, padding, output_padding, groups, dilation])
-- weight: [in, out/groups, kh, kw], as torch's.
function F.conv_transpose2d(x, weight, ...)
  local a = named("conv_transpose2d", { "bias", "stride", "padding", "output_padding", "groups", "dilation" }, ...)
  check(x, "conv_transpose2d"); check(weight, "conv_transpose2d", "weight")
  return run.conv_transpose2d(A.conv_transpose2d(a), x, weight, a.bias)
end

-- ---- normalisation (eval mode) ---------------------------------------------
local function opt_ct(t) return t and t.ct or nil end

-- rec: {eps}
local function batch_norm_impl(rec, x, running_mean, running_var, weight, bias)
  local mean, var, w, b = f32(running_mean), f32(running_var), f32(weight), f32(bias)
  return result(C.pthcv_batch_norm(x.ct, mean.ct, var.ct, opt_ct(w), opt_ct(b), rec.eps), "batch_norm")
end
run.batch_norm = op("F.batch_norm", batch_norm_impl)
-- F.batch_norm(x, running_mean, running_var [, weight, bias, training, momentum, eps])
function F.batch_norm(x, running_mean, running_var, ...)
  local a = named("batch_norm", { "weight", "bias", "training", "momentum", "eps" }, ...)
  check(x, "batch_norm")
  check(running_mean, "batch_norm", "running_mean"); check(running_var, "batch_norm", "running_var")
  return run.batch_norm({ eps = a.eps or 1e-5 }, x, running_mean, running_var, a.weight, a.bias)
end

-- rec: {normalized_shape, eps}
local function layer_norm_impl(rec, x, weight, bias)
  local w, b = f32(weight), f32(bias)
  return result(C.pthcv_layer_norm(x.ct, #rec.normalized_shape, opt_ct(w), opt_ct(b), rec.eps), "layer_norm")
end
run.layer_norm = op("F.layer_norm", layer_norm_impl)
-- F.layer_norm(x, normalized_shape [, weight, bias, eps])
function F.layer_norm(x, normalized_shape, ...)
  local a = named("layer_norm", { "weight", "bias", "eps" }, ...)
  check(x, "layer_norm")
  if type(normalized_shape) == "number" then normalized_shape = { normalized_shape } end
  return run.layer_norm({ normalized_shape = { unpack(normalized_shape) }, eps = a.eps or 1e-5 }, x, a.weight, a.bias)
end

-- rec: {num_groups, eps}
local function group_norm_impl(rec, x, weight, bias)
  local w, b = f32(weight), f32(bias)
  return result(C.pthcv_group_norm(x.ct, rec.num_groups, opt_ct(w), opt_ct(b), rec.eps), "group_norm")
end
run.group_norm = op("F.group_norm", group_norm_impl)
-- F.group_norm(x, num_groups [, weight, bias, eps])
function F.group_norm(x, num_groups, ...)
  local a = named("group_norm", { "weight", "bias", "eps" }, ...)
  check(x, "group_norm")
  return run.group_norm({ num_groups = num_groups, eps = a.eps or 1e-5 }, x, a.weight, a.bias)
end

-- ---- pooling ---------------------------------------------------------------
-- The C parameters of a pool record (A.pool2d), one per record.
local pool_structs = setmetatable({}, { __mode = "k" })
local POOL_KIND = { max = C.PTHCV_POOL_MAX, avg = C.PTHCV_POOL_AVG }
local function pool_params(rec)
  local p = pool_structs[rec]
  if p then return p end
  p = ffi.new("pthcv_pool2d_params")
  p.kind = POOL_KIND[rec.kind]
  p.kernel[0], p.kernel[1] = rec.kernel_size[1], rec.kernel_size[2]
  p.stride[0], p.stride[1] = rec.stride[1], rec.stride[2]
  p.padding[0], p.padding[1] = rec.padding[1], rec.padding[2]
  p.dilation[0], p.dilation[1] = rec.dilation[1], rec.dilation[2]
  p.ceil_mode = rec.ceil_mode and 1 or 0
  p.count_include_pad = rec.count_include_pad and 1 or 0
  p.divisor_override = rec.divisor_override
  pool_structs[rec] = p
  return p
end
local function pool_impl(rec, x) return result(C.pthcv_pool2d(x.ct, pool_params(rec)), "pool2d") end
run.max_pool2d, run.avg_pool2d = op("F.max_pool2d", pool_impl), op("F.avg_pool2d", pool_impl)

-- F.max_pool2d(x, kernel_size [, stride, padding, dilation, ceil_mode])
function F.max_pool2d(x, ...)
  local a = named("max_pool2d", { "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices" }, ...)
  if a.return_indices then error("pthcv: max_pool2d: return_indices is not supported", 2) end
  check(x, "max_pool2d")
  return run.max_pool2d(A.pool2d("max", "max_pool2d", a), x)
end
-- F.avg_pool2d(x, kernel_size [, stride, padding, ceil_mode, count_include_pad, divisor_override])
function F.avg_pool2d(x, ...)
  local a = named("avg_pool2d", { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                  "divisor_override" }, ...)
  check(x, "avg_pool2d")
  return run.avg_pool2d(A.pool2d("avg", "avg_pool2d", a), x)
end

-- rec: {kind, output_size} (A.adaptive_pool2d)
local function adaptive_impl(rec, x)
  return result(C.pthcv_adaptive_pool2d(x.ct, POOL_KIND[rec.kind], rec.output_size[1], rec.output_size[2]),
                "adaptive_pool2d")
end
run.adaptive_avg_pool2d = op("F.adaptive_avg_pool2d", adaptive_impl)
run.adaptive_max_pool2d = op("F.adaptive_max_pool2d", adaptive_impl)
function F.adaptive_avg_pool2d(x, output_size)
  check(x, "adaptive_avg_pool2d")
  local o = A.one(output_size, "output_size")
  return run.adaptive_avg_pool2d(A.adaptive_pool2d(x, "avg", "adaptive_avg_pool2d", o), x)
end
function F.adaptive_max_pool2d(x, output_size)
  check(x, "adaptive_max_pool2d")
  local o = A.one(output_size, "output_size")
  return run.adaptive_max_pool2d(A.adaptive_pool2d(x, "max", "adaptive_max_pool2d", o), x)
end

-- ---- resampling and padding --------------------------------------------------
local INTERP = { nearest = C.PTHCV_INTERP_NEAREST, bilinear = C.PTHCV_INTERP_BILINEAR }
-- rec: {mode, align_corners, size, scale} (A.interpolate)
local function interpolate_impl(rec, x)
  return result(C.pthcv_interpolate(x.ct, rec.size[1], rec.size[2], INTERP[rec.mode], rec.align_corners and 1 or 0,
                                    rec.scale[1], rec.scale[2]), "interpolate")
end
run.interpolate = op("F.interpolate", interpolate_impl)
-- F.interpolate(x [, size, scale_factor, mode, align_corners, recompute_scale_factor])
-- 4-d input; mode "nearest" or "bilinear". Output size and source indices
-- as torch computes them (the given scale factor is used for the source
-- index unless recompute_scale_factor).
function F.interpolate(x, ...)
  local a = named("interpolate", { "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor" }, ...)
  check(x, "interpolate")
  return run.interpolate(A.interpolate(x, a), x)
end
F.upsample = F.interpolate

local PAD = { constant = C.PTHCV_PAD_CONSTANT, reflect = C.PTHCV_PAD_REFLECT,
              replicate = C.PTHCV_PAD_REPLICATE, circular = C.PTHCV_PAD_CIRCULAR }
-- rec: {pads, mode, value} (A.pad)
local function pad_impl(rec, x)
  local pads = rec.pads
  local p = ffi.new("int64_t[?]", math.max(#pads, 1))
  for i = 1, #pads do p[i - 1] = pads[i] end
  return result(C.pthcv_pad(x.ct, #pads / 2, p, PAD[rec.mode], rec.value), "pad")
end
run.pad = op("F.pad", pad_impl)
-- F.pad(x, pads [, mode, value]): pads = {left, right, top, bottom, ...}
-- from the last dimension backwards, as torch's.
function F.pad(x, pads, ...)
  local a = named("pad", { "mode", "value" }, ...)
  check(x, "pad")
  return run.pad(A.pad(pads, a), x)
end

-- ---- arithmetic and reductions ---------------------------------------------------
local binary_impl, BINREC = Tensor.binary_impl, Tensor.binary_records
for code, name in pairs { [0] = "add", "sub", "mul", "div", "maximum", "minimum" } do
  local opname, rec = "F." .. name, BINREC[code]
  F[name] = function(a, b)
    if not Tensor.is(a) and not Tensor.is(b) then error("pthcv: arithmetic needs a tensor", 2) end
    return call(opname, rec, binary_impl, a, b)
  end
end

local function matmul_impl(_, a, b) return result(C.pthcv_matmul(a.ct, b.ct), "matmul") end
function F.matmul(a, b)
  check(a, "matmul"); check(b, "matmul", "other")
  return call("F.matmul", nil, matmul_impl, a, b)
end

local REDUCE = { sum = C.PTHCV_REDUCE_SUM, mean = C.PTHCV_REDUCE_MEAN, amax = C.PTHCV_REDUCE_MAX,
                 amin = C.PTHCV_REDUCE_MIN }
-- rec: {kind, dims, keepdim} (A.reduce)
local function reduce_impl(rec, x)
  local dims = rec.dims
  local arr = ffi.new("int32_t[?]", math.max(#dims, 1))
  for i, d in ipairs(dims) do arr[i - 1] = d end
  return result(C.pthcv_reduce(x.ct, REDUCE[rec.kind], #dims, arr, rec.keepdim and 1 or 0), rec.kind)
end
for name in pairs(REDUCE) do
  local opname = "F." .. name
  run[name] = op(opname, reduce_impl)
  F[name] = function(x, dim, keepdim)
    check(x, name)
    if A.is_kw(dim) then dim, keepdim = dim.dim, dim.keepdim end
    return call(opname, A.reduce(x, name, dim, keepdim), reduce_impl, x)
  end
end

require("pthcv.nn.functional_shape")(F)

-- elementwise math, comparisons, where, max/min/sort along a dim, gather
require("pthcv.tensor.math").functional(F)

return F
