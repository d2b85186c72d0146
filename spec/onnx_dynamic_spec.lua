-- onnx_dynamic_spec: --dynamic, symbolic input dims (lua/pthcv/export/onnx/
-- dynamic.lua): the model traced twice, reshapes computed in the graph.
--
-- Without Python: the axes, the reshape forms (0 and -1; Shape when more
-- dims must be computed, with OpenCV's warning), every dynamic graph
-- checked by pthcv's evaluator at both inputs, the refusals of models whose
-- graph depends on the input's size. With python3-onnx and python3-opencv:
-- each file runs in ONE cv2.dnn Net at two input sizes, against pthcv's
-- forward at each and torch's (resnet18 and mobilenet_v2 from the zoo's
-- whole-model pickles, the example U-Net). With node and onnxruntime-node
-- (spec/onnx_runtime.lua): the same files in one onnxruntime session at
-- both sizes, and the Shape-computed targets OpenCV 4.6 cannot run.
local support = require "support"
local X = require "export_support"
local R = require "onnx_runtime"
local pthcv = require "pthcv"
local onnx = require "pthcv.export.onnx"
local dynamic = require "pthcv.export.onnx.dynamic"

local nn, F = pthcv.nn, pthcv.F

-- Features as a sequence: [N, C, H, W] -> [N, H*W, C] -> Linear -> softmax,
-- and back to a map: reshapes whose targets change with N, H and W.
local Seq = nn.class("SequenceHead")
function Seq:__init() self.conv = nn.Conv2d(3, 8, 3, { stride = 2, padding = 1 }); self.fc = nn.Linear(8, 5) end
function Seq:forward(x)
  local y = self.conv(x)
  local n, c, h, w = unpack(y.shape)
  local s = y:view(n, c, h * w):transpose(2, 3)            -- [N, HW, C]
  return F.softmax(self.fc(s), -1)
end

-- Flattened and unflattened: the second reshape needs H and W, which only
-- the model's input says (Shape).
local Unflat = nn.class("Unflatten")
function Unflat:__init() self.conv = nn.Conv2d(3, 4, 3, { stride = 2, padding = 1 }) end
function Unflat:forward(x)
  local y = self.conv(x)
  local n, c, h, w = unpack(y.shape)
  return F.relu(y:reshape(n, c * h * w)):reshape(n, c, h, w)
end

local function export(m, o)
  local path = support.tmpname(".onnx")
  return m:export_onnx(path, o), path
end

describe("ONNX --dynamic", function()
  it("reads the axes: batch, channels, height, width or AXIS=NAME, and probes each at another size", function()
    assert.are.same({ [0] = "batch", [2] = "height", [3] = "width" }, dynamic.parse({ "batch", "height", "width" }, 4))
    assert.are.same({ [0] = "N", [1] = "len" }, dynamic.parse({ "0=N", "1=len" }, 3))
    assert.are.same({ [1] = "channels", [2] = "width" }, dynamic.parse({ "channels", "width" }, 3))
    assert.are.same({ 2, 3, 256, 288 }, dynamic.probe_shape({ 1, 3, 224, 224 }, { [0] = "b", [2] = "h", [3] = "w" }))
    for _, case in ipairs { { { "depth" }, "'depth' is neither batch" }, { { "4=x" }, "4=x is axis 4, but the input has 4" },
                            { { "batch", "0=n" }, "axis 0 is named twice" } } do
      local ok, e = pcall(dynamic.parse, case[1], 4)
      assert.is_false(ok)
      assert.truthy(e:find(case[2], 1, true), e)
    end
  end)

  it("writes reshapes with 0 and -1, and symbolic dims named after the input's axes", function()
    local m = X.randomise(Seq(), 2):eval()
    local r = export(m, { input = { 1, 3, 16, 20 }, dynamic = { "batch", "height", "width" } })
    assert.are.same({ "batch", 3, "height", "width" }, r.inputs[1].shape)
    assert.are.same({ "batch", "output_d1", 5 }, r.outputs[1].shape)
    assert.are.same({}, r.warnings)
    local t = onnx.trace(m, { input = { 1, 3, 16, 20 }, dynamic = { "batch", "height", "width" } })
    local targets = {}
    for _, n in ipairs(t.g.nodes) do
      if n.op == "Reshape" then targets[#targets + 1] = t.g.init_of[n.inputs[2]]:totable() end
    end
    onnx.release(t)
    assert.are.same({ { 0, 8, -1 } }, targets)
  end)

  it("computes a target from the model's input's Shape when 0 and -1 cannot say it, and warns for OpenCV", function()
    local m = X.randomise(Unflat(), 4):eval()
    local r, path = export(m, { input = { 1, 3, 8, 12 }, dynamic = { "batch", "height", "width" }, opset = 13 })
    assert.are.same({ "batch", 4, "output_d2", "output_d3" }, r.outputs[1].shape)
    assert.are.equal(1, #r.warnings)
    assert.truthy(r.warnings[1]:find("node Reshape_1 (Reshape, in the model's forward (Unflatten)) computes its target "
                                     .. "shape with Shape, which OpenCV 4.6 cannot run on dynamic dims", 1, true),
                  r.warnings[1])
    if X.has_python("onnx") then
      local c, _, e = support.run("/usr/bin/python3 -c " .. support.shell_quote(
        "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)") .. " " .. path)
      assert.are.equal(0, c, e)
    end
    -- onnxruntime computes the target at other sizes: one session, three inputs
    local ok, why = R.available()
    if not ok then pending(why) return end
    local cases = {}
    for i, shape in ipairs { { 1, 3, 8, 12 }, { 2, 3, 20, 16 }, { 3, 3, 6, 30 } } do
      local x = pthcv.randn(shape, { seed = 30 + i })
      cases[i] = { input = x, expected = m(x) }
    end
    local _, res = R.assert_close(path, cases, 1e-5, "Unflatten")
    assert.are.same({ 3, 4, 3, 15 }, res[3][1].value.shape)
  end)

  it("writes a constant repeated along the dynamic dims as its row, Expand-ed to a shape computed from the input",
     function()
    -- ViT's class token for each image: zeros of [n, 1, d] plus a [1, 1, d] parameter
    local Token = nn.class("RepeatedToken")
    function Token:__init() self.token = pthcv.randn({ 1, 1, 6 }, { seed = 3 }); self.conv = nn.Conv2d(3, 6, 2, { stride = 2 }) end
    function Token:forward(x)
      local n = x.shape[1]
      local t = self.conv(x):flatten(3):transpose(2, 3)                      -- [n, hw, 6]
      local rows = F.cat({ F.add(pthcv.zeros({ n, 1, 6 }), self.token), t }, 1) -- [n, hw + 1, 6]
      return rows * pthcv.ones(rows.shape)                                     -- repeated along n and hw
    end
    local m = X.randomise(Token(), 5):eval()
    local r, path = export(m, { input = { 1, 3, 4, 6 }, dynamic = { "batch", "height", "width" }, opset = 13 })
    assert.are.same({ "batch", "output_d1", 6 }, r.outputs[1].shape)
    assert.are.equal(2, #r.warnings)
    assert.truthy(r.warnings[1]:find("node Expand_1 (Expand, in the model's forward (RepeatedToken)) repeats a constant "
                                     .. "to a shape computed with Shape, which OpenCV 4.6 cannot run", 1, true),
                  r.warnings[1])
    local t = onnx.trace(m, { input = { 1, 3, 4, 6 }, dynamic = { "batch" } })
    local rows = {}
    for _, n in ipairs(t.g.nodes) do
      if n.op == "Expand" then rows[#rows + 1] = t.g.init_of[n.inputs[1]].shape end
    end
    onnx.release(t)
    assert.are.same({ { 1, 1, 6 }, { 1, 7, 6 } }, rows) -- the batch alone grows here
    local ok, why = R.available()
    if not ok then pending(why) return end
    local cases = {}
    for i, shape in ipairs { { 1, 3, 4, 6 }, { 3, 3, 8, 2 } } do
      local x = pthcv.randn(shape, { seed = 40 + i })
      cases[i] = { input = x, expected = m(x) }
    end
    local _, res = R.assert_close(path, cases, 1e-5, "RepeatedToken")
    assert.are.same({ 3, 5, 6 }, res[2][1].value.shape)
  end)

  it("refuses a model whose graph depends on the input's size, naming the node", function()
    -- an adaptive pool with even windows at the traced size, uneven at the probe's
    local ada = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(6)):eval()
    local ok, e = pcall(export, ada, { input = { 1, 3, 14, 14 }, dynamic = { "height", "width" } })
    assert.is_false(ok)
    assert.truthy(e:find("--dynamic: the model does not run at input [1, 3, 46, 78]", 1, true), e)
    assert.truthy(e:find("adaptive_avg_pool2d from 44x76 to 6x6 (uneven windows) has no ONNX form", 1, true), e)
    -- even windows at both sizes, but other kernels: an attribute that differs
    local even = nn.Sequential(nn.AdaptiveAvgPool2d(2)):eval()
    ok, e = pcall(export, even, { input = { 1, 3, 8, 8 }, dynamic = { "height" } })
    assert.is_false(ok)
    assert.truthy(e:find("node AveragePool_1 (AveragePool, in 0 (nn.AdaptiveAvgPool2d)) depends on the input's size in "
                         .. "a way ONNX cannot compute: its attribute kernel_shape is {4, 4} at input [1, 3, 8, 8] but "
                         .. "{20, 4} at [1, 3, 40, 8]", 1, true), e)
    -- a constant made with the input's shape, other values at each size (not one row repeated)
    local Grid = nn.class("ShapeGrid")
    function Grid:forward(x) return x * pthcv.randn(x.shape, { seed = 1 }) end
    ok, e = pcall(export, Grid():eval(), { input = { 1, 3, 4, 4 }, dynamic = { "batch" } })
    assert.is_false(ok)
    assert.truthy(e:find("its constant const_1 is Tensor(float32, [1, 3, 4, 4]) at input [1, 3, 4, 4] but "
                         .. "Tensor(float32, [2, 3, 4, 4]) at [2, 3, 4, 4]", 1, true), e)
    -- interpolate to a size computed in Lua
    local Sized = nn.class("SizedUp")
    function Sized:forward(x) return F.interpolate(x, { size = { x.shape[3] * 2, x.shape[4] * 2 } }) end
    ok, e = pcall(export, Sized():eval(), { input = { 1, 3, 4, 4 }, dynamic = { "height" } })
    assert.is_false(ok)
    assert.truthy(e:find("node Resize_1 (Resize, in the model's forward (SizedUp)) depends on the input's size", 1, true), e)
    -- batch-only is fine for it
    assert.are.same({ "batch", 3, 8, 8 }, export(Sized():eval(), { input = { 1, 3, 4, 4 }, dynamic = { "batch" } })
                                            .outputs[1].shape)
  end)

  it("pthcv export --dynamic prints the symbolic shapes; bad axes are usage errors", function()
    local path = support.tmpname(".onnx")
    local c, o, e = support.pthcv("export", "--model", "resnet18", "--init", "random", "--shape", "1x3x64x64", "-o", path,
                                  "--dynamic", "batch,height,width")
    assert.are.equal(0, c, e)
    assert.truthy(o:find("input input [batch, 3, height, width], output logits [batch, 1000]", 1, true), o)
    os.remove(path)
    c, _, e = support.pthcv("export", "--model", "resnet18", "--init", "zeros", "-o", path, "--dynamic", "depth")
    assert.are.equal(2, c)
    assert.truthy(e:find("'depth' is neither batch", 1, true), e)
  end)

  if not X.has_python("onnx, cv2, numpy") then
    pending("python3-onnx or python3-opencv is not installed: the files are not run")
    return
  end

  -- cases at the traced size and at another, pthcv's forward as expected
  local function two_sizes(m, x1, shape2, torch_ref)
    local x2 = pthcv.randn(shape2, { seed = 11 })
    local extra = torch_ref and { torch = torch_ref } or nil
    return { (X.case(m, x1, extra)), (X.case(m, x2, extra)) }
  end

  it("one cv2.dnn Net runs each file at two input sizes: the example U-Net (torch), reshapes with 0 and -1", function()
    local has_torch = X.has_python("torch")
    local jobs = {}
    local unet, input, _, torch_ref = X.custom_example()
    local x = pthcv.load_npy(input)
    local cases = two_sizes(unet, x, { 2, 3, 48, 64 }, has_torch and torch_ref)
    for _, opset in ipairs { 11, 13 } do
      local _, path = export(unet, { input = x, opset = opset, dynamic = { "batch", "height", "width" } })
      jobs[#jobs + 1] = { name = "unet" .. opset, kind = "onnx", model = path, cases = cases }
    end
    local seq = X.randomise(Seq(), 2):eval()
    local sx = pthcv.randn({ 1, 3, 16, 20 }, { seed = 3 })
    local _, path = export(seq, { input = sx, dynamic = { "batch", "height", "width" } })
    jobs[#jobs + 1] = { name = "sequence", kind = "onnx", model = path, cases = two_sizes(seq, sx, { 3, 3, 30, 12 }) }
    local res = X.check(jobs)
    local ort, no_ort = R.available()
    for _, job in ipairs(jobs) do
      X.assert_close(res[job.name], job.name)
      if job.name:match("unet") then assert.are.same({ 2, 4, 48, 64 }, res[job.name].cases[2].shape) end
      if ort then R.assert_close(job.model, job.cases, 1e-4, job.name .. " in onnxruntime") end
      os.remove(job.model)
    end
    if not has_torch then pending("python3-torch is not installed: the U-Net is checked against pthcv alone") end
    if not ort then pending(no_ort) end
  end)

  local zoo, why = support.zoo("zoo models with dynamic axes through cv2.dnn")
  if not zoo then pending(why) return end

  it("resnet18 and mobilenet_v2 (batch, height, width) and alexnet (batch) at two sizes: cv2.dnn gives torch's logits",
     function()
    local has_torch = X.has_python("torch, torchvision")
    local jobs = {}
    for _, spec in ipairs { { "resnet18", { "batch", "height", "width" }, { 2, 3, 160, 192 } },
                            { "mobilenet_v2", { "batch", "height", "width" }, { 2, 3, 192, 160 } },
                            { "alexnet", { "batch" }, { 3, 3, 224, 224 } } } do
      local name = spec[1]
      local m, input, _, whole = X.zoo_model(zoo, name)
      local x = pthcv.load_npy(input)
      local _, path = export(m, { input = x, dynamic = spec[2] })
      jobs[#jobs + 1] = { name = name, kind = "onnx", model = path,
                          cases = two_sizes(m, x, spec[3], has_torch and whole) }
      m = nil
      collectgarbage(); collectgarbage()
    end
    local res = X.check(jobs)
    local ort, no_ort = R.available()
    for _, job in ipairs(jobs) do
      local r = res[job.name]
      for i, c in ipairs(r.cases or {}) do
        print(string.format("# dynamic %-12s input %d: output [%s], cv2 max|diff| %.3g (torch %s) of %.3g", job.name, i,
                            table.concat(c.shape, ", "), c.max_diff or -1, tostring(c.torch_diff), c.scale))
      end
      X.assert_close(r, job.name)
      if ort then
        print(string.format("# dynamic %-12s onnxruntime at both sizes: max rel diff %.3g", job.name,
                            R.assert_close(job.model, job.cases, 1e-4, job.name .. " in onnxruntime")))
      end
      os.remove(job.model)
    end
    if not has_torch then pending("python3-torch is not installed: checked against pthcv alone") end
    if not ort then pending(no_ort) end
  end)
end)
