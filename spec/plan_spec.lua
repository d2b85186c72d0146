-- spec/plan_spec.lua: pthcv.nn.plan, fusion that does not depend on how a
-- model was written. torchvision's EfficientNet and ShuffleNetV2 written
-- as a user would (examples/, through spec/plan_models.lua) against
-- torch's logits (spec/fixtures/plan, make_plan_fixtures.py): the planned
-- pass within 1e-5 of torch and of the unplanned pass, the same bits on 1
-- and 3 threads, the steps it fused counted, the kernel calls and bytes
-- copied of a pass as run (dispatch hook, plan counters) and as counted
-- from the plan; the same plan as the zoo's own code; passes that leave
-- their plan (never a wrong value), refusals, placeholders.
local support = require "support"
local json = require "dkjson"
local pthcv = require "pthcv"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local PM = require "plan_models"
local nn, F = pthcv.nn, pthcv.F
local P = nn.plan
local counters = P.counters

local DIR = support.root .. "/spec/fixtures/plan"
local manifest = json.decode(support.read_file(DIR .. "/manifest.json"))

local function max_rel(a, ref)
  local d, m = 0, 0
  local ta, tb = a:contiguous():view(-1):totable(), ref:contiguous():view(-1):totable()
  for i = 1, #tb do d, m = math.max(d, math.abs(ta[i] - tb[i])), math.max(m, math.abs(tb[i])) end
  return d / m
end
local function bytes(t) return t:contiguous():bytes() end
local function snapshot()
  local s = {}
  for k, v in pairs(counters) do s[k] = v end
  s.steps = {}
  for k, v in pairs(counters.steps) do s.steps[k] = v end
  return s
end
local function steps_run(before)
  local n = 0
  for k, v in pairs(counters.steps) do n = n + v - (before.steps[k] or 0) end
  return n
end

-- The kernel calls an unplanned pass makes and the bytes they write and
-- copy, counted as it runs: ops at the dispatch point whose results are
-- new tensors (not views of their operands).
local COPIES = { ["F.cat"] = true, ["Tensor.contiguous"] = true, ["F.contiguous"] = true, ["F.channel_shuffle"] = true }
local function unplanned_work(m, x)
  local n, written, copied, depth = 0, 0, 0, 0
  D.hook = function(op, rec, impl, ...)
    if depth > 0 then return impl(rec, ...) end
    local seen = {}
    for i = 1, select("#", ...) do
      local v = select(i, ...)
      if Tensor.is(v) then seen[v.storage_id] = true
      elseif type(v) == "table" and Tensor.is(v[1]) then for _, t in ipairs(v) do seen[t.storage_id] = true end end
    end
    depth = 1
    local ok, r = pcall(impl, rec, ...)
    depth = 0
    assert(ok, r)
    if Tensor.is(r) and not seen[r.storage_id] then
      n, written = n + 1, written + r.nbytes
      if COPIES[op] then copied = copied + r.nbytes end
    end
    return r
  end
  local ok, y = pcall(m, x)
  D.hook = nil
  assert(ok, y)
  return { kernels = n, written = written, copied = copied }, y
end

local function fixture(net, case)
  local base = DIR .. "/" .. net .. "." .. case
  return pthcv.load_npy(base .. ".input.npy"), pthcv.load_npy(base .. ".output.npy")
end

local function user_model(net)
  local c = manifest[net].config
  local m
  if net == "efficientnet" then m = PM.EfficientNet(c.num_classes, c.setting)
  else m = PM.ShuffleNetV2(c.stages_repeats, c.stages_out_channels, c.num_classes) end
  m:load_state_dict(pthcv.state_dict(DIR .. "/" .. net .. ".pth"))
  return m:eval()
end

local function plan_of(m)
  local info = P.info(m)
  assert.is_nil(info.off)
  local p = info.plans[#info.plans]
  assert.is_nil(p.refused, p.refused)
  return p
end

-- Both passes against torch, the plan's counts against the pass as run.
local function check_network(net, case, expect)
  local m = user_model(net)
  local x, want = fixture(net, case)
  local work, y0 = unplanned_work(m, x)
  assert.is_true(max_rel(y0, want) < 1e-5, "unplanned " .. max_rel(y0, want))
  local y1 = m(x)   -- recorded
  assert.are.equal(bytes(y0), bytes(y1))
  local before = snapshot()
  local y2 = m(x)   -- planned
  assert.are.equal(before.deviations, counters.deviations)
  assert.is_true(max_rel(y2, want) < 1e-5, "planned vs torch " .. max_rel(y2, want))
  assert.is_true(max_rel(y2, y1) < 1e-5, "planned vs unplanned " .. max_rel(y2, y1))
  local y3 = m(x)
  assert.are.equal(bytes(y2), bytes(y3))
  local saved = pthcv.get_num_threads()
  pthcv.set_num_threads(saved == 1 and 3 or 1)
  local y4 = m(x)
  pthcv.set_num_threads(saved)
  assert.are.equal(bytes(y2), bytes(y4))
  local p = plan_of(m)
  local s = p.stats
  -- the plan counts the recorded pass as the hook saw it run
  assert.are.same({ work.kernels, work.written, work.copied }, { s.before.kernels, s.before.written, s.before.copied })
  -- and the planned pass as it ran: kernels of the ops left, one per step, the copies of cat steps
  local b = snapshot()
  m(x)
  local ran = counters.kernels - b.kernels + counters.copies - b.copies + steps_run(b) - (counters.steps.cat or 0)
              + (b.steps.cat or 0)
  assert.are.equal(s.after.kernels, ran)
  assert.are.equal(s.after.copied, counters.copied_bytes - b.copied_bytes)
  for k, v in pairs(expect.steps) do assert.are.equal(v, s.steps[k] or 0, "steps " .. k) end
  for k, v in pairs(expect.fused) do assert.are.equal(v, s.fused[k], "fused " .. k) end
  assert.are.equal(expect.kernels, s.after.kernels)
  assert.is_true(s.after.written < s.before.written)
  return m, s
end

describe("pthcv.nn.plan on torchvision's networks written as a user would", function()
  -- five MBConv blocks, two with residuals: per block the squeeze-excitation's
  -- six ops (pool, 1x1, SiLU, 1x1, sigmoid, multiply) become one kernel call,
  -- and a residual add runs in the projection's store
  local EFF = { steps = { se = 5, conv = 2 }, fused = { se = 5, add = 2, batch_norm = 0 }, kernels = 50 - 5 * 5 - 2 }
  it("EfficientNet: squeeze-excitation in one kernel, residuals in the convolution's store", function()
    check_network("efficientnet", "a", EFF)
  end)
  it("EfficientNet: a new input shape gets its own plan, the first one kept", function()
    local m = check_network("efficientnet", "b", EFF)
    local x, want = fixture("efficientnet", "a")
    m(x); m(x)
    assert.is_true(max_rel(m(x), want) < 1e-5)
    assert.are.equal(2, #P.info(m).plans)
  end)
  -- six blocks: the branches' last convolutions write into their slice of
  -- the shuffled output (3 blocks with two branches, 3 with one); the cat and
  -- the shuffle copied every block's output twice, the plan only the
  -- untouched half of the stride-1 blocks, once: an eighth. Per stage the
  -- cat and contiguous copies of both blocks (4 calls) become one copy.
  -- Each branch ends with a depthwise and a 1x1 convolution: one dwpw step
  -- (csrc/kernels/dwpw.c) that writes the slice (these small maps run as
  -- the two forwards in that one step; the bands are checked in kernels_test).
  local SHUF = { steps = { cat = 6, conv = 0, dwpw = 9 }, fused = { cat = 6, shuffle = 6, in_place = 9 },
                 kernels = 41 - 3 * 3 - 9 }
  for _, case in ipairs { "a", "b" } do
    it("ShuffleNetV2 (batch " .. manifest.shufflenet.cases[case][1] .. "): cat and channel shuffle written in place",
       function()
      local _, s = check_network("shufflenet", case, SHUF)
      assert.are.equal(s.before.copied, 8 * s.after.copied)
    end)
  end
end)

describe("pthcv.nn.plan makes the zoo's plans from the zoo's plain forwards", function()
  -- the same weights in both: pthcv.models' state_dict keys are torchvision's
  local function random_weights(m, seed)
    local sd = {}
    for i, kv in ipairs(m:state_dict():items()) do
      local name, t = kv[1], kv[2]
      if t.dtype == "float32" then
        local r = pthcv.randn(t.shape, { seed = seed + i }) * 0.1
        if name:match("running_var$") then r = pthcv.rand(t.shape, { seed = seed + i }) + 0.5 end
        sd[#sd + 1] = { name, r }
      end
    end
    return sd
  end
  it("a ResNet written as torchvision's gets pthcv.models.resnet18's plan and its bits", function()
    local zoo = pthcv.models.resnet18({ num_classes = 10 })
    local sd = random_weights(zoo, 100)
    zoo:load_state_dict(sd, { strict = false }); zoo:eval()
    local user = PM.ResNet({ 2, 2, 2, 2 }, 10)
    user:load_state_dict(sd, { strict = false }); user:eval()
    local x = pthcv.randn({ 1, 3, 64, 64 }, { seed = 7 })
    zoo(x); user(x)
    local a, b = zoo(x), user(x)
    assert.are.equal(bytes(a), bytes(b))
    local sa, sb = plan_of(zoo).stats, plan_of(user).stats
    assert.are.same(sa.steps, sb.steps)
    assert.are.same(sa.fused, sb.fused)
    assert.are.same(sa.after, sb.after)
    assert.are.same({ conv = 17 }, sa.steps)
    assert.are.equal(8, sa.fused.add)
    assert.are.equal(17, sa.fused.batch_norm)
  end)
  for _, pair in ipairs { { "efficientnet_b0", "efficientnet_b0.lua" }, { "shufflenet_v2_x1_0", "shufflenet_v2.lua" } } do
    it("examples/" .. pair[2] .. " gets pthcv.models." .. pair[1] .. "'s plan", function()
      local path = support.root .. "/examples/" .. pair[2]
      local zoo = pthcv.models[pair[1]]()
      local user = dofile(path)
      local sd = random_weights(zoo, 200)
      zoo:load_state_dict(sd, { strict = false }); zoo:eval()
      user:load_state_dict(sd, { strict = false }); user:eval()
      local x = pthcv.randn({ 1, 3, 96, 96 }, { seed = 8 })
      zoo(x); user(x)
      local a, b = zoo(x), user(x)
      assert.is_true(max_rel(b, a) < 1e-5)
      local sa, sb = plan_of(zoo).stats, plan_of(user).stats
      assert.are.same(sa.steps, sb.steps)
      assert.are.same(sa.after.kernels, sb.after.kernels)
      assert.are.same(sa.after.copied, sb.after.copied)
    end)
  end
end)

describe("pthcv.nn.plan fuses what the ops are, however they are written", function()
  local function planned(f, ...)
    local run, owner = P.wrap(f)
    local want = run(...)   -- recorded
    local got = run(...)
    assert.is_true(max_rel(got, want) < 1e-5, "planned vs recorded " .. max_rel(got, want))
    return P.info(owner).plans[1].stats
  end
  -- a MobileNet block's depthwise and projection, its depthwise output
  -- (24 x 112 x 112 floats) over the 1 MB a band needs to pay: banded
  -- (the op profile names the bands), the same bits as the two as separate
  -- steps on 1 and 3 threads, also when the projection writes a cat's slice
  it("a depthwise convolution, BatchNorm, ReLU6, 1x1, BatchNorm and residual: one dwpw step, in bands", function()
    local ffi = require "ffi"
    local C = require("pthcv.core").C
    local function bn(c, seed)
      return { pthcv.randn({ c }, { seed = seed }) * 0.1, pthcv.rand({ c }, { seed = seed + 1 }) + 0.5,
               pthcv.rand({ c }, { seed = seed + 2 }) + 0.5, pthcv.randn({ c }, { seed = seed + 3 }) }
    end
    local wd, wp = pthcv.randn({ 24, 1, 3, 3 }, { seed = 1 }), pthcv.randn({ 16, 24, 1, 1 }, { seed = 2 }) * 0.2
    local b1, b2 = bn(24, 10), bn(16, 20)
    local x = pthcv.randn({ 1, 24, 112, 112 }, { seed = 3 })
    local r = pthcv.randn({ 1, 16, 112, 112 }, { seed = 4 })
    local function block(t, res)
      local y = F.relu6(F.batch_norm(F.conv2d(t, wd, nil, 1, 1, 1, 24), b1[1], b1[2], b1[3], b1[4], false, 0.1, 1e-5))
      y = F.batch_norm(F.conv2d(y, wp), b2[1], b2[2], b2[3], b2[4], false, 0.1, 1e-5)
      return res and y + res or F.cat({ res == false and r or y, y }, 1)
    end
    local optimize = require "pthcv.nn.plan.optimize"
    for _, res in ipairs { r, false } do
      -- the reference: the same plan with the two as separate steps
      -- (batch norms folded the same way), and the unplanned pass within 1e-5
      optimize.dwpw = false
      local plain, plain_owner = P.wrap(block)
      plain(x, res)
      local want = bytes(plain(x, res))
      optimize.dwpw = true
      local unplanned = block(x, res)
      local run, owner = P.wrap(block)
      run(x, res)
      C.pthcv_profile_ops(1)
      local got = run(x, res)
      C.pthcv_profile_ops(0)
      local n = tonumber(C.pthcv_profile_ops_report(nil, 0))
      local buf = ffi.new("char[?]", n + 1)
      C.pthcv_profile_ops_report(buf, n + 1)
      assert.matches("dwpw 3x3/1 %+ 1x1, %d+%-row bands", ffi.string(buf))
      assert.are.equal(want, bytes(got))
      assert.is_true(max_rel(got, unplanned) < 1e-5)
      for _, t in ipairs { 1, 3 } do
        local saved = pthcv.get_num_threads()
        pthcv.set_num_threads(t)
        local y = run(x, res)
        pthcv.set_num_threads(saved)
        assert.are.equal(want, bytes(y))
      end
      local s = P.info(owner).plans[1].stats
      assert.are.equal(1, s.steps.dwpw)
      assert.matches("depthwise conv2d%+batch_norm%+relu6 then pointwise conv2d%+batch_norm.* in %d+%-row bands",
                     P.describe(owner))
      -- the depthwise result (24 x 112 x 112 floats) is never written
      assert.are.equal(P.info(plain_owner).plans[1].stats.after.written - 4 * 24 * 112 * 112, s.after.written)
      assert.are.same({ 2, 1 }, { s.fused.batch_norm, s.fused.activation })
      assert.are.equal(res and 1 or 0, s.fused.add)
      assert.are.equal(res and 0 or 1, s.fused.in_place)
    end
  end)
  it("a linear layer, BatchNorm1d and ReLU: one call", function()
    local m = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.BatchNorm1d(6), nn.ReLU())
    m[2].weight, m[2].bias = pthcv.randn({ 6, 12 }, { seed = 1 }), pthcv.randn({ 6 }, { seed = 2 })
    m[3].running_mean, m[3].running_var = pthcv.randn({ 6 }, { seed = 3 }), pthcv.rand({ 6 }, { seed = 4 }) + 0.5
    m:eval()
    local s = planned(function(t) return m(t) end, pthcv.randn({ 3, 3, 2, 2 }, { seed = 5 }))
    assert.are.same({ linear = 1 }, s.steps)
    assert.are.same({ 1, 1 }, { s.fused.batch_norm, s.fused.activation })
  end)
  it("squeeze-excitation as F.mean, F.conv2d and F.hardsigmoid", function()
    local w1, b1 = pthcv.randn({ 3, 17, 1, 1 }, { seed = 1 }), pthcv.randn({ 3 }, { seed = 2 })
    local w2, b2 = pthcv.randn({ 17, 3, 1, 1 }, { seed = 3 }), pthcv.randn({ 17 }, { seed = 4 })
    local s = planned(function(t)
      local z = F.mean(t, { 2, 3 }, true)
      z = F.hardsigmoid(F.conv2d(F.relu(F.conv2d(z, w1, b1)), w2, b2))
      return t * z
    end, pthcv.randn({ 2, 17, 5, 7 }, { seed = 5 }))
    assert.are.same({ se = 1 }, s.steps)
    assert.are.equal(1, s.after.kernels)
  end)
  it("a cat of an input and a convolution's result: the convolution writes its slice, the input is copied", function()
    local w = pthcv.randn({ 5, 4, 3, 3 }, { seed = 1 })
    local x = pthcv.randn({ 2, 4, 6, 6 }, { seed = 2 })
    local s = planned(function(t) return F.cat({ t, F.relu(F.conv2d(t, w, nil, 1, 1)) }, 1) end, x)
    assert.are.same({ cat = 1, conv = 1 }, s.steps)
    assert.are.same({ 3, 2 }, { s.before.kernels, s.after.kernels })   -- conv, relu, cat -> conv+relu, one copy
    assert.are.equal(x.nbytes, s.after.copied)
  end)
end)

describe("pthcv bench --profile", function()
  it("shows the plan's steps by the ops they fused, for the zoo and for Lua scripts (examples/)", function()
    local code, out, err = support.pthcv("bench", "--model", "resnet18", "--shape", "1x3x64x64", "--runs", "1",
                                         "--profile")
    assert.are.equal(0, code, err)
    assert.matches("layer1%.0%.conv2 %[conv2d%+batch_norm%+add%+relu%]", out)
    assert.matches("plan: 66 ops recorded, 17 fused steps", out)
    assert.matches("kernel calls 65 %-> 23", out)
    local script = support.tmpname(".lua")
    support.write_file(script, string.format([[
package.path = %q .. "/spec/?.lua;" .. package.path
return require("plan_models").ShuffleNetV2({ 2, 2, 2 }, { 8, 16, 32, 64, 128 }, 10)
]], support.root))
    code, out, err = support.pthcv("bench", "--script", script, "--init", "random", "--shape", "1x3x64x64", "--runs",
                                   "1", "--profile")
    os.remove(script)
    assert.are.equal(0, code, err)
    assert.matches("stage2%.0 %[cat%+channel_shuffle: 2 of 2 inputs written in place%]", out)
    assert.matches("stage2%.1%.branch2 %[depthwise conv2d%+batch_norm then pointwise conv2d%+batch_norm%+relu "
                   .. "%-> shuffled cat slice%]", out)
    assert.matches("6 channel shuffles in place", out)
    -- the example script itself, as a user runs it: its squeeze-excitations and residuals named
    code, out, err = support.pthcv("bench", "--script", support.root .. "/examples/efficientnet_b0.lua", "--init",
                                   "random", "--shape", "1x3x64x64", "--runs", "1", "--profile")
    assert.are.equal(0, code, err)
    assert.matches("features%.2%.0%.block%.2 %[squeeze_excitation%(silu, sigmoid%)%]", out)
    assert.matches("features%.2%.1%.block%.3 %[conv2d%+batch_norm%+add%]", out)
    assert.matches("plan: 157 ops recorded, 25 fused steps %(9 conv/linear, 16 squeeze%-excitation, 0 cat, "
                   .. "0 depthwise%+pointwise%)", out)
    assert.matches("kernel calls 156 %-> 67", out)
  end)
end)

local zoo_dir = os.getenv("PTHCV_ZOO")
describe("pthcv.nn.plan on the zoo against torchvision", function()
  local zoo_manifest = zoo_dir and json.decode(support.read_file(zoo_dir .. "/manifest.json") or "null")
  local EXPECT = {
    resnet18 = { steps = { conv = 17 }, fused = { batch_norm = 17, add = 8 } },
    -- the 7 blocks without squeeze-excitation: depthwise and projection in one dwpw step
    mobilenet_v3_large = { steps = { se = 8, conv = 5, dwpw = 7 }, fused = { se = 8, add = 10 } },
    squeezenet1_1 = { steps = { cat = 8, conv = 24 }, fused = { cat = 8, in_place = 16 } },
  }
  for _, name in ipairs { "resnet18", "mobilenet_v3_large", "squeezenet1_1" } do
    it(name .. ": the planned pass within 1e-5 of torch's largest logit", function()
      if not zoo_manifest or not zoo_manifest[name] then return pending("PTHCV_ZOO: the zoo's fixtures (tools/run-specs)") end
      local m = pthcv.models[name]({ num_classes = zoo_manifest[name].num_classes })
      m:load_state_dict(pthcv.state_dict(zoo_dir .. "/" .. name .. ".pth"))
      m:eval()
      local x = pthcv.load_npy(zoo_dir .. "/" .. name .. ".input.npy")
      local want = pthcv.load_npy(zoo_dir .. "/" .. name .. ".output.npy")
      m(x)
      local y = m(x)
      assert.is_true(max_rel(y, want) < 1e-5, name .. " " .. max_rel(y, want))
      local s = plan_of(m).stats
      for k, v in pairs(EXPECT[name].steps) do assert.are.equal(v, s.steps[k], k) end
      for k, v in pairs(EXPECT[name].fused) do assert.are.equal(v, s.fused[k], k) end
      if name == "squeezenet1_1" then assert.are.equal(0, s.after.copied) end
    end)
  end
end)
