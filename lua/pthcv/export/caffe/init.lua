-- lua/pthcv/export/caffe/init.lua: a Caffe model (.prototxt and .caffemodel)
-- for OpenCV's cv::dnn::readNetFromCaffe, the seed's third route.
--
--   local caffe = require "pthcv.export.caffe"
--   caffe.export(model, "m.prototxt", { input = {1, 3, 224, 224} })
--   -- writes m.prototxt (the network, text format) and m.caffemodel (the
--   -- same layers with their weights, binary)
--
-- The model is traced as for ONNX (lua/pthcv/export/onnx: the canonical
-- graph of its ops), each node is given its Caffe form (layers.lua, which
-- refuses the ones Caffe lacks, by name), and the layers are run with
-- pthcv's kernels as Caffe defines them (evaluate.lua) before anything is
-- written: every traced value must be within 1e-5 of the forward pass.
-- Both files are written by the exporters' one protobuf writer
-- (lua/pthcv/export/protobuf.lua) from the schemas of schema.lua.
-- Shapes are the traced input's (Caffe's Input layer declares them).
local pb = require "pthcv.export.protobuf"
local onnx = require "pthcv.export.onnx"
local onnx_eval = require "pthcv.export.onnx.evaluate"
local graph = require "pthcv.export.onnx.graph"
local schema = require "pthcv.export.caffe.schema"
local convert = require "pthcv.export.caffe.layers"
local kernels = require "pthcv.export.caffe.evaluate"

local M = {}

-- The .caffemodel beside a .prototxt path.
function M.weights_path(path) return (path:gsub("%.prototxt$", "")) .. ".caffemodel" end

local function blob(t)
  t = t:float():contiguous()
  return { shape = { dim = t.shape }, data = t }
end

-- The layers of module m, checked: {layers, input = {name, shape}, outputs
-- = {{name, shape}}, shapes = name -> shape}. o: onnx.trace's options
-- (input, seed, input_names, output_names); --dynamic and --half are
-- refused (a Caffe net has the sizes of its Input layer; OpenCV reads
-- float32 Caffe weights).
function M.build(m, o)
  o = o or {}
  if o.dynamic and #o.dynamic > 0 then
    graph.refuse("Caffe: --dynamic: a Caffe net declares its input's sizes (export ONNX for dynamic axes)")
  end
  if o.half then graph.refuse("Caffe: --half: pthcv writes float32 Caffe weights (ONNX takes --half)") end
  local t = onnx.trace(m, { input = o.input, seed = o.seed, input_names = o.input_names,
                            output_names = o.output_names, opset = onnx.OPSET_MAX })
  local ok, res = pcall(function()
    local g = t.g
    local input = g.inputs[1]
    local values = { [input.name] = t.x }
    for name, init in pairs(g.init_of) do values[name] = init end
    local outputs = {}
    for i, out in ipairs(g.outputs) do outputs[i] = out.name end
    -- the canonical graph, checked, gives every value's shape
    local shapes = { [input.name] = input.shape }
    onnx_eval.run(g.nodes, values, { refs = g.refs, ctx = { opset = onnx.OPSET_MAX }, shapes = shapes,
                                     outputs = outputs, form = "ONNX" })
    local layers, alias = convert(g, shapes)
    for _, name in ipairs(outputs) do
      if alias[name] then graph.refuse("Caffe: the output " .. name .. " is the value " .. alias[name] .. " itself") end
    end
    onnx_eval.run(layers, { [input.name] = t.x }, { kernels = kernels, attrs = function(l) return l.param end,
                                                   refs = g.refs, outputs = outputs, form = "Caffe" })
    local outs = {}
    for i, out in ipairs(g.outputs) do outs[i] = { name = out.name, shape = out.shape } end
    return { layers = layers, input = { name = input.name, shape = input.shape }, outputs = outs, shapes = shapes }
  end)
  onnx.release(t)
  if not ok then error(res, 0) end
  return res
end

-- Layer and blob names a reader can place (after the check, which works
-- on the traced names): each layer named after the module it runs in
-- ("layer1.0.conv1", then "layer1.0.conv1/relu" for the next layer there),
-- its first top after the layer, the input and outputs kept.
local function readable_names(net)
  local keep = { [net.input.name] = true }
  for _, out in ipairs(net.outputs) do keep[out.name] = true end
  local used, used_blob, blob_name = {}, {}, {}
  for name in pairs(keep) do used[name], used_blob[name] = true, true end
  for _, l in ipairs(net.layers) do
    local path = l.where and l.where:match("^(%S+) %(")
    local kind = l.type:lower()
    local name = path or kind
    if used[name] then name = (path and (path .. "/") or "") .. kind end
    local base, k = name, 1
    while used[name] do k = k + 1; name = base .. "_" .. k end
    used[name] = true
    l.name = name
    for j, top in ipairs(l.top) do
      if not keep[top] then
        local b = j == 1 and name or (name .. ":" .. j)
        while used_blob[b] do b = b .. "_" end
        used_blob[b] = true
        blob_name[top] = b
      end
    end
  end
  for _, l in ipairs(net.layers) do
    for j, nm in ipairs(l.bottom) do l.bottom[j] = blob_name[nm] or nm end
    for j, nm in ipairs(l.top) do l.top[j] = blob_name[nm] or nm end
  end
end

-- The NetParameter of a built net: with_blobs for the .caffemodel.
local function net_parameter(net, name, with_blobs)
  local layers = { { name = net.input.name, type = "Input", top = { net.input.name },
                     input_param = { shape = { { dim = net.input.shape } } } } }
  for _, l in ipairs(net.layers) do
    local entry = { name = l.name, type = l.type, bottom = l.bottom, top = l.top }
    if l.param_key then entry[l.param_key] = l.param end
    if with_blobs and #l.blobs > 0 then
      entry.blobs = {}
      for i, b in ipairs(l.blobs) do entry.blobs[i] = blob(b) end
    end
    layers[#layers + 1] = entry
  end
  return { name = name, layer = layers }
end

-- Writes module m as path (.prototxt) and its .caffemodel; returns {layers =
-- n, prototxt = path, caffemodel = path, bytes = n (the .caffemodel's),
-- outputs = {{name, shape}}}.
function M.export(m, path, o)
  o = o or {}
  local net = M.build(m, o)
  readable_names(net)
  local name = o.name or m:typename()
  local text = "# " .. name .. ", written by pthcv " .. require("pthcv").version .. " (weights: "
               .. M.weights_path(path):match("[^/]*$") .. ")\n"
               .. pb.text(schema, "NetParameter", net_parameter(net, name, false))
  local model = pb.encode(schema, "NetParameter", net_parameter(net, name, true))
  local weights = M.weights_path(path)
  model:write_file(weights)
  pb.write_parts(path, { text })
  return { layers = #net.layers, prototxt = path, caffemodel = weights, bytes = model.size, outputs = net.outputs,
           output_shape = net.outputs[1].shape }
end

return M
