-- pthcv.jit on the committed TorchScript archives (spec/fixtures/jit,
-- written by spec/fixtures/make_jit_fixtures.py --committed): torch's
-- outputs reproduced, control flow on shapes and flags, dict outputs,
-- what is refused and why, the limits, the module API and the fusion.
local support = require "support"
local J = require "jit_support"
local pthcv = require "pthcv"
local jit = require "pthcv.jit"

local dir = support.root .. "/spec/fixtures/jit"
local manifest = J.manifest(dir)

local function load(name, opts) return jit.load(dir .. "/" .. name, opts) end

local function fails(fn, pattern)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error")
  assert.is_truthy(tostring(err):find(pattern), "message: " .. tostring(err) .. "\nexpected: " .. pattern)
end

describe("pthcv.jit on the committed archives", function()
  it("has the fixtures", function()
    assert.is_not_nil(manifest, "spec/fixtures/jit/manifest.json")
    assert.are.equal(6, #manifest.archives)
    assert.are.equal(8, #manifest.refused)
  end)

  for _, entry in ipairs(manifest and manifest.archives or {}) do
    it("reproduces torch's outputs of " .. entry.file, function()
      J.check_cases(pthcv, dir, entry, load(entry.file):eval(), 1e-4)
    end)
    it("reproduces them with the closure compiler alone (codegen = false): " .. entry.file, function()
      J.check_cases(pthcv, dir, entry, load(entry.file, { codegen = false }):eval(), 1e-4)
    end)
  end

  it("runs control flow on shapes, flags and loop counts", function()
    local m = load("control_flow.script.pt"):eval()
    local x = pthcv.randn(1, 4, 9, 9)
    local d = m(x, 2, true)
    assert.are.same({ 3, 2, 3 }, d.count:totable())
    local d1 = m(x, 0, false)
    assert.are.same({ 1, 0, 3 }, d1.count:totable())
    assert.are.same({ "logits", "total", "mean", "count" }, d:keys())
    -- the flag negates the logits
    local d2 = m(x, 2, false)
    local a, b = d.logits:totable()[1], d2.logits:totable()[1]
    for i = 1, 3 do assert.are.equal(a[i], -b[i]) end
  end)

  it("raises the archive's exceptions naming the archive, file and line", function()
    local m = load("control_flow.script.pt"):eval()
    fails(function() m(pthcv.randn(1, 4, 9, 9), -1) end,
          "control_flow%.script%.pt: code/__torch__%.py:%d+: ValueError: repeat must be >= 0, got %-1")
    fails(function() m(pthcv.randn(1, 3, 9, 9)) end, "control_flow%.script%.pt: code/__torch__/[%w_/]+%.py:%d+: conv2d: expected")
    fails(function() m(pthcv.randn(1, 4, 9, 9), 1, true, 3) end, "takes 3 arguments, 4 given")
  end)

  it("refuses training mode rather than guess", function()
    local m = load("tiny_cnn.script.pt")
    m:train()
    fails(function() m(pthcv.randn(1, 3, 9, 9)) end, "batch_norm in training mode is not supported")
    m:eval()
    assert.are.same({ 1, 10 }, m(pthcv.randn(1, 3, 9, 9)).shape)
  end)

  it("refuses what it cannot run before computing anything, naming file and line", function()
    local cases = {
      bad_op = "bad_op%.pt: code/__torch__%.py:%d+: aten::flatten_like_nothing is not supported",
      bad_os = "bad_os%.pt: code/__torch__%.py:%d+: refers to Python's 'os': refused",
      bad_eval = "bad_eval%.pt: code/__torch__%.py:%d+: refers to Python's 'eval': refused",
      bad_syntax = "bad_syntax%.pt: code/__torch__%.py:%d+: a bracket opened here is never closed",
      bad_with = "bad_with%.pt: code/__torch__%.py:%d+: with statements are not supported",
      bad_lambda = "bad_lambda%.pt: code/__torch__%.py:%d+: lambda expressions are not supported",
      bad_import = "bad_import%.pt: code/__torch__%.py:%d+: imports inside a function are not supported",
      bad_missing_class = "class __torch__%.torch%.nn%.modules%.container%.Sequential of stem has no source in the archive",
    }
    assert.are.equal(8, #manifest.refused)
    for _, r in ipairs(manifest.refused) do
      local name = r.file:gsub("%.pt$", "")
      fails(function() load(r.file) end, assert(cases[name], name))
    end
    fails(function() jit.load(support.root .. "/examples/tiny_resnet.pth") end, "not a TorchScript archive")
    fails(function() jit.load(dir .. "/no_such_file.pt") end, "no_such_file")
  end)

  it("lists the operators an archive uses and what it lacks", function()
    local r = jit.ops_report(dir .. "/bad_op.pt")
    assert.are.same({ "aten::flatten_like_nothing" }, r.missing)
    local names = {}
    for _, op in ipairs(r.ops) do names[op.name] = op end
    assert.is_true(names["aten::conv2d"].supported)
    assert.is_true(names["aten::batch_norm"].count >= 1)
    assert.is_truthy(names["aten::flatten_like_nothing"].loc:find("^code/__torch__%.py:%d+$"))
    -- torch's own functional library: problems in branches deferred, listed
    r = jit.ops_report(dir .. "/tiny_seg.script.pt")
    assert.are.equal(0, #r.problems)
    assert.is_true(#r.deferred > 0)
    assert.is_truthy(r.deferred[1].loc:find("^code/__torch__/torch/nn/functional"))
  end)

  it("bounds loops and call depth, naming the limit", function()
    local m = load("control_flow.script.pt", { max_iterations = 2 }):eval()
    fails(function() m(pthcv.randn(1, 4, 9, 9), 5) end, "a loop ran more than 2 iterations %(max_iterations%)")
    m = load("tiny_cnn.script.pt", { max_call_depth = 3 }):eval()
    fails(function() m(pthcv.randn(1, 3, 9, 9)) end, "calls nested deeper than 3 %(max_call_depth%)")
    fails(function() load("tiny_cnn.script.pt", { max_nesting = 2 }) end, "nested deeper than 2 %(max_nesting%)")
    fails(function() load("tiny_cnn.script.pt", { max_source = 100 }) end, "more than the limit of 100 %(max_source%)")
  end)

  it("behaves as a pthcv.nn module", function()
    local m = load("tiny_cnn.trace.pt")
    assert.is_true(pthcv.nn.Module.is_module(m))
    assert.are.equal(m.block.conv1, m.block.conv1)
    assert.are.same({ 8, 8, 3, 3 }, m.block.conv1.weight.shape)
    local names = {}
    for _, kv in ipairs(m:named_parameters()) do names[#names + 1] = kv[1] end
    assert.are.equal("stem.0.weight", names[1])
    assert.is_truthy(m:state_dict()["block.bn1.running_var"])
    local text = tostring(m)
    assert.is_truthy(text:find("%(conv1%): Conv2d%(8, 8, kernel_size=%(3, 3%), stride=%(1, 1%), padding=%(1, 1%), bias=False%)"))
    assert.is_truthy(text:find("BatchNorm2d%(8, eps=1e%-05, momentum=0%.1, affine=True, track_running_stats=True%)"))
    local s = tostring(load("tiny_cnn.script.pt"))
    assert.is_truthy(s:find("%(pool%): MaxPool2d%(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=True%)"))
    assert.is_truthy(m.code:find("^def forward%(self"))
    local g = m:graph()
    assert.are.same({ "stem.0", "aten::_convolution" }, { g[1].path, g[1].op })
    local ops = {}
    for _, op in ipairs(g) do ops[#ops + 1] = op.op end
    assert.is_truthy(table.concat(ops, " "):find("aten::cat .*aten::linear"))
    assert.is_truthy(g[1].loc:find("^code/__torch__/.+%.py:%d+$"))
  end)

  it("keeps float16 weights with module:half() and stays close to torch", function()
    local entry
    for _, e in ipairs(manifest.archives) do if e.file == "tiny_cnn.script.pt" then entry = e end end
    local m = load("tiny_cnn.script.pt"):eval():half()
    assert.are.equal("float16", m.block.conv1.weight.dtype)
    J.check_cases(pthcv, dir, entry, m, 2e-2)
  end)

  it("has pthcv.nn.plan fold BatchNorm, activations and residuals into packed convolutions", function()
    local plan = require "pthcv.nn.plan"
    local m = load("tiny_cnn.trace.pt"):eval()
    local x = pthcv.randn(1, 3, 17, 17)
    local y1 = m(x)   -- recorded, the ops as written
    local y2 = m(x)   -- planned
    local p = plan.info(m).plans[1].plan
    -- 5 convolutions and 1 linear layer; 4 BatchNorms folded, the residual and activations in the stores
    assert.are.equal(4, p.stats.fused.batch_norm)
    assert.are.equal(1, p.stats.fused.add)
    assert.is_true(p.stats.fused.activation >= 4)
    m(x)
    local packs = support.live_packs()
    assert.are.same(y2:totable(), m(x):totable())
    assert.are.equal(packs, support.live_packs(), "a later call packs nothing")
    local md, mx = J.diff(y2, y1)
    assert.is_true(md <= 1e-5 * mx + 1e-6)
  end)
end)
