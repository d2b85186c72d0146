-- lua/pthcv/cli/lua.lua: `pthcv lua FILE.lua [args]` and `pthcv repl`, Lua
-- with pthcv loaded.
--
-- Both set the global `pthcv` (require "pthcv"), as do scripts that
-- `pthcv run --script` loads. A script gets its arguments as `...` and in
-- the global `arg` (arg[0] = FILE, as the lua interpreter does). The REPL
-- is lua/pthcv/cli/repl.lua.
local M = {}

-- The global `pthcv`, as `luajit -lpthcv` sets it.
function M.set_global()
  local pthcv = require "pthcv"
  rawset(_G, "pthcv", pthcv)
  return pthcv
end

-- The error with the script's part of the stack (pthcv's own errors,
-- "pthcv: ...", say enough without it).
local function traceback(e)
  if type(e) == "string" and e:sub(1, 7) == "pthcv: " then return e end
  local tb = debug.traceback(tostring(e), 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

-- Runs a user's Lua file with the global pthcv: chunk(...)'s results, or an
-- error that keeps the script's file, line and stack (runner.verbatim_error).
function M.run_file(file, ...)
  local runner = require "pthcv.cli.runner"
  local chunk, e = loadfile(file)
  if not chunk then error(runner.verbatim_error("pthcv: " .. tostring(e)), 0) end
  M.set_global()
  local args = { n = select("#", ...), ... }
  local r = { xpcall(function() return chunk(unpack(args, 1, args.n)) end, traceback) }
  if not r[1] then error(runner.verbatim_error(r[2]), 0) end
  return unpack(r, 2, table.maxn(r))
end

M.lua = {
  name = "lua", args = "FILE.lua [ARG...]", nargs = { 1 }, raw = true,
  synopsis = "lua FILE.lua [ARG...]",
  summary = "runs a Lua script with the global pthcv loaded (arguments in ... and arg)",
  run = function(args)
    local file = args[1]
    local script_args = {}
    for i = 2, #args do script_args[#script_args + 1] = args[i] end
    local a = { [0] = file }
    for i, v in ipairs(script_args) do a[i] = v end
    _G.arg = a
    local ok, e = pcall(M.run_file, file, unpack(script_args))
    io.stdout:flush()
    if not ok then error(e, 0) end
    return 0
  end,
}

M.repl = {
  name = "repl", nargs = { 0, 0 }, synopsis = "repl",
  summary = "an interactive Lua session with pthcv loaded (also: luajit -lpthcv)",
  run = function() return require("pthcv.cli.repl").run() end,
}

return M
