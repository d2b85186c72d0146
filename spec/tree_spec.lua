-- tree_spec: converting the C value tree to Lua values: shared references stay
-- shared, cycles are safe, deep nesting needs no recursion. The pickles are
-- written by hand and wrapped in a zip like torch.save's.
local support = require "support"
local pthcv = require "pthcv"

-- a torch-style zip holding `pickle` as data.pkl
local function zip_with_pickle(pickle)
  local dir = support.tmpname(".d")
  os.execute("mkdir -p " .. support.shell_quote(dir .. "/archive"))
  support.write_file(dir .. "/archive/data.pkl", pickle)
  support.write_file(dir .. "/archive/version", "3\n")
  local out = dir .. ".pth"
  local code, _, err = support.run("cd " .. support.shell_quote(dir) .. " && zip -q -0 -r "
                                   .. support.shell_quote(out) .. " archive")
  assert(code == 0, "zip failed: " .. err)
  os.execute("rm -rf " .. support.shell_quote(dir))
  return out
end

local P2 = "\128\2"

describe("the value tree", function()
  it("keeps a value the pickle shares as one Lua value", function()
    -- [x, x] with x = [] memoized: EMPTY_LIST MARK EMPTY_LIST BINPUT 0 BINGET 0 APPENDS STOP
    local path = zip_with_pickle(P2 .. "](]q\0h\0e.")
    local root = pthcv.load(path)
    os.remove(path)
    assert.are.equal("list", pthcv.type(root))
    assert.are.equal(2, #root)
    assert.are.equal(root[1], root[2])
  end)

  it("survives a list that contains itself", function()
    -- EMPTY_LIST BINPUT 0 BINGET 0 APPEND STOP
    local path = zip_with_pickle(P2 .. "]q\0h\0a.")
    local root = pthcv.load(path)
    assert.are.equal(root, root[1])
    assert.are.same({}, pthcv.named_tensors(root))
    local code, out, err = support.pthcv("inspect", path)
    os.remove(path)
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("shown above", 1, true))
  end)

  it("converts nesting far deeper than Lua recursion allows", function()
    local n = 100000
    -- n EMPTY_LISTs, then n-1 APPENDs: each list holds the next
    local path = zip_with_pickle(P2 .. string.rep("]", n) .. string.rep("a", n - 1) .. ".")
    local ok, err = pcall(pthcv.load, path)
    assert.is_false(ok) -- the default depth limit refuses it
    assert.is_truthy(err:lower():find("depth", 1, true))
    local root = pthcv.load(path, { max_depth = 2 * n })
    os.remove(path)
    local depth, x = 0, root
    while x[1] do x = x[1]; depth = depth + 1 end
    assert.are.equal(n - 1, depth)
    assert.are.same({}, pthcv.named_tensors(root))
    local lines = require("pthcv.reader.inspect").tree_lines(root)
    assert.is_true(#lines < 100)
  end)

  it("maps None, booleans, ints, floats, strings and dicts", function()
    -- {'a': None, 'b': True, 'c': -3, 'd': 2.5, 'e': 'x', 7: False} as EMPTY_DICT MARK ... SETITEMS
    local pickle = P2 .. "}(" ..
      "X\1\0\0\0aN" .. "X\1\0\0\0b\136" .. "X\1\0\0\0cJ\253\255\255\255" ..
      "X\1\0\0\0dG\64\4\0\0\0\0\0\0" .. "X\1\0\0\0eX\1\0\0\0x" .. "K\7\137" .. "u."
    local path = zip_with_pickle(pickle)
    local d = pthcv.load(path)
    os.remove(path)
    assert.are.equal("dict", pthcv.type(d))
    assert.are.same({ "a", "b", "c", "d", "e", 7 }, d:keys())
    assert.are.equal(pthcv.None, d.a)
    assert.are.equal(true, d.b)
    assert.are.equal(-3, d.c)
    assert.are.equal(2.5, d.d)
    assert.are.equal("x", d.e)
    assert.are.equal(false, d[7])
  end)

  it("keeps 64-bit integers exact", function()
    -- LONG1 8 bytes: 2^62 + 1, and 2^70 as a BigInt (LONG1 9 bytes + sign byte)
    local path = zip_with_pickle(P2 .. "(\138\8\1\0\0\0\0\0\0\64" .. "\138\10\0\0\0\0\0\0\0\0\64\0" .. "t.")
    local t = pthcv.load(path)
    os.remove(path)
    assert.are.equal("tuple", pthcv.type(t))
    assert.are.equal("cdata", type(t[1]))
    assert.are.equal(4611686018427387905LL, t[1])
    assert.are.equal("bigint", pthcv.type(t[2]))
    assert.are.equal("1180591620717411303424", tostring(t[2]))
  end)
end)

describe("BigInt decimal", function()
  local dec = pthcv.BigInt.decimal
  it("prints two's complement bytes in decimal", function()
    assert.are.equal("0", dec(""))
    assert.are.equal("255", dec("\255\0"))
    assert.are.equal("-1", dec("\255"))
    assert.are.equal("-128", dec("\128"))
    assert.are.equal("18446744073709551616", dec("\0\0\0\0\0\0\0\0\1"))
    assert.are.equal("-18446744073709551616", dec("\0\0\0\0\0\0\0\0\255"))
  end)
end)
