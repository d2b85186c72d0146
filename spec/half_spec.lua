-- half_spec: module:half(): float16 weights in memory, float32 arithmetic
-- (the packs keep float16; the kernels convert them block by block). Its accuracy
-- against float32 is reported: on a small module always, and against
-- torch's logits for resnet18 and mobilenet_v2 when the zoo fixtures exist.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local nn = pthcv.nn

local function max_abs(t) return math.max(t:max(), -t:min()) end

local function param_bytes(m)
  local n = 0
  for _, p in ipairs(m:parameters()) do n = n + p.nbytes end
  for _, kv in ipairs(m:named_buffers()) do n = n + kv[2].nbytes end
  return n
end

-- bytes held by every live conv2d/linear pack
local function packs_bytes()
  collectgarbage(); collectgarbage()
  local n = 0
  for pk in pairs(nn.F.pack_info) do n = n + nn.F.pack_bytes(pk) end
  return n
end

local function small()
  local m = nn.Sequential(nn.Conv2d(3, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3),
                          nn.PReLU(8), nn.GroupNorm(2, 8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
  local ffi = require "ffi"
  for i, p in ipairs(m:parameters()) do
    local r = pthcv.randn(p.shape, { seed = i }) * 0.5
    ffi.copy(p:data(), r:data(), p.nbytes)
  end
  return m
end

describe("module:half()", function()
  it("keeps floating parameters and buffers as float16, computes close to float32, float() converts back", function()
    local m = small():eval()
    local x = pthcv.randn({ 2, 3, 12, 12 }, { seed = 9 })
    local y32 = m(x)
    local b32 = param_bytes(m)
    m:half()
    for name, t in pairs(m:state_dict()) do
      if name:match("num_batches_tracked$") then assert.are.equal("int64", t.dtype, name)
      else assert.are.equal("float16", t.dtype, name) end
    end
    local y16 = m(x)
    assert.are.equal("float32", y16.dtype)
    local rel = max_abs(y16 - y32) / max_abs(y32)
    print(string.format("# half: small module, max |diff| / max |y| = %.3g; weights %d -> %d bytes", rel,
                        b32, param_bytes(m)))
    assert.is_true(rel < 5e-3, "relative error " .. rel)
    assert.is_true(param_bytes(m) < 0.55 * b32)
    -- loading a float32 state_dict into a half module keeps float16
    local sd = small():state_dict()
    m:load_state_dict(sd)
    assert.are.equal("float16", m[1].weight.dtype)
    m:float()
    assert.are.equal("float32", m[1].weight.dtype)
    local y = m(x)
    assert.are.equal("float32", y.dtype)
  end)

  local zoo, why = support.zoo("resnet18 and mobilenet_v2 with float16 weights against torch")
  if not zoo then pending(why) return end
  local manifest = json.decode(assert(support.read_file(zoo .. "/manifest.json")))

  for _, name in ipairs { "resnet18", "mobilenet_v2" } do
    it(name .. " with float16 weights against torch's float32 logits", function()
      local m = pthcv.models[name] { num_classes = manifest[name].num_classes }
      m:load_state_dict(pthcv.state_dict(zoo .. "/" .. name .. ".pth"))
      local b32 = param_bytes(m)
      local x = pthcv.load_npy(zoo .. "/" .. name .. ".input.npy")
      m:eval()(x)
      local packs32 = packs_bytes()
      m:half():eval()
      local want = pthcv.load_npy(zoo .. "/" .. name .. ".output.npy")
      local y = m(x)
      local packs16 = packs_bytes()
      local rel = max_abs(y - want) / max_abs(want)
      local _, top = y:topk(5)
      local _, top_want = want:topk(5)
      print(string.format("# half: %-12s max |diff| / max |logit| = %.3g, top-1 %s; weights %.1f -> %.1f MB, "
                          .. "packed %.1f -> %.1f MB", name, rel, top:get(1, 1) == top_want:get(1, 1) and "kept" or
                          "changed", b32 / 2 ^ 20, param_bytes(m) / 2 ^ 20, packs32 / 2 ^ 20, packs16 / 2 ^ 20))
      -- the packs stay float16: half the float32 packs' bytes or less (those
      -- also hold Winograd's transformed weights; depthwise ones stay float32)
      assert.is_true(packs16 > 0 and packs16 < 0.52 * packs32, "packs " .. packs32 .. " -> " .. packs16)
      assert.is_true(rel < 2e-2, name .. ": relative error " .. rel)
      assert.are.equal(top_want:get(1, 1), top:get(1, 1))
    end)
  end

  -- parameters a forward uses itself, not through a pack: ConvNeXt's layer
  -- scale, ViT's class token and position embedding (make bench's --half rows)
  for _, name in ipairs { "convnext_tiny", "vit_b_32" } do
    it(name .. " with float16 weights: the parameters its forward uses itself reach the ops as float32", function()
      local info = manifest[name]
      local m = pthcv.models[name](info.options)
      m:load_state_dict(pthcv.state_dict(zoo .. "/" .. name .. ".pth"))
      m:half():eval()
      local want = pthcv.load_npy(zoo .. "/" .. name .. ".output.npy")
      local y = m(pthcv.load_npy(zoo .. "/" .. name .. ".input.npy"))
      local rel = max_abs(y - want) / max_abs(want)
      assert.is_true(rel < 2e-2, name .. ": relative error " .. rel)
    end)
  end
end)
