-- lua/pthcv/jit/ops/index.lua: aten::index, torch's advanced indexing
-- (x[idx], x[:, i, j] with index tensors; what relative position tables
-- and gathers compile to), and aten::index_select. Index tensors
-- (integers, or a 1-d bool mask) on consecutive dimensions are broadcast
-- together and replace those dimensions; each gathered element is a
-- contiguous block of the dimensions after them, copied as one. aten::index
-- of a list (its .index() method) is the prim version (pthcv.jit.ops.prim).
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local V = require "pthcv.jit.values"
local E = require "pthcv.jit.ops.elementwise"

local None = V.None
local is_tensor = Tensor.is

local function fail(msg) error("aten::index: " .. msg, 0) end

-- A bool mask as the int64 positions of its true elements.
local function mask_positions(t)
  if t.ndim ~= 1 then fail("bool masks of more than one dimension are not supported") end
  local v, out = t:totable(), {}
  for i = 1, #v do if v[i] ~= 0 and v[i] ~= false then out[#out + 1] = i - 1 end end
  return Tensor.from_table(#out > 0 and out or {}, "int64")
end

-- Values of an index tensor as doubles, read through broadcast strides.
local function reader(t, shape)
  local c = t:to("float64"):contiguous()
  local p, ts = c:data(), t.shape
  local n, nd = #shape, #ts
  local st, acc = {}, 1
  for i = nd, 1, -1 do st[i] = acc; acc = acc * ts[i] end
  local full = {}
  for i = 1, n do
    local j = i - (n - nd)
    full[i] = (j >= 1 and ts[j] ~= 1) and st[j] or 0
  end
  return function(idx)
    local off = 0
    for i = 1, n do off = off + idx[i] * full[i] end
    return p[off]
  end, c
end

local function index(x, indices)
  if not is_tensor(x) then return nil end
  local first, last, tensors = nil, nil, {}
  for i = 1, #indices do
    local t = indices[i]
    if t ~= None then
      if not is_tensor(t) then fail("indices must be tensors or None, got " .. V.typename(t)) end
      if last and last ~= i - 1 then fail("index tensors on dimensions that are not adjacent are not supported") end
      if t.dtype == "bool" or t.dtype == "uint8" then t = mask_positions(t) end
      first = first or i
      last = i
      tensors[#tensors + 1] = t
    end
  end
  if not first then return x end
  if #indices > x.ndim then fail(#indices .. " indices for a " .. x.ndim .. "-d tensor") end
  local xs = x.shape
  local ishape = {}
  for _, t in ipairs(tensors) do ishape = E.broadcast(ishape, t.shape) end
  local readers, keep = {}, {}
  for k, t in ipairs(tensors) do readers[k], keep[k] = reader(t, ishape) end
  local outer, inner = 1, 1
  for d = 1, first - 1 do outer = outer * xs[d] end
  for d = last + 1, #xs do inner = inner * xs[d] end
  local oshape = {}
  for d = 1, first - 1 do oshape[#oshape + 1] = xs[d] end
  for _, s in ipairs(ishape) do oshape[#oshape + 1] = s end
  for d = last + 1, #xs do oshape[#oshape + 1] = xs[d] end
  local nidx = 1
  for _, s in ipairs(ishape) do nidx = nidx * s end
  local y = Tensor.zeros(oshape, x.dtype)
  if y.numel == 0 then return y end
  local src = x:contiguous()
  local ps, pd = ffi.cast("char *", src:data()), ffi.cast("char *", y:data())
  local esz = x.itemsize
  local block = inner * esz
  -- the row-major offset (in blocks) of each gathered index tuple
  local offsets = ffi.new("int64_t[?]", nidx)
  local idx = {}
  for i = 1, #ishape do idx[i] = 0 end
  for k = 0, nidx - 1 do
    local off = 0
    for j, r in ipairs(readers) do
      local size = xs[first + j - 1]
      local v = r(idx)
      if v < 0 then v = v + size end
      if v < 0 or v >= size or v % 1 ~= 0 then
        error(string.format("IndexError: index %d is out of bounds for dimension %d with size %d", r(idx), first + j - 2, size), 0)
      end
      off = off * size + v
    end
    offsets[k] = off
    for i = #ishape, 1, -1 do
      idx[i] = idx[i] + 1
      if idx[i] < ishape[i] then break end
      idx[i] = 0
    end
  end
  local span = 1
  for j = 1, #tensors do span = span * xs[first + j - 1] end
  for o = 0, outer - 1 do
    for k = 0, nidx - 1 do
      ffi.copy(pd + (o * nidx + k) * block, ps + (o * span + offsets[k]) * block, block)
    end
  end
  local _ = keep
  return y
end

return function(ops)
  local list_index = ops.get("aten::index").fn
  ops.get("aten::index").fn = function(x, i)
    if is_tensor(x) then return index(x, i) end
    return list_index(x, i)
  end
  ops.def("aten::index_select(Tensor self, int dim, Tensor index) -> Tensor", function(x, d, i)
    if d < 0 then d = d + x.ndim end
    local list = {}
    for k = 1, d do list[k] = None end
    list[d + 1] = i
    return index(x, V.list(list))
  end)
end
