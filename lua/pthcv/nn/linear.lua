-- lua/pthcv/nn/linear.lua: Linear and Identity, as torch.nn's (linear.py).
-- A Linear packs its weights for the C kernel once; a container that runs
-- it followed by an activation asks for a pack with the activation fused.
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local D = require "pthcv.tensor.dispatch"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local class = base.class
local args = A.named
local M = {}

-- nn.Linear(in_features, out_features [, bias = true])
local Linear = class("Linear", nil, { torch_nn = true, torch_class = "torch.nn.modules.linear.Linear" })
M.Linear = Linear

function Linear:__init(in_features, out_features, ...)
  local a = args("Linear", { "bias" }, ...)
  if type(in_features) ~= "number" or type(out_features) ~= "number" then
    error("pthcv: Linear(in_features, out_features [, bias]) expected", 3)
  end
  self.in_features, self.out_features = in_features, out_features
  self:register_parameter("weight", Tensor.zeros({ out_features, in_features }))
  self:register_parameter("bias", (a.bias == nil or a.bias) and Tensor.zeros({ out_features }) or nil)
end

-- A pack (lua/pthcv/nn/packs.lua) with a fused activation (act_spec or
-- nil), made through the dispatch point as Conv2d's (conv.lua).
local function linear_pack(_, self, act)
  local pk = F.linear_prepare(self.weight, self.bias, act)
  pk.module = self
  pk.remake = function() return self:make_pack(act) end   -- once freed (F.pack_evict)
  return pk
end
function Linear:make_pack(act) return D.call("nn.make_pack", nil, linear_pack, self, act) end

function Linear:prepare()
  self._pack = nil
  if not self:is_claimed() then self._pack = self:make_pack() end
end

function Linear:forward(x)
  local pk = rawget(self, "_pack")
  if pk == nil then pk = self:make_pack(); self._pack = pk end
  return F.linear_packed(pk, x)
end

function Linear:extra_repr()
  return string.format("in_features=%d, out_features=%d, bias=%s", self.in_features, self.out_features,
                       py.value(self.bias ~= nil))
end

-- nn.Identity(): returns its input (any arguments are ignored, as torch's).
local Identity = class("Identity", nil, { torch_nn = true, torch_class = "torch.nn.modules.linear.Identity" })
M.Identity = Identity
function Identity:forward(x) return x end

return M
