-- lua/pthcv/cli/export.lua: `pthcv export`, an ONNX file for OpenCV's cv::dnn
-- (cli.lua dispatches here; the tracing is lua/pthcv/export/onnx).
--
--   pthcv export (--model NAME | --script FILE.lua) [--weights FILE] -o OUT.onnx
--                [--shape 1x3x224x224 | --input X.npy] [--num-classes N] [--half]
local M = {}

M.usage = [[
  export (--model NAME | --script FILE.lua) [--weights FILE] -o OUT.onnx
      [--shape 1x3x224x224 | --input X.npy] [--num-classes N] [--half]
      an ONNX file (opset 10) that OpenCV's cv::dnn::readNetFromONNX loads,
      traced from one forward pass on the input (--input, or a seeded random
      tensor of --shape); --half is refused (OpenCV 4.6 reads no float16
      initializers)
]]

local OPTS = { model = "value", script = "value", weights = "value", o = "value", output = "value",
               shape = "value", input = "value", ["num-classes"] = "value", half = "bool" }

-- The module of --model (torchvision's num_classes from the weights) or
-- --script, with --weights loaded, prepared for inference: cli/run.lua's.
local build = require("pthcv.cli.run").build

function M.export(args, parse, usage_error, err)
  local pos, opt, e = parse(args, OPTS)
  if not pos then return usage_error(e) end
  if #pos > 0 then return usage_error("export takes no positional argument") end
  local out = opt.o or opt.output
  if not out then return usage_error("export needs -o OUT.onnx") end
  if opt.shape and opt.input then return usage_error("give --shape or --input, not both") end
  local ok, msg = pcall(function()
    local pthcv = require "pthcv"
    local input
    if opt.input then
      input = pthcv.load_npy(opt.input)
    else
      input = {}
      for n in (opt.shape or "1x3x224x224"):gmatch("%d+") do input[#input + 1] = tonumber(n) end
    end
    local onnx = require "pthcv.export.onnx"
    onnx.check_options({ half = opt.half }) -- refused before building anything
    local r = onnx.export(build(opt), out, { input = input, half = opt.half })
    return string.format("%s: %d nodes, %d initializers, %d bytes, output [%s]", out, r.nodes, r.initializers,
                         r.bytes, table.concat(r.output_shape, ", "))
  end)
  if not ok then err(msg); return 1 end
  io.stdout:write(msg, "\n")
  return 0
end

return M
