-- spec/doc_lua_runner.lua: runs one Lua block of the docs for spec/doc_spec.lua,
-- as `pthcv lua spec/doc_lua_runner.lua SOURCE CHUNKNAME RESULT`.
--
-- SOURCE holds the block (and the blocks it continues) at their lines of
-- the Markdown file, other lines blank, so that errors and debug.getinfo
-- give the file's line numbers under CHUNKNAME (`@docs/nn.md`). `print` and
-- `io.write` still write to stdout, and are also recorded with the line of
-- the block that was running (the call's line in the block itself, or the
-- block's line that called the function that printed). RESULT receives a
-- Lua chunk returning {out = {{line, text}, ...}, error = message or nil}.
local source_path, chunkname, result_path = ...

local f = assert(io.open(source_path, "rb"))
local source = f:read("*a")
f:close()

local records = {}
local chunk, load_error = loadstring(source, chunkname)

local function block_line()
  for level = 3, 200 do
    local info = debug.getinfo(level, "fl")
    if not info then return -1 end
    if info.func == chunk then return info.currentline end
  end
  return -1
end

local real_print, real_write = print, io.write
print = function(...)
  local n, parts = select("#", ...), {}
  for i = 1, n do parts[i] = tostring((select(i, ...))) end
  local text = table.concat(parts, "\t") .. "\n"
  records[#records + 1] = { block_line(), text }
  return real_print(...)
end
io.write = function(...)
  local parts = {}
  for i = 1, select("#", ...) do parts[i] = tostring((select(i, ...))) end
  records[#records + 1] = { block_line(), table.concat(parts) }
  return real_write(...)
end

local err
if chunk then
  local ok, e = xpcall(chunk, function(m)
    return debug.traceback(tostring(m), 2):gsub("\n%s*%[C%]: in function 'xpcall'.*$", "")
  end)
  if not ok then err = e end
else
  err = load_error
end
io.stdout:flush()

local out = { "return {out = {" }
for _, r in ipairs(records) do out[#out + 1] = string.format("{%d, %q},", r[1], r[2]) end
out[#out + 1] = "}, error = " .. (err and string.format("%q", tostring(err)) or "nil") .. "}\n"
local rf = assert(io.open(result_path, "wb"))
rf:write(table.concat(out, "\n"))
rf:close()
if err then
  io.stderr:write(tostring(err), "\n")
  os.exit(1)
end
