-- spec/plan_kernels_spec.lua: the C entry points of pthcv.nn.plan's steps
-- (csrc/kernels/plan.c, se.c, pthcv_conv2d_forward_into in conv2d.c)
-- against their unfused references: the same kernels' results or pthcv's
-- own unfused ops, on odd sizes, strides, groups and batches, with
-- identical bits for 1 and 3 threads.
require "support"
local ffi = require "ffi"
local pthcv = require "pthcv"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local A = require "pthcv.nn.args"
local F = pthcv.F
local C = core.C

local function bytes(t) return t:contiguous():bytes() end

local function max_rel(a, b)
  local d, m = 0, 0
  local ta, tb = a:contiguous():view(-1):totable(), b:contiguous():view(-1):totable()
  for i = 1, #tb do d, m = math.max(d, math.abs(ta[i] - tb[i])), math.max(m, math.abs(tb[i])) end
  return d / math.max(m, 1e-30)
end

local function with_threads(n, fn)
  local saved = pthcv.get_num_threads()
  pthcv.set_num_threads(n)
  local ok, a, b = pcall(fn)
  pthcv.set_num_threads(saved)
  assert(ok, a)
  return a, b
end

local function last_error() return ffi.string(C.pthcv_last_error()) end

-- A destination [n, k*cout, oh, ow] and the view of it a convolution writes:
-- every k-th channel from channel `first`, or (slice) channels first ..
-- first + cout - 1.
local function destination(n, cout, oh, ow, k, first, slice)
  local dst = pthcv.zeros({ n, k * cout, oh, ow })
  local cs = slice and oh * ow or k * oh * ow
  local v = dst:as_strided({ n, cout, oh, ow }, { k * cout * oh * ow, cs, ow, 1 }, first * oh * ow)
  return dst, v
end

describe("pthcv_conv2d_forward_into", function()
  local CASES = {
    { name = "1x1 (GEMM)", cin = 17, cout = 7, k = 1 },
    { name = "3x3 stride 2 (GEMM)", cin = 3, cout = 33, k = 3, stride = 2 },
    { name = "3x3 Winograd-sized", cin = 16, cout = 17, k = 3, h = 20, w = 23 },
    { name = "grouped", cin = 6, cout = 9, k = 3, groups = 3 },
    { name = "depthwise", cin = 17, cout = 17, k = 3, groups = 17 },
    { name = "depthwise stride 2, 5x5", cin = 7, cout = 7, k = 5, groups = 7, stride = 2 },
    { name = "one channel", cin = 1, cout = 1, k = 3 },
  }
  for _, c in ipairs(CASES) do
    it("writes what pthcv_conv2d_forward computes into slices and shuffled channels: " .. c.name, function()
      local h, w = c.h or 9, c.w or 11
      local wt = pthcv.randn({ c.cout, c.cin / (c.groups or 1), c.k, c.k }, { seed = c.cin * 7 + c.cout })
      local b = pthcv.randn({ c.cout }, { seed = c.cout })
      local pk = F.conv2d_prepare(wt, b, { stride = c.stride or 1, padding = (c.k - 1) / 2, groups = c.groups or 1,
                                           act = "relu" })
      for _, n in ipairs { 1, 2 } do
        local x = pthcv.randn({ n, c.cin, h, w }, { seed = n })
        local ref = F.conv2d_packed(pk, x)
        local res = pthcv.randn(ref.shape, { seed = 5 })
        local ref_res = F.conv2d_packed(pk, x, res)
        local oh, ow = ref:size(3), ref:size(4)
        for _, layout in ipairs { { 1, 0 }, { 3, 1 }, { 2, 1 }, { 2, c.cout, true } } do
          for threads = 1, 3, 2 do
            with_threads(threads, function()
              local _, v = destination(n, c.cout, oh, ow, layout[1], layout[2], layout[3])
              assert.are.equal(0, C.pthcv_conv2d_forward_into(pk.handle, x.ct, nil, v.ct), last_error())
              assert.are.equal(bytes(ref), bytes(v))
              local _, vr = destination(n, c.cout, oh, ow, layout[1], layout[2], layout[3])
              assert.are.equal(0, C.pthcv_conv2d_forward_into(pk.handle, x.ct, res.ct, vr.ct), last_error())
              assert.are.equal(bytes(ref_res), bytes(vr))
            end)
          end
        end
      end
      -- unbatched [C, H, W] input and destination
      local x3 = pthcv.randn({ c.cin, h, w }, { seed = 9 })
      local ref3 = F.conv2d_packed(pk, x3)
      local d3 = pthcv.zeros({ 2 * c.cout, ref3:size(2), ref3:size(3) })
      local v3 = d3:narrow(1, c.cout + 1, c.cout)
      assert.are.equal(0, C.pthcv_conv2d_forward_into(pk.handle, x3.ct, nil, v3.ct), last_error())
      assert.are.equal(bytes(ref3), bytes(v3))
    end)
  end

  it("refuses destinations it cannot write", function()
    local pk = F.conv2d_prepare(pthcv.randn({ 4, 3, 3, 3 }, { seed = 1 }), nil, { padding = 1 })
    local x = pthcv.randn({ 1, 3, 5, 5 }, { seed = 2 })
    local wrong = pthcv.zeros({ 1, 4, 5, 4 })
    assert.are_not.equal(0, C.pthcv_conv2d_forward_into(pk.handle, x.ct, nil, wrong.ct))
    assert.matches("destination must be float32 of the output's shape", last_error())
    local overlapping = pthcv.zeros({ 1, 4, 5, 5 }):as_strided({ 1, 4, 5, 5 }, { 100, 10, 5, 1 }, 0)
    assert.are_not.equal(0, C.pthcv_conv2d_forward_into(pk.handle, x.ct, nil, overlapping.ct))
    assert.matches("do not overlap", last_error())
    local same = pthcv.zeros({ 1, 7, 5, 5 })
    local xin = same:narrow(2, 1, 3)
    assert.are_not.equal(0, C.pthcv_conv2d_forward_into(pk.handle, xin.ct, nil, same:narrow(2, 4, 4).ct))
    assert.matches("shares the input's storage", last_error())
  end)
end)

describe("pthcv_squeeze_excitation", function()
  local function se(x, w1, b1, a1, w2, b2, a2)
    return Tensor.wrap(C.pthcv_squeeze_excitation(x.ct, w1.ct, b1 and b1.ct or nil, A.activation_struct(A.activation(a1)),
                                                  w2.ct, b2 and b2.ct or nil, A.activation_struct(A.activation(a2))), true)
  end
  for _, c in ipairs { { 1, 1, "relu", "sigmoid" }, { 3, 1, "silu", "hardsigmoid" }, { 17, 3, "relu", "sigmoid" },
                       { 33, 8, "silu", "sigmoid" } } do
    local ch, sq, a1, a2 = c[1], c[2], c[3], c[4]
    it(string.format("is pool, 1x1, %s, 1x1, %s, multiply for %d channels squeezed to %d", a1, a2, ch, sq), function()
      for _, n in ipairs { 1, 2 } do
        local x = pthcv.randn({ n, ch, 7, 9 }, { seed = ch + n })
        local w1, b1 = pthcv.randn({ sq, ch, 1, 1 }, { seed = 1 }), pthcv.randn({ sq }, { seed = 2 })
        local w2, b2 = pthcv.randn({ ch, sq, 1, 1 }, { seed = 3 }), pthcv.randn({ ch }, { seed = 4 })
        local s = F.adaptive_avg_pool2d(x, 1)
        s = F.conv2d(s, w1, b1)
        s = F.conv2d(F[a1](s), w2, b2)
        local ref = F.mul(F[a2](s), x)
        local y1 = with_threads(1, function() return se(x, w1, b1, a1, w2, b2, a2) end)
        local y3 = with_threads(3, function() return se(x, w1, b1, a1, w2, b2, a2) end)
        assert.are.equal(bytes(y1), bytes(y3))
        assert.is_true(max_rel(y1, ref) < 1e-6, "relative difference " .. max_rel(y1, ref))
        local nob = se(x, w1, nil, a1, w2, nil, a2)
        local ref0 = F.mul(F[a2](F.conv2d(F[a1](F.conv2d(F.adaptive_avg_pool2d(x, 1), w1)), w2)), x)
        assert.is_true(max_rel(nob, ref0) < 1e-6)
      end
    end)
  end
  it("names what is wrong with its arguments", function()
    local x = pthcv.randn({ 1, 4, 3, 3 }, { seed = 1 })
    local act = A.activation_struct(A.activation("relu"))
    local w1, w2 = pthcv.randn({ 2, 4 }, { seed = 2 }), pthcv.randn({ 4, 3 }, { seed = 3 })
    assert.is_true(C.pthcv_squeeze_excitation(x.ct, w1.ct, nil, act, w2.ct, nil, act) == nil)
    assert.matches("fc2 must be float32 %[4, 2%]", last_error())
    assert.is_true(C.pthcv_squeeze_excitation(w1.ct, w1.ct, nil, act, w2.ct, nil, act) == nil)
    assert.matches("expected an input %[N, C, H, W%]", last_error())
  end)
end)

describe("pthcv_copy_into and placeholders", function()
  it("copies into strided views, on any thread count", function()
    local src = pthcv.randn({ 2, 5, 3, 7 }, { seed = 1 })
    for threads = 1, 3, 2 do
      with_threads(threads, function()
        local dst = pthcv.zeros({ 2, 10, 3, 7 })
        local v = dst:as_strided({ 2, 5, 3, 7 }, { 210, 42, 7, 1 }, 21)
        assert.are.equal(0, C.pthcv_copy_into(v.ct, src.ct), last_error())
        assert.are.equal(bytes(src), bytes(v))
        assert.are.equal(0, dst:get(1, 1, 1, 1))
      end)
    end
    local bad = pthcv.zeros({ 2, 5, 3, 6 })
    assert.are_not.equal(0, C.pthcv_copy_into(bad.ct, src.ct))
    assert.matches("one shape", last_error())
  end)
  it("a placeholder keeps a layout and refuses its bytes, naming itself", function()
    local shape, stride = ffi.new("int64_t[3]", { 2, 3, 4 }), ffi.new("int64_t[3]", { 24, 4, 1 })
    local t = Tensor.wrap(C.pthcv_tensor_placeholder(C.PTHCV_FLOAT32, 3, shape, stride, 12, "(the test's value)"), true)
    assert.are.same({ 2, 3, 4 }, t.shape)
    assert.are.same({ 24, 4, 1 }, t.stride)
    assert.are.equal(12, t.offset)
    local ok, err = pcall(function() return t:get(1, 1, 1) end)
    assert.is_false(ok)
    assert.matches("the test's value", err)
    ok, err = pcall(F.relu, t)
    assert.is_false(ok)
    assert.matches("the test's value", err)
    assert.is_true(C.pthcv_tensor_placeholder(C.PTHCV_FLOAT32, 1, ffi.new("int64_t[1]", { 2 }),
                                              ffi.new("int64_t[1]", { -1 }), 0, "x") == nil)
  end)
end)
