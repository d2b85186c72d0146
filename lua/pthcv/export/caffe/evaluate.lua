-- lua/pthcv/export/caffe/evaluate.lua: the Caffe layers pthcv writes, run
-- with pthcv's kernels as Caffe (and OpenCV's Caffe importer) defines them,
-- for the check every export passes (lua/pthcv/export/onnx/evaluate.lua's
-- run, with these kernels): kernel(ins, param, layer) -> {tops}, param
-- the layer's *_param table, layer.blobs its weights.
--
-- Pooling computes Caffe's output size itself (ceil_mode as written; a
-- last window that would start in the padding dropped, as Caffe and
-- OpenCV do) and refuses a layer whose kernel gives another size.
local F = require "pthcv.nn.functional"

local K = {}

local function unsupported(what) error("not evaluated: " .. what, 0) end

local function prod(list, i, j)
  local n = 1
  for k = i, j do n = n * list[k] end
  return n
end

-- ---- convolution, linear, normalisation ---------------------------------------------------
K.Convolution = function(ins, p, l)
  local w, b = l.blobs[1], p.bias_term and l.blobs[2] or nil
  local pk = F.conv2d_prepare(w, b, { stride = { p.stride_h or 1, p.stride_w or 1 },
                                      padding = { p.pad_h or 0, p.pad_w or 0 },
                                      dilation = p.dilation or 1, groups = p.group or 1 })
  local y = F.conv2d_packed(pk, ins[1])
  F.pack_free(pk)
  return { y }
end
K.Deconvolution = function(ins, p, l)
  local w, b = l.blobs[1], p.bias_term and l.blobs[2] or nil
  return { F.conv_transpose2d(ins[1], w, b, { p.stride_h or 1, p.stride_w or 1 }, { p.pad_h or 0, p.pad_w or 0 }, 0,
                              p.group or 1, p.dilation or 1) }
end
-- the dims from axis on flattened, times weight^T [+ bias]
K.InnerProduct = function(ins, p, l)
  local x = ins[1]
  local axis = p.axis or 1
  local lead = {}
  for d = 1, axis do lead[d] = x.shape[d] end
  local y = F.linear(x:reshape(prod(x.shape, 1, axis), prod(x.shape, axis + 1, x.ndim)), l.blobs[1],
                     p.bias_term and l.blobs[2] or nil)
  lead[#lead + 1] = p.num_output
  return { y:reshape(lead) }
end
-- blobs: mean, variance, scale factor (both divided by it)
K.BatchNorm = function(ins, p, l)
  local sf = l.blobs[3]:totable()[1]
  local f = sf == 0 and 0 or 1 / sf
  return { F.batch_norm(ins[1], l.blobs[1] * f, l.blobs[2] * f, nil, nil, false, 0.1, p.eps or 1e-5) }
end
-- one bottom: per-channel (axis 1) scale [+ bias] from blobs; two bottoms:
-- x times the second, [N, C] at axis 0
K.Scale = function(ins, p, l)
  local x = ins[1]
  local axis = p.axis or 1
  local s = ins[2] or l.blobs[1]
  local shape = {}
  for d = 1, x.ndim do shape[d] = 1 end
  for d = 1, s.ndim do shape[axis + d] = s.shape[d] end
  local y = x * s:reshape(shape)
  if p.bias_term then y = y + l.blobs[2]:reshape(shape) end
  return { y }
end

-- ---- activations --------------------------------------------------------------------------
K.ReLU = function(ins, p)
  if (p.negative_slope or 0) ~= 0 then return { F.leaky_relu(ins[1], p.negative_slope) } end
  return { F.relu(ins[1]) }
end
K.ReLU6 = function(ins) return { F.clamp(ins[1], 0, 6) } end
K.Sigmoid = function(ins) return { F.sigmoid(ins[1]) } end
K.TanH = function(ins) return { F.tanh(ins[1]) } end
K.ELU = function(ins, p) return { F.elu(ins[1], p.alpha or 1) } end
K.Swish = function(ins) return { ins[1] * F.sigmoid(ins[1]) } end
K.PReLU = function(ins, _, l)
  local x, w = ins[1], l.blobs[1]
  local shape = { w.numel }
  for _ = 3, x.ndim do shape[#shape + 1] = 1 end
  return { F.relu(x) + w:reshape(w.numel == 1 and { 1 } or shape) * F.minimum(x, 0) }
end
-- (shift + scale x) ^ power
K.Power = function(ins, p)
  if (p.power or 1) ~= 1 then unsupported("Power with power " .. p.power) end
  return { ins[1] * (p.scale or 1) + (p.shift or 0) }
end
K.Log = function(ins)
  local y = ins[1]:clone()
  local d = y:data()
  for i = 0, y.numel - 1 do d[i] = math.log(d[i]) end
  return { y }
end
K.Eltwise = function(ins, p)
  local op = p.operation or "SUM"
  local y
  if op == "SUM" then
    local c = p.coeff or {}
    y = ins[1] * (c[1] or 1)
    for i = 2, #ins do y = y + ins[i] * (c[i] or 1) end
  elseif op == "PROD" then
    y = ins[1]
    for i = 2, #ins do y = y * ins[i] end
  else
    y = ins[1]
    for i = 2, #ins do y = F.maximum(y, ins[i]) end
  end
  if #ins == 1 then y = y:clone() end
  return { y }
end

-- ---- pooling -------------------------------------------------------------------------------
local function caffe_pool_out(n, k, s, pad, ceil)
  local v = (n + 2 * pad - k) / s
  local out = (ceil and math.ceil(v) or math.floor(v)) + 1
  if pad > 0 and (out - 1) * s >= n + pad then out = out - 1 end
  return out
end
K.Pooling = function(ins, p)
  local x = ins[1]
  local max = (p.pool or "MAX") == "MAX"
  if p.global_pooling then
    return { max and F.adaptive_max_pool2d(x, 1) or F.adaptive_avg_pool2d(x, 1) }
  end
  local k, s, pad = { p.kernel_h, p.kernel_w }, { p.stride_h or 1, p.stride_w or 1 }, { p.pad_h or 0, p.pad_w or 0 }
  local ceil = p.ceil_mode ~= false
  local y
  if max then y = F.max_pool2d(x, k, s, pad, 1, ceil) else y = F.avg_pool2d(x, k, s, pad, ceil, true) end
  local oh = caffe_pool_out(x.shape[3], k[1], s[1], pad[1], ceil)
  local ow = caffe_pool_out(x.shape[4], k[2], s[2], pad[2], ceil)
  if y.shape[3] ~= oh or y.shape[4] ~= ow then
    unsupported(string.format("Caffe's output is %dx%d, the kernel's %dx%d", oh, ow, y.shape[3], y.shape[4]))
  end
  return { y }
end

-- ---- shapes ------------------------------------------------------------------------------------
K.Flatten = function(ins, p)
  local x = ins[1]
  local axis, last = p.axis or 1, p.end_axis or -1
  if last < 0 then last = last + x.ndim end
  local shape = {}
  for d = 1, axis do shape[#shape + 1] = x.shape[d] end
  shape[#shape + 1] = prod(x.shape, axis + 1, last + 1)
  for d = last + 2, x.ndim do shape[#shape + 1] = x.shape[d] end
  return { x:reshape(shape) }
end
K.Reshape = function(ins, p)
  local x, dims = ins[1], {}
  for i, d in ipairs(p.shape.dim) do dims[i] = d == 0 and x.shape[i] or d end
  return { x:reshape(dims) }
end
K.Permute = function(ins, p)
  local perm = {}
  for i, d in ipairs(p.order) do perm[i] = d + 1 end
  return { ins[1]:permute(perm) }
end
K.Concat = function(ins, p) return { F.cat(ins, p.axis or 1) } end
K.Slice = function(ins, p)
  local x, axis = ins[1], p.axis or 1
  local cuts = { 0 }
  for _, c in ipairs(p.slice_point) do cuts[#cuts + 1] = c end
  cuts[#cuts + 1] = x.shape[axis + 1]
  local outs = {}
  for i = 1, #cuts - 1 do outs[i] = x:narrow(axis + 1, cuts[i] + 1, cuts[i + 1] - cuts[i]) end
  return outs
end
K.Split = function(ins, _, l)
  local outs = {}
  for i = 1, #l.top do outs[i] = ins[1]:clone() end
  return outs
end
K.Softmax = function(ins, p) return { F.softmax(ins[1], p.axis or 1) } end

return K
