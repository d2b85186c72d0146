-- lua/pthcv/reader/npy.lua: reads NumPy .npy files into new tensors (the inputs
-- of `pthcv run`). Little-endian numeric dtypes and bool, C or Fortran
-- order, format versions 1-3. Writing is pthcv.save (csrc/export/npy.c).
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"

local M = {}

local DTYPES = {
  f2 = "float16", f4 = "float32", f8 = "float64",
  i1 = "int8", i2 = "int16", i4 = "int32", i8 = "int64",
  u1 = "uint8", u2 = "uint16", u4 = "uint32", u8 = "uint64",
  b1 = "bool", c8 = "complex64", c16 = "complex128",
}

local escape = require("pthcv.core").escape   -- for what the file says
local function fail(path, msg) error("pthcv: " .. path .. ": " .. msg, 0) end

-- (descr, fortran_order, shape) from the header's Python dict literal.
local function parse_header(h, path)
  local descr = h:match("['\"]descr['\"]%s*:%s*['\"]([^'\"]+)['\"]")
  local fortran = h:match("['\"]fortran_order['\"]%s*:%s*(%a+)")
  local shape_s = h:match("['\"]shape['\"]%s*:%s*%(([^%)]*)%)")
  if not descr or not fortran or not shape_s then fail(path, "unreadable .npy header: " .. escape(h, 200)) end
  local shape = {}
  for n in shape_s:gmatch("%d+") do shape[#shape + 1] = tonumber(n) end
  return descr, fortran == "True", shape
end

function M.load(path)
  local f, err = io.open(path, "rb")
  if not f then fail(path, "cannot open: " .. tostring(err)) end
  local data = f:read("*a")
  f:close()
  if data:sub(1, 6) ~= "\147NUMPY" then fail(path, "not a .npy file (bad magic)") end
  local major = data:byte(7)
  local hlen, hstart
  if major == 1 then
    hlen, hstart = data:byte(9) + 256 * data:byte(10), 11
  elseif major == 2 or major == 3 then
    hlen = data:byte(9) + 256 * data:byte(10) + 65536 * data:byte(11) + 16777216 * data:byte(12)
    hstart = 13
  else
    fail(path, "unsupported .npy version " .. tostring(major))
  end
  local descr, fortran, shape = parse_header(data:sub(hstart, hstart + hlen - 1), path)
  local order, code = descr:match("^([<>|=]?)(%a%d+)$")
  local dtype = code and DTYPES[code]
  if not dtype then fail(path, "unsupported dtype '" .. escape(descr) .. "'") end
  if order == ">" and code:sub(2) ~= "1" then fail(path, "big-endian data is not supported") end
  local dims = shape
  if fortran then -- stored as the transpose: read reversed, then permute back
    dims = {}
    for i = #shape, 1, -1 do dims[#dims + 1] = shape[i] end
  end
  local t = Tensor.zeros(dims, dtype)
  local nbytes = t.nbytes
  local off = hstart + hlen - 1
  if #data - off < nbytes then
    fail(path, string.format("truncated: %d data bytes for %d expected", #data - off, nbytes))
  end
  if nbytes > 0 then ffi.copy(t:data(), ffi.cast("const char *", data) + off, nbytes) end
  if fortran and #dims > 1 then
    local perm = {}
    for i = #dims, 1, -1 do perm[#perm + 1] = i end
    t = t:permute(perm):contiguous()
  end
  return t
end

return M
