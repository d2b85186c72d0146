-- spec/args_spec.lua: one argument record per op (lua/pthcv/nn/args.lua),
-- the cache keys made from them (issue 11.2; the values against torch are
-- in nn_spec.lua), and the one dispatch point every op passes
-- (lua/pthcv/tensor/dispatch.lua).
require "support"
local pthcv = require "pthcv"
local A = require "pthcv.nn.args"
local D = require "pthcv.tensor.dispatch"

local nn, F = pthcv.nn, pthcv.F

describe("argument records", function()
  it("keys packs by the resolved arguments: 2 and {2, 2} are the same, clamp bounds are not", function()
    local k1 = A.conv2d(3, 3, { stride = 2, padding = { 1, 1 } }).key
    assert.are.equal(k1, A.conv2d(3, 3, { stride = { 2, 2 }, padding = 1 }).key)
    assert.are.equal(k1, A.conv2d(3, 3, { stride = { 2 }, padding = 1, dilation = 1, groups = 1,
                                          padding_mode = "zeros" }).key)
    local c6 = A.conv2d(3, 3, { act = { kind = "clamp", alpha = 0, beta = 6 } }).key
    local c05 = A.conv2d(3, 3, { act = { kind = "clamp", alpha = 0, beta = 0.5 } }).key
    assert.are_not.equal(c6, c05)
    assert.are_not.equal(A.linear({ kind = "leaky_relu", alpha = 0.1 }).key,
                         A.linear({ kind = "leaky_relu", alpha = 0.3 }).key)
  end)
  it("apply torch's defaults once", function()
    local p = A.pool2d("max", "max_pool2d", { kernel_size = 3 })
    assert.are.same({ kind = "max", kernel_size = { 3, 3 }, stride = { 3, 3 }, padding = { 0, 0 },
                      dilation = { 1, 1 }, ceil_mode = false, count_include_pad = true, divisor_override = 0 }, p)
    assert.are.same({ 2, 3 }, A.pool2d("avg", "avg_pool2d", { kernel_size = { 2, 3 }, stride = {} }).stride)
    assert.are.equal(-math.huge, A.activation({ kind = "clamp", beta = 1 }).alpha)
    assert.are.equal(math.huge, A.activation({ kind = "clamp" }).beta)
    assert.are.equal(0.01, A.activation("leaky_relu").alpha)
    assert.are.equal(1.0, A.activation({ kind = "elu" }).alpha)
    local same = A.conv2d(5, 3, { padding = "same", dilation = 2 })
    assert.are.same({ 4, 2 }, same.padding)
    assert.are.equal("none", A.conv2d(1, 1, {}).act.kind)
  end)

  it("resolve dims against the input: softmax's implicit dim, negative dims, None sizes", function()
    assert.are.equal(1, A.softmax(pthcv.zeros(2, 3), nil, "softmax").dim)
    assert.are.equal(0, A.softmax(pthcv.zeros(2, 3, 4), nil, "softmax").dim)
    assert.are.equal(1, A.softmax(pthcv.zeros(2, 3, 4, 5), nil, "softmax").dim)
    assert.are.equal(2, A.softmax(pthcv.zeros(2, 3, 4), -1, "softmax").dim)
    assert.are.same({ 0, 2 }, A.reduce(pthcv.zeros(2, 3, 4), "sum", { 0, -1 }, false).dims)
    local x = pthcv.zeros(1, 2, 5, 7)
    assert.are.same({ 3, 7 }, A.adaptive_pool2d(x, "avg", "adaptive_avg_pool2d", { 3, pthcv.None }).output_size)
  end)

  it("name the function and the argument in errors", function()
    local x = pthcv.zeros(1, 2, 5, 5)
    local ok, e = pcall(F.max_pool2d, x, 3, { stride = "2" })
    assert.is_false(ok)
    assert.truthy(e:find("max_pool2d: stride must be an int or a pair", 1, true), e)
    ok, e = pcall(F.conv2d, x, pthcv.zeros(2, 2, 3, 3), { strides = 1 })
    assert.is_false(ok)
    assert.truthy(e:find("conv2d: unknown argument 'strides'", 1, true), e)
    ok, e = pcall(F.softmax, x, 4)
    assert.is_false(ok)
    assert.truthy(e:find("softmax: dim 4 out of range for a 4-d tensor", 1, true), e)
  end)
end)

describe("the dispatch point", function()
  local function record_ops(fn)
    local seen = {}
    local saved = D.hook
    D.hook = function(op, rec, impl, ...)
      seen[#seen + 1] = { op = op, rec = rec }
      return impl(rec, ...)
    end
    local ok, err = pcall(fn)
    D.hook = saved
    assert(ok, err)
    return seen
  end

  it("sees every op of a prepared model with its record, and nothing when unhooked", function()
    local m = nn.Sequential(nn.Conv2d(3, 4, 3, { padding = 1 }), nn.BatchNorm2d(4), nn.ReLU6(),
                            nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16, 2), nn.Softmax(1)):eval()
    local x = pthcv.randn(1, 3, 4, 4, { seed = 3 })
    local seen = record_ops(function() m(x) end)
    local ops = {}
    for i, s in ipairs(seen) do ops[i] = s.op end
    -- the nested calls inside an op pass the point too; the outer ones come first
    assert.are.same({ "F.conv2d_packed", "F.max_pool2d", "F.flatten", "F.linear_packed", "F.softmax" }, ops)
    assert.are.equal("relu6", seen[1].rec.act.kind)
    assert.are.same({ 1, 1 }, seen[1].rec.padding)
    assert.are.same({ 2, 2 }, seen[2].rec.stride)
    assert.are.same({ 1, 16 }, seen[3].rec.shape)
    assert.are.equal(1, seen[5].rec.dim)
    assert.is_nil(D.hook)
  end)

  it("sees Tensor methods and operators under their names", function()
    local x = pthcv.arange(6):view(2, 3)
    local seen = record_ops(function() local _ = (x + 1):transpose(1, 2):sum() end)
    local ops = {}
    for i, s in ipairs(seen) do ops[i] = s.op end
    assert.are.same({ "Tensor.add", "Tensor.transpose", "Tensor.sum" }, { ops[1], ops[2], ops[#ops] })
    assert.are.same({ 1, 0 }, seen[2].rec.perm)
  end)
end)
