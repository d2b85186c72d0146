-- lua/pthcv/cli/model.lua: the module that run, bench and export work on,
-- from --model NAME or --script FILE.lua, with --weights loaded.
--
-- Weights come from any file pthcv.load reads (.pth/.pt, .safetensors,
-- .npz, FileStorage); the model weights are found as pthcv.state_dict
-- finds them. When they do not fit the model, the error counts the
-- missing, unexpected and mismatched keys, shows the first few of each
-- (--verbose: all) and names the zoo model they do fit, if one does.
-- Without --weights, --init zeros|random says what the weights are;
-- commands that compute results (run, export) refuse to guess.
local M = {}

local SHOWN = 5   -- keys of each kind listed without --verbose

-- The classifier width of a torchvision state_dict: its last weight's first
-- dimension (fc, classifier.6, classifier.1 of SqueezeNet, ...).
local function num_classes_of(list)
  local last
  for _, kv in ipairs(list) do if kv[1]:match("weight$") then last = kv[2] end end
  return last and last.ndim >= 1 and last.shape[1] or nil
end
M.num_classes_of = num_classes_of

local function shape_str(t) return "[" .. table.concat(t.shape, ", ") .. "]" end

local function same_shape(a, b)
  if #a.shape ~= #b.shape then return false end
  for i = 1, #a.shape do if a.shape[i] ~= b.shape[i] then return false end end
  return true
end

-- How a weight list fits a module: {missing = names, unexpected = names,
-- mismatched = {{name, given, expected}}}, each in order.
function M.compare(module, list)
  local expected, order = {}, {}
  for _, kv in ipairs(require("pthcv.reader.odict").items(module:state_dict())) do
    expected[kv[1]] = kv[2]
    order[#order + 1] = kv[1]
  end
  local r = { missing = {}, unexpected = {}, mismatched = {} }
  local given = {}
  for _, kv in ipairs(list) do
    given[kv[1]] = kv[2]
    local e = expected[kv[1]]
    if e == nil then r.unexpected[#r.unexpected + 1] = kv[1]
    elseif not same_shape(kv[2], e) then r.mismatched[#r.mismatched + 1] = { kv[1], kv[2], e } end
  end
  for _, k in ipairs(order) do
    -- older torch files have no num_batches_tracked (load_state_dict allows it)
    if given[k] == nil and not k:match("num_batches_tracked$") then r.missing[#r.missing + 1] = k end
  end
  r.fits = #r.missing == 0 and #r.unexpected == 0 and #r.mismatched == 0
  return r
end

-- Key names come from the file: shown escaped, as in every message.
local function printable(s) return require("pthcv.core").escape(s) end

local function first(list, n, fmt)
  local out = {}
  for i = 1, math.min(#list, n) do out[i] = fmt and fmt(list[i]) or printable(list[i]) end
  if #list > n then out[#out + 1] = "... (" .. (#list - n) .. " more)" end
  return table.concat(out, ", ")
end

-- The message of weights that do not fit.
function M.mismatch_message(what, path, r, list, verbose, zoo_hint)
  local n = verbose and math.huge or SHOWN
  local lines = { string.format("%s does not fit %s: %d missing, %d unexpected, %d mismatched key%s", path, what,
                                #r.missing, #r.unexpected, #r.mismatched,
                                #r.missing + #r.unexpected + #r.mismatched == 1 and "" or "s") }
  if #r.missing > 0 then lines[#lines + 1] = "  missing: " .. first(r.missing, n) end
  if #r.unexpected > 0 then lines[#lines + 1] = "  unexpected: " .. first(r.unexpected, n) end
  if #r.mismatched > 0 then
    lines[#lines + 1] = "  mismatched: " .. first(r.mismatched, n, function(m)
      return string.format("%s %s in the file, %s in the model", printable(m[1]), shape_str(m[2]), shape_str(m[3]))
    end)
  end
  if zoo_hint then
    local rec = require "pthcv.models.recognize"
    local ok, name, options, found = pcall(rec.recognize, list)
    if ok and name then
      lines[#lines + 1] = "  these weights look like " .. name .. " (" .. M.model_flags(name, found.task) .. ")"
                          .. (next(options) and (", " .. rec.options_text(options)) or "")
    end
  end
  if not verbose and (#r.missing > SHOWN or #r.unexpected > SHOWN or #r.mismatched > SHOWN) then
    lines[#lines + 1] = "  (--verbose lists every key)"
  end
  return table.concat(lines, "\n")
end

-- pthcv.load(path) with a progress bar: the root and the file's info.
local function load_file(path, limits)
  local bar = require("pthcv.cli.progress").new("reading " .. path:match("[^/]*$"))
  bar:loading(path)
  local ok, root, info = pcall(require("pthcv").load, path, limits)
  bar:finish()
  if not ok then error(root, 0) end
  return root, info
end

-- The weights of a file as {{name, tensor}, ...}, and the file's format.
function M.read_weights(path, limits)
  local sdmod = require "pthcv.reader.state_dict"
  local root, info = load_file(path, limits)
  local list = sdmod.find(root)
  if not list then sdmod.state_dict(root, path) end   -- raises its "no model weights found" error
  return list, info.format
end

-- Loads `list` into module (strict), or raises the mismatch message.
function M.load_weights(module, what, path, list, format, verbose)
  local r = M.compare(module, list)
  if not r.fits and (format == "npz" or format == "safetensors" or format == "filestorage") then
    for _, c in ipairs(require("pthcv.models.recognize").prefixed_lists(list)) do
      if M.compare(module, c[2]).fits then list, r = c[2], { fits = true }; break end
    end
  end
  if not r.fits then error("pthcv: " .. M.mismatch_message(what, path, r, list, verbose, true), 0) end
  module:load_state_dict(list)
end

-- Seeded random weights that keep activations in range: each weight
-- N(0, 1/fan_in), biases and BatchNorm shifts N(0, 0.01), BatchNorm scales
-- and variances in [0.5, 1.5], means N(0, 0.01).
function M.random_weights(module, seed)
  local pthcv = require "pthcv"
  pthcv.manual_seed(seed or 0)
  local list = {}
  for _, kv in ipairs(require("pthcv.reader.odict").items(module:state_dict())) do
    local name, t = kv[1], kv[2]
    local v
    if not t.dtype:match("^float") and t.dtype ~= "bfloat16" then
      v = t
    elseif name:match("running_var$") or (t.ndim == 1 and name:match("weight$")) then
      v = pthcv.rand(t.shape) + 0.5
    elseif t.ndim >= 2 then
      local fan_in = t.numel / t.shape[1]
      v = pthcv.randn(t.shape) * (1 / math.sqrt(fan_in))
    else
      v = pthcv.randn(t.shape) * 0.1
    end
    list[#list + 1] = { name, v }
  end
  module:load_state_dict(list)
end

-- The model a file carries, for run, bench and export with no --model or
-- --script: a TorchScript archive runs through pthcv.jit, a whole-model
-- pickle (or a checkpoint holding one under "model", ...) through
-- nn.from_module, and the weights of a state_dict (or a
-- checkpoint) that fit exactly one zoo model, keys and shapes, are that
-- model's. Anything else is refused, naming the models it fits. Returns
-- the module and, for a zoo model, its name, the weights and the format.
function M.from_file(path, opt, limits)
  local pthcv = require "pthcv"
  local sdmod = require "pthcv.reader.state_dict"
  local root, info = load_file(path, limits)
  if info.format == "torchscript" then return pthcv.jit.load(path, limits) end
  if sdmod.is_module(root) then return pthcv.nn.from_module(root) end
  -- a checkpoint that keeps the whole model ({"model": model, "epoch": ...})
  if require("pthcv.reader.odict").is(root) then
    for _, k in ipairs(sdmod.checkpoint_keys) do
      if sdmod.is_module(root[k]) then return pthcv.nn.from_module(root[k]) end
    end
  end
  local list = sdmod.find(root)
  if not list then sdmod.state_dict(root, path) end   -- raises its "no model weights found" error
  local rec = require "pthcv.models.recognize"
  local name, options, r = rec.recognize(list)
  local usage = require("pthcv.cli.runner").usage_error
  if not name then error(usage(M.unrecognised_message(path, r)), 0) end
  if r.task ~= "classification" then
    error(usage(path .. " holds the weights of " .. rec.text(name, options) .. ", a " .. r.task .. " model: "
                .. (r.task == "detection" and "pthcv detect" or "pthcv segment") .. " runs it (--weights " .. path .. ")"), 0)
  end
  if opt["num-classes"] and opt["num-classes"] ~= options.num_classes then
    error(usage(string.format("--num-classes %d: %s holds %s", opt["num-classes"], path, rec.text(name, options))), 0)
  end
  io.stderr:write("pthcv: ", path, ": recognised ", rec.text(name, options), " (by its keys and shapes)\n")
  return rec.get(name, options), name, r.list, info.format
end

-- Why weights that carry no model and fit no one zoo model are refused:
-- the models they fit alike, or the closest three and what differs.
-- `give`: what the user may give instead (default: --model or --script).
function M.unrecognised_message(path, r, give)
  local rec = require "pthcv.models.recognize"
  local fits = {}
  for _, c in ipairs(r.candidates) do if c.fits then fits[#fits + 1] = c.name end end
  local head = path .. " holds weights, not a model, and they fit "
               .. (#fits > 1 and (table.concat(fits, " and ") .. " alike") or "no zoo model")
               .. ": give " .. (give or "--model NAME or --script FILE.lua")
  if #fits > 1 then return head .. "\n" .. rec.candidates_text(r, #fits) end
  if not r.candidates[1] or r.candidates[1].matched == 0 then
    return head .. "\n  (they share no key and shape with any zoo model)"
  end
  return head .. "\n  the closest zoo models:\n" .. rec.candidates_text(r, 3, "    ")
end

-- How to name a recognised model: "--model resnet18" (num_classes comes
-- from the weights), "pthcv detect --model ...".
function M.model_flags(name, task)
  if task == "classification" then return "--model " .. name end
  return (task == "detection" and "pthcv detect" or "pthcv segment") .. " --model " .. name
end

-- The module the options describe, weights loaded, in eval mode.
-- need_weights: refuse to run without --weights or --init. With neither
-- --model nor --script, --weights names a file that carries its model
-- (M.from_file).
function M.build(opt, need_weights, limits)
  local pthcv = require "pthcv"
  local usage = require("pthcv.cli.runner").usage_error
  if opt.model and opt.script then error(usage("give --model or --script, not both"), 0) end
  if opt.weights and opt.init then error(usage("give --weights or --init, not both"), 0) end
  if not opt.model and not opt.script then
    if not opt.weights then
      error(usage("--model NAME or --script FILE.lua is needed (or a file that carries its model: "
                  .. "a TorchScript archive, a whole-model pickle)"), 0)
    end
    local m, what, list, format = M.from_file(opt.weights, opt, limits)
    if list then M.load_weights(m, what, opt.weights, list, format, opt.verbose) end
    if opt.half then m:half() end
    m:eval()
    return m
  end
  if need_weights and not opt.weights and not opt.init then
    error(usage("no --weights: give --weights FILE, or --init zeros or --init random to run without trained weights"), 0)
  end
  local list, format
  if opt.weights then list, format = M.read_weights(opt.weights, limits) end
  local m, what
  for _, task in ipairs { "detection", "segmentation" } do -- torchvision's detectors and segmenters, by name
    local registry = opt.model and pthcv.models[task]
    if registry and registry.has(opt.model) then
      if not opt.weights then error(usage(opt.model .. " needs --weights FILE (its state_dict)"), 0) end
      return require("pthcv.image.pipeline").load(task, opt.model, opt.weights)
    end
  end
  if opt.model then
    local nc = opt["num-classes"] or (list and num_classes_of(list))
    if not pthcv.models.list then error("pthcv: no model zoo", 0) end
    local known = false
    for _, n in ipairs(pthcv.models.list()) do if n == opt.model then known = true end end
    if not known then
      local runner = require "pthcv.cli.runner"
      error(usage("unknown model '" .. opt.model .. "'" .. runner.did_you_mean(runner.suggest(opt.model, pthcv.models.list()), "")
                  .. " (pthcv models lists them)"), 0)
    end
    m = pthcv.models.get(opt.model, { num_classes = nc })
    what = opt.model
  else
    m = require("pthcv.cli.lua").run_file(opt.script, opt.script)
    if not pthcv.nn.is_module(m) then error("pthcv: " .. opt.script .. " must return a module (pthcv.nn)", 0) end
    what = opt.script
  end
  -- an int8 file (pthcv quantize): the architecture's float packs take its int8 layers
  local int8 = list and require("pthcv.quant").is_int8(list)
  if int8 then
    if opt.half then error(usage("--half does not apply to an int8 model (" .. opt.weights .. ")"), 0) end
  elseif list then M.load_weights(m, what, opt.weights, list, format, opt.verbose)
  elseif opt.init == "random" then M.random_weights(m, opt.seed) end
  if opt.half then m:half() end
  m:eval()
  if int8 then require("pthcv.quant").load(m, list) end
  return m
end

return M
