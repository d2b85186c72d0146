-- lua/pthcv/nn/activation.lua: torch.nn's activation layers.
-- Each elementwise one also describes itself as a C activation (act_spec),
-- which containers use to fuse it into the convolution or linear layer
-- before it.
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local class = base.class
local args = F._args
local M = {}

local function layer(name, torch_module)
  return class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules." .. (torch_module or "activation") .. "." .. name })
end

local function inplace_repr(self) return self.inplace and "inplace=True" or "" end

-- An elementwise activation: fn(x, self) computes it, spec(self) gives the
-- fusable C activation, extra(self) the repr.
local function elementwise(name, params, fn, spec, extra)
  local cls = layer(name)
  function cls:__init(...)
    local a = args(name, params, ...)
    for _, p in ipairs(params) do self[p] = a[p] end
    self.inplace = a.inplace or false
    if cls.defaults then cls.defaults(self) end
  end
  cls.forward = fn
  cls.act_spec = spec
  cls.extra_repr = extra or inplace_repr
  M[name] = cls
  return cls
end

elementwise("ReLU", { "inplace" }, function(_, x) return F.relu(x) end, function() return { kind = "relu" } end)
elementwise("ReLU6", { "inplace" }, function(_, x) return F.relu6(x) end, function() return { kind = "relu6" } end)
local LeakyReLU = elementwise("LeakyReLU", { "negative_slope", "inplace" },
  function(self, x) return F.leaky_relu(x, self.negative_slope) end,
  function(self) return { kind = "leaky_relu", alpha = self.negative_slope } end,
  function(self)
    return "negative_slope=" .. py.value(self.negative_slope, true) .. (self.inplace and ", inplace=True" or "")
  end)
function LeakyReLU.defaults(self) self.negative_slope = self.negative_slope or 0.01 end
local ELU = elementwise("ELU", { "alpha", "inplace" },
  function(self, x) return F.elu(x, self.alpha) end,
  function(self) return { kind = "elu", alpha = self.alpha } end,
  function(self) return "alpha=" .. py.value(self.alpha, true) .. (self.inplace and ", inplace=True" or "") end)
function ELU.defaults(self) self.alpha = self.alpha or 1.0 end
local Hardtanh = elementwise("Hardtanh", { "min_val", "max_val", "inplace" },
  function(self, x) return F.hardtanh(x, self.min_val, self.max_val) end,
  function(self) return { kind = "clamp", alpha = self.min_val, beta = self.max_val } end,
  function(self)
    return "min_val=" .. py.value(self.min_val, true) .. ", max_val=" .. py.value(self.max_val, true)
           .. (self.inplace and ", inplace=True" or "")
  end)
function Hardtanh.defaults(self) self.min_val = self.min_val or -1.0; self.max_val = self.max_val or 1.0 end
elementwise("Sigmoid", {}, function(_, x) return F.sigmoid(x) end, function() return { kind = "sigmoid" } end,
  function() return "" end)
elementwise("Tanh", {}, function(_, x) return F.tanh(x) end, function() return { kind = "tanh" } end,
  function() return "" end)
elementwise("SiLU", { "inplace" }, function(_, x) return F.silu(x) end, function() return { kind = "silu" } end)
elementwise("Hardswish", { "inplace" }, function(_, x) return F.hardswish(x) end,
  function() return { kind = "hardswish" } end, function() return "" end)
elementwise("Hardsigmoid", { "inplace" }, function(_, x) return F.hardsigmoid(x) end,
  function() return { kind = "hardsigmoid" } end, function() return "" end)
local GELU = elementwise("GELU", { "approximate" },
  function(self, x) return F.gelu(x, self.approximate) end,
  function(self) return { kind = self.approximate == "tanh" and "gelu_tanh" or "gelu" } end,
  function(self) return "approximate=" .. py.str(self.approximate or "none") end)
function GELU.defaults(self)
  self.approximate = self.approximate or "none"
  if self.approximate ~= "none" and self.approximate ~= "tanh" then
    error("pthcv: GELU: approximate must be 'none' or 'tanh', got " .. tostring(self.approximate), 4)
  end
end

-- PReLU(num_parameters = 1, init = 0.25): a learnt slope per channel.
local PReLU = layer("PReLU")
function PReLU:__init(...)
  local a = args("PReLU", { "num_parameters", "init" }, ...)
  self.num_parameters = a.num_parameters or 1
  self:register_parameter("weight", Tensor.full({ self.num_parameters }, a.init or 0.25))
end
function PReLU:forward(x) return F.prelu(x, self.weight) end
function PReLU:extra_repr() return "num_parameters=" .. self.num_parameters end
M.PReLU = PReLU

-- Softmax(dim) / LogSoftmax(dim): dim 0-based, as torch's.
for _, name in ipairs { "Softmax", "LogSoftmax" } do
  local cls = layer(name)
  function cls:__init(...)
    local a = args(name, { "dim" }, ...)
    self.dim = a.dim
  end
  -- looked up at each call (pthcv.onnx's tracer wraps the functions of F)
  local fname = name == "Softmax" and "softmax" or "log_softmax"
  function cls:forward(x) return F[fname](x, self.dim) end
  function cls:extra_repr() return "dim=" .. py.value(self.dim) end
  M[name] = cls
end

return M
