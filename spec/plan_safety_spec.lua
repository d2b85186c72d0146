-- spec/plan_safety_spec.lua: what pthcv.nn.plan does when a pass cannot
-- follow its plan, or must not have one: every value the forward sees or
-- returns is the one the forward as written computes (here: the same ops
-- run unplanned, or pthcv.F by hand), and what cannot be proven is not
-- planned.
require "support"
local pthcv = require "pthcv"
local D = require "pthcv.tensor.dispatch"
local nn, F = pthcv.nn, pthcv.F
local P = nn.plan
local counters = P.counters

local function bytes(t) return t:contiguous():bytes() end
local function max_abs(a, b)
  local m = 0
  for _, v in ipairs((a - b):contiguous():view(-1):totable()) do m = math.max(m, math.abs(v)) end
  return m
end

-- conv (bias), BatchNorm with random statistics: y = bn(conv(x)) by pthcv.F
local function conv_bn(c, seed)
  local conv, bn = nn.Conv2d(c, c, 3, { padding = 1 }), nn.BatchNorm2d(c)
  conv.weight = pthcv.randn(conv.weight.shape, { seed = seed }) * 0.3
  conv.bias = pthcv.randn({ c }, { seed = seed + 1 })
  bn.running_mean = pthcv.randn({ c }, { seed = seed + 2 }) * 0.1
  bn.running_var = pthcv.rand({ c }, { seed = seed + 3 }) + 0.5
  bn.weight = pthcv.rand({ c }, { seed = seed + 4 }) + 0.5
  bn.bias = pthcv.randn({ c }, { seed = seed + 5 })
  local function ref(x)
    return F.batch_norm(F.conv2d(x, conv.weight, conv.bias, 1, 1), bn.running_mean, bn.running_var, bn.weight, bn.bias)
  end
  return conv, bn, ref
end

local x = pthcv.randn({ 1, 4, 6, 5 }, { seed = 11 })

describe("a pass that leaves its plan", function()
  it("takes the other branch of Lua control flow with the values of the forward as written", function()
    local Alt = nn.class("Alt")
    function Alt:__init() self.conv, self.bn, self.ref = conv_bn(4, 1); self.calls = 0 end
    function Alt:forward(t)
      self.calls = self.calls + 1
      local y = self.bn(self.conv(t))
      if self.calls % 3 == 0 then return F.relu(y) end   -- a counter the recording cannot see
      return F.sigmoid(y)
    end
    local m = Alt():eval()
    local pre = m.ref(x)
    local d0 = counters.deviations
    for i = 1, 9 do
      local y = m(x)
      local want = i % 3 == 0 and F.relu(pre) or F.sigmoid(pre)
      assert.is_true(max_abs(y, want) < 1e-5, "call " .. i)
    end
    assert.are.equal(3, counters.deviations - d0)
    assert.matches("left its plan 3 times.*F.relu where F.sigmoid", P.info(m).off)
    local before = counters.plain
    m(x)
    assert.are.equal(before, counters.plain)   -- no longer planned
  end)

  it("returns a value the plan fused away, computed", function()
    local Ret = nn.class("Ret")
    function Ret:__init() self.conv, self.bn, self.ref = conv_bn(4, 20) end
    function Ret:forward(t)
      local pre = self.bn(self.conv(t))
      local post = F.relu(pre)
      if self.give_pre then return pre end
      return post
    end
    local m = Ret():eval()
    m(x); m(x)
    assert.are.equal(1, P.info(m).plans[1].stats.steps.conv)
    m.give_pre = true
    local y = m(x)
    assert.is_true(max_abs(y, m.ref(x)) < 1e-5)
  end)

  it("computes a placeholder a later op reads, then runs as written", function()
    local Late = nn.class("Late")
    function Late:__init() self.conv, self.bn, self.ref = conv_bn(4, 30) end
    function Late:forward(t)
      local pre = self.bn(self.conv(t))
      local y = F.relu(pre)
      if self.twice then y = y + F.sigmoid(pre) end   -- pre used again: not what was recorded
      return y
    end
    local m = Late():eval()
    m(x); m(x)
    m.twice = true
    local pre = m.ref(x)
    assert.is_true(max_abs(m(x), F.relu(pre) + F.sigmoid(pre)) < 1e-5)
  end)

  it("leaves the plan where a value has another shape than recorded (as after an op like nonzero)", function()
    local Crop = nn.class("Crop")
    function Crop:__init() self.conv, self.bn, self.ref = conv_bn(4, 35) end
    local rows = 6   -- what the op decides, as nonzero from values: not in its record
    local function crop_impl(_, t) return F.narrow(t, 2, 0, rows) end
    function Crop:forward(t)
      local c = D.call("spec.crop", nil, crop_impl, t)
      return F.relu(self.bn(self.conv(c)))
    end
    local m = Crop():eval()
    m(x); m(x)
    local d0 = P.counters.deviations
    rows = 4   -- the same ops, records and operands; another shape
    local want = F.relu(m.ref(F.narrow(x, 2, 0, 4)))
    local y = m(x)
    assert.are.same(want.shape, y.shape)
    assert.is_true(max_abs(y, want) < 1e-5)
    assert.are.equal(d0 + 1, P.counters.deviations)
  end)

  it("keeps an error of the forward and plans the next call", function()
    local Err = nn.class("Err")
    function Err:__init() self.conv, self.bn, self.ref = conv_bn(4, 40) end
    function Err:forward(t)
      local y = F.relu(self.bn(self.conv(t)))
      if self.fail then return F.cat({ y, pthcv.zeros({ 1, 4, 2, 2 }) }, 1) end
      return y
    end
    local m = Err():eval()
    m(x); m(x)
    m.fail = true
    local ok, err = pcall(m, x)
    assert.is_false(ok)
    assert.matches("cat", err)
    m.fail = false
    assert.is_true(max_abs(m(x), F.relu(m.ref(x))) < 1e-5)
  end)
end)

describe("what is not planned", function()
  it("a forward that reads values of the pass in Lua", function()
    local Rd = nn.class("Rd")
    function Rd:__init() self.conv, self.bn, self.ref = conv_bn(4, 50) end
    function Rd:forward(t)
      local y = self.bn(self.conv(t))
      if y:max() > 100 then return F.sigmoid(y) end
      return F.relu(y)
    end
    local m = Rd():eval()
    m(x)
    local p = P.info(m).plans[1]
    assert.matches("Tensor.max reads the elements of a value of the pass in Lua", p.refused)
    assert.is_true(max_abs(m(x), F.relu(m.ref(x))) < 1e-5)
  end)

  it("a forward that makes tensors by direct C calls", function()
    local core = require "pthcv.core"
    local Tensor = require "pthcv.tensor"
    local Born = nn.class("Born")
    function Born:forward(t) return F.relu(Tensor.wrap(core.C.pthcv_tensor_contiguous(t.ct), true)) end
    local m = Born():eval()
    m(x)
    assert.matches("direct C call", P.info(m).plans[1].refused)
  end)

  it("modules with plan(false), every module with plan.enabled = false, a pass with a hook set", function()
    local m = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Conv2d(4, 4, 1))
    m:eval():plan(false)
    m(x); m(x)
    assert.are.equal(0, #P.info(m).plans)
    m:plan(true)
    P.enabled = false
    m(x); m(x)
    P.enabled = true
    assert.are.equal(0, #P.info(m).plans)
    D.hook = function(op, rec, impl, ...) return impl(rec, ...) end
    m(x)
    D.hook = nil
    assert.are.equal(0, #P.info(m).plans)
    m(x)
    assert.are.equal(1, #P.info(m).plans)
  end)
end)

describe("placeholders and packs", function()
  it("a fused-away value kept past the pass is an error naming it, not a wrong value", function()
    local Keep = nn.class("Keep")
    function Keep:__init() self.conv, self.bn = conv_bn(4, 60) end
    function Keep:forward(t)
      local y = self.conv(t)
      self.kept = y
      return F.relu(self.bn(y))
    end
    local m = Keep():eval()
    m(x)
    assert.is_true(max_abs(m.kept, F.conv2d(x, m.conv.weight, m.conv.bias, 1, 1)) < 1e-6)
    m(x)
    local ok, err = pcall(function() return m.kept:sum() end)
    assert.is_false(ok)
    assert.matches("a value pthcv.nn.plan fused away: the result of F.conv2d_packed in conv", err)
  end)

  it("frees the packs a fused step replaces and makes them again for a pass without the plan", function()
    local Net = nn.class("Net")
    function Net:__init() self.conv, self.bn, self.ref = conv_bn(4, 70) end
    function Net:forward(t) return F.relu(self.bn(self.conv(t))) end
    local m = Net():eval()
    local pk = m.conv._pack
    assert.is_true(F.pack_bytes(pk) > 0)
    m(x)
    assert.is_true(F.pack_bytes(pk) > 0)   -- recorded: planned at the next call
    local planned = m(x)
    assert.are.equal(0, F.pack_bytes(pk))
    m:plan(false)
    local plain = m(x)
    assert.is_true(F.pack_bytes(pk) > 0)
    assert.is_true(max_abs(planned, plain) < 1e-5)
    assert.is_true(max_abs(plain, F.relu(m.ref(x))) < 1e-6)
  end)

  it("exports a planned model to ONNX as its forward is written, its freed packs made again", function()
    local Net = nn.class("Net")
    function Net:__init() self.conv, self.bn, self.ref = conv_bn(4, 90) end
    function Net:forward(t) return F.relu(self.bn(self.conv(t)) + t) end
    local m = Net():eval()
    m(x); m(x)
    assert.are.equal(0, F.pack_bytes(m.conv._pack))
    local path = require("support").tmpname(".onnx")
    m:export_onnx(path, { input = x.shape })
    local onnx = require("support").read_file(path)
    os.remove(path)
    assert.is_truthy(onnx:find("BatchNormalization", 1, true) or onnx:find("Conv", 1, true))
    assert.is_true(max_abs(m(x), F.relu(m.ref(x) + x)) < 1e-5)
  end)

  it("plans a plain function's passes with plan.wrap, as a module's", function()
    local conv, bn, ref = conv_bn(4, 80)
    local w, b = conv.weight, conv.bias
    local f, owner = P.wrap(function(t)
      local y = F.conv2d(t, w, b, 1, 1)
      y = F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias)
      return F.relu(y + t)
    end)
    local want = F.relu(ref(x) + x)
    assert.is_true(max_abs(f(x), want) < 1e-5)
    local planned = f(x)
    assert.is_true(max_abs(planned, want) < 1e-5)
    local s = P.info(owner).plans[1].stats
    assert.are.same({ conv = 1 }, s.steps)
    assert.are.same({ 1, 1, 1 }, { s.fused.batch_norm, s.fused.add, s.fused.activation })
    assert.are.equal(1, s.after.kernels)
    assert.matches("conv2d%+batch_norm%+add%+relu", P.describe(owner))
  end)

  it("gives the same bits on every thread count", function()
    local m = nn.Sequential(nn.Conv2d(4, 8, 3, { padding = 1 }), nn.BatchNorm2d(8), nn.SiLU(),
                            nn.Conv2d(8, 4, 1))
    m:eval()
    local big = pthcv.randn({ 2, 4, 33, 17 }, { seed = 3 })
    m(big)
    local saved = pthcv.get_num_threads()
    local outs = {}
    for _, n in ipairs { 1, 3 } do
      pthcv.set_num_threads(n)
      outs[#outs + 1] = bytes(m(big))
    end
    pthcv.set_num_threads(saved)
    assert.are.equal(outs[1], outs[2])
  end)
end)

describe("eval() and the plan", function()
  local Net = nn.class("EvalNet")
  function Net:__init() self.conv, self.bn, self.ref = conv_bn(4, 100) end
  function Net:forward(t) return F.relu(self.bn(self.conv(t)) + t) end
  local function state(m)
    local p = P.info(m).plans[1]
    return p == nil and "none" or p.recorded and "recorded" or p.refused and "refused" or "planned"
  end
  -- per call: the plan's state after it, and whether the pass left a plan
  local function calls(m, n, eval_before)
    local l = {}
    for i = 1, n do
      if eval_before and eval_before[i] then m:eval() end
      local d = counters.deviations
      local y = m(x)
      assert.is_true(max_abs(y, F.relu(m.ref(x) + x)) < 1e-5, "call " .. i)
      l[i] = state(m) .. (counters.deviations > d and " (left its plan)" or "")
    end
    return l
  end

  it("records the first call after eval() and plans the second, however often eval() was called", function()
    local m = Net()
    m:eval(); m:eval(); m:eval()
    assert.are.same({ "recorded", "planned", "planned" }, calls(m, 3))
  end)

  it("records again at the first call after another eval(), leaving no plan (it would hold the old packs)", function()
    -- eval() after calls packs the weights again: the plan of the old packs went
    -- with them, so the next pass is recorded rather than run under a stale plan
    local m = Net():eval()
    assert.are.same({ "recorded", "recorded", "planned", "recorded", "planned", "planned" },
                    calls(m, 6, { [2] = true, [4] = true }))
    -- four eval()s between calls: no pass left a plan, so planning stays on
    local n = Net():eval()
    calls(n, 8, { [2] = true, [3] = true, [5] = true, [7] = true })
    assert.is_nil(P.info(n).off)
  end)

  it("plans weights changed by hand and eval() with the new weights", function()
    local m = Net():eval()
    calls(m, 2)
    m.conv.weight = m.conv.weight * -0.5   -- by hand: docs/nn.md asks for eval() after it
    m:eval()
    local got = calls(m, 2)
    assert.are.same({ "recorded", "planned" }, got)
    local unplanned = F.relu(m.ref(x) + x)
    assert.is_true(max_abs(m(x), unplanned) < 1e-5)
  end)
end)

describe("values that die in the pass", function()
  -- conv+bn (one step), relu, a second conv: a's bytes are freed after the
  -- relu, the relu's after the second conv reads them
  local function two_convs(seed)
    local Net = nn.class("TwoConvs")
    function Net:__init()
      self.conv, self.bn, self.ref = conv_bn(4, seed)
      self.conv2 = nn.Conv2d(4, 4, 1)
      self.conv2.weight = pthcv.randn({ 4, 4, 1, 1 }, { seed = seed + 9 })
    end
    function Net:reference(t) return F.conv2d(F.relu(self.ref(t)), self.conv2.weight, self.conv2.bias) end
    return Net
  end

  it("are freed after the op that reads them last; their shapes stay readable, their values name why they are gone", function()
    local Net = two_convs(110)
    local seen = setmetatable({}, { __mode = "v" })   -- not holding them: they die in the pass
    function Net:forward(t)
      local a = F.relu(self.bn(self.conv(t)))
      seen[1] = a
      local y = self.conv2(a)
      assert(#a.shape == 4 and a.shape[2] == 4)   -- read after its last op: the layout is still there
      return y
    end
    local m = Net():eval()
    m(x)
    local f0, b0 = counters.freed, counters.freed_bytes
    local y = m(x)
    local a = seen[1]
    assert.is_true(max_abs(y, m:reference(x)) < 1e-5)
    assert.are.equal(1, counters.freed - f0)
    assert.are.equal(a.nbytes, counters.freed_bytes - b0)
    local ok, err = pcall(function() return a:totable() end)
    assert.is_false(ok)
    assert.matches("freed after the last op reading it: the result of F.relu", err)
  end)

  it("are kept when Lua still holds them after the pass", function()
    local Net = two_convs(120)
    function Net:forward(t)
      self.kept = F.relu(self.bn(self.conv(t)))
      return self.conv2(self.kept)
    end
    local m = Net():eval()
    m(x)
    local f0 = counters.freed
    local y = m(x)
    assert.are.equal(counters.freed, f0)
    assert.is_true(max_abs(y, m:reference(x)) < 1e-5)
    assert.is_true(max_abs(m.kept, F.relu(m.ref(x))) < 1e-5)
  end)

  it("are computed again when a pass leaves its plan and reads one", function()
    local Net = two_convs(130)
    function Net:forward(t)
      self.calls = (self.calls or 0) + 1
      local a = F.relu(self.bn(self.conv(t)))
      local y = self.conv2(a)
      if self.calls % 3 == 0 then return y + a end   -- a read after the op that read it last when recorded
      return y
    end
    local m = Net():eval()
    local ya = m:reference(x)
    local yb = ya + F.relu(m.ref(x))
    local d0 = counters.deviations
    for i = 1, 5 do
      local y = m(x)
      assert.is_true(max_abs(y, i % 3 == 0 and yb or ya) < 1e-5, "call " .. i)
    end
    assert.are.equal(1, counters.deviations - d0)
  end)
end)
