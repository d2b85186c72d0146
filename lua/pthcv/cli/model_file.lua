-- lua/pthcv/cli/model_file.lua: a model from a file that holds the model
-- itself, for the commands that take one in place of --model/--script
-- (graph, export):
--   * a TorchScript archive (torch.jit.save): pthcv.jit.load, an
--     interpreter over its code that runs pthcv's ops through
--     pthcv.tensor.dispatch, so it traces as any module does;
--   * a whole-model pickle (torch.save(model)): pthcv.nn.from_module.
-- A file of weights alone is refused: it needs --model or --script.
local M = {}

function M.load(path, limits)
  local pthcv = require "pthcv"
  local root, info = pthcv.load(path, limits)
  if info.format == "torchscript" then
    local ok, jit = pcall(require, "pthcv.jit")
    if not ok then
      error("pthcv: " .. path .. " is a TorchScript archive, and this pthcv has no TorchScript interpreter "
            .. "(pthcv.jit): give --model or --script with it as the weights", 0)
    end
    return jit.load(path, limits):eval()
  end
  local ok, m = pcall(pthcv.nn.from_module, root)
  if ok then return m:eval() end
  error("pthcv: " .. path .. " holds no whole model (" .. tostring(m):gsub("^pthcv: ", "") .. "): for weights, "
        .. "give --model NAME or --script FILE.lua with it", 0)
end

return M
