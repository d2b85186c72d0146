-- lua/pthcv/cli/quantize.lua: `pthcv quantize`, a model's int8 version
-- (pthcv.quant: module:quantize, then pthcv.quant.save).
--
--   pthcv quantize (--model NAME | --script FILE.lua) --weights FILE --calib DIR -o OUT.pth
--                  [--method minmax|percentile|entropy] [--percentile P] [--size N] [--resize N]
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"

local M = {}

local IMAGE = { jpg = true, jpeg = true, png = true, bmp = true, webp = true, tif = true, tiff = true, ppm = true,
                pgm = true }

-- The calibration inputs in DIR, in name order: image files (through
-- pthcv.image.blob) and .npy tensors; an error if there is none.
local function calibration_of(dir, blob)
  local pthcv = require "pthcv"
  local p = io.popen("ls -1 '" .. dir:gsub("'", "'\\''") .. "' 2>/dev/null")
  local names = {}
  for line in p:lines() do names[#names + 1] = line end
  p:close()
  table.sort(names)
  local inputs = {}
  for _, name in ipairs(names) do
    local ext = (name:match("%.([^.]+)$") or ""):lower()
    local file = dir .. "/" .. name
    if ext == "npy" then inputs[#inputs + 1] = pthcv.load_npy(file)
    elseif IMAGE[ext] then inputs[#inputs + 1] = pthcv.image.blob(pthcv.image.read(file), blob) end
  end
  if #inputs == 0 then
    error("pthcv: " .. dir .. ": no calibration inputs (image files or .npy tensors) in this folder", 0)
  end
  return inputs
end

M.command = {
  name = "quantize", nargs = { 0, 0 },
  synopsis = "quantize (--model NAME | --script FILE.lua) (--weights FILE | --init random) --calib DIR -o OUT.pth\n"
             .. "    [--method minmax|percentile|entropy] [--percentile P] [--size N] [--resize N]",
  summary = [[
an int8 version of the model (post-training static quantization,
docs/nn.md): calibrated on the images (ImageNet's normalisation, a
--size crop after --resize) and .npy tensors in DIR, written to OUT.pth,
which run and bench take as --weights]],
  options = options.list(options.model, {
    { "calib", kind = "string", metavar = "DIR", help = "the calibration images or .npy tensors" },
    { "output", short = "o", kind = "string", metavar = "OUT.pth", help = "the int8 model" },
    { "method", kind = "choice", choices = { "minmax", "percentile", "entropy" },
      help = "how activation ranges are chosen (default minmax)" },
    { "percentile", kind = "number", metavar = "P", help = "for --method percentile (default 99.99)" },
    { "size", kind = "count", metavar = "N", help = "the calibration images' crop (default 224)" },
    { "resize", kind = "count", metavar = "N", help = "shorter side before the crop (default 256)" },
    options.threads,
  }),
  run = function(pos, opt)
    if not opt.output then error(runner.usage_error("quantize needs -o OUT.pth"), 0) end
    if not opt.calib then error(runner.usage_error("quantize needs --calib DIR"), 0) end
    local pthcv = require "pthcv"
    if opt.threads then pthcv.set_num_threads(opt.threads) end
    local size = opt.size or 224
    local blob = { size = size, resize = opt.resize or math.floor(size * 256 / 224), crop = true, rgb = true,
                   scale = 1 / 255,   -- torchvision's normalisation is on pixels / 255
                   mean = { 0.485, 0.456, 0.406 }, std = { 0.229, 0.224, 0.225 } }
    local inputs = calibration_of(opt.calib, blob)
    local m = require("pthcv.cli.model").build(opt, true)
    m:quantize{ calibration = inputs, method = opt.method, percentile = opt.percentile }
    local n = pthcv.quant.save(m, opt.output)
    io.stdout:write(string.format("%s: %d int8 layers (%s), %d entries, calibrated on %d inputs\n", opt.output,
                                  rawget(m, "_quantized").layers, opt.method or "minmax", n, #inputs))
    return 0
  end,
}

return M
