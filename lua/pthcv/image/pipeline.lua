-- lua/pthcv/image/pipeline.lua: the jobs of `pthcv detect` and `pthcv
-- segment` as functions: a model loaded by name with its weights, then
-- pictures, a video file or a camera run through it, each result reported
-- as a record (for --json), drawn when asked, and, on video, a status line
-- with frames per second and the time of each stage.
--
--   local pipeline = require "pthcv.image.pipeline"
--   local model = pipeline.load("detection", "ssdlite320_mobilenet_v3_large", "ssdlite.pth",
--                               { score_thresh = 0.3 })
--   pipeline.images(model, { "a.jpg", "b.jpg" }, { draw = "out/", on_record = print_json })
--   pipeline.video(model, { video = "clip.mp4", draw = "out.mp4", on_status = io.write })
--
-- Records: {image = path | frame = n, detections = {{box, label, name,
-- score [, keypoints]}, ...}} for detection (masks are drawn, not listed),
-- {image | frame, size = {w, h}, classes = {{label, name, pixels}, ...}}
-- for segmentation. Stage times (seconds, per frame): decode (reading the
-- frame), preprocess (to float and the model's resize and normalisation),
-- network (backbone and heads), postprocess (anchors, NMS, mapping back,
-- masks), draw (drawing and encoding the output).
local detect = require "pthcv.image.detect"
local image = require "pthcv.image"
local util = require "pthcv.models.detection.util"

local M = {}
local now = util.now

-- The tensors of a picture's pass (feature maps, head outputs: tens of MB)
-- are freed by the garbage collector, which does not see their size: run
-- it after each picture, or memory grows with every frame of a video.
local function collect() collectgarbage() end

-- load(task, name, weights [, opts]): the model ("detection" or
-- "segmentation"), its state_dict loaded (a segmentation state_dict with
-- aux_classifier weights gets the aux head, as torchvision's weights have
-- it), in eval mode
function M.load(task, name, weights, opts)
  local pthcv = require "pthcv"
  local registry = pthcv.models[task]
  if not registry or not registry.has(name) then
    error(string.format("pthcv: unknown %s model '%s' (known: %s)", task, tostring(name),
                        table.concat(registry and registry.list() or {}, ", ")), 0)
  end
  local sd = pthcv.state_dict(weights)
  opts = opts or {}
  if task == "segmentation" and opts.aux_loss == nil and name ~= "lraspp_mobilenet_v3_large" then
    for k in pairs(sd) do
      if type(k) == "string" and k:match("^aux_classifier%.") then opts.aux_loss = true; break end
    end
  end
  local model = registry.get(name, opts)
  model:load_state_dict(sd)
  return model:eval()
end

local function record_of(task, result)
  if task == "segmentation" then
    return { size = result.size, classes = result.present }
  end
  local list = {}
  for i, d in ipairs(result) do
    list[i] = { box = d.box, label = d.label, name = d.name, score = d.score, keypoints = d.keypoints }
  end
  return { detections = list }
end

-- one picture (an image tensor) through the model: result, record, drawn (when asked)
local function run_one(task, model, img, opts, times)
  util.timer = times
  local t0 = now()
  local result
  if task == "segmentation" then
    result = detect.segment(model, img, opts)
  else
    result = detect.detect(model, img, opts)
  end
  util.timer = nil
  local total = now() - t0
  times.postprocess = (times.postprocess or 0) + total - (times.preprocess or 0) - (times.network or 0)
  local drawn
  if opts.draw then
    local t1 = now()
    drawn = task == "segmentation" and image.draw_segmentation(img, result) or image.draw_detections(img, result, opts)
    times.draw = (times.draw or 0) + (now() - t1)
  end
  return result, record_of(task, result), drawn
end

local function task_of(model)
  local seg = require "pthcv.models.segmentation"
  for _, cls in ipairs({ seg.FCN, seg.DeepLabV3, seg.LRASPP }) do
    if getmetatable(model) == cls then return "segmentation" end
  end
  return "detection"
end
M.task_of = task_of

-- the output path of picture i: opts.draw itself for one picture, else a
-- file named after the picture inside the folder opts.draw
local function output_path(draw, path, n)
  if n == 1 and not draw:match("/$") then return draw end
  os.execute("mkdir -p '" .. draw:gsub("'", "'\\''") .. "'")
  local base = path:match("([^/]+)$"):gsub("%.[^.]*$", "")
  return (draw:gsub("/+$", "")) .. "/" .. base .. ".png"
end

-- images(model, paths [, opts]): each picture; opts.on_record(record) for
-- each, opts.draw an output file (one picture) or folder. Returns the records.
function M.images(model, paths, opts)
  opts = opts or {}
  local task, records = task_of(model), {}
  for i, path in ipairs(paths) do
    local times = {}
    local img = image.read(path)
    local _, rec, drawn = run_one(task, model, img, opts, times)
    rec.image = path
    if drawn then
      rec.drawn = output_path(opts.draw, path, #paths)
      image.write(rec.drawn, drawn)
    end
    records[i] = rec
    if opts.on_record then opts.on_record(rec) end
    collect()
  end
  return records
end

local function status_line(n, total, fps, avg)
  local function ms(k) return string.format("%s %.1f ms", k, 1000 * (avg[k] or 0)) end
  return string.format("\rframe %d%s  %.1f fps  %s  %s  %s  %s  %s", n, total > 0 and ("/" .. total) or "", fps,
                       ms("decode"), ms("preprocess"), ms("network"), ms("postprocess"), ms("draw"))
end

-- video(model, {video = path | camera = n, draw = out.mp4, max_frames,
-- on_record, on_status}): every frame through the model; the drawn frames
-- written to `draw` (a video file, same size and rate); on_status(line)
-- after each frame with the running averages. Returns the frame count and
-- the average stage times.
function M.video(model, opts)
  local video = require "pthcv.image.video"
  local task = task_of(model)
  local v = video.open(opts.camera or opts.video)
  local writer
  if opts.draw then
    writer = video.writer(opts.draw, { fps = v.fps > 0 and v.fps or 25, width = v.width, height = v.height,
                                       fourcc = opts.fourcc })
  end
  local sums, n, t_start = {}, 0, now()
  while not opts.max_frames or n < opts.max_frames do
    local times = {}
    local t0 = now()
    local frame = v:read()
    if not frame then break end
    times.decode = now() - t0
    n = n + 1
    local _, rec, drawn = run_one(task, model, frame, opts, times)
    if writer then
      local t1 = now()
      writer:write(drawn)
      times.draw = (times.draw or 0) + (now() - t1)
    end
    rec.frame = n
    collect()
    for k, t in pairs(times) do sums[k] = (sums[k] or 0) + t end
    if opts.on_record then opts.on_record(rec) end
    if opts.on_status then
      local avg = {}
      for k, t in pairs(sums) do avg[k] = t / n end
      opts.on_status(status_line(n, v.frame_count, n / (now() - t_start), avg))
    end
  end
  v:close()
  if writer then writer:close() end
  local avg = {}
  for k, t in pairs(sums) do avg[k] = t / math.max(n, 1) end
  return n, avg
end

return M
