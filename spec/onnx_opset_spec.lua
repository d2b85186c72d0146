-- onnx_opset_spec: ONNX opsets 10 to 17, names, --half and OpenCV 4.6's
-- warnings (lua/pthcv/export/onnx: lower.lua, init.lua, half.lua,
-- opencv46.lua).
--
-- Without Python: the nodes each opset gets for the ops whose ONNX form
-- changed, every opset's graph checked by pthcv's evaluator, the names of
-- inputs and outputs, refusals. With python3-onnx and python3-opencv
-- (spec/opencv/check_export.py): onnx.checker (full_check) and cv2.dnn at
-- opsets 10, 11, 13 (and 17 where OpenCV 4.6 reads it) for the example
-- U-Net (against torch), a module of many layer kinds, and one model of
-- each zoo family (the default opset, 11, runs over all 21 zoo models in
-- onnx_spec). With node and onnxruntime-node (tools/install-deps,
-- spec/onnx_runtime.lua): the same files, and the --half ones OpenCV
-- cannot read, run in onnxruntime too.
local support = require "support"
local X = require "export_support"
local R = require "onnx_runtime"
local pthcv = require "pthcv"
local onnx = require "pthcv.export.onnx"
local lower = require "pthcv.export.onnx.lower"

local nn, F = pthcv.nn, pthcv.F

-- Every op whose ONNX form depends on the opset.
local Forms = nn.class("OpsetForms")
function Forms:__init()
  self.conv = nn.Conv2d(3, 4, 3, { padding = 1 })
end
function Forms:forward(x)
  local y = F.relu6(self.conv(x) * 4)                          -- Clip
  y = F.clamp(y, -1, 2) + F.clamp(y, 0.5) + F.clamp(y, nil, 1.5) -- Clip, one bound each
  y = F.pad(y, { 1, 1, 2, 0 }, "reflect")                        -- Pad
  y = F.softmax(y, 1) + F.hardswish(y)                           -- Softmax (dim 1 of 4), HardSwish
  y = F.interpolate(y, { scale_factor = 2, mode = "nearest" })   -- Resize
  if self.bilinear then y = F.interpolate(y, { scale_factor = 2, mode = "bilinear" }) end
  return F.sum(y, { 2, 3 })                                      -- ReduceSum
end

-- The op types of the graph lowered for opset, counted, and its nodes.
local function forms(m, opset, input)
  local t = onnx.trace(m, { input = input or { 1, 3, 5, 6 }, opset = opset })
  local ok, err = pcall(lower.run, t.g, opset)
  local nodes = t.g.nodes
  onnx.release(t)
  if not ok then error(err, 0) end
  local count = {}
  for _, n in ipairs(nodes) do count[n.op] = (count[n.op] or 0) + 1 end
  return count, nodes
end

local function first(nodes, op)
  for _, n in ipairs(nodes) do if n.op == op then return n end end
end

describe("ONNX opsets", function()
  local m = X.randomise(Forms(), 3):eval()

  it("writes each opset's form of Clip, Pad, Resize, Softmax, ReduceSum and HardSwish", function()
    for opset = 10, 17 do
      local count, nodes = forms(m, opset)
      if opset == 10 then
        assert.are.equal(4, count.Clip, "opset 10: Clip with min/max attributes")
        assert.is_nil(count.HardSwish)
        assert.are.equal(1, #first(nodes, "Pad").inputs)
        assert.are.equal(2, #first(nodes, "Resize").inputs) -- x, scales
      else
        assert.is_nil(count.Clip, "opset " .. opset .. ": no Clip (OpenCV 4.6 reads no Clip inputs)")
        assert.are.equal(2, count.HardSigmoid - (opset >= 14 and 0 or 1), "opset " .. opset) -- ReLU6, [-1, 2]
        assert.are.equal(2, #first(nodes, "Pad").inputs)      -- x, pads (reflect: no value)
        assert.are.equal(3, #first(nodes, "Resize").inputs)   -- x, roi, scales
        assert.are.equal(opset <= 12 and "roi_1" or "", first(nodes, "Resize").inputs[2])
      end
      assert.are.equal(opset >= 14 and 1 or nil, count.HardSwish, "opset " .. opset)
      -- softmax over dim 1 of a 4-d tensor: before 13, moved to the last dim
      assert.are.equal(opset < 13 and 2 or nil, count.Transpose, "opset " .. opset)
      assert.are.equal(opset < 13 and 3 or 1, first(nodes, "Softmax").attrs[1][3], "opset " .. opset)
      assert.are.equal(opset >= 13 and 2 or 1, #first(nodes, "ReduceSum").inputs, "opset " .. opset)
      -- and the graph computes what the forward did
      local r = m:export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 5, 6 }, opset = opset })
      assert.are.same({ 1, 4 }, r.outputs[1].shape)
      assert.are.equal(opset, r.opset)
    end
  end)

  it("exports bilinear interpolate from opset 11 and refuses it at 10, naming the node", function()
    local b = X.randomise(Forms(), 3):eval()
    b.bilinear = true
    local ok, e = pcall(b.export_onnx, b, support.tmpname(".onnx"), { input = { 1, 3, 5, 6 }, opset = 10 })
    assert.is_false(ok)
    assert.truthy(e:find("node Resize_2 (Resize, in the model's forward (OpsetForms)): bilinear interpolate has no "
                         .. "opset-10 form", 1, true), e)
    assert.truthy(e:find("--opset 11", 1, true), e)
    for _, opset in ipairs { 11, 13, 17 } do
      local _, nodes = forms(b, opset)
      local resize
      for _, n in ipairs(nodes) do if n.op == "Resize" then resize = n end end
      local at = {}
      for _, a in ipairs(resize.attrs) do at[a[1]] = a[3] end
      assert.are.equal("linear", at.mode)
      assert.are.equal("half_pixel", at.coordinate_transformation_mode)
      assert.is_table(b:export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 5, 6 }, opset = opset }))
    end
    local ac = nn.Sequential(nn.Upsample({ scale_factor = 2, mode = "bilinear", align_corners = true })):eval()
    local _, nodes = forms(ac, 11, { 1, 2, 3, 4 })
    assert.are.equal("align_corners", nodes[1].attrs[2][3])
    assert.are.equal(3, #nodes[1].inputs)     -- x, roi, scales: 2x, whole factors of the size
  end)

  it("refuses opsets outside 10 to 17 and writes each opset's IR version", function()
    for _, bad in ipairs { 9, 18, 11.5 } do
      local ok, e = pcall(m.export_onnx, m, support.tmpname(".onnx"), { opset = bad })
      assert.is_false(ok)
      assert.truthy(e:find("pthcv writes opsets 10 to 17", 1, true), e)
    end
    local c, _, e = support.pthcv("export", "--model", "resnet18", "--init", "zeros", "-o", support.tmpname(".onnx"),
                                  "--opset", "18")
    assert.are.equal(2, c, e)
    assert.truthy(e:find("opset 18", 1, true), e)
    for opset, ir in pairs { [10] = 5, [11] = 6, [13] = 7, [15] = 8, [17] = 8 } do
      local path = support.tmpname(".onnx")
      m:export_onnx(path, { input = { 1, 3, 5, 6 }, opset = opset })
      assert.are.equal(string.char(8, ir), support.read_file(path):sub(1, 2), "opset " .. opset) -- field 1: ir_version
      os.remove(path)
    end
    assert.are.equal(11, onnx.OPSET)
  end)

  it("names the input and outputs: input, logits, output, output_<i>, a table's keys, or the given names", function()
    local function names(mod, o)
      o = o or {}
      o.input = o.input or { 1, 3, 4, 4 }
      local t = onnx.trace(mod, o)
      local r = { t.g.inputs[1].name }
      for _, out in ipairs(t.g.outputs) do r[#r + 1] = out.name end
      onnx.release(t)
      return r
    end
    local cls = nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()):eval()
    assert.are.same({ "input", "logits" }, names(cls))
    assert.are.same({ "input", "output" }, names(nn.Sequential(nn.Conv2d(3, 2, 1)):eval()))
    assert.are.same({ "image", "scores" }, names(cls, { input_names = { "image" }, output_names = { "scores" } }))
    local Two = nn.class("TwoOutputs")
    function Two:__init() self.conv = nn.Conv2d(3, 2, 1) end
    function Two:forward(x) local y = self.conv(x); return { F.relu(y), F.sigmoid(y) } end
    assert.are.same({ "input", "output_1", "output_2" }, names(Two():eval()))
    local Dict = nn.class("DictOutputs")
    function Dict:__init() self.conv = nn.Conv2d(3, 2, 1) end
    function Dict:forward(x) local y = self.conv(x); return { scores = F.sigmoid(y), boxes = F.relu(y) } end
    assert.are.same({ "input", "boxes", "scores" }, names(Dict():eval()))
    -- the same value twice: the second is a copy (Identity)
    local Same = nn.class("SameTwice")
    function Same:__init() self.conv = nn.Conv2d(3, 2, 1) end
    function Same:forward(x) local y = self.conv(x); return { y, y } end
    local r = Same():eval():export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 }, output_names = { "a", "b" } })
    assert.are.equal("a", r.outputs[1].name)
    assert.are.equal("b", r.outputs[2].name)
    -- refusals
    for _, case in ipairs {
      { { output_names = { "a", "b" } }, "2 output names for 1 outputs" },
      { { output_names = { "input" } }, "the output name input is already the name of another value" },
      { { output_names = { "0.weight" } }, "the output name 0.weight is already the name of another value" },
      { { input_names = { "a", "b" } }, "the model has one input; input_names gives 2" },
    } do
      local ok, e = pcall(names, cls, case[1])
      assert.is_false(ok)
      assert.truthy(e:find(case[2], 1, true), e)
    end
  end)

  it("--half: float16 initializers behind Cast nodes, checked against the float16 model, with OpenCV's warning", function()
    local net = X.randomise(nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 4 * 4, 10)), 5)
    net:eval()
    local full, half = support.tmpname(".onnx"), support.tmpname(".onnx")
    local r32 = net:export_onnx(full, { input = { 1, 3, 6, 6 }, opset = 13 })
    local r16 = net:export_onnx(half, { input = { 1, 3, 6, 6 }, opset = 13, half = true })
    assert.are.equal(3, r16.half)   -- both weights and the convolution's 16 biases (10 are too few to gain)
    assert.are.equal(0, r16.float)
    assert.are.equal(r32.nodes + 3, r16.nodes)
    assert.is_true(r16.bytes < 0.55 * r32.bytes, r16.bytes .. " vs " .. r32.bytes)
    assert.truthy(table.concat(r16.warnings, "\n"):find("OpenCV 4.6 cannot read float16 initializers", 1, true))
    if X.has_python("onnx") then
      local c, o, e = support.run("/usr/bin/python3 -c " .. support.shell_quote([[
import onnx, sys
m = onnx.load(sys.argv[1]); onnx.checker.check_model(m, full_check=True)
print(sorted(set(t.data_type for t in m.graph.initializer)), sum(n.op_type == "Cast" for n in m.graph.node))
]]) .. " " .. half)
      assert.are.equal(0, c, e)
      assert.are.equal("[1, 10] 3\n", o) -- FLOAT and FLOAT16
    end
    -- onnxruntime runs it as pthcv's float16 model (net is float16 now), and close to the float32 file
    local ok, why = R.available()
    if not ok then pending(why) return end
    local x = pthcv.randn({ 1, 3, 6, 6 }, { seed = 9 })
    local worst = R.assert_close(half, { { input = x, expected = net(x) } }, 1e-5, "--half")
    local d, scale = R.max_diff(R.run(half, { x })[1][1].value, R.run(full, { x })[1][1].value)
    print(string.format("# --half in onnxruntime: max rel diff %.3g to the float16 model, %.3g to the float32 file", worst,
                        d / scale))
    assert.is_true(d <= 1e-2 * scale, d .. " of " .. scale)
  end)

  it("warns about what OpenCV 4.6 cannot run, naming the node", function()
    local Sum = nn.class("SumMax")
    function Sum:forward(x) return F.maximum(F.sum(x, { 1 }), 0.5) end
    local r = Sum():eval():export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 }, opset = 13 })
    local w = table.concat(r.warnings, "\n")
    assert.truthy(w:find("OpenCV 4.6 cannot run node ReduceSum_1 (ReduceSum, in the model's forward (SumMax)): its "
                         .. "importer reads no ReduceSum with an axes input (opset 13 on)", 1, true), w)
    assert.truthy(w:find("node Max_1 (Max, in the model's forward (SumMax)): Max of a constant", 1, true), w)
    assert.are.equal(1, #Sum():eval():export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 }, opset = 12 })
                         .warnings)
    -- the math ops OpenCV 4.6 does not run (docs/nn.md)
    local Where = nn.class("WhereHead")
    function Where:forward(x) return F.where(F.gt(x, 0), x, x * 2) end
    w = table.concat(Where():eval():export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 } }).warnings, "\n")
    assert.truthy(w:find("(Greater, in the model's forward (WhereHead)): Greater with a constant operand gives wrong "
                         .. "masks there", 1, true), w)
    assert.truthy(w:find("(Where, in the model's forward (WhereHead)): its importer has no Where layer", 1, true), w)
  end)

  if not X.has_python("onnx, cv2, numpy") then
    pending("python3-onnx or python3-opencv is not installed: the files are not checked")
    return
  end

  it("the example U-Net at opsets 11, 13 and 17 and many layer kinds at 10 to 17: onnx.checker, cv2.dnn, torch",
     function()
    local jobs = {}
    local unet, input, _, torch_ref = X.custom_example()
    local has_torch = X.has_python("torch")
    local case = X.case(unet, pthcv.load_npy(input), has_torch and { torch = torch_ref } or nil)
    for _, opset in ipairs { 11, 13, 17 } do
      local path = support.tmpname("-unet" .. opset .. ".onnx")
      unet:export_onnx(path, { input = pthcv.load_npy(input), opset = opset })
      jobs[#jobs + 1] = { name = "unet" .. opset, kind = "onnx", model = path, cases = { case } }
    end
    local many = X.randomise(X.ManyKinds(), 1):eval()
    local x = pthcv.randn({ 1, 3, 16, 16 }, { seed = 5 })
    local many_case = X.case(many, x)
    for opset = 10, 17 do
      local path = support.tmpname("-many" .. opset .. ".onnx")
      many:export_onnx(path, { input = x, opset = opset })
      jobs[#jobs + 1] = { name = "many" .. opset, kind = "onnx", model = path, cases = { many_case } }
    end
    local res = X.check(jobs)
    local ort, no_ort = R.available()
    for _, job in ipairs(jobs) do
      print(string.format("# %-8s %s", job.name, res[job.name].opencv))
      X.assert_close(res[job.name], job.name)
      if ort then R.assert_close(job.model, job.cases, 1e-4, job.name .. " in onnxruntime") end
      os.remove(job.model)
    end
    if not has_torch then pending("python3-torch is not installed: the U-Net is checked against pthcv alone") end
    if not ort then pending(no_ort) end
  end)

  local zoo, why = support.zoo("zoo models through ONNX opsets 10 and 13")
  if not zoo then pending(why) return end

  -- one model of each family: every layer kind of the 21 (VGG's are AlexNet's)
  local FAMILIES = { "alexnet", "resnet18", "resnet50", "resnext50_32x4d", "mobilenet_v2", "mobilenet_v3_small",
                     "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1" }

  it("a model of each zoo family at opsets 10 and 13: onnx.checker passes, cv2.dnn gives torch's logits", function()
    local jobs = {}
    for _, name in ipairs(FAMILIES) do
      local m, input, output = X.zoo_model(zoo, name)
      local x = pthcv.load_npy(input)
      for _, opset in ipairs { 10, 13 } do
        local path = support.tmpname("-" .. name .. opset .. ".onnx")
        m:export_onnx(path, { input = x, opset = opset })
        jobs[#jobs + 1] = { name = name .. "@" .. opset, kind = "onnx", model = path,
                            cases = { { input = input, expected = output } } }
      end
      m = nil
      collectgarbage(); collectgarbage()
    end
    local res = X.check(jobs)
    local ort, no_ort = R.available()
    for _, job in ipairs(jobs) do
      local r = res[job.name]
      local rt = ort and R.assert_close(job.model, job.cases, 1e-4, job.name .. " in onnxruntime")
      print(string.format("# %-24s cv2.dnn max|diff| %.3g of max|logit| %.3g; onnxruntime %s", job.name,
                          r.cases and r.cases[1].max_diff or -1, r.cases and r.cases[1].scale or 0,
                          rt and string.format("%.3g of it", rt) or "not run"))
      X.assert_close(r, job.name)
      os.remove(job.model)
    end
    if not ort then pending(no_ort) end
  end)
end)
