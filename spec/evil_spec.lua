-- spec/evil_spec.lua: the malicious corpus (spec/fixtures/make_evil.py).
-- Every file calls a global that would run code -- os.system, eval,
-- subprocess.Popen, ... -- through GLOBAL or STACK_GLOBAL, Python 2 or 3
-- names, protocols 0 to 5, nested in checkpoints, lists, tuples and dicts,
-- through the memo, through copy_reg._reconstructor, as an attribute path,
-- in every pickle torch.load unpickles: a zip's data.pkl (also a second
-- record of that name), TorchScript archives, each pickle of the legacy
-- stream, the tar layout's members (the last of a name, a pax-renamed one,
-- the file itself when the tar breaks), and plain pickle files.
-- Each must be refused by pthcv.load and `pthcv inspect` naming the global,
-- reported by pthcv.scan and `pthcv scan` (exit 1), and nothing may run.
-- Where the generator had torch, it recorded that torch.load runs the call
-- of each file's harmless twin (torch_runs).
local support = require "support"
local pthcv = require "pthcv"

local dir = support.root .. "/spec/fixtures/evil"
local corpus = dofile(dir .. "/expected.lua")

describe("the malicious corpus", function()
  it("holds every kind of attack", function()
    assert.is_true(#corpus >= 450, "files: " .. #corpus)
  end)

  it("is what torch.load runs: the harmless twins' calls ran under torch " .. tostring(corpus.torch), function()
    if not corpus.torch then
      pending("spec/fixtures/make_evil.py ran without torch: nothing recorded")
      return
    end
    local twins, ran, unexplained = 0, 0, {}
    for _, e in ipairs(corpus) do
      if e.torch_runs ~= nil then
        twins = twins + 1
        if e.torch_runs then ran = ran + 1
        elseif not e.torch_note then unexplained[#unexplained + 1] = e.file end
      end
    end
    assert.is_true(twins >= 400 and ran >= 340, twins .. " twins, " .. ran .. " ran")
    assert.are.same({}, unexplained)
  end)

  os.remove(corpus.marker)
  for _, e in ipairs(corpus) do
    local path = dir .. "/" .. e.file
    describe(e.file, function()
      it("is refused by pthcv.load naming " .. e.global, function()
        local ok, err = pcall(pthcv.load, path)
        assert.is_false(ok, e.how .. " was loaded")
        assert.is_truthy(tostring(err):find(e.global, 1, true), "message: " .. tostring(err))
        assert.is_truthy(tostring(err):find("unsafe", 1, true), "message: " .. tostring(err))
        assert.are.equal(pthcv.C.PTHCV_ERR_UNSAFE, pthcv.C.pthcv_last_status())
      end)

      it("is reported unsafe by pthcv.scan", function()
        local r = pthcv.scan(path)
        assert.is_false(r.safe)
        local named = false
        for _, g in ipairs(r.unsafe) do named = named or g == e.global end
        assert.is_true(named, "scan's unsafe list: " .. table.concat(r.unsafe, ", "))
        if e.scan_error then
          assert.is_string(r.error, "where the file broke off")
          assert.is_truthy(r.error:find(e.file, 1, true), r.error)
        end
      end)

      it("makes `pthcv scan` exit 1 and `pthcv inspect` fail, naming the global", function()
        local code, out = support.pthcv("scan", path)
        assert.are.equal(1, code)
        assert.is_truthy(out:find(e.global, 1, true))
        local code2, out2, err2 = support.pthcv("inspect", path)
        assert.are_not.equal(0, code2)
        assert.are.equal("", out2)
        assert.is_truthy(err2:find(e.global, 1, true), "stderr: " .. err2)
      end)
    end)
  end

  it("never ran anything: the marker the payloads would create is absent", function()
    assert.is_nil(io.open(corpus.marker, "r"))
  end)
end)
