-- lua/pthcv/models/detection/init.lua: pthcv.models.detection, torchvision
-- 0.14's detectors with its names, options and state_dict keys.
--
--   local det = pthcv.models.detection
--   local m = det.ssdlite320_mobilenet_v3_large{ score_thresh = 0.3 }
--   m:load_state_dict(pthcv.state_dict("ssdlite.pth")); m:eval()
--   local out = m(img)   -- img float32 [3, H, W], RGB in 0..1; or a list of images
--   -- out[1].boxes [K, 4] float32 (x1, y1, x2, y2), out[1].labels int64 (COCO ids), out[1].scores
--
-- Options are torchvision's keyword arguments (num_classes, min_size,
-- box_score_thresh, score_thresh, nms_thresh, detections_per_img, ...);
-- unknown names are errors. `weights = "COCO_V1"` applies what torchvision
-- does for its weights of that name (FrozenBatchNorm2d eps 0 for the four
-- ResNet-50 v1 models). docs/detection.md lists each model's options.
local M = {}

local families = {
  ssdlite320_mobilenet_v3_large = "ssdlite",
  ssd300_vgg16 = "ssd",
  fasterrcnn_mobilenet_v3_large_320_fpn = "faster_rcnn",
  fasterrcnn_mobilenet_v3_large_fpn = "faster_rcnn",
  fasterrcnn_resnet50_fpn = "faster_rcnn",
  fasterrcnn_resnet50_fpn_v2 = "faster_rcnn",
  retinanet_resnet50_fpn = "retinanet",
  retinanet_resnet50_fpn_v2 = "retinanet",
  fcos_resnet50_fpn = "fcos",
  maskrcnn_resnet50_fpn = "mask_rcnn",
  maskrcnn_resnet50_fpn_v2 = "mask_rcnn",
  keypointrcnn_resnet50_fpn = "keypoint_rcnn",
}

function M.list()
  local names = {}
  for k in pairs(families) do names[#names + 1] = k end
  table.sort(names)
  return names
end

function M.has(name) return families[name] ~= nil end

-- pthcv.models.detection.get(name [, opts])
function M.get(name, opts)
  local fam = families[name]
  if not fam then
    error("pthcv: unknown detection model '" .. tostring(name) .. "' (known: " .. table.concat(M.list(), ", ") .. ")", 2)
  end
  return require("pthcv.models.detection." .. fam)[name](opts)
end

return setmetatable(M, { __index = function(t, k)
  local fam = families[k]
  if fam then
    local f = require("pthcv.models.detection." .. fam)[k]
    rawset(t, k, f)
    return f
  end
end })
