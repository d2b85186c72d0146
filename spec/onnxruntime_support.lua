-- onnxruntime_support: runs an ONNX file in onnxruntime through Node
-- (npm's onnxruntime-node, CPU binaries in the package; Debian has no
-- onnxruntime) with spec/onnxruntime/run_onnx.js. The package is looked for
-- at PTHCV_ONNXRUNTIME_NODE, then under build/ort (written by
--   cd build/ort && npm install --ignore-scripts onnxruntime-node@1.20.1),
-- then wherever Node resolves it. This is the one place that knows where
-- it is, so that a shared install (tools/install-deps) can replace it.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local M = {}

M.RUNNER = support.root .. "/spec/onnxruntime/run_onnx.js"

-- the package's directory (or module name) and nil, or nil and why not
function M.package()
  if support.run("command -v node") ~= 0 then return nil, "node is not installed" end
  local candidates = { os.getenv("PTHCV_ONNXRUNTIME_NODE") or "",
                       support.root .. "/build/ort/node_modules/onnxruntime-node", "onnxruntime-node" }
  for _, p in ipairs(candidates) do
    if p ~= "" then
      local probe = "node -e " .. support.shell_quote("require(" .. string.format("%q", p) .. ")")
      if support.run(probe) == 0 then return p end
    end
  end
  return nil, "onnxruntime-node is not installed (cd build/ort && npm install --ignore-scripts onnxruntime-node@1.20.1)"
end

-- Runs model (a path) on x (a float32 Tensor) in onnxruntime; its outputs by
-- name as pthcv Tensors (float32 or int64).
function M.run(model, x)
  local pkg = assert(M.package())
  local input = support.tmpname(".npy")
  pthcv.save(input, x:contiguous())
  local c, o, e = support.run("PTHCV_ONNXRUNTIME_NODE=" .. support.shell_quote(pkg) .. " node " .. M.RUNNER .. " "
                              .. support.shell_quote(model) .. " " .. support.shell_quote(input))
  os.remove(input)
  assert(c == 0, "onnxruntime: " .. tostring(e))
  local out = {}
  for name, v in pairs(json.decode(o)) do
    local dtype = v.type == "int64" and "int64" or "float32"
    local n = 1
    for _, d in ipairs(v.dims) do n = n * d end
    local t = n > 0 and require("pthcv.tensor").from_table(v.data, dtype) or pthcv.zeros({ 0 }, dtype)
    out[name] = t:reshape(v.dims)
  end
  return out
end

return M
