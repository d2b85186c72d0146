-- lua/pthcv/models/recognize_describe.lua: what the zoo's state_dicts look
-- like, for pthcv.models.recognize (lua/pthcv/models/recognize.lua).
--
--   M.zoo()                  every zoo model: {{name, task}, ...} (classification,
--                            detection, segmentation), in that order, sorted
--   M.options(name, task)    the options that change only the head's shapes:
--                            {ints = {{name, default, infer}}, flags = {{name, default}}}
--   M.describe(name, task, opts)
--                            the state_dict's keys and shapes of that model:
--                            {keys = {...}, shape = {key = {dims}}}
--   M.get(name, task, opts)  the model itself
--
-- Descriptions are made once per process and options and kept. Making one
-- builds the model with its large zero tensors (Tensor.zeros of 4096
-- elements or more: convolution and linear weights) replaced by views of
-- one element with all strides 0: the shapes are torch's, no weight memory
-- is taken. A construction that reads or writes such a tensor is built
-- again as it is, with real zeros.
local D = require "pthcv.tensor.dispatch"
local Tensor = require "pthcv.tensor"

local M = {}

local BIG = 4096   -- elements from which a zero tensor is only its shape

local function models() return require "pthcv.models" end

local registries = {
  classification = function() return models() end,
  detection = function() return models().detection end,
  segmentation = function() return models().segmentation end,
}
M.tasks = { "classification", "detection", "segmentation" }

local zoo_list
function M.zoo()
  if not zoo_list then
    zoo_list = {}
    for _, task in ipairs(M.tasks) do
      for _, name in ipairs(registries[task]().list()) do zoo_list[#zoo_list + 1] = { name, task } end
    end
  end
  return zoo_list
end

function M.get(name, task, opts)
  return registries[task]().get(name, opts)
end

-- ---- options that change only the head's shapes ----------------------------
-- An integer option's value from the weights: for each mismatched tensor
-- (key, shape in the file, shape of the default model) and each dimension
-- that differs, the default model's size there is k * default for a whole
-- k (fc: 1000 = 1 * num_classes; RetinaNet's cls_logits: 819 = 9 * 91),
-- and the file's size / k is a candidate.
local function proportional(default)
  return function(mismatched)
    local out = {}
    for i = 1, math.min(#mismatched, 8) do
      local given, expected = mismatched[i][2], mismatched[i][3]
      if #given == #expected then
        for d = 1, #given do
          local e, g = expected[d], given[d]
          if e ~= g and e % default == 0 and g % (e / default) == 0 then out[#out + 1] = g / (e / default) end
        end
      end
    end
    return out
  end
end

-- VisionTransformer's image_size: encoder.pos_embedding [1, side^2 + 1, D]
-- with side = image_size / patch_size (conv_proj's kernel).
local function vit_image_size(mismatched, given)
  for _, m in ipairs(mismatched) do
    if m[1] == "encoder.pos_embedding" and #m[2] == 3 and given["conv_proj.weight"] then
      local side = math.floor(math.sqrt(m[2][2] - 1) + 0.5)
      if side * side + 1 == m[2][2] then return { side * given["conv_proj.weight"][3] } end
    end
  end
  return {}
end

function M.options(name, task)
  local nc = task == "classification" and 1000 or task == "segmentation" and 21 or 91
  if name:match("^keypointrcnn") then nc = 2 end
  local o = { ints = { { "num_classes", nc, proportional(nc) } }, flags = {} }
  if name:match("^keypointrcnn") then o.ints[2] = { "num_keypoints", 17, proportional(17) } end
  if name:match("^vit_") then o.ints[#o.ints + 1] = { "image_size", 224, vit_image_size } end
  if name == "googlenet" or name == "inception_v3" then o.flags[1] = { "aux_logits", true } end
  if task == "segmentation" and name ~= "lraspp_mobilenet_v3_large" then o.flags[1] = { "aux_loss", false } end
  return o
end

-- ---- descriptions ----------------------------------------------------------
local SHAPE_ONLY = {}   -- the error a construction that touches a shape-only tensor raises

local function numel(shape)
  local n = 1
  for _, d in ipairs(shape) do n = n * d end
  return n
end

-- build() with large zero tensors as shapes only (see the top).
local function build_shape_only(build)
  local prev = D.hook
  local fake = setmetatable({}, { __mode = "k" })
  local function touches(...)
    for i = 1, select("#", ...) do
      local a = select(i, ...)
      if fake[a] then return true end
      if type(a) == "table" and not Tensor.is(a) then
        for _, x in ipairs(a) do if fake[x] then return true end end
      end
    end
    return false
  end
  D.hook = function(op, rec, impl, ...)
    if op == "Tensor.zeros" and numel(rec.shape) >= BIG then
      local one = impl({ shape = { 1 }, dtype = rec.dtype })
      local stride = {}
      for i = 1, #rec.shape do stride[i] = 0 end
      local t = one:as_strided(rec.shape, stride, 0)
      fake[t] = true
      return t
    end
    if touches(...) then error(SHAPE_ONLY, 0) end
    if prev then return prev(op, rec, impl, ...) end
    return impl(rec, ...)
  end
  local ok, m = pcall(build)
  D.hook = prev
  if ok then return m end
  if m ~= SHAPE_ONLY then error(m, 0) end
  return build()
end

local cache = {}

local function cache_key(name, opts)
  local keys = {}
  for k in pairs(opts) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = { name }
  for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(opts[k]) end
  return table.concat(parts, ",")
end

function M.describe(name, task, opts)
  local key = cache_key(name, opts)
  local d = cache[key]
  if d then
    if d.error then error(d.error, 0) end
    return d
  end
  local ok, m = pcall(build_shape_only, function() return M.get(name, task, opts) end)
  if not ok then
    cache[key] = { error = m }
    error(m, 0)
  end
  d = { keys = {}, shape = {} }
  for _, kv in ipairs(require("pthcv.reader.odict").items(m:state_dict())) do
    d.keys[#d.keys + 1] = kv[1]
    d.shape[kv[1]] = kv[2].shape
  end
  cache[key] = d
  return d
end

return M
