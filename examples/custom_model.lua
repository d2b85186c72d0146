-- examples/custom_model.lua: a custom architecture in plain Lua, the twin of
-- the TinyUNet that examples/make_custom_model.py defines in torch. Its
-- state_dict (examples/custom_model.pth) loads unchanged because the module
-- names below are the Python attribute names.
--
--   luajit examples/custom_model.lua            -- runs it on custom_input.npy
--   bin/pthcv run --script examples/custom_model.lua --weights examples/custom_model.pth \
--       --input examples/custom_input.npy --output /tmp/seg.npy
--
-- Returns the (unloaded) module when loaded as a script by `pthcv run`.
local here = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")) or "."
package.path = here .. "/../lua/?.lua;" .. here .. "/../lua/?/init.lua;" .. package.path
local pthcv = require "pthcv"
local nn, F = pthcv.nn, pthcv.F

-- Two 3x3 conv+BN, a 1x1 projection on the skip path when widths differ, SiLU.
local ConvBlock = nn.class("ConvBlock")
function ConvBlock:__init(cin, cout)
  self.conv1 = nn.Conv2d(cin, cout, 3, { padding = 1, bias = false })
  self.bn1 = nn.BatchNorm2d(cout)
  self.conv2 = nn.Conv2d(cout, cout, 3, { padding = 1, bias = false })
  self.bn2 = nn.BatchNorm2d(cout)
  self.skip = cin ~= cout and nn.Conv2d(cin, cout, 1) or nn.Identity()
end
function ConvBlock:forward(x)
  local y = F.relu(self.bn1(self.conv1(x)))
  y = self.bn2(self.conv2(y))
  return F.silu(y + self.skip(x))           -- `+` is a broadcasting kernel
end

local TinyUNet = nn.class("TinyUNet")
function TinyUNet:__init(in_channels, num_classes, width)
  local w = width or 8
  self.enc1 = ConvBlock(in_channels or 3, w)
  self.enc2 = ConvBlock(w, 2 * w)
  self.mid = ConvBlock(2 * w, 4 * w)
  self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, { stride = 2 })
  self.dec2 = ConvBlock(4 * w, 2 * w)
  self.dec1 = ConvBlock(3 * w, w)
  self.attn = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w, w, 1), nn.Sigmoid())
  self.head = nn.Conv2d(w, num_classes or 4, 1)
end
-- F takes torch's 0-based dims: F.cat(..., 1) joins channels, as torch.cat
function TinyUNet:forward(x)
  local e1 = self.enc1(x)
  local e2 = self.enc2(F.max_pool2d(e1, 2))
  local m = self.mid(F.max_pool2d(e2, 2))
  local d2 = self.dec2(F.cat({ self.up2(m), e2 }, 1))
  local up = F.interpolate(d2, { scale_factor = 2, mode = "bilinear", align_corners = false })
  local d1 = self.dec1(F.cat({ up, e1 }, 1))
  d1 = d1 * self.attn(d1)
  return F.log_softmax(self.head(d1), 1)
end

local model = TinyUNet(3, 4, 8)

-- Run directly: load the weights torch wrote and segment the example input.
if not pcall(debug.getlocal, 4, 1) then
  print(model)
  model:load_state_dict(pthcv.state_dict(here .. "/custom_model.pth"))
  model:eval()
  local y = model(pthcv.load_npy(here .. "/custom_input.npy"))
  local want = pthcv.load_npy(here .. "/custom_output.npy")
  local d = y - want
  print(string.format("output %s, max |pthcv - torch| = %.3g", tostring(y), math.max(d:max(), -d:min())))
end

return model
