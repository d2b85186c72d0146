-- lua/pthcv/tensor/arith.lua: elementwise arithmetic through the C kernels
-- (pthcv_binary, torch's broadcasting): t:add/sub/mul/div/maximum/minimum
-- and the operators + - * / and unary - (tensor/init.lua's metatype).
-- Installed by tensor/init.lua.
return function(Tensor, I)
  local C, methods, result = I.C, I.methods, I.result
  local call = I.D.call
  local is_tensor = Tensor.is

  local BIN = { add = 0, sub = 1, mul = 2, div = 3, max = 4, min = 5 }
  Tensor.binary_ops = BIN

  -- The records, one per op: {op = "add", code = 0} (code: pthcv_binary's).
  local NAMES = { [0] = "add", "sub", "mul", "div", "maximum", "minimum" }
  local records = {}
  for code = 0, 5 do records[code] = { op = NAMES[code], code = code } end
  Tensor.binary_records = records

  -- a op b, each a Tensor or a number.
  local function binary_impl(rec, a, b)
    local op = rec.code
    local r
    if is_tensor(a) and is_tensor(b) then
      r = C.pthcv_binary(a.ct, b.ct, op)
    elseif is_tensor(a) then
      r = C.pthcv_binary_scalar(a.ct, b, op, 0)
    else
      r = C.pthcv_binary_scalar(b.ct, a, op, 1)
    end
    return result(r, "binary op")
  end
  Tensor.binary_impl = binary_impl

  -- Tensor.binary(a, b, code): the operators' entry ("Tensor.<op>").
  local OPS = {}
  for code = 0, 5 do OPS[code] = "Tensor." .. NAMES[code] end
  -- Codes other files add to pthcv_binary get a record on first use.
  local function binary(a, b, code)
    if not is_tensor(a) and not is_tensor(b) then error("pthcv: arithmetic needs a tensor", 3) end
    local rec = records[code]
    if rec == nil then
      rec = { op = "binary_" .. tostring(code), code = code }
      records[code], OPS[code] = rec, "Tensor.binary"
    end
    return call(OPS[code], rec, binary_impl, a, b)
  end
  Tensor.binary = binary

  for code = 0, 5 do
    methods[NAMES[code]] = function(a, b) return binary(a, b, code) end
  end
end
