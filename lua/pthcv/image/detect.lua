-- lua/pthcv/image/detect.lua: pthcv.detect and pthcv.segment, detection and
-- segmentation models applied to OpenCV images, results as Lua tables.
--
--   local det = pthcv.models.detection.ssdlite320_mobilenet_v3_large()
--   det:load_state_dict(pthcv.state_dict("ssdlite.pth")); det:eval()
--   for _, d in ipairs(pthcv.detect(det, "street.jpg", { score_thresh = 0.5 })) do
--     print(d.name, d.score, d.box[1], d.box[2], d.box[3], d.box[4])
--   end
--
-- detect(model, img [, opts]) -> {{box = {x1, y1, x2, y2}, label = id, name,
--   score [, mask = float32 [H, W], keypoints = {{x, y, score}, ...}]}, ...}
--   highest score first; img: a path, an OpenCV image [H, W, 3] uint8 BGR
--   (pthcv.image.read, a video frame), or a float32 [3, H, W] RGB tensor in
--   0..1 as torchvision takes; a list of images gives a list of results.
--   opts: score_thresh (drops detections below it; the model's own
--   threshold applies first), labels (a file of names, one per line from
--   id 0, or a table id -> name; default COCO's 91 ids).
-- segment(model, img [, opts]) -> {classes = uint8 [H, W] (the argmax, at
--   the image's size), scores = float32 [H, W] (its softmax probability),
--   present = {{label, name, pixels}, ...}, size = {w, h}}
--   opts: resize (520: the shorter side the model sees, as torchvision's
--   weights' preset; false: the image's own size), mean, std (ImageNet's),
--   labels (default VOC's 21).
local ffi = require "ffi"
local core = require "pthcv.core"
local Tensor = require "pthcv.tensor"
local image = require "pthcv.image"
local F = require "pthcv.nn.functional"
local names = require "pthcv.image.detection_labels"
local util = require "pthcv.models.detection.util"
local release = require "pthcv.nn.release"

local M = {}

-- An OpenCV image [H, W, 3] uint8 BGR -> float32 [3, H, W] RGB / 255, as
-- torchvision's to_tensor of the RGB picture (the same float32 values;
-- csrc/kernels/ops_to_tensor.c).
function M.to_tensor(img)
  if img.dtype ~= "uint8" or img.ndim ~= 3 or img.shape[3] ~= 3 then
    error("pthcv: detect: an image is uint8 [H, W, 3] (BGR), got " .. tostring(img), 3)
  end
  local out = core.C.pthcv_image_to_tensor(img.ct)
  if out == nil then core.fail("detect") end
  return Tensor.wrap(out, true)
end

local function as_input(img)
  if type(img) == "string" then img = image.read(img) end
  if not Tensor.is(img) then error("pthcv: detect: expected an image path or Tensor, got " .. type(img), 3) end
  if img.dtype == "float32" and img.ndim == 3 and img.shape[1] == 3 then return img end
  return M.to_tensor(img)
end

-- id -> name from opts.labels (a file, a table) or the default list
function M.label_names(labels, default)
  if type(labels) == "table" then return labels end
  if type(labels) == "string" then
    local f, e = io.open(labels, "r")
    if not f then error("pthcv: cannot read the labels: " .. tostring(e), 0) end
    local t, i = {}, 0
    for line in f:lines() do
      t[i] = line:gsub("\r$", "")
      i = i + 1
    end
    f:close()
    return t
  end
  return default
end

local function rows(t) return t.ndim > 0 and t.shape[1] or 0 end

-- one image's output {boxes, labels, scores, ...} as a list of tables
function M.tables(out, labels, score_thresh)
  local list = {}
  local b, l, s = out.boxes:contiguous(), out.labels:contiguous(), out.scores:contiguous()
  local bp, lp, sp = b:data(), l:data(), s:data()
  for i = 0, rows(s) - 1 do
    local score = tonumber(sp[i])
    if not score_thresh or score >= score_thresh then
      local id = tonumber(lp[i])
      local d = { box = { bp[4 * i], bp[4 * i + 1], bp[4 * i + 2], bp[4 * i + 3] }, label = id,
                  name = labels[id] or ("class " .. id), score = score }
      if out.masks then d.mask = out.masks:narrow(1, i + 1, 1):squeeze(1):squeeze(1) end
      if out.keypoints then
        local kp, ks = out.keypoints:contiguous(), out.keypoints_scores:contiguous()
        local K = kp.shape[2]
        local p, q = kp:data(), ks:data()
        d.keypoints = {}
        for k = 0, K - 1 do
          local j = i * K + k
          d.keypoints[k + 1] = { p[3 * j], p[3 * j + 1], tonumber(q[j]) }
        end
      end
      list[#list + 1] = d
    end
  end
  return list
end

function M.detect(model, img, opts)
  opts = opts or {}
  local labels = M.label_names(opts.labels, names.coco)
  local many = type(img) == "table"
  local inputs = {}
  local t0 = util.now()
  for i, x in ipairs(many and img or { img }) do inputs[i] = as_input(x) end
  util.span("preprocess", t0)
  local outs = model(inputs)
  -- the pictures converted here are this call's own, freed now; a float32
  -- [3, H, W] tensor given is the caller's and kept
  for i, x in ipairs(many and img or { img }) do release(inputs[i], x) end
  local results = {}
  for i, out in ipairs(outs) do results[i] = M.tables(out, labels, opts.score_thresh) end
  return many and results or results[1]
end

-- ---- segmentation -------------------------------------------------------------------------------
local IMAGENET_MEAN, IMAGENET_STD = { 0.485, 0.456, 0.406 }, { 0.229, 0.224, 0.225 }

-- class_map(logits [1, C, h, w] or [C, h, w], C <= 256 [, H, W]) ->
-- classes uint8 (the argmax over the channels, as torch.argmax),
-- probabilities float32 (its softmax probability), [h, w] or, given a
-- size, of the logits resized to [H, W] (bilinear, align_corners false,
-- F.interpolate's values) without making that tensor; ops_segment.c
function M.class_map(logits, H, W)
  if not Tensor.is(logits) then error("pthcv: class_map: the logits are a Tensor, got " .. type(logits), 2) end
  local scores = ffi.new("pthcv_tensor *[1]")
  local classes = core.C.pthcv_class_map(logits.ct, H or 0, W or 0, scores)
  if classes == nil then core.fail("segment") end
  return Tensor.wrap(classes, true), Tensor.wrap(scores[0], true)
end

function M.segment(model, img, opts)
  opts = opts or {}
  if type(img) == "string" then img = image.read(img) end
  local H, W = img.shape[1], img.shape[2]
  local resize = opts.resize
  if resize == nil then resize = 520 end
  local t0 = util.now()
  local x = image.blob(img, { resize = resize or nil, crop = false, swap_rb = true, scale = 1 / 255,
                              mean = opts.mean or IMAGENET_MEAN, std = opts.std or IMAGENET_STD })
  util.span("preprocess", t0)
  t0 = util.now()
  -- pthcv's own models give their logits before the last upsampling (to
  -- x's size), which class_map then does with the classing; as F.interpolate
  -- would, and to the image's size through x's as model(x).out would go
  local out, resized, h, w = nil, nil, x.shape[3], x.shape[4]
  if type(model.logits) == "function" then
    out, resized = model:logits(x), true
    if h ~= H or w ~= W then
      local logits = out
      out = F.interpolate(logits, { size = { h, w }, mode = "bilinear", align_corners = false })
      release(logits)
    end
  else
    out = model(x).out
    resized = out.shape[3] ~= H or out.shape[4] ~= W
  end
  release(x, img) -- the blob and the logits are this call's own: freed now, not at the next collection
  util.span("network", t0)
  local classes, scores = M.class_map(out, resized and H or nil, resized and W or nil)
  release(out)
  local labels = M.label_names(opts.labels, names.voc)
  local counts = ffi.new("int64_t[256]")
  local cp = classes:data()
  for i = 0, H * W - 1 do counts[cp[i]] = counts[cp[i]] + 1 end
  local present = {}
  for id = 0, 255 do
    local n = tonumber(counts[id])
    if n > 0 then present[#present + 1] = { label = id, name = labels[id] or ("class " .. id), pixels = n } end
  end
  table.sort(present, function(a, b) return a.pixels > b.pixels end)
  return { classes = classes, scores = scores, present = present, size = { W, H } }
end

M.names = names
return M
