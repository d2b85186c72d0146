-- lua/pthcv/models/layers.lua: torchvision.ops' layers that the newer
-- classification models share: MLP (a Sequential, so eval() fuses each
-- Linear with its activation), Permute (a view, no copy) and
-- StochasticDepth (the identity at inference; kept for the state_dict
-- layout and print).
local nn = require "pthcv.nn"
local F = nn.F
local py = require "pthcv.nn.repr"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local chain = require("pthcv.models.blocks").chain

local M = {}

-- MLP(in_channels, hidden_channels, {norm_layer, activation_layer = ReLU,
-- inplace = true, bias = true, dropout = 0.0}): Linear [norm] act Dropout
-- per hidden layer, then Linear, Dropout. inplace = false: torch's
-- inplace=None (activation and Dropout made without it).
local MLP = nn.class("MLP", nn.Sequential, { torch_class = "torchvision.ops.misc.MLP" })
M.MLP = MLP
MLP.keeps_no_tensors = true

function MLP:__init(in_channels, hidden_channels, o)
  o = o or {}
  local act = o.activation_layer or nn.ReLU
  local bias = o.bias == nil or o.bias
  local dropout = o.dropout or 0.0
  local function with_inplace(cls, ...)
    if o.inplace == false then return cls(...) end
    local a = { ... }
    a[#a + 1] = o.inplace == nil or o.inplace
    return cls(unpack(a))
  end
  local in_dim = in_channels
  for i = 1, #hidden_channels - 1 do
    local h = hidden_channels[i]
    self:append(nn.Linear(in_dim, h, { bias = bias }))
    if o.norm_layer then self:append(o.norm_layer(h)) end
    self:append(with_inplace(act))
    self:append(with_inplace(nn.Dropout, dropout))
    in_dim = h
  end
  self:append(nn.Linear(in_dim, hidden_channels[#hidden_channels], { bias = bias }))
  self:append(with_inplace(nn.Dropout, dropout))
end

-- Permute(dims): torch.permute(x, dims), dims 0-based as torch's.
local Permute = nn.class("Permute", nil, { torch_class = "torchvision.ops.misc.Permute" })
M.Permute = Permute
Permute.keeps_no_tensors = true
function Permute:__init(dims) self.dims = dims end
function Permute:forward(x) return F.permute(x, self.dims) end

-- StochasticDepth(p, mode): drops residual branches while training; the
-- identity here. Printed as torchvision's own __repr__.
local StochasticDepth = nn.class("StochasticDepth", nil,
  { torch_class = "torchvision.ops.stochastic_depth.StochasticDepth" })
M.StochasticDepth = StochasticDepth
StochasticDepth.keeps_no_tensors = true
StochasticDepth.is_identity = true
function StochasticDepth:__init(p, mode) self.p, self.mode = p, mode end
function StochasticDepth:forward(x) return x end
function StochasticDepth:repr() return string.format("StochasticDepth(p=%s, mode=%s)", py.float(self.p), self.mode) end

-- module:load_state_dict(sd, opts) with the keys of sd renamed by
-- new_key(key) -> key first: how torchvision's models load their older
-- pretrained files (DenseNet's "norm.1.weight", ViT's "mlp.linear_1").
function M.load_state_dict_renamed(self, sd, opts, new_key)
  local items = {}
  if OrderedDict.is(sd) then
    items = OrderedDict.items(sd)
  elseif type(sd) == "table" and type(sd[1]) == "table" and not Tensor.is(sd[1]) then
    items = sd
  elseif type(sd) == "table" then
    for k, v in pairs(sd) do items[#items + 1] = { k, v } end
    table.sort(items, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  end
  local renamed, changed = {}, false
  for i, kv in ipairs(items) do
    local k = type(kv[1]) == "string" and new_key(kv[1]) or kv[1]
    changed = changed or k ~= kv[1]
    renamed[i] = { k, kv[2] }
  end
  return nn.Module.load_state_dict(self, changed and renamed or sd, opts)
end

-- A BasicConv2d class (GoogLeNet's, Inception v3's): conv (no bias),
-- BatchNorm(eps = 0.001), ReLU: torchvision's forward, which the plan
-- (pthcv.nn.plan) runs as one convolution.
-- cls(in_channels, out_channels, conv options) as torch's **kwargs.
function M.basic_conv2d(torch_class)
  local cls = nn.class("BasicConv2d", nil, { torch_class = torch_class })
  cls.keeps_no_tensors = true
  function cls:__init(in_channels, out_channels, o)
    local opts = { bias = false }
    for k, v in pairs(o or {}) do opts[k] = v end
    self.conv = nn.Conv2d(in_channels, out_channels, opts)
    self.bn = nn.BatchNorm2d(out_channels, { eps = 0.001 })
  end
  function cls:forward(x) return chain(x, self.conv, self.bn, F.relu) end
  return cls
end

-- torchvision's _transform_input (GoogLeNet, Inception v3 with
-- transform_input): inputs normalised with ImageNet's mean/std brought to
-- the (x - 0.5) / 0.5 normalisation the ported weights expect.
function M.transform_input(x)
  local mean, std = { 0.485, 0.456, 0.406 }, { 0.229, 0.224, 0.225 }
  local chans = {}
  for c = 1, 3 do
    chans[c] = F.add(F.mul(F.narrow(x, 1, c - 1, 1), std[c] / 0.5), (mean[c] - 0.5) / 0.5)
  end
  return F.cat(chans, 1)
end

return M
