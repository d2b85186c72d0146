-- onnx_runtime_spec: tools/onnxrun.js, the runner through which the export
-- specs run ONNX files in onnxruntime (npm's onnxruntime-node, installed
-- by tools/install-deps into build/node_modules; spec/onnx_runtime.lua),
-- and what onnxruntime's own rewrites of a graph must not change.
local support = require "support"
local X = require "export_support"
local R = require "onnx_runtime"
local pthcv = require "pthcv"

local nn = pthcv.nn

local function onnxrun(env, ...)
  local args = { "node", R.RUNNER }
  for _, a in ipairs { ... } do args[#args + 1] = support.shell_quote(a) end
  return support.run(env .. " " .. table.concat(args, " "))
end

describe("tools/onnxrun.js", function()
  local ok, why = R.available()
  if not ok then
    it("runs ONNX files in onnxruntime", function() pending(why) end)
    return
  end

  local m = X.randomise(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 5)), 7):eval()
  local model = support.tmpname(".onnx")
  m:export_onnx(model, { input = { 1, 3, 6, 6 }, dynamic = { "batch" } })

  it("runs one session on several inputs and writes each output as .npy", function()
    local xs = { pthcv.randn({ 1, 3, 6, 6 }, { seed = 1 }), pthcv.randn({ 4, 3, 6, 6 }, { seed = 2 }) }
    local worst, res = R.assert_close(model, { { input = xs[1], expected = m(xs[1]) },
                                               { input = xs[2], expected = m(xs[2]) } }, 1e-5, "conv-linear")
    assert.are.equal("logits", res[2][1].name)
    assert.are.same({ 4, 5 }, res[2][1].value.shape)
    assert.is_true(worst < 1e-5)
  end)

  it("refuses bad files and inputs with one line that names the file", function()
    local x = support.tmpname(".npy")
    pthcv.save(x, pthcv.randn({ 1, 3, 6, 6 }, { seed = 1 }))
    local good = support.read_file(x)
    local out = support.tmpname("-out.")
    local cases = {
      { model, x .. "," .. x, "has 1 inputs (input), given 2 .npy files" },
      { x, x, "onnxruntime refuses it" },
      { model, model, "not a .npy file this runner reads: no .npy magic" },
      { model, "truncated", "needs 432 data bytes, the file has 400" },
      { model, "f64", "onnxruntime failed on" },
      { model, "/nonexistent.npy", "/nonexistent.npy: ENOENT" },
    }
    for _, case in ipairs(cases) do
      local input = case[2]
      if input == "truncated" then
        input = support.tmpname(".npy")
        support.write_file(input, good:sub(1, #good - 32))
      elseif input == "f64" then
        input = support.tmpname(".npy")
        pthcv.save(input, pthcv.randn({ 1, 3, 6, 6 }, { seed = 1 }):double())
      end
      local c, _, e = onnxrun("", case[1], input, out)
      assert.are.equal(1, c, e)
      assert.truthy(e:find("^onnxrun: ") and e:find(case[3], 1, true), e)
      assert.are.equal(1, select(2, e:gsub("\n", "")), e)
    end
    local c, _, e = onnxrun("PTHCV_NODE_MODULES=/nonexistent", model, x, out)
    assert.are.equal(1, c)
    assert.truthy(e:find("onnxruntime-node is not installed in /nonexistent (tools/install-deps puts it there)", 1,
                         true), e)
  end)

  -- torch's AvgPool2d counts the padding (count_include_pad): written as
  -- Pad + AveragePool for OpenCV, whose importer ignores the attribute.
  -- onnxruntime 1.20 fuses that Pad into the pool and divides the border
  -- windows by fewer values unless count_include_pad = 1 is written too.
  it("a padded average pool: onnxruntime's Pad fusion keeps torch's divisor", function()
    local x = pthcv.randn({ 1, 3, 7, 9 }, { seed = 3 }) + 2
    for _, pool in ipairs { nn.Sequential(nn.AvgPool2d(3, { stride = 2, padding = 1 }), nn.ReLU()),
                            nn.Sequential(nn.AvgPool2d(3, { stride = 1, padding = 1 }), nn.Conv2d(3, 4, 1)) } do
      pool = X.randomise(pool, 4):eval()
      for _, opset in ipairs { 10, 11, 13, 17 } do
        local path = support.tmpname("-pool.onnx")
        pool:export_onnx(path, { input = x, opset = opset })
        R.assert_close(path, { { input = x, expected = pool(x) } }, 1e-6, "padded AvgPool2d at opset " .. opset)
        os.remove(path)
      end
    end
  end)
end)
