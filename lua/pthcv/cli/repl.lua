-- lua/pthcv/cli/repl.lua: `pthcv repl`, an interactive Lua session with the
-- global pthcv. Expressions print their values, an unfinished statement
-- continues on the next line, end of input (Ctrl-D) or `exit` leaves.
local M = {}

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

function M.run()
  local err = require("pthcv.cli.runner").err
  local pthcv = require("pthcv.cli.lua").set_global()
  local tty = stdin_is_terminal()
  if tty then
    io.stdout:write("pthcv ", pthcv.version, " on ", jit and jit.version or _VERSION,
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
