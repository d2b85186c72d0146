-- lua/pthcv/tensor.lua: Tensor, a LuaJIT FFI view of a C pthcv_tensor.
--
-- A Tensor is a cdata of type `pthcv_lua_tensor` (one field, `ct`, the C
-- `pthcv_tensor *`) holding one reference: ffi.metatype gives it the methods
-- below and a __gc that releases the reference. The C struct itself has
-- fields named dtype/shape/stride..., which would shadow readable names, so
-- the Lua object is a one-pointer wrapper and t.ct is the raw C tensor.
--
--   t.dtype   "float32" (torch's names)      t.shape, t.stride  {4, 3, 3, 3}
--   t.ndim, t.numel, t.offset, t.nbytes      t:data()  typed pointer, zero copy
--   t:get(i, j, ...) / t:set(i, j, ..., v)   1-BASED indices, as in Torch7
--   t:totable()  nested Lua tables           t:float(), t:contiguous(), t:to("int64")
-- One instance per Lua state, even when package.loaded is cleared (busted
-- does between spec files): FFI types and metatables cannot be redefined.
local REGISTRY_KEY = "pthcv.tensor"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
local ffi = require "ffi"
local core = require "pthcv.core"
local values = require "pthcv.values"
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

-- Element readers/writers by pointer, for the types Lua holds exactly.
local direct = {
  [C.PTHCV_FLOAT32] = true, [C.PTHCV_FLOAT64] = true, [C.PTHCV_INT8] = true,
  [C.PTHCV_INT16] = true, [C.PTHCV_INT32] = true, [C.PTHCV_UINT8] = true,
  [C.PTHCV_UINT16] = true, [C.PTHCV_UINT32] = true,
  [C.PTHCV_QINT8] = true, [C.PTHCV_QUINT8] = true, [C.PTHCV_QINT32] = true,
}
local wide = { [C.PTHCV_INT64] = true, [C.PTHCV_UINT64] = true }
local TWO53 = 2 ^ 53

local function int_value(v) -- int64/uint64 cdata -> number when exact
  if v <= TWO53 and v >= -TWO53 then return tonumber(v) end
  return v
end

local qschemes = {
  [0] = nil, "per_tensor_affine", "per_channel_affine", "per_tensor_symmetric",
  "per_channel_symmetric", "per_channel_affine_float_qparams",
}

local LuaTensor = ffi.typeof("pthcv_lua_tensor")
local wrap_new

-- Wraps a C tensor. `owned`: the caller hands over its reference (the
-- result of pthcv_tensor_new/contiguous/to...); otherwise it is retained.
local function wrap(ct, owned)
  if ct == nil then core.fail("null tensor") end
  if not owned then C.pthcv_tensor_retain(ct) end
  return wrap_new(ct)
end
Tensor.wrap = wrap

function Tensor.is(x) return ffi.istype(LuaTensor, x) end

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

-- ---- data ----------------------------------------------------------------
-- Typed pointer to element 0 (storage start + offset), reading the storage
-- on first touch. The pointer aliases the tensor's storage: it is valid while
-- the tensor (or another view of the storage) is referenced.
function methods.data(t)
  local p = C.pthcv_tensor_data(t.ct)
  if p == nil then
    if t.ct.numel == 0 then return ffi.cast(ptr_ctypes[tonumber(t.ct.dtype)], nil) end
    core.fail("cannot read the tensor's storage")
  end
  return ffi.cast(ptr_ctypes[tonumber(t.ct.dtype)], p)
end

function methods.is_contiguous(t) return C.pthcv_tensor_is_contiguous(t.ct) ~= 0 end
function methods.dim(t) return tonumber(t.ct.ndim) end
-- size() is the shape table; size(d) one extent, d 1-based as in Torch7
function methods.size(t, d)
  if d == nil then return props.shape(t) end
  if d < 1 or d > t.ct.ndim then error("pthcv: dimension " .. d .. " out of range", 2) end
  return tonumber(t.ct.shape[d - 1])
end

-- element offset of a 1-based index list
local function element_offset(t, idx, n, level)
  local ct = t.ct
  if n ~= ct.ndim then
    error(string.format("pthcv: %d indices for a %d-d tensor", n, tonumber(ct.ndim)), level)
  end
  local off = 0
  for d = 0, n - 1 do
    local i = idx[d + 1]
    local size = tonumber(ct.shape[d])
    if type(i) ~= "number" or i < 1 or i > size or i % 1 ~= 0 then
      error(string.format("pthcv: index %s out of range 1..%d in dimension %d",
                          tostring(i), size, d + 1), level)
    end
    off = off + (i - 1) * tonumber(ct.stride[d])
  end
  return off
end

local re_box, im_box = ffi.new("double[1]"), ffi.new("double[1]")

-- A function reading the element at an element offset from element 0.
local function make_reader(t)
  local ct = t.ct
  local dt = tonumber(ct.dtype)
  local p = methods.data(t)
  if direct[dt] then return function(off) return tonumber(p[off]) end end
  if wide[dt] then return function(off) return int_value(p[off]) end end
  if dt == C.PTHCV_BOOL then return function(off) return p[off] ~= 0 end end
  if dt == C.PTHCV_FLOAT16 then
    return function(off) return tonumber(C.pthcv_half_to_float(p[off])) end
  end
  if dt == C.PTHCV_BFLOAT16 then
    return function(off) return tonumber(C.pthcv_bfloat16_to_float(p[off])) end
  end
  local complex = C.pthcv_dtype_is_complex(dt) ~= 0
  return function(off)
    core.check(C.pthcv_tensor_get(ct, off, re_box, im_box))
    if complex then return values.complex(re_box[0], im_box[0]) end
    return re_box[0]
  end
end

local function read_at(t, off) return make_reader(t)(off) end

local function write_at(t, off, v)
  local ct = t.ct
  local dt = tonumber(ct.dtype)
  local p = methods.data(t)
  if type(v) == "boolean" then v = v and 1 or 0 end
  if direct[dt] or wide[dt] then
    if dt ~= C.PTHCV_FLOAT32 and dt ~= C.PTHCV_FLOAT64 and type(v) == "number" then
      v = v >= 0 and math.floor(v) or math.ceil(v) -- truncate, as torch
    end
    p[off] = v
    return
  end
  if dt == C.PTHCV_BOOL then p[off] = (v ~= 0) and 1 or 0; return end
  local re, im = v, 0
  if type(v) == "table" then re, im = v.re or v[1], v.im or v[2] end
  core.check(C.pthcv_tensor_set(ct, off, re, im))
end

-- t:get(i, j, ...): the element at 1-based indices. Numbers for real
-- dtypes (int64 beyond 2^53 as int64 cdata), booleans for bool, Complex
-- tables for complex, the stored integer for quantized dtypes.
function methods.get(t, ...)
  return read_at(t, element_offset(t, { ... }, select("#", ...), 3))
end

-- t:set(i, j, ..., value): writes one element, in place (visible through
-- every view of the storage).
function methods.set(t, ...)
  local n = select("#", ...)
  local idx = { ... }
  local v = idx[n]
  idx[n] = nil
  write_at(t, element_offset(t, idx, n - 1, 3), v)
  return t
end

-- A Lua value for a 0-d tensor (torch's .item()).
function methods.item(t)
  if t.ct.numel ~= 1 then error("pthcv: item() of a tensor with " .. tonumber(t.ct.numel) .. " elements", 2) end
  local off = 0 -- all indices are 0
  return read_at(t, off)
end

-- Nested Lua tables, as torch's .tolist(); a 0-d tensor gives its value.
function methods.totable(t)
  local ct = t.ct
  local nd = tonumber(ct.ndim)
  if nd == 0 then return read_at(t, 0) end
  local shape, stride = props.shape(t), props.stride(t)
  for d = 1, nd do if shape[d] == 0 then
    -- empty: nested empty tables down to the zero extent
    local root = {}
    local level = { root }
    for dd = 1, d - 1 do
      local nextl = {}
      for _, tb in ipairs(level) do
        for i = 1, shape[dd] do tb[i] = {}; nextl[#nextl + 1] = tb[i] end
      end
      level = nextl
    end
    return root
  end end
  local read = make_reader(t)
  local function fill(tb, d, off) -- depth bounded by PTHCV_MAX_DIMS
    local n, s = shape[d], stride[d]
    if d == nd then
      for i = 1, n do tb[i] = read(off + (i - 1) * s) end
    else
      for i = 1, n do
        local sub = {}
        tb[i] = sub
        fill(sub, d + 1, off + (i - 1) * s)
      end
    end
  end
  local root = {}
  fill(root, 1, 0)
  return root
end

-- The contiguous bytes of the tensor, as a Lua string (little-endian as in
-- memory): what .npy and .safetensors hold.
function methods.bytes(t)
  local c = methods.contiguous(t)
  local n = props.nbytes(c)
  if n == 0 then return "" end
  local p = C.pthcv_tensor_data(c.ct)
  if p == nil then core.fail("cannot read the tensor's storage") end
  return ffi.string(p, n)
end

-- ---- new tensors ---------------------------------------------------------
function methods.contiguous(t)
  local r = C.pthcv_tensor_contiguous(t.ct)
  if r == nil then core.fail("contiguous") end
  return wrap(r, true)
end

function methods.to(t, dtype)
  local r = C.pthcv_tensor_to(t.ct, dtype_id(dtype))
  if r == nil then core.fail("to") end
  return wrap(r, true)
end
function methods.float(t) return methods.to(t, C.PTHCV_FLOAT32) end
function methods.double(t) return methods.to(t, C.PTHCV_FLOAT64) end

function methods.dequantize(t)
  local r = C.pthcv_tensor_dequantize(t.ct)
  if r == nil then core.fail("dequantize") end
  return wrap(r, true)
end

-- A copy that owns its memory (contiguous).
function methods.clone(t)
  local r = C.pthcv_tensor_new(t.ct.dtype, t.ct.ndim, t.ct.shape)
  if r == nil then core.fail("clone") end
  local out = wrap(r, true)
  local n = props.nbytes(t)
  if n > 0 then
    local src = C.pthcv_tensor_data(methods.contiguous(t).ct)
    if src == nil then core.fail("clone") end
    ffi.copy(C.pthcv_tensor_data(out.ct), src, n)
  end
  return out
end

-- A view over the same storage: t:view_as(shape, stride [, offset]) with an
-- element offset into the storage (default: t.offset). Checked against the
-- storage's extent by the C core.
function methods.as_strided(t, shape, stride, offset)
  local n = #shape
  if #stride ~= n then error("pthcv: shape and stride differ in length", 2) end
  local sh, st = ffi.new("int64_t[?]", math.max(n, 1)), ffi.new("int64_t[?]", math.max(n, 1))
  for i = 1, n do sh[i - 1], st[i - 1] = shape[i], stride[i] end
  local r = C.pthcv_tensor_view(t.ct, n, sh, st, offset or tonumber(t.ct.offset))
  if r == nil then core.fail("view") end
  return wrap(r, true)
end

-- Swaps two dimensions (1-based), a view.
function methods.transpose(t, a, b)
  local shape, stride = props.shape(t), props.stride(t)
  if not (shape[a] and shape[b]) then error("pthcv: transpose: dimension out of range", 2) end
  shape[a], shape[b] = shape[b], shape[a]
  stride[a], stride[b] = stride[b], stride[a]
  return methods.as_strided(t, shape, stride)
end
function methods.t(t)
  if t.ct.ndim ~= 2 then error("pthcv: t() expects a 2-d tensor", 2) end
  return methods.transpose(t, 1, 2)
end

-- A contiguous tensor with another shape (a view when t is contiguous).
function methods.reshape(t, shape)
  local n, known, free = 1, 1, nil
  shape = { unpack(shape) }
  for i, s in ipairs(shape) do
    if s == -1 then free = i else known = known * s end
  end
  if free then shape[free] = math.floor(tonumber(t.ct.numel) / known) end
  for _, s in ipairs(shape) do n = n * s end
  if n ~= tonumber(t.ct.numel) then error("pthcv: reshape: sizes do not match", 2) end
  local c = methods.contiguous(t)
  local stride, acc = {}, 1
  for i = #shape, 1, -1 do stride[i] = acc; acc = acc * shape[i] end
  return methods.as_strided(c, shape, stride)
end

function methods.shares_storage(t, other)
  return C.pthcv_tensor_storage_id(t.ct) == C.pthcv_tensor_storage_id(other.ct)
end

-- ---- statistics (over float64 values; real dtypes) -----------------------
local function as_doubles(t)
  local src = t
  if props.is_quantized(t) then src = methods.dequantize(t) end
  local d = methods.contiguous(methods.to(src, C.PTHCV_FLOAT64))
  return d, methods.data(d), tonumber(d.ct.numel)
end

function methods.sum(t)
  local _, p, n = as_doubles(t)
  local s = 0
  for i = 0, n - 1 do s = s + p[i] end
  return s
end
function methods.mean(t)
  local n = tonumber(t.ct.numel)
  if n == 0 then return 0 / 0 end
  return methods.sum(t) / n
end
function methods.min(t)
  local _, p, n = as_doubles(t)
  local m = math.huge
  for i = 0, n - 1 do if p[i] < m then m = p[i] end end
  return m
end
function methods.max(t)
  local _, p, n = as_doubles(t)
  local m = -math.huge
  for i = 0, n - 1 do if p[i] > m then m = p[i] end end
  return m
end
-- standard deviation with Bessel's correction, as torch's .std()
function methods.std(t)
  local _, p, n = as_doubles(t)
  if n < 2 then return 0 / 0 end
  local mean = 0
  for i = 0, n - 1 do mean = mean + p[i] end
  mean = mean / n
  local ss = 0
  for i = 0, n - 1 do local d = p[i] - mean; ss = ss + d * d end
  return math.sqrt(ss / (n - 1))
end

-- ---- metatype --------------------------------------------------------------
local function shape_string(t)
  return "[" .. table.concat(props.shape(t), ", ") .. "]"
end

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
  __tostring = function(t)
    if t.ct == nil then return "Tensor(released)" end
    local q = ""
    if props.is_quantized(t) then q = ", " .. tostring(props.qscheme(t)) end
    return string.format("Tensor(%s, %s%s)", props.dtype(t), shape_string(t), q)
  end,
}
local ctor = ffi.metatype(LuaTensor, mt)
wrap_new = function(ct) return ctor(ct) end

Tensor.props, Tensor.methods = props, methods

-- ---- constructors ----------------------------------------------------------
-- A new zero-filled contiguous tensor.
function Tensor.zeros(shape, dtype)
  local n = #shape
  local sh = ffi.new("int64_t[?]", math.max(n, 1))
  for i = 1, n do sh[i - 1] = shape[i] end
  local r = C.pthcv_tensor_new(dtype_id(dtype or "float32"), n, sh)
  if r == nil then core.fail("tensor_new") end
  return wrap(r, true)
end

-- A tensor from nested Lua tables (or a number for a 0-d tensor).
function Tensor.from_table(data, dtype)
  local shape = {}
  local probe = data
  while type(probe) == "table" and getmetatable(probe) ~= values.Complex do
    shape[#shape + 1] = #probe
    probe = probe[1]
    if probe == nil then break end
  end
  local t = Tensor.zeros(shape, dtype)
  local nd = #shape
  local stride = props.stride(t)
  local function fill(tb, d, off)
    if d > nd then write_at(t, off, tb); return end
    if type(tb) ~= "table" or #tb ~= shape[d] then
      error("pthcv: from_table: ragged nested table", 0)
    end
    for i = 1, shape[d] do fill(tb[i], d + 1, off + (i - 1) * stride[d]) end
  end
  if nd == 0 then write_at(t, 0, data) else fill(data, 1, 0) end
  return t
end

debug.getregistry()[REGISTRY_KEY] = Tensor
return Tensor
