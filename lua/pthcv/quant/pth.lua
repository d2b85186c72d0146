-- lua/pthcv/quant/pth.lua: writes an ordered dict of tensors as torch.save
-- does (the zip format of torch >= 1.6: <name>/data.pkl, a protocol-2
-- pickle whose tensors refer to <name>/data/<key> storages by persistent
-- id, and <name>/version), so that torch.load and pthcv.load read it back.
-- Tensors: float32, float64, int64 (plain), qint8 per output channel
-- (torch._utils._rebuild_qtensor with per_channel_affine scales and zero
-- points, as torch saves quantized weights).
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"

local C = core.C
local M = {}

local STORAGE = { float32 = "FloatStorage", float64 = "DoubleStorage", int64 = "LongStorage", qint8 = "QInt8Storage",
                  int8 = "CharStorage", uint8 = "ByteStorage", int32 = "IntStorage" }

-- ---- pickle opcodes (protocol 2) ----------------------------------------------------
local function u32(n) return string.char(n % 256, math.floor(n / 256) % 256, math.floor(n / 65536) % 256,
                                         math.floor(n / 16777216) % 256) end

local Pickler = {}
Pickler.__index = Pickler

local function pickler() return setmetatable({ out = { "\128\2" } }, Pickler) end
function Pickler:op(s) self.out[#self.out + 1] = s end
function Pickler:global(mod, name) self:op("c" .. mod .. "\n" .. name .. "\n") end
function Pickler:str(s) self:op("X" .. u32(#s) .. s) end
function Pickler:int(n)
  if n >= 0 and n < 256 then self:op("K" .. string.char(n))
  elseif n >= -2147483648 and n < 2147483648 then self:op("J" .. u32(n % 4294967296))
  else error("pthcv: save: integer " .. n .. " out of range", 0) end
end
function Pickler:float(x)
  local b = ffi.new("double[1]", x)
  local bytes = ffi.string(ffi.cast("const char *", b), 8)
  self:op("G" .. bytes:reverse())   -- BINFLOAT is big-endian (hosts here are little-endian: export.h)
end
function Pickler:tuple(items)   -- items: functions writing one value each
  self:op("(")
  for _, f in ipairs(items) do f() end
  self:op("t")
end
function Pickler:ints(list)
  self:tuple((function()
    local fs = {}
    for i, v in ipairs(list) do fs[i] = function() self:int(v) end end
    return fs
  end)())
end
function Pickler:bytes() self:op("."); return table.concat(self.out) end

-- ---- tensors ------------------------------------------------------------------------
-- a persistent id ('storage', torch.<Kind>Storage, key, 'cpu', numel)
local function storage_ref(p, t, key)
  local kind = STORAGE[t.dtype] or error("pthcv: save: no torch storage for " .. t.dtype, 0)
  p:tuple({ function() p:str("storage") end, function() p:global("torch", kind) end, function() p:str(key) end,
            function() p:str("cpu") end, function() p:int(t.numel) end })
  p:op("Q")   -- BINPERSID
end

local function contiguous_strides(shape)
  local st, s = {}, 1
  for i = #shape, 1, -1 do st[i] = s; s = s * shape[i] end
  return st
end

local function empty_odict(p)
  p:global("collections", "OrderedDict")
  p:op(")R")
end

-- writes tensor t (its storage appended to `storages`)
local function tensor(p, t, storages)
  local key = tostring(#storages)
  storages[#storages + 1] = t:contiguous()
  local shape = t.shape
  if t.dtype == "qint8" then
    if not t.scales then error("pthcv: save: only per-channel quantized tensors are written", 0) end
    p:global("torch._utils", "_rebuild_qtensor")
    p:tuple({ function() storage_ref(p, t, key) end, function() p:int(0) end, function() p:ints(shape) end,
              function() p:ints(contiguous_strides(shape)) end,
              function()
                p:tuple({ function() p:global("torch", "per_channel_affine") end,
                          function() tensor(p, t.scales:to("float64"), storages) end,
                          function()
                            local z = t.zero_points or Tensor.zeros({ t.scales.numel }, "int64")   -- symmetric: none kept
                            tensor(p, z:to("int64"), storages)
                          end,
                          function() p:int(t.axis) end })
              end,
              function() p:op("\137") end, function() empty_odict(p) end })
  else
    p:global("torch._utils", "_rebuild_tensor_v2")
    p:tuple({ function() storage_ref(p, t, key) end, function() p:int(0) end, function() p:ints(shape) end,
              function() p:ints(contiguous_strides(shape)) end, function() p:op("\137") end,
              function() empty_odict(p) end })
  end
  p:op("R")
end

-- save(path, entries): entries = {{name, tensor}, ...}, written as an
-- OrderedDict under the archive name "archive"
function M.save(path, entries)
  local p, storages = pickler(), {}
  empty_odict(p)
  p:op("(")   -- MARK ... SETITEMS
  for _, kv in ipairs(entries) do
    if not Tensor.is(kv[2]) then error("pthcv: save: " .. kv[1] .. " is not a tensor", 0) end
    p:str(kv[1])
    tensor(p, kv[2], storages)
  end
  p:op("u")
  local pkl = p:bytes()
  local function bytes_tensor(s)
    local t = Tensor.wrap(C.pthcv_tensor_new(C.PTHCV_UINT8, 1, ffi.new("int64_t[1]", #s)), true)
    ffi.copy(t:data(), s, #s)
    return t
  end
  local names, list = { "archive/data.pkl", "archive/version" }, { bytes_tensor(pkl), bytes_tensor("3\n") }
  for i, t in ipairs(storages) do
    names[#names + 1] = "archive/data/" .. (i - 1)
    list[#list + 1] = t
  end
  local cnames, cts = ffi.new("const char *[?]", #names), ffi.new("pthcv_tensor *[?]", #names)
  for i = 1, #names do cnames[i - 1], cts[i - 1] = names[i], list[i].ct end
  core.check(C.pthcv_save_zip_raw(path, #names, cnames, cts), "cannot write " .. path)
end

return M
