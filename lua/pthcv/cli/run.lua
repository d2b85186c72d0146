-- lua/pthcv/cli/run.lua: the inference commands: run, bench, models.
--
--   pthcv run   (--model NAME | --script FILE.lua) (--weights FILE | --init I)
--               --input X.npy --output Y.npy [--threads N] [--half]
--   pthcv run   (--model NAME | --script FILE.lua) --weights FILE IMAGE... [classify options]
--   pthcv bench (--model NAME | --script FILE.lua) [--weights FILE | --init I]
--               [--input X.npy | --shape 1x3x224x224] [--threads N] [--runs N] [--half] [--profile [--plot OUT.png]]
--
-- The module is built by cli/model.lua (weights in any format pthcv reads).
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"
local build = require("pthcv.cli.model").build

local M = {}

local function set_threads(opt)
  if opt.threads then require("pthcv").set_num_threads(opt.threads) end
end

-- The float32 input: --input X.npy, else a seeded random tensor of --shape.
local function input_of(opt, default_shape)
  local pthcv = require "pthcv"
  if opt.input then
    local x = pthcv.load_npy(opt.input)
    if x.dtype ~= "float32" then x = x:float() end
    return x
  end
  return pthcv.randn(opt.shape or default_shape, { seed = opt.seed or 0 })
end
M.input_of = input_of

-- run IMAGE...: the top-k classes of each image.
local function classify_images(images, opt)
  local classify = require "pthcv.image.classify"
  local json = opt.json and require "dkjson"
  if not opt.weights then error(runner.usage_error("classifying images needs --weights FILE"), 0) end
  set_threads(opt)
  local copts = { size = opt.size, resize = opt.resize, crop = opt.crop or nil, mean = opt.mean, std = opt.std,
                  topk = opt.topk or 5, interpolation = opt.interpolation, labels = opt.labels }
  for _, key in ipairs { "mean", "std" } do
    local v = copts[key]
    if v and #v ~= 1 and #v ~= 3 then
      error(runner.usage_error(string.format("--%s takes one number or three (one per channel), got %d", key, #v)), 0)
    end
    if v and #v == 1 then copts[key] = { v[1], v[1], v[1] } end
  end
  local m = build(opt, true)
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
  return 0
end

-- run FILE IMAGE..., run FILE --input X.npy ... and bench FILE: with no
-- --model, --script, --weights or --init, the first argument is a file
-- that carries its model (a TorchScript archive, a whole-model pickle:
-- pthcv.cli.model.from_file). run IMAGE alone still asks for a model.
local function model_file_argument(pos, opt, least)
  if #pos >= least and not (opt.model or opt.script or opt.weights or opt.init) then
    opt.weights = table.remove(pos, 1)
  end
end

M.run = {
  name = "run", args = "[FILE] IMAGE... (or --input X.npy --output Y.npy)", nargs = { 0 },
  synopsis = "run (--model NAME | --script FILE.lua) (--weights FILE | --init zeros|random)\n"
             .. "    --input X.npy --output Y.npy [--threads N] [--num-classes N] [--half]\n"
             .. "run (--model NAME | --script FILE.lua) --weights FILE IMAGE... [--size N] [--resize N]\n"
             .. "    [--crop] [--mean a,b,c] [--std a,b,c] [--topk K] [--labels FILE] [--json]\n"
             .. "run FILE (--input X.npy --output Y.npy | IMAGE...) [options]",
  summary = [[
one forward pass of a pthcv.models model (or of the module a Lua
script returns, or of the model FILE carries: a TorchScript archive, a
whole-model pickle, a state_dict that fits one zoo model exactly) on
the tensor in X.npy; the result is written to Y.npy;
or classifies images: the top-K classes (default 5) with probabilities;
ImageNet's normalisation by default; --resize N: shorter side to N, then a
centre crop of --size (default 224); --json: one JSON object per image]],
  options = options.list(options.model, {
    { "input", kind = "string", metavar = "X.npy", help = "the input tensor (float32 or converted to it)" },
    { "output", short = "o", kind = "string", metavar = "Y.npy", help = "where the result goes" },
    options.threads, options.half,
    { "size", kind = "count", metavar = "N", help = "images: the input's side (default 224)" },
    { "resize", kind = "count", metavar = "N", help = "images: the shorter side scaled to N, then centre-cropped" },
    { "crop", help = "images: scale to cover --size, then centre-crop" },
    { "mean", kind = "numbers", metavar = "a,b,c", help = "images: per channel, after / 255 (default ImageNet's)" },
    { "std", kind = "numbers", metavar = "a,b,c", help = "images: per channel (default ImageNet's)" },
    { "topk", kind = "count", metavar = "K", help = "images: classes shown (default 5)" },
    { "labels", kind = "string", metavar = "FILE", help = "images: one class name per line" },
    { "interpolation", kind = "choice", choices = { "nearest", "linear", "cubic", "area", "lanczos4", "linear_exact",
                                                      "nearest_exact" },
      help = "images: OpenCV's resize interpolation (default linear)" },
    { "json", help = "images: one JSON object per image" },
  }),
  run = function(pos, opt)
    model_file_argument(pos, opt, (opt.input or opt.output) and 1 or 2)
    if #pos > 0 then
      if opt.input or opt.output then error(runner.usage_error("run takes IMAGE... or --input/--output, not both"), 0) end
      return classify_images(pos, opt)
    end
    if not opt.input or not opt.output then error(runner.usage_error("run needs --input X.npy and --output Y.npy"), 0) end
    set_threads(opt)
    local m = build(opt, true)
    local y = m(input_of(opt))
    if type(y) == "table" and not require("pthcv").is_tensor(y) then y = y[1] end
    require("pthcv").save(opt.output, y)
    io.stdout:write(string.format("%s: %s [%s]\n", opt.output, y.dtype, table.concat(y.shape, ", ")))
    return 0
  end,
}

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
  -- the rows in the module tree's order, ms per pass
  function p.list(runs)
    local list = {}
    for _, r in pairs(rows) do
      list[#list + 1] = { path = r.path, type = r.type, ms = r.ms / runs, calls = r.calls / runs, order = r.order }
    end
    table.sort(list, function(a, b) if a.order ~= b.order then return a.order < b.order end return a.path < b.path end)
    return list
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

M.bench = {
  name = "bench", args = "[FILE]", nargs = { 0, 1 },
  synopsis = "bench (--model NAME | --script FILE.lua) [--weights FILE | --init zeros|random]\n"
             .. "    [--input X.npy | --shape 1x3x224x224] [--threads N] [--runs N] [--half] [--profile [--plot OUT.png]]\n"
             .. "bench FILE [options]   (a TorchScript archive, a whole-model pickle: the model it carries)",
  summary = [[
times forward passes after a warm-up and prints median_ms=<ms>;
weights are zeros unless --weights or --init random; --half keeps
them float16; --profile adds each module's inclusive time per pass
and each fused step's (pthcv.nn.plan), named by the ops it fused]],
  options = options.list(options.model, {
    { "input", kind = "string", metavar = "X.npy", help = "the input tensor" },
    { "shape", kind = "shape", metavar = "1x3x224x224", help = "a seeded random input of this shape (the default)" },
    options.threads, options.half,
    { "runs", kind = "count", metavar = "N", help = "timed passes (default 10)" },
    { "warmup", kind = "natural", metavar = "N", help = "passes before timing (default 2: recorded, then planned)" },
    { "profile", help = "each module's and fused step's time per pass" },
    { "plot", kind = "string", metavar = "OUT.png",
      help = "with --profile: each module's own time per pass as a bar\nchart (gnuplot; .png or .svg)" },
  }),
  run = function(pos, opt)
    model_file_argument(pos, opt, 1)
    if opt.shape and opt.input then error(runner.usage_error("give --shape or --input, not both"), 0) end
    if opt.plot and not opt.profile then error(runner.usage_error("--plot draws --profile's times: give both"), 0) end
    local pthcv = require "pthcv"
    local base = require "pthcv.nn.module"
    local now = require "pthcv.nn.clock"
    set_threads(opt)
    local runs = opt.runs or 10
    local warmup = opt.warmup or 2   -- pthcv.nn.plan: the first pass is recorded, the second makes the plan
    local t0 = now()
    local m = build(opt, false)
    local t_build = now() - t0
    local x = input_of(opt, { 1, 3, 224, 224 })
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
    if opt.profile then
      local p = profiler(m)
      base.profiler = p
      local okp, ep = pcall(function() for _ = 1, runs do m(x) end end)
      base.profiler = nil
      if not okp then error(ep, 0) end
      io.stdout:write(p.report(runs))
      io.stdout:write(require("pthcv.cli.op_profile")(m, x, runs))
      io.stdout:write(require("pthcv.nn.plan").describe(m, false), "\n")   -- what the plan fused
      if opt.plot then
        local plot = require "pthcv.export.plot"
        local r = plot.bars(plot.exclusive(p.list(runs)), opt.plot,
                            { title = (opt.model or opt.script) .. ": each module's own time per pass", unit = "ms",
                              xlabel = "ms per pass" })
        if r.script then
          runner.err("warning: gnuplot is not installed: wrote " .. r.path .. " and " .. r.data .. " (gnuplot "
                     .. r.path .. " draws " .. opt.plot .. ")")
        else
          io.stdout:write(string.format("%s: %d modules\n", r.path, r.rows))
        end
      end
    end
    io.stdout:write("cpu: ", require("pthcv.core").ffi.string(require("pthcv.core").C.pthcv_cpu_info()), "\n")
    io.stdout:write(string.format("threads=%d runs=%d build_ms=%.1f%s min_ms=%.3f max_ms=%.3f weights=%s%s\n",
                                  pthcv.get_num_threads(), runs, t_build * 1000,
                                  first and string.format(" first_ms=%.1f", first) or "", times[1], times[runs],
                                  opt.weights and "file" or (opt.init or "zeros"), opt.half and " half" or ""))
    io.stdout:write(string.format("median_ms=%.3f\n", median))
    return 0
  end,
}

M.models = {
  name = "models", nargs = { 0, 0 }, synopsis = "models",
  summary = "the names --model accepts",
  run = function()
    io.stdout:write(table.concat(require("pthcv.models").list(), "\n"), "\n")
    return 0
  end,
}

return M
