-- lua/pthcv/tensor/views.lua: shapes and views (view, reshape, flatten,
-- permute, transpose, t, narrow, split, chunk, squeeze, unsqueeze,
-- as_strided) and the copies that change layout or dtype (contiguous, to,
-- float, double, dequantize, clone). Installed by tensor/init.lua.
--
-- Dimensions of Tensor methods count from 1, as t:size(d) and t:get(i, ...)
-- (Lua and Torch7); negative ones from the end (-1: the last). pthcv.F
-- takes torch's 0-based dims instead, so that code ports from Python as is.
--
-- Every view op resolves its arguments into a layout record first
-- (Tensor.layout.<op>(t, ..., level)): {shape, stride [, offset]} of the
-- result, or {shape, copy = true} when only a copy has that shape, plus
-- what the op was, dims from 0 (perm = {...}; dim, start, length;
-- dim, sizes = {...} for split/chunk). Tensor.layout.apply(rec, t) makes
-- the view (apply_split the list of pieces). pthcv.F's shape functions use
-- the same records under their own op names.
return function(Tensor, I)
  local ffi, C = I.ffi, I.C
  local props, methods, result = I.props, I.methods, I.result
  local call = I.D.call
  local L = {}
  Tensor.layout = L

  -- ---- copies: layout and dtype -----------------------------------------------
  local function contiguous(t) return result(C.pthcv_tensor_contiguous(t.ct), "contiguous") end
  local function to(t, id) return result(C.pthcv_tensor_to(t.ct, id), "to") end
  local function dequantize(t) return result(C.pthcv_tensor_dequantize(t.ct), "dequantize") end
  I.contiguous, I.to, I.dequantize = contiguous, to, dequantize

  local function contiguous_impl(_, t) return contiguous(t) end
  function methods.contiguous(t) return call("Tensor.contiguous", nil, contiguous_impl, t) end

  -- {dtype = "float32", dtype_id = n}, one per dtype
  local to_records = {}
  local function to_record(id)
    local r = to_records[id]
    if not r then r = { dtype = Tensor.dtype_names[id], dtype_id = id }; to_records[id] = r end
    return r
  end
  local function to_impl(rec, t) return to(t, rec.dtype_id) end
  function methods.to(t, dtype) return call("Tensor.to", to_record(I.dtype_id(dtype)), to_impl, t) end
  function methods.float(t) return call("Tensor.float", to_record(C.PTHCV_FLOAT32), to_impl, t) end
  function methods.double(t) return call("Tensor.double", to_record(C.PTHCV_FLOAT64), to_impl, t) end
  -- t:repr(): the values as torch prints them (lua/pthcv/tensor/print.lua)
  function methods.repr(t) return require("pthcv.tensor.print").format(t) or tostring(t) end

  local function dequantize_impl(_, t) return dequantize(t) end
  function methods.dequantize(t) return call("Tensor.dequantize", nil, dequantize_impl, t) end

  -- A copy that owns its memory (contiguous).
  local function clone_impl(_, t)
    local out = result(C.pthcv_tensor_new(t.ct.dtype, t.ct.ndim, t.ct.shape), "clone")
    local n = props.nbytes(t)
    if n > 0 then
      local c = contiguous(t)
      local src = C.pthcv_tensor_data(c.ct)
      if src == nil then I.core.fail("clone") end
      ffi.copy(C.pthcv_tensor_data(out.ct), src, n)
    end
    return out
  end
  function methods.clone(t) return call("Tensor.clone", nil, clone_impl, t) end

  -- ---- views ------------------------------------------------------------------------
  -- A view of t's storage with this shape, stride and element offset into
  -- the storage (default: t's), checked against the storage's extent by
  -- the C core.
  -- (the C core copies shape and stride into the view: one pair of arrays
  -- serves every call up to PTHCV_MAX_DIMS dims, a longer shape gets its own
  -- for the core to refuse)
  local max_dims = tonumber(C.PTHCV_MAX_DIMS)
  local scratch_shape, scratch_stride = ffi.new("int64_t[?]", max_dims), ffi.new("int64_t[?]", max_dims)
  local function strided(t, shape, stride, offset)
    local n = #shape
    local sh, st = scratch_shape, scratch_stride
    if n > max_dims then sh, st = ffi.new("int64_t[?]", n), ffi.new("int64_t[?]", n) end
    for i = 1, n do sh[i - 1], st[i - 1] = shape[i], stride[i] end
    return result(C.pthcv_tensor_view(t.ct, n, sh, st, offset or tonumber(t.ct.offset)), "view")
  end

  -- A shape given as a table or as numbers: t:view{2, -1} or t:view(2, -1).
  local function shape_arg(a, ...)
    if type(a) == "table" then return { unpack(a) } end
    return { a, ... }
  end
  Tensor.shape_arg = shape_arg

  -- A 1-based dim (negative from the end) checked against t's ndim (+ extra).
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

  -- Strides viewing t with `shape` without a copy, or nil when its layout
  -- does not allow it (torch's computeStride: chunks of dims that are
  -- contiguous among themselves may be regrouped).
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

  -- The record's view of t (a copy first when rec.copy).
  local function layout_impl(rec, t)
    if rec.copy then
      local c = contiguous(t)
      return strided(c, rec.shape, view_strides(props.shape(c), props.stride(c), rec.shape, tonumber(c.ct.numel)))
    end
    return strided(t, rec.shape, rec.stride, rec.offset)
  end
  L.apply = layout_impl

  -- The pieces of a split record: {dim, sizes}.
  -- (t's own shape and stride arrays, the split dim's size replaced, go to
  -- the C core as they are: no Lua tables per piece)
  local function split_impl(rec, t)
    local ct = t.ct
    local n, d = tonumber(ct.ndim), rec.dim
    local sh, st = scratch_shape, scratch_stride
    local offset, step = tonumber(ct.offset), tonumber(ct.stride[d])
    local out, start = {}, 0
    for i, len in ipairs(rec.sizes) do
      for k = 0, n - 1 do sh[k], st[k] = ct.shape[k], ct.stride[k] end
      sh[d] = len
      out[i] = result(C.pthcv_tensor_view(ct, n, sh, st, offset + start * step), "view")
      start = start + len
    end
    return out
  end
  L.apply_split = split_impl

  -- ---- layout records (level: where the user's call is, seen from here) --------------
  function L.view(t, shape, level)
    local numel = tonumber(t.ct.numel)
    shape = infer_shape(shape, numel, level + 1)
    local stride = view_strides(props.shape(t), props.stride(t), shape, numel)
    if not stride then
      error("pthcv: view size is not compatible with the tensor's strides (use reshape)", level)
    end
    return { shape = shape, stride = stride }
  end

  function L.reshape(t, shape, level)
    local numel = tonumber(t.ct.numel)
    shape = infer_shape(shape, numel, level + 1)
    local stride = view_strides(props.shape(t), props.stride(t), shape, numel)
    return { shape = shape, stride = stride, copy = stride == nil or nil }
  end

  -- dims first..last (1-based, default all) merged
  function L.flatten(t, first, last, level)
    local nd = tonumber(t.ct.ndim)
    if nd == 0 then return L.reshape(t, { 1 }, level + 1) end
    first = norm_dim(t, first or 1, level + 1)
    last = norm_dim(t, last or -1, level + 1)
    if first > last then error("pthcv: flatten: first dimension after last", level) end
    local shape, out = props.shape(t), {}
    for d = 1, first - 1 do out[#out + 1] = shape[d] end
    local n = 1
    for d = first, last do n = n * shape[d] end
    out[#out + 1] = n
    for d = last + 1, nd do out[#out + 1] = shape[d] end
    return L.reshape(t, out, level + 1)
  end

  -- dims: 1-based (negative from the end)
  function L.permute(t, dims, level)
    local nd = tonumber(t.ct.ndim)
    if #dims ~= nd then error("pthcv: permute: " .. #dims .. " dims for a " .. nd .. "-d tensor", level) end
    local shape, stride = props.shape(t), props.stride(t)
    local ns, nst, perm, seen = {}, {}, {}, {}
    for i, d in ipairs(dims) do
      d = norm_dim(t, d, level + 1)
      if seen[d] then error("pthcv: permute: repeated dimension " .. d, level) end
      seen[d] = true
      ns[i], nst[i], perm[i] = shape[d], stride[d], d - 1
    end
    return { shape = ns, stride = nst, perm = perm }
  end

  function L.transpose(t, a, b, level)
    a, b = norm_dim(t, a, level + 1), norm_dim(t, b, level + 1)
    local shape, stride, perm = props.shape(t), props.stride(t), {}
    for d = 1, #shape do perm[d] = d - 1 end
    shape[a], shape[b] = shape[b], shape[a]
    stride[a], stride[b] = stride[b], stride[a]
    perm[a], perm[b] = perm[b], perm[a]
    return { shape = shape, stride = stride, perm = perm }
  end

  -- start 1-based (negative from the end)
  function L.narrow(t, dim, start, length, level)
    dim = norm_dim(t, dim, level + 1)
    local shape, stride = props.shape(t), props.stride(t)
    if start < 0 then start = shape[dim] + 1 + start end
    if start < 1 or length < 0 or start + length - 1 > shape[dim] then
      error(string.format("pthcv: narrow: %d elements from %d exceed size %d", length, start, shape[dim]), level)
    end
    local offset = tonumber(t.ct.offset) + (start - 1) * stride[dim]
    shape[dim] = length
    return { shape = shape, stride = stride, offset = offset, dim = dim - 1, start = start - 1, length = length }
  end

  -- pieces of `size` elements along dim (the last may be smaller), or of
  -- the given sizes; as torch.split
  function L.split(t, sizes, dim, level)
    dim = norm_dim(t, dim, level + 1)
    local n = tonumber(t.ct.shape[dim - 1])
    local list = {}
    if type(sizes) == "number" then
      if sizes < 1 then error("pthcv: split size must be positive", level) end
      local start = 1
      repeat
        list[#list + 1] = math.min(sizes, n - start + 1)
        start = start + sizes
      until start > n
    else
      local total = 0
      for i, s in ipairs(sizes) do total = total + s; list[i] = s end
      if total ~= n then error("pthcv: split sizes sum to " .. total .. ", not " .. n, level) end
    end
    return { dim = dim - 1, sizes = list }
  end

  -- at most n pieces of ceil(size / n) elements, as torch.chunk
  function L.chunk(t, n, dim, level)
    if type(n) ~= "number" or n % 1 ~= 0 then
      error("pthcv: chunk: chunks must be an integer, got " .. tostring(n), level + 1)
    end
    if n < 1 then error("pthcv: chunk expects `chunks` to be greater than 0, got: " .. n, level + 1) end
    local d = norm_dim(t, dim, level + 1)
    local size = tonumber(t.ct.shape[d - 1])
    return L.split(t, math.max(1, math.ceil(size / n)), d, level + 1)
  end

  -- size-1 dims dropped (all, or the given one)
  function L.squeeze(t, dim, level)
    local shape, stride = props.shape(t), props.stride(t)
    local ns, nst = {}, {}
    if dim ~= nil then dim = norm_dim(t, dim, level + 1) end
    for d = 1, #shape do
      if not (shape[d] == 1 and (dim == nil or dim == d)) then ns[#ns + 1], nst[#nst + 1] = shape[d], stride[d] end
    end
    return { shape = ns, stride = nst }
  end

  -- a size-1 dim inserted at dim (1..ndim+1)
  function L.unsqueeze(t, dim, level)
    dim = norm_dim(t, dim, level + 1, 1)
    local shape, stride = props.shape(t), props.stride(t)
    local st = (dim <= #shape) and shape[dim] * stride[dim] or 1
    table.insert(shape, dim, 1)
    table.insert(stride, dim, st)
    return { shape = shape, stride = stride }
  end

  -- ---- the methods ----------------------------------------------------------------------
  -- t:as_strided(shape, stride [, offset]): a view over the same storage,
  -- offset in elements from the storage's start (default: t.offset).
  function methods.as_strided(t, shape, stride, offset)
    if #stride ~= #shape then error("pthcv: shape and stride differ in length", 2) end
    local rec = { shape = { unpack(shape) }, stride = { unpack(stride) }, offset = offset or tonumber(t.ct.offset) }
    return call("Tensor.as_strided", rec, layout_impl, t)
  end
  -- t:view(shape): the same storage seen with another shape (-1: inferred);
  -- fails when the layout does not allow it, as torch's view.
  function methods.view(t, ...) return call("Tensor.view", L.view(t, shape_arg(...), 3), layout_impl, t) end
  -- t:reshape(shape): a view when possible, else a contiguous copy.
  function methods.reshape(t, ...) return call("Tensor.reshape", L.reshape(t, shape_arg(...), 3), layout_impl, t) end
  -- t:view_as(other): t viewed with other's shape.
  function methods.view_as(t, other) return call("Tensor.view_as", L.view(t, props.shape(other), 3), layout_impl, t) end
  -- t:flatten([first [, last]]): dims first..last (1-based, default all) merged.
  function methods.flatten(t, first, last)
    return call("Tensor.flatten", L.flatten(t, first, last, 3), layout_impl, t)
  end
  -- t:permute(dims): dims 1-based (a table or numbers), a view.
  function methods.permute(t, ...) return call("Tensor.permute", L.permute(t, shape_arg(...), 3), layout_impl, t) end
  -- Swaps two dimensions (1-based, negative from the end), a view.
  function methods.transpose(t, a, b) return call("Tensor.transpose", L.transpose(t, a, b, 3), layout_impl, t) end
  function methods.t(t)
    if t.ct.ndim ~= 2 then error("pthcv: t() expects a 2-d tensor", 2) end
    return call("Tensor.t", L.transpose(t, 1, 2, 3), layout_impl, t)
  end
  -- t:narrow(dim, start, length): start 1-based, a view.
  function methods.narrow(t, dim, start, length)
    return call("Tensor.narrow", L.narrow(t, dim, start, length, 3), layout_impl, t)
  end
  -- t:split(size_or_sizes [, dim]): views, as torch.split.
  function methods.split(t, sizes, dim) return call("Tensor.split", L.split(t, sizes, dim or 1, 3), split_impl, t) end
  -- t:chunk(n [, dim]): at most n views, as torch.chunk.
  function methods.chunk(t, n, dim) return call("Tensor.chunk", L.chunk(t, n, dim or 1, 3), split_impl, t) end
  -- t:squeeze([dim]): drops size-1 dims (all, or the given one), a view.
  function methods.squeeze(t, dim) return call("Tensor.squeeze", L.squeeze(t, dim, 3), layout_impl, t) end
  -- t:unsqueeze(dim): a size-1 dim inserted at dim (1..ndim+1), a view.
  function methods.unsqueeze(t, dim) return call("Tensor.unsqueeze", L.unsqueeze(t, dim, 3), layout_impl, t) end
end
