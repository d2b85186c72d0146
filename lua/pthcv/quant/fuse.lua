-- lua/pthcv/quant/fuse.lua: the groups an int8 model runs as one kernel
-- call. pthcv.models' forwards are torchvision's, and float32 fuses them
-- through pthcv.nn.plan, whose replay runs float32 packs only. int8 needs
-- the fusion in the model itself, where torch's quantized models have it
-- (torch.ao.quantization.fuse_modules, FloatFunctional's adds): one pack per
-- convolution with its BatchNorm folded, its ReLU and the block's residual
-- add, which pthcv.quant then replaces by an int8 pack (quant/slots.lua).
--
-- M.install(model) gives the model's ResNet stems and blocks, its
-- inverted residuals (MobileNetV2's and V3's) and SqueezeNet's Fire
-- modules forwards that run such packs (as
-- instance fields: the classes are untouched), turns the plan off for every
-- module of the model, and prepares it again. Sequentials fuse their own
-- conv + BatchNorm + activation steps (nn/containers.lua).
local F = require "pthcv.nn.functional"
local release = require "pthcv.nn.release"
local base = require "pthcv.nn.module"
local qpacks = require "pthcv.quant.packs"

local M = {}
local RELU = { kind = "relu" }

local function claim_packs(self, names)
  for _, n in ipairs(names) do
    local conv, bn = self["conv" .. n], self["bn" .. n]
    conv:claim()
    rawset(self, "_c" .. n, conv:make_pack(bn, RELU))
  end
end

-- relu(bn_last(conv_last(y)) + identity): the add and the ReLU in the last
-- convolution's pack (pthcv.quant: an int8 add after it when torch has one)
local function block_forward(last)
  return function(self, x)
    local identity = x
    if self.downsample then identity = self.downsample(x) end
    local y = x
    for n = 1, last do
      local t = F.conv2d_packed(self["_c" .. n], y, n == last and identity or nil)
      if not rawequal(y, x) then release(y) end
      y = t
    end
    release(identity, x)
    return y
  end
end

-- torchvision's Fire: squeeze+ReLU, then both expand convolutions with
-- their ReLUs writing into their channels of the one concatenated output
-- (int8: quant/packs.lua's forward_cat, the two sharing the output's scale
-- and zero point, M.cat_groups). Each fused step is timed under its
-- convolution's name when profiling, as a Sequential's fused steps are.
local FIRE = { "squeeze", "expand1x1", "expand3x3" }

local function fire_prepare(self)
  for _, n in ipairs(FIRE) do
    self[n]:claim()
    rawset(self, "_" .. n, self[n]:make_pack(nil, RELU))
  end
  rawset(self, "_cat_keys", { "_expand1x1", "_expand3x3" })
end

local function timed(module, t0)
  local prof = base.profiler
  if prof then prof.record(module, prof.now() - t0, "+ReLU") end
end

local function fire_forward(self, x)
  local prof = base.profiler
  local t0 = prof and prof.now()
  local s = F.conv2d_packed(self._squeeze, x)
  timed(self.squeeze, t0)
  t0 = prof and prof.now()
  local a, b = self._expand1x1, self._expand3x3
  local y = a.quantized and b.quantized and qpacks.forward_cat({ a, b }, s) or F.conv2d_packed_cat({ a, b }, s)
  if prof then prof.record(self.expand1x1, prof.now() - t0, "+ReLU+expand3x3+ReLU+cat") end
  release(s)
  return y
end

-- The packs whose outputs must share one scale and zero point (they write
-- into one concatenated tensor): lists of packs, from the modules M.install
-- prepared.
function M.cat_groups(model)
  local groups = {}
  for _, m in ipairs(model:modules()) do
    local keys = rawget(m, "_cat_keys")
    if keys then
      local g = {}
      for i, k in ipairs(keys) do g[i] = rawget(m, k) end
      groups[#groups + 1] = g
    end
  end
  return groups
end

local FUSED = {
  Fire = { prepare = fire_prepare, forward = fire_forward },
  ResNet = {
    prepare = function(self)
      self.conv1:claim()
      rawset(self, "_stem", self.conv1:make_pack(self.bn1, RELU))
    end,
    forward = function(self, x)
      local y = F.conv2d_packed(self._stem, x)
      for _, name in ipairs({ "maxpool", "layer1", "layer2", "layer3", "layer4", "avgpool" }) do
        local t = self[name](y)
        release(y, t)
        y = t
      end
      local flat = F.flatten(y, 1) -- a view: it holds y's storage until released too
      local out = self.fc(flat)
      release(flat, out); release(y, out)
      return out
    end,
  },
  BasicBlock = { prepare = function(self) claim_packs(self, { 1, 2 }) end, forward = block_forward(2) },
  Bottleneck = { prepare = function(self) claim_packs(self, { 1, 2, 3 }) end, forward = block_forward(3) },
  -- x + body(x): the add in the last step's kernel (Sequential's residual);
  -- the body is MobileNetV2's conv or MobileNetV3's block
  InvertedResidual = {
    applies = function(m) return (m.conv ~= nil or m.block ~= nil) and m.use_res_connect ~= nil end,
    forward = function(self, x)
      local body = self.conv or self.block
      if self.use_res_connect and body:accepts_residual() then return body(x, x) end
      local y = body(x)
      if not self.use_res_connect then return y end
      local z = F.add(y, x)
      release(y)
      return z
    end,
  },
}

function M.install(model)
  for _, m in ipairs(model:modules()) do
    local f = FUSED[m:typename()]
    if f and (not f.applies or f.applies(m)) then
      if f.prepare then rawset(m, "prepare", f.prepare) end
      rawset(m, "forward", f.forward)
    end
    m:plan(false)
  end
  model:eval()   -- prepares the tree again, with the fused packs
  return model
end

return M
