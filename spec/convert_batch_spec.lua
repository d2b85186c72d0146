-- convert_batch_spec: `pthcv convert FILES... -o DIR [--to EXT] [-j N]`.
local support = require "support"
local pthcv = require "pthcv"

local function q(s) return support.shell_quote(s) end

describe("pthcv convert FILES... -o DIR", function()
  local dir
  before_each(function()
    dir = support.tmpname("-batch")
    os.execute("mkdir -p " .. q(dir))
    os.execute("cp " .. q(support.root .. "/examples/tiny_resnet.pth") .. " " .. q(support.root ..
      "/examples/custom_model.pth") .. " " .. q(dir))
    support.write_file(dir .. "/broken.pth", "PK\3\4 not really a zip")
  end)
  after_each(function() os.execute("rm -rf " .. q(dir)) end)

  it("converts every file, goes on past a bad one, summarises and exits 1", function()
    local code, out, err = support.pthcv("convert", dir .. "/tiny_resnet.pth", dir .. "/broken.pth",
                                         dir .. "/custom_model.pth", "-o", dir .. "/out", "--to", "npz", "-j", "2")
    assert.are.equal(1, code)
    assert.matches("1 of 3 files failed", err, 1, true)
    assert.matches("FAILED  " .. dir .. "/broken.pth: ", out, 1, true)
    assert.matches("ok      " .. dir .. "/tiny_resnet.pth -> " .. dir .. "/out/tiny_resnet.npz", out, 1, true)
    assert.matches("converted 2 of 3 files into " .. dir .. "/out (1 failed)\n", out, 1, true)
    -- the batch's files equal what a single conversion writes
    local single = dir .. "/single.npz"
    assert.are.equal(0, (support.pthcv("convert", dir .. "/tiny_resnet.pth", "-o", single)))
    local function members(f)   -- the zip's member bytes (its timestamps differ by the second)
      local _, out = support.run("{ unzip -p " .. q(f) .. " | sha256sum; }")
      return out
    end
    assert.are.equal(members(single), members(dir .. "/out/tiny_resnet.npz"))
    assert.are.equal(#support.read_file(single), #support.read_file(dir .. "/out/tiny_resnet.npz"))
    assert.is_truthy(support.read_file(dir .. "/out/custom_model.npz"))
  end)

  it("passes convert's options to each file; safetensors by default; exit 0 when all succeed", function()
    local code, out, err = support.pthcv("convert", dir .. "/tiny_resnet.pth", dir .. "/custom_model.pth",
                                         "-o", dir .. "/sd", "--state-dict")
    assert.are.equal(0, code, err)
    assert.matches("converted 2 of 2 files", out, 1, true)
    local sd = pthcv.state_dict(dir .. "/tiny_resnet.pth")
    local n = 0
    for _ in pairs(sd) do n = n + 1 end
    local data = support.read_file(dir .. "/sd/tiny_resnet.safetensors")
    local header = data:sub(9, 8 + support.u64(data, 1))
    local m = 0
    for _ in header:gmatch('"dtype"') do m = m + 1 end
    assert.are.equal(n, m)   -- --state-dict reached the child: only the weights
    -- one file with -o naming an existing folder is a batch too
    code = support.pthcv("convert", dir .. "/custom_model.pth", "-o", dir .. "/sd/")
    assert.are.equal(0, code)
  end)

  it("refuses two inputs that would write the same output, and bad -j", function()
    os.execute("mkdir -p " .. q(dir .. "/b") .. " && cp " .. q(dir .. "/tiny_resnet.pth") .. " " .. q(dir .. "/b/"))
    local code, _, err = support.pthcv("convert", dir .. "/tiny_resnet.pth", dir .. "/b/tiny_resnet.pth", "-o",
                                       dir .. "/o")
    assert.are.equal(1, code)
    assert.matches("both be written", err, 1, true)
    assert.are.equal(2, (support.pthcv("convert", dir .. "/tiny_resnet.pth", "-o", dir .. "/o", "-j", "0")))
  end)

  it("draws a progress bar on a terminal", function()
    if support.run("command -v script") ~= 0 then pending("no script(1) to make a terminal") return end
    local cmd = "luajit " .. q(support.bin) .. " convert " .. q(dir .. "/tiny_resnet.pth") .. " "
                .. q(dir .. "/custom_model.pth") .. " -o " .. q(dir .. "/tty")
    local _, out = support.run("script -qec " .. q(cmd) .. " /dev/null")
    assert.matches("[##############################] 2/2", out, 1, true)
  end)
end)
