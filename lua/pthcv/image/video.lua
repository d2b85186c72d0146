-- lua/pthcv/image/video.lua: pthcv.video, video files and cameras through
-- OpenCV's cv::VideoCapture and cv::VideoWriter (csrc/opencv/videoio.cpp,
-- in libpthcv_videoio.so, loaded on first use).
--
--   local v = pthcv.video.open("clip.mp4")        -- or pthcv.video.open(0): camera 0
--   print(v.fps, v.width, v.height, v.frame_count) -- frame_count: -1 when unknown (cameras)
--   local w = pthcv.video.writer("out.mp4", { fps = v.fps, width = v.width, height = v.height })
--   for frame in v:frames() do                    -- uint8 [H, W, 3] BGR, as pthcv.image.read
--     w:write(frame)
--   end
--   v:close(); w:close()
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"

local M = {}

local Video = {}
Video.__index = Video

-- open(path) or open(camera_index)
function M.open(source)
  local lib = core.videoio()
  local h
  if type(source) == "number" then
    h = lib.pthcv_video_open(nil, source)
  elseif type(source) == "string" then
    h = lib.pthcv_video_open(source, -1)
  else
    error("pthcv.video.open: expects a file path or a camera index, got " .. type(source), 2)
  end
  if h == nil then core.fail("cannot open the video " .. tostring(source)) end
  h = ffi.gc(h, lib.pthcv_video_close)
  local info = ffi.new("double[4]")
  core.check(lib.pthcv_video_info(h, info), "video information")
  return setmetatable({ handle = h, source = source, fps = info[0], width = info[1], height = info[2],
                        frame_count = info[3] }, Video)
end

-- the next frame, or nil at the end
function Video:read()
  if not self.handle then error("pthcv.video: read after close", 2) end
  local t = core.videoio().pthcv_video_read(self.handle)
  if t == nil then
    if core.C.pthcv_last_status() == 0 then return nil end
    core.fail("cannot read " .. tostring(self.source))
  end
  return Tensor.wrap(t, true)
end

function Video:frames() return function() return self:read() end end

function Video:close()
  if self.handle then
    ffi.gc(self.handle, nil)
    core.videoio().pthcv_video_close(self.handle)
    self.handle = nil
  end
end

local Writer = {}
Writer.__index = Writer

-- writer(path, {fps, width, height [, fourcc]}): fourcc "mp4v", "MJPG", ...
-- (default from the extension: .avi MJPG, else mp4v)
function M.writer(path, o)
  o = o or {}
  if type(path) ~= "string" then error("pthcv.video.writer: expects a file path", 2) end
  local lib = core.videoio()
  local h = lib.pthcv_video_writer_open(path, o.fourcc, o.fps or 25, o.width or 0, o.height or 0)
  if h == nil then core.fail("cannot write the video " .. path) end
  return setmetatable({ handle = ffi.gc(h, lib.pthcv_video_writer_close), path = path }, Writer)
end

function Writer:write(frame)
  if not self.handle then error("pthcv.video: write after close", 2) end
  core.check(core.videoio().pthcv_video_write(self.handle, frame.ct), "write to " .. self.path)
end

-- finishes the file; errors if a write had failed
function Writer:close()
  if self.handle then
    local h = self.handle
    self.handle = nil
    ffi.gc(h, nil)
    core.check(core.videoio().pthcv_video_writer_close(h), "finish " .. self.path)
  end
end

return M
