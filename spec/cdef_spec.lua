-- cdef_spec: lua/pthcv/cdef.lua must hold exactly the declarations between
-- the PTHCV_CDEF_BEGIN/END markers of csrc/pthcv.h (regenerate it with
-- tools/gen-cdef), and LuaJIT must accept them.
local support = require "support"

local function normalize(s)
  s = s:gsub("/%*.-%*/", " ")   -- block comments
  s = s:gsub("//[^\n]*", " ")   -- line comments
  s = s:gsub("%s+", " ")
  s = s:gsub(" ?([%p]) ?", "%1") -- spaces around punctuation do not matter
  return (s:gsub("^ ", ""):gsub(" $", ""))
end

describe("cdef", function()
  local header = support.read_file(support.root .. "/csrc/pthcv.h")

  it("has the markers in csrc/pthcv.h", function()
    assert.is_truthy(header)
    assert.is_truthy(header:find("/* PTHCV_CDEF_BEGIN */", 1, true))
    assert.is_truthy(header:find("/* PTHCV_CDEF_END */", 1, true))
  end)

  it("lua/pthcv/cdef.lua matches the header (run tools/gen-cdef)", function()
    local body = header:match("/%* PTHCV_CDEF_BEGIN %*/(.-)/%* PTHCV_CDEF_END %*/")
    local copy = dofile(support.root .. "/lua/pthcv/cdef.lua")
    assert.are.equal(normalize((body:gsub("PTHCV_API ", ""))), normalize(copy))
  end)

  -- libpthcv.so is built with -fvisibility=hidden: a function declared
  -- without PTHCV_API would not be exported, and the FFI could not call it
  it("starts every function declaration with PTHCV_API", function()
    local body = header:match("/%* PTHCV_CDEF_BEGIN %*/(.-)/%* PTHCV_CDEF_END %*/")
    local missing = {}
    for line in (body .. "\n"):gmatch("([^\n]*)\n") do
      local name = line:match("^[%a_][%w_ %*]-(pthcv_[%w_]+)%(")
      if name and not line:match("^typedef") and not line:match("^PTHCV_API ") then
        missing[#missing + 1] = name
      end
    end
    assert.are.same({}, missing)
  end)

  it("is accepted by the LuaJIT FFI, with the C struct layouts", function()
    local ffi = require "ffi"
    require "pthcv.core" -- declares the cdef
    assert.are.equal(16, ffi.C.PTHCV_MAX_DIMS)
    -- the array fields are sized by the enum constant
    assert.are.equal(16 * 8, ffi.sizeof(ffi.typeof("int64_t[$]", ffi.C.PTHCV_MAX_DIMS)))
    assert.are.equal(ffi.offsetof("pthcv_tensor", "stride") - ffi.offsetof("pthcv_tensor", "shape"), 128)
  end)

  it("loads the library", function()
    local pthcv = require "pthcv"
    assert.is_string(pthcv.version)
    assert.are.equal("float32", require("ffi").string(pthcv.C.pthcv_dtype_name(0)))
  end)
end)
