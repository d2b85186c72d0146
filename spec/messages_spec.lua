-- messages_spec: what a file says reaches error messages escaped. A name or
-- record with bytes that are not UTF-8 or with control characters (a mutated
-- checkpoint once put a raw 0xff on stderr) shows as \xNN, a backslash as
-- \\; every message is printable UTF-8, whatever the file holds.
local support = require "support"
local pthcv = require "pthcv"
local core = require "pthcv.core"

-- Printable UTF-8: valid sequences, no C0/C1 control character, no DEL.
local function printable(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len = c < 0x80 and 1 or (c >= 0xC2 and c <= 0xDF) and 2 or (c >= 0xE0 and c <= 0xEF) and 3
                or (c >= 0xF0 and c <= 0xF4) and 4 or 0
    if len == 0 or c < 0x20 or c == 0x7F or i + len - 1 > n then return false, i end
    for k = 1, len - 1 do
      local b = s:byte(i + k)
      if b < 0x80 or b > 0xBF then return false, i end
    end
    if len == 2 and c == 0xC2 and s:byte(i + 1) < 0xA0 then return false, i end
    i = i + len
  end
  return true
end

local function load_error(path)
  local ok, err = pcall(pthcv.load, path)
  assert.is_false(ok, path .. " loaded")
  return tostring(err)
end

-- A copy of a fixture with every `from` replaced by `to` (same length, so
-- the zip's offsets stay right; pthcv does not check stored records' CRCs).
local function mutated(fixture, subs)
  local data = assert(support.read_file(support.root .. "/spec/fixtures/" .. fixture))
  for _, s in ipairs(subs) do
    assert(#s[1] == #s[2], "same length")
    local n
    data, n = data:gsub(s[1]:gsub("%p", "%%%0"), (s[2]:gsub("%%", "%%%%")))
    assert(n > 0, "no " .. s[1] .. " in " .. fixture)
  end
  local path = support.tmpname(".pth")
  support.write_file(path, data)
  return path
end

describe("core.escape", function()
  it("keeps printable UTF-8 and escapes the rest as \\xNN", function()
    assert.are.equal("features.0.weight", core.escape("features.0.weight"))
    assert.are.equal("café 模型", core.escape("café 模型"))
    assert.are.equal("a\\xffb", core.escape("a\255b"))
    assert.are.equal("x\\x0ay\\x1b[2J\\x7f\\x00", core.escape("x\ny\27[2J\127\0"))
    assert.are.equal("\\xc2\\x85", core.escape("\194\133"))         -- a C1 control
    assert.are.equal("\\xe6\\xa8", core.escape("\230\168"))         -- cut short
    assert.are.equal("\\xc0\\xae", core.escape("\192\174"))         -- overlong
    assert.are.equal("\\xed\\xa0\\x80", core.escape("\237\160\128")) -- a surrogate
    assert.are.equal("C:\\\\x41", core.escape("C:\\x41"))          -- never ambiguous
    assert.are.equal("7", core.escape(7))
  end)

  it("cuts at max bytes on a character boundary", function()
    local e = core.escape(string.rep("\255", 100), 20)
    assert.are.equal("\\xff\\xff\\xff\\xff\\xff...", e)
    assert.are.equal("abc", core.escape("abc", 20))
  end)
end)

describe("a mutated checkpoint", function()
  it("names a storage type with 0xff and an escape sequence, escaped", function()
    local path = mutated("zip_state_dict.pth", { { "FloatStorage", "Flo\255\27[2JStor" } })
    local err = load_error(path)
    assert.is_true(printable(err), err)
    assert.is_truthy(err:find("unknown type torch.Flo\\xff\\x1b[2JStor", 1, true), err)
  end)

  -- (libzip refuses names with control characters or bytes that are not
  -- UTF-8 in a zip that says its names are UTF-8, as torch's do)
  it("names its records in a folder whose name has a backslash, escaped", function()
    local path = mutated("zip_state_dict.pth", { { "zip_state_dict/", "mo\195\169le\\state_d/" },
                                                 { "FloatStorage", "Float\255torage" } })
    local err = load_error(path)
    assert.is_true(printable(err), err)
    assert.is_truthy(err:find("mo\195\169le\\\\state_d/data.pkl at byte", 1, true), err)
    assert.is_truthy(err:find("torch.Float\\xfftorage", 1, true), err)
  end)

  it("shows a refused global's raw bytes escaped, in pthcv.load and on pthcv inspect's stderr", function()
    local path = mutated("evil_posix_system_p2.pth", { { "system\n", "sy\255\8\27m\n" } })
    local err = load_error(path)
    assert.is_true(printable(err), err)
    assert.is_truthy(err:find("refusing unsafe global posix.sy\\xff\\x08\\x1bm", 1, true), err)
    local code, out, stderr = support.pthcv("inspect", path)
    assert.are_not.equal(0, code)
    assert.are.equal("", out)
    assert.is_true(printable((stderr:gsub("\n$", ""))), stderr)
    assert.is_truthy(stderr:find("posix.sy\\xff\\x08\\x1bm", 1, true), stderr)
  end)

  it("gives printable messages under a thousand random byte flips", function()
    local data = assert(support.read_file(support.root .. "/spec/fixtures/zip_state_dict.pth"))
    local from = data:find("zip_state_dict/data.pkl", 1, true) + #"zip_state_dict/data.pkl"
    local to = data:find("zip_state_dict/data/0", 1, true) - 1
    local path = support.tmpname(".pth")
    math.randomseed(20261201)
    local failures, checked = {}, 0
    for _ = 1, 1000 do
      local bytes = { data:byte(1, -1) }
      for _ = 1, 3 do
        bytes[math.random(from, to)] = math.random(0, 255)
      end
      local chunks = {}
      for i = 1, #bytes, 4096 do chunks[#chunks + 1] = string.char(unpack(bytes, i, math.min(i + 4095, #bytes))) end
      support.write_file(path, table.concat(chunks))
      local ok, err = pcall(pthcv.load, path)
      if not ok then
        checked = checked + 1
        if not printable(tostring(err)) then failures[#failures + 1] = tostring(err) end
      end
    end
    assert.is_true(checked > 100, "only " .. checked .. " mutations were refused")
    assert.are.same({}, failures)
  end)

  it("an object's class and a dict's keys are escaped when shown", function()
    local values = require "pthcv.reader.values"
    local o = setmetatable({ class = "__main__.N\255t" }, values.Object)
    assert.are.equal("Object(__main__.N\\xfft)", tostring(o))
    local d = pthcv.OrderedDict.new()
    d["a\27b"] = 1
    assert.are.equal("OrderedDict(1){a\\x1bb}", tostring(d))
    local ok, err = pcall(pthcv.state_dict, d)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("a dict with keys 'a\\x1bb'", 1, true), tostring(err))
  end)
end)
