-- lua/pthcv/export/onnx/ops_transformer.lua: the ONNX form of the
-- transformer ops (LayerNorm, LayerNorm over channels, attention), their
-- lowering for the opset and the evaluator's kernel for the canonical
-- LayerNormalization node. Registered into ops.lua's handlers, lower.lua's
-- lowered table and evaluate.lua's kernels (same contracts as there).
--
--   F.layer_norm           canonical LayerNormalization(x, scale, bias;
--                          axis = ndim - #normalized_shape, epsilon). Written
--                          as it is from opset 17; below, as the ops it
--                          stands for: mean = ReduceMean(x), d = x - mean,
--                          var = ReduceMean(d ^ 2), d / Sqrt(var + eps) *
--                          scale + bias (ReduceMean over the normalised axes,
--                          an attribute up to opset 17).
--   F.layer_norm_channels  (ConvNeXt's LayerNorm2d, dim 1 of [N, C, ...]):
--                          Transpose to channels last, the LayerNormalization
--                          above over the last axis, Transpose back.
--   F.attention            Transpose(k), MatMul, Mul by the scale, Add of the
--                          bias, Softmax over the last axis, MatMul with v
--                          (then a Transpose of heads and rows for
--                          heads_last). Cosine attention (Swin V2): q and k
--                          rows divided by Max(Sqrt(ReduceSum(x * x)), 1e-12)
--                          first; per-head scales: the scores multiplied by
--                          scale * head_scale[h], one [H, 1, 1] constant
--                          (float32 products, as the kernel forms them).
--   F.group_norm           Reshape to [N, G, -1], LayerNorm's decomposed
--                          form over the last axis, Reshape back, Mul, Add.
-- GELU (exact, Erf; approximate='tanh', Tanh) is in ops.lua's activations.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local ops = require "pthcv.export.onnx.ops"
local lower = require "pthcv.export.onnx.lower"
local evaluate = require "pthcv.export.onnx.evaluate"
local graph = require "pthcv.export.onnx.graph"

local H, K, L = ops.handlers, evaluate.kernels, lower.lowered
local refuse = graph.refuse

-- the canonical LayerNormalization node of x (a value name, rank nd) over
-- its last n dims; weight/bias tensors or nil (ONNX's Scale is required:
-- ones when the op had none)
local function layer_norm_node(g, x, nd, n, weight, bias, eps, shape)
  if not weight then
    local ones = {}
    for i = nd - n + 1, nd do ones[#ones + 1] = shape[i] end
    weight = Tensor.ones(ones)
  end
  local inputs = { x, g:input(weight, "weight") }
  if bias then inputs[3] = g:input(bias, "bias") end
  local y = g:op("LayerNormalization", inputs, { { "axis", "int", nd - n }, { "epsilon", "float", eps } })
  g.nodes[#g.nodes].in_shape = shape -- its rank, for lower.lua
  return y
end

H["F.layer_norm"] = function(g, a, r)
  local x, rec = a[1], a.rec
  g:output(r[1], layer_norm_node(g, g:input(x), x.ndim, #rec.normalized_shape, a[2], a[3], rec.eps, x.shape))
end

H["F.layer_norm_channels"] = function(g, a, r)
  local x = a[1]
  local nd = x.ndim
  if nd < 2 then refuse("layer_norm_channels of a " .. nd .. "-d tensor") end
  local to_last, to_first = { 0 }, { 0, nd - 1 }
  for d = 2, nd - 1 do to_last[#to_last + 1] = d; to_first[#to_first + 1] = d - 1 end
  to_last[nd] = 1
  local t = g:op("Transpose", { g:input(x) }, { { "perm", "ints", to_last } })
  local last_shape = {}
  for i, p in ipairs(to_last) do last_shape[i] = x.shape[p + 1] end
  local y = layer_norm_node(g, t, nd, 1, a[2], a[3], a.rec.eps, last_shape)
  g:output(r[1], g:op("Transpose", { y }, { { "perm", "ints", to_first } }))
end

-- F.group_norm (RetinaNet v2's and FCOS's heads): x [N, C, ...] Reshape-d
-- to [N, G, -1], normalised over the last axis as LayerNorm's decomposed
-- form (ReduceMean, Sub, Pow, ReduceMean, Add eps, Sqrt, Div: every opset
-- from 10 to 17; GroupNormalization is opset 18), Reshape-d back to x's
-- Shape, then Mul by weight and Add of bias [C, 1, ...]
H["F.group_norm"] = function(g, a, r)
  local x, rec = a[1], a.rec
  if x.ndim < 2 then refuse("group_norm of a " .. x.ndim .. "-d tensor") end
  local xin = g:input(x)
  local t = g:op("Reshape", { xin, g:ints({ 0, rec.num_groups, -1 }, "groups") })
  local reduce = { { "axes", "ints", { -1 } }, { "keepdims", "int", 1 } }
  local d = g:op("Sub", { t, g:op("ReduceMean", { t }, reduce) })
  local var = g:op("ReduceMean", { g:op("Pow", { d, g:scalar(2) }) }, reduce)
  local y = g:op("Div", { d, g:op("Sqrt", { g:op("Add", { var, g:scalar(rec.eps) }) }) })
  y = g:op("Reshape", { y, g:op("Shape", { xin }) })
  local per_channel = { x.shape[2] }
  for _ = 3, x.ndim do per_channel[#per_channel + 1] = 1 end
  if a[2] then y = g:op("Mul", { y, g:input(a[2]:reshape(per_channel), "weight") }) end
  if a[3] then y = g:op("Add", { y, g:input(a[3]:reshape(per_channel), "bias") }) end
  g:output(r[1], y)
end

-- perm of rank nd swapping dims i and j (0-based)
local function swap(nd, i, j)
  local p = {}
  for d = 1, nd do p[d] = d - 1 end
  p[i + 1], p[j + 1] = j, i
  return p
end

-- x's rows (its last dim) divided by their L2 norm, at least 1e-12 (the
-- kernel's cosine attention; ReduceSum is lowered for the opset)
local function l2_rows(g, x)
  local ss = g:op("ReduceSum", { g:op("Mul", { x, x }) }, { { "axes", "ints", { -1 } }, { "keepdims", "int", 1 } })
  return g:op("Div", { x, g:op("Max", { g:op("Sqrt", { ss }), g:scalar(1e-12) }) })
end

-- the scores' factor: the scale, or [H, 1, 1] of scale * head_scale[h] in float32
local function score_factor(g, scale, head_scale, q)
  if not head_scale then return g:scalar(scale) end
  local hs = head_scale:float():contiguous()
  if hs.numel ~= q.shape[q.ndim - 2] then
    refuse(string.format("attention: %d head scales for %d heads", hs.numel, q.shape[q.ndim - 2]))
  end
  local f = Tensor.zeros({ hs.numel, 1, 1 })
  local src, dst = hs:data(), f:data()
  for h = 0, hs.numel - 1 do dst[h] = scale * src[h] end -- rounded to float32 by dst, as the kernel's product
  return g:input(f, "head_scale")
end

H["F.attention"] = function(g, a, r)
  local q, k, v, bias, head_scale, rec = a[1], a[2], a[3], a[4], a[5], a.rec
  local scale = rec.scale ~= 0 and rec.scale or 1 / math.sqrt(q.shape[q.ndim])
  local qn, kn = g:input(q), g:input(k)
  if rec.cosine then qn, kn = l2_rows(g, qn), l2_rows(g, kn) end
  local kt = g:op("Transpose", { kn }, { { "perm", "ints", swap(k.ndim, k.ndim - 2, k.ndim - 1) } })
  local s = g:op("Mul", { g:op("MatMul", { qn, kt }), score_factor(g, scale, head_scale, q) })
  if bias then s = g:op("Add", { s, g:input(bias, "attn_bias") }) end
  local p = g:op("Softmax", { s }, { { "axis", "int", -1 } })
  local out = g:op("MatMul", { p, g:input(v) })
  if rec.heads_last then
    local nd = r[1].ndim
    out = g:op("Transpose", { out }, { { "perm", "ints", swap(nd, nd - 3, nd - 2) } })
  end
  g:output(r[1], out)
  if rec.need_weights and r[2] then g:output(r[2], p) end
end

-- ---- as_strided (the models' views of q, k and v in a fused qkv, and Swin's
-- patch merging) -------------------------------------------------------------------------
-- A view of a contiguous traced tensor x (storage offset from x's first
-- element rel): the elements of x seen as a grid of dims (the view's
-- strides, ascending; between two of them a dim of the stride's quotient,
-- the outermost of whatever is left), each dim of the view a [start,
-- start + size) range of one grid dim and every other grid dim one index.
-- Written Reshape (to the grid), Slice, Reshape (the kept dims), Transpose
-- (into the view's order) and Reshape (the view's size-1 dims). Views that
-- are no such box (overlapping, stride 0, not a whole grid) are refused.
-- with_ones: size-1 dims of positive stride are grid dims too.
local function strided_box(x, rec, with_ones)
  local function no(why)
    refuse(string.format("as_strided of %s (shape [%s], stride [%s], offset %d) has no ONNX form: %s",
      "a [" .. table.concat(x.shape, ", ") .. "] tensor", table.concat(rec.shape, ", "),
      table.concat(rec.stride, ", "), rec.offset, why))
  end
  local expect = 1
  for d = x.ndim, 1, -1 do
    if x.shape[d] ~= 1 and x.stride[d] ~= expect then no("its input is not contiguous") end
    expect = expect * x.shape[d]
  end
  local dims = {} -- the view's dims of size > 1, ascending stride
  for i, n in ipairs(rec.shape) do
    if n == 0 then no("it is empty") end
    if n > 1 or (with_ones and rec.stride[i] > 0) then
      dims[#dims + 1] = { dim = i - 1, size = n, stride = rec.stride[i] }
    end
  end
  table.sort(dims, function(p, q) -- ties: a size-1 dim after the other
    if p.stride ~= q.stride then return p.stride < q.stride end
    if p.size ~= q.size then return p.size > q.size end
    return p.dim < q.dim
  end)
  local grid, acc = {}, 1 -- grid dims, innermost first: {size, stride, view = dims entry or nil}
  for i, d in ipairs(dims) do
    local prev = dims[i - 1]
    if d.size == 1 and prev and prev.stride == d.stride then -- a size-1 dim beside one of its stride
      grid[#grid + 1] = { size = 1, stride = d.stride, view = d, tie = true }
      goto next
    end
    if d.stride <= 0 or d.stride % acc ~= 0 or (i > 1 and d.stride == dims[i - 1].stride) then
      no("its strides are no grid of the input's elements")
    end
    if d.stride > acc then grid[#grid + 1] = { size = d.stride / acc, stride = acc }; acc = d.stride end
    local after = dims[i + 1]
    if after and after.stride == d.stride and after.size == 1 then after = dims[i + 2] end
    local outer = after and after.stride or x.numel
    if outer % d.stride ~= 0 then no("its strides are no grid of the input's elements") end
    if after and d.size * d.stride > outer then no("it overlaps itself (an element seen twice)") end
    grid[#grid + 1] = { size = outer / d.stride, stride = d.stride, view = d }
    acc = outer
    ::next::
  end
  if acc ~= x.numel then
    if x.numel % acc ~= 0 then no("its strides are no grid of the input's elements") end
    grid[#grid + 1] = { size = x.numel / acc, stride = acc }
  end
  local rel = rec.offset - x.offset
  local left = rel
  for j = #grid, 1, -1 do
    local e = grid[j]
    e.start = e.tie and 0 or math.floor(left / e.stride)
    left = left - e.start * e.stride
    local len = e.view and e.view.size or 1
    if e.start + len > e.size then
      no(j == #grid and "it reaches past the input's elements"
         or "a row of it crosses into the next (no Slice of the grid its strides make)")
    end
  end
  if left ~= 0 or rel < 0 then no("its offset is outside the input") end
  return grid
end

H["Tensor.as_strided"] = function(g, a, r)
  local x, y = a[1], r[1]
  -- size-1 dims in the grid too when their strides fit it (a batch of 1 as a
  -- batch of n: the same nodes, for --dynamic), else without them
  local ok, grid = pcall(strided_box, x, a.rec, true)
  if not ok then grid = strided_box(x, a.rec, false) end
  local outer_first, starts, ends, axes, kept = {}, {}, {}, {}, {}
  for j = #grid, 1, -1 do
    local e, axis = grid[j], #grid - j
    outer_first[#outer_first + 1] = e.size
    local len = e.view and e.view.size or 1
    if e.start ~= 0 or len ~= e.size then
      starts[#starts + 1], ends[#ends + 1], axes[#axes + 1] = e.start, e.start + len, axis
    end
    if e.view then kept[#kept + 1] = e.view end
  end
  local t = ops.reshape_node(g, g:input(x), x.shape, outer_first)
  if #axes > 0 then
    t = g:op("Slice", { t, g:ints(starts, "starts"), g:ints(ends, "ends"), g:ints(axes, "axes") })
  end
  local kept_shape, perm, by_dim = {}, {}, {}
  for i, d in ipairs(kept) do kept_shape[i] = d.size; by_dim[#by_dim + 1] = { dim = d.dim, at = i - 1 } end
  local sliced = {}
  for j = #grid, 1, -1 do sliced[#sliced + 1] = grid[j].view and grid[j].view.size or 1 end
  if #kept ~= #grid then t = ops.reshape_node(g, t, sliced, kept_shape) end
  table.sort(by_dim, function(p, q) return p.dim < q.dim end)
  local identity = true
  for i, b in ipairs(by_dim) do perm[i] = b.at; if b.at ~= i - 1 then identity = false end end
  local permuted = {}
  for i, p in ipairs(perm) do permuted[i] = kept_shape[p + 1] end
  if not identity then t = g:op("Transpose", { t }, { { "perm", "ints", perm } }) end
  if #permuted ~= y.ndim then t = ops.reshape_node(g, t, permuted, y.shape) end
  g:output(y, t)
end

-- ---- lowering -------------------------------------------------------------------------
local function attr(node, name)
  for _, at in ipairs(node.attrs) do if at[1] == name then return at[3] end end
end

L.LayerNormalization = function(g, node, _, opset)
  if opset >= 17 then return g:node("LayerNormalization", node.inputs, node.outputs, node.attrs) end
  local axis, nd = attr(node, "axis"), #node.in_shape
  local axes = {}
  for d = axis - nd, -1 do axes[#axes + 1] = d end -- negative: the form OpenCV's LayerNorm fusion reads
  local reduce = { { "axes", "ints", axes }, { "keepdims", "int", 1 } }
  local x = node.inputs[1]
  local mean = g:op("ReduceMean", { x }, reduce)
  g.nodes[#g.nodes].layer_norm = true -- opencv46.lua names the LayerNorm by this node
  local d = g:op("Sub", { x, mean })
  local var = g:op("ReduceMean", { g:op("Pow", { d, g:scalar(2) }) }, reduce)
  local y = g:op("Div", { d, g:op("Sqrt", { g:op("Add", { var, g:scalar(attr(node, "epsilon")) }) }) })
  if node.inputs[3] then
    return g:node("Add", { g:op("Mul", { y, node.inputs[2] }), node.inputs[3] }, node.outputs)
  end
  return g:node("Mul", { y, node.inputs[2] }, node.outputs)
end

-- ---- the evaluator's kernel (ONNX's LayerNormalization, opset 17) --------------------
K.LayerNormalization = function(ins, at)
  local x = ins[1]
  local axis = at.axis or -1
  if axis < 0 then axis = axis + x.ndim end
  local shape = {}
  for d = axis + 1, x.ndim do shape[#shape + 1] = x.shape[d] end
  return { F.layer_norm(x, shape, ins[2], ins[3], at.epsilon or 1e-5) }
end

return H
