-- tools/busted-tap-timed.lua: busted's TAP output, plus one comment line
-- per spec file when it ends, "# time: spec/x_spec.lua 12 s" (wall
-- seconds), so tools/run-specs can list the slowest files: CI's time
-- budget is watched file by file.
-- pthcv's own monotonic clock: declaring clock_gettime here with another
-- struct would make pthcv's declaration of it fail in every spec after
local now = require "pthcv.nn.clock"

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
