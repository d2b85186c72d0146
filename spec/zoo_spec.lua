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

-- Models checked with the Winograd 3x3 path off (PTHCV_WINOGRAD=0 while
-- they are prepared and planned): Inception v3 chains up to 20 3x3 convolutions at
-- 299x299, and F(4x4, 3x3)'s rounding (about 7e-6 of a layer's largest
-- output, 50 times the direct path's) puts its logits 1.0-1.3e-4 of the
-- largest one away from torch's over three seeds; without Winograd they are
-- 3.5-6.3e-5 away. The Winograd result is printed, not asserted.
local NO_WINOGRAD = { inception_v3 = true }
local ffi = require "ffi"
pcall(ffi.cdef, "int setenv(const char *name, const char *value, int overwrite); int unsetenv(const char *name);")

-- f() with PTHCV_WINOGRAD set to winograd ("0" or "1") while it runs
-- (packs are made when modules are prepared and when a plan is made), or
-- as the environment has it when winograd is nil.
local function with_winograd(winograd, f)
  if winograd == nil then return f() end
  local old = os.getenv("PTHCV_WINOGRAD")
  ffi.C.setenv("PTHCV_WINOGRAD", winograd, 1)
  local ok, res = pcall(f)
  if old then ffi.C.setenv("PTHCV_WINOGRAD", old, 1) else ffi.C.unsetenv("PTHCV_WINOGRAD") end
  assert(ok, res)
  return res
end

-- the plan m's last call ran under (pthcv.nn.plan), asserting it has one
local function plan_of(m)
  local info = pthcv.nn.plan.info(m)
  assert.is_nil(info.off, info.off)
  local p = info.plans[#info.plans]
  assert.is_table(p, "no plan")
  assert.is_nil(p.refused, p.refused)
  assert.is_table(p.stats, "no plan")
  return p
end

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
  local x = pthcv.load_npy(d .. "/" .. name .. ".input.npy")
  local want = pthcv.load_npy(d .. "/" .. name .. ".output.npy")
  local scale = max_abs(want)
  local winograd = nil
  if NO_WINOGRAD[name] then
    winograd = "0"
    pthcv.nn.plan.enabled = false   -- this pass is not the one the plan below is made from
    local ok, yw = pcall(with_winograd, "1", function() return m:eval()(x) end)
    pthcv.nn.plan.enabled = true
    assert(ok, yw)
    print(string.format("# zoo %-20s with Winograd: %.2g of max|logit|", name, max_abs(yw - want) / scale))
  end
  local y = with_winograd(winograd, function() return m:eval()(x) end)
  assert.are.same(want.shape, y.shape)
  local diff = max_abs(y - want)
  print(string.format("# zoo %-20s max|diff| %.3g (%.2g of max|logit| %.3g) %.1fs", name, diff, diff / scale,
                      scale, now() - t0))
  assert.is_true(diff <= 1e-4 * scale, string.format("%s: max |diff| %g > 1e-4 * %g", name, diff, scale))
  -- the second call runs under the plan pthcv.nn.plan made from the first
  -- one's recording (the zoo's forwards are torchvision's: the fusion is
  -- the plan's): planned, and as close to torch
  local yp = with_winograd(winograd, function() return m(x) end)
  local plan = plan_of(m)
  local dp = max_abs(yp - want)
  print(string.format("# zoo %-20s planned: max|diff| %.3g (%.2g), kernel calls %d -> %d", name, dp, dp / scale,
                      plan.stats.before.kernels, plan.stats.after.kernels))
  assert.is_true(dp <= 1e-4 * scale, string.format("%s planned: max |diff| %g > 1e-4 * %g", name, dp, scale))
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

  local zoo, why = support.zoo("every model against torchvision (logits, repr, whole-model pickles)")
  if not zoo then pending(why) return end
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

-- Small configurations of the transformer-era classes, pickled whole by
-- torch (torch.save(model)), rebuilt by nn.from_module from the pickle's
-- attributes alone.
local TINY = { "tiny_swin", "tiny_swin_v2", "tiny_maxvit", "tiny_convnext", "tiny_efficientnet_v2",
               "tiny_inception_blocks" }

describe("nn.from_module on torchvision's classes", function()
  local zoo, why = support.zoo("whole-model pickles of the transformer-era classes")
  if not zoo then pending(why) return end
  for _, name in ipairs(TINY) do
    it(name .. " (torch.save(model)) prints and runs as torch's", function()
      local m = pthcv.nn.from_module(pthcv.load(dir .. "/" .. name .. ".model.pth")):eval()
      assert.are.equal(support.read_file(dir .. "/" .. name .. ".repr.txt"), tostring(m) .. "\n")
      local want = pthcv.load_npy(dir .. "/" .. name .. ".output.npy")
      local y = m(pthcv.load_npy(dir .. "/" .. name .. ".input.npy"))
      assert.are.same(want.shape, y.shape)
      local diff, scale = max_abs(y - want), max_abs(want)
      assert.is_true(diff <= 1e-4 * scale, string.format("%s: max |diff| %g > 1e-4 * %g", name, diff, scale))
    end)
  end
  -- a VisionTransformer keeps its norm_layer, a functools.partial, as an
  -- attribute: its whole-model pickle is refused (its state_dict loads)
  it("tiny_vit (torch.save(model)) is refused, naming functools.partial", function()
    local ok, err = pcall(pthcv.load, dir .. "/tiny_vit.model.pth")
    assert.is_false(ok)
    assert.matches("unsafe global functools.partial", err)
  end)
end)

-- The Lua-script models of examples/ (written against pthcv.nn as a user
-- would, from torchvision's source) on the zoo's fixtures of the same network.
describe("examples written against pthcv.nn", function()
  local zoo, why = support.zoo("examples/efficientnet_b0.lua and shufflenet_v2.lua against torch")
  if not zoo then pending(why) return end
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

-- ONNX (opset 10) and OpenCV 4.6: the new convolutional families export and
-- cv2.dnn runs them (spec/opencv/check_onnx.py); the LayerNorm and attention
-- families export with OpenCV 4.6's warning (it runs no LayerNorm: torch's
-- own opset 11/13 exports of them do not load there either, docs/models.md;
-- spec/onnx_transformers_spec.lua checks their files), Swin V2's cosine
-- attention too.
local ONNX = { "densenet121", "efficientnet_b0", "efficientnet_v2_s", "regnet_x_400mf", "regnet_y_400mf",
               "inception_v3", "googlenet", "mnasnet0_5", "shufflenet_v2_x0_5" }

describe("model zoo through ONNX", function()
  it("the LayerNorm families (ConvNeXt, Swin and Swin V2, ViT, MaxViT) export with OpenCV 4.6's warning", function()
    for _, name in ipairs { "convnext_tiny", "swin_t", "swin_v2_t", "vit_b_32", "maxvit_t" } do
      local m = pthcv.models[name](name == "vit_b_32" and { image_size = 64 } or nil):eval()
      local size = (name == "vit_b_32" or name == "swin_v2_t") and 64 or 224
      local path = support.tmpname(".onnx")
      local r = m:export_onnx(path, { input = { 1, 3, size, size } })
      os.remove(path)
      assert.truthy(table.concat(r.warnings, "\n"):find("OpenCV 4.6 runs no LayerNorm", 1, true), name)
    end
  end)
  local zoo, why = support.zoo("the new convolutional families through ONNX and cv2.dnn")
  if not zoo then pending(why) return end
  local c = support.run("/usr/bin/python3 -c 'import onnx, cv2, numpy'")
  if c ~= 0 then
    it("checks the files with OpenCV", function() pending("python3-onnx or python3-opencv is not installed") end)
    return
  end
  local manifest = read_manifest(dir)
  it("the new convolutional families: cv2.dnn's logits are within 1e-4 of torch's", function()
    local base = support.tmpname("-zoo-onnx")
    local args = {}
    for _, name in ipairs(ONNX) do
      local m = pthcv.models[name](manifest[name].options)
      m:load_state_dict(pthcv.state_dict(dir .. "/" .. name .. ".pth"))
      local path = base .. "-" .. name .. ".onnx"
      m:eval():export_onnx(path, { input = pthcv.load_npy(dir .. "/" .. name .. ".input.npy") })
      args[#args + 1] = string.format("%s=%s,%s/%s.input.npy,%s/%s.output.npy", name, path, dir, name, dir, name)
      m = nil
      collectgarbage()
    end
    local code, out = support.run("/usr/bin/python3 " .. support.root .. "/spec/opencv/check_onnx.py "
                                  .. table.concat(args, " "))
    assert.are.equal(0, code, out)
    local seen = 0
    for line in out:gmatch("[^\n]+") do
      local r = json.decode(line)
      if r and r.name then
        seen = seen + 1
        print(string.format("# onnx %-20s cv2.dnn max|diff| %.3g (%.2g of max|logit|)", r.name, r.max_diff or -1,
                            (r.max_diff or 0) / (r.scale or 1)))
        assert.are.equal("ok", r.checker, r.name)
        assert.are.equal("ok", r.opencv, r.name)
        assert.is_true(r.max_diff <= 1e-4 * r.scale, r.name)
      end
    end
    assert.are.equal(#ONNX, seen)
    for _, name in ipairs(ONNX) do os.remove(base .. "-" .. name .. ".onnx") end
  end)
end)

describe("model zoo, large models (make test-large)", function()
  if not large_dir or large_dir == "" then
    pending("the models over 100M parameters run under `make test-large` (PTHCV_ZOO_LARGE is not set)")
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

describe("nn.MultiheadAttention and F.scaled_dot_product_attention against torch", function()
  local zoo, why = support.zoo("nn.MultiheadAttention against torch (mha.pth)")
  if not zoo then pending(why) return end
  local cases = pthcv.load(dir .. "/mha.pth")
  for _, kv in ipairs(require("pthcv.reader.odict").items(cases)) do
    local name, case = kv[1], kv[2]
    it(name, function()
      if case.sdpa then   -- F.scaled_dot_product_attention against torch's formula
        local y = pthcv.F.scaled_dot_product_attention(case.q, case.k, case.v, fields(case, "call."))
        assert.are.same(case.y.shape, y.shape)
        assert.is_true(max_abs(y - case.y) <= 1e-5 * max_abs(case.y), name)
        return
      end
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
