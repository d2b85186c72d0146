-- lua/pthcv/export/onnx/fold.lua: BatchNorm folded into the convolution
-- before it, in a traced graph (graph.lua).
--
-- pthcv.nn's models call conv, batch_norm and the activation one by one, as
-- torchvision's do; the run-time plan (pthcv.nn.plan) fuses them, but a
-- trace records the ops as called. The exporters write what pthcv runs, as
-- torch.onnx.export does in eval mode: a Conv whose only reader is a
-- BatchNormalization of constants becomes one Conv computing both,
--   s = gamma / sqrt(var + eps),  W' = W * s[o],  b' = (b - mean) * s + beta
-- in double precision, written as float32. Graph drawings (draw.lua) and
-- Caffe files (caffe/) then show and hold one layer where pthcv runs one.
-- Not folded: a Conv whose output something else reads too (or that is a
-- graph output), a BatchNorm of traced (non-constant) statistics, and
-- float16 weights (--half: folded weights would not be float16, and
-- rounding them would change what the graph computes).
local Tensor = require "pthcv.tensor"

-- TOL: the check's tolerance (evaluate.lua) for a folded Conv, relative to
-- max(1, its largest value). One float32 accumulation of W * s computes
-- what the forward computed as a convolution rounded, then scaled and
-- shifted: the two differ by the convolution's rounding times s (BatchNorm
-- scales of 1 to 2 are common), more than the 1e-5 of an op written as run.
local M = { TOL = 1e-4 }
local named

-- The folded weight and bias of Conv weight w [O, ...] and bias b (or nil)
-- with BatchNorm's scale, shift, mean and var ([O]) and eps: float32 tensors.
local function folded(w, b, gamma, beta, mean, var, eps)
  local O = w.shape[1]
  local per = w.numel / O
  local w64, g64, be64, m64, v64 = w:double():contiguous(), gamma:double():contiguous(),
                                   beta:double():contiguous(), mean:double():contiguous(), var:double():contiguous()
  local b64 = b and b:double():contiguous()
  local pw, pg, pbe, pm, pv, pb = w64:data(), g64:data(), be64:data(), m64:data(), v64:data(), b64 and b64:data()
  local wf, bf = Tensor.zeros(w.shape), Tensor.zeros({ O })
  local qw, qb = wf:data(), bf:data()
  for o = 0, O - 1 do
    local s = pg[o] / math.sqrt(pv[o] + eps)
    for k = o * per, (o + 1) * per - 1 do qw[k] = pw[k] * s end
    qb[o] = ((pb and pb[o] or 0) - pm[o]) * s + pbe[o]
  end
  return wf, bf
end

-- The initializer `name` now holding t when only one node reads it (the
-- Conv being folded: its name stays), else a new one named after it.
local function replace(g, name, t, readers)
  if readers[name] ~= 1 then return named(g, t, name) end
  for _, e in ipairs(g.inits) do
    if e.name == name then e.tensor, e.source_dtype = t, "float32" end
  end
  g.init_of[name] = t
  for v, nm in pairs(g.names) do if nm == name then g.names[v] = nil end end
  g.names[t] = name
  return name
end

-- A new initializer holding t, named `name` when that is free.
named = function(g, t, name)
  if g.used_names[name] then name = g:fresh(name) end
  g.used_names[name], g.names[t], g.init_of[name] = true, name, t
  g.keep[#g.keep + 1] = t
  g.inits[#g.inits + 1] = { name = name, tensor = t, source_dtype = "float32" }
  return name
end

-- Folds every foldable BatchNormalization of g into its Conv (in place).
-- outputs: the graph's output names (their producers are not folded away).
function M.batch_norms(g, outputs)
  local readers, producer = {}, {}
  for _, n in ipairs(g.nodes) do
    for _, nm in ipairs(n.inputs) do readers[nm] = (readers[nm] or 0) + 1 end
    for _, nm in ipairs(n.outputs) do producer[nm] = n end
  end
  local is_output = {}
  for _, nm in ipairs(outputs or {}) do is_output[nm] = true end
  local source = {}
  for _, e in ipairs(g.inits) do source[e.name] = e.source_dtype end
  local drop = {}
  for _, bn in ipairs(g.nodes) do
    local x = bn.inputs[1]
    local conv = bn.op == "BatchNormalization" and producer[x]
    local w = conv and conv.op == "Conv" and g.init_of[conv.inputs[2]]
    local consts = w and readers[x] == 1 and not is_output[x] and source[conv.inputs[2]] ~= "float16"
    for i = 2, 5 do consts = consts and g.init_of[bn.inputs[i]] ~= nil end
    local b_name = conv and conv.inputs[3]
    if consts and (b_name == nil or g.init_of[b_name]) then
      local eps = 1e-5
      for _, a in ipairs(bn.attrs) do if a[1] == "epsilon" then eps = a[3] end end
      local I = g.init_of
      local wf, bf = folded(w, b_name and I[b_name], I[bn.inputs[2]], I[bn.inputs[3]], I[bn.inputs[4]],
                            I[bn.inputs[5]], eps)
      local w_name = conv.inputs[2]
      conv.inputs = { conv.inputs[1], replace(g, w_name, wf, readers),
                      b_name and replace(g, b_name, bf, readers) or named(g, bf, (w_name:gsub("weight$", "bias"))) }
      conv.outputs = { bn.outputs[1] }
      conv.tolerance = M.TOL
      drop[bn] = true
    end
  end
  if next(drop) == nil then return 0 end
  local kept, n = {}, 0
  for _, node in ipairs(g.nodes) do
    if drop[node] then n = n + 1 else kept[#kept + 1] = node end
  end
  g.nodes = kept
  return n
end

return M
