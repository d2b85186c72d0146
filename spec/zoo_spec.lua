-- spec/zoo_spec.lua: pthcv.models against torchvision 0.14, model by model.
-- Runs when tools/run-specs wrote the fixtures (PTHCV_ZOO, needs torch and
-- torchvision; spec/fixtures/make_zoo_fixtures.py): each model is built with
-- the builder options torch's was (num_classes, ...), prints as torch's
-- repr, loads torchvision's state_dict unchanged, and after eval() its
-- logits on a random input are within 1e-4 * max |torch's logits| of
-- torch's. The models over 100M parameters run under `make test-large`
-- (PTHCV_ZOO_LARGE); nn.MultiheadAttention is checked against torch's on
-- its own (mha.pth), and the Lua-script models of examples/ against the
-- zoo's fixtures.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local now = require "pthcv.nn.clock"
local values = require "pthcv.reader.values"

local dir = os.getenv("PTHCV_ZOO")
local large_dir = os.getenv("PTHCV_ZOO_LARGE")

-- The models `make test` checks: all must be in the fixtures.
local REQUIRED = {
  "alexnet", "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
  "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2",
  "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1",
  "resnext101_32x8d", "resnext101_64x4d", "densenet121", "densenet161", "densenet169", "densenet201",
  "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4", "efficientnet_b5",
  "efficientnet_b6", "efficientnet_b7", "efficientnet_v2_s", "efficientnet_v2_m",
  "regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf", "regnet_x_16gf",
  "regnet_y_400mf", "regnet_y_800mf", "regnet_y_1_6gf", "regnet_y_3_2gf", "regnet_y_8gf", "regnet_y_16gf",
  "convnext_tiny", "convnext_small", "convnext_base", "vit_b_16", "vit_b_32",
  "swin_t", "swin_s", "swin_b", "swin_v2_t", "swin_v2_s", "swin_v2_b", "maxvit_t", "inception_v3", "googlenet",
  "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
  "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
}
-- `make test-large`
local LARGE = { "wide_resnet101_2", "regnet_x_32gf", "regnet_y_32gf", "regnet_y_128gf", "efficientnet_v2_l",
                "convnext_large", "vit_l_16", "vit_l_32", "vit_h_14" }

local function max_abs(t) return math.max(t:max(), -t:min()) end

local function read_manifest(d)
  return json.decode((assert(support.read_file(d .. "/manifest.json"), "no manifest in " .. d)))
end

-- builds name as torch did, checks repr, state_dict and logits
local function check_model(d, name, info)
  local t0 = now()
  local m = pthcv.models[name](info.options)
  assert.are.equal(support.read_file(d .. "/" .. name .. ".repr.txt"), tostring(m) .. "\n")
  assert.are.equal(info.params, m:num_parameters())
  local r = m:load_state_dict(pthcv.state_dict(d .. "/" .. name .. ".pth"))
  assert.are.same({}, r.missing_keys)
  assert.are.same({}, r.unexpected_keys)
  m:eval()
  local x = pthcv.load_npy(d .. "/" .. name .. ".input.npy")
  local want = pthcv.load_npy(d .. "/" .. name .. ".output.npy")
  local y = m(x)
  assert.are.same(want.shape, y.shape)
  local diff, scale = max_abs(y - want), max_abs(want)
  print(string.format("# zoo %-20s max|diff| %.3g (%.2g of max|logit| %.3g) %.1fs", name, diff, diff / scale,
                      scale, now() - t0))
  assert.is_true(diff <= 1e-4 * scale, string.format("%s: max |diff| %g > 1e-4 * %g", name, diff, scale))
  -- the whole-model pickle (torch.save(model)) through nn.from_module
  local whole = d .. "/" .. name .. ".model.pth"
  if support.read_file(whole) then
    local fm = pthcv.nn.from_module(pthcv.load(whole)):eval()
    assert.are.equal(tostring(m), tostring(fm))
    local y2 = fm(x)
    assert.is_true(max_abs(y2 - want) <= 1e-4 * scale, name .. ": from_module output differs")
  end
  return m
end

describe("model zoo", function()
  it("builds every model without weights", function()
    for _, name in ipairs(REQUIRED) do
      local m = pthcv.models[name]()
      assert.is_true(pthcv.nn.is_module(m), name)
      assert.is_true(m:num_parameters() > 0, name)
    end
    for _, name in ipairs(LARGE) do assert.is_function(pthcv.models[name], name) end
    assert.has_error(function() pthcv.models.get("resnet9") end)
  end)

  it("refuses bad builder options, naming them", function()
    assert.has_error(function() pthcv.models.vit_b_16 { image_size = 100 } end,
                     "pthcv: VisionTransformer: image_size 100 is not a multiple of patch_size 16")
    assert.has_error(function() pthcv.models.maxvit_t { input_size = { 112, 112 } } end)
  end)

  if not dir or dir == "" then return end
  local manifest = read_manifest(dir)

  it("has fixtures for every model", function()
    for _, name in ipairs(REQUIRED) do assert.is_table(manifest[name], name) end
  end)

  for _, name in ipairs(REQUIRED) do
    it(name .. " matches torchvision (repr, state_dict, logits)", function()
      check_model(dir, name, assert(manifest[name]))
      collectgarbage()
      collectgarbage()
    end)
  end
end)

-- The Lua-script models of examples/ (written against pthcv.nn as a user
-- would, from torchvision's source) on the zoo's fixtures of the same network.
describe("examples written against pthcv.nn", function()
  if not dir or dir == "" then return end
  local manifest = read_manifest(dir)
  local root = os.getenv("PTHCV_ROOT") or "."
  local EXAMPLES = {
    { "efficientnet_b0", "efficientnet_b0", function(cls, nc) return cls(nc) end },
    { "shufflenet_v2", "shufflenet_v2_x1_0",
      function(cls, nc) return cls({ 4, 8, 4 }, { 24, 116, 232, 464, 1024 }, nc) end },
  }
  for _, ex in ipairs(EXAMPLES) do
    local script, name, build = ex[1], ex[2], ex[3]
    it("examples/" .. script .. ".lua matches torchvision's " .. name, function()
      local info = assert(manifest[name], "no fixtures for " .. name)
      local model, cls = dofile(root .. "/examples/" .. script .. ".lua")
      assert.is_true(pthcv.nn.is_module(model))
      local m = build(cls, info.num_classes)
      local r = m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
      assert.are.same({}, r.missing_keys)
      m:eval()
      local want = pthcv.load_npy(dir .. "/" .. name .. ".output.npy")
      local y = m(pthcv.load_npy(dir .. "/" .. name .. ".input.npy"))
      local diff, scale = max_abs(y - want), max_abs(want)
      print(string.format("# example %-16s max|diff| %.3g (%.2g of max|logit|)", script, diff, diff / scale))
      assert.is_true(diff <= 1e-4 * scale, string.format("%s: max |diff| %g > 1e-4 * %g", script, diff, scale))
    end)
  end
end)

describe("model zoo, large models (make test-large)", function()
  if not large_dir or large_dir == "" then
    it("runs under make test-large", function()
      pending("the models over 100M parameters run under `make test-large` (PTHCV_ZOO_LARGE)")
    end)
    return
  end
  local manifest = read_manifest(large_dir)
  for _, name in ipairs(LARGE) do
    it(name .. " matches torchvision (repr, state_dict, logits)", function()
      check_model(large_dir, name, assert(manifest[name], "no fixtures for " .. name))
      collectgarbage()
      collectgarbage()
    end)
  end
end)

-- a case's fields under a prefix ("ctor.", "sd.", "call."), prefix removed
local function fields(case, prefix)
  local out = {}
  for _, kv in ipairs(require("pthcv.reader.odict").items(case)) do
    if kv[1]:sub(1, #prefix) == prefix then out[kv[1]:sub(#prefix + 1)] = kv[2] end
  end
  return out
end

describe("nn.MultiheadAttention against torch", function()
  if not dir or dir == "" then return end
  local cases = pthcv.load(dir .. "/mha.pth")
  for _, kv in ipairs(require("pthcv.reader.odict").items(cases)) do
    local name, case = kv[1], kv[2]
    it(name, function()
      local mha = pthcv.nn.MultiheadAttention(case.embed_dim, case.num_heads, fields(case, "ctor."))
      mha:load_state_dict(fields(case, "sd."))
      mha:eval()
      local q = case.q
      local k, v = case.self and q or case.k, case.self and q or case.v
      local call = fields(case, "call.")
      if next(call) == nil then call = nil end
      local y, w = mha(q, k, v, call)
      assert.are.same(case.y.shape, y.shape)
      local scale = max_abs(case.y)
      assert.is_true(max_abs(y - case.y) <= 1e-5 * scale, name .. ": output")
      if case.w and case.w ~= values.None then
        assert.are.same(case.w.shape, w.shape)
        assert.is_true(max_abs(w - case.w) <= 1e-6, name .. ": attention weights")
      else
        assert.is_nil(w)
      end
    end)
  end
end)
