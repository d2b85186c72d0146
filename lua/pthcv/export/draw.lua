-- lua/pthcv/export/draw.lua: a picture of a traced model, as Graphviz's DOT
-- language, drawn to SVG or PNG by Graphviz's dot when it is installed.
--
--   local draw = require "pthcv.export.draw"
--   local info = draw.model(module, "model.svg", { input = {1, 3, 224, 224} })
--   -- {nodes = n, edges = n, residual = n, concat = n, format = "svg" | "dot", path = ...}
--
-- The graph is the exporters' canonical one (lua/pthcv/export/onnx: a
-- convolution with its BatchNorm folded, then its Add and activation), run
-- once with pthcv's kernels for the shape of every value. Each node shows
-- its op, its settings (kernel, stride, channels, groups, axis, bounds)
-- and its output shape; nodes sit in boxes of the modules they ran in
-- (layer1 > layer1.0), the input and the outputs are ovals. The edge that
-- carries a block's input around it to an Add (a residual) is drawn
-- dashed and blue; the edges into a Concat orange. Edges and nodes carry
-- a class ("residual", "concat") that dot passes on to SVG, and the DOT
-- text says the same in comments, so that tools can find them.
local onnx = require "pthcv.export.onnx"
local evaluate = require "pthcv.export.onnx.evaluate"
local attrs = require("pthcv.export.onnx.graph").attrs

local M = {}

local function dims(shape) return table.concat(shape, "×") end


local function pair(v, sep)
  if v == nil then return nil end
  if v[1] == v[2] then return tostring(v[1]) end
  return v[1] .. (sep or "×") .. v[2]
end

local function fmt(v) return string.format("%.4g", v) end

-- ops drawn inside the box of the node they follow
local ACTIVATIONS = { Relu = true, Clip = true, Sigmoid = true, Tanh = true, LeakyRelu = true, Elu = true,
                      HardSigmoid = true, HardSwish = true, PRelu = true }

-- The settings line of a node (init: name -> constant tensor).
local function settings(node, init)
  local at, op = attrs(node), node.op
  local parts = {}
  local function add(s) if s then parts[#parts + 1] = s end end
  if op == "Conv" or op == "ConvTranspose" then
    local w = init[node.inputs[2]]
    if at.kernel_shape then add(dims(at.kernel_shape)) end
    if at.strides and (at.strides[1] ~= 1 or at.strides[2] ~= 1) then add("/" .. pair(at.strides, ",")) end
    if w then add((op == "Conv" and w.shape[1] or w.shape[2] * (at.group or 1)) .. " ch") end
    if (at.group or 1) > 1 then add("groups " .. at.group) end
    if at.dilations and (at.dilations[1] ~= 1 or at.dilations[2] ~= 1) then add("dilation " .. pair(at.dilations)) end
  elseif op == "MaxPool" or op == "AveragePool" then
    add(dims(at.kernel_shape))
    if at.strides then add("/" .. pair(at.strides, ",")) end
    if at.ceil_mode == 1 then add("ceil") end
  elseif op == "Gemm" or op == "MatMul" then
    local w = init[node.inputs[2]]
    if w then add("→ " .. (op == "Gemm" and w.shape[1] or w.shape[2])) end
  elseif op == "Clip" then
    add("[" .. (at.min and fmt(at.min) or "-inf") .. ", " .. (at.max and fmt(at.max) or "inf") .. "]")
  elseif op == "Concat" or op == "Softmax" or op == "LogSoftmax" or op == "Flatten" then
    add("axis " .. tostring(at.axis))
  elseif op == "Resize" then
    add(at.mode .. (at.coordinate_transformation_mode == "align_corners" and ", align corners" or ""))
    if at.scales then add("×" .. pair({ at.scales[3], at.scales[4] })) end
  elseif op == "Transpose" then
    add("perm " .. table.concat(at.perm, ","))
  elseif op == "LeakyRelu" or op == "Elu" then
    add("α " .. fmt(at.alpha))
  end
  for i = 2, #node.inputs do -- a constant operand of arithmetic: its value or shape
    local c = init[node.inputs[i]]
    if c and (op == "Add" or op == "Sub" or op == "Mul" or op == "Div") then
      add(c.numel == 1 and fmt(evaluate.values(c)[1]) or ("const " .. dims(c.shape)))
    end
  end
  return table.concat(parts, " ")
end

local function escape(s) return (s:gsub("&", "&amp;"):gsub("<", "&lt;"):gsub(">", "&gt;"):gsub('"', "&quot;")) end

-- The module path a node ran in ("layer1.0.conv1"), or nil at the top.
local function module_path(node)
  return node.where and node.where:match("^(%S+) %(") or nil
end

local function parent(path) return path:match("^(.*)%.[^.]+$") or "" end

-- Whether module path b (an activation's; nil: the model's own forward) is
-- a sibling or a child of a (the op before it).
local function beside(a, b)
  a, b = a or "", b or ""
  return b ~= "" and (parent(b) == parent(a) or parent(b) == a)
end

-- The DOT text of traced model t (onnx.trace) with shapes.
function M.dot(t, shapes, title)
  local g = t.g
  local out = { "digraph model {",
    '  graph [rankdir=TB, fontname="Helvetica", fontsize=12, nodesep=0.25, ranksep=0.3, labelloc=t, label=<<b>'
      .. escape(title) .. "</b>>];",
    '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", color="#5b7db1", fontname="Helvetica", fontsize=10];',
    '  edge [color="#555555", arrowsize=0.6];' }
  local id = {}
  local input = g.inputs[1]
  id[input.name] = "in"
  out[#out + 1] = string.format('  in [shape=oval, fillcolor="#dff0d8", label=<<b>%s</b><br/>%s>];',
                                escape(input.name), dims(input.shape))
  -- boxes: a node of module "a.b.c" (or "a.b") sits in box a.b inside box a
  local members, children, roots = {}, {}, {}
  local function ensure(c)
    if members[c] then return end
    members[c], children[c] = {}, {}
    local parent = c:match("^(.*)%.[^.]+$")
    if parent then ensure(parent); table.insert(children[parent], c) else roots[#roots + 1] = c end
  end
  local function box_of(path)
    if not path then return nil end
    local parts = {}
    for p in path:gmatch("[^.]+") do parts[#parts + 1] = p end
    return table.concat(parts, ".", 1, math.min(#parts, 2))
  end
  local depth = { [input.name] = 0 }  -- the longest path from the input: the skip of an Add is the shallower operand
  -- an activation that alone reads a node's output is drawn in that node's
  -- box ("Conv 3×3 64 ch · Relu"), as pthcv runs it, when it ran in the same
  -- module, a sibling (conv1, then relu) or a child of the node's module
  -- (layer1.0's add, then layer1.0.relu)
  local readers, is_output = {}, {}
  for _, node in ipairs(g.nodes) do
    for _, nm in ipairs(node.inputs) do readers[nm] = (readers[nm] or 0) + 1 end
  end
  for _, o in ipairs(g.outputs) do is_output[o.name] = true end
  local producer = {}
  for i, node in ipairs(g.nodes) do for _, nm in ipairs(node.outputs) do producer[nm] = i end end
  local into = {}   -- node index -> the index of the box it is drawn in
  for i, node in ipairs(g.nodes) do
    local x = node.inputs[1]
    local p = producer[x]
    if ACTIVATIONS[node.op] and p and readers[x] == 1 and not is_output[x] and #g.nodes[p].outputs == 1
       and (g.nodes[p].where == node.where or beside(module_path(g.nodes[p]), module_path(node))) then
      into[i] = into[p] or p
    end
  end
  local boxes = {}  -- box index -> {ops = {...}, set, shape, where}
  for i, node in ipairs(g.nodes) do
    local b = into[i] or i
    boxes[b] = boxes[b] or { ops = {}, sets = {}, where = node.where }
    table.insert(boxes[b].ops, node.op)
    local set = settings(node, g.init_of)
    if set ~= "" then table.insert(boxes[b].sets, set) end
    boxes[b].shape = shapes[node.outputs[1]]
  end
  local n_nodes, n_edges, n_res, n_cat = 0, 0, 0, 0
  local edges = {}
  for i, node in ipairs(g.nodes) do
    local nid = "n" .. (into[i] or i)
    for _, nm in ipairs(node.outputs) do id[nm] = nid end
    local box = boxes[i]
    if box then
      n_nodes = n_nodes + 1
      local label = "<b>" .. escape(table.concat(box.ops, " · ")) .. "</b>"
                    .. (#box.sets > 0 and ("<br/>" .. escape(table.concat(box.sets, " · "))) or "")
                    .. (box.shape and ('<br/><font color="#777777">' .. dims(box.shape) .. "</font>") or "")
      local line = string.format('%s [label=<%s>, tooltip="%s"];', nid, label, escape(box.where or ""))
      local c = box_of(module_path(node))
      if c then ensure(c); table.insert(members[c], line) else out[#out + 1] = "  " .. line end
    end
    -- edges from computed values (initializers are settings, not nodes)
    local computed = {}
    for _, nm in ipairs(node.inputs) do if id[nm] then computed[#computed + 1] = nm end end
    local d = 0
    for _, nm in ipairs(computed) do d = math.max(d, depth[nm] or 0) end
    for _, nm in ipairs(node.outputs) do depth[nm] = d + 1 end
    local skip
    if node.op == "Add" and #computed == 2 and depth[computed[1]] ~= depth[computed[2]] then
      skip = depth[computed[1]] < depth[computed[2]] and computed[1] or computed[2]
    end
    for _, nm in ipairs(into[i] and {} or computed) do
      local style
      if nm == skip then
        style = ' [class="residual", style=dashed, color="#1f6fd1", penwidth=1.6, tooltip="residual"]; // residual'
        n_res = n_res + 1
      elseif node.op == "Concat" then
        style = ' [class="concat", color="#e08a1e", penwidth=1.4, tooltip="concat"]; // concat'
        n_cat = n_cat + 1
      else
        style = ";"
      end
      edges[#edges + 1] = "  " .. id[nm] .. " -> " .. nid .. style
      n_edges = n_edges + 1
    end
  end
  -- nested boxes ("layer1" holds "layer1.0"); a box of one node is left out
  local function emit(c, indent)
    if #children[c] == 0 and #members[c] == 1 then out[#out + 1] = indent .. members[c][1]; return end
    out[#out + 1] = string.format('%ssubgraph "cluster_%s" { label=<%s>; style="rounded"; color="#b0b0b0"; '
                                  .. 'fontcolor="#444444"; fontsize=10;', indent, c, escape(c))
    for _, line in ipairs(members[c]) do out[#out + 1] = indent .. "  " .. line end
    for _, child in ipairs(children[c]) do emit(child, indent .. "  ") end
    out[#out + 1] = indent .. "}"
  end
  for _, c in ipairs(roots) do emit(c, "  ") end
  for i, o in ipairs(g.outputs) do
    out[#out + 1] = string.format('  out%d [shape=oval, fillcolor="#fbe3d6", label=<<b>%s</b><br/>%s>];', i,
                                  escape(o.name), dims(o.shape))
    edges[#edges + 1] = "  " .. id[o.name] .. " -> out" .. i .. ";"
    n_edges = n_edges + 1
  end
  for _, e in ipairs(edges) do out[#out + 1] = e end
  out[#out + 1] = "}"
  return table.concat(out, "\n") .. "\n", { nodes = n_nodes, edges = n_edges, residual = n_res, concat = n_cat }
end

-- Whether Graphviz's dot runs here.
function M.have_dot()
  local r = os.execute("command -v dot >/dev/null 2>&1")
  return r == 0 or r == true
end

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Draws module m to path (.svg, .png or .dot); without Graphviz's dot, an
-- .svg or .png request writes path's .dot instead (info.format says which).
function M.model(m, path, o)
  o = o or {}
  local fmt_ext = path:lower():match("%.(%w+)$")
  if fmt_ext ~= "svg" and fmt_ext ~= "png" and fmt_ext ~= "dot" then
    error("pthcv: graph: " .. path .. ": the extension picks the picture, .svg, .png or .dot", 0)
  end
  local t = onnx.trace(m, { input = o.input, seed = o.seed, opset = onnx.OPSET_MAX, input_names = o.input_names,
                            output_names = o.output_names })
  local ok, res = pcall(function()
    local g = t.g
    local shapes = {}
    local values = { [g.inputs[1].name] = t.x }
    for name, init in pairs(g.init_of) do values[name] = init end
    evaluate.run(g.nodes, values, { refs = g.refs, ctx = { opset = onnx.OPSET_MAX }, shapes = shapes })
    return { M.dot(t, shapes, o.title or m:typename()) }
  end)
  onnx.release(t)
  if not ok then error(res, 0) end
  local text, info = res[1], res[2]
  info.format = fmt_ext
  local dot_path = fmt_ext == "dot" and path or nil
  if fmt_ext ~= "dot" and not M.have_dot() then
    dot_path = path:gsub("%.%w+$", ".dot")
    info.format, info.missing_dot = "dot", true
  end
  if dot_path then
    require("pthcv.export.protobuf").write_parts(dot_path, { text })
    info.path = dot_path
    return info
  end
  local tmp = path .. ".dot.tmp"
  require("pthcv.export.protobuf").write_parts(tmp, { text })
  local cmd = "dot -T" .. fmt_ext .. " -o " .. shell_quote(path) .. " " .. shell_quote(tmp) .. " 2>&1"
  local p = io.popen(cmd)
  local msg = p:read("*a")
  local okc = p:close()
  os.remove(tmp)
  if not okc then error("pthcv: graph: dot failed: " .. msg, 0) end
  info.path = path
  return info
end

return M
