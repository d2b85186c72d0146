-- lua/pthcv/image/classify.lua: image classification with a pthcv.nn model, the
-- job of `pthcv run IMAGE...` and examples/classify.cpp.
--
--   local classify = require "pthcv.image.classify"
--   local net = pthcv.models.resnet18(); net:load_state_dict(pthcv.state_dict("r18.pth")); net:eval()
--   local r = classify.image(net, "cat.jpg", {topk = 5, resize = 256, size = 224})
--   for _, c in ipairs(r.top) do print(c.index, c.label, c.prob) end
--
-- Preprocessing (options, all optional; torchvision's ImageNet defaults):
--   size = 224 (n or {w, h}), resize = nil (n: shorter side to n, then a
--   centre crop to size), crop = false (blobFromImage's aspect-keeping crop),
--   mean = {0.485, 0.456, 0.406}, std = {0.229, 0.224, 0.225} (RGB order, on
--   pixels / 255), interpolation = "linear".
-- Results: top = {{index = i (0-based, torch's class index), label = ..., prob = p}, ...}
-- with probabilities from the softmax of the logits, largest first.
local image = require "pthcv.image"

local M = {}

M.IMAGENET_MEAN = { 0.485, 0.456, 0.406 }
M.IMAGENET_STD = { 0.229, 0.224, 0.225 }

-- Class names: from a file (one per line), else ImageNet's for 1000
-- classes, else "class <i>". Returns a function index (0-based) -> name.
function M.labels(num_classes, file)
  local list
  if file then
    local f, e = io.open(file, "r")
    if not f then error("pthcv: cannot read the labels: " .. tostring(e), 0) end
    list = {}
    for line in f:lines() do
      line = line:gsub("\r$", "")
      if line ~= "" then list[#list + 1] = line end
    end
    f:close()
    if num_classes and #list ~= num_classes then
      error(string.format("pthcv: %s has %d labels, the model %d classes", file, #list, num_classes), 0)
    end
  elseif num_classes == 1000 then
    list = require "pthcv.image.imagenet_classes"
  end
  return function(i) return list and list[i + 1] or ("class " .. i) end
end

local label_cache = {}
function M.cached_labels(num_classes, file)
  local key = tostring(num_classes) .. "\0" .. tostring(file)
  label_cache[key] = label_cache[key] or M.labels(num_classes, file)
  return label_cache[key]
end

-- The blob options for the preprocessing options above.
function M.blob_options(opts)
  opts = opts or {}
  return {
    size = opts.size or 224, resize = opts.resize, crop = opts.crop or (opts.resize ~= nil),
    swap_rb = true, scale = 1 / 255, mean = opts.mean or M.IMAGENET_MEAN, std = opts.std or M.IMAGENET_STD,
    interpolation = opts.interpolation,
  }
end

-- The k most probable classes of one row of logits (a Tensor [n] or [1, n]).
function M.top(logits, k, label)
  local x = logits:contiguous():double()
  local n = x.numel
  k = math.min(k or 5, n)
  local p = x:data()
  local mx = -math.huge
  for i = 0, n - 1 do if p[i] > mx then mx = p[i] end end
  local sum = 0
  for i = 0, n - 1 do sum = sum + math.exp(p[i] - mx) end
  local _, idx = x:view(n):topk(k)
  local top = {}
  for j = 1, k do
    local i = tonumber(idx:get(j)) - 1
    top[j] = { index = i, label = label and label(i) or ("class " .. i), prob = math.exp(p[i] - mx) / sum }
  end
  return top
end

-- Classifies one image (a path or an image Tensor): {image = path, top = {...}}.
function M.image(model, img, opts)
  opts = opts or {}
  local path = type(img) == "string" and img or nil
  if path then img = image.read(path) end
  local x = image.blob(img, M.blob_options(opts))
  local y = model(x)
  if type(y) == "table" and not require("pthcv.tensor").is(y) then y = y[1] end
  if y.ndim ~= 2 or y.shape[1] ~= 1 then
    error("pthcv: the model gives a tensor of shape [" .. table.concat(y.shape, ", ") .. "], not [1, classes]", 0)
  end
  local label = opts.label or M.cached_labels(y.shape[2], opts.labels)
  return { image = path, top = M.top(y, opts.topk or 5, label) }
end

return M
