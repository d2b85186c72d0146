-- lua/pthcv/jit/ops/detection.lua: what torchvision's scripted detectors
-- (ssd, ssdlite, Faster R-CNN, RetinaNet, FCOS) call besides the layers:
-- torchvision::nms and torchvision::roi_align over pthcv.ops' C kernels,
-- and the aten ops of their box arithmetic and post-processing (where,
-- max/min, topk, sort, meshgrid, index_put_, unique...). Post-processing
-- tensors are small (boxes, scores, labels): most of these compute in Lua
-- over float64 copies and return torch's dtypes. The random ones
-- (uniform_, randperm) serve the training branches that scripting keeps
-- (random crops, sampling): torch's random stream is not reproduced.
local Tensor = require "pthcv.tensor"
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"
local E = require "pthcv.jit.ops.elementwise"

local None = V.None
local is_tensor = Tensor.is
local D = {}
local copy_into   -- pthcv.jit.ops.tensor's, set by D.register

local function tensor_arg(op, x)
  if not is_tensor(x) then S.type_error(op, x) end
  return x
end

-- A tensor's values as a float64 array (0-based) and the copy holding them.
local function doubles(x)
  local c = x:to("float64"):contiguous()
  return c:data(), c
end

-- A tensor of shape and dtype from a Lua array of numbers (1-based).
local function from_values(vals, shape, dtype)
  local n = #vals
  local t = Tensor.zeros(shape, "float64")
  if n > 0 then
    local p = t:data()
    for i = 1, n do p[i - 1] = vals[i] end
  end
  return t:to(dtype)
end

-- The next row-major index of idx (0-based) in shape.
local function advance(idx, shape)
  for d = #shape, 1, -1 do
    idx[d] = idx[d] + 1
    if idx[d] < shape[d] then return end
    idx[d] = 0
  end
end

-- torch.where(condition): per dimension, the int64 positions of the
-- non-zero elements (row-major order), as a list of 1-d tensors.
local function nonzero_positions(cond)
  local p, keep = doubles(cond)
  local shape, nd = cond.shape, cond.ndim
  local cols = {}
  for d = 1, math.max(nd, 1) do cols[d] = {} end
  local idx = {}
  for d = 1, nd do idx[d] = 0 end
  for k = 0, cond.numel - 1 do
    if p[k] ~= 0 then
      for d = 1, nd do local c = cols[d]; c[#c + 1] = idx[d] end
      if nd == 0 then local c = cols[1]; c[#c + 1] = 0 end
    end
    advance(idx, shape)
  end
  local _ = keep
  local out = {}
  for d = 1, math.max(nd, 1) do out[d] = from_values(cols[d], { #cols[d] }, "int64") end
  return V.list(out)
end

-- max/min of NaN-propagating doubles
local function pick(better)
  return function(x, y)
    if x ~= x then return x end
    if y ~= y then return y end
    return better(x, y) and x or y
  end
end

local function reduce_all(op, x, better)
  if x.numel == 0 then error("RuntimeError: " .. op .. "(): expected a non-empty tensor", 0) end
  local p, keep = doubles(x)
  local f, m = pick(better), p[0]
  for i = 1, x.numel - 1 do m = f(m, p[i]) end
  local _ = keep
  return from_values({ m }, {}, x.dtype)
end

-- aten::max / aten::min: (self) the extreme element as a 0-d tensor;
-- (self, other) elementwise; (self, dim, keepdim) values and indices.
local function extreme(op, better)
  local F = require "pthcv.nn.functional"
  return function(x, a, keepdim)
    tensor_arg(op, x)
    if a == None then return reduce_all(op, x, better) end
    if is_tensor(a) then return E.lua_binary(x, a, pick(better), E.result_dtype(x, a)) end
    if type(a) ~= "number" or a % 1 ~= 0 then S.type_error(op, a) end
    local values, indices = F[op == "aten::max" and "max" or "min"](x, a, keepdim == true)
    return V.tuple { values, indices }
  end
end

-- torch.meshgrid(tensors, indexing): 1-d tensors spread over a grid ("ij":
-- the first tensor along the first dimension; "xy" swaps the first two).
local function meshgrid(list, indexing)
  if not (V.is_list(list) or V.is_tuple(list)) then S.type_error("aten::meshgrid", list) end
  local n = #list
  local sizes, vals, keep = {}, {}, {}
  for i = 1, n do
    local t = tensor_arg("aten::meshgrid", list[i])
    if t.ndim > 1 then error("RuntimeError: torch.meshgrid: expected 0-d or 1-d tensors", 0) end
    sizes[i] = t.numel
    vals[i], keep[i] = doubles(t)
  end
  local order = {}
  for i = 1, n do order[i] = i end
  if indexing == "xy" and n >= 2 then order[1], order[2] = 2, 1 end
  local shape = {}
  for d = 1, n do shape[d] = sizes[order[d]] end
  local total = 1
  for d = 1, n do total = total * shape[d] end
  local out = {}
  for i = 1, n do
    local g = Tensor.zeros(shape, "float64")
    local q, src = g:data(), vals[i]
    local idx = {}
    for d = 1, n do idx[d] = 0 end
    local dim_of_i
    for d = 1, n do if order[d] == i then dim_of_i = d end end
    for k = 0, total - 1 do
      q[k] = src[idx[dim_of_i]]
      advance(idx, shape)
    end
    out[i] = g:to(list[i].dtype)
  end
  return V.list(out)
end

-- self[indices] = values (aten::index_put_): the index tensors (int64
-- positions, or a bool mask over as many dimensions as it has) on the
-- leading dimensions; values broadcast from one element or given for every
-- selected block; written in place.
local function index_put(x, indices, values, accumulate)
  local op = "aten::index_put_"
  tensor_arg(op, x)
  local n = #indices
  local flat, span
  if n == 1 and is_tensor(indices[1]) and (indices[1].dtype == "bool" or indices[1].dtype == "uint8") then
    local mask = indices[1]
    if mask.ndim > x.ndim then error("RuntimeError: " .. op .. ": a mask of " .. mask.ndim .. " dimensions for a " .. x.ndim .. "-d tensor", 0) end
    for d = 1, mask.ndim do
      if mask.shape[d] ~= x.shape[d] then
        error("IndexError: " .. op .. ": the mask's shape " .. tostring(mask) .. " does not match the indexed tensor " .. tostring(x), 0)
      end
    end
    flat, span = {}, mask.ndim
    local p, keep = doubles(mask)
    for k = 0, mask.numel - 1 do if p[k] ~= 0 then flat[#flat + 1] = k end end
    local _ = keep
  else
    for i = 1, n do
      local t = indices[i]
      if t ~= None and not is_tensor(t) then S.type_error(op, t) end
      if t == None or t.dtype == "bool" or t.dtype == "uint8" or i > 1 then
        error("RuntimeError: " .. op .. ": pthcv supports one int64 index tensor on the first dimension, or one bool mask", 0)
      end
    end
    local t = indices[1]
    local p, keep = doubles(t)
    flat, span = {}, 1
    local size = x.shape[1]
    for k = 0, t.numel - 1 do
      local i = p[k]
      if i < -size or i >= size then error("IndexError: " .. op .. ": index " .. i .. " is out of bounds for size " .. size, 0) end
      flat[#flat + 1] = i < 0 and i + size or i
    end
    local _ = keep
  end
  local inner = 1
  for d = span + 1, x.ndim do inner = inner * x.shape[d] end
  if not is_tensor(values) then values = Tensor.full({}, S.num(values), x.dtype) end
  local vp, vkeep = doubles(values)
  local nv = values.numel
  if nv ~= 1 and nv ~= inner and nv ~= #flat * inner then
    error("RuntimeError: " .. op .. ": shape mismatch: values of " .. tostring(values) .. " for " .. #flat .. " blocks of " .. inner, 0)
  end
  local cur, keep = doubles(x)
  for b = 1, #flat do
    local base = flat[b] * inner
    for j = 0, inner - 1 do
      local v = nv == 1 and vp[0] or nv == inner and vp[j] or vp[(b - 1) * inner + j]
      cur[base + j] = accumulate == true and cur[base + j] + v or v
    end
  end
  local _ = vkeep
  return copy_into(x, keep)
end

-- torch.unique(x, sorted=True, ...): the distinct values ascending, the
-- position of each element's value among them, the counts.
local function unique(x, _, return_inverse, return_counts)
  tensor_arg("aten::_unique2", x)
  local p, keep = doubles(x)
  local n = x.numel
  local sorted = {}
  for i = 1, n do sorted[i] = p[i - 1] end
  table.sort(sorted)
  local vals, counts, pos = {}, {}, {}
  for i = 1, n do
    local v = sorted[i]
    if vals[#vals] ~= v then vals[#vals + 1] = v; counts[#vals] = 0; pos[v] = #vals - 1 end
    counts[#vals] = counts[#vals] + 1
  end
  local inverse = {}
  if return_inverse == true then for i = 1, n do inverse[i] = pos[p[i - 1]] end end
  local _ = keep
  return V.tuple { from_values(vals, { #vals }, x.dtype),
                   from_values(inverse, return_inverse == true and x.shape or { 0 }, "int64"),
                   from_values(return_counts == true and counts or {}, { return_counts == true and #vals or 0 }, "int64") }
end

-- torch.sort of a tensor: (values, indices), stable; called by aten::sort
-- (pthcv.jit.ops.prim), which also sorts lists.
function D.sort(x, dim, descending)
  local F = require "pthcv.nn.functional"
  local v, i = F.sort(x, dim == None and -1 or dim, descending == true)
  return V.tuple { v, i }
end

local function mapped(op, f)
  return function(x)
    if is_tensor(x) then return E.lua_binary(x, 0, f, E.result_dtype(x, 0.5)) end
    return f(S.num(x))
  end
end

function D.register(ops)
  local def = ops.def
  local P = require "pthcv.ops"
  copy_into = ops.copy_into
  def("torchvision::nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor", function(b, s, t)
    return P.nms(tensor_arg("torchvision::nms", b), tensor_arg("torchvision::nms", s), S.num(t))
  end)
  def("torchvision::roi_align(Tensor input, Tensor rois, float spatial_scale, SymInt pooled_height, SymInt pooled_width, int sampling_ratio, bool aligned) -> Tensor",
      function(x, rois, scale, ph, pw, ratio, aligned)
        tensor_arg("torchvision::roi_align", x)
        return P.roi_align(x, tensor_arg("torchvision::roi_align", rois), { ph, pw }, S.num(scale), ratio, aligned == true)
      end)
  def("aten::where(Tensor condition, a=None, b=None) -> Tensor", function(cond, a, b)
    tensor_arg("aten::where", cond)
    if a == None and b == None then return nonzero_positions(cond) end
    local dtype = E.result_dtype(a, b)
    local c = E.lua_binary(cond, 0, function(v) return v ~= 0 and 1 or 0 end, "float64")
    local picked_a = E.lua_binary(c, a, function(m, v) return m ~= 0 and v or 0 end, "float64")
    return E.lua_binary(picked_a, E.lua_binary(c, b, function(m, v) return m ~= 0 and 0 or v end, "float64"),
                        function(u, w) return u + w end, dtype)
  end)
  def("aten::nonzero(Tensor self) -> Tensor", function(x)
    local cols = nonzero_positions(tensor_arg("aten::nonzero", x))
    local F = require "pthcv.nn.functional"
    return F.stack(cols, 1)
  end)
  def("aten::max(Tensor self, a=None, bool? keepdim=None) -> Tensor", extreme("aten::max", function(x, y) return x > y end))
  def("aten::min(Tensor self, a=None, bool? keepdim=None) -> Tensor", extreme("aten::min", function(x, y) return x < y end))
  def("aten::maximum(Tensor self, Tensor other) -> Tensor", function(a, b)
    return E.lua_binary(a, b, pick(function(x, y) return x > y end), E.result_dtype(a, b))
  end)
  def("aten::minimum(Tensor self, Tensor other) -> Tensor", function(a, b)
    return E.lua_binary(a, b, pick(function(x, y) return x < y end), E.result_dtype(a, b))
  end)
  def("aten::topk(Tensor self, int k, int dim=-1, bool largest=True, bool sorted=True) -> (Tensor values, Tensor indices)",
      function(x, k, dim, largest)
        local F = require "pthcv.nn.functional"
        local v, i = F.topk(tensor_arg("aten::topk", x), k, dim, largest)
        return V.tuple { v, i }
      end)
  def("aten::meshgrid(Tensor[] tensors, *, str? indexing=None) -> Tensor[]", function(l, indexing)
    return meshgrid(l, indexing == None and "ij" or indexing)
  end)
  def("aten::index_put_(Tensor(a!) self, Tensor?[] indices, Tensor values, bool accumulate=False) -> Tensor(a!)", index_put)
  def("aten::_unique2(Tensor self, bool sorted=True, bool return_inverse=False, bool return_counts=False) -> (Tensor, Tensor, Tensor)",
      unique)
  def("aten::reciprocal(Tensor self) -> Tensor", mapped("aten::reciprocal", function(v) return 1 / v end))
  def("aten::atan(Tensor self) -> Tensor", mapped("aten::atan", math.atan))
  def("aten::abs_(Tensor(a!) self) -> Tensor(a!)", function(x) return copy_into(x, ops.get("aten::abs").fn(x)) end)
  def("aten::bitwise_and(Tensor self, Tensor other) -> Tensor", function(a, b) return ops.get("aten::__and__").fn(a, b) end)
  -- pthcv has no autograd (aten::is_grad_enabled is false): nothing to set
  def("aten::set_grad_enabled(bool enabled) -> ()", function() return None end)
  def("aten::rsqrt(Tensor self) -> Tensor", mapped("aten::rsqrt", function(v) return 1 / math.sqrt(v) end))
  def("aten::log2(Tensor self) -> Tensor", mapped("aten::log2", function(v) return math.log(v) / math.log(2) end))
  def("aten::as_tensor(t data, *, ScalarType? dtype=None, Device? device=None) -> Tensor", function(data, dtype)
    if is_tensor(data) then
      if dtype == None then return data end
      return ops.get("aten::to").fn(data, dtype)
    end
    if V.is_list(data) then return ops.get("aten::tensor").fn(data, dtype) end
    return ops.get("aten::scalar_tensor").fn(data, dtype == None and ops.SCALAR_TYPE_OF[type(data) == "number" and data % 1 == 0 and "int64" or "float32"] or dtype)
  end)
  def("aten::new_empty(Tensor self, int[] size, *, ScalarType? dtype=None, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
      function(x, size, dtype)
        local shape = {}
        for i = 1, #size do shape[i] = S.num(size[i]) end
        return Tensor.zeros(shape, dtype == None and x.dtype or ops.SCALAR_TYPES[dtype])
      end)
  def("prim::type(Device self) -> str", function(d)
    if type(d) ~= "table" or getmetatable(d) ~= V.Device then S.type_error("prim::type", d) end
    return d.type
  end)
  def("aten::uniform_(Tensor(a!) self, float from=0, float to=1, *, Generator? generator=None) -> Tensor(a!)",
      function(x, lo, hi)
        local r = Tensor.rand(x.shape)
        return copy_into(x, E.lua_binary(r, 0, function(u) return lo + (hi - lo) * u end, x.dtype))
      end)
  def("aten::randperm(int n, *, ScalarType? dtype=4, Layout? layout=None, Device? device=None, bool? pin_memory=None) -> Tensor",
      function(n, dtype)
        local perm = {}
        for i = 1, n do perm[i] = i - 1 end
        if n > 0 then
          local u = Tensor.rand({ n }):to("float64")
          local p = u:data()
          for i = n, 2, -1 do
            local j = math.min(i, math.floor(p[i - 1] * i) + 1)
            perm[i], perm[j] = perm[j], perm[i]
          end
        end
        return from_values(perm, { n }, ops.SCALAR_TYPES[dtype == None and 4 or dtype])
      end)
end

return D
