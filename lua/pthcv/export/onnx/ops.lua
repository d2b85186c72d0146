-- lua/pthcv/export/onnx/ops.lua: how each traced op is written as ONNX (opset 10).
--
-- handlers["F.relu"], handlers["Tensor.view"], ...: function(g, args, res)
-- called after the op ran, with its arguments (args.n of them) and results;
-- it appends nodes to the graph g (lua/pthcv/export/onnx/init.lua) and names the
-- result tensor with g:output(res[1], name). Shapes are the ones the traced
-- pass produced, so reshapes are written with constant target shapes.
local core = require "pthcv.core"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"

local C = core.C
local args_of, pair = F._args, F._pair
local M = { handlers = {} }
local H = M.handlers

local function refuse(what) error("pthcv: export_onnx: " .. what, 0) end

local function is_kw(v)
  if type(v) ~= "table" or Tensor.is(v) or getmetatable(v) ~= nil then return false end
  for k in next, v do if type(k) == "string" then return true end end
  return false
end

-- a 0-based dim (negative from the end) of an nd-dim tensor
local function dim0(d, nd) if d < 0 then d = d + nd end return d end
-- a 1-based dim of Tensor methods (negative from the end) as 0-based
local function dim1to0(d, nd) if d < 0 then return d + nd end return d - 1 end

-- ---- activations -----------------------------------------------------------------
local ACT_NAME = {}
for name, v in pairs(F.ACT) do ACT_NAME[tonumber(v)] = name end

local SQRT2, SQRT_2_PI = math.sqrt(2), math.sqrt(2 / math.pi)

-- The nodes of activation kind (a name) on value x; returns the result's name.
local function activation(g, kind, alpha, beta, x)
  if kind == "none" then return x end
  if kind == "relu" then return g:op("Relu", { x }) end
  if kind == "relu6" then return g:op("Clip", { x }, { { "min", "float", 0 }, { "max", "float", 6 } }) end
  if kind == "clamp" then
    local attrs = {}
    if alpha > -math.huge then attrs[#attrs + 1] = { "min", "float", alpha } end
    if beta < math.huge then attrs[#attrs + 1] = { "max", "float", beta } end
    return g:op("Clip", { x }, attrs)
  end
  if kind == "leaky_relu" then return g:op("LeakyRelu", { x }, { { "alpha", "float", alpha } }) end
  if kind == "elu" then return g:op("Elu", { x }, { { "alpha", "float", alpha } }) end
  if kind == "sigmoid" then return g:op("Sigmoid", { x }) end
  if kind == "tanh" then return g:op("Tanh", { x }) end
  if kind == "silu" then return g:op("Mul", { x, g:op("Sigmoid", { x }) }) end
  local HS = { { "alpha", "float", 1 / 6 }, { "beta", "float", 0.5 } }
  if kind == "hardsigmoid" then return g:op("HardSigmoid", { x }, HS) end
  -- HardSwish is opset 14, which OpenCV 4.6 does not read
  if kind == "hardswish" then return g:op("Mul", { x, g:op("HardSigmoid", { x }, HS) }) end
  if kind == "gelu" then -- 0.5 x (1 + erf(x / sqrt 2))
    local e = g:op("Erf", { g:op("Div", { x, g:scalar(SQRT2) }) })
    return g:op("Mul", { g:op("Mul", { x, g:op("Add", { e, g:scalar(1) }) }), g:scalar(0.5) })
  end
  if kind == "gelu_tanh" then -- 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    local x3 = g:op("Mul", { g:op("Mul", { x, x }), x })
    local inner = g:op("Mul", { g:op("Add", { x, g:op("Mul", { x3, g:scalar(0.044715) }) }), g:scalar(SQRT_2_PI) })
    local t = g:op("Add", { g:op("Tanh", { inner }), g:scalar(1) })
    return g:op("Mul", { g:op("Mul", { x, t }), g:scalar(0.5) })
  end
  refuse("activation '" .. tostring(kind) .. "' has no ONNX form")
end

-- a pthcv_activation struct's fields
local function act_fields(s) return ACT_NAME[tonumber(s.kind)], tonumber(s.alpha), tonumber(s.beta) end

local function unary(kind, alpha, beta)
  return function(g, a, r) g:output(r[1], activation(g, kind, alpha, beta, g:input(a[1]))) end
end
H["F.relu"], H["F.relu6"], H["F.sigmoid"], H["F.tanh"] = unary("relu"), unary("relu6"), unary("sigmoid"), unary("tanh")
H["F.silu"], H["F.hardswish"], H["F.hardsigmoid"] = unary("silu"), unary("hardswish"), unary("hardsigmoid")
H["F.leaky_relu"] = function(g, a, r)
  local s = a[2]
  if is_kw(s) then s = s.negative_slope end
  unary("leaky_relu", s or 0.01)(g, a, r)
end
H["F.elu"] = function(g, a, r)
  local al = a[2]
  if is_kw(al) then al = al.alpha end
  unary("elu", al or 1.0)(g, a, r)
end
H["F.hardtanh"] = function(g, a, r)
  local lo, hi = a[2], a[3]
  if is_kw(lo) then lo, hi = lo.min_val, lo.max_val end
  unary("clamp", lo or -1, hi or 1)(g, a, r)
end
H["F.clamp"] = function(g, a, r) unary("clamp", a[2] or -math.huge, a[3] or math.huge)(g, a, r) end
H["F.gelu"] = function(g, a, r)
  local ap = a[2]
  if is_kw(ap) then ap = ap.approximate end
  unary(ap == "tanh" and "gelu_tanh" or "gelu")(g, a, r)
end
H["F.prelu"] = function(g, a, r)
  local x, w = a[1], a[2]
  local slope = w
  if w.numel > 1 and x.ndim > 2 then -- per channel (dim 1): [C, 1, 1, ...]
    local shape = { w.numel }
    for _ = 3, x.ndim do shape[#shape + 1] = 1 end
    slope = w:contiguous():reshape(shape)
  end
  g:output(r[1], g:op("PRelu", { g:input(x), g:input(slope, "slope") }))
end

-- ---- convolution and linear ----------------------------------------------------------
local PAD_ONNX = { [tonumber(C.PTHCV_PAD_REFLECT)] = "reflect", [tonumber(C.PTHCV_PAD_REPLICATE)] = "edge" }

-- Conv (+ Add residual) (+ activation) from the resolved C parameters p.
local function conv_nodes(g, x_t, weight, bias, p, residual_t)
  local x = g:input(x_t)
  local ph, pw = p.padding[0], p.padding[1]
  local mode = tonumber(p.padding_mode)
  if mode ~= tonumber(C.PTHCV_PAD_ZEROS) and (ph > 0 or pw > 0) then
    if not PAD_ONNX[mode] then refuse("conv2d with padding_mode='circular' has no ONNX form") end
    x = g:op("Pad", { x }, { { "mode", "string", PAD_ONNX[mode] }, { "pads", "ints", { 0, 0, ph, pw, 0, 0, ph, pw } } })
    ph, pw = 0, 0
  end
  local inputs = { x, g:input(weight, "weight") }
  if bias then inputs[3] = g:input(bias, "bias") end
  local y = g:op("Conv", inputs, {
    { "kernel_shape", "ints", { weight.shape[3], weight.shape[4] } },
    { "strides", "ints", { p.stride[0], p.stride[1] } },
    { "pads", "ints", { ph, pw, ph, pw } },
    { "dilations", "ints", { p.dilation[0], p.dilation[1] } },
    { "group", "int", p.groups },
  })
  if residual_t then y = g:op("Add", { y, g:input(residual_t) }) end
  local kind, alpha, beta = act_fields(p.act)
  return activation(g, kind, alpha, beta, y)
end

-- a prepared convolution (F.conv2d_prepare records what it was made from)
local function pack_info(pk, what)
  local info = F.pack_info[pk]
  if not info then refuse(what .. ": a pack made outside pthcv.F (no record of its weights)") end
  return info
end

H["F.conv2d_packed"] = function(g, a, r)
  local info = pack_info(a[1], "conv2d_packed")
  local w = info.weight or F.conv2d_pack_weight(a[1])
  local p = F.conv2d_params(w.shape[3], w.shape[4], info.options)
  g:output(r[1], conv_nodes(g, a[2], w, info.bias, p, a[3]))
end

H["F.conv2d"] = function(g, a, r)
  local o = args_of("conv2d", { "bias", "stride", "padding", "dilation", "groups", "padding_mode", "act" },
                    unpack(a, 3, a.n))
  local w = a[2]
  local p = F.conv2d_params(w.shape[3], w.shape[4], o)
  g:output(r[1], conv_nodes(g, a[1], w, o.bias, p, nil))
end

H["F.conv_transpose2d"] = function(g, a, r)
  local o = args_of("conv_transpose2d", { "bias", "stride", "padding", "output_padding", "groups", "dilation" },
                    unpack(a, 3, a.n))
  local w = a[2]
  local sh, sw = pair(o.stride or 1, "conv_transpose2d", "stride")
  local ph, pw = pair(o.padding or 0, "conv_transpose2d", "padding")
  local oh, ow = pair(o.output_padding or 0, "conv_transpose2d", "output_padding")
  local dh, dw = pair(o.dilation or 1, "conv_transpose2d", "dilation")
  local inputs = { g:input(a[1]), g:input(w, "weight") }
  if o.bias then inputs[3] = g:input(o.bias, "bias") end
  local attrs = { { "kernel_shape", "ints", { w.shape[3], w.shape[4] } }, { "strides", "ints", { sh, sw } },
                  { "pads", "ints", { ph, pw, ph, pw } }, { "dilations", "ints", { dh, dw } },
                  { "group", "int", o.groups or 1 } }
  if oh ~= 0 or ow ~= 0 then attrs[#attrs + 1] = { "output_padding", "ints", { oh, ow } } end
  g:output(r[1], g:op("ConvTranspose", inputs, attrs))
end

-- Linear: Gemm (transB) on 2-d inputs, else MatMul with W^T and Add.
local function linear_nodes(g, x_t, w, b, act)
  local y
  if x_t.ndim == 2 then
    local bias = b or Tensor.zeros({ w.shape[1] })
    y = g:op("Gemm", { g:input(x_t), g:input(w, "weight"), g:input(bias, "bias") }, { { "transB", "int", 1 } })
  else
    y = g:op("MatMul", { g:input(x_t), g:input(w:t():contiguous(), "weight_t") })
    if b then y = g:op("Add", { y, g:input(b, "bias") }) end
  end
  local kind, alpha, beta = act_fields(F.activation_struct(act))
  return activation(g, kind, alpha, beta, y)
end

H["F.linear_packed"] = function(g, a, r)
  local info = pack_info(a[1], "linear_packed")
  g:output(r[1], linear_nodes(g, a[2], info.weight, info.bias, info.act))
end
H["F.linear"] = function(g, a, r) g:output(r[1], linear_nodes(g, a[1], a[2], a[3], a[4])) end

H["F.matmul"] = function(g, a, r) g:output(r[1], g:op("MatMul", { g:input(a[1]), g:input(a[2]) })) end

-- ---- normalisation ---------------------------------------------------------------------
H["F.batch_norm"] = function(g, a, r)
  local x, mean, var = a[1], a[2], a[3]
  local o = args_of("batch_norm", { "weight", "bias", "training", "momentum", "eps" }, unpack(a, 4, a.n))
  local n = mean.numel
  local w, b = o.weight or Tensor.ones({ n }), o.bias or Tensor.zeros({ n })
  g:output(r[1], g:op("BatchNormalization",
    { g:input(x), g:input(w, "bn_weight"), g:input(b, "bn_bias"), g:input(mean, "bn_mean"), g:input(var, "bn_var") },
    { { "epsilon", "float", o.eps or 1e-5 } }))
end

-- ---- pooling -------------------------------------------------------------------------------
local function pool_out(n, k, s, p, d, ceil)
  local v = (n + 2 * p - d * (k - 1) - 1) / s
  return (ceil and math.ceil(v) or math.floor(v)) + 1
end

local function pool(op, fname, names)
  return function(g, a, r)
    local x, y = a[1], r[1]
    if x.ndim ~= 4 then refuse(fname .. " of a " .. x.ndim .. "-d tensor (ONNX pools take N, C, H, W)") end
    local o = args_of(fname, names, unpack(a, 2, a.n))
    if o.divisor_override then refuse(fname .. " with divisor_override has no ONNX form") end
    local kh, kw = pair(o.kernel_size, fname, "kernel_size")
    local stride = o.stride
    if stride == nil or (type(stride) == "table" and #stride == 0) then stride = o.kernel_size end
    local sh, sw = pair(stride, fname, "stride")
    local ph, pw = pair(o.padding or 0, fname, "padding")
    local dh, dw = pair(o.dilation or 1, fname, "dilation")
    local ceil = o.ceil_mode and true or false
    -- torch drops a last window that starts in the right padding; ONNX does not
    if pool_out(x.shape[3], kh, sh, ph, dh, ceil) ~= y.shape[3] or pool_out(x.shape[4], kw, sw, pw, dw, ceil) ~= y.shape[4] then
      refuse(fname .. ": torch's ceil_mode output size differs from ONNX's for this input")
    end
    local xin = g:input(x)
    if op == "AveragePool" and (ph > 0 or pw > 0) and (o.count_include_pad == nil or o.count_include_pad) then
      -- torch's default counts the padding in the divisor; OpenCV's importer
      -- ignores count_include_pad (it decides by the producer's name), so
      -- the zeros are made explicit
      xin = g:op("Pad", { xin }, { { "mode", "string", "constant" }, { "pads", "ints", { 0, 0, ph, pw, 0, 0, ph, pw } } })
      ph, pw = 0, 0
    end
    local attrs = { { "kernel_shape", "ints", { kh, kw } }, { "strides", "ints", { sh, sw } },
                    { "pads", "ints", { ph, pw, ph, pw } } }
    if ceil then attrs[#attrs + 1] = { "ceil_mode", "int", 1 } end
    if dh ~= 1 or dw ~= 1 then attrs[#attrs + 1] = { "dilations", "ints", { dh, dw } } end
    g:output(y, g:op(op, { xin }, attrs))
  end
end
H["F.max_pool2d"] = pool("MaxPool", "max_pool2d",
  { "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices" })
H["F.avg_pool2d"] = pool("AveragePool", "avg_pool2d",
  { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override" })

-- Adaptive pooling: global when the output is 1x1, a plain pool when the
-- input divides evenly, nothing when the sizes are equal.
local function adaptive(global, op, fname)
  return function(g, a, r)
    local x, y = a[1], r[1]
    if x.ndim ~= 4 then refuse(fname .. " of a " .. x.ndim .. "-d tensor (ONNX pools take N, C, H, W)") end
    local ih, iw, oh, ow = x.shape[3], x.shape[4], y.shape[3], y.shape[4]
    if oh == 1 and ow == 1 then
      g:output(y, g:op(global, { g:input(x) }))
    elseif ih == oh and iw == ow then
      g:alias(y, x)
    elseif ih % oh == 0 and iw % ow == 0 then
      local kh, kw = ih / oh, iw / ow
      g:output(y, g:op(op, { g:input(x) }, { { "kernel_shape", "ints", { kh, kw } }, { "strides", "ints", { kh, kw } } }))
    else
      refuse(string.format("%s from %dx%d to %dx%d (uneven windows) has no ONNX form", fname, ih, iw, oh, ow))
    end
  end
end
H["F.adaptive_avg_pool2d"] = adaptive("GlobalAveragePool", "AveragePool", "adaptive_avg_pool2d")
H["F.adaptive_max_pool2d"] = adaptive("GlobalMaxPool", "MaxPool", "adaptive_max_pool2d")

-- ---- resampling and padding ------------------------------------------------------------
local function interpolate(g, a, r)
  local x, y = a[1], r[1]
  local o = args_of("interpolate", { "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor" },
                    unpack(a, 2, a.n))
  if (o.mode or "nearest") ~= "nearest" then
    refuse("interpolate mode '" .. o.mode .. "': opset 10's Resize has no coordinate modes to match torch's "
           .. "bilinear; only 'nearest' is exported")
  end
  local scales = { 1, 1, y.shape[3] / x.shape[3], y.shape[4] / x.shape[4] }
  g:output(y, g:op("Resize", { g:input(x), g:constant(scales, "float32", { 4 }, "scales") },
                   { { "mode", "string", "nearest" } }))
end
H["F.interpolate"], H["F.upsample"] = interpolate, interpolate

local PAD_MODE = { constant = "constant", reflect = "reflect", replicate = "edge" }
H["F.pad"] = function(g, a, r)
  local x, pads = a[1], a[2]
  local o = args_of("pad", { "mode", "value" }, unpack(a, 3, a.n))
  local mode = PAD_MODE[o.mode or "constant"]
  if not mode then refuse("pad mode '" .. tostring(o.mode) .. "' has no ONNX form") end
  local nd = x.ndim
  local begin, stop = {}, {}
  for d = 1, nd do begin[d], stop[d] = 0, 0 end
  for i = 1, #pads / 2 do -- pads run from the last dim backwards
    begin[nd - i + 1], stop[nd - i + 1] = pads[2 * i - 1], pads[2 * i]
  end
  local all = {}
  for d = 1, nd do all[d] = begin[d]; all[nd + d] = stop[d] end
  local attrs = { { "mode", "string", mode }, { "pads", "ints", all } }
  if mode == "constant" and (o.value or 0) ~= 0 then attrs[3] = { "value", "float", o.value } end
  g:output(r[1], g:op("Pad", { g:input(x) }, attrs))
end

-- ---- softmax ------------------------------------------------------------------------------
-- Before opset 13, Softmax(axis) normalises over all dims from axis on: the
-- same as torch's only when the dims after it are 1.
local function softmax(op, fname)
  return function(g, a, r)
    local x = a[1]
    local d = a[2]
    if is_kw(d) then d = d.dim end
    if d == nil then d = (x.ndim == 0 or x.ndim == 1 or x.ndim == 3) and 0 or 1 end
    d = dim0(d, x.ndim)
    for i = d + 2, x.ndim do
      if x.shape[i] ~= 1 then refuse(fname .. " over dim " .. d .. " with later dims > 1 has no opset-10 form") end
    end
    g:output(r[1], g:op(op, { g:input(x) }, { { "axis", "int", d } }))
  end
end
H["F.softmax"] = softmax("Softmax", "softmax")
H["F.log_softmax"] = softmax("LogSoftmax", "log_softmax")

-- ---- elementwise arithmetic ----------------------------------------------------------------
local BIN = { [0] = "Add", "Sub", "Mul", "Div", "Max", "Min" }
local function operand(g, v)
  if Tensor.is(v) then return g:input(v) end
  return g:scalar(v)
end
H["Tensor.binary"] = function(g, a, r)
  g:output(r[1], g:op(BIN[a[3]], { operand(g, a[1]), operand(g, a[2]) }))
end
for i, name in ipairs { "add", "sub", "mul", "div", "maximum", "minimum" } do
  local op = BIN[i - 1]
  local h = function(g, a, r) g:output(r[1], g:op(op, { operand(g, a[1]), operand(g, a[2]) })) end
  H["F." .. name], H["Tensor." .. name] = h, h
end

local REDUCE = { sum = "ReduceSum", mean = "ReduceMean", amax = "ReduceMax", amin = "ReduceMin" }
for name, op in pairs(REDUCE) do
  H["F." .. name] = function(g, a, r)
    local x, dim, keepdim = a[1], a[2], a[3]
    if is_kw(dim) then dim, keepdim = dim.dim, dim.keepdim end
    local axes = {}
    if dim == nil then for d = 0, x.ndim - 1 do axes[#axes + 1] = d end
    elseif type(dim) == "number" then axes[1] = dim0(dim, x.ndim)
    else for i, d in ipairs(dim) do axes[i] = dim0(d, x.ndim) end end
    g:output(r[1], g:op(op, { g:input(x) }, { { "axes", "ints", axes }, { "keepdims", "int", keepdim and 1 or 0 } }))
  end
end

-- ---- shapes -----------------------------------------------------------------------------------
-- Any reshape (view, flatten, squeeze, ...): Flatten for [N, rest], else
-- Reshape to the traced shape.
local function reshape(g, a, r)
  local x, y = a[1], r[1]
  if y.ndim == 2 and x.ndim > 2 and y.shape[1] == x.shape[1] then
    g:output(y, g:op("Flatten", { g:input(x) }, { { "axis", "int", 1 } }))
  else
    g:output(y, g:op("Reshape", { g:input(x), g:ints(y.shape, "shape") }))
  end
end
for _, k in ipairs { "F.flatten", "F.reshape", "F.view", "F.squeeze", "F.unsqueeze", "Tensor.view", "Tensor.reshape",
                     "Tensor.flatten", "Tensor.view_as", "Tensor.squeeze", "Tensor.unsqueeze" } do
  H[k] = reshape
end

local function alias(g, a, r) g:alias(r[1], a[1]) end
H["F.contiguous"], H["Tensor.contiguous"], H["Tensor.clone"] = alias, alias, alias

-- dtype conversion: the identity for float32, else Cast
local function convert(g, a, r)
  local x, y = a[1], r[1]
  if x.dtype == y.dtype then return g:alias(y, x) end
  local to = proto.DTYPE[y.dtype]
  if not to then refuse("conversion to " .. y.dtype .. " has no ONNX type") end
  g:output(y, g:op("Cast", { g:input(x) }, { { "to", "int", to } }))
end
H["Tensor.to"], H["Tensor.float"], H["Tensor.double"] = convert, convert, convert

local function transpose(g, x, y, perm)
  g:output(y, g:op("Transpose", { g:input(x) }, { { "perm", "ints", perm } }))
end
local function identity_perm(n)
  local p = {}
  for i = 1, n do p[i] = i - 1 end
  return p
end
H["F.permute"] = function(g, a, r)
  local dims = Tensor.shape_arg(unpack(a, 2, a.n))
  local perm = {}
  for i, d in ipairs(dims) do perm[i] = dim0(d, a[1].ndim) end
  transpose(g, a[1], r[1], perm)
end
H["Tensor.permute"] = function(g, a, r)
  local dims = Tensor.shape_arg(unpack(a, 2, a.n))
  local perm = {}
  for i, d in ipairs(dims) do perm[i] = dim1to0(d, a[1].ndim) end
  transpose(g, a[1], r[1], perm)
end
local function swap(g, x, y, i, j)
  local perm = identity_perm(x.ndim)
  perm[i + 1], perm[j + 1] = perm[j + 1], perm[i + 1]
  transpose(g, x, y, perm)
end
H["F.transpose"] = function(g, a, r) swap(g, a[1], r[1], dim0(a[2], a[1].ndim), dim0(a[3], a[1].ndim)) end
H["Tensor.transpose"] = function(g, a, r)
  swap(g, a[1], r[1], dim1to0(a[2], a[1].ndim), dim1to0(a[3], a[1].ndim))
end
H["Tensor.t"] = function(g, a, r)
  if a[1].ndim < 2 then return g:alias(r[1], a[1]) end
  swap(g, a[1], r[1], 0, 1)
end

-- Slices: one Slice node per piece, the dim found from the shapes.
local function slice(g, x, y, start)
  for d = 1, x.ndim do
    if x.shape[d] ~= y.shape[d] then
      return g:output(y, g:op("Slice", { g:input(x), g:ints({ start }, "starts"), g:ints({ start + y.shape[d] }, "ends"),
                                         g:ints({ d - 1 }, "axes") }))
    end
  end
  g:alias(y, x)
end
H["F.narrow"] = function(g, a, r)
  local x, start = a[1], a[3]
  if start < 0 then start = start + x.shape[dim0(a[2], x.ndim) + 1] end
  slice(g, x, r[1], start)
end
H["Tensor.narrow"] = function(g, a, r) slice(g, a[1], r[1], a[3] - 1) end
local function pieces(g, a, r)
  local x, list = a[1], r[1]
  local d
  for i = 1, x.ndim do if list[1].shape[i] ~= x.shape[i] then d = i end end
  local start = 0
  for _, y in ipairs(list) do
    if d then slice(g, x, y, start); start = start + y.shape[d] else g:alias(y, x) end
  end
end
H["F.split"], H["F.chunk"], H["Tensor.split"], H["Tensor.chunk"] = pieces, pieces, pieces, pieces

-- ---- joining -----------------------------------------------------------------------------------
local function cat(g, a, r)
  local xs, d = a[1], a[2]
  if is_kw(d) then d = d.dim end
  local names = {}
  for i, x in ipairs(xs) do names[i] = g:input(x) end
  g:output(r[1], g:op("Concat", names, { { "axis", "int", dim0(d or 0, xs[1].ndim) } }))
end
H["F.cat"], H["F.concat"] = cat, cat
H["F.stack"] = function(g, a, r)
  local xs, d = a[1], a[2]
  if is_kw(d) then d = d.dim end
  d = dim0(d or 0, xs[1].ndim + 1)
  local names = {}
  for i, x in ipairs(xs) do
    local shape = { unpack(x.shape) }
    table.insert(shape, d + 1, 1)
    names[i] = g:op("Reshape", { g:input(x), g:ints(shape, "shape") })
  end
  g:output(r[1], g:op("Concat", names, { { "axis", "int", d } }))
end

-- channel_shuffle and pixel_shuffle: Reshape, Transpose, Reshape
H["F.channel_shuffle"] = function(g, a, r)
  local x, groups = a[1], a[2]
  local s = x.shape
  local split = { s[1], groups, s[2] / groups }
  for i = 3, #s do split[#split + 1] = s[i] end
  local perm = identity_perm(#split)
  perm[2], perm[3] = 2, 1
  local t = g:op("Transpose", { g:op("Reshape", { g:input(x), g:ints(split, "shape") }) }, { { "perm", "ints", perm } })
  g:output(r[1], g:op("Reshape", { t, g:ints(s, "shape") }))
end
H["F.pixel_shuffle"] = function(g, a, r)
  local x, f = a[1], a[2]
  local n, c, h, w = unpack(x.shape)
  local oc = c / (f * f)
  local t = g:op("Reshape", { g:input(x), g:ints({ n, oc, f, f, h, w }, "shape") })
  t = g:op("Transpose", { t }, { { "perm", "ints", { 0, 1, 4, 2, 5, 3 } } })
  g:output(r[1], g:op("Reshape", { t, g:ints(r[1].shape, "shape") }))
end

return M
