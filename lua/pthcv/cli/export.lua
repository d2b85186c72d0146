-- lua/pthcv/cli/export.lua: `pthcv export`, an ONNX file for OpenCV's cv::dnn
-- (the tracing is lua/pthcv/export/onnx).
--
--   pthcv export (--model NAME | --script FILE.lua) (--weights FILE | --init I) -o OUT.onnx
--                [--shape 1x3x224x224 | --input X.npy] [--num-classes N] [--half]
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"

local M = {}

M.command = {
  name = "export", nargs = { 0, 0 },
  synopsis = "export (--model NAME | --script FILE.lua) (--weights FILE | --init zeros|random) -o OUT.onnx\n"
             .. "    [--shape 1x3x224x224 | --input X.npy] [--num-classes N] [--half]",
  summary = [[
an ONNX file (opset 10) that OpenCV's cv::dnn::readNetFromONNX loads,
traced from one forward pass on the input (--input, or a seeded random
tensor of --shape); --half is refused (OpenCV 4.6 reads no float16
initializers)]],
  options = options.list(options.model, {
    { "output", short = "o", kind = "string", metavar = "OUT.onnx", help = "the ONNX file" },
    { "shape", kind = "shape", metavar = "1x3x224x224", help = "the traced input's shape (the default)" },
    { "input", kind = "string", metavar = "X.npy", help = "the traced input" },
    { "half", help = "refused: OpenCV 4.6 reads no float16 initializers" },
  }),
  run = function(pos, opt)
    if not opt.output then error(runner.usage_error("export needs -o OUT.onnx"), 0) end
    if opt.shape and opt.input then error(runner.usage_error("give --shape or --input, not both"), 0) end
    local pthcv = require "pthcv"
    local input = opt.input and pthcv.load_npy(opt.input) or opt.shape or { 1, 3, 224, 224 }
    local onnx = require "pthcv.export.onnx"
    onnx.check_options({ half = opt.half }) -- refused before building anything
    local half = opt.half
    opt.half = nil   -- the module stays float32; export() stores float16 (refused above today)
    local r = onnx.export(require("pthcv.cli.model").build(opt, true), opt.output, { input = input, half = half })
    io.stdout:write(string.format("%s: %d nodes, %d initializers, %d bytes, output [%s]\n", opt.output, r.nodes,
                                  r.initializers, r.bytes, table.concat(r.output_shape, ", ")))
    return 0
  end,
}

return M
