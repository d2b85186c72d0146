-- lua/pthcv/jit/archive.lua: a TorchScript archive's parts as the
-- interpreter needs them: the object tree (data.pkl), the constants
-- (constants.pkl), and its code, parsed on demand into class and function
-- records by qualified name.
--
--   local a = archive.open("model.pt")
--   a.root                                   -- Object(__torch__.torchvision.models.resnet.ResNet)
--   local cls = a:class("__torch__.torchvision.models.resnet.ResNet")
--   cls.methods.forward                      -- its DEF node; cls.file "code/__torch__/torchvision/models/resnet.py"
--   a:func("__torch__.torch.nn.functional.relu")
--
-- A qualified name a.b.C lives in code/a/b.py (mangled classes in
-- code/a/___torch_mangle_7.py as a.___torch_mangle_7.C). Files are parsed
-- the first time one of their names is needed, so a file nothing uses is
-- never read. Nothing in the archive is run: class bodies are read as
-- declarations, and anything else in them is refused.
local ffi = require "ffi"
local core = require "pthcv.core"
local tree = require "pthcv.reader.tree"
local ast = require "pthcv.jit.ast"
local V = require "pthcv.jit.values"

local C = core.C
local M = {}
local Archive = {}
Archive.__index = Archive

local function fail(where, msg) error("pthcv: " .. where .. ": " .. msg, 0) end

-- archive.open(path [, opts]) -> Archive. opts: the reader's limits
-- (pthcv.load's) and the parser's (max_source, max_tokens, max_nesting,
-- max_literal).
function M.open(path, opts)
  opts = opts or {}
  local o = ffi.new("pthcv_options")
  C.pthcv_options_init(o)
  for _, k in ipairs { "max_depth", "max_memo", "max_string", "max_pickle", "max_values", "max_total_bytes",
                       "max_zip_entries", "max_zip_ratio", "max_expanded_bytes" } do
    if opts[k] ~= nil then o[k] = opts[k] end
  end
  local out = ffi.new("pthcv_file *[1]")
  core.check(C.pthcv_open(path, o, out), "cannot open " .. path)
  local f = out[0]
  local ok, a = pcall(function()
    local format = ffi.string(C.pthcv_file_format(f))
    if format ~= "torchscript" then
      fail(path, "not a TorchScript archive (a " .. format .. " file: torch.jit.save writes TorchScript; "
                 .. "load this one with pthcv.load, or nn.from_module for a whole-model pickle)")
    end
    local self = setmetatable({ path = path, sources = {}, files = {}, classes = {}, functions = {},
                                limits = opts }, Archive)
    self.root = tree.convert(C.pthcv_file_root(f))
    self.constants = tree.convert(C.pthcv_file_constants(f)) or V.tuple()
    for i = 0, tonumber(C.pthcv_file_record_count(f)) - 1 do
      local name = ffi.string(C.pthcv_file_record_name(f, i))
      if name:match("^code/.+%.py$") then
        local len = ffi.new("int64_t[1]")
        local p = C.pthcv_file_read_record(f, name, len)
        if p == nil then core.fail("cannot read " .. name) end
        self.sources[name] = ffi.string(p, len[0])
        C.pthcv_free(p)
      end
    end
    return self
  end)
  C.pthcv_close(f)
  if not ok then error(a, 0) end
  return a
end

-- The file of a module path ("__torch__.a.b" -> "code/__torch__/a/b.py").
local function file_of(modpath) return "code/" .. modpath:gsub("%.", "/") .. ".py" end

-- Evaluates a class constant's literal (Final[...] = value): numbers,
-- strings, bools, None, tuples and lists of them, CONSTANTS.cN.
function Archive:literal(e, where)
  local k = e.k
  if k == "INT" or k == "FLOAT" then return e.v end
  if k == "STR" then return e.s end
  if k == "CONST" then return e.op == "None" and V.None or e.op == "True" end
  if k == "NAME" and (e.s == "inf" or e.s == "nan") then return e.s == "inf" and math.huge or 0 / 0 end
  if k == "UNARY" and e.op == "neg" then return -self:literal(e[1], where) end
  if k == "TUPLE" or k == "LIST" then
    local out = {}
    for i = 1, #e do out[i] = self:literal(e[i], where) end
    return k == "TUPLE" and V.tuple(out) or V.list(out)
  end
  if k == "ATTR" and e[1].k == "NAME" and e[1].s == "CONSTANTS" then return self:constant(e.s, where) end
  fail(where .. ":" .. e.line, "a class constant must be a literal, found " .. ast.text(e))
end

-- CONSTANTS.cN
function Archive:constant(name, where)
  local n = tonumber(name:match("^c(%d+)$"))
  if not n or self.constants[n + 1] == nil then
    fail(where, "CONSTANTS." .. name .. " is not in constants.pkl (" .. #self.constants .. " constants)")
  end
  return self.constants[n + 1]
end

local SPECIAL = { __parameters__ = "parameters", __buffers__ = "buffers",
                  __forward_hooks__ = "forward_hooks", __forward_pre_hooks__ = "forward_pre_hooks" }

-- One statement of a class body into the record cls.
local function class_statement(self, cls, st, file)
  local where = file .. ":" .. st.line
  local k = st.k
  if k == "DEF" then
    cls.methods[st.s] = st
  elseif k == "PASS" then
    return
  elseif k == "ASSIGN" and #st == 2 and st[1].k == "NAME" and SPECIAL[st[1].s] then
    local list = {}
    for i = 1, #st[2] do
      if st[2][i].k ~= "STR" then fail(where, st[1].s .. " must list strings") end
      list[i] = st[2][i].s
    end
    cls[SPECIAL[st[1].s]] = list
  elseif k == "ASSIGN" and #st == 2 and st[1].k == "NAME" and st[1].s == "__annotations__" then
    return  -- __annotations__ = []
  elseif k == "ASSIGN" and #st == 2 and st[1].k == "SUBSCRIPT" and st[1][1].k == "NAME"
         and st[1][1].s == "__annotations__" and st[1][2].k == "STR" then
    local name = st[1][2].s
    if not cls.attr_types[name] then cls.attr_order[#cls.attr_order + 1] = name end
    cls.attr_types[name] = st[2]
  elseif k == "ANNASSIGN" and st[1].k == "NAME" then
    local name, ty = st[1].s, st[2]
    if ty.k == "SUBSCRIPT" and ty[1].k == "NAME" and ty[1].s == "Final" then
      if st[3].k == "EMPTY" then fail(where, "the Final constant " .. name .. " has no value") end
      cls.constants[name] = self:literal(st[3], where)
      cls.constant_order[#cls.constant_order + 1] = name
    else
      if st[3].k ~= "EMPTY" then fail(where, "an attribute declaration with a value (" .. name .. ")") end
      if not cls.attr_types[name] then cls.attr_order[#cls.attr_order + 1] = name end
      cls.attr_types[name] = ty
      if cls.kind == "namedtuple" then
        cls.fields[#cls.fields + 1] = name
        cls.field_index[name] = #cls.fields
      end
    end
  elseif k == "ASSIGN" and #st == 2 and st[1].k == "NAME" and cls.kind == "enum" then
    cls.constants[st[1].s] = self:literal(st[2], where)
    cls.constant_order[#cls.constant_order + 1] = st[1].s
  else
    fail(where, "unexpected statement in the body of class " .. cls.name .. " (only declarations and methods)")
  end
end

local KINDS = { Module = "module", NamedTuple = "namedtuple", Enum = "enum", Interface = "interface",
                ModuleInterface = "interface" }

local function class_record(self, node, modpath, file)
  local kind = "class"
  for i = 1, #node[1] do
    local b = ast.text(node[1][i])
    if not KINDS[b] then fail(file .. ":" .. node.line, "class " .. node.s .. " derives from " .. b .. ", which TorchScript does not write") end
    kind = KINDS[b]
  end
  local cls = { qualname = modpath .. "." .. node.s, name = node.s, file = file, line = node.line, kind = kind,
                parameters = {}, buffers = {}, attr_types = {}, attr_order = {}, constants = {},
                constant_order = {}, methods = {}, fields = {}, field_index = {}, compiled = {} }
  for _, st in ipairs(node[2]) do class_statement(self, cls, st, file) end
  if (cls.forward_hooks and #cls.forward_hooks > 0) or (cls.forward_pre_hooks and #cls.forward_pre_hooks > 0) then
    fail(file .. ":" .. node.line, "class " .. node.s .. " has forward hooks, which pthcv does not run")
  end
  cls.param_set, cls.buffer_set = {}, {}
  for _, n in ipairs(cls.parameters) do cls.param_set[n] = true end
  for _, n in ipairs(cls.buffers) do cls.buffer_set[n] = true end
  return cls
end

-- Parses the file of module path modpath (once) and records its classes
-- and functions. Returns false when the archive has no such file.
function Archive:load_module(modpath)
  local file = file_of(modpath)
  if self.files[file] ~= nil then return self.files[file] end
  local src = self.sources[file]
  if not src then self.files[file] = false; return false end
  local tree_ = ast.parse(src, file, self.limits)
  for _, st in ipairs(tree_) do
    if st.k == "CLASS" then
      local cls = class_record(self, st, modpath, file)
      self.classes[cls.qualname] = cls
    elseif st.k == "DEF" then
      self.functions[modpath .. "." .. st.s] = { qualname = modpath .. "." .. st.s, name = st.s, file = file, node = st }
    elseif st.k == "IMPORT" or st.k == "PASS" then
      -- imports name other files, which are read when used
    elseif st.k == "ASSIGN" and st[1].k == "NAME" and st[1].s == "op_version_set" then
      -- older archives record their operator version set
    else
      fail(file .. ":" .. st.line, "unexpected statement at the top of a code file (only classes, functions and imports)")
    end
  end
  self.files[file] = true
  return true
end

-- The record of a qualified name, or nil (and the file it was looked for).
local function lookup(self, qualname, tbl)
  local modpath = qualname:match("^(.*)%.[^.]+$")
  if not modpath then return nil end
  if self[tbl][qualname] == nil then self:load_module(modpath) end
  return self[tbl][qualname], file_of(modpath)
end

function Archive:class(qualname) return lookup(self, qualname, "classes") end
function Archive:func(qualname) return lookup(self, qualname, "functions") end

-- The class record of an object of the tree, or an error naming what is missing.
function Archive:class_of(obj, path)
  local name = obj.class
  if type(name) ~= "string" or name:sub(1, 10) ~= "__torch__." then
    fail(self.path, (path ~= "" and path or "the root") .. " is a " .. tostring(name) .. ", not a TorchScript object")
  end
  local cls, file = self:class(name)
  if not cls then fail(self.path, "class " .. name .. " of " .. (path ~= "" and path or "the root")
                                  .. " has no source in the archive (" .. file .. ")") end
  return cls
end

return M
