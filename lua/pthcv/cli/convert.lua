-- lua/pthcv/cli/convert.lua: batch conversion (cli.lua's convert hands over
-- when it gets several files, --to or -j):
--
--   pthcv convert FILES... -o DIR [--to npz|safetensors|npy|...] [-j N] [convert's other options]
--
-- Each file is converted by a child `pthcv convert FILE -o DIR/<name>.<to>`
-- with the same options, up to N at a time, so one bad (or hostile) file
-- cannot take the others down: the batch goes on, prints a summary with
-- each failure's message, and exits 1 if any failed. On a terminal a
-- progress bar runs on stderr.
local ffi = require "ffi"

local M = {}

pcall(ffi.cdef, "int isatty(int fd); int usleep(unsigned int usec);")

local function q(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local function read_file(p)
  local f = io.open(p, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

-- The command that runs this pthcv again: the interpreter, its options (a
-- LuaRocks wrapper passes -e code) and the script, as this process got them.
local function self_command()
  local a = rawget(_G, "arg") or {}
  if not a[0] then error("pthcv: cannot tell how pthcv was started (no arg[0])", 0) end
  local first = 0
  while a[first - 1] do first = first - 1 end
  local parts = {}
  for i = first, 0 do parts[#parts + 1] = q(a[i]) end
  if first == 0 then table.insert(parts, 1, "luajit") end
  return table.concat(parts, " ")
end

-- "dir/model.best.pth" -> "model.best"
local function stem(path)
  local base = path:match("([^/]*)$")
  return (base:gsub("%.pth%.tar$", ""):gsub("%.[%w]+$", ""))
end

local function progress(done, total, name, failed)
  local width = 30
  local fill = total > 0 and math.floor(width * done / total) or width
  local line = string.format("\r[%s%s] %d/%d%s  %s", string.rep("#", fill), string.rep(".", width - fill), done, total,
                             failed > 0 and string.format(" (%d failed)", failed) or "", name or "")
  if #line > 100 then line = line:sub(1, 100) end
  io.stderr:write(line, "\27[K")
  io.stderr:flush()
end

-- files: the inputs; out_dir; to: the extension; jobs; forward: the option
-- strings every child gets ("--state-dict", "--max-depth=10", ...).
function M.batch(files, out_dir, to, jobs, forward, err)
  if to:sub(1, 1) == "." then to = to:sub(2) end
  if not to:match("^[%w%.]+$") then error("pthcv: --to takes an extension such as npz or safetensors", 0) end
  if os.execute("mkdir -p " .. q(out_dir)) ~= 0 then error("pthcv: cannot create the folder " .. out_dir, 0) end
  local work = {}
  local seen = {}
  for i, f in ipairs(files) do
    local out = out_dir .. "/" .. stem(f) .. "." .. to
    if seen[out] then
      error(string.format("pthcv: %s and %s would both be written to %s", seen[out], f, out), 0)
    end
    seen[out] = f
    work[i] = { input = f, output = out }
  end

  local tmp = os.tmpname()
  os.remove(tmp)
  os.execute("mkdir -p " .. q(tmp))
  local cmd = self_command()
  local opts = table.concat(forward, " ")
  local tty = ffi.C.isatty(2) == 1
  local running, next_job, done, failed = {}, 1, 0, 0
  local nrunning = 0

  local function start(i)
    local w = work[i]
    local log, status = tmp .. "/" .. i .. ".log", tmp .. "/" .. i .. ".status"
    w.log, w.status = log, status
    os.execute(string.format("( %s convert %s -o %s %s >%s 2>&1 </dev/null; echo $? >%s.tmp; mv %s.tmp %s ) &",
                             cmd, q(w.input), q(w.output), opts, q(log), q(status), q(status), q(status)))
    running[i] = true
    nrunning = nrunning + 1
  end

  if tty then progress(0, #work, "", 0) end
  while done < #work do
    while nrunning < jobs and next_job <= #work do
      start(next_job)
      next_job = next_job + 1
    end
    local finished = false
    for i in pairs(running) do
      local s = read_file(work[i].status)
      if s then
        local w = work[i]
        w.code = tonumber(s:match("%d+")) or 1
        w.message = (read_file(w.log) or ""):gsub("%s+$", "")
        running[i], nrunning, done, finished = nil, nrunning - 1, done + 1, true
        if w.code ~= 0 then failed = failed + 1 end
        if tty then progress(done, #work, w.input, failed) end
      end
    end
    if not finished then ffi.C.usleep(20000) end
  end
  if tty then io.stderr:write("\n") end
  os.execute("rm -rf " .. q(tmp))

  for _, w in ipairs(work) do
    if w.code == 0 then
      io.stdout:write("ok      ", w.input, " -> ", w.output, "\n")
    else
      local msg = w.message ~= "" and w.message or ("exit status " .. w.code)
      io.stdout:write("FAILED  ", w.input, ": ", (msg:gsub("^pthcv: ", ""):gsub("\n", "\n        ")), "\n")
    end
  end
  io.stdout:write(string.format("converted %d of %d files into %s (%d failed)\n", #work - failed, #work, out_dir,
                                failed))
  if failed > 0 then err(string.format("%d of %d files failed", failed, #work)) end
  return failed > 0 and 1 or 0
end

-- Is this a batch? Several files, --to, -j, or -o naming a folder.
function M.wanted(pos, opt)
  if #pos > 1 or opt.to or opt.j or opt.jobs then return true end
  local out = opt.o or opt.output
  return out ~= nil and (out:sub(-1) == "/" or os.execute("test -d " .. q(out)) == 0)
end

-- Runs the batch from convert's parsed options; spec: convert's option table.
function M.run(pos, opt, spec, usage_error, err)
  local out = opt.o or opt.output
  if #pos == 0 or not out then return usage_error("convert takes FILES... -o DIR") end
  local jobs = tonumber(opt.j or opt.jobs or "1")
  if not jobs or jobs < 1 or jobs % 1 ~= 0 then return usage_error("-j needs a positive integer") end
  local forward = {}
  local skip = { o = true, output = true, to = true, j = true, jobs = true }
  local names = {}
  for k in pairs(opt) do if not skip[k] then names[#names + 1] = k end end
  table.sort(names)
  for _, k in ipairs(names) do
    if spec[k] == "bool" then forward[#forward + 1] = "--" .. k
    else forward[#forward + 1] = q("--" .. k .. "=" .. opt[k]) end
  end
  return M.batch(pos, (out:gsub("/+$", "")), opt.to or "safetensors", jobs, forward, err)
end

return M
