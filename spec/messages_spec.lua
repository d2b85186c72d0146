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

  -- what `pthcv inspect` and `pthcv scan` print: the text escaped as
  -- messages are, JSON valid UTF-8 (its own escapes for control characters)
  local function valid_utf8(s) return printable((s:gsub("[\n\t]", " "))) end

  it("has its names escaped in pthcv inspect's text and JSON", function()
    local path = mutated("zip_state_dict.pth", { { "conv.weight", "co\255\27.weight" } })
    local code, out = support.pthcv("inspect", path)
    assert.are.equal(0, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find("\n    co\\xff\\x1b.weight: Tensor float32 [4, 3, 3, 3]\n", 1, true), out)
    assert.is_truthy(out:find("\n  co\\xff\\x1b%.weight +float32  %[4, 3, 3, 3%]  432\n"), out)
    code, out = support.pthcv("inspect", "--json", path)
    assert.are.equal(0, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find('"tensors":[{"name":"co\\\\xff\\u001b.weight"', 1, true), out)
    assert.is_truthy(out:find('{"tensor":"co\\\\xff\\u001b.weight"}', 1, true), out)
  end)

  it("has its globals escaped in pthcv scan's and inspect's text and JSON", function()
    local path = support.tmpname(".pkl")
    -- a plain pickle: {"k": po<ESC>[31msix.sys<0xff>tem("a"), "x": posix.sy<0xff><ESC>m}
    support.write_file(path, "\128\2}(X\1\0\0\0kcpo\27[31msix\nsys\255tem\nX\1\0\0\0a\133R"
                             .. "X\1\0\0\0xcposix\nsy\255\27m\nu.")
    local code, out = support.pthcv("scan", path)
    assert.are.equal(1, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find("\n  po\\x1b[31msix.sys\\xfftem\n", 1, true), out)
    assert.is_truthy(out:find("verdict: UNSAFE: references posix.sy\\xff\\x1bm\n", 1, true), out)
    code, out = support.pthcv("scan", "--json", path)
    assert.are.equal(1, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find('"unsafe":["posix.sy\\\\xff\\u001bm"]', 1, true), out)
    assert.is_truthy(out:find('{"name":"po\\u001b[31msix.sys\\\\xfftem","unsafe":false}', 1, true), out)
    -- inspect refuses the dangerous global, naming it escaped (above); the
    -- other one alone is shown in its tree and JSON
    support.write_file(path, "\128\2}(X\1\0\0\0kcpo\27[31msix\nsys\255tem\nX\1\0\0\0a\133Ru.")
    code, out = support.pthcv("inspect", path)
    assert.are.equal(0, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find("globals (1): po\\x1b[31msix.sys\\xfftem\n", 1, true), out)
    assert.is_truthy(out:find("\n    k: po\\x1b[31msix.sys\\xfftem\n", 1, true), out)
    code, out = support.pthcv("inspect", "--json", path)
    assert.are.equal(0, code)
    assert.is_true(valid_utf8(out), out)
    assert.is_truthy(out:find('"values":{"k":{"__class__":"po\\u001b[31msix.sys\\\\xfftem"', 1, true), out)
  end)

  it("has its keys escaped in load_state_dict's errors", function()
    local m = pthcv.nn.Linear(2, 1)
    local sd = m:state_dict()
    sd["w\255\27[2J"] = pthcv.zeros(1)
    local ok, err = pcall(m.load_state_dict, m, sd)
    assert.is_false(ok)
    assert.is_true(printable((tostring(err):gsub("[\n\t]", " "))), tostring(err))
    assert.is_truthy(tostring(err):find('Unexpected key(s) in state_dict: "w\\xff\\x1b[2J". ', 1, true), tostring(err))
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
