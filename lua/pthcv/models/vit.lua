-- lua/pthcv/models/vit.lua: torchvision's VisionTransformer: vit_b_16,
-- vit_b_32, vit_l_16, vit_l_32, vit_h_14 (image_size option, default 224;
-- the input must have that size, as torch asserts). Each encoder block is
-- LayerNorm, nn.MultiheadAttention (one GEMM for q, k and v, then the fused
-- attention kernel reading them per head in place), residual, LayerNorm,
-- MLP (Linear + GELU fused, Linear), residual.
local nn = require "pthcv.nn"
local F = nn.F
local Tensor = require "pthcv.tensor"
local release = require "pthcv.nn.release"
local layers = require "pthcv.models.layers"

local M = {}

local function layer_norm(c) return nn.LayerNorm(c, { eps = 1e-6 }) end

-- MLPBlock(in_dim, mlp_dim, dropout): Linear, GELU, Dropout, Linear, Dropout
local MLPBlock = nn.class("MLPBlock", layers.MLP, { torch_class = "torchvision.models.vision_transformer.MLPBlock" })
M.MLPBlock = MLPBlock
function MLPBlock:__init(in_dim, mlp_dim, dropout)
  layers.MLP.__init(self, in_dim, { mlp_dim, in_dim }, { activation_layer = nn.GELU, inplace = false,
                                                         dropout = dropout })
end

-- EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout [, norm_layer])
local EncoderBlock = nn.class("EncoderBlock", nil, { torch_class = "torchvision.models.vision_transformer.EncoderBlock" })
M.EncoderBlock = EncoderBlock
EncoderBlock.keeps_no_tensors = true

function EncoderBlock:__init(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer)
  norm_layer = norm_layer or layer_norm
  self.num_heads = num_heads
  self.ln_1 = norm_layer(hidden_dim)
  self.self_attention = nn.MultiheadAttention(hidden_dim, num_heads, { dropout = attention_dropout, batch_first = true })
  self.dropout = nn.Dropout(dropout)
  self.ln_2 = norm_layer(hidden_dim)
  self.mlp = MLPBlock(hidden_dim, mlp_dim, dropout)
end

function EncoderBlock:forward(input)
  if input.ndim ~= 3 then
    error("pthcv: EncoderBlock: expected (batch_size, seq_length, hidden_dim), got " .. tostring(input), 2)
  end
  local t = self.ln_1(input)
  local a = self.self_attention(t, t, t, { need_weights = false })
  release(t)
  local x = F.add(a, input)
  release(a)
  t = self.ln_2(x)
  local m = self.mlp(t)
  release(t)
  local y = F.add(x, m)
  release(x); release(m)
  return y
end

-- Encoder(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout [, norm_layer])
local Encoder = nn.class("Encoder", nil, { torch_class = "torchvision.models.vision_transformer.Encoder" })
M.Encoder = Encoder
Encoder.keeps_no_tensors = true

function Encoder:__init(seq_length, num_layers, num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer)
  norm_layer = norm_layer or layer_norm
  self:register_parameter("pos_embedding", Tensor.zeros({ 1, seq_length, hidden_dim }))
  self.dropout = nn.Dropout(dropout)
  local l = {}
  for i = 0, num_layers - 1 do
    l[#l + 1] = { "encoder_layer_" .. i,
                  EncoderBlock(num_heads, hidden_dim, mlp_dim, dropout, attention_dropout, norm_layer) }
  end
  self.layers = nn.Sequential(l)
  self.ln = norm_layer(hidden_dim)
end

function Encoder:forward(input)
  if input.ndim ~= 3 then
    error("pthcv: Encoder: expected (batch_size, seq_length, hidden_dim), got " .. tostring(input), 2)
  end
  local x = F.add(input, F.f32(self.pos_embedding))   -- float16 after half()
  local t = self.layers(x)
  release(x, t)
  local y = self.ln(t)
  release(t)
  return y
end

-- VisionTransformer{image_size, patch_size, num_layers, num_heads,
-- hidden_dim, mlp_dim, dropout = 0, attention_dropout = 0, num_classes =
-- 1000, representation_size}
local VisionTransformer = nn.class("VisionTransformer", nil,
  { torch_class = "torchvision.models.vision_transformer.VisionTransformer" })
M.VisionTransformer = VisionTransformer

function VisionTransformer:__init(o)
  if o.image_size % o.patch_size ~= 0 then
    error(string.format("pthcv: VisionTransformer: image_size %d is not a multiple of patch_size %d", o.image_size,
                        o.patch_size), 3)
  end
  if o.conv_stem_configs then error("pthcv: VisionTransformer: conv_stem_configs is not supported", 3) end
  self.image_size, self.patch_size = o.image_size, o.patch_size
  self.hidden_dim, self.mlp_dim = o.hidden_dim, o.mlp_dim
  self.attention_dropout, self.dropout = o.attention_dropout or 0.0, o.dropout or 0.0
  self.num_classes = o.num_classes or 1000
  self.representation_size = o.representation_size
  self.conv_proj = nn.Conv2d(3, o.hidden_dim, o.patch_size, { stride = o.patch_size })
  local side = o.image_size / o.patch_size
  local seq_length = side * side + 1
  self:register_parameter("class_token", Tensor.zeros({ 1, 1, o.hidden_dim }))
  self.encoder = Encoder(seq_length, o.num_layers, o.num_heads, o.hidden_dim, o.mlp_dim, self.dropout,
                         self.attention_dropout)
  self.seq_length = seq_length
  if self.representation_size == nil then
    self.heads = nn.Sequential { { "head", nn.Linear(o.hidden_dim, self.num_classes) } }
  else
    self.heads = nn.Sequential { { "pre_logits", nn.Linear(o.hidden_dim, self.representation_size) },
                                 { "act", nn.Tanh() },
                                 { "head", nn.Linear(self.representation_size, self.num_classes) } }
  end
end

function VisionTransformer:forward(x)
  local n, _, h, w = unpack(x.shape)
  if h ~= self.image_size or w ~= self.image_size then
    error(string.format("pthcv: VisionTransformer: expected %dx%d images (image_size), got %dx%d", self.image_size,
                        self.image_size, h, w), 2)
  end
  local p = self.conv_proj(x)                                   -- [n, hidden, h/p, w/p]
  local tokens = F.permute(F.reshape(p, n, self.hidden_dim, -1), { 0, 2, 1 })
  -- the class token for each image (torch's expand(n, -1, -1)): one row
  -- repeated, at every batch (an ONNX export with --dynamic batch writes it
  -- as that row Expand-ed to the batch); float16 after half(), float32 here
  local cls = F.add(Tensor.zeros({ n, 1, self.hidden_dim }), F.f32(self.class_token))
  local seq = F.cat({ cls, tokens }, 1)
  release(p); release(tokens)
  local e = self.encoder(seq)
  release(seq)
  local first = F.reshape(F.narrow(e, 1, 0, 1), n, self.hidden_dim)  -- x[:, 0]
  local y = self.heads(first)
  release(e); release(first)
  return y
end

-- pretrained files from before torchvision 0.13 name the MLP's Linears
-- linear_1 / linear_2 (torchvision's MLPBlock._load_from_state_dict)
local function new_key(k)
  local head, i, tail = k:match("^(.*%.mlp)%.linear_([12])%.(.*)$")
  if head then return string.format("%s.%d.%s", head, 3 * (tonumber(i) - 1), tail) end
  return k
end
function VisionTransformer:load_state_dict(sd, opts) return layers.load_state_dict_renamed(self, sd, opts, new_key) end

local function builder(patch_size, num_layers, num_heads, hidden_dim, mlp_dim)
  return function(o)
    local opts = { image_size = 224, patch_size = patch_size, num_layers = num_layers, num_heads = num_heads,
                   hidden_dim = hidden_dim, mlp_dim = mlp_dim }
    for k, v in pairs(o or {}) do opts[k] = v end
    return VisionTransformer(opts)
  end
end
M.vit_b_16 = builder(16, 12, 12, 768, 3072)
M.vit_b_32 = builder(32, 12, 12, 768, 3072)
M.vit_l_16 = builder(16, 24, 16, 1024, 4096)
M.vit_l_32 = builder(32, 24, 16, 1024, 4096)
M.vit_h_14 = builder(14, 32, 16, 1280, 5120)

return M
