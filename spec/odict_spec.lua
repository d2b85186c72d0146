-- odict_spec: the OrderedDict that Python dicts become.
require "support"
local pthcv = require "pthcv"
local OrderedDict = pthcv.OrderedDict

describe("OrderedDict", function()
  local function sample()
    local d = OrderedDict.new()
    d.zeta = 1; d.alpha = 2; d[10] = "ten"; d.mid = false
    return d
  end

  it("looks keys up with d[key]", function()
    local d = sample()
    assert.are.equal(1, d.zeta)
    assert.are.equal("ten", d[10])
    assert.are.equal(false, d.mid)
    assert.is_nil(d.missing)
  end)

  it("iterates with plain pairs() in insertion order", function()
    local d = sample()
    local keys = {}
    for k, v in pairs(d) do keys[#keys + 1] = k; assert.are.equal(d[k], v) end
    assert.are.same({ "zeta", "alpha", 10, "mid" }, keys)
  end)

  it("gives keys(), values(), items(), len()", function()
    local d = sample()
    assert.are.same({ "zeta", "alpha", 10, "mid" }, d:keys())
    assert.are.same({ 1, 2, "ten", false }, d:values())
    assert.are.same({ { "zeta", 1 }, { "alpha", 2 }, { 10, "ten" }, { "mid", false } }, d:items())
    assert.are.equal(4, d:len())
  end)

  it("keeps a key's place when its value is replaced, drops it on nil", function()
    local d = sample()
    d.zeta = 100
    assert.are.same({ "zeta", "alpha", 10, "mid" }, d:keys())
    d.alpha = nil
    assert.are.same({ "zeta", 10, "mid" }, d:keys())
    assert.is_nil(d.alpha)
    d.alpha = 3
    assert.are.same({ "zeta", 10, "mid", "alpha" }, d:keys())
    assert.are.equal(4, d:len())
  end)

  it("lets stored keys win over method names; module functions always work", function()
    local d = OrderedDict.new()
    d.keys = "a value"; d.items = 5
    assert.are.equal("a value", d.keys)
    assert.are.same({ "keys", "items" }, OrderedDict.keys(d))
    assert.are.equal(2, OrderedDict.len(d))
  end)

  it("leaves pairs() of ordinary tables as it was", function()
    local t = { a = 1, b = 2, 3 }
    local n = 0
    for k, v in pairs(t) do n = n + 1; assert.are.equal(t[k], v) end
    assert.are.equal(3, n)
    assert.has_error(function() pairs(nil) end)
  end)

  it("is reported as a dict by pthcv.type", function()
    assert.are.equal("dict", pthcv.type(sample()))
    assert.is_true(OrderedDict.is(sample()))
    assert.is_false(OrderedDict.is({}))
  end)

  it("refuses nil and NaN keys", function()
    local d = OrderedDict.new()
    assert.has_error(function() d[0 / 0] = 1 end)
  end)
end)
