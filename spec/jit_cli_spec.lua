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

-- run FILE / bench FILE and --weights FILE without --model: the model comes
-- from the file (pthcv.cli.model.from_file), its output compared with torch's.
describe("pthcv run FILE (the model the file carries)", function()
  local pthcv = require "pthcv"

  local function max_abs_diff(a, b)
    assert.are.same(b.shape, a.shape)
    local pa, pb, d = a:float():contiguous():data(), b:float():contiguous():data(), 0
    for i = 0, a.numel - 1 do d = math.max(d, math.abs(pa[i] - pb[i])) end
    return d
  end
  local function largest(t)
    local p, m = t:float():contiguous():data(), 0
    for i = 0, t.numel - 1 do m = math.max(m, math.abs(p[i])) end
    return m
  end
  -- runs `pthcv run ARGS... --input X --output Y` and returns Y
  local function run_npy(input, ...)
    local y = support.tmpname(".npy")
    local args = { ... }
    for _, a in ipairs { "--input", input, "--output", y } do args[#args + 1] = a end
    local code, out, err = support.pthcv("run", unpack(args))
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("float32", 1, true))
    local t = pthcv.load_npy(y)
    os.remove(y)
    return t
  end

  it("runs a TorchScript archive as torch does, given first or as --weights", function()
    local ref = pthcv.load_npy(dir .. "tiny_cnn.trace.main.out.0.npy")
    local x = dir .. "tiny_cnn.main.input0.npy"
    assert.is_true(max_abs_diff(run_npy(x, dir .. "tiny_cnn.trace.pt"), ref) <= 1e-4 * largest(ref))
    assert.is_true(max_abs_diff(run_npy(x, "--weights", dir .. "tiny_cnn.script.pt"), ref) <= 1e-4 * largest(ref))
  end)

  it("runs a whole-model pickle of torch.nn layers as torch does", function()
    local T = pthcv.load(support.root .. "/spec/fixtures/nn/tensors.pth")
    local x = support.tmpname(".npy")
    pthcv.save(x, T.x)
    local y = run_npy(x, support.root .. "/spec/fixtures/nn/whole_sequential.pth")
    os.remove(x)
    assert.is_true(max_abs_diff(y, T["whole.out"]) <= 1e-4 * largest(T["whole.out"]))
  end)

  it("runs a zoo model's whole pickle and recognises its state_dict", function()
    local zoo, why = support.zoo("run FILE on the zoo's files")
    if not zoo then pending(why) return end
    local x, ref = zoo .. "/mobilenet_v3_small.input.npy", pthcv.load_npy(zoo .. "/mobilenet_v3_small.output.npy")
    assert.is_true(max_abs_diff(run_npy(x, zoo .. "/mobilenet_v3_small.model.pth"), ref) <= 1e-4 * largest(ref))
    assert.is_true(max_abs_diff(run_npy(x, zoo .. "/mobilenet_v3_small.pth"), ref) <= 1e-4 * largest(ref))
  end)

  it("takes the model a checkpoint keeps under 'model', naming a class it does not know", function()
    local code, _, err = support.pthcv("run", support.root .. "/spec/fixtures/checkpoint_model_obj.pth", "--input",
                                       "x.npy", "--output", "y.npy")
    assert.are.equal(1, code)
    assert.is_truthy(err:find("class __main__.TinyNet is not a torch.nn layer or a pthcv.models class", 1, true), err)
  end)

  it("refuses weights that fit no zoo model, and still asks for a model without a file", function()
    local code, _, err = support.pthcv("run", support.root .. "/spec/fixtures/nn/tensors.pth", "--input", "x.npy",
                                       "--output", "y.npy")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("tensors%.pth holds weights, not a model, and they fit no zoo model: give %-%-model NAME"), err)
    code, _, err = support.pthcv("run", "--init", "random", "--input", "x.npy", "--output", "y.npy")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--model NAME or --script FILE.lua is needed", 1, true), err)
  end)

  it("benchmarks a TorchScript archive given first", function()
    local code, out, err = support.pthcv("bench", dir .. "tiny_cnn.trace.pt", "--shape", "1x3x17x17", "--runs", "1",
                                         "--warmup", "1")
    assert.are.equal(0, code, err)
    assert.is_truthy(out:find("\nmedian_ms=[%d.]+\n$"), out)
  end)
end)
