-- filestorage_spec: `pthcv convert ... -o OUT.yml|.yml.gz|.xml|.xml.gz|.json`
-- through cv::FileStorage (csrc/opencv/bridge.cpp), and --half.
--
-- Without Python: key derivation, refusals (int64 beyond int32, complex,
-- quantized), the file written whole or not at all. With Debian's
-- python3-opencv and python3-torch (spec/opencv/check_filestorage.py):
-- torch writes a state_dict with every dtype, pthcv converts it to all
-- seven suffixes, and cv2.FileStorage reads every Mat back, compared with
-- torch's tensor bit for bit. examples/read_filestorage.cpp (C++,
-- cv::FileStorage alone) reads the files too, and its per-tensor hashes must
-- equal those of pthcv's tensors, float16 included (--half).
local ffi = require "ffi"
local bit = require "bit"
local support = require "support"
local pthcv = require "pthcv"

local C = pthcv.C
local CHECK = support.root .. "/spec/opencv/check_filestorage.py"
local SUFFIXES = { "yml", "yml.gz", "yaml", "xml", "xml.gz", "json", "json.gz" }

local function key_of(name)
  local buf = ffi.new("char[?]", 512)
  assert(C.pthcv_filestorage_key(name, buf, 512) == 0)
  return ffi.string(buf)
end

local function has_python(mods)
  return support.run("/usr/bin/python3 -c " .. support.shell_quote("import " .. mods)) == 0
end

-- FNV-1a 64 of a tensor's contiguous bytes, zeros of float tensors with
-- their sign cleared (OpenCV's text writer prints -0.0 as "0.").
local FNV_PRIME, FNV_BASIS = 1099511628211ULL, 14695981039346656037ULL
local function fnv(t)
  t = t:contiguous()
  if t.is_floating_point and t.dtype ~= "float16" then
    t = t:clone()
    local p = t:data()
    for i = 0, t.numel - 1 do if p[i] == 0 then p[i] = 0 end end
  elseif t.dtype == "float16" then
    t = t:clone()
    local p = t:data()
    for i = 0, t.numel - 1 do if p[i] == 0x8000 then p[i] = 0 end end
  end
  local s = t:bytes()
  local h = FNV_BASIS
  for i = 1, #s do h = bit.bxor(h, s:byte(i)) * FNV_PRIME end
  return string.format("%016x", h)
end

-- What a tensor is stored as (see pthcv_filestorage_write).
local function stored(t, half)
  if half and (t.dtype == "float32" or t.dtype == "float64" or t.dtype == "bfloat16") then return t:to("float16") end
  if t.dtype == "bfloat16" then return t:float() end
  if t.dtype == "int64" then return t:to("int32") end
  return t
end

describe("FileStorage weights", function()
  it("derives valid keys from tensor names", function()
    assert.are.equal("conv1_weight", key_of("conv1.weight"))
    assert.are.equal("_0_bias", key_of("0.bias"))
    assert.are.equal("_-x", key_of("-x"))
    assert.are.equal("a-b_c_d", key_of("a-b/c d"))
    assert.are.equal("_", key_of(""))
    assert.are.equal("layer1_0_bn1_running_var", key_of("layer1.0.bn1.running_var"))
  end)

  it("gives colliding keys a suffix and lists every name in pthcv_names", function()
    local path = support.tmpname(".yml")
    pthcv.save(path, { { "a.b", pthcv.ones({ 2 }) }, { "a/b", pthcv.zeros({ 2 }) }, { "a_b", pthcv.ones({ 1 }) },
                       { "pthcv_names", pthcv.ones({ 1 }) } })
    local text = assert(support.read_file(path))
    assert.truthy(text:find("key: a_b\n", 1, true))
    assert.truthy(text:find("key: a_b_2\n", 1, true))
    assert.truthy(text:find("key: a_b_3\n", 1, true))
    assert.truthy(text:find("key: pthcv_names_2\n", 1, true))
    assert.truthy(text:find('name: "a.b"', 1, true))
    assert.truthy(text:find("\na_b_3: !!opencv-matrix", 1, true))
    os.remove(path)
  end)

  it("refuses int64 values beyond int32, complex and quantized tensors, naming them", function()
    local path = support.tmpname(".yml.gz")
    local ok, e = pcall(pthcv.save, path, { { "fine", pthcv.ones({ 2 }) },
                                            { "steps", pthcv.tensor({ 1, 2 ^ 40 }, "int64") } })
    assert.is_false(ok)
    assert.truthy(e:find("tensor 'steps' (int64) holds a value outside int32 at flat index 1", 1, true), e)
    assert.is_nil(support.read_file(path)) -- nothing written
    ok, e = pcall(pthcv.save, path, { { "z", pthcv.zeros({ 2 }, "complex64") } })
    assert.is_false(ok)
    assert.truthy(e:find("tensor 'z' has dtype complex64", 1, true), e)
    local q = pthcv.state_dict(support.root .. "/spec/fixtures/quantized.pth")
    for name, t in pairs(q) do
      if t.is_quantized then
        ok, e = pcall(pthcv.save, path, { { name, t } })
        assert.is_false(ok)
        assert.truthy(e:find("is quantized", 1, true), e)
        break
      end
    end
    assert.is_nil(support.read_file(path))
    ok, e = pcall(pthcv.save, support.tmpname(".yml.bz2"), { { "a", pthcv.ones({ 1 }) } })
    assert.is_false(ok)
  end)

  -- texts OpenCV 4.6 would misread (csrc/opencv/filestorage_read.cpp):
  -- refused before it sees them, with the offset
  it("refuses a text with a NUL byte and XML ending after an attribute's '='", function()
    local function nul_at(text) return "a NUL byte at offset " .. (text:find("\0", 1, true) - 1) end
    local function last_eq(text) return "after the '=' at offset " .. (text:match(".*()=") - 1) end
    local yml = "%YAML:1.0\n---\nw: 1\0\nv: 2\n"
    local xml_eq = '<?xml version="1.0"?>\n<opencv_storage>\n<w type_id= \n'
    local xml_nul = '<?xml version="1.0"?>\n<opencv_storage>\n<w type_id="opencv-matrix"></w>\0'
    local cases = { { ".yml", yml, nul_at(yml) }, { ".xml", xml_eq, last_eq(xml_eq) },
                    { ".xml", xml_nul, nul_at(xml_nul) } }
    for _, c in ipairs(cases) do
      local path = support.tmpname(c[1])
      support.write_file(path, c[2])
      local ok, e = pcall(pthcv.named_tensors, path)
      os.remove(path)
      assert.is_false(ok, c[2])
      assert.is_truthy(tostring(e):find(path, 1, true), tostring(e))
      assert.is_truthy(tostring(e):find(c[3], 1, true), tostring(e))
    end
  end)

  it("--half refuses floating values beyond float16's range", function()
    local half = require "pthcv.export.half"
    local ok, e = pcall(half.to_half, "big", pthcv.tensor({ 1, 70000 }))
    assert.is_false(ok)
    assert.truthy(e:find("tensor 'big' holds 70000", 1, true), e)
    assert.are.equal("int64", half.to_half("n", pthcv.tensor({ 1 }, "int64")).dtype)
    assert.are.equal("float16", half.to_half("w", pthcv.tensor({ 1.5 }, "float64")).dtype)
  end)

  if not has_python("cv2, torch, numpy") then
    pending("python3-opencv or python3-torch is not installed: the OpenCV read-back checks do not run")
    return
  end

  local dir = support.tmpname("-fs")
  assert(os.execute("mkdir -p " .. support.shell_quote(dir)))
  local weights = dir .. "/weights.pth"
  local code, _, err = support.run("/usr/bin/python3 " .. CHECK .. " make " .. support.shell_quote(dir))
  assert(code == 0, err)

  it("writes every suffix, and cv2.FileStorage reads back torch's tensors bit for bit", function()
    local args = {}
    for _, sfx in ipairs(SUFFIXES) do
      local out = dir .. "/w." .. sfx
      local c, o, e = support.pthcv("convert", weights, "-o", out)
      assert.are.equal(0, c, e)
      assert.truthy(o:find("20 tensors written", 1, true), o)
      args[#args + 1] = support.shell_quote(out .. "=" .. weights)
    end
    local c, o, e = support.run("/usr/bin/python3 " .. CHECK .. " check " .. table.concat(args, " "))
    assert.are.equal(0, c, e)
    local json = require "dkjson"
    local n = 0
    for line in o:gmatch("[^\n]+") do
      local r = json.decode(line)
      n = n + 1
      assert.are.same({}, r.errors, r.file)
      assert.are.equal(19, r.checked, r.file) -- all but the float16 one (C++ below)
      assert.are.equal(1, r.skipped, r.file)
    end
    assert.are.equal(#SUFFIXES, n)
    -- the refusals through the CLI
    c, _, e = support.pthcv("convert", dir .. "/overflow.pth", "-o", dir .. "/o.yml")
    assert.are.equal(1, c)
    assert.truthy(e:find("'big.counter' (int64) holds a value outside int32", 1, true), e)
    c, _, e = support.pthcv("convert", dir .. "/complex.pth", "-o", dir .. "/c.json")
    assert.are.equal(1, c)
    assert.truthy(e:find("'z' has dtype complex64", 1, true), e)
  end)

  -- examples/read_filestorage.cpp, built against Debian's libopencv-dev
  local reader = support.root .. "/build/examples/read_filestorage"
  local function build_reader()
    os.execute("mkdir -p " .. support.shell_quote(support.root .. "/build/examples"))
    local c, _, e = support.run("c++ -std=c++17 -O1 " .. support.shell_quote(support.root .. "/examples/read_filestorage.cpp")
                                .. " $(pkg-config --cflags --libs opencv4) -o " .. support.shell_quote(reader))
    assert(c == 0, e)
  end

  -- The C++ reader's lines for path, by tensor name.
  local function read_cpp(path)
    local c, o, e = support.run(support.shell_quote(reader) .. " " .. support.shell_quote(path))
    assert.are.equal(0, c, e)
    local rows = {}
    for line in o:gmatch("[^\n]+") do
      local name, key, depth, sizes, shape, sum, hash = line:match("^(.-)\t(.-)\t(.-)\t(.-)\t(.-)\t(.-)\t(.-)$")
      rows[name] = { key = key, depth = depth, sizes = sizes, shape = shape, sum = tonumber(sum), hash = hash }
    end
    return rows
  end

  local DEPTH = { float32 = "CV_32F", float64 = "CV_64F", float16 = "CV_16F", int8 = "CV_8S", uint8 = "CV_8U",
                  bool = "CV_8U", int16 = "CV_16S", int32 = "CV_32S", uint16 = "CV_16U" }

  local function compare_cpp(path, half)
    local rows = read_cpp(path)
    local n = 0
    for name, t in pairs(pthcv.state_dict(half and (dir .. "/half.pth") or weights)) do
      local r = assert(rows[name], name .. " not read by the C++ example")
      local s = stored(t, half)
      local want_depth = DEPTH[s.dtype]
      if s.numel == 0 then want_depth = "CV_8U" end -- an empty Mat
      assert.are.equal(want_depth, r.depth, name)
      assert.are.equal("[" .. table.concat(t.shape, "x") .. "]", r.shape, name)
      if s.numel > 0 then assert.are.equal(fnv(s), r.hash, name) end
      n = n + 1
    end
    return n
  end

  it("is read by examples/read_filestorage.cpp (cv::FileStorage in C++), every tensor's bytes equal", function()
    build_reader()
    for _, sfx in ipairs { "yml.gz", "xml", "json" } do
      local out = dir .. "/cpp." .. sfx
      assert.are.equal(0, (support.pthcv("convert", weights, "-o", out)))
      assert.are.equal(20, compare_cpp(out))
    end
  end)

  it("--half stores floating weights as CV_16F (npz and safetensors as float16), the C++ reader agrees", function()
    build_reader()
    local out = dir .. "/h.yml.gz"
    local c, _, e = support.pthcv("convert", weights, "-o", out, "--half")
    assert.are.equal(1, c)
    assert.truthy(e:find("tensor 'extremes' holds 3.4e+38, beyond float16's range", 1, true), e)
    c, _, e = support.pthcv("convert", dir .. "/half.pth", "-o", out, "--half")
    assert.are.equal(0, c, e)
    assert.are.equal(18, compare_cpp(out, true))
    -- npz / safetensors: float16 entries, the bytes of torch's .half(), about half the size
    -- (resnet18 from the zoo fixtures; without them the file of values float16 holds)
    local zoo = os.getenv("PTHCV_ZOO")
    if zoo == "" then zoo = nil end
    local src = zoo and (zoo .. "/resnet18.pth") or (dir .. "/half.pth")
    local sd = pthcv.state_dict(src)
    for _, ext in ipairs { "safetensors", "npz" } do
      local full, half = dir .. "/f." .. ext, dir .. "/h." .. ext
      -- (half.pth holds bfloat16, which .npz has not: its full-size copy is float32)
      assert.are.equal(0, (support.pthcv("convert", src, "-o", full, "--state-dict", "--dtype", "float32")))
      assert.are.equal(0, (support.pthcv("convert", src, "-o", half, "--state-dict", "--half")))
      local sf, sh = #support.read_file(full), #support.read_file(half)
      print(string.format("# --half %s of %s: %d -> %d bytes (%.3f)", ext, src:match("[^/]+$"), sf, sh, sh / sf))
      if zoo then assert.is_true(sh / sf < 0.51, ext) end
      if ext == "safetensors" then
        local st = support.parse_safetensors(support.read_file(half))
        for name, t in pairs(sd) do
          local e = assert(st.tensors[name], name)
          if t.dtype == "float32" then
            assert.are.equal("F16", e.dtype, name)
            assert.are.equal(t:to("float16"):bytes(), e.bytes, name)
          end
        end
      end
    end
  end)
end)
