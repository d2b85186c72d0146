-- spec/zoo_spec.lua: pthcv.models against torchvision 0.14, model by model.
-- Runs when tools/run-specs wrote the fixtures (PTHCV_ZOO, needs torch and
-- torchvision; spec/fixtures/make_zoo_fixtures.py): each model is built with
-- its num_classes, prints as torch's repr, loads torchvision's state_dict
-- unchanged, and after eval() its logits on a random 224x224 input are within
-- 1e-4 * max |torch's logits| of torch's.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local now = require "pthcv.nn.clock"

local dir = os.getenv("PTHCV_ZOO")

-- The 21 models the zoo promises: all must be in the fixtures.
local REQUIRED = {
  "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
  "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2",
  "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1",
}

local function max_abs(t) return math.max(t:max(), -t:min()) end

describe("model zoo", function()
  it("builds every model without weights", function()
    for _, name in ipairs(REQUIRED) do
      local m = pthcv.models[name]()
      assert.is_true(pthcv.nn.is_module(m), name)
      assert.is_true(m:num_parameters() > 0, name)
    end
    assert.has_error(function() pthcv.models.get("resnet9") end)
  end)

  local zoo, why = support.zoo("every model against torchvision (logits, repr, whole-model pickles)")
  if not zoo then pending(why) return end
  local manifest = json.decode((assert(support.read_file(dir .. "/manifest.json"), "no manifest in " .. dir)))

  it("has fixtures for every model", function()
    for _, name in ipairs(REQUIRED) do assert.is_table(manifest[name], name) end
  end)

  for _, name in ipairs(REQUIRED) do
    it(name .. " matches torchvision (repr, state_dict, logits)", function()
      local info = assert(manifest[name])
      local t0 = now()
      local m = pthcv.models[name] { num_classes = info.num_classes }
      assert.are.equal(support.read_file(dir .. "/" .. name .. ".repr.txt"), tostring(m) .. "\n")
      assert.are.equal(info.params, m:num_parameters())
      local r = m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
      assert.are.same({}, r.missing_keys)
      assert.are.same({}, r.unexpected_keys)
      m:eval()
      local x = pthcv.load_npy(dir .. "/" .. name .. ".input.npy")
      local want = pthcv.load_npy(dir .. "/" .. name .. ".output.npy")
      local y = m(x)
      assert.are.same(want.shape, y.shape)
      local diff, scale = max_abs(y - want), max_abs(want)
      print(string.format("# zoo %-20s max|diff| %.3g (%.2g of max|logit| %.3g) %.1fs", name, diff, diff / scale,
                          scale, now() - t0))
      assert.is_true(diff <= 1e-4 * scale, string.format("%s: max |diff| %g > 1e-4 * %g", name, diff, scale))
      -- the whole-model pickle (torch.save(model)) through nn.from_module
      local whole = dir .. "/" .. name .. ".model.pth"
      if support.read_file(whole) then
        local fm = pthcv.nn.from_module(pthcv.load(whole)):eval()
        assert.are.equal(tostring(m), tostring(fm))
        local y2 = fm(x)
        assert.is_true(max_abs(y2 - want) <= 1e-4 * scale, name .. ": from_module output differs")
        fm, y2 = nil, nil
      end
      m, x, y = nil, nil, nil
      collectgarbage()
      collectgarbage()
    end)
  end
end)
