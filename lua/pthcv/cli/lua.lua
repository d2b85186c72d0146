-- lua/pthcv/cli/lua.lua: `pthcv lua FILE.lua [args]` and `pthcv repl`, Lua
-- with pthcv loaded (cli.lua dispatches here).
--
-- Both set the global `pthcv` (require "pthcv"). A script gets its arguments
-- as `...` and in the global `arg` (arg[0] = FILE, as the lua interpreter
-- does). The REPL prints the values of expressions, continues incomplete
-- statements on the next line, and ends at end of input (Ctrl-D) or `exit`.
local M = {}

M.usage = [[
  lua FILE.lua [ARG...]
      runs a Lua script with the global pthcv loaded (arguments in ... and arg)
  repl
      an interactive Lua session with pthcv loaded (also: luajit -lpthcv)
]]

-- The error with the script's part of the stack (pthcv's own errors,
-- "pthcv: ...", say enough without it).
local function traceback(e)
  if type(e) == "string" and e:sub(1, 7) == "pthcv: " then return e end
  local tb = debug.traceback(tostring(e), 2)
  return (tb:gsub("\n%s*%[C%]: in function 'xpcall'.*$", ""))
end

function M.lua(args, usage_error, err)
  local file = args[1]
  if not file then return usage_error("lua takes FILE.lua [ARG...]") end
  local script_args = {}
  for i = 2, #args do script_args[#script_args + 1] = args[i] end
  local chunk, e = loadfile(file)
  if not chunk then err(e); return 1 end
  _G.pthcv = require "pthcv"
  local a = { [0] = file }
  for i, v in ipairs(script_args) do a[i] = v end
  _G.arg = a
  local ok, msg = xpcall(function() return chunk(unpack(script_args)) end, traceback)
  io.stdout:flush()
  if not ok then err(msg); return 1 end
  return 0
end

-- Values as the REPL shows them: strings quoted, the rest through tostring
-- (Tensors and pthcv's containers print themselves).
local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  return tostring(v)
end

local function stdin_is_terminal()
  local ffi = require "ffi"
  pcall(ffi.cdef, "int isatty(int fd);")
  local ok, r = pcall(function() return ffi.C.isatty(0) end)
  return ok and r == 1
end

function M.repl(args, usage_error, err)
  if #args > 0 then return usage_error("repl takes no argument") end
  _G.pthcv = require "pthcv"
  local tty = stdin_is_terminal()
  if tty then
    io.stdout:write("pthcv ", _G.pthcv.version, " on ", jit and jit.version or _VERSION,
                    "; the global pthcv is loaded. Ctrl-D or exit to leave.\n")
  end
  local buffer = nil
  while true do
    if tty then io.stdout:write(buffer and ">> " or "pthcv> "); io.stdout:flush() end
    local line = io.stdin:read("*l")
    if line == nil then break end
    if not buffer and (line == "exit" or line == "quit") then break end
    local code = buffer and (buffer .. "\n" .. line) or line
    -- an expression first (its values are printed), else a statement
    local chunk, e = loadstring("return " .. code, "=stdin")
    if not chunk then chunk, e = loadstring(code, "=stdin") end
    if not chunk and e:match("<eof>") then
      buffer = code   -- incomplete: read on
    else
      buffer = nil
      if not chunk then
        err(e)
      else
        local res = { pcall(chunk) }
        if not res[1] then
          err(res[2])
        elseif #res > 1 or res[2] ~= nil then
          local parts = {}
          for i = 2, table.maxn(res) do parts[#parts + 1] = show(res[i]) end
          if #parts > 0 then io.stdout:write(table.concat(parts, "\t"), "\n") end
        end
      end
    end
    io.stdout:flush()
  end
  if buffer then err("incomplete statement at end of input"); return 1 end
  if tty then io.stdout:write("\n") end
  return 0
end

return M
