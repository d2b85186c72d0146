-- lua/pthcv/cli/graph.lua: `pthcv graph`, a picture of a model
-- (lua/pthcv/export/draw.lua).
--
--   pthcv graph [FILE] (--model NAME | --script FILE.lua) [--weights FILE] -o model.svg|png|dot
--               [--shape 1x3x224x224 | --input X.npy]
--   pthcv graph MODEL.pt|MODEL.pth -o model.svg      -- a TorchScript or whole-model file
--
-- FILE is the weights when --model or --script is given, else the model
-- itself (cli/model_file.lua). Shapes do not depend on the weights: without
-- any, the layers keep zeros.
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"

local M = {}

M.command = {
  name = "graph", args = "[FILE]", nargs = { 0, 1 },
  synopsis = "graph [FILE] [--model NAME | --script FILE.lua] [--weights FILE] -o OUT.svg|png|dot\n"
             .. "    [--shape 1x3x224x224 | --input X.npy]",
  summary = [[
a picture of the model: each node's op, settings and output shape, its
modules as boxes, residual and concat edges marked (Graphviz's dot draws
SVG or PNG; without dot, the .dot file is written)]],
  help = [[
a picture of the model, traced from one forward pass on the input (--input,
or a seeded random tensor of --shape): each node shows its op, its settings
(kernel, stride, channels, groups) and its output shape; nodes sit in boxes
of the modules they ran in; the edges that skip a block to an Add (residual)
are dashed blue, the edges into a Concat orange. FILE is the weights with
--model or --script, else a TorchScript or whole-model file. Graphviz's dot
draws .svg and .png; without it, the .dot text is written instead (a
warning says so).]],
  options = options.list(options.model, {
    { "output", short = "o", kind = "string", metavar = "OUT", help = "OUT.svg, OUT.png or OUT.dot" },
    { "shape", kind = "shape", metavar = "1x3x224x224", help = "the traced input's shape (the default)" },
    { "input", kind = "string", metavar = "X.npy", help = "the traced input" },
  }),
  run = function(pos, opt)
    if not opt.output then error(runner.usage_error("graph needs -o OUT.svg, OUT.png or OUT.dot"), 0) end
    local ext = opt.output:lower():match("%.(%w+)$")
    if ext ~= "svg" and ext ~= "png" and ext ~= "dot" then
      error(runner.usage_error("-o " .. opt.output .. ": the extension picks the picture, .svg, .png or .dot"), 0)
    end
    if opt.shape and opt.input then error(runner.usage_error("give --shape or --input, not both"), 0) end
    if not pos[1] and not opt.model and not opt.script then
      error(runner.usage_error("graph needs a model: FILE (TorchScript or whole model), --model NAME or --script FILE.lua"), 0)
    end
    local pthcv = require "pthcv"
    local m, title = require("pthcv.cli.model_file").module(pos, opt, false)
    local input = opt.input and pthcv.load_npy(opt.input) or opt.shape or { 1, 3, 224, 224 }
    local r = require("pthcv.export.draw").model(m, opt.output, { input = input, title = title, seed = opt.seed })
    if r.missing_dot then
      runner.err("warning: Graphviz's dot is not installed: wrote " .. r.path .. " (apt-get install graphviz; "
                 .. "dot -T" .. ext .. " " .. r.path .. " -o " .. opt.output .. ")")
    end
    io.stdout:write(string.format("%s: %d nodes, %d edges (%d residual, %d into concatenations)\n", r.path, r.nodes,
                                  r.edges, r.residual, r.concat))
    return 0
  end,
}

return M
