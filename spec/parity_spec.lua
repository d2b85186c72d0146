-- parity_spec: pthcv against what torch itself reported for each fixture
-- (expected.lua, written by spec/fixtures/make_fixtures.py; schema in
-- spec/fixtures/README.md). Runs over PTHCV_FIXTURES (default spec/fixtures,
-- the committed set) and over PTHCV_FIXTURES_TORCH when set (a fresh set
-- tools/run-specs has torch write).
local support = require "support"
local pthcv = require "pthcv"
local OrderedDict = pthcv.OrderedDict
local sdmod = require "pthcv.reader.state_dict"

local hex = support.hex

-- dtypes the safetensors format has
local safetensors_dtypes = {
  float32 = true, float64 = true, float16 = true, bfloat16 = true, int8 = true, int16 = true,
  int32 = true, int64 = true, uint8 = true, uint16 = true, uint32 = true, uint64 = true,
  bool = true, float8_e4m3fn = true, float8_e5m2 = true,
}

local function fmt_list(t)
  local parts = {}
  for i, v in ipairs(t or {}) do parts[i] = tostring(v) end
  return "{" .. table.concat(parts, ", ") .. "}"
end

local function contains_all(msg, needles)
  if type(needles) == "string" then needles = { needles } end
  local low = msg:lower()
  for _, n in ipairs(needles) do
    if not low:find(n:lower(), 1, true) then return false, n end
  end
  return true
end

local function approx(a, b, rel)
  return support.close(a, b, rel or 1e-9)
end

-- Checks one tensor against its expected record; `what` names it in messages.
local function check_tensor(t, e, what)
  assert(pthcv.is_tensor(t), what .. ": not a tensor")
  if e.dtype then assert.are.equal(e.dtype, t.dtype, what .. ": dtype") end
  if e.shape then assert.are.same(e.shape, t.shape, what .. ": shape") end
  if e.stride then assert.are.same(e.stride, t.stride, what .. ": stride") end
  if e.offset then assert.are.equal(e.offset, t.offset, what .. ": storage offset") end
  if e.storage_nbytes then assert.are.equal(e.storage_nbytes, t.storage_nbytes, what .. ": storage_nbytes") end
  if e.requires_grad ~= nil then assert.are.equal(e.requires_grad, t.requires_grad, what .. ": requires_grad") end
  if e.parameter ~= nil then assert.are.equal(e.parameter, t.is_parameter, what .. ": parameter") end
  if e.hex then assert.are.equal(e.hex, hex(t:bytes()), what .. ": bytes") end
  if e.sum then
    local s = t:sum()
    assert(support.close(s, e.sum, 1e-5), string.format("%s: sum %.17g, expected %.17g", what, s, e.sum))
  end
  if e.qscheme then
    assert.are.equal(e.qscheme, t.qscheme, what .. ": qscheme")
    if e.scale then assert(approx(e.scale, t.scale), what .. ": scale " .. tostring(t.scale)) end
    if e.zero_point then assert.are.equal(e.zero_point, t.zero_point, what .. ": zero_point") end
    if e.axis then assert.are.equal(e.axis, t.axis, what .. ": axis") end
    if e.scales then
      local got = t.scales:totable()
      assert.are.equal(#e.scales, #got, what .. ": scales")
      for i = 1, #got do assert(approx(e.scales[i], got[i], 1e-6), what .. ": scales[" .. i .. "]") end
    end
    if e.zero_points then
      local got = t.zero_points:totable()
      assert.are.equal(#e.zero_points, #got, what .. ": zero_points")
      for i = 1, #got do assert(approx(e.zero_points[i], got[i], 1e-6), what .. ": zero_points[" .. i .. "]") end
    end
    if e.dequant_hex then
      assert.are.equal(e.dequant_hex, hex(t:dequantize():bytes()), what .. ": dequantized bytes")
    end
  end
end

-- Follows a value path: strings are dict keys or object attributes, numbers
-- 0-based list/tuple indices (or integer dict keys).
local function follow(root, path)
  local x = root
  for i, step in ipairs(path) do
    local ty = pthcv.type(x)
    local nextx
    if ty == "dict" then
      nextx = x[step]
    elseif ty == "list" or ty == "tuple" or ty == "set" then
      if type(step) == "number" then nextx = x[step + 1] end
    elseif ty == "object" then
      local d = sdmod.object_dict(x)
      if d then nextx = d[step] end
      if nextx == nil and x.items then
        if OrderedDict.is(x.items) then nextx = x.items[step]
        elseif type(step) == "number" then nextx = x.items[step + 1] end
      end
      if nextx == nil and type(step) == "number" and x.args then nextx = x.args[step + 1] end
    end
    if nextx == nil then
      error(string.format("path %s: no step %s (at a %s)", fmt_list(path), tostring(step), ty), 0)
    end
    x = nextx
  end
  return x
end

local function check_value(root, e)
  local what = "value at " .. fmt_list(e.path)
  local x = follow(root, e.path)
  local ty = pthcv.type(x)
  if e.kind then
    local kind = e.kind
    if kind == "frozenset" then kind = "set" end
    assert.are.equal(kind, ty, what .. ": kind")
  end
  if e.class then
    if ty == "object" then assert.are.equal(e.class, x.class, what .. ": class")
    elseif ty == "global" then assert.are.equal(e.class, x.name, what .. ": class")
    elseif e.class == "torch.Size" and ty == "tuple" then
      -- torch.Size, a tuple subclass, is read as a Tuple (by design)
    else error(what .. ": expected an object of class " .. e.class .. ", got a " .. ty, 0) end
  end
  if e.keys then
    assert.are.equal("dict", ty, what .. ": expected a dict")
    assert.are.same(e.keys, OrderedDict.keys(x), what .. ": keys")
  end
  if e.re ~= nil then assert(approx(e.re, x.re), what .. ": re") end
  if e.im ~= nil then assert(approx(e.im, x.im), what .. ": im") end
  if e.len ~= nil then
    local n = ty == "dict" and OrderedDict.len(x) or #x
    assert.are.equal(e.len, n, what .. ": length")
  end
  if e.value ~= nil then
    local v = e.value
    if ty == "bytes" then
      assert.are.equal(v, x.data, what)
    elseif ty == "bigint" or (ty == "int" and type(x) == "cdata") then
      assert.are.equal(tostring(v):gsub("[LU]+$", ""), tostring(x):gsub("[LU]+$", ""), what)
    elseif type(v) == "number" then
      assert(type(x) == "number" and approx(v, x), string.format("%s: %s, expected %s", what, tostring(x), tostring(v)))
    else
      assert.are.equal(v, x, what)
    end
  end
end

local function tensor_names(list)
  local names = {}
  for i, kv in ipairs(list) do names[i] = kv[1] end
  return names
end

local function for_each_fixture_set(fn)
  for _, set in ipairs(support.fixture_sets()) do
    describe("fixtures " .. set.dir, function()
      if not set.expected then
        it("has an expected.lua", function()
          error("no " .. set.path .. " (generate it with spec/fixtures/make_fixtures.py)", 0)
        end)
        return
      end
      fn(set)
    end)
  end
end

for_each_fixture_set(function(set)
  local files = set.expected.files or {}
  for _, name in ipairs(support.sorted_keys(files)) do
    local e = files[name]
    local path = set.dir .. "/" .. name
    describe(name, function()
      if e.unsafe then
        it("is refused by load, naming " .. e.unsafe, function()
          local ok, err = pcall(pthcv.load, path)
          assert.is_false(ok)
          assert.is_truthy(tostring(err):find(e.unsafe, 1, true), "message: " .. tostring(err))
        end)
        it("is reported unsafe by scan", function()
          local r = pthcv.scan(path)
          assert.is_false(r.safe)
          local listed = {}
          for _, g in ipairs(r.globals) do listed[g.name] = g.unsafe end
          assert.is_true(listed[e.unsafe] == true, "scan lists " .. e.unsafe .. " as unsafe")
        end)
        it("makes `pthcv scan` exit 1 and `pthcv inspect` fail", function()
          local code, out = support.pthcv("scan", path)
          assert.are.equal(1, code)
          assert.is_truthy(out:find(e.unsafe, 1, true))
          local code2, _, err2 = support.pthcv("inspect", path)
          assert.are_not.equal(0, code2)
          assert.is_truthy(err2:find(e.unsafe, 1, true), "stderr: " .. err2)
        end)
        return
      end

      if e.error then
        it("is refused by load with the expected message", function()
          local ok, err = pcall(pthcv.load, path)
          assert.is_false(ok, "loaded a file that must be refused")
          local good, missing = contains_all(tostring(err), e.error)
          assert(good, "message lacks '" .. tostring(missing) .. "': " .. tostring(err))
        end)
        it("makes `pthcv inspect` fail with the message on stderr", function()
          local code, out, err = support.pthcv("inspect", path)
          assert.are_not.equal(0, code)
          local good, missing = contains_all(err, e.error)
          assert(good, "stderr lacks '" .. tostring(missing) .. "': " .. err)
          assert.are.equal("", out)
        end)
        return
      end

      local root, info
      local function loaded()
        if not root then root, info = pthcv.load(path) end
        return root, info
      end

      it("loads, format " .. tostring(e.format), function()
        local _, i = loaded()
        if e.format then assert.are.equal(e.format, i.format) end
      end)

      if e.tensors then
        it("lists every tensor under torch's names, in order", function()
          local list = pthcv.named_tensors(loaded())
          local want = {}
          for i, t in ipairs(e.tensors) do want[i] = t.name end
          assert.are.same(want, tensor_names(list))
        end)
        it("gives each tensor's dtype, shape, strides, offset and bytes", function()
          local list = pthcv.named_tensors(loaded())
          local by_name = {}
          for _, kv in ipairs(list) do by_name[kv[1]] = by_name[kv[1]] or kv[2] end
          local storages = {} -- expected storage number -> a tensor of it
          for _, et in ipairs(e.tensors) do
            local t = by_name[et.name]
            assert(t, "no tensor named " .. et.name)
            check_tensor(t, et, et.name)
            if et.storage then
              for num, other in pairs(storages) do
                assert.are.equal(num == et.storage, t:shares_storage(other[1]),
                  string.format("%s %s storage with %s", et.name,
                                num == et.storage and "must share" or "must not share", other[2]))
              end
              storages[et.storage] = storages[et.storage] or { t, et.name }
            end
          end
        end)
        it("is listed the same by `pthcv inspect --json`", function()
          local code, out, err = support.pthcv("inspect", "--json", path)
          assert.are.equal(0, code, err)
          local j = require("dkjson").decode(out)
          assert.are.equal(e.format, j.format)
          assert.are.equal(#e.tensors, #j.tensors)
          for i, et in ipairs(e.tensors) do
            assert.are.equal(et.name, j.tensors[i].name)
            assert.are.equal(et.dtype, j.tensors[i].dtype)
            assert.are.same(et.shape, j.tensors[i].shape)
          end
        end)
        local convertible = #e.tensors > 0
        local seen_names = {}
        for _, et in ipairs(e.tensors) do
          if not safetensors_dtypes[et.dtype] or seen_names[et.name] or not et.hex then convertible = false end
          seen_names[et.name] = true
        end
        if convertible then
          it("converts to .safetensors with every tensor's bytes", function()
            local out = support.tmpname(".safetensors")
            local code, _, err = support.pthcv("convert", path, "-o", out)
            assert.are.equal(0, code, err)
            local st = support.parse_safetensors(support.read_file(out))
            os.remove(out)
            for _, et in ipairs(e.tensors) do
              local got = st.tensors[et.name]
              assert(got, "no tensor " .. et.name .. " in the .safetensors file")
              assert.are.same(et.shape, got.shape, et.name .. ": shape")
              assert.are.equal(et.hex, hex(got.bytes), et.name .. ": bytes")
            end
          end)
        end
      end

      if e.state_dict then
        it("finds the state_dict", function()
          local sd = pthcv.state_dict((loaded()))
          local want = {}
          for i, t in ipairs(e.state_dict) do want[i] = t.name end
          assert.are.same(want, sd:keys())
          for _, et in ipairs(e.state_dict) do check_tensor(sd[et.name], et, "state_dict " .. et.name) end
        end)
      end

      if e.values then
        it("holds the expected plain values", function()
          local r = loaded()
          for _, ev in ipairs(e.values) do check_value(r, ev) end
        end)
      end

      if e.globals then
        it("lists the globals it references (load and scan)", function()
          local _, i = loaded()
          local seen = {}
          for _, g in ipairs(i.globals) do seen[g.name] = true end
          local scanned = {}
          local r = pthcv.scan(path)
          assert.is_true(r.safe)
          for _, g in ipairs(r.globals) do scanned[g.name] = true end
          for _, g in ipairs(e.globals) do
            assert.is_true(seen[g] == true, "load's globals lack " .. g)
            assert.is_true(scanned[g] == true, "scan's globals lack " .. g)
          end
        end)
      end
    end)
  end
end)
