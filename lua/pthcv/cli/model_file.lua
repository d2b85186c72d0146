-- lua/pthcv/cli/model_file.lua: a model from a file that holds the model
-- itself, for the commands that take one in place of --model/--script
-- (graph, export):
--   * a TorchScript archive (torch.jit.save): pthcv.jit.load, an
--     interpreter over its code that runs pthcv's ops through
--     pthcv.tensor.dispatch, so it traces as any module does;
--   * a whole-model pickle (torch.save(model)): pthcv.nn.from_module.
-- A file of weights alone is refused: it needs --model or --script.
-- M.module(pos, opt, need_weights): the module of a command's FILE and
-- options.
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

-- The module the options and the positional FILE describe (cli/model.lua's
-- rules: --model or --script, --weights or --init), and its name: FILE is
-- the weights with --model or --script, else the model itself. Without
-- need_weights, no weights means zeros (shapes do not depend on them).
function M.module(pos, opt, need_weights)
  local usage = require("pthcv.cli.runner").usage_error
  local file = pos[1]
  if file and not opt.model and not opt.script then
    if opt.weights or opt.init then error(usage("FILE is the model; --weights and --init go with --model or --script"), 0) end
    return M.load(file), file:match("[^/]*$")
  end
  if file then
    if opt.weights then error(usage("give the weights once: FILE or --weights"), 0) end
    opt.weights = file
  end
  if not opt.weights and not opt.init and not need_weights then opt.init = "zeros" end
  return require("pthcv.cli.model").build(opt, need_weights), opt.model or opt.script:match("[^/]*$")
end

return M
