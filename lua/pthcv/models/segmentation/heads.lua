-- lua/pthcv/models/segmentation/heads.lua: the segmentation heads of
-- torchvision 0.14 (fcn.py, deeplabv3.py, lraspp.py): FCNHead, DeepLabHead
-- with ASPP, and LRASPPHead. Convolution + BatchNorm + ReLU runs are fused
-- by the containers (eval()); Dropout is the identity.
local nn = require "pthcv.nn"
local F = nn.F

local M = {}

local function cbr(cin, cout, k, o)
  o = o or {}
  return nn.Conv2d(cin, cout, k, { padding = o.padding or 0, dilation = o.dilation or 1, bias = false }),
         nn.BatchNorm2d(cout), nn.ReLU()
end

-- FCNHead(in_channels, channels): 3x3 conv to in/4, BN, ReLU, dropout, 1x1 conv
local FCNHead = nn.class("FCNHead", nn.Sequential, { torch_class = "torchvision.models.segmentation.fcn.FCNHead" })
M.FCNHead = FCNHead
function FCNHead:__init(in_channels, channels)
  local inter = math.floor(in_channels / 4)
  local c, b, r = cbr(in_channels, inter, 3, { padding = 1 })
  for _, m in ipairs({ c, b, r, nn.Dropout(0.1), nn.Conv2d(inter, channels, 1) }) do self:append(m) end
end

-- ASPPConv(in, out, dilation): 3x3 dilated conv, BN, ReLU
local ASPPConv = nn.class("ASPPConv", nn.Sequential, { torch_class = "torchvision.models.segmentation.deeplabv3.ASPPConv" })
M.ASPPConv = ASPPConv
function ASPPConv:__init(cin, cout, dilation)
  local c, b, r = cbr(cin, cout, 3, { padding = dilation, dilation = dilation })
  self:append(c); self:append(b); self:append(r)
end

-- ASPPPooling(in, out): global average, 1x1 conv, BN, ReLU, upsampled back
local ASPPPooling = nn.class("ASPPPooling", nn.Sequential,
  { torch_class = "torchvision.models.segmentation.deeplabv3.ASPPPooling" })
M.ASPPPooling = ASPPPooling
function ASPPPooling:__init(cin, cout)
  local c, b, r = cbr(cin, cout, 1)
  for _, m in ipairs({ nn.AdaptiveAvgPool2d(1), c, b, r }) do self:append(m) end
end
function ASPPPooling:forward(x)
  local y = nn.Sequential.forward(self, x)
  return F.interpolate(y, { size = { x.shape[3], x.shape[4] }, mode = "bilinear", align_corners = false })
end

-- ASPP(in_channels, atrous_rates [, out_channels = 256])
local ASPP = nn.class("ASPP", nil, { torch_class = "torchvision.models.segmentation.deeplabv3.ASPP" })
M.ASPP = ASPP
function ASPP:__init(in_channels, rates, out_channels)
  out_channels = out_channels or 256
  local mods = { nn.Sequential(cbr(in_channels, out_channels, 1)) }
  for _, r in ipairs(rates) do mods[#mods + 1] = ASPPConv(in_channels, out_channels, r) end
  mods[#mods + 1] = ASPPPooling(in_channels, out_channels)
  self.convs = nn.ModuleList(mods)
  local c, b, r = cbr(#mods * out_channels, out_channels, 1)
  self.project = nn.Sequential(c, b, r, nn.Dropout(0.5))
end
function ASPP:forward(x)
  local res = {}
  for i, conv in ipairs(self.convs:children()) do res[i] = conv(x) end
  return self.project(F.cat(res, 1))
end

-- DeepLabHead(in_channels, num_classes)
local DeepLabHead = nn.class("DeepLabHead", nn.Sequential,
  { torch_class = "torchvision.models.segmentation.deeplabv3.DeepLabHead" })
M.DeepLabHead = DeepLabHead
function DeepLabHead:__init(in_channels, num_classes)
  local c, b, r = cbr(256, 256, 3, { padding = 1 })
  for _, m in ipairs({ ASPP(in_channels, { 12, 24, 36 }), c, b, r, nn.Conv2d(256, num_classes, 1) }) do
    self:append(m)
  end
end

-- LRASPPHead(low_channels, high_channels, num_classes, inter_channels)
local LRASPPHead = nn.class("LRASPPHead", nil, { torch_class = "torchvision.models.segmentation.lraspp.LRASPPHead" })
M.LRASPPHead = LRASPPHead
function LRASPPHead:__init(low_channels, high_channels, num_classes, inter_channels)
  self.cbr = nn.Sequential(cbr(high_channels, inter_channels, 1))
  self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, { bias = false }),
                             nn.Sigmoid())
  self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
  self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)
end
-- features {low = Tensor, high = Tensor}
function LRASPPHead:forward(low, high)
  local x = F.mul(self.cbr(high), self.scale(high))
  x = F.interpolate(x, { size = { low.shape[3], low.shape[4] }, mode = "bilinear", align_corners = false })
  return self.high_classifier(x, self.low_classifier(low))   -- the sum added in the kernel
end

return M
