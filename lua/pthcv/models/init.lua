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
M.families = { "alexnet", "vgg", "resnet", "mobilenetv2", "mobilenetv3", "squeezenet", "blocks" }

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
