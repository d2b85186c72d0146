-- lua/pthcv/export/onnx/evaluate_shape.lua: the evaluator's kernels for
-- shapes, resampling and padding (evaluate.lua's contract: kernel(ins, at,
-- node, ctx) -> {outputs}), in the forms of every opset from 10 to 17 and
-- the canonical forms of ops.lua (attributes where later opsets take
-- inputs). Installed by evaluate.lua: require(...)(evaluate, helpers).
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local proto = require "pthcv.export.onnx.proto"

return function(M, h)
  local K, unsupported, ints, prod = M.kernels, h.unsupported, h.ints, h.prod

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
  -- data, starts, ends [, axes [, steps]] (opset 10 on)
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
  -- int64 vectors (--dynamic's computed shapes) joined in Lua
  K.Concat = function(ins, at)
    if ins[1].dtype ~= "int64" then return { F.cat(ins, at.axis) } end
    local out = {}
    for _, t in ipairs(ins) do
      if t.ndim ~= 1 then unsupported("Concat of int64 tensors of " .. t.ndim .. " dims") end
      for _, v in ipairs(ints(t)) do out[#out + 1] = v end
    end
    return { Tensor.from_table(out, "int64") }
  end
  -- x broadcast to shape (numpy's rule: dims aligned at the end, a dim of 1
  -- repeated; --dynamic's repeated constants)
  K.Expand = function(ins)
    local x, shape = ins[1], ints(ins[2])
    local nd = math.max(x.ndim, #shape)
    local out = {}
    for k = 1, nd do
      local a, b = x.shape[k - nd + x.ndim] or 1, shape[k - nd + #shape] or 1
      if a ~= b and a ~= 1 and b ~= 1 then
        unsupported("Expand of [" .. table.concat(x.shape, ", ") .. "] to [" .. table.concat(shape, ", ") .. "]")
      end
      out[k] = math.max(a, b)
    end
    return { F.add(Tensor.zeros(out, x.dtype), x) }
  end
  -- the input's shape as an int64 vector (--dynamic's computed reshapes)
  K.Shape = function(ins)
    local s = ins[1].shape
    return { Tensor.from_table(#s > 0 and s or {}, "int64"):reshape({ #s }) }
  end
  -- int64 arithmetic on shape vectors (elementwise, one side may have one
  -- element; Div truncates as ONNX's integer Div); floats as before
  for op, fn in pairs { Mul = function(a, b) return a * b end,
                        Div = function(a, b)
                          if b == 0 then unsupported("integer Div by zero") end
                          local q = a / b
                          return q >= 0 and math.floor(q) or math.ceil(q)
                        end } do
    local float_kernel = K[op]
    K[op] = function(ins, at, node, ctx)
      if ins[1].dtype ~= "int64" then return float_kernel(ins, at, node, ctx) end
      local a, b = ints(ins[1]), ints(ins[2])
      if #ins ~= 2 or ins[2].dtype ~= "int64" or (#a ~= #b and #b ~= 1) then unsupported(op .. " of int64 tensors") end
      local out = {}
      for i = 1, #a do out[i] = fn(a[i], b[#b == 1 and 1 or i]) end
      return { Tensor.from_table(out, "int64"):reshape(ins[1].shape) }
    end
  end

  -- ---- resampling --------------------------------------------------------------------------
  -- Resize: opset 10 (x, scales), 11+ (x, roi, scales [, sizes]), or the
  -- canonical attributes; output floor(input * scale) or the sizes.
  --   nearest, asymmetric, floor: source index floor(dst / scale)
  --   linear, half_pixel: torch's bilinear with align_corners=False
  --   linear, align_corners: torch's with align_corners=True
  -- (pytorch_half_pixel is half_pixel but for output sizes of 1)
  K.Resize = function(ins, at, _, ctx)
    local x = ins[1]
    local scales, sizes = at.scales, at.sizes
    if ctx.opset and ctx.opset <= 10 and ins[2] then
      scales = ins[2]:totable()
    else
      if ins[3] and ins[3].numel > 0 then scales = ins[3]:totable() end
      if ins[4] and ins[4].numel > 0 then sizes = ints(ins[4]) end
    end
    if sizes and #sizes == 2 then sizes = { x.shape[1], x.shape[2], sizes[1], sizes[2] } end -- canonical: H, W
    if (scales and (scales[1] ~= 1 or scales[2] ~= 1)) or (sizes and (sizes[1] ~= x.shape[1] or sizes[2] ~= x.shape[2])) then
      unsupported("Resize of the batch or channel dims")
    end
    local mode = at.mode or "nearest"
    local ctm = at.coordinate_transformation_mode or "half_pixel"
    if ctx.opset and ctx.opset <= 10 then ctm = "asymmetric" end
    local o = {}
    if sizes then o.size = { sizes[3], sizes[4] } else o.scale_factor = { scales[3], scales[4] } end
    if mode == "nearest" then
      if ctm ~= "asymmetric" or (at.nearest_mode or "round_prefer_floor") ~= "floor" and not (ctx.opset and ctx.opset <= 10) then
        unsupported("nearest Resize other than asymmetric/floor")
      end
      o.mode = "nearest"
    elseif mode == "linear" then
      o.mode = "bilinear"
      if ctm == "align_corners" then
        if not sizes then
          o.size = { math.floor(x.shape[3] * scales[3]), math.floor(x.shape[4] * scales[4]) }
          o.scale_factor = nil
        end
        o.align_corners = true
      elseif ctm == "half_pixel" or ctm == "pytorch_half_pixel" then
        o.align_corners = false
        if ctm == "pytorch_half_pixel" then
          local oh = sizes and sizes[3] or math.floor(x.shape[3] * scales[3])
          local ow = sizes and sizes[4] or math.floor(x.shape[4] * scales[4])
          if oh == 1 or ow == 1 then unsupported("pytorch_half_pixel Resize to a size of 1") end
        end
      else
        unsupported("linear Resize with coordinate_transformation_mode " .. ctm)
      end
    else
      unsupported("Resize mode " .. tostring(mode))
    end
    return { F.interpolate(x, o) }
  end

  -- ---- padding -----------------------------------------------------------------------------
  local PAD_MODE = { constant = "constant", reflect = "reflect", edge = "replicate" }
  -- pads {x1_begin, x2_begin, ..., x1_end, x2_end, ...} (an attribute at
  -- opset 10, an input from 11) -> torch's, last dim first
  K.Pad = function(ins, at)
    local x = ins[1]
    local nd, p = x.ndim, at.pads
    if ins[2] then p = ints(ins[2]) end
    local value = at.value or 0
    if ins[3] then value = ints(ins[3])[1] end
    local mode = PAD_MODE[at.mode or "constant"]
    if not mode then unsupported("Pad mode " .. tostring(at.mode)) end
    local pads = {}
    for d = nd, 1, -1 do pads[#pads + 1] = p[d]; pads[#pads + 1] = p[nd + d] end
    while #pads > 2 and pads[#pads] == 0 and pads[#pads - 1] == 0 do pads[#pads] = nil; pads[#pads] = nil end
    return { F.pad(x, pads, mode, value) }
  end
end
