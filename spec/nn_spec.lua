-- spec/nn_spec.lua: pthcv.nn and pthcv.F against torch 1.13 (the committed
-- cases of spec/fixtures/make_nn_fixtures.py), F's packed-weight cache
-- (issue 11.2: fused activations with other bounds on the same weights,
-- sizes as tables), and the module machinery: containers, state_dict
-- names, load_state_dict errors, print, error context.
local support = require "support"
local pthcv = require "pthcv"
local json = require "dkjson"

local nn, F = pthcv.nn, pthcv.F
local dir = support.root .. "/spec/fixtures/nn"
local T = pthcv.load(dir .. "/tensors.pth")
local cases = json.decode((assert(support.read_file(dir .. "/cases.json"))), 1, json.null)

local function max_abs(t) return math.max(t:max(), -t:min()) end

-- |got - want| <= 1e-5 * max(1, max|want|), same shape
local function assert_close(got, want, what)
  assert.is_true(pthcv.is_tensor(got), what .. ": not a tensor")
  assert.are.same(want.shape, got.shape, what .. ": shape")
  local diff = max_abs(got:float() - want)
  local tol = 1e-5 * math.max(1, max_abs(want))
  assert.is_true(diff <= tol, string.format("%s: max |diff| %g > %g", what, diff, tol))
end

local function resolve(a)
  if type(a) == "string" and a:sub(1, 1) == "$" then return assert(T[a:sub(2)], a) end
  if type(a) == "table" then
    local out = {}
    for i, v in ipairs(a) do out[i] = resolve(v) end
    return out
  end
  return a
end

-- Lua arguments: the positional ones, then the keywords as a trailing table
-- (when there are any).
local function call_args(args, kwargs)
  local out = {}
  for i, a in ipairs(args) do out[i] = resolve(a) end
  if next(kwargs) ~= nil then
    local kw = {}
    for k, v in pairs(kwargs) do kw[k] = resolve(v) end
    out[#out + 1] = kw
  end
  return out, #out
end

local function build(spec)
  local cls = assert(nn[spec[1]], "no nn." .. spec[1])
  local a, n = call_args(spec[2], spec[3])
  return cls(unpack(a, 1, n))
end

-- torch dims in F are 0-based; the case lists hold them as torch wrote them
describe("pthcv.F against torch", function()
  for _, c in ipairs(cases) do
    if c.kind == "F" then
      it(c.name, function()
        local fn = assert(F[c.fn], "no F." .. c.fn)
        local a, n = call_args(c.args, c.kwargs)
        local out = fn(unpack(a, 1, n))
        if c.outputs ~= json.null and c.outputs ~= nil then
          assert.are.equal(c.outputs, #out)
          for i = 1, c.outputs do assert_close(out[i], T[c.name .. ".out." .. (i - 1)], c.name .. "[" .. i .. "]") end
        else
          assert_close(out, T[c.name .. ".out"], c.name)
        end
      end)
    end
  end
end)

-- F.conv2d / F.linear with the case's fused activation; sizes as tables
-- ({2, 2}), or as ints when as_ints
local function run_fused(c, as_ints)
  local a = resolve(c.args)
  local act = { kind = c.act.kind, alpha = c.act.alpha, beta = c.act.beta }
  if c.fn == "linear" then return F.linear(a[1], a[2], a[3], act) end
  local kw = { act = act }
  for k, v in pairs(c.kwargs) do
    kw[k] = resolve(v)
    if as_ints and v[1] == v[2] then kw[k] = v[1] end
  end
  return F.conv2d(a[1], a[2], a[3], kw)
end

local live_packs = support.live_packs

describe("the packed-weight cache of F.conv2d and F.linear", function()
  local fused = {}
  for _, c in ipairs(cases) do if c.kind == "fused" then fused[#fused + 1] = c end end

  it("gives torch's values for every activation bound and size form, called repeatedly and interleaved", function()
    assert.is_true(#fused >= 9)
    local before = live_packs()
    local after_first
    for round = 1, 4 do
      for _, c in ipairs(fused) do
        assert_close(run_fused(c), T[c.name .. ".out"], c.name .. " round " .. round)
        assert_close(run_fused(c, true), T[c.name .. ".out"], c.name .. " (ints) round " .. round)
      end
      -- F.conv2d with sizes as tables, and a pool with pairs
      assert_close(F.conv2d(T.x, T.w, T.b6, { 2, 2 }, { 1, 1 }), T["conv2d_pairs.out"], "conv2d_pairs")
      assert_close(F.conv2d(T.x, T.w, T.b6, 2, 1), T["conv2d_pairs.out"], "conv2d_pairs as ints")
      assert_close(F.max_pool2d(T.x, { 3, 3 }, { 2, 2 }, { 1, 1 }), T["max_pool2d_pairs.out"], "max_pool2d_pairs")
      if round == 1 then after_first = live_packs() end
    end
    -- one pack per weight, bias and resolved arguments: at most 10 (5
    -- activations and none on w/b6, one dilated convolution on w alone, 3
    -- linear ones; the cases above may have made some), none after that
    assert.is_true(after_first - before <= 10, (after_first - before) .. " new packs")
    assert.are.equal(after_first, live_packs())
  end)

end)

describe("pthcv.nn modules against torch", function()
  for _, c in ipairs(cases) do
    if c.kind == "module" then
      it(c.name, function()
        local m
        if type(c.spec[1]) == "table" then
          local mods = {}
          for i, s in ipairs(c.spec) do mods[i] = build(s) end
          m = nn.Sequential(unpack(mods))
        else
          m = build(c.spec)
        end
        assert.are.equal(c.repr, tostring(m))
        local keys = {}
        for k in pairs(m:state_dict()) do keys[#keys + 1] = k end
        assert.are.same(c.keys, keys)
        local sd = pthcv.OrderedDict.new()
        for _, k in ipairs(c.keys) do sd[k] = T[c.name .. ".sd." .. k] end
        m:load_state_dict(sd)
        m:eval()
        assert_close(m(resolve(c.input)), T[c.name .. ".out"], c.name)
        -- the lazy path (no eval(): prepared on the first call) gives the same
        if type(c.spec[1]) ~= "table" then
          local m2 = build(c.spec)
          m2:load_state_dict(sd)
          assert_close(m2(resolve(c.input)), T[c.name .. ".out"], c.name .. " (lazy)")
        end
      end)
    end
  end
end)

describe("pthcv.nn modules", function()
  local function net()
    return nn.Sequential(nn.Conv2d(3, 4, 3, { padding = 1, bias = false }), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 5 * 5, 2))
  end

  it("name parameters and buffers as torch does", function()
    local keys = net():state_dict():keys()
    assert.are.same({ "0.weight", "1.weight", "1.bias", "1.running_mean", "1.running_var",
                      "1.num_batches_tracked", "4.weight", "4.bias" }, keys)
    assert.are.equal(3 * 4 * 9 + 4 + 4 + 100 * 2 + 2, net():num_parameters())
  end)

  it("report every missing, unexpected and mismatched key in one error", function()
    local m = net()
    local sd = m:state_dict()
    sd["0.weight"] = nil
    sd["1.running_var"] = nil
    sd["4.weight"] = pthcv.zeros(3, 100)
    sd["extra.weight"] = pthcv.zeros(1)
    local ok, err = pcall(m.load_state_dict, m, sd)
    assert.is_false(ok)
    assert.matches('Error%(s%) in loading state_dict for Sequential', err)
    assert.matches('Missing key%(s%) in state_dict: "0.weight", "1.running_var"', err)
    assert.matches('Unexpected key%(s%) in state_dict: "extra.weight"', err)
    assert.matches('size mismatch for 4.weight: copying a param with shape %[3, 100%] from checkpoint, '
                   .. 'the shape in current model is %[2, 100%]', err)
    -- strict = false: missing and unexpected keys are returned, mismatches still fail
    sd["4.weight"] = pthcv.zeros(2, 100)
    local r = m:load_state_dict(sd, { strict = false })
    assert.are.same({ "0.weight", "1.running_var" }, r.missing_keys)
    assert.are.same({ "extra.weight" }, r.unexpected_keys)
  end)

  it("accept a state_dict without num_batches_tracked and convert dtypes", function()
    local m = net()
    local sd = m:state_dict()
    sd["1.num_batches_tracked"] = nil
    sd["4.bias"] = pthcv.tensor({ 1, 2 }, "float64")
    m:load_state_dict(sd)
    assert.are.equal("float32", m[5].bias.dtype)
    assert.are.same({ 1, 2 }, m[5].bias:totable())
  end)

  it("print as torch's repr, nested", function()
    local Block = nn.class("Block")
    function Block:__init() self.conv = nn.Conv2d(2, 2, 1); self.act = nn.ReLU(true) end
    function Block:forward(x) return self.act(self.conv(x)) end
    local m = nn.Sequential(Block(), nn.Dropout(0.1))
    assert.are.equal(table.concat({
      "Sequential(",
      "  (0): Block(",
      "    (conv): Conv2d(2, 2, kernel_size=(1, 1), stride=(1, 1))",
      "    (act): ReLU(inplace=True)",
      "  )",
      "  (1): Dropout(p=0.1, inplace=False)",
      ")" }, "\n"), tostring(m))
  end)

  it("say in which submodule an error happened", function()
    local m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), nn.Linear(7, 2)))
    local ok, err = pcall(m, pthcv.zeros(1, 3, 5, 5))
    assert.is_false(ok)
    assert.matches("^In 1 module of nn.Sequential: In 1 module of nn.Sequential: pthcv: ", err)
    local Net = nn.class("Net")
    function Net:__init() self.body = nn.Conv2d(3, 4, 3) end
    function Net:forward(x) return self.body(x) end
    local ok2, err2 = pcall(Net(), pthcv.zeros(1, 5, 5, 5))
    assert.is_false(ok2)
    assert.matches("^In body module of Net: pthcv: ", err2)
  end)

  it("index containers from 1 and by torch name", function()
    local s = nn.Sequential({ { "conv", nn.Conv2d(1, 1, 1) }, { "act", nn.ReLU() } })
    assert.are.equal(s.conv, s[1])
    assert.are.equal(s.act, s[-1])
    assert.are.equal(2, s:len())
    s:append(nn.Identity())
    assert.are.equal("2", s:named_children()[3][1])
    local l = nn.ModuleList({ nn.ReLU(), nn.Tanh() })
    assert.are.equal(2, l:len())
    assert.are.same({ "0.weight", "0.bias" }, nn.ModuleList({ nn.Linear(2, 2) }):state_dict():keys())
    local d = nn.ModuleDict({ { "b", nn.ReLU() }, { "a", nn.Linear(1, 1) } })
    assert.are.same({ "b", "a" }, d:keys())
    assert.are.same({ "a.weight", "a.bias" }, d:state_dict():keys())
  end)

  it("fuse conv, BatchNorm and activation in a Sequential without touching the parameters", function()
    local m = net()
    local sd = m:state_dict()
    for k, t in pairs(sd) do
      if t.dtype == "float32" then sd[k] = pthcv.randn(t.shape, { seed = #k }) end
    end
    sd["1.running_var"] = pthcv.rand(4) + 0.5
    m:load_state_dict(sd)
    local x = pthcv.randn(2, 3, 5, 5)
    local want = F.linear(F.flatten(F.relu(F.batch_norm(F.conv2d(x, sd["0.weight"], nil, 1, 1), sd["1.running_mean"],
      sd["1.running_var"], sd["1.weight"], sd["1.bias"])), 1), sd["4.weight"], sd["4.bias"])
    m:eval()
    assert.are.equal("conv", m._steps[1].kind)
    assert.are.equal(3, #m._steps) -- conv+bn+relu, flatten, linear
    assert_close(m(x), want, "fused")
    assert.are.equal(sd["0.weight"], m:state_dict()["0.weight"])
  end)

  it("build custom modules with nn.class and F", function()
    local Net = nn.class("Net")
    function Net:__init(c)
      self.a = nn.Conv2d(c, c, 3, { padding = 1 })
      self.b = nn.Conv2d(c, c, 1)
    end
    function Net:forward(x) return F.cat({ F.relu(self.a(x)), self.b(x) + x }, 1) end
    local m = Net(2):eval()
    local y = m(pthcv.randn(1, 2, 4, 4))
    assert.are.same({ 1, 4, 4, 4 }, y.shape)
    assert.are.same({ "a.weight", "a.bias", "b.weight", "b.bias" }, m:state_dict():keys())
  end)
end)

describe("nn.from_module", function()
  it("runs a whole-model pickle of torch.nn layers as torch does", function()
    local m = nn.from_module(pthcv.load(dir .. "/whole_sequential.pth")):eval()
    assert.are.equal(support.read_file(dir .. "/whole_sequential.repr.txt"), tostring(m) .. "\n")
    assert_close(m(T.x), T["whole.out"], "whole_sequential")
  end)

  it("names the class and the place of a module it does not know", function()
    local OD = pthcv.OrderedDict
    local function obj(class, modules)
      local d = OD.new()
      d._parameters, d._buffers, d._modules = OD.new(), OD.new(), modules or OD.new()
      return setmetatable({ class = class, state = d }, pthcv.Object)
    end
    local mods = OD.new()
    mods["0"] = obj("torch.nn.modules.activation.ReLU")
    mods["1"] = obj("mypackage.blocks.Fancy")
    local root = obj("torch.nn.modules.container.Sequential", mods)
    local ok, err = pcall(nn.from_module, root)
    assert.is_false(ok)
    assert.matches("from_module: 1: class mypackage.blocks.Fancy is not a torch.nn layer", err)
    -- opts.classes supplies it
    local Fancy = nn.class("Fancy")
    function Fancy:forward(x) return x * 2 end
    local m = nn.from_module(root, { classes = { ["mypackage.blocks.Fancy"] = Fancy } })
    assert.are.same({ 0, 4 }, m(pthcv.tensor({ -1, 2 })):totable())
  end)
end)

describe("tensor views and arithmetic", function()
  local t = pthcv.arange(24):view(2, 3, 4)
  it("view, reshape, permute, transpose, narrow (1-based dims)", function()
    assert.are.same({ 6, 4 }, t:view(-1, 4).shape)
    assert.are.same({ 4, 2, 3 }, t:permute(3, 1, 2).shape)
    assert.are.same({ 0, 12, 4, 16, 8, 20 }, { unpack(t:transpose(1, 3):reshape(-1):totable(), 1, 6) })
    assert.has_error(function() t:transpose(1, 3):view(-1) end)
    assert.are.same({ { { 1, 2 }, { 5, 6 }, { 9, 10 } }, { { 13, 14 }, { 17, 18 }, { 21, 22 } } },
                    t:narrow(3, 2, 2):totable())
    assert.are.same({ 2, 12 }, t:flatten(2).shape)
    assert.are.same({ 1, 2, 3, 4 }, t:unsqueeze(1).shape)
    assert.are.same({ 2, 3, 4 }, t:unsqueeze(-1):squeeze().shape)
    assert.are.equal(2, #t:chunk(2, 3))
    assert.are.same({ 1, 2, 1 }, (function() local s = {}; for i, c in ipairs(t:split({ 1, 2, 1 }, 3)) do s[i] = c:size(3) end; return s end)())
  end)
  it("operators broadcast through the kernels", function()
    local a = pthcv.tensor({ { 1, 2 }, { 3, 4 } })
    assert.are.same({ { 2, 4 }, { 4, 6 } }, (a + pthcv.tensor({ 1, 2 })):totable())
    assert.are.same({ { 0, 1 }, { 2, 3 } }, (a - 1):totable())
    assert.are.same({ { 2, 4 }, { 6, 8 } }, (2 * a):totable())
    assert.are.same({ { 0.5, 1 }, { 1.5, 2 } }, (a / 2):totable())
    assert.are.same({ { -1, -2 }, { -3, -4 } }, (-a):totable())
  end)
  it("topk and argmax (1-based indices)", function()
    local v, i = pthcv.tensor({ { 1, 5, 3 }, { 9, 2, 9 } }):topk(2)
    assert.are.same({ { 5, 3 }, { 9, 9 } }, v:totable())
    assert.are.same({ { 2, 3 }, { 1, 3 } }, i:totable())
    assert.are.equal(2, pthcv.tensor({ 1, 5, 3 }):argmax())
    assert.are.same({ 2, 1 }, pthcv.tensor({ { 1, 5, 3 }, { 9, 2, 9 } }):argmax(2):totable())
  end)
  it("constructors", function()
    assert.are.same({ 1, 1 }, pthcv.ones(2):totable())
    assert.are.same({ { 7 } }, pthcv.full({ 1, 1 }, 7):totable())
    assert.are.same(pthcv.randn(3, { seed = 5 }):totable(), pthcv.randn({ 3 }, { seed = 5 }):totable())
    assert.is_true(math.abs(pthcv.randn(20000, { seed = 1 }):std() - 1) < 0.03)
  end)
end)
