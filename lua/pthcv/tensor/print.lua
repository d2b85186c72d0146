-- lua/pthcv/tensor/print.lua: a tensor's values as torch's repr shows them
-- (torch/_tensor_str.py, default print options: precision 4, threshold
-- 1000, edgeitems 3, linewidth 80):
--
--   print(require("pthcv.tensor.print").format(t))
--   tensor([[ 0.1234, -1.5000],
--           [ 2.0000,  0.0000]])
--
-- One number format for the whole tensor: integers when every finite value
-- is integral ("1."), fixed "%.4f", or scientific "%.4e" when the values
-- span more than 1000x, pass 1e8 or fall below 1e-4; right-aligned to one
-- width. Tensors of more than 1000 elements show the first and last 3 of
-- each dimension around "...". dtype= follows unless it is float32, int64,
-- bool or complex128, as in torch. Only the elements shown are read.
-- Quantized and complex tensors are not formatted (format returns nil).
local ffi = require "ffi"
local core = require "pthcv.core"
local C = core.C

local M = {}
M.precision, M.threshold, M.edgeitems, M.linewidth = 4, 1000, 3, 80

local DEFAULT_DTYPES = { float32 = true, int64 = true, bool = true, complex128 = true }
local FLOATING = { float32 = true, float64 = true, float16 = true, bfloat16 = true, float8_e4m3fn = true,
                   float8_e5m2 = true, float8_e4m3fnuz = true, float8_e5m2fnuz = true }

local re, im = ffi.new("double[1]"), ffi.new("double[1]")

-- The element at `offset` (in elements from element 0) as a Lua value:
-- a number, or an int64 cdata for 64-bit integers (doubles would round them).
local function reader(t)
  if t.dtype == "int64" or t.dtype == "uint64" then
    local p = t:data()
    return function(offset) return p[offset] end
  end
  return function(offset)
    if C.pthcv_tensor_get(t.ct, offset, re, im) ~= 0 then core.fail("cannot read the tensor") end
    return re[0]
  end
end

-- The indices shown along a dimension of `size` (all, or the edges).
local function shown(size, summarize)
  local list = {}
  if summarize and size > 2 * M.edgeitems then
    for i = 0, M.edgeitems - 1 do list[#list + 1] = i end
    list[#list + 1] = false   -- "..."
    for i = size - M.edgeitems, size - 1 do list[#list + 1] = i end
  else
    for i = 0, size - 1 do list[#list + 1] = i end
  end
  return list
end

-- Every shown element's value, in order (Lua numbers or booleans).
local function shown_values(t, summarize)
  local shape, stride = t.shape, t.stride
  local get = reader(t)
  local out = {}
  local function walk(dim, offset)
    if dim > #shape then
      out[#out + 1] = get(offset)
      return
    end
    for _, i in ipairs(shown(shape[dim], summarize)) do
      if i then walk(dim + 1, offset + i * stride[dim]) end
    end
  end
  walk(1, 0)
  return out
end

-- Python's "{}".format of an int, "{:.Nf}" / "{:.Ne}" of a float.
local function fixed(v, p)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  return string.format("%." .. p .. "f", v)
end
local function sci(v, p)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  return string.format("%." .. p .. "e", v)
end

-- torch's _Formatter: how each value is written, and the common width.
local function formatter(vals, dtype)
  local f = { width = 1, floating = FLOATING[dtype] == true, int_mode = true, sci_mode = false }
  if dtype == "bool" then
    f.write = function(v) return v ~= 0 and "True" or "False" end
    for _, v in ipairs(vals) do f.width = math.max(f.width, #f.write(v)) end
    return f
  end
  if not f.floating then
    f.write = function(v) return type(v) == "number" and string.format("%d", v) or (tostring(v):gsub("U?LL$", "")) end
    for _, v in ipairs(vals) do f.width = math.max(f.width, #f.write(v)) end
    return f
  end
  local finite = {}
  for _, v in ipairs(vals) do
    if v == v and v ~= math.huge and v ~= -math.huge and v ~= 0 then finite[#finite + 1] = v end
  end
  if #finite > 0 then
    local lo, hi = math.huge, 0
    for _, v in ipairs(finite) do
      local a = math.abs(v)
      lo, hi = math.min(lo, a), math.max(hi, a)
      if v ~= math.ceil(v) then f.int_mode = false end
    end
    if hi / lo > 1000 or hi > 1e8 or (not f.int_mode and lo < 1e-4) then
      f.sci_mode = true
      for _, v in ipairs(finite) do f.width = math.max(f.width, #sci(v, M.precision)) end
    elseif f.int_mode then
      for _, v in ipairs(finite) do f.width = math.max(f.width, #string.format("%.0f", v) + 1) end
    else
      for _, v in ipairs(finite) do f.width = math.max(f.width, #fixed(v, M.precision)) end
    end
  end
  f.write = function(v)
    if f.sci_mode then return sci(v, M.precision) end
    if f.int_mode then
      local s = fixed(v, 0)
      if v == v and v ~= math.huge and v ~= -math.huge then s = s .. "." end
      return s
    end
    return fixed(v, M.precision)
  end
  return f
end

local function pad(s, w) return string.rep(" ", w - #s) .. s end

-- _tensor_str_with_formatter: the nested brackets, from dimension `dim` on.
local function body(t, f, summarize, indent)
  local shape, stride = t.shape, t.stride
  local get = reader(t)
  local function value(offset) return pad(f.write(get(offset)), f.width) end
  local function vector(offset, ind)
    local per_line = math.max(1, math.floor((M.linewidth - ind) / (f.width + 2)))
    local data = {}
    local d = #shape
    for _, i in ipairs(shown(shape[d], summarize)) do
      data[#data + 1] = i and value(offset + i * stride[d]) or " ..."
    end
    local lines = {}
    for i = 1, #data, per_line do
      lines[#lines + 1] = table.concat(data, ", ", i, math.min(i + per_line - 1, #data))
    end
    return "[" .. table.concat(lines, ",\n" .. string.rep(" ", ind + 1)) .. "]"
  end
  local function nested(dim, offset, ind)
    if dim == #shape then return vector(offset, ind) end
    local slices = {}
    for _, i in ipairs(shown(shape[dim], summarize)) do
      slices[#slices + 1] = i and nested(dim + 1, offset + i * stride[dim], ind + 1) or "..."
    end
    local sep = "," .. string.rep("\n", #shape - dim) .. string.rep(" ", ind + 1)
    return "[" .. table.concat(slices, sep) .. "]"
  end
  if #shape == 0 then return value(0) end
  return nested(1, 0, indent)
end

-- torch's repr of t, or nil for quantized and complex tensors.
function M.format(t)
  local dtype = t.dtype
  if t.is_quantized or dtype:match("^complex") then return nil end
  local prefix = "tensor("
  local suffixes = {}
  local text
  if t.numel == 0 then
    if t.ndim ~= 1 then
      local dims = {}
      for i, n in ipairs(t.shape) do dims[i] = tostring(n) end
      suffixes[#suffixes + 1] = "size=(" .. table.concat(dims, ", ") .. (#dims == 1 and ",)" or ")")
    end
    if dtype ~= "float32" then suffixes[#suffixes + 1] = "dtype=torch." .. dtype end
    text = "[]"
  else
    if not DEFAULT_DTYPES[dtype] then suffixes[#suffixes + 1] = "dtype=torch." .. dtype end
    local summarize = t.numel > M.threshold
    local f = formatter(shown_values(t, summarize), dtype)
    text = body(t, f, summarize, #prefix)
  end
  -- _add_suffixes
  local out = { prefix .. text }
  local nl = out[1]:find("\n[^\n]*$")
  local last = #out[1] - (nl and nl - 1 or -1) + 1   -- Python: len - rfind("\n") + 1
  for _, s in ipairs(suffixes) do
    if last + #s + 2 > M.linewidth then
      out[#out + 1] = ",\n" .. string.rep(" ", #prefix) .. s
      last = #prefix + #s
    else
      out[#out + 1] = ", " .. s
      last = last + #s + 2
    end
  end
  return table.concat(out) .. ")"
end

return M
