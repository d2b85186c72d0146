-- lua/pthcv/export/onnx/ops.lua: how each traced op is written as ONNX nodes.
--
-- handlers["F.relu"], handlers["Tensor.view"], ...: function(g, a, r)
-- called after the op ran (trace.lua), with a = its operands (a[1..a.n]:
-- tensors, lists, numbers, packs) and a.rec = its argument record
-- (lua/pthcv/nn/args.lua: defaults applied, dims from 0), and r = its
-- results. It appends nodes to the graph g (graph.lua) and names the
-- result with g:output(r[1], name). Shapes are the ones the traced pass
-- produced: reshapes are written with constant target shapes and marked
-- (node.reshape = {from = shape, to = shape}) so that --dynamic can
-- compute them in the graph instead (dynamic.lua). Every node type
-- written here has a kernel in evaluate.lua, which checks the graph
-- against the forward pass before anything is written.
--
-- Handlers write the canonical form of the opset-dependent ops, which
-- lower.lua rewrites for the chosen opset (10 to 17) and the Caffe writer
-- reads as it is: Clip with min/max attributes, Pad with pads/value
-- attributes, Resize with mode, coordinate_transformation_mode,
-- nearest_mode and scales or sizes attributes (no inputs but the data),
-- Softmax/LogSoftmax over the one axis (opset 13's meaning), ReduceSum
-- with an axes attribute, HardSwish. Other node types mean the same at
-- every opset from 10 to 17 and are written as they will be in the file.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local proto = require "pthcv.export.onnx.proto"
local graph = require "pthcv.export.onnx.graph"

local refuse = graph.refuse
-- OPSET: the oldest opset pthcv writes; the node types handlers write
-- besides the canonical ones mean the same from it to 17
local M = { handlers = {}, OPSET = 10 }
local H = M.handlers

-- ---- activations -----------------------------------------------------------------
local SQRT2, SQRT_2_PI = math.sqrt(2), math.sqrt(2 / math.pi)
local HS = { { "alpha", "float", 1 / 6 }, { "beta", "float", 0.5 } }

-- The nodes of activation record act ({kind, alpha, beta}) on value x;
-- returns the result's name.
local function activation(g, act, x)
  local kind, alpha, beta = act.kind, act.alpha, act.beta
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
  if kind == "hardsigmoid" then return g:op("HardSigmoid", { x }, HS) end
  if kind == "hardswish" then return g:op("HardSwish", { x }) end -- lowered below opset 14
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

local function act(g, a, r) g:output(r[1], activation(g, a.rec, g:input(a[1]))) end
for _, name in ipairs { "relu", "relu6", "leaky_relu", "elu", "hardtanh", "clamp", "sigmoid", "tanh", "silu",
                        "hardswish", "hardsigmoid", "gelu" } do
  H["F." .. name] = act
  -- pthcv.jit's in-place forms (rec.inplace; trace.lua names their result anew)
  H["F." .. name .. "_"] = act
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
local PAD_ONNX = { reflect = "reflect", replicate = "edge" }

-- Conv (+ Add residual) (+ activation) from a convolution record (A.conv2d).
local function conv_nodes(g, x_t, weight, bias, rec, residual_t)
  local x = g:input(x_t)
  local ph, pw = rec.padding[1], rec.padding[2]
  if rec.padding_mode ~= "zeros" and (ph > 0 or pw > 0) then
    local mode = PAD_ONNX[rec.padding_mode]
    if not mode then refuse("conv2d with padding_mode='" .. rec.padding_mode .. "' has no ONNX form") end
    x = g:op("Pad", { x }, { { "mode", "string", mode }, { "pads", "ints", { 0, 0, ph, pw, 0, 0, ph, pw } } })
    ph, pw = 0, 0
  end
  local inputs = { x, g:input(weight, "weight") }
  if bias then inputs[3] = g:input(bias, "bias") end
  local y = g:op("Conv", inputs, {
    { "kernel_shape", "ints", rec.kernel_size },
    { "strides", "ints", rec.stride },
    { "pads", "ints", { ph, pw, ph, pw } },
    { "dilations", "ints", rec.dilation },
    { "group", "int", rec.groups },
  })
  if residual_t then y = g:op("Add", { y, g:input(residual_t) }) end
  return activation(g, rec.act, y)
end

-- a[1]: the pack (lua/pthcv/nn/packs.lua); its weights read back when it
-- holds the only copy (a folded BatchNorm)
H["F.conv2d_packed"] = function(g, a, r)
  local pk = a[1]
  g:output(r[1], conv_nodes(g, a[2], pk.weight or F.conv2d_pack_weight(pk), pk.bias, a.rec, a[3]))
end
H["F.conv2d"] = function(g, a, r) g:output(r[1], conv_nodes(g, a[1], a[2], a[3], a.rec, nil)) end

H["F.conv_transpose2d"] = function(g, a, r)
  local rec, w, b = a.rec, a[2], a[3]
  local inputs = { g:input(a[1]), g:input(w, "weight") }
  if b then inputs[3] = g:input(b, "bias") end
  local ph, pw = rec.padding[1], rec.padding[2]
  local attrs = { { "kernel_shape", "ints", { w.shape[3], w.shape[4] } }, { "strides", "ints", rec.stride },
                  { "pads", "ints", { ph, pw, ph, pw } }, { "dilations", "ints", rec.dilation },
                  { "group", "int", rec.groups } }
  local op = rec.output_padding
  if op[1] ~= 0 or op[2] ~= 0 then attrs[#attrs + 1] = { "output_padding", "ints", op } end
  g:output(r[1], g:op("ConvTranspose", inputs, attrs))
end

-- Linear: Gemm (transB) on 2-d inputs, else MatMul with W^T and Add.
local function linear_nodes(g, x_t, w, b, rec)
  local y
  if x_t.ndim == 2 then
    local bias = b or Tensor.zeros({ w.shape[1] })
    y = g:op("Gemm", { g:input(x_t), g:input(w, "weight"), g:input(bias, "bias") }, { { "transB", "int", 1 } })
  else
    y = g:op("MatMul", { g:input(x_t), g:input(w:t():contiguous(), "weight_t") })
    if b then y = g:op("Add", { y, g:input(b, "bias") }) end
  end
  return activation(g, rec.act, y)
end
-- a[1]: the pack: its weights are pk.weight (pthcv.nn's layers)
H["F.linear_packed"] = function(g, a, r)
  local pk = a[1]
  local w = pk.weight
  if not w then
    refuse(g.where .. ": F.linear_packed runs a pack that holds no copy of its weights, and pthcv cannot read "
           .. "them back from a linear pack: the graph cannot hold them")
  end
  g:output(r[1], linear_nodes(g, a[2], w, pk.bias, a.rec))
end
H["F.linear"] = function(g, a, r) g:output(r[1], linear_nodes(g, a[1], a[2], a[3], a.rec)) end

H["F.matmul"] = function(g, a, r) g:output(r[1], g:op("MatMul", { g:input(a[1]), g:input(a[2]) })) end

-- ---- normalisation ---------------------------------------------------------------------
-- operands: x, running_mean, running_var, weight, bias
H["F.batch_norm"] = function(g, a, r)
  local x, mean, var = a[1], a[2], a[3]
  local n = mean.numel
  local w, b = a[4] or Tensor.ones({ n }), a[5] or Tensor.zeros({ n })
  g:output(r[1], g:op("BatchNormalization",
    { g:input(x), g:input(w, "bn_weight"), g:input(b, "bn_bias"), g:input(mean, "bn_mean"), g:input(var, "bn_var") },
    { { "epsilon", "float", a.rec.eps } }))
end

-- ---- pooling -------------------------------------------------------------------------------
-- ONNX's output size of a pooling window (ceil: ceil_mode)
local function pool_out(n, k, s, p, d, ceil)
  local v = (n + 2 * p - d * (k - 1) - 1) / s
  return (ceil and math.ceil(v) or math.floor(v)) + 1
end
M.pool_out = pool_out

-- rec: A.pool2d's
local function pool(op, fname)
  return function(g, a, r)
    local x, y, rec = a[1], r[1], a.rec
    if x.ndim ~= 4 then refuse(fname .. " of a " .. x.ndim .. "-d tensor (ONNX pools take N, C, H, W)") end
    if rec.divisor_override ~= 0 then refuse(fname .. " with divisor_override has no ONNX form") end
    local k, s, d = rec.kernel_size, rec.stride, rec.dilation
    local ph, pw = rec.padding[1], rec.padding[2]
    -- torch drops a last window that starts in the right padding; ONNX does not
    if pool_out(x.shape[3], k[1], s[1], ph, d[1], rec.ceil_mode) ~= y.shape[3]
       or pool_out(x.shape[4], k[2], s[2], pw, d[2], rec.ceil_mode) ~= y.shape[4] then
      refuse(fname .. ": torch's ceil_mode output size differs from ONNX's for this input")
    end
    local xin = g:input(x)
    local counted = false
    if op == "AveragePool" and (ph > 0 or pw > 0) and rec.count_include_pad then
      -- torch's default counts the padding in the divisor; OpenCV's importer
      -- ignores count_include_pad (it decides by the producer's name), so
      -- the zeros are made explicit. count_include_pad = 1 is written too:
      -- onnxruntime 1.20 fuses such a Pad into the pool's pads and keeps the
      -- pool's own count_include_pad (its issue 22177), dividing the border
      -- windows by fewer values than torch does
      xin = g:op("Pad", { xin }, { { "mode", "string", "constant" }, { "pads", "ints", { 0, 0, ph, pw, 0, 0, ph, pw } } })
      ph, pw, counted = 0, 0, true
    end
    local attrs = { { "kernel_shape", "ints", k }, { "strides", "ints", s }, { "pads", "ints", { ph, pw, ph, pw } } }
    if counted then attrs[#attrs + 1] = { "count_include_pad", "int", 1 } end
    if rec.ceil_mode then attrs[#attrs + 1] = { "ceil_mode", "int", 1 } end
    if d[1] ~= 1 or d[2] ~= 1 then attrs[#attrs + 1] = { "dilations", "ints", d } end
    g:output(y, g:op(op, { xin }, attrs))
  end
end
H["F.max_pool2d"] = pool("MaxPool", "max_pool2d")
H["F.avg_pool2d"] = pool("AveragePool", "avg_pool2d")

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
-- Resize in the canonical form (lower.lua writes the opset's inputs):
-- nearest as ONNX's asymmetric/floor, bilinear as half_pixel (torch's
-- align_corners=False, also for an output size of 1) or align_corners;
-- the scale factors when torch computes the source index from them, else
-- the output's height and width (lower.lua writes factors when they are
-- whole numbers: the same source index, and nothing that names the batch).
H["F.interpolate"] = function(g, a, r)
  local x, y, rec = a[1], r[1], a.rec
  local attrs
  if rec.mode == "nearest" then
    attrs = { { "mode", "string", "nearest" }, { "coordinate_transformation_mode", "string", "asymmetric" },
              { "nearest_mode", "string", "floor" } }
  else
    attrs = { { "mode", "string", "linear" },
              { "coordinate_transformation_mode", "string", rec.align_corners and "align_corners" or "half_pixel" } }
  end
  if rec.scale[1] ~= 0 and not rec.align_corners then
    attrs[#attrs + 1] = { "scales", "floats", { 1, 1, rec.scale[1], rec.scale[2] } }
  else
    attrs[#attrs + 1] = { "sizes", "ints", { y.shape[3], y.shape[4] } } -- H, W
  end
  g:output(y, g:op("Resize", { g:input(x) }, attrs))
  g.nodes[#g.nodes].in_shape = x.shape
end

local PAD_MODE = { constant = "constant", reflect = "reflect", replicate = "edge" }
H["F.pad"] = function(g, a, r)
  local x, rec = a[1], a.rec
  local mode = PAD_MODE[rec.mode]
  if not mode then refuse("pad mode '" .. tostring(rec.mode) .. "' has no ONNX form") end
  local nd, pads = x.ndim, rec.pads
  local all = {}
  for d = 1, 2 * nd do all[d] = 0 end
  for i = 1, #pads / 2 do -- pads run from the last dim backwards
    all[nd - i + 1], all[2 * nd - i + 1] = pads[2 * i - 1], pads[2 * i]
  end
  local attrs = { { "mode", "string", mode }, { "pads", "ints", all } }
  if mode == "constant" and rec.value ~= 0 then attrs[3] = { "value", "float", rec.value } end
  g:output(r[1], g:op("Pad", { g:input(x) }, attrs))
end

-- ---- softmax ------------------------------------------------------------------------------
-- over the one axis (lower.lua keeps that meaning before opset 13)
local function softmax(op)
  return function(g, a, r)
    g:output(r[1], g:op(op, { g:input(a[1]) }, { { "axis", "int", a.rec.dim } }))
    g.nodes[#g.nodes].in_shape = a[1].shape
  end
end
H["F.softmax"] = softmax("Softmax")
H["F.log_softmax"] = softmax("LogSoftmax")

-- ---- elementwise arithmetic and reductions -----------------------------------------------
local BIN = { add = "Add", sub = "Sub", mul = "Mul", div = "Div", maximum = "Max", minimum = "Min" }
local function operand(g, v)
  if Tensor.is(v) then return g:input(v) end
  return g:scalar(v)
end
for name, op in pairs(BIN) do
  local h = function(g, a, r) g:output(r[1], g:op(op, { operand(g, a[1]), operand(g, a[2]) })) end
  H["F." .. name], H["Tensor." .. name] = h, h
end
H["Tensor.add_"] = H["Tensor.add"]   -- pthcv.jit's add_ (in place: trace.lua)

local REDUCE = { sum = "ReduceSum", mean = "ReduceMean", amax = "ReduceMax", amin = "ReduceMin" }
for name, op in pairs(REDUCE) do
  H["F." .. name] = function(g, a, r)
    g:output(r[1], g:op(op, { g:input(a[1]) }, { { "axes", "ints", a.rec.dims },
                                                 { "keepdims", "int", a.rec.keepdim and 1 or 0 } }))
  end
end

-- ---- shapes (layout records: Tensor.layout, dims from 0) ------------------------------------
-- A Reshape of value x (of shape from) to the shape to, marked for
-- --dynamic (dynamic.lua); returns the result's name.
local function reshape_node(g, x, from, to)
  local y = g:op("Reshape", { x, g:ints(to, "shape") })
  g.nodes[#g.nodes].reshape = { from = { unpack(from) }, to = { unpack(to) } }
  return y
end
M.reshape_node = reshape_node

-- Any reshape (view, flatten, squeeze, ...): Flatten for [N, rest], else
-- Reshape to the traced shape.
local function reshape(g, a, r)
  local x, y = a[1], r[1]
  if y.ndim == 2 and x.ndim > 2 and y.shape[1] == x.shape[1] then
    g:output(y, g:op("Flatten", { g:input(x) }, { { "axis", "int", 1 } }))
  else
    g:output(y, reshape_node(g, g:input(x), x.shape, y.shape))
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

-- rec.perm: the permutation, from 0
local function transpose(g, a, r)
  g:output(r[1], g:op("Transpose", { g:input(a[1]) }, { { "perm", "ints", a.rec.perm } }))
end
for _, k in ipairs { "F.permute", "Tensor.permute", "F.transpose", "Tensor.transpose", "Tensor.t" } do H[k] = transpose end

-- One Slice node for a piece [start, start + length) of dim; nothing when
-- it is the whole dim.
local function slice(g, x, y, dim, start, length)
  if start == 0 and length == x.shape[dim + 1] then return g:alias(y, x) end
  g:output(y, g:op("Slice", { g:input(x), g:ints({ start }, "starts"), g:ints({ start + length }, "ends"),
                              g:ints({ dim }, "axes") }))
end
local function narrow(g, a, r) slice(g, a[1], r[1], a.rec.dim, a.rec.start, a.rec.length) end
H["F.narrow"], H["Tensor.narrow"] = narrow, narrow
-- rec: {dim, sizes}
local function pieces(g, a, r)
  local start = 0
  for i, y in ipairs(r[1]) do
    local len = a.rec.sizes[i]
    slice(g, a[1], y, a.rec.dim, start, len)
    start = start + len
  end
end
H["F.split"], H["F.chunk"], H["Tensor.split"], H["Tensor.chunk"] = pieces, pieces, pieces, pieces

-- ---- joining -----------------------------------------------------------------------------------
H["F.cat"] = function(g, a, r)
  local names = {}
  for i, x in ipairs(a[1]) do names[i] = g:input(x) end
  g:output(r[1], g:op("Concat", names, { { "axis", "int", a.rec.dim } }))
end
H["F.stack"] = function(g, a, r)
  local d = a.rec.dim
  local names = {}
  for i, x in ipairs(a[1]) do
    local shape = { unpack(x.shape) }
    table.insert(shape, d + 1, 1)
    names[i] = reshape_node(g, g:input(x), x.shape, shape)
  end
  g:output(r[1], g:op("Concat", names, { { "axis", "int", d } }))
end

-- channel_shuffle and pixel_shuffle: Reshape, Transpose, Reshape
H["F.channel_shuffle"] = function(g, a, r)
  local x, groups = a[1], a.rec.groups
  local s = x.shape
  local split = { s[1], groups, s[2] / groups }
  for i = 3, #s do split[#split + 1] = s[i] end
  local perm = {}
  for i = 1, #split do perm[i] = i - 1 end
  perm[2], perm[3] = 2, 1
  local t = g:op("Transpose", { reshape_node(g, g:input(x), s, split) }, { { "perm", "ints", perm } })
  local shuffled = { unpack(split) }
  shuffled[2], shuffled[3] = split[3], split[2]
  g:output(r[1], reshape_node(g, t, shuffled, s))
end
H["F.pixel_shuffle"] = function(g, a, r)
  local x, f = a[1], a.rec.upscale_factor
  local n, c, h, w = unpack(x.shape)
  local oc = c / (f * f)
  local t = reshape_node(g, g:input(x), x.shape, { n, oc, f, f, h, w })
  t = g:op("Transpose", { t }, { { "perm", "ints", { 0, 1, 4, 2, 5, 3 } } })
  g:output(r[1], reshape_node(g, t, { n, oc, h, f, w, f }, r[1].shape))
end

return M
