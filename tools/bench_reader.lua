-- bench_reader.lua FILE MODE RUNS: times pthcv's reader in-process and prints
-- one line per run, "seconds=<s> tensors=<n> bytes=<b>".
--   list         open the file and list every tensor (name, dtype, shape): no storage read
--   materialize  open the file and bring every tensor's bytes into memory, reading
--                one byte of every 4 KiB page (storages mapped in place are
--                only paged in when touched, so touching is part of the cost)
package.path = arg[0]:gsub("[^/]*$", "") .. "../lua/?.lua;" ..
               arg[0]:gsub("[^/]*$", "") .. "../lua/?/init.lua;" .. package.path
local pthcv = require "pthcv"
local ffi = require "ffi"
local path, mode, runs = arg[1], arg[2] or "list", tonumber(arg[3] or "5")

local function now()
  local tv = ffi.new("struct { long s; long ns; }")
  ffi.C.clock_gettime(1, ffi.cast("void *", tv))
  return tonumber(tv.s) + tonumber(tv.ns) * 1e-9
end
ffi.cdef [[ int clock_gettime(int clk, void *ts); ]]

for _ = 1, runs do
  local t0 = now()
  local sd = pthcv.state_dict(path)
  local n, bytes, sum = 0, 0, 0
  for _, t in pairs(sd) do
    n = n + 1
    local _ = t.dtype, t.shape
    bytes = bytes + t.nbytes
    if mode == "materialize" then
      local p = ffi.cast("const uint8_t *", t:data())
      for i = 0, t.nbytes - 1, 4096 do sum = sum + p[i] end
    end
  end
  local dt = now() - t0
  sd = nil
  collectgarbage(); collectgarbage()
  print(string.format("seconds=%.6f tensors=%d bytes=%d checksum=%d", dt, n, bytes, sum))
end
