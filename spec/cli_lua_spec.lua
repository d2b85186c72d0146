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

-- Runs the REPL on `lines` (stdin not a terminal); returns code, out, err.
local function repl(lines)
  local input = support.tmpname(".txt")
  support.write_file(input, table.concat(lines, "\n") .. "\n")
  local code, out, err = support.run("{ luajit " .. support.shell_quote(support.bin) .. " repl <"
                                     .. support.shell_quote(input) .. "; }")
  os.remove(input)
  return code, out, err
end

describe("pthcv repl shows values", function()
  it("tensors with their values as torch prints them, then dtype and shape", function()
    local code, out, err = repl({ "pthcv.arange(6):view(2, 3)", "pthcv.tensor({1, 2}, 'int32')" })
    assert.are.equal(0, code, err)
    assert.are.equal("tensor([[0., 1., 2.],\n        [3., 4., 5.]])  -- float32 [2, 3]\n"
                     .. "tensor([1, 2], dtype=torch.int32)  -- int32 [2]\n", out)
  end)

  it("Python values as Python writes them, inert objects with their fields, Lua tables with their contents", function()
    local ck = support.shell_quote(support.root .. "/examples/tiny_resnet.pth"):gsub("'", '"')
    local code, out, err = repl({ "ck = pthcv.load(" .. ck .. ")", "ck.args", "ck.optimizer_state_dict.param_groups[1].lr",
                                  "{1, 2, x = {y = 'z'}, [10] = true}", "pthcv.load(" .. ck .. ").arch" })
    assert.are.equal(0, code, err)
    assert.are.equal("Namespace(arch='tiny_resnet', lr=0.05, epochs=3, batch_size=4)\n0.05\n"
                     .. "{1, 2, [10] = true, x = {y = \"z\"}}\n\"tiny_resnet\"\n", out)
  end)

  it("help, and help(f) with f's documentation and where it is", function()
    local code, out, err = repl({ "help", "help(pthcv.F.conv2d)", "help(pthcv.image)" })
    assert.are.equal(0, code, err)
    assert.truthy(out:find("^pthcv's REPL: Lua"), out)
    assert.truthy(out:find("pthcv%.F%.conv2d  %(lua/pthcv/nn/[%w_]+%.lua:%d+%)\n  function F%.conv2d%(x, weight"), out)
    assert.truthy(out:find("F.conv2d(x, weight [, bias, stride, padding, dilation, groups])", 1, true), out)
    assert.truthy(out:find("pthcv.image: %d+ functions"), out)
    assert.truthy(out:find("blob, ", 1, true), out)
  end)

  it("edits lines with readline on a terminal", function()
    if support.run("command -v script") ~= 0 then pending("no script(1) to make a terminal") return end
    local input = support.tmpname(".txt")
    support.write_file(input, "6 * 7\n")
    local code, out = support.run("{ script -qec " .. support.shell_quote("luajit " .. support.shell_quote(support.bin)
                                  .. " repl") .. " /dev/null <" .. support.shell_quote(input) .. "; }")
    os.remove(input)
    assert.are.equal(0, code, out)
    if not out:find("(line editing: readline)", 1, true) then
      pending("libreadline.so.8 (Debian's libreadline8) is not installed: plain line reading")
      return
    end
    assert.truthy(out:find("[\r\n]42\r?\n"), out)
  end)
end)

describe("pthcv run --script", function()
  it("gets the global pthcv, so docs/custom-layers.md's script runs as written", function()
    local doc = support.read_file(support.root .. "/docs/custom-layers.md")
    local script = doc:match("```lua\n(local nn, F = pthcv.nn, pthcv.F.-)```")
    assert(script and script:find("return Net()", 1, true), "the Net script block of docs/custom-layers.md")
    local f = support.tmpname(".lua")
    support.write_file(f, script)
    local x, y = support.tmpname(".npy"), support.tmpname(".npy")
    local pthcv = require "pthcv"
    pthcv.save(x, pthcv.randn({ 1, 3, 16, 16 }, { seed = 2 }))
    local code, out, err = support.pthcv("run", "--script", f, "--init", "random", "--input", x, "--output", y)
    assert.are.equal(0, code, err)
    assert.truthy(out:find("float32 [1, 10]", 1, true), out)
    os.remove(f); os.remove(x); os.remove(y)
  end)
end)
