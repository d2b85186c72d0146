-- formats_spec: pthcv reads the other formats it writes (.npz, .safetensors,
-- OpenCV FileStorage), as numpy, the safetensors rules and OpenCV wrote them
-- (spec/fixtures/make_format_fixtures.py), and takes them as --weights.
local support = require "support"
local json = require "dkjson"
local pthcv = require "pthcv"

local function q(s) return support.shell_quote(s) end

local function has_python(mods)
  return support.run("/usr/bin/python3 -c " .. q("import " .. mods)) == 0
end

-- The committed fixtures, and a fresh set when numpy, torch and cv2 are there.
local sets = { support.root .. "/spec/fixtures/formats" }
if has_python("numpy, torch, cv2") then
  local fresh = support.tmpname("-formats")
  local code, _, err = support.run("/usr/bin/python3 " .. q(support.root .. "/spec/fixtures/make_format_fixtures.py")
                                   .. " " .. q(fresh))
  assert(code == 0, err)
  sets[#sets + 1] = fresh
end

for _, dir in ipairs(sets) do
  local expected = json.decode(support.read_file(dir .. "/expected.json"))

  describe("reading " .. dir:match("[^/]*$"), function()
    for _, name in ipairs(support.sorted_keys(expected.files)) do
      local want = expected.files[name]
      it(name .. ": every tensor, its dtype, shape and bytes", function()
        local root, info = pthcv.load(dir .. "/" .. name)
        assert.are.equal(want.format, info.format)
        local items = pthcv.OrderedDict.items(root)
        assert.are.equal(#want.tensors, #items)
        for i, t in ipairs(want.tensors) do
          local got = items[i]
          assert.are.equal(t.name, got[1])
          assert.are.equal(t.dtype, got[2].dtype, t.name)
          assert.are.same(t.shape, got[2].shape, t.name)
          assert.are.equal(t.hex, support.hex(got[2]:bytes()), t.name)
        end
        -- nothing in these formats is executed: scan calls them safe
        local code, out = support.pthcv("scan", "--json", dir .. "/" .. name)
        assert.are.equal(0, code)
        local j = json.decode(out)
        assert.is_true(j.safe)
        assert.are.equal(want.format, j.format)
      end)
    end

    for _, name in ipairs(support.sorted_keys(expected.bad)) do
      it(name .. " is refused: " .. expected.bad[name], function()
        local path = dir .. "/" .. name
        local ok, e = pcall(pthcv.load, path)
        assert.is_false(ok)
        assert.truthy(e:find(path, 1, true), e)
        assert.truthy(e:find(expected.bad[name], 1, true), e)
        local code, out, err = support.pthcv("scan", "--json", path)
        assert.are.equal(2, code)
        local j = assert(json.decode(out), out)
        assert.is_false(j.safe)
        assert.truthy(j.error:find(expected.bad[name], 1, true), j.error)
        assert.truthy(err:find(expected.bad[name], 1, true), err)
      end)
    end
  end)
end

describe("pthcv convert, then read back", function()
  local src = support.root .. "/examples/tiny_resnet.pth"
  local sd = pthcv.state_dict(src)

  for _, ext in ipairs { "npz", "safetensors", "yml", "yml.gz", "xml", "json" } do
    it("." .. ext .. ": the state_dict, bit for bit, under torch's names", function()
      local out = support.tmpname("." .. ext)
      local code, _, err = support.pthcv("convert", src, "--state-dict", "-o", out)
      assert.are.equal(0, code, err)
      local back = pthcv.state_dict(out)
      local n = 0
      for k, t in pairs(sd) do
        n = n + 1
        local b = assert(back[k], k)
        assert.are.equal(t.dtype, b.dtype, k)
        assert.are.same(t.shape, b.shape, k)
        assert.are.equal(t:bytes(), b:bytes(), k)
      end
      assert.are.equal(n, #pthcv.OrderedDict.keys(back))
      os.remove(out)
    end)
  end

  it("--dtype converts floating tensors (bfloat16 to .npz needs float32 first)", function()
    local bf = support.tmpname(".safetensors")
    assert.are.equal(0, (support.pthcv("convert", src, "--state-dict", "--dtype", "bfloat16", "-o", bf)))
    local back = pthcv.state_dict(bf)
    for k, t in pairs(sd) do
      if t.dtype == "float32" then
        assert.are.equal("bfloat16", back[k].dtype, k)
        assert.are.equal(t:to("bfloat16"):bytes(), back[k]:bytes(), k)
      else
        assert.are.equal(t.dtype, back[k].dtype, k)
      end
    end
    local npz = support.tmpname(".npz")
    local code, _, err = support.pthcv("convert", bf, "-o", npz)
    assert.are.equal(1, code)
    assert.truthy(err:find("which NumPy has no dtype for: add --dtype float32", 1, true), err)
    code, _, err = support.pthcv("convert", bf, "-o", npz, "--dtype", "float32")
    assert.are.equal(0, code, err)
    for k, t in pairs(pthcv.state_dict(npz)) do
      if sd[k].dtype == "float32" then assert.are.equal(back[k]:float():bytes(), t:bytes(), k) end
    end
    assert.are.equal(2, (support.pthcv("convert", src, "-o", npz, "--dtype", "float8")))
    assert.are.equal(2, (support.pthcv("convert", src, "-o", npz, "--dtype", "float32", "--half")))
    os.remove(bf); os.remove(npz)
  end)

end)

describe("pthcv run --weights in every format", function()
  if not has_python("torch, torchvision") then
    pending("python3-torch or python3-torchvision is not installed: no reference output")
    return
  end
  local dir = support.tmpname("-weights")
  setup(function()
    os.execute("mkdir -p " .. q(dir))
    -- torchvision's squeezenet1_1 (5 classes), trained-like BatchNorm-free weights, torch's output
    local script = [[
import sys, numpy as np, torch, torchvision
torch.manual_seed(3)
m = torchvision.models.squeezenet1_1(num_classes=5).eval()
with torch.no_grad():
    for p in m.parameters():
        p.copy_(torch.randn_like(p) * (2.0 / p[0].numel()) ** 0.5)
x = torch.randn(1, 3, 64, 64)
torch.save(m.state_dict(), sys.argv[1] + "/w.pth")
torch.save({"epoch": 3, "model_state_dict": m.state_dict(), "best": torch.tensor(0.5)}, sys.argv[1] + "/ckpt.pth")
np.save(sys.argv[1] + "/x.npy", x.numpy())
with torch.no_grad():
    np.save(sys.argv[1] + "/y.npy", m(x).numpy())
]]
    local code, _, err = support.run("/usr/bin/python3 -c " .. q(script) .. " " .. q(dir))
    assert(code == 0, err)
  end)
  teardown(function() os.execute("rm -rf " .. q(dir)) end)

  -- ckpt.npz: `pthcv convert` of a whole checkpoint names the weights
  -- model_state_dict.<key>; --weights finds them under that checkpoint key
  for _, ext in ipairs { "pth", "npz", "safetensors", "yml.gz", "xml", "ckpt.npz" } do
    it(ext .. ": torch's output", function()
      local w = dir .. "/w." .. ext
      local from = ext == "ckpt.npz" and dir .. "/ckpt.pth" or dir .. "/w.pth"
      if ext ~= "pth" then assert.are.equal(0, (support.pthcv("convert", from, "-o", w))) end
      local out = dir .. "/y." .. ext .. ".npy"
      local code, _, err = support.pthcv("run", "--model", "squeezenet1_1", "--weights", w, "--input", dir .. "/x.npy",
                                         "--output", out)
      assert.are.equal(0, code, err)
      local got, want = pthcv.load_npy(out), pthcv.load_npy(dir .. "/y.npy")
      local scale, diff = 0, 0
      for i, v in ipairs(want:totable()[1]) do
        scale = math.max(scale, math.abs(v))
        diff = math.max(diff, math.abs(v - got:totable()[1][i]))
      end
      assert.is_true(diff <= 1e-4 * scale, ext .. ": " .. diff)
    end)
  end

  it("--half (float16 weights in memory): torch's output within float16's precision, in run and bench", function()
    local out = dir .. "/y.half.npy"
    local code, _, err = support.pthcv("run", "--model", "squeezenet1_1", "--weights", dir .. "/w.pth", "--input",
                                       dir .. "/x.npy", "--output", out, "--half")
    assert.are.equal(0, code, err)
    local got, want = pthcv.load_npy(out):totable()[1], pthcv.load_npy(dir .. "/y.npy"):totable()[1]
    local scale, diff = 0, 0
    for i, v in ipairs(want) do
      scale = math.max(scale, math.abs(v))
      diff = math.max(diff, math.abs(v - got[i]))
    end
    print(string.format("# run --half: max |diff| / max |torch| = %.2g", diff / scale))
    assert.is_true(diff > 0 and diff <= 1e-2 * scale, tostring(diff / scale))
    local o
    code, o, err = support.pthcv("bench", "--model", "squeezenet1_1", "--weights", dir .. "/w.pth", "--shape",
                                 "1x3x32x32", "--runs", "1", "--half")
    assert.are.equal(0, code, err)
    assert.truthy(o:find("weights=file half", 1, true), o)
  end)
end)
