-- lua/pthcv/reader/tree.lua: the C value tree (pthcv_value nodes) as Lua values.
--
-- Iterative, never recursive: the nesting depth comes from the file. Each C
-- node is converted once, keyed by its address, so a value the pickle shares
-- (memo) is one shared Lua value and cycles (a list containing itself) are
-- safe. Containers are created empty when first met and filled from a work
-- stack.
local ffi = require "ffi"
local core = require "pthcv.core"
local values = require "pthcv.reader.values"
local OrderedDict = require "pthcv.reader.odict"
local Tensor = require "pthcv.tensor"
local C = core.C

local None, List, Tuple, Set = values.None, values.List, values.Tuple, values.Set
local Bytes, BigInt, Global, Object = values.Bytes, values.BigInt, values.Global, values.Object

local M = {}
local TWO53 = 2 ^ 53
local addr = core.addr

local K = {
  NONE = C.PTHCV_V_NONE, BOOL = C.PTHCV_V_BOOL, INT = C.PTHCV_V_INT, BIGINT = C.PTHCV_V_BIGINT,
  FLOAT = C.PTHCV_V_FLOAT, COMPLEX = C.PTHCV_V_COMPLEX, STR = C.PTHCV_V_STR,
  BYTES = C.PTHCV_V_BYTES, BYTEARRAY = C.PTHCV_V_BYTEARRAY, LIST = C.PTHCV_V_LIST,
  TUPLE = C.PTHCV_V_TUPLE, DICT = C.PTHCV_V_DICT, SET = C.PTHCV_V_SET,
  FROZENSET = C.PTHCV_V_FROZENSET, TENSOR = C.PTHCV_V_TENSOR, STORAGE = C.PTHCV_V_STORAGE,
  GLOBAL = C.PTHCV_V_GLOBAL, OBJECT = C.PTHCV_V_OBJECT,
}
M.kinds = K

local function cstr(p, len)
  if p == nil then return "" end
  if len then return ffi.string(p, tonumber(len)) end
  return ffi.string(p)
end

-- Converts the tree under `root` (a const pthcv_value *). NULL gives nil.
function M.convert(root)
  if root == nil then return nil end
  local memo = {}      -- node address -> Lua value (containers, tensors, objects)
  local tensors = {}   -- pthcv_tensor address -> Tensor
  local work = {}      -- nodes whose Lua container is created but not filled
  local nwork = 0

  -- The Lua value of a node; containers come back empty and are queued.
  local function get(p)
    if p == nil then return nil end
    local kind = p.kind
    if kind == K.NONE then return None
    elseif kind == K.BOOL then return tonumber(p.i) ~= 0
    elseif kind == K.INT then
      local i = p.i
      if i <= TWO53 and i >= -TWO53 then return tonumber(i) end
      return i -- int64_t cdata
    elseif kind == K.FLOAT then return tonumber(p.f)
    elseif kind == K.STR then return cstr(p.s, p.len)
    end
    local a = addr(p)
    local v = memo[a]
    if v ~= nil then return v end
    if kind == K.TENSOR or kind == K.STORAGE then
      local ta = addr(p.tensor)
      v = tensors[ta]
      if v == nil then
        if p.tensor == nil then core.fail("a tensor node without a tensor") end
        v = Tensor.wrap(p.tensor)
        tensors[ta] = v
      end
      memo[a] = v
      return v
    elseif kind == K.COMPLEX then v = values.complex(tonumber(p.f), tonumber(p.f_im))
    elseif kind == K.BIGINT then v = setmetatable({ bytes = cstr(p.s, p.len) }, BigInt)
    elseif kind == K.BYTES or kind == K.BYTEARRAY then
      v = setmetatable({ data = cstr(p.s, p.len), bytearray = kind == K.BYTEARRAY }, Bytes)
    elseif kind == K.GLOBAL then
      v = setmetatable({ name = cstr(p.s), unsafe = bit.band(p.flags, C.PTHCV_VF_UNSAFE) ~= 0 }, Global)
    else
      if kind == K.LIST then v = setmetatable({}, List)
      elseif kind == K.TUPLE then v = setmetatable({}, Tuple)
      elseif kind == K.SET or kind == K.FROZENSET then
        v = setmetatable({ frozen = kind == K.FROZENSET or nil }, Set)
      elseif kind == K.DICT then
        v = OrderedDict.new(bit.band(p.flags, C.PTHCV_VF_ORDERED) ~= 0
                            and "collections.OrderedDict" or "dict")
      elseif kind == K.OBJECT then
        v = setmetatable({ class = cstr(p.s), unsafe = bit.band(p.flags, C.PTHCV_VF_UNSAFE) ~= 0 }, Object)
      else
        error("pthcv: unknown value kind " .. tostring(kind), 0)
      end
      nwork = nwork + 1
      work[nwork] = p
    end
    memo[a] = v
    return v
  end

  -- a child: NULL pointers become None so arrays have no holes
  local function child(p)
    local v = get(p)
    if v == nil then return None end
    return v
  end

  local function key_of(p)
    local k = get(p)
    if k == nil or k ~= k then return "nan" end -- a NaN key cannot index a Lua table
    return k
  end

  local function fill_dict(d, p)
    local items, n = p.items, tonumber(p.n)
    for i = 0, n - 1 do
      local k = key_of(items[2 * i])
      d[k] = child(items[2 * i + 1])
    end
  end

  local result = get(root)
  while nwork > 0 do
    local p = work[nwork]
    work[nwork] = nil
    nwork = nwork - 1
    local v = memo[addr(p)]
    local kind = p.kind
    if kind == K.DICT then
      fill_dict(v, p)
      if p.state ~= nil then OrderedDict.attrs(v).state = get(p.state) end
    elseif kind == K.OBJECT then
      if p.args ~= nil then v.args = get(p.args) end
      if p.kwargs ~= nil then v.kwargs = get(p.kwargs) end
      if p.state ~= nil then v.state = get(p.state) end
      if p.n > 0 then
        if bit.band(p.flags, C.PTHCV_VF_OBJECT_DICT) ~= 0 then
          v.items = OrderedDict.new()
          fill_dict(v.items, p)
        else
          local l = setmetatable({}, List)
          for i = 0, tonumber(p.n) - 1 do l[i + 1] = child(p.items[i]) end
          v.items = l
        end
      end
    else -- list, tuple, set
      local items = p.items
      for i = 0, tonumber(p.n) - 1 do v[i + 1] = child(items[i]) end
    end
  end
  return result
end

return M
