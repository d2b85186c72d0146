-- lua/pthcv/nn/functional_shape.lua: pthcv.F's joining and shape functions
-- (cat, stack, flatten, reshape, view, contiguous, permute, transpose,
-- narrow, chunk, split, squeeze, unsqueeze, channel_shuffle,
-- pixel_shuffle), installed into F by functional.lua.
--
-- Dims are torch's (0-based). The view functions resolve the same layout
-- records as the Tensor methods (Tensor.layout, lua/pthcv/tensor/views.lua:
-- dims from 0 inside the record), dispatched as "F.<function>".
local core = require "pthcv.core"
local ffi = require "ffi"
local Tensor = require "pthcv.tensor"
local D = require "pthcv.tensor.dispatch"
local A = require "pthcv.nn.args"

local C = core.C
local call = D.call
local check, result, dim0 = A.tensor, A.result, A.dim0
local L, methods, is_tensor = Tensor.layout, Tensor.methods, Tensor.is
local apply, apply_split = L.apply, L.apply_split

return function(F)
  -- a torch dim as the 1-based dim of Tensor methods
  local function dim1(x, d, fname, extra) return dim0(x, d, fname, extra) + 1 end

  -- ---- joining -------------------------------------------------------------------------
  -- rec: {dim}; xs: the list of tensors
  local function cat_impl(rec, xs)
    local arr = ffi.new("pthcv_tensor *[?]", #xs)
    for i, x in ipairs(xs) do arr[i - 1] = x.ct end
    local out = result(C.pthcv_cat(#xs, arr, rec.dim), "cat")
    -- keep the inputs alive until the call returned (arr holds raw pointers)
    local _ = xs
    return out
  end
  local function check_list(xs, fname)
    if type(xs) ~= "table" or #xs == 0 then error("pthcv: " .. fname .. ": expects a non-empty list of tensors", 3) end
    for i, x in ipairs(xs) do
      if not is_tensor(x) then error("pthcv: " .. fname .. ": element " .. i .. " is not a tensor", 3) end
    end
  end
  -- One record per value, made once: records are never written after they
  -- are made, and a hook comparing the record of a call with the one it
  -- recorded (pthcv.nn.plan) then finds the same table.
  local function rec_of(cache, key, field)
    local rec = cache[key]
    if rec == nil then rec = { [field] = key }; cache[key] = rec end
    return rec
  end
  local cat_recs, shuffle_recs = {}, {}

  -- F.cat({a, b, ...} [, dim = 0])
  function F.cat(xs, dim)
    check_list(xs, "cat")
    return call("F.cat", rec_of(cat_recs, dim0(xs[1], A.one(dim, "dim") or 0, "cat"), "dim"), cat_impl, xs)
  end
  F.concat = F.cat

  -- rec: {dim}: cat of unsqueezed views
  local function stack_impl(rec, xs)
    local us = {}
    for i, x in ipairs(xs) do us[i] = apply(L.unsqueeze(x, rec.dim + 1, 3), x) end
    return cat_impl(rec, us)
  end
  -- F.stack({a, b, ...} [, dim = 0])
  function F.stack(xs, dim)
    check_list(xs, "stack")
    return call("F.stack", { dim = dim0(xs[1], A.one(dim, "dim") or 0, "stack", 1) }, stack_impl, xs)
  end

  -- ---- shapes ------------------------------------------------------------------------------
  -- F.flatten(x [, start_dim = 0, end_dim = -1])
  function F.flatten(x, start_dim, end_dim)
    check(x, "flatten")
    if A.is_kw(start_dim) then start_dim, end_dim = start_dim.start_dim, start_dim.end_dim end
    local rec
    if x.ndim == 0 then
      rec = L.reshape(x, { 1 }, 3)
    else
      rec = L.flatten(x, dim1(x, start_dim or 0, "flatten"), dim1(x, end_dim or -1, "flatten"), 3)
    end
    return call("F.flatten", rec, apply, x)
  end
  function F.reshape(x, ...)
    check(x, "reshape")
    return call("F.reshape", L.reshape(x, Tensor.shape_arg(...), 3), apply, x)
  end
  function F.view(x, ...)
    check(x, "view")
    return call("F.view", L.view(x, Tensor.shape_arg(...), 3), apply, x)
  end
  local function contiguous_impl(_, x) return result(C.pthcv_tensor_contiguous(x.ct), "contiguous") end
  function F.contiguous(x) return call("F.contiguous", nil, contiguous_impl, check(x, "contiguous")) end
  -- F.permute(x, dims): dims 0-based, as torch's
  function F.permute(x, ...)
    check(x, "permute")
    local d1 = {}
    for i, d in ipairs(Tensor.shape_arg(...)) do d1[i] = dim1(x, d, "permute") end
    return call("F.permute", L.permute(x, d1, 3), apply, x)
  end
  function F.transpose(x, a, b)
    check(x, "transpose")
    return call("F.transpose", L.transpose(x, dim1(x, a, "transpose"), dim1(x, b, "transpose"), 3), apply, x)
  end
  -- F.narrow(x, dim, start, length): start 0-based, as torch's
  function F.narrow(x, dim, start, length)
    check(x, "narrow")
    local d = dim1(x, dim, "narrow")
    if start < 0 then start = start + x:size(d) end
    return call("F.narrow", L.narrow(x, d, start + 1, length, 3), apply, x)
  end
  -- (the record depends on the dim, its size and chunks only: made once for
  -- each, as F.cat's)
  local chunk_recs = {}
  function F.chunk(x, chunks, dim)
    check(x, "chunk")
    local d = dim1(x, dim or 0, "chunk")
    if type(chunks) ~= "number" or chunks < 1 or chunks % 1 ~= 0 then
      return call("F.chunk", L.chunk(x, chunks, d, 3), apply_split, x)
    end
    local size = tonumber(x.ct.shape[d - 1])
    local by_size = chunk_recs[d] or {}
    chunk_recs[d] = by_size
    local by_chunks = by_size[size] or {}
    by_size[size] = by_chunks
    local rec = by_chunks[chunks]
    if rec == nil then
      rec = L.chunk(x, chunks, d, 3)
      by_chunks[chunks] = rec
    end
    return call("F.chunk", rec, apply_split, x)
  end
  function F.split(x, split_size_or_sections, dim)
    check(x, "split")
    return call("F.split", L.split(x, split_size_or_sections, dim1(x, dim or 0, "split"), 3), apply_split, x)
  end
  function F.squeeze(x, dim)
    check(x, "squeeze")
    return call("F.squeeze", L.squeeze(x, dim ~= nil and dim1(x, dim, "squeeze") or nil, 3), apply, x)
  end
  function F.unsqueeze(x, dim)
    check(x, "unsqueeze")
    return call("F.unsqueeze", L.unsqueeze(x, dim1(x, dim, "unsqueeze", 1), 3), apply, x)
  end

  -- F.channel_shuffle(x, groups): (N, g*k, ...) -> channels interleaved by
  -- group, as torch's ChannelShuffle: a view, a transpose, one contiguous
  -- copy. rec: {groups}
  local function channel_shuffle_impl(rec, x)
    local shape = x.shape
    local split = { shape[1], rec.groups, shape[2] / rec.groups }
    for i = 3, #shape do split[#split + 1] = shape[i] end
    local y = methods.contiguous(methods.transpose(methods.reshape(x, split), 2, 3))
    return methods.view(y, shape)
  end
  function F.channel_shuffle(x, groups)
    check(x, "channel_shuffle")
    local c = x.ct.ndim >= 2 and tonumber(x.ct.shape[1]) or nil
    if not c or c % groups ~= 0 then
      error("pthcv: channel_shuffle: " .. tostring(c) .. " channels do not split into " .. groups .. " groups", 2)
    end
    return call("F.channel_shuffle", rec_of(shuffle_recs, groups, "groups"), channel_shuffle_impl, x)
  end

  -- F.pixel_shuffle(x, r): (N, C*r*r, H, W) -> (N, C, H*r, W*r). rec: {upscale_factor}
  local function pixel_shuffle_impl(rec, x)
    local r = rec.upscale_factor
    local n, c, h, w = unpack(x.shape)
    local oc = c / (r * r)
    local y = methods.permute(methods.reshape(x, { n, oc, r, r, h, w }), { 1, 2, 5, 3, 6, 4 })
    return methods.reshape(y, { n, oc, h * r, w * r })
  end
  function F.pixel_shuffle(x, r)
    check(x, "pixel_shuffle")
    return call("F.pixel_shuffle", { upscale_factor = r }, pixel_shuffle_impl, x)
  end
end
