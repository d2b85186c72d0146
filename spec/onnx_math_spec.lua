-- onnx_math_spec: the ONNX export of the math ops (lua/pthcv/export/onnx/ops_math.lua).
--
-- Modules whose forward uses the math ops through pthcv.F and the Tensor
-- methods are exported; every file must pass onnx.checker, and a NumPy run
-- of the graph (spec/opencv/eval_onnx_numpy.py) must give pthcv's output.
-- OpenCV 4.6's cv2.dnn must give it too for the module made of the ops it
-- runs (docs/nn.md lists the others); what it says of the others is printed.
-- Refusals: round and gather of n-d tensors have no opset-10 form.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local nn, F = pthcv.nn, pthcv.F
local DIR = support.root .. "/spec/opencv/"

local function has_python(mods)
  return support.run("/usr/bin/python3 -c " .. support.shell_quote("import " .. mods)) == 0
end

-- forward functions of x [1, 3, 5, 7]; each returns a float32 tensor
local FORWARDS = {
  -- what cv2.dnn 4.6 runs (and computes right)
  opencv = function(x)
    local a = F.abs(x)
    local y = F.exp(x * 0.5) + F.log(a + 1) + F.sqrt(a) + F.rsqrt(a + 1) + F.floor(x) + F.ceil(x) + F.sign(x)
    y = y + F.reciprocal(x + 10) + F.pow(a + 0.5, 1.75) + x:pow(2) + x:sigmoid() * x:tanh() + x:relu()
    -- reductions over the channels, joined as channels (cv2 4.6 broadcasts few shapes)
    local parts = { y, F.max(x, 1), F.min(x, 1), F.argmax(x, 1):float(), F.argmin(x, 1):float(), (x:max(2)) }
    for i = 2, #parts do parts[i] = parts[i]:reshape(1, 1, 5, 7) end
    return F.cat(parts, 1)
  end,
  compare = function(x)
    local r, z = F.floor(x * 2), F.log(x) -- NaN where x < 0
    local m = F.logical_or(F.logical_and(F.gt(x, 0.25), F.le(r, 1)), F.logical_xor(F.eq(r, 0), F.ne(z, z)))
    m = F.logical_and(m, F.logical_not(F.eq(z, F.log(x * 2)) ))
    m = F.logical_or(m, F.logical_not(F.ge(x, F.narrow(x, 1, 0, 1))))
    local k = F.argmax(x, 1, true)
    local ints = F.lt(k, 1):float() + F.eq(k, 2):float() + F.gt(1, k):float() + F.ge(k, 1.5):float()
    return m:float() + ints + x:lt(0.5):float() + x:le(x:floor()):float()
  end,
  where = function(x)
    local m = F.gt(x, 0)
    return F.where(m, x, x * 0.1) + x:where(m, 0.0) + F.where(m, 1.0, -1) + F.where(F.lt(x, 1), -2, x)
  end,
  sort = function(x)
    local v = F.sort(x, -1, true)
    local _, i = x:sort(4)
    local tv, ti = F.topk(x, 3, 3)
    local sv, si = F.topk(x, 2, -1, { largest = false })
    return F.cat({ v:narrow(4, 1, 2) + i:narrow(4, 1, 2):float() + F.argsort(x, -1):float():narrow(4, 1, 2),
                   tv:narrow(4, 1, 2) + ti:float():narrow(4, 1, 2) + sv + si:float(),
                   x:argsort(-1, true):float():narrow(4, 1, 2) }, 1)
  end,
  select = function(x)
    local row = F.narrow(x, 1, 0, 1):reshape(35)
    local order = F.argsort(row, 0, true)
    local picked = F.index_select(row, 0, order) + F.gather(row, 0, order) + row:gather(1, row:argsort(1, true))
    local cols = F.index_select(x, 3, { 6, 0, 2 }) + x:index_select(4, { 7, 1, 3 })
    local _, best = F.max(F.narrow(x, 3, 0, 3), 2)                  -- traced int64 indices
    local rows = F.index_select(x, 2, best:reshape(9))
    return F.cat({ picked:reshape(1, 35), cols:reshape(1, 45), rows:reshape(1, 189) }, 1)
  end,
}

local function module_of(name)
  local M = nn.class("MathOnnx_" .. name)
  function M:forward(x) return FORWARDS[name](x) end
  return M():eval()
end

-- exported files and their rows for the checkers: {name, onnx, input, expected}
local function export_all(names)
  local rows = {}
  local x = pthcv.randn({ 1, 3, 5, 7 }, { seed = 7 }) * 2
  for _, name in ipairs(names) do
    local m = module_of(name)
    local base = support.tmpname("-" .. name)
    local y = m(x)
    pthcv.save(base .. ".in.npy", x)
    pthcv.save(base .. ".out.npy", y)
    local r = m:export_onnx(base .. ".onnx", { input = x })
    assert.are.same(y.shape, r.output_shape)
    rows[#rows + 1] = { name, base .. ".onnx", base .. ".in.npy", base .. ".out.npy" }
  end
  return rows
end

local function run_checker(script, rows)
  local args = {}
  for _, r in ipairs(rows) do
    args[#args + 1] = support.shell_quote(r[1] .. "=" .. r[2] .. "," .. r[3] .. "," .. r[4])
  end
  local c, o, e = support.run("/usr/bin/python3 " .. DIR .. script .. " " .. table.concat(args, " "))
  assert(c == 0, e)
  local out = {}
  for line in o:gmatch("[^\n]+") do
    local r = json.decode(line)
    out[r.name] = r
  end
  return out
end

describe("ONNX export of the math ops", function()
  it("refuses round and n-d gather by name, as ops with no opset-10 form", function()
    local function refused(fwd, pattern)
      local M = nn.class("MathOnnxRefused")
      function M:forward(x) return fwd(x) end
      local ok, e = pcall(function() return M():eval():export_onnx(support.tmpname(".onnx"), { input = { 1, 2, 3 } }) end)
      assert.is_false(ok)
      assert.truthy(tostring(e):find(pattern, 1, true), tostring(e))
    end
    refused(function(x) return F.round(x) end, "round has no opset-10 form (ONNX's Round is opset 11)")
    refused(function(x) return x:round() end, "Round is opset 11")
    refused(function(x) return F.gather(x, 1, pthcv.zeros({ 1, 2, 3 }, "int64")) end, "GatherElements is opset 11")
  end)

  if not has_python("onnx, cv2, numpy") then
    pending("python3-onnx or python3-opencv is not installed: the exported files are not checked")
    return
  end

  it("writes graphs that pass onnx.checker and that NumPy and cv2.dnn run to pthcv's output", function()
    local names = { "opencv", "compare", "where", "sort", "select" }
    local rows = export_all(names)
    local cv, np = run_checker("check_onnx.py", rows), run_checker("eval_onnx_numpy.py", rows)
    for _, name in ipairs(names) do
      local c, n = cv[name], np[name]
      assert.are.equal("ok", c.checker, name .. ": onnx.checker: " .. tostring(c.checker))
      assert.are.equal("ok", n.numpy, name .. ": NumPy: " .. tostring(n.numpy))
      assert.is_true(n.max_diff <= 1e-5 * math.max(1, n.scale),
                     string.format("%s: NumPy max |diff| %g (scale %g)", name, n.max_diff, n.scale))
      print(string.format("# onnx math %-8s cv2.dnn 4.6: %s", name, c.opencv == "ok"
        and string.format("max |diff| %.3g of %.3g", c.max_diff, c.scale)
        or "does not run it (" .. (n.opencv_refuses and "no " .. n.opencv_refuses .. " layer" or c.opencv) .. ")"))
    end
    local c = cv.opencv
    assert.are.equal("ok", c.opencv, "cv2.dnn: " .. tostring(c.opencv))
    assert.is_true(c.max_diff <= 1e-5 * c.scale, string.format("cv2.dnn max |diff| %g (scale %g)", c.max_diff, c.scale))
    for _, r in ipairs(rows) do for i = 2, 4 do os.remove(r[i]) end end
  end)
end)
