-- lua/pthcv/models/detection/keypoint_rcnn.lua: torchvision's Keypoint
-- R-CNN (keypoint_rcnn.py): keypointrcnn_resnet50_fpn. Faster R-CNN (2
-- classes by default: background, person) plus a keypoint branch: the
-- detections pooled at 14 x 14, eight 3x3 convolutions of 512 + ReLU, a 4x4
-- transposed convolution (stride 2) to one map per keypoint, upsampled x2
-- (bilinear) to 56 x 56; each map's maximum, read at the box's size
-- (bicubic), is the keypoint: keypoints [K, 17, 3] (x, y, 1) in the image,
-- keypoints_scores [K, 17].
local nn = require "pthcv.nn"
local F = nn.F
local util = require "pthcv.models.detection.util"
local backbones = require "pthcv.models.detection.backbones"
local poolers = require "pthcv.models.detection.poolers"
local faster_rcnn = require "pthcv.models.detection.faster_rcnn"

local M = {}

local Heads = nn.class("KeypointRCNNHeads", nn.Sequential,
  { torch_class = "torchvision.models.detection.keypoint_rcnn.KeypointRCNNHeads" })
M.KeypointRCNNHeads = Heads
function Heads:__init(in_channels, layers)
  local prev = in_channels
  for _, c in ipairs(layers) do
    self:append(nn.Conv2d(prev, c, 3, 1, 1))
    self:append(nn.ReLU(true))
    prev = c
  end
end

local Predictor = nn.class("KeypointRCNNPredictor", nil,
  { torch_class = "torchvision.models.detection.keypoint_rcnn.KeypointRCNNPredictor" })
M.KeypointRCNNPredictor = Predictor
function Predictor:__init(in_channels, num_keypoints)
  self.kps_score_lowres = nn.ConvTranspose2d(in_channels, num_keypoints, 4, 2, 1)
  self.up_scale = 2
  self.out_channels = num_keypoints
end
function Predictor:forward(x)
  return F.interpolate(self.kps_score_lowres(x), { scale_factor = self.up_scale, mode = "bilinear",
                                                   align_corners = false })
end

local defaults = {}
for k, v in pairs(faster_rcnn.defaults) do defaults[k] = v end
defaults.num_classes, defaults.num_keypoints = 2, 17
defaults.min_size = { 640, 672, 704, 736, 768, 800 }

function M.keypointrcnn_resnet50_fpn(opts)
  local o = util.options("keypointrcnn_resnet50_fpn", defaults, opts)
  local m = faster_rcnn.FasterRCNN(backbones.resnet_fpn(faster_rcnn.resnet50_backbone(true)), o)
  local rh = m.roi_heads
  rh.keypoint_roi_pool = poolers.MultiScaleRoIAlign({ "0", "1", "2", "3" }, 14, 2)
  rh.keypoint_head = Heads(256, { 512, 512, 512, 512, 512, 512, 512, 512 })
  rh.keypoint_predictor = Predictor(512, o.num_keypoints)
  return faster_rcnn.apply_weights_option(m, "keypointrcnn_resnet50_fpn", o, true)
end

return M
