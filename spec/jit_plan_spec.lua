-- pthcv.jit through pthcv.nn.plan: the calls after the first run a traced
-- archive's plan (the fused steps: squeeze-excitation, convolutions writing
-- into a cat, ...) without the interpreter (pthcv.nn.plan.replay.run_ops:
-- torch.jit.trace writes straight-line code), and their outputs stay
-- torch's, identical for every thread count. Scripted archives (branches)
-- run their plan under the interpreted forward. pthcv.jit's packs do not
-- outlive the weights they were made from.
local support = require "support"
local J = require "jit_support"
local pthcv = require "pthcv"
local jit = require "pthcv.jit"
local plan = require "pthcv.nn.plan"
local F = require "pthcv.nn.functional"

local dir = os.getenv("PTHCV_JIT")
local manifest = dir and dir ~= "" and J.manifest(dir) or nil

local function entry_of(file)
  for _, e in ipairs(manifest.archives) do if e.file == file then return e end end
  error(file .. " is not in the manifest")
end

-- The plan made for module m's (one) input layout.
local function plan_of(m)
  local info = plan.info(m)
  assert.are.equal(1, #info.plans)
  assert.is_nil(info.plans[1].refused)
  return info.plans[1].plan
end

-- The calls of archives' methods the interpreter ran so far (pthcv.jit.module.run).
local script = require "pthcv.jit.module"
local interpreted, script_run = 0, script.run
script.run = function(...) interpreted = interpreted + 1; return script_run(...) end
local function interpreted_calls() return interpreted end

local function same_bits(a, b)
  local x, y = a:contiguous():data(), b:contiguous():data()
  for i = 0, a.numel - 1 do if x[i] ~= y[i] then return false end end
  return true
end

describe("pthcv.jit under pthcv.nn.plan", function()
  if not manifest then
    pending("build/jit (make_jit_fixtures.py) was not written: torch and torchvision are not installed, or PTHCV_JIT=skip")
    return
  end
  local threads = pthcv.get_num_threads()
  after_each(function() pthcv.set_num_threads(threads) end)

  it("runs a traced mobilenet_v3_large's later calls as its plan, every squeeze-excitation one step, without the "
     .. "interpreter", function()
    local entry = entry_of("mobilenet_v3_large.trace.pt")
    local m = jit.load(dir .. "/" .. entry.file):eval()
    J.check_cases(pthcv, dir, entry, m, 1e-4)                  -- recorded
    local interpreted = interpreted_calls()
    local se = plan.counters.steps.se or 0
    J.check_cases(pthcv, dir, entry, m, 1e-4)                  -- planned
    J.check_cases(pthcv, dir, entry, m, 1e-4)
    local p = plan_of(m)
    assert.is_true(p.run_ops)
    assert.are.equal(8, p.stats.steps.se)
    assert.is_truthy(plan.describe(m):find("8 squeeze%-excitation"))
    -- each step named by the submodule it runs in, as the zoo's plan names them
    assert.is_truthy(plan.describe(m):find("features.4.block.2%s+squeeze_excitation%(relu, hardsigmoid%)"))
    assert.are.equal(16, plan.counters.steps.se - se)          -- 8 fused steps run in each planned call
    assert.are.equal(interpreted, interpreted_calls())         -- and no interpreted forward
    assert.is_nil(plan.info(m).off)
  end)

  it("gives the same bits at 1, 2 and 3 threads, planned, for traced resnet18 and mobilenet_v3_large", function()
    for _, file in ipairs { "resnet18.trace.pt", "mobilenet_v3_large.trace.pt" } do
      local entry = entry_of(file)
      local m = jit.load(dir .. "/" .. file):eval()
      local args = J.case_args(pthcv, dir, entry.cases[1])
      local n = #entry.cases[1].args
      pthcv.set_num_threads(1)
      local recorded = m(unpack(args, 1, n))
      local planned = m(unpack(args, 1, n))
      for _, threads in ipairs { 1, 2, 3 } do
        pthcv.set_num_threads(threads)
        for _ = 1, 2 do assert.is_true(same_bits(planned, m(unpack(args, 1, n))), file .. " at " .. threads .. " threads") end
      end
      assert.is_true(plan_of(m).run_ops)
      -- the fused steps (squeeze-excitation in one kernel) within 1e-5 of the ops run one by one
      local md, mx = J.diff(planned, recorded)
      assert.is_true(md <= 1e-5 * mx, file .. ": " .. md)
    end
  end)

  it("plans a traced archive again for another input size, as the interpreter computes it", function()
    local file = dir .. "/resnet18.trace.pt"
    local m = jit.load(file):eval()
    local x = pthcv.randn(1, 3, 40, 48)
    m(pthcv.randn(1, 3, 32, 32))
    local y
    for _ = 1, 3 do y = m(x) end   -- recorded, then planned (a second layout)
    assert.are.equal(2, #plan.info(m).plans)
    assert.is_true(plan.info(m).plans[2].plan.run_ops)
    plan.enabled = false
    local ok, ref = pcall(function() return jit.load(file):eval()(x) end)
    plan.enabled = true
    assert.is_true(ok, tostring(ref))
    local md, mx = J.diff(y, ref)
    assert.is_true(md <= 1e-5 * mx, tostring(md))
  end)

  -- archives whose plans fuse other ways (cat destinations, channel
  -- shuffles, SiLU squeeze-excitation), or return a dict
  for _, file in ipairs { "squeezenet1_1.trace.pt", "shufflenet_v2_x0_5.trace.pt", "efficientnet_b0.trace.pt",
                          "densenet121.trace.pt", "googlenet.trace.pt", "mobilenet_v3_small.trace.pt",
                          "lraspp_mobilenet_v3_large.trace.pt" } do
    it("keeps torch's outputs of " .. file .. " in every planned call", function()
      local entry = entry_of(file)
      local m = jit.load(dir .. "/" .. file):eval()
      for _ = 1, 3 do J.check_cases(pthcv, dir, entry, m, 1e-4) end
      local info = plan.info(m)
      assert.is_nil(info.off)
      for _, p in ipairs(info.plans) do assert.is_nil(p.refused) end
    end)
  end

  it("runs a scripted archive's plan under its forward (its code branches)", function()
    local entry = entry_of("mobilenet_v3_large.script.pt")
    local m = jit.load(dir .. "/" .. entry.file):eval()
    assert.is_false(m:runs_same_ops())
    local interpreted = interpreted_calls()
    for _ = 1, 3 do J.check_cases(pthcv, dir, entry, m, 1e-4) end
    local p = plan_of(m)
    assert.is_false(p.run_ops)
    assert.are.equal(8, p.stats.steps.se)
    -- its in-place activations (hardswish_, relu_) and BatchNorms fused too
    assert.are.equal(46, p.stats.fused.batch_norm)
    assert.is_true(interpreted_calls() - interpreted >= 3)   -- interpreted every time
    assert.is_true(jit.load(dir .. "/mobilenet_v3_large.trace.pt"):runs_same_ops())
  end)

  it("frees the packs of weights a model no longer holds (load_state_dict in a loop)", function()
    local m = jit.load(dir .. "/resnet18.trace.pt"):eval()
    local x = pthcv.randn(1, 3, 32, 32)
    local sd = m:state_dict()
    local counts = {}
    for k = 1, 8 do
      local fresh = {}
      for _, kv in ipairs(sd:items()) do fresh[kv[1]] = kv[2]:clone() end
      m:load_state_dict(fresh)
      m(x); m(x)
      support.live_packs()   -- (a full collection)
      local n = 0
      for pk in pairs(F.pack_info) do if pk.handle ~= nil then n = n + 1 end end
      counts[k] = n
    end
    -- 21 packs holding their C objects a load (20 fused convolutions and fc;
    -- F.conv2d's own packs of the convolutions are freed for the fused
    -- ones): a leak keeps them all, 168 and more by the eighth
    assert.is_true(counts[8] <= counts[4], table.concat(counts, " "))
    assert.is_true(counts[8] < 4 * 21, table.concat(counts, " "))
  end)
end)
