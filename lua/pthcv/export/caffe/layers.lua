-- lua/pthcv/export/caffe/layers.lua: a traced graph's canonical ONNX nodes
-- (lua/pthcv/export/onnx/ops.lua) as Caffe layers.
--
--   local layers = convert(g, shapes)   -- shapes: value name -> shape (a checked evaluation)
--
-- A layer is {type, name, bottom = {...}, top = {...}, blobs = {tensors},
-- param_key = "convolution_param", param = {...}, where = module}; it is
-- also a node for the evaluator (op = type, inputs = bottom, outputs =
-- top). Tops keep the ONNX values' names, so the evaluator compares them
-- with the forward pass.
--
-- The forms (OpenCV 4.6's readNetFromCaffe reads each; types beyond
-- BVLC's, OpenCV's own, are marked *):
--   Conv -> Convolution (groups, dilation); ConvTranspose -> Deconvolution
--   BatchNormalization -> BatchNorm (use_global_stats) + Scale (bias_term)
--     (a BatchNorm after a convolution arrives folded into its weights)
--   Relu, LeakyRelu -> ReLU (negative_slope); Clip [0, 6] -> ReLU6*,
--     [0, inf) -> ReLU; PRelu -> PReLU; Sigmoid; Tanh -> TanH; Elu -> ELU;
--     x * Sigmoid(x) -> Swish*; HardSigmoid -> Power, ReLU6*, Power;
--     HardSwish -> the same and Eltwise PROD
--   MaxPool, AveragePool -> Pooling with ceil_mode* always written (torch's
--     floor would otherwise round up as Caffe does), a Pad of zeros before
--     an AveragePool folded into its pad (Caffe counts padding, as
--     torch's count_include_pad); GlobalAveragePool/GlobalMaxPool ->
--     Pooling global_pooling; ReduceMean over H, W -> the same
--   Gemm, and MatMul by a constant (+ its bias Add) -> InnerProduct
--   Add, Sub, Mul, Max of same-shaped values -> Eltwise; by a number ->
--     Power; by a per-channel constant -> Scale; by a computed [N, C, 1, 1]
--     -> Flatten + Scale (two bottoms)
--   Concat; Flatten; Reshape; Transpose -> Permute*; Slice -> Slice;
--     Softmax; LogSoftmax -> Softmax + Log*
--   Resize by integer factors: nearest -> Deconvolution of ones per channel;
--     bilinear (half_pixel) -> the edges replicated (Slice, Concat) and a
--     per-channel Deconvolution with the bilinear kernel, which is torch's
--     align_corners=False interpolation exactly
-- Anything else is refused, naming the node, its op and its module.
local Tensor = require "pthcv.tensor"
local graph = require "pthcv.export.onnx.graph"
local values = require("pthcv.export.onnx.evaluate").values

local refuse, attrs = graph.refuse, graph.attrs

local function fail(node, why)
  refuse(string.format("node %s (%s, in %s) has no Caffe form: %s", node.name, node.op, node.where, why))
end

local Cv = {}
Cv.__index = Cv

-- A layer (and evaluator node) appended to the list.
function Cv:layer(typ, name, bottom, top, param_key, param, blobs)
  local l = { type = typ, op = typ, name = name, bottom = bottom, top = top, inputs = bottom, outputs = top,
              param_key = param_key, param = param or {}, blobs = blobs or {}, where = self.node.where,
              tolerance = self.node.tolerance }
  self.layers[#self.layers + 1] = l
  return top[1]
end

function Cv:fresh(prefix)
  self.count = self.count + 1
  return prefix .. "_caffe" .. self.count
end

-- The blob a value is in (Identity and folded nodes alias their input).
function Cv:blob(nm) return self.alias[nm] or nm end
function Cv:const(nm) return self.g.init_of[nm] end
function Cv:shape(nm) return self.shapes[nm] end

-- The single node that reads value nm, or nil (graph outputs count as readers).
function Cv:only_reader(nm)
  local r = self.readers[nm]
  if r and #r == 1 and not self.is_output[nm] then return r[1] end
end


local function sym(node, pads)
  pads = pads or { 0, 0, 0, 0 }
  if pads[1] ~= pads[3] or pads[2] ~= pads[4] then fail(node, "asymmetric padding " .. table.concat(pads, ",")) end
  return pads[1], pads[2]
end

local function one_value(t) return t.numel == 1 and values(t)[1] or nil end

local C = {}

-- ---- convolution, linear, normalisation --------------------------------------------------
local function conv_param(node, at, w, b, num_output)
  local ph, pw = sym(node, at.pads)
  local k = at.kernel_shape or { w.shape[3], w.shape[4] }
  local s, d = at.strides or { 1, 1 }, at.dilations or { 1, 1 }
  return { num_output = num_output, bias_term = b ~= nil, group = at.group or 1, pad_h = ph, pad_w = pw,
           kernel_h = k[1], kernel_w = k[2], stride_h = s[1], stride_w = s[2], dilation = { d[1], d[2] } }
end

C.Conv = function(cv, node, at)
  local w, b = cv:const(node.inputs[2]), node.inputs[3] and cv:const(node.inputs[3])
  if not w or (node.inputs[3] and not b) then fail(node, "computed weights") end
  cv:layer("Convolution", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "convolution_param",
           conv_param(node, at, w, b, w.shape[1]), { w, b })
end

C.ConvTranspose = function(cv, node, at)
  local w, b = cv:const(node.inputs[2]), node.inputs[3] and cv:const(node.inputs[3])
  if not w or (node.inputs[3] and not b) then fail(node, "computed weights") end
  local op = at.output_padding
  if op and (op[1] ~= 0 or op[2] ~= 0) then fail(node, "Caffe's Deconvolution has no output_padding") end
  cv:layer("Deconvolution", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "convolution_param",
           conv_param(node, at, w, b, w.shape[2] * (at.group or 1)), { w, b })
end

C.Gemm = function(cv, node, at)
  local w, b = cv:const(node.inputs[2]), node.inputs[3] and cv:const(node.inputs[3])
  if (at.transB or 0) ~= 1 or (at.transA or 0) ~= 0 or not w or (node.inputs[3] and not b) then
    fail(node, "only x times a constant weight [out, in]")
  end
  cv:layer("InnerProduct", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "inner_product_param",
           { num_output = w.shape[1], bias_term = b ~= nil, axis = 1 }, { w, b })
end

-- MatMul by a constant [in, out] (Linear on n-d input), and the Add of its
-- bias when that is the product's one reader.
C.MatMul = function(cv, node)
  local wt = cv:const(node.inputs[2])
  if not wt or wt.ndim ~= 2 or cv:const(node.inputs[1]) then fail(node, "only x times a constant matrix") end
  local top, b = node.outputs, nil
  local add = cv:only_reader(node.outputs[1])
  if add and add.op == "Add" then
    local other = add.inputs[1] == node.outputs[1] and add.inputs[2] or add.inputs[1]
    local c = cv:const(other)
    if c and c.ndim == 1 and c.numel == wt.shape[2] then b, top = c, add.outputs; cv.done[add] = true end
  end
  local nd = #cv:shape(node.inputs[1])
  cv:layer("InnerProduct", node.name, { cv:blob(node.inputs[1]) }, top, "inner_product_param",
           { num_output = wt.shape[2], bias_term = b ~= nil, axis = nd - 1 }, { wt:t():contiguous(), b })
end

C.BatchNormalization = function(cv, node, at)
  local scale, bias, mean, var = cv:const(node.inputs[2]), cv:const(node.inputs[3]), cv:const(node.inputs[4]),
                                 cv:const(node.inputs[5])
  if not (scale and bias and mean and var) then fail(node, "computed statistics") end
  local mid = cv:fresh(node.outputs[1] .. "_bn")
  cv:layer("BatchNorm", node.name, { cv:blob(node.inputs[1]) }, { mid }, "batch_norm_param",
           { use_global_stats = true, eps = at.epsilon or 1e-5 }, { mean, var, Tensor.ones({ 1 }) })
  cv:layer("Scale", node.name .. "_scale", { mid }, node.outputs, "scale_param", { bias_term = true }, { scale, bias })
end

-- ---- activations ----------------------------------------------------------------------------------
local function unary(typ, key, param)
  return function(cv, node, at)
    cv:layer(typ, node.name, { cv:blob(node.inputs[1]) }, node.outputs, key, param and param(at))
  end
end
C.Relu = unary("ReLU")
C.LeakyRelu = unary("ReLU", "relu_param", function(at) return { negative_slope = at.alpha or 0.01 } end)
C.Elu = unary("ELU", "elu_param", function(at) return { alpha = at.alpha or 1 } end)
C.Tanh = unary("TanH")
C.Sigmoid = function(cv, node)
  local x = node.inputs[1]
  local mul = cv:only_reader(node.outputs[1])
  if mul and mul.op == "Mul" and (mul.inputs[1] == x or mul.inputs[2] == x) then -- x * sigmoid(x): SiLU
    cv.done[mul] = true
    return cv:layer("Swish", node.name, { cv:blob(x) }, mul.outputs)
  end
  cv:layer("Sigmoid", node.name, { cv:blob(x) }, node.outputs)
end
C.Clip = function(cv, node, at)
  local lo, hi = at.min or -math.huge, at.max or math.huge
  if lo == 0 and hi == 6 then return cv:layer("ReLU6", node.name, { cv:blob(node.inputs[1]) }, node.outputs) end
  if lo == 0 and hi == math.huge then return cv:layer("ReLU", node.name, { cv:blob(node.inputs[1]) }, node.outputs) end
  fail(node, string.format("a clamp to [%g, %g] (Caffe has ReLU for [0, inf) and OpenCV ReLU6 for [0, 6])", lo, hi))
end
C.PRelu = function(cv, node)
  local slope = cv:const(node.inputs[2])
  if not slope then fail(node, "a computed slope") end
  cv:layer("PReLU", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "prelu_param",
           { channel_shared = slope.numel == 1 }, { slope:reshape({ slope.numel }) })
end

-- clamp(alpha x + beta, 0, 1) = ReLU6(6 alpha x + 6 beta) / 6
local function hardsigmoid(cv, node, x, alpha, beta, top)
  local a = cv:fresh(node.outputs[1] .. "_affine")
  local r = cv:fresh(node.outputs[1] .. "_relu6")
  cv:layer("Power", node.name .. "_affine", { x }, { a }, "power_param", { scale = 6 * alpha, shift = 6 * beta })
  cv:layer("ReLU6", node.name .. "_relu6", { a }, { r })
  return cv:layer("Power", node.name, { r }, { top }, "power_param", { scale = 1 / 6 })
end
C.HardSigmoid = function(cv, node, at)
  hardsigmoid(cv, node, cv:blob(node.inputs[1]), at.alpha or 0.2, at.beta or 0.5, node.outputs[1])
end
C.HardSwish = function(cv, node)
  local x = cv:blob(node.inputs[1])
  local hs = hardsigmoid(cv, node, x, 1 / 6, 0.5, cv:fresh(node.outputs[1] .. "_hardsigmoid"))
  cv:layer("Eltwise", node.name .. "_mul", { x, hs }, node.outputs, "eltwise_param", { operation = "PROD" })
end

-- ---- elementwise ------------------------------------------------------------------------------------
local function same_shape(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- A constant that scales (or shifts) channel dim 1: [C], [C, 1, 1] or [1, C, 1, 1] for an N, C, ... x.
local function per_channel(c, xshape)
  local n = xshape[2]
  if c.numel ~= n or #xshape < 2 then return nil end
  local dims = c.shape
  local lead = #dims - (#xshape - 1) -- dims of c before the one aligned with x's dim 1
  for i, d in ipairs(dims) do
    local xi = i - lead + 1          -- the dim of x that dim i of c broadcasts with
    if d ~= 1 and xi ~= 2 then return nil end
  end
  return c:reshape({ n })
end

local function elementwise(op)
  return function(cv, node)
    local a, b = node.inputs[1], node.inputs[2]
    local ca, cb = cv:const(a), cv:const(b)
    local out = node.outputs
    if not ca and not cb then
      local sa, sb = cv:shape(a), cv:shape(b)
      if same_shape(sa, sb) then
        local p = { operation = op == "Mul" and "PROD" or op == "Max" and "MAX" or "SUM" }
        if op == "Sub" then p.coeff = { 1, -1 } end
        if op == "Div" or op == "Min" then fail(node, op .. " of two computed values") end
        return cv:layer("Eltwise", node.name, { cv:blob(a), cv:blob(b) }, out, "eltwise_param", p)
      end
      if op == "Mul" then -- x * s with s [N, C, 1, 1]: Scale with a second bottom [N, C]
        local x, s, ss, sx = a, b, sb, sa
        if #sa == #sb and sa[3] == 1 and (sa[4] or 1) == 1 then x, s, ss, sx = b, a, sa, sb end
        local ok = #ss >= 2 and ss[1] == sx[1] and ss[2] == sx[2]
        for d = 3, #ss do ok = ok and ss[d] == 1 end
        if ok then
          local flat = cv:fresh(s .. "_flat")
          cv:layer("Flatten", node.name .. "_flatten", { cv:blob(s) }, { flat }, "flatten_param", { axis = 1 })
          return cv:layer("Scale", node.name, { cv:blob(x), flat }, out, "scale_param", { axis = 0 })
        end
      end
      fail(node, string.format("%s of computed values of shapes [%s] and [%s]", op, table.concat(sa, ", "),
                               table.concat(sb, ", ")))
    end
    if ca and cb then fail(node, "constants only") end
    local x, c, c_first = cb and a or b, ca or cb, ca ~= nil
    local v = one_value(c)
    if v then
      local p
      if op == "Add" then p = { shift = v }
      elseif op == "Sub" then p = c_first and { scale = -1, shift = v } or { shift = -v }
      elseif op == "Mul" then p = { scale = v }
      elseif op == "Div" and not c_first then p = { scale = 1 / v } end
      if p then return cv:layer("Power", node.name, { cv:blob(x) }, out, "power_param", p) end
    end
    local pc = (op == "Mul" or op == "Add") and per_channel(c, cv:shape(x))
    if pc then
      if op == "Mul" then
        return cv:layer("Scale", node.name, { cv:blob(x) }, out, "scale_param", { axis = 1, bias_term = false }, { pc })
      end
      return cv:layer("Scale", node.name, { cv:blob(x) }, out, "scale_param", { axis = 1, bias_term = true },
                      { Tensor.ones({ pc.numel }), pc })
    end
    fail(node, string.format("%s by a constant of shape [%s]", op, table.concat(c.shape, ", ")))
  end
end
for _, op in ipairs { "Add", "Sub", "Mul", "Div", "Max", "Min" } do C[op] = elementwise(op) end

-- ---- pooling ---------------------------------------------------------------------------------------------
local function pooling(kind)
  return function(cv, node, at)
    local d = at.dilations
    if d and (d[1] ~= 1 or d[2] ~= 1) then fail(node, "Caffe's Pooling has no dilation") end
    local x = node.inputs[1]
    local ph, pw = sym(node, at.pads)
    if kind == "AVE" then
      if (ph > 0 or pw > 0) and (at.count_include_pad or 0) == 0 then
        fail(node, "average pooling that leaves padding out of the divisor (Caffe counts it)")
      end
      local pad = cv.pad_of[x] -- a Pad of zeros that only feeds this pool: Caffe's own padding
      if pad then x, ph, pw = pad.inputs[1], pad.ph, pad.pw end
    end
    local k, s = at.kernel_shape, at.strides or { 1, 1 }
    cv:layer("Pooling", node.name, { cv:blob(x) }, node.outputs, "pooling_param",
             { pool = kind, kernel_h = k[1], kernel_w = k[2], stride_h = s[1], stride_w = s[2], pad_h = ph, pad_w = pw,
               ceil_mode = (at.ceil_mode or 0) ~= 0 })
  end
end
C.MaxPool, C.AveragePool = pooling("MAX"), pooling("AVE")
local function global(kind)
  return function(cv, node)
    cv:layer("Pooling", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "pooling_param",
             { pool = kind, global_pooling = true })
  end
end
C.GlobalAveragePool, C.GlobalMaxPool = global("AVE"), global("MAX")
C.ReduceMean = function(cv, node, at)
  local nd = #cv:shape(node.inputs[1])
  local axes = at.axes or {}
  if nd == 4 and #axes == 2 and (axes[1] % 4) == 2 and (axes[2] % 4) == 3 and (at.keepdims or 1) == 1 then
    return global("AVE")(cv, node)
  end
  fail(node, "a mean over dims other than H, W (keepdim)")
end

-- Pad: only zeros of H and W before an AveragePool that alone reads them
-- (folded into the pool's pad)
C.Pad = function(cv, node, at)
  local p, reader = at.pads, cv:only_reader(node.outputs[1])
  local nd = p and #p / 2
  local ok = (at.mode or "constant") == "constant" and (at.value or 0) == 0 and nd == 4 and reader
             and reader.op == "AveragePool" and p[1] == 0 and p[2] == 0 and p[5] == 0 and p[6] == 0
             and p[3] == p[7] and p[4] == p[8]
  if not ok then fail(node, "Caffe pads only inside Convolution and Pooling") end
  for _, a in ipairs(reader.attrs) do
    if a[1] == "pads" then for _, v in ipairs(a[3]) do if v ~= 0 then ok = false end end end
  end
  if not ok then fail(node, "a Pad before a padded pool") end
  cv.pad_of[node.outputs[1]] = { inputs = node.inputs, ph = p[3], pw = p[4] }
end

require("pthcv.export.caffe.layers_shape")(C, { fail = fail, attrs = attrs })

-- The Caffe layers of g's canonical nodes (shapes: every value's shape).
return function(g, shapes)
  local cv = setmetatable({ g = g, shapes = shapes, layers = {}, alias = {}, done = {}, pad_of = {}, count = 0,
                            readers = {}, is_output = {} }, Cv)
  for _, node in ipairs(g.nodes) do
    for _, nm in ipairs(node.inputs) do
      local r = cv.readers[nm] or {}
      r[#r + 1] = node
      cv.readers[nm] = r
    end
  end
  for _, out in ipairs(g.outputs) do cv.is_output[out.name] = true end
  for _, node in ipairs(g.nodes) do
    if not cv.done[node] then
      local fn = C[node.op]
      if not fn then fail(node, "Caffe (and OpenCV's Caffe importer) has no layer for " .. node.op) end
      cv.node = node
      fn(cv, node, attrs(node))
    end
  end
  return cv.layers, cv.alias
end
