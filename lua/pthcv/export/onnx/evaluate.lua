-- lua/pthcv/export/onnx/evaluate.lua: runs an exported graph with pthcv's
-- own kernels before it is written, and refuses it when it does not
-- compute what the forward pass computed.
--
--   evaluate.check(g, x, output_name)   -- raises "... differs ... at node Relu_3 ..."
--
-- Each node is evaluated as ONNX (opset 10) defines its op, from the graph
-- alone: its inputs are the graph's input x, the initializers (the tensors
-- the file holds) and the outputs of earlier nodes, never the traced
-- tensors. Every value the forward pass produced (graph.lua's g.refs: the
-- outputs of traced ops) is compared with it as soon as it is computed; the
-- first one not within TOL * max(1, max |forward value|) is refused, naming
-- the node, its op type, the module it was traced in and the difference.
-- Values are freed after their last use.
--
-- kernels[op_type] = function(ins, at, node) -> {outputs}: ins are the
-- input tensors (nil for an absent optional input), at the attributes by
-- name (floats rounded to float32, as the file holds them). An op type
-- with no kernel is refused: a graph that cannot be checked is not written.
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

-- the values of a small integer tensor (shapes, axes) as Lua numbers
local function ints(t)
  local out = {}
  for i, v in ipairs(t:reshape(-1):totable()) do out[i] = tonumber(v) end
  return out
end

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

-- ---- resampling and padding ------------------------------------------------------------
-- opset 10: output = floor(input * scale), source index floor(dst / scale)
K.Resize = function(ins, at)
  if (at.mode or "nearest") ~= "nearest" then unsupported("Resize mode " .. tostring(at.mode)) end
  local s = ins[2]:totable()
  if s[1] ~= 1 or s[2] ~= 1 then unsupported("Resize of the batch or channel dims") end
  return { F.interpolate(ins[1], { scale_factor = { s[3], s[4] }, mode = "nearest" }) }
end
local PAD_MODE = { constant = "constant", reflect = "reflect", edge = "replicate" }
-- pads {x1_begin, x2_begin, ..., x1_end, x2_end, ...} -> torch's, last dim first
K.Pad = function(ins, at)
  local x = ins[1]
  local nd, p = x.ndim, at.pads
  local mode = PAD_MODE[at.mode or "constant"]
  if not mode then unsupported("Pad mode " .. tostring(at.mode)) end
  local pads = {}
  for d = nd, 1, -1 do pads[#pads + 1] = p[d]; pads[#pads + 1] = p[nd + d] end
  while #pads > 2 and pads[#pads] == 0 and pads[#pads - 1] == 0 do pads[#pads] = nil; pads[#pads] = nil end
  return { F.pad(x, pads, mode, at.value or 0) }
end

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
K.Clip = function(ins, at) return { F.clamp(ins[1], at.min, at.max) } end
K.LeakyRelu = function(ins, at) return { F.leaky_relu(ins[1], at.alpha or as_f32(0.01)) } end
K.Elu = function(ins, at) return { F.elu(ins[1], at.alpha or 1) } end
-- max(0, min(1, alpha x + beta))
K.HardSigmoid = function(ins, at)
  return { F.clamp(ins[1] * (at.alpha or as_f32(0.2)) + (at.beta or 0.5), 0, 1) }
end
-- x for x >= 0, slope x below
K.PRelu = function(ins) return { F.relu(ins[1]) + ins[2] * F.minimum(ins[1], 0) } end

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
-- opset < 13: the input seen as 2-d [before axis, from axis on], normalised per row
local function softmax(log)
  return function(ins, at)
    local x = ins[1]
    local shape, nd = x.shape, x.ndim
    local axis = at.axis or 1
    if axis < 0 then axis = axis + nd end
    local x2 = x:reshape(prod(shape, 1, axis), prod(shape, axis + 1, nd))
    local y = log and F.log_softmax(x2, 1) or F.softmax(x2, 1)
    return { y:reshape(shape) }
  end
end
K.Softmax, K.LogSoftmax = softmax(false), softmax(true)
for op, fn in pairs { ReduceSum = "sum", ReduceMean = "mean", ReduceMax = "amax", ReduceMin = "amin" } do
  K[op] = function(ins, at) return { F[fn](ins[1], at.axes, (at.keepdims or 1) ~= 0) } end
end

-- ---- shapes ------------------------------------------------------------------------------
K.Flatten = function(ins, at)
  local x = ins[1]
  local shape, axis = x.shape, at.axis or 1
  if axis < 0 then axis = axis + x.ndim end
  return { x:reshape(prod(shape, 1, axis), prod(shape, axis + 1, x.ndim)) }
end
-- shape: 0 copies the input's dim, -1 is inferred
K.Reshape = function(ins)
  local x, shape = ins[1], ints(ins[2])
  for i, s in ipairs(shape) do if s == 0 then shape[i] = x.shape[i] end end
  return { x:reshape(shape) }
end
K.Transpose = function(ins, at)
  local x = ins[1]
  local perm = {}
  for i = 1, x.ndim do perm[i] = (at.perm and at.perm[i] or (x.ndim - i)) + 1 end
  return { x:permute(perm) }
end
local DTYPE_NAME = {}
for name, id in pairs(proto.DTYPE) do DTYPE_NAME[id] = name end
K.Cast = function(ins, at) return { ins[1]:to(DTYPE_NAME[at.to] or unsupported("Cast to " .. tostring(at.to))) } end
-- data, starts, ends [, axes [, steps]] (opset 10)
K.Slice = function(ins)
  local y = ins[1]
  local starts, ends = ints(ins[2]), ints(ins[3])
  local axes = ins[4] and ints(ins[4])
  if ins[5] then for _, s in ipairs(ints(ins[5])) do if s ~= 1 then unsupported("Slice steps") end end end
  for i = 1, #starts do
    local axis = axes and axes[i] or (i - 1)
    if axis < 0 then axis = axis + y.ndim end
    local n = y.shape[axis + 1]
    local s, e = starts[i], ends[i]
    if s < 0 then s = s + n end
    if e < 0 then e = e + n end
    s, e = math.min(math.max(s, 0), n), math.min(math.max(e, 0), n)
    y = y:narrow(axis + 1, s + 1, math.max(0, e - s))
  end
  return { y }
end
K.Concat = function(ins, at) return { F.cat(ins, at.axis) } end

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

local function compare(node, name, got, want)
  local where = string.format("node %s (%s, output %s) in %s", node.name, node.op, name, node.where)
  if not Tensor.is(got) then refuse("the exported graph's " .. where .. " computed no tensor") end
  local same = got.ndim == want.ndim
  for d = 1, got.ndim do same = same and got.shape[d] == want.shape[d] end
  if not same then
    refuse(string.format("the exported graph differs from the forward pass at %s: shape %s instead of %s; "
                         .. "nothing was written", where, shape_str(got), shape_str(want)))
  end
  local diff, scale = difference(got, want)
  if not (diff <= M.TOL * math.max(1, scale)) then
    refuse(string.format("the exported graph differs from the forward pass at %s: max |difference| %.3g > %g "
                         .. "(largest |value| %.3g); nothing was written. The forward computed this value in a way "
                         .. "its ONNX form does not (a traced tensor changed in place, or an op without a faithful "
                         .. "opset-%d form)", where, diff, M.TOL * math.max(1, scale), scale, ops.OPSET))
  end
end

-- Evaluates g's nodes on x (the graph input "input") and compares every
-- traced value; output: the graph output's name.
function M.check(g, x, output)
  local env, owners, kept = { input = x }, {}, { [x] = true }
  for name, t in pairs(g.init_of) do env[name] = t; kept[t] = true end
  local last = { [output] = math.huge }
  for i, n in ipairs(g.nodes) do for _, nm in ipairs(n.inputs) do last[nm] = i end end
  local function drop(nm, i)
    local v = env[nm]
    if v == nil or (last[nm] or 0) > i or g.init_of[nm] or nm == "input" then return end
    env[nm] = nil
    owners[v] = owners[v] - 1
    if owners[v] == 0 then
      owners[v] = nil
      if not kept[v] then release(v) end
    end
  end
  for i, node in ipairs(g.nodes) do
    local kernel = K[node.op]
    if not kernel then
      refuse("cannot check node " .. node.name .. " (" .. node.op .. ", in " .. node.where .. "): the evaluator "
             .. "has no kernel for op type " .. node.op .. " (lua/pthcv/export/onnx/evaluate.lua)")
    end
    local ins = {}
    for j, nm in ipairs(node.inputs) do
      if nm ~= "" then
        ins[j] = env[nm]
        if ins[j] == nil then refuse("node " .. node.name .. " reads " .. nm .. ", which no earlier node computes") end
      end
    end
    local ok, outs = pcall(kernel, ins, attrs_of(node), node)
    if not ok then
      refuse("cannot check node " .. node.name .. " (" .. node.op .. ", in " .. node.where .. "): " .. tostring(outs))
    end
    for j, nm in ipairs(node.outputs) do
      local y = outs[j]
      env[nm] = y
      if y ~= nil then owners[y] = (owners[y] or 0) + 1 end
      local want = g.refs[nm]
      if want then compare(node, nm, y, want) end
    end
    for _, nm in ipairs(node.inputs) do drop(nm, i) end
    for _, nm in ipairs(node.outputs) do drop(nm, i) end
  end
  if env[output] == nil and g.refs[output] then refuse("the graph output " .. output .. " is computed by no node") end
  for nm in pairs(env) do drop(nm, math.huge) end
end

return M
