-- lua/pthcv/nn/load_state_dict.lua: Module:load_state_dict, with torch's
-- checks and messages; nn/module.lua installs it (install(Module,
-- state_entries, touch): its state_dict entries, and the hook that makes
-- modules prepare again after new weights).
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local escape = require("pthcv.core").escape

local M = {}

local function shape_str(t) return "[" .. table.concat(t.shape, ", ") .. "]" end

local function same_shape(a, b)
  local sa, sb = a.shape, b.shape
  if #sa ~= #sb then return false end
  for i = 1, #sa do if sa[i] ~= sb[i] then return false end end
  return true
end

-- The (name, tensor) pairs of a state dict given as an OrderedDict, a
-- table name -> Tensor, or a list {{name, tensor}, ...}.
local function sd_items(sd)
  if OrderedDict.is(sd) then return OrderedDict.items(sd) end
  if type(sd) ~= "table" then error("pthcv: load_state_dict expects a state dict (name -> Tensor)", 3) end
  if type(sd[1]) == "table" and not Tensor.is(sd[1]) then return sd end
  local keys = {}
  for k in next, sd do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local out = {}
  for i, k in ipairs(keys) do out[i] = { k, sd[k] } end
  return out
end

-- Names come from the file: escaped (core.escape) in the message.
local function quoted_list(names)
  local q = {}
  for i, n in ipairs(names) do q[i] = '"' .. escape(n) .. '"' end
  return table.concat(q, ", ")
end

-- module:load_state_dict(sd [, {strict = true}]) -> {missing_keys, unexpected_keys}
-- Copies torch-named weights into the module (tensors are taken as they
-- are when float32, else converted to the dtype of what they replace).
-- Every problem is reported in one error naming each key, as torch does:
-- missing and unexpected keys (strict only) and shape mismatches (always).
-- BatchNorm's num_batches_tracked may be absent (older torch files).
function M.install(Module, state_entries, touch)
  function Module:load_state_dict(sd, opts)
    rawset(self, "_quantized", nil)   -- new weights: an int8 model is float again until quantized anew
    local strict = not (opts and opts.strict == false)
    local expected = state_entries(self, "")
    local given, order = {}, {}
    for _, kv in ipairs(sd_items(sd)) do
      local k = kv[1]
      if type(k) ~= "string" then k = tostring(k) end
      if given[k] == nil then order[#order + 1] = k end
      given[k] = kv[2]
    end
    local missing, mismatch, used = {}, {}, {}
    for _, e in ipairs(expected) do
      local name, cur = e[1], e[2]
      local t = given[name]
      if t == nil then
        if not name:match("num_batches_tracked$") then missing[#missing + 1] = name end
      else
        used[name] = true
        if not Tensor.is(t) then
          mismatch[#mismatch + 1] = string.format("value for %s is not a tensor (%s)", name, escape(tostring(t), 200))
        elseif not same_shape(t, cur) then
          mismatch[#mismatch + 1] = string.format(
            "size mismatch for %s: copying a param with shape %s from checkpoint, the shape in current model is %s.",
            name, shape_str(t), shape_str(cur))
        end
      end
    end
    local unexpected = {}
    for _, k in ipairs(order) do if not used[k] then unexpected[#unexpected + 1] = k end end
    local errors = {}
    if strict and #unexpected > 0 then
      errors[#errors + 1] = "Unexpected key(s) in state_dict: " .. quoted_list(unexpected) .. ". "
    end
    if strict and #missing > 0 then
      errors[#errors + 1] = "Missing key(s) in state_dict: " .. quoted_list(missing) .. ". "
    end
    for _, m in ipairs(mismatch) do errors[#errors + 1] = m end
    if #errors > 0 then
      error("pthcv: Error(s) in loading state_dict for " .. getmetatable(self).__typename .. ":\n\t"
            .. table.concat(errors, "\n\t"), 2)
    end
    for _, e in ipairs(expected) do
      local t = given[e[1]]
      if t ~= nil then
        if t.dtype ~= e[2].dtype then t = t:to(e[2].dtype) end
        rawset(e[3], e[4], t)
      end
    end
    touch()
    return { missing_keys = missing, unexpected_keys = unexpected }
  end
end

return M
