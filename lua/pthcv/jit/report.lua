-- lua/pthcv/jit/report.lua: `pthcv inspect --ops FILE.pt`, the operators
-- a TorchScript archive uses and what pthcv lacks (pthcv.jit.ops_report),
-- as text or JSON.
--
--   local report = require "pthcv.jit.report"
--   local status, text = report.run("model.pt", limits, false)
--   -- status 0: pthcv runs it; 1: something is missing or refused
local jit = require "pthcv.jit"

local M = {}

function M.text(r)
  local lines = {}
  local width = 0
  for _, op in ipairs(r.ops) do width = math.max(width, #op.name) end
  lines[1] = string.format("%s: TorchScript, %d operators, %d missing, %d problems", r.path, #r.ops, #r.missing,
                           #r.problems)
  for _, op in ipairs(r.ops) do
    lines[#lines + 1] = string.format("  %-" .. width .. "s %5d  %s%s", op.name, op.count, op.loc,
                                      op.supported and "" or "  MISSING")
  end
  if #r.problems > 0 then
    lines[#lines + 1] = "refused at load:"
    for _, p in ipairs(r.problems) do lines[#lines + 1] = "  " .. p.loc .. ": " .. p.msg end
  end
  if #r.deferred > 0 then
    lines[#lines + 1] = "in branches of torch's functional library (raised only if they run):"
    for _, p in ipairs(r.deferred) do lines[#lines + 1] = "  " .. p.loc .. ": " .. p.msg end
  end
  return table.concat(lines, "\n") .. "\n"
end

function M.json(r)
  local dkjson = require "dkjson"
  local ops = {}
  for i, op in ipairs(r.ops) do ops[i] = { name = op.name, count = op.count, supported = op.supported, loc = op.loc } end
  local function plain(list)
    local out = {}
    for i, p in ipairs(list) do out[i] = { loc = p.loc, message = p.msg } end
    return out
  end
  return dkjson.encode({ path = r.path, ops = ops, missing = r.missing, problems = plain(r.problems),
                         deferred = plain(r.deferred) }, { indent = true }) .. "\n"
end

-- The listing of path: status (0 runnable, 1 missing or refused) and text.
function M.run(path, opts, as_json)
  local r = jit.ops_report(path, opts)
  local text = as_json and M.json(r) or M.text(r)
  return (#r.problems == 0) and 0 or 1, text
end

return M
