-- lua/pthcv/export/onnx/detector_dynamic.lua: --dynamic height,width for
-- the whole detectors of ops_detection.lua: one file that runs pictures of
-- any size.
--
-- The SSDs (ssdlite320_mobilenet_v3_large, ssd300_vgg16): torchvision's
-- transform resizes every picture to one fixed size, so after the Resize
-- the graph is the same at any input size (the default boxes are
-- constants of the resized size). Two things depend on the picture's size
-- and are computed in the graph:
--   * the Resize itself, written with its output size (sizes; never as
--     scale factors, which are the input's size's);
--   * the ratio that maps the boxes back to the picture: the input's
--     height and width (Shape, Slice, Cast) divided by the resized ones.
-- The batch stays 1: a detector takes one picture.
--
-- RetinaNet and FCOS (M.onestage): their transform keeps the aspect ratio
-- and pads to size_divisible, and the anchors are grids of the feature
-- maps' sizes. The model is traced at the input and at a probe picture
-- (as dynamic.lua does for classifiers); in each trace the parts that
-- depend on the size are rewritten to be computed from Shape, the same
-- way in both:
--   * the resized size, torchvision's GeneralizedRCNNTransform:
--     scale = min(min_size / min(h, w), max_size / max(h, w)) in float32,
--     out = floor(h * scale) in double (torch's interpolate computes the
--     size in Python floats), the Resize written with those sizes;
--   * the zero Pad to size_divisible: pads = ceil(out / d) * d - out;
--   * the FPN's nearest upsampling to its laterals' sizes: always x2 once
--     the picture is padded to a multiple of 32 (written as scales 2), or
--     x1 between two levels of one stride (mobilenet_v3's);
--   * the anchors: per level the feature map's grid (Shape), the strides
--     padded // grid, Range, Expand and the cell anchors added; their
--     widths, heights and centres, and the clipping bounds (the resized
--     size), from them;
--   * the post-processing's per-level counts (ops_onestage.lua).
-- dynamic.compare then requires the two traces to be the same graph but
-- for the reshapes' targets, which dynamic.resolve computes.
--
-- Faster, Mask and Keypoint R-CNN (ops_rcnn.lua) go the same way: their
-- transform and RPN anchors are rewritten as the one-stage detectors',
-- and the RPN's per-level top-n, the pooler's scales and levels and the
-- box head's clipping bounds are written computed from Shape by the ops
-- themselves (rcnn_dynamic.lua).
local Tensor = require "pthcv.tensor"
local graph = require "pthcv.export.onnx.graph"
local dynamic = require "pthcv.export.onnx.dynamic"
local proto = require "pthcv.export.onnx.proto"
local evaluate = require "pthcv.export.onnx.evaluate"

local refuse = graph.refuse
local M = {}

-- The dynamic axes of the detector named name from o.dynamic, or nil when
-- there are none: {[2] = name, [3] = name} (height and width, both).
function M.axes(o, name)
  if not (o.dynamic and #o.dynamic > 0) then return nil end
  local axes = dynamic.parse(o.dynamic, 4)
  if axes[0] then refuse(name .. ": --dynamic: the batch stays 1 (a detector takes one picture); make height and "
                         .. "width dynamic (--dynamic height,width)") end
  if axes[1] then refuse(name .. ": --dynamic: the channels are the picture's 3 (RGB)") end
  if not (axes[2] and axes[3]) then
    refuse(name .. ": --dynamic: height and width are dynamic together (--dynamic height,width)")
  end
  if (name == "RetinaNet" or name == "FCOS") and o.no_postprocess then -- (the R-CNNs refuse it in any case)
    refuse(name .. ": --dynamic --no-postprocess: the anchors written beside the file are the traced size's; "
           .. "export the whole detector with --dynamic, or the head at a fixed size")
  end
  return axes
end

-- Marks the traced graph's Resize of the input x (the transform's, to the
-- fixed size) so that lower.lua writes it with sizes whatever the input's.
function M.fix_resize(g, x)
  for _, node in ipairs(g.nodes) do
    if node.op == "Resize" then
      local s = node.in_shape
      local sizes
      for _, a in ipairs(node.attrs) do if a[1] == "sizes" then sizes = a end end
      if not (s and s[3] == x.shape[3] and s[4] == x.shape[4] and sizes) then
        refuse("--dynamic: the detector's first Resize (" .. node.name .. ") is not the transform's resize of the "
               .. "input to a fixed size")
      end
      node.in_shape = { s[1], s[2], -1, -1 }
      node.fixed_size = true
      return
    end
  end
  refuse("--dynamic: the detector's graph has no Resize of its input")
end

local F32, I64, F64 = proto.DTYPE.float32, proto.DTYPE.int64, 11 -- (TensorProto's DOUBLE)

local function slice(g, v, from, to, axis)
  return g:op("Slice", { v, g:ints({ from }, "starts"), g:ints({ to }, "ends"), g:ints({ axis or 0 }, "axes") })
end
local function cast(g, v, to) return g:op("Cast", { v }, { { "to", "int", to } }) end
local function input_hw(g) return slice(g, g:op("Shape", { "input" }), 2, 4) end

-- The ratio {value = name}: float [3] (input h / out_h, input w / out_w,
-- 1), computed from the input's shape (ops_detection.lua's ratio_of);
-- the resized size: the numbers out_h, out_w, or the int64 [2] value out_hw.
function M.ratio(g, out_h, out_w, out_hw)
  local size = cast(g, input_hw(g), F32)
  local resized = out_hw and cast(g, out_hw, F32) or g:constant({ out_h, out_w }, "float32", { 2 }, "resized_size")
  local r = g:op("Div", { size, resized })
  return { value = g:op("Concat", { r, g:constant({ 1 }, "float32", { 1 }, "one") }, { { "axis", "int", 0 } }) }
end

-- Runs fn with the nodes it makes collected apart, then puts them before
-- g.nodes[i]; returns fn's results.
local function insert_before(g, i, fn)
  local saved = g.nodes
  g.nodes = {}
  local res = { fn() }
  local made = g.nodes
  g.nodes = saved
  for k = #made, 1, -1 do table.insert(saved, i, made[k]) end
  return unpack(res)
end

local function find(g, from, pred)
  for i = from, #g.nodes do if pred(g.nodes[i]) then return i, g.nodes[i] end end
end

local function attr(node, name)
  for _, a in ipairs(node.attrs) do if a[1] == name then return a[3] end end
end

local function drop_attrs(node, names)
  local kept = {}
  for _, a in ipairs(node.attrs) do if not names[a[1]] then kept[#kept + 1] = a end end
  node.attrs = kept
end

-- the transform's resize and pad, computed (see the header): out_hw and
-- padded_hw, int64 [2]
local function transform(g, w, x, opset)
  local t = w.detector.transform
  local ri, resize = find(g, 1, function(n) return n.op == "Resize" end)
  if not (resize and attr(resize, "sizes") and resize.in_shape and resize.in_shape[3] == x.shape[3]
          and resize.in_shape[4] == x.shape[4]) then
    refuse("--dynamic: the detector's first Resize is not the transform's resize of the input")
  end
  local out_hw = insert_before(g, ri, function()
    g.where = "the transform (detector_dynamic.lua)"
    local hw = input_hw(g)
    local hwf = cast(g, hw, F32)
    local lo = g:op("ReduceMin", { hwf }, { { "keepdims", "int", 1 } })
    local hi = g:op("ReduceMax", { hwf }, { { "keepdims", "int", 1 } })
    local scale = g:op("Min", { g:op("Div", { g:constant({ t.min_size[#t.min_size] }, "float32", { 1 }, "min_size"), lo }),
                                g:op("Div", { g:constant({ t.max_size }, "float32", { 1 }, "max_size"), hi }) })
    local out = cast(g, g:op("Floor", { g:op("Mul", { cast(g, hw, F64), cast(g, scale, F64) }) }), I64)
    local sizes = g:op("Concat", { g:ints({ 1, 3 }, "batch_channels"), out }, { { "axis", "int", 0 } })
    local empty = opset <= 12 and function(hint) return g:constant({}, "float32", { 0 }, hint) end
    resize.inputs = { resize.inputs[1], empty and empty("roi") or "", empty and empty("scales") or "", sizes }
    return out
  end)
  drop_attrs(resize, { sizes = true, scales = true })
  local pi, pad = find(g, ri, function(n) return n.op == "Pad" end)
  if not pad then refuse("--dynamic: the detector's graph has no Pad after its transform's Resize") end
  local padded_hw = insert_before(g, pi, function()
    local d = t.size_divisible
    local up = g:op("Mul", { g:op("Div", { g:op("Add", { out_hw, g:ints({ d - 1 }, "divisible_less_one") }),
                                          g:ints({ d }, "size_divisible") }), g:ints({ d }, "size_divisible") })
    local pads = g:op("Concat", { g:ints({ 0, 0, 0, 0, 0, 0 }, "pads_begin"), g:op("Sub", { up, out_hw }) },
                      { { "axis", "int", 0 } })
    pad.inputs = { pad.inputs[1], pads }
    return up
  end)
  drop_attrs(pad, { pads = true })
  -- the FPN's nearest upsampling: x2 (the padded size's maps halve
  -- exactly), or x1 between two levels of one stride (mobilenet_v3's)
  for i = pi + 1, #g.nodes do
    local n = g.nodes[i]
    local sizes = n.op == "Resize" and attr(n, "sizes")
    for _, f in ipairs(sizes and n.in_shape and { 1, 2 } or {}) do
      if sizes[1] == f * n.in_shape[3] and sizes[2] == f * n.in_shape[4] then
        drop_attrs(n, { sizes = true })
        n.attrs[#n.attrs + 1] = { "scales", "floats", { 1, 1, f, f } }
      end
    end
  end
  return out_hw, padded_hw
end

-- the anchors of every level from the feature maps' shapes (see the
-- header); returns the values that replace w's constants by field, and the
-- anchors per level (int64 [1] each)
local function anchors(g, w, padded_hw, out_hw)
  local ph, pw = slice(g, padded_hw, 0, 1), slice(g, padded_hw, 1, 2)
  local scalar = g:input(Tensor.zeros({ 0 }, "int64"), "scalar_shape")
  local zero, one = g:constant({ 0 }, "int64", {}, "zero"), g:constant({ 1 }, "int64", {}, "one")
  local levels, counts = {}, {}
  local function shape(list) return g:ints(list, "shape") end
  for l, f in ipairs(w.features) do
    local fname = g.names[f]
    if not fname then refuse("--dynamic: the feature map of level " .. l .. " is not a traced value") end
    local s = g:op("Shape", { fname })
    local gh, gw = slice(g, s, 2, 3), slice(g, s, 3, 4)
    local function coords(n, padded) -- arange(n) * (padded // n), float32
      local r = g:op("Range", { zero, g:op("Reshape", { n, scalar }), one })
      return cast(g, g:op("Mul", { r, g:op("Div", { padded, n }) }), F32)
    end
    local grid = g:op("Concat", { gh, gw }, { { "axis", "int", 0 } })
    local xs = g:op("Reshape", { g:op("Expand", { g:op("Reshape", { coords(gw, pw), shape { 1, -1 } }), grid }),
                                 shape { -1, 1 } })
    local ys = g:op("Reshape", { g:op("Expand", { g:op("Reshape", { coords(gh, ph), shape { -1, 1 } }), grid }),
                                 shape { -1, 1 } })
    local shifts = g:op("Concat", { xs, ys, xs, ys }, { { "axis", "int", 1 } })
    local cells, flat = w.anchor_generator.cell_anchors[l], {}
    for _, c in ipairs(cells) do for _, v in ipairs(c) do flat[#flat + 1] = v end end
    local cell = g:constant(flat, "float32", { 1, #cells, 4 }, "cell_anchors")
    levels[l] = g:op("Reshape", { g:op("Add", { g:op("Reshape", { shifts, shape { -1, 1, 4 } }), cell }),
                                  shape { -1, 4 } })
    counts[l] = g:op("Mul", { g:op("Mul", { gh, gw }), g:ints({ #cells }, "anchors_per_cell") })
  end
  local a = g:op("Concat", levels, { { "axis", "int", 0 } })
  local function col(j) return slice(g, a, j - 1, j, 1) end
  local v = { anchors = a }
  v.widths, v.heights = g:op("Sub", { col(3), col(1) }), g:op("Sub", { col(4), col(2) })
  local half = g:scalar(0.5, "half")
  v.ctr_x = g:op("Add", { col(1), g:op("Mul", { v.widths, half }) })
  v.ctr_y = g:op("Add", { col(2), g:op("Mul", { v.heights, half }) })
  v.mid_x = g:op("Mul", { g:op("Add", { col(1), col(3) }), half })
  v.mid_y = g:op("Mul", { g:op("Add", { col(2), col(4) }), half })
  v.bound_h = g:op("Reshape", { cast(g, slice(g, out_hw, 0, 1), F32), shape { 1, 1 } })
  v.bound_w = g:op("Reshape", { cast(g, slice(g, out_hw, 1, 2), F32), shape { 1, 1 } })
  return v, counts
end

-- Rewrites the traced graph g of the one-stage detector's wrapper w
-- (traced at x; w.dynamic) to compute from the input's size what depends
-- on it (see the header); returns {out_hw, counts} for the
-- post-processing (ops_onestage.lua) and the ratio.
function M.onestage(g, w, x, opset)
  local out_hw, padded_hw = transform(g, w, x, opset)
  local by_name = {}
  for _, field in ipairs { "anchors", "widths", "heights", "ctr_x", "ctr_y", "mid_x", "mid_y", "bound_w", "bound_h" } do
    local nm = w[field] and g.names[w[field]]
    if nm and g.init_of[nm] then by_name[nm] = field end
  end
  local ci = find(g, 1, function(n)
    for _, nm in ipairs(n.inputs) do if by_name[nm] then return true end end
  end)
  if not ci then refuse("--dynamic: the traced graph reads none of the anchors") end
  g.where = "the anchors (detector_dynamic.lua)"
  local values, counts = insert_before(g, ci, function() return anchors(g, w, padded_hw, out_hw) end)
  for _, node in ipairs(g.nodes) do
    for i, nm in ipairs(node.inputs) do
      if by_name[nm] then node.inputs[i] = values[by_name[nm]] end
    end
  end
  return { out_hw = out_hw, counts = counts }
end

-- Whether the feature maps' grids ga and gb ({{h, w}, ...}) differ in
-- every dim that a reshape's target may hold: each level's height, width
-- and area, and the total (a dim equal in both traces is taken as a
-- constant); else the first level where they do not, for the message.
local function grids_differ(ga, gb)
  local ta, tb = 0, 0
  for l, a in ipairs(ga) do
    local b = gb[l]
    if not b or a[1] == b[1] or a[2] == b[2] or a[1] * a[2] == b[1] * b[2] then return false, l end
    ta, tb = ta + a[1] * a[2], tb + b[1] * b[2]
  end
  if ta == tb then return false, #ga end
  return true
end

-- The grids of the wrapper w's levels for a picture h x w (the
-- transform's size, padded; then each level the one before or half of it,
-- rounded up, as the traced grids go: mobilenet_v3's FPN has two levels of
-- stride 32), or nil when the traced grids do not follow that rule.
local function predicted_grids(wr, h, w)
  local t, first = wr.detector.transform, wr.grids[1]
  local stride = wr.pad_h / first[1]
  if stride % 1 ~= 0 or wr.pad_w / first[2] ~= stride then return nil end
  local halves = {} -- per level after the first: whether it halves the one before
  for l = 2, #wr.grids do
    local a, b = wr.grids[l - 1], wr.grids[l]
    halves[l] = b[1] ~= a[1] or b[2] ~= a[2]
  end
  local function chain(ph, pw)
    local out, gh, gw = {}, ph / stride, pw / stride
    for l = 1, #wr.grids do
      if halves[l] then gh, gw = math.ceil(gh / 2), math.ceil(gw / 2) end
      out[l] = { gh, gw }
    end
    return out
  end
  local traced = chain(wr.pad_h, wr.pad_w)
  for l, g in ipairs(wr.grids) do if g[1] ~= traced[l][1] or g[2] ~= traced[l][2] then return nil end end
  local oh, ow = t:resized_size(h, w)
  local d = t.size_divisible
  return chain(math.ceil(oh / d) * d, math.ceil(ow / d) * d)
end

-- The probe picture of a one-stage detector: o.probe, else the first of
-- some shapes around the input's whose grids differ from the traced ones
-- in every dim (grids_differ).
function M.onestage_probe(o, x, wr)
  if o.probe then return M.probe(o, x) end
  local h, w = x.shape[3], x.shape[4]
  for _, f in ipairs { { 0.5, 1.5 }, { 1.5, 0.5 }, { 0.75, 1.9 }, { 1.9, 0.75 }, { 0.4, 1.3 }, { 1.3, 0.4 } } do
    local ph, pw = math.max(32, math.floor(h * f[1])), math.max(32, math.floor(w * f[2]))
    local grids = predicted_grids(wr, ph, pw)
    if grids and grids_differ(wr.grids, grids) then return M.probe({ probe = { 1, 3, ph, pw }, seed = o.seed }, x) end
  end
  refuse("--dynamic: no probe picture found whose feature maps differ from the traced ones in every level's height, "
         .. "width and area; give one (probe = a picture)")
end

-- The one-stage detector or R-CNN m traced (t, by onnx.trace, of wrapper
-- at t.x; family: the module of its wrap, ops_onestage.lua or
-- ops_rcnn.lua) made dynamic: traced again at the probe picture, both
-- traces rewritten by M.onestage, compared and the reshapes resolved
-- (dynamic.lua); returns M.onestage's record of t's graph with probe and
-- warnings (OpenCV's).
function M.trace_onestage(onnx, m, t, wrapper, probe, o, names, family)
  local x = t.x
  local wb = family.wrap(m, probe, false, true)
  local differ, level = grids_differ(wrapper.grids, wb.grids)
  if not differ then
    refuse(string.format("--dynamic: at the probe picture [%s] the feature map of level %d is %dx%d, at the input "
                         .. "[%s] %dx%d: each level's height, width and area must differ for the graph to tell "
                         .. "what depends on them; give another probe", table.concat(probe.shape, ", "), level,
                         wb.grids[level][1], wb.grids[level][2], table.concat(x.shape, ", "),
                         wrapper.grids[level][1], wrapper.grids[level][2]))
  end
  local ok, tb = pcall(onnx.trace, wb, { input = probe, opset = o.opset, output_names = names })
  if not ok then
    refuse(string.format("--dynamic: the detector does not run at the probe picture [%s]: %s",
                         table.concat(probe.shape, ", "), tostring(tb)))
  end
  local opset = o.opset or onnx.OPSET
  local ok2, res = pcall(function()
    local dyn = M.onestage(t.g, wrapper, x, opset)
    M.onestage(tb.g, wb, probe, opset)
    dynamic.compare(t.g, tb.g, x.shape, probe.shape)
    dyn.warnings = dynamic.resolve(t.g, tb.g)
    dyn.probe = probe
    return dyn
  end)
  onnx.release(tb)
  if not ok2 then error(res, 0) end
  return res
end

-- ---- the evaluator's kernels for the nodes above ------------------------------------------------
local K = evaluate.kernels
local function lua_values(t) return evaluate.values(t) end
-- Range of int64 scalars
K.Range = function(ins)
  local start, limit, delta = lua_values(ins[1])[1], lua_values(ins[2])[1], lua_values(ins[3])[1]
  local out = {}
  for v = start, limit - 1, delta do out[#out + 1] = v end
  if #out == 0 then return { Tensor.zeros({ 0 }, ins[1].dtype) } end
  return { Tensor.from_table(out, ins[1].dtype) }
end
-- float64 (the resized size's product, as torch computes it): small
-- tensors, in Lua's doubles; Cast to and from it
for op, fn in pairs { Mul = function(a, b) return a * b end, Floor = function(a) return math.floor(a) end } do
  local other = K[op]
  K[op] = function(ins, at, node, ctx)
    if ins[1].dtype ~= "float64" then return other(ins, at, node, ctx) end
    local a, b = lua_values(ins[1]), ins[2] and lua_values(ins[2])
    local out = {}
    for i = 1, #a do out[i] = fn(a[i], b and b[#b == 1 and 1 or i]) end
    return { Tensor.from_table(out, "float64"):reshape(ins[1].shape) }
  end
end
-- int64 Add and Sub of two vectors of at most 16 elements (sizes and
-- counts), of one length or one of them of one element; the others as before
for op, fn in pairs { Add = function(a, b) return a + b end, Sub = function(a, b) return a - b end } do
  local other = K[op]
  K[op] = function(ins, at, node, ctx)
    local x, y = ins[1], ins[2]
    if #ins ~= 2 or x.dtype ~= "int64" or y.dtype ~= "int64" or x.ndim ~= 1 or y.ndim ~= 1 or x.numel > 16
       or y.numel > 16 or (x.numel ~= y.numel and x.numel ~= 1 and y.numel ~= 1) then
      return other(ins, at, node, ctx)
    end
    local a, b = lua_values(x), lua_values(y)
    local n = math.max(#a, #b)
    local out = {}
    for i = 1, n do out[i] = fn(a[#a == 1 and 1 or i], b[#b == 1 and 1 or i]) end
    return { Tensor.from_table(out, "int64"):reshape(#a >= #b and ins[1].shape or ins[2].shape) }
  end
end
local other_cast = K.Cast
K.Cast = function(ins, at, node, ctx)
  if at.to == F64 then return { ins[1]:double() } end
  if ins[1].dtype == "float64" and at.to == I64 then
    local out = {}
    for i, v in ipairs(lua_values(ins[1])) do
      out[i] = v >= 0 and math.floor(v) or math.ceil(v)
    end
    return { Tensor.from_table(out, "int64"):reshape(ins[1].shape) }
  end
  return other_cast(ins, at, node, ctx)
end

-- The probe picture of the check at a second size: o.probe (a tensor [1,
-- 3, H, W] or [3, H, W], or a shape), else a random one with height + 32
-- and width + 64 (dynamic.lua's probe).
function M.probe(o, x)
  local p = o.probe
  if Tensor.is(p) then
    if p.ndim == 3 then p = p:unsqueeze(1):contiguous() end
    return p
  end
  local axes = { [2] = "height", [3] = "width" }
  return Tensor.rand(p or dynamic.probe_shape(x.shape, axes), { seed = (o.seed or 0) + 1 })
end

return M
