-- lua/pthcv/models/detection/ssd.lua: torchvision's SSD (ssd.py): the
-- detector, its heads and ssd300_vgg16 with its VGG feature extractor.
--
-- forward(images): images resized to the fixed size (300 x 300 here, 320 x
-- 320 for SSDlite), normalised; the backbone's maps go through the heads
-- (per-level convolutions, outputs permuted to [N, anchors, columns]);
-- then per image (torchvision's postprocess_detections): boxes decoded
-- against the default boxes (BoxCoder 10, 10, 5, 5) and clipped, softmax
-- scores; per class (background excluded) the scores > score_thresh, their
-- topk_candidates best (torch's top-k order); NMS per class (nms_thresh);
-- the detections_per_img best; boxes mapped back to the image.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local ops = require "pthcv.ops"
local models = require "pthcv.models"
local util = require "pthcv.models.detection.util"
local release = require "pthcv.nn.release"
local transform = require "pthcv.models.detection.transform"
local anchors = require "pthcv.models.detection.anchors"

local M = {}

-- ---- heads ------------------------------------------------------------------------------
-- SSDScoringHead(module_list, num_columns): per level, module_list[i] then
-- [N, A * columns, H, W] -> [N, H W A, columns]; levels concatenated
local ScoringHead = nn.class("SSDScoringHead", nil, { torch_class = "torchvision.models.detection.ssd.SSDScoringHead" })
M.SSDScoringHead = ScoringHead
function ScoringHead:__init(module_list, num_columns)
  self.module_list, self.num_columns = module_list, num_columns
end
function ScoringHead:forward(x)
  local mods, parts = self.module_list:children(), {}
  for i, features in ipairs(x) do
    local y = mods[i](features)
    parts[i] = util.permute_and_flatten(y, self.num_columns)
    release(y, parts[i])
  end
  local out = util.cat_dim(parts, 1)
  for _, p in ipairs(parts) do release(p, out) end -- this call's own: freed now
  return out
end

local function scoring_head(name, make)
  local cls = nn.class(name, ScoringHead, { torch_class = "torchvision.models.detection.ssd." .. name })
  cls.__init = make
  return cls
end

-- SSDClassificationHead(in_channels, num_anchors, num_classes): 3x3 convolutions
M.SSDClassificationHead = scoring_head("SSDClassificationHead", function(self, in_channels, num_anchors, num_classes)
  local list = nn.ModuleList()
  for i, c in ipairs(in_channels) do list:append(nn.Conv2d(c, num_classes * num_anchors[i], 3, { padding = 1 })) end
  ScoringHead.__init(self, list, num_classes)
end)
M.SSDRegressionHead = scoring_head("SSDRegressionHead", function(self, in_channels, num_anchors)
  local list = nn.ModuleList()
  for i, c in ipairs(in_channels) do list:append(nn.Conv2d(c, 4 * num_anchors[i], 3, { padding = 1 })) end
  ScoringHead.__init(self, list, 4)
end)

-- SSDHead(in_channels, num_anchors, num_classes)
local SSDHead = nn.class("SSDHead", nil, { torch_class = "torchvision.models.detection.ssd.SSDHead" })
M.SSDHead = SSDHead
function SSDHead:__init(in_channels, num_anchors, num_classes)
  self.classification_head = M.SSDClassificationHead(in_channels, num_anchors, num_classes)
  self.regression_head = M.SSDRegressionHead(in_channels, num_anchors)
end
function SSDHead:forward(x)
  return { bbox_regression = self.regression_head(x), cls_logits = self.classification_head(x) }
end

-- ---- SSD ------------------------------------------------------------------------------------
local SSD = nn.class("SSD", nil, { torch_class = "torchvision.models.detection.ssd.SSD" })
M.SSD = SSD

M.defaults = { num_classes = 91, image_mean = { 0.485, 0.456, 0.406 }, image_std = { 0.229, 0.224, 0.225 },
               score_thresh = 0.01, nms_thresh = 0.45, detections_per_img = 200, iou_thresh = 0.5,
               topk_candidates = 400, positive_fraction = 0.25 }

-- SSD(backbone, anchor_generator, size {w, h}, o): o has M.defaults' names
-- and head (a module), backbone_out_channels for the default head
function SSD:__init(backbone, anchor_generator, size, o)
  self.backbone = backbone
  self.anchor_generator = anchor_generator
  self.box_coder = ops.BoxCoder({ 10.0, 10.0, 5.0, 5.0 })
  self.head = o.head or SSDHead(o.backbone_out_channels, anchor_generator:num_anchors_per_location(), o.num_classes)
  self.transform = transform.GeneralizedRCNNTransform(math.min(size[1], size[2]), math.max(size[1], size[2]),
                                                      o.image_mean, o.image_std, 1, size)
  self.score_thresh, self.nms_thresh = o.score_thresh, o.nms_thresh
  self.detections_per_img, self.topk_candidates = o.detections_per_img, o.topk_candidates
end

-- one image: boxes [A, 4] (decoded, clipped), scores [A, C] (softmax)
function SSD:select(boxes, scores)
  local b, s, l = ops.ssd_candidates(scores, boxes, self.score_thresh, self.topk_candidates)
  local keep = ops.batched_nms(b, s, l, self.nms_thresh)
  if keep.numel > self.detections_per_img then keep = keep:narrow(1, 1, self.detections_per_img) end
  return { boxes = util.take(b, keep), scores = util.take(s, keep), labels = util.take(l, keep) }
end

function SSD:forward(images)
  local original, batch, sizes
  images, original, batch, sizes = util.prepare(self, images, "SSD")
  local t0 = util.now()
  local features = self.backbone(batch)
  if Tensor.is(features) then features = { features } end
  local out = self.head(features)
  util.span("network", t0)
  local grids = {}
  for i, f in ipairs(features) do grids[i] = { f.shape[3], f.shape[4] } end
  local boxes0 = self.anchor_generator:anchors({ batch.shape[3], batch.shape[4] }, grids)
  -- the batch and the feature maps are read no more: freed now, not at the
  -- next collection (the head's outputs are tensors of their own)
  release(batch)
  for _, f in ipairs(features) do release(f) end
  local scores = F.softmax(out.cls_logits, -1)
  local detections = {}
  for i = 1, #images do
    local reg = out.bbox_regression:narrow(1, i, 1):squeeze(1)
    local boxes = ops.clip_boxes_to_image(self.box_coder:decode_single(reg, boxes0), sizes[i])
    detections[i] = self:select(boxes, scores:narrow(1, i, 1):squeeze(1):contiguous())
  end
  return self.transform:postprocess(detections, sizes, original)
end

-- ---- ssd300_vgg16 -------------------------------------------------------------------------------
local VGGExtractor = nn.class("SSDFeatureExtractorVGG", nil,
  { torch_class = "torchvision.models.detection.ssd.SSDFeatureExtractorVGG" })
M.SSDFeatureExtractorVGG = VGGExtractor

local function relu_block(...)
  local layers = {}
  for _, spec in ipairs({ ... }) do
    layers[#layers + 1] = nn.Conv2d(unpack(spec))
    layers[#layers + 1] = nn.ReLU(true)
  end
  return nn.Sequential(layers)
end

-- SSDFeatureExtractorVGG(vgg_features): conv4_3 (L2-normalised, scaled by
-- scale_weight), then conv5 + fc6/fc7 and four extra blocks
function VGGExtractor:__init(backbone)
  local kids = backbone:children()
  local pools = {}
  for i, m in ipairs(kids) do if getmetatable(m) == nn.MaxPool2d then pools[#pools + 1] = i end end
  kids[pools[3]].ceil_mode = true
  self:register_parameter("scale_weight", Tensor.full({ 512 }, 20, "float32"))
  local head = {}
  for i = 1, pools[4] - 1 do head[i] = kids[i] end
  self.features = nn.Sequential(head)
  local fc = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(512, 1024, 3, { padding = 6, dilation = 6 }),
                           nn.ReLU(true), nn.Conv2d(1024, 1024, 1), nn.ReLU(true))
  local conv5 = {}
  for i = pools[4], #kids - 1 do conv5[#conv5 + 1] = kids[i] end
  conv5[#conv5 + 1] = fc
  self.extra = nn.ModuleList({
    nn.Sequential(conv5),
    relu_block({ 1024, 256, 1 }, { 256, 512, 3, { padding = 1, stride = 2 } }),
    relu_block({ 512, 128, 1 }, { 128, 256, 3, { padding = 1, stride = 2 } }),
    relu_block({ 256, 128, 1 }, { 128, 256, 3 }),
    relu_block({ 256, 128, 1 }, { 128, 256, 3 }),
  })
end

-- F.normalize(x) over channels (p = 2, eps = 1e-12) times scale_weight
local function l2_scaled(x, w)
  local c = x:contiguous()
  local N, C, H, W = unpack(c.shape)
  local out = Tensor.zeros(c.shape, "float32")
  w = w:float():contiguous() -- float16 after module:half(): read as float32 values, not as raw halves
  local p, o, wp = c:data(), out:data(), w:data()
  local plane = H * W
  local norms = require("ffi").new("double[?]", plane)
  for n = 0, N - 1 do
    local base = n * C * plane
    for i = 0, plane - 1 do norms[i] = 0 end
    for ch = 0, C - 1 do
      local row = base + ch * plane
      for i = 0, plane - 1 do norms[i] = norms[i] + p[row + i] * p[row + i] end
    end
    for i = 0, plane - 1 do norms[i] = util.f32(math.max(util.f32(math.sqrt(norms[i])), 1e-12)) end
    for ch = 0, C - 1 do
      local row, s = base + ch * plane, wp[ch]
      for i = 0, plane - 1 do o[row + i] = s * util.f32(p[row + i] / norms[i]) end
    end
  end
  return out
end

function VGGExtractor:forward(x)
  x = self.features(x)
  local out = { l2_scaled(x, self.scale_weight) }
  for _, block in ipairs(self.extra:children()) do
    x = block(x)
    out[#out + 1] = x
  end
  return out
end

function M.ssd300_vgg16(opts)
  local d = {}
  for k, v in pairs(M.defaults) do d[k] = v end
  d.image_mean, d.image_std = { 0.48235, 0.45882, 0.40784 }, { 1.0 / 255.0, 1.0 / 255.0, 1.0 / 255.0 }
  local o = util.options("ssd300_vgg16", d, opts)
  local backbone = VGGExtractor(models.vgg16().features)
  local gen = anchors.DefaultBoxGenerator({ { 2 }, { 2, 3 }, { 2, 3 }, { 2, 3 }, { 2 }, { 2 } },
    { scales = { 0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05 }, steps = { 8, 16, 32, 64, 100, 300 } })
  o.backbone_out_channels = { 512, 1024, 512, 256, 256, 256 }
  return SSD(backbone, gen, { 300, 300 }, o)
end

return M
