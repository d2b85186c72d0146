-- lua/pthcv/export/onnx/half.lua: --half, float16 initializers behind a
-- float32 interface.
--
--   half.run(g) -> n_half, n_float   -- g's initializers and nodes rewritten
--
-- Each float32 initializer of at least MIN_ELEMENTS values that float16
-- holds exactly (the weights of a module:half() model; not BatchNorm
-- folded into a convolution from them, which keeps float32's precision) is
-- stored as float16 and converted back by a Cast node at the start of the
-- graph: the graph computes in float32 what the model computed, and the
-- file's weights take half the bytes. Cast is in every opset from 10 to 17.
-- OpenCV 4.6 reads no float16 initializer, even behind Cast
-- (opencv46.lua warns): the files are for other runtimes.
local ffi = require "ffi"
local proto = require "pthcv.export.onnx.proto"

local M = { MIN_ELEMENTS = 16 }

-- Whether every value of float32 tensor t is a float16 value.
local function fits_half(t)
  local h = t:to("float16"):float()
  local a, b = t:contiguous(), h:contiguous()
  return ffi.string(a:data(), a.nbytes) == ffi.string(b:data(), b.nbytes), h
end

function M.run(g)
  local casts, renamed = {}, {}
  local n_half, n_float = 0, 0
  for _, e in ipairs(g:used_inits()) do
    local t = e.tensor
    if t.dtype == "float32" and t.numel >= M.MIN_ELEMENTS then
      local exact = e.source_dtype == "float16" or fits_half(t)
      if exact then
        local h = t:to("float16")
        local out = e.name .. "_float"
        while g.used_names[out] do out = out .. "_" end
        g.used_names[out] = true
        e.tensor = h
        g.init_of[e.name] = h
        renamed[e.name] = out
        casts[#casts + 1] = { op = "Cast", inputs = { e.name }, outputs = { out }, name = g:fresh("Cast"),
                              attrs = { { "to", "int", proto.DTYPE.float32 } }, where = "--half" }
        n_half = n_half + 1
      else
        n_float = n_float + 1
      end
    end
  end
  for _, node in ipairs(g.nodes) do
    for i, nm in ipairs(node.inputs) do if renamed[nm] then node.inputs[i] = renamed[nm] end end
  end
  for i = #casts, 1, -1 do table.insert(g.nodes, 1, casts[i]) end
  return n_half, n_float
end

return M
