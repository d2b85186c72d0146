-- lua/pthcv/nn/misc.lua: shape and resampling layers: Flatten, Unflatten,
-- Dropout (the identity at inference), Upsample, ChannelShuffle,
-- PixelShuffle, ZeroPad2d, as torch.nn's. Dims are torch's (0-based).
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local class = base.class
local args = A.named
local M = {}

local function layer(name, file)
  return class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules." .. file .. "." .. name })
end

-- nn.Flatten([start_dim = 1, end_dim = -1])
local Flatten = layer("Flatten", "flatten")
M.Flatten = Flatten
function Flatten:__init(...)
  local a = args("Flatten", { "start_dim", "end_dim" }, ...)
  self.start_dim, self.end_dim = a.start_dim or 1, a.end_dim or -1
end
function Flatten:forward(x) return F.flatten(x, self.start_dim, self.end_dim) end
function Flatten:extra_repr() return string.format("start_dim=%d, end_dim=%d", self.start_dim, self.end_dim) end

-- nn.Unflatten(dim, unflattened_size)
local Unflatten = layer("Unflatten", "flatten")
M.Unflatten = Unflatten
function Unflatten:__init(dim, unflattened_size) self.dim, self.unflattened_size = dim, unflattened_size end
function Unflatten:forward(x)
  local d = A.dim0(x, self.dim, "Unflatten") + 1
  local shape, out = x.shape, {}
  for i = 1, d - 1 do out[#out + 1] = shape[i] end
  for _, s in ipairs(self.unflattened_size) do out[#out + 1] = s end
  for i = d + 1, #shape do out[#out + 1] = shape[i] end
  return Tensor.methods.reshape(x, out)
end
function Unflatten:extra_repr()
  return "dim=" .. self.dim .. ", unflattened_size=" .. py.value(self.unflattened_size)
end

-- nn.Dropout(p = 0.5, inplace = false) and friends: the identity (inference).
for _, name in ipairs { "Dropout", "Dropout1d", "Dropout2d", "Dropout3d", "AlphaDropout" } do
  local cls = layer(name, "dropout")
  M[name] = cls
  function cls:__init(...)
    local a = args(name, { "p", "inplace" }, ...)
    self.p = a.p == nil and 0.5 or a.p
    self.inplace = a.inplace or false
  end
  function cls:forward(x) return x end
  cls.is_identity = true -- containers skip it
  function cls:extra_repr() return "p=" .. py.value(self.p, true) .. ", inplace=" .. py.value(self.inplace) end
end

-- nn.Upsample(size, scale_factor, mode = 'nearest', align_corners, recompute_scale_factor)
local Upsample = layer("Upsample", "upsampling")
M.Upsample = Upsample
function Upsample:__init(...)
  local a = args("Upsample", { "size", "scale_factor", "mode", "align_corners", "recompute_scale_factor" }, ...)
  self.size, self.scale_factor = a.size, a.scale_factor
  self.mode = a.mode or "nearest"
  self.align_corners, self.recompute_scale_factor = a.align_corners, a.recompute_scale_factor
end
-- its attributes are F.interpolate's arguments by name; the record depends
-- on the input's size
function Upsample:forward(x)
  A.tensor(x, "interpolate")
  return F.run.interpolate(A.interpolate(x, self), x)
end
function Upsample:extra_repr()
  local info
  if self.scale_factor ~= nil then info = "scale_factor=" .. py.value(self.scale_factor, true)
  else info = "size=" .. py.value(self.size) end
  return info .. ", mode=" .. self.mode
end
-- nn.UpsamplingNearest2d / UpsamplingBilinear2d (align_corners=True)
M.UpsamplingNearest2d = class("UpsamplingNearest2d", Upsample,
  { torch_nn = true, torch_class = "torch.nn.modules.upsampling.UpsamplingNearest2d" })
function M.UpsamplingNearest2d:__init(size, scale_factor)
  Upsample.__init(self, size, scale_factor, "nearest")
end
M.UpsamplingBilinear2d = class("UpsamplingBilinear2d", Upsample,
  { torch_nn = true, torch_class = "torch.nn.modules.upsampling.UpsamplingBilinear2d" })
function M.UpsamplingBilinear2d:__init(size, scale_factor)
  Upsample.__init(self, size, scale_factor, "bilinear", true)
end

-- nn.ChannelShuffle(groups)
local ChannelShuffle = layer("ChannelShuffle", "channelshuffle")
M.ChannelShuffle = ChannelShuffle
function ChannelShuffle:__init(groups) self.groups = groups end
function ChannelShuffle:forward(x) return F.channel_shuffle(x, self.groups) end
function ChannelShuffle:extra_repr() return "groups=" .. self.groups end

-- nn.PixelShuffle(upscale_factor)
local PixelShuffle = layer("PixelShuffle", "pixelshuffle")
M.PixelShuffle = PixelShuffle
function PixelShuffle:__init(r) self.upscale_factor = r end
function PixelShuffle:forward(x) return F.pixel_shuffle(x, self.upscale_factor) end
function PixelShuffle:extra_repr() return "upscale_factor=" .. self.upscale_factor end

-- nn.ZeroPad2d(padding): int or (left, right, top, bottom)
local ZeroPad2d = layer("ZeroPad2d", "padding")
M.ZeroPad2d = ZeroPad2d
function ZeroPad2d:__init(padding)
  if type(padding) == "number" then padding = { padding, padding, padding, padding } end
  self.padding = padding
end
function ZeroPad2d:args_record() return A.pad(self.padding, { mode = "constant", value = 0 }) end
function ZeroPad2d:forward(x)
  A.tensor(x, "pad")
  return F.run.pad(self:op_args(), x)
end
function ZeroPad2d:extra_repr() return py.value(self.padding) end

return M
