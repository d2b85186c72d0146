-- lua/pthcv/export/onnx/proto.lua: the ONNX messages pthcv emits (ModelProto,
-- GraphProto, NodeProto, AttributeProto, TensorProto, ValueInfoProto),
-- field numbers from onnx/onnx.proto, written with the exporters' one
-- protobuf writer (lua/pthcv/export/protobuf.lua, whose wire primitives
-- this module passes on: M.message, M.varint).
local ffi = require "ffi"
local pb = require "pthcv.export.protobuf"

local M = { message = pb.message, varint = pb.varint }

-- ---- ONNX messages --------------------------------------------------------
-- TensorProto.DataType
M.DTYPE = { float32 = 1, uint8 = 2, int8 = 3, uint16 = 4, int16 = 5, int32 = 6, int64 = 7, bool = 9,
            float16 = 10, float64 = 11 }

-- TensorProto: dims 1, data_type 2, name 8, raw_data 9.
-- t: a contiguous pthcv Tensor of a dtype in DTYPE.
function M.tensor(name, t)
  local dt = M.DTYPE[t.dtype]
  if not dt then error("pthcv: export_onnx: tensor '" .. name .. "' has dtype " .. t.dtype .. ", which ONNX lacks", 0) end
  t = t:contiguous()
  local m = M.message()
  if t.ndim > 0 then m:ints(1, t.shape) end
  m:int(2, dt):string(8, name)
  m:raw_bytes(9, ffi.cast("const uint8_t *", t:data()), t.nbytes, t)
  return m
end

-- AttributeProto: name 1, f 2, i 3, s 4, g 6, floats 7, ints 8, type 20
-- (FLOAT 1, INT 2, STRING 3, GRAPH 5, FLOATS 6, INTS 7). value: a number
-- (with kind "float" or "int"), a string, a list {kind = "ints"|"floats",
-- ...}, or a GraphProto message (kind "graph": a Loop's or Scan's body).
function M.attribute(name, kind, value)
  local m = M.message():string(1, name)
  if kind == "float" then m:float(2, value):int(20, 1)
  elseif kind == "int" then m:int(3, value):int(20, 2)
  elseif kind == "string" then m:bytes(4, value):int(20, 3)
  elseif kind == "floats" then m:floats(7, value):int(20, 6)
  elseif kind == "ints" then m:ints(8, value):int(20, 7)
  elseif kind == "graph" then m:message(6, value):int(20, 5)
  else error("pthcv: onnx attribute kind " .. tostring(kind)) end
  return m
end

-- NodeProto: input 1, output 2, name 3, op_type 4, attribute 5.
-- attrs: a list of {name, kind, value}.
function M.node(op, inputs, outputs, name, attrs)
  local m = M.message()
  for _, s in ipairs(inputs) do m:string(1, s) end
  for _, s in ipairs(outputs) do m:string(2, s) end
  m:string(3, name):string(4, op)
  for _, a in ipairs(attrs or {}) do m:message(5, M.attribute(a[1], a[2], a[3])) end
  return m
end

-- ValueInfoProto{name 1, type 2: TypeProto{tensor_type 1: {elem_type 1,
-- shape 2: TensorShapeProto{dim 1: Dimension{dim_value 1, dim_param 2}}}}}
-- shape: numbers, or strings for symbolic dims ("batch").
function M.value_info(name, elem_type, shape)
  local sh = M.message()
  for _, d in ipairs(shape) do
    if type(d) == "string" then sh:message(1, M.message():string(2, d))
    else sh:message(1, M.message():int(1, d)) end
  end
  local tt = M.message():int(1, elem_type):message(2, sh)
  return M.message():string(1, name):message(2, M.message():message(1, tt))
end

-- GraphProto: node 1, name 2, initializer 5, input 11, output 12.
-- ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7,
-- opset_import 8: OperatorSetIdProto{domain 1, version 2}.
-- g: {name, nodes, initializers, inputs, outputs} (messages)
function M.graph(g)
  local graph = M.message()
  for _, n in ipairs(g.nodes) do graph:message(1, n) end
  graph:string(2, g.name)
  for _, t in ipairs(g.initializers) do graph:message(5, t) end
  for _, v in ipairs(g.inputs) do graph:message(11, v) end
  for _, v in ipairs(g.outputs) do graph:message(12, v) end
  return graph
end

function M.model(g, o)
  local graph = M.graph(g)
  local m = M.message():int(1, o.ir_version):string(2, "pthcv"):string(3, o.producer_version or "")
  m:message(7, graph)
  m:message(8, M.message():string(1, ""):int(2, o.opset))
  return m
end

return M
