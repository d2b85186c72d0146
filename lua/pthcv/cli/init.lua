-- lua/pthcv/cli/init.lua: the `pthcv` command line (bin/pthcv is a thin front).
--
--   pthcv inspect FILE [--json] [--all]
--   pthcv scan FILE [--json]            exit 0 safe, 1 unsafe, 2 unreadable
--   pthcv convert FILE -o OUT.npz|OUT.safetensors|OUT.npy [--state-dict]
--   pthcv run|bench|models              inference (cli/run.lua)
--   pthcv export ... -o OUT.onnx         ONNX for cv::dnn (cli/export.lua)
--
-- main(args) returns the exit status; errors go to stderr.
local M = {}

M.usage = [[
usage: pthcv <command> [options]

commands:
  inspect FILE [--json] [--all]
      the file's format, its object tree, every tensor (name, dtype, shape,
      bytes) and the parameter count; --json prints one JSON object instead;
      --all shows every child in the tree (default: the first 40)
  inspect FILE.pt --ops [--json]
      a TorchScript archive's operators (count, first use) and what pthcv
      lacks to run it (docs/torchscript.md); exit status 0 runnable,
      1 missing operators or refused code, 2 unreadable
  scan FILE [--json]
      the globals the file references, without loading tensors;
      exit status 0 safe, 1 unsafe, 2 unreadable
  convert FILE -o OUT [--state-dict] [--dequantize] [--half]
      writes every tensor under its inspect name to OUT.npz or
      OUT.safetensors (OUT.npy: a file with one tensor); dtype and bytes
      kept; --state-dict writes only the model weights, under state_dict
      names; --dequantize writes quantized tensors as float32
      OUT.yml, .yaml, .xml, .json (each optionally .gz): OpenCV FileStorage,
      every tensor a cv::Mat, key names listed in pthcv_names
      --half: floating tensors stored as float16
  convert FILES... -o DIR [--to npz|safetensors|...] [-j N] [options above]
      converts each file to DIR/<name>.<to> (default safetensors), N at a time,
      with a progress bar on a terminal; goes on past bad files, prints a
      summary and exits 1 if any failed
]] .. require("pthcv.cli.run").usage .. require("pthcv.cli.export").usage .. require("pthcv.cli.lua").usage .. [[
  help, --help     this text
  version, --version

limits (inspect, scan, convert; see docs/security.md):
  --max-depth N  --max-memo N  --max-string BYTES  --max-pickle BYTES
  --max-values N  --max-total-bytes BYTES  --max-zip-entries N  --max-zip-ratio R
  --max-expanded-bytes BYTES
]]

-- Reader limits every reading command accepts, as pthcv.load's opts.
local limit_flags = { "max-depth", "max-memo", "max-string", "max-pickle", "max-values",
                      "max-total-bytes", "max-zip-entries", "max-zip-ratio", "max-expanded-bytes" }

local function with_limits(spec)
  for _, f in ipairs(limit_flags) do spec[f] = "value" end
  return spec
end

-- The opts table for pthcv.load/scan, or nil and an error.
local function limits_of(opt)
  local limits
  for _, f in ipairs(limit_flags) do
    if opt[f] ~= nil then
      local n = tonumber(opt[f])
      if not n or n < 0 or n ~= math.floor(n) then return nil, "--" .. f .. " needs a non-negative integer" end
      limits = limits or {}
      limits[f:gsub("%-", "_")] = n
    end
  end
  return limits or {}
end

local function parse(args, spec)
  -- spec: {flag = "bool"|"value"}; returns positional list, options table or nil, error
  local pos, opt = {}, {}
  local i = 1
  while i <= #args do
    local a = args[i]
    if a == "--" then
      for j = i + 1, #args do pos[#pos + 1] = args[j] end
      break
    elseif a:sub(1, 1) == "-" and #a > 1 then
      local name, value = a:match("^%-%-?([%w%-]+)=(.*)$")
      name = name or a:match("^%-%-?([%w%-]+)$")
      local kind = name and spec[name]
      if not kind then return nil, nil, "unknown option " .. a end
      if kind == "value" then
        if value == nil then
          i = i + 1
          value = args[i]
          if value == nil then return nil, nil, "option " .. a .. " needs a value" end
        end
        opt[name] = value
      else
        if value ~= nil then return nil, nil, "option " .. a .. " takes no value" end
        opt[name] = true
      end
    else
      pos[#pos + 1] = a
    end
    i = i + 1
  end
  return pos, opt
end

local function err(msg)
  msg = tostring(msg)
  if msg:sub(1, 7) ~= "pthcv: " then msg = "pthcv: " .. msg end
  io.stderr:write(msg, "\n")
end

local function usage_error(msg)
  err(msg .. " (see pthcv --help)")
  return 2
end

local commands = {}

function commands.inspect(args)
  local pos, opt, e = parse(args, with_limits { json = "bool", all = "bool", ops = "bool" })
  if not pos then return usage_error(e) end
  if #pos ~= 1 then return usage_error("inspect takes one FILE") end
  local limits, le = limits_of(opt)
  if not limits then return usage_error(le) end
  if opt.ops then
    local ok, status, text = pcall(require("pthcv.jit.report").run, pos[1], limits, opt.json)
    if not ok then err(status); return 2 end
    io.stdout:write(text)
    return status
  end
  local inspect = require "pthcv.reader.inspect"
  local ok, r = pcall(inspect.report, pos[1], limits)
  if not ok then err(r); return 1 end
  local ok2, text = pcall(opt.json and inspect.json or inspect.text, r, { max_items = opt.all and 0 or nil })
  if not ok2 then err(text); return 1 end
  io.stdout:write(text)
  return 0
end

function commands.scan(args)
  local pos, opt, e = parse(args, with_limits { json = "bool" })
  if not pos then return usage_error(e) end
  if #pos ~= 1 then return usage_error("scan takes one FILE") end
  local limits, le = limits_of(opt)
  if not limits then return usage_error(le) end
  local pthcv = require "pthcv"
  local ok, r = pcall(pthcv.scan, pos[1], limits)
  if not ok then err(r); return 2 end
  if opt.json then
    local json = require "dkjson"
    local globals = {}
    for _, g in ipairs(r.globals) do globals[#globals + 1] = { name = g.name, unsafe = g.unsafe } end
    setmetatable(globals, { __jsontype = "array" })
    setmetatable(r.unsafe, { __jsontype = "array" })
    io.stdout:write(json.encode({ file = r.path, format = r.format, safe = r.safe,
                                  unsafe = r.unsafe, globals = globals },
                                { keyorder = { "file", "format", "safe", "name", "unsafe", "globals" } }), "\n")
  else
    io.stdout:write("file: ", r.path, "\n", "format: ", r.format, "\n")
    io.stdout:write("globals (", #r.globals, "):\n")
    for _, g in ipairs(r.globals) do
      io.stdout:write("  ", g.name, g.unsafe and "  UNSAFE" or "", "\n")
    end
    if r.safe then
      io.stdout:write("verdict: safe (no dangerous global)\n")
    else
      io.stdout:write("verdict: UNSAFE: references ", table.concat(r.unsafe, ", "), "\n")
    end
  end
  return r.safe and 0 or 1
end

function commands.convert(args)
  local spec = with_limits { o = "value", output = "value", ["state-dict"] = "bool",
                             dequantize = "bool", to = "value", j = "value", jobs = "value", half = "bool" }
  local pos, opt, e = parse(args, spec)
  if not pos then return usage_error(e) end
  -- several files, --to, -j or -o DIR: a batch of child conversions (cli/convert.lua)
  local batch = require "pthcv.cli.convert"
  if batch.wanted(pos, opt) then return batch.run(pos, opt, spec, usage_error, err) end
  local out = opt.o or opt.output
  if #pos ~= 1 or not out then return usage_error("convert takes FILE -o OUT") end
  local limits, le = limits_of(opt)
  if not limits then return usage_error(le) end
  local pthcv = require "pthcv"
  local ok, msg = pcall(function()
    local root, info = pthcv.load(pos[1], limits)
    local list
    if opt["state-dict"] then
      list = {}
      for k, v in pairs(pthcv.state_dict(root, pos[1])) do list[#list + 1] = { k, v } end
    else
      list = pthcv.named_tensors(root, info)
    end
    if #list == 0 then error("pthcv: " .. pos[1] .. ": the file holds no tensor", 0) end
    local seen = {}
    for i, kv in ipairs(list) do
      if opt.dequantize and kv[2].is_quantized then
        kv = { kv[1], kv[2]:dequantize() }
        list[i] = kv
      end
      if opt.half then -- floating weights as float16
        kv = { kv[1], require("pthcv.export.half").to_half(kv[1], kv[2]) }
        list[i] = kv
      end
      if seen[kv[1]] then error("pthcv: two tensors are named '" .. kv[1] .. "'", 0) end
      seen[kv[1]] = true
    end
    pthcv.save(out, list)
    return string.format("%s: %d tensors written", out, #list)
  end)
  if not ok then err(msg); return 1 end
  io.stdout:write(msg, "\n")
  return 0
end

-- inference: run, bench, models (lua/pthcv/cli/run.lua)
function commands.run(args) return require("pthcv.cli.run").run(args, parse, usage_error, err) end
function commands.bench(args) return require("pthcv.cli.run").bench(args, parse, usage_error, err) end
function commands.models() return require("pthcv.cli.run").models() end
-- ONNX for OpenCV's cv::dnn (lua/pthcv/cli/export.lua)
function commands.export(args) return require("pthcv.cli.export").export(args, parse, usage_error, err) end
-- Lua with pthcv loaded: lua FILE.lua [args], repl (lua/pthcv/cli/lua.lua)
function commands.lua(args) return require("pthcv.cli.lua").lua(args, usage_error, err) end
function commands.repl(args) return require("pthcv.cli.lua").repl(args, usage_error, err) end

function M.main(args)
  local cmd = args[1]
  local rest = {}
  for i = 2, #args do rest[#rest + 1] = args[i] end
  if cmd == nil or cmd == "help" or cmd == "--help" or cmd == "-h" then
    io.stdout:write(M.usage)
    return cmd == nil and 2 or 0
  end
  if cmd == "version" or cmd == "--version" then
    local ok, pthcv = pcall(require, "pthcv")
    if not ok then err(pthcv); return 1 end
    io.stdout:write("pthcv ", pthcv.version, "\n")
    return 0
  end
  local f = commands[cmd]
  if not f then return usage_error("unknown command '" .. tostring(cmd) .. "'") end
  local ok, status = pcall(f, rest)
  if not ok then err(status); return cmd == "scan" and 2 or 1 end
  return status
end

return M
