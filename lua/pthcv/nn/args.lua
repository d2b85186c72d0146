-- lua/pthcv/nn/args.lua: argument handling for pthcv.F, the nn layers and
-- the tools that watch ops: torch-style arguments in, one normalized
-- record per op out.
--
--   local A = require "pthcv.nn.args"
--   local a = A.named("max_pool2d", { "kernel_size", "stride", "padding" }, ...)
--   local rec = A.pool2d("max", "max_pool2d", a)
--   -- rec = {kind = "max", kernel_size = {3, 3}, stride = {2, 2}, padding = {1, 1},
--   --        dilation = {1, 1}, ceil_mode = false, count_include_pad = true, divisor_override = 0}
--
-- Contract of a record:
--   * plain data: numbers, strings, booleans and lists of them (an
--     activation record nested in a convolution's); no tensors, no cdata;
--   * every default applied (stride = kernel_size, softmax's implicit dim,
--     clamp's infinite bounds, ...), every pair spelled out as {h, w},
--     every dim counted from 0 and made non-negative;
--   * made once per op call (F), or once per prepare() (layers whose
--     arguments do not depend on the input), then only read: by the
--     kernel call, by the packed-weight cache (through rec.key where there
--     is one) and by tools hooked at pthcv.tensor.dispatch (the ONNX
--     tracer), so none of them parses arguments again;
--   * a record that depends on the input (softmax's implicit dim, an
--     adaptive pool's None sizes) is resolved against it, at the call.
--
-- The parsing primitives (named, pair, dim0, tensor, is_kw) raise errors
-- that name the function and the argument ("pthcv: conv2d: stride must be
-- an int or a pair, got ..."), at level 3: the caller of their caller.
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local values = require "pthcv.reader.values"

local C = core.C
local is_tensor = Tensor.is
local A = {}

-- ---- parsing primitives ----------------------------------------------------------
-- A keyword table: a plain table with a string key (tuples are arrays).
local function is_kw(v)
  if type(v) ~= "table" or is_tensor(v) or getmetatable(v) ~= nil then return false end
  for k in next, v do if type(k) == "string" then return true end end
  return false
end
A.is_kw = is_kw

-- Positional and keyword arguments into one table by name (torch's
-- signature order in names); unknown keywords are errors (usually typos).
function A.named(fname, names, ...)
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

-- The one argument of a function whose only argument may come as a
-- keyword: F.softmax(x, 1) or F.softmax(x, {dim = 1}).
function A.one(v, name)
  if is_kw(v) then return v[name] end
  return v
end

-- (h, w) from an int or a pair.
local function pair(v, fname, what)
  if type(v) == "number" then return v, v end
  if type(v) == "table" and #v == 2 then return v[1], v[2] end
  if type(v) == "table" and #v == 1 then return v[1], v[1] end
  error(string.format("pthcv: %s: %s must be an int or a pair, got %s", fname, what, tostring(v)), 3)
end
A.pair = pair
local function pair_list(v, fname, what)
  local a, b = pair(v, fname, what)
  return { a, b }
end

-- A torch (0-based, negative from the end) dim of x as a 0-based index;
-- extra: dims the op adds (stack, unsqueeze).
function A.dim0(x, d, fname, extra)
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
local dim0 = A.dim0

-- x itself when it is a Tensor, else an error naming the argument.
function A.tensor(x, fname, what)
  if not is_tensor(x) then
    error(string.format("pthcv: %s: %s must be a Tensor, got %s", fname, what or "input", type(x)), 3)
  end
  return x
end

-- A C result (a new reference) as a Tensor, or the C error raised.
function A.result(r, what)
  if r == nil then core.fail(what) end
  return Tensor.wrap(r, true)
end

-- ---- activations -------------------------------------------------------------------
-- The C activation kinds, and the F function each kind runs as.
A.ACT = {
  none = C.PTHCV_ACT_NONE, relu = C.PTHCV_ACT_RELU, relu6 = C.PTHCV_ACT_RELU6,
  leaky_relu = C.PTHCV_ACT_LEAKY_RELU, elu = C.PTHCV_ACT_ELU, sigmoid = C.PTHCV_ACT_SIGMOID,
  tanh = C.PTHCV_ACT_TANH, silu = C.PTHCV_ACT_SILU, hardswish = C.PTHCV_ACT_HARDSWISH,
  hardsigmoid = C.PTHCV_ACT_HARDSIGMOID, gelu = C.PTHCV_ACT_GELU, gelu_tanh = C.PTHCV_ACT_GELU_TANH,
  clamp = C.PTHCV_ACT_CLAMP,
}
local ACT_OP = { gelu_tanh = "F.gelu" }
-- torch's defaults of the kinds with parameters: alpha, beta
local ACT_DEFAULTS = { leaky_relu = { 0.01, 0 }, elu = { 1.0, 0 }, clamp = { -math.huge, math.huge } }

-- An activation record {op, kind, alpha, beta, key} from nil / "none",
-- a kind name, or {kind = "relu" [, alpha] [, beta]} (a layer's act_spec).
-- op: the F function it runs as alone (F.hardtanh for op = "F.hardtanh").
local act_cache = {}
function A.activation(spec, op)
  if spec == nil then spec = "none" end
  if type(spec) == "string" then
    local r = act_cache[spec]
    if r and op == nil then return r end
    spec = { kind = spec }
  end
  local kind = spec.kind
  if not A.ACT[kind] then error("pthcv: unknown activation '" .. tostring(kind) .. "'", 3) end
  local d = ACT_DEFAULTS[kind] or { 0, 0 }
  local alpha, beta = spec.alpha, spec.beta
  if alpha == nil then alpha = d[1] end
  if beta == nil then beta = d[2] end
  local r = { op = op or ACT_OP[kind] or ("F." .. kind), kind = kind, alpha = alpha, beta = beta,
              key = string.format("%s:%.17g:%.17g", kind, alpha, beta) }
  if spec.alpha == nil and spec.beta == nil and op == nil then act_cache[kind] = r end
  return r
end

-- The C struct (pthcv_activation) of an activation record; one per record.
local act_structs = setmetatable({}, { __mode = "k" })
function A.activation_struct(rec)
  local s = act_structs[rec]
  if s == nil then
    s = ffi.new("pthcv_activation")
    s.kind, s.alpha, s.beta = A.ACT[rec.kind], rec.alpha, rec.beta
    act_structs[rec] = s
  end
  return s
end

-- ---- convolution and linear ------------------------------------------------------
A.PAD_MODES = { zeros = C.PTHCV_PAD_ZEROS, reflect = C.PTHCV_PAD_REFLECT,
                replicate = C.PTHCV_PAD_REPLICATE, circular = C.PTHCV_PAD_CIRCULAR }

-- A convolution record from the kernel's size and o = {stride, padding,
-- dilation, groups, padding_mode, act} (torch's forms: ints, pairs,
-- padding "valid" or "same"; "same" needs stride 1 and an even total
-- padding per dim: the kernels pad both sides alike):
-- {kernel_size, stride, padding, dilation = {h, w}, groups, padding_mode,
--  act = activation record, key}.
function A.conv2d(kh, kw, o)
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
  local mode = o.padding_mode or "zeros"
  if not A.PAD_MODES[mode] then error("pthcv: conv2d: unknown padding_mode '" .. tostring(mode) .. "'", 3) end
  local groups = o.groups or 1
  local act = A.activation(o.act)
  return { kernel_size = { kh, kw }, stride = { sh, sw }, padding = { ph, pw }, dilation = { dh, dw },
           groups = groups, padding_mode = mode, act = act,
           key = string.format("%d,%d/%d,%d/%d,%d/%d,%d/%d/%s/%s", kh, kw, sh, sw, ph, pw, dh, dw, groups, mode, act.key) }
end

-- The C parameters (pthcv_conv2d_params) of a convolution record.
function A.conv2d_params(rec)
  local p = ffi.new("pthcv_conv2d_params")
  p.stride[0], p.stride[1] = rec.stride[1], rec.stride[2]
  p.padding[0], p.padding[1] = rec.padding[1], rec.padding[2]
  p.dilation[0], p.dilation[1] = rec.dilation[1], rec.dilation[2]
  p.groups = rec.groups
  p.padding_mode = A.PAD_MODES[rec.padding_mode]
  p.act = A.activation_struct(rec.act)
  return p
end

-- {stride, padding, output_padding, dilation = {h, w}, groups}
function A.conv_transpose2d(o)
  local f = "conv_transpose2d"
  return { stride = pair_list(o.stride or 1, f, "stride"), padding = pair_list(o.padding or 0, f, "padding"),
           output_padding = pair_list(o.output_padding or 0, f, "output_padding"),
           dilation = pair_list(o.dilation or 1, f, "dilation"), groups = o.groups or 1 }
end

-- A linear layer's record: {act = activation record, key}.
function A.linear(act)
  local a = A.activation(act)
  return { act = a, key = a.key }
end

-- ---- pooling -------------------------------------------------------------------------
-- kind "max" | "avg"; o: torch's arguments by name (a missing or empty
-- stride is the kernel size, as torch's):
-- {kind, kernel_size, stride, padding, dilation = {h, w}, ceil_mode,
--  count_include_pad, divisor_override (0: none)}.
function A.pool2d(kind, fname, o)
  local stride = o.stride
  if stride == nil or (type(stride) == "table" and #stride == 0) then stride = o.kernel_size end
  return { kind = kind, kernel_size = pair_list(o.kernel_size, fname, "kernel_size"),
           stride = pair_list(stride, fname, "stride"), padding = pair_list(o.padding or 0, fname, "padding"),
           dilation = pair_list(o.dilation or 1, fname, "dilation"), ceil_mode = o.ceil_mode and true or false,
           count_include_pad = o.count_include_pad == nil or o.count_include_pad == true,
           divisor_override = o.divisor_override or 0 }
end

-- output_size: an int, a pair, or a pair with nil/None for "as the input":
-- {kind, output_size = {h, w}} resolved against x.
function A.adaptive_pool2d(x, kind, fname, output_size)
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
  if oh == nil or oh == values.None then oh = x:size(x.ndim - 1) end
  if ow == nil or ow == values.None then ow = x:size(x.ndim) end
  return { kind = kind, output_size = { oh, ow } }
end

-- ---- the rest of F ---------------------------------------------------------------------
-- {dim, log}: torch's implicit dim when dim is nil (dim=None, deprecated there).
function A.softmax(x, dim, fname)
  if dim == nil then
    local nd = x.ndim
    dim = (nd == 0 or nd == 1 or nd == 3) and 0 or 1
  end
  return { dim = dim0(x, dim, fname), log = fname == "log_softmax" }
end

local INTERP_MODES = { nearest = true, bilinear = true }
-- o: {size, scale_factor, mode, align_corners, recompute_scale_factor} for a
-- 4-d x: {mode, align_corners, size = {oh, ow}, scale = {h, w}} where scale
-- is the factor the source index uses ({0, 0}: in/out, from the sizes), as
-- torch computes them.
function A.interpolate(x, o)
  if x.ndim ~= 4 then error("pthcv: interpolate: expects a 4-d input (N, C, H, W), got " .. tostring(x), 3) end
  local mode = o.mode or "nearest"
  if not INTERP_MODES[mode] then
    error("pthcv: interpolate: mode '" .. tostring(o.mode) .. "' is not supported (nearest, bilinear)", 3)
  end
  if o.align_corners ~= nil and mode == "nearest" then
    error("pthcv: interpolate: align_corners only applies to bilinear", 3)
  end
  local ih, iw = x:size(3), x:size(4)
  local oh, ow, sh, sw
  if o.size ~= nil then
    if o.scale_factor ~= nil then error("pthcv: interpolate: give size or scale_factor, not both", 3) end
    oh, ow = pair(o.size, "interpolate", "size")
    sh, sw = 0, 0
  elseif o.scale_factor ~= nil then
    sh, sw = pair(o.scale_factor, "interpolate", "scale_factor")
    oh, ow = math.floor(ih * sh), math.floor(iw * sw)
    if o.recompute_scale_factor then sh, sw = 0, 0 end
  else
    error("pthcv: interpolate: size or scale_factor is needed", 3)
  end
  return { mode = mode, align_corners = o.align_corners and true or false, size = { oh, ow }, scale = { sh, sw } }
end

local PAD_KINDS = { constant = true, reflect = true, replicate = true, circular = true }
-- pads = {left, right, top, bottom, ...} from the last dim backwards, as
-- torch's; o: {mode, value}: {pads, mode, value}.
function A.pad(pads, o)
  if type(pads) ~= "table" or #pads % 2 ~= 0 then error("pthcv: pad: pads must be a table of pairs", 3) end
  local mode = o.mode or "constant"
  if not PAD_KINDS[mode] then error("pthcv: pad: unknown mode '" .. tostring(o.mode) .. "'", 3) end
  return { pads = { unpack(pads) }, mode = mode, value = o.value or 0 }
end

-- {kind, dims = {...}, keepdim}: dim nil (all), an int or a list.
function A.reduce(x, kind, dim, keepdim)
  local dims = {}
  if dim == nil then
    for d = 0, x.ndim - 1 do dims[#dims + 1] = d end
  elseif type(dim) == "number" then
    dims[1] = dim0(x, dim, kind)
  else
    for i, d in ipairs(dim) do dims[i] = dim0(x, d, kind) end
  end
  return { kind = kind, dims = dims, keepdim = keepdim and true or false }
end

return A
