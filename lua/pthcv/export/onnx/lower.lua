-- lua/pthcv/export/onnx/lower.lua: the canonical nodes the handlers write
-- (ops.lua's header) rewritten for one opset, 10 to 17.
--
--   lower.run(g, opset)   -- g.nodes replaced by the opset's forms
--
-- What changes with the opset, and the form written:
--   Clip       opset 10: min/max attributes. From 11 ONNX takes them as
--              inputs, which OpenCV 4.6's importer refuses ("Clip: expected
--              node_proto.input_size() == 1"); so from 11 a clamp to
--              [lo, hi] is written with the ops it reads: (hi - lo) *
--              HardSigmoid(x; 1/(hi - lo), -lo/(hi - lo)) + lo (ReLU6 as
--              6 * HardSigmoid(x / 6), within a float32 rounding of the
--              clamp), Relu(x - lo) + lo or hi - Relu(hi - x) when one
--              bound is infinite, Relu for [0, inf).
--   Pad        pads and value: attributes at 10, inputs from 11.
--   Resize     10: nearest only, Resize(x, scales) (asymmetric, floor);
--              11 and 12: Resize(x, roi, scales [, sizes]) with an empty
--              roi (and empty scales beside sizes); 13+: roi and scales
--              may be left out ("").
--   Softmax,   before 13 ONNX normalises over all dims from the axis on:
--   LogSoftmax the one-axis softmax is written as it is when the later
--              dims are 1 or it is the last dim, else between two
--              Transposes that make it the last.
--   ReduceSum  axes: an attribute before 13, an input from 13.
--   HardSwish  opset 14; before, x * HardSigmoid(x; 1/6, 1/2).
-- Every other node is kept. Nodes keep their module (where) and the
-- lowered forms end in the canonical node's outputs, so that the
-- evaluator compares the same values.
local graph = require "pthcv.export.onnx.graph"

local refuse = graph.refuse
local M = {}

local function attr_map(node)
  local t = {}
  for _, a in ipairs(node.attrs) do t[a[1]] = a end
  return t
end

local function without(attrs, names)
  local out = {}
  for _, a in ipairs(attrs) do if not names[a[1]] then out[#out + 1] = a end end
  return out
end

-- lower[op](g, node, at, opset): emits the node's replacement with g:node/g:op
-- (into the new list); at: attribute records by name.
local lower = {}

-- clamp(x, lo, hi) from opset 11 (see the header)
local function clamp(g, x, lo, hi, out)
  local finite_lo, finite_hi = lo > -math.huge, hi < math.huge
  if finite_lo and finite_hi then
    local w = hi - lo
    local y = g:op("HardSigmoid", { x }, { { "alpha", "float", 1 / w }, { "beta", "float", -lo / w } })
    if lo == 0 then return g:node("Mul", { y, g:scalar(w) }, out) end
    return g:node("Add", { g:op("Mul", { y, g:scalar(w) }), g:scalar(lo) }, out)
  elseif finite_lo then
    if lo == 0 then return g:node("Relu", { x }, out) end
    return g:node("Add", { g:op("Relu", { g:op("Sub", { x, g:scalar(lo) }) }), g:scalar(lo) }, out)
  elseif finite_hi then
    return g:node("Sub", { g:scalar(hi), g:op("Relu", { g:op("Sub", { g:scalar(hi), x }) }) }, out)
  end
  return g:node("Identity", { x }, out)
end

lower.Clip = function(g, node, at, opset)
  if opset <= 10 or #node.inputs > 1 then return g:node("Clip", node.inputs, node.outputs, node.attrs) end
  return clamp(g, node.inputs[1], at.min and at.min[3] or -math.huge, at.max and at.max[3] or math.huge,
               node.outputs)
end

lower.Pad = function(g, node, at, opset)
  if opset <= 10 or not at.pads then return g:node("Pad", node.inputs, node.outputs, node.attrs) end
  local inputs = { node.inputs[1], g:ints(at.pads[3], "pads") }
  if at.value and at.value[3] ~= 0 then inputs[3] = g:scalar(at.value[3], "pad_value") end
  return g:node("Pad", inputs, node.outputs, without(node.attrs, { pads = true, value = true }))
end

-- sizes (the canonical H, W) as whole factors of the input's when they
-- are (the same sampling, and a file that runs at any batch), else the
-- four output dims.
lower.Resize = function(g, node, at, opset)
  if not (at.scales or at.sizes) then return g:node("Resize", node.inputs, node.outputs, node.attrs) end
  local x, from = node.inputs[1], node.in_shape
  local scales, sizes = at.scales and at.scales[3], nil
  if not scales then
    local oh, ow = at.sizes[3][1], at.sizes[3][2]
    if node.fixed_size then -- to one size whatever the input's (detector_dynamic.lua)
      sizes = { from[1], from[2], oh, ow }
    elseif from[3] > 0 and from[4] > 0 and oh % from[3] == 0 and ow % from[4] == 0 then
      scales = { 1, 1, oh / from[3], ow / from[4] }
    elseif from[1] < 0 or from[2] < 0 or from[3] < 0 or from[4] < 0 then
      refuse(string.format("node %s (Resize, in %s): a resize to %dx%d, no whole factor of a dynamic input's size",
                           node.name, node.where, oh, ow))
    else
      sizes = { from[1], from[2], oh, ow }
    end
  end
  if opset <= 10 then
    if at.mode[3] ~= "nearest" then
      refuse(string.format("node %s (Resize, in %s): bilinear interpolate has no opset-10 form (Resize's "
        .. "coordinate_transformation_mode, which torch's bilinear needs, is opset 11): export with --opset 11 or "
        .. "later", node.name, node.where))
    end
    if not scales then scales = { 1, 1, sizes[3] / from[3], sizes[4] / from[4] } end
    return g:node("Resize", { x, g:constant(scales, "float32", { 4 }, "scales") }, node.outputs,
                  { { "mode", "string", "nearest" } })
  end
  local inputs
  local empty = function(hint) return g:constant({}, "float32", { 0 }, hint) end
  if opset <= 12 then
    inputs = { x, empty("roi") }
  else
    inputs = { x, "" }
  end
  if scales then
    inputs[3] = g:constant(scales, "float32", { 4 }, "scales")
  else
    inputs[3] = opset <= 12 and empty("scales") or ""
    inputs[4] = g:ints(sizes, "sizes")
  end
  return g:node("Resize", inputs, node.outputs, without(node.attrs, { scales = true, sizes = true }))
end

local function softmax(op)
  return function(g, node, at, opset)
    local shape = node.in_shape
    local axis = at.axis and at.axis[3] or (opset >= 13 and -1 or 1)
    if opset >= 13 or shape == nil then return g:node(op, node.inputs, node.outputs, node.attrs) end
    local nd = #shape
    if axis < 0 then axis = axis + nd end
    local trailing_ones = true
    for d = axis + 2, nd do if shape[d] ~= 1 then trailing_ones = false end end
    if trailing_ones then return g:node(op, node.inputs, node.outputs, node.attrs) end
    local perm = {}
    for d = 1, nd do perm[d] = d - 1 end
    perm[axis + 1], perm[nd] = nd - 1, axis
    local t = g:op("Transpose", node.inputs, { { "perm", "ints", perm } })
    t = g:op(op, { t }, { { "axis", "int", nd - 1 } })
    return g:node("Transpose", { t }, node.outputs, { { "perm", "ints", perm } })
  end
end
lower.Softmax, lower.LogSoftmax = softmax("Softmax"), softmax("LogSoftmax")

lower.ReduceSum = function(g, node, at, opset)
  if opset < 13 or not at.axes then return g:node("ReduceSum", node.inputs, node.outputs, node.attrs) end
  return g:node("ReduceSum", { node.inputs[1], g:ints(at.axes[3], "axes") }, node.outputs,
                without(node.attrs, { axes = true }))
end

lower.HardSwish = function(g, node, _, opset)
  if opset >= 14 then return g:node("HardSwish", node.inputs, node.outputs, node.attrs) end
  local x = node.inputs[1]
  return g:node("Mul", { x, g:op("HardSigmoid", { x }, { { "alpha", "float", 1 / 6 }, { "beta", "float", 0.5 } }) },
                node.outputs)
end

M.lowered = lower

-- Rewrites g's nodes for opset.
function M.run(g, opset)
  local old = g.nodes
  local new = {}
  g.nodes = new
  local saved_where = g.where
  for _, node in ipairs(old) do
    local fn = lower[node.op]
    if fn then
      g.where = node.where
      fn(g, node, attr_map(node), opset)
      local last = new[#new] -- the node that computes the canonical node's outputs keeps its name
      if last.op == node.op then last.name = node.name end
      last.reshape, last.in_shape = node.reshape, node.in_shape
    else
      new[#new + 1] = node
    end
  end
  g.where = saved_where
  g.opset = opset
end

return M
