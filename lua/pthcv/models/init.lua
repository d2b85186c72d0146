-- lua/pthcv/models/init.lua: pthcv.models, torchvision's classification
-- models (torchvision 0.14), whose state_dicts load unchanged.
--
--   local m = pthcv.models.resnet50{ num_classes = 1000 }
--   m:load_state_dict(pthcv.state_dict("resnet50.pth")); m:eval()
--   local logits = m(x)                        -- x: float32 [N, 3, H, W]
--
-- Every builder takes an optional table: num_classes (default 1000) and,
-- where torchvision has them, dropout and width options. The structure,
-- module names and printed tree are torchvision's; eval() folds each
-- BatchNorm into its convolution and fuses activations and residual adds.
local M = {}

local families = {
  alexnet = "alexnet",
  vgg11 = "vgg", vgg13 = "vgg", vgg16 = "vgg", vgg19 = "vgg",
  vgg11_bn = "vgg", vgg13_bn = "vgg", vgg16_bn = "vgg", vgg19_bn = "vgg",
  resnet18 = "resnet", resnet34 = "resnet", resnet50 = "resnet", resnet101 = "resnet", resnet152 = "resnet",
  resnext50_32x4d = "resnet", resnext101_32x8d = "resnet", wide_resnet50_2 = "resnet", wide_resnet101_2 = "resnet",
  mobilenet_v2 = "mobilenetv2",
  mobilenet_v3_small = "mobilenetv3", mobilenet_v3_large = "mobilenetv3",
  squeezenet1_0 = "squeezenet", squeezenet1_1 = "squeezenet",
  resnext101_64x4d = "resnet",
  densenet121 = "densenet", densenet161 = "densenet", densenet169 = "densenet", densenet201 = "densenet",
  efficientnet_b0 = "efficientnet", efficientnet_b1 = "efficientnet", efficientnet_b2 = "efficientnet",
  efficientnet_b3 = "efficientnet", efficientnet_b4 = "efficientnet", efficientnet_b5 = "efficientnet",
  efficientnet_b6 = "efficientnet", efficientnet_b7 = "efficientnet",
  efficientnet_v2_s = "efficientnet", efficientnet_v2_m = "efficientnet", efficientnet_v2_l = "efficientnet",
  regnet_x_400mf = "regnet", regnet_x_800mf = "regnet", regnet_x_1_6gf = "regnet", regnet_x_3_2gf = "regnet",
  regnet_x_8gf = "regnet", regnet_x_16gf = "regnet", regnet_x_32gf = "regnet",
  regnet_y_400mf = "regnet", regnet_y_800mf = "regnet", regnet_y_1_6gf = "regnet", regnet_y_3_2gf = "regnet",
  regnet_y_8gf = "regnet", regnet_y_16gf = "regnet", regnet_y_32gf = "regnet", regnet_y_128gf = "regnet",
  convnext_tiny = "convnext", convnext_small = "convnext", convnext_base = "convnext", convnext_large = "convnext",
  vit_b_16 = "vit", vit_b_32 = "vit", vit_l_16 = "vit", vit_l_32 = "vit", vit_h_14 = "vit",
  swin_t = "swin", swin_s = "swin", swin_b = "swin", swin_v2_t = "swin", swin_v2_s = "swin", swin_v2_b = "swin",
  maxvit_t = "maxvit",
  inception_v3 = "inception", googlenet = "googlenet",
  mnasnet0_5 = "mnasnet", mnasnet0_75 = "mnasnet", mnasnet1_0 = "mnasnet", mnasnet1_3 = "mnasnet",
  shufflenet_v2_x0_5 = "shufflenetv2", shufflenet_v2_x1_0 = "shufflenetv2", shufflenet_v2_x1_5 = "shufflenetv2",
  shufflenet_v2_x2_0 = "shufflenetv2",
}

-- The names of every model, sorted.
function M.list()
  local names = {}
  for k in pairs(families) do names[#names + 1] = k end
  table.sort(names)
  return names
end

-- pthcv.models.get(name [, opts]): a model by name (errors list the names).
function M.get(name, opts)
  local fam = families[name]
  if not fam then
    error("pthcv: unknown model '" .. tostring(name) .. "' (known: " .. table.concat(M.list(), ", ") .. ")", 2)
  end
  return require("pthcv.models." .. fam)[name](opts)
end

-- The family modules: their classes (ResNet, BasicBlock, ...) for from_module.
M.families = { "alexnet", "vgg", "resnet", "mobilenetv2", "mobilenetv3", "squeezenet", "blocks",
               "layers", "densenet", "efficientnet", "regnet", "convnext", "vit", "swin", "maxvit", "inception",
               "googlenet", "mnasnet", "shufflenetv2" }

-- pthcv.models.recognize(state_dict): the zoo model whose keys and shapes
-- a state_dict has, and its options (lua/pthcv/models/recognize.lua).
function M.recognize(sd) return require("pthcv.models.recognize").recognize(sd) end

-- pthcv.models.detection and pthcv.models.segmentation (torchvision's
-- detectors and segmenters), loaded on first use
local tasks = { detection = "pthcv.models.detection", segmentation = "pthcv.models.segmentation" }

return setmetatable(M, { __index = function(t, k)
  if tasks[k] then
    local v = require(tasks[k])
    rawset(t, k, v)
    return v
  end
  local fam = families[k]
  if fam then
    local f = require("pthcv.models." .. fam)[k]
    rawset(t, k, f)
    return f
  end
end })
