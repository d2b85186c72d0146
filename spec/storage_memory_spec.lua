-- storage_memory_spec: what a frame loop's dropped tensors cost in memory
-- (csrc/tensor/storage_memory.c, and the collector pacing in pthcv.tensor).
-- Needs no fixture.
require "support"
local pthcv = require "pthcv"
local C = require("pthcv.core").C

local MiB = 2 ^ 20

describe("storage memory", function()
  it("collects a loop's dropped tensors by their storage bytes, not their few bytes of cdata", function()
    collectgarbage()
    local held0 = C.pthcv_storage_bytes_held()
    local peak = held0
    for _ = 1, 200 do -- 800 MiB made in all, each result dropped at once
      local t = pthcv.zeros(1024, 1024)
      assert.are.equal(1024 * 1024, t.numel)
      peak = math.max(peak, C.pthcv_storage_bytes_held())
    end
    -- the pacing collects once the bytes held grow past the fewest held
    -- since the last collection by max(64 MiB, that low); Lua's own
    -- collector, counting cdata, would not have run at all
    assert.is_true(peak - held0 <= 2 * math.max(64 * MiB, held0) + 8 * MiB,
                   string.format("held grew by %.0f MiB", (peak - held0) / MiB))
    assert.is_true(C.pthcv_storage_bytes_made() >= 800 * MiB)
  end)

  it("counts a storage's bytes while it lives, and gives them back when it is released", function()
    collectgarbage()
    local held0, made0 = C.pthcv_storage_bytes_held(), C.pthcv_storage_bytes_made()
    local t = pthcv.zeros(3, 1000)
    assert.are.equal(held0 + 12000, C.pthcv_storage_bytes_held())
    assert.are.equal(made0 + 12000, C.pthcv_storage_bytes_made())
    local v = t:view(1000, 3) -- a view: no new bytes
    assert.are.equal(held0 + 12000, C.pthcv_storage_bytes_held())
    t = nil -- luacheck: ignore
    collectgarbage()
    assert.are.equal(held0 + 12000, C.pthcv_storage_bytes_held()) -- the view still holds the storage
    v = nil -- luacheck: ignore
    collectgarbage()
    assert.are.equal(held0, C.pthcv_storage_bytes_held())
    assert.are.equal(made0 + 12000, C.pthcv_storage_bytes_made())
  end)
end)
