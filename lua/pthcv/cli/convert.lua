-- lua/pthcv/cli/convert.lua: `pthcv convert`.
--
--   pthcv convert FILE -o OUT [--state-dict] [--dequantize] [--dtype D]
--   pthcv convert FILES... -o DIR [--to npz|safetensors|npy|...] [-j N] [options above]
--
-- One file: its tensors (or its model weights, --state-dict) written to OUT
-- in the format its extension names (pthcv.save), with a progress bar on a
-- terminal for long work. Several files, --to, -j or -o naming a folder: a
-- batch, each file converted by a child `pthcv convert FILE -o
-- DIR/<name>.<to>` with the same options, up to N at a time, so one bad (or
-- hostile) file cannot take the others down: the batch goes on, prints a
-- summary with each failure's message, and exits 1 if any failed.
local ffi = require "ffi"
local options = require "pthcv.cli.options"
local progress = require "pthcv.cli.progress"
local runner = require "pthcv.cli.runner"

local M = {}

pcall(ffi.cdef, "int usleep(unsigned int usec);")

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

-- ---- one file -------------------------------------------------------------------
-- NumPy has no dtype for these: .npz and .npy refuse them.
local NOT_NUMPY = { bfloat16 = true, float8_e4m3fn = true, float8_e5m2 = true, float8_e4m3fnuz = true,
                    float8_e5m2fnuz = true }

local function total_bytes(list)
  local n = 0
  for _, kv in ipairs(list) do n = n + kv[2].nbytes end
  return n
end

-- The tensors to write, {{name, tensor}, ...}, read, converted and checked.
local function prepare(path, out, opt, bar)
  local pthcv = require "pthcv"
  local sdmod = require "pthcv.reader.state_dict"
  local label = bar.label
  bar:loading(path)
  local root, info = pthcv.load(path, options.limits_of(opt))
  bar.label = label
  local list
  if opt["state-dict"] then
    list = require("pthcv.reader.odict").items(sdmod.state_dict(root, path))
  else
    list = pthcv.named_tensors(root, info)
  end
  if #list == 0 then error("pthcv: " .. path .. ": the file holds no tensor", 0) end
  local total, done = total_bytes(list), 0
  local half = require "pthcv.export.half"
  local dtype = opt.dtype or (opt.half and "float16")
  local seen = {}
  for i, kv in ipairs(list) do
    local name, t = kv[1], kv[2]
    bar:update(done, total, name)
    done = done + t.nbytes
    if seen[name] then error("pthcv: two tensors are named '" .. name .. "'", 0) end
    seen[name] = true
    if opt.dequantize and t.is_quantized then t = t:dequantize() end
    if dtype then t = half.cast(name, t, dtype) end
    t:data()   -- read now (the bar shows it), not inside the writer
    list[i] = { name, t }
  end
  local ext = out:lower():match("%.(%w+)$")
  if ext == "npz" or ext == "npy" then
    for _, kv in ipairs(list) do
      if NOT_NUMPY[kv[2].dtype] then
        error(string.format("pthcv: %s: tensor '%s' is %s, which NumPy has no dtype for: add --dtype float32, "
                            .. "or write .safetensors", out, kv[1], kv[2].dtype), 0)
      end
    end
  end
  return list
end

local function convert_one(path, out, opt)
  if opt.half and opt.dtype and opt.dtype ~= "float16" then
    error(runner.usage_error("--half means --dtype float16: give one of them"), 0)
  end
  local bar = progress.new("reading " .. path:match("[^/]*$"), { percent = true })
  local list = prepare(path, out, opt, bar)
  bar.label = "writing " .. out:match("[^/]*$")
  local ok, e = pcall(require("pthcv").save, out, list, {
    progress = function(done, total) bar:update(done, total) end,
  })
  bar:finish()
  if not ok then error(e, 0) end
  io.stdout:write(string.format("%s: %d tensors written\n", out, #list))
  return 0
end

-- ---- many files ---------------------------------------------------------------
-- files: the inputs; out_dir; to: the extension; jobs; forward: the option
-- strings every child gets ("--state-dict", "--max-depth=10", ...).
function M.batch(files, out_dir, to, jobs, forward)
  if to:sub(1, 1) == "." then to = to:sub(2) end
  if not to:match("^[%w%.]+$") then error(runner.usage_error("--to takes an extension such as npz or safetensors"), 0) end
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
  local bar = progress.new("", { delay = 0 })
  local running, next_job, done, failed = {}, 1, 0, 0
  local nrunning = 0

  local function start(i)
    local w = work[i]
    local log, status = tmp .. "/" .. i .. ".log", tmp .. "/" .. i .. ".status"
    w.log, w.status = log, status
    os.execute(string.format("( PTHCV_PROGRESS=0 %s convert %s -o %s %s >%s 2>&1 </dev/null; echo $? >%s.tmp; "
                             .. "mv %s.tmp %s ) &", cmd, q(w.input), q(w.output), opts, q(log), q(status), q(status),
                             q(status)))
    running[i] = true
    nrunning = nrunning + 1
  end

  bar:update(0, #work)
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
        bar.label = failed > 0 and string.format("(%d failed)", failed) or ""
        bar.last = 0
        bar:update(done, #work, w.input)
      end
    end
    if not finished then ffi.C.usleep(20000) end
  end
  if bar.shown then io.stderr:write("\n") end
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
  if failed > 0 then runner.err(string.format("%d of %d files failed", failed, #work)) end
  return failed > 0 and 1 or 0
end

-- Is this a batch? Several files, --to, -j, or -o naming a folder.
local function is_batch(pos, opt)
  if #pos > 1 or opt.to or opt.jobs then return true end
  local out = opt.output
  return out ~= nil and (out:sub(-1) == "/" or os.execute("test -d " .. q(out)) == 0)
end

local BATCH_ONLY = { output = true, to = true, jobs = true }

M.command = {
  name = "convert", args = "FILE -o OUT (or FILES... -o DIR)", nargs = { 1 },
  synopsis = "convert FILE -o OUT [--state-dict] [--dequantize] [--dtype D]\n"
             .. "convert FILES... -o DIR [--to EXT] [-j N] [the options above]",
  summary = [[
writes every tensor under its inspect name to OUT: .npz, .safetensors,
.npy (a file with one tensor), or OpenCV FileStorage .yml, .yaml, .xml,
.json (each optionally .gz; every tensor a cv::Mat, names in pthcv_names);
dtype and bytes kept unless --dtype; --state-dict writes only the model
weights, under state_dict names; --dequantize writes quantized tensors as
float32. Several files, --to, -j or -o naming a folder: each file to
DIR/<name>.<EXT> (default safetensors), N at a time, a progress bar on a
terminal; goes on past bad files, prints a summary and exits 1 if any failed]],
  options = options.list({
    { "output", short = "o", kind = "string", metavar = "OUT", help = "the output file (or folder: a batch)" },
    { "state-dict", help = "only the model weights, under their state_dict names" },
    { "dequantize", help = "quantized tensors as their float32 values" },
    { "dtype", kind = "choice", choices = { "float32", "float16", "bfloat16" },
      help = "floating tensors converted to this dtype (others kept);\nvalues beyond its range are refused" },
    { "half", help = "--dtype float16" },
    { "to", kind = "string", metavar = "EXT", help = "a batch: the output extension (default safetensors)" },
    { "jobs", short = "j", kind = "count", metavar = "N", help = "a batch: files converted at a time (default 1)" },
  }, options.limits),
  run = function(pos, opt)
    if not opt.output then error(runner.usage_error("convert takes FILE -o OUT (or FILES... -o DIR)"), 0) end
    if not is_batch(pos, opt) then return convert_one(pos[1], opt.output, opt) end
    local forward = {}
    for _, o in ipairs(M.command.options) do
      local v = opt[o[1]]
      if v ~= nil and not BATCH_ONLY[o[1]] then
        forward[#forward + 1] = o.kind == "flag" and ("--" .. o[1]) or q("--" .. o[1] .. "=" .. tostring(v))
      end
    end
    return M.batch(pos, (opt.output:gsub("/+$", "")), opt.to or "safetensors", opt.jobs or 1, forward)
  end,
}

return M
