-- lua/pthcv/export/onnx/evaluate.lua: runs an exported graph with pthcv's
-- own kernels before it is written, and refuses it when it does not
-- compute what the forward pass computed.
--
--   evaluate.check(g, {input = x}, refs)   -- raises "... differs ... at node Relu_3 ..."
--   evaluate.run(nodes, values, o)         -- the same loop for other graphs (Caffe's)
--
-- Each node is evaluated as ONNX (at g.opset; the canonical forms of
-- ops.lua too) defines its op, from the graph alone: its inputs are the
-- graph's inputs, the initializers (the tensors the file holds) and the
-- outputs of earlier nodes, never the traced tensors. Every value the forward pass produced (graph.lua's g.refs: the
-- outputs of traced ops) is compared with it as soon as it is computed; the
-- first one not within TOL (or the node's own node.tolerance: fold.lua's)
-- * max(1, max |forward value|) is refused, naming
-- the node, its op type, the module it was traced in and the difference.
-- Values are freed after their last use.
--
-- kernels[op_type] = function(ins, at, node, ctx) -> {outputs}: ins are
-- the input tensors (nil for an absent optional input), at the attributes
-- by name (floats rounded to float32, as the file holds them), ctx =
-- {opset = n}. An op type with no kernel is refused: a graph that cannot
-- be checked is not written. Resampling, padding and shape kernels are in
-- evaluate_shape.lua.
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local proto = require "pthcv.export.onnx.proto"
local ops = require "pthcv.export.onnx.ops"
local graph = require "pthcv.export.onnx.graph"
local release = require "pthcv.nn.release"

local refuse = graph.refuse
local M = { kernels = {}, TOL = 1e-5 }
local K = M.kernels

local function unsupported(what) error("not evaluated: " .. what, 0) end

local f32box = ffi.new("float[1]")
local function as_f32(v) f32box[0] = v; return f32box[0] end

local function attrs_of(node)
  local t = {}
  for _, a in ipairs(node.attrs) do
    local v = a[3]
    if a[2] == "float" then v = as_f32(v) end
    t[a[1]] = v
  end
  return t
end

-- pads {h_begin, w_begin, h_end, w_end} as a symmetric pair
local function sym_pads(p)
  p = p or { 0, 0, 0, 0 }
  if p[1] ~= p[3] or p[2] ~= p[4] then unsupported("asymmetric pads " .. table.concat(p, ",")) end
  return { p[1], p[2] }
end

-- the values of a small tensor (shapes, axes, scalars; 0-d too) as Lua
-- numbers (int64 through float64: exact below 2^53)
local function ints(t)
  local d = t:double():contiguous()
  local p, out = d:data(), {}
  for i = 0, d.numel - 1 do out[i + 1] = p[i] end
  return out
end
M.values = ints

local function prod(list, i, j)
  local n = 1
  for k = i, j do n = n * list[k] end
  return n
end

-- ---- convolution, linear, normalisation -------------------------------------------
K.Conv = function(ins, at)
  local pk = F.conv2d_prepare(ins[2], ins[3], { stride = at.strides or 1, padding = sym_pads(at.pads),
                                                dilation = at.dilations or 1, groups = at.group or 1 })
  local y = F.conv2d_packed(pk, ins[1])
  F.pack_free(pk)
  return { y }
end
K.ConvTranspose = function(ins, at)
  return { F.conv_transpose2d(ins[1], ins[2], ins[3], at.strides or 1, sym_pads(at.pads), at.output_padding or 0,
                              at.group or 1, at.dilations or 1) }
end
K.Gemm = function(ins, at)
  local a, b, c = ins[1], ins[2], ins[3]
  if (at.transA or 0) ~= 0 or (at.alpha or 1) ~= 1 or (at.beta or 1) ~= 1 then unsupported("Gemm with transA/alpha/beta") end
  if (at.transB or 0) ~= 0 and c and c.ndim == 1 and c.numel == b.shape[1] then
    local pk = F.linear_prepare(b, c)
    local y = F.linear_packed(pk, a)
    F.pack_free(pk)
    return { y }
  end
  if (at.transB or 0) ~= 0 then b = b:t() end
  local y = F.matmul(a, b)
  if c then y = y + c end
  return { y }
end
K.MatMul = function(ins) return { F.matmul(ins[1], ins[2]) } end
K.BatchNormalization = function(ins, at)
  return { F.batch_norm(ins[1], ins[4], ins[5], ins[2], ins[3], false, 0.1, at.epsilon or 1e-5) }
end

-- ---- pooling ---------------------------------------------------------------------------
local function pool(kind)
  return function(ins, at)
    local x = ins[1]
    local k, s, d = at.kernel_shape, at.strides or { 1, 1 }, at.dilations or { 1, 1 }
    local p = sym_pads(at.pads)
    local ceil = (at.ceil_mode or 0) ~= 0
    local y
    if kind == "max" then
      y = F.max_pool2d(x, k, s, p, d, ceil)
    else
      if d[1] ~= 1 or d[2] ~= 1 then unsupported("AveragePool with dilations") end
      y = F.avg_pool2d(x, k, s, p, ceil, (at.count_include_pad or 0) ~= 0)
    end
    -- ONNX's output size (torch drops a last window starting in the padding)
    local oh = ops.pool_out(x.shape[3], k[1], s[1], p[1], d[1], ceil)
    local ow = ops.pool_out(x.shape[4], k[2], s[2], p[2], d[2], ceil)
    if y.shape[3] ~= oh or y.shape[4] ~= ow then
      unsupported(string.format("ONNX's output is %dx%d, the kernel's %dx%d", oh, ow, y.shape[3], y.shape[4]))
    end
    return { y }
  end
end
K.MaxPool, K.AveragePool = pool("max"), pool("avg")
K.GlobalAveragePool = function(ins) return { F.adaptive_avg_pool2d(ins[1], 1) } end
K.GlobalMaxPool = function(ins) return { F.adaptive_max_pool2d(ins[1], 1) } end

-- ---- elementwise -----------------------------------------------------------------------
local BIN = Tensor.binary_ops
for op, code in pairs { Add = BIN.add, Sub = BIN.sub, Mul = BIN.mul, Div = BIN.div, Max = BIN.max, Min = BIN.min } do
  K[op] = function(ins)
    local y = ins[1]
    for i = 2, #ins do y = Tensor.binary(y, ins[i], code) end
    if #ins == 1 then y = y:clone() end
    return { y }
  end
end
K.Relu = function(ins) return { F.relu(ins[1]) } end
K.Sigmoid = function(ins) return { F.sigmoid(ins[1]) } end
K.Tanh = function(ins) return { F.tanh(ins[1]) } end
-- bounds: attributes (opset 10, the canonical form) or inputs (from 11)
K.Clip = function(ins, at)
  local lo, hi = at.min, at.max
  if ins[2] then lo = ints(ins[2])[1] end
  if ins[3] then hi = ints(ins[3])[1] end
  return { F.clamp(ins[1], lo, hi) }
end
K.Identity = function(ins) return { ins[1]:clone() } end
K.LeakyRelu = function(ins, at) return { F.leaky_relu(ins[1], at.alpha or as_f32(0.01)) } end
K.Elu = function(ins, at) return { F.elu(ins[1], at.alpha or 1) } end
-- max(0, min(1, alpha x + beta))
K.HardSigmoid = function(ins, at)
  return { F.clamp(ins[1] * (at.alpha or as_f32(0.2)) + (at.beta or 0.5), 0, 1) }
end
-- x for x >= 0, slope x below
K.PRelu = function(ins) return { F.relu(ins[1]) + ins[2] * F.minimum(ins[1], 0) } end
-- x * HardSigmoid(x; 1/6, 1/2) (opset 14)
K.HardSwish = function(ins) return { ins[1] * F.clamp(ins[1] * as_f32(1 / 6) + 0.5, 0, 1) } end

-- erf in double precision: its Maclaurin series below 2.5, the continued
-- fraction of erfc above (both to ~1e-15), +-1 beyond 6.
local TWO_SQRTPI, SQRTPI = 2 / math.sqrt(math.pi), math.sqrt(math.pi)
local function erf(x)
  local ax = math.abs(x)
  if ax < 2.5 then
    local sum, term, x2, n = x, x, x * x, 0
    repeat
      n = n + 1
      term = -term * x2 / n
      local add = term / (2 * n + 1)
      sum = sum + add
    until math.abs(add) <= 1e-17 * math.abs(sum) or n > 200
    return sum * TWO_SQRTPI
  end
  if ax > 6 then return x > 0 and 1 or -1 end
  local f = ax
  for k = 60, 1, -1 do f = ax + (k / 2) / f end
  local erfc = math.exp(-ax * ax) / (SQRTPI * f)
  return x > 0 and 1 - erfc or erfc - 1
end
M.erf = erf
K.Erf = function(ins)
  local y = ins[1]:float():clone()
  local p = y:data()
  for i = 0, y.numel - 1 do p[i] = erf(p[i]) end
  return { y }
end

-- ---- softmax, reductions ----------------------------------------------------------------
-- opset < 13: the input seen as 2-d [before axis, from axis on], normalised
-- per row; from 13 (and the canonical form): over the one axis
local function softmax(log)
  return function(ins, at, _, ctx)
    local x = ins[1]
    local shape, nd = x.shape, x.ndim
    if ctx.opset >= 13 then
      local axis = at.axis or -1
      if axis < 0 then axis = axis + nd end
      return { log and F.log_softmax(x, axis) or F.softmax(x, axis) }
    end
    local axis = at.axis or 1
    if axis < 0 then axis = axis + nd end
    local x2 = x:reshape(prod(shape, 1, axis), prod(shape, axis + 1, nd))
    local y = log and F.log_softmax(x2, 1) or F.softmax(x2, 1)
    return { y:reshape(shape) }
  end
end
K.Softmax, K.LogSoftmax = softmax(false), softmax(true)
-- axes: an attribute, or ReduceSum's input from opset 13
for op, fn in pairs { ReduceSum = "sum", ReduceMean = "mean", ReduceMax = "amax", ReduceMin = "amin" } do
  K[op] = function(ins, at)
    local axes = at.axes
    if ins[2] then axes = ints(ins[2]) end
    return { F[fn](ins[1], axes, (at.keepdims or 1) ~= 0) }
  end
end

-- ---- the check ---------------------------------------------------------------------------
-- max |got - want| and max |want| (NaN where exactly one of them is NaN: inf)
local function difference(got, want)
  local a, b = got, want
  if a.dtype ~= "float32" or b.dtype ~= "float32" then a, b = a:double(), b:double() end
  a, b = a:contiguous(), b:contiguous()
  local pa, pb = a:data(), b:data()
  local diff, scale = 0, 0
  for i = 0, a.numel - 1 do
    local u, v = pa[i], pb[i]
    if u ~= u or v ~= v then
      if not (u ~= u and v ~= v) then diff = math.huge end
    else
      local d = math.abs(u - v)
      if d > diff then diff = d end
      if math.abs(v) > scale then scale = math.abs(v) end
    end
  end
  return diff, scale
end

local function shape_str(t) return "[" .. table.concat(t.shape, ", ") .. "]" end

-- o.form: what the graph is, for messages ("opset-11 ONNX", "Caffe")
local function compare(node, name, got, want, o)
  local where = string.format("node %s (%s, output %s) in %s", node.name, node.op, name, node.where)
  if not Tensor.is(got) then refuse("the exported graph's " .. where .. " computed no tensor") end
  local same = got.ndim == want.ndim
  for d = 1, got.ndim do same = same and got.shape[d] == want.shape[d] end
  if not same then
    refuse(string.format("the exported graph differs from the forward pass%s at %s: shape %s instead of %s; "
                         .. "nothing was written", o.at or "", where, shape_str(got), shape_str(want)))
  end
  local diff, scale = difference(got, want)
  local tol = node.tolerance or M.TOL
  if not (diff <= tol * math.max(1, scale)) then
    refuse(string.format("the exported graph differs from the forward pass%s at %s: max |difference| %.3g > %g "
                         .. "(largest |value| %.3g); nothing was written. The forward computed this value in a way "
                         .. "its %s form does not (a traced tensor changed in place, or an op without a faithful "
                         .. "form)", o.at or "", where, diff, tol * math.max(1, scale), scale, o.form or "ONNX"))
  end
end

-- Evaluates nodes in order on values (name -> tensor: the graph inputs and
-- constants, never released) and compares every output that o.refs holds
-- (name -> the forward pass's value). A node reads the forward's value of
-- each input the graph computed and the forward holds: what is compared
-- is each node's own error, not the rounding of the nodes before it (a
-- decomposed op, such as ReLU6 as 6 * HardSigmoid(x / 6), differs from the
-- fused kernel by an ulp, and that would grow through a deep network);
-- a value no node computes is refused all the same. o.kernels (default: ONNX's), o.attrs
-- (node -> attributes by name; default: the ONNX node's), o.ctx (passed to
-- kernels), o.form and o.at (messages), o.shapes (a table: filled with each
-- value's shape), o.outputs (names the graph must compute). Values are
-- released after their last use.
function M.run(nodes, values, o)
  local kernels, attrs, ctx, refs = o.kernels or K, o.attrs or attrs_of, o.ctx or {}, o.refs
  local env, owners, kept, const = {}, {}, {}, {}
  for name, t in pairs(values) do env[name] = t; kept[t] = true; const[name] = true end
  local last = {}
  for _, name in ipairs(o.outputs or {}) do last[name] = math.huge end
  for i, n in ipairs(nodes) do for _, nm in ipairs(n.inputs) do last[nm] = math.max(last[nm] or 0, i) end end
  local function drop(nm, i)
    local v = env[nm]
    if v == nil or (last[nm] or 0) > i or const[nm] then return end
    env[nm] = nil
    owners[v] = owners[v] - 1
    if owners[v] == 0 then
      owners[v] = nil
      if not kept[v] then release(v) end
    end
  end
  local function fail(node, msg)
    refuse("cannot check node " .. node.name .. " (" .. node.op .. ", in " .. tostring(node.where) .. "): " .. msg)
  end
  for i, node in ipairs(nodes) do
    local kernel = kernels[node.op]
    if not kernel then fail(node, "the evaluator has no kernel for " .. (o.form or "ONNX") .. " op type " .. node.op) end
    local ins = {}
    for j, nm in ipairs(node.inputs) do
      if nm ~= "" then
        ins[j] = env[nm]
        if ins[j] == nil then refuse("node " .. node.name .. " reads " .. nm .. ", which no earlier node computes") end
        if refs and refs[nm] and not const[nm] then ins[j] = refs[nm] end
      end
    end
    local ok, outs = pcall(kernel, ins, attrs(node), node, ctx)
    if not ok then fail(node, tostring(outs)) end
    for j, nm in ipairs(node.outputs) do
      local y = outs[j]
      env[nm] = y
      if y ~= nil then
        owners[y] = (owners[y] or 0) + 1
        if o.shapes then o.shapes[nm] = { unpack(y.shape) } end
      end
      local want = refs and refs[nm]
      if want then compare(node, nm, y, want, o) end
    end
    for _, nm in ipairs(node.inputs) do drop(nm, i) end
    for _, nm in ipairs(node.outputs) do drop(nm, i) end
  end
  for _, name in ipairs(o.outputs or {}) do
    if env[name] == nil then refuse("the graph output " .. name .. " is computed by no node") end
  end
  local results = {}
  for _, name in ipairs(o.outputs or {}) do results[name] = env[name]; kept[env[name]] = true end
  for nm in pairs(env) do drop(nm, math.huge) end
  return results
end

-- Evaluates g's nodes (ONNX at g.opset) on inputs (name -> tensor) with its
-- initializers and compares every traced value with refs (default g.refs);
-- o: {shapes = {}, at = " at input [2, 3, 256, 256]"}.
function M.check(g, inputs, refs, o)
  o = o or {}
  local values = {}
  for name, t in pairs(g.init_of) do values[name] = t end
  for name, t in pairs(inputs) do values[name] = t end
  local outputs = {}
  for _, out in ipairs(g.outputs or {}) do outputs[#outputs + 1] = out.name end
  M.run(g.nodes, values, { refs = refs or g.refs, ctx = { opset = g.opset or ops.OPSET }, shapes = o.shapes,
                           form = "opset-" .. tostring(g.opset or ops.OPSET) .. " ONNX", at = o.at,
                           outputs = outputs })
end

require("pthcv.export.onnx.evaluate_shape")(M, { unsupported = unsupported, ints = ints, prod = prod })

return M
