-- lua/pthcv/export/caffe/schema.lua: the Caffe messages pthcv writes, as
-- schemas for lua/pthcv/export/protobuf.lua (field names and numbers from
-- BVLC's caffe.proto as OpenCV ships it, modules/dnn/src/caffe/
-- opencv-caffe.proto: its readNetFromCaffe parses both files with it).
-- Only the fields pthcv writes are listed.
local M = {}

local POOL = { MAX = 0, AVE = 1 }
local ELTWISE = { PROD = 0, SUM = 1, MAX = 2 }

M.BlobShape = { { "dim", 1, "int", repeated = true, packed = true } }
-- data: the float32 values, packed, written from the tensor's memory
M.BlobProto = { { "data", 5, "tensor" }, { "shape", 7, "BlobShape" } }

M.NetParameter = {
  { "name", 1, "string" },
  { "layer", 100, "LayerParameter", repeated = true },
}

M.LayerParameter = {
  { "name", 1, "string" }, { "type", 2, "string" },
  { "bottom", 3, "string", repeated = true }, { "top", 4, "string", repeated = true },
  { "blobs", 7, "BlobProto", repeated = true },
  { "concat_param", 104, "ConcatParameter" },
  { "convolution_param", 106, "ConvolutionParameter" },
  { "eltwise_param", 110, "EltwiseParameter" },
  { "inner_product_param", 117, "InnerProductParameter" },
  { "pooling_param", 121, "PoolingParameter" },
  { "power_param", 122, "PowerParameter" },
  { "relu_param", 123, "ReLUParameter" },
  { "softmax_param", 125, "SoftmaxParameter" },
  { "slice_param", 126, "SliceParameter" },
  { "prelu_param", 131, "PReLUParameter" },
  { "reshape_param", 133, "ReshapeParameter" },
  { "flatten_param", 135, "FlattenParameter" },
  { "batch_norm_param", 139, "BatchNormParameter" },
  { "elu_param", 140, "ELUParameter" },
  { "scale_param", 142, "ScaleParameter" },
  { "input_param", 143, "InputParameter" },
  { "permute_param", 148, "PermuteParameter" },
}

M.ConcatParameter = { { "axis", 2, "int" } }
M.ConvolutionParameter = {
  { "num_output", 1, "int" }, { "bias_term", 2, "bool" }, { "group", 5, "int" },
  { "pad_h", 9, "int" }, { "pad_w", 10, "int" }, { "kernel_h", 11, "int" }, { "kernel_w", 12, "int" },
  { "stride_h", 13, "int" }, { "stride_w", 14, "int" }, { "dilation", 18, "int", repeated = true },
}
M.EltwiseParameter = { { "operation", 1, ELTWISE }, { "coeff", 2, "float", repeated = true } }
M.InnerProductParameter = { { "num_output", 1, "int" }, { "bias_term", 2, "bool" }, { "axis", 5, "int" } }
-- ceil_mode: OpenCV's (default true, Caffe's rounding); pthcv writes it for
-- every pool, so that torch's floor is never silently rounded up
M.PoolingParameter = {
  { "pool", 1, POOL }, { "kernel_h", 5, "int" }, { "kernel_w", 6, "int" }, { "stride_h", 7, "int" },
  { "stride_w", 8, "int" }, { "pad_h", 9, "int" }, { "pad_w", 10, "int" }, { "global_pooling", 12, "bool" },
  { "ceil_mode", 13, "bool" },
}
M.PowerParameter = { { "power", 1, "float" }, { "scale", 2, "float" }, { "shift", 3, "float" } }
M.ReLUParameter = { { "negative_slope", 1, "float" } }
M.SoftmaxParameter = { { "axis", 2, "int" } }
M.SliceParameter = { { "slice_point", 2, "int", repeated = true }, { "axis", 3, "int" } }
M.PReLUParameter = { { "channel_shared", 2, "bool" } }
M.ReshapeParameter = { { "shape", 1, "BlobShape" } }
M.FlattenParameter = { { "axis", 1, "int" }, { "end_axis", 2, "int" } }
M.BatchNormParameter = { { "use_global_stats", 1, "bool" }, { "eps", 3, "float" } }
M.ELUParameter = { { "alpha", 1, "float" } }
M.ScaleParameter = { { "axis", 1, "int" }, { "num_axes", 2, "int" }, { "bias_term", 4, "bool" } }
M.InputParameter = { { "shape", 1, "BlobShape", repeated = true } }
M.PermuteParameter = { { "order", 1, "int", repeated = true } }

return M
