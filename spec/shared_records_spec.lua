-- The records F.cat, F.channel_shuffle and F.chunk make once per value and
-- share between calls (lua/pthcv/nn/functional_shape.lua), and the split
-- views made straight from the C tensor's shape (lua/pthcv/tensor/views.lua):
-- each call still computes its own pieces.
local pthcv = require "pthcv"
local F = pthcv.nn.functional

local function arange(shape)
  local n = 1
  for _, s in ipairs(shape) do n = n * s end
  return pthcv.arange(n):float():view(shape)
end

describe("shared op records", function()
  it("F.chunk: the same chunk count on tensors of other sizes splits each by its own size", function()
    local a, b = arange { 1, 6, 2 }, arange { 1, 7, 2 }
    for _ = 1, 2 do   -- the second round reuses the records
      local pa, pb = F.chunk(a, 2, 1), F.chunk(b, 2, 1)
      assert.are.same({ { 1, 3, 2 }, { 1, 3, 2 } }, { pa[1].shape, pa[2].shape })
      assert.are.same({ { 1, 4, 2 }, { 1, 3, 2 } }, { pb[1].shape, pb[2].shape })
      assert.are.equal(6, pa[2]:get(1, 1, 1))
      assert.are.equal(8, pb[2]:get(1, 1, 1))
      assert.are.equal(13, pb[2]:get(1, 3, 2))
    end
    -- a negative dim and a non-contiguous input
    local t = arange({ 2, 3, 5 }):transpose(1, 3)   -- [5, 3, 2]
    local p = F.chunk(t, 3, -1)
    assert.are.equal(2, #p)
    assert.are.same({ 5, 3, 1 }, p[2].shape)
    assert.are.equal(t:get(4, 2, 2), p[2]:get(4, 2, 1))
  end)

  it("F.chunk refuses a chunk count torch refuses (0, negative, not an integer)", function()
    local t = arange { 4, 6 }
    for _, bad in ipairs { 0, -1, 2.5 } do
      local ok, err = pcall(F.chunk, t, bad, 1)
      assert.is_false(ok)
      assert.matches("chunk", err)
      assert.matches(tostring(bad), err, 1, true)
    end
    assert.are.equal(3, #F.chunk(t, 4, 1))   -- torch: ceil(6 / 4) = 2 per piece, 3 pieces
  end)

  it("F.cat and F.channel_shuffle give the values of their dims and groups, call after call", function()
    local a, b = arange { 1, 2, 2 }, arange { 1, 2, 2 }
    for _ = 1, 2 do
      assert.are.same({ 1, 4, 2 }, F.cat({ a, b }, 1).shape)
      assert.are.same({ 1, 2, 4 }, F.cat({ a, b }, 2).shape)
      local s2 = F.channel_shuffle(arange { 1, 6, 1 }, 2)
      local s3 = F.channel_shuffle(arange { 1, 6, 1 }, 3)
      assert.are.same({ 0, 3, 1, 4, 2, 5 }, { s2:get(1, 1, 1), s2:get(1, 2, 1), s2:get(1, 3, 1), s2:get(1, 4, 1),
                                              s2:get(1, 5, 1), s2:get(1, 6, 1) })
      assert.are.same({ 0, 2, 4, 1, 3, 5 }, { s3:get(1, 1, 1), s3:get(1, 2, 1), s3:get(1, 3, 1), s3:get(1, 4, 1),
                                              s3:get(1, 5, 1), s3:get(1, 6, 1) })
    end
    assert.has_error(function() F.channel_shuffle(arange { 1, 6, 1 }, 4) end,
                     "pthcv: channel_shuffle: 6 channels do not split into 4 groups")
  end)
end)
