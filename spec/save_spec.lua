-- save_spec: pthcv.save writes .npy, .npz and .safetensors that hold the
-- tensors' contiguous bytes, dtype kept (checked with small readers here and,
-- when /usr/bin/python3 has numpy, with numpy itself).
local support = require "support"
local pthcv = require "pthcv"

describe("pthcv.export.save", function()
  local function sample()
    local a = pthcv.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32")
    local b = pthcv.tensor({ 7, -8 }, "int64")
    local d = pthcv.OrderedDict.new()
    d["layer.weight"] = a:t()  -- a transposed view: written contiguous
    d["layer.count"] = b
    return d, a, b
  end

  it("writes one tensor as .npy, as numpy.save does", function()
    local path = support.tmpname(".npy")
    local t = pthcv.tensor({ { 1, 2, 3 }, { 4, 5, 6 } }, "float32"):t()
    pthcv.save(path, t)
    local s = support.read_file(path)
    os.remove(path)
    local npy = support.parse_npy(s)
    assert.are.equal("<f4", npy.descr)
    assert.is_false(npy.fortran_order)
    assert.are.same({ 3, 2 }, npy.shape)
    assert.are.equal(t:bytes(), npy.data)
    assert.are.equal(0, npy.data_offset % 64)
  end)

  it("writes a dict as .npz, one <name>.npy member per tensor, in order", function()
    local path = support.tmpname(".npz")
    local d = sample()
    pthcv.save(path, d)
    local members, order = support.read_zip(support.read_file(path))
    os.remove(path)
    assert.are.same({ "layer.weight.npy", "layer.count.npy" }, order)
    local w = support.parse_npy(members["layer.weight.npy"])
    assert.are.same({ 3, 2 }, w.shape)
    assert.are.equal(d["layer.weight"]:bytes(), w.data)
    local c = support.parse_npy(members["layer.count.npy"])
    assert.are.equal("<i8", c.descr)
    assert.are.equal(d["layer.count"]:bytes(), c.data)
  end)

  it("writes a dict as .safetensors with dtypes, shapes and offsets", function()
    local path = support.tmpname(".safetensors")
    local d = sample()
    pthcv.save(path, d, { metadata = { format = "pt" } })
    local st = support.parse_safetensors(support.read_file(path))
    os.remove(path)
    assert.are.equal("pt", st.header.__metadata__.format)
    local w, c = st.tensors["layer.weight"], st.tensors["layer.count"]
    assert.are.equal("F32", w.dtype)
    assert.are.same({ 3, 2 }, w.shape)
    assert.are.equal(d["layer.weight"]:bytes(), w.bytes)
    assert.are.equal("I64", c.dtype)
    assert.are.equal(d["layer.count"]:bytes(), c.bytes)
    assert.are.equal(0, (8 + st.header_len) % 8)
  end)

  it("accepts {{name, tensor}, ...} and plain tables", function()
    local path = support.tmpname(".safetensors")
    local _, a, b = sample()
    pthcv.save(path, { { "z", a }, { "a", b } })
    local st = support.parse_safetensors(support.read_file(path))
    assert.is_truthy(st.tensors.z and st.tensors.a)
    pthcv.save(path, { one = a })
    st = support.parse_safetensors(support.read_file(path))
    os.remove(path)
    assert.is_truthy(st.tensors.one)
  end)

  it("keeps float16, bfloat16, bool and int8 bytes", function()
    local path = support.tmpname(".safetensors")
    local d = pthcv.OrderedDict.new()
    d.h = pthcv.tensor({ 1.5, -2 }, "float16")
    d.bf = pthcv.tensor({ 1.5, -2 }, "bfloat16")
    d.b = pthcv.tensor({ true, false, true }, "bool")
    d.i = pthcv.tensor({ -1, 2 }, "int8")
    pthcv.save(path, d)
    local st = support.parse_safetensors(support.read_file(path))
    os.remove(path)
    assert.are.equal("F16", st.tensors.h.dtype)
    assert.are.equal("BF16", st.tensors.bf.dtype)
    assert.are.equal("BOOL", st.tensors.b.dtype)
    assert.are.equal("I8", st.tensors.i.dtype)
    for k, t in pairs(d) do assert.are.equal(t:bytes(), st.tensors[k].bytes, k) end
  end)

  it("refuses what it cannot write, with a message", function()
    local d = sample()
    local ok, err = pcall(pthcv.save, support.tmpname(".npy"), d)
    assert.is_false(ok)
    assert.is_truthy(err:find("one tensor", 1, true))
    ok, err = pcall(pthcv.save, support.tmpname(".txt"), d)
    assert.is_false(ok)
    assert.is_truthy(err:find(".safetensors", 1, true))
    ok, err = pcall(pthcv.save, support.tmpname(".npz"), { a = 1 })
    assert.is_false(ok)
    assert.is_truthy(err:find("not a tensor", 1, true))
    ok, err = pcall(pthcv.save, "/nonexistent-dir/x.npz", d)
    assert.is_false(ok)
    assert.is_truthy(err:find("nonexistent", 1, true))
  end)

  it("refuses a tensor name that is not UTF-8, naming the byte", function()
    -- a Python 2 checkpoint's byte-string key read as latin-1 bytes
    local d = { ["caf\xE9.weight"] = pthcv.zeros(2) }
    for _, ext in ipairs({ ".npz", ".safetensors" }) do
      local path = support.tmpname(ext)
      local ok, err = pcall(pthcv.save, path, d)
      assert.is_false(ok, ext)
      assert.is_truthy(err:find("tensor 'caf\\xe9.weight': its name is not UTF-8 (byte 0xE9 at offset 3)", 1, true), err)
      assert.is_truthy(err:find(path, 1, true), err)
      assert.is_nil(io.open(path), "nothing is left at " .. path)
    end
  end)

  it("writes files numpy reads back (when numpy is installed)", function()
    if not support.has_python_numpy() then
      pending("no numpy for /usr/bin/python3")
      return
    end
    local npz, npy = support.tmpname(".npz"), support.tmpname(".npy")
    local d = sample()
    pthcv.save(npz, d)
    pthcv.save(npy, d["layer.weight"])
    local script = "import numpy as np, sys\n" ..
      "z = np.load(sys.argv[1])\n" ..
      "for k in z.files: print(k, z[k].dtype.str, list(z[k].shape), z[k].tobytes().hex())\n" ..
      "a = np.load(sys.argv[2]); print('npy', a.dtype.str, list(a.shape), a.tobytes().hex())\n"
    local code, out, err = support.run("/usr/bin/python3 -c " .. support.shell_quote(script) .. " "
                                       .. support.shell_quote(npz) .. " " .. support.shell_quote(npy))
    os.remove(npz); os.remove(npy)
    assert.are.equal(0, code, err)
    local hex = support.hex
    local want = table.concat({
      "layer.weight <f4 [3, 2] " .. hex(d["layer.weight"]:bytes()),
      "layer.count <i8 [2] " .. hex(d["layer.count"]:bytes()),
      "npy <f4 [3, 2] " .. hex(d["layer.weight"]:bytes()),
    }, "\n") .. "\n"
    assert.are.equal(want, out)
  end)
end)
