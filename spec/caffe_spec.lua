-- caffe_spec: `pthcv export -o m.prototxt` and lua/pthcv/export/caffe, the
-- seed's third route, and the protobuf writer it shares with ONNX
-- (lua/pthcv/export/protobuf.lua).
--
-- Without Python: the text and binary encodings of known messages, the
-- layers written for each op (BatchNorm + Scale, ReLU6, Swish, pools with
-- ceil_mode, InnerProduct from MatMul + Add, resizes as Deconvolution),
-- each net checked by pthcv's Caffe kernels, the ops refused by name. With
-- python3-opencv: cv2.dnn.readNetFromCaffe runs each pair of files against
-- pthcv's forward and torch's (the zoo's resnet18, mobilenet_v2,
-- squeezenet1_1 and more, the example U-Net, a module of many layer kinds).
local support = require "support"
local X = require "export_support"
local pthcv = require "pthcv"
local pb = require "pthcv.export.protobuf"
local schema = require "pthcv.export.caffe.schema"
local caffe = require "pthcv.export.caffe"

local nn, F = pthcv.nn, pthcv.F

-- Every layer kind the Caffe writer has.
local Kinds = nn.class("CaffeKinds")
function Kinds:__init()
  self.conv = nn.Conv2d(3, 8, 3, { padding = 1, dilation = 1 })
  self.dil = nn.Conv2d(8, 8, 3, { padding = 2, dilation = 2, groups = 4 })
  self.bn = nn.BatchNorm2d(8)
  self.prelu = nn.PReLU(8)
  self.deconv = nn.ConvTranspose2d(8, 6, 2, { stride = 2 })
  self.head = nn.Linear(6, 5)
end
function Kinds:forward(x)
  local y = F.leaky_relu(self.conv(x), 0.1)
  local z = self.bn(self.dil(y) + y)                              -- BatchNorm + Scale (not folded: after an add)
  z = self.prelu(F.elu(z) + y * 0.5 - 0.25)                       -- ELU, Power, Eltwise SUM, PReLU
  local p = F.max_pool2d(F.silu(z), 3, 2)                         -- Swish; floor where Caffe rounds up
  p = F.avg_pool2d(p, 3, 1, 1)                                    -- a Pad folded into the pool
  local u = F.interpolate(p, { scale_factor = 2, mode = "nearest" })
  local v = F.interpolate(p, { scale_factor = 2, mode = "bilinear" })
  local w = F.interpolate(F.tanh(p), { scale_factor = 3, mode = "bilinear" })
  local c = F.cat({ u, v * F.sigmoid(F.adaptive_avg_pool2d(v, 1)) }, 1) -- Scale with two bottoms
  local a, b = unpack(F.chunk(c, 2, 1))                           -- Slice
  local d = self.deconv(F.hardswish(a) - b)                       -- Eltwise SUM coeff -1, Deconvolution
  local t = F.flatten(F.adaptive_avg_pool2d(d, 1) + F.relu6(F.adaptive_max_pool2d(w, 1):narrow(2, 1, 6)), 2)
  return F.log_softmax(self.head(F.cat({ t:transpose(2, 3), t:transpose(2, 3) }, 1)), -1) -- Permute, InnerProduct axis 2
end

local function layers_of(path)
  local text = assert(support.read_file(path))
  local types = {}
  for typ in text:gmatch('\n  type: "([%w]+)"') do types[#types + 1] = typ end
  return types, text
end

local function count(list, v)
  local n = 0
  for _, x in ipairs(list) do if x == v then n = n + 1 end end
  return n
end

describe("Caffe export", function()
  it("writes protobuf text and binary as the two formats say, one writer for ONNX and Caffe", function()
    local layer = { name = "pool1", type = "Pooling", bottom = { "conv1" }, top = { "pool1" },
                    pooling_param = { pool = "MAX", kernel_h = 3, kernel_w = 3, stride_h = 2, stride_w = 2,
                                      ceil_mode = false } }
    assert.are.equal('name: "pool1"\ntype: "Pooling"\nbottom: "conv1"\ntop: "pool1"\npooling_param {\n  pool: MAX\n'
                     .. '  kernel_h: 3\n  kernel_w: 3\n  stride_h: 2\n  stride_w: 2\n  ceil_mode: false\n}\n',
                     pb.text(schema, "LayerParameter", layer))
    layer.blobs = { { shape = { dim = { 2 } }, data = pthcv.tensor({ 1.5, -2 }) } }
    local bytes = pb.encode(schema, "LayerParameter", layer):tostring()
    -- name (1), type (2), bottom (3), top (4), blobs (7: data 5 packed floats, shape 7: dim 1 packed),
    -- pooling_param (121: pool 1, kernels 5 and 6, strides 7 and 8, ceil_mode 13)
    assert.are.equal("\10\5pool1\18\7Pooling\26\5conv1\34\5pool1"
                     .. "\58\15\42\8\0\0\192\63\0\0\0\192\58\3\10\1\2"
                     .. "\202\7\12\8\0\40\3\48\3\56\2\64\2\104\0", bytes)
    assert.are.equal('s: "a\\"b\\\\c\\n\\303\\251"\n', pb.text({ T = { { "s", 1, "string" } } }, "T", { s = 'a"b\\c\né' }))
    assert.are.equal("0.1", pb.float_text(0.1))
    assert.are.equal("6", pb.float_text(6))
    assert.are.equal(require("pthcv.export.onnx.proto").varint, pb.varint)
  end)

  it("writes each op's Caffe form, checked by pthcv's Caffe kernels, and OpenCV's types where Caffe has none", function()
    local m = X.randomise(Kinds(), 7):eval()
    local path = support.tmpname(".prototxt")
    local r = caffe.export(m, path, { input = { 1, 3, 13, 13 } })
    assert.are.equal(caffe.weights_path(path), r.caffemodel)
    assert.are.same({ 1, 2, 5 }, r.outputs[1].shape)
    local types, text = layers_of(path)
    for _, want in ipairs { "Input", "Convolution", "ReLU", "BatchNorm", "Scale", "ELU", "Power", "Eltwise", "PReLU",
                            "Swish", "Pooling", "Deconvolution", "Concat", "Slice", "Flatten", "Sigmoid", "ReLU6",
                            "TanH", "Permute", "InnerProduct", "Softmax", "Log" } do
      assert.truthy(count(types, want) > 0, "no " .. want .. " layer")
    end
    assert.are.equal(4, count(types, "Deconvolution"))       -- ConvTranspose, nearest x2, bilinear x2 and x3
    assert.are.equal(1, count(types, "BatchNorm"))
    assert.truthy(text:find("ceil_mode: false", 1, true))    -- torch's floor, written out
    assert.truthy(text:find("negative_slope: 0.1", 1, true))
    assert.truthy(text:find("axis: 2\n", 1, true))           -- InnerProduct over the last of 3 dims
    assert.truthy(text:find('layer {\n  name: "dil"\n  type: "Convolution"', 1, true), text:sub(1, 600))
    assert.truthy(text:find("dilation: 2\n    dilation: 2\n", 1, true))
    assert.truthy(text:find("group: 4\n", 1, true))
    assert.truthy(support.read_file(r.caffemodel):len() > 3000)
    os.remove(path); os.remove(r.caffemodel)
  end)

  it("refuses what Caffe cannot say, by node, op and module", function()
    local function refused(m, input, want)
      local path = support.tmpname(".prototxt")
      local ok, e = pcall(caffe.export, m:eval(), path, { input = input or { 1, 3, 8, 8 } })
      assert.is_false(ok, want)
      assert.truthy(e:find(want, 1, true), e)
      assert.is_nil(io.open(path, "rb"))
      assert.is_nil(io.open(caffe.weights_path(path), "rb"))
    end
    refused(nn.Sequential(nn.Conv2d(3, 4, 1), nn.GELU()), nil, "node Erf_1 (Erf, in 0 (nn.Conv2d)) has no Caffe form") -- fused
    refused(nn.Sequential(nn.Conv2d(3, 4, 3, { padding = 1, padding_mode = "reflect" })), nil,
            "node Pad_1 (Pad, in 0 (nn.Conv2d)) has no Caffe form: Caffe pads only inside Convolution and Pooling")
    refused(nn.Sequential(nn.Upsample({ scale_factor = 2, mode = "bilinear", align_corners = true })), nil,
            "bilinear interpolate with align_corners=True")
    refused(nn.Sequential(nn.Upsample({ scale_factor = 1.5, mode = "nearest" })), nil,
            "a resize from 8x8 to 12x12 (Caffe's forms take integer factors)")
    refused(nn.Sequential(nn.Hardtanh()), nil, "a clamp to [-1, 1]")
    refused(nn.Sequential(nn.AvgPool2d(3, { padding = 1, count_include_pad = false })), nil,
            "average pooling that leaves padding out of the divisor")
    refused(nn.Sequential(nn.MaxPool2d(3, { dilation = 2 })), nil, "Caffe's Pooling has no dilation")
    local m = nn.Sequential(nn.Conv2d(3, 4, 1)):eval()
    for _, o in ipairs { { dynamic = { "batch" } }, { half = true } } do
      local ok, e = pcall(caffe.export, m, support.tmpname(".prototxt"), o)
      assert.is_false(ok)
      assert.truthy(e:find(o.half and "--half" or "--dynamic", 1, true), e)
    end
    local c, _, e = support.pthcv("export", "--model", "resnet18", "--init", "zeros", "-o", "m.prototxt", "--opset", "13")
    assert.are.equal(2, c)
    assert.truthy(e:find("are ONNX options", 1, true), e)
  end)

  if not X.has_python("cv2, numpy") then
    pending("python3-opencv is not installed: readNetFromCaffe does not run the files")
    return
  end

  it("readNetFromCaffe gives pthcv's output for every layer kind, and torch's for the example U-Net", function()
    local has_torch = X.has_python("torch")
    local jobs = {}
    local m = X.randomise(Kinds(), 7):eval()
    local x = pthcv.randn({ 1, 3, 13, 13 }, { seed = 8 })
    local path = support.tmpname("-kinds.prototxt")
    caffe.export(m, path, { input = x })
    jobs[1] = { name = "kinds", kind = "caffe", model = path, weights = caffe.weights_path(path),
                cases = { (X.case(m, x)) } }
    local unet, input, _, torch_ref = X.custom_example()
    local upath = support.tmpname("-unet.prototxt")
    -- through the CLI
    local c, o, e = support.pthcv("export", "--script", support.root .. "/examples/custom_model.lua", "--weights",
                                  support.root .. "/examples/custom_model.pth", "--input", input, "-o", upath)
    assert.are.equal(0, c, e)
    assert.truthy(o:find(upath .. ", " .. caffe.weights_path(upath) .. ": 50 layers", 1, true), o)
    jobs[2] = { name = "unet", kind = "caffe", model = upath, weights = caffe.weights_path(upath),
                cases = { (X.case(unet, pthcv.load_npy(input), has_torch and { torch = torch_ref } or nil)) } }
    local res = X.check(jobs)
    for _, job in ipairs(jobs) do
      X.assert_close(res[job.name], job.name)
      os.remove(job.model); os.remove(job.weights)
    end
    if not has_torch then pending("python3-torch is not installed: the U-Net is checked against pthcv alone") end
  end)

  local zoo, why = support.zoo("zoo models through Caffe and readNetFromCaffe")
  if not zoo then pending(why) return end

  it("zoo classifiers: readNetFromCaffe's logits are within 1e-4 of torch's", function()
    local jobs = {}
    for _, name in ipairs { "resnet18", "mobilenet_v2", "squeezenet1_1", "resnet50", "mobilenet_v3_small", "alexnet",
                            "squeezenet1_0", "resnext50_32x4d" } do
      local m, input, output = X.zoo_model(zoo, name)
      local path = support.tmpname("-" .. name .. ".prototxt")
      if name == "resnet18" then -- through the CLI once
        local c, _, e = support.pthcv("export", "--model", name, "--weights", zoo .. "/" .. name .. ".pth", "--input",
                                      input, "-o", path)
        assert.are.equal(0, c, e)
      else
        caffe.export(m, path, { input = pthcv.load_npy(input) })
      end
      jobs[#jobs + 1] = { name = name, kind = "caffe", model = path, weights = caffe.weights_path(path),
                          cases = { { input = input, expected = output } } }
      m = nil
      collectgarbage(); collectgarbage()
    end
    local res = X.check(jobs)
    for _, job in ipairs(jobs) do
      local r = res[job.name]
      print(string.format("# caffe %-20s cv2.dnn max|diff| %.3g of max|logit| %.3g", job.name,
                          r.cases and r.cases[1].max_diff or -1, r.cases and r.cases[1].scale or 0))
      X.assert_close(r, job.name)
      os.remove(job.model); os.remove(job.weights)
    end
  end)
end)
