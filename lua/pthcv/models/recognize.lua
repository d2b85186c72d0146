-- lua/pthcv/models/recognize.lua: which zoo model a state_dict belongs to.
--
--   local name, options, r = pthcv.models.recognize(sd)
--   local options = require("pthcv.models.recognize").fit(sd, "resnet50")
--   -- sd: a path, a loaded file (pthcv.load), an OrderedDict name -> Tensor
--   --     or a list {{name, tensor}, ...}; checkpoints and prefixes as
--   --     pthcv.state_dict finds them
--   -- name, options: "resnet50", {num_classes = 10} when exactly one zoo
--   --     model fits every key and shape; nil, nil otherwise
--   -- r: {task, fits, ambiguous, list, candidates = {best first, each
--   --     {name, task, options, score, fits, matched, missing,
--   --     unexpected, mismatched = {{key, shape in the file, in the model}},
--     default = the model's default options fit}}}
--
-- Every zoo model (classification, detection, segmentation) is compared by
-- its keys and shapes (lua/pthcv/models/recognize_describe.lua: shapes
-- only, made once per process). The options that change only the head's
-- shapes (num_classes, num_keypoints, VisionTransformer's image_size,
-- aux_logits, aux_loss) are inferred from the tensors that differ from the
-- default model's, and kept when the model they make fits better. A
-- candidate's score is the share of keys, file's and model's together,
-- that match in name and shape: 1 is an exact fit.
local describe = require "pthcv.models.recognize_describe"

local M = {}

M.shortlist = 6   -- models, by shared key names, whose options are inferred

local function is_nbt(k) return k:match("num_batches_tracked$") ~= nil end

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- The given weights as {keys, shape = {key = dims}}.
local function given_of(list)
  local g = { keys = {}, shape = {} }
  for _, kv in ipairs(list) do
    g.keys[#g.keys + 1] = kv[1]
    g.shape[kv[1]] = kv[2].shape
  end
  return g
end

-- How the given weights fit a description (as load_state_dict: a missing
-- num_batches_tracked is allowed, and one the model's FrozenBatchNorm2d
-- does not keep is dropped, as torchvision's detectors load them).
local function compare(g, d)
  local r = { matched = 0, missing = {}, unexpected = {}, mismatched = {} }
  for _, k in ipairs(g.keys) do
    local e = d.shape[k]
    if e == nil and is_nbt(k) and d.shape[k:gsub("num_batches_tracked$", "running_mean")] then
      -- a BatchNorm2d's count, taken by a FrozenBatchNorm2d (which drops it, as torchvision's does)
    elseif e == nil then r.unexpected[#r.unexpected + 1] = k
    elseif not same(g.shape[k], e) then r.mismatched[#r.mismatched + 1] = { k, g.shape[k], e }
    else r.matched = r.matched + 1 end
  end
  for _, k in ipairs(d.keys) do
    if g.shape[k] == nil and not is_nbt(k) then r.missing[#r.missing + 1] = k end
  end
  local total = r.matched + #r.mismatched + #r.unexpected + #r.missing
  r.score = total > 0 and r.matched / total or 0
  r.fits = #r.missing == 0 and #r.unexpected == 0 and #r.mismatched == 0
  return r
end

-- Key names shared with the default model, as a share of both (shapes aside).
local function key_overlap(g, d)
  local shared = 0
  for _, k in ipairs(g.keys) do if d.shape[k] then shared = shared + 1 end end
  return shared / (#g.keys + #d.keys - shared)
end

local function copy(t)
  local o = {}
  for k, v in pairs(t) do o[k] = v end
  return o
end

-- The best options of one model for the given weights, and its comparison.
local function fit_model(g, name, task)
  local spec = describe.options(name, task)
  local flag_sets = { {} }
  for _, f in ipairs(spec.flags) do flag_sets = { { [f[1]] = f[2] }, { [f[1]] = not f[2] } } end
  local best
  for _, opts in ipairs(flag_sets) do
    local ok, d = pcall(describe.describe, name, task, opts)
    local r = ok and compare(g, d)
    -- each integer option in turn, from the tensors that still differ
    for _ = 1, #spec.ints do
      if not r or r.fits then break end
      for _, int in ipairs(spec.ints) do
        local tried = {}
        for _, v in ipairs(int[3](r.mismatched, g.shape)) do
          if not tried[v] and v >= 1 and v <= 1e6 and v == math.floor(v) and v ~= (opts[int[1]] or int[2]) then
            tried[v] = true
            local o2 = copy(opts)
            o2[int[1]] = v
            local ok2, d2 = pcall(describe.describe, name, task, o2)
            local r2 = ok2 and compare(g, d2)
            if r2 and r2.score > r.score then opts, r = o2, r2 end
          end
        end
      end
    end
    if r and (not best or r.score > best.score) then r.options = opts; best = r end
  end
  if not best then return nil end
  -- the options shown: num_classes always, the others where not the default
  local shown = {}
  for _, int in ipairs(spec.ints) do
    local v = best.options[int[1]]
    if int[1] == "num_classes" then shown[int[1]] = v or int[2] elseif v and v ~= int[2] then shown[int[1]] = v end
  end
  for _, f in ipairs(spec.flags) do
    local v = best.options[f[1]]
    if v ~= nil and v ~= f[2] then shown[f[1]] = v end
  end
  best.default = next(best.options) == nil   -- the model's default options fit
  best.options, best.name, best.task = shown, name, task
  return best
end

-- The weights of a checkpoint that `pthcv convert` flattened
-- ("model.conv1.weight", "state_dict.module.fc.bias"): the tensors under
-- each checkpoint key, the prefix (and a DataParallel "module.") removed.
function M.prefixed_lists(list)
  local out = {}
  for _, key in ipairs(require("pthcv.reader.state_dict").checkpoint_keys) do
    local p = key .. "."
    local sub = {}
    for _, kv in ipairs(list) do
      if kv[1]:sub(1, #p) == p then sub[#sub + 1] = { kv[1]:sub(#p + 1), kv[2] } end
    end
    if #sub > 0 then
      local all = true
      for _, kv in ipairs(sub) do if kv[1]:sub(1, 7) ~= "module." then all = false; break end end
      if all then for _, kv in ipairs(sub) do kv[1] = kv[1]:sub(8) end end
      out[#out + 1] = { key, sub }
    end
  end
  return out
end

-- {{name, tensor}, ...} of what recognize takes.
local function weights_list(x)
  local pthcv = require "pthcv"
  local sdmod = require "pthcv.reader.state_dict"
  if type(x) == "string" then x = pthcv.load(x) end
  if type(x) == "table" and type(x[1]) == "table" and type(x[1][1]) == "string" then return x end
  local list = sdmod.find(x)
  if not list then sdmod.state_dict(x) end   -- raises its "no model weights found" error
  return list
end

-- The candidates for one list of weights, best first.
local function candidates(list)
  local g = given_of(list)
  local ranked = {}
  for _, e in ipairs(describe.zoo()) do
    local ok, d = pcall(describe.describe, e[1], e[2], {})
    if ok then ranked[#ranked + 1] = { e[1], e[2], key_overlap(g, d) } end
  end
  table.sort(ranked, function(a, b) if a[3] ~= b[3] then return a[3] > b[3] end return a[1] < b[1] end)
  local out = {}
  for i = 1, math.min(M.shortlist, #ranked) do
    -- models that share no key name stay in the list as far as the shortlist goes
    local r = fit_model(g, ranked[i][1], ranked[i][2])
    if r then out[#out + 1] = r end
  end
  table.sort(out, function(a, b) if a.score ~= b.score then return a.score > b.score end return a.name < b.name end)
  return out
end

function M.recognize(x)
  local list = weights_list(x)
  local lists = { list }
  for _, c in ipairs(M.prefixed_lists(list)) do lists[#lists + 1] = c[2] end
  local best
  for _, l in ipairs(lists) do
    local cands = candidates(l)
    if cands[1] and (not best or cands[1].score > best.candidates[1].score) then
      best = { list = l, candidates = cands }
    end
    if best and best.candidates[1].fits then break end
  end
  local r = best or { list = list, candidates = {} }
  local fitting = {}
  for _, c in ipairs(r.candidates) do if c.fits then fitting[#fitting + 1] = c end end
  r.fits, r.ambiguous = #fitting == 1, #fitting > 1
  if not r.fits then return nil, nil, r end
  r.task = fitting[1].task
  return fitting[1].name, fitting[1].options, r
end

-- The options (num_classes, ...) with which the named zoo model takes the
-- given weights: options, r (r as a candidate of recognize's), or nil, r
-- (r nil when the name is no zoo model's) when no options make it fit.
function M.fit(x, name)
  local task
  for _, e in ipairs(describe.zoo()) do if e[1] == name then task = e[2] end end
  if not task then return nil, nil end
  local list = weights_list(x)
  local lists = { list }
  for _, c in ipairs(M.prefixed_lists(list)) do lists[#lists + 1] = c[2] end
  local best
  for _, l in ipairs(lists) do
    local r = fit_model(given_of(l), name, task)
    if r and r.fits then return r.options, r end
    if r and (not best or r.score > best.score) then best = r end
  end
  return nil, best
end

-- The model a recognised name and its options make (any task).
function M.get(name, options)
  for _, e in ipairs(describe.zoo()) do
    if e[1] == name then return describe.get(name, e[2], options) end
  end
  error("pthcv: unknown zoo model '" .. tostring(name) .. "'", 2)
end

-- "num_classes=10, aux_loss=true": the options, num_classes first.
function M.options_text(options)
  local keys = {}
  for k in pairs(options) do if k ~= "num_classes" then keys[#keys + 1] = k end end
  table.sort(keys)
  if options.num_classes then table.insert(keys, 1, "num_classes") end
  local parts = {}
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(options[k]) end
  return table.concat(parts, ", ")
end

-- "torchvision resnet50, num_classes=10"
function M.text(name, options)
  return "torchvision " .. name .. (next(options) and (", " .. M.options_text(options)) or "")
end

local function shape_str(s) return "[" .. table.concat(s, ", ") .. "]" end

local function first_names(list, n)
  local esc = require("pthcv.core").escape
  local out = {}
  for i = 1, math.min(#list, n) do out[i] = esc(list[i]) end
  if #list > n then out[#out + 1] = "..." end
  return table.concat(out, ", ")
end

-- One line per candidate (at most n, default 3): its name and options, its
-- score, and what differs: the counts, the first few names of each kind
-- and the first shape mismatch.
function M.candidates_text(r, n, indent)
  indent = indent or "  "
  local lines = {}
  for i = 1, math.min(n or 3, #r.candidates) do
    local c = r.candidates[i]
    local parts = {}
    if #c.missing > 0 then parts[#parts + 1] = string.format("%d missing (%s)", #c.missing, first_names(c.missing, 3)) end
    if #c.unexpected > 0 then
      parts[#parts + 1] = string.format("%d unexpected (%s)", #c.unexpected, first_names(c.unexpected, 3))
    end
    if #c.mismatched > 0 then
      local m = c.mismatched[1]
      parts[#parts + 1] = string.format("%d mismatched, first %s %s in the file, %s in the model", #c.mismatched,
                                        require("pthcv.core").escape(m[1]), shape_str(m[2]), shape_str(m[3]))
    end
    lines[#lines + 1] = string.format("%s%s (%s): %d%% of the keys match; %s", indent, c.name,
                                      M.options_text(c.options), math.floor(c.score * 100),
                                      c.fits and "fits exactly" or table.concat(parts, "; "))
  end
  return table.concat(lines, "\n")
end

return M
