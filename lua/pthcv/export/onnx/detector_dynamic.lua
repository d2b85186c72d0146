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
-- RetinaNet, FCOS and the R-CNNs are refused: their transform keeps the
-- aspect ratio (the resized size is a scale of the picture's, padded to
-- size_divisible), the FPN upsamples to its laterals' sizes and the
-- anchors are grids of the feature maps' sizes (strides that are integer
-- divisions of the padded size); none of that is written in the graph yet.
local graph = require "pthcv.export.onnx.graph"
local dynamic = require "pthcv.export.onnx.dynamic"

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
  if name ~= "SSD" then
    refuse(name .. ": --dynamic is written for the SSD detectors only: this transform keeps the picture's aspect "
           .. "ratio and pads it to size_divisible, and the FPN's upsampling and the anchor grids follow the "
           .. "feature maps' sizes, which the graph does not compute yet (export at a fixed size)")
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

-- The ratio {value = name}: float [3] (input h / out_h, input w / out_w,
-- 1), computed from the input's shape (ops_detection.lua's ratio_of).
function M.ratio(g, out_h, out_w)
  local hw = g:op("Slice", { g:op("Shape", { "input" }), g:ints({ 2 }, "starts"), g:ints({ 4 }, "ends"),
                             g:ints({ 0 }, "axes") })
  local proto = require "pthcv.export.onnx.proto"
  local size = g:op("Cast", { hw }, { { "to", "int", proto.DTYPE.float32 } })
  local r = g:op("Div", { size, g:constant({ out_h, out_w }, "float32", { 2 }, "resized_size") })
  return { value = g:op("Concat", { r, g:constant({ 1 }, "float32", { 1 }, "one") }, { { "axis", "int", 0 } }) }
end

-- The probe picture of the check at a second size: o.probe (a tensor [1,
-- 3, H, W] or [3, H, W], or a shape), else a random one with height + 32
-- and width + 64 (dynamic.lua's probe).
function M.probe(o, x)
  local Tensor = require "pthcv.tensor"
  local p = o.probe
  if Tensor.is(p) then
    if p.ndim == 3 then p = p:unsqueeze(1):contiguous() end
    return p
  end
  local axes = { [2] = "height", [3] = "width" }
  return Tensor.rand(p or dynamic.probe_shape(x.shape, axes), { seed = (o.seed or 0) + 1 })
end

return M
