-- onnx_runtime: runs exported ONNX files in onnxruntime (npm's
-- onnxruntime-node, CPU, through tools/onnxrun.js) and compares their
-- outputs with pthcv's forward pass. tools/install-deps installs the
-- package into build/node_modules; without node or the package,
-- available() says why and the specs that need it are pending.
--
--   local R = require "onnx_runtime"
--   local ok, why = R.available()
--   local worst = R.assert_close(path, { { input = x, expected = m(x) }, ... }, 1e-4, "name")
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"
local assert = require "luassert"

local M = {}

M.RUNNER = support.root .. "/tools/onnxrun.js"
M.MODULES = os.getenv("PTHCV_NODE_MODULES") or (support.root .. "/build/node_modules")

-- node runs without the ASan runtime that make sanitize preloads into
-- luajit (LD_PRELOAD is inherited): node is the reference here, not the
-- code under test
local NODE = "env -u LD_PRELOAD node"

local status -- cached: true, or the reason the runtime is missing
-- true when node and onnxruntime-node load here; else nil and why not
function M.available()
  if status == nil then
    if support.run("command -v node") ~= 0 then
      status = "node is not installed (Debian's nodejs; tools/install-deps installs it): no ONNX runtime here"
    elseif support.run("test -d " .. support.shell_quote(M.MODULES .. "/onnxruntime-node")) ~= 0 then
      status = "onnxruntime-node is not installed in " .. M.MODULES .. " (tools/install-deps installs it with npm): "
               .. "no ONNX runtime here"
    else
      local c, _, e = support.run(NODE .. " -e " .. support.shell_quote("require(process.argv[1])") .. " "
                                  .. support.shell_quote(M.MODULES .. "/onnxruntime-node"))
      status = c == 0 or ("onnxruntime-node does not load: " .. (e:match("[^\n]+") or "?"))
    end
  end
  if status == true then return true end
  return nil, status
end

-- a run's inputs as .npy paths: a Tensor is saved, a string is a path
local function input_paths(inputs, tmp)
  if type(inputs) == "string" or pthcv.is_tensor(inputs) then inputs = { inputs } end
  local paths = {}
  for i, x in ipairs(inputs) do
    if type(x) == "string" then paths[i] = x
    else
      paths[i] = support.tmpname("-ort-in.npy")
      pthcv.save(paths[i], x)
      tmp[#tmp + 1] = paths[i]
    end
  end
  return table.concat(paths, ",")
end

-- Runs model (an .onnx path) once per entry of runs (one session for all:
-- a --dynamic file runs at each size); an entry is a Tensor, an .npy path
-- or a list of those (the model's inputs in order). Returns per run a list
-- of { name = output name, value = Tensor }; errors with onnxrun's message.
function M.run(model, runs)
  assert(M.available())
  local tmp, args = {}, { M.RUNNER, model }
  for _, inputs in ipairs(runs) do
    args[#args + 1] = input_paths(inputs, tmp)
    args[#args + 1] = support.tmpname("-ort-out.")
  end
  for i, a in ipairs(args) do args[i] = support.shell_quote(a) end
  local c, o, e = support.run("PTHCV_NODE_MODULES=" .. support.shell_quote(M.MODULES) .. " " .. NODE .. " "
                              .. table.concat(args, " "))
  for _, p in ipairs(tmp) do os.remove(p) end
  if c ~= 0 then error(model .. ": " .. (e:match("[^\n]+") or "onnxrun failed"), 2) end
  local out = {}
  for line in o:gmatch("[^\n]+") do
    local r, outs = json.decode(line), {}
    for i, t in ipairs(r.outputs) do
      outs[i] = { name = t.name, value = pthcv.load_npy(t.path) }
      os.remove(t.path)
    end
    out[#out + 1] = outs
  end
  assert.are.equal(#runs, #out, model .. ": runs")
  return out
end

-- max |a - b| and max |b| (as float32)
function M.max_diff(a, b)
  local pa, pb = a:float():contiguous():data(), b:float():contiguous():data()
  local d, s = 0, 0
  for i = 0, b.numel - 1 do
    d, s = math.max(d, math.abs(pa[i] - pb[i])), math.max(s, math.abs(pb[i]))
  end
  return d, s
end

-- Runs model on each case { input = Tensor | path | list, expected = Tensor
-- | path | {Tensor...} (the outputs in order) } and asserts every output's
-- shape and values: max |onnxruntime - expected| <= rel * max(max |expected|,
-- 1e-3). Returns the largest max |diff| / max |expected| seen, and the outputs.
function M.assert_close(model, cases, rel, name)
  rel, name = rel or 1e-4, name or model
  local runs = {}
  for i, c in ipairs(cases) do runs[i] = c.input end
  local res, worst = M.run(model, runs), 0
  for i, c in ipairs(cases) do
    local want = c.expected
    if type(want) == "string" or pthcv.is_tensor(want) then want = { want } end
    assert.are.equal(#want, #res[i], name .. ": outputs")
    for j, w in ipairs(want) do
      if type(w) == "string" then w = pthcv.load_npy(w) end
      local got = res[i][j]
      local what = string.format("%s, case %d, output %s", name, i, got.name)
      assert.are.same(w.shape, got.value.shape, what .. ": shape")
      local d, s = M.max_diff(got.value, w)
      assert.is_true(d <= rel * math.max(s, 1e-3),
                     string.format("%s: max |onnxruntime - pthcv| %g > %g * %g", what, d, rel, s))
      worst = math.max(worst, d / math.max(s, 1e-3))
    end
  end
  return worst, res
end

return M
