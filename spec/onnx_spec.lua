-- onnx_spec: module:export_onnx and `pthcv export` (lua/pthcv/export/onnx)
-- at the default opset (11); onnx_opset_spec covers the others,
-- onnx_dynamic_spec --dynamic.
--
-- Without Python: the protobuf primitives, refusals (ops with no ONNX
-- form). With Debian's python3-onnx and python3-opencv
-- (spec/opencv/check_onnx.py, one process for all files): every file passes
-- onnx.checker (full_check) and OpenCV 4.6's cv2.dnn.readNetFromONNX loads
-- and runs it; its output must be within 1e-4 of the largest |logit| of the
-- reference: pthcv's own output for a model using many layer kinds, and
-- torch's logits for the zoo models when the zoo fixtures exist
-- (PTHCV_ZOO): one depth of each family here, and every depth of VGG and
-- ResNet (the same layers again, 2.6 GB more of ONNX to write and read)
-- with PTHCV_LARGE=1 (make test-large).
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local proto = require "pthcv.export.onnx.proto"
local now = require "pthcv.nn.clock"

local nn, F = pthcv.nn, pthcv.F
local CHECK = support.root .. "/spec/opencv/check_onnx.py"

local ZOO = {
  "alexnet", "vgg11", "vgg19_bn", "resnet18", "resnet50", "resnext50_32x4d", "wide_resnet50_2",
  "mobilenet_v2", "mobilenet_v3_small", "mobilenet_v3_large", "squeezenet1_0", "squeezenet1_1",
}
local ZOO_LARGE = { "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "resnet34", "resnet101", "resnet152" }
local large = os.getenv("PTHCV_LARGE") == "1"
if large then
  for _, name in ipairs(ZOO_LARGE) do ZOO[#ZOO + 1] = name end
end

local Net = require("export_support").ManyKinds

local randomise = require("export_support").randomise

local function has_python(mods)
  return support.run("/usr/bin/python3 -c " .. support.shell_quote("import " .. mods)) == 0
end

-- Runs check_onnx.py over {name, onnx, input.npy, expected.npy} rows; results by name.
local function check(rows)
  local args = {}
  for _, r in ipairs(rows) do
    args[#args + 1] = support.shell_quote(r[1] .. "=" .. r[2] .. "," .. r[3] .. "," .. r[4])
  end
  local c, o, e = support.run("/usr/bin/python3 " .. CHECK .. " " .. table.concat(args, " "))
  assert(c == 0, e)
  local out = {}
  for line in o:gmatch("[^\n]+") do
    local r = json.decode(line)
    out[r.name] = r
  end
  return out
end

local function assert_close(r, name)
  assert.is_table(r, name)
  assert.are.equal("ok", r.checker, name .. ": onnx.checker: " .. tostring(r.checker))
  assert.are.equal("ok", r.opencv, name .. ": OpenCV: " .. tostring(r.opencv))
  assert.is_true(r.max_diff <= 1e-4 * r.scale,
                 string.format("%s: max |diff| %g > 1e-4 * %g", name, r.max_diff, r.scale))
end

describe("ONNX export", function()
  it("encodes protobuf varints and fields as the wire format says", function()
    assert.are.equal("\1", proto.varint(1))
    assert.are.equal("\172\2", proto.varint(300))
    assert.are.equal(string.rep("\255", 9) .. "\1", proto.varint(-1))
    assert.are.equal("\128\128\128\128\16", proto.varint(2 ^ 32))
    local m = proto.message():int(1, 150):string(2, "testing")
    assert.are.equal("\8\150\1\18\7testing", m:tostring())
    assert.are.equal("\13\0\0\128\63", proto.message():float(1, 1.0):tostring())
    local outer = proto.message():message(3, proto.message():int(1, 150))
    assert.are.equal("\26\3\8\150\1", outer:tostring())
    assert.are.equal("\10\2\3\4", proto.message():ints(1, { 3, 4 }):tostring())
  end)

  it("folds BatchNorm into the convolution before it, and keeps one whose convolution is read twice", function()
    local onnx = require "pthcv.export.onnx"
    local Block = nn.class("FoldSpecBlock")
    function Block:__init()
      self.conv1, self.bn1 = nn.Conv2d(3, 4, 3, { padding = 1, bias = false }), nn.BatchNorm2d(4)
      self.conv2, self.bn2 = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
    end
    function Block:forward(x)
      local y = F.relu(self.bn1(self.conv1(x)))
      local z = self.conv2(y)
      return self.bn2(z) + z   -- z is read twice: bn2 stays
    end
    local m = randomise(Block(), 3):eval()
    local t = onnx.trace(m, { input = { 1, 3, 5, 7 } })
    local ops = {}
    for _, n in ipairs(t.g.nodes) do ops[#ops + 1] = n.op end
    assert.are.same({ "Conv", "Relu", "Conv", "BatchNormalization", "Add" }, ops)
    -- W'[o] = W[o] * gamma[o] / sqrt(var[o] + eps), b'[o] = beta[o] - mean[o] * gamma[o] / sqrt(var[o] + eps)
    local w, b = t.g.init_of[t.g.nodes[1].inputs[2]], t.g.init_of[t.g.nodes[1].inputs[3]]
    assert.are.equal("conv1.weight", t.g.nodes[1].inputs[2])
    assert.are.equal("conv1.bias", t.g.nodes[1].inputs[3])
    local bn = m.bn1
    for _, ix in ipairs { { 1, 1, 1, 1 }, { 4, 3, 2, 3 }, { 2, 2, 3, 1 } } do
      local o = ix[1]
      local s = bn.weight:get(o) / math.sqrt(bn.running_var:get(o) + 1e-5)
      assert.is_true(math.abs(w:get(unpack(ix)) - m.conv1.weight:get(unpack(ix)) * s) < 1e-6)
      assert.is_true(math.abs(b:get(o) - (bn.bias:get(o) - bn.running_mean:get(o) * s)) < 1e-6)
    end
    onnx.release(t)
    -- the file computes the forward pass (export checks it before writing)
    local path = support.tmpname(".onnx")
    local r = m:export_onnx(path, { input = { 1, 3, 5, 7 } })
    assert.are.equal(5, r.nodes)
    os.remove(path)
  end)

  -- (every op of pthcv.F has a form now: GroupNorm's handler is taken
  -- away for the test)
  local handlers = require("pthcv.export.onnx.ops").handlers
  local function without_group_norm(fn)
    local saved = handlers["F.group_norm"]
    handlers["F.group_norm"] = nil
    local res = { pcall(fn) }
    handlers["F.group_norm"] = saved
    return unpack(res)
  end

  it("refuses ops with no ONNX form, naming them, and bilinear interpolate at opset 10", function()
    local m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)):eval()
    local ok, e = without_group_norm(function() return m:export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 } }) end)
    assert.is_false(ok)
    assert.truthy(e:find("F.group_norm has no ONNX form", 1, true), e)
    local up = nn.Sequential(nn.Upsample({ scale_factor = 2, mode = "bilinear" })):eval()
    ok, e = pcall(up.export_onnx, up, support.tmpname(".onnx"), { input = { 1, 1, 2, 2 }, opset = 10 })
    assert.is_false(ok)
    assert.truthy(e:find("bilinear interpolate has no opset-10 form", 1, true), e)
    assert.are.same({ 1, 1, 4, 4 }, up:export_onnx(support.tmpname(".onnx"), { input = { 1, 1, 2, 2 } }).output_shape)
  end)

  it("GroupNorm: Reshape to [N, G, -1], the decomposed LayerNorm, Reshape back, Mul, Add at opsets 10 and 17, "
     .. "checked against the forward pass", function()
    local m = nn.Sequential(nn.Conv2d(3, 6, 1), nn.GroupNorm(3, 6), nn.GroupNorm(2, 6, { affine = false }))
    m = require("export_support").randomise(m, 5):eval() -- weights and biases not ones and zeros
    for _, opset in ipairs { 10, 17 } do
      local _, info = require("pthcv.export.onnx").build(m, { input = pthcv.randn({ 1, 3, 5, 7 }, { seed = 4 }),
                                                            opset = opset })
      assert.are.same({ 1, 6, 5, 7 }, info.outputs[1].shape)
    end
  end)

  it("restores pthcv.F and Tensor after tracing, also after an error", function()
    local Tensor = require "pthcv.tensor"
    local D = require "pthcv.tensor.dispatch"
    local relu, add, view = F.relu, Tensor.binary, Tensor.methods.view
    local m = nn.Sequential(nn.Conv2d(3, 4, 1), nn.GroupNorm(2, 4)):eval()
    assert.is_false(without_group_norm(function() return m:export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 4, 4 } }) end))
    assert.are.equal(relu, F.relu)
    assert.are.equal(add, Tensor.binary)
    assert.are.equal(view, Tensor.methods.view)
    assert.is_nil(Tensor.on_wrap)
    assert.is_nil(D.hook)
    assert.is_nil(D.on_wrap)
    assert.is_nil(require("pthcv.nn.module").observer)
  end)

  -- Issue 11.3: an export never silently differs from the forward pass.
  local Tensor = require "pthcv.tensor"
  local ffi = require "ffi"
  local C = pthcv.C

  local function refused(m, what)
    local path = support.tmpname(".onnx")
    os.remove(path)
    local ok, e = pcall(m.export_onnx, m, path, { input = { 1, 3, 8, 8 } })
    assert.is_false(ok, what .. ": exported")
    assert.is_nil(io.open(path, "rb"), what .. ": a file was written")
    return e
  end

  it("refuses a forward that computes values in Lua through :data(), naming the module and the value", function()
    -- exp computed in Lua, as a YOLO-style head might (before, the file was
    -- written and cv2.dnn's output differed from pthcv's by 1.08)
    local script = support.tmpname(".lua")
    support.write_file(script, [[
      local pthcv = require "pthcv"
      local nn, F = pthcv.nn, pthcv.F
      local Head = nn.class("ExpHead")
      function Head:forward(x)
        local y = x:contiguous()
        local p = y:data()
        for i = 0, y.numel - 1 do p[i] = math.exp(p[i]) end
        return y
      end
      local Net = nn.class("ExpNet")
      function Net:__init() self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Head()) end
      function Net:forward(x) return F.adaptive_avg_pool2d(self.features(x), 1) end
      return Net()
    ]])
    local want = "features.2 (ExpHead): Tensor.data reads the elements of t_2 (the output of F.conv2d_packed in "
                 .. "features.0 (nn.Conv2d)) in Lua"
    local e = refused(dofile(script):eval(), "exp head")
    assert.truthy(e:find(want, 1, true), e)
    -- the same through `pthcv export`
    local out = support.tmpname(".onnx")
    os.remove(out)
    local c, _, err = support.pthcv("export", "--script", script, "--shape", "1x3x8x8", "-o", out, "--init", "zeros")
    assert.are.equal(1, c)
    assert.truthy(err:find(want, 1, true), err)
    assert.is_nil(io.open(out, "rb"))
    os.remove(script)
  end)

  it("refuses a tensor made by a direct C call, naming the module and the value", function()
    local Raw = nn.class("RawCall")
    function Raw:forward(x)
      local s = ffi.new("pthcv_activation")
      s.kind = C.PTHCV_ACT_SIGMOID
      local y = Tensor.wrap(C.pthcv_activate(x.ct, s), true)
      return x + y
    end
    local Net = nn.class("RawNet")
    function Net:__init() self.conv = nn.Conv2d(3, 4, 1); self.body = Raw() end
    function Net:forward(x) return self.body(self.conv(x)) end
    local e = refused(Net():eval(), "direct C call")
    assert.truthy(e:find("body (RawCall): Tensor.add consumes a Tensor(float32, [1, 4, 8, 8]), made in body (RawCall) "
                         .. "by no traced op", 1, true), e)
  end)

  it("checks the graph with pthcv's kernels and refuses the first node that differs from the forward", function()
    -- a traced value doubled in place behind the tracer's back (raw memory)
    local Poke = nn.class("Poke")
    function Poke:forward(x)
      local y = F.relu(x)
      local p = ffi.cast("float *", C.pthcv_tensor_data(y.ct))
      for i = 0, y.numel - 1 do p[i] = p[i] * 2 end
      return F.sigmoid(y)
    end
    local Net = nn.class("PokeNet")
    function Net:__init() self.conv = nn.Conv2d(3, 4, 1); self.poke = Poke() end
    function Net:forward(x) return self.poke(self.conv(x)) end
    local e = refused(randomise(Net(), 5):eval(), "in-place change")
    assert.truthy(e:find("the exported graph differs from the forward pass at node Relu_1 (Relu, output t_2) in "
                         .. "poke (Poke): max |difference|", 1, true), e)
  end)

  -- constants made in Lua: by a constructor and filled through :data(), and
  -- made by a direct C call and declared with F.constant
  local Grid = nn.class("Grid")
  function Grid:forward(x)
    local g = pthcv.zeros(x.shape)
    local p = g:data()
    for i = 0, g.numel - 1 do p[i] = (i % 7) / 7 end
    local s = ffi.new("pthcv_activation")
    s.kind = C.PTHCV_ACT_TANH
    local t = F.constant(Tensor.wrap(C.pthcv_activate(g.ct, s), true))
    return x * g + t
  end
  local GridNet = nn.class("GridNet")
  function GridNet:__init() self.conv = nn.Conv2d(3, 4, 1); self.grid = Grid() end
  function GridNet:forward(x) return self.grid(F.relu(self.conv(x))) end

  it("takes constants made in Lua: by the constructors, or declared with F.constant", function()
    local m = randomise(GridNet(), 7):eval()
    local r = m:export_onnx(support.tmpname(".onnx"), { input = { 1, 3, 5, 5 } })
    assert.are.same({ 1, 4, 5, 5 }, r.output_shape)
    -- a forward that folds and packs its weights itself, lazily: constants too
    local Lazy = nn.class("LazyFold")
    function Lazy:__init() self.conv = nn.Conv2d(3, 4, 3); self.bn = nn.BatchNorm2d(4) end
    function Lazy:forward(x)
      local pk = rawget(self, "_pk") or self.conv:make_pack(self.bn, { kind = "relu" })
      rawset(self, "_pk", pk)
      return F.conv2d_packed(pk, x)
    end
    assert.are.same({ 1, 4, 3, 3 }, randomise(Lazy(), 3):eval():export_onnx(support.tmpname(".onnx"),
                                                                            { input = { 1, 3, 5, 5 } }).output_shape)
    -- F.constant of a value computed from the input is refused
    local Bad = nn.class("BadConst")
    function Bad:forward(x) return F.constant(x) + 1 end
    local e = refused(Bad():eval(), "F.constant of a traced value")
    assert.truthy(e:find("F.constant of input", 1, true), e)
  end)

  if not has_python("onnx, cv2, numpy") then
    pending("python3-onnx or python3-opencv is not installed: the exported files are not checked")
    return
  end

  it("a custom module with many layer kinds: onnx.checker passes, cv2.dnn gives pthcv's output", function()
    local m = randomise(Net(), 1):eval()
    local x = pthcv.randn({ 1, 3, 16, 16 }, { seed = 5 })
    local y = m(x)
    local base = support.tmpname("-net")
    pthcv.save(base .. ".in.npy", x)
    pthcv.save(base .. ".out.npy", y)
    local r = m:export_onnx(base .. ".onnx", { input = x })
    assert.are.same(y.shape, r.output_shape)
    local res = check({ { "net", base .. ".onnx", base .. ".in.npy", base .. ".out.npy" } })
    assert_close(res.net, "net")
    -- the CLI, on a script returning a module
    local script = base .. ".lua"
    support.write_file(script, [[
      local nn = require("pthcv").nn
      return nn.Sequential(nn.Conv2d(3, 4, 3, {padding = 1}), nn.ReLU6(), nn.AdaptiveAvgPool2d(1),
                           nn.Flatten(), nn.Linear(4, 2), nn.Sigmoid())
    ]])
    local c, o, e = support.pthcv("export", "--script", script, "--shape", "1x3x8x8", "-o", base .. "-s.onnx",
                                  "--init", "zeros")
    assert.are.equal(0, c, e)
    assert.truthy(o:find("output logits [1, 2]", 1, true), o)
    for _, p in ipairs { ".in.npy", ".out.npy", ".onnx", ".lua", "-s.onnx" } do os.remove(base .. p) end
  end)

  it("constants made in Lua: cv2.dnn gives pthcv's output", function()
    local m = randomise(GridNet(), 7):eval()
    local x = pthcv.randn({ 1, 3, 5, 5 }, { seed = 9 })
    local base = support.tmpname("-grid")
    pthcv.save(base .. ".in.npy", x)
    pthcv.save(base .. ".out.npy", m(x))
    m:export_onnx(base .. ".onnx", { input = x })
    assert_close(check({ { "grid", base .. ".onnx", base .. ".in.npy", base .. ".out.npy" } }).grid, "grid")
    for _, p in ipairs { ".in.npy", ".out.npy", ".onnx" } do os.remove(base .. p) end
  end)

  local zoo, why = support.zoo("every zoo model through ONNX and cv2.dnn")
  if not zoo then pending(why) return end
  local manifest = json.decode(assert(support.read_file(zoo .. "/manifest.json")))

  if not large then
    pending("the other depths of VGG and ResNet through ONNX and cv2.dnn: " .. table.concat(ZOO_LARGE, ", ")
            .. " (make test-large)")
  end

  it("the zoo's models, one depth of each family (all with PTHCV_LARGE=1): onnx.checker passes and cv2.dnn's logits are within 1e-4 of torch's", function()
    local dir = support.root .. "/build/onnx-zoo"
    os.execute("rm -rf " .. support.shell_quote(dir) .. " && mkdir -p " .. support.shell_quote(dir))
    local rows = {}
    local t0 = now()
    for i, name in ipairs(ZOO) do
      local path = dir .. "/" .. name .. ".onnx"
      if i == 1 then
        -- through the CLI once
        local c, _, e = support.pthcv("export", "--model", name, "--weights", zoo .. "/" .. name .. ".pth",
                                      "--input", zoo .. "/" .. name .. ".input.npy", "-o", path)
        assert.are.equal(0, c, e)
      else
        local m = pthcv.models[name] { num_classes = manifest[name].num_classes }
        m:load_state_dict(pthcv.state_dict(zoo .. "/" .. name .. ".pth"))
        m:eval():export_onnx(path, { input = pthcv.load_npy(zoo .. "/" .. name .. ".input.npy") })
        m = nil
        collectgarbage(); collectgarbage()
      end
      rows[#rows + 1] = { name, path, zoo .. "/" .. name .. ".input.npy", zoo .. "/" .. name .. ".output.npy" }
    end
    local t1 = now()
    local res = check(rows)
    for _, name in ipairs(ZOO) do
      local r = res[name]
      print(string.format("# onnx %-20s cv2.dnn max|diff| %.3g (%.2g of max|logit| %.3g)", name,
                          r.max_diff or -1, (r.max_diff or 0) / (r.scale or 1), r.scale or 0))
    end
    print(string.format("# onnx: exported in %.1fs, checked in %.1fs", t1 - t0, now() - t1))
    for _, name in ipairs(ZOO) do assert_close(res[name], name) end
    os.execute("rm -rf " .. support.shell_quote(dir))
  end)
end)
