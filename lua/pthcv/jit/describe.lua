-- lua/pthcv/jit/describe.lua: what print(m) and m:graph() show of a
-- ScriptModule.
--
-- A layer's settings come from the archive: a scripted module keeps them
-- as attributes and Final class constants (kernel_size : Final[Tuple[int,
-- int]] = (3, 3)); a traced one only as the literal arguments of the
-- operator its forward calls (torch._convolution(x, weight, None, [2, 2],
-- [3, 3], ...)), read by that operator's schema. torch.nn's layers print as
-- torch prints them (through pthcv.nn's own extra_repr), others list their
-- settings as name=value.
local ops = require "pthcv.jit.ops"
local schema = require "pthcv.jit.schema"
local V = require "pthcv.jit.values"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"

local M = {}

-- torch class path -> pthcv.nn class (those with a torch_class)
local nn_classes
local function nn_class(path)
  if not nn_classes then
    nn_classes = {}
    for _, cls in pairs(require "pthcv.nn") do
      if type(cls) == "table" and rawget(cls, "__torch_class") then nn_classes[cls.__torch_class] = cls end
    end
  end
  return nn_classes[path]
end

-- The first operator call in a method's body, its arguments by schema name
-- (literals only).
local function first_op(cls, archive, name)
  local def = cls.methods[name or "forward"]
  if not def then return nil end
  local found
  local function visit(e, depth)
    if found or type(e) ~= "table" or depth > 50 then return end
    if e.k == "CALL" and e[1].k == "ATTR" and e[1][1].k == "NAME" and e[1][1].s == "torch" then
      local op = ops.get("aten::" .. e[1].s)
      if op then
        local pos, kws, kwn = {}, {}, {}
        for i = 2, #e do if e[i].k == "KEYWORD" then kws[#kws + 1] = e[i][1]; kwn[#kwn + 1] = e[i].s else pos[#pos + 1] = e[i] end end
        local plan = schema.bind(op.schema, #pos, kwn)
        if plan then
          found = { op = op.name }
          for i, p in ipairs(plan) do
            local node = p.pos and pos[p.pos] or p.kw and kws[p.kw]
            local ok, v = true, p.default
            if node then ok, v = pcall(archive.literal, archive, node, cls.file) end
            if ok then found[op.schema.params[i].name] = v end
          end
          return
        end
      end
    end
    for i = 1, #e do visit(e[i], depth + 1) end
  end
  visit(def[3], 0)
  return found
end

local function pair(v)
  if type(v) == "number" then return { v, v } end
  if type(v) == "table" then return { v[1], v[2] or v[1] } end
  return v
end

local function shape(t, i) return Tensor.is(t) and t.shape[i] or nil end

-- Fields of pthcv.nn's class for a torch.nn layer, from the module m.
local builders = {}
function builders.Conv2d(m, s, op)
  local w = rawget(m, "weight")
  local groups = s.groups or (op and op.groups) or 1
  return { in_channels = s.in_channels or (shape(w, 2) or 0) * groups, out_channels = s.out_channels or shape(w, 1),
           kernel_size = pair(s.kernel_size) or { shape(w, 3), shape(w, 4) },
           stride = pair(s.stride or (op and op.stride)), padding = pair(s.padding or (op and op.padding)),
           dilation = pair(s.dilation or (op and op.dilation)), groups = groups, bias = rawget(m, "bias"),
           padding_mode = s.padding_mode or "zeros" }
end
function builders.BatchNorm2d(m, s, op)
  local mean = rawget(m, "running_mean")
  return { num_features = s.num_features or shape(mean, 1) or shape(rawget(m, "weight"), 1),
           eps = s.eps or (op and op.eps), momentum = s.momentum or (op and op.momentum) or 0.1,
           affine = s.affine == nil and rawget(m, "weight") ~= nil or s.affine == true,
           track_running_stats = s.track_running_stats == nil and mean ~= nil or s.track_running_stats == true }
end
builders.BatchNorm1d = builders.BatchNorm2d
function builders.Linear(m, s)
  local w = rawget(m, "weight")
  return { in_features = s.in_features or shape(w, 2), out_features = s.out_features or shape(w, 1), bias = rawget(m, "bias") }
end
function builders.MaxPool2d(_, s, op)
  op = op or {}
  local stride = s.stride or op.stride
  if type(stride) == "table" and #stride == 0 then stride = nil end
  return { kernel_size = s.kernel_size or op.kernel_size, stride = stride or s.kernel_size or op.kernel_size,
           padding = s.padding or op.padding, dilation = s.dilation or op.dilation, ceil_mode = s.ceil_mode or op.ceil_mode }
end
builders.AvgPool2d = builders.MaxPool2d
function builders.AdaptiveAvgPool2d(_, s, op) return { output_size = s.output_size or (op and op.output_size) } end
builders.AdaptiveMaxPool2d = builders.AdaptiveAvgPool2d
function builders.LayerNorm(m, s, op)
  return { normalized_shape = s.normalized_shape or (op and op.normalized_shape), eps = s.eps or (op and op.eps),
           elementwise_affine = s.elementwise_affine == nil and rawget(m, "weight") ~= nil or s.elementwise_affine == true }
end
function builders.Dropout(_, s, op)
  return { p = s.p or (op and op.p) or 0.5, inplace = s.inplace or (op and op.op:sub(-1) == "_") or false }
end
function builders.Flatten(_, s, op)
  return { start_dim = s.start_dim or (op and op.start_dim) or 1, end_dim = s.end_dim or (op and op.end_dim) or -1 }
end
for _, name in ipairs { "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "Hardtanh" } do
  builders[name] = function(_, s, op) return { inplace = s.inplace or (op and op.op:sub(-1) == "_") or false } end
end

-- The plain settings a scripted module keeps: Final constants and attributes
-- that are neither tensors, modules nor private.
local function settings(m, cls)
  local s, order = {}, {}
  for _, name in ipairs(cls.constant_order) do s[name] = cls.constants[name]; order[#order + 1] = name end
  for _, name in ipairs(cls.attr_order) do
    local v = rawget(m, name)
    local t = type(v)
    if name:sub(1, 1) ~= "_" and name ~= "training" and (t == "number" or t == "string" or t == "boolean"
       or V.is_tuple(v) or (V.is_list(v) and #v < 9)) and s[name] == nil then
      s[name] = v; order[#order + 1] = name
    end
  end
  return s, order
end

function M.extra_repr(m)
  local cls = rawget(m, "_class")
  local path = require("pthcv.jit.module").torch_class(cls.qualname)
  local s, order = settings(m, cls)
  local nn = nn_class(path)
  local build = builders[cls.name]
  if nn and build and path:match("^torch%.nn%.") then
    local ok, text = pcall(nn.extra_repr, build(m, s, first_op(cls, cls.ctx.archive)))
    if ok then return text end
  end
  local parts = {}
  for _, name in ipairs(order) do parts[#parts + 1] = name .. "=" .. py.value(s[name]) end
  return table.concat(parts, ", ")
end

-- Whether a method's body calls one of the operators torch.NAME (names: a set).
local function calls_op(cls, names, method)
  local def = cls.methods[method or "forward"]
  local function visit(e, depth)
    if type(e) ~= "table" or depth > 200 then return false end
    if e.k == "CALL" and e[1].k == "ATTR" and e[1][1].k == "NAME" and e[1][1].s == "torch" and names[e[1].s] then
      return true
    end
    for i = 1, #e do if visit(e[i], depth + 1) then return true end end
    return false
  end
  return def ~= nil and visit(def[3], 0)
end

-- A traced module keeps no Python attributes, only the code its forward
-- ran: what a zoo class's forward reads from an attribute is read from
-- that code. torchvision's InvertedResidual (mobilenet_v2, _v3) adds its
-- input to the block's output iff use_res_connect, and its traced forward
-- calls torch.add_ / torch.add iff it did.
local ADD = { add = true, add_ = true }
local TRACED_FIELDS = {
  ["torchvision.models.mobilenetv2.InvertedResidual"] = function(cls, s)
    if s.use_res_connect == nil then s.use_res_connect = calls_op(cls, ADD) end
  end,
}
TRACED_FIELDS["torchvision.models.mobilenetv3.InvertedResidual"] = TRACED_FIELDS["torchvision.models.mobilenetv2.InvertedResidual"]

-- The hyper-parameters of module m under pthcv.nn's field names (for
-- nn.from_module): a torch.nn layer's from its constants or its traced
-- operator's arguments, any other class's Final constants and attributes
-- (a traced one's from its code: TRACED_FIELDS).
function M.nn_fields(m)
  local cls = rawget(m, "_class")
  local s = settings(m, cls)
  local path = require("pthcv.jit.module").torch_class(cls.qualname)
  if TRACED_FIELDS[path] then TRACED_FIELDS[path](cls, s) end
  local build = builders[cls.name]
  if build and path:match("^torch%.nn%.") then
    local ok, fields = pcall(build, m, s, first_op(cls, cls.ctx.archive))
    if ok then
      for k, v in pairs(fields) do if V.is_list(v) or V.is_tuple(v) then fields[k] = { unpack(v) } end end
      return fields
    end
  end
  return s
end

-- ---- graph: the operators forward calls, by module path --------------------------------
local MAX_DEPTH = 64

local function join(a, b) if a == "" then return b end return a .. "." .. b end

-- The module instance an expression denotes (self, self.a.b, getattr(self,
-- "0"), a local assigned from one) and its path.
local function receiver(e, st)
  if e.k == "NAME" then
    if e.s == "self" then return st.m, st.prefix end
    local v = st.vars[e.s]
    if v then return v[1], v[2] end
  elseif e.k == "ATTR" or (e.k == "CALL" and e[1].k == "NAME" and e[1].s == "getattr" and e[3] and e[3].k == "STR") then
    local base, name = e[1], e.s
    if e.k == "CALL" then base, name = e[2], e[3].s end
    local o, p = receiver(base, st)
    local child = o and type(o) == "table" and rawget(o, name)
    if type(child) == "table" and rawget(child, "_class") then return child, join(p, name) end
  end
end

local walk_def

local function walk_expr(e, st, depth)
  if type(e) ~= "table" or depth > 200 then return end
  for i = 1, #e do walk_expr(e[i], st, depth + 1) end
  if e.k == "ASSIGN" and e[1].k == "NAME" then
    local o, p = receiver(e[2], st)
    if o then st.vars[e[1].s] = { o, p } end
  end
  if e.k ~= "CALL" then return end
  local callee = e[1]
  local name = V.dotted(callee)
  local loc = st.file .. ":" .. e.line
  if name and name:match("^torch%.[%w_]+$") then
    st.out[#st.out + 1] = { op = "aten::" .. name:sub(7), path = st.prefix, loc = loc }
  elseif name and name:match("^ops%.[%w_]+%.[%w_]+$") then
    local ns, op = name:match("^ops%.([%w_]+)%.([%w_]+)$")
    st.out[#st.out + 1] = { op = ns .. "::" .. op, path = st.prefix, loc = loc }
  elseif callee.k == "ATTR" and st.depth < MAX_DEPTH then
    local o, p = receiver(callee[1], st)
    if o then walk_def(o, rawget(o, "_class"), callee.s, p, st.out, st.depth + 1) end
  end
end

walk_def = function(m, cls, name, prefix, out, depth)
  local def = cls and cls.methods[name]
  if not def then return end
  local st = { m = m, vars = {}, prefix = prefix, file = cls.file, out = out, depth = depth }
  walk_expr(def[3], st, 0)
end

-- m:graph() -> {{op = "aten::_convolution", path = "layer1.0.conv1", loc = "code/...py:12"}, ...}:
-- every operator call of forward and of the submodule methods it calls, in
-- source order, by the path of the module that runs it.
function M.graph(m)
  local out = {}
  walk_def(m, rawget(m, "_class"), "forward", "", out, 0)
  return out
end

return M
