-- spec/support.lua: helpers shared by the specs (not a spec itself).
local M = {}

local function this_dir()
  local src = debug.getinfo(1, "S").source
  return src:sub(2):match("^(.*)/[^/]*$") or "."
end

M.root = os.getenv("PTHCV_ROOT") or (this_dir() .. "/..")
M.bin = M.root .. "/bin/pthcv"

package.path = M.root .. "/lua/?.lua;" .. M.root .. "/lua/?/init.lua;" .. package.path

local hexdigits = {}
for i = 0, 255 do hexdigits[string.char(i)] = string.format("%02x", i) end
function M.hex(s) return (s:gsub(".", hexdigits)) end

function M.unhex(h) return (h:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end)) end

function M.shell_quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("*a")
  f:close()
  return s
end

function M.write_file(path, data)
  local f = assert(io.open(path, "wb"))
  f:write(data)
  f:close()
end

-- A fresh path under build/spec-tmp, unique to this process: tools/run-specs
-- runs spec files side by side, and LuaJIT's math.random starts from the
-- same seed in every process, so the names carry the process id.
local ffi = require "ffi"
pcall(ffi.cdef, "int getpid(void);")
local tmp_count = 0
function M.tmpname(suffix)
  tmp_count = tmp_count + 1
  local dir = M.root .. "/build/spec-tmp"
  os.execute("mkdir -p " .. M.shell_quote(dir))
  return string.format("%s/%d-%d%s", dir, ffi.C.getpid(), tmp_count, suffix or "")
end

-- Runs a shell command; returns exit code, stdout, stderr.
function M.run(cmd)
  local out, err = M.tmpname(".out"), M.tmpname(".err")
  local r1, r2, r3 = os.execute(cmd .. " >" .. M.shell_quote(out) .. " 2>" .. M.shell_quote(err) .. " </dev/null")
  local code
  if type(r1) == "number" then -- Lua 5.1 / LuaJIT: the wait status
    code = r1 >= 256 and math.floor(r1 / 256) or r1
  else -- 5.2 style: ok, "exit", code
    code = r3
  end
  local o, e = M.read_file(out) or "", M.read_file(err) or ""
  os.remove(out); os.remove(err)
  return code, o, e
end

-- Runs bin/pthcv with arguments (each quoted).
function M.pthcv(...)
  local parts = { "luajit", M.shell_quote(M.bin) }
  for _, a in ipairs { ... } do parts[#parts + 1] = M.shell_quote(a) end
  return M.run(table.concat(parts, " "))
end

-- The model-zoo fixtures' folder (PTHCV_ZOO), or nil and why they are
-- missing, for pending():
--   local zoo, why = support.zoo("what needs them"); if not zoo then pending(why) return end
function M.zoo(what)
  local dir = os.getenv("PTHCV_ZOO")
  if dir and dir ~= "" then return dir end
  return nil, (what or "the model-zoo specs") .. ": PTHCV_ZOO is not set (tools/run-specs sets it after "
              .. "writing the fixtures with spec/fixtures/make_zoo_fixtures.py, which needs torch and torchvision)"
end

function M.has_python_numpy()
  if M._numpy == nil then
    M._numpy = M.run("/usr/bin/python3 -c 'import numpy'") == 0
  end
  return M._numpy
end

-- The fixture sets to run over: {dir, expected} for each that exists.
function M.fixture_sets()
  local sets = {}
  local default = os.getenv("PTHCV_FIXTURES")
  if default == nil or default == "" then default = M.root .. "/spec/fixtures" end
  local dirs = { default }
  local torch_dir = os.getenv("PTHCV_FIXTURES_TORCH")
  if torch_dir and torch_dir ~= "" then dirs[#dirs + 1] = torch_dir end
  for i, d in ipairs(dirs) do
    local path = d .. "/expected.lua"
    local chunk = loadfile(path)
    sets[#sets + 1] = { dir = d, expected = chunk and chunk() or nil, path = path,
                        committed = i == 1 }
  end
  return sets
end

-- Sorted keys of a plain table.
function M.sorted_keys(t)
  local keys = {}
  for k in next, t do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

function M.close(a, b, rel)
  rel = rel or 1e-6
  if a == b then return true end
  if a ~= a and b ~= b then return true end
  return math.abs(a - b) <= rel * math.max(1, math.abs(a), math.abs(b))
end

-- ---- minimal readers of what pthcv writes ---------------------------------
local function u16(s, i) local a, b = s:byte(i, i + 1); return a + b * 256 end
local function u32(s, i) local a, b, c, d = s:byte(i, i + 3); return a + b * 256 + c * 65536 + d * 16777216 end
local function u64(s, i) return u32(s, i) + u32(s, i + 4) * 4294967296 end
M.u16, M.u32, M.u64 = u16, u32, u64

-- .npy: {descr, shape = {...}, fortran_order, data}
function M.parse_npy(s)
  assert(s:sub(1, 6) == "\147NUMPY", "not a .npy file")
  local major = s:byte(7)
  local hlen, start
  if major == 1 then hlen, start = u16(s, 9), 11 else hlen, start = u32(s, 9), 13 end
  local header = s:sub(start, start + hlen - 1)
  local descr = header:match("'descr':%s*'([^']*)'")
  local fortran = header:match("'fortran_order':%s*(%a+)")
  local shape_s = header:match("'shape':%s*%(([^)]*)%)")
  local shape = {}
  for n in shape_s:gmatch("%d+") do shape[#shape + 1] = tonumber(n) end
  return { descr = descr, fortran_order = fortran == "True", shape = shape,
           data = s:sub(start + hlen), header = header, data_offset = start + hlen - 1 }
end

-- .safetensors: header table (dkjson) and the data section
function M.parse_safetensors(s)
  local json = require "dkjson"
  local n = u64(s, 1)
  local header = json.decode(s:sub(9, 8 + n))
  local data = s:sub(9 + n)
  local out = { header = header, tensors = {}, header_len = n }
  for name, e in pairs(header) do
    if name ~= "__metadata__" then
      out.tensors[name] = { dtype = e.dtype, shape = e.shape,
                            bytes = data:sub(e.data_offsets[1] + 1, e.data_offsets[2]),
                            offsets = e.data_offsets }
    end
  end
  return out
end

-- Stored (uncompressed) zip members: {name = bytes}, names in order
function M.read_zip(s)
  local eocd
  for i = #s - 21, math.max(1, #s - 65557), -1 do
    if s:sub(i, i + 3) == "PK\5\6" then eocd = i; break end
  end
  assert(eocd, "no end of central directory")
  local count, cd_off = u16(s, eocd + 10), u32(s, eocd + 16)
  if cd_off == 0xffffffff or count == 0xffff then -- zip64
    local loc = s:sub(eocd - 20, eocd - 17) == "PK\6\7" and eocd - 20
    assert(loc, "zip64 locator missing")
    local z = u64(s, loc + 8) + 1
    count, cd_off = u64(s, z + 32), u64(s, z + 48)
  end
  local members, order = {}, {}
  local p = cd_off + 1
  for _ = 1, count do
    assert(s:sub(p, p + 3) == "PK\1\2", "bad central directory entry")
    local method = u16(s, p + 10)
    local csize, usize = u32(s, p + 20), u32(s, p + 24)
    local nlen, xlen, clen = u16(s, p + 28), u16(s, p + 30), u16(s, p + 32)
    local lho = u32(s, p + 42)
    local name = s:sub(p + 46, p + 45 + nlen)
    local extra = s:sub(p + 46 + nlen, p + 45 + nlen + xlen)
    -- zip64 extra field: the sizes/offset that are 0xffffffff, in order
    local q = 1
    while q + 3 <= #extra do
      local id, sz = u16(extra, q), u16(extra, q + 2)
      if id == 1 then
        local r = q + 4
        if usize == 0xffffffff then usize = u64(extra, r); r = r + 8 end
        if csize == 0xffffffff then csize = u64(extra, r); r = r + 8 end
        if lho == 0xffffffff then lho = u64(extra, r) end
      end
      q = q + 4 + sz
    end
    assert(method == 0, "member " .. name .. " is compressed (method " .. method .. ")")
    local l = lho + 1
    local lnlen, lxlen = u16(s, l + 26), u16(s, l + 28)
    local start = l + 30 + lnlen + lxlen
    members[name] = s:sub(start, start + usize - 1)
    order[#order + 1] = name
    p = p + 46 + nlen + xlen + clen
  end
  return members, order
end

-- The packs alive after a full collection (F.pack_info's keys): what a
-- leak of prepared weights makes grow.
function M.live_packs()
  local F = require "pthcv.nn.functional"
  collectgarbage(); collectgarbage()
  local n = 0
  for _ in pairs(F.pack_info) do n = n + 1 end
  return n
end

return M
