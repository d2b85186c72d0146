-- lua/pthcv/tensor/init.lua: Tensor, a LuaJIT FFI view of a C pthcv_tensor.
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
local values = require "pthcv.reader.values"
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
  local t = wrap_new(ct)
  -- pthcv.onnx's tracer watches for tensors made by ops it does not see
  if Tensor.on_wrap then Tensor.on_wrap(t) end
  return t
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

function methods.t(t)
  if t.ct.ndim ~= 2 then error("pthcv: t() expects a 2-d tensor", 2) end
  return methods.transpose(t, 1, 2)
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

-- ---- shapes, views and arithmetic (inference) -----------------------------
-- Dimensions of Tensor methods count from 1, as t:size(d) and t:get(i, ...)
-- (Lua and Torch7); negative ones from the end (-1: the last). pthcv.F
-- takes torch's 0-based dims instead, so that code ports from Python as is.

-- A shape given as a table or as numbers: t:view{2, -1} or t:view(2, -1).
local function shape_arg(a, ...)
  if type(a) == "table" then return { unpack(a) } end
  return { a, ... }
end
Tensor.shape_arg = shape_arg

local function norm_dim(t, d, level, extra)
  local nd = tonumber(t.ct.ndim) + (extra or 0)
  if type(d) ~= "number" or d % 1 ~= 0 then error("pthcv: dimension must be an integer, got " .. tostring(d), level) end
  if d < 0 then d = nd + 1 + d end
  if d < 1 or d > nd then
    error(string.format("pthcv: dimension %d out of range for a %d-d tensor", d, tonumber(t.ct.ndim)), level)
  end
  return d
end
Tensor.norm_dim = norm_dim

-- Resolves one -1 in a requested shape against numel.
local function infer_shape(shape, numel, level)
  local known, free = 1, nil
  for i, s in ipairs(shape) do
    if s == -1 then
      if free then error("pthcv: only one dimension can be -1", level) end
      free = i
    elseif type(s) ~= "number" or s < 0 or s % 1 ~= 0 then
      error("pthcv: invalid size " .. tostring(s), level)
    else
      known = known * s
    end
  end
  if free then
    if known == 0 or numel % known ~= 0 then
      error(string.format("pthcv: shape [%s] is invalid for %d elements", table.concat(shape, ", "), numel), level)
    end
    shape[free] = numel / known
  elseif known ~= numel then
    error(string.format("pthcv: shape [%s] is invalid for %d elements", table.concat(shape, ", "), numel), level)
  end
  return shape
end

-- Strides viewing t with `shape` without a copy, or nil when its layout does
-- not allow it (torch's computeStride: chunks of dims that are contiguous
-- among themselves may be regrouped).
local function view_strides(oldshape, oldstride, shape, numel)
  local nd = #shape
  local newstride = {}
  if numel == 0 then
    local acc = 1
    for i = nd, 1, -1 do newstride[i] = acc; acc = acc * math.max(shape[i], 1) end
    return newstride
  end
  local view_d = nd
  local chunk_base = oldstride[#oldstride] or 1
  local tensor_numel, view_numel = 1, 1
  for d = #oldshape, 1, -1 do
    tensor_numel = tensor_numel * oldshape[d]
    if d == 1 or (oldshape[d - 1] ~= 1 and oldstride[d - 1] ~= tensor_numel * chunk_base) then
      while view_d >= 1 and (view_numel < tensor_numel or shape[view_d] == 1) do
        newstride[view_d] = view_numel * chunk_base
        view_numel = view_numel * shape[view_d]
        view_d = view_d - 1
      end
      if view_numel ~= tensor_numel then return nil end
      if d > 1 then
        chunk_base = oldstride[d - 1]
        tensor_numel, view_numel = 1, 1
      end
    end
  end
  if view_d ~= 0 then return nil end
  return newstride
end

-- t:view(shape): the same storage seen with another shape (-1: inferred);
-- fails when the layout does not allow it, as torch's view.
function methods.view(t, ...)
  local numel = tonumber(t.ct.numel)
  local shape = infer_shape(shape_arg(...), numel, 3)
  local stride = view_strides(props.shape(t), props.stride(t), shape, numel)
  if not stride then
    error("pthcv: view size is not compatible with the tensor's strides (use reshape)", 2)
  end
  return methods.as_strided(t, shape, stride)
end

-- t:reshape(shape): a view when possible, else a contiguous copy.
function methods.reshape(t, ...)
  local numel = tonumber(t.ct.numel)
  local shape = infer_shape(shape_arg(...), numel, 3)
  local stride = view_strides(props.shape(t), props.stride(t), shape, numel)
  if stride then return methods.as_strided(t, shape, stride) end
  local c = methods.contiguous(t)
  return methods.as_strided(c, shape, view_strides(props.shape(c), props.stride(c), shape, numel))
end
function methods.view_as(t, other) return methods.view(t, props.shape(other)) end

-- t:flatten([first [, last]]): dims first..last (1-based, default all) merged.
function methods.flatten(t, first, last)
  local nd = tonumber(t.ct.ndim)
  if nd == 0 then return methods.reshape(t, { 1 }) end
  first = norm_dim(t, first or 1, 3)
  last = norm_dim(t, last or -1, 3)
  if first > last then error("pthcv: flatten: first dimension after last", 2) end
  local shape, out = props.shape(t), {}
  for d = 1, first - 1 do out[#out + 1] = shape[d] end
  local n = 1
  for d = first, last do n = n * shape[d] end
  out[#out + 1] = n
  for d = last + 1, nd do out[#out + 1] = shape[d] end
  return methods.reshape(t, out)
end

-- t:permute(dims): dims 1-based (a table or numbers), a view.
function methods.permute(t, ...)
  local dims = shape_arg(...)
  local nd = tonumber(t.ct.ndim)
  if #dims ~= nd then error("pthcv: permute: " .. #dims .. " dims for a " .. nd .. "-d tensor", 2) end
  local shape, stride = props.shape(t), props.stride(t)
  local ns, nst, seen = {}, {}, {}
  for i, d in ipairs(dims) do
    d = norm_dim(t, d, 3)
    if seen[d] then error("pthcv: permute: repeated dimension " .. d, 2) end
    seen[d] = true
    ns[i], nst[i] = shape[d], stride[d]
  end
  return methods.as_strided(t, ns, nst)
end

-- Swaps two dimensions (1-based, negative from the end), a view.
function methods.transpose(t, a, b)
  a, b = norm_dim(t, a, 3), norm_dim(t, b, 3)
  local shape, stride = props.shape(t), props.stride(t)
  shape[a], shape[b] = shape[b], shape[a]
  stride[a], stride[b] = stride[b], stride[a]
  return methods.as_strided(t, shape, stride)
end

-- t:narrow(dim, start, length): start 1-based, a view.
function methods.narrow(t, dim, start, length)
  dim = norm_dim(t, dim, 3)
  local shape, stride = props.shape(t), props.stride(t)
  if start < 0 then start = shape[dim] + 1 + start end
  if start < 1 or length < 0 or start + length - 1 > shape[dim] then
    error(string.format("pthcv: narrow: %d elements from %d exceed size %d", length, start, shape[dim]), 2)
  end
  shape[dim] = length
  return methods.as_strided(t, shape, stride, tonumber(t.ct.offset) + (start - 1) * stride[dim])
end

-- t:split(size_or_sizes [, dim]): views of `size` elements along dim (the
-- last may be smaller), or of the given sizes; as torch.split.
function methods.split(t, sizes, dim)
  dim = norm_dim(t, dim or 1, 3)
  local n = tonumber(t.ct.shape[dim - 1])
  local out, start = {}, 1
  if type(sizes) == "number" then
    if sizes < 1 then error("pthcv: split size must be positive", 2) end
    while start <= n or (n == 0 and #out == 0) do
      local len = math.min(sizes, n - start + 1)
      out[#out + 1] = methods.narrow(t, dim, start, len)
      start = start + sizes
      if n == 0 then break end
    end
  else
    local total = 0
    for _, s in ipairs(sizes) do total = total + s end
    if total ~= n then error("pthcv: split sizes sum to " .. total .. ", not " .. n, 2) end
    for _, s in ipairs(sizes) do out[#out + 1] = methods.narrow(t, dim, start, s); start = start + s end
  end
  return out
end

-- t:chunk(n [, dim]): at most n views of ceil(size / n) elements, as torch.chunk.
function methods.chunk(t, n, dim)
  dim = norm_dim(t, dim or 1, 3)
  local size = tonumber(t.ct.shape[dim - 1])
  return methods.split(t, math.max(1, math.ceil(size / n)), dim)
end

-- t:squeeze([dim]): drops size-1 dims (all, or the given one), a view.
function methods.squeeze(t, dim)
  local shape, stride = props.shape(t), props.stride(t)
  local ns, nst = {}, {}
  if dim ~= nil then dim = norm_dim(t, dim, 3) end
  for d = 1, #shape do
    if not (shape[d] == 1 and (dim == nil or dim == d)) then ns[#ns + 1], nst[#nst + 1] = shape[d], stride[d] end
  end
  return methods.as_strided(t, ns, nst)
end

-- t:unsqueeze(dim): a size-1 dim inserted at dim (1..ndim+1), a view.
function methods.unsqueeze(t, dim)
  dim = norm_dim(t, dim, 3, 1)
  local shape, stride = props.shape(t), props.stride(t)
  local st = (dim <= #shape) and shape[dim] * stride[dim] or 1
  table.insert(shape, dim, 1)
  table.insert(stride, dim, st)
  return methods.as_strided(t, shape, stride)
end

-- ---- elementwise arithmetic through the C kernels ----
local BIN = { add = 0, sub = 1, mul = 2, div = 3, max = 4, min = 5 }
Tensor.binary_ops = BIN

-- a op b, either a Tensor or a number (torch's broadcasting).
local function binary(a, b, op)
  local r
  if Tensor.is(a) and Tensor.is(b) then
    r = C.pthcv_binary(a.ct, b.ct, op)
  elseif Tensor.is(a) then
    r = C.pthcv_binary_scalar(a.ct, b, op, 0)
  elseif Tensor.is(b) then
    r = C.pthcv_binary_scalar(b.ct, a, op, 1)
  else
    error("pthcv: arithmetic needs a tensor", 3)
  end
  if r == nil then core.fail("binary op") end
  return wrap(r, true)
end
Tensor.binary = binary
function methods.add(a, b) return binary(a, b, BIN.add) end
function methods.sub(a, b) return binary(a, b, BIN.sub) end
function methods.mul(a, b) return binary(a, b, BIN.mul) end
function methods.div(a, b) return binary(a, b, BIN.div) end
function methods.maximum(a, b) return binary(a, b, BIN.max) end
function methods.minimum(a, b) return binary(a, b, BIN.min) end

-- ---- small reductions on the Lua side (logits, not feature maps) ----
-- t:topk(k [, dim]): the k largest values along dim (default the last),
-- largest first: values (float32) and 1-based indices (int64), as Torch7.
function methods.topk(t, k, dim)
  dim = norm_dim(t, dim or -1, 3)
  local x = methods.contiguous(methods.transpose(methods.to(t, C.PTHCV_FLOAT64), dim, -1))
  local shape = props.shape(x)
  local n = shape[#shape]
  if k < 0 or k > n then error("pthcv: topk: k=" .. k .. " out of range 0.." .. n, 2) end
  local rows = n == 0 and 0 or tonumber(x.ct.numel) / n
  local oshape = { unpack(shape) }
  oshape[#oshape] = k
  local vals, idx = Tensor.zeros(oshape, "float32"), Tensor.zeros(oshape, "int64")
  local p, pv, pi = methods.data(x), methods.data(vals), methods.data(idx)
  local order = {}
  for r = 0, rows - 1 do
    local base = r * n
    for i = 1, n do order[i] = i end
    -- stable: ties keep the lower index first; NaN sorts as the largest
    table.sort(order, function(a, b)
      local va, vb = p[base + a - 1], p[base + b - 1]
      if va ~= va then return vb == vb or a < b end
      if vb ~= vb then return false end
      if va ~= vb then return va > vb end
      return a < b
    end)
    for i = 1, k do
      pv[r * k + i - 1] = p[base + order[i] - 1]
      pi[r * k + i - 1] = order[i]
    end
  end
  local ndim = #shape
  if dim ~= ndim then return methods.transpose(vals, dim, -1), methods.transpose(idx, dim, -1) end
  return vals, idx
end

-- t:argmax(): the 1-based flat index of the largest element (first one on
-- ties); t:argmax(dim): an int64 tensor of 1-based indices along dim.
function methods.argmax(t, dim)
  if dim == nil then
    local c = methods.contiguous(methods.to(t, C.PTHCV_FLOAT64))
    local p, n = methods.data(c), tonumber(c.ct.numel)
    if n == 0 then error("pthcv: argmax of an empty tensor", 2) end
    local best, bi = p[0], 0
    for i = 1, n - 1 do
      local v = p[i]
      if v > best or (v ~= v and best == best) then best, bi = v, i end
    end
    return bi + 1
  end
  local _, idx = methods.topk(t, 1, dim)
  return methods.squeeze(idx, norm_dim(t, dim, 3))
end

-- ---- metatype --------------------------------------------------------------
local function shape_string(t)
  return "[" .. table.concat(props.shape(t), ", ") .. "]"
end

-- The operators call Tensor.binary through the table, so that a tracer
-- (pthcv.onnx) can see them.
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
  __add = function(a, b) return Tensor.binary(a, b, BIN.add) end,
  __sub = function(a, b) return Tensor.binary(a, b, BIN.sub) end,
  __mul = function(a, b) return Tensor.binary(a, b, BIN.mul) end,
  __div = function(a, b) return Tensor.binary(a, b, BIN.div) end,
  __unm = function(a) return Tensor.binary(a, -1, BIN.mul) end,
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
-- A new zero-filled contiguous tensor: zeros({2, 3} [, dtype]) or zeros(2, 3).
function Tensor.zeros(shape, dtype, ...)
  if type(shape) == "number" then
    shape = { shape, dtype, ... }
    dtype = nil
    if type(shape[#shape]) == "string" then dtype = table.remove(shape) end
  end
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

-- Shape and dtype from ({2, 3} [, dtype]) or (2, 3 [, dtype]).
local function shape_dtype(a, ...)
  if type(a) == "table" then return a, (...) end
  local shape = { a, ... }
  local dtype
  if type(shape[#shape]) == "string" then dtype = table.remove(shape) end
  return shape, dtype
end

-- A tensor filled with one value: full(shape, value [, dtype]).
function Tensor.full(shape, value, dtype)
  local t = Tensor.zeros(shape, dtype)
  local n = tonumber(t.ct.numel)
  if value ~= 0 then
    if t.ct.dtype == C.PTHCV_FLOAT32 or t.ct.dtype == C.PTHCV_FLOAT64 then
      local p = methods.data(t)
      for i = 0, n - 1 do p[i] = value end
    else
      for i = 0, n - 1 do write_at(t, i, value) end
    end
  end
  return t
end
function Tensor.ones(...)
  local shape, dtype = shape_dtype(...)
  return Tensor.full(shape, 1, dtype)
end

-- Standard normal float32 values from a small seeded generator of its own
-- (xorshift64* and Box-Muller), so results repeat across runs and machines
-- without touching math.random: randn(shape [, {seed = n}]) or randn(2, 3).
local rng_state = ffi.new("uint64_t[1]", 0x9E3779B97F4A7C15ULL)
local function rng_uniform()
  local x = rng_state[0]
  x = bit.bxor(x, bit.rshift(x, 12)); x = bit.bxor(x, bit.lshift(x, 25)); x = bit.bxor(x, bit.rshift(x, 27))
  rng_state[0] = x
  local r = bit.rshift(x * 0x2545F4914F6CDD1DULL, 11) -- 53 bits
  return (tonumber(r) + 0.5) / 9007199254740992
end
function Tensor.manual_seed(seed)
  rng_state[0] = 0x9E3779B97F4A7C15ULL + ffi.cast("uint64_t", seed) * 0x100000001B3ULL
  if rng_state[0] == 0 then rng_state[0] = 1 end
end
function Tensor.randn(a, ...)
  local shape, opts
  if type(a) == "table" then shape, opts = a, (...) else shape = { a, ... } end
  if type(shape[#shape]) == "table" then opts = table.remove(shape) end
  if opts and opts.seed then Tensor.manual_seed(opts.seed) end
  local t = Tensor.zeros(shape, "float32")
  local p, n = methods.data(t), tonumber(t.ct.numel)
  local i = 0
  while i < n do
    local u1, u2 = rng_uniform(), rng_uniform()
    local r = math.sqrt(-2 * math.log(u1))
    p[i] = r * math.cos(2 * math.pi * u2)
    if i + 1 < n then p[i + 1] = r * math.sin(2 * math.pi * u2) end
    i = i + 2
  end
  return t
end
function Tensor.rand(a, ...)
  local shape, opts
  if type(a) == "table" then shape, opts = a, (...) else shape = { a, ... } end
  if type(shape[#shape]) == "table" then opts = table.remove(shape) end
  if opts and opts.seed then Tensor.manual_seed(opts.seed) end
  local t = Tensor.zeros(shape, "float32")
  local p = methods.data(t)
  for i = 0, tonumber(t.ct.numel) - 1 do p[i] = rng_uniform() end
  return t
end
-- arange(n) or arange(start, stop [, step]): float32 as torch.arange(float).
function Tensor.arange(a, b, step, dtype)
  local start, stop = a, b
  if b == nil then start, stop = 0, a end
  step = step or 1
  local n = math.max(0, math.ceil((stop - start) / step))
  local t = Tensor.zeros({ n }, dtype or "float32")
  for i = 0, n - 1 do write_at(t, i, start + i * step) end
  return t
end

-- elementwise math, comparisons, where, max/min/sort along a dim, gather
require("pthcv.tensor.math").methods(Tensor)

debug.getregistry()[REGISTRY_KEY] = Tensor
return Tensor
