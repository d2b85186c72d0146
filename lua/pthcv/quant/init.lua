-- lua/pthcv/quant/init.lua: post-training static int8 quantization,
-- module:quantize{calibration = ...} (docs/nn.md, "int8").
--
-- 1. The model runs in eval mode (BatchNorm already folded into its
--    convolutions' packs) over the calibration inputs, with an observer on
--    every packed convolution and linear layer (F.observer): the range of
--    each one's input, residual and output.
-- 2. Each observed pack is replaced by an int8 one (quant/packs.lua):
--    weights per output channel, symmetric; activations per tensor, uint8
--    with a zero point, their range from the observed values by `method`:
--      "minmax"     the observed minimum and maximum;
--      "percentile" the `percentile` (default 99.99) and 100 - `percentile`
--                   percentiles of a sample of the values;
--      "entropy"    the clipping threshold whose 8-bit histogram is closest
--                   (Kullback-Leibler) to the sample's (TensorRT's method);
--                   the model's own input keeps its observed range (input
--                   values on a few levels, as image pixels are, make the
--                   divergence pick a threshold far too small).
-- 3. The model keeps its int8 packs until its weights are loaded again;
--    convolutions pass uint8 tensors to each other, other ops take them as
--    their real values (float32), and the model's outputs are float32.
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local stats = require "pthcv.quant.stats"
local packs = require "pthcv.quant.packs"
local slots = require "pthcv.quant.slots"

local M = {}

-- The calibration inputs as float32 tensors: tensors as they are, image
-- files (paths) and images (uint8 [H, W, C]) through pthcv.image.blob with
-- opts.blob (default ImageNet's 224 crop and normalisation).
local function inputs_of(opts)
  local list = opts.calibration
  if type(list) ~= "table" or Tensor.is(list) then
    error("pthcv: quantize: calibration must be a list of tensors, images or image file names", 3)
  end
  if #list == 0 then error("pthcv: quantize: calibration is empty: it needs at least one input", 3) end
  local image
  local blob = opts.blob or { size = 224, resize = 256, crop = true, rgb = true, scale = 1 / 255,
                              mean = { 0.485, 0.456, 0.406 }, std = { 0.229, 0.224, 0.225 } }
  local out = {}
  for i, v in ipairs(list) do
    if type(v) == "string" then
      image = image or require "pthcv.image"
      v = image.read(v)
    end
    if not Tensor.is(v) then
      error(string.format("pthcv: quantize: calibration[%d] is a %s, not a tensor, image or file name", i, type(v)), 3)
    end
    if v.dtype == "uint8" and v.ndim == 3 then
      image = image or require "pthcv.image"
      v = image.blob(v, blob)
    end
    if v.dtype ~= "float32" then v = v:float() end
    out[i] = v
  end
  return out
end

-- Runs the calibration inputs with the observer on; the statistics per pack.
local function calibrate(model, inputs, opts)
  local seen, current = {}, nil
  local function record(pk, x, residual, y)
    local s = seen[pk]
    if not s then
      s = { x = stats.new(opts), y = stats.new(opts) }
      seen[pk] = s
    end
    if rawequal(x, current) then s.x.model_input = true end
    stats.add(s.x, x)
    stats.add(s.y, y)
    if residual then
      s.r = s.r or stats.new(opts)
      stats.add(s.r, residual)
    end
  end
  local previous = F.observer
  F.observer = record
  local ok, err = pcall(function()
    for _, x in ipairs(inputs) do
      current = x
      model(x)
    end
  end)
  F.observer = previous
  if not ok then error(err, 0) end
  return seen
end

-- The output range of each pack that writes into a concatenation with
-- others (quant/fuse.lua's cat groups, e.g. Fire's expand convolutions):
-- the union of the group's ranges, which is what an observer of the
-- concatenated tensor sees (torch's quantized cat requantizes its inputs
-- to such a range; writing each output at that scale directly rounds once
-- instead of twice). pack -> {lo, hi}.
local function shared_ranges(model, seen, method, opts)
  local out = {}
  for _, group in ipairs(require("pthcv.quant.fuse").cat_groups(model)) do
    local lo, hi, all = 0, 0, true
    for _, pk in ipairs(group) do
      local s = seen[pk]
      if not s then all = false; break end
      local l, h = stats.range(s.y, method, opts)
      lo, hi = math.min(lo, l), math.max(hi, h)
    end
    if all then for _, pk in ipairs(group) do out[pk] = { lo, hi } end end
  end
  return out
end

function M.quantize(model, opts)
  opts = opts or {}
  local method = opts.method or "minmax"
  if method ~= "minmax" and method ~= "percentile" and method ~= "entropy" then
    error("pthcv: quantize: method must be minmax, percentile or entropy, got " .. tostring(method), 2)
  end
  if opts.percentile and not (opts.percentile > 50 and opts.percentile <= 100) then
    error("pthcv: quantize: percentile must be in (50, 100], got " .. tostring(opts.percentile), 2)
  end
  if rawget(model, "_quantized") then error("pthcv: quantize: the model is quantized already", 2) end
  local inputs = inputs_of(opts)
  require("pthcv.quant.fuse").install(model)
  local seen = calibrate(model, inputs, opts)
  local n, paths = 0, {}
  for _, kv in ipairs(model:named_modules()) do paths[kv[2]] = kv[1] end
  local shared = shared_ranges(model, seen, method, opts)
  for _, slot in ipairs(slots.of(model)) do
    local s = seen[slot.pack]
    if s then
      local q = packs.make(slot.pack, s, method, opts, shared[slot.pack])
      q.path = slot.pack.module and paths[slot.pack.module]   -- the name save() writes it under
      slot.holder[slot.key] = q
      n = n + 1
    end
  end
  if n == 0 then error("pthcv: quantize: the model ran no convolution or linear layer on the calibration inputs", 2) end
  rawset(model, "_quantized", { layers = n, method = method })
  slots.float_outputs(model)
  return model
end

-- pthcv.quant.save(model, path) / load(model, path): a quantized model's
-- int8 layers in a .pth file (quant/file.lua)
function M.save(model, path) return require("pthcv.quant.file").save(model, path) end
function M.load(model, src) return require("pthcv.quant.file").load(model, src) end
function M.is_int8(dict) return require("pthcv.quant.file").is_int8(dict) end

-- pthcv.quant.load_torch(model, state_dict): torch's own int8 models (quant/torch.lua)
function M.load_torch(model, sd) return require("pthcv.quant.torch").load(model, sd) end

return M
