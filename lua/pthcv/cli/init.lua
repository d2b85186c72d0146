-- lua/pthcv/cli/init.lua: the `pthcv` command line (bin/pthcv is a thin front).
--
--   pthcv inspect FILE [--json] [--all]      pthcv scan FILE [--json]
--   pthcv convert FILE -o OUT ...            pthcv run|bench|models|export ...
--   pthcv detect|segment --model NAME --weights FILE (IMAGE... | --video FILE | --camera N)
--   pthcv lua FILE.lua [ARG...]              pthcv repl
--
-- Each command is a declaration (cli/runner.lua) in the file of its kind;
-- main(args) returns the exit status; errors go to stderr.
local runner = require "pthcv.cli.runner"

local M = {}

local function command_list()
  local read, run, lua = require "pthcv.cli.read", require "pthcv.cli.run", require "pthcv.cli.lua"
  return { read.inspect, read.scan, require("pthcv.cli.convert").command, run.run, run.bench, run.models,
           require("pthcv.cli.export").command, require("pthcv.cli.graph").command,
           require("pthcv.cli.quantize").command, require("pthcv.cli.detect").detect,
           require("pthcv.cli.detect").segment, lua.lua, lua.repl }
end

function M.usage()
  local parts = { "usage: pthcv <command> [options]    (pthcv <command> --help: the command's options)\n\ncommands:\n" }
  for _, c in ipairs(command_list()) do parts[#parts + 1] = runner.summary(c) end
  parts[#parts + 1] = [[
  help, --help     this text
  version, --version

limits (inspect, scan, convert, and --weights; see docs/security.md):
  --max-depth N  --max-memo N  --max-string BYTES  --max-pickle BYTES
  --max-values N  --max-total-bytes BYTES  --max-zip-entries N  --max-zip-ratio R
  --max-expanded-bytes BYTES
]]
  return table.concat(parts)
end

function M.main(args)
  local cmd = args[1]
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    if cmd == "help" and rest[1] then return M.main({ rest[1], "--help" }) end
    io.stdout:write(M.usage())
    return cmd == nil and 2 or 0
  end
  if cmd == "version" or cmd == "--version" then
    local ok, pthcv = pcall(require, "pthcv")
    if not ok then runner.err(pthcv); return 1 end
    io.stdout:write("pthcv ", pthcv.version, "\n")
    return 0
  end
  local names = {}
  for _, c in ipairs(command_list()) do
    if c.name == cmd then return runner.run(c, rest) end
    names[#names + 1] = c.name
  end
  runner.err("unknown command '" .. tostring(cmd) .. "'" .. runner.did_you_mean(runner.suggest(cmd, names), "")
             .. " (see pthcv --help)")
  return 2
end

return M
