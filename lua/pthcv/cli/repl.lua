-- lua/pthcv/cli/repl.lua: `pthcv repl`, an interactive Lua session with the
-- globals pthcv and help. Expressions print their values (cli/show.lua:
-- tensors with their values, as torch prints them), an unfinished statement
-- continues on the next line, end of input (Ctrl-D) or `exit` leaves.
--
-- On a terminal, lines are read through GNU readline (libreadline.so.8,
-- Debian's libreadline8, through LuaJIT's FFI): editing and history. Without
-- it, or when the input is not a terminal, lines are read plainly.
local ffi = require "ffi"

local M = {}

pcall(ffi.cdef, [[
  int isatty(int fd);
  char *readline(const char *prompt);
  void add_history(const char *line);
  void free(void *p);
]])

local function stdin_is_terminal()
  local ok, r = pcall(function() return ffi.C.isatty(0) end)
  return ok and r == 1
end

-- A line reader: read(prompt) -> line or nil at end of input.
local function line_reader(tty)
  if tty and os.getenv("PTHCV_READLINE") ~= "0" then
    local ok, rl = pcall(ffi.load, "libreadline.so.8")
    if ok then
      return function(prompt)
        local p = rl.readline(prompt)
        if p == nil then return nil end
        local line = ffi.string(p)
        ffi.C.free(p)
        if line:match("%S") then rl.add_history(line) end
        return line
      end, true
    end
  end
  return function(prompt)
    if tty then io.stdout:write(prompt); io.stdout:flush() end
    return io.stdin:read("*l")
  end, false
end

function M.run()
  local err = require("pthcv.cli.runner").err
  local show = require "pthcv.cli.show"
  local pthcv = require("pthcv.cli.lua").set_global()
  rawset(_G, "help", show.help)
  local tty = stdin_is_terminal()
  local read, editing = line_reader(tty)
  if tty then
    io.stdout:write("pthcv ", pthcv.version, " on ", jit and jit.version or _VERSION,
                    editing and " (line editing: readline)" or "",
                    "; the global pthcv is loaded. help for help, Ctrl-D or exit to leave.\n")
    io.stdout:flush()
  end
  local buffer = nil
  while true do
    local line = read(buffer and ">> " or "pthcv> ")
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
          for i = 2, table.maxn(res) do
            local ok, s = pcall(show.show, res[i])
            parts[#parts + 1] = ok and s or tostring(res[i])
          end
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
