-- lua/pthcv/nn/conv.lua: Conv2d and ConvTranspose2d, as torch.nn's.
--
-- A Conv2d packs its weights for the C kernels once (pthcv_conv2d_prepare)
-- and keeps the pack until its weights change. A container that runs a
-- Conv2d followed by a BatchNorm2d and/or an activation asks it for a fused
-- pack (make_pack(bn, act)): BatchNorm folded into the weights in double
-- precision, the activation (and a residual input) applied by the kernel.
-- pthcv.nn.plan makes such packs from what a pass ran, whatever the code,
-- and frees the ones they replace (pk.remake makes them again).
-- The module's own parameters are never modified, so state_dict() stays
-- torch's.
local ffi = require "ffi"
local core = require "pthcv.core"
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local D = require "pthcv.tensor.dispatch"
local Tensor = require "pthcv.tensor"
local py = require "pthcv.nn.repr"
local release = require "pthcv.nn.release"

local C = core.C
local class = base.class
local args, pair = A.named, A.pair
local M = {}

local function as_pair(v, what, name)
  local a, b = pair(v, name, what)
  return { a, b }
end

local function conv_repr(self, transposed)
  local s = string.format("%d, %d, kernel_size=%s, stride=%s", self.in_channels, self.out_channels,
                          py.value(self.kernel_size), py.value(self.stride))
  local p = self.padding
  if type(p) == "string" then
    s = s .. ", padding=" .. p
  elseif p[1] ~= 0 or p[2] ~= 0 then
    s = s .. ", padding=" .. py.value(p)
  end
  if self.dilation[1] ~= 1 or self.dilation[2] ~= 1 then s = s .. ", dilation=" .. py.value(self.dilation) end
  if transposed and (self.output_padding[1] ~= 0 or self.output_padding[2] ~= 0) then
    s = s .. ", output_padding=" .. py.value(self.output_padding)
  end
  if self.groups ~= 1 then s = s .. ", groups=" .. self.groups end
  if self.bias == nil then s = s .. ", bias=False" end
  if self.padding_mode ~= "zeros" then s = s .. ", padding_mode=" .. self.padding_mode end
  return s
end

-- ---- Conv2d ------------------------------------------------------------------
-- nn.Conv2d(in_channels, out_channels, kernel_size [, stride, padding,
-- dilation, groups, bias, padding_mode]) or with a keyword table:
-- nn.Conv2d(3, 64, 7, {stride = 2, padding = 3, bias = false}).
local Conv2d = class("Conv2d", nil, { torch_nn = true, torch_class = "torch.nn.modules.conv.Conv2d" })
M.Conv2d = Conv2d

function Conv2d:__init(in_channels, out_channels, ...)
  local a = args("Conv2d", { "kernel_size", "stride", "padding", "dilation", "groups", "bias", "padding_mode" }, ...)
  if type(in_channels) ~= "number" or type(out_channels) ~= "number" or a.kernel_size == nil then
    error("pthcv: Conv2d(in_channels, out_channels, kernel_size, ...) expected", 3)
  end
  self.in_channels, self.out_channels = in_channels, out_channels
  self.kernel_size = as_pair(a.kernel_size, "kernel_size", "Conv2d")
  self.stride = as_pair(a.stride or 1, "stride", "Conv2d")
  local p = a.padding or 0
  if p == "same" or p == "valid" then self.padding = p else self.padding = as_pair(p, "padding", "Conv2d") end
  self.dilation = as_pair(a.dilation or 1, "dilation", "Conv2d")
  self.groups = a.groups or 1
  self.padding_mode = a.padding_mode or "zeros"
  if F.PAD_MODES[self.padding_mode] == nil then
    error("pthcv: Conv2d: padding_mode must be zeros, reflect, replicate or circular", 3)
  end
  if in_channels % self.groups ~= 0 or out_channels % self.groups ~= 0 then
    error("pthcv: Conv2d: in_channels and out_channels must be divisible by groups", 3)
  end
  self:register_parameter("weight", Tensor.zeros({ out_channels, in_channels / self.groups,
                                                   self.kernel_size[1], self.kernel_size[2] }))
  self:register_parameter("bias", (a.bias == nil or a.bias) and Tensor.zeros({ out_channels }) or nil)
end

function Conv2d:conv_options(act)
  return { stride = self.stride, padding = self.padding, dilation = self.dilation, groups = self.groups,
           padding_mode = self.padding_mode, act = act }
end

-- A pack of this convolution (lua/pthcv/nn/packs.lua) with an eval-mode
-- BatchNorm2d folded in (bn may be nil) and a fused activation (an act_spec
-- table, or nil); its record is resolved from the attributes now. Made
-- through the dispatch point ("nn.make_pack"): what it computes from the
-- weights are constants, also when a forward packs lazily during a trace.
local function conv_pack(_, self, bn, act)
  local w, b = self.weight, self.bias
  local pk
  if bn then
    -- float16 weights (module:half()) are folded from float32 copies, and
    -- the folded weights packed as float16 again
    local f32 = F.f32
    local half = w.dtype == "float16"
    local w32 = f32(w)
    w, b = w32, f32(b)
    local mean, var, g, beta = f32(bn.running_mean), f32(bn.running_var), f32(bn.weight), f32(bn.bias)
    local nw, nb = ffi.new("pthcv_tensor *[1]"), ffi.new("pthcv_tensor *[1]")
    core.check(C.pthcv_fold_batchnorm(w.ct, b and b.ct or nil, mean.ct, var.ct,
                                      g and g.ct or nil, beta and beta.ct or nil,
                                      bn.eps, nw, nb), "fold_batchnorm")
    local folded = Tensor.wrap(nw[0], true)
    b = nb[0] ~= nil and Tensor.wrap(nb[0], true) or nil
    w = half and folded:to("float16") or folded
    pk = F.conv2d_prepare(w, b, self:conv_options(act))
    -- the pack is the folded weights' only copy: freed now, not at the next
    -- collection (a whole model's worth of them would otherwise pile up)
    pk.weight = nil
    release(w)
    release(folded)
    release(w32, self.weight)   -- a float32 copy of float16 weights
  else
    pk = F.conv2d_prepare(w, b, self:conv_options(act))
  end
  pk.module = self
  pk.batch_norm = bn ~= nil   -- folded in (what a plan's profile names)
  -- how to make it again once freed (F.pack_evict: a fused plan runs instead)
  pk.remake = function() return self:make_pack(bn, act) end
  return pk
end
function Conv2d:make_pack(bn, act) return D.call("nn.make_pack", nil, conv_pack, self, bn, act) end

function Conv2d:prepare()
  self._pack = nil
  -- a parent that runs this convolution fused makes its own pack
  if not self:is_claimed() then self._pack = self:make_pack() end
end

-- y = conv(x) (+ residual, a pthcv extension used by fused blocks)
function Conv2d:forward(x, residual)
  local pk = rawget(self, "_pack")
  if pk == nil then pk = self:make_pack(); self._pack = pk end
  return F.conv2d_packed(pk, x, residual)
end

function Conv2d:extra_repr() return conv_repr(self, false) end

-- ---- ConvTranspose2d ---------------------------------------------------------------
-- nn.ConvTranspose2d(in_channels, out_channels, kernel_size [, stride,
-- padding, output_padding, groups, bias, dilation, padding_mode])
local ConvTranspose2d = class("ConvTranspose2d", nil,
  { torch_nn = true, torch_class = "torch.nn.modules.conv.ConvTranspose2d" })
M.ConvTranspose2d = ConvTranspose2d

function ConvTranspose2d:__init(in_channels, out_channels, ...)
  local a = args("ConvTranspose2d", { "kernel_size", "stride", "padding", "output_padding", "groups", "bias",
                                      "dilation", "padding_mode" }, ...)
  if type(in_channels) ~= "number" or type(out_channels) ~= "number" or a.kernel_size == nil then
    error("pthcv: ConvTranspose2d(in_channels, out_channels, kernel_size, ...) expected", 3)
  end
  self.in_channels, self.out_channels = in_channels, out_channels
  self.kernel_size = as_pair(a.kernel_size, "kernel_size", "ConvTranspose2d")
  self.stride = as_pair(a.stride or 1, "stride", "ConvTranspose2d")
  self.padding = as_pair(a.padding or 0, "padding", "ConvTranspose2d")
  self.output_padding = as_pair(a.output_padding or 0, "output_padding", "ConvTranspose2d")
  self.dilation = as_pair(a.dilation or 1, "dilation", "ConvTranspose2d")
  self.groups = a.groups or 1
  self.padding_mode = a.padding_mode or "zeros"
  if self.padding_mode ~= "zeros" then error("pthcv: ConvTranspose2d: only padding_mode='zeros' exists", 3) end
  self:register_parameter("weight", Tensor.zeros({ in_channels, out_channels / self.groups,
                                                   self.kernel_size[1], self.kernel_size[2] }))
  self:register_parameter("bias", (a.bias == nil or a.bias) and Tensor.zeros({ out_channels }) or nil)
end

-- the op's record, resolved from the attributes (module.lua's op_args)
function ConvTranspose2d:args_record()
  return A.conv_transpose2d({ stride = self.stride, padding = self.padding, output_padding = self.output_padding,
                              groups = self.groups, dilation = self.dilation })
end

function ConvTranspose2d:forward(x)
  A.tensor(x, "conv_transpose2d")
  return F.run.conv_transpose2d(self:op_args(), x, self.weight, self.bias)
end

function ConvTranspose2d:extra_repr() return conv_repr(self, true) end

return M
