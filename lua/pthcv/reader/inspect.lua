-- lua/pthcv/reader/inspect.lua: what `pthcv inspect` prints.
--
--   local report = inspect.report(path)   -- a plain table (see fields below)
--   io.write(inspect.text(report))        -- the tree, the tensors, the counts
--   io.write(inspect.json(report))        -- one JSON object
local pthcv = require "pthcv"
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local sdmod = require "pthcv.reader.state_dict"
-- Names and classes come from the file: shown escaped (issue 11.5). esc is
-- core.escape (\xNN, a backslash as \\); printable_line is the net over
-- every line of the text report (control characters and bytes that are not
-- UTF-8 as \xNN), and json_text keeps JSON's strings valid UTF-8.
local esc = require("pthcv.core").escape
local function printable_line(s) return require("pthcv.reader.inspect_modules").utf8_text(s, true) end
local function json_text(s) return require("pthcv.reader.inspect_modules").utf8_text(s) end

local M = {}
M.max_items = 40 -- children shown per container in the text tree
M.max_depth = 48 -- levels shown in the text tree (nesting comes from the file)

-- ---- scalar formatting (Python's repr, roughly) ---------------------------
local function num(x)
  if x ~= x then return "nan" end
  if x == math.huge then return "inf" elseif x == -math.huge then return "-inf" end
  if x == math.floor(x) and math.abs(x) < 2 ^ 53 then return string.format("%d", x) end
  for _, p in ipairs { 15, 16, 17 } do
    local s = string.format("%." .. p .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end
M.num = num

local function quote(s, limit)
  limit = limit or 80
  local cut = #s > limit
  if cut then s = s:sub(1, limit) end
  s = s:gsub("[%c'\\\128-\255]", function(c)
    if c == "'" then return "\\'" elseif c == "\\" then return "\\\\"
    elseif c == "\n" then return "\\n" elseif c == "\t" then return "\\t" end
    return string.format("\\x%02x", c:byte())
  end)
  return "'" .. s .. "'" .. (cut and "..." or "")
end

local function shape_str(t) return "[" .. table.concat(t.shape, ", ") .. "]" end

local function tensor_str(t)
  local s = string.format("Tensor %s %s", t.dtype, shape_str(t))
  if t.is_quantized then s = s .. " " .. tostring(t.qscheme) end
  if t.is_parameter then s = s .. " (Parameter)" end
  return s
end

local container_names = {
  [values.List] = "list", [values.Tuple] = "tuple", [values.Set] = "set",
}

-- One line for a value, and whether it has children to show.
local function describe(x)
  local ty = pthcv.type(x)
  if ty == "none" then return "None" end
  if ty == "bool" then return x and "True" or "False" end
  if ty == "int" or ty == "float" then
    if type(x) == "number" then return num(x) end
    return tostring(x):gsub("[LU]+$", "")
  end
  if ty == "str" then return quote(x) end
  if ty == "bytes" then return (x.bytearray and "bytearray(b" or "b") .. quote(x.data, 40) .. (x.bytearray and ")" or "") end
  if ty == "complex" then return "complex(" .. num(x.re) .. ", " .. num(x.im) .. ")" end
  if ty == "bigint" then return tostring(x) end
  if ty == "global" then return "global " .. esc(x.name) end
  if ty == "tensor" then return tensor_str(x) end
  if ty == "dict" then
    local cls = OrderedDict.attrs(x).class
    return string.format("%s (%d)", cls == "dict" and "dict" or "OrderedDict", OrderedDict.len(x)), true
  end
  if ty == "list" or ty == "tuple" or ty == "set" then
    local name = container_names[getmetatable(x)]
    if ty == "set" and x.frozen then name = "frozenset" end
    return string.format("%s (%d)", name, #x), true
  end
  if ty == "object" then
    local kind = sdmod.is_module(x) and " (module)" or ""
    return esc(x.class) .. kind, true
  end
  return tostring(x)
end

-- Children shown under a value: {label, value}
local function display_children(x)
  local ty = pthcv.type(x)
  local out = {}
  if ty == "dict" then
    for _, kv in ipairs(OrderedDict.items(x)) do
      local k = kv[1]
      out[#out + 1] = { type(k) == "string" and esc(k) or describe(k), kv[2] }
    end
  elseif ty == "list" or ty == "tuple" or ty == "set" then
    for i = 1, #x do out[#out + 1] = { string.format("[%d]", i - 1), x[i] } end
  elseif ty == "object" then
    if sdmod.is_module(x) then
      -- a module shows what its state_dict holds: parameters, buffers, submodules
      local d = sdmod.object_dict(x)
      local any = false
      for _, key in ipairs { "_parameters", "_buffers", "_modules" } do
        local sub = d[key]
        if OrderedDict.is(sub) then
          for _, kv in ipairs(OrderedDict.items(sub)) do
            if kv[2] ~= values.None then out[#out + 1] = { esc(kv[1]), kv[2] }; any = true end
          end
        end
      end
      if not any then -- TorchScript: attributes
        for _, kv in ipairs(OrderedDict.items(d)) do
          local v = kv[2]
          if Tensor.is(v) or sdmod.is_module(v) then out[#out + 1] = { esc(kv[1]), v } end
        end
      end
    else
      if x.args ~= nil and #x.args > 0 then out[#out + 1] = { "args", x.args } end
      if x.kwargs ~= nil then out[#out + 1] = { "kwargs", x.kwargs } end
      local d = sdmod.object_dict(x)
      if d then
        for _, kv in ipairs(OrderedDict.items(d)) do out[#out + 1] = { esc(kv[1]), kv[2] } end
      elseif x.state ~= nil then
        out[#out + 1] = { "state", x.state }
      end
      if x.items ~= nil then out[#out + 1] = { "items", x.items } end
    end
  end
  return out
end

-- The tree as lines, iteratively; a container already shown is not shown again.
function M.tree_lines(root, max_items, max_depth)
  max_items = max_items or M.max_items
  max_depth = max_depth or M.max_depth
  local lines = {}
  local shown = {}
  local stack = { { root, nil, 0 } }
  while #stack > 0 do
    local top = table.remove(stack)
    local x, label, depth = top[1], top[2], top[3]
    local indent = string.rep("  ", depth)
    if top.more then
      lines[#lines + 1] = indent .. "... (" .. top.more .. " more)"
    else
      local line, has_children = describe(x)
      local prefix = label and (label .. ": ") or ""
      if has_children and shown[x] then
        lines[#lines + 1] = indent .. prefix .. line .. " (shared, shown above)"
      else
        lines[#lines + 1] = indent .. prefix .. line
        if has_children and depth >= max_depth then
          lines[#lines + 1] = indent .. "  ... (deeper levels not shown)"
        elseif has_children then
          shown[x] = true
          local kids = display_children(x)
          local n = #kids
          local limit = max_items > 0 and math.min(n, max_items) or n
          if limit < n then stack[#stack + 1] = { more = n - limit, nil, nil, depth + 1 } end
          for i = limit, 1, -1 do
            stack[#stack + 1] = { kids[i][2], kids[i][1], depth + 1 }
          end
        end
      end
    end
  end
  return lines
end

-- ---- the report -------------------------------------------------------------
-- report(path) -> {path, format, globals, root, tensors = {{name, tensor}},
--                  state_dict = list or nil, state_dict_at, parameters,
--                  buffers, counted_by ("modules", "names" or "tensors"),
--                  modules = {{path, lines}}, tensor_bytes}
-- (parameters and buffers: reader/inspect_modules.lua)
function M.report(path, limits)
  local root, info = pthcv.load(path, limits)
  local r = { path = path, format = info.format, globals = info.globals, root = root,
              constants = info.constants }
  r.tensors = pthcv.named_tensors(root, info)
  local sd, at = sdmod.find(root)
  r.state_dict, r.state_dict_at = sd, at
  local bytes, seen, numel = 0, {}, 0
  for _, kv in ipairs(r.tensors) do
    bytes = bytes + kv[2].nbytes
    local id = tostring(kv[2].ct)
    if not seen[id] then seen[id] = true; numel = numel + kv[2].numel end
  end
  r.tensor_bytes = bytes
  local extra = require "pthcv.reader.inspect_modules"
  if sd or extra.modules(root)[1] then
    r.parameters, r.buffers, r.counted_by = extra.counts(root, sd)
  else
    r.parameters, r.buffers, r.counted_by = numel, 0, "tensors"
  end
  r.modules = extra.modules(root)
  if sd then r.architecture = M.architecture(sd) end
  return r
end

-- The zoo model a state_dict is (pthcv.models.recognize), for the report:
-- {name, task, options} when exactly one fits, else {candidates} (the
-- closest, or those that fit alike, best first), or nil without a zoo.
function M.architecture(list)
  local ok, rec = pcall(require, "pthcv.models.recognize")
  if not ok then return nil end
  local ok2, name, options, r = pcall(rec.recognize, list)
  if not ok2 then return nil end
  if name then return { name = name, task = r.task, options = options } end
  return { candidates = r.candidates, ambiguous = r.ambiguous }
end

-- The architecture line of the text report.
local function architecture_text(a)
  local rec = require "pthcv.models.recognize"
  if a.name then return rec.text(a.name, a.options) .. (a.task ~= "classification" and (" (" .. a.task .. ")") or "") end
  local c = a.candidates
  if a.ambiguous then
    local names = {}
    for _, x in ipairs(c) do if x.fits then names[#names + 1] = x.name end end
    return "ambiguous: the weights fit " .. table.concat(names, " and ") .. " alike"
  end
  if not c[1] or c[1].matched == 0 then return "none of the zoo's" end
  return string.format("none of the zoo's (closest: %s, %d%% of the keys match)", c[1].name, math.floor(c[1].score * 100))
end

local function pad(s, n) return s .. string.rep(" ", n - #s) end

function M.text(r, opts)
  opts = opts or {}
  local out = {}
  local function add(s) out[#out + 1] = printable_line(s) end
  add("file: " .. r.path)
  add("format: " .. r.format)
  local g = {}
  for _, x in ipairs(r.globals) do g[#g + 1] = esc(x.name) .. (x.unsafe and " (UNSAFE)" or "") end
  add("globals (" .. #g .. "): " .. table.concat(g, ", "))
  add("")
  add("tree:")
  for _, l in ipairs(M.tree_lines(r.root, opts.max_items)) do add("  " .. l) end
  if r.constants ~= nil then
    add("")
    add("constants (constants.pkl):")
    for _, l in ipairs(M.tree_lines(r.constants, opts.max_items)) do add("  " .. l) end
  end
  add("")
  add("tensors (" .. #r.tensors .. "):")
  local w1, w2, w3 = 4, 5, 5
  local rows = {}
  for _, kv in ipairs(r.tensors) do
    local t = kv[2]
    local row = { esc(kv[1]), t.dtype, shape_str(t), tostring(t.nbytes) }
    rows[#rows + 1] = row
    w1, w2, w3 = math.max(w1, #row[1]), math.max(w2, #row[2]), math.max(w3, #row[3])
  end
  if #rows > 0 then
    add("  " .. pad("name", w1) .. "  " .. pad("dtype", w2) .. "  " .. pad("shape", w3) .. "  bytes")
    for _, row in ipairs(rows) do
      add("  " .. pad(row[1], w1) .. "  " .. pad(row[2], w2) .. "  " .. pad(row[3], w3) .. "  " .. row[4])
    end
  end
  for _, m in ipairs(r.modules) do
    add("")
    add("module" .. (m[1] ~= "" and (" '" .. esc(m[1]) .. "'") or "") .. ", as torch prints it:")
    for _, l in ipairs(m[2]) do add("  " .. l) end
  end
  add("")
  add(string.format("total: %d tensors, %d bytes", #r.tensors, r.tensor_bytes))
  local how = r.counted_by == "names" and "; buffers: BatchNorm's running statistics, by name" or ""
  if r.counted_by == "tensors" then
    add(string.format("parameters: %d (no state_dict found; all tensors counted)", r.parameters))
  elseif r.state_dict then
    add(string.format("parameters: %d, buffers: %d (state_dict%s: %d tensors%s)", r.parameters, r.buffers,
        r.state_dict_at ~= "" and (" at '" .. esc(r.state_dict_at) .. "'") or "", #r.state_dict, how))
  else
    add(string.format("parameters: %d, buffers: %d (the modules' own)", r.parameters, r.buffers))
  end
  if r.architecture then add("architecture: " .. architecture_text(r.architecture)) end
  return table.concat(out, "\n") .. "\n"
end

local function array(t) return setmetatable(t, { __jsontype = "array" }) end

local tensor_keys = { "name", "dtype", "shape", "stride", "offset", "numel", "bytes",
                      "storage_key", "storage_nbytes", "requires_grad", "parameter",
                      "qscheme", "scale", "zero_point", "axis" }
-- key order of the JSON objects (dkjson's keyorder: each key once)
M.json_keyorder = { "file", "format", "globals", "tensors", "tensor_count", "tensor_bytes",
                    "parameters", "buffers", "state_dict", "found_at", "count", "architecture", "task", "options", "modules", "path", "repr", "values" }
for _, k in ipairs(tensor_keys) do M.json_keyorder[#M.json_keyorder + 1] = k end
M.json_keyorder[#M.json_keyorder + 1] = "unsafe"

function M.json_table(r)
  local tensors = {}
  for _, kv in ipairs(r.tensors) do
    local t = kv[2]
    local e = { name = json_text(kv[1]), dtype = t.dtype, shape = array(t.shape), stride = array(t.stride),
                offset = t.offset, numel = t.numel, bytes = t.nbytes,
                storage_key = t.storage_key, storage_nbytes = t.storage_nbytes,
                requires_grad = t.requires_grad, parameter = t.is_parameter }
    if t.is_quantized then
      e.qscheme = t.qscheme
      e.scale, e.zero_point, e.axis = t.scale, t.zero_point, t.axis
    end
    tensors[#tensors + 1] = e
  end
  local globals = {}
  for _, g in ipairs(r.globals) do globals[#globals + 1] = { name = json_text(g.name), unsafe = g.unsafe } end
  local extra = require "pthcv.reader.inspect_modules"
  local names = {}
  for _, kv in ipairs(r.tensors) do if names[kv[2]] == nil then names[kv[2]] = kv[1] end end
  local modules = {}
  for _, m in ipairs(r.modules or {}) do modules[#modules + 1] = { path = json_text(m[1]), ["repr"] = json_text(table.concat(m[2], "\n")) } end
  local j = { file = r.path, format = r.format, globals = array(globals), tensors = array(tensors),
              tensor_count = #r.tensors, tensor_bytes = r.tensor_bytes, parameters = r.parameters,
              buffers = r.buffers, modules = array(modules), values = extra.values(r.root, names) }
  if r.state_dict then j.state_dict = { found_at = json_text(r.state_dict_at), count = #r.state_dict } end
  local a = r.architecture
  if a and a.name then j.architecture = { name = a.name, task = a.task, options = a.options } end
  return j
end

function M.json(r)
  local json = require "dkjson"
  return json.encode(M.json_table(r), { keyorder = M.json_keyorder }) .. "\n"
end

return M
