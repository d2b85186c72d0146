-- pthcv.nn.plan and ops that write into their operand (TorchScript's
-- relu_, hardtanh_, add_, ...: pthcv.jit runs each as one dispatched op,
-- "F.relu_", "Tensor.add_"): the plan records such an op as the op on the
-- value it overwrites and fuses it into the convolution that made that
-- value, but never when something else reads the value it overwrote (the
-- old value, or a view sharing its bytes).
local J = require "jit_support"
local pthcv = require "pthcv"
local plan = require "pthcv.nn.plan"
local ops = require "pthcv.jit.ops"

local F = pthcv.F
local relu_ = ops.get("aten::relu_").fn
local hardtanh_ = ops.get("aten::hardtanh_").fn
local add_ = ops.get("aten::add_").fn

local function max_diff(a, b)
  local x, y = a:contiguous():data(), b:contiguous():data()
  local d = 0
  for i = 0, a.numel - 1 do d = math.max(d, math.abs(x[i] - y[i])) end
  return d
end

-- fn's results unplanned, then recorded, planned and planned again: the
-- planned ones within 1e-5 of the unplanned (of their largest magnitude);
-- returns the plan.
local function check_planned(fn, ...)
  plan.enabled = false
  local ref = { fn(...) }
  plan.enabled = true
  local wrapped, owner = plan.wrap(fn, "spec")
  for k = 1, 3 do
    local got = { wrapped(...) }
    for j = 1, #ref do
      local md, mx = J.diff(got[j], ref[j])
      assert.is_true(md <= 1e-5 * mx, "call " .. k .. ", result " .. j .. ": " .. md .. " of " .. mx)
    end
  end
  local info = plan.info(owner)
  assert.is_nil(info.off)
  assert.are.equal(1, #info.plans)
  assert.is_nil(info.plans[1].refused)
  return info.plans[1].plan
end

local function labels(p)
  local l = {}
  for _, st in ipairs(p.steps) do l[#l + 1] = st.label end
  return table.concat(l, " ; ")
end

describe("pthcv.nn.plan with ops writing in place", function()
  pthcv.manual_seed(16)
  local x = pthcv.randn(1, 4, 9, 7)
  local w1, b1 = pthcv.randn(6, 4, 3, 3), pthcv.randn(6)
  local w2, b2 = pthcv.randn(6, 6, 3, 3), pthcv.randn(6)
  local mean, var = pthcv.randn(6), pthcv.rand(6) + 0.5
  local gamma, beta = pthcv.randn(6), pthcv.randn(6)

  after_each(function() plan.enabled = true end)

  it("fuses batch norm, an in-place residual add and an in-place relu into the convolution", function()
    local function block(t)
      local y = F.relu(F.conv2d(t, w1, b1, 1, 1))
      local z = F.batch_norm(F.conv2d(y, w2, b2, 1, 1), mean, var, gamma, beta, false, 0, 1e-5)
      add_(z, y, 1)       -- out += identity
      relu_(z)            -- the result is z itself
      return z
    end
    local p = check_planned(block, x)
    assert.are.equal(2, #p.steps)
    assert.is_truthy(labels(p):find("conv2d%+batch_norm%+add%+relu"), labels(p))
    assert.are.equal(1, p.stats.fused.add)
  end)

  it("does not fuse an in-place op over a value something else reads", function()
    local function two_readers(t)
      local y = F.conv2d(t, w1, b1, 1, 1)
      local before = y * 2          -- reads y before it is overwritten
      local view = y:view(1, 6, 63) -- shares y's bytes: sees the relu
      hardtanh_(y, -0.5, 0.5)
      return y, before, view + 0
    end
    local p = check_planned(two_readers, x)
    -- the convolution's value has three readers: nothing joins it
    assert.are.equal(0, #p.steps, labels(p))
    -- (with no other reader the in-place hardtanh_ joins it)
    local q = check_planned(function(t)
      local y = F.conv2d(t, w1, b1, 1, 1)
      hardtanh_(y, -0.5, 0.5)
      return y
    end, x)
    assert.are.equal("conv2d+clamp", labels(q))
    -- and the in-place op's result is the tensor given, after it as before
    local y, before, view = plan.wrap(two_readers)(x)
    assert.is_true(max_diff(view:view(1, 6, 9, 7), y) == 0)
    assert.is_true(max_diff(before, F.conv2d(x, w1, b1, 1, 1) * 2) <= 1e-6)
  end)

  it("keeps an in-place add that writes into the residual (not the convolution's value) out of the step", function()
    local function into_identity(t)
      local y = F.conv2d(t, w1, b1, 1, 1)
      local id = F.relu(y)
      local z = F.conv2d(id, w2, b2, 1, 1)
      add_(id, z, 1)    -- writes into id: the convolution's z is read, not overwritten
      return id
    end
    local p = check_planned(into_identity, x)
    for _, st in ipairs(p.steps) do assert.is_falsy(st.label:find("add"), labels(p)) end
  end)

  local dir = os.getenv("PTHCV_JIT")
  local manifest = dir and dir ~= "" and J.manifest(dir) or nil
  it("plans a scripted resnet18 (relu_, add_) into fused steps with torch's outputs", function()
    if not manifest then
      pending("build/jit (make_jit_fixtures.py) was not written: torch and torchvision are not installed, or PTHCV_JIT=skip")
      return
    end
    local entry
    for _, e in ipairs(manifest.archives) do if e.file == "resnet18.script.pt" then entry = e end end
    local jit = require "pthcv.jit"
    local m = jit.load(dir .. "/" .. entry.file):eval()
    for _ = 1, 3 do J.check_cases(pthcv, dir, entry, m, 1e-4) end
    local info = plan.info(m)
    assert.are.equal(1, #info.plans)
    local p = info.plans[1].plan
    assert.is_false(p.run_ops)
    -- every convolution one step; the 8 residual adds (add_) and the relu_ after them fused
    assert.are.equal(20, p.stats.steps.conv)
    assert.are.equal(8, p.stats.fused.add)
    assert.are.equal(20, p.stats.fused.batch_norm)
    -- within 1e-5 of the ops run as written, and the same bits at 1, 2 and 3 threads
    local args = J.case_args(pthcv, dir, entry.cases[1])
    local n = #entry.cases[1].args
    local threads = pthcv.get_num_threads()
    pthcv.set_num_threads(1)
    local planned = m(unpack(args, 1, n))
    plan.enabled = false
    local written = m(unpack(args, 1, n))
    plan.enabled = true
    local md, mx = J.diff(planned, written)
    assert.is_true(md <= 1e-5 * mx, tostring(md))
    for _, t in ipairs { 2, 3 } do
      pthcv.set_num_threads(t)
      assert.are.equal(0, max_diff(m(unpack(args, 1, n)), planned), t .. " threads")
    end
    pthcv.set_num_threads(threads)
  end)

  -- The step's own value moves into the tensor the in-place op overwrites:
  -- a reference left behind would hold the step's bytes until the next
  -- garbage collection, and every pass would take fresh pages (page
  -- faults) for a value the size of the activation: 1024 pages here.
  it("hands the step's bytes to the overwritten tensor, with no reference left for the collector", function()
    if os.getenv("PTHCV_SANITIZE") == "1" then
      pending("under ASan: its allocator quarantines freed memory, so every allocation takes fresh pages")
      return
    end
    local stat = io.open("/proc/self/stat")
    if not stat then pending("no /proc/self/stat: the page faults are not counted here"); return end
    stat:close()
    local function faults()
      local f = io.open("/proc/self/stat"); local s = f:read("*a"); f:close()
      return tonumber(s:match("^%d+ %b() %S+ " .. ("%S+ "):rep(6) .. "(%d+)"))
    end
    local big = pthcv.randn(1, 4, 128, 128)
    local wb, bb = pthcv.randn(64, 4, 3, 3), pthcv.randn(64)
    local function fn(v) return relu_(F.conv2d(v, wb, bb, 1, 1)) end   -- 4 MB out
    local wrapped = plan.wrap(fn, "spec")
    local release = require "pthcv.nn.release"
    for _ = 1, 3 do release(wrapped(big)) end   -- recorded, then planned
    collectgarbage(); collectgarbage()
    collectgarbage("stop")
    local f0 = faults()
    for _ = 1, 6 do
      release(wrapped(big))
    end
    local n = faults() - f0
    collectgarbage("restart")
    assert.is_true(n < 1024, n .. " page faults over 6 planned passes")
  end)
end)
