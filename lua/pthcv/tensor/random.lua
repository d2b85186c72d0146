-- lua/pthcv/tensor/random.lua: Tensor.randn, Tensor.rand, Tensor.manual_seed.
-- Installed by tensor/init.lua.
--
-- float32 values from a small seeded generator of pthcv's own (xorshift64*,
-- and Box-Muller for the normal ones), so results repeat across runs and
-- machines without touching math.random: randn(shape [, {seed = n}]) or
-- randn(2, 3 [, {seed = n}]). Record: {shape = {...}, seed = n or nil}.
return function(Tensor, I)
  local ffi = I.ffi
  local call = I.D.call

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

  local function record(a, ...)
    local shape, opts
    if type(a) == "table" then shape, opts = { unpack(a) }, (...) else shape = { a, ... } end
    if type(shape[#shape]) == "table" then opts = table.remove(shape) end
    return { shape = shape, seed = opts and opts.seed }
  end

  -- a new float32 tensor of rec.shape, after seeding when rec.seed
  local function start(rec)
    if rec.seed then Tensor.manual_seed(rec.seed) end
    local t = I.new_zeros(rec.shape, I.C.PTHCV_FLOAT32)
    return t, I.data_ptr(t), tonumber(t.ct.numel)
  end

  local function randn_impl(rec)
    local t, p, n = start(rec)
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
  local function rand_impl(rec)
    local t, p, n = start(rec)
    for i = 0, n - 1 do p[i] = rng_uniform() end
    return t
  end

  function Tensor.randn(...) return call("Tensor.randn", record(...), randn_impl) end
  function Tensor.rand(...) return call("Tensor.rand", record(...), rand_impl) end
  Tensor.constructors["Tensor.randn"], Tensor.constructors["Tensor.rand"] = true, true
end
