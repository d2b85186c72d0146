-- lua/pthcv/tensor/init.lua: Tensor, a LuaJIT FFI view of a C pthcv_tensor.
--
-- A Tensor is a cdata of type `pthcv_lua_tensor` (one field, `ct`, the C
-- `pthcv_tensor *`) holding one reference: ffi.metatype gives it the methods
-- and a __gc that releases the reference. The C struct itself has fields
-- named dtype/shape/stride..., which would shadow readable names, so the Lua
-- object is a one-pointer wrapper and t.ct is the raw C tensor.
--
--   t.dtype   "float32" (torch's names)      t.shape, t.stride  {4, 3, 3, 3}
--   t.ndim, t.numel, t.offset, t.nbytes      t:data()  typed pointer, zero copy
--   t:get(i, j, ...) / t:set(i, j, ..., v)   1-BASED indices, as in Torch7
--   t:totable()  nested Lua tables           t:float(), t:contiguous(), t:to("int64")
--
-- This file holds the FFI type, the dtype tables, the properties and the
-- metatype; the methods come from one file per concern, each a function
-- install(Tensor, I) called once below (I: the internals they share):
--   element.lua   t:data(), get/set/item/totable/bytes   stats.lua   sum, mean, min, max, std
--   views.lua     shapes, views, layout and dtype copies  arith.lua   + - * / maximum minimum
--   topk.lua      topk, argmax                            construct.lua  zeros, tensor, full, arange
--   random.lua    randn, rand, manual_seed
-- Every op that computes on tensors goes through pthcv.tensor.dispatch
-- (dispatch.lua), where tools such as the ONNX tracer watch them.
--
-- One instance per Lua state, even when package.loaded is cleared (busted
-- does between spec files): FFI types and metatables cannot be redefined.
local REGISTRY_KEY = "pthcv.tensor"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
local ffi = require "ffi"
local core = require "pthcv.core"
local values = require "pthcv.reader.values"
local D = require "pthcv.tensor.dispatch"
local C = core.C

ffi.cdef [[ typedef struct pthcv_lua_tensor { pthcv_tensor *ct; } pthcv_lua_tensor; ]]

local Tensor = {}
local props, methods = {}, {}

-- dtype ids <-> names, from the C library
local names, ids = {}, {}
for i = 0, C.PTHCV_DTYPE_COUNT - 1 do
  local p = C.pthcv_dtype_name(i)
  if p ~= nil then names[i] = ffi.string(p); ids[names[i]] = i end
end
-- torch's aliases
local aliases = { float = "float32", double = "float64", half = "float16", long = "int64",
                  int = "int32", short = "int16", byte = "uint8", char = "int8",
                  cfloat = "complex64", cdouble = "complex128" }
for a, n in pairs(aliases) do if ids[n] then ids[a] = ids[n] end end
Tensor.dtype_names = names

local function dtype_id(d)
  if type(d) == "number" then
    if names[d] then return d end
  elseif type(d) == "string" then
    local i = ids[d] or ids[(d:gsub("^torch%.", ""))]
    if i then return i end
  end
  error("pthcv: unknown dtype " .. tostring(d), 3)
end
Tensor.dtype_id = dtype_id

-- The pointer type t:data() returns, per dtype id.
local ptr_types = {
  [C.PTHCV_FLOAT32] = "float *", [C.PTHCV_FLOAT64] = "double *",
  [C.PTHCV_FLOAT16] = "uint16_t *", [C.PTHCV_BFLOAT16] = "uint16_t *",
  [C.PTHCV_INT8] = "int8_t *", [C.PTHCV_INT16] = "int16_t *",
  [C.PTHCV_INT32] = "int32_t *", [C.PTHCV_INT64] = "int64_t *",
  [C.PTHCV_UINT8] = "uint8_t *", [C.PTHCV_UINT16] = "uint16_t *",
  [C.PTHCV_UINT32] = "uint32_t *", [C.PTHCV_UINT64] = "uint64_t *",
  [C.PTHCV_BOOL] = "uint8_t *",
  [C.PTHCV_COMPLEX32] = "uint16_t *", -- interleaved float16 re, im
  [C.PTHCV_COMPLEX64] = "complex float *", [C.PTHCV_COMPLEX128] = "complex double *",
  [C.PTHCV_QINT8] = "int8_t *", [C.PTHCV_QUINT8] = "uint8_t *", [C.PTHCV_QINT32] = "int32_t *",
  [C.PTHCV_QUINT4X2] = "uint8_t *", [C.PTHCV_QUINT2X4] = "uint8_t *",
  [C.PTHCV_FLOAT8_E4M3FN] = "uint8_t *", [C.PTHCV_FLOAT8_E5M2] = "uint8_t *",
  [C.PTHCV_FLOAT8_E4M3FNUZ] = "uint8_t *", [C.PTHCV_FLOAT8_E5M2FNUZ] = "uint8_t *",
}
local ptr_ctypes = {}
for id, s in pairs(ptr_types) do ptr_ctypes[id] = ffi.typeof(s) end

local qschemes = {
  [0] = nil, "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
  "per_channel_symmetric", "per_channel_affine_float_qparams",
}

local LuaTensor = ffi.typeof("pthcv_lua_tensor")
local ctor -- the metatype's constructor, made at the end of this file

-- Wraps a C tensor. `owned`: the caller hands over its reference (the
-- result of pthcv_tensor_new/contiguous/to...); otherwise it is retained.
-- Lua's collector sees a Tensor as a few bytes of cdata, not the storage
-- behind it, so by itself it lets a frame loop's dropped results pile up for
-- hundreds of megabytes. Every new reference therefore checks the storage
-- bytes held now (csrc/tensor/storage_memory.c) and, once they have grown
-- past the fewest held since the last collection by the larger of 64 MiB
-- and that low, collects. Storages freed by hand (nn.release, a planned pass freeing each
-- value after its last reader) are no longer held: a pass that frees all it
-- made never collects.
local COLLECT_MIN_BYTES = 64 * 2 ^ 20
local held_low = C.pthcv_storage_bytes_held()
local collect_at = held_low + math.max(COLLECT_MIN_BYTES, held_low)
local function pace_collector()
  local held = C.pthcv_storage_bytes_held()
  if held < held_low then
    held_low, collect_at = held, held + math.max(COLLECT_MIN_BYTES, held)
  elseif held >= collect_at then
    collectgarbage()
    held = C.pthcv_storage_bytes_held()
    held_low, collect_at = held, held + math.max(COLLECT_MIN_BYTES, held)
  end
end

local function wrap(ct, owned)
  if ct == nil then core.fail("null tensor") end
  if owned then pace_collector() else C.pthcv_tensor_retain(ct) end
  local t = ctor(ct)
  local seen = D.on_wrap
  if seen then seen(t) end
  return t
end
Tensor.wrap = wrap

function Tensor.is(x) return ffi.istype(LuaTensor, x) end

-- A C result (a new reference) as a Tensor, or the C error raised.
local function result(r, what)
  if r == nil then core.fail(what) end
  return wrap(r, true)
end

-- ---- properties ----------------------------------------------------------
function props.dtype(t) return names[t.ct.dtype] end
function props.dtype_id(t) return tonumber(t.ct.dtype) end
function props.ndim(t) return tonumber(t.ct.ndim) end
function props.numel(t) return tonumber(t.ct.numel) end
function props.offset(t) return tonumber(t.ct.offset) end
function props.nbytes(t) return tonumber(C.pthcv_tensor_nbytes(t.ct)) end
function props.itemsize(t) return C.pthcv_dtype_size(t.ct.dtype) end
function props.shape(t)
  local ct, s = t.ct, {}
  for i = 0, ct.ndim - 1 do s[i + 1] = tonumber(ct.shape[i]) end
  return s
end
function props.stride(t)
  local ct, s = t.ct, {}
  for i = 0, ct.ndim - 1 do s[i + 1] = tonumber(ct.stride[i]) end
  return s
end
function props.storage_nbytes(t) return tonumber(C.pthcv_tensor_storage_nbytes(t.ct)) end
function props.storage_key(t)
  local k = C.pthcv_tensor_storage_key(t.ct)
  return k ~= nil and ffi.string(k) or ""
end
function props.storage_id(t) return core.addr(C.pthcv_tensor_storage_id(t.ct)) end
function props.requires_grad(t) return bit.band(t.ct.flags, C.PTHCV_TENSOR_REQUIRES_GRAD) ~= 0 end
function props.is_parameter(t) return bit.band(t.ct.flags, C.PTHCV_TENSOR_PARAMETER) ~= 0 end
function props.is_quantized(t) return C.pthcv_dtype_is_quantized(t.ct.dtype) ~= 0 end
function props.is_floating_point(t) return C.pthcv_dtype_is_floating(t.ct.dtype) ~= 0 end
function props.is_complex(t) return C.pthcv_dtype_is_complex(t.ct.dtype) ~= 0 end
function props.is_materialized(t) return C.pthcv_tensor_is_materialized(t.ct) ~= 0 end
function props.qscheme(t) return qschemes[tonumber(t.ct.qscheme)] end
function props.scale(t)
  local s = tonumber(t.ct.qscheme)
  if s == 1 or s == 3 then return tonumber(t.ct.qscale) end
end
function props.zero_point(t)
  local s = tonumber(t.ct.qscheme)
  if s == 1 or s == 3 then return tonumber(t.ct.qzero_point) end
end
function props.scales(t)
  if t.ct.qscales ~= nil then return wrap(t.ct.qscales) end
end
function props.zero_points(t)
  if t.ct.qzero_points ~= nil then return wrap(t.ct.qzero_points) end
end
function props.axis(t)
  local s = tonumber(t.ct.qscheme)
  if s == 2 or s == 4 or s == 5 then return tonumber(t.ct.qaxis) end
end

function methods.is_contiguous(t) return C.pthcv_tensor_is_contiguous(t.ct) ~= 0 end
function methods.dim(t) return tonumber(t.ct.ndim) end
-- size() is the shape table; size(d) one extent, d 1-based as in Torch7
function methods.size(t, d)
  if d == nil then return props.shape(t) end
  if d < 1 or d > t.ct.ndim then error("pthcv: dimension " .. d .. " out of range", 2) end
  return tonumber(t.ct.shape[d - 1])
end
function methods.shares_storage(t, other)
  return C.pthcv_tensor_storage_id(t.ct) == C.pthcv_tensor_storage_id(other.ct)
end

Tensor.props, Tensor.methods = props, methods

-- ---- the methods, by concern ------------------------------------------------
-- I: what the parts share. Each part adds its own helpers to it, undispatched,
-- for the parts after it (element.lua: I.data_ptr, I.read, I.write,
-- I.bits32, I.double_at; views.lua: I.contiguous, I.to, I.dequantize;
-- construct.lua: I.new_zeros).
local I = {
  ffi = ffi, C = C, core = core, values = values, D = D, props = props, methods = methods,
  wrap = wrap, result = result, dtype_id = dtype_id, ptr_ctypes = ptr_ctypes,
}
for _, part in ipairs { "element", "stats", "views", "arith", "topk", "construct", "random" } do
  require("pthcv.tensor." .. part)(Tensor, I)
end

-- ---- metatype --------------------------------------------------------------
local function shape_string(t)
  return "[" .. table.concat(props.shape(t), ", ") .. "]"
end

local binary, BIN = Tensor.binary, Tensor.binary_ops
local mt = {
  __index = function(t, k)
    local p = props[k]
    if p then return p(t) end
    return methods[k]
  end,
  __gc = function(t)
    if t.ct ~= nil then
      C.pthcv_tensor_release(t.ct)
      t.ct = nil
    end
  end,
  __add = function(a, b) return binary(a, b, BIN.add) end,
  __sub = function(a, b) return binary(a, b, BIN.sub) end,
  __mul = function(a, b) return binary(a, b, BIN.mul) end,
  __div = function(a, b) return binary(a, b, BIN.div) end,
  __unm = function(a) return binary(a, -1, BIN.mul) end,
  __tostring = function(t)
    if t.ct == nil then return "Tensor(released)" end
    local q = ""
    if props.is_quantized(t) then q = ", " .. tostring(props.qscheme(t)) end
    return string.format("Tensor(%s, %s%s)", props.dtype(t), shape_string(t), q)
  end,
}
ctor = ffi.metatype(LuaTensor, mt)

-- elementwise math, comparisons, where, max/min/sort along a dim, gather
require("pthcv.tensor.math").methods(Tensor)

debug.getregistry()[REGISTRY_KEY] = Tensor
return Tensor
