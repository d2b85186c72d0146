-- tensor_spec: the Lua Tensor over the C tensor (needs no fixture).
require "support"
local ffi = require "ffi"
local pthcv = require "pthcv"

describe("Tensor", function()
  local function m23() return pthcv.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32") end

  it("exposes dtype, shape, stride, numel, ndim", function()
    local t = m23()
    assert.are.equal("float32", t.dtype)
    assert.are.same({ 2, 3 }, t.shape)
    assert.are.same({ 3, 1 }, t.stride)
    assert.are.equal(6, t.numel)
    assert.are.equal(2, t.ndim)
    assert.are.equal(24, t.nbytes)
    assert.are.equal(0, t.offset)
    assert.are.equal("tensor", pthcv.type(t))
    assert.is_true(pthcv.is_tensor(t))
    assert.are.equal("Tensor(float32, [2, 3])", tostring(t))
  end)

  it("indexes from 1 (t:get(1, 1) is the first element)", function()
    local t = m23()
    assert.are.equal(1, t:get(1, 1))
    assert.are.equal(3, t:get(1, 3))
    assert.are.equal(4, t:get(2, 1))
    assert.are.equal(6, t:get(2, 3))
    assert.has_error(function() t:get(0, 1) end)
    assert.has_error(function() t:get(3, 1) end)
    assert.has_error(function() t:get(1) end)
  end)

  it("sets elements in place", function()
    local t = m23()
    t:set(2, 2, 50)
    assert.are.equal(50, t:get(2, 2))
    assert.are.same({ { 1, 2, 3 }, { 4, 50, 6 } }, t:totable())
  end)

  it("gives nested tables with totable(); a 0-d tensor gives its value", function()
    assert.are.same({ { 1, 2, 3 }, { 4, 5, 6 } }, m23():totable())
    local s = pthcv.tensor(2.5, "float64")
    assert.are.equal(0, s.ndim)
    assert.are.equal(2.5, s:totable())
    assert.are.equal(2.5, s:item())
    assert.are.same({ {}, {} }, pthcv.zeros({ 2, 0 }):totable())
  end)

  it("reads views through their strides: transpose, float, contiguous, to", function()
    local t = m23()
    local v = t:t()
    assert.are.same({ 3, 2 }, v.shape)
    assert.are.same({ 1, 3 }, v.stride)
    assert.is_false(v:is_contiguous())
    assert.is_true(v:shares_storage(t))
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, v:totable())
    local c = v:contiguous()
    assert.is_true(c:is_contiguous())
    assert.are.same({ 2, 1 }, c.stride)
    assert.is_false(c:shares_storage(t))
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, c:totable())
    local d = v:to("float64")
    assert.are.equal("float64", d.dtype)
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, d:totable())
    local i = pthcv.tensor({ 1.75, -1.75, 3 }, "float64"):to("int64")
    assert.are.equal("int64", i.dtype)
    assert.are.same({ 1, -1, 3 }, i:totable())
    local f = i:float()
    assert.are.equal("float32", f.dtype)
    assert.are.same({ 1, -1, 3 }, f:totable())
  end)

  it("views an offset into the storage", function()
    local t = m23()
    local row2 = t:as_strided({ 3 }, { 1 }, 3)
    assert.are.same({ 4, 5, 6 }, row2:totable())
    assert.are.equal(3, row2.offset)
    local col3 = t:as_strided({ 2 }, { 3 }, 2)
    assert.are.same({ 3, 6 }, col3:totable())
    assert.has_error(function() t:as_strided({ 4 }, { 2 }, 0) end) -- past the storage
  end)

  it("hands out a zero-copy pointer that aliases the storage", function()
    local t = m23()
    local p = t:data()
    assert.is_true(ffi.istype("float *", p))
    assert.are.equal(5, p[4])
    p[4] = 42
    assert.are.equal(42, t:get(2, 2))
    assert.are.equal(42, t:t():get(2, 2))
    t:set(1, 3, -7)
    assert.are.equal(-7, p[2])
    -- a view's pointer starts at its own first element
    local row2 = t:as_strided({ 3 }, { 1 }, 3)
    assert.are.equal(42, row2:data()[1])
  end)

  it("types the pointer by dtype", function()
    local cases = { float64 = "double *", int64 = "int64_t *", int32 = "int32_t *",
                    int16 = "int16_t *", int8 = "int8_t *", uint8 = "uint8_t *",
                    bool = "uint8_t *", float16 = "uint16_t *", bfloat16 = "uint16_t *" }
    for dtype, ctype in pairs(cases) do
      assert.is_true(ffi.istype(ctype, pthcv.zeros({ 2 }, dtype):data()), dtype)
    end
  end)

  it("converts half and bfloat16 elements to numbers", function()
    local h = pthcv.tensor({ 1.5, -2, 65504 }, "float16")
    assert.are.same({ 1.5, -2, 65504 }, h:totable())
    assert.are.equal(0x3e00, h:data()[0])
    local b = pthcv.tensor({ 1.5, -2 }, "bfloat16")
    assert.are.same({ 1.5, -2 }, b:totable())
    assert.are.equal(0x3fc0, b:data()[0])
  end)

  -- LuaJIT keeps its other types' tags in negative NaNs' payloads: a float
  -- with such bits, read through a pointer, is nil (0xFFFFFFFF, what torch's
  -- max over a NaN stores: spec/math_spec.lua reads torch's own), a userdata
  -- (0xFFF00000) or a trace (0xFFD80000) to it.
  it("reads NaNs of every bit pattern as Lua's NaN in get, totable, topk and the statistics, interpreted and compiled", function()
    local patterns = {
      float32 = { "uint32_t", { 0xFFFFFFFF, 0xFFF00000, 0xFFD80000, 0xFFC00000, 0x7FC00000, 0x7F800001 } },
      float64 = { "uint64_t", { 0xFFFFFFFFE0000000ULL, 0xFFFA000000001234ULL, 0xFFF8000000000000ULL,
                                0x7FF0000000000001ULL } },
      float16 = { "uint16_t", { 0xFFFF, 0x7E00, 0xFC01 } },
      bfloat16 = { "uint16_t", { 0xFFFF, 0x7FC0, 0xFF81 } },
    }
    local function read_all(t, n)
      local got = {}
      for i = 1, n do got[#got + 1] = t:get(i) end
      for _, v in ipairs(t:totable()) do got[#got + 1] = v end
      for _, v in ipairs(t:topk(n):totable()) do got[#got + 1] = v end
      for _, f in ipairs({ "sum", "mean", "std", "min", "max" }) do got[#got + 1] = t[f](t) end
      assert.are.equal(1, t:argmax()) -- the first NaN
      return got
    end
    for dtype, spec in pairs(patterns) do
      local ctype, bits = spec[1], spec[2]
      local t = pthcv.zeros({ #bits }, dtype)
      local p = ffi.cast(ctype .. " *", t:data())
      for i, b in ipairs(bits) do p[i - 1] = b end
      jit.flush() -- no traces, no compiling: the interpreter alone
      jit.off()
      local ok, interpreted = pcall(read_all, t, #bits)
      jit.on()
      assert(ok, interpreted)
      local compiled
      for _ = 1, 300 do compiled = read_all(t, #bits) end -- hot enough to be traced
      for _, got in ipairs({ interpreted, compiled }) do
        assert.are.equal(3 * #bits + 5, #got, dtype)
        for i, v in ipairs(got) do
          assert.are.equal("number", type(v), dtype .. " element " .. i)
          assert.is_true(v ~= v, dtype .. " element " .. i .. " is " .. tostring(v) .. ", want nan")
        end
      end
      local one = t:narrow(1, 1, 1):reshape({})
      assert.are.equal("number", type(one:item()), dtype)
      assert.matches("nan", one:repr(), 1, true)
    end
  end)

  it("gives booleans for bool and exact int64 values", function()
    assert.are.same({ true, false }, pthcv.tensor({ true, false }, "bool"):totable())
    local big = pthcv.zeros({ 1 }, "int64")
    big:data()[0] = 9007199254740993LL
    local v = big:get(1)
    assert.are.equal("cdata", type(v))
    assert.are.equal(9007199254740993LL, v)
    assert.are.equal("int", pthcv.type(v))
  end)

  it("handles complex elements", function()
    local c = pthcv.zeros({ 2 }, "complex64")
    c:set(2, { re = 1.5, im = -2 })
    local z = c:get(2)
    assert.are.equal("complex", pthcv.type(z))
    assert.are.equal(1.5, z.re)
    assert.are.equal(-2, z.im)
  end)

  it("computes simple statistics", function()
    local t = m23()
    assert.are.equal(21, t:sum())
    assert.are.equal(3.5, t:mean())
    assert.are.equal(1, t:min())
    assert.are.equal(6, t:max())
    assert.is_true(math.abs(t:std() - 1.8708286933869707) < 1e-12)
  end)

  it("reshapes and clones", function()
    local t = m23()
    assert.are.same({ { 1, 2 }, { 3, 4 }, { 5, 6 } }, t:reshape({ 3, -1 }):totable())
    local c = t:clone()
    c:set(1, 1, 99)
    assert.are.equal(1, t:get(1, 1))
    assert.are.equal(99, c:get(1, 1))
  end)

  it("gives contiguous bytes", function()
    local t = pthcv.tensor({ { 1, 2 }, { 3, 4 } }, "int16"):t()
    assert.are.equal("\1\0\3\0\2\0\4\0", t:bytes())
  end)

  it("survives collection of the tensor it was viewed from", function()
    local v = m23():t()
    collectgarbage(); collectgarbage()
    assert.are.same({ { 1, 4 }, { 2, 5 }, { 3, 6 } }, v:totable())
  end)

  -- the values torch 1.13 gives: torch.full((2, 2), 2.7, dtype=torch.int32),
  -- torch.full((3,), -1.5, dtype=torch.int16), torch.arange(0, 3, 0.5).to(torch.int64),
  -- torch.full((2,), 1, dtype=torch.bool), torch.tensor([[1.9, -1.9]]).to(torch.int8)
  it("fills and writes elements of every kind of dtype, truncating to integers as torch", function()
    assert.are.same({ { 2, 2 }, { 2, 2 } }, pthcv.full({ 2, 2 }, 2.7, "int32"):totable())
    assert.are.same({ -1, -1, -1 }, pthcv.full({ 3 }, -1.5, "int16"):totable())
    assert.are.same({ 0, 0, 1, 1, 2, 2 }, pthcv.arange(0, 3, 0.5, "int64"):totable())
    assert.are.same({ true, true }, pthcv.full({ 2 }, 1, "bool"):totable())
    assert.are.same({ { 1, -1 } }, pthcv.tensor({ { 1.9, -1.9 } }, "int8"):totable())
    local v = pthcv.zeros(3, 4):t() -- a strided view: set and get through its strides
    v:set(4, 2, 7.5)
    assert.are.equal(7.5, v:get(4, 2))
    assert.are.equal(7.5, v:t():contiguous():get(2, 4))
  end)

  it("rejects unknown dtypes", function()
    assert.has_error(function() pthcv.zeros({ 2 }, "float128") end)
  end)
end)
