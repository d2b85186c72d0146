-- storage_memory_spec: what a frame loop's dropped tensors cost in memory
-- (csrc/tensor/storage_memory.c, and the collector pacing in pthcv.tensor).
-- Needs no fixture.
require "support"
local ffi = require "ffi"
local pthcv = require "pthcv"
local C = require("pthcv.core").C

local MiB = 2 ^ 20
local function address(t) return tonumber(ffi.cast("uintptr_t", C.pthcv_tensor_data(t.ct))) end

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
    -- the pacing collects once the bytes made since the last collection pass
    -- max(64 MiB, bytes held then); Lua's own collector, counting cdata,
    -- would not have run at all
    assert.is_true(peak - held0 <= 2 * math.max(64 * MiB, held0) + 8 * MiB,
                   string.format("held grew by %.0f MiB", (peak - held0) / MiB))
    assert.is_true(C.pthcv_storage_bytes_made() >= 800 * MiB)
  end)

  it("hands a freed large storage's memory to the next storage of its size, zeroed when asked", function()
    local n = 262144 + 7 -- an odd count of floats: no other storage in this process has its size
    local t = pthcv.full({ n }, 7, "float32")
    local where = address(t)
    t = nil -- luacheck: ignore
    collectgarbage()
    collectgarbage()
    local kept = C.pthcv_storage_bytes_kept()
    if kept < n * 4 then
      return pending("storage reuse is off here (AddressSanitizer build, or PTHCV_STORAGE_REUSE=0)")
    end
    local z = pthcv.zeros(n)
    assert.are.equal(where, address(z))
    assert.are.equal(kept - n * 4, C.pthcv_storage_bytes_kept())
    local first, last = z:get(1), z:get(n)
    assert.are.equal(0, first)
    assert.are.equal(0, last)
    assert.are.equal(0, z:abs():sum())
  end)

  it("keeps nothing with PTHCV_STORAGE_REUSE=0", function()
    local script = [[
      local pthcv = require "pthcv"
      local C = require("pthcv.core").C
      local t = pthcv.zeros(1024, 1024); t = nil; collectgarbage(); collectgarbage()
      io.write(string.format("%d %d", C.pthcv_storage_bytes_kept(), C.pthcv_storage_bytes_held()))
    ]]
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write(script)
    f:close()
    local run = function(env)
      local p = assert(io.popen(env .. " luajit " .. path))
      local out = p:read("*a")
      p:close()
      return out
    end
    local off = run("PTHCV_STORAGE_REUSE=0")
    local on = run("")
    os.remove(path)
    assert.are.equal("0", off:match("^(%d+) "), "kept with reuse off: " .. off)
    local kept_on = tonumber(on:match("^(%d+) "))
    assert.is_truthy(kept_on, "no output: " .. on)
    if kept_on == 0 then return pending("storage reuse is off here (AddressSanitizer build)") end
    assert.are.equal(4 * MiB, kept_on)
  end)
end)
