-- lua/pthcv/quant/slots.lua: where a prepared model keeps its packs, so
-- that pthcv.quant can put int8 ones in their place, and the float32
-- outputs of a model whose last layers may be int8.
local F = require "pthcv.nn.functional"
local Tensor = require "pthcv.tensor"

local M = {}

-- Every pack (lua/pthcv/nn/packs.lua) the model's prepared tree holds, with
-- where it sits: the module (or a table inside it, e.g. a Sequential's
-- fused steps) and key; int8: the int8 packs instead (pthcv.quant's).
function M.of(model, int8)
  local slots = {}
  local function is_pack(v)
    if int8 then return type(v) == "table" and getmetatable(v) ~= nil and rawget(getmetatable(v), "quantized") == true end
    return F.pack_info[v] ~= nil
  end
  local function scan(holder, depth)
    for k, v in pairs(holder) do
      if is_pack(v) then
        slots[#slots + 1] = { holder = holder, key = k, pack = v }
      elseif type(v) == "table" and depth < 3 and not Tensor.is(v) and getmetatable(v) == nil then
        scan(v, depth + 1)
      end
    end
  end
  for _, m in ipairs(model:modules()) do
    for k, v in pairs(m) do
      if is_pack(v) then
        slots[#slots + 1] = { holder = m, key = k, pack = v }
      elseif type(v) == "table" and not Tensor.is(v) and getmetatable(v) == nil and k ~= "_modules"
             and k ~= "_parameters" and k ~= "_buffers" then
        scan(v, 1)
      end
    end
  end
  return slots
end

-- A quantized model's outputs are float32: a quantized tensor its forward
-- returns (or puts in a returned table) is dequantized.
function M.float_outputs(model)
  local forward = model.forward
  rawset(model, "forward", function(self, ...)
    local y = forward(self, ...)
    if Tensor.is(y) then return y.is_quantized and y:dequantize() or y end
    if type(y) == "table" then
      for k, v in pairs(y) do if Tensor.is(v) and v.is_quantized then y[k] = v:dequantize() end end
    end
    return y
  end)
end

return M
