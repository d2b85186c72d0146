-- lua/pthcv/models/swin.lua: torchvision's Swin Transformer, V1 (swin_t,
-- swin_s, swin_b) and V2 (swin_v2_t/s/b: post-norm blocks, cosine
-- attention with a learnt per-head logit scale, a relative position bias
-- made by a small MLP, PatchMergingV2).
--
-- Shifted windows in Lua over the tensor ops: the map [B, H, W, C] is
-- padded to whole windows, rolled (a cat of two slices per shifted dim),
-- cut into windows (one permuted copy), and put back the same way. Each
-- window's attention is the fused kernel (F.attention) reading q, k and v
-- per head in place from the qkv projection, its bias the relative
-- position bias plus, for shifted windows, torch's -100 mask between
-- regions that were not neighbours: both are made once per window layout
-- (and per weights) and kept.
local ffi = require "ffi"
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local layers = require "pthcv.models.layers"
local D = require "pthcv.tensor.dispatch"

local M = {}

-- ---- the window operations ----------------------------------------------------------

-- torch.roll of [B, H, W, C] by (sh, sw) along H and W
local function roll(x, sh, sw)
  local function along(t, dim, s)
    local n = t:size(dim + 1)
    s = s % n
    if s == 0 then return t end
    return F.cat({ F.narrow(t, dim, n - s, s), F.narrow(t, dim, 0, n - s) }, dim)
  end
  return along(along(x, 1, sh), 2, sw)
end

-- [B, pH, pW, C] -> [B * nW, wh * ww, C] (windows in row order)
local function partition(x, wh, ww)
  local B, H, W, C = unpack(x.shape)
  local t = F.permute(F.reshape(x, B, H / wh, wh, W / ww, ww, C), { 0, 1, 3, 2, 4, 5 })
  return F.reshape(t, B * (H / wh) * (W / ww), wh * ww, C)
end

-- the inverse: [B * nW, wh * ww, C] -> [B, pH, pW, C]
local function departition(x, B, H, W, wh, ww)
  local C = x:size(3)
  local t = F.permute(F.reshape(x, B, H / wh, W / ww, wh, ww, C), { 0, 1, 3, 2, 4, 5 })
  return F.reshape(t, B, H, W, C)
end

-- Python's slice a:b of n items as 0-based [start, stop)
local function pyslice(a, b, n)
  local function at(v, default)
    if v == nil then return default end
    if v < 0 then v = v + n end
    return math.max(0, math.min(n, v))
  end
  return at(a, 0), at(b, n)
end

-- torch's shift mask: [nW, L, L], 0 within a region, -100 across regions
local function shift_mask(pH, pW, wh, ww, sh, sw)
  local label = {}
  local count = 0
  local hs = { { 0, -wh }, { -wh, -sh }, { -sh, nil } }
  local ws = { { 0, -ww }, { -ww, -sw }, { -sw, nil } }
  for _, h in ipairs(hs) do
    for _, w in ipairs(ws) do
      local h0, h1 = pyslice(h[1], h[2], pH)
      local w0, w1 = pyslice(w[1], w[2], pW)
      for r = h0, h1 - 1 do for c = w0, w1 - 1 do label[r * pW + c] = count end end
      count = count + 1
    end
  end
  local nh, nw, L = pH / wh, pW / ww, wh * ww
  local mask = Tensor.zeros({ nh * nw, L, L })
  local d = mask:data()
  for wi = 0, nh * nw - 1 do
    local r0, c0 = math.floor(wi / nw) * wh, (wi % nw) * ww
    local function lab(p) return label[(r0 + math.floor(p / ww)) * pW + c0 + p % ww] end
    for i = 0, L - 1 do
      local li = lab(i)
      for j = 0, L - 1 do
        if lab(j) ~= li then d[(wi * L + i) * L + j] = -100.0 end
      end
    end
  end
  return mask
end

-- torch's relative_position_index: [L * L] int64, for query (ih, iw) and key (jh, jw)
local function relative_position_index(wh, ww)
  local L = wh * ww
  local t = Tensor.zeros({ L * L }, "int64")
  local d = ffi.cast("int64_t *", t:data())
  for i = 0, L - 1 do
    for j = 0, L - 1 do
      local dh = math.floor(i / ww) - math.floor(j / ww) + wh - 1
      local dw = i % ww - j % ww + ww - 1
      d[i * L + j] = dh * (2 * ww - 1) + dw
    end
  end
  return t
end
M.relative_position_index = relative_position_index

-- f(self, ...) run as weight preparation ("nn.prepare" at the dispatch
-- point): what it computes from weights and shapes (relative position
-- biases, shift masks) is a constant of a recorded pass, not values the
-- pass reads in Lua, so pthcv.nn.plan can plan the forward that asks for it.
function M.constant(f, self, ...)
  return D.call("nn.prepare", nil, function(_, ...) return f(...) end, self, ...)
end

-- table [(2wh-1)(2ww-1), heads] gathered by index [L*L] -> [heads, L, L]
function M.gather_bias(tbl, index, L)
  local heads = tbl:size(2)
  local t, idx = tbl:float():contiguous(), index:contiguous()
  local src, id = t:data(), ffi.cast("const int64_t *", idx:data())
  local rows = tbl:size(1)
  local out = Tensor.zeros({ heads, L, L })
  local d = out:data()
  for p = 0, L * L - 1 do
    local r = tonumber(id[p])
    if r < 0 or r >= rows then
      error(string.format("pthcv: relative_position_index %d is outside the bias table's %d rows", r, rows), 3)
    end
    for h = 0, heads - 1 do d[h * L * L + p] = src[r * heads + h] end
  end
  return out
end

-- ---- attention ------------------------------------------------------------------------

-- ShiftedWindowAttention(dim, window_size, shift_size, num_heads [, qkv_bias,
-- proj_bias, attention_dropout, dropout])
local SWA = nn.class("ShiftedWindowAttention", nil,
  { torch_class = "torchvision.models.swin_transformer.ShiftedWindowAttention" })
M.ShiftedWindowAttention = SWA
SWA.keeps_no_tensors = true

function SWA:__init(dim, window_size, shift_size, num_heads, qkv_bias, proj_bias, attention_dropout, dropout)
  if #window_size ~= 2 or #shift_size ~= 2 then
    error("pthcv: ShiftedWindowAttention: window_size and shift_size must be of length 2", 3)
  end
  self.window_size, self.shift_size, self.num_heads = window_size, shift_size, num_heads
  self.attention_dropout, self.dropout = attention_dropout or 0.0, dropout or 0.0
  self.qkv = nn.Linear(dim, dim * 3, { bias = qkv_bias ~= false })
  self.proj = nn.Linear(dim, dim, { bias = proj_bias ~= false })
  self:define_relative_position_bias_table()
  self:register_buffer("relative_position_index", relative_position_index(window_size[1], window_size[2]))
end

function SWA:define_relative_position_bias_table()
  local wh, ww = self.window_size[1], self.window_size[2]
  self:register_parameter("relative_position_bias_table", Tensor.zeros({ (2 * wh - 1) * (2 * ww - 1), self.num_heads }))
end

-- [heads, L, L]
function SWA:relative_position_bias()
  local L = self.window_size[1] * self.window_size[2]
  return M.gather_bias(self.relative_position_bias_table, self.relative_position_index, L)
end

function SWA:prepare() self._bias = {} end

-- the bias of the scores for a padded map pH x pW and shifts (sh, sw),
-- made once per layout (M.constant)
local function scores_bias(self, cache, pH, pW, sh, sw)
  if not cache.rel then cache.rel = self:relative_position_bias() end
  local b = cache.rel
  if sh + sw > 0 then
    local wh, ww = self.window_size[1], self.window_size[2]
    local L = wh * ww
    local mask = shift_mask(pH, pW, wh, ww, sh, sw)
    b = F.add(F.reshape(cache.rel, 1, self.num_heads, L, L), F.reshape(mask, mask:size(1), 1, L, L))
  end
  return b
end

function SWA:scores_bias(pH, pW, sh, sw)
  local key = pH .. "," .. pW .. "," .. sh .. "," .. sw
  local cache = rawget(self, "_bias") or {}
  self._bias = cache
  if not cache[key] then cache[key] = M.constant(scores_bias, self, cache, pH, pW, sh, sw) end
  return cache[key]
end

-- how the scores are formed (V1: q scaled by head_dim^-0.5)
function SWA:score_options(head_dim) return { scale = head_dim ^ -0.5 } end

function SWA:project_qkv(x) return self.qkv(x) end

function SWA:forward(x)
  local B, H, W, C = unpack(x.shape)
  local wh, ww = self.window_size[1], self.window_size[2]
  local pad_r, pad_b = (ww - W % ww) % ww, (wh - H % wh) % wh
  local xp = (pad_r > 0 or pad_b > 0) and F.pad(x, { 0, 0, 0, pad_r, 0, pad_b }) or x
  local pH, pW = H + pad_b, W + pad_r
  local sh, sw = self.shift_size[1], self.shift_size[2]
  if wh >= pH then sh = 0 end
  if ww >= pW then sw = 0 end
  local rolled = (sh + sw > 0) and roll(xp, -sh, -sw) or xp
  local win = partition(rolled, wh, ww)
  release(rolled, x); release(xp, x)
  local qkv = self:project_qkv(win)                             -- [B * nW, L, 3C]
  release(win)
  local nW, L, heads = (pH / wh) * (pW / ww), wh * ww, self.num_heads
  local hd = C / heads
  local function view(off)   -- [B, nW, heads, L, hd] over qkv
    return qkv:as_strided({ B, nW, heads, L, hd }, { nW * L * 3 * C, L * 3 * C, hd, 3 * C, 1 }, qkv.offset + off)
  end
  local o = self:score_options(hd)
  o.bias, o.heads_last = self:scores_bias(pH, pW, sh, sw), true
  local a = F.attention(view(0), view(C), view(2 * C), o)     -- [B, nW, L, heads, hd]
  release(qkv)
  local y = self.proj(F.reshape(a, B * nW, L, C))
  release(a)
  local merged = departition(y, B, pH, pW, wh, ww)
  release(y)
  local back = (sh + sw > 0) and roll(merged, sh, sw) or merged
  release(merged, back)
  if pad_r == 0 and pad_b == 0 then return back end
  local out = F.narrow(F.narrow(back, 1, 0, H), 2, 0, W):contiguous()
  release(back)
  return out
end

-- ShiftedWindowAttentionV2: cosine attention, per-head logit scale,
-- continuous relative position bias (cpb_mlp over relative_coords_table)
local SWA2 = nn.class("ShiftedWindowAttentionV2", SWA,
  { torch_class = "torchvision.models.swin_transformer.ShiftedWindowAttentionV2" })
M.ShiftedWindowAttentionV2 = SWA2

function SWA2:__init(dim, window_size, shift_size, num_heads, qkv_bias, proj_bias, attention_dropout, dropout)
  SWA.__init(self, dim, window_size, shift_size, num_heads, qkv_bias, proj_bias, attention_dropout, dropout)
  self:register_parameter("logit_scale", Tensor.full({ num_heads, 1, 1 }, math.log(10)))
  self.cpb_mlp = nn.Sequential(nn.Linear(2, 512, { bias = true }), nn.ReLU(true),
                               nn.Linear(512, num_heads, { bias = false }))
end

-- torch's relative_coords_table: sign(t) log2(|t| + 1) / 3 for the
-- offsets scaled to [-8, 8], [1, 2wh-1, 2ww-1, 2]
function SWA2:define_relative_position_bias_table()
  local wh, ww = self.window_size[1], self.window_size[2]
  local t = Tensor.zeros({ 1, 2 * wh - 1, 2 * ww - 1, 2 })
  local d = t:data()
  local function f(v, w)
    v = v / (w - 1) * 8
    local s = v > 0 and 1 or v < 0 and -1 or 0
    return s * math.log(math.abs(v) + 1) / math.log(2) / 3
  end
  for a = 0, 2 * wh - 2 do
    for b = 0, 2 * ww - 2 do
      d[(a * (2 * ww - 1) + b) * 2] = f(a - (wh - 1), wh)
      d[(a * (2 * ww - 1) + b) * 2 + 1] = f(b - (ww - 1), ww)
    end
  end
  self:register_buffer("relative_coords_table", t)
end

function SWA2:relative_position_bias()
  local L = self.window_size[1] * self.window_size[2]
  -- (float32 for the kernels when module:half() made the buffer float16:
  -- its values are then torch's float16 table)
  local tbl = self.cpb_mlp(F.f32(self.relative_coords_table))
  local b = M.gather_bias(F.reshape(tbl, -1, self.num_heads), self.relative_position_index, L)
  return F.mul(F.sigmoid(b), 16)
end

-- the k third of the qkv bias is zeroed (torch zeroes it at every call)
function SWA2:prepare()
  SWA.prepare(self)
  local b = self.qkv.bias
  if b then
    b = b:float():clone()
    local n = b.numel / 3
    local d = b:data()
    for i = n, 2 * n - 1 do d[i] = 0 end
  end
  self.qkv:claim()
  self._qkv = F.linear_prepare(self.qkv.weight, b)
  local ls = self.logit_scale:float():contiguous()
  local hs = Tensor.zeros({ self.num_heads })
  local src, dst = ls:data(), hs:data()
  local f32 = ffi.new("float[1]")
  local cap = ffi.new("float[1]", math.log(100.0))[0]
  for h = 0, self.num_heads - 1 do
    f32[0] = math.exp(math.min(src[h], cap))                   -- clamp(max=log(100)).exp() in float32
    dst[h] = f32[0]
  end
  self._head_scale = hs
end

function SWA2:project_qkv(x) return F.linear_packed(self._qkv, x) end
function SWA2:score_options() return { scale = 1.0, cosine = true, head_scale = self._head_scale } end

-- ---- blocks -----------------------------------------------------------------------------

local function merge_pad(x)
  x = x:contiguous()
  local B, H, W, C = unpack(x.shape)
  if H % 2 == 1 or W % 2 == 1 then
    x = F.pad(x, { 0, 0, 0, W % 2, 0, H % 2 })
    H, W = H + H % 2, W + W % 2
  end
  local parts = {}
  for i, o in ipairs { { 0, 0 }, { 1, 0 }, { 0, 1 }, { 1, 1 } } do   -- x0, x1, x2, x3 as torch's
    parts[i] = x:as_strided({ B, H / 2, W / 2, C }, { H * W * C, 2 * W * C, 2 * C, 1 },
                            x.offset + o[1] * W * C + o[2] * C)
  end
  return F.cat(parts, -1)
end

-- PatchMerging(dim [, norm_layer]): 2x2 neighbours concatenated, LayerNorm(4 dim), Linear to 2 dim
local PatchMerging = nn.class("PatchMerging", nil, { torch_class = "torchvision.models.swin_transformer.PatchMerging" })
M.PatchMerging = PatchMerging
PatchMerging.keeps_no_tensors = true
function PatchMerging:__init(dim, norm_layer)
  norm_layer = norm_layer or nn.LayerNorm
  self.dim = dim
  self.reduction = nn.Linear(4 * dim, 2 * dim, { bias = false })
  self.norm = norm_layer(4 * dim)
end
function PatchMerging:forward(x)
  local m = merge_pad(x)
  local n = self.norm(m)
  release(m)
  local y = self.reduction(n)
  release(n)
  return y
end

-- PatchMergingV2: the Linear first, then LayerNorm(2 dim)
local PatchMergingV2 = nn.class("PatchMergingV2", nil,
  { torch_class = "torchvision.models.swin_transformer.PatchMergingV2" })
M.PatchMergingV2 = PatchMergingV2
PatchMergingV2.keeps_no_tensors = true
function PatchMergingV2:__init(dim, norm_layer)
  norm_layer = norm_layer or nn.LayerNorm
  self.dim = dim
  self.reduction = nn.Linear(4 * dim, 2 * dim, { bias = false })
  self.norm = norm_layer(2 * dim)
end
function PatchMergingV2:forward(x)
  local m = merge_pad(x)
  local r = self.reduction(m)
  release(m)
  local y = self.norm(r)
  release(r)
  return y
end

-- SwinTransformerBlock(dim, num_heads, window_size, shift_size [, mlp_ratio,
-- dropout, attention_dropout, stochastic_depth_prob, norm_layer, attn_layer])
local Block = nn.class("SwinTransformerBlock", nil,
  { torch_class = "torchvision.models.swin_transformer.SwinTransformerBlock" })
M.SwinTransformerBlock = Block
Block.keeps_no_tensors = true

function Block:__init(dim, num_heads, window_size, shift_size, o)
  o = o or {}
  local norm_layer = o.norm_layer or nn.LayerNorm
  self.norm1 = norm_layer(dim)
  self.attn = (o.attn_layer or SWA)(dim, window_size, shift_size, num_heads, true, true, o.attention_dropout,
                                    o.dropout)
  self.stochastic_depth = layers.StochasticDepth(o.stochastic_depth_prob or 0.0, "row")
  self.norm2 = norm_layer(dim)
  self.mlp = layers.MLP(dim, { math.floor(dim * (o.mlp_ratio or 4.0)), dim },
                        { activation_layer = nn.GELU, inplace = false, dropout = o.dropout or 0.0 })
end

-- x + f(g(x)), the intermediate freed
local function residual(x, f, g)
  local t = g(x)
  local u = f(t)
  release(t)
  local y = F.add(x, u)
  release(u)
  return y
end

-- pre-norm: x + attn(norm1(x)), then x + mlp(norm2(x))
function Block:forward(x)
  local x1 = residual(x, self.attn, self.norm1)
  local y = residual(x1, self.mlp, self.norm2)
  release(x1)
  return y
end

-- SwinTransformerBlockV2: post-norm, x + norm1(attn(x)), then x + norm2(mlp(x))
local BlockV2 = nn.class("SwinTransformerBlockV2", Block,
  { torch_class = "torchvision.models.swin_transformer.SwinTransformerBlockV2" })
M.SwinTransformerBlockV2 = BlockV2
function BlockV2:__init(dim, num_heads, window_size, shift_size, o)
  local opts = { attn_layer = SWA2 }
  for k, v in pairs(o or {}) do opts[k] = v end
  Block.__init(self, dim, num_heads, window_size, shift_size, opts)
end
function BlockV2:forward(x)
  local x1 = residual(x, self.norm1, self.attn)
  local y = residual(x1, self.norm2, self.mlp)
  release(x1)
  return y
end

-- SwinTransformer{patch_size, embed_dim, depths, num_heads, window_size,
-- mlp_ratio = 4, dropout = 0, attention_dropout = 0, stochastic_depth_prob
-- = 0.1, num_classes = 1000, block, downsample_layer}
local SwinTransformer = nn.class("SwinTransformer", nil,
  { torch_class = "torchvision.models.swin_transformer.SwinTransformer" })
M.SwinTransformer = SwinTransformer

function SwinTransformer:__init(o)
  self.num_classes = o.num_classes or 1000
  local block, downsample = o.block or Block, o.downsample_layer or PatchMerging
  local norm_layer = function(c) return nn.LayerNorm(c, { eps = 1e-5 }) end
  local embed = o.embed_dim
  local l = { nn.Sequential(nn.Conv2d(3, embed, o.patch_size, { stride = o.patch_size }),
                            layers.Permute({ 0, 2, 3, 1 }), norm_layer(embed)) }
  local total, id = 0, 0
  for _, d in ipairs(o.depths) do total = total + d end
  local sd = o.stochastic_depth_prob or 0.1
  for i, depth in ipairs(o.depths) do
    local dim = embed * math.floor(2 ^ (i - 1))
    local stage = {}
    for j = 0, depth - 1 do
      local shift = {}
      for k, w in ipairs(o.window_size) do shift[k] = j % 2 == 0 and 0 or math.floor(w / 2) end
      stage[#stage + 1] = block(dim, o.num_heads[i], o.window_size, shift,
                                { mlp_ratio = o.mlp_ratio, dropout = o.dropout, attention_dropout = o.attention_dropout,
                                  stochastic_depth_prob = sd * id / (total - 1), norm_layer = norm_layer })
      id = id + 1
    end
    l[#l + 1] = nn.Sequential(stage)
    if i < #o.depths then l[#l + 1] = downsample(dim, norm_layer) end
  end
  self.features = nn.Sequential(l)
  local num_features = embed * math.floor(2 ^ (#o.depths - 1))
  self.norm = norm_layer(num_features)
  self.permute = layers.Permute({ 0, 3, 1, 2 })
  self.avgpool = nn.AdaptiveAvgPool2d(1)
  self.flatten = nn.Flatten(1)
  self.head = nn.Linear(num_features, self.num_classes)
end

function SwinTransformer:forward(x)
  local t = self.features(x)
  local n = self.norm(t)
  release(t, x)
  local p = self.avgpool(self.permute(n))
  release(n)
  local y = self.head(self.flatten(p))
  release(p)
  return y
end

local function builder(embed_dim, depths, num_heads, window, sd, v2)
  return function(o)
    local opts = { patch_size = { 4, 4 }, embed_dim = embed_dim, depths = depths, num_heads = num_heads,
                   window_size = { window, window }, stochastic_depth_prob = sd }
    if v2 then opts.block, opts.downsample_layer = BlockV2, PatchMergingV2 end
    for k, v in pairs(o or {}) do opts[k] = v end
    return SwinTransformer(opts)
  end
end
M.swin_t = builder(96, { 2, 2, 6, 2 }, { 3, 6, 12, 24 }, 7, 0.2)
M.swin_s = builder(96, { 2, 2, 18, 2 }, { 3, 6, 12, 24 }, 7, 0.3)
M.swin_b = builder(128, { 2, 2, 18, 2 }, { 4, 8, 16, 32 }, 7, 0.5)
M.swin_v2_t = builder(96, { 2, 2, 6, 2 }, { 3, 6, 12, 24 }, 8, 0.2, true)
M.swin_v2_s = builder(96, { 2, 2, 18, 2 }, { 3, 6, 12, 24 }, 8, 0.3, true)
M.swin_v2_b = builder(128, { 2, 2, 18, 2 }, { 4, 8, 16, 32 }, 8, 0.5, true)

return M
