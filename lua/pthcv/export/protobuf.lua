-- lua/pthcv/export/protobuf.lua: the one protobuf writer of pthcv's exporters
-- (ONNX: export/onnx/proto.lua; Caffe: export/caffe/schema.lua), binary and
-- text format.
--
-- Why our own writer and not protobuf-c: we only ever write, the messages
-- are a handful of fields, and the wire format needs four things (varints,
-- tags, length-delimited bytes, little-endian floats). Doing it here keeps
-- the C core free of a generated-code step and of a library dependency, and
-- lets weights stream from tensor memory to the file without a copy. Its
-- output is checked by real protobuf parsers: python3-onnx (onnx.load,
-- onnx.checker) and OpenCV's importers (ONNX and Caffe, binary and text).
--
-- Two levels:
--   * Msg, a binary message built as a flat list of parts (Lua strings, or
--     raw tensor byte ranges {ptr, n, keep}) with its total size, so that a
--     500 MB VGG is written piece by piece: length prefixes are known
--     before the bytes (M.message(), msg:int(field, v), ...);
--   * schemas: a message type as a list of fields {name, number, kind,
--     repeated = true, packed = true}, kind one of "string", "bytes",
--     "int" (int32/int64/uint32, varint), "bool", "float", "enum" (a table
--     name -> number), "tensor" (a packed repeated float field written
--     from a float32 tensor's memory) or another type's name. A value is a
--     Lua table keyed by field names (lists for repeated fields);
--     M.encode(schema, type, value) gives its Msg, M.text(schema, type,
--     value) its text format (fields in schema order; tensors are left out
--     of text, as Caffe's .prototxt leaves out the weights).
local ffi = require "ffi"

local M = {}

-- ---- wire primitives ------------------------------------------------------
local VARINT, LEN, I32 = 0, 2, 5

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

-- ---- binary messages ------------------------------------------------------
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

-- Packed repeated varints (proto3 packs repeated scalars; proto2 parsers
-- accept packed data for any repeated scalar field).
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
typedef struct pthcv_protobuf_FILE pthcv_protobuf_FILE;
pthcv_protobuf_FILE *fopen(const char *path, const char *mode) __asm__("fopen");
size_t fwrite(const void *p, size_t size, size_t n, pthcv_protobuf_FILE *f) __asm__("fwrite");
int fclose(pthcv_protobuf_FILE *f) __asm__("fclose");
]]

-- Writes parts (strings and {ptr, n} ranges) to path, through path.tmp
-- renamed when complete, so that the file is whole or absent.
function M.write_parts(path, parts)
  local tmp = path .. ".tmp"
  local f = ffi.C.fopen(tmp, "wb")
  if f == nil then error("pthcv: cannot create " .. tmp, 0) end
  local ok = true
  for _, p in ipairs(parts) do
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

function Msg:write_file(path) M.write_parts(path, self.parts) end

-- ---- schemas ----------------------------------------------------------------
local function field_value_error(typename, f, v)
  error(string.format("pthcv: protobuf: %s.%s: cannot write %s", typename, f[1], tostring(v)), 0)
end

local function enum_number(typename, f, v)
  local n = f[3][v]
  if n == nil then field_value_error(typename, f, v) end
  return n
end

-- One value of field f into msg.
local function put(schema, typename, msg, f, v)
  local kind = f[3]
  if kind == "string" or kind == "bytes" then msg:bytes(f[2], v)
  elseif kind == "int" then msg:int(f[2], v)
  elseif kind == "bool" then msg:int(f[2], v and 1 or 0)
  elseif kind == "float" then msg:float(f[2], v)
  elseif kind == "tensor" then
    local t = v:contiguous()
    if t.dtype ~= "float32" then field_value_error(typename, f, t) end
    msg:raw_bytes(f[2], ffi.cast("const uint8_t *", t:data()), t.nbytes, t)
  elseif type(kind) == "table" then msg:int(f[2], enum_number(typename, f, v))
  else msg:message(f[2], M.encode(schema, kind, v)) end
end

-- The binary Msg of value (a table keyed by field names) as type typename.
function M.encode(schema, typename, value)
  local fields = schema[typename] or error("pthcv: protobuf: no message type " .. tostring(typename), 0)
  local msg = M.message()
  for _, f in ipairs(fields) do
    local v = value[f[1]]
    if v ~= nil then
      if f.repeated and f.packed and (f[3] == "int" or f[3] == "float") then
        if #v > 0 then
          if f[3] == "int" then msg:ints(f[2], v) else msg:floats(f[2], v) end
        end
      elseif f.repeated then
        for _, x in ipairs(v) do put(schema, typename, msg, f, x) end
      else
        put(schema, typename, msg, f, v)
      end
    end
  end
  return msg
end

-- A string as the text format writes it (C escapes, double quotes).
local function quote(s)
  return '"' .. s:gsub('[%c"\\\128-\255]', function(c)
    if c == '"' then return '\\"' elseif c == "\\" then return "\\\\" elseif c == "\n" then return "\\n" end
    return string.format("\\%03o", c:byte())
  end) .. '"'
end

-- A float as the text format writes it: the shortest form that reads back
-- as the same float32 (up to 9 significant digits), no exponent-less
-- surprises for integers ("6" stays 6).
local function float_text(v)
  if v ~= v then return "nan" end
  if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
  f32[0] = v
  local want = f32[0]
  for digits = 6, 9 do
    local s = string.format("%." .. digits .. "g", want)
    f32[0] = tonumber(s)
    if f32[0] == want then return s end
  end
  return string.format("%.9g", want)
end
M.float_text = float_text

local function scalar_text(typename, f, v)
  local kind = f[3]
  if kind == "string" or kind == "bytes" then return quote(v) end
  if kind == "int" then return string.format("%d", v) end
  if kind == "bool" then return v and "true" or "false" end
  if kind == "float" then return float_text(v) end
  enum_number(typename, f, v)
  return v
end

-- The text format of value as type typename, each field on its own line
-- indented by indent.
function M.text(schema, typename, value, indent)
  indent = indent or ""
  local fields = schema[typename] or error("pthcv: protobuf: no message type " .. tostring(typename), 0)
  local lines = {}
  for _, f in ipairs(fields) do
    local v = value[f[1]]
    if v ~= nil and f[3] ~= "tensor" then
      for _, x in ipairs(f.repeated and v or { v }) do
        if type(f[3]) == "string" and schema[f[3]] then
          lines[#lines + 1] = indent .. f[1] .. " {\n" .. M.text(schema, f[3], x, indent .. "  ") .. indent .. "}\n"
        else
          lines[#lines + 1] = indent .. f[1] .. ": " .. scalar_text(typename, f, x) .. "\n"
        end
      end
    end
  end
  return table.concat(lines)
end

return M
