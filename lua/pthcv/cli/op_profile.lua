-- lua/pthcv/cli/op_profile.lua: `pthcv bench --profile`'s time by kind of
-- kernel (csrc/kernels/profile.c), for tools/bench_models.py's split.
-- The same passes timed by kind of kernel (pthcv_profile_ops): where the
-- time goes across the whole model, whatever module runs the kernel; "rest"
-- is the pass's time outside every kernel (Lua, allocation). Each kind's
-- median over the passes (a busy machine's slow passes do not count). With
-- threads, two rows about the pool's jobs follow: the CPU time of their
-- chunks, and what that would take on idle cores (split evenly, or the
-- longest chunk): a busy machine's wall times say little about scaling,
-- these do.
return function(model, x, runs)
  local core = require "pthcv.core"
  local now = require "pthcv.nn.clock"
  local per, calls, totals, rests = {}, {}, {}, {}
  local function median(a)
    table.sort(a)
    local n = #a
    return n == 0 and 0 or n % 2 == 1 and a[(n + 1) / 2] or (a[n / 2] + a[n / 2 + 1]) / 2
  end
  for i = 1, runs do
    core.C.pthcv_profile_ops(1)
    local t = now()
    local ok, e = pcall(model, x)
    local total = (now() - t) * 1000
    core.C.pthcv_profile_ops(0)
    if not ok then error(e, 0) end
    local n = tonumber(core.C.pthcv_profile_ops_report(nil, 0))
    local buf = core.ffi.new("char[?]", n + 1)
    core.C.pthcv_profile_ops_report(buf, n + 1)
    local sum = 0
    for kind, ms, c in core.ffi.string(buf):gmatch("([^\t\n]+)\t([^\t]+)\t(%d+)\n") do
      per[kind] = per[kind] or {}
      per[kind][i] = tonumber(ms)
      calls[kind] = tonumber(c)
      if kind:sub(1, 1) ~= "[" then sum = sum + tonumber(ms) end   -- [pool ...]: not ops
    end
    totals[i], rests[i] = total, total - sum
  end
  local rows = {}
  for kind, list in pairs(per) do
    for i = 1, runs do list[i] = list[i] or 0 end
    rows[#rows + 1] = { kind = kind, ms = median(list), calls = calls[kind] }
  end
  -- the pool's rows ([...]) last
  table.sort(rows, function(a, b)
    local pa, pb = a.kind:sub(1, 1) == "[", b.kind:sub(1, 1) == "["
    if pa ~= pb then return pb end
    return a.ms > b.ms
  end)
  rows[#rows + 1] = { kind = "rest", ms = median(rests), calls = 0 }
  local total = median(totals)
  local lines = { string.format("%-40s %10s %6s", "op", "ms/pass", "calls") }
  for _, r in ipairs(rows) do lines[#lines + 1] = string.format("%-40s %10.3f %6d", r.kind, r.ms, r.calls) end
  lines[#lines + 1] = string.format("%-40s %10.3f", "total", total)
  return table.concat(lines, "\n") .. "\n"
end

