-- lua/pthcv/nn/norm.lua: BatchNorm1d/2d, LayerNorm, GroupNorm (eval mode).
-- BatchNorm always normalises with its running statistics: pthcv only runs
-- inference. In a container, a BatchNorm2d right after a Conv2d is folded
-- into the convolution's weights (see conv.lua) and not run on its own.
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local class = base.class
local args = A.named
local M = {}

-- nn.BatchNorm2d(num_features [, eps = 1e-5, momentum = 0.1, affine = true,
-- track_running_stats = true]); state: weight, bias, running_mean,
-- running_var, num_batches_tracked (int64), as torch's.
local function batchnorm(name, file)
  local cls = class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules." .. file .. "." .. name })
  function cls:__init(num_features, ...)
    local a = args(name, { "eps", "momentum", "affine", "track_running_stats" }, ...)
    if type(num_features) ~= "number" then error("pthcv: " .. name .. "(num_features, ...) expected", 3) end
    self.num_features = num_features
    self.eps = a.eps or 1e-5
    self.momentum = a.momentum == nil and 0.1 or a.momentum
    self.affine = a.affine == nil or a.affine
    self.track_running_stats = a.track_running_stats == nil or a.track_running_stats
    if self.affine then
      self:register_parameter("weight", Tensor.ones({ num_features }))
      self:register_parameter("bias", Tensor.zeros({ num_features }))
    end
    if self.track_running_stats then
      self:register_buffer("running_mean", Tensor.zeros({ num_features }))
      self:register_buffer("running_var", Tensor.ones({ num_features }))
      self:register_buffer("num_batches_tracked", Tensor.zeros({}, "int64"))
    end
  end
  -- the op's record (F.run.batch_norm's)
  function cls:args_record() return { eps = self.eps } end
  function cls:forward(x)
    if not self.running_mean then
      error("pthcv: " .. name .. " without running statistics needs batch statistics (training): not supported", 2)
    end
    A.tensor(x, "batch_norm")
    return F.run.batch_norm(self:op_args(), x, self.running_mean, self.running_var, self.weight, self.bias)
  end
  -- foldable into a preceding convolution
  function cls:can_fold() return self.running_mean ~= nil end
  function cls:extra_repr()
    return string.format("%d, eps=%s, momentum=%s, affine=%s, track_running_stats=%s", self.num_features,
                         py.value(self.eps, true), self.momentum == false and "None" or py.value(self.momentum, true),
                         py.value(self.affine), py.value(self.track_running_stats))
  end
  M[name] = cls
  return cls
end
batchnorm("BatchNorm1d", "batchnorm")
batchnorm("BatchNorm2d", "batchnorm")

-- nn.LayerNorm(normalized_shape [, eps = 1e-5, elementwise_affine = true])
local LayerNorm = class("LayerNorm", nil, { torch_nn = true, torch_class = "torch.nn.modules.normalization.LayerNorm" })
M.LayerNorm = LayerNorm
function LayerNorm:__init(normalized_shape, ...)
  local a = args("LayerNorm", { "eps", "elementwise_affine" }, ...)
  if type(normalized_shape) == "number" then normalized_shape = { normalized_shape } end
  self.normalized_shape = normalized_shape
  self.eps = a.eps or 1e-5
  self.elementwise_affine = a.elementwise_affine == nil or a.elementwise_affine
  if self.elementwise_affine then
    self:register_parameter("weight", Tensor.ones(normalized_shape))
    self:register_parameter("bias", Tensor.zeros(normalized_shape))
  end
end
function LayerNorm:args_record()
  local shape = self.normalized_shape
  return { normalized_shape = type(shape) == "number" and { shape } or { unpack(shape) }, eps = self.eps }
end
function LayerNorm:forward(x)
  A.tensor(x, "layer_norm")
  return F.run.layer_norm(self:op_args(), x, self.weight, self.bias)
end
function LayerNorm:extra_repr()
  return string.format("%s, eps=%s, elementwise_affine=%s", py.value(self.normalized_shape),
                       py.value(self.eps, true), py.value(self.elementwise_affine))
end

-- nn.GroupNorm(num_groups, num_channels [, eps = 1e-5, affine = true])
local GroupNorm = class("GroupNorm", nil, { torch_nn = true, torch_class = "torch.nn.modules.normalization.GroupNorm" })
M.GroupNorm = GroupNorm
function GroupNorm:__init(num_groups, num_channels, ...)
  local a = args("GroupNorm", { "eps", "affine" }, ...)
  if num_channels % num_groups ~= 0 then error("pthcv: GroupNorm: num_channels must be divisible by num_groups", 3) end
  self.num_groups, self.num_channels = num_groups, num_channels
  self.eps = a.eps or 1e-5
  self.affine = a.affine == nil or a.affine
  if self.affine then
    self:register_parameter("weight", Tensor.ones({ num_channels }))
    self:register_parameter("bias", Tensor.zeros({ num_channels }))
  end
end
function GroupNorm:args_record() return { num_groups = self.num_groups, eps = self.eps } end
function GroupNorm:forward(x)
  A.tensor(x, "group_norm")
  return F.run.group_norm(self:op_args(), x, self.weight, self.bias)
end
function GroupNorm:extra_repr()
  return string.format("%d, %d, eps=%s, affine=%s", self.num_groups, self.num_channels, py.value(self.eps, true),
                       py.value(self.affine))
end

return M
