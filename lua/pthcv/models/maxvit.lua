-- lua/pthcv/models/maxvit.lua: torchvision's MaxViT (maxvit_t; input_size
-- option, default 224x224: every block's map must divide into 7x7
-- partitions, checked when built, as torch does). A MaxVitLayer is an MBConv
-- (BatchNorm, 1x1 + GELU, depthwise 3x3 + GELU, squeeze-excitation, 1x1,
-- the shortcut added in the last convolution), then attention within 7x7
-- windows, then attention across a 7x7 grid, each followed by an MLP. The
-- attention is the fused kernel reading q, k and v per head in place, its
-- relative position bias gathered once per weights.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local blocks = require "pthcv.models.blocks"
local layers = require "pthcv.models.layers"
local swin = require "pthcv.models.swin"

local M = {}
local CNA = blocks.Conv2dNormActivation

local function conv_output_shape(size, k, s, p)
  return { math.floor((size[1] - k + 2 * p) / s) + 1, math.floor((size[2] - k + 2 * p) / s) + 1 }
end

-- MBConv(in_channels, out_channels, expansion_ratio, squeeze_ratio, stride,
-- activation_layer, norm_layer [, p_stochastic_dropout])
local MBConv = nn.class("MBConv", nil, { torch_class = "torchvision.models.maxvit.MBConv" })
M.MBConv = MBConv
MBConv.keeps_no_tensors = true

function MBConv:__init(cin, cout, expansion_ratio, squeeze_ratio, stride, act, norm_layer, p)
  if stride ~= 1 or cin ~= cout then
    local proj = { nn.Conv2d(cin, cout, 1, { stride = 1, bias = true }) }
    if stride == 2 then table.insert(proj, 1, nn.AvgPool2d({ kernel_size = 3, stride = stride, padding = 1 })) end
    self.proj = nn.Sequential(proj)
  else
    self.proj = nn.Identity()
  end
  local mid, sqz = math.floor(cout * expansion_ratio), math.floor(cout * squeeze_ratio)
  if p and p ~= 0 then self.stochastic_depth = layers.StochasticDepth(p, "row")
  else self.stochastic_depth = nn.Identity() end
  self.layers = nn.Sequential {
    { "pre_norm", norm_layer(cin) },
    { "conv_a", CNA(cin, mid, { kernel_size = 1, stride = 1, padding = 0, activation_layer = act,
                                norm_layer = norm_layer, inplace = false }) },
    { "conv_b", CNA(mid, mid, { kernel_size = 3, stride = stride, padding = 1, activation_layer = act,
                                norm_layer = norm_layer, groups = mid, inplace = false }) },
    { "squeeze_excitation", blocks.SqueezeExcitation(mid, sqz, nn.SiLU) },
    { "conv_c", nn.Conv2d(mid, cout, 1, { bias = true }) },
  }
end

-- res + layers(x), the add inside conv_c
function MBConv:forward(x)
  local res = self.proj(x)
  local y = self.layers(x, res)
  release(res, x)
  return y
end

-- RelativePositionalMultiHeadAttention(feat_dim, head_dim, max_seq_len)
local RPMHA = nn.class("RelativePositionalMultiHeadAttention", nil,
  { torch_class = "torchvision.models.maxvit.RelativePositionalMultiHeadAttention" })
M.RelativePositionalMultiHeadAttention = RPMHA
RPMHA.keeps_no_tensors = true

function RPMHA:__init(feat_dim, head_dim, max_seq_len)
  if feat_dim % head_dim ~= 0 then
    error(string.format("pthcv: MaxVit: feat_dim %d must be divisible by head_dim %d", feat_dim, head_dim), 3)
  end
  self.n_heads, self.head_dim = feat_dim / head_dim, head_dim
  self.size = math.floor(math.sqrt(max_seq_len))
  self.max_seq_len = max_seq_len
  self.to_qkv = nn.Linear(feat_dim, self.n_heads * head_dim * 3)
  self.scale_factor = feat_dim ^ -0.5
  self.merge = nn.Linear(head_dim * self.n_heads, feat_dim)
  self:register_parameter("relative_position_bias_table",
                          Tensor.zeros({ (2 * self.size - 1) * (2 * self.size - 1), self.n_heads }))
  local index = swin.relative_position_index(self.size, self.size)
  self:register_buffer("relative_position_index", F.reshape(index, self.max_seq_len, self.max_seq_len))
end

function RPMHA:prepare() self._bias = nil end

-- x [B, G, P, D]: attention among the P positions of each of the G groups
function RPMHA:forward(x)
  local B, G, P, D = unpack(x.shape)
  local H, DH = self.n_heads, self.head_dim
  if not rawget(self, "_bias") then
    self._bias = swin.constant(function(m)
      return swin.gather_bias(m.relative_position_bias_table, F.reshape(m.relative_position_index, -1), m.max_seq_len)
    end, self)
  end
  local qkv = self.to_qkv(x)                                       -- [B, G, P, 3D]
  local function view(off)                                         -- [B, G, H, P, DH]
    return qkv:as_strided({ B, G, H, P, DH }, { G * P * 3 * D, P * 3 * D, DH, 3 * D, 1 }, qkv.offset + off)
  end
  local o = F.attention(view(0), view(D), view(2 * D), { scale = self.scale_factor, bias = self._bias,
                                                         heads_last = true })
  release(qkv)
  local y = self.merge(F.reshape(o, B, G, P, D))
  release(o)
  return y
end

-- SwapAxes(a, b): torch.swapaxes (a view)
local SwapAxes = nn.class("SwapAxes", nil, { torch_class = "torchvision.models.maxvit.SwapAxes" })
M.SwapAxes = SwapAxes
SwapAxes.keeps_no_tensors = true
function SwapAxes:__init(a, b) self.a, self.b = a, b end
function SwapAxes:forward(x) return F.transpose(x, self.a, self.b) end

-- WindowPartition: [B, C, H, W] -> [B, H/P * W/P, P*P, C]
local WindowPartition = nn.class("WindowPartition", nil, { torch_class = "torchvision.models.maxvit.WindowPartition" })
M.WindowPartition = WindowPartition
function WindowPartition:forward(x, p)
  local B, C, H, W = unpack(x.shape)
  local t = F.permute(F.reshape(x, B, C, H / p, p, W / p, p), { 0, 2, 4, 3, 5, 1 })
  return F.reshape(t, B, (H / p) * (W / p), p * p, C)
end

-- WindowDepartition: [B, HP*WP, P*P, C] -> [B, C, HP*P, WP*P]
local WindowDepartition = nn.class("WindowDepartition", nil,
  { torch_class = "torchvision.models.maxvit.WindowDepartition" })
M.WindowDepartition = WindowDepartition
function WindowDepartition:forward(x, p, hp, wp)
  local B, C = x:size(1), x:size(4)
  local t = F.permute(F.reshape(x, B, hp, wp, p, p, C), { 0, 5, 1, 3, 2, 4 })
  return F.reshape(t, B, C, hp * p, wp * p)
end

-- PartitionAttentionLayer(in_channels, head_dim, partition_size,
-- partition_type "window" | "grid", grid_size, mlp_ratio, activation_layer,
-- norm_layer, attention_dropout, mlp_dropout, p_stochastic_dropout)
local PAL = nn.class("PartitionAttentionLayer", nil,
  { torch_class = "torchvision.models.maxvit.PartitionAttentionLayer" })
M.PartitionAttentionLayer = PAL
PAL.keeps_no_tensors = true

function PAL:__init(cin, head_dim, partition_size, partition_type, grid_size, mlp_ratio, act, norm_layer,
                    attention_dropout, mlp_dropout, p)
  self.n_heads, self.head_dim = cin / head_dim, head_dim
  self.n_partitions = math.floor(grid_size[1] / partition_size)
  self.partition_type, self.grid_size = partition_type, grid_size
  if partition_type ~= "grid" and partition_type ~= "window" then
    error("pthcv: MaxVit: partition_type must be either 'grid' or 'window'", 3)
  end
  if partition_type == "window" then self.p, self.g = partition_size, self.n_partitions
  else self.p, self.g = self.n_partitions, partition_size end
  self.partition_op = WindowPartition()
  self.departition_op = WindowDepartition()
  self.partition_swap = partition_type == "grid" and SwapAxes(-2, -3) or nn.Identity()
  self.departition_swap = partition_type == "grid" and SwapAxes(-2, -3) or nn.Identity()
  self.attn_layer = nn.Sequential(norm_layer(cin), RPMHA(cin, head_dim, partition_size ^ 2),
                                  nn.Dropout(attention_dropout))
  self.mlp_layer = nn.Sequential(nn.LayerNorm(cin), nn.Linear(cin, cin * mlp_ratio), act(),
                                 nn.Linear(cin * mlp_ratio, cin), nn.Dropout(mlp_dropout))
  self.stochastic_dropout = layers.StochasticDepth(p, "row")
end

local function plus(x, f)
  local t = f(x)
  local y = F.add(x, t)
  release(t)
  return y
end

function PAL:forward(x)
  local _, _, H, W = unpack(x.shape)
  if H ~= self.grid_size[1] or W ~= self.grid_size[2] then
    error(string.format("pthcv: MaxVit: a %dx%d map reached a layer built for %dx%d (input_size)", H, W,
                        self.grid_size[1], self.grid_size[2]), 2)
  end
  local gh, gw = self.grid_size[1] / self.p, self.grid_size[2] / self.p
  local t = self.partition_swap(self.partition_op(x, self.p))
  local a = plus(t, self.attn_layer)
  release(t)
  local m = plus(a, self.mlp_layer)
  release(a)
  local y = self.departition_op(self.departition_swap(m), self.p, gh, gw)
  release(m)
  return y
end

-- MaxVitLayer: MBconv, window_attention, grid_attention
local MaxVitLayer = nn.class("MaxVitLayer", nil, { torch_class = "torchvision.models.maxvit.MaxVitLayer" })
M.MaxVitLayer = MaxVitLayer
MaxVitLayer.keeps_no_tensors = true

function MaxVitLayer:__init(o)
  local function attention(kind)
    return PAL(o.out_channels, o.head_dim, o.partition_size, kind, o.grid_size, o.mlp_ratio, o.activation_layer,
               nn.LayerNorm, o.attention_dropout, o.mlp_dropout, o.p_stochastic_dropout)
  end
  self.layers = nn.Sequential {
    { "MBconv", MBConv(o.in_channels, o.out_channels, o.expansion_ratio, o.squeeze_ratio, o.stride,
                       o.activation_layer, o.norm_layer, o.p_stochastic_dropout) },
    { "window_attention", attention("window") },
    { "grid_attention", attention("grid") },
  }
end
function MaxVitLayer:forward(x) return self.layers(x) end

-- MaxVitBlock: n_layers MaxVitLayers, the first with stride 2
local MaxVitBlock = nn.class("MaxVitBlock", nil, { torch_class = "torchvision.models.maxvit.MaxVitBlock" })
M.MaxVitBlock = MaxVitBlock
MaxVitBlock.keeps_no_tensors = true

function MaxVitBlock:__init(o)
  self.layers = nn.ModuleList()
  self.grid_size = conv_output_shape(o.input_grid_size, 3, 2, 1)
  for i, p in ipairs(o.p_stochastic) do
    local lo = {}
    for k, v in pairs(o) do lo[k] = v end
    lo.in_channels = i == 1 and o.in_channels or o.out_channels
    lo.stride, lo.grid_size, lo.p_stochastic_dropout = i == 1 and 2 or 1, self.grid_size, p
    self.layers:append(MaxVitLayer(lo))
  end
end

function MaxVitBlock:forward(x)
  local y = x
  for _, layer in self.layers:ipairs() do
    local t = layer(y)
    release(y, x)
    y = t
  end
  return y
end

-- MaxVit{input_size, stem_channels, partition_size, block_channels,
-- block_layers, head_dim, stochastic_depth_prob, squeeze_ratio = 0.25,
-- expansion_ratio = 4, mlp_ratio = 4, mlp_dropout = 0, attention_dropout = 0,
-- num_classes = 1000}
local MaxVit = nn.class("MaxVit", nil, { torch_class = "torchvision.models.maxvit.MaxVit" })
M.MaxVit = MaxVit

function MaxVit:__init(o)
  local norm_layer = o.norm_layer or function(c) return nn.BatchNorm2d(c, { eps = 1e-3, momentum = 0.99 }) end
  local act = o.activation_layer or nn.GELU
  local size = conv_output_shape(o.input_size, 3, 2, 1)
  local s = size
  for i = 1, #o.block_channels do
    s = conv_output_shape(s, 3, 2, 1)
    if s[1] % o.partition_size ~= 0 or s[2] % o.partition_size ~= 0 then
      error(string.format("pthcv: MaxVit: input size (%d, %d) gives block %d a %dx%d map, not divisible by the "
                          .. "partition size %d", o.input_size[1], o.input_size[2], i - 1, s[1], s[2],
                          o.partition_size), 3)
    end
  end
  self.stem = nn.Sequential(
    CNA(3, o.stem_channels, { kernel_size = 3, stride = 2, norm_layer = norm_layer, activation_layer = act,
                              bias = false, inplace = false }),
    CNA(o.stem_channels, o.stem_channels, { kernel_size = 3, stride = 1, norm_layer = false, activation_layer = false,
                                            bias = true }))
  self.partition_size = o.partition_size
  self.blocks = nn.ModuleList()
  local total = 0
  for _, n in ipairs(o.block_layers) do total = total + n end
  local step, idx = (o.stochastic_depth_prob - 0) / (total - 1), 0   -- np.linspace(0, p, total)
  for i, cout in ipairs(o.block_channels) do
    local ps = {}
    for j = 1, o.block_layers[i] do
      ps[j] = idx == total - 1 and o.stochastic_depth_prob or idx * step
      idx = idx + 1
    end
    local block = MaxVitBlock {
      in_channels = i == 1 and o.stem_channels or o.block_channels[i - 1], out_channels = cout,
      squeeze_ratio = o.squeeze_ratio or 0.25, expansion_ratio = o.expansion_ratio or 4, norm_layer = norm_layer,
      activation_layer = act, head_dim = o.head_dim, mlp_ratio = o.mlp_ratio or 4, mlp_dropout = o.mlp_dropout or 0.0,
      attention_dropout = o.attention_dropout or 0.0, partition_size = o.partition_size, input_grid_size = size,
      p_stochastic = ps,
    }
    self.blocks:append(block)
    size = block.grid_size
  end
  local c = o.block_channels[#o.block_channels]
  self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.LayerNorm(c), nn.Linear(c, c), nn.Tanh(),
                                  nn.Linear(c, o.num_classes or 1000, { bias = false }))
end

function MaxVit:forward(x)
  local y = self.stem(x)
  for _, block in self.blocks:ipairs() do
    local t = block(y)
    release(y)
    y = t
  end
  local out = self.classifier(y)
  release(y)
  return out
end

function M.maxvit_t(o)
  local opts = { input_size = { 224, 224 }, stem_channels = 64, block_channels = { 64, 128, 256, 512 },
                 block_layers = { 2, 2, 5, 2 }, head_dim = 32, stochastic_depth_prob = 0.2, partition_size = 7 }
  for k, v in pairs(o or {}) do opts[k] = v end
  return MaxVit(opts)
end

return M
