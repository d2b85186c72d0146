-- lua/pthcv/tensor/stats.lua: whole-tensor statistics as Lua numbers:
-- t:sum(), mean, min, max, std, over float64 values of real dtypes
-- (quantized tensors are dequantized first); a NaN makes each of them NaN,
-- as in torch. Installed by tensor/init.lua.
return function(Tensor, I)
  local C, props, methods = I.C, I.props, I.methods
  local call = I.D.call

  -- t's values as a contiguous float64 tensor d, its pointer p, its count
  -- and p's words w, through which at(p, w, i) reads p[i] (NaN as 0/0:
  -- element.lua's double_at)
  local function as_doubles(t)
    local src = t
    if props.is_quantized(t) then src = I.dequantize(t) end
    local d = I.contiguous(I.to(src, C.PTHCV_FLOAT64))
    local p = I.data_ptr(d)
    return d, p, tonumber(d.ct.numel), I.ffi.cast(I.bits32, p)
  end
  local at = I.double_at

  local function sum(t)
    local _, p, n, w = as_doubles(t)
    local s = 0
    for i = 0, n - 1 do s = s + at(p, w, i) end
    return s
  end
  local function sum_impl(_, t) return sum(t) end
  local function mean_impl(_, t)
    local n = tonumber(t.ct.numel)
    if n == 0 then return 0 / 0 end
    return sum(t) / n
  end
  local function min_impl(_, t)
    local _, p, n, w = as_doubles(t)
    local m = math.huge
    for i = 0, n - 1 do local v = at(p, w, i); if v < m then m = v elseif v ~= v then return v end end
    return m
  end
  local function max_impl(_, t)
    local _, p, n, w = as_doubles(t)
    local m = -math.huge
    for i = 0, n - 1 do local v = at(p, w, i); if v > m then m = v elseif v ~= v then return v end end
    return m
  end
  -- standard deviation with Bessel's correction, as torch's .std()
  local function std_impl(_, t)
    local _, p, n, w = as_doubles(t)
    if n < 2 then return 0 / 0 end
    local mean = 0
    for i = 0, n - 1 do mean = mean + at(p, w, i) end
    mean = mean / n
    local ss = 0
    for i = 0, n - 1 do local d = at(p, w, i) - mean; ss = ss + d * d end
    return math.sqrt(ss / (n - 1))
  end

  for name, impl in pairs { sum = sum_impl, mean = mean_impl, min = min_impl, max = max_impl, std = std_impl } do
    local op = "Tensor." .. name
    methods[name] = function(t) return call(op, nil, impl, t) end
    Tensor.element_ops[op] = true -- they read element values (element.lua)
  end
end
