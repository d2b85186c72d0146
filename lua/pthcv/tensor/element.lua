-- lua/pthcv/tensor/element.lua: element I/O: t:data(), get, set, item,
-- totable, bytes. Installed into Tensor by tensor/init.lua.
--
-- Element access fetches the data pointer once per tensor (per call of
-- get/set/item, once for a whole totable or fill) and reads or writes
-- through it with read()/write(), which the constructors use too.
return function(Tensor, I)
  local ffi, C, core, values = I.ffi, I.C, I.core, I.values
  local methods, props, ptr_ctypes = I.methods, I.props, I.ptr_ctypes
  local call = I.D.call

  -- dtypes whose elements Lua holds exactly, read and written by pointer
  local direct = {
    [C.PTHCV_FLOAT32] = true, [C.PTHCV_FLOAT64] = true, [C.PTHCV_INT8] = true,
    [C.PTHCV_INT16] = true, [C.PTHCV_INT32] = true, [C.PTHCV_UINT8] = true,
    [C.PTHCV_UINT16] = true, [C.PTHCV_UINT32] = true,
    [C.PTHCV_QINT8] = true, [C.PTHCV_QUINT8] = true, [C.PTHCV_QINT32] = true,
  }
  local wide = { [C.PTHCV_INT64] = true, [C.PTHCV_UINT64] = true }
  local FLOAT32, FLOAT64, BOOL = C.PTHCV_FLOAT32, C.PTHCV_FLOAT64, C.PTHCV_BOOL
  local TWO53 = 2 ^ 53

  local function int_value(v) -- int64/uint64 cdata -> number when exact
    if v <= TWO53 and v >= -TWO53 then return tonumber(v) end
    return v
  end

  -- Typed pointer to element 0 (storage start + offset), reading the
  -- storage on first touch.
  local function data_ptr(t)
    local ct = t.ct
    local p = C.pthcv_tensor_data(ct)
    if p == nil then
      if ct.numel == 0 then return ffi.cast(ptr_ctypes[tonumber(ct.dtype)], nil) end
      core.fail("cannot read the tensor's storage")
    end
    return ffi.cast(ptr_ctypes[tonumber(ct.dtype)], p)
  end
  I.data_ptr = data_ptr

  local re_box, im_box = ffi.new("double[1]"), ffi.new("double[1]")

  -- The element at element offset off from element 0, through p (data_ptr
  -- of the tensor whose C tensor is ct, dtype id dt).
  --
  -- A NaN comes out as Lua's 0/0 whatever its bits. LuaJIT keeps its other
  -- types' tags in the payloads of negative NaNs and does not check a float
  -- it loads through a pointer: torch's max over a NaN stores 0xFFFFFFFF,
  -- which read as a float is nil to LuaJIT (other patterns are worse), so
  -- floats are tested by their bits before they are read as numbers.
  local bits32 = ffi.typeof("uint32_t *")
  local NAN = 0 / 0
  -- p[i] of a double *p whose words w (the same pointer as uint32_t *) are
  -- tested first (little-endian: the high word second)
  local function double_at(p, w, i)
    local hi = w[2 * i + 1] % 0x80000000
    if hi > 0x7FF00000 or (hi == 0x7FF00000 and w[2 * i] ~= 0) then return NAN end
    return p[i]
  end
  I.bits32, I.double_at = bits32, double_at
  local function read(ct, dt, p, off)
    if dt == FLOAT32 then
      if ffi.cast(bits32, p)[off] % 0x80000000 > 0x7F800000 then return NAN end
      return p[off]
    end
    if dt == FLOAT64 then return double_at(p, ffi.cast(bits32, p), off) end
    if direct[dt] then return tonumber(p[off]) end
    if wide[dt] then return int_value(p[off]) end
    if dt == BOOL then return p[off] ~= 0 end
    -- float16, bfloat16, float8, complex, sub-byte: pthcv_tensor_get makes NaNs safe
    core.check(C.pthcv_tensor_get(ct, off, re_box, im_box))
    if C.pthcv_dtype_is_complex(dt) ~= 0 then return values.complex(re_box[0], im_box[0]) end
    return re_box[0]
  end
  I.read = read

  -- Writes v (a number, boolean, int64 cdata or Complex) at element offset off.
  local function write(ct, dt, p, off, v)
    if type(v) == "boolean" then v = v and 1 or 0 end
    if direct[dt] or wide[dt] then
      if dt ~= FLOAT32 and dt ~= FLOAT64 and type(v) == "number" then
        v = v >= 0 and math.floor(v) or math.ceil(v) -- truncate, as torch
      end
      p[off] = v
      return
    end
    if dt == BOOL then p[off] = (v ~= 0) and 1 or 0; return end
    local re, im = v, 0
    if type(v) == "table" then re, im = v.re or v[1], v.im or v[2] end
    core.check(C.pthcv_tensor_set(ct, off, re, im))
  end
  I.write = write

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

  local function read_at(t, off) return read(t.ct, tonumber(t.ct.dtype), data_ptr(t), off) end

  -- Typed pointer to element 0; it aliases the tensor's storage: valid while
  -- the tensor (or another view of the storage) is referenced.
  local function data_impl(_, t) return data_ptr(t) end
  function methods.data(t) return call("Tensor.data", nil, data_impl, t) end

  -- t:get(i, j, ...): the element at 1-based indices. Numbers for real
  -- dtypes (int64 beyond 2^53 as int64 cdata), booleans for bool, Complex
  -- tables for complex, the stored integer for quantized dtypes.
  local function get_impl(_, t, off) return read_at(t, off) end
  function methods.get(t, ...)
    return call("Tensor.get", nil, get_impl, t, element_offset(t, { ... }, select("#", ...), 3))
  end

  -- t:set(i, j, ..., value): writes one element, in place (visible through
  -- every view of the storage).
  local function set_impl(_, t, off, v)
    write(t.ct, tonumber(t.ct.dtype), data_ptr(t), off, v)
    return t
  end
  function methods.set(t, ...)
    local n = select("#", ...)
    local idx = { ... }
    local v = idx[n]
    idx[n] = nil
    return call("Tensor.set", nil, set_impl, t, element_offset(t, idx, n - 1, 3), v)
  end

  -- A Lua value for a one-element tensor (torch's .item()).
  local function item_impl(_, t) return read_at(t, 0) end
  function methods.item(t)
    if t.ct.numel ~= 1 then error("pthcv: item() of a tensor with " .. tonumber(t.ct.numel) .. " elements", 2) end
    return call("Tensor.item", nil, item_impl, t)
  end

  -- nested empty tables down to the first zero extent (dim d)
  local function empty_table(shape, d)
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
  end

  -- Nested Lua tables, as torch's .tolist(); a 0-d tensor gives its value.
  local function totable_impl(_, t)
    local ct = t.ct
    local nd = tonumber(ct.ndim)
    if nd == 0 then return read_at(t, 0) end
    local shape, stride = props.shape(t), props.stride(t)
    for d = 1, nd do if shape[d] == 0 then return empty_table(shape, d) end end
    local dt, p = tonumber(ct.dtype), data_ptr(t)
    local function fill(tb, d, off) -- depth bounded by PTHCV_MAX_DIMS
      local n, s = shape[d], stride[d]
      if d == nd then
        for i = 1, n do tb[i] = read(ct, dt, p, off + (i - 1) * s) end
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
  function methods.totable(t) return call("Tensor.totable", nil, totable_impl, t) end

  -- The contiguous bytes of the tensor, as a Lua string (little-endian as in
  -- memory): what .npy and .safetensors hold.
  local function bytes_impl(_, t)
    local c = I.contiguous(t)
    local n = props.nbytes(c)
    if n == 0 then return "" end
    local p = C.pthcv_tensor_data(c.ct)
    if p == nil then core.fail("cannot read the tensor's storage") end
    return ffi.string(p, n)
  end
  function methods.bytes(t) return call("Tensor.bytes", nil, bytes_impl, t) end

  -- The ops above that read or write element values from Lua: a tracer
  -- refuses them on values it records (their results cannot be in a graph).
  Tensor.element_ops = { ["Tensor.data"] = true, ["Tensor.get"] = true, ["Tensor.set"] = true,
                         ["Tensor.item"] = true, ["Tensor.totable"] = true, ["Tensor.bytes"] = true }
end
