-- lua/pthcv/tensor/dispatch.lua: the one point every tensor op passes.
--
--   local D = require "pthcv.tensor.dispatch"
--   local function relu_impl(rec, x) return wrap(C.pthcv_activate(x.ct, rec._c), true) end
--   function F.relu(x) return D.call("F.relu", RELU, relu_impl, x) end
--
-- Contract of D.call(op, rec, impl, ...):
--   op    the name users call the op by ("F.conv2d", "Tensor.view"); tools
--         key their tables by it (pthcv.export.onnx's handlers);
--   rec   the op's argument record (lua/pthcv/nn/args.lua): plain numbers,
--         strings and lists, every default applied, dims counted from 0 and
--         non-negative; nil for ops whose only arguments are their operands;
--   impl  impl(rec, ...) computes the op; it reads its arguments from rec
--         only, never from the caller's raw arguments;
--   ...   the operands: tensors, lists of tensors, numbers (a scalar side of
--         an arithmetic op), or packs (prepared weights, which carry their
--         own record as pack.rec).
-- It returns impl(rec, ...)'s results. Arguments are checked and resolved
-- into rec BEFORE the call, so errors point at the caller's line.
-- Preparing weights passes here too ("nn.prepare", "nn.make_pack": operands
-- are modules, results packs), so that a hook sees all the work on tensors
-- and knows what a preparation computes from weights are constants.
--
-- Hooks (one of each at a time; a hook that must coexist with another keeps
-- the previous value and calls through):
--   D.hook(op, rec, impl, ...)  replaces the direct call: it must return
--       impl(rec, ...)'s results (or, pthcv.nn.plan, the same values
--       computed its way); it may record or time them. The ONNX tracer
--       (lua/pthcv/export/onnx/trace.lua) sets it for one pass; pthcv.nn.plan
--       (lua/pthcv/nn/plan) for each pass of a module it plans, which it
--       only does while nothing else has set it.
--   D.on_wrap(t)  called for every Tensor made from a C tensor
--       (Tensor.wrap) while it is set: how the tracer sees tensors that no
--       op made (direct C calls).
-- With nothing hooked an op costs one table read and one call more than
-- impl itself: nothing is allocated.
--
-- One instance per Lua state, as pthcv.tensor (busted clears package.loaded
-- between spec files; the Tensor type, made once, keeps this table).
local REGISTRY_KEY = "pthcv.tensor.dispatch"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end

local D = { hook = nil, on_wrap = nil }

function D.call(op, rec, impl, ...)
  local hook = D.hook
  if hook == nil then return impl(rec, ...) end
  return hook(op, rec, impl, ...)
end
local call = D.call

-- A function(rec, ...) that runs impl as op `op` through D.call: the form
-- module layers use with a record they resolved once (F.run.max_pool2d).
function D.op(op, impl)
  return function(rec, ...) return call(op, rec, impl, ...) end
end

debug.getregistry()[REGISTRY_KEY] = D
return D
