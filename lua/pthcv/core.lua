-- lua/pthcv/core.lua: loads the C library once and declares its API.
--
-- Where the library is looked for, first hit wins:
--   1. the environment variable PTHCV_LIB (a path to libpthcv.so);
--   2. <checkout>/build/libpthcv.so, found relative to this file, so that a
--      checkout works after `make` without installing;
--   3. pthcv/libpthcv.so on package.cpath, where `luarocks make` puts it.
-- One instance per Lua state, even when package.loaded is cleared (busted
-- does between spec files): FFI types and metatables cannot be redefined.
local REGISTRY_KEY = "pthcv.core"
do local loaded = debug.getregistry()[REGISTRY_KEY]; if loaded then return loaded end end
local ffi = require "ffi"

ffi.cdef(require "pthcv.cdef")

local M = { ffi = ffi }

local function file_exists(p)
  local f = io.open(p, "rb")
  if f then f:close() return true end
  return false
end

local function this_dir()
  local src = debug.getinfo(1, "S").source
  if src:sub(1, 1) ~= "@" then return nil end
  return src:sub(2):match("^(.*)[/\\]") or "."
end

local function candidates()
  local list = {}
  local env = os.getenv("PTHCV_LIB")
  if env and env ~= "" then list[#list + 1] = env; return list end
  local dir = this_dir()
  if dir then list[#list + 1] = dir .. "/../../build/libpthcv.so" end
  local found = package.searchpath and package.searchpath("pthcv.libpthcv", package.cpath)
  if found then list[#list + 1] = found end
  return list
end

local function load_library()
  local tried = {}
  for _, p in ipairs(candidates()) do
    if file_exists(p) then
      local ok, lib = pcall(ffi.load, p)
      if ok then M.path = p; return lib end
      error("pthcv: cannot load " .. p .. ": " .. tostring(lib), 0)
    end
    tried[#tried + 1] = p
  end
  error("pthcv: the C library libpthcv.so is not built (looked for "
        .. table.concat(tried, ", ") .. "): run make in the pthcv checkout,"
        .. " or set PTHCV_LIB to its path", 0)
end

M.C = load_library()
local C = M.C

-- Libraries beside libpthcv.so that are loaded on first use:
-- libpthcv_imgcodecs.so, the image-file functions (pthcv_image_read,
-- _decode, _write): it links OpenCV's imgcodecs, whose ~120 dependencies
-- would otherwise be loaded at every start of pthcv (csrc/opencv/imgcodecs.cpp,
-- docs/performance.md); libpthcv_videoio.so, video files and cameras
-- (csrc/opencv/videoio.cpp).
local side = {}
local function side_library(file, what)
  if side[file] then return side[file] end
  local p = M.path:gsub("libpthcv%.so$", file)
  if p == M.path or not file_exists(p) then
    error("pthcv: the " .. what .. " library " .. file .. " is not beside " .. M.path
          .. ": run make in the pthcv checkout (or reinstall the rock)", 0)
  end
  local ok, lib = pcall(ffi.load, p)
  if not ok then error("pthcv: cannot load " .. p .. ": " .. tostring(lib), 0) end
  side[file] = lib
  return lib
end
function M.codecs() return side_library("libpthcv_imgcodecs.so", "image-file") end
function M.videoio() return side_library("libpthcv_videoio.so", "video") end

-- The C library's last error as a Lua error: "pthcv: <message>". The C
-- messages already name the file and the offset or record.
function M.fail(what)
  local msg = C.pthcv_last_error()
  msg = msg ~= nil and ffi.string(msg) or ""
  if msg == "" then msg = what or "unknown error" end
  error("pthcv: " .. msg, 0)
end

-- core.escape(s [, max]): a string taken from a file, made safe to put in a
-- message, as pthcv_esc does in C: valid UTF-8 stays as it is; control
-- characters and bytes that are not UTF-8 become \xNN, and a backslash
-- becomes \\, so "\xff" in a message always means the byte 0xff. With max,
-- the result is cut to about max bytes, ending in "...".
--   print(core.escape("café\255\n"))   --> café\xff\x0a
local function utf8_len(s, i, n)
  local c = s:byte(i)
  if c < 0x80 then return 1 end
  local len, min
  if c >= 0xC2 and c <= 0xDF then len, min = 2, 0x80
  elseif c >= 0xE0 and c <= 0xEF then len, min = 3, 0x800
  elseif c >= 0xF0 and c <= 0xF4 then len, min = 4, 0x10000
  else return 0 end
  if i + len - 1 > n then return 0 end
  local cp = c % 2 ^ (7 - len)
  for k = 1, len - 1 do
    local b = s:byte(i + k)
    if b < 0x80 or b > 0xBF then return 0 end
    cp = cp * 64 + (b - 0x80)
  end
  if cp < min or cp > 0x10FFFF or (cp >= 0xD800 and cp <= 0xDFFF) then return 0 end
  return len
end

function M.escape(s, max)
  s = tostring(s)
  if not s:find("[%z\1-\31\127-\255\\]") and (not max or #s <= max) then return s end
  local out, size, i, n = {}, 0, 1, #s
  while i <= n do
    local len = utf8_len(s, i, n)
    local c = s:byte(i)
    local piece
    if len == 0 or (len == 1 and (c < 0x20 or c == 0x7F)) or (len == 2 and c == 0xC2 and s:byte(i + 1) < 0xA0) then
      len = math.max(len, 1)
      piece = s:sub(i, i + len - 1):gsub(".", function(b) return string.format("\\x%02x", b:byte()) end)
    elseif c == 92 then
      piece = "\\\\"
    else
      piece = s:sub(i, i + len - 1)
    end
    if max and size + #piece > max then out[#out + 1] = "..."; break end
    out[#out + 1] = piece
    size = size + #piece
    i = i + len
  end
  return table.concat(out)
end

-- Calls a C function returning a status; raises the last error unless PTHCV_OK.
function M.check(status, what)
  if status ~= 0 then M.fail(what) end
  return status
end

-- Address of a pointer as a Lua number (exact on 64-bit user space).
function M.addr(p)
  return tonumber(ffi.cast("uintptr_t", p))
end

M.status_names = {
  [0] = "ok", "io", "format", "unsafe", "limit", "nomem", "arg", "unsupported",
}

debug.getregistry()[REGISTRY_KEY] = M
return M
