#!/usr/bin/env luajit
-- examples/read_weights.lua: load a checkpoint's weights and print a few
-- statistics per tensor.
--   luajit examples/read_weights.lua [FILE]     (default examples/tiny_resnet.pth)
-- From the checkout root, `require "pthcv"` finds the module through ./pthcv.lua.
local here = (arg[0]:match("^(.*)/[^/]*$") or ".") .. "/.."
package.path = here .. "/lua/?.lua;" .. here .. "/lua/?/init.lua;" .. package.path
local pthcv = require "pthcv"

local path = arg[1] or here .. "/examples/tiny_resnet.pth"

-- the whole object tree: Lua values, OrderedDicts, Tensors
local ckpt = pthcv.load(path)
if pthcv.type(ckpt) == "dict" then
  for k, v in pairs(ckpt) do          -- pairs() goes in file order
    local ty = pthcv.type(v)
    if ty == "int" or ty == "float" or ty == "str" then
      print(string.format("%-22s %s", k, tostring(v)))
    elseif ty == "object" then
      print(string.format("%-22s <%s>", k, v.class))
    end
  end
  print()
end

-- the model weights, wherever the checkpoint keeps them
local sd = pthcv.state_dict(ckpt)
local width = 4
for name in pairs(sd) do width = math.max(width, #name) end
local row = "%-" .. width .. "s %-8s %-16s %10s %10s %10s"
local numbers = "%-" .. width .. "s %-8s %-16s %10.4f %10.4f %10.4f"
print(string.format(row, "name", "dtype", "shape", "mean", "std", "absmax"))
local total = 0
for name, t in pairs(sd) do
  total = total + t.numel
  local shape = "[" .. table.concat(t.shape, ",") .. "]"
  if t.is_floating_point and t.numel > 1 then
    local absmax = math.max(-t:min(), t:max())
    print(string.format(numbers, name, t.dtype, shape, t:mean(), t:std(), absmax))
  else
    print(string.format(row, name, t.dtype, shape, tostring(t:totable()), "", ""))
  end
end
print(string.format("\n%d tensors, %d values", #sd:keys(), total))

-- zero-copy access: a float* into the storage, indexed from 0 like C;
-- t:get() indexes from 1 like Torch7
local w = sd["conv1.weight"]
if w then
  local p = w:data()
  print(string.format("conv1.weight[0][0][0][0] = %.6f (data()[0]) = %.6f (get(1,1,1,1))", p[0], w:get(1, 1, 1, 1)))
end
