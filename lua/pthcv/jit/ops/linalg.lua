-- lua/pthcv/jit/ops/linalg.lua: aten::einsum and fused attention over
-- pthcv's matmul. einsum: each
-- operand's labels summed away where only it has them, permuted and
-- reshaped to [batch, rows, contracted] x [batch, contracted, columns], one
-- batched matrix product, then the output's order. Ellipses are expanded;
-- a label repeated within one operand (a diagonal) is refused.
local Tensor = require "pthcv.tensor"
local F = require "pthcv.nn.functional"
local V = require "pthcv.jit.values"

local m = Tensor.methods

local function fail(msg) error("aten::einsum: " .. msg, 0) end

-- Labels of one term, with "..." expanded to ndim - (explicit labels) fresh ones.
local function labels(term, ndim, ellipsis)
  local out = {}
  local before, after = term:match("^(.-)%.%.%.(.*)$")
  local explicit = (before or term) .. (after or "")
  if not explicit:match("^%a*$") then fail("cannot read the term '" .. term .. "'") end
  local n_ell = before and ndim - #explicit or 0
  if n_ell < 0 or (not before and #term ~= ndim) then
    fail("the term '" .. term .. "' does not match an operand of " .. ndim .. " dimensions")
  end
  for c in (before or term):gmatch("%a") do out[#out + 1] = c end
  for i = 1, n_ell do out[#out + 1] = ellipsis[i] end
  for c in (after or ""):gmatch("%a") do out[#out + 1] = c end
  local seen = {}
  for _, l in ipairs(out) do
    if seen[l] then fail("a label repeated within one operand (a diagonal) is not supported") end
    seen[l] = true
  end
  return out
end

-- x with the labels not in keep summed away: tensor and its remaining labels.
local function sum_away(x, ls, keep)
  local dims, rest = {}, {}
  for i, l in ipairs(ls) do if keep[l] then rest[#rest + 1] = l else dims[#dims + 1] = i - 1 end end
  if #dims == 0 then return x, ls end
  return F.sum(x, dims, false), rest
end

-- x permuted to the label order `order` (a subset of its labels, all of them).
local function permute(x, ls, order)
  local pos = {}
  for i, l in ipairs(ls) do pos[l] = i - 1 end
  local dims = {}
  for i, l in ipairs(order) do dims[i] = pos[l] end
  return F.permute(x, dims)
end

local function einsum(eq, ts)
  eq = eq:gsub("%s", "")
  if not (V.is_list(ts) or V.is_tuple(ts)) or #ts < 1 or #ts > 2 then fail("one or two operands are supported") end
  local lhs, rhs = eq:match("^(.-)%->(.*)$")
  lhs = lhs or eq
  local terms = {}
  for t in (lhs .. ","):gmatch("(.-),") do terms[#terms + 1] = t end
  if #terms ~= #ts then fail(#terms .. " terms for " .. #ts .. " operands") end
  local ell = {}
  for i = 1, 16 do ell[i] = "#" .. i end   -- the ellipsis' dimensions: never a letter
  local ls = {}
  for i, t in ipairs(terms) do ls[i] = labels(t, ts[i].ndim, ell) end
  if not rhs then   -- implicit output: labels seen once, sorted, ellipsis first
    local count = {}
    for _, l in ipairs(ls) do for _, c in ipairs(l) do count[c] = (count[c] or 0) + 1 end end
    local out = {}
    for c, n in pairs(count) do if n == 1 and c:sub(1, 1) ~= "#" then out[#out + 1] = c end end
    table.sort(out)
    local e = {}
    for c in pairs(count) do if c:sub(1, 1) == "#" then e[#e + 1] = c end end
    table.sort(e)
    for i = #e, 1, -1 do table.insert(out, 1, e[i]) end
    rhs = table.concat(out)
  end
  local nmax = 0
  for i = 1, #ts do nmax = math.max(nmax, #ls[i] - (#terms[i]:gsub("%.%.%.", ""))) end
  local out = labels(rhs, #(rhs:gsub("%.%.%.", "")) + (rhs:find("%.%.%.") and nmax or 0), ell)
  local in_out = {}
  for _, l in ipairs(out) do in_out[l] = true end
  local a, la = ts[1], ls[1]
  if #ts == 1 then
    a, la = sum_away(a, la, in_out)
    return m.contiguous(permute(a, la, out))
  end
  local b, lb = ts[2], ls[2]
  local in_a, in_b = {}, {}
  for _, l in ipairs(la) do in_a[l] = true end
  for _, l in ipairs(lb) do in_b[l] = true end
  local keep_a, keep_b = {}, {}
  for l in pairs(in_a) do keep_a[l] = in_out[l] or in_b[l] end
  for l in pairs(in_b) do keep_b[l] = in_out[l] or in_a[l] end
  a, la = sum_away(a, la, keep_a)
  b, lb = sum_away(b, lb, keep_b)
  local size = {}
  for i, l in ipairs(la) do size[l] = a.shape[i] end
  for i, l in ipairs(lb) do
    if size[l] and size[l] ~= b.shape[i] then fail("label '" .. l .. "' has sizes " .. size[l] .. " and " .. b.shape[i]) end
    size[l] = b.shape[i]
  end
  local batch, rows, cols, con = {}, {}, {}, {}
  for _, l in ipairs(out) do
    if in_a[l] and in_b[l] then batch[#batch + 1] = l
    elseif in_a[l] then rows[#rows + 1] = l
    elseif in_b[l] then cols[#cols + 1] = l
    else fail("output label '" .. l .. "' is in no operand") end
  end
  for _, l in ipairs(la) do if in_b[l] and not in_out[l] then con[#con + 1] = l end end
  local function prod(list) local p = 1 for _, l in ipairs(list) do p = p * size[l] end return p end
  local function concat(...) local r = {} for _, t in ipairs { ... } do for _, x in ipairs(t) do r[#r + 1] = x end end return r end
  local A = m.reshape(permute(a, la, concat(batch, rows, con)), { prod(batch), prod(rows), prod(con) })
  local B = m.reshape(permute(b, lb, concat(batch, con, cols)), { prod(batch), prod(con), prod(cols) })
  local C = F.matmul(A, B)
  local shape = {}
  for _, l in ipairs(concat(batch, rows, cols)) do shape[#shape + 1] = size[l] end
  return m.contiguous(permute(m.reshape(C, shape), concat(batch, rows, cols), out))
end

-- torch's fused self-attention of nn.MultiheadAttention's fast path
-- (batch first, eval): the q/k/v projections, softmax(q k^T / sqrt(d)) v
-- per head, the output projection; pthcv's linear, matmul and softmax.
local function attention(q, k, v, embed_dim, heads, w_qkv, b_qkv, w_out, b_out, mask, need_weights, average)
  if mask ~= V.None then error("aten::_native_multi_head_attention: attention masks are not supported", 0) end
  if q.ndim ~= 3 then error("aten::_native_multi_head_attention: expects [batch, length, embed] inputs", 0) end
  local B, L, Ek = q.shape[1], q.shape[2], embed_dim
  local D = Ek / heads
  local function proj(x, i)
    local w = m.narrow(w_qkv, 1, i * Ek + 1, Ek)
    local b = b_qkv ~= V.None and m.narrow(b_qkv, 1, i * Ek + 1, Ek) or nil
    return F.linear(x, m.contiguous(w), b and m.contiguous(b))
  end
  local function split(x, len)   -- [B, len, E] -> [B, H, len, D]
    return F.permute(m.reshape(x, { B, len, heads, D }), { 0, 2, 1, 3 })
  end
  local Lk = k.shape[2]
  local qh, kh, vh = split(proj(q, 0), L), split(proj(k, 1), Lk), split(proj(v, 2), Lk)
  local scores = F.mul(F.matmul(qh, F.transpose(kh, 2, 3)), 1 / math.sqrt(D))
  local attn = F.softmax(scores, -1)
  local out = m.reshape(F.permute(F.matmul(attn, vh), { 0, 2, 1, 3 }), { B, L, Ek })
  out = F.linear(out, w_out, b_out ~= V.None and b_out or nil)
  local weights = Tensor.zeros({ 0 })
  if need_weights then weights = average and F.mean(attn, 1) or attn end
  return V.tuple { out, weights }
end

return function(ops)
  ops.def("aten::einsum(str equation, Tensor[] tensors, *, int[]? path=None) -> Tensor", einsum)
  ops.def("aten::_native_multi_head_attention(Tensor query, Tensor key, Tensor value, int embed_dim, int num_head, "
          .. "Tensor qkv_weight, Tensor qkv_bias, Tensor proj_weight, Tensor proj_bias, Tensor? mask=None, "
          .. "bool need_weights=True, bool average_attn_weights=True, int? mask_type=None) -> (Tensor, Tensor)", attention)
end
