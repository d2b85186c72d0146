-- lua/pthcv/models/detection/mask_rcnn.lua: torchvision's Mask R-CNN
-- (mask_rcnn.py): maskrcnn_resnet50_fpn and _v2. Faster R-CNN plus a mask
-- branch: the detections pooled at 14 x 14 (MultiScaleRoIAlign), four 3x3
-- convolutions (+BatchNorm in v2) + ReLU, a 2x2 transposed convolution +
-- ReLU and a 1x1 convolution to one 28 x 28 map per class; each detection's
-- class map after a sigmoid, pasted into the image at its box
-- (paste_masks_in_image): masks float32 [K, 1, H, W] in 0..1.
local nn = require "pthcv.nn"
local blocks = require "pthcv.models.blocks"
local util = require "pthcv.models.detection.util"
local backbones = require "pthcv.models.detection.backbones"
local poolers = require "pthcv.models.detection.poolers"
local faster_rcnn = require "pthcv.models.detection.faster_rcnn"

local M = {}

-- MaskRCNNHeads(in_channels, layers, dilation [, norm_layer])
local Heads = nn.class("MaskRCNNHeads", nn.Sequential, { torch_class = "torchvision.models.detection.mask_rcnn.MaskRCNNHeads" })
M.MaskRCNNHeads = Heads
function Heads:__init(in_channels, layers, dilation, norm_layer)
  local prev = in_channels
  for _, c in ipairs(layers) do
    self:append(blocks.Conv2dNormActivation(prev, c, { kernel_size = 3, padding = dilation, dilation = dilation,
                                                       norm_layer = norm_layer or false }))
    prev = c
  end
end

-- MaskRCNNPredictor(in_channels, dim_reduced, num_classes)
local Predictor = nn.class("MaskRCNNPredictor", nn.Sequential,
  { torch_class = "torchvision.models.detection.mask_rcnn.MaskRCNNPredictor" })
M.MaskRCNNPredictor = Predictor
function Predictor:__init(in_channels, dim_reduced, num_classes)
  self:add_module("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0))
  self:add_module("relu", nn.ReLU(true))
  self:add_module("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0))
end

-- a Faster R-CNN given its mask branch (mask_head may be given in o)
local function with_masks(model, o, norm_layer)
  local rh = model.roi_heads
  rh.mask_roi_pool = poolers.MultiScaleRoIAlign({ "0", "1", "2", "3" }, 14, 2)
  rh.mask_head = Heads(256, { 256, 256, 256, 256 }, 1, norm_layer)
  rh.mask_predictor = Predictor(256, 256, o.num_classes)
  return model
end

function M.maskrcnn_resnet50_fpn(opts)
  local o = util.options("maskrcnn_resnet50_fpn", faster_rcnn.defaults, opts)
  local m = faster_rcnn.FasterRCNN(backbones.resnet_fpn(faster_rcnn.resnet50_backbone(true)), o)
  return faster_rcnn.apply_weights_option(with_masks(m, o), "maskrcnn_resnet50_fpn", o, true)
end

function M.maskrcnn_resnet50_fpn_v2(opts)
  local o = util.options("maskrcnn_resnet50_fpn_v2", faster_rcnn.defaults, opts)
  local m, bn = faster_rcnn.faster_rcnn_v2(o)
  return faster_rcnn.apply_weights_option(with_masks(m, o, bn), "maskrcnn_resnet50_fpn_v2", o, false)
end

return M
