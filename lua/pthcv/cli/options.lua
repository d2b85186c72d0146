-- lua/pthcv/cli/options.lua: option declarations several commands share
-- (see cli/runner.lua for the declaration format).
local M = {}

-- Reader limits (pthcv.load's opts; docs/security.md).
M.limits = {
  { "max-depth", kind = "natural", metavar = "N", help = "open MARKs / container nesting in a pickle", limit = true },
  { "max-memo", kind = "natural", metavar = "N", help = "pickle memo entries", limit = true },
  { "max-string", kind = "natural", metavar = "BYTES", help = "bytes of one string", limit = true },
  { "max-pickle", kind = "natural", metavar = "BYTES", help = "bytes of one pickle record", limit = true },
  { "max-values", kind = "natural", metavar = "N", help = "values built per file", limit = true },
  { "max-total-bytes", kind = "natural", metavar = "BYTES", help = "storage bytes per file", limit = true },
  { "max-zip-entries", kind = "natural", metavar = "N", help = "entries of a zip archive", limit = true },
  { "max-zip-ratio", kind = "natural", metavar = "R", help = "expansion of a deflated zip entry", limit = true },
  { "max-expanded-bytes", kind = "natural", metavar = "BYTES", help = "bytes views span beyond their storages",
    limit = true },
}

-- The opts table of pthcv.load/scan from the parsed options.
function M.limits_of(opt)
  local limits = {}
  for _, o in ipairs(M.limits) do
    if opt[o[1]] ~= nil then limits[o[1]:gsub("%-", "_")] = opt[o[1]] end
  end
  return limits
end

-- What builds a module: run, bench and export (cli/model.lua).
M.model = {
  { "model", kind = "string", metavar = "NAME", help = "a pthcv.models model (pthcv models lists them)" },
  { "script", kind = "string", metavar = "FILE.lua", help = "a Lua file returning a module (pthcv.nn)" },
  { "weights", kind = "string", metavar = "FILE",
    help = "the weights: .pth/.pt, .safetensors, .npz or OpenCV FileStorage\n(.yml/.yaml/.xml/.json, optionally .gz)" },
  { "init", kind = "choice", choices = { "zeros", "random" },
    help = "without --weights: zero weights, or seeded random ones (--seed)" },
  { "seed", kind = "natural", metavar = "N", help = "the seed of --init random and of random inputs (default 0)" },
  { "num-classes", kind = "count", metavar = "N", help = "the classifier's width (default: from the weights)" },
  { "verbose", short = "v", help = "every missing, unexpected and mismatched key when the weights do not fit" },
}

M.threads = { "threads", kind = "count", metavar = "N", help = "kernel threads (default: every CPU)" }
M.half = { "half", help = "float16 weights in memory (module:half()), float32 arithmetic" }

-- The concatenation of option lists and single options.
function M.list(...)
  local out = {}
  for _, x in ipairs { ... } do
    if type(x[1]) == "string" then out[#out + 1] = x
    else for _, o in ipairs(x) do out[#out + 1] = o end end
  end
  return out
end

return M
