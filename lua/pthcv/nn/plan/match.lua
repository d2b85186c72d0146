-- lua/pthcv/nn/plan/match.lua: what a recorded op is, for the optimiser
-- (optimize.lua): the ops a fused step can start with or take in, read
-- from the op's name, argument record and operands (record.lua's
-- descriptions), never from how the model's code was written.
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local A = require "pthcv.nn.args"

local is_tensor = Tensor.is
local M = {}

-- The value of operand j of e when it is a constant, else nil.
local function const(e, j)
  local a = e.args[j]
  return a and a.k == "c" and a.v or nil
end
M.const = const
-- The slot of operand j of e when it is a value of the pass, else nil.
local function slot(e, j)
  local a = e.args[j]
  return a and a.k == "s" and a.s or nil
end
M.slot = slot
local function absent(e, j) local a = e.args[j]; return a == nil or a.k == "n" end

-- The slot an op made when it made exactly one new tensor (not its input).
function M.out(e)
  local s = e.nres == 1 and e.out[1]
  if not s or type(s) ~= "number" or e.out_alias then return nil end
  return s
end

-- Operand 1 of e when it is a float pack of this kind (pthcv.nn.packs':
-- live, or freed to be made again) with its record, and operand 2 a value
-- of the pass. Packs of other kinds (int8, ...) run as recorded.
local HANDLE = { conv2d = ffi.typeof("pthcv_conv2d *"), linear = ffi.typeof("pthcv_linear *") }
local function packed(e, kind)
  local pk = const(e, 1)
  if type(pk) ~= "table" or pk.op ~= kind or type(pk.rec) ~= "table" or not slot(e, 2) then return nil end
  local h = pk.handle
  if h == nil and not pk.evicted or h ~= nil and not ffi.istype(HANDLE[kind], h) then return nil end
  return pk
end

-- F.conv2d's and F.linear's operands (x, weight [, bias]) when the weights
-- are constants: {x = 1, weight, bias, rec}.
local function weighed(e)
  local w, b = const(e, 2), const(e, 3)
  if not slot(e, 1) or not is_tensor(w) or not (absent(e, 3) or is_tensor(b)) then return nil end
  return { x = 1, weight = w, bias = b, rec = e.rec }
end

-- A convolution that can start a fused step: {x = operand index of the
-- input, residual = operand index of a residual or nil, pack = the pack
-- (F.conv2d_packed) or nil, weight, bias (F.conv2d), rec = the conv record
-- (its act the activation already fused)}, or nil.
function M.conv(e)
  if e.op == "F.conv2d_packed" then
    local pk = packed(e, "conv2d")
    if not pk or not absent(e, 3) and not slot(e, 3) and not is_tensor(const(e, 3)) then return nil end
    return { x = 2, residual = not absent(e, 3) and 3 or nil, pack = pk, rec = pk.rec }
  end
  return e.op == "F.conv2d" and weighed(e) or nil
end

-- A linear layer that can start a fused step: {x, pack | weight, bias, rec}.
function M.linear(e)
  if e.op == "F.linear_packed" then
    local pk = packed(e, "linear")
    return pk and { x = 2, pack = pk, rec = pk.rec }
  end
  return e.op == "F.linear" and weighed(e) or nil
end

-- An eval-mode batch norm over the value in slot s whose statistics and
-- affine parameters are constants: {running_mean, running_var, weight,
-- bias, eps} (what Conv2d:make_pack folds), or nil.
function M.batch_norm(e, s)
  if e.op ~= "F.batch_norm" or slot(e, 1) ~= s then return nil end
  local mean, var = const(e, 2), const(e, 3)
  if not is_tensor(mean) or not is_tensor(var) then return nil end
  if not (absent(e, 4) or is_tensor(const(e, 4))) or not (absent(e, 5) or is_tensor(const(e, 5))) then return nil end
  return { running_mean = mean, running_var = var, weight = const(e, 4), bias = const(e, 5), eps = e.rec.eps }
end

-- An activation record of an op that runs nothing else (F.relu, F.silu,
-- F.hardtanh, ... and pthcv.jit's in-place forms F.relu_, ..., whose
-- record has inplace = true), as pthcv.nn.args makes them; nil otherwise.
function M.activation(e)
  local r = e.rec
  if type(r) ~= "table" or r.op ~= e.op or not r.kind or not r.key or not A.ACT[r.kind] or e.nargs ~= 1 then
    return nil
  end
  return r
end

-- Elementwise a op b (Tensor.add, F.add, the + operator...): the binary
-- record's code (0 add, 2 mul) when both operands are tensors.
-- "Tensor.add_" (pthcv.jit's add_) writes into its first operand: a new
-- version of it (record.lua), matched as the add it is.
local BINARY = { ["Tensor.add"] = 0, ["F.add"] = 0, ["Tensor.mul"] = 2, ["F.mul"] = 2, ["Tensor.add_"] = 0 }
function M.binary(e, code)
  if BINARY[e.op] ~= code or type(e.rec) ~= "table" or e.rec.code ~= code or e.nargs ~= 2 then return false end
  local a, b = e.args[1], e.args[2]
  return (a.k == "s" or a.k == "c" and is_tensor(a.v)) and (b.k == "s" or b.k == "c" and is_tensor(b.v))
end

-- The other operand of a binary op one of whose operands is slot s.
function M.other(e, s)
  if slot(e, 1) == s then return 2 end
  if slot(e, 2) == s then return 1 end
  return nil
end

-- Global average pooling of slot s keeping the 1x1 dims (squeeze-excitation's
-- squeeze): F.adaptive_avg_pool2d(x, 1) or F.mean(x, {2, 3}, true).
function M.global_pool(e, s, g)
  if slot(e, 1) ~= s then return false end
  local r = e.rec
  if e.op == "F.adaptive_avg_pool2d" then
    return r.kind == "avg" and r.output_size[1] == 1 and r.output_size[2] == 1
  end
  if e.op == "F.mean" then
    local nd = #g.slots[s].shape
    return r.keepdim and #r.dims == 2 and r.dims[1] == nd - 2 and r.dims[2] == nd - 1
  end
  return false
end

-- A 1x1 convolution over whole channels (stride 1, no padding, no groups).
function M.pointwise(c, w)
  local r = c.rec
  local shape = w and w.shape
  return r.kernel_size[1] == 1 and r.kernel_size[2] == 1 and r.stride[1] == 1 and r.stride[2] == 1
    and r.padding[1] == 0 and r.padding[2] == 0 and r.groups == 1 and r.padding_mode == "zeros"
    and (shape == nil or #shape == 4)
end

-- F.cat along the channels of 4-d float32 values: the list's descriptions.
function M.channel_cat(e, g)
  if e.op ~= "F.cat" or type(e.rec) ~= "table" or e.rec.dim ~= 1 then return nil end
  local l = e.args[1]
  if not l or l.k ~= "l" then return nil end
  local out = M.out(e)
  if not out or #g.slots[out].shape ~= 4 or g.slots[out].dtype ~= "float32" then return nil end
  return l.items
end

local VIEW = { ["Tensor.view"] = true, ["F.view"] = true, ["Tensor.reshape"] = true, ["F.reshape"] = true,
               ["Tensor.flatten"] = true, ["F.flatten"] = true }
local TRANSPOSE = { ["Tensor.transpose"] = true, ["F.transpose"] = true, ["Tensor.permute"] = true,
                    ["F.permute"] = true }
local CONTIGUOUS = { ["Tensor.contiguous"] = true, ["F.contiguous"] = true }

local function same(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- The channel shuffle that consumes slot s ([N, C, H, W]) alone, as
-- F.channel_shuffle or as torchvision's Lua form (view to [N, g, C/g, H,
-- W], transpose of dims 1 and 2, contiguous, view back): {groups, ops =
-- {op indices}} or nil. next1(s): the one op consuming s, or nil.
function M.channel_shuffle(g, s, next1)
  local shape = g.slots[s].shape
  local n, c, h, w = shape[1], shape[2], shape[3], shape[4]
  local i1 = next1(s)
  if not i1 then return nil end
  local e1 = g.ops[i1]
  if e1.op == "F.channel_shuffle" and slot(e1, 1) == s then return { groups = e1.rec.groups, ops = { i1 } } end
  local s1 = M.out(e1)
  if not VIEW[e1.op] or not s1 or e1.rec.copy then return nil end
  local v = g.slots[s1].shape
  if #v ~= 5 or v[1] ~= n or v[2] * v[3] ~= c or v[4] ~= h or v[5] ~= w then return nil end
  local groups = v[2]
  local i2 = next1(s1)
  local e2 = i2 and g.ops[i2]
  local s2 = e2 and M.out(e2)
  if not s2 or not TRANSPOSE[e2.op] or not same(e2.rec.perm or {}, { 0, 2, 1, 3, 4 }) then return nil end
  local ops, last = { i1, i2 }, s2
  local i3 = next1(s2)
  local e3 = i3 and g.ops[i3]
  if e3 and CONTIGUOUS[e3.op] and M.out(e3) then
    ops[#ops + 1], last = i3, M.out(e3)
    i3 = next1(last)
    e3 = i3 and g.ops[i3]
  end
  local s3 = e3 and M.out(e3)
  if not s3 or not VIEW[e3.op] or not same(g.slots[s3].shape, shape) or not g.slots[s3].contiguous then return nil end
  ops[#ops + 1] = i3
  return { groups = groups, ops = ops }
end

return M
