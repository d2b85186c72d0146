-- lua/pthcv/export/onnx/opencv46.lua: what Debian's OpenCV 4.6
-- (cv::dnn::readNetFromONNX) cannot run of a graph pthcv writes, found by
-- loading each form in cv2 4.6 (spec/onnx_opset_spec.lua keeps the list
-- true: every form pthcv writes for the zoo and the examples runs there).
--
--   opencv46.warnings(g) -> {"node ReduceSum_3 (ReduceSum, in ...): ...", ...}
--
-- rules[op_type] = function(node, g) -> the reason, or nil when OpenCV 4.6
-- runs it. The exporter warns with each (the file is still valid ONNX for
-- other runtimes); lower.lua already avoids the forms it can (Clip from
-- opset 11).
local M = { rules = {} }
local R = M.rules

local function has_constant_input(node, g)
  for _, nm in ipairs(node.inputs) do if g.init_of[nm] then return true end end
  return false
end

R.Clip = function(node)
  if #node.inputs > 1 then return "its importer takes Clip's bounds only as attributes (opset 10)" end
end
R.ReduceSum = function(node)
  if #node.inputs > 1 then return "its importer reads no ReduceSum with an axes input (opset 13 on); use --opset 12" end
end
for _, op in ipairs { "Max", "Min" } do
  R[op] = function(node, g)
    if has_constant_input(node, g) then
      return op .. " of a constant: its Eltwise layer takes computed inputs only (use F.clamp)"
    end
  end
end

-- the math ops (lua/pthcv/export/onnx/ops_math.lua; docs/nn.md says what
-- cv2 4.6 made of each)
for _, op in ipairs { "Where", "TopK", "Gather", "And", "Or", "Xor", "IsNaN" } do
  R[op] = function() return "its importer has no " .. op .. " layer" end
end
R.Pow = function(node, g)
  if g.init_of[node.inputs[1]] or not g.init_of[node.inputs[2]] then
    return "its importer reads Pow with a constant exponent only"
  end
end
for _, op in ipairs { "Greater", "Less", "Equal" } do
  R[op] = function(node, g)
    if has_constant_input(node, g) then return op .. " with a constant operand gives wrong masks there" end
    return "its importer compares a tensor with a constant only"
  end
end
R.Not = function() return "Not gives wrong masks after some comparisons there" end
for _, op in ipairs { "ReduceMax", "ReduceMin" } do
  R[op] = function(node)
    for _, a in ipairs(node.attrs) do if a[1] == "axes" then return nil end end
    return "a " .. op .. " over all axes"
  end
end
for _, op in ipairs { "Add", "Sub" } do
  R[op] = function(node, g)
    for _, nm in ipairs(node.inputs) do
      local c = g.init_of[nm]
      if c and c.dtype == "int64" then
        return "it drops an " .. op .. " of an integer constant (1-based indices come out 0-based)"
      end
    end
  end
end

-- LayerNorm (ops_transformer.lua): neither form runs there, whatever the
-- rank (the Div of the decomposed form "axis != outShape.size()", or a
-- Reshape or shape assertion at run time)
R.LayerNormalization = function() return "its importer has no LayerNormalization layer (opset 17)" end
R.ReduceMean = function(node)
  if node.layer_norm then
    return "its importer fails on the LayerNorm written from this ReduceMean (ReduceMean, Sub, Pow, ReduceMean, "
      .. "Add, Sqrt, Div): OpenCV 4.6 runs no LayerNorm"
  end
end

-- Warnings for g's nodes (lowered, at g.opset) and for float16 initializers.
function M.warnings(g)
  local out = {}
  for _, node in ipairs(g.nodes) do
    local rule = R[node.op]
    local why = rule and rule(node, g)
    if why then
      out[#out + 1] = string.format("OpenCV 4.6 cannot run node %s (%s, in %s): %s", node.name, node.op, node.where, why)
    end
  end
  for _, e in ipairs(g.inits) do
    if e.tensor.dtype == "float16" then
      out[#out + 1] = "OpenCV 4.6 cannot read float16 initializers (\"Unsupported data type: FLOAT16\"): --half "
        .. "files are for other ONNX runtimes"
      break
    end
  end
  return out
end

return M
