-- lua/pthcv/jit/ops/shape.lua: aten:: operators on shapes and views
-- (size, view, reshape, permute, slice, select, cat, ...), over pthcv.F
-- and the Tensor methods. Dimensions are torch's (0-based, negative from
-- the end); aten::slice and aten::__getitem__ serve lists too.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"

local None = V.None
local is_tensor = Tensor.is
local m = Tensor.methods

local function dim0(x, d, op, extra)
  local nd = x.ndim + (extra or 0)
  if type(d) ~= "number" or d % 1 ~= 0 then error(op .. ": dim must be an int, got " .. V.typename(d), 0) end
  if d < 0 then d = d + nd end
  if d < 0 or d >= math.max(nd, 1) then
    error(string.format("IndexError: %s: dimension out of range (expected to be in range of [%d, %d], but got %d)",
                        op, -math.max(nd, 1), math.max(nd, 1) - 1, d < 0 and d - nd or d), 0)
  end
  return d
end

local function ints(l, op)
  if type(l) == "number" then return { l } end
  if not (V.is_list(l) or V.is_tuple(l)) then S.type_error(op, l) end
  local out = {}
  for i = 1, #l do
    local v = l[i]
    if is_tensor(v) then v = S.Int(v) end
    if type(v) ~= "number" then S.type_error(op, l) end
    out[i] = v
  end
  return out
end

local function tensors(l, op)
  if not (V.is_list(l) or V.is_tuple(l)) then S.type_error(op, l) end
  for i = 1, #l do if not is_tensor(l[i]) then error(op .. ": element " .. (i - 1) .. " is a " .. V.typename(l[i]) .. ", not a Tensor", 0) end end
  return l
end

return function(ops)
  local def = ops.def

  def("aten::size(Tensor self, int? dim=None) -> int[]", function(x, d)
    local shape = x.shape
    if d == None then return V.list({ unpack(shape) }) end
    if #shape == 0 then error("IndexError: aten::size: dimension specified as " .. d .. " but tensor has no dimensions", 0) end
    if d < 0 then d = d + #shape end
    if d < 0 or d >= #shape then
      error(string.format("IndexError: aten::size: dimension out of range (expected to be in range of [%d, %d], but got %d)",
                          -#shape, #shape - 1, d), 0)
    end
    return shape[d + 1]
  end)
  def("aten::view(Tensor(a) self, int[] size) -> Tensor(a)", function(x, s) return m.view(x, ints(s, "aten::view")) end)
  def("aten::reshape(Tensor(a) self, int[] shape) -> Tensor(a)", function(x, s) return m.reshape(x, ints(s, "aten::reshape")) end)
  def("aten::view_as(Tensor(a) self, Tensor other) -> Tensor(a)", function(x, o) return m.view(x, o.shape) end)
  def("aten::reshape_as(Tensor(a) self, Tensor other) -> Tensor(a)", function(x, o) return m.reshape(x, o.shape) end)
  def("aten::flatten(Tensor(a) self, int start_dim=0, int end_dim=-1) -> Tensor(a)", F.flatten)
  def("aten::permute(Tensor(a) self, int[] dims) -> Tensor(a)", function(x, d) return F.permute(x, ints(d, "aten::permute")) end)
  def("aten::transpose(Tensor(a) self, int dim0, int dim1) -> Tensor(a)", F.transpose)
  def("aten::swapaxes(Tensor(a) self, int axis0, int axis1) -> Tensor(a)", F.transpose)
  def("aten::swapdims(Tensor(a) self, int dim0, int dim1) -> Tensor(a)", F.transpose)
  def("aten::t(Tensor(a) self) -> Tensor(a)", function(x)
    if x.ndim < 2 then return x end
    return m.t(x)
  end)
  def("aten::unsqueeze(Tensor(a) self, int dim) -> Tensor(a)", F.unsqueeze)
  def("aten::squeeze(Tensor(a) self, int? dim=None) -> Tensor(a)", function(x, d)
    if d == None then return F.squeeze(x) end
    if x.ndim == 0 then return x end
    return F.squeeze(x, d)
  end)
  def("aten::select(Tensor(a) self, int dim, int index) -> Tensor(a)", function(x, d, i)
    local dd = dim0(x, d, "aten::select")
    local n = x:size(dd + 1)
    if i < -n or i >= n then error(string.format("IndexError: index %d is out of bounds for dimension %d with size %d", i, dd, n), 0) end
    if i < 0 then i = i + n end
    return m.squeeze(m.narrow(x, dd + 1, i + 1, 1), dd + 1)
  end)
  -- aten::slice over a tensor dimension, or a list (slice.t)
  def("aten::slice(Tensor(a) self, int dim=0, SymInt? start=None, SymInt? end=None, SymInt step=1) -> Tensor(a)",
      function(x, d, start, stop, step)
        if not is_tensor(x) then
          if type(x) == "string" then return S.str_slice(x, d, start, stop) end
          return S.slice_seq(x, d, start, stop)   -- slice.t(l, start, end, step): arguments shift by one
        end
        local dd = dim0(x, d, "aten::slice")
        local lo, hi, st = S.slice_bounds(x:size(dd + 1), start, stop, step)
        if st < 1 then error("aten::slice: step must be positive", 0) end
        local len = hi > lo and math.floor((hi - lo - 1) / st) + 1 or 0
        local shape, stride = x.shape, x.stride
        shape[dd + 1] = len
        stride[dd + 1] = stride[dd + 1] * st
        return m.as_strided(x, shape, stride, x.offset + (lo - 1) * x.stride[dd + 1])
      end)
  def("aten::narrow(Tensor(a) self, int dim, SymInt start, SymInt length) -> Tensor(a)", F.narrow)
  def("aten::chunk(Tensor(a -> *) self, int chunks, int dim=0) -> Tensor(a)[]", function(x, n, d)
    return V.list(F.chunk(x, n, d))
  end)
  def("aten::split(Tensor(a -> *) self, int[] split_size, int dim=0) -> Tensor(a)[]", function(x, s, d)
    if type(s) ~= "number" then s = ints(s, "aten::split") end
    return V.list(F.split(x, s, d))
  end)
  def("aten::split_with_sizes(Tensor(a -> *) self, int[] split_sizes, int dim=0) -> Tensor(a)[]",
      function(x, s, d) return V.list(F.split(x, ints(s, "aten::split_with_sizes"), d)) end)
  def("aten::unbind(Tensor(a -> *) self, int dim=0) -> Tensor(a)[]", function(x, d)
    local dd = dim0(x, d, "aten::unbind")
    local out = V.list()
    for i = 1, x:size(dd + 1) do out[i] = m.squeeze(m.narrow(x, dd + 1, i, 1), dd + 1) end
    return out
  end)
  -- torch.roll: each dimension's elements shifted cyclically, as two views joined
  def("aten::roll(Tensor self, int[1] shifts, int[1] dims=[]) -> Tensor", function(x, shifts, dims)
    shifts = ints(shifts, "aten::roll")
    dims = ints(dims, "aten::roll")
    local y = x
    if #dims == 0 then
      local flat = m.reshape(x, { x.numel })
      return m.reshape(ops.get("aten::roll").fn(flat, V.list { shifts[1] }, V.list { 0 }), x.shape)
    end
    if #shifts ~= #dims then error("aten::roll: shifts and dims differ in length", 0) end
    for i, d in ipairs(dims) do
      local dd = dim0(y, d, "aten::roll")
      local n = y:size(dd + 1)
      local s = n > 0 and shifts[i] % n or 0
      if s ~= 0 then y = F.cat({ m.narrow(y, dd + 1, n - s + 1, s), m.narrow(y, dd + 1, 1, n - s) }, dd) end
    end
    return y == x and x:clone() or y
  end)
  def("aten::cat(Tensor[] tensors, int dim=0) -> Tensor", function(l, d)
    tensors(l, "aten::cat")
    local keep = {}
    for i = 1, #l do if not (l[i].ndim == 1 and l[i].numel == 0) then keep[#keep + 1] = l[i] end end
    if #keep == 1 then return keep[1] end
    if #keep == 0 then return l[1] end
    if keep[1].dtype ~= "float32" then
      for i = 1, #keep do keep[i] = keep[i]:to("float32") end
      return F.cat(keep, d):to(l[1].dtype)
    end
    return F.cat(keep, d)
  end)
  def("aten::stack(Tensor[] tensors, int dim=0) -> Tensor", function(l, d)
    tensors(l, "aten::stack")
    if #l == 0 or l[1].dtype == "float32" then return F.stack(l, d) end
    -- other dtypes (anchor grids of int32...): as aten::cat of unsqueezed views
    local nd = l[1].ndim + 1
    if d < 0 then d = d + nd end
    local u = V.list {}
    for i = 1, #l do u[i] = F.unsqueeze(l[i], d) end
    return ops.get("aten::cat").fn(u, d)
  end)
  def("aten::expand(Tensor(a) self, SymInt[] size, *, bool implicit=False) -> Tensor(a)", function(x, size)
    size = ints(size, "aten::expand")
    local n, nd = #size, x.ndim
    if n < nd then error("RuntimeError: expand: the number of sizes provided (" .. n .. ") must be greater or equal to the number of dimensions in the tensor (" .. nd .. ")", 0) end
    local shape, stride, xs, xst = {}, {}, x.shape, x.stride
    for i = 1, n do
      local j = i - (n - nd)
      local want, have = size[i], j >= 1 and xs[j] or 1
      if want == -1 then want = have end
      if j >= 1 and have ~= 1 and have ~= want then
        error("RuntimeError: expand: the expanded size of the tensor (" .. want .. ") must match the existing size (" .. have .. ") at non-singleton dimension " .. (i - 1), 0)
      end
      shape[i] = want
      stride[i] = (j >= 1 and have == want) and xst[j] or 0
    end
    return m.as_strided(x, shape, stride)
  end)
  def("aten::expand_as(Tensor(a) self, Tensor other) -> Tensor(a)", function(x, o)
    return ops.get("aten::expand").fn(x, V.list(o.shape))
  end)
  def("aten::repeat(Tensor self, SymInt[] repeats) -> Tensor", function(x, reps)
    reps = ints(reps, "aten::repeat")
    local y = x
    for _ = 1, #reps - y.ndim do y = m.unsqueeze(y, 1) end
    for i = #reps, 1, -1 do
      if reps[i] ~= 1 then
        local parts = {}
        for k = 1, reps[i] do parts[k] = y end
        y = ops.get("aten::cat").fn(V.list(parts), i - 1)
      end
    end
    return y == x and x:clone() or y
  end)
end
