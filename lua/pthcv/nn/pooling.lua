-- lua/pthcv/nn/pooling.lua: MaxPool2d, AvgPool2d, AdaptiveAvgPool2d,
-- AdaptiveMaxPool2d, as torch.nn's. Sizes are kept as given (an int or a
-- pair), as torch keeps them, so print() shows the same; args_record()
-- resolves them into the op's record (pthcv.nn.args), once per prepare.
local base = require "pthcv.nn.module"
local F = require "pthcv.nn.functional"
local A = require "pthcv.nn.args"
local py = require "pthcv.nn.repr"
local values = require "pthcv.reader.values"

local class = base.class
local args = A.named
local M = {}

local function layer(name)
  return class(name, nil, { torch_nn = true, torch_class = "torch.nn.modules.pooling." .. name })
end

-- nn.MaxPool2d(kernel_size [, stride = kernel_size, padding = 0, dilation = 1,
-- return_indices = false, ceil_mode = false])
local MaxPool2d = layer("MaxPool2d")
M.MaxPool2d = MaxPool2d
function MaxPool2d:__init(...)
  local a = args("MaxPool2d", { "kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode" }, ...)
  if a.kernel_size == nil then error("pthcv: MaxPool2d(kernel_size, ...) expected", 3) end
  if a.return_indices then error("pthcv: MaxPool2d: return_indices is not supported", 3) end
  self.kernel_size = a.kernel_size
  self.stride = a.stride or a.kernel_size
  self.padding = a.padding or 0
  self.dilation = a.dilation or 1
  self.return_indices = false
  self.ceil_mode = a.ceil_mode or false
end
function MaxPool2d:args_record()
  return A.pool2d("max", "MaxPool2d", { kernel_size = self.kernel_size, stride = self.stride, padding = self.padding,
                                        dilation = self.dilation, ceil_mode = self.ceil_mode })
end
function MaxPool2d:forward(x)
  A.tensor(x, "max_pool2d")
  return F.run.max_pool2d(self:op_args(), x)
end
function MaxPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s, dilation=%s, ceil_mode=%s", py.value(self.kernel_size),
                       py.value(self.stride), py.value(self.padding), py.value(self.dilation), py.value(self.ceil_mode))
end

-- nn.AvgPool2d(kernel_size [, stride = kernel_size, padding = 0, ceil_mode =
-- false, count_include_pad = true, divisor_override = nil])
local AvgPool2d = layer("AvgPool2d")
M.AvgPool2d = AvgPool2d
function AvgPool2d:__init(...)
  local a = args("AvgPool2d", { "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                "divisor_override" }, ...)
  if a.kernel_size == nil then error("pthcv: AvgPool2d(kernel_size, ...) expected", 3) end
  self.kernel_size = a.kernel_size
  self.stride = a.stride or a.kernel_size
  self.padding = a.padding or 0
  self.ceil_mode = a.ceil_mode or false
  self.count_include_pad = a.count_include_pad == nil or a.count_include_pad
  self.divisor_override = a.divisor_override
end
function AvgPool2d:args_record()
  return A.pool2d("avg", "AvgPool2d", { kernel_size = self.kernel_size, stride = self.stride, padding = self.padding,
                                        ceil_mode = self.ceil_mode, count_include_pad = self.count_include_pad,
                                        divisor_override = self.divisor_override })
end
function AvgPool2d:forward(x)
  A.tensor(x, "avg_pool2d")
  return F.run.avg_pool2d(self:op_args(), x)
end
function AvgPool2d:extra_repr()
  return string.format("kernel_size=%s, stride=%s, padding=%s", py.value(self.kernel_size), py.value(self.stride),
                       py.value(self.padding))
end

local function size_repr(v)
  if type(v) == "table" then
    local parts = {}
    for i = 1, #v do parts[i] = (v[i] == values.None or v[i] == false) and "None" or py.value(v[i]) end
    if #parts == 1 then return "(" .. parts[1] .. ",)" end
    return "(" .. table.concat(parts, ", ") .. ")"
  end
  return py.value(v)
end

-- nn.AdaptiveAvgPool2d(output_size) / nn.AdaptiveMaxPool2d(output_size):
-- an int or a pair (nil/None entries: the input's size).
for _, name in ipairs { "AdaptiveAvgPool2d", "AdaptiveMaxPool2d" } do
  local cls = layer(name)
  M[name] = cls
  function cls:__init(...)
    local a = args(name, { "output_size", "return_indices" }, ...)
    if a.output_size == nil then error("pthcv: " .. name .. "(output_size) expected", 3) end
    if a.return_indices then error("pthcv: " .. name .. ": return_indices is not supported", 3) end
    self.output_size = a.output_size
  end
  -- the record depends on the input when a size is None
  local kind = name == "AdaptiveAvgPool2d" and "avg" or "max"
  local fname = "adaptive_" .. kind .. "_pool2d"
  local run = F.run[fname]
  function cls:forward(x)
    A.tensor(x, fname)
    return run(A.adaptive_pool2d(x, kind, fname, self.output_size), x)
  end
  function cls:extra_repr() return "output_size=" .. size_repr(self.output_size) end
end

return M
