-- lua/pthcv/jit/init.lua: pthcv.jit, TorchScript archives (torch.jit.trace /
-- torch.jit.script, then .save) run with no Python, no libtorch and no code
-- execution: an interpreter over the archive's code/ and pthcv's kernels.
--
--   local m = pthcv.jit.load("model.pt"):eval()
--   local y = m(pthcv.randn(1, 3, 224, 224))
--   print(m)                                  -- the module tree with each layer's settings
--   print(m.code)                             -- forward's TorchScript source
--   for _, op in ipairs(m:graph()) do print(op.path, op.op, op.loc) end
--   local r = pthcv.jit.ops_report("model.pt")   -- {ops = {{name, count, supported, loc}}, problems}
--
-- Loading compiles forward and everything it can reach; an operator pthcv
-- lacks or a construct it does not run is refused then, naming the file and
-- line in the archive ("code/__torch__/ssd.py:123: aten::foo is not
-- supported"), before any computation. See docs/torchscript.md.
local archive = require "pthcv.jit.archive"
local compile = require "pthcv.jit.compile"
local module = require "pthcv.jit.module"
local ops = require "pthcv.jit.ops"
-- loaded archives are pthcv.nn modules planned as the zoo's are (its planner
-- hooks into every module call once loaded)
require "pthcv.nn.plan"

local M = {}
M.ScriptModule = module.ScriptModule

-- The options of load and ops_report: the reader's limits (pthcv.load's),
-- the parser's (max_source, max_tokens, max_nesting, max_literal) and the
-- interpreter's (max_call_depth, max_iterations).
local function open_archive(path, opts)
  local a = archive.open(path, opts)
  local ctx = compile.context(a, opts)
  local root = module.build(ctx, a.root)
  local cls = rawget(root, "_class")
  if cls.kind ~= "module" then error("pthcv: " .. path .. ": the root object is not a module", 0) end
  if not ctx:method(cls, "forward") then error("pthcv: " .. path .. ": " .. cls.name .. " has no forward method", 0) end
  return root, ctx
end

-- Every message about the archive's content names the archive first.
local function open(path, opts)
  if type(path) ~= "string" then error("pthcv.jit.load: expected a file path, got " .. type(path), 3) end
  local ok, root, ctx = pcall(open_archive, path, opts)
  if ok then return root, ctx end
  local msg = tostring(root):gsub("^pthcv: ", "")
  if msg:sub(1, #path) ~= path then msg = path .. ": " .. msg end
  error("pthcv: " .. msg, 0)
end

-- pthcv.jit.load(path [, opts]) -> ScriptModule
function M.load(path, opts)
  local root, ctx = open(path, opts)
  local p = ctx.problems
  if #p > 0 then
    local lines = {}
    for i = 1, math.min(#p, 10) do lines[i] = path .. ": " .. p[i].loc .. ": " .. p[i].msg end
    if #p > 10 then lines[#lines + 1] = "(" .. (#p - 10) .. " more; pthcv inspect --ops lists them all)" end
    error("pthcv: " .. table.concat(lines, "\n  "), 0)
  end
  return root
end

-- pthcv.jit.ops_report(path [, opts]) -> {ops = {{name, count, supported, loc}},
-- problems = {{loc, msg}}, deferred = {{loc, msg}}, missing = {names}}:
-- every operator the code reachable from forward calls, in first-use
-- order, what pthcv lacks, and the problems in branches of torch's
-- functional library (raised only if such a branch runs).
function M.ops_report(path, opts)
  local _, ctx = open(path, opts)
  local report = { path = path, ops = {}, problems = ctx.problems, deferred = ctx.deferred, missing = {} }
  for _, name in ipairs(ctx.op_order) do
    local u = ctx.ops_used[name]
    report.ops[#report.ops + 1] = { name = name, count = u.count, supported = u.supported, loc = u.loc }
    if not u.supported then report.missing[#report.missing + 1] = name end
  end
  return report
end

-- pthcv.jit.to_nn(path [, opts]) -> a pthcv.nn module (nn.from_module of
-- the archive's tree, hyper-parameters from its code): pthcv's own layers
-- and zoo classes instead of the archive's forward. Every class must be
-- one pthcv.nn or pthcv.models knows (opts.classes adds more); the code is
-- still compiled and checked as by load.
function M.to_nn(path, opts)
  local _, ctx = open(path, opts)
  local describe = require "pthcv.jit.describe"
  return require("pthcv.nn.from_module").convert(ctx.archive.root, {
    classes = opts and opts.classes,
    settings = function(obj)
      local inst = ctx.instances[obj]
      return inst and describe.nn_fields(inst)
    end,
  })
end

-- Every operator name pthcv.jit knows, sorted.
function M.supported_ops() return ops.names() end

return M
