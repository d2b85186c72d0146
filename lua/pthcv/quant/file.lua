-- lua/pthcv/quant/file.lua: a quantized model's int8 layers in a .pth file
-- (pthcv.quant.save / pthcv.quant.load; `pthcv quantize` writes one, and
-- `pthcv run/bench --weights` read it).
--
-- The file is an OrderedDict as torch.save writes it (torch.load reads it):
-- for each int8 layer, under the path of the module that made it,
--   P.weight        qint8, per output channel (per_channel_affine, zero points 0)
--   P.bias          float32 (when the layer has one; a folded BatchNorm's)
--   P.scale, P.zero_point              the output's quantization
--   P.input_scale, P.input_zero_point  a float32 input's quantization
--   P.residual_scale, P.residual_zero_point   a float32 residual's, if any
-- and pthcv_int8.version = 1. The architecture is the model's own (the
-- same pthcv.models model, or the same script): load puts the int8 layers
-- into its packs, where quantize had put them.
local Tensor = require "pthcv.tensor"
local packs = require "pthcv.quant.packs"
local slots = require "pthcv.quant.slots"
local pth = require "pthcv.quant.pth"

local M = {}
local VERSION_KEY = "pthcv_int8.version"

local function module_paths(model)
  local paths = {}
  for _, kv in ipairs(model:named_modules()) do paths[kv[2]] = kv[1] end
  return paths
end

local function scalar(v, dtype) return Tensor.from_table({ v }, dtype):reshape({}) end

-- save(model, path): the int8 layers of a model quantized by quantize()
function M.save(model, path)
  if not rawget(model, "_quantized") then error("pthcv: quant.save: the model is not quantized (quantize it first)", 0) end
  local entries, seen = {}, {}
  for _, slot in ipairs(slots.of(model, true)) do
    local q = slot.pack
    local p = q.path
    if not p or not q.w then error("pthcv: quant.save: an int8 layer has no module path (made by load_torch?)", 0) end
    if not seen[p] then
      seen[p] = true
      local function add(k, v) entries[#entries + 1] = { p .. "." .. k, v } end
      add("weight", q.w)
      if q.b then add("bias", q.b) end
      add("scale", scalar(q.out_scale, "float64")); add("zero_point", scalar(q.out_zp, "int64"))
      add("input_scale", scalar(q.in_scale, "float64")); add("input_zero_point", scalar(q.in_zp, "int64"))
      if q.res_scale then
        add("residual_scale", scalar(q.res_scale, "float64")); add("residual_zero_point", scalar(q.res_zp, "int64"))
      end
    end
  end
  entries[#entries + 1] = { VERSION_KEY, Tensor.from_table({ 1 }, "int64") }
  pth.save(path, entries)
  return #entries
end

-- Whether a state dict (name -> tensor, or a list of {name, tensor}) is one save wrote.
function M.is_int8(dict)
  if dict[VERSION_KEY] then return true end
  for _, kv in ipairs(dict) do if kv[1] == VERSION_KEY then return true end end
  return false
end

-- load(model, file or list of {name, tensor}): model (its architecture)
-- with the int8 layers of the file
function M.load(model, src)
  local list = src
  if type(src) == "string" then list = require("pthcv.reader.odict").items(require("pthcv").state_dict(src)) end
  local dict = {}
  for _, kv in ipairs(list) do dict[kv[1]] = kv[2] end
  if not M.is_int8(dict) then error("pthcv: quant.load: not an int8 file of pthcv (no " .. VERSION_KEY .. ")", 0) end
  rawset(model, "_quantized", nil)
  require("pthcv.quant.fuse").install(model)
  local paths, n = module_paths(model), 0
  local function num(key)
    local t = dict[key]
    if not Tensor.is(t) then error("pthcv: quant.load: the file has no " .. key, 0) end
    return t:reshape({}):item()
  end
  for _, slot in ipairs(slots.of(model)) do
    local pk = slot.pack
    local p = pk.module and paths[pk.module]
    local w = p and dict[p .. ".weight"]
    if not Tensor.is(w) or w.dtype ~= "qint8" then
      error("pthcv: quant.load: the file has no int8 weight for " .. tostring(p) .. " (another architecture?)", 0)
    end
    local qp = { in_scale = num(p .. ".input_scale"), in_zp = num(p .. ".input_zero_point"),
                 out_scale = num(p .. ".scale"), out_zp = num(p .. ".zero_point") }
    if dict[p .. ".residual_scale"] then
      qp.res_scale, qp.res_zp = num(p .. ".residual_scale"), num(p .. ".residual_zero_point")
    end
    local q = packs.build(pk, w, dict[p .. ".bias"], qp)
    q.path = p
    slot.holder[slot.key] = q
    n = n + 1
  end
  rawset(model, "_quantized", { layers = n, method = "file" })
  slots.float_outputs(model)
  return model
end

return M
