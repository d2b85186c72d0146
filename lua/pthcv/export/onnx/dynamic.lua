-- lua/pthcv/export/onnx/dynamic.lua: symbolic input dims (--dynamic), by
-- tracing twice.
--
-- A traced pass sees numbers, not where they came from: x:view(n, -1)
-- freezes n. So the model is traced at the input and again at a probe
-- input that differs in every dynamic axis (the batch + 1, the others +
-- 32, + 64, ...), and the two canonical graphs are compared node by node:
--   * they must be the same graph (op types, inputs, outputs, attributes,
--     constants), except for the target shapes of reshapes; a node that
--     differs depends on the input's size in a way the file cannot say (an
--     adaptive pool with uneven windows, a constant made with the input's
--     shape, interpolate to a size computed in Lua, a narrow of a dynamic
--     dim): it is refused by name. A constant that differs only by being
--     repeated along dims that grow with the input (a class token added to
--     zeros of [n, 1, d]: the same [1, 1, d] row in both traces) is no
--     such node: it is written as that row, Expand-ed to a shape computed
--     from the shapes of the node's other inputs or of the model's input
--     (Shape, Slice, Concat, as below; OpenCV 4.6 cannot: a warning);
--   * each reshape's target is written so that ONNX computes it from the
--     input of the Reshape: dims that keep their place as 0 ("copy"), one
--     dim left over as -1 ("infer"), which OpenCV 4.6 runs at any size;
--     where more dims must be computed, from Shape (of the Reshape's input
--     or of the model's), Slice, Mul/Div by a constant and Concat, which
--     ONNX runtimes run but OpenCV 4.6 does not (its importer folds Shape
--     once, at the declared sizes): a warning names the node.
-- The written graph is then checked at both inputs (init.lua).
local ffi = require "ffi"
local graph = require "pthcv.export.onnx.graph"

local refuse = graph.refuse
local M = {}

ffi.cdef [[int pthcv_export_memcmp(const void *a, const void *b, size_t n) __asm__("memcmp");]]

M.PROBE_STEP = 32   -- a dynamic axis other than the batch is probed this much larger

-- ---- the axes ---------------------------------------------------------------------------------
local WORDS = { batch = function() return 0 end, channels = function() return 1 end,
                height = function(nd) return nd - 2 end, width = function(nd) return nd - 1 end }

-- The dynamic axes of an input of nd dims from a list of entries ("batch",
-- "height", "width", "channels", or "AXIS=NAME" with AXIS from 0):
-- {[axis] = name}.
function M.parse(list, nd)
  local axes = {}
  for _, entry in ipairs(list) do
    local axis, name = entry:match("^(%d+)=([%w_]+)$")
    if axis then
      axis = tonumber(axis)
    elseif WORDS[entry] then
      axis, name = WORDS[entry](nd), entry
    else
      error(string.format("pthcv: --dynamic: '%s' is neither batch, channels, height, width nor AXIS=NAME", entry), 0)
    end
    if axis < 0 or axis >= nd then
      error(string.format("pthcv: --dynamic: %s is axis %d, but the input has %d dims", entry, axis, nd), 0)
    end
    if axes[axis] then error(string.format("pthcv: --dynamic: axis %d is named twice", axis), 0) end
    axes[axis] = name
  end
  return axes
end

-- The probe shape: each dynamic axis made larger, the batch by 1, the
-- others by PROBE_STEP times their rank among them (height + 32, width +
-- 64), so that no two axes of the same size stay equal.
function M.probe_shape(shape, axes)
  local s = { unpack(shape) }
  local rank = 0
  for axis = 0, #shape - 1 do
    if axes[axis] then
      if axis == 0 then s[1] = s[1] + 1
      else rank = rank + 1; s[axis + 1] = s[axis + 1] + rank * M.PROBE_STEP end
    end
  end
  return s
end

-- ---- comparing the two traces ---------------------------------------------------------------------
local function same_values(a, b)
  if rawequal(a, b) then return true end
  if a.dtype ~= b.dtype or a.ndim ~= b.ndim then return false end
  for d = 1, a.ndim do if a.shape[d] ~= b.shape[d] then return false end end
  a, b = a:contiguous(), b:contiguous()
  return ffi.C.pthcv_export_memcmp(a:data(), b:data(), a.nbytes) == 0
end

local function same(a, b)
  if type(a) ~= type(b) then return false end
  if type(a) ~= "table" then return a == b end
  if #a ~= #b then return false end
  for i = 1, #a do if not same(a[i], b[i]) then return false end end
  return true
end

local function show(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

-- t's values as doubles, contiguous (for comparing constants by value):
-- the pointer, and the tensor that owns them (keep it while reading)
local function values(t)
  local d = t:double():contiguous()
  return d:data(), d
end

-- The row a constant repeats along dims (1-based, a set): t narrowed to
-- index 0 of each, when every element of t equals the row's element at its
-- other coordinates; else nil.
local function repeated_row(t, dims)
  local row = t
  for d in pairs(dims) do row = row:narrow(d, 1, 1) end
  row = row:contiguous()
  local pt, keep_t = values(t)
  local pr, keep_r = values(row)
  local nd = t.ndim
  local idx = {}
  for d = 1, nd do idx[d] = 0 end
  for i = 0, t.numel - 1 do
    local r = 0
    for d = 1, nd do r = r * row.shape[d] + (dims[d] and 0 or idx[d]) end
    if pt[i] ~= pr[r] then return nil end
    for d = nd, 1, -1 do -- the next coordinate, last dim fastest
      idx[d] = idx[d] + 1
      if idx[d] < t.shape[d] then break end
      idx[d] = 0
    end
  end
  assert(keep_t and keep_r)
  return row
end

-- The row two traces' constants ta and tb (of one rank and dtype) both
-- repeat along the dims where their shapes differ, when it is the same row.
local function broadcast_row(ta, tb)
  if ta.dtype ~= tb.dtype or ta.ndim ~= tb.ndim then return nil end
  local dims, any = {}, false
  for d = 1, ta.ndim do
    if ta.shape[d] ~= tb.shape[d] then dims[d], any = true, true end
  end
  if not any then return nil end
  local ra, rb = repeated_row(ta, dims), repeated_row(tb, dims)
  if not ra or not rb then return nil end
  local pa, keep_a = values(ra)
  local pb, keep_b = values(rb)
  for i = 0, ra.numel - 1 do if pa[i] ~= pb[i] then return nil end end
  assert(keep_a and keep_b)
  return ra
end

local function depends(node, what)
  refuse(string.format("--dynamic: node %s (%s, in %s) depends on the input's size in a way ONNX cannot compute: %s. "
    .. "Only the batch can be dynamic for such a model (or export it with fixed sizes)", node.name, node.op,
    node.where, what))
end

-- Checks that ga (traced at the input) and gb (at the probe) are the same
-- graph but for the reshapes' targets; returns the reshape nodes' indices.
function M.compare(ga, gb, shape_a, shape_b)
  local na, nb = ga.nodes, gb.nodes
  for i = 1, math.max(#na, #nb) do
    local a, b = na[i], nb[i]
    if a == nil or b == nil or a.op ~= b.op or not same(a.inputs, b.inputs) or not same(a.outputs, b.outputs) then
      local n = a or b
      refuse(string.format("--dynamic: the model computes a different graph at input [%s] than at [%s], from node "
        .. "%s (%s, in %s) on (%s at the probe): what it computes depends on the input's size", table.concat(shape_a, ", "),
        table.concat(shape_b, ", "), n.name, n.op, n.where, b and (b.name .. ", " .. b.op) or "no node"))
    end
    for j, attr in ipairs(a.attrs) do
      local other = b.attrs[j]
      if not other or other[1] ~= attr[1] or not same(attr[3], other[3]) then
        depends(a, string.format("its attribute %s is %s at input [%s] but %s at [%s]", attr[1], show(attr[3]),
          table.concat(shape_a, ", "), other and show(other[3]) or "absent", table.concat(shape_b, ", ")))
      end
    end
    for j, nm in ipairs(a.inputs) do
      local ta, tb = ga.init_of[nm], gb.init_of[nm]
      if (ta == nil) ~= (tb == nil) then depends(a, "its input " .. nm .. " is a constant in one trace only") end
      local row = ta and not (a.reshape and j == 2) and not same_values(ta, tb) and broadcast_row(ta, tb)
      if row then -- repeated along the dims that grow: Expand-ed in resolve
        a.expand = a.expand or {}
        a.expand[j] = { row = row, a = ta.shape, b = tb.shape }
      elseif ta and not (a.reshape and j == 2) and not same_values(ta, tb) then
        depends(a, string.format("its constant %s is %s at input [%s] but %s at [%s] (a value computed from the "
          .. "input's shape at tracing)", nm, tostring(ta), table.concat(shape_a, ", "), tostring(tb),
          table.concat(shape_b, ", ")))
      end
    end
  end
end

-- ---- reshape targets ------------------------------------------------------------------------------
-- The target of a Reshape from (fa, fb) to (ta, tb) (the shapes in both
-- traces) as a constant with 0 and -1 when that form says it, else nil.
local function constant_form(fa, fb, ta, tb)
  local spec, infer = {}, nil
  for k = 1, #ta do
    if ta[k] == tb[k] then
      spec[k] = ta[k]
    elseif fa[k] == ta[k] and fb[k] == tb[k] then
      spec[k] = 0
    elseif infer == nil then
      infer = k
      spec[k] = -1
    else
      return nil
    end
  end
  return spec
end

-- The computed form: nodes that build the target from the shapes of x and
-- of the graph's input (sources: {{name, a = dims, b = dims}}); raises
-- when a dim is no copy, multiple or fraction of one of their dims (a
-- Reshape's target may infer one dim, -1; an Expand's, exact, may not).
local function computed_form(g, node, sources, ta, tb, exact)
  local shape_of = {}
  local function dim(src, j)
    shape_of[src.name] = shape_of[src.name] or g:op("Shape", { src.name })
    return g:op("Slice", { shape_of[src.name], g:ints({ j }, "starts"), g:ints({ j + 1 }, "ends"), g:ints({ 0 }, "axes") })
  end
  local function express(va, vb)
    for _, src in ipairs(sources) do
      local fa, fb = src.a, src.b
      for j = 1, #fa do
        if fa[j] ~= fb[j] then
          if fa[j] == va and fb[j] == vb then return dim(src, j - 1) end
          if va % fa[j] == 0 and vb == fb[j] * (va / fa[j]) then
            return g:op("Mul", { dim(src, j - 1), g:ints({ va / fa[j] }, "factor") })
          end
          if fa[j] % va == 0 and vb * (fa[j] / va) == fb[j] then
            return g:op("Div", { dim(src, j - 1), g:ints({ fa[j] / va }, "factor") })
          end
        end
      end
    end
  end
  local parts, infer = {}, nil
  for k = 1, #ta do
    if ta[k] == tb[k] then
      parts[k] = g:ints({ ta[k] }, "dim")
    else
      parts[k] = express(ta[k], tb[k])
      if not parts[k] and infer == nil and not exact then infer = k; parts[k] = g:ints({ -1 }, "dim") end
      if not parts[k] then
        depends(node, string.format("its target dim %d (%d, then %d) is no multiple or fraction of a dim of its "
          .. "input [%s] / [%s] or of the model's input", k - 1, ta[k], tb[k], table.concat(sources[1].a, ", "),
          table.concat(sources[1].b, ", ")))
      end
    end
  end
  return g:op("Concat", parts, { { "axis", "int", 0 } })
end

-- Rewrites ga's reshapes (compared with gb's) to compute their targets and
-- its repeated constants (compare's node.expand) to Expand their row;
-- returns warnings (strings) for the forms OpenCV 4.6 cannot run.
function M.resolve(ga, gb)
  local warnings = {}
  local old, new = ga.nodes, {}
  ga.nodes = new
  local input = ga.inputs[1]
  local model_input = { name = input.name, a = input.shape, b = gb.inputs[1].shape }
  for i, node in ipairs(old) do
    local other = gb.nodes[i]
    for j, e in pairs(node.expand or {}) do
      ga.where = node.where
      -- its dims from the node's traced inputs' shapes, else the model's input's
      local sources = {}
      for k, name in ipairs(node.inputs) do
        local va, vb = ga.refs[name], gb.refs[name]
        if k ~= j and va and vb then sources[#sources + 1] = { name = name, a = va.shape, b = vb.shape } end
      end
      sources[#sources + 1] = model_input
      local shape = computed_form(ga, node, sources, e.a, e.b, true)
      node.inputs[j] = ga:op("Expand", { ga:input(e.row, "row"), shape })
      warnings[#warnings + 1] = string.format("node %s (Expand, in %s) repeats a constant to a shape computed with "
        .. "Shape, which OpenCV 4.6 cannot run on dynamic dims (its importer folds Shape at the declared sizes)",
        ga.nodes[#ga.nodes].name, node.where)
    end
    node.expand = nil
    if node.reshape and other.reshape then
      local fa, fb, ta, tb = node.reshape.from, other.reshape.from, node.reshape.to, other.reshape.to
      if not same(ta, tb) or not same(fa, fb) then
        local spec = constant_form(fa, fb, ta, tb)
        ga.where = node.where
        if spec then
          node.inputs[2] = ga:ints(spec, "shape")
        else
          node.inputs[2] = computed_form(ga, node, { { name = node.inputs[1], a = fa, b = fb }, model_input }, ta, tb)
          warnings[#warnings + 1] = string.format("node %s (Reshape, in %s) computes its target shape with Shape, "
            .. "which OpenCV 4.6 cannot run on dynamic dims (its importer folds Shape at the declared sizes)",
            node.name, node.where)
        end
      end
    end
    if node.in_shape and other.in_shape then -- dims that change are unknown to lower.lua
      for d, v in ipairs(node.in_shape) do if v ~= other.in_shape[d] then node.in_shape[d] = -1 end end
    end
    new[#new + 1] = node
  end
  return warnings
end

-- The symbolic shape of a value: its dims in both traces, each dim that
-- differs named after the input axis of the same sizes, else prefix_dK.
function M.symbolic(sa, sb, input_a, input_b, axes, prefix)
  local out = {}
  for k = 1, #sa do
    if sa[k] == sb[k] then
      out[k] = sa[k]
    else
      for axis, name in pairs(axes) do
        if input_a[axis + 1] == sa[k] and input_b[axis + 1] == sb[k] and (out[k] == nil or axis == k - 1) then
          out[k] = name
        end
      end
      out[k] = out[k] or (prefix .. "_d" .. (k - 1))
    end
  end
  return out
end

return M
