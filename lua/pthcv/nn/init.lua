-- lua/pthcv/nn/init.lua: pthcv.nn, torch.nn's layers for inference in LuaJIT.
--
--   local nn, F = pthcv.nn, pthcv.F
--   local net = nn.Sequential(
--     nn.Conv2d(3, 16, 3, { padding = 1, bias = false }), nn.BatchNorm2d(16), nn.ReLU(),
--     nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
--   net:load_state_dict(pthcv.state_dict("net.pth")); net:eval()
--   local logits = net(x)                            -- x: a float32 Tensor, NCHW
--
-- Layers are named and parameterised as torch.nn's (positional arguments,
-- or a trailing table of keywords); state_dict keys are torch's. Custom
-- architectures: nn.class("Name") and a forward in plain Lua over pthcv.F
-- (docs/nn.md). The math runs in the C kernels (csrc/kernels).
local base = require "pthcv.nn.module"

local nn = {
  Module = base.Module,
  class = base.class,
  is_module = base.is_module,
  F = require "pthcv.nn.functional",
}

for _, family in ipairs { "containers", "conv", "linear", "norm", "activation", "pooling", "misc" } do
  for name, cls in pairs(require("pthcv.nn." .. family)) do
    if type(cls) == "table" and rawget(cls, "__is_module_class") then nn[name] = cls end
  end
end
nn.functional = nn.F
-- fused plans of forward passes (lua/pthcv/nn/plan): installs itself as
-- the modules' planner
nn.plan = require "pthcv.nn.plan"

-- nn.from_module(obj): a runnable module from a whole-model pickle
-- (torch.save(model)) loaded by pthcv.load; see from_module.lua.
function nn.from_module(obj, opts) return require("pthcv.nn.from_module").convert(obj, opts) end

return nn
