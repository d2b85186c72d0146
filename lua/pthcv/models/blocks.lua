-- lua/pthcv/models/blocks.lua: torchvision.ops.misc's building blocks:
-- Conv2dNormActivation (a Sequential of conv, norm, activation) and
-- SqueezeExcitation, plus _make_divisible, and chain and residual, how the
-- zoo's forwards free what they made.
local nn = require "pthcv.nn"
local release = require "pthcv.nn.release"

local M = {}

-- m_n(...m_2(m_1(x))): each value made on the way freed once the next
-- module has consumed it (x is the caller's). How the zoo's forwards keep
-- memory down; pthcv.nn.plan fuses what these ops do whatever their order.
local function chain(x, ...)
  local y = x
  for i = 1, select("#", ...) do
    local t = (select(i, ...))(y)
    if not rawequal(y, x) then release(y, t) end
    y = t
  end
  return y
end
M.chain = chain

-- torchvision's _make_divisible: v rounded to a multiple of divisor, never
-- more than 10% below v.
function M.make_divisible(v, divisor, min_value)
  min_value = min_value or divisor
  local new_v = math.max(min_value, math.floor((v + divisor / 2) / divisor) * divisor)
  if new_v < 0.9 * v then new_v = new_v + divisor end
  return new_v
end

-- Conv2dNormActivation(in, out, {kernel_size = 3, stride = 1, padding,
-- groups = 1, dilation = 1, norm_layer = fn(c) -> module | false,
-- activation_layer = class | false, bias}): children "0" conv, "1" norm,
-- "2" activation, as torchvision's. A Sequential, so eval() fuses all three.
local Conv2dNormActivation = nn.class("Conv2dNormActivation", nn.Sequential,
  { torch_class = "torchvision.ops.misc.Conv2dNormActivation" })
M.Conv2dNormActivation = Conv2dNormActivation
Conv2dNormActivation.keeps_no_tensors = true

function Conv2dNormActivation:__init(in_channels, out_channels, o)
  o = o or {}
  local k, d = o.kernel_size or 3, o.dilation or 1
  local padding = o.padding or math.floor((k - 1) / 2) * d
  local norm_layer = o.norm_layer
  if norm_layer == nil then norm_layer = function(c) return nn.BatchNorm2d(c) end end
  local act = o.activation_layer
  if act == nil then act = nn.ReLU end
  local bias = o.bias
  if bias == nil then bias = not norm_layer end
  self:append(nn.Conv2d(in_channels, out_channels, k, { stride = o.stride or 1, padding = padding, dilation = d,
                                                         groups = o.groups or 1, bias = bias }))
  if norm_layer then self:append(norm_layer(out_channels)) end
  if act then self:append(act(true)) end
  self.out_channels = out_channels
end

-- SqueezeExcitation(input_channels, squeeze_channels [, activation = ReLU,
-- scale_activation = Sigmoid]): x * scale_act(fc2(act(fc1(avgpool(x))))),
-- one kernel call once planned (pthcv.nn.plan).
local SqueezeExcitation = nn.class("SqueezeExcitation", nil,
  { torch_class = "torchvision.ops.misc.SqueezeExcitation" })
M.SqueezeExcitation = SqueezeExcitation

function SqueezeExcitation:__init(input_channels, squeeze_channels, activation, scale_activation)
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
  self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
  self.activation = (activation or nn.ReLU)()
  self.scale_activation = (scale_activation or nn.Sigmoid)()
end

function SqueezeExcitation:forward(x)
  local scale = chain(self.avgpool(x), self.fc1, self.activation, self.fc2, self.scale_activation)
  local y = scale * x
  release(scale)
  return y
end
SqueezeExcitation.keeps_no_tensors = true

-- x + body(x) for an inverted-residual block.
function M.residual(body, x)
  local t = body(x)
  local y = t + x
  release(t, x)
  return y
end

return M
