-- resnet_filestorage_spec: examples/resnet_filestorage.cpp, the seed's
-- second route for a real network: a torchvision ResNet run by OpenCV
-- alone (a cv::dnn::Net built layer by layer from LayerParams) from the
-- weights `pthcv convert` wrote as FileStorage.
--
-- The program is compiled with OpenCV's pkg-config flags and run on an
-- input written as FileStorage; its logits (FileStorage again) must be
-- within 1e-4 of pthcv's forward on seeded random weights (resnet18, and
-- resnet50 for the Bottleneck blocks), and of torch's logits on the zoo's
-- resnet18 weights when the zoo fixtures exist.
local support = require "support"
local pthcv = require "pthcv"

local SRC = support.root .. "/examples/resnet_filestorage.cpp"

-- max |a - b| and max |b|
local function diff(a, b)
  local d = a - b
  return math.max(d:max(), -d:min()), math.max(b:max(), -b:min())
end

describe("examples/resnet_filestorage.cpp", function()
  local has = support.run("command -v c++ >/dev/null && pkg-config --exists opencv4") == 0
  if not has then
    pending("no C++ compiler or no OpenCV development files (pkg-config opencv4): the example is not built")
    return
  end
  local exe = support.tmpname("-resnet_filestorage")
  local c, _, e = support.run("c++ -std=c++17 -O1 -Wall -Wextra -Werror " .. support.shell_quote(SRC)
                              .. " $(pkg-config --cflags --libs opencv4) -o " .. support.shell_quote(exe))

  it("compiles without a warning", function() assert.are.equal(0, c, e) end)

  -- Runs the program on weights (a FileStorage file) and x; its logits.
  local function run(weights, x)
    local input, out = support.tmpname("-input.yml.gz"), support.tmpname("-logits.yml")
    pthcv.save(input, { input = x })
    local code, o, err = support.run(support.shell_quote(exe) .. " " .. support.shell_quote(weights) .. " "
                                     .. support.shell_quote(input) .. " " .. support.shell_quote(out))
    assert.are.equal(0, code, err)
    local y = pthcv.load(out).logits
    os.remove(input); os.remove(out)
    return y, o
  end

  it("runs resnet18 and resnet50 with seeded random weights as pthcv does", function()
    for _, name in ipairs { "resnet18", "resnet50" } do
      local m = pthcv.models[name] { num_classes = 10 }
      require("pthcv.cli.model").random_weights(m, 3)
      m:eval()
      local weights = support.tmpname("-" .. name .. ".yml.gz")
      pthcv.save(weights, m:state_dict())
      local x = pthcv.randn({ 2, 3, 64, 80 }, { seed = 4 })
      local y, o = run(weights, x)
      local want = m(x)
      assert.are.same({ 2, 10 }, y.shape)
      local d, scale = diff(y, want)
      print(string.format("# %s: max |OpenCV - pthcv| %.3g of %.3g", name, d, scale))
      assert.is_true(d <= 1e-4 * scale, name .. ": " .. d)
      assert.truthy(o:find("^image 0: %d+ %(") and o:find("\nimage 1: "), o)
      os.remove(weights)
    end
  end)

  it("refuses files it cannot use, saying why", function()
    local bad = support.tmpname(".yml")
    pthcv.save(bad, { ["conv1.weight"] = pthcv.zeros({ 2, 3, 1, 1 }) })
    local code, _, err = support.run(support.shell_quote(exe) .. " " .. support.shell_quote(bad) .. " x.yml")
    assert.are.equal(1, code)
    assert.truthy(err:find("the weights have no bn1.running_mean", 1, true), err)
    code, _, err = support.run(support.shell_quote(exe))
    assert.are.equal(2, code)
    assert.truthy(err:find("usage: ", 1, true), err)
    os.remove(bad)
  end)

  local zoo, why = support.zoo("resnet18 with the zoo's weights against torch")
  if not zoo then pending(why) return end

  it("gives torch's logits for the zoo's resnet18, from `pthcv convert`'s file", function()
    local weights = support.tmpname("-resnet18.yml.gz")
    local code, _, err = support.pthcv("convert", zoo .. "/resnet18.pth", "-o", weights)
    assert.are.equal(0, code, err)
    local y = run(weights, pthcv.load_npy(zoo .. "/resnet18.input.npy"))
    local d, scale = diff(y, pthcv.load_npy(zoo .. "/resnet18.output.npy"))
    print(string.format("# resnet18 (zoo): max |OpenCV - torch| %.3g of %.3g", d, scale))
    assert.is_true(d <= 1e-4 * scale, d)
    os.remove(weights)
  end)
end)
