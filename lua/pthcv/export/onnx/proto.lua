-- lua/pthcv/export/onnx/proto.lua: a minimal protobuf writer for the ONNX messages
-- pthcv emits (ModelProto, GraphProto, NodeProto, AttributeProto,
-- TensorProto, ValueInfoProto), field numbers from onnx/onnx.proto.
--
-- Why our own writer and not protobuf-c: we only ever write, the messages
-- are a handful of fields, and the wire format needs four things (varints,
-- tags, length-delimited bytes, little-endian floats). Doing it here keeps
-- the C core free of a generated-code step and of a library dependency, and
-- lets weights stream from tensor memory to the file without a copy. Its
-- output is checked by the real protobuf library: spec/onnx_spec.lua reads
-- every file back with python3-onnx (onnx.load, onnx.checker) and OpenCV.
--
-- A message is built as a flat list of parts (Lua strings, or raw tensor
-- byte ranges {ptr, n, keep}) with its total size, so that a 500 MB VGG
-- is written piece by piece: length prefixes are known before the bytes.
local ffi = require "ffi"

local M = {}

-- ---- wire primitives ------------------------------------------------------
local VARINT, I64, LEN, I32 = 0, 1, 2, 5

-- Base-128 varint of a non-negative number or an int64 (negative int64
-- values take ten bytes, as protobuf encodes them).
local function varint(v)
  if type(v) == "number" and v >= 0 and v < 2 ^ 31 then
    if v < 128 then return string.char(v) end
    local out = {}
    while v >= 128 do
      out[#out + 1] = string.char(v % 128 + 128)
      v = math.floor(v / 128)
    end
    out[#out + 1] = string.char(v)
    return table.concat(out)
  end
  local u = ffi.cast("uint64_t", ffi.cast("int64_t", v))
  local out = {}
  while u >= 128 do
    out[#out + 1] = string.char(tonumber(u % 128) + 128)
    u = u / 128
  end
  out[#out + 1] = string.char(tonumber(u))
  return table.concat(out)
end
M.varint = varint

local function tag(field, wire) return varint(field * 8 + wire) end

local f32 = ffi.new("float[1]")
local function fixed32_float(x)
  f32[0] = x
  return ffi.string(f32, 4) -- x86-64 and AArch64 are little-endian, as protobuf
end

-- ---- messages -------------------------------------------------------------
local Msg = {}
Msg.__index = Msg

function M.message() return setmetatable({ parts = {}, size = 0 }, Msg) end

function Msg:raw(s)
  self.parts[#self.parts + 1] = s
  self.size = self.size + #s
  return self
end

function Msg:int(field, v) return self:raw(tag(field, VARINT) .. varint(v)) end
function Msg:float(field, v) return self:raw(tag(field, I32) .. fixed32_float(v)) end
function Msg:bytes(field, s) return self:raw(tag(field, LEN) .. varint(#s) .. s) end
Msg.string = Msg.bytes

-- Packed repeated int64 (proto3 packs repeated scalars; proto2 parsers accept it).
function Msg:ints(field, list)
  local body = {}
  for i, v in ipairs(list) do body[i] = varint(v) end
  return self:bytes(field, table.concat(body))
end
function Msg:floats(field, list)
  local body = {}
  for i, v in ipairs(list) do body[i] = fixed32_float(v) end
  return self:bytes(field, table.concat(body))
end

-- A nested message as a length-delimited field; its parts are moved in.
function Msg:message(field, sub)
  self:raw(tag(field, LEN) .. varint(sub.size))
  local parts = self.parts
  for _, p in ipairs(sub.parts) do parts[#parts + 1] = p end
  self.size = self.size + sub.size
  return self
end

-- n bytes at ptr as a bytes field, written straight from memory; keep is
-- whatever keeps ptr alive (the tensor) until the message is written.
function Msg:raw_bytes(field, ptr, n, keep)
  self:raw(tag(field, LEN) .. varint(n))
  self.parts[#self.parts + 1] = { ptr = ptr, n = n, keep = keep }
  self.size = self.size + n
  return self
end

-- The whole message as one string (small messages, tests).
function Msg:tostring()
  local out = {}
  for i, p in ipairs(self.parts) do
    out[i] = type(p) == "string" and p or ffi.string(p.ptr, p.n)
  end
  return table.concat(out)
end

ffi.cdef [[
typedef struct pthcv_onnx_FILE pthcv_onnx_FILE;
pthcv_onnx_FILE *fopen(const char *path, const char *mode) __asm__("fopen");
size_t fwrite(const void *p, size_t size, size_t n, pthcv_onnx_FILE *f) __asm__("fwrite");
int fclose(pthcv_onnx_FILE *f) __asm__("fclose");
]]

-- Writes the message to path (through path.tmp, renamed when complete, so
-- the file is whole or absent).
function Msg:write_file(path)
  local tmp = path .. ".tmp"
  local f = ffi.C.fopen(tmp, "wb")
  if f == nil then error("pthcv: cannot create " .. tmp, 0) end
  local ok = true
  for _, p in ipairs(self.parts) do
    if type(p) == "string" then
      ok = ffi.C.fwrite(p, 1, #p, f) == #p
    else
      ok = ffi.C.fwrite(p.ptr, 1, p.n, f) == p.n
    end
    if not ok then break end
  end
  ok = (ffi.C.fclose(f) == 0) and ok
  if not ok then
    os.remove(tmp)
    error("pthcv: writing " .. path .. " failed (disk full?)", 0)
  end
  local rok, rerr = os.rename(tmp, path)
  if not rok then os.remove(tmp); error("pthcv: " .. tostring(rerr), 0) end
end

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

-- AttributeProto: name 1, f 2, i 3, s 4, floats 7, ints 8, type 20
-- (FLOAT 1, INT 2, STRING 3, FLOATS 6, INTS 7). value: a number (with
-- kind "float" or "int"), a string, or a list {kind = "ints"|"floats", ...}.
function M.attribute(name, kind, value)
  local m = M.message():string(1, name)
  if kind == "float" then m:float(2, value):int(20, 1)
  elseif kind == "int" then m:int(3, value):int(20, 2)
  elseif kind == "string" then m:bytes(4, value):int(20, 3)
  elseif kind == "floats" then m:floats(7, value):int(20, 6)
  elseif kind == "ints" then m:ints(8, value):int(20, 7)
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
-- shape 2: TensorShapeProto{dim 1: Dimension{dim_value 1}}}}}
function M.value_info(name, elem_type, shape)
  local sh = M.message()
  for _, d in ipairs(shape) do sh:message(1, M.message():int(1, d)) end
  local tt = M.message():int(1, elem_type):message(2, sh)
  return M.message():string(1, name):message(2, M.message():message(1, tt))
end

-- GraphProto: node 1, name 2, initializer 5, input 11, output 12.
-- ModelProto: ir_version 1, producer_name 2, producer_version 3, graph 7,
-- opset_import 8: OperatorSetIdProto{domain 1, version 2}.
function M.model(g, o)
  local graph = M.message()
  for _, n in ipairs(g.nodes) do graph:message(1, n) end
  graph:string(2, g.name)
  for _, t in ipairs(g.initializers) do graph:message(5, t) end
  for _, v in ipairs(g.inputs) do graph:message(11, v) end
  for _, v in ipairs(g.outputs) do graph:message(12, v) end
  local m = M.message():int(1, o.ir_version):string(2, "pthcv"):string(3, o.producer_version or "")
  m:message(7, graph)
  m:message(8, M.message():string(1, ""):int(2, o.opset))
  return m
end

return M
