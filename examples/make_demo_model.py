#!/usr/bin/python3
# examples/make_demo_model.py: writes the model `make demo` classifies with,
# a torchvision resnet18 state_dict (torch.save) with weights drawn from a
# fixed seed. No pretrained weights are downloaded (the demo works offline),
# so its predictions are arbitrary: the demo shows the pipeline, not accuracy.
# With real weights (torchvision's ResNet18_Weights.IMAGENET1K_V1 saved as a
# state_dict) the same command gives real ImageNet classes.
#   usage: examples/make_demo_model.py OUT.pth
import sys

import torch
import torchvision

out = sys.argv[1] if len(sys.argv) > 1 else "build/demo/resnet18.pth"
torch.manual_seed(0)
model = torchvision.models.resnet18()
torch.save(model.state_dict(), out)
