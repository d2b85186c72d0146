-- pthcv.jit on every torchvision 0.14 classification model and the
-- segmentation models, traced and scripted (build/jit, written by
-- spec/fixtures/make_jit_fixtures.py when torch is installed: tools/run-specs
-- sets PTHCV_JIT). Each archive either reproduces torch's outputs within
-- 1e-4 of its largest value, or is refused at load naming exactly the
-- operators pthcv lacks (the table below: when another part of pthcv adds
-- them, this spec says so, and the model moves to the runnable ones).
local support = require "support"
local J = require "jit_support"
local pthcv = require "pthcv"
local jit = require "pthcv.jit"

local dir = os.getenv("PTHCV_JIT")
local manifest = dir and dir ~= "" and J.manifest(dir) or nil

-- archive -> the operators pthcv lacks for it (pthcv.jit.ops_report's
-- missing): none today; an archive listed here must be refused naming them
local MISSING = {}

describe("pthcv.jit on the torchvision models", function()
  if not manifest then
    pending("build/jit (make_jit_fixtures.py) was not written: torch and torchvision are not installed, or PTHCV_JIT=skip")
    return
  end

  it("has every model torch could save", function()
    assert.is_true(#manifest.archives >= 150, #manifest.archives .. " archives")
    for _, f in ipairs(manifest.failed) do print("# torch could not save " .. f.name .. " (" .. f.kind .. "): " .. f.error) end
  end)

  for _, entry in ipairs(manifest.archives) do
    local missing = MISSING[entry.file]
    if entry.task == "detection" then
      local _ = entry   -- spec/jit_detection_spec.lua compares the detectors
    elseif missing then
      it("refuses " .. entry.file .. " naming what pthcv lacks", function()
        local r = jit.ops_report(dir .. "/" .. entry.file)
        assert.are.same(missing, r.missing)
        local ok, err = pcall(jit.load, dir .. "/" .. entry.file)
        assert.is_false(ok)
        assert.is_truthy(tostring(err):find(entry.file .. ": code/__torch__/.+%.py:%d+: " .. missing[1]:gsub("%p", "%%%0") .. " is not supported"))
      end)
    else
      it("reproduces torch's outputs of " .. entry.file, function()
        local m = jit.load(dir .. "/" .. entry.file):eval()
        J.check_cases(pthcv, dir, entry, m, 1e-4)
        m = nil
        collectgarbage()
      end)
    end
  end

  -- pthcv.jit.to_nn: the archive's tree as the zoo's own modules, for each
  -- zoo family, traced (no Python attributes kept: what forward reads comes
  -- from the traced code) and scripted
  for _, name in ipairs { "alexnet", "vgg11_bn", "squeezenet1_0", "resnet18", "resnet50", "mobilenet_v2",
                          "mobilenet_v3_small", "mobilenet_v3_large" } do
    for _, kind in ipairs { "trace", "script" } do
      local file = name .. "." .. kind .. ".pt"
      it("runs " .. file .. " as the zoo's modules (to_nn) as torch does", function()
        local entry
        for _, e in ipairs(manifest.archives) do if e.file == file then entry = e end end
        assert.is_truthy(entry, file .. " is not in the manifest")
        J.check_cases(pthcv, dir, entry, jit.to_nn(dir .. "/" .. file):eval(), 1e-4)
        collectgarbage()
      end)
    end
  end

  -- pthcv.nn.plan's steps for a traced model: every BatchNorm folded, and
  -- the packs made once
  local function planned(file)
    local plan = require "pthcv.nn.plan"
    local m = jit.load(dir .. "/" .. file):eval()
    local x = pthcv.randn(1, 3, 64, 64)
    m(x); m(x); m(x)
    local packs = support.live_packs()
    m(x)
    assert.are.equal(packs, support.live_packs(), "a later call packs nothing")
    return m, plan.info(m).plans[1].plan
  end

  it("plans a traced resnet18, folding every BatchNorm", function()
    local _, p = planned("resnet18.trace.pt")
    assert.are.equal(20, p.stats.steps.conv)         -- every convolution one step
    assert.are.equal(20, p.stats.fused.batch_norm)   -- every BatchNorm folded into its convolution
    assert.are.equal(8, p.stats.fused.add)
  end)

  it("plans a traced mobilenet_v3_large, folding every BatchNorm", function()
    local m, p = planned("mobilenet_v3_large.trace.pt")
    local norms = 0
    for _, kv in ipairs(m:named_modules()) do
      if kv[2]:repr_name() == "BatchNorm2d" then norms = norms + 1 end
    end
    assert.are.equal(norms, p.stats.fused.batch_norm)
  end)

  local _ = support
end)
