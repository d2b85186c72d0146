-- cli_spec: bin/pthcv inspect / scan / convert, on the fixtures.
local support = require "support"
local json = require "dkjson"

local hex = support.hex

-- The first fixture set that has an expected.lua, and files of each kind.
local set
for _, s in ipairs(support.fixture_sets()) do
  if s.expected then set = s; break end
end

local function pick(pred, prefer)
  if not set then return nil end
  local files = set.expected.files
  if prefer and files[prefer] and pred(files[prefer]) then return prefer, files[prefer] end
  for _, name in ipairs(support.sorted_keys(files)) do
    if pred(files[name]) then return name, files[name] end
  end
end

local function numpy_dtype_ok(d)
  return d ~= "bfloat16" and not d:find("^q") and not d:find("^float8") and d ~= "complex32"
end

describe("pthcv command line", function()
  it("prints usage with --help (exit 0) and without arguments (exit 2)", function()
    local code, out = support.pthcv("--help")
    assert.are.equal(0, code)
    assert.is_truthy(out:find("inspect FILE", 1, true))
    code = support.pthcv()
    assert.are.equal(2, code)
  end)

  it("rejects unknown commands and options on stderr (exit 2)", function()
    local code, out, err = support.pthcv("frobnicate")
    assert.are.equal(2, code)
    assert.are.equal("", out)
    assert.is_truthy(err:find("unknown command", 1, true))
    code, _, err = support.pthcv("inspect", "--bogus", "x.pth")
    assert.are.equal(2, code)
    assert.is_truthy(err:find("--bogus", 1, true))
    code = support.pthcv("convert", "x.pth")
    assert.are.equal(2, code)
  end)

  it("prints its version", function()
    local code, out = support.pthcv("--version")
    assert.are.equal(0, code)
    assert.is_truthy(out:match("^pthcv %S+\n$"))
  end)

  describe("on the fixtures", function()
    if not set then
      it("has fixtures", function() error("no fixtures with an expected.lua", 0) end)
      return
    end
    local ckpt_name, ckpt = pick(function(e)
      return e.tensors and #e.tensors > 1 and e.state_dict and not e.error and not e.unsafe
    end, "checkpoint.pth")
    local ckpt_path = ckpt_name and (set.dir .. "/" .. ckpt_name)
    local unsafe_name, unsafe = pick(function(e) return e.unsafe ~= nil end)
    local bad_name = pick(function(e) return e.error ~= nil end)

    it("inspect prints the format, the tree, every tensor and the parameter count", function()
      local code, out, err = support.pthcv("inspect", ckpt_path)
      assert.are.equal(0, code, err)
      assert.is_truthy(out:find("format: " .. ckpt.format, 1, true))
      assert.is_truthy(out:find("\ntree:\n", 1, true))
      for _, t in ipairs(ckpt.tensors) do
        local line = out:match("\n  (" .. t.name:gsub("%p", "%%%0") .. " +[^\n]*)")
        assert(line, "no line for tensor " .. t.name)
        assert.is_truthy(line:find(t.dtype, 1, true), line)
        assert.is_truthy(line:find("[" .. table.concat(t.shape, ", ") .. "]", 1, true), line)
      end
      -- a state_dict does not say which tensors are buffers: torch.nn's buffer names do
      local params, buffers = 0, 0
      for _, t in ipairs(ckpt.state_dict) do
        local n = 1
        for _, s in ipairs(t.shape) do n = n * s end
        local last = t.name:match("([^%.]+)$")
        if last == "running_mean" or last == "running_var" or last == "num_batches_tracked" then
          buffers = buffers + n
        else
          params = params + n
        end
      end
      local want = string.format("parameters: %d, buffers: %d", params, buffers)
      assert.is_truthy(out:find(want, 1, true), want)
    end)

    it("inspect --json prints one JSON object with every tensor", function()
      local code, out, err = support.pthcv("inspect", ckpt_path, "--json")
      assert.are.equal(0, code, err)
      local j, _, jerr = json.decode(out)
      assert(j, jerr)
      assert.are.equal(ckpt.format, j.format)
      assert.are.equal(#ckpt.tensors, #j.tensors)
      for i, t in ipairs(ckpt.tensors) do
        local jt = j.tensors[i]
        assert.are.equal(t.name, jt.name)
        assert.are.equal(t.dtype, jt.dtype)
        assert.are.same(t.shape, jt.shape)
        if t.hex then assert.are.equal(#t.hex / 2, jt.bytes) end
      end
      assert.is_number(j.parameters)
      -- each object key once (before "values", the file's own values, which may hold "name" keys)
      local _, names = out:match('^(.-)"values":'):gsub('"name":', "")
      assert.are.equal(#j.tensors + #j.globals, names)
    end)

    it("scan exits 0 on a safe file", function()
      local code, out = support.pthcv("scan", ckpt_path)
      assert.are.equal(0, code)
      assert.is_truthy(out:find("safe", 1, true))
    end)

    it("scan names the modules torch.load would import beyond torch's and numpy's", function()
      -- a whole-model pickle: its classes live in __main__, the rest in torch
      local path = support.root .. "/spec/fixtures/whole_model.pth"
      local code, out = support.pthcv("scan", path)
      assert.are.equal(0, code)
      assert.is_truthy(out:find("verdict: safe (no dangerous global); a module outside torch, numpy and "
                                .. "Python's pickling helpers: __main__ (pthcv never imports it; torch.load would)",
                                1, true), out)
      local code2, out2 = support.pthcv("scan", "--json", path)
      assert.are.equal(0, code2)
      assert.are.same({ "__main__" }, json.decode(out2).other_modules)
      -- a plain state_dict references none
      local _, out3 = support.pthcv("scan", "--json", support.root .. "/spec/fixtures/zip_state_dict.pth")
      assert.are.same({}, json.decode(out3).other_modules)
    end)

    it("scan exits 1 on a malicious file and names the global", function()
      assert(unsafe_name, "no unsafe fixture")
      local code, out = support.pthcv("scan", set.dir .. "/" .. unsafe_name)
      assert.are.equal(1, code)
      assert.is_truthy(out:find(unsafe.unsafe, 1, true))
      local code2, out2 = support.pthcv("scan", "--json", set.dir .. "/" .. unsafe_name)
      assert.are.equal(1, code2)
      local j = json.decode(out2)
      assert.is_false(j.safe)
    end)

    it("scan exits 2 on an unreadable file", function()
      local code, _, err = support.pthcv("scan", set.dir .. "/does-not-exist.pth")
      assert.are.equal(2, code)
      assert.is_truthy(err:find("does-not-exist", 1, true))
      local junk = support.tmpname(".pth")
      support.write_file(junk, "this is not a pickle, nor a zip\n")
      code, _, err = support.pthcv("scan", junk)
      os.remove(junk)
      assert.are.equal(2, code)
      assert.are_not.equal("", err)
      if bad_name then
        code = support.pthcv("inspect", set.dir .. "/" .. bad_name)
        assert.are_not.equal(0, code)
      end
    end)

    it("convert writes .safetensors and .npz with every tensor's bytes", function()
      local st_path, npz_path = support.tmpname(".safetensors"), support.tmpname(".npz")
      local code, _, err = support.pthcv("convert", ckpt_path, "-o", st_path)
      assert.are.equal(0, code, err)
      local st = support.parse_safetensors(support.read_file(st_path))
      local all_numpy = true
      for _, t in ipairs(ckpt.tensors) do
        local got = st.tensors[t.name]
        assert(got, "missing " .. t.name)
        assert.are.same(t.shape, got.shape)
        if t.hex then assert.are.equal(t.hex, hex(got.bytes), t.name) end
        if not numpy_dtype_ok(t.dtype) then all_numpy = false end
      end
      if all_numpy then
        code, _, err = support.pthcv("convert", ckpt_path, "-o", npz_path)
        assert.are.equal(0, code, err)
        local members = support.read_zip(support.read_file(npz_path))
        for _, t in ipairs(ckpt.tensors) do
          local m = members[t.name .. ".npy"]
          assert(m, "missing " .. t.name .. ".npy")
          local npy = support.parse_npy(m)
          assert.are.same(t.shape, npy.shape)
          if t.hex then assert.are.equal(t.hex, hex(npy.data), t.name) end
        end
      end
      -- numpy and json read them as torch wrote them
      if support.has_python_numpy() and all_numpy then
        local script = [[
import json, struct, sys, numpy as np
st, npz = sys.argv[1], sys.argv[2]
with open(st, 'rb') as f:
    n = struct.unpack('<Q', f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
z = np.load(npz)
for k, v in header.items():
    if k == '__metadata__': continue
    a, b = v['data_offsets']
    assert data[a:b] == z[k].tobytes(), k
    assert list(z[k].shape) == v['shape'], k
print(len(z.files))
]]
        local c2, out2, err2 = support.run("/usr/bin/python3 -c " .. support.shell_quote(script) .. " "
                                           .. support.shell_quote(st_path) .. " " .. support.shell_quote(npz_path))
        assert.are.equal(0, c2, err2)
        assert.are.equal(tostring(#ckpt.tensors) .. "\n", out2)
      end
      os.remove(st_path); os.remove(npz_path)
    end)

    it("convert --state-dict writes the weights under state_dict names", function()
      local st_path = support.tmpname(".safetensors")
      local code, _, err = support.pthcv("convert", ckpt_path, "--state-dict", "-o", st_path)
      assert.are.equal(0, code, err)
      local st = support.parse_safetensors(support.read_file(st_path))
      os.remove(st_path)
      local n = 0
      for _ in pairs(st.tensors) do n = n + 1 end
      assert.are.equal(#ckpt.state_dict, n)
      for _, t in ipairs(ckpt.state_dict) do
        assert(st.tensors[t.name], "missing " .. t.name)
        if t.hex then assert.are.equal(t.hex, hex(st.tensors[t.name].bytes)) end
      end
    end)

    it("convert refuses .npy for many tensors, unknown extensions, unsafe files", function()
      local code, _, err = support.pthcv("convert", ckpt_path, "-o", support.tmpname(".npy"))
      assert.are.equal(1, code)
      assert.is_truthy(err:find("one tensor", 1, true))
      code, _, err = support.pthcv("convert", ckpt_path, "-o", support.tmpname(".bin"))
      assert.are.equal(1, code)
      assert.is_truthy(err:find(".safetensors", 1, true))
      if unsafe_name then
        local out = support.tmpname(".npz")
        code, _, err = support.pthcv("convert", set.dir .. "/" .. unsafe_name, "-o", out)
        assert.are.equal(1, code)
        assert.is_truthy(err:find(unsafe.unsafe, 1, true))
        assert.is_nil(io.open(out, "rb"))
      end
    end)

    local q_name, q = pick(function(e)
      if not e.tensors or e.error or e.unsafe then return false end
      for _, t in ipairs(e.tensors) do if t.dequant_hex then return true end end
      return false
    end)
    if q_name then
      it("convert --dequantize writes quantized tensors as float32", function()
        local out = support.tmpname(".safetensors")
        local code = support.pthcv("convert", set.dir .. "/" .. q_name, "-o", out)
        assert.are.equal(1, code) -- refused without --dequantize
        local err
        code, _, err = support.pthcv("convert", set.dir .. "/" .. q_name, "-o", out, "--dequantize")
        assert.are.equal(0, code, err)
        local st = support.parse_safetensors(support.read_file(out))
        os.remove(out)
        for _, t in ipairs(q.tensors) do
          local got = st.tensors[t.name]
          assert(got, "missing " .. t.name)
          if t.dequant_hex then
            assert.are.equal("F32", got.dtype)
            assert.are.equal(t.dequant_hex, hex(got.bytes), t.name)
          elseif t.hex then
            assert.are.equal(t.hex, hex(got.bytes), t.name)
          end
        end
      end)
    end

    local single_name, single = pick(function(e)
      return e.tensors and #e.tensors == 1 and not e.error and not e.unsafe and numpy_dtype_ok(e.tensors[1].dtype)
    end)
    if not single_name and support.run("/usr/bin/python3 -c 'import torch'") == 0 then
      -- no single-tensor fixture: have torch write one
      local path = support.tmpname(".pth")
      local code = support.run("/usr/bin/python3 -c " .. support.shell_quote(
        "import sys, torch; torch.save(torch.arange(6, dtype=torch.float32).reshape(2, 3).t(), sys.argv[1])")
        .. " " .. support.shell_quote(path))
      if code == 0 then
        single_name = path
        -- [[0, 3], [1, 4], [2, 5]] as float32
        single = { tensors = { { shape = { 3, 2 },
                                 hex = "00000000" .. "00004040" .. "0000803f" .. "00008040" .. "00000040" .. "0000a040" } } }
      end
    end
    if single_name then
      it("convert writes a single tensor as .npy", function()
        local out = support.tmpname(".npy")
        local code, _, err = support.pthcv("convert", single_name:sub(1, 1) == "/" and single_name
                                                 or (set.dir .. "/" .. single_name), "-o", out)
        assert.are.equal(0, code, err)
        local npy = support.parse_npy(support.read_file(out))
        os.remove(out)
        if single_name:sub(1, 1) == "/" then os.remove(single_name) end
        assert.are.same(single.tensors[1].shape, npy.shape)
        if single.tensors[1].hex then assert.are.equal(single.tensors[1].hex, hex(npy.data)) end
      end)
    end
  end)
end)
