-- spec/quant_fire_spec.lua: int8 SqueezeNet (pthcv.quant, quant/fuse.lua's
-- Fire): each Fire's ReLUs run in its convolutions' int8 kernels, and its
-- two expand convolutions write their channels of one quint8 output
-- (pthcv_qconv2d_forward_cat) at one shared scale; calibration images are
-- normalised as torchvision's (pixels / 255).
local pthcv = require "pthcv"
local support = require "support"
local nn = pthcv.nn
local F = nn.F
local qpacks = require "pthcv.quant.packs"

local function max_abs(t) return math.max(t:max(), -t:min()) end

-- squeezenet1_1 with trained-like weights: random weights scaled to keep
-- the activations' size from layer to layer, random biases
local function squeezenet()
  local m = pthcv.models.squeezenet1_1{ num_classes = 10 }
  local sd = {}
  for i, kv in ipairs(m:state_dict():items()) do
    local name, t = kv[1], kv[2]
    local fan_in = t.ndim == 4 and t.shape[2] * t.shape[3] * t.shape[4] or 1
    local v = pthcv.randn(t.shape, { seed = 100 + i }) * (t.ndim == 4 and math.sqrt(2 / fan_in) or 0.05)
    sd[#sd + 1] = { name, v }
  end
  m:load_state_dict(sd)
  return m:eval()
end

local calibration = { pthcv.randn({ 1, 3, 64, 64 }, { seed = 1 }), pthcv.randn({ 1, 3, 64, 64 }, { seed = 2 }) }

-- The int8 pack of float convolution `conv` without its fused ReLU, with
-- the fused pack q's weights and quantization: the unfused path's layer.
local function unfused(conv, q)
  return qpacks.build(conv:make_pack(nil, nil), q.w, q.b,
                      { in_scale = q.in_scale, in_zp = q.in_zp, out_scale = q.out_scale, out_zp = q.out_zp })
end

describe("int8 SqueezeNet (Fire fused)", function()
  it("runs no standalone ReLU and no concatenation: squeeze and expand convolutions with their ReLUs", function()
    local m = squeezenet()
    m:quantize{ calibration = calibration }
    local file = support.tmpname(".pth")
    pthcv.quant.save(m, file)
    local code, out, err = support.pthcv("bench", "--model", "squeezenet1_1", "--weights", file, "--shape",
                                         "1x3x64x64", "--runs", "1", "--warmup", "1", "--profile")
    os.remove(file)
    assert.are.equal(0, code, err)
    assert.matches("features%.3%.squeeze%+ReLU", out)
    assert.matches("features%.3%.expand1x1%+ReLU%+expand3x3%+ReLU%+cat", out)
    assert.matches("qconv cat of 2 +[%d.]+ +8\n", out)   -- one call per Fire
    for line in out:gmatch("[^\n]+") do
      assert.is_nil(line:match("^%S+ +ReLU "), "a ReLU module ran on its own: " .. line)
      assert.is_nil(line:match("^activate"), "an activation op ran on its own: " .. line)
      assert.is_nil(line:match("^cat "), "a concatenation ran as a copy: " .. line)
    end
  end)

  it("gives the unfused path's values (conv, ReLU, conv, ReLU, cat) at the same scales", function()
    local m = squeezenet()
    m:quantize{ calibration = calibration }
    local x = pthcv.randn({ 1, 3, 64, 64 }, { seed = 3 })
    local h = x
    for i = 1, 3 do h = m.features[i](h) end   -- conv+ReLU (its own fused step), max pool
    local checked = 0
    for i = 4, 13 do
      local fire = m.features[i]
      if fire:typename() == "Fire" then
        local y = fire(h)
        assert.are.equal("quint8", y.dtype)
        -- the unfused path: each convolution's int8 output, then ReLU and cat on real values
        local s = F.relu(F.conv2d_packed(unfused(fire.squeeze, fire._squeeze), h))
        local a = F.relu(F.conv2d_packed(unfused(fire.expand1x1, fire._expand1x1), s))
        local b = F.relu(F.conv2d_packed(unfused(fire.expand3x3, fire._expand3x3), s))
        local ref = F.cat({ a.is_quantized and a:dequantize() or a, b.is_quantized and b:dequantize() or b }, 1)
        local d = max_abs(y:dequantize() - ref)
        assert.is_true(d <= fire._expand1x1.out_scale * 1.0001,
                       "Fire " .. i .. ": " .. d .. " from the unfused path, more than one step")
        assert.are.equal(0, d)   -- in fact the same values: the ReLU is the clamp at the zero point
        checked = checked + 1
      end
      h = fire(h)
    end
    assert.are.equal(8, checked)
  end)

  it("stays close to float32, gives the same bits at 1, 2 and 3 threads and after save / load", function()
    local m = squeezenet()
    local x = pthcv.randn({ 1, 3, 64, 64 }, { seed = 4 })
    local y0 = m(x)
    m:quantize{ calibration = calibration }
    pthcv.set_num_threads(1)
    local y = m(x)
    local err = max_abs(y - y0) / max_abs(y0)
    assert.is_true(err < 0.1, "int8 is " .. err .. " of the float32 output's scale away")
    for t = 2, 3 do   -- the bits of 1 thread (y)
      pthcv.set_num_threads(t)
      assert.are.equal(0, max_abs(m(x) - y), t .. " threads")
    end
    pthcv.set_num_threads(1)
    local f = m.features[4]
    assert.are.equal(f._expand1x1.out_scale, f._expand3x3.out_scale)
    assert.are.equal(f._expand1x1.out_zp, f._expand3x3.out_zp)
    local file = support.tmpname(".pth")
    pthcv.quant.save(m, file)
    local m2 = squeezenet()
    pthcv.quant.load(m2, file)
    os.remove(file)
    assert.are.equal(0, max_abs(m2(x) - y))
  end)

  it("runs a ReLU, ReLU6 or Hardtanh module on int8 values as int8 (torch's quantized relu: the input's scale)", function()
    local m = squeezenet()
    m:quantize{ calibration = calibration }
    local fire = m.features[4]
    local s = F.conv2d_packed(unfused(fire.squeeze, fire._squeeze), pthcv.randn({ 1, 64, 15, 15 }, { seed = 5 }))
    assert.are.equal("quint8", s.dtype)
    for _, act in ipairs({ nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-0.25, 0.5) }) do
      local y = act(s)
      assert.are.equal("quint8", y.dtype)
      assert.are.equal(s.scale, y.scale)
      local d = max_abs(y:dequantize() - act(s:dequantize()))
      assert.is_true(d <= s.scale * 0.5 + 1e-7, act:typename() .. ": " .. d .. " from float, more than half a step")
    end
  end)

  it("normalises calibration images as torchvision does (pixels / 255, then ImageNet's mean and std)", function()
    local m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()):eval()
    m:quantize{ calibration = { support.root .. "/examples/demo.jpg" } }
    local q = m._steps[1].pack
    -- normalised pixels lie in [-2.12, 2.64]: a step of at most 4.76 / 255
    assert.is_true(q.in_scale <= 4.77 / 255 and q.in_scale > 1 / 255, "input scale " .. q.in_scale)
  end)
end)
