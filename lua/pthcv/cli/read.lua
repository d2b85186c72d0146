-- lua/pthcv/cli/read.lua: `pthcv inspect` and `pthcv scan`, the commands
-- that read a file and report on it (lua/pthcv/reader/inspect.lua formats
-- inspect's report).
local options = require "pthcv.cli.options"

local M = {}

M.inspect = {
  name = "inspect", args = "FILE", nargs = { 1, 1 },
  synopsis = "inspect FILE [--json] [--all] [--ops]",
  summary = [[
the file's format, its object tree, every tensor (name, dtype, shape,
bytes) and the parameter and buffer counts; --json prints one JSON object
instead; --all shows every child in the tree (default: the first 40);
--ops: a TorchScript archive's operators and what pthcv lacks to run it
(exit status 0 runnable, 1 missing or refused, 2 unreadable)]],
  options = options.list({
    { "json", help = "one JSON object: tensors, counts and the file's other values" },
    { "all", help = "every child of every container in the tree (default: the first 40)" },
    { "ops", help = "a TorchScript archive's operators and what pthcv lacks (docs/torchscript.md)" },
  }, options.limits),
  run = function(pos, opt)
    if opt.ops then
      local ok, status, text = pcall(require("pthcv.jit.report").run, pos[1], options.limits_of(opt), opt.json)
      if not ok then require("pthcv.cli.runner").err(status); return 2 end
      io.stdout:write(text)
      return status
    end
    local inspect = require "pthcv.reader.inspect"
    local r = inspect.report(pos[1], options.limits_of(opt))
    io.stdout:write((opt.json and inspect.json or inspect.text)(r, { max_items = opt.all and 0 or nil }))
    return 0
  end,
}

-- scan's JSON object; keys in this order.
local scan_keys = { "file", "format", "safe", "name", "unsafe", "globals", "other_modules", "error" }

-- The modules of a file's globals that torch.load would import beyond
-- torch's, torchvision's, numpy's and the pickling helpers pthcv knows
-- (a model's own classes: `__main__`, a user's package): sorted, once each.
-- The deny list does not judge them; `scan` names them so the user can.
local known_roots = { torch = true, torchvision = true, numpy = true, collections = true, builtins = true,
                      __builtin__ = true, copyreg = true, copy_reg = true, _codecs = true, __torch__ = true }
local function other_modules(globals)
  local seen, list = {}, {}
  for _, g in ipairs(globals) do
    local module = g.name:match("^(.*)%.[^.]*$") or g.name
    local root = module:match("^[^.]*")
    if not g.unsafe and not known_roots[root] and not seen[module] then
      seen[module] = true
      list[#list + 1] = module
    end
  end
  table.sort(list)
  return list
end

local function scan_json(t)
  return require("dkjson").encode(t, { keyorder = scan_keys }) .. "\n"
end

M.scan = {
  name = "scan", args = "FILE", nargs = { 1, 1 },
  synopsis = "scan FILE [--json]",
  summary = [[
the globals the file references, without loading tensors;
exit status 0 safe, 1 unsafe, 2 unreadable]],
  help = [[
Lists the globals the file's pickles reference, without loading any tensor,
and says whether torch.load would run something dangerous.
Exit status: 0 safe, 1 unsafe, 2 unreadable (missing, not a torch file,
damaged). --json prints one JSON object in every case, with "error" when
the file cannot be read.]],
  options = options.list({ { "json", help = "one JSON object: file, format, safe, unsafe, globals (or error)" } },
                         options.limits),
  failure_status = 2,
  run = function(pos, opt)
    local pthcv = require "pthcv"
    local array = { __jsontype = "array" }
    local ok, r = pcall(pthcv.scan, pos[1], options.limits_of(opt))
    if not ok then
      if not opt.json then error(r, 0) end
      local msg = require("pthcv.cli.runner").clean(r):gsub("^pthcv: ", "")
      io.stdout:write(scan_json({ file = pos[1], safe = false, unsafe = setmetatable({}, array),
                                  globals = setmetatable({}, array), error = msg }))
      require("pthcv.cli.runner").err(msg)
      return 2
    end
    -- global names come from the file: escaped (issue 11.5), as valid
    -- UTF-8 for JSON (which escapes control characters itself)
    local esc = require("pthcv.core").escape
    local others = other_modules(r.globals)
    if opt.json then
      local text = require("pthcv.reader.inspect_modules").utf8_text
      local globals, unsafe = {}, {}
      for _, g in ipairs(r.globals) do globals[#globals + 1] = { name = text(g.name), unsafe = g.unsafe } end
      for i, name in ipairs(r.unsafe) do unsafe[i] = text(name) end
      local other = {}
      for i, m in ipairs(others) do other[i] = text(m) end
      io.stdout:write(scan_json({ file = r.path, format = r.format, safe = r.safe,
                                  unsafe = setmetatable(unsafe, array), globals = setmetatable(globals, array),
                                  other_modules = setmetatable(other, array) }))
    else
      io.stdout:write("file: ", r.path, "\n", "format: ", r.format, "\n")
      io.stdout:write("globals (", #r.globals, "):\n")
      for _, g in ipairs(r.globals) do
        io.stdout:write("  ", esc(g.name), g.unsafe and "  UNSAFE" or "", "\n")
      end
      if r.safe and #others > 0 then
        for i, m in ipairs(others) do others[i] = esc(m) end
        io.stdout:write("verdict: safe (no dangerous global); ", #others == 1 and "a module" or "modules",
                        " outside torch, numpy and Python's pickling helpers: ", table.concat(others, ", "),
                        " (pthcv never imports ", #others == 1 and "it" or "them", "; torch.load would)\n")
      elseif r.safe then
        io.stdout:write("verdict: safe (no dangerous global)\n")
      else
        local names = {}
        for i, name in ipairs(r.unsafe) do names[i] = esc(name) end
        io.stdout:write("verdict: UNSAFE: references ", table.concat(names, ", "), "\n")
      end
    end
    return r.safe and 0 or 1
  end,
}

return M
