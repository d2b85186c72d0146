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
-- took 90 ms to load at every start of pthcv (csrc/opencv/imgcodecs.cpp);
-- libpthcv_videoio.so, video files and cameras (csrc/opencv/videoio.cpp).
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
