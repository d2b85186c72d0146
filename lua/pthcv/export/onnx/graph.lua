-- lua/pthcv/export/onnx/graph.lua: the graph a traced pass records.
--
-- Values are the tensors themselves (by identity) and get names: "input",
-- "t_<n>" for the outputs of nodes, parameter names (or "const_<n>") for
-- initializers. Nodes and initializers are kept as Lua records until the
-- evaluator (evaluate.lua) has checked them; to_proto() then writes them
-- with proto.lua.
--
--   node = {op = "Conv", inputs = {names}, outputs = {names}, name = "Conv_3",
--           attrs = {{name, kind, value}, ...}, where = "features.0 (nn.Conv2d)"}
--   g.refs[name]   the forward pass's value of a traced name (a reference of
--                  its own, so that the model's release() of the tensor
--                  does not free it before the check)
--   g.inits[i]     {name = ..., tensor = ..., source_dtype = ...}: exactly
--                  what the file holds, and the dtype the model held it in
local Tensor = require "pthcv.tensor"
local proto = require "pthcv.export.onnx.proto"
local release = require "pthcv.nn.release"

local is_tensor = Tensor.is
local M = {}

local Graph = {}
Graph.__index = Graph

local function refuse(msg) error("pthcv: export_onnx: " .. msg, 0) end
M.refuse = refuse

-- A node's attributes by name (their values, as written).
function M.attrs(node)
  local t = {}
  for _, a in ipairs(node.attrs) do t[a[1]] = a[3] end
  return t
end

-- param_names: tensor -> its state_dict name (initializers take them).
function M.new(param_names)
  return setmetatable({
    nodes = {}, inits = {}, init_of = {}, names = {}, traced = {}, refs = {}, origin = {}, keep = {},
    count = {}, used_names = {}, param_names = param_names or {},
    born = setmetatable({}, { __mode = "k" }),
    -- the op being recorded: its name and the module it runs in
    op_name = "?", where = "?",
  }, Graph)
end

-- A fresh, unused name starting with prefix.
function Graph:fresh(prefix)
  local n = (self.count[prefix] or 0) + 1
  self.count[prefix] = n
  local name = prefix .. "_" .. n
  while self.used_names[name] do
    n = n + 1
    self.count[prefix] = n
    name = prefix .. "_" .. n
  end
  self.used_names[name] = true
  return name
end

-- Whether t is a value the traced pass computed (not a constant).
function Graph:is_traced(t) return is_tensor(t) and self.traced[t] == true end

-- What a value is, for messages: "t_4 (the output of F.conv2d_packed in
-- features.3 (nn.Conv2d))", or a description of an unnamed tensor.
function Graph:describe(t)
  local name = self.names[t]
  if name and self.origin[name] then return name .. " (the output of " .. self.origin[name] .. ")" end
  if name then return name end
  if t.ct == nil then return "a released tensor" end
  return "a Tensor(" .. t.dtype .. ", [" .. table.concat(t.shape, ", ") .. "])"
end

-- The name of t as a node input: its value name when traced, else an
-- initializer holding its contents (hint names it when it has no
-- parameter name). Floating constants other than float32 are stored as
-- float32: OpenCV 4.6 reads no other float initializers. A tensor made in
-- the pass by no traced op (g.born) is refused: its values may come from
-- the input by a way the graph cannot record.
function Graph:input(t, hint)
  local name = self.names[t]
  if name then return name end
  local born = self.born[t]
  if born then
    refuse(string.format("%s: %s consumes %s, made in %s by no traced op (a direct C call, Tensor.wrap, "
      .. "or a function that does not go through pthcv.tensor.dispatch): the graph cannot compute it. "
      .. "Compute it with pthcv.F and Tensor methods, or declare it a constant with F.constant(t)",
      self.where, self.op_name, self:describe(t), born))
  end
  local init = t
  if init.is_floating_point and init.dtype ~= "float32" then init = init:float() end
  init = init:contiguous()
  name = self.param_names[t]
  if name == nil or self.used_names[name] then name = self:fresh(hint or "const") end
  self.used_names[name] = true
  self.names[t] = name
  self.keep[#self.keep + 1] = t
  self.inits[#self.inits + 1] = { name = name, tensor = init, source_dtype = t.dtype }
  self.init_of[name] = init
  return name
end

-- An initializer made from a Lua list (int64 shapes and axes, float scalars).
function Graph:constant(values, dtype, shape, hint)
  local t = Tensor.from_table(values, dtype)
  if shape then t = t:reshape(shape) end
  return self:input(t, hint or "const")
end
function Graph:ints(list, hint) return self:constant(list, "int64", { #list }, hint) end
function Graph:scalar(v, hint) return self:constant({ v }, "float32", {}, hint) end

-- Names t as the output of the node being recorded (a fresh name unless
-- given) and keeps a reference of its value for the check.
function Graph:output(t, name)
  name = name or self:fresh("t")
  self.names[t] = name
  self.traced[t] = true
  self.keep[#self.keep + 1] = t
  self.refs[name] = Tensor.wrap(t.ct)
  self.origin[name] = self.op_name .. " in " .. self.where
  return name
end

-- Before an op writes into the traced tensor t (pthcv.jit's in-place ops,
-- rec.inplace): the check's reference of t's current name keeps its
-- values (a copy), since the op's result gets a new name. Call it with
-- the hook inactive (the copy is no op of the pass).
function Graph:before_overwrite(t)
  local name = self.names[t]
  local ref = name and self.refs[name]
  if ref then
    self.refs[name] = ref:clone()
    release(ref)
  end
end

-- The result t is the same value as the traced input x (no node).
function Graph:alias(t, x)
  self.names[t] = self.names[x]
  self.traced[t] = true
  self.keep[#self.keep + 1] = t
end

-- Appends a node; attrs: {{name, kind, value}, ...} (proto.attribute).
-- outputs: names (strings); returns the first.
function Graph:node(op, inputs, outputs, attrs)
  self.nodes[#self.nodes + 1] = { op = op, inputs = inputs, outputs = outputs, name = self:fresh(op),
                                  attrs = attrs or {}, where = self.where }
  return outputs[1]
end

-- A node with one fresh intermediate output; returns its name.
function Graph:op(op, inputs, attrs) return self:node(op, inputs, { self:fresh("t") }, attrs) end

-- Renames value old to new everywhere (nodes, references, initializers).
function Graph:rename(old, new)
  if old == new then return end
  for _, n in ipairs(self.nodes) do
    for i, nm in ipairs(n.inputs) do if nm == old then n.inputs[i] = new end end
    for i, nm in ipairs(n.outputs) do if nm == old then n.outputs[i] = new end end
  end
  self.refs[new], self.refs[old] = self.refs[old], nil
  self.origin[new], self.origin[old] = self.origin[old], nil
  for t, nm in pairs(self.names) do if nm == old then self.names[t] = new end end
  self.used_names[new] = true
end

-- The initializers some node reads (the others, such as a reshape's
-- traced shape that --dynamic replaced, are not written).
function Graph:used_inits()
  local used = {}
  for _, n in ipairs(self.nodes) do for _, nm in ipairs(n.inputs) do used[nm] = true end end
  local out = {}
  for _, e in ipairs(self.inits) do if used[e.name] then out[#out + 1] = e end end
  return out
end

-- The nodes and initializers as proto messages (GraphProto's fields).
function Graph:to_proto()
  local nodes, inits = {}, {}
  for i, n in ipairs(self.nodes) do nodes[i] = proto.node(n.op, n.inputs, n.outputs, n.name, n.attrs) end
  for i, e in ipairs(self:used_inits()) do inits[i] = proto.tensor(e.name, e.tensor) end
  return nodes, inits
end

-- Frees the references kept for the check now (a VGG's activations are
-- hundreds of MB; the collector does not see their size).
function Graph:release()
  for name, t in pairs(self.refs) do release(t); self.refs[name] = nil end
end

return M
