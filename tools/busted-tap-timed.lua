-- tools/busted-tap-timed.lua: busted's TAP output, plus one comment line
-- per spec file when it ends, "# time: spec/x_spec.lua 12 s" (wall
-- seconds), so tools/run-specs can list the slowest files: CI's time
-- budget is watched file by file.
local ffi = require "ffi"

pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } pthcv_tap_timespec;
int clock_gettime(int clk_id, pthcv_tap_timespec *tp);
]])

local function now()
  local ts = ffi.new("pthcv_tap_timespec")
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

return function(options)
  local busted = require "busted"
  local handler = require "busted.outputHandlers.TAP"(options)
  local started = {}
  busted.subscribe({ "file", "start" }, function(file)
    started[file.name] = now()
    return nil, true
  end)
  busted.subscribe({ "file", "end" }, function(file)
    if started[file.name] then
      io.write(string.format("# time: %s %.1f s\n", file.name, now() - started[file.name]))
      io.flush()
    end
    return nil, true
  end)
  return handler
end
