-- lua/pthcv/export/caffe/layers_shape.lua: the Caffe forms of the shape,
-- joining, softmax and resampling nodes (layers.lua's table C; its header
-- lists them). Installed by layers.lua: require(...)(C, helpers).
local Tensor = require "pthcv.tensor"
local values = require("pthcv.export.onnx.evaluate").values

return function(C, h)
  local fail = h.fail

  C.Identity = function(cv, node)
    cv:layer("Split", node.name, { cv:blob(node.inputs[1]) }, node.outputs)
  end
  C.Cast = function(cv, node)
    if cv.g.refs[node.outputs[1]] and cv.g.refs[node.outputs[1]].dtype ~= "float32" then
      fail(node, "Caffe computes in float32 only")
    end
    cv.alias[node.outputs[1]] = cv:blob(node.inputs[1])
  end

  C.Flatten = function(cv, node, at)
    if (at.axis or 1) ~= 1 then fail(node, "a Flatten that folds the batch (axis " .. tostring(at.axis) .. ")") end
    cv:layer("Flatten", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "flatten_param", { axis = 1 })
  end
  -- the traced target, the batch copied (0) when it is kept
  C.Reshape = function(cv, node)
    local from, to = cv:shape(node.inputs[1]), cv:shape(node.outputs[1])
    local dims = { unpack(to) }
    if dims[1] == from[1] then dims[1] = 0 end
    cv:layer("Reshape", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "reshape_param",
             { shape = { dim = dims } })
  end
  C.Transpose = function(cv, node, at)
    cv:layer("Permute", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "permute_param", { order = at.perm })
  end
  C.Concat = function(cv, node, at)
    local bottoms = {}
    for i, nm in ipairs(node.inputs) do
      if cv:const(nm) then fail(node, "a constant among the joined values") end
      bottoms[i] = cv:blob(nm)
    end
    cv:layer("Concat", node.name, bottoms, node.outputs, "concat_param", { axis = at.axis })
  end

  -- one piece [start, end) of one axis: Caffe's Slice cut there, its other tops unused
  C.Slice = function(cv, node)
    local function ints(nm)
      local t = nm and cv:const(nm)
      if nm and not t then fail(node, "computed bounds") end
      return t and values(t)
    end
    local starts, ends, axes, steps = ints(node.inputs[2]), ints(node.inputs[3]), ints(node.inputs[4]),
                                      ints(node.inputs[5])
    if #starts ~= 1 or (steps and tonumber(steps[1]) ~= 1) then fail(node, "a Slice of more than one axis or steps") end
    local shape = cv:shape(node.inputs[1])
    local axis = tonumber(axes and axes[1] or 0)
    if axis < 0 then axis = axis + #shape end
    local n = shape[axis + 1]
    local s, e = tonumber(starts[1]), tonumber(ends[1])
    if s < 0 then s = s + n end
    if e < 0 then e = e + n end
    s, e = math.max(0, math.min(s, n)), math.max(0, math.min(e, n))
    local points, tops = {}, {}
    if s > 0 then points[#points + 1] = s; tops[#tops + 1] = cv:fresh(node.outputs[1] .. "_before") end
    tops[#tops + 1] = node.outputs[1]
    if e < n then points[#points + 1] = e; tops[#tops + 1] = cv:fresh(node.outputs[1] .. "_after") end
    if #points == 0 then cv.alias[node.outputs[1]] = cv:blob(node.inputs[1]); return end
    cv:layer("Slice", node.name, { cv:blob(node.inputs[1]) }, tops, "slice_param", { axis = axis, slice_point = points })
  end

  C.Softmax = function(cv, node, at)
    cv:layer("Softmax", node.name, { cv:blob(node.inputs[1]) }, node.outputs, "softmax_param", { axis = at.axis })
  end
  -- log(softmax(x)): exact but where softmax underflows to 0 (below about -87)
  C.LogSoftmax = function(cv, node, at)
    local p = cv:fresh(node.outputs[1] .. "_softmax")
    cv:layer("Softmax", node.name .. "_softmax", { cv:blob(node.inputs[1]) }, { p }, "softmax_param", { axis = at.axis })
    cv:layer("Log", node.name, { p }, node.outputs)
  end

  -- ---- Resize by integer factors ---------------------------------------------------------------
  -- The edge rows (axis 2) or columns (axis 3) of x repeated once on each
  -- side: Slice for the first and last, Concat.
  local function replicate_edges(cv, node, x, shape, axis)
    local n = shape[axis + 1]
    local first, last = x, x
    if n > 1 then
      first, last = cv:fresh(x .. "_first"), cv:fresh(x .. "_last")
      cv:layer("Slice", node.name .. "_first" .. axis, { x }, { first, cv:fresh(x .. "_rest") }, "slice_param",
               { axis = axis, slice_point = { 1 } })
      cv:layer("Slice", node.name .. "_last" .. axis, { x }, { cv:fresh(x .. "_rest"), last }, "slice_param",
               { axis = axis, slice_point = { n - 1 } })
    end
    local out = cv:fresh(x .. "_edged")
    cv:layer("Concat", node.name .. "_edges" .. axis, { first, x, last }, { out }, "concat_param", { axis = axis })
    local s = { unpack(shape) }
    s[axis + 1] = n + 2
    return out, s
  end

  -- FCN's bilinear kernel of factor f: size 2f - f % 2, the weights of
  -- half-pixel interpolation
  local function bilinear(f)
    local k = 2 * f - f % 2
    local half = math.ceil(k / 2)
    local c = (2 * half - 1 - half % 2) / (2 * half)
    local w = {}
    for i = 1, k do w[i] = 1 - math.abs((i - 1) / half - c) end
    return w
  end

  C.Resize = function(cv, node, at)
    local x = node.inputs[1]
    local ins, outs = cv:shape(x), cv:shape(node.outputs[1])
    local fh, fw = outs[3] / ins[3], outs[4] / ins[4]
    if fh % 1 ~= 0 or fw % 1 ~= 0 or outs[1] ~= ins[1] or outs[2] ~= ins[2] then
      fail(node, string.format("a resize from %dx%d to %dx%d (Caffe's forms take integer factors)", ins[3], ins[4],
                               outs[3], outs[4]))
    end
    if at.scales and (at.scales[3] ~= fh or at.scales[4] ~= fw) then fail(node, "non-integer scale factors") end
    local c = ins[2]
    local p = { num_output = c, group = c, bias_term = false, stride_h = fh, stride_w = fw }
    local weight
    if at.mode == "nearest" then
      p.kernel_h, p.kernel_w, p.pad_h, p.pad_w = fh, fw, 0, 0
      weight = Tensor.ones({ c, 1, fh, fw })
    elseif at.mode == "linear" and at.coordinate_transformation_mode == "half_pixel" then
      local shape
      x, shape = replicate_edges(cv, node, cv:blob(x), ins, 2)
      x = replicate_edges(cv, node, x, shape, 3)
      local wh, ww = bilinear(fh), bilinear(fw)
      p.kernel_h, p.kernel_w = #wh, #ww
      p.pad_h, p.pad_w = math.floor(fh / 2) + fh, math.floor(fw / 2) + fw
      local rows = {}
      for i = 1, #wh do
        rows[i] = {}
        for j = 1, #ww do rows[i][j] = wh[i] * ww[j] end
      end
      local per_channel = {}
      for ch = 1, c do per_channel[ch] = { rows } end
      weight = Tensor.from_table(per_channel, "float32")
    else
      fail(node, "bilinear interpolate with align_corners=True (OpenCV reads Caffe's Interp without its sizes)")
    end
    cv:layer("Deconvolution", node.name, { cv:blob(x) }, node.outputs, "convolution_param", p, { weight })
  end
end
