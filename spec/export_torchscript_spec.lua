-- export_torchscript_spec: TorchScript archives (pthcv.jit) through the
-- exporters: `pthcv export FILE.pt` to ONNX and Caffe and `pthcv graph
-- FILE.pt`, for the archives torch.jit.trace and torch.jit.script wrote
-- (spec/fixtures/jit: a small CNN with a residual, a squeeze-excite and a
-- concatenation; a segmenter returning a dict, whose resize to the input's
-- size Caffe cannot say), against torch's outputs.
-- pthcv.jit runs the archives' ops through pthcv.tensor.dispatch, so they
-- trace as pthcv.nn modules do. Pending where this tree has no pthcv.jit.
local support = require "support"
local X = require "export_support"

local DIR = support.root .. "/spec/fixtures/jit/"

describe("TorchScript through the exporters", function()
  if not pcall(require, "pthcv.jit") or not support.read_file(DIR .. "tiny_cnn.trace.pt") then
    pending("no pthcv.jit (the TorchScript interpreter) or its fixtures in this tree")
    return
  end

  local CASES = {
    { "tiny_cnn", "trace", { output = "tiny_cnn.trace.main.out.0.npy" } },
    { "tiny_cnn", "script", { output = "tiny_cnn.script.main.out.0.npy" } },
    { "tiny_seg", "trace", { aux = "tiny_seg.trace.main.out.aux.npy", out = "tiny_seg.trace.main.out.out.npy" } },
    { "tiny_seg", "script", { aux = "tiny_seg.script.main.out.aux.npy", out = "tiny_seg.script.main.out.out.npy" } },
  }

  it("exports traced and scripted archives to ONNX and Caffe and draws them", function()
    local jobs = {}
    for _, case in ipairs(CASES) do
      local name = case[1] .. "." .. case[2]
      local pt, input = DIR .. name .. ".pt", DIR .. case[1] .. ".main.input0.npy"
      local expected = {}
      for key, file in pairs(case[3]) do expected[key] = DIR .. file end
      if expected.output then expected = expected.output end
      for _, ext in ipairs { ".onnx", ".prototxt" } do
        local path = support.tmpname("-" .. name .. ext)
        local c, o, e = support.pthcv("export", pt, "--input", input, "-o", path)
        if case[1] == "tiny_seg" and ext == ".prototxt" then -- its resize to the input's size is no whole factor
          assert.are.equal(1, c, o)
          assert.truthy(e:find("node Resize_1 (Resize, in the model's forward (TinySeg)) has no Caffe form: a resize "
                               .. "from 5x6 to 19x23", 1, true), e)
          break
        end
        assert.are.equal(0, c, name .. ext .. ": " .. e)
        jobs[#jobs + 1] = { name = name .. ext, kind = ext == ".onnx" and "onnx" or "caffe", model = path,
                            weights = ext == ".prototxt" and (path:gsub("%.prototxt$", ".caffemodel")) or nil,
                            cases = { { input = input, expected = expected } } }
        if case[1] == "tiny_seg" then assert.truthy(o:find("output aux [", 1, true), o) end
      end
      local dot = support.tmpname(".dot")
      local c, o, e = support.pthcv("graph", pt, "--input", input, "-o", dot)
      assert.are.equal(0, c, e)
      assert.truthy(o:find(case[1] == "tiny_cnn" and "(1 residual, 2 into concatenations)" or " nodes,", 1, true), o)
      os.remove(dot)
    end
    if not X.has_python("onnx, cv2, numpy") then
      pending("python3-onnx or python3-opencv is not installed: the files are not run")
      return
    end
    local res = X.check(jobs)
    for _, job in ipairs(jobs) do
      X.assert_close(res[job.name], job.name)
      os.remove(job.model)
      if job.weights then os.remove(job.weights) end
    end
  end)
end)
