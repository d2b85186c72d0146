-- pickle_spec: plain pickle files (spec/fixtures/make_pickles.py). torch.load
-- unpickles any file that is neither a zip nor a tar, so pthcv reads them
-- too: pthcv.load gives a safe one's object tree, with the values Python's
-- pickle reads (format "pickle"); scan lists its globals; a pickle that
-- needs a storage, or a file of several pickles, is refused and says why.
local support = require "support"
local pthcv = require "pthcv"

local dir = support.root .. "/spec/fixtures/pickles"
local expected = dofile(dir .. "/expected.lua")
local NONE = expected.NONE

-- Compares what pthcv.load gave with the generator's description; returns
-- nil or where they differ.
local function differ(want, got, where)
  local function at(k) return where .. "/" .. tostring(k) end
  if want == NONE then
    if got ~= pthcv.None then return where .. ": not None" end
    return nil
  end
  local t = type(want)
  if t ~= "table" then
    if got ~= want then return where .. ": " .. tostring(got) .. " ~= " .. tostring(want) end
    return nil
  end
  local kind = pthcv.type(got)
  local ok
  if want.bigint then
    ok = kind == "bigint" and tostring(got) == want.bigint
  elseif want.bytes then
    ok = kind == "bytes" and got.data == want.bytes
  elseif want.complex then
    ok = kind == "complex" and got.re == want.complex[1] and got.im == want.complex[2]
  end
  if ok ~= nil then
    if not ok then return where .. ": " .. tostring(got) .. " (" .. kind .. ")" end
    return nil
  end
  if want.set then
    if kind ~= "set" or #got ~= #want.set then return where .. ": set of " .. #want.set end
    for _, x in ipairs(want.set) do if not got:has(x) then return where .. ": set without " .. tostring(x) end end
    return nil
  end
  for _, seq in ipairs { "list", "tuple" } do
    if want[seq] then
      if kind ~= seq or #got ~= #want[seq] then return where .. ": not a " .. seq .. " of " .. #want[seq] end
      for i, x in ipairs(want[seq]) do
        local d = differ(x, got[i], at(i - 1))
        if d then return d end
      end
      return nil
    end
  end
  assert(want.dict, where)
  if kind ~= "dict" then return where .. ": not a dict" end
  local keys = {}
  for k in pairs(got) do keys[#keys + 1] = k end
  if #keys ~= #want.dict then return where .. ": " .. #keys .. " keys, want " .. #want.dict end
  for i, kv in ipairs(want.dict) do
    if keys[i] ~= kv[1] then return where .. ": key " .. i .. " is " .. tostring(keys[i]) .. ", want " .. kv[1] end
    local d = differ(kv[2], got[kv[1]], at(kv[1]))
    if d then return d end
  end
  return nil
end

describe("plain pickle files", function()
  for _, name in ipairs(support.sorted_keys(expected.files)) do
    local e, path = expected.files[name], dir .. "/" .. name
    describe(name, function()
      if e.value then
        it("loads as Python's pickle reads it (format pickle)", function()
          local root, info = pthcv.load(path)
          assert.are.equal("pickle", info.format)
          assert.is_nil(differ(e.value, root, ""))
          local r = pthcv.scan(path)
          assert.is_true(r.safe)
          assert.are.equal("pickle", r.format)
        end)
      elseif e.tensor then
        it("loads its numpy arrays as tensors", function()
          local root, info = pthcv.load(path)
          assert.are.equal("pickle", info.format)
          local t = root[e.tensor.key]
          assert.is_true(pthcv.is_tensor(t))
          assert.are.same(e.tensor.shape, { t.shape[1], t.shape[2] })
          local flat = {}
          for i = 1, t.shape[1] do for j = 1, t.shape[2] do flat[#flat + 1] = t:get(i, j) end end
          assert.are.same(e.tensor.values, flat)
          assert.are.equal(e.scalar.value, root[e.scalar.key])
          assert.are.equal(1, #pthcv.named_tensors(root))
        end)
      elseif e.unsafe then
        it("is refused naming " .. e.unsafe .. ", and scan exits 1", function()
          local ok, err = pcall(pthcv.load, path)
          assert.is_false(ok)
          assert.is_truthy(tostring(err):find(e.unsafe, 1, true), tostring(err))
          local code, out = support.pthcv("scan", path)
          assert.are.equal(1, code)
          assert.is_truthy(out:find(e.unsafe, 1, true), out)
        end)
      else
        it("is refused, saying why", function()
          local ok, err = pcall(pthcv.load, path)
          assert.is_false(ok)
          for _, word in ipairs(e.error) do
            assert.is_truthy(tostring(err):find(word, 1, true), "'" .. word .. "' in " .. tostring(err))
          end
        end)
      end
    end)
  end

  it("covers protocols 0 to 5", function()
    for p = 0, 5 do assert.is_table(expected.files["plain_p" .. p .. ".pkl"], "protocol " .. p) end
  end)

  it("a file that is not a pickle at all says so", function()
    local path = support.tmpname(".txt")
    support.write_file(path, "hello world\n")
    local ok, err = pcall(pthcv.load, path)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("not a PyTorch file: neither a zip nor a tar archive, and not a pickle", 1, true),
                     tostring(err))
    support.write_file(path, "\19\55 random")
    ok, err = pcall(pthcv.load, path)
    assert.is_false(ok)
    assert.is_truthy(tostring(err):find("starts with 13 37", 1, true), tostring(err))
  end)
end)
