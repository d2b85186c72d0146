-- lua/pthcv/tensor/construct.lua: new tensors: Tensor.zeros, ones, full,
-- from_table (pthcv.tensor), arange. Installed by tensor/init.lua.
--
-- Records: {shape = {...}, dtype = "float32" [, value]} and, for arange,
-- {start, stop, step, dtype}. Their values are fixed by their arguments, so
-- a tracer takes what they make as constants.
return function(Tensor, I)
  local ffi, C, core, values = I.ffi, I.C, I.core, I.values
  local call = I.D.call
  local read_dtype = Tensor.dtype_names

  -- A new zero-filled contiguous tensor of shape (a list) and dtype id.
  local function new_zeros(shape, id)
    local n = #shape
    local sh = ffi.new("int64_t[?]", math.max(n, 1))
    for i = 1, n do sh[i - 1] = shape[i] end
    local r = C.pthcv_tensor_new(id, n, sh)
    if r == nil then core.fail("tensor_new") end
    return I.wrap(r, true)
  end
  I.new_zeros = new_zeros

  local function zeros_impl(rec) return new_zeros(rec.shape, I.dtype_id(rec.dtype)) end

  -- A record {shape, dtype} from ({2, 3} [, dtype]) or (2, 3 [, dtype]).
  local function shape_dtype(a, ...)
    local shape, dtype
    if type(a) == "table" then
      shape, dtype = { unpack(a) }, (...)
    else
      shape = { a, ... }
      if type(shape[#shape]) == "string" then dtype = table.remove(shape) end
    end
    dtype = dtype or "float32"
    return { shape = shape, dtype = read_dtype[I.dtype_id(dtype)] }
  end

  -- A new zero-filled contiguous tensor: zeros({2, 3} [, dtype]) or zeros(2, 3).
  function Tensor.zeros(...) return call("Tensor.zeros", shape_dtype(...), zeros_impl) end

  -- Every element of t (contiguous) set to v, the pointer fetched once.
  local function fill(t, v)
    local ct = t.ct
    local n, dt = tonumber(ct.numel), tonumber(ct.dtype)
    if v == 0 or n == 0 then return t end
    local p, write = I.data_ptr(t), I.write
    for i = 0, n - 1 do write(ct, dt, p, i, v) end
    return t
  end

  local function full_impl(rec) return fill(zeros_impl(rec), rec.value) end
  -- A tensor filled with one value: full(shape, value [, dtype]).
  function Tensor.full(shape, value, dtype)
    local rec = shape_dtype(shape, dtype)
    rec.value = value
    return call("Tensor.full", rec, full_impl)
  end
  -- ones({2, 3} [, dtype]) or ones(2, 3 [, dtype])
  function Tensor.ones(...)
    local rec = shape_dtype(...)
    rec.value = 1
    return call("Tensor.ones", rec, full_impl)
  end

  -- rec: {shape, dtype}; data: the nested tables (or a number for 0-d)
  local function from_table_impl(rec, data)
    local t = zeros_impl(rec)
    local shape, nd = rec.shape, #rec.shape
    local stride = t.stride
    local ct, dt, p, write = t.ct, tonumber(t.ct.dtype), I.data_ptr(t), I.write
    local function put(tb, d, off) -- depth: the nesting of data, bounded by PTHCV_MAX_DIMS
      if d > nd then write(ct, dt, p, off, tb); return end
      if type(tb) ~= "table" or #tb ~= shape[d] then
        error("pthcv: from_table: ragged nested table", 0)
      end
      for i = 1, shape[d] do put(tb[i], d + 1, off + (i - 1) * stride[d]) end
    end
    if nd == 0 then write(ct, dt, p, 0, data) else put(data, 1, 0) end
    return t
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
    return call("Tensor.from_table", shape_dtype(shape, dtype), from_table_impl, data)
  end

  local function arange_impl(rec)
    local n = math.max(0, math.ceil((rec.stop - rec.start) / rec.step))
    local t = new_zeros({ n }, I.dtype_id(rec.dtype))
    local ct, dt, p, write = t.ct, tonumber(t.ct.dtype), I.data_ptr(t), I.write
    for i = 0, n - 1 do write(ct, dt, p, i, rec.start + i * rec.step) end
    return t
  end
  -- arange(n) or arange(start, stop [, step [, dtype]]): float32 as
  -- torch.arange(float).
  function Tensor.arange(a, b, step, dtype)
    local start, stop = a, b
    if b == nil then start, stop = 0, a end
    local rec = { start = start, stop = stop, step = step or 1, dtype = read_dtype[I.dtype_id(dtype or "float32")] }
    return call("Tensor.arange", rec, arange_impl)
  end

  Tensor.constructors = { ["Tensor.zeros"] = true, ["Tensor.ones"] = true, ["Tensor.full"] = true,
                          ["Tensor.from_table"] = true, ["Tensor.arange"] = true }
end
