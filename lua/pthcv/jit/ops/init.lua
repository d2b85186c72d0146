-- lua/pthcv/jit/ops/init.lua: the operators TorchScript code may call,
-- keyed by torch's schema name ("aten::conv2d", "prim::RaiseException",
-- "torchvision::nms"), each over pthcv's own kernels and nothing else.
--
--   local ops = require "pthcv.jit.ops"
--   local op = ops.get("aten::flatten")   -- {name, schema, fn}
--   op.fn(x, 1, -1)                       -- arguments in schema order, defaults filled
--
-- Schemas are torch's own text (native_functions.yaml and the prim ops):
-- the interpreter binds a call's positional and keyword arguments to them
-- when it compiles the call, so keywords and defaults work as in torch.
-- One entry serves every overload of a name (aten::add for tensors, ints,
-- floats, strings and lists); its function dispatches on the values.
local schema = require "pthcv.jit.schema"

local M = {}
local registry = {}

-- ops.def(schema_text, fn): registers an operator.
function M.def(text, fn)
  local s = schema.parse(text)
  if registry[s.name] then error("pthcv.jit.ops: " .. s.name .. " is defined twice", 2) end
  registry[s.name] = { name = s.name, schema = s, fn = fn }
  return registry[s.name]
end

function M.get(name) return registry[name] end

-- Every operator name, sorted (for listings and docs).
function M.names()
  local out = {}
  for k in pairs(registry) do out[#out + 1] = k end
  table.sort(out)
  return out
end

-- The operator files register themselves here (pthcv.jit.ops.scalar holds
-- the helpers on ints, floats, strings, lists and dicts they share).
for _, f in ipairs { "pthcv.jit.ops.prim", "pthcv.jit.ops.tensor", "pthcv.jit.ops.shape", "pthcv.jit.ops.nn",
                    "pthcv.jit.ops.linalg", "pthcv.jit.ops.index" } do
  require(f)(M)
end
require("pthcv.jit.ops.detection").register(M)

return M
