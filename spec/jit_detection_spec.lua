-- pthcv.jit on torchvision's scripted detectors (torch.jit.script of
-- ssdlite, Faster R-CNN, RetinaNet, FCOS, SSD with trained-like weights and
-- spread scores; build/jit, written by spec/fixtures/make_jit_fixtures.py
-- when torch is installed: tools/run-specs sets PTHCV_JIT). For each
-- picture the archive's detections are torch's: the same count above the
-- model's score threshold, the same labels, scores within 1e-4 and box
-- coordinates within 1e-3 of the largest coordinate (the picture's scale,
-- as spec/detection_spec.lua measures boxes: a coordinate of 3 pixels off
-- by 0.006, as a Faster R-CNN box is between torch on netlib's BLAS and
-- on OpenBLAS, is not a relative error of 2e-3).
local J = require "jit_support"
local pthcv = require "pthcv"
local jit = require "pthcv.jit"

local dir = os.getenv("PTHCV_JIT")
local manifest = dir and dir ~= "" and J.manifest(dir) or nil

-- Largest |a - b| / max(|b|, floor) over two tensors of one shape.
local function rel_diff(a, b, floor)
  assert(#a.shape == #b.shape, "ranks differ: " .. tostring(a) .. " vs " .. tostring(b))
  for i = 1, #a.shape do assert(a.shape[i] == b.shape[i], "shapes differ: " .. tostring(a) .. " vs " .. tostring(b)) end
  local p, q = a:to("float64"):contiguous(), b:to("float64"):contiguous()
  local x, y = p:data(), q:data()
  local worst = 0
  for i = 0, a.numel - 1 do
    local d = math.abs(x[i] - y[i]) / math.max(math.abs(y[i]), floor)
    if d ~= d then d = math.huge end
    if d > worst then worst = d end
  end
  return worst
end

describe("pthcv.jit on torchvision's scripted detectors", function()
  if not manifest then
    pending("build/jit (make_jit_fixtures.py) was not written: torch and torchvision are not installed, or PTHCV_JIT=skip")
    return
  end
  local detectors = {}
  for _, entry in ipairs(manifest.archives) do if entry.task == "detection" then detectors[#detectors + 1] = entry end end

  it("has the scripted ssdlite and Faster R-CNN", function()
    local have = {}
    for _, e in ipairs(detectors) do have[e.name] = true end
    for _, f in ipairs(manifest.failed) do print("# torch could not save " .. f.name .. " (" .. f.kind .. "): " .. f.error) end
    assert.is_true(have.ssdlite320_mobilenet_v3_large, "ssdlite320_mobilenet_v3_large.script.pt")
    assert.is_true(have.fasterrcnn_mobilenet_v3_large_320_fpn, "fasterrcnn_mobilenet_v3_large_320_fpn.script.pt")
  end)

  -- a detector whose code calls an operator pthcv lacks: refused at load,
  -- before any computation, naming the file and line of the call
  for _, r in ipairs(manifest.refused or {}) do
    if r.op then
      it("refuses " .. r.file .. " naming " .. r.op .. " and where it is called", function()
        local ok, err = pcall(jit.load, dir .. "/" .. r.file)
        assert.is_false(ok)
        local pattern = r.file:gsub("%p", "%%%0") .. ": code/__torch__/torchvision/ops/boxes%.py:%d+: "
                        .. r.op:gsub("%p", "%%%0") .. " is not supported"
        assert.is_truthy(tostring(err):find(pattern), tostring(err))
        -- the only problem outside torch's functional library (whose
        -- branches are checked when they run)
        local report = jit.ops_report(dir .. "/" .. r.file)
        assert.are.equal(1, #report.problems)
        assert.are.equal(r.op .. " is not supported", report.problems[1].msg)
      end)
    end
  end

  for _, entry in ipairs(detectors) do
    it("detects as torch does with " .. entry.file, function()
      local m = jit.load(dir .. "/" .. entry.file):eval()
      for _, case in ipairs(entry.cases) do
        local out = m(unpack(J.case_args(pthcv, dir, case), 1, #case.args))
        local total = 0
        for _, o in ipairs(case.outputs) do
          local ref = pthcv.load_npy(dir .. "/" .. o.file)
          local got = J.output(out, o.key)
          assert(got ~= nil, entry.file .. ": no output " .. o.key)
          assert.are.equal(ref.shape[1], got.shape[1], entry.file .. " " .. o.key .. ": detections counted")
          local field = o.key:match("[^.]+$")
          if field == "labels" then
            assert.are.same(ref:totable(), got:totable(), entry.file .. " " .. o.key)
            total = total + ref.shape[1]
          elseif field == "scores" then
            local d = J.diff(got, ref)
            assert(d <= 1e-4, string.format("%s %s: scores differ from torch's by %.3g", entry.file, o.key, d))
          elseif field == "boxes" then
            local scale = math.max(ref:abs():max(), 1)
            local d = rel_diff(got, ref, scale)
            assert(d <= 1e-3, string.format("%s %s: boxes differ from torch's by %.3g of the largest coordinate (%.1f)",
                                            entry.file, o.key, d, scale))
          end
        end
        -- the fixture is worth comparing: its scores spread into detections
        assert(total > 0, entry.file .. ": torch found no detection in the pictures")
      end
      m = nil
      collectgarbage()
    end)
  end
end)
