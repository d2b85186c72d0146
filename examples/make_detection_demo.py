#!/usr/bin/python3
# examples/make_detection_demo.py: writes the detector `make demo` runs, a
# torchvision ssdlite320_mobilenet_v3_large state_dict with weights drawn
# from a fixed seed and made trained-like as the detection specs make them
# (spec/fixtures/make_detection_fixtures.py: BatchNorm statistics measured on
# the picture, class scores spread over (0, 1)). No pretrained weights are
# downloaded (the demo works offline), so its boxes and classes are
# arbitrary: the demo shows the pipeline, not accuracy. With torchvision's
# SSDLite320_MobileNet_V3_Large_Weights.COCO_V1 saved as a state_dict the
# same command finds real objects.
#   usage: examples/make_detection_demo.py OUT.pth [PICTURE]
import os
import sys

import cv2
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "spec", "fixtures"))
import make_detection_fixtures as fx  # noqa: E402

out = sys.argv[1] if len(sys.argv) > 1 else "build/demo/ssdlite320_mobilenet_v3_large.pth"
picture = sys.argv[2] if len(sys.argv) > 2 else os.path.join(HERE, "demo.jpg")
name = "ssdlite320_mobilenet_v3_large"
rgb = torch.from_numpy(cv2.cvtColor(cv2.imread(picture), cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float().div(255)
g = torch.Generator().manual_seed(5)
model = fx.build(name, "detection", {}, g)
fx.randomise(model, g)
inputs = [[rgb, rgb.flip(2)], [torch.rand(3, 300, 400, generator=g), torch.rand(3, 240, 320, generator=g)]]   # batches of two: BatchNorm over 1x1 maps needs them
fx.calibrate(model, inputs)
fx.tune_scores(name, model, inputs)
torch.save(model.state_dict(), out)
