-- spec/recognize_spec.lua: pthcv.models.recognize, the zoo model a
-- state_dict's keys and shapes name, and the commands that use it (inspect,
-- run/bench FILE, detect/segment without --model); nn.from_module over a
-- TorchScript tree with mangled class names. The committed fixtures
-- (spec/fixtures/recognize, spec/fixtures/make_recognize_fixtures.py) are
-- torchvision's own state_dicts with other options than the defaults,
-- each tensor stored as a view of one zero (keys and shapes are torch's);
-- weights with values and torch's output are written by the same
-- generator (--real) into PTHCV_FIXTURES_RECOGNIZE by tools/run-specs.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local dir = support.root .. "/spec/fixtures/recognize/"
local manifest = json.decode(support.read_file(dir .. "manifest.json"), 1, json.null)

local function max_abs_diff(a, b)
  assert.are.same(b.shape, a.shape)
  return (a:float() - b:float()):abs():max()
end

describe("pthcv.models.recognize", function()
  local files = {}
  for f in pairs(manifest) do files[#files + 1] = f end
  table.sort(files)
  for _, f in ipairs(files) do
    local want = manifest[f]
    if want ~= json.null then
      it("names " .. f .. " " .. want.name .. " with its options", function()
        local name, options, r = pthcv.models.recognize(dir .. f)
        assert.are.equal(want.name, name)
        assert.are.same(want.options, options)
        assert.is_true(r.fits)
        assert.are.equal(1, r.candidates[1].score)
        -- the model those options make takes the file's weights
        local m = require("pthcv.models.recognize").get(name, options)
        local keys = {}
        for _, kv in ipairs(require("pthcv.reader.odict").items(m:state_dict())) do keys[#keys + 1] = kv[1] end
        assert.is_true(#keys > 0 and #keys <= #r.list)
      end)
    end
  end

  it("finds the weights under a checkpoint's 'state_dict' with DataParallel's 'module.' prefix", function()
    local name, options, r = pthcv.models.recognize(pthcv.load(dir .. "resnet18_nc10_checkpoint.pth"))
    assert.are.equal("resnet18", name)
    assert.are.same({ num_classes = 10 }, options)
    assert.are.equal("conv1.weight", r.list[1][1])
    assert.are.equal("classification", r.task)
  end)

  it("takes a list of {name, tensor} and flat keys under a checkpoint key ('model.')", function()
    local list = {}
    for _, kv in ipairs(require("pthcv.reader.state_dict").find(pthcv.load(dir .. "efficientnet_b0_nc3.pth"))) do
      list[#list + 1] = { "model." .. kv[1], kv[2] }
    end
    local name, options, r = pthcv.models.recognize(list)
    assert.are.equal("efficientnet_b0", name)
    assert.are.same({ num_classes = 3 }, options)
    assert.are.equal("features.0.0.weight", r.list[1][1])
  end)

  it("refuses weights two models take alike, naming both", function()
    local name, options, r = pthcv.models.recognize(dir .. "fasterrcnn_mobilenet_v3_large_fpn_nc3.pth")
    assert.is_nil(name)
    assert.is_nil(options)
    assert.is_true(r.ambiguous)
    assert.are.same({ "fasterrcnn_mobilenet_v3_large_320_fpn", "fasterrcnn_mobilenet_v3_large_fpn" },
                    { r.candidates[1].name, r.candidates[2].name })
    assert.are.same({ num_classes = 3 }, r.candidates[2].options)
  end)

  it("ranks the closest models of weights that fit none, with what differs", function()
    local name, _, r = pthcv.models.recognize(dir .. "resnet18_truncated.pth")
    assert.is_nil(name)
    assert.is_false(r.ambiguous)
    local c = r.candidates[1]
    assert.are.equal("resnet18", c.name)
    assert.are.equal(27, #c.missing)            -- layer4's 25 tensors (with 2 counts) and fc's 2
    assert.are.equal("layer4.0.conv1.weight", c.missing[1])
    assert.are.same({ "head.weight", "head.bias" }, c.unexpected)
    assert.is_true(c.score < 1 and c.score > r.candidates[2].score)
    local text = require("pthcv.models.recognize").candidates_text(r, 3)
    assert.are.equal(3, select(2, text:gsub("\n", "")) + 1)
    assert.truthy(text:find("  resnet18 (num_classes=1000): 75% of the keys match; 27 missing (layer4.0.conv1.weight, "
                            .. "layer4.0.bn1.weight, layer4.0.bn1.bias, ...); 2 unexpected (head.weight, head.bias)", 1, true),
                  text)
  end)

  it("refuses what is not weights, as pthcv.state_dict does", function()
    local ok, err = pcall(pthcv.models.recognize, support.root .. "/spec/fixtures/pickles/plain_p2.pkl")
    assert.is_false(ok)
    assert.truthy(err:find("no model weights found: the root is a dict with keys 'epoch'", 1, true), err)
  end)
end)

describe("pthcv inspect: the architecture", function()
  it("names the zoo model and its options", function()
    local code, out = support.pthcv("inspect", dir .. "resnet18_nc10_checkpoint.pth")
    assert.are.equal(0, code)
    assert.truthy(out:find("\narchitecture: torchvision resnet18, num_classes=10\n", 1, true), out)
    code, out = support.pthcv("inspect", dir .. "keypointrcnn_resnet50_fpn_nc3_kp5.pth")
    assert.truthy(out:find("\narchitecture: torchvision keypointrcnn_resnet50_fpn, num_classes=3, num_keypoints=5 "
                           .. "(detection)\n", 1, true), out)
  end)

  it("says when the weights fit two models alike, or none", function()
    local _, out = support.pthcv("inspect", dir .. "fasterrcnn_mobilenet_v3_large_fpn_nc3.pth")
    assert.truthy(out:find("\narchitecture: ambiguous: the weights fit fasterrcnn_mobilenet_v3_large_320_fpn and "
                           .. "fasterrcnn_mobilenet_v3_large_fpn alike\n", 1, true), out)
    _, out = support.pthcv("inspect", dir .. "resnet18_truncated.pth")
    assert.truthy(out:find("\narchitecture: none of the zoo's (closest: resnet18, 75% of the keys match)\n", 1, true), out)
  end)

  it("puts it in the JSON report", function()
    local code, out = support.pthcv("inspect", dir .. "vit_b_32_nc5_96.pth", "--json")
    assert.are.equal(0, code)
    assert.are.same({ name = "vit_b_32", task = "classification", options = { num_classes = 5, image_size = 96 } },
                    json.decode(out).architecture)
  end)
end)

describe("run, bench, detect and segment without --model", function()
  local x = support.tmpname(".npy")
  pthcv.save(x, pthcv.rand(1, 3, 32, 32))

  it("lists the three closest models and what differs when none fits", function()
    local code, _, err = support.pthcv("run", "--weights", dir .. "resnet18_truncated.pth", "--input", x,
                                       "--output", "y.npy")
    assert.are.equal(2, code)
    assert.truthy(err:find("resnet18_truncated.pth holds weights, not a model, and they fit no zoo model: give "
                           .. "--model NAME or --script FILE.lua\n  the closest zoo models:\n    resnet18 (num_classes=1000): "
                           .. "75% of the keys match; 27 missing", 1, true), err)
    assert.truthy(err:find("\n    resnet34 (num_classes=1000): ", 1, true), err)
    local _, lines = err:gsub("\n    ", "")
    assert.are.equal(3, lines)
  end)

  it("names both models whose weights are the same, and what shares nothing", function()
    local code, _, err = support.pthcv("bench", dir .. "fasterrcnn_mobilenet_v3_large_fpn_nc3.pth", "--runs", "1")
    assert.are.equal(2, code)
    assert.truthy(err:find("they fit fasterrcnn_mobilenet_v3_large_320_fpn and fasterrcnn_mobilenet_v3_large_fpn "
                           .. "alike: give --model NAME", 1, true), err)
    code, _, err = support.pthcv("run", dir .. "unrelated.pth", "--input", x, "--output", "y.npy")
    assert.are.equal(2, code)
    assert.truthy(err:find("(they share no key and shape with any zoo model)", 1, true), err)
  end)

  it("points a detector's or segmenter's weights to detect or segment", function()
    local code, _, err = support.pthcv("run", dir .. "deeplabv3_mobilenet_v3_large_nc5_aux.pth", "--input", x,
                                       "--output", "y.npy")
    assert.are.equal(2, code)
    assert.truthy(err:find("holds the weights of torchvision deeplabv3_mobilenet_v3_large, num_classes=5, "
                           .. "aux_loss=true, a segmentation model: pthcv segment runs it", 1, true), err)
    code, _, err = support.pthcv("segment", "--weights", dir .. "ssdlite320_mobilenet_v3_large_nc3.pth", "a.png")
    assert.are.equal(2, code)
    assert.truthy(err:find("a detection model, not a segmentation one", 1, true), err)
  end)

  it("runs recognised weights as torch does, from a .pth and from a checkpoint's .npz", function()
    local fx = os.getenv("PTHCV_FIXTURES_RECOGNIZE")
    if not fx or fx == "" then
      pending("PTHCV_FIXTURES_RECOGNIZE is not set (tools/run-specs writes it with "
              .. "spec/fixtures/make_recognize_fixtures.py --real, which needs torch and torchvision)")
      return
    end
    local want = pthcv.load_npy(fx .. "/squeezenet1_1_nc10.output.npy")
    for _, f in ipairs { "squeezenet1_1_nc10.pth", "squeezenet1_1_nc10.model.npz" } do
      local y = support.tmpname(".npy")
      local code, _, err = support.pthcv("run", "--weights", fx .. "/" .. f, "--input",
                                         fx .. "/squeezenet1_1_nc10.input.npy", "--output", y)
      assert.are.equal(0, code, err)
      assert.truthy(err:find(f .. ": recognised torchvision squeezenet1_1, num_classes=10 (by its keys and shapes)",
                             1, true), err)
      assert.is_true(max_abs_diff(pthcv.load_npy(y), want) <= 1e-4 * want:abs():max())
      os.remove(y)
    end
    -- --num-classes that contradicts the weights is refused
    local code, _, err = support.pthcv("run", fx .. "/squeezenet1_1_nc10.pth", "--num-classes", "5", "--input",
                                       fx .. "/squeezenet1_1_nc10.input.npy", "--output", "y.npy")
    assert.are.equal(2, code)
    assert.truthy(err:find("--num-classes 5: ", 1, true), err)
  end)

  it("detect --model NAME takes num_classes from the weights' shapes", function()
    local weights = dir .. "ssdlite320_mobilenet_v3_large_nc3.pth"
    local picture = support.root .. "/examples/demo.jpg"
    local code, out, err = support.pthcv("detect", "--model", "ssdlite320_mobilenet_v3_large", "--weights", weights,
                                         picture, "--json")
    assert.are.equal(0, code, err)
    assert.truthy(err:find(": torchvision ssdlite320_mobilenet_v3_large, num_classes=3 (from the weights' shapes)",
                           1, true), err)
    for _, d in ipairs(json.decode(out).detections) do assert.is_true(d.label >= 1 and d.label <= 2) end
    -- a model the weights cannot fit still says what differs
    code, _, err = support.pthcv("detect", "--model", "ssd300_vgg16", "--weights", weights, picture)
    assert.are.equal(1, code)
    assert.truthy(err:find("Error(s) in loading state_dict for SSD", 1, true), err)
  end)

  it("detect --weights FILE finds the same objects as detect --model NAME", function()
    local det = os.getenv("PTHCV_DETECTION")
    if not det or det == "" then
      pending("PTHCV_DETECTION is not set (tools/run-specs writes the detection fixtures)")
      return
    end
    local model = "ssdlite320_mobilenet_v3_large"
    local weights, picture = det .. "/" .. model .. ".pth", det .. "/images/street.png"
    local c1, named = support.pthcv("detect", "--model", model, "--weights", weights, picture, "--json")
    local c2, found, err = support.pthcv("detect", "--weights", weights, picture, "--json")
    assert.are.same({ 0, 0 }, { c1, c2 })
    assert.truthy(err:find("recognised torchvision " .. model .. ", num_classes=91", 1, true), err)
    assert.is_true(#json.decode(found).detections > 0)
    assert.are.equal(named, found)
  end)
end)

describe("nn.from_module over a TorchScript tree (mangled class names)", function()
  local archive = dir .. "mangled_seq.trace.pt"

  it("reads the tree's classes without ___torch_mangle_N, settings from the code (pthcv.jit.to_nn)", function()
    local root = pthcv.load(archive)
    local second_conv = require("pthcv.reader.state_dict").object_dict(root)["3"]
    assert.truthy(second_conv.class:find("%.___torch_mangle_%d+%.Conv2d$"), second_conv.class)
    local m = pthcv.jit.to_nn(archive):eval()
    assert.are.equal("Conv2d", m["3"]:repr_name())
    assert.are.same({ 2, 2 }, m["3"].stride)
    assert.truthy(tostring(m):find("(7): Flatten(start_dim=1, end_dim=-1)", 1, true), tostring(m))
    local want = pthcv.load_npy(dir .. "mangled_seq.output.npy")
    assert.is_true(max_abs_diff(m(pthcv.load_npy(dir .. "mangled_seq.input.npy")), want) <= 1e-5 * want:abs():max())
  end)

  it("refuses the tree alone, whose layers' settings are in the archive's code", function()
    local ok, err = pcall(pthcv.nn.from_module, pthcv.load(archive))
    assert.is_false(ok)
    assert.truthy(err:find("from_module: 0: class __torch__.torch.nn.modules.conv.Conv2d is a TorchScript module: "
                           .. "its settings (kernel_size, stride, eps, ...) are in the archive's code, not in its "
                           .. "tree; pthcv.jit.to_nn(path) reads them", 1, true), err)
  end)
end)
