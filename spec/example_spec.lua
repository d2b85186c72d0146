-- spec/example_spec.lua: the custom architecture of examples/custom_model.lua
-- (a TinyUNet whose torch twin and weights examples/make_custom_model.py
-- wrote) against torch's output, from Lua and through `pthcv run --script`;
-- `pthcv run --model` and `pthcv bench`.
local support = require "support"
local pthcv = require "pthcv"

local ex = support.root .. "/examples/"

local function max_abs_diff(a, b)
  local d = a - b
  return math.max(d:max(), -d:min())
end

describe("the custom-model example", function()
  it("matches torch's output from Lua", function()
    local model = dofile(ex .. "custom_model.lua")
    local r = model:load_state_dict(pthcv.state_dict(ex .. "custom_model.pth"))
    assert.are.same({}, r.missing_keys)
    model:eval()
    local want = pthcv.load_npy(ex .. "custom_output.npy")
    local y = model(pthcv.load_npy(ex .. "custom_input.npy"))
    assert.are.same({ 1, 4, 32, 32 }, y.shape)
    assert.is_true(max_abs_diff(y, want) <= 1e-5 * math.max(want:max(), -want:min()))
  end)

  it("runs through pthcv run --script", function()
    local out = support.tmpname(".npy")
    local code, o, e = support.pthcv("run", "--script", ex .. "custom_model.lua", "--weights", ex .. "custom_model.pth",
                                     "--input", ex .. "custom_input.npy", "--output", out)
    assert.are.equal(0, code, e)
    assert.matches("float32 %[1, 4, 32, 32%]", o)
    local y = pthcv.load_npy(out)
    assert.is_true(max_abs_diff(y, pthcv.load_npy(ex .. "custom_output.npy")) < 1e-4)
    os.remove(out)
  end)
end)

describe("pthcv run and bench", function()
  it("runs a zoo model (--num-classes without weights)", function()
    local x = support.tmpname(".npy")
    pthcv.save(x, pthcv.randn(1, 3, 64, 64, { seed = 3 }))
    local out = support.tmpname(".npy")
    local code, o, e = support.pthcv("run", "--model", "squeezenet1_1", "--num-classes", "5", "--input", x,
                                     "--output", out, "--threads", "1", "--init", "zeros")
    assert.are.equal(0, code, e)
    assert.matches("%[1, 5%]", o)
    local m = pthcv.models.squeezenet1_1 { num_classes = 5 }:eval()
    assert.are.same(m(pthcv.load_npy(x)):totable(), pthcv.load_npy(out):totable())
    os.remove(x); os.remove(out)
  end)

  it("infers num_classes from a torchvision state_dict", function()
    local cli_model = require "pthcv.cli.model"
    local items = pthcv.OrderedDict.items
    assert.are.equal(7, cli_model.num_classes_of(items(pthcv.models.resnet18 { num_classes = 7 }:state_dict())))
    assert.are.equal(9, cli_model.num_classes_of(items(pthcv.models.squeezenet1_0 { num_classes = 9 }:state_dict())))
  end)

  local zoo, why = support.zoo("pthcv run on resnet18 with torchvision's weights")
  if not zoo then pending(why) end
  if zoo then
    it("runs resnet18 with torchvision's weights as torch does (zoo fixtures)", function()
      local out = support.tmpname(".npy")
      local code, _, e = support.pthcv("run", "--model", "resnet18", "--weights", zoo .. "/resnet18.pth",
                                       "--input", zoo .. "/resnet18.input.npy", "--output", out)
      assert.are.equal(0, code, e)
      local want = pthcv.load_npy(zoo .. "/resnet18.output.npy")
      assert.is_true(max_abs_diff(pthcv.load_npy(out), want) <= 1e-4 * math.max(want:max(), -want:min()))
      os.remove(out)
    end)
  end

  it("benchmarks with a median and a per-module profile", function()
    local code, o, e = support.pthcv("bench", "--model", "squeezenet1_1", "--shape", "1x3x64x64", "--runs", "3",
                                     "--profile")
    assert.are.equal(0, code, e)
    assert.matches("\nmedian_ms=[%d.]+\n?$", o)
    assert.matches("features%.3 +Fire", o)
    assert.matches("classifier%.1%+ReLU", o)
  end)

  it("reports usage and model errors", function()
    local code, _, e = support.pthcv("run", "--model", "resnet18")
    assert.are.equal(2, code)
    assert.matches("needs %-%-input", e)
    code, _, e = support.pthcv("bench", "--model", "resnet81")
    assert.are.equal(2, code)
    assert.matches("unknown model 'resnet81' (did you mean resnet18?)", e, 1, true)
    local code3, o3 = support.pthcv("models")
    assert.are.equal(0, code3)
    assert.matches("mobilenet_v3_large", o3)
  end)
end)
