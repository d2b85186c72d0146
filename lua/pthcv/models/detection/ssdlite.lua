-- lua/pthcv/models/detection/ssdlite.lua: torchvision's
-- ssdlite320_mobilenet_v3_large (ssdlite.py): MobileNetV3-Large (reduced
-- tail, BatchNorm eps 0.001) cut at C4's expansion, four extra blocks, and
-- depthwise-separable prediction heads; the SSD detector of ssd.lua at
-- 320 x 320 with SSDlite's defaults (score_thresh 0.001, nms_thresh 0.55,
-- 300 detections and candidates, mean and std 0.5).
local nn = require "pthcv.nn"
local models = require "pthcv.models"
local blocks = require "pthcv.models.blocks"
local util = require "pthcv.models.detection.util"
local anchors = require "pthcv.models.detection.anchors"
local ssd = require "pthcv.models.detection.ssd"
local backbones = require "pthcv.models.detection.backbones"

local CNA = blocks.Conv2dNormActivation
local M = {}

local function norm_layer(c) return nn.BatchNorm2d(c, { eps = 0.001, momentum = 0.03 }) end

-- depthwise 3x3 (+BN, ReLU6) then a 1x1 convolution to out_channels
local function prediction_block(in_channels, out_channels)
  return nn.Sequential(CNA(in_channels, in_channels, { kernel_size = 3, groups = in_channels, norm_layer = norm_layer,
                                                       activation_layer = nn.ReLU6 }),
                       nn.Conv2d(in_channels, out_channels, 1))
end

local function extra_block(in_channels, out_channels)
  local mid = math.floor(out_channels / 2)
  return nn.Sequential(
    CNA(in_channels, mid, { kernel_size = 1, norm_layer = norm_layer, activation_layer = nn.ReLU6 }),
    CNA(mid, mid, { kernel_size = 3, stride = 2, groups = mid, norm_layer = norm_layer, activation_layer = nn.ReLU6 }),
    CNA(mid, out_channels, { kernel_size = 1, norm_layer = norm_layer, activation_layer = nn.ReLU6 }))
end

local function lite_head(name, columns_of)
  local cls = nn.class(name, ssd.SSDScoringHead, { torch_class = "torchvision.models.detection.ssdlite." .. name })
  function cls:__init(in_channels, num_anchors, num_classes)
    local list = nn.ModuleList()
    for i, c in ipairs(in_channels) do list:append(prediction_block(c, columns_of(num_classes) * num_anchors[i])) end
    ssd.SSDScoringHead.__init(self, list, columns_of(num_classes))
  end
  return cls
end
M.SSDLiteClassificationHead = lite_head("SSDLiteClassificationHead", function(nc) return nc end)
M.SSDLiteRegressionHead = lite_head("SSDLiteRegressionHead", function() return 4 end)

local SSDLiteHead = nn.class("SSDLiteHead", ssd.SSDHead, { torch_class = "torchvision.models.detection.ssdlite.SSDLiteHead" })
M.SSDLiteHead = SSDLiteHead
function SSDLiteHead:__init(in_channels, num_anchors, num_classes)
  self.classification_head = M.SSDLiteClassificationHead(in_channels, num_anchors, num_classes)
  self.regression_head = M.SSDLiteRegressionHead(in_channels, num_anchors)
end

-- SSDLiteFeatureExtractorMobileNet(features, c4_pos): the features up to
-- C4's expansion layer, the rest, then the extra blocks (512, 256, 256, 128)
local Extractor = nn.class("SSDLiteFeatureExtractorMobileNet", nil,
  { torch_class = "torchvision.models.detection.ssdlite.SSDLiteFeatureExtractorMobileNet" })
M.SSDLiteFeatureExtractorMobileNet = Extractor
function Extractor:__init(features, c4_pos)
  local kids = features:children()
  local c4 = kids[c4_pos + 1]
  if c4.use_res_connect then error("pthcv: SSDLite: the C4 block must not be residual", 3) end
  local inner = c4.block:named_children()
  local first = {}
  for i = 1, c4_pos do first[i] = kids[i] end
  first[#first + 1] = inner[1][2]
  local rest = {}
  for i = 2, #inner do rest[#rest + 1] = { inner[i][1], inner[i][2] } end
  local second = { nn.Sequential(rest) }
  for i = c4_pos + 2, #kids do second[#second + 1] = kids[i] end
  self.features = nn.Sequential(nn.Sequential(first), nn.Sequential(second))
  local last = kids[#kids].out_channels
  self.extra = nn.ModuleList({ extra_block(last, 512), extra_block(512, 256), extra_block(256, 256),
                               extra_block(256, 128) })
end
function Extractor:forward(x)
  local out = {}
  for _, block in ipairs(self.features:children()) do x = block(x); out[#out + 1] = x end
  for _, block in ipairs(self.extra:children()) do x = block(x); out[#out + 1] = x end
  return out
end

function M.ssdlite320_mobilenet_v3_large(opts)
  local d = {}
  for k, v in pairs(ssd.defaults) do d[k] = v end
  d.score_thresh, d.nms_thresh, d.detections_per_img, d.topk_candidates = 0.001, 0.55, 300, 300
  d.image_mean, d.image_std = { 0.5, 0.5, 0.5 }, { 0.5, 0.5, 0.5 }
  local o = util.options("ssdlite320_mobilenet_v3_large", d, opts)
  local features = models.mobilenet_v3_large({ reduced_tail = true }).features
  local stages = backbones.mobilenet_stages(features)
  local backbone = Extractor(features, stages[#stages - 1])
  local gen = anchors.DefaultBoxGenerator({ { 2, 3 }, { 2, 3 }, { 2, 3 }, { 2, 3 }, { 2, 3 }, { 2, 3 } },
                                          { min_ratio = 0.2, max_ratio = 0.95 })
  local c4 = features:children()[stages[#stages - 1] + 1]
  local out_channels = { c4.block[1].out_channels, features:children()[#features:children()].out_channels,
                         512, 256, 256, 128 }
  o.head = SSDLiteHead(out_channels, gen:num_anchors_per_location(), o.num_classes)
  return ssd.SSD(backbone, gen, { 320, 320 }, o)
end

return M
