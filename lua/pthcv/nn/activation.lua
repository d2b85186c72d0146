-- lua/pthcv/nn/activation.lua: torch.nn's activation layers.
-- Each elementwise one describes itself as a C activation (act_spec),
-- which containers use to fuse it into the convolution or linear layer
-- before it; run alone, it runs that activation's record (pthcv.nn.args),
-- resolved once per prepare (args_record).
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local class = base.class
local args = A.named
local run_act = F.run.activation
local M = {}

local function layer(name, torch_module)
  return class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules." .. (torch_module or "activation") .. "." .. name })
end

local function inplace_repr(self) return self.inplace and "inplace=True" or "" end

-- An elementwise activation: spec(self) gives the C activation
-- ({kind, alpha, beta}), extra(self) the repr; op: the F function it runs
-- as (default: the one of its kind).
local function elementwise(name, params, spec, extra, op)
  local cls = layer(name)
  function cls:__init(...)
    local a = args(name, params, ...)
    for _, p in ipairs(params) do self[p] = a[p] end
    self.inplace = a.inplace or false
    if cls.defaults then cls.defaults(self) end
  end
  cls.act_spec = spec
  function cls:args_record() return A.activation(self:act_spec(), op) end
  function cls:forward(x)
    A.tensor(x, name)
    return run_act(self:op_args(), x)
  end
  cls.extra_repr = extra or inplace_repr
  M[name] = cls
  return cls
end

local function none() return "" end
elementwise("ReLU", { "inplace" }, function() return { kind = "relu" } end)
elementwise("ReLU6", { "inplace" }, function() return { kind = "relu6" } end)
local LeakyReLU = elementwise("LeakyReLU", { "negative_slope", "inplace" },
  function(self) return { kind = "leaky_relu", alpha = self.negative_slope } end,
  function(self)
    return "negative_slope=" .. py.value(self.negative_slope, true) .. (self.inplace and ", inplace=True" or "")
  end)
function LeakyReLU.defaults(self) self.negative_slope = self.negative_slope or 0.01 end
local ELU = elementwise("ELU", { "alpha", "inplace" },
  function(self) return { kind = "elu", alpha = self.alpha } end,
  function(self) return "alpha=" .. py.value(self.alpha, true) .. (self.inplace and ", inplace=True" or "") end)
function ELU.defaults(self) self.alpha = self.alpha or 1.0 end
local Hardtanh = elementwise("Hardtanh", { "min_val", "max_val", "inplace" },
  function(self) return { kind = "clamp", alpha = self.min_val, beta = self.max_val } end,
  function(self)
    return "min_val=" .. py.value(self.min_val, true) .. ", max_val=" .. py.value(self.max_val, true)
           .. (self.inplace and ", inplace=True" or "")
  end, "F.hardtanh")
function Hardtanh.defaults(self) self.min_val = self.min_val or -1.0; self.max_val = self.max_val or 1.0 end
elementwise("Sigmoid", {}, function() return { kind = "sigmoid" } end, none)
elementwise("Tanh", {}, function() return { kind = "tanh" } end, none)
elementwise("SiLU", { "inplace" }, function() return { kind = "silu" } end)
elementwise("Hardswish", { "inplace" }, function() return { kind = "hardswish" } end, none)
elementwise("Hardsigmoid", { "inplace" }, function() return { kind = "hardsigmoid" } end, none)
local GELU = elementwise("GELU", { "approximate" },
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
  -- the record depends on the input when dim is nil (torch's implicit dim)
  local fname = name == "Softmax" and "softmax" or "log_softmax"
  local run = F.run[fname]
  function cls:forward(x)
    A.tensor(x, fname)
    return run(A.softmax(x, self.dim, fname), x)
  end
  function cls:extra_repr() return "dim=" .. py.value(self.dim) end
  M[name] = cls
end

return M
