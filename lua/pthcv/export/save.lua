-- lua/pthcv/export/save.lua: writing tensors as .npy, .npz, .safetensors, or as
-- cv::Mat in OpenCV FileStorage files (.yml, .xml, .json, optionally .gz).
--
--   save("w.npy", tensor)
--   save("w.npz", dict)              -- OrderedDict / table name -> Tensor
--   save("w.safetensors", dict, {metadata = {format = "pt"}})
--   save("w.npz", {{"a", t1}, {"b", t2}})   -- an explicit order
--
-- The extension picks the format. The bytes are the tensor's contiguous
-- bytes, dtype kept; the C core writes the files.
local ffi = require "ffi"
local core = require "pthcv.core"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local C = core.C

local M = {}

local function extension(path)
  local ext = path:lower():match("%.([%w]+)$")
  return ext
end

-- {{name, tensor}, ...} from the accepted shapes of `x`
local function entries(x)
  if Tensor.is(x) then return { { "tensor", x } } end
  if type(x) ~= "table" then error("pthcv: save expects a Tensor or a dict of tensors, got " .. type(x), 0) end
  local list = {}
  if OrderedDict.is(x) then
    for _, kv in ipairs(OrderedDict.items(x)) do list[#list + 1] = { kv[1], kv[2] } end
  elseif type(x[1]) == "table" and not Tensor.is(x[1]) and x[1][2] ~= nil then
    for _, kv in ipairs(x) do list[#list + 1] = { kv[1], kv[2] } end
  else
    for k, v in next, x do list[#list + 1] = { k, v } end
    table.sort(list, function(a, b) return tostring(a[1]) < tostring(b[1]) end)
  end
  for _, kv in ipairs(list) do
    if type(kv[1]) ~= "string" then kv[1] = tostring(kv[1]) end
    if not Tensor.is(kv[2]) then
      error("pthcv: save: the value of '" .. kv[1] .. "' is not a tensor", 0)
    end
  end
  return list
end
M.entries = entries

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" end
    return string.format("\\u%04x", c:byte())
  end) .. '"'
end

local function metadata_json(meta)
  if meta == nil then return nil end
  if type(meta) == "string" then return meta end
  local keys = {}
  for k in next, meta do keys[#keys + 1] = tostring(k) end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    parts[#parts + 1] = json_string(k) .. ":" .. json_string(tostring(meta[k]))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- Whether path names a cv::FileStorage file (.yml, .yaml, .xml, .json, each
-- optionally .gz).
function M.is_filestorage(path)
  local p = path:lower():gsub("%.gz$", "")
  return p:match("%.ya?ml$") ~= nil or p:match("%.xml$") ~= nil or p:match("%.json$") ~= nil
end

-- opts: metadata (.safetensors: a table of strings), progress (FileStorage:
-- progress(done, total) after each tensor, counting elements).
function M.save(path, x, opts)
  opts = opts or {}
  local ext = extension(path)
  if ext == "npy" then
    local list = entries(x)
    if #list ~= 1 then
      error("pthcv: " .. path .. ": a .npy file holds one tensor, not " .. #list
            .. " (use .npz or .safetensors)", 0)
    end
    core.check(C.pthcv_save_npy(path, list[1][2].ct), "cannot write " .. path)
    return path
  elseif ext == "npz" or ext == "safetensors" then
    local list = entries(x)
    local n = #list
    local names = ffi.new("const char *[?]", math.max(n, 1))
    local tensors = ffi.new("pthcv_tensor *[?]", math.max(n, 1))
    -- `list` keeps the name strings and tensors referenced during the call
    for i, kv in ipairs(list) do
      names[i - 1] = kv[1]
      tensors[i - 1] = kv[2].ct
    end
    if ext == "npz" then
      core.check(C.pthcv_save_npz(path, n, names, tensors), "cannot write " .. path)
    else
      core.check(C.pthcv_save_safetensors(path, n, names, tensors, metadata_json(opts.metadata)),
                 "cannot write " .. path)
    end
    return path
  end
  if M.is_filestorage(path) then
    -- OpenCV's cv::FileStorage (csrc/opencv/bridge.cpp): YAML, XML or JSON
    local list = entries(x)
    local n = #list
    local names = ffi.new("const char *[?]", math.max(n, 1))
    local tensors = ffi.new("pthcv_tensor *[?]", math.max(n, 1))
    for i, kv in ipairs(list) do
      names[i - 1] = kv[1]
      tensors[i - 1] = kv[2].ct
    end
    if opts.progress then   -- progress(done, total) after each tensor, in elements
      local cb = ffi.cast("pthcv_progress_fn", function(_, done, total) opts.progress(done, total) end)
      local status = C.pthcv_filestorage_write_progress(path, n, names, tensors, cb, nil)
      cb:free()
      core.check(status, "cannot write " .. path)
    else
      core.check(C.pthcv_filestorage_write(path, n, names, tensors), "cannot write " .. path)
    end
    return path
  end
  error("pthcv: " .. path .. ": unknown output format (the name must end in .npy, .npz, .safetensors, "
        .. ".yml, .yaml, .xml or .json, the last four optionally .gz)", 0)
end

-- The FileStorage progress callback runs inside a C call: keep that call
-- out of compiled traces (LuaJIT cannot call back into Lua from one).
jit.off(M.save)

return M
