-- lua/pthcv/jit/ops/nn.lua: the aten:: operators of layers: convolution,
-- normalisation, pooling, activations, linear algebra, resampling,
-- reductions, dropout, over pthcv.F's kernels (eval-mode semantics: a
-- training-mode BatchNorm or an active dropout is refused, not guessed).
-- Convolutions, linear layers and batch norms are pthcv.F's
-- (pthcv.jit.layers); pthcv.nn.plan fuses them as it fuses every model's.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local V = require "pthcv.jit.values"
local S = require "pthcv.jit.ops.scalar"
local L = require "pthcv.jit.layers"

local None = V.None
local is_tensor = Tensor.is
local m = Tensor.methods

local function opt(v) if v == None then return nil end return v end

local function pair_list(v)
  if type(v) == "number" then return { v, v } end
  if V.is_list(v) or V.is_tuple(v) then
    if #v == 1 then return { v[1], v[1] } end
    return { v[1], v[2] }
  end
  return v
end

local function training_refused(op)
  error("RuntimeError: " .. op .. " in training mode is not supported: pthcv runs models for inference (call :eval())", 0)
end

return function(ops)
  local def = ops.def
  local inplace = ops.inplace

  -- ---- convolution ----
  def("aten::_convolution(Tensor input, Tensor weight, Tensor? bias, int[] stride, SymInt[] padding, int[] dilation, "
      .. "bool transposed, SymInt[] output_padding, int groups, bool benchmark, bool deterministic, bool cudnn_enabled, "
      .. "bool allow_tf32) -> Tensor",
      function(x, w, b, stride, padding, dilation, transposed, output_padding, groups)
        if transposed then
          if w.ndim ~= 4 then error("aten::_convolution: only 2-d transposed convolutions are supported", 0) end
          return F.conv_transpose2d(x, w, opt(b), pair_list(stride), pair_list(padding), pair_list(output_padding),
                                    groups, pair_list(dilation))
        end
        return L.convolution(x, w, opt(b), stride, padding, dilation, groups)
      end)
  def("aten::conv2d(Tensor input, Tensor weight, Tensor? bias=None, int[2] stride=1, SymInt[2] padding=0, "
      .. "int[2] dilation=1, int groups=1) -> Tensor",
      function(x, w, b, stride, padding, dilation, groups) return L.convolution(x, w, opt(b), stride, padding, dilation, groups) end)
  def("aten::conv1d(Tensor input, Tensor weight, Tensor? bias=None, int[1] stride=1, SymInt[1] padding=0, "
      .. "int[1] dilation=1, int groups=1) -> Tensor",
      function(x, w, b, stride, padding, dilation, groups) return L.convolution(x, w, opt(b), stride, padding, dilation, groups) end)
  def("aten::conv_transpose2d(Tensor input, Tensor weight, Tensor? bias=None, int[2] stride=1, SymInt[2] padding=0, "
      .. "SymInt[2] output_padding=0, int groups=1, int[2] dilation=1) -> Tensor",
      function(x, w, b, stride, padding, output_padding, groups, dilation)
        return F.conv_transpose2d(x, w, opt(b), pair_list(stride), pair_list(padding), pair_list(output_padding),
                                  groups, pair_list(dilation))
      end)

  -- ---- normalisation ----
  def("aten::batch_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, "
      .. "bool training, float momentum, float eps, bool cudnn_enabled) -> Tensor",
      function(x, w, b, mean, var, training, _, eps)
        if training or mean == None then training_refused("aten::batch_norm") end
        return L.batch_norm(x, opt(w), opt(b), mean, var, eps)
      end)
  def("aten::instance_norm(Tensor input, Tensor? weight, Tensor? bias, Tensor? running_mean, Tensor? running_var, "
      .. "bool use_input_stats, float momentum, float eps, bool cudnn_enabled) -> Tensor",
      function(x, w, b, mean, var, use_input_stats, _, eps)
        if use_input_stats then return F.group_norm(x, x:size(2), opt(w), opt(b), eps) end
        return F.batch_norm(x, mean, var, opt(w), opt(b), false, 0, eps)
      end)
  def("aten::layer_norm(Tensor input, SymInt[] normalized_shape, Tensor? weight=None, Tensor? bias=None, "
      .. "float eps=1e-05, bool cudnn_enable=True) -> Tensor",
      function(x, shape, w, b, eps) return F.layer_norm(x, { unpack(shape) }, opt(w), opt(b), eps) end)
  def("aten::group_norm(Tensor input, int num_groups, Tensor? weight=None, Tensor? bias=None, float eps=1e-05, "
      .. "bool cudnn_enabled=True) -> Tensor",
      function(x, g, w, b, eps) return F.group_norm(x, g, opt(w), opt(b), eps) end)

  -- ---- activations ----
  -- params(...) gives the in-place form's activation kind, alpha and beta
  -- from the operator's arguments after self.
  local function def_act(sig, sig_, f, kind, params)
    local copy_into = ops.copy_into
    def(sig, f)
    if sig_ then
      def(sig_, function(x, p1, p2, p3)
        local k, a, b = kind, 0, 0
        if params then k, a, b = params(p1, p2, p3) end
        -- one dispatched op (pthcv.nn.plan fuses it as the op on the value it overwrites)
        if ops.can_activate_(x, k) then return ops.activate_(x, k, a, b) end
        return copy_into(x, f(x, p1, p2, p3))
      end)
    end
  end
  def_act("aten::relu(Tensor self) -> Tensor", "aten::relu_(Tensor(a!) self) -> Tensor(a!)", F.relu, "relu")
  def_act("aten::relu6(Tensor self) -> Tensor", "aten::relu6_(Tensor(a!) self) -> Tensor(a!)", F.relu6, "relu6")
  def_act("aten::hardtanh(Tensor self, Scalar min_val=-1, Scalar max_val=1) -> Tensor",
          "aten::hardtanh_(Tensor(a!) self, Scalar min_val=-1, Scalar max_val=1) -> Tensor(a!)",
          F.hardtanh, "clamp", function(lo, hi) return "clamp", lo, hi end)
  def_act("aten::hardswish(Tensor self) -> Tensor", "aten::hardswish_(Tensor(a!) self) -> Tensor(a!)", F.hardswish, "hardswish")
  def_act("aten::hardsigmoid(Tensor self) -> Tensor", "aten::hardsigmoid_(Tensor(a!) self) -> Tensor(a!)",
          F.hardsigmoid, "hardsigmoid")
  def_act("aten::sigmoid(Tensor self) -> Tensor", "aten::sigmoid_(Tensor(a!) self) -> Tensor(a!)", F.sigmoid, "sigmoid")
  def_act("aten::tanh(Tensor self) -> Tensor", "aten::tanh_(Tensor(a!) self) -> Tensor(a!)", F.tanh, "tanh")
  def_act("aten::silu(Tensor self) -> Tensor", "aten::silu_(Tensor(a!) self) -> Tensor(a!)", F.silu, "silu")
  def_act("aten::leaky_relu(Tensor self, Scalar negative_slope=0.01) -> Tensor",
          "aten::leaky_relu_(Tensor(a!) self, Scalar negative_slope=0.01) -> Tensor(a!)",
          F.leaky_relu, "leaky_relu", function(slope) return "leaky_relu", slope, 0 end)
  def_act("aten::elu(Tensor self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor",
          "aten::elu_(Tensor(a!) self, Scalar alpha=1, Scalar scale=1, Scalar input_scale=1) -> Tensor(a!)",
          function(x, alpha, scale, input_scale)
            if scale ~= 1 or input_scale ~= 1 then error("aten::elu: scale and input_scale other than 1 are not supported", 0) end
            return F.elu(x, alpha)
          end, "elu", function(alpha, scale, input_scale)
            if scale ~= 1 or input_scale ~= 1 then return "unfusable" end
            return "elu", alpha, 0
          end)
  def_act("aten::gelu(Tensor self, *, str approximate='none') -> Tensor", nil,
          F.gelu, "gelu", function(a) return a == "tanh" and "gelu_tanh" or "gelu", 0, 0 end)
  local function clamp(x, lo, hi)
    if not is_tensor(x) then
      local v = x
      if lo ~= None and v < lo then v = lo end
      if hi ~= None and v > hi then v = hi end
      return v
    end
    return F.clamp(x, opt(lo), opt(hi))
  end
  def("aten::clamp(Tensor self, Scalar? min=None, Scalar? max=None) -> Tensor", clamp)
  def("aten::clamp_(Tensor(a!) self, Scalar? min=None, Scalar? max=None) -> Tensor(a!)", inplace(clamp))
  def("aten::clamp_min(Tensor self, Scalar min) -> Tensor", function(x, lo) return clamp(x, lo, None) end)
  def("aten::clamp_min_(Tensor(a!) self, Scalar min) -> Tensor(a!)", inplace(function(x, lo) return clamp(x, lo, None) end))
  def("aten::clamp_max(Tensor self, Scalar max) -> Tensor", function(x, hi) return clamp(x, None, hi) end)
  def("aten::clamp_max_(Tensor(a!) self, Scalar max) -> Tensor(a!)", inplace(function(x, hi) return clamp(x, None, hi) end))
  def("aten::prelu(Tensor self, Tensor weight) -> Tensor", F.prelu)
  def("aten::softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", function(x, d) return F.softmax(x, d) end)
  def("aten::log_softmax(Tensor self, int dim, ScalarType? dtype=None) -> Tensor", function(x, d) return F.log_softmax(x, d) end)

  -- ---- dropout: the identity in eval mode ----
  -- (p = 0 in training mode is the identity too: swin's attention passes that)
  local function dropout(name)
    return function(x, p, train)
      if train and p ~= 0 then training_refused(name) end
      return x
    end
  end
  for _, name in ipairs { "dropout", "feature_dropout", "alpha_dropout", "feature_alpha_dropout" } do
    def("aten::" .. name .. "(Tensor input, float p, bool train) -> Tensor", dropout("aten::" .. name))
    def("aten::" .. name .. "_(Tensor(a!) self, float p, bool train) -> Tensor(a!)", dropout("aten::" .. name .. "_"))
  end
  -- random draws only appear on training paths (stochastic depth)
  def("aten::bernoulli_(Tensor(a!) self, float p=0.5, *, Generator? generator=None) -> Tensor(a!)",
      function() training_refused("aten::bernoulli_") end)

  -- ---- linear algebra ----
  def("aten::linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor",
      function(x, w, b) return L.linear(x, w, opt(b)) end)
  def("aten::matmul(Tensor self, Tensor other) -> Tensor", F.matmul)
  def("aten::mm(Tensor self, Tensor mat2) -> Tensor", F.matmul)
  def("aten::bmm(Tensor self, Tensor mat2) -> Tensor", F.matmul)
  -- beta * c + alpha * (a @ b), batched (baddbmm) or not (addmm)
  local function add_product(c, a, b, beta, alpha)
    local p = F.matmul(a, b)
    if alpha ~= 1 then p = ops.mul(p, alpha) end
    if beta == 0 then return p end
    return ops.add(p, beta == 1 and c or ops.mul(c, beta))
  end
  def("aten::addmm(Tensor self, Tensor mat1, Tensor mat2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", add_product)
  def("aten::baddbmm(Tensor self, Tensor batch1, Tensor batch2, *, Scalar beta=1, Scalar alpha=1) -> Tensor", add_product)

  -- ---- pooling ----
  def("aten::max_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, int[2] dilation=1, "
      .. "bool ceil_mode=False) -> Tensor",
      function(x, k, s, p, d, c) return F.max_pool2d(x, pair_list(k), #s == 0 and nil or pair_list(s), pair_list(p), pair_list(d), c) end)
  def("aten::avg_pool2d(Tensor self, int[2] kernel_size, int[2] stride=[], int[2] padding=0, bool ceil_mode=False, "
      .. "bool count_include_pad=True, int? divisor_override=None) -> Tensor",
      function(x, k, s, p, c, cip, div)
        return F.avg_pool2d(x, pair_list(k), #s == 0 and nil or pair_list(s), pair_list(p), c, cip, opt(div))
      end)
  def("aten::adaptive_avg_pool2d(Tensor self, SymInt[2] output_size) -> Tensor",
      function(x, size) return F.adaptive_avg_pool2d(x, pair_list(size)) end)
  def("aten::adaptive_avg_pool1d(Tensor self, int[1] output_size) -> Tensor", function(x, size)
    local y = F.adaptive_avg_pool2d(m.unsqueeze(x, x.ndim - 1 + 1), { 1, size[1] })
    return m.squeeze(y, y.ndim - 1)
  end)

  -- ---- resampling and padding ----
  -- the .vec overloads (input, output_size?, [align_corners,] scale_factors?)
  -- and the older (self, output_size, [align_corners,] scales_h, scales_w)
  local function upsample(mode)
    return function(x, size, a, b, c)
      local align = nil
      if mode == "bilinear" then align, a, b = a, b, c end
      local scales = a
      if type(a) == "number" then scales = { a, b ~= None and b or a } end
      if size ~= None and #size > 0 then
        return F.interpolate(x, { size = pair_list(size), mode = mode, align_corners = align })
      end
      if scales == None or scales == nil then error("aten::upsample_" .. mode .. "2d: output_size or scale_factors is needed", 0) end
      return F.interpolate(x, { scale_factor = pair_list(scales), mode = mode, align_corners = align })
    end
  end
  def("aten::upsample_nearest2d(Tensor input, SymInt[]? output_size, float[]? scale_factors=None, float? scales_w=None) -> Tensor",
      upsample("nearest"))
  def("aten::upsample_bilinear2d(Tensor input, SymInt[]? output_size, bool align_corners, float[]? scale_factors=None, "
      .. "float? scales_w=None) -> Tensor", upsample("bilinear"))
  local function pad_list(p) local out = {} for i = 1, #p do out[i] = p[i] end return out end
  def("aten::constant_pad_nd(Tensor self, SymInt[] pad, Scalar value=0) -> Tensor",
      function(x, p, v) return F.pad(x, pad_list(p), "constant", S.num(v)) end)
  def("aten::pad(Tensor self, SymInt[] pad, str mode='constant', float? value=None) -> Tensor",
      function(x, p, mode, v) return F.pad(x, pad_list(p), mode, opt(v)) end)
  def("aten::reflection_pad2d(Tensor self, SymInt[4] padding) -> Tensor", function(x, p) return F.pad(x, pad_list(p), "reflect") end)
  def("aten::replication_pad2d(Tensor self, SymInt[4] padding) -> Tensor", function(x, p) return F.pad(x, pad_list(p), "replicate") end)
  def("aten::pixel_shuffle(Tensor self, int upscale_factor) -> Tensor", F.pixel_shuffle)
  def("aten::channel_shuffle(Tensor self, int groups) -> Tensor", F.channel_shuffle)

  -- ---- reductions ----
  local function reduction(name, fname)
    return function(x, dim, keepdim)
      if dim == None or (V.is_list(dim) and #dim == 0) then dim = nil
      elseif V.is_list(dim) then dim = { unpack(dim) } end
      if x.dtype ~= "float32" then return F[fname](x:to("float32"), dim, keepdim):to(x.dtype) end
      return F[fname](x, dim, keepdim)
    end
  end
  def("aten::mean(Tensor self, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", reduction("aten::mean", "mean"))
  def("aten::sum(Tensor self, int[1]? dim=None, bool keepdim=False, *, ScalarType? dtype=None) -> Tensor", function(x, dim, keepdim)
    if V.is_list(x) then
      local s = 0
      for i = 1, #x do s = s + S.num(x[i]) end
      return s
    end
    return reduction("aten::sum", "sum")(x, dim, keepdim)
  end)
  def("aten::amax(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", reduction("aten::amax", "amax"))
  -- the 2-norm (F.normalize): sqrt(sum(x^2)) over dims, the root taken on
  -- the reduced (small) tensor
  def("aten::norm(Tensor self, Scalar? p=2, int[1] dim=[], bool keepdim=False, *, ScalarType? dtype=None) -> Tensor",
      function(x, p, dim, keepdim)
        if p ~= 2 and p ~= None then error("aten::norm: only the 2-norm is supported, not p=" .. tostring(p), 0) end
        local sq = reduction("aten::norm", "sum")(ops.mul(x, x), dim, keepdim)
        return ops.get("aten::sqrt").fn(sq)
      end)
  def("aten::amin(Tensor self, int[1] dim=[], bool keepdim=False) -> Tensor", reduction("aten::amin", "amin"))
end
