-- spec/quant_spec.lua: int8 inference (pthcv.quant).
-- Runs on the fixtures spec/fixtures/make_quant_fixtures.py writes (tools/
-- run-specs does, into PTHCV_QUANT, when torch, torchvision and sklearn are
-- importable); without them the checks on real data are pending.
--   * module:quantize on a CNN torch trained on the handwritten digits of
--     sklearn: top-1 at most 1 point below float32, for each method;
--   * torch's own int8 models (torchvision's quantizable resnet18, resnet50,
--     mobilenet_v2, mobilenet_v3_large quantized by torch with the qnnpack
--     engine): the same outputs as torch's (within one step of their last
--     layer's scale; in practice the same bits);
--   * a QAT mobilenet_v2 (torch's prepare_qat, a few training steps): its
--     converted state_dict and its prepared one (fake-quantize scales) give
--     torch's outputs; the prepared one becomes torch's int8 weights;
--   * pthcv.state_dict of a whole quantized model: torch's state_dict;
--   * the int8 ops of MobileNetV3 (hardswish, hardsigmoid on every quint8
--     value, mul with the channel broadcast, global average pool): torch's
--     integers.
local pthcv = require "pthcv"
local json = require "dkjson"
local support = require "support"
local nn = pthcv.nn
local ffi = require "ffi"
local C = require("pthcv.core").C
local Tensor = require "pthcv.tensor"

local dir = os.getenv("PTHCV_QUANT")
if dir == "" then dir = nil end

local function max_abs(t) return math.max(t:max(), -t:min()) end

-- the digits CNN of make_quant_fixtures.py, written with pthcv.nn
local function digits_cnn()
  return nn.Sequential(
    nn.Conv2d(1, 16, 3, { padding = 1 }), nn.BatchNorm2d(16), nn.ReLU(),
    nn.Conv2d(16, 32, 3, { padding = 1 }), nn.BatchNorm2d(32), nn.ReLU(),
    nn.MaxPool2d(2),
    nn.Conv2d(32, 64, 3, { padding = 1 }), nn.BatchNorm2d(64), nn.ReLU(),
    nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(64, 10))
end

-- m(x) gives the same bits at 1, 2 and 3 threads
local function same_bits_at_1_2_3_threads(m, x)
  local outs = {}
  for t = 1, 3 do
    pthcv.set_num_threads(t)
    outs[t] = m(x)
  end
  pthcv.set_num_threads(1)
  assert.are.equal(0, max_abs(outs[1] - outs[2]))
  assert.are.equal(0, max_abs(outs[1] - outs[3]))
end

local function top1(logits, labels)
  local _, idx = logits:topk(1)
  local ok = 0
  for i = 1, labels.shape[1] do
    if idx:get(i, 1) - 1 == labels:get(i) then ok = ok + 1 end
  end
  return ok / labels.shape[1]
end

-- a small model with every kind of layer quantize handles, on random data
local function small_model()
  local m = nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU6(),
                          nn.Conv2d(8, 8, 3, { padding = 1, groups = 8 }), nn.Hardswish(),
                          nn.MaxPool2d(2), nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 5))
  -- trained-like: random weights, biases and BatchNorm statistics
  local sd = {}
  for i, kv in ipairs(m:state_dict():items()) do
    local name, t = kv[1], kv[2]
    if t.dtype == "float32" then
      local v = pthcv.randn(t.shape, { seed = i }) * 0.3
      if name:find("running_var") or name:find("1%.weight") then v = v * 0.3 + 1 end
      sd[#sd + 1] = { name, v }
    else
      sd[#sd + 1] = { name, t }
    end
  end
  m:load_state_dict(sd)
  return m
end

describe("int8 (pthcv.quant)", function()
  it("quantizes a model in place: int8 packs, float32 outputs, close to float32", function()
    local m = small_model():eval()
    local x = pthcv.randn({ 2, 3, 16, 16 }, { seed = 7 })
    local y0 = m(x)
    assert.are.equal(m, m:quantize{ calibration = { x, pthcv.randn({ 1, 3, 16, 16 }, { seed = 8 }) } })
    local y = m(x)
    assert.are.equal("float32", y.dtype)
    assert.are.same(y0.shape, y.shape)
    local err = max_abs(y - y0) / max_abs(y0)
    assert.is_true(err < 0.05, "int8 is " .. err .. " of the float32 output's scale away")
    assert.is_true(err > 0, "the int8 model gives the float32 bits: nothing was quantized")
  end)

  it("gives the same bits at 1, 2 and 3 threads", function()
    local m = small_model():eval()
    local x = pthcv.randn({ 1, 3, 16, 16 }, { seed = 9 })
    m:quantize{ calibration = { x } }
    same_bits_at_1_2_3_threads(m, x)
  end)

  it("is float32 again once weights are loaded", function()
    local m = small_model():eval()
    local x = pthcv.randn({ 1, 3, 16, 16 }, { seed = 10 })
    local y0 = m(x)
    local sd = m:state_dict()
    m:quantize{ calibration = { x } }
    m:load_state_dict(sd)
    assert.are.equal(0, max_abs(m(x) - y0))
  end)

  it("refuses what it cannot do, saying why", function()
    local m = small_model():eval()
    local x = pthcv.randn({ 1, 3, 16, 16 })
    local function err(opts) return select(2, pcall(function() m:quantize(opts) end)) end
    assert.matches("calibration is empty", err{ calibration = {} })
    assert.matches("calibration must be a list", err{ calibration = x })
    assert.matches("calibration%[1%] is a number", err{ calibration = { 3 } })
    assert.matches("method must be minmax, percentile or entropy", err{ calibration = { x }, method = "kl" })
    assert.matches("percentile must be in", err{ calibration = { x }, method = "percentile", percentile = 20 })
    m:quantize{ calibration = { x } }
    assert.matches("quantized already", err{ calibration = { x } })
    assert.matches("no convolution or linear layer", select(2, pcall(function()
      nn.Sequential(nn.ReLU()):eval():quantize{ calibration = { x } }
    end)))
  end)

  it("saves and loads an int8 model (.pth that torch.load reads too), and pthcv quantize writes one", function()
    local m = small_model():eval()
    local x = pthcv.randn({ 1, 3, 16, 16 }, { seed = 11 })
    m:quantize{ calibration = { x } }
    local y = m(x)
    local file = support.tmpname(".pth")
    assert.is_true(pthcv.quant.save(m, file) > 0)
    local m2 = small_model():eval()
    pthcv.quant.load(m2, file)
    assert.are.equal(0, max_abs(m2(x) - y))
    local sd = pthcv.state_dict(file)
    assert.are.equal("qint8", sd["0.weight"].dtype)
    assert.is_true(pthcv.quant.is_int8(sd:items()))
    local code, out = support.run("/usr/bin/python3 -c " .. support.shell_quote(
      "import torch, sys; sd = torch.load(sys.argv[1]); print(sd['0.weight'].dtype, sd['0.weight'].qscheme(), len(sd))")
      .. " " .. support.shell_quote(file))
    if code == 0 then assert.matches("torch.qint8 torch.per_channel_affine", out) end
    os.remove(file)
    -- the command: quantize on a folder of inputs, then run with the int8 file
    local calib = support.tmpname("-calib")
    os.execute("mkdir -p " .. support.shell_quote(calib))
    pthcv.save(calib .. "/a.npy", pthcv.randn({ 1, 3, 224, 224 }, { seed = 12 }))
    local q = support.tmpname(".pth")
    local c1, out1, err1 = support.pthcv("quantize", "--model", "squeezenet1_1", "--init", "random", "--calib", calib,
                                         "-o", q)
    assert.are.equal(0, c1, err1)
    assert.matches("int8 layers", out1)
    local c2, _, err2 = support.pthcv("run", "--model", "squeezenet1_1", "--weights", q, "--input", calib .. "/a.npy",
                                      "--output", calib .. "/y.npy")
    assert.are.equal(0, c2, err2)
    assert.are.same({ 1, 1000 }, pthcv.load_npy(calib .. "/y.npy").shape)
    local c3, _, err3 = support.pthcv("quantize", "--model", "squeezenet1_1", "--init", "random", "--calib", calib)
    assert.are.equal(2, c3)
    assert.matches("%-o OUT.pth", err3)
    os.remove(q)
    os.execute("rm -rf " .. support.shell_quote(calib))
  end)

  if not dir then
    pending("the digits and torch int8 fixtures (PTHCV_QUANT: tools/run-specs writes them with torch and sklearn)")
    return
  end

  it("loses at most 1 point of top-1 on the digits (minmax, percentile, entropy)", function()
    local d = dir .. "/digits/"
    local info = json.decode(support.read_file(d .. "info.json"))
    local x, labels = pthcv.load_npy(d .. "test_x.npy"), pthcv.load_npy(d .. "test_y.npy")
    local calib = pthcv.load_npy(d .. "calib_x.npy")
    for _, method in ipairs({ "minmax", "percentile", "entropy" }) do
      local m = digits_cnn()
      m:load_state_dict(pthcv.state_dict(d .. "cnn.pth"))
      m:eval()
      local f = top1(m(x), labels)
      assert.is_true(math.abs(f - info.float_top1) < 1e-9, "float32 top-1 " .. f .. " is not torch's " .. info.float_top1)
      m:quantize{ calibration = { calib }, method = method }
      local q = top1(m(x), labels)
      print(string.format("# digits (%d images): top-1 float32 %.2f%%, int8 (%s) %.2f%%", info.n_test, 100 * f,
                          method, 100 * q))
      assert.is_true(q >= f - 0.01, method .. ": int8 top-1 " .. q .. " is more than 1 point below " .. f)
    end
  end)

  for _, name in ipairs({ "resnet18", "resnet50", "mobilenet_v2", "mobilenet_v3_large" }) do
    it("runs torch's int8 " .. name .. " as torch does", function()
      local d = dir .. "/torch_int8/"
      local info = json.decode(support.read_file(d .. name .. ".json"))
      local m = pthcv.models[name]()
      pthcv.quant.load_torch(m, d .. name .. ".pth")
      local y = m(pthcv.load_npy(d .. name .. ".input.npy"))
      local want = pthcv.load_npy(d .. name .. ".output.npy")
      local diff = max_abs(y - want)
      print(string.format("# torch int8 %-14s max|diff| %.3g (%.3g steps of %.3g)", name, diff, diff / info.step, info.step))
      assert.is_true(diff <= info.step * (1 + 1e-5), name .. ": " .. diff / info.step .. " quantization steps from torch's")
    end)
  end

  it("runs a QAT model's state_dict, prepared (fake-quantize) or converted, as torch's converted model", function()
    local d = dir .. "/torch_int8/mobilenet_v2_qat"
    local info = json.decode(support.read_file(d .. ".json"))
    local x, want = pthcv.load_npy(d .. ".input.npy"), pthcv.load_npy(d .. ".output.npy")
    for _, file in ipairs({ d .. ".pth", d .. ".prepared.pth" }) do
      local m = pthcv.models.mobilenet_v2()
      pthcv.quant.load_torch(m, file)
      local diff = max_abs(m(x) - want)
      print(string.format("# torch QAT mobilenet_v2 %s: max|diff| %.3g (%.3g steps)", file:match("[^/]+$"), diff,
                          diff / info.step))
      assert.is_true(diff <= info.step * (1 + 1e-5), file .. ": " .. diff / info.step .. " quantization steps from torch's")
    end
    -- the prepared state_dict's weights become torch's converted ones, bit for bit
    local qat = require "pthcv.quant.qat"
    local function dict_of(file)
      local t = {}
      for _, kv in ipairs(pthcv.load(file):items()) do t[kv[1]] = kv[2] end
      return t
    end
    local got, torch_sd = qat.converted(dict_of(d .. ".prepared.pth"), 1e-5), dict_of(d .. ".pth")
    local n = 0
    for k, w in pairs(got) do
      if Tensor.is(w) and w.dtype == "qint8" then
        local tw = torch_sd[k] or torch_sd[k:gsub("%.0$", "")][1]
        local ts = tw.scales and tw.scales:get(1) or tw.scale
        assert.are.equal(ts, w.scales:get(1), k)
        local a = ffi.cast("const int8_t *", C.pthcv_tensor_data(w:contiguous().ct))
        local b = ffi.cast("const int8_t *", C.pthcv_tensor_data(tw:contiguous().ct))
        local differ = 0
        for i = 0, w.numel - 1 do if a[i] ~= b[i] then differ = differ + 1 end end
        assert.are.equal(0, differ, k)
        n = n + 1
      end
    end
    assert.are.equal(53, n)
    -- an asymmetric weight quantization is refused, naming the key
    local bad = dict_of(d .. ".prepared.pth")
    bad["features.3.conv.2.weight_fake_quant.zero_point"] = Tensor.from_table({ 3 }, "int64")
    local ok, e = pcall(qat.converted, bad, 1e-5)
    assert.is_false(ok)
    assert.matches("features%.3%.conv%.2%.weight_fake_quant%.zero_point is not 0", e)
  end)

  it("gives the same bits for torch's int8 mobilenet_v3_large at 1, 2 and 3 threads", function()
    local d = dir .. "/torch_int8/"
    local m = pthcv.models.mobilenet_v3_large()
    pthcv.quant.load_torch(m, d .. "mobilenet_v3_large.pth")
    local x = pthcv.load_npy(d .. "mobilenet_v3_large.input.npy")
    same_bits_at_1_2_3_threads(m, x)
  end)

  -- a quint8 tensor of the given stored integers
  local function quint8(ints, shape, scale, zp)
    local t = Tensor.wrap(C.pthcv_tensor_new(C.PTHCV_QUINT8, #shape, ffi.new("int64_t[?]", #shape, shape)), true)
    t.ct.qscheme, t.ct.qscale, t.ct.qzero_point = C.PTHCV_QSCHEME_PER_TENSOR_AFFINE, scale, zp
    local d = ffi.cast("uint8_t *", C.pthcv_tensor_data(t.ct))
    for i, v in ipairs(ints) do d[i - 1] = v end
    return t
  end
  local function ints_of(t)
    local d = ffi.cast("const uint8_t *", C.pthcv_tensor_data(t.ct))
    local out = {}
    for i = 1, t.numel do out[i] = d[i - 1] end
    return out
  end
  local function differing(got, want)
    local n = 0
    for i = 1, math.max(#got, #want) do if got[i] ~= want[i] then n = n + 1 end end
    return n
  end

  it("computes torch's int8 hardswish, hardsigmoid, mul and global average pool", function()
    local e = json.decode(support.read_file(dir .. "/torch_int8/elementwise.json"))
    local F = nn.F
    local every = {}
    for i = 1, 256 do every[i] = i - 1 end
    for _, a in ipairs(e.activations) do
      local x = quint8(every, { 256 }, a.scale, a.zero_point)
      local hw = F._result(C.pthcv_qhardswish(x.ct, a.out_scale, a.out_zero_point), "qhardswish")
      assert.are.equal(0, differing(ints_of(hw), a.hardswish), "hardswish at scale " .. a.scale)
      -- torch's quantized hardsigmoid chooses its output scale itself: 1/256, zero point 0
      assert.are.equal(1 / 256, a.hardsigmoid_scale)
      assert.are.equal(0, a.hardsigmoid_zero_point)
      local hs = F._result(C.pthcv_qhardsigmoid(x.ct, 1 / 256, 0), "qhardsigmoid")
      assert.are.equal(0, differing(ints_of(hs), a.hardsigmoid), "hardsigmoid at scale " .. a.scale)
    end
    for _, m in ipairs(e.mul_pool) do
      local x = quint8(m.x, m.shape, 0.031, 113)
      local f = quint8(m.f, { m.shape[1], m.shape[2], 1, 1 }, 1 / 256, 0)
      local y = F._result(C.pthcv_qmul(f.ct, x.ct, 0.0123, 5), "qmul")
      assert.are.equal(0, differing(ints_of(y), m.mul), "mul " .. table.concat(m.shape, "x"))
      local p = F._result(C.pthcv_qglobal_avg_pool2d(x.ct), "qglobal_avg_pool2d")
      assert.are.equal(0, differing(ints_of(p), m.pool), "global average pool " .. table.concat(m.shape, "x"))
    end
  end)

  it("refuses MobileNetV3's state_dict, whose Hardswish scales torch leaves out, naming the key", function()
    local ok, e = pcall(pthcv.quant.load_torch, pthcv.models.mobilenet_v3_large(),
                        dir .. "/torch_int8/mobilenet_v3_large.state_dict.pth")
    assert.is_false(ok)
    assert.matches("features%.0%.2%.scale", e)
    assert.matches("torch%.save%(model%)", e)
  end)

  it("lists a whole quantized model's state_dict as torch's model.state_dict() does", function()
    -- the quantized convolutions (pickled as their __getstate__ tuples), the
    -- linear layers' packed (weight, bias) and the adds' scales, not only quant.*
    local d = dir .. "/torch_int8/mobilenet_v3_large"
    local whole = pthcv.state_dict(d .. ".pth"):items()
    local torch_sd = pthcv.state_dict(d .. ".state_dict.pth"):items()
    assert.are.equal(#torch_sd, #whole)
    local function float(t) return t.is_quantized and t:dequantize() or t:float() end
    for i, kv in ipairs(torch_sd) do
      local name, want = kv[1], kv[2]
      assert.are.equal(name, whole[i][1])
      local got = whole[i][2]
      assert.are.equal(want.dtype, got.dtype, name)
      assert.are.same(want.shape, got.shape, name)
      assert.are.equal(0, want.numel == 0 and 0 or max_abs(float(got) - float(want)), name)
    end
    local names = {}
    for _, kv in ipairs(whole) do names[kv[1]] = true end
    assert.is_true(names["features.0.0.weight"] and names["features.0.0.scale"] and names["classifier.3.scale"]
                   and names["classifier.3._packed_params._packed_params.0"] and names["features.1.skip_add.scale"]
                   and names["features.4.block.2.skip_mul.scale"] ~= nil)
  end)

  it("refuses a float model pickled whole, naming what is missing", function()
    local zoo = os.getenv("PTHCV_ZOO")
    local f = zoo and io.open(zoo .. "/mobilenet_v3_small.model.pth")
    if f then f:close() end
    if not f then
      pending("the zoo's whole-model pickles (PTHCV_ZOO)")
      return
    end
    local ok, e = pcall(pthcv.quant.load_torch, pthcv.models.mobilenet_v3_small(), zoo .. "/mobilenet_v3_small.model.pth")
    assert.is_false(ok)
    assert.matches("quant%.scale %(QuantStub's scale%) is missing", e)
  end)

  it("refuses a float state_dict for load_torch, naming the tensor", function()
    local m = pthcv.models.resnet18()
    local ok, e = pcall(pthcv.quant.load_torch, m, os.getenv("PTHCV_ZOO") and os.getenv("PTHCV_ZOO") .. "/resnet18.pth"
                        or dir .. "/digits/cnn.pth")
    assert.is_false(ok)
    assert.matches("load_torch", e)
  end)
end)
