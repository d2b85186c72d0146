-- exports_spec: libpthcv.so exports the C API of csrc/pthcv.h and nothing
-- else (nm -D). The library is built with -fvisibility=hidden and a version
-- script listing every function marked PTHCV_API (Makefile, exports.map), so
-- internal helpers (ops_input, ops_sum_f32, gcc's target_clones dispatchers,
-- the C++ standard library's templates) stay inside.
local support = require "support"
local core = require "pthcv.core"

-- The functions a header marks PTHCV_API, as a set.
local function marked(path)
  local text = assert(support.read_file(path), path)
  local set = {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    local name = line:match("^PTHCV_API [^(]-([%a_][%w_]*)%(")
    if name then set[name] = true end
  end
  return set
end

-- The defined dynamic symbols of a shared library, in nm's order.
local function exports(lib)
  local code, out, err = support.run("nm -D --defined-only " .. support.shell_quote(lib))
  assert(code == 0, "nm -D failed: " .. err)
  local list = {}
  for name in out:gmatch("%S+ %a ([^\n]+)") do list[#list + 1] = name end
  return list
end

describe("the libraries' exports", function()
  if support.run("command -v nm") ~= 0 then
    it("needs nm (binutils)", function() pending("nm is not installed") end)
    return
  end
  local api = marked(support.root .. "/csrc/pthcv.h")
  local lent = marked(support.root .. "/csrc/internal.h")  -- pthcv_fail, pthcv_clear_error
  local lib = core.path
  local codecs = lib:gsub("libpthcv%.so$", "libpthcv_imgcodecs.so")

  it("finds the API in the headers", function()
    assert.is_true(api.pthcv_open and api.pthcv_conv2d_forward and api.pthcv_image_read or false)
    assert.are.same({ pthcv_clear_error = true, pthcv_fail = true }, lent)
  end)

  it("libpthcv.so exports only pthcv_* functions marked PTHCV_API", function()
    local list = exports(lib)
    assert.is_true(#list > 50, "exports: " .. #list)
    local stray = {}
    for _, name in ipairs(list) do
      if not name:match("^pthcv_") or not (api[name] or lent[name]) then stray[#stray + 1] = name end
    end
    assert.are.same({}, stray)
  end)

  it("libpthcv.so exports every PTHCV_API function of pthcv.h but the image files' three and video's", function()
    local have = {}
    for _, name in ipairs(exports(lib)) do have[name] = true end
    local missing = {}
    for name in pairs(api) do
      if not have[name] and not name:match("^pthcv_image_[rdw]") and not name:match("^pthcv_video_") then
        missing[#missing + 1] = name
      end
    end
    table.sort(missing)
    assert.are.same({}, missing)
  end)

  -- A declaration left unmarked is not exported, and its first caller fails
  -- at run time ("undefined symbol"): the TorchScript parser's functions did
  -- after the version script landed.
  it("marks every function pthcv.h declares PTHCV_API", function()
    local text = assert(support.read_file(support.root .. "/csrc/pthcv.h"))
    local unmarked = {}
    for line in (text .. "\n"):gmatch("([^\n]*)\n") do
      local name = line:match("^[%a_][^(]-[^%w_](pthcv_[%w_]+)%(")
      if name and not line:match("^PTHCV_API ") and not line:match("^typedef ") then
        unmarked[#unmarked + 1] = name
      end
    end
    assert.are.same({}, unmarked)
  end)

  it("libpthcv_imgcodecs.so exports only pthcv_image_read, _decode and _write", function()
    local list = exports(codecs)
    table.sort(list)
    assert.are.same({ "pthcv_image_decode", "pthcv_image_read", "pthcv_image_write" }, list)
  end)

  it("libpthcv_videoio.so exports only the pthcv_video_ functions", function()
    local list = exports((lib:gsub("libpthcv%.so$", "libpthcv_videoio.so")))
    table.sort(list)
    local want = {}
    for name in pairs(api) do
      if name:match("^pthcv_video_") then want[#want + 1] = name end
    end
    table.sort(want)
    assert.is_true(#want >= 7, "video functions in pthcv.h: " .. #want)
    assert.are.same(want, list)
  end)
end)
