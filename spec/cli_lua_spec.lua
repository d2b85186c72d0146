-- cli_lua_spec: `pthcv lua FILE.lua [args]`, `pthcv repl` and `luajit -lpthcv`.
local support = require "support"

local lua_path = support.shell_quote(support.root .. "/lua/?.lua;" .. support.root .. "/lua/?/init.lua;;")

describe("pthcv lua", function()
  it("runs a script with pthcv loaded, its arguments in ... and arg", function()
    local f = support.tmpname(".lua")
    support.write_file(f, [[
local a, b = ...
print(a, b, #arg, arg[0] == ]] .. string.format("%q", f) .. [[, type(pthcv.load), pthcv.image.read ~= nil)
os.exit(3)
]])
    local code, out = support.pthcv("lua", f, "one", "two")
    assert.are.equal(3, code)
    assert.are.equal("one\ttwo\t2\ttrue\tfunction\ttrue\n", out)
    os.remove(f)
  end)

  it("fails with the script's error and stack", function()
    local f = support.tmpname(".lua")
    support.write_file(f, "local function inner() error('deep trouble') end\ninner()\n")
    local code, _, err = support.pthcv("lua", f)
    assert.are.equal(1, code)
    assert.matches("deep trouble", err, 1, true)
    assert.matches("in function 'inner'", err, 1, true)
    os.remove(f)
    code, _, err = support.pthcv("lua", "/nonexistent.lua")
    assert.are.equal(1, code)
    assert.matches("nonexistent.lua", err, 1, true)
    assert.are.equal(2, (support.pthcv("lua")))
  end)
end)

describe("pthcv repl", function()
  it("evaluates lines, prints expression values, continues open statements", function()
    local input = support.tmpname(".txt")
    support.write_file(input, table.concat({
      "img = pthcv.image.read(" .. string.format("%q", support.root .. "/examples/demo.jpg") .. ")",
      "img.shape[1], img.shape[2]",
      "for i = 1, 2 do",
      "  io.write(i * 10, ' ')",
      "end",
      "error('oops')",
      "'done'",
    }, "\n") .. "\n")
    -- support.run sends /dev/null to the command's stdin: the group's own < wins
    local code, out, err = support.run("{ luajit " .. support.shell_quote(support.bin) .. " repl <"
                                       .. support.shell_quote(input) .. "; }")
    assert.are.equal(0, code, err)
    assert.matches("300\t400\n", out, 1, true)
    assert.matches("10 20 ", out, 1, true)
    assert.matches("oops", err, 1, true)
    assert.matches('"done"\n', out, 1, true)
    os.remove(input)
  end)

  it("is what luajit -lpthcv gives: the global pthcv", function()
    local code, out = support.run("LUA_PATH=" .. lua_path .. " luajit -lpthcv -e 'print(pthcv.version == require(\"pthcv\").version)'")
    assert.are.equal(0, code)
    assert.are.equal("true\n", out)
    -- a require from Lua code sets no global
    code, out = support.run("LUA_PATH=" .. lua_path .. " luajit -e 'require \"pthcv\" print(rawget(_G, \"pthcv\"))'")
    assert.are.equal("nil\n", out)
  end)
end)
