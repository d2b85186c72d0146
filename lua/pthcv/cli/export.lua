-- lua/pthcv/cli/export.lua: `pthcv export`, an ONNX file for cv::dnn (and
-- other runtimes) or a Caffe .prototxt + .caffemodel pair (the tracing is
-- lua/pthcv/export/onnx, the Caffe forms lua/pthcv/export/caffe).
--
--   pthcv export [FILE] (--model NAME | --script FILE.lua) (--weights FILE | --init I) -o OUT.onnx|OUT.prototxt
--                [--shape 1x3x224x224 | --input X.npy] [--num-classes N] [--opset N]
--                [--dynamic batch,height,width] [--input-names N] [--output-names A,B] [--half]
--                [--no-postprocess]
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"

local M = {}

local function names(s)
  if s == nil then return nil end
  local list = {}
  for part in (s .. ","):gmatch("([^,]*),") do
    if part == "" then error(runner.usage_error("empty name in '" .. s .. "'"), 0) end
    list[#list + 1] = part
  end
  return list
end

local function shape_str(shape) return "[" .. table.concat(shape, ", ") .. "]" end

local function outputs_str(outputs)
  local parts = {}
  for i, out in ipairs(outputs) do parts[i] = out.name .. " " .. shape_str(out.shape) end
  return table.concat(parts, ", ")
end

M.command = {
  name = "export", args = "[FILE]", nargs = { 0, 1 },
  synopsis = "export [FILE] (--model NAME | --script FILE.lua) (--weights FILE | --init zeros|random)\n"
             .. "    -o OUT.onnx|OUT.prototxt [--shape 1x3x224x224 | --input X.npy] [--num-classes N]\n"
             .. "    [--opset N] [--dynamic batch,height,width] [--input-names NAME] [--output-names A,B] [--half]\n"
             .. "    [--no-postprocess]",
  summary = [[
an ONNX file (opsets 10 to 17, default 11) that cv::dnn::readNetFromONNX
loads, or a Caffe .prototxt and .caffemodel for readNetFromCaffe, traced
from one forward pass on the input (--input, or a seeded random tensor of
--shape) and checked against it with pthcv's kernels]],
  help = [[
an ONNX file (opsets 10 to 17, default 11: what OpenCV 4.6 reads best) that
cv::dnn::readNetFromONNX loads, or with -o OUT.prototxt a Caffe network and
its weights (OUT.caffemodel beside it) for cv::dnn::readNetFromCaffe. The
model is traced from one forward pass on the input (--input, or a seeded
random tensor of --shape); FILE is the weights with --model or --script,
else a whole-model (or TorchScript) file holding the model. The graph
written is run with pthcv's kernels first and refused, naming the node,
unless it computes what the forward did. Ops with no form in the format
are refused by name; what OpenCV 4.6 cannot run of a valid file is
printed as a warning. See docs/export.md.]],
  options = options.list(options.model, {
    { "output", short = "o", kind = "string", metavar = "OUT", help = "OUT.onnx, or OUT.prototxt (+ OUT.caffemodel)" },
    { "shape", kind = "shape", metavar = "1x3x224x224", help = "the traced input's shape (the default)" },
    { "input", kind = "string", metavar = "X.npy", help = "the traced input" },
    { "opset", kind = "count", metavar = "N", help = "the ONNX opset, 10 to 17 (default 11)" },
    { "dynamic", kind = "string", metavar = "AXES",
      help = "symbolic input dims: batch, height, width, channels or\nAXIS=NAME, separated by commas (ONNX only)" },
    { "input-names", kind = "string", metavar = "NAME", help = "the input's name (default input)" },
    { "output-names", kind = "string", metavar = "A,B",
      help = "the outputs' names (default logits for a 2-d output,\noutput, output_1..., or the keys of a table)" },
    { "half", help = "float16 weights behind Cast nodes (ONNX only; not for\nOpenCV 4.6, which reads no float16)" },
    { "no-postprocess", help = "SSD, RetinaNet and FCOS: the network up to the head's\noutputs, the default boxes or anchors in OUT.anchors.npy" },
  }),
  run = function(pos, opt)
    local out = opt.output
    if not out then error(runner.usage_error("export needs -o OUT.onnx or -o OUT.prototxt"), 0) end
    local caffe = out:lower():match("%.prototxt$") ~= nil
    if not caffe and not out:lower():match("%.onnx$") then
      error(runner.usage_error("-o " .. out .. ": the file's extension picks the format, .onnx or .prototxt"), 0)
    end
    if opt.shape and opt.input then error(runner.usage_error("give --shape or --input, not both"), 0) end
    if caffe and (opt.opset or opt.dynamic or opt.half) then
      error(runner.usage_error("--opset, --dynamic and --half are ONNX options (-o " .. out .. " writes Caffe)"), 0)
    end
    local pthcv = require "pthcv"
    local o = { opset = opt.opset, dynamic = names(opt.dynamic), input_names = names(opt["input-names"]),
                output_names = names(opt["output-names"]), half = opt.half, seed = opt.seed,
                no_postprocess = opt["no-postprocess"] }
    local onnx = require "pthcv.export.onnx"
    o.input = opt.input and pthcv.load_npy(opt.input) or opt.shape or { 1, 3, 224, 224 }
    if not caffe then -- bad values refused before building anything
      local ok, err = pcall(function()
        onnx.check_options(o)
        if o.dynamic then require("pthcv.export.onnx.dynamic").parse(o.dynamic, #(o.input.shape or o.input)) end
      end)
      if not ok then error(runner.usage_error(tostring(err):gsub("^pthcv: ", "")), 0) end
    end
    if not pos[1] and not opt.model and not opt.script then
      error(runner.usage_error("export needs a model: FILE (a whole model or TorchScript), --model NAME or --script FILE.lua"), 0)
    end
    local m = require("pthcv.cli.model_file").module(pos, opt, true)
    if caffe then
      require("pthcv.export.onnx.ops_detection").refuse_format(m, "Caffe")
      local r = require("pthcv.export.caffe").export(m, out, o)
      io.stdout:write(string.format("%s, %s: %d layers, %d bytes of weights, output %s\n", r.prototxt, r.caffemodel,
                                    r.layers, r.bytes, outputs_str(r.outputs)))
      return 0
    end
    local r = onnx.export(m, out, o)
    for _, w in ipairs(r.warnings) do runner.err("warning: " .. w) end
    local half = r.half and string.format(", %d float16 and %d float32 weights", r.half, r.float) or ""
    io.stdout:write(string.format("%s: opset %d, %d nodes, %d initializers%s, %d bytes, input %s %s, output %s\n", out,
                                  r.opset, r.nodes, r.initializers, half, r.bytes, r.inputs[1].name,
                                  shape_str(r.inputs[1].shape), outputs_str(r.outputs)))
    if r.anchors then -- a detector's head outputs (--no-postprocess): the default boxes they are decoded against
      local anchors = out:gsub("%.[Oo][Nn][Nn][Xx]$", "") .. ".anchors.npy"
      pthcv.save(anchors, r.anchors)
      io.stdout:write(string.format("%s: default boxes [%s] (x1, y1, x2, y2 in the resized image)\n", anchors,
                                    table.concat(r.anchors.shape, ", ")))
    end
    return 0
  end,
}

return M
