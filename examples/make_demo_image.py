#!/usr/bin/python3
# examples/make_demo_image.py: draws examples/demo.jpg, the picture `make demo`
# and the specs classify: a 400x300 landscape (sky, sun, hills, a lake, a
# tree) drawn with OpenCV from a fixed seed, so it needs no download and
# carries no licence beyond the project's.
#   usage: examples/make_demo_image.py [OUT.jpg]
import sys

import cv2
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else "examples/demo.jpg"
W, H = 400, 300
rng = np.random.default_rng(5)

y = np.linspace(0, 1, H, dtype=np.float32)[:, None, None]
sky_top, sky_low = np.array([170, 90, 40], np.float32), np.array([235, 200, 160], np.float32)  # BGR
img = (sky_top * (1 - y) + sky_low * y) * np.ones((1, W, 1), np.float32)
img = img.astype(np.uint8)

cv2.circle(img, (300, 80), 34, (60, 200, 255), -1, cv2.LINE_AA)                   # sun
far = np.array([[0, 190], [70, 140], [150, 175], [240, 120], [330, 170], [400, 150], [400, 300], [0, 300]])
cv2.fillPoly(img, [far], (110, 130, 90), cv2.LINE_AA)                             # far hills
near = np.array([[0, 230], [120, 190], [260, 225], [400, 200], [400, 300], [0, 300]])
cv2.fillPoly(img, [near], (40, 120, 60), cv2.LINE_AA)                             # near hills
cv2.ellipse(img, (210, 262), (130, 22), 0, 0, 360, (150, 110, 50), -1, cv2.LINE_AA)  # lake
cv2.rectangle(img, (72, 190), (82, 250), (30, 60, 90), -1)                        # trunk
cv2.circle(img, (77, 172), 30, (30, 100, 40), -1, cv2.LINE_AA)                    # crown
noise = rng.normal(0, 6, img.shape)
img = np.clip(img.astype(np.float64) + noise, 0, 255).astype(np.uint8)
img = cv2.GaussianBlur(img, (3, 3), 0)
if not cv2.imwrite(out, img, [cv2.IMWRITE_JPEG_QUALITY, 90]):
    sys.exit("cannot write " + out)
