-- lua/pthcv/tensor/topk.lua: small reductions on the Lua side (logits, not
-- feature maps): t:topk(k [, dim]) and t:argmax([dim]), 1-based indices as
-- Torch7. Installed by tensor/init.lua.
return function(Tensor, I)
  local C, methods = I.C, I.methods
  local call = I.D.call
  local L, norm_dim = Tensor.layout, Tensor.norm_dim
  local at = I.double_at -- p[i] of a double *, NaN as 0/0 (element.lua)

  -- rec: {k, dim (0-based)}
  local function topk_impl(rec, t)
    local k, dim = rec.k, rec.dim + 1
    local d = I.to(t, C.PTHCV_FLOAT64)
    local x = I.contiguous(L.apply(L.transpose(d, dim, -1, 3), d))
    local shape = x.shape
    local n = shape[#shape]
    local rows = n == 0 and 0 or tonumber(x.ct.numel) / n
    local oshape = { unpack(shape) }
    oshape[#oshape] = k
    local vals, idx = Tensor.zeros(oshape, "float32"), Tensor.zeros(oshape, "int64")
    local p, pv, pi = I.data_ptr(x), I.data_ptr(vals), I.data_ptr(idx)
    local w = I.ffi.cast(I.bits32, p)
    local order = {}
    for r = 0, rows - 1 do
      local base = r * n
      for i = 1, n do order[i] = i end
      -- stable: ties keep the lower index first; NaN sorts as the largest
      table.sort(order, function(a, b)
        local va, vb = at(p, w, base + a - 1), at(p, w, base + b - 1)
        if va ~= va then return vb == vb or a < b end
        if vb ~= vb then return false end
        if va ~= vb then return va > vb end
        return a < b
      end)
      for i = 1, k do
        pv[r * k + i - 1] = at(p, w, base + order[i] - 1)
        pi[r * k + i - 1] = order[i]
      end
    end
    if dim ~= #shape then
      return L.apply(L.transpose(vals, dim, -1, 3), vals), L.apply(L.transpose(idx, dim, -1, 3), idx)
    end
    return vals, idx
  end

  -- t:topk(k [, dim]): the k largest values along dim (default the last),
  -- largest first: values (float32) and 1-based indices (int64).
  function methods.topk(t, k, dim)
    dim = norm_dim(t, dim or -1, 3)
    local n = tonumber(t.ct.shape[dim - 1])
    if k < 0 or k > n then error("pthcv: topk: k=" .. k .. " out of range 0.." .. n, 2) end
    return call("Tensor.topk", { k = k, dim = dim - 1 }, topk_impl, t)
  end

  -- 1-based flat index of the largest element (first one on ties)
  local function argmax_all(_, t)
    local c = I.contiguous(I.to(t, C.PTHCV_FLOAT64))
    local p, n = I.data_ptr(c), tonumber(c.ct.numel)
    local w = I.ffi.cast(I.bits32, p)
    local best, bi = at(p, w, 0), 0
    for i = 1, n - 1 do
      local v = at(p, w, i)
      if v > best or (v ~= v and best == best) then best, bi = v, i end
    end
    return bi + 1
  end
  -- rec: {dim (0-based)}
  local function argmax_dim(rec, t)
    local _, idx = topk_impl({ k = 1, dim = rec.dim }, t)
    return L.apply(L.squeeze(idx, rec.dim + 1, 3), idx)
  end

  -- t:argmax(): the 1-based flat index of the largest element (first one on
  -- ties); t:argmax(dim): an int64 tensor of 1-based indices along dim.
  function methods.argmax(t, dim)
    if dim == nil then
      if t.ct.numel == 0 then error("pthcv: argmax of an empty tensor", 2) end
      return call("Tensor.argmax", nil, argmax_all, t)
    end
    return call("Tensor.argmax", { dim = norm_dim(t, dim, 3) - 1 }, argmax_dim, t)
  end

  -- both compute in Lua from element values (element.lua's element_ops)
  Tensor.element_ops["Tensor.topk"], Tensor.element_ops["Tensor.argmax"] = true, true
end
