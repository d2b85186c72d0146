-- lua/pthcv/cli/detect.lua: the detection and segmentation commands.
--
--   pthcv detect  [--model NAME] --weights FILE (IMAGE... | --video FILE | --camera N)
--                 [--score-thresh S] [--labels FILE] [--json] [--draw OUT] [--threads N]
--   pthcv segment [--model NAME] --weights FILE (IMAGE... | --video FILE | --camera N)
--                 [--labels FILE] [--json] [--draw OUT] [--threads N]
--
-- The work is pthcv.image.pipeline's; this file declares the commands
-- (cli/runner.lua) and prints their records as text or JSON lines.
local options = require "pthcv.cli.options"
local runner = require "pthcv.cli.runner"

local M = {}

-- The registry of a task, and a usage error for a name it lacks.
local function check_model(task, name)
  local registry = require("pthcv.models")[task]
  if not registry.has(name) then
    error(runner.usage_error(string.format("--model: '%s' is not a %s model%s; %s models: %s", name, task,
                                           runner.did_you_mean(runner.suggest(name, registry.list()), ""), task,
                                           table.concat(registry.list(), ", "))), 0)
  end
end

-- Exactly one source: pictures, --video or --camera.
local function check_source(pos, opt)
  local n = (#pos > 0 and 1 or 0) + (opt.video and 1 or 0) + (opt.camera and 1 or 0)
  if n ~= 1 then
    error(runner.usage_error(n == 0 and "give pictures, --video FILE or --camera N"
                             or "give pictures, --video FILE or --camera N: only one of them"), 0)
  end
end

local function box_text(b)
  return string.format("(%.1f, %.1f) - (%.1f, %.1f)", b[1], b[2], b[3], b[4])
end

-- A record as text: its picture or frame, then one line per detection or class.
local function print_text(task, rec)
  io.stdout:write(rec.image or ("frame " .. rec.frame), "\n")
  if task == "segmentation" then
    local total = rec.size[1] * rec.size[2]
    for _, c in ipairs(rec.classes) do
      io.stdout:write(string.format("  %-14s %5.1f%%  (%d)\n", c.name, 100 * c.pixels / total, c.label))
    end
  else
    for _, d in ipairs(rec.detections) do
      io.stdout:write(string.format("  %-14s %.4f  %s  (%d)\n", d.name, d.score, box_text(d.box), d.label))
    end
  end
  if rec.drawn then io.stdout:write("  drawn: ", rec.drawn, "\n") end
end

local KEYORDER = { "image", "frame", "size", "detections", "classes", "drawn", "box", "label", "name", "score",
                   "pixels", "keypoints" }

local function printer(task, opt)
  if opt.json then
    local json = require "dkjson"
    return function(rec) io.stdout:write(json.encode(rec, { keyorder = KEYORDER }), "\n") end
  end
  return function(rec) print_text(task, rec) end
end

local function run_task(task, pos, opt)
  check_model(task, opt.model)
  check_source(pos, opt)
  local pthcv = require "pthcv"
  local pipeline = require "pthcv.image.pipeline"
  if opt.threads then pthcv.set_num_threads(opt.threads) end
  local model = pipeline.load(task, opt.model, opt.weights, opt.model_options)
  local popts = { labels = opt.labels, score_thresh = opt["score-thresh"], draw = opt.draw,
                  on_record = printer(task, opt) }
  if #pos > 0 then
    pipeline.images(model, pos, popts)
    return 0
  end
  popts.video, popts.camera, popts.max_frames = opt.video, opt.camera, opt["max-frames"]
  if not opt.quiet then popts.on_status = function(line) io.stderr:write(line) end end
  local n = pipeline.video(model, popts)
  if not opt.quiet then io.stderr:write("\n") end
  if n == 0 then error("pthcv: " .. (opt.video or ("camera " .. opt.camera)) .. ": no frame could be read", 0) end
  if opt.draw then io.stderr:write(string.format("%d frames drawn into %s\n", n, opt.draw)) end
  return 0
end

local function source_options(extra)
  return options.list({
    { "model", kind = "string", metavar = "NAME",
      help = "the model, by its torchvision name (default: the one whose\nkeys and shapes the weights have)" },
    { "weights", kind = "string", metavar = "FILE", help = "its state_dict (.pth, .safetensors, .npz, ...)" },
    { "video", kind = "string", metavar = "FILE", help = "a video file (or URL) instead of pictures" },
    { "camera", kind = "natural", metavar = "N", help = "camera N (cv::VideoCapture) instead of pictures" },
    { "max-frames", kind = "count", metavar = "N", help = "video: stop after N frames" },
  }, extra, {
    { "labels", kind = "string", metavar = "FILE", help = "class names, one per line from id 0" },
    { "json", help = "one JSON object per picture or frame" },
    { "draw", kind = "string", metavar = "OUT",
      help = "write the drawn result: a file (one picture), a folder\n(OUT/, one .png per picture) or a video file" },
    { "quiet", short = "q", help = "video: no status line" },
    options.threads,
  })
end

-- Without --model: the zoo model whose keys and shapes the weights have
-- (pthcv.models.recognize), with its options (num_classes, ...).
local function recognised(task, opt)
  local rec = require "pthcv.models.recognize"
  local name, options, r = rec.recognize(opt.weights)
  if not name then
    error(runner.usage_error(require("pthcv.cli.model").unrecognised_message(opt.weights, r, "--model NAME")), 0)
  end
  if r.task ~= task then
    error(runner.usage_error(string.format("%s holds the weights of %s, a %s model, not a %s one", opt.weights,
                                           rec.text(name, options), r.task, task)), 0)
  end
  io.stderr:write("pthcv: ", opt.weights, ": recognised ", rec.text(name, options), " (by its keys and shapes)\n")
  opt.model, opt.model_options = name, options
end

-- With --model: the options (num_classes, ...) that make that model take
-- the weights, when some do; otherwise loading them says what differs.
local function fitted(opt)
  local rec = require "pthcv.models.recognize"
  local ok, options, r = pcall(rec.fit, opt.weights, opt.model)
  if ok and options and not r.default then
    opt.model_options = options
    io.stderr:write("pthcv: ", opt.weights, ": ", rec.text(opt.model, options), " (from the weights' shapes)\n")
  end
end

local function checked(task)
  return function(pos, opt)
    if not opt.weights then error(runner.usage_error(task .. " needs --weights FILE"), 0) end
    if not opt.model then recognised(task, opt) else fitted(opt) end
    return run_task(task, pos, opt)
  end
end

M.detect = {
  name = "detect", args = "IMAGE...", nargs = { 0 },
  synopsis = "detect --model NAME --weights FILE (IMAGE... | --video FILE | --camera N)\n"
             .. "    [--score-thresh S] [--labels FILE] [--json] [--draw OUT]",
  summary = [[
objects found by a torchvision detector (ssdlite320_mobilenet_v3_large,
fasterrcnn_resnet50_fpn, ...): boxes, labels (COCO's names by default) and
scores per picture or frame; --draw writes them drawn with OpenCV; on video,
a status line shows frames per second and the time of each stage]],
  options = source_options({
    { "score-thresh", kind = "number", metavar = "S", help = "drop detections scoring below S" },
  }),
  run = checked("detection"),
}

M.segment = {
  name = "segment", args = "IMAGE...", nargs = { 0 },
  synopsis = "segment --model NAME --weights FILE (IMAGE... | --video FILE | --camera N)\n"
             .. "    [--labels FILE] [--json] [--draw OUT]",
  summary = [[
the classes of every pixel by a torchvision segmenter (fcn_resnet50,
deeplabv3_mobilenet_v3_large, lraspp_mobilenet_v3_large, ...): the classes
present (VOC's names by default) and their share of the picture; --draw
writes the picture with the classes coloured over it]],
  options = source_options({}),
  run = checked("segmentation"),
}

return M
