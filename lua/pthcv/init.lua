-- pthcv: read PyTorch .pth files from LuaJIT, without Python.
--
--   local pthcv = require "pthcv"
--   local obj = pthcv.load("ckpt.pth")        -- the object tree; nothing executed
--   local sd  = pthcv.state_dict(obj)         -- OrderedDict name -> Tensor
--   for name, t in pairs(sd) do print(name, t.dtype, table.concat(t.shape, "x")) end
--   local report = pthcv.scan("ckpt.pth")     -- {safe = true, globals = {...}}
--   pthcv.save("w.safetensors", sd)           -- .npy, .npz or .safetensors
--
-- See docs/lua-api.md.
local ffi = require "ffi"
local core = require "pthcv.core"
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local tree = require "pthcv.reader.tree"
local sdmod = require "pthcv.reader.state_dict"
local C = core.C

require("pthcv.reader.odict").install_pairs()

local pthcv = {
  None = values.None,
  List = values.List, Tuple = values.Tuple, Set = values.Set, Bytes = values.Bytes,
  Complex = values.Complex, BigInt = values.BigInt, Global = values.Global,
  Object = values.Object, OrderedDict = OrderedDict, Tensor = Tensor,
  C = C, ffi = ffi,
}

pthcv.version = ffi.string(C.pthcv_version())
pthcv.library_path = core.path

-- ---- options -----------------------------------------------------------
local option_fields = { "max_depth", "max_memo", "max_string", "max_pickle", "max_values",
                        "max_total_bytes", "max_zip_entries", "max_zip_ratio", "max_expanded_bytes" }

local function make_options(opts, scan_only)
  local o = ffi.new("pthcv_options")
  C.pthcv_options_init(o)
  if opts then
    for _, k in ipairs(option_fields) do
      if opts[k] ~= nil then o[k] = opts[k] end
    end
  end
  if scan_only then o.scan_only = 1 end
  return o
end

-- Opens a file, hands it to fn(f), closes it whatever happens.
local function with_file(path, opts, scan_only, fn)
  if type(path) ~= "string" then error("pthcv: expected a file path, got " .. type(path), 3) end
  local out = ffi.new("pthcv_file *[1]")
  core.check(C.pthcv_open(path, make_options(opts, scan_only), out), "cannot open " .. path)
  local f = out[0]
  local ok, a, b = pcall(fn, f)
  C.pthcv_close(f)
  if not ok then error(a, 0) end
  return a, b
end

local function globals_of(f)
  local list = {}
  local unsafe = ffi.new("int[1]")
  for i = 0, C.pthcv_file_global_count(f) - 1 do
    local g = C.pthcv_file_global(f, i, unsafe)
    if g ~= nil then list[#list + 1] = { name = ffi.string(g), unsafe = unsafe[0] ~= 0 } end
  end
  return list
end

-- pthcv.load(path [, opts]) -> root, info
-- root: the object tree as Lua values (see docs/lua-api.md); info: {path,
-- format = "zip"|"legacy"|"tar"|"torchscript"|"pickle" (a plain pickle file)
-- (or "npz", "safetensors", "filestorage": a dict name -> Tensor),
-- globals = {{name, unsafe}},
-- constants = the TorchScript constants tuple or nil}. Refuses files that
-- reference dangerous globals (the error names the global). opts: limits
-- max_depth, max_memo, max_string, max_pickle, max_values, max_total_bytes,
-- max_zip_entries, max_zip_ratio, max_expanded_bytes (see docs/security.md).
function pthcv.load(path, opts)
  return with_file(path, opts, false, function(f)
    local info = {
      path = path,
      format = ffi.string(C.pthcv_file_format(f)),
      globals = globals_of(f),
    }
    local root = tree.convert(C.pthcv_file_root(f))
    local consts = C.pthcv_file_constants(f)
    if consts ~= nil then info.constants = tree.convert(consts) end
    if root == nil then root = values.None end
    return root, info
  end)
end

-- pthcv.scan(path) -> {path, format, safe, globals = {{name, unsafe}}, unsafe = {names}[, error]}
-- Lists the globals of every pickle torch.load would unpickle from the file
-- (any pickle file, not only torch's formats), without refusing and without
-- reading any tensor data. When the file breaks off after a dangerous
-- global, the report still comes, unsafe, with `error` saying where it
-- broke off. Raises an error when the file cannot be read and holds no
-- dangerous global before the damage. Names are as the file spells them
-- (core.escape them for display).
function pthcv.scan(path, opts)
  return with_file(path, opts, true, function(f)
    local r = { path = path, format = ffi.string(C.pthcv_file_format(f)),
                globals = globals_of(f), unsafe = {} }
    for _, g in ipairs(r.globals) do
      if g.unsafe then r.unsafe[#r.unsafe + 1] = g.name end
    end
    r.safe = #r.unsafe == 0
    local e = C.pthcv_file_scan_error(f)
    if e ~= nil then r.error = "pthcv: " .. ffi.string(e) end
    return r
  end)
end

-- pthcv.state_dict(path_or_tree [, opts]) -> OrderedDict name -> Tensor
function pthcv.state_dict(x, opts)
  local where
  if type(x) == "string" then where = x; x = pthcv.load(x, opts) end
  return sdmod.state_dict(x, where)
end

-- pthcv.named_tensors(path_or_tree [, info]) -> {{name, tensor}, ...}: every
-- tensor in the tree under the names `pthcv inspect` shows. For a
-- TorchScript archive the tensors of constants.pkl follow, named
-- "constants.<i>" (from a path, or with the `info` pthcv.load returned).
function pthcv.named_tensors(x, info)
  if type(x) == "string" then x, info = pthcv.load(x, info) end
  local list = sdmod.named_tensors(x)
  if type(info) == "table" and info.constants ~= nil then
    sdmod.walk(info.constants, function(name, t) list[#list + 1] = { name, t } end, "constants")
  end
  return list
end

-- pthcv.type(x): "none", "bool", "int", "float", "str", "bytes", "list",
-- "tuple", "dict", "set", "complex", "bigint", "global", "object", "tensor",
-- or Lua's type() for anything else. A Lua number is "int" when integral:
-- the tree keeps no difference between Python's 7 and 7.0.
local class_types = {
  [values.List] = "list", [values.Tuple] = "tuple", [values.Set] = "set",
  [values.Bytes] = "bytes", [values.Complex] = "complex", [values.BigInt] = "bigint",
  [values.Global] = "global", [values.Object] = "object", [OrderedDict.mt] = "dict",
}
function pthcv.type(x)
  local t = type(x)
  if x == values.None then return "none" end
  if t == "boolean" then return "bool" end
  if t == "string" then return "str" end
  if t == "number" then
    if x == math.floor(x) and x > -math.huge and x < math.huge then return "int" end
    return "float"
  end
  if t == "cdata" then
    if Tensor.is(x) then return "tensor" end
    if ffi.istype("int64_t", x) or ffi.istype("uint64_t", x) then return "int" end
    return "cdata"
  end
  if t == "table" then return class_types[getmetatable(x)] or "table" end
  return t
end

-- Tensors made in Lua
pthcv.zeros = Tensor.zeros
pthcv.tensor = Tensor.from_table
pthcv.is_tensor = Tensor.is

pthcv.ones = Tensor.ones
pthcv.full = Tensor.full
pthcv.randn = Tensor.randn
pthcv.rand = Tensor.rand
pthcv.arange = Tensor.arange
pthcv.manual_seed = Tensor.manual_seed

-- pthcv.load_npy(path) -> Tensor: a NumPy .npy file (numeric dtypes).
function pthcv.load_npy(path) return require("pthcv.reader.npy").load(path) end

-- Inference, loaded on first use: pthcv.nn (layers), pthcv.F (functional),
-- pthcv.models (the torchvision zoo), pthcv.jit (TorchScript archives); the
-- reader alone does not pay for them.
local lazy = { nn = "pthcv.nn", F = "pthcv.nn.functional", models = "pthcv.models", image = "pthcv.image", jit = "pthcv.jit",
               classify = "pthcv.image.classify", quant = "pthcv.quant", ops = "pthcv.ops", video = "pthcv.image.video" }
setmetatable(pthcv, { __index = function(t, k)
  local m = lazy[k]
  if m then local v = require(m); rawset(t, k, v); return v end
end })

-- pthcv.detect(model, img [, opts]) / pthcv.segment(model, img [, opts]):
-- detection and segmentation models on OpenCV images, results as tables
-- (lua/pthcv/image/detect.lua, docs/detection.md)
function pthcv.detect(model, img, opts) return require("pthcv.image.detect").detect(model, img, opts) end
function pthcv.segment(model, img, opts) return require("pthcv.image.detect").segment(model, img, opts) end

-- Threads used by the kernels (default: every online CPU).
function pthcv.set_num_threads(n) C.pthcv_set_num_threads(n) end
function pthcv.get_num_threads() return C.pthcv_get_num_threads() end

-- pthcv.save(path, x [, opts]): .npy (one tensor), .npz or .safetensors (an
-- OrderedDict or table name -> Tensor, or {{name, tensor}, ...}).
function pthcv.save(path, x, opts)
  return require("pthcv.export.save").save(path, x, opts)
end

-- `luajit -lpthcv`: the interpreter itself required the module (no Lua
-- caller above require), so the session gets the global `pthcv`; a
-- require from Lua code sets no global.
do
  local caller = debug.getinfo(3, "S")
  if caller and caller.what == "C" and not debug.getinfo(4, "S") and rawget(_G, "pthcv") == nil then
    rawset(_G, "pthcv", pthcv)
  end
end

return pthcv
