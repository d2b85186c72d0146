-- `pthcv inspect FILE.pt --ops`: a TorchScript archive's operators and
-- what pthcv lacks, with the exit status saying whether pthcv runs it.
local support = require "support"

local dir = support.root .. "/spec/fixtures/jit/"

describe("pthcv inspect --ops", function()
  it("lists the operators of a runnable archive and exits 0", function()
    local code, out = support.pthcv("inspect", dir .. "tiny_cnn.trace.pt", "--ops")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("tiny_cnn%.trace%.pt: TorchScript, %d+ operators, 0 missing, 0 problems"))
    assert.is_truthy(out:find("\n  aten::_convolution +5  code/__torch__/torch/nn/modules/conv/"))
    assert.is_falsy(out:find("MISSING"))
  end)

  it("names what is missing, where, and exits 1", function()
    local code, out = support.pthcv("inspect", dir .. "bad_op.pt", "--ops")
    assert.are.equal(1, code)
    assert.is_truthy(out:find("aten::flatten_like_nothing +1  code/__torch__%.py:30  MISSING"))
    assert.is_truthy(out:find("refused at load:\n  code/__torch__%.py:30: aten::flatten_like_nothing is not supported"))
  end)

  it("lists deferred problems of torch's functional library apart", function()
    local code, out = support.pthcv("inspect", dir .. "tiny_seg.script.pt", "--ops")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("in branches of torch's functional library %(raised only if they run%):\n  code/__torch__/torch/nn/functional"))
  end)

  it("prints JSON", function()
    local code, out = support.pthcv("inspect", dir .. "bad_os.pt", "--ops", "--json")
    assert.are.equal(1, code)
    local r = require("dkjson").decode(out)
    assert.is_truthy(r.problems[1].message:find("refers to Python's 'os': refused"))
    assert.is_truthy(r.problems[1].loc:find("^code/__torch__%.py:%d+$"))
  end)

  it("exits 2 on a file that is not a TorchScript archive", function()
    local code, _, err = support.pthcv("inspect", support.root .. "/examples/tiny_resnet.pth", "--ops")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("not a TorchScript archive"))
  end)
end)
