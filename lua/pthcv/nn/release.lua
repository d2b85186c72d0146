-- lua/pthcv/nn/release.lua: frees an intermediate tensor's memory now
-- instead of at the next garbage collection. LuaJIT's collector does not see
-- the C memory behind a Tensor, so the activations of every forward pass
-- would otherwise pile up until it runs (peak RSS growing with each pass,
-- and fresh pages, hence page faults, for every layer's output).
--
-- Only for tensors nobody else can hold: made inside the caller's forward
-- and consumed there. A released tensor prints as Tensor(released).
-- release(t, keep): nothing when t is keep (a step that returned its input).
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local C = core.C
local is_tensor = Tensor.is

return function(t, keep)
  if t ~= nil and not rawequal(t, keep) and is_tensor(t) and t.ct ~= nil then
    C.pthcv_tensor_release(t.ct)
    t.ct = nil
  end
end
