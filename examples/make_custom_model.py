#!/usr/bin/python3
"""Writes the custom-architecture example: a small U-Net-like segmenter
defined here in torch, whose Lua twin is examples/custom_model.lua.

    /usr/bin/python3 examples/make_custom_model.py [OUTDIR]   (default: examples)

OUTDIR/custom_model.pth     the state_dict (seeded random weights, BatchNorm
                            statistics not the identity)
OUTDIR/custom_input.npy     a float32 [1, 3, 32, 32] input
OUTDIR/custom_output.npy    torch's eval-mode output for it, [1, 4, 32, 32]

spec/example_spec.lua runs the Lua definition on these with pthcv and
compares with torch's output.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class ConvBlock(nn.Module):
    """Two 3x3 conv+BN, a 1x1 projection on the skip path when widths differ, SiLU."""

    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.silu(y + self.skip(x))


class TinyUNet(nn.Module):
    def __init__(self, in_channels=3, num_classes=4, width=8):
        super().__init__()
        w = width
        self.enc1 = ConvBlock(in_channels, w)
        self.enc2 = ConvBlock(w, 2 * w)
        self.mid = ConvBlock(2 * w, 4 * w)
        self.up2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2)
        self.dec2 = ConvBlock(4 * w, 2 * w)
        self.dec1 = ConvBlock(3 * w, w)
        self.attn = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(w, w, 1), nn.Sigmoid())
        self.head = nn.Conv2d(w, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
        up = F.interpolate(d2, scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up, e1], 1))
        d1 = d1 * self.attn(d1)
        return F.log_softmax(self.head(d1), dim=1)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
    torch.manual_seed(7)
    model = TinyUNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = model(x)
    os.makedirs(out, exist_ok=True)
    torch.save(model.state_dict(), os.path.join(out, "custom_model.pth"))
    np.save(os.path.join(out, "custom_input.npy"), x.numpy())
    np.save(os.path.join(out, "custom_output.npy"), y.numpy())
    print(model)


if __name__ == "__main__":
    main()
