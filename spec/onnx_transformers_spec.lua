-- onnx_transformers_spec: the ONNX form of the transformer ops
-- (lua/pthcv/export/onnx/ops_transformer.lua): LayerNorm (decomposed below
-- opset 17, LayerNormalization at 17), LayerNorm over channels, attention
-- as MatMul/Softmax/Transpose, the as_strided views of a fused qkv, and
-- OpenCV 4.6's warnings for them.
--
-- Without Python: the nodes each opset gets, each export checked by pthcv's
-- evaluator against the forward pass (export refuses a graph that differs
-- by more than 1e-5). With node and onnxruntime-node (tools/install-deps;
-- spec/onnx_runtime.lua) and the zoo's fixtures: the small ViT, Swin,
-- Swin V2 (cosine attention), ConvNeXt and MaxViT of the zoo at every
-- opset from 10 to 17 give torch's logits in onnxruntime, with --dynamic
-- batch at two batches, and with --half (float16 weights: within 1e-4 of
-- pthcv's float16 model, 1e-2 of torch's float32 logits). With python3-onnx (spec/opencv/check_export.py):
-- convnext_tiny, vit_b_16 and swin_t with the zoo's weights at opsets 13
-- and 17 pass onnx.checker (full_check) and run in onnxruntime. OpenCV 4.6
-- runs no LayerNorm (neither form): the spec asserts that cv2 fails on
-- them and that the export warned, naming the node.
local support = require "support"
local X = require "export_support"
local pthcv = require "pthcv"

local R = require "onnx_runtime"
local nn, F = pthcv.nn, pthcv.F

-- max |a - b| / max |b| over two tensors of one shape
local function rel_diff(a, b)
  assert.are.same(b.shape, a.shape)
  local pa, pb = a:float():contiguous():data(), b:float():contiguous():data()
  local d, s = 0, 0
  for i = 0, a.numel - 1 do
    d, s = math.max(d, math.abs(pa[i] - pb[i])), math.max(s, math.abs(pb[i]))
  end
  return d / s
end

-- builds (and checks against the forward pass) m's ONNX model at opset; its info
local function build(m, x, opset)
  local _, info = require("pthcv.export.onnx").build(m, { input = x, opset = opset })
  return info
end

-- a block of the transformer ops on [N, C, H, W]: LayerNorm2d, exact and
-- tanh GELU, a LayerNorm over the last dim, multi-head attention over a
-- fused qkv read through as_strided (Swin's and MaxViT's views), with a
-- relative-position bias
local Block = nn.class("TransformerOpsBlock")
function Block:__init()
  self.w2d, self.b2d = pthcv.randn({ 8 }, { seed = 11 }), pthcv.randn({ 8 }, { seed = 12 })
  self.ln = nn.LayerNorm(8)
  self.qkv = nn.Linear(8, 24)
  self.bias = pthcv.randn({ 2, 6, 6 }, { seed = 13 })
end
function Block:forward(x)
  local n = x:size(1)
  local y = F.gelu(F.layer_norm_channels(x, self.w2d, self.b2d, 1e-6))
  local t = self.ln(y:flatten(3):transpose(2, 3):contiguous()) -- [N, 6, 8]
  local qkv = self.qkv(F.gelu(t, "tanh")):contiguous()            -- [N, 6, 24]
  local function head(i)                                          -- [N, 2, 6, 4]
    return qkv:as_strided({ n, 2, 6, 4 }, { 6 * 24, 4, 24, 1 }, qkv.offset + i * 8)
  end
  local o = F.attention(head(0), head(1), head(2), { bias = self.bias, heads_last = true }) -- [N, 6, 2, 4]
  return o:reshape({ n, 6, 8 })
end

local function block()
  local m = X.randomise(Block(), 3):eval()
  return m, pthcv.randn({ 1, 8, 2, 3 }, { seed = 4 })
end

local function count_warnings(ws, pattern)
  local n = 0
  for _, w in ipairs(ws) do if w:find(pattern, 1, true) then n = n + 1 end end
  return n
end

describe("ONNX transformer ops", function()
  it("LayerNorm: decomposed below opset 17, LayerNormalization at 17; attention and as_strided views; "
     .. "checked against the forward pass", function()
    local m, x = block()
    local i13, i17 = build(m, x, 13), build(m, x, 17)
    assert.are.same({ 1, 6, 8 }, i13.outputs[1].shape)
    -- each LayerNorm (two) warned about once, by its form's node: the first ReduceMean at 13, LayerNormalization at 17
    assert.are.equal(2, count_warnings(i13.warnings, "(ReduceMean, in "))
    assert.are.equal(0, count_warnings(i13.warnings, "(LayerNormalization, in "))
    assert.are.equal(2, count_warnings(i17.warnings, "(LayerNormalization, in "))
    assert.are.equal(0, count_warnings(i17.warnings, "(ReduceMean, in "))
    assert.truthy(table.concat(i13.warnings, "\n"):find("OpenCV 4.6 runs no LayerNorm", 1, true))
    -- each LayerNorm: ReduceMean, Sub, Pow, ReduceMean, Add, Sqrt, Div, Mul, Add at 13; one node at 17
    assert.are.equal(2 * 8, i13.nodes - i17.nodes)
    -- --dynamic batch: the views of a batch of 1 get the nodes of a batch of n (checked at both by the evaluator)
    local _, dyn = require("pthcv.export.onnx").build(m, { input = x, opset = 13, dynamic = { "batch" } })
    assert.are.same({ "batch", 6, 8 }, dyn.outputs[1].shape)
  end)

  it("refuses as_strided views that are no box of their input's elements, naming the view", function()
    local Overlap = nn.class("OverlapView")
    function Overlap:forward(x) return x:as_strided({ 3, 4 }, { 2, 1 }) * 2 end
    local ok, err = pcall(build, Overlap():eval(), pthcv.randn({ 12 }, { seed = 1 }), 13)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("as_strided of a [12] tensor (shape [3, 4], stride [2, 1], offset 0) has no "
                                     .. "ONNX form: it overlaps itself (an element seen twice)", 1, true), err)
    local Past = nn.class("PastView")
    function Past:forward(x) return x:as_strided({ 2, 3 }, { 4, 1 }, 2) * 2 end
    ok, err = pcall(build, Past():eval(), pthcv.randn({ 12 }, { seed = 1 }), 13)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("(shape [2, 3], stride [4, 1], offset 2) has no ONNX form: a row of it "
                                     .. "crosses into the next", 1, true), err)
    -- a view of a narrowed tensor that reads the storage after it
    local After = nn.class("AfterView")
    function After:forward(x) local y = x:narrow(1, 1, 6); return y:as_strided({ 2, 3 }, { 3, 1 }, y.offset + 3) * 2 end
    ok, err = pcall(build, After():eval(), pthcv.randn({ 12 }, { seed = 1 }), 13)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("as_strided of a [6] tensor (shape [2, 3], stride [3, 1], offset 3) has no ONNX "
                                     .. "form: it reaches past the input's elements", 1, true), err)
  end)

  local zoo, why = support.zoo("transformer zoo models through ONNX and onnxruntime")
  local ort, no_ort = R.available()

  -- The small configurations of the zoo (torch's logits on their inputs):
  -- whole-model pickles rebuilt by nn.from_module, and tiny_vit (whose
  -- pickle holds a functools.partial) from its state_dict
  local TINY = { "tiny_vit", "tiny_swin", "tiny_swin_v2", "tiny_convnext", "tiny_maxvit" }
  local function tiny(name)
    local m
    if name == "tiny_vit" then
      m = require("pthcv.models.vit").VisionTransformer { image_size = 32, patch_size = 8, num_layers = 2, num_heads = 2,
                                           hidden_dim = 16, mlp_dim = 32, num_classes = 10, representation_size = 12 }
      m:load_state_dict(pthcv.state_dict(zoo .. "/tiny_vit.pth"))
    else
      m = nn.from_module(pthcv.load(zoo .. "/" .. name .. ".model.pth"))
    end
    return m:eval(), zoo .. "/" .. name .. ".input.npy", zoo .. "/" .. name .. ".output.npy"
  end

  it("the small ViT, Swin, Swin V2, ConvNeXt and MaxViT at every opset from 10 to 17 run in onnxruntime: torch's "
     .. "logits", function()
    if not zoo then pending(why) return end
    if not ort then pending(no_ort) return end
    for _, name in ipairs(TINY) do
      local m, input, output = tiny(name)
      local worst = 0
      for opset = 10, 17 do
        local path = support.tmpname("-" .. name .. opset .. ".onnx")
        m:export_onnx(path, { input = pthcv.load_npy(input), opset = opset })
        worst = math.max(worst, (R.assert_close(path, { { input = input, expected = output } }, 1e-4,
                                                 name .. "@" .. opset)))
        os.remove(path)
      end
      print(string.format("# %-14s opsets 10-17: max |onnxruntime - torch| / max |torch| = %.3g", name, worst))
    end
  end)

  -- (ViT's class token, a row repeated to the batch, is Expand-ed to it)
  it("--dynamic batch: the small ViT, Swin, Swin V2, ConvNeXt and MaxViT run in onnxruntime at batches 1 and 3",
     function()
    if not zoo then pending(why) return end
    if not ort then pending(no_ort) return end
    for _, name in ipairs(TINY) do
      local m, input, output = tiny(name)
      local x1 = pthcv.load_npy(input)
      local shape3 = { 3, x1.shape[2], x1.shape[3], x1.shape[4] }
      local x3 = pthcv.randn(shape3, { seed = 21 })
      for _, opset in ipairs { 13, 17 } do
        local path = support.tmpname("-" .. name .. "-dyn" .. opset .. ".onnx")
        local info = m:export_onnx(path, { input = x1, opset = opset, dynamic = { "batch" } })
        assert.are.same({ "batch", 10 }, info.outputs[1].shape)
        local worst = R.assert_close(path, { { input = input, expected = output }, { input = x3, expected = m(x3) } },
                                     1e-4, name .. "@" .. opset .. " --dynamic batch")
        print(string.format("# %-14s --dynamic batch, opset %d: batches 1 (torch) and 3 (pthcv), max rel diff %.3g",
                            name, opset, worst))
        os.remove(path)
      end
    end
  end)

  -- (ViT's class token and positional embedding, ConvNeXt's layer scale
  -- and Swin V2's coordinate table are float16 buffers of the half model:
  -- the kernels read them as float32, and the graph Casts them)
  it("--half: the small ViT, Swin, Swin V2, ConvNeXt and MaxViT's float16 files run in onnxruntime as pthcv's "
     .. "float16 model does", function()
    if not zoo then pending(why) return end
    if not ort then pending(no_ort) return end
    for _, name in ipairs { "tiny_vit", "tiny_swin", "tiny_swin_v2", "tiny_convnext", "tiny_maxvit" } do
      local m, input, output = tiny(name)
      local x = pthcv.load_npy(input)
      local path = support.tmpname("-" .. name .. "-half.onnx")
      local info = m:export_onnx(path, { input = x, opset = 13, half = true }) -- m is float16 from here
      assert.is_true(info.half > 0, name)
      local worst, res = R.assert_close(path, { { input = x, expected = m(x) } }, 1e-4, name .. " --half")
      local rel = rel_diff(res[1][1].value, pthcv.load_npy(output))
      print(string.format("# %-14s --half: %d float16 initializers; onnxruntime vs pthcv's float16 model %.3g, "
                          .. "vs torch's float32 logits %.3g", name, info.half, worst, rel))
      assert.is_true(rel <= 1e-2, name .. " --half against torch: " .. rel)
      os.remove(path)
    end
  end)

  if not X.has_python("onnx, cv2, numpy") then
    pending("python3-onnx or python3-opencv is not installed: the files are not checked")
    return
  end
  if not zoo then pending(why) return end

  for _, name in ipairs { "convnext_tiny", "vit_b_16", "swin_t" } do
    it(name .. " at opsets 13 and 17: torch's logits, onnx.checker, onnxruntime; OpenCV 4.6's warning", function()
      local m, input, output = X.zoo_model(zoo, name)
      local x = pthcv.load_npy(input)
      -- the graph equals the forward pass within 1e-5 (export checks it); the forward pass torch's logits
      local rel = rel_diff(m(x), pthcv.load_npy(output))
      print(string.format("# %-14s max |pthcv - torch| / max |torch| = %.3g", name, rel))
      assert.is_true(rel <= 1e-4, name .. ": " .. rel)
      local jobs = {}
      for _, opset in ipairs { 13, 17 } do
        local path = support.tmpname("-" .. name .. opset .. ".onnx")
        local info = m:export_onnx(path, { input = x, opset = opset })
        local w = table.concat(info.warnings, "\n")
        local form = opset == 17 and "(LayerNormalization, in " or "(ReduceMean, in "
        assert.truthy(w:find("OpenCV 4.6 cannot run node " .. (opset == 17 and "LayerNormalization_" or "ReduceMean_"),
                             1, true), w)
        assert.truthy(w:find(form, 1, true), w)
        jobs[#jobs + 1] = { name = name .. "@" .. opset, kind = "onnx", model = path,
                            cases = { { input = input, expected = output } } }
      end
      m = nil
      collectgarbage(); collectgarbage()
      local res = X.check(jobs)
      for _, job in ipairs(jobs) do
        local r = res[job.name]
        print(string.format("# %-18s onnx.checker %s; cv2.dnn: %s", job.name, r.checker, r.opencv))
        assert.are.equal("ok", r.checker, job.name)
        assert.are_not.equal("ok", r.opencv, job.name .. ": OpenCV 4.6 ran it: drop the warning (opencv46.lua)")
        if ort then
          local worst = R.assert_close(job.model, job.cases, 1e-4, job.name)
          print(string.format("# %-18s onnxruntime: max |diff| / max |torch| = %.3g", job.name, worst))
        end
        os.remove(job.model)
      end
      if not ort then pending(no_ort) end
    end)
  end
end)
