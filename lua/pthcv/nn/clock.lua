-- lua/pthcv/nn/clock.lua: a monotonic wall clock in seconds (os.clock is
-- CPU time, summed over the kernel threads: useless for timing them).
local ffi = require "ffi"
local REGISTRY_KEY = "pthcv.nn.clock"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
pcall(ffi.cdef, [[
  typedef struct pthcv_timespec { long tv_sec; long tv_nsec; } pthcv_timespec;
  int clock_gettime(int clk_id, pthcv_timespec *tp);
]])
local ts = ffi.new("pthcv_timespec")
local CLOCK_MONOTONIC = 1
local function now()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end
debug.getregistry()[REGISTRY_KEY] = now
return now
