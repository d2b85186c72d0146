-- lua/pthcv/cli/run.lua: the inference commands of the CLI (cli.lua
-- dispatches here):
--
--   pthcv run   (--model NAME | --script FILE.lua) [--weights FILE] --input X.npy
--               --output Y.npy [--threads N] [--num-classes N]
--   pthcv bench (--model NAME | --script FILE.lua) [--weights FILE] [--input X.npy |
--               --shape 1x3x224x224] [--threads N] [--runs N] [--profile]
--
-- A script is a Lua file returning a module (built with pthcv.nn); the
-- weights, when given, are loaded with load_state_dict (strict).
local M = {}

M.usage = [[
  run (--model NAME | --script FILE.lua) [--weights FILE] --input X.npy --output Y.npy
      [--threads N] [--num-classes N]
      one forward pass of a pthcv.models model (or of the module a Lua
      script returns) on the tensor in X.npy; the result is written to Y.npy
  run (--model NAME | --script FILE.lua) --weights FILE IMAGE... [--size N] [--resize N]
      [--crop] [--mean a,b,c] [--std a,b,c] [--topk K] [--labels FILE] [--json]
      classifies images: the top-K classes (default 5) with probabilities;
      ImageNet's normalisation by default; --resize N: shorter side to N, then a
      centre crop of --size (default 224); --json: one JSON object per image
  bench (--model NAME | --script FILE.lua) [--weights FILE] [--input X.npy |
      --shape 1x3x224x224] [--threads N] [--runs N] [--profile]
      times forward passes after a warm-up and prints median_ms=<ms>;
      --profile adds each module's inclusive time per pass
  models      the names --model accepts
]]

local OPTS = { model = "value", script = "value", weights = "value", input = "value", output = "value",
               o = "value", threads = "value", ["num-classes"] = "value", runs = "value", profile = "bool",
               shape = "value", warmup = "value",
               -- run IMAGE...: classification (lua/pthcv/image/classify.lua)
               size = "value", resize = "value", crop = "bool", mean = "value", std = "value",
               topk = "value", labels = "value", json = "bool", interpolation = "value" }

local function positive_int(v, what)
  local n = tonumber(v)
  if not n or n < 1 or n % 1 ~= 0 then error("pthcv: " .. what .. " must be a positive integer, got " .. tostring(v), 0) end
  return n
end

-- The classifier width of a torchvision state_dict: its last weight's first
-- dimension (fc, classifier.6, classifier.1 of SqueezeNet, ...).
local function num_classes_of(sd)
  local last
  for k, t in pairs(sd) do if k:match("weight$") then last = t end end
  return last and last.shape[1] or nil
end
M.num_classes_of = num_classes_of

-- The module the options describe, with its weights loaded, in eval mode.
local function build(opt)
  local pthcv = require "pthcv"
  local sd = opt.weights and pthcv.state_dict(opt.weights)
  local m
  if opt.model and opt.script then error("pthcv: give --model or --script, not both", 0) end
  if opt.model then
    local nc = opt["num-classes"] and positive_int(opt["num-classes"], "--num-classes") or (sd and num_classes_of(sd))
    m = pthcv.models.get(opt.model, { num_classes = nc })
  elseif opt.script then
    local chunk, e = loadfile(opt.script)
    if not chunk then error("pthcv: " .. tostring(e), 0) end
    m = chunk(opt.script)
    if not pthcv.nn.is_module(m) then error("pthcv: " .. opt.script .. " must return a module (pthcv.nn)", 0) end
  else
    error("pthcv: --model NAME or --script FILE.lua is needed", 0)
  end
  if sd then m:load_state_dict(sd) end
  m:eval()
  return m
end
M.build = build   -- pthcv export builds its module the same way

local function set_threads(opt)
  if opt.threads then require("pthcv").set_num_threads(positive_int(opt.threads, "--threads")) end
end

local function input_of(opt, default_shape)
  local pthcv = require "pthcv"
  if opt.input then
    local x = pthcv.load_npy(opt.input)
    if x.dtype ~= "float32" then x = x:float() end
    return x
  end
  local shape = {}
  for n in (opt.shape or default_shape):gmatch("%d+") do shape[#shape + 1] = tonumber(n) end
  return pthcv.randn(shape, { seed = 0 })
end

-- "a,b,c" -> {a, b, c}
local function numbers(v, what)
  local list = {}
  for part in tostring(v):gmatch("[^,]+") do
    local n = tonumber(part)
    if not n then error("pthcv: " .. what .. " takes numbers separated by commas, got " .. tostring(v), 0) end
    list[#list + 1] = n
  end
  if #list == 0 then error("pthcv: " .. what .. " needs numbers", 0) end
  return list
end

-- run IMAGE...: the top-k classes of each image.
local function classify_images(images, opt, err)
  local classify = require "pthcv.image.classify"
  local json = opt.json and require "dkjson"
  local ok, msg = pcall(function()
    set_threads(opt)
    if not opt.weights then error("pthcv: classifying images needs --weights FILE", 0) end
    local copts = {
      size = opt.size and positive_int(opt.size, "--size"),
      resize = opt.resize and positive_int(opt.resize, "--resize"),
      crop = opt.crop or nil,
      mean = opt.mean and numbers(opt.mean, "--mean"), std = opt.std and numbers(opt.std, "--std"),
      topk = opt.topk and positive_int(opt.topk, "--topk") or 5,
      interpolation = opt.interpolation, labels = opt.labels,
    }
    local m = build(opt)
    for _, path in ipairs(images) do
      local r = classify.image(m, path, copts)
      if json then
        local top = {}
        for i, c in ipairs(r.top) do top[i] = { index = c.index, label = c.label, prob = c.prob } end
        io.stdout:write(json.encode({ image = path, top = top },
                                    { keyorder = { "image", "top", "index", "label", "prob" } }), "\n")
      else
        io.stdout:write(path, "\n")
        for _, c in ipairs(r.top) do
          io.stdout:write(string.format("  %.4f  %s (%d)\n", c.prob, c.label, c.index))
        end
      end
    end
  end)
  if not ok then err(msg); return 1 end
  return 0
end

function M.run(args, parse, usage_error, err)
  local pos, opt, e = parse(args, OPTS)
  if not pos then return usage_error(e) end
  if #pos > 0 then
    if opt.input or opt.output or opt.o then return usage_error("run takes IMAGE... or --input/--output, not both") end
    return classify_images(pos, opt, err)
  end
  local out = opt.output or opt.o
  if not opt.input or not out then return usage_error("run needs --input X.npy and --output Y.npy") end
  local ok, msg = pcall(function()
    set_threads(opt)
    local m = build(opt)
    local y = m(input_of(opt))
    if type(y) == "table" and not require("pthcv").is_tensor(y) then y = y[1] end
    require("pthcv").save(out, y)
    return string.format("%s: %s [%s]", out, y.dtype, table.concat(y.shape, ", "))
  end)
  if not ok then err(msg); return 1 end
  io.stdout:write(msg, "\n")
  return 0
end

-- Per-module inclusive times, by the module's path in the tree.
local function profiler(model)
  local now = require "pthcv.nn.clock"
  local paths, order = {}, {}
  for i, kv in ipairs(model:named_modules()) do
    paths[kv[2]] = kv[1] == "" and "(model)" or kv[1]
    order[kv[2]] = i
  end
  local rows = {}
  local p = { now = now }
  function p.record(mod, dt, label)
    local key = (paths[mod] or "?") .. (label or "")
    local r = rows[key]
    if not r then
      r = { path = key, type = mod:repr_name() .. (label or ""), ms = 0, calls = 0, order = order[mod] or 1e9,
            fused = label ~= nil }
      rows[key] = r
    end
    r.ms, r.calls = r.ms + dt * 1000, r.calls + 1
  end
  function p.report(runs)
    local list = {}
    for _, r in pairs(rows) do list[#list + 1] = r end
    table.sort(list, function(a, b) if a.order ~= b.order then return a.order < b.order end return a.path < b.path end)
    local lines = { string.format("%-40s %-28s %10s %6s", "module", "type", "ms/pass", "calls") }
    for _, r in ipairs(list) do
      lines[#lines + 1] = string.format("%-40s %-28s %10.3f %6d", r.path, r.type, r.ms / runs, r.calls / runs)
    end
    return table.concat(lines, "\n") .. "\n"
  end
  return p
end

-- The same passes timed by kind of kernel (pthcv_profile_ops): where the
-- time goes across the whole model, whatever module runs the kernel; "rest"
-- is the pass's time outside every kernel (Lua, allocation). Each kind's
-- median over the passes (a busy machine's slow passes do not count).
local function op_profile(model, x, runs)
  local core = require "pthcv.core"
  local now = require "pthcv.nn.clock"
  local per, calls, totals, rests = {}, {}, {}, {}
  local function median(a)
    table.sort(a)
    local n = #a
    return n == 0 and 0 or n % 2 == 1 and a[(n + 1) / 2] or (a[n / 2] + a[n / 2 + 1]) / 2
  end
  for i = 1, runs do
    core.C.pthcv_profile_ops(1)
    local t = now()
    local ok, e = pcall(model, x)
    local total = (now() - t) * 1000
    core.C.pthcv_profile_ops(0)
    if not ok then error(e, 0) end
    local n = tonumber(core.C.pthcv_profile_ops_report(nil, 0))
    local buf = core.ffi.new("char[?]", n + 1)
    core.C.pthcv_profile_ops_report(buf, n + 1)
    local sum = 0
    for kind, ms, c in core.ffi.string(buf):gmatch("([^\t\n]+)\t([^\t]+)\t(%d+)\n") do
      per[kind] = per[kind] or {}
      per[kind][i] = tonumber(ms)
      calls[kind] = tonumber(c)
      sum = sum + tonumber(ms)
    end
    totals[i], rests[i] = total, total - sum
  end
  local rows = {}
  for kind, list in pairs(per) do
    for i = 1, runs do list[i] = list[i] or 0 end
    rows[#rows + 1] = { kind = kind, ms = median(list), calls = calls[kind] }
  end
  table.sort(rows, function(a, b) return a.ms > b.ms end)
  rows[#rows + 1] = { kind = "rest", ms = median(rests), calls = 0 }
  local total = median(totals)
  local lines = { string.format("%-40s %10s %6s", "op", "ms/pass", "calls") }
  for _, r in ipairs(rows) do lines[#lines + 1] = string.format("%-40s %10.3f %6d", r.kind, r.ms, r.calls) end
  lines[#lines + 1] = string.format("%-40s %10.3f", "total", total)
  return table.concat(lines, "\n") .. "\n"
end

function M.bench(args, parse, usage_error, err)
  local pos, opt, e = parse(args, OPTS)
  if not pos then return usage_error(e) end
  if #pos > 0 then return usage_error("bench takes no positional argument") end
  local ok, msg = pcall(function()
    local pthcv = require "pthcv"
    local base = require "pthcv.nn.module"
    local now = require "pthcv.nn.clock"
    set_threads(opt)
    local runs = positive_int(opt.runs or "10", "--runs")
    local warmup = tonumber(opt.warmup or "1")
    local t0 = now()
    local m = build(opt)
    local t_build = now() - t0
    local x = input_of(opt, "1x3x224x224")
    -- the first pass is timed on its own: it pays for packing the weights
    local first
    for w = 1, warmup do
      local t = now()
      m(x)
      if w == 1 then first = (now() - t) * 1000 end
    end
    local times = {}
    for i = 1, runs do
      local t = now()
      m(x)
      times[i] = (now() - t) * 1000
    end
    table.sort(times)
    local median = runs % 2 == 1 and times[(runs + 1) / 2] or (times[runs / 2] + times[runs / 2 + 1]) / 2
    local lines = {}
    if opt.profile then
      local p = profiler(m)
      base.profiler = p
      local okp, ep = pcall(function() for _ = 1, runs do m(x) end end)
      base.profiler = nil
      if not okp then error(ep, 0) end
      lines[#lines + 1] = p.report(runs)
      lines[#lines + 1] = op_profile(m, x, runs)
    end
    lines[#lines + 1] = string.format("threads=%d runs=%d build_ms=%.1f%s min_ms=%.3f max_ms=%.3f",
                                      pthcv.get_num_threads(), runs, t_build * 1000,
                                      first and string.format(" first_ms=%.1f", first) or "", times[1], times[runs])
    lines[#lines + 1] = string.format("median_ms=%.3f", median)
    lines[#lines + 1] = "cpu: " .. require("pthcv.core").ffi.string(require("pthcv.core").C.pthcv_cpu_info())
    return table.concat(lines, "\n")
  end)
  if not ok then err(msg); return 1 end
  io.stdout:write(msg, "\n")
  return 0
end

function M.models()
  io.stdout:write(table.concat(require("pthcv.models").list(), "\n"), "\n")
  return 0
end

return M
