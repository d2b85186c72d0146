-- lua/pthcv/cli/progress.lua: a progress bar on stderr, drawn only when
-- stderr is a terminal (piped or redirected output stays quiet).
--
--   local bar = progress.new("converting", {percent = true})   -- nothing drawn yet
--   bar:update(done, total, "layer4.1.conv2.weight")
--   bar:finish()                               -- clears the line
--
-- A bar appears once the work has taken `delay` seconds (default 0.3), so
-- quick commands print nothing extra; it is redrawn at most 20 times a
-- second. PTHCV_PROGRESS=1 draws it on any stderr and at once (logs,
-- tests), PTHCV_PROGRESS=0 never.
local ffi = require "ffi"
local now = require "pthcv.nn.clock"

pcall(ffi.cdef, "int isatty(int fd);")

local M = {}
local WIDTH = 30

function M.enabled()
  local env = os.getenv("PTHCV_PROGRESS")
  if env == "1" then return true elseif env == "0" then return false end
  return ffi.C.isatty(2) == 1
end

-- The bar's line: "\r[####......] 12/40  label  text" (or " 30%" with
-- percent), at most 100 columns.
function M.line(done, total, label, text, percent)
  local fill = total > 0 and math.floor(WIDTH * math.min(done, total) / total) or 0
  local count
  if percent then count = string.format("%3d%%", total > 0 and math.floor(100 * done / total) or 0)
  else count = string.format("%d/%d", done, total) end
  local s = string.format("\r[%s%s] %s  %s%s", string.rep("#", fill), string.rep(".", WIDTH - fill), count,
                          label or "", text and text ~= "" and ("  " .. text) or "")
  if #s > 100 then s = s:sub(1, 100) end
  return s .. "\27[K"
end

local Bar = {}
Bar.__index = Bar

function M.new(label, opts)
  opts = opts or {}
  local forced = os.getenv("PTHCV_PROGRESS") == "1"
  return setmetatable({ label = label, on = M.enabled(), start = now(), delay = forced and 0 or opts.delay or 0.3,
                        last = 0, shown = false, percent = opts.percent }, Bar)
end

function Bar:update(done, total, text)
  if not self.on then return end
  local t = now()
  if t - self.start < self.delay or (t - self.last < 0.05 and done < total) then return end
  self.last, self.shown = t, true
  io.stderr:write(M.line(done, total, self.label, text, self.percent))
  io.stderr:flush()
end

-- A stage whose length is unknown and known to be slow (OpenCV parsing a
-- FileStorage file): the label alone, drawn at once.
function Bar:stage(label)
  self.label = label
  if self.on then
    self.shown = true
    io.stderr:write("\r", label, " ...\27[K")
    io.stderr:flush()
  end
end

-- Before pthcv.load(path): a FileStorage file (text or gzip) is parsed by
-- OpenCV in one go, with no progress to report: say so while it runs.
function Bar:loading(path)
  local f = io.open(path, "rb")
  local head = f and f:read(16) or ""
  if f then f:close() end
  if head:match("^\31\139") or head:match("^%%YAML") or head:match("^<%?xml") or head:match("^%s*{") then
    self:stage("reading " .. path:match("[^/]*$") .. " (OpenCV FileStorage)")
  end
end

function Bar:finish()
  if self.shown then io.stderr:write("\r\27[K"); io.stderr:flush() end
  self.shown = false
end

return M
