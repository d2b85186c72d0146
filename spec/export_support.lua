-- export_support: what the export specs share (onnx_opset_spec,
-- onnx_dynamic_spec, caffe_spec, graph_spec): models with seeded random
-- weights, the zoo's and the example's models with torch's outputs, and
-- spec/opencv/check_export.py (onnx.checker with full_check, cv2's ONNX
-- and Caffe importers, torch's output on every input) in one process.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local assert = require "luassert"

local nn, F = pthcv.nn, pthcv.F
local M = {}

M.CHECK = support.root .. "/spec/opencv/check_export.py"

function M.has_python(mods)
  return support.run("/usr/bin/python3 -c " .. support.shell_quote("import " .. mods)) == 0
end

-- Runs check_export.py over jobs (its header says their form); results by name.
function M.check(jobs)
  local path = support.tmpname(".json")
  support.write_file(path, json.encode(jobs))
  local c, o, e = support.run("/usr/bin/python3 " .. M.CHECK .. " " .. support.shell_quote(path))
  os.remove(path)
  assert(c == 0, e)
  local out = {}
  for line in o:gmatch("[^\n]+") do
    local r = json.decode(line)
    out[r.name] = r
  end
  return out
end

-- Every case of a checked job within rel of its expected output (pthcv's
-- forward) and, where torch ran, of torch's; returns the largest relative
-- difference seen.
function M.assert_close(r, name, rel)
  rel = rel or 1e-4
  assert.is_table(r, name .. ": not checked")
  if r.checker then assert.are.equal("ok", r.checker, name .. ": onnx.checker: " .. tostring(r.checker)) end
  assert.are.equal("ok", r.opencv, name .. ": OpenCV: " .. tostring(r.opencv))
  local worst = 0
  for i, c in ipairs(r.cases) do
    local what = string.format("%s, input %d (output [%s])", name, i, table.concat(c.shape, ", "))
    assert.is_number(c.max_diff, what .. ": shape differs from the forward's")
    assert.is_true(c.max_diff <= rel * math.max(c.scale, 1e-3),
                   string.format("%s: max |cv2 - pthcv| %g > %g * %g", what, c.max_diff, rel, c.scale))
    worst = math.max(worst, c.max_diff / math.max(c.scale, 1e-3))
    if c.torch_diff ~= nil then
      assert.is_true(c.torch_diff <= rel * math.max(c.scale, 1e-3),
                     string.format("%s: max |cv2 - torch| %s > %g * %g", what, tostring(c.torch_diff), rel, c.scale))
    end
  end
  return worst
end

-- Seeded random parameters and BatchNorm statistics, written in place.
function M.randomise(m, seed)
  local ffi = require "ffi"
  local function fill(t, r) ffi.copy(t:data(), r:data(), t.nbytes) end
  for i, kv in ipairs(m:named_parameters()) do fill(kv[2], pthcv.randn(kv[2].shape, { seed = seed + i }) * 0.3) end
  for i, kv in ipairs(m:named_buffers()) do
    if kv[1]:match("running_var$") then fill(kv[2], pthcv.rand(kv[2].shape, { seed = seed + 100 + i }) + 0.5)
    elseif kv[1]:match("running_mean$") then fill(kv[2], pthcv.randn(kv[2].shape, { seed = seed + 200 + i }) * 0.1) end
  end
  return m
end

-- A case for check_export.py: x and pthcv's output of m on it, saved.
function M.case(m, x, extra)
  local base = support.tmpname("-case")
  pthcv.save(base .. ".in.npy", x)
  local y = m(x)
  pthcv.save(base .. ".out.npy", y)
  local c = { input = base .. ".in.npy", expected = base .. ".out.npy" }
  for k, v in pairs(extra or {}) do c[k] = v end
  return c, y
end

-- The example U-Net (examples/custom_model.lua) with torch's weights, and
-- its input and torch's output.
function M.custom_example()
  local ex = support.root .. "/examples/"
  local m = dofile(ex .. "custom_model.lua")
  m:load_state_dict(pthcv.state_dict(ex .. "custom_model.pth"))
  m:eval()
  return m, ex .. "custom_input.npy", ex .. "custom_output.npy", { custom = ex .. "custom_model.pth" }
end

-- A zoo model with its fixture weights; its input and torch's output paths,
-- and the whole-model pickle torch can run on other inputs (when written).
function M.zoo_model(zoo, name)
  local manifest = M.manifest or json.decode(assert(support.read_file(zoo .. "/manifest.json")))
  M.manifest = manifest
  local m = pthcv.models[name] { num_classes = manifest[name].num_classes }
  m:load_state_dict(pthcv.state_dict(zoo .. "/" .. name .. ".pth"))
  m:eval()
  local whole = zoo .. "/" .. name .. ".model.pth"
  return m, zoo .. "/" .. name .. ".input.npy", zoo .. "/" .. name .. ".output.npy",
         support.read_file(whole) and { whole = whole } or nil
end

-- A custom module of many layer kinds: convolutions with reflect padding
-- and dilation, BatchNorm run on its own, PReLU, ELU, SiLU, GELU, pools
-- with ceil_mode, nearest upsampling, concatenation, a residual add, a
-- scalar multiply, chunk, a transposed convolution, Linear on 3-d input,
-- softmax.
local Net = nn.class("ExportSpecNet")
function Net:__init()
  self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1, padding_mode = "reflect" }), nn.BatchNorm2d(8),
                            nn.LeakyReLU(0.1))
  self.dil = nn.Conv2d(8, 8, 3, { padding = 2, dilation = 2, groups = 2 })
  self.bn = nn.BatchNorm2d(8)
  self.prelu = nn.PReLU(8)
  self.pool = nn.MaxPool2d(3, { stride = 2, ceil_mode = true })
  self.avg = nn.AvgPool2d(3, { stride = 1, padding = 1 })
  self.up = nn.Upsample({ scale_factor = 2, mode = "nearest" })
  self.deconv = nn.ConvTranspose2d(16, 4, 2, { stride = 2 })
  self.head = nn.Linear(8, 5)
end
function Net:forward(x)
  local y = self.stem(x)
  local z = F.elu(self.bn(self.dil(y) + y)) + y * 0.5   -- bn reads an add: not folded into dil
  z = self.prelu(z)
  local p = self.pool(F.silu(z))
  local u = self.up(self.avg(p))
  local c = F.cat({ u:narrow(3, 1, 8):narrow(4, 1, 8), F.gelu(u:narrow(3, 1, 8):narrow(4, 1, 8)) }, 1)
  local a, b = unpack(F.chunk(self.deconv(c), 2, 1))
  local t = F.flatten(F.adaptive_avg_pool2d(F.hardswish(a) - F.sigmoid(b), { 2, 2 }), 2) -- [N, 2, 4]
  t = F.cat({ t, t }, 2)                                                                   -- [N, 2, 8]
  return F.softmax(self.head(t), -1)
end
M.ManyKinds = Net

-- asserts that onnx.checker with full_check accepts the file at path
function M.onnx_checker(path)
  local code = "import onnx, sys; onnx.checker.check_model(onnx.load(sys.argv[1]), full_check=True)"
  local c, _, e = support.run("/usr/bin/python3 -c " .. support.shell_quote(code) .. " " .. support.shell_quote(path))
  assert.are.equal(0, c, path .. ": onnx.checker: " .. tostring(e))
end

-- the largest |value| of t (0 when it is empty)
function M.max_abs(t)
  if t.numel == 0 then return 0 end
  return math.max(t:max(), -t:min())
end

return M
